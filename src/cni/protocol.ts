/**
 * What `tulle-cni` and the agent say to each other over the agent's socket (HTTP/1.1, JSON):
 *
 *   POST /v1/cni/add    AddRequest   -> CniResult (the attachment, before version encoding)
 *   POST /v1/cni/del    DelRequest   -> {}
 *   POST /v1/cni/check  CheckRequest -> {}
 *   POST /v1/cni/gc     GcRequest    -> { released: [...] }
 *   GET  /v1/status                  -> { ready, ... }  (STATUS)
 *
 * Errors come back with a non-2xx status and `{ "error": message, "code": <CNI error code> }`;
 * 503 means the agent is starting or stopping (CNI code 11).
 *
 * The pod's network namespace travels as a reference the agent can open even when it runs in
 * another mount namespace than the runtime (a netns bind mount under the runtime's /run/netns is
 * invisible there): the plugin opens CNI_NETNS and passes `/proc/<plugin pid>/fd/<fd>`, which
 * stays valid while the plugin waits for the answer, with the namespace's inode number so the
 * agent can tell it reached the same namespace.
 */
import { createHash } from 'node:crypto';
import { isIP, isIPv4 } from 'node:net';
import type { CniDns, CniIp, CniResult, CniRoute } from './result.js';

export const API_ADD = '/v1/cni/add';
export const API_DEL = '/v1/cni/del';
export const API_CHECK = '/v1/cni/check';
export const API_GC = '/v1/cni/gc';
export const API_STATUS = '/v1/status';

export interface NetnsRef {
  /** CNI_NETNS as the runtime gave it. */
  path: string;
  /** /proc/<plugin pid>/fd/<fd> of the plugin's open descriptor for it. */
  proc: string;
  /** The namespace's inode number (st_ino of the nsfs file). */
  ino: number;
}

export interface Attachment {
  containerID: string;
  ifname: string;
}

/** sha256 of (containerID, ifname), hex: names an attachment's files and host veth. */
export function attachmentDigest(a: Attachment): string {
  return createHash('sha256').update(`${a.containerID}\n${a.ifname}`).digest('hex');
}

/**
 * Why a requested address ("10.244.1.5", or "10.244.1.5/24", whose prefix length is not used) is
 * malformed, or '' when it is an IPv4 or IPv6 address.
 */
export function requestedIpProblem(a: string): string {
  const m = /^([^/]*)(?:\/(\d{1,3}))?$/.exec(a);
  if (!m || isIP(m[1]!) === 0) return 'is not an IP address';
  if (m[2] !== undefined && Number(m[2]) > (isIPv4(m[1]!) ? 32 : 128)) return 'has an invalid prefix length';
  return '';
}

/**
 * The one IPv4 address that requests for the agent's own addresses ask for, or undefined when
 * there are none. Throws RangeError naming the request that cannot be met: malformed, IPv6 (the
 * overlay carries IPv4 only) or a second, different address (an interface gets one).
 */
export function requestedAddress(list: readonly string[]): string | undefined {
  let want: string | undefined;
  for (const a of list) {
    const p = requestedIpProblem(a);
    if (p !== '') throw new RangeError(`requested IP ${JSON.stringify(a)} ${p}`);
    const addr = a.split('/')[0]!;
    if (!isIPv4(addr)) throw new RangeError(`requested IP ${JSON.stringify(a)} is IPv6; tulle's overlay gives IPv4 addresses only`);
    if (want !== undefined && want !== addr) {
      throw new RangeError(`requested IPs ${JSON.stringify(want)} and ${JSON.stringify(a)}: tulle gives an interface one IPv4 address`);
    }
    want = addr;
  }
  return want;
}

export interface AddRequest extends Attachment {
  /** The network's name (config `name`). */
  network: string;
  netns: NetnsRef;
  /** Addresses the runtime asked for (CNI_ARGS IP=, runtimeConfig.ips, args.cni.ips). */
  requestedIPs: string[];
  /** Set when an `ipam` plugin allocated the address: its ips and routes are used as given. */
  delegated?: { ips: CniIp[]; routes: CniRoute[] };
  /** The config's `dns`, returned in the result. */
  dns?: CniDns;
}

export interface DelRequest extends Attachment {
  network: string;
}

export interface CheckRequest extends Attachment {
  network: string;
  netns: NetnsRef;
  prevResult: CniResult;
}

export interface GcRequest {
  network: string;
  /** Attachments to keep; everything else of this network is released. */
  valid: Attachment[];
}

export interface GcResponse {
  released: { containerID: string; ifname: string; ip?: string }[];
}

/** The error body the agent answers with. */
export interface ApiErrorBody {
  error: string;
  code?: number | string;
}
