/**
 * Synthetic traffic for the micro benchmarks: IPv4/UDP packets laid out in slabs the way the
 * workers lay them out (slot i at i * slotSize, inner packets ENCAP_HEADROOM into their slot).
 */
import { SendBatch } from '../src/dataplane/batch.js';
import { COUNTER_COUNT } from '../src/dataplane/counters.js';
import type { DataplaneContext } from '../src/dataplane/context.js';
import { ENCAP_HEADROOM, encapBatch } from '../src/dataplane/encap.js';
import { PeerTable, type PeerEntry } from '../src/dataplane/peers.js';
import { l4ChecksumV4 } from '../src/wire/checksum.js';
import { IPPROTO_UDP, Ipv4Repr, parseIpv4 } from '../src/wire/ipv4.js';
import { parseMac } from '../src/wire/mac.js';
import { UDP_HEADER_LEN, setChecksum, setDstPort, setLength, setSrcPort } from '../src/wire/udp.js';

export const SLOT_SIZE = 2048;
export const OVERLAY_MTU = 1450;
export const VNI = 1;
export const PORT = 8472;
const FLOW_SOCKETS = 8;
export const MAC_A = parseMac('02:aa:00:00:00:01');
export const MAC_B = parseMac('02:aa:00:00:00:02');
export const VTEP_A = parseIpv4('172.31.0.1');
export const VTEP_B = parseIpv4('172.31.0.2');

/** Writes an IPv4/UDP packet with `payload` pseudo-random bytes and correct checksums; returns its length. */
export function writeUdpPacket(buf: Uint8Array, off: number, src: number, dst: number, sport: number, payload: number): number {
  const ip = new Ipv4Repr(src, dst, IPPROTO_UDP, UDP_HEADER_LEN + payload);
  const l4 = off + ip.bufferLen();
  for (let i = 0; i < payload; i++) buf[l4 + UDP_HEADER_LEN + i] = (i * 131 + sport) & 0xff;
  setSrcPort(buf, l4, sport);
  setDstPort(buf, l4, 5201);
  setLength(buf, l4, UDP_HEADER_LEN + payload);
  setChecksum(buf, l4, 0);
  ip.emit(buf, off);
  setChecksum(buf, l4, l4ChecksumV4(buf, off));
  return ip.bufferLen() + UDP_HEADER_LEN + payload;
}

/** Our node (10.244.1.0/24) and its peer table: node k+2 owns 10.244.(k+2).0/24, k < peers. */
export async function dataplaneContext(peers: number, mac = MAC_A, subnet = '10.244.1.0', table?: PeerTable): Promise<DataplaneContext> {
  const t = table ?? (await peerTable(peers));
  return {
    table: t, vni: VNI, vtepMAC: mac, overlayIP: parseIpv4(subnet), mtu: OVERLAY_MTU, port: PORT, flowSockets: FLOW_SOCKETS,
    counters: new Float64Array(COUNTER_COUNT),
  };
}

/** Peer k owns 10.(244 + k>>8).(k+2 & 0xff).0/24 behind VTEP 172.31.x.y; k < n. */
export function peerEntries(n: number): PeerEntry[] {
  return Array.from({ length: n }, (_, k) => ({
    net: parseIpv4(`10.${244 + ((k + 2) >> 8)}.${(k + 2) & 0xff}.0`), prefix: 24,
    vtepIP: (VTEP_B + k) >>> 0, vtepMAC: parseMac(`02:bb:00:00:${((k >> 8) & 0xff).toString(16).padStart(2, '0')}:${(k & 0xff).toString(16).padStart(2, '0')}`),
  }));
}

export async function peerTable(n: number): Promise<PeerTable> {
  const t = new PeerTable(Math.max(8, n));
  await t.publish(peerEntries(n));
  return t;
}

/** A TUN-read batch: `count` packets from 10.244.1.2 to pods of peer 0, `payload` bytes each, flows spread by source port. */
export function tunBatch(count: number, payload: number): { slab: Uint8Array; lens: Int32Array } {
  const slab = new Uint8Array(count * SLOT_SIZE);
  const lens = new Int32Array(count);
  const src = parseIpv4('10.244.1.2');
  const dst = parseIpv4('10.244.2.2');
  for (let i = 0; i < count; i++) lens[i] = writeUdpPacket(slab, i * SLOT_SIZE + ENCAP_HEADROOM, src, dst, 40000 + i, payload);
  return { slab, lens };
}

/**
 * A UDP-receive batch for node B: the same packets encapsulated by node A (VXLAN header first,
 * as recvmmsg delivers the UDP payload), one per slot.
 */
export async function vxlanBatch(count: number, payload: number): Promise<{ slab: Uint8Array; lens: Int32Array; srcIPs: Uint32Array }> {
  // Node A's single peer is node B: 10.244.2.0/24 behind VTEP_B with MAC_B.
  const ta = new PeerTable(8);
  await ta.publish([{ net: parseIpv4('10.244.2.0'), prefix: 24, vtepIP: VTEP_B, vtepMAC: MAC_B }]);
  const a = await dataplaneContext(1, MAC_A, '10.244.1.0', ta);
  const { slab: tx, lens: txLens } = tunBatch(count, payload);
  const out = new SendBatch(count);
  encapBatch(a, ta.beginRead(0), tx, SLOT_SIZE, txLens, count, out);
  ta.endRead(0);
  if (out.count !== count) throw new Error(`vxlanBatch: encapsulated ${out.count} of ${count}`);
  const slab = new Uint8Array(count * SLOT_SIZE);
  const lens = new Int32Array(count);
  const srcIPs = new Uint32Array(count).fill(VTEP_A);
  for (let i = 0; i < count; i++) {
    slab.set(tx.subarray(out.offs[i], out.offs[i] + out.lens[i]), i * SLOT_SIZE);
    lens[i] = out.lens[i];
  }
  return { slab, lens, srcIPs };
}

/** Node B's context for decapsulating vxlanBatch output. */
export async function receiverContext(): Promise<DataplaneContext> {
  const tb = new PeerTable(8);
  await tb.publish([{ net: parseIpv4('10.244.1.0'), prefix: 24, vtepIP: VTEP_A, vtepMAC: MAC_A }]);
  return dataplaneContext(1, MAC_B, '10.244.2.0', tb);
}
