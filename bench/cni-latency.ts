/**
 * CNI ADD/DEL latency of `tulle-cni` against a live agent (root):
 *
 *   node dist/bench/cni-latency.js [--pods 100] [--parallel 10] [--json]
 *
 * A one-node tulle lab (namespaces tl<lab>-*, removed afterwards) and --pods pod namespaces. Each
 * call is timed as a runtime sees it: from spawning the installed plugin (launcher, node start,
 * module load) with CNI_* and the config on stdin to its exit. Scenarios:
 *
 *   version       CNI VERSION: process start and module load only (no agent call)
 *   add, del      one pod after another (like a kubelet starting pods one by one)
 *   add/del xN    N calls in flight at once (pods/s under concurrency)
 *
 * Reports p50, p99, mean and max per call, and pods per second (pods / wall time); and, from the
 * agent's log, the agent's own share of each sequential ADD and DEL (request to answer).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cniCall, type CniCall, type CniReply } from '../src/lab/cni.js';
import { createNetns, deleteNetns } from '../src/lab/netns.js';
import { labDown, labPrefix, labUp } from '../src/lab/topology.js';

interface Row {
  scenario: string;
  calls: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
  perSecond: number;
}

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function row(scenario: string, ms: number[], wallMs: number): Row {
  const s = [...ms].sort((a, b) => a - b);
  const r2 = (x: number) => Math.round(x * 10) / 10;
  return {
    scenario, calls: s.length, p50Ms: r2(percentile(s, 50)), p99Ms: r2(percentile(s, 99)),
    meanMs: r2(s.reduce((a, b) => a + b, 0) / s.length), maxMs: r2(s[s.length - 1]!), perSecond: r2((s.length / wallMs) * 1000),
  };
}

async function timed(calls: CniCall[], concurrency: number): Promise<{ ms: number[]; wallMs: number }> {
  const ms: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < calls.length) {
      const c = calls[next++]!;
      const r: CniReply = await cniCall(c);
      if (r.exitCode !== 0) throw new Error(`CNI ${c.command} ${c.containerID ?? ''} failed: ${r.stdout}${r.stderr}`);
      ms.push(r.ms);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { ms, wallMs: performance.now() - t0 };
}

/** The agent's `ms` for the first `n` ADDs and DELs of the benchmark's pods (the sequential runs). */
async function agentShare(logFile: string, prefix: string, n: number): Promise<Row[]> {
  const add: number[] = [];
  const del: number[] = [];
  for (const line of (await readFile(logFile, 'utf8')).split('\n')) {
    if (!line.includes(prefix)) continue;
    const e = JSON.parse(line) as { msg?: string; ms?: number; containerID?: string };
    if (!e.containerID?.startsWith(`${prefix}b`) || typeof e.ms !== 'number') continue;
    if (e.msg === 'endpoint added' && add.length < n) add.push(e.ms);
    if (e.msg === 'endpoint deleted' && del.length < n) del.push(e.ms);
  }
  const none = (scenario: string): Row => ({ scenario, calls: 0, p50Ms: NaN, p99Ms: NaN, meanMs: NaN, maxMs: NaN, perSecond: NaN });
  return [
    add.length ? { ...row('  agent share of add', add, 1), perSecond: NaN } : none('  agent share of add'),
    del.length ? { ...row('  agent share of del', del, 1), perSecond: NaN } : none('  agent share of del'),
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { pods: { type: 'string' }, parallel: { type: 'string' }, json: { type: 'boolean' } } });
  const pods = Number(values.pods ?? 100);
  const parallel = Number(values.parallel ?? 10);
  if (!(pods >= 1 && pods <= 250) || !(parallel >= 1 && parallel <= pods)) throw new Error('--pods 1..250, --parallel 1..pods');
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  const name = `cb${randomBytes(3).toString('hex')}`;
  const rows: Row[] = [];
  try {
    const lab = await labUp({ name, nodes: 1, pods: 1, mode: 'tulle' });
    const node = lab.nodes[0]!;
    const config = { cniVersion: '1.0.0', name: `tl${name}`, type: 'tulle', socket: node.agent!.socket };
    const namespaces = Array.from({ length: pods }, (_, i) => `${labPrefix(name)}b${i + 1}`);
    for (const ns of namespaces) await createNetns(ns);
    const call = (command: 'ADD' | 'DEL' | 'VERSION', ns: string): CniCall => ({
      plugin: join(lab.cniBin!, 'tulle'), command, containerID: ns, netns: `/run/netns/${ns}`, ifname: 'eth0', path: [lab.cniBin!], config,
    });
    const v = await timed(namespaces.map((ns) => call('VERSION', ns)), 1);
    rows.push(row('version (process start)', v.ms, v.wallMs));
    const add = await timed(namespaces.map((ns) => call('ADD', ns)), 1);
    rows.push(row('add', add.ms, add.wallMs));
    const del = await timed(namespaces.map((ns) => call('DEL', ns)), 1);
    rows.push(row('del', del.ms, del.wallMs));
    const addN = await timed(namespaces.map((ns) => call('ADD', ns)), parallel);
    rows.push(row(`add x${parallel}`, addN.ms, addN.wallMs));
    const delN = await timed(namespaces.map((ns) => call('DEL', ns)), parallel);
    rows.push(row(`del x${parallel}`, delN.ms, delN.wallMs));
    for (const ns of namespaces) await deleteNetns(ns);
    rows.push(...(await agentShare(node.agent!.logFile, labPrefix(name), pods)));
  } finally {
    await labDown({ name });
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ pods, parallel, rows }, null, 2)}\n`);
    return;
  }
  process.stdout.write(`tulle-cni latency, ${pods} pods, one node (${new Date().toISOString()})\n`);
  process.stdout.write(`${'scenario'.padEnd(26)}${'calls'.padStart(6)}${'p50 ms'.padStart(9)}${'p99 ms'.padStart(9)}${'mean ms'.padStart(9)}${'max ms'.padStart(9)}${'pods/s'.padStart(9)}\n`);
  for (const r of rows) {
    process.stdout.write(`${r.scenario.padEnd(26)}${String(r.calls).padStart(6)}${r.p50Ms.toFixed(1).padStart(9)}${r.p99Ms.toFixed(1).padStart(9)}${r.meanMs.toFixed(1).padStart(9)}${r.maxMs.toFixed(1).padStart(9)}${(Number.isNaN(r.perSecond) ? '-' : r.perSecond.toFixed(1)).padStart(9)}\n`);
  }
}

main().catch((e: Error) => {
  process.stderr.write(`cni-latency: ${e.message}\n`);
  process.exitCode = 1;
});
