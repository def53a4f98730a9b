/** Views take any bytes: checks classify, accessors read, nothing throws. */
import { describe, expect, it } from 'vitest';
import * as wire from '../../../src/wire/index.js';

const { arp, ethernet, ipv4, udp, vxlan } = wire;

function randomBytes(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => Math.floor(Math.random() * 256));
}

describe('views on arbitrary bytes', () => {
  it('checks return a verdict for every length, offset and content', () => {
    let ipv4Ok = 0;
    for (let i = 0; i < 3000; i++) {
      const b = randomBytes(Math.floor(Math.random() * 80));
      if (i % 2 === 0 && b.length >= 20) { // mostly-valid IPv4 headers reach the later branches
        b[0] = 0x45;
        ipv4.setTotalLength(b, 0, b.length - (i % 3));
      }
      const off = Math.floor(Math.random() * 4) - 1;
      const len = Math.floor(Math.random() * 90) - 5;
      expect(typeof ethernet.check(b, off, len)).toBe('boolean');
      expect(typeof arp.check(b, off, len)).toBe('boolean');
      expect(typeof udp.check(b, off, len)).toBe('boolean');
      expect(Object.values(wire.Ipv4Check)).toContain(ipv4.check(b, off, len));
      expect(Object.values(wire.VxlanCheck)).toContain(vxlan.check(b, off, len));
      if (ipv4.check(b, 0, b.length) === wire.Ipv4Check.Ok) {
        ipv4Ok++;
        expect(typeof wire.verifyL4V4(b, 0)).toBe('boolean');
        expect(wire.l4ChecksumV4(b, 0)).toBeLessThanOrEqual(0xffff);
      }
    }
    expect(ipv4Ok).toBeGreaterThan(100);
  });

  it('accessors past the end read zeros instead of throwing', () => {
    const empty = new Uint8Array(0);
    const reads = [
      ethernet.etherType, ethernet.isBroadcastDst, vxlan.flags, vxlan.vni, vxlan.reservedBitsClear,
      ipv4.version, ipv4.ihl, ipv4.totalLength, ipv4.src, ipv4.dst, ipv4.isFragment, ipv4.headerChecksumValid,
      udp.srcPort, udp.length, udp.checksum, arp.op, arp.senderIp, arp.targetIp,
    ];
    for (const read of reads) expect(() => read(empty, 3)).not.toThrow();
    expect(ipv4.src(empty, 0)).toBe(0);
    expect(vxlan.vni(empty, 0)).toBe(0);
    expect(wire.sum16(empty, 0, 5)).toBe(0);
  });

  it('Reprs return null rather than throw', () => {
    for (let n = 0; n < 40; n++) {
      const b = randomBytes(n);
      expect(() => [wire.EthernetRepr, wire.Ipv4Repr, wire.UdpRepr, wire.VxlanRepr, wire.ArpRepr]
        .map((R) => R.parse(b, 0)?.format())).not.toThrow();
    }
  });
});

describe('index', () => {
  it('re-exports header modules as namespaces and the rest flat', () => {
    expect(vxlan.VXLAN_OVERHEAD_IPV4).toBe(50);
    expect(wire.formatMac(wire.parseMac('02:aa:00:00:00:01'))).toBe('02:aa:00:00:00:01');
    expect(wire.formatIpv4(wire.parseIpv4('10.244.1.2'))).toBe('10.244.1.2');
    expect(typeof wire.finish).toBe('function');
  });
});
