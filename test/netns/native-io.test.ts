/*
 * The native addon against the real kernel (root; needs /dev/net/tun and `npx tsc -p
 * tsconfig.json` first). Each test makes a fresh namespace and deletes it afterwards; a child
 * process (test/support/native-netns.mjs) runs inside it and reports what it saw.
 *
 *   netns tl-nat-<random>
 *   ┌──────────────────────────────────────────────────────────────────────┐
 *   │ lo 127.0.0.1 ── UDP sockets (batches, truncation, SO_REUSEPORT)      │
 *   │                                                                      │
 *   │ UDP sockets on 10.99.0.1 ──route 10.99.0.0/24──► tl0 (TUN, 2 queues) │
 *   │         ▲                                          │ tunRead         │
 *   │         └──── "from 10.99.0.2" ◄── tunWrite ───────┘ (the test)      │
 *   └──────────────────────────────────────────────────────────────────────┘
 *
 * 10.99.0.2 exists only as a route into tl0: nothing leaves the namespace.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCRIPT = join(ROOT, 'test/support/native-netns.mjs');
const DIST_NATIVE = join(ROOT, 'dist/src/io/native.js');
const NS_PREFIX = 'tl-nat-';
const { EINVAL, EMSGSIZE } = constants.errno;
const PEER_IP = 0x0a630002;

let ns: string | undefined;

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs one case of native-netns.mjs inside the namespace and returns its observations. */
function runCase(name: string): Record<string, unknown> {
  if (ns === undefined) throw new Error('no namespace');
  try {
    const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, SCRIPT, name], {
      cwd: ROOT, encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'],
    });
    return JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`case ${name} failed in ${ns}: ${e.stderr || e.message}`);
  }
}

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('netns tests need root: they create network namespaces and TUN devices');
  if (!existsSync('/dev/net/tun')) throw new Error('/dev/net/tun is missing: load the tun module (modprobe tun)');
  if (!existsSync(DIST_NATIVE)) throw new Error(`${DIST_NATIVE} is missing: run \`npx tsc -p tsconfig.json\``);
});

beforeEach(() => {
  ns = `${NS_PREFIX}${randomBytes(4).toString('hex')}`;
  ip(['netns', 'add', ns]);
  ip(['-n', ns, 'link', 'set', 'lo', 'up']);
});

afterEach(() => {
  if (ns === undefined) return;
  const name = ns;
  ns = undefined;
  ip(['netns', 'del', name]);
  expect(ip(['netns', 'list'])).not.toContain(name);
});

describe('native I/O in a fresh namespace', () => {
  test('TUN: 2 queues by opening the name twice, batch read of routed datagrams, packets written back arrive', () => {
    const r = runCase('tun');
    expect(r.queuesOpen).toBe(2);
    expect(r.queuesDetached).toBe(1);
    expect(r.queuesReattached).toBe(2);
    expect(r.withoutMultiQueue).toBe(-EINVAL);
    expect(r.busy).toMatchObject({ code: 'EBUSY', isSysError: true });
    expect((r.busy as { message: string }).message).toMatch(/^open TUN device "tl1": EBUSY \(/);
    expect(r.ifindex).toBeGreaterThan(0);
    expect(r.mtu).toBe(1500);

    expect(r.sent).toBe(24);
    expect(r.sendStats).toEqual([24, 0, 0, 24, 24 * 10 + (23 * 24) / 2]);
    expect(r.received).toBe(24);
    expect(r.mismatches).toEqual([]);
    expect(r.headroomIntact).toBe(true);
    expect(r.largestBatch).toBeGreaterThan(1);
    // 24 flows hashed over 2 queues: both carry traffic (all on one: chance 2^-23).
    for (const n of r.perQueue as number[]) expect(n).toBeGreaterThan(0);

    expect(r.written).toBe(2);
    expect(r.writeStats).toEqual([2, 1, EINVAL, 2, 28 + 11 + 28 + 25]);
    expect(r.got).toEqual([
      { from: PEER_IP, port: 4000, text: 'first reply' },
      { from: PEER_IP, port: 4000, text: 'second reply from the TUN' },
    ]);
  });

  test('TUN: a read batch stops at the packet that reaches its byte budget', () => {
    const r = runCase('tun-budget');
    expect(r.sent).toBe(10);
    expect(r.received).toBe(10);
    // A batch may end short of the budget on an empty queue; none goes past the packet that
    // reaches 300 bytes, and with 10 queued at once some batch stops there (3 × 128 bytes).
    const batches = r.batches as number[][];
    for (const b of batches) expect(b.slice(0, -1).reduce((x, y) => x + y, 0)).toBeLessThan(300);
    expect(batches.some((b) => b.length === 3 && b.every((n) => n === 128))).toBe(true);
    expect(r.badBudget).toBe('RangeError: tunRead: maxBytes must be positive');
  });

  test('UDP: 100 datagrams over 2 sockets in one udpSend arrive intact, in order per socket, in batches; a UDP_SEGMENT message counts its datagrams', () => {
    const r = runCase('udp-batch');
    expect(r.sent).toBe(100);
    const bytes = Array.from({ length: 100 }, (_, i) => (i * 97) % 1473).reduce((a, b) => a + b, 0);
    expect(r.sendStats).toEqual([100, 0, 0, 100, bytes]);
    expect(r.received).toBe(100);
    expect(r.mismatches).toEqual([]);
    expect(r.headroomIntact).toBe(true);
    expect(Math.max(...(r.batches as number[]))).toBeGreaterThan(1);
    expect((r.batches as number[]).every((n) => n <= 32)).toBe(true);
    // Refused datagrams (port 0: EINVAL; 65508 bytes: EMSGSIZE) fail alone; the rest still go.
    expect(r.sent2).toBe(4);
    expect(r.sendStats2).toEqual([4, 2, EMSGSIZE, 4, 10 + 11 + 13 + 15]);
    expect(r.got2).toEqual([10, 11, 13, 15]);
    // A UDP_SEGMENT message counts as one message and as the datagrams it becomes.
    expect(r.sent3).toBe(1);
    expect(r.sendStats3).toEqual([1, 0, 0, 3, 250]);
    expect(r.got3).toEqual([100, 100, 50]);
  });

  test('UDP: a datagram longer than its slot is cut to the slot and reported with its real length', () => {
    const r = runCase('udp-trunc');
    expect(r.got).toEqual([{ slot: 0, len: 1000 }, { slot: 1, len: 150 }]);
    expect(r.firstPrefixIntact).toBe(true);
    expect(r.secondIntact).toBe(true);
    expect(r.afterSecondUntouched).toBe(true);
  });

  test('UDP: two SO_REUSEPORT sockets bind one port; a third without it gets EADDRINUSE', () => {
    const r = runCase('reuse-port');
    expect(r.secondPort).toBe(r.port);
    expect(r.third).toMatchObject({ code: 'EADDRINUSE', isSysError: true });
    expect((r.third as { message: string }).message).toBe(
      `open UDP socket 127.0.0.1:${r.port as number}: EADDRINUSE (address already in use)`,
    );
  });
});
