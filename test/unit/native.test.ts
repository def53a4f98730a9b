/*
 * The native addon without a network: loading in the main thread and in several workers at once,
 * per-thread fd ownership and cleanup on terminate, eventfd wake-ups, argument validation (in
 * TypeScript and, when bypassed, in the addon) and SysError. Sockets are only bound to 127.0.0.1;
 * nothing is sent. The workers run test/support/native-worker.mjs, which imports the compiled
 * dist/src/io/native.js: run `npx tsc -p tsconfig.json` first.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, test } from 'vitest';
import { check, errnoName, SysError } from '../../src/io/errors.js';
import * as native from '../../src/io/native.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIST_NATIVE = join(ROOT, 'dist/src/io/native.js');
const WORKER = join(ROOT, 'test/support/native-worker.mjs');
const WORKERS = 4;
const LOOPBACK = 0x7f000001;
const TEST_NET_1 = 0xc0000201; // 192.0.2.1 (RFC 5737): not on this machine; binding sends nothing
const { EADDRNOTAVAIL, EBADF, EINVAL, ENODEV } = constants.errno;

type WorkerMessage =
  | { type: 'ready'; efd: number; udp: number; port: number }
  | { type: 'polling' }
  | { type: 'woke'; n: number; efdReady: boolean };

/** Queues a worker's messages so none is missed between awaits. */
class Inbox {
  private readonly queue: WorkerMessage[] = [];
  private wake: (() => void) | undefined;
  private failure: Error | undefined;

  constructor(worker: Worker) {
    worker.on('message', (m: WorkerMessage) => {
      this.queue.push(m);
      this.wake?.();
    });
    worker.on('error', (err: Error) => {
      this.failure = err;
      this.wake?.();
    });
  }

  /** The next message of `type`, dropping others before it. */
  async next<T extends WorkerMessage['type']>(type: T, timeoutMs = 5000): Promise<Extract<WorkerMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.failure) throw this.failure;
      const m = this.queue.shift();
      if (m?.type === type) return m as Extract<WorkerMessage, { type: T }>;
      if (m) continue;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${type}" message from worker within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }
}

function openFds(): string[] {
  return readdirSync('/proc/self/fd');
}

function fdTarget(fd: number | string): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return '(closed)';
  }
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await sleep(10);
}

beforeAll(() => {
  if (!existsSync(DIST_NATIVE)) {
    throw new Error(`${DIST_NATIVE} is missing: the worker tests import the compiled module; run \`npx tsc -p tsconfig.json\``);
  }
});

describe('loading', () => {
  test('the addon loads in the main thread with the constants this module expects', () => {
    const c = native.nativeAddon.constants;
    expect(c.MAX_BATCH).toBe(native.MAX_BATCH);
    expect(c.MAX_POLL_FDS).toBe(native.MAX_POLL_FDS);
    expect([c.IFF_TUN, c.IFF_TAP, c.IFF_NO_PI, c.IFF_MULTI_QUEUE, c.IFF_VNET_HDR]).toEqual([0x1, 0x2, 0x1000, 0x100, 0x4000]);
    expect([c.POLLIN, c.POLLERR]).toEqual([native.POLLIN, native.POLLERR]);
  });

  test('4 workers load it at once; eventfd wakes a worker in poll; terminate is prompt and closes their fds', async () => {
    const baseline = openFds().length;
    const workers = Array.from({ length: WORKERS }, () => new Worker(WORKER));
    const inboxes = workers.map((w) => new Inbox(w));
    try {
      const ready = await Promise.all(inboxes.map((i) => i.next('ready')));
      const sockets = ready.map((r) => fdTarget(r.udp));
      for (const r of ready) {
        expect(fdTarget(r.efd)).toBe('anon_inode:[eventfd]');
        expect(fdTarget(r.udp)).toMatch(/^socket:\[\d+\]$/);
        expect(r.port).toBeGreaterThan(0);
      }
      // An fd belongs to the thread that opened it: another thread may signal it, not close it.
      expect(native.close(ready[0]!.efd)).toBe(-EBADF);
      expect(fdTarget(ready[0]!.efd)).toBe('anon_inode:[eventfd]');

      await Promise.all(inboxes.map((i) => i.next('polling')));
      await sleep(50);
      const wakeStart = performance.now();
      expect(native.eventfdSignal(ready[0]!.efd)).toBe(0);
      expect(await inboxes[0]!.next('woke', 1000)).toEqual({ type: 'woke', n: 1, efdReady: true });
      expect(performance.now() - wakeStart).toBeLessThan(1000);

      // All four back in poll(5000 ms); terminate() alone would wait for poll to return.
      await inboxes[0]!.next('polling');
      await sleep(50);
      const stopStart = performance.now();
      const stopped = workers.map((w) => w.terminate());
      for (const r of ready) expect(native.eventfdSignal(r.efd)).toBe(0);
      await Promise.all(stopped);
      expect(performance.now() - stopStart).toBeLessThan(1000);

      await waitFor(() => openFds().length <= baseline, 2000);
      expect(openFds().length).toBe(baseline);
      const targets = openFds().map(fdTarget);
      for (const s of sockets) expect(targets).not.toContain(s);
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
  });
});

describe('fds in this thread', () => {
  test('eventfd: signal makes it readable, drain clears it, close twice gives EBADF', () => {
    const efd = native.openEventfd();
    const fds = new Int32Array([efd]);
    const revents = new Int32Array(1);
    expect(native.poll(fds, revents, 1, 0)).toBe(0);
    expect(native.eventfdSignal(efd)).toBe(0);
    expect(native.eventfdSignal(efd)).toBe(0);
    expect(native.poll(fds, revents, 1, 0)).toBe(1);
    expect(revents[0]! & native.POLLIN).toBe(native.POLLIN);
    expect(native.eventfdDrain(efd)).toBe(0);
    expect(native.poll(fds, revents, 1, 0)).toBe(0);
    expect(revents[0]).toBe(0);
    expect(native.close(efd)).toBe(0);
    expect(native.close(efd)).toBe(-EBADF);
    expect(() => native.closeFd(efd)).toThrow(new SysError(EBADF, 'close', `fd ${efd}`));
  });

  test('eventfdDrain on something that keeps answering reads (/dev/zero) gives EINVAL instead of reading forever', () => {
    const fd = openSync('/dev/zero', 'r');
    try {
      expect(native.eventfdDrain(fd)).toBe(-constants.errno.EINVAL);
    } finally {
      closeSync(fd);
    }
  });

  test('UDP socket on 127.0.0.1: ephemeral port, empty receive on SharedArrayBuffer views, closes', () => {
    const fd = native.openUdp(LOOPBACK, 0, true, 1 << 20);
    try {
      expect(native.localPort(fd)).toBeGreaterThan(0);
      const slot = 2048;
      const buf = new Uint8Array(new SharedArrayBuffer(4 * slot));
      const lens = new Int32Array(new SharedArrayBuffer(16));
      const ips = new Uint32Array(new SharedArrayBuffer(16));
      const ports = new Uint16Array(new SharedArrayBuffer(8));
      expect(native.udpRecv(fd, buf, slot, 64, lens, ips, ports, 4)).toBe(0);
    } finally {
      native.closeFd(fd);
    }
  });

  test('packets outside the buffer or on a missing socket fail with EINVAL without a system call', () => {
    const fd = native.openUdp(LOOPBACK, 0, false, 0);
    try {
      const buf = new Uint8Array(100);
      const stats = new Int32Array(native.STATS_LEN);
      const offs = Int32Array.of(90, -1, 0);
      const lens = Int32Array.of(20, 10, 10);
      expect(native.tunWrite(fd, buf, offs, lens, 2, stats)).toBe(0);
      expect([...stats]).toEqual([0, 2, EINVAL, 0, 0]);
      const sent = native.udpSend(
        Int32Array.of(fd), buf, offs, lens, Uint8Array.of(0, 0, 1),
        Uint32Array.of(LOOPBACK, LOOPBACK, LOOPBACK), Uint16Array.of(9, 9, 9), 3, stats,
      );
      expect(sent).toBe(0);
      expect([...stats]).toEqual([0, 3, EINVAL, 0, 0]);
      expect(native.udpSend(Int32Array.of(fd), buf, offs, lens, Uint8Array.of(0), Uint32Array.of(0), Uint16Array.of(0), 0, stats)).toBe(0);
      expect([...stats]).toEqual([0, 0, 0, 0, 0]);
    } finally {
      native.closeFd(fd);
    }
  });

  test('interfaces: lo has an index and an MTU; a missing name gives 0 and ENODEV', () => {
    expect(native.ifNameToIndex('lo')).toBeGreaterThan(0);
    expect(native.ifMtu('lo')).toBeGreaterThan(0);
    expect(native.ifNameToIndex('tl-absent0')).toBe(0);
    expect(native.ifMtu('tl-absent0')).toBe(-ENODEV);
    expect(() => native.interfaceMtu('tl-absent0')).toThrow(/^read MTU of interface "tl-absent0": ENODEV \(/);
  });
});

describe('argument validation', () => {
  const buf = new Uint8Array(4 * 2048);
  const lens = new Int32Array(native.MAX_BATCH + 1);
  const offs = new Int32Array(native.MAX_BATCH + 1);
  const ips = new Uint32Array(native.MAX_BATCH + 1);
  const ports = new Uint16Array(native.MAX_BATCH + 1);
  const idx = new Uint8Array(native.MAX_BATCH + 1);
  const stats = new Int32Array(native.STATS_LEN);
  const fds = Int32Array.of(0);

  test.each<[string, () => unknown, typeof TypeError | typeof RangeError, RegExp]>([
    ['tunOpen name not a string', () => native.tunOpen(5 as never, native.IFF_TUN), TypeError, /^tunOpen: name must be a string, got number 5/],
    ['tunOpen name of 16 bytes', () => native.tunOpen('x'.repeat(16), native.IFF_TUN), RangeError, /^tunOpen: name must be 1\.\.15 bytes/],
    ['tunOpen empty name', () => native.tunOpen('', native.IFF_TUN), RangeError, /^tunOpen: name/],
    ['tunOpen flags over 16 bits', () => native.tunOpen('tl0', 0x10000), RangeError, /^tunOpen: flags must be an integer in 0\.\.65535, got 65536/],
    ['tunSetQueue attach not boolean', () => native.tunSetQueue(3, 1 as never), TypeError, /^tunSetQueue: attach must be a boolean/],
    ['tunRead fd a string', () => native.tunRead('3' as never, buf, 2048, 0, lens, 4), TypeError, /^tunRead: fd must be a number, got string "3"/],
    ['tunRead fd fractional', () => native.tunRead(1.5, buf, 2048, 0, lens, 4), RangeError, /^tunRead: fd must be an integer/],
    ['tunRead buf an Int32Array', () => native.tunRead(3, lens as never, 4, 0, lens, 1), TypeError, /^tunRead: buf must be a Uint8Array, got Int32Array/],
    ['tunRead max over MAX_BATCH', () => native.tunRead(3, buf, 16, 0, lens, 257), RangeError, /^tunRead: max must be an integer in 1\.\.256, got 257/],
    ['tunRead buf too small', () => native.tunRead(3, buf, 2048, 0, lens, 5), RangeError, /^tunRead: buf has 8192 elements, needs at least 10240/],
    ['tunRead headroom not below slotSize', () => native.tunRead(3, buf, 2048, 2048, lens, 4), RangeError, /^tunRead: headroom/],
    ['tunRead lens too short', () => native.tunRead(3, buf, 16, 0, new Int32Array(2), 4), RangeError, /^tunRead: lens has 2 elements/],
    ['tunWrite count over MAX_BATCH', () => native.tunWrite(3, buf, offs, lens, 257, stats), RangeError, /^tunWrite: count/],
    ['tunWrite stats too short', () => native.tunWrite(3, buf, offs, lens, 1, new Int32Array(2)), RangeError, /^tunWrite: stats has 2 elements/],
    ['udpOpen ip negative', () => native.udpOpen(-1, 0, false, 0), RangeError, /^udpOpen: ip must be an integer in 0\.\.4294967295, got -1/],
    ['udpOpen ip over 32 bits', () => native.udpOpen(2 ** 32, 0, false, 0), RangeError, /^udpOpen: ip/],
    ['udpOpen port 65536', () => native.udpOpen(LOOPBACK, 65536, false, 0), RangeError, /^udpOpen: port/],
    ['udpOpen reusePort not boolean', () => native.udpOpen(LOOPBACK, 0, 'yes' as never, 0), TypeError, /^udpOpen: reusePort must be a boolean/],
    ['udpOpen bufBytes negative', () => native.udpOpen(LOOPBACK, 0, false, -1), RangeError, /^udpOpen: bufBytes/],
    ['udpRecv srcPorts a Uint32Array', () => native.udpRecv(3, buf, 2048, 0, lens, ips, ips as never, 4), TypeError, /^udpRecv: srcPorts must be a Uint16Array, got Uint32Array/],
    ['udpRecv srcIPs too short', () => native.udpRecv(3, buf, 2048, 0, lens, new Uint32Array(1), ports, 4), RangeError, /^udpRecv: srcIPs/],
    ['udpSend count over MAX_BATCH', () => native.udpSend(fds, buf, offs, lens, idx, ips, ports, 300, stats), RangeError, /^udpSend: count/],
    ['udpSend sockIdx too short', () => native.udpSend(fds, buf, offs, lens, new Uint8Array(1), ips, ports, 2, stats), RangeError, /^udpSend: sockIdx has 1 elements/],
    ['udpSend no sockets', () => native.udpSend(new Int32Array(0), buf, offs, lens, idx, ips, ports, 1, stats), RangeError, /^udpSend: fds/],
    ['udpSend dstPorts an Int32Array', () => native.udpSend(fds, buf, offs, lens, idx, ips, lens as never, 1, stats), TypeError, /^udpSend: dstPorts must be a Uint16Array/],
    ['poll nfds over MAX_POLL_FDS', () => native.poll(new Int32Array(65), new Int32Array(65), 65, 0), RangeError, /^poll: nfds/],
    ['poll revents a Uint32Array', () => native.poll(fds, ips as never, 1, 0), TypeError, /^poll: revents must be an Int32Array/],
    ['poll timeout below -1', () => native.poll(fds, fds, 1, -2), RangeError, /^poll: timeoutMs/],
    ['eventfdSignal fd NaN', () => native.eventfdSignal(NaN), RangeError, /^eventfdSignal: fd must be an integer/],
    ['close negative fd', () => native.close(-1), RangeError, /^close: fd/],
    ['ifMtu name with NUL', () => native.ifMtu('lo\0x'), RangeError, /^ifMtu: name/],
    ['ifMtu name with NUL, straight to the addon', () => native.nativeAddon.ifMtu('lo\0x'), RangeError, /^ifMtu: name contains a NUL byte$/],
    ['lockOpen path with NUL, straight to the addon', () => native.nativeAddon.lockOpen('/tmp/tulle-x\0/etc/passwd'), RangeError, /^lockOpen: path contains a NUL byte$/],
  ])('%s', (_name, call, kind, message) => {
    expect(call).toThrow(kind);
    expect(call).toThrow(message);
  });

  test('the addon checks types and sizes itself when TypeScript is bypassed', () => {
    const raw = native.nativeAddon;
    expect(() => raw.tunRead(3, lens as never, 4, 0, lens, 1)).toThrow(new TypeError('tunRead: buf must be a Uint8Array'));
    expect(() => raw.tunRead(3, buf, 2048, 0, lens, 5)).toThrow(new RangeError('tunRead: buf is shorter than max * slotSize'));
    expect(() => raw.udpOpen('127.0.0.1' as never, 0, false, 0)).toThrow(new TypeError('udpOpen: ip must be a number'));
    expect(() => raw.udpSend(fds, buf, offs, lens, idx, ips, ports, 257, stats)).toThrow(new RangeError('udpSend: count must be in 0..256'));
    expect(() => raw.tunWrite(3, buf, offs, lens, 1, new Int32Array(2))).toThrow(new RangeError('tunWrite: stats must have at least 5 elements'));
    expect(() => raw.tunOpen('x'.repeat(16), 1)).toThrow(new RangeError('tunOpen: name is too long'));
  });
});

describe('SysError', () => {
  test('binding to an address not on this machine gives EADDRNOTAVAIL', () => {
    expect(native.udpOpen(TEST_NET_1, 8472, false, 0)).toBe(-EADDRNOTAVAIL);
    let err: unknown;
    try {
      native.openUdp(TEST_NET_1, 8472, false, 0);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SysError);
    expect(err).toMatchObject({ name: 'SysError', code: 'EADDRNOTAVAIL', errno: EADDRNOTAVAIL, syscall: 'open' });
    expect((err as Error).message).toBe('open UDP socket 192.0.2.1:8472: EADDRNOTAVAIL (address not available)');
  });

  test('check passes results through and names errnos the way os.constants does', () => {
    expect(check(7, 'open', 'x')).toBe(7);
    expect(() => check(-constants.errno.EBUSY, 'open', 'TUN device "tulle0"')).toThrow(
      'open TUN device "tulle0": EBUSY (resource busy or locked)',
    );
    expect(errnoName(constants.errno.EAGAIN)).toBe('EAGAIN');
    expect(new SysError(4000, 'read', 'x').code).toBe('ERRNO_4000');
  });
});

describe('CPU placement', () => {
  /** Threads of this process whose allowed CPU list (from /proc) is exactly `list`. */
  function threadsAllowedOn(list: string): number {
    let n = 0;
    for (const tid of readdirSync('/proc/self/task')) {
      try {
        const status = readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
        if (/^Cpus_allowed_list:\s*(.*)$/m.exec(status)?.[1].trim() === list) n++;
      } catch {
        // the thread ended while listed
      }
    }
    return n;
  }

  test('a worker thread pins itself and only itself', async () => {
    const before = native.threadCpus();
    expect(before.length, `this test needs at least 2 CPUs available to the process, it has ${before.join(',')}`).toBeGreaterThanOrEqual(2);
    expect([...before].sort((a, b) => a - b)).toEqual(before);
    const cpu = before[before.length - 1];
    const code = `
      import { parentPort } from 'node:worker_threads';
      const native = await import(${JSON.stringify(pathToFileURL(DIST_NATIVE).href)});
      const rc = native.pinThread([${cpu}]);
      parentPort.postMessage({ rc, cpus: native.threadCpus() });
      parentPort.once('message', () => process.exit(0));`;
    const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`));
    try {
      const m = await new Promise<{ rc: number; cpus: number[] }>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      expect(m.rc).toBe(0);
      expect(m.cpus).toEqual([cpu]);
      expect(threadsAllowedOn(String(cpu))).toBe(1);
      expect(native.threadCpus()).toEqual(before);
    } finally {
      w.postMessage('exit');
      await new Promise((r) => w.once('exit', r));
    }
  });

  test('refuses CPU numbers out of range, and a CPU the machine does not have with EINVAL', () => {
    expect(() => native.pinThread([])).toThrow(RangeError);
    expect(() => native.pinThread([-1])).toThrow(/cpu/);
    expect(() => native.pinThread([native.MAX_CPUS])).toThrow(/cpu/);
    expect(() => native.nativeAddon.pinThread(Int32Array.of(5000), 1)).toThrow(/0\.\.1023/);
    const absent = native.MAX_CPUS - 1;
    expect(native.threadCpus(), `CPU ${absent} exists here; the test needs a CPU number the machine lacks`).not.toContain(absent);
    expect(native.pinThread([absent])).toBe(-EINVAL);
  });

  test('threadCpus reports the full count even when the output array is shorter', () => {
    const all = native.threadCpus();
    const one = new Int32Array(1);
    expect(native.nativeAddon.threadCpus(one)).toBe(all.length);
    expect(one[0]).toBe(all[0]);
    expect(native.nativeAddon.threadCpus(new Int32Array(0))).toBe(all.length);
  });
});
