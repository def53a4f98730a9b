/*
 * Seeded fuzz of the forwarding loop in both directions (offloaded, and the shapes it falls back
 * to), on loops without fds whose sends and TUN writes a rehearsal sink records.
 *
 * Ingress: UDP_GRO messages (single datagrams without UDP_GRO) made of valid VXLAN datagrams (TCP
 * segments of several flows, UDP, ICMP, ARP, whole TCP super-packets; complete or partial inner
 * checksums), some of them damaged (bit flips, header fields rewritten with or without fixed
 * checksums, lying segment sizes and lengths, empty and maximum-size messages). Every TUN write is
 * checked against the bytes it came from, and what a receiving kernel would accept from it against
 * the streams that were sent; every datagram is accounted for in the counters.
 *
 * Egress: TUN reads as the kernel hands them over (TCP and UDP super-packets, single packets with
 * partial or complete checksums) and malformed ones (virtio-net headers that lie, broken IPv4 and
 * TCP headers, IPv6, truncation). Every datagram sent is checked against the read it came from
 * (the read's index rides in the inner TOS byte), and every read is forwarded or counted.
 *
 * Set TULLE_FUZZ_SEED to change the seed, TULLE_FUZZ_CASE to run one case of each suite, and
 * TULLE_FUZZ_SCALE to multiply the number of cases. A failure names the seed and case;
 * TULLE_FUZZ_DUMP prints a failed ingress case, TULLE_FUZZ_STATS the counters of each suite.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { SendBatch } from '../../../src/dataplane/batch.js';
import { C, COUNTER_COUNT, COUNTER_NAMES } from '../../../src/dataplane/counters.js';
import type { DataplaneContext } from '../../../src/dataplane/context.js';
import { ENCAP_HEADROOM } from '../../../src/dataplane/encap.js';
import { flowHashV4 } from '../../../src/dataplane/flowhash.js';
import { PeerTable } from '../../../src/dataplane/peers.js';
import { VNET_READ_HEADROOM } from '../../../src/dataplane/segment.js';
import { CONTROL_WORDS, type Features } from '../../../src/worker/init.js';
import { ForwardLoop, type RehearsalSink } from '../../../src/worker/loop.js';
import { dataplaneContext } from '../../../src/worker/rehearsal.js';
import { fold, l4ChecksumV4, pseudoHeaderSumV4, sum16 } from '../../../src/wire/checksum.js';
import * as ipv4 from '../../../src/wire/ipv4.js';
import * as vnet from '../../../src/wire/vnet.js';

// ---------------------------------------------------------------------------------------------
// Determinism

function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** 0 .. n-1 */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** lo .. hi inclusive */
  range(lo: number, hi: number): number {
    return hi <= lo ? lo : lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  u32(): number {
    return (this.next() * 4294967296) >>> 0;
  }
}

const SEED = Number(process.env.TULLE_FUZZ_SEED ?? 0x7011e) >>> 0;
const ONLY = process.env.TULLE_FUZZ_CASE === undefined ? -1 : Number(process.env.TULLE_FUZZ_CASE);
const SCALE = Number(process.env.TULLE_FUZZ_SCALE ?? 1);

/** The seed of one case: the run's seed, the suite and the case index, mixed. */
function caseSeed(suite: number, index: number): number {
  let h = Math.imul(SEED ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(suite + 1, 0xc2b2ae35) ^ Math.imul(index + 1, 0x27d4eb2f);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

function caseIndices(count: number): number[] {
  return ONLY >= 0 ? [ONLY] : Array.from({ length: Math.max(1, Math.round(count * SCALE)) }, (_, i) => i);
}

class Failure extends Error {}

function ensure(cond: boolean, what: () => string): void {
  if (!cond) throw new Failure(what());
}

/** Payload bytes: a fixed pseudo-random pattern indexed by stream position, so a misplaced byte shows. */
const PERIOD = 65521;
const PATTERN = (() => {
  const r = new Rng(0x5eed);
  const p = new Uint8Array(PERIOD);
  for (let i = 0; i < PERIOD; i++) p[i] = r.int(256);
  return p;
})();
/** Garbage to fill receive slots with. */
const GARBAGE = (() => {
  const r = new Rng(0x6a7b);
  const g = new Uint8Array(0x10000);
  for (let i = 0; i < g.length; i++) g[i] = r.int(256);
  return g;
})();

function streamByte(flow: number, pos: number): number {
  return PATTERN[((pos % PERIOD) + flow * 10007) % PERIOD];
}

function datagramByte(flow: number, serial: number, i: number): number {
  return PATTERN[(serial * 131 + i + flow * 10007 + 4099) % PERIOD];
}

// ---------------------------------------------------------------------------------------------
// Addresses

const LOCAL = ipv4.parseIpv4('10.254.1.0');
const LOCAL_MAC = Uint8Array.of(2, 0x7e, 0, 0, 0, 1);
const PEERS = [
  { net: ipv4.parseIpv4('10.254.2.0'), vtep: ipv4.parseIpv4('192.0.2.2'), mac: Uint8Array.of(2, 0x7e, 0, 0, 0, 2) },
  { net: ipv4.parseIpv4('10.254.3.0'), vtep: ipv4.parseIpv4('192.0.2.3'), mac: Uint8Array.of(2, 0x7e, 0, 0, 0, 3) },
];
const UNKNOWN_VTEP = ipv4.parseIpv4('192.0.2.99');
const NOWHERE = ipv4.parseIpv4('10.254.9.2');
const VNI = 1;
const PORT = 8472;
const FLOW_SOCKETS = 4;
/** Source ports of the flows of a case: any two differ in at least two bits, so no single bit flip turns one flow into another. */
const PORTS = [40000, 40003, 40005, 40006, 40009, 40010, 40012, 40015];
const UDP_DPORT = 5300;
const TCP_DPORT = 5201;

const IPPROTO_ICMP = 1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
const TCP_URG = 0x20;
const TCP_ECE = 0x40;
const TCP_CWR = 0x80;
const GRO_SLOT = 0x10000;
/** Datagrams a kernel joins into one UDP_GRO message at most (UDP_MAX_SEGMENTS). */
const GRO_MAX_SEGMENTS = 128;
/** The largest UDP payload an IPv4 datagram carries. */
const MAX_UDP_PAYLOAD = 65507;

function get16(b: Uint8Array, at: number): number {
  return (b[at] << 8) | b[at + 1];
}
function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
}
function get32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}
function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

function peerOf(dst: number): (typeof PEERS)[number] | undefined {
  return PEERS.find((p) => (dst & 0xffffff00) >>> 0 === p.net);
}

function counterDelta(after: Float64Array, before: Float64Array): Record<string, number> {
  const d: Record<string, number> = {};
  for (let i = 0; i < COUNTER_COUNT; i++) d[COUNTER_NAMES[i]] = after[i] - before[i];
  return d;
}

// ---------------------------------------------------------------------------------------------
// Inner packets

type Csum = 'complete' | 'partial' | 'zero';

interface PacketSpec {
  proto: number;
  src: number;
  dst: number;
  id: number;
  tos?: number;
  ttl?: number;
  df?: boolean;
  /** IPv4 option bytes (a multiple of 4, NOPs). */
  ipOptions?: number;
  sport?: number;
  dport?: number;
  seq?: number;
  ack?: number;
  flags?: number;
  window?: number;
  /** TCP header length (20..60); options are NOPs and a timestamp. */
  thl?: number;
  tsval?: number;
  echoId?: number;
  echoSeq?: number;
  payload: Uint8Array;
  csum: Csum;
}

function l4HeaderLen(spec: PacketSpec): number {
  return spec.proto === IPPROTO_TCP ? spec.thl ?? 20 : 8;
}

/** Writes the packet at buf[at] and returns its length. */
function writePacket(buf: Uint8Array, at: number, s: PacketSpec): number {
  const ihl = 20 + (s.ipOptions ?? 0);
  const hl = l4HeaderLen(s);
  const len = ihl + hl + s.payload.length;
  buf.fill(0, at, at + ihl + hl);
  buf[at] = 0x40 | (ihl >>> 2);
  buf[at + 1] = s.tos ?? 0;
  put16(buf, at + 2, len);
  put16(buf, at + 4, s.id & 0xffff);
  put16(buf, at + 6, s.df === false ? 0 : 0x4000);
  buf[at + 8] = s.ttl ?? 64;
  buf[at + 9] = s.proto;
  put32(buf, at + 12, s.src);
  put32(buf, at + 16, s.dst);
  buf.fill(1, at + 20, at + ihl); // NOP options
  ipv4.updateHeaderChecksum(buf, at);
  const l4 = at + ihl;
  if (s.proto === IPPROTO_TCP) {
    put16(buf, l4, s.sport ?? 0);
    put16(buf, l4 + 2, s.dport ?? 0);
    put32(buf, l4 + 4, s.seq ?? 0);
    put32(buf, l4 + 8, s.ack ?? 0);
    buf[l4 + 12] = (hl >>> 2) << 4;
    buf[l4 + 13] = s.flags ?? TCP_ACK;
    put16(buf, l4 + 14, s.window ?? 0xffff);
    buf.fill(1, l4 + 20, l4 + hl);
    if (hl >= 32) {
      buf[l4 + hl - 10] = 8;
      buf[l4 + hl - 9] = 10;
      put32(buf, l4 + hl - 8, s.tsval ?? 1);
      put32(buf, l4 + hl - 4, 7);
    }
  } else if (s.proto === IPPROTO_UDP) {
    put16(buf, l4, s.sport ?? 0);
    put16(buf, l4 + 2, s.dport ?? 0);
    put16(buf, l4 + 4, hl + s.payload.length);
  } else {
    buf[l4] = 8; // echo request
    put16(buf, l4 + 4, s.echoId ?? 0);
    put16(buf, l4 + 6, s.echoSeq ?? 0);
  }
  buf.set(s.payload, l4 + hl);
  setL4Checksum(buf, at, s.csum);
  return len;
}

/**
 * Without a virtio-net header: the offset of the L4 checksum field the loop finishes in `ip`
 * (received as `before`), or -1 when it must leave the packet alone: TCP, or UDP with a sane
 * length, not a fragment, whose field held the (non-zero) pseudo-header sum.
 */
function finishedField(cfg: IngressConfig, ip: Uint8Array, before: Uint8Array): number {
  if (cfg.vnet) return -1;
  const proto = before[9];
  if ((proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) || ipv4.isFragment(before, 0)) return -1;
  const ihl = ipv4.ihl(before, 0);
  let l4len = before.length - ihl;
  if (l4len < (proto === IPPROTO_TCP ? 20 : 8)) return -1;
  if (proto === IPPROTO_UDP) {
    const ulen = get16(before, ihl + 4);
    if (ulen < 8 || ulen > l4len) return -1;
    l4len = ulen;
  }
  const field = ihl + l4FieldOffset(proto);
  const ps = pseudoField(before, 0, proto, l4len);
  return ps !== 0 && get16(before, field) === ps && ip.length === before.length ? field : -1;
}

function l4FieldOffset(proto: number): number {
  return proto === IPPROTO_TCP ? 16 : proto === IPPROTO_UDP ? 6 : 2;
}

/** Sets the L4 checksum of the well-formed packet at buf[at]: complete, the pseudo-header sum only, or none (UDP). */
function setL4Checksum(buf: Uint8Array, at: number, csum: Csum): void {
  const proto = buf[at + 9];
  const ihl = ipv4.ihl(buf, at);
  const field = at + ihl + l4FieldOffset(proto);
  const l4len = ipv4.totalLength(buf, at) - ihl;
  if (csum === 'partial' && proto !== IPPROTO_ICMP) {
    put16(buf, field, fold(pseudoHeaderSumV4(ipv4.src(buf, at), ipv4.dst(buf, at), proto, l4len)));
  } else if (csum === 'zero' && proto === IPPROTO_UDP) {
    put16(buf, field, 0);
  } else {
    put16(buf, field, 0);
    put16(buf, field, l4ChecksumV4(buf, at));
  }
}

/**
 * Whether the L4 checksum field of the packet at b[0] holds the pseudo-header sum: an unfinished
 * checksum, or (one time in 65536) a complete one that reads the same. The receiver cannot tell
 * them apart, so neither protects the packet against damage.
 */
function looksPartial(b: Uint8Array): boolean {
  const proto = b[9];
  if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) return false;
  const ihl = ipv4.ihl(b, 0);
  return get16(b, ihl + l4FieldOffset(proto)) === pseudoField(b, 0, proto, ipv4.totalLength(b, 0) - ihl);
}

function pseudoField(buf: Uint8Array, ip: number, proto: number, l4len: number): number {
  return fold(pseudoHeaderSumV4(ipv4.src(buf, ip), ipv4.dst(buf, ip), proto, l4len));
}

/** Whether the L4 checksum over buf[l4, l4 + l4len) with the pseudo-header verifies. */
function l4Verifies(buf: Uint8Array, ip: number, proto: number, l4: number, l4len: number): boolean {
  const pseudo = proto === IPPROTO_ICMP ? 0 : pseudoHeaderSumV4(ipv4.src(buf, ip), ipv4.dst(buf, ip), proto, l4len);
  return fold(sum16(buf, l4, l4len, pseudo)) === 0xffff;
}

// ---------------------------------------------------------------------------------------------
// The sink

interface Write {
  off: number;
  bytes: Uint8Array;
}

interface Sent {
  bytes: Uint8Array;
  seg: number;
  dstIP: number;
  dstPort: number;
  sock: number;
  off: number;
  memLength: number;
}

class Recorder implements RehearsalSink {
  writes: Write[] = [];
  sends: Sent[] = [];
  sent(mem: Uint8Array, b: SendBatch, gso: boolean): void {
    for (let k = 0; k < b.count; k++) {
      this.sends.push({
        bytes: mem.slice(b.offs[k], b.offs[k] + b.lens[k]), seg: gso ? b.segSizes[k] : 0, dstIP: b.dstIPs[k], dstPort: b.dstPorts[k],
        sock: b.sockIdx[k], off: b.offs[k], memLength: b.lens[k],
      });
    }
  }
  written(mem: Uint8Array, offs: Int32Array, lens: Int32Array, count: number): void {
    for (let i = 0; i < count; i++) this.writes.push({ off: offs[i], bytes: mem.slice(offs[i], offs[i] + lens[i]) });
  }
  reset(): void {
    this.writes = [];
    this.sends = [];
  }
}

interface Bench {
  ctx: DataplaneContext;
  loop: ForwardLoop;
  rec: Recorder;
}

async function bench(mtu: number, features: Features, maxDatagram?: number): Promise<Bench> {
  const table = new PeerTable(8);
  await table.publish(PEERS.map((p) => ({ net: p.net, prefix: 24, vtepIP: p.vtep, vtepMAC: p.mac })));
  const ctx = dataplaneContext(table, VNI, LOCAL_MAC, LOCAL, mtu, PORT, FLOW_SOCKETS, new Float64Array(COUNTER_COUNT));
  const rec = new Recorder();
  const io = { tunFd: -1, rxFd: -1, sendFds: new Int32Array(FLOW_SOCKETS).fill(-1), wakeFd: -1, rehearsal: rec };
  const loop = new ForwardLoop(0, ctx, io, 64, new SharedArrayBuffer(CONTROL_WORDS * 4), { ...features }, maxDatagram);
  return { ctx, loop, rec };
}

// ---------------------------------------------------------------------------------------------
// Ingress

interface TcpFlow {
  index: number;
  src: number;
  dst: number;
  sport: number;
  dport: number;
  isn: number;
  /** Stream offset of the next byte. */
  next: number;
  ack: number;
  window: number;
  thl: number;
  tsval: number;
  /** A datagram of this flow was changed in a way no checksum catches: its bytes are not checked. */
  tainted: boolean;
  /** [offset, length] of payload that must reach the pod, and of payload that did. */
  must: [number, number][];
  got: [number, number][];
  /** The segments sent, in stream order, with the header fields a joined segment must keep. */
  segs: SegmentRecord[];
}

interface SegmentRecord {
  off: number;
  len: number;
  ack: number;
  window: number;
  tsval: number;
  flags: number;
  tos: number;
  ttl: number;
  df: boolean;
}

interface UdpFlow {
  index: number;
  src: number;
  dst: number;
  sport: number;
  dport: number;
  serial: number;
  tainted: boolean;
  lens: Map<number, number>;
  /** TOS, TTL and DF of each datagram, which a joined datagram must keep. */
  fields: Map<number, number>;
  must: Set<number>;
  got: Map<number, number>;
  /** Datagrams with under 2 payload bytes (no room for a serial): counted. */
  mustTiny: number;
  gotTiny: number;
}

/** One datagram of a message as generated. */
interface Datagram {
  start: number;
  len: number;
  /** Valid, unchanged, in a message whose framing is intact: it must be delivered. */
  must: boolean;
  /** How its delivery is recognised. */
  tcp?: { flow: TcpFlow; off: number; len: number };
  udp?: { flow: UdpFlow; serial: number };
  tinyUdp?: UdpFlow;
  id?: number;
  partial: boolean;
  zeroCsum: boolean;
  arp: boolean;
  ipv4: boolean;
}

interface Message {
  bytes: Uint8Array;
  /** rxLens: may differ from bytes.length when the framing lies. */
  len: number;
  seg: number;
  src: number;
  garbageFill: boolean;
  dgs: Datagram[];
}

interface IngressCase {
  label: string;
  hostile: boolean;
  msgs: Message[];
  tcp: TcpFlow[];
  udp: UdpFlow[];
  /** IP IDs of packets recognised by ID (ICMP, TCP without payload): must deliver / delivered. */
  mustIds: Set<number>;
  gotIds: Map<number, number>;
  arpRequests: number;
}

interface IngressConfig {
  name: string;
  mtu: number;
  /** Loop features: TUN writes with a virtio-net header; UDP_GRO receives; UDP_L4 GSO writes. */
  vnet: boolean;
  gro: boolean;
  uso: boolean;
}

function vxlanDatagram(inner: Uint8Array, innerLen: number, broadcast: boolean, etherType = 0x0800): Uint8Array {
  const d = new Uint8Array(ENCAP_HEADROOM + innerLen);
  d[0] = 0x08;
  d[4] = (VNI >>> 16) & 0xff;
  d[5] = (VNI >>> 8) & 0xff;
  d[6] = VNI & 0xff;
  if (broadcast) d.fill(0xff, 8, 14);
  else d.set(LOCAL_MAC, 8);
  d.set(PEERS[0].mac, 14);
  put16(d, 20, etherType);
  d.set(inner.subarray(0, Math.min(inner.length, innerLen)), ENCAP_HEADROOM);
  return d;
}

class IngressGen {
  readonly c: IngressCase;
  private idNext: number;
  private readonly partialRate: number;
  private readonly zeroRate: number;

  /** Largest length a receive reports: with MSG_TRUNC, a datagram's real length, past its slot without UDP_GRO. */
  private readonly maxLen: number;

  constructor(private readonly rng: Rng, private readonly cfg: IngressConfig, label: string, private readonly slot: number) {
    this.maxLen = cfg.gro ? GRO_SLOT : 0xffff;
    const hostile = rng.chance(0.7);
    this.c = { label, hostile, msgs: [], tcp: [], udp: [], mustIds: new Set(), gotIds: new Map(), arpRequests: 0 };
    this.idNext = rng.int(0x10000);
    // A case whose valid checksums are all complete: then any bit flip must be caught. (A plain
    // loop, without a virtio-net header, finishes unfinished checksums itself.)
    const allComplete = hostile && rng.chance(0.5);
    this.partialRate = allComplete ? 0 : rng.pick([0, 0.5, 1]);
    this.zeroRate = allComplete ? 0 : 0.1;
    const nTcp = rng.range(1, 4);
    const ports = [...PORTS];
    for (let i = 0; i < nTcp; i++) {
      const sport = ports.splice(rng.int(ports.length), 1)[0]!;
      this.c.tcp.push({
        index: i, src: PEERS[0].net + rng.range(2, 5), dst: LOCAL + rng.range(2, 5), sport, dport: TCP_DPORT, isn: rng.u32(), next: 0,
        ack: rng.u32(), window: rng.range(0x100, 0xffff), thl: rng.pick([20, 20, 32, 32, 40, 60]), tsval: rng.u32(), tainted: false, must: [], got: [], segs: [],
      });
    }
    const nUdp = rng.range(1, 3);
    for (let i = 0; i < nUdp; i++) {
      this.c.udp.push({
        index: 100 + i, src: PEERS[0].net + rng.range(2, 5), dst: LOCAL + rng.range(2, 5), sport: PORTS[rng.int(PORTS.length)], dport: UDP_DPORT + i,
        serial: rng.int(0x8000), tainted: false, lens: new Map(), fields: new Map(), must: new Set(), got: new Map(), mustTiny: 0, gotTiny: 0,
      });
    }
  }

  private nextId(): number {
    const id = this.idNext;
    this.idNext = (this.idNext + 1) & 0xffff;
    return id;
  }

  private csum(): Csum {
    return this.rng.chance(this.partialRate) ? 'partial' : 'complete';
  }

  /** Common IPv4 fields, now and then unusual (TOS, TTL, no DF, options). */
  private ipExtras(room: number): Partial<PacketSpec> {
    const r = this.rng;
    const x: Partial<PacketSpec> = {};
    if (r.chance(0.04)) x.tos = r.int(256);
    if (r.chance(0.03)) x.ttl = r.range(1, 255);
    if (r.chance(0.04)) x.df = false;
    if (r.chance(0.03) && room >= 8) x.ipOptions = 4 * r.range(1, Math.min(10, room >> 2));
    return x;
  }

  /** A TCP segment of `flow` whose packet is `len` bytes long (undefined when it cannot be). */
  tcpSegment(flow: TcpFlow, len: number, flagsHint?: number): { bytes: Uint8Array; dg: Partial<Datagram> } | undefined {
    const r = this.rng;
    const extras = this.ipExtras(len - 20 - flow.thl);
    const ihl = 20 + (extras.ipOptions ?? 0);
    const payload = len - ihl - flow.thl;
    if (payload < 0) return undefined;
    let flags = flagsHint ?? TCP_ACK;
    if (flagsHint === undefined) {
      if (r.chance(0.08)) flags = TCP_ACK | TCP_PSH;
      else if (r.chance(0.02)) flags = r.pick([TCP_ACK | TCP_FIN, TCP_SYN, TCP_ACK | TCP_RST, TCP_ACK | TCP_URG, TCP_ACK | TCP_ECE, TCP_ACK | TCP_CWR, 0]);
    }
    if (r.chance(0.03)) flow.window = r.range(0, 0xffff);
    if (r.chance(0.03)) flow.ack = (flow.ack + r.range(1, 5000)) >>> 0;
    if (r.chance(0.02)) flow.tsval = (flow.tsval + 1) >>> 0;
    const off = flow.next;
    const p = new Uint8Array(payload);
    for (let i = 0; i < payload; i++) p[i] = streamByte(flow.index, off + i);
    const csum = this.csum();
    const id = this.nextId();
    const bytes = new Uint8Array(len);
    writePacket(bytes, 0, {
      proto: IPPROTO_TCP, src: flow.src, dst: flow.dst, id, ...extras, sport: flow.sport, dport: flow.dport, seq: (flow.isn + off) >>> 0,
      ack: flow.ack, flags, window: flow.window, thl: flow.thl, tsval: flow.tsval, payload: p, csum,
    });
    if (payload > 0) {
      flow.segs.push({
        off, len: payload, ack: flow.ack, window: flow.window, tsval: flow.tsval, flags, tos: extras.tos ?? 0, ttl: extras.ttl ?? 64, df: extras.df !== false,
      });
    }
    flow.next += payload + ((flags & (TCP_SYN | TCP_FIN)) !== 0 ? 1 : 0);
    const dg: Partial<Datagram> = { partial: looksPartial(bytes), ipv4: true };
    if (payload > 0) dg.tcp = { flow, off, len: payload };
    else dg.id = id;
    return { bytes, dg };
  }

  udpDatagram(flow: UdpFlow, len: number): { bytes: Uint8Array; dg: Partial<Datagram> } | undefined {
    const extras = this.ipExtras(len - 28);
    const ihl = 20 + (extras.ipOptions ?? 0);
    const payload = len - ihl - 8;
    if (payload < 0) return undefined;
    const serial = flow.serial;
    flow.serial = (flow.serial + 1) & 0xffff;
    const p = new Uint8Array(payload);
    if (payload >= 2) put16(p, 0, serial);
    for (let i = 2; i < payload; i++) p[i] = datagramByte(flow.index, serial, i);
    const r = this.rng;
    const csum: Csum = r.chance(this.zeroRate) ? 'zero' : this.csum();
    const id = this.nextId();
    const bytes = new Uint8Array(len);
    writePacket(bytes, 0, { proto: IPPROTO_UDP, src: flow.src, dst: flow.dst, id, ...extras, sport: flow.sport, dport: flow.dport, payload: p, csum });
    const dg: Partial<Datagram> = { partial: looksPartial(bytes), zeroCsum: csum === 'zero', ipv4: true };
    if (payload >= 2) {
      flow.lens.set(serial, payload);
      flow.fields.set(serial, udpFields(extras.tos ?? 0, extras.ttl ?? 64, extras.df !== false));
      dg.udp = { flow, serial };
    } else {
      dg.tinyUdp = flow;
    }
    return { bytes, dg };
  }

  icmpEcho(len: number): { bytes: Uint8Array; dg: Partial<Datagram> } | undefined {
    const extras = this.ipExtras(len - 28);
    const ihl = 20 + (extras.ipOptions ?? 0);
    const payload = len - ihl - 8;
    if (payload < 0) return undefined;
    const id = this.nextId();
    const p = new Uint8Array(payload);
    for (let i = 0; i < payload; i++) p[i] = datagramByte(77, id, i);
    const bytes = new Uint8Array(len);
    writePacket(bytes, 0, { proto: IPPROTO_ICMP, src: PEERS[0].net + 2, dst: LOCAL + 2, id, ...extras, echoId: 0x77, echoSeq: id, payload: p, csum: 'complete' });
    return { bytes, dg: { id, ipv4: true } };
  }

  /** An inner packet of exactly `len` bytes of some kind, continuing `prefer` when it can. */
  anyPacket(len: number, prefer: number): { bytes: Uint8Array; dg: Partial<Datagram>; kind: number } {
    const r = this.rng;
    const kinds = [prefer, prefer, prefer, r.int(this.c.tcp.length + this.c.udp.length + 1)];
    for (const k of kinds) {
      let got: { bytes: Uint8Array; dg: Partial<Datagram> } | undefined;
      if (k < this.c.tcp.length) got = this.tcpSegment(this.c.tcp[k]!, len);
      else if (k < this.c.tcp.length + this.c.udp.length) got = this.udpDatagram(this.c.udp[k - this.c.tcp.length]!, len);
      else got = this.icmpEcho(len);
      if (got !== undefined) return { ...got, kind: k };
    }
    // Too short for anything else: a UDP datagram without options always fits 28 bytes and up.
    const flow = this.c.udp[0]!;
    const bytes = new Uint8Array(len);
    const serial = flow.serial;
    flow.serial = (flow.serial + 1) & 0xffff;
    const p = new Uint8Array(len - 28);
    if (p.length >= 2) put16(p, 0, serial);
    for (let i = 2; i < p.length; i++) p[i] = datagramByte(flow.index, serial, i);
    const id = this.nextId();
    writePacket(bytes, 0, { proto: IPPROTO_UDP, src: flow.src, dst: flow.dst, id, sport: flow.sport, dport: flow.dport, payload: p, csum: 'complete' });
    const dg: Partial<Datagram> = { partial: looksPartial(bytes), ipv4: true };
    if (p.length >= 2) {
      flow.lens.set(serial, p.length);
      flow.fields.set(serial, udpFields(0, 64, true));
      dg.udp = { flow, serial };
    } else {
      dg.tinyUdp = flow;
    }
    return { bytes, dg, kind: this.c.tcp.length };
  }

  /** A UDP_GRO train: `count` datagrams of one size, the last possibly shorter. */
  train(): Message {
    const r = this.rng;
    const mtu = this.cfg.mtu;
    // Two datagrams at least, and a message no larger than one UDP datagram's payload.
    const most = Math.min(mtu, (MAX_UDP_PAYLOAD >> 1) - ENCAP_HEADROOM);
    const L = r.chance(0.5) ? most : r.chance(0.5) ? r.range(28, 200) : r.range(28, most);
    const maxCount = Math.floor(MAX_UDP_PAYLOAD / (ENCAP_HEADROOM + L));
    const count = r.range(2, Math.min(maxCount, r.chance(0.9) ? 64 : 128));
    const lastLen = r.chance(0.3) ? r.range(28, L) : L;
    const dgs: Datagram[] = [];
    const parts: Uint8Array[] = [];
    let prefer = r.int(this.c.tcp.length + this.c.udp.length + 1);
    let at = 0;
    for (let j = 0; j < count; j++) {
      const innerLen = j === count - 1 ? lastLen : L;
      if (r.chance(0.15)) prefer = r.int(this.c.tcp.length + this.c.udp.length + 1);
      if (r.chance(0.01)) {
        // An ARP request for us, padded to the train's size: answered in place, in the middle of packets being joined.
        const a = this.arp(true);
        const d = new Uint8Array(ENCAP_HEADROOM + innerLen);
        d.set(a.bytes);
        parts.push(d);
        dgs.push(this.datagram(at, d.length, { arp: true }));
        at += d.length;
        continue;
      }
      // Now and then a shorter packet padded to the train's size (the receiver trims to the IPv4 length).
      const pktLen = r.chance(0.03) ? r.range(28, innerLen) : innerLen;
      const got = this.anyPacket(pktLen, prefer);
      const d = vxlanDatagram(got.bytes, innerLen, r.chance(0.03));
      parts.push(d);
      dgs.push(this.datagram(at, d.length, got.dg));
      at += d.length;
    }
    const bytes = new Uint8Array(at);
    let p = 0;
    for (const d of parts) {
      bytes.set(d, p);
      p += d.length;
    }
    return { bytes, len: at, seg: ENCAP_HEADROOM + L, src: PEERS[0].vtep, garbageFill: false, dgs };
  }

  private datagram(start: number, len: number, d: Partial<Datagram>): Datagram {
    const dg: Datagram = { start, len, must: true, partial: false, zeroCsum: false, arp: false, ipv4: false, ...d };
    return dg;
  }

  /** One datagram, no segment size. */
  single(): Message {
    const r = this.rng;
    const most = Math.min(this.cfg.mtu, MAX_UDP_PAYLOAD - ENCAP_HEADROOM);
    const len = r.chance(0.3) ? most : r.range(28, most);
    const got = this.anyPacket(len, r.int(this.c.tcp.length + this.c.udp.length + 1));
    const d = vxlanDatagram(got.bytes, len, r.chance(0.05));
    return { bytes: d, len: d.length, seg: r.chance(0.2) ? d.length : 0, src: PEERS[0].vtep, garbageFill: false, dgs: [this.datagram(0, d.length, got.dg)] };
  }

  /** A whole TCP super-packet in one datagram, as a kernel VXLAN sender's GSO packet crosses veth. */
  wholeSuper(): Message {
    const r = this.rng;
    // Larger than the MTU, as one datagram: none at an MTU that leaves no room.
    if (this.cfg.mtu >= MAX_UDP_PAYLOAD - ENCAP_HEADROOM) return this.single();
    const flow = r.pick(this.c.tcp);
    const len = r.range(this.cfg.mtu + 1, MAX_UDP_PAYLOAD - ENCAP_HEADROOM);
    const got = this.tcpSegment(flow, len, r.chance(0.7) ? TCP_ACK : TCP_ACK | TCP_PSH)!;
    const d = vxlanDatagram(got.bytes, len, false);
    return { bytes: d, len: d.length, seg: 0, src: PEERS[0].vtep, garbageFill: false, dgs: [this.datagram(0, d.length, got.dg)] };
  }

  arp(ours: boolean): Message {
    const d = new Uint8Array(ENCAP_HEADROOM + 28);
    const v = vxlanDatagram(new Uint8Array(0), 28, true, 0x0806);
    d.set(v);
    const a = ENCAP_HEADROOM;
    d.set([0, 1, 8, 0, 6, 4, 0, 1], a);
    d.set(PEERS[0].mac, a + 8);
    put32(d, a + 14, PEERS[0].net);
    put32(d, a + 24, ours ? LOCAL : LOCAL + 7);
    if (ours) this.c.arpRequests++;
    return { bytes: d, len: d.length, seg: 0, src: PEERS[0].vtep, garbageFill: false, dgs: [this.datagram(0, d.length, { arp: true })] };
  }

  build(rxBatch: number): void {
    const r = this.rng;
    const c = this.c;
    const n = r.chance(0.1) ? r.range(7, rxBatch) : r.range(1, 6);
    for (let m = 0; m < n; m++) {
      const k = r.int(100);
      let msg: Message;
      if (!this.cfg.gro) {
        // One datagram per receive.
        if (k < 75) msg = this.single();
        else if (k < 85) msg = this.arp(!c.hostile || r.chance(0.7));
        else if (!c.hostile) msg = this.single();
        else if (k < 90) msg = this.empty();
        else msg = this.full();
      } else if (k < 55) msg = this.train();
      else if (k < 77) msg = this.single();
      else if (k < 87) msg = this.wholeSuper();
      else if (k < 91) msg = this.arp(!c.hostile || r.chance(0.7));
      else if (!c.hostile) msg = this.train();
      else if (k < 93) msg = this.empty();
      else if (k < 95) msg = this.arpTrain();
      else if (k < 97) msg = this.shredded();
      else msg = this.full();
      if (c.hostile) this.damage(msg);
      c.msgs.push(msg);
    }
  }

  /** A train of ARP requests for our address: more, over a batch, than the replies it holds. */
  private arpTrain(): Message {
    const one = this.arp(true);
    const count = this.rng.range(2, 128);
    const bytes = new Uint8Array(count * one.len);
    const dgs: Datagram[] = [];
    for (let j = 0; j < count; j++) {
      bytes.set(one.bytes, j * one.len);
      dgs.push(this.datagram(j * one.len, one.len, { arp: true }));
    }
    return { bytes, len: bytes.length, seg: one.len, src: PEERS[0].vtep, garbageFill: false, dgs };
  }

  /** A message whose segment size claims far more datagrams than any kernel joins into one. */
  private shredded(): Message {
    const r = this.rng;
    const len = r.range(129, GRO_SLOT);
    const bytes = r.chance(0.5) ? GARBAGE.slice(0, len) : new Uint8Array(len);
    // 129 to 4096 datagrams: split, they would fit a batch.
    const lo = Math.ceil(len / 4096);
    const seg = r.range(lo, Math.max(lo, Math.floor((len - 1) / GRO_MAX_SEGMENTS)));
    return { bytes, len, seg, src: PEERS[0].vtep, garbageFill: false, dgs: [] };
  }

  /** A zero-length message. */
  private empty(): Message {
    return { bytes: new Uint8Array(0), len: 0, seg: this.rng.pick([0, 0, 1, 1500]), src: PEERS[0].vtep, garbageFill: false, dgs: [] };
  }

  /** A message of the slot's full size: garbage, or a train with garbage behind it. */
  private full(): Message {
    const r = this.rng;
    const base = r.chance(0.5) ? (this.cfg.gro ? this.train() : this.single()) : undefined;
    const bytes = GARBAGE.slice(0, this.slot);
    const dgs: Datagram[] = [];
    if (base !== undefined) {
      bytes.set(base.bytes);
      for (const d of base.dgs) dgs.push({ ...d, must: false });
    }
    const len = this.cfg.gro || r.chance(0.5) ? this.slot : r.range(this.slot + 1, this.maxLen);
    return { bytes, len, seg: r.pick([0, base?.seg ?? 1, r.range(1, 9000)]), src: PEERS[0].vtep, garbageFill: true, dgs };
  }

  /** Marks a datagram as changed: it need not be delivered; `uncaught` taints its flow. */
  private spoil(d: Datagram, uncaught: boolean): void {
    d.must = false;
    if (!uncaught) return;
    if (d.tcp !== undefined) d.tcp.flow.tainted = true;
    if (d.udp !== undefined) d.udp.flow.tainted = true;
  }

  private damage(msg: Message): void {
    const r = this.rng;
    if (r.chance(0.1)) msg.src = UNKNOWN_VTEP; // still delivered: counted only
    const dgs = msg.dgs;
    const chosen = new Set<number>();
    if (dgs.length > 0 && r.chance(0.4)) {
      // Bit flips, at most one per datagram: a complete checksum catches each; a partial or absent one does not.
      const flips = r.range(1, Math.min(3, dgs.length));
      while (chosen.size < flips) chosen.add(r.int(dgs.length));
      for (const j of chosen) {
        const d = dgs[j]!;
        const at = d.start + r.int(d.len);
        msg.bytes[at] ^= 1 << r.int(8);
        this.spoil(d, d.partial || d.zeroCsum || !d.ipv4);
      }
    }
    // A rewritten header gets its checksums fixed: on a flipped datagram that would hide the flip.
    const rest = dgs.filter((_, j) => !chosen.has(j));
    if (rest.length > 0 && r.chance(0.35)) this.rewrite(msg, r.pick(rest));
    if (r.chance(0.2)) {
      // Framing that lies: no datagram of the message need arrive.
      for (const d of dgs) d.must = false;
      const total = msg.len;
      switch (r.int(4)) {
        case 0:
          msg.len = r.range(0, Math.max(0, total - 1));
          break;
        case 1:
          msg.len = r.range(total, this.maxLen);
          break;
        case 2:
          msg.seg = r.pick([0, 1, r.range(1, 100), msg.seg + 1, Math.max(1, msg.seg - 1), msg.seg * 2, msg.seg >> 1, r.range(1, total + 100), total]);
          break;
        default:
          msg.seg = r.range(1, 0xffff);
          msg.len = r.range(0, this.maxLen);
      }
    }
  }

  /** Rewrites one header field of datagram `d`, then maybe fixes the checksums over it. */
  private rewrite(msg: Message, d: Datagram): void {
    const r = this.rng;
    const b = msg.bytes;
    const ip = d.start + ENCAP_HEADROOM;
    const end = d.start + d.len;
    if (ip + 20 > end) return;
    const ihl = ipv4.ihl(b, ip);
    const l4 = ip + ihl;
    this.spoil(d, true);
    switch (r.int(16)) {
      case 0: b[d.start + 4 + r.int(3)] ^= 1 + r.int(255); break; // VNI
      case 1: b[d.start] = r.int(256); break; // VXLAN flags
      case 2: b[d.start + 1 + r.int(3)] = 1 + r.int(255); break; // reserved
      case 3: b[d.start + 8 + r.int(6)] ^= 1 + r.int(255); break; // inner destination MAC
      case 4: put16(b, d.start + 20, r.pick([0x86dd, 0x0806, 0x8100, r.int(0x10000)])); break;
      case 5: b[ip] = (r.int(16) << 4) | (b[ip] & 0x0f); break; // version
      case 6: b[ip] = (b[ip] & 0xf0) | r.int(16); break; // IHL
      case 7: put16(b, ip + 2, r.pick([0, 19, 20, r.int(0x10000), ipv4.totalLength(b, ip) + r.range(-30, 30), msg.bytes.length - ENCAP_HEADROOM])); break;
      case 8: put16(b, ip + 6, r.pick([0x2000, 0x6000, r.range(1, 0x1fff), r.int(0x10000)])); break; // fragment fields
      case 9: if (l4 + 13 <= end) b[l4 + 12] = r.int(16) << 4; break; // TCP data offset (or whatever lies there)
      case 10: if (l4 + 14 <= end) b[l4 + 13] = r.int(256); break; // TCP flags
      case 11: if (l4 + 8 <= end) put32(b, l4 + 4, r.u32()); break; // TCP sequence
      case 12: if (l4 + 6 <= end) put16(b, l4 + 4, r.pick([0, 7, 8, r.int(0x10000), get16(b, l4 + 4) + r.range(-10, 10)])); break; // UDP length
      case 13: b[ip + 9] = r.pick([IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, r.int(256)]); break;
      case 14: put16(b, ip + 2, msg.bytes.length - ENCAP_HEADROOM); break; // claims the whole message
      default: if (l4 + 20 <= end) b[l4 + 12] = 0xf0; break; // TCP data offset 60
    }
    const nihl = ipv4.ihl(b, ip);
    if (r.chance(0.6) && nihl >= 20 && ip + nihl <= end) ipv4.updateHeaderChecksum(b, ip);
    if (r.chance(0.5)) fixL4(b, ip, end, r.chance(0.5) ? 'complete' : 'partial');
  }
}

/** Recomputes the L4 checksum of the packet at b[ip] when its headers leave a place to put it. */
function fixL4(b: Uint8Array, ip: number, end: number, how: Csum): void {
  const ihl = ipv4.ihl(b, ip);
  const total = ipv4.totalLength(b, ip);
  const proto = b[ip + 9];
  if (ihl < 20 || total > end - ip || (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP && proto !== IPPROTO_ICMP)) return;
  const l4len = total - ihl;
  const field = ip + ihl + l4FieldOffset(proto);
  if (l4len < l4FieldOffset(proto) + 2) return;
  if (how === 'partial' && proto !== IPPROTO_ICMP) {
    put16(b, field, pseudoField(b, ip, proto, l4len));
    return;
  }
  put16(b, field, 0);
  const pseudo = proto === IPPROTO_ICMP ? 0 : pseudoHeaderSumV4(ipv4.src(b, ip), ipv4.dst(b, ip), proto, l4len);
  put16(b, field, ~fold(sum16(b, ip + ihl, l4len, pseudo)) & 0xffff);
}

function udpFields(tos: number, ttl: number, df: boolean): number {
  return (tos << 9) | (ttl << 1) | (df ? 1 : 0);
}

/** The segment record holding stream offset `off` (records are in stream order). */
function segmentAt(segs: SegmentRecord[], off: number): SegmentRecord | undefined {
  let lo = 0;
  let hi = segs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = segs[mid]!;
    if (off < r.off) hi = mid - 1;
    else if (off >= r.off + r.len) lo = mid + 1;
    else return r;
  }
  return undefined;
}

/** What the pod's kernel takes from one TUN write, checked against the flows of the case. */
function deliver(c: IngressCase, ip: Uint8Array, gtype: number, gso: number, say: (s: string) => string): void {
  if (ipv4.isFragment(ip, 0)) return;
  const ihl = ipv4.ihl(ip, 0);
  const proto = ip[9];
  const l4 = ihl;
  const l4len = ip.length - ihl;
  const id = ipv4.id(ip, 0);
  const byId = (): void => {
    const n = (c.gotIds.get(id) ?? 0) + 1;
    c.gotIds.set(id, n);
    ensure(!(c.mustIds.has(id) && n > 1), () => say(`packet with IP ID ${id} delivered ${n} times`));
  };
  if (proto === IPPROTO_TCP) {
    if (l4len < 20) return;
    const thl = (ip[l4 + 12] >>> 4) << 2;
    if (thl < 20 || thl > l4len) return;
    const payload = l4len - thl;
    const flow = c.tcp.find((f) => f.src === ipv4.src(ip, 0) && f.dst === ipv4.dst(ip, 0) && f.sport === get16(ip, l4) && f.dport === get16(ip, l4 + 2));
    if (payload === 0) {
      byId();
      return;
    }
    if (flow === undefined) return;
    const off = (get32(ip, l4 + 4) - flow.isn) >>> 0;
    if (!flow.tainted) {
      for (let i = 0; i < payload; i++) {
        const want = streamByte(flow.index, off + i);
        ensure(ip[l4 + thl + i] === want, () => say(`TCP flow ${flow.index}: byte ${off + i} of the stream (payload byte ${i} of ${payload}, gso ${gtype}/${gso}) is ${ip[l4 + thl + i]}, sent ${want}`));
      }
    }
    if (!flow.tainted && gtype === vnet.VNET_GSO_TCPV4) {
      // Each segment the kernel cuts this into is one that was sent, with the header it had.
      for (let at = 0; at < payload; at += gso) {
        const o = off + at;
        const n = Math.min(gso, payload - at);
        const r = segmentAt(flow.segs, o);
        const sayc = (x: string) => say(`TCP flow ${flow.index}: segment at stream byte ${o} (${n} bytes of a super-packet): ${x}`);
        ensure(r !== undefined && o + n <= r.off + r.len, () => sayc(`not within one segment sent (${r === undefined ? 'none' : `${r.off}+${r.len}`})`));
        ensure(get32(ip, l4 + 8) === r!.ack && get16(ip, l4 + 14) === r!.window, () => sayc(`ACK/window ${get32(ip, l4 + 8)}/${get16(ip, l4 + 14)}, sent ${r!.ack}/${r!.window}`));
        ensure(thl < 32 || get32(ip, l4 + thl - 8) === r!.tsval, () => sayc('timestamp option differs'));
        ensure((ip[l4 + 13] & ~TCP_PSH) === (r!.flags & ~TCP_PSH), () => sayc(`flags 0x${ip[l4 + 13].toString(16)}, sent 0x${r!.flags.toString(16)}`));
        ensure(ip[1] === r!.tos && ip[8] === r!.ttl && (ip[6] & 0x40) !== 0 === r!.df, () => sayc('TOS, TTL or DF differs'));
      }
    }
    flow.got.push([off, payload]);
    return;
  }
  if (proto === IPPROTO_UDP) {
    if (l4len < 8) return;
    const src = ipv4.src(ip, 0);
    const dst = ipv4.dst(ip, 0);
    const flow = c.udp.find((f) => f.src === src && f.dst === dst && f.sport === get16(ip, l4) && f.dport === get16(ip, l4 + 2));
    let data: number;
    let size: number;
    if (gtype === vnet.VNET_GSO_UDP_L4) {
      data = l4len - 8;
      size = gso;
    } else {
      const ulen = get16(ip, l4 + 4);
      if (ulen < 8 || ulen > l4len) return;
      data = ulen - 8;
      size = Math.max(1, data);
    }
    if (flow === undefined) return;
    if (data === 0) flow.gotTiny++;
    for (let at = 0; at < data; at += size) {
      const n = Math.min(size, data - at);
      const p = l4 + 8 + at;
      if (n < 2) {
        flow.gotTiny++;
        continue;
      }
      const serial = get16(ip, p);
      if (!flow.tainted) {
        const want = flow.lens.get(serial);
        ensure(udpFields(ip[1], ip[8], (ip[6] & 0x40) !== 0) === flow.fields.get(serial), () => say(`UDP flow ${flow.index}: datagram ${serial} arrived with other TOS, TTL or DF`));
        ensure(want === n, () => say(`UDP flow ${flow.index}: datagram ${serial} arrived with ${n} payload bytes, sent ${want}`));
        for (let i = 2; i < n; i++) {
          ensure(ip[p + i] === datagramByte(flow.index, serial, i), () => say(`UDP flow ${flow.index}: datagram ${serial} byte ${i} differs`));
        }
        const times = (flow.got.get(serial) ?? 0) + 1;
        ensure(times === 1, () => say(`UDP flow ${flow.index}: datagram ${serial} delivered ${times} times`));
        flow.got.set(serial, times);
      } else {
        flow.got.set(serial, (flow.got.get(serial) ?? 0) + 1);
      }
    }
    return;
  }
  if (proto === IPPROTO_ICMP) byId();
}

function checkIngressWrite(cfg: IngressConfig, c: IngressCase, snapshot: Uint8Array, rxSlot: number, w: Write, say: (s: string) => string): void {
  const b = w.bytes;
  const len = b.length;
  const at = cfg.vnet ? vnet.VNET_HDR_LEN : 0;
  ensure(len >= at + 20, () => say(`a write of ${len} bytes`));
  ensure(Math.floor(w.off / rxSlot) === Math.floor((w.off + len - 1) / rxSlot), () => say(`write at ${w.off} (+${len}) spans two receive slots`));
  // Without a virtio-net header a write reads as one with all fields zero.
  const v = cfg.vnet ? b : new Uint8Array(vnet.VNET_HDR_LEN);
  const flags = vnet.vnetFlags(v, 0);
  const gtype = vnet.gsoType(v, 0);
  const hdrLen = v[2] | (v[3] << 8);
  const gso = vnet.gsoSize(v, 0);
  const cs = vnet.csumStart(v, 0);
  const co = vnet.csumOffset(v, 0);
  const hdr = vnet.formatVnet(v, 0) + ` hdr_len=${hdrLen}`;
  const ip = b.subarray(at);
  const ipLen = ip.length;
  ensure(ip[0] >> 4 === 4, () => say(`IP version ${ip[0] >> 4} (${hdr})`));
  const ihl = ipv4.ihl(ip, 0);
  ensure(ihl >= 20 && ihl <= ipLen, () => say(`IHL ${ihl} in a ${ipLen}-byte packet`));
  ensure(ipv4.totalLength(ip, 0) === ipLen, () => say(`IPv4 total length ${ipv4.totalLength(ip, 0)}, written ${ipLen} bytes after the virtio-net header`));
  const proto = ip[9];
  const hdrOk = ipv4.headerChecksumValid(ip, 0);
  let accepted: boolean;
  if (gtype === vnet.VNET_GSO_NONE) {
    ensure(gso === 0 && hdrLen === 0, () => say(`no GSO but ${hdr}`));
    ensure(ipLen <= cfg.mtu, () => say(`a ${ipLen}-byte packet without GSO, MTU ${cfg.mtu}`));
    // Written as it arrived: the loop changes nothing in a packet it passes on alone, except,
    // without a virtio-net header, an unfinished TCP/UDP checksum (the field held the
    // pseudo-header sum), which it finishes: then the packet must verify.
    const finished = finishedField(cfg, ip, snapshot.subarray(w.off + at, w.off + at + ipLen));
    for (let i = 0; i < ipLen; i++) {
      if (ip[i] !== snapshot[w.off + at + i] && (finished < 0 || (i !== finished && i !== finished + 1))) {
        throw new Failure(say(`packet written alone differs from the bytes received at byte ${i} (${hdr})`));
      }
    }
    if (finished >= 0) {
      const l4len = proto === IPPROTO_UDP ? get16(ip, ihl + 4) : ipLen - ihl;
      ensure(l4Verifies(ip, 0, proto, ihl, l4len), () => say(`an unfinished checksum was finished wrong (${hdr})`));
    }
    if (flags === vnet.VNET_F_NEEDS_CSUM) {
      ensure(proto === IPPROTO_TCP || proto === IPPROTO_UDP, () => say(`NEEDS_CSUM on protocol ${proto}`));
      ensure(cs === ihl && co === l4FieldOffset(proto) && cs + co + 2 <= ipLen, () => say(`checksum at ${cs}+${co} in a ${ipLen}-byte packet, IHL ${ihl}, protocol ${proto}`));
      ensure(get16(ip, cs + co) === pseudoField(ip, 0, proto, ipLen - ihl), () => say(`NEEDS_CSUM but the field is not the pseudo-header sum (${hdr})`));
      ensure(!ipv4.isFragment(ip, 0), () => say('NEEDS_CSUM on a fragment'));
      accepted = hdrOk;
    } else {
      ensure(flags === 0 && cs === 0 && co === 0, () => say(`unexpected header ${hdr}`));
      let l4ok = true;
      if (!ipv4.isFragment(ip, 0) && (proto === IPPROTO_TCP || proto === IPPROTO_UDP || proto === IPPROTO_ICMP)) {
        const l4len = ipLen - ihl;
        if (l4len < l4FieldOffset(proto) + 2) l4ok = false;
        else if (proto === IPPROTO_UDP && get16(ip, ihl + 6) === 0) l4ok = true;
        else if (proto === IPPROTO_UDP) {
          const ulen = get16(ip, ihl + 4);
          l4ok = ulen >= 8 && ulen <= l4len && l4Verifies(ip, 0, proto, ihl, ulen);
        } else l4ok = l4Verifies(ip, 0, proto, ihl, l4len);
      }
      accepted = hdrOk && l4ok;
    }
  } else {
    ensure(flags === vnet.VNET_F_NEEDS_CSUM, () => say(`GSO without NEEDS_CSUM (${hdr})`));
    ensure(hdrOk, () => say(`GSO packet with a bad IPv4 header checksum (${hdr})`));
    ensure(!ipv4.isFragment(ip, 0), () => say(`GSO fragment (${hdr})`));
    const l4len = ipLen - ihl;
    if (gtype === vnet.VNET_GSO_TCPV4) {
      ensure(proto === IPPROTO_TCP && l4len >= 20, () => say(`TCPV4 GSO on protocol ${proto}, ${l4len} L4 bytes`));
      const thl = (ip[ihl + 12] >>> 4) << 2;
      ensure(thl >= 20 && hdrLen === ihl + thl && hdrLen < ipLen, () => say(`hdr_len ${hdrLen}, IHL ${ihl}, TCP header ${thl}, ${ipLen} bytes`));
      ensure(cs === ihl && co === 16, () => say(`TCP GSO checksum at ${cs}+${co}`));
      ensure(gso >= 1 && ipLen - hdrLen > gso, () => say(`gso_size ${gso} for ${ipLen - hdrLen} payload bytes`));
      ensure(hdrLen + gso <= cfg.mtu, () => say(`segments of ${hdrLen + gso} bytes, MTU ${cfg.mtu}`));
    } else if (gtype === vnet.VNET_GSO_UDP_L4) {
      ensure(cfg.uso, () => say('UDP_L4 GSO written to a device without USO'));
      ensure(proto === IPPROTO_UDP && ihl === 20 && hdrLen === 28 && cs === 20 && co === 6, () => say(`UDP GSO ${hdr}, protocol ${proto}, IHL ${ihl}`));
      ensure(get16(ip, ihl + 4) === l4len, () => say(`UDP length ${get16(ip, ihl + 4)} of ${l4len}`));
      ensure(gso >= 1 && ipLen - hdrLen > gso, () => say(`gso_size ${gso} for ${ipLen - hdrLen} payload bytes`));
      ensure(hdrLen + gso <= cfg.mtu, () => say(`segments of ${hdrLen + gso} bytes, MTU ${cfg.mtu}`));
    } else {
      throw new Failure(say(`unexpected gso type (${hdr})`));
    }
    ensure(get16(ip, cs + co) === pseudoField(ip, 0, proto, l4len), () => say(`GSO packet whose checksum field is not the pseudo-header sum (${hdr})`));
    accepted = true;
  }
  if (accepted) deliver(c, ip, gtype, gso, say);
}

function runIngressCase(b: Bench, cfg: IngressConfig, index: number): void {
  const rng = new Rng(caseSeed(1, index));
  const label = `ingress ${cfg.name} seed=0x${SEED.toString(16)} case=${index}`;
  const gen = new IngressGen(rng, cfg, label, b.loop.rxSlot);
  gen.build(b.loop.rxBatch);
  const c = gen.c;
  const { loop, ctx, rec } = b;
  const slot = loop.rxSlot;
  let rxBytes = 0;
  c.msgs.forEach((m, i) => {
    const base = i * slot;
    if (m.garbageFill) loop.rxMem.set(GARBAGE.subarray(0, slot), base);
    else loop.rxMem.fill(0, base, base + slot);
    loop.rxMem.set(m.bytes, base);
    loop.rxLens[i] = m.len;
    loop.rxSegs[i] = m.seg;
    loop.rxSrcIPs[i] = m.src;
    rxBytes += m.len;
  });
  for (const m of c.msgs) {
    for (const d of m.dgs) {
      if (!d.must) continue;
      if (d.tcp !== undefined) d.tcp.flow.must.push([d.tcp.off, d.tcp.len]);
      else if (d.udp !== undefined) d.udp.flow.must.add(d.udp.serial);
      else if (d.tinyUdp !== undefined) d.tinyUdp.mustTiny++;
      else if (d.id !== undefined) c.mustIds.add(d.id);
    }
  }
  const n = c.msgs.length;
  const snapshot = loop.rxMem.slice(0, n * slot);
  const before = ctx.counters.slice();
  rec.reset();
  const say = (s: string) => `${label} (${c.hostile ? 'hostile' : 'clean'}, ${n} messages): ${s}`;
  try {
    loop.fromUnderlay(ctx.table.beginRead(0), n);
  } catch (e) {
    throw new Failure(say(`fromUnderlay threw ${(e as Error).stack ?? String(e)}`));
  } finally {
    ctx.table.endRead(0);
  }
  const d = counterDelta(ctx.counters, before);
  try {
    checkIngress(cfg, c, snapshot, slot, rec, d, rxBytes, say);
  } catch (e) {
    if (process.env.TULLE_FUZZ_DUMP) dumpIngress(c, rec, d);
    throw e;
  }
}

/** Prints a failed case: the counters that moved, each message's datagrams and each write. */
function dumpIngress(c: IngressCase, rec: Recorder, d: Record<string, number>): void {
  const lines = [JSON.stringify(Object.fromEntries(Object.entries(d).filter(([, v]) => v !== 0)))];
  const hex = (b: Uint8Array) => Buffer.from(b.subarray(0, 80)).toString('hex');
  c.msgs.forEach((m, i) => {
    lines.push(`message ${i}: rxLens ${m.len} (${m.bytes.length} generated), rxSegs ${m.seg}, from ${ipv4.formatIpv4(m.src)}`);
    m.dgs.forEach((g, j) => {
      const kind = g.tcp ? `TCP flow ${g.tcp.flow.index} at ${g.tcp.off}+${g.tcp.len}` : g.udp ? `UDP flow ${g.udp.flow.index} #${g.udp.serial}` : g.arp ? 'ARP' : 'other';
      lines.push(`  datagram ${j} at ${g.start}+${g.len} ${g.must ? 'must arrive' : 'may be lost'}, ${kind}: ${hex(m.bytes.subarray(g.start, g.start + g.len))}`);
    });
  });
  rec.writes.forEach((w, i) => lines.push(`write ${i} at ${w.off}+${w.bytes.length}: ${hex(w.bytes)}`));
  console.log(lines.join('\n'));
}

function checkIngress(
  cfg: IngressConfig, c: IngressCase, snapshot: Uint8Array, slot: number, rec: Recorder, d: Record<string, number>, rxBytes: number, say: (s: string) => string,
): void {
  // Writes never overlap.
  const spans = rec.writes.map((w) => [w.off, w.off + w.bytes.length] as const).sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) ensure(spans[i]![0] >= spans[i - 1]![1], () => say(`writes overlap at ${spans[i]![0]}`));
  rec.writes.forEach((w, i) => checkIngressWrite(cfg, c, snapshot, slot, w, (s) => say(`write ${i} at ${w.off}: ${s}`)));

  // ARP replies go back to the requester, nothing else is sent.
  ensure(rec.sends.length === d.rx_arp_replies, () => say(`${rec.sends.length} sends for ${d.rx_arp_replies} ARP replies`));
  for (const s of rec.sends) {
    ensure(s.bytes.length === ENCAP_HEADROOM + 28 && get16(s.bytes, ENCAP_HEADROOM + 6) === 2 && get32(s.bytes, ENCAP_HEADROOM + 14) === LOCAL,
      () => say('an ARP reply that is not one'));
  }

  // Accounting: every datagram the messages split into is dropped under a counter, answered (ARP) or written.
  let drops = 0;
  for (const name of COUNTER_NAMES) if (name.startsWith('rx_drop_')) drops += d[name]!;
  const writes = rec.writes.length;
  const delivered = writes - d.tun_tx_super_packets! + d.rx_inner_super_packets! + d.tun_tx_coalesced_segments!;
  ensure(d.rx_datagrams === drops + d.rx_arp_replies! + delivered,
    () => say(`${d.rx_datagrams} datagrams: ${drops} dropped, ${d.rx_arp_replies} ARP replies, ${delivered} delivered in ${writes} writes`));
  ensure(d.rx_bytes === rxBytes, () => say(`rx_bytes ${d.rx_bytes}, received ${rxBytes}`));
  if (cfg.gro) {
    // A message claiming more datagrams than a kernel joins is one dropped datagram, not split;
    // with at most that many per message, a batch always has room for all of them.
    const claims = c.msgs.filter((m) => m.seg > 0 && m.len > 0 && Math.ceil(m.len / m.seg) > GRO_MAX_SEGMENTS).length;
    ensure(d.rx_drop_batch_full === claims, () => say(`rx_drop_batch_full ${d.rx_drop_batch_full}, ${claims} messages claim more than ${GRO_MAX_SEGMENTS} datagrams`));
  }
  if (!c.hostile) {
    ensure(drops === 0, () => say(`valid traffic dropped: ${JSON.stringify(Object.fromEntries(Object.entries(d).filter(([k, v]) => k.startsWith('rx_drop') && v !== 0)))}`));
    ensure(d.rx_arp_replies === c.arpRequests, () => say(`${d.rx_arp_replies} ARP replies for ${c.arpRequests} requests`));
    ensure(d.rx_inner_csum_bad === 0, () => say(`${d.rx_inner_csum_bad} valid checksums counted bad`));
  }

  // Everything valid and unchanged arrived, once.
  for (const f of c.tcp) {
    const got = [...f.got].sort((x, y) => x[0] - y[0]);
    if (!f.tainted) {
      for (let i = 1; i < got.length; i++) {
        ensure(got[i]![0] >= got[i - 1]![0] + got[i - 1]![1], () => say(`TCP flow ${f.index}: bytes from ${got[i]![0]} delivered twice`));
      }
    }
    for (const [off, len] of f.must) {
      // Contained in the union of what was delivered.
      let at = off;
      for (const [o, l] of got) if (o <= at && o + l > at) at = Math.max(at, o + l);
      ensure(at >= off + len, () => say(`TCP flow ${f.index}: stream bytes ${off}..${off + len} sent and not delivered (delivered up to ${at})`));
    }
  }
  for (const f of c.udp) {
    for (const s of f.must) ensure(f.got.has(s), () => say(`UDP flow ${f.index}: datagram ${s} sent and not delivered`));
    if (!f.tainted) ensure(f.gotTiny >= f.mustTiny, () => say(`UDP flow ${f.index}: ${f.gotTiny} datagrams under 2 bytes delivered of ${f.mustTiny}`));
    if (!c.hostile) ensure(f.gotTiny === f.mustTiny, () => say(`UDP flow ${f.index}: ${f.gotTiny} datagrams under 2 bytes delivered of ${f.mustTiny}`));
  }
  for (const id of c.mustIds) ensure(c.gotIds.get(id) === 1, () => say(`packet with IP ID ${id} delivered ${c.gotIds.get(id) ?? 0} times`));
}

// ---------------------------------------------------------------------------------------------
// Egress

interface EgressConfig {
  name: string;
  mtu: number;
  /** TUN reads carry a virtio-net header (false: plain packets, one per read). */
  vnet: boolean;
  gso: boolean;
  maxDatagram?: number;
}

/** One TUN read as generated. */
interface Input {
  /** The bytes read (virtio-net header first). */
  bytes: Uint8Array;
  /** Must be forwarded / must be dropped / either. */
  expect: 'forward' | 'drop' | 'any';
  /** A packet whose headers are sound: forwarded whole, its checksums must verify. */
  sound: boolean;
  /** Index into the case's TCP flows, for the stream check. */
  flow: number;
  what: string;
}

interface EgressFlow {
  index: number;
  src: number;
  dst: number;
  sport: number;
  isn: number;
  next: number;
}

class EgressGen {
  readonly inputs: Input[] = [];
  readonly flows: EgressFlow[] = [];
  readonly hostile: boolean;
  private id: number;
  readonly maxDatagram: number;

  constructor(private readonly rng: Rng, private readonly cfg: EgressConfig, private readonly slotRoom: number) {
    this.hostile = rng.chance(0.6);
    this.id = rng.int(0x10000);
    this.maxDatagram = cfg.maxDatagram ?? ENCAP_HEADROOM + cfg.mtu;
    const nFlows = rng.range(1, 4);
    for (let i = 0; i < nFlows; i++) {
      const peer = rng.pick(PEERS);
      this.flows.push({ index: i, src: LOCAL + rng.range(2, 9), dst: peer.net + rng.range(2, 9), sport: PORTS[i]!, isn: rng.u32(), next: 0 });
    }
  }

  /** Largest inner packet a single datagram of the path carries. */
  private get maxSingle(): number {
    return Math.min(this.cfg.mtu, this.maxDatagram - ENCAP_HEADROOM);
  }

  private vnetHeader(flags: number, type: number, hdrLen: number, size: number, cs: number, co: number): Uint8Array {
    const h = new Uint8Array(vnet.VNET_HDR_LEN);
    h[0] = flags;
    h[1] = type;
    h[2] = hdrLen & 0xff;
    h[3] = hdrLen >>> 8;
    h[4] = size & 0xff;
    h[5] = size >>> 8;
    h[6] = cs & 0xff;
    h[7] = cs >>> 8;
    h[8] = co & 0xff;
    h[9] = co >>> 8;
    return h;
  }

  private join(h: Uint8Array, p: Uint8Array): Uint8Array {
    const b = new Uint8Array(h.length + p.length);
    b.set(h);
    b.set(p, h.length);
    return b;
  }

  /** A TCP packet of `flow` with `payload` bytes; the checksum partial or complete. */
  private tcp(flow: EgressFlow, tag: number, payload: number, flags: number, ihl: number, thl: number, csum: Csum): Uint8Array {
    const p = new Uint8Array(payload);
    for (let i = 0; i < payload; i++) p[i] = streamByte(flow.index, flow.next + i);
    const b = new Uint8Array(ihl + thl + payload);
    writePacket(b, 0, {
      proto: IPPROTO_TCP, src: flow.src, dst: flow.dst, id: this.id, tos: tag << 2, ipOptions: ihl - 20, sport: flow.sport, dport: TCP_DPORT,
      seq: (flow.isn + flow.next) >>> 0, ack: 0x01020304, flags, window: 0x7000, thl, tsval: 99, payload: p, csum,
    });
    this.id = (this.id + 0x1000) & 0xffff;
    flow.next += payload;
    return b;
  }

  private udp(flow: EgressFlow, tag: number, payload: number, ihl: number, csum: Csum): Uint8Array {
    const p = new Uint8Array(payload);
    for (let i = 0; i < payload; i++) p[i] = datagramByte(flow.index, tag, i);
    const b = new Uint8Array(ihl + 8 + payload);
    writePacket(b, 0, { proto: IPPROTO_UDP, src: flow.src, dst: flow.dst, id: this.id, tos: tag << 2, ipOptions: ihl - 20, sport: flow.sport, dport: UDP_DPORT, payload: p, csum });
    this.id = (this.id + 0x1000) & 0xffff;
    return b;
  }

  private icmp(flow: EgressFlow, tag: number, payload: number): Uint8Array {
    const p = new Uint8Array(payload);
    for (let i = 0; i < payload; i++) p[i] = datagramByte(flow.index, tag, i);
    const b = new Uint8Array(28 + payload);
    writePacket(b, 0, { proto: IPPROTO_ICMP, src: flow.src, dst: flow.dst, id: this.id, tos: tag << 2, echoId: 1, echoSeq: tag, payload: p, csum: 'complete' });
    return b;
  }

  add(tag: number): void {
    const r = this.rng;
    const flow = r.pick(this.flows);
    const vnetRead = this.cfg.vnet;
    // Without a virtio-net header only single packets with complete checksums are read.
    const k = vnetRead ? r.int(100) : r.pick([45, 45, 45, 45, 45, 45, 45, 80, 80, 88]);
    const ihl = r.chance(0.9) ? 20 : 20 + 4 * r.range(1, 10);
    if (k < 30) {
      // A TCP super-packet as TSO hands it over.
      const thl = r.pick([20, 32, 32, 40, 60]);
      const hlen = ihl + thl;
      const mssMax = Math.min(this.maxDatagram - ENCAP_HEADROOM - hlen, this.cfg.mtu - hlen);
      const mss = r.chance(0.6) ? mssMax : r.range(Math.min(536, mssMax), mssMax);
      const payload = r.chance(0.5) ? r.range(mss + 1, 0xffff - hlen) : r.range(1, Math.min(0xffff - hlen, 8 * mss));
      const ecn = r.chance(0.1);
      const flags = r.pick([TCP_ACK, TCP_ACK | TCP_PSH, TCP_ACK | TCP_PSH | TCP_FIN]) | (ecn ? TCP_CWR | TCP_ECE : 0);
      const pkt = this.tcp(flow, tag, payload, flags, ihl, thl, 'partial');
      const h = this.vnetHeader(vnet.VNET_F_NEEDS_CSUM, vnet.VNET_GSO_TCPV4 | (ecn ? vnet.VNET_GSO_ECN : 0), hlen, mss, ihl, 16);
      this.inputs.push({ bytes: this.join(h, pkt), expect: 'forward', sound: true, flow: flow.index, what: `TCP super-packet ${payload}/${mss}` });
    } else if (k < 45) {
      // A UDP super-packet (a pod's UDP_SEGMENT send).
      const mssMax = Math.min(this.maxDatagram - ENCAP_HEADROOM - ihl - 8, this.cfg.mtu - ihl - 8);
      const mss = r.chance(0.6) ? mssMax : r.range(Math.min(100, mssMax), mssMax);
      const payload = r.range(1, Math.min(0xffff - ihl - 8, 64 * mss));
      const pkt = this.udp(flow, tag, payload, ihl, 'partial');
      const h = this.vnetHeader(vnet.VNET_F_NEEDS_CSUM, vnet.VNET_GSO_UDP_L4, ihl + 8, mss, ihl, 6);
      this.inputs.push({ bytes: this.join(h, pkt), expect: 'forward', sound: true, flow: -1, what: `UDP super-packet ${payload}/${mss}` });
    } else if (k < 80) {
      // A single packet, checksum partial (as the kernel leaves it) or complete.
      const proto = r.pick([IPPROTO_TCP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP]);
      const partial = proto !== IPPROTO_ICMP && vnetRead && r.chance(0.6);
      const room = this.maxSingle - ihl - (proto === IPPROTO_TCP ? 32 : 8);
      const payload = r.chance(0.3) ? room : r.range(0, room);
      const pkt = proto === IPPROTO_TCP
        ? this.tcp(flow, tag, payload, r.pick([TCP_ACK, TCP_ACK | TCP_PSH, TCP_SYN, TCP_ACK | TCP_FIN]), ihl, 32, partial ? 'partial' : 'complete')
        : proto === IPPROTO_UDP ? this.udp(flow, tag, payload, ihl, partial ? 'partial' : r.chance(0.1) ? 'zero' : 'complete') : this.icmp(flow, tag, payload);
      const h = partial
        ? this.vnetHeader(vnet.VNET_F_NEEDS_CSUM, 0, 0, 0, ihl, l4FieldOffset(proto))
        : this.vnetHeader(r.chance(0.2) ? vnet.VNET_F_DATA_VALID : 0, 0, 0, 0, 0, 0);
      this.inputs.push({ bytes: this.join(h, pkt), expect: 'forward', sound: true, flow: proto === IPPROTO_TCP ? flow.index : -1, what: `single protocol ${proto}, ${pkt.length} bytes` });
    } else if (k < 88) {
      this.dropped(tag, flow);
    } else {
      this.malformed(tag, flow, ihl);
    }
    const input = this.inputs[this.inputs.length - 1]!;
    if (this.hostile && r.chance(0.25)) this.flip(input);
    if (!vnetRead) input.bytes = input.bytes.subarray(Math.min(vnet.VNET_HDR_LEN, input.bytes.length));
  }

  /** Reads the data path must drop. */
  private dropped(tag: number, flow: EgressFlow): void {
    const r = this.rng;
    switch (r.int(4)) {
      case 0: {
        const p = new Uint8Array(48);
        p[0] = 0x60;
        p[1] = tag << 2;
        p[5] = 8;
        p[6] = 58;
        p[7] = 255;
        this.inputs.push({ bytes: this.join(new Uint8Array(10), p), expect: 'drop', sound: false, flow: -1, what: 'IPv6' });
        break;
      }
      case 1: {
        const p = this.udp({ ...flow, dst: NOWHERE }, tag, r.range(0, 100), 20, 'complete');
        this.inputs.push({ bytes: this.join(new Uint8Array(10), p), expect: 'drop', sound: false, flow: -1, what: 'no peer' });
        break;
      }
      case 2: {
        const len = r.range(0, 29);
        const b = new Uint8Array(len);
        if (len > 10) b[10] = 0x45;
        if (len > 11) b[11] = tag << 2;
        this.inputs.push({ bytes: b, expect: 'drop', sound: false, flow: -1, what: `${len}-byte read` });
        break;
      }
      default: {
        // As long as the slot: cut by the read.
        const b = new Uint8Array(this.slotRoom + (this.cfg.vnet ? 0 : vnet.VNET_HDR_LEN));
        const p = this.udp(flow, tag, 100, 20, 'complete');
        b.set(p, 10);
        ipv4.setTotalLength(b, 10, 0xffff);
        this.inputs.push({ bytes: b, expect: 'drop', sound: false, flow: -1, what: 'oversize read' });
      }
    }
  }

  /** A read whose virtio-net header or packet headers lie. */
  private malformed(tag: number, flow: EgressFlow, ihl: number): void {
    const r = this.rng;
    const kind = r.int(12);
    const udp = r.chance(0.3);
    const thl = 20 + 4 * r.int(11);
    const hlen = ihl + (udp ? 8 : thl);
    const mssMax = Math.min(this.maxDatagram - ENCAP_HEADROOM - hlen, this.cfg.mtu - hlen);
    let mss = r.range(Math.min(536, mssMax), mssMax);
    const payload = r.range(1, this.cfg.vnet ? 0xffff - hlen : Math.max(1, this.maxSingle - hlen));
    // Scratch flow so the stream of the real flows stays whole.
    const scratch: EgressFlow = { ...flow, index: 90 + flow.index };
    const pkt = udp ? this.udp(scratch, tag, payload, ihl, 'partial') : this.tcp(scratch, tag, payload, TCP_ACK, ihl, thl, 'partial');
    let type = udp ? vnet.VNET_GSO_UDP_L4 : vnet.VNET_GSO_TCPV4;
    let flags = vnet.VNET_F_NEEDS_CSUM;
    let hdrLen = hlen;
    let cs = ihl;
    let co = udp ? 6 : 16;
    let bytes = pkt;
    let what = '';
    switch (kind) {
      case 0: mss = 0; what = 'gso_size 0'; break;
      case 1: mss = r.range(mssMax + 1, 0xffff); what = `gso_size ${mss} too large`; break;
      case 2: mss = r.range(1, 64); what = `gso_size ${mss}`; break;
      case 3: type = r.pick([vnet.VNET_GSO_UDP, vnet.VNET_GSO_TCPV6, 2, 6, 0x7f, udp ? vnet.VNET_GSO_TCPV4 : vnet.VNET_GSO_UDP_L4]); what = `gso type ${type}`; break;
      case 4: hdrLen = r.int(0x10000); what = `hdr_len ${hdrLen}`; break;
      case 5: {
        // No GSO, NEEDS_CSUM at a place that lies.
        type = 0;
        mss = 0;
        cs = r.pick([0, r.int(ihl), r.int(0x10000), bytes.length - 1, bytes.length]);
        co = r.pick([0, 6, 16, r.int(0x10000), bytes.length]);
        bytes = bytes.subarray(0, Math.min(bytes.length, this.maxSingle));
        put16(bytes, 2, bytes.length);
        ipv4.updateHeaderChecksum(bytes, 0);
        what = `csum ${cs}+${co}`;
        break;
      }
      case 6: if (!udp) bytes[ihl + 12] = r.int(16) << 4; what = 'TCP data offset'; break;
      case 7: bytes[0] = 0x40 | r.int(16); what = `IHL ${(bytes[0] & 15) * 4}`; break;
      case 8: put16(bytes, 2, r.int(0x10000)); ipv4.updateHeaderChecksum(bytes, 0); what = 'total length'; break;
      case 9: bytes = bytes.subarray(0, r.range(20, Math.min(bytes.length, hlen + 8))); what = `truncated to ${bytes.length}`; break;
      case 10: bytes[0] = 0x65; what = 'version 6'; break;
      default: flags = r.pick([0, 2, 3, 0xff]); what = `flags ${flags}`;
    }
    const h = this.vnetHeader(flags, type, hdrLen, mss, cs, co);
    this.inputs.push({ bytes: this.join(h, bytes), expect: 'any', sound: false, flow: -1, what: `malformed (${what})` });
  }

  /** A bit flip anywhere but the tag (the TOS byte). */
  private flip(input: Input): void {
    const b = input.bytes;
    if (b.length < 12) return;
    let at = this.rng.int(b.length);
    if (at === 11) at = 0;
    b[at] ^= 1 << this.rng.int(8);
    input.expect = 'any';
    input.sound = false;
    input.flow = -1;
    input.what += ` flipped at ${at}`;
  }
}

function checkEgress(b: Bench, cfg: EgressConfig, gen: EgressGen, snapshot: Uint8Array[], say: (s: string) => string, d: Record<string, number>): void {
  const { rec } = b;
  const maxDatagram = gen.maxDatagram;
  const hdr = cfg.vnet ? vnet.VNET_HDR_LEN : 0;
  const n = gen.inputs.length;
  const outs: Uint8Array[][] = Array.from({ length: n }, () => []);
  const socks: number[][] = Array.from({ length: n }, () => []);
  for (const [k, s] of rec.sends.entries()) {
    ensure(s.bytes.length === s.memLength, () => say(`send ${k}: ${s.memLength} bytes at ${s.off} lie outside the egress memory`));
    ensure(s.dstPort === PORT && s.sock >= 0 && s.sock < FLOW_SOCKETS, () => say(`send ${k} to port ${s.dstPort} from socket ${s.sock}`));
    const dgs: Uint8Array[] = [];
    if (s.seg > 0) {
      ensure(cfg.gso, () => say(`send ${k} segmented without UDP_SEGMENT`));
      ensure(s.seg <= maxDatagram, () => say(`send ${k}: segments of ${s.seg} bytes, the path takes ${maxDatagram}`));
      ensure(s.bytes.length <= MAX_UDP_PAYLOAD, () => say(`send ${k}: ${s.bytes.length} bytes in one UDP_SEGMENT message`));
      ensure(Math.ceil(s.bytes.length / s.seg) <= 64, () => say(`send ${k}: ${Math.ceil(s.bytes.length / s.seg)} segments`));
      for (let at = 0; at < s.bytes.length; at += s.seg) dgs.push(s.bytes.subarray(at, Math.min(s.bytes.length, at + s.seg)));
    } else {
      dgs.push(s.bytes);
    }
    for (const [j, dg] of dgs.entries()) {
      const sayd = (x: string) => say(`send ${k} datagram ${j} (${dg.length} bytes): ${x}`);
      ensure(dg.length >= ENCAP_HEADROOM + 20, () => sayd('too short'));
      ensure(dg[0] === 0x08 && dg[1] === 0 && dg[2] === 0 && dg[3] === 0 && dg[7] === 0 && ((dg[4] << 16) | (dg[5] << 8) | dg[6]) === VNI, () => sayd('bad VXLAN header'));
      const inner = dg.subarray(ENCAP_HEADROOM);
      const peer = peerOf(ipv4.dst(inner, 0));
      ensure(peer !== undefined && s.dstIP === peer.vtep, () => sayd(`inner destination ${ipv4.formatIpv4(ipv4.dst(inner, 0))} sent to ${ipv4.formatIpv4(s.dstIP)}`));
      for (let i = 0; i < 6; i++) {
        ensure(dg[8 + i] === peer!.mac[i] && dg[14 + i] === LOCAL_MAC[i], () => sayd('inner Ethernet addresses'));
      }
      ensure(get16(dg, 20) === 0x0800, () => sayd('inner EtherType'));
      const tag = inner[1] >> 2;
      ensure(tag < n && gen.inputs[tag] !== undefined, () => sayd(`carries tag ${tag}, ${n} reads`));
      outs[tag]!.push(inner);
      socks[tag]!.push(s.sock);
    }
  }

  let dropped = 0;
  let segments = 0;
  for (let i = 0; i < n; i++) {
    const input = gen.inputs[i]!;
    const raw = snapshot[i]!;
    const got = outs[i]!;
    const sayi = (x: string) => say(`read ${i} (${input.what}): ${x}`);
    if (got.length === 0) {
      dropped++;
      ensure(input.expect !== 'forward', () => sayi('a valid read was not forwarded'));
      continue;
    }
    ensure(input.expect !== 'drop', () => sayi(`forwarded as ${got.length} datagrams`));
    const ip = raw.subarray(hdr);
    const len = ip.length;
    const wantSock = flowHashV4(ip, 0, len) % FLOW_SOCKETS;
    ensure(socks[i]!.every((s) => s === wantSock), () => sayi(`sent from sockets ${socks[i]!.join(',')}, its flow hashes to ${wantSock}`));
    const type = cfg.vnet ? raw[1] & ~vnet.VNET_GSO_ECN : vnet.VNET_GSO_NONE;
    const ihl = ipv4.ihl(ip, 0);
    const proto = ip[9];
    if (type === vnet.VNET_GSO_NONE) {
      ensure(got.length === 1, () => sayi(`a single packet became ${got.length} datagrams`));
      const out = got[0]!;
      ensure(out.length === len, () => sayi(`${len} bytes read, ${out.length} sent`));
      const needs = cfg.vnet && (raw[0] & vnet.VNET_F_NEEDS_CSUM) !== 0;
      const field = needs ? vnet.csumStart(raw, 0) + vnet.csumOffset(raw, 0) : -10;
      for (let j = 0; j < len; j++) {
        if (j === field || j === field + 1) continue;
        if (out[j] !== ip[j]) throw new Failure(sayi(`byte ${j} changed from ${ip[j]} to ${out[j]}`));
      }
      if (input.sound) {
        ensure(ipv4.headerChecksumValid(out, 0), () => sayi('IPv4 header checksum'));
        ensure(out.length + ENCAP_HEADROOM <= maxDatagram, () => sayi(`a ${out.length}-byte packet on a path of ${maxDatagram}`));
        if (proto === IPPROTO_UDP) ensure(get16(out, ihl + 6) !== 0 || get16(ip, ihl + 6) === 0, () => sayi('UDP checksum left 0'));
        ensure(proto === IPPROTO_UDP && get16(out, ihl + 6) === 0 ? true : l4Verifies(out, 0, proto, ihl, len - ihl), () => sayi('L4 checksum does not verify'));
        if (proto === IPPROTO_TCP) checkStream(gen, input, out, sayi);
      }
      continue;
    }
    // Segments of a super-packet: each a complete packet of the path's size.
    const udp = proto === IPPROTO_UDP;
    const thl = udp ? 8 : (ip[ihl + 12] >>> 4) << 2;
    const hlen = ihl + thl;
    const payload = len - hlen;
    const mss = vnet.gsoSize(raw, 0);
    const nseg = Math.ceil(payload / mss);
    ensure(got.length === nseg, () => sayi(`${payload} bytes at gso_size ${mss} became ${got.length} datagrams`));
    segments += got.length;
    const seq0 = udp ? 0 : get32(ip, ihl + 4);
    const flags0 = udp ? 0 : ip[ihl + 13];
    for (const [j, out] of got.entries()) {
      const sayj = (x: string) => sayi(`segment ${j} of ${nseg}: ${x}`);
      const chunk = Math.min(mss, payload - j * mss);
      ensure(out.length === hlen + chunk, () => sayj(`${out.length} bytes, expected ${hlen + chunk}`));
      ensure(out.length + ENCAP_HEADROOM <= maxDatagram, () => sayj(`a ${out.length + ENCAP_HEADROOM}-byte datagram on a path of ${maxDatagram}`));
      ensure(out[0] === ip[0] && ipv4.totalLength(out, 0) === out.length && ipv4.headerChecksumValid(out, 0), () => sayj('IPv4 header'));
      ensure(ipv4.id(out, 0) === ((ipv4.id(ip, 0) + j) & 0xffff), () => sayj('IPv4 ID'));
      for (let x = 12; x < ihl; x++) ensure(out[x] === ip[x], () => sayj(`IPv4 header byte ${x}`));
      if (udp) {
        ensure(get16(out, ihl + 4) === 8 + chunk, () => sayj('UDP length'));
        ensure(get16(out, ihl + 6) !== 0 && l4Verifies(out, 0, IPPROTO_UDP, ihl, 8 + chunk), () => sayj('UDP checksum'));
      } else {
        ensure(get32(out, ihl + 4) === ((seq0 + j * mss) >>> 0), () => sayj('TCP sequence'));
        let f = flags0;
        if (j < nseg - 1) f &= ~(TCP_FIN | TCP_PSH);
        if (j > 0) f &= ~TCP_CWR;
        ensure(out[ihl + 13] === f, () => sayj(`TCP flags 0x${out[ihl + 13].toString(16)}, expected 0x${f.toString(16)}`));
        for (const x of [0, 1, 2, 3, 8, 9, 10, 11, 12, 14, 15, 18, 19]) ensure(out[ihl + x] === ip[ihl + x], () => sayj(`TCP header byte ${x}`));
        for (let x = 20; x < thl; x++) ensure(out[ihl + x] === ip[ihl + x], () => sayj(`TCP option byte ${x}`));
        ensure(l4Verifies(out, 0, IPPROTO_TCP, ihl, thl + chunk), () => sayj('TCP checksum'));
      }
      for (let x = 0; x < chunk; x++) {
        if (out[hlen + x] !== ip[hlen + j * mss + x]) throw new Failure(sayj(`payload byte ${x} differs`));
      }
      if (!udp && input.sound) checkStream(gen, input, out, sayj);
    }
  }
  let drops = 0;
  for (const name of COUNTER_NAMES) if (name.startsWith('tun_rx_drop_')) drops += d[name]!;
  ensure(dropped === drops, () => say(`${dropped} reads not forwarded, ${drops} counted as dropped`));
  ensure(d.tun_rx_segments === segments, () => say(`tun_rx_segments ${d.tun_rx_segments}, ${segments} segments sent`));
  ensure(d.tun_rx_packets === n, () => say(`tun_rx_packets ${d.tun_rx_packets} for ${n} reads`));
}

/** The TCP payload of a packet of a valid read is the flow's stream at its sequence number. */
function checkStream(gen: EgressGen, input: Input, out: Uint8Array, say: (s: string) => string): void {
  const flow = gen.flows[input.flow];
  if (flow === undefined) return;
  const ihl = ipv4.ihl(out, 0);
  const thl = (out[ihl + 12] >>> 4) << 2;
  const off = (get32(out, ihl + 4) - flow.isn) >>> 0;
  for (let i = 0; i < out.length - ihl - thl; i++) {
    if (out[ihl + thl + i] !== streamByte(flow.index, off + i)) throw new Failure(say(`TCP flow ${flow.index}: stream byte ${off + i} differs`));
  }
}

function runEgressCase(b: Bench, cfg: EgressConfig, index: number): void {
  const rng = new Rng(caseSeed(2, index));
  const label = `egress ${cfg.name} seed=0x${SEED.toString(16)} case=${index}`;
  const { loop, ctx, rec } = b;
  const headroom = cfg.vnet ? VNET_READ_HEADROOM : ENCAP_HEADROOM;
  const slotRoom = loop.txSlot - headroom;
  const gen = new EgressGen(rng, cfg, slotRoom);
  const n = rng.chance(0.2) ? loop.tunBatch : rng.range(1, loop.tunBatch);
  for (let i = 0; i < n; i++) gen.add(i);
  let bytes = 0;
  const snapshot: Uint8Array[] = [];
  gen.inputs.forEach((input, i) => {
    const base = i * loop.txSlot;
    loop.txMem.fill(0, base, base + loop.txSlot);
    loop.txMem.set(input.bytes.subarray(0, slotRoom), base + headroom);
    loop.tunLens[i] = input.bytes.length;
    bytes += input.bytes.length;
    snapshot.push(input.bytes.slice());
  });
  const before = ctx.counters.slice();
  rec.reset();
  const say = (s: string) => `${label} (${gen.hostile ? 'hostile' : 'clean'}, ${n} reads): ${s}`;
  let read: number;
  try {
    read = loop.fromTun(ctx.table.beginRead(0), n, (what) => {
      throw new Failure(say(`fell back: ${what}`));
    });
  } catch (e) {
    if (e instanceof Failure) throw e;
    throw new Failure(say(`fromTun threw ${(e as Error).stack ?? String(e)}`));
  } finally {
    ctx.table.endRead(0);
  }
  // Without offloads reads have no byte budget and fromTun reports 0.
  ensure(read === (cfg.vnet ? bytes : 0), () => say(`fromTun reports ${read} bytes read of ${bytes}`));
  checkEgress(b, cfg, gen, snapshot, say, counterDelta(ctx.counters, before));
}

// ---------------------------------------------------------------------------------------------
// Suites

const INGRESS: IngressConfig[] = [
  { name: 'mtu 1450', mtu: 1450, vnet: true, gro: true, uso: true },
  { name: 'mtu 1450, no USO', mtu: 1450, vnet: true, gro: true, uso: false },
  { name: 'mtu 9000', mtu: 9000, vnet: true, gro: true, uso: true },
  { name: 'mtu 576', mtu: 576, vnet: true, gro: true, uso: true },
  { name: 'mtu 1450, no UDP_GRO', mtu: 1450, vnet: true, gro: false, uso: false },
  { name: 'mtu 1450, plain', mtu: 1450, vnet: false, gro: false, uso: false },
  { name: 'mtu 65000', mtu: 65000, vnet: true, gro: true, uso: true },
];
const INGRESS_CASES: Record<string, number> = {
  'mtu 1450': 1400, 'mtu 1450, no USO': 500, 'mtu 9000': 400, 'mtu 576': 500, 'mtu 1450, no UDP_GRO': 500, 'mtu 1450, plain': 500, 'mtu 65000': 150,
};

describe.each(INGRESS)('ingress fuzz, $name', (cfg) => {
  let b: Bench;
  beforeAll(async () => {
    b = await bench(cfg.mtu, { vnet: cfg.vnet, gso: cfg.vnet, gro: cfg.gro, uso: cfg.uso });
  });
  afterAll(() => {
    if (process.env.TULLE_FUZZ_STATS) console.log(cfg.name, JSON.stringify(Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, b.ctx.counters[i]]).filter(([, v]) => v !== 0))));
    b.loop.close();
  });

  test('hostile and valid underlay messages: sound TUN writes, valid traffic delivered once, every datagram accounted', () => {
    for (const i of caseIndices(INGRESS_CASES[cfg.name]!)) runIngressCase(b, cfg, i);
  });
});

const EGRESS: EgressConfig[] = [
  { name: 'mtu 1450, UDP_SEGMENT', mtu: 1450, vnet: true, gso: true },
  { name: 'mtu 1450, no UDP_SEGMENT', mtu: 1450, vnet: true, gso: false },
  { name: 'mtu 1450, underlay path 1400', mtu: 1450, vnet: true, gso: true, maxDatagram: 1400 },
  { name: 'mtu 9000, UDP_SEGMENT', mtu: 9000, vnet: true, gso: true },
  { name: 'mtu 1450, plain', mtu: 1450, vnet: false, gso: false },
  { name: 'mtu 65000, UDP_SEGMENT', mtu: 65000, vnet: true, gso: true },
];
const EGRESS_CASES: Record<string, number> = {
  'mtu 1450, UDP_SEGMENT': 600, 'mtu 1450, no UDP_SEGMENT': 300, 'mtu 1450, underlay path 1400': 300, 'mtu 9000, UDP_SEGMENT': 200,
  'mtu 1450, plain': 300, 'mtu 65000, UDP_SEGMENT': 100,
};

describe.each(EGRESS)('egress fuzz, $name', (cfg) => {
  let b: Bench;
  beforeAll(async () => {
    b = await bench(cfg.mtu, { vnet: cfg.vnet, gso: cfg.gso, gro: cfg.vnet, uso: cfg.vnet }, cfg.maxDatagram);
  });
  afterAll(() => {
    if (process.env.TULLE_FUZZ_STATS) console.log(cfg.name, JSON.stringify(Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, b.ctx.counters[i]]).filter(([, v]) => v !== 0))));
    b.loop.close();
  });

  test('TUN reads as the kernel gives them and malformed ones: complete VXLAN datagrams, streams kept, every read accounted', () => {
    for (const i of caseIndices(EGRESS_CASES[cfg.name]!)) runEgressCase(b, cfg, i);
  });
});

// Reproductions of what the fuzz found, kept as regular tests.

/** One UDP datagram to 10.254.1.2 in a VXLAN datagram, checksums complete. */
function validDatagram(payload: number): Uint8Array {
  const inner = new Uint8Array(28 + payload);
  writePacket(inner, 0, {
    proto: IPPROTO_UDP, src: PEERS[0].net + 2, dst: LOCAL + 2, id: 1, sport: 40000, dport: UDP_DPORT, payload: new Uint8Array(payload).fill(0x5a), csum: 'complete',
  });
  return vxlanDatagram(inner, inner.length, false);
}

test('a message whose segment size splits it into more datagrams than a kernel joins does not crowd out the valid messages after it', async () => {
  const b = await bench(1450, { vnet: true, gso: true, gro: true, uso: true });
  try {
    const { loop, ctx, rec } = b;
    // Message 0: 4096 bytes claimed to be 1-byte segments (as many datagrams as a batch holds);
    // message 1: empty, with a segment size; message 2: one valid datagram.
    const dg = validDatagram(100);
    const msgs: [Uint8Array, number, number][] = [[new Uint8Array(4096), 4096, 1], [new Uint8Array(0), 0, 1500], [dg, dg.length, 0]];
    msgs.forEach(([bytes, len, seg], m) => {
      loop.rxMem.fill(0, m * loop.rxSlot, (m + 1) * loop.rxSlot);
      loop.rxMem.set(bytes, m * loop.rxSlot);
      loop.rxLens[m] = len;
      loop.rxSegs[m] = seg;
      loop.rxSrcIPs[m] = PEERS[0].vtep;
    });
    loop.fromUnderlay(ctx.table.beginRead(0), 3);
    ctx.table.endRead(0);
    const c = ctx.counters;
    expect([c[C.rx_datagrams], c[C.rx_bytes], c[C.rx_drop_batch_full], c[C.rx_drop_short]]).toEqual([3, 4096 + dg.length, 1, 1]);
    expect(rec.writes.length).toBe(1);
    expect(rec.writes[0]!.bytes.subarray(vnet.VNET_HDR_LEN)).toEqual(dg.subarray(ENCAP_HEADROOM));
  } finally {
    b.loop.close();
  }
});

test('the fuzz helpers are deterministic', () => {
  const a = new Rng(caseSeed(1, 5));
  const c = new Rng(caseSeed(1, 5));
  expect(Array.from({ length: 8 }, () => a.u32())).toEqual(Array.from({ length: 8 }, () => c.u32()));
});
