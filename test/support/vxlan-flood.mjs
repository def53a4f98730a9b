// Sends malformed VXLAN datagrams to one VTEP, N of each kind, paced so the
// receiver's socket buffer never overflows (each kind must arrive N times).
// usage: node vxlan-flood.mjs <bindIP> <targetIP> <port> <vtepMAC> <n>
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { Buffer } from 'node:buffer';
import process from 'node:process';
import { setTimeout } from 'node:timers';

const [bindIP, target, portArg, macArg, nArg] = process.argv.slice(2);
const port = Number(portArg);
const n = Number(nArg);
const mac = macArg.split(':').map((h) => parseInt(h, 16));

/** A valid VXLAN datagram carrying IPv4/ICMP echo 10.244.2.9 → 10.244.1.9 (a pod that does not exist). */
function base(innerLen = 28) {
  const b = Buffer.alloc(8 + 14 + innerLen);
  b[0] = 0x08;
  b.writeUIntBE(1, 4, 3);
  Buffer.from(mac).copy(b, 8);
  Buffer.from([0x02, 0xaa, 0, 0, 0, 0x99]).copy(b, 14);
  b.writeUInt16BE(0x0800, 20);
  const ip = 22;
  b[ip] = 0x45;
  b.writeUInt16BE(innerLen, ip + 2);
  b[ip + 8] = 64;
  b[ip + 9] = 1;
  Buffer.from([10, 244, 2, 9]).copy(b, ip + 12);
  Buffer.from([10, 244, 1, 9]).copy(b, ip + 16);
  return b;
}

export const KINDS = {
  rx_drop_short: () => randomBytes(4),
  rx_drop_bad_flags: () => { const b = base(); b[0] = 0x88; return b; },
  rx_drop_reserved_bits: () => { const b = base(); b[3] = 0xff; return b; },
  rx_drop_bad_vni: () => { const b = base(); b.writeUIntBE(7, 4, 3); return b; },
  rx_drop_not_our_mac: () => { const b = base(); b[8] = 0x02; b[13] = 0xee; return b; },
  rx_drop_truncated_inner: () => { const b = base(40); b.writeUInt16BE(1000, 24); return b; },
  rx_drop_oversize: () => base(1600),
  rx_drop_unknown_ethertype: () => { const b = base(); b.writeUInt16BE(0x88cc, 20); return b; },
};

const sock = dgram.createSocket('udp4');
await new Promise((r) => sock.bind(0, bindIP, r));
const send = (buf) => new Promise((res, rej) => sock.send(buf, port, target, (e) => (e ? rej(e) : res())));
for (const make of Object.values(KINDS)) {
  for (let i = 0; i < n; i++) {
    await send(make());
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 2));
  }
}
// Garbage of random length: counted under one reason or another, never delivered.
for (let i = 0; i < n; i++) {
  await send(randomBytes(1 + Math.floor(Math.random() * 1400)));
  if (i % 50 === 49) await new Promise((r) => setTimeout(r, 2));
}
sock.close();
process.stdout.write(`sent ${n * (Object.keys(KINDS).length + 1)}\n`);
