/**
 * Egress with offloads: the TUN device is opened with IFF_VNET_HDR and TSO, so one read can return
 * a TCP super-packet of up to 64 KB. It is cut into MSS-sized segments, each made a complete inner
 * packet (IPv4 total length, ID + i, header checksum; TCP sequence + i × MSS, FIN/PSH kept on the
 * last segment only, CWR on the first only; a full L4 checksum), prefixed by VXLAN + inner
 * Ethernet, and laid out back to back so one UDP_SEGMENT send carries up to 64 of them. Packets
 * the kernel left with a partial checksum (NEEDS_CSUM) are completed: tulle never puts an
 * unfinished inner checksum on the wire. UDP super-packets (UDP_L4 GSO: a pod's UDP_SEGMENT send)
 * are cut the same way into gso_size datagrams, each with its own IPv4 total length, ID + i and
 * header checksum, its own UDP length and a complete UDP checksum. A gso_size whose segment would
 * not fit one datagram of the underlay path is a header that lies, and is dropped.
 *
 * Single packets are batched the same way: with UDP_SEGMENT, each is copied behind the previous
 * one in the segment area, and consecutive packets to the same peer out of the same socket (the
 * outer 5-tuple is then the same) share one message while none is longer than the first, up to
 * 64 datagrams. The kernel sends them as one super-datagram that a receiver with UDP_GRO takes in
 * one piece (a kernel VXLAN peer's socket cuts it back first), so a flood of small packets costs
 * the underlay one send per run instead of one per packet. A packet that can share a message
 * with nothing (the only one of its read, as a ping's is, or the last of a read when it cannot join
 * the run before it) is sent from its slot as it is, without the copy and without UDP_SEGMENT.
 *
 * Layout of the worker's egress memory: TUN slots first (slot i: 12 bytes spare, the 10-byte
 * virtio-net header, then the packet, so a packet sent whole gets its 22 bytes of VXLAN + Ethernet
 * in place of the spare bytes and the consumed virtio-net header), then the segment area.
 */
import { C } from './counters.js';
import type { DataplaneContext } from './context.js';
import type { SendBatch } from './batch.js';
import type { ChecksumJobs } from './csum-jobs.js';
import { ENCAP_HEADROOM } from './encap.js';
import { flowHashV4 } from './flowhash.js';
import { ETH_SRC_OFF, ETH_TYPE_OFF, ETHERTYPE_IPV4 } from '../wire/ethernet.js';
import {
  IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HEADER_LEN, dst as ipv4Dst, ihl as ipv4Ihl, protocol,
} from '../wire/ipv4.js';
import { UDP_HEADER_LEN } from '../wire/udp.js';
import { TCP_MIN_HEADER_LEN, headerLen as tcpHeaderLen } from '../wire/tcp.js';
import {
  VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_UDP_L4, VNET_HDR_LEN, csumOffset, csumStart, gsoSize,
  gsoType, vnetFlags,
} from '../wire/vnet.js';
import { VXLAN_HEADER_LEN, writeHeader } from '../wire/vxlan.js';

/** Where a TUN read lands in its slot: the virtio-net header ends where the inner packet must start. */
export const VNET_READ_HEADROOM = ENCAP_HEADROOM - VNET_HDR_LEN;
/** UDP_SEGMENT limits: 64 segments (UDP_MAX_SEGMENTS) and one IPv4 datagram's worth of payload. */
export const GSO_MAX_SEGMENTS = 64;
export const GSO_MAX_BYTES = 65507;

/**
 * How many datagrams carrying an inner packet of `packetLen` bytes one UDP_SEGMENT message holds
 * (each is VXLAN + Ethernet + the packet), at least 1: 44 for full-size packets at an MTU of 1450.
 * A TCP super-packet of at most this many segments leaves in one message, and arrives as one
 * UDP_GRO receive and one TUN write; one segment more takes a second of each. segmentBatch cuts
 * messages by it, and the agent caps pods' super-packets at it (gso_max_segs on the pod's
 * interface).
 */
export function segmentsPerMessage(packetLen: number): number {
  return Math.max(1, Math.min(GSO_MAX_SEGMENTS, Math.floor(GSO_MAX_BYTES / (ENCAP_HEADROOM + packetLen))));
}

/** What the segmenter needs besides the packets. */
export interface SegmentArea {
  /** The worker's egress memory (TUN slots and segment area). */
  mem: Uint8Array;
  tunSlot: number;
  segStart: number;
  segEnd: number;
  /** UDP_SEGMENT usable: segments of one packet share a message. */
  gso: boolean;
  /**
   * The largest datagram (UDP payload) the underlay path takes. A single packet whose datagram is
   * larger is sent on its own, never as the first of a run: the kernel refuses a UDP_SEGMENT
   * message whose segment size does not fit the path, and the packets joined behind it with it.
   */
  maxDatagram: number;
  /** The segmentation kernels: `tcpSegment` and `udpSegment` from the addon, or their TypeScript references (same contracts). */
  cut: TcpSegmenter;
  cutUdp: UdpSegmenter;
}

export type TcpSegmenter = (
  mem: Uint8Array, ip: number, ihl: number, thl: number, payload: number, mss: number, out: number, prefixLen: number,
) => number;

export type UdpSegmenter = (mem: Uint8Array, ip: number, ihl: number, payload: number, mss: number, out: number, prefixLen: number) => number;

/** Writes VXLAN + inner Ethernet (to the peer in `slot`) at mem[h .. h + 22). */
function writeOuter(ctx: DataplaneContext, slot: number, mem: Uint8Array, h: number): void {
  writeHeader(mem, h, ctx.vni);
  const eth = h + VXLAN_HEADER_LEN;
  ctx.table.copyMac(slot, mem, eth);
  const mac = ctx.vtepMAC;
  for (let j = 0; j < 6; j++) mem[eth + ETH_SRC_OFF + j] = mac[j];
  mem[eth + ETH_TYPE_OFF] = ETHERTYPE_IPV4 >>> 8;
  mem[eth + ETH_TYPE_OFF + 1] = ETHERTYPE_IPV4 & 0xff;
}

/**
 * Turns TUN reads from..n-1 (lens include the virtio-net header) into `out` messages, starting
 * `out` afresh. TCP and UDP super-packets are cut by `area.cut` and `area.cutUdp` with complete
 * checksums; each single packet the kernel left with a partial checksum gets a job in `jobs` (the
 * caller runs and stores them, then sends). Stops early when the next packet no longer fits `out`, the segment area or `jobs`, and
 * returns the index of the first packet not handled (n when all were): the caller sends what
 * there is and calls again from there. Received packets are counted by the caller.
 */
export function segmentBatch(
  ctx: DataplaneContext,
  half: number,
  area: SegmentArea,
  lens: Int32Array,
  from: number,
  n: number,
  out: SendBatch,
  jobs: ChecksumJobs,
): number {
  const c = ctx.counters;
  const mem = area.mem;
  let k = 0;
  let w = area.segStart;
  // The message single datagrams may still join (-1: none) and how many it holds.
  let run = -1;
  let runSegs = 0;
  jobs.reset();
  let i = from;
  for (; i < n; i++) {
    const base = i * area.tunSlot;
    const vh = base + VNET_READ_HEADROOM;
    const ip = base + ENCAP_HEADROOM;
    const len = lens[i] - VNET_HDR_LEN;
    if (lens[i] >= area.tunSlot - VNET_READ_HEADROOM) {
      c[C.tun_rx_drop_oversize]++;
      continue;
    }
    if (len < IPV4_MIN_HEADER_LEN || mem[ip] >> 4 !== 4) {
      c[C.tun_rx_drop_not_ipv4]++;
      continue;
    }
    const slot = ctx.table.lookup(half, ipv4Dst(mem, ip));
    if (slot < 0) {
      c[C.tun_rx_drop_no_peer]++;
      continue;
    }
    const vflags = vnetFlags(mem, vh);
    const gtype = gsoType(mem, vh) & ~VNET_GSO_ECN;
    const mss = gsoSize(mem, vh);
    const cs = csumStart(mem, vh);
    const co = csumOffset(mem, vh);
    const sock = flowHashV4(mem, ip, len) % ctx.flowSockets;
    const vtep = ctx.table.vtepIP(slot);
    const ihl = ipv4Ihl(mem, ip);
    const proto = protocol(mem, ip);

    if (gtype === VNET_GSO_NONE) {
      if (k === out.capacity || jobs.count === jobs.capacity) break; // send, then resume here
      if ((vflags & VNET_F_NEEDS_CSUM) !== 0 && (cs < ihl || cs + co + 2 > len)) {
        c[C.tun_rx_drop_bad_offload]++;
        continue;
      }
      const dlen = len + ENCAP_HEADROOM;
      let h = base;
      const fits = area.gso && dlen <= area.maxDatagram && w + dlen <= area.segEnd;
      // It joins the open run's message when both go to the same peer from the same socket and
      // this one is no longer than the run's first.
      const joined = fits && run >= 0 && out.offs[run] + out.lens[run] === w && (out.dstIPs[run] | 0) === vtep && out.sockIdx[run] === sock &&
        dlen <= out.segSizes[run] && runSegs < GSO_MAX_SEGMENTS && out.lens[run] + dlen <= GSO_MAX_BYTES;
      if (fits && (joined || i + 1 < n)) {
        // Copied behind the previous datagram, where the next packet of the batch may join it.
        h = w;
        mem.copyWithin(h + ENCAP_HEADROOM, ip, ip + len);
        w += dlen;
      }
      if ((vflags & VNET_F_NEEDS_CSUM) !== 0) {
        // The field holds the pseudo-header sum: summing from csum_start completes it.
        const at = h + ENCAP_HEADROOM + cs;
        jobs.add(at, len - cs, 0, at + co, proto === IPPROTO_UDP);
      }
      writeOuter(ctx, slot, mem, h);
      if (joined) {
        out.lens[run] += dlen;
        runSegs++;
        // A shorter datagram can only be the last of a message.
        if (dlen < out.segSizes[run]) run = -1;
        continue;
      }
      run = h !== base ? k : -1;
      runSegs = 1;
      out.offs[k] = h;
      out.lens[k] = dlen;
      out.segSizes[k] = h !== base ? dlen : 0;
      out.dstIPs[k] = vtep;
      out.dstPorts[k] = ctx.port;
      out.sockIdx[k] = sock;
      k++;
      continue;
    }

    // A TCP or UDP super-packet. Header lengths come from the headers, not from hdr_len.
    const th = ip + ihl;
    const udp = gtype === VNET_GSO_UDP_L4;
    const thl = udp ? UDP_HEADER_LEN : tcpHeaderLen(mem, th);
    const hlen = ihl + thl;
    const payload = len - hlen;
    // Each segment must fit one datagram of the path: a larger gso_size is a header that lies.
    if ((udp ? proto !== IPPROTO_UDP : gtype !== VNET_GSO_TCPV4 || proto !== IPPROTO_TCP || thl < TCP_MIN_HEADER_LEN) ||
        mss === 0 || ihl < IPV4_MIN_HEADER_LEN || payload <= 0 || ENCAP_HEADROOM + hlen + mss > area.maxDatagram) {
      c[C.tun_rx_drop_bad_offload]++;
      continue;
    }
    const nseg = Math.ceil(payload / mss);
    const segFull = ENCAP_HEADROOM + hlen + mss;
    const perMsg = area.gso ? segmentsPerMessage(hlen + mss) : 1;
    const need = nseg * (ENCAP_HEADROOM + hlen) + payload;
    if (w + need > area.segEnd || k + Math.ceil(nseg / perMsg) > out.capacity) {
      if (k > 0) break; // send what there is, then resume with this packet
      // Does not fit even an empty batch (an MSS so small it needs more than MAX_BATCH messages).
      c[C.tun_rx_drop_batch_full]++;
      continue;
    }
    const first = w;
    writeOuter(ctx, slot, mem, first);
    const written = udp ? area.cutUdp(mem, ip, ihl, payload, mss, first, ENCAP_HEADROOM) : area.cut(mem, ip, ihl, thl, payload, mss, first, ENCAP_HEADROOM);
    if (written !== need) {
      c[C.tun_rx_drop_bad_offload]++;
      continue;
    }
    // Segments are back to back, all segFull bytes but the last; messages take perMsg of them.
    for (let j = 0; j < nseg; j += perMsg) {
      const last = Math.min(nseg, j + perMsg);
      out.offs[k] = first + j * segFull;
      out.lens[k] = last === nseg ? written - j * segFull : (last - j) * segFull;
      out.segSizes[k] = area.gso ? segFull : 0;
      out.dstIPs[k] = vtep;
      out.dstPorts[k] = ctx.port;
      out.sockIdx[k] = sock;
      k++;
    }
    w += written;
    run = -1;
    c[C.tun_rx_segments] += nseg;
  }
  out.count = k;
  return i;
}
