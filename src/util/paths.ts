/**
 * Locations inside the installed package. Code runs both from `src/` (under
 * vitest) and from `dist/src/` (compiled); worker scripts and helper
 * processes always run from the compiled tree.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The directory holding tulle's package.json. */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find tulle's package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  root = dir;
  return dir;
}

/** Path of a compiled file, e.g. distPath('src/worker/main.js'); fails clearly when not built. */
export function distPath(rel: string): string {
  const p = join(packageRoot(), 'dist', rel);
  if (!existsSync(p)) throw new Error(`${p} is missing: build tulle first (npm run build:ts)`);
  return p;
}

/** Path of a program built with the addon (native-bindings/binding.gyp); fails clearly when not built. */
export function nativeProgram(name: string): string {
  const p = join(packageRoot(), 'native-bindings', 'build', 'Release', name);
  if (!existsSync(p)) throw new Error(`${p} is missing: build the native part first (npm install, or npm run build)`);
  return p;
}
