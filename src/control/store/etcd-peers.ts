/**
 * Following the other nodes' leases for the etcd store: a map of every key
 * under `<prefix>/subnets/`, kept current by a prefix watch, and a publish of
 * the complete peer set to the agent on every change.
 *
 * Publishes are coalesced and run one at a time (publishLoop): a burst of
 * events becomes one table swap, and a failed publish is retried with the
 * latest set. Leases that cannot be peers are left out and listed with the
 * reason: another backend type, another VNI, outside the network, overlapping
 * this node's subnet or an earlier lease, or carrying this node's PublicIP.
 */
import type { Logger } from 'pino';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { MAX_PREFIXES, type PeerEntry } from '../../dataplane/peers.js';
import { formatIpv4 } from '../../wire/ipv4.js';
import { formatMac } from '../../wire/mac.js';
import { contains, PEER_CAPACITY, type Cidr } from '../config.js';
import { listPrefix, type Kv } from './etcd-client.js';
import { BACKEND_VXLAN, decodeLease, overlapsCidr, parseSubnetKey, subnetsPrefix, type LeaseAttrs, type NetworkConfig } from './flannel.js';
import type { PublishPeers, SelfAttrs } from './store.js';

const PUBLISH_RETRY_MS = 200;
const WATCH_CANCEL_TIMEOUT_MS = 1_000;

/** What the follower needs from the store that owns it. */
export interface FollowerContext {
  readonly prefix: string;
  readonly log: Logger;
  client(): Etcd3;
  net(): NetworkConfig;
  self(): SelfAttrs;
  own(): { readonly key: string; readonly subnet: Cidr; readonly value: string } | undefined;
  /** etcd answered (a watch event counts). */
  contact(): void;
  /** Our own key was deleted, or written by someone else. */
  ownKeyChanged(): void;
  /** etcd cancelled the watch (e.g. compaction): the owner should call resync(). */
  watchLost(): void;
}

interface LeaseEntry {
  readonly subnet: Cidr;
  readonly attrs?: LeaseAttrs;
  readonly error?: string;
}

export class LeaseFollower {
  private readonly leases = new Map<string, LeaseEntry>();
  private publisher?: PublishPeers;
  private publishing = false;
  private dirty = false;
  private closed = false;
  /** Subnet text → "vtepIP vtepMAC" of the set last handed to the publisher. */
  private published = new Map<string, string>();
  private ignored = new Map<string, string>();
  private watcher?: Watcher;
  private watchConnected = false;
  private resyncs = 0;

  constructor(private readonly ctx: FollowerContext) {}

  get started(): boolean {
    return this.publisher !== undefined;
  }

  get peerCount(): number {
    return this.published.size;
  }

  /** Publishes the peers of `listing` (awaited), then watches from just after its revision. */
  async start(listing: { kvs: readonly Kv[]; revision: string }, publish: PublishPeers): Promise<void> {
    this.fill(listing.kvs);
    await publish(this.computePeers());
    // From here on every publish goes through publishLoop, one at a time.
    this.publisher = publish;
    this.startWatch(listing.revision);
  }

  /** Re-lists every lease, restarts the watch from there, and publishes what changed. */
  async resync(): Promise<void> {
    const listing = await listPrefix(this.ctx.client(), subnetsPrefix(this.ctx.prefix));
    await this.stopWatch();
    this.fill(listing.kvs);
    this.resyncs++;
    this.startWatch(listing.revision);
    this.schedulePublish();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.stopWatch();
  }

  status(): Record<string, unknown> {
    return {
      watch: { connected: this.watchConnected, revision: this.watcher?.lastRevision() ?? undefined, resyncs: this.resyncs },
      peers: this.published.size,
      ignored: [...this.ignored].map(([key, why]) => ({ key, why })),
    };
  }

  private fill(kvs: readonly Kv[]): void {
    this.leases.clear();
    for (const kv of kvs) this.setLease(kv.key, kv.value);
  }

  private setLease(key: string, value: Buffer): void {
    const subnet = parseSubnetKey(this.ctx.prefix, key);
    if (!subnet) return;
    try {
      this.leases.set(key, { subnet, attrs: decodeLease(value.toString('utf8')) });
    } catch (e) {
      this.leases.set(key, { subnet, error: (e as Error).message });
    }
  }

  /** Watches the subnets prefix from just after `revision`. */
  private startWatch(revision: string): void {
    const w = this.ctx.client().watch().prefix(subnetsPrefix(this.ctx.prefix)).startRevision(String(BigInt(revision) + 1n)).watcher();
    w.on('put', (kv: IKeyValue) => this.onWatch('put', kv));
    w.on('delete', (kv: IKeyValue) => this.onWatch('delete', kv));
    w.on('connected', () => (this.watchConnected = true));
    w.on('disconnected', () => (this.watchConnected = false));
    w.on('error', (e: Error) => {
      if (this.watcher !== w || this.closed) return;
      this.watchConnected = false;
      this.ctx.log.warn({ err: e.message }, 'etcd cancelled the subnet watch; re-listing');
      this.ctx.watchLost();
    });
    this.watcher = w;
  }

  private async stopWatch(): Promise<void> {
    const w = this.watcher;
    this.watcher = undefined;
    this.watchConnected = false;
    if (w) await Promise.race([w.cancel().catch(() => undefined), delay(WATCH_CANCEL_TIMEOUT_MS)]);
  }

  private onWatch(type: 'put' | 'delete', kv: IKeyValue): void {
    if (this.closed) return;
    const key = kv.key.toString('utf8');
    this.ctx.contact();
    if (type === 'put') this.setLease(key, kv.value);
    else this.leases.delete(key);
    const own = this.ctx.own();
    if (own && key === own.key && (type === 'delete' || !kv.value.equals(Buffer.from(own.value)))) this.ctx.ownKeyChanged();
    this.schedulePublish();
  }

  private schedulePublish(): void {
    if (!this.publisher || this.closed) return;
    this.dirty = true;
    if (this.publishing) return;
    this.publishing = true;
    setImmediate(() => void this.publishLoop());
  }

  private async publishLoop(): Promise<void> {
    try {
      while (this.dirty && !this.closed && this.publisher) {
        this.dirty = false;
        const peers = this.computePeers();
        try {
          await this.publisher(peers);
        } catch (e) {
          this.ctx.log.error({ err: (e as Error).message }, 'could not publish the peer table; retrying');
          this.dirty = true;
          await delay(PUBLISH_RETRY_MS);
        }
      }
    } finally {
      this.publishing = false;
    }
  }

  /** The peer set from the lease map, logging what was added, removed or ignored. */
  private computePeers(): PeerEntry[] {
    const net = this.ctx.net();
    const own = this.ctx.own();
    const self = this.ctx.self();
    const out: PeerEntry[] = [];
    const subnets: Cidr[] = [];
    const lengths = new Set<number>();
    const shown = new Map<string, string>();
    const ignored = new Map<string, string>();
    for (const [key, l] of [...this.leases].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (own && key === own.key) continue;
      const a = l.attrs;
      let why: string | undefined;
      if (!a) why = l.error;
      else if (a.backendType !== BACKEND_VXLAN) why = `backend type "${a.backendType}"`;
      else if (a.vni !== undefined && a.vni !== net.vni) why = `VNI ${a.vni}, the network uses ${net.vni}`;
      else if (!contains(net.network, l.subnet)) why = `outside Network ${net.network.text}`;
      else if (own && overlapsCidr(own.subnet, l.subnet)) why = `overlaps this node's subnet ${own.subnet.text}`;
      else if (a.publicIP === self.publicIP) why = "carries this node's PublicIP (a stale lease of this node)";
      else if (subnets.some((s) => overlapsCidr(s, l.subnet))) why = 'overlaps another lease';
      // What the peer table cannot hold is left out here, so the others are still published.
      else if (out.length >= PEER_CAPACITY) why = `the peer table is full (${PEER_CAPACITY} peers)`;
      else if (!lengths.has(l.subnet.prefix) && lengths.size >= MAX_PREFIXES) {
        why = `a ${MAX_PREFIXES + 1}th subnet prefix length (/${l.subnet.prefix}); the peer table looks up at most ${MAX_PREFIXES}`;
      }
      if (why !== undefined || !a || !a.vtepMAC) {
        ignored.set(key, why ?? 'no VTEP MAC');
        continue;
      }
      subnets.push(l.subnet);
      lengths.add(l.subnet.prefix);
      out.push({ net: l.subnet.net, prefix: l.subnet.prefix, vtepIP: a.publicIP, vtepMAC: a.vtepMAC });
      shown.set(l.subnet.text, `${formatIpv4(a.publicIP)} ${formatMac(a.vtepMAC)}`);
    }
    const log = this.ctx.log;
    for (const [s, v] of shown) if (this.published.get(s) !== v) log.info({ subnet: s, vtep: v }, 'peer added');
    for (const [s, v] of this.published) if (!shown.has(s)) log.info({ subnet: s, vtep: v }, 'peer removed');
    for (const [k, why] of ignored) if (this.ignored.get(k) !== why) log.warn({ key: k, why }, 'lease ignored');
    this.published = shown;
    this.ignored = ignored;
    return out;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
