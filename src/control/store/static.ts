/**
 * The static store: the network, subnet and peers written in the config.
 * Nothing changes after start-up.
 */
import type { PeerEntry } from '../../dataplane/peers.js';
import type { AgentConfig } from '../config.js';
import { StoreError, type Membership, type PeerStore, type Precheck, type PublishPeers, type SelfAttrs } from './store.js';

export class StaticStore implements PeerStore {
  readonly type = 'static' as const;

  constructor(private readonly cfg: AgentConfig) {}

  async join(_self: SelfAttrs, precheck: Precheck): Promise<Membership> {
    const { network, subnet, vni, port } = this.cfg;
    if (!network || !subnet) throw new StoreError('ESTORECONFIG', 'the static store needs "network" and "subnet" in the config');
    await precheck({ network, vni, port });
    return { network, subnet, vni, port };
  }

  async follow(publish: PublishPeers): Promise<void> {
    await publish(this.entries());
  }

  private entries(): PeerEntry[] {
    return this.cfg.peers.map((p) => ({ net: p.subnet.net, prefix: p.subnet.prefix, vtepIP: p.vtepIP, vtepMAC: p.vtepMAC }));
  }

  status(): Record<string, unknown> {
    return { type: this.type, state: 'ok', peers: this.cfg.peers.length };
  }

  async close(): Promise<void> {}
}
