/*
 * The offloaded data path without a kernel: a TCP super-packet as the TUN device hands it over
 * (virtio-net header, GSO TCPv4) is cut into VXLAN segments, the segments are received as one
 * UDP_GRO message, decapsulated and coalesced back, and the result must be the same stream.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { SendBatch, WriteBatch } from '../../../src/dataplane/batch.js';
import { C, COUNTER_COUNT } from '../../../src/dataplane/counters.js';
import type { DataplaneContext } from '../../../src/dataplane/context.js';
import { ChecksumJobs } from '../../../src/dataplane/csum-jobs.js';
import { CoalesceScratch, coalesceBatch } from '../../../src/dataplane/coalesce.js';
import { decapBatch } from '../../../src/dataplane/decap.js';
import { PeerTable } from '../../../src/dataplane/peers.js';
import { VNET_READ_HEADROOM, segmentBatch, segmentsPerMessage, type SegmentArea, type TcpSegmenter, type UdpSegmenter } from '../../../src/dataplane/segment.js';
import { tcpSegmentJs } from '../../../src/dataplane/tcp-segment.js';
import { udpSegmentJs } from '../../../src/dataplane/udp-segment.js';
import { flowHashV4 } from '../../../src/dataplane/flowhash.js';
import { nativeAddon, tcpSegment, udpSegment } from '../../../src/io/native.js';
import { pseudoHeaderSumV4, sum16, fold } from '../../../src/wire/checksum.js';
import { parseIpv4, updateHeaderChecksum, headerChecksumValid } from '../../../src/wire/ipv4.js';
import { parseMac } from '../../../src/wire/mac.js';
import * as tcp from '../../../src/wire/tcp.js';
import * as vnet from '../../../src/wire/vnet.js';

const MAC_A = parseMac('02:aa:00:00:00:01');
const MAC_B = parseMac('02:aa:00:00:00:02');
const VTEP_A = parseIpv4('172.31.0.1');
const VTEP_B = parseIpv4('172.31.0.2');
const SRC = parseIpv4('10.244.1.2');
const DST = parseIpv4('10.244.2.2');
const MSS = 1398;
const TUN_SLOT = 65600;

async function ctxFor(mac: Uint8Array, subnet: string, peerSubnet: string, peerVtep: number, peerMac: Uint8Array): Promise<DataplaneContext> {
  const table = new PeerTable(8);
  await table.publish([{ net: parseIpv4(peerSubnet), prefix: 24, vtepIP: peerVtep, vtepMAC: peerMac }]);
  return { table, vni: 1, vtepMAC: mac, overlayIP: parseIpv4(subnet), mtu: 1450, port: 8472, flowSockets: 8, counters: new Float64Array(COUNTER_COUNT) };
}

/** A TSO super-packet at mem[at]: virtio-net header + IPv4 + TCP (12 option bytes) + payload. */
function superPacket(mem: Uint8Array, at: number, payload: number, flags: number, partial: boolean): number {
  const ip = at + vnet.VNET_HDR_LEN;
  const thl = 32;
  const len = 20 + thl + payload;
  mem.fill(0, at, ip + len);
  vnet.writeGso(mem, at, vnet.VNET_GSO_TCPV4, 20 + thl, MSS, 20, tcp.TCP_CHECKSUM_OFF);
  mem[ip] = 0x45;
  mem[ip + 2] = len >> 8;
  mem[ip + 3] = len & 0xff;
  mem[ip + 4] = 0x12;
  mem[ip + 5] = 0x34;
  mem[ip + 6] = 0x40; // DF
  mem[ip + 8] = 64;
  mem[ip + 9] = 6;
  for (let i = 0; i < 4; i++) {
    mem[ip + 12 + i] = (SRC >>> (24 - 8 * i)) & 255;
    mem[ip + 16 + i] = (DST >>> (24 - 8 * i)) & 255;
  }
  updateHeaderChecksum(mem, ip);
  const th = ip + 20;
  mem.set([0x9c, 0x40, 0x14, 0x51], th);
  tcp.setSeq(mem, th, 0xfffff000); // wraps inside the packet
  mem.set([0, 0, 0, 7], th + 8);
  mem[th + 12] = (thl / 4) << 4;
  tcp.setFlags(mem, th, flags);
  mem[th + 14] = 0x01;
  mem.set([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], th + 20); // NOP NOP timestamps
  for (let i = 0; i < payload; i++) mem[th + thl + i] = (i * 13 + 5) & 0xff;
  if (partial) tcp.setChecksum(mem, th, fold(pseudoHeaderSumV4(SRC, DST, 6, thl + payload)));
  return vnet.VNET_HDR_LEN + len;
}

function tcpValid(mem: Uint8Array, ip: number, len: number): boolean {
  return fold(sum16(mem, ip + 20, len - 20, pseudoHeaderSumV4(SRC, DST, 6, len - 20))) === 0xffff;
}

const SEGMENTERS: [string, TcpSegmenter, UdpSegmenter][] = [['addon', tcpSegment, udpSegment], ['TypeScript', tcpSegmentJs, udpSegmentJs]];

describe.each(SEGMENTERS)('segment (%s) → UDP_GRO → coalesce', (_name, cut, cutUdp) => {
  let a: DataplaneContext;
  let b: DataplaneContext;
  beforeEach(async () => {
    a = await ctxFor(MAC_A, '10.244.1.0', '10.244.2.0', VTEP_B, MAC_B);
    b = await ctxFor(MAC_B, '10.244.2.0', '10.244.1.0', VTEP_A, MAC_A);
  });

  it('cuts a 64 KB super-packet into complete segments and joins them back', () => {
    const payload = 44 * MSS;
    const segStart = TUN_SLOT;
    const mem = new Uint8Array(segStart + 2 * 70000);
    const lens = Int32Array.of(superPacket(mem, VNET_READ_HEADROOM, payload, tcp.TCP_ACK | tcp.TCP_PSH, true));
    const original = mem.slice(VNET_READ_HEADROOM + 10 + 52, VNET_READ_HEADROOM + 10 + 52 + payload);
    const area: SegmentArea = { mem, tunSlot: TUN_SLOT, segStart, segEnd: mem.length, gso: true, maxDatagram: 1472, cut, cutUdp };
    const out = new SendBatch(16);
    const jobs = new ChecksumJobs(128);
    expect(segmentBatch(a, a.table.beginRead(0), area, lens, 0, 1, out, jobs)).toBe(1);
    jobs.run(mem);
    jobs.store(mem);
    expect(a.counters[C.tun_rx_segments]).toBe(44);
    const seg = out.segSizes[0];
    expect(seg).toBe(22 + 52 + MSS);
    expect(out.lens[0]).toBe(44 * seg);
    // Every segment is a complete packet with its own sequence number; PSH only on the last.
    for (let j = 0; j < 44; j++) {
      const ip = out.offs[0] + j * seg + 22;
      expect(headerChecksumValid(mem, ip)).toBe(true);
      expect(tcpValid(mem, ip, 52 + MSS)).toBe(true);
      expect(tcp.seq(mem, ip + 20)).toBe((0xfffff000 + j * MSS) >>> 0);
      expect(tcp.flags(mem, ip + 20)).toBe(j === 43 ? tcp.TCP_ACK | tcp.TCP_PSH : tcp.TCP_ACK);
      expect(mem[ip + 5]).toBe((0x34 + j) & 0xff);
    }

    // Receive the message as UDP_GRO would deliver it: one slot, 44 datagrams of `seg` bytes.
    const slot = 0x10000;
    const rx = new Uint8Array(slot);
    rx.set(mem.subarray(out.offs[0], out.offs[0] + out.lens[0]), 0);
    const offs = Int32Array.from({ length: 44 }, (_, j) => j * seg);
    const dlens = new Int32Array(44).fill(seg);
    const tun = new WriteBatch(64);
    const k = decapBatch(b, b.table.beginRead(0), rx, offs, dlens, slot, new Uint32Array(44).fill(VTEP_A), 44, tun, new SendBatch(4));
    expect(k).toBe(44);
    const fin = new WriteBatch(64);
    expect(coalesceBatch(b, rx, slot, tun, fin, new ChecksumJobs(64), new CoalesceScratch(64), true)).toBe(1);
    expect(b.counters[C.tun_tx_coalesced_segments]).toBe(44);
    const at = fin.offs[0];
    expect(vnet.gsoType(rx, at)).toBe(vnet.VNET_GSO_TCPV4);
    expect(vnet.gsoSize(rx, at)).toBe(MSS);
    expect(vnet.vnetFlags(rx, at)).toBe(vnet.VNET_F_NEEDS_CSUM);
    const ip = at + 10;
    expect(fin.lens[0]).toBe(10 + 52 + payload);
    expect(headerChecksumValid(rx, ip)).toBe(true);
    expect(tcp.flags(rx, ip + 20)).toBe(tcp.TCP_ACK | tcp.TCP_PSH);
    expect(tcp.seq(rx, ip + 20)).toBe(0xfffff000);
    expect(rx.slice(ip + 52, ip + 52 + payload)).toEqual(original);
    // The checksum field holds the pseudo-header sum for the whole (the kernel finishes it).
    expect(tcp.checksum(rx, ip + 20)).toBe(fold(pseudoHeaderSumV4(SRC, DST, 6, 32 + payload)));
  });

  it('does not join a segment with a bad checksum, and passes unfinished ones on as partial', () => {
    const payload = 3 * MSS;
    const mem = new Uint8Array(TUN_SLOT + 70000);
    const lens = Int32Array.of(superPacket(mem, VNET_READ_HEADROOM, payload, tcp.TCP_ACK, true));
    const area: SegmentArea = { mem, tunSlot: TUN_SLOT, segStart: TUN_SLOT, segEnd: mem.length, gso: true, maxDatagram: 1472, cut, cutUdp };
    const out = new SendBatch(4);
    const jobs = new ChecksumJobs(16);
    segmentBatch(a, a.table.beginRead(0), area, lens, 0, 1, out, jobs);
    jobs.run(mem);
    jobs.store(mem);
    const seg = out.segSizes[0];
    const slot = 0x10000;
    const rx = new Uint8Array(slot);
    rx.set(mem.subarray(out.offs[0], out.offs[0] + out.lens[0]), 0);
    rx[1 * seg + 22 + 52 + 100] ^= 0xff; // corrupt segment 1's payload
    // Segment 2 as a kernel VXLAN sender on veth leaves it: pseudo-header sum only.
    const ip2 = 2 * seg + 22;
    tcp.setChecksum(rx, ip2 + 20, fold(pseudoHeaderSumV4(SRC, DST, 6, 32 + MSS)));
    const tun = new WriteBatch(8);
    const k = decapBatch(b, b.table.beginRead(0), rx, Int32Array.of(0, seg, 2 * seg), new Int32Array(3).fill(seg), slot, new Uint32Array(3).fill(VTEP_A), 3, tun, new SendBatch(4));
    expect(k).toBe(3);
    const fin = new WriteBatch(8);
    expect(coalesceBatch(b, rx, slot, tun, fin, new ChecksumJobs(8), new CoalesceScratch(8), true)).toBe(3);
    expect(b.counters[C.rx_inner_csum_bad]).toBe(1);
    expect(b.counters[C.rx_inner_csum_partial]).toBe(1);
    expect(vnet.vnetFlags(rx, fin.offs[0])).toBe(0); // valid, alone: the kernel verifies again
    expect(vnet.vnetFlags(rx, fin.offs[1])).toBe(0); // bad: the kernel drops it
    expect(vnet.vnetFlags(rx, fin.offs[2])).toBe(vnet.VNET_F_NEEDS_CSUM);
    expect(vnet.csumStart(rx, fin.offs[2])).toBe(20);
    expect(vnet.csumOffset(rx, fin.offs[2])).toBe(16);
  });
});

describe('segmentsPerMessage', () => {
  it('is what one UDP_SEGMENT message of full-size VXLAN datagrams holds, at most 64', () => {
    expect(segmentsPerMessage(1450)).toBe(44); // 44 x 1472 = 64768 <= 65507 < 45 x 1472
    expect(segmentsPerMessage(8950)).toBe(7);
    expect(segmentsPerMessage(576)).toBe(64);
    expect(segmentsPerMessage(65535)).toBe(1);
  });
});

describe('tcpSegment (addon) and tcpSegmentJs agree byte for byte', () => {
  it.each([[1, 1398], [2 * 1398, 1398], [44 * 1398 + 17, 1398], [5000, 536], [65483, 1448]])('payload %i, mss %i', (payload, mss) => {
    const mk = () => {
      const mem = new Uint8Array(TUN_SLOT + 80000).fill(0xa5);
      superPacket(mem, 0, payload, tcp.TCP_ACK | tcp.TCP_PSH | tcp.TCP_FIN | tcp.TCP_CWR, false);
      mem.fill(0x3c, TUN_SLOT, TUN_SLOT + 22); // the prefix
      return mem;
    };
    const a = mk();
    const b = mk();
    const na = tcpSegment(a, 10, 20, 32, payload, mss, TUN_SLOT, 22);
    const nb = tcpSegmentJs(b, 10, 20, 32, payload, mss, TUN_SLOT, 22);
    expect(na).toBe(nb);
    expect(na).toBe(Math.ceil(payload / mss) * (22 + 52) + payload);
    expect(Buffer.compare(a, b)).toBe(0);
  });

  it('refuses overlapping or out-of-range output, and out-of-range sizes even without the TypeScript checks', () => {
    const mem = new Uint8Array(70000);
    superPacket(mem, 0, 3000, tcp.TCP_ACK, false);
    expect(nativeAddon.tcpSegment(mem, 10, 20, 32, 3000, 0x7fffffff, 10000, 22)).toBe(-22);
    expect(nativeAddon.tcpSegment(mem, 10, 20, 32, 3000, 1398, 10000, 0x7fffffff)).toBe(-22);
    expect(tcpSegment(mem, 10, 20, 32, 3000, 1398, 100, 22)).toBe(-22);
    expect(tcpSegment(mem, 10, 20, 32, 3000, 1398, 69000, 22)).toBe(-22);
  });
});

/** A UDP_L4 super-packet's IPv4 + UDP headers and payload at mem[ip] (ihl 20, or 24 with an option). */
function udpSuper(mem: Uint8Array, ip: number, ihl: number, payload: number): void {
  const len = ihl + 8 + payload;
  mem.fill(0, ip, ip + len);
  mem[ip] = 0x40 | (ihl / 4);
  mem[ip + 2] = len >> 8;
  mem[ip + 3] = len & 0xff;
  mem.set([0xff, 0xfe], ip + 4); // the IDs wrap inside the packet
  mem[ip + 8] = 64;
  mem[ip + 9] = 17;
  for (let i = 0; i < 4; i++) {
    mem[ip + 12 + i] = (SRC >>> (24 - 8 * i)) & 255;
    mem[ip + 16 + i] = (DST >>> (24 - 8 * i)) & 255;
  }
  if (ihl > 20) mem.set([1, 1, 1, 0], ip + 20); // NOP NOP NOP EOL
  updateHeaderChecksum(mem, ip);
  mem.set([0xc3, 0x50, 0x01, 0xbb, (8 + payload) >> 8, (8 + payload) & 0xff], ip + ihl);
  for (let i = 0; i < payload; i++) mem[ip + ihl + 8 + i] = (i * 29 + 3) & 0xff;
}

function udpValid(mem: Uint8Array, ip: number): boolean {
  const ihl = (mem[ip]! & 15) * 4;
  const len = (mem[ip + 2]! << 8) | mem[ip + 3]!;
  return fold(sum16(mem, ip, ihl)) === 0xffff && fold(sum16(mem, ip + ihl, len - ihl, pseudoHeaderSumV4(SRC, DST, 17, len - ihl))) === 0xffff;
}

describe('udpSegment (addon) and udpSegmentJs agree byte for byte', () => {
  it.each([[20, 1, 1400], [20, 2800, 1400], [20, 44 * 1400 + 9, 1400], [24, 5000, 536], [20, 65000, 1000], [20, 300, 1]])(
    'ihl %i, payload %i, mss %i', (ihl, payload, mss) => {
      const mk = () => {
        const mem = new Uint8Array(TUN_SLOT + 400000).fill(0xa5);
        udpSuper(mem, 10, ihl, payload);
        mem.fill(0x3c, TUN_SLOT, TUN_SLOT + 22); // the prefix
        return mem;
      };
      const a = mk();
      const b = mk();
      const nseg = Math.ceil(payload / mss);
      const na = udpSegment(a, 10, ihl, payload, mss, TUN_SLOT, 22);
      expect(na).toBe(nseg * (22 + ihl + 8) + payload);
      expect(udpSegmentJs(b, 10, ihl, payload, mss, TUN_SLOT, 22)).toBe(na);
      expect(Buffer.compare(a, b)).toBe(0);
      // Every datagram is complete: its own lengths, ID + j, valid header and UDP checksums.
      let at = TUN_SLOT;
      for (let j = 0; j < nseg; j++) {
        const plen = Math.min(mss, payload - j * mss);
        const ip = at + 22;
        expect(a.subarray(at, ip)).toEqual(new Uint8Array(22).fill(0x3c));
        expect((a[ip + 2]! << 8) | a[ip + 3]!).toBe(ihl + 8 + plen);
        expect((a[ip + 4]! << 8) | a[ip + 5]!).toBe((0xfffe + j) & 0xffff);
        expect((a[ip + ihl + 4]! << 8) | a[ip + ihl + 5]!).toBe(8 + plen);
        expect(udpValid(a, ip)).toBe(true);
        expect(a.subarray(ip + ihl + 8, ip + ihl + 8 + plen)).toEqual(a.subarray(10 + ihl + 8 + j * mss, 10 + ihl + 8 + j * mss + plen));
        at = ip + ihl + 8 + plen;
      }
    },
  );

  it('sends a checksum that sums to zero as 0xffff (zero would mean none)', () => {
    const mem = new Uint8Array(4096);
    const out = 2048;
    udpSuper(mem, 0, 20, 64);
    // Two payload bytes chosen so that the complete datagram sums to 0xffff: its checksum is 0.
    mem[28] = 0;
    mem[29] = 0;
    const s = fold(sum16(mem, 20, 72, pseudoHeaderSumV4(SRC, DST, 17, 72)));
    const adj = 0xffff - s;
    mem[28] = adj >> 8;
    mem[29] = adj & 0xff;
    const other = mem.slice();
    expect(udpSegment(mem, 0, 20, 64, 1400, out, 0)).toBe(92);
    expect(udpSegmentJs(other, 0, 20, 64, 1400, out, 0)).toBe(92);
    expect([mem[out + 26], mem[out + 27]]).toEqual([0xff, 0xff]);
    expect(Buffer.compare(mem, other)).toBe(0);
    expect(udpValid(mem, out)).toBe(true);
  });

  it('refuses overlapping or out-of-range output, and out-of-range sizes even without the TypeScript checks', () => {
    const mem = new Uint8Array(70000);
    udpSuper(mem, 10, 20, 3000);
    expect(nativeAddon.udpSegment(mem, 10, 20, 3000, 0x7fffffff, 10000, 22)).toBe(-22);
    expect(nativeAddon.udpSegment(mem, 10, 20, 3000, 1400, 10000, 0x7fffffff)).toBe(-22);
    expect(nativeAddon.udpSegment(mem, 10, 64, 3000, 1400, 10000, 22)).toBe(-22);
    expect(nativeAddon.udpSegment(mem, 10, 20, 0, 1400, 10000, 22)).toBe(-22);
    expect(udpSegment(mem, 10, 20, 3000, 1400, 100, 22)).toBe(-22);
    expect(udpSegment(mem, 10, 20, 3000, 1400, 69000, 22)).toBe(-22);
    expect(udpSegment(mem, 10, 20, 70000, 1400, 0, 22)).toBe(-22);
    // A datagram whose IPv4 total length would not fit 16 bits.
    const big = new Uint8Array(200000);
    udpSuper(big, 10, 20, 65507);
    expect(udpSegment(big, 10, 20, 65507, 65507, 100000, 22)).toBe(22 + 28 + 65507);
    expect(udpSegment(big, 10, 20, 65508, 65508, 100000, 22)).toBe(-22);
    expect(nativeAddon.tcpSegment(big, 10, 20, 20, 65496, 65496, 100000, 22)).toBe(-22);
  });
});

describe('UDP datagrams of one flow', () => {
  it('join into one UDP_L4 GSO write; another flow or a shorter datagram ends the run', async () => {
    const b = await ctxFor(MAC_B, '10.244.2.0', '10.244.1.0', VTEP_A, MAC_A);
    const slot = 0x10000;
    const rx = new Uint8Array(slot);
    // Five VXLAN datagrams in one receive slot: flow X 100 B, 100 B, 60 B (ends the run), 100 B; then flow Y.
    const sizes = [100, 100, 60, 100, 100];
    const sports = [5000, 5000, 5000, 5000, 6000];
    const offs: number[] = [];
    const lens: number[] = [];
    let at = 0;
    sizes.forEach((payload, i) => {
      const dg = at;
      rx.set([0x08, 0, 0, 0, 0, 0, 1, 0], dg);
      rx.set(MAC_B, dg + 8);
      rx.set(MAC_A, dg + 14);
      rx.set([0x08, 0x00], dg + 20);
      const ip = dg + 22;
      const len = 28 + payload;
      rx.set([0x45, 0, len >> 8, len & 0xff, 0, i, 0x40, 0, 64, 17, 0, 0, 10, 244, 1, 2, 10, 244, 2, 2], ip);
      updateHeaderChecksum(rx, ip);
      rx.set([sports[i]! >> 8, sports[i]! & 0xff, 0x13, 0x88, (8 + payload) >> 8, (8 + payload) & 0xff, 0, 0], ip + 20);
      for (let j = 0; j < payload; j++) rx[ip + 28 + j] = (i * 31 + j) & 0xff;
      offs.push(dg);
      lens.push(22 + len);
      at += 22 + len;
    });
    const tun = new WriteBatch(8);
    const n = sizes.length;
    expect(decapBatch(b, b.table.beginRead(0), rx, Int32Array.from(offs), Int32Array.from(lens), slot, new Uint32Array(n).fill(VTEP_A), n, tun, new SendBatch(4))).toBe(n);
    const expected = [...rx.slice(offs[0]! + 50, offs[0]! + 150), ...rx.slice(offs[1]! + 50, offs[1]! + 150), ...rx.slice(offs[2]! + 50, offs[2]! + 110)];
    const fin = new WriteBatch(8);
    expect(coalesceBatch(b, rx, slot, tun, fin, new ChecksumJobs(8), new CoalesceScratch(8), true)).toBe(3);
    const first = fin.offs[0]!;
    expect(vnet.gsoType(rx, first)).toBe(vnet.VNET_GSO_UDP_L4);
    expect(vnet.gsoSize(rx, first)).toBe(100);
    expect(vnet.csumOffset(rx, first)).toBe(6);
    const ip = first + 10;
    expect(fin.lens[0]).toBe(10 + 28 + 260);
    expect(headerChecksumValid(rx, ip)).toBe(true);
    expect((rx[ip + 24]! << 8) | rx[ip + 25]!).toBe(8 + 260);
    expect((rx[ip + 26]! << 8) | rx[ip + 27]!).toBe(fold(pseudoHeaderSumV4(SRC, DST, 17, 268)));
    expect([...rx.slice(ip + 28, ip + 28 + 260)]).toEqual(expected);
    // The 4th datagram starts a new run but is alone before flow Y: both written as they are.
    expect(vnet.gsoType(rx, fin.offs[1]!)).toBe(vnet.VNET_GSO_NONE);
    expect(vnet.gsoType(rx, fin.offs[2]!)).toBe(vnet.VNET_GSO_NONE);
    expect(b.counters[C.tun_tx_coalesced_segments]).toBe(3);
  });
});

describe('single packets to one peer out of one socket', () => {
  /** A UDP packet as the TUN device hands it over, at mem[at]; `partial` leaves its checksum to tulle. */
  function udpPacket(mem: Uint8Array, at: number, dst: number, sport: number, payload: number, id: number, partial: boolean): number {
    const ip = at + vnet.VNET_HDR_LEN;
    const len = 28 + payload;
    mem.fill(0, at, ip + len);
    if (partial) vnet.writePartial(mem, at, 20, 6);
    mem.set([0x45, 0, len >> 8, len & 0xff, 0, id, 0x40, 0, 64, 17, 0, 0], ip);
    for (let i = 0; i < 4; i++) {
      mem[ip + 12 + i] = (SRC >>> (24 - 8 * i)) & 255;
      mem[ip + 16 + i] = (dst >>> (24 - 8 * i)) & 255;
    }
    updateHeaderChecksum(mem, ip);
    mem.set([sport >> 8, sport & 0xff, 0x13, 0x89, (8 + payload) >> 8, (8 + payload) & 0xff], ip + 20);
    for (let j = 0; j < payload; j++) mem[ip + 28 + j] = (id * 7 + j) & 0xff;
    const sum = pseudoHeaderSumV4(SRC, dst, 17, 8 + payload);
    if (partial) {
      mem[ip + 26] = fold(sum) >> 8;
      mem[ip + 27] = fold(sum) & 0xff;
    } else {
      const c = ~fold(sum16(mem, ip + 20, 8 + payload, sum)) & 0xffff;
      mem[ip + 26] = c >> 8;
      mem[ip + 27] = c & 0xff;
    }
    return vnet.VNET_HDR_LEN + len;
  }

  it('share one UDP_SEGMENT message while none is longer than the first; another peer or socket starts a new one', async () => {
    const table = new PeerTable(8);
    const VTEP_C = parseIpv4('172.31.0.3');
    await table.publish([
      { net: parseIpv4('10.244.2.0'), prefix: 24, vtepIP: VTEP_B, vtepMAC: MAC_B },
      { net: parseIpv4('10.244.3.0'), prefix: 24, vtepIP: VTEP_C, vtepMAC: parseMac('02:aa:00:00:00:03') },
    ]);
    const a: DataplaneContext = { table, vni: 1, vtepMAC: MAC_A, overlayIP: parseIpv4('10.244.1.0'), mtu: 1450, port: 8472, flowSockets: 8, counters: new Float64Array(COUNTER_COUNT) };
    const DST_C = parseIpv4('10.244.3.2');
    const sockOf = (sport: number): number => {
      const m = new Uint8Array(64);
      udpPacket(m, 0, DST, sport, 8, 0, false);
      return flowHashV4(m, vnet.VNET_HDR_LEN, 36) % 8;
    };
    let other = 6000;
    while (sockOf(other) === sockOf(5000)) other++;
    // [payload, destination, source port, partial]: five of flow X (one left partial), a shorter
    // one ending the run, X again, X to another peer, then another socket to the first peer.
    const plan: [number, number, number, boolean][] = [
      [64, DST, 5000, false], [64, DST, 5000, true], [64, DST, 5000, false], [64, DST, 5000, false], [64, DST, 5000, false],
      [30, DST, 5000, false], [64, DST, 5000, false], [64, DST_C, 5000, false], [64, DST, other, false],
    ];
    const slot = 2048;
    const segStart = plan.length * slot;
    const mem = new Uint8Array(segStart + 4096);
    const lens = new Int32Array(plan.length);
    plan.forEach(([payload, dst, sport, partial], i) => { lens[i] = udpPacket(mem, i * slot + VNET_READ_HEADROOM, dst, sport, payload, i, partial); });
    const inner = plan.map((_, i) => mem.slice(i * slot + VNET_READ_HEADROOM + 10, i * slot + VNET_READ_HEADROOM + lens[i]!));
    const area: SegmentArea = { mem, tunSlot: slot, segStart, segEnd: mem.length, gso: true, maxDatagram: 1472, cut: tcpSegment, cutUdp: udpSegment };
    const out = new SendBatch(16);
    const jobs = new ChecksumJobs(16);
    expect(segmentBatch(a, a.table.beginRead(0), area, lens, 0, plan.length, out, jobs)).toBe(plan.length);
    jobs.run(mem);
    jobs.store(mem);
    const full = 22 + 28 + 64;
    expect(out.count).toBe(4);
    expect([...out.lens.subarray(0, 4)]).toEqual([5 * full + 22 + 28 + 30, full, full, full]);
    // The last packet could join nothing (another socket, and no packet after it): sent in place.
    expect([...out.segSizes.subarray(0, 4)]).toEqual([full, full, full, 0]);
    expect(out.offs[3]).toBe(8 * slot);
    expect([...out.dstIPs.subarray(0, 4)]).toEqual([VTEP_B, VTEP_B, parseIpv4('172.31.0.3'), VTEP_B].map((x) => x >>> 0));
    expect(out.sockIdx[0]).toBe(out.sockIdx[1]);
    expect(out.sockIdx[3]).not.toBe(out.sockIdx[0]);

    // The first message as the peer's UDP_GRO socket receives it: six datagrams back to back.
    const b = await ctxFor(MAC_B, '10.244.2.0', '10.244.1.0', VTEP_A, MAC_A);
    const rx = mem.slice(out.offs[0]!, out.offs[0]! + out.lens[0]!);
    const offs = Int32Array.from({ length: 6 }, (_, j) => j * full);
    const dlens = Int32Array.from({ length: 6 }, (_, j) => (j < 5 ? full : 22 + 28 + 30));
    const tun = new WriteBatch(8);
    expect(decapBatch(b, b.table.beginRead(0), rx, offs, dlens, 0x10000, new Uint32Array(6).fill(VTEP_A), 6, tun, new SendBatch(4))).toBe(6);
    for (let j = 0; j < 6; j++) {
      const got = rx.slice(tun.offs[j]!, tun.offs[j]! + tun.lens[j]!);
      // Packet 1 left the TUN device with an unfinished checksum and arrives completed.
      expect(fold(sum16(got, 20, got.length - 20, pseudoHeaderSumV4(SRC, DST, 17, got.length - 20))), `datagram ${j}`).toBe(0xffff);
      if (j !== 1) expect([...got], `datagram ${j}`).toEqual([...inner[j]!]);
      else expect([...got.subarray(28)]).toEqual([...inner[1]!.subarray(28)]);
    }
  });

  it('a packet too large for the underlay goes alone, from where it was read, and never leads a run', async () => {
    const a = await ctxFor(MAC_A, '10.244.1.0', '10.244.2.0', VTEP_B, MAC_B);
    const slot = 2048;
    const mem = new Uint8Array(5 * slot + 4096);
    const payloads = [64, 300, 64, 64, 64];
    const lens = Int32Array.from(payloads, (p, i) => udpPacket(mem, i * slot + VNET_READ_HEADROOM, DST, 5000, p, i, false));
    // 22 + 28 + 300 = 350 bytes does not fit a 200-byte path; 22 + 28 + 64 = 114 does.
    const area: SegmentArea = { mem, tunSlot: slot, segStart: 5 * slot, segEnd: mem.length, gso: true, maxDatagram: 200, cut: tcpSegment, cutUdp: udpSegment };
    const out = new SendBatch(16);
    expect(segmentBatch(a, a.table.beginRead(0), area, lens, 0, 5, out, new ChecksumJobs(8))).toBe(5);
    expect(out.count).toBe(3);
    expect([...out.lens.subarray(0, 3)]).toEqual([114, 350, 3 * 114]);
    expect([...out.segSizes.subarray(0, 3)]).toEqual([114, 0, 114]);
    expect(out.offs[1]).toBe(slot); // sent in place, from its TUN slot
  });

  it('a UDP super-packet (a pod\'s UDP_SEGMENT send) is cut into complete datagrams of its gso_size', async () => {
    const a = await ctxFor(MAC_A, '10.244.1.0', '10.244.2.0', VTEP_B, MAC_B);
    const slot = 8192;
    const mem = new Uint8Array(2 * slot + 8192);
    const payload = 2 * 1000 + 400;
    const len = udpPacket(mem, VNET_READ_HEADROOM, DST, 5000, payload, 0x20, true);
    vnet.writeGso(mem, VNET_READ_HEADROOM, vnet.VNET_GSO_UDP_L4, 28, 1000, 20, 6);
    const ip0 = VNET_READ_HEADROOM + vnet.VNET_HDR_LEN;
    const original = mem.slice(ip0 + 28, ip0 + 28 + payload);
    for (const gso of [true, false]) {
      const area: SegmentArea = { mem, tunSlot: slot, segStart: slot, segEnd: mem.length, gso, maxDatagram: 1472, cut: tcpSegment, cutUdp: udpSegment };
      const out = new SendBatch(16);
      const jobs = new ChecksumJobs(16);
      a.counters.fill(0);
      expect(segmentBatch(a, a.table.beginRead(0), area, Int32Array.of(len), 0, 1, out, jobs)).toBe(1);
      jobs.run(mem);
      jobs.store(mem);
      expect(a.counters[C.tun_rx_segments]).toBe(3);
      const full = 22 + 28 + 1000;
      if (gso) {
        expect([out.count, out.lens[0], out.segSizes[0]]).toEqual([1, 2 * full + 22 + 28 + 400, full]);
      } else {
        expect([...out.lens.subarray(0, out.count)]).toEqual([full, full, 22 + 28 + 400]);
        expect([...out.segSizes.subarray(0, out.count)]).toEqual([0, 0, 0]);
      }
      for (let j = 0; j < 3; j++) {
        const chunk = j < 2 ? 1000 : 400;
        const ip = out.offs[0]! + j * full + 22;
        expect(mem[ip - 22] & 0x08, `VXLAN I flag of datagram ${j}`).toBe(0x08);
        expect(((mem[ip + 2]! << 8) | mem[ip + 3]!), 'IPv4 total length').toBe(28 + chunk);
        expect(((mem[ip + 4]! << 8) | mem[ip + 5]!), 'IPv4 ID').toBe(0x20 + j);
        expect(headerChecksumValid(mem, ip)).toBe(true);
        expect(((mem[ip + 24]! << 8) | mem[ip + 25]!), 'UDP length').toBe(8 + chunk);
        expect(fold(sum16(mem, ip + 20, 8 + chunk, pseudoHeaderSumV4(SRC, DST, 17, 8 + chunk))), `UDP checksum of datagram ${j}`).toBe(0xffff);
        expect([...mem.subarray(ip + 28, ip + 28 + chunk)]).toEqual([...original.subarray(j * 1000, j * 1000 + chunk)]);
      }
    }
  });

  it('a gso_size whose segments would not fit a datagram of the path, or a super-packet without payload, is a counted drop', async () => {
    const a = await ctxFor(MAC_A, '10.244.1.0', '10.244.2.0', VTEP_B, MAC_B);
    const slot = 8192;
    const mem = new Uint8Array(2 * slot + 8192);
    for (const [, cut, cutUdp] of SEGMENTERS) {
      const area: SegmentArea = { mem, tunSlot: slot, segStart: slot, segEnd: mem.length, gso: true, maxDatagram: 1472, cut, cutUdp };
      const cases: [string, () => number][] = [
        ['UDP, gso_size 65535', () => {
          const l = udpPacket(mem, VNET_READ_HEADROOM, DST, 5000, 1000, 1, true);
          vnet.writeGso(mem, VNET_READ_HEADROOM, vnet.VNET_GSO_UDP_L4, 28, 65535, 20, 6);
          return l;
        }],
        ['UDP, gso_size one byte over the path', () => {
          const l = udpPacket(mem, VNET_READ_HEADROOM, DST, 5000, 3000, 1, true);
          vnet.writeGso(mem, VNET_READ_HEADROOM, vnet.VNET_GSO_UDP_L4, 28, 1472 - 22 - 28 + 1, 20, 6);
          return l;
        }],
        ['TCP, gso_size 65535', () => {
          const l = superPacket(mem, VNET_READ_HEADROOM, 1000, tcp.TCP_ACK, true);
          vnet.writeGso(mem, VNET_READ_HEADROOM, vnet.VNET_GSO_TCPV4, 52, 65535, 20, tcp.TCP_CHECKSUM_OFF);
          return l;
        }],
        ['TCP, headers only', () => superPacket(mem, VNET_READ_HEADROOM, 0, tcp.TCP_ACK, true)],
      ];
      for (const [what, make] of cases) {
        a.counters.fill(0);
        const out = new SendBatch(16);
        expect(segmentBatch(a, a.table.beginRead(0), area, Int32Array.of(make()), 0, 1, out, new ChecksumJobs(16)), what).toBe(1);
        expect(out.count, what).toBe(0);
        expect(a.counters[C.tun_rx_drop_bad_offload], what).toBe(1);
      }
    }
  });

  it('a packet that can share a message with nothing goes from where it was read, without UDP_SEGMENT', async () => {
    const a = await ctxFor(MAC_A, '10.244.1.0', '10.244.2.0', VTEP_B, MAC_B);
    const slot = 2048;
    const mem = new Uint8Array(4 * slot + 4096);
    const area: SegmentArea = { mem, tunSlot: slot, segStart: 4 * slot, segEnd: mem.length, gso: true, maxDatagram: 1472, cut: tcpSegment, cutUdp: udpSegment };
    const out = new SendBatch(16);
    // Alone in its read (a ping's packet): in place, the inner packet untouched behind its headers.
    const lens = Int32Array.of(udpPacket(mem, VNET_READ_HEADROOM, DST, 5000, 64, 0, true));
    const before = mem.slice(VNET_READ_HEADROOM + vnet.VNET_HDR_LEN, VNET_READ_HEADROOM + lens[0]!);
    const jobs = new ChecksumJobs(4);
    expect(segmentBatch(a, a.table.beginRead(0), area, lens, 0, 1, out, jobs)).toBe(1);
    jobs.run(mem);
    jobs.store(mem);
    expect(out.count).toBe(1);
    expect([out.offs[0], out.lens[0], out.segSizes[0]]).toEqual([0, 22 + 28 + 64, 0]);
    const sent = mem.subarray(22, 22 + 28 + 64);
    expect([...sent.subarray(28)]).toEqual([...before.subarray(28)]);
    // Its unfinished checksum was completed where it lies.
    expect(fold(sum16(sent, 20, 8 + 64, pseudoHeaderSumV4(SRC, DST, 17, 8 + 64)))).toBe(0xffff);
    expect(mem.subarray(4 * slot).every((b) => b === 0)).toBe(true); // the segment area was not used

    // Two packets of one flow still share one message through the segment area.
    const two = Int32Array.from([0, 1], (i) => udpPacket(mem, i * slot + VNET_READ_HEADROOM, DST, 5000, 64, i, false));
    expect(segmentBatch(a, a.table.beginRead(0), area, two, 0, 2, out, new ChecksumJobs(4))).toBe(2);
    expect(out.count).toBe(1);
    expect([out.offs[0], out.lens[0], out.segSizes[0]]).toEqual([4 * slot, 2 * (22 + 28 + 64), 22 + 28 + 64]);
  });

  it('are sent one message each without UDP_SEGMENT, from where they were read', async () => {
    const a = await ctxFor(MAC_A, '10.244.1.0', '10.244.2.0', VTEP_B, MAC_B);
    const slot = 2048;
    const mem = new Uint8Array(4 * slot + 4096);
    const lens = new Int32Array(3);
    for (let i = 0; i < 3; i++) lens[i] = udpPacket(mem, i * slot + VNET_READ_HEADROOM, DST, 5000, 64, i, false);
    const area: SegmentArea = { mem, tunSlot: slot, segStart: 4 * slot, segEnd: mem.length, gso: false, maxDatagram: 1472, cut: tcpSegment, cutUdp: udpSegment };
    const out = new SendBatch(16);
    expect(segmentBatch(a, a.table.beginRead(0), area, lens, 0, 3, out, new ChecksumJobs(4))).toBe(3);
    expect(out.count).toBe(3);
    expect([...out.offs.subarray(0, 3)]).toEqual([0, slot, 2 * slot]);
    expect([...out.segSizes.subarray(0, 3)]).toEqual([0, 0, 0]);
  });
});

describe('segmentBatch when the segments outgrow one send', () => {
  it('stops before the packet that does not fit and resumes from it, losing nothing', async () => {
    const a = await ctxFor(MAC_A, '10.244.1.0', '10.244.2.0', VTEP_B, MAC_B);
    const mss = 536;
    const payload = 120 * mss; // 120 segments: without UDP_SEGMENT, 120 messages each
    const segStart = 3 * TUN_SLOT;
    const mem = new Uint8Array(segStart + 3 * (120 * (22 + 52) + payload));
    const lens = new Int32Array(3);
    for (let i = 0; i < 3; i++) {
      lens[i] = superPacket(mem, i * TUN_SLOT + VNET_READ_HEADROOM, payload, tcp.TCP_ACK, false);
      // superPacket writes MSS 1398 into the virtio-net header; this test cuts at 536.
      mem[i * TUN_SLOT + VNET_READ_HEADROOM + 4] = mss & 0xff;
      mem[i * TUN_SLOT + VNET_READ_HEADROOM + 5] = mss >> 8;
    }
    const area: SegmentArea = { mem, tunSlot: TUN_SLOT, segStart, segEnd: mem.length, gso: false, maxDatagram: 1472, cut: tcpSegment, cutUdp: udpSegment };
    const out = new SendBatch(256);
    const jobs = new ChecksumJobs(8);
    const half = a.table.beginRead(0);
    expect(segmentBatch(a, half, area, lens, 0, 3, out, jobs)).toBe(2);
    expect(out.count).toBe(240);
    expect(segmentBatch(a, half, area, lens, 2, 3, out, jobs)).toBe(3);
    expect(out.count).toBe(120);
    expect(a.counters[C.tun_rx_segments]).toBe(360);
    expect(a.counters[C.tun_rx_drop_batch_full]).toBe(0);
  });
});

describe('a whole TCP super-packet in one datagram (a kernel VXLAN sender over veth)', () => {
  it('is written as GSO when its checksum is unfinished, dropped when a complete one is wrong', async () => {
    const b = await ctxFor(MAC_B, '10.244.2.0', '10.244.1.0', VTEP_A, MAC_A);
    const slot = 0x10000;
    const payload = 20 * MSS;
    const cases: [string, (rx: Uint8Array, l4: number) => void, number][] = [
      ['unfinished', (rx, l4) => tcp.setChecksum(rx, l4, fold(pseudoHeaderSumV4(SRC, DST, 6, 32 + payload))), 1],
      ['wrong', (rx, l4) => tcp.setChecksum(rx, l4, 0x1234), 0],
    ];
    for (const [what, set, written] of cases) {
      const rx = new Uint8Array(slot);
      // A super-packet as superPacket() lays it out (its virtio-net header is then overwritten
      // by the VXLAN + Ethernet headers in front of it).
      const len = superPacket(rx, 12, payload, tcp.TCP_ACK, false) - 10;
      rx.set([0x08, 0, 0, 0, 0, 0, 1, 0], 0);
      rx.set(MAC_B, 8);
      rx.set(MAC_A, 14);
      rx.set([0x08, 0x00], 20);
      set(rx, 22 + 20);
      const tun = new WriteBatch(2);
      const k = decapBatch(b, b.table.beginRead(0), rx, Int32Array.of(0), Int32Array.of(22 + len), slot, Uint32Array.of(VTEP_A), 1, tun, new SendBatch(1), Int32Array.of(-1));
      expect(k, what).toBe(1);
      const fin = new WriteBatch(2);
      expect(coalesceBatch(b, rx, slot, tun, fin, new ChecksumJobs(4), new CoalesceScratch(4), true), what).toBe(written);
      if (written) {
        expect(vnet.gsoType(rx, fin.offs[0]!)).toBe(vnet.VNET_GSO_TCPV4);
        expect(vnet.gsoSize(rx, fin.offs[0]!)).toBe(1450 - 52);
      }
    }
    expect(b.counters[C.rx_drop_bad_inner_checksum]).toBe(1);
  });
});
