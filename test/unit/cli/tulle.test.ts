// The tulle command's usage errors and exit codes: 2 for a bad command line, 0 for help.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { distPath } from '../../../src/util/paths.js';

function tulle(...args: string[]) {
  const r = spawnSync(process.execPath, [distPath('src/cli/tulle.js'), ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('tulle command line', () => {
  it('exits 2 with the command\'s usage for an unknown option, naming it', () => {
    for (const args of [['status', '--sock', 'x'], ['agent', '--confg', 'x'], ['debug', '--sokcet', 'x', 'kill-worker', '0']]) {
      const r = tulle(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toContain(`Unknown option '${args[1]}'`);
      expect(r.err).toContain(`usage: tulle ${args[0]}`);
    }
  });

  it('prints status\'s, reload\'s and debug\'s usage for --help or -h, exit 0, without asking an agent', () => {
    for (const cmd of ['status', 'reload', 'debug']) {
      for (const flag of ['--help', '-h']) {
        const r = tulle(cmd, flag, '--socket', '/nonexistent/tulle.sock');
        expect(r.code, `${cmd} ${flag}`).toBe(0);
        expect(r.out).toContain(`usage: tulle ${cmd}`);
        expect(r.out).toContain('--socket PATH');
        expect(r.err).toBe('');
      }
    }
    expect(tulle('help').out).toContain('tulle COMMAND --help');
  });

  it('exits 2 for an unknown or missing command, 0 for help', () => {
    expect(tulle('frobnicate')).toMatchObject({ code: 2, err: expect.stringContaining('unknown command "frobnicate"') as unknown });
    expect(tulle().code).toBe(2);
    const help = tulle('help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/usage|Usage/);
  });

  it('lists every lab command in its help', () => {
    const help = tulle('help');
    for (const sub of ['up', 'add-node', 'down', 'demo']) expect(help.out).toMatch(new RegExp(`tulle lab \\S*\\b${sub}\\b`));
  });

  it('prints the agent\'s usage for agent --help or -h, exit 0', () => {
    for (const flag of ['--help', '-h']) {
      const r = tulle('agent', flag);
      expect(r.code, flag).toBe(0);
      expect(r.out).toContain('usage: tulle agent --config FILE');
      expect(r.err).toBe('');
    }
    const missing = tulle('agent');
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('--config FILE is required');
    expect(missing.err).toContain('usage: tulle agent');
  });
});
