/** The store named by the config's `store.type`. */
import type { Logger } from 'pino';
import type { AgentConfig } from '../config.js';
import { EtcdStore } from './etcd.js';
import { StaticStore } from './static.js';
import type { PeerStore } from './store.js';

export type { Membership, PeerStore, Precheck, PublishPeers, SelfAttrs } from './store.js';
export { StoreError } from './store.js';

export function openStore(cfg: AgentConfig, log: Logger): PeerStore {
  return cfg.store.type === 'etcd' ? new EtcdStore(cfg, log) : new StaticStore(cfg);
}
