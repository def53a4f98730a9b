/**
 * The `store` section of the agent config: where this node's subnet and its
 * peers come from.
 *
 *   { "type": "static" }                      the config's `peers` (the default)
 *   { "type": "etcd", "endpoints": ["http://10.0.0.5:2379"], "prefix": "/coreos.com/network",   port required
 *     "caFile": "...", "certFile": "...", "keyFile": "...",   TLS (https; without caFile the system CAs;
 *                                                             a client certificate needs caFile)
 *     "username": "...", "passwordFile": "...",                etcd password auth
 *     "leaseTTLSeconds": 86400, "renewMarginSeconds": 3600 }   flannel's defaults
 */
import { ConfigError, intField, isObject, pathField, rejectUnknown } from '../config.js';

export const STORE_TYPES = ['static', 'etcd'] as const;
export type StoreType = (typeof STORE_TYPES)[number];

/** flannel's `--etcd-prefix` default. */
export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';
/** flannel's subnet lease TTL (24 h). */
export const DEFAULT_LEASE_TTL_SECONDS = 24 * 60 * 60;
/** flannel's `--subnet-lease-renew-margin` default (60 min). */
export const DEFAULT_RENEW_MARGIN_SECONDS = 60 * 60;
export const MIN_LEASE_TTL_SECONDS = 2;
export const MAX_LEASE_TTL_SECONDS = 7 * 24 * 60 * 60;

export interface StaticStoreConfig {
  readonly type: 'static';
}

export interface EtcdStoreConfig {
  readonly type: 'etcd';
  /** `http://host:port` or `https://host:port` (the port always written out), tried in turn. */
  readonly endpoints: readonly string[];
  /** Key prefix without a trailing slash, e.g. `/coreos.com/network`. */
  readonly prefix: string;
  readonly caFile: string | undefined;
  readonly certFile: string | undefined;
  readonly keyFile: string | undefined;
  readonly username: string | undefined;
  readonly passwordFile: string | undefined;
  /** TTL of the etcd lease the subnet key is attached to. */
  readonly leaseTTLSeconds: number;
  /** The lease is renewed this long before it would expire. */
  readonly renewMarginSeconds: number;
}

export type StoreConfig = StaticStoreConfig | EtcdStoreConfig;

const STATIC_FIELDS = ['type'] as const;
const ETCD_FIELDS = [
  'type', 'endpoints', 'prefix', 'caFile', 'certFile', 'keyFile', 'username', 'passwordFile',
  'leaseTTLSeconds', 'renewMarginSeconds',
] as const;

/** Each scheme's default port, which WHATWG URL leaves out of `port` and `host` even when written. */
const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

/**
 * `http(s)://host:port` as the etcd client is given it. The port is always written out: the etcd
 * client drops the scheme and gRPC dials 443 for a host without a port, so "http://10.0.0.5:80"
 * (":80" is dropped by URL) and "http://etcd" would both go to 443. A user, password, path,
 * query or fragment, none of which the client would use, is refused rather than dropped.
 */
function endpoint(field: string, value: unknown): string {
  const example = '"http://10.0.0.5:2379"';
  let url: URL | undefined;
  try {
    // URL would quietly strip spaces and control characters; they are refused instead.
    if (typeof value === 'string' && ![...value].some((c) => c <= ' ' || c === '\x7f')) url = new URL(value);
  } catch {
    url = undefined;
  }
  // The authority as written (URL normalizes a default port away).
  const written = typeof value === 'string' ? /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)/.exec(value) : null;
  if (!url || !written || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
    throw new ConfigError(field, value, `must be an etcd client URL such as ${example}`);
  }
  const text = value as string;
  const authority = written[1]!;
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    // The password is not repeated in the error.
    const shown = colon < 0 ? text : text.replace(`${userinfo}@`, `${userinfo.slice(0, colon)}:***@`);
    throw new ConfigError(field, shown, `must not carry a ${colon < 0 ? 'user name' : 'password'}; etcd password auth is store.username and store.passwordFile`);
  }
  if (url.pathname !== '/') throw new ConfigError(field, value, `must not have a path (${JSON.stringify(url.pathname)}): an etcd client URL is scheme, host and port, such as ${example}`);
  const rest = text.slice(written[0].length);
  const q = rest.indexOf('?');
  const h = rest.indexOf('#');
  if (q >= 0 && (h < 0 || q < h)) throw new ConfigError(field, value, `must not have a query (${JSON.stringify(url.search || '?')})`);
  if (h >= 0) throw new ConfigError(field, value, `must not have a fragment (${JSON.stringify(url.hash || '#')})`);
  const portWritten = /:(\d+)$/.exec(authority);
  if (url.port === '' && !portWritten) {
    throw new ConfigError(field, value, `must give the port, such as ${example} (etcd's client port is 2379; without a port the etcd client would dial 443)`);
  }
  const port = url.port === '' ? DEFAULT_PORTS[url.protocol]! : Number(url.port);
  return `${url.protocol}//${url.hostname}:${port}`;
}

function optionalPath(raw: Record<string, unknown>, f: string): string | undefined {
  return raw[f] === undefined ? undefined : pathField(`store.${f}`, raw[f]);
}

/** Validates the `store` section; absent means static. */
export function parseStoreConfig(raw: unknown): StoreConfig {
  if (raw === undefined) return { type: 'static' };
  if (!isObject(raw)) throw new ConfigError('store', raw, 'must be an object such as {"type": "etcd", "endpoints": [...]}');
  if (!(STORE_TYPES as readonly unknown[]).includes(raw.type)) {
    throw new ConfigError('store.type', raw.type, `must be one of ${STORE_TYPES.join(', ')}`);
  }
  if (raw.type === 'static') {
    rejectUnknown(raw, STATIC_FIELDS, 'store.');
    return { type: 'static' };
  }
  rejectUnknown(raw, ETCD_FIELDS, 'store.');
  if (!Array.isArray(raw.endpoints) || raw.endpoints.length === 0) {
    throw new ConfigError('store.endpoints', raw.endpoints, 'must be a non-empty array of etcd client URLs');
  }
  const endpoints = raw.endpoints.map((e, i) => endpoint(`store.endpoints[${i}]`, e));
  let prefix = DEFAULT_ETCD_PREFIX;
  if (raw.prefix !== undefined) {
    if (typeof raw.prefix !== 'string' || !/^\/[\x21-\x7e]*$/.test(raw.prefix) || raw.prefix.includes('//')) {
      throw new ConfigError('store.prefix', raw.prefix, 'must be a key prefix such as "/coreos.com/network"');
    }
    prefix = raw.prefix.replace(/\/+$/, '');
    if (prefix === '') throw new ConfigError('store.prefix', raw.prefix, 'must not be the root');
  }
  const caFile = optionalPath(raw, 'caFile');
  const certFile = optionalPath(raw, 'certFile');
  const keyFile = optionalPath(raw, 'keyFile');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    const f = certFile === undefined ? 'certFile' : 'keyFile';
    throw new ConfigError(`store.${f}`, undefined, 'is required with store.certFile/store.keyFile (a client certificate needs both)');
  }
  if (certFile !== undefined && caFile === undefined) {
    throw new ConfigError('store.caFile', undefined, 'is required with a client certificate');
  }
  const tls = endpoints.map((e) => e.startsWith('https:'));
  if (tls.some((t) => t !== tls[0])) throw new ConfigError('store.endpoints', raw.endpoints, 'must all be http or all https');
  if (!tls[0] && caFile !== undefined) throw new ConfigError('store.endpoints', raw.endpoints, 'must be https when store.caFile is given');
  let username: string | undefined;
  if (raw.username !== undefined) {
    if (typeof raw.username !== 'string' || raw.username === '') throw new ConfigError('store.username', raw.username, 'must be a non-empty string');
    username = raw.username;
  }
  const passwordFile = optionalPath(raw, 'passwordFile');
  if ((username === undefined) !== (passwordFile === undefined)) {
    throw new ConfigError(username === undefined ? 'store.username' : 'store.passwordFile', undefined, 'is required: etcd auth needs username and passwordFile');
  }
  const leaseTTLSeconds = raw.leaseTTLSeconds === undefined
    ? DEFAULT_LEASE_TTL_SECONDS
    : intField('store.leaseTTLSeconds', raw.leaseTTLSeconds, MIN_LEASE_TTL_SECONDS, MAX_LEASE_TTL_SECONDS);
  const renewMarginSeconds = raw.renewMarginSeconds === undefined
    ? Math.min(DEFAULT_RENEW_MARGIN_SECONDS, Math.floor(leaseTTLSeconds / 2))
    : intField('store.renewMarginSeconds', raw.renewMarginSeconds, 1, leaseTTLSeconds - 1);
  return { type: 'etcd', endpoints, prefix, caFile, certFile, keyFile, username, passwordFile, leaseTTLSeconds, renewMarginSeconds };
}
