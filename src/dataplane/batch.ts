/**
 * Preallocated descriptor arrays that carry one batch between the data-path
 * functions and the native send/write calls. Allocated once per worker; the
 * per-packet code only writes numbers into them. Given an arena (src/io/arena.ts), a batch's arrays
 * are carved from it, so the batch can be bound to the addon's I/O port.
 */
import { standalone, type Carver } from '../io/arena.js';

/**
 * Datagrams to send: slab offset and length, send-socket index, destination, and (when the
 * socket segments, UDP_SEGMENT) the size of the datagrams the kernel cuts the message into,
 * 0 for a single datagram.
 */
export class SendBatch {
  readonly offs: Int32Array;
  readonly lens: Int32Array;
  readonly segSizes: Int32Array;
  readonly sockIdx: Uint8Array;
  readonly dstIPs: Uint32Array;
  readonly dstPorts: Uint16Array;
  count = 0;
  constructor(readonly capacity: number, arena: Carver = standalone) {
    this.offs = arena.take(Int32Array, capacity);
    this.lens = arena.take(Int32Array, capacity);
    this.segSizes = arena.take(Int32Array, capacity);
    this.sockIdx = arena.take(Uint8Array, capacity);
    this.dstIPs = arena.take(Uint32Array, capacity);
    this.dstPorts = arena.take(Uint16Array, capacity);
  }
}

/**
 * Packets to write to the TUN device: slab offset and length, and for a TCP super-packet that
 * arrived whole (see decap.ts) the segment size it is to be cut into, else 0.
 */
export class WriteBatch {
  readonly offs: Int32Array;
  readonly lens: Int32Array;
  readonly gsoSizes: Int32Array;
  count = 0;
  constructor(readonly capacity: number, arena: Carver = standalone) {
    this.offs = arena.take(Int32Array, capacity);
    this.lens = arena.take(Int32Array, capacity);
    this.gsoSizes = arena.take(Int32Array, capacity);
  }
}
