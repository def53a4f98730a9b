// `tulle lab demo`: the same 3-node pod network with tulle and with kernel VXLAN, checked and
// measured the same way, side by side. Each mode gets a fresh lab that is torn down afterwards,
// also when a check fails; a failed mode is reported in its row and the demo goes on.
import { linksOfType, listNetns } from './netns.js';
import { iperf3Tcp, pingAll, pingRtt, tcpTransfer, type RttStats } from './measure.js';
import { labDown, labPrefix, labUp, readLabState, type LabMode, type LabState } from './topology.js';

export interface DemoOptions {
  name?: string;
  nodes?: number;
  pods?: number;
  iperfSeconds?: number;
  transferBytes?: number;
  log?: (line: string) => void;
}

export interface DemoRow {
  mode: LabMode;
  pairsReachable: number;
  pairsTotal: number;
  transfersChecked: number;
  gbps: number | null;
  rtt: RttStats | null;
  error?: string;
}

const DEMO_MODES: readonly LabMode[] = ['tulle', 'kernel-vxlan'];
const RTT_PINGS = 100;

async function runMode(mode: LabMode, o: Required<DemoOptions>): Promise<DemoRow> {
  const log = (l: string): void => o.log(`[${mode}] ${l}`);
  const row: DemoRow = { mode, pairsReachable: 0, pairsTotal: 0, transfersChecked: 0, gbps: null, rtt: null };
  let lab: LabState | null = null;
  try {
    log(`bringing up ${o.nodes} nodes x ${o.pods} pods`);
    lab = await labUp({ name: o.name, nodes: o.nodes, pods: o.pods, mode, store: 'static' });
    const failures = await pingAll(lab.pods);
    row.pairsTotal = lab.pods.length * (lab.pods.length - 1);
    row.pairsReachable = row.pairsTotal - failures.length;
    log(`ping: ${row.pairsReachable}/${row.pairsTotal} pod pairs reachable`);
    if (failures.length > 0) throw new Error(`unreachable: ${failures.map((f) => `${f.from.ip} -> ${f.to.ip}`).join(', ')}`);
    const firstPod = (node: number) => lab!.pods.find((p) => p.node === node && p.index === 1)!;
    for (const a of lab.nodes) {
      for (const b of lab.nodes.filter((n) => n.index > a.index)) {
        const from = firstPod(a.index);
        const to = firstPod(b.index);
        const r = await tcpTransfer(from.ns, to.ns, to.ip, o.transferBytes, a.index * 100 + b.index);
        row.transfersChecked++;
        log(`tcp ${from.ip} -> ${to.ip}: ${r.bytes} bytes, sha256 ok`);
      }
    }
    if (mode === 'tulle') {
      for (const ns of await listNetns(labPrefix(o.name))) {
        const vx = await linksOfType(ns, 'vxlan');
        if (vx.length > 0) throw new Error(`kernel VXLAN device ${vx.join(', ')} found in ${ns}`);
      }
      log('no kernel VXLAN device in any lab namespace');
    }
    const [c, s] = [firstPod(1), firstPod(lab.nodes.length > 1 ? 2 : 1)];
    row.rtt = await pingRtt(c.ns, s.ip, RTT_PINGS);
    log(`ping RTT ${c.ip} -> ${s.ip}: p50 ${row.rtt.p50Ms} ms, p99 ${row.rtt.p99Ms} ms (${row.rtt.received}/${row.rtt.sent})`);
    log(`iperf3 ${c.ip} -> ${s.ip}, 1 stream, ${o.iperfSeconds} s`);
    const perf = await iperf3Tcp(c.ns, s.ns, s.ip, { seconds: o.iperfSeconds, streams: 1 });
    row.gbps = perf.gbps;
    log(`iperf3: ${perf.gbps.toFixed(2)} Gbit/s (${perf.retransmits} retransmits)`);
  } catch (e) {
    row.error = (e as Error).message;
    log(`FAILED: ${row.error}`);
  } finally {
    if (lab !== null || (await listNetns(labPrefix(o.name))).length > 0) {
      log('tearing down');
      await labDown({ name: o.name });
    }
  }
  return row;
}

export function formatDemoTable(rows: readonly DemoRow[]): string {
  const kernel = rows.find((r) => r.mode === 'kernel-vxlan')?.gbps ?? null;
  const header = ['mode', 'pairs reachable', 'TCP checked', 'TCP Gbit/s', 'vs kernel', 'ping p50/p99 ms'];
  const body = rows.map((r) => [
    r.mode,
    r.pairsTotal > 0 ? `${r.pairsReachable}/${r.pairsTotal}` : '-',
    String(r.transfersChecked),
    r.gbps === null ? (r.error ? 'failed' : '-') : r.gbps.toFixed(2),
    r.gbps !== null && kernel ? `${((r.gbps / kernel) * 100).toFixed(0)} %` : '-',
    r.rtt ? `${r.rtt.p50Ms.toFixed(3)}/${r.rtt.p99Ms.toFixed(3)}` : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

/** Runs the demo; prints progress and the table through `log`; returns one row per mode. */
export async function labDemo(opts: DemoOptions = {}): Promise<DemoRow[]> {
  const o: Required<DemoOptions> = {
    name: opts.name ?? 'demo', nodes: opts.nodes ?? 3, pods: opts.pods ?? 2, iperfSeconds: opts.iperfSeconds ?? 5,
    transferBytes: opts.transferBytes ?? 16 << 20, log: opts.log ?? ((l) => console.log(l)),
  };
  if ((await readLabState(o.name)) !== null || (await listNetns(labPrefix(o.name))).length > 0) {
    o.log(`removing a previous "${o.name}" lab`);
    await labDown({ name: o.name });
  }
  const rows: DemoRow[] = [];
  for (const mode of DEMO_MODES) rows.push(await runMode(mode, o));
  o.log('');
  o.log(formatDemoTable(rows));
  for (const r of rows) if (r.error) o.log(`${r.mode}: ${r.error}`);
  return rows;
}
