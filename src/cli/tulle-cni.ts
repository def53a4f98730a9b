#!/usr/bin/env node
/**
 * `tulle-cni`: the CNI plugin executable (install it as `tulle` in a CNI bin directory; see
 * `tulle install-cni`). It is run once per CNI call, so it loads only src/cni/ and Node built-ins
 * (no logger, no native addon, no worker code) to keep process start short.
 */
import { readFileSync } from 'node:fs';
import { runPlugin } from '../cni/plugin.js';
import { CURRENT_VERSION, CniError, ERR } from '../cni/spec.js';

function readStdin(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // No stdin at all (closed, or a terminal in non-blocking mode) reads as empty.
    if (code === 'EAGAIN' || code === 'EBADF' || code === 'EOF') return '';
    throw new CniError(ERR.IO_FAILURE, `cannot read the network config from stdin: ${code ?? (e as Error).message}`);
  }
}

let stdin = '';
try {
  stdin = readStdin();
} catch (e) {
  process.stdout.write(`${JSON.stringify((e as CniError).toJSON(CURRENT_VERSION))}\n`);
  process.exit(1);
}
const out = await runPlugin({ env: process.env, stdin });
if (out.stderr) process.stderr.write(out.stderr);
process.stdout.write(out.stdout, () => process.exit(out.exitCode));
