/**
 * Internet checksums of a whole batch in one native call.
 *
 * The offloaded paths need an L4 checksum over every segment they make (egress) and every
 * segment they coalesce (ingress). Summing bytes is the one byte-heavy loop of the data path, so
 * it runs in the addon (`csumBatch`), once per batch: the data path records jobs (a byte range
 * plus the pseudo-header sum to fold in), runs them, then reads the results.
 */
import { csumBatch } from '../io/native.js';

export class ChecksumJobs {
  readonly offs: Int32Array;
  readonly lens: Int32Array;
  readonly sums: Uint32Array;
  /** Pseudo-header sum (folded) added to each range's sum. */
  readonly init: Uint32Array;
  /** Where `store` writes job i's checksum (-1: a verification job, nothing stored). */
  readonly fields: Int32Array;
  /** 1 when job i is UDP: a computed checksum of 0 is sent as 0xffff (RFC 768). */
  readonly udp: Uint8Array;
  count = 0;

  constructor(readonly capacity: number) {
    this.offs = new Int32Array(capacity);
    this.lens = new Int32Array(capacity);
    this.sums = new Uint32Array(capacity);
    this.init = new Uint32Array(capacity);
    this.fields = new Int32Array(capacity);
    this.udp = new Uint8Array(capacity);
  }

  /**
   * Records a job over buf[off, off + len) plus `init`; `field` is where `store` puts the
   * checksum (the field must read zero, or the pseudo-header sum with init 0), or -1.
   * Returns its index, or -1 when the batch is full.
   */
  add(off: number, len: number, init: number, field: number, udp: boolean): number {
    const i = this.count;
    if (i === this.capacity) return -1;
    this.offs[i] = off;
    this.lens[i] = len;
    this.init[i] = init;
    this.fields[i] = field;
    this.udp[i] = udp ? 1 : 0;
    this.count = i + 1;
    return i;
  }

  /** Writes every job's checksum into its field (big-endian). */
  store(buf: Uint8Array): void {
    for (let i = 0; i < this.count; i++) {
      const f = this.fields[i];
      if (f < 0) continue;
      let v = this.checksum(i);
      if (v === 0 && this.udp[i] === 1) v = 0xffff;
      buf[f] = v >>> 8;
      buf[f + 1] = v & 0xff;
    }
  }

  run(buf: Uint8Array): void {
    if (this.count > 0) csumBatch(buf, this.offs, this.lens, this.sums, this.count);
  }

  /** The folded sum of job i including its pseudo-header part. 0xffff means a valid checksum was included. */
  total(i: number): number {
    let s = this.sums[i] + this.init[i];
    s = (s & 0xffff) + (s >>> 16);
    return (s & 0xffff) + (s >>> 16);
  }

  /** The checksum to store for job i, whose range had the field zeroed. */
  checksum(i: number): number {
    return ~this.total(i) & 0xffff;
  }

  reset(): void {
    this.count = 0;
  }
}
