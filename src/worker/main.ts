/**
 * Worker thread entry: opens this worker's TUN queue and sockets, reports
 * ready, then forwards until told to stop. Any error escapes as an uncaught
 * exception: the thread ends, the addon's cleanup hook closes its fds, and
 * the supervisor decides about a restart.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as native from '../io/native.js';
import { SysError } from '../io/errors.js';
import { PeerTable } from '../dataplane/peers.js';
import { workerCounters } from '../dataplane/counters.js';
import { ForwardLoop } from './loop.js';
import { dataplaneContext, rehearse } from './rehearsal.js';
import type { Features, WorkerInit, WorkerMessage } from './init.js';

function post(m: WorkerMessage): void {
  parentPort?.postMessage(m);
}

/**
 * Rehearsal length. About 150 rounds get every batch function optimized; rounds beyond that
 * still shorten the round trips that follow. Ping p50 (-i 0.005, request held) over the first
 * 200 pings of fresh 2-node labs: 54–60 µs (median 58.5 of six labs) after 400 rounds, 52–58
 * (53.5) after 4000, 52–54 after 1500; the next 200 pings 52–59, 51–55 and 52–54. 1500 rounds
 * took 330–390 ms on the machine those figures come from. The budget stops a slower machine
 * earlier, so that a node stays reachable well within a second of taking its subnet lease: the
 * workers start after the lease, and on a slower machine 1469 rounds took the whole 600 ms the
 * budget used to allow, putting the new node's first reply 1.02–1.15 s after its lease.
 */
const REHEARSAL_ROUNDS = 1500;
const REHEARSAL_BUDGET_MS = 250;
/** Single small packets each way after the checked rounds (rehearsal.ts, CHECKED_SHARE). */
const REHEARSAL_SINGLES = 5000;

/** The rehearsal (rehearsal.ts), logged. A failure of the rehearsal itself is logged, not fatal. */
async function rehearseAndLog(init: WorkerInit, features: Features): Promise<void> {
  try {
    const r = await rehearse({
      features: { ...features }, batchSize: init.batchSize, mtu: init.mtu, port: init.port, vni: init.vni, flowSockets: init.flowSockets,
      rounds: REHEARSAL_ROUNDS, budgetMs: REHEARSAL_BUDGET_MS, singles: REHEARSAL_SINGLES, loopback: true,
    });
    const detail = { mode: r.mode, rounds: r.rounds, singles: r.singles, ms: Math.round(r.ms), packets: r.packetsIn, ...(r.note ? { note: r.note } : {}) };
    if (r.mismatch !== null) post({ type: 'log', level: 'error', msg: `data path rehearsal found a difference: ${r.mismatch}`, detail });
    else post({ type: 'log', level: 'info', msg: 'data path rehearsed', detail });
  } catch (e) {
    post({ type: 'log', level: 'error', msg: `data path rehearsal failed: ${(e as Error).message}` });
  }
}

async function start(init: WorkerInit): Promise<void> {
  // Before anything else, so the rehearsal warms the caches of the CPU the loop will run on.
  let cpu: number | null = null;
  if (init.cpu >= 0) {
    const rc = native.pinThread([init.cpu]);
    if (rc === 0) cpu = init.cpu;
    else post({ type: 'log', level: 'warn', msg: `${new SysError(-rc, 'sched_setaffinity', `worker ${init.id} to CPU ${init.cpu}`).message}; running unpinned` });
  }
  const tunFd = native.openTun(init.device, init.tunFlags);
  const rxFd = native.openUdp(init.vtepIP, init.port, true, init.socketBufferBytes);
  const sendFds = new Int32Array(init.flowSockets);
  const sourcePorts: number[] = [];
  for (let i = 0; i < init.flowSockets; i++) {
    sendFds[i] = native.openUdp(init.vtepIP, 0, false, init.socketBufferBytes);
    sourcePorts.push(native.localPort(sendFds[i]));
  }
  const ctx = dataplaneContext(
    new PeerTable(init.peerCapacity, init.peerSab), init.vni, init.vtepMAC, init.overlayIP, init.mtu, init.port, init.flowSockets,
    workerCounters(init.counterSab, init.id),
  );
  const vnet = (init.tunFlags & native.IFF_VNET_HDR) !== 0;
  const features: Features = {
    vnet,
    gso: vnet && native.udpGsoProbe(sendFds[0]) === 1,
    gro: vnet && native.udpSetGro(rxFd, true) === 0,
    uso: vnet && init.tunUso,
  };
  await rehearseAndLog(init, features);
  const loop = new ForwardLoop(init.id, ctx, { tunFd, rxFd, sendFds, wakeFd: init.wakeFd, rehearsal: undefined }, init.batchSize, init.controlSab, features, init.maxDatagram);
  post({ type: 'ready', sourcePorts, features: { ...features }, cpu });
  loop.run((what) => {
    post({ type: 'log', level: 'warn', msg: what });
    post({ type: 'features', features: { ...features } });
  });
  loop.close();
  native.closeFd(tunFd);
  native.closeFd(rxFd);
  for (const fd of sendFds) native.closeFd(fd);
}

start(workerData as WorkerInit).catch((e: unknown) => {
  // Ends the thread like any other error: the supervisor decides about a restart.
  setImmediate(() => {
    throw e;
  });
});
