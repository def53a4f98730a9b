/**
 * Files written so that neither a crash nor a power loss leaves an empty or half-written file
 * under the final name: a temporary file, flushed to disk, then renamed (or linked) into place and
 * the directory flushed. Used by the agent's state and by tulle-cni (which loads only src/cni/).
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

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
