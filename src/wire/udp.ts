/**
 * UDP header view (RFC 768).
 *
 *    | source port (2) | destination port (2) | length (2) | checksum (2) | data ...
 *
 * Length counts header and data. A checksum of 0 means the sender computed none (allowed over
 * IPv4; RFC 7348 §5 says VXLAN senders SHOULD send 0 and receivers MUST accept it).
 */
import { get16, put16 } from './bytes.js';
export const UDP_SRC_PORT_OFF = 0;
export const UDP_DST_PORT_OFF = 2;
export const UDP_LENGTH_OFF = 4;
export const UDP_CHECKSUM_OFF = 6;
export const UDP_HEADER_LEN = UDP_CHECKSUM_OFF + 2;

export function srcPort(buf: Uint8Array, off: number): number { return get16(buf, off + UDP_SRC_PORT_OFF); }
export function setSrcPort(buf: Uint8Array, off: number, v: number): void { put16(buf, off + UDP_SRC_PORT_OFF, v); }
export function dstPort(buf: Uint8Array, off: number): number { return get16(buf, off + UDP_DST_PORT_OFF); }
export function setDstPort(buf: Uint8Array, off: number, v: number): void { put16(buf, off + UDP_DST_PORT_OFF, v); }
/** Length field: header plus data, in bytes. */
export function length(buf: Uint8Array, off: number): number { return get16(buf, off + UDP_LENGTH_OFF); }
export function setLength(buf: Uint8Array, off: number, v: number): void { put16(buf, off + UDP_LENGTH_OFF, v); }
export function checksum(buf: Uint8Array, off: number): number { return get16(buf, off + UDP_CHECKSUM_OFF); }
export function setChecksum(buf: Uint8Array, off: number, v: number): void { put16(buf, off + UDP_CHECKSUM_OFF, v); }

/**
 * Trust-boundary check of the `len` bytes at buf[off] (normally the IPv4 payload): they lie inside
 * buf, hold a header, and 8 <= length field <= len. Bytes past the length field are padding.
 */
export function check(buf: Uint8Array, off: number, len: number): boolean {
  if (len < UDP_HEADER_LEN || off < 0 || off + len > buf.length) return false;
  const l = length(buf, off);
  return l >= UDP_HEADER_LEN && l <= len;
}

/** A parsed UDP header. `checksum` is carried as a value; compute it with checksum.ts. */
export class UdpRepr {
  constructor(public srcPort: number, public dstPort: number, public payloadLen: number, public checksum = 0) {}

  /** Reads a header that passes `check`; null otherwise. */
  static parse(buf: Uint8Array, off: number, len = buf.length - off): UdpRepr | null {
    if (!check(buf, off, len)) return null;
    return new UdpRepr(srcPort(buf, off), dstPort(buf, off), length(buf, off) - UDP_HEADER_LEN, checksum(buf, off));
  }

  bufferLen(): number {
    return UDP_HEADER_LEN;
  }

  emit(buf: Uint8Array, off: number): void {
    setSrcPort(buf, off, this.srcPort);
    setDstPort(buf, off, this.dstPort);
    setLength(buf, off, UDP_HEADER_LEN + this.payloadLen);
    setChecksum(buf, off, this.checksum);
  }

  format(): string {
    const csum = this.checksum.toString(16).padStart(4, '0');
    return `UDP src=${this.srcPort} dst=${this.dstPort} len=${UDP_HEADER_LEN + this.payloadLen} csum=0x${csum}`;
  }
}
