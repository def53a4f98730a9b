/**
 * `npm run bench:micro`: tinybench micro benchmarks of the per-packet pieces, each group timing
 * the data path's function next to its alternatives (bench/alternatives.ts) on the same input.
 * Every call handles a batch (64 packets, as a worker does per poll), so timer overhead is shared;
 * the table gives the median and mean per packet (or lookup, or hash) in nanoseconds.
 *
 * Before timing, each group checks that its alternatives compute the same thing; a mismatch
 * stops the run rather than time a wrong answer.
 */
import { parseArgs } from 'node:util';
import os from 'node:os';
import { Bench } from 'tinybench';
import { SendBatch, WriteBatch } from '../src/dataplane/batch.js';
import { decapBatch } from '../src/dataplane/decap.js';
import { ENCAP_HEADROOM, encapBatch } from '../src/dataplane/encap.js';
import { flowHashV4 } from '../src/dataplane/flowhash.js';
import { fold, l4ChecksumV4, sum16, verifyL4V4 } from '../src/wire/checksum.js';
import { IPV4_MIN_HEADER_LEN } from '../src/wire/ipv4.js';
import { UDP_CHECKSUM_OFF } from '../src/wire/udp.js';
import { csumBatch, tcpSegment, udpSegment } from '../src/io/native.js';
import { tcpSegmentJs } from '../src/dataplane/tcp-segment.js';
import { udpSegmentJs } from '../src/dataplane/udp-segment.js';
import { LinearPeers, cutUdpJobs, fnv1aFlowHash, sum32, sum32Halves, sumDataView, xorFlowHash } from './alternatives.js';
import { ChecksumJobs } from '../src/dataplane/csum-jobs.js';
import { SLOT_SIZE, dataplaneContext, peerEntries, peerTable, receiverContext, tunBatch, vxlanBatch } from './packets.js';

const BATCH = 64;
const DEFAULT_TIME_MS = 400;
const WARMUP_MS = 100;
const LOOKUP_TABLE_SIZES = [4, 64, 1024];
const CHECKSUM_SIZES = [64, 1400, 65535];
const CHECKSUM_BYTES_PER_CALL = 64 << 10;
/** Offset of L4 data in a slot, as in the data path (headroom + IPv4 header): deliberately unaligned. */
const L4_OFF = ENCAP_HEADROOM + IPV4_MIN_HEADER_LEN;

interface Case {
  name: string;
  /** Packets (lookups, hashes) handled per call. */
  ops: number;
  /** Bytes summed per op, for GB/s (checksum cases). */
  bytesPerOp?: number;
  fn: () => void;
}

interface Group {
  title: string;
  unit: string;
  cases: Case[];
}

/** Written by every case so the JIT cannot drop the work. */
let sink = 0;

function must(ok: boolean, what: string): void {
  if (!ok) throw new Error(`micro benchmark self-check failed: ${what}`);
}

async function encapGroup(): Promise<Group> {
  const ctx = await dataplaneContext(4);
  const out = new SendBatch(BATCH);
  const small = tunBatch(BATCH, 64 - 28);
  const large = tunBatch(BATCH, 1400 - 28);
  // Room behind the batch for the copying variant's destination slots.
  const big = new Uint8Array(2 * BATCH * SLOT_SIZE);
  big.set(large.slab);
  const enc = (slab: Uint8Array, lens: Int32Array): number => {
    const half = ctx.table.beginRead(0);
    const k = encapBatch(ctx, half, slab, SLOT_SIZE, lens, BATCH, out);
    ctx.table.endRead(0);
    return k;
  };
  must(enc(small.slab, small.lens) === BATCH && enc(large.slab, large.lens) === BATCH, 'encapBatch sends every packet');
  return {
    title: `encap batch (${BATCH} packets per call)`, unit: 'packet',
    cases: [
      { name: 'encapBatch, 64 B packets (headers in headroom)', ops: BATCH, fn: () => { sink += enc(small.slab, small.lens); } },
      { name: 'encapBatch, 1400 B packets (headers in headroom)', ops: BATCH, fn: () => { sink += enc(large.slab, large.lens); } },
      {
        name: 'encapBatch + copy each datagram out (no headroom), 1400 B', ops: BATCH,
        fn: () => {
          const k = enc(big, large.lens);
          for (let i = 0; i < k; i++) big.copyWithin((BATCH + i) * SLOT_SIZE, out.offs[i], out.offs[i] + out.lens[i]);
          sink += k;
        },
      },
      {
        name: 'encapBatch + inner UDP checksum in JS, 1400 B', ops: BATCH,
        fn: () => {
          const k = enc(large.slab, large.lens);
          for (let i = 0; i < k; i++) {
            const ip = i * SLOT_SIZE + ENCAP_HEADROOM;
            const c = l4ChecksumV4(large.slab, ip);
            large.slab[ip + IPV4_MIN_HEADER_LEN + UDP_CHECKSUM_OFF] = c >>> 8;
            large.slab[ip + IPV4_MIN_HEADER_LEN + UDP_CHECKSUM_OFF + 1] = c & 0xff;
          }
          sink += k;
        },
      },
    ],
  };
}

async function decapGroup(): Promise<Group> {
  const ctx = await receiverContext();
  const tun = new WriteBatch(BATCH);
  const replies = new SendBatch(BATCH);
  const small = await vxlanBatch(BATCH, 64 - 28);
  const large = await vxlanBatch(BATCH, 1400 - 28);
  const offs = Int32Array.from({ length: BATCH }, (_, i) => i * SLOT_SIZE);
  const dec = (b: { slab: Uint8Array; lens: Int32Array; srcIPs: Uint32Array }): number => {
    const half = ctx.table.beginRead(0);
    const k = decapBatch(ctx, half, b.slab, offs, b.lens, SLOT_SIZE, b.srcIPs, BATCH, tun, replies);
    ctx.table.endRead(0);
    return k;
  };
  must(dec(small) === BATCH && dec(large) === BATCH, 'decapBatch delivers every datagram');
  must(Array.from({ length: BATCH }, (_, i) => verifyL4V4(large.slab, tun.offs[i])).every(Boolean), 'inner checksums verify');
  return {
    title: `decap batch (${BATCH} datagrams per call)`, unit: 'packet',
    cases: [
      { name: 'decapBatch, 64 B inner packets', ops: BATCH, fn: () => { sink += dec(small); } },
      { name: 'decapBatch, 1400 B inner packets', ops: BATCH, fn: () => { sink += dec(large); } },
      {
        name: 'decapBatch + verify inner L4 checksum in JS, 1400 B', ops: BATCH,
        fn: () => {
          const k = dec(large);
          for (let i = 0; i < k; i++) if (verifyL4V4(large.slab, tun.offs[i])) sink++;
        },
      },
    ],
  };
}

async function lookupGroup(): Promise<Group> {
  const cases: Case[] = [];
  for (const n of LOOKUP_TABLE_SIZES) {
    const table = await peerTable(n);
    const linear = new LinearPeers(n);
    const entries = peerEntries(n);
    for (const e of entries) linear.add(e.net, e.prefix, e.vtepIP);
    // Destinations spread over the table (a fixed stride, so runs are repeatable), all hits.
    const dsts = new Uint32Array(BATCH).map((_, i) => ((entries[(i * 37) % n]!.net | (2 + (i & 63))) >>> 0));
    const half = table.beginRead(0);
    for (const d of dsts) {
      const s = table.lookup(half, d);
      const j = linear.lookup(d);
      must(s >= 0 && j >= 0 && (table.vtepIP(s) >>> 0) === linear.vteps[j], `lookup of ${d >>> 0} agrees (${n} peers)`);
    }
    table.endRead(0);
    cases.push({
      name: `PeerTable.lookup (hash), ${n} peers`, ops: BATCH,
      fn: () => {
        const h = table.beginRead(0);
        for (let i = 0; i < BATCH; i++) sink += table.lookup(h, dsts[i]);
        table.endRead(0);
      },
    });
    cases.push({ name: `linear scan, ${n} peers`, ops: BATCH, fn: () => { for (let i = 0; i < BATCH; i++) sink += linear.lookup(dsts[i]); } });
  }
  return { title: `peer table lookup (${BATCH} lookups per call)`, unit: 'lookup', cases };
}

function checksumGroup(): Group {
  const cases: Case[] = [];
  for (const size of CHECKSUM_SIZES) {
    // Enough packets per call to dwarf the timer, at most a worker's batch.
    const count = Math.min(BATCH, Math.max(1, Math.floor(CHECKSUM_BYTES_PER_CALL / size)));
    const slot = Math.max(SLOT_SIZE, L4_OFF + size + 8);
    const buf = new Uint8Array(count * slot);
    for (let i = 0; i < buf.length; i++) buf[i] = (i * 2654435761) >>> 24;
    const words = new Uint32Array(buf.buffer, 0, buf.length >>> 2);
    const view = new DataView(buf.buffer);
    for (let p = 0; p < count; p++) {
      const off = p * slot + L4_OFF;
      const want = fold(sum16(buf, off, size));
      must(fold(sum32(buf, words, off, size)) === want && fold(sum32Halves(buf, words, off, size)) === want &&
        fold(sumDataView(buf, view, off, size)) === want, `checksums of ${size} B agree`);
    }
    const each = (f: (off: number) => number) => () => {
      for (let p = 0; p < count; p++) sink += f(p * slot + L4_OFF);
    };
    const offs = Int32Array.from({ length: count }, (_, p) => p * slot + L4_OFF);
    const lens = new Int32Array(count).fill(size);
    const sums = new Uint32Array(count);
    csumBatch(buf, offs, lens, sums, count);
    must(sums.every((v, p) => v === fold(sum16(buf, offs[p]!, size))), `csumBatch of ${size} B agrees`);
    cases.push(
      { name: `sum16 (16-bit words, bytes), ${size} B`, ops: count, bytesPerOp: size, fn: each((o) => sum16(buf, o, size)) },
      { name: `sum32 (Uint32Array LE, double acc), ${size} B`, ops: count, bytesPerOp: size, fn: each((o) => sum32(buf, words, o, size)) },
      { name: `sum32Halves (Uint32Array LE, 16-bit halves), ${size} B`, ops: count, bytesPerOp: size, fn: each((o) => sum32Halves(buf, words, o, size)) },
      { name: `sumDataView (getUint32 BE), ${size} B`, ops: count, bytesPerOp: size, fn: each((o) => sumDataView(buf, view, o, size)) },
      { name: `csumBatch (addon, one call per batch), ${size} B`, ops: count, bytesPerOp: size, fn: () => void (sink += csumBatch(buf, offs, lens, sums, count)) },
    );
  }
  return { title: 'Internet checksum (unaligned start, as in a slot)', unit: 'packet', cases };
}

/** Cutting a TSO super-packet (44 × 1398-byte segments, TCP with timestamps) into complete segments. */
function segmentGroup(): Group {
  const mss = 1398;
  const nseg = 44;
  const thl = 32;
  const payload = nseg * mss;
  const ip = 64;
  const out = 1 << 17;
  const mem = new Uint8Array(out + nseg * (ENCAP_HEADROOM + 20 + thl) + payload + 64);
  const fill = (m: Uint8Array) => {
    m[ip] = 0x45;
    m[ip + 9] = 6;
    m[ip + 20 + 12] = (thl / 4) << 4;
    m[ip + 20 + 13] = 0x18;
    for (let i = 0; i < payload; i++) m[ip + 20 + thl + i] = (i * 2654435761) >>> 24;
  };
  fill(mem);
  const other = new Uint8Array(mem.length);
  fill(other);
  const n = tcpSegment(mem, ip, 20, thl, payload, mss, out, ENCAP_HEADROOM);
  must(n === tcpSegmentJs(other, ip, 20, thl, payload, mss, out, ENCAP_HEADROOM) && Buffer.compare(mem, other) === 0, 'segmenters agree byte for byte');
  return {
    title: `TCP segmentation (${nseg} × ${mss} B segments per call)`, unit: 'segment',
    cases: [
      { name: 'tcpSegment (addon: copy and sum in one pass)', ops: nseg, bytesPerOp: mss, fn: () => void (sink += tcpSegment(mem, ip, 20, thl, payload, mss, out, ENCAP_HEADROOM)) },
      { name: 'tcpSegmentJs (copyWithin + sum16)', ops: nseg, bytesPerOp: mss, fn: () => void (sink += tcpSegmentJs(mem, ip, 20, thl, payload, mss, out, ENCAP_HEADROOM)) },
    ],
  };
}

/** Cutting a UDP_L4 super-packet (a pod's UDP_SEGMENT send: 45 × 1400-byte datagrams) into complete datagrams. */
function udpCutGroup(): Group {
  const mss = 1400;
  const nseg = 45;
  const payload = nseg * mss;
  const ip = ENCAP_HEADROOM;
  const out = 1 << 17;
  const make = (): Uint8Array => {
    const m = new Uint8Array(out + nseg * (ENCAP_HEADROOM + 28 + mss) + 64);
    m[ip] = 0x45;
    m[ip + 8] = 64;
    m[ip + 9] = 17;
    m.set([10, 244, 1, 2, 10, 244, 2, 2], ip + 12);
    m.set([0x9c, 0x40, 0x13, 0x89], ip + 20);
    for (let i = 0; i < payload; i++) m[ip + 28 + i] = (i * 2654435761) >>> 24;
    return m;
  };
  const mem = make();
  const other = make();
  const third = make();
  const jobs = new ChecksumJobs(nseg);
  const withJobs = (m: Uint8Array): number => {
    jobs.reset();
    const n = cutUdpJobs(m, ip, 20, payload, mss, out, ENCAP_HEADROOM, jobs);
    jobs.run(m);
    jobs.store(m);
    return n;
  };
  const n = udpSegment(mem, ip, 20, payload, mss, out, ENCAP_HEADROOM);
  must(n === udpSegmentJs(other, ip, 20, payload, mss, out, ENCAP_HEADROOM) && n === withJobs(third) &&
    Buffer.compare(mem, other) === 0 && Buffer.compare(mem, third) === 0, 'UDP cuts agree byte for byte');
  must(verifyL4V4(mem, out + ENCAP_HEADROOM) && verifyL4V4(mem, out + (nseg - 1) * (ENCAP_HEADROOM + 28 + mss) + ENCAP_HEADROOM), 'cut datagrams carry valid UDP checksums');
  return {
    title: `UDP super-packet cut (${nseg} × ${mss} B datagrams per call)`, unit: 'datagram',
    cases: [
      { name: 'udpSegment (addon: copy and sum in one pass)', ops: nseg, bytesPerOp: mss, fn: () => void (sink += udpSegment(mem, ip, 20, payload, mss, out, ENCAP_HEADROOM)) },
      { name: 'copyWithin + checksum jobs (addon, one call per batch)', ops: nseg, bytesPerOp: mss, fn: () => void (sink += withJobs(mem)) },
      { name: 'udpSegmentJs (copyWithin + sum16)', ops: nseg, bytesPerOp: mss, fn: () => void (sink += udpSegmentJs(mem, ip, 20, payload, mss, out, ENCAP_HEADROOM)) },
    ],
  };
}

function flowHashGroup(): Group {
  const { slab, lens } = tunBatch(BATCH, 64);
  const ips = Int32Array.from({ length: BATCH }, (_, i) => i * SLOT_SIZE + ENCAP_HEADROOM);
  const distinct = (f: (b: Uint8Array, o: number, l: number) => number): number => new Set(Array.from(ips, (o, i) => f(slab, o, lens[i]))).size;
  must(distinct(flowHashV4) === BATCH && distinct(fnv1aFlowHash) === BATCH, 'flow hashes separate the flows');
  const all = (f: (b: Uint8Array, o: number, l: number) => number) => () => {
    for (let i = 0; i < BATCH; i++) sink += f(slab, ips[i], lens[i]);
  };
  return {
    title: `flow hash (${BATCH} packets per call)`, unit: 'packet',
    cases: [
      { name: 'flowHashV4 (murmur3-style mix)', ops: BATCH, fn: all(flowHashV4) },
      { name: 'xor fold (cheapest, weaker spread)', ops: BATCH, fn: all(xorFlowHash) },
      { name: 'FNV-1a, byte at a time', ops: BATCH, fn: all(fnv1aFlowHash) },
    ],
  };
}

async function runGroup(g: Group, timeMs: number): Promise<void> {
  const bench = new Bench({ time: timeMs, warmupTime: WARMUP_MS, throws: true });
  for (const c of g.cases) bench.add(c.name, c.fn);
  await bench.run();
  const rows = bench.tasks.map((t, i) => {
    const c = g.cases[i]!;
    const r = t.result;
    if (r.state !== 'completed') throw new Error(`${c.name}: ${r.state}`);
    const p50 = (r.latency.p50 * 1e6) / c.ops;
    const mean = (r.latency.mean * 1e6) / c.ops;
    return { c, p50, mean, rme: r.latency.rme, samples: r.latency.samplesCount };
  });
  const nameW = Math.max(...rows.map((r) => r.c.name.length), 10);
  console.log(`\n${g.title}`);
  console.log(`  ${'alternative'.padEnd(nameW)}  ${`ns/${g.unit} p50`.padStart(16)}  ${'mean'.padStart(10)}  ${'±rme'.padStart(7)}  ${'GB/s'.padStart(6)}  samples`);
  for (const r of rows) {
    const gbs = r.c.bytesPerOp ? (r.c.bytesPerOp / r.p50).toFixed(2) : '';
    console.log(`  ${r.c.name.padEnd(nameW)}  ${r.p50.toFixed(1).padStart(16)}  ${r.mean.toFixed(1).padStart(10)}  ${`${r.rme.toFixed(1)}%`.padStart(7)}  ${gbs.padStart(6)}  ${r.samples}`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { time: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) {
    console.log(`usage: node dist/bench/micro.js [--time MS]   (time per alternative, default ${DEFAULT_TIME_MS})`);
    return;
  }
  const timeMs = values.time === undefined ? DEFAULT_TIME_MS : Number(values.time);
  if (!Number.isInteger(timeMs) || timeMs < 10 || timeMs > 60_000) throw new Error(`invalid --time ${JSON.stringify(values.time)} (10..60000 ms)`);
  console.log(`tulle micro benchmarks: Node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${timeMs} ms per alternative`);
  console.log('ns per packet (or lookup) = tinybench latency per call / items per call; p50 = median over samples');
  for (const g of [await encapGroup(), await decapGroup(), await lookupGroup(), checksumGroup(), segmentGroup(), udpCutGroup(), flowHashGroup()]) await runGroup(g, timeMs);
  if (sink === 0.5) console.log(''); // keeps `sink` observable
}

main().catch((e: unknown) => {
  console.error(`bench:micro: ${(e as Error).stack ?? String(e)}`);
  process.exit(1);
});
