/**
 * Ingress: VXLAN datagrams received on the underlay socket.
 *
 * Validation order follows the headers outward-in, each check once, and each
 * failure is a counted drop, never an exception:
 *   length / flags (only I set, as Linux requires: other bits announce
 *   extensions such as GBP that we do not implement) / reserved bits / VNI /
 *   inner destination MAC (ours or broadcast) / inner EtherType, then
 *   - IPv4: header sane, not larger than the overlay MTU, not truncated →
 *     written to the TUN device without its Ethernet header (trailing
 *     Ethernet padding trimmed to the IPv4 total length);
 *   - ARP request for our overlay address → answered in place, sent back to
 *     the requesting VTEP.
 *
 * A datagram may also carry a whole TCP super-packet: between network
 * namespaces a kernel VXLAN sender's GSO packet crosses veth unsegmented and
 * the receiving socket hands it over as one datagram, without a UDP_GRO
 * segment size (the kernel reports one only for trains of UDP datagrams it
 * joined itself). The caller marks such datagrams in `innerGso`;
 * they skip the MTU check and go to the TUN device as super-packets.
 *
 * A kernel VXLAN sender whose underlay left checksums to offload (veth, by default) sends
 * inner TCP/UDP checksums unfinished: the field holds the pseudo-header sum. With a virtio-net
 * header they are passed on marked partial (coalesce.ts); without one, finishUnfinished
 * completes them, since the pod's kernel would drop them as corrupt.
 */
import { C } from './counters.js';
import type { ChecksumJobs } from './csum-jobs.js';
import { fold, pseudoHeaderSumV4 } from '../wire/checksum.js';
import type { DataplaneContext } from './context.js';
import type { SendBatch, WriteBatch } from './batch.js';
import {
  ETH_DST_OFF, ETH_HEADER_LEN, ETH_SRC_OFF, ETHERTYPE_ARP, ETHERTYPE_IPV4, etherType, isBroadcastDst, macEqual,
} from '../wire/ethernet.js';
import {
  IPPROTO_TCP, IPPROTO_UDP, Ipv4Check, check as checkIpv4, dst as ipv4Dst, ihl as ipv4Ihl, isFragment, protocol, src as ipv4Src, totalLength,
} from '../wire/ipv4.js';
import { TCP_CHECKSUM_OFF, TCP_MIN_HEADER_LEN } from '../wire/tcp.js';
import { UDP_CHECKSUM_OFF, UDP_HEADER_LEN, UDP_LENGTH_OFF } from '../wire/udp.js';
import { ARP_IPV4_LEN, ARP_OP_REQUEST, check as checkArp, op as arpOp, targetIp, writeReply } from '../wire/arp.js';
import { VXLAN_HEADER_LEN, VxlanCheck, check as checkVxlan, vni } from '../wire/vxlan.js';

const INNER_OFF = VXLAN_HEADER_LEN + ETH_HEADER_LEN;

/**
 * Decapsulates datagrams 0..n-1 (datagram i at `offs[i]`, `lens[i]` bytes as
 * reported by the kernel, from `srcIPs[i]`; a length over `capacity` means
 * the kernel truncated it). IPv4 packets go to `tun`, ARP replies to
 * `replies` (both reset first). Returns `tun.count`.
 */
export function decapBatch(
  ctx: DataplaneContext,
  half: number,
  slab: Uint8Array,
  offs: Int32Array,
  lens: Int32Array,
  capacity: number,
  srcIPs: Uint32Array,
  n: number,
  tun: WriteBatch,
  replies: SendBatch,
  innerGso?: Int32Array,
): number {
  const c = ctx.counters;
  let k = 0;
  let r = 0;
  for (let i = 0; i < n; i++) {
    const len = lens[i];
    const off = offs[i];
    c[C.rx_datagrams]++;
    c[C.rx_bytes] += len;
    const gso = innerGso === undefined ? 0 : innerGso[i];
    if (len > capacity || (len - INNER_OFF > ctx.mtu && gso === 0)) {
      c[C.rx_drop_oversize]++;
      continue;
    }
    const v = checkVxlan(slab, off, len);
    if (v !== VxlanCheck.Ok || len < INNER_OFF) {
      if (v === VxlanCheck.BadFlags) c[C.rx_drop_bad_flags]++;
      else if (v === VxlanCheck.Reserved) c[C.rx_drop_reserved_bits]++;
      else c[C.rx_drop_short]++;
      continue;
    }
    if (vni(slab, off) !== ctx.vni) {
      c[C.rx_drop_bad_vni]++;
      continue;
    }
    const eth = off + VXLAN_HEADER_LEN;
    if (!macEqual(slab, eth + ETH_DST_OFF, ctx.vtepMAC, 0) && !isBroadcastDst(slab, eth)) {
      c[C.rx_drop_not_our_mac]++;
      continue;
    }
    if (!ctx.table.isKnownVtep(half, srcIPs[i])) c[C.rx_from_unknown_vtep]++;
    const inner = eth + ETH_HEADER_LEN;
    const innerLen = len - INNER_OFF;
    const type = etherType(slab, eth);
    if (type === ETHERTYPE_IPV4) {
      const chk = checkIpv4(slab, inner, innerLen);
      if (chk !== Ipv4Check.Ok) {
        if (chk === Ipv4Check.Truncated) c[C.rx_drop_truncated_inner]++;
        else c[C.rx_drop_bad_inner_ipv4]++;
        continue;
      }
      tun.offs[k] = inner;
      tun.lens[k] = totalLength(slab, inner);
      tun.gsoSizes[k] = gso;
      k++;
    } else if (type === ETHERTYPE_ARP) {
      if (!checkArp(slab, inner, innerLen)) {
        c[C.rx_drop_bad_arp]++;
        continue;
      }
      if (arpOp(slab, inner) !== ARP_OP_REQUEST || targetIp(slab, inner) !== ctx.overlayIP || r === replies.capacity) {
        c[C.rx_drop_arp_not_ours]++;
        continue;
      }
      writeReply(slab, inner, ctx.vtepMAC, ctx.overlayIP);
      // Inner Ethernet: back to the requester, from us.
      for (let j = 0; j < 6; j++) {
        slab[eth + ETH_DST_OFF + j] = slab[eth + ETH_SRC_OFF + j];
        slab[eth + ETH_SRC_OFF + j] = ctx.vtepMAC[j];
      }
      replies.offs[r] = off;
      replies.lens[r] = INNER_OFF + ARP_IPV4_LEN;
      replies.dstIPs[r] = srcIPs[i];
      replies.dstPorts[r] = ctx.port;
      replies.sockIdx[r] = 0;
      r++;
      c[C.rx_arp_replies]++;
    } else {
      c[C.rx_drop_unknown_ethertype]++;
    }
  }
  tun.count = k;
  replies.count = r;
  return k;
}

/**
 * Finishes the TCP and UDP checksums among the `tun` packets that arrived unfinished (the field
 * holds the folded pseudo-header sum; a UDP field of 0 means no checksum and stays), in one
 * native call: the sum over the segment with the field as it is, complemented, is the complete
 * checksum. A complete checksum that happens to equal the pseudo-header sum is rewritten with its
 * own value. Counts each under rx_inner_csum_partial. Returns how many were finished.
 */
export function finishUnfinished(ctx: DataplaneContext, slab: Uint8Array, tun: WriteBatch, jobs: ChecksumJobs): number {
  const c = ctx.counters;
  jobs.reset();
  for (let i = 0; i < tun.count; i++) {
    const ip = tun.offs[i];
    const proto = protocol(slab, ip);
    if ((proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) || isFragment(slab, ip)) continue;
    const ihl = ipv4Ihl(slab, ip);
    const l4 = ip + ihl;
    // UDP's checksum covers the UDP length, which the receiver trims the packet to.
    let l4len = tun.lens[i] - ihl;
    if (l4len < (proto === IPPROTO_TCP ? TCP_MIN_HEADER_LEN : UDP_HEADER_LEN)) continue;
    if (proto === IPPROTO_UDP) {
      const ulen = (slab[l4 + UDP_LENGTH_OFF] << 8) | slab[l4 + UDP_LENGTH_OFF + 1];
      if (ulen < UDP_HEADER_LEN || ulen > l4len) continue;
      l4len = ulen;
    }
    const field = l4 + (proto === IPPROTO_TCP ? TCP_CHECKSUM_OFF : UDP_CHECKSUM_OFF);
    const ps = fold(pseudoHeaderSumV4(ipv4Src(slab, ip), ipv4Dst(slab, ip), proto, l4len));
    if (ps === 0 || ((slab[field] << 8) | slab[field + 1]) !== ps) continue;
    if (jobs.add(l4, l4len, 0, field, proto === IPPROTO_UDP) < 0) break;
    c[C.rx_inner_csum_partial]++;
  }
  jobs.run(slab);
  jobs.store(slab);
  return jobs.count;
}
