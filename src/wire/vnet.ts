/**
 * The virtio-net header (include/uapi/linux/virtio_net.h) that precedes every packet read from or
 * written to a TUN device opened with IFF_VNET_HDR. Ten bytes, host byte order (TUN default;
 * little-endian on the machines tulle runs on):
 *
 *    | flags (1) | gso_type (1) | hdr_len (2) | gso_size (2) | csum_start (2) | csum_offset (2) |
 *
 * flags NEEDS_CSUM: the L4 checksum at csum_start + csum_offset holds only the pseudo-header sum
 * and the bytes from csum_start on still need summing (CHECKSUM_PARTIAL).
 * gso_type != NONE: the packet is a super-packet of gso_size-byte segments (TSO / GRO).
 * hdr_len from the kernel is a hint only (it can span the whole first packet on forwarded
 * traffic); tulle recomputes header lengths from the headers themselves.
 */
import { getLe16, putLe16 } from './bytes.js';

export const VNET_FLAGS_OFF = 0;
export const VNET_GSO_TYPE_OFF = 1;
export const VNET_HDR_LEN_OFF = 2;
export const VNET_GSO_SIZE_OFF = 4;
export const VNET_CSUM_START_OFF = 6;
export const VNET_CSUM_OFFSET_OFF = 8;
export const VNET_HDR_LEN = VNET_CSUM_OFFSET_OFF + 2;

export const VNET_F_NEEDS_CSUM = 1;
export const VNET_F_DATA_VALID = 2;
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_UDP = 3;
export const VNET_GSO_TCPV6 = 4;
export const VNET_GSO_UDP_L4 = 5;
export const VNET_GSO_ECN = 0x80;

export function vnetFlags(buf: Uint8Array, off: number): number { return buf[off + VNET_FLAGS_OFF]; }
export function gsoType(buf: Uint8Array, off: number): number { return buf[off + VNET_GSO_TYPE_OFF]; }
export function gsoSize(buf: Uint8Array, off: number): number { return getLe16(buf, off + VNET_GSO_SIZE_OFF); }
export function csumStart(buf: Uint8Array, off: number): number { return getLe16(buf, off + VNET_CSUM_START_OFF); }
export function csumOffset(buf: Uint8Array, off: number): number { return getLe16(buf, off + VNET_CSUM_OFFSET_OFF); }

/** An all-zero header: a complete packet, checksums to be verified by the kernel as usual. */
export function writeNone(buf: Uint8Array, off: number): void {
  for (let i = 0; i < VNET_HDR_LEN; i++) buf[off + i] = 0;
}

/** A header for a packet whose L4 checksum field holds the pseudo-header sum only. */
export function writePartial(buf: Uint8Array, off: number, csumStartAt: number, csumOffsetAt: number): void {
  buf[off + VNET_FLAGS_OFF] = VNET_F_NEEDS_CSUM;
  buf[off + VNET_GSO_TYPE_OFF] = VNET_GSO_NONE;
  putLe16(buf, off + VNET_HDR_LEN_OFF, 0);
  putLe16(buf, off + VNET_GSO_SIZE_OFF, 0);
  putLe16(buf, off + VNET_CSUM_START_OFF, csumStartAt);
  putLe16(buf, off + VNET_CSUM_OFFSET_OFF, csumOffsetAt);
}

/** A header for a coalesced super-packet (checksum partial, segments of `size` bytes). */
export function writeGso(
  buf: Uint8Array, off: number, type: number, hdrLen: number, size: number, csumStartAt: number, csumOffsetAt: number,
): void {
  buf[off + VNET_FLAGS_OFF] = VNET_F_NEEDS_CSUM;
  buf[off + VNET_GSO_TYPE_OFF] = type;
  putLe16(buf, off + VNET_HDR_LEN_OFF, hdrLen);
  putLe16(buf, off + VNET_GSO_SIZE_OFF, size);
  putLe16(buf, off + VNET_CSUM_START_OFF, csumStartAt);
  putLe16(buf, off + VNET_CSUM_OFFSET_OFF, csumOffsetAt);
}

export function formatVnet(buf: Uint8Array, off: number): string {
  return `vnet flags=0x${vnetFlags(buf, off).toString(16)} gso=${gsoType(buf, off)} size=${gsoSize(buf, off)} csum=${csumStart(buf, off)}+${csumOffset(buf, off)}`;
}
