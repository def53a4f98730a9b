/**
 * Where the kernel drops packets on tulle's behalf, before a worker sees them, so that no
 * counter of the data path can count them: the TUN device's queue (the kernel puts a pod's packet
 * there and drops it when the queue is full, because the workers did not read in time: the
 * device's tx drops) and the agent's VXLAN receive sockets (a datagram for which the socket has no
 * buffer space left: the socket's drops). Read on demand, for status and metrics, from the
 * agent's own network namespace (/proc/self/net).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface KernelDrops {
  /** Packets dropped at the TUN device's queue (its tx drops); null when the device is not listed. */
  tunTxDropped: number | null;
  /** Datagrams dropped at this process's UDP sockets bound to the VXLAN port; null when unreadable. */
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
 * The drops summed over the sockets in /proc/net/udp text whose local port is `port` and whose
 * inode is in `inodes` (this process's sockets).
 */
export function udpSocketDrops(text: string, port: number, inodes: ReadonlySet<number>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
    const f = line.trim().split(/\s+/);
    if (f.length < 13 || !/^\d+:$/.test(f[0]!)) continue;
    const local = f[1]!.split(':');
    if (local.length !== 2 || Number.parseInt(local[1]!, 16) !== port || !inodes.has(Number(f[9]))) continue;
    const drops = Number(f[12]);
    if (Number.isSafeInteger(drops) && drops >= 0) sum += drops;
  }
  return sum;
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

/** The kernel's drops for this agent's TUN `device` and its receive sockets on `port`. */
export function kernelDrops(device: string, port: number): KernelDrops {
  let tunTxDropped: number | null = null;
  let rxSocketDrops: number | null = null;
  try {
    tunTxDropped = netDevTxDropped(readFileSync('/proc/self/net/dev', 'utf8'), device);
  } catch {
    // left null: not readable here
  }
  try {
    rxSocketDrops = udpSocketDrops(readFileSync('/proc/self/net/udp', 'utf8'), port, ownSocketInodes());
  } catch {
    // left null
  }
  return { tunTxDropped, rxSocketDrops };
}
