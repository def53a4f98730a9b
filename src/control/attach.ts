// Point-to-point pod wiring, after the CNI reference plugin `ptp` (containernetworking/plugins).
//
//   pod netns                          node netns
//   eth0 10.244.1.2/32  ── veth ──  <hostIfname> 10.244.1.1/32 (gateway, same on every pod veth)
//   10.244.1.1 dev eth0 scope link     10.244.1.2/32 dev <hostIfname>
//   default via 10.244.1.1
//
// Every pod packet is routed by the node: the pod reaches the gateway on its link (the gateway
// answers ARP because the host end owns that address), and the node reaches the pod through its
// /32 route. Nothing is bridged, so the node's routing table alone decides what goes to the
// overlay device. Used by the lab, and by the agent when the CNI plugin asks it to attach a pod:
// `nodeNs` undefined means "the namespace this process runs in".
import { run, CommandError } from '../util/exec.js';
import { checkIfname, checkNetnsName } from '../lab/netns.js';
import { isIPv4 } from 'node:net';

export interface AttachPodOptions {
  /** Namespace holding the host end; undefined = the caller's own namespace. */
  nodeNs?: string | undefined;
  /** Pod namespace name under /run/netns. */
  podNetns: string;
  /** Interface name inside the pod, e.g. 'eth0'. */
  ifname: string;
  /** Host end's name in the node namespace. */
  hostIfname: string;
  podIp: string;
  /** The node's pod gateway address (e.g. 10.244.1.1), put as /32 on each host end. */
  gatewayIp: string;
  mtu: number;
}

export interface AttachPodResult {
  hostIfname: string;
  podMac: string;
  hostMac: string;
}

export type DetachPodOptions = Pick<AttachPodOptions, 'nodeNs' | 'podNetns' | 'ifname' | 'hostIfname'>;

/** Failure while wiring a pod; `cause` holds the failing command. */
export class AttachError extends Error {
  readonly code = 'ERR_POD_ATTACH';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AttachError';
  }
}

const MIN_MTU = 68;
const MAX_MTU = 65535;

function ip(ns: string | undefined, args: readonly string[]): Promise<string> {
  return run('ip', ns === undefined ? args : ['-n', ns, ...args]);
}

async function linkMac(ns: string | undefined, ifname: string): Promise<string> {
  const links = JSON.parse(await ip(ns, ['-j', 'link', 'show', 'dev', ifname])) as { address?: string }[];
  const mac = links[0]?.address;
  if (!mac) throw new AttachError(`no MAC address on ${JSON.stringify(ifname)}`);
  return mac;
}

function validate(o: AttachPodOptions): void {
  if (o.nodeNs !== undefined) checkNetnsName(o.nodeNs);
  checkNetnsName(o.podNetns);
  checkIfname(o.ifname);
  checkIfname(o.hostIfname);
  if (!isIPv4(o.podIp)) throw new RangeError(`invalid pod IP ${JSON.stringify(o.podIp)}`);
  if (!isIPv4(o.gatewayIp)) throw new RangeError(`invalid gateway IP ${JSON.stringify(o.gatewayIp)}`);
  if (o.podIp === o.gatewayIp) throw new RangeError(`pod IP ${o.podIp} equals the gateway IP`);
  if (!Number.isInteger(o.mtu) || o.mtu < MIN_MTU || o.mtu > MAX_MTU) {
    throw new RangeError(`invalid MTU ${JSON.stringify(o.mtu)} (${MIN_MTU}..${MAX_MTU})`);
  }
}

/**
 * Creates the veth pair and configures both ends. If any step fails, the pair is deleted again
 * (deleting one end removes the other, with its addresses and routes) and an AttachError naming
 * the pod and the step is thrown.
 */
export async function attachPod(o: AttachPodOptions): Promise<AttachPodResult> {
  validate(o);
  const { nodeNs, podNetns: pod, ifname, hostIfname: host } = o;
  const mtu = String(o.mtu);
  const where = `pod ${JSON.stringify(pod)} (${o.podIp})`;
  try {
    // The pod end is created directly in the pod namespace under its final name, so a pod
    // interface name may equal a node interface name (both are usually eth0).
    await ip(nodeNs, ['link', 'add', host, 'mtu', mtu, 'type', 'veth', 'peer', 'name', ifname, 'mtu', mtu, 'netns', pod]);
  } catch (e) {
    throw new AttachError(`attaching ${where}: creating veth ${host} <-> ${ifname}: ${(e as Error).message}`, { cause: e });
  }
  try {
    await ip(pod, ['addr', 'add', `${o.podIp}/32`, 'dev', ifname]);
    await ip(pod, ['link', 'set', ifname, 'up']);
    await ip(pod, ['route', 'add', o.gatewayIp, 'dev', ifname, 'scope', 'link']);
    await ip(pod, ['route', 'add', 'default', 'via', o.gatewayIp, 'dev', ifname]);
    await ip(nodeNs, ['addr', 'add', `${o.gatewayIp}/32`, 'dev', host, 'noprefixroute']);
    await ip(nodeNs, ['link', 'set', host, 'up']);
    await ip(nodeNs, ['route', 'add', `${o.podIp}/32`, 'dev', host, 'scope', 'link']);
    return { hostIfname: host, podMac: await linkMac(pod, ifname), hostMac: await linkMac(nodeNs, host) };
  } catch (e) {
    await ip(nodeNs, ['link', 'del', host]).catch(() => {});
    throw new AttachError(`attaching ${where}: ${(e as Error).message}`, { cause: e });
  }
}

function isGone(e: unknown): boolean {
  return e instanceof CommandError && /Cannot find device|does not exist|No such file|Cannot open network namespace/i.test(e.stderr);
}

/**
 * Removes the pod's veth pair by deleting the host end (the pod end goes with it). Succeeds when
 * the pair or either namespace is already gone. The pod end is never deleted by name: if the host
 * end is gone, whatever now carries that name in the pod is not ours.
 */
export async function detachPod(o: DetachPodOptions): Promise<void> {
  if (o.nodeNs !== undefined) checkNetnsName(o.nodeNs);
  checkNetnsName(o.podNetns);
  checkIfname(o.ifname);
  checkIfname(o.hostIfname);
  try {
    await ip(o.nodeNs, ['link', 'del', o.hostIfname]);
  } catch (e) {
    if (!isGone(e)) throw new AttachError(`detaching pod ${JSON.stringify(o.podNetns)}: ${(e as Error).message}`, { cause: e });
  }
}
