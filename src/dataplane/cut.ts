/**
 * What the TypeScript references of the addon's segmentation kernels (tcp-segment.ts,
 * udp-segment.ts) do alike: cut the super-packet at mem[ip] (headers of hlen bytes, `payload`
 * bytes after them) into segments of at most `mss` payload bytes written back to back at
 * mem[out], each behind a copy of the `prefixLen` bytes already at mem[out], with its own IPv4
 * total length, ID + j and header checksum. `fix` then writes segment j's transport header
 * fields (its IPv4 header at `sip`, `plen` payload bytes, `last` for the final segment).
 * Returns the bytes written.
 */
import { id as ipv4Id, setId, setTotalLength, updateHeaderChecksum } from '../wire/ipv4.js';

export type SegmentFix = (sip: number, j: number, plen: number, last: boolean) => void;

export function cutSegments(
  mem: Uint8Array, ip: number, hlen: number, payload: number, mss: number, out: number, prefixLen: number, fix: SegmentFix,
): number {
  const nseg = Math.ceil(payload / mss);
  const id0 = ipv4Id(mem, ip);
  let w = out;
  for (let j = 0; j < nseg; j++) {
    const plen = j === nseg - 1 ? payload - j * mss : mss;
    if (j > 0) mem.copyWithin(w, out, out + prefixLen);
    const sip = w + prefixLen;
    mem.copyWithin(sip, ip, ip + hlen);
    mem.copyWithin(sip + hlen, ip + hlen + j * mss, ip + hlen + j * mss + plen);
    setTotalLength(mem, sip, hlen + plen);
    setId(mem, sip, (id0 + j) & 0xffff);
    updateHeaderChecksum(mem, sip);
    fix(sip, j, plen, j === nseg - 1);
    w = sip + hlen + plen;
  }
  return w - out;
}
