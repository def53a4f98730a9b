/*
 * Per packet: no allocation. A synchronous loop pushes a few hundred thousand packets through
 * the batch functions of both data paths; any per-packet object would fill the young generation
 * many times over and show as garbage collections inside the loop's time window.
 */
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { SendBatch, WriteBatch } from '../../../src/dataplane/batch.js';
import { COUNTER_COUNT } from '../../../src/dataplane/counters.js';
import type { DataplaneContext } from '../../../src/dataplane/context.js';
import { ChecksumJobs } from '../../../src/dataplane/csum-jobs.js';
import { CoalesceScratch, coalesceBatch } from '../../../src/dataplane/coalesce.js';
import { decapBatch } from '../../../src/dataplane/decap.js';
import { ENCAP_HEADROOM, encapBatch } from '../../../src/dataplane/encap.js';
import { PeerTable } from '../../../src/dataplane/peers.js';
import { VNET_READ_HEADROOM, segmentBatch } from '../../../src/dataplane/segment.js';
import { tcpSegment, udpSegment } from '../../../src/io/native.js';
import { parseIpv4, updateHeaderChecksum } from '../../../src/wire/ipv4.js';
import { parseMac } from '../../../src/wire/mac.js';
import * as vnet from '../../../src/wire/vnet.js';

async function ctxFor(peerSubnet: string, peerVtep: string, mac: string): Promise<DataplaneContext> {
  const table = new PeerTable(8);
  await table.publish([{ net: parseIpv4(peerSubnet), prefix: 24, vtepIP: parseIpv4(peerVtep), vtepMAC: parseMac('02:aa:00:00:00:09') }]);
  return { table, vni: 1, vtepMAC: parseMac(mac), overlayIP: 0, mtu: 1450, port: 8472, flowSockets: 8, counters: new Float64Array(COUNTER_COUNT) };
}

/**
 * Young-generation collections (scavenges) that start inside the synchronous run of `f`. Major
 * collections are left out: their incremental steps can belong to garbage made before `f`.
 */
async function gcsDuring(f: () => void): Promise<number> {
  const entries: { startTime: number; detail?: unknown }[] = [];
  const obs = new PerformanceObserver((list) => entries.push(...list.getEntries()));
  obs.observe({ entryTypes: ['gc'] });
  const t0 = performance.now();
  f();
  const t1 = performance.now();
  await new Promise((r) => setTimeout(r, 50));
  obs.disconnect();
  const minor = (e: { detail?: unknown }) => (e.detail as { kind?: number } | undefined)?.kind === constants.NODE_PERFORMANCE_GC_MINOR;
  return entries.filter((e) => e.startTime >= t0 && e.startTime <= t1 && minor(e)).length;
}

describe('no allocation per packet', () => {
  it('plain encap and decap', async () => {
    const a = await ctxFor('10.244.2.0', '172.31.0.2', '02:aa:00:00:00:01');
    const b = await ctxFor('10.244.1.0', '172.31.0.1', '02:aa:00:00:00:09');
    const SLOT = 2048;
    const N = 64;
    const tx = new Uint8Array(SLOT * N);
    const lens = new Int32Array(N).fill(100);
    for (let i = 0; i < N; i++) {
      const ip = i * SLOT + ENCAP_HEADROOM;
      tx.set([0x45, 0, 0, 100, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 244, 1, 2, 10, 244, 2, i + 2], ip);
      updateHeaderChecksum(tx, ip);
    }
    const sends = new SendBatch(N);
    const rx = new Uint8Array(SLOT * N);
    const offs = Int32Array.from({ length: N }, (_, i) => i * SLOT);
    const rlens = new Int32Array(N);
    const srcs = new Uint32Array(N).fill(parseIpv4('172.31.0.1'));
    const tun = new WriteBatch(N);
    const replies = new SendBatch(N);
    const run = (rounds: number) => {
      for (let r = 0; r < rounds; r++) {
        encapBatch(a, a.table.beginRead(0), tx, SLOT, lens, N, sends);
        for (let i = 0; i < N; i++) {
          rx.copyWithin(0, 0, 0); // no-op keeps the shape of the loop honest
          rlens[i] = sends.lens[i];
        }
        rx.set(tx);
        decapBatch(b, b.table.beginRead(0), rx, offs, rlens, SLOT, srcs, N, tun, replies);
      }
    };
    run(200);
    expect(tun.count).toBe(N);
    // 2.56 million packets each way: 16 bytes per packet would be 40 MB, more than two full-size
    // young generations; as above, up to two collections are left to the test runner.
    expect(await gcsDuring(() => run(40_000))).toBeLessThanOrEqual(2);
  });

  it('offloaded segmentation and coalescing', async () => {
    const a = await ctxFor('10.244.2.0', '172.31.0.2', '02:aa:00:00:00:01');
    const b = await ctxFor('10.244.1.0', '172.31.0.1', '02:aa:00:00:00:09');
    const MSS = 1398;
    const TUN_SLOT = 65600;
    const mem = new Uint8Array(TUN_SLOT + 70000);
    const payload = 44 * MSS;
    const ip = VNET_READ_HEADROOM + vnet.VNET_HDR_LEN;
    const len = 52 + payload;
    vnet.writeGso(mem, VNET_READ_HEADROOM, vnet.VNET_GSO_TCPV4, 52, MSS, 20, 16);
    mem.set([0x45, 0, len >> 8, len & 0xff, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 244, 1, 2, 10, 244, 2, 2], ip);
    updateHeaderChecksum(mem, ip);
    mem[ip + 32] = 0x80;
    mem[ip + 33] = 0x10;
    const lens = Int32Array.of(10 + len);
    const area = { mem, tunSlot: TUN_SLOT, segStart: TUN_SLOT, segEnd: mem.length, gso: true, maxDatagram: 1472, cut: tcpSegment, cutUdp: udpSegment };
    const out = new SendBatch(8);
    const jobs = new ChecksumJobs(64);
    const slot = 0x10000;
    const rx = new Uint8Array(slot);
    const offs = new Int32Array(44);
    const dl = new Int32Array(44);
    const srcs = new Uint32Array(44).fill(parseIpv4('172.31.0.1'));
    const tun = new WriteBatch(64);
    const fin = new WriteBatch(64);
    const cj = new ChecksumJobs(64);
    const scratch = new CoalesceScratch(64);
    const replies = new SendBatch(4);
    segmentBatch(a, a.table.beginRead(0), area, lens, 0, 1, out, jobs);
    const segments = mem.subarray(out.offs[0], out.offs[0] + out.lens[0]); // the same place every round
    const run = (rounds: number) => {
      for (let r = 0; r < rounds; r++) {
        jobs.reset();
        segmentBatch(a, a.table.beginRead(0), area, lens, 0, 1, out, jobs);
        const seg = out.segSizes[0];
        rx.set(segments);
        for (let j = 0; j < 44; j++) {
          offs[j] = j * seg;
          dl[j] = seg;
        }
        decapBatch(b, b.table.beginRead(0), rx, offs, dl, slot, srcs, 44, tun, replies);
        coalesceBatch(b, rx, slot, tun, fin, cj, scratch, true);
      }
    };
    run(100);
    expect(fin.count).toBe(1);
    // 3.5 million segments each way: 16 bytes per segment would be 56 MB of garbage, at least four
    // collections of a full-size young generation. Up to two are left to the test runner's own
    // bookkeeping, which may share the heap.
    expect(await gcsDuring(() => run(80_000))).toBeLessThanOrEqual(2);
  });
});
