/*
 * What tulle-cni accepts: the environment (code 4) and the network config on stdin (codes 1, 2,
 * 6, 7), with messages naming the bad value; VERSION ignoring both. No agent is involved: every
 * case here fails (or answers) before the plugin would call it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parseCniArgs, parseEnv } from '../../../src/cni/env.js';
import { runPlugin } from '../../../src/cni/plugin.js';
import { ERR, SUPPORTED_VERSIONS } from '../../../src/cni/spec.js';

const env = (cmd: string, extra: Record<string, string> = {}) => ({
  CNI_COMMAND: cmd, CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin', ...extra,
});
const conf = (extra: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'net1', type: 'tulle', socket: '/nonexistent/tulle.sock', ...extra });

async function error(e: NodeJS.ProcessEnv, stdin: string): Promise<{ code: number; msg: string; cniVersion: string }> {
  const out = await runPlugin({ env: e, stdin });
  expect(out.exitCode).toBe(1);
  return JSON.parse(out.stdout);
}

describe('environment', () => {
  test('missing variables are named (code 4), per command', async () => {
    expect(await error({ CNI_COMMAND: 'ADD' }, conf())).toMatchObject({
      code: ERR.INVALID_ENV, msg: 'required environment variables missing: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH',
    });
    expect((await error({ CNI_COMMAND: 'DEL', CNI_PATH: '/x' }, conf())).msg).toBe('required environment variables missing: CNI_CONTAINERID, CNI_IFNAME');
    expect((await error({ CNI_COMMAND: 'FROB' }, conf())).msg).toBe('unknown CNI_COMMAND "FROB" (expected ADD, DEL, CHECK, STATUS, GC or VERSION)');
  });
  test.each([
    ['CNI_CONTAINERID', '-bad', 'invalid CNI_CONTAINERID "-bad": must match [a-zA-Z0-9][a-zA-Z0-9_.-]*'],
    ['CNI_CONTAINERID', 'a/b', 'invalid CNI_CONTAINERID "a/b"'],
    ['CNI_IFNAME', 'eth0:1', 'invalid CNI_IFNAME "eth0:1": contains "/", ":" or whitespace'],
    ['CNI_IFNAME', 'averyveryverylongname', 'invalid CNI_IFNAME "averyveryverylongname": is longer than 15 bytes'],
    ['CNI_IFNAME', '..', 'invalid CNI_IFNAME "..": is "." or ".."'],
    ['CNI_NETNS', 'relative/ns', 'invalid CNI_NETNS "relative/ns": must be an absolute path'],
    ['CNI_ARGS', 'IgnoreUnknown=1;oops', 'CNI_ARGS: invalid pair "oops" (expected KEY=VALUE)'],
  ])('%s=%s -> code 4', async (k, v, msg) => {
    const e = await error(env('ADD', { [k]: v }), conf());
    expect(e.code).toBe(ERR.INVALID_ENV);
    expect(e.msg.startsWith(msg)).toBe(true);
  });
  test('CNI_ARGS and CNI_PATH parsing', () => {
    expect([...parseCniArgs('IgnoreUnknown=1;IP=10.244.1.9;K8S_POD_NAME=a=b')]).toEqual([['IgnoreUnknown', '1'], ['IP', '10.244.1.9'], ['K8S_POD_NAME', 'a=b']]);
    expect(parseEnv('DEL', env('DEL', { CNI_PATH: '/a::/b', CNI_NETNS: '' })).path).toEqual(['/a', '/b']);
  });
});

describe('network config', () => {
  test.each([
    ['{"cniVersion":', ERR.DECODING_FAILURE, /^network config on stdin is not valid JSON: /],
    ['[1,2]', ERR.DECODING_FAILURE, /^network config on stdin must be a JSON object \(got \[1,2\]\)$/],
    [conf({ cniVersion: 'one' }), ERR.DECODING_FAILURE, /"cniVersion": not a version string \(got "one"\)/],
    [conf({ cniVersion: '0.2.0' }), ERR.INCOMPATIBLE_VERSION, /^incompatible CNI version "0.2.0": tulle-cni supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0$/],
    [conf({ cniVersion: '2.0.0' }), ERR.INCOMPATIBLE_VERSION, /"2.0.0"/],
    [JSON.stringify({ name: 'n', type: 'tulle' }), ERR.INCOMPATIBLE_VERSION, /no "cniVersion"/],
    [conf({ name: 'bad name' }), ERR.INVALID_NETWORK_CONFIG, /field "name": must match .* \(got "bad name"\)/],
    [conf({ name: undefined }), ERR.INVALID_NETWORK_CONFIG, /field "name": is required/],
    [conf({ socket: 'relative.sock' }), ERR.INVALID_NETWORK_CONFIG, /field "socket": must be an absolute path \(got "relative.sock"\)/],
    [conf({ ipam: 'host-local' }), ERR.INVALID_NETWORK_CONFIG, /field "ipam": must be an object/],
    [conf({ ipam: { type: '../x' } }), ERR.INVALID_NETWORK_CONFIG, /field "ipam.type": must name an IPAM plugin \(got "..\/x"\)/],
    [conf({ dns: { nameservers: 'x' } }), ERR.INVALID_NETWORK_CONFIG, /dns.nameservers: must be a list of strings/],
    [conf({ runtimeConfig: { ips: [5] } }), ERR.INVALID_NETWORK_CONFIG, /runtimeConfig.ips/],
    [conf({ ipMasq: true }), ERR.UNSUPPORTED_FIELD, /"ipMasq": true is not supported/],
    [conf({ prevResult: { ips: [{ address: 1 }] } }), ERR.DECODING_FAILURE, /prevResult.ips\[0\].address/],
  ])('%s -> code %i', async (stdin, code, msg) => {
    const e = await error(env('ADD'), stdin);
    expect(e.code).toBe(code);
    expect(e.msg).toMatch(msg);
  });
  test('the error object carries the request version when it is usable', async () => {
    expect((await error(env('ADD'), conf({ cniVersion: '0.4.0', name: '' }))).cniVersion).toBe('0.4.0');
  });
  test('CHECK needs 0.4.0, STATUS and GC 1.1.0 (code 1); CHECK needs prevResult (code 7); GC needs valid-attachments', async () => {
    expect((await error(env('CHECK'), conf({ cniVersion: '0.3.1' }))).msg).toBe('config version "0.3.1" does not allow CHECK (needs 0.4.0 or later)');
    expect((await error(env('STATUS'), conf({ cniVersion: '1.0.0' }))).code).toBe(ERR.INCOMPATIBLE_VERSION);
    expect((await error(env('GC'), conf({ cniVersion: '1.0.0' }))).code).toBe(ERR.INCOMPATIBLE_VERSION);
    expect(await error(env('CHECK'), conf())).toMatchObject({ code: ERR.INVALID_NETWORK_CONFIG, msg: expect.stringMatching(/"prevResult": CHECK needs/) });
    expect((await error(env('GC'), conf({ cniVersion: '1.1.0' }))).msg).toMatch(/cni.dev\/valid-attachments/);
  });
  test('ADD into a missing netns: code 3 naming the path; unreachable agent: code 50', async () => {
    expect(await error(env('ADD', { CNI_NETNS: '/run/netns/tl-no-such' }), conf())).toMatchObject({
      code: ERR.UNKNOWN_CONTAINER, msg: 'CNI_NETNS "/run/netns/tl-no-such" does not exist',
    });
    expect(await error(env('ADD', { CNI_NETNS: '/etc/hostname' }), conf())).toMatchObject({ code: ERR.INVALID_ENV, msg: 'CNI_NETNS "/etc/hostname" is not a network namespace' });
    expect(await error(env('ADD', { CNI_NETNS: '/proc/self/ns/net' }), conf())).toMatchObject({ code: ERR.INVALID_NETNS });
    // DEL has no agent to queue for where the socket's directory does not exist.
    expect(await error(env('DEL'), conf())).toMatchObject({ code: ERR.NOT_AVAILABLE, msg: expect.stringContaining('"/nonexistent/tulle.sock"') });
    expect((await error(env('DEL'), conf())).msg).toContain('the DEL could not be queued for it either (the socket\'s directory "/nonexistent" does not exist)');
    expect(existsSync('/nonexistent')).toBe(false);
    expect(await error(env('STATUS'), conf({ cniVersion: '1.1.0' }))).toMatchObject({ code: ERR.NOT_AVAILABLE });
  });
  test('CNI_NETNS that is another kind of namespace, or a FIFO (opened without waiting for a writer): code 4', async () => {
    expect(await error(env('ADD', { CNI_NETNS: '/proc/self/ns/uts' }), conf())).toMatchObject({
      code: ERR.INVALID_ENV, msg: 'CNI_NETNS "/proc/self/ns/uts" is not a network namespace (it is a uts namespace)',
    });
    const dir = mkdtempSync(join(tmpdir(), 'tulle-fifo-'));
    try {
      const fifo = join(dir, 'netns');
      execFileSync('mkfifo', [fifo]);
      expect(await error(env('ADD', { CNI_NETNS: fifo }), conf())).toMatchObject({ code: ERR.INVALID_ENV, msg: `CNI_NETNS "${fifo}" is not a network namespace` });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test.each([
    ['IP=zz:zz', {}, ERR.INVALID_ENV, 'CNI_ARGS: IP "zz:zz" is not an IP address'],
    ['IP=10.244.1.60/40', {}, ERR.INVALID_ENV, 'CNI_ARGS: IP "10.244.1.60/40" has an invalid prefix length'],
    ['IP=fd00::5', {}, ERR.INVALID_NETWORK_CONFIG, 'requested IP "fd00::5" is IPv6; tulle\'s overlay gives IPv4 addresses only'],
    ['IP=10.244.1.50,10.244.1.51', {}, ERR.INVALID_NETWORK_CONFIG, 'requested IPs "10.244.1.50" and "10.244.1.51": tulle gives an interface one IPv4 address'],
    ['', { runtimeConfig: { ips: ['fd00::7/64'] } }, ERR.INVALID_NETWORK_CONFIG, 'requested IP "fd00::7/64" is IPv6'],
    ['IP=10.244.1.5', { runtimeConfig: { ips: ['10.244.1.6/24'] } }, ERR.INVALID_NETWORK_CONFIG, 'requested IPs "10.244.1.5" and "10.244.1.6/24"'],
  ])('requested addresses the agent cannot give: CNI_ARGS %j, config %j -> code %i', async (args, extra, code, msg) => {
    const e = await error(env('ADD', args ? { CNI_ARGS: args } : {}), conf(extra));
    expect(e).toMatchObject({ code, msg: expect.stringContaining(msg) });
  });
  test('the same address asked twice, or an IPv6 one with an ipam plugin (which reads the request itself), gets as far as the netns', async () => {
    expect((await error(env('ADD', { CNI_ARGS: 'IP=10.244.1.5' }), conf({ runtimeConfig: { ips: ['10.244.1.5/24'] } }))).code).toBe(ERR.UNKNOWN_CONTAINER);
    expect((await error(env('ADD', { CNI_ARGS: 'IP=fd00::5' }), conf({ ipam: { type: 'host-local' } }))).code).toBe(ERR.UNKNOWN_CONTAINER);
  });
  test('DEL ignores a prevResult it never reads; CHECK, which reads it, refuses a malformed one', async () => {
    const bad = conf({ prevResult: { interfaces: 'nope' } });
    expect(await error(env('DEL'), bad)).toMatchObject({ code: ERR.NOT_AVAILABLE }); // got as far as the agent
    expect((await error(env('CHECK'), bad)).code).not.toBe(ERR.NOT_AVAILABLE);
    expect((await error(env('CHECK'), bad)).msg).toContain('prevResult');
  });
});

describe('VERSION', () => {
  test('answers without looking at the other variables or a broken config', async () => {
    for (const stdin of ['', 'garbage', '{"cniVersion":"0.4.0"}', '{"cniVersion":"9.9.9"}']) {
      const out = await runPlugin({ env: { CNI_COMMAND: 'VERSION', CNI_NETNS: 'dummy', CNI_IFNAME: 'dummy', CNI_PATH: 'dummy', CNI_CONTAINERID: '' }, stdin });
      expect(out.exitCode).toBe(0);
      const v = JSON.parse(out.stdout);
      expect(v.supportedVersions).toEqual([...SUPPORTED_VERSIONS]);
      expect(v.cniVersion).toBe(stdin.includes('0.4.0') ? '0.4.0' : '1.1.0');
    }
  });
  test('no CNI_COMMAND: the about text on stderr, exit 0', async () => {
    const out = await runPlugin({ env: {}, stdin: '' });
    expect(out).toMatchObject({ exitCode: 0, stdout: '' });
    expect(out.stderr).toContain('CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0');
  });
});
