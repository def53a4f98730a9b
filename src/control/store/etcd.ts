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
 * - The peers are followed by LeaseFollower (etcd-peers.ts): a prefix watch
 *   and a publish of the complete peer set on every change. After an outage,
 *   or when etcd cancels the watch (compaction), the loop has it re-list and
 *   restart the watch from the listing's revision.
 *
 * The file runs past 500 lines on purpose: it holds the whole life of our own
 * lease (choice, creation, take-over, renewal, loss, conflict, outage) in one
 * place, where the order of those steps can be read.
 *
 * Nothing here stops forwarding: while etcd is unreachable the workers keep
 * the last published table, the loop retries with backoff, and `status()`
 * says since when and why.
 */
import { join as joinPath } from 'node:path';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { EtcdAuthenticationFailedError, EtcdPermissionDeniedError, EtcdUserNotFoundError, type Etcd3 } from 'etcd3';
import { formatIpv4 } from '../../wire/ipv4.js';
import { formatMac } from '../../wire/mac.js';
import { ConfigError, parseCidr, type AgentConfig, type Cidr } from '../config.js';
import { LAST_SUBNET_FILE, writeFileAtomic } from '../state.js';
import { Backoff, Sleeper } from './backoff.js';
import type { EtcdStoreConfig } from './config.js';
import {
  createKey, getKey, grantLease, keepAliveOnce, leaseHex, listPrefix, openEtcd, replaceKey, revokeLease, type Kv,
} from './etcd-client.js';
import { LeaseFollower } from './etcd-peers.js';
import {
  BACKEND_VXLAN, decodeLease, encodeLease, freeSubnets, leasable, parseNetworkConfig, parseSubnetKey, subnetKey, subnetsPrefix,
  type LeaseAttrs, type NetworkConfig,
} from './flannel.js';
import { StoreError, type Membership, type PeerChange, type PeerStore, type Precheck, type PublishPeers, type SelfAttrs } from './store.js';

/** How often the loop reads our key when nothing else is due. */
export const CHECK_INTERVAL_MS = 5_000;
const RETRY_INITIAL_MS = 500;
const RETRY_MAX_MS = 8_000;
/** Put-if-absent races lost before giving up for this round (flannel: 10). */
const MAX_CREATE_RACES = 10;
const RECENT_EVENTS = 20;
/** While etcd stays unreachable, every this-many-th retry is logged at warn. */
const LOG_EVERY_NTH_FAILURE = 10;

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
  private readonly follower: LeaseFollower;
  private resyncNeeded = false;
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
    this.follower = new LeaseFollower({
      prefix: this.scfg.prefix,
      log: this.log,
      client: () => this.etcd(),
      net: () => this.net!,
      self: () => this.self!,
      own: () => this.own,
      contact: () => this.contact(),
      // Check our lease now rather than at the next interval.
      ownKeyChanged: () => this.sleeper.wake(),
      watchLost: () => {
        this.resyncNeeded = true;
        this.sleeper.wake();
      },
    });
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
        this.unreachableSince = undefined;
        this.state = 'ok';
        this.loopDone = this.superviseLoop();
        const own = this.own!;
        return { network: net.network, subnet: own.subnet, vni: net.vni, port: net.port };
      } catch (e) {
        if (e instanceof StoreError || e instanceof ConfigError || (precheckError !== undefined && e === precheckError)) throw e;
        // close() while a call was under way: that call's failure is the closing, not etcd's.
        if (this.closed) throw new StoreError('ESTORECLOSED', 'the store was closed while joining', { cause: e });
        if (e instanceof EtcdAuthenticationFailedError || e instanceof EtcdUserNotFoundError || e instanceof EtcdPermissionDeniedError) {
          throw new StoreError('ESTORECONFIG', `etcd refused ${this.scfg.username === undefined ? 'this client' : `user "${this.scfg.username}"`}: ${(e as Error).message}`, { cause: e });
        }
        const delay = this.backoff.next();
        this.lastError = (e as Error).message;
        this.unreachableSince ??= Date.now();
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
    // The agent config contradicting etcd is a bad config (exit code 2), not a store failure.
    if (this.cfg.network && (this.cfg.network.net !== net.network.net || this.cfg.network.prefix !== net.network.prefix)) {
      throw new ConfigError('network', this.cfg.network.text, `contradicts ${where}, which says Network ${net.network.text}`);
    }
    if (this.cfg.subnet && !leasable(net, this.cfg.subnet)) {
      throw new ConfigError('subnet', this.cfg.subnet.text, `is not a /${net.subnetLen} between SubnetMin ${formatIpv4(net.subnetMin)} and SubnetMax ${formatIpv4(net.subnetMax)}, as ${where} says (Network ${net.network.text})`);
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
      const r = await take(kept, `kept in ${joinPath(this.cfg.dataDir, LAST_SUBNET_FILE)}`);
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
    const file = joinPath(this.cfg.dataDir, LAST_SUBNET_FILE);
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
    await writeFileAtomic(joinPath(this.cfg.dataDir, LAST_SUBNET_FILE), `${subnet.text}\n`);
  }

  // ---- the supervision loop: renew, verify, reconcile ----

  private async superviseLoop(): Promise<void> {
    while (!this.closed) {
      await this.sleeper.sleep(this.state === 'unreachable' ? Math.max(0, this.retryAt - Date.now()) : this.nextCheckDelay());
      if (this.closed) break;
      try {
        await this.withLock(() => this.check());
        this.recovered();
        if (this.resyncNeeded && this.follower.started) {
          await this.follower.resync();
          this.resyncNeeded = false;
        }
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
      this.note(`etcd unreachable: ${e.message}`);
      this.log.warn({ err: e.message, peers: this.follower.peerCount, retryInMs: delay }, 'etcd unreachable; forwarding continues with the peers already known; retrying with backoff');
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

  // ---- peers ----

  async follow(publish: PublishPeers): Promise<void> {
    let listing: Awaited<ReturnType<typeof listPrefix>>;
    for (;;) {
      if (this.closed) throw new StoreError('ESTORECLOSED', 'the store was closed while listing peers');
      try {
        listing = await listPrefix(this.etcd(), subnetsPrefix(this.scfg.prefix));
        break;
      } catch (e) {
        if (this.closed) throw new StoreError('ESTORECLOSED', 'the store was closed while listing peers', { cause: e });
        this.failed(e as Error);
        await this.waiter.sleep(Math.max(0, this.retryAt - Date.now()));
      }
    }
    await this.follower.start(listing, publish);
  }

  /** The peers come from etcd (a config with the etcd store lists none): a reload changes none. */
  async reload(): Promise<PeerChange> {
    return { added: [], removed: [] };
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
      conflict: this.conflict,
      ...this.follower.status(),
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
    await this.follower.close();
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
