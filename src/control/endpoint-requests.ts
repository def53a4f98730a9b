/**
 * The CNI requests the agent accepts (protocol.ts), checked field by field, and the mapping of
 * failures to the CNI error codes the plugin reports.
 */
import { stat } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { ERR, ID_RE, ifnameProblem } from '../cni/spec.js';
import type { Attachment, NetnsRef } from '../cni/protocol.js';
import { parseIpv4 } from '../wire/ipv4.js';
import { HttpError } from './api.js';
import { AttachError, podIfnameProblem } from './attach.js';
import type { Cidr } from './config.js';
import { IpamError } from './ipam.js';

/** An API error carrying the CNI error code the plugin reports. */
export class CniApiError extends HttpError {
  constructor(
    status: number,
    readonly code: number,
    message: string,
  ) {
    super(status, message);
  }
}

const PROC_FD_RE = /^\/proc\/\d+\/fd\/\d+$/;

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Checks a request's container ID and interface name. `creating` (ADD) also refuses the names the
 * pod side cannot be created with (podIfnameProblem); the others take any name the spec allows.
 */
export function checkAttachment(body: unknown, creating = false): asserts body is Attachment & Record<string, unknown> {
  if (!isObject(body)) throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG, 'request body must be a JSON object');
  const { containerID, ifname } = body;
  if (typeof containerID !== 'string' || !ID_RE.test(containerID)) {
    throw new CniApiError(400, ERR.INVALID_ENV, `invalid CNI_CONTAINERID ${JSON.stringify(containerID)}`);
  }
  if (typeof ifname !== 'string') throw new CniApiError(400, ERR.INVALID_ENV, `invalid CNI_IFNAME ${JSON.stringify(ifname)}`);
  const bad = creating ? podIfnameProblem(ifname) : ifnameProblem(ifname);
  if (bad !== '') throw new CniApiError(400, ERR.INVALID_ENV, `invalid CNI_IFNAME ${JSON.stringify(ifname)}: it ${bad}`);
}

export function checkNetwork(v: unknown): string {
  if (typeof v !== 'string' || !ID_RE.test(v)) throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG, `invalid network name ${JSON.stringify(v)}`);
  return v;
}

export function checkNetnsRef(v: unknown): NetnsRef {
  if (!isObject(v) || typeof v.path !== 'string' || typeof v.proc !== 'string' || !PROC_FD_RE.test(v.proc) || typeof v.ino !== 'number') {
    throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG, `invalid netns reference ${JSON.stringify(v)}`);
  }
  return { path: v.path, proc: v.proc, ino: v.ino };
}

/**
 * A path to the pod's netns usable from the agent: the plugin's open fd via /proc, else the path
 * itself (same mount namespace), whichever leads to the namespace the plugin opened.
 */
export async function resolveNetns(ref: NetnsRef): Promise<string> {
  for (const p of [ref.proc, ref.path]) {
    const st = await stat(p).catch(() => undefined);
    if (st?.ino === ref.ino) return p;
  }
  throw new CniApiError(404, ERR.UNKNOWN_CONTAINER,
    `network namespace ${JSON.stringify(ref.path)} is not reachable from the agent (through ${ref.proc} or the path; ` +
    'the agent must share the PID namespace of the runtime)');
}

export function cidrParts(where: string, cidr: string): { ip: number; prefix: number } {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(cidr);
  if (!m || !isIPv4(m[1]!) || Number(m[2]) > 32) throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG, `${where}: invalid CIDR ${JSON.stringify(cidr)}`);
  return { ip: parseIpv4(m[1]!), prefix: Number(m[2]) };
}

export function inSubnet(ipAddr: number, s: Cidr): boolean {
  const mask = (0xffffffff << (32 - s.prefix)) >>> 0;
  return ((ipAddr & mask) >>> 0) === s.net;
}

/** Maps a failure inside a CNI request to the error the plugin reports. */
export function cniError(e: unknown): Error {
  if (e instanceof HttpError) return e;
  if (e instanceof IpamError) {
    return e.reason === 'busy' ? new CniApiError(503, ERR.TRY_AGAIN_LATER, e.message) : new CniApiError(409, ERR.ADDRESS_UNAVAILABLE, e.message);
  }
  if (e instanceof AttachError) {
    if (e.failure === 'netns') return new CniApiError(404, ERR.UNKNOWN_CONTAINER, e.message);
    return new CniApiError(e.failure === 'other' ? 500 : 409, ERR.ATTACH_FAILED, e.message);
  }
  return new CniApiError(500, ERR.INTERNAL, (e as Error).message);
}
