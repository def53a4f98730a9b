/**
 * flannel's etcd layout (flannel `pkg/subnet`, the etcd subnet manager), so
 * tulle nodes and flannel nodes can share one etcd:
 *
 *   <prefix>/config                    the network config, written by the operator:
 *                                      {"Network": "10.244.0.0/16", "SubnetLen": 24,
 *                                       "SubnetMin": ..., "SubnetMax": ...,
 *                                       "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
 *   <prefix>/subnets/<a.b.c.d>-<len>   one lease per node, attached to an etcd lease (TTL);
 *                                      a key without an etcd lease is a permanent reservation
 *
 * A lease value is what Go's encoding/json writes for flannel's LeaseAttrs
 * (fields in declaration order, the nil *IP6 as null, BackendType and
 * BackendData omitempty) with the vxlan backend's {VNI, VtepMAC} inside:
 *
 *   {"PublicIP":"172.31.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:aa:00:00:00:01"}}
 *
 * Reading is as lenient as Go's decoder: field names match case-insensitively,
 * unknown fields (BackendV6Data, a dual-stack key's `&<v6>-<len>` part) are
 * ignored, and a MAC may use '-' separators.
 */
import { formatIpv4, parseIpv4 } from '../../wire/ipv4.js';
import { formatMac, parseMac } from '../../wire/mac.js';
import { VXLAN_DEFAULT_PORT, VXLAN_DEFAULT_VNI } from '../../wire/vxlan.js';
import type { Cidr } from '../config.js';

export const BACKEND_VXLAN = 'vxlan';
/** flannel's default SubnetLen when the network is a /22 or larger. */
export const DEFAULT_SUBNET_LEN = 24;
/** flannel refuses subnets smaller than a /30. */
export const MAX_SUBNET_LEN = 30;
/** flannel's vxlanLeaseAttrs.VNI is a uint16. */
export const MAX_LEASE_VNI = 0xffff;
/** flannel picks a random subnet among the first this many free ones. */
export const FREE_SUBNET_CHOICES = 100;

/** Something in etcd that does not parse as flannel would read it; the message quotes it. */
export class FlannelFormatError extends Error {
  readonly code = 'EFLANNELFORMAT';
  constructor(message: string) {
    super(message);
    this.name = 'FlannelFormatError';
  }
}

/** `<prefix>/config`, with flannel's defaults applied. */
export interface NetworkConfig {
  readonly network: Cidr;
  readonly subnetLen: number;
  /** Network addresses (host-order u32) of the first and last subnet that may be leased. */
  readonly subnetMin: number;
  readonly subnetMax: number;
  readonly backendType: string;
  readonly vni: number;
  readonly port: number;
}

/** A decoded lease value. */
export interface LeaseAttrs {
  readonly publicIP: number;
  readonly backendType: string;
  /** vxlan leases only; undefined when the lease carries no VNI (older flannel). */
  readonly vni: number | undefined;
  readonly vtepMAC: Uint8Array | undefined;
}

const mask = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

export function cidr(net: number, prefix: number): Cidr {
  return { net: net >>> 0, prefix, text: `${formatIpv4(net >>> 0)}/${prefix}` };
}

/** Go's encoding/json matches an exact field name first, then case-insensitively. */
function field(obj: Record<string, unknown>, name: string): unknown {
  if (name in obj) return obj[name];
  const lower = name.toLowerCase();
  const k = Object.keys(obj).find((x) => x.toLowerCase() === lower);
  return k === undefined ? undefined : obj[k];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseJsonObject(text: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FlannelFormatError(`${what} is not valid JSON (${(e as Error).message}): ${JSON.stringify(text.slice(0, 200))}`);
  }
  if (!isObject(v)) throw new FlannelFormatError(`${what} is not a JSON object: ${JSON.stringify(text.slice(0, 200))}`);
  return v;
}

function ipv4Of(what: string, v: unknown): number {
  try {
    if (typeof v !== 'string') throw new TypeError('not a string');
    return parseIpv4(v);
  } catch {
    throw new FlannelFormatError(`${what} is not an IPv4 address: ${JSON.stringify(v)}`);
  }
}

function uintOf(what: string, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new FlannelFormatError(`${what} must be an integer 0..${max}: ${JSON.stringify(v)}`);
  }
  return v;
}

function cidrOf(what: string, v: unknown): Cidr {
  const m = typeof v === 'string' ? /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(v) : null;
  const len = m ? Number(m[2]) : -1;
  if (!m || len > 32) throw new FlannelFormatError(`${what} is not an IPv4 CIDR: ${JSON.stringify(v)}`);
  const ip = ipv4Of(what, m[1]);
  // flannel's IP4Net keeps host bits as given but uses the masked network everywhere.
  return cidr((ip & mask(len)) >>> 0, len);
}

/** Parses `<prefix>/config` the way flannel's ParseConfig + CheckNetworkConfig do (IPv4 part). */
export function parseNetworkConfig(text: string): NetworkConfig {
  const raw = parseJsonObject(text, 'network config');
  const network = cidrOf('Network', field(raw, 'Network'));
  let subnetLen = field(raw, 'SubnetLen') === undefined ? 0 : uintOf('SubnetLen', field(raw, 'SubnetLen'), 32);
  if (subnetLen > 0) {
    if (subnetLen > MAX_SUBNET_LEN) throw new FlannelFormatError(`SubnetLen ${subnetLen} must be at most ${MAX_SUBNET_LEN}`);
    if (subnetLen < network.prefix + 2) throw new FlannelFormatError(`Network ${network.text} must hold at least four /${subnetLen} subnets`);
  } else if (network.prefix > 28) {
    throw new FlannelFormatError(`Network ${network.text} is too small; the smallest useful network is a /28`);
  } else {
    subnetLen = network.prefix <= 22 ? DEFAULT_SUBNET_LEN : network.prefix + 2;
  }
  const size = 2 ** (32 - subnetLen);
  const last = network.net + 2 ** (32 - network.prefix) - size;
  const bound = (name: string, dflt: number): number => {
    const v = field(raw, name);
    if (v === undefined || v === '0.0.0.0') return dflt;
    const ip = ipv4Of(name, v);
    if (((ip & mask(network.prefix)) >>> 0) !== network.net) throw new FlannelFormatError(`${name} ${formatIpv4(ip)} is not inside Network ${network.text}`);
    if (((ip & mask(subnetLen)) >>> 0) !== ip) throw new FlannelFormatError(`${name} ${formatIpv4(ip)} is not on a /${subnetLen} boundary`);
    return ip;
  };
  const subnetMin = bound('SubnetMin', network.net + size);
  const subnetMax = bound('SubnetMax', last);
  const backend = field(raw, 'Backend');
  if (backend !== undefined && !isObject(backend)) throw new FlannelFormatError(`Backend is not an object: ${JSON.stringify(backend)}`);
  // flannel's own default when Backend is absent is "udp".
  const type = backend === undefined ? 'udp' : field(backend, 'Type');
  if (typeof type !== 'string') throw new FlannelFormatError(`Backend.Type is not a string: ${JSON.stringify(type)}`);
  const vniRaw = backend === undefined ? undefined : field(backend, 'VNI');
  const portRaw = backend === undefined ? undefined : field(backend, 'Port');
  const vni = vniRaw === undefined || vniRaw === 0 ? VXLAN_DEFAULT_VNI : uintOf('Backend.VNI', vniRaw, MAX_LEASE_VNI);
  const port = portRaw === undefined || portRaw === 0 ? VXLAN_DEFAULT_PORT : uintOf('Backend.Port', portRaw, 65535);
  return { network, subnetLen, subnetMin, subnetMax, backendType: type, vni, port };
}

/** `10.244.3.0/24` → `<prefix>/subnets/10.244.3.0-24`. */
export function subnetKey(prefix: string, subnet: Cidr): string {
  return `${subnetsPrefix(prefix)}${formatIpv4(subnet.net)}-${subnet.prefix}`;
}

export function subnetsPrefix(prefix: string): string {
  return `${prefix}/subnets/`;
}

/** flannel's subnetRegex, anchored to the subnets prefix. */
const KEY_RE = /^(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;

/** The IPv4 subnet a lease key names, or null when the key is not a subnet lease. */
export function parseSubnetKey(prefix: string, key: string): Cidr | null {
  const sp = subnetsPrefix(prefix);
  if (!key.startsWith(sp)) return null;
  const m = KEY_RE.exec(key.slice(sp.length));
  if (!m) return null;
  const len = Number(m[2]);
  let ip: number;
  try {
    ip = parseIpv4(m[1] ?? '');
  } catch {
    return null;
  }
  if (len > 32 || ((ip & mask(len)) >>> 0) !== ip) return null;
  return cidr(ip, len);
}

/** The lease value this node writes, byte for byte as flannel's vxlan backend writes it. */
export function encodeLease(publicIP: number, vni: number, vtepMAC: Uint8Array): string {
  if (!Number.isInteger(vni) || vni < 0 || vni > MAX_LEASE_VNI) throw new RangeError(`VNI ${vni} does not fit flannel's lease (0..${MAX_LEASE_VNI})`);
  return (
    `{"PublicIP":"${formatIpv4(publicIP)}","PublicIPv6":null,"BackendType":"${BACKEND_VXLAN}",` +
    `"BackendData":{"VNI":${vni},"VtepMAC":"${formatMac(vtepMAC)}"}}`
  );
}

/** Reads a lease value as flannel does; BackendData is decoded for vxlan leases only. */
export function decodeLease(text: string): LeaseAttrs {
  const raw = parseJsonObject(text, 'lease');
  const publicIP = ipv4Of('PublicIP', field(raw, 'PublicIP'));
  const bt = field(raw, 'BackendType');
  if (bt !== undefined && typeof bt !== 'string') throw new FlannelFormatError(`BackendType is not a string: ${JSON.stringify(bt)}`);
  const backendType = bt ?? '';
  if (backendType !== BACKEND_VXLAN) return { publicIP, backendType, vni: undefined, vtepMAC: undefined };
  const data = field(raw, 'BackendData');
  if (!isObject(data)) throw new FlannelFormatError(`vxlan lease has no BackendData object: ${JSON.stringify(data)}`);
  const vniRaw = field(data, 'VNI');
  const vni = vniRaw === undefined ? undefined : uintOf('BackendData.VNI', vniRaw, MAX_LEASE_VNI);
  const macRaw = field(data, 'VtepMAC');
  let vtepMAC: Uint8Array;
  try {
    if (typeof macRaw !== 'string') throw new TypeError('not a string');
    vtepMAC = parseMac(macRaw.replace(/-/g, ':'));
  } catch {
    throw new FlannelFormatError(`BackendData.VtepMAC is not a MAC address: ${JSON.stringify(macRaw)}`);
  }
  return { publicIP, backendType, vni, vtepMAC };
}

/**
 * Subnets that may be leased and are free, in order, at most `limit`:
 * flannel takes one at random among the first FREE_SUBNET_CHOICES.
 */
export function freeSubnets(cfg: NetworkConfig, taken: readonly Cidr[], limit = FREE_SUBNET_CHOICES): Cidr[] {
  const size = 2 ** (32 - cfg.subnetLen);
  const out: Cidr[] = [];
  for (let net = cfg.subnetMin; net <= cfg.subnetMax && out.length < limit; net += size) {
    const c = cidr(net, cfg.subnetLen);
    if (!taken.some((t) => overlapsCidr(t, c))) out.push(c);
  }
  return out;
}

export function overlapsCidr(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.net & mask(p)) >>> 0) === ((b.net & mask(p)) >>> 0);
}

/** Whether `subnet` is one this network config lets a node lease. */
export function leasable(cfg: NetworkConfig, subnet: Cidr): boolean {
  return subnet.prefix === cfg.subnetLen && subnet.net >= cfg.subnetMin && subnet.net <= cfg.subnetMax;
}
