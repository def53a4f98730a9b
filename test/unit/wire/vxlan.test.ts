import { describe, expect, it } from 'vitest';
import * as vxlan from '../../../src/wire/vxlan.js';
import { VxlanCheck, VxlanRepr } from '../../../src/wire/vxlan.js';

const HEADER_VNI_1 = [0x08, 0, 0, 0, 0, 0, 0x01, 0];

describe('vxlan constants', () => {
  it('derive lengths from their parts', () => {
    expect(vxlan.VXLAN_HEADER_LEN).toBe(8);
    expect(vxlan.VXLAN_VNI_OFF).toBe(4);
    expect(vxlan.VXLAN_OVERHEAD_IPV4).toBe(50);
    expect(vxlan.VXLAN_DEFAULT_PORT).toBe(8472);
    expect(vxlan.VXLAN_DEFAULT_VNI).toBe(1);
    expect(VxlanCheck).toEqual({ Ok: 0, Short: 1, BadFlags: 2, Reserved: 3 });
  });
});

describe('vxlan accessors', () => {
  it('reads flags and VNI', () => {
    const b = Uint8Array.from([0xee, 0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0, 0xee]);
    expect(vxlan.flags(b, 1)).toBe(0x08);
    expect(vxlan.vni(b, 1)).toBe(0xabcdef);
    expect(vxlan.reservedBitsClear(b, 1)).toBe(true);
  });

  it('writeHeader writes exactly 8 bytes into a 0xa5 buffer', () => {
    const b = new Uint8Array(12).fill(0xa5);
    vxlan.writeHeader(b, 2, 1);
    expect([...b]).toEqual([0xa5, 0xa5, ...HEADER_VNI_1, 0xa5, 0xa5]);
    vxlan.writeHeader(b, 2, vxlan.VXLAN_VNI_MAX);
    expect([...b.subarray(2, 10)]).toEqual([0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0]);
  });

  it('setVni keeps 24 bits and leaves the reserved byte alone', () => {
    const b = new Uint8Array(8).fill(0xa5);
    vxlan.setVni(b, 0, 0x1234567);
    expect(vxlan.vni(b, 0)).toBe(0x234567);
    expect(b[7]).toBe(0xa5);
    expect(b[3]).toBe(0xa5);
  });
});

describe('vxlan check', () => {
  const header = (): Uint8Array => Uint8Array.from(HEADER_VNI_1);

  it('accepts a header alone or followed by a frame', () => {
    expect(vxlan.check(header(), 0, 8)).toBe(VxlanCheck.Ok);
    const b = new Uint8Array(64);
    b.set(HEADER_VNI_1, 4);
    expect(vxlan.check(b, 4, 60)).toBe(VxlanCheck.Ok);
  });

  it('rejects short input and ranges outside the buffer', () => {
    expect(vxlan.check(header(), 0, 7)).toBe(VxlanCheck.Short);
    expect(vxlan.check(header(), 1, 8)).toBe(VxlanCheck.Short);
    expect(vxlan.check(header(), -1, 8)).toBe(VxlanCheck.Short);
    expect(vxlan.check(new Uint8Array(0), 0, 0)).toBe(VxlanCheck.Short);
  });

  it.each([0x00, 0x0c, 0x88, 0x09, 0xff, 0x80])('rejects flags byte %i', (f) => {
    const b = header();
    b[0] = f;
    expect(vxlan.check(b, 0, 8)).toBe(VxlanCheck.BadFlags);
  });

  it.each([1, 2, 3, 7])('rejects a set bit in reserved byte %i', (i) => {
    for (const bit of [0x01, 0x80]) {
      const b = header();
      b[i] = bit;
      expect(vxlan.reservedBitsClear(b, 0)).toBe(false);
      expect(vxlan.check(b, 0, 8)).toBe(VxlanCheck.Reserved);
    }
  });
});

describe('VxlanRepr', () => {
  it('parses, emits into 0xa5 and formats', () => {
    const r = VxlanRepr.parse(Uint8Array.from(HEADER_VNI_1), 0);
    expect(r).toEqual(new VxlanRepr(1, 0x08));
    expect(r?.format()).toBe('VXLAN vni=1 flags=0x08');
    const out = new Uint8Array(10).fill(0xa5);
    new VxlanRepr(0x123456).emit(out, 1);
    expect([...out]).toEqual([0xa5, 0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xa5]);
    expect(new VxlanRepr(7).bufferLen()).toBe(8);
  });

  it('returns null for a header check rejects', () => {
    expect(VxlanRepr.parse(Uint8Array.from([0, 0, 0, 0, 0, 0, 1, 0]), 0)).toBeNull();
    expect(VxlanRepr.parse(Uint8Array.from(HEADER_VNI_1), 0, 7)).toBeNull();
  });
});
