/**
 * A worker's rehearsal: before it forwards real traffic, its forwarding code runs on made-up
 * traffic between two made-up nodes, A and B, each a ForwardLoop of the same shape as the real
 * one (same features, batch size and MTU) but with no fds: what A sends is handed to B as its
 * UDP receive would deliver it, and B's TUN writes are collected. Both directions run every round.
 *
 * Why: V8 compiles a function to fast machine code only after it has run for a while. A new
 * worker at a packet rate of a few hundred per second (pings, a quiet pod) would run the
 * interpreter for minutes, paying tens of microseconds per packet in latency. A few hundred
 * rounds here bring the same code paths up to speed before the first real packet, and on
 * loopback a run of single small packets, each through step() on its own, does the same for the
 * code a ping's packets take.
 *
 * Each round also carries what real links bring that must be dropped (an IPv6 packet, a packet
 * for a subnet no peer has, a datagram with the wrong VNI), so the drop branches have been run
 * too: code V8 optimized without ever seeing a branch is thrown away the first time it is taken.
 *
 * The rounds also check the data path end to end: every inner packet A reads must come out of
 * B's TUN writes with the same bytes (super-packets and joined runs are compared as the byte
 * streams they carry), and the made-up bad packets must be dropped. The result names the first
 * difference; the worker logs it as an error.
 */
import { C, COUNTER_COUNT } from '../dataplane/counters.js';
import * as native from '../io/native.js';
import { errnoName } from '../io/errors.js';
import type { DataplaneContext } from '../dataplane/context.js';
import { ENCAP_HEADROOM } from '../dataplane/encap.js';
import { PeerTable, type PeerEntry } from '../dataplane/peers.js';
import { VNET_READ_HEADROOM } from '../dataplane/segment.js';
import type { SendBatch } from '../dataplane/batch.js';
import { fold, l4ChecksumOffset, l4ChecksumV4, pseudoHeaderSumV4 } from '../wire/checksum.js';
import { put16 } from '../wire/bytes.js';
import {
  IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_FLAG_DF, IPV4_MIN_HEADER_LEN, dst as ipv4Dst, ihl as ipv4Ihl, protocol, setDst, setFlagsFragment, setId,
  setIhl, setProtocol, setSrc, setTotalLength, setTtl, setVersion, src as ipv4Src, updateHeaderChecksum,
} from '../wire/ipv4.js';
import {
  TCP_ACK, TCP_ACK_OFF, TCP_DATA_OFF_OFF, TCP_DST_PORT_OFF, TCP_MIN_HEADER_LEN, TCP_PSH, TCP_SRC_PORT_OFF, TCP_WINDOW_OFF,
  headerLen as tcpHeaderLen, setFlags, setSeq,
} from '../wire/tcp.js';
import { UDP_HEADER_LEN, setDstPort, setLength as setUdpLength, setSrcPort } from '../wire/udp.js';
import { VNET_GSO_TCPV4, VNET_GSO_UDP_L4, VNET_HDR_LEN, gsoSize, writeGso, writeNone, writePartial } from '../wire/vnet.js';
import { ETH_DST_OFF, ETH_TYPE_OFF, ETHERTYPE_IPV4 } from '../wire/ethernet.js';
import { VXLAN_HEADER_LEN, writeHeader } from '../wire/vxlan.js';
import { ForwardLoop, type LoopResources, type RehearsalSink } from './loop.js';
import { CONTROL_WORDS, type Features } from './init.js';

const NET_A = 0x0afe0100; // 10.254.1.0/24
const NET_B = 0x0afe0200; // 10.254.2.0/24
const NET_NOWHERE = 0x0afe6300; // 10.254.99.0/24: no peer has it
const VTEP_A = 0xc0000201; // 192.0.2.1 (TEST-NET-1: never on a real wire; nothing is sent anyway)
const VTEP_B = 0xc0000202;
const MAC_A = Uint8Array.of(0x02, 0x7e, 0, 0, 0, 1);
const MAC_B = Uint8Array.of(0x02, 0x7e, 0, 0, 0, 2);
/** Segments in the TCP super-packet of a round (offloaded loops only). */
const SUPER_SEGMENTS = 8;
const SMALL_TCP = 4;
/** IPv4 and TCP headers without options. */
const TCP_IP_HEADERS = IPV4_MIN_HEADER_LEN + TCP_MIN_HEADER_LEN;
const SMALL_UDP = 5;

/** Same property order as the worker's real context, so both share V8's hidden class. */
export function dataplaneContext(
  table: PeerTable, vni: number, vtepMAC: Uint8Array, overlayIP: number, mtu: number, port: number, flowSockets: number, counters: Float64Array,
): DataplaneContext {
  return { table, vni, vtepMAC, overlayIP, mtu, port, flowSockets, counters };
}

export interface RehearsalOptions {
  features: Features;
  batchSize: number;
  mtu: number;
  port: number;
  vni: number;
  flowSockets: number;
  /** Stop after this many rounds... */
  rounds: number;
  /** ...or once this much time has passed, whichever comes first. */
  budgetMs: number;
  /**
   * Loopback only: after the checked rounds, up to this many single small packets each way, one
   * at a time through the loops' step() as a ping's packets go (default 0). The checked rounds
   * then get CHECKED_SHARE of the budget and these the rest.
   */
  singles?: number;
  /**
   * Run the loops on real fds: a datagram socket pair as each node's TUN device and UDP sockets
   * on 127.0.0.1 as the underlay, so poll, the reads and the sends run as they will. Falls back
   * to the in-memory rehearsal (and says why) when the namespace has no working loopback.
   */
  loopback: boolean;
}

export interface RehearsalResult {
  rounds: number;
  /** Single small packets carried each way (RehearsalOptions.singles). */
  singles: number;
  ms: number;
  /** Inner packets read from the two made-up TUN devices, and segments written to them. */
  packetsIn: number;
  packetsOut: number;
  /** Inner payload bytes (after IPv4 + L4 headers) read and written. */
  payloadIn: number;
  payloadOut: number;
  /** Packets made to be dropped (not IPv4, no peer, wrong VNI) that were counted as dropped. */
  dropped: number;
  /** The first difference found between what went in and what came out, or null. */
  mismatch: string | null;
  /** How it ran: over real fds on the loopback device, or in memory without fds. */
  mode: 'loopback' | 'in memory';
  /** Why a loopback rehearsal fell back to memory. */
  note?: string;
}

/**
 * Payload bytes per inner protocol, each in order. Each made-up protocol is one flow, and only a
 * flow's own order is kept end to end (a send batch goes out socket by socket).
 */
class Streams {
  readonly tcp = new Bytes(1 << 20);
  readonly udp = new Bytes(1 << 16);
  readonly other = new Bytes(1 << 16);

  of(proto: number): Bytes {
    return proto === IPPROTO_TCP ? this.tcp : proto === IPPROTO_UDP ? this.udp : this.other;
  }

  get len(): number {
    return this.tcp.len + this.udp.len + this.other.len;
  }

  reset(): void {
    this.tcp.len = 0;
    this.udp.len = 0;
    this.other.len = 0;
  }

  /** How `got` differs from this (the payload read), or null. */
  difference(got: Streams): string | null {
    for (const [name, w, g] of [['TCP', this.tcp, got.tcp], ['UDP', this.udp, got.udp], ['ICMP', this.other, got.other]] as const) {
      const d = firstDifference(w.buf, w.len, g.buf, g.len);
      if (d !== null) return `${name}: ${d}`;
    }
    return null;
  }
}

/** Payload bytes in order. */
class Bytes {
  readonly buf: Uint8Array;
  len = 0;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }

  add(mem: Uint8Array, off: number, n: number): boolean {
    if (this.len + n > this.buf.length) return false;
    this.buf.set(mem.subarray(off, off + n), this.len);
    this.len += n;
    return true;
  }
}

/** Collects one side's output: sends become the peer's receive slots, TUN writes are kept. */
class Sink implements RehearsalSink {
  /** Messages queued for the peer's next fromUnderlay. */
  pending = 0;
  peer!: ForwardLoop;
  srcVtep = 0;
  packetsOut = 0;
  payloadOut = 0;
  /** Payload bytes written to this side's TUN device. */
  readonly out = new Streams();
  mismatch: string | null = null;

  /** `vnet`: TUN writes start with a virtio-net header. */
  constructor(private readonly vnet: boolean) {}

  sent(mem: Uint8Array, b: SendBatch, gso: boolean): void {
    const p = this.peer;
    for (let k = 0; k < b.count; k++) {
      const seg = gso ? b.segSizes[k] : 0;
      if (p.features.gro || seg === 0 || b.lens[k] <= seg) {
        this.deliver(mem, b.offs[k], b.lens[k], seg > 0 && b.lens[k] > seg ? seg : 0);
        continue;
      }
      // Without UDP_GRO the peer receives each segment on its own.
      for (let at = 0; at < b.lens[k]; at += seg) this.deliver(mem, b.offs[k] + at, Math.min(seg, b.lens[k] - at), 0);
    }
  }

  private deliver(mem: Uint8Array, off: number, len: number, seg: number): void {
    const p = this.peer;
    if (this.pending === p.rxBatch || len > p.rxSlot) {
      this.mismatch ??= `a message of ${len} bytes did not fit the peer's receive slots`;
      return;
    }
    const m = this.pending++;
    p.rxMem.set(mem.subarray(off, off + len), m * p.rxSlot);
    p.rxLens[m] = len;
    p.rxSegs[m] = seg;
    p.rxSrcIPs[m] = this.srcVtep;
  }

  written(mem: Uint8Array, offs: Int32Array, lens: Int32Array, count: number): void {
    for (let i = 0; i < count; i++) this.take(mem, offs[i], lens[i]);
  }

  /** Keeps the payload of one TUN write (a packet, or a super-packet that stands for several). */
  private take(mem: Uint8Array, off: number, len: number): void {
    let ip = off;
    let gso = 0;
    if (this.vnet) {
      ip = off + VNET_HDR_LEN;
      len -= VNET_HDR_LEN;
      gso = gsoSize(mem, off);
    }
    const ihl = ipv4Ihl(mem, ip);
    const proto = protocol(mem, ip);
    const l4 = ip + ihl;
    const hl = l4HeaderLen(mem, l4, proto);
    const payload = len - ihl - hl;
    if (payload < 0 || !this.out.of(proto).add(mem, l4 + hl, payload)) {
      this.mismatch ??= `a TUN write of ${len} bytes does not hold a whole packet`;
      return;
    }
    this.payloadOut += payload;
    this.packetsOut += gso > 0 ? Math.ceil(payload / gso) : 1;
  }
}

function superSegments(mtu: number): number {
  return Math.min(SUPER_SEGMENTS, Math.floor((0xffff - TCP_IP_HEADERS) / (mtu - TCP_IP_HEADERS)));
}

/** Header length of the L4 header at `l4`: TCP's own; UDP's and an ICMP echo's are both 8 bytes. */
function l4HeaderLen(mem: Uint8Array, l4: number, proto: number): number {
  return proto === IPPROTO_TCP ? tcpHeaderLen(mem, l4) : UDP_HEADER_LEN;
}

/** Writes one inner IPv4 packet at `ip`; returns its length. Payload bytes come from `fill`. */
function packet(mem: Uint8Array, ip: number, src: number, dst: number, proto: number, payload: number, fill: number, seq: number, flags: number): number {
  const hl = proto === IPPROTO_TCP ? TCP_MIN_HEADER_LEN : UDP_HEADER_LEN;
  const len = IPV4_MIN_HEADER_LEN + hl + payload;
  mem.fill(0, ip, ip + IPV4_MIN_HEADER_LEN + hl);
  setVersion(mem, ip, 4);
  setIhl(mem, ip, IPV4_MIN_HEADER_LEN);
  setTotalLength(mem, ip, len);
  setId(mem, ip, fill & 0xff);
  setFlagsFragment(mem, ip, IPV4_FLAG_DF);
  setTtl(mem, ip, 64);
  setProtocol(mem, ip, proto);
  setSrc(mem, ip, src);
  setDst(mem, ip, dst);
  updateHeaderChecksum(mem, ip);
  const l4 = ip + IPV4_MIN_HEADER_LEN;
  if (proto === IPPROTO_TCP) {
    put16(mem, l4 + TCP_SRC_PORT_OFF, 40000);
    put16(mem, l4 + TCP_DST_PORT_OFF, 5201);
    setSeq(mem, l4, seq);
    put16(mem, l4 + TCP_ACK_OFF + 2, 1);
    mem[l4 + TCP_DATA_OFF_OFF] = (TCP_MIN_HEADER_LEN / 4) << 4;
    setFlags(mem, l4, flags);
    put16(mem, l4 + TCP_WINDOW_OFF, 0xff00);
  } else if (proto === IPPROTO_UDP) {
    setSrcPort(mem, l4, 40001);
    setDstPort(mem, l4, 5202);
    setUdpLength(mem, l4, UDP_HEADER_LEN + payload);
  } else {
    mem[l4] = 8; // ICMP echo request
  }
  for (let i = 0; i < payload; i++) mem[l4 + hl + i] = (fill + i * 7) & 0xff;
  return len;
}

/** Stores a packet's L4 checksum: complete, or (partial) the pseudo-header sum left for offload. */
function l4Checksum(mem: Uint8Array, ip: number, len: number, partial: boolean): void {
  const proto = protocol(mem, ip);
  const at = ip + ipv4Ihl(mem, ip) + l4ChecksumOffset(proto);
  put16(mem, at, partial ? fold(pseudoHeaderSumV4(ipv4Src(mem, ip), ipv4Dst(mem, ip), proto, len - ipv4Ihl(mem, ip))) : l4ChecksumV4(mem, ip));
}

/** The TUN side of a loop: slots the made-up packets are laid out in. */
type TunSlots = Pick<ForwardLoop, 'txMem' | 'txSlot' | 'tunLens' | 'tunBatch'>;

/**
 * Fills `loop`'s TUN slots with one round of traffic from `src` to `dst` and returns how many
 * packets, appending their payload bytes to `expect`. Offloaded loops get a TCP super-packet
 * (partial checksum, as a TSO device hands it over), small TCP segments of one flow, small UDP
 * datagrams of one flow (both partial), an ICMP echo and, where there is room, a UDP
 * super-packet of that flow; plain loops get the same without the super-packets, all with
 * complete checksums. Then what must be dropped, where there is room.
 */
function fillRound(loop: TunSlots, vnet: boolean, mtu: number, src: number, dst: number, round: number, expect: Streams, count: { delivered: number }): number {
  const mem = loop.txMem;
  let n = 0;
  count.delivered = 0;
  const room = Math.min(loop.tunBatch, loop.tunLens.length);
  const put = (proto: number, payload: number, seq: number, flags: number, superMss: number): void => {
    if (n === room) return;
    const base = n * loop.txSlot;
    const vh = base + VNET_READ_HEADROOM;
    const ip = base + ENCAP_HEADROOM;
    const len = packet(mem, ip, src, dst, proto, payload, round + n * 13, seq, flags);
    if (vnet) {
      const partial = proto !== IPPROTO_ICMP;
      if (superMss > 0) {
        const l4 = ip + IPV4_MIN_HEADER_LEN;
        writeGso(mem, vh, proto === IPPROTO_TCP ? VNET_GSO_TCPV4 : VNET_GSO_UDP_L4, IPV4_MIN_HEADER_LEN + l4HeaderLen(mem, l4, proto), superMss,
          IPV4_MIN_HEADER_LEN, l4ChecksumOffset(proto));
      } else if (partial) writePartial(mem, vh, IPV4_MIN_HEADER_LEN, l4ChecksumOffset(proto));
      else writeNone(mem, vh);
      l4Checksum(mem, ip, len, partial);
      loop.tunLens[n] = len + VNET_HDR_LEN;
    } else {
      l4Checksum(mem, ip, len, false);
      loop.tunLens[n] = len;
    }
    expect.of(proto).add(mem, ip + IPV4_MIN_HEADER_LEN + l4HeaderLen(mem, ip + IPV4_MIN_HEADER_LEN, proto), payload);
    count.delivered += superMss > 0 ? Math.ceil(payload / superMss) : 1;
    n++;
  };
  /** Packets the data path must drop (counted, nothing written): not IPv4, and no peer for it. */
  const dropped = (): void => {
    for (const kind of [6, 4]) {
      if (n === room) return;
      const base = n * loop.txSlot;
      const ip = base + ENCAP_HEADROOM;
      let len: number;
      if (kind === 6) {
        mem.fill(0, ip, ip + 48);
        mem[ip] = 0x60; // an IPv6 packet, as the kernel sends on a new link (router solicitation)
        mem[ip + 5] = 8;
        mem[ip + 6] = 58;
        mem[ip + 7] = 255;
        len = 48;
      } else {
        len = packet(mem, ip, src, NET_NOWHERE + 2, IPPROTO_UDP, 16, round, 0, 0);
        l4Checksum(mem, ip, len, false);
      }
      if (vnet) writeNone(mem, base + VNET_READ_HEADROOM);
      loop.tunLens[n] = vnet ? len + VNET_HDR_LEN : len;
      n++;
    }
  };
  const mss = mtu - TCP_IP_HEADERS;
  const segments = superSegments(mtu);
  let seq = (round * 0x10000) >>> 0;
  if (vnet) {
    put(IPPROTO_TCP, segments * mss, seq, TCP_ACK | TCP_PSH, mss);
    seq = (seq + segments * mss) >>> 0;
  }
  for (let i = 0; i < SMALL_TCP; i++, seq = (seq + 100) >>> 0) put(IPPROTO_TCP, 100, seq, TCP_ACK, 0);
  for (let i = 0; i < SMALL_UDP; i++) put(IPPROTO_UDP, 64, 0, 0, 0);
  put(IPPROTO_ICMP, 56, 0, 0, 0);
  // A UDP super-packet (a pod's UDP_SEGMENT send): two full datagrams and a shorter one.
  const udpMss = mtu - IPV4_MIN_HEADER_LEN - UDP_HEADER_LEN;
  if (vnet) put(IPPROTO_UDP, 2 * udpMss + 100, 0, 0, udpMss);
  dropped();
  return n;
}

/** Adds a copy of the first datagram queued for `to`, with the wrong VNI: `to` must drop it. */
function badVni(to: ForwardLoop, sink: Sink): void {
  const m = sink.pending;
  if (m === 0 || m === to.rxBatch) return;
  const len = to.rxSegs[0] > 0 ? to.rxSegs[0] : to.rxLens[0];
  const at = m * to.rxSlot;
  to.rxMem.copyWithin(at, 0, len);
  to.rxMem[at + 6] ^= 0x01; // the low byte of the VNI
  to.rxLens[m] = len;
  to.rxSegs[m] = 0;
  to.rxSrcIPs[m] = to.rxSrcIPs[0];
  sink.pending = m + 1;
}

/** How the payload bytes read (`want`) and written (`got`) differ, or null when they do not. */
export function firstDifference(want: Uint8Array, wantLen: number, got: Uint8Array, gotLen: number): string | null {
  if (gotLen !== wantLen) return `${gotLen} payload bytes written, ${wantLen} read`;
  for (let i = 0; i < wantLen; i++) if (got[i] !== want[i]) return `payload byte ${i} differs`;
  return null;
}

/** Runs the rehearsal and reports what went through. Allocates freely: it runs before the loop. */
export async function rehearse(o: RehearsalOptions): Promise<RehearsalResult> {
  let note: string | undefined;
  if (o.loopback) {
    const fds: number[] = [];
    try {
      return await rehearseOnLoopback(o, fds);
    } catch (e) {
      note = `no loopback rehearsal: ${(e as Error).message}`;
    } finally {
      for (const fd of fds) native.close(fd);
    }
  }
  const r = await rehearseInMemory(o);
  if (note !== undefined) r.note = note;
  return r;
}

/** One made-up node: a ForwardLoop shaped like the worker's, on `io`, with one peer. */
async function madeUpNode(o: RehearsalOptions, io: LoopResources, own: number, mac: Uint8Array, port: number, peer: PeerEntry): Promise<{ loop: ForwardLoop; ctx: DataplaneContext }> {
  const table = new PeerTable(4);
  await table.publish([peer]);
  const ctx = dataplaneContext(table, o.vni, mac, own, o.mtu, port, o.flowSockets, scratchCounters());
  const loop = new ForwardLoop(0, ctx, io, o.batchSize, new SharedArrayBuffer(CONTROL_WORDS * 4), { ...o.features });
  return { loop, ctx };
}

function newResult(mode: RehearsalResult['mode']): RehearsalResult {
  return { rounds: 0, singles: 0, ms: 0, packetsIn: 0, packetsOut: 0, payloadIn: 0, payloadOut: 0, dropped: 0, mismatch: null, mode };
}

function scratchCounters(): Float64Array {
  return new Float64Array(new SharedArrayBuffer(COUNTER_COUNT * Float64Array.BYTES_PER_ELEMENT));
}

function droppedOf(ctx: DataplaneContext): number {
  const c = ctx.counters;
  return c[C.tun_rx_drop_not_ipv4] + c[C.tun_rx_drop_no_peer] + c[C.rx_drop_bad_vni];
}

const LOOPBACK = 0x7f000001;
/**
 * With single packets to carry, the checked rounds get this share of the budget. The checked
 * rounds call each loop's step() once or twice per round with a full batch; a packet of a ping
 * wakes a loop for itself alone, and the code it runs (step, send, the single-packet branches of
 * segmenting and coalescing) is only optimized once it has run some thousands of times. Fresh
 * 2-node labs, 1 worker, pings 5 ms apart: p50 of the first 200 pings 160–232 µs after the
 * checked rounds alone, 137–160 µs after 3000 flood pings first.
 */
const CHECKED_SHARE = 0.5;
/** ICMP payload of a single packet (a default ping's). */
const SINGLE_PAYLOAD = 56;
/** How long a loopback round waits for its datagrams to come through. */
const DELIVERY_WAIT_MS = 200;
/** Receive slots for reading back what a loop wrote to its stand-in TUN device. */
const READBACK_SLOT = 0x10000 + 64;
const READBACK_SLOTS = 16;

/** The rehearsal on real fds (see RehearsalOptions.loopback). `fds` collects what to close. */
async function rehearseOnLoopback(o: RehearsalOptions, fds: number[]): Promise<RehearsalResult> {
  const keep = (fd: number): number => (fds.push(fd), fd);
  const sockets = (): { rx: number; port: number; send: Int32Array; tun: number; driver: number } => {
    const rx = keep(native.openUdp(LOOPBACK, 0, false, 1 << 20));
    if (o.features.gro && native.udpSetGro(rx, true) !== 0) throw new Error('UDP_GRO refused on 127.0.0.1');
    const send = new Int32Array(o.flowSockets);
    for (let i = 0; i < o.flowSockets; i++) send[i] = keep(native.openUdp(LOOPBACK, 0, false, 1 << 20));
    const [tun, driver] = native.openSocketPair();
    keep(tun);
    keep(driver);
    return { rx, port: native.localPort(rx), send, tun, driver };
  };
  const sa = sockets();
  const sb = sockets();
  const stats = new Int32Array(native.STATS_LEN);
  // Does loopback carry anything here (a namespace's lo starts down)?
  native.udpSend(sa.send, new Uint8Array(1), Int32Array.of(0), Int32Array.of(1), Uint8Array.of(0), Uint32Array.of(LOOPBACK), Uint16Array.of(sb.port), 1, stats);
  if (stats[native.STAT_FAILED] !== 0) throw new Error(`sending on 127.0.0.1: ${errnoName(stats[native.STAT_LAST_ERRNO])}`);
  const probe = new Uint8Array(64);
  for (let tries = 0; tries < 100; tries++) {
    const got = native.udpRecv(sb.rx, probe, 64, 0, new Int32Array(1), new Uint32Array(1), new Uint16Array(1), 1);
    if (got === 1) break;
    if (got < 0 || tries === 99) throw new Error('the loopback probe datagram did not arrive');
    await new Promise((r) => setTimeout(r, 1));
  }

  const side = async (s: typeof sa, peerPort: number, own: number, peerNet: number, mac: Uint8Array, peerMac: Uint8Array) => {
    const { loop, ctx } = await madeUpNode(o, { tunFd: s.tun, rxFd: s.rx, sendFds: s.send, wakeFd: -1, rehearsal: undefined },
      own, mac, peerPort, { net: peerNet, prefix: 24, vtepIP: LOOPBACK, vtepMAC: peerMac });
    const stage: TunSlots = { txMem: new Uint8Array(loop.tunBatch * loop.txSlot), txSlot: loop.txSlot, tunLens: new Int32Array(loop.tunBatch), tunBatch: loop.tunBatch };
    return { loop, ctx, stage, driver: s.driver, send: s.send, sink: new Sink(o.features.vnet) };
  };
  const a = await side(sa, sb.port, NET_A, NET_B, MAC_A, MAC_B);
  const b = await secondSide(a.loop, () => side(sb, sa.port, NET_B, NET_A, MAC_B, MAC_A));
  const vnet = o.features.vnet;
  const count = { delivered: 0 };
  const want = new Streams();
  const r = newResult('loopback');
  const noFallback = (): void => undefined;
  const offs = new Int32Array(Math.max(a.stage.tunBatch, READBACK_SLOTS));
  const back = new Uint8Array(READBACK_SLOTS * READBACK_SLOT);
  const backLens = new Int32Array(READBACK_SLOTS);
  const backOffs = Int32Array.from({ length: READBACK_SLOTS }, (_, i) => i * READBACK_SLOT);
  const headroom = vnet ? VNET_READ_HEADROOM : ENCAP_HEADROOM;
  // VXLAN header with the wrong VNI, inner Ethernet, an ICMP packet.
  const wrongVni = new Uint8Array(ENCAP_HEADROOM + 28);
  writeHeader(wrongVni, 0, o.vni ^ 1);
  put16(wrongVni, VXLAN_HEADER_LEN + ETH_TYPE_OFF, ETHERTYPE_IPV4);
  packet(wrongVni, ENCAP_HEADROOM, NET_A + 2, NET_B + 2, IPPROTO_ICMP, 0, 0, 0, 0);
  /** Writes the first `n` packets of `from`'s stage to its stand-in TUN device. */
  const inject = (from: typeof a, n: number): void => {
    for (let i = 0; i < n; i++) offs[i] = i * from.stage.txSlot + headroom;
    if (native.tunWrite(from.driver, from.stage.txMem, offs, from.stage.tunLens, n, stats) !== n) {
      throw new Error(`writing to the stand-in TUN device: ${errnoName(stats[native.STAT_LAST_ERRNO])}`);
    }
  };
  /** Hands what `to` wrote to its stand-in TUN device to its sink. */
  const collect = (to: typeof a): void => {
    for (;;) {
      const k = native.tunRead(to.driver, back, READBACK_SLOT, 0, backLens, READBACK_SLOTS);
      if (k <= 0) break;
      to.sink.written(back, backOffs, backLens, k);
    }
  };
  const oneWay = (from: typeof a, to: typeof a, src: number, dst: number, where: string): void => {
    const n = fillRound(from.stage, vnet, o.mtu, src, dst, r.rounds, want, count);
    r.packetsIn += count.delivered;
    r.payloadIn += want.len;
    inject(from, n);
    from.loop.step(0, noFallback);
    from.ctx.table.endRead(0);
    // Last, a datagram for `to` that is wrong only in its VNI: `to` must drop it as such. Once
    // that drop is counted, everything sent before it has been through `to` as well.
    wrongVni.set(to.ctx.vtepMAC, VXLAN_HEADER_LEN + ETH_DST_OFF);
    const badBefore = to.ctx.counters[C.rx_drop_bad_vni];
    native.udpSend(from.send, wrongVni, Int32Array.of(0), Int32Array.of(wrongVni.length), Uint8Array.of(0),
      Uint32Array.of(LOOPBACK), Uint16Array.of(from.ctx.port), 1, stats);
    const deadline = performance.now() + DELIVERY_WAIT_MS;
    do {
      to.loop.step(10, noFallback);
      to.ctx.table.endRead(0);
    } while (to.ctx.counters[C.rx_drop_bad_vni] === badBefore && performance.now() < deadline);
    if (to.ctx.counters[C.rx_drop_bad_vni] === badBefore && r.mismatch === null) {
      r.mismatch = `${where}, round ${r.rounds}: the datagram with the wrong VNI was not dropped for it within ${DELIVERY_WAIT_MS} ms`;
    }
    collect(to);
    compareRound(r, want, to.sink, `${where}, round ${r.rounds}`);
  };
  // One ICMP echo at a time, as a ping's packets arrive: read by `from`'s step(), sent, received
  // by `to`'s step() and written to its stand-in TUN device, then compared as a round's are.
  const single = (from: typeof a, to: typeof a, src: number, dst: number, where: string): void => {
    const mem = from.stage.txMem;
    const ip = ENCAP_HEADROOM;
    const len = packet(mem, ip, src, dst, IPPROTO_ICMP, SINGLE_PAYLOAD, r.singles, 0, 0);
    l4Checksum(mem, ip, len, false);
    if (vnet) writeNone(mem, VNET_READ_HEADROOM);
    from.stage.tunLens[0] = vnet ? len + VNET_HDR_LEN : len;
    want.of(IPPROTO_ICMP).add(mem, ip + IPV4_MIN_HEADER_LEN + l4HeaderLen(mem, ip + IPV4_MIN_HEADER_LEN, IPPROTO_ICMP), SINGLE_PAYLOAD);
    r.packetsIn++;
    r.payloadIn += SINGLE_PAYLOAD;
    inject(from, 1);
    from.loop.step(0, noFallback);
    from.ctx.table.endRead(0);
    const before = to.sink.packetsOut;
    const deadline = performance.now() + DELIVERY_WAIT_MS;
    do {
      to.loop.step(1, noFallback);
      to.ctx.table.endRead(0);
      collect(to);
    } while (to.sink.packetsOut === before && performance.now() < deadline);
    compareRound(r, want, to.sink, `${where}, single packet ${r.singles}`);
  };
  return playRounds(o, r, a, b, () => {
    oneWay(a, b, NET_A + 2, NET_B + 2, 'A to B');
    oneWay(b, a, NET_B + 2, NET_A + 2, 'B to A');
  }, () => {
    single(a, b, NET_A + 2, NET_B + 2, 'A to B');
    if (r.mismatch === null) single(b, a, NET_B + 2, NET_A + 2, 'B to A');
  });
}

/** Records the first difference (at `where`) between what was read and what `got` wrote, then clears both for the next round. */
function compareRound(r: RehearsalResult, want: Streams, got: Sink, where: string): void {
  if (r.mismatch === null) {
    const d = got.mismatch ?? want.difference(got.out);
    if (d !== null) r.mismatch = `${where}: ${d}`;
  }
  got.out.reset();
  want.reset();
}

/** Makes the second side, closing the first side's loop if that fails (playRounds closes both otherwise). */
async function secondSide<T>(first: ForwardLoop, make: () => Promise<T>): Promise<T> {
  try {
    return await make();
  } catch (e) {
    first.close();
    throw e;
  }
}

interface RehearsalSide {
  loop: ForwardLoop;
  sink: Sink;
  ctx: DataplaneContext;
}

/** Plays `round` until the round count or the time budget runs out, then adds up both sides and closes both loops. */
function playRounds(o: RehearsalOptions, r: RehearsalResult, a: RehearsalSide, b: RehearsalSide, round: () => void, single?: () => void): RehearsalResult {
  const started = performance.now();
  const singles = single === undefined ? 0 : o.singles ?? 0;
  const checkedMs = singles > 0 ? o.budgetMs * CHECKED_SHARE : o.budgetMs;
  try {
    while (r.rounds < o.rounds && performance.now() - started < checkedMs) {
      round();
      r.rounds++;
    }
    while (r.singles < singles && r.mismatch === null && performance.now() - started < o.budgetMs) {
      single!();
      r.singles++;
    }
  } finally {
    a.loop.close();
    b.loop.close();
  }
  r.ms = performance.now() - started;
  r.packetsOut = a.sink.packetsOut + b.sink.packetsOut;
  r.payloadOut = a.sink.payloadOut + b.sink.payloadOut;
  r.dropped = droppedOf(a.ctx) + droppedOf(b.ctx);
  return r;
}

/** The rehearsal without fds: each loop's sends and writes are handed over in memory. */
async function rehearseInMemory(o: RehearsalOptions): Promise<RehearsalResult> {
  const side = async (own: number, peerNet: number, peerVtep: number, peerMac: Uint8Array, mac: Uint8Array): Promise<{ loop: ForwardLoop; sink: Sink; ctx: DataplaneContext }> => {
    const sink = new Sink(o.features.vnet);
    const { loop, ctx } = await madeUpNode(o, { tunFd: -1, rxFd: -1, sendFds: new Int32Array(o.flowSockets).fill(-1), wakeFd: -1, rehearsal: sink },
      own, mac, o.port, { net: peerNet, prefix: 24, vtepIP: peerVtep, vtepMAC: peerMac });
    return { loop, sink, ctx };
  };
  const a = await side(NET_A, NET_B, VTEP_B, MAC_B, MAC_A);
  const b = await secondSide(a.loop, () => side(NET_B, NET_A, VTEP_A, MAC_A, MAC_B));
  a.sink.peer = b.loop;
  a.sink.srcVtep = VTEP_A;
  b.sink.peer = a.loop;
  b.sink.srcVtep = VTEP_B;
  const vnet = o.features.vnet;
  const count = { delivered: 0 };
  const expectAtB = new Streams();
  const expectAtA = new Streams();
  const r = newResult('in memory');
  const noFallback = (): void => undefined;
  const oneWay = (from: typeof a, to: typeof a, src: number, dst: number, want: Streams, where: string): void => {
    const n = fillRound(from.loop, vnet, o.mtu, src, dst, r.rounds, want, count);
    r.packetsIn += count.delivered;
    r.payloadIn += want.len;
    const half = from.ctx.table.beginRead(0);
    from.loop.fromTun(half, n, noFallback);
    from.ctx.table.endRead(0);
    badVni(to.loop, from.sink);
    const m = from.sink.pending;
    from.sink.pending = 0;
    const toHalf = to.ctx.table.beginRead(0);
    to.loop.fromUnderlay(toHalf, m);
    to.ctx.table.endRead(0);
    compareRound(r, want, to.sink, `${where}, round ${r.rounds}`);
  };
  return playRounds(o, r, a, b, () => {
    oneWay(a, b, NET_A + 2, NET_B + 2, expectAtB, 'A to B');
    oneWay(b, a, NET_B + 2, NET_A + 2, expectAtA, 'B to A');
  });
}
