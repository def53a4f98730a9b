import { describe, expect, it } from 'vitest';
import * as arp from '../../../src/wire/arp.js';
import { ArpRepr } from '../../../src/wire/arp.js';
import { macEqual } from '../../../src/wire/ethernet.js';
import { parseIpv4 } from '../../../src/wire/ipv4.js';
import { formatMac, parseMac } from '../../../src/wire/mac.js';

const MAC_A = parseMac('02:aa:00:00:00:01');
const MAC_B = parseMac('02:aa:00:00:00:02');
const IP_A = parseIpv4('10.244.1.0');
const IP_B = parseIpv4('10.244.2.0');
// Who has 10.244.2.0? Tell 10.244.1.0 (the request in test/fixtures/arp.pcap).
const REQUEST = Uint8Array.from([
  0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
  0x02, 0xaa, 0, 0, 0, 0x01, 0x0a, 0xf4, 0x01, 0x00,
  0, 0, 0, 0, 0, 0, 0x0a, 0xf4, 0x02, 0x00,
]);
const REPLY = Uint8Array.from([
  0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,
  0x02, 0xaa, 0, 0, 0, 0x02, 0x0a, 0xf4, 0x02, 0x00,
  0x02, 0xaa, 0, 0, 0, 0x01, 0x0a, 0xf4, 0x01, 0x00,
]);

describe('arp constants', () => {
  it('derive the packet length from the last field', () => {
    expect([arp.ARP_OP_OFF, arp.ARP_SHA_OFF, arp.ARP_SPA_OFF, arp.ARP_THA_OFF, arp.ARP_TPA_OFF]).toEqual([6, 8, 14, 18, 24]);
    expect(arp.ARP_IPV4_LEN).toBe(28);
    expect([arp.ARP_HTYPE_ETHERNET, arp.ARP_OP_REQUEST, arp.ARP_OP_REPLY]).toEqual([1, 1, 2]);
  });
});

describe('arp accessors', () => {
  it('read a request at an offset', () => {
    const b = new Uint8Array(4 + 28);
    b.set(REQUEST, 4);
    expect(arp.check(b, 4, 28)).toBe(true);
    expect(arp.op(b, 4)).toBe(arp.ARP_OP_REQUEST);
    expect(arp.senderMac(b, 4)).toBe(4 + arp.ARP_SHA_OFF);
    expect(macEqual(b, arp.senderMac(b, 4), MAC_A)).toBe(true);
    expect(arp.senderIp(b, 4)).toBe(IP_A);
    expect(formatMac(b, arp.targetMac(b, 4))).toBe('00:00:00:00:00:00');
    expect(arp.targetIp(b, 4)).toBe(IP_B);
  });

  it('setters rebuild the reply in a 0xa5 buffer', () => {
    const b = new Uint8Array(30).fill(0xa5);
    arp.writeFixed(b, 1);
    arp.setOp(b, 1, arp.ARP_OP_REPLY);
    arp.setSenderMac(b, 1, MAC_B);
    arp.setSenderIp(b, 1, IP_B);
    arp.setTargetMac(b, 1, MAC_A);
    arp.setTargetIp(b, 1, IP_A);
    expect([...b]).toEqual([0xa5, ...REPLY, 0xa5]);
  });

  it('writeReply answers a request in place and touches nothing else', () => {
    const b = new Uint8Array(30).fill(0xa5);
    b.set(REQUEST, 1);
    arp.writeReply(b, 1, MAC_B, IP_B);
    expect([...b]).toEqual([0xa5, ...REPLY, 0xa5]);
  });

  it('writeReply takes our MAC at an offset inside the same buffer', () => {
    const b = new Uint8Array(28 + 6);
    b.set(REQUEST);
    b.set(MAC_B, 28);
    arp.setSenderMac(b, 0, b, 28);
    expect(macEqual(b, arp.senderMac(b, 0), MAC_B)).toBe(true);
  });
});

describe('arp check', () => {
  it('rejects short input and ranges outside the buffer', () => {
    expect(arp.check(REQUEST, 0, 27)).toBe(false);
    expect(arp.check(REQUEST, 1, 28)).toBe(false);
    expect(arp.check(REQUEST, -1, 28)).toBe(false);
    expect(arp.check(new Uint8Array(0), 0, 0)).toBe(false);
  });

  it.each([
    ['htype', 1, 6], ['ptype', 2, 0x86], ['hlen', 4, 8], ['plen', 5, 16],
  ] as const)('rejects a wrong %s', (_name, at, v) => {
    const b = REQUEST.slice();
    b[at] = v;
    expect(arp.check(b, 0, 28)).toBe(false);
  });

  it('accepts padding after the packet and unknown ops', () => {
    const b = new Uint8Array(46);
    b.set(REQUEST);
    arp.setOp(b, 0, 9);
    expect(arp.check(b, 0, 46)).toBe(true);
  });
});

describe('ArpRepr', () => {
  it('parses, emits into 0xa5 and formats', () => {
    const r = ArpRepr.parse(REPLY, 0);
    expect(r).toEqual(new ArpRepr(2, MAC_B, IP_B, MAC_A, IP_A));
    expect(r?.format()).toBe('ARP op=reply sender=02:aa:00:00:00:02/10.244.2.0 target=02:aa:00:00:00:01/10.244.1.0');
    const out = new Uint8Array(29).fill(0xa5);
    r?.emit(out, 0);
    expect([...out]).toEqual([...REPLY, 0xa5]);
    expect(r?.bufferLen()).toBe(28);
  });

  it('keeps and prints unknown ops as hex', () => {
    const b = REQUEST.slice();
    arp.setOp(b, 0, 3);
    const r = ArpRepr.parse(b, 0);
    expect(r?.op).toBe(3);
    expect(r?.format()).toMatch(/^ARP op=0x0003 sender=/);
    expect(ArpRepr.parse(REQUEST, 0)?.format()).toMatch(/^ARP op=request /);
  });

  it('returns null for what check rejects', () => {
    expect(ArpRepr.parse(REQUEST, 0, 20)).toBeNull();
  });
});
