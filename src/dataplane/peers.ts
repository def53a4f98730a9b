/**
 * The peer table: which VTEP (underlay IP + VTEP MAC) carries each remote pod
 * subnet. Lives in one SharedArrayBuffer; the agent's main thread is the only
 * writer, every worker reads it per packet without locks.
 *
 * ## Layout (32-bit words)
 *
 *   [0]  ACTIVE   index of the half readers use (0 or 1)
 *   [1]  EPOCH    incremented after every flip
 *   [2 .. 2+MAX_READERS)  SEEN[r]: the epoch reader r observed when its
 *        current read section began, or QUIESCENT while it holds no reference
 *   then two halves, each:
 *     [0] entry count   [1] number of distinct prefix lengths
 *     [2 .. 2+MAX_PREFIXES) prefix lengths, longest first
 *     then `slots` subnet-hash slots of SLOT_WORDS words:
 *       [0] subnet network address   [1] prefix length + 1 (0 = empty)
 *       [2] VTEP IPv4                [3..4] VTEP MAC (6 bytes, little slack)
 *     then `slots` VTEP-hash slots of 2 words: [0] VTEP IPv4, [1] 1 = used
 *
 * ## Update protocol (read-copy-update over two halves)
 *
 * Reader r, once per batch: `e = load(EPOCH); store(SEEN[r], e); h = load(ACTIVE)`
 * and then uses half h until `endRead`, which stores QUIESCENT (done before
 * every poll, so an idle worker never holds a half).
 * Writer: waits until every reader is QUIESCENT or has SEEN >= the epoch of
 * the last flip (then nobody can still be using the inactive half: a reader
 * that loaded the old ACTIVE stored an older epoch first), rewrites the
 * inactive half, stores ACTIVE, then increments EPOCH. All accesses to ACTIVE,
 * EPOCH and SEEN are Atomics (sequentially consistent); the halves themselves
 * are plain memory, published by the ACTIVE store.
 * Epochs are int32 and compared with >=; 2^31 updates would wrap, which a
 * node does not reach.
 */
import { macEqual } from '../wire/ethernet.js';

export const MAX_READERS = 64;
export const MAX_PREFIXES = 8;
export const QUIESCENT = 0x7fffffff;

const ACTIVE = 0;
const EPOCH = 1;
const SEEN = 2;
const HEADER_WORDS = SEEN + MAX_READERS;
const HALF_COUNT = 0;
const HALF_NPREFIX = 1;
const HALF_PREFIXES = 2;
const HALF_HEADER_WORDS = HALF_PREFIXES + MAX_PREFIXES;
const SLOT_NET = 0;
const SLOT_PREFIX = 1;
const SLOT_VTEP = 2;
const SLOT_MAC = 3;
const SLOT_WORDS = SLOT_MAC + 2;
const VSLOT_WORDS = 2;

export interface PeerEntry {
  /** Subnet network address (host-order u32) and prefix length. */
  net: number;
  prefix: number;
  vtepIP: number;
  vtepMAC: Uint8Array;
}

function pow2AtLeast(n: number): number {
  let p = 8;
  while (p < n) p *= 2;
  return p;
}

/** The netmask as a signed 32-bit value (stays a small integer in V8: no boxing per packet). */
function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : 0xffffffff << (32 - prefix);
}

function hash(key: number, mask: number): number {
  return (Math.imul(key, 0x9e3779b1) >>> 15) & mask;
}

export class PeerTable {
  readonly sab: SharedArrayBuffer;
  readonly capacity: number;
  private readonly words: Uint32Array;
  private readonly ctl: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly slots: number;
  private readonly halfWords: number;
  /** Epoch of the last flip this writer made (writer side only). */
  private lastFlip = 0;

  static bytesFor(capacity: number): number {
    const slots = pow2AtLeast(capacity * 2);
    return (HEADER_WORDS + 2 * (HALF_HEADER_WORDS + slots * (SLOT_WORDS + VSLOT_WORDS))) * 4;
  }

  /** Creates a table (writer) or attaches to one created elsewhere (reader). */
  constructor(capacity: number, sab?: SharedArrayBuffer) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 20) {
      throw new RangeError(`peer table capacity must be 1..${1 << 20}, got ${capacity}`);
    }
    this.capacity = capacity;
    this.slots = pow2AtLeast(capacity * 2);
    this.halfWords = HALF_HEADER_WORDS + this.slots * (SLOT_WORDS + VSLOT_WORDS);
    this.sab = sab ?? new SharedArrayBuffer(PeerTable.bytesFor(capacity));
    if (this.sab.byteLength !== PeerTable.bytesFor(capacity)) {
      throw new RangeError(`peer table buffer is ${this.sab.byteLength} bytes, expected ${PeerTable.bytesFor(capacity)}`);
    }
    this.words = new Uint32Array(this.sab);
    this.ctl = new Int32Array(this.sab);
    this.bytes = new Uint8Array(this.sab);
    if (!sab) for (let r = 0; r < MAX_READERS; r++) this.ctl[SEEN + r] = QUIESCENT;
  }

  // ---- reader side (workers), per batch ----

  /** Starts a read section for reader `r`; returns the base word of the half to use. */
  beginRead(r: number): number {
    const e = Atomics.load(this.ctl, EPOCH);
    Atomics.store(this.ctl, SEEN + r, e);
    return HEADER_WORDS + Atomics.load(this.ctl, ACTIVE) * this.halfWords;
  }

  /** Ends reader `r`'s section; it must not use the half after this. */
  endRead(r: number): void {
    Atomics.store(this.ctl, SEEN + r, QUIESCENT);
  }

  // ---- reader side, per packet: no allocation ----

  /** Slot (word index) of the peer whose subnet holds `ip`, or -1. */
  lookup(half: number, ip: number): number {
    const w = this.words;
    const n = w[half + HALF_NPREFIX];
    const m = this.slots - 1;
    const base = half + HALF_HEADER_WORDS;
    for (let i = 0; i < n; i++) {
      const prefix = w[half + HALF_PREFIXES + i];
      const net = ip & maskOf(prefix);
      let s = hash(net ^ prefix, m);
      for (;;) {
        const slot = base + s * SLOT_WORDS;
        const p = w[slot + SLOT_PREFIX];
        if (p === 0) break;
        if (p === prefix + 1 && (w[slot + SLOT_NET] | 0) === net) return slot;
        s = (s + 1) & m;
      }
    }
    return -1;
  }

  /** The slot's VTEP address as a signed 32-bit value (store it into a Uint32Array as is). */
  vtepIP(slot: number): number {
    return this.words[slot + SLOT_VTEP] | 0;
  }

  /** Copies the slot's VTEP MAC into buf[off..off+6). */
  copyMac(slot: number, buf: Uint8Array, off: number): void {
    const b = this.bytes;
    const src = (slot + SLOT_MAC) * 4;
    for (let i = 0; i < 6; i++) buf[off + i] = b[src + i];
  }

  /** Whether `mac` at buf[off] equals the slot's VTEP MAC. */
  macIs(slot: number, buf: Uint8Array, off: number): boolean {
    return macEqual(buf, off, this.bytes, (slot + SLOT_MAC) * 4);
  }

  /** Whether `ip` is the underlay address of a known peer. */
  isKnownVtep(half: number, ip: number): boolean {
    const w = this.words;
    const m = this.slots - 1;
    const base = half + HALF_HEADER_WORDS + this.slots * SLOT_WORDS;
    let s = hash(ip, m);
    for (;;) {
      const slot = base + s * VSLOT_WORDS;
      if (w[slot + 1] === 0) return false;
      if (w[slot] === ip) return true;
      s = (s + 1) & m;
    }
  }

  // ---- writer side (agent main thread) ----

  /** Number of entries in the half readers currently use. */
  size(): number {
    return this.words[HEADER_WORDS + Atomics.load(this.ctl, ACTIVE) * this.halfWords + HALF_COUNT];
  }

  epoch(): number {
    return Atomics.load(this.ctl, EPOCH);
  }

  /** Marks reader `r` as holding nothing (used when its thread is gone). */
  release(r: number): void {
    Atomics.store(this.ctl, SEEN + r, QUIESCENT);
  }

  /** Readers that may still use the inactive half (empty when it is free to rewrite). */
  busyReaders(): number[] {
    const busy: number[] = [];
    for (let r = 0; r < MAX_READERS; r++) {
      const seen = Atomics.load(this.ctl, SEEN + r);
      if (seen !== QUIESCENT && seen < this.lastFlip) busy.push(r);
    }
    return busy;
  }

  /**
   * Replaces the whole table. Resolves once readers see the new contents on
   * their next batch. Rejects (changing nothing) on bad input, or when a
   * reader holds the inactive half longer than `timeoutMs`.
   */
  async publish(entries: readonly PeerEntry[], timeoutMs = 2000): Promise<void> {
    validateEntries(entries, this.capacity);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const busy = this.busyReaders();
      if (busy.length === 0) break;
      if (Date.now() > deadline) {
        throw new Error(`peer table update timed out: worker(s) ${busy.join(', ')} still read the previous table`);
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    const next = 1 - Atomics.load(this.ctl, ACTIVE);
    this.fill(HEADER_WORDS + next * this.halfWords, entries);
    Atomics.store(this.ctl, ACTIVE, next);
    this.lastFlip = Atomics.add(this.ctl, EPOCH, 1) + 1;
  }

  private fill(half: number, entries: readonly PeerEntry[]): void {
    const w = this.words;
    w.fill(0, half, half + this.halfWords);
    const prefixes = [...new Set(entries.map((e) => e.prefix))].sort((a, b) => b - a);
    w[half + HALF_COUNT] = entries.length;
    w[half + HALF_NPREFIX] = prefixes.length;
    prefixes.forEach((p, i) => (w[half + HALF_PREFIXES + i] = p));
    const m = this.slots - 1;
    const base = half + HALF_HEADER_WORDS;
    const vbase = base + this.slots * SLOT_WORDS;
    for (const e of entries) {
      let s = hash(e.net ^ e.prefix, m);
      while (w[base + s * SLOT_WORDS + SLOT_PREFIX] !== 0) s = (s + 1) & m;
      const slot = base + s * SLOT_WORDS;
      w[slot + SLOT_NET] = e.net;
      w[slot + SLOT_PREFIX] = e.prefix + 1;
      w[slot + SLOT_VTEP] = e.vtepIP;
      this.bytes.set(e.vtepMAC, (slot + SLOT_MAC) * 4);
      let v = hash(e.vtepIP, m);
      while (w[vbase + v * VSLOT_WORDS + 1] !== 0 && w[vbase + v * VSLOT_WORDS] !== e.vtepIP) v = (v + 1) & m;
      w[vbase + v * VSLOT_WORDS] = e.vtepIP;
      w[vbase + v * VSLOT_WORDS + 1] = 1;
    }
  }
}

function validateEntries(entries: readonly PeerEntry[], capacity: number): void {
  if (entries.length > capacity) {
    throw new RangeError(`${entries.length} peers exceed the peer table capacity ${capacity}`);
  }
  const seen = new Set<string>();
  const prefixes = new Set<number>();
  for (const e of entries) {
    if (!Number.isInteger(e.prefix) || e.prefix < 0 || e.prefix > 32) throw new RangeError(`bad prefix length ${e.prefix}`);
    if ((e.net & ~maskOf(e.prefix)) !== 0) throw new RangeError(`subnet address ${e.net >>> 0} has host bits for /${e.prefix}`);
    if (e.vtepMAC.length !== 6) throw new RangeError('VTEP MAC must be 6 bytes');
    const key = `${e.net}/${e.prefix}`;
    if (seen.has(key)) throw new RangeError(`duplicate peer subnet ${key}`);
    seen.add(key);
    prefixes.add(e.prefix);
  }
  if (prefixes.size > MAX_PREFIXES) throw new RangeError(`peers use ${prefixes.size} prefix lengths; at most ${MAX_PREFIXES}`);
}
