// Point-to-point pod wiring, after the CNI reference plugin `ptp` (containernetworking/plugins).
//
//   pod netns                              node netns
//   eth0 10.244.1.5/24 noprefixroute ── veth ── <hostIfname> 10.244.1.1/32 (gateway, on every host end)
//   10.244.1.1 dev eth0 scope link             10.244.1.5/32 dev <hostIfname> scope link
//   default via 10.244.1.1
//
// Every pod packet is routed by the node: the pod reaches the gateway on its link (the gateway
// answers ARP because the host end owns that address), and the node reaches the pod through its
// /32 route. The pod's address carries its subnet's prefix (as host-local reports it) but no
// connected route (`noprefixroute`), so even same-node pods go through the node. Nothing is
// bridged, so the node's routing table alone decides what goes to the overlay device.
//
// The pair is created inside the pod namespace under its final name, with the host end sent to
// the node namespace in the same request, so an interface name that already exists in the pod
// fails before anything exists. Each side is configured with one `ip -batch` run.
//
// The pod namespace is either a name under /run/netns (`podNetns`, the lab) or a path entered with
// nsenter (`podNetnsPath`, the CNI plugin's CNI_NETNS as the agent can open it). The node
// namespace is a name, or undefined for the namespace this process runs in (the agent).
import { isIPv4 } from 'node:net';
import { run, CommandError } from '../util/exec.js';
import { checkIfname, checkNetnsName } from '../lab/netns.js';
import { ifnameProblem } from '../cni/spec.js';

export interface PodRoute {
  /** CIDR, e.g. "0.0.0.0/0" or "10.96.0.0/12". */
  dst: string;
  /** Next hop; the gateway when absent. */
  gw?: string | undefined;
}

export interface AttachPodOptions {
  /** Namespace holding the host end; undefined = the caller's own namespace. */
  nodeNs?: string | undefined;
  /** Pod namespace name under /run/netns (give this or podNetnsPath). */
  podNetns?: string | undefined;
  /** Pod namespace as a file path (a netns bind mount, /proc/<pid>/ns/net, /proc/<pid>/fd/<n>). */
  podNetnsPath?: string | undefined;
  /** Interface name inside the pod, e.g. 'eth0'. */
  ifname: string;
  /** Host end's name in the node namespace. */
  hostIfname: string;
  podIp: string;
  /** Prefix length put on the pod's address (no connected route either way); default 32. */
  prefixLen?: number | undefined;
  /** The node's pod gateway address (e.g. 10.244.1.1), put as /32 on each host end. */
  gatewayIp: string;
  mtu: number;
  /**
   * The pod end's gso_max_segs: the most segments the pod's TCP puts in one super-packet. The
   * agent sets what one UDP_SEGMENT message holds at this MTU, so each super-packet leaves the
   * node as one message (see segmentsPerMessage). Kernel default when absent.
   */
  gsoMaxSegs?: number | undefined;
  /** MACs to give the two ends; the kernel picks random ones when absent. */
  podMac?: string | undefined;
  hostMac?: string | undefined;
  /** Routes in the pod besides the default route via the gateway (which is always added). */
  routes?: readonly PodRoute[] | undefined;
}

export interface AttachPodResult {
  hostIfname: string;
  podMac: string;
  hostMac: string;
}

/** The pod's interface name is not needed: the pair goes with its host end, whatever the pod end is called. */
export type DetachPodOptions = Pick<AttachPodOptions, 'nodeNs' | 'podNetns' | 'podNetnsPath' | 'hostIfname'>;

/** Why an attach failed, for callers that map failures to error codes. */
export type AttachFailure = 'pod-ifname-exists' | 'host-ifname-exists' | 'netns' | 'other';

/** Failure while wiring a pod; `cause` holds the failing command. */
export class AttachError extends Error {
  readonly code = 'ERR_POD_ATTACH';
  constructor(
    message: string,
    readonly failure: AttachFailure = 'other',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AttachError';
  }
}

const MIN_MTU = 68;
const MAX_MTU = 65535;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const CIDR_RE = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/;

/** `ip` in the node namespace (by name, or this process's own). */
function nodeIp(ns: string | undefined, args: readonly string[], input?: string): Promise<string> {
  return run('ip', ns === undefined ? args : ['-n', ns, ...args], input === undefined ? {} : { input });
}

/** `ip` in the pod namespace: `ip -n NAME` or `nsenter --net=PATH ip`. */
function podIp(o: Pick<AttachPodOptions, 'podNetns' | 'podNetnsPath'>, args: readonly string[], input?: string): Promise<string> {
  const opts = input === undefined ? {} : { input };
  if (o.podNetnsPath !== undefined) return run('nsenter', [`--net=${o.podNetnsPath}`, 'ip', ...args], opts);
  return run('ip', ['-n', o.podNetns as string, ...args], opts);
}

async function linkMac(ns: string | undefined, ifname: string): Promise<string> {
  const links = JSON.parse(await nodeIp(ns, ['-j', 'link', 'show', 'dev', ifname])) as { address?: string }[];
  const mac = links[0]?.address;
  if (!mac) throw new AttachError(`no MAC address on ${JSON.stringify(ifname)}`);
  return mac;
}

async function podLinkMac(o: AttachPodOptions): Promise<string> {
  const links = JSON.parse(await podIp(o, ['-j', 'link', 'show', 'dev', o.ifname])) as { address?: string }[];
  const mac = links[0]?.address;
  if (!mac) throw new AttachError(`no MAC address on ${JSON.stringify(o.ifname)} in the pod`);
  return mac;
}

function checkPodNs(o: Pick<AttachPodOptions, 'podNetns' | 'podNetnsPath'>): void {
  if ((o.podNetns === undefined) === (o.podNetnsPath === undefined)) {
    throw new RangeError('give exactly one of podNetns (a name) and podNetnsPath (a path)');
  }
  if (o.podNetns !== undefined) checkNetnsName(o.podNetns);
  if (o.podNetnsPath !== undefined && (!o.podNetnsPath.startsWith('/') || /[\s\0]/.test(o.podNetnsPath))) {
    throw new RangeError(`invalid pod netns path ${JSON.stringify(o.podNetnsPath)}`);
  }
}

function validate(o: AttachPodOptions): void {
  if (o.nodeNs !== undefined) checkNetnsName(o.nodeNs);
  checkPodNs(o);
  checkPodIfname(o.ifname, true);
  checkIfname(o.hostIfname);
  if (!isIPv4(o.podIp)) throw new RangeError(`invalid pod IP ${JSON.stringify(o.podIp)}`);
  if (!isIPv4(o.gatewayIp)) throw new RangeError(`invalid gateway IP ${JSON.stringify(o.gatewayIp)}`);
  if (o.podIp === o.gatewayIp) throw new RangeError(`pod IP ${o.podIp} equals the gateway IP`);
  const prefix = o.prefixLen ?? 32;
  if (!Number.isInteger(prefix) || prefix < 1 || prefix > 32) throw new RangeError(`invalid prefix length ${JSON.stringify(prefix)}`);
  if (!Number.isInteger(o.mtu) || o.mtu < MIN_MTU || o.mtu > MAX_MTU) {
    throw new RangeError(`invalid MTU ${JSON.stringify(o.mtu)} (${MIN_MTU}..${MAX_MTU})`);
  }
  if (o.gsoMaxSegs !== undefined && (!Number.isInteger(o.gsoMaxSegs) || o.gsoMaxSegs < 1 || o.gsoMaxSegs > 65535)) {
    throw new RangeError(`invalid gso_max_segs ${JSON.stringify(o.gsoMaxSegs)} (1..65535)`);
  }
  for (const mac of [o.podMac, o.hostMac]) {
    if (mac !== undefined && !MAC_RE.test(mac)) throw new RangeError(`invalid MAC ${JSON.stringify(mac)}`);
  }
  for (const r of o.routes ?? []) {
    const m = CIDR_RE.exec(r.dst);
    if (!m || !isIPv4(m[1]!) || Number(m[2]) > 32) throw new RangeError(`invalid route destination ${JSON.stringify(r.dst)}`);
    if (r.gw !== undefined && !isIPv4(r.gw)) throw new RangeError(`invalid route gateway ${JSON.stringify(r.gw)}`);
  }
}

export const DEFAULT_DST: ReadonlySet<string> = new Set(['0.0.0.0/0', 'default']);

/**
 * Why `name` cannot be a pod's interface name here, or '' when it can: any name the kernel and
 * the CNI spec accept (ifnameProblem), except those with a character `ip -batch` reads as a
 * comment, a quote or an escape ("#", "'", '"', "\\": a name ending in a backslash joins its line
 * to the next, dropping the routes after it), since the pod side is created in one batch. Every
 * name follows `dev` or `name` there, so names such as "up" or "help" are taken as names.
 */
export function podIfnameProblem(name: string): string {
  const p = ifnameProblem(name);
  if (p !== '') return p;
  if (/[#'"\\]/.test(name)) return 'contains "#", a quote or a backslash, which tulle cannot pass to ip -batch';
  return '';
}

function checkPodIfname(name: string, creating: boolean): void {
  const p = creating ? podIfnameProblem(name) : ifnameProblem(name);
  if (p !== '') throw new RangeError(`invalid pod interface name ${JSON.stringify(name)}: it ${p}`);
}

/** The pod side as one `ip -batch` script: the pair, address, link up, routes. */
function podScript(o: AttachPodOptions): string {
  const mtu = String(o.mtu);
  // The host end goes to the node namespace by name, or by this process's PID (its own namespace).
  const nodeRef = o.nodeNs ?? String(process.pid);
  const podAddr = o.podMac ? ` address ${o.podMac}` : '';
  const hostAddr = o.hostMac ? ` address ${o.hostMac}` : '';
  const segs = o.gsoMaxSegs !== undefined ? ` gso_max_segs ${o.gsoMaxSegs}` : '';
  const lines = [
    `link add name ${o.ifname} mtu ${mtu}${podAddr}${segs} type veth peer name ${o.hostIfname} mtu ${mtu}${hostAddr} netns ${nodeRef}`,
    `addr add ${o.podIp}/${o.prefixLen ?? 32} dev ${o.ifname} noprefixroute`,
    `link set dev ${o.ifname} up`,
    `route add ${o.gatewayIp} dev ${o.ifname} scope link`,
    `route add default via ${o.gatewayIp} dev ${o.ifname}`,
  ];
  for (const r of o.routes ?? []) {
    if (DEFAULT_DST.has(r.dst)) continue;
    lines.push(`route add ${r.dst} via ${r.gw ?? o.gatewayIp} dev ${o.ifname}`);
  }
  return lines.join('\n') + '\n';
}

function hostScript(o: AttachPodOptions): string {
  return [
    `addr add ${o.gatewayIp}/32 dev ${o.hostIfname} noprefixroute`,
    `link set dev ${o.hostIfname} up`,
    `route add ${o.podIp}/32 dev ${o.hostIfname} scope link`,
  ].join('\n') + '\n';
}

function isNetnsError(e: unknown): boolean {
  return e instanceof CommandError && /Cannot open network namespace|nsenter: (cannot open|reassociate)|Invalid argument/i.test(e.stderr);
}

async function hostLinkExists(ns: string | undefined, ifname: string): Promise<boolean> {
  return nodeIp(ns, ['-o', 'link', 'show', 'dev', ifname]).then(() => true, () => false);
}

/**
 * Creates the veth pair and configures both ends. If any step fails, the pair is deleted again
 * (deleting one end removes the other, with its addresses and routes) and an AttachError naming
 * the pod, the step and the kind of failure is thrown.
 */
export async function attachPod(o: AttachPodOptions): Promise<AttachPodResult> {
  validate(o);
  const { nodeNs, ifname, hostIfname: host } = o;
  const pod = o.podNetns ?? o.podNetnsPath!;
  const where = `pod ${JSON.stringify(pod)} (${o.podIp})`;
  try {
    await podIp(o, ['-batch', '-'], podScript(o));
  } catch (e) {
    // `ip -batch` stops at the first failing line and names it ("Command failed -:N"). When the
    // pair itself could not be created (line 1), nothing exists to undo.
    const line = e instanceof CommandError ? Number(/Command failed -:(\d+)/.exec(e.stderr)?.[1] ?? 0) : 0;
    if (line !== 1) await nodeIp(nodeNs, ['link', 'del', 'dev', host]).catch(() => {});
    let failure: AttachFailure = isNetnsError(e) ? 'netns' : 'other';
    let what = (e as Error).message;
    if (line === 1 && e instanceof CommandError && /File exists/.test(e.stderr)) {
      if (await hostLinkExists(nodeNs, host)) {
        failure = 'host-ifname-exists';
        what = `host interface ${JSON.stringify(host)} already exists in the node namespace`;
      } else {
        failure = 'pod-ifname-exists';
        what = `interface ${JSON.stringify(ifname)} already exists in the pod's network namespace`;
      }
    }
    const step = line === 1 ? `creating veth ${host} <-> ${ifname}: ` : '';
    throw new AttachError(`attaching ${where}: ${step}${what}`, failure, { cause: e });
  }
  try {
    await nodeIp(nodeNs, ['-batch', '-'], hostScript(o));
    return {
      hostIfname: host,
      podMac: o.podMac ?? (await podLinkMac(o)),
      hostMac: o.hostMac ?? (await linkMac(nodeNs, host)),
    };
  } catch (e) {
    await nodeIp(nodeNs, ['link', 'del', 'dev', host]).catch(() => {});
    throw new AttachError(`attaching ${where}: ${(e as Error).message}`, isNetnsError(e) ? 'netns' : 'other', { cause: e });
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
  if (o.podNetns !== undefined || o.podNetnsPath !== undefined) checkPodNs(o);
  checkIfname(o.hostIfname);
  try {
    await nodeIp(o.nodeNs, ['link', 'del', 'dev', o.hostIfname]);
  } catch (e) {
    if (!isGone(e)) {
      throw new AttachError(`detaching pod ${JSON.stringify(o.podNetns ?? o.podNetnsPath ?? o.hostIfname)}: ${(e as Error).message}`, 'other', { cause: e });
    }
  }
}

/** What CHECK compares: the pod interface as the kernel has it. */
export interface PodInterfaceState {
  mac: string;
  mtu: number;
  up: boolean;
  /** "address/prefix" of every IPv4 address. */
  addresses: string[];
  /** Routes through the interface, destination "0.0.0.0/0" for the default route. */
  routes: { dst: string; gw?: string }[];
}

/** The pod interface's link, addresses and routes; undefined when it does not exist. */
export async function inspectPod(o: Pick<AttachPodOptions, 'podNetns' | 'podNetnsPath' | 'ifname'>): Promise<PodInterfaceState | undefined> {
  checkPodNs(o);
  checkPodIfname(o.ifname, false);
  let addrOut: string;
  try {
    addrOut = await podIp(o, ['-j', 'addr', 'show', 'dev', o.ifname]);
  } catch (e) {
    if (e instanceof CommandError && /does not exist|Cannot find device/.test(e.stderr)) return undefined;
    throw e;
  }
  const links = JSON.parse(addrOut) as {
    address?: string; mtu?: number; flags?: string[];
    addr_info?: { family: string; local: string; prefixlen: number }[];
  }[];
  const l = links[0];
  if (!l) return undefined;
  const routes = JSON.parse(await podIp(o, ['-j', '-4', 'route', 'show', 'dev', o.ifname])) as { dst: string; gateway?: string }[];
  return {
    mac: l.address ?? '',
    mtu: l.mtu ?? 0,
    up: l.flags?.includes('UP') ?? false,
    addresses: (l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
    routes: routes.map((r) => {
      const dst = r.dst === 'default' ? '0.0.0.0/0' : r.dst.includes('/') ? r.dst : `${r.dst}/32`;
      return r.gateway === undefined ? { dst } : { dst, gw: r.gateway };
    }),
  };
}
