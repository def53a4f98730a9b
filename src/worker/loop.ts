/**
 * One worker's forwarding loop. The worker owns one TUN queue, one receive socket in the agent's
 * SO_REUSEPORT group on the VXLAN port, and `flowSockets` send sockets bound to ephemeral ports
 * (the outer source port of a datagram is the port of the socket its inner flow hashes to).
 *
 *   wait(TUN, UDP, wake) ─┬─ TUN readable ─► read ─► encap / segment ─► [csumBatch] ─► send
 *                         └─ UDP readable ─► recv ─► decap ─► [coalesce + csumBatch] ─► write
 *                                                      └─ ARP replies ─► send
 *
 * Two shapes of the same loop, fixed when the worker starts:
 * - plain: one packet per TUN read and per datagram, headers written in place (encap.ts, decap.ts);
 * - offloaded (`features.vnet`): TUN reads carry a virtio-net header and may be 64 KB TCP
 *   super-packets (segment.ts), sends may carry UDP_SEGMENT (`features.gso`), receives may be
 *   UDP_GRO-joined (`features.gro`) and are coalesced back into super-packets (coalesce.ts).
 *   If the kernel refuses a segmented send with EIO (no checksum offload on the path), the worker
 *   drops to single-datagram sends for good and counts it.
 *
 * The loop calls the addon directly (`nativeAddon`), not through the checking wrappers of
 * native.ts, and through an I/O port (native-bindings/src/port.cc): its fds and buffers are fixed
 * for the worker's life, so the constructor binds them once and each call passes the port's
 * handle and counts. The addon still refuses anything out of range. Unpacking up to ten typed
 * arrays per call was a measurable part of the workers' time for pings (README, "Latency").
 *
 * One native call per batch and step, and the wait reads what it reports in the same call
 * (portWait); a full batch means more may be waiting, so the loop drains up to
 * MAX_BATCHES_PER_WAKE batches before it waits again. The peer table is read inside a
 * beginRead/endRead section per round and released before every poll (see peers.ts).
 */
import * as native from '../io/native.js';
import { SysError } from '../io/errors.js';
import { Arena } from '../io/arena.js';
import { SendBatch, WriteBatch } from '../dataplane/batch.js';
import { C } from '../dataplane/counters.js';
import type { DataplaneContext } from '../dataplane/context.js';
import { ENCAP_HEADROOM, encapBatch } from '../dataplane/encap.js';
import { decapBatch, finishUnfinished } from '../dataplane/decap.js';
import { ChecksumJobs } from '../dataplane/csum-jobs.js';
import { VNET_READ_HEADROOM, segmentBatch, type SegmentArea } from '../dataplane/segment.js';
import { CoalesceScratch, coalesceBatch } from '../dataplane/coalesce.js';
import { VNET_HDR_LEN } from '../wire/vnet.js';
import { CONTROL_STOP, CONTROL_WORDS, type Features } from './init.js';

const raw = native.nativeAddon;

/** How long an idle worker sleeps in poll before it looks at its stop flag. */
export const POLL_TIMEOUT_MS = 250;
/** Batches per direction drained after one wake-up before polling again. */
export const MAX_BATCHES_PER_WAKE = 32;
/** Largest IPv4 packet (and so TUN super-packet) plus the virtio-net header. */
const MAX_TUN_READ = 0xffff + VNET_HDR_LEN;
/** TUN packets per read batch: with UDP_SEGMENT a super-packet is one message (two if it has more segments than one holds); without, up to ~47. */
const TUN_BATCH_GSO = 16;
const TUN_BATCH_NO_GSO = 4;
/**
 * Bytes after which a TUN read batch stops (offloaded loops): four 64 KB super-packets, so the
 * bytes read are still in cache when they are segmented and sent. Measured on a 2-node lab,
 * single-stream TCP (iperf3 -t 6, 4 runs each), with batches of at most 1, 2, 4, 8 and 16
 * super-packets: 8.11–8.20, 8.07–8.74, 8.40–9.03, 7.92–8.24 and 7.73–8.22 Gbit/s; with this
 * budget and 16 packets at most, 8.43–9.07. Small packets are still read 16 at a time, so they
 * still share UDP_SEGMENT sends.
 */
const TUN_BATCH_BYTES = 4 * 0x10000;
/** UDP_GRO receive slot: one message of up to 64 KB. */
const GRO_SLOT = 0x10000;
const GRO_BATCH = 32;
/**
 * Datagrams one UDP_GRO message can hold: a UDP_SEGMENT send from the same host reaches the
 * socket unsplit, up to UDP_MAX_SEGMENTS (128 in current kernels; GRO itself joins at most 64).
 */
const GRO_MAX_SEGMENTS = 128;
const ESEGMENT_IO = 5; // EIO
/** The port's bound batches: sends over txMem, ARP replies over rxMem, and TUN writes. */
const SEND_TX = 0;
const SEND_REPLIES = 1;
const WRITE_DECAPPED = 0;
const WRITE_COALESCED = 1;

/** poll() bits that mean the fd will not deliver again (the device went away, the socket broke). */
const POLL_BROKEN = native.POLLERR | native.POLLHUP | native.POLLNVAL;

/**
 * The TUN device went away under the worker (deleted by someone, or its namespace removed). A
 * new worker could only create a new, unconfigured device, so the supervisor stops the agent.
 */
export class DeviceGoneError extends Error {
  readonly code = 'EDEVICEGONE';
  constructor(worker: number) {
    super(`the TUN device went away under worker ${worker}`);
    this.name = 'DeviceGoneError';
  }
}

export interface LoopResources {
  readonly tunFd: number;
  readonly rxFd: number;
  readonly sendFds: Int32Array;
  readonly wakeFd: number;
  /**
   * A rehearsal (rehearsal.ts): what the loop sends or writes is handed here as well. A
   * rehearsing loop has no fds (-1): its system calls run and fail with EBADF, so the code
   * around them is the code real traffic runs. Real loops pass `undefined` explicitly, so both
   * kinds share one object shape for V8.
   */
  readonly rehearsal: RehearsalSink | undefined;
}

/** Where a rehearsing loop's output goes. */
export interface RehearsalSink {
  sent(mem: Uint8Array, b: SendBatch, gso: boolean): void;
  written(mem: Uint8Array, offs: Int32Array, lens: Int32Array, count: number): void;
}

/**
 * Whether the message at mem[base, base + total) is a single VXLAN datagram whose inner IPv4
 * packet fills it (a super-packet that crossed unsegmented) rather than a run of datagrams.
 */
function innerIsWhole(mem: Uint8Array, base: number, total: number): boolean {
  const ip = base + ENCAP_HEADROOM;
  if (total < ENCAP_HEADROOM + 20 || mem[base + ENCAP_HEADROOM - 2] !== 0x08 || mem[base + ENCAP_HEADROOM - 1] !== 0x00) return false;
  return ((mem[ip + 2] << 8) | mem[ip + 3]) === total - ENCAP_HEADROOM;
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

export class ForwardLoop {
  // Egress.
  readonly txMem: Uint8Array;
  readonly txSlot: number;
  tunBatch: number;
  /** A read batch stops once it holds this many bytes (TUN_BATCH_BYTES; no limit without offloads). */
  private readonly tunBudget: number;
  readonly tunLens: Int32Array;
  private readonly area: SegmentArea | undefined;
  private readonly sends: SendBatch;
  private readonly txJobs: ChecksumJobs;
  // Ingress.
  readonly rxMem: Uint8Array;
  readonly rxSlot: number;
  readonly rxBatch: number;
  private readonly rxCapacity: number;
  readonly rxLens: Int32Array;
  readonly rxSegs: Int32Array;
  readonly rxSrcIPs: Uint32Array;
  private readonly rxSrcPorts: Uint16Array;
  private readonly dgOffs: Int32Array;
  private readonly dgLens: Int32Array;
  private readonly dgSrcIPs: Uint32Array;
  private readonly dgGso: Int32Array;
  private readonly writes: WriteBatch;
  private readonly final: WriteBatch;
  private readonly replies: SendBatch;
  private readonly rxJobs: ChecksumJobs;
  private readonly scratch: CoalesceScratch;
  // Shared.
  private readonly stats: Int32Array;
  /** What portWait reports: revents, and what it read (PORT_* indices). */
  private readonly portState: Int32Array;
  /** The addon's handle for this loop's fds and buffers (native-bindings/src/port.cc). */
  private readonly port: number;
  private readonly tunHeadroom: number;
  private readonly control: Int32Array;

  constructor(
    private readonly id: number,
    private readonly ctx: DataplaneContext,
    private readonly io: LoopResources,
    private readonly batch: number,
    controlSab: SharedArrayBuffer,
    readonly features: Features,
    /** The largest datagram the underlay takes (its MTU minus IPv4 and UDP headers). */
    maxDatagram = ENCAP_HEADROOM + ctx.mtu,
  ) {
    // Sizes first: everything bound to the I/O port comes from one arena (Arena.fit).
    let txBytes: number;
    let segBytes = 0;
    let sendCap: number;
    if (features.vnet) {
      this.tunBatch = features.gso ? TUN_BATCH_GSO : TUN_BATCH_NO_GSO;
      this.tunBudget = TUN_BATCH_BYTES;
      this.txSlot = roundUp(VNET_READ_HEADROOM + MAX_TUN_READ, 64);
      // Worst case per super-packet: 64 KB of payload plus VXLAN + Ethernet + IPv4 + TCP headers per segment.
      segBytes = TUN_BATCH_GSO * (0xffff + 48 * (ENCAP_HEADROOM + 120));
      txBytes = this.txSlot * TUN_BATCH_GSO + segBytes;
      sendCap = native.MAX_BATCH;
    } else {
      this.tunBatch = batch;
      this.tunBudget = 0x7fffffff;
      // Slots hold the largest accepted packet plus its headers, and one byte more so a longer
      // (cut) packet is told apart (see tunRead).
      this.txSlot = roundUp(ENCAP_HEADROOM + ctx.mtu + 1, 64);
      txBytes = this.txSlot * batch;
      sendCap = batch;
    }
    const tunLens = Math.max(this.tunBatch, TUN_BATCH_GSO);
    if (features.gro) {
      this.rxSlot = GRO_SLOT;
      this.rxBatch = GRO_BATCH;
      this.rxCapacity = GRO_SLOT;
    } else {
      // One byte more than the largest accepted datagram, so an oversize one is told apart.
      this.rxSlot = roundUp(ENCAP_HEADROOM + ctx.mtu + 1, 64);
      this.rxBatch = batch;
      this.rxCapacity = this.rxSlot;
    }
    const datagrams = features.gro ? GRO_BATCH * GRO_MAX_SEGMENTS : batch;
    const rx = this.rxBatch;
    const { value: bound, arena } = Arena.fit((a) => ({
      txMem: a.take(Uint8Array, txBytes),
      rxMem: a.take(Uint8Array, this.rxSlot * rx),
      tunLens: a.take(Int32Array, tunLens),
      rxLens: a.take(Int32Array, rx),
      rxSegs: a.take(Int32Array, rx),
      rxSrcIPs: a.take(Uint32Array, rx),
      rxSrcPorts: a.take(Uint16Array, rx),
      stats: a.take(Int32Array, native.STATS_LEN),
      portState: a.take(Int32Array, native.PORT_STATE_LEN),
      sends: new SendBatch(sendCap, a),
      replies: new SendBatch(native.MAX_BATCH, a),
      writes: new WriteBatch(datagrams, a),
      final: new WriteBatch(datagrams, a),
    }));
    ({
      txMem: this.txMem, rxMem: this.rxMem, tunLens: this.tunLens, rxLens: this.rxLens, rxSegs: this.rxSegs, rxSrcIPs: this.rxSrcIPs,
      rxSrcPorts: this.rxSrcPorts, stats: this.stats, portState: this.portState, sends: this.sends, replies: this.replies,
      writes: this.writes, final: this.final,
    } = bound);

    if (features.vnet) {
      const tunBytes = txBytes - segBytes;
      this.area = { mem: this.txMem, tunSlot: this.txSlot, segStart: tunBytes, segEnd: tunBytes + segBytes, gso: features.gso, maxDatagram, cut: native.tcpSegment, cutUdp: native.udpSegment };
      // Jobs are for single packets left with a partial checksum: at most one per packet read.
      this.txJobs = new ChecksumJobs(TUN_BATCH_GSO);
    } else {
      this.area = undefined;
      this.txJobs = new ChecksumJobs(1);
    }
    this.dgOffs = new Int32Array(datagrams);
    this.dgLens = new Int32Array(datagrams);
    this.dgSrcIPs = new Uint32Array(datagrams);
    this.dgGso = new Int32Array(datagrams);
    for (let i = 0; i < rx; i++) this.dgOffs[i] = i * this.rxSlot;
    this.rxJobs = new ChecksumJobs(datagrams);
    this.scratch = new CoalesceScratch(features.vnet ? datagrams : 1);

    this.tunHeadroom = this.area !== undefined ? VNET_READ_HEADROOM : ENCAP_HEADROOM;
    this.port = raw.portOpen(arena.buffer, Int32Array.of(io.tunFd, io.rxFd, io.wakeFd), io.sendFds, this.txMem, this.txSlot, this.tunLens,
      this.rxMem, this.rxSlot, this.rxLens, this.rxSrcIPs, this.rxSrcPorts, features.gro ? this.rxSegs : undefined, this.stats, this.portState);
    try {
      const s = this.sends;
      raw.portBindSend(this.port, SEND_TX, native.PORT_TX_MEM, s.offs, s.lens, s.sockIdx, s.dstIPs, s.dstPorts, s.segSizes);
      const r = this.replies;
      raw.portBindSend(this.port, SEND_REPLIES, native.PORT_RX_MEM, r.offs, r.lens, r.sockIdx, r.dstIPs, r.dstPorts);
      raw.portBindWrite(this.port, WRITE_DECAPPED, this.writes.offs, this.writes.lens);
      raw.portBindWrite(this.port, WRITE_COALESCED, this.final.offs, this.final.lens);
    } catch (e) {
      raw.portClose(this.port);
      throw e;
    }
    this.control = new Int32Array(controlSab, id * CONTROL_WORDS * 4, CONTROL_WORDS);
  }

  /** Runs until the supervisor sets this worker's stop flag. Throws on a broken fd. */
  run(onFallback: (what: string) => void): void {
    for (;;) {
      this.ctx.table.endRead(this.id);
      if (Atomics.load(this.control, CONTROL_STOP) !== 0) return;
      this.step(POLL_TIMEOUT_MS, onFallback);
    }
  }

  /**
   * One wait of up to `timeoutMs` for the fds, then what they bring: up to MAX_BATCHES_PER_WAKE
   * batches each way. Holds a peer-table read section afterwards (run ends it before the next
   * wait). Returns the number of ready fds. Throws on a broken fd.
   */
  step(timeoutMs: number, onFallback: (what: string) => void): number {
    const table = this.ctx.table;
    const c = this.ctx.counters;
    const st = this.portState;
    // One call waits and reads what the wait reported: the first round's batches are in already.
    const ready = raw.portWait(this.port, timeoutMs, this.tunBatch, this.tunHeadroom, this.tunBudget, this.rxBatch);
    c[C.loop_polls]++;
    if (ready < 0) throw new SysError(-ready, 'poll', 'worker fds');
    if (ready === 0) return 0;
    if ((st[native.PORT_REV_TUN] & POLL_BROKEN) !== 0) throw new DeviceGoneError(this.id);
    if ((st[native.PORT_REV_RX] & POLL_BROKEN) !== 0) throw new SysError(5, 'poll', `VXLAN socket of worker ${this.id} reports an error`);
    let tun = st[native.PORT_REV_TUN] !== 0;
    let udp = st[native.PORT_REV_RX] !== 0;
    for (let round = 0; round < MAX_BATCHES_PER_WAKE && (tun || udp); round++) {
      const half = table.beginRead(this.id);
      if (tun) {
        const n = round === 0 ? st[native.PORT_TUN_COUNT] : raw.portRead(this.port, this.tunBatch, this.tunHeadroom, this.tunBudget);
        tun = this.egress(half, n, onFallback);
      }
      if (udp) {
        const written = c[C.tun_tx_packets];
        const n = round === 0 ? st[native.PORT_RX_COUNT] : raw.portRecv(this.port, this.rxBatch);
        udp = this.ingress(half, n) === this.rxBatch;
        // Writing to the TUN device can queue a packet on it at once (a reply the pod's kernel
        // sends from the same softirq, a TCP ACK): read the TUN queue next rather than poll for it.
        // When the write queued nothing this costs one read that finds nothing, once per batch.
        if (c[C.tun_tx_packets] !== written) tun = true;
      }
      c[C.loop_batches]++;
    }
    return ready;
  }

  /** Forwards one TUN batch of `n` packets (or -errno from the read) to the underlay. Returns whether the batch was full (more may be queued). */
  private egress(half: number, n: number, onFallback: (what: string) => void): boolean {
    if (n <= 0) {
      if (n < 0) throw new SysError(-n, 'read', `TUN queue of worker ${this.id}`);
      return false;
    }
    const max = this.tunBatch; // fromTun may lower it (UDP_SEGMENT fallback)
    return this.fromTun(half, n, onFallback) >= this.tunBudget || n === max;
  }

  /**
   * Forwards the `n` packets in the TUN slots (lengths in tunLens) to the underlay. Returns the
   * bytes read, which the offloaded loop's read budget counts; 0 without offloads, where
   * encapBatch counts the packets and reads have no byte budget.
   */
  fromTun(half: number, n: number, onFallback: (what: string) => void): number {
    if (this.area === undefined) {
      if (encapBatch(this.ctx, half, this.txMem, this.txSlot, this.tunLens, n, this.sends) > 0) this.send(SEND_TX, this.txMem, this.sends, false);
      return 0;
    }
    const c = this.ctx.counters;
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += this.tunLens[i];
    c[C.tun_rx_packets] += n;
    c[C.tun_rx_bytes] += bytes - n * VNET_HDR_LEN;
    // Usually one round; more when the batch's segments outgrow one send (small MSS, no GSO).
    for (let from = 0; from < n; ) {
      from = segmentBatch(this.ctx, half, this.area, this.tunLens, from, n, this.sends, this.txJobs);
      if (this.sends.count === 0) continue;
      this.txJobs.run(this.txMem);
      this.txJobs.store(this.txMem);
      const gso = this.area.gso;
      this.send(SEND_TX, this.txMem, this.sends, gso);
      if (gso && this.stats[native.STAT_LAST_ERRNO] === ESEGMENT_IO) {
        // The path cannot segment: from now on every segment is its own datagram.
        this.area.gso = false;
        this.features.gso = false;
        this.tunBatch = TUN_BATCH_NO_GSO;
        c[C.tx_gso_fallbacks]++;
        onFallback('UDP_SEGMENT refused with EIO; sending single datagrams');
      }
    }
    return bytes;
  }

  /** Forwards one underlay batch of `n` messages (or -errno from the receive) to the TUN device. Returns `n`. */
  private ingress(half: number, n: number): number {
    if (n <= 0) {
      if (n < 0) throw new SysError(-n, 'recvmmsg', `VXLAN socket of worker ${this.id}`);
      return 0;
    }
    this.fromUnderlay(half, n);
    return n;
  }

  /**
   * Forwards the `n` messages in the receive slots (rxLens, rxSrcIPs, and rxSegs with UDP_GRO)
   * to the TUN device.
   */
  fromUnderlay(half: number, n: number): void {
    const f = this.features;
    const c = this.ctx.counters;
    let d = n;
    let offs = this.dgOffs;
    let lens = this.rxLens;
    let srcs = this.rxSrcIPs;
    if (f.gro) {
      // Split each received message into its datagrams.
      d = 0;
      const cap = this.dgOffs.length;
      for (let m = 0; m < n; m++) {
        const base = m * this.rxSlot;
        const total = this.rxLens[m];
        const seg = this.rxSegs[m];
        if (seg > 0) c[C.rx_gro_messages]++;
        // The kernel reports a segment size only for a UDP_GRO train (SKB_GSO_UDP_L4); a tunnel
        // super-packet that crossed whole has none. A train's first datagram claiming the whole
        // message as its inner packet is split as a train, not taken whole.
        const whole = seg === 0 && total > ENCAP_HEADROOM + this.ctx.mtu && innerIsWhole(this.rxMem, base, total);
        const step = seg > 0 ? seg : total;
        // An empty message still makes one (empty) datagram below.
        const count = whole || total === 0 ? 1 : Math.ceil(total / step);
        if (count > GRO_MAX_SEGMENTS || d + count > cap) {
          // More datagrams than any kernel joins into one message: counted, not split (split, it
          // would take the room of the messages after it).
          c[C.rx_datagrams]++;
          c[C.rx_bytes] += total;
          c[C.rx_drop_batch_full]++;
          continue;
        }
        if (whole) {
          // One VXLAN datagram holding a whole TCP super-packet (no UDP_GRO segment size then):
          // the segment size is left to coalesceBatch (-1).
          this.dgOffs[d] = base;
          this.dgLens[d] = total;
          this.dgSrcIPs[d] = this.rxSrcIPs[m];
          this.dgGso[d] = -1;
          d++;
          continue;
        }
        let p = 0;
        do {
          this.dgOffs[d] = base + p;
          this.dgLens[d] = Math.min(step, total - p);
          this.dgSrcIPs[d] = this.rxSrcIPs[m];
          this.dgGso[d] = 0;
          d++;
          p += step;
        } while (p < total && step > 0);
      }
      offs = this.dgOffs;
      lens = this.dgLens;
      srcs = this.dgSrcIPs;
    }
    const k = f.gro
      ? decapBatch(this.ctx, half, this.rxMem, offs, lens, this.rxCapacity, srcs, d, this.writes, this.replies, this.dgGso)
      : decapBatch(this.ctx, half, this.rxMem, offs, lens, this.rxCapacity, srcs, d, this.writes, this.replies);
    // ARP replies were built in place: send them before coalescing moves bytes in the slots.
    if (this.replies.count > 0) this.send(SEND_REPLIES, this.rxMem, this.replies, false);
    if (k > 0) {
      const w = f.vnet ? this.final : this.writes;
      if (f.vnet) coalesceBatch(this.ctx, this.rxMem, this.rxSlot, this.writes, this.final, this.rxJobs, this.scratch, f.uso);
      else finishUnfinished(this.ctx, this.rxMem, this.writes, this.rxJobs);
      for (let at = 0; at < w.count; at += native.MAX_BATCH) {
        const cnt = Math.min(native.MAX_BATCH, w.count - at);
        if (this.io.rehearsal !== undefined) {
          this.io.rehearsal.written(this.rxMem, at === 0 ? w.offs : w.offs.subarray(at), at === 0 ? w.lens : w.lens.subarray(at), cnt);
        }
        const ok = raw.portWrite(this.port, f.vnet ? WRITE_COALESCED : WRITE_DECAPPED, at, cnt);
        c[C.tun_tx_packets] += ok;
        c[C.tun_tx_errors] += this.stats[native.STAT_FAILED];
      }
      const hdr = f.vnet ? VNET_HDR_LEN : 0;
      for (let i = 0; i < w.count; i++) c[C.tun_tx_bytes] += w.lens[i] - hdr;
    }
  }

  /** Releases the addon's hold on this loop's buffers; the loop must not run afterwards. */
  close(): void {
    raw.portClose(this.port);
  }

  /** Sends bound batch k (`b`, over `mem`). */
  private send(k: number, mem: Uint8Array, b: SendBatch, gso: boolean): void {
    const c = this.ctx.counters;
    if (this.io.rehearsal !== undefined) this.io.rehearsal.sent(mem, b, gso);
    const sent = raw.portSend(this.port, k, b.count, gso);
    c[C.tx_messages] += sent;
    c[C.tx_datagrams] += this.stats[native.STAT_DATAGRAMS];
    c[C.tx_bytes] += this.stats[native.STAT_BYTES];
    c[C.tx_errors] += this.stats[native.STAT_FAILED];
  }
}
