/**
 * `tulle install-cni`: puts the plugin where container runtimes look for it and writes the
 * network's conflist, as kube-flannel's init containers do for flannel.
 *
 *   <bin-dir>/tulle            launcher: exec <node> <bin-dir>/tulle.d/src/cli/tulle-cni.js
 *   <bin-dir>/tulle.d/         the plugin's modules (dist/src/cli/tulle-cni.js, dist/src/cni/),
 *                              a package.json marking them ES modules, optionally a copy of node
 *   <conf-dir>/<conf-file>     {"name", "cniVersion", "plugins": [tulle{socket}, portmap]}
 *
 * Every file is written to a temporary name and renamed into place, so a runtime calling the
 * plugin meanwhile sees the old or the new file, never half of one.
 */
import { chmod, copyFile, mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_AGENT_SOCKET, ID_RE, PLUGIN_TYPE, SUPPORTED_VERSIONS, isSocketPath, isSupported } from '../cni/spec.js';
import { packageRoot } from '../util/paths.js';

export const DEFAULT_BIN_DIR = '/opt/cni/bin';
export const DEFAULT_CONF_DIR = '/etc/cni/net.d';
export const DEFAULT_CONF_FILE = '10-tulle.conflist';
export const DEFAULT_NETWORK = 'tulle';
/** The conflist version: the newest that Debian's portmap and podman 4.3 (libcni 1.1) accept. */
export const DEFAULT_CONF_VERSION = '1.0.0';
const SUPPORT_DIR = `${PLUGIN_TYPE}.d`;

export interface InstallOptions {
  binDir: string;
  /** Undefined: do not write a conflist. */
  confDir?: string | undefined;
  confFile?: string;
  network?: string;
  cniVersion?: string;
  socket?: string;
  /** Chain portmap after tulle (default true). */
  portmap?: boolean;
  /** Node binary the launcher runs; default this process's. Ignored with copyNode. */
  node?: string;
  /** Copy this process's node binary into <bin-dir>/tulle.d/node (for hosts without Node). */
  copyNode?: boolean;
}

export interface Installed {
  plugin: string;
  conflist?: string;
}

async function writeAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

async function copyAtomic(from: string, to: string, mode: number): Promise<void> {
  const tmp = join(dirname(to), `.${basename(to)}.${process.pid}.tmp`);
  await copyFile(from, tmp);
  await chmod(tmp, mode);
  await rename(tmp, to);
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** An option that would install something unusable; refused before anything is written. */
export class InstallOptionError extends RangeError {
  constructor(
    readonly option: string,
    readonly value: string,
    reason: string,
  ) {
    super(`${option} ${JSON.stringify(value)}: ${reason}`);
    this.name = 'InstallOptionError';
  }
}

const CONFLIST_EXT = '.conflist';

/** Throws InstallOptionError for the first option the runtime or the plugin would not accept. */
export function checkInstallOptions(o: InstallOptions): void {
  if (o.network !== undefined && !ID_RE.test(o.network)) {
    throw new InstallOptionError('--name', o.network, 'must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (a CNI network name)');
  }
  if (o.cniVersion !== undefined && !isSupported(o.cniVersion)) {
    throw new InstallOptionError('--cni-version', o.cniVersion, `must be one of ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  if (o.socket !== undefined && !isSocketPath(o.socket)) {
    throw new InstallOptionError('--socket', o.socket, 'must be an absolute path (the plugin refuses any other socket in its conflist)');
  }
  const f = o.confFile;
  // libcni loads *.conflist as a list; a ".conf" would be read as a single plugin's config.
  if (f !== undefined && (f.includes('/') || f.includes('\0') || !f.endsWith(CONFLIST_EXT) || f.length === CONFLIST_EXT.length)) {
    throw new InstallOptionError('--conf-file', f, `must be a file name ending in ${CONFLIST_EXT}, without "/" (it is written in --conf-dir)`);
  }
  // The launcher runs in whatever directory the runtime calls the plugin from.
  if (o.node !== undefined && !o.copyNode && (!o.node.startsWith('/') || o.node.includes('\0'))) {
    throw new InstallOptionError('--node', o.node, 'must be an absolute path');
  }
}

/** The conflist tulle-cni is used with. */
export function conflist(o: { network: string; cniVersion: string; socket: string; portmap: boolean }): Record<string, unknown> {
  const plugins: Record<string, unknown>[] = [{ type: PLUGIN_TYPE, socket: o.socket }];
  if (o.portmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true } });
  return { cniVersion: o.cniVersion, name: o.network, plugins };
}

export async function installCni(o: InstallOptions): Promise<Installed> {
  checkInstallOptions(o);
  const network = o.network ?? DEFAULT_NETWORK;
  const cniVersion = o.cniVersion ?? DEFAULT_CONF_VERSION;
  const dist = join(packageRoot(), 'dist', 'src');
  const support = join(o.binDir, SUPPORT_DIR);
  await mkdir(join(support, 'src', 'cli'), { recursive: true });
  await mkdir(join(support, 'src', 'cni'), { recursive: true });
  await writeAtomic(join(support, 'package.json'), '{ "type": "module" }\n', 0o644);
  for (const f of (await readdir(join(dist, 'cni'))).filter((n) => n.endsWith('.js'))) {
    await copyAtomic(join(dist, 'cni', f), join(support, 'src', 'cni', f), 0o644);
  }
  const entry = join(support, 'src', 'cli', 'tulle-cni.js');
  await copyAtomic(join(dist, 'cli', 'tulle-cni.js'), entry, 0o755);
  let node = shellQuote(o.node ?? process.execPath);
  if (o.copyNode) {
    await copyAtomic(process.execPath, join(support, 'node'), 0o755);
    node = `"$here/${SUPPORT_DIR}/node"`;
  }
  const plugin = join(o.binDir, PLUGIN_TYPE);
  const launcher = [
    '#!/bin/sh',
    '# tulle CNI plugin (written by `tulle install-cni`)',
    'here=$(dirname "$0")',
    `exec ${node} "$here/${SUPPORT_DIR}/src/cli/tulle-cni.js" "$@"`,
    '',
  ].join('\n');
  await writeAtomic(plugin, launcher, 0o755);
  const out: Installed = { plugin };
  if (o.confDir !== undefined) {
    await mkdir(o.confDir, { recursive: true });
    const file = join(o.confDir, o.confFile ?? DEFAULT_CONF_FILE);
    const conf = conflist({ network, cniVersion, socket: o.socket ?? DEFAULT_AGENT_SOCKET, portmap: o.portmap ?? true });
    await writeAtomic(file, `${JSON.stringify(conf, null, 2)}\n`, 0o644);
    out.conflist = file;
  }
  return out;
}

const HELP = `usage: tulle install-cni [options]
  --bin-dir DIR       CNI plugin directory (default ${DEFAULT_BIN_DIR})
  --conf-dir DIR      CNI config directory (default ${DEFAULT_CONF_DIR})
  --conf-file NAME    conflist file name, ending in .conflist (default ${DEFAULT_CONF_FILE})
  --no-conflist       install the plugin only
  --name NAME         network name (default ${DEFAULT_NETWORK})
  --cni-version V     conflist cniVersion (default ${DEFAULT_CONF_VERSION})
  --socket PATH       the agent's socket, an absolute path (default ${DEFAULT_AGENT_SOCKET})
  --no-portmap        do not chain portmap after tulle
  --node PATH         absolute path of the node binary the plugin runs with (default: this one, ${process.execPath})
  --copy-node         copy this node binary next to the plugin (hosts without Node; they still
                      need the glibc and libstdc++ it links)
  -h, --help          this text
`;

export async function installCniMain(argv: string[]): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        'bin-dir': { type: 'string' }, 'conf-dir': { type: 'string' }, 'conf-file': { type: 'string' },
        'no-conflist': { type: 'boolean' }, name: { type: 'string' }, 'cni-version': { type: 'string' },
        socket: { type: 'string' }, 'no-portmap': { type: 'boolean' }, node: { type: 'string' },
        'copy-node': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    process.stderr.write(`tulle install-cni: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (v.help) {
    process.stdout.write(HELP);
    return 0;
  }
  try {
    const r = await installCni({
      binDir: v['bin-dir'] ?? DEFAULT_BIN_DIR,
      confDir: v['no-conflist'] ? undefined : (v['conf-dir'] ?? DEFAULT_CONF_DIR),
      confFile: v['conf-file'] ?? DEFAULT_CONF_FILE,
      network: v.name ?? DEFAULT_NETWORK,
      cniVersion: v['cni-version'] ?? DEFAULT_CONF_VERSION,
      socket: v.socket ?? DEFAULT_AGENT_SOCKET,
      portmap: !v['no-portmap'],
      ...(v.node !== undefined ? { node: v.node } : {}),
      copyNode: v['copy-node'] ?? false,
    });
    process.stdout.write(`installed ${r.plugin}${r.conflist ? ` and ${r.conflist}` : ''}\n`);
    return 0;
  } catch (e) {
    if (e instanceof InstallOptionError) {
      process.stderr.write(`tulle install-cni: ${e.message}\n\n${HELP}`);
      return 2;
    }
    process.stderr.write(`tulle install-cni: ${(e as Error).message}\n`);
    return 1;
  }
}
