/*
 * tulle <-> kernel VXLAN on the wire (root; needs the agent and `npx tsc -p tsconfig.json`).
 *
 *                              tl<lab>-sw [br0]
 *                   n1 ┌──────────────┴──────────────┐ n2
 *   tl<lab>-n1: tulle agent                     tl<lab>-n2: flannel-style kernel VXLAN
 *     eth0 172.31.0.1/24                          eth0 172.31.0.2/24 (tx checksum off, or default)
 *     tulle0 (TUN) 10.244.1.0/32                  flannel.1 vni 1 :8472 10.244.2.0/32
 *     VTEP MAC 02:aa:00:00:00:01                  VTEP MAC 02:aa:00:00:00:02
 *     10.244.0.0/16 -> tulle0                     10.244.1.0/24 via 10.244.1.0 onlink
 *     veth-p1 ── tl<lab>-n1-p1 10.244.1.2         veth-p1 ── tl<lab>-n2-p1 10.244.2.2
 *
 * Two cases. Without tulle's offloads, tx checksum offload is off on n2's underlay: between
 * namespaces the kernel VXLAN sender leaves inner checksums to an offload that never happens,
 * which a plain TUN write cannot express. With offloads, n2 keeps veth's defaults and tulle
 * passes its unfinished checksums on as partial (virtio-net NEEDS_CSUM).
 */
import { expect, test } from 'vitest';
import { request } from '../../src/control/api.js';
import { nsRun } from '../../src/util/exec.js';
import { pingAll, tcpTransfer } from '../../src/lab/measure.js';
import { linksOfType } from '../../src/lab/netns.js';
import { labUp } from '../../src/lab/topology.js';
import { requireRoot, labPerTest } from '../support/labs.js';

const TRANSFER_BYTES = 8 << 20;

requireRoot();
const labs = labPerTest();

interface Case {
  what: string;
  offloads: boolean;
  kernelTxChecksumOff: boolean;
  /**
   * The kernel node's underlay segments in software (tso, gso off), checksum offload on: its
   * datagrams are MTU-sized but their inner checksums still unfinished.
   */
  kernelSegmentsOnly?: boolean;
}

const CASES: Case[] = [
  { what: 'tulle without offloads, kernel node finishing its checksums (tx off)', offloads: false, kernelTxChecksumOff: true },
  { what: 'tulle with offloads, kernel node with default veth offloads (unfinished inner checksums)', offloads: true, kernelTxChecksumOff: false },
  {
    what: 'tulle without offloads, kernel node segmenting but leaving inner checksums unfinished', offloads: false, kernelTxChecksumOff: false,
    kernelSegmentsOnly: true,
  },
];

test.each(CASES)('a tulle node and a kernel VXLAN node exchange pings and byte-checked TCP both ways: $what', async (c) => {
  const s = await labUp({
    name: labs.next('i'), nodes: 2, pods: 1, mode: 'tulle', nodeModes: ['tulle', 'kernel-vxlan'], store: 'static',
    kernelTxChecksumOff: c.kernelTxChecksumOff, agent: { offloads: c.offloads },
  });
  const [a, b] = s.nodes;
  const [podA, podB] = s.pods;
  expect(await linksOfType(a!.ns, 'vxlan')).toEqual([]);
  expect(await linksOfType(b!.ns, 'vxlan')).toEqual(['flannel.1']);
  if (c.kernelSegmentsOnly) await nsRun(b!.ns, 'ethtool', ['-K', 'eth0', 'tso', 'off', 'gso', 'off']);
  expect(await nsRun(b!.ns, 'ethtool', ['-k', 'eth0'])).toMatch(c.kernelTxChecksumOff ? /^tx-checksumming: off/m : /^tx-checksumming: on/m);
  const st = (await request(a!.agent!.socket, 'GET', '/v1/status')) as { workers: { features: { vnet: boolean } }[]; counters: Record<string, number> };
  expect(st.workers.every((w) => w.features.vnet === c.offloads)).toBe(true);

  expect(await pingAll([podA!, podB!])).toEqual([]);
  const ab = await tcpTransfer(podA!.ns, podB!.ns, podB!.ip, TRANSFER_BYTES, 12);
  const ba = await tcpTransfer(podB!.ns, podA!.ns, podA!.ip, TRANSFER_BYTES, 21);
  expect([ab.bytes, ba.bytes]).toEqual([TRANSFER_BYTES, TRANSFER_BYTES]);
  if (!c.kernelTxChecksumOff) {
    // The kernel node's unfinished checksums were recognised and passed on (finished, without
    // offloads), not dropped.
    const after = (await request(a!.agent!.socket, 'GET', '/v1/status')) as { counters: Record<string, number> };
    expect(after.counters.rx_inner_csum_partial).toBeGreaterThan(0);
  }
  if (!c.kernelTxChecksumOff && !c.kernelSegmentsOnly) {
    const after = (await request(a!.agent!.socket, 'GET', '/v1/status')) as { counters: Record<string, number> };
    // Between namespaces the kernel sender's TCP super-packets cross whole, one datagram each
    // (no UDP_GRO segment size), and go to the pod whole.
    expect(after.counters.rx_inner_super_packets).toBeGreaterThan(0);
  }
}, 120_000);
