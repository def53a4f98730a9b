/**
 * `tulle status`: asks the running agent over its socket and prints what it
 * says, as a human summary or (--json) verbatim for scripts.
 */
import { request } from '../control/api.js';

interface Status {
  ready: boolean;
  node: Record<string, unknown>;
  workers: { id: number; state: string; restarts: number; threadId: number; sourcePorts: number[]; lastExit?: string }[];
  peers: { subnet: string; vtepIP: string; vtepMAC: string }[];
  counters: Record<string, number>;
  endpoints?: { containerID: string; ifname: string; ip: string; mac: string; hostIfname: string; network: string; netns: string }[];
}

export async function statusMain(socket: string, json: boolean): Promise<number> {
  let s: Status;
  try {
    s = (await request(socket, 'GET', '/v1/status')) as Status;
  } catch (e) {
    process.stderr.write(`tulle status: cannot reach the agent at "${socket}": ${(e as Error).message}\n`);
    return 1;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return 0;
  }
  const out: string[] = [];
  const n = s.node;
  out.push(`node     ${n.subnet} on ${n.device} (overlay ${n.overlayAddress}, mtu ${n.mtu}) ready=${s.ready}`);
  out.push(`vtep     ${n.vtepIP} ${n.vtepMAC} via ${n.underlay}, vni ${n.vni}, port ${n.port}`);
  out.push(`workers  ${s.workers.length}`);
  for (const w of s.workers) {
    out.push(`  #${w.id} ${w.state} thread=${w.threadId} restarts=${w.restarts}${w.lastExit ? ` last exit: ${w.lastExit}` : ''}`);
  }
  out.push(`peers    ${s.peers.length}`);
  for (const p of s.peers) out.push(`  ${p.subnet.padEnd(18)} via ${p.vtepIP} ${p.vtepMAC}`);
  const eps = s.endpoints ?? [];
  out.push(`endpoints ${eps.length}`);
  for (const e of eps) {
    out.push(`  ${e.ip.padEnd(18)} ${e.mac} ${e.ifname} <-> ${e.hostIfname}  ${e.containerID.length > 24 ? e.containerID.slice(0, 12) : e.containerID} (${e.network}) ${e.netns}`);
  }
  out.push('counters');
  for (const [k, v] of Object.entries(s.counters)) {
    if (v !== 0) out.push(`  ${k.padEnd(28)} ${v}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}
