// How the plugin's agent client classifies a call that gets no answer.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { AgentNoAnswer, callAgent } from '../../../src/cni/client.js';
import { CniError, ERR } from '../../../src/cni/spec.js';

let server: Server | undefined;
let dir: string | undefined;
const held: Socket[] = [];

afterEach(async () => {
  held.splice(0).forEach((s) => s.destroy());
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function listen(onConn: (s: Socket) => void): Promise<string> {
  dir = mkdtempSync(join(tmpdir(), 'tulle-client-'));
  const path = join(dir, 'agent.sock');
  server = createServer((s) => {
    held.push(s);
    onConn(s);
  });
  await new Promise<void>((r) => server!.listen(path, r));
  return path;
}

test('an agent that takes the request and never answers: code 11, marked as no answer (what it did is unknown)', async () => {
  const sock = await listen(() => undefined);
  const e = await callAgent(sock, 'POST', '/v1/cni/add', { x: 1 }, 200).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(AgentNoAnswer);
  expect((e as CniError).cniCode).toBe(ERR.TRY_AGAIN_LATER);
  expect((e as Error).message).toContain('did not answer within 200 ms');
});

test('no agent on the socket: code 50, not marked as no answer (the request never arrived)', async () => {
  dir = mkdtempSync(join(tmpdir(), 'tulle-client-'));
  const e = await callAgent(join(dir, 'none.sock'), 'POST', '/v1/cni/add', {}, 200).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(CniError);
  expect(e).not.toBeInstanceOf(AgentNoAnswer);
  expect((e as CniError).cniCode).toBe(ERR.NOT_AVAILABLE);
});

test('an agent that reads the whole request and then drops the connection: no answer (code 11), not "unreachable"', async () => {
  const sock = await listen((s) => {
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString('utf8');
      // The body is complete: the agent may have acted on it. Then the connection breaks.
      if (got.endsWith('{"x":1}')) s.destroy();
    });
  });
  const e = await callAgent(sock, 'POST', '/v1/cni/add', { x: 1 }, 2000).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(AgentNoAnswer);
  expect((e as CniError).cniCode).toBe(ERR.TRY_AGAIN_LATER);
});
