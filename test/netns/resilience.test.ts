/*
 * The data path under faults (root): malformed datagrams at the VXLAN port,
 * and a forwarding worker dying under load.
 *
 *                    tl<lab>-sw [br0]
 *          ┌──────────────┴──────────────┐
 *   tl<lab>-n1 eth0 172.31.0.1     tl<lab>-n2 eth0 172.31.0.2   ← flood sender runs here
 *   tulle agent, 2 workers          tulle agent, 2 workers
 *   └ tl<lab>-n1-p1 10.244.1.2      └ tl<lab>-n2-p1 10.244.2.2
 */
import { describe, expect, test } from 'vitest';
import { request } from '../../src/control/api.js';
import { pingAll, tcpTransfer } from '../../src/lab/measure.js';
import { labUp, type LabState } from '../../src/lab/topology.js';
import { nsRun } from '../../src/util/exec.js';
import { packageRoot } from '../../src/util/paths.js';
import { requireRoot, labPerTest } from '../support/labs.js';

const FLOOD_PER_KIND = 1000;
const DROP_KINDS = [
  'rx_drop_short', 'rx_drop_bad_flags', 'rx_drop_reserved_bits', 'rx_drop_bad_vni', 'rx_drop_not_our_mac',
  'rx_drop_truncated_inner', 'rx_drop_oversize', 'rx_drop_unknown_ethertype',
] as const;

requireRoot('they create network namespaces and TUN devices');
const labs = labPerTest();

interface Status {
  ready: boolean;
  workers: { id: number; state: string; restarts: number }[];
  counters: Record<string, number>;
}

const status = (s: LabState, node: number) => request(s.nodes[node].agent!.socket, 'GET', '/v1/status') as Promise<Status>;

async function up(): Promise<LabState> {
  return labUp({ name: labs.next('r'), nodes: 2, pods: 1, mode: 'tulle', store: 'static', agent: { workers: 2 } });
}

/** Milliseconds until pod `from` gets an echo reply from `to`, trying every ~100 ms for up to `limitMs`. */
async function msUntilReachable(s: LabState, from: number, to: number, limitMs: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < limitMs) {
    try {
      await nsRun(s.pods[from].ns, 'ping', ['-c', '1', '-W', '0.1', s.pods[to].ip]);
      return Date.now() - t0;
    } catch {
      // lost; try again
    }
  }
  return Infinity;
}

describe('resilience', () => {
  test('thousands of malformed datagrams are dropped under named counters while pod traffic flows', async () => {
    const s = await up();
    const before = (await status(s, 0)).counters;
    const flood = nsRun(s.nodes[1].ns, process.execPath, [
      `${packageRoot()}/test/support/vxlan-flood.mjs`, '172.31.0.2', '172.31.0.1', '8472', s.nodes[0].vtepMAC, String(FLOOD_PER_KIND),
    ], { timeoutMs: 60_000 });
    const transfer = tcpTransfer(s.pods[1].ns, s.pods[0].ns, s.pods[0].ip, 32 << 20, 7);
    const [sent, moved] = await Promise.all([flood, transfer]);
    expect(sent.trim()).toBe(`sent ${FLOOD_PER_KIND * (DROP_KINDS.length + 1)}`);
    expect(moved.bytes).toBe(32 << 20);

    const after = await status(s, 0);
    expect(after.ready).toBe(true);
    expect(after.workers.map((w) => [w.state, w.restarts])).toEqual([['running', 0], ['running', 0]]);
    const delta = (k: string) => after.counters[k] - before[k];
    // Each malformed kind is counted exactly under its own reason (random garbage lands on top, mostly as bad flags).
    for (const k of DROP_KINDS) expect(delta(k), k).toBeGreaterThanOrEqual(FLOOD_PER_KIND);
    const drops = Object.keys(after.counters).filter((k) => k.startsWith('rx_drop_')).reduce((n, k) => n + delta(k), 0);
    expect(drops).toBeGreaterThanOrEqual(FLOOD_PER_KIND * (DROP_KINDS.length + 1) - 5);
    expect(delta('rx_drop_bad_vni')).toBe(FLOOD_PER_KIND);
    expect(delta('rx_drop_truncated_inner')).toBe(FLOOD_PER_KIND);
    expect(delta('rx_drop_oversize')).toBe(FLOOD_PER_KIND);
    expect(await pingAll(s.pods)).toEqual([]);
    console.info(`drops by reason: ${Object.keys(after.counters).filter((k) => k.startsWith('rx_drop_') && delta(k) > 0).map((k) => `${k}=${delta(k)}`).join(' ')}`);
  });

  test('a killed worker is restarted and pod traffic resumes within a second', async () => {
    const s = await up();
    // A long TCP stream crosses both agents while every worker of node 1, then node 2, is killed.
    const transfer = tcpTransfer(s.pods[0].ns, s.pods[1].ns, s.pods[1].ip, 256 << 20, 3);
    const moved = transfer.then((r) => r.bytes, (e: Error) => e.message);
    for (const node of [0, 1]) {
      for (const worker of [0, 1]) {
        const t0 = Date.now();
        await request(s.nodes[node].agent!.socket, 'POST', `/v1/workers/${worker}/kill`);
        const ms = await msUntilReachable(s, node, 1 - node, 1000);
        expect(ms, `node ${node + 1} worker ${worker}: ms until reachable`).toBeLessThan(1000);
        // The replacement worker itself is running within the same second.
        let st = await status(s, node);
        while (st.workers[worker].state !== 'running' && Date.now() - t0 < 1000) {
          await new Promise((r) => setTimeout(r, 20));
          st = await status(s, node);
        }
        expect([st.workers[worker].state, st.workers[worker].restarts]).toEqual(['running', 1]);
        console.info(`node ${node + 1} worker ${worker} killed: pods reachable after ${ms} ms, worker running again after ${Date.now() - t0} ms`);
      }
    }
    expect(await moved).toBe(256 << 20);
  });
});
