/**
 * iproute2 and sysctl from the agent: the link, address and route changes
 * the agent makes in its own network namespace. Errors quote the command
 * and what `ip` said.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { run } from '../util/exec.js';

export function ip(args: readonly string[]): Promise<string> {
  return run('ip', args, { timeoutMs: 10_000 });
}

interface IpAddrInfo {
  ifname: string;
  mtu: number;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** The interface holding `address` in this network namespace, with its MTU; undefined when none does. */
export async function interfaceWithAddress(address: string): Promise<{ name: string; mtu: number } | undefined> {
  const links = JSON.parse(await ip(['-j', '-4', 'addr', 'show'])) as IpAddrInfo[];
  for (const l of links) {
    if (l.addr_info?.some((a) => a.family === 'inet' && a.local === address)) return { name: l.ifname, mtu: l.mtu };
  }
  return undefined;
}

/** Whether an exact route for `cidr` exists in the main table. */
export async function routeExists(cidr: string): Promise<boolean> {
  const out = await ip(['-4', 'route', 'show', 'exact', cidr]);
  return out.trim().length > 0;
}

/** Sets an IPv4 sysctl of this network namespace, e.g. ('ip_forward', '1'); returns the old value. */
export async function setIpv4Sysctl(name: string, value: string): Promise<string> {
  const path = `/proc/sys/net/ipv4/${name}`;
  const old = (await readFile(path, 'utf8')).trim();
  if (old !== value) await writeFile(path, value);
  return old;
}
