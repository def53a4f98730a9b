/**
 * Running a delegated plugin (the config's `ipam`), as the spec says: found by type in CNI_PATH,
 * run with the same environment except CNI_COMMAND, fed the whole network config on stdin, its
 * stderr passed through. A failure comes back as the delegate's own error code and message,
 * prefixed with its name.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { CniError, ERR } from './spec.js';

const DELEGATE_TIMEOUT_MS = 60_000;

/** The executable for plugin `type` in the CNI_PATH directories. */
export function findPlugin(type: string, dirs: readonly string[]): string {
  for (const d of dirs) {
    const p = join(d, type);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // next directory
    }
  }
  throw new CniError(ERR.INVALID_NETWORK_CONFIG, `ipam plugin ${JSON.stringify(type)} not found in CNI_PATH ${JSON.stringify(dirs.join(':'))}`);
}

/** Runs the delegate; resolves with its parsed stdout (undefined when empty). */
export function execPlugin(type: string, command: string, dirs: readonly string[], env: NodeJS.ProcessEnv, stdin: string): Promise<unknown> {
  const file = findPlugin(type, dirs);
  return new Promise((resolve, reject) => {
    const child = spawn(file, [], { env: { ...env, CNI_COMMAND: command }, stdio: ['pipe', 'pipe', 'inherit'] });
    const out: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), DELEGATE_TIMEOUT_MS);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stdin.on('error', () => {});
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new CniError(ERR.DELEGATE_FAILED, `cannot run ipam plugin ${file}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const text = Buffer.concat(out).toString('utf8').trim();
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (code === 0) {
        if (text !== '' && parsed === undefined) reject(new CniError(ERR.DELEGATE_FAILED, `ipam plugin ${type} ${command}: output is not JSON: ${JSON.stringify(text.slice(0, 200))}`));
        else resolve(parsed);
        return;
      }
      const err = (parsed ?? {}) as { code?: unknown; msg?: unknown; details?: unknown };
      const why = typeof err.msg === 'string' ? err.msg : text || (signal ? `killed by ${signal}` : `exit ${code}`);
      reject(new CniError(typeof err.code === 'number' ? err.code : ERR.DELEGATE_FAILED, `ipam plugin ${type} ${command}: ${why}`,
        typeof err.details === 'string' ? err.details : ''));
    });
    child.stdin.end(stdin);
  });
}

/** The versions a delegate speaks (its VERSION answer); empty when it cannot say. */
export async function pluginVersions(type: string, dirs: readonly string[], env: NodeJS.ProcessEnv, cniVersion: string): Promise<string[]> {
  try {
    const v = (await execPlugin(type, 'VERSION', dirs, env, JSON.stringify({ cniVersion }))) as { supportedVersions?: unknown };
    return Array.isArray(v?.supportedVersions) ? v.supportedVersions.filter((s): s is string => typeof s === 'string') : [];
  } catch {
    return [];
  }
}
