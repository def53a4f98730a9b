/**
 * The CNI_* environment a runtime sets for each call, validated as libcni's skel does: every
 * variable the command needs must be present and well-formed, else error code 4 naming them.
 *
 *   command   needs
 *   ADD       CNI_CONTAINERID CNI_NETNS CNI_IFNAME CNI_PATH
 *   CHECK     CNI_CONTAINERID CNI_NETNS CNI_IFNAME CNI_PATH
 *   DEL       CNI_CONTAINERID CNI_IFNAME CNI_PATH          (CNI_NETNS optional)
 *   STATUS    CNI_PATH
 *   GC        CNI_PATH
 *   VERSION   nothing (runtimes send dummies; none is looked at)
 */
import { CniError, ERR, ID_RE, ifnameProblem } from './spec.js';

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'] as const;
export type Command = (typeof COMMANDS)[number];

export interface Invocation {
  command: Command;
  containerID: string;
  /** Empty when not given (DEL). */
  netns: string;
  ifname: string;
  /** CNI_PATH split on ':' (empty entries dropped). */
  path: string[];
  /** CNI_ARGS as key/value pairs. */
  args: Map<string, string>;
}

const NEEDS: Record<Command, readonly string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
  STATUS: ['CNI_PATH'],
  GC: ['CNI_PATH'],
  VERSION: [],
};

export function isCommand(v: string): v is Command {
  return (COMMANDS as readonly string[]).includes(v);
}

/** CNI_ARGS "K1=V1;K2=V2"; code 4 for a pair without "=". */
export function parseCniArgs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  if (text === '') return out;
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(ERR.INVALID_ENV, `CNI_ARGS: invalid pair ${JSON.stringify(pair)} (expected KEY=VALUE)`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

/** Validates the environment for `command` (already known to be a command). */
export function parseEnv(command: Command, env: NodeJS.ProcessEnv): Invocation {
  const get = (k: string): string => env[k] ?? '';
  const missing = NEEDS[command].filter((k) => get(k) === '');
  if (missing.length > 0) throw new CniError(ERR.INVALID_ENV, `required environment variables missing: ${missing.join(', ')}`);
  const inv: Invocation = {
    command,
    containerID: get('CNI_CONTAINERID'),
    netns: get('CNI_NETNS'),
    ifname: get('CNI_IFNAME'),
    path: get('CNI_PATH').split(':').filter((p) => p !== ''),
    args: parseCniArgs(get('CNI_ARGS')),
  };
  if (NEEDS[command].includes('CNI_CONTAINERID') && !ID_RE.test(inv.containerID)) {
    throw new CniError(ERR.INVALID_ENV, `invalid CNI_CONTAINERID ${JSON.stringify(inv.containerID)}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]*`);
  }
  if (NEEDS[command].includes('CNI_IFNAME')) {
    const why = ifnameProblem(inv.ifname);
    if (why) throw new CniError(ERR.INVALID_ENV, `invalid CNI_IFNAME ${JSON.stringify(inv.ifname)}: ${why}`);
  }
  if (inv.netns !== '' && !inv.netns.startsWith('/')) {
    throw new CniError(ERR.INVALID_ENV, `invalid CNI_NETNS ${JSON.stringify(inv.netns)}: must be an absolute path`);
  }
  return inv;
}
