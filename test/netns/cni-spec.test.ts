/*
 * tulle-cni against the CNI spec, for every version it claims (root). The plugin is executed as
 * a runtime executes it: the installed executable (<lab>/cni/bin/tulle), run in the node's
 * namespace, CNI_* in the environment, the network config on stdin.
 *
 *                       tl<lab>-sw [br0]
 *                            │
 *   tl<lab>-n1  eth0 172.31.0.1/24, tulle agent (tulle0 10.244.1.0/32, socket <lab>/n1/tulle.sock)
 *     ├ tlv…  ── tl<lab>-n1-p1   eth0 10.244.1.2   (the lab's own pod)
 *     ├ tlv…  ── tl<lab>-c<k>    eth0 10.244.1.x/24 (this file's containers, one or two per test)
 *     └ node routes 10.244.1.x/32 dev tlv…
 *
 * Everything is named tl<lab>-*; afterAll tears the lab down and checks nothing is left.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ApiServer } from '../../src/control/api.js';
import { Endpoints } from '../../src/control/endpoints.js';
import { parseCidr } from '../../src/control/config.js';
import { CURRENT_VERSION, ERR, SUPPORTED_VERSIONS, compareVersions } from '../../src/cni/spec.js';
import { cniCall, type CniCall, type CniReply } from '../../src/lab/cni.js';
import { createNetns, deleteNetns } from '../../src/lab/netns.js';
import { labPrefix, labStateDir, labUp, type LabState } from '../../src/lab/topology.js';
import { distScript, nsRun, run } from '../../src/util/exec.js';
import { assertRoot, labGone, labName } from '../support/labs.js';

const HOST_LOCAL_DIR = '/usr/lib/cni';
let lab: LabState;
let name: string;
let counter = 0;

beforeAll(async () => {
  assertRoot();
  if (!existsSync(join(HOST_LOCAL_DIR, 'host-local'))) {
    throw new Error(`${HOST_LOCAL_DIR}/host-local is missing: apt-get install containernetworking-plugins (deploy/debian-test-packages.txt)`);
  }
  name = labName('cs');
  lab = await labUp({ name, nodes: 1, pods: 1, mode: 'tulle' });
}, 60_000);

afterAll(async () => {
  if (name !== undefined) await labGone(name);
});

const node = () => lab.nodes[0]!;
const dataDir = () => join(labStateDir(name), 'n1', 'data');
const ipamDir = () => join(dataDir(), 'ipam', '10.244.1.0-24');
const addressFiles = () => readdirSync(ipamDir()).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)).sort();
const records = () => readdirSync(join(dataDir(), 'endpoints')).sort();
const hostVeths = async () => (JSON.parse(await run('ip', ['-n', node().ns, '-j', 'link', 'show', 'type', 'veth'])) as { ifname: string }[]).map((l) => l.ifname).sort();
const podRoutes = async (ns: string) => run('ip', ['-n', ns, '-4', 'route', 'show']);

function conf(version: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: version, name: `tl${name}`, type: 'tulle', socket: node().agent!.socket, ...extra };
}

function call(c: Partial<CniCall> & Pick<CniCall, 'command' | 'config'>): Promise<CniReply> {
  return cniCall({ plugin: join(lab.cniBin!, 'tulle'), nodeNs: node().ns, path: [lab.cniBin!, HOST_LOCAL_DIR], ifname: 'eth0', ...c });
}

/** A fresh container netns named tl<lab>-c<k>; returns its name, path and container ID. */
async function container(): Promise<{ ns: string; netns: string; id: string }> {
  const ns = `${labPrefix(name)}c${++counter}`;
  await createNetns(ns);
  return { ns, netns: `/run/netns/${ns}`, id: `ctr${counter}-${randomBytes(4).toString('hex')}` };
}

function errorOf(r: CniReply): { code: number; msg: string; cniVersion: string } {
  expect(r.exitCode, `expected a failure, got ${r.stdout}`).not.toBe(0);
  return r.json as { code: number; msg: string; cniVersion: string };
}

function ok(r: CniReply): unknown {
  expect(r.exitCode, `${r.stdout}${r.stderr}`).toBe(0);
  return r.json;
}

interface Result {
  cniVersion: string;
  interfaces: { name: string; mac: string; sandbox?: string; mtu?: number }[];
  ips: { address: string; gateway: string; interface: number; version?: string }[];
  routes: { dst: string; gw?: string }[];
}

describe.each(SUPPORTED_VERSIONS)('spec version %s', (v) => {
  const atLeast = (w: string) => compareVersions(v, w) >= 0;

  test('ADD: result shape, pod and node wiring, endpoint in tulle status; DEL twice leaves nothing', async () => {
    const c = await container();
    try {
      const before = { files: addressFiles(), veths: await hostVeths() };
      const res = ok(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf(v) })) as Result;
      expect(res.cniVersion).toBe(v);
      expect(res.interfaces).toHaveLength(2);
      const [host, pod] = res.interfaces;
      expect(host!.name).toMatch(/^tlv[0-9a-f]{12}$/);
      expect(host).not.toHaveProperty('sandbox');
      expect(pod).toMatchObject({ name: 'eth0', sandbox: c.netns });
      expect(res.ips).toHaveLength(1);
      const ip = res.ips[0]!;
      expect(ip.address).toMatch(/^10\.244\.1\.\d+\/24$/);
      expect(ip).toMatchObject({ gateway: '10.244.1.1', interface: 1 });
      if (atLeast('1.0.0')) expect(ip).not.toHaveProperty('version');
      else expect(ip.version).toBe('4');
      if (atLeast('1.1.0')) expect(pod!.mtu).toBe(1450);
      else expect(pod).not.toHaveProperty('mtu');
      expect(res.routes).toContainEqual({ dst: '0.0.0.0/0', gw: '10.244.1.1' });

      // The kernel agrees: overlay MTU, address, default route via the node; the node's /32 route.
      const link = JSON.parse(await run('ip', ['-n', c.ns, '-j', 'addr', 'show', 'dev', 'eth0']))[0];
      expect(link.mtu).toBe(1450);
      // Super-packets of at most what one UDP_SEGMENT message holds at 1450: 44 datagrams of 1472 bytes.
      expect(JSON.parse(await run('ip', ['-n', c.ns, '-d', '-j', 'link', 'show', 'dev', 'eth0']))[0].gso_max_segs).toBe(44);
      expect(link.address).toBe(pod!.mac);
      expect(link.addr_info.map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`)).toContain(ip.address);
      expect(await podRoutes(c.ns)).toMatch(/^default via 10\.244\.1\.1 dev eth0/m);
      const podIp = ip.address.split('/')[0]!;
      expect(await run('ip', ['-n', node().ns, 'route', 'show', 'exact', `${podIp}/32`])).toContain(`dev ${host!.name}`);
      await nsRun(c.ns, 'ping', ['-c', '1', '-W', '2', '10.244.1.1']);
      await nsRun(c.ns, 'ping', ['-c', '1', '-W', '2', lab.pods[0]!.ip]);

      // host-local's layout, and the agent's record shown by `tulle status`.
      expect(readFileSync(join(ipamDir(), podIp), 'utf8')).toBe(`${c.id}\r\neth0`);
      const status = JSON.parse(await run(process.execPath, [distScript('src/cli/tulle.js'), 'status', '--socket', node().agent!.socket, '--json']));
      expect(status.endpoints).toContainEqual(expect.objectContaining({ containerID: c.id, ifname: 'eth0', ip: ip.address, mac: pod!.mac, hostIfname: host!.name, netns: c.netns }));
      expect(await run(process.execPath, [distScript('src/cli/tulle.js'), 'status', '--socket', node().agent!.socket])).toContain(`${ip.address.padEnd(18)} ${pod!.mac} eth0 <-> ${host!.name}`);

      const prev = atLeast('0.4.0') ? { prevResult: res } : {};
      for (let i = 0; i < 2; i++) {
        const del = await call({ command: 'DEL', containerID: c.id, netns: c.netns, config: conf(v, prev) });
        expect(del).toMatchObject({ exitCode: 0, stdout: '' });
      }
      expect(addressFiles()).toEqual(before.files);
      expect(await hostVeths()).toEqual(before.veths);
      expect(await run('ip', ['-n', node().ns, 'route', 'show', 'exact', `${podIp}/32`])).toBe('');
      expect(await run('ip', ['-n', c.ns, 'link', 'show'])).not.toContain('eth0');
    } finally {
      await deleteNetns(c.ns);
    }
  });

  test('CHECK after ADD passes; a missing route or address fails it with a clear message (code 1 before 0.4.0)', async () => {
    const c = await container();
    try {
      const res = ok(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf(v) })) as Result;
      const check = () => call({ command: 'CHECK', containerID: c.id, netns: c.netns, config: conf(v, { prevResult: res }) });
      if (!atLeast('0.4.0')) {
        expect(errorOf(await check())).toMatchObject({ code: ERR.INCOMPATIBLE_VERSION, msg: `config version "${v}" does not allow CHECK (needs 0.4.0 or later)` });
      } else {
        expect(await check()).toMatchObject({ exitCode: 0, stdout: '' });
        await run('ip', ['-n', c.ns, 'route', 'del', 'default']);
        const e = errorOf(await check());
        expect(e.code).toBe(ERR.CHECK_FAILED);
        expect(e.msg).toBe(`CHECK container ${c.id} interface eth0: route 0.0.0.0/0 via 10.244.1.1 is missing in the pod`);
        await run('ip', ['-n', c.ns, 'route', 'add', 'default', 'via', '10.244.1.1', 'dev', 'eth0']);
        expect((await check()).exitCode).toBe(0);
        const wrong = { ...res, ips: [{ ...res.ips[0]!, address: '10.244.1.250/24' }] };
        const e2 = errorOf(await call({ command: 'CHECK', containerID: c.id, netns: c.netns, config: conf(v, { prevResult: wrong }) }));
        expect(e2.msg).toContain(`prevResult lacks address ${res.ips[0]!.address}`);
        expect(e2.msg).toContain('"eth0" lacks address 10.244.1.250/24');
      }
      ok(await call({ command: 'DEL', containerID: c.id, netns: c.netns, config: conf(v) }));
    } finally {
      await deleteNetns(c.ns);
    }
  });

  test('DEL succeeds with the netns already deleted, and with no CNI_NETNS; the address is released', async () => {
    for (const netnsGiven of [true, false]) {
      const c = await container();
      const res = ok(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf(v) })) as Result;
      const podIp = res.ips[0]!.address.split('/')[0]!;
      await deleteNetns(c.ns);
      expect(addressFiles()).toContain(podIp);
      expect(await call({ command: 'DEL', containerID: c.id, netns: netnsGiven ? c.netns : undefined, config: conf(v) })).toMatchObject({ exitCode: 0, stdout: '' });
      expect(addressFiles()).not.toContain(podIp);
      expect(await hostVeths()).not.toContain(res.interfaces[0]!.name);
    }
  });

  test('ADD into a missing netns fails with code 3 and leaves nothing behind', async () => {
    const before = { files: addressFiles(), veths: await hostVeths(), records: records() };
    const missing = `/run/netns/${labPrefix(name)}gone`;
    const e = errorOf(await call({ command: 'ADD', containerID: 'ctrmissing', netns: missing, config: conf(v) }));
    expect(e).toEqual({ cniVersion: v, code: ERR.UNKNOWN_CONTAINER, msg: `CNI_NETNS "${missing}" does not exist` });
    expect({ files: addressFiles(), veths: await hostVeths(), records: records() }).toEqual(before);
  });

  test('ADD of an interface name that exists in the netns fails (code 101) and is undone; a second ADD of one attachment fails (code 100)', async () => {
    const c = await container();
    try {
      await run('ip', ['-n', c.ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'x0']);
      const before = { files: addressFiles(), veths: await hostVeths(), records: records() };
      const e = errorOf(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf(v) }));
      expect(e.code).toBe(ERR.ATTACH_FAILED);
      expect(e.msg).toContain(`interface "eth0" already exists in the pod's network namespace`);
      expect({ files: addressFiles(), veths: await hostVeths(), records: records() }).toEqual(before);
      await run('ip', ['-n', c.ns, 'link', 'del', 'eth0']);
      ok(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf(v) }));
      const dup = errorOf(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf(v) }));
      expect(dup.code).toBe(ERR.ADDRESS_UNAVAILABLE);
      expect(dup.msg).toMatch(/is already attached .*duplicate allocation is not allowed/);
      ok(await call({ command: 'DEL', containerID: c.id, netns: c.netns, config: conf(v) }));
      expect(addressFiles()).toEqual(before.files);
    } finally {
      await deleteNetns(c.ns);
    }
  });

  test('any interface name the spec allows (also "help"): ADD, CHECK and DEL work; DEL of one never added succeeds; "#" and "\\" are refused before allocating', async () => {
    const c = await container();
    try {
      const before = { files: addressFiles(), veths: await hostVeths(), records: records() };
      for (const ifname of ['eth@0+x', 'help']) {
        const res = ok(await call({ command: 'ADD', containerID: c.id, netns: c.netns, ifname, config: conf(v) })) as Result;
        expect(res.interfaces.find((i) => i.sandbox !== undefined)?.name).toBe(ifname);
        const links = JSON.parse(await run('ip', ['-n', c.ns, '-j', 'link', 'show', 'dev', ifname])) as { ifname: string }[];
        expect(links[0]!.ifname).toBe(ifname);
        expect(await podRoutes(c.ns)).toContain(`default via 10.244.1.1 dev ${ifname}`);
        if (compareVersions(v, '0.4.0') >= 0) ok(await call({ command: 'CHECK', containerID: c.id, netns: c.netns, ifname, config: conf(v, { prevResult: res }) }));
        ok(await call({ command: 'DEL', containerID: c.id, netns: c.netns, ifname, config: conf(v) }));
        expect({ files: addressFiles(), veths: await hostVeths(), records: records() }).toEqual(before);
      }
      ok(await call({ command: 'DEL', containerID: `${c.id}n`, netns: c.netns, ifname: 'net+1', config: conf(v) }));
      for (const ifname of ['a#b', 'eth0\\']) {
        const bad = errorOf(await call({ command: 'ADD', containerID: c.id, netns: c.netns, ifname, config: conf(v) }));
        expect(bad).toMatchObject({ code: ERR.INVALID_ENV, msg: expect.stringContaining(JSON.stringify(ifname)) });
      }
      expect({ files: addressFiles(), veths: await hostVeths(), records: records() }).toEqual(before);
    } finally {
      await deleteNetns(c.ns);
    }
  });

  test('VERSION answers with dummy variables and the request version', async () => {
    const r = await call({ command: 'VERSION', containerID: '', netns: 'dummy', ifname: 'dummy', path: ['dummy'], config: { cniVersion: v } });
    expect(ok(r)).toEqual({ cniVersion: v, supportedVersions: [...SUPPORTED_VERSIONS] });
  });

  test('STATUS: 0 with the agent, 50 without it (code 1 before 1.1.0)', async () => {
    const status = (socket: string) => call({ command: 'STATUS', containerID: undefined, netns: undefined, ifname: undefined, config: conf(v, { socket }) });
    if (!atLeast('1.1.0')) {
      expect(errorOf(await status(node().agent!.socket)).code).toBe(ERR.INCOMPATIBLE_VERSION);
      return;
    }
    expect(await status(node().agent!.socket)).toMatchObject({ exitCode: 0, stdout: '' });
    const gone = join(labStateDir(name), 'no-agent.sock');
    expect(errorOf(await status(gone))).toEqual({
      cniVersion: v, code: ERR.NOT_AVAILABLE, msg: `tulle agent is not reachable at socket "${gone}" (ENOENT); is the agent running?`,
    });
  });

  test('GC releases only attachments missing from the valid list, and unrecorded stale addresses (code 1 before 1.1.0)', async () => {
    const gc = (valid: unknown, key = 'cni.dev/valid-attachments') =>
      call({ command: 'GC', containerID: undefined, netns: undefined, ifname: undefined, config: conf(v, { [key]: valid }) });
    if (!atLeast('1.1.0')) {
      expect(errorOf(await gc([])).msg).toBe(`config version "${v}" does not allow GC (needs 1.1.0 or later)`);
      return;
    }
    const keep = await container();
    const drop = await container();
    try {
      const a = ok(await call({ command: 'ADD', containerID: keep.id, netns: keep.netns, config: conf(v) })) as Result;
      const b = ok(await call({ command: 'ADD', containerID: drop.id, netns: drop.netns, config: conf(v) })) as Result;
      writeFileSync(join(ipamDir(), '10.244.1.240'), 'crashed-before-record\r\neth0');
      // An empty address file (owner unknown) goes; an older host-local file naming only a valid
      // container stays, and one naming another container goes.
      writeFileSync(join(ipamDir(), '10.244.1.241'), '');
      writeFileSync(join(ipamDir(), '10.244.1.242'), keep.id);
      writeFileSync(join(ipamDir(), '10.244.1.243'), 'gone-container');
      const labPod = lab.pods[0]!;
      const valid = [{ containerID: keep.id, ifname: 'eth0' }, { containerID: labPod.ns, ifname: 'eth0' }];
      // The spec-v1.1.0 tag's key is accepted too.
      expect(await gc(valid, 'cni.dev/attachments')).toMatchObject({ exitCode: 0, stdout: '' });
      const files = addressFiles();
      expect(files).toContain(a.ips[0]!.address.split('/')[0]);
      expect(files).toContain(labPod.ip);
      expect(files).not.toContain(b.ips[0]!.address.split('/')[0]);
      expect(files).not.toContain('10.244.1.240');
      expect(files).not.toContain('10.244.1.241');
      expect(files).toContain('10.244.1.242');
      expect(files).not.toContain('10.244.1.243');
      rmSync(join(ipamDir(), '10.244.1.242'));
      const veths = await hostVeths();
      expect(veths).toContain(a.interfaces[0]!.name);
      expect(veths).not.toContain(b.interfaces[0]!.name);
      await nsRun(labPod.ns, 'ping', ['-c', '1', '-W', '2', a.ips[0]!.address.split('/')[0]!]);
      expect(errorOf(await gc(undefined)).msg).toMatch(/"cni.dev\/valid-attachments": GC needs/);
      ok(await call({ command: 'DEL', containerID: keep.id, netns: keep.netns, config: conf(v) }));
    } finally {
      await deleteNetns(keep.ns);
      await deleteNetns(drop.ns);
    }
  });

  test('malformed JSON (6), missing variables (4), bad names (4, 7), unsupported version (1)', async () => {
    const c = { containerID: 'ctrbad', netns: '/run/netns/whatever' };
    expect(errorOf(await call({ command: 'ADD', ...c, config: `{"cniVersion":"${v}", "name":` })).code).toBe(ERR.DECODING_FAILURE);
    const missing = errorOf(await call({ command: 'ADD', config: conf(v), env: { CNI_COMMAND: 'ADD', CNI_PATH: lab.cniBin! } }));
    expect(missing).toEqual({ cniVersion: CURRENT_VERSION, code: ERR.INVALID_ENV, msg: 'required environment variables missing: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME' });
    expect(errorOf(await call({ command: 'ADD', ...c, containerID: '_x', config: conf(v) }))).toMatchObject({ code: ERR.INVALID_ENV, msg: expect.stringContaining('"_x"') });
    expect(errorOf(await call({ command: 'ADD', ...c, ifname: 'a b', config: conf(v) }))).toMatchObject({ code: ERR.INVALID_ENV, msg: expect.stringContaining('"a b"') });
    expect(errorOf(await call({ command: 'ADD', ...c, config: conf(v, { name: 'no/slash' }) }))).toMatchObject({ cniVersion: v, code: ERR.INVALID_NETWORK_CONFIG, msg: expect.stringContaining('"no/slash"') });
    expect(errorOf(await call({ command: 'DEL', ...c, config: conf('0.2.0') })).code).toBe(ERR.INCOMPATIBLE_VERSION);
  });
});

describe.each(SUPPORTED_VERSIONS.filter((v) => compareVersions(v, '1.0.0') <= 0))('ipam delegation to host-local, version %s', (v) => {
  test('ADD takes host-local\'s address; DEL releases it there; a failed ADD releases it too', async () => {
    const ipamData = mkdtempSync(join(tmpdir(), 'tulle-hostlocal-'));
    const c = await container();
    try {
      const ipam = { type: 'host-local', dataDir: ipamData, ranges: [[{ subnet: '10.244.1.0/24', rangeStart: '10.244.1.200', rangeEnd: '10.244.1.210', gateway: '10.244.1.1' }]], routes: [{ dst: '10.96.0.0/12' }, { dst: '0.0.0.0/0' }] };
      const res = ok(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf(v, { ipam }) })) as Result;
      expect(res.ips[0]!.address).toBe('10.244.1.200/24');
      // host-local's own default route is the pod's default route via its gateway: listed once.
      expect([...res.routes].sort((x, y) => x.dst.localeCompare(y.dst))).toEqual([{ dst: '0.0.0.0/0', gw: '10.244.1.1' }, { dst: '10.96.0.0/12', gw: '10.244.1.1' }]);
      const netDir = join(ipamData, `tl${name}`);
      expect(readFileSync(join(netDir, '10.244.1.200'), 'utf8')).toBe(`${c.id}\r\neth0`);
      expect(addressFiles()).not.toContain('10.244.1.200');
      expect(await podRoutes(c.ns)).toContain('10.96.0.0/12 via 10.244.1.1 dev eth0');
      if (compareVersions(v, '0.4.0') >= 0) ok(await call({ command: 'CHECK', containerID: c.id, netns: c.netns, config: conf(v, { ipam, prevResult: res }) }));
      ok(await call({ command: 'DEL', containerID: c.id, netns: c.netns, config: conf(v, { ipam }) }));
      expect(existsSync(join(netDir, '10.244.1.200'))).toBe(false);
      // Out of the node's subnet: the agent refuses, and the plugin gives host-local's address back.
      const outside = { ...ipam, ranges: [[{ subnet: '10.99.0.0/24' }]] };
      const e = errorOf(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf(v, { ipam: outside }) }));
      expect(e).toMatchObject({ code: ERR.INVALID_NETWORK_CONFIG, msg: expect.stringContaining("is outside this node's subnet 10.244.1.0/24") });
      expect(readdirSync(netDir).filter((f) => f.startsWith('10.'))).toEqual([]);
      // The subnet's network and broadcast addresses (the static plugin gives what it is told).
      for (const [address, what] of [['10.244.1.0/24', "the subnet's network address"], ['10.244.1.255/24', "the subnet's broadcast address"]] as const) {
        const before = { veths: await hostVeths(), records: records() };
        const s = errorOf(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf(v, { ipam: { type: 'static', addresses: [{ address }] } }) }));
        expect(s).toMatchObject({ code: ERR.INVALID_NETWORK_CONFIG, msg: expect.stringContaining(`address ${address} from the ipam plugin is ${what}`) });
        expect({ veths: await hostVeths(), records: records() }).toEqual(before);
      }
    } finally {
      await deleteNetns(c.ns);
      rmSync(ipamData, { recursive: true, force: true });
    }
  });

  test('an ipam plugin whose ADD result does not parse is told to DEL what it allocated', async () => {
    const fake = mkdtempSync(join(tmpdir(), 'tulle-fakeipam-'));
    const c = await container();
    try {
      writeFileSync(join(fake, 'fakeipam'), [
        '#!/bin/sh', 'echo "$CNI_COMMAND" >> "$(dirname "$0")/calls"',
        `[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"${v}","ips":"not a list"}'`, 'exit 0', ''].join('\n'), { mode: 0o755 });
      const e = errorOf(await call({ command: 'ADD', containerID: c.id, netns: c.netns, path: [lab.cniBin!, fake], config: conf(v, { ipam: { type: 'fakeipam' } }) }));
      expect(e.msg).toContain('fakeipam');
      expect(readFileSync(join(fake, 'calls'), 'utf8')).toBe('ADD\nDEL\n');
    } finally {
      await deleteNetns(c.ns);
      rmSync(fake, { recursive: true, force: true });
    }
  });
});

test('a half-done ADD (node side fails after the veth exists) is undone; requested addresses are honoured', async () => {
  const c = await container();
  try {
    // Something else already routes 10.244.1.77 on the node: the host side's /32 route fails.
    await run('ip', ['-n', node().ns, 'route', 'add', '10.244.1.77/32', 'dev', 'lo']);
    const before = { files: addressFiles(), veths: await hostVeths(), records: records() };
    const e = errorOf(await call({ command: 'ADD', containerID: c.id, netns: c.netns, args: 'IgnoreUnknown=1;IP=10.244.1.77', config: conf('1.0.0') }));
    expect(e.code).toBe(ERR.ATTACH_FAILED);
    expect(e.msg).toContain('File exists');
    expect({ files: addressFiles(), veths: await hostVeths(), records: records() }).toEqual(before);
    expect(await run('ip', ['-n', c.ns, 'link', 'show'])).not.toContain('eth0');
    await run('ip', ['-n', node().ns, 'route', 'del', '10.244.1.77/32', 'dev', 'lo']);
    const viaArgs = ok(await call({ command: 'ADD', containerID: c.id, netns: c.netns, args: 'IgnoreUnknown=1;IP=10.244.1.77', config: conf('1.0.0') })) as Result;
    expect(viaArgs.ips[0]!.address).toBe('10.244.1.77/24');
    const taken = errorOf(await call({ command: 'ADD', containerID: `${c.id}x`, netns: c.netns, ifname: 'eth1', config: conf('1.0.0', { runtimeConfig: { ips: ['10.244.1.77/24'] } }) }));
    expect(taken).toMatchObject({ code: ERR.ADDRESS_UNAVAILABLE, msg: `requested IP 10.244.1.77 is already allocated to container "${c.id}"` });
    ok(await call({ command: 'DEL', containerID: c.id, netns: c.netns, config: conf('1.0.0') }));
    expect(addressFiles()).toEqual(before.files);
  } finally {
    await deleteNetns(c.ns);
  }
});

test('ADD after an earlier plugin of the chain appends to its prevResult', async () => {
  const c = await container();
  try {
    const prevResult = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'dummy0', mac: '02:00:00:00:00:09' }],
      ips: [{ address: '192.0.2.9/24', interface: 0 }],
      routes: [{ dst: '192.0.2.0/24' }],
      dns: { nameservers: ['192.0.2.53'] },
    };
    const res = ok(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf('1.0.0', { prevResult }) })) as Result & { dns: unknown };
    expect(res.interfaces.map((i) => i.name)).toEqual(['dummy0', expect.stringMatching(/^tlv/), 'eth0']);
    expect(res.ips).toEqual([prevResult.ips[0], { address: expect.stringMatching(/^10\.244\.1\./), gateway: '10.244.1.1', interface: 2 }]);
    expect(res.routes).toEqual([{ dst: '192.0.2.0/24' }, { dst: '0.0.0.0/0', gw: '10.244.1.1' }]);
    expect(res.dns).toEqual({ nameservers: ['192.0.2.53'] });
    ok(await call({ command: 'DEL', containerID: c.id, netns: c.netns, config: conf('1.0.0') }));
  } finally {
    await deleteNetns(c.ns);
  }
});

test("the agent writes flannel's subnet.env", () => {
  expect(readFileSync(join(labStateDir(name), 'n1', 'subnet.env'), 'utf8')).toBe(
    'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n',
  );
});

/**
 * An endpoint registry of its own (subnet 10.244.9.0/24, ready or not) behind an API socket in a
 * temporary directory, and a container for it; `done` closes and removes all of them.
 */
async function standaloneEndpoints(ready: boolean, status?: unknown) {
  const dir = mkdtempSync(join(tmpdir(), 'tulle-standalone-'));
  const socket = join(dir, 'agent.sock');
  const endpoints = new Endpoints({
    dataDir: dir, socket, log: { info() {}, warn() {}, error() {} } as never,
    node: () => ({ subnet: parseCidr('subnet', '10.244.9.0/24'), mtu: 1450, ready }),
  });
  const api = new ApiServer(socket);
  if (status !== undefined) api.on('GET', /^\/v1\/status$/, () => status);
  endpoints.register(api);
  await api.listen();
  const c = await container();
  const done = async () => {
    await api.close();
    await endpoints.close();
    await deleteNetns(c.ns);
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, socket, endpoints, c, done };
}

test('DEL and ADD while the agent stops answer code 11 (try again later)', async () => {
  const { dir, socket, endpoints, c, done } = await standaloneEndpoints(true);
  try {
    await endpoints.load();
    await endpoints.close();
    const stopping = { code: ERR.TRY_AGAIN_LATER, msg: 'the tulle agent is stopping; try again' };
    expect(errorOf(await call({ command: 'DEL', containerID: c.id, netns: c.netns, config: conf('1.0.0', { socket }) }))).toMatchObject(stopping);
    expect(errorOf(await call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf('1.0.0', { socket }) }))).toMatchObject(stopping);
    // No record, no address, nothing queued.
    expect((readdirSync(dir, { recursive: true }) as string[]).filter((f) => /\.json$|\d+\.\d+\.\d+\.\d+$|del-queue\//.test(f))).toEqual([]);
  } finally {
    await done();
  }
});

test('ADD while the agent is starting answers code 11 (try again later)', async () => {
  const { socket, endpoints, c, done } = await standaloneEndpoints(false, { ready: false });
  try {
    const add = () => call({ command: 'ADD', containerID: c.id, netns: c.netns, config: conf('1.0.0', { socket }) });
    expect(errorOf(await add())).toMatchObject({ code: ERR.TRY_AGAIN_LATER, msg: 'the tulle agent is starting; try again' });
    await endpoints.load();
    expect(errorOf(await add())).toMatchObject({ code: ERR.TRY_AGAIN_LATER, msg: 'the tulle agent is starting; try again' });
    expect(errorOf(await call({ command: 'STATUS', config: conf('1.1.0', { socket }) }))).toMatchObject({ code: ERR.NOT_AVAILABLE, msg: expect.stringContaining('is not ready') });
    expect(await run('ip', ['-n', c.ns, 'link', 'show'])).not.toContain('eth0');
  } finally {
    await done();
  }
});
