/*
 * The etcd store without an etcd: the "etcd" is either a TCP listener on 127.0.0.1 that takes
 * connections and never answers (a call stays under way until its deadline), or etcd3's mock,
 * which answers the calls of a join. Covers closing the store while a call is under way, and
 * an agent config that contradicts <prefix>/config.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, validateConfig } from '../../../src/control/config.js';
import { EtcdStore } from '../../../src/control/store/etcd.js';
import { StoreError } from '../../../src/control/store/store.js';

// Every client the store opens is handed to the test before its first call.
const hooks = vi.hoisted(() => ({ onOpen: undefined as ((client: Etcd3) => void) | undefined }));
vi.mock('../../../src/control/store/etcd-client.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../../../src/control/store/etcd-client.js')>();
  return {
    ...orig,
    openEtcd: async (cfg: Parameters<typeof orig.openEtcd>[0]) => {
      const client = await orig.openEtcd(cfg);
      hooks.onOpen?.(client);
      return client;
    },
  };
});

const PREFIX = '/coreos.com/network';
const SELF = { publicIP: 0xac1f0001, vtepMAC: new Uint8Array([2, 0, 0, 0, 0, 1]) };

let dir: string;
let blackHole: Server;
let port: number;
const held: Socket[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tulle-etcd-store-'));
  blackHole = createServer((s) => held.push(s));
  await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
  port = (blackHole.address() as { port: number }).port;
});

afterEach(() => {
  hooks.onOpen = undefined;
});

afterAll(async () => {
  for (const s of held) s.destroy();
  await new Promise<void>((resolve) => blackHole.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

interface Logged {
  at: number;
  msg: string;
  attempt?: number;
  retryInMs?: number;
}

function makeStore(extra: Record<string, unknown> = {}) {
  const lines: Logged[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => lines.push({ ...(JSON.parse(s) as Logged), at: Date.now() }) });
  const cfg = validateConfig({ vtepIP: '172.31.0.1', dataDir: dir, ...extra, store: { type: 'etcd', endpoints: [`http://127.0.0.1:${port}`] } });
  return { store: new EtcdStore(cfg, log), lines };
}

/** Answers a join as an etcd holding `config` at <prefix>/config and no leases would. */
function answerJoin(client: Etcd3, config: string) {
  const header = { revision: '1' };
  const answer = (service: string, method: string, params: unknown): unknown => {
    const p = params as { key?: Buffer; range_end?: Buffer };
    if (service === 'KV' && method === 'range' && p.range_end === undefined && p.key?.toString() === `${PREFIX}/config`) {
      return { header, kvs: [{ key: p.key, value: Buffer.from(config), lease: '0', mod_revision: '1' }] };
    }
    if (service === 'KV' && method === 'range') return { header, kvs: [] };
    if (service === 'Lease' && method === 'leaseGrant') return { header, ID: '7', TTL: '86400' };
    if (service === 'KV' && method === 'txn') return { header, succeeded: true };
    throw new Error(`unexpected ${service}.${method}`);
  };
  client.mock({
    exec: <T>(service: string, method: string, params: unknown): Promise<T> => {
      try {
        return Promise.resolve(answer(service, method, params) as T);
      } catch (e) {
        return Promise.reject(e as Error);
      }
    },
  });
}

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const settled = (p: Promise<unknown>) => p.then(() => ({ at: Date.now(), err: undefined as unknown }), (err: unknown) => ({ at: Date.now(), err }));

// A call under way when the store closes fails about 1 s later (etcd3 gives a connecting
// channel 1 s before closing it). Before the fix that failure was retried after a backoff
// that nothing woke (here ~1 s, 8 s at most), with a "retrying" warning.
const SETTLE_MS = 1_600;

/**
 * The first call fails at its deadline with `firstWarning`; the store is closed while the second
 * is under way. `pending` must then end as closed, within SETTLE_MS, with nothing logged after.
 */
async function closeDuringSecondCall(
  store: ReturnType<typeof makeStore>['store'], lines: ReturnType<typeof makeStore>['lines'],
  pending: ReturnType<typeof settled>, firstWarning: RegExp,
): Promise<void> {
  await until(() => lines.length >= 1, 10_000);
  expect(lines[0]!.msg).toMatch(firstWarning);
  await new Promise((r) => setTimeout(r, lines[0]!.retryInMs! + 300));
  const closedAt = Date.now();
  await store.close();
  const r = await pending;
  expect(r.err).toBeInstanceOf(StoreError);
  expect((r.err as StoreError).code).toBe('ESTORECLOSED');
  expect(r.at - closedAt).toBeLessThan(SETTLE_MS);
  expect(lines.filter((l) => l.at >= closedAt).map((l) => l.msg)).toEqual([]);
}

describe('etcd store: close() while a call is under way', () => {
  it('ends join at once, without a retry warning', async () => {
    const { store, lines } = makeStore();
    const joined = settled(store.join(SELF, async () => {}));
    await closeDuringSecondCall(store, lines, joined, /cannot join through etcd yet; retrying/);
  }, 20_000);

  it('ends follow at once, without an "unreachable" warning', async () => {
    const { store, lines } = makeStore();
    let client: Etcd3 | undefined;
    hooks.onOpen = (c) => {
      client = c;
      answerJoin(c, '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    };
    const m = await store.join(SELF, async () => {});
    expect(m.network.text).toBe('10.244.0.0/16');
    // From here on the calls go to the listener that never answers.
    client!.unmock();
    const followed = settled(store.follow(async () => {}));
    await closeDuringSecondCall(store, lines, followed, /etcd unreachable/);
    expect(store.status().state).toBe('closed');
  }, 20_000);
});

describe('etcd store: a config that contradicts <prefix>/config', () => {
  const join1 = async (extra: Record<string, unknown>) => {
    const { store } = makeStore(extra);
    hooks.onOpen = (c) => answerJoin(c, '{"Network":"10.245.0.0/16","Backend":{"Type":"vxlan"}}');
    const r = await settled(store.join(SELF, async () => {}));
    await store.close();
    return r.err;
  };

  it('is a ConfigError naming the field, its value and what etcd says', async () => {
    const net = await join1({ network: '10.244.0.0/16' });
    expect(net).toBeInstanceOf(ConfigError);
    expect(net).toMatchObject({ field: 'network', value: '10.244.0.0/16' });
    expect((net as Error).message).toMatch(/"network".*Network 10\.245\.0\.0\/16.*"10\.244\.0\.0\/16"/);

    const sub = await join1({ subnet: '10.245.7.0/26' });
    expect(sub).toBeInstanceOf(ConfigError);
    expect(sub).toMatchObject({ field: 'subnet', value: '10.245.7.0/26' });
    expect((sub as Error).message).toContain(`${PREFIX}/config`);
    expect((sub as Error).message).toContain('/24');
  });
});
