/**
 * Competing implementations of the per-packet pieces, timed side by side with the ones the data
 * path uses (bench/micro.ts). They live here, not in src/, until a measurement earns one a place
 * there. Each is checked against the data path's version in test/unit/bench-micro.test.ts, so a
 * faster alternative is also a correct one.
 */
import { pseudoHeaderSumV4 } from '../src/wire/checksum.js';
import { IPPROTO_TCP, IPPROTO_UDP, IPV4_DST_OFF, IPV4_PROTOCOL_OFF, IPV4_SRC_OFF, dst as ipv4Dst, ihl, src as ipv4Src } from '../src/wire/ipv4.js';
import { cutSegments } from '../src/dataplane/cut.js';
import { UDP_CHECKSUM_OFF, UDP_HEADER_LEN, setLength as setUdpLength } from '../src/wire/udp.js';
import type { ChecksumJobs } from '../src/dataplane/csum-jobs.js';

// ---- Internet checksum (RFC 1071) ----
//
// The one's-complement sum does not depend on byte order except for a byte swap of the result
// (RFC 1071 section 2(B)), so words can be read in the machine's (little-endian) order and the
// folded sum swapped once at the end. Both 32-bit variants need a Uint32Array or DataView made
// once over the slab (making one per packet would allocate); bytes before the first aligned word
// and after the last are added one at a time, each at its position's parity.

/** Folds an unfolded sum to 16 bits (end-around carry), as checksum.ts `fold`. */
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

const swap16 = (x: number): number => ((x & 0xff) << 8) | (x >>> 8);

/** Bytes outside the aligned words, at their parity relative to `off` (even = high byte). */
function edges(buf: Uint8Array, off: number, from: number, to: number, sum: number): number {
  for (let i = from; i < to; i++) sum += (i - off) & 1 ? buf[i] : buf[i] << 8;
  return sum;
}

/**
 * Sum of buf[off, off+len) as sum16 would give it once folded, reading aligned little-endian
 * 32-bit words from `words` (a Uint32Array over the same memory as `buf`, starting at its byte 0;
 * `buf.byteOffset` must be a multiple of 4) into a double accumulator.
 */
export function sum32(buf: Uint8Array, words: Uint32Array, off: number, len: number): number {
  const end = off + len;
  const first = Math.min(end, (off + 3) & ~3);
  const last = Math.max(first, end & ~3);
  let mid = 0;
  for (let j = first >>> 2, e = last >>> 2; j < e; j++) mid += words[j];
  const m = fold(mid);
  // Little-endian words starting at an even distance from `off` hold each pair byte-swapped.
  let sum = (first - off) & 1 ? m : swap16(m);
  sum = edges(buf, off, off, first, sum);
  return edges(buf, off, last, end, sum);
}

/**
 * As sum32, but adds each word as two 16-bit halves so every intermediate stays a small integer
 * (V8 keeps a Uint32Array element above 2^31 as a heap double).
 */
export function sum32Halves(buf: Uint8Array, words: Uint32Array, off: number, len: number): number {
  const end = off + len;
  const first = Math.min(end, (off + 3) & ~3);
  const last = Math.max(first, end & ~3);
  let hi = 0;
  let lo = 0;
  for (let j = first >>> 2, e = last >>> 2; j < e; j++) {
    const w = words[j];
    hi += w >>> 16;
    lo += w & 0xffff;
  }
  const m = fold(hi + lo);
  let sum = (first - off) & 1 ? m : swap16(m);
  sum = edges(buf, off, off, first, sum);
  return edges(buf, off, last, end, sum);
}

/**
 * Big-endian 32-bit words through a DataView over the same memory as `buf` (starting at its
 * byte 0), so no swap is needed; the unaligned tail is added byte by byte.
 */
export function sumDataView(buf: Uint8Array, view: DataView, off: number, len: number): number {
  const end = off + len;
  const stop = off + (len & ~3);
  let sum = 0;
  let i = off;
  for (; i < stop; i += 4) {
    const w = view.getUint32(i, false);
    sum += (w >>> 16) + (w & 0xffff);
  }
  return edges(buf, off, i, end, sum);
}

// ---- peer lookup ----

/** The obvious alternative to the hash table: a linear scan over parallel arrays of subnets. */
export class LinearPeers {
  readonly nets: Uint32Array;
  readonly masks: Uint32Array;
  readonly vteps: Uint32Array;
  count = 0;
  constructor(capacity: number) {
    this.nets = new Uint32Array(capacity);
    this.masks = new Uint32Array(capacity);
    this.vteps = new Uint32Array(capacity);
  }

  add(net: number, prefix: number, vtepIP: number): void {
    const i = this.count++;
    this.masks[i] = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    this.nets[i] = net >>> 0;
    this.vteps[i] = vtepIP >>> 0;
  }

  /** Index of the first entry whose subnet holds `ip`, or -1. */
  lookup(ip: number): number {
    const nets = this.nets;
    const masks = this.masks;
    for (let i = 0, n = this.count; i < n; i++) if (((ip & masks[i]) >>> 0) === nets[i]) return i;
    return -1;
  }
}

// ---- flow hash ----

function read32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/** Cheapest possible: XOR of addresses, ports and protocol, high half folded onto the low. */
export function xorFlowHash(buf: Uint8Array, off: number, len: number): number {
  const proto = buf[off + IPV4_PROTOCOL_OFF];
  let h = read32(buf, off + IPV4_SRC_OFF) ^ read32(buf, off + IPV4_DST_OFF) ^ proto;
  const l4 = off + ihl(buf, off);
  if ((proto === IPPROTO_TCP || proto === IPPROTO_UDP) && l4 + 4 <= off + len) h ^= read32(buf, l4);
  return (h ^ (h >>> 16)) >>> 0;
}

/** FNV-1a over the 12 bytes of addresses and ports plus the protocol, byte at a time. */
export function fnv1aFlowHash(buf: Uint8Array, off: number, len: number): number {
  const proto = buf[off + IPV4_PROTOCOL_OFF];
  let h = 0x811c9dc5;
  for (let i = off + IPV4_SRC_OFF; i < off + IPV4_DST_OFF + 4; i++) h = Math.imul(h ^ buf[i], 0x01000193);
  h = Math.imul(h ^ proto, 0x01000193);
  const l4 = off + ihl(buf, off);
  if ((proto === IPPROTO_TCP || proto === IPPROTO_UDP) && l4 + 4 <= off + len) {
    for (let i = l4; i < l4 + 4; i++) h = Math.imul(h ^ buf[i], 0x01000193);
  }
  return h >>> 0;
}

// ---- UDP super-packet cut ----

/**
 * The UDP cut as it was before the addon's one-pass `udpSegment`: headers fixed and payload moved
 * in JavaScript (`copyWithin`), a checksum job per datagram for the caller to run in one addon
 * call per batch (ChecksumJobs.run) and store. Same output as `udpSegment` once the jobs are run
 * and stored.
 */
export function cutUdpJobs(
  mem: Uint8Array, ip: number, ihl: number, payload: number, mss: number, out: number, prefixLen: number, jobs: ChecksumJobs,
): number {
  const src = ipv4Src(mem, ip);
  const dst = ipv4Dst(mem, ip);
  return cutSegments(mem, ip, ihl + UDP_HEADER_LEN, payload, mss, out, prefixLen, (sip, _j, plen) => {
    const su = sip + ihl;
    setUdpLength(mem, su, UDP_HEADER_LEN + plen);
    mem[su + UDP_CHECKSUM_OFF] = 0;
    mem[su + UDP_CHECKSUM_OFF + 1] = 0;
    jobs.add(su, UDP_HEADER_LEN + plen, fold(pseudoHeaderSumV4(src, dst, IPPROTO_UDP, UDP_HEADER_LEN + plen)), su + UDP_CHECKSUM_OFF, true);
  });
}
