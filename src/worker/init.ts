/**
 * What the supervisor hands a worker at start (structured-cloned once; the
 * SharedArrayBuffers are shared, not copied).
 */
export interface WorkerInit {
  readonly id: number;
  readonly device: string;
  /** IFF_* flags for opening this worker's TUN queue. */
  readonly tunFlags: number;
  /** The device accepts UDP_L4 GSO writes (USO). */
  readonly tunUso: boolean;
  readonly vtepIP: number;
  readonly port: number;
  readonly vni: number;
  readonly vtepMAC: Uint8Array;
  readonly overlayIP: number;
  readonly mtu: number;
  readonly flowSockets: number;
  readonly batchSize: number;
  readonly socketBufferBytes: number;
  readonly peerSab: SharedArrayBuffer;
  readonly peerCapacity: number;
  readonly counterSab: SharedArrayBuffer;
  readonly controlSab: SharedArrayBuffer;
  /** eventfd the supervisor signals to wake this worker out of poll. */
  readonly wakeFd: number;
  /** The largest UDP payload the underlay interface takes (its MTU minus IPv4 and UDP headers). */
  readonly maxDatagram: number;
  /**
   * The CPU this worker pins itself to (agent config `cpus`), or -1 to leave it to the scheduler.
   * If the kernel refuses (the CPU went offline since the agent checked), the worker warns and
   * runs unpinned rather than stop forwarding; its ready message says where it runs.
   */
  readonly cpu: number;
}

/** Kernel offloads a worker uses; `gso` can drop to false at run time (EIO from UDP_SEGMENT). */
export interface Features {
  /** TUN queue with IFF_VNET_HDR and TSO/checksum offload: reads may be TCP super-packets. */
  vnet: boolean;
  /** UDP_SEGMENT on send sockets. */
  gso: boolean;
  /** UDP_GRO on the receive socket, and coalesced TUN writes. */
  gro: boolean;
  /** UDP datagrams of a flow are joined too (the TUN device takes UDP_L4 GSO writes). */
  uso: boolean;
}

/** Control words per worker in `controlSab` (Int32). */
export const CONTROL_STOP = 0;
export const CONTROL_WORDS = 4;

export function controlBytes(workers: number): number {
  return workers * CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT;
}

/** Messages a worker posts to the supervisor (control path only, never per packet). */
export type WorkerMessage =
  | { type: 'ready'; sourcePorts: number[]; features: Features; cpu: number | null }
  | { type: 'features'; features: Features }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string; detail?: Record<string, unknown> };
