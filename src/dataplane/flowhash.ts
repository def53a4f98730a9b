/**
 * Inner-flow hash for the outer UDP source port (RFC 7348 section 5: "a hash
 * of fields from the inner packet"). Stable per flow so one flow never
 * reorders across sockets or receiver workers; spread across flows so the
 * receiver's SO_REUSEPORT group and any ECMP/RSS hash separate them.
 * Fragments and non-TCP/UDP packets hash on addresses and protocol only,
 * so every fragment of a datagram takes the same path.
 */
import { IPPROTO_TCP, IPPROTO_UDP, IPV4_DST_OFF, IPV4_PROTOCOL_OFF, IPV4_SRC_OFF, ihl, isFragment } from '../wire/ipv4.js';

// Every intermediate stays a signed 32-bit integer (`| 0`), so nothing is boxed per packet.
function read32(b: Uint8Array, o: number): number {
  return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
}

function mix(h: number, k: number): number {
  h ^= Math.imul(k, 0xcc9e2d51);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/**
 * 31-bit hash of the IPv4 packet at buf[off..off+len); `len` must cover the header. 31 bits keep
 * the result a small integer in V8, so it is never boxed on the per-packet path.
 */
export function flowHashV4(buf: Uint8Array, off: number, len: number): number {
  const proto = buf[off + IPV4_PROTOCOL_OFF];
  let h = mix(0x2f6c7565, read32(buf, off + IPV4_SRC_OFF));
  h = mix(h, read32(buf, off + IPV4_DST_OFF));
  h = mix(h, proto);
  const l4 = off + ihl(buf, off);
  if ((proto === IPPROTO_TCP || proto === IPPROTO_UDP) && !isFragment(buf, off) && l4 + 4 <= off + len) {
    h = mix(h, read32(buf, l4));
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h & 0x7fffffff;
}
