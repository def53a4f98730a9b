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
