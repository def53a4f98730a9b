/*
 * The rehearsal a worker runs before it forwards: every feature combination a worker can start
 * with carries every inner payload byte from one made-up node to the other and back, and the
 * comparison it relies on notices a difference.
 */
import { describe, expect, it } from 'vitest';
import { firstDifference, rehearse } from '../../../src/worker/rehearsal.js';
import type { Features } from '../../../src/worker/init.js';

const COMBINATIONS: [string, Features][] = [
  ['all offloads (TSO, UDP_SEGMENT, UDP_GRO, USO)', { vnet: true, gso: true, gro: true, uso: true }],
  ['offloads without USO', { vnet: true, gso: true, gro: true, uso: false }],
  ['UDP_SEGMENT without UDP_GRO', { vnet: true, gso: true, gro: false, uso: false }],
  ['virtio-net header only (UDP_SEGMENT refused)', { vnet: true, gso: false, gro: false, uso: false }],
  ['plain', { vnet: false, gso: false, gro: false, uso: false }],
];

describe.each(COMBINATIONS)('rehearsal with %s', (_name, features) => {
  it.each([1450, 8950])('carries every payload byte both ways at MTU %i', async (mtu) => {
    const r = await rehearse({ features, batchSize: 64, mtu, port: 8472, vni: 1, flowSockets: 8, rounds: 20, budgetMs: 60_000, loopback: false });
    expect(r.mismatch).toBeNull();
    expect(r.mode).toBe('in memory');
    expect(r.rounds).toBe(20);
    expect(r.packetsIn).toBeGreaterThanOrEqual(20 * 2 * 4);
    expect(r.packetsOut).toBe(r.packetsIn);
    expect(r.payloadIn).toBeGreaterThan(0);
    expect(r.payloadOut).toBe(r.payloadIn);
    // An IPv6 packet and one for a subnet without a peer each way, plus a wrong VNI each way
    // (only the 4-packet batches without UDP_SEGMENT have no room for the first two).
    expect(r.dropped).toBe(features.vnet && !features.gso ? 20 * 2 : 20 * 2 * 3);
  });
});

describe('rehearsal limits and comparison', () => {
  it('stops at its time budget', async () => {
    const r = await rehearse({ features: COMBINATIONS[0]![1], batchSize: 64, mtu: 1450, port: 8472, vni: 1, flowSockets: 8, rounds: 1e9, budgetMs: 30, loopback: false });
    expect(r.rounds).toBeGreaterThan(0);
    expect(r.ms).toBeLessThan(1000);
  });

  it('reports a length difference and the first differing byte', () => {
    const a = Uint8Array.of(1, 2, 3, 4);
    expect(firstDifference(a, 4, Uint8Array.of(1, 2, 3, 4), 4)).toBeNull();
    expect(firstDifference(a, 4, Uint8Array.of(1, 2, 3), 3)).toBe('3 payload bytes written, 4 read');
    expect(firstDifference(a, 4, Uint8Array.of(1, 2, 9, 4), 4)).toBe('payload byte 2 differs');
  });
});
