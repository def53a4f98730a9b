/**
 * UDP segmentation in TypeScript, with the contract of the addon's `udpSegment` (see
 * src/io/native.ts): a pod's UDP_SEGMENT send, handed over by the TUN device as one UDP_L4
 * super-packet, cut into complete datagrams. The data path uses the addon's copy, which copies
 * and sums each payload in one pass; this one is the reference the tests hold the addon to, and
 * the alternative the micro benchmark measures it against.
 */
import { l4ChecksumV4 } from '../wire/checksum.js';
import { cutSegments } from './cut.js';
import { UDP_HEADER_LEN, setChecksum, setLength } from '../wire/udp.js';

export function udpSegmentJs(mem: Uint8Array, ip: number, ihl: number, payload: number, mss: number, out: number, prefixLen: number): number {
  return cutSegments(mem, ip, ihl + UDP_HEADER_LEN, payload, mss, out, prefixLen, (sip, _j, plen) => {
    setLength(mem, sip + ihl, UDP_HEADER_LEN + plen);
    // l4ChecksumV4 sends a zero sum as 0xffff, as RFC 768 asks.
    setChecksum(mem, sip + ihl, l4ChecksumV4(mem, sip));
  });
}
