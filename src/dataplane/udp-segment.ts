/**
 * UDP segmentation in TypeScript, with the contract of the addon's `udpSegment` (see
 * src/io/native.ts): a pod's UDP_SEGMENT send, handed over by the TUN device as one UDP_L4
 * super-packet, cut into complete datagrams. The data path uses the addon's copy, which copies
 * and sums each payload in one pass; this one is the reference the tests hold the addon to, and
 * the alternative the micro benchmark measures it against.
 */
import { pseudoHeaderSumV4, sum16 } from '../wire/checksum.js';
import { IPPROTO_UDP, dst as ipv4Dst, id as ipv4Id, src as ipv4Src } from '../wire/ipv4.js';
import { cutSegment } from './cut.js';
import { UDP_CHECKSUM_OFF, UDP_HEADER_LEN, setLength as setUdpLength } from '../wire/udp.js';

export function udpSegmentJs(mem: Uint8Array, ip: number, ihl: number, payload: number, mss: number, out: number, prefixLen: number): number {
  const hlen = ihl + UDP_HEADER_LEN;
  const nseg = Math.ceil(payload / mss);
  const id0 = ipv4Id(mem, ip);
  const src = ipv4Src(mem, ip);
  const dst = ipv4Dst(mem, ip);
  let w = out;
  for (let j = 0; j < nseg; j++) {
    const plen = j === nseg - 1 ? payload - j * mss : mss;
    const su = cutSegment(mem, ip, hlen, mss, j, plen, w, out, prefixLen, id0) + ihl;
    const ulen = UDP_HEADER_LEN + plen;
    setUdpLength(mem, su, ulen);
    mem[su + UDP_CHECKSUM_OFF] = 0;
    mem[su + UDP_CHECKSUM_OFF + 1] = 0;
    let s = sum16(mem, su, ulen, pseudoHeaderSumV4(src, dst, IPPROTO_UDP, ulen));
    s = (s & 0xffff) + (s >>> 16);
    s = (s & 0xffff) + (s >>> 16);
    // A sum of zero goes out as all ones: zero would say no checksum was computed (RFC 768).
    const c = ~s & 0xffff || 0xffff;
    mem[su + UDP_CHECKSUM_OFF] = c >>> 8;
    mem[su + UDP_CHECKSUM_OFF + 1] = c & 0xff;
    w += prefixLen + hlen + plen;
  }
  return w - out;
}
