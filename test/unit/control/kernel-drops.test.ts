// The kernel's drop counts as the agent reads them from /proc: the parsers on real layouts, and
// this process's own sockets found by inode.
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { KernelDropReader, SocketDropTotal, netDevTxDropped, ownSocketInodes, udpSocketDrops } from '../../../src/control/kernel-drops.js';

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1234      10    0    0    0     0          0         0     1234      10    0    0    0     0       0          0
  eth0: 987654321 123456    0    7    0     0          0         0 123456789  654321    0    3    0     0       0          0
tulle0: 5000000   40000    0    0    0     0          0         0  8000000   60000    0 723404    0     0       0          0
`;

const NET_UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4001 2 0000000000000000 17
  101: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4002 2 0000000000000000 5
  102: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9999 2 0000000000000000 1000
  103: 0100007F:2119 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4003 2 0000000000000000 40
`;

describe('netDevTxDropped', () => {
  it("reads the device's transmit drop column, not another device's or the receive one", () => {
    expect(netDevTxDropped(NET_DEV, 'tulle0')).toBe(723404);
    expect(netDevTxDropped(NET_DEV, 'eth0')).toBe(3);
    expect(netDevTxDropped(NET_DEV, 'lo')).toBe(0);
  });
  it('is null for a device that is not listed or a line it cannot read', () => {
    expect(netDevTxDropped(NET_DEV, 'tulle1')).toBeNull();
    expect(netDevTxDropped(NET_DEV, 'tulle')).toBeNull();
    expect(netDevTxDropped('tulle0: 1 2 3\n', 'tulle0')).toBeNull();
  });
});

describe('udpSocketDrops', () => {
  it("reads the drops of this process's sockets on the port, leaving out other processes' and other ports", () => {
    expect(udpSocketDrops(NET_UDP, 8472, new Set([4001, 4002, 4003]))).toEqual(new Map([[4001, 17], [4002, 5]]));
    expect(udpSocketDrops(NET_UDP, 8473, new Set([4003]))).toEqual(new Map([[4003, 40]]));
    expect(udpSocketDrops(NET_UDP, 8472, new Set()).size).toBe(0);
    expect(udpSocketDrops('', 8472, new Set([4001])).size).toBe(0);
  });
});

describe('SocketDropTotal', () => {
  it('never falls: a socket that closes keeps its last count, its replacement adds from zero', () => {
    const t = new SocketDropTotal();
    expect(t.update(new Map([[1, 10], [2, 5]]))).toBe(15);
    expect(t.update(new Map([[1, 12], [2, 5]]))).toBe(17);
    // Worker 2 restarted: socket 2 is gone, socket 3 is its new one.
    expect(t.update(new Map([[1, 12], [3, 0]]))).toBe(17);
    expect(t.update(new Map([[1, 12], [3, 4]]))).toBe(21);
    expect(t.update(new Map())).toBe(21);
    expect(t.update(new Map([[4, 1]]))).toBe(22);
  });
});

describe('on this machine', () => {
  it("finds this process's own UDP socket by inode, and reads its drops and a device's", async () => {
    const sock = createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
    try {
      const port = sock.address().port;
      const inodes = ownSocketInodes();
      const line = readFileSync('/proc/self/net/udp', 'utf8').split('\n')
        .find((l) => l.trim().split(/\s+/)[1]?.endsWith(`:${port.toString(16).toUpperCase().padStart(4, '0')}`));
      expect(line, `port ${port} in /proc/self/net/udp`).toBeDefined();
      expect(inodes.has(Number(line!.trim().split(/\s+/)[9]))).toBe(true);
      const d = new KernelDropReader('lo', port).read();
      expect(d.tunTxDropped).toBe(netDevTxDropped(readFileSync('/proc/self/net/dev', 'utf8'), 'lo'));
      expect(d.rxSocketDrops).toBe(0);
      expect(new KernelDropReader('no-such-dev', port).read().tunTxDropped).toBeNull();
    } finally {
      sock.close();
    }
  });
});
