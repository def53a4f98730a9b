/**
 * The agent's local API: HTTP/1.1 over a Unix socket (mode 0600), JSON in
 * and out. `tulle status` and the CNI plugin are its clients.
 *
 *   GET  /v1/status               node, workers, peers, endpoints, counters
 *   GET  /metrics                 the same in the Prometheus text format (src/control/metrics.ts)
 *   POST /v1/workers/<id>/kill    end a worker as a crash would (fault injection)
 *   POST /v1/cni/{add,del,check,gc}, GET /v1/endpoints   the CNI plugin's (src/control/endpoints.ts)
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import http from 'node:http';
import { constants as osConstants } from 'node:os';
import { dirname } from 'node:path';
import * as native from '../io/native.js';
import { socketLockPath } from './state.js';

export type Handler = (req: http.IncomingMessage, body: unknown, params: string[]) => Promise<unknown> | unknown;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A handler's answer sent as it is, with its content type, rather than as JSON. */
export class TextResponse {
  constructor(
    readonly contentType: string,
    readonly text: string,
  ) {}
}

interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

export class ApiServer {
  private readonly routes: Route[] = [];
  private server?: http.Server;
  /** `<socket>.lock`, flock'd while this server owns the socket path. */
  private lockFd = -1;

  constructor(readonly socketPath: string) {}

  on(method: string, pattern: RegExp, handler: Handler): this {
    this.routes.push({ method, pattern, handler });
    return this;
  }

  /**
   * Listens on the socket. The path belongs to whoever holds `<socket>.lock` (flock, released
   * when the process ends however it ends): a second agent is refused before it touches the
   * socket, even when the first is too busy to answer; a socket file left by an agent that is
   * gone is replaced.
   */
  async listen(): Promise<void> {
    await mkdir(dirname(this.socketPath), { recursive: true });
    const lockPath = socketLockPath(this.socketPath);
    const fd = native.openLockFile(lockPath);
    const r = native.flock(fd, true, true);
    if (r < 0) {
      native.closeFd(fd);
      if (r === -osConstants.errno.EAGAIN) {
        throw new Error(`another agent is already serving on socket "${this.socketPath}" (it holds "${lockPath}")`);
      }
      native.check(r, 'flock', `lock file "${lockPath}"`);
    }
    try {
      const st = await lstat(this.socketPath).catch(() => undefined);
      if (st && !st.isSocket()) {
        throw new Error(`socket path "${this.socketPath}" exists and is not a socket; remove it or choose another path`);
      }
      const there = await whoIsOn(this.socketPath);
      if (there !== 'nobody') {
        throw new Error(`another agent is already serving on socket "${this.socketPath}"${there === 'silent' ? ' (it took the connection but did not answer within 1 s)' : ''}`);
      }
      await unlink(this.socketPath).catch(() => undefined);
      const server = http.createServer((req, res) => void this.dispatch(req, res));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.socketPath, () => resolve());
      });
      this.server = server;
      this.lockFd = fd;
      await chmod(this.socketPath, 0o600);
    } catch (e) {
      if (this.server) await this.close();
      else native.closeFd(fd);
      throw e;
    }
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
      await unlink(this.socketPath).catch(() => undefined);
    }
    if (this.lockFd >= 0) native.closeFd(this.lockFd);
    this.lockFd = -1;
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    try {
      const url = new URL(req.url ?? '/', 'http://tulle');
      const route = this.routes.find((r) => r.method === req.method && r.pattern.test(url.pathname));
      if (!route) throw new HttpError(404, `no such endpoint: ${req.method} ${url.pathname}`);
      const params = url.pathname.match(route.pattern)?.slice(1) ?? [];
      const body = await readJson(req);
      const result = await route.handler(req, body, params);
      if (result instanceof TextResponse) {
        res.writeHead(200, { 'content-type': result.contentType, 'content-length': Buffer.byteLength(result.text) });
        res.end(result.text);
        return;
      }
      send(200, result);
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 500;
      send(status, { error: (e as Error).message, code: (e as { code?: string }).code });
    }
  }
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 1 << 20) throw new HttpError(413, 'request body over 1 MiB');
    chunks.push(c as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}

/** Calls the agent at `socketPath`; rejects with the agent's error message on a non-2xx answer. */
export function request(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { socketPath, method, path, timeout: timeoutMs, headers: data ? { 'content-type': 'application/json' } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            reject(new Error(`agent at "${socketPath}" sent a non-JSON answer`));
            return;
          }
          if ((res.statusCode ?? 500) >= 300) {
            const err = parsed as { error?: string };
            reject(Object.assign(new Error(err.error ?? `agent answered ${res.statusCode}`), { status: res.statusCode }));
          } else resolve(parsed);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`agent at "${socketPath}" did not answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** Whether a server is on the socket: only a missing file or a refused connection means nobody. */
async function whoIsOn(socketPath: string): Promise<'nobody' | 'agent' | 'silent'> {
  try {
    await request(socketPath, 'GET', '/v1/status', undefined, 1000);
    return 'agent';
  } catch (e) {
    if ((e as { status?: number }).status !== undefined) return 'agent';
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ECONNREFUSED' ? 'nobody' : 'silent';
  }
}
