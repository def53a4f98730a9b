/**
 * CHECK: everything that differs between an endpoint's record, the runtime's prevResult and the
 * kernel (pod interface, node veth and /32 route) and the address file.
 */
import * as native from '../io/native.js';
import type { CniResult } from '../cni/result.js';
import { parseIpv4 } from '../wire/ipv4.js';
import { inspectPod } from './attach.js';
import type { EndpointRecord } from './endpoint-record.js';
import { ip } from './ip.js';
import type { HostLocalStore } from './ipam.js';

/** The differences, each a phrase naming the values; empty when all agree. */
export async function compareEndpoint(rec: EndpointRecord, prev: CniResult, nsPath: string, store: HostLocalStore | undefined): Promise<string[]> {
  const problems: string[] = [];
  const podIdx = prev.interfaces.findIndex((i) => i.name === rec.ifname && !!i.sandbox);
  if (podIdx < 0) problems.push(`prevResult lists no interface "${rec.ifname}" with a sandbox`);
  else if (prev.interfaces[podIdx]!.mac !== undefined && prev.interfaces[podIdx]!.mac !== rec.mac) {
    problems.push(`prevResult gives MAC ${prev.interfaces[podIdx]!.mac} for "${rec.ifname}", the agent attached ${rec.mac}`);
  }
  const prevIps = prev.ips.filter((x) => x.interface === podIdx || x.interface === undefined).map((x) => x.address);
  if (!prevIps.includes(rec.ip)) problems.push(`prevResult lacks address ${rec.ip} (has ${JSON.stringify(prevIps)})`);
  const wantRoutes = [{ dst: '0.0.0.0/0', gw: rec.gateway }, ...rec.routes.map((r) => ({ dst: r.dst, gw: r.gw ?? rec.gateway }))];
  for (const r of wantRoutes) {
    if (!prev.routes.some((p) => p.dst === r.dst && (p.gw === undefined || p.gw === r.gw))) problems.push(`prevResult lacks route ${r.dst} via ${r.gw}`);
  }
  const st = await inspectPod({ podNetnsPath: nsPath, ifname: rec.ifname });
  if (!st) {
    problems.push(`interface "${rec.ifname}" does not exist in ${rec.netns}`);
  } else {
    if (st.mac !== rec.mac) problems.push(`"${rec.ifname}" has MAC ${st.mac}, expected ${rec.mac}`);
    if (st.mtu !== rec.mtu) problems.push(`"${rec.ifname}" has MTU ${st.mtu}, expected ${rec.mtu}`);
    if (!st.up) problems.push(`"${rec.ifname}" is down`);
    for (const a of prevIps.filter((x) => !x.includes(':'))) {
      if (!st.addresses.includes(a)) problems.push(`"${rec.ifname}" lacks address ${a} (has ${JSON.stringify(st.addresses)})`);
    }
    for (const r of wantRoutes) {
      if (!st.routes.some((k) => k.dst === r.dst && k.gw === r.gw)) problems.push(`route ${r.dst} via ${r.gw} is missing in the pod`);
    }
  }
  if (native.ifNameToIndex(rec.hostIfname) === 0) problems.push(`host veth ${rec.hostIfname} does not exist`);
  else {
    const podIp = rec.ip.split('/')[0]!;
    const routes = JSON.parse(await ip(['-j', '-4', 'route', 'show', 'exact', `${podIp}/32`])) as { dev?: string }[];
    if (!routes.some((r) => r.dev === rec.hostIfname)) problems.push(`node route ${podIp}/32 dev ${rec.hostIfname} is missing`);
  }
  if (store) {
    if (!(await store.isOwnedBy(parseIpv4(rec.ip.split('/')[0]!), rec.containerID, rec.ifname))) {
      problems.push(`address ${rec.ip} is not reserved for this container in ${store.dir}`);
    }
  }
  return problems;
}
