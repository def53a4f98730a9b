// Cases for test/netns/native-io.test.ts. Run as
//   ip netns exec <fresh netns> node test/support/native-netns.mjs <case>
// inside a namespace the test created (loopback up, nothing else). Every address used here exists
// only in that namespace. Prints one JSON line of observations for the test to assert on.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import process from 'node:process';
import { TextDecoder, TextEncoder } from 'node:util';
import * as native from '../../dist/src/io/native.js';

const LOOPBACK = 0x7f000001;
const TUN_IP = 0x0a630001; // 10.99.0.1/24 on tl0
const PEER_IP = 0x0a630002; // 10.99.0.2: routed into tl0, answered by whoever reads the TUN
const TUN_FLAGS = native.IFF_TUN | native.IFF_NO_PI | native.IFF_MULTI_QUEUE;
const IPV4_HEADER_LEN = 20;
const UDP_HEADER_LEN = 8;
const IPPROTO_UDP = 17;
const WAIT_MS = 2000;

// ---------------------------------------------------------------------------------------------
// Helpers

/** Polls `fds` and calls `drain(fd)` for each readable one until `done()` or WAIT_MS passes. */
function pump(fds, drain, done) {
  const pollFds = Int32Array.from(fds);
  const revents = new Int32Array(fds.length);
  const deadline = Date.now() + WAIT_MS;
  while (!done() && Date.now() < deadline) {
    const n = native.poll(pollFds, revents, fds.length, 100);
    if (n < 0) throw new Error(`poll: ${n}`);
    for (let i = 0; i < fds.length; i++) if (revents[i] & native.POLLIN) drain(fds[i]);
  }
}

function fill(buf, off, len, seed) {
  for (let j = 0; j < len; j++) buf[off + j] = (seed * 7 + j) & 0xff;
}

function sameBytes(a, aOff, b, bOff, len) {
  for (let j = 0; j < len; j++) if (a[aOff + j] !== b[bOff + j]) return false;
  return true;
}

function sum16(buf, off, len, acc = 0) {
  for (let i = 0; i + 1 < len; i += 2) acc += (buf[off + i] << 8) | buf[off + i + 1];
  if (len & 1) acc += buf[off + len - 1] << 8;
  return acc;
}

function fold(acc) {
  while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16);
  return ~acc & 0xffff;
}

/** An IPv4/UDP packet with correct header and UDP checksums. */
function udpPacket(srcIP, srcPort, dstIP, dstPort, payload) {
  const udpLen = UDP_HEADER_LEN + payload.length;
  const p = new Uint8Array(IPV4_HEADER_LEN + udpLen);
  const v = new DataView(p.buffer);
  v.setUint8(0, 0x45);
  v.setUint16(2, p.length);
  v.setUint16(6, 0x4000); // DF
  v.setUint8(8, 64);
  v.setUint8(9, IPPROTO_UDP);
  v.setUint32(12, srcIP);
  v.setUint32(16, dstIP);
  v.setUint16(10, fold(sum16(p, 0, IPV4_HEADER_LEN)));
  v.setUint16(20, srcPort);
  v.setUint16(22, dstPort);
  v.setUint16(24, udpLen);
  p.set(payload, IPV4_HEADER_LEN + UDP_HEADER_LEN);
  const pseudo = (srcIP >>> 16) + (srcIP & 0xffff) + (dstIP >>> 16) + (dstIP & 0xffff) + IPPROTO_UDP + udpLen;
  v.setUint16(26, fold(sum16(p, IPV4_HEADER_LEN, udpLen, pseudo)) || 0xffff);
  return p;
}

function queues(name) {
  return readdirSync(`/sys/class/net/${name}/queues`).filter((q) => q.startsWith('rx-')).length;
}

function sysErrorOf(call) {
  try {
    call();
  } catch (err) {
    return { code: err.code, message: err.message, isSysError: err instanceof native.SysError };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Cases

/** Multi-queue open/attach/detach, reading a batch of routed datagrams, writing packets back. */
function tun() {
  const q0 = native.openTun('tl0', TUN_FLAGS);
  const q1 = native.openTun('tl0', TUN_FLAGS); // same name: attaches a second queue
  const queuesOpen = queues('tl0');
  native.setTunQueue(q1, false);
  const queuesDetached = queues('tl0');
  native.setTunQueue(q1, true);
  const queuesReattached = queues('tl0');
  const withoutMultiQueue = native.tunOpen('tl0', native.IFF_TUN | native.IFF_NO_PI);
  native.openTun('tl1', native.IFF_TUN | native.IFF_NO_PI);
  const busy = sysErrorOf(() => native.openTun('tl1', native.IFF_TUN | native.IFF_NO_PI));

  execFileSync('ip', ['addr', 'add', '10.99.0.1/24', 'dev', 'tl0']);
  execFileSync('ip', ['link', 'set', 'tl0', 'up']);
  const ifindex = native.ifNameToIndex('tl0');
  const mtu = native.ifMtu('tl0');

  // Egress: FLOWS sockets each send one datagram to 10.99.0.2 in a single udpSend; the kernel
  // routes them into tl0 and spreads the flows over the two queues.
  const FLOWS = 24;
  const DST_PORT = 5555;
  const fds = new Int32Array(FLOWS);
  const srcPorts = [];
  for (let i = 0; i < FLOWS; i++) {
    fds[i] = native.openUdp(TUN_IP, 0, false, 0);
    srcPorts.push(native.localPort(fds[i]));
  }
  const out = new Uint8Array(FLOWS * 64);
  const offs = new Int32Array(FLOWS);
  const lens = new Int32Array(FLOWS);
  for (let i = 0; i < FLOWS; i++) {
    offs[i] = i * 64;
    lens[i] = 10 + i;
    fill(out, offs[i], lens[i], i);
  }
  const stats = new Int32Array(native.STATS_LEN);
  const sent = native.udpSend(
    fds, out, offs, lens, Uint8Array.from({ length: FLOWS }, (_, i) => i),
    new Uint32Array(FLOWS).fill(PEER_IP), new Uint16Array(FLOWS).fill(DST_PORT), FLOWS, stats,
  );
  const sendStats = [...stats];

  const SLOT = 2048;
  const HEADROOM = 64;
  const BATCH = 32;
  const rx = new Uint8Array(SLOT * BATCH);
  const rxLens = new Int32Array(BATCH);
  const perQueue = { [q0]: 0, [q1]: 0 };
  const mismatches = [];
  let largestBatch = 0;
  let headroomIntact = true;
  let received = 0;
  pump([q0, q1], (q) => {
    rx.fill(0xa5);
    const n = native.tunRead(q, rx, SLOT, HEADROOM, rxLens, BATCH);
    if (n < 0) throw new Error(`tunRead: ${n}`);
    largestBatch = Math.max(largestBatch, n);
    for (let i = 0; i < n; i++) {
      const p = i * SLOT + HEADROOM;
      const v = new DataView(rx.buffer, p);
      if (rx[i * SLOT + HEADROOM - 1] !== 0xa5 || rx[i * SLOT] !== 0xa5) headroomIntact = false;
      if (v.getUint8(0) >> 4 !== 4 || v.getUint8(9) !== IPPROTO_UDP || v.getUint32(16) !== PEER_IP) continue;
      received++;
      perQueue[q]++;
      const flow = srcPorts.indexOf(v.getUint16(20));
      const payload = rxLens[i] - IPV4_HEADER_LEN - UDP_HEADER_LEN;
      if (flow < 0 || v.getUint16(22) !== DST_PORT || payload !== lens[flow] ||
          !sameBytes(rx, p + IPV4_HEADER_LEN + UDP_HEADER_LEN, out, offs[flow], payload)) {
        mismatches.push({ queue: q, len: rxLens[i], srcPort: v.getUint16(20) });
      }
    }
  }, () => received >= FLOWS);

  // Ingress: packets crafted as if 10.99.0.2 sent them, written back into the TUN, reach a
  // socket on 10.99.0.1. The middle one is not an IP packet and must be refused.
  const rxSock = native.openUdp(TUN_IP, 0, false, 0);
  const rxPort = native.localPort(rxSock);
  const a = udpPacket(PEER_IP, 4000, TUN_IP, rxPort, new TextEncoder().encode('first reply'));
  const b = udpPacket(PEER_IP, 4000, TUN_IP, rxPort, new TextEncoder().encode('second reply from the TUN'));
  const wbuf = new Uint8Array(a.length + 20 + b.length);
  wbuf.set(a, 0);
  wbuf.set(b, a.length + 20); // bytes a.length .. a.length+20 are zeros: version 0
  const written = native.tunWrite(q1, wbuf, Int32Array.of(0, a.length, a.length + 20),
    Int32Array.of(a.length, 20, b.length), 3, stats);
  const writeStats = [...stats];

  const got = [];
  const r = new Uint8Array(2 * 256);
  const rl = new Int32Array(2);
  const ips = new Uint32Array(2);
  const ports = new Uint16Array(2);
  pump([rxSock], (fd) => {
    const n = native.udpRecv(fd, r, 256, 0, rl, ips, ports, 2);
    for (let i = 0; i < n; i++) {
      got.push({ from: ips[i], port: ports[i], text: new TextDecoder().decode(r.subarray(i * 256, i * 256 + rl[i])) });
    }
  }, () => got.length >= 2);

  return {
    queuesOpen, queuesDetached, queuesReattached, withoutMultiQueue, busy, ifindex, mtu,
    sent, sendStats, received, perQueue: Object.values(perQueue), largestBatch, headroomIntact, mismatches,
    written, writeStats, got,
  };
}

/** 100 datagrams of varied sizes over 2 sockets in one udpSend, received in batches on a third. */
function udpBatch() {
  const COUNT = 100;
  const socks = [native.openUdp(LOOPBACK, 0, false, 0), native.openUdp(LOOPBACK, 0, false, 0)];
  const srcPorts = socks.map((fd) => native.localPort(fd));
  const rxSock = native.openUdp(LOOPBACK, 0, false, 4 << 20);
  const rxPort = native.localPort(rxSock);

  const sizes = Array.from({ length: COUNT }, (_, i) => (i * 97) % 1473); // 0 .. 1472 bytes
  const sockIdx = Uint8Array.from({ length: COUNT }, (_, i) => (i % 3 === 0 ? 1 : 0));
  const offs = new Int32Array(COUNT);
  const lens = Int32Array.from(sizes);
  const buf = new Uint8Array(COUNT * 1500);
  for (let i = 0, off = 3; i < COUNT; off += sizes[i] + 5, i++) {
    offs[i] = off;
    fill(buf, off, sizes[i], i);
  }
  const stats = new Int32Array(native.STATS_LEN);
  const sent = native.udpSend(Int32Array.from(socks), buf, offs, lens, sockIdx,
    new Uint32Array(COUNT).fill(LOOPBACK), new Uint16Array(COUNT).fill(rxPort), COUNT, stats);
  const sendStats = [...stats];

  // Expected arrival order per source socket: send order within that socket.
  const expected = srcPorts.map((_, s) => [...Array(COUNT).keys()].filter((i) => sockIdx[i] === s));
  const SLOT = 2048;
  const HEADROOM = 64;
  const BATCH = 32;
  const rx = new Uint8Array(SLOT * BATCH);
  const rxLens = new Int32Array(BATCH);
  const ips = new Uint32Array(BATCH);
  const ports = new Uint16Array(BATCH);
  const batches = [];
  const mismatches = [];
  let headroomIntact = true;
  let received = 0;
  pump([rxSock], (fd) => {
    rx.fill(0xa5);
    const n = native.udpRecv(fd, rx, SLOT, HEADROOM, rxLens, ips, ports, BATCH);
    if (n < 0) throw new Error(`udpRecv: ${n}`);
    if (n > 0) batches.push(n);
    for (let i = 0; i < n; i++, received++) {
      if (rx[i * SLOT] !== 0xa5 || rx[i * SLOT + HEADROOM - 1] !== 0xa5) headroomIntact = false;
      const s = srcPorts.indexOf(ports[i]);
      const want = s >= 0 ? expected[s].shift() : undefined;
      if (ips[i] !== LOOPBACK || want === undefined || rxLens[i] !== sizes[want] ||
          !sameBytes(rx, i * SLOT + HEADROOM, buf, offs[want], sizes[want])) {
        mismatches.push({ index: received, srcIP: ips[i], srcPort: ports[i], len: rxLens[i], want });
      }
    }
  }, () => received >= COUNT);

  // A batch with datagrams the kernel refuses in the middle: the others still go out, in order.
  const BIG = 65508; // one byte over the largest IPv4 UDP payload
  const big = new Uint8Array(BIG + 64);
  const sizes2 = [10, 11, 12, 13, BIG, 15];
  const dstPorts2 = Uint16Array.of(rxPort, rxPort, 0, rxPort, rxPort, rxPort); // port 0: EINVAL
  const offs2 = Int32Array.of(0, 16, 32, 48, 0, 80);
  const sent2 = native.udpSend(Int32Array.of(socks[0]), big, offs2, Int32Array.from(sizes2), new Uint8Array(6),
    new Uint32Array(6).fill(LOOPBACK), dstPorts2, 6, stats);
  const sendStats2 = [...stats];
  const got2 = [];
  pump([rxSock], (fd) => {
    const n = native.udpRecv(fd, rx, SLOT, 0, rxLens, ips, ports, BATCH);
    for (let i = 0; i < n; i++) got2.push(rxLens[i]);
  }, () => got2.length >= 4);

  // One UDP_SEGMENT message of 250 bytes cut at 100: three datagrams on the wire.
  const sent3 = native.udpSend(Int32Array.of(socks[0]), big, Int32Array.of(0), Int32Array.of(250), new Uint8Array(1),
    Uint32Array.of(LOOPBACK), Uint16Array.of(rxPort), 1, stats, Int32Array.of(100));
  const sendStats3 = [...stats];
  const got3 = [];
  pump([rxSock], (fd) => {
    const n = native.udpRecv(fd, rx, SLOT, 0, rxLens, ips, ports, BATCH);
    for (let i = 0; i < n; i++) got3.push(rxLens[i]);
  }, () => got3.length >= 3);

  return { srcPorts, sent, sendStats, received, batches, mismatches, headroomIntact, sent2, sendStats2, got2, sent3, sendStats3, got3 };
}

/** A datagram longer than its slot: cut to the slot, reported with its real length. */
function udpTrunc() {
  const tx = native.openUdp(LOOPBACK, 0, false, 0);
  const rxSock = native.openUdp(LOOPBACK, 0, false, 0);
  const rxPort = native.localPort(rxSock);
  const buf = new Uint8Array(1200);
  fill(buf, 0, 1000, 1);
  fill(buf, 1000, 150, 2);
  const stats = new Int32Array(native.STATS_LEN);
  native.udpSend(Int32Array.of(tx), buf, Int32Array.of(0, 1000), Int32Array.of(1000, 150), new Uint8Array(2),
    Uint32Array.of(LOOPBACK, LOOPBACK), Uint16Array.of(rxPort, rxPort), 2, stats);

  const SLOT = 256;
  const HEADROOM = 56; // capacity 200
  const rx = new Uint8Array(SLOT * 4).fill(0xa5);
  const lens = new Int32Array(4);
  const ips = new Uint32Array(4);
  const ports = new Uint16Array(4);
  const got = [];
  pump([rxSock], (fd) => {
    const n = native.udpRecv(fd, rx, SLOT, HEADROOM, lens, ips, ports, 4);
    for (let i = 0; i < n; i++) got.push({ slot: got.length, len: lens[i] });
  }, () => got.length >= 2);
  return {
    got,
    firstPrefixIntact: sameBytes(rx, HEADROOM, buf, 0, SLOT - HEADROOM),
    secondIntact: sameBytes(rx, SLOT + HEADROOM, buf, 1000, 150),
    afterSecondUntouched: rx[SLOT + HEADROOM + 150] === 0xa5,
  };
}

/** Two SO_REUSEPORT sockets share a port; a third without the option is refused. */
function reusePort() {
  const a = native.openUdp(LOOPBACK, 0, true, 0);
  const port = native.localPort(a);
  const b = native.openUdp(LOOPBACK, port, true, 0);
  return {
    port,
    secondPort: native.localPort(b),
    third: sysErrorOf(() => native.openUdp(LOOPBACK, port, false, 0)),
  };
}

/**
 * tunRead's byte budget: 10 routed datagrams of 128 bytes (IP) read with max 8 and maxBytes 300
 * come out in batches that stop at the packet reaching 300 bytes. Reports each batch's lengths
 * (the kernel's own packets on a new link, IPv6, may come along).
 */
function tunBudget() {
  const q = native.openTun('tl2', native.IFF_TUN | native.IFF_NO_PI);
  execFileSync('ip', ['addr', 'add', '10.99.0.1/24', 'dev', 'tl2']);
  execFileSync('ip', ['link', 'set', 'tl2', 'up']);
  const fd = native.openUdp(TUN_IP, 0, false, 0);
  const COUNT = 10;
  const PAYLOAD = 100;
  const out = new Uint8Array(COUNT * PAYLOAD);
  const stats = new Int32Array(native.STATS_LEN);
  const sent = native.udpSend(
    new Int32Array([fd]), out, Int32Array.from({ length: COUNT }, (_, i) => i * PAYLOAD), new Int32Array(COUNT).fill(PAYLOAD),
    new Uint8Array(COUNT), new Uint32Array(COUNT).fill(PEER_IP), new Uint16Array(COUNT).fill(5555), COUNT, stats,
  );
  const SLOT = 2048;
  const rx = new Uint8Array(SLOT * 8);
  const lens = new Int32Array(8);
  const batches = [];
  let received = 0;
  pump([q], (fd) => {
    for (;;) {
      const n = native.tunRead(fd, rx, SLOT, 0, lens, 8, 300);
      if (n <= 0) break;
      for (let i = 0; i < n; i++) if (lens[i] === IPV4_HEADER_LEN + UDP_HEADER_LEN + PAYLOAD && rx[i * SLOT + 9] === IPPROTO_UDP) received++;
      batches.push([...lens.subarray(0, n)]);
    }
  }, () => received >= COUNT);
  let badBudget = null;
  try {
    native.nativeAddon.tunRead(q, rx, SLOT, 0, lens, 8, 0);
  } catch (e) {
    badBudget = `${e.name}: ${e.message}`;
  }
  return { sent, received, batches, badBudget };
}

const CASES = { tun, 'tun-budget': tunBudget, 'udp-batch': udpBatch, 'udp-trunc': udpTrunc, 'reuse-port': reusePort };
const run = CASES[process.argv[2]];
if (!run) {
  process.stderr.write(`usage: native-netns.mjs ${Object.keys(CASES).join('|')}\n`);
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(run())}\n`);
