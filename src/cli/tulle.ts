#!/usr/bin/env node
/**
 * The `tulle` command line.
 */
import { parseArgs } from 'node:util';
import { ConfigError, DEFAULT_SOCKET, loadConfig } from '../control/config.js';
import { request } from '../control/api.js';
import { runAgent, type ReloadResult } from '../control/agent.js';
import { statusMain } from './status.js';

const AGENT_HELP = `usage: tulle agent --config FILE
  -c, --config FILE   the agent config (JSON; see deploy/agent.example.json and the README)
  -h, --help          this text

Runs a node agent in the foreground, JSON logs on stdout, until SIGTERM or SIGINT.
Exit codes: 0 stopped by a signal, 1 failed, 2 bad command line or config.
`;

const STATUS_HELP = `usage: tulle status [--socket PATH] [--json]
  --socket PATH   the agent's API socket (default ${DEFAULT_SOCKET})
  --json          print the agent's answer as JSON instead of a table
  -h, --help      this text

Shows the running agent's subnet, features, peers, workers, endpoints and counters.
Exit codes: 0 shown, 1 the agent did not answer, 2 bad command line.
`;

const RELOAD_HELP = `usage: tulle reload [--socket PATH]
  --socket PATH   the agent's API socket (default ${DEFAULT_SOCKET})
  -h, --help      this text

Makes the running agent read its config file again (as SIGHUP does) and take over its peers
(static store; forwarding goes on) and logLevel. A file that does not validate, or that changes
any other field, is refused with the reason and nothing changes.
Exit codes: 0 reloaded, 1 refused or the agent did not answer, 2 bad command line.
`;

const DEBUG_HELP = `usage: tulle debug kill-worker N [--socket PATH]
  --socket PATH   the agent's API socket (default ${DEFAULT_SOCKET})
  -h, --help      this text

Ends worker N as a crash would; the agent's supervisor restarts it (tests and drills).
`;

const HELP = `tulle: a userspace VXLAN overlay for pod networks

usage:
  tulle agent --config FILE          run a node agent in the foreground (JSON logs on stdout)
  tulle status [--socket PATH] [--json]
                                     show the running agent's peers, workers, endpoints, counters
  tulle reload [--socket PATH]       make the running agent re-read its config (peers, logLevel)
  tulle debug kill-worker N [--socket PATH]
                                     end worker N as a crash would (the supervisor restarts it)
  tulle COMMAND --help               a command's options
  tulle lab up|add-node|down|demo [options]
                                     a cluster in network namespaces (see: tulle lab --help)
  tulle install-cni [options]        install the CNI plugin and its conflist (see: --help)
  tulle help                         this text

The agent config is JSON; see deploy/agent.example.json and the README.
Default socket: ${DEFAULT_SOCKET}
`;

/** The usage printed with a command's option errors. */
const COMMAND_HELP: Record<string, string> = { agent: AGENT_HELP, status: STATUS_HELP, reload: RELOAD_HELP, debug: DEBUG_HELP };

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'agent': {
      const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } });
      if (values.help) {
        process.stdout.write(AGENT_HELP);
        return 0;
      }
      if (!values.config) return usage('tulle agent: --config FILE is required', AGENT_HELP);
      let cfg;
      try {
        cfg = loadConfig(values.config);
      } catch (e) {
        if (e instanceof ConfigError) {
          process.stderr.write(`tulle agent: ${e.message}\n`);
          return 2;
        }
        throw e;
      }
      return runAgent(cfg, values.config);
    }
    case 'status': {
      const { values } = parseArgs({ args: rest, options: { socket: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
      if (values.help) {
        process.stdout.write(STATUS_HELP);
        return 0;
      }
      return statusMain(values.socket ?? DEFAULT_SOCKET, values.json ?? false);
    }
    case 'reload': {
      const { values } = parseArgs({ args: rest, options: { socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
      if (values.help) {
        process.stdout.write(RELOAD_HELP);
        return 0;
      }
      const socket = values.socket ?? DEFAULT_SOCKET;
      let r: ReloadResult;
      try {
        r = (await request(socket, 'POST', '/v1/reload', undefined, 30_000)) as ReloadResult;
      } catch (e) {
        process.stderr.write(`tulle reload: ${(e as Error).message}\n`);
        return 1;
      }
      const lines = [`reloaded ${r.file}: peers ${r.peers.before} -> ${r.peers.after}`];
      for (const p of r.peers.added) lines.push(`  + ${p}`);
      for (const p of r.peers.removed) lines.push(`  - ${p}`);
      if (r.logLevel) lines.push(`logLevel ${r.logLevel.before} -> ${r.logLevel.after}`);
      process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    }
    case 'debug': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { socket: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
      if (values.help) {
        process.stdout.write(DEBUG_HELP);
        return 0;
      }
      if (positionals[0] !== 'kill-worker' || !/^\d+$/.test(positionals[1] ?? '')) {
        return usage(`tulle debug: expected "kill-worker N", got "${positionals.join(' ')}"`, DEBUG_HELP);
      }
      await request(values.socket ?? DEFAULT_SOCKET, 'POST', `/v1/workers/${positionals[1]}/kill`);
      process.stdout.write(`worker ${positionals[1]} killed\n`);
      return 0;
    }
    case 'install-cni': {
      const { installCniMain } = await import('./install-cni.js');
      return installCniMain(rest);
    }
    case 'lab': {
      const { labMain } = await import('./lab.js');
      return labMain(rest);
    }
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return 0;
    case undefined:
      return usage('tulle: a command is required');
    default:
      return usage(`tulle: unknown command "${cmd}"`);
  }
}

function usage(msg: string, help = HELP): number {
  process.stderr.write(`${msg}\n\n${help}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error & { code?: string }) => {
    // An unknown or malformed option is a usage error, like an unknown command.
    if (e.code?.startsWith('ERR_PARSE_ARGS') === true) {
      process.exitCode = usage(`tulle: ${e.message}`, COMMAND_HELP[process.argv[2] ?? ''] ?? HELP);
      return;
    }
    process.stderr.write(`tulle: ${e.message}\n`);
    process.exitCode = 1;
  },
);
