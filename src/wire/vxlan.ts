/**
 * VXLAN header view (RFC 7348 §5).
 *
 *    |R|R|R|R|I|R|R|R|            Reserved (24)                      |
 *    |          VXLAN Network Identifier (VNI) (24)  | Reserved (8)  |
 *
 * The I flag (0x08) must be set for a valid VNI. RFC 7348 says other flag bits and reserved
 * fields are "ignored on receipt"; Linux's vxlan_rcv instead drops any packet with unparsed flag
 * or reserved bits, and so does `check` here, so a frame tulle accepts is one the kernel accepts.
 */
import { ETH_HEADER_LEN } from './ethernet.js';
import { IPV4_MIN_HEADER_LEN } from './ipv4.js';
import { UDP_HEADER_LEN } from './udp.js';

export const VXLAN_FLAGS_OFF = 0;
/** Bytes 1-3: reserved, zero. */
export const VXLAN_RESERVED1_OFF = 1;
export const VXLAN_VNI_OFF = 4;
/** Byte 7: reserved, zero. */
export const VXLAN_RESERVED2_OFF = VXLAN_VNI_OFF + 3;
export const VXLAN_HEADER_LEN = VXLAN_RESERVED2_OFF + 1;

/** "I" flag: the VNI is valid. */
export const VXLAN_FLAG_I = 0x08;
/** VNIs are 24 bits. */
export const VXLAN_VNI_MAX = 0xffffff;

/** Bytes VXLAN adds to an inner IPv4 packet over an IPv4 underlay without IP options: 50. */
export const VXLAN_OVERHEAD_IPV4 = IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN + VXLAN_HEADER_LEN + ETH_HEADER_LEN;

/**
 * UDP port of Linux's vxlan driver default and of flannel. IANA assigned 4789 (RFC 7348 §5),
 * but the kernel kept 8472 for compatibility and flannel uses it, so interop needs it by default.
 */
export const VXLAN_DEFAULT_PORT = 8472;
/** flannel's default VNI. */
export const VXLAN_DEFAULT_VNI = 1;

/** Reasons `check` rejects a header; a drop counter per reason. */
export const VxlanCheck = { Ok: 0, Short: 1, BadFlags: 2, Reserved: 3 } as const;

/** The flags byte (byte 0). */
export function flags(buf: Uint8Array, off: number): number {
  return buf[off + VXLAN_FLAGS_OFF];
}

export function vni(buf: Uint8Array, off: number): number {
  const at = off + VXLAN_VNI_OFF;
  return (buf[at] << 16) | (buf[at + 1] << 8) | buf[at + 2];
}

/** Writes the 24-bit VNI; the reserved byte after it is left as it is. */
export function setVni(buf: Uint8Array, off: number, v: number): void {
  const at = off + VXLAN_VNI_OFF;
  buf[at] = v >>> 16;
  buf[at + 1] = v >>> 8;
  buf[at + 2] = v;
}

/** Writes a complete header: I flag, reserved bytes zero, VNI. */
export function writeHeader(buf: Uint8Array, off: number, v: number): void {
  buf[off + VXLAN_FLAGS_OFF] = VXLAN_FLAG_I;
  buf[off + VXLAN_RESERVED1_OFF] = 0;
  buf[off + VXLAN_RESERVED1_OFF + 1] = 0;
  buf[off + VXLAN_RESERVED1_OFF + 2] = 0;
  setVni(buf, off, v);
  buf[off + VXLAN_RESERVED2_OFF] = 0;
}

/** True when the reserved bytes (1-3 and 7) are all zero. */
export function reservedBitsClear(buf: Uint8Array, off: number): boolean {
  return (buf[off + VXLAN_RESERVED1_OFF] | buf[off + VXLAN_RESERVED1_OFF + 1] |
    buf[off + VXLAN_RESERVED1_OFF + 2] | buf[off + VXLAN_RESERVED2_OFF]) === 0;
}

/**
 * Trust-boundary check of the `len` bytes at buf[off] (the UDP payload). Returns VxlanCheck.Ok
 * when they lie inside buf, hold a header, the flags byte is exactly the I flag, and the reserved
 * bytes are zero; otherwise the reason.
 */
export function check(buf: Uint8Array, off: number, len: number): number {
  if (len < VXLAN_HEADER_LEN || off < 0 || off + len > buf.length) return VxlanCheck.Short;
  if (flags(buf, off) !== VXLAN_FLAG_I) return VxlanCheck.BadFlags;
  if (!reservedBitsClear(buf, off)) return VxlanCheck.Reserved;
  return VxlanCheck.Ok;
}

/** A parsed VXLAN header for control code, tests and printing. */
export class VxlanRepr {
  constructor(public vni: number, public flags = VXLAN_FLAG_I) {}

  /** Reads a header that passes `check`; null otherwise. */
  static parse(buf: Uint8Array, off: number, len = buf.length - off): VxlanRepr | null {
    if (check(buf, off, len) !== VxlanCheck.Ok) return null;
    return new VxlanRepr(vni(buf, off), flags(buf, off));
  }

  bufferLen(): number {
    return VXLAN_HEADER_LEN;
  }

  emit(buf: Uint8Array, off: number): void {
    writeHeader(buf, off, this.vni);
    buf[off + VXLAN_FLAGS_OFF] = this.flags;
  }

  format(): string {
    return `VXLAN vni=${this.vni} flags=0x${this.flags.toString(16).padStart(2, '0')}`;
  }
}
