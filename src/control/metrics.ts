/**
 * The agent's metrics in the Prometheus text exposition format (version 0.0.4), served as
 * GET /metrics on the API socket and, with `metricsAddress`, on a TCP listener of their own.
 *
 *   tulle_ready, tulle_start_time_seconds, tulle_node_info{subnet,vtep_ip,...}, tulle_peers,
 *   tulle_endpoints, tulle_store_state{type,state}, tulle_cpu_latency_request_held
 *   tulle_worker_up{worker}, tulle_worker_restarts_total{worker}, tulle_worker_offload{worker,feature}
 *   tulle_<counter>_total{worker}   one family per data path counter (counters.ts), per worker
 *
 * Rendered from what `tulle status` reads, on each request; nothing is kept between scrapes.
 */
import http from 'node:http';
import type { KernelDrops } from './kernel-drops.js';
import { COUNTER_HELP, COUNTER_NAMES, type CounterSnapshot } from '../dataplane/counters.js';
import { formatIpv4 } from '../wire/ipv4.js';
import type { Features } from '../worker/init.js';
import type { WorkerStatus } from '../worker/supervisor.js';
import type { ListenAddress } from './config.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface MetricsInput {
  readonly ready: boolean;
  readonly startedAt: Date;
  /** Labels of tulle_node_info; undefined ones are left out (e.g. the subnet while joining). */
  readonly node: Readonly<Record<string, string | number | undefined>>;
  readonly workers: readonly WorkerStatus[];
  /** Counters of each worker, by worker id; empty until the workers are set up. */
  readonly counters: readonly CounterSnapshot[];
  readonly peers: number;
  readonly endpoints: number;
  readonly store: { readonly type: string; readonly state: string };
  /** Whether a CPU latency request is held; undefined when the config asks for none. */
  readonly cpuLatencyHeld: boolean | undefined;
  /** What the kernel dropped before the workers saw it (kernel-drops.ts); undefined before the device exists. */
  readonly kernelDrops?: KernelDrops;
}

/** Offload features as labelled in tulle_worker_offload, and what `tulle status` calls them. */
const FEATURES: readonly (readonly [keyof Features, string])[] = [['vnet', 'tso'], ['gso', 'udp_gso'], ['gro', 'udp_gro'], ['uso', 'uso']];

type Labels = Readonly<Record<string, string | number | undefined>>;

class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'gauge' | 'counter', help: string): this {
    this.lines.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, value: number, labels: Labels = {}): this {
    const ls = Object.entries(labels)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
    this.lines.push(`${name}${ls.length > 0 ? `{${ls.join(',')}}` : ''} ${formatValue(value)}`);
    return this;
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export function renderMetrics(m: MetricsInput): string {
  const out = new Exposition();
  out.family('tulle_ready', 'gauge', 'Whether the agent has finished starting and forwards (1) or not (0)').sample('tulle_ready', m.ready ? 1 : 0);
  out.family('tulle_start_time_seconds', 'gauge', 'When the agent started, in seconds since the Unix epoch')
    .sample('tulle_start_time_seconds', m.startedAt.getTime() / 1000);
  out.family('tulle_node_info', 'gauge', 'This node: its subnet, VTEP, device, VNI, port and MTU as labels (value 1)').sample('tulle_node_info', 1, m.node);
  out.family('tulle_peers', 'gauge', 'Peers in the peer table').sample('tulle_peers', m.peers);
  out.family('tulle_endpoints', 'gauge', 'Pod interfaces attached through the CNI plugin').sample('tulle_endpoints', m.endpoints);
  out.family('tulle_store_state', 'gauge', 'The store\'s current state as a label (value 1); etcd: joining, ok, unreachable, conflict or closed')
    .sample('tulle_store_state', 1, { type: m.store.type, state: m.store.state });
  if (m.cpuLatencyHeld !== undefined) {
    out.family('tulle_cpu_latency_request_held', 'gauge', 'Whether the configured CPU wake-up latency request is held (1) or withdrawn (0)')
      .sample('tulle_cpu_latency_request_held', m.cpuLatencyHeld ? 1 : 0);
  }
  const kd = m.kernelDrops;
  if (kd?.tunTxDropped != null) {
    out.family('tulle_kernel_tun_tx_dropped_total', 'counter',
      'Packets the kernel dropped at the TUN device: a worker\'s queue was full (not read in time) or had no worker (a restart); the device\'s tx drops')
      .sample('tulle_kernel_tun_tx_dropped_total', kd.tunTxDropped);
  }
  if (kd?.rxSocketDrops != null) {
    out.family('tulle_kernel_udp_rx_drops_total', 'counter',
      'Receive buffers the kernel dropped at the agent\'s VXLAN sockets, full or failing their checksum (their drops in /proc/net/udp; a UDP_GRO buffer holds up to 64 datagrams)')
      .sample('tulle_kernel_udp_rx_drops_total', kd.rxSocketDrops);
  }
  out.family('tulle_worker_up', 'gauge', 'Whether the forwarding worker runs (1) or is starting, restarting or stopped (0)');
  for (const w of m.workers) out.sample('tulle_worker_up', w.state === 'running' ? 1 : 0, { worker: w.id });
  out.family('tulle_worker_restarts_total', 'counter', 'Times the supervisor restarted the forwarding worker');
  for (const w of m.workers) out.sample('tulle_worker_restarts_total', w.restarts, { worker: w.id });
  out.family('tulle_worker_offload', 'gauge', 'Offloads the worker uses: tso (virtio-net header, TUN TSO), udp_gso (UDP_SEGMENT), udp_gro (UDP_GRO), uso (TUN UDP segmentation)');
  for (const w of m.workers) {
    const f = w.features;
    if (f) for (const [key, feature] of FEATURES) out.sample('tulle_worker_offload', f[key] ? 1 : 0, { worker: w.id, feature });
  }
  for (const name of COUNTER_NAMES) {
    const metric = `tulle_${name}_total`;
    out.family(metric, 'counter', COUNTER_HELP[name]);
    m.counters.forEach((c, worker) => out.sample(metric, c[name], { worker }));
  }
  return out.text();
}

/**
 * A TCP listener that answers GET (and HEAD) /metrics and nothing else: 404 for another path,
 * 405 for another method. Listens in the agent's network namespace.
 */
export class MetricsServer {
  private server?: http.Server;

  constructor(
    readonly address: ListenAddress,
    private readonly render: () => string,
  ) {}

  /** Rejects with the listen error (its `code`: EADDRINUSE, EADDRNOTAVAIL, EACCES, ...). */
  async listen(): Promise<void> {
    const server = http.createServer((req, res) => this.answer(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: formatIpv4(this.address.ip), port: this.address.port, exclusive: true }, () => resolve());
    });
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    let status = 200;
    let body: string;
    const headers: Record<string, string> = { 'content-type': METRICS_CONTENT_TYPE };
    if (path !== '/metrics') {
      status = 404;
      body = 'not found: metrics are at /metrics\n';
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      status = 405;
      headers.allow = 'GET, HEAD';
      body = `method ${req.method ?? ''} not allowed: GET /metrics\n`;
    } else {
      try {
        body = this.render();
      } catch (e) {
        status = 500;
        body = `metrics failed: ${(e as Error).message}\n`;
      }
    }
    headers['content-length'] = String(Buffer.byteLength(body));
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
    // A request body, if any, is not read: drain it so the connection can be reused.
    req.resume();
  }
}
