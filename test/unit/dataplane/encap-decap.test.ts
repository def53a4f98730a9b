import { beforeEach, describe, expect, it } from 'vitest';
import { SendBatch, WriteBatch } from '../../../src/dataplane/batch.js';
import { C, COUNTER_COUNT } from '../../../src/dataplane/counters.js';
import type { DataplaneContext } from '../../../src/dataplane/context.js';
import { decapBatch } from '../../../src/dataplane/decap.js';
import { ENCAP_HEADROOM, encapBatch } from '../../../src/dataplane/encap.js';
import { PeerTable } from '../../../src/dataplane/peers.js';
import { parseIpv4, updateHeaderChecksum } from '../../../src/wire/ipv4.js';
import { parseMac } from '../../../src/wire/mac.js';

const MAC_A = parseMac('02:aa:00:00:00:01');
const MAC_B = parseMac('02:aa:00:00:00:02');
const VTEP_A = parseIpv4('172.31.0.1');
const VTEP_B = parseIpv4('172.31.0.2');
const MTU = 1450;
const SLOT = 2048;

async function node(mac: Uint8Array, subnet: string, peerSubnet: string, peerVtep: number, peerMac: Uint8Array) {
  const table = new PeerTable(8);
  await table.publish([{ net: parseIpv4(peerSubnet), prefix: 24, vtepIP: peerVtep, vtepMAC: peerMac }]);
  const ctx: DataplaneContext = {
    table, vni: 1, vtepMAC: mac, overlayIP: parseIpv4(subnet), mtu: MTU, port: 8472, flowSockets: 8,
    counters: new Float64Array(COUNTER_COUNT),
  };
  return ctx;
}

/** An IPv4/UDP packet of `payload` bytes from src to dst. */
function ipv4Udp(buf: Uint8Array, off: number, src: string, dst: string, payload: number, sport = 40000): number {
  const len = 20 + 8 + payload;
  buf.fill(0, off, off + len);
  buf[off] = 0x45;
  buf[off + 2] = len >> 8;
  buf[off + 3] = len & 0xff;
  buf[off + 8] = 64;
  buf[off + 9] = 17;
  const s = parseIpv4(src);
  const d = parseIpv4(dst);
  for (let i = 0; i < 4; i++) {
    buf[off + 12 + i] = (s >>> (24 - 8 * i)) & 0xff;
    buf[off + 16 + i] = (d >>> (24 - 8 * i)) & 0xff;
  }
  buf[off + 20] = sport >> 8;
  buf[off + 21] = sport & 0xff;
  buf[off + 22] = 0x1f;
  buf[off + 23] = 0x90;
  buf[off + 24] = (8 + payload) >> 8;
  buf[off + 25] = (8 + payload) & 0xff;
  for (let i = 0; i < payload; i++) buf[off + 28 + i] = (i * 7) & 0xff;
  updateHeaderChecksum(buf, off);
  return len;
}

describe('encapBatch / decapBatch', () => {
  let a: DataplaneContext;
  let b: DataplaneContext;
  beforeEach(async () => {
    a = await node(MAC_A, '10.244.1.0', '10.244.2.0', VTEP_B, MAC_B);
    b = await node(MAC_B, '10.244.2.0', '10.244.1.0', VTEP_A, MAC_A);
  });

  it('encapsulates for the peer owning the destination and decapsulates back to the same bytes', () => {
    const tx = new Uint8Array(SLOT * 4);
    const lens = new Int32Array(4);
    lens[0] = ipv4Udp(tx, ENCAP_HEADROOM, '10.244.1.5', '10.244.2.7', 100);
    lens[1] = ipv4Udp(tx, SLOT + ENCAP_HEADROOM, '10.244.1.5', '10.244.9.9', 10); // no peer
    lens[2] = 3; // not IPv4
    const original = tx.slice(ENCAP_HEADROOM, ENCAP_HEADROOM + lens[0]);
    const out = new SendBatch(4);
    const k = encapBatch(a, a.table.beginRead(0), tx, SLOT, lens, 3, out);
    expect(k).toBe(1);
    expect(a.counters[C.tun_rx_drop_no_peer]).toBe(1);
    expect(a.counters[C.tun_rx_drop_not_ipv4]).toBe(1);
    expect(out.dstIPs[0]).toBe(VTEP_B);
    expect(out.dstPorts[0]).toBe(8472);
    expect(out.lens[0]).toBe(lens[0] + 22);
    const dg = tx.slice(out.offs[0], out.offs[0] + out.lens[0]);
    expect([...dg.subarray(0, 8)]).toEqual([0x08, 0, 0, 0, 0, 0, 1, 0]);
    expect([...dg.subarray(8, 14)]).toEqual([...MAC_B]);
    expect([...dg.subarray(14, 20)]).toEqual([...MAC_A]);
    expect([...dg.subarray(20, 22)]).toEqual([0x08, 0x00]);

    const rx = new Uint8Array(SLOT * 2);
    rx.set(dg, 0);
    const rlens = Int32Array.of(dg.length);
    const tun = new WriteBatch(2);
    const replies = new SendBatch(2);
    expect(decapBatch(b, b.table.beginRead(0), rx, Int32Array.of(0), rlens, SLOT, Uint32Array.of(VTEP_A), 1, tun, replies)).toBe(1);
    expect(rx.slice(tun.offs[0], tun.offs[0] + tun.lens[0])).toEqual(original);
    expect(b.counters[C.rx_from_unknown_vtep]).toBe(0);
  });

  it('drops a TUN read as long as its slot: the read may have cut it', () => {
    const tx = new Uint8Array(SLOT);
    const lens = Int32Array.of(SLOT - ENCAP_HEADROOM);
    ipv4Udp(tx, ENCAP_HEADROOM, '10.244.1.5', '10.244.2.7', 100);
    expect(encapBatch(a, a.table.beginRead(0), tx, SLOT, lens, 1, new SendBatch(1))).toBe(0);
    expect(a.counters[C.tun_rx_drop_oversize]).toBe(1);
  });

  it('keeps one outer source socket per flow and spreads flows', () => {
    const tx = new Uint8Array(SLOT * 64);
    const lens = new Int32Array(64);
    for (let i = 0; i < 64; i++) lens[i] = ipv4Udp(tx, i * SLOT + ENCAP_HEADROOM, '10.244.1.5', '10.244.2.7', 20, 40000 + (i % 32));
    const out = new SendBatch(64);
    encapBatch(a, a.table.beginRead(0), tx, SLOT, lens, 64, out);
    for (let i = 0; i < 32; i++) expect(out.sockIdx[i]).toBe(out.sockIdx[i + 32]);
    expect(new Set(out.sockIdx).size).toBeGreaterThan(4);
  });

  function datagram(mutate: (dg: Uint8Array) => Uint8Array | void): Uint8Array {
    const tx = new Uint8Array(SLOT);
    const lens = Int32Array.of(ipv4Udp(tx, ENCAP_HEADROOM, '10.244.1.5', '10.244.2.7', 64));
    const out = new SendBatch(1);
    encapBatch(a, a.table.beginRead(0), tx, SLOT, lens, 1, out);
    const dg = tx.slice(out.offs[0], out.offs[0] + out.lens[0]);
    return mutate(dg) ?? dg;
  }

  const cases: [string, (dg: Uint8Array) => Uint8Array | void, keyof typeof C][] = [
    ['short', (d) => d.subarray(0, 5), 'rx_drop_short'],
    ['no inner ethernet', (d) => d.subarray(0, 15), 'rx_drop_short'],
    ['I flag clear', (d) => void (d[0] = 0), 'rx_drop_bad_flags'],
    ['GBP flag set', (d) => void (d[0] = 0x88), 'rx_drop_bad_flags'],
    ['reserved bits', (d) => void (d[3] = 1), 'rx_drop_reserved_bits'],
    ['wrong VNI', (d) => void (d[6] = 2), 'rx_drop_bad_vni'],
    ['not our MAC', (d) => void (d[13] = 0x77), 'rx_drop_not_our_mac'],
    ['unknown ethertype', (d) => void (d[20] = 0x86), 'rx_drop_unknown_ethertype'],
    ['truncated inner', (d) => d.subarray(0, 60), 'rx_drop_truncated_inner'],
    ['bad inner version', (d) => void (d[22] = 0x65), 'rx_drop_bad_inner_ipv4'],
  ];
  for (const [name, mutate, counter] of cases) {
    it(`drops a datagram with ${name} under ${counter}`, () => {
      const dg = datagram(mutate);
      const rx = new Uint8Array(SLOT);
      rx.set(dg, 0);
      const tun = new WriteBatch(1);
      const n = decapBatch(b, b.table.beginRead(0), rx, Int32Array.of(0), Int32Array.of(dg.length), SLOT, Uint32Array.of(VTEP_A), 1, tun, new SendBatch(1));
      expect(n).toBe(0);
      expect(b.counters[C[counter]]).toBe(1);
    });
  }

  it('drops a datagram larger than the overlay MTU or its slot', () => {
    const rx = new Uint8Array(SLOT * 2);
    const lens = Int32Array.of(MTU + 22 + 1, SLOT + 500);
    const n = decapBatch(b, b.table.beginRead(0), rx, Int32Array.of(0, SLOT), lens, SLOT, Uint32Array.of(VTEP_A, VTEP_A), 2, new WriteBatch(2), new SendBatch(2));
    expect(n).toBe(0);
    expect(b.counters[C.rx_drop_oversize]).toBe(2);
  });

  it('answers an ARP request for its overlay address and ignores others', () => {
    const rx = new Uint8Array(SLOT * 2);
    for (const [slot, target] of [[0, '10.244.2.0'], [1, '10.244.2.9']] as const) {
      const o = slot * SLOT;
      rx.set([0x08, 0, 0, 0, 0, 0, 1, 0], o);
      rx.fill(0xff, o + 8, o + 14);
      rx.set(MAC_A, o + 14);
      rx.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1], o + 20);
      rx.set(MAC_A, o + 30);
      rx.set([10, 244, 1, 0], o + 36);
      rx.set([0, 0, 0, 0, 0, 0], o + 40);
      const t = parseIpv4(target);
      rx.set([t >>> 24, (t >>> 16) & 255, (t >>> 8) & 255, t & 255], o + 46);
    }
    const replies = new SendBatch(2);
    const n = decapBatch(b, b.table.beginRead(0), rx, Int32Array.of(0, SLOT), Int32Array.of(50, 50), SLOT, Uint32Array.of(VTEP_A, VTEP_A), 2, new WriteBatch(2), replies);
    expect(n).toBe(0);
    expect(replies.count).toBe(1);
    expect(b.counters[C.rx_arp_replies]).toBe(1);
    expect(b.counters[C.rx_drop_arp_not_ours]).toBe(1);
    expect(replies.dstIPs[0]).toBe(VTEP_A);
    const r = rx.subarray(replies.offs[0], replies.offs[0] + replies.lens[0]);
    expect([...r.subarray(8, 14)]).toEqual([...MAC_A]); // to the requester
    expect([...r.subarray(14, 20)]).toEqual([...MAC_B]); // from us
    expect(r[29]).toBe(2); // op reply
    expect([...r.subarray(30, 36)]).toEqual([...MAC_B]);
    expect([...r.subarray(36, 40)]).toEqual([10, 244, 2, 0]);
    expect([...r.subarray(46, 50)]).toEqual([10, 244, 1, 0]);
  });
});
