/**
 * One worker's forwarding loop. The worker owns one TUN queue, one receive
 * socket in the agent's SO_REUSEPORT group on the VXLAN port, and
 * `flowSockets` send sockets bound to ephemeral ports (the outer source port
 * of a datagram is the port of the socket its inner flow hashes to).
 *
 *   poll(TUN, UDP, wake) ─┬─ TUN readable ─► tunRead (≤ batch) ─► encapBatch ─► udpSend
 *                         └─ UDP readable ─► udpRecv (≤ batch) ─► decapBatch ─► tunWrite
 *                                                                   └─ ARP replies ─► udpSend
 *
 * One native call per batch and direction; a full batch means more may be
 * waiting, so the loop drains up to MAX_BATCHES_PER_WAKE batches before it
 * polls again. The peer table is read inside a beginRead/endRead section per
 * round and released before every poll (see peers.ts for the protocol).
 */
import * as native from '../io/native.js';
import { SysError } from '../io/errors.js';
import { SendBatch, WriteBatch } from '../dataplane/batch.js';
import { C } from '../dataplane/counters.js';
import type { DataplaneContext } from '../dataplane/context.js';
import { ENCAP_HEADROOM, encapBatch } from '../dataplane/encap.js';
import { decapBatch } from '../dataplane/decap.js';
import { CONTROL_STOP, CONTROL_WORDS } from './init.js';

/** How long an idle worker sleeps in poll before it looks at its stop flag. */
export const POLL_TIMEOUT_MS = 250;
/** Batches per direction drained after one wake-up before polling again. */
export const MAX_BATCHES_PER_WAKE = 32;

export interface LoopResources {
  readonly tunFd: number;
  readonly rxFd: number;
  readonly sendFds: Int32Array;
  readonly wakeFd: number;
}

export class ForwardLoop {
  private readonly txSlab: Uint8Array;
  private readonly rxSlab: Uint8Array;
  private readonly txSlot: number;
  private readonly rxSlot: number;
  private readonly tunLens: Int32Array;
  private readonly rxLens: Int32Array;
  private readonly rxSrcIPs: Uint32Array;
  private readonly rxSrcPorts: Uint16Array;
  private readonly sends: SendBatch;
  private readonly replies: SendBatch;
  private readonly writes: WriteBatch;
  private readonly stats = new Int32Array(4);
  private readonly pollFds: Int32Array;
  private readonly revents = new Int32Array(3);
  private readonly control: Int32Array;

  constructor(
    private readonly id: number,
    private readonly ctx: DataplaneContext,
    private readonly io: LoopResources,
    private readonly batch: number,
    controlSab: SharedArrayBuffer,
  ) {
    // Slots hold the largest accepted packet plus its headers; one byte more
    // on receive so an oversize datagram is told apart from a full-size one.
    this.txSlot = roundUp(ENCAP_HEADROOM + ctx.mtu, 64);
    this.rxSlot = roundUp(ENCAP_HEADROOM + ctx.mtu + 1, 64);
    this.txSlab = new Uint8Array(this.txSlot * batch);
    this.rxSlab = new Uint8Array(this.rxSlot * batch);
    this.tunLens = new Int32Array(batch);
    this.rxLens = new Int32Array(batch);
    this.rxSrcIPs = new Uint32Array(batch);
    this.rxSrcPorts = new Uint16Array(batch);
    this.sends = new SendBatch(batch);
    this.replies = new SendBatch(batch);
    this.writes = new WriteBatch(batch);
    this.pollFds = Int32Array.of(io.tunFd, io.rxFd, io.wakeFd);
    this.control = new Int32Array(controlSab, id * CONTROL_WORDS * 4, CONTROL_WORDS);
  }

  /** Runs until the supervisor sets this worker's stop flag. Throws on a broken fd. */
  run(): void {
    const table = this.ctx.table;
    const c = this.ctx.counters;
    for (;;) {
      table.endRead(this.id);
      if (Atomics.load(this.control, CONTROL_STOP) !== 0) return;
      const ready = native.poll(this.pollFds, this.revents, 3, POLL_TIMEOUT_MS);
      c[C.loop_polls]++;
      if (ready < 0) throw new SysError(-ready, 'poll', 'worker fds');
      if (ready === 0) continue;
      if (this.revents[2] !== 0) native.eventfdDrain(this.io.wakeFd);
      let tun = this.revents[0] !== 0;
      let udp = this.revents[1] !== 0;
      for (let round = 0; round < MAX_BATCHES_PER_WAKE && (tun || udp); round++) {
        const half = table.beginRead(this.id);
        if (tun) tun = this.egress(half) === this.batch;
        if (udp) udp = this.ingress(half) === this.batch;
        c[C.loop_batches]++;
      }
    }
  }

  /** One TUN batch out to the underlay. Returns the number of packets read. */
  private egress(half: number): number {
    const n = native.tunRead(this.io.tunFd, this.txSlab, this.txSlot, ENCAP_HEADROOM, this.tunLens, this.batch);
    if (n <= 0) {
      if (n < 0) throw new SysError(-n, 'read', `TUN queue of worker ${this.id}`);
      return 0;
    }
    const k = encapBatch(this.ctx, half, this.txSlab, this.txSlot, this.tunLens, n, this.sends);
    if (k > 0) this.send(this.txSlab, this.sends);
    return n;
  }

  /** One underlay batch in to the TUN device. Returns the number of datagrams received. */
  private ingress(half: number): number {
    const n = native.udpRecv(this.io.rxFd, this.rxSlab, this.rxSlot, 0, this.rxLens, this.rxSrcIPs, this.rxSrcPorts, this.batch);
    if (n <= 0) {
      if (n < 0) throw new SysError(-n, 'recvmmsg', `VXLAN socket of worker ${this.id}`);
      return 0;
    }
    const c = this.ctx.counters;
    const k = decapBatch(this.ctx, half, this.rxSlab, this.rxSlot, this.rxLens, this.rxSrcIPs, n, this.writes, this.replies);
    if (k > 0) {
      const w = this.writes;
      const ok = native.tunWrite(this.io.tunFd, this.rxSlab, w.offs, w.lens, k, this.stats);
      c[C.tun_tx_packets] += ok;
      c[C.tun_tx_errors] += this.stats[1];
      for (let i = 0; i < k; i++) c[C.tun_tx_bytes] += w.lens[i];
    }
    if (this.replies.count > 0) this.send(this.rxSlab, this.replies);
    return n;
  }

  private send(slab: Uint8Array, b: SendBatch): void {
    const c = this.ctx.counters;
    const sent = native.udpSend(this.io.sendFds, slab, b.offs, b.lens, b.sockIdx, b.dstIPs, b.dstPorts, b.count, this.stats);
    c[C.tx_datagrams] += sent;
    c[C.tx_errors] += this.stats[1];
    for (let i = 0; i < b.count; i++) c[C.tx_bytes] += b.lens[i];
  }
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
