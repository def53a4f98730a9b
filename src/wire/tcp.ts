/**
 * TCP header view (RFC 9293 §3.1), the fields segmentation and coalescing touch.
 *
 *    | src port (2) | dst port (2) | sequence (4) | acknowledgment (4) |
 *    | data offset (4 bits) + reserved | flags (1) | window (2) | checksum (2) | urgent (2) | options
 */
import { get16, get32, put16, put32 } from './bytes.js';

export const TCP_SRC_PORT_OFF = 0;
export const TCP_DST_PORT_OFF = 2;
export const TCP_SEQ_OFF = 4;
export const TCP_ACK_OFF = 8;
export const TCP_DATA_OFF_OFF = 12;
export const TCP_FLAGS_OFF = 13;
export const TCP_WINDOW_OFF = 14;
export const TCP_CHECKSUM_OFF = 16;
export const TCP_URGENT_OFF = 18;
export const TCP_MIN_HEADER_LEN = TCP_URGENT_OFF + 2;
/** Data offset is 4 bits of 32-bit words. */
export const TCP_MAX_HEADER_LEN = 15 * 4;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

export function seq(buf: Uint8Array, off: number): number { return get32(buf, off + TCP_SEQ_OFF); }
export function setSeq(buf: Uint8Array, off: number, v: number): void { put32(buf, off + TCP_SEQ_OFF, v >>> 0); }
export function ack(buf: Uint8Array, off: number): number { return get32(buf, off + TCP_ACK_OFF); }
/** Header length in bytes (data offset × 4). */
export function headerLen(buf: Uint8Array, off: number): number { return (buf[off + TCP_DATA_OFF_OFF] >>> 4) << 2; }
export function flags(buf: Uint8Array, off: number): number { return buf[off + TCP_FLAGS_OFF]; }
export function setFlags(buf: Uint8Array, off: number, v: number): void { buf[off + TCP_FLAGS_OFF] = v; }
export function checksum(buf: Uint8Array, off: number): number { return get16(buf, off + TCP_CHECKSUM_OFF); }
export function setChecksum(buf: Uint8Array, off: number, v: number): void { put16(buf, off + TCP_CHECKSUM_OFF, v); }

/** Valid when `len` holds the whole header and the data offset is 20..60. */
export function check(buf: Uint8Array, off: number, len: number): boolean {
  if (len < TCP_MIN_HEADER_LEN || off < 0 || off + len > buf.length) return false;
  const h = headerLen(buf, off);
  return h >= TCP_MIN_HEADER_LEN && h <= len;
}

export function formatTcp(buf: Uint8Array, off: number): string {
  return `TCP ${get16(buf, off)} > ${get16(buf, off + 2)} seq=${seq(buf, off)} ack=${ack(buf, off)} flags=0x${flags(buf, off).toString(16).padStart(2, '0')}`;
}
