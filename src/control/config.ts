/**
 * Agent configuration: parsed and validated completely before the agent
 * changes anything on the machine. Every error names the field and quotes
 * the value.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { IPv4CidrRange, Validator } from 'ip-num';
import { formatIpv4, parseIpv4 } from '../wire/ipv4.js';
import { formatMac, parseMac } from '../wire/mac.js';
import { VXLAN_DEFAULT_PORT, VXLAN_DEFAULT_VNI } from '../wire/vxlan.js';
import { parseStoreConfig, type StoreConfig } from './store/config.js';
import { MAX_PREFIXES } from '../dataplane/peers.js';
import { delQueueDir } from '../cni/del-queue.js';
import { DATA_DIR_ENTRIES, socketLockPath } from './state.js';

export const DEFAULT_DEVICE = 'tulle0';
export const DEFAULT_SOCKET = '/run/tulle/tulle.sock';
export const DEFAULT_DATA_DIR = '/var/lib/tulle';
export const DEFAULT_SUBNET_FILE = '/run/tulle/subnet.env';
export const MAX_WORKERS = 64;
/** Peers the agent's peer table holds. */
export const PEER_CAPACITY = 4096;
/** sun_path holds 108 bytes with the terminating NUL. */
export const MAX_SOCKET_PATH = 107;
export const MIN_MTU = 576;
export const MAX_MTU = 65535 - 64;
export const MAX_VNI = 0xffffff;
/** The kernel's PM QoS CPU latency range (PM_QOS_DEFAULT_VALUE is 2000 s). */
export const MAX_CPU_LATENCY_US = 2_000_000_000;
export const MAX_CPU_LATENCY_IDLE_MS = 3_600_000;
/** Highest CPU number `cpus` takes (CPU_SETSIZE - 1). */
export const MAX_CPU = 1023;

/**
 * One forwarding worker per two cores, at least one. The other half of the machine runs what a
 * forwarder feeds: the kernel's TCP/IP work on both sides of the TUN device and the pods
 * themselves. On the 2-core lab machine one worker per agent carried a single TCP stream at
 * 5.4-5.9 Gbit/s where two carried 1.4-3.4 (README, Benchmarks): every extra busy thread competes
 * with the kernel for the same cores.
 */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(MAX_WORKERS, Math.floor(os.availableParallelism() / 2)));
}

export class ConfigError extends Error {
  readonly code = 'ECONFIG';
  constructor(
    readonly field: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(`config field "${field}": ${reason} (got ${JSON.stringify(value)})`);
    this.name = 'ConfigError';
  }
}

export interface Cidr {
  /** Network address, host-order u32. */
  readonly net: number;
  readonly prefix: number;
  readonly text: string;
}

export interface PeerConfig {
  readonly vtepIP: number;
  readonly vtepMAC: Uint8Array;
  readonly subnet: Cidr;
}

/** An IPv4 address and TCP port to listen on. */
export interface ListenAddress {
  readonly ip: number;
  readonly port: number;
  /** As written: `a.b.c.d:port`. */
  readonly text: string;
}

export interface AgentConfig {
  /**
   * The cluster network. Required with the static store; with etcd it comes
   * from `<prefix>/config` and, when given here too, must match it.
   */
  readonly network: Cidr | undefined;
  /**
   * This node's pod subnet. Required with the static store; with etcd it is
   * leased (and kept across restarts), or, when given here, exactly this one.
   */
  readonly subnet: Cidr | undefined;
  readonly vtepIP: number;
  /** Absent: generated once and kept in `dataDir`. */
  readonly vtepMAC: Uint8Array | undefined;
  readonly vni: number;
  readonly port: number;
  readonly device: string;
  /** Absent: the underlay interface's MTU minus the VXLAN overhead. */
  readonly mtu: number | undefined;
  readonly workers: number;
  readonly socket: string;
  readonly dataDir: string;
  readonly subnetFile: string;
  readonly logLevel: string;
  /** Kernel offloads (TUN TSO + virtio-net header, UDP_SEGMENT, UDP_GRO) where the kernel has them. */
  readonly offloads: boolean;
  /**
   * When set, the agent holds a CPU wake-up latency request of this many microseconds
   * (/dev/cpu_dma_latency) while it runs, so idle CPUs stay in shallow states and wake fast.
   * Applies to the whole machine. Absent: the machine's own idle policy.
   */
  readonly cpuLatencyUs: number | undefined;
  /**
   * With cpuLatencyUs: hold the request only while packets flow, withdrawing it after this many
   * milliseconds without any (cpu-latency.ts, TrafficLatencyHold). Absent: for as long as the
   * agent runs.
   */
  readonly cpuLatencyIdleMs: number | undefined;
  /**
   * CPUs the forwarding workers run on: worker i is pinned to cpus[i % cpus.length]. Lets the
   * workers share CPUs with the pods they serve (a hand-off on one CPU costs a context switch, one
   * across CPUs wakes the other CPU) or keep away from them. Absent: the scheduler places them.
   */
  readonly cpus: readonly number[] | undefined;
  /**
   * Where the metrics are also served over TCP (GET /metrics, Prometheus text format), e.g.
   * 127.0.0.1:9472 or 0.0.0.0:9472. Absent: only on the API socket.
   */
  readonly metricsAddress: ListenAddress | undefined;
  readonly peers: readonly PeerConfig[];
  /** Where peers and this node's subnet come from (default: static). */
  readonly store: StoreConfig;
}

/** The config once the store has settled the network and this node's subnet. */
export interface NodeConfig extends AgentConfig {
  readonly network: Cidr;
  readonly subnet: Cidr;
}

const FIELDS = [
  'network', 'subnet', 'vtepIP', 'vtepMAC', 'vni', 'port', 'device', 'mtu', 'workers',
  'socket', 'dataDir', 'subnetFile', 'logLevel', 'peers', 'offloads', 'cpuLatencyUs', 'cpuLatencyIdleMs', 'cpus', 'metricsAddress',
  'store',
] as const;
/** Fields that the etcd store takes from `<prefix>/config` and the leases instead. */
const STORE_OWNED_FIELDS = ['vni', 'port', 'peers'] as const;
const PEER_FIELDS = ['vtepIP', 'vtepMAC', 'subnet'] as const;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

export function parseCidr(field: string, value: unknown): Cidr {
  // ip-num reads "/016" as /16; the text is used verbatim (routes, logs), so only the plain form passes.
  if (typeof value !== 'string' || !/\/(?:0|[1-9]\d?)$/.test(value) || !Validator.isValidIPv4CidrNotation(value)[0]) {
    throw new ConfigError(field, value, 'not an IPv4 CIDR such as "10.244.0.0/16"');
  }
  if (!Validator.isValidIPv4CidrRange(value)[0]) {
    throw new ConfigError(field, value, 'has host bits set; give the network address');
  }
  const r = IPv4CidrRange.fromCidr(value);
  const prefix = Number(r.cidrPrefix.getValue());
  if (prefix < 1 || prefix > 30) throw new ConfigError(field, value, 'prefix length must be 1..30');
  return { net: Number(r.getFirst().getValue()) >>> 0, prefix, text: value };
}

export function contains(outer: Cidr, inner: Cidr): boolean {
  if (inner.prefix < outer.prefix) return false;
  const mask = (0xffffffff << (32 - outer.prefix)) >>> 0;
  return ((inner.net & mask) >>> 0) === outer.net;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return contains(a, b) || contains(b, a);
}

function ipField(field: string, value: unknown): number {
  try {
    if (typeof value !== 'string') throw new TypeError('not a string');
    const ip = parseIpv4(value);
    if (ip === 0 || ip >>> 24 === 127 || ip >>> 28 >= 14) throw new TypeError('not a unicast address');
    return ip;
  } catch (e) {
    throw new ConfigError(field, value, `not a unicast IPv4 address (${(e as Error).message})`);
  }
}

function macField(field: string, value: unknown): Uint8Array {
  try {
    if (typeof value !== 'string') throw new TypeError('not a string');
    const mac = parseMac(value);
    if (mac[0] & 1) throw new TypeError('multicast bit set');
    if (mac.every((b) => b === 0)) throw new TypeError('all zeros');
    return mac;
  } catch (e) {
    throw new ConfigError(field, value, `not a unicast MAC address such as "02:aa:00:00:00:01" (${(e as Error).message})`);
  }
}

export function intField(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(field, value, `must be an integer ${min}..${max}`);
  }
  return value;
}

export function pathField(field: string, value: unknown): string {
  if (typeof value !== 'string' || !value.startsWith('/') || value.includes('\0')) {
    throw new ConfigError(field, value, 'must be an absolute path');
  }
  return value;
}

/** An absolute path naming a file (not ending in "/", "/." or "/.."). */
export function filePathField(field: string, value: unknown): string {
  const path = pathField(field, value);
  if (/\/(\.{0,2})$/.test(path)) throw new ConfigError(field, value, 'must name a file, not a directory');
  return path;
}

/** Linux interface name rules: 1..15 bytes, no '/', ':' or whitespace, not "." or "..". */
export function checkIfName(field: string, value: unknown): string {
  if (
    typeof value !== 'string' || value.length === 0 || Buffer.byteLength(value) > 15 ||
    /[/:%\s\0]/.test(value) || value === '.' || value === '..'
  ) {
    throw new ConfigError(field, value, 'must be an interface name of 1..15 characters without "/", ":", "%" or spaces');
  }
  return value;
}

export function rejectUnknown(obj: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      throw new ConfigError(`${where}${k}`, obj[k], `unknown field; known fields: ${allowed.join(', ')}`);
    }
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates a parsed JSON value; throws ConfigError naming the first bad field. */
export function validateConfig(raw: unknown): AgentConfig {
  if (!isObject(raw)) throw new ConfigError('(top level)', raw, 'must be a JSON object');
  rejectUnknown(raw, FIELDS, '');
  const store = parseStoreConfig(raw.store);
  const required = store.type === 'static' ? (['network', 'subnet', 'vtepIP'] as const) : (['vtepIP'] as const);
  for (const f of required) {
    if (raw[f] === undefined) throw new ConfigError(f, undefined, 'is required');
  }
  if (store.type !== 'static') {
    for (const f of STORE_OWNED_FIELDS) {
      if (raw[f] !== undefined) throw new ConfigError(f, raw[f], `comes from the ${store.type} store (${store.prefix}/config and the subnet leases); remove it`);
    }
  }
  const network = raw.network === undefined ? undefined : parseCidr('network', raw.network);
  const subnet = raw.subnet === undefined ? undefined : parseCidr('subnet', raw.subnet);
  if (network && subnet && (!contains(network, subnet) || subnet.prefix === network.prefix)) {
    throw new ConfigError('subnet', raw.subnet, `must be a smaller subnet inside network ${network.text}`);
  }
  const vtepIP = ipField('vtepIP', raw.vtepIP);
  const vtepMAC = raw.vtepMAC === undefined ? undefined : macField('vtepMAC', raw.vtepMAC);
  const vni = raw.vni === undefined ? VXLAN_DEFAULT_VNI : intField('vni', raw.vni, 0, MAX_VNI);
  const port = raw.port === undefined ? VXLAN_DEFAULT_PORT : intField('port', raw.port, 1, 65535);
  const device = raw.device === undefined ? DEFAULT_DEVICE : checkIfName('device', raw.device);
  const mtu = raw.mtu === undefined ? undefined : intField('mtu', raw.mtu, MIN_MTU, MAX_MTU);
  const workers = raw.workers === undefined ? defaultWorkers() : intField('workers', raw.workers, 1, MAX_WORKERS);
  const socket = raw.socket === undefined ? DEFAULT_SOCKET : filePathField('socket', raw.socket);
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new ConfigError('socket', socket, `is ${Buffer.byteLength(socket)} bytes; a Unix socket path has at most ${MAX_SOCKET_PATH}`);
  }
  const dataDir = raw.dataDir === undefined ? DEFAULT_DATA_DIR : pathField('dataDir', raw.dataDir);
  const subnetFile = raw.subnetFile === undefined ? DEFAULT_SUBNET_FILE : filePathField('subnetFile', raw.subnetFile);
  checkPathsApart({ socket, subnetFile, dataDir });
  let logLevel = 'info';
  if (raw.logLevel !== undefined) {
    if (typeof raw.logLevel !== 'string' || !LOG_LEVELS.includes(raw.logLevel)) {
      throw new ConfigError('logLevel', raw.logLevel, `must be one of ${LOG_LEVELS.join(', ')}`);
    }
    logLevel = raw.logLevel;
  }
  if (raw.offloads !== undefined && typeof raw.offloads !== 'boolean') {
    throw new ConfigError('offloads', raw.offloads, 'must be true or false');
  }
  const offloads = raw.offloads ?? true;
  const cpuLatencyUs = raw.cpuLatencyUs === undefined ? undefined : intField('cpuLatencyUs', raw.cpuLatencyUs, 0, MAX_CPU_LATENCY_US);
  const cpuLatencyIdleMs = raw.cpuLatencyIdleMs === undefined ? undefined : intField('cpuLatencyIdleMs', raw.cpuLatencyIdleMs, 1, MAX_CPU_LATENCY_IDLE_MS);
  if (cpuLatencyIdleMs !== undefined && cpuLatencyUs === undefined) {
    throw new ConfigError('cpuLatencyIdleMs', raw.cpuLatencyIdleMs, 'applies only together with "cpuLatencyUs"');
  }
  const cpus = raw.cpus === undefined ? undefined : cpusField('cpus', raw.cpus);
  const metricsAddress = raw.metricsAddress === undefined ? undefined : listenAddressField('metricsAddress', raw.metricsAddress);
  const peersRaw = raw.peers === undefined ? [] : raw.peers;
  if (!Array.isArray(peersRaw)) throw new ConfigError('peers', raw.peers, 'must be an array');
  const peers = network && subnet ? peersRaw.map((p, i) => parsePeer(p, i, network, subnet, vtepIP)) : [];
  checkPeerSet(peers);
  return {
    network, subnet, vtepIP, vtepMAC, vni, port, device, mtu, workers, socket, dataDir, subnetFile, logLevel, offloads, cpuLatencyUs,
    cpuLatencyIdleMs, cpus, metricsAddress, peers, store,
  };
}

/** `a.b.c.d:port`: an IPv4 address of this host (0.0.0.0 for all) and a TCP port 1..65535. */
function listenAddressField(name: string, v: unknown): ListenAddress {
  const m = typeof v === 'string' ? /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(v) : null;
  if (!m) throw new ConfigError(name, v, 'must be "IPv4:port", e.g. "127.0.0.1:9472" or "0.0.0.0:9472"');
  let ip: number;
  try {
    ip = parseIpv4(m[1]!);
  } catch (e) {
    throw new ConfigError(name, v, `has an invalid IPv4 address (${(e as Error).message})`);
  }
  if (ip >>> 28 >= 14) throw new ConfigError(name, v, 'has a multicast or reserved address; give one of this host\'s addresses or 0.0.0.0');
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new ConfigError(name, v, 'has a port outside 1..65535');
  return { ip, port, text: v as string };
}

/** A non-empty list of distinct CPU numbers (0..MAX_CPU). */
function cpusField(name: string, v: unknown): number[] {
  if (!Array.isArray(v) || v.length === 0) throw new ConfigError(name, v, 'must be a non-empty array of CPU numbers, e.g. [0] or [0, 1]');
  const seen = new Set<number>();
  return v.map((c, i) => {
    const cpu = intField(`${name}[${i}]`, c, 0, MAX_CPU);
    if (seen.has(cpu)) throw new ConfigError(`${name}[${i}]`, c, 'appears twice');
    seen.add(cpu);
    return cpu;
  });
}

/**
 * Checks `cpus` against the CPUs the agent may run on (`allowed`, ascending: its main thread's set,
 * which the workers inherit); throws ConfigError naming the first CPU outside them.
 */
export function checkCpusAllowed(cpus: readonly number[], allowed: readonly number[]): void {
  cpus.forEach((cpu, i) => {
    if (!allowed.includes(cpu)) throw new ConfigError(`cpus[${i}]`, cpu, `is not a CPU the agent may run on (its allowed CPUs: ${formatCpuList(allowed)})`);
  });
}

/** 0,1,2,5 -> "0-2,5". */
export function formatCpuList(cpus: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < cpus.length; ) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === cpus[j] + 1) j++;
    parts.push(j === i ? String(cpus[i]) : `${cpus[i]}-${cpus[j]}`);
    i = j + 1;
  }
  return parts.length > 0 ? parts.join(',') : 'none';
}

function parsePeer(p: unknown, i: number, network: Cidr, own: Cidr, ownIP: number): PeerConfig {
  const where = `peers[${i}]`;
  if (!isObject(p)) throw new ConfigError(where, p, 'must be an object with vtepIP, vtepMAC and subnet');
  rejectUnknown(p, PEER_FIELDS, `${where}.`);
  for (const f of PEER_FIELDS) if (p[f] === undefined) throw new ConfigError(`${where}.${f}`, undefined, 'is required');
  const subnet = parseCidr(`${where}.subnet`, p.subnet);
  if (!contains(network, subnet)) {
    throw new ConfigError(`${where}.subnet`, p.subnet, `must be inside network ${network.text}`);
  }
  if (overlaps(subnet, own)) throw new ConfigError(`${where}.subnet`, p.subnet, `overlaps this node's subnet ${own.text}`);
  const vtepIP = ipField(`${where}.vtepIP`, p.vtepIP);
  if (vtepIP === ownIP) throw new ConfigError(`${where}.vtepIP`, p.vtepIP, "is this node's own vtepIP");
  return { vtepIP, vtepMAC: macField(`${where}.vtepMAC`, p.vtepMAC), subnet };
}

/**
 * The files the agent writes must be distinct: the socket (and the `.lock` and `.del-queue` next
 * to it), the subnet file, and the data directory's own entries.
 */
function checkPathsApart(p: { socket: string; subnetFile: string; dataDir: string }): void {
  const norm = (x: string) => x.replace(/\/+/g, '/').replace(/(.)\/$/, '$1');
  const socket = norm(p.socket);
  const subnetFile = norm(p.subnetFile);
  const dataDir = norm(p.dataDir);
  const socketFiles = [socket, socketLockPath(socket), delQueueDir(socket)];
  if (socketFiles.includes(subnetFile)) throw new ConfigError('subnetFile', p.subnetFile, `is a file the agent keeps for its socket ${p.socket}`);
  const inData = DATA_DIR_ENTRIES.map((n) => `${dataDir === '/' ? '' : dataDir}/${n}`);
  for (const [field, path] of [['socket', socket], ['subnetFile', subnetFile]] as const) {
    if (path === dataDir || inData.includes(path)) throw new ConfigError(field, field === 'socket' ? p.socket : p.subnetFile, `is the data directory or one of its entries (dataDir ${p.dataDir})`);
  }
}

/** Checks the peers against each other (distinct, non-overlapping subnets) and the peer table's limits. */
export function checkPeerSet(peers: readonly PeerConfig[]): void {
  if (peers.length > PEER_CAPACITY) throw new ConfigError('peers', `${peers.length} entries`, `holds more peers than the peer table's ${PEER_CAPACITY}`);
  const lengths = [...new Set(peers.map((q) => q.subnet.prefix))].sort((a, b) => a - b);
  if (lengths.length > MAX_PREFIXES) {
    throw new ConfigError('peers', lengths.map((l) => `/${l}`).join(' '), `uses ${lengths.length} subnet prefix lengths; the peer table looks up at most ${MAX_PREFIXES}`);
  }
  for (let i = 0; i < peers.length; i++) {
    for (let j = 0; j < i; j++) {
      if (overlaps(peers[i].subnet, peers[j].subnet)) {
        throw new ConfigError(`peers[${i}].subnet`, peers[i].subnet.text, `overlaps peers[${j}].subnet ${peers[j].subnet.text}`);
      }
    }
  }
}

/** Fields a running agent takes from a reloaded config; any other change needs a restart. */
export const RELOADABLE_FIELDS = ['peers', 'logLevel'] as const;

/**
 * The fields of `next` that differ from `running` and that a running agent cannot take over
 * (everything but RELOADABLE_FIELDS), each as `"field": old -> new`.
 */
export function restartOnlyChanges(running: AgentConfig, next: AgentConfig): string[] {
  const text = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? Array.from(x) : x)) ?? 'absent';
  const out: string[] = [];
  for (const field of FIELDS) {
    if ((RELOADABLE_FIELDS as readonly string[]).includes(field)) continue;
    const [a, b] = [running[field], next[field]];
    const show = (v: unknown) => (field === 'vtepIP' ? formatIpv4(v as number) : describeValue(v));
    if (text(a) !== text(b)) out.push(`"${field}": ${show(a)} -> ${show(b)}`);
  }
  return out;
}

/** A config value as a reader wrote it: CIDRs and addresses as text, MACs as hex. */
function describeValue(v: unknown): string {
  if (v === undefined) return '(absent)';
  if (v instanceof Uint8Array) return formatMac(v);
  if (typeof v === 'object' && v !== null && 'text' in v) return String((v as { text: unknown }).text);
  return JSON.stringify(v);
}

/** Reads and validates a config file. */
export function loadConfig(path: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ConfigError('--config', path, `cannot read file: ${err.code ?? err.message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError('--config', path, `is not valid JSON: ${(e as Error).message}`);
  }
  return validateConfig(raw);
}

/** The overlay address of this node: the subnet's network address, put on the TUN device as /32. */
export function overlayAddress(cfg: NodeConfig): number {
  return cfg.subnet.net;
}

export function describe(cfg: AgentConfig): Record<string, unknown> {
  return {
    network: cfg.network?.text,
    subnet: cfg.subnet?.text,
    vtepIP: formatIpv4(cfg.vtepIP),
    vni: cfg.vni,
    port: cfg.port,
    device: cfg.device,
    workers: cfg.workers,
    offloads: cfg.offloads,
    cpuLatencyUs: cfg.cpuLatencyUs ?? null,
    cpuLatencyIdleMs: cfg.cpuLatencyIdleMs ?? null,
    cpus: cfg.cpus ?? null,
    store: cfg.store.type,
  };
}
