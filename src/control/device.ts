/**
 * The overlay TUN device in L3 mode.
 *
 * The agent's main thread creates the device by opening its first queue
 * with IFF_TUN_EXCL (so an existing device of that name, another agent's or a
 * persistent leftover, is refused with EBUSY) and immediately detaches that
 * queue: it carries no traffic, but it keeps the device alive while workers
 * attach and re-attach their own queues. The device is not persistent, so
 * when the agent exits, by signal or crash, the kernel deletes it together
 * with its address and routes.
 */
import * as native from '../io/native.js';
import { errnoName } from '../io/errors.js';
import { formatIpv4 } from '../wire/ipv4.js';
import { ip } from './ip.js';

/** Fail if the name exists (a TUNSETIFF flag, absent from older headers). */
export const IFF_TUN_EXCL = 0x8000;
export const L3_TUN_FLAGS = native.IFF_TUN | native.IFF_NO_PI | native.IFF_MULTI_QUEUE;
/**
 * Packets the kernel queues for each TUN queue before dropping. The default (500) overflows in
 * a burst of small packets while a worker is busy with the other direction.
 */
export const TUN_TX_QUEUE_LEN = 10_000;

export interface DeviceSpec {
  name: string;
  mtu: number;
  /** Host-order IPv4 put on the device as /32. */
  address: number;
  /** Cluster network routed to the device. */
  route: string;
}

/** Offloads asked of the device with IFF_VNET_HDR: checksum and TCP segmentation (TSO6 is required with TSO4). */
export const TUN_OFFLOADS = native.TUN_F_CSUM | native.TUN_F_TSO4 | native.TUN_F_TSO6;

export class TunDevice {
  private anchorFd = -1;
  private routed = false;
  /** IFF_* flags every queue of this device is opened with. */
  flags = L3_TUN_FLAGS;
  /** The kernel took UDP segmentation offload (USO, Linux 6.2+): UDP_L4 GSO writes are accepted. */
  uso = false;
  /** Why offloads are off although asked for, if they are. */
  offloadError: string | undefined;

  private constructor(readonly spec: DeviceSpec) {}

  /**
   * Creates the device (no address, down). With `offloads`, the queues carry a virtio-net header
   * and the kernel may hand over TCP super-packets; if the kernel refuses, the device is made
   * again without them. Throws SysError EBUSY when the name is taken.
   */
  static create(spec: DeviceSpec, offloads: boolean): TunDevice {
    const d = new TunDevice(spec);
    if (offloads) {
      const fd = native.openTun(spec.name, L3_TUN_FLAGS | native.IFF_VNET_HDR | IFF_TUN_EXCL);
      // USO first (the kernel only enables it with both bits); without it, TSO and checksums.
      d.uso = native.tunSetOffload(fd, TUN_OFFLOADS | native.TUN_F_USO4 | native.TUN_F_USO6) === 0;
      const r = d.uso ? 0 : native.tunSetOffload(fd, TUN_OFFLOADS);
      if (r === 0) {
        d.flags = L3_TUN_FLAGS | native.IFF_VNET_HDR;
        d.adopt(fd);
        return d;
      }
      d.offloadError = `TUNSETOFFLOAD refused: ${errnoName(-r)}`;
      native.closeFd(fd); // the device goes with its only queue
    }
    d.adopt(native.openTun(spec.name, L3_TUN_FLAGS | IFF_TUN_EXCL));
    return d;
  }

  /** Keeps `fd` as the detached anchor queue. */
  private adopt(fd: number): void {
    const r = native.tunSetQueue(fd, false);
    if (r < 0) {
      native.closeFd(fd);
      native.check(r, 'TUNSETQUEUE', `detach anchor queue of "${this.spec.name}"`);
    }
    this.anchorFd = fd;
  }

  /**
   * Address, MTU, link up; call once workers have attached their queues. The overlay is IPv4: the
   * device gets no IPv6 link-local address, so the kernel sends no IPv6 neighbour discovery into
   * it (each such packet would reach a worker only to be dropped as not IPv4).
   */
  async configure(): Promise<void> {
    const { name, mtu, address } = this.spec;
    await ip(['link', 'set', 'dev', name, 'mtu', String(mtu), 'txqueuelen', String(TUN_TX_QUEUE_LEN), 'addrgenmode', 'none']);
    await ip(['addr', 'add', `${formatIpv4(address)}/32`, 'dev', name]);
    await ip(['link', 'set', 'dev', name, 'up']);
  }

  /** Routes the cluster network to the device. */
  async addRoute(): Promise<void> {
    await ip(['route', 'add', this.spec.route, 'dev', this.spec.name]);
    this.routed = true;
  }

  /** Removes the route and the device. Safe to call more than once. */
  async destroy(): Promise<void> {
    if (this.routed) {
      this.routed = false;
      await ip(['route', 'del', this.spec.route, 'dev', this.spec.name]).catch(() => undefined);
    }
    if (this.anchorFd >= 0) {
      native.closeFd(this.anchorFd);
      this.anchorFd = -1;
    }
    // With every queue closed the kernel deletes the device; make sure of it.
    if (native.ifNameToIndex(this.spec.name) > 0) {
      await ip(['link', 'del', 'dev', this.spec.name]).catch(() => undefined);
    }
  }
}
