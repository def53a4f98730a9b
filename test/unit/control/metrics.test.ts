import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderMetrics, type MetricsInput } from '../../../src/control/metrics.js';
import { COUNTER_HELP, COUNTER_NAMES, type CounterSnapshot } from '../../../src/dataplane/counters.js';
import { packageRoot } from '../../../src/util/paths.js';
import type { WorkerStatus } from '../../../src/worker/supervisor.js';

function counters(base: number): CounterSnapshot {
  return Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, base + i])) as CounterSnapshot;
}

function worker(id: number, state: WorkerStatus['state'], restarts: number, features?: WorkerStatus['features']): WorkerStatus {
  return { id, state, threadId: id + 1, restarts, startedAt: '2026-12-07T00:00:00.000Z', sourcePorts: [], cpu: null, wantedCpu: null, ...(features ? { features } : {}) };
}

const input: MetricsInput = {
  ready: true,
  startedAt: new Date(1_765_000_000_500),
  node: { subnet: '10.244.1.0/24', vtep_ip: '172.31.0.1', vtep_mac: '02:aa:00:00:00:01', device: 'tulle0', vni: 1, port: 8472, mtu: 1450 },
  workers: [worker(0, 'running', 0, { vnet: true, gso: true, gro: false, uso: false }), worker(1, 'restarting', 3)],
  counters: [counters(1000), counters(2_000_000_000_000)],
  peers: 2,
  endpoints: 5,
  store: { type: 'etcd', state: 'unreachable' },
  cpuLatencyHeld: false,
  kernelDrops: { tunTxDropped: 723404, rxSocketDrops: 0 },
};

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Reads the text exposition format strictly enough to catch malformed output. */
function parse(text: string): { types: Map<string, string>; helps: Map<string, string>; samples: Sample[] } {
  expect(text.endsWith('\n')).toBe(true);
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      const map = meta[1] === 'HELP' ? helps : types;
      expect(map.has(meta[2]!), `${meta[1]} twice for ${meta[2]}`).toBe(false);
      map.set(meta[2]!, meta[3]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    expect(m, `malformed line ${JSON.stringify(line)}`).not.toBeNull();
    const labels: Record<string, string> = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
    const body = m![2] ?? '';
    let at = 0;
    while (at < body.length) {
      re.lastIndex = at;
      const l = re.exec(body);
      expect(l, `malformed labels in ${JSON.stringify(line)}`).not.toBeNull();
      labels[l![1]!] = l![2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      at = re.lastIndex;
    }
    expect(types.has(m![1]!), `sample before its TYPE: ${line}`).toBe(true);
    samples.push({ name: m![1]!, labels, value: Number(m![3]) });
  }
  return { types, helps, samples };
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).map((s) => s.value);

describe('renderMetrics', () => {
  it('writes every data path counter per worker, with its help, as a counter family', () => {
    const { types, helps, samples } = parse(renderMetrics(input));
    COUNTER_NAMES.forEach((n, i) => {
      const metric = `tulle_${n}_total`;
      expect(types.get(metric)).toBe('counter');
      expect(helps.get(metric)).toBe(COUNTER_HELP[n]);
      expect(value(samples, metric, { worker: '0' })).toEqual([1000 + i]);
      expect(value(samples, metric, { worker: '1' })).toEqual([2_000_000_000_000 + i]);
    });
    for (const [name, type] of types) if (type === 'counter') expect(name).toMatch(/_total$/);
  });

  it('writes the node, workers, store and latency request', () => {
    const { samples } = parse(renderMetrics(input));
    expect(value(samples, 'tulle_ready')).toEqual([1]);
    expect(value(samples, 'tulle_start_time_seconds')).toEqual([1_765_000_000.5]);
    expect(samples.find((s) => s.name === 'tulle_node_info')?.labels).toEqual({
      subnet: '10.244.1.0/24', vtep_ip: '172.31.0.1', vtep_mac: '02:aa:00:00:00:01', device: 'tulle0', vni: '1', port: '8472', mtu: '1450',
    });
    expect(value(samples, 'tulle_peers')).toEqual([2]);
    expect(value(samples, 'tulle_endpoints')).toEqual([5]);
    expect(samples.filter((s) => s.name === 'tulle_store_state').map((s) => s.labels)).toEqual([{ type: 'etcd', state: 'unreachable' }]);
    expect(value(samples, 'tulle_cpu_latency_request_held')).toEqual([0]);
    expect(value(samples, 'tulle_worker_up', { worker: '0' })).toEqual([1]);
    expect(value(samples, 'tulle_worker_up', { worker: '1' })).toEqual([0]);
    expect(value(samples, 'tulle_worker_restarts_total', { worker: '1' })).toEqual([3]);
    const offload = samples.filter((s) => s.name === 'tulle_worker_offload').map((s) => `${s.labels.worker}:${s.labels.feature}=${s.value}`);
    expect(offload).toEqual(['0:tso=1', '0:udp_gso=1', '0:udp_gro=0', '0:uso=0']);
  });

  it('leaves out what is not known yet: labels, counters before the workers, the latency request when none is configured', () => {
    const joining: MetricsInput = {
      ...input, ready: false, node: { ...input.node, subnet: undefined, vni: undefined }, workers: [], counters: [], cpuLatencyHeld: undefined, kernelDrops: undefined,
    };
    const { types, samples } = parse(renderMetrics(joining));
    expect(value(samples, 'tulle_ready')).toEqual([0]);
    const info = samples.find((s) => s.name === 'tulle_node_info')!.labels;
    expect(info).not.toHaveProperty('subnet');
    expect(info).not.toHaveProperty('vni');
    expect(info.vtep_ip).toBe('172.31.0.1');
    expect(types.has('tulle_rx_datagrams_total')).toBe(true);
    expect(value(samples, 'tulle_rx_datagrams_total')).toEqual([]);
    expect(types.has('tulle_cpu_latency_request_held')).toBe(false);
    expect(types.has('tulle_kernel_tun_tx_dropped_total')).toBe(false);
    // A count that could not be read is left out, not shown as zero.
    const partly = parse(renderMetrics({ ...input, kernelDrops: { tunTxDropped: null, rxSocketDrops: 4 } }));
    expect(partly.types.has('tulle_kernel_tun_tx_dropped_total')).toBe(false);
    expect(value(partly.samples, 'tulle_kernel_udp_rx_drops_total')).toEqual([4]);
  });

  it("reports the kernel's drops before the workers as counters", () => {
    const { types, samples } = parse(renderMetrics(input));
    expect(types.get('tulle_kernel_tun_tx_dropped_total')).toBe('counter');
    expect(value(samples, 'tulle_kernel_tun_tx_dropped_total')).toEqual([723404]);
    expect(value(samples, 'tulle_kernel_udp_rx_drops_total')).toEqual([0]);
  });

  it('escapes label values so a hostile one cannot break the format', () => {
    const odd = 'a"b\\c\nd} e="f"';
    const { samples } = parse(renderMetrics({ ...input, node: { device: odd }, store: { type: odd, state: 'ok' } }));
    expect(samples.find((s) => s.name === 'tulle_node_info')?.labels).toEqual({ device: odd });
    expect(samples.find((s) => s.name === 'tulle_store_state')?.labels.type).toBe(odd);
  });
});

describe('the README', () => {
  it('lists every counter with what it counts', () => {
    const readme = readFileSync(join(packageRoot(), 'README.md'), 'utf8');
    for (const n of COUNTER_NAMES) expect(readme, n).toContain(`| \`${n}\` | ${COUNTER_HELP[n]} |`);
  });

  it('names every other metric family', () => {
    const readme = readFileSync(join(packageRoot(), 'README.md'), 'utf8');
    const counterFamilies = new Set(COUNTER_NAMES.map((n) => `tulle_${n}_total`));
    const families = [...parse(renderMetrics(input)).types.keys()].filter((f) => !counterFamilies.has(f));
    expect(families.length).toBeGreaterThan(10);
    for (const f of families) expect(readme, f).toContain(`\`${f}`);
  });
});
