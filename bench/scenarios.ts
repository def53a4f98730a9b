/**
 * The macro benchmark's scenarios: one row per lab configuration, each measured on a fresh
 * 2-node x 1-pod lab (src/lab/topology.ts).
 *
 * `mtu` is the underlay link MTU; pods, flannel.1 and the tulle device get `mtu` minus the VXLAN
 * overhead (plain routing gives pods the full `mtu`). A tulle scenario's knobs go into its agent
 * config only when the scenario sets them, so a knob the agent does not know yet (`offloads`
 * before the offload work lands) fails that scenario with the agent's own config error and the
 * others still run. Every tulle figure is divided by its `baseline`, a kernel VXLAN scenario with
 * the same MTU measured in the same run; --only adds the baselines of the scenarios it names.
 *
 * `cpuLatencyUs` runs a scenario with a PM QoS CPU latency request held (idle CPUs poll instead
 * of halting): a tulle scenario asks its agents to hold it (agent config "cpuLatencyUs"), any
 * other scenario has the benchmark hold it for the trial. A scenario and its baseline must agree
 * on it, so both are measured with the machine in the same state.
 *
 * `userspaceTunnel` (plain labs only) routes the pods' traffic through a minimal userspace tunnel
 * (src/lab/udptun.ts): 'c', tulle_udptun in C, the floor of any tunnel that forwards in user space
 * on this machine, measured in the same run as tulle and compared with the same kernel VXLAN; or
 * 'node', the same loop in Node.js over tulle's I/O port (src/lab/node-udptun.ts), the floor of
 * a tunnel written as tulle is.
 *
 * `cpu` puts the pods' processes (ping, the iperf3 client and server) on that one CPU, and a tulle
 * scenario's workers (agent config "cpus") or the userspace tunnel's processes too: every hand-off of a round trip then stays on one
 * CPU. A scenario and its baseline must agree on it as well.
 */
import { MAX_CPU, MAX_CPU_LATENCY_US } from '../src/control/config.js';
import type { UdpTunnelKind } from '../src/lab/udptun.js';
import { DEFAULT_UNDERLAY_MTU, LAB_MODES, MAX_UNDERLAY_MTU, MIN_UNDERLAY_MTU, type LabMode } from '../src/lab/topology.js';

export interface Scenario {
  name: string;
  mode: LabMode;
  /** One line for the report. */
  description: string;
  /** Underlay link MTU. */
  mtu: number;
  /** tulle only: agent `workers`; absent = the lab's default (2). */
  workers?: number;
  /** tulle only: agent `offloads`; absent = not written, the agent's own default. */
  offloads?: boolean;
  /** CPU wake-up latency request held during the trial (see above); absent = the machine's default. */
  cpuLatencyUs?: number;
  /** CPU for the pods' processes and tulle's workers (see above); absent = the scheduler places them. */
  cpu?: number;
  /** plain only: the pods' traffic crosses tulle_udptun instead of the underlay's routes (see above). */
  userspaceTunnel?: UdpTunnelKind;
  /** Name of the kernel-vxlan scenario (same MTU) this one's figures are compared with. */
  baseline?: string;
  /** Part of a run without --only. */
  inDefaultRun: boolean;
}

const JUMBO_MTU = 9000;
const MAX_SCENARIO_WORKERS = 64;
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,39}$/;

export const SCENARIOS: readonly Scenario[] = [
  { name: 'plain', mode: 'plain', mtu: DEFAULT_UNDERLAY_MTU, baseline: 'kernel-vxlan', inDefaultRun: true,
    description: 'no encapsulation, routed over the underlay: the physical limit of the path' },
  { name: 'kernel-vxlan', mode: 'kernel-vxlan', mtu: DEFAULT_UNDERLAY_MTU, inDefaultRun: true,
    description: "Linux VXLAN as flannel configures it (flannel.1, veth offloads at their defaults)" },
  { name: 'kernel-vxlan-lowlat', mode: 'kernel-vxlan', mtu: DEFAULT_UNDERLAY_MTU, cpuLatencyUs: 0, inDefaultRun: true,
    description: 'Linux VXLAN as flannel configures it, with a 0 µs CPU latency request held by the benchmark' },
  { name: 'c-udp-tunnel', mode: 'plain', mtu: DEFAULT_UNDERLAY_MTU, userspaceTunnel: 'c', baseline: 'kernel-vxlan', inDefaultRun: true,
    description: 'a minimal userspace tunnel in C (tulle_udptun: one thread per node, poll, read, send; receive, write): the userspace floor' },
  { name: 'tulle-w1', mode: 'tulle', mtu: DEFAULT_UNDERLAY_MTU, workers: 1, baseline: 'kernel-vxlan', inDefaultRun: true,
    description: "tulle, 1 worker, the agent's default offload setting" },
  { name: 'tulle-w2', mode: 'tulle', mtu: DEFAULT_UNDERLAY_MTU, workers: 2, baseline: 'kernel-vxlan', inDefaultRun: true,
    description: "tulle, 2 workers, the agent's default offload setting" },
  { name: 'tulle-w1-offloads-off', mode: 'tulle', mtu: DEFAULT_UNDERLAY_MTU, workers: 1, offloads: false, baseline: 'kernel-vxlan', inDefaultRun: true,
    description: 'tulle, 1 worker, offloads off (config "offloads": false)' },
  { name: 'tulle-w1-lowlat', mode: 'tulle', mtu: DEFAULT_UNDERLAY_MTU, workers: 1, cpuLatencyUs: 0, baseline: 'kernel-vxlan-lowlat', inDefaultRun: true,
    description: 'tulle, 1 worker, agents holding a 0 µs CPU latency request (config "cpuLatencyUs": 0)' },
  { name: 'kernel-vxlan-cpu0', mode: 'kernel-vxlan', mtu: DEFAULT_UNDERLAY_MTU, cpu: 0, inDefaultRun: true,
    description: "Linux VXLAN as flannel configures it, the pods' processes on CPU 0" },
  { name: 'c-udp-tunnel-lowlat', mode: 'plain', mtu: DEFAULT_UNDERLAY_MTU, userspaceTunnel: 'c', cpuLatencyUs: 0, baseline: 'kernel-vxlan-lowlat', inDefaultRun: true,
    description: 'the minimal userspace tunnel in C, with a 0 µs CPU latency request held by the benchmark' },
  { name: 'c-udp-tunnel-cpu0', mode: 'plain', mtu: DEFAULT_UNDERLAY_MTU, userspaceTunnel: 'c', cpu: 0, baseline: 'kernel-vxlan-cpu0', inDefaultRun: true,
    description: "the minimal userspace tunnel in C, its processes and the pods' processes on CPU 0" },
  { name: 'node-udp-tunnel', mode: 'plain', mtu: DEFAULT_UNDERLAY_MTU, userspaceTunnel: 'node', baseline: 'kernel-vxlan', inDefaultRun: false,
    description: "the minimal userspace tunnel in Node.js (node-udptun: one worker thread per node making tulle's I/O port calls, no protocol work)" },
  { name: 'node-udp-tunnel-cpu0', mode: 'plain', mtu: DEFAULT_UNDERLAY_MTU, userspaceTunnel: 'node', cpu: 0, baseline: 'kernel-vxlan-cpu0', inDefaultRun: false,
    description: "the minimal userspace tunnel in Node.js, its processes and the pods' processes on CPU 0" },
  { name: 'tulle-w1-cpu0', mode: 'tulle', mtu: DEFAULT_UNDERLAY_MTU, workers: 1, cpu: 0, baseline: 'kernel-vxlan-cpu0', inDefaultRun: true,
    description: 'tulle, 1 worker, the workers (config "cpus": [0]) and the pods\' processes on CPU 0' },
  { name: 'tulle-w1-offloads-on', mode: 'tulle', mtu: DEFAULT_UNDERLAY_MTU, workers: 1, offloads: true, baseline: 'kernel-vxlan', inDefaultRun: false,
    description: 'tulle, 1 worker, offloads on (config "offloads": true)' },
  { name: 'tulle-w2-offloads-off', mode: 'tulle', mtu: DEFAULT_UNDERLAY_MTU, workers: 2, offloads: false, baseline: 'kernel-vxlan', inDefaultRun: false,
    description: 'tulle, 2 workers, offloads off (config "offloads": false)' },
  { name: 'plain-9000', mode: 'plain', mtu: JUMBO_MTU, baseline: 'kernel-vxlan-9000', inDefaultRun: false,
    description: 'no encapsulation, jumbo underlay MTU 9000' },
  { name: 'kernel-vxlan-9000', mode: 'kernel-vxlan', mtu: JUMBO_MTU, inDefaultRun: false,
    description: 'Linux VXLAN as flannel configures it, jumbo underlay MTU 9000' },
  { name: 'tulle-w1-9000', mode: 'tulle', mtu: JUMBO_MTU, workers: 1, baseline: 'kernel-vxlan-9000', inDefaultRun: false,
    description: "tulle, 1 worker, jumbo underlay MTU 9000, the agent's default offload setting" },
];

/** Whether two scenarios see the machine in the same state: underlay MTU, CPU latency request and CPU placement. */
export function sameMachineState(a: Scenario, b: Scenario): boolean {
  return a.mtu === b.mtu && a.cpuLatencyUs === b.cpuLatencyUs && a.cpu === b.cpu;
}

/** Every problem with a scenario table (empty when it is valid). */
export function scenarioProblems(table: readonly Scenario[]): string[] {
  const problems: string[] = [];
  const byName = new Map<string, Scenario>();
  for (const s of table) {
    const at = `scenario ${JSON.stringify(s.name)}`;
    if (!NAME_RE.test(s.name)) problems.push(`${at}: name must be 1..40 of [a-z0-9-], starting with a letter or digit`);
    if (byName.has(s.name)) problems.push(`${at}: duplicate name`);
    byName.set(s.name, s);
    if (!LAB_MODES.includes(s.mode)) problems.push(`${at}: unknown mode ${JSON.stringify(s.mode)} (${LAB_MODES.join('|')})`);
    if (!Number.isInteger(s.mtu) || s.mtu < MIN_UNDERLAY_MTU || s.mtu > MAX_UNDERLAY_MTU) {
      problems.push(`${at}: mtu ${JSON.stringify(s.mtu)} outside ${MIN_UNDERLAY_MTU}..${MAX_UNDERLAY_MTU}`);
    }
    if (s.mode !== 'tulle' && (s.workers !== undefined || s.offloads !== undefined)) {
      problems.push(`${at}: workers and offloads are tulle knobs, not ${s.mode}`);
    }
    if (s.workers !== undefined && (!Number.isInteger(s.workers) || s.workers < 1 || s.workers > MAX_SCENARIO_WORKERS)) {
      problems.push(`${at}: workers ${JSON.stringify(s.workers)} outside 1..${MAX_SCENARIO_WORKERS}`);
    }
    if (s.userspaceTunnel !== undefined && (s.mode !== 'plain' || (s.userspaceTunnel !== 'c' && s.userspaceTunnel !== 'node'))) {
      problems.push(`${at}: userspaceTunnel must be "c" or "node", and only on a plain scenario`);
    }
    if (s.offloads !== undefined && typeof s.offloads !== 'boolean') problems.push(`${at}: offloads must be true or false`);
    if (s.cpuLatencyUs !== undefined && (!Number.isInteger(s.cpuLatencyUs) || s.cpuLatencyUs < 0 || s.cpuLatencyUs > MAX_CPU_LATENCY_US)) {
      problems.push(`${at}: cpuLatencyUs ${JSON.stringify(s.cpuLatencyUs)} outside 0..${MAX_CPU_LATENCY_US}`);
    }
    if (s.cpu !== undefined && (!Number.isInteger(s.cpu) || s.cpu < 0 || s.cpu > MAX_CPU)) {
      problems.push(`${at}: cpu ${JSON.stringify(s.cpu)} outside 0..${MAX_CPU}`);
    }
    if (s.mode === 'tulle' && s.baseline === undefined) problems.push(`${at}: a tulle scenario needs a kernel-vxlan baseline`);
    if (s.mode === 'kernel-vxlan' && s.baseline !== undefined) problems.push(`${at}: kernel-vxlan is the baseline, it has none`);
  }
  const floors = table.filter((x) => x.userspaceTunnel === 'c' && x.mode === 'plain');
  floors.forEach((s, i) => {
    const other = floors.slice(0, i).find((f) => sameMachineState(f, s));
    if (other) problems.push(`scenario ${JSON.stringify(s.name)}: a second userspace tunnel with the same mtu, cpuLatencyUs and cpu as ${JSON.stringify(other.name)}`);
  });
  for (const s of table) {
    if (s.baseline === undefined) continue;
    const b = byName.get(s.baseline);
    const at = `scenario ${JSON.stringify(s.name)}`;
    if (!b) problems.push(`${at}: baseline ${JSON.stringify(s.baseline)} is not in the table`);
    else if (b.mode !== 'kernel-vxlan') problems.push(`${at}: baseline ${JSON.stringify(s.baseline)} is ${b.mode}, not kernel-vxlan`);
    else if (b.mtu !== s.mtu) problems.push(`${at}: baseline ${JSON.stringify(s.baseline)} has mtu ${b.mtu}, not ${s.mtu}`);
    else if (b.cpuLatencyUs !== s.cpuLatencyUs) {
      problems.push(`${at}: baseline ${JSON.stringify(s.baseline)} has cpuLatencyUs ${String(b.cpuLatencyUs)}, not ${String(s.cpuLatencyUs)}`);
    } else if (b.cpu !== s.cpu) {
      problems.push(`${at}: baseline ${JSON.stringify(s.baseline)} has cpu ${String(b.cpu)}, not ${String(s.cpu)}`);
    }
  }
  return problems;
}

/**
 * The scenarios to run, in table order: the default set, or the named ones plus their
 * baselines. Throws on an invalid table or an unknown name (listing the known ones).
 */
export function selectScenarios(table: readonly Scenario[], only?: readonly string[]): { run: Scenario[]; addedBaselines: string[] } {
  const problems = scenarioProblems(table);
  if (problems.length > 0) throw new Error(`invalid scenario table:\n  ${problems.join('\n  ')}`);
  if (only === undefined) return { run: table.filter((s) => s.inDefaultRun), addedBaselines: [] };
  const unknown = only.filter((n) => !table.some((s) => s.name === n));
  if (unknown.length > 0) {
    throw new Error(`unknown scenario ${unknown.map((n) => JSON.stringify(n)).join(', ')}; known: ${table.map((s) => s.name).join(', ')}`);
  }
  const wanted = new Set(only);
  const addedBaselines: string[] = [];
  for (const s of table) {
    if (wanted.has(s.name) && s.baseline !== undefined && !wanted.has(s.baseline)) {
      wanted.add(s.baseline);
      addedBaselines.push(s.baseline);
    }
  }
  return { run: table.filter((s) => wanted.has(s.name)), addedBaselines };
}

/** The agent config fields a scenario writes (only the knobs it sets). */
export function agentOverrides(s: Scenario): Record<string, unknown> | undefined {
  if (s.mode !== 'tulle') return undefined;
  const o: Record<string, unknown> = {};
  if (s.workers !== undefined) o.workers = s.workers;
  if (s.offloads !== undefined) o.offloads = s.offloads;
  if (s.cpuLatencyUs !== undefined) o.cpuLatencyUs = s.cpuLatencyUs;
  if (s.cpu !== undefined) o.cpus = [s.cpu];
  return Object.keys(o).length > 0 ? o : undefined;
}
