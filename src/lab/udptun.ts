/**
 * A minimal userspace tunnel between the two nodes of a plain lab (tulle_udptun, built with the
 * addon from native-bindings/src/udptun.c): each node routes the other's pod subnet into a TUN
 * device whose packets one C thread carries as bare UDP datagrams. The bench measures it as the
 * floor of any userspace tunnel on the machine: the same wake-ups and system calls as tulle's
 * one-worker loop, none of tulle's work.
 *
 * The tunnel devices get the underlay MTU minus the outer IPv4 and UDP headers (1472 on a
 * 1500-byte underlay), while a plain lab's pods keep the underlay MTU: full-size TCP segments
 * find the smaller MTU by path MTU discovery on their first crossing. The bench uses these rows
 * for their round trips; kernel VXLAN's pods have 1450.
 */
import { nativeProgram } from '../util/paths.js';
import { distScript, spawnInNs, terminateProcesses } from '../util/exec.js';
import { onCpu, watch } from './measure.js';
import { ipIn } from './netns.js';
import { DEFAULT_UNDERLAY_MTU, LabError, type LabState } from './topology.js';

export const UDPTUN_DEVICE = 'tlut0';
export const UDPTUN_PORT = 4790;
/** Outer IPv4 and UDP headers. */
const UDPTUN_OVERHEAD = 28;

export function udptunBinary(): string {
  return nativeProgram('tulle_udptun');
}

/** Which minimal tunnel: tulle_udptun in C, or the same loop in Node.js over tulle's I/O port (node-udptun.ts). */
export type UdpTunnelKind = 'c' | 'node';

/** The program name of a tunnel of `kind`, for logs and errors. */
export function udptunName(kind: UdpTunnelKind): string {
  return kind === 'c' ? 'tulle_udptun' : 'node-udptun';
}

/** The command line of a tunnel of `kind`. */
export function udptunCommand(kind: UdpTunnelKind, args: readonly string[]): [string, string[]] {
  return kind === 'c' ? [udptunBinary(), [...args]] : [process.execPath, [distScript('src/lab/node-udptun.js'), ...args]];
}

export interface UdpTunnels {
  pids: number[];
  /** Ends the tunnel processes; their devices and routes go with them, so the nodes no longer reach each other's pods. */
  stop(): Promise<void>;
}

/**
 * Starts one tunnel process per node, on `cpu` alone if given, and routes each node's traffic for
 * the other pod subnet into it.
 */
export async function startUdpTunnels(s: LabState, cpu?: number, kind: UdpTunnelKind = 'c'): Promise<UdpTunnels> {
  const what = udptunName(kind);
  if (s.mode !== 'plain' || s.nodes.length !== 2) {
    throw new LabError(`the userspace tunnel joins the two nodes of a plain lab; lab ${JSON.stringify(s.name)} is ${s.mode} with ${s.nodes.length} nodes`);
  }
  const pids: number[] = [];
  const tunnels: UdpTunnels = { pids, stop: () => terminateProcesses([...pids]) };
  try {
    for (const [n, peer] of [[s.nodes[0]!, s.nodes[1]!], [s.nodes[1]!, s.nodes[0]!]] as const) {
      const child = spawnInNs(n.ns, ...onCpu(cpu, ...udptunCommand(kind, [UDPTUN_DEVICE, n.underlayIp, peer.underlayIp, String(UDPTUN_PORT)])));
      const pid = child.pid;
      if (pid !== undefined) pids.push(pid);
      // An ended process leaves the list, so stop() never signals a PID the system has reused.
      child.once('exit', () => {
        const i = pid === undefined ? -1 : pids.indexOf(pid);
        if (i >= 0) pids.splice(i, 1);
      });
      const w = watch(child, `${what} in ${n.ns}`);
      // Its end is seen through `pids` (the bench checks it after a trial), not as an error here.
      w.done.catch(() => undefined);
      const line = await w.line();
      if (line !== 'ready') throw new LabError(`${what} in ${n.ns} printed ${JSON.stringify(line)} instead of "ready"`);
      await ipIn(n.ns, ['link', 'set', UDPTUN_DEVICE, 'mtu', String((s.underlayMtu ?? DEFAULT_UNDERLAY_MTU) - UDPTUN_OVERHEAD), 'up']);
      await ipIn(n.ns, ['route', 'replace', peer.subnet, 'dev', UDPTUN_DEVICE]);
    }
  } catch (e) {
    await tunnels.stop().catch(() => undefined);
    throw e;
  }
  return tunnels;
}
