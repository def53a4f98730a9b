/**
 * What the per-packet functions need to know about this node, fixed for a
 * worker's life. Peer data comes from the shared PeerTable instead, so it can
 * change while workers run.
 */
import type { PeerTable } from './peers.js';

export interface DataplaneContext {
  readonly table: PeerTable;
  /** VXLAN network identifier sent and accepted. */
  readonly vni: number;
  /** Our VTEP MAC (6 bytes): inner source on egress, accepted destination on ingress. */
  readonly vtepMAC: Uint8Array;
  /** The overlay address we answer ARP for: `<subnet network address>` on the TUN device. */
  readonly overlayIP: number;
  /** Largest inner IPv4 packet accepted (the overlay MTU). */
  readonly mtu: number;
  /** UDP destination port of every VXLAN datagram we send. */
  readonly port: number;
  /** Number of send sockets (outer source ports) flows are spread over. */
  readonly flowSockets: number;
  /** This worker's counter block, indexed by `C.*`. */
  readonly counters: Float64Array;
}
