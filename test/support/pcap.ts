/**
 * Classic libpcap files (https://www.tcpdump.org/manpages/pcap-savefile.5.html), for tests.
 *
 *   global header (24 bytes): magic, version 2.4, thiszone, sigfigs, snaplen, linktype
 *   per record (16 bytes):    ts_sec, ts_usec (or ts_nsec), incl_len, orig_len, then incl_len bytes
 *
 * The magic's byte order gives the file's byte order; 0xa1b2c3d4 means microsecond and
 * 0xa1b23c4d nanosecond timestamps. The reader takes either; the writer writes little-endian
 * microsecond files (what tcpdump writes on x86), linktype Ethernet.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;
export const LINKTYPE_ETHERNET = 1;
const GLOBAL_HEADER_LEN = 24;
const RECORD_HEADER_LEN = 16;

export interface PcapPacket {
  /** Seconds since the epoch. */
  tsSec: number;
  /** Fraction of the second, in nanoseconds (microsecond files are scaled up). */
  tsNsec: number;
  /** Length of the packet on the wire; data may be shorter when the snap length cut it. */
  origLen: number;
  data: Uint8Array;
}

/** What `writePcap` needs: the bytes, and optionally a timestamp and original length. */
export type PcapRecord = Pick<PcapPacket, 'data'> & Partial<Omit<PcapPacket, 'data'>>;

export interface PcapFile {
  linkType: number;
  snapLen: number;
  nanosecond: boolean;
  packets: PcapPacket[];
}

/** Parses a whole capture; throws on a malformed file (tests want to know). */
export function readPcap(bytes: Uint8Array): PcapFile {
  if (bytes.length < GLOBAL_HEADER_LEN) throw new Error(`pcap: file of ${bytes.length} bytes has no header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let le: boolean;
  let nanosecond: boolean;
  const magicLe = view.getUint32(0, true);
  const magicBe = view.getUint32(0, false);
  if (magicLe === PCAP_MAGIC_US || magicLe === PCAP_MAGIC_NS) [le, nanosecond] = [true, magicLe === PCAP_MAGIC_NS];
  else if (magicBe === PCAP_MAGIC_US || magicBe === PCAP_MAGIC_NS) [le, nanosecond] = [false, magicBe === PCAP_MAGIC_NS];
  else throw new Error(`pcap: bad magic 0x${magicBe.toString(16)}`);
  const major = view.getUint16(4, le);
  if (major !== 2) throw new Error(`pcap: unsupported version ${major}`);
  const snapLen = view.getUint32(16, le);
  const linkType = view.getUint32(20, le) & 0x0fffffff; // high bits: FCS info (pcap-linktype)
  const packets: PcapPacket[] = [];
  let at = GLOBAL_HEADER_LEN;
  while (at < bytes.length) {
    if (at + RECORD_HEADER_LEN > bytes.length) throw new Error(`pcap: record header cut at ${at}`);
    const tsSec = view.getUint32(at, le);
    const frac = view.getUint32(at + 4, le);
    const inclLen = view.getUint32(at + 8, le);
    const origLen = view.getUint32(at + 12, le);
    at += RECORD_HEADER_LEN;
    if (at + inclLen > bytes.length) throw new Error(`pcap: record of ${inclLen} bytes cut at ${at}`);
    packets.push({ tsSec, tsNsec: nanosecond ? frac : frac * 1000, origLen, data: bytes.slice(at, at + inclLen) });
    at += inclLen;
  }
  return { linkType, snapLen, nanosecond, packets };
}

/** Writes an Ethernet capture (little-endian, microsecond timestamps). */
export function writePcap(packets: readonly PcapRecord[], snapLen = 262144): Uint8Array {
  let size = GLOBAL_HEADER_LEN;
  for (const p of packets) size += RECORD_HEADER_LEN + p.data.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, PCAP_MAGIC_US, true);
  view.setUint16(4, 2, true);
  view.setUint16(6, 4, true);
  view.setUint32(16, snapLen, true);
  view.setUint32(20, LINKTYPE_ETHERNET, true);
  let at = GLOBAL_HEADER_LEN;
  for (const p of packets) {
    view.setUint32(at, p.tsSec ?? 0, true);
    view.setUint32(at + 4, Math.floor((p.tsNsec ?? 0) / 1000), true);
    view.setUint32(at + 8, p.data.length, true);
    view.setUint32(at + 12, p.origLen ?? p.data.length, true);
    out.set(p.data, at + RECORD_HEADER_LEN);
    at += RECORD_HEADER_LEN + p.data.length;
  }
  return out;
}

/** Reads test/fixtures/<name> as a pcap. */
export function readFixture(name: string): PcapFile {
  const path = fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
  return readPcap(new Uint8Array(readFileSync(path)));
}
