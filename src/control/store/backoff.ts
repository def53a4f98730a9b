/**
 * Exponential backoff with jitter for the store's retries, and a sleep that
 * a closing store can cut short.
 */

export class Backoff {
  private attempt = 0;

  constructor(
    readonly initialMs: number,
    readonly maxMs: number,
    /** Each delay is spread by ±jitter (0..1) of itself. */
    readonly jitter = 0.2,
  ) {}

  /** The delay before the next retry; grows until maxMs. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
    this.attempt++;
    return Math.round(base * (1 + this.jitter * (2 * Math.random() - 1)));
  }

  reset(): void {
    this.attempt = 0;
  }

  get failures(): number {
    return this.attempt;
  }
}

/** Sleeps `ms`, or less when `wake()` is called; a new sleep replaces the pending one. */
export class Sleeper {
  private pending?: { timer: NodeJS.Timeout; resolve: () => void };

  sleep(ms: number): Promise<void> {
    this.wake();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        resolve();
      }, ms);
      this.pending = { timer, resolve };
    });
  }

  wake(): void {
    const p = this.pending;
    this.pending = undefined;
    if (p) {
      clearTimeout(p.timer);
      p.resolve();
    }
  }
}
