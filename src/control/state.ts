/**
 * State the agent keeps across restarts in its data directory, and the
 * files it writes for others (flannel's subnet.env). Writes are atomic and
 * durable: a temporary file, flushed to disk, then renamed (or linked) into
 * place and the directory flushed, so neither a crash nor a power loss leaves
 * an empty or half-written file under the final name.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { formatMac, parseMac, randomLocalMac } from '../wire/mac.js';

async function writeSynced(path: string, data: string, mode: number): Promise<void> {
  const fh = await open(path, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Flushes a directory's entries (a rename or link in it) to disk; best effort. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r').catch(() => undefined);
  if (fh === undefined) return;
  await fh.sync().catch(() => undefined);
  await fh.close();
}

function tmpName(path: string): string {
  return `${path}.${randomBytes(4).toString('hex')}.tmp`;
}

export async function writeFileAtomic(path: string, data: string, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tmpName(path);
  try {
    await writeSynced(tmp, data, mode);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await syncDir(dirname(path));
}

/**
 * Creates `path` holding `data` unless it exists (then returns false, leaving it as it is). The
 * file appears complete or not at all: it is written aside and linked into place.
 */
export async function createFileExclusive(path: string, data: string, mode = 0o644): Promise<boolean> {
  const tmp = tmpName(path);
  let created = true;
  try {
    await writeSynced(tmp, data, mode);
    // Only the link says whether `path` exists: an EEXIST from the temporary file is an error.
    await link(tmp, path).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
      created = false;
    });
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  if (created) await syncDir(dirname(path));
  return created;
}

export const VTEP_MAC_FILE = 'vtep-mac';

/**
 * The node's VTEP MAC: the configured one if given, else the one generated
 * on first start and kept in `dataDir` so peers' neighbour entries stay valid
 * across restarts. Returns the MAC and whether it was newly generated.
 */
export async function vtepMac(dataDir: string, configured: Uint8Array | undefined): Promise<{ mac: Uint8Array; generated: boolean }> {
  const file = join(dataDir, VTEP_MAC_FILE);
  if (configured) {
    await writeFileAtomic(file, `${formatMac(configured)}\n`);
    return { mac: configured, generated: false };
  }
  try {
    const text = (await readFile(file, 'utf8')).trim();
    try {
      return { mac: parseMac(text), generated: false };
    } catch {
      throw new Error(`${file} holds "${text}", which is not a MAC address; fix or remove it`);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const mac = randomLocalMac();
  await writeFileAtomic(file, `${formatMac(mac)}\n`);
  return { mac, generated: true };
}

/** flannel's subnet.env: the node's subnet as its first host address with the prefix. */
export function subnetEnv(network: string, subnetFirstHost: string, prefix: number, mtu: number): string {
  return [
    `FLANNEL_NETWORK=${network}`,
    `FLANNEL_SUBNET=${subnetFirstHost}/${prefix}`,
    `FLANNEL_MTU=${mtu}`,
    'FLANNEL_IPMASQ=false',
    '',
  ].join('\n');
}
