/**
 * The etcd v3 client the etcd store uses (the `etcd3` package over
 * @grpc/grpc-js), set up for an agent that must notice an outage quickly and
 * recover soon after etcd returns: short call deadlines, gRPC reconnect and
 * watch-reconnect backoffs capped at a few seconds, a per-endpoint circuit
 * breaker so calls move on to the next endpoint, and TLS and password auth
 * from files named in the config.
 *
 * The helpers below speak the raw KV/Lease API with Buffers, so values are
 * written and read byte for byte. Lease IDs are decimal strings (int64).
 */
import { readFile } from 'node:fs/promises';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, noop, retry, type IBackoff } from 'cockatiel';
import { Etcd3, isRecoverableError, type IKeyValue, type IOptions } from 'etcd3';
import type { EtcdStoreConfig } from './config.js';

/** Deadline for every unary call (range, txn, grant, revoke, keepalive). */
export const CALL_TIMEOUT_MS = 3_000;
const DIAL_TIMEOUT_MS = 3_000;
const RECONNECT_BACKOFF_INITIAL_MS = 100;
const RECONNECT_BACKOFF_MAX_MS = 2_000;
const BREAKER_HALF_OPEN_MS = 1_000;
const BREAKER_CONSECUTIVE_FAILURES = 3;
const GRPC_KEEPALIVE_MS = 10_000;
const GRPC_KEEPALIVE_TIMEOUT_MS = 5_000;

/** Opens a client; reads the TLS and password files first, naming any it cannot read. */
export async function openEtcd(cfg: EtcdStoreConfig): Promise<Etcd3> {
  const read = async (field: string, path: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (e) {
      throw new Error(`store.${field} "${path}": ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
  };
  const options: IOptions = {
    hosts: [...cfg.endpoints],
    dialTimeout: DIAL_TIMEOUT_MS,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    grpcOptions: {
      'grpc.initial_reconnect_backoff_ms': RECONNECT_BACKOFF_INITIAL_MS,
      'grpc.max_reconnect_backoff_ms': RECONNECT_BACKOFF_MAX_MS,
      'grpc.keepalive_time_ms': GRPC_KEEPALIVE_MS,
      'grpc.keepalive_timeout_ms': GRPC_KEEPALIVE_TIMEOUT_MS,
    },
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), {
        halfOpenAfter: BREAKER_HALF_OPEN_MS,
        breaker: new ConsecutiveBreaker(BREAKER_CONSECUTIVE_FAILURES),
      }),
      // With several endpoints a failed call is tried once more on each other one.
      global: cfg.endpoints.length > 1 ? retry(handleWhen(isRecoverableError), { maxAttempts: cfg.endpoints.length - 1 }) : noop,
      // etcd3 types this as a backoff but calls next() on it first, as on its own default, a factory.
      watchBackoff: new ExponentialBackoff({ initialDelay: RECONNECT_BACKOFF_INITIAL_MS, maxDelay: RECONNECT_BACKOFF_MAX_MS }) as unknown as IBackoff<unknown>,
    },
  };
  if (cfg.caFile !== undefined) {
    options.credentials = {
      rootCertificate: await read('caFile', cfg.caFile),
      ...(cfg.keyFile !== undefined ? { privateKey: await read('keyFile', cfg.keyFile) } : {}),
      ...(cfg.certFile !== undefined ? { certChain: await read('certFile', cfg.certFile) } : {}),
    };
  }
  if (cfg.username !== undefined && cfg.passwordFile !== undefined) {
    const password = (await read('passwordFile', cfg.passwordFile)).toString('utf8').replace(/\r?\n$/, '');
    options.auth = { username: cfg.username, password };
  }
  return new Etcd3(options);
}

/** The key after the last key with `prefix` (etcd's range_end for a prefix). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

export interface Kv {
  readonly key: string;
  readonly value: Buffer;
  /** Decimal etcd lease ID; "0" for a key without a lease. */
  readonly lease: string;
  readonly modRevision: string;
}

function toKv(kv: IKeyValue): Kv {
  return { key: kv.key.toString('utf8'), value: kv.value, lease: String(kv.lease ?? '0'), modRevision: String(kv.mod_revision) };
}

/** One key, or undefined when absent. */
export async function getKey(client: Etcd3, key: string): Promise<Kv | undefined> {
  const res = await client.kv.range({ key: Buffer.from(key) });
  const kv = res.kvs[0];
  return kv ? toKv(kv) : undefined;
}

/** Every key under `prefix`, and the store revision they were read at. */
export async function listPrefix(client: Etcd3, prefix: string): Promise<{ kvs: Kv[]; revision: string }> {
  const k = Buffer.from(prefix);
  const res = await client.kv.range({ key: k, range_end: prefixEnd(k) });
  return { kvs: res.kvs.map(toKv), revision: String(res.header.revision) };
}

/** Puts `value` at `key` only if the key does not exist; true when written. */
export async function createKey(client: Etcd3, key: string, value: string, lease: string): Promise<boolean> {
  const k = Buffer.from(key);
  const res = await client.kv.txn({
    compare: [{ key: k, target: 'Version', result: 'Equal', version: 0 }],
    success: [{ request_put: { key: k, value: Buffer.from(value), lease } }],
  });
  return res.succeeded;
}

/** Puts `value` at `key` only if the key was last modified at `modRevision`; true when written. */
export async function replaceKey(client: Etcd3, key: string, value: string, lease: string, modRevision: string): Promise<boolean> {
  const k = Buffer.from(key);
  const res = await client.kv.txn({
    compare: [{ key: k, target: 'Mod', result: 'Equal', mod_revision: modRevision }],
    success: [{ request_put: { key: k, value: Buffer.from(value), lease } }],
  });
  return res.succeeded;
}

/** Grants a lease; returns its decimal ID. */
export async function grantLease(client: Etcd3, ttlSeconds: number): Promise<string> {
  const res = await client.leaseClient.leaseGrant({ TTL: ttlSeconds });
  if (res.error) throw new Error(`etcd refused a lease: ${res.error}`);
  return String(res.ID);
}

/** Revokes a lease (its keys go with it); a lease already gone is not an error. */
export async function revokeLease(client: Etcd3, id: string): Promise<void> {
  try {
    await client.leaseClient.leaseRevoke({ ID: id });
  } catch (e) {
    if (!/lease not found/i.test((e as Error).message)) throw e;
  }
}

/**
 * One keepalive for lease `id`; resolves with the TTL etcd granted, 0 when
 * the lease no longer exists (expired or revoked).
 */
export async function keepAliveOnce(client: Etcd3, id: string): Promise<number> {
  const stream = await client.leaseClient.leaseKeepAlive();
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`lease keepalive timed out after ${CALL_TIMEOUT_MS} ms`)), CALL_TIMEOUT_MS);
      stream.on('data', (res: { TTL: string }) => {
        clearTimeout(timer);
        resolve(Number(res.TTL));
      });
      stream.on('error', (e: Error) => {
        clearTimeout(timer);
        reject(e);
      });
      stream.write({ ID: id });
    });
  } finally {
    stream.end();
  }
}

/** `1234` → `"4d2"`: lease IDs as etcdctl prints them. */
export function leaseHex(id: string): string {
  return BigInt(id).toString(16);
}
