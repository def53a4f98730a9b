/**
 * `tulle-cni`, the CNI plugin of type "tulle": a shim that validates what the runtime gave it and
 * hands the work to the node's agent over its Unix socket (protocol.ts). Commands:
 *
 *   ADD      open CNI_NETNS, [ipam ADD], agent ADD (veth, address, routes), print the result in
 *            the request's version; if the agent fails after a delegated ipam ADD, ipam DEL
 *   DEL      agent DEL (idempotent; needs no netns), [ipam DEL]; prints nothing. With no agent
 *            on the socket the DEL is queued for the agent's next start (del-queue.ts)
 *   CHECK    (>= 0.4.0) agent CHECK against prevResult, [ipam CHECK]
 *   STATUS   (>= 1.1.0) 0 when the agent answers ready, else code 50; [ipam STATUS]
 *   GC       (>= 1.1.0) agent GC with cni.dev/valid-attachments, [ipam GC]
 *   VERSION  supported versions; stdin and the other variables are not validated
 *
 * Delegated STATUS/GC go only to an ipam plugin that speaks the request's version (Debian's
 * host-local stops at 1.0.0 and has neither).
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, readlinkSync, statSync } from 'node:fs';
import { AgentNoAnswer, AgentUnreachable, callAgent } from './client.js';
import { queueDel } from './del-queue.js';
import { type Invocation, isCommand, parseEnv } from './env.js';
import { type NetConf, checkVersion, decodeConfig, parseNetConf, versionOf } from './netconf.js';
import { API_ADD, API_CHECK, API_DEL, API_GC, API_STATUS, type DelRequest, type NetnsRef, requestedAddress, requestedIpProblem } from './protocol.js';
import { type CniResult, encodeResult, parseResult } from './result.js';
import { CURRENT_VERSION, CniError, ERR, SUPPORTED_VERSIONS, compareVersions, isSupported, isVersionString } from './spec.js';

export interface PluginInput {
  env: NodeJS.ProcessEnv;
  stdin: string;
}

export interface PluginOutput {
  stdout: string;
  stderr: string;
  exitCode: number;
}

const STATUS_TIMEOUT_MS = 5_000;
const ABOUT = `tulle-cni: CNI plugin of the tulle overlay (type "tulle")\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\n`;

/** Runs one invocation; never throws. */
export async function runPlugin(input: PluginInput): Promise<PluginOutput> {
  const command = input.env.CNI_COMMAND ?? '';
  let raw: Record<string, unknown> | undefined;
  try {
    if (command === '') return { stdout: '', stderr: ABOUT, exitCode: 0 };
    if (command === 'VERSION') return { stdout: versionAnswer(input.stdin), stderr: '', exitCode: 0 };
    if (!isCommand(command)) throw new CniError(ERR.INVALID_ENV, `unknown CNI_COMMAND ${JSON.stringify(command)} (expected ADD, DEL, CHECK, STATUS, GC or VERSION)`);
    const inv = parseEnv(command, input.env);
    raw = decodeConfig(input.stdin);
    const version = checkVersion(raw);
    const needs = command === 'CHECK' ? '0.4.0' : command === 'STATUS' || command === 'GC' ? '1.1.0' : '0.3.0';
    if (compareVersions(version, needs) < 0) {
      throw new CniError(ERR.INCOMPATIBLE_VERSION, `config version ${JSON.stringify(version)} does not allow ${command} (needs ${needs} or later)`);
    }
    // DEL never reads prevResult: one the runtime cached wrong must not make every teardown fail.
    const conf = parseNetConf(command === 'DEL' ? { ...raw, prevResult: undefined } : raw);
    const stdout = await dispatch(inv, conf, input);
    return { stdout, stderr: '', exitCode: 0 };
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(ERR.INTERNAL, (e as Error)?.message ?? String(e));
    return { stdout: `${JSON.stringify(err.toJSON(versionOf(raw) ?? CURRENT_VERSION))}\n`, stderr: '', exitCode: 1 };
  }
}

function versionAnswer(stdin: string): string {
  let v: unknown;
  try {
    v = (JSON.parse(stdin) as { cniVersion?: unknown })?.cniVersion;
  } catch {
    v = undefined;
  }
  const cniVersion = isVersionString(v) && isSupported(v) ? v : CURRENT_VERSION;
  return `${JSON.stringify({ cniVersion, supportedVersions: SUPPORTED_VERSIONS })}\n`;
}

async function dispatch(inv: Invocation, conf: NetConf, input: PluginInput): Promise<string> {
  switch (inv.command) {
    case 'ADD':
      return add(inv, conf, input);
    case 'DEL':
      await del(inv, conf, input);
      return '';
    case 'CHECK':
      await check(inv, conf, input);
      return '';
    case 'STATUS':
      await status(inv, conf, input);
      return '';
    case 'GC':
      await gc(inv, conf, input);
      return '';
    default:
      throw new CniError(ERR.INVALID_ENV, `unknown CNI_COMMAND ${JSON.stringify(inv.command)}`);
  }
}

/** Opens CNI_NETNS and describes it for the agent; the caller closes `fd`. */
function openNetns(path: string): { fd: number; ref: NetnsRef } {
  let fd: number;
  try {
    // Non-blocking: a FIFO or a device given by mistake must not hold the plugin.
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CniError(ERR.UNKNOWN_CONTAINER, `CNI_NETNS ${JSON.stringify(path)} does not exist`);
    throw new CniError(ERR.INVALID_ENV, `CNI_NETNS ${JSON.stringify(path)} cannot be opened (${code})`);
  }
  const st = fstatSync(fd);
  const own = statSync('/proc/self/ns/net');
  // A namespace file that is not bind-mounted (/proc/<pid>/ns/<type>) reads back as
  // "<type>:[<inode>]" through /proc/self/fd, so another type of namespace shows; a bind mount
  // (/run/netns/<name>) reads back as its path and only the filesystem tells.
  let other: string | undefined;
  try {
    other = /^(\w+):\[\d+\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
  } catch {
    other = undefined;
  }
  if (st.dev !== own.dev || (other !== undefined && other !== 'net')) {
    closeSync(fd);
    throw new CniError(ERR.INVALID_ENV, `CNI_NETNS ${JSON.stringify(path)} is not a network namespace${st.dev === own.dev && other ? ` (it is a ${other} namespace)` : ''}`);
  }
  if (st.ino === own.ino) {
    closeSync(fd);
    throw new CniError(ERR.INVALID_NETNS, `CNI_NETNS ${JSON.stringify(path)} is the plugin's own network namespace`);
  }
  return { fd, ref: { path, proc: `/proc/${process.pid}/fd/${fd}`, ino: st.ino } };
}

/**
 * Addresses the runtime asks for: CNI_ARGS IP= (code 4 when malformed) and the config's (code 7).
 * The agent's own addresses are IPv4, one per interface: an IPv6 request or a second address is
 * refused (code 7) rather than quietly not given. An `ipam` plugin takes what it reads itself.
 */
function requestedIPs(inv: Invocation, conf: NetConf): string[] {
  const fromArgs = (inv.args.get('IP') ?? '').split(',').filter((s) => s !== '');
  for (const a of fromArgs) {
    const p = requestedIpProblem(a);
    if (p !== '') throw new CniError(ERR.INVALID_ENV, `CNI_ARGS: IP ${JSON.stringify(a)} ${p}`);
  }
  for (const a of conf.requestedIPs) {
    const p = requestedIpProblem(a);
    if (p !== '') throw new CniError(ERR.INVALID_NETWORK_CONFIG, `network config: requested IP ${JSON.stringify(a)} (runtimeConfig.ips / args.cni.ips) ${p}`);
  }
  const all = [...fromArgs, ...conf.requestedIPs];
  if (!conf.ipam) {
    try {
      requestedAddress(all);
    } catch (e) {
      throw new CniError(ERR.INVALID_NETWORK_CONFIG, (e as Error).message);
    }
  }
  return all;
}

async function delegate(conf: NetConf, command: string, inv: Invocation, input: PluginInput): Promise<unknown> {
  const { execPlugin } = await import('./delegate.js');
  return execPlugin(conf.ipam!.type, command, inv.path, input.env, input.stdin);
}

/** Whether the ipam plugin speaks `version` (asked only for STATUS and GC). */
async function delegateSpeaks(conf: NetConf, inv: Invocation, input: PluginInput): Promise<boolean> {
  const { pluginVersions } = await import('./delegate.js');
  return (await pluginVersions(conf.ipam!.type, inv.path, input.env, conf.cniVersion)).includes(conf.cniVersion);
}

async function add(inv: Invocation, conf: NetConf, input: PluginInput): Promise<string> {
  const requested = requestedIPs(inv, conf);
  const ns = openNetns(inv.netns);
  try {
    let delegated: { ips: CniResult['ips']; routes: CniResult['routes'] } | undefined;
    let dns = conf.dns;
    if (conf.ipam) {
      const out = await delegate(conf, 'ADD', inv, input);
      let r: CniResult;
      try {
        r = parseResult(`ipam plugin ${conf.ipam.type} result`, out);
      } catch (e) {
        await delegate(conf, 'DEL', inv, input).catch(() => undefined);
        throw e;
      }
      delegated = { ips: r.ips, routes: r.routes };
      dns ??= r.dns;
    }
    let ours: CniResult;
    try {
      ours = (await callAgent(conf.socket, 'POST', API_ADD, {
        network: conf.name, containerID: inv.containerID, ifname: inv.ifname, netns: ns.ref, requestedIPs: requested,
        ...(delegated ? { delegated } : {}), ...(dns ? { dns } : {}),
      })) as CniResult;
    } catch (e) {
      // Without an answer the agent may still be attaching the pod with the delegated address:
      // it stays allocated until the runtime's DEL, rather than being handed to another pod.
      if (e instanceof AgentNoAnswer) {
        throw conf.ipam ? new AgentNoAnswer(`${e.message}; the address from ${conf.ipam.type} is kept until DEL`) : e;
      }
      if (conf.ipam) await delegate(conf, 'DEL', inv, input).catch(() => undefined);
      throw e;
    }
    return `${JSON.stringify(encodeResult(chain(conf.prevResult, parseResult('agent result', ours)), conf.cniVersion))}\n`;
  } finally {
    closeSync(ns.fd);
  }
}

/** Appends our interfaces, addresses and routes to an earlier plugin's result. */
function chain(prev: CniResult | undefined, ours: CniResult): CniResult {
  if (!prev) return ours;
  const offset = prev.interfaces.length;
  const r: CniResult = {
    interfaces: [...prev.interfaces, ...ours.interfaces],
    ips: [...prev.ips, ...ours.ips.map((ip) => (ip.interface === undefined ? ip : { ...ip, interface: ip.interface + offset }))],
    routes: [...prev.routes, ...ours.routes],
  };
  const dns = ours.dns ?? prev.dns;
  if (dns) r.dns = dns;
  return r;
}

async function del(inv: Invocation, conf: NetConf, input: PluginInput): Promise<void> {
  let first: unknown;
  const req: DelRequest = { network: conf.name, containerID: inv.containerID, ifname: inv.ifname };
  try {
    await callAgent(conf.socket, 'POST', API_DEL, req);
  } catch (e) {
    first = e instanceof AgentUnreachable ? await queueForAgent(conf.socket, req, e) : e;
  }
  if (conf.ipam) await delegate(conf, 'DEL', inv, input).catch((e) => (first ??= e));
  if (first !== undefined) throw first;
}

/**
 * A DEL no agent took (del-queue.ts): left for the agent's next start. Returns the error to report,
 * or undefined once the DEL is queued or done.
 */
async function queueForAgent(socket: string, req: DelRequest, unreachable: AgentUnreachable): Promise<unknown> {
  try {
    await queueDel(socket, req);
  } catch (q) {
    return new CniError(ERR.NOT_AVAILABLE, `${unreachable.message}; the DEL could not be queued for it either (${(q as Error).message})`);
  }
  // An agent that started meanwhile may have read its queue already: it is asked once more (and
  // removes the queued DEL when it performs this one).
  try {
    await callAgent(socket, 'POST', API_DEL, req);
  } catch (e) {
    if (!(e instanceof AgentUnreachable)) return e;
  }
  return undefined;
}

async function check(inv: Invocation, conf: NetConf, input: PluginInput): Promise<void> {
  if (!conf.prevResult) throw new CniError(ERR.INVALID_NETWORK_CONFIG, 'network config field "prevResult": CHECK needs the ADD result (got undefined)');
  const ns = openNetns(inv.netns);
  try {
    await callAgent(conf.socket, 'POST', API_CHECK, {
      network: conf.name, containerID: inv.containerID, ifname: inv.ifname, netns: ns.ref, prevResult: conf.prevResult,
    });
  } finally {
    closeSync(ns.fd);
  }
  if (conf.ipam) await delegate(conf, 'CHECK', inv, input);
}

async function status(inv: Invocation, conf: NetConf, input: PluginInput): Promise<void> {
  let s: { ready?: unknown };
  try {
    s = (await callAgent(conf.socket, 'GET', API_STATUS, undefined, STATUS_TIMEOUT_MS)) as { ready?: unknown };
  } catch (e) {
    throw new CniError(ERR.NOT_AVAILABLE, (e as Error).message);
  }
  if (s?.ready !== true) throw new CniError(ERR.NOT_AVAILABLE, `tulle agent at "${conf.socket}" is not ready (starting or stopping)`);
  if (conf.ipam && (await delegateSpeaks(conf, inv, input))) await delegate(conf, 'STATUS', inv, input);
}

async function gc(inv: Invocation, conf: NetConf, input: PluginInput): Promise<void> {
  if (!conf.validAttachments) {
    throw new CniError(ERR.INVALID_NETWORK_CONFIG, 'network config field "cni.dev/valid-attachments": GC needs the list of attachments to keep (got undefined)');
  }
  let first: unknown;
  await callAgent(conf.socket, 'POST', API_GC, { network: conf.name, valid: conf.validAttachments }).catch((e) => (first ??= e));
  if (conf.ipam && (await delegateSpeaks(conf, inv, input))) await delegate(conf, 'GC', inv, input).catch((e) => (first ??= e));
  if (first !== undefined) throw first;
}
