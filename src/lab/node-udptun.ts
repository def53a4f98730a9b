/**
 * The minimal userspace tunnel of udptun.ts, written in Node.js: one worker thread makes the
 * same I/O port calls as tulle's forwarding loop (portWait, portSend, portWrite, and a TUN read
 * after each write) and nothing else. The TUN packet is the UDP payload; there is no protocol
 * work. Beside tulle_udptun it measures what running in Node costs a round trip by itself.
 *
 *   node dist/src/lab/node-udptun.js TUN LOCAL_IP PEER_IP PORT
 *
 * Prints "ready" once the worker waits on its fds; runs until it is signalled.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as native from '../io/native.js';
import { Arena } from '../io/arena.js';
import { parseIpv4 } from '../wire/ipv4.js';

const USAGE = 'usage: node-udptun TUN LOCAL_IP PEER_IP PORT';
const BATCH = 16;
/** Larger than the tunnel device's MTU (the underlay's minus 28). */
const SLOT = 0x10000;
const SOCKET_BUFFER = 4 << 20;

interface TunnelFds {
  tun: number;
  udp: number;
  wake: number;
  peer: number;
  port: number;
}

/** The address, or undefined where parseIpv4 refuses the text. */
function ipv4Arg(s: string | undefined): number | undefined {
  try {
    return parseIpv4(s ?? '');
  } catch {
    return undefined;
  }
}

function main(argv: readonly string[]): void {
  const [dev, local, peer, portArg] = argv;
  const localIp = ipv4Arg(local);
  const peerIp = ipv4Arg(peer);
  const port = /^\d{1,5}$/.test(portArg ?? '') ? Number(portArg) : NaN;
  if (argv.length !== 4 || dev === undefined || dev.length < 1 || dev.length >= native.IFNAMSIZ || localIp === undefined ||
      peerIp === undefined || !(port >= 1 && port <= 65535)) {
    process.stderr.write(`${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  const fds: TunnelFds = {
    tun: native.openTun(dev, native.IFF_TUN | native.IFF_NO_PI),
    udp: native.openUdp(localIp, port, false, SOCKET_BUFFER),
    wake: native.openEventfd(),
    peer: peerIp,
    port,
  };
  const w = new Worker(new URL(import.meta.url), { workerData: fds });
  w.on('message', (m) => {
    if (m === 'ready') process.stdout.write('ready\n');
  });
  w.on('error', (e) => {
    process.stderr.write(`node-udptun: ${e.message}\n`);
    process.exit(1);
  });
}

function forward(f: TunnelFds): never {
  const raw = native.nativeAddon;
  const { value: b, arena } = Arena.fit((a) => ({
    tx: a.take(Uint8Array, SLOT * BATCH),
    rx: a.take(Uint8Array, SLOT * BATCH),
    tunLens: a.take(Int32Array, BATCH),
    rxLens: a.take(Int32Array, BATCH),
    rxIPs: a.take(Uint32Array, BATCH),
    rxPorts: a.take(Uint16Array, BATCH),
    stats: a.take(Int32Array, native.STATS_LEN),
    state: a.take(Int32Array, native.PORT_STATE_LEN),
    offs: a.take(Int32Array, BATCH),
    sock: a.take(Uint8Array, BATCH),
    dst: a.take(Uint32Array, BATCH),
    dstPort: a.take(Uint16Array, BATCH),
    writeOffs: a.take(Int32Array, BATCH),
  }));
  const p = raw.portOpen(arena.buffer, Int32Array.of(f.tun, f.udp, f.wake), Int32Array.of(f.udp), b.tx, SLOT, b.tunLens, b.rx, SLOT,
    b.rxLens, b.rxIPs, b.rxPorts, undefined, b.stats, b.state);
  // Packet i sits at slot i in both directions, so the lengths a read or receive fills are the
  // lengths the send or write takes: bound once, nothing is copied per packet.
  raw.portBindSend(p, 0, native.PORT_TX_MEM, b.offs, b.tunLens, b.sock, b.dst, b.dstPort);
  raw.portBindWrite(p, 0, b.writeOffs, b.rxLens);
  for (let i = 0; i < BATCH; i++) {
    b.offs[i] = i * SLOT;
    b.dst[i] = f.peer;
    b.dstPort[i] = f.port;
    b.writeOffs[i] = i * SLOT;
  }
  const send = (n: number): number => {
    raw.portSend(p, 0, n, false);
    return n === BATCH ? raw.portRead(p, BATCH, 0, SLOT * BATCH) : 0;
  };
  parentPort!.postMessage('ready');
  for (;;) {
    if (raw.portWait(p, 250, BATCH, 0, SLOT * BATCH, BATCH) <= 0) continue;
    if ((b.state[native.PORT_REV_TUN] & (native.POLLERR | native.POLLHUP | native.POLLNVAL)) !== 0) throw new Error('the TUN device went away');
    for (let n = b.state[native.PORT_TUN_COUNT]; n > 0; ) n = send(n);
    for (let m = b.state[native.PORT_RX_COUNT]; m > 0; ) {
      raw.portWrite(p, 0, 0, m);
      // As tulle's loop: the write may have queued the answer on the TUN device already.
      for (let n = raw.portRead(p, BATCH, 0, SLOT * BATCH); n > 0; ) n = send(n);
      m = m === BATCH ? raw.portRecv(p, BATCH) : 0;
    }
  }
}

if (isMainThread) main(process.argv.slice(2));
else forward(workerData as TunnelFds);
