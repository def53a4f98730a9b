/**
 * The network configuration `tulle-cni` reads on stdin: the plugin's entry of a conflist with the
 * `cniVersion` and `name` the runtime adds (and, depending on the command, `prevResult`,
 * `runtimeConfig`, `args`, `cni.dev/valid-attachments`).
 *
 * Fields tulle reads (every other key is left alone, as the spec asks):
 *
 *   cniVersion   one of SUPPORTED_VERSIONS; the result is encoded in it
 *   name         network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)
 *   type         the plugin's executable name ("tulle")
 *   socket       the agent's socket (absolute path; default /run/tulle/tulle.sock)
 *   ipam         optional {type, ...}: delegate address allocation to that plugin
 *   dns          optional {nameservers, domain, search, options}, copied into the result
 *   ipMasq       only false/absent: tulle does not masquerade (code 2 otherwise)
 *   runtimeConfig.ips, args.cni.ips   requested addresses (capability "ips")
 *   prevResult   the chain's result so far (ADD), or the final ADD result (CHECK, DEL)
 *   cni.dev/valid-attachments (or the older cni.dev/attachments)   GC's keep-list
 *
 * Errors: undecodable JSON or version string -> 6, unsupported version -> 1, invalid field -> 7,
 * unsupported field value -> 2; each message names the field and quotes the value.
 */
import { type CniDns, type CniResult, parseDns, parseResult } from './result.js';
import { CniError, type CniVersion, ERR, ID_RE, SUPPORTED_VERSIONS, isSocketPath, isSupported, isVersionString, DEFAULT_AGENT_SOCKET } from './spec.js';
import type { Attachment } from './protocol.js';

export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  socket: string;
  ipam?: { type: string };
  dns?: CniDns;
  prevResult?: CniResult;
  requestedIPs: string[];
  validAttachments?: Attachment[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(field: string, value: unknown, why: string): never {
  throw new CniError(ERR.INVALID_NETWORK_CONFIG, `network config field "${field}": ${why} (got ${JSON.stringify(value)})`);
}

/** The JSON object on stdin; code 6 when it is not one. */
export function decodeConfig(stdin: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    const text = stdin.length > 60 ? `${stdin.slice(0, 60)}...` : stdin;
    throw new CniError(ERR.DECODING_FAILURE, `network config on stdin is not valid JSON: ${(e as Error).message} (got ${JSON.stringify(text)})`);
  }
  if (!isObject(raw)) throw new CniError(ERR.DECODING_FAILURE, `network config on stdin must be a JSON object (got ${JSON.stringify(raw)})`);
  return raw;
}

/** The config's version if it is a usable one, for labelling an error object. */
export function versionOf(raw: Record<string, unknown> | undefined): string | undefined {
  const v = raw?.cniVersion;
  return isVersionString(v) && isSupported(v) ? v : undefined;
}

/** Checks the version: code 6 for a malformed one, 1 for one tulle does not speak. */
export function checkVersion(raw: Record<string, unknown>): CniVersion {
  const v = raw.cniVersion;
  if (v === undefined) {
    throw new CniError(ERR.INCOMPATIBLE_VERSION, `network config has no "cniVersion" (taken as "0.1.0"); tulle-cni supports ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  if (!isVersionString(v)) throw new CniError(ERR.DECODING_FAILURE, `network config field "cniVersion": not a version string (got ${JSON.stringify(v)})`);
  if (!isSupported(v)) {
    throw new CniError(ERR.INCOMPATIBLE_VERSION, `incompatible CNI version ${JSON.stringify(v)}: tulle-cni supports ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  return v;
}

function ipList(field: string, v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) invalid(field, v, 'must be a list of address strings');
  return v as string[];
}

function attachments(field: string, v: unknown): Attachment[] {
  if (!Array.isArray(v)) invalid(field, v, 'must be a list of {"containerID", "ifname"}');
  return v.map((a, i) => {
    if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
      invalid(`${field}[${i}]`, a, 'must be {"containerID": string, "ifname": string}');
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

/** Validates the decoded config. */
export function parseNetConf(raw: Record<string, unknown>): NetConf {
  const cniVersion = checkVersion(raw);
  const { name, type } = raw;
  if (name === undefined) invalid('name', name, 'is required');
  if (typeof name !== 'string' || !ID_RE.test(name)) invalid('name', name, 'must match [a-zA-Z0-9][a-zA-Z0-9_.-]*');
  if (typeof type !== 'string' || type === '' || type.includes('/')) invalid('type', type, 'must be the plugin name');
  let socket = DEFAULT_AGENT_SOCKET;
  if (raw.socket !== undefined) {
    if (!isSocketPath(raw.socket)) invalid('socket', raw.socket, 'must be an absolute path');
    socket = raw.socket;
  }
  if (raw.ipMasq !== undefined && raw.ipMasq !== false) {
    if (typeof raw.ipMasq !== 'boolean') invalid('ipMasq', raw.ipMasq, 'must be a boolean');
    throw new CniError(ERR.UNSUPPORTED_FIELD, 'network config field "ipMasq": true is not supported: tulle does not masquerade pod traffic (got true)');
  }
  const conf: NetConf = { cniVersion, name, type, socket, requestedIPs: [] };
  if (raw.ipam !== undefined) {
    const ipam = raw.ipam;
    if (!isObject(ipam)) invalid('ipam', ipam, 'must be an object with a "type"');
    if (typeof ipam.type !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(ipam.type)) invalid('ipam.type', ipam.type, 'must name an IPAM plugin');
    conf.ipam = { type: ipam.type };
  }
  try {
    const dns = parseDns('dns', raw.dns);
    if (dns) conf.dns = dns;
  } catch (e) {
    throw new CniError(ERR.INVALID_NETWORK_CONFIG, `network config field ${(e as Error).message}`);
  }
  if (raw.prevResult !== undefined && raw.prevResult !== null) conf.prevResult = parseResult('prevResult', raw.prevResult);
  const rc = raw.runtimeConfig;
  if (rc !== undefined && rc !== null) {
    if (!isObject(rc)) invalid('runtimeConfig', rc, 'must be an object');
    conf.requestedIPs.push(...ipList('runtimeConfig.ips', rc.ips));
  }
  const args = raw.args;
  if (isObject(args) && isObject(args.cni)) conf.requestedIPs.push(...ipList('args.cni.ips', args.cni.ips));
  const valid = raw['cni.dev/valid-attachments'] ?? raw['cni.dev/attachments'];
  if (valid !== undefined) {
    conf.validAttachments = attachments(raw['cni.dev/valid-attachments'] !== undefined ? 'cni.dev/valid-attachments' : 'cni.dev/attachments', valid);
  }
  return conf;
}
