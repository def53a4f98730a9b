/**
 * The one module that loads the native addon (native-bindings/, built to
 * native-bindings/build/Release/tulle_native.node) and the one file that types its whole surface.
 * It is longer than our usual file because that surface, its validation and its contracts belong
 * together.
 *
 * Three layers:
 * - `nativeAddon`: the raw addon. No validation beyond the addon's own checks (which throw
 *   TypeError/RangeError rather than touch memory outside a buffer). For loops that validated
 *   their slabs once at start-up.
 * - Functions with the addon's names (`tunRead`, `udpSend`, ...): validate every argument with a
 *   TypeError (wrong type) or RangeError (wrong value or size) naming the function and argument,
 *   then call the addon. They never throw for a failed system call: they return `-errno` (the
 *   data path counts it), and they allocate nothing unless they throw.
 * - Control-path helpers (`openTun`, `openUdp`, `closeFd`, ...): throw `SysError` on failure.
 *
 * Buffers: every call reads or writes the caller's typed arrays only while it runs and keeps no
 * reference; the caller owns them before and after. Views on a SharedArrayBuffer are fine as long
 * as no other thread touches the same bytes during the call. Batches hold at most `MAX_BATCH`
 * packets and cost one native call (one recvmmsg, or one sendmmsg per socket).
 *
 * File descriptors belong to the thread (Node-API environment) that opened them: its `close`
 * closes them, and when the thread exits or is terminated the addon closes those still open.
 * Another thread may signal an eventfd it was handed (`eventfdSignal`) but not close it, and must
 * stop using the number once the owning thread is gone. A thread blocked in `poll` cannot be
 * terminated until poll returns: give it an eventfd among its fds and signal that to wake it.
 *
 * IPv4 addresses are unsigned 32-bit numbers in host order with their natural meaning
 * (10.0.0.1 = 0x0a000001); ports are plain numbers.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from '../util/paths.js';
import { check } from './errors.js';

export { check, SysError } from './errors.js';

// ---------------------------------------------------------------------------------------------
// Constants. Kernel values are checked against the addon's compiled-in headers at load time.

/** Largest batch for tunRead/tunWrite/udpRecv/udpSend. */
export const MAX_BATCH = 256;
/** Largest fd set for poll. */
export const MAX_POLL_FDS = 64;
/** Interface names are at most IFNAMSIZ - 1 bytes. */
export const IFNAMSIZ = 16;
/** Paths are at most PATH_MAX - 1 bytes. */
export const PATH_MAX = 4096;
/** CPU numbers are below MAX_CPUS (CPU_SETSIZE). */
export const MAX_CPUS = 1024;

/** TUNSETIFF flags (include/uapi/linux/if_tun.h). */
export const IFF_TUN = 0x0001;
export const IFF_TAP = 0x0002;
export const IFF_MULTI_QUEUE = 0x0100;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;

/** TUNSETOFFLOAD bits (USO4/USO6 need Linux 6.2 and are enabled only together). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

/** poll revents bits. */
export const POLLIN = 0x001;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;

/** Layout of the `stats` Int32Array filled by tunWrite and udpSend. */
export const STAT_OK = 0;
export const STAT_FAILED = 1;
export const STAT_LAST_ERRNO = 2;
/** udpSend: datagrams on the wire (a UDP_SEGMENT message counts each segment); tunWrite: packets written. */
export const STAT_DATAGRAMS = 3;
/** Bytes of the messages (packets) that went out. */
export const STAT_BYTES = 4;
export const STATS_LEN = 5;

/** Layout of a port's `state` Int32Array, filled by portWait (see the port functions of NativeAddon). */
export const PORT_REV_TUN = 0;
export const PORT_REV_RX = 1;
export const PORT_REV_WAKE = 2;
/** Packets portWait read from the TUN queue (0 when it was not readable), or -errno. */
export const PORT_TUN_COUNT = 3;
/** Messages portWait received (0 when the socket was not readable), or -errno. */
export const PORT_RX_COUNT = 4;
export const PORT_STATE_LEN = 5;
/** portBindSend's `mem`: which of the port's two buffers a send batch points into. */
export const PORT_TX_MEM = 0;
export const PORT_RX_MEM = 1;

// ---------------------------------------------------------------------------------------------
// The raw surface.

/** Constants compiled into the addon from the system headers. */
export interface NativeConstants {
  readonly MAX_BATCH: number;
  readonly MAX_POLL_FDS: number;
  readonly IFNAMSIZ: number;
  readonly IFF_TUN: number;
  readonly IFF_TAP: number;
  readonly IFF_MULTI_QUEUE: number;
  readonly IFF_NO_PI: number;
  readonly IFF_VNET_HDR: number;
  readonly TUN_F_CSUM: number;
  readonly TUN_F_TSO4: number;
  readonly TUN_F_TSO6: number;
  readonly TUN_F_TSO_ECN: number;
  readonly TUN_F_USO4: number;
  readonly TUN_F_USO6: number;
  readonly POLLIN: number;
  readonly POLLERR: number;
  readonly POLLHUP: number;
  readonly POLLNVAL: number;
  readonly PATH_MAX: number;
  readonly MAX_CPUS: number;
  readonly PORT_STATE_LEN: number;
}

/** The addon's exports. Contracts are on the validating wrappers below, which share the names. */
export interface NativeAddon {
  readonly constants: NativeConstants;
  tunOpen(name: string, flags: number): number;
  tunSetQueue(fd: number, attach: boolean): number;
  tunSetOffload(fd: number, bits: number): number;
  tunSetVnetHdrSize(fd: number, size: number): number;
  tunRead(fd: number, buf: Uint8Array, slotSize: number, headroom: number, lens: Int32Array, max: number, maxBytes?: number): number;
  tunWrite(fd: number, buf: Uint8Array, offs: Int32Array, lens: Int32Array, count: number, stats: Int32Array): number;
  udpOpen(ip: number, port: number, reusePort: boolean, bufBytes: number): number;
  udpLocalPort(fd: number): number;
  udpRecv(
    fd: number, buf: Uint8Array, slotSize: number, headroom: number,
    lens: Int32Array, srcIPs: Uint32Array, srcPorts: Uint16Array, max: number, segSizes?: Int32Array,
  ): number;
  udpSend(
    fds: Int32Array, buf: Uint8Array, offs: Int32Array, lens: Int32Array, sockIdx: Uint8Array,
    dstIPs: Uint32Array, dstPorts: Uint16Array, count: number, stats: Int32Array, segSizes?: Int32Array,
  ): number;
  udpSetGro(fd: number, on: boolean): number;
  udpGsoProbe(fd: number): number;
  csumBatch(buf: Uint8Array, offs: Int32Array, lens: Int32Array, sums: Uint32Array, count: number): number;
  tcpSegment(mem: Uint8Array, ip: number, ihl: number, thl: number, payload: number, mss: number, out: number, prefixLen: number): number;
  udpSegment(mem: Uint8Array, ip: number, ihl: number, payload: number, mss: number, out: number, prefixLen: number): number;
  poll(fds: Int32Array, revents: Int32Array, nfds: number, timeoutMs: number): number;
  eventfdOpen(): number;
  socketPair(fds: Int32Array): number;
  eventfdSignal(fd: number): number;
  eventfdDrain(fd: number): number;
  close(fd: number): number;
  ifNameToIndex(name: string): number;
  ifMtu(name: string): number;
  lockOpen(path: string): number;
  flock(fd: number, exclusive: boolean, nonBlocking: boolean): number;
  funlock(fd: number): number;
  threadCpus(out: Int32Array): number;
  pinThread(cpus: Int32Array, count: number): number;
  /*
   * A forwarding loop's I/O port (native-bindings/src/port.cc): its fds and the typed arrays it
   * keeps for life, bound once, so each call passes a handle and numbers. Every bound array is a
   * view of `arena`, a fixed-length ArrayBuffer (src/io/arena.ts) the addon holds until
   * portClose (or the thread's end); once the arena is detached every call of the port throws a
   * RangeError. Counts are checked against what was bound (RangeError) and each packet's offset
   * and length against its buffer (EINVAL in stats), as in the unbound calls. fds = [TUN queue,
   * receive socket, wake eventfd] and sendFds are copied; receive slots have no headroom.
   * Handles are not reused.
   */
  portOpen(
    arena: ArrayBuffer, fds: Int32Array, sendFds: Int32Array, txMem: Uint8Array, txSlot: number, tunLens: Int32Array,
    rxMem: Uint8Array, rxSlot: number, rxLens: Int32Array, rxSrcIPs: Uint32Array, rxSrcPorts: Uint16Array,
    rxSegs: Int32Array | undefined, stats: Int32Array, state: Int32Array,
  ): number;
  /** Binds send batch k (0 or 1) over txMem (mem 0) or rxMem (mem 1); segSizes enables portSend's gso. */
  portBindSend(
    port: number, k: number, mem: number, offs: Int32Array, lens: Int32Array, sockIdx: Uint8Array,
    dstIPs: Uint32Array, dstPorts: Uint16Array, segSizes?: Int32Array,
  ): number;
  /** Binds write batch k (0 or 1) over rxMem. */
  portBindWrite(port: number, k: number, offs: Int32Array, lens: Int32Array): number;
  /**
   * poll on the three fds for up to timeoutMs; drains the wake eventfd if it fired; then reads up
   * to tunMax packets (tunBudget bytes) from the TUN queue and receives up to rxMax messages if
   * poll reported each readable (revents exactly POLLIN) and neither reported an error. Fills the
   * port's state (PORT_STATE_LEN words). Returns the ready count, 0 on timeout or EINTR, or -errno.
   */
  portWait(port: number, timeoutMs: number, tunMax: number, tunHeadroom: number, tunBudget: number, rxMax: number): number;
  /** tunRead into the bound TUN slots. */
  portRead(port: number, max: number, headroom: number, budget: number): number;
  /** udpRecv into the bound receive slots (with segment sizes if rxSegs was bound). */
  portRecv(port: number, max: number): number;
  /** udpSend of send batch k's first count messages, filling the bound stats. */
  portSend(port: number, k: number, count: number, gso: boolean): number;
  /** tunWrite of write batch k's messages at..at+count, filling the bound stats. */
  portWrite(port: number, k: number, at: number, count: number): number;
  /** Releases the port's references: 0, or -EBADF if it was not open. */
  portClose(port: number): number;
}

// ---------------------------------------------------------------------------------------------
// Loading.

/** Where the built addon lives, relative to the package root. */
export const ADDON_PATH = 'native-bindings/build/Release/tulle_native.node';

const EXPECTED_CONSTANTS: Readonly<Record<keyof NativeConstants, number>> = {
  MAX_BATCH, MAX_POLL_FDS, IFNAMSIZ, IFF_TUN, IFF_TAP, IFF_MULTI_QUEUE, IFF_NO_PI, IFF_VNET_HDR,
  TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_USO4, TUN_F_USO6,
  POLLIN, POLLERR, POLLHUP, POLLNVAL, PATH_MAX, MAX_CPUS, PORT_STATE_LEN,
};

const FUNCTIONS: readonly Exclude<keyof NativeAddon, 'constants'>[] = [
  'tunOpen', 'tunSetQueue', 'tunSetOffload', 'tunSetVnetHdrSize', 'tunRead', 'tunWrite',
  'udpOpen', 'udpLocalPort', 'udpRecv', 'udpSend', 'poll', 'eventfdOpen', 'socketPair', 'eventfdSignal',
  'eventfdDrain', 'close', 'ifNameToIndex', 'ifMtu', 'udpSetGro', 'udpGsoProbe', 'csumBatch', 'tcpSegment', 'udpSegment', 'lockOpen', 'flock', 'funlock',
  'threadCpus', 'pinThread', 'portOpen', 'portBindSend', 'portBindWrite', 'portWait', 'portRead', 'portRecv',
  'portSend', 'portWrite', 'portClose',
];

function loadAddon(): NativeAddon {
  const file = join(packageRoot(), ADDON_PATH);
  const loadCommonJs = createRequire(import.meta.url);
  let addon: NativeAddon;
  try {
    addon = loadCommonJs(file) as NativeAddon;
  } catch (err) {
    throw new Error(
      `cannot load the tulle native addon "${file}" (build it with ` +
        `\`npx node-gyp rebuild --directory=native-bindings\`): ${(err as Error).message}`,
      { cause: err },
    );
  }
  // A build older than this file would fail later in confusing ways; say so now.
  for (const fn of FUNCTIONS) {
    if (typeof addon[fn] !== 'function') throw new Error(`tulle native addon "${file}" lacks ${fn}(); rebuild it`);
  }
  for (const [name, value] of Object.entries(EXPECTED_CONSTANTS)) {
    const actual = addon.constants[name as keyof NativeConstants];
    if (actual !== value) {
      throw new Error(`tulle native addon "${file}": constant ${name} is ${actual}, expected ${value}; rebuild it`);
    }
  }
  return addon;
}

/** The raw addon, loaded once per thread when this module is first imported. */
export const nativeAddon: NativeAddon = loadAddon();

// ---------------------------------------------------------------------------------------------
// Argument validation. Nothing here allocates unless it throws.

const INT32_MAX = 0x7fffffff;
const UINT32_MAX = 0xffffffff;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`;
  if (typeof v === 'object' || typeof v === 'function') {
    return (v as { constructor?: { name?: string } }).constructor?.name ?? typeof v;
  }
  return `${typeof v} ${String(v)}`;
}

function int(fn: string, name: string, v: unknown, min: number, max: number): void {
  if (typeof v !== 'number') throw new TypeError(`${fn}: ${name} must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${fn}: ${name} must be an integer in ${min}..${max}, got ${v}`);
  }
}

function fdArg(fn: string, v: unknown, name = 'fd'): void {
  int(fn, name, v, 0, INT32_MAX);
}

function bool(fn: string, name: string, v: unknown): void {
  if (typeof v !== 'boolean') throw new TypeError(`${fn}: ${name} must be a boolean, got ${describe(v)}`);
}

type TypedArrayClass = typeof Uint8Array | typeof Uint16Array | typeof Int32Array | typeof Uint32Array;

function typed(fn: string, name: string, v: unknown, cls: TypedArrayClass, need: number, why: string): void {
  if (!(v instanceof cls)) {
    const article = cls === Int32Array ? 'an' : 'a';
    throw new TypeError(`${fn}: ${name} must be ${article} ${cls.name}, got ${describe(v)}`);
  }
  if (v.length < need) {
    throw new RangeError(`${fn}: ${name} has ${v.length} elements, needs at least ${need} (${why})`);
  }
}

function ifName(fn: string, v: unknown): void {
  if (typeof v !== 'string') throw new TypeError(`${fn}: name must be a string, got ${describe(v)}`);
  const bytes = Buffer.byteLength(v, 'utf8');
  if (bytes === 0 || bytes >= IFNAMSIZ || v.includes('\0')) {
    throw new RangeError(`${fn}: name must be 1..${IFNAMSIZ - 1} bytes without NUL, got ${JSON.stringify(v)}`);
  }
}

/** Checks the slot layout shared by tunRead and udpRecv: max slots of slotSize bytes in buf. */
function slots(fn: string, buf: unknown, slotSize: unknown, headroom: unknown, max: unknown): void {
  int(fn, 'max', max, 1, MAX_BATCH);
  int(fn, 'slotSize', slotSize, 1, INT32_MAX);
  int(fn, 'headroom', headroom, 0, (slotSize as number) - 1);
  typed(fn, 'buf', buf, Uint8Array, (max as number) * (slotSize as number), 'max * slotSize bytes');
}

// ---------------------------------------------------------------------------------------------
// TUN.

/**
 * Opens /dev/net/tun (non-blocking, close-on-exec) and attaches it to interface `name` with
 * `flags` (IFF_TUN or IFF_TAP, plus IFF_NO_PI, IFF_MULTI_QUEUE, IFF_VNET_HDR). With
 * IFF_MULTI_QUEUE each call with the same name opens one more queue. Returns the fd or -errno.
 */
export function tunOpen(name: string, flags: number): number {
  ifName('tunOpen', name);
  int('tunOpen', 'flags', flags, 0, 0xffff);
  return nativeAddon.tunOpen(name, flags);
}

/** Attaches (true) or detaches (false) a multi-queue TUN queue. Returns 0 or -errno. */
export function tunSetQueue(fd: number, attach: boolean): number {
  fdArg('tunSetQueue', fd);
  bool('tunSetQueue', 'attach', attach);
  return nativeAddon.tunSetQueue(fd, attach);
}

/** TUNSETOFFLOAD with TUN_F_* bits. Returns 0 or -errno. */
export function tunSetOffload(fd: number, bits: number): number {
  fdArg('tunSetOffload', fd);
  int('tunSetOffload', 'bits', bits, 0, UINT32_MAX);
  return nativeAddon.tunSetOffload(fd, bits);
}

/** TUNSETVNETHDRSZ: the virtio_net_hdr length in front of every packet (10 or 12). 0 or -errno. */
export function tunSetVnetHdrSize(fd: number, size: number): number {
  fdArg('tunSetVnetHdrSize', fd);
  int('tunSetVnetHdrSize', 'size', size, 0, INT32_MAX);
  return nativeAddon.tunSetVnetHdrSize(fd, size);
}

/**
 * Reads up to `max` packets (one read() each, stopping at EAGAIN). Packet i is written to
 * `buf[i*slotSize + headroom ..]`, at most `slotSize - headroom` bytes; the headroom and the rest
 * of each slot are left as they were. `lens[i]` is read()'s result; a packet that does not fit is
 * cut, and read() may report either the capacity or the packet's full length, so size slots one
 * byte larger than any packet you accept and drop every `lens[i] >= capacity`. Returns the count
 * (0 when nothing is queued), or -errno when the first read fails otherwise. With `maxBytes`, no
 * further packet is read once the batch holds that many bytes (the last one read may pass it).
 */
export function tunRead(
  fd: number, buf: Uint8Array, slotSize: number, headroom: number, lens: Int32Array, max: number, maxBytes?: number,
): number {
  fdArg('tunRead', fd);
  slots('tunRead', buf, slotSize, headroom, max);
  typed('tunRead', 'lens', lens, Int32Array, max, 'max');
  if (maxBytes === undefined) return nativeAddon.tunRead(fd, buf, slotSize, headroom, lens, max);
  int('tunRead', 'maxBytes', maxBytes, 1, INT32_MAX);
  return nativeAddon.tunRead(fd, buf, slotSize, headroom, lens, max, maxBytes);
}

/**
 * Writes `count` packets, packet i = `buf[offs[i] .. offs[i] + lens[i]]`, one write() each. A packet
 * the kernel refuses, or one outside `buf` (EINVAL), is skipped and counted. After the first EAGAIN
 * of a call it waits up to 2 ms for room and retries that packet once; later EAGAINs fail at once.
 * Fills `stats` (STATS_LEN elements): [written, failed, last errno or 0, written, bytes written].
 * Returns written.
 */
export function tunWrite(
  fd: number, buf: Uint8Array, offs: Int32Array, lens: Int32Array, count: number, stats: Int32Array,
): number {
  fdArg('tunWrite', fd);
  int('tunWrite', 'count', count, 0, MAX_BATCH);
  typed('tunWrite', 'buf', buf, Uint8Array, 0, 'packet bytes');
  typed('tunWrite', 'offs', offs, Int32Array, count, 'count');
  typed('tunWrite', 'lens', lens, Int32Array, count, 'count');
  typed('tunWrite', 'stats', stats, Int32Array, STATS_LEN, 'STATS_LEN');
  return nativeAddon.tunWrite(fd, buf, offs, lens, count, stats);
}

// ---------------------------------------------------------------------------------------------
// UDP.

/**
 * Opens a non-blocking, close-on-exec IPv4 UDP socket bound to `ip:port` (0 = any / ephemeral),
 * with SO_REUSEPORT when asked and both buffers set to `bufBytes` (forced past the sysctl limits
 * when permitted; 0 keeps the defaults). Returns the fd or -errno (EADDRINUSE, EADDRNOTAVAIL, ...).
 */
export function udpOpen(ip: number, port: number, reusePort: boolean, bufBytes: number): number {
  int('udpOpen', 'ip', ip, 0, UINT32_MAX);
  int('udpOpen', 'port', port, 0, 0xffff);
  bool('udpOpen', 'reusePort', reusePort);
  int('udpOpen', 'bufBytes', bufBytes, 0, INT32_MAX);
  return nativeAddon.udpOpen(ip, port, reusePort, bufBytes);
}

/** The port a UDP socket is bound to, or -errno. */
export function udpLocalPort(fd: number): number {
  fdArg('udpLocalPort', fd);
  return nativeAddon.udpLocalPort(fd);
}

/**
 * Receives up to `max` datagrams with one recvmmsg. Slots as for tunRead: datagram i is written to
 * `buf[i*slotSize + headroom ..]`, at most `slotSize - headroom` bytes. `lens[i]` is the datagram's
 * real length, larger than the capacity when it was truncated; `srcIPs[i]`/`srcPorts[i]` its
 * source. Returns the count, 0 when nothing is queued, or -errno.
 */
export function udpRecv(
  fd: number, buf: Uint8Array, slotSize: number, headroom: number,
  lens: Int32Array, srcIPs: Uint32Array, srcPorts: Uint16Array, max: number,
  segSizes?: Int32Array,
): number {
  fdArg('udpRecv', fd);
  slots('udpRecv', buf, slotSize, headroom, max);
  typed('udpRecv', 'lens', lens, Int32Array, max, 'max');
  typed('udpRecv', 'srcIPs', srcIPs, Uint32Array, max, 'max');
  typed('udpRecv', 'srcPorts', srcPorts, Uint16Array, max, 'max');
  if (segSizes !== undefined) typed('udpRecv', 'segSizes', segSizes, Int32Array, max, 'max');
  return segSizes === undefined
    ? nativeAddon.udpRecv(fd, buf, slotSize, headroom, lens, srcIPs, srcPorts, max)
    : nativeAddon.udpRecv(fd, buf, slotSize, headroom, lens, srcIPs, srcPorts, max, segSizes);
}

/**
 * Sends `count` datagrams: datagram i = `buf[offs[i] .. offs[i] + lens[i]]` to
 * `dstIPs[i]:dstPorts[i]` on socket `fds[sockIdx[i]]`. Datagrams are grouped by socket, keeping
 * their order within each socket, and each group goes out in one sendmmsg (repeated after a
 * partial send). A datagram the kernel refuses (EMSGSIZE, EINVAL, ENETUNREACH, ...) is counted as
 * failed and the rest of its group continues; when a socket buffer is full (EAGAIN, ENOBUFS) the
 * call waits up to 2 ms once for that group, then counts the rest of the group as failed. A
 * datagram outside `buf` or with `sockIdx[i] >= fds.length` fails with EINVAL.
 * Fills `stats` (STATS_LEN elements): [messages sent, messages failed, last errno or 0, datagrams
 * sent (a UDP_SEGMENT message counts each of its segments), bytes sent]. Returns messages sent.
 */
export function udpSend(
  fds: Int32Array, buf: Uint8Array, offs: Int32Array, lens: Int32Array, sockIdx: Uint8Array,
  dstIPs: Uint32Array, dstPorts: Uint16Array, count: number, stats: Int32Array,
  segSizes?: Int32Array,
): number {
  int('udpSend', 'count', count, 0, MAX_BATCH);
  typed('udpSend', 'fds', fds, Int32Array, 1, 'one socket at least');
  typed('udpSend', 'buf', buf, Uint8Array, 0, 'datagram bytes');
  typed('udpSend', 'offs', offs, Int32Array, count, 'count');
  typed('udpSend', 'lens', lens, Int32Array, count, 'count');
  typed('udpSend', 'sockIdx', sockIdx, Uint8Array, count, 'count');
  typed('udpSend', 'dstIPs', dstIPs, Uint32Array, count, 'count');
  typed('udpSend', 'dstPorts', dstPorts, Uint16Array, count, 'count');
  typed('udpSend', 'stats', stats, Int32Array, STATS_LEN, 'STATS_LEN');
  if (segSizes !== undefined) typed('udpSend', 'segSizes', segSizes, Int32Array, count, 'count');
  return segSizes === undefined
    ? nativeAddon.udpSend(fds, buf, offs, lens, sockIdx, dstIPs, dstPorts, count, stats)
    : nativeAddon.udpSend(fds, buf, offs, lens, sockIdx, dstIPs, dstPorts, count, stats, segSizes);
}

// ---------------------------------------------------------------------------------------------
// Readiness and wake-ups.

/**
 * Turns UDP_GRO on or off: the kernel may then hand one receive several datagrams of one flow
 * joined, with their segment size reported through udpRecv's `segSizes`. 0 or -errno.
 */
export function udpSetGro(fd: number, on: boolean): number {
  fdArg('udpSetGro', fd);
  return nativeAddon.udpSetGro(fd, on);
}

/** 1 when this kernel accepts UDP_SEGMENT on the socket (udpSend's `segSizes`), 0 when not, or -errno. */
export function udpGsoProbe(fd: number): number {
  fdArg('udpGsoProbe', fd);
  return nativeAddon.udpGsoProbe(fd);
}

/**
 * One's-complement sums (RFC 1071; big-endian 16-bit words, folded, not complemented) of
 * `count` ranges of `buf`: sums[i] covers buf[offs[i], offs[i] + lens[i]). A range outside `buf`
 * gets 0x10000. The caller adds pseudo-header sums and complements. Returns count.
 */
export function csumBatch(buf: Uint8Array, offs: Int32Array, lens: Int32Array, sums: Uint32Array, count: number): number {
  int('csumBatch', 'count', count, 0, 0x7fffffff);
  typed('csumBatch', 'buf', buf, Uint8Array, 0, 'bytes');
  typed('csumBatch', 'offs', offs, Int32Array, count, 'count');
  typed('csumBatch', 'lens', lens, Int32Array, count, 'count');
  typed('csumBatch', 'sums', sums, Uint32Array, count, 'count');
  return nativeAddon.csumBatch(buf, offs, lens, sums, count);
}

/**
 * Cuts the IPv4/TCP super-packet at mem[ip] (headers ihl + thl bytes, then `payload` bytes) into
 * segments of at most `mss` payload bytes written back to back at mem[out], each behind a copy of
 * the `prefixLen` bytes already at mem[out], each a complete packet (lengths, IPv4 ID + j and
 * header checksum, TCP sequence, FIN/PSH on the last only, CWR on the first only, TCP checksum).
 * Input and output must not overlap. Returns the bytes written, or -EINVAL.
 */
export function tcpSegment(mem: Uint8Array, ip: number, ihl: number, thl: number, payload: number, mss: number, out: number, prefixLen: number): number {
  typed('tcpSegment', 'mem', mem, Uint8Array, 0, 'bytes');
  int('tcpSegment', 'mss', mss, 1, 0xffff);
  int('tcpSegment', 'prefixLen', prefixLen, 0, 256);
  return nativeAddon.tcpSegment(mem, ip, ihl, thl, payload, mss, out, prefixLen);
}

/**
 * Cuts the IPv4/UDP super-packet at mem[ip] (a pod's UDP_SEGMENT send: headers ihl + 8 bytes,
 * then `payload` bytes) into datagrams of at most `mss` payload bytes written back to back at
 * mem[out], each behind a copy of the `prefixLen` bytes already at mem[out], each complete (IPv4
 * total length, ID + j and header checksum; UDP length and checksum, 0xffff for a zero sum).
 * Input and output must not overlap. Returns the bytes written, or -EINVAL.
 */
export function udpSegment(mem: Uint8Array, ip: number, ihl: number, payload: number, mss: number, out: number, prefixLen: number): number {
  typed('udpSegment', 'mem', mem, Uint8Array, 0, 'bytes');
  int('udpSegment', 'mss', mss, 1, 0xffff);
  int('udpSegment', 'prefixLen', prefixLen, 0, 256);
  return nativeAddon.udpSegment(mem, ip, ihl, payload, mss, out, prefixLen);
}

/**
 * Waits up to `timeoutMs` (-1 = no limit) for POLLIN on `fds[0..nfds)`, writing each fd's revents
 * (POLLIN, POLLERR, POLLHUP, POLLNVAL bits; 0 when not ready) to `revents`. Negative fds are
 * ignored. Returns the number of ready fds, 0 on timeout or signal, or -errno.
 */
export function poll(fds: Int32Array, revents: Int32Array, nfds: number, timeoutMs: number): number {
  int('poll', 'nfds', nfds, 0, MAX_POLL_FDS);
  typed('poll', 'fds', fds, Int32Array, nfds, 'nfds');
  typed('poll', 'revents', revents, Int32Array, nfds, 'nfds');
  int('poll', 'timeoutMs', timeoutMs, -1, INT32_MAX);
  return nativeAddon.poll(fds, revents, nfds, timeoutMs);
}

/** Opens a non-blocking, close-on-exec eventfd owned by this thread. Returns the fd or -errno. */
export function eventfdOpen(): number {
  return nativeAddon.eventfdOpen();
}

/** Makes an eventfd readable (wakes a poll on it); any thread of the process may call it. 0 or -errno. */
export function eventfdSignal(fd: number): number {
  fdArg('eventfdSignal', fd);
  return nativeAddon.eventfdSignal(fd);
}

/** Consumes pending signals so the eventfd is no longer readable. 0 or -errno. */
export function eventfdDrain(fd: number): number {
  fdArg('eventfdDrain', fd);
  return nativeAddon.eventfdDrain(fd);
}

// ---------------------------------------------------------------------------------------------
// Descriptors and interfaces.

/** Closes an fd opened by this thread through the addon. 0, -EBADF for any other fd, or -errno. */
export function close(fd: number): number {
  fdArg('close', fd);
  return nativeAddon.close(fd);
}

/** The interface index of `name`, or 0 when there is none. */
export function ifNameToIndex(name: string): number {
  ifName('ifNameToIndex', name);
  return nativeAddon.ifNameToIndex(name);
}

/** The MTU of interface `name`, or -errno (ENODEV when there is none). */
export function ifMtu(name: string): number {
  ifName('ifMtu', name);
  return nativeAddon.ifMtu(name);
}

// ---------------------------------------------------------------------------------------------
// CPU placement.

/** The CPUs the calling thread may run on, ascending. Throws SysError if the kernel refuses to say. */
export function threadCpus(): number[] {
  const out = new Int32Array(MAX_CPUS);
  const n = check(nativeAddon.threadCpus(out), 'sched_getaffinity', 'the calling thread');
  return Array.from(out.subarray(0, Math.min(n, MAX_CPUS)));
}

/**
 * Lets the calling thread, and only it, run on `cpus` alone. 0 or -errno (-EINVAL when none of
 * them is online or allowed to this process).
 */
export function pinThread(cpus: readonly number[]): number {
  if (cpus.length < 1 || cpus.length > MAX_CPUS) throw new RangeError(`pinThread: cpus must hold 1..${MAX_CPUS} CPU numbers, got ${cpus.length}`);
  for (const c of cpus) int('pinThread', 'cpu', c, 0, MAX_CPUS - 1);
  return nativeAddon.pinThread(Int32Array.from(cpus), cpus.length);
}

// ---------------------------------------------------------------------------------------------
// File locks.

/**
 * Opens (creating with mode 0600) a lock file read-write and close-on-exec; the fd belongs to this
 * thread like any other. Returns the fd or -errno.
 */
export function lockOpen(path: string): number {
  if (typeof path !== 'string') throw new TypeError(`lockOpen: path must be a string, got ${describe(path)}`);
  const bytes = Buffer.byteLength(path, 'utf8');
  if (bytes === 0 || bytes >= PATH_MAX || path.includes('\0')) {
    throw new RangeError(`lockOpen: path must be 1..${PATH_MAX - 1} bytes without NUL, got ${JSON.stringify(path)}`);
  }
  return nativeAddon.lockOpen(path);
}

/**
 * flock(2) on `fd`: an exclusive or shared lock on the open file, held until `funlock` or close.
 * With `nonBlocking` it returns -EAGAIN (EWOULDBLOCK) at once when another open file holds a
 * conflicting lock; without, it blocks this thread until granted, so the main thread should only
 * use `nonBlocking`. Returns 0 or -errno.
 */
export function flock(fd: number, exclusive: boolean, nonBlocking: boolean): number {
  fdArg('flock', fd);
  bool('flock', 'exclusive', exclusive);
  bool('flock', 'nonBlocking', nonBlocking);
  return nativeAddon.flock(fd, exclusive, nonBlocking);
}

/** Releases the lock `flock` took on `fd`. Returns 0 or -errno. */
export function funlock(fd: number): number {
  fdArg('funlock', fd);
  return nativeAddon.funlock(fd);
}

// ---------------------------------------------------------------------------------------------
// Control path: the same calls, throwing SysError.

function ipv4String(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`;
}

/** tunOpen, throwing SysError (`open TUN device "tulle0": EBUSY (...)`). */
export function openTun(name: string, flags: number): number {
  return check(tunOpen(name, flags), 'open', `TUN device "${name}"`);
}

/** tunSetQueue, throwing SysError. */
export function setTunQueue(fd: number, attach: boolean): void {
  check(tunSetQueue(fd, attach), attach ? 'attach' : 'detach', `TUN queue fd ${fd}`);
}

/** udpOpen, throwing SysError (`open UDP socket 192.0.2.1:8472: EADDRNOTAVAIL (...)`). */
export function openUdp(ip: number, port: number, reusePort: boolean, bufBytes: number): number {
  return check(udpOpen(ip, port, reusePort, bufBytes), 'open', `UDP socket ${ipv4String(ip)}:${port}`);
}

/** udpLocalPort, throwing SysError. */
export function localPort(fd: number): number {
  return check(udpLocalPort(fd), 'getsockname', `UDP socket fd ${fd}`);
}

/**
 * A connected pair of non-blocking AF_UNIX datagram sockets owned by this thread: each read()
 * takes one whole datagram. Throws SysError.
 */
export function openSocketPair(): [number, number] {
  const fds = new Int32Array(2);
  check(nativeAddon.socketPair(fds), 'socketpair', 'AF_UNIX datagram sockets');
  return [fds[0], fds[1]];
}

/** eventfdOpen, throwing SysError. */
export function openEventfd(): number {
  return check(eventfdOpen(), 'open', 'eventfd');
}

/** close, throwing SysError. */
export function closeFd(fd: number): void {
  check(close(fd), 'close', `fd ${fd}`);
}

/** lockOpen, throwing SysError (`open lock file "/var/lib/tulle/ipam/lock": EACCES (...)`). */
export function openLockFile(path: string): number {
  return check(lockOpen(path), 'open', `lock file "${path}"`);
}

/** ifMtu, throwing SysError. */
export function interfaceMtu(name: string): number {
  return check(ifMtu(name), 'read MTU of', `interface "${name}"`);
}
