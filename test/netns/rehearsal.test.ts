/*
 * The worker rehearsal on real fds (root): inside a fresh namespace, each feature combination
 * runs its made-up traffic through two ForwardLoops over a socket pair per stand-in TUN device
 * and UDP sockets on 127.0.0.1, and every payload byte must come out; with the namespace's
 * loopback down it falls back to the in-memory rehearsal and says why. Nothing leaves the
 * namespace.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import type { RehearsalResult } from '../../src/worker/rehearsal.js';
import type { Features } from '../../src/worker/init.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCRIPT = join(ROOT, 'test/support/rehearsal-netns.mjs');

/** What test/support/rehearsal-netns.mjs prints per feature combination. */
type Result = RehearsalResult & { features: Features };

let ns: string | undefined;

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function run(mtu: number): Result[] {
  try {
    const out = execFileSync('ip', ['netns', 'exec', ns!, process.execPath, SCRIPT, String(mtu)], {
      cwd: ROOT, encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'],
    });
    return JSON.parse(out.trim().split('\n').pop()!) as Result[];
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`rehearsal in ${ns} failed: ${e.stderr || e.message}`);
  }
}

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('netns tests need root: they create network namespaces');
});

beforeEach(() => {
  ns = `tl-rh-${randomBytes(4).toString('hex')}`;
  ip(['netns', 'add', ns]);
});

afterEach(() => {
  const name = ns!;
  ns = undefined;
  ip(['netns', 'del', name]);
  expect(ip(['netns', 'list'])).not.toContain(name);
});

describe('rehearsal on loopback', () => {
  test.each([1450, 8950])('every combination carries every payload byte and every single packet, and drops the made-up bad packets, MTU %i', (mtu) => {
    ip(['-n', ns!, 'link', 'set', 'lo', 'up']);
    for (const r of run(mtu)) {
      const what = JSON.stringify(r.features);
      expect(r.mode, what).toBe('loopback');
      expect(r.mismatch, what).toBeNull();
      expect(r.rounds, what).toBe(20);
      // Then 50 single packets each way, their payload compared as the rounds' is.
      expect(r.singles, what).toBe(50);
      expect(r.packetsIn, what).toBeGreaterThan(0);
      expect(r.packetsOut, what).toBe(r.packetsIn);
      expect(r.payloadOut, what).toBe(r.payloadIn);
      // Per round and direction: a wrong VNI, and (where the batch has room) an IPv6 packet and
      // a packet for a subnet without a peer.
      expect(r.dropped, what).toBe(r.features.vnet && !r.features.gso ? 20 * 2 : 20 * 2 * 3);
    }
  });

  test('with the loopback device down it rehearses in memory and says why', () => {
    for (const r of run(1450)) {
      expect(r.mode).toBe('in memory');
      expect(r.note).toMatch(/^no loopback rehearsal: /);
      expect(r.singles).toBe(0); // single packets need the loopback device
      expect(r.mismatch).toBeNull();
      expect(r.packetsOut).toBe(r.packetsIn);
    }
  });
});
