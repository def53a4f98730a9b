/**
 * The node's pod addresses, kept on disk the way the CNI `host-local` IPAM plugin keeps them, so
 * they survive agent restarts and the directory reads like any host-local one:
 *
 *   <dir>/lock                 flock'd around every change (host-local's go-filemutex does the same)
 *   <dir>/last_reserved_ip.0   the address handed out last (allocation continues after it)
 *   <dir>/10.244.1.5           one file per address in use, mode 0600, created O_EXCL,
 *                              holding "<containerID>\r\n<ifname>" (a bare "<containerID>" from
 *                              older host-local versions is still recognised)
 *
 * Range: the subnet's hosts from network+1 to broadcast-1, minus the gateway (network+1, the
 * address every pod's host veth carries); network+0 is the overlay device's own address.
 * Allocation is round-robin from last_reserved_ip+1, wrapping, so a crash-looping pod does not get
 * the same address again until the range wraps (host-local's behaviour).
 *
 * Concurrency: every operation runs under an in-process queue (one at a time in this agent) and,
 * inside it, the directory's flock (against any other process using the directory). An address
 * file is only ever created with O_EXCL, so no address can be handed out twice even if two
 * writers somehow raced.
 */
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import * as native from '../io/native.js';
import { formatIpv4, parseIpv4 } from '../wire/ipv4.js';
import { createFileExclusive, writeFileAtomic } from './state.js';

export const LOCK_FILE = 'lock';
export const LAST_RESERVED_FILE = 'last_reserved_ip.0';
/** How long an operation waits for another process's flock before giving up. */
export const LOCK_TIMEOUT_MS = 10_000;
const LOCK_POLL_MS = 5;
const EAGAIN = 11;

export interface IpamRange {
  /** Subnet network address and prefix (host-order u32). */
  net: number;
  prefix: number;
}

export interface Allocation {
  ip: number;
  containerID: string;
  ifname: string;
}

/** Why an address could not be handed out; `reason` maps to a CNI error code. */
export class IpamError extends Error {
  readonly code = 'ERR_IPAM';
  constructor(
    message: string,
    readonly reason: 'exhausted' | 'taken' | 'out-of-range' | 'busy',
  ) {
    super(message);
    this.name = 'IpamError';
  }
}

/** The owner line host-local writes: "<containerID>\r\n<ifname>". */
export function ownerText(containerID: string, ifname: string): string {
  return `${containerID}\r\n${ifname}`;
}

/** Parses an address file's content; a legacy file holds only the container ID. */
export function parseOwner(text: string): { containerID: string; ifname: string | undefined } {
  const [id, ifname] = text.split('\r\n');
  return { containerID: (id ?? '').trim(), ifname: ifname === undefined ? undefined : ifname.trim() };
}

function isIpv4Name(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name);
}

/** A subnet's host addresses: network+1 to broadcast-1. */
export function hostRange(range: IpamRange): { first: number; last: number } {
  return { first: (range.net + 1) >>> 0, last: (range.net + 2 ** (32 - range.prefix) - 2) >>> 0 };
}

export class HostLocalStore {
  private queue: Promise<unknown> = Promise.resolve();
  private lockFd = -1;
  readonly first: number;
  readonly last: number;
  readonly gateway: number;

  private constructor(
    readonly dir: string,
    readonly range: IpamRange,
  ) {
    const hosts = hostRange(range);
    this.first = hosts.first;
    this.last = hosts.last;
    this.gateway = hosts.first;
  }

  /** Creates the directory if needed and opens its lock file. */
  static async open(dir: string, range: IpamRange): Promise<HostLocalStore> {
    if (range.prefix < 1 || range.prefix > 30) throw new RangeError(`IPAM subnet prefix /${range.prefix} is too small (needs /30 or larger)`);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const s = new HostLocalStore(dir, range);
    s.lockFd = native.openLockFile(join(dir, LOCK_FILE));
    return s;
  }

  close(): void {
    if (this.lockFd >= 0) native.closeFd(this.lockFd);
    this.lockFd = -1;
  }

  /** "10.244.1.2-10.244.1.254" (the gateway excluded), for messages. */
  describeRange(): string {
    return `${formatIpv4(this.first === this.gateway ? this.first + 1 : this.first)}-${formatIpv4(this.last)}`;
  }

  inRange(ip: number): boolean {
    return ip >= this.first && ip <= this.last && ip !== this.gateway;
  }

  /**
   * Reserves an address for (containerID, ifname): `requested` if given (it must be in range and
   * free), else the next free one after last_reserved_ip. Throws IpamError.
   */
  allocate(containerID: string, ifname: string, requested?: number): Promise<number> {
    return this.locked(async () => {
      if (requested !== undefined) {
        if (!this.inRange(requested)) {
          throw new IpamError(`requested IP ${formatIpv4(requested)} is outside this node's range ${this.describeRange()}`, 'out-of-range');
        }
        if (!(await this.reserve(requested, containerID, ifname))) {
          const owner = await readFile(this.file(requested), 'utf8').catch(() => '?');
          throw new IpamError(`requested IP ${formatIpv4(requested)} is already allocated to container ${JSON.stringify(parseOwner(owner).containerID)}`, 'taken');
        }
        return requested;
      }
      const size = this.last - this.first + 1;
      const lastReserved = await this.lastReserved();
      let ip = lastReserved !== undefined && lastReserved >= this.first && lastReserved <= this.last ? lastReserved + 1 : this.first;
      for (let i = 0; i < size; i++, ip++) {
        if (ip > this.last) ip = this.first;
        if (ip === this.gateway) continue;
        if (await this.reserve(ip, containerID, ifname)) return ip;
      }
      throw new IpamError(`no IP addresses available in range ${this.describeRange()}`, 'exhausted');
    });
  }

  /**
   * Releases the address files owned by (containerID, ifname); `hint` is checked first so the
   * usual case reads one file. Returns the released addresses (none is not an error).
   */
  release(containerID: string, ifname: string, hint?: number): Promise<number[]> {
    return this.locked(async () => {
      if (hint !== undefined && (await this.owns(hint, containerID, ifname))) {
        await unlink(this.file(hint));
        return [hint];
      }
      const released: number[] = [];
      for (const a of await this.scan()) {
        if (a.containerID === containerID && (a.ifname === ifname || a.ifname === '')) {
          await unlink(this.file(a.ip)).catch(() => undefined);
          released.push(a.ip);
        }
      }
      return released;
    });
  }

  /**
   * Reserves each address for the owner it has elsewhere (another store of an overlapping
   * subnet), without moving last_reserved_ip. Returns those it could not keep: outside this
   * range (the gateway, the device's address) or held here by someone else.
   */
  adopt(held: readonly Allocation[]): Promise<(Allocation & { conflict: string })[]> {
    return this.locked(async () => {
      const lost: (Allocation & { conflict: string })[] = [];
      for (const a of held) {
        if (!this.inRange(a.ip)) {
          lost.push({ ...a, conflict: `outside the range ${this.describeRange()} (the gateway or the device's address)` });
          continue;
        }
        if (await createFileExclusive(this.file(a.ip), ownerText(a.containerID, a.ifname), 0o600)) continue;
        if (!(await this.owns(a.ip, a.containerID, a.ifname))) {
          const owner = await readFile(this.file(a.ip), 'utf8').catch(() => '?');
          lost.push({ ...a, conflict: `held in ${this.dir} by container ${JSON.stringify(parseOwner(owner).containerID)}` });
        }
      }
      return lost;
    });
  }

  /** Every address in use and its owner. */
  list(): Promise<Allocation[]> {
    return this.locked(() => this.scan());
  }

  /** Whether `ip` is allocated to (containerID, ifname). */
  isOwnedBy(ip: number, containerID: string, ifname: string): Promise<boolean> {
    return this.locked(() => this.owns(ip, containerID, ifname));
  }

  private file(ip: number): string {
    return join(this.dir, formatIpv4(ip));
  }

  private async owns(ip: number, containerID: string, ifname: string): Promise<boolean> {
    const text = await readFile(this.file(ip), 'utf8').catch(() => undefined);
    if (text === undefined) return false;
    const o = parseOwner(text);
    return o.containerID === containerID && (o.ifname === undefined || o.ifname === ifname);
  }

  private async scan(): Promise<Allocation[]> {
    const out: Allocation[] = [];
    for (const name of await readdir(this.dir)) {
      if (!isIpv4Name(name)) continue;
      const text = await readFile(join(this.dir, name), 'utf8').catch(() => undefined);
      if (text === undefined) continue;
      const o = parseOwner(text);
      out.push({ ip: parseIpv4(name), containerID: o.containerID, ifname: o.ifname ?? '' });
    }
    return out.sort((a, b) => a.ip - b.ip);
  }

  /**
   * Creates the address file, complete with its owner, unless it exists; false when it does. A
   * crash never leaves an empty address file (one nobody could release).
   */
  private async reserve(ip: number, containerID: string, ifname: string): Promise<boolean> {
    if (!(await createFileExclusive(this.file(ip), ownerText(containerID, ifname), 0o600))) return false;
    try {
      await writeFileAtomic(join(this.dir, LAST_RESERVED_FILE), formatIpv4(ip), 0o644);
    } catch (e) {
      // The allocation fails as a whole: its address is not left taken.
      await unlink(this.file(ip)).catch(() => undefined);
      throw e;
    }
    return true;
  }

  private async lastReserved(): Promise<number | undefined> {
    const text = await readFile(join(this.dir, LAST_RESERVED_FILE), 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    try {
      return parseIpv4(text.trim());
    } catch {
      return undefined;
    }
  }

  /** Runs `fn` after every earlier operation of this store, holding the directory's flock. */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      await this.flock();
      try {
        return await fn();
      } finally {
        native.funlock(this.lockFd);
      }
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async flock(): Promise<void> {
    if (this.lockFd < 0) throw new Error(`IPAM store ${JSON.stringify(this.dir)} is closed`);
    const deadline = Date.now() + LOCK_TIMEOUT_MS;
    for (;;) {
      const r = native.flock(this.lockFd, true, true);
      if (r === 0) return;
      if (r !== -EAGAIN) native.check(r, 'flock', `lock file "${join(this.dir, LOCK_FILE)}"`);
      if (Date.now() > deadline) {
        throw new IpamError(`IPAM directory ${JSON.stringify(this.dir)} is locked by another process for over ${LOCK_TIMEOUT_MS} ms`, 'busy');
      }
      await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
    }
  }
}
