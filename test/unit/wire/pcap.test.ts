/** The test-support pcap reader/writer (test/support/pcap.ts). */
import { describe, expect, it } from 'vitest';
import { LINKTYPE_ETHERNET, PCAP_MAGIC_NS, readFixture, readPcap, writePcap } from '../../support/pcap.js';

describe('pcap support', () => {
  it('round-trips packets and timestamps (microseconds)', () => {
    const packets = [
      { tsSec: 1_700_000_000, tsNsec: 123_456_000, data: Uint8Array.of(1, 2, 3) },
      { tsSec: 5, tsNsec: 0, origLen: 100, data: new Uint8Array(60).fill(7) },
    ];
    const file = readPcap(writePcap(packets));
    expect(file.linkType).toBe(LINKTYPE_ETHERNET);
    expect(file.nanosecond).toBe(false);
    expect(file.packets).toEqual([{ ...packets[0], origLen: 3 }, packets[1]]);
  });

  it('re-writes a fixture byte for byte (tcpdump writes little-endian microsecond files)', () => {
    const file = readFixture('icmp.pcap');
    expect(file.snapLen).toBe(262144);
    const again = writePcap(file.packets, file.snapLen);
    expect(readPcap(again)).toEqual(file);
  });

  it('reads big-endian and nanosecond files', () => {
    const b = new Uint8Array(24 + 16 + 2);
    const v = new DataView(b.buffer);
    v.setUint32(0, PCAP_MAGIC_NS, false);
    v.setUint16(4, 2, false);
    v.setUint16(6, 4, false);
    v.setUint32(16, 65535, false);
    v.setUint32(20, LINKTYPE_ETHERNET, false);
    v.setUint32(24, 10, false);
    v.setUint32(28, 999_999_999, false);
    v.setUint32(32, 2, false);
    v.setUint32(36, 2, false);
    b.set([0xab, 0xcd], 40);
    const file = readPcap(b);
    expect(file.nanosecond).toBe(true);
    expect(file.packets).toEqual([{ tsSec: 10, tsNsec: 999_999_999, origLen: 2, data: Uint8Array.of(0xab, 0xcd) }]);
  });

  it('throws on malformed files', () => {
    expect(() => readPcap(new Uint8Array(10))).toThrow(/no header/);
    expect(() => readPcap(new Uint8Array(24))).toThrow(/bad magic/);
    const cut = writePcap([{ data: new Uint8Array(10) }]).subarray(0, 45);
    expect(() => readPcap(cut)).toThrow(/cut/);
  });
});
