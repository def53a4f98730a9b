/**
 * The etcd store: flannel's etcd subnet manager inside the agent, on
 * flannel's layout (see flannel.ts), so tulle and flannel nodes can share one
 * etcd.
 *
 * ## Who does what
 *
 * - `join` reads `<prefix>/config` and leases this node's subnet, retrying
 *   with backoff while etcd is unreachable or the config is missing. The
 *   subnet is chosen as flannel does, with one addition in front: the subnet
 *   this node had last time (kept in `dataDir/subnet`) when it is free or
 *   still ours. Order: the config's `subnet` if given (exactly that one, or
 *   fail); the kept subnet; any lease carrying our PublicIP; a random one of
 *   the first 100 free subnets, created with put-if-absent (up to 10 races).
 *   The VTEP MAC is kept in `dataDir/vtep-mac` by the agent, so a restart
 *   republishes the same subnet and MAC and peers' tables stay valid.
 * - One supervision loop owns our lease: every CHECK_INTERVAL_MS (sooner
 *   when the lease is due for renewal, or when the watch saw our key change)
 *   it reads our key and reconciles: renews the etcd lease when due (TTL
 *   minus the renew margin); re-creates the key for the same subnet when it
 *   is gone (expired during an outage, or revoked); and reports a conflict,
 *   without overwriting, when another node's lease holds our subnet.
 * - A prefix watch on `<prefix>/subnets/` keeps a map of every lease; each
 *   change schedules a publish of the complete peer set (coalesced, one at a
 *   time). After an outage, or when etcd cancels the watch (compaction), the
 *   map is re-listed and the watch restarted from the listing's revision.
 *
 * Nothing here stops forwarding: while etcd is unreachable the workers keep
 * the last published table, the loop retries with backoff, and `status()`
 * says since when and why.
 */
import { join as joinPath } from 'node:path';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { PeerEntry } from '../../dataplane/peers.js';
import { formatIpv4 } from '../../wire/ipv4.js';
import { formatMac } from '../../wire/mac.js';
import { contains, parseCidr, type AgentConfig, type Cidr } from '../config.js';
import { writeFileAtomic } from '../state.js';
import { Backoff, Sleeper } from './backoff.js';
import type { EtcdStoreConfig } from './config.js';
import {
  createKey, getKey, grantLease, keepAliveOnce, leaseHex, listPrefix, openEtcd, replaceKey, revokeLease, type Kv,
} from './etcd-client.js';
import {
  BACKEND_VXLAN, decodeLease, encodeLease, freeSubnets, leasable, overlapsCidr, parseNetworkConfig, parseSubnetKey, subnetKey,
  subnetsPrefix, type LeaseAttrs, type NetworkConfig,
} from './flannel.js';
import { StoreError, type Membership, type PeerStore, type Precheck, type PublishPeers, type SelfAttrs } from './store.js';

/** How often the loop reads our key when nothing else is due. */
export const CHECK_INTERVAL_MS = 5_000;
const RETRY_INITIAL_MS = 500;
const RETRY_MAX_MS = 8_000;
/** Put-if-absent races lost before giving up for this round (flannel: 10). */
const MAX_CREATE_RACES = 10;
const PUBLISH_RETRY_MS = 200;
const WATCH_CANCEL_TIMEOUT_MS = 1_000;
const RECENT_EVENTS = 20;
/** While etcd stays unreachable, every this-many-th retry is logged at warn. */
const LOG_EVERY_NTH_FAILURE = 10;
/** File in dataDir holding the subnet this node leased last. */
export const SUBNET_FILE = 'subnet';

type State = 'joining' | 'ok' | 'unreachable' | 'conflict' | 'closed';

interface OwnLease {
  readonly subnet: Cidr;
  readonly key: string;
  readonly value: string;
  /** Decimal etcd lease ID; "0" for a permanent reservation (never renewed). */
  leaseId: string;
  /** Whether this process created the key (rather than taking over its own earlier lease). */
  readonly created: boolean;
  renewedAt: number;
}

interface LeaseEntry {
  readonly subnet: Cidr;
  readonly attrs?: LeaseAttrs;
  readonly error?: string;
}

export class EtcdStore implements PeerStore {
  readonly type = 'etcd' as const;
  private readonly scfg: EtcdStoreConfig;
  private readonly log: Logger;
  private client?: Etcd3;
  private net?: NetworkConfig;
  private self?: SelfAttrs;
  private own?: OwnLease;
  private state: State = 'joining';
  private closed = false;
  private conflict?: { holder: string; since: string };
  private readonly leases = new Map<string, LeaseEntry>();
  private publisher?: PublishPeers;
  private publishing = false;
  private dirty = false;
  private published = new Map<string, string>();
  private ignored = new Map<string, string>();
  private watcher?: Watcher;
  private watchConnected = false;
  private resyncNeeded = false;
  private resyncs = 0;
  private readonly backoff = new Backoff(RETRY_INITIAL_MS, RETRY_MAX_MS);
  /** The supervision loop's sleep; woken to check our lease at once. */
  private readonly sleeper = new Sleeper();
  /** Retry waits in join and follow (which may run beside the loop). */
  private readonly waiter = new Sleeper();
  private retryAt = 0;
  private lock: Promise<unknown> = Promise.resolve();
  private loopDone?: Promise<void>;
  private unreachableSince?: number;
  private lastContact?: number;
  private lastError?: string;
  private readonly events: { at: string; event: string }[] = [];

  constructor(
    private readonly cfg: AgentConfig,
    log: Logger,
  ) {
    if (cfg.store.type !== 'etcd') throw new TypeError('EtcdStore needs an etcd store config');
    this.scfg = cfg.store;
    this.log = log.child({ store: 'etcd' });
  }

  // ---- join: network config and our subnet ----

  async join(self: SelfAttrs, precheck: Precheck): Promise<Membership> {
    this.self = self;
    let checked = false;
    let precheckError: unknown;
    try {
      this.client = await openEtcd(this.scfg);
    } catch (e) {
      throw new StoreError('ESTORECONFIG', (e as Error).message, { cause: e });
    }
    for (;;) {
      if (this.closed) throw new StoreError('ESTORECLOSED', 'the store was closed while joining');
      try {
        const net = await this.readNetworkConfig();
        this.checkAgainstConfig(net);
        this.net = net;
        if (!checked) {
          // Its errors end the join as they are (a ConfigError stays one).
          await precheck({ network: net.network, vni: net.vni, port: net.port }).catch((e: unknown) => {
            precheckError = e;
            throw e;
          });
          checked = true;
        }
        await this.withLock(() => this.acquire());
        this.contact();
        this.backoff.reset();
        this.state = 'ok';
        this.loopDone = this.superviseLoop();
        const own = this.own!;
        return { network: net.network, subnet: own.subnet, vni: net.vni, port: net.port };
      } catch (e) {
        if (e instanceof StoreError || (precheckError !== undefined && e === precheckError)) throw e;
        const delay = this.backoff.next();
        this.lastError = (e as Error).message;
        this.log.warn({ err: (e as Error).message, attempt: this.backoff.failures, retryInMs: delay, endpoints: this.scfg.endpoints }, 'cannot join through etcd yet; retrying');
        this.retryAt = Date.now() + delay;
        await this.waiter.sleep(delay);
      }
    }
  }

  private configKey(): string {
    return `${this.scfg.prefix}/config`;
  }

  private async readNetworkConfig(): Promise<NetworkConfig> {
    const kv = await getKey(this.etcd(), this.configKey());
    this.contact();
    if (!kv) throw new Error(`no network config at ${this.configKey()} (write one, e.g. {"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}})`);
    return parseNetworkConfig(kv.value.toString('utf8'));
  }

  private checkAgainstConfig(net: NetworkConfig): void {
    const where = this.configKey();
    if (net.backendType !== BACKEND_VXLAN) {
      throw new StoreError('ESTORECONFIG', `${where} has Backend.Type "${net.backendType}"; tulle speaks only "vxlan"`);
    }
    if (this.cfg.network && (this.cfg.network.net !== net.network.net || this.cfg.network.prefix !== net.network.prefix)) {
      throw new StoreError('ESTORECONFIG', `config field "network" is ${this.cfg.network.text} but ${where} says Network ${net.network.text}`);
    }
    if (this.cfg.subnet && !leasable(net, this.cfg.subnet)) {
      throw new StoreError('ESTORECONFIG', `config field "subnet" ${this.cfg.subnet.text} is not a /${net.subnetLen} between SubnetMin ${formatIpv4(net.subnetMin)} and SubnetMax ${formatIpv4(net.subnetMax)} of ${where}`);
    }
  }

  private async acquire(): Promise<void> {
    const self = this.self!;
    const net = this.net!;
    const value = encodeLease(self.publicIP, net.vni, self.vtepMAC);
    let { kvs } = await listPrefix(this.etcd(), subnetsPrefix(this.scfg.prefix));
    const parsed = () => kvs.flatMap((kv) => {
      const subnet = parseSubnetKey(this.scfg.prefix, kv.key);
      return subnet ? [{ kv, subnet, attrs: tryDecode(kv.value) }] : [];
    });
    let leases = parsed();
    const holderOf = (c: Cidr) => leases.find((l) => l.subnet.net === c.net && l.subnet.prefix === c.prefix);
    const take = async (c: Cidr, why: string): Promise<'taken' | 'held' | 'raced'> => {
      const h = holderOf(c);
      if (!h) return (await this.createLease(c, value, why)) ? 'taken' : 'raced';
      if (h.attrs?.publicIP === self.publicIP) return (await this.takeOver(c, h.kv, value, why)) ? 'taken' : 'raced';
      return 'held';
    };
    const holderText = (c: Cidr) => {
      const a = holderOf(c)?.attrs;
      return a ? `the node with PublicIP ${formatIpv4(a.publicIP)}` : 'a lease tulle cannot read';
    };

    if (this.cfg.subnet) {
      const r = await take(this.cfg.subnet, 'the config asks for it');
      if (r === 'taken') return;
      if (r === 'held') throw new StoreError('ESUBNETTAKEN', `config field "subnet" ${this.cfg.subnet.text} is leased to ${holderText(this.cfg.subnet)} (${subnetKey(this.scfg.prefix, this.cfg.subnet)})`);
      throw new Error(`lost a race for ${this.cfg.subnet.text}`);
    }
    const kept = await this.keptSubnet();
    if (kept && leasable(net, kept)) {
      const r = await take(kept, `kept in ${joinPath(this.cfg.dataDir, SUBNET_FILE)}`);
      if (r === 'taken') return;
      this.log.warn({ subnet: kept.text, holder: holderText(kept) }, 'the subnet this node had is now leased to another node; taking another');
    }
    for (const l of leases.filter((x) => x.attrs?.publicIP === self.publicIP && leasable(net, x.subnet))) {
      if ((await take(l.subnet, 'an existing lease carries this PublicIP')) === 'taken') return;
    }
    for (let race = 0; race < MAX_CREATE_RACES; race++) {
      const free = freeSubnets(net, leases.map((l) => l.subnet));
      if (free.length === 0) throw new Error(`out of subnets: every /${net.subnetLen} between ${formatIpv4(net.subnetMin)} and ${formatIpv4(net.subnetMax)} is leased`);
      const pick = free[Math.floor(Math.random() * free.length)]!;
      if (await this.createLease(pick, value, 'free')) return;
      ({ kvs } = await listPrefix(this.etcd(), subnetsPrefix(this.scfg.prefix)));
      leases = parsed();
    }
    throw new Error(`lost ${MAX_CREATE_RACES} races for a free subnet`);
  }

  private async keptSubnet(): Promise<Cidr | undefined> {
    const file = joinPath(this.cfg.dataDir, SUBNET_FILE);
    let text: string;
    try {
      text = (await readFile(file, 'utf8')).trim();
    } catch {
      return undefined;
    }
    try {
      return parseCidr(file, text);
    } catch {
      this.log.warn({ file, text }, 'ignoring an unreadable kept subnet');
      return undefined;
    }
  }

  private async createLease(subnet: Cidr, value: string, why: string): Promise<boolean> {
    const client = this.etcd();
    const key = subnetKey(this.scfg.prefix, subnet);
    const id = await grantLease(client, this.scfg.leaseTTLSeconds);
    let ok = false;
    try {
      ok = await createKey(client, key, value, id);
    } finally {
      if (!ok) await revokeLease(client, id).catch(() => undefined);
    }
    if (!ok) return false;
    this.own = { subnet, key, value, leaseId: id, created: true, renewedAt: Date.now() };
    await this.keep(subnet);
    this.note(`lease acquired: ${subnet.text} (${why})`);
    this.log.info({ subnet: subnet.text, key, leaseId: leaseHex(id), ttlSeconds: this.scfg.leaseTTLSeconds, why }, 'subnet lease acquired');
    return true;
  }

  /** Moves our own earlier lease (same PublicIP) onto a fresh etcd lease with our current value. */
  private async takeOver(subnet: Cidr, kv: Kv, value: string, why: string): Promise<boolean> {
    const client = this.etcd();
    const permanent = kv.lease === '0';
    const id = permanent ? '0' : await grantLease(client, this.scfg.leaseTTLSeconds);
    let ok = false;
    try {
      ok = await replaceKey(client, kv.key, value, id, kv.modRevision);
    } finally {
      if (!ok && !permanent) await revokeLease(client, id).catch(() => undefined);
    }
    if (!ok) return false;
    if (!permanent) {
      await revokeLease(client, kv.lease).catch((e: Error) => this.log.warn({ err: e.message, leaseId: leaseHex(kv.lease) }, 'could not revoke the earlier etcd lease; it will expire'));
    }
    this.own = { subnet, key: kv.key, value, leaseId: id, created: false, renewedAt: Date.now() };
    await this.keep(subnet);
    this.note(`lease taken over: ${subnet.text} (${why})`);
    this.log.info({ subnet: subnet.text, key: kv.key, leaseId: permanent ? 'none (permanent reservation)' : leaseHex(id), why }, 'subnet lease acquired (this node held it before)');
    return true;
  }

  private async keep(subnet: Cidr): Promise<void> {
    await writeFileAtomic(joinPath(this.cfg.dataDir, SUBNET_FILE), `${subnet.text}\n`);
  }

  // ---- the supervision loop: renew, verify, reconcile ----

  private async superviseLoop(): Promise<void> {
    while (!this.closed) {
      await this.sleeper.sleep(this.state === 'unreachable' ? Math.max(0, this.retryAt - Date.now()) : this.nextCheckDelay());
      if (this.closed) break;
      try {
        await this.withLock(() => this.check());
        this.recovered();
        if (this.resyncNeeded && this.publisher) await this.resync();
      } catch (e) {
        if (this.closed) break;
        this.failed(e as Error);
      }
    }
  }

  private renewDueAt(): number {
    const own = this.own;
    if (!own || own.leaseId === '0') return Infinity;
    return own.renewedAt + (this.scfg.leaseTTLSeconds - this.scfg.renewMarginSeconds) * 1000;
  }

  private nextCheckDelay(): number {
    return Math.max(0, Math.min(CHECK_INTERVAL_MS, this.renewDueAt() - Date.now()));
  }

  /** Reads our key and puts things right; throws when etcd cannot be reached. */
  private async check(): Promise<void> {
    const own = this.own!;
    const client = this.etcd();
    const kv = await getKey(client, own.key);
    this.contact();
    if (!kv) {
      this.log.warn({ subnet: own.subnet.text, key: own.key }, 'our subnet lease is gone (expired or revoked); re-acquiring the same subnet');
      if (await this.createLease(own.subnet, own.value, 're-acquired after the lease was lost')) this.clearConflict();
      return;
    }
    if (!kv.value.equals(Buffer.from(own.value))) {
      // Someone else wrote our key (even with our PublicIP: a second agent, a hand edit).
      const a = tryDecode(kv.value);
      this.setConflict(a ? `PublicIP ${formatIpv4(a.publicIP)}${a.vtepMAC ? ` (VTEP MAC ${formatMac(a.vtepMAC)})` : ''}` : `an unreadable value ${JSON.stringify(kv.value.toString('utf8').slice(0, 120))}`);
      return;
    }
    this.clearConflict();
    if (kv.lease !== own.leaseId) own.leaseId = kv.lease;
    if (Date.now() >= this.renewDueAt()) {
      const ttl = await keepAliveOnce(client, own.leaseId);
      if (ttl <= 0) {
        // The key goes with the lease; the next check re-acquires.
        own.renewedAt = 0;
        this.sleeper.wake();
        return;
      }
      own.renewedAt = Date.now();
      this.log.debug({ subnet: own.subnet.text, leaseId: leaseHex(own.leaseId), ttlSeconds: ttl }, 'subnet lease renewed');
    }
  }

  private setConflict(holder: string): void {
    if (this.conflict?.holder === holder) return;
    this.conflict = { holder, since: new Date().toISOString() };
    this.state = 'conflict';
    this.note(`conflict: ${this.own!.subnet.text} is leased to ${holder}`);
    this.log.error(
      { subnet: this.own!.subnet.text, key: this.own!.key, holder },
      'our subnet lease now belongs to another node; keeping the local subnet and pods, not overwriting it; traffic from other nodes to our pods goes to that node until one of the two is removed',
    );
  }

  private clearConflict(): void {
    if (!this.conflict) return;
    this.log.warn({ subnet: this.own!.subnet.text, was: this.conflict.holder }, 'subnet lease conflict resolved; the lease is ours again');
    this.note('conflict resolved');
    this.conflict = undefined;
    if (this.state === 'conflict') this.state = 'ok';
  }

  private failed(e: Error): void {
    this.lastError = e.message;
    const delay = this.backoff.next();
    this.retryAt = Date.now() + delay;
    if (this.state !== 'unreachable') {
      this.unreachableSince = Date.now();
      this.state = 'unreachable';
      this.watchConnected = false;
      this.note(`etcd unreachable: ${e.message}`);
      this.log.warn({ err: e.message, peers: this.published.size, retryInMs: delay }, 'etcd unreachable; forwarding continues with the peers already known; retrying with backoff');
    } else if (this.backoff.failures % LOG_EVERY_NTH_FAILURE === 0) {
      this.log.warn({ err: e.message, failures: this.backoff.failures, downForMs: Date.now() - (this.unreachableSince ?? Date.now()), retryInMs: delay }, 'etcd still unreachable');
    } else {
      this.log.debug({ err: e.message, retryInMs: delay }, 'etcd still unreachable');
    }
  }

  private recovered(): void {
    this.backoff.reset();
    if (this.state === 'unreachable') {
      const downForMs = Date.now() - (this.unreachableSince ?? Date.now());
      this.note(`etcd reachable again after ${downForMs} ms`);
      this.log.info({ downForMs }, 'etcd reachable again; our lease is reconciled, peers are re-listed');
      this.unreachableSince = undefined;
      this.resyncNeeded = true;
    }
    if (this.state === 'unreachable' || this.state === 'joining') this.state = 'ok';
    if (this.state === 'ok' && this.conflict) this.state = 'conflict';
  }

  // ---- peers: list, watch, publish ----

  async follow(publish: PublishPeers): Promise<void> {
    this.publisher = publish;
    let listing: Awaited<ReturnType<typeof listPrefix>>;
    for (;;) {
      if (this.closed) throw new StoreError('ESTORECLOSED', 'the store was closed while listing peers');
      try {
        listing = await listPrefix(this.etcd(), subnetsPrefix(this.scfg.prefix));
        break;
      } catch (e) {
        this.failed(e as Error);
        await this.waiter.sleep(Math.max(0, this.retryAt - Date.now()));
      }
    }
    this.fill(listing.kvs);
    await publish(this.computePeers());
    this.startWatch(listing.revision);
  }

  private fill(kvs: readonly Kv[]): void {
    this.leases.clear();
    for (const kv of kvs) this.setLease(kv.key, kv.value);
  }

  private setLease(key: string, value: Buffer): void {
    const subnet = parseSubnetKey(this.scfg.prefix, key);
    if (!subnet) return;
    try {
      this.leases.set(key, { subnet, attrs: decodeLease(value.toString('utf8')) });
    } catch (e) {
      this.leases.set(key, { subnet, error: (e as Error).message });
    }
  }

  /** Watches the subnets prefix from just after `revision`. */
  private startWatch(revision: string): void {
    const w = this.etcd().watch().prefix(subnetsPrefix(this.scfg.prefix)).startRevision(String(BigInt(revision) + 1n)).watcher();
    w.on('put', (kv: IKeyValue) => this.onWatch('put', kv));
    w.on('delete', (kv: IKeyValue) => this.onWatch('delete', kv));
    w.on('connected', () => (this.watchConnected = true));
    w.on('disconnected', () => (this.watchConnected = false));
    w.on('error', (e: Error) => {
      if (this.watcher !== w || this.closed) return;
      this.watchConnected = false;
      this.log.warn({ err: e.message }, 'etcd cancelled the subnet watch; re-listing');
      this.resyncNeeded = true;
      this.sleeper.wake();
    });
    this.watcher = w;
  }

  private onWatch(type: 'put' | 'delete', kv: IKeyValue): void {
    if (this.closed) return;
    const key = kv.key.toString('utf8');
    this.contact();
    if (type === 'put') this.setLease(key, kv.value);
    else this.leases.delete(key);
    if (this.own && key === this.own.key && (type === 'delete' || !kv.value.equals(Buffer.from(this.own.value)))) {
      this.sleeper.wake(); // check our lease now rather than at the next interval
    }
    this.schedulePublish();
  }

  private async resync(): Promise<void> {
    const listing = await listPrefix(this.etcd(), subnetsPrefix(this.scfg.prefix));
    const old = this.watcher;
    this.watcher = undefined;
    if (old) await Promise.race([old.cancel().catch(() => undefined), delay(WATCH_CANCEL_TIMEOUT_MS)]);
    this.fill(listing.kvs);
    this.resyncNeeded = false;
    this.resyncs++;
    this.startWatch(listing.revision);
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
          this.log.error({ err: (e as Error).message }, 'could not publish the peer table; retrying');
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
    const net = this.net!;
    const own = this.own;
    const self = this.self!;
    const out: PeerEntry[] = [];
    const subnets: Cidr[] = [];
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
      if (why !== undefined || !a || !a.vtepMAC) {
        ignored.set(key, why ?? 'no VTEP MAC');
        continue;
      }
      subnets.push(l.subnet);
      out.push({ net: l.subnet.net, prefix: l.subnet.prefix, vtepIP: a.publicIP, vtepMAC: a.vtepMAC });
      shown.set(l.subnet.text, `${formatIpv4(a.publicIP)} ${formatMac(a.vtepMAC)}`);
    }
    for (const [s, v] of shown) if (this.published.get(s) !== v) this.log.info({ subnet: s, vtep: v }, 'peer added');
    for (const [s, v] of this.published) if (!shown.has(s)) this.log.info({ subnet: s, vtep: v }, 'peer removed');
    for (const [k, why] of ignored) if (this.ignored.get(k) !== why) this.log.warn({ key: k, why }, 'lease ignored');
    this.published = shown;
    this.ignored = ignored;
    return out;
  }

  // ---- status and shutdown ----

  status(): Record<string, unknown> {
    const own = this.own;
    const net = this.net;
    const iso = (t: number | undefined) => (t === undefined ? undefined : new Date(t).toISOString());
    return {
      type: this.type,
      state: this.state,
      endpoints: this.scfg.endpoints,
      prefix: this.scfg.prefix,
      network: net ? { network: net.network.text, subnetLen: net.subnetLen, subnetMin: formatIpv4(net.subnetMin), subnetMax: formatIpv4(net.subnetMax), vni: net.vni, port: net.port } : undefined,
      lease: own ? {
        key: own.key,
        subnet: own.subnet.text,
        leaseId: own.leaseId === '0' ? 'none (permanent reservation)' : leaseHex(own.leaseId),
        ttlSeconds: this.scfg.leaseTTLSeconds,
        renewedAt: iso(own.renewedAt || undefined),
        renewDueAt: own.leaseId === '0' ? undefined : iso(this.renewDueAt()),
        createdByThisRun: own.created,
      } : undefined,
      etcd: {
        reachable: this.state !== 'unreachable' && this.lastContact !== undefined,
        lastContact: iso(this.lastContact),
        unreachableSince: iso(this.unreachableSince),
        failures: this.backoff.failures,
        nextRetryAt: this.state === 'unreachable' || this.state === 'joining' ? iso(this.retryAt) : undefined,
        lastError: this.lastError,
      },
      watch: { connected: this.watchConnected, revision: this.watcher?.lastRevision() ?? undefined, resyncs: this.resyncs },
      conflict: this.conflict,
      peers: this.published.size,
      ignored: [...this.ignored].map(([key, why]) => ({ key, why })),
      events: [...this.events],
    };
  }

  async close(opts: { abandon?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.state = 'closed';
    this.sleeper.wake();
    this.waiter.wake();
    await this.loopDone?.catch(() => undefined);
    const w = this.watcher;
    this.watcher = undefined;
    if (w) await Promise.race([w.cancel().catch(() => undefined), delay(WATCH_CANCEL_TIMEOUT_MS)]);
    const own = this.own;
    if (opts.abandon && own?.created && own.leaseId !== '0' && this.client) {
      await revokeLease(this.client, own.leaseId).then(
        () => this.log.info({ subnet: own.subnet.text }, 'start-up failed; subnet lease given back'),
        (e: Error) => this.log.warn({ err: e.message }, 'could not give back the subnet lease; it will expire'),
      );
    }
    this.client?.close();
  }

  // ---- helpers ----

  private etcd(): Etcd3 {
    if (!this.client || this.closed) throw new StoreError('ESTORECLOSED', 'the etcd store is closed');
    return this.client;
  }

  private contact(): void {
    this.lastContact = Date.now();
  }

  private note(event: string): void {
    this.events.push({ at: new Date().toISOString(), event });
    if (this.events.length > RECENT_EVENTS) this.events.shift();
  }

  /** Runs `fn` after every earlier locked call has finished (our lease has one writer at a time). */
  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }
}

function tryDecode(value: Buffer): LeaseAttrs | undefined {
  try {
    return decodeLease(value.toString('utf8'));
  } catch {
    return undefined;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
