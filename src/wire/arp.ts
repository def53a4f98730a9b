/**
 * ARP packet view for Ethernet hardware and IPv4 protocol addresses (RFC 826 "Packet format").
 *
 *    | htype (2) | ptype (2) | hlen (1) | plen (1) | op (2) |
 *    | sender MAC (6) | sender IP (4) | target MAC (6) | target IP (4) |
 *
 * MAC fields are reached through their offsets (`senderMac`, `targetMac`) and compared or copied
 * in place with ethernet.ts's `macEqual`/`copyMac`, so nothing allocates.
 */
import { ETHERTYPE_IPV4, copyMac } from './ethernet.js';
import { IPV4_ADDR_LEN, formatIpv4 } from './ipv4.js';
import { MAC_LEN, formatMac } from './mac.js';
import { get16, get32, put32 } from './bytes.js';

export const ARP_HTYPE_OFF = 0;
export const ARP_PTYPE_OFF = 2;
export const ARP_HLEN_OFF = 4;
export const ARP_PLEN_OFF = 5;
export const ARP_OP_OFF = 6;
export const ARP_SHA_OFF = 8;
export const ARP_SPA_OFF = ARP_SHA_OFF + MAC_LEN;
export const ARP_THA_OFF = ARP_SPA_OFF + IPV4_ADDR_LEN;
export const ARP_TPA_OFF = ARP_THA_OFF + MAC_LEN;
/** Length of an Ethernet/IPv4 ARP packet: 28. */
export const ARP_IPV4_LEN = ARP_TPA_OFF + IPV4_ADDR_LEN;

/** Hardware type Ethernet (RFC 826; IANA "Hardware Types"). */
export const ARP_HTYPE_ETHERNET = 1;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;

export function op(buf: Uint8Array, off: number): number { return get16(buf, off + ARP_OP_OFF); }
export function setOp(buf: Uint8Array, off: number, v: number): void {
  buf[off + ARP_OP_OFF] = v >>> 8;
  buf[off + ARP_OP_OFF + 1] = v;
}
/** Offset in buf of the sender hardware address (for macEqual/copyMac/formatMac). */
export function senderMac(_buf: Uint8Array, off: number): number { return off + ARP_SHA_OFF; }
export function setSenderMac(buf: Uint8Array, off: number, mac: Uint8Array, macOff = 0): void {
  copyMac(buf, off + ARP_SHA_OFF, mac, macOff);
}
export function senderIp(buf: Uint8Array, off: number): number { return get32(buf, off + ARP_SPA_OFF); }
export function setSenderIp(buf: Uint8Array, off: number, v: number): void { put32(buf, off + ARP_SPA_OFF, v); }
/** Offset in buf of the target hardware address (for macEqual/copyMac/formatMac). */
export function targetMac(_buf: Uint8Array, off: number): number { return off + ARP_THA_OFF; }
export function setTargetMac(buf: Uint8Array, off: number, mac: Uint8Array, macOff = 0): void {
  copyMac(buf, off + ARP_THA_OFF, mac, macOff);
}
export function targetIp(buf: Uint8Array, off: number): number { return get32(buf, off + ARP_TPA_OFF); }
export function setTargetIp(buf: Uint8Array, off: number, v: number): void { put32(buf, off + ARP_TPA_OFF, v); }

/**
 * Trust-boundary check: [off, off+len) lies inside buf, holds 28 bytes, and the fixed fields say
 * Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4). The op is not checked.
 */
export function check(buf: Uint8Array, off: number, len: number): boolean {
  return len >= ARP_IPV4_LEN && off >= 0 && off + len <= buf.length &&
    get16(buf, off + ARP_HTYPE_OFF) === ARP_HTYPE_ETHERNET &&
    get16(buf, off + ARP_PTYPE_OFF) === ETHERTYPE_IPV4 &&
    buf[off + ARP_HLEN_OFF] === MAC_LEN && buf[off + ARP_PLEN_OFF] === IPV4_ADDR_LEN;
}

/** Writes the fixed Ethernet/IPv4 fields (htype, ptype, hlen, plen). */
export function writeFixed(buf: Uint8Array, off: number): void {
  buf[off + ARP_HTYPE_OFF] = ARP_HTYPE_ETHERNET >>> 8;
  buf[off + ARP_HTYPE_OFF + 1] = ARP_HTYPE_ETHERNET;
  buf[off + ARP_PTYPE_OFF] = ETHERTYPE_IPV4 >>> 8;
  buf[off + ARP_PTYPE_OFF + 1] = ETHERTYPE_IPV4;
  buf[off + ARP_HLEN_OFF] = MAC_LEN;
  buf[off + ARP_PLEN_OFF] = IPV4_ADDR_LEN;
}

/**
 * Turns the request at buf[off] into its reply in place (RFC 826 "Packet Reception": swap sender
 * and target, put our addresses in the sender fields, set op to reply). The enclosing Ethernet
 * header (dst = requester, src = ours) is the caller's to rewrite.
 */
export function writeReply(buf: Uint8Array, off: number, ourMac: Uint8Array, ourIp: number): void {
  copyMac(buf, off + ARP_THA_OFF, buf, off + ARP_SHA_OFF);
  setTargetIp(buf, off, senderIp(buf, off));
  copyMac(buf, off + ARP_SHA_OFF, ourMac, 0);
  setSenderIp(buf, off, ourIp);
  setOp(buf, off, ARP_OP_REPLY);
}

/** A parsed Ethernet/IPv4 ARP packet for control code, tests and printing. */
export class ArpRepr {
  constructor(
    public op: number,
    public senderMac: Uint8Array,
    public senderIp: number,
    public targetMac: Uint8Array,
    public targetIp: number,
  ) {}

  /** Copies the fields out of a packet that passes `check`; null otherwise. */
  static parse(buf: Uint8Array, off: number, len = buf.length - off): ArpRepr | null {
    if (!check(buf, off, len)) return null;
    return new ArpRepr(op(buf, off), buf.slice(off + ARP_SHA_OFF, off + ARP_SHA_OFF + MAC_LEN), senderIp(buf, off),
      buf.slice(off + ARP_THA_OFF, off + ARP_THA_OFF + MAC_LEN), targetIp(buf, off));
  }

  bufferLen(): number {
    return ARP_IPV4_LEN;
  }

  emit(buf: Uint8Array, off: number): void {
    writeFixed(buf, off);
    setOp(buf, off, this.op);
    setSenderMac(buf, off, this.senderMac);
    setSenderIp(buf, off, this.senderIp);
    setTargetMac(buf, off, this.targetMac);
    setTargetIp(buf, off, this.targetIp);
  }

  format(): string {
    const o = this.op === ARP_OP_REQUEST ? 'request' : this.op === ARP_OP_REPLY ? 'reply'
      : `0x${this.op.toString(16).padStart(4, '0')}`;
    return `ARP op=${o} sender=${formatMac(this.senderMac)}/${formatIpv4(this.senderIp)}` +
      ` target=${formatMac(this.targetMac)}/${formatIpv4(this.targetIp)}`;
  }
}
