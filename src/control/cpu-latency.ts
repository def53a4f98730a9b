/**
 * A CPU wake-up latency request through the kernel's PM QoS interface: while /dev/cpu_dma_latency
 * is held open with a value written to it, no CPU enters an idle state whose exit latency is
 * larger (0: idle CPUs poll instead of halting). Closing the file, or the process ending for any
 * reason, withdraws the request; nothing stays changed on the machine.
 *
 * Why tulle offers it: every packet crosses the agent's worker threads, and a worker asleep on an
 * idle CPU must first be woken. On virtual machines that halt idle vCPUs at once (here:
 * haltpoll with guest_halt_poll_ns=0), each such wake-up costs tens of microseconds, several
 * times per round trip. The kernel's own VXLAN path wakes nobody. Users who care about latency
 * more than about idle power can have the agent hold the request; tuned's latency profiles and
 * DPDK deployments do the same.
 */
import { open, type FileHandle } from 'node:fs/promises';

export const CPU_DMA_LATENCY = '/dev/cpu_dma_latency';

export class CpuLatencyRequest {
  private constructor(
    private fh: FileHandle | null,
    readonly requestedUs: number,
    readonly path: string,
  ) {}

  /** Opens `path` and requests `us` microseconds. Throws an Error naming the path and the reason. */
  static async hold(us: number, path = CPU_DMA_LATENCY): Promise<CpuLatencyRequest> {
    if (!Number.isInteger(us) || us < 0 || us > 0x7fffffff) throw new RangeError(`CPU latency must be 0..${0x7fffffff} µs, got ${us}`);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r+');
    } catch (e) {
      throw new Error(`cannot hold a CPU latency request of ${us} µs: open ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const value = Buffer.alloc(4);
    value.writeInt32LE(us);
    try {
      await fh.write(value, 0, 4, null);
    } catch (e) {
      await fh.close();
      throw new Error(`cannot hold a CPU latency request of ${us} µs: write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return new CpuLatencyRequest(fh, us, path);
  }

  /** The machine's effective request (the smallest held by anyone), in microseconds. */
  static async effective(path = CPU_DMA_LATENCY): Promise<number> {
    const fh = await open(path, 'r');
    try {
      const b = Buffer.alloc(4);
      const { bytesRead } = await fh.read(b, 0, 4, null);
      if (bytesRead !== 4) throw new Error(`${path}: read ${bytesRead} bytes, expected 4`);
      return b.readInt32LE(0);
    } finally {
      await fh.close();
    }
  }

  get held(): boolean {
    return this.fh !== null;
  }

  /** Withdraws the request. Idempotent. */
  async release(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }
}

/**
 * The request held only while the data path is busy: taken when a check finds that packets
 * moved since the last one, withdrawn once `idleMs` pass without any. Idle CPUs then poll only
 * while traffic flows (a 0 µs request keeps every idle CPU polling, which the machine's CPU
 * accounting still shows as idle). The first packets after a quiet spell meet halted CPUs until
 * the next check, at most `checkMs` later.
 */
export class TrafficLatencyHold {
  readonly checkMs: number;
  private req: CpuLatencyRequest | undefined;
  private timer: NodeJS.Timeout | undefined;
  private last = -1;
  private lastActive = 0;
  /** The check in progress: stop() waits for it. */
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    readonly requestedUs: number,
    readonly idleMs: number,
    /** A count that grows while the data path works (the workers' batches). */
    private readonly activity: () => number,
    private readonly onChange: (held: boolean, err?: Error) => void,
    private readonly path = CPU_DMA_LATENCY,
  ) {
    this.checkMs = Math.max(10, Math.min(250, Math.floor(idleMs / 4)));
  }

  /** Checks once (throwing when the request cannot be taken), then every `checkMs`. */
  async start(): Promise<void> {
    await this.check();
    this.timer = setInterval(() => {
      this.check().catch((e: Error) => this.onChange(false, e));
    }, this.checkMs);
    this.timer.unref();
  }

  get held(): boolean {
    return this.req?.held ?? false;
  }

  /** One check; the first one after start counts as activity (the request is held for idleMs). */
  check(now = performance.now()): Promise<void> {
    if (this.running || this.stopped) return this.running ?? Promise.resolve();
    const run = this.checkOnce(now).finally(() => {
      this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async checkOnce(now: number): Promise<void> {
    const n = this.activity();
    if (n !== this.last) {
      this.last = n;
      this.lastActive = now;
      if (this.req) return;
      const req = await CpuLatencyRequest.hold(this.requestedUs, this.path);
      if (this.stopped) {
        await req.release();
        return;
      }
      this.req = req;
      this.onChange(true);
    } else if (this.req && now - this.lastActive >= this.idleMs) {
      const req = this.req;
      this.req = undefined;
      await req.release();
      this.onChange(false);
    }
  }

  /** Withdraws the request for good, after any check in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
    const req = this.req;
    this.req = undefined;
    await req?.release();
  }
}

/**
 * Whether /proc/cpuinfo says the kernel runs under a hypervisor (the x86 `hypervisor` CPU flag;
 * other architectures are not recognised). There an idle vCPU that polls instead of halting may
 * look busy to the host, which may then take it away for a while: on one KVM guest, 100 ms stalls
 * every few seconds while a 0 µs request was held.
 */
export function underHypervisor(cpuinfo: string): boolean {
  return /^flags\s*:.*(?:^|\s)hypervisor(?:\s|$)/m.test(cpuinfo);
}
