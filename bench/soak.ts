/**
 * Soak: a 2-node tulle lab under full load for a fixed time (default 600 s).
 *
 *   pod n1-p1 ── tulle n1 ══ VXLAN ══ tulle n2 ── pod n2-p1
 *       byte-checked TCP transfers, back to back  ──►
 *       ◄── iperf3 TCP for the whole run (the reverse direction, to load both data paths)
 *
 * Samples each agent's RSS and status every SAMPLE_S seconds, and passes when: every transfer's
 * SHA-256 matched, no worker restarted, and RSS after the run is within RSS_GROWTH_LIMIT of RSS
 * after the warm-up (packet buffers are preallocated, so memory must not grow with traffic).
 * Prints a table and writes JSON next to the other bench results.
 *
 *   node dist/bench/soak.js [--seconds 600] [--out bench/results]
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from '../src/control/api.js';
import { iperf3Tcp, tcpTransfer } from '../src/lab/measure.js';
import { labDown, labUp, type LabState } from '../src/lab/topology.js';

const SAMPLE_S = 10;
const WARMUP_S = 60;
const TRANSFER_BYTES = 2 * 1024 ** 3;
/** Allowed RSS growth after warm-up: 10 % (JIT, heap settling), at least 16 MiB. */
const RSS_GROWTH_LIMIT = 0.1;
const RSS_GROWTH_FLOOR_KB = 16 * 1024;

interface Sample {
  t: number;
  rssKb: number[];
  restarts: number[];
  gbitsMoved: number;
}

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}

async function restarts(socket: string): Promise<number> {
  const s = (await request(socket, 'GET', '/v1/status')) as { workers: { restarts: number }[] };
  return s.workers.reduce((n, w) => n + w.restarts, 0);
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, out: { type: 'string' } } });
  const seconds = Number(values.seconds ?? 600);
  if (!Number.isFinite(seconds) || seconds < WARMUP_S + SAMPLE_S) throw new Error(`--seconds must be at least ${WARMUP_S + SAMPLE_S}, got ${values.seconds}`);
  const outDir = values.out ?? 'bench/results';
  const name = `soak${process.pid % 10000}`;
  let lab: LabState | undefined;
  const stop = () => void (lab ? labDown({ name }).finally(() => process.exit(130)) : process.exit(130));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    lab = await labUp({ name, nodes: 2, pods: 1, mode: 'tulle', store: 'static' });
    const agents = lab.nodes.map((n) => n.agent!);
    const [p1, p2] = lab.pods;
    const t0 = Date.now();
    const deadline = t0 + seconds * 1000;
    // Caught at once: an interrupted run (Ctrl-C ends the lab's processes) must reach the cleanup.
    let reverseFailure: string | undefined;
    const reverse = iperf3Tcp(p2.ns, p1.ns, p1.ip, { seconds, port: 5301 }).catch((e: Error) => {
      reverseFailure = e.message;
      return undefined;
    });
    const samples: Sample[] = [];
    let transfers = 0;
    let moved = 0;
    let failure: string | undefined;
    const sampler = setInterval(() => {
      void Promise.all([Promise.all(agents.map((a) => rssKb(a.pid))), Promise.all(agents.map((a) => restarts(a.socket)))]).then(([rss, rs]) => {
        const t = Math.round((Date.now() - t0) / 1000);
        samples.push({ t, rssKb: rss, restarts: rs, gbitsMoved: (moved * 8) / 1e9 });
        process.stdout.write(`  t=${String(t).padStart(4)} s  rss ${rss.map((r) => `${(r / 1024).toFixed(1)} MiB`).join(' / ')}  restarts ${rs.join('/')}  verified ${transfers} transfers (${((moved * 8) / 1e9).toFixed(0)} Gbit)\n`);
      });
    }, SAMPLE_S * 1000);
    while (Date.now() + 5000 < deadline) {
      try {
        const r = await tcpTransfer(p1.ns, p2.ns, p2.ip, TRANSFER_BYTES, transfers + 1);
        transfers++;
        moved += r.bytes;
      } catch (e) {
        failure = (e as Error).message;
        break;
      }
    }
    const rev = await reverse;
    failure ??= reverseFailure;
    clearInterval(sampler);
    const warm = samples.find((s) => s.t >= WARMUP_S) ?? samples[0];
    const last = samples[samples.length - 1];
    const growth = warm && last ? last.rssKb.map((r, i) => r - warm.rssKb[i]) : [];
    const rssOk = growth.every((g, i) => g <= Math.max(RSS_GROWTH_FLOOR_KB, warm!.rssKb[i] * RSS_GROWTH_LIMIT));
    const restartOk = last ? last.restarts.every((r) => r === 0) : false;
    const ok = !failure && rssOk && restartOk && transfers > 0;
    const result = {
      seconds, transfers, bytesVerified: moved, reverseGbps: rev?.gbps, samples, rssGrowthKb: growth,
      checks: { bytesVerified: !failure && transfers > 0, noRestart: restartOk, rssStable: rssOk }, failure, ok,
    };
    await mkdir(outDir, { recursive: true });
    const file = join(outDir, `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await writeFile(file, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(
      `\nsoak ${seconds} s: ${transfers} transfers of ${TRANSFER_BYTES / 1024 ** 3} GiB verified (${((moved * 8) / 1e9).toFixed(0)} Gbit), ` +
        `reverse iperf3 ${rev ? rev.gbps.toFixed(2) : '-'} Gbit/s\n` +
        `RSS after warm-up → end: ${warm && last ? warm.rssKb.map((r, i) => `${(r / 1024).toFixed(1)} → ${(last.rssKb[i] / 1024).toFixed(1)} MiB`).join(', ') : '-'}\n` +
        `worker restarts: ${last ? last.restarts.join('/') : '-'}\n` +
        `${ok ? 'PASS' : `FAIL${failure ? `: ${failure}` : ''}`}  (${file})\n`,
    );
    return ok ? 0 : 1;
  } finally {
    if (lab) await labDown({ name });
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`soak: ${e.message}\n`);
    process.exit(1);
  },
);
