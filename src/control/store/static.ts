/**
 * The static store: the network, subnet and peers written in the config. The peers can be
 * replaced while the agent runs (a reloaded config); the network and subnet cannot.
 */
import type { PeerEntry } from '../../dataplane/peers.js';
import type { AgentConfig, PeerConfig } from '../config.js';
import { StoreError, type Membership, type PeerStore, type Precheck, type PublishPeers, type SelfAttrs } from './store.js';

export class StaticStore implements PeerStore {
  readonly type = 'static' as const;

  private peers: readonly PeerConfig[];
  private publish?: PublishPeers;
  /** Publishes run one at a time, in the order they were asked for. */
  private queue: Promise<void> = Promise.resolve();

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
   * Publishes `peers` in place of the current set (after follow). Resolves once the workers read
   * the new table; rejects, keeping the set before, when the publish fails.
   */
  replacePeers(peers: readonly PeerConfig[]): Promise<void> {
    const publish = this.publish;
    if (!publish) return Promise.reject(new StoreError('ESTORECLOSED', 'the static store is not following yet'));
    const run = this.queue.then(async () => {
      await publish(this.entries(peers));
      this.peers = peers;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private entries(peers: readonly PeerConfig[]): PeerEntry[] {
    return peers.map((p) => ({ net: p.subnet.net, prefix: p.subnet.prefix, vtepIP: p.vtepIP, vtepMAC: p.vtepMAC }));
  }

  status(): Record<string, unknown> {
    return { type: this.type, state: 'ok', peers: this.peers.length };
  }

  async close(): Promise<void> {
    this.publish = undefined;
    await this.queue;
  }
}
