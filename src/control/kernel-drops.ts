/**
 * Where the kernel drops packets on tulle's behalf, before a worker sees them, so that no
 * counter of the data path can count them: the TUN device's queues (the kernel puts a pod's
 * packet in a worker's queue and drops it when the queue is full because the worker did not read
 * in time, or while no worker has the queue open, during a restart: the device's tx drops) and
 * the agent's VXLAN receive sockets (a receive buffer the socket had no room for, or one that
 * failed its checksum: the socket's drops; with UDP_GRO one buffer can hold up to 64 datagrams).
 * Read on demand, for status and metrics, from the agent's own network namespace (/proc/self/net).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface KernelDrops {
  /** Packets dropped at the TUN device's queues (its tx drops); null when the device is not listed. */
  tunTxDropped: number | null;
  /**
   * Receive buffers dropped at this process's UDP sockets on the VXLAN port, since the agent
   * started (sockets a restarted worker closed included, as last read); null when unreadable.
   */
  rxSocketDrops: number | null;
}

/** The transmit drop count of `device` in /proc/net/dev text, or null when it is not listed. */
export function netDevTxDropped(text: string, device: string): number | null {
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim() !== device) continue;
    // Receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets errs drop ...
    const v = Number(line.slice(colon + 1).trim().split(/\s+/)[11]);
    return Number.isSafeInteger(v) && v >= 0 ? v : null;
  }
  return null;
}

/**
 * The drops of each socket in /proc/net/udp text whose local port is `port` and whose inode is in
 * `inodes` (this process's sockets), by inode.
 */
export function udpSocketDrops(text: string, port: number, inodes: ReadonlySet<number>): Map<number, number> {
  const drops = new Map<number, number>();
  for (const line of text.split('\n')) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
    const f = line.trim().split(/\s+/);
    if (f.length < 13 || !/^\d+:$/.test(f[0]!)) continue;
    const local = f[1]!.split(':');
    const inode = Number(f[9]);
    if (local.length !== 2 || Number.parseInt(local[1]!, 16) !== port || !inodes.has(inode)) continue;
    const n = Number(f[12]);
    if (Number.isSafeInteger(n) && n >= 0) drops.set(inode, n);
  }
  return drops;
}

/**
 * A running total of socket drops that does not fall when a socket closes: a worker's receive
 * socket goes with the worker, and its replacement counts from zero. The last count read of each
 * socket that has gone is kept (drops after that last read and before the close are not seen).
 */
export class SocketDropTotal {
  private readonly last = new Map<number, number>();
  private gone = 0;

  /** Takes the current per-socket counts (by inode) and returns the total since the first call. */
  update(current: ReadonlyMap<number, number>): number {
    for (const [inode, n] of this.last) if (!current.has(inode)) this.gone += n;
    this.last.clear();
    let sum = this.gone;
    for (const [inode, n] of current) {
      this.last.set(inode, n);
      sum += n;
    }
    return sum;
  }
}

/** Inodes of the sockets this process has open (/proc/self/fd links of the form socket:[N]). */
export function ownSocketInodes(fdDir = '/proc/self/fd'): Set<number> {
  const inodes = new Set<number>();
  for (const fd of readdirSync(fdDir)) {
    let target: string;
    try {
      target = readlinkSync(`${fdDir}/${fd}`);
    } catch {
      continue; // closed since the listing
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) inodes.add(Number(m[1]));
  }
  return inodes;
}

/** Reads the kernel's drops for this agent's TUN `device` and its receive sockets on `port`. */
export class KernelDropReader {
  private readonly sockets = new SocketDropTotal();

  constructor(
    readonly device: string,
    readonly port: number,
  ) {}

  read(): KernelDrops {
    let tunTxDropped: number | null = null;
    let rxSocketDrops: number | null = null;
    try {
      tunTxDropped = netDevTxDropped(readFileSync('/proc/self/net/dev', 'utf8'), this.device);
    } catch {
      // left null: not readable here
    }
    try {
      rxSocketDrops = this.sockets.update(udpSocketDrops(readFileSync('/proc/self/net/udp', 'utf8'), this.port, ownSocketInodes()));
    } catch {
      // left null
    }
    return { tunTxDropped, rxSocketDrops };
  }
}
