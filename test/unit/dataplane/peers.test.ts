import { describe, expect, it } from 'vitest';
import { PeerTable, QUIESCENT } from '../../../src/dataplane/peers.js';
import { parseIpv4 } from '../../../src/wire/ipv4.js';
import { parseMac } from '../../../src/wire/mac.js';

const peer = (subnet: string, vtep: string, mac: string) => {
  const [a, p] = subnet.split('/');
  return { net: parseIpv4(a), prefix: Number(p), vtepIP: parseIpv4(vtep), vtepMAC: parseMac(mac) };
};

describe('PeerTable', () => {
  it('finds the peer whose subnet holds an address, longest prefix first', async () => {
    const t = new PeerTable(16);
    await t.publish([
      peer('10.244.2.0/24', '172.31.0.2', '02:aa:00:00:00:02'),
      peer('10.244.3.0/24', '172.31.0.3', '02:aa:00:00:00:03'),
      peer('10.244.3.128/25', '172.31.0.4', '02:aa:00:00:00:04'),
    ]);
    const half = t.beginRead(0);
    const s2 = t.lookup(half, parseIpv4('10.244.2.77'));
    expect(s2).toBeGreaterThanOrEqual(0);
    expect(t.vtepIP(s2) >>> 0).toBe(parseIpv4('172.31.0.2'));
    const buf = new Uint8Array(6);
    t.copyMac(s2, buf, 0);
    expect([...buf]).toEqual([2, 0xaa, 0, 0, 0, 2]);
    expect(t.vtepIP(t.lookup(half, parseIpv4('10.244.3.200'))) >>> 0).toBe(parseIpv4('172.31.0.4'));
    expect(t.vtepIP(t.lookup(half, parseIpv4('10.244.3.5'))) >>> 0).toBe(parseIpv4('172.31.0.3'));
    expect(t.lookup(half, parseIpv4('10.244.9.1'))).toBe(-1);
    expect(t.isKnownVtep(half, parseIpv4('172.31.0.3'))).toBe(true);
    expect(t.isKnownVtep(half, parseIpv4('172.31.0.9'))).toBe(false);
    t.endRead(0);
  });

  it('a reader attached to the same buffer sees updates at its next read section', async () => {
    const w = new PeerTable(8);
    const r = new PeerTable(8, w.sab);
    await w.publish([peer('10.244.2.0/24', '172.31.0.2', '02:aa:00:00:00:02')]);
    let half = r.beginRead(1);
    expect(r.lookup(half, parseIpv4('10.244.5.1'))).toBe(-1);
    r.endRead(1);
    await w.publish([peer('10.244.5.0/24', '172.31.0.5', '02:aa:00:00:00:05')]);
    half = r.beginRead(1);
    expect(r.vtepIP(r.lookup(half, parseIpv4('10.244.5.1'))) >>> 0).toBe(parseIpv4('172.31.0.5'));
    expect(r.lookup(half, parseIpv4('10.244.2.1'))).toBe(-1);
    r.endRead(1);
  });

  it('does not rewrite a half a reader may still hold', async () => {
    const w = new PeerTable(8);
    await w.publish([peer('10.244.2.0/24', '172.31.0.2', '02:aa:00:00:00:02')]);
    // Reader 3 begins before the next flip and keeps its section open.
    const r = new PeerTable(8, w.sab);
    r.beginRead(3);
    await w.publish([peer('10.244.4.0/24', '172.31.0.4', '02:aa:00:00:00:04')]);
    // A third publish would rewrite the half reader 3 holds: it must wait and time out.
    await expect(w.publish([], 50)).rejects.toThrow(/worker\(s\) 3/);
    r.endRead(3);
    await w.publish([]);
    expect(w.size()).toBe(0);
  });

  it('rejects bad entries without changing the table', async () => {
    const t = new PeerTable(2);
    await t.publish([peer('10.244.2.0/24', '172.31.0.2', '02:aa:00:00:00:02')]);
    await expect(t.publish([peer('10.244.2.1/24', '172.31.0.2', '02:aa:00:00:00:02')])).rejects.toThrow(/host bits/);
    const many = [1, 2, 3].map((i) => peer(`10.244.${i}.0/24`, `172.31.0.${i}`, '02:aa:00:00:00:01'));
    await expect(t.publish(many)).rejects.toThrow(/capacity 2/);
    expect(t.size()).toBe(1);
    expect(QUIESCENT).toBeGreaterThan(1 << 30);
  });
});
