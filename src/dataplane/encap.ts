/**
 * Egress: IPv4 packets read from the TUN device become VXLAN datagrams.
 *
 * Each packet was read `ENCAP_HEADROOM` bytes into its slot, so the VXLAN
 * header and the inner Ethernet header are written in place in front of it
 * and the datagram is sent straight from the slab: no copy, no allocation.
 */
import { C } from './counters.js';
import type { DataplaneContext } from './context.js';
import type { SendBatch } from './batch.js';
import { flowHashV4 } from './flowhash.js';
import { ETH_HEADER_LEN, ETH_SRC_OFF, ETHERTYPE_IPV4, setEtherType } from '../wire/ethernet.js';
import { IPV4_MIN_HEADER_LEN, dst as ipv4Dst } from '../wire/ipv4.js';
import { VXLAN_HEADER_LEN, writeHeader } from '../wire/vxlan.js';

/** Bytes in front of each inner packet: VXLAN header then inner Ethernet. */
export const ENCAP_HEADROOM = VXLAN_HEADER_LEN + ETH_HEADER_LEN;

/**
 * Encapsulates packets 0..n-1 of a TUN batch (packet i at
 * `i * slotSize + ENCAP_HEADROOM`, `lens[i]` bytes) into `out`, which is
 * reset first. `half` comes from `table.beginRead`. Returns `out.count`.
 */
export function encapBatch(
  ctx: DataplaneContext,
  half: number,
  slab: Uint8Array,
  slotSize: number,
  lens: Int32Array,
  n: number,
  out: SendBatch,
): number {
  const c = ctx.counters;
  const table = ctx.table;
  const mac = ctx.vtepMAC;
  let k = 0;
  for (let i = 0; i < n; i++) {
    const len = lens[i];
    const ip = i * slotSize + ENCAP_HEADROOM;
    c[C.tun_rx_packets]++;
    c[C.tun_rx_bytes] += len;
    if (len >= slotSize - ENCAP_HEADROOM) {
      // As long as its slot or longer: cut by the read (the device MTU was raised under us).
      c[C.tun_rx_drop_oversize]++;
      continue;
    }
    if (len < IPV4_MIN_HEADER_LEN || slab[ip] >> 4 !== 4) {
      c[C.tun_rx_drop_not_ipv4]++;
      continue;
    }
    const slot = table.lookup(half, ipv4Dst(slab, ip));
    if (slot < 0) {
      c[C.tun_rx_drop_no_peer]++;
      continue;
    }
    const h = ip - ENCAP_HEADROOM;
    writeHeader(slab, h, ctx.vni);
    const eth = h + VXLAN_HEADER_LEN;
    table.copyMac(slot, slab, eth);
    for (let j = 0; j < 6; j++) slab[eth + ETH_SRC_OFF + j] = mac[j];
    setEtherType(slab, eth, ETHERTYPE_IPV4);
    out.offs[k] = h;
    out.lens[k] = len + ENCAP_HEADROOM;
    out.dstIPs[k] = table.vtepIP(slot);
    out.dstPorts[k] = ctx.port;
    out.sockIdx[k] = flowHashV4(slab, ip, len) % ctx.flowSockets;
    k++;
  }
  out.count = k;
  return k;
}
