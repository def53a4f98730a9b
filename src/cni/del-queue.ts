/**
 * DELs the agent was not there to take. When the agent's socket cannot be reached at all (the
 * agent is stopped or restarting), tulle-cni leaves the DEL as
 * `<socket>.del-queue/<sha256(containerID, ifname)>.json` and reports success, so a runtime can
 * finish tearing a pod down while the node's agent is away. The agent performs the queued DELs
 * while it loads, before it takes CNI requests, and retries one that failed; an ADD or DEL of the
 * same attachment that reaches it replaces the queued one, and an endpoint created after a DEL
 * was queued is never removed by it.
 *
 * The directory belongs to one socket (two agents sharing a directory do not share a queue), is
 * created 0700 and must stay a private directory of the agent's user: whoever can write to it
 * can have the agent remove pods.
 */
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from './durable-file.js';
import { type DelRequest, attachmentDigest } from './protocol.js';

export interface QueuedDel extends DelRequest {
  /** When the plugin queued it (ISO 8601). */
  queuedAt: string;
}

/** One file of the queue: its content, or why it could not be read and whether that may pass. */
export interface QueueFile {
  file: string;
  entry?: unknown;
  problem?: string;
  /** The read failed for a reason that may pass (EMFILE, EIO, ...): keep the file. */
  transient?: boolean;
  /** The file was removed after the directory was listed. */
  gone?: boolean;
}

/** A plugin's temporary file older than this was left by a crash. */
const STALE_TEMP_MS = 60_000;
const MAX_ENTRY_BYTES = 4096;

export function delQueueDir(socket: string): string {
  return `${socket}.del-queue`;
}

export function queuedDelPath(socket: string, a: { containerID: string; ifname: string }): string {
  return join(delQueueDir(socket), `${attachmentDigest(a)}.json`);
}

/**
 * Creates the queue directory (0700) if it is missing and checks it: a real directory, owned by
 * this process's user, writable by nobody else. Throws an Error naming the problem. The socket's
 * own directory must exist (an agent has run there since boot): a socket path that leads nowhere
 * is a configuration error, not a DEL to keep.
 */
export async function ensureQueueDir(socket: string): Promise<string> {
  const dir = delQueueDir(socket);
  const parent = await stat(dirname(socket)).catch(() => undefined);
  if (!parent?.isDirectory()) throw new Error(`the socket's directory ${JSON.stringify(dirname(socket))} does not exist`);
  await mkdir(dir, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
  });
  const st = await lstat(dir);
  const uid = process.geteuid?.() ?? st.uid;
  if (!st.isDirectory()) throw new Error(`${JSON.stringify(dir)} is not a directory`);
  if (st.uid !== uid) throw new Error(`${JSON.stringify(dir)} belongs to uid ${st.uid}, not ${uid}`);
  if ((st.mode & 0o022) !== 0) throw new Error(`${JSON.stringify(dir)} is writable by others (mode ${(st.mode & 0o777).toString(8)})`);
  return dir;
}

/** Queues a DEL for the agent behind `socket`; returns the file written. */
export async function queueDel(socket: string, req: DelRequest): Promise<string> {
  await ensureQueueDir(socket);
  const path = queuedDelPath(socket, req);
  const entry: QueuedDel = { network: req.network, containerID: req.containerID, ifname: req.ifname, queuedAt: new Date().toISOString() };
  await writeFileAtomic(path, `${JSON.stringify(entry)}\n`, 0o600);
  return path;
}

/** Removes the queued DEL of an attachment, if any (throws on anything but "not there"). */
export async function unqueueDel(socket: string, a: { containerID: string; ifname: string }): Promise<void> {
  await unlink(queuedDelPath(socket, a)).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

/** Reads one entry without following a link or blocking on a FIFO; only a small regular file is taken. */
async function readEntry(file: string): Promise<QueueFile> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') return { file, problem: 'is a symbolic link' };
    if (code === 'ENOENT') return { file, gone: true };
    return { file, problem: (e as Error).message, transient: true };
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { file, problem: 'is not a regular file' };
    if (st.size > MAX_ENTRY_BYTES) return { file, problem: `holds ${st.size} bytes, more than an entry can` };
    const text = await fh.readFile('utf8');
    try {
      return { file, entry: JSON.parse(text) as unknown };
    } catch (e) {
      return { file, problem: `is not JSON (${(e as Error).message})` };
    }
  } catch (e) {
    return { file, problem: (e as Error).message, transient: true };
  } finally {
    await fh.close();
  }
}

/**
 * The queued entries (checking the directory first, see ensureQueueDir), and removes temporary
 * files a crashed plugin left behind.
 */
export async function listQueuedDels(socket: string): Promise<QueueFile[]> {
  const dir = await ensureQueueDir(socket);
  const out: QueueFile[] = [];
  for (const name of (await readdir(dir)).sort()) {
    const file = join(dir, name);
    if (name.endsWith('.tmp')) {
      const st = await lstat(file).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > STALE_TEMP_MS) await unlink(file).catch(() => undefined);
      continue;
    }
    if (name.endsWith('.json')) out.push(await readEntry(file));
  }
  return out;
}
