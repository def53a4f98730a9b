/*
 * A real container runtime on the overlay: Debian's podman 4.3 with its CNI backend, an offline
 * busybox image, tulle (+ portmap) as the network, on two lab nodes (root; needs the packages in
 * deploy/debian-test-packages.txt).
 *
 *                               tl<lab>-sw [br0]
 *                 n1 ┌─────────────────┴─────────────────┐ n2
 *   tl<lab>-n1  eth0 172.31.0.1, agent 10.244.1.0/24   tl<lab>-n2  eth0 172.31.0.2, agent 10.244.2.0/24
 *     podman (holder: mount ns + node netns)             podman (holder: mount ns + node netns)
 *     container a 10.244.1.x, httpd :80                  container b 10.244.2.x
 *     portmap 172.31.0.1:18080 -> a:80
 *
 * Each node's podman runs inside that node's network namespace and inside a private mount
 * namespace (the "holder", a `sleep` we start and later kill by PID) in which /run and /var are
 * fresh tmpfs: podman's netns bind mounts, runc state, the CNI result cache and image caches never
 * reach the machine's file systems, and nothing is created in the root network namespace. The
 * lab directory is bind-mounted into the holder so the plugin reaches the agent's socket; the
 * agent reaches the container's netns through the plugin's open descriptor (protocol.ts).
 * Container cgroups go under /sys/fs/cgroup/<controller>/tl<lab>, removed afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { installCni } from '../../src/cli/install-cni.js';
import { listNetns } from '../../src/lab/netns.js';
import { labDown, labPrefix, labStateDir, labUp, type LabState } from '../../src/lab/topology.js';
import { distScript, processAlive, run, terminateProcesses } from '../../src/util/exec.js';

const REQUIRED = ['/usr/bin/podman', '/usr/sbin/runc', '/usr/lib/cni/portmap', '/bin/busybox', '/usr/bin/nsenter', '/usr/bin/unshare'];
const BUSYBOX_APPLETS = ['sh', 'ip', 'ping', 'sleep', 'cat', 'echo', 'mkdir', 'httpd', 'ls', 'hostname'];
const IMAGE = 'localhost/tulle-busybox:1';
const HOST_PORT = 18080;
/** Paths podman writes by default; the holder's tmpfs must keep every one of them off the disk. */
const HOST_PATHS = ['/var/lib/cni', '/var/lib/containers', '/var/cache/containers', '/run/runc', '/run/libpod', '/run/containers'];

interface NodeRuntime {
  ns: string;
  dir: string;
  holder: ChildProcess;
}

let name: string | undefined;
let lab: LabState;
let root: string;
const runtimes: NodeRuntime[] = [];
let before: { netns: string[]; links: string; paths: boolean[] };

// The holder: a private mount namespace with fresh /run and /var, in the node's network namespace.
const HOLDER_SCRIPT = `set -e
labrun=$1; hostrun=$2
mount -n --bind "$labrun" "$hostrun"
mount -n -t tmpfs -o mode=755 tulle-podman /run
mkdir -p /run/netns /run/lock
mount -n -t tmpfs -o mode=755 tulle-podman /var
mkdir -p /var/lib /var/cache /var/tmp && chmod 1777 /var/tmp
ln -s /run /var/run && ln -s /run/lock /var/lock
echo ready
exec sleep infinity
`;

async function startHolder(ns: string, dir: string): Promise<ChildProcess> {
  const hostrun = join(dir, 'hostrun');
  mkdirSync(hostrun, { recursive: true });
  const child = spawn('nsenter', [`--net=/run/netns/${ns}`, 'unshare', '--mount', '--propagation', 'slave', 'sh', '-c', HOLDER_SCRIPT, 'holder', labStateDir(name!), hostrun], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', (b: Buffer) => (b.toString().includes('ready') ? resolve() : reject(new Error(`holder in ${ns}: ${b}`))));
    child.once('exit', (code) => reject(new Error(`holder in ${ns} exited with ${code}: ${err}`)));
  });
  return child;
}

function podman(r: NodeRuntime, args: readonly string[], timeoutMs = 60_000): Promise<string> {
  return run('nsenter', [
    '-t', String(r.holder.pid), '-m', '-n', 'env', `CONTAINERS_CONF=${join(r.dir, 'containers.conf')}`,
    'podman', '--root', join(r.dir, 'storage'), '--runroot', join(r.dir, 'run'), ...args,
  ], { timeoutMs });
}

function buildImageTar(dir: string): string {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const a of BUSYBOX_APPLETS) symlinkSync('busybox', join(rootfs, 'bin', a));
  return rootfs;
}

async function setUpNode(k: number, cniBin: string, tar: string): Promise<NodeRuntime> {
  const node = lab.nodes[k - 1]!;
  const dir = join(root, `n${k}`);
  for (const d of ['storage', 'run', 'tmp', 'net.d']) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(join(dir, 'containers.conf'), [
    '[containers]',
    'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]',
    '[engine]',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    'runtime = "runc"',
    `tmp_dir = "${join(dir, 'tmp')}"`,
    '[network]',
    'network_backend = "cni"',
    `cni_plugin_dirs = ["${cniBin}", "/usr/lib/cni"]`,
    `network_config_dir = "${join(dir, 'net.d')}"`,
    '',
  ].join('\n'));
  // The conflist tulle install-cni writes, with the agent's socket as seen inside the holder.
  const socket = join(dir, 'hostrun', `n${k}`, 'tulle.sock');
  writeFileSync(join(dir, 'net.d', '50-tulle.conflist'), JSON.stringify({
    cniVersion: '1.0.0', name: 'tulle',
    plugins: [{ type: 'tulle', socket }, { type: 'portmap', capabilities: { portMappings: true } }],
  }));
  const r: NodeRuntime = { ns: node.ns, dir, holder: await startHolder(node.ns, dir) };
  runtimes.push(r);
  await podman(r, ['import', tar, IMAGE]);
  return r;
}

async function ipOf(r: NodeRuntime, ctr: string): Promise<string> {
  return (await podman(r, ['inspect', ctr, '--format', '{{(index .NetworkSettings.Networks "tulle").IPAddress}}'])).trim();
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('e2e tests need root');
  const missing = REQUIRED.filter((p) => !existsSync(p));
  if (missing.length > 0) throw new Error(`missing ${missing.join(', ')}: apt-get install $(cat deploy/debian-test-packages.txt)`);
  before = {
    netns: (await listNetns()).filter((n) => !n.startsWith('tl')),
    links: await run('ip', ['-o', 'link', 'show']).then((s) => s.split('\n').map((l) => l.split(':')[1]?.trim()).join(' ')),
    paths: HOST_PATHS.map((p) => existsSync(p)),
  };
  name = `pm${randomBytes(3).toString('hex')}`;
  root = mkdtempSync(join(tmpdir(), 'tulle-podman-'));
  lab = await labUp({ name, nodes: 2, pods: 1, mode: 'tulle' });
}, 120_000);

afterAll(async () => {
  const errors: string[] = [];
  for (const r of runtimes) {
    await podman(r, ['rm', '--all', '--force', '--time', '0']).catch((e: Error) => errors.push(e.message));
    if (r.holder.pid !== undefined && processAlive(r.holder.pid)) await terminateProcesses([r.holder.pid]).catch((e: Error) => errors.push(e.message));
  }
  if (name !== undefined) {
    for (const ctl of readdirSync('/sys/fs/cgroup')) {
      const dir = join('/sys/fs/cgroup', ctl, labPrefix(name).slice(0, -1));
      if (existsSync(dir)) await run('find', [dir, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';']).catch((e: Error) => errors.push(e.message));
    }
    await labDown({ name }).catch((e: Error) => errors.push(e.message));
    expect(await listNetns(labPrefix(name))).toEqual([]);
  }
  if (root) rmSync(root, { recursive: true, force: true });
  expect(errors).toEqual([]);
  if (before) {
    // Nothing in the root network namespace or on the host's file systems was left behind.
    expect((await listNetns()).filter((n) => !n.startsWith('tl'))).toEqual(before.netns);
    expect(await run('ip', ['-o', 'link', 'show']).then((s) => s.split('\n').map((l) => l.split(':')[1]?.trim()).join(' '))).toBe(before.links);
    expect(HOST_PATHS.map((p) => existsSync(p))).toEqual(before.paths);
  }
}, 120_000);

test('podman 4.3 containers on two nodes get their nodes\' addresses, ping across the overlay, portmap publishes a port; DEL cleans up', async () => {
  const cniBin = join(root, 'cni-bin');
  await installCni({ binDir: cniBin });
  const tar = join(root, 'image.tar');
  await run('tar', ['-C', buildImageTar(root), '-cf', tar, '.']);
  const [r1, r2] = [await setUpNode(1, cniBin, tar), await setUpNode(2, cniBin, tar)];
  expect(await podman(r1, ['network', 'ls', '--format', '{{.Name}} {{.Driver}}'])).toContain('tulle tulle');

  const common = ['--detach', `--cgroup-parent=/${labPrefix(name!).slice(0, -1)}`, '--network', 'tulle', '--cap-add', 'NET_RAW'];
  await podman(r1, ['run', ...common, '--name', 'a', '--publish', `${HOST_PORT}:80`, IMAGE,
    'sh', '-c', 'mkdir -p /www && echo served-by-a > /www/index.html && exec httpd -f -p 80 -h /www']);
  await podman(r2, ['run', ...common, '--name', 'b', IMAGE, 'sleep', '600']);
  const [ipA, ipB] = [await ipOf(r1, 'a'), await ipOf(r2, 'b')];
  expect(ipA).toMatch(/^10\.244\.1\.\d+$/);
  expect(ipB).toMatch(/^10\.244\.2\.\d+$/);

  // The pod interface has the overlay's MTU and a default route via its node.
  const addr = await podman(r1, ['exec', 'a', 'ip', 'addr', 'show', 'eth0']);
  expect(addr).toContain('mtu 1450');
  expect(addr).toContain(`inet ${ipA}/24`);
  expect(await podman(r1, ['exec', 'a', 'ip', 'route'])).toMatch(/^default via 10\.244\.1\.1 dev eth0/m);

  // Across the overlay, both ways.
  await podman(r2, ['exec', 'b', 'ping', '-c', '3', '-W', '2', ipA]);
  await podman(r1, ['exec', 'a', 'ping', '-c', '3', '-W', '2', ipB]);

  // The agent knows the endpoint under podman's container ID.
  const id = (await podman(r1, ['inspect', 'a', '--format', '{{.Id}}'])).trim();
  const status = JSON.parse(await run(process.execPath, [distScript('src/cli/tulle.js'), 'status', '--socket', lab.nodes[0]!.agent!.socket, '--json']));
  expect(status.endpoints).toContainEqual(expect.objectContaining({ containerID: id, ip: `${ipA}/24`, ifname: 'eth0' }));

  // portmap chained after tulle: node 1's underlay address, port 18080, reaches a's httpd, here
  // from the lab's pod on node 2 (the answer comes back over the overlay). The static busybox's
  // wget cannot be used: it crashes in glibc's resolver.
  const fetchScript = `fetch('http://${lab.nodes[0]!.underlayIp}:${HOST_PORT}/', { signal: AbortSignal.timeout(5000) }).then((r) => r.text()).then((t) => process.stdout.write(t))`;
  expect(await run('ip', ['netns', 'exec', lab.pods[1]!.ns, process.execPath, '-e', fetchScript])).toBe('served-by-a\n');
  expect(await run('ip', ['netns', 'exec', lab.nodes[0]!.ns, 'iptables', '-t', 'nat', '-S'])).toContain(`--to-destination ${ipA}:80`);

  // Removing the containers runs CNI DEL: addresses, veths, DNAT rules are gone.
  await podman(r1, ['rm', '--force', '--time', '0', 'a']);
  await podman(r2, ['rm', '--force', '--time', '0', 'b']);
  for (const [k, ip] of [[1, ipA], [2, ipB]] as const) {
    const ipam = join(labStateDir(name!), `n${k}`, 'data', 'ipam', `10.244.${k}.0-24`);
    expect(readdirSync(ipam)).not.toContain(ip);
    expect(await run('ip', ['-n', lab.nodes[k - 1]!.ns, 'route', 'show', 'exact', `${ip}/32`])).toBe('');
  }
  expect(await run('ip', ['netns', 'exec', lab.nodes[0]!.ns, 'iptables', '-t', 'nat', '-S'])).not.toContain('--to-destination');
  const left = JSON.parse(await run(process.execPath, [distScript('src/cli/tulle.js'), 'status', '--socket', lab.nodes[0]!.agent!.socket, '--json']));
  expect(left.endpoints.map((e: { containerID: string }) => e.containerID)).toEqual([lab.pods[0]!.ns]);
}, 180_000);
