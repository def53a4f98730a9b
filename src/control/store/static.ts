/**
 * The static store: the network, subnet and peers written in the config. The peers can be
 * replaced while the agent runs (a reloaded config); the network and subnet cannot.
 */
import type { PeerEntry } from '../../dataplane/peers.js';
import type { AgentConfig, PeerConfig } from '../config.js';
import { formatIpv4 } from '../../wire/ipv4.js';
import { formatMac } from '../../wire/mac.js';
import { StoreError, type Membership, type PeerChange, type PeerStore, type Precheck, type PublishPeers, type SelfAttrs } from './store.js';

export class StaticStore implements PeerStore {
  readonly type = 'static' as const;

  private peers: readonly PeerConfig[];
  private publish?: PublishPeers;
  /** A reload's publish under way, which close waits for. */
  private publishing: Promise<unknown> = Promise.resolve();

  constructor(private readonly cfg: AgentConfig) {
    this.peers = cfg.peers;
  }

  async join(_self: SelfAttrs, precheck: Precheck): Promise<Membership> {
    const { network, subnet, vni, port } = this.cfg;
    if (!network || !subnet) throw new StoreError('ESTORECONFIG', 'the static store needs "network" and "subnet" in the config');
    await precheck({ network, vni, port });
    return { network, subnet, vni, port };
  }

  async follow(publish: PublishPeers): Promise<void> {
    this.publish = publish;
    await publish(this.entries(this.peers));
  }

  /**
   * Publishes the reloaded config's peers in place of the current ones when they differ.
   * Resolves once the workers read the new table; rejects, keeping the peers before, when the
   * publish fails.
   */
  async reload(next: AgentConfig): Promise<PeerChange> {
    const publish = this.publish;
    if (!publish) throw new StoreError('ESTORECLOSED', 'the static store is not following');
    const before = new Set(this.peers.map(peerText));
    const after = new Set(next.peers.map(peerText));
    const change = { added: [...after].filter((p) => !before.has(p)), removed: [...before].filter((p) => !after.has(p)) };
    if (change.added.length === 0 && change.removed.length === 0) return change;
    const run = publish(this.entries(next.peers));
    this.publishing = run.catch(() => undefined);
    await run;
    this.peers = next.peers;
    return change;
  }

  private entries(peers: readonly PeerConfig[]): PeerEntry[] {
    return peers.map((p) => ({ net: p.subnet.net, prefix: p.subnet.prefix, vtepIP: p.vtepIP, vtepMAC: p.vtepMAC }));
  }

  status(): Record<string, unknown> {
    return { type: this.type, state: 'ok', peers: this.peers.length };
  }

  async close(): Promise<void> {
    this.publish = undefined;
    await this.publishing;
  }
}

function peerText(p: PeerConfig): string {
  return `${p.subnet.text} via ${formatIpv4(p.vtepIP)} ${formatMac(p.vtepMAC)}`;
}
