/*
 * The addon's I/O port (native-bindings/src/port.cc) without a network: a connected AF_UNIX
 * datagram pair stands in for the TUN queue and another for the receive socket (each read()
 * takes one whole datagram, as from a TUN queue), and an eventfd is the wake fd. Checks that one
 * portWait reads what it reports, that the bound batches write and refuse what lies outside
 * them, and that a closed or unknown handle is refused.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { Arena } from '../../src/io/arena.js';
import * as native from '../../src/io/native.js';

const raw = native.nativeAddon;
const SLOT = 256;
const SLOTS = 4;

interface Rig {
  port: number;
  arena: Arena;
  tun: number;
  tunPeer: number;
  rxPeer: number;
  wake: number;
  txMem: Uint8Array;
  tunLens: Int32Array;
  rxMem: Uint8Array;
  rxLens: Int32Array;
  rxIPs: Uint32Array;
  rxPorts: Uint16Array;
  stats: Int32Array;
  state: Int32Array;
  offs: Int32Array;
  lens: Int32Array;
}

const open: number[] = [];
const ports: number[] = [];

function pair(): [number, number] {
  const p = native.openSocketPair();
  open.push(...p);
  return p;
}

function rig(): Rig {
  const [tun, tunPeer] = pair();
  const [rx, rxPeer] = pair();
  const wake = native.openEventfd();
  open.push(wake);
  const arena = new Arena(64 * 1024);
  const r = {
    arena, tun, tunPeer, rxPeer, wake,
    txMem: arena.take(Uint8Array, SLOT * SLOTS), tunLens: arena.take(Int32Array, SLOTS),
    rxMem: arena.take(Uint8Array, SLOT * SLOTS), rxLens: arena.take(Int32Array, SLOTS),
    rxIPs: arena.take(Uint32Array, SLOTS), rxPorts: arena.take(Uint16Array, SLOTS),
    stats: arena.take(Int32Array, native.STATS_LEN), state: arena.take(Int32Array, native.PORT_STATE_LEN),
    offs: arena.take(Int32Array, SLOTS), lens: arena.take(Int32Array, SLOTS),
  };
  const port = raw.portOpen(arena.buffer, Int32Array.of(tun, rx, wake), Int32Array.of(-1), r.txMem, SLOT, r.tunLens, r.rxMem, SLOT,
    r.rxLens, r.rxIPs, r.rxPorts, undefined, r.stats, r.state);
  ports.push(port);
  raw.portBindWrite(port, 0, r.offs, r.lens);
  return { port, ...r };
}

/** portOpen's arguments for `r` with `change` applied to them (by position). */
function openArgs(r: Rig, change: Record<number, unknown>): Parameters<typeof raw.portOpen> {
  const args: unknown[] = [r.arena.buffer, Int32Array.of(-1, -1, -1), Int32Array.of(-1), r.txMem, SLOT, r.tunLens, r.rxMem, SLOT,
    r.rxLens, r.rxIPs, r.rxPorts, undefined, r.stats, r.state];
  for (const [i, v] of Object.entries(change)) args[Number(i)] = v;
  return args as Parameters<typeof raw.portOpen>;
}

/** Writes `bytes` as one datagram to fd. */
function put(fd: number, bytes: Uint8Array): void {
  const stats = new Int32Array(native.STATS_LEN);
  expect(native.tunWrite(fd, bytes, Int32Array.of(0), Int32Array.of(bytes.length), 1, stats)).toBe(1);
}

afterEach(() => {
  for (const p of ports.splice(0)) raw.portClose(p);
  for (const fd of open.splice(0)) native.closeFd(fd);
});

describe('I/O port', () => {
  test('one portWait reports both fds and reads both: TUN packets into the TUN slots after the headroom, messages into the receive slots', () => {
    const r = rig();
    put(r.tunPeer, Uint8Array.of(1, 2, 3));
    put(r.tunPeer, Uint8Array.of(4, 5));
    put(r.rxPeer, Uint8Array.of(9, 9, 9, 9));
    // The receive "socket" is a socketpair: recvmmsg works on it (the source address is empty).
    const ready = raw.portWait(r.port, 1000, SLOTS, 16, 1 << 20, SLOTS);
    expect(ready).toBe(2);
    expect(r.state[native.PORT_REV_TUN] & native.POLLIN).not.toBe(0);
    expect(r.state[native.PORT_REV_RX] & native.POLLIN).not.toBe(0);
    expect(r.state[native.PORT_REV_WAKE]).toBe(0);
    expect(r.state[native.PORT_TUN_COUNT]).toBe(2);
    expect(Array.from(r.tunLens.subarray(0, 2))).toEqual([3, 2]);
    expect(Array.from(r.txMem.subarray(16, 19))).toEqual([1, 2, 3]);
    expect(Array.from(r.txMem.subarray(SLOT + 16, SLOT + 18))).toEqual([4, 5]);
    expect(r.state[native.PORT_RX_COUNT]).toBe(1);
    expect(r.rxLens[0]).toBe(4);
    expect(Array.from(r.rxMem.subarray(0, 4))).toEqual([9, 9, 9, 9]);
    // Nothing left: a zero-timeout wait reports nothing and clears the state.
    expect(raw.portWait(r.port, 0, SLOTS, 16, 1 << 20, SLOTS)).toBe(0);
    expect(Array.from(r.state)).toEqual([0, 0, 0, 0, 0]);
  });

  test('a wait stops reading at tunMax and at tunBudget; portRead takes the rest the same way', () => {
    const r = rig();
    for (let i = 0; i < 4; i++) put(r.tunPeer, new Uint8Array(100).fill(i + 1));
    // The byte budget: the batch stops once it holds 150 bytes, so after the second packet.
    expect(raw.portWait(r.port, 1000, SLOTS, 0, 150, SLOTS)).toBe(1);
    expect(r.state[native.PORT_TUN_COUNT]).toBe(2);
    expect([r.txMem[0], r.txMem[SLOT]]).toEqual([1, 2]);
    // The count: one packet at most.
    expect(raw.portRead(r.port, 1, 0, 1 << 20)).toBe(1);
    expect(r.txMem[0]).toBe(3);
    expect(raw.portRead(r.port, SLOTS, 0, 1 << 20)).toBe(1);
    expect(r.txMem[0]).toBe(4);
    expect(raw.portRead(r.port, SLOTS, 0, 1 << 20)).toBe(0);
  });

  test('the wake eventfd ends a wait and is drained by it', () => {
    const r = rig();
    expect(native.eventfdSignal(r.wake)).toBe(0);
    expect(native.eventfdSignal(r.wake)).toBe(0);
    expect(raw.portWait(r.port, 5000, SLOTS, 0, 1 << 20, SLOTS)).toBe(1);
    expect(r.state[native.PORT_REV_WAKE] & native.POLLIN).not.toBe(0);
    expect(r.state[native.PORT_TUN_COUNT]).toBe(0);
    expect(raw.portWait(r.port, 0, SLOTS, 0, 1 << 20, SLOTS)).toBe(0);
  });

  test('portWrite writes the bound batch from rxMem, from `at` on; a packet outside rxMem fails with EINVAL', () => {
    const r = rig();
    r.rxMem.set([7, 7, 7], 10);
    r.rxMem.set([8, 8], 20);
    r.offs.set([10, 20, SLOT * SLOTS - 1]);
    r.lens.set([3, 2, 2]);
    expect(raw.portWrite(r.port, 0, 1, 2)).toBe(1);
    expect(Array.from(r.stats)).toEqual([1, 1, 22, 1, 2]);
    const back = new Uint8Array(2 * SLOT);
    const lens = new Int32Array(2);
    expect(native.tunRead(r.tunPeer, back, SLOT, 0, lens, 2)).toBe(1);
    expect(lens[0]).toBe(2);
    expect(Array.from(back.subarray(0, 2))).toEqual([8, 8]);
  });

  test('portSend to a socket the port does not have fails the batch in stats, not in memory', () => {
    const r = rig();
    const sock = r.arena.take(Uint8Array, 1);
    sock[0] = 3; // the port has one send socket (index 0)
    r.offs[0] = 0;
    r.lens[0] = 8;
    raw.portBindSend(r.port, 1, native.PORT_RX_MEM, r.offs, r.lens, sock, r.arena.take(Uint32Array, 1), r.arena.take(Uint16Array, 1));
    expect(raw.portSend(r.port, 1, 1, false)).toBe(0);
    expect(r.stats[native.STAT_FAILED]).toBe(1);
    expect(r.stats[native.STAT_LAST_ERRNO]).toBe(22);
  });

  test('counts beyond what was bound, unknown batches and handles are refused with the argument named', () => {
    const r = rig();
    expect(() => raw.portWait(r.port, 0, SLOTS + 1, 0, 1, SLOTS)).toThrow(/^portWait: tunMax exceeds the bound TUN slots$/);
    expect(() => raw.portWait(r.port, 0, SLOTS, SLOT, 1, SLOTS)).toThrow(/^portWait: tunHeadroom must be in 0..txSlot-1$/);
    expect(() => raw.portWait(r.port, 0, SLOTS, 0, 0, SLOTS)).toThrow(/^portWait: tunBudget must be positive$/);
    expect(() => raw.portWait(r.port, 0, SLOTS, 0, 1, SLOTS + 1)).toThrow(/^portWait: rxMax exceeds the bound receive slots$/);
    expect(() => raw.portWait(r.port, -2, SLOTS, 0, 1, SLOTS)).toThrow(/^portWait: timeoutMs must be -1 or more$/);
    expect(() => raw.portRead(r.port, SLOTS + 1, 0, 1)).toThrow(/^portRead: max exceeds the bound TUN slots$/);
    expect(() => raw.portRead(r.port, 1, -1, 1)).toThrow(/^portRead: headroom must be in 0..txSlot-1$/);
    expect(() => raw.portRecv(r.port, SLOTS + 1)).toThrow(/^portRecv: max exceeds the bound receive slots$/);
    expect(() => raw.portWrite(r.port, 0, SLOTS - 1, 2)).toThrow(/^portWrite: at puts the batch outside the bound write arrays$/);
    expect(() => raw.portWrite(r.port, 1, 0, 1)).toThrow(/^portWrite: k names no bound write batch$/);
    expect(() => raw.portSend(r.port, 2, 0, false)).toThrow(/^portSend: k must be 0 or 1$/);
    expect(() => raw.portSend(r.port, 0, 0, false)).toThrow(/^portSend: k names no bound send batch$/);
    const sock = r.arena.take(Uint8Array, 2);
    const ips = r.arena.take(Uint32Array, SLOTS);
    const dports = r.arena.take(Uint16Array, SLOTS);
    expect(() => raw.portBindSend(r.port, 0, 2, r.offs, r.lens, sock, ips, dports)).toThrow(/^portBindSend: mem must be 0 \(txMem\) or 1 \(rxMem\)$/);
    raw.portBindSend(r.port, 0, native.PORT_TX_MEM, r.offs, r.lens, sock, ips, dports);
    expect(() => raw.portSend(r.port, 0, 1, true)).toThrow(/^portSend: gso needs a batch bound with segSizes$/);
    // The batch is as long as its shortest array (sockIdx, 2).
    expect(raw.portSend(r.port, 0, 2, false)).toBe(0);
    expect(() => raw.portSend(r.port, 0, 3, false)).toThrow(/^portSend: count exceeds the bound send batch$/);
    // Binding k again replaces the batch.
    raw.portBindSend(r.port, 0, native.PORT_TX_MEM, r.offs, r.lens, r.arena.take(Uint8Array, SLOTS), ips, dports);
    expect(raw.portSend(r.port, 0, SLOTS, false)).toBe(0);
    expect(() => raw.portWait(12345, 0, 0, 0, 1, 0)).toThrow(/^portWait: port is not an open port of this thread$/);
  });

  test('portOpen names what is wrong and opens nothing', () => {
    const r = rig();
    const before = raw.portOpen(...openArgs(r, {}));
    ports.push(before);
    expect(() => raw.portOpen(...openArgs(r, { 1: Int32Array.of(-1, -1) }))).toThrow(/^portOpen: fds must hold 3 fds/);
    expect(() => raw.portOpen(...openArgs(r, { 0: new Uint8Array(8) }))).toThrow(/^portOpen: arena must be an ArrayBuffer$/);
    expect(() => raw.portOpen(...openArgs(r, { 3: new Uint8Array(SLOT * SLOTS) }))).toThrow(/^portOpen: txMem is not a view of the port's arena$/);
    expect(() => raw.portOpen(...openArgs(r, { 3: r.arena.take(Uint8Array, 10) }))).toThrow(/^portOpen: txMem has no room for one TUN slot$/);
    expect(() => raw.portOpen(...openArgs(r, { 6: r.arena.take(Uint8Array, 10) }))).toThrow(/^portOpen: rxMem has no room for one receive slot$/);
    expect(() => raw.portOpen(...openArgs(r, { 9: r.arena.take(Uint32Array, 0) }))).toThrow(/^portOpen: rxSrcIPs must not be empty$/);
    expect(() => raw.portOpen(...openArgs(r, { 13: r.arena.take(Int32Array, 2) }))).toThrow(/^portOpen: state must have at least PORT_STATE_LEN elements$/);
    expect(() => raw.portOpen(...openArgs(r, { 8: r.arena.take(Uint32Array, SLOTS) }))).toThrow(/^portOpen: rxLens must be an Int32Array$/);
    const resizable = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(4096, { maxByteLength: 8192 });
    expect(() => raw.portOpen(...openArgs(r, { 0: resizable }))).toThrow(/^portOpen: arena must not be resizable$/);
    // None of the refused calls took a handle: the next port gets the one after `before`.
    const next = raw.portOpen(...openArgs(r, {}));
    ports.push(next);
    expect(next).toBe(before + 1);
  });

  test('an arena that claims not to be resizable and then shrinks is refused, not written', () => {
    const Resizable = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void };
    const ab = new Resizable(16384, { maxByteLength: 16384 });
    Object.defineProperty(ab, 'resizable', { value: false });
    const [tun] = pair();
    const [rx] = pair();
    const wake = native.openEventfd();
    open.push(wake);
    const port = raw.portOpen(ab, Int32Array.of(tun, rx, wake), Int32Array.of(-1), new Uint8Array(ab, 0, SLOT * SLOTS), SLOT,
      new Int32Array(ab, 1024, SLOTS), new Uint8Array(ab, 2048, SLOT * SLOTS), SLOT, new Int32Array(ab, 3072, SLOTS),
      new Uint32Array(ab, 3136, SLOTS), new Uint16Array(ab, 3200, SLOTS), undefined, new Int32Array(ab, 4096, native.STATS_LEN),
      new Int32Array(ab, 8192, native.PORT_STATE_LEN));
    ports.push(port);
    ab.resize(0);
    expect(() => raw.portWait(port, 0, SLOTS, 0, 1 << 20, SLOTS)).toThrow(/port has lost its arena \(the ArrayBuffer was moved or shrunk\)$/);
  });

  test("an arena whose resizable getter throws: portOpen throws that error and opens nothing", () => {
    const r = rig();
    const ab = new ArrayBuffer(4096);
    Object.defineProperty(ab, 'resizable', { get() { throw new Error('getter says no'); } });
    expect(() => raw.portOpen(...openArgs(r, { 0: ab }))).toThrow('getter says no');
  });

  test('a port whose arena was transferred away refuses every call', () => {
    const r = rig();
    put(r.tunPeer, Uint8Array.of(1, 2, 3));
    structuredClone(r.arena.buffer, { transfer: [r.arena.buffer] });
    expect(r.arena.buffer.byteLength).toBe(0);
    const lost = /port has lost its arena \(the ArrayBuffer was detached\)$/;
    expect(() => raw.portWait(r.port, 0, SLOTS, 0, 1 << 20, SLOTS)).toThrow(lost);
    expect(() => raw.portRead(r.port, SLOTS, 0, 1 << 20)).toThrow(lost);
    expect(() => raw.portRecv(r.port, SLOTS)).toThrow(lost);
    expect(() => raw.portWrite(r.port, 0, 0, 1)).toThrow(lost);
    expect(() => raw.portSend(r.port, 0, 0, false)).toThrow(lost);
    // The packet is still queued: nothing was read into memory the port no longer owns.
    const back = new Uint8Array(SLOT);
    expect(native.tunRead(r.tun, back, SLOT, 0, new Int32Array(1), 1)).toBe(1);
    expect(Array.from(back.subarray(0, 3))).toEqual([1, 2, 3]);
    expect(raw.portClose(r.port)).toBe(0);
    ports.splice(ports.indexOf(r.port), 1);
  });

  test('a closed port is gone: its handle is refused, a second close reports EBADF', () => {
    const r = rig();
    expect(raw.portClose(r.port)).toBe(0);
    ports.splice(ports.indexOf(r.port), 1);
    expect(raw.portClose(r.port)).toBe(-9);
    expect(() => raw.portRead(r.port, 1, 0, 1)).toThrow(/port is not an open port/);
  });
});
