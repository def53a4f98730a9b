/**
 * The ADD result in one internal shape (the 1.1.0 one) and its encoding for each spec version:
 *
 *   0.3.0, 0.3.1, 0.4.0   ips[] carry "version": "4" | "6"
 *   1.0.0                 no ips[].version
 *   1.1.0                 interfaces[].mtu / socketPath / pciID, routes[].mtu / advmss /
 *                         priority / table / scope
 *
 * `parseResult` reads a result of any of those versions (a prevResult, a delegated IPAM result)
 * into the internal shape.
 */
import { CniError, ERR, compareVersions } from './spec.js';

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  /** Netns path for interfaces inside the container; absent for host interfaces. */
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface CniIp {
  /** CIDR: the address with its prefix length, e.g. "10.244.1.5/24". */
  address: string;
  gateway?: string;
  /** Index into interfaces. */
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  interfaces: CniInterface[];
  ips: CniIp[];
  routes: CniRoute[];
  dns?: CniDns;
}

const ROUTE_FIELDS_1_1 = ['mtu', 'advmss', 'priority', 'table', 'scope'] as const;
const IFACE_FIELDS_1_1 = ['mtu', 'socketPath', 'pciID'] as const;

/** The result as the runtime expects it for `version`, with `cniVersion` first. */
export function encodeResult(r: CniResult, version: string): Record<string, unknown> {
  const v11 = compareVersions(version, '1.1.0') >= 0;
  const v10 = compareVersions(version, '1.0.0') >= 0;
  const interfaces = r.interfaces.map((i) => {
    const o: Record<string, unknown> = { name: i.name };
    if (i.mac !== undefined) o.mac = i.mac;
    if (i.sandbox !== undefined && i.sandbox !== '') o.sandbox = i.sandbox;
    if (v11) for (const f of IFACE_FIELDS_1_1) if (i[f] !== undefined) o[f] = i[f];
    return o;
  });
  const ips = r.ips.map((ip) => {
    const o: Record<string, unknown> = {};
    if (!v10) o.version = ip.address.includes(':') ? '6' : '4';
    o.address = ip.address;
    if (ip.gateway !== undefined) o.gateway = ip.gateway;
    if (ip.interface !== undefined) o.interface = ip.interface;
    return o;
  });
  const routes = r.routes.map((rt) => {
    const o: Record<string, unknown> = { dst: rt.dst };
    if (rt.gw !== undefined) o.gw = rt.gw;
    if (v11) for (const f of ROUTE_FIELDS_1_1) if (rt[f] !== undefined) o[f] = rt[f];
    return o;
  });
  const out: Record<string, unknown> = { cniVersion: version, interfaces, ips, routes };
  if (r.dns && Object.keys(r.dns).length > 0) out.dns = r.dns;
  else out.dns = {};
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bad(where: string, what: string, value: unknown): never {
  throw new CniError(ERR.DECODING_FAILURE, `${where}: ${what} (got ${JSON.stringify(value)})`);
}

function str(where: string, v: unknown): string {
  if (typeof v !== 'string') bad(where, 'must be a string', v);
  return v;
}

function optStr(where: string, v: unknown): string | undefined {
  return v === undefined || v === null ? undefined : str(where, v);
}

function optNum(where: string, v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) bad(where, 'must be an integer', v);
  return v;
}

function optStrings(where: string, v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) bad(where, 'must be a list of strings', v);
  return v as string[];
}

/** Reads a DNS object (config `dns`, or a result's `dns`). */
export function parseDns(where: string, v: unknown): CniDns | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) bad(where, 'must be an object', v);
  const d: CniDns = {};
  const ns = optStrings(`${where}.nameservers`, v.nameservers);
  const domain = optStr(`${where}.domain`, v.domain);
  const search = optStrings(`${where}.search`, v.search);
  const options = optStrings(`${where}.options`, v.options);
  if (ns) d.nameservers = ns;
  if (domain) d.domain = domain;
  if (search) d.search = search;
  if (options) d.options = options;
  return d;
}

/** Parses a result of spec version 0.3.0 or later (prevResult, or an IPAM plugin's answer). */
export function parseResult(where: string, raw: unknown): CniResult {
  if (!isObject(raw)) bad(where, 'must be a JSON object', raw);
  if (raw.ip4 !== undefined || raw.ip6 !== undefined) {
    bad(where, 'is a result of spec version 0.2.0 or older, which tulle does not read', raw.cniVersion);
  }
  const list = (k: string): unknown[] => {
    const v = raw[k];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) bad(`${where}.${k}`, 'must be a list', v);
    return v;
  };
  const interfaces = list('interfaces').map((x, i): CniInterface => {
    const w = `${where}.interfaces[${i}]`;
    if (!isObject(x)) bad(w, 'must be an object', x);
    const o: CniInterface = { name: str(`${w}.name`, x.name) };
    const mac = optStr(`${w}.mac`, x.mac);
    const sandbox = optStr(`${w}.sandbox`, x.sandbox);
    const mtu = optNum(`${w}.mtu`, x.mtu);
    const socketPath = optStr(`${w}.socketPath`, x.socketPath);
    const pciID = optStr(`${w}.pciID`, x.pciID);
    if (mac !== undefined) o.mac = mac;
    if (sandbox !== undefined) o.sandbox = sandbox;
    if (mtu !== undefined) o.mtu = mtu;
    if (socketPath !== undefined) o.socketPath = socketPath;
    if (pciID !== undefined) o.pciID = pciID;
    return o;
  });
  const ips = list('ips').map((x, i): CniIp => {
    const w = `${where}.ips[${i}]`;
    if (!isObject(x)) bad(w, 'must be an object', x);
    const o: CniIp = { address: str(`${w}.address`, x.address) };
    const gateway = optStr(`${w}.gateway`, x.gateway);
    const iface = optNum(`${w}.interface`, x.interface);
    if (gateway !== undefined) o.gateway = gateway;
    if (iface !== undefined) {
      if (iface < 0 || iface >= interfaces.length) bad(`${w}.interface`, `must index interfaces (0..${interfaces.length - 1})`, iface);
      o.interface = iface;
    }
    return o;
  });
  const routes = list('routes').map((x, i): CniRoute => {
    const w = `${where}.routes[${i}]`;
    if (!isObject(x)) bad(w, 'must be an object', x);
    const o: CniRoute = { dst: str(`${w}.dst`, x.dst) };
    const gw = optStr(`${w}.gw`, x.gw);
    if (gw !== undefined) o.gw = gw;
    for (const f of ROUTE_FIELDS_1_1) {
      const n = optNum(`${w}.${f}`, x[f]);
      if (n !== undefined) o[f] = n;
    }
    return o;
  });
  const r: CniResult = { interfaces, ips, routes };
  const dns = parseDns(`${where}.dns`, raw.dns);
  if (dns && Object.keys(dns).length > 0) r.dns = dns;
  return r;
}
