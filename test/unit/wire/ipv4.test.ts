import { describe, expect, it } from 'vitest';
import * as ipv4 from '../../../src/wire/ipv4.js';
import { Ipv4Check, Ipv4Repr, formatIpv4, parseIpv4 } from '../../../src/wire/ipv4.js';

// The inner echo request of test/fixtures/icmp.pcap frame 1, header only.
const HEADER = Uint8Array.from([
  0x45, 0x00, 0x00, 0x54, 0xca, 0x42, 0x40, 0x00, 0x40, 0x01, 0x57, 0x7f,
  0x0a, 0xf4, 0x01, 0x00, 0x0a, 0xf4, 0x02, 0x00,
]);
/** HEADER followed by `payload` bytes, totalLength adjusted. */
function packet(payload: number, total = 20 + payload): Uint8Array {
  const b = new Uint8Array(20 + payload);
  b.set(HEADER);
  ipv4.setTotalLength(b, 0, total);
  return b;
}

describe('ipv4 constants', () => {
  it('derive the header length from the last field', () => {
    expect(ipv4.IPV4_MIN_HEADER_LEN).toBe(20);
    expect(ipv4.IPV4_DST_OFF + ipv4.IPV4_ADDR_LEN).toBe(ipv4.IPV4_MIN_HEADER_LEN);
    expect(ipv4.IPV4_MAX_HEADER_LEN).toBe(60);
    expect([ipv4.IPPROTO_ICMP, ipv4.IPPROTO_TCP, ipv4.IPPROTO_UDP]).toEqual([1, 6, 17]);
    expect(Ipv4Check).toEqual({ Ok: 0, Short: 1, BadVersion: 2, BadHeaderLen: 3, Truncated: 4, BadTotalLen: 5 });
  });
});

describe('ipv4 accessors', () => {
  it('read every field', () => {
    const b = new Uint8Array(22);
    b.set(HEADER, 2);
    expect(ipv4.version(b, 2)).toBe(4);
    expect(ipv4.ihl(b, 2)).toBe(20);
    expect(ipv4.tos(b, 2)).toBe(0);
    expect(ipv4.totalLength(b, 2)).toBe(84);
    expect(ipv4.id(b, 2)).toBe(0xca42);
    expect(ipv4.flagsFragment(b, 2)).toBe(ipv4.IPV4_FLAG_DF);
    expect(ipv4.ttl(b, 2)).toBe(64);
    expect(ipv4.protocol(b, 2)).toBe(ipv4.IPPROTO_ICMP);
    expect(ipv4.headerChecksum(b, 2)).toBe(0x577f);
    expect(ipv4.src(b, 2)).toBe(0x0af40100);
    expect(ipv4.dst(b, 2)).toBe(0x0af40200);
    expect(ipv4.headerChecksumValid(b, 2)).toBe(true);
  });

  it('return addresses as unsigned 32-bit numbers', () => {
    const b = HEADER.slice();
    ipv4.setSrc(b, 0, 0xffffffff);
    ipv4.setDst(b, 0, 0xc0a80001);
    expect(ipv4.src(b, 0)).toBe(0xffffffff);
    expect(ipv4.dst(b, 0)).toBe(0xc0a80001);
  });

  it('setters rebuild the header in a 0xa5 buffer', () => {
    const b = new Uint8Array(22).fill(0xa5);
    ipv4.setVersion(b, 1, 4);
    ipv4.setIhl(b, 1, 20);
    ipv4.setTos(b, 1, 0);
    ipv4.setTotalLength(b, 1, 84);
    ipv4.setId(b, 1, 0xca42);
    ipv4.setFlagsFragment(b, 1, ipv4.IPV4_FLAG_DF);
    ipv4.setTtl(b, 1, 64);
    ipv4.setProtocol(b, 1, ipv4.IPPROTO_ICMP);
    ipv4.setSrc(b, 1, parseIpv4('10.244.1.0'));
    ipv4.setDst(b, 1, parseIpv4('10.244.2.0'));
    ipv4.updateHeaderChecksum(b, 1);
    expect([...b]).toEqual([0xa5, ...HEADER, 0xa5]);
  });

  it('setVersion and setIhl keep the other nibble', () => {
    const b = Uint8Array.from([0x45]);
    ipv4.setIhl(b, 0, 24);
    expect(b[0]).toBe(0x46);
    ipv4.setVersion(b, 0, 6);
    expect(b[0]).toBe(0x66);
  });

  it('isFragment: MF or a fragment offset, not DF', () => {
    const b = HEADER.slice();
    const cases: [number, boolean][] = [[0, false], [ipv4.IPV4_FLAG_DF, false], [ipv4.IPV4_FLAG_MF, true], [1, true],
      [ipv4.IPV4_FLAG_DF | 0x1fff, true], [0x8000, false]];
    for (const [ff, frag] of cases) {
      ipv4.setFlagsFragment(b, 0, ff);
      expect(ipv4.isFragment(b, 0)).toBe(frag);
    }
  });

  it('headerChecksumValid notices a flipped bit, updateHeaderChecksum repairs it', () => {
    const b = HEADER.slice();
    b[8] = 63;
    expect(ipv4.headerChecksumValid(b, 0)).toBe(false);
    ipv4.updateHeaderChecksum(b, 0);
    expect(ipv4.headerChecksumValid(b, 0)).toBe(true);
    expect(ipv4.headerChecksum(b, 0)).toBe(0x587f);
  });
});

describe('ipv4 check', () => {
  it('accepts a whole packet, with link-layer padding after it, and with options', () => {
    expect(ipv4.check(packet(64), 0, 84)).toBe(Ipv4Check.Ok);
    expect(ipv4.check(packet(70, 84), 0, 90)).toBe(Ipv4Check.Ok);
    const opts = packet(8, 28);
    ipv4.setIhl(opts, 0, 24);
    expect(ipv4.check(opts, 0, 28)).toBe(Ipv4Check.Ok);
    expect(ipv4.check(packet(0), 0, 20)).toBe(Ipv4Check.Ok);
  });

  it('Short: under 20 bytes, or a range outside the buffer', () => {
    expect(ipv4.check(packet(0), 0, 19)).toBe(Ipv4Check.Short);
    expect(ipv4.check(packet(0), 1, 20)).toBe(Ipv4Check.Short);
    expect(ipv4.check(packet(64), 0, 85)).toBe(Ipv4Check.Short);
    expect(ipv4.check(packet(0), -1, 20)).toBe(Ipv4Check.Short);
  });

  it('BadVersion', () => {
    const b = packet(0);
    ipv4.setVersion(b, 0, 6);
    expect(ipv4.check(b, 0, 20)).toBe(Ipv4Check.BadVersion);
  });

  it('BadHeaderLen: IHL under 5 words', () => {
    const b = packet(0);
    for (const words of [0, 4]) {
      ipv4.setIhl(b, 0, words * 4);
      expect(ipv4.check(b, 0, 20)).toBe(Ipv4Check.BadHeaderLen);
    }
  });

  it('BadTotalLen: totalLength below the header length', () => {
    expect(ipv4.check(packet(10, 19), 0, 30)).toBe(Ipv4Check.BadTotalLen);
    const opts = packet(8, 20);
    ipv4.setIhl(opts, 0, 24);
    expect(ipv4.check(opts, 0, 28)).toBe(Ipv4Check.BadTotalLen);
  });

  it('Truncated: totalLength beyond what arrived (also an oversize length field)', () => {
    expect(ipv4.check(packet(64, 85), 0, 84)).toBe(Ipv4Check.Truncated);
    expect(ipv4.check(packet(64, 0xffff), 0, 84)).toBe(Ipv4Check.Truncated);
    const opts = packet(0, 60);
    ipv4.setIhl(opts, 0, 60);
    expect(ipv4.check(opts, 0, 20)).toBe(Ipv4Check.Truncated);
  });
});

describe('IPv4 text', () => {
  it('formats and parses', () => {
    expect(formatIpv4(0x0a000001)).toBe('10.0.0.1');
    expect(formatIpv4(0xffffffff)).toBe('255.255.255.255');
    expect(formatIpv4(0)).toBe('0.0.0.0');
    expect(parseIpv4('10.0.0.1')).toBe(0x0a000001);
    expect(parseIpv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIpv4('10.244.2.0')).toBe(0x0af40200);
  });

  it.each(['10.0.0.300', '10.0.0', '10.0.0.1.2', '010.0.0.1', '', ' 10.0.0.1', '10.0.0.1 ', 'a.b.c.d', '1e1.0.0.1', '-1.0.0.1'])(
    'rejects %j naming the value', (s) => {
      expect(() => parseIpv4(s)).toThrow(TypeError);
      expect(() => parseIpv4(s)).toThrow(`invalid IPv4 address "${s}"`);
    });

  it('rejects non-strings', () => {
    expect(() => parseIpv4(167772161 as unknown as string)).toThrow('invalid IPv4 address "167772161"');
  });
});

describe('Ipv4Repr', () => {
  it('parses, emits into 0xa5 and formats', () => {
    const r = Ipv4Repr.parse(packet(64), 0);
    expect(r).toEqual(new Ipv4Repr(0x0af40100, 0x0af40200, 1, 64, 64, 0xca42, ipv4.IPV4_FLAG_DF, 0));
    expect(r?.format()).toBe('IPv4 src=10.244.1.0 dst=10.244.2.0 proto=0x01 len=84');
    const out = new Uint8Array(21).fill(0xa5);
    r?.emit(out, 0);
    expect([...out]).toEqual([...HEADER, 0xa5]);
    expect(r?.bufferLen()).toBe(20);
  });

  it('defaults: TTL 64, DF, id 0, tos 0; checksum filled in', () => {
    const out = new Uint8Array(20);
    new Ipv4Repr(parseIpv4('172.31.99.1'), parseIpv4('172.31.99.2'), ipv4.IPPROTO_UDP, 100).emit(out, 0);
    expect(ipv4.check(out, 0, 20)).toBe(Ipv4Check.Truncated); // header only: totalLength says 120
    expect([ipv4.ttl(out, 0), ipv4.flagsFragment(out, 0), ipv4.id(out, 0), ipv4.totalLength(out, 0)]).toEqual([64, 0x4000, 0, 120]);
    expect(ipv4.headerChecksumValid(out, 0)).toBe(true);
  });

  it('prints unknown protocols as hex and keeps them', () => {
    const b = packet(0);
    ipv4.setProtocol(b, 0, 0xfd);
    const r = Ipv4Repr.parse(b, 0);
    expect(r?.protocol).toBe(0xfd);
    expect(r?.format()).toBe('IPv4 src=10.244.1.0 dst=10.244.2.0 proto=0xfd len=20');
  });

  it('drops options, so len= counts a 20-byte header', () => {
    const b = packet(8, 28);
    ipv4.setIhl(b, 0, 24);
    expect(Ipv4Repr.parse(b, 0)?.payloadLen).toBe(4);
  });

  it('returns null for what check rejects', () => {
    expect(Ipv4Repr.parse(packet(64, 85), 0)).toBeNull();
    expect(Ipv4Repr.parse(HEADER, 0, 19)).toBeNull();
  });
});
