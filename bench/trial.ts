/**
 * One trial of one scenario: a fresh lab, the measurements, the lab torn down (also on failure).
 *
 *            tl<lab>-sw [br0]
 *      n1 ┌────────┴────────┐ n2          underlay 172.31.0.1 / .2, MTU = scenario mtu
 *   tl<lab>-n1           tl<lab>-n2       mode: plain | kernel-vxlan | tulle (an agent per node)
 *      │ veth               │ veth
 *   tl<lab>-n1-p1        tl<lab>-n2-p1    client 10.244.1.2  ->  server 10.244.2.2
 *
 * Order inside a trial: ping RTT on the idle path, an idle CPU sample (the machine's background),
 * TCP 1 stream and 4 streams (CPU sampled over each), then UDP at 64 B and 1400 B payloads (a
 * flood each, then for 64 B the highest rate carried with at most 1 % loss, rate-search.ts). A
 * failed measurement is recorded with its message and the trial goes on; a lab that does not come
 * up fails the whole trial. A scenario with `cpuLatencyUs` runs with that CPU latency request held
 * (by its agents in tulle mode, by this trial otherwise) and released with the lab.
 */
import { request } from '../src/control/api.js';
import { CpuLatencyRequest } from '../src/control/cpu-latency.js';
import { handoffRtt, iperf3Tcp, iperf3Udp, pingRtt, type Iperf3UdpResult } from '../src/lab/measure.js';
import { startUdpTunnels, udptunName, type UdpTunnels } from '../src/lab/udptun.js';
import { labDown, labUp, type LabState } from '../src/lab/topology.js';
import { cpuBetween, processCpuS, sampleCpu } from './cpu.js';
import { agentOverrides, type Scenario } from './scenarios.js';
import { LOSS_BOUND_PCT, type SearchResult, searchRate } from './rate-search.js';

export const UDP_PAYLOADS = [64, 1400] as const;
/** Payloads whose loss-bounded rate is searched after the flood, and how. */
export const RATE_SEARCH_PAYLOADS: readonly number[] = [64];
const SEARCH_PROBE_S = 2;
const SEARCH_STEPS = 5;
export const TCP_STREAMS = [1, 4] as const;
const WARMUP_PINGS = 5;
const RTT_PINGS = 200;
const RTT_INTERVAL_S = 0.005;
const IDLE_SAMPLE_MS = 500;
const BYTES_PER_GB = 1e9;

export interface TcpFigures {
  streams: number;
  gbps: number;
  retransmits: number;
  bytes: number;
  /** Machine-wide busy CPU seconds over the iperf3 run (see cpu.ts), and per GB received. */
  cpuBusyS: number;
  cpuSPerGB: number;
  /** tulle: user + system seconds of both agents over the run, and per GB; null otherwise. */
  agentCpuS: number | null;
  agentCpuSPerGB: number | null;
}

export interface UdpFigures {
  payload: number;
  /** The flood (unlimited offered rate). */
  sentPps: number;
  receivedPps: number;
  lostPercent: number;
  /**
   * Of the sent datagrams, the percentage the receiving pod's socket dropped (the receiving
   * process did not read in time), part of lostPercent; null when it could not be read.
   */
  socketLostPercent: number | null;
  /** RATE_SEARCH_PAYLOADS: the highest rate carried with at most LOSS_BOUND_PCT loss (rate-search.ts). */
  bounded?: SearchResult;
}

/** Of the datagrams an iperf3 UDP run sent, the percentage the receiving socket dropped. */
export function socketShare(u: Pick<Iperf3UdpResult, 'sentPackets' | 'socketDrops'>): number | null {
  return u.socketDrops === null || !(u.sentPackets > 0) ? null : (100 * u.socketDrops) / u.sentPackets;
}

export interface RttFigures {
  sent: number;
  received: number;
  p50Us: number;
  p99Us: number;
}

export interface TrialResult {
  scenario: string;
  trial: number;
  startedAt: string;
  rtt: RttFigures | null;
  /**
   * Four process hand-offs (handoff.c) timed as the pings are, from the client pod with its CPU
   * placement: the least a userspace forwarder adds to a round trip on this machine.
   */
  handoff: { p50Us: number; p99Us: number } | null;
  /** Busy cores on the machine with the lab idle, just before the TCP runs. */
  backgroundCores: number | null;
  tcp: TcpFigures[];
  udp: UdpFigures[];
  /** tulle: each agent's GET /v1/status `node` section and worker restarts, after the measurements. */
  agents: { node: unknown; workerRestarts: number }[];
  /** Messages of the measurements (or the lab) that failed. */
  errors: string[];
}

export interface TrialOptions {
  labName: string;
  seconds: number;
  log: (line: string) => void;
  /** Checked between measurements: true once the run is being interrupted. */
  stopping: () => boolean;
}

/** Thrown between measurements once the run is being stopped. */
class Interrupted extends Error {}

const ONE_LINE_CHARS = 400;

/** A message (e.g. one quoting an agent's log) on one line, for progress output; JSON keeps it whole. */
export function oneLine(msg: string): string {
  const s = msg.replace(/\s*\n\s*/g, ' | ').trim();
  return s.length > ONE_LINE_CHARS ? `${s.slice(0, ONE_LINE_CHARS - 3)}...` : s;
}

const agentPids = (lab: LabState): number[] => lab.nodes.flatMap((n) => (n.agent ? [n.agent.pid] : []));

function agentsCpuS(pids: readonly number[]): number | null {
  if (pids.length === 0) return null;
  let sum = 0;
  for (const pid of pids) {
    const s = processCpuS(pid);
    if (s === null) return null;
    sum += s;
  }
  return sum;
}

async function idleCores(): Promise<number> {
  const a = sampleCpu();
  await new Promise((r) => setTimeout(r, IDLE_SAMPLE_MS));
  return cpuBetween(a, sampleCpu()).busyCores;
}

export async function runTrial(sc: Scenario, trial: number, o: TrialOptions): Promise<TrialResult> {
  const r: TrialResult = { scenario: sc.name, trial, startedAt: new Date().toISOString(), rtt: null, handoff: null, backgroundCores: null, tcp: [], udp: [], agents: [], errors: [] };
  const log = (l: string): void => o.log(`  ${sc.name} #${trial}: ${l}`);
  const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
    if (o.stopping()) throw new Interrupted('interrupted');
    try {
      await fn();
    } catch (e) {
      if (o.stopping()) throw new Interrupted('interrupted');
      const msg = `${what}: ${(e as Error).message}`;
      r.errors.push(msg);
      log(`FAILED ${oneLine(msg)}`);
    }
  };
  let lab: LabState;
  // tulle agents hold the scenario's CPU latency request themselves; for the others the benchmark does.
  let cpuLatency: CpuLatencyRequest | undefined;
  let tunnels: UdpTunnels | undefined;
  try {
    if (sc.cpuLatencyUs !== undefined && sc.mode !== 'tulle') {
      try {
        cpuLatency = await CpuLatencyRequest.hold(sc.cpuLatencyUs);
      } catch (e) {
        r.errors.push(`CPU latency request: ${(e as Error).message}`);
        log(`FAILED ${oneLine((e as Error).message)}`);
        return r;
      }
      log(`holding a ${sc.cpuLatencyUs} µs CPU latency request for this trial`);
    }
    log(`lab up (${sc.mode}, mtu ${sc.mtu}${sc.cpu !== undefined ? `, pods' processes on CPU ${sc.cpu}` : ''}${sc.mode === 'tulle' ? `, agent ${JSON.stringify(agentOverrides(sc) ?? {})}` : ''})`);
    try {
      lab = await labUp({ name: o.labName, nodes: 2, pods: 1, mode: sc.mode, store: 'static', underlayMtu: sc.mtu, agent: agentOverrides(sc) });
    } catch (e) {
      if (o.stopping()) throw new Interrupted('interrupted');
      r.errors.push(`lab up: ${(e as Error).message}`);
      log(`FAILED lab up: ${oneLine((e as Error).message)}`);
      return r;
    }
    const tunnelName = udptunName(sc.userspaceTunnel ?? 'c');
    if (sc.userspaceTunnel !== undefined) {
      try {
        tunnels = await startUdpTunnels(lab, sc.cpu, sc.userspaceTunnel);
        log(`userspace tunnel up (${tunnelName} on both nodes${sc.cpu !== undefined ? `, on CPU ${sc.cpu}` : ''})`);
      } catch (e) {
        r.errors.push(`userspace tunnel: ${(e as Error).message}`);
        log(`FAILED userspace tunnel: ${oneLine((e as Error).message)}`);
        return r;
      }
    }
    const client = lab.pods.find((p) => p.node === 1)!;
    const server = lab.pods.find((p) => p.node === 2)!;
    const agents = agentPids(lab);
    await step('ping RTT', async () => {
      await pingRtt(client.ns, server.ip, WARMUP_PINGS, 0.05, sc.cpu);
      const s = await pingRtt(client.ns, server.ip, RTT_PINGS, RTT_INTERVAL_S, sc.cpu);
      if (s.received === 0) throw new Error(`no replies from ${server.ip}`);
      r.rtt = { sent: s.sent, received: s.received, p50Us: s.p50Ms * 1000, p99Us: s.p99Ms * 1000 };
      log(`ping RTT p50 ${r.rtt.p50Us.toFixed(0)} us, p99 ${r.rtt.p99Us.toFixed(0)} us (${s.received}/${s.sent})`);
    });
    await step('process hand-offs', async () => {
      const h = await handoffRtt(client.ns, RTT_PINGS, RTT_INTERVAL_S, sc.cpu);
      r.handoff = { p50Us: h.p50Us, p99Us: h.p99Us };
      log(`4 process hand-offs p50 ${h.p50Us.toFixed(0)} us, p99 ${h.p99Us.toFixed(0)} us (no networking)`);
    });
    if (r.rtt === null) {
      r.errors.push('skipped the throughput measurements: the server pod is unreachable');
      return r;
    }
    r.backgroundCores = await idleCores();
    for (const streams of TCP_STREAMS) {
      await step(`TCP ${streams} stream(s)`, async () => {
        const agentBefore = agentsCpuS(agents);
        const before = sampleCpu();
        const t = await iperf3Tcp(client.ns, server.ns, server.ip, { seconds: o.seconds, streams, cpu: sc.cpu });
        const cpu = cpuBetween(before, sampleCpu());
        const agentAfter = agentsCpuS(agents);
        const gb = t.bytes / BYTES_PER_GB;
        const agentCpuS = agentBefore !== null && agentAfter !== null ? agentAfter - agentBefore : null;
        const f: TcpFigures = {
          streams, gbps: t.gbps, retransmits: t.retransmits, bytes: t.bytes, cpuBusyS: cpu.busyS, cpuSPerGB: gb > 0 ? cpu.busyS / gb : NaN,
          agentCpuS, agentCpuSPerGB: agentCpuS !== null && gb > 0 ? agentCpuS / gb : null,
        };
        r.tcp.push(f);
        log(`TCP x${streams}: ${f.gbps.toFixed(2)} Gbit/s, ${f.retransmits} retransmits, ${f.cpuSPerGB.toFixed(2)} CPU s/GB` +
          (f.agentCpuSPerGB !== null ? ` (agents ${f.agentCpuSPerGB.toFixed(2)})` : ''));
      });
    }
    for (const payload of UDP_PAYLOADS) {
      await step(`UDP ${payload} B`, async () => {
        const u = await iperf3Udp(client.ns, server.ns, server.ip, { payload, seconds: o.seconds, bitrate: '0', cpu: sc.cpu });
        const socketLostPercent = socketShare(u);
        r.udp.push({ payload, sentPps: u.sentPps, receivedPps: u.receivedPps, lostPercent: u.lostPercent, socketLostPercent });
        log(`UDP ${payload} B: received ${(u.receivedPps / 1000).toFixed(0)} kpps of ${(u.sentPps / 1000).toFixed(0)} kpps sent, loss ${u.lostPercent.toFixed(1)} %` +
          (socketLostPercent === null ? '' : ` (${socketLostPercent.toFixed(1)} % in the receiving socket)`));
      });
      const f = r.udp.find((x) => x.payload === payload);
      if (!RATE_SEARCH_PAYLOADS.includes(payload) || f === undefined) continue;
      if (!(f.sentPps > 0 && Number.isFinite(f.sentPps) && Number.isFinite(f.receivedPps))) {
        r.errors.push(`UDP ${payload} B rate search: the flood gave no usable rates (sent ${f.sentPps}, received ${f.receivedPps} pps)`);
        continue;
      }
      await step(`UDP ${payload} B rate search`, async () => {
        // From what the flood delivered, up to what its sender managed.
        f.bounded = await searchRate(async (pps) => {
          const p = await iperf3Udp(client.ns, server.ns, server.ip, { payload, seconds: SEARCH_PROBE_S, bitrate: String(Math.round(pps * payload * 8)), cpu: sc.cpu });
          return { sentPps: p.sentPps, receivedPps: p.receivedPps, lostPercent: p.lostPercent, socketLostPercent: socketShare(p) };
        }, { lossBoundPercent: LOSS_BOUND_PCT, startPps: f.receivedPps, maxPps: f.sentPps, steps: SEARCH_STEPS });
        const b = f.bounded;
        log(`UDP ${payload} B at <= ${LOSS_BOUND_PCT} % loss: ${(b.receivedPps / 1000).toFixed(0)} kpps` +
          (b.offeredPps === null ? ' (no offered rate stayed within the bound)' : ` (offered ${(b.offeredPps / 1000).toFixed(0)} kpps, loss ${b.lostPercent!.toFixed(2)} %)`) +
          `; probes (kpps:loss, in the receiving socket) ${b.probes.map((p) => `${(p.offeredPps / 1000).toFixed(0)}:${p.lostPercent.toFixed(1)}%` +
            (p.socketLostPercent != null && p.lostPercent > 0 ? `(${p.socketLostPercent.toFixed(1)}%)` : '')).join(' ')}`);
      });
    }
    for (const n of lab.nodes) {
      if (!n.agent) continue;
      const socket = n.agent.socket;
      await step(`status of the agent in ${n.ns}`, async () => {
        const s = (await request(socket, 'GET', '/v1/status')) as { node?: unknown; workers?: { restarts?: number }[] };
        const workerRestarts = (s.workers ?? []).reduce((a, w) => a + (w.restarts ?? 0), 0);
        r.agents.push({ node: s.node, workerRestarts });
        if (workerRestarts > 0) log(`agent in ${n.ns}: ${workerRestarts} worker restart(s)`);
      });
    }
    if (tunnels !== undefined && tunnels.pids.length < 2) {
      r.errors.push(`userspace tunnel: a ${tunnelName} process exited during the trial; its figures are not the floor`);
      log(`FAILED a ${tunnelName} process exited during the trial`);
    }
    return r;
  } catch (e) {
    if (!(e instanceof Interrupted)) throw e;
    // Figures measured before the interruption stand; the trial says it is incomplete.
    r.errors.push('interrupted');
    return r;
  } finally {
    try {
      await tunnels?.stop().catch((e: Error) => r.errors.push(`userspace tunnel stop: ${e.message}`));
      await labDown({ name: o.labName });
    } finally {
      await cpuLatency?.release();
    }
  }
}

