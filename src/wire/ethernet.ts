/**
 * Ethernet II header view (IEEE 802.3 §3.2.6 with the EtherType interpretation of the
 * length/type field). In VXLAN this is the inner frame header (RFC 7348 §5); the 4-byte FCS is
 * not carried, and frames are not padded to 60 bytes.
 *
 *    | destination MAC (6) | source MAC (6) | EtherType (2) | payload ...
 */
import { MAC_LEN, formatMac } from './mac.js';

export const ETH_DST_OFF = 0;
export const ETH_SRC_OFF = ETH_DST_OFF + MAC_LEN;
export const ETH_TYPE_OFF = ETH_SRC_OFF + MAC_LEN;
export const ETH_HEADER_LEN = ETH_TYPE_OFF + 2;

/** EtherTypes (IEEE "EtherType" registry). Others are kept and printed as hex. */
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;

export function etherType(buf: Uint8Array, off: number): number {
  return (buf[off + ETH_TYPE_OFF] << 8) | buf[off + ETH_TYPE_OFF + 1];
}

export function setEtherType(buf: Uint8Array, off: number, v: number): void {
  buf[off + ETH_TYPE_OFF] = v >>> 8;
  buf[off + ETH_TYPE_OFF + 1] = v;
}

/** True when the destination is ff:ff:ff:ff:ff:ff. */
export function isBroadcastDst(buf: Uint8Array, off: number): boolean {
  const d = off + ETH_DST_OFF;
  for (let i = 0; i < MAC_LEN; i++) if (buf[d + i] !== 0xff) return false;
  return true;
}

/** Compares the 6 bytes at buf[off] with mac[macOff]. */
export function macEqual(buf: Uint8Array, off: number, mac: Uint8Array, macOff = 0): boolean {
  for (let i = 0; i < MAC_LEN; i++) if (buf[off + i] !== mac[macOff + i]) return false;
  return true;
}

/** Copies 6 bytes from src[srcOff] to dst[dstOff] (no subarray, so no allocation). */
export function copyMac(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number): void {
  for (let i = 0; i < MAC_LEN; i++) dst[dstOff + i] = src[srcOff + i];
}

export function setDst(buf: Uint8Array, off: number, mac: Uint8Array): void {
  copyMac(buf, off + ETH_DST_OFF, mac, 0);
}

export function setSrc(buf: Uint8Array, off: number, mac: Uint8Array): void {
  copyMac(buf, off + ETH_SRC_OFF, mac, 0);
}

/** Trust-boundary check: [off, off+len) lies inside buf and holds at least a header. */
export function check(buf: Uint8Array, off: number, len: number): boolean {
  return len >= ETH_HEADER_LEN && off >= 0 && off + len <= buf.length;
}

/** A parsed Ethernet header for control code, tests and printing. */
export class EthernetRepr {
  constructor(public dst: Uint8Array, public src: Uint8Array, public etherType: number) {}

  /** Copies the header out of a frame that passes `check`; null otherwise. */
  static parse(buf: Uint8Array, off: number, len = buf.length - off): EthernetRepr | null {
    if (!check(buf, off, len)) return null;
    const dst = buf.slice(off + ETH_DST_OFF, off + ETH_DST_OFF + MAC_LEN);
    const src = buf.slice(off + ETH_SRC_OFF, off + ETH_SRC_OFF + MAC_LEN);
    return new EthernetRepr(dst, src, etherType(buf, off));
  }

  bufferLen(): number {
    return ETH_HEADER_LEN;
  }

  emit(buf: Uint8Array, off: number): void {
    setDst(buf, off, this.dst);
    setSrc(buf, off, this.src);
    setEtherType(buf, off, this.etherType);
  }

  format(): string {
    const type = this.etherType.toString(16).padStart(4, '0');
    return `Ethernet src=${formatMac(this.src)} dst=${formatMac(this.dst)} type=0x${type}`;
  }
}
