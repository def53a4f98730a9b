/*
 * Many pods at once on one node, and agent restarts (with a changed subnet, with DELs queued
 * while it was down), through tulle-cni (root).
 *
 *   tl<lab>-n1  tulle agent (10.244.1.0/24)
 *     ├ tlv… ── tl<lab>-n1-p1     (the lab's pod, 10.244.1.2)
 *     └ tlv… ── tl<lab>-c1 .. c50 (ADDed all at once)
 *
 * The lab and every tl<lab>-c* namespace are deleted afterwards, also on failure.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { cniCall, type CniReply } from '../../src/lab/cni.js';
import { createNetns, deleteNetns } from '../../src/lab/netns.js';
import { labPrefix, labStateDir, labUp, type LabState } from '../../src/lab/topology.js';
import { distScript, nsRun, processAlive, run, spawnInNs, terminateProcesses } from '../../src/util/exec.js';
import { assertRoot, labGone, labName } from '../support/labs.js';

const PARALLEL = 50;
let lab: LabState;
let name: string;

beforeAll(async () => {
  assertRoot();
  name = labName('cp');
  lab = await labUp({ name, nodes: 1, pods: 1, mode: 'tulle' });
}, 60_000);

afterAll(async () => {
  if (name !== undefined) await labGone(name);
});

const node = () => lab.nodes[0]!;
const ipamDir = () => join(labStateDir(name), 'n1', 'data', 'ipam', '10.244.1.0-24');
const addressFiles = () => readdirSync(ipamDir()).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)).sort();
const records = () => readdirSync(join(labStateDir(name), 'n1', 'data', 'endpoints')).sort();
const hostVeths = async () => (JSON.parse(await run('ip', ['-n', node().ns, '-j', 'link', 'show', 'type', 'veth'])) as { ifname: string }[]).map((l) => l.ifname).sort();
const hostRoutes = async () => (await run('ip', ['-n', node().ns, '-4', 'route', 'show'])).trim().split('\n').sort();
const conf = () => ({ cniVersion: '1.0.0', name: `tl${name}`, type: 'tulle', socket: node().agent!.socket });

function call(command: 'ADD' | 'DEL', ns: string): Promise<CniReply> {
  return cniCall({
    plugin: join(lab.cniBin!, 'tulle'), command, nodeNs: node().ns, containerID: ns, netns: `/run/netns/${ns}`,
    ifname: 'eth0', path: [lab.cniBin!], config: conf(), timeoutMs: 120_000,
  });
}

/** Stops the node's agent, runs `meanwhile`, starts it again and returns its first ready status. */
async function restartAgent(meanwhile: () => Promise<unknown>): Promise<Record<string, unknown>> {
  const agent = node().agent!;
  await terminateProcesses([agent.pid]);
  expect(processAlive(agent.pid)).toBe(false);
  await meanwhile();
  const child = spawnInNs(node().ns, process.execPath, [distScript('src/cli/tulle.js'), 'agent', '--config', agent.configFile], { logFile: agent.logFile, detached: true });
  agent.pid = child.pid!;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const s = await run(process.execPath, [distScript('src/cli/tulle.js'), 'status', '--socket', agent.socket, '--json']).catch(() => '');
    if (s && JSON.parse(s).ready === true) return JSON.parse(s) as Record<string, unknown>;
    if (Date.now() > deadline) throw new Error(`agent did not come back on ${agent.socket}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test(`${PARALLEL} parallel ADDs get ${PARALLEL} distinct addresses; ${PARALLEL} parallel DELs leave no address file, veth or route`, async () => {
  const before = { files: addressFiles(), veths: await hostVeths(), routes: await hostRoutes(), records: records() };
  const pods = Array.from({ length: PARALLEL }, (_, i) => `${labPrefix(name)}c${i + 1}`);
  try {
    await Promise.all(pods.map((ns) => createNetns(ns)));
    const adds = await Promise.all(pods.map((ns) => call('ADD', ns)));
    expect(adds.filter((r) => r.exitCode !== 0).map((r) => r.stdout)).toEqual([]);
    const ips = adds.map((r) => (r.json as { ips: { address: string }[] }).ips[0]!.address.split('/')[0]!);
    expect(new Set(ips).size).toBe(PARALLEL);
    expect(new Set([...ips, ...before.files]).size).toBe(PARALLEL + before.files.length);
    expect(addressFiles()).toHaveLength(before.files.length + PARALLEL);
    expect(await hostVeths()).toHaveLength(before.veths.length + PARALLEL);
    // Each pod has its address and reaches the lab's pod through the node.
    for (const [i, ns] of pods.entries()) {
      expect(await run('ip', ['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).toContain(`${ips[i]}/24`);
    }
    await nsRun(pods[PARALLEL - 1]!, 'ping', ['-c', '1', '-W', '2', lab.pods[0]!.ip]);

    const dels = await Promise.all(pods.map((ns) => call('DEL', ns)));
    expect(dels.filter((r) => r.exitCode !== 0).map((r) => r.stdout)).toEqual([]);
    expect({ files: addressFiles(), veths: await hostVeths(), routes: await hostRoutes(), records: records() }).toEqual(before);
  } finally {
    await Promise.all(pods.map((ns) => deleteNetns(ns)));
  }
}, 180_000);

test('addresses and endpoints survive an agent restart; one whose pod vanished meanwhile is released; allocation continues without reuse', async () => {
  const pods = [1, 2, 3].map((i) => `${labPrefix(name)}r${i}`);
  try {
    await Promise.all(pods.map((ns) => createNetns(ns)));
    const first: string[] = [];
    for (const ns of pods.slice(0, 2)) {
      const r = await call('ADD', ns);
      expect(r.exitCode, r.stdout).toBe(0);
      first.push((r.json as { ips: { address: string }[] }).ips[0]!.address);
    }
    // While the agent is down, the second pod goes away without a DEL (its veth goes with it).
    const status = await restartAgent(() => deleteNetns(pods[1]!));
    const eps = (status.endpoints as { containerID: string; ip: string }[]).filter((e) => pods.includes(e.containerID));
    expect(eps.map((e) => e.ip)).toEqual([first[0]]);
    expect(addressFiles()).toEqual([lab.pods[0]!.ip, first[0]!.split('/')[0]!].sort());
    const third = await call('ADD', pods[2]!);
    expect(third.exitCode, third.stdout).toBe(0);
    const ip3 = (third.json as { ips: { address: string }[] }).ips[0]!.address;
    expect(first).not.toContain(ip3);
    await nsRun(pods[2]!, 'ping', ['-c', '1', '-W', '2', first[0]!.split('/')[0]!]);
    for (const ns of pods) expect((await call('DEL', ns)).exitCode).toBe(0);
    expect(addressFiles()).toEqual([lab.pods[0]!.ip]);
  } finally {
    await Promise.all(pods.map((ns) => deleteNetns(ns)));
  }
}, 120_000);

test("the node's subnet changes across a restart: DEL and GC release addresses in the old subnet's store; CHECK names the stale address", async () => {
  const agent = node().agent!;
  const original = readFileSync(agent.configFile, 'utf8');
  const pod = `${labPrefix(name)}s1`;
  const dataDir = join(labStateDir(name), 'n1', 'data');
  const oldDir = ipamDir();
  const newDir = join(dataDir, 'ipam', '10.244.5.0-24');
  const gc = (valid: unknown[]) => cniCall({
    plugin: join(lab.cniBin!, 'tulle'), command: 'GC', nodeNs: node().ns, path: [lab.cniBin!],
    config: { ...conf(), cniVersion: '1.1.0', 'cni.dev/valid-attachments': valid },
  });
  try {
    await createNetns(pod);
    const add = await call('ADD', pod);
    expect(add.exitCode, add.stdout).toBe(0);
    const result = add.json as Record<string, unknown> & { ips: { address: string }[] };
    const ip = result.ips[0]!.address.split('/')[0]!;
    expect(addressFiles()).toContain(ip);
    // An address reserved just before a crash, with no record: only GC can find it.
    writeFileSync(join(oldDir, '10.244.1.250'), 'crashed-before-record\r\neth0');
    await restartAgent(async () => {
      writeFileSync(agent.configFile, JSON.stringify({ ...JSON.parse(original), subnet: '10.244.5.0/24' }, null, 2));
    });
    const check = await cniCall({
      plugin: join(lab.cniBin!, 'tulle'), command: 'CHECK', nodeNs: node().ns, containerID: pod, netns: `/run/netns/${pod}`,
      ifname: 'eth0', path: [lab.cniBin!], config: { ...conf(), prevResult: result },
    });
    expect(check.exitCode).not.toBe(0);
    expect((check.json as { msg: string }).msg).toContain(`address ${result.ips[0]!.address} is outside the node's subnet 10.244.5.0/24`);
    const del = await call('DEL', pod);
    expect(del.exitCode, del.stdout).toBe(0);
    expect(addressFiles()).not.toContain(ip);
    const valid = [{ containerID: lab.pods[0]!.ns, ifname: 'eth0' }];
    const g = await gc(valid);
    expect(g.exitCode, g.stdout).toBe(0);
    expect(addressFiles()).toEqual([lab.pods[0]!.ip]);
    expect(existsSync(newDir)).toBe(true);
  } finally {
    await deleteNetns(pod);
    await restartAgent(async () => writeFileSync(agent.configFile, original));
  }
  expect(addressFiles()).toEqual([lab.pods[0]!.ip]);
}, 120_000);

test('a DEL while the agent is down succeeds and is queued; the agent performs it when it starts; a later ADD supersedes a queued DEL', async () => {
  const agent = node().agent!;
  const [gone, kept] = [`${labPrefix(name)}q1`, `${labPrefix(name)}q2`];
  const queueDir = `${agent.socket}.del-queue`;
  const queued = () => (existsSync(queueDir) ? readdirSync(queueDir).sort() : []);
  const before = { files: addressFiles(), veths: await hostVeths(), records: records() };
  try {
    await Promise.all([gone, kept].map((ns) => createNetns(ns)));
    const add = await call('ADD', gone);
    expect(add.exitCode, add.stdout).toBe(0);
    const ip = (add.json as { ips: { address: string }[] }).ips[0]!.address.split('/')[0]!;
    // A DEL queued earlier for an attachment that is ADDed afterwards must not undo that ADD.
    expect(existsSync(queueDir)).toBe(true); // made by the agent, 0700
    const stale = join(queueDir, `${createHash('sha256').update(`${kept}\neth0`).digest('hex')}.json`);
    writeFileSync(stale, JSON.stringify({ network: `tl${name}`, containerID: kept, ifname: 'eth0', queuedAt: new Date(0).toISOString() }));
    const addKept = await call('ADD', kept);
    expect(addKept.exitCode, addKept.stdout).toBe(0);
    expect(existsSync(stale)).toBe(false);
    expect(statSync(queueDir).mode & 0o777).toBe(0o700);
    writeFileSync(join(queueDir, 'garbage.json'), '{"containerID": 7');
    // A DEL queued before the endpoint was made (a plugin that queued while the agent loaded,
    // then the runtime ADDed the same attachment): at start-up it is dropped, not performed.
    const older = join(queueDir, `${createHash('sha256').update(`${kept}\neth0`).digest('hex')}.json`);

    await restartAgent(async () => {
      writeFileSync(older, JSON.stringify({ network: `tl${name}`, containerID: kept, ifname: 'eth0', queuedAt: new Date(Date.now() - 3_600_000).toISOString() }));
      const del = await call('DEL', gone);
      expect(del.exitCode, del.stdout).toBe(0);
      expect(queued()).toHaveLength(3);
      // The agent is away: the pod's veth and address are still there.
      expect(addressFiles()).toContain(ip);
    });
    expect(queued()).toEqual([]);
    expect(addressFiles()).not.toContain(ip);
    expect(await hostVeths()).toHaveLength(before.veths.length + 1);
    expect(await run('ip', ['-n', gone, 'link', 'show'])).not.toContain('eth0');
    const log = readFileSync(agent.logFile, 'utf8');
    expect(log).toContain('queued DEL performed');
    expect(log).toContain('unreadable queued DEL dropped');
    expect(log).toContain('queued DEL older than the endpoint; dropped');
    // The attachment ADDed after its stale queued DEL is intact and reachable.
    const keptIp = (addKept.json as { ips: { address: string }[] }).ips[0]!.address.split('/')[0]!;
    await nsRun(lab.pods[0]!.ns, 'ping', ['-c', '1', '-W', '2', keptIp]);
    expect((await call('DEL', kept)).exitCode).toBe(0);
    expect({ files: addressFiles(), veths: await hostVeths(), records: records() }).toEqual(before);
  } finally {
    await Promise.all([gone, kept].map((ns) => deleteNetns(ns)));
  }
}, 120_000);

test('a queue that is not a private directory: the agent starts and says so; a DEL while it is down fails with code 50 naming the problem', async () => {
  const agent = node().agent!;
  const queueDir = `${agent.socket}.del-queue`;
  const pod = `${labPrefix(name)}u1`;
  try {
    await createNetns(pod);
    expect((await call('ADD', pod)).exitCode).toBe(0);
    await restartAgent(async () => {
      rmSync(queueDir, { recursive: true, force: true });
      writeFileSync(queueDir, 'not a directory');
      const del = await call('DEL', pod);
      expect(del.exitCode).not.toBe(0);
      expect(del.json).toMatchObject({ code: 50, msg: expect.stringContaining(`the DEL could not be queued for it either ("${queueDir}" is not a directory)`) });
    });
    expect(readFileSync(agent.logFile, 'utf8')).toContain('the queue of DELs is unusable');
    expect((await call('DEL', pod)).exitCode).toBe(0);
  } finally {
    rmSync(queueDir, { force: true });
    await deleteNetns(pod);
  }
  await restartAgent(async () => undefined);
  expect(statSync(queueDir).isDirectory()).toBe(true);
}, 120_000);

test("a subnet that overlaps the earlier one keeps the earlier one's reservations: a live pod's address is not handed out again", async () => {
  const agent = node().agent!;
  const original = readFileSync(agent.configFile, 'utf8');
  const pod = `${labPrefix(name)}o1`;
  const labPod = lab.pods[0]!;
  try {
    await createNetns(pod);
    await restartAgent(async () => {
      writeFileSync(agent.configFile, JSON.stringify({ ...JSON.parse(original), subnet: '10.244.0.0/23' }, null, 2));
    });
    const add = await cniCall({
      plugin: join(lab.cniBin!, 'tulle'), command: 'ADD', nodeNs: node().ns, containerID: pod, netns: `/run/netns/${pod}`,
      ifname: 'eth0', path: [lab.cniBin!], config: conf(), args: `IP=${labPod.ip}`,
    });
    expect(add.exitCode, add.stdout).not.toBe(0);
    expect(add.json).toMatchObject({ code: 100, msg: `requested IP ${labPod.ip} is already allocated to container "${labPod.ns}"` });
    expect(readdirSync(join(labStateDir(name), 'n1', 'data', 'ipam', '10.244.0.0-23'))).toContain(labPod.ip);
  } finally {
    await deleteNetns(pod);
    await restartAgent(async () => writeFileSync(agent.configFile, original));
  }
  expect(addressFiles()).toEqual([labPod.ip]);
}, 120_000);
