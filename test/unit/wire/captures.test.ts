/**
 * Real frames from the kernel's VXLAN, configured the way flannel configures it, captured on the
 * underlay veth between two network namespaces (test/fixtures/README.md has the commands).
 *
 *   tl-wcap-a                                   tl-wcap-b
 *   flannel.1 10.244.1.0/32 02:aa:00:00:00:01   flannel.1 10.244.2.0/32 02:aa:00:00:00:02
 *   veth0 172.31.99.1 02:bb:00:00:00:01 ─────── veth0 172.31.99.2 02:bb:00:00:00:02
 *
 * Every field of every layer is asserted, including what the kernel leaves in checksum fields
 * when it expects the (virtual) device to finish them.
 */
import { describe, expect, it } from 'vitest';
import * as arp from '../../../src/wire/arp.js';
import { fold, l4ChecksumV4, pseudoHeaderSumV4, verifyL4V4 } from '../../../src/wire/checksum.js';
import * as eth from '../../../src/wire/ethernet.js';
import * as ipv4 from '../../../src/wire/ipv4.js';
import { formatMac, parseMac } from '../../../src/wire/mac.js';
import * as udp from '../../../src/wire/udp.js';
import * as vxlan from '../../../src/wire/vxlan.js';
import { LINKTYPE_ETHERNET, readFixture } from '../../support/pcap.js';

const OUTER_IP = eth.ETH_HEADER_LEN;
const OUTER_UDP = OUTER_IP + ipv4.IPV4_MIN_HEADER_LEN;
const VX = OUTER_UDP + udp.UDP_HEADER_LEN;
const INNER_ETH = VX + vxlan.VXLAN_HEADER_LEN;
const INNER_IP = INNER_ETH + eth.ETH_HEADER_LEN;
const INNER_L4 = INNER_IP + ipv4.IPV4_MIN_HEADER_LEN;

const VTEP_MAC = { a: parseMac('02:aa:00:00:00:01'), b: parseMac('02:aa:00:00:00:02') };
const UNDERLAY_MAC = { a: parseMac('02:bb:00:00:00:01'), b: parseMac('02:bb:00:00:00:02') };
const UNDERLAY_IP = { a: ipv4.parseIpv4('172.31.99.1'), b: ipv4.parseIpv4('172.31.99.2') };
const VTEP_IP = { a: ipv4.parseIpv4('10.244.1.0'), b: ipv4.parseIpv4('10.244.2.0') };
const ICMP_PAYLOAD = Uint8Array.from({ length: 56 }, (_, i) => 0x10 + i);
const UDP_PAYLOAD = new TextEncoder().encode('tulle udp fixture');

type Side = 'a' | 'b';
const other = (s: Side): Side => (s === 'a' ? 'b' : 'a');

interface OuterExp { from: Side; ipId: number; ipCsum: number; srcPort: number; udpCsum: number }
interface InnerIpExp { id: number; df: boolean; csum: number; proto: number; totalLen: number }

const get16 = (b: Uint8Array, at: number): number => (b[at] << 8) | b[at + 1];

/** Outer Ethernet, IPv4, UDP and VXLAN headers, then the inner Ethernet addresses. */
function expectOuter(f: Uint8Array, e: OuterExp, innerType: number): void {
  const to = other(e.from);
  expect(eth.check(f, 0, f.length)).toBe(true);
  expect(eth.macEqual(f, eth.ETH_DST_OFF, UNDERLAY_MAC[to])).toBe(true);
  expect(eth.macEqual(f, eth.ETH_SRC_OFF, UNDERLAY_MAC[e.from])).toBe(true);
  expect(eth.etherType(f, 0)).toBe(eth.ETHERTYPE_IPV4);

  expect(ipv4.check(f, OUTER_IP, f.length - OUTER_IP)).toBe(ipv4.Ipv4Check.Ok);
  expect(ipv4.version(f, OUTER_IP)).toBe(4);
  expect(ipv4.ihl(f, OUTER_IP)).toBe(20);
  expect(ipv4.tos(f, OUTER_IP)).toBe(0);
  expect(ipv4.totalLength(f, OUTER_IP)).toBe(f.length - OUTER_IP);
  expect(ipv4.id(f, OUTER_IP)).toBe(e.ipId);
  expect(ipv4.flagsFragment(f, OUTER_IP)).toBe(0); // the vxlan device's default: DF not set
  expect(ipv4.isFragment(f, OUTER_IP)).toBe(false);
  expect(ipv4.ttl(f, OUTER_IP)).toBe(64);
  expect(ipv4.protocol(f, OUTER_IP)).toBe(ipv4.IPPROTO_UDP);
  expect(ipv4.headerChecksum(f, OUTER_IP)).toBe(e.ipCsum);
  expect(ipv4.headerChecksumValid(f, OUTER_IP)).toBe(true);
  expect(ipv4.src(f, OUTER_IP)).toBe(UNDERLAY_IP[e.from]);
  expect(ipv4.dst(f, OUTER_IP)).toBe(UNDERLAY_IP[to]);

  expect(udp.check(f, OUTER_UDP, f.length - OUTER_UDP)).toBe(true);
  expect(udp.srcPort(f, OUTER_UDP)).toBe(e.srcPort);
  expect(udp.dstPort(f, OUTER_UDP)).toBe(vxlan.VXLAN_DEFAULT_PORT);
  expect(udp.length(f, OUTER_UDP)).toBe(f.length - OUTER_UDP);
  expect(udp.checksum(f, OUTER_UDP)).toBe(e.udpCsum);

  expect(vxlan.check(f, VX, f.length - VX)).toBe(vxlan.VxlanCheck.Ok);
  expect(vxlan.flags(f, VX)).toBe(vxlan.VXLAN_FLAG_I);
  expect(vxlan.vni(f, VX)).toBe(vxlan.VXLAN_DEFAULT_VNI);
  expect(vxlan.reservedBitsClear(f, VX)).toBe(true);

  expect(eth.check(f, INNER_ETH, f.length - INNER_ETH)).toBe(true);
  expect(eth.macEqual(f, INNER_ETH + eth.ETH_SRC_OFF, VTEP_MAC[e.from])).toBe(true);
  if (!eth.isBroadcastDst(f, INNER_ETH)) expect(eth.macEqual(f, INNER_ETH + eth.ETH_DST_OFF, VTEP_MAC[to])).toBe(true);
  expect(eth.etherType(f, INNER_ETH)).toBe(innerType);
}

function expectInnerIp(f: Uint8Array, from: Side, e: InnerIpExp): void {
  expect(ipv4.check(f, INNER_IP, f.length - INNER_IP)).toBe(ipv4.Ipv4Check.Ok);
  expect(ipv4.version(f, INNER_IP)).toBe(4);
  expect(ipv4.ihl(f, INNER_IP)).toBe(20);
  expect(ipv4.tos(f, INNER_IP)).toBe(0);
  expect(ipv4.totalLength(f, INNER_IP)).toBe(e.totalLen);
  expect(ipv4.totalLength(f, INNER_IP)).toBe(f.length - INNER_IP);
  expect(ipv4.id(f, INNER_IP)).toBe(e.id);
  expect(ipv4.flagsFragment(f, INNER_IP)).toBe(e.df ? ipv4.IPV4_FLAG_DF : 0);
  expect(ipv4.isFragment(f, INNER_IP)).toBe(false);
  expect(ipv4.ttl(f, INNER_IP)).toBe(64);
  expect(ipv4.protocol(f, INNER_IP)).toBe(e.proto);
  expect(ipv4.headerChecksum(f, INNER_IP)).toBe(e.csum);
  expect(ipv4.headerChecksumValid(f, INNER_IP)).toBe(true);
  expect(ipv4.src(f, INNER_IP)).toBe(VTEP_IP[from]);
  expect(ipv4.dst(f, INNER_IP)).toBe(VTEP_IP[other(from)]);
}

/** What a CHECKSUM_PARTIAL skb carries in its checksum field: the folded pseudo-header sum. */
function partialUdpChecksum(f: Uint8Array, ipOff: number): number {
  const l4len = ipv4.totalLength(f, ipOff) - ipv4.ihl(f, ipOff);
  return fold(pseudoHeaderSumV4(ipv4.src(f, ipOff), ipv4.dst(f, ipOff), ipv4.IPPROTO_UDP, l4len));
}

describe('fixture files', () => {
  it.each(['icmp.pcap', 'udp.pcap', 'udp-sw-csum.pcap', 'arp.pcap'])('%s is a small Ethernet capture', (name) => {
    const pcap = readFixture(name);
    expect(pcap.linkType).toBe(LINKTYPE_ETHERNET);
    expect(pcap.packets.length).toBeGreaterThan(0);
    expect(pcap.packets.length).toBeLessThan(10);
    for (const p of pcap.packets) expect(p.origLen).toBe(p.data.length);
  });

  it('lays the layers out at the offsets the constants give', () => {
    expect(INNER_IP).toBe(eth.ETH_HEADER_LEN + vxlan.VXLAN_OVERHEAD_IPV4);
    expect([OUTER_IP, OUTER_UDP, VX, INNER_ETH, INNER_IP, INNER_L4]).toEqual([14, 34, 42, 50, 64, 84]);
  });
});

describe('icmp.pcap: two echo requests from a, two replies from b', () => {
  const frames = readFixture('icmp.pcap').packets.map((p) => p.data);
  const rows = [
    { outer: { from: 'a', ipId: 0x2a28, ipCsum: 0x31fd }, inner: { id: 0xca42, df: true, csum: 0x577f }, type: 8, icmpCsum: 0xcab4, seq: 1 },
    { outer: { from: 'b', ipId: 0x4806, ipCsum: 0x141f }, inner: { id: 0x40f5, df: false, csum: 0x20cd }, type: 0, icmpCsum: 0xd2b4, seq: 1 },
    { outer: { from: 'a', ipId: 0x2a29, ipCsum: 0x31fc }, inner: { id: 0xca43, df: true, csum: 0x577e }, type: 8, icmpCsum: 0xcab3, seq: 2 },
    { outer: { from: 'b', ipId: 0x4807, ipCsum: 0x141e }, inner: { id: 0x40f6, df: false, csum: 0x20cc }, type: 0, icmpCsum: 0xd2b3, seq: 2 },
  ] as const;

  it('holds four 148-byte frames', () => {
    expect(frames.map((f) => f.length)).toEqual([148, 148, 148, 148]);
  });

  it.each(rows.map((r, i) => [i + 1, r] as const))('frame %i: every field', (i, r) => {
    const f = frames[i - 1];
    expectOuter(f, { ...r.outer, srcPort: 38528, udpCsum: 0x1ec6 }, eth.ETHERTYPE_IPV4);
    expectInnerIp(f, r.outer.from, { ...r.inner, proto: ipv4.IPPROTO_ICMP, totalLen: 84 });
    expect(f[INNER_L4]).toBe(r.type);
    expect(f[INNER_L4 + 1]).toBe(0);
    expect(get16(f, INNER_L4 + 2)).toBe(r.icmpCsum);
    expect(get16(f, INNER_L4 + 4)).toBe(0x7475);
    expect(get16(f, INNER_L4 + 6)).toBe(r.seq);
    expect(f.subarray(INNER_L4 + 8)).toEqual(ICMP_PAYLOAD);
  });

  it.each([1, 2, 3, 4])('frame %i: inner ICMP checksum complete, outer UDP checksum left partial', (i) => {
    const f = frames[i - 1];
    expect(verifyL4V4(f, INNER_IP)).toBe(true);
    expect(l4ChecksumV4(f, INNER_IP)).toBe(get16(f, INNER_L4 + 2));
    // The vxlan driver hands the outer checksum to the device (CHECKSUM_PARTIAL) and veth never
    // completes it: the field still holds the folded pseudo-header sum, so it does not verify.
    expect(udp.checksum(f, OUTER_UDP)).toBe(partialUdpChecksum(f, OUTER_IP));
    expect(verifyL4V4(f, OUTER_IP)).toBe(false);
  });
});

describe('udp.pcap: a 17-byte datagram a:40000 -> b:5001 and its echo, offloads on', () => {
  const frames = readFixture('udp.pcap').packets.map((p) => p.data);
  const rows = [
    { outer: { from: 'a', ipId: 0x2aee, ipCsum: 0x315e }, inner: { id: 0xf378, csum: 0x2e60 }, ports: [40000, 5001] },
    { outer: { from: 'b', ipId: 0x4846, ipCsum: 0x1406 }, inner: { id: 0x224d, csum: 0xff8b }, ports: [5001, 40000] },
  ] as const;

  it.each(rows.map((r, i) => [i + 1, r] as const))('frame %i: every field', (i, r) => {
    const f = frames[i - 1];
    expect(f.length).toBe(109);
    expectOuter(f, { ...r.outer, srcPort: 49721, udpCsum: 0x007f }, eth.ETHERTYPE_IPV4);
    expectInnerIp(f, r.outer.from, { ...r.inner, df: true, proto: ipv4.IPPROTO_UDP, totalLen: 45 });
    expect(udp.check(f, INNER_L4, f.length - INNER_L4)).toBe(true);
    expect(udp.srcPort(f, INNER_L4)).toBe(r.ports[0]);
    expect(udp.dstPort(f, INNER_L4)).toBe(r.ports[1]);
    expect(udp.length(f, INNER_L4)).toBe(udp.UDP_HEADER_LEN + UDP_PAYLOAD.length);
    expect(udp.checksum(f, INNER_L4)).toBe(0x1912);
    expect(f.subarray(INNER_L4 + udp.UDP_HEADER_LEN)).toEqual(UDP_PAYLOAD);
  });

  it.each([1, 2])('frame %i: inner checksum partial, outer computed for the completed inner (LCO)', (i) => {
    const f = frames[i - 1].slice();
    // Inner UDP is CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum.
    expect(udp.checksum(f, INNER_L4)).toBe(partialUdpChecksum(f, INNER_IP));
    expect(verifyL4V4(f, INNER_IP)).toBe(false);
    expect(verifyL4V4(f, OUTER_IP)).toBe(false);
    // Local checksum offload: the outer checksum was computed as if the inner one were finished.
    // Finish it as a NIC would, and both verify; the result matches the software-checksum capture.
    udp.setChecksum(f, INNER_L4, l4ChecksumV4(f, INNER_IP));
    expect(udp.checksum(f, INNER_L4)).toBe(0x5233);
    expect(verifyL4V4(f, INNER_IP)).toBe(true);
    expect(verifyL4V4(f, OUTER_IP)).toBe(true);
  });
});

describe('udp-sw-csum.pcap: the same exchange with tx checksum offload off', () => {
  const frames = readFixture('udp-sw-csum.pcap').packets.map((p) => p.data);
  const rows = [
    { outer: { from: 'a', ipId: 0x2b71, ipCsum: 0x30db }, inner: { id: 0xf439, csum: 0x2d9f }, ports: [40000, 5001] },
    { outer: { from: 'b', ipId: 0x493c, ipCsum: 0x1310 }, inner: { id: 0x22e8, csum: 0xfef0 }, ports: [5001, 40000] },
  ] as const;

  it.each(rows.map((r, i) => [i + 1, r] as const))('frame %i: every field, every checksum verifies', (i, r) => {
    const f = frames[i - 1];
    expectOuter(f, { ...r.outer, srcPort: 49721, udpCsum: 0x007f }, eth.ETHERTYPE_IPV4);
    expectInnerIp(f, r.outer.from, { ...r.inner, df: true, proto: ipv4.IPPROTO_UDP, totalLen: 45 });
    expect(udp.srcPort(f, INNER_L4)).toBe(r.ports[0]);
    expect(udp.dstPort(f, INNER_L4)).toBe(r.ports[1]);
    expect(udp.length(f, INNER_L4)).toBe(25);
    expect(udp.checksum(f, INNER_L4)).toBe(0x5233);
    expect(f.subarray(INNER_L4 + udp.UDP_HEADER_LEN)).toEqual(UDP_PAYLOAD);
    expect(verifyL4V4(f, INNER_IP)).toBe(true);
    expect(verifyL4V4(f, OUTER_IP)).toBe(true);
    expect(l4ChecksumV4(f, INNER_IP)).toBe(0x5233);
    expect(l4ChecksumV4(f, OUTER_IP)).toBe(0x007f);
  });
});

describe('arp.pcap: kernel ARP through VXLAN, then one echo', () => {
  const frames = readFixture('arp.pcap').packets.map((p) => p.data);
  const ARP_OFF = INNER_ETH + eth.ETH_HEADER_LEN;

  it('frame 1: broadcast request from a for 10.244.2.0', () => {
    const f = frames[0];
    expect(f.length).toBe(92);
    expectOuter(f, { from: 'a', ipId: 0x2afb, ipCsum: 0x3162, srcPort: 43360, udpCsum: 0x1e8e }, eth.ETHERTYPE_ARP);
    expect(eth.isBroadcastDst(f, INNER_ETH)).toBe(true);
    expect(arp.check(f, ARP_OFF, f.length - ARP_OFF)).toBe(true);
    expect(f.length - ARP_OFF).toBe(arp.ARP_IPV4_LEN); // no padding to 60 bytes inside VXLAN
    expect(arp.op(f, ARP_OFF)).toBe(arp.ARP_OP_REQUEST);
    expect(formatMac(f, arp.senderMac(f, ARP_OFF))).toBe('02:aa:00:00:00:01');
    expect(arp.senderIp(f, ARP_OFF)).toBe(VTEP_IP.a);
    expect(formatMac(f, arp.targetMac(f, ARP_OFF))).toBe('00:00:00:00:00:00');
    expect(arp.targetIp(f, ARP_OFF)).toBe(VTEP_IP.b);
    expect(udp.checksum(f, OUTER_UDP)).toBe(partialUdpChecksum(f, OUTER_IP));
  });

  it('frame 2: unicast reply from b', () => {
    const f = frames[1];
    expectOuter(f, { from: 'b', ipId: 0x48b7, ipCsum: 0x13a6, srcPort: 43360, udpCsum: 0x1e8e }, eth.ETHERTYPE_ARP);
    expect(arp.check(f, ARP_OFF, f.length - ARP_OFF)).toBe(true);
    expect(arp.op(f, ARP_OFF)).toBe(arp.ARP_OP_REPLY);
    expect(eth.macEqual(f, arp.senderMac(f, ARP_OFF), VTEP_MAC.b)).toBe(true);
    expect(arp.senderIp(f, ARP_OFF)).toBe(VTEP_IP.b);
    expect(eth.macEqual(f, arp.targetMac(f, ARP_OFF), VTEP_MAC.a)).toBe(true);
    expect(arp.targetIp(f, ARP_OFF)).toBe(VTEP_IP.a);
    expect(udp.checksum(f, OUTER_UDP)).toBe(partialUdpChecksum(f, OUTER_IP));
  });

  it('writeReply turns the captured request into the kernel\'s reply, byte for byte', () => {
    const req = frames[0].slice(ARP_OFF);
    arp.writeReply(req, 0, VTEP_MAC.b, VTEP_IP.b);
    expect(req).toEqual(frames[1].subarray(ARP_OFF));
  });

  it('frames 3-4: the echo that follows', () => {
    expectOuter(frames[2], { from: 'a', ipId: 0x2afc, ipCsum: 0x3129, srcPort: 38528, udpCsum: 0x1ec6 }, eth.ETHERTYPE_IPV4);
    expectInnerIp(frames[2], 'a', { id: 0xcb32, df: true, csum: 0x568f, proto: ipv4.IPPROTO_ICMP, totalLen: 84 });
    expectOuter(frames[3], { from: 'b', ipId: 0x48b8, ipCsum: 0x136d, srcPort: 38528, udpCsum: 0x1ec6 }, eth.ETHERTYPE_IPV4);
    expectInnerIp(frames[3], 'b', { id: 0x413f, df: false, csum: 0x2083, proto: ipv4.IPPROTO_ICMP, totalLen: 84 });
    expect(verifyL4V4(frames[2], INNER_IP)).toBe(true);
    expect(verifyL4V4(frames[3], INNER_IP)).toBe(true);
  });
});
