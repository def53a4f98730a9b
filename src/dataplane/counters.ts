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

/** What each counter counts, for `tulle status` readers and the metrics' HELP lines. */
export const COUNTER_HELP: Readonly<Record<CounterName, string>> = {
  rx_datagrams: 'VXLAN datagrams received on the underlay (a UDP_GRO message counts each datagram in it)',
  rx_bytes: 'Bytes of VXLAN datagrams received on the underlay (UDP payload)',
  rx_drop_short: 'Datagrams dropped: too short for a VXLAN and an inner Ethernet header',
  rx_drop_bad_flags: 'Datagrams dropped: VXLAN flags without the I (valid VNI) flag, or other flags set',
  rx_drop_reserved_bits: 'Datagrams dropped: reserved VXLAN header bits not zero',
  rx_drop_bad_vni: 'Datagrams dropped: a VNI other than this node\'s',
  rx_drop_not_our_mac: 'Datagrams dropped: inner destination MAC neither this node\'s VTEP MAC nor broadcast',
  rx_drop_oversize: 'Datagrams dropped: inner packet larger than the overlay MTU, or larger than a receive slot',
  rx_drop_bad_inner_ipv4: 'Datagrams dropped: inner IPv4 header invalid (version, length, header checksum)',
  rx_drop_truncated_inner: 'Datagrams dropped: inner IPv4 packet longer than the datagram carries',
  rx_drop_bad_inner_checksum: 'Datagrams dropped: a whole inner TCP super-packet with a wrong complete checksum',
  rx_drop_unknown_ethertype: 'Datagrams dropped: inner EtherType neither IPv4 nor ARP',
  rx_drop_arp_not_ours: 'ARP packets dropped: not a request for this node\'s overlay address (or no room left for the reply)',
  rx_drop_bad_arp: 'ARP packets dropped: malformed, or not IPv4 over Ethernet',
  rx_drop_batch_full: 'Datagrams dropped: a UDP_GRO message holding more datagrams than a batch takes',
  rx_arp_replies: 'ARP replies sent for this node\'s overlay address',
  rx_from_unknown_vtep: 'Datagrams from an underlay address that is no peer\'s VTEP (delivered, only counted)',
  rx_gro_messages: 'UDP_GRO messages received (each holds one or more datagrams)',
  rx_inner_csum_partial: 'Inner packets that arrived with an unfinished checksum (the pseudo-header sum): marked partial for the kernel to finish, or finished here without offloads',
  rx_inner_csum_bad: 'Inner TCP/UDP packets whose complete checksum was wrong (not joined; delivered as they are unless whole super-packets)',
  rx_inner_super_packets: 'Whole inner TCP super-packets received in one datagram (from a kernel VXLAN sender)',
  tx_datagrams: 'VXLAN datagrams sent on the underlay (a UDP_SEGMENT message counts each datagram)',
  tx_messages: 'Send messages handed to the kernel (one per datagram, or one per UDP_SEGMENT run)',
  tx_bytes: 'Bytes of VXLAN datagrams sent on the underlay (UDP payload)',
  tx_errors: 'Send messages the kernel refused (their datagrams are lost)',
  tx_gso_fallbacks: 'Times UDP_SEGMENT was refused with EIO and the worker went on sending single datagrams',
  tun_rx_packets: 'Packets read from the TUN device (a super-packet counts once)',
  tun_rx_bytes: 'Bytes read from the TUN device',
  tun_rx_drop_not_ipv4: 'TUN packets dropped: not IPv4',
  tun_rx_drop_no_peer: 'TUN packets dropped: no peer\'s subnet holds the destination',
  tun_rx_drop_oversize: 'TUN packets dropped: larger than the underlay can carry in one datagram, or cut by the read',
  tun_rx_drop_bad_offload: 'TUN packets dropped: a virtio-net header that does not fit the packet',
  tun_rx_drop_batch_full: 'TUN packets dropped: a super-packet needing more segments than a send batch holds',
  tun_rx_segments: 'Segments cut from TUN super-packets',
  tun_tx_packets: 'Packets written to the TUN device (a super-packet counts once)',
  tun_tx_bytes: 'Bytes written to the TUN device',
  tun_tx_errors: 'TUN writes the kernel refused (the packets are lost)',
  tun_tx_super_packets: 'Super-packets written to the TUN device (joined segments or datagrams, or whole ones received)',
  tun_tx_coalesced_segments: 'Received segments or datagrams joined into super-packets',
  loop_polls: 'Waits of the forwarding loop (poll calls)',
  loop_batches: 'Batches the forwarding loop handled',
};
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
