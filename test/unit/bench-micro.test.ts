// The micro benchmark's alternatives compute what the data path's functions compute, so a faster
// alternative is a correct one too. No timing here.
import { describe, expect, it } from 'vitest';
import { LinearPeers, cutUdpJobs, fnv1aFlowHash, sum32, sum32Halves, sumDataView, xorFlowHash } from '../../bench/alternatives.js';
import { SLOT_SIZE, peerEntries, peerTable, tunBatch } from '../../bench/packets.js';
import { ENCAP_HEADROOM } from '../../src/dataplane/encap.js';
import { flowHashV4 } from '../../src/dataplane/flowhash.js';
import { fold, sum16, verifyL4V4 } from '../../src/wire/checksum.js';
import { ChecksumJobs } from '../../src/dataplane/csum-jobs.js';
import { udpSegment } from '../../src/io/native.js';

describe('checksum alternatives', () => {
  const buf = new Uint8Array(4096 + 64);
  let x = 0x12345678;
  for (let i = 0; i < buf.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    buf[i] = x >>> 24;
  }
  const words = new Uint32Array(buf.buffer, 0, buf.length >>> 2);
  const view = new DataView(buf.buffer);

  it('agree with sum16 once folded, for every start alignment and many lengths (odd, short, empty)', () => {
    for (let off = 0; off < 8; off++) {
      for (const len of [0, 1, 2, 3, 4, 5, 7, 8, 20, 63, 64, 65, 1399, 1400, 4096]) {
        const want = fold(sum16(buf, off, len));
        expect([sum32, sum32Halves].map((f) => fold(f(buf, words, off, len)))).toEqual([want, want]);
        expect(fold(sumDataView(buf, view, off, len))).toBe(want);
      }
    }
  });

  it('agree on all-0xff data (largest words) and all-zero data', () => {
    const ff = new Uint8Array(2048).fill(0xff);
    const w = new Uint32Array(ff.buffer);
    expect(fold(sum32(ff, w, 3, 2001))).toBe(fold(sum16(ff, 3, 2001)));
    expect(fold(sum32Halves(ff, w, 2, 2000))).toBe(fold(sum16(ff, 2, 2000)));
    const z = new Uint8Array(64);
    expect(fold(sum32(z, new Uint32Array(z.buffer), 1, 40))).toBe(0);
  });
});

describe('UDP cut with checksum jobs', () => {
  it('writes what udpSegment writes once its jobs are run and stored', () => {
    for (const [payload, mss] of [[1, 1400], [3000, 1400], [45 * 1400, 1400], [999, 100]] as const) {
      const make = (): Uint8Array => {
        const m = new Uint8Array(1 << 18);
        m.set([0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 244, 1, 2, 10, 244, 2, 2], 64);
        m.set([0x9c, 0x40, 0x13, 0x89], 84);
        for (let i = 0; i < payload; i++) m[92 + i] = (i * 2654435761) >>> 24;
        m.fill(0x5a, 1 << 17, (1 << 17) + ENCAP_HEADROOM);
        return m;
      };
      const a = make();
      const b = make();
      const jobs = new ChecksumJobs(64);
      const n = cutUdpJobs(b, 64, 20, payload, mss, 1 << 17, ENCAP_HEADROOM, jobs);
      jobs.run(b);
      jobs.store(b);
      expect(n).toBe(udpSegment(a, 64, 20, payload, mss, 1 << 17, ENCAP_HEADROOM));
      expect(Buffer.compare(a, b)).toBe(0);
      expect(verifyL4V4(b, (1 << 17) + ENCAP_HEADROOM)).toBe(true);
    }
  });
});

describe('peer lookup and flow hash alternatives', () => {
  it('a linear scan finds the same VTEP as the hash table, and neither finds an address outside every subnet', async () => {
    const n = 300;
    const table = await peerTable(n);
    const linear = new LinearPeers(n);
    for (const e of peerEntries(n)) linear.add(e.net, e.prefix, e.vtepIP);
    const half = table.beginRead(0);
    for (const e of peerEntries(n)) {
      const ip = (e.net | 77) >>> 0;
      expect(linear.vteps[linear.lookup(ip)]).toBe(table.vtepIP(table.lookup(half, ip)) >>> 0);
    }
    expect(table.lookup(half, 0x08080808)).toBe(-1);
    expect(linear.lookup(0x08080808)).toBe(-1);
    table.endRead(0);
  });

  it('synthetic packets are valid, and every flow hash is stable and tells the 64 flows apart (xor at least mostly)', () => {
    const { slab, lens } = tunBatch(64, 100);
    const offs = Array.from({ length: 64 }, (_, i) => i * SLOT_SIZE + ENCAP_HEADROOM);
    for (const o of offs) expect(verifyL4V4(slab, o)).toBe(true);
    for (const f of [flowHashV4, fnv1aFlowHash, xorFlowHash]) {
      const a = offs.map((o, i) => f(slab, o, lens[i]));
      expect(offs.map((o, i) => f(slab, o, lens[i]))).toEqual(a);
      expect(new Set(a).size).toBeGreaterThan(f === xorFlowHash ? 32 : 63);
    }
  });
});
