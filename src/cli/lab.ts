// `tulle lab ...`: a pod network in network namespaces on this machine (see src/lab/topology.ts).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { labDemo } from '../lab/demo.js';
import {
  LAB_MODES, LAB_STORES, MAX_NODES, MAX_PODS, checkLabName, labAddNode, labDown, labUp, type LabMode, type LabState, type LabStore,
} from '../lab/topology.js';

const HELP = `usage:
  tulle lab up [--name N] [--nodes N] [--pods M] [--mode tulle|kernel-vxlan|plain] [--store static|etcd]
      build a lab: nodes tl<name>-n<k> (underlay 172.31.0.<k>, pods 10.244.<k>.0/24) on a
      switch tl<name>-sw, M pods per node; defaults: --name lab --nodes 3 --pods 2 --mode tulle
      --store static. With --store etcd the switch runs etcd (http://172.31.0.254:2379, flannel's
      layout under /coreos.com/network) and each agent leases its pod subnet there.
  tulle lab add-node [--name N]
      (etcd labs) one more node joins through etcd, with as many pods as the others
  tulle lab down [--name N]
      stop the lab's agents and delete its namespaces and state (also after a crash)
  tulle lab demo
      3 nodes x 2 pods with tulle, then with kernel VXLAN: reachability, byte-checked TCP and
      iperf3 throughput, side by side
Needs root, iproute2, ping and iperf3. State lives in /run/tulle-lab/<name>/.
`;

const DEFAULT_NAME = 'lab';

/** A bad command line; the message names the bad value. */
class UsageError extends Error {}

function parse(argv: string[], options: ParseArgsConfig['options']): Record<string, string | boolean | undefined> {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function count(flag: string, v: string | boolean | undefined, dflt: number, max: number): number {
  if (v === undefined) return dflt;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
  if (!(n >= 1 && n <= max)) throw new UsageError(`invalid --${flag} value ${JSON.stringify(v)} (1..${max})`);
  return n;
}

function labName(v: string | boolean | undefined): string {
  if (v === undefined) return DEFAULT_NAME;
  try {
    return checkLabName(String(v));
  } catch {
    throw new UsageError(`invalid --name value ${JSON.stringify(v)} (1..16 of [a-z0-9])`);
  }
}

function store(v: string | boolean | undefined): LabStore {
  if (v === undefined) return 'static';
  if (typeof v !== 'string' || !(LAB_STORES as readonly string[]).includes(v)) {
    throw new UsageError(`invalid --store value ${JSON.stringify(v)} (${LAB_STORES.join('|')})`);
  }
  return v as LabStore;
}

function mode(v: string | boolean | undefined): LabMode {
  if (v === undefined) return 'tulle';
  if (typeof v !== 'string' || !(LAB_MODES as readonly string[]).includes(v)) {
    throw new UsageError(`invalid --mode value ${JSON.stringify(v)} (${LAB_MODES.join('|')})`);
  }
  return v as LabMode;
}

function summary(s: LabState): string {
  const lines = [`lab "${s.name}" up (mode ${s.mode}, store ${s.store ?? 'static'}${s.etcd ? ` at ${s.etcd.endpoint}, pid ${s.etcd.pid}` : ''})`];
  for (const n of s.nodes) {
    const agent = n.agent ? `, agent pid ${n.agent.pid}, log ${n.agent.logFile}` : '';
    lines.push(`  ${n.ns}: underlay ${n.underlayIp}, pods ${n.subnet} (${n.mode}${agent})`);
    for (const p of s.pods.filter((q) => q.node === n.index)) lines.push(`    ${p.ns}: ${p.ip}`);
  }
  const [a, b] = [s.pods[0], s.pods[s.pods.length - 1]];
  if (a && b && a !== b) lines.push(`try:  ip netns exec ${a.ns} ping ${b.ip}`);
  lines.push(`tear down:  tulle lab down --name ${s.name}`);
  return lines.join('\n') + '\n';
}

async function dispatch(cmd: string | undefined, rest: string[]): Promise<number> {
  switch (cmd) {
    case 'up': {
      const v = parse(rest, { name: { type: 'string' }, nodes: { type: 'string' }, pods: { type: 'string' }, mode: { type: 'string' }, store: { type: 'string' } });
      const state = await labUp({
        name: labName(v.name),
        nodes: count('nodes', v.nodes, 3, MAX_NODES),
        pods: count('pods', v.pods, 2, MAX_PODS),
        mode: mode(v.mode),
        store: store(v.store),
      });
      process.stdout.write(summary(state));
      return 0;
    }
    case 'add-node': {
      const v = parse(rest, { name: { type: 'string' } });
      const { node, pods } = await labAddNode(labName(v.name));
      process.stdout.write(`  ${node.ns}: underlay ${node.underlayIp}, pods ${node.subnet} (leased through etcd), agent pid ${node.agent?.pid}\n`);
      for (const p of pods) process.stdout.write(`    ${p.ns}: ${p.ip}\n`);
      return 0;
    }
    case 'down': {
      const v = parse(rest, { name: { type: 'string' } });
      const name = labName(v.name);
      await labDown({ name });
      process.stdout.write(`lab "${name}" down\n`);
      return 0;
    }
    case 'demo': {
      parse(rest, {});
      const rows = await labDemo();
      return rows.every((r) => r.error === undefined) ? 0 : 1;
    }
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return 0;
    case undefined:
      throw new UsageError('expected up, add-node, down or demo');
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  }
}

/** Runs `tulle lab <argv>`; returns the exit status (2 for a bad command line, 1 for a failure). */
export async function labMain(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (rest.includes('--help') || rest.includes('-h')) return dispatch('help', []);
  try {
    return await dispatch(cmd, rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`tulle lab: ${e.message}\n\n${HELP}`);
      return 2;
    }
    process.stderr.write(`tulle lab ${cmd}: ${(e as Error).message}\n`);
    return 1;
  }
}
