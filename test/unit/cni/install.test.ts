/*
 * The plugin as installed: `tulle install-cni` copies a self-contained module set (only Node
 * built-ins outside it, so it starts fast and runs from any CNI bin directory), a launcher and
 * the conflist; the installed plugin answers VERSION like the runtime expects.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test, vi } from 'vitest';
import { DEFAULT_CONF_VERSION, DEFAULT_NETWORK, conflist, installCni, installCniMain } from '../../../src/cli/install-cni.js';
import { DEFAULT_AGENT_SOCKET, SUPPORTED_VERSIONS } from '../../../src/cni/spec.js';

const root = mkdtempSync(join(tmpdir(), 'tulle-install-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const IMPORT_RE = /(?:^|\s)(?:import|export)\s[^'"]*?from\s+'([^']+)'|import\('([^']+)'\)/g;

function specifiers(file: string): { spec: string; typeOnly: boolean }[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(IMPORT_RE)].map((m) => ({ spec: (m[1] ?? m[2])!, typeOnly: /^\s*import type/.test(m[0]) || /^\s*export type/.test(m[0]) }));
}

test('the plugin imports nothing but src/cni/ and node: built-ins', () => {
  const files = [join('src', 'cli', 'tulle-cni.ts'), ...readdirSync(join('src', 'cni')).map((f) => join('src', 'cni', f))];
  const outside = files.flatMap((f) =>
    specifiers(f)
      .filter((s) => !s.typeOnly && !s.spec.startsWith('node:'))
      .filter((s) => !(f.includes(join('src', 'cni')) ? /^\.\/[\w-]+\.js$/ : /^\.\.\/cni\/[\w-]+\.js$/).test(s.spec))
      .map((s) => `${f}: ${s.spec}`),
  );
  expect(outside).toEqual([]);
});

test('install-cni writes the launcher, the modules and the conflist; the plugin answers VERSION', async () => {
  const binDir = join(root, 'bin');
  const confDir = join(root, 'net.d');
  const r = await installCni({ binDir, confDir, socket: '/run/tulle/x.sock', network: 'pods' });
  expect(r).toEqual({ plugin: join(binDir, 'tulle'), conflist: join(confDir, '10-tulle.conflist') });
  expect(statSync(r.plugin).mode & 0o777).toBe(0o755);
  expect(readdirSync(join(binDir, 'tulle.d', 'src', 'cni')).sort()).toEqual(
    readdirSync(join('dist', 'src', 'cni')).filter((f) => f.endsWith('.js')).sort(),
  );
  expect(JSON.parse(readFileSync(r.conflist!, 'utf8'))).toEqual({
    cniVersion: '1.0.0', name: 'pods',
    plugins: [{ type: 'tulle', socket: '/run/tulle/x.sock' }, { type: 'portmap', capabilities: { portMappings: true } }],
  });
  const out = spawnSync(r.plugin, [], { env: { CNI_COMMAND: 'VERSION' }, input: '{"cniVersion":"1.0.0"}', encoding: 'utf8' });
  expect(out.status).toBe(0);
  expect(JSON.parse(out.stdout)).toEqual({ cniVersion: '1.0.0', supportedVersions: [...SUPPORTED_VERSIONS] });
  // Reinstalling over a live installation is fine (atomic renames).
  await installCni({ binDir, confDir: undefined });
  expect(readdirSync(binDir).sort()).toEqual(['tulle', 'tulle.d']);
});

test('install-cni refuses options that would install an unusable plugin or conflist, with code 2, writing nothing', async () => {
  const binDir = join(root, 'refused-bin');
  const confDir = join(root, 'refused-net.d');
  const cases: [string[], string, string][] = [
    [['--socket', 'run/tulle.sock'], '--socket', 'run/tulle.sock'],
    [['--socket', ''], '--socket', ''],
    [['--conf-file', 'tulle.conf'], '--conf-file', 'tulle.conf'],
    [['--conf-file', '../10-tulle.conflist'], '--conf-file', '../10-tulle.conflist'],
    [['--conf-file', 'sub/10-tulle.conflist'], '--conf-file', 'sub/10-tulle.conflist'],
    [['--conf-file', '..'], '--conf-file', '..'],
    [['--conf-file', '.'], '--conf-file', '.'],
    [['--conf-file', '.conflist'], '--conf-file', '.conflist'],
    [['--node', 'bin/node'], '--node', 'bin/node'],
    [['--name', 'my pods'], '--name', 'my pods'],
    [['--cni-version', '9.9.9'], '--cni-version', '9.9.9'],
  ];
  const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    for (const [args, option, value] of cases) {
      stderr.mockClear();
      const code = await installCniMain(['--bin-dir', binDir, '--conf-dir', confDir, ...args]);
      expect(code, args.join(' ')).toBe(2);
      const err = stderr.mock.calls.map((c) => String(c[0])).join('');
      expect(err, args.join(' ')).toContain(`${option} ${JSON.stringify(value)}: `);
      expect(existsSync(binDir) || existsSync(confDir), args.join(' ')).toBe(false);
    }
  } finally {
    stderr.mockRestore();
  }
  // Written out, the same values are fine.
  await expect(installCni({ binDir, confDir, socket: '/run/tulle/tulle.sock', confFile: '20-pods.conflist', node: '/usr/bin/node' })).resolves.toEqual({
    plugin: join(binDir, 'tulle'), conflist: join(confDir, '20-pods.conflist'),
  });
  expect(readFileSync(join(binDir, 'tulle'), 'utf8')).toContain(`exec '/usr/bin/node' `);
});

test('deploy/10-tulle.conflist is what install-cni writes by default', () => {
  expect(JSON.parse(readFileSync(join('deploy', '10-tulle.conflist'), 'utf8'))).toEqual(
    conflist({ network: DEFAULT_NETWORK, cniVersion: DEFAULT_CONF_VERSION, socket: DEFAULT_AGENT_SOCKET, portmap: true }),
  );
});

test("the plugin's default socket is the agent's default socket", async () => {
  const { DEFAULT_SOCKET } = await import('../../../src/control/config.js');
  expect(DEFAULT_AGENT_SOCKET).toBe(DEFAULT_SOCKET);
});
