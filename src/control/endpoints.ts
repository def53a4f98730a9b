/**
 * The agent's side of the CNI plugin: the local endpoints (one per attached pod interface), their
 * addresses and their veths, behind the routes of protocol.ts on the agent's API.
 *
 * Each endpoint is kept as a JSON record in `<dataDir>/endpoints/<key>.json` (container ID,
 * ifname, address, MACs, host veth, netns, network), written before ADD answers and removed by
 * DEL, so `tulle status` and CHECK/GC/DEL work across agent restarts. Addresses live in a
 * host-local style directory per node subnet, `<dataDir>/ipam/<net>-<prefix>/` (ipam.ts): one
 * directory for every CNI network of type tulle on the node, since they share the node's subnet.
 *
 * ADD undoes its own steps when a later one fails (address, veth pair, record); DEL succeeds when
 * the veth, the netns or the record is already gone and always releases the address, in the
 * store of the subnet it came from even after the node's subnet changed (GC goes over every store). Operations
 * on one (containerID, ifname) never overlap; the address directory serialises allocations.
 */
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import * as native from '../io/native.js';
import { formatIpv4, parseIpv4 } from '../wire/ipv4.js';
import { formatMac, randomLocalMac } from '../wire/mac.js';
import { ERR } from '../cni/spec.js';
import type { CniResult, CniRoute } from '../cni/result.js';
import {
  API_ADD, API_CHECK, API_DEL, API_GC, attachmentDigest, requestedAddress,
  type AddRequest, type Attachment, type CheckRequest, type DelRequest, type GcRequest, type GcResponse,
} from '../cni/protocol.js';
import type { ApiServer } from './api.js';
import { DEFAULT_DST, attachPod, detachPod, type PodRoute } from './attach.js';
import { segmentsPerMessage } from '../dataplane/segment.js';
import { type Cidr, overlaps } from './config.js';
import { compareEndpoint } from './endpoint-check.js';
import { type EndpointRecord, hostIfnameFor, keyOf, resultOf } from './endpoint-record.js';
import {
  CniApiError, cniError, checkAttachment, checkNetnsRef, checkNetwork, cidrParts, inSubnet, isObject, resolveNetns,
} from './endpoint-requests.js';
import { HostLocalStore, hostRange } from './ipam.js';
import { type QueuedDel, delQueueDir, listQueuedDels, unqueueDel } from '../cni/del-queue.js';
import { ENDPOINTS_DIR, IPAM_DIR, writeFileAtomic } from './state.js';

export type { EndpointRecord } from './endpoint-record.js';
export { CniApiError } from './endpoint-requests.js';
export { hostIfnameFor } from './endpoint-record.js';

export { ENDPOINTS_DIR, IPAM_DIR } from './state.js';
/** `<dataDir>/ipam/<net>-<prefix>`, one per subnet the node has held. */
const STORE_DIR_RE = /^(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,2})$/;

/** How often queued DELs that failed are tried again. */
const QUEUE_RETRY_MS = 60_000;

/** How many times an allocation is made again when the node's subnet changes under it. */
const SUBNET_CHANGE_ATTEMPTS = 3;

/**
 * Takes an address for (containerID, ifname) from the store of the node's subnet. The subnet can
 * change while the store writes (an etcd lease lost and another taken); the new subnet's store
 * may then have taken over the old one's reservations without this one, so an address taken in
 * a subnet that is no longer the node's is released and taken again from the new subnet's store.
 */
export async function allocateInSubnet(
  o: { subnet: () => Cidr; store: (subnet: Cidr) => Promise<HostLocalStore>; log: Pick<Logger, 'warn'> },
  containerID: string, ifname: string, requested: number | undefined,
): Promise<{ subnet: Cidr; store: HostLocalStore; addr: number }> {
  for (let attempt = 1; ; attempt++) {
    const subnet = o.subnet();
    const store = await o.store(subnet);
    const addr = await store.allocate(containerID, ifname, requested);
    let now: Cidr | undefined;
    try {
      now = o.subnet();
    } catch {
      now = undefined;
    }
    if (now !== undefined && storeKey(now) === storeKey(subnet)) return { subnet, store, addr };
    await store.release(containerID, ifname, addr);
    o.log.warn({ containerID, ifname, ip: formatIpv4(addr), from: subnet.text, to: now?.text ?? null, attempt },
      'the node\'s subnet changed while an address was taken; it is released and taken again');
    if (attempt === SUBNET_CHANGE_ATTEMPTS || now === undefined) {
      throw new CniApiError(503, ERR.TRY_AGAIN_LATER,
        `the node's subnet changed (${subnet.text} to ${now?.text ?? 'none yet'}) while an address for container ${containerID} interface ${ifname} was taken; try again`);
    }
  }
}

/** The subnet of an address with its prefix length 1..32 ("10.244.1.5/24" -> 10.244.1.0/24). */
function subnetOf(ipWithPrefix: string): Cidr {
  const { ip, prefix } = cidrParts('endpoint address', ipWithPrefix);
  const net = prefix === 0 ? 0 : (ip & ((0xffffffff << (32 - prefix)) >>> 0)) >>> 0;
  return { net, prefix, text: `${formatIpv4(net)}/${prefix}` };
}

async function unlinkIfThere(file: string): Promise<void> {
  await unlink(file).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

/** A subnet store's directory name, `<net>-<prefix>`. */
function storeKey(subnet: Cidr): string {
  return `${formatIpv4(subnet.net)}-${subnet.prefix}`;
}

/** Why a record read from disk cannot be used ('' when it can). */
function recordProblem(rec: EndpointRecord): string {
  if (typeof rec !== 'object' || rec === null) return 'not a JSON object';
  for (const f of ['containerID', 'ifname', 'ip', 'hostIfname', 'createdAt'] as const) {
    if (typeof rec[f] !== 'string') return `field ${f} is ${JSON.stringify(rec[f])}`;
  }
  try {
    if (cidrParts('endpoint record', rec.ip).prefix < 1) throw new RangeError('prefix 0');
  } catch {
    return `invalid address ${JSON.stringify(rec.ip)}`;
  }
  if (rec.ipam !== 'agent' && rec.ipam !== 'delegated') return `invalid ipam ${JSON.stringify(rec.ipam)}`;
  return '';
}

/** What the endpoints need to know about the node, read at each request. */
export interface NodeView {
  /** Absent until the store has settled it (etcd: until the subnet is leased). */
  subnet: Cidr | undefined;
  /** Overlay MTU: every pod veth gets it. */
  mtu: number;
  /** False while the agent starts or stops: ADD is refused with CNI code 11. */
  ready: boolean;
}

export interface EndpointsOptions {
  dataDir: string;
  /** The agent's socket, next to which tulle-cni queues the DELs it could not hand over (del-queue.ts). */
  socket: string;
  log: Logger;
  node: () => NodeView;
}

export class Endpoints {
  private readonly records = new Map<string, EndpointRecord>();
  private readonly busy = new Set<string>();
  private readonly stores = new Map<string, HostLocalStore>();
  /** Stores being opened, so that requests arriving together share one opening. */
  private readonly opening = new Map<string, Promise<HostLocalStore>>();
  private closed = false;
  /** Requests and queued DELs under way (close waits for them). */
  private readonly inflight = new Set<Promise<unknown>>();
  /** The next attempt at queued DELs that failed. */
  private retry: NodeJS.Timeout | undefined;
  /** The current subnet's taking over of earlier, overlapping stores' reservations, done once per subnet. */
  private adoption: { key: string; done: Promise<void> } | undefined;

  private loaded = false;

  /** Routes can be registered at once; requests wait for `load` (until then they get code 11). */
  constructor(private readonly o: EndpointsOptions) {}

  /** The node's subnet, or CNI code 11 (try again) while the agent has not settled it yet. */
  private subnet(): Cidr {
    const subnet = this.o.node().subnet;
    if (!subnet) throw new CniApiError(503, ERR.TRY_AGAIN_LATER, 'the tulle agent has no subnet yet (its store is still joining); try again');
    return subnet;
  }

  /** Loads the records kept in `dataDir` and drops those whose host veth is gone (pod deleted without DEL). */
  async load(): Promise<void> {
    const o = this.o;
    await mkdir(this.recordDir, { recursive: true });
    for (const name of await readdir(this.recordDir)) {
      if (!name.endsWith('.json')) continue;
      try {
        const rec = JSON.parse(await readFile(join(this.recordDir, name), 'utf8')) as EndpointRecord;
        const problem = recordProblem(rec);
        if (problem !== '') throw new Error(problem);
        this.records.set(keyOf(rec), rec);
      } catch (err) {
        o.log.warn({ file: name, err: (err as Error).message }, 'unreadable endpoint record ignored');
      }
    }
    for (const rec of [...this.records.values()]) {
      if (native.ifNameToIndex(rec.hostIfname) > 0) continue;
      o.log.warn({ containerID: rec.containerID, ifname: rec.ifname, ip: rec.ip }, 'host veth gone since the last run; releasing the endpoint');
      await this.remove(rec).catch((err: Error) => o.log.error({ err: err.message }, 'releasing a vanished endpoint failed'));
    }
    await this.performQueuedDels();
    this.loaded = true;
  }

  /**
   * The DELs tulle-cni queued while no agent answered (del-queue.ts). While loading they run
   * before any request; later (a retry) each runs as an operation on its attachment. One that
   * fails, or whose file could not be read for a reason that may pass, is tried again a minute
   * later. A problem with the queue itself is logged and does not stop the agent.
   */
  private async performQueuedDels(): Promise<void> {
    const log = this.o.log;
    let files;
    try {
      files = await listQueuedDels(this.o.socket);
    } catch (err) {
      log.error({ dir: delQueueDir(this.o.socket), err: (err as Error).message }, 'the queue of DELs is unusable; DELs while the agent is down fail with code 50');
      return;
    }
    let again = false;
    for (const { file, entry, problem, transient, gone } of files) {
      if (gone) continue; // removed since the listing (an ADD or DEL that reached the agent)
      if (problem !== undefined) {
        if (transient) {
          again = true;
          log.warn({ file, err: problem }, 'queued DEL not readable now; tried again later');
        } else {
          log.warn({ file, err: problem }, 'unreadable queued DEL dropped');
          await unlink(file).catch(() => undefined);
        }
        continue;
      }
      let req: QueuedDel;
      try {
        checkAttachment(entry);
        req = entry as unknown as QueuedDel;
        if (typeof req.queuedAt !== 'string' || Number.isNaN(Date.parse(req.queuedAt))) throw new Error(`invalid queuedAt ${JSON.stringify(req.queuedAt)}`);
      } catch (err) {
        log.warn({ file, err: (err as Error).message }, 'unreadable queued DEL dropped');
        await unlink(file).catch(() => undefined);
        continue;
      }
      const perform = async (): Promise<void> => {
        const rec = this.records.get(keyOf(req));
        const who = { containerID: req.containerID, ifname: req.ifname, queuedAt: req.queuedAt };
        if (rec && Date.parse(rec.createdAt) > Date.parse(req.queuedAt)) {
          // The attachment was made again after this DEL was queued: the DEL is not for it.
          await unlinkIfThere(file);
          log.info({ ...who, ip: rec.ip, createdAt: rec.createdAt }, 'queued DEL older than the endpoint; dropped');
          return;
        }
        await this.remove(rec ?? { containerID: req.containerID, ifname: req.ifname });
        await unlinkIfThere(file);
        log.info({ ...who, ip: rec?.ip, known: rec !== undefined }, 'queued DEL performed');
      };
      try {
        await (this.loaded ? this.exclusive(req, perform) : perform());
      } catch (err) {
        again = true;
        log.error({ file, containerID: req.containerID, ifname: req.ifname, err: (err as Error).message }, 'queued DEL failed; tried again later');
      }
    }
    if (again && !this.closed && this.retry === undefined) {
      this.retry = setTimeout(() => {
        this.retry = undefined;
        void this.track(this.performQueuedDels());
      }, QUEUE_RETRY_MS);
      this.retry.unref();
    }
  }

  /** A DEL that reached the agent supersedes the one queued for the same attachment. */
  private async dropQueuedDel(a: Attachment): Promise<void> {
    await unqueueDel(this.o.socket, a).catch((err: Error) =>
      this.o.log.warn({ containerID: a.containerID, ifname: a.ifname, err: err.message }, 'could not remove a queued DEL'));
  }

  /**
   * Stops taking requests (they get code 11), lets those under way finish, then closes the
   * address stores: a DEL that has removed the veth also releases the address and the record.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    this.retry = undefined;
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
    for (const s of this.stores.values()) s.close();
    this.stores.clear();
  }

  /** Keeps `p` among the operations close() waits for until it settles. */
  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const done = () => this.inflight.delete(p);
    p.then(done, done);
    return p;
  }

  /** The endpoints, oldest first. */
  list(): EndpointRecord[] {
    return [...this.records.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  register(api: ApiServer): void {
    const when = <T>(fn: (body: unknown) => Promise<T>) => (_req: unknown, body: unknown): Promise<T> => {
      if (this.closed) throw new CniApiError(503, ERR.TRY_AGAIN_LATER, 'the tulle agent is stopping; try again');
      if (!this.loaded) throw new CniApiError(503, ERR.TRY_AGAIN_LATER, 'the tulle agent is starting; try again');
      return this.track(fn(body)).catch((e: unknown) => {
        throw cniError(e);
      });
    };
    api.on('POST', new RegExp(`^${API_ADD}$`), when((b) => this.add(b)));
    api.on('POST', new RegExp(`^${API_DEL}$`), when(async (b) => (await this.del(b), {})));
    api.on('POST', new RegExp(`^${API_CHECK}$`), when(async (b) => (await this.check(b), {})));
    api.on('POST', new RegExp(`^${API_GC}$`), when((b) => this.gc(b)));
    api.on('GET', /^\/v1\/endpoints$/, () => this.list());
  }

  private get recordDir(): string {
    return join(this.o.dataDir, ENDPOINTS_DIR);
  }

  private recordFile(a: Attachment): string {
    return join(this.recordDir, `${attachmentDigest(a).slice(0, 32)}.json`);
  }

  /**
   * The subnets with an address store: the node's own (once settled) and every earlier one whose
   * directory is still on disk (a static config that changed, an etcd lease that was not renewed).
   */
  private async storeSubnets(): Promise<Cidr[]> {
    const found = new Map<string, Cidr>();
    const current = this.o.node().subnet;
    if (current) found.set(storeKey(current), current);
    const names = await readdir(join(this.o.dataDir, IPAM_DIR)).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [] as string[];
      throw e;
    });
    for (const name of names) {
      const m = STORE_DIR_RE.exec(name);
      if (!m || !isIPv4(m[1]!) || Number(m[2]) < 1 || Number(m[2]) > 30) continue;
      const subnet = subnetOf(`${m[1]}/${m[2]}`);
      if (!found.has(storeKey(subnet))) found.set(storeKey(subnet), subnet);
    }
    return [...found.values()];
  }

  /**
   * The node's current store. The first time for a subnet, it takes over the reservations that
   * stores of earlier subnets hold inside it (a static config changed from 10.244.1.0/24 to
   * 10.244.0.0/23), so an address a pod still uses is never handed out again.
   */
  private async currentStore(subnet: Cidr): Promise<HostLocalStore> {
    const store = await this.store(subnet);
    const key = storeKey(subnet);
    if (this.adoption?.key !== key) {
      const done = this.adopt(subnet, store);
      // A failed adoption is tried again by the next request.
      done.catch(() => {
        if (this.adoption?.done === done) this.adoption = undefined;
      });
      this.adoption = { key, done };
    }
    await this.adoption.done;
    return store;
  }

  private async adopt(subnet: Cidr, store: HostLocalStore): Promise<void> {
    const key = storeKey(subnet);
    for (const other of await this.storeSubnets()) {
      if (storeKey(other) === key || !overlaps(other, subnet)) continue;
      const held = (await (await this.store(other)).list()).filter((a) => inSubnet(a.ip, subnet));
      for (const c of await store.adopt(held)) {
        this.o.log.error({ ip: formatIpv4(c.ip), containerID: c.containerID, ifname: c.ifname, subnet: other.text, conflict: c.conflict },
          'an address held in an earlier subnet cannot be kept in the current one');
      }
      if (held.length > 0) this.o.log.warn({ from: other.text, to: subnet.text, addresses: held.length }, 'the node\'s subnet overlaps an earlier one; its reservations are kept');
    }
  }

  /** The subnet's address store, opened once. */
  private async store(subnet: Cidr): Promise<HostLocalStore> {
    // Keyed by its directory: two spellings of one subnet must not open (and lock) it twice.
    const key = storeKey(subnet);
    const open = this.stores.get(key);
    if (open) return open;
    let p = this.opening.get(key);
    if (!p) {
      const dir = join(this.o.dataDir, IPAM_DIR, key);
      p = HostLocalStore.open(dir, { net: subnet.net, prefix: subnet.prefix }).then((s) => {
        if (this.closed) {
          s.close();
          throw new Error('the endpoint registry is closed');
        }
        this.stores.set(key, s);
        return s;
      }).finally(() => this.opening.delete(key));
      this.opening.set(key, p);
    }
    return p;
  }

  /** Runs `fn` with the attachment marked busy; a concurrent operation on it gets code 11. */
  private async exclusive<T>(a: Attachment, fn: () => Promise<T>): Promise<T> {
    const key = keyOf(a);
    if (this.busy.has(key)) {
      throw new CniApiError(409, ERR.TRY_AGAIN_LATER, `another operation on container ${a.containerID} interface ${a.ifname} is in progress`);
    }
    this.busy.add(key);
    try {
      return await fn();
    } finally {
      this.busy.delete(key);
    }
  }

  async add(body: unknown): Promise<CniResult> {
    checkAttachment(body, true);
    const req = body as unknown as AddRequest;
    const network = checkNetwork(req.network);
    const netns = checkNetnsRef(req.netns);
    const node = this.o.node();
    if (!node.ready) throw new CniApiError(503, ERR.TRY_AGAIN_LATER, 'the tulle agent is starting; try again');
    const started = performance.now();
    return this.exclusive(req, async () => {
      const old = this.records.get(keyOf(req));
      if (old) {
        throw new CniApiError(409, ERR.ADDRESS_UNAVAILABLE,
          `container ${req.containerID} interface ${req.ifname} is already attached (${old.ip}); duplicate allocation is not allowed, DEL it first`);
      }
      // A DEL queued for this attachment before it is made again must not remove it later.
      await unqueueDel(this.o.socket, req).catch((e: Error) => {
        throw new CniApiError(503, ERR.TRY_AGAIN_LATER, `a DEL queued earlier for container ${req.containerID} interface ${req.ifname} could not be removed (${e.message}); try again`);
      });
      const undo: { what: string; run: () => Promise<unknown> }[] = [];
      try {
        const nsPath = await resolveNetns(netns);
        const { addr, prefix, gateway, routes, ipam } = await this.address(req, node, undo);
        const hostIfname = hostIfnameFor(req);
        const wired = await attachPod({
          podNetnsPath: nsPath, ifname: req.ifname, hostIfname, podIp: formatIpv4(addr), prefixLen: prefix,
          gatewayIp: formatIpv4(gateway), mtu: node.mtu, gsoMaxSegs: segmentsPerMessage(node.mtu),
          podMac: formatMac(randomLocalMac()), hostMac: formatMac(randomLocalMac()), routes,
        });
        undo.push({ what: `delete veth ${hostIfname}`, run: () => detachPod({ hostIfname }) });
        const rec: EndpointRecord = {
          network, containerID: req.containerID, ifname: req.ifname, ip: `${formatIpv4(addr)}/${prefix}`, gateway: formatIpv4(gateway),
          mac: wired.podMac, hostIfname, hostMac: wired.hostMac, mtu: node.mtu, netns: netns.path, ipam, routes,
          createdAt: new Date().toISOString(),
        };
        await writeFileAtomic(this.recordFile(rec), `${JSON.stringify(rec, null, 2)}\n`, 0o600);
        this.records.set(keyOf(rec), rec);
        const ms = Math.round(performance.now() - started);
        this.o.log.info({ containerID: rec.containerID, ifname: rec.ifname, ip: rec.ip, hostIfname, netns: rec.netns, ms }, 'endpoint added');
        return resultOf(rec, req.dns);
      } catch (e) {
        for (const u of undo.reverse()) {
          await u.run().catch((err: Error) => this.o.log.error({ step: u.what, err: err.message }, 'undoing a failed ADD step failed'));
        }
        const err = cniError(e);
        this.o.log.warn({ containerID: req.containerID, ifname: req.ifname, netns: netns.path, err: err.message }, 'ADD failed; undone');
        throw err;
      }
    });
  }

  /** The pod's address: the delegated plugin's, or one from the node's store (pushing its release). */
  private async address(req: AddRequest, view: NodeView, undo: { what: string; run: () => Promise<unknown> }[]) {
    const node = { ...view, subnet: this.subnet() };
    const nodeGateway = (node.subnet.net + 1) >>> 0;
    if (req.delegated) {
      const v4 = (req.delegated.ips ?? []).find((x) => !x.address.includes(':'));
      if (!v4) throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG, 'the ipam plugin returned no IPv4 address');
      const { ip: addr, prefix } = cidrParts('ipam result', v4.address);
      if (!inSubnet(addr, node.subnet)) {
        throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG,
          `address ${v4.address} from the ipam plugin is outside this node's subnet ${node.subnet.text}; the overlay routes only that subnet here`);
      }
      const gateway = v4.gateway !== undefined && isIPv4(v4.gateway) ? parseIpv4(v4.gateway) : nodeGateway;
      // Inside the subnet, only its network and broadcast addresses fall outside its host range.
      const hosts = hostRange(node.subnet);
      const reserved = addr < hosts.first ? `the subnet's network address (the node's overlay device has it)`
        : addr > hosts.last ? `the subnet's broadcast address` : addr === gateway ? `the pod's gateway` : '';
      if (reserved !== '') {
        throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG, `address ${v4.address} from the ipam plugin is ${reserved}; a pod cannot have it`);
      }
      const routes: PodRoute[] = [];
      for (const r of (req.delegated.routes ?? []) as CniRoute[]) {
        if (r.dst.includes(':')) continue;
        if (DEFAULT_DST.has(r.dst)) {
          // The pod's default route is always via its gateway, where tulle's routes start.
          if (r.gw !== undefined && r.gw !== formatIpv4(gateway)) {
            throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG,
              `the ipam plugin's default route is via ${r.gw}, not via the pod's gateway ${formatIpv4(gateway)}; tulle routes pods only through their gateway`);
          }
          continue;
        }
        routes.push({ dst: r.dst, gw: r.gw ?? formatIpv4(gateway) });
      }
      return { addr, prefix, gateway, routes, ipam: 'delegated' as const };
    }
    let want: string | undefined;
    try {
      want = requestedAddress(Array.isArray(req.requestedIPs) ? req.requestedIPs.map(String) : []);
    } catch (e) {
      throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG, (e as Error).message);
    }
    const requested = want === undefined ? undefined : parseIpv4(want);
    const { subnet, store, addr } = await allocateInSubnet({
      subnet: () => this.subnet(), store: (s) => this.currentStore(s), log: this.o.log,
    }, req.containerID, req.ifname, requested);
    undo.push({ what: `release ${formatIpv4(addr)}`, run: () => store.release(req.containerID, req.ifname, addr) });
    return { addr, prefix: subnet.prefix, gateway: (subnet.net + 1) >>> 0, routes: [] as PodRoute[], ipam: 'agent' as const };
  }

  async del(body: unknown): Promise<void> {
    checkAttachment(body);
    const req = body as unknown as DelRequest;
    const started = performance.now();
    await this.exclusive(req, async () => {
      const rec = this.records.get(keyOf(req));
      await this.remove(rec ?? { containerID: req.containerID, ifname: req.ifname });
      await this.dropQueuedDel(req);
      const ms = Math.round(performance.now() - started);
      this.o.log.info({ containerID: req.containerID, ifname: req.ifname, ip: rec?.ip, known: rec !== undefined, ms }, 'endpoint deleted');
    });
  }

  /** Deletes the host veth (with it the pod end and the /32 route), releases the address, forgets the record. */
  private async remove(a: Attachment & Partial<EndpointRecord>): Promise<string[]> {
    const hostIfname = a.hostIfname ?? hostIfnameFor(a);
    await detachPod({ hostIfname });
    const released: string[] = [];
    if (a.ipam !== 'delegated') {
      // The address is in the store of the subnet it came from, which the node may have left
      // since, and in the current one too when that overlaps it (adopt): every store
      // lets go of what the attachment holds.
      const hint = a.ip ? parseIpv4(a.ip.split('/')[0]!) : undefined;
      // An adoption in progress could copy this attachment's address after it is released here.
      await this.adoption?.done.catch(() => undefined);
      for (const subnet of await this.storeSubnets()) {
        const store = await this.store(subnet);
        for (const ip of await store.release(a.containerID, a.ifname, hint)) {
          if (!released.includes(formatIpv4(ip))) released.push(formatIpv4(ip));
        }
      }
    }
    await unlinkIfThere(this.recordFile(a));
    this.records.delete(keyOf(a));
    return released;
  }

  async check(body: unknown): Promise<void> {
    checkAttachment(body);
    const req = body as unknown as CheckRequest;
    const netns = checkNetnsRef(req.netns);
    const prev = req.prevResult;
    if (!isObject(prev) || !Array.isArray(prev.interfaces) || !Array.isArray(prev.ips) || !Array.isArray(prev.routes)) {
      throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG, 'CHECK needs prevResult with interfaces, ips and routes');
    }
    await this.exclusive(req, async () => {
      const rec = this.records.get(keyOf(req));
      const what = `container ${req.containerID} interface ${req.ifname}`;
      if (!rec) throw new CniApiError(404, ERR.CHECK_FAILED, `CHECK ${what}: the agent has no such endpoint`);
      const store = rec.ipam === 'agent' ? await this.store(subnetOf(rec.ip)) : undefined;
      const problems = await compareEndpoint(rec, prev, await resolveNetns(netns), store);
      const subnet = this.o.node().subnet;
      if (subnet && !inSubnet(parseIpv4(rec.ip.split('/')[0]!), subnet)) {
        problems.push(`address ${rec.ip} is outside the node's subnet ${subnet.text}, the only one the overlay routes here (the pod needs a new ADD)`);
      }
      if (problems.length > 0) throw new CniApiError(409, ERR.CHECK_FAILED, `CHECK ${what}: ${problems.join('; ')}`);
    });
  }

  /** Everything that differs between the record, prevResult and the kernel; empty when all agree. */
  /** Releases every endpoint of `network` and every unrecorded address not in `valid`. */
  async gc(body: unknown): Promise<GcResponse> {
    if (!isObject(body)) throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG, 'request body must be a JSON object');
    const req = body as unknown as GcRequest;
    const network = checkNetwork(req.network);
    if (!Array.isArray(req.valid)) throw new CniApiError(400, ERR.INVALID_NETWORK_CONFIG, 'GC needs the list of valid attachments');
    const listed = req.valid.filter(isObject) as unknown as Attachment[];
    const valid = new Set(listed.map(keyOf));
    // An address file from host-local before it recorded interfaces names only the container.
    const validContainers = new Set(listed.map((a) => String(a.containerID)));
    const released: GcResponse['released'] = [];
    const errors: string[] = [];
    const drop = async (a: Attachment & Partial<EndpointRecord>): Promise<void> => {
      try {
        await this.exclusive(a, async () => {
          const ip = (await this.remove(a))[0] ?? a.ip?.split('/')[0];
          released.push(ip === undefined ? { containerID: a.containerID, ifname: a.ifname } : { containerID: a.containerID, ifname: a.ifname, ip });
        });
      } catch (e) {
        errors.push(`${a.containerID}/${a.ifname}: ${(e as Error).message}`);
      }
    };
    for (const rec of this.list()) {
      if (rec.network === network && !valid.has(keyOf(rec))) await drop(rec);
    }
    // Addresses without any record (an agent crash between allocation and record): stale unless valid.
    for (const subnet of await this.storeSubnets()) {
      for (const a of await (await this.store(subnet)).list()) {
        if (valid.has(keyOf(a)) || this.records.has(keyOf(a)) || (a.ifname === '' && validContainers.has(a.containerID))) continue;
        await drop({ containerID: a.containerID, ifname: a.ifname });
      }
    }
    if (released.length > 0) this.o.log.info({ network, released }, 'GC released stale endpoints');
    if (errors.length > 0) throw new CniApiError(500, ERR.INTERNAL, `GC of network ${network}: ${errors.join('; ')}`);
    return { released };
  }
}
