// Reachability, integrity and throughput checks between lab namespaces.
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { CommandError, distScript, nsRun, spawnInNs } from '../util/exec.js';
import { nativeProgram } from '../util/paths.js';
import { streamDigest } from './tcpcheck.js';

export interface PodRef {
  ns: string;
  ip: string;
}

export interface PingFailure {
  from: PodRef;
  to: PodRef;
  error: string;
}

const PING_COUNT = 3;
const PING_CONCURRENCY = 8;
const SERVER_START_TIMEOUT_MS = 10_000;

/** Runs `fn` over `items` with at most `limit` in flight. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Every pod pings every other pod (a pair passes with at least one reply); returns the failures. */
export async function pingAll(pods: readonly PodRef[]): Promise<PingFailure[]> {
  const pairs = pods.flatMap((from) => pods.filter((to) => to !== from).map((to) => ({ from, to })));
  const results = await mapLimit(pairs, PING_CONCURRENCY, async ({ from, to }) => {
    try {
      await nsRun(from.ns, 'ping', ['-n', '-q', '-c', String(PING_COUNT), '-i', '0.2', '-W', '1', to.ip]);
      return null;
    } catch (e) {
      return { from, to, error: (e as Error).message };
    }
  });
  return results.filter((r): r is PingFailure => r !== null);
}

export interface RttStats {
  sent: number;
  received: number;
  minMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

/**
 * A command line that runs `cmd` on `cpu` alone (taskset), or as it is when `cpu` is undefined:
 * for measurements that put the pods' processes on a chosen CPU.
 */
export function onCpu(cpu: number | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return cpu === undefined ? [cmd, [...args]] : ['taskset', ['-c', String(cpu), cmd, ...args]];
}

/** `count` pings from a namespace, `intervalS` apart, ping on `cpu` if given; RTT percentiles from the replies. */
export async function pingRtt(fromNs: string, toIp: string, count = 100, intervalS = 0.01, cpu?: number): Promise<RttStats> {
  const out = await nsRun(fromNs, ...onCpu(cpu, 'ping', ['-n', '-c', String(count), '-i', String(intervalS), '-W', '1', toIp]), {
    timeoutMs: count * (intervalS + 1) * 1000 + 5000,
  }).catch((e: { message: string }) => {
    throw new Error(`ping RTT ${fromNs} -> ${toIp}: ${e.message}`);
  });
  const rtts = [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  return {
    sent: count,
    received: rtts.length,
    minMs: rtts[0] ?? NaN,
    p50Ms: percentile(rtts, 50),
    p90Ms: percentile(rtts, 90),
    p99Ms: percentile(rtts, 99),
    maxMs: rtts[rtts.length - 1] ?? NaN,
  };
}

export interface HandoffStats {
  rounds: number;
  gapUs: number;
  p50Us: number;
  p99Us: number;
}

/** The helper built with the addon (native-bindings/src/handoff.c). */
export function handoffBinary(): string {
  return nativeProgram('tulle_handoff');
}

/**
 * What four hand-offs between processes cost here, with no networking: `rounds` round trips
 * P -> A -> B -> A -> P over pipes, `gapS` apart as pings are, in namespace `ns`, on `cpu` if
 * given (see handoff.c). The same wake-ups a ping through two tulle agents needs, without any of
 * tulle's work: the least a design that forwards in userspace adds to the kernel's path.
 */
export async function handoffRtt(ns: string, rounds: number, gapS: number, cpu?: number): Promise<HandoffStats> {
  const gapUs = Math.round(gapS * 1e6);
  const out = await nsRun(ns, ...onCpu(cpu, handoffBinary(), [String(rounds), String(gapUs)]), {
    timeoutMs: rounds * (gapUs / 1000 + 10) + 5000,
  }).catch((e: { message: string }) => {
    throw new Error(`process hand-offs in ${ns}: ${e.message}`);
  });
  const r = JSON.parse(out) as Partial<HandoffStats>;
  if (r.rounds !== rounds || typeof r.p50Us !== 'number' || typeof r.p99Us !== 'number') throw new Error(`process hand-offs in ${ns}: unexpected output ${JSON.stringify(out.trim())}`);
  return { rounds, gapUs, p50Us: r.p50Us, p99Us: r.p99Us };
}

/** Collects a child's stdout lines and its exit, for helpers that report on stdout. */
export function watch(child: ChildProcess, what: string): { line: () => Promise<string>; done: Promise<string> } {
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else lines.push(l);
  });
  const done = new Promise<string>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(lines.join('\n'));
      reject(new Error(`${what} exited with ${signal ?? `code ${code}`}: ${stderr.trim() || '(no stderr)'}`));
    });
  });
  const line = (): Promise<string> => {
    const l = lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return Promise.race([
      new Promise<string>((r) => waiters.push(r)),
      done.then(() => Promise.reject(new Error(`${what} exited before printing`))),
      new Promise<string>((_, rej) => setTimeout(() => rej(new Error(`${what} did not start within ${SERVER_START_TIMEOUT_MS} ms`)), SERVER_START_TIMEOUT_MS).unref()),
    ]);
  };
  return { line, done };
}

function killQuietly(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

export interface TcpTransferResult {
  bytes: number;
  sha256: string;
  seconds: number;
  gbps: number;
}

/**
 * Sends `bytes` of a seeded pseudo-random stream from `fromNs` to a receiver in `toNs` at `toIp`
 * and checks that the receiver's SHA-256 matches what was sent and what the seed produces. The
 * rate includes starting the sender process, so it is a sanity figure; iperf3Tcp measures.
 */
export async function tcpTransfer(fromNs: string, toNs: string, toIp: string, bytes: number, seed = 1): Promise<TcpTransferResult> {
  const script = distScript('src/lab/tcpcheck.js');
  const what = `TCP transfer ${fromNs} -> ${toNs} (${toIp}, ${bytes} bytes)`;
  const server = spawnInNs(toNs, process.execPath, [script, 'serve', toIp, '0', String(bytes)]);
  const srv = watch(server, `tcpcheck server in ${toNs}`);
  srv.done.catch(() => {}); // observed below
  try {
    const ready = /^listening \S+ (\d+)$/.exec(await srv.line());
    if (!ready) throw new Error(`${what}: unexpected server output`);
    const started = process.hrtime.bigint();
    const sent = await nsRun(fromNs, process.execPath, [script, 'send', toIp, ready[1] as string, String(bytes), String(seed)], {
      timeoutMs: 120_000,
    });
    const received = await srv.done;
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const sentHash = /sha256 ([0-9a-f]{64}) (\d+)/.exec(sent)?.[1];
    const gotHash = /sha256 ([0-9a-f]{64}) (\d+)/.exec(received)?.[1];
    const expected = streamDigest(bytes, seed);
    if (sentHash !== expected) throw new Error(`${what}: sender digest ${sentHash} != expected ${expected}`);
    if (gotHash !== expected) throw new Error(`${what}: receiver digest ${gotHash} != sent ${expected}`);
    return { bytes, sha256: expected, seconds, gbps: (bytes * 8) / seconds / 1e9 };
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
  } finally {
    killQuietly(server);
  }
}

export interface Iperf3Result {
  gbps: number;
  retransmits: number;
  seconds: number;
  /** Bytes the receiver got. */
  bytes: number;
}

interface Iperf3Sum {
  bits_per_second: number;
  seconds: number;
  bytes: number;
  retransmits?: number;
  packets?: number;
  lost_packets?: number;
}

interface Iperf3Json {
  error?: string;
  end?: { sum_received?: Iperf3Sum; sum_sent?: Iperf3Sum };
}

/**
 * Starts a one-off iperf3 server, runs the client with `clientArgs`, returns the client's JSON
 * report. Both run on `cpu` alone when it is given.
 */
async function iperf3Run(
  clientNs: string, serverNs: string, serverIp: string, port: string, seconds: number, clientArgs: readonly string[], cpu: number | undefined,
): Promise<Iperf3Json> {
  const server = spawnInNs(serverNs, ...onCpu(cpu, 'iperf3', ['-s', '-1', '-B', serverIp, '-p', port, '--forceflush']));
  const srv = watch(server, `iperf3 server in ${serverNs}`);
  srv.done.catch(() => {});
  try {
    for (;;) if (/Server listening/.test(await srv.line())) break;
    const out = await nsRun(clientNs, ...onCpu(cpu, 'iperf3', ['-c', serverIp, '-p', port, '-t', String(seconds), '-J', ...clientArgs]), {
      timeoutMs: (seconds + 30) * 1000,
    }).catch((e: unknown) => {
      // iperf3 -J reports its own errors as JSON on stdout; stderr is empty.
      if (e instanceof CommandError && e.stdout) return e.stdout;
      throw e;
    });
    const j = JSON.parse(out) as Iperf3Json;
    if (j.error || !j.end?.sum_received) throw new Error(j.error ?? 'no sum_received in iperf3 output');
    return j;
  } finally {
    killQuietly(server);
  }
}

/** iperf3 TCP from clientNs to a one-off server in serverNs; receiver-side Gbit/s. */
export async function iperf3Tcp(
  clientNs: string,
  serverNs: string,
  serverIp: string,
  opts: { seconds?: number; streams?: number; port?: number; cpu?: number } = {},
): Promise<Iperf3Result> {
  const seconds = opts.seconds ?? 5;
  const port = String(opts.port ?? 5201);
  const what = `iperf3 ${clientNs} -> ${serverNs} (${serverIp}:${port})`;
  try {
    const j = await iperf3Run(clientNs, serverNs, serverIp, port, seconds, ['-P', String(opts.streams ?? 1)], opts.cpu);
    const recv = j.end!.sum_received!;
    return { gbps: recv.bits_per_second / 1e9, retransmits: j.end?.sum_sent?.retransmits ?? 0, seconds: recv.seconds, bytes: recv.bytes };
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
  }
}

export interface Iperf3UdpResult {
  /** UDP payload bytes per datagram. */
  payload: number;
  sentPackets: number;
  receivedPackets: number;
  lostPercent: number;
  /** Datagrams per second the sender sent and the receiver got, over the receiver's interval. */
  sentPps: number;
  receivedPps: number;
  seconds: number;
  /**
   * Datagrams the receiving namespace's UDP sockets dropped for want of buffer space during the
   * run (`RcvbufErrors` of its /proc/net/snmp): lost after the network had delivered them,
   * because the receiving process did not read in time. Null when the counter could not be read.
   */
  socketDrops: number | null;
}

/** The `Udp: RcvbufErrors` counter of namespace `ns` (/proc/net/snmp read inside it). */
export async function udpRcvbufErrors(ns: string): Promise<number> {
  const text = await nsRun(ns, 'cat', ['/proc/net/snmp']);
  const rows = text.split('\n').filter((l) => l.startsWith('Udp: '));
  if (rows.length < 2) throw new Error(`/proc/net/snmp in ${ns} has no Udp rows`);
  const names = rows[0]!.trim().split(/\s+/);
  const values = rows[1]!.trim().split(/\s+/);
  const i = names.indexOf('RcvbufErrors');
  const v = i < 0 ? NaN : Number(values[i]);
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`/proc/net/snmp in ${ns}: no RcvbufErrors count (${rows.join(' | ')})`);
  return v;
}

/**
 * iperf3 UDP from clientNs to a one-off server in serverNs with `payload`-byte datagrams at
 * `bitrate` (iperf3 -b; '0' = as fast as the sender can). Loss is counted by the receiver from
 * sequence numbers, so it includes drops anywhere on the path, the receiving socket included.
 */
export async function iperf3Udp(
  clientNs: string,
  serverNs: string,
  serverIp: string,
  opts: { payload: number; seconds?: number; bitrate?: string; port?: number; cpu?: number },
): Promise<Iperf3UdpResult> {
  const seconds = opts.seconds ?? 5;
  const port = String(opts.port ?? 5201);
  const what = `iperf3 UDP ${clientNs} -> ${serverNs} (${serverIp}:${port}, ${opts.payload} B)`;
  try {
    const dropsBefore = await udpRcvbufErrors(serverNs).catch(() => null);
    const j = await iperf3Run(clientNs, serverNs, serverIp, port, seconds, ['-u', '-b', opts.bitrate ?? '0', '-l', String(opts.payload)], opts.cpu);
    const dropsAfter = dropsBefore === null ? null : await udpRcvbufErrors(serverNs).catch(() => null);
    const recv = j.end!.sum_received!;
    const sent = j.end?.sum_sent;
    const sentPackets = sent?.packets ?? recv.packets ?? 0;
    const receivedPackets = Math.max(0, (recv.packets ?? 0) - (recv.lost_packets ?? 0));
    return {
      payload: opts.payload,
      sentPackets,
      receivedPackets,
      lostPercent: sentPackets > 0 ? (100 * (sentPackets - receivedPackets)) / sentPackets : 0,
      sentPps: sent && sent.seconds > 0 ? sentPackets / sent.seconds : NaN,
      receivedPps: recv.seconds > 0 ? receivedPackets / recv.seconds : NaN,
      seconds: recv.seconds,
      socketDrops: dropsBefore !== null && dropsAfter !== null ? dropsAfter - dropsBefore : null,
    };
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
  }
}
