/*
 * The addon's I/O port (native-bindings/src/port.cc) without a network: a connected AF_UNIX
 * datagram pair stands in for the TUN queue and another for the receive socket (each read()
 * takes one whole datagram, as from a TUN queue), and an eventfd is the wake fd. Checks that one
 * portWait reads what it reports, that the bound batches write and refuse what lies outside
 * them, and that a closed or unknown handle is refused.
 */
import { afterEach, describe, expect, test } from 'vitest';
import * as native from '../../src/io/native.js';

const raw = native.nativeAddon;
const SLOT = 256;
const SLOTS = 4;

interface Rig {
  port: number;
  tunPeer: number;
  rxPeer: number;
  wake: number;
  txMem: Uint8Array;
  tunLens: Int32Array;
  rxMem: Uint8Array;
  rxLens: Int32Array;
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
  const sendFds = Int32Array.of(-1);
  const r = {
    tunPeer, rxPeer, wake,
    txMem: new Uint8Array(SLOT * SLOTS), tunLens: new Int32Array(SLOTS),
    rxMem: new Uint8Array(SLOT * SLOTS), rxLens: new Int32Array(SLOTS),
    stats: new Int32Array(native.STATS_LEN), state: new Int32Array(native.PORT_STATE_LEN),
    offs: new Int32Array(SLOTS), lens: new Int32Array(SLOTS),
  };
  const port = raw.portOpen(Int32Array.of(tun, rx, wake), sendFds, r.txMem, SLOT, r.tunLens, r.rxMem, SLOT, r.rxLens,
    new Uint32Array(SLOTS), new Uint16Array(SLOTS), undefined, r.stats, r.state);
  ports.push(port);
  raw.portBindWrite(port, 0, r.offs, r.lens);
  return { port, ...r };
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

  test('a wait stops reading at tunMax and tunBudget; portRead takes the rest', () => {
    const r = rig();
    for (let i = 0; i < 3; i++) put(r.tunPeer, new Uint8Array(100).fill(i));
    expect(raw.portWait(r.port, 1000, 2, 0, 1 << 20, SLOTS)).toBe(1);
    expect(r.state[native.PORT_TUN_COUNT]).toBe(2);
    expect(raw.portRead(r.port, SLOTS, 0, 50)).toBe(1); // the budget stops the batch after its first packet
    expect(r.txMem[0]).toBe(2);
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
    const offs = Int32Array.of(0);
    const lens = Int32Array.of(8);
    raw.portBindSend(r.port, 1, native.PORT_RX_MEM, offs, lens, Uint8Array.of(3), Uint32Array.of(0x7f000001), Uint16Array.of(9));
    expect(raw.portSend(r.port, 1, 1, false)).toBe(0);
    expect(r.stats[native.STAT_FAILED]).toBe(1);
    expect(r.stats[native.STAT_LAST_ERRNO]).toBe(22);
  });

  test('counts beyond what was bound, unknown batches and handles are refused with the argument named', () => {
    const r = rig();
    expect(() => raw.portWait(r.port, 0, SLOTS + 1, 0, 1, SLOTS)).toThrow(/portWait: tunMax exceeds the bound TUN slots/);
    expect(() => raw.portWait(r.port, 0, SLOTS, SLOT, 1, SLOTS)).toThrow(/portWait: headroom must be in 0..txSlot-1/);
    expect(() => raw.portRecv(r.port, SLOTS + 1)).toThrow(/portRecv: max exceeds the bound receive slots/);
    expect(() => raw.portWrite(r.port, 0, SLOTS - 1, 2)).toThrow(/portWrite: at puts the batch outside/);
    expect(() => raw.portWrite(r.port, 1, 0, 1)).toThrow(/portWrite: k names no bound write batch/);
    expect(() => raw.portSend(r.port, 2, 0, false)).toThrow(/portSend: k must be 0 or 1/);
    expect(() => raw.portSend(r.port, 0, 0, false)).toThrow(/portSend: k names no bound send batch/);
    raw.portBindSend(r.port, 0, native.PORT_TX_MEM, r.offs, r.lens, new Uint8Array(SLOTS), new Uint32Array(SLOTS), new Uint16Array(SLOTS));
    expect(() => raw.portSend(r.port, 0, 1, true)).toThrow(/portSend: gso needs a batch bound with segSizes/);
    expect(() => raw.portSend(r.port, 0, SLOTS + 1, false)).toThrow(/portSend: count exceeds the bound send batch/);
    expect(() => raw.portWait(12345, 0, 0, 0, 1, 0)).toThrow(/portWait: port is not an open port of this thread/);
    expect(() => raw.portOpen(Int32Array.of(-1, -1), Int32Array.of(-1), r.txMem, SLOT, r.tunLens, r.rxMem, SLOT, r.rxLens,
      new Uint32Array(SLOTS), new Uint16Array(SLOTS), undefined, r.stats, r.state)).toThrow(/portOpen: fds must hold 3 fds/);
    expect(() => raw.portOpen(Int32Array.of(-1, -1, -1), Int32Array.of(-1), new Uint8Array(10), SLOT, r.tunLens, r.rxMem, SLOT, r.rxLens,
      new Uint32Array(SLOTS), new Uint16Array(SLOTS), undefined, r.stats, r.state)).toThrow(/portOpen: txMem has no room for one TUN slot/);
    expect(() => raw.portOpen(Int32Array.of(-1, -1, -1), Int32Array.of(-1), r.txMem, SLOT, r.tunLens, r.rxMem, SLOT, r.rxLens,
      new Uint32Array(SLOTS), new Uint16Array(SLOTS), undefined, r.stats, new Int32Array(2))).toThrow(/portOpen: state must have at least PORT_STATE_LEN/);
    expect(() => raw.portOpen(Int32Array.of(-1, -1, -1), Int32Array.of(-1), r.txMem, SLOT, r.tunLens, r.rxMem, SLOT, new Float64Array(4) as unknown as Int32Array,
      new Uint32Array(SLOTS), new Uint16Array(SLOTS), undefined, r.stats, r.state)).toThrow(/portOpen: rxLens must be an Int32Array/);
  });

  test('a closed port is gone: its handle is refused, a second close reports EBADF', () => {
    const r = rig();
    expect(raw.portClose(r.port)).toBe(0);
    ports.splice(ports.indexOf(r.port), 1);
    expect(raw.portClose(r.port)).toBe(-9);
    expect(() => raw.portRead(r.port, 1, 0, 1)).toThrow(/port is not an open port/);
  });
});
