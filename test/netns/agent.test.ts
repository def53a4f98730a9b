/*
 * The agent's life in one namespace (root).
 *
 *   tl-ag-<hex>
 *   ├ eth0 ═ eth0p (veth pair, both here) 172.31.0.1/24 on eth0, mtu 1500: the underlay
 *   └ tulle0 (TUN, made by the agent) 10.244.1.0/32, route 10.244.0.0/16
 *
 * Start-up checks, rollback of a failure half-way, the status command, the
 * VTEP MAC kept across restarts, and SIGTERM removing what the agent made.
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { request } from '../../src/control/api.js';
import { CpuLatencyRequest } from '../../src/control/cpu-latency.js';
import * as native from '../../src/io/native.js';
import { createNetns, deleteNetns } from '../../src/lab/netns.js';
import { nsRun } from '../../src/util/exec.js';
import { distPath } from '../../src/util/paths.js';

let ns = '';
let dir = '';
/** Agents started by the current test; any still running are ended in afterEach. */
let started: Run[] = [];
const TULLE = () => distPath('src/cli/tulle.js');

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('netns tests need root (they create network namespaces and TUN devices)');
});

beforeEach(async () => {
  ns = `tl-ag-${randomBytes(3).toString('hex')}`;
  dir = await mkdtemp(join(tmpdir(), 'tulle-agent-'));
  await createNetns(ns);
  await nsRun(ns, 'ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
  await nsRun(ns, 'ip', ['link', 'set', 'eth0p', 'up']);
  await nsRun(ns, 'ip', ['addr', 'add', '172.31.0.1/24', 'dev', 'eth0']);
  await nsRun(ns, 'ip', ['link', 'set', 'eth0', 'up']);
});

afterEach(async () => {
  for (const r of started) {
    try {
      process.kill(r.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await r.exit;
  }
  started = [];
  await deleteNetns(ns);
  await rm(dir, { recursive: true, force: true });
});

function config(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    network: '10.244.0.0/16',
    subnet: '10.244.1.0/24',
    vtepIP: '172.31.0.1',
    workers: 2,
    socket: join(dir, 'tulle.sock'),
    dataDir: join(dir, 'data'),
    subnetFile: join(dir, 'subnet.env'),
    peers: [{ vtepIP: '172.31.0.2', vtepMAC: '02:aa:00:00:00:02', subnet: '10.244.2.0/24' }],
    ...extra,
  };
}

interface Run {
  pid: number;
  /** The config file the agent was started with. */
  file: string;
  exit: Promise<{ code: number | null; out: string; err: string }>;
}

async function startAgent(cfg: Record<string, unknown>): Promise<Run> {
  const file = join(dir, `agent-${randomBytes(2).toString('hex')}.json`);
  await writeFile(file, JSON.stringify(cfg));
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, TULLE(), 'agent', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, out, err })),
  );
  const run = { pid: child.pid!, file, exit };
  started.push(run);
  return run;
}

async function waitReady(socket: string, run: Run): Promise<Record<string, unknown>> {
  let exited = false;
  void run.exit.then(() => (exited = true));
  for (let i = 0; i < 100; i++) {
    if (exited) throw new Error(`agent exited during start-up: ${JSON.stringify(await run.exit)}`);
    try {
      const s = (await request(socket, 'GET', '/v1/status')) as Record<string, unknown>;
      if (s.ready) return s;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('agent not ready within 10 s');
}

/**
 * A new cpuset cgroup (v1 hierarchy, or v2 with the cpuset controller on for the root's
 * children) allowed only `cpu`. Returns its directory; the caller moves processes back and
 * removes it.
 */
async function tempCpuset(cpu: number): Promise<string> {
  const name = `tl-ag-cpuset-${randomBytes(3).toString('hex')}`;
  const v1 = '/sys/fs/cgroup/cpuset';
  if (existsSync(join(v1, 'cpuset.cpus'))) {
    const dir = join(v1, name);
    await mkdir(dir);
    await writeFile(join(dir, 'cpuset.cpus'), String(cpu));
    await writeFile(join(dir, 'cpuset.mems'), (await readFile(join(v1, 'cpuset.mems'), 'utf8')).trim());
    return dir;
  }
  const v2 = '/sys/fs/cgroup';
  const control = existsSync(join(v2, 'cgroup.subtree_control')) ? await readFile(join(v2, 'cgroup.subtree_control'), 'utf8') : '';
  if (!control.split(/\s+/).includes('cpuset')) {
    throw new Error('this test needs a cpuset cgroup: neither /sys/fs/cgroup/cpuset (v1) nor the cpuset controller in /sys/fs/cgroup/cgroup.subtree_control (v2)');
  }
  const dir = join(v2, name);
  await mkdir(dir);
  await writeFile(join(dir, 'cpuset.cpus'), String(cpu));
  return dir;
}

async function links(): Promise<string> {
  return nsRun(ns, 'ip', ['-br', 'link']);
}

async function routes(): Promise<string> {
  return nsRun(ns, 'ip', ['route']);
}

describe('agent start-up checks', () => {
  test('a bad config is refused before any change, naming the field and value', async () => {
    const r = await startAgent(config({ subnet: '10.245.1.0/24' }));
    const { code, err } = await r.exit;
    expect(code).toBe(2);
    expect(err).toContain('"subnet"');
    expect(err).toContain('10.245.1.0/24');
    expect(await links()).not.toContain('tulle0');
    expect(existsSync(join(dir, 'tulle.sock'))).toBe(false);
  });

  test('a device of the same name is refused as busy and left alone', async () => {
    await nsRun(ns, 'ip', ['link', 'add', 'tulle0', 'type', 'bridge']);
    const { code, err } = await (await startAgent(config())).exit;
    expect(code).toBe(2);
    expect(err).toMatch(/"device".*busy.*"tulle0"/);
    expect(await links()).toMatch(/^tulle0\s/m);
    expect(await routes()).not.toContain('10.244.0.0/16');
  });

  test('a VXLAN port held by a kernel VXLAN device is refused, naming the port', async () => {
    await nsRun(ns, 'ip', ['link', 'add', 'vx0', 'type', 'vxlan', 'id', '1', 'local', '172.31.0.1', 'dstport', '8472', 'dev', 'eth0']);
    await nsRun(ns, 'ip', ['link', 'set', 'vx0', 'up']);
    const { code, err } = await (await startAgent(config())).exit;
    expect(code).toBe(2);
    expect(err).toMatch(/"port".*8472.*EADDRINUSE/);
    expect(await links()).not.toContain('tulle0');
  });

  test('cpus naming a CPU the process may not use is refused before any change', async () => {
    expect(native.threadCpus(), 'this test needs CPU 1023 to be outside the allowed set').not.toContain(1023);
    const { code, err } = await (await startAgent(config({ cpus: [0, 1023] }))).exit;
    expect(code).toBe(2);
    expect(err).toMatch(/"cpus\[1\]".*1023/);
    expect(await links()).not.toContain('tulle0');
    expect(await routes()).not.toContain('10.244.0.0/16');
  });

  test('a vtepIP not on any interface is refused', async () => {
    const { code, err } = await (await startAgent(config({ vtepIP: '172.31.0.9' }))).exit;
    expect(code).toBe(2);
    expect(err).toMatch(/"vtepIP".*172\.31\.0\.9/);
  });

  test('a failure half-way through start-up undoes the device, route and socket', async () => {
    // The subnet file path is a directory: the last start-up step fails after
    // the device, route and workers are up.
    await mkdir(join(dir, 'subnet.env'), { recursive: true });
    await writeFile(join(dir, 'subnet.env', 'keep'), 'x');
    const { code, out, err } = await (await startAgent(config())).exit;
    expect(code).toBe(1);
    expect(err).toContain('subnet.env');
    expect(out).toContain('undoing what was done');
    expect(await links()).not.toContain('tulle0');
    expect(await routes()).not.toContain('10.244.0.0/16');
    expect(existsSync(join(dir, 'tulle.sock'))).toBe(false);
    // A new namespace starts without forwarding; the failed start gives it back.
    expect((await nsRun(ns, 'cat', ['/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('0');
  });

  test("a second agent on another network but the first one's vtepIP and port is refused, naming the port", async () => {
    const cfg = config();
    const run = await startAgent(cfg);
    await waitReady(cfg.socket as string, run);
    const other = config({
      network: '10.245.0.0/16', subnet: '10.245.1.0/24', device: 'tulle1', socket: join(dir, 'b.sock'),
      dataDir: join(dir, 'data-b'), subnetFile: join(dir, 'b.env'), peers: [],
    });
    const second = await (await startAgent(other)).exit;
    expect(second.code).toBe(2);
    expect(second.err).toMatch(/"port".*8472.*EADDRINUSE/);
    expect(await links()).not.toContain('tulle1');
    process.kill(run.pid, 'SIGTERM');
    expect((await run.exit).code).toBe(0);
  });
});

describe('agent lifecycle', () => {
  test('runs, reports status, keeps its VTEP MAC, and removes its device and route on SIGTERM', async () => {
    const cfg = config();
    const socket = cfg.socket as string;
    let run = await startAgent(cfg);
    const s = (await waitReady(socket, run)) as { node: Record<string, unknown>; workers: { state: string }[] };
    expect(s.node.mtu).toBe(1450);
    expect(s.node.overlayAddress).toBe('10.244.1.0');
    expect(s.workers.map((w) => w.state)).toEqual(['running', 'running']);
    const mac = s.node.vtepMAC as string;
    expect(mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);

    expect(await nsRun(ns, 'ip', ['-4', 'addr', 'show', 'tulle0'])).toContain('10.244.1.0/32');
    expect(await nsRun(ns, 'ip', ['link', 'show', 'tulle0'])).toContain('mtu 1450');
    // No IPv6 link-local address, so no IPv6 neighbour discovery reaches the workers.
    expect((await nsRun(ns, 'ip', ['-6', 'addr', 'show', 'dev', 'tulle0'])).trim()).toBe('');
    expect(await routes()).toMatch(/10\.244\.0\.0\/16 dev tulle0/);
    expect((await nsRun(ns, 'cat', ['/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('1');
    expect(await readFile(cfg.subnetFile as string, 'utf8')).toBe(
      'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n',
    );

    const human = await nsRun(ns, process.execPath, [TULLE(), 'status', '--socket', socket]);
    expect(human).toMatch(/workers\s+2/);
    expect(human).toContain('10.244.2.0/24');
    const json = JSON.parse(await nsRun(ns, process.execPath, [TULLE(), 'status', '--socket', socket, '--json'])) as { ready: boolean };
    expect(json.ready).toBe(true);

    process.kill(run.pid, 'SIGTERM');
    const first = await run.exit;
    expect(first.code).toBe(0);
    expect(first.out).toContain('device and routes removed');
    expect(await links()).not.toContain('tulle0');
    expect(await routes()).not.toContain('10.244.0.0/16');
    expect(existsSync(socket)).toBe(false);

    run = await startAgent(cfg);
    const again = (await waitReady(socket, run)) as { node: Record<string, unknown> };
    expect(again.node.vtepMAC).toBe(mac);
    process.kill(run.pid, 'SIGINT');
    expect((await run.exit).code).toBe(0);
  });

  test('cpuLatencyUs: the agent holds the CPU latency request while it runs and withdraws it on SIGTERM', async () => {
    const before = await CpuLatencyRequest.effective();
    // A value no one else requests, below the kernel's default of 2000 s.
    const us = 1234;
    expect(before, `another process on this machine holds a CPU latency request of ${before} µs; this test needs none at or below ${us} µs`).toBeGreaterThan(us);
    const cfg = config({ cpuLatencyUs: us });
    const run = await startAgent(cfg);
    const s = (await waitReady(cfg.socket as string, run)) as { node: Record<string, unknown> };
    expect(s.node.cpuLatency).toEqual({ requestedUs: us, held: true });
    expect(await CpuLatencyRequest.effective()).toBe(us);
    const human = await nsRun(ns, process.execPath, [TULLE(), 'status', '--socket', cfg.socket as string]);
    expect(human).toContain(`cpu      latency request ${us} µs held (whole machine)`);
    process.kill(run.pid, 'SIGTERM');
    expect((await run.exit).code).toBe(0);
    expect(await CpuLatencyRequest.effective()).toBe(before);
  });

  test('cpuLatencyIdleMs: the request is held while packets flow and withdrawn when they stop', async () => {
    const before = await CpuLatencyRequest.effective();
    const us = 1235;
    expect(before, `another process on this machine holds a CPU latency request of ${before} µs; this test needs none at or below ${us} µs`).toBeGreaterThan(us);
    const cfg = config({ cpuLatencyUs: us, cpuLatencyIdleMs: 300 });
    const run = await startAgent(cfg);
    const s = (await waitReady(cfg.socket as string, run)) as { node: Record<string, unknown> };
    expect(s.node.cpuLatency).toMatchObject({ requestedUs: us, idleMs: 300 });
    const until = async (want: number, what: string): Promise<void> => {
      const deadline = Date.now() + 5000;
      while ((await CpuLatencyRequest.effective()) !== want) {
        if (Date.now() > deadline) throw new Error(`the effective CPU latency request did not become ${want} µs ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until(before, 'with no traffic');
    const human = await nsRun(ns, process.execPath, [TULLE(), 'status', '--socket', cfg.socket as string]);
    // (A stray packet into the device may take it again meanwhile.)
    expect(human).toMatch(new RegExp(`cpu {6}latency request ${us} µs (not )?held \\(whole machine, while packets flow \\(withdrawn after 300 ms idle\\)\\)`));
    // Packets for the peer's subnet cross the workers (the peer's VTEP does not exist: they end in this namespace).
    const pinging = nsRun(ns, 'ping', ['-q', '-c', '40', '-i', '0.05', '-W', '1', '10.244.2.5']).catch(() => undefined);
    await until(us, 'while packets flow');
    await pinging;
    await until(before, 'after the packets stopped');
    process.kill(run.pid, 'SIGTERM');
    expect((await run.exit).code).toBe(0);
    expect(await CpuLatencyRequest.effective()).toBe(before);
  });

  test('cpus: each worker thread runs on its CPU alone, and status says which', async () => {
    const allowed = native.threadCpus();
    const cpus = [allowed[allowed.length - 1], allowed[0]];
    expect(allowed.length, `this test needs at least 2 CPUs available, it has ${allowed.join(',')}`).toBeGreaterThanOrEqual(2);
    const cfg = config({ workers: 3, cpus });
    const run = await startAgent(cfg);
    const s = (await waitReady(cfg.socket as string, run)) as { workers: { id: number; cpu: number | null }[] };
    expect(s.workers.map((w) => w.cpu)).toEqual([cpus[0], cpus[1], cpus[0]]);
    // The agent's threads by allowed CPU list: two pinned to cpus[0], one to cpus[1], the rest free.
    const lists = new Map<string, number>();
    for (const tid of readdirSync(`/proc/${run.pid}/task`)) {
      const list = /^Cpus_allowed_list:\s*(.*)$/m.exec(readFileSync(`/proc/${run.pid}/task/${tid}/status`, 'utf8'))?.[1].trim() ?? '?';
      lists.set(list, (lists.get(list) ?? 0) + 1);
    }
    expect(lists.get(String(cpus[0]))).toBe(2);
    expect(lists.get(String(cpus[1]))).toBe(1);
    const human = await nsRun(ns, process.execPath, [TULLE(), 'status', '--socket', cfg.socket as string]);
    expect(human).toContain(`cpu=${cpus[1]}`);
    process.kill(run.pid, 'SIGTERM');
    expect((await run.exit).code).toBe(0);
  });

  test('cpus: CPUs listed beyond the workers are named in a warning', async () => {
    const allowed = native.threadCpus();
    expect(allowed.length, `this test needs at least 2 CPUs available, it has ${allowed.join(',')}`).toBeGreaterThanOrEqual(2);
    const cfg = config({ workers: 1, cpus: [allowed[0], allowed[1]] });
    const run = await startAgent(cfg);
    const s = (await waitReady(cfg.socket as string, run)) as { workers: { cpu: number | null; wantedCpu: number | null }[] };
    expect(s.workers.map((w) => [w.cpu, w.wantedCpu])).toEqual([[allowed[0], allowed[0]]]);
    process.kill(run.pid, 'SIGTERM');
    const { code, out } = await run.exit;
    expect(code).toBe(0);
    const line = out.split('\n').find((l) => l.includes('are not used')) ?? '';
    expect(line).toContain('cpus lists 2 CPUs for 1 worker(s); the last 1 are not used');
    expect(JSON.parse(line)).toMatchObject({ level: 40, unused: [allowed[1]], workers: 1 });
  });

  test('cpus: a worker restarted where its CPU is no longer allowed warns and forwards unpinned', async () => {
    const allowed = native.threadCpus();
    expect(allowed.length, `this test needs at least 2 CPUs available, it has ${allowed.join(',')}`).toBeGreaterThanOrEqual(2);
    const [keep, lose] = [allowed[0], allowed[allowed.length - 1]];
    const cfg = config({ workers: 1, cpus: [lose] });
    const run = await startAgent(cfg);
    const socket = cfg.socket as string;
    expect(((await waitReady(socket, run)) as { workers: { cpu: number | null }[] }).workers[0].cpu).toBe(lose);
    // A cpuset holding only `keep` takes `lose` away from the agent, as a CPU going offline would.
    const cpuset = await tempCpuset(keep);
    try {
      await writeFile(join(cpuset, 'cgroup.procs'), String(run.pid));
      await request(socket, 'POST', '/v1/workers/0/kill');
      let st = (await request(socket, 'GET', '/v1/status')) as { workers: { state: string; restarts: number; cpu: number | null }[] };
      for (const t0 = Date.now(); !(st.workers[0].state === 'running' && st.workers[0].restarts === 1) && Date.now() - t0 < 5000; ) {
        await new Promise((r) => setTimeout(r, 50));
        st = (await request(socket, 'GET', '/v1/status')) as typeof st;
      }
      expect([st.workers[0].state, st.workers[0].restarts, st.workers[0].cpu]).toEqual(['running', 1, null]);
      const human = await nsRun(ns, process.execPath, [TULLE(), 'status', '--socket', socket]);
      expect(human).toContain(`cpu=unpinned (wanted ${lose})`);
    } finally {
      await writeFile(join(cpuset, '..', 'cgroup.procs'), String(run.pid)).catch(() => undefined);
      await rmdir(cpuset);
    }
    process.kill(run.pid, 'SIGTERM');
    const { code, out } = await run.exit;
    expect(code).toBe(0);
    expect(out).toMatch(new RegExp(`sched_setaffinity worker 0 to CPU ${lose}: EINVAL.*running unpinned`));
  });

  test('metricsAddress: metrics over TCP and on the API socket, counters live; a taken address stops a second agent before any change', async () => {
    const cfg = config({ metricsAddress: '172.31.0.1:9472' });
    const socket = cfg.socket as string;
    const run = await startAgent(cfg);
    await waitReady(socket, run);
    const url = 'http://172.31.0.1:9472/metrics';
    const curl = (args: string[]) => nsRun(ns, 'curl', ['-sS', '--max-time', '5', ...args]);
    const sum = (text: string, metric: string) =>
      [...text.matchAll(new RegExp(`^${metric}\\{worker="\\d+"\\} (\\d+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
    const before = await curl([url]);
    expect(before).toContain('tulle_ready 1\n');
    expect(before).toContain('tulle_peers 1\n');
    expect(before).toMatch(/^tulle_node_info\{subnet="10\.244\.1\.0\/24",vtep_ip="172\.31\.0\.1",vtep_mac="[0-9a-f:]{17}",device="tulle0",vni="1",port="8472",mtu="1450"\} 1$/m);
    expect(before).toContain('tulle_worker_up{worker="0"} 1\n');
    expect(before).toContain('tulle_worker_up{worker="1"} 1\n');
    expect(before).toContain('tulle_store_state{type="static",state="ok"} 1\n');
    // Packets for the peer's subnet leave through the workers: their counters move.
    await nsRun(ns, 'ping', ['-c', '3', '-i', '0.2', '-W', '0.2', '10.244.2.5']).catch(() => undefined);
    const after = await curl([url]);
    expect(sum(after, 'tulle_tun_rx_packets_total') - sum(before, 'tulle_tun_rx_packets_total')).toBeGreaterThanOrEqual(3);
    expect(sum(after, 'tulle_tx_datagrams_total') - sum(before, 'tulle_tx_datagrams_total')).toBeGreaterThanOrEqual(3);
    expect(await curl(['-D', '-', '-o', '/dev/null', url])).toMatch(/content-type: text\/plain; version=0\.0\.4/i);
    expect(await curl(['-o', '/dev/null', '-w', '%{http_code}', 'http://172.31.0.1:9472/'])).toBe('404');
    expect(await curl(['-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', url])).toBe('405');
    // The same text on the API socket.
    const onSocket = await curl(['--unix-socket', socket, 'http://tulle/metrics']);
    expect(onSocket).toContain('tulle_worker_up{worker="1"} 1\n');
    expect(sum(onSocket, 'tulle_tun_rx_packets_total')).toBeGreaterThanOrEqual(sum(after, 'tulle_tun_rx_packets_total'));
    expect(await nsRun(ns, process.execPath, [TULLE(), 'status', '--socket', socket])).toContain(`metrics  ${url}`);

    const other = config({
      network: '10.245.0.0/16', subnet: '10.245.1.0/24', device: 'tulle1', socket: join(dir, 'b.sock'), port: 8473,
      dataDir: join(dir, 'data-b'), subnetFile: join(dir, 'b.env'), peers: [], metricsAddress: '172.31.0.1:9472',
    });
    const second = await (await startAgent(other)).exit;
    expect(second.code).toBe(2);
    expect(second.err).toMatch(/"metricsAddress".*EADDRINUSE.*172\.31\.0\.1:9472/);
    expect(await links()).not.toContain('tulle1');
    expect(existsSync(join(dir, 'b.sock'))).toBe(false);
    process.kill(run.pid, 'SIGTERM');
    expect((await run.exit).code).toBe(0);
    await expect(curl([url])).rejects.toThrow(/refused|connect/i);
  });

  test('reload (tulle reload and SIGHUP): peers and logLevel are taken over live; a bad or restart-only change is refused, changing nothing', async () => {
    const cfg = config();
    const socket = cfg.socket as string;
    const run = await startAgent(cfg);
    await waitReady(socket, run);
    const tulle = (args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const c = spawn('ip', ['netns', 'exec', ns, process.execPath, TULLE(), ...args, '--socket', socket], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        c.stdout.on('data', (d: Buffer) => (out += d.toString()));
        c.stderr.on('data', (d: Buffer) => (err += d.toString()));
        c.on('exit', (code) => resolve({ code, out, err }));
      });
    const status = async () => (await request(socket, 'GET', '/v1/status')) as { peers: { subnet: string }[]; counters: Record<string, number> };
    const pingThird = () => nsRun(ns, 'ping', ['-c', '2', '-i', '0.2', '-W', '0.2', '10.244.3.5']).catch(() => undefined);
    const third = { vtepIP: '172.31.0.3', vtepMAC: '02:aa:00:00:00:03', subnet: '10.244.3.0/24' };

    // No peer for 10.244.3.0/24 yet: its packets are dropped as such.
    await pingThird();
    const before = (await status()).counters;
    expect(before.tun_rx_drop_no_peer).toBeGreaterThanOrEqual(2);

    await writeFile(run.file, JSON.stringify({ ...cfg, peers: [...(cfg.peers as unknown[]), third], logLevel: 'debug' }));
    const ok = await tulle(['reload']);
    expect(ok.err).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('peers 1 -> 2');
    expect(ok.out).toMatch(/\+ 10\.244\.3\.0\/24 via 172\.31\.0\.3 02:aa:00:00:00:03/);
    expect(ok.out).toContain('logLevel info -> debug');
    expect((await status()).peers.map((p) => p.subnet).sort()).toEqual(['10.244.2.0/24', '10.244.3.0/24']);
    await pingThird();
    const after = (await status()).counters;
    expect(after.tun_rx_drop_no_peer).toBe(before.tun_rx_drop_no_peer);
    expect(after.tx_datagrams - before.tx_datagrams).toBeGreaterThanOrEqual(2);

    // A field only a restart can change: refused, nothing taken over (not even the peers beside it).
    await writeFile(run.file, JSON.stringify({ ...cfg, peers: [], mtu: 1400 }));
    const refused = await tulle(['reload']);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('nothing changed');
    expect(refused.err).toContain('"mtu": (absent) -> 1400');
    expect((await status()).peers).toHaveLength(2);
    await writeFile(run.file, '{"network": ');
    const broken = await tulle(['reload']);
    expect(broken.code).toBe(1);
    expect(broken.err).toContain('is not valid JSON');
    expect((await status()).peers).toHaveLength(2);

    // SIGHUP does the same (and does not end the agent).
    await writeFile(run.file, JSON.stringify({ ...cfg, peers: [third] }));
    process.kill(run.pid, 'SIGHUP');
    let subnets: string[] = [];
    for (let i = 0; i < 50 && subnets.join() !== '10.244.3.0/24'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      subnets = (await status()).peers.map((p) => p.subnet);
    }
    expect(subnets).toEqual(['10.244.3.0/24']);
    process.kill(run.pid, 'SIGTERM');
    const end = await run.exit;
    expect(end.code).toBe(0);
    expect(end.out).toContain('config reloaded');
    expect(end.out).toContain('config reload refused');
    expect(end.out).toContain('"removed":["10.244.2.0/24 via 172.31.0.2 02:aa:00:00:00:02"]');
  });

  test('a second agent on the same socket is refused while the first runs', async () => {
    const cfg = config();
    const run = await startAgent(cfg);
    await waitReady(cfg.socket as string, run);
    const second = await (await startAgent({ ...cfg, device: 'tulle1' })).exit;
    expect(second.code).toBe(1);
    expect(second.err).toContain('already serving');
    expect(await links()).not.toContain('tulle1');
    process.kill(run.pid, 'SIGTERM');
    expect((await run.exit).code).toBe(0);
  });
});

describe('agent failure', () => {
  test('a TUN device deleted under a running agent stops the agent with an error', async () => {
    const cfg = config();
    const run = await startAgent(cfg);
    await waitReady(cfg.socket as string, run);
    const t0 = Date.now();
    await nsRun(ns, 'ip', ['link', 'del', 'tulle0']);
    const { code, err, out } = await run.exit;
    expect(code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(err).toContain('TUN device went away');
    expect(out).toContain('not restarting');
    expect(await routes()).not.toContain('10.244.0.0/16');
  });
});
