/**
 * An endpoint: one pod interface the agent attached, as kept in `<dataDir>/endpoints/<key>.json`
 * and listed by `tulle status`, and the ADD result it stands for.
 *
 * The host end of a pod's veth is named `tlv` + 12 hex digits of sha256(containerID, ifname): DEL
 * finds it even when the record is lost, and two attachments never collide by accident.
 */
import { type Attachment, attachmentDigest } from '../cni/protocol.js';
import type { CniResult } from '../cni/result.js';
import type { PodRoute } from './attach.js';

export const HOST_IFNAME_PREFIX = 'tlv';

export interface EndpointRecord {
  network: string;
  containerID: string;
  ifname: string;
  /** "address/prefix" on the pod interface. */
  ip: string;
  gateway: string;
  mac: string;
  hostIfname: string;
  hostMac: string;
  mtu: number;
  /** CNI_NETNS as the runtime gave it. */
  netns: string;
  /** Who allocated the address: the agent's own store, or a delegated ipam plugin. */
  ipam: 'agent' | 'delegated';
  /** Pod routes besides the default route. */
  routes: PodRoute[];
  createdAt: string;
}

/** The host end's name for an attachment: "tlv" + 12 hex digits. */
export function hostIfnameFor(a: Attachment): string {
  return HOST_IFNAME_PREFIX + attachmentDigest(a).slice(0, 12);
}

export const keyOf = (a: Attachment): string => `${a.containerID}\n${a.ifname}`;

/** The ADD result for an endpoint: host veth (no sandbox), pod interface (sandbox), its address. */
export function resultOf(rec: EndpointRecord, dns?: CniResult['dns']): CniResult {
  const r: CniResult = {
    interfaces: [
      { name: rec.hostIfname, mac: rec.hostMac, mtu: rec.mtu },
      { name: rec.ifname, mac: rec.mac, mtu: rec.mtu, sandbox: rec.netns },
    ],
    ips: [{ address: rec.ip, gateway: rec.gateway, interface: 1 }],
    routes: [{ dst: '0.0.0.0/0', gw: rec.gateway }, ...rec.routes.map((x) => (x.gw ? { dst: x.dst, gw: x.gw } : { dst: x.dst }))],
  };
  if (dns) r.dns = dns;
  return r;
}
