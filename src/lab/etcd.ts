// A real etcd (Debian's etcd-server) inside a lab namespace, for tulle's etcd store.
//
//   tl<name>-sw: br0 172.31.0.254/24   etcd, clients on http://172.31.0.254:2379,
//                                       its peer port on the namespace's own loopback
//
// The data directory lives in the lab's state directory, so etcd can be stopped and started
// again with its leases intact (an outage, not a wipe). etcdctl runs inside the same namespace.
import { mkdir, readFile } from 'node:fs/promises';
import { nsRun, processAlive, processArgv, spawnInNs, terminateProcesses } from '../util/exec.js';

export const LAB_ETCD_IP = '172.31.0.254';
export const ETCD_CLIENT_PORT = 2379;
const ETCD_PEER_URL = 'http://127.0.0.1:2380';
const ETCD_MEMBER_NAME = 'tl';
const ETCD_READY_TIMEOUT_MS = 20_000;
const ETCD_POLL_MS = 100;
const LOG_TAIL_CHARS = 1_500;

export interface LabEtcd {
  pid: number;
  ns: string;
  endpoint: string;
  dataDir: string;
  logFile: string;
}

/** An etcd error: the command, and the tail of etcd's log. */
export class LabEtcdError extends Error {
  readonly code = 'ERR_LAB_ETCD';
}

/** Runs etcdctl (v3 API) against the lab's etcd from inside its namespace; returns stdout. */
export function etcdctl(e: Pick<LabEtcd, 'ns' | 'endpoint'>, args: readonly string[], input?: string): Promise<string> {
  return nsRun(e.ns, 'etcdctl', ['--endpoints', e.endpoint, '--dial-timeout', '2s', '--command-timeout', '5s', ...args], { input, timeoutMs: 15_000 });
}

/**
 * Starts etcd in `ns` listening on `ip`; resolves once it answers a health check. `spawned` runs as
 * soon as the process exists, before etcd can answer anyone: the caller records it there, so that
 * whatever waits for etcd reads the new process from the lab's state, not the one it replaces.
 */
export async function startEtcd(
  o: { ns: string; ip: string; dataDir: string; logFile: string },
  spawned?: (e: LabEtcd) => Promise<void>,
): Promise<LabEtcd> {
  await mkdir(o.dataDir, { recursive: true, mode: 0o700 });
  const endpoint = `http://${o.ip}:${ETCD_CLIENT_PORT}`;
  const child = spawnInNs(o.ns, 'etcd', [
    '--name', ETCD_MEMBER_NAME, '--data-dir', o.dataDir,
    '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', ETCD_PEER_URL, '--initial-advertise-peer-urls', ETCD_PEER_URL,
    '--initial-cluster', `${ETCD_MEMBER_NAME}=${ETCD_PEER_URL}`,
    '--logger', 'zap', '--log-outputs', 'stderr',
  ], { logFile: o.logFile, detached: true });
  if (child.pid === undefined) throw new LabEtcdError(`could not start etcd in ${o.ns}`);
  const e: LabEtcd = { pid: child.pid, ns: o.ns, endpoint, dataDir: o.dataDir, logFile: o.logFile };
  await spawned?.(e);
  const deadline = Date.now() + ETCD_READY_TIMEOUT_MS;
  for (;;) {
    if (!processAlive(e.pid)) throw new LabEtcdError(`etcd in ${o.ns} (pid ${e.pid}) exited; ${o.logFile}:\n${await logTail(o.logFile)}`);
    try {
      await etcdctl(e, ['endpoint', 'health']);
      return e;
    } catch (err) {
      if (Date.now() > deadline) {
        await terminateProcesses([e.pid]).catch(() => undefined);
        throw new LabEtcdError(`etcd in ${o.ns} not healthy within ${ETCD_READY_TIMEOUT_MS} ms: ${(err as Error).message}; ${o.logFile}:\n${await logTail(o.logFile)}`);
      }
    }
    await new Promise((r) => setTimeout(r, ETCD_POLL_MS));
  }
}

/** Stops the lab's etcd (SIGTERM, then SIGKILL); only the PID recorded for this data dir. */
export async function stopEtcd(e: LabEtcd): Promise<void> {
  if (processArgv(e.pid)?.includes(e.dataDir)) await terminateProcesses([e.pid]);
}

async function logTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.slice(-LOG_TAIL_CHARS).trim() || '(empty log)';
}
