/*
 * The lab itself (root; needs `npx tsc -p tsconfig.json` first for the dist/ helpers).
 *
 *                          tl<lab>-sw [br0]
 *               n1 ┌────────────┴────────────┐ n2          ... n3 (tulle case)
 *   tl<lab>-n1  eth0 172.31.0.1/24       tl<lab>-n2  eth0 172.31.0.2/24
 *   ├ veth-p1 ── tl<lab>-n1-p1 eth0 10.244.1.2  ├ veth-p1 ── tl<lab>-n2-p1 eth0 10.244.2.2
 *   └ veth-p2 ── tl<lab>-n1-p2 eth0 10.244.1.3  └ veth-p2 ── tl<lab>-n2-p2 eth0 10.244.2.3
 *
 *   kernel-vxlan: flannel.1 (10.244.k.0/32) per node;  plain: 10.244.m.0/24 via 172.31.0.m;
 *   tulle: one agent per node owning tulle0 (10.244.k.0/32) and the 10.244.0.0/16 route.
 * Every test uses its own random lab name and tears its lab down in afterEach.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { attachPod, detachPod, AttachError } from '../../src/control/attach.js';
import { request } from '../../src/control/api.js';
import { nsRun, processAlive, run, spawnInNs } from '../../src/util/exec.js';
import { handoffBinary, handoffRtt, iperf3Tcp, iperf3Udp, onCpu, pingAll, pingRtt, tcpTransfer, udpRcvbufErrors } from '../../src/lab/measure.js';
import { startUdpTunnels, UDPTUN_DEVICE, udptunBinary, udptunCommand } from '../../src/lab/udptun.js';
import { threadCpus } from '../../src/io/native.js';
import { createNetns, deleteNetns, ipIn, linksOfType, listNetns } from '../../src/lab/netns.js';
import { labDown, labPrefix, labStateDir, labUp, readLabState, type LabMode, type LabState } from '../../src/lab/topology.js';
import { existsSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { requireRoot, labPerTest } from '../support/labs.js';

const TRANSFER_BYTES = 4 << 20;

requireRoot();
const labs = labPerTest();
const newName = () => labs.next('t');

/** Every pod pair pings, and one byte-checked TCP stream crosses each node pair. */
async function checkLab(s: LabState): Promise<void> {
  expect(await pingAll(s.pods)).toEqual([]);
  for (const a of s.nodes) {
    for (const b of s.nodes.filter((n) => n.index > a.index)) {
      const from = s.pods.find((p) => p.node === a.index)!;
      const to = s.pods.find((p) => p.node === b.index)!;
      const r = await tcpTransfer(from.ns, to.ns, to.ip, TRANSFER_BYTES, a.index * 10 + b.index);
      expect(r.bytes).toBe(TRANSFER_BYTES);
    }
  }
}

/**
 * One UDP_SEGMENT send of `segments` x 1000 bytes (UDP_L4 GSO, as QUIC stacks send) from a pod:
 * the datagrams the receiving pod gets, each checked against what was sent.
 */
async function udpGsoTransfer(fromNs: string, toNs: string, toIp: string, segments: number): Promise<{ datagrams: number; bad: number }> {
  const rx = spawnInNs(toNs, 'python3', ['-c', [
    'import socket', 's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)', "s.bind(('0.0.0.0', 9797))", 's.settimeout(3)',
    'print("ready", flush=True)', 'n = bad = 0', 'try:', '  while True:', '    d = s.recv(65535)', '    n += 1',
    '    if len(d) != 1000 or d != bytes([(d[0] + i) % 251 for i in range(1000)]): bad += 1', 'except socket.timeout: pass',
    'print(n, bad, flush=True)'].join('\n')]);
  let out = '';
  rx.stdout!.on('data', (d: Buffer) => (out += String(d)));
  await new Promise<void>((resolve, reject) => {
    rx.stdout!.on('data', () => out.includes('ready') && resolve());
    rx.once('exit', (c) => reject(new Error(`receiver exited with ${String(c)}: ${out}`)));
  });
  await nsRun(fromNs, 'python3', ['-c', [
    'import socket', 's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)', 's.setsockopt(17, 103, 1000)  # UDP_SEGMENT',
    `s.sendto(b"".join(bytes([(j + i) % 251 for i in range(1000)]) for j in range(${segments})), ('${toIp}', 9797))`].join('\n')]);
  await new Promise((r) => rx.once('exit', r));
  const [datagrams, bad] = out.replace('ready', '').trim().split(/\s+/).map(Number);
  return { datagrams: datagrams!, bad: bad! };
}

describe.each<LabMode>(['kernel-vxlan', 'plain'])('lab in %s mode', (mode) => {
  test('2 nodes x 2 pods: all pairs ping, TCP bytes arrive intact, down leaves nothing', async () => {
    const lab = newName();
    const s = await labUp({ name: lab, nodes: 2, pods: 2, mode, store: 'static' });
    expect((await listNetns(labPrefix(lab))).sort()).toEqual([...s.namespaces].sort());
    expect(await linksOfType(s.nodes[0]!.ns, 'vxlan')).toEqual(mode === 'kernel-vxlan' ? ['flannel.1'] : []);
    await checkLab(s);
    await labDown({ name: lab });
    expect(await listNetns(labPrefix(lab))).toEqual([]);
    expect(existsSync(labStateDir(lab))).toBe(false);
  }, 120_000);
});

test("measurements put the pods' processes on a chosen CPU", async () => {
  expect(onCpu(undefined, 'ping', ['-c', '1'])).toEqual(['ping', ['-c', '1']]);
  expect(onCpu(3, 'ping', ['-c', '1'])).toEqual(['taskset', ['-c', '3', 'ping', '-c', '1']]);
  const lab = newName();
  const s = await labUp({ name: lab, nodes: 2, pods: 1, mode: 'plain' });
  const [a, b] = [s.pods.find((p) => p.node === 1)!, s.pods.find((p) => p.node === 2)!];
  const cpu = threadCpus().at(-1)!;
  expect((await pingRtt(a.ns, b.ip, 5, 0.01, cpu)).received).toBe(5);
  expect((await iperf3Tcp(a.ns, b.ns, b.ip, { seconds: 1, cpu })).bytes).toBeGreaterThan(0);
  // A CPU the machine lacks: taskset refuses, so the wrapper is really in the command line.
  expect(threadCpus()).not.toContain(1023);
  await expect(pingRtt(a.ns, b.ip, 1, 0.01, 1023)).rejects.toThrow(/taskset/);
}, 60_000);

test("UDP runs report what the receiving socket dropped; the counter is the namespace's own", async () => {
  const lab = newName();
  const s = await labUp({ name: lab, nodes: 2, pods: 1, mode: 'plain' });
  const [a, b] = [s.pods.find((p) => p.node === 1)!, s.pods.find((p) => p.node === 2)!];
  const u = await iperf3Udp(a.ns, b.ns, b.ip, { payload: 64, seconds: 1, bitrate: String(5000 * 64 * 8) });
  expect(u.socketDrops).not.toBeNull();
  expect(u.socketDrops).toBeGreaterThanOrEqual(0);
  expect(u.socketDrops).toBeLessThanOrEqual(u.sentPackets - u.receivedPackets);
  // A socket nobody reads, with the smallest buffer: 200 datagrams overflow it, in that namespace only.
  const before = [await udpRcvbufErrors(a.ns), await udpRcvbufErrors(b.ns)];
  await nsRun(b.ns, 'python3', ['-c', [
    'import socket', 'r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)', 'r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)',
    "r.bind(('127.0.0.1', 9898))", 's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    "for i in range(200): s.sendto(b'x' * 1000, ('127.0.0.1', 9898))"].join('\n')]);
  const dropped = (await udpRcvbufErrors(b.ns)) - before[1]!;
  expect(dropped).toBeGreaterThan(100);
  expect(dropped).toBeLessThanOrEqual(200);
  expect(await udpRcvbufErrors(a.ns)).toBe(before[0]);
}, 60_000);

test("a flood that overruns the TUN queue: the agent's kernel drops and the packets its worker read add up to what the pod sent", async () => {
  const lab = newName();
  const s = await labUp({ name: lab, nodes: 2, pods: 1, mode: 'tulle', agent: { workers: 1 } });
  const [from, to] = [s.pods.find((p) => p.node === 1)!, s.pods.find((p) => p.node === 2)!];
  const node = s.nodes.find((n) => n.index === from.node)!;
  // A short queue (in the lab's namespace) makes the overrun certain however fast the worker is.
  await nsRun(node.ns, 'ip', ['link', 'set', 'dev', 'tulle0', 'txqueuelen', '64']);
  type Status = { counters: Record<string, number>; kernelDrops: { tunTxDropped: number | null; rxSocketDrops: number | null } };
  const status = async (): Promise<Status> => (await request(node.agent!.socket, 'GET', '/v1/status')) as Status;
  const d0 = await status();
  expect(d0.kernelDrops.tunTxDropped).not.toBeNull();
  expect(d0.kernelDrops.rxSocketDrops).not.toBeNull();
  const flood = await iperf3Udp(from.ns, to.ns, to.ip, { payload: 64, seconds: 1 });
  // Until the worker has read what was queued.
  let d1 = await status();
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const next = await status();
    if (next.counters.tun_rx_packets === d1.counters.tun_rx_packets) break;
    d1 = next;
  }
  const dropped = d1.kernelDrops.tunTxDropped! - d0.kernelDrops.tunTxDropped!;
  const read = d1.counters.tun_rx_packets! - d0.counters.tun_rx_packets!;
  const what = `sent ${flood.sentPackets}, read ${read}, dropped ${dropped}`;
  expect(dropped, what).toBeGreaterThan(0);
  // The iperf3 control connection crosses the same queue: a few dozen packets either way.
  expect(Math.abs(dropped + read - flood.sentPackets), what).toBeLessThan(200);
}, 60_000);

test('process hand-offs: timed rounds with their CPU placement, bad arguments refused', async () => {
  const ns = `tl${randomBytes(3).toString('hex')}-ho`;
  await createNetns(ns);
  try {
    const h = await handoffRtt(ns, 50, 0.001);
    expect(h.rounds).toBe(50);
    expect(h.gapUs).toBe(1000);
    expect(h.p50Us).toBeGreaterThan(0);
    expect(h.p99Us).toBeGreaterThanOrEqual(h.p50Us);
    const cpu = threadCpus()[0]!;
    expect((await handoffRtt(ns, 20, 0, cpu)).rounds).toBe(20);
    // taskset refuses a CPU the machine lacks: the placement is really in the command line.
    await expect(handoffRtt(ns, 5, 0, 1023)).rejects.toThrow(/taskset/);
  } finally {
    await deleteNetns(ns);
  }
  for (const bad of [['0', '100'], ['10', '-1'], ['10'], ['x', '5'], ['100001', '0'], ['10', '1000001']]) {
    await expect(run(handoffBinary(), bad), bad.join(' ')).rejects.toThrow(/usage: tulle_handoff ROUNDS GAP_US/);
  }
}, 60_000);

test('the minimal userspace tunnel carries a plain lab\'s pods both ways, and its device and routes go when it stops', async () => {
  const lab = newName();
  const s = await labUp({ name: lab, nodes: 2, pods: 1, mode: 'plain' });
  const [n1, n2] = s.nodes;
  await expect(startUdpTunnels({ ...s, mode: 'kernel-vxlan' })).rejects.toThrow(/plain lab/);
  const t = await startUdpTunnels(s);
  expect(t.pids).toHaveLength(2);
  expect(await ipIn(n1!.ns, ['route', 'show', n2!.subnet])).toContain(`dev ${UDPTUN_DEVICE}`);
  expect(await ipIn(n2!.ns, ['route', 'show', n1!.subnet])).toContain(`dev ${UDPTUN_DEVICE}`);
  expect(await ipIn(n1!.ns, ['link', 'show', UDPTUN_DEVICE])).toMatch(/mtu 1472 .*state UNKNOWN/);
  await checkLab(s);
  await t.stop();
  expect(t.pids.every((pid) => !processAlive(pid))).toBe(true);
  await expect(ipIn(n1!.ns, ['link', 'show', UDPTUN_DEVICE])).rejects.toThrow();
  // On a chosen CPU, as the bench's -cpu0 scenario runs it.
  const cpu = threadCpus().at(-1)!;
  const pinned = await startUdpTunnels(s, cpu);
  for (const pid of pinned.pids) expect(/^Cpus_allowed_list:\s*(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]).toBe(String(cpu));
  expect(await pingAll(s.pods)).toEqual([]);
  await pinned.stop();
  for (const bad of [['x'], ['', '172.31.0.1', '172.31.0.2', '4790'], ['t0', '300.1.1.1', '172.31.0.2', '4790'], ['t0', '172.31.0.1', '172.31.0.2', '0'], ['t0', '172.31.0.1', '172.31.0.2', '65536x']]) {
    await expect(run(udptunBinary(), bad), bad.join(' ')).rejects.toThrow(/usage: tulle_udptun TUN LOCAL_IP PEER_IP PORT/);
  }
}, 120_000);

test('the minimal tunnel in Node carries a plain lab\'s pods both ways over tulle\'s I/O port, and refuses bad arguments', async () => {
  const lab = newName();
  const s = await labUp({ name: lab, nodes: 2, pods: 1, mode: 'plain' });
  const [n1, n2] = s.nodes;
  const t = await startUdpTunnels(s, undefined, 'node');
  expect(t.pids).toHaveLength(2);
  expect(await ipIn(n1!.ns, ['route', 'show', n2!.subnet])).toContain(`dev ${UDPTUN_DEVICE}`);
  await checkLab(s);
  await t.stop();
  expect(t.pids.every((pid) => !processAlive(pid))).toBe(true);
  await expect(ipIn(n1!.ns, ['link', 'show', UDPTUN_DEVICE])).rejects.toThrow();
  // Without its routes the pods no longer reach each other: the traffic above crossed the tunnel.
  expect(await pingAll(s.pods)).not.toEqual([]);
  for (const bad of [['x'], ['', '172.31.0.1', '172.31.0.2', '4790'], ['t0', '300.1.1.1', '172.31.0.2', '4790'], ['t0', '172.31.0.1', '172.31.0.2', '0'], ['t0', '172.31.0.1', '172.31.0.2', '65536x']]) {
    await expect(run(...udptunCommand('node', bad)), bad.join(' ')).rejects.toThrow(/usage: node-udptun TUN LOCAL_IP PEER_IP PORT/);
  }
}, 120_000);

test('labDown after a crash: recorded and unrecorded namespaces, a process left inside', async () => {
  const lab = newName();
  const s = await labUp({ name: lab, nodes: 2, pods: 1, mode: 'plain' });
  // As if labUp or a test died: a stray namespace the state does not list, a live process.
  await createNetns(`${labPrefix(lab)}n9`);
  const stray = spawnInNs(s.nodes[0]!.ns, 'sleep', ['600'], { detached: true });
  stray.unref();
  const pid = stray.pid!;
  expect(processAlive(pid)).toBe(true);
  await labDown({ name: lab });
  expect(processAlive(pid)).toBe(false);
  expect(await listNetns(labPrefix(lab))).toEqual([]);
  expect(existsSync(labStateDir(lab))).toBe(false);
}, 60_000);

test('labDown without a usable state file still removes the namespaces', async () => {
  const lab = newName();
  const s = await labUp({ name: lab, nodes: 1, pods: 2, mode: 'plain' });
  await writeFile(`${labStateDir(lab)}/state.json`, '{ truncated');
  expect(await readLabState(lab)).toBeNull();
  await labDown({ name: lab });
  for (const ns of s.namespaces) expect(await listNetns(ns)).toEqual([]);
  await rm(labStateDir(lab), { recursive: true, force: true });
  await labDown({ name: lab }); // repeatable
}, 60_000);

test('attachPod undoes a half-done attach; detachPod is idempotent', async () => {
  const lab = newName();
  const node = `${labPrefix(lab)}n1`;
  const pod = `${labPrefix(lab)}n1-p1`;
  await createNetns(node);
  await createNetns(pod);
  try {
    // A default route already in the pod makes the last pod-side step fail.
    await run('ip', ['-n', pod, 'link', 'add', 'x0', 'type', 'veth', 'peer', 'name', 'x1']);
    await run('ip', ['-n', pod, 'link', 'set', 'x0', 'up']);
    await run('ip', ['-n', pod, 'route', 'add', 'default', 'dev', 'x0']);
    const opts = { nodeNs: node, podNetns: pod, ifname: 'eth0', hostIfname: 'veth-p1', podIp: '10.244.1.2', gatewayIp: '10.244.1.1', mtu: 1450 };
    await expect(attachPod(opts)).rejects.toThrow(AttachError);
    await expect(run('ip', ['-n', node, 'link', 'show', 'veth-p1'])).rejects.toThrow(/does not exist/);
    await expect(run('ip', ['-n', pod, 'link', 'show', 'eth0'])).rejects.toThrow(/does not exist/);
    await run('ip', ['-n', pod, 'route', 'del', 'default']);
    // A bad value is refused before anything is created.
    await expect(attachPod({ ...opts, gsoMaxSegs: 0 })).rejects.toThrow('invalid gso_max_segs 0 (1..65535)');
    await expect(run('ip', ['-n', pod, 'link', 'show', 'eth0'])).rejects.toThrow(/does not exist/);
    await expect(run('ip', ['-n', node, 'link', 'show', 'veth-p1'])).rejects.toThrow(/does not exist/);
    const r = await attachPod({ ...opts, gsoMaxSegs: 44 });
    expect(JSON.parse(await run('ip', ['-n', pod, '-d', '-j', 'link', 'show', 'dev', 'eth0']))[0].gso_max_segs).toBe(44);
    expect(r.podMac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    expect(await nsRun(pod, 'ip', ['-4', 'addr', 'show', 'dev', 'eth0'])).toContain('10.244.1.2/32');
    expect(await nsRun(node, 'ip', ['route', 'get', '10.244.1.2'])).toContain('dev veth-p1');
    await nsRun(pod, 'ping', ['-c', '1', '-W', '2', '10.244.1.1']);
    await detachPod(opts);
    await detachPod(opts);
    await expect(run('ip', ['-n', node, 'link', 'show', 'veth-p1'])).rejects.toThrow(/does not exist/);
  } finally {
    await deleteNetns(pod);
    await deleteNetns(node);
  }
}, 60_000);

// Needs the agent (src/cli/tulle.ts `agent`); until it exists this fails at labUp.
test('lab in tulle mode: 3 nodes x 2 pods reach each other without any kernel VXLAN device', async () => {
  const lab = newName();
  const s = await labUp({ name: lab, nodes: 3, pods: 2, mode: 'tulle', store: 'static' });
  for (const ns of s.namespaces) expect(await linksOfType(ns, 'vxlan')).toEqual([]);
  await checkLab(s);
  // A pod's UDP_SEGMENT send reaches the TUN device as one UDP super-packet (where the device
  // takes USO), is cut by the sending agent into its datagrams, and arrives as them.
  const from = s.pods.find((p) => p.node === 1)!;
  const to = s.pods.find((p) => p.node === 2)!;
  type Status = { workers: { features: { uso: boolean } }[]; counters: Record<string, number> };
  const sender = s.nodes.find((n) => n.index === from.node)!.agent!.socket;
  const before = (await request(sender, 'GET', '/v1/status')) as Status;
  expect(await udpGsoTransfer(from.ns, to.ns, to.ip, 12)).toEqual({ datagrams: 12, bad: 0 });
  const after = (await request(sender, 'GET', '/v1/status')) as Status;
  const cut = after.counters.tun_rx_segments! - before.counters.tun_rx_segments!;
  expect(cut, JSON.stringify(before.workers.map((w) => w.features))).toBe(before.workers.every((w) => w.features.uso) ? 12 : 0);
}, 180_000);
