/**
 * IPv4 header view (RFC 791 §3.1).
 *
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    |Version|  IHL  |Type of Service|          Total Length         |
 *    |         Identification        |Flags|      Fragment Offset    |
 *    |  Time to Live |    Protocol   |         Header Checksum       |
 *    |                       Source Address                          |
 *    |                    Destination Address                        |
 *    |                    Options (IHL > 5)                          |
 *
 * Addresses are unsigned 32-bit numbers (10.0.0.1 is 0x0a000001). `ihl` returns bytes, not words.
 */
import { ipv4HeaderChecksum } from './checksum.js';
import { get16, put16, get32, put32 } from './bytes.js';

export const IPV4_VER_IHL_OFF = 0;
export const IPV4_TOS_OFF = 1;
export const IPV4_TOTAL_LEN_OFF = 2;
export const IPV4_ID_OFF = 4;
export const IPV4_FLAGS_FRAG_OFF = 6;
export const IPV4_TTL_OFF = 8;
export const IPV4_PROTOCOL_OFF = 9;
export const IPV4_CHECKSUM_OFF = 10;
export const IPV4_SRC_OFF = 12;
export const IPV4_DST_OFF = 16;
/** Bytes in an IPv4 address. */
export const IPV4_ADDR_LEN = 4;
/** Header without options: ends after the destination address. */
export const IPV4_MIN_HEADER_LEN = IPV4_DST_OFF + IPV4_ADDR_LEN;
/** IHL is a 4-bit count of 32-bit words, so options end at 15 * 4 bytes. */
export const IPV4_MAX_HEADER_LEN = 0x0f * 4;

/** Flags in the flags/fragment-offset word (RFC 791 §3.1). */
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;
export const IPV4_FRAG_OFFSET_MASK = 0x1fff;

/** Protocol numbers (IANA "Assigned Internet Protocol Numbers"). Others are kept and printed as hex. */
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/** Reasons `check` rejects a header; a drop counter per reason. */
export const Ipv4Check = { Ok: 0, Short: 1, BadVersion: 2, BadHeaderLen: 3, Truncated: 4, BadTotalLen: 5 } as const;

export function version(buf: Uint8Array, off: number): number { return buf[off + IPV4_VER_IHL_OFF] >>> 4; }
export function setVersion(buf: Uint8Array, off: number, v: number): void {
  buf[off + IPV4_VER_IHL_OFF] = (v << 4) | (buf[off + IPV4_VER_IHL_OFF] & 0x0f);
}
/** Header length in bytes (IHL * 4). */
export function ihl(buf: Uint8Array, off: number): number { return (buf[off + IPV4_VER_IHL_OFF] & 0x0f) << 2; }
/** Sets the header length from a byte count (a multiple of 4, at most 60). */
export function setIhl(buf: Uint8Array, off: number, bytes: number): void {
  buf[off + IPV4_VER_IHL_OFF] = (buf[off + IPV4_VER_IHL_OFF] & 0xf0) | ((bytes >>> 2) & 0x0f);
}
export function tos(buf: Uint8Array, off: number): number { return buf[off + IPV4_TOS_OFF]; }
export function setTos(buf: Uint8Array, off: number, v: number): void { buf[off + IPV4_TOS_OFF] = v; }
export function totalLength(buf: Uint8Array, off: number): number { return get16(buf, off + IPV4_TOTAL_LEN_OFF); }
export function setTotalLength(buf: Uint8Array, off: number, v: number): void { put16(buf, off + IPV4_TOTAL_LEN_OFF, v); }
export function id(buf: Uint8Array, off: number): number { return get16(buf, off + IPV4_ID_OFF); }
export function setId(buf: Uint8Array, off: number, v: number): void { put16(buf, off + IPV4_ID_OFF, v); }
/** Flags (top 3 bits) and fragment offset (low 13 bits, in 8-byte units) as one word. */
export function flagsFragment(buf: Uint8Array, off: number): number { return get16(buf, off + IPV4_FLAGS_FRAG_OFF); }
export function setFlagsFragment(buf: Uint8Array, off: number, v: number): void { put16(buf, off + IPV4_FLAGS_FRAG_OFF, v); }
export function ttl(buf: Uint8Array, off: number): number { return buf[off + IPV4_TTL_OFF]; }
export function setTtl(buf: Uint8Array, off: number, v: number): void { buf[off + IPV4_TTL_OFF] = v; }
export function protocol(buf: Uint8Array, off: number): number { return buf[off + IPV4_PROTOCOL_OFF]; }
export function setProtocol(buf: Uint8Array, off: number, v: number): void { buf[off + IPV4_PROTOCOL_OFF] = v; }
export function headerChecksum(buf: Uint8Array, off: number): number { return get16(buf, off + IPV4_CHECKSUM_OFF); }
export function setHeaderChecksum(buf: Uint8Array, off: number, v: number): void { put16(buf, off + IPV4_CHECKSUM_OFF, v); }
export function src(buf: Uint8Array, off: number): number { return get32(buf, off + IPV4_SRC_OFF); }
export function setSrc(buf: Uint8Array, off: number, v: number): void { put32(buf, off + IPV4_SRC_OFF, v); }
export function dst(buf: Uint8Array, off: number): number { return get32(buf, off + IPV4_DST_OFF); }
export function setDst(buf: Uint8Array, off: number, v: number): void { put32(buf, off + IPV4_DST_OFF, v); }

/** True for any fragment of a fragmented datagram: MF set or a non-zero fragment offset. */
export function isFragment(buf: Uint8Array, off: number): boolean {
  return (flagsFragment(buf, off) & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK)) !== 0;
}

/** Recomputes and stores the header checksum over `ihl` bytes (RFC 791 §3.1). */
export function updateHeaderChecksum(buf: Uint8Array, off: number): void {
  setHeaderChecksum(buf, off, ipv4HeaderChecksum(buf, off, ihl(buf, off)));
}

/** True when the stored header checksum matches the header's contents. */
export function headerChecksumValid(buf: Uint8Array, off: number): boolean {
  return ipv4HeaderChecksum(buf, off, ihl(buf, off)) === headerChecksum(buf, off);
}

/**
 * Trust-boundary check of the `len` bytes at buf[off]. When it returns Ipv4Check.Ok:
 * 20 <= ihl <= totalLength <= len, and [off, off+len) lies inside buf. The header checksum is not
 * verified here (see `headerChecksumValid`); length past totalLength is link-layer padding.
 */
export function check(buf: Uint8Array, off: number, len: number): number {
  if (len < IPV4_MIN_HEADER_LEN || off < 0 || off + len > buf.length) return Ipv4Check.Short;
  if (version(buf, off) !== 4) return Ipv4Check.BadVersion;
  const hl = ihl(buf, off);
  if (hl < IPV4_MIN_HEADER_LEN) return Ipv4Check.BadHeaderLen;
  const total = totalLength(buf, off);
  if (total < hl) return Ipv4Check.BadTotalLen;
  if (total > len) return Ipv4Check.Truncated;
  return Ipv4Check.Ok;
}

/** Dotted-quad text of an unsigned 32-bit address. */
export function formatIpv4(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4_RE = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/** Parses strict dotted-quad text ("10.244.1.0"; no leading zeros) into an unsigned 32-bit number. */
export function parseIpv4(str: string): number {
  const m = typeof str === 'string' ? IPV4_RE.exec(str) : null;
  if (m === null) throw new TypeError(`invalid IPv4 address "${String(str)}"`);
  return ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
}

/**
 * A parsed IPv4 header for control code, tests and printing. Options are not represented:
 * `parse` skips them and `emit` writes a 20-byte header, so `len=` in `format` is 20 + payloadLen.
 */
export class Ipv4Repr {
  constructor(
    public src: number,
    public dst: number,
    public protocol: number,
    public payloadLen: number,
    public ttl = 64,
    public id = 0,
    public flagsFragment = IPV4_FLAG_DF,
    public tos = 0,
  ) {}

  /** Reads a header that passes `check`; null otherwise. */
  static parse(buf: Uint8Array, off: number, len = buf.length - off): Ipv4Repr | null {
    if (check(buf, off, len) !== Ipv4Check.Ok) return null;
    return new Ipv4Repr(src(buf, off), dst(buf, off), protocol(buf, off), totalLength(buf, off) - ihl(buf, off),
      ttl(buf, off), id(buf, off), flagsFragment(buf, off), tos(buf, off));
  }

  bufferLen(): number {
    return IPV4_MIN_HEADER_LEN;
  }

  /** Writes the 20-byte header, checksum included, at buf[off]. */
  emit(buf: Uint8Array, off: number): void {
    buf[off + IPV4_VER_IHL_OFF] = (4 << 4) | (IPV4_MIN_HEADER_LEN >>> 2);
    setTos(buf, off, this.tos);
    setTotalLength(buf, off, IPV4_MIN_HEADER_LEN + this.payloadLen);
    setId(buf, off, this.id);
    setFlagsFragment(buf, off, this.flagsFragment);
    setTtl(buf, off, this.ttl);
    setProtocol(buf, off, this.protocol);
    setSrc(buf, off, this.src);
    setDst(buf, off, this.dst);
    updateHeaderChecksum(buf, off);
  }

  format(): string {
    const proto = this.protocol.toString(16).padStart(2, '0');
    return `IPv4 src=${formatIpv4(this.src)} dst=${formatIpv4(this.dst)} proto=0x${proto} len=${IPV4_MIN_HEADER_LEN + this.payloadLen}`;
  }
}
