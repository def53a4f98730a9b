/**
 * TCP segmentation in TypeScript, with the contract of the addon's `tcpSegment` (see
 * src/io/native.ts). The data path uses the addon's copy, which copies and sums each payload in
 * one pass; this one is the reference the tests hold the addon to, and the alternative the
 * micro benchmark measures it against.
 */
import { l4ChecksumV4 } from '../wire/checksum.js';
import { cutSegments } from './cut.js';
import { TCP_CWR, TCP_FIN, TCP_PSH, flags as tcpFlags, seq as tcpSeq, setChecksum, setFlags, setSeq } from '../wire/tcp.js';

export function tcpSegmentJs(
  mem: Uint8Array, ip: number, ihl: number, thl: number, payload: number, mss: number, out: number, prefixLen: number,
): number {
  const seq0 = tcpSeq(mem, ip + ihl);
  const flags0 = tcpFlags(mem, ip + ihl);
  return cutSegments(mem, ip, ihl + thl, payload, mss, out, prefixLen, (sip, j, _plen, last) => {
    const sth = sip + ihl;
    setSeq(mem, sth, seq0 + j * mss);
    let f = flags0;
    if (!last) f &= ~(TCP_FIN | TCP_PSH);
    if (j > 0) f &= ~TCP_CWR;
    setFlags(mem, sth, f);
    setChecksum(mem, sth, l4ChecksumV4(mem, sip));
  });
}
