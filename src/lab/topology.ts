// The lab: a pod network on one machine, built from network namespaces.
//
//                         tl<name>-sw  (bridge br0, the underlay "switch")
//            n1 ┌────────────┴──────────────┐ n2  ...
//   tl<name>-n1 eth0 172.31.0.1/24     tl<name>-n2 eth0 172.31.0.2/24      (MTU 1500 unless underlayMtu)
//     pods 10.244.1.0/24, gw .1          pods 10.244.2.0/24, gw .1
//     tlv…  ── tl<name>-n1-p1 eth0 10.244.1.2 (ptp wiring, src/control/attach.ts)
//     tlv…  ── tl<name>-n1-p2 eth0 10.244.1.3
//
// How nodes reach each other's pods is the mode: 'tulle' runs an agent per node (the agent owns
// its TUN device and the cluster route); 'kernel-vxlan' configures flannel.1 the way flannel does;
// 'plain' routes each pod subnet via its node's underlay address (no encapsulation: the ceiling).
// A lab may also mix tulle and kernel-vxlan nodes (`nodeModes`), which is how interop is tested.
//
// With the etcd store (`store: 'etcd'`) the switch namespace also runs a real etcd on br0
// (172.31.0.254, src/lab/etcd.ts) holding flannel's network config; agents get no subnet, peers
// or MAC in their configs but lease a subnet through etcd, and each node's pods are wired once
// its agent says which subnet it got. Nodes can then join later (labAddNode), and agents and
// etcd can be stopped and started again (restart and outage experiments).
//
// Pods of tulle nodes are attached through the CNI plugin exactly as a runtime attaches them: the
// lab installs `tulle-cni` into its own CNI bin directory (`tulle install-cni`), writes each
// node's conflist, and runs the plugin in the node's namespace with CNI_* variables and the
// config on stdin; the node's agent allocates the address and wires the veth. Nodes without an
// agent (kernel-vxlan, plain) are wired directly with the same ptp layout (veth-p<i>, /32).
//
// Everything a lab creates is named tl<name>-* and recorded in /run/tulle-lab/<name>/state.json,
// written before anything is created; labDown works from that record and from `ip netns list`,
// so it also cleans up after a crash half-way through labUp.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { attachPod } from '../control/attach.js';
import { request as apiRequest } from '../control/api.js';
import { formatIpv4, parseIpv4 } from '../wire/ipv4.js';
import { LAB_ETCD_IP, etcdctl, startEtcd, stopEtcd, type LabEtcd } from './etcd.js';
import { installCni, conflist } from '../cli/install-cni.js';
import { cniRun, requestConfig } from './cni.js';
import type { ChildProcess } from 'node:child_process';
import { distScript, processArgv, spawnInNs, terminateProcesses } from '../util/exec.js';
import { FLANNEL_DEFAULT_PORT, FLANNEL_DEFAULT_VNI, VXLAN_OVERHEAD_IPV4, setTxChecksumOffload, setupKernelVxlan } from './kernel-vxlan.js';
import { addAddress, addBridge, addBridgePort, addVeth, createNetns, deleteNetns, ipIn, linkUp, listNetns, netnsPids, sysctl } from './netns.js';

export type LabMode = 'tulle' | 'kernel-vxlan' | 'plain';
export type NodeMode = LabMode;
export const LAB_MODES: readonly LabMode[] = ['tulle', 'kernel-vxlan', 'plain'];

export type LabStore = 'static' | 'etcd';
export const LAB_STORES: readonly LabStore[] = ['static', 'etcd'];
/** flannel's default etcd prefix, which the lab's agents use. */
export const LAB_ETCD_PREFIX = '/coreos.com/network';

export const LAB_STATE_ROOT = '/run/tulle-lab';
export const MAX_NODES = 50;
export const MAX_PODS = 50;
const CLUSTER_NETWORK = '10.244.0.0/16';
export const DEFAULT_UNDERLAY_MTU = 1500;
/** Smallest underlay MTU that leaves IPv4's minimum MTU (576) for pods after VXLAN overhead. */
export const MIN_UNDERLAY_MTU = 576 + VXLAN_OVERHEAD_IPV4;
export const MAX_UNDERLAY_MTU = 65535;
/** Agent config fields the lab derives from its plan; `agent` overrides may not replace them. */
const LAB_OWNED_AGENT_FIELDS = ['network', 'subnet', 'vtepIP', 'vtepMAC', 'vni', 'port', 'device', 'socket', 'dataDir', 'subnetFile', 'peers'];
const BRIDGE = 'br0';
const TUN_DEVICE = 'tulle0';
const AGENT_SCRIPT = 'src/cli/tulle.js';
const AGENT_READY_TIMEOUT_MS = 30_000;
const AGENT_POLL_MS = 100;
const LOG_TAIL_CHARS = 1_500;
const LAB_NAME_RE = /^[a-z0-9]{1,16}$/;
/** The conflist version the lab writes: what podman 4.3 and Debian's plugins accept too. */
const LAB_CNI_VERSION = '1.0.0';

export interface LabOptions {
  name: string;
  nodes: number;
  pods: number;
  /** Where agents get peers: the config (default) or an etcd the lab runs. */
  store?: LabStore;
  /** etcd store: the agents' subnet lease TTL (default: flannel's 24 h). */
  leaseTTLSeconds?: number;
  mode: LabMode;
  /** Per-node override (index 0 = node 1): mixes 'tulle' and 'kernel-vxlan' nodes. */
  nodeModes?: readonly NodeMode[];
  /**
   * Kernel VXLAN nodes in a lab with tulle nodes turn tx checksum offload off on their underlay
   * (as a real NIC finishes checksums); false keeps veth's defaults, so their inner checksums
   * arrive unfinished. Default true.
   */
  kernelTxChecksumOff?: boolean;
  /** MTU of the underlay links (default 1500); overlay devices and pods get it minus the VXLAN overhead. */
  underlayMtu?: number;
  /**
   * Raw agent config fields written over the lab's (e.g. `workers`, `mtu`, `logLevel`), for
   * benchmarks. Only the fields given are written, so a field the agent does not know yet is
   * refused by the agent, not here. Fields the lab derives from its plan cannot be overridden.
   */
  agent?: Readonly<Record<string, unknown>>;
}

export interface LabAgent {
  pid: number;
  configFile: string;
  logFile: string;
  socket: string;
}

export interface LabNode {
  index: number;
  /** tulle nodes: the conflist the node's pods are attached with. */
  cniConflist?: string;
  ns: string;
  mode: NodeMode;
  underlayIp: string;
  subnet: string;
  gateway: string;
  vtepMAC: string;
  agent?: LabAgent;
}

export interface LabPod {
  /** Also the pod's CNI_CONTAINERID. */
  ns: string;
  node: number;
  index: number;
  ip: string;
  hostIfname: string;
}

export interface LabState {
  version: 1;
  name: string;
  mode: LabMode;
  createdAt: string;
  switchNs: string;
  store?: LabStore;
  etcd?: LabEtcd;
  leaseTTLSeconds?: number;
  /** Pods per node (nodes added later get as many). */
  podsPerNode?: number;
  /** Every namespace the lab creates, recorded before creation. */
  namespaces: string[];
  /** The CNI bin directory holding the lab's `tulle` plugin (when it has tulle nodes). */
  cniBin?: string;
  nodes: LabNode[];
  pods: LabPod[];
  kernelTxChecksumOff?: boolean;
  /** Absent in states written before it existed: DEFAULT_UNDERLAY_MTU. */
  underlayMtu?: number;
  agent?: Record<string, unknown>;
}

export class LabError extends Error {
  readonly code = 'ERR_LAB';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LabError';
  }
}

export const labPrefix = (name: string): string => `tl${name}-`;
export const labStateDir = (name: string): string => join(LAB_STATE_ROOT, name);
const statePath = (name: string): string => join(labStateDir(name), 'state.json');

export function checkLabName(name: string): string {
  if (!LAB_NAME_RE.test(name)) throw new LabError(`invalid lab name ${JSON.stringify(name)} (1..16 of [a-z0-9])`);
  return name;
}

function checkCount(what: string, n: number, max: number): void {
  if (!Number.isInteger(n) || n < 1 || n > max) throw new LabError(`invalid ${what} count ${JSON.stringify(n)} (1..${max})`);
}

/** The addressing plan: node k has underlay 172.31.0.k and pods 10.244.k.0/24. */
export function planLab(o: LabOptions): LabState {
  checkLabName(o.name);
  checkCount('node', o.nodes, MAX_NODES);
  checkCount('pod', o.pods, MAX_PODS);
  if (!LAB_MODES.includes(o.mode)) throw new LabError(`invalid lab mode ${JSON.stringify(o.mode)} (${LAB_MODES.join('|')})`);
  const store = o.store ?? 'static';
  if (!LAB_STORES.includes(store)) throw new LabError(`invalid store ${JSON.stringify(o.store)} (${LAB_STORES.join('|')})`);
  const underlayMtu = o.underlayMtu ?? DEFAULT_UNDERLAY_MTU;
  if (!Number.isInteger(underlayMtu) || underlayMtu < MIN_UNDERLAY_MTU || underlayMtu > MAX_UNDERLAY_MTU) {
    throw new LabError(`invalid underlay MTU ${JSON.stringify(o.underlayMtu)} (${MIN_UNDERLAY_MTU}..${MAX_UNDERLAY_MTU})`);
  }
  const owned = Object.keys(o.agent ?? {}).filter((k) => LAB_OWNED_AGENT_FIELDS.includes(k));
  if (owned.length > 0) throw new LabError(`agent overrides may not set ${owned.join(', ')} (the lab derives them)`);
  const modes = o.nodeModes ?? Array.from({ length: o.nodes }, () => o.mode);
  if (store === 'etcd' && modes.some((m) => m !== 'tulle')) throw new LabError('the etcd store needs every node in mode "tulle"');
  if (modes.length !== o.nodes) throw new LabError(`nodeModes has ${modes.length} entries for ${o.nodes} nodes`);
  for (const m of modes) {
    if (!LAB_MODES.includes(m)) throw new LabError(`invalid node mode ${JSON.stringify(m)} (${LAB_MODES.join('|')})`);
    if (m === 'plain' && modes.some((x) => x !== 'plain')) throw new LabError(`mode "plain" cannot be mixed with overlay nodes`);
  }
  const p = `tl${o.name}`;
  const nodes: LabNode[] = modes.map((mode, i) => planNode(o.name, i + 1, mode, store));
  const pods: LabPod[] = nodes.flatMap((n) => planPods(n, o.pods));
  const switchNs = `${p}-sw`;
  return {
    version: 1, name: o.name, mode: o.mode, createdAt: new Date().toISOString(), switchNs, store, podsPerNode: o.pods,
    ...(o.leaseTTLSeconds !== undefined ? { leaseTTLSeconds: o.leaseTTLSeconds } : {}),
    namespaces: [switchNs, ...nodes.map((n) => n.ns), ...pods.map((q) => q.ns)], nodes, pods, underlayMtu,
    ...(o.agent === undefined ? {} : { agent: { ...o.agent } }),
    ...(o.kernelTxChecksumOff !== undefined ? { kernelTxChecksumOff: o.kernelTxChecksumOff } : {}),
  };
}

/** Node k: underlay 172.31.0.k; with the static store also pods 10.244.k.0/24 and a fixed MAC. */
function planNode(name: string, k: number, mode: NodeMode, store: LabStore): LabNode {
  const ns = `tl${name}-n${k}`;
  if (store === 'etcd') return { index: k, ns, mode, underlayIp: `172.31.0.${k}`, subnet: '', gateway: '', vtepMAC: '' };
  return {
    index: k, ns, mode, underlayIp: `172.31.0.${k}`, subnet: `10.244.${k}.0/24`, gateway: `10.244.${k}.1`,
    vtepMAC: `02:aa:00:00:00:${k.toString(16).padStart(2, '0')}`,
  };
}

/** Pods of node n: names now, addresses (.2, .3, ...) once the node's subnet is known. */
function planPods(n: LabNode, count: number): LabPod[] {
  return Array.from({ length: count }, (_, i) => ({
    ns: `${n.ns}-p${i + 1}`, node: n.index, index: i + 1, ip: n.subnet === '' ? '' : hostInSubnet(n.subnet, i + 2), hostIfname: `veth-p${i + 1}`,
  }));
}

/** The `offset`-th address of a subnet, e.g. ('10.244.7.0/24', 2) → '10.244.7.2'. */
function hostInSubnet(subnet: string, offset: number): string {
  return formatIpv4((parseIpv4(subnet.split('/')[0] ?? '') + offset) >>> 0);
}

async function saveState(s: LabState): Promise<void> {
  await writeFile(statePath(s.name), JSON.stringify(s, null, 2) + '\n');
}

/** The lab's recorded state, or null when there is none (or it is unreadable). */
export async function readLabState(name: string): Promise<LabState | null> {
  try {
    return JSON.parse(await readFile(statePath(checkLabName(name)), 'utf8')) as LabState;
  } catch {
    return null;
  }
}

const underlayMtuOf = (s: LabState): number => s.underlayMtu ?? DEFAULT_UNDERLAY_MTU;

async function buildNode(s: LabState, n: LabNode, podMtu: number): Promise<void> {
  await buildUnderlay(s, n);
  await attachPods(s, n, podMtu);
}

/** The node's namespace, plugged into the switch with its underlay address. */
async function buildUnderlay(s: LabState, n: LabNode): Promise<void> {
  await createNetns(n.ns);
  await addVeth({ ns: n.ns, ifname: 'eth0', peerNs: s.switchNs, peerIfname: `n${n.index}`, mtu: underlayMtuOf(s) });
  await addBridgePort(s.switchNs, BRIDGE, `n${n.index}`);
  await addAddress(n.ns, 'eth0', `${n.underlayIp}/24`);
  await linkUp(n.ns, 'eth0');
  await sysctl(n.ns, 'net.ipv4.ip_forward', '1');
}

async function attachPods(s: LabState, n: LabNode, podMtu: number): Promise<void> {
  for (const pod of s.pods.filter((q) => q.node === n.index)) {
    await createNetns(pod.ns);
    // tulle nodes' pods are attached through the CNI plugin once the agent runs.
    if (n.mode !== 'tulle') {
      await attachPod({ nodeNs: n.ns, podNetns: pod.ns, ifname: 'eth0', hostIfname: pod.hostIfname, podIp: pod.ip, gatewayIp: n.gateway, mtu: podMtu });
    }
  }
}

/** Writes the node's conflist (tulle only; the lab does not publish ports) and returns its path. */
async function writeNodeConflist(s: LabState, n: LabNode): Promise<string> {
  const file = join(labStateDir(s.name), `n${n.index}`, 'net.d', '10-tulle.conflist');
  await mkdir(dirname(file), { recursive: true });
  const list = conflist({ network: `tl${s.name}`, cniVersion: LAB_CNI_VERSION, socket: n.agent!.socket, portmap: false });
  await writeFile(file, JSON.stringify(list, null, 2) + '\n');
  return file;
}

/** CNI ADD for each pod of a tulle node, one after another as a kubelet would; records the results. */
async function attachThroughCni(s: LabState, n: LabNode): Promise<void> {
  n.cniConflist = await writeNodeConflist(s, n);
  const list = JSON.parse(await readFile(n.cniConflist, 'utf8')) as { name: string; cniVersion: string; plugins: Record<string, unknown>[] };
  for (const pod of s.pods.filter((q) => q.node === n.index)) {
    const result = (await cniRun({
      plugin: join(s.cniBin!, 'tulle'), command: 'ADD', nodeNs: n.ns, containerID: pod.ns, netns: `/run/netns/${pod.ns}`,
      ifname: 'eth0', path: [s.cniBin!], args: `IgnoreUnknown=1;K8S_POD_NAME=${pod.ns}`, config: requestConfig(list, list.plugins[0]!),
    })) as { interfaces: { name: string; sandbox?: string }[]; ips: { address: string; interface?: number }[] };
    pod.ip = result.ips[0]!.address.split('/')[0]!;
    pod.hostIfname = result.interfaces.find((i) => !i.sandbox)!.name;
  }
}

const peersOf = (s: LabState, n: LabNode) =>
  s.nodes.filter((m) => m !== n).map((m) => ({ vtepIP: m.underlayIp, vtepMAC: m.vtepMAC, subnet: m.subnet }));

async function startAgent(s: LabState, n: LabNode): Promise<ChildProcess> {
  const dir = join(labStateDir(s.name), `n${n.index}`);
  await mkdir(join(dir, 'data'), { recursive: true });
  const agent: LabAgent = { pid: 0, configFile: join(dir, 'agent.json'), logFile: join(dir, 'agent.log'), socket: join(dir, 'tulle.sock') };
  const common = {
    vtepIP: n.underlayIp, device: TUN_DEVICE, mtu: underlayMtuOf(s) - VXLAN_OVERHEAD_IPV4,
    socket: agent.socket, dataDir: join(dir, 'data'), subnetFile: join(dir, 'subnet.env'),
    ...s.agent,
  };
  const config = s.store === 'etcd' && s.etcd
    ? {
      ...common,
      store: { type: 'etcd', endpoints: [s.etcd.endpoint], prefix: LAB_ETCD_PREFIX, ...(s.leaseTTLSeconds ? { leaseTTLSeconds: s.leaseTTLSeconds } : {}) },
    }
    : {
      network: CLUSTER_NETWORK, subnet: n.subnet, vtepMAC: n.vtepMAC, vni: FLANNEL_DEFAULT_VNI, port: FLANNEL_DEFAULT_PORT,
      ...common, peers: peersOf(s, n),
    };
  await writeFile(agent.configFile, JSON.stringify(config, null, 2) + '\n');
  return spawnAgent(s, n, agent);
}

/** Starts (or restarts) the agent of node n from its config file, appending to its log. */
async function spawnAgent(s: LabState, n: LabNode, agent: LabAgent): Promise<ChildProcess> {
  const child = spawnInNs(n.ns, process.execPath, [distScript(AGENT_SCRIPT), 'agent', '--config', agent.configFile], {
    logFile: agent.logFile,
    detached: true,
  });
  if (child.pid === undefined) throw new LabError(`could not start the agent in ${n.ns}`);
  agent.pid = child.pid;
  n.agent = agent;
  await saveState(s);
  return child;
}

/** One GET /v1/status over the agent's unix socket: true when it answers 200 with ready: true. */
async function agentReady(socketPath: string): Promise<boolean> {
  try {
    return ((await apiRequest(socketPath, 'GET', '/v1/status', undefined, 1_000)) as { ready?: unknown }).ready === true;
  } catch {
    return false;
  }
}

async function logTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.slice(-LOG_TAIL_CHARS).trim() || '(empty log)';
}

/** Waits until the agent reports ready; fails early if it exits, quoting its log. */
async function waitAgentReady(n: LabNode, agent: LabAgent, child: ChildProcess): Promise<void> {
  let exited: string | null = child.exitCode !== null || child.signalCode !== null ? (child.signalCode ?? `code ${child.exitCode}`) : null;
  child.once('exit', (code, sig) => (exited = sig ?? `code ${code}`));
  const deadline = Date.now() + AGENT_READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited !== null) throw new LabError(`agent in ${n.ns} (pid ${agent.pid}) exited with ${exited}; ${agent.logFile}:\n${await logTail(agent.logFile)}`);
    if (await agentReady(agent.socket)) return;
    await new Promise((r) => setTimeout(r, AGENT_POLL_MS));
  }
  throw new LabError(`agent in ${n.ns} (pid ${agent.pid}) not ready on ${agent.socket} within ${AGENT_READY_TIMEOUT_MS} ms; ${agent.logFile}:\n${await logTail(agent.logFile)}`);
}

/** Brings a lab up; on any failure it tears down what it made and rethrows. */
export async function labUp(o: LabOptions): Promise<LabState> {
  const s = planLab(o);
  if (s.nodes.some((n) => n.mode === 'tulle')) distScript(AGENT_SCRIPT); // fail before building anything
  const existing = await listNetns(labPrefix(s.name));
  if (existsSync(labStateDir(s.name)) || existing.length > 0) {
    throw new LabError(`lab ${JSON.stringify(s.name)} already exists (${existing[0] ?? labStateDir(s.name)}); run "tulle lab down --name ${s.name}" first`);
  }
  await mkdir(labStateDir(s.name), { recursive: true });
  if (s.nodes.some((n) => n.mode === 'tulle')) s.cniBin = join(labStateDir(s.name), 'cni', 'bin');
  await saveState(s);
  try {
    if (s.cniBin) await installCni({ binDir: s.cniBin });
    await createNetns(s.switchNs);
    await addBridge(s.switchNs, BRIDGE);
    if (s.store === 'etcd') {
      await upWithEtcd(s);
      return s;
    }
    const podMtu = s.nodes.every((n) => n.mode === 'plain') ? underlayMtuOf(s) : underlayMtuOf(s) - VXLAN_OVERHEAD_IPV4;
    await Promise.all(s.nodes.map((n) => buildNode(s, n, podMtu)));
    const mixed = s.nodes.some((n) => n.mode === 'tulle') && s.nodes.some((n) => n.mode === 'kernel-vxlan');
    for (const n of s.nodes) {
      if (n.mode === 'plain') {
        for (const m of s.nodes) if (m !== n) await ipIn(n.ns, ['route', 'add', m.subnet, 'via', m.underlayIp, 'dev', 'eth0']);
      } else if (n.mode === 'kernel-vxlan') {
        await setupKernelVxlan({ ns: n.ns, vtepIP: n.underlayIp, vtepMAC: n.vtepMAC, subnet: n.subnet, underlayDev: 'eth0', underlayMtu: underlayMtuOf(s), peers: peersOf(s, n) });
        // A tulle receiver needs finished inner checksums (see setTxChecksumOffload).
        if (mixed && s.kernelTxChecksumOff !== false) await setTxChecksumOffload(n.ns, 'eth0', false);
      }
    }
    const agents = [];
    for (const n of s.nodes) if (n.mode === 'tulle') agents.push({ node: n, child: await startAgent(s, n) });
    await Promise.all(agents.map(({ node, child }) => waitAgentReady(node, node.agent as LabAgent, child)));
    await Promise.all(agents.map(({ node }) => attachThroughCni(s, node)));
    await saveState(s);
    return s;
  } catch (e) {
    await labDown({ name: s.name }).catch((down: unknown) => {
      (e as Error).message += `; cleanup also failed: ${(down as Error).message}`;
    });
    throw e;
  }
}

/** The flannel network config the lab writes to `<prefix>/config`. */
export const LAB_NETWORK_CONFIG = JSON.stringify({
  Network: CLUSTER_NETWORK, SubnetLen: 24, Backend: { Type: 'vxlan', VNI: FLANNEL_DEFAULT_VNI, Port: FLANNEL_DEFAULT_PORT },
});

/** etcd on the switch, flannel's network config in it, then every node joins through it. */
async function upWithEtcd(s: LabState): Promise<void> {
  await addAddress(s.switchNs, BRIDGE, `${LAB_ETCD_IP}/24`);
  s.etcd = await startEtcd({ ns: s.switchNs, ip: LAB_ETCD_IP, dataDir: join(labStateDir(s.name), 'etcd'), logFile: join(labStateDir(s.name), 'etcd.log') });
  await saveState(s);
  await etcdctl(s.etcd, ['put', `${LAB_ETCD_PREFIX}/config`, LAB_NETWORK_CONFIG]);
  await Promise.all(s.nodes.map((n) => buildUnderlay(s, n)));
  const agents = [];
  for (const n of s.nodes) agents.push({ node: n, child: await startAgent(s, n) });
  await Promise.all(agents.map(({ node, child }) => waitAgentReady(node, node.agent as LabAgent, child)));
  for (const n of s.nodes) await wireLeasedNode(s, n);
}

/** Records the subnet and MAC the node's agent leased, then wires its pods in that subnet. */
async function wireLeasedNode(s: LabState, n: LabNode): Promise<void> {
  const st = (await apiRequest((n.agent as LabAgent).socket, 'GET', '/v1/status')) as { node: { subnet: string; vtepMAC: string } };
  n.subnet = st.node.subnet;
  n.gateway = hostInSubnet(n.subnet, 1);
  n.vtepMAC = st.node.vtepMAC;
  s.pods = [...s.pods.filter((q) => q.node !== n.index), ...planPods(n, s.podsPerNode ?? 0)];
  await saveState(s);
  await attachPods(s, n, underlayMtuOf(s) - VXLAN_OVERHEAD_IPV4);
  await attachThroughCni(s, n);
  await saveState(s);
}

async function mustState(name: string): Promise<LabState> {
  const s = await readLabState(name);
  if (!s) throw new LabError(`no lab ${JSON.stringify(name)} (run "tulle lab up --name ${name}" first)`);
  return s;
}

function nodeOf(s: LabState, index: number): LabNode {
  const n = s.nodes.find((m) => m.index === index);
  if (!n) throw new LabError(`lab ${JSON.stringify(s.name)} has no node ${index}`);
  return n;
}

/**
 * Adds node n<k+1> to a running etcd lab: its agent leases a subnet through etcd and every
 * other node learns of it from its watch. Returns the node, with its pods wired.
 */
export async function labAddNode(name: string): Promise<{ node: LabNode; pods: LabPod[] }> {
  const s = await mustState(name);
  if (s.store !== 'etcd' || !s.etcd) throw new LabError(`lab ${JSON.stringify(name)} does not use the etcd store; nodes can join only through etcd`);
  const k = Math.max(0, ...s.nodes.map((n) => n.index)) + 1;
  checkCount('node', k, MAX_NODES);
  const n = planNode(name, k, 'tulle', 'etcd');
  const pods = planPods(n, s.podsPerNode ?? 0);
  s.nodes.push(n);
  s.pods.push(...pods);
  s.namespaces.push(n.ns, ...pods.map((q) => q.ns));
  await saveState(s);
  await buildUnderlay(s, n);
  const child = await startAgent(s, n);
  await waitAgentReady(n, n.agent as LabAgent, child);
  // etcd may have been restarted (labStartEtcd) while this node waited for it.
  s.etcd = (await mustState(name)).etcd;
  await wireLeasedNode(s, n);
  return { node: n, pods: s.pods.filter((q) => q.node === k) };
}

/** Stops node k's agent (SIGTERM: it removes its device, and keeps its lease for a restart). */
export async function labStopAgent(name: string, index: number): Promise<void> {
  const s = await mustState(name);
  const a = nodeOf(s, index).agent;
  if (a && processArgv(a.pid)?.includes(a.configFile)) await terminateProcesses([a.pid]);
}

/** Starts node k's agent again with the same config and data directory; waits until ready. */
export async function labStartAgent(name: string, index: number): Promise<LabAgent> {
  const s = await mustState(name);
  const n = nodeOf(s, index);
  if (!n.agent) throw new LabError(`node ${index} of lab ${JSON.stringify(name)} has no agent`);
  const child = await spawnAgent(s, n, n.agent);
  await waitAgentReady(n, n.agent, child);
  return n.agent;
}

/** Stops the lab's etcd (its data stays); agents keep forwarding meanwhile. */
export async function labStopEtcd(name: string): Promise<void> {
  const s = await mustState(name);
  if (!s.etcd) throw new LabError(`lab ${JSON.stringify(name)} runs no etcd`);
  await stopEtcd(s.etcd);
}

/** Starts the lab's etcd again on its data directory. */
export async function labStartEtcd(name: string): Promise<LabEtcd> {
  const s = await mustState(name);
  if (!s.etcd) throw new LabError(`lab ${JSON.stringify(name)} runs no etcd`);
  // Recorded before etcd answers: a node waiting to join (labAddNode) reads etcd from the state
  // once it has joined, and must not save the stopped process back over the new one.
  return startEtcd({ ns: s.etcd.ns, ip: LAB_ETCD_IP, dataDir: s.etcd.dataDir, logFile: s.etcd.logFile }, async (e) => {
    const now = await mustState(name);
    now.etcd = e;
    await saveState(now);
  });
}

/**
 * Tears a lab down: agents get SIGTERM (SIGKILL after 5 s), then any process still inside a lab
 * namespace is ended the same way (only lab code runs there), then every tl<name>-* namespace is
 * deleted and the state directory removed. Safe to repeat, and after a crash.
 */
export async function labDown({ name }: { name: string }): Promise<void> {
  checkLabName(name);
  const state = await readLabState(name);
  const errors: string[] = [];
  const recorded = (state?.namespaces ?? []).filter((ns) => ns.startsWith(labPrefix(name)));
  const names = new Set([...recorded, ...(await listNetns(labPrefix(name)))]);
  // Recorded agents count only if their argv still names their config (the PID may be reused).
  const pids = new Set<number>();
  for (const n of state?.nodes ?? []) {
    if (n.agent && processArgv(n.agent.pid)?.includes(n.agent.configFile)) pids.add(n.agent.pid);
  }
  if (state?.etcd && processArgv(state.etcd.pid)?.includes(state.etcd.dataDir)) pids.add(state.etcd.pid);
  for (const ns of names) {
    const inside = await netnsPids(ns).catch((e: Error) => (errors.push(e.message), []));
    inside.forEach((pid) => pids.add(pid));
  }
  pids.delete(process.pid);
  await terminateProcesses([...pids]).catch((e: Error) => errors.push(e.message));
  await Promise.all([...names].map((ns) => deleteNetns(ns).catch((e: Error) => errors.push(e.message))));
  await rm(labStateDir(name), { recursive: true, force: true }).catch((e: Error) => errors.push(e.message));
  if (errors.length > 0) throw new LabError(`lab ${JSON.stringify(name)} down: ${errors.join('; ')}`);
}
