import { describe, expect, it } from 'vitest';
import * as udp from '../../../src/wire/udp.js';
import { UdpRepr } from '../../../src/wire/udp.js';

// 40000 -> 5001, length 25, checksum 0x5233, then 17 bytes of data.
const HEADER = Uint8Array.from([0x9c, 0x40, 0x13, 0x89, 0x00, 0x19, 0x52, 0x33]);
const datagram = (dataLen = 17): Uint8Array => {
  const b = new Uint8Array(8 + dataLen);
  b.set(HEADER);
  return b;
};

describe('udp', () => {
  it('derives the header length from the last field', () => {
    expect([udp.UDP_SRC_PORT_OFF, udp.UDP_DST_PORT_OFF, udp.UDP_LENGTH_OFF, udp.UDP_CHECKSUM_OFF]).toEqual([0, 2, 4, 6]);
    expect(udp.UDP_HEADER_LEN).toBe(8);
  });

  it('reads every field at an offset', () => {
    const b = new Uint8Array(30);
    b.set(HEADER, 5);
    expect([udp.srcPort(b, 5), udp.dstPort(b, 5), udp.length(b, 5), udp.checksum(b, 5)]).toEqual([40000, 5001, 25, 0x5233]);
  });

  it('setters write only their bytes (0xa5 buffer)', () => {
    const b = new Uint8Array(10).fill(0xa5);
    udp.setSrcPort(b, 1, 40000);
    udp.setDstPort(b, 1, 5001);
    udp.setLength(b, 1, 25);
    udp.setChecksum(b, 1, 0x5233);
    expect([...b]).toEqual([0xa5, ...HEADER, 0xa5]);
  });

  it('check: a header, length field between 8 and len, inside the buffer', () => {
    expect(udp.check(datagram(), 0, 25)).toBe(true);
    expect(udp.check(datagram(20), 0, 28)).toBe(true); // trailing padding
    expect(udp.check(datagram(), 0, 7)).toBe(false);
    expect(udp.check(datagram(), 0, 24)).toBe(false); // length field 25 > 24: truncated
    expect(udp.check(datagram(), 1, 25)).toBe(false);
    expect(udp.check(datagram(), -1, 8)).toBe(false);
    const b = datagram();
    for (const bad of [0, 7, 0xffff]) {
      udp.setLength(b, 0, bad);
      expect(udp.check(b, 0, 25)).toBe(false);
    }
    udp.setLength(b, 0, 8);
    expect(udp.check(b, 0, 8)).toBe(true); // empty datagram
  });

  it('UdpRepr parses, emits into 0xa5 and formats', () => {
    const r = UdpRepr.parse(datagram(), 0);
    expect(r).toEqual(new UdpRepr(40000, 5001, 17, 0x5233));
    expect(r?.format()).toBe('UDP src=40000 dst=5001 len=25 csum=0x5233');
    const out = new Uint8Array(9).fill(0xa5);
    r?.emit(out, 0);
    expect([...out]).toEqual([...HEADER, 0xa5]);
    expect(r?.bufferLen()).toBe(8);
    expect(UdpRepr.parse(datagram(), 0, 20)).toBeNull();
  });

  it('UdpRepr defaults to a zero checksum (none)', () => {
    const out = new Uint8Array(8).fill(0xa5);
    new UdpRepr(1, 8472, 0).emit(out, 0);
    expect([...out]).toEqual([0, 1, 0x21, 0x18, 0, 8, 0, 0]);
  });
});
