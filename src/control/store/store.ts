/**
 * A store tells the agent which network it is part of, which subnet is its
 * own, and who its peers are, and keeps telling it as peers come and go.
 *
 * Contract, in call order:
 * - `join(self, precheck)` once: settles the network and this node's subnet
 *   (the etcd store leases it and keeps the lease renewed from then on). It
 *   may wait (retrying) for the store to become reachable; it rejects only on
 *   a problem retrying cannot fix, such as a config that contradicts the
 *   store. `precheck` runs once the network, VNI and port are known and
 *   before anything is written to the store; whatever it throws rejects join.
 * - `follow(publish)` once, after join: resolves after the first complete
 *   peer set has been published; from then on `publish` is called with the
 *   complete set (never a delta) whenever it changes, one call at a time.
 *   A rejected publish is retried with the latest set.
 * - `reload(next)` after follow, one call at a time: takes over the peers of a reloaded config
 *   (the agent has checked that nothing else changed) and says which were added and removed.
 * - `status()` at any time: JSON for `tulle status`.
 * - `close()`: stops renewing and following; `publish` is not called after
 *   it resolves. With `abandon`, a subnet lease this process created is
 *   given back (used when start-up fails half-way); otherwise the lease is
 *   left to be picked up again by the next start of this node.
 */
import type { PeerEntry } from '../../dataplane/peers.js';
import type { AgentConfig, Cidr } from '../config.js';
import type { StoreType } from './config.js';

export interface SelfAttrs {
  /** Underlay address peers send to (flannel's PublicIP). */
  readonly publicIP: number;
  readonly vtepMAC: Uint8Array;
}

export interface Membership {
  readonly network: Cidr;
  readonly subnet: Cidr;
  readonly vni: number;
  readonly port: number;
}

export type PublishPeers = (peers: readonly PeerEntry[]) => Promise<void>;

/** The agent's checks that need the network and port, run before a subnet is leased. */
export type Precheck = (net: Omit<Membership, 'subnet'>) => Promise<void>;

/** Peers a reload added and removed, each as `subnet via vtepIP vtepMAC`. */
export interface PeerChange {
  readonly added: string[];
  readonly removed: string[];
}

export interface PeerStore {
  readonly type: StoreType;
  join(self: SelfAttrs, precheck: Precheck): Promise<Membership>;
  follow(publish: PublishPeers): Promise<void>;
  reload(next: AgentConfig): Promise<PeerChange>;
  status(): Record<string, unknown>;
  close(opts?: { abandon?: boolean }): Promise<void>;
}

/** Errors a store gives up on (retrying would not help); `code` is stable. */
export class StoreError extends Error {
  constructor(
    readonly code: 'ESTORECONFIG' | 'ESUBNETTAKEN' | 'ESTORECLOSED',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreError';
  }
}
