/**
 * The plugin's client for the agent's socket (HTTP/1.1 + JSON over a Unix socket), turning every
 * way a call can fail into the CNI error the runtime should see:
 *
 *   socket missing, refused, not permitted   50 (plugin not available)
 *   no answer in time, connection broken     11 (try again later)
 *   503 from the agent (starting, stopping)  11
 *   other non-2xx                            the agent's code, else 999
 */
import http from 'node:http';
import type { ApiErrorBody } from './protocol.js';
import { CniError, ERR } from './spec.js';

export const DEFAULT_TIMEOUT_MS = 60_000;

/**
 * The request may have reached the agent, but no answer came (time-out, broken connection): what
 * it did is unknown, so nothing it may be using (a delegated address) can be given back yet.
 */
export class AgentNoAnswer extends CniError {
  constructor(message: string) {
    super(ERR.TRY_AGAIN_LATER, message);
    this.name = 'AgentNoAnswer';
  }
}
/** No agent took the connection (socket missing, refused, not permitted): the request never arrived. */
export class AgentUnreachable extends CniError {
  constructor(message: string) {
    super(ERR.NOT_AVAILABLE, message);
    this.name = 'AgentUnreachable';
  }
}

/**
 * Errors of connect(2) on a Unix socket: the request never reached an agent. A connection that
 * breaks later (ECONNRESET, EPIPE) may have carried the whole request first, so it is no answer.
 */
const UNREACHABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'EPERM', 'ENOTSOCK']);

export function callAgent(socket: string, method: string, path: string, body?: unknown, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string | number> = {};
    if (data !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(data);
    }
    const req = http.request({ socketPath: socket, method, path, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => reject(new AgentNoAnswer(`tulle agent at "${socket}": ${e.message}`)));
      res.on('end', () => {
        const status = res.statusCode ?? 500;
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          reject(new CniError(ERR.INTERNAL, `tulle agent at "${socket}" sent a non-JSON answer (HTTP ${status})`));
          return;
        }
        if (status < 300) return resolve(parsed);
        const err = (parsed ?? {}) as ApiErrorBody;
        const msg = err.error ?? `tulle agent answered HTTP ${status}`;
        if (typeof err.code === 'number') return reject(new CniError(err.code, msg));
        reject(new CniError(status === 503 ? ERR.TRY_AGAIN_LATER : ERR.INTERNAL, msg));
      });
    });
    req.on('timeout', () => {
      req.destroy();
      reject(new AgentNoAnswer(`tulle agent at "${socket}" did not answer within ${timeoutMs} ms`));
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code && UNREACHABLE.has(e.code)) {
        reject(new AgentUnreachable(`tulle agent is not reachable at socket "${socket}" (${e.code}); is the agent running?`));
      } else {
        reject(new AgentNoAnswer(`tulle agent at "${socket}": ${e.message}`));
      }
    });
    req.end(data);
  });
}
