/*
 * The etcd lease follower (src/control/store/etcd-peers.ts) against leases the peer table cannot
 * hold: they are ignored with a warning naming why, and the rest are published, so a lying or
 * overfull etcd cannot freeze the table. The leases are flannel's format; the etcd client is a
 * stand-in whose watch never reports anything (only the initial listing matters here).
 */
import { EventEmitter } from 'node:events';
import { expect, test } from 'vitest';
import { MAX_PREFIXES, PeerTable, type PeerEntry } from '../../../src/dataplane/peers.js';
import { PEER_CAPACITY, parseCidr } from '../../../src/control/config.js';
import { LeaseFollower } from '../../../src/control/store/etcd-peers.js';
import { encodeLease } from '../../../src/control/store/flannel.js';
import { parseIpv4 } from '../../../src/wire/ipv4.js';

const PREFIX = '/coreos.com/network';
const MAC = Uint8Array.of(2, 0xaa, 0, 0, 0, 9);

function follower(warnings: Record<string, unknown>[]): LeaseFollower {
  const watcher = Object.assign(new EventEmitter(), { cancel: () => Promise.resolve() });
  const chain = { prefix: () => chain, startRevision: () => chain, watcher: () => watcher };
  const log = { info() {}, error() {}, debug() {}, warn: (o: Record<string, unknown>) => warnings.push(o) };
  return new LeaseFollower({
    prefix: PREFIX, log: log as never, client: () => ({ watch: () => chain }) as never,
    net: () => ({ network: parseCidr('network', '10.0.0.0/8'), subnetLen: 24, subnetMin: 0, subnetMax: 0, backendType: 'vxlan', vni: 1, port: 8472 }),
    self: () => ({ publicIP: parseIpv4('172.31.0.1'), vtepMAC: MAC }),
    own: () => undefined, contact() {}, ownKeyChanged() {}, watchLost() {},
  });
}

const lease = (subnet: string, i: number) => ({
  key: `${PREFIX}/subnets/${subnet.replace('/', '-')}`,
  value: Buffer.from(encodeLease(parseIpv4(`172.30.${i >> 8}.${i & 0xff}`), 1, MAC)), lease: '0', modRevision: '1',
});

async function publishOf(kvs: ReturnType<typeof lease>[], warnings: Record<string, unknown>[]): Promise<PeerEntry[]> {
  const f = follower(warnings);
  let got: PeerEntry[] = [];
  const table = new PeerTable(PEER_CAPACITY);
  await f.start({ kvs, revision: '1' }, async (peers) => {
    await table.publish(peers);
    got = [...peers];
  });
  await f.close();
  return got;
}

test(`leases with a ${MAX_PREFIXES + 1}th prefix length are ignored, naming it; the others are published`, async () => {
  const warnings: Record<string, unknown>[] = [];
  const kvs = Array.from({ length: MAX_PREFIXES + 2 }, (_, i) => lease(`10.${100 + i}.0.0/${16 + i}`, i + 2));
  const got = await publishOf(kvs, warnings);
  expect(got.map((p) => p.prefix)).toEqual([16, 17, 18, 19, 20, 21, 22, 23]);
  expect(warnings.map((w) => w.why)).toEqual([
    `a ${MAX_PREFIXES + 1}th subnet prefix length (/24); the peer table looks up at most ${MAX_PREFIXES}`,
    `a ${MAX_PREFIXES + 1}th subnet prefix length (/25); the peer table looks up at most ${MAX_PREFIXES}`,
  ]);
});

test(`leases beyond ${PEER_CAPACITY} peers are ignored; the first ${PEER_CAPACITY} are published`, async () => {
  const warnings: Record<string, unknown>[] = [];
  const kvs = Array.from({ length: PEER_CAPACITY + 3 }, (_, i) => lease(`10.${128 + (i >> 8)}.${i & 0xff}.0/24`, i + 2));
  const got = await publishOf(kvs, warnings);
  expect(got.length).toBe(PEER_CAPACITY);
  expect(warnings.length).toBe(3);
  expect(warnings.every((w) => w.why === `the peer table is full (${PEER_CAPACITY} peers)`)).toBe(true);
});
