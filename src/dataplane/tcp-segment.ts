/**
 * TCP segmentation in TypeScript, with the contract of the addon's `tcpSegment` (see
 * src/io/native.ts). The data path uses the addon's copy, which copies and sums each payload in
 * one pass; this one is the reference the tests hold the addon to, and the alternative the
 * micro benchmark measures it against.
 */
import { pseudoHeaderSumV4, sum16 } from '../wire/checksum.js';
import { dst as ipv4Dst, id as ipv4Id, src as ipv4Src, IPPROTO_TCP } from '../wire/ipv4.js';
import { cutSegment } from './cut.js';
import { TCP_CWR, TCP_FIN, TCP_PSH, flags as tcpFlags, seq as tcpSeq, setChecksum, setFlags, setSeq } from '../wire/tcp.js';

export function tcpSegmentJs(
  mem: Uint8Array, ip: number, ihl: number, thl: number, payload: number, mss: number, out: number, prefixLen: number,
): number {
  const hlen = ihl + thl;
  const th = ip + ihl;
  const nseg = Math.ceil(payload / mss);
  const seq0 = tcpSeq(mem, th);
  const id0 = ipv4Id(mem, ip);
  const flags0 = tcpFlags(mem, th);
  const src = ipv4Src(mem, ip);
  const dst = ipv4Dst(mem, ip);
  let w = out;
  for (let j = 0; j < nseg; j++) {
    const plen = j === nseg - 1 ? payload - j * mss : mss;
    const sth = cutSegment(mem, ip, hlen, mss, j, plen, w, out, prefixLen, id0) + ihl;
    setSeq(mem, sth, seq0 + j * mss);
    let f = flags0;
    if (j < nseg - 1) f &= ~(TCP_FIN | TCP_PSH);
    if (j > 0) f &= ~TCP_CWR;
    setFlags(mem, sth, f);
    setChecksum(mem, sth, 0);
    let s = sum16(mem, sth, thl + plen, pseudoHeaderSumV4(src, dst, IPPROTO_TCP, thl + plen));
    s = (s & 0xffff) + (s >>> 16);
    s = (s & 0xffff) + (s >>> 16);
    setChecksum(mem, sth, ~s & 0xffff);
    w += prefixLen + hlen + plen;
  }
  return w - out;
}
