/**
 * The Internet checksum (RFC 1071): the 16-bit one's-complement of the one's-complement sum of
 * the data taken as big-endian 16-bit words, an odd trailing byte padded with a zero byte.
 *
 * `sum16` accumulates without folding so that sums over several ranges (pseudo-header, header,
 * payload) can be added and folded once; a JS number holds such a sum exactly for any buffer below
 * 2^37 bytes. Nothing here allocates.
 *
 * This module and ipv4.ts import each other (the IPv4 header checksum lives here; the L4 checksum
 * reads IPv4 fields). Neither uses the other's bindings while loading, so the cycle is harmless.
 */
import {
  IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_CHECKSUM_OFF,
  dst as ipDst, ihl as ipIhl, isFragment, protocol as ipProtocol, src as ipSrc, totalLength,
} from './ipv4.js';
import { UDP_CHECKSUM_OFF, UDP_HEADER_LEN, length as udpLength } from './udp.js';

import { TCP_CHECKSUM_OFF } from './tcp.js';
export { TCP_CHECKSUM_OFF };
/** ICMP checksum field offset (RFC 792). ICMP has no pseudo-header. */
export const ICMP_CHECKSUM_OFF = 2;

/** Adds buf[off, off+len) as big-endian 16-bit words to `initial`; does not fold. */
export function sum16(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let sum = initial;
  const end = off + (len & ~1);
  let i = off;
  for (; i < end; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (len & 1) sum += buf[i] << 8;
  return sum;
}

/** Folds the carries of an unfolded sum back in until it fits 16 bits (end-around carry). */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum to store for an unfolded sum: ~fold(sum), 16 bits. */
export function finish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/** Unfolded sum of the IPv4 pseudo-header (RFC 768, RFC 9293 §3.1): src, dst, zero+proto, length. */
export function pseudoHeaderSumV4(src: number, dst: number, proto: number, l4len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + l4len;
}

/** The header checksum to store for the `ihl`-byte IPv4 header at off (RFC 791 §3.1), skipping the field itself. */
export function ipv4HeaderChecksum(buf: Uint8Array, off: number, ihl: number): number {
  const sum = sum16(buf, off, IPV4_CHECKSUM_OFF);
  const rest = IPV4_CHECKSUM_OFF + 2;
  return finish(sum16(buf, off + rest, ihl - rest, sum));
}

/** Offset of the checksum field within the L4 header for proto, or -1 when we know none. */
export function l4ChecksumOffset(proto: number): number {
  switch (proto) {
    case IPPROTO_UDP: return UDP_CHECKSUM_OFF;
    case IPPROTO_TCP: return TCP_CHECKSUM_OFF;
    case IPPROTO_ICMP: return ICMP_CHECKSUM_OFF;
    default: return -1;
  }
}

/** Bytes the L4 checksum covers: the UDP length field when it is sane, else totalLength - ihl. */
function l4Length(buf: Uint8Array, ipOff: number, l4Off: number, proto: number): number {
  const ipPayload = totalLength(buf, ipOff) - (l4Off - ipOff);
  if (proto !== IPPROTO_UDP || ipPayload < UDP_HEADER_LEN) return ipPayload;
  const ulen = udpLength(buf, l4Off);
  return ulen >= UDP_HEADER_LEN && ulen <= ipPayload ? ulen : ipPayload;
}

/**
 * The TCP, UDP or ICMP checksum to store for the IPv4 packet at ipOff (the field's current value is
 * skipped). A UDP result of 0 is returned as 0xffff, since 0 on the wire means "no checksum"
 * (RFC 768). Returns 0 for other protocols. The packet must have passed ipv4 `check`.
 */
export function l4ChecksumV4(buf: Uint8Array, ipOff: number): number {
  const proto = ipProtocol(buf, ipOff);
  const csumOff = l4ChecksumOffset(proto);
  if (csumOff < 0) return 0;
  const l4Off = ipOff + ipIhl(buf, ipOff);
  const len = l4Length(buf, ipOff, l4Off, proto);
  let sum = proto === IPPROTO_ICMP ? 0 : pseudoHeaderSumV4(ipSrc(buf, ipOff), ipDst(buf, ipOff), proto, len);
  sum = sum16(buf, l4Off, csumOff, sum);
  sum = sum16(buf, l4Off + csumOff + 2, len - csumOff - 2, sum);
  const csum = finish(sum);
  return proto === IPPROTO_UDP && csum === 0 ? 0xffff : csum;
}

/**
 * True when the TCP/UDP/ICMP checksum of the IPv4 packet at ipOff verifies. A UDP checksum of
 * zero means the sender computed none (RFC 768) and is accepted. Protocols without a checksum we
 * know, and fragments (whose L4 checksum covers the reassembled datagram), return true: there is
 * nothing this packet alone can disprove. The packet must have passed ipv4 `check`.
 */
export function verifyL4V4(buf: Uint8Array, ipOff: number): boolean {
  const proto = ipProtocol(buf, ipOff);
  const csumOff = l4ChecksumOffset(proto);
  if (csumOff < 0 || isFragment(buf, ipOff)) return true;
  const l4Off = ipOff + ipIhl(buf, ipOff);
  const stored = (buf[l4Off + csumOff] << 8) | buf[l4Off + csumOff + 1];
  if (proto === IPPROTO_UDP && stored === 0) return true;
  const len = l4Length(buf, ipOff, l4Off, proto);
  const pseudo = proto === IPPROTO_ICMP ? 0 : pseudoHeaderSumV4(ipSrc(buf, ipOff), ipDst(buf, ipOff), proto, len);
  return fold(sum16(buf, l4Off, len, pseudo)) === 0xffff;
}
