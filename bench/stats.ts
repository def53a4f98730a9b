/**
 * Statistics for the macro benchmark: medians across trials and ratios to the kernel VXLAN
 * baseline. Missing figures (a trial that failed) are `null` and are skipped, never counted as 0.
 */
export { percentile } from '../src/lab/measure.js';

/** Median of the finite values (mean of the middle two for an even count); NaN when there are none. */
export function median(values: readonly (number | null | undefined)[]): number {
  const v = finite(values).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

export interface Summary {
  median: number;
  min: number;
  max: number;
  /** Trials that produced the figure. */
  n: number;
}

/** Median, range and count of the finite values among the trials. */
export function summarize(values: readonly (number | null | undefined)[]): Summary {
  const v = finite(values);
  return { median: median(v), min: v.length ? Math.min(...v) : NaN, max: v.length ? Math.max(...v) : NaN, n: v.length };
}

/**
 * `value / baseline`, or null when either is missing or not finite, or the baseline is 0.
 * Ratios are direction-neutral: for "lower is better" figures (RTT, CPU per GB) below 1 is better.
 */
export function ratio(value: number | null | undefined, baseline: number | null | undefined): number | null {
  if (typeof value !== 'number' || typeof baseline !== 'number') return null;
  if (!Number.isFinite(value) || !Number.isFinite(baseline) || baseline === 0) return null;
  return value / baseline;
}

function finite(values: readonly (number | null | undefined)[]): number[] {
  return values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
}
