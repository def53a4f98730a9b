/*
 * The host-local style address store (src/control/ipam.ts): on-disk layout, round-robin
 * allocation, requested addresses, release, exhaustion, persistence, and no address handed out
 * twice under parallel allocation, from one store or two, or while another process holds the lock.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { HostLocalStore, IpamError, LAST_RESERVED_FILE } from '../../../src/control/ipam.js';
import { formatIpv4, parseIpv4 } from '../../../src/wire/ipv4.js';

let dir: string;
const stores: HostLocalStore[] = [];
const range24 = { net: parseIpv4('10.244.1.0'), prefix: 24 };

async function open(range = range24): Promise<HostLocalStore> {
  const s = await HostLocalStore.open(dir, range);
  stores.push(s);
  return s;
}

beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'tulle-ipam-')), 'net');
});

afterEach(() => {
  stores.splice(0).forEach((s) => s.close());
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

const ips = (dirPath: string) => readdirSync(dirPath).filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)).sort();

test('layout: one 0600 file per address holding "<id>\\r\\n<ifname>", last_reserved_ip.0, lock', async () => {
  const s = await open();
  expect(formatIpv4(await s.allocate('c1', 'eth0'))).toBe('10.244.1.2');
  expect(formatIpv4(await s.allocate('c2', 'eth0'))).toBe('10.244.1.3');
  expect(ips(dir)).toEqual(['10.244.1.2', '10.244.1.3']);
  expect(readFileSync(join(dir, '10.244.1.2'), 'utf8')).toBe('c1\r\neth0');
  expect(statSync(join(dir, '10.244.1.2')).mode & 0o777).toBe(0o600);
  expect(readFileSync(join(dir, LAST_RESERVED_FILE), 'utf8')).toBe('10.244.1.3');
  expect(readdirSync(dir).sort()).toEqual(['10.244.1.2', '10.244.1.3', 'last_reserved_ip.0', 'lock']);
  expect(s.describeRange()).toBe('10.244.1.2-10.244.1.254');
});

test('round-robin after the last reserved address, wrapping, skipping the gateway; survives reopening', async () => {
  const s = await open({ net: parseIpv4('10.244.1.0'), prefix: 29 }); // hosts .1-.6, gateway .1
  for (const id of ['a', 'b', 'c']) await s.allocate(id, 'eth0');
  expect(await s.release('a', 'eth0')).toEqual([parseIpv4('10.244.1.2')]);
  expect(formatIpv4(await s.allocate('d', 'eth0'))).toBe('10.244.1.5');
  s.close();
  stores.length = 0;
  const again = await open({ net: parseIpv4('10.244.1.0'), prefix: 29 });
  expect(formatIpv4(await again.allocate('e', 'eth0'))).toBe('10.244.1.6');
  expect(formatIpv4(await again.allocate('f', 'eth0'))).toBe('10.244.1.2');
  const err = await again.allocate('g', 'eth0').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(IpamError);
  expect((err as IpamError).reason).toBe('exhausted');
  expect((err as Error).message).toBe('no IP addresses available in range 10.244.1.2-10.244.1.6');
});

test('requested addresses: free ones are given, taken ones and the gateway/network/broadcast refused', async () => {
  const s = await open();
  expect(formatIpv4(await s.allocate('a', 'eth0', parseIpv4('10.244.1.50')))).toBe('10.244.1.50');
  await expect(s.allocate('b', 'eth0', parseIpv4('10.244.1.50'))).rejects.toThrow('requested IP 10.244.1.50 is already allocated to container "a"');
  for (const bad of ['10.244.1.0', '10.244.1.1', '10.244.1.255', '10.244.2.7']) {
    await expect(s.allocate('b', 'eth0', parseIpv4(bad))).rejects.toThrow(`requested IP ${bad} is outside this node's range`);
  }
  // Allocation continues after the requested address, as host-local's does.
  expect(formatIpv4(await s.allocate('c', 'eth0'))).toBe('10.244.1.51');
});

test('release: by hint, by scan (ifname must match), legacy files holding only the ID; none is fine', async () => {
  const s = await open();
  const a = await s.allocate('a', 'eth0');
  const a1 = await s.allocate('a', 'eth1');
  writeFileSync(join(dir, '10.244.1.77'), 'legacy');
  expect(await s.release('a', 'eth0', a)).toEqual([a]);
  expect(await s.isOwnedBy(a1, 'a', 'eth1')).toBe(true);
  expect(await s.release('a', 'eth9')).toEqual([]);
  expect(await s.release('a', 'eth1')).toEqual([a1]);
  expect(await s.release('legacy', 'eth0')).toEqual([parseIpv4('10.244.1.77')]);
  expect(await s.release('nobody', 'eth0')).toEqual([]);
  expect(ips(dir)).toEqual([]);
});

test('50 parallel allocations from two stores on one directory: 50 distinct addresses', async () => {
  const [s1, s2] = [await open(), await open()];
  const got = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? s1 : s2).allocate(`c${i}`, 'eth0')));
  expect(new Set(got).size).toBe(50);
  expect(ips(dir)).toHaveLength(50);
  const listed = await s1.list();
  expect(listed.map((a) => a.containerID).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `c${i}`).sort());
});

test('waits while another process holds the directory lock', async () => {
  const s = await open();
  await s.allocate('warm', 'eth0');
  const holder = spawn('flock', ['-x', join(dir, 'lock'), 'sleep', '0.4'], { stdio: 'ignore' });
  const exited = new Promise((r) => holder.once('exit', r));
  await new Promise((r) => setTimeout(r, 150));
  const t0 = Date.now();
  await s.allocate('late', 'eth0');
  expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
  await exited;
});

test('an address file appears whole or not at all: written aside, linked into place, never over an existing one', async () => {
  const { createFileExclusive, writeFileAtomic } = await import('../../../src/control/state.js');
  const s = await open();
  expect(formatIpv4(await s.allocate('c1', 'eth0'))).toBe('10.244.1.2');
  const file = join(dir, '10.244.1.9');
  expect(await createFileExclusive(file, 'c9\r\neth0', 0o600)).toBe(true);
  expect(await createFileExclusive(file, 'other\r\neth1', 0o600)).toBe(false);
  expect(readFileSync(file, 'utf8')).toBe('c9\r\neth0');
  expect(statSync(file).mode & 0o777).toBe(0o600);
  await writeFileAtomic(join(dir, 'x.json'), '{}\n');
  // No temporary file is left behind, and the store reads the new file's owner.
  expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  expect(await s.list()).toEqual([
    { ip: parseIpv4('10.244.1.2'), containerID: 'c1', ifname: 'eth0' },
    { ip: parseIpv4('10.244.1.9'), containerID: 'c9', ifname: 'eth0' },
  ]);
});

test('an allocation that cannot record last_reserved_ip fails whole: its address is not left taken', async () => {
  const s = await open();
  // A non-empty directory where the file goes: the rename into place fails.
  mkdirSync(join(dir, LAST_RESERVED_FILE, 'x'), { recursive: true });
  await expect(s.allocate('c1', 'eth0')).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
  expect(ips(dir)).toEqual([]);
  rmSync(join(dir, LAST_RESERVED_FILE), { recursive: true });
  expect(formatIpv4(await s.allocate('c1', 'eth0'))).toBe('10.244.1.2');
});
