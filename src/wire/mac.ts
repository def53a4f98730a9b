/**
 * 48-bit IEEE 802 MAC addresses: parsing and printing for the control path.
 *
 * Per-packet code never holds a MAC as an object; it compares and copies bytes in place
 * (see `macEqual` and `copyMac` in ethernet.ts). The helpers here allocate and are meant for
 * configuration, tests and log lines.
 */
import { randomFillSync } from 'node:crypto';

/** Bytes in an Ethernet (EUI-48) address. */
export const MAC_LEN = 6;

/** Bit 0 of the first octet: group (multicast/broadcast) address when set (IEEE 802-2014 §8.2). */
export const MAC_GROUP_BIT = 0x01;
/** Bit 1 of the first octet: locally administered when set, universal (OUI-assigned) when clear. */
export const MAC_LOCAL_BIT = 0x02;

const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;

/** Parses "02:aa:00:00:00:01" (any case) into 6 new bytes; throws TypeError naming the value. */
export function parseMac(str: string): Uint8Array {
  if (typeof str !== 'string' || !MAC_RE.test(str)) {
    throw new TypeError(`invalid MAC address "${String(str)}"`);
  }
  const mac = new Uint8Array(MAC_LEN);
  for (let i = 0; i < MAC_LEN; i++) mac[i] = parseInt(str.slice(i * 3, i * 3 + 2), 16);
  return mac;
}

/** Formats the 6 bytes at buf[off] as lower-case colon-separated hex. */
export function formatMac(buf: Uint8Array, off = 0): string {
  let s = '';
  for (let i = 0; i < MAC_LEN; i++) {
    if (i > 0) s += ':';
    s += (buf[off + i] ?? 0).toString(16).padStart(2, '0');
  }
  return s;
}

/** True when the address at buf[off] is an individual (unicast) address: group bit clear. */
export function isUnicastMac(buf: Uint8Array, off = 0): boolean {
  return (buf[off] & MAC_GROUP_BIT) === 0;
}

/** A fresh random address with the local bit set and the group bit clear (for a VTEP). */
export function randomLocalMac(): Uint8Array {
  const mac = randomFillSync(new Uint8Array(MAC_LEN));
  mac[0] = (mac[0] & ~(MAC_GROUP_BIT | MAC_LOCAL_BIT)) | MAC_LOCAL_BIT;
  return mac;
}
