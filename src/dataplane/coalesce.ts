/**
 * Ingress with offloads: inner packets decapsulated from one UDP_GRO receive are written to the TUN
 * device (IFF_VNET_HDR) with a virtio-net header, and consecutive TCP segments of one flow are
 * first joined into one super-packet, so the kernel takes one write instead of dozens. Consecutive
 * UDP datagrams of one flow (same addresses, ports, TOS, TTL, DF; none larger than the first; a
 * shorter one ends the run) are joined the same way into a UDP_L4 GSO packet, which the kernel
 * cuts back into the original datagrams on its way to the pod.
 *
 * Segments join only when the result is exactly what the sender's stack cut up: same addresses,
 * ports, ACK number, TCP header length and option bytes, TOS, TTL and DF; contiguous sequence
 * numbers; only ACK or ACK|PSH set; no segment larger than the first; a PSH or a short segment
 * ends the group; at most MAX_COALESCE segments and 64 KB. Each segment's checksum must be valid,
 * or unfinished: a sender with checksum offload (a kernel VXLAN node on veth) leaves the
 * pseudo-header sum in the field, which is recognised and passed on as partial (NEEDS_CSUM) rather
 * than failed. Joining moves payload bytes towards the head of the group within the receive slot
 * the datagrams arrived in (the write position never passes the read position), so no extra
 * buffer is needed; groups never span two receive slots.
 */
import { C } from './counters.js';
import type { DataplaneContext } from './context.js';
import type { WriteBatch } from './batch.js';
import type { ChecksumJobs } from './csum-jobs.js';
import { pseudoHeaderSumV4 } from '../wire/checksum.js';
import {
  IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HEADER_LEN, dst as ipv4Dst, headerChecksumValid, ihl as ipv4Ihl, isFragment,
  protocol, setTotalLength, src as ipv4Src, updateHeaderChecksum,
} from '../wire/ipv4.js';
import {
  TCP_ACK, TCP_CHECKSUM_OFF, TCP_PSH, check as checkTcp, checksum as tcpChecksum, flags as tcpFlags,
  headerLen as tcpHeaderLen, seq as tcpSeq, setChecksum, setFlags,
} from '../wire/tcp.js';
import { UDP_CHECKSUM_OFF, UDP_HEADER_LEN } from '../wire/udp.js';
import { VNET_GSO_TCPV4, VNET_GSO_UDP_L4, VNET_HDR_LEN, writeGso, writeNone, writePartial } from '../wire/vnet.js';

export const MAX_COALESCE = 64;
const MAX_IPV4_LEN = 0xffff;

const CSUM_OTHER = 0;
const CSUM_PARTIAL = 1;
const CSUM_VERIFY = 2;
/** A TCP super-packet that arrived whole: written as GSO with a partial checksum. */
const SUPER = 3;
/** Larger than the MTU but not a TCP super-packet: dropped. */
const DROP = 4;
/** A whole TCP super-packet whose complete checksum must verify before it is passed on. */
const SUPER_VERIFY = 5;

/** What a packet may join: a TCP segment run, or a UDP datagram run (written as UDP_L4 GSO). */
const CAND_TCP = 1;
const CAND_UDP = 2;

function fold(s: number): number {
  s = (s & 0xffff) + (s >>> 16);
  return (s & 0xffff) + (s >>> 16);
}

/** Per-packet scratch of one batch, allocated once per worker. */
export class CoalesceScratch {
  readonly state: Uint8Array;
  readonly job: Int32Array;
  readonly candidate: Uint8Array;
  constructor(readonly capacity: number) {
    this.state = new Uint8Array(capacity);
    this.job = new Int32Array(capacity);
    this.candidate = new Uint8Array(capacity);
  }
}

function same(mem: Uint8Array, a: number, b: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (mem[a + i] !== mem[b + i]) return false;
  return true;
}

/**
 * Coalesces the inner IPv4 packets in `tun` (IP offsets and lengths in `mem`, each with at least
 * 10 bytes of its consumed Ethernet header in front) into `out` entries that include the
 * virtio-net header. `slot` is the receive-slot size (groups stay inside one). Returns out.count.
 */
export function coalesceBatch(
  ctx: DataplaneContext,
  mem: Uint8Array,
  slot: number,
  tun: WriteBatch,
  out: WriteBatch,
  jobs: ChecksumJobs,
  scratch: CoalesceScratch,
  joinUdp: boolean,
): number {
  const c = ctx.counters;
  const n = tun.count;
  jobs.reset();
  // Pass 1: classify, and queue checksum verification for TCP segments that look complete.
  for (let p = 0; p < n; p++) {
    const ip = tun.offs[p];
    const len = tun.lens[p];
    const ihl = ipv4Ihl(mem, ip);
    const proto = protocol(mem, ip);
    scratch.state[p] = CSUM_OTHER;
    scratch.candidate[p] = 0;
    const l4 = ip + ihl;
    const l4len = len - ihl;
    if (tun.gsoSizes[p] !== 0) {
      const ok = proto === IPPROTO_TCP && !isFragment(mem, ip) && headerChecksumValid(mem, ip) &&
        checkTcp(mem, l4, l4len) && l4len > tcpHeaderLen(mem, l4);
      scratch.state[p] = ok ? SUPER : DROP;
      if (!ok) continue;
      // Passed on with NEEDS_CSUM, the pod's kernel will not check it: a complete checksum is
      // verified here first; an unfinished one (the pseudo-header sum) is the sender's offload.
      const ps = fold(pseudoHeaderSumV4(ipv4Src(mem, ip), ipv4Dst(mem, ip), IPPROTO_TCP, l4len));
      if (tcpChecksum(mem, l4) !== ps) {
        const j = jobs.add(l4, l4len, ps, -1, false);
        if (j < 0) {
          scratch.state[p] = DROP;
          continue;
        }
        scratch.state[p] = SUPER_VERIFY;
        scratch.job[p] = j;
      }
      continue;
    }
    if (isFragment(mem, ip)) continue;
    // Only packets that share their receive slot (one UDP_GRO message) with a neighbour can join
    // anything; a packet alone is written as it came and the kernel verifies its checksum.
    const slotNo = (ip / slot) | 0;
    const shared = (p > 0 && ((tun.offs[p - 1] / slot) | 0) === slotNo) || (p + 1 < n && ((tun.offs[p + 1] / slot) | 0) === slotNo);
    if (proto === IPPROTO_TCP && checkTcp(mem, l4, l4len)) {
      const ps = fold(pseudoHeaderSumV4(ipv4Src(mem, ip), ipv4Dst(mem, ip), IPPROTO_TCP, l4len));
      const partial = tcpChecksum(mem, l4) === ps;
      if (partial) scratch.state[p] = CSUM_PARTIAL;
      const f = tcpFlags(mem, l4);
      if (!shared || ihl !== IPV4_MIN_HEADER_LEN || (f !== TCP_ACK && f !== (TCP_ACK | TCP_PSH)) || l4len <= tcpHeaderLen(mem, l4) ||
          !headerChecksumValid(mem, ip)) continue;
      if (!partial) {
        const j = jobs.add(l4, l4len, ps, -1, false);
        if (j < 0) continue;
        scratch.state[p] = CSUM_VERIFY;
        scratch.job[p] = j;
      }
      scratch.candidate[p] = CAND_TCP;
    } else if (proto === IPPROTO_UDP && l4len >= UDP_HEADER_LEN) {
      const field = (mem[l4 + UDP_CHECKSUM_OFF] << 8) | mem[l4 + UDP_CHECKSUM_OFF + 1];
      const ps = fold(pseudoHeaderSumV4(ipv4Src(mem, ip), ipv4Dst(mem, ip), IPPROTO_UDP, l4len));
      if (field === ps) scratch.state[p] = CSUM_PARTIAL;
      // An empty datagram is finished like any other but joins nothing.
      if (l4len === UDP_HEADER_LEN || !joinUdp || !shared || ihl !== IPV4_MIN_HEADER_LEN || ((mem[l4 + 4] << 8) | mem[l4 + 5]) !== l4len ||
          !headerChecksumValid(mem, ip)) continue;
      if (field !== ps && field !== 0) {
        const j = jobs.add(l4, l4len, ps, -1, false);
        if (j < 0) continue;
        scratch.state[p] = CSUM_VERIFY;
        scratch.job[p] = j;
      }
      // A zero checksum means none was sent (RFC 768): joined, the kernel computes one per segment.
      scratch.candidate[p] = CAND_UDP;
    }
  }
  jobs.run(mem);

  // Pass 2: group and emit.
  let k = 0;
  let g = -1; // head packet of the open group
  let gOff = 0;
  let gLen = 0;
  let gCount = 0;
  let gMss = 0;
  let gNext = 0;
  let gThl = 0;
  let gSlot = -1;
  let gOpen = false;
  let gKind = 0;

  for (let p = 0; p < n; p++) {
    const ip = tun.offs[p];
    const len = tun.lens[p];
    const st = scratch.state[p];
    if (st === SUPER || st === SUPER_VERIFY || st === DROP) {
      if (g >= 0) k = emitGroup(ctx, mem, out, k, gOff, gLen, gCount, gMss, gThl, scratch.state[g]);
      g = -1;
      if (st === DROP) {
        c[C.rx_drop_oversize]++;
        continue;
      }
      if (st === SUPER_VERIFY && jobs.total(scratch.job[p]) !== 0xffff) {
        c[C.rx_inner_csum_bad]++;
        c[C.rx_drop_bad_inner_checksum]++;
        continue;
      }
      const ihl = ipv4Ihl(mem, ip);
      const l4len = len - ihl;
      setChecksum(mem, ip + ihl, fold(pseudoHeaderSumV4(ipv4Src(mem, ip), ipv4Dst(mem, ip), IPPROTO_TCP, l4len)));
      const hlen = ihl + tcpHeaderLen(mem, ip + ihl);
      // Segments no larger than the overlay MTU when the sender's MSS is not known.
      const mss = tun.gsoSizes[p] > 0 ? tun.gsoSizes[p] : ctx.mtu - hlen;
      writeGso(mem, ip - VNET_HDR_LEN, VNET_GSO_TCPV4, hlen, mss, ihl, TCP_CHECKSUM_OFF);
      out.offs[k] = ip - VNET_HDR_LEN;
      out.lens[k] = len + VNET_HDR_LEN;
      k++;
      c[C.tun_tx_super_packets]++;
      c[C.rx_inner_super_packets]++;
      continue;
    }
    if (st === CSUM_PARTIAL) c[C.rx_inner_csum_partial]++;
    let ok = st !== CSUM_VERIFY || jobs.total(scratch.job[p]) === 0xffff;
    if (!ok) c[C.rx_inner_csum_bad]++;
    const kind = ok ? scratch.candidate[p] : 0;
    ok = kind !== 0;
    if (kind === CAND_UDP && g >= 0 && gOpen && gKind === CAND_UDP && ((ip / slot) | 0) === gSlot && gCount < MAX_COALESCE) {
      const plen = len - IPV4_MIN_HEADER_LEN - UDP_HEADER_LEN;
      if (
        plen <= gMss && gLen + plen <= MAX_IPV4_LEN &&
        same(mem, ip + 12, gOff + 12, 12) && // addresses, ports
        mem[ip + 1] === mem[gOff + 1] && mem[ip + 8] === mem[gOff + 8] && // TOS, TTL
        (mem[ip + 6] & 0x40) === (mem[gOff + 6] & 0x40) // DF
      ) {
        mem.copyWithin(gOff + gLen, ip + IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN, ip + len);
        gLen += plen;
        gCount++;
        if (plen < gMss) gOpen = false;
        continue;
      }
    }
    if (kind === CAND_TCP && g >= 0 && gOpen && gKind === CAND_TCP && ((ip / slot) | 0) === gSlot && gCount < MAX_COALESCE) {
      const th = ip + IPV4_MIN_HEADER_LEN;
      const gth = gOff + IPV4_MIN_HEADER_LEN;
      const thl = tcpHeaderLen(mem, th);
      const plen = len - IPV4_MIN_HEADER_LEN - thl;
      if (
        thl === gThl && plen <= gMss && gLen + plen <= MAX_IPV4_LEN && tcpSeq(mem, th) === gNext &&
        same(mem, ip + 12, gOff + 12, 8) && // addresses
        same(mem, th, gth, 4) && // ports
        same(mem, th + 8, gth + 8, 5) && // ACK number, data offset
        same(mem, th + 14, gth + 14, 2) && // window: a window update must reach the pod
        mem[ip + 1] === mem[gOff + 1] && mem[ip + 8] === mem[gOff + 8] && // TOS, TTL
        (mem[ip + 6] & 0x40) === (mem[gOff + 6] & 0x40) && // DF
        same(mem, th + 20, gth + 20, thl - 20) // options
      ) {
        // Read what is needed of q's header first: the move may overwrite it.
        const f = tcpFlags(mem, th);
        mem.copyWithin(gOff + gLen, ip + IPV4_MIN_HEADER_LEN + thl, ip + len);
        gLen += plen;
        gNext = (gNext + plen) >>> 0;
        gCount++;
        if ((f & TCP_PSH) !== 0) {
          setFlags(mem, gth, tcpFlags(mem, gth) | TCP_PSH);
          gOpen = false;
        }
        if (plen < gMss) gOpen = false;
        continue;
      }
    }
    if (g >= 0) k = emitGroup(ctx, mem, out, k, gOff, gLen, gCount, gMss, gThl, scratch.state[g]);
    g = p;
    gOff = ip;
    gLen = len;
    gCount = 1;
    gSlot = (ip / slot) | 0;
    gOpen = ok;
    gKind = kind;
    if (kind === CAND_UDP) {
      gThl = UDP_HEADER_LEN;
      gMss = len - IPV4_MIN_HEADER_LEN - UDP_HEADER_LEN;
    } else if (ok) {
      const th = ip + IPV4_MIN_HEADER_LEN;
      gThl = tcpHeaderLen(mem, th);
      gMss = len - IPV4_MIN_HEADER_LEN - gThl;
      gNext = (tcpSeq(mem, th) + gMss) >>> 0;
      if ((tcpFlags(mem, th) & TCP_PSH) !== 0) gOpen = false;
    }
  }
  if (g >= 0) k = emitGroup(ctx, mem, out, k, gOff, gLen, gCount, gMss, gThl, scratch.state[g]);
  out.count = k;
  return k;
}

/**
 * Writes the virtio-net header of a group (its head packet at gOff, gLen bytes after joining
 * gCount segments) and appends it to `out` at index k. Returns k + 1.
 */
function emitGroup(
  ctx: DataplaneContext, mem: Uint8Array, out: WriteBatch, k: number,
  gOff: number, gLen: number, gCount: number, gMss: number, gThl: number, headState: number,
): number {
  const c = ctx.counters;
  const at = gOff - VNET_HDR_LEN;
  if (gCount === 1) {
    const ihl = ipv4Ihl(mem, gOff);
    if (headState === CSUM_PARTIAL) {
      writePartial(mem, at, ihl, protocol(mem, gOff) === IPPROTO_UDP ? UDP_CHECKSUM_OFF : TCP_CHECKSUM_OFF);
    } else {
      writeNone(mem, at);
    }
  } else if (protocol(mem, gOff) === IPPROTO_UDP) {
    // Joined UDP datagrams: one UDP_L4 GSO packet the kernel cuts back into gMss-byte datagrams.
    setTotalLength(mem, gOff, gLen);
    updateHeaderChecksum(mem, gOff);
    const uh = gOff + IPV4_MIN_HEADER_LEN;
    const l4len = gLen - IPV4_MIN_HEADER_LEN;
    mem[uh + 4] = l4len >>> 8;
    mem[uh + 5] = l4len & 0xff;
    const ps = fold(pseudoHeaderSumV4(ipv4Src(mem, gOff), ipv4Dst(mem, gOff), IPPROTO_UDP, l4len));
    mem[uh + UDP_CHECKSUM_OFF] = ps >>> 8;
    mem[uh + UDP_CHECKSUM_OFF + 1] = ps & 0xff;
    writeGso(mem, at, VNET_GSO_UDP_L4, IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN, gMss, IPV4_MIN_HEADER_LEN, UDP_CHECKSUM_OFF);
    c[C.tun_tx_super_packets]++;
    c[C.tun_tx_coalesced_segments] += gCount;
  } else {
    setTotalLength(mem, gOff, gLen);
    updateHeaderChecksum(mem, gOff);
    const th = gOff + IPV4_MIN_HEADER_LEN;
    const l4len = gLen - IPV4_MIN_HEADER_LEN;
    setChecksum(mem, th, fold(pseudoHeaderSumV4(ipv4Src(mem, gOff), ipv4Dst(mem, gOff), IPPROTO_TCP, l4len)));
    writeGso(mem, at, VNET_GSO_TCPV4, IPV4_MIN_HEADER_LEN + gThl, gMss, IPV4_MIN_HEADER_LEN, TCP_CHECKSUM_OFF);
    c[C.tun_tx_super_packets]++;
    c[C.tun_tx_coalesced_segments] += gCount;
  }
  out.offs[k] = at;
  out.lens[k] = gLen + VNET_HDR_LEN;
  return k + 1;
}
