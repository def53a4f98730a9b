/**
 * From trials to figures: the metrics, their medians per scenario, ratios to each scenario's
 * kernel VXLAN baseline, the text and Markdown tables, and the acceptance checks.
 * Everything here is pure (no I/O), so it is unit-tested.
 */
import { ratio, summarize, type Summary } from './stats.js';
import { sameMachineState, type Scenario } from './scenarios.js';
import { LOSS_BOUND_PCT } from './rate-search.js';
import type { TrialResult } from './trial.js';

export interface MetricDef {
  key: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  /** Whether a ratio to kernel VXLAN means anything (not for loss percentages). */
  ratio: boolean;
  digits: number;
  get: (t: TrialResult) => number | null;
}

const tcp = (t: TrialResult, streams: number) => t.tcp.find((x) => x.streams === streams) ?? null;
const udp = (t: TrialResult, payload: number) => t.udp.find((x) => x.payload === payload) ?? null;

export const METRICS: readonly MetricDef[] = [
  { key: 'tcp1Gbps', label: 'TCP 1 stream', unit: 'Gbit/s', better: 'higher', ratio: true, digits: 2, get: (t) => tcp(t, 1)?.gbps ?? null },
  { key: 'tcp4Gbps', label: 'TCP 4 streams', unit: 'Gbit/s', better: 'higher', ratio: true, digits: 2, get: (t) => tcp(t, 4)?.gbps ?? null },
  {
    key: 'udp64BoundedKpps', label: `UDP 64 B at <= ${LOSS_BOUND_PCT} % loss`, unit: 'kpps', better: 'higher', ratio: true, digits: 0,
    get: (t) => kilo(udp(t, 64)?.bounded?.receivedPps),
  },
  { key: 'udp64Kpps', label: 'UDP 64 B flood, received', unit: 'kpps', better: 'higher', ratio: true, digits: 0, get: (t) => kilo(udp(t, 64)?.receivedPps) },
  { key: 'udp64LossPct', label: 'UDP 64 B flood, loss', unit: '%', better: 'lower', ratio: false, digits: 1, get: (t) => udp(t, 64)?.lostPercent ?? null },
  {
    key: 'udp64SocketLossPct', label: 'UDP 64 B flood, lost in the receiving socket', unit: '%', better: 'lower', ratio: false, digits: 1,
    get: (t) => udp(t, 64)?.socketLostPercent ?? null,
  },
  { key: 'udp1400Kpps', label: 'UDP 1400 B flood, received', unit: 'kpps', better: 'higher', ratio: true, digits: 0, get: (t) => kilo(udp(t, 1400)?.receivedPps) },
  { key: 'udp1400LossPct', label: 'UDP 1400 B flood, loss', unit: '%', better: 'lower', ratio: false, digits: 1, get: (t) => udp(t, 1400)?.lostPercent ?? null },
  {
    key: 'udp1400SocketLossPct', label: 'UDP 1400 B flood, lost in the receiving socket', unit: '%', better: 'lower', ratio: false, digits: 1,
    get: (t) => udp(t, 1400)?.socketLostPercent ?? null,
  },
  { key: 'rttP50Us', label: 'ping RTT p50', unit: 'µs', better: 'lower', ratio: true, digits: 0, get: (t) => t.rtt?.p50Us ?? null },
  { key: 'rttP99Us', label: 'ping RTT p99', unit: 'µs', better: 'lower', ratio: true, digits: 0, get: (t) => t.rtt?.p99Us ?? null },
  { key: 'handoffP50Us', label: '4 process hand-offs p50', unit: 'µs', better: 'lower', ratio: false, digits: 0, get: (t) => t.handoff?.p50Us ?? null },
  { key: 'cpuSPerGB', label: 'CPU s/GB, TCP 1 stream', unit: 's/GB', better: 'lower', ratio: true, digits: 2, get: (t) => tcp(t, 1)?.cpuSPerGB ?? null },
];

function kilo(x: number | undefined): number | null {
  return x === undefined ? null : x / 1000;
}

export interface ScenarioSummary {
  scenario: Scenario;
  trials: number;
  failedTrials: number;
  metrics: Record<string, Summary>;
  /** Median over the baseline's median, per metric with `ratio`; null without a baseline or figure. */
  ratios: Record<string, number | null>;
  backgroundCores: Summary;
  errors: string[];
}

/** Medians per scenario (in the order given) and ratios to each one's baseline. */
export function aggregate(scenarios: readonly Scenario[], trials: readonly TrialResult[]): ScenarioSummary[] {
  const rows = scenarios.map((sc) => {
    const mine = trials.filter((t) => t.scenario === sc.name);
    const metrics: Record<string, Summary> = {};
    for (const m of METRICS) metrics[m.key] = summarize(mine.map(m.get));
    return {
      scenario: sc, trials: mine.length, failedTrials: mine.filter((t) => t.errors.length > 0).length, metrics, ratios: {} as Record<string, number | null>,
      backgroundCores: summarize(mine.map((t) => t.backgroundCores)), errors: distinctErrors(mine.flatMap((t) => t.errors)),
    };
  });
  for (const row of rows) {
    const base = rows.find((b) => b.scenario.name === row.scenario.baseline);
    for (const m of METRICS) {
      if (m.ratio) row.ratios[m.key] = base ? ratio(row.metrics[m.key]?.median, base.metrics[m.key]?.median) : null;
    }
  }
  return rows;
}

/** One of each error, counting messages that differ only in a PID as the same (each trial keeps its own). */
function distinctErrors(errors: readonly string[]): string[] {
  const seen = new Map<string, string>();
  for (const e of errors) {
    const key = e.replace(/\bpid \d+/g, 'pid N');
    if (!seen.has(key)) seen.set(key, e);
  }
  return [...seen.values()];
}

function fmt(x: number | undefined, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

/** Cells of the table: one row per metric, one column per scenario ("value (ratio x)"). */
function cells(rows: readonly ScenarioSummary[]): { header: string[]; body: string[][] } {
  const header = ['metric (median)', ...rows.map((r) => r.scenario.name)];
  const body = METRICS.map((m) => [
    `${m.label} [${m.unit}]`,
    ...rows.map((r) => {
      const v = fmt(r.metrics[m.key]?.median, m.digits);
      const q = r.ratios[m.key];
      return q === null || q === undefined || v === '-' ? v : `${v} (${q.toFixed(2)}x)`;
    }),
  ]);
  body.push(['trials ok / run', ...rows.map((r) => `${r.trials - r.failedTrials}/${r.trials}`)]);
  return { header, body };
}

/** The console table; ratios are to the scenario's kernel VXLAN baseline from the same run. */
export function formatTable(rows: readonly ScenarioSummary[]): string {
  const { header, body } = cells(rows);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (c: string[]): string => c.map((x, i) => (i === 0 ? x.padEnd(widths[i] ?? 0) : x.padStart(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

export function formatMarkdown(rows: readonly ScenarioSummary[]): string {
  const { header, body } = cells(rows);
  const line = (c: string[]): string => `| ${c.map((x) => x.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...body.map(line)].join('\n');
}

export interface Check {
  scenario: string;
  what: string;
  /** null when a figure is missing. */
  pass: boolean | null;
  detail: string;
}

/**
 * Issue 5's acceptance figures, computed from this run's medians for every tulle scenario:
 * TCP 1 stream >= 50 % of kernel VXLAN and >= 3x the same tulle scenario with offloads off;
 * UDP 64 B >= 50 % of kernel VXLAN; ping p50 <= kernel VXLAN p50 + 50 µs. The round-trip line
 * also gives the bare process hand-offs and the minimal userspace tunnel's p50 (same MTU, CPU
 * latency request and placement) when the run measured them.
 */
export function acceptanceChecks(rows: readonly ScenarioSummary[]): Check[] {
  const out: Check[] = [];
  const med = (r: ScenarioSummary | undefined, k: string): number | undefined => r?.metrics[k]?.median;
  for (const r of rows) {
    const sc = r.scenario;
    // Offloads-off rows are the reference for the 3x figure, not candidates themselves.
    if (sc.mode !== 'tulle' || sc.offloads === false) continue;
    const base = rows.find((b) => b.scenario.name === sc.baseline);
    const atLeast = (what: string, q: number | null | undefined, need: number, vs: string): void => {
      out.push({
        scenario: sc.name, what, pass: q === null || q === undefined ? null : q >= need,
        detail: q === null || q === undefined ? 'figure missing' : `${q.toFixed(2)}x ${vs} (needs >= ${need.toFixed(2)}x)`,
      });
    };
    atLeast('TCP 1 stream vs kernel VXLAN', r.ratios.tcp1Gbps, 0.5, sc.baseline ?? 'baseline');
    const off = rows.find((o) => o.scenario.mode === 'tulle' && o.scenario.offloads === false && o.scenario.workers === sc.workers && sameMachineState(o.scenario, sc));
    if (off) atLeast('TCP 1 stream vs offloads off', ratio(med(r, 'tcp1Gbps'), med(off, 'tcp1Gbps')), 3, off.scenario.name);
    atLeast(`UDP 64 B packet rate (at <= ${LOSS_BOUND_PCT} % loss) vs kernel VXLAN`, r.ratios.udp64BoundedKpps, 0.5, sc.baseline ?? 'baseline');
    const p50 = med(r, 'rttP50Us');
    // The userspace floor measured with the machine in the same state.
    const floor = rows.find((f) => f.scenario.userspaceTunnel === 'c' && sameMachineState(f.scenario, sc));
    const kp50 = med(base, 'rttP50Us');
    const ok = p50 !== undefined && kp50 !== undefined && Number.isFinite(p50) && Number.isFinite(kp50);
    out.push({
      scenario: sc.name, what: 'ping RTT p50 within kernel VXLAN p50 + 50 µs', pass: ok ? p50 <= kp50 + 50 : null,
      detail: ok ? `${p50.toFixed(0)} µs vs ${kp50.toFixed(0)} µs (${p50 - kp50 >= 0 ? '+' : ''}${(p50 - kp50).toFixed(0)} µs)${floorNote(kp50, med(r, 'handoffP50Us'))}${tunnelNote(med(floor, 'rttP50Us'), floor)}` : 'figure missing',
    });
  }
  return out;
}

/** How the round trip compares with kernel VXLAN plus the process hand-offs alone (handoff.c). */
function floorNote(kernelP50: number, handoffP50: number | undefined): string {
  if (handoffP50 === undefined || !Number.isFinite(handoffP50)) return '';
  return `; 4 process hand-offs alone take ${handoffP50.toFixed(0)} µs here, kernel p50 + hand-offs = ${(kernelP50 + handoffP50).toFixed(0)} µs`;
}

function tunnelNote(tunnelP50: number | undefined, row: ScenarioSummary | undefined): string {
  if (row === undefined || tunnelP50 === undefined || !Number.isFinite(tunnelP50)) return '';
  return `; the minimal userspace tunnel (${row.scenario.name}) takes ${tunnelP50.toFixed(0)} µs`;
}

export function formatChecks(checks: readonly Check[]): string {
  return checks
    .map((c) => `${c.pass === null ? 'n/a ' : c.pass ? 'pass' : 'FAIL'}  ${c.scenario}: ${c.what}: ${c.detail}`)
    .join('\n');
}
