// A node configured the way flannel's vxlan backend configures Linux (flannel backend/vxlan):
// the competitor in benchmarks and the peer in interop tests.
//
//   flannel.<vni>  vxlan id <vni> local <vtepIP> dstport <port> nolearning dev <underlay>
//                  address <subnet>.0/32, MAC fixed, MTU = underlay MTU - VXLAN_OVERHEAD_IPV4
//   per peer, in flannel's order:
//     neigh  <peer subnet>.0 lladdr <peer VTEP MAC> nud permanent     (no ARP over the tunnel)
//     fdb    <peer VTEP MAC> dst <peer VTEP IP>                       (where that MAC lives)
//     route  <peer subnet> via <peer subnet>.0 dev flannel.<vni> onlink
import { isIPv4 } from 'node:net';
import { nsRun, run } from '../util/exec.js';

export { VXLAN_OVERHEAD_IPV4 } from '../wire/vxlan.js';
/** flannel keeps Linux's default VXLAN port and VNI 1. */
export { VXLAN_DEFAULT_VNI as FLANNEL_DEFAULT_VNI, VXLAN_DEFAULT_PORT as FLANNEL_DEFAULT_PORT } from '../wire/vxlan.js';
import { VXLAN_DEFAULT_PORT as FLANNEL_DEFAULT_PORT, VXLAN_DEFAULT_VNI as FLANNEL_DEFAULT_VNI, VXLAN_OVERHEAD_IPV4 } from '../wire/vxlan.js';

export interface VxlanPeer {
  vtepIP: string;
  vtepMAC: string;
  /** The peer's pod subnet, e.g. '10.244.2.0/24'. */
  subnet: string;
}

export interface KernelVxlanNode {
  /** Namespace to configure; undefined = the caller's own. */
  ns?: string | undefined;
  vni?: number;
  port?: number;
  vtepIP: string;
  vtepMAC: string;
  subnet: string;
  /** Underlay device carrying vtepIP, e.g. 'eth0'. */
  underlayDev: string;
  underlayMtu: number;
  peers: readonly VxlanPeer[];
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** `10.244.2.0/24` → `10.244.2.0`: the network address flannel puts on and routes via. */
export function subnetNetworkAddress(cidr: string): string {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  const len = m ? Number(m[2]) : -1;
  if (!m || !isIPv4(m[1] ?? '') || len > 32) throw new RangeError(`invalid IPv4 subnet ${JSON.stringify(cidr)}`);
  const addr = (m[1] ?? '').split('.').reduce((a, o) => (a << 8) | Number(o), 0) >>> 0;
  const net = len === 0 ? 0 : (addr & (~0 << (32 - len))) >>> 0;
  return [24, 16, 8, 0].map((s) => (net >>> s) & 0xff).join('.');
}

export function vxlanDeviceName(vni: number): string {
  return `flannel.${vni}`;
}

function ipIn(ns: string | undefined, args: readonly string[]): Promise<string> {
  return run('ip', ns === undefined ? args : ['-n', ns, ...args]);
}

function bridgeIn(ns: string | undefined, args: readonly string[]): Promise<string> {
  return ns === undefined ? run('bridge', args) : nsRun(ns, 'bridge', args);
}

function checkPeer(p: VxlanPeer): void {
  if (!isIPv4(p.vtepIP)) throw new RangeError(`invalid peer VTEP IP ${JSON.stringify(p.vtepIP)}`);
  if (!MAC_RE.test(p.vtepMAC)) throw new RangeError(`invalid peer VTEP MAC ${JSON.stringify(p.vtepMAC)}`);
  subnetNetworkAddress(p.subnet);
}

/** Creates and configures flannel.<vni> in the node's namespace, then adds every peer. */
export async function setupKernelVxlan(n: KernelVxlanNode): Promise<string> {
  const vni = n.vni ?? FLANNEL_DEFAULT_VNI;
  const port = n.port ?? FLANNEL_DEFAULT_PORT;
  if (!isIPv4(n.vtepIP)) throw new RangeError(`invalid VTEP IP ${JSON.stringify(n.vtepIP)}`);
  if (!MAC_RE.test(n.vtepMAC)) throw new RangeError(`invalid VTEP MAC ${JSON.stringify(n.vtepMAC)}`);
  if (!Number.isInteger(vni) || vni < 0 || vni >= 1 << 24) throw new RangeError(`invalid VNI ${JSON.stringify(vni)}`);
  n.peers.forEach(checkPeer);
  const dev = vxlanDeviceName(vni);
  const mtu = n.underlayMtu - VXLAN_OVERHEAD_IPV4;
  await ipIn(n.ns, [
    'link', 'add', dev, 'type', 'vxlan', 'id', String(vni), 'local', n.vtepIP,
    'dstport', String(port), 'nolearning', 'dev', n.underlayDev,
  ]);
  await ipIn(n.ns, ['link', 'set', dev, 'address', n.vtepMAC, 'mtu', String(mtu)]);
  await ipIn(n.ns, ['addr', 'add', `${subnetNetworkAddress(n.subnet)}/32`, 'dev', dev]);
  await ipIn(n.ns, ['link', 'set', dev, 'up']);
  for (const p of n.peers) await addKernelVxlanPeer(n.ns, dev, p);
  return dev;
}

/** Adds (or re-applies) one peer lease, in flannel's order: neighbour, FDB, route. */
export async function addKernelVxlanPeer(ns: string | undefined, dev: string, p: VxlanPeer): Promise<void> {
  checkPeer(p);
  const gw = subnetNetworkAddress(p.subnet);
  await ipIn(ns, ['neigh', 'replace', gw, 'lladdr', p.vtepMAC, 'dev', dev, 'nud', 'permanent']);
  await bridgeIn(ns, ['fdb', 'append', p.vtepMAC, 'dev', dev, 'dst', p.vtepIP]);
  await ipIn(ns, ['route', 'replace', p.subnet, 'via', gw, 'dev', dev, 'onlink']);
}

/** Removes one peer lease (route, FDB, neighbour); parts already gone are skipped. */
export async function removeKernelVxlanPeer(ns: string | undefined, dev: string, p: VxlanPeer): Promise<void> {
  checkPeer(p);
  const gw = subnetNetworkAddress(p.subnet);
  await ipIn(ns, ['route', 'del', p.subnet, 'dev', dev]).catch(() => {});
  await bridgeIn(ns, ['fdb', 'del', p.vtepMAC, 'dev', dev, 'dst', p.vtepIP]).catch(() => {});
  await ipIn(ns, ['neigh', 'del', gw, 'dev', dev]).catch(() => {});
}

/**
 * Turns transmit checksum offload on `dev` off or on (`ethtool -K dev tx off`). Between
 * namespaces a kernel VXLAN sender hands veth packets whose inner checksums are still to be
 * completed by hardware that isn't there; a kernel receiver accepts them as verified, a userspace
 * receiver sees them unfinished. With tx offload off on the sender's underlay, they are finished
 * in software before they leave.
 */
export async function setTxChecksumOffload(ns: string | undefined, dev: string, on: boolean): Promise<void> {
  const args = ['-K', dev, 'tx', on ? 'on' : 'off'];
  await (ns === undefined ? run('ethtool', args) : nsRun(ns, 'ethtool', args));
}
