// Byte-exact TCP check, run with node inside lab namespaces:
//
//   node tcpcheck.js serve <ip> <port|0> <bytes>   prints "listening <ip> <port>", accepts one
//                                                   connection, then prints "sha256 <hex> <bytes>"
//   node tcpcheck.js send <ip> <port> <bytes> <seed>  sends the stream, prints "sha256 <hex> <bytes>"
//
// The stream is xorshift32 output from the seed, so sender, receiver and caller can each derive
// or check it; a corrupted, reordered, truncated or padded stream gives a different digest.
import { createHash } from 'node:crypto';
import { createServer, connect } from 'node:net';
import { fileURLToPath } from 'node:url';

const CHUNK_BYTES = 256 * 1024;
const SERVE_TIMEOUT_MS = 120_000;

/** Deterministic byte stream: xorshift32 words, little-endian. */
export class PseudoRandomStream {
  private state: number;
  constructor(seed: number) {
    this.state = (seed >>> 0) || 0x9e3779b9; // xorshift32 must not start at 0
  }
  /** Fills `out` with the next out.length bytes (a multiple of 4 keeps the stream aligned). */
  fill(out: Uint8Array): void {
    const words = new Uint32Array(out.buffer, out.byteOffset, out.length >>> 2);
    let x = this.state;
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      words[i] = x >>> 0;
    }
    this.state = x >>> 0;
  }
}

/** SHA-256 of the first `bytes` bytes of the stream for `seed`. */
export function streamDigest(bytes: number, seed: number): string {
  const hash = createHash('sha256');
  const gen = new PseudoRandomStream(seed);
  const buf = new Uint8Array(CHUNK_BYTES);
  for (let left = bytes; left > 0; left -= CHUNK_BYTES) {
    gen.fill(buf);
    hash.update(buf.subarray(0, Math.min(left, CHUNK_BYTES)));
  }
  return hash.digest('hex');
}

function serve(ip: string, port: number, bytes: number): void {
  const hash = createHash('sha256');
  let received = 0;
  const timer = setTimeout(() => fail(`no complete stream within ${SERVE_TIMEOUT_MS} ms (got ${received} bytes)`), SERVE_TIMEOUT_MS);
  const server = createServer((sock) => {
    server.close();
    sock.on('data', (b: Buffer) => {
      received += b.length;
      hash.update(b);
    });
    sock.on('error', (e) => fail(`receive error after ${received} bytes: ${e.message}`));
    sock.on('end', () => {
      clearTimeout(timer);
      if (received !== bytes) fail(`expected ${bytes} bytes, received ${received}`);
      process.stdout.write(`sha256 ${hash.digest('hex')} ${received}\n`);
    });
  });
  server.on('error', (e) => fail(`listen on ${ip}:${port}: ${e.message}`));
  server.listen(port, ip, () => {
    const addr = server.address();
    const p = typeof addr === 'object' && addr ? addr.port : port;
    process.stdout.write(`listening ${ip} ${p}\n`);
  });
}

function send(ip: string, port: number, bytes: number, seed: number): void {
  const hash = createHash('sha256');
  const gen = new PseudoRandomStream(seed);
  let sent = 0;
  const sock = connect({ host: ip, port }, () => {
    const pump = (): void => {
      while (sent < bytes) {
        const buf = new Uint8Array(CHUNK_BYTES); // the socket owns each written buffer
        gen.fill(buf);
        const part = buf.subarray(0, Math.min(bytes - sent, CHUNK_BYTES));
        hash.update(part);
        sent += part.length;
        if (!sock.write(part)) return void sock.once('drain', pump);
      }
      sock.end(() => process.stdout.write(`sha256 ${hash.digest('hex')} ${sent}\n`));
    };
    pump();
  });
  sock.on('error', (e) => fail(`send to ${ip}:${port} after ${sent} bytes: ${e.message}`));
}

function fail(msg: string): never {
  process.stderr.write(`tcpcheck: ${msg}\n`);
  process.exit(1);
}

function num(name: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || !Number.isSafeInteger(n) || n < 0) fail(`invalid ${name} ${JSON.stringify(v)}`);
  return n;
}

function main(argv: string[]): void {
  const [cmd, ip, port, bytes, seed] = argv;
  if (cmd === 'serve' && ip) return serve(ip, num('port', port), num('bytes', bytes));
  if (cmd === 'send' && ip) return send(ip, num('port', port), num('bytes', bytes), num('seed', seed));
  fail('usage: tcpcheck serve <ip> <port> <bytes> | send <ip> <port> <bytes> <seed>');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
