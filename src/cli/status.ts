/**
 * `tulle status`: asks the running agent over its socket and prints what it
 * says, as a human summary or (--json) verbatim for scripts.
 */
import { request } from '../control/api.js';

interface Status {
  ready: boolean;
  node: Record<string, unknown>;
  workers: {
    id: number; state: string; restarts: number; threadId: number; sourcePorts: number[]; cpu?: number | null; wantedCpu?: number | null; lastExit?: string;
    features?: { vnet: boolean; gso: boolean; gro: boolean };
  }[];
  peers: { subnet: string; vtepIP: string; vtepMAC: string }[];
  store?: StoreStatus;
  counters: Record<string, number>;
  kernelDrops?: { tunTxDropped: number | null; rxSocketDrops: number | null } | null;
  endpoints?: { containerID: string; ifname: string; ip: string; mac: string; hostIfname: string; network: string; netns: string }[];
}

interface StoreStatus {
  type: string;
  state: string;
  endpoints?: string[];
  prefix?: string;
  lease?: { key: string; subnet: string; leaseId: string; renewDueAt?: string };
  etcd?: { reachable: boolean; lastContact?: string; unreachableSince?: string; failures: number; nextRetryAt?: string; lastError?: string };
  watch?: { connected: boolean; revision?: string; resyncs: number };
  conflict?: { holder: string; since: string };
  ignored?: { key: string; why: string }[];
  events?: { at: string; event: string }[];
}

/** The store's lines: where peers come from and whether it is healthy. */
function storeLines(st: StoreStatus): string[] {
  if (st.type === 'static') return [`store    static (peers from the config)`];
  const out = [`store    ${st.type} ${st.state.toUpperCase()} ${st.endpoints?.join(',') ?? ''} prefix ${st.prefix ?? ''}`];
  if (st.lease) out.push(`  lease  ${st.lease.key} (etcd lease ${st.lease.leaseId}${st.lease.renewDueAt ? `, renew by ${st.lease.renewDueAt}` : ''})`);
  const e = st.etcd;
  if (e && !e.reachable) {
    out.push(`  etcd   unreachable since ${e.unreachableSince ?? '?'} (${e.failures} failed tries, next ${e.nextRetryAt ?? '?'}): ${e.lastError ?? ''}`);
    out.push('         forwarding continues with the peers below');
  } else if (e) {
    out.push(`  etcd   reachable, last contact ${e.lastContact ?? '-'}; watch ${st.watch?.connected ? 'connected' : 'reconnecting'} at revision ${st.watch?.revision ?? '-'}`);
  }
  if (st.conflict) out.push(`  CONFLICT since ${st.conflict.since}: our subnet is leased to ${st.conflict.holder} (see README, "The etcd store")`);
  for (const i of st.ignored ?? []) out.push(`  ignored ${i.key}: ${i.why}`);
  const recent = (st.events ?? []).slice(-5);
  for (const ev of recent) out.push(`  event  ${ev.at} ${ev.event}`);
  return out;
}

export async function statusMain(socket: string, json: boolean): Promise<number> {
  let s: Status;
  try {
    s = (await request(socket, 'GET', '/v1/status')) as Status;
  } catch (e) {
    process.stderr.write(`tulle status: cannot reach the agent at "${socket}": ${(e as Error).message}\n`);
    return 1;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return 0;
  }
  const out: string[] = [];
  const n = s.node;
  out.push(`node     ${n.subnet ?? "(joining)"} on ${n.device} (overlay ${n.overlayAddress}, mtu ${n.mtu}) ready=${s.ready}`);
  out.push(`vtep     ${n.vtepIP} ${n.vtepMAC} via ${n.underlay}, vni ${n.vni}, port ${n.port}`);
  if (typeof n.metrics === 'string') out.push(`metrics  ${n.metrics} (and GET /metrics on the API socket)`);
  const cpu = n.cpuLatency as { requestedUs: number; held: boolean; idleMs?: number } | null | undefined;
  if (cpu) {
    const when = cpu.idleMs === undefined ? '' : `, while packets flow (withdrawn after ${cpu.idleMs} ms idle)`;
    out.push(`cpu      latency request ${cpu.requestedUs} µs ${cpu.held ? 'held' : 'not held'} (whole machine${when})`);
  }
  if (s.store) out.push(...storeLines(s.store));
  out.push(`workers  ${s.workers.length}`);
  for (const w of s.workers) {
    const f = w.features;
    const offloads = f ? `tso=${f.vnet ? 'on' : 'off'} udp-gso=${f.gso ? 'on' : 'off'} udp-gro=${f.gro ? 'on' : 'off'}` : 'offloads unknown';
    out.push(`  #${w.id} ${w.state} thread=${w.threadId} restarts=${w.restarts}${cpuText(w)} ${offloads}${w.lastExit ? ` last exit: ${w.lastExit}` : ''}`);
  }
  out.push(`peers    ${s.peers.length}`);
  for (const p of s.peers) out.push(`  ${p.subnet.padEnd(18)} via ${p.vtepIP} ${p.vtepMAC}`);
  const eps = s.endpoints ?? [];
  out.push(`endpoints ${eps.length}`);
  for (const e of eps) {
    out.push(`  ${e.ip.padEnd(18)} ${e.mac} ${e.ifname} <-> ${e.hostIfname}  ${e.containerID.length > 24 ? e.containerID.slice(0, 12) : e.containerID} (${e.network}) ${e.netns}`);
  }
  const kd = s.kernelDrops;
  if (kd) {
    const n = (v: number | null): string => (v === null ? 'unknown' : String(v));
    out.push(`kernel   dropped before the workers saw them: ${n(kd.tunTxDropped)} at the TUN queue, ${n(kd.rxSocketDrops)} at the receive sockets`);
  }
  out.push('counters');
  for (const [k, v] of Object.entries(s.counters)) {
    if (v !== 0) out.push(`  ${k.padEnd(28)} ${v}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

/** ` cpu=N` for a pinned worker, ` cpu=unpinned (wanted N)` for a running one whose pinning failed. */
function cpuText(w: { state: string; cpu?: number | null; wantedCpu?: number | null }): string {
  if (w.cpu != null) return ` cpu=${w.cpu}`;
  if (w.wantedCpu != null && w.state === 'running') return ` cpu=unpinned (wanted ${w.wantedCpu})`;
  return '';
}
