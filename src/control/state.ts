/**
 * State the agent keeps across restarts in its data directory, and the
 * files it writes for others (flannel's subnet.env). Writes are atomic and
 * durable (cni/durable-file.ts).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../cni/durable-file.js';
import { formatMac, parseMac, randomLocalMac } from '../wire/mac.js';

export { createFileExclusive, writeFileAtomic } from '../cni/durable-file.js';

export const VTEP_MAC_FILE = 'vtep-mac';
/** The etcd store's record of the subnet this node last held. */
export const LAST_SUBNET_FILE = 'subnet';
/** The endpoint records (endpoints.ts). */
export const ENDPOINTS_DIR = 'endpoints';
/** One host-local address directory per subnet the node has held (endpoints.ts, ipam.ts). */
export const IPAM_DIR = 'ipam';
/** Everything the agent keeps directly in its data directory. */
export const DATA_DIR_ENTRIES: readonly string[] = [VTEP_MAC_FILE, LAST_SUBNET_FILE, ENDPOINTS_DIR, IPAM_DIR];

/** `<socket>.lock`: held (flock) by the agent serving the socket (api.ts). */
export function socketLockPath(socket: string): string {
  return `${socket}.lock`;
}

/**
 * The node's VTEP MAC: the configured one if given, else the one generated
 * on first start and kept in `dataDir` so peers' neighbour entries stay valid
 * across restarts. Returns the MAC and whether it was newly generated.
 */
export async function vtepMac(dataDir: string, configured: Uint8Array | undefined): Promise<{ mac: Uint8Array; generated: boolean }> {
  const file = join(dataDir, VTEP_MAC_FILE);
  if (configured) {
    await writeFileAtomic(file, `${formatMac(configured)}\n`);
    return { mac: configured, generated: false };
  }
  try {
    const text = (await readFile(file, 'utf8')).trim();
    try {
      return { mac: parseMac(text), generated: false };
    } catch {
      throw new Error(`${file} holds "${text}", which is not a MAC address; fix or remove it`);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const mac = randomLocalMac();
  await writeFileAtomic(file, `${formatMac(mac)}\n`);
  return { mac, generated: true };
}

/** flannel's subnet.env: the node's subnet as its first host address with the prefix. */
export function subnetEnv(network: string, subnetFirstHost: string, prefix: number, mtu: number): string {
  return [
    `FLANNEL_NETWORK=${network}`,
    `FLANNEL_SUBNET=${subnetFirstHost}/${prefix}`,
    `FLANNEL_MTU=${mtu}`,
    'FLANNEL_IPMASQ=false',
    '',
  ].join('\n');
}
