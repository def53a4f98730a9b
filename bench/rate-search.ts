/**
 * The highest packet rate a path carries with little loss, found by offering fixed rates: the
 * throughput of RFC 2544 (section 26.1), with a loss bound instead of zero loss, since on a small
 * shared machine even kernel VXLAN drops a fraction of a percent at its top rate.
 *
 * Why not only a flood: with an unlimited offered rate the sending process takes all the CPU it
 * can, and where sender, forwarders and receiver share two cores the figure says more about who
 * got the CPU than about the path. Through tulle, a 64 B flood sends more than the path carries
 * (the TUN device drops the rest at no cost to the sender) and the receiving process, starved,
 * drops at its socket what the workers carried: its received rate falls as the offered rate rises.
 */

/** Loss allowed at the rate the macro benchmark reports, percent. */
export const LOSS_BOUND_PCT = 1;

export interface Probe {
  offeredPps: number;
  sentPps: number;
  receivedPps: number;
  lostPercent: number;
  /** Of the sent datagrams, the percentage the receiving socket dropped (null: not known). */
  socketLostPercent?: number | null;
}

export interface SearchResult {
  /** Received rate of the best probe within the bound (0 when none was). */
  receivedPps: number;
  /** Its offered rate and loss; null when no probe stayed within the bound. */
  offeredPps: number | null;
  lostPercent: number | null;
  probes: Probe[];
}

export interface SearchOptions {
  /** Loss allowed in a probe, percent. */
  lossBoundPercent: number;
  /** First offered rate (e.g. what a flood delivered). */
  startPps: number;
  /** Upper end (e.g. what the sender managed in a flood): never offered beyond. */
  maxPps: number;
  /** Probes after the first: each halves the interval. */
  steps: number;
}

/**
 * Bisects between the best rate within the bound and the lowest rate beyond it. `probe` offers
 * a rate and reports what happened. A probe whose sender fell short of the offered rate by over
 * 2 % (the sender's own limit) bounds the interval from above like a lossy one.
 */
export async function searchRate(probe: (offeredPps: number) => Promise<Omit<Probe, 'offeredPps'>>, o: SearchOptions): Promise<SearchResult> {
  if (!Number.isFinite(o.startPps) || !Number.isFinite(o.maxPps) || o.maxPps <= 0) {
    throw new RangeError(`rate search needs finite rates (start ${o.startPps}, max ${o.maxPps} pps)`);
  }
  const probes: Probe[] = [];
  let good: Probe | null = null;
  let lo = 0;
  let hi = Math.max(1, Math.round(o.maxPps));
  let rate = Math.min(hi, Math.max(1, Math.round(o.startPps)));
  for (let i = 0; i <= o.steps; i++) {
    const p: Probe = { offeredPps: rate, ...(await probe(rate)) };
    probes.push(p);
    const ok = p.lostPercent <= o.lossBoundPercent && p.sentPps >= 0.98 * rate;
    if (ok) {
      if (good === null || p.receivedPps > good.receivedPps) good = p;
      lo = rate;
    } else {
      hi = rate;
    }
    const next = Math.round((lo + hi) / 2);
    if (next === rate || next <= lo || next >= hi) break;
    rate = next;
  }
  return { receivedPps: good?.receivedPps ?? 0, offeredPps: good?.offeredPps ?? null, lostPercent: good?.lostPercent ?? null, probes };
}
