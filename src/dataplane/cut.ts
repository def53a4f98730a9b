/**
 * What the TypeScript references of the addon's segmentation kernels (tcp-segment.ts,
 * udp-segment.ts) do alike for each segment j of a super-packet at mem[ip]: the prefix copied from
 * the first segment's place `out` (j > 0), the IPv4 and transport headers, the j-th payload chunk,
 * then the IPv4 total length, ID + j and header checksum. Returns where the segment's IPv4 header
 * is (w + prefixLen).
 */
import { setId, setTotalLength, updateHeaderChecksum } from '../wire/ipv4.js';

export function cutSegment(mem: Uint8Array, ip: number, hlen: number, mss: number, j: number, plen: number, w: number, out: number, prefixLen: number, id0: number): number {
  if (j > 0) mem.copyWithin(w, out, out + prefixLen);
  const sip = w + prefixLen;
  mem.copyWithin(sip, ip, ip + hlen);
  mem.copyWithin(sip + hlen, ip + hlen + j * mss, ip + hlen + j * mss + plen);
  setTotalLength(mem, sip, hlen + plen);
  setId(mem, sip, (id0 + j) & 0xffff);
  updateHeaderChecksum(mem, sip);
  return sip;
}
