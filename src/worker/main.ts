/**
 * Worker thread entry: opens this worker's TUN queue and sockets, reports
 * ready, then forwards until told to stop. Any error escapes as an uncaught
 * exception: the thread ends, the addon's cleanup hook closes its fds, and
 * the supervisor decides about a restart.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as native from '../io/native.js';
import { PeerTable } from '../dataplane/peers.js';
import { workerCounters } from '../dataplane/counters.js';
import type { DataplaneContext } from '../dataplane/context.js';
import { ForwardLoop } from './loop.js';
import type { Features, WorkerInit, WorkerMessage } from './init.js';

function post(m: WorkerMessage): void {
  parentPort?.postMessage(m);
}

function start(init: WorkerInit): void {
  const tunFd = native.openTun(init.device, init.tunFlags);
  const rxFd = native.openUdp(init.vtepIP, init.port, true, init.socketBufferBytes);
  const sendFds = new Int32Array(init.flowSockets);
  const sourcePorts: number[] = [];
  for (let i = 0; i < init.flowSockets; i++) {
    sendFds[i] = native.openUdp(init.vtepIP, 0, false, init.socketBufferBytes);
    sourcePorts.push(native.localPort(sendFds[i]));
  }
  const ctx: DataplaneContext = {
    table: new PeerTable(init.peerCapacity, init.peerSab),
    vni: init.vni,
    vtepMAC: init.vtepMAC,
    overlayIP: init.overlayIP,
    mtu: init.mtu,
    port: init.port,
    flowSockets: init.flowSockets,
    counters: workerCounters(init.counterSab, init.id),
  };
  const vnet = (init.tunFlags & native.IFF_VNET_HDR) !== 0;
  const features: Features = {
    vnet,
    gso: vnet && native.udpGsoProbe(sendFds[0]) === 1,
    gro: vnet && native.udpSetGro(rxFd, true) === 0,
    uso: vnet && init.tunUso,
  };
  const loop = new ForwardLoop(init.id, ctx, { tunFd, rxFd, sendFds, wakeFd: init.wakeFd }, init.batchSize, init.controlSab, features);
  post({ type: 'ready', sourcePorts, features: { ...features } });
  loop.run((what) => {
    post({ type: 'log', level: 'warn', msg: what });
    post({ type: 'features', features: { ...features } });
  });
  native.closeFd(tunFd);
  native.closeFd(rxFd);
  for (const fd of sendFds) native.closeFd(fd);
}

start(workerData as WorkerInit);
