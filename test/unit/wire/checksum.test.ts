import { describe, expect, it } from 'vitest';
import {
  finish, fold, ipv4HeaderChecksum, l4ChecksumOffset, l4ChecksumV4, pseudoHeaderSumV4, sum16, verifyL4V4,
} from '../../../src/wire/checksum.js';
import * as ipv4 from '../../../src/wire/ipv4.js';
import { Ipv4Repr, parseIpv4 } from '../../../src/wire/ipv4.js';
import * as udp from '../../../src/wire/udp.js';
import { UdpRepr } from '../../../src/wire/udp.js';

/** A slow, obviously right Internet checksum sum (RFC 1071 §4.1 without the final complement). */
function referenceSum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    sum += bytes[i] * 256 + (i + 1 < bytes.length ? bytes[i + 1] : 0);
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  return sum;
}

/** An IPv4/UDP packet with `data` as payload and a correct checksum. */
function udpPacket(data: Uint8Array, proto = ipv4.IPPROTO_UDP): Uint8Array {
  const b = new Uint8Array(20 + 8 + data.length);
  new Ipv4Repr(parseIpv4('10.244.1.0'), parseIpv4('10.244.2.0'), proto, 8 + data.length).emit(b, 0);
  new UdpRepr(40000, 5001, data.length).emit(b, 20);
  b.set(data, 28);
  udp.setChecksum(b, 20, l4ChecksumV4(b, 0));
  return b;
}

describe('sum16, fold, finish', () => {
  it('reproduce RFC 1071 §3 numerical example', () => {
    const b = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(sum16(b, 0, 8)).toBe(0x2ddf0);
    expect(fold(0x2ddf0)).toBe(0xddf2);
    expect(finish(0x2ddf0)).toBe(0x220d);
  });

  it('pad an odd trailing byte with zero', () => {
    expect(sum16(Uint8Array.from([0x01]), 0, 1)).toBe(0x0100);
    expect(sum16(Uint8Array.from([0x12, 0x34, 0x56, 0x78]), 0, 3)).toBe(0x1234 + 0x5600);
    expect(sum16(Uint8Array.from([0xff, 0x12, 0x34, 0x56]), 1, 3)).toBe(0x1234 + 0x5600);
  });

  it('handle empty ranges and chain through initial', () => {
    const b = Uint8Array.from([1, 2, 3, 4, 5, 6, 7]);
    expect(sum16(b, 3, 0, 42)).toBe(42);
    expect(sum16(b, 4, 3, sum16(b, 0, 4))).toBe(sum16(b, 0, 7));
  });

  it('agree with a reference on random buffers of every small length', () => {
    for (let len = 0; len < 200; len++) {
      const b = Uint8Array.from({ length: len + 3 }, () => Math.floor(Math.random() * 256));
      const data = b.subarray(3);
      expect(fold(sum16(b, 3, len))).toBe(fold(referenceSum(data)));
    }
  });

  it('fold sums far beyond 32 bits', () => {
    const big = new Uint8Array(1 << 20).fill(0xff);
    expect(sum16(big, 0, big.length)).toBe(0xffff * (1 << 19));
    expect(fold(sum16(big, 0, big.length))).toBe(0xffff);
    expect(fold(0x1_0000_0000_0000)).toBe(1);
    expect(fold(0)).toBe(0);
    expect(finish(0xffff)).toBe(0);
  });
});

describe('pseudo-header and IPv4 header checksum', () => {
  it('pseudoHeaderSumV4 adds the address halves, protocol and length', () => {
    const s = pseudoHeaderSumV4(0xac1f6301, 0xac1f6302, 17, 114);
    expect(s).toBe(0xac1f + 0x6301 + 0xac1f + 0x6302 + 17 + 114);
    expect(fold(s)).toBe(0x1ec6); // what the kernel leaves in a CHECKSUM_PARTIAL field (icmp.pcap)
  });

  it('ipv4HeaderChecksum skips the stored field', () => {
    const h = Uint8Array.from([0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7]);
    expect(ipv4HeaderChecksum(h, 0, 20)).toBe(0xb861);
    h[10] = 0x12;
    expect(ipv4HeaderChecksum(h, 0, 20)).toBe(0xb861);
  });

  it('covers options', () => {
    const h = new Uint8Array(24);
    new Ipv4Repr(1, 2, 17, 4).emit(h, 0);
    ipv4.setIhl(h, 0, 24);
    h.set([0x01, 0x01, 0x01, 0x00], 20); // NOP NOP NOP EOL
    ipv4.updateHeaderChecksum(h, 0);
    expect(fold(referenceSum(h))).toBe(0xffff);
  });
});

describe('l4ChecksumV4 and verifyL4V4', () => {
  it('compute and verify an odd-length UDP payload', () => {
    const b = udpPacket(new TextEncoder().encode('tulle udp fixture'));
    expect(udp.checksum(b, 20)).toBe(0x5233); // the kernel's value in udp-sw-csum.pcap
    expect(verifyL4V4(b, 0)).toBe(true);
    b[b.length - 1] ^= 0x01;
    expect(verifyL4V4(b, 0)).toBe(false);
  });

  it('accept a zero UDP checksum as "none"', () => {
    const b = udpPacket(Uint8Array.of(1, 2, 3));
    udp.setChecksum(b, 20, 0);
    expect(verifyL4V4(b, 0)).toBe(true);
    expect(l4ChecksumV4(b, 0)).not.toBe(0);
  });

  it('send a computed UDP checksum of zero as 0xffff, which verifies', () => {
    const b = udpPacket(Uint8Array.of(0, 0));
    udp.setChecksum(b, 20, 0);
    const c = l4ChecksumV4(b, 0);
    b.set([c >>> 8, c & 0xff], 28); // payload word = checksum: the sum becomes 0xffff
    expect(l4ChecksumV4(b, 0)).toBe(0xffff);
    udp.setChecksum(b, 20, 0xffff);
    expect(verifyL4V4(b, 0)).toBe(true);
  });

  it('use the UDP length field, ignoring padding after it', () => {
    const b = udpPacket(Uint8Array.of(9, 8, 7));
    const padded = new Uint8Array(b.length + 5);
    padded.set(b);
    padded.fill(0x77, b.length);
    ipv4.setTotalLength(padded, 0, padded.length);
    expect(verifyL4V4(padded, 0)).toBe(true);
  });

  it('compute TCP the same way at offset 16, with no 0xffff substitution', () => {
    expect(l4ChecksumOffset(ipv4.IPPROTO_TCP)).toBe(16);
    const b = new Uint8Array(40);
    new Ipv4Repr(parseIpv4('10.0.0.1'), parseIpv4('10.0.0.2'), ipv4.IPPROTO_TCP, 20).emit(b, 0);
    b.set([0x1f, 0x90, 0xc3, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff], 20);
    const c = l4ChecksumV4(b, 0);
    b.set([c >>> 8, c & 0xff], 36);
    expect(verifyL4V4(b, 0)).toBe(true);
    expect(fold(referenceSum(b.subarray(20)) + pseudoHeaderSumV4(0x0a000001, 0x0a000002, 6, 20))).toBe(0xffff);
  });

  it('ICMP has no pseudo-header', () => {
    const b = new Uint8Array(28 + 3);
    new Ipv4Repr(1, 2, ipv4.IPPROTO_ICMP, 11).emit(b, 0);
    b.set([8, 0, 0, 0, 0, 1, 0, 1, 0xaa, 0xbb, 0xcc], 20);
    const c = l4ChecksumV4(b, 0);
    expect(c).toBe(finish(referenceSum(b.subarray(20))));
    b.set([c >>> 8, c & 0xff], 22);
    expect(verifyL4V4(b, 0)).toBe(true);
  });

  it('leave protocols without a known checksum, and fragments, unverified (true)', () => {
    const gre = udpPacket(Uint8Array.of(1), 47);
    expect(l4ChecksumOffset(47)).toBe(-1);
    expect(l4ChecksumV4(gre, 0)).toBe(0);
    expect(verifyL4V4(gre, 0)).toBe(true);
    const frag = udpPacket(Uint8Array.of(1, 2));
    udp.setChecksum(frag, 20, 0x1234);
    ipv4.setFlagsFragment(frag, 0, ipv4.IPV4_FLAG_MF);
    expect(verifyL4V4(frag, 0)).toBe(true);
  });
});
