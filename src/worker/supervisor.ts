/**
 * Starts the forwarding workers and keeps them running.
 *
 * A worker that exits without being asked to is restarted: at once the
 * first time, then with exponential backoff (RESTART_BACKOFF_MIN_MS doubling
 * to RESTART_BACKOFF_MAX_MS) while it keeps dying within STABLE_AFTER_MS of
 * its start. Tables and counters live in SharedArrayBuffers owned here, so a
 * restarted worker picks up where the dead one left off.
 *
 * Plain worker_threads rather than a task pool: a forwarding loop never
 * returns, owns its fds for life and must be pinned to its queue (README,
 * design notes).
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import * as native from '../io/native.js';
import type { PeerTable } from '../dataplane/peers.js';
import { CONTROL_STOP, CONTROL_WORDS, type Features, type WorkerInit, type WorkerMessage } from './init.js';

export const RESTART_BACKOFF_MIN_MS = 100;
export const RESTART_BACKOFF_MAX_MS = 5000;
export const STABLE_AFTER_MS = 10_000;
export const STOP_TIMEOUT_MS = 3000;
export const START_TIMEOUT_MS = 10_000;

export type WorkerState = 'starting' | 'running' | 'restarting' | 'stopped';

export interface WorkerStatus {
  id: number;
  state: WorkerState;
  threadId: number;
  restarts: number;
  startedAt: string;
  sourcePorts: number[];
  /** The CPU the worker runs on alone, or null when the scheduler places it (or it is not running yet). */
  cpu: number | null;
  /** The CPU the agent config asks this worker to run on, or null when it asks for none. */
  wantedCpu: number | null;
  features?: Features;
  lastExit?: string;
}

interface Slot {
  id: number;
  worker?: Worker;
  state: WorkerState;
  restarts: number;
  rapidFailures: number;
  startedAt: number;
  sourcePorts: number[];
  cpu: number | null;
  features?: Features;
  lastExit?: string;
  timer?: NodeJS.Timeout;
}

export class Supervisor {
  private readonly slots: Slot[];
  private readonly control: Int32Array;
  private stopping = false;

  /**
   * `onFatal` is called, instead of a restart, when a worker ends because its TUN device is gone
   * (a restart could only create a new, unconfigured device).
   */
  constructor(
    private readonly script: string,
    private readonly inits: readonly WorkerInit[],
    private readonly table: PeerTable,
    private readonly log: Logger,
    private readonly onFatal: (reason: string) => void = () => undefined,
  ) {
    this.slots = inits.map((i) => ({ id: i.id, state: 'stopped', restarts: 0, rapidFailures: 0, startedAt: 0, sourcePorts: [], cpu: null }));
    this.control = new Int32Array(inits[0].controlSab);
  }

  /** Starts every worker; resolves when all report ready, rejects (after stopping them) on the first failure. */
  async start(): Promise<void> {
    try {
      await Promise.all(this.slots.map((s) => this.spawn(s)));
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  private spawn(slot: Slot): Promise<void> {
    const init = this.inits[slot.id];
    Atomics.store(this.control, slot.id * CONTROL_WORDS + CONTROL_STOP, 0);
    slot.state = 'starting';
    slot.startedAt = Date.now();
    const w = new Worker(this.script, { workerData: init, name: `tulle-worker-${slot.id}` });
    slot.worker = w;
    let lastError: Error | undefined;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      const timer = setTimeout(() => {
        if (!ready) reject(new Error(`worker ${slot.id} did not start within ${START_TIMEOUT_MS} ms`));
      }, START_TIMEOUT_MS);
      w.on('message', (m: WorkerMessage) => {
        if (m.type === 'ready') {
          ready = true;
          clearTimeout(timer);
          slot.state = 'running';
          slot.sourcePorts = m.sourcePorts;
          slot.features = m.features;
          slot.cpu = m.cpu;
          this.log.info({ worker: slot.id, threadId: w.threadId, sourcePorts: m.sourcePorts, features: m.features, cpu: m.cpu }, 'worker running');
          resolve();
        } else if (m.type === 'features') {
          slot.features = m.features;
        } else if (m.type === 'log') {
          this.log[m.level]({ worker: slot.id, ...m.detail }, m.msg);
        }
      });
      w.on('error', (err) => {
        lastError = err;
      });
      w.on('exit', (code) => {
        clearTimeout(timer);
        this.table.release(slot.id);
        slot.worker = undefined;
        slot.cpu = null;
        const why = lastError ? `${lastError.name}: ${lastError.message}` : `exit code ${code}`;
        if (!ready) {
          slot.state = 'stopped';
          reject(lastError ?? new Error(`worker ${slot.id} exited during start-up (${why})`));
          if (!this.stopping && slot.restarts > 0) this.scheduleRestart(slot, why);
          return;
        }
        if (this.stopping || slot.state === 'stopped') {
          slot.state = 'stopped';
          return;
        }
        if (lastError?.name === 'DeviceGoneError') {
          slot.state = 'stopped';
          slot.lastExit = why;
          this.log.fatal({ worker: slot.id, reason: why }, 'TUN device gone; not restarting');
          this.onFatal(why);
          return;
        }
        this.log.error({ worker: slot.id, reason: why, restarts: slot.restarts }, 'worker died; restarting');
        this.scheduleRestart(slot, why);
      });
    });
  }

  private scheduleRestart(slot: Slot, why: string): void {
    slot.lastExit = why;
    slot.state = 'restarting';
    const lived = Date.now() - slot.startedAt;
    slot.rapidFailures = lived > STABLE_AFTER_MS ? 0 : slot.rapidFailures + 1;
    const delay =
      slot.rapidFailures <= 1 ? 0 : Math.min(RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MIN_MS * 2 ** (slot.rapidFailures - 2));
    slot.restarts++;
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (this.stopping) return;
      this.spawn(slot).then(
        () => this.log.info({ worker: slot.id, restarts: slot.restarts }, 'worker restarted'),
        (e: Error) => this.log.error({ worker: slot.id, err: e.message }, 'worker restart failed'),
      );
    }, delay);
  }

  /** Wakes every worker out of poll (after a table change, or to stop). */
  wakeAll(): void {
    for (const i of this.inits) native.eventfdSignal(i.wakeFd);
  }

  /** Ends a worker as a crash would (for fault-injection tests and operators). */
  async kill(id: number): Promise<void> {
    const slot = this.slots[id];
    if (!slot?.worker) throw new RangeError(`no running worker ${id}`);
    const w = slot.worker;
    const done = w.terminate();
    native.eventfdSignal(this.inits[id].wakeFd);
    await done;
  }

  /** Asks every worker to stop, waits up to STOP_TIMEOUT_MS, then terminates stragglers. */
  async stop(): Promise<void> {
    this.stopping = true;
    const exits: Promise<unknown>[] = [];
    for (const s of this.slots) {
      if (s.timer) clearTimeout(s.timer);
      Atomics.store(this.control, s.id * CONTROL_WORDS + CONTROL_STOP, 1);
      if (s.worker) {
        const w = s.worker;
        exits.push(
          new Promise<void>((resolve) => {
            const t = setTimeout(() => void w.terminate().then(() => resolve()), STOP_TIMEOUT_MS);
            w.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
          }),
        );
      }
      s.state = 'stopped';
    }
    this.wakeAll();
    await Promise.all(exits);
  }

  status(): WorkerStatus[] {
    return this.slots.map((s) => ({
      id: s.id,
      state: s.state,
      threadId: s.worker?.threadId ?? -1,
      restarts: s.restarts,
      startedAt: new Date(s.startedAt).toISOString(),
      sourcePorts: s.sourcePorts,
      cpu: s.cpu,
      wantedCpu: this.inits[s.id].cpu >= 0 ? this.inits[s.id].cpu : null,
      ...(s.features ? { features: s.features } : {}),
      ...(s.lastExit ? { lastExit: s.lastExit } : {}),
    }));
  }
}
