/*
 * Cluster membership through a real etcd 3.4 (Debian's etcd-server), in flannel's layout
 * (root; needs `npx tsc -p tsconfig.json` first for the agent and lab helpers in dist/).
 *
 *                      tl<lab>-sw [br0 172.31.0.254/24]  etcd :2379 (data in /run/tulle-lab/<lab>/etcd)
 *        n1 ┌──────────────┬──────────┴───┬──────────────┐ n9 (flannel-style, test 4)
 *   tl<lab>-n1       tl<lab>-n2       tl<lab>-n3       tl<lab>-n4 (joins later)   tl<lab>-n9
 *   eth0 172.31.0.1  eth0 172.31.0.2  eth0 172.31.0.3  eth0 172.31.0.4            eth0 172.31.0.9
 *   tulle agent      tulle agent      tulle agent      tulle agent                flannel.1 (kernel)
 *   store: etcd      store: etcd      store: etcd      store: etcd                lease written by the
 *   subnet: leased   subnet: leased   subnet: leased   subnet: leased             test as flanneld would
 *   pods .2, .3 of the leased subnet (ptp wiring)                                 pod 10.244.200.2
 *
 * Agents' configs name no subnet, peers or MAC: each leases a random free /24 of 10.244.0.0/16
 * under /coreos.com/network/subnets/ and learns the others from its watch. Every test gets its
 * own lab name and tears the lab down (namespaces, agents, etcd) in afterEach, also on failure.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import { request } from '../../src/control/api.js';
import { attachPod } from '../../src/control/attach.js';
import { etcdctl, type LabEtcd } from '../../src/lab/etcd.js';
import { addKernelVxlanPeer, setTxChecksumOffload, setupKernelVxlan, vxlanDeviceName } from '../../src/lab/kernel-vxlan.js';
import { pingAll } from '../../src/lab/measure.js';
import { addAddress, addBridgePort, addVeth, createNetns, linkUp, sysctl } from '../../src/lab/netns.js';
import {
  LAB_ETCD_PREFIX, labAddNode, labPrefix, labStartAgent, labStartEtcd, labStopAgent, labStopEtcd, labUp, readLabState,
  type LabNode, type LabState,
} from '../../src/lab/topology.js';
import { nsRun, run, spawnInNs } from '../../src/util/exec.js';
import { assertRoot, labPerTest } from '../support/labs.js';

/** The acceptance bound for a join or a leave to reach every other node. */
const PROPAGATION_LIMIT_MS = 1_000;
const OUTAGE_MS = 10_000;

beforeAll(async () => {
  assertRoot();
  // Fail, not skip, when the etcd server this file tests against is missing.
  await run('etcd', ['--version']).catch((e: Error) => {
    throw new Error(`etcd-server is not installed (apt-get install $(cat deploy/debian-test-packages.txt)): ${e.message}`);
  });
});

const labs = labPerTest();

async function etcdLab(nodes: number, pods: number, leaseTTLSeconds?: number): Promise<LabState> {
  return labUp({ name: labs.next('e'), nodes, pods, mode: 'tulle', store: 'etcd', ...(leaseTTLSeconds ? { leaseTTLSeconds } : {}) });
}

interface AgentStatus {
  ready: boolean;
  node: { subnet: string; vtepMAC: string; vtepIP: string };
  peers: { subnet: string; vtepIP: string; vtepMAC: string }[];
  store: {
    state: string;
    lease?: { key: string; subnet: string; createdByThisRun: boolean };
    etcd: { reachable: boolean; unreachableSince?: string };
    ignored: { key: string; why: string }[];
    events: { at: string; event: string }[];
  };
}

function status(n: LabNode): Promise<AgentStatus> {
  return request(n.agent!.socket, 'GET', '/v1/status') as Promise<AgentStatus>;
}

async function labEtcd(): Promise<LabEtcd> {
  return (await readLabState(labs.current()))!.etcd!;
}

const keyOf = (subnet: string) => `${LAB_ETCD_PREFIX}/subnets/${subnet.replace('/', '-')}`;

/** The etcd lease ID (hex, as etcdctl takes it) a key is attached to. */
async function leaseIdOf(key: string): Promise<string> {
  // Read as text: lease IDs are int64 and lose digits as JSON numbers.
  const out = await etcdctl(await labEtcd(), ['get', key, '-w', 'json']);
  const id = /"lease":(\d+)/.exec(out)?.[1];
  if (id === undefined) throw new Error(`${key} has no etcd lease: ${out}`);
  return BigInt(id).toString(16);
}

/** Polls until `cond` holds; returns the time it first held. */
async function until(what: string, cond: () => Promise<boolean>, timeoutMs: number, pollMs = 10): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return Date.now();
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Wall-clock time (ms) of the first echo reply from `ip`, pinging every 20 ms from `ns`. */
async function firstReplyAt(ns: string, ip: string, timeoutS: number): Promise<number> {
  const out = await nsRun(ns, 'ping', ['-D', '-n', '-i', '0.02', '-c', '1', '-w', String(timeoutS), ip], { timeoutMs: (timeoutS + 5) * 1000 });
  const m = /^\[(\d+\.\d+)\] \d+ bytes from/m.exec(out);
  if (!m) throw new Error(`no reply from ${ip} in ${ns}:\n${out}`);
  return Math.round(Number(m[1]) * 1000);
}

/** Time (ms) of the agent's log line `msg` (first match after `since`). */
async function logTime(n: LabNode, msg: string, since = 0): Promise<number> {
  const lines = (await readFile(n.agent!.logFile, 'utf8')).split('\n').filter((l) => l.startsWith('{'));
  for (const l of lines) {
    const j = JSON.parse(l) as { time: number; msg: string };
    if (j.msg === msg && j.time >= since) return j.time;
  }
  throw new Error(`no "${msg}" in ${n.agent!.logFile}`);
}

test('three nodes join through etcd and reach each other; a fourth is reachable from all within a second of its lease; a stopped node whose lease is revoked leaves every table within a second', async () => {
  const s = await etcdLab(3, 2);
  const subnets = s.nodes.map((n) => n.subnet);
  expect(new Set(subnets).size).toBe(3);
  for (const n of s.nodes) {
    const st = await status(n);
    expect(st.store.state).toBe('ok');
    expect(st.peers.map((p) => p.subnet).sort()).toEqual(subnets.filter((x) => x !== n.subnet).sort());
  }
  expect(await pingAll(s.pods)).toEqual([]);

  // A fourth node: as soon as its lease shows up in etcd, ping its overlay address (the subnet's
  // .0 on its tulle0) from a pod on each of the three, every 20 ms, and note the first reply.
  const e = await labEtcd();
  const watch = spawnInNs(e.ns, 'etcdctl', ['--endpoints', e.endpoint, 'watch', '--prefix', `${LAB_ETCD_PREFIX}/subnets/`]);
  const reached: Promise<number[]> = new Promise((resolve, reject) => {
    let buf = '';
    watch.stdout!.on('data', (b: Buffer) => {
      buf += b.toString();
      const m = /^\/coreos\.com\/network\/subnets\/(\d+\.\d+\.\d+\.\d+)-24$/m.exec(buf);
      if (!m || subnets.includes(`${m[1]}/24`)) return;
      watch.stdout!.removeAllListeners('data');
      const seenAt = Date.now();
      const from = s.nodes.map((n) => s.pods.find((p) => p.node === n.index)!);
      Promise.all(from.map((p) => firstReplyAt(p.ns, m[1]!, 10))).then((t) => resolve([seenAt, ...t]), reject);
    });
  });
  try {
    const { node: n4, pods: pods4 } = await labAddNode(s.name);
    const [seenAt, ...replyAt] = await reached;
    const leaseAt = Math.min(seenAt!, await logTime(n4, 'subnet lease acquired'));
    const delays = replyAt.map((t) => t - leaseAt);
    console.log(`node 4 (${n4.subnet}) reachable from nodes 1-3 ${delays.join(', ')} ms after its lease`);
    for (const d of delays) expect(d).toBeLessThan(PROPAGATION_LIMIT_MS);
    for (const n of s.nodes) expect((await status(n)).peers.map((p) => p.subnet)).toContain(n4.subnet);
    expect(await pingAll([...s.pods, ...pods4])).toEqual([]);

    // It stops (SIGTERM keeps the lease, for a restart); then its lease is revoked.
    await labStopAgent(s.name, n4.index);
    for (const n of s.nodes) expect((await status(n)).peers.map((p) => p.subnet)).toContain(n4.subnet);
    const id = await leaseIdOf(keyOf(n4.subnet));
    const revokedAt = Date.now();
    await etcdctl(e, ['lease', 'revoke', id]);
    const goneAt = await Promise.all(
      s.nodes.map((n) => until(`${n4.subnet} to leave node ${n.index}'s table`, async () => !(await status(n)).peers.some((p) => p.subnet === n4.subnet), 5_000)),
    );
    const leaveDelays = goneAt.map((t) => t - revokedAt);
    console.log(`node 4 left the tables of nodes 1-3 ${leaveDelays.join(', ')} ms after its lease was revoked`);
    for (const d of leaveDelays) expect(d).toBeLessThan(PROPAGATION_LIMIT_MS);
    expect(await pingAll(s.pods)).toEqual([]);
  } finally {
    watch.kill();
  }
}, 180_000);

test('a restarted agent keeps its subnet and VTEP MAC, its pods keep their addresses, and connectivity returns; also when its lease was revoked while it was down', async () => {
  const s = await etcdLab(3, 1);
  const [n1, n2, n3] = s.nodes as [LabNode, LabNode, LabNode];
  const e = await labEtcd();
  const before = await status(n2);
  const valueBefore = await etcdctl(e, ['get', keyOf(n2.subnet), '--print-value-only']);
  const podAddr = async (ns: string) => nsRun(ns, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0']);
  const pod2 = s.pods.find((p) => p.node === 2)!;
  const addrBefore = await podAddr(pod2.ns);

  await labStopAgent(s.name, 2);
  // The lease outlives the agent (flannel's behaviour): peers keep the route for the restart.
  expect(await etcdctl(e, ['get', keyOf(n2.subnet), '--print-value-only'])).toBe(valueBefore);
  const startedAt = Date.now();
  await labStartAgent(s.name, 2);
  const after = await status(n2);
  expect(after.node.subnet).toBe(before.node.subnet);
  expect(after.node.vtepMAC).toBe(before.node.vtepMAC);
  expect(after.store.lease?.createdByThisRun).toBe(false);
  expect(await etcdctl(e, ['get', keyOf(n2.subnet), '--print-value-only'])).toBe(valueBefore);
  expect(await podAddr(pod2.ns)).toBe(addrBefore);
  const back = await firstReplyAt(s.pods[0]!.ns, pod2.ip, 10);
  console.log(`pod ${pod2.ip} answered ${back - startedAt} ms after its agent was started again`);
  expect(await pingAll(s.pods)).toEqual([]);

  // Down, and its lease revoked meanwhile: it takes the same subnet again (kept in its dataDir).
  const before3 = await status(n3);
  await labStopAgent(s.name, 3);
  await etcdctl(e, ['lease', 'revoke', await leaseIdOf(keyOf(n3.subnet))]);
  await until('node 3 to leave node 1', async () => !(await status(n1)).peers.some((p) => p.subnet === n3.subnet), 5_000);
  await labStartAgent(s.name, 3);
  const after3 = await status(n3);
  expect([after3.node.subnet, after3.node.vtepMAC]).toEqual([before3.node.subnet, before3.node.vtepMAC]);
  expect(after3.store.lease?.createdByThisRun).toBe(true);
  expect(after3.store.events.map((x) => x.event).join('\n')).toMatch(/lease acquired: .* \(kept in .*subnet\)/);
  expect((await readFile(join('/run/tulle-lab', s.name, 'n3', 'data', 'subnet'), 'utf8')).trim()).toBe(n3.subnet);
  expect(await pingAll(s.pods)).toEqual([]);
}, 180_000);

test('leases are renewed before they expire (4 s TTL, renewed 2 s before expiry): same etcd lease, never gone, over three TTLs', async () => {
  const ttl = 4;
  const s = await etcdLab(2, 1, ttl);
  const e = await labEtcd();
  const ids = await Promise.all(s.nodes.map((n) => leaseIdOf(keyOf(n.subnet))));
  const deadline = Date.now() + 3 * ttl * 1000;
  let minLeft = Infinity;
  while (Date.now() < deadline) {
    for (const [i, n] of s.nodes.entries()) {
      const out = await etcdctl(e, ['lease', 'timetolive', ids[i]!]);
      const left = Number(/remaining\((-?\d+)s\)/.exec(out)?.[1] ?? -1);
      expect(left, out).toBeGreaterThan(0);
      minLeft = Math.min(minLeft, left);
      expect(await leaseIdOf(keyOf(n.subnet))).toBe(ids[i]);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  console.log(`lowest remaining TTL seen over ${3 * ttl} s: ${minLeft} s of ${ttl}`);
  for (const n of s.nodes) expect((await status(n)).store.state).toBe('ok');
  expect(await pingAll(s.pods)).toEqual([]);
}, 120_000);

test('etcd stopped for ten seconds: pod traffic between existing nodes goes on, status says so, and afterwards a new node joins', async () => {
  const s = await etcdLab(3, 1);
  const pairs = s.nodes.map((n, i) => [s.pods[i]!, s.pods[(i + 1) % s.pods.length]!] as const);
  // 50 pings a second per pair for the whole outage and a little before and after. A count, not
  // a deadline (-w): with a deadline, a reply still on its way when ping exits counts as lost.
  const seconds = OUTAGE_MS / 1000 + 4;
  const pingArgs = ['-n', '-q', '-i', '0.02', '-c', String(seconds * 50), '-W', '2'];
  const pings = Promise.all(pairs.map(([a, b]) => nsRun(a.ns, 'ping', [...pingArgs, b.ip], { timeoutMs: (seconds + 10) * 1000 }).catch((err: Error & { stdout?: string }) => err.stdout ?? err.message)));
  await new Promise((r) => setTimeout(r, 1_000));
  await labStopEtcd(s.name);
  const stoppedAt = Date.now();
  await Promise.all(s.nodes.map((n) => until(`node ${n.index} to report etcd unreachable`, async () => (await status(n)).store.state === 'unreachable', OUTAGE_MS)));
  const text = await run(process.execPath, [join('dist', 'src', 'cli', 'tulle.js'), 'status', '--socket', s.nodes[0]!.agent!.socket]);
  expect(text).toMatch(/store +etcd UNREACHABLE/);
  expect(text).toMatch(/forwarding continues/);
  await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + OUTAGE_MS - Date.now())));
  await labStartEtcd(s.name);
  console.log(`etcd was down ${Date.now() - stoppedAt} ms`);
  const results = await pings;
  for (const r of results) {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(r);
    expect(m, r).not.toBeNull();
    console.log(`ping during the outage: ${m![0]}`);
    expect(Number(m![2])).toBe(Number(m![1]));
  }
  await Promise.all(s.nodes.map((n) => until(`node ${n.index} to reconnect`, async () => (await status(n)).store.state === 'ok', 15_000, 50)));
  const { node: n4, pods: pods4 } = await labAddNode(s.name);
  for (const n of s.nodes) {
    await until(`node ${n.index} to learn node 4`, async () => (await status(n)).peers.some((p) => p.subnet === n4.subnet), PROPAGATION_LIMIT_MS);
    expect((await status(n)).store.events.map((x) => x.event).join('\n')).toMatch(/etcd reachable again/);
  }
  expect(await pingAll([...s.pods, ...pods4])).toEqual([]);
}, 180_000);

test('lease values are byte-compatible with flannel: tulle leases read as flannel reads them, and a lease written as flanneld writes it is taken as a peer', async () => {
  const s = await etcdLab(2, 1);
  const e = await labEtcd();
  const flannelValue = (ip: string, mac: string) => `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`;
  // flannel's subnetRegex on the key, Go's json.Unmarshal into LeaseAttrs / vxlanLeaseAttrs{VNI uint16, VtepMAC}.
  const keyRe = /(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;
  const listing = (await etcdctl(e, ['get', '--prefix', `${LAB_ETCD_PREFIX}/subnets/`])).trimEnd().split('\n');
  const leases = new Map<string, string>();
  for (let i = 0; i + 1 < listing.length; i += 2) leases.set(listing[i]!, listing[i + 1]!);
  expect(leases.size).toBe(2);
  for (const n of s.nodes) {
    const value = leases.get(keyOf(n.subnet));
    expect(value).toBe(flannelValue(n.underlayIp, n.vtepMAC));
    const m = keyRe.exec(keyOf(n.subnet))!;
    expect(`${m[1]}/${m[2]}`).toBe(n.subnet);
    const attrs = JSON.parse(value!) as { PublicIP: string; BackendType: string; BackendData: { VNI: number; VtepMAC: string } };
    expect(Object.keys(attrs)).toEqual(['PublicIP', 'PublicIPv6', 'BackendType', 'BackendData']);
    expect(Object.keys(attrs.BackendData)).toEqual(['VNI', 'VtepMAC']);
    expect(attrs.BackendData.VNI).toBeLessThanOrEqual(0xffff);
    expect(attrs.BackendData.VtepMAC).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  }

  // A flannel-style node: kernel VXLAN set up as flanneld's vxlan backend does, its peers read
  // from the tulle leases as flanneld reads them, and its own lease written as flanneld writes it
  // (an etcd lease with flannel's 24 h TTL, the value put with it).
  const ns = `${labPrefix(s.name)}n9`;
  const podNs = `${ns}-p1`;
  const self = { ip: '172.31.0.9', mac: '0e:f1:a9:00:00:09', subnet: '10.244.200.0/24', pod: '10.244.200.2' };
  await createNetns(ns);
  await addVeth({ ns, ifname: 'eth0', peerNs: s.switchNs, peerIfname: 'n9', mtu: 1500 });
  await addBridgePort(s.switchNs, 'br0', 'n9');
  await addAddress(ns, 'eth0', `${self.ip}/24`);
  await linkUp(ns, 'eth0');
  await sysctl(ns, 'net.ipv4.ip_forward', '1');
  await setTxChecksumOffload(ns, 'eth0', false);
  await setupKernelVxlan({ ns, vtepIP: self.ip, vtepMAC: self.mac, subnet: self.subnet, underlayDev: 'eth0', underlayMtu: 1500, peers: [] });
  for (const [key, value] of leases) {
    const m = keyRe.exec(key)!;
    const attrs = JSON.parse(value) as { PublicIP: string; BackendType: string; BackendData: { VtepMAC: string } };
    if (attrs.BackendType !== 'vxlan') continue;
    await addKernelVxlanPeer(ns, vxlanDeviceName(1), { vtepIP: attrs.PublicIP, vtepMAC: attrs.BackendData.VtepMAC, subnet: `${m[1]}/${m[2]}` });
  }
  await createNetns(podNs);
  await attachPod({ nodeNs: ns, podNetns: podNs, ifname: 'eth0', hostIfname: 'veth-p1', podIp: self.pod, gatewayIp: '10.244.200.1', mtu: 1450 });

  const grant = await etcdctl(e, ['lease', 'grant', '86400']);
  const id = /lease ([0-9a-f]+) granted/.exec(grant)?.[1];
  expect(id, grant).toBeDefined();
  const putAt = Date.now();
  await etcdctl(e, ['put', `--lease=${id}`, keyOf(self.subnet), flannelValue(self.ip, self.mac)]);
  // And one of another backend, which flannel's vxlan nodes (and tulle) ignore.
  await etcdctl(e, ['put', keyOf('10.244.201.0/24'), '{"PublicIP":"172.31.0.10","PublicIPv6":null,"BackendType":"host-gw"}']);
  const seen = await Promise.all(
    s.nodes.map((n) => until(`node ${n.index} to take the flannel lease`, async () => (await status(n)).peers.some((p) => p.subnet === self.subnet && p.vtepMAC === self.mac && p.vtepIP === self.ip), 5_000)),
  );
  console.log(`flannel-written lease in the tables of nodes 1-2 ${seen.map((t) => t - putAt).join(', ')} ms after the put`);
  for (const t of seen) expect(t - putAt).toBeLessThan(PROPAGATION_LIMIT_MS);
  for (const n of s.nodes) {
    const st = await status(n);
    expect(st.peers.map((p) => p.subnet)).not.toContain('10.244.201.0/24');
    expect(st.store.ignored).toContainEqual({ key: keyOf('10.244.201.0/24'), why: 'backend type "host-gw"' });
  }
  expect(await pingAll([...s.pods, { ns: podNs, ip: self.pod }])).toEqual([]);
}, 180_000);

test('a lease taken by another node is reported, not fought over, and re-acquired once free; a deleted lease is re-created at once', async () => {
  const s = await etcdLab(2, 1);
  const [n1, n2] = s.nodes as [LabNode, LabNode];
  const e = await labEtcd();
  const key = keyOf(n1.subnet);

  // Deleted (as by an operator): re-created for the same subnet within a second.
  const deletedAt = Date.now();
  await etcdctl(e, ['del', key]);
  const back = await until('node 1 to re-create its lease', async () => (await etcdctl(e, ['get', key, '--print-value-only'])).trim() !== '', 2_000, 20);
  console.log(`deleted lease re-created after ${back - deletedAt} ms`);
  expect(back - deletedAt).toBeLessThan(PROPAGATION_LIMIT_MS);
  expect((await status(n1)).node.subnet).toBe(n1.subnet);

  // Taken by another node: the agent does not overwrite it and keeps its pods; status says so.
  const thief = '{"PublicIP":"172.31.0.77","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:77:00:00:00:77"}}';
  await etcdctl(e, ['put', key, thief]);
  await until('node 1 to report the conflict', async () => (await status(n1)).store.state === 'conflict', 3_000);
  await new Promise((r) => setTimeout(r, 1_000));
  expect((await etcdctl(e, ['get', key, '--print-value-only'])).trim()).toBe(thief);
  const text = await run(process.execPath, [join('dist', 'src', 'cli', 'tulle.js'), 'status', '--socket', n1.agent!.socket]);
  expect(text).toMatch(/CONFLICT since .*: our subnet is leased to PublicIP 172\.31\.0\.77/);
  expect(await logTime(n1, 'our subnet lease now belongs to another node; keeping the local subnet and pods, not overwriting it; traffic from other nodes to our pods goes to that node until one of the two is removed')).toBeGreaterThan(0);
  expect((await status(n1)).ready).toBe(true);
  // Node 2 now routes that subnet to the other holder, as flannel nodes would.
  await until('node 2 to follow the new holder', async () => (await status(n2)).peers.some((p) => p.subnet === n1.subnet && p.vtepIP === '172.31.0.77'), 2_000);

  // The other node goes away: node 1 takes its subnet back and traffic flows again.
  await etcdctl(e, ['del', key]);
  await until('node 1 to take its subnet back', async () => (await status(n1)).store.state === 'ok', 3_000);
  await until('node 2 to route to node 1 again', async () => (await status(n2)).peers.some((p) => p.subnet === n1.subnet && p.vtepIP === n1.underlayIp), 2_000);
  expect(await pingAll(s.pods)).toEqual([]);
}, 120_000);

test('an agent that cannot start leaves etcd as it found it (its checks run before it leases)', async () => {
  const s = await etcdLab(1, 1);
  const [n1] = s.nodes as [LabNode];
  const e = await labEtcd();
  const before = await etcdctl(e, ['get', '--prefix', `${LAB_ETCD_PREFIX}/subnets/`]);
  // A second agent in node 1's namespace: the cluster route is already there, so it must stop.
  const dir = join('/run/tulle-lab', s.name, 'second');
  const cfgFile = join(dir, 'agent.json');
  await run('mkdir', ['-p', dir]);
  await run('tee', [cfgFile], {
    input: JSON.stringify({
      vtepIP: n1.underlayIp, device: 'tulle9', workers: 1, socket: join(dir, 'tulle.sock'), dataDir: join(dir, 'data'),
      subnetFile: join(dir, 'subnet.env'), store: { type: 'etcd', endpoints: [e.endpoint] },
    }),
  });
  const agent = spawnInNs(n1.ns, process.execPath, [join('dist', 'src', 'cli', 'tulle.js'), 'agent', '--config', cfgFile]);
  let out = '';
  agent.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  const code = await new Promise<number | null>((resolve) => agent.on('exit', resolve));
  expect(code, out).toBe(2); // a configuration conflict: exit code 2, as for any bad config
  expect(out).toMatch(/config field \\"network\\": a route for it already exists/);
  expect(await etcdctl(e, ['get', '--prefix', `${LAB_ETCD_PREFIX}/subnets/`])).toBe(before);
  expect((await status(n1)).store.state).toBe('ok');
}, 60_000);

test('an agent started while etcd is down waits and says so, joins when etcd comes, and a signal ends the wait', async () => {
  const s = await etcdLab(1, 1);
  await labStopEtcd(s.name);
  // Node 2 comes up while etcd is down.
  const adding = labAddNode(s.name);
  const sock2 = join('/run/tulle-lab', s.name, 'n2', 'tulle.sock');
  const waiting = async () => {
    try {
      const st = (await request(sock2, 'GET', '/v1/status')) as AgentStatus & { store: { etcd: { lastError?: string } } };
      return !st.ready && st.store.state === 'joining' && /UNAVAILABLE|ECONNREFUSED/.test(st.store.etcd.lastError ?? '');
    } catch {
      return false;
    }
  };
  await until('node 2 to report it is waiting for etcd', waiting, 15_000, 100);
  await labStartEtcd(s.name);
  const { node: n2, pods: pods2 } = await adding;
  expect((await status(n2)).store.state).toBe('ok');
  expect(await pingAll([...s.pods, ...pods2])).toEqual([]);

  // etcd down again; a third agent waiting to join ends promptly on SIGTERM, leaving nothing behind.
  await labStopEtcd(s.name);
  const dir = join('/run/tulle-lab', s.name, 'waiter');
  await run('mkdir', ['-p', dir]);
  const cfgFile = join(dir, 'agent.json');
  await run('tee', [cfgFile], {
    input: JSON.stringify({
      vtepIP: s.nodes[0]!.underlayIp, device: 'tulle9', workers: 1, socket: join(dir, 'tulle.sock'), dataDir: join(dir, 'data'),
      subnetFile: join(dir, 'subnet.env'), store: { type: 'etcd', endpoints: [(await labEtcd()).endpoint] },
    }),
  });
  const agent = spawnInNs(s.nodes[0]!.ns, process.execPath, [join('dist', 'src', 'cli', 'tulle.js'), 'agent', '--config', cfgFile]);
  let out = '';
  agent.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  agent.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => agent.on('exit', resolve));
  await until('the waiting agent to answer', async () => (await request(join(dir, 'tulle.sock'), 'GET', '/v1/status').then(() => true, () => false)), 10_000, 100)
    .catch((e: Error) => {
      throw new Error(`${e.message}; agent output:\n${out}`);
    });
  const signalledAt = Date.now();
  agent.kill('SIGTERM');
  expect(await exited).toBe(0);
  console.log(`agent waiting for etcd stopped ${Date.now() - signalledAt} ms after SIGTERM`);
  expect(Date.now() - signalledAt).toBeLessThan(3_000);
  await expect(run('ip', ['-n', s.nodes[0]!.ns, 'link', 'show', 'tulle9'])).rejects.toThrow(/does not exist/);
  await expect(request(join(dir, 'tulle.sock'), 'GET', '/v1/status')).rejects.toThrow();
}, 120_000);

/*
 * TLS and password auth (one namespace, no lab):
 *
 *   tl<lab>-n1: lo 127.0.0.1   etcd https://127.0.0.1:2379 (server cert for IP 127.0.0.1, client certs required,
 *               d0 172.31.0.1  auth on: user "tulle" may read and write /coreos.com/network/ only)
 *               (veth d0-d1)   tulle agent (caFile, certFile/keyFile, username + passwordFile), vtepIP on d0
 */
test('TLS with client certificates and password auth: the agent joins; a wrong password stops it with a clear error', async () => {
  const name = labs.next('e');
  const ns = `${labPrefix(name)}n1`;
  const dir = join('/run/tulle-lab', name);
  await run('mkdir', ['-p', dir]);
  await createNetns(ns);
  // The agent's underlay address, on a veth pair kept inside the namespace.
  await run('ip', ['-n', ns, 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1']);
  await addAddress(ns, 'd0', '172.31.0.1/24');
  await linkUp(ns, 'd1');
  await linkUp(ns, 'd0');
  const f = (x: string) => join(dir, x);
  const ssl = (args: string[]) => run('openssl', args);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await ssl(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=tulle test CA']);
  for (const [who, ext] of [['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth'], ['client', 'extendedKeyUsage=clientAuth']] as const) {
    await run('tee', [f(`${who}.ext`)], { input: `${ext}\n` });
    await ssl(['req', ...ec, '-keyout', f(`${who}.key`), '-out', f(`${who}.csr`), '-subj', `/CN=tulle-${who}`]);
    await ssl(['x509', '-req', '-in', f(`${who}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${who}.pem`), '-days', '1', '-extfile', f(`${who}.ext`)]);
  }
  const endpoint = 'https://127.0.0.1:2379';
  spawnInNs(ns, 'etcd', [
    '--name', 'tl', '--data-dir', f('etcd'), '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380', '--initial-cluster', 'tl=http://127.0.0.1:2380',
    '--cert-file', f('server.pem'), '--key-file', f('server.key'), '--client-cert-auth', '--trusted-ca-file', f('ca.pem'),
    '--logger', 'zap', '--log-outputs', 'stderr',
  ], { logFile: f('etcd.log'), detached: true });
  const ctl = (args: string[], user?: string) => nsRun(ns, 'etcdctl', [
    '--endpoints', endpoint, '--cacert', f('ca.pem'), '--cert', f('client.pem'), '--key', f('client.key'), ...(user ? ['--user', user] : []), ...args,
  ]);
  await until('etcd with TLS to answer', () => ctl(['endpoint', 'health']).then(() => true, () => false), 20_000, 200);
  await ctl(['user', 'add', 'root', '--new-user-password=rootpw']);
  await ctl(['role', 'add', 'tulle']);
  await ctl(['role', 'grant-permission', 'tulle', '--prefix=true', 'readwrite', `${LAB_ETCD_PREFIX}/`]);
  await ctl(['user', 'add', 'tulle', '--new-user-password=s3cret']);
  await ctl(['user', 'grant-role', 'tulle', 'tulle']);
  await ctl(['auth', 'enable']);
  await ctl(['put', `${LAB_ETCD_PREFIX}/config`, '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}'], 'root:rootpw');

  const startAgent = async (password: string, tag: string) => {
    await run('tee', [f(`password-${tag}`)], { input: `${password}\n` });
    const cfgFile = f(`agent-${tag}.json`);
    await run('tee', [cfgFile], {
      input: JSON.stringify({
        vtepIP: '172.31.0.1', workers: 1, socket: f(`tulle-${tag}.sock`), dataDir: f(`data-${tag}`), subnetFile: f(`subnet-${tag}.env`),
        store: {
          type: 'etcd', endpoints: [endpoint], caFile: f('ca.pem'), certFile: f('client.pem'), keyFile: f('client.key'),
          username: 'tulle', passwordFile: f(`password-${tag}`),
        },
      }),
    });
    const agent = spawnInNs(ns, process.execPath, [join('dist', 'src', 'cli', 'tulle.js'), 'agent', '--config', cfgFile]);
    let out = '';
    agent.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    agent.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => agent.on('exit', resolve));
    return { agent, exited, out: () => out, socket: f(`tulle-${tag}.sock`) };
  };

  const bad = await startAgent('wrong', 'bad');
  expect(await bad.exited, bad.out()).toBe(1);
  expect(bad.out()).toMatch(/etcd refused user \\"tulle\\"/);
  expect(await ctl(['get', '--prefix', `${LAB_ETCD_PREFIX}/subnets/`, '--keys-only'], 'root:rootpw')).toBe('');

  const good = await startAgent('s3cret', 'good');
  try {
    await until('the agent to join over TLS', async () => {
      const st = (await request(good.socket, 'GET', '/v1/status').catch(() => undefined)) as AgentStatus | undefined;
      return st?.ready === true;
    }, 20_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}; agent output:\n${good.out()}`);
    });
    const st = (await request(good.socket, 'GET', '/v1/status')) as AgentStatus;
    expect(st.store.state).toBe('ok');
    expect(await ctl(['get', keyOf(st.node.subnet), '--print-value-only'], 'root:rootpw')).toBe(
      `{"PublicIP":"172.31.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${st.node.vtepMAC}"}}\n`,
    );
  } finally {
    good.agent.kill('SIGTERM');
    await good.exited;
  }
}, 120_000);
