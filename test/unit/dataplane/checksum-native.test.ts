/*
 * The addon's checksum loops against the TypeScript reference on bytes chosen to catch carry and
 * tail mistakes: random bytes, long runs of 0xff (every word 0xffff), every length up to a few
 * wide blocks, odd starting offsets, and the sizes the data path sums (an MSS, 64 KB).
 */
import { describe, expect, it } from 'vitest';
import { tcpSegmentJs } from '../../../src/dataplane/tcp-segment.js';
import { udpSegmentJs } from '../../../src/dataplane/udp-segment.js';
import { csumBatch, tcpSegment, udpSegment } from '../../../src/io/native.js';
import { fold, sum16 } from '../../../src/wire/checksum.js';
import { updateHeaderChecksum } from '../../../src/wire/ipv4.js';

/** xorshift32: the same bytes on every run. */
function bytes(n: number, seed: number, ffRuns: boolean): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  if (ffRuns) for (let i = 0; i < n; i += 512) b.fill(0xff, i, Math.min(n, i + 300));
  return b;
}

describe('csumBatch sums as sum16 does', () => {
  const lengths = [...Array.from({ length: 260 }, (_, i) => i), 1398, 1448, 4096, 9000, 65535];
  it.each([[false], [true]])('every length and offset (0xff runs: %s)', (ffRuns) => {
    const buf = bytes(70000, 0x1234567 + (ffRuns ? 1 : 0), ffRuns);
    const offs = new Int32Array(lengths.length * 4);
    const lens = new Int32Array(offs.length);
    let k = 0;
    for (const len of lengths) {
      for (const at of [0, 1, 3, 33]) {
        offs[k] = at;
        lens[k] = len;
        k++;
      }
    }
    const sums = new Uint32Array(k);
    expect(csumBatch(buf, offs, lens, sums, k)).toBe(k);
    for (let i = 0; i < k; i++) expect(sums[i], `length ${lens[i]} at ${offs[i]}`).toBe(fold(sum16(buf, offs[i], lens[i])));
  });

  it('a range longer than the wide loop sums between two flushes of its lanes (256 KB)', () => {
    const buf = new Uint8Array(600_001).fill(0xff);
    buf.set(bytes(1000, 99, false), 300_000);
    const sums = new Uint32Array(2);
    csumBatch(buf, Int32Array.of(0, 1), Int32Array.of(600_000, 599_999), sums, 2);
    expect(sums[0]).toBe(fold(sum16(buf, 0, 600_000)));
    expect(sums[1]).toBe(fold(sum16(buf, 1, 599_999)));
  });

  it('all-0xff data (every word 0xffff) and all-zero data', () => {
    for (const fill of [0xff, 0]) {
      const buf = new Uint8Array(65536).fill(fill);
      const sums = new Uint32Array(2);
      csumBatch(buf, Int32Array.of(0, 7), Int32Array.of(65536, 65000), sums, 2);
      expect(sums[0]).toBe(fold(sum16(buf, 0, 65536)));
      expect(sums[1]).toBe(fold(sum16(buf, 7, 65000)));
    }
  });
});

/**
 * A super-packet over random bytes at mem[ip]: IPv4 (ID 0xffff, so it wraps to 0 on the second
 * segment) and the transport header of `proto`, `payload` bytes after them.
 */
function randomSuper(payload: number, mss: number, ip: number, proto: 6 | 17): Uint8Array {
  const thl = proto === 6 ? 32 : 8;
  const mem = bytes(80000 + 66000, payload ^ mss, true);
  mem.fill(0, ip, ip + 20 + thl);
  const total = 20 + thl + payload;
  mem.set([0x45, 0, total >> 8, total & 0xff, 0xff, 0xff, 0, 0, 64, proto, 0, 0, 10, 244, 1, 2, 10, 244, 2, 2], ip);
  updateHeaderChecksum(mem, ip);
  if (proto === 6) {
    mem.set([0xff, 0xff, 0xf0, 0x00], ip + 20 + 4); // sequence number wraps inside the packet
    mem[ip + 20 + 12] = 8 << 4; // 32-byte TCP header
    mem[ip + 20 + 13] = 0x18;
  } else {
    mem.set([0xc3, 0x50, 0x01, 0xbb], ip + 20);
  }
  return mem;
}

const CUTS = [
  { name: 'tcpSegment', proto: 6 as const, hlen: 52, addon: (m: Uint8Array, ip: number, p: number, mss: number, out: number) => tcpSegment(m, ip, 20, 32, p, mss, out, 22),
    js: (m: Uint8Array, ip: number, p: number, mss: number, out: number) => tcpSegmentJs(m, ip, 20, 32, p, mss, out, 22),
    sizes: [[1448, 1448], [65483, 1448], [65483, 1398], [3000, 100], [200, 7], [64 * 31 + 5, 64 * 3 + 1]] },
  { name: 'udpSegment', proto: 17 as const, hlen: 28, addon: (m: Uint8Array, ip: number, p: number, mss: number, out: number) => udpSegment(m, ip, 20, p, mss, out, 22),
    js: (m: Uint8Array, ip: number, p: number, mss: number, out: number) => udpSegmentJs(m, ip, 20, p, mss, out, 22),
    sizes: [[1400, 1400], [65507, 1472], [65000, 1400], [3001, 100], [200, 7], [64 * 31 + 5, 64 * 3 + 1]] },
];

describe.each(CUTS)('$name copies and sums random payloads as its TypeScript reference does', ({ proto, hlen, addon, js, sizes }) => {
  it.each(sizes)('payload %i, mss %i', (payload, mss) => {
    const ip = 10;
    const out = 66000;
    const a = randomSuper(payload, mss, ip, proto);
    const b = randomSuper(payload, mss, ip, proto);
    const na = addon(a, ip, payload, mss, out);
    expect(na).toBe(Math.ceil(payload / mss) * (22 + hlen) + payload);
    expect(js(b, ip, payload, mss, out)).toBe(na);
    expect(Buffer.compare(a, b)).toBe(0);
  });
});
