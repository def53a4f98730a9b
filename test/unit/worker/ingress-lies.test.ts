/*
 * The offloaded loop's ingress (split of UDP_GRO messages, decap, coalescing) against datagrams a
 * peer could send to mislead it, on a loop without fds whose TUN writes a rehearsal sink records.
 */
import { afterEach, beforeEach, expect, test } from 'vitest';
import type { SendBatch } from '../../../src/dataplane/batch.js';
import { C, COUNTER_COUNT } from '../../../src/dataplane/counters.js';
import { PeerTable } from '../../../src/dataplane/peers.js';
import { CONTROL_WORDS } from '../../../src/worker/init.js';
import { ForwardLoop, type RehearsalSink } from '../../../src/worker/loop.js';
import { dataplaneContext } from '../../../src/worker/rehearsal.js';
import type { DataplaneContext } from '../../../src/dataplane/context.js';
import { fold, l4ChecksumV4, pseudoHeaderSumV4 } from '../../../src/wire/checksum.js';
import * as ipv4 from '../../../src/wire/ipv4.js';
import * as vnet from '../../../src/wire/vnet.js';
import { writeHeader } from '../../../src/wire/vxlan.js';

const LOCAL = ipv4.parseIpv4('10.254.1.0');
const PEER_NET = ipv4.parseIpv4('10.254.2.0');
const PEER_VTEP = ipv4.parseIpv4('192.0.2.2');
const LOCAL_MAC = Uint8Array.of(2, 0x7e, 0, 0, 0, 1);
const PEER_MAC = Uint8Array.of(2, 0x7e, 0, 0, 0, 2);

class Writes implements RehearsalSink {
  readonly packets: Uint8Array[] = [];
  sent(_mem: Uint8Array, _b: SendBatch, _gso: boolean): void {}
  written(mem: Uint8Array, offs: Int32Array, lens: Int32Array, count: number): void {
    for (let i = 0; i < count; i++) this.packets.push(mem.slice(offs[i], offs[i] + lens[i]));
  }
}

let ctx: DataplaneContext;
let loop: ForwardLoop;
let writes: Writes;

beforeEach(async () => {
  const table = new PeerTable(4);
  await table.publish([{ net: PEER_NET, prefix: 24, vtepIP: PEER_VTEP, vtepMAC: PEER_MAC }]);
  ctx = dataplaneContext(table, 1, LOCAL_MAC, LOCAL, 1450, 8472, 1, new Float64Array(COUNTER_COUNT));
  writes = new Writes();
  const io = { tunFd: -1, rxFd: -1, sendFds: Int32Array.of(-1), wakeFd: -1, rehearsal: writes };
  loop = new ForwardLoop(0, ctx, io, 64, new SharedArrayBuffer(CONTROL_WORDS * 4), { vnet: true, gso: true, gro: true, uso: true });
});

afterEach(() => loop.close());

/** An inner IPv4 packet to 10.254.1.<host> with a TCP (6) or UDP (17) header; checksums complete. */
function packet(proto: 6 | 17, o: { host?: number; sport?: number; seq?: number; window?: number; payload: number; fill?: number }): Uint8Array {
  const l4h = proto === 6 ? 20 : 8;
  const b = new Uint8Array(20 + l4h + o.payload);
  b[0] = 0x45;
  ipv4.setTotalLength(b, 0, b.length);
  ipv4.setFlagsFragment(b, 0, ipv4.IPV4_FLAG_DF);
  ipv4.setTtl(b, 0, 64);
  ipv4.setProtocol(b, 0, proto);
  ipv4.setSrc(b, 0, PEER_NET + 2);
  ipv4.setDst(b, 0, LOCAL + (o.host ?? 2));
  ipv4.updateHeaderChecksum(b, 0);
  const sport = o.sport ?? 40000;
  b.set([sport >> 8, sport & 0xff, 0x14, 0x51], 20);
  if (proto === 6) {
    const seq = o.seq ?? 1000;
    b.set([seq >>> 24, (seq >>> 16) & 0xff, (seq >>> 8) & 0xff, seq & 0xff, 0, 0, 0, 1, 0x50, 0x10], 24);
    const win = o.window ?? 0xff00;
    b.set([win >> 8, win & 0xff], 34);
  } else {
    b.set([(8 + o.payload) >> 8, (8 + o.payload) & 0xff], 24);
  }
  for (let i = 0; i < o.payload; i++) b[20 + l4h + i] = ((o.fill ?? 0x41) + i) & 0xff;
  setChecksum(b, l4ChecksumV4(b, 0));
  return b;
}

function setChecksum(b: Uint8Array, v: number): void {
  const at = 20 + (b[9] === 6 ? 16 : 6);
  b[at] = v >> 8;
  b[at + 1] = v & 0xff;
}

/** What a sender with checksum offload leaves in the field: the pseudo-header sum. */
function leavePartial(b: Uint8Array): void {
  setChecksum(b, fold(pseudoHeaderSumV4(ipv4.src(b, 0), ipv4.dst(b, 0), b[9], b.length - 20)));
}

function datagram(inner: Uint8Array): Uint8Array {
  const d = new Uint8Array(22 + inner.length);
  writeHeader(d, 0, 1);
  d.set(LOCAL_MAC, 8);
  d.set(PEER_MAC, 14);
  d.set([0x08, 0x00], 20);
  d.set(inner, 22);
  return d;
}

/** Receives `dgs` as one UDP_GRO message (segment size: the first's length, 0 for one datagram). */
function receive(dgs: Uint8Array[], seg = dgs.length > 1 ? dgs[0]!.length : 0): void {
  let at = 0;
  for (const d of dgs) {
    loop.rxMem.set(d, at);
    at += d.length;
  }
  loop.rxLens[0] = at;
  loop.rxSegs[0] = seg;
  loop.rxSrcIPs[0] = PEER_VTEP;
  loop.fromUnderlay(ctx.table.beginRead(0), 1);
  ctx.table.endRead(0);
}

const dst = (w: Uint8Array) => ipv4.formatIpv4(ipv4.dst(w, vnet.VNET_HDR_LEN));

test("a UDP_GRO train whose first inner packet claims the whole message is split as a train: the others' datagrams are delivered, the liar counted", () => {
  const size = 1200;
  const others = [0, 1, 2].map((k) => datagram(packet(6, { host: 3, sport: 33333, seq: 5000 + k * (size - 62), payload: size - 62, fill: 0x56 })));
  const liar = packet(6, { host: 9, sport: 4444, payload: size - 62 });
  ipv4.setTotalLength(liar, 0, 4 * size - 22);
  ipv4.updateHeaderChecksum(liar, 0);
  leavePartial(liar);
  receive([datagram(liar), ...others]);
  expect(writes.packets.map(dst)).toEqual(['10.254.1.3']);
  const w = writes.packets[0]!;
  expect(vnet.gsoType(w, 0)).toBe(vnet.VNET_GSO_TCPV4);
  expect(ipv4.totalLength(w, vnet.VNET_HDR_LEN)).toBe(40 + 3 * (size - 62));
  expect(ctx.counters[C.rx_datagrams]).toBe(4);
  expect(ctx.counters[C.rx_drop_truncated_inner]).toBe(1);
});

test('a whole TCP super-packet in one datagram (no segment size) is still taken whole', () => {
  const sp = packet(6, { payload: 20 * 1398 });
  leavePartial(sp);
  receive([datagram(sp)], 0);
  expect(writes.packets.length).toBe(1);
  expect(vnet.gsoType(writes.packets[0]!, 0)).toBe(vnet.VNET_GSO_TCPV4);
  expect(vnet.gsoSize(writes.packets[0]!, 0)).toBe(1450 - 40); // MTU less IPv4 and TCP headers
  expect(writes.packets[0]!.length).toBe(10 + sp.length);
});

test('TCP segments whose windows differ are not joined: each keeps its own window', () => {
  receive([datagram(packet(6, { seq: 1000, window: 0x0400, payload: 1000 })), datagram(packet(6, { seq: 2000, window: 0xfff0, payload: 1000 }))]);
  const windows = writes.packets.map((w) => (w[vnet.VNET_HDR_LEN + 34]! << 8) | w[vnet.VNET_HDR_LEN + 35]!);
  expect(windows).toEqual([0x0400, 0xfff0]);
  // The same two segments with one window are joined.
  writes.packets.length = 0;
  receive([datagram(packet(6, { seq: 1000, payload: 1000 })), datagram(packet(6, { seq: 2000, payload: 1000 }))]);
  expect(writes.packets.length).toBe(1);
});

test.each([0, 1])('a UDP datagram with %i payload bytes and an unfinished checksum is written for the kernel to finish', (payload) => {
  const p = packet(17, { payload });
  leavePartial(p);
  receive([datagram(p)]);
  expect(writes.packets.length).toBe(1);
  const w = writes.packets[0]!;
  expect(vnet.vnetFlags(w, 0)).toBe(vnet.VNET_F_NEEDS_CSUM);
  expect([vnet.csumStart(w, 0), vnet.csumOffset(w, 0)]).toEqual([20, 6]);
  expect(ctx.counters[C.rx_inner_csum_partial]).toBe(1);
});
