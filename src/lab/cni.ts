// Calling a CNI plugin the way a container runtime does: the executable found in a CNI bin
// directory, run in the node's network namespace, the CNI_* variables in its environment and the
// network config (a conflist's plugin entry plus the list's `name` and `cniVersion`, as libcni
// builds it) on stdin. Used by the lab to attach pods to tulle nodes, and by the tests and the
// benchmark to drive `tulle-cni`.
import { spawn } from 'node:child_process';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';

export interface CniCall {
  /** The plugin executable (e.g. <bin-dir>/tulle). */
  plugin: string;
  command: CniCommand;
  /** Network namespace the plugin runs in (the node's); undefined = the caller's. */
  nodeNs?: string | undefined;
  containerID?: string | undefined;
  /** CNI_NETNS: a path such as /run/netns/<name>. */
  netns?: string | undefined;
  ifname?: string | undefined;
  /** CNI_PATH directories. */
  path?: readonly string[] | undefined;
  /** CNI_ARGS, e.g. "IgnoreUnknown=1;K8S_POD_NAME=p1". */
  args?: string | undefined;
  /** The request config, serialised as given; a string is sent verbatim (for malformed input). */
  config: unknown;
  /** Replaces the environment entirely (to test missing variables); default: CNI_* from the fields. */
  env?: NodeJS.ProcessEnv | undefined;
  timeoutMs?: number | undefined;
}

export interface CniReply {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, undefined when empty or not JSON. */
  json: unknown;
  ms: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** The environment a runtime would set for `c`. */
export function cniEnv(c: CniCall): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_COMMAND: c.command };
  if (c.containerID !== undefined) env.CNI_CONTAINERID = c.containerID;
  if (c.netns !== undefined) env.CNI_NETNS = c.netns;
  if (c.ifname !== undefined) env.CNI_IFNAME = c.ifname;
  if (c.path !== undefined) env.CNI_PATH = c.path.join(':');
  if (c.args !== undefined) env.CNI_ARGS = c.args;
  return env;
}

/** Runs the plugin once; never throws for a plugin failure (see exitCode and json). */
export function cniCall(c: CniCall): Promise<CniReply> {
  const argv = c.nodeNs === undefined ? [c.plugin, []] as const : ['ip', ['netns', 'exec', c.nodeNs, c.plugin]] as const;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv[1], { env: c.env ?? cniEnv(c), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), c.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => {});
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run CNI plugin ${c.plugin}: ${e.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString();
      let json: unknown;
      try {
        json = stdout.trim() === '' ? undefined : JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ exitCode: code, stdout, stderr: Buffer.concat(err).toString(), json, ms: performance.now() - started });
    });
    child.stdin.end(typeof c.config === 'string' ? c.config : JSON.stringify(c.config));
  });
}

/** A failed CNI call: the plugin's error code and message. */
export class CniCallError extends Error {
  readonly code = 'ERR_CNI_CALL';
  constructor(
    readonly command: CniCommand,
    readonly reply: CniReply,
  ) {
    const e = reply.json as { code?: number; msg?: string } | undefined;
    super(`CNI ${command} failed (exit ${reply.exitCode}${e?.code !== undefined ? `, code ${e.code}` : ''}): ${e?.msg ?? (reply.stdout.trim() || reply.stderr.trim())}`);
    this.name = 'CniCallError';
  }
}

/** Runs the plugin and returns its parsed output; throws CniCallError when it fails. */
export async function cniRun(c: CniCall): Promise<unknown> {
  const r = await cniCall(c);
  if (r.exitCode !== 0) throw new CniCallError(c.command, r);
  return r.json;
}

/** The per-plugin request config libcni derives from a conflist entry. */
export function requestConfig(list: { name: string; cniVersion: string }, plugin: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...plugin, cniVersion: list.cniVersion, name: list.name, ...extra };
}
