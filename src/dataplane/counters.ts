/**
 * Per-worker packet counters in one SharedArrayBuffer.
 *
 * Layout: worker w owns the Float64 slots [w * COUNTER_COUNT, (w + 1) * COUNTER_COUNT).
 * Exactly one thread (the worker running as w) writes its block with plain
 * stores; readers (the agent's status path) sum blocks without locks and may
 * see a value a batch old. Float64 keeps exact integers up to 2^53, which no
 * counter reaches. The buffer belongs to the agent, so counts survive a
 * worker restart.
 */

/** Counter names, in slot order. Drop reasons are named after what they count. */
export const COUNTER_NAMES = [
  // Underlay (UDP) side.
  'rx_datagrams',
  'rx_bytes',
  'rx_drop_short',
  'rx_drop_bad_flags',
  'rx_drop_reserved_bits',
  'rx_drop_bad_vni',
  'rx_drop_not_our_mac',
  'rx_drop_oversize',
  'rx_drop_bad_inner_ipv4',
  'rx_drop_truncated_inner',
  'rx_drop_bad_inner_checksum',
  'rx_drop_unknown_ethertype',
  'rx_drop_arp_not_ours',
  'rx_drop_bad_arp',
  'rx_drop_batch_full',
  'rx_arp_replies',
  'rx_from_unknown_vtep',
  'rx_gro_messages',
  'rx_inner_csum_partial',
  'rx_inner_csum_bad',
  'rx_inner_super_packets',
  'tx_datagrams',
  'tx_messages',
  'tx_bytes',
  'tx_errors',
  'tx_gso_fallbacks',
  // TUN side.
  'tun_rx_packets',
  'tun_rx_bytes',
  'tun_rx_drop_not_ipv4',
  'tun_rx_drop_no_peer',
  'tun_rx_drop_oversize',
  'tun_rx_drop_bad_offload',
  'tun_rx_drop_batch_full',
  'tun_rx_segments',
  'tun_tx_packets',
  'tun_tx_bytes',
  'tun_tx_errors',
  'tun_tx_super_packets',
  'tun_tx_coalesced_segments',
  // Loop.
  'loop_polls',
  'loop_batches',
] as const;

export type CounterName = (typeof COUNTER_NAMES)[number];
export const COUNTER_COUNT = COUNTER_NAMES.length;

/** Slot index of each counter, as constants the data path indexes with. */
export const C = Object.freeze(
  Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, i])) as Record<CounterName, number>,
);

export function counterBytes(workers: number): number {
  return workers * COUNTER_COUNT * Float64Array.BYTES_PER_ELEMENT;
}

/** The block of one worker, indexed by `C.name`. */
export function workerCounters(sab: SharedArrayBuffer, worker: number): Float64Array {
  return new Float64Array(sab, worker * COUNTER_COUNT * Float64Array.BYTES_PER_ELEMENT, COUNTER_COUNT);
}

export type CounterSnapshot = Record<CounterName, number>;

export function snapshot(block: Float64Array): CounterSnapshot {
  const out = {} as CounterSnapshot;
  for (let i = 0; i < COUNTER_COUNT; i++) out[COUNTER_NAMES[i]] = block[i];
  return out;
}

/** Sum of every worker's block. */
export function totals(sab: SharedArrayBuffer, workers: number): CounterSnapshot {
  const sum = new Float64Array(COUNTER_COUNT);
  for (let w = 0; w < workers; w++) {
    const b = workerCounters(sab, w);
    for (let i = 0; i < COUNTER_COUNT; i++) sum[i] += b[i];
  }
  return snapshot(sum);
}
