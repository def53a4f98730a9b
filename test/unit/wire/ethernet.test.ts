import { describe, expect, it } from 'vitest';
import * as eth from '../../../src/wire/ethernet.js';
import { EthernetRepr } from '../../../src/wire/ethernet.js';
import { parseMac } from '../../../src/wire/mac.js';

const A = parseMac('02:aa:00:00:00:01');
const B = parseMac('02:aa:00:00:00:02');
// dst B, src A, IPv4
const FRAME = Uint8Array.from([0x02, 0xaa, 0, 0, 0, 0x02, 0x02, 0xaa, 0, 0, 0, 0x01, 0x08, 0x00, 0x45]);

describe('ethernet constants', () => {
  it('derive the header length from the last field', () => {
    expect([eth.ETH_DST_OFF, eth.ETH_SRC_OFF, eth.ETH_TYPE_OFF, eth.ETH_HEADER_LEN]).toEqual([0, 6, 12, 14]);
    expect([eth.ETHERTYPE_IPV4, eth.ETHERTYPE_ARP]).toEqual([0x0800, 0x0806]);
  });
});

describe('ethernet accessors', () => {
  it('read a frame at an offset', () => {
    const b = new Uint8Array(3 + FRAME.length);
    b.set(FRAME, 3);
    expect(eth.etherType(b, 3)).toBe(eth.ETHERTYPE_IPV4);
    expect(eth.macEqual(b, 3 + eth.ETH_DST_OFF, B)).toBe(true);
    expect(eth.macEqual(b, 3 + eth.ETH_SRC_OFF, A)).toBe(true);
    expect(eth.macEqual(b, 3 + eth.ETH_SRC_OFF, B)).toBe(false);
    expect(eth.isBroadcastDst(b, 3)).toBe(false);
  });

  it('macEqual honours macOff and compares all six bytes', () => {
    const pair = new Uint8Array(12);
    pair.set(B, 6);
    expect(eth.macEqual(FRAME, 0, pair, 6)).toBe(true);
    const last = B.slice();
    last[5] ^= 1;
    expect(eth.macEqual(FRAME, 0, last)).toBe(false);
  });

  it('isBroadcastDst needs all six bytes 0xff', () => {
    const b = new Uint8Array(14).fill(0xff);
    expect(eth.isBroadcastDst(b, 0)).toBe(true);
    b[5] = 0xfe;
    expect(eth.isBroadcastDst(b, 0)).toBe(false);
  });

  it('setters write only their bytes (0xa5 buffer)', () => {
    const b = new Uint8Array(16).fill(0xa5);
    eth.setDst(b, 1, B);
    eth.setSrc(b, 1, A);
    eth.setEtherType(b, 1, eth.ETHERTYPE_IPV4);
    expect([...b]).toEqual([0xa5, ...FRAME.subarray(0, 14), 0xa5]);
    eth.copyMac(b, 1, b, 7);
    expect(eth.macEqual(b, 1, A)).toBe(true);
  });

  it('setEtherType keeps 16 bits', () => {
    const b = new Uint8Array(14);
    eth.setEtherType(b, 0, 0x188cc);
    expect(eth.etherType(b, 0)).toBe(0x88cc);
  });
});

describe('ethernet check', () => {
  it('needs a full header inside the buffer', () => {
    expect(eth.check(FRAME, 0, 14)).toBe(true);
    expect(eth.check(FRAME, 0, 13)).toBe(false);
    expect(eth.check(FRAME, 1, 15)).toBe(false);
    expect(eth.check(FRAME, -1, 14)).toBe(false);
    expect(eth.check(new Uint8Array(0), 0, 0)).toBe(false);
  });
});

describe('EthernetRepr', () => {
  it('parses, emits into 0xa5 and formats', () => {
    const r = EthernetRepr.parse(FRAME, 0);
    expect(r).toEqual(new EthernetRepr(B, A, 0x0800));
    expect(r?.format()).toBe('Ethernet src=02:aa:00:00:00:01 dst=02:aa:00:00:00:02 type=0x0800');
    const out = new Uint8Array(15).fill(0xa5);
    r?.emit(out, 0);
    expect([...out]).toEqual([...FRAME.subarray(0, 14), 0xa5]);
    expect(r?.bufferLen()).toBe(14);
  });

  it('keeps and prints unknown EtherTypes as hex', () => {
    const b = FRAME.slice();
    eth.setEtherType(b, 0, 0x88cc);
    expect(EthernetRepr.parse(b, 0)?.format()).toMatch(/type=0x88cc$/);
    eth.setEtherType(b, 0, 0x0042);
    expect(EthernetRepr.parse(b, 0)?.format()).toMatch(/type=0x0042$/);
  });

  it('copies its addresses out of the buffer', () => {
    const b = FRAME.slice();
    const r = EthernetRepr.parse(b, 0);
    b.fill(0);
    expect(r?.src).toEqual(A);
  });

  it('returns null when short', () => {
    expect(EthernetRepr.parse(FRAME, 2)).toBeNull();
  });
});
