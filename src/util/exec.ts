// Running external commands (ip, bridge, ethtool, iperf3, ping, node helpers) for the agent and the lab.
//
// Everything goes through `run`, so every failure reads the same way: the command line as it
// would be typed, the exit status and the command's own stderr. Long-running processes (agents,
// test servers) go through `spawnInNs`; `ip netns exec` execs the command after entering the
// namespace, so the returned PID is the command's own and can be signalled directly.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { distPath } from './paths.js';

export interface RunOptions {
  /** Written to the command's stdin, which is then closed. */
  input?: string | Uint8Array;
  /** The command is killed with SIGKILL after this long; default 30 s. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const STDERR_QUOTE_CHARS = 2_000;

/** A command that could not start, exited non-zero, or timed out. */
export class CommandError extends Error {
  readonly code = 'ERR_COMMAND';
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
    detail: string,
    readonly stdout = '',
    options?: { cause?: unknown },
  ) {
    const quoted = stderr.trim().slice(0, STDERR_QUOTE_CHARS);
    super(`command failed: ${command} (${detail})${quoted ? `: ${quoted}` : ''}`, options);
    this.name = 'CommandError';
  }
}

/** The command line as a shell user would type it, for messages. */
export function formatCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

/** Runs `cmd args` to completion and returns its stdout; throws a CommandError otherwise. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const line = formatCommand(cmd, args);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => {}); // the command may exit without reading its input
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new CommandError(line, null, '', `could not start: ${e.message}`, '', { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString();
      if (code === 0) return resolve(Buffer.concat(out).toString());
      const detail = timedOut
        ? `timed out after ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`
        : signal
          ? `killed by ${signal}`
          : `exit ${code}`;
      reject(new CommandError(line, code, stderr, detail, Buffer.concat(out).toString()));
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command inside the named network namespace (`ip netns exec ns cmd args`). */
export function nsRun(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<string> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

export interface SpawnInNsOptions {
  /** Append stdout and stderr to this file; otherwise they are piped to the caller. */
  logFile?: string;
  /** Own process group, not tied to the caller's life (agents that outlive `tulle lab up`). */
  detached?: boolean;
}

/**
 * Starts a long-running command inside a namespace and returns at once. The child's `pid` is
 * the command's PID (ip execs it), and it is what the caller records and later signals.
 */
export function spawnInNs(ns: string, cmd: string, args: readonly string[], opts: SpawnInNsOptions = {}): ChildProcess {
  const argv = ['netns', 'exec', ns, cmd, ...args];
  if (opts.logFile === undefined) {
    return spawn('ip', argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: opts.detached ?? false });
  }
  const fd = openSync(opts.logFile, 'a');
  try {
    const child = spawn('ip', argv, { stdio: ['ignore', fd, fd], detached: opts.detached ?? false });
    if (opts.detached) child.unref();
    return child;
  } finally {
    closeSync(fd);
  }
}

/** Path of a compiled script under dist/ (e.g. 'src/lab/tcpcheck.js'); throws if not built. */
export const distScript = distPath;

/**
 * True while `pid` exists and has not exited. A zombie counts as exited, but only once all its
 * threads have: the main thread of a multi-threaded process (a Node.js program with worker
 * threads) shows as a zombie while its other threads are still exiting and still hold its fds.
 */
export function processAlive(pid: number): boolean {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  return tasks.some((t) => {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const state = stat.charAt(stat.lastIndexOf(')') + 2);
      return state !== 'Z' && state !== 'X' && state !== '';
    } catch {
      return false;
    }
  });
}

/** The argv of a running process, or null if there is no such process. */
export function processArgv(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return null;
  }
}

const TERMINATE_POLL_MS = 50;

/**
 * Sends SIGTERM to each PID, waits up to `graceMs` for all to exit, then SIGKILLs the rest.
 * Callers pass only PIDs they started (verified by argv or by the namespace they run in).
 */
export async function terminateProcesses(pids: readonly number[], graceMs = 5_000): Promise<void> {
  const signal = (pid: number, sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  };
  pids.forEach((pid) => signal(pid, 'SIGTERM'));
  const deadline = Date.now() + graceMs;
  while (pids.some(processAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, TERMINATE_POLL_MS));
  const stuck = pids.filter(processAlive);
  stuck.forEach((pid) => signal(pid, 'SIGKILL'));
  const killDeadline = Date.now() + 2_000;
  while (stuck.some(processAlive) && Date.now() < killDeadline) await new Promise((r) => setTimeout(r, TERMINATE_POLL_MS));
  const left = stuck.filter(processAlive);
  if (left.length > 0) throw new Error(`processes still running after SIGKILL: ${left.join(', ')}`);
}
