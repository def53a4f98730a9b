/**
 * `npm run bench`: tulle against kernel VXLAN (as flannel configures it) and plain routing, on
 * one machine, in network namespaces (root). Scenarios come from bench/scenarios.ts; trials are
 * interleaved (trial 1 of every scenario, then trial 2, ...) so that drift in the machine's load
 * falls on every scenario alike, and every trial gets a fresh lab (bench/trial.ts).
 *
 * Output: progress lines, then a table of medians with each figure's ratio to kernel VXLAN from
 * the same run, and the acceptance checks; the trials and summaries as JSON, the table
 * as Markdown and an SVG chart, all in --out (default bench/results/, git-ignored).
 *
 * Network rules: every namespace is tl<lab>-* with a lab name unique to this run, all addresses
 * and traffic stay inside them, and they are deleted after every trial, on failure, and on
 * SIGINT/SIGTERM. The root namespace is not changed. Processes are ended by PID only (labDown).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { labDown, labPrefix } from '../src/lab/topology.js';
import { listNetns } from '../src/lab/netns.js';
import { run } from '../src/util/exec.js';
import { packageRoot } from '../src/util/paths.js';
import { SCENARIOS, selectScenarios, type Scenario } from './scenarios.js';
import { oneLine, runTrial, type TrialResult } from './trial.js';
import { acceptanceChecks, aggregate, formatChecks, formatMarkdown, formatTable } from './report.js';
import { renderChart } from './svg.js';
import { handoffBinary } from '../src/lab/measure.js';
import { udptunBinary } from '../src/lab/udptun.js';

export const DEFAULT_TRIALS = 3;
export const DEFAULT_SECONDS = 5;
const MAX_TRIALS = 50;
const MAX_SECONDS = 600;
/** Background load (busy cores with the lab idle) above which the report warns. */
const BUSY_BACKGROUND_CORES = 0.2;
export const CPU_METHOD =
  'machine-wide busy time from /proc/stat (user+nice+system+irq+softirq, all CPUs) over each iperf3 TCP run, divided by GB (1e9 bytes) received; ' +
  'includes everything else running on the machine (see backgroundCores); agentCpuSPerGB = user+system time of the tulle agents only';

const HELP = `usage: node dist/bench/macro.js [--trials N] [--seconds S] [--only NAME[,NAME...]] [--out DIR] [--list]
  --trials N    trials per scenario, medians reported (default ${DEFAULT_TRIALS})
  --seconds S   length of each iperf3 run (default ${DEFAULT_SECONDS})
  --only NAMES  run only these scenarios (comma-separated, repeatable) plus their kernel VXLAN baselines
  --out DIR     where the JSON, Markdown and SVG go (default bench/results)
  --list        list the scenarios and exit
Needs root, iproute2, iperf3, ping and ethtool, and a built tree (npm run build).`;

class UsageError extends Error {}

interface Args {
  trials: number;
  seconds: number;
  only: string[] | undefined;
  out: string;
  list: boolean;
  help: boolean;
}

function intArg(flag: string, v: string | undefined, dflt: number, max: number): number {
  if (v === undefined) return dflt;
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!(n >= 1 && n <= max)) throw new UsageError(`invalid --${flag} value ${JSON.stringify(v)} (1..${max})`);
  return n;
}

function parseCli(argv: string[]): Args {
  let v;
  try {
    v = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        trials: { type: 'string' }, seconds: { type: 'string' }, only: { type: 'string', multiple: true }, out: { type: 'string' },
        list: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const only = v.only?.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  if (v.only !== undefined && only?.length === 0) throw new UsageError('--only needs at least one scenario name');
  return {
    trials: intArg('trials', v.trials, DEFAULT_TRIALS, MAX_TRIALS),
    seconds: intArg('seconds', v.seconds, DEFAULT_SECONDS, MAX_SECONDS),
    only, out: resolve(v.out ?? join(packageRoot(), 'bench', 'results')), list: v.list ?? false, help: v.help ?? false,
  };
}

function clock(ms: number): string {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

async function environment(): Promise<Record<string, unknown>> {
  const git = async (args: string[]): Promise<string | null> => run('git', ['-C', packageRoot(), ...args]).then((o) => o.trim(), () => null);
  const cpus = os.cpus();
  return {
    node: process.version, kernel: os.release(), arch: process.arch, cpuModel: cpus[0]?.model ?? 'unknown', cpus: cpus.length,
    memoryBytes: os.totalmem(), gitCommit: await git(['rev-parse', 'HEAD']), gitDirty: ((await git(['status', '--porcelain'])) ?? '') !== '',
    iperf3: (await run('iperf3', ['--version']).catch(() => '')).split('\n')[0] ?? null,
  };
}

function listScenarios(): string {
  return SCENARIOS.map((s) => `${s.inDefaultRun ? '*' : ' '} ${s.name.padEnd(24)} ${s.description}`).join('\n') + '\n(* = in the default run)';
}

async function main(argv: string[]): Promise<number> {
  const args = parseCli(argv);
  if (args.help) return (console.log(HELP), 0);
  if (args.list) return (console.log(listScenarios()), 0);
  if (process.getuid?.() !== 0) throw new UsageError('the macro benchmark needs root (it builds network namespaces)');
  let selected;
  try {
    selected = selectScenarios(SCENARIOS, args.only);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { run: scenarios, addedBaselines } = selected;
  // The helper programs come with the addon; without them every trial would fail after its lab is built.
  handoffBinary();
  if (scenarios.some((s) => s.userspaceTunnel === 'c')) udptunBinary();
  const labName = `bench${randomBytes(3).toString('hex')}`;
  const started = new Date();
  // Read before the first trial: the commit and tree state are those of the code being measured,
  // not of whatever the tree holds by the time the run ends.
  const env = await environment();
  const log = (l: string): void => console.log(l);
  log(`tulle macro benchmark: ${scenarios.length} scenarios x ${args.trials} trials, ${args.seconds} s per iperf3 run, lab ${labPrefix(labName)}*`);
  for (const s of scenarios) log(`  ${s.name.padEnd(24)} ${s.description}${addedBaselines.includes(s.name) ? ' (added: baseline)' : ''}`);
  log(`CPU per GB: ${CPU_METHOD}`);

  let stopping = false;
  const onSignal = (sig: string): void => {
    if (stopping) return log(`${sig} again: still cleaning up lab ${labName}`);
    stopping = true;
    log(`${sig}: stopping, tearing down lab ${labName}`);
    // Ends the lab's processes at once, so the measurement in progress returns.
    labDown({ name: labName }).catch((e: Error) => log(`cleanup: ${e.message}`));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const trials: TrialResult[] = [];
  const total = scenarios.length * args.trials;
  const t0 = Date.now();
  try {
    outer: for (let t = 1; t <= args.trials; t++) {
      for (const sc of scenarios) {
        if (stopping) break outer;
        const done = trials.length;
        const eta = done > 0 ? ` ~${clock(((Date.now() - t0) / done) * (total - done))} left` : '';
        log(`[${done + 1}/${total} ${clock(Date.now() - t0)} elapsed${eta}] trial ${t}/${args.trials} ${sc.name}`);
        trials.push(await runTrial(sc, t, { labName, seconds: args.seconds, log, stopping: () => stopping }));
      }
    }
  } finally {
    await labDown({ name: labName }).catch((e: Error) => log(`cleanup: ${e.message}`));
    const left = await listNetns(labPrefix(labName));
    if (left.length > 0) log(`WARNING: namespaces left behind: ${left.join(', ')} (run: node dist/src/cli/tulle.js lab down --name ${labName})`);
  }
  await report(scenarios, trials, args, started, env, stopping, Date.now() - t0);
  return stopping ? 130 : 0;
}

async function report(
  scenarios: Scenario[], trials: TrialResult[], args: Args, started: Date, env: Record<string, unknown>, interrupted: boolean, elapsedMs: number,
): Promise<void> {
  const rows = aggregate(scenarios, trials);
  const checks = acceptanceChecks(rows);
  const table = formatTable(rows);
  console.log('');
  console.log(`medians of ${args.trials} trial(s), ${args.seconds} s runs; (x) = ratio to the kernel VXLAN scenario of the same MTU in this run${interrupted ? '; INTERRUPTED, partial' : ''}`);
  console.log(table);
  const bg = rows.flatMap((r) => (Number.isFinite(r.backgroundCores.max) ? [r.backgroundCores.max] : []));
  const bgMax = bg.length ? Math.max(...bg) : NaN;
  console.log(`CPU s/GB is machine-wide (/proc/stat busy time); background load before the TCP runs: up to ${Number.isFinite(bgMax) ? bgMax.toFixed(2) : '-'} busy cores`);
  if (bgMax > BUSY_BACKGROUND_CORES) {
    console.log(`WARNING: something else kept up to ${bgMax.toFixed(2)} cores busy during this run; its CPU per GB and, likely, its throughput figures include that load`);
  }
  if (checks.length > 0) console.log(`\nissue 5 acceptance figures (this run):\n${formatChecks(checks)}`);
  for (const r of rows) for (const e of r.errors) console.log(`error: ${r.scenario.name}: ${oneLine(e)}`);

  const stamp = started.toISOString().replace(/[:.]/g, '-');
  await mkdir(args.out, { recursive: true });
  const base = join(args.out, stamp);
  const json = {
    version: 1, startedAt: started.toISOString(), elapsedS: elapsedMs / 1000, interrupted,
    options: { trials: args.trials, seconds: args.seconds, only: args.only ?? null }, environment: env, cpuMethod: CPU_METHOD,
    scenarios, summary: rows.map((r) => ({ ...r, scenario: r.scenario.name })), checks, trials,
  };
  const subtitle = `${started.toISOString()} · ${args.trials} trial(s) x ${args.seconds} s · ${env.cpus} CPU ${env.cpuModel} · Linux ${env.kernel} · Node ${env.node}` +
    (env.gitCommit ? ` · ${String(env.gitCommit).slice(0, 10)}${env.gitDirty ? '+dirty' : ''}` : '');
  await writeFile(`${base}.json`, JSON.stringify(json, null, 2) + '\n');
  await writeFile(`${base}.md`, `${formatMarkdown(rows)}\n\n${subtitle}\n\nCommand: \`node dist/bench/macro.js ${process.argv.slice(2).join(' ')}\`\n`);
  await writeFile(`${base}.svg`, renderChart(rows, { title: 'tulle vs kernel VXLAN vs plain routing (2 nodes x 1 pod, netns)', subtitle }));
  console.log(`\nwrote ${base}.json, ${base}.md, ${base}.svg`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`bench: ${e.message}\n${HELP}`);
      process.exit(2);
    }
    console.error(`bench: ${(e as Error).stack ?? String(e)}`);
    process.exit(1);
  },
);
