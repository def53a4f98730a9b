/*
 * Who owns the agent's socket path (ApiServer.listen in src/control/api.ts): the holder of
 * `<socket>.lock`. A second server is refused while another process holds the lock, even when
 * whoever is on the socket does not answer (an agent stopped or starved), and the socket file is
 * left alone; a socket file nobody serves is replaced, a file that is not a socket is not;
 * close() gives the path and the lock up.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { ApiServer, request } from '../../../src/control/api.js';

let dir: string;
let socket: string;
const cleanups: (() => Promise<void> | void)[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tulle-api-'));
  socket = join(dir, 'agent.sock');
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

async function server(): Promise<ApiServer> {
  const s = new ApiServer(socket);
  s.on('GET', /^\/v1\/status$/, () => ({ ready: true }));
  await s.listen();
  cleanups.push(() => s.close());
  return s;
}

/** A server on the socket that takes connections and never answers. */
async function silentServer(): Promise<net.Server> {
  const held: net.Socket[] = [];
  const srv = net.createServer((c) => held.push(c));
  await new Promise<void>((resolve) => srv.listen(socket, resolve));
  cleanups.push(() => new Promise<void>((resolve) => {
    held.forEach((c) => c.destroy());
    srv.close(() => resolve());
  }));
  return srv;
}

/** util-linux flock(1) holding `<socket>.lock` in another process until it is killed. */
async function otherProcessHoldsLock(): Promise<ChildProcess> {
  const child = spawn('flock', ['-x', `${socket}.lock`, 'sleep', '60'], { stdio: 'ignore' });
  cleanups.push(() => {
    if (child.exitCode === null) process.kill(child.pid!, 'SIGTERM');
  });
  // Held once a non-blocking attempt from here fails.
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const probe = await new Promise<number | null>((resolve) => spawn('flock', ['-n', `${socket}.lock`, 'true']).on('exit', resolve));
    if (probe === 1) return child;
  }
  throw new Error('flock(1) did not take the lock within 2 s');
}

test('a second server in the same process is refused; the first keeps its socket and answers', async () => {
  await server();
  const ino = statSync(socket).ino;
  await expect(new ApiServer(socket).listen()).rejects.toThrow(`another agent is already serving on socket "${socket}" (it holds "${socket}.lock")`);
  expect(statSync(socket).ino).toBe(ino);
  expect(await request(socket, 'GET', '/v1/status')).toEqual({ ready: true });
});

test('an owner that holds the lock but does not answer keeps the socket path', async () => {
  await silentServer();
  await otherProcessHoldsLock();
  const ino = statSync(socket).ino;
  await expect(new ApiServer(socket).listen()).rejects.toThrow('it holds');
  expect(statSync(socket).ino).toBe(ino);
});

test('without the lock, something on the socket that takes the connection but does not answer is not replaced', async () => {
  await silentServer();
  const ino = statSync(socket).ino;
  await expect(new ApiServer(socket).listen()).rejects.toThrow('did not answer within 1 s');
  expect(statSync(socket).ino).toBe(ino);
});

test('a path that is not a socket is refused and left as it is', async () => {
  writeFileSync(socket, 'not a socket');
  await expect(new ApiServer(socket).listen()).rejects.toThrow(`socket path "${socket}" exists and is not a socket`);
  expect(readFileSync(socket, 'utf8')).toBe('not a socket');
});

test('a socket file nobody serves is replaced; close() removes it and gives the lock up', async () => {
  // A socket bound by a process that ended without removing it.
  execFileSync('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', socket]);
  expect(statSync(socket).isSocket()).toBe(true);
  const a = await server();
  expect(statSync(socket).isSocket()).toBe(true);
  await a.close();
  expect(existsSync(socket)).toBe(false);
  await server();
  expect(await request(socket, 'GET', '/v1/status')).toEqual({ ready: true });
});
