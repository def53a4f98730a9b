// Worker for test/unit/native.test.ts: loads the compiled native module, opens an eventfd and a
// UDP socket on 127.0.0.1 (bound only; nothing is sent) and sits in poll(5000 ms) on both, saying
// so before each poll and after each wake-up. It never closes its fds: the addon's cleanup hook
// must, when the worker is terminated.
import { parentPort } from 'node:worker_threads';
import * as native from '../../dist/src/io/native.js';

const LOOPBACK = 0x7f000001;
const POLL_TIMEOUT_MS = 5000;

const efd = native.openEventfd();
const udp = native.openUdp(LOOPBACK, 0, false, 0);
const fds = new Int32Array([efd, udp]);
const revents = new Int32Array(2);
parentPort.postMessage({ type: 'ready', efd, udp, port: native.localPort(udp) });

for (;;) {
  parentPort.postMessage({ type: 'polling' });
  const n = native.poll(fds, revents, 2, POLL_TIMEOUT_MS);
  const efdReady = (revents[0] & native.POLLIN) !== 0;
  parentPort.postMessage({ type: 'woke', n, efdReady });
  if (efdReady) native.eventfdDrain(efd);
}
