/**
 * The node agent: validates its config, builds the overlay device, starts
 * the forwarding workers, serves the local API, and on SIGTERM/SIGINT undoes
 * what it did. Start-up is a sequence of steps, each pushing its undo action;
 * a failure at any step runs the undo actions in reverse, so the namespace is
 * left as it was found.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { resolve as resolvePath } from 'node:path';
import pino, { type Logger } from 'pino';
import * as native from '../io/native.js';
import { SysError } from '../io/errors.js';
import { PeerTable, type PeerEntry } from '../dataplane/peers.js';
import { C, counterBytes, totals, workerCounters, snapshot, type CounterSnapshot } from '../dataplane/counters.js';
import { Supervisor } from '../worker/supervisor.js';
import { controlBytes, type WorkerInit } from '../worker/init.js';
import { distPath } from '../util/paths.js';
import { IPV4_MIN_HEADER_LEN, formatIpv4 } from '../wire/ipv4.js';
import { UDP_HEADER_LEN } from '../wire/udp.js';
import { formatMac } from '../wire/mac.js';
import { VXLAN_OVERHEAD_IPV4 } from '../wire/vxlan.js';
import { ApiServer, HttpError, TextResponse } from './api.js';
import { type AgentConfig, checkCpusAllowed, ConfigError, describe, loadConfig, overlayAddress, type NodeConfig, PEER_CAPACITY, restartOnlyChanges } from './config.js';
import { TunDevice } from './device.js';
import { CpuLatencyRequest, TrafficLatencyHold, underHypervisor } from './cpu-latency.js';
import { KernelDropReader, type KernelDrops } from './kernel-drops.js';
import { Endpoints } from './endpoints.js';
import { METRICS_CONTENT_TYPE, MetricsServer, renderMetrics } from './metrics.js';
import { interfaceWithAddress, routeExists, setIpv4Sysctl } from './ip.js';
import { subnetEnv, vtepMac, writeFileAtomic } from './state.js';
import { openStore, type PeerStore } from './store/index.js';
import type { PeerChange } from './store/store.js';

/** Peers the shared table can hold without being rebuilt. */
export const BATCH_SIZE = 64;
/** Send sockets per worker: the number of outer source ports its flows spread over. */
export const FLOW_SOCKETS_PER_WORKER = 8;
export const SOCKET_BUFFER_BYTES = 4 << 20;

type Undo = () => Promise<void> | void;

export class Agent {
  private readonly undo: { what: string; run: Undo }[] = [];
  private supervisor?: Supervisor;
  private cpuLatency?: CpuLatencyRequest | TrafficLatencyHold;
  private device?: TunDevice;
  private dropReader?: KernelDropReader;
  private readonly store: PeerStore;
  /** The config with the network, subnet, VNI and port the store settled. */
  private node?: NodeConfig;
  private endpoints?: Endpoints;
  private table?: PeerTable;
  /** The peer set last published to the workers. */
  private peers: readonly PeerEntry[] = [];
  private startFailed = false;
  private counterSab?: SharedArrayBuffer;
  private mac?: Uint8Array;
  private mtu = 0;
  private underlay = '';
  private underlayMtu = 0;
  private ready = false;
  private readonly startedAt = new Date();

  /** Reloads run one at a time. */
  private reloading: Promise<unknown> = Promise.resolve();

  constructor(
    readonly cfg: AgentConfig,
    readonly log: Logger,
    /** The file `cfg` came from, which a reload reads again; absent, reloads are refused. */
    readonly configFile?: string,
  ) {
    this.store = openStore(cfg, log);
  }

  async start(): Promise<void> {
    try {
      await this.startSteps();
    } catch (e) {
      this.startFailed = true;
      this.log.error({ err: errorInfo(e), undoSteps: this.undo.map((u) => u.what).reverse() }, 'start-up failed; undoing what was done');
      await this.rollback();
      throw e;
    }
    this.ready = true;
    this.log.info({ ...describe(this.node!), mtu: this.mtu, underlay: this.underlay, vtepMAC: formatMac(this.mac!) }, 'agent ready');
  }

  private async startSteps(): Promise<void> {
    const cfg = this.cfg;
    // The socket first: another agent answering on it explains any later conflict.
    const api = new ApiServer(cfg.socket);
    this.registerRoutes(api);
    // CNI requests are answered from the start; until the endpoints are loaded and the agent
    // is ready they get CNI code 11 (try again).
    const endpoints = new Endpoints({ dataDir: cfg.dataDir, socket: cfg.socket, log: this.log, node: () => ({ subnet: this.node?.subnet, mtu: this.mtu, ready: this.ready }) });
    endpoints.register(api);
    await api.listen();
    this.push('close API socket', () => api.close());
    if (cfg.metricsAddress) {
      const metrics = new MetricsServer(cfg.metricsAddress, () => this.metrics());
      await metrics.listen().catch((e: Error & { code?: string }) => {
        throw new ConfigError('metricsAddress', cfg.metricsAddress!.text, `cannot listen there: ${e.code ?? e.message}`);
      });
      this.push(`close metrics listener ${cfg.metricsAddress.text}`, () => metrics.close());
      this.log.info({ address: cfg.metricsAddress.text }, 'serving metrics over TCP at /metrics');
    }

    // Checks that change nothing.
    const vtep = formatIpv4(cfg.vtepIP);
    const under = await interfaceWithAddress(vtep);
    if (!under) {
      throw new ConfigError('vtepIP', vtep, 'is not an address of any interface in this network namespace');
    }
    this.underlay = under.name;
    this.underlayMtu = under.mtu;
    this.mtu = cfg.mtu ?? under.mtu - VXLAN_OVERHEAD_IPV4;
    if (cfg.mtu !== undefined && cfg.mtu + VXLAN_OVERHEAD_IPV4 > under.mtu) {
      this.log.warn({ mtu: cfg.mtu, underlay: under.name, underlayMtu: under.mtu }, 'configured MTU plus VXLAN overhead exceeds the underlay MTU; large packets will be dropped');
    }
    if (cfg.cpus) {
      checkCpusAllowed(cfg.cpus, native.threadCpus());
      if (cfg.cpus.length > cfg.workers) {
        this.log.warn({ cpus: cfg.cpus, workers: cfg.workers, unused: cfg.cpus.slice(cfg.workers) }, `cpus lists ${cfg.cpus.length} CPUs for ${cfg.workers} worker(s); the last ${cfg.cpus.length - cfg.workers} are not used`);
      }
    }
    if (native.ifNameToIndex(cfg.device) > 0) {
      throw new ConfigError('device', cfg.device, 'an interface of that name already exists (device busy)');
    }

    this.mac = (await vtepMac(cfg.dataDir, cfg.vtepMAC)).mac;

    // The store settles the network and this node's subnet (etcd: leases it, waiting for etcd if
    // need be); the checks that need the network and port run before anything is leased.
    this.push(`close ${this.store.type} store`, () => this.store.close({ abandon: this.startFailed }));
    const m = await this.store.join({ publicIP: cfg.vtepIP, vtepMAC: this.mac }, async ({ network, port }) => {
      if (await routeExists(network.text)) {
        throw new ConfigError('network', network.text, 'a route for it already exists in this namespace');
      }
      this.probePort(cfg.vtepIP, port);
    });
    const node: NodeConfig = { ...cfg, network: m.network, subnet: m.subnet, vni: m.vni, port: m.port };
    this.node = node;

    await endpoints.load();
    this.push('close endpoint store', () => endpoints.close());
    this.endpoints = endpoints;

    const oldForward = await setIpv4Sysctl('ip_forward', '1');
    this.log.info({ was: oldForward }, 'IPv4 forwarding enabled');
    // Given back only by a failed start: a stopped agent's pods still reach each other on the node.
    this.push('restore IPv4 forwarding', async () => {
      if (!this.startFailed || oldForward === '1') return;
      await setIpv4Sysctl('ip_forward', oldForward);
      this.log.info({ value: oldForward }, 'IPv4 forwarding restored');
    });

    const device = TunDevice.create({ name: cfg.device, mtu: this.mtu, address: overlayAddress(node), route: node.network.text }, cfg.offloads);
    this.push(`remove device ${cfg.device}`, () => device.destroy());
    this.device = device;
    if (device.offloadError) this.log.warn({ reason: device.offloadError }, 'TUN offloads unavailable; forwarding one packet per read');

    const table = new PeerTable(PEER_CAPACITY);
    this.table = table;
    // First publish before the workers start; later ones swap the table under running workers.
    await this.store.follow(async (peers) => {
      await table.publish(peers);
      this.peers = peers;
    });

    // Taken only now that the workers are about to start, not while the store (etcd) may be waited for.
    this.counterSab = new SharedArrayBuffer(counterBytes(cfg.workers));
    if (cfg.cpuLatencyUs !== undefined && underHypervisor(await readFile('/proc/cpuinfo', 'utf8').catch(() => ''))) {
      this.log.warn({ cpuLatencyUs: cfg.cpuLatencyUs },
        'cpuLatencyUs on a virtual machine: idle vCPUs that no longer halt may look busy to the host, which may take them away ' +
        '(100 ms stalls every few seconds were measured on one KVM guest); check the node for such stalls before relying on it');
    }
    if (cfg.cpuLatencyUs !== undefined && cfg.cpuLatencyIdleMs === undefined) {
      const req = await CpuLatencyRequest.hold(cfg.cpuLatencyUs);
      this.push('withdraw the CPU latency request', () => req.release());
      this.cpuLatency = req;
      this.log.info({ cpuLatencyUs: req.requestedUs, path: req.path }, 'holding a CPU wake-up latency request (whole machine) while running');
    } else if (cfg.cpuLatencyUs !== undefined && cfg.cpuLatencyIdleMs !== undefined) {
      // Views made once; a check only adds up one counter per worker.
      const blocks = Array.from({ length: cfg.workers }, (_, w) => workerCounters(this.counterSab!, w));
      const batches = (): number => blocks.reduce((sum, b) => sum + b[C.loop_batches], 0);
      let failing = false;
      const hold = new TrafficLatencyHold(cfg.cpuLatencyUs, cfg.cpuLatencyIdleMs, batches, (held, err) => {
        // One error line per run of failures, not one per check.
        if (err) {
          if (!failing) this.log.error({ err: err.message }, 'the CPU latency request could not be taken; tried again at each check');
          failing = true;
          return;
        }
        failing = false;
        this.log.debug({ cpuLatencyUs: cfg.cpuLatencyUs, held }, held ? 'traffic: CPU latency request taken' : 'idle: CPU latency request withdrawn');
      });
      await hold.start();
      this.push('withdraw the CPU latency request', () => hold.stop());
      this.cpuLatency = hold;
      this.log.info({ cpuLatencyUs: cfg.cpuLatencyUs, idleMs: cfg.cpuLatencyIdleMs, checkMs: hold.checkMs },
        'holding a CPU wake-up latency request (whole machine) while packets flow');
    }

    const controlSab = new SharedArrayBuffer(controlBytes(cfg.workers));
    const wakeFds: number[] = [];
    this.push('close wake fds', () => wakeFds.forEach((fd) => native.closeFd(fd)));
    const inits: WorkerInit[] = [];
    for (let id = 0; id < cfg.workers; id++) {
      wakeFds.push(native.openEventfd());
      inits.push({
        id, device: cfg.device, tunFlags: device.flags, tunUso: device.uso, vtepIP: cfg.vtepIP, port: node.port, vni: node.vni,
        vtepMAC: this.mac, overlayIP: overlayAddress(node), mtu: this.mtu, flowSockets: FLOW_SOCKETS_PER_WORKER,
        batchSize: BATCH_SIZE, socketBufferBytes: SOCKET_BUFFER_BYTES, peerSab: this.table.sab,
        peerCapacity: PEER_CAPACITY, counterSab: this.counterSab, controlSab, wakeFd: wakeFds[id],
        maxDatagram: this.underlayMtu - IPV4_MIN_HEADER_LEN - UDP_HEADER_LEN,
        cpu: cfg.cpus ? cfg.cpus[id % cfg.cpus.length] : -1,
      });
    }
    const sup = new Supervisor(distPath('src/worker/main.js'), inits, this.table, this.log, (reason) => this.fatal(reason));
    this.push('stop workers', () => sup.stop());
    await sup.start();
    this.supervisor = sup;

    await device.configure();
    await device.addRoute();

    const first = formatIpv4(node.subnet.net + 1);
    await writeFileAtomic(cfg.subnetFile, subnetEnv(node.network.text, first, node.subnet.prefix, this.mtu));
  }

  /** Refuses early when the VXLAN port is taken (e.g. by a kernel VXLAN device). */
  private probePort(ip: number, port: number): void {
    // Without SO_REUSEPORT: a socket with it would join another agent's group on the port.
    const r = native.udpOpen(ip, port, false, 0);
    if (r < 0) {
      throw new ConfigError('port', port, `cannot bind ${formatIpv4(ip)}:${port}: ${new SysError(-r, 'bind', 'VXLAN port').code}`);
    }
    native.closeFd(r);
  }

  private fatal!: (reason: string) => void;
  /** Resolves with a reason when the agent cannot go on (its TUN device vanished). */
  readonly failed = new Promise<string>((resolve) => {
    this.fatal = resolve;
  });

  private push(what: string, run: Undo): void {
    this.undo.push({ what, run });
  }

  private async rollback(): Promise<void> {
    this.ready = false;
    while (this.undo.length > 0) {
      const u = this.undo.pop()!;
      try {
        await u.run();
      } catch (e) {
        this.log.error({ step: u.what, err: errorInfo(e) }, 'undo step failed');
      }
    }
  }

  /**
   * Cuts short a start-up that is waiting on its store: the store closes, start() fails and
   * undoes what it did. A lease already taken is kept, as on any stop.
   */
  async abortStart(): Promise<void> {
    if (!this.ready) await this.store.close();
  }

  /** Stops workers, removes the route and device, closes the socket. */
  async stop(reason: string): Promise<void> {
    this.log.info({ reason }, 'stopping');
    await this.rollback();
    this.log.info('stopped; device and routes removed');
  }

  status(): Record<string, unknown> {
    const cfg = this.cfg;
    const node = this.node;
    const sab = this.counterSab;
    return {
      ready: this.ready,
      startedAt: this.startedAt.toISOString(),
      hostname: os.hostname(),
      node: {
        ...describe(node ?? cfg),
        vtepMAC: this.mac ? formatMac(this.mac) : undefined,
        mtu: this.mtu,
        underlay: this.underlay,
        overlayAddress: node ? formatIpv4(overlayAddress(node)) : undefined,
        mode: 'l3',
        metrics: cfg.metricsAddress ? `http://${cfg.metricsAddress.text}/metrics` : null,
        cpuLatency: this.cpuLatency
          ? { requestedUs: this.cpuLatency.requestedUs, held: this.cpuLatency.held, ...('idleMs' in this.cpuLatency ? { idleMs: this.cpuLatency.idleMs } : {}) }
          : null,
        offloads: { requested: cfg.offloads, tun: this.device ? (this.device.flags & native.IFF_VNET_HDR) !== 0 : false, uso: this.device?.uso ?? false, ...(this.device?.offloadError ? { error: this.device.offloadError } : {}) },
      },
      workers: this.supervisor?.status() ?? [],
      store: this.store.status(),
      peers: this.peers.map((p) => ({ subnet: `${formatIpv4(p.net)}/${p.prefix}`, vtepIP: formatIpv4(p.vtepIP), vtepMAC: formatMac(p.vtepMAC) })),
      counters: sab ? totals(sab, cfg.workers) : {},
      kernelDrops: this.kernelDrops() ?? null,
      endpoints: this.endpoints?.list() ?? [],
      workerCounters: this.workerSnapshots(),
    };
  }

  /**
   * Reads the config file again and takes over what a running agent can: the peers (static
   * store; the workers get the new table without stopping) and the log level. A file that does
   * not validate, or that changes anything else, is refused (and logged) and nothing changes.
   * Runs one reload at a time; refused (503) until the agent is ready.
   */
  reload(): Promise<ReloadResult> {
    const run = this.reloading.then(() => this.reloadNow()).catch((e: Error) => {
      this.log.error({ err: e.message }, 'config reload refused');
      throw e;
    });
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(): Promise<ReloadResult> {
    if (!this.configFile) throw new HttpError(501, 'the agent was not started from a config file; nothing to reload');
    if (!this.ready) throw new HttpError(503, 'the agent is not ready yet; reload once it is');
    let next: AgentConfig;
    try {
      next = loadConfig(this.configFile);
    } catch (e) {
      throw new HttpError(400, `config not reloaded, nothing changed: ${(e as Error).message}`);
    }
    const restart = restartOnlyChanges(this.cfg, next);
    if (restart.length > 0) {
      throw new HttpError(409, `config not reloaded, nothing changed: ${restart.join('; ')} (these take effect only when the agent restarts)`);
    }
    const before = this.peers.length;
    const change = await this.store.reload(next);
    const result: ReloadResult = { file: this.configFile, peers: { before, after: this.peers.length, ...change } };
    if (next.logLevel !== this.log.level) {
      result.logLevel = { before: this.log.level, after: next.logLevel };
      this.log.level = next.logLevel;
    }
    this.log.info(result, 'config reloaded');
    return result;
  }

  /** Each worker's counters; none before the workers are set up. */
  private workerSnapshots(): CounterSnapshot[] {
    const sab = this.counterSab;
    return sab ? Array.from({ length: this.cfg.workers }, (_, w) => snapshot(workerCounters(sab, w))) : [];
  }

  /** The Prometheus text of renderMetrics, from what status() reads. */
  metrics(): string {
    const node = this.node;
    const cpu = this.cpuLatency;
    return renderMetrics({
      ready: this.ready,
      startedAt: this.startedAt,
      node: {
        subnet: node?.subnet.text, vtep_ip: formatIpv4(this.cfg.vtepIP), vtep_mac: this.mac ? formatMac(this.mac) : undefined,
        device: this.cfg.device, vni: node?.vni, port: node?.port, mtu: this.mtu,
      },
      workers: this.supervisor?.status() ?? [],
      counters: this.workerSnapshots(),
      peers: this.peers.length,
      endpoints: this.endpoints?.list().length ?? 0,
      store: { type: this.store.type, state: String(this.store.status().state) },
      cpuLatencyHeld: cpu ? cpu.held : undefined,
      kernelDrops: this.kernelDrops(),
    });
  }

  /** What the kernel dropped before the workers saw it; undefined until the device and sockets exist. */
  private kernelDrops(): KernelDrops | undefined {
    if (!this.device || !this.node) return undefined;
    this.dropReader ??= new KernelDropReader(this.cfg.device, this.node.port);
    return this.dropReader.read();
  }

  private registerRoutes(api: ApiServer): void {
    api.on('GET', /^\/v1\/status$/, () => this.status());
    api.on('GET', /^\/metrics$/, () => new TextResponse(METRICS_CONTENT_TYPE, this.metrics()));
    api.on('POST', /^\/v1\/reload$/, () => this.reload());
    api.on('POST', /^\/v1\/workers\/(\d+)\/kill$/, async (_req, _body, [id]) => {
      if (!this.supervisor) throw new HttpError(503, 'workers are not running');
      const n = Number(id);
      if (n >= this.cfg.workers) throw new HttpError(404, `no worker ${id}; this agent runs ${this.cfg.workers}`);
      await this.supervisor.kill(n);
      return { killed: n };
    });
  }
}

/** What a reload changed. */
export interface ReloadResult {
  file: string;
  peers: { before: number; after: number } & PeerChange;
  logLevel?: { before: string; after: string };
}

export function errorInfo(e: unknown): Record<string, unknown> {
  const err = e as Error & { code?: string };
  return { message: err?.message ?? String(e), code: err?.code, name: err?.name };
}

/**
 * `tulle agent --config FILE`: runs until SIGTERM/SIGINT; SIGHUP reloads the config file (see
 * Agent.reload). Returns the exit code.
 */
export async function runAgent(cfg: AgentConfig, configFile?: string): Promise<number> {
  const log = pino({ level: cfg.logLevel, base: { pid: process.pid, node: cfg.subnet?.text ?? formatIpv4(cfg.vtepIP) } });
  const agent = new Agent(cfg, log, configFile === undefined ? undefined : resolvePath(configFile));
  // Without a handler SIGHUP would end the process with nothing undone.
  const onHup = () => {
    log.info({ file: configFile }, 'SIGHUP: reloading the config');
    agent.reload().catch(() => undefined); // logged by reload
  };
  process.on('SIGHUP', onHup);
  let stopping: Promise<void> | undefined;
  const stop = (sig: string) => {
    stopping ??= agent.stop(`signal ${sig}`);
    return stopping;
  };
  const signals = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  // A start-up waiting for its store (etcd unreachable) must still end on a signal.
  let starting = true;
  let signalledDuringStart: string | undefined;
  void signals.then((sig) => {
    if (!starting) return;
    signalledDuringStart = sig;
    log.warn({ signal: sig }, 'signal during start-up; stopping');
    void agent.abortStart();
  });
  try {
    await agent.start();
  } catch (e) {
    if (signalledDuringStart !== undefined) {
      log.info({ signal: signalledDuringStart }, 'stopped during start-up; everything done so far is undone');
      log.flush?.();
      return 0;
    }
    log.fatal({ err: errorInfo(e) }, 'agent failed to start');
    log.flush?.();
    process.stderr.write(`tulle agent: ${(e as Error).message}\n`);
    return e instanceof ConfigError ? 2 : 1;
  } finally {
    starting = false;
  }
  const ended = await Promise.race([signals.then((sig) => ({ sig })), agent.failed.then((reason) => ({ reason }))]);
  if ('reason' in ended) {
    await stop(`fatal: ${ended.reason}`);
    log.flush?.();
    process.stderr.write(`tulle agent: ${ended.reason}\n`);
    return 1;
  }
  await stop(ended.sig);
  log.flush?.();
  return 0;
}
