/**
 * Parse every captured frame into Reprs, emit them into a buffer pre-filled with 0xa5, copy the
 * payload, and get the kernel's bytes back; also print each layer.
 */
import { describe, expect, it } from 'vitest';
import { ArpRepr } from '../../../src/wire/arp.js';
import { ETHERTYPE_ARP, ETH_HEADER_LEN, EthernetRepr } from '../../../src/wire/ethernet.js';
import { IPPROTO_UDP, Ipv4Repr } from '../../../src/wire/ipv4.js';
import { UdpRepr } from '../../../src/wire/udp.js';
import { VXLAN_OVERHEAD_IPV4, VxlanRepr } from '../../../src/wire/vxlan.js';
import { readFixture } from '../../support/pcap.js';

interface Layer { bufferLen(): number; emit(buf: Uint8Array, off: number): void; format(): string }

/** Outer Ethernet/IPv4/UDP/VXLAN, inner Ethernet, then inner IPv4 (+UDP) or ARP. */
function layersOf(f: Uint8Array): Layer[] {
  const layers: Layer[] = [];
  let off = 0;
  const push = (l: Layer | null): void => {
    expect(l).not.toBeNull();
    layers.push(l as Layer);
    off += (l as Layer).bufferLen();
  };
  push(EthernetRepr.parse(f, off));
  push(Ipv4Repr.parse(f, off));
  push(UdpRepr.parse(f, off));
  push(VxlanRepr.parse(f, off));
  const inner = EthernetRepr.parse(f, off);
  push(inner);
  if (inner?.etherType === ETHERTYPE_ARP) return [...layers, ArpRepr.parse(f, off) as Layer];
  const ip = Ipv4Repr.parse(f, off);
  push(ip);
  if (ip?.protocol === IPPROTO_UDP) push(UdpRepr.parse(f, off));
  return layers;
}

describe.each(['icmp.pcap', 'udp.pcap', 'udp-sw-csum.pcap', 'arp.pcap'])('%s', (name) => {
  const frames = readFixture(name).packets.map((p) => p.data);

  it.each(frames.map((f, i) => [i + 1, f] as const))('frame %i re-emits byte for byte', (_i, f) => {
    const out = new Uint8Array(f.length).fill(0xa5);
    let off = 0;
    for (const l of layersOf(f)) {
      l.emit(out, off);
      off += l.bufferLen();
    }
    expect(out.subarray(off).every((b) => b === 0xa5)).toBe(true); // headers wrote only their bytes
    out.set(f.subarray(off), off);
    expect(out).toEqual(f);
  });
});

describe('format', () => {
  it('prints every layer of an echo request', () => {
    const f = readFixture('icmp.pcap').packets[0].data;
    expect(layersOf(f).map((l) => l.format())).toEqual([
      'Ethernet src=02:bb:00:00:00:01 dst=02:bb:00:00:00:02 type=0x0800',
      'IPv4 src=172.31.99.1 dst=172.31.99.2 proto=0x11 len=134',
      'UDP src=38528 dst=8472 len=114 csum=0x1ec6',
      'VXLAN vni=1 flags=0x08',
      'Ethernet src=02:aa:00:00:00:01 dst=02:aa:00:00:00:02 type=0x0800',
      'IPv4 src=10.244.1.0 dst=10.244.2.0 proto=0x01 len=84',
    ]);
  });

  it('prints an ARP request', () => {
    const f = readFixture('arp.pcap').packets[0].data;
    const ls = layersOf(f);
    expect(ls[4].format()).toBe('Ethernet src=02:aa:00:00:00:01 dst=ff:ff:ff:ff:ff:ff type=0x0806');
    expect(ls[5].format()).toBe('ARP op=request sender=02:aa:00:00:00:01/10.244.1.0 target=00:00:00:00:00:00/10.244.2.0');
  });

  it('the inner IPv4 packet starts VXLAN_OVERHEAD_IPV4 bytes after the outer Ethernet header', () => {
    const f = readFixture('udp.pcap').packets[0].data;
    expect(layersOf(f).slice(0, 5).reduce((n, l) => n + l.bufferLen(), 0)).toBe(ETH_HEADER_LEN + VXLAN_OVERHEAD_IPV4);
  });
});
