/**
 * DELs the agent was not there to take. When the agent's socket cannot be reached at all (the
 * agent is stopped or not started yet), tulle-cni leaves the DEL as
 * `<socket dir>/del-queue/<sha256(containerID, ifname)>.json` and reports success, so a runtime
 * can finish tearing a pod down while the node's agent is away. The agent performs every queued
 * DEL when it starts, before it takes requests; an ADD or DEL of the same attachment that reaches
 * it supersedes the queued one and removes its file.
 */
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from './durable-file.js';
import { type DelRequest, attachmentDigest } from './protocol.js';

export const DEL_QUEUE_DIR = 'del-queue';

export interface QueuedDel extends DelRequest {
  /** When the plugin queued it (ISO 8601). */
  queuedAt: string;
}

export function delQueueDir(socket: string): string {
  return join(dirname(socket), DEL_QUEUE_DIR);
}

export function queuedDelPath(socket: string, a: DelRequest | { containerID: string; ifname: string }): string {
  return join(delQueueDir(socket), `${attachmentDigest(a)}.json`);
}

/**
 * Queues a DEL for the agent behind `socket`; returns the file written. The socket's directory
 * must exist (an agent has run there): a socket path that leads nowhere is a configuration error,
 * not a DEL to keep.
 */
export async function queueDel(socket: string, req: DelRequest): Promise<string> {
  const st = await stat(dirname(socket)).catch(() => undefined);
  if (!st?.isDirectory()) throw new Error(`the socket's directory ${JSON.stringify(dirname(socket))} does not exist`);
  await mkdir(delQueueDir(socket), { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
  });
  const path = queuedDelPath(socket, req);
  const entry: QueuedDel = { network: req.network, containerID: req.containerID, ifname: req.ifname, queuedAt: new Date().toISOString() };
  await writeFileAtomic(path, `${JSON.stringify(entry)}\n`, 0o600);
  return path;
}

/** Removes the queued DEL of an attachment, if any. */
export async function unqueueDel(socket: string, a: { containerID: string; ifname: string }): Promise<void> {
  await unlink(queuedDelPath(socket, a)).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

/** The queued entries: each file's path with its parsed content, or the reason it cannot be read. */
export async function listQueuedDels(socket: string): Promise<{ file: string; entry?: unknown; problem?: string }[]> {
  const dir = delQueueDir(socket);
  const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  const out: { file: string; entry?: unknown; problem?: string }[] = [];
  for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
    const file = join(dir, name);
    try {
      out.push({ file, entry: JSON.parse(await readFile(file, 'utf8')) as unknown });
    } catch (e) {
      out.push({ file, problem: (e as Error).message });
    }
  }
  return out;
}
