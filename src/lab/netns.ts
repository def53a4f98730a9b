// Network namespaces and the links between them.
//
// Every link is created inside a named namespace (`ip -n ns link add ... peer ... netns other`),
// never in the namespace the caller runs in, so building a lab cannot touch the root
// namespace's links, addresses or routes.
import { run, nsRun, CommandError } from '../util/exec.js';

/** Longest Linux interface name (IFNAMSIZ - 1). */
export const IFNAME_MAX_LEN = 15;
const NETNS_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const IFNAME_RE = /^[A-Za-z0-9_.-]+$/;

export function checkNetnsName(name: string): string {
  if (!NETNS_NAME_RE.test(name)) throw new RangeError(`invalid network namespace name ${JSON.stringify(name)}`);
  return name;
}

export function checkIfname(name: string): string {
  if (name.length > IFNAME_MAX_LEN || !IFNAME_RE.test(name)) {
    throw new RangeError(`invalid interface name ${JSON.stringify(name)} (1..${IFNAME_MAX_LEN} of [A-Za-z0-9_.-])`);
  }
  return name;
}

/** `ip` with `-n ns` when a namespace is given, in the caller's namespace otherwise. */
export function ipIn(ns: string | undefined, args: readonly string[]): Promise<string> {
  return run('ip', ns === undefined ? args : ['-n', ns, ...args]);
}

/** Names from `ip netns list`, optionally only those starting with `prefix`. */
export async function listNetns(prefix = ''): Promise<string[]> {
  const out = await run('ip', ['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '' && n.startsWith(prefix));
}

export async function netnsExists(name: string): Promise<boolean> {
  return (await listNetns()).includes(name);
}

/** Creates a namespace with its loopback up. */
export async function createNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'add', checkNetnsName(name)]);
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
}

/** Deletes a namespace; a namespace that is already gone is not an error. */
export async function deleteNetns(name: string): Promise<void> {
  try {
    await run('ip', ['netns', 'delete', checkNetnsName(name)]);
  } catch (e) {
    if (!(await netnsExists(name))) return;
    throw e;
  }
}

export interface VethSpec {
  ns: string;
  ifname: string;
  peerNs: string;
  peerIfname: string;
  mtu?: number;
}

/** A veth pair from `ns`/`ifname` to `peerNs`/`peerIfname`, both ends down. */
export async function addVeth(v: VethSpec): Promise<void> {
  const mtu = v.mtu === undefined ? [] : ['mtu', String(v.mtu)];
  await ipIn(v.ns, [
    'link', 'add', checkIfname(v.ifname), ...mtu, 'type', 'veth',
    'peer', 'name', checkIfname(v.peerIfname), ...mtu, 'netns', checkNetnsName(v.peerNs),
  ]);
}

export async function linkUp(ns: string | undefined, ifname: string): Promise<void> {
  await ipIn(ns, ['link', 'set', ifname, 'up']);
}

export async function addAddress(ns: string | undefined, ifname: string, cidr: string): Promise<void> {
  await ipIn(ns, ['addr', 'add', cidr, 'dev', ifname]);
}

/** A bridge (up, no STP, no forwarding delay) inside `ns`. */
export async function addBridge(ns: string, name: string): Promise<void> {
  await ipIn(ns, ['link', 'add', checkIfname(name), 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  await linkUp(ns, name);
}

/** Makes `ifname` a port of `bridge` (both in `ns`) and brings it up. */
export async function addBridgePort(ns: string, bridge: string, ifname: string): Promise<void> {
  await ipIn(ns, ['link', 'set', ifname, 'master', bridge]);
  await linkUp(ns, ifname);
}

/** Writes a sysctl inside a namespace, e.g. sysctl('n1', 'net.ipv4.ip_forward', '1'). */
export async function sysctl(ns: string, key: string, value: string): Promise<void> {
  if (!/^[a-z0-9_./-]+$/i.test(key)) throw new RangeError(`invalid sysctl key ${JSON.stringify(key)}`);
  await nsRun(ns, 'sysctl', ['-q', '-w', `${key}=${value}`]);
}

/** PIDs of processes whose network namespace is `ns` (`ip netns pids`). */
export async function netnsPids(ns: string): Promise<number[]> {
  try {
    const out = await run('ip', ['netns', 'pids', checkNetnsName(ns)]);
    return out.split(/\s+/).filter(Boolean).map(Number);
  } catch (e) {
    if (e instanceof CommandError && !(await netnsExists(ns))) return [];
    throw e;
  }
}

/** Names of links of a given kind (`ip -d link show type vxlan`) inside a namespace. */
export async function linksOfType(ns: string, type: string): Promise<string[]> {
  const out = await ipIn(ns, ['-j', 'link', 'show', 'type', type]);
  const links = JSON.parse(out.trim() === '' ? '[]' : out) as { ifname: string }[];
  return links.map((l) => l.ifname);
}
