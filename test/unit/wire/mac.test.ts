import { describe, expect, it } from 'vitest';
import { MAC_LEN, formatMac, isUnicastMac, parseMac, randomLocalMac } from '../../../src/wire/mac.js';

describe('mac', () => {
  it('parses and formats, any case in, lower case out', () => {
    expect([...parseMac('02:aa:00:00:00:01')]).toEqual([2, 0xaa, 0, 0, 0, 1]);
    expect([...parseMac('FF:Ee:dD:cc:BB:0a')]).toEqual([0xff, 0xee, 0xdd, 0xcc, 0xbb, 0x0a]);
    expect(formatMac(parseMac('02:AA:00:00:00:01'))).toBe('02:aa:00:00:00:01');
    expect(formatMac(Uint8Array.of(9, 9, 0, 1, 2, 3, 4, 0xf), 2)).toBe('00:01:02:03:04:0f');
  });

  it.each(['', '02:aa:00:00:00', '02:aa:00:00:00:01:02', '02-aa-00-00-00-01', '2:aa:0:0:0:1', '02:aa:00:00:00:0g',
    ' 02:aa:00:00:00:01', '02aa.0000.0001'])('rejects %j naming the value', (s) => {
    expect(() => parseMac(s)).toThrow(TypeError);
    expect(() => parseMac(s)).toThrow(`invalid MAC address "${s}"`);
  });

  it('rejects non-strings', () => {
    expect(() => parseMac(undefined as unknown as string)).toThrow('invalid MAC address "undefined"');
  });

  it('isUnicastMac reads the group bit at an offset', () => {
    expect(isUnicastMac(parseMac('02:aa:00:00:00:01'))).toBe(true);
    expect(isUnicastMac(parseMac('ff:ff:ff:ff:ff:ff'))).toBe(false);
    expect(isUnicastMac(parseMac('01:00:5e:00:00:01'))).toBe(false);
    expect(isUnicastMac(Uint8Array.of(1, 2), 1)).toBe(true);
  });

  it('randomLocalMac: locally administered unicast, random', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const m = randomLocalMac();
      expect(m.length).toBe(MAC_LEN);
      expect(m[0] & 0x03).toBe(0x02);
      seen.add(formatMac(m));
    }
    expect(seen.size).toBe(200);
  });
});
