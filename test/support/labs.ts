/**
 * Lab fixtures for the root-only tests: every lab gets a random name (namespaces tl<name>-*), and
 * every lab a test file builds is torn down afterwards and checked gone, also when a test fails.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, beforeAll, expect } from 'vitest';
import { listNetns } from '../../src/lab/netns.js';
import { labDown, labPrefix } from '../../src/lab/topology.js';

/** Throws unless the process runs as root; `why` names what needs it. */
export function assertRoot(why = 'they create network namespaces', who = 'netns tests'): void {
  if (process.getuid?.() !== 0) throw new Error(`${who} need root (${why})`);
}

/** Fails (never skips) the file's tests unless they run as root. */
export function requireRoot(why?: string, who?: string): void {
  beforeAll(() => assertRoot(why, who));
}

/** `tag` and six random hex digits: a lab name no other run uses. */
export function labName(tag: string): string {
  return `${tag}${randomBytes(3).toString('hex')}`;
}

/** Tears the lab down and checks that none of its namespaces is left. */
export async function labGone(name: string): Promise<void> {
  await labDown({ name });
  expect(await listNetns(labPrefix(name))).toEqual([]);
}

/**
 * Labs made one per test. `next(tag)` names the running test's lab (`current()` names it again);
 * after the test that lab is torn down and checked gone, whether or not it was built completely.
 */
export function labPerTest(): { next(tag: string): string; current(): string } {
  let current: string | undefined;
  afterEach(async () => {
    if (current === undefined) return;
    const name = current;
    current = undefined;
    await labGone(name);
  });
  return {
    next: (tag) => (current = labName(tag)),
    current: () => {
      if (current === undefined) throw new Error('no lab was named in this test');
      return current;
    },
  };
}
