/*
 * An address taken while the node's subnet changes (allocateInSubnet in src/control/endpoints.ts):
 * real address stores in a temporary directory; the node's subnet is switched at the moment the
 * first store has written the reservation, as an etcd lease lost and replaced would switch it.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { type Cidr, parseCidr } from '../../../src/control/config.js';
import { allocateInSubnet, CniApiError } from '../../../src/control/endpoints.js';
import { HostLocalStore } from '../../../src/control/ipam.js';
import { ERR } from '../../../src/cni/spec.js';
import { formatIpv4 } from '../../../src/wire/ipv4.js';

const A = parseCidr('subnet', '10.244.1.0/24');
const B = parseCidr('subnet', '10.244.2.0/24');
let dir: string;
let stores: Map<string, HostLocalStore>;
let warnings: Record<string, unknown>[];
const log = { warn: (o: Record<string, unknown>) => warnings.push(o) } as never;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tulle-alloc-'));
  stores = new Map();
  warnings = [];
});

afterEach(() => {
  for (const s of stores.values()) s.close();
  rmSync(dir, { recursive: true, force: true });
});

const storeDir = (s: Cidr) => join(dir, s.text.replace('/', '-'));
const held = (s: Cidr) => (existsSync(storeDir(s)) ? readdirSync(storeDir(s)).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)).sort() : []);

async function store(s: Cidr): Promise<HostLocalStore> {
  let st = stores.get(s.text);
  if (!st) {
    st = await HostLocalStore.open(storeDir(s), { net: s.net, prefix: s.prefix });
    stores.set(s.text, st);
  }
  return st;
}

test('a stable subnet: the address is taken once, nothing released, nothing logged', async () => {
  const got = await allocateInSubnet({ subnet: () => A, store, log }, 'c1', 'eth0', undefined);
  expect([got.subnet.text, formatIpv4(got.addr)]).toEqual(['10.244.1.0/24', '10.244.1.2']);
  expect(held(A)).toEqual(['10.244.1.2']);
  expect(warnings).toEqual([]);
});

test('the subnet changes once the old store has written the reservation: released there, taken in the new subnet', async () => {
  // Switched for good the first time the old store holds the address (a latch, since the
  // release that follows removes the file again).
  let switched = false;
  const subnet = () => {
    if (held(A).length > 0) switched = true;
    return switched ? B : A;
  };
  const got = await allocateInSubnet({ subnet, store, log }, 'c1', 'eth0', undefined);
  expect([got.subnet.text, formatIpv4(got.addr)]).toEqual(['10.244.2.0/24', '10.244.2.2']);
  expect(got.store).toBe(stores.get(B.text));
  expect(held(A)).toEqual([]);
  expect(held(B)).toEqual(['10.244.2.2']);
  expect(warnings).toEqual([expect.objectContaining({ ip: '10.244.1.2', from: '10.244.1.0/24', to: '10.244.2.0/24', attempt: 1 })]);
});

test('a subnet that keeps changing: code 11 after three attempts, no address left behind', async () => {
  let reads = 0;
  const subnet = () => (reads++ % 2 === 0 ? A : B);
  const err = await allocateInSubnet({ subnet, store, log }, 'c1', 'eth0', undefined).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(CniApiError);
  expect(err).toMatchObject({ code: ERR.TRY_AGAIN_LATER, message: expect.stringContaining('subnet changed') });
  expect(warnings.map((w) => w.attempt)).toEqual([1, 2, 3]);
  expect([...held(A), ...held(B)]).toEqual([]);
});

test('the node loses its subnet while the address is taken: released, code 11 naming the subnet', async () => {
  let reads = 0;
  const subnet = () => {
    if (reads++ > 0) throw new CniApiError(503, ERR.TRY_AGAIN_LATER, 'no subnet yet');
    return A;
  };
  const err = await allocateInSubnet({ subnet, store, log }, 'c1', 'eth0', undefined).catch((e: unknown) => e);
  expect(err).toMatchObject({ code: ERR.TRY_AGAIN_LATER, message: expect.stringContaining('10.244.1.0/24 to none yet') });
  expect(held(A)).toEqual([]);
});
