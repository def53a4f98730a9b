/*
 * The addon's file locks (native-bindings/src/lock.cc): flock semantics between open files of
 * one process and against another process (util-linux flock(1)), unlock, validation.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import * as native from '../../src/io/native.js';
import { SysError } from '../../src/io/errors.js';

const EAGAIN = 11;
const dir = mkdtempSync(join(tmpdir(), 'tulle-lock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `flock -n FILE true` in another process: 0 when it got the lock, 1 when it is held. */
function otherProcessLocks(file: string, shared = false): number | null {
  return spawnSync('flock', [shared ? '-s' : '-x', '-n', file, 'true']).status;
}

describe('lockOpen / flock / funlock', () => {
  test('creates the file 0600; exclusive lock excludes other open files and other processes until funlock', () => {
    const file = join(dir, 'lock');
    const a = native.openLockFile(file);
    const b = native.openLockFile(file);
    try {
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(native.flock(a, true, true)).toBe(0);
      expect(native.flock(b, true, true)).toBe(-EAGAIN);
      expect(native.flock(b, false, true)).toBe(-EAGAIN);
      expect(otherProcessLocks(file)).toBe(1);
      expect(native.funlock(a)).toBe(0);
      expect(otherProcessLocks(file)).toBe(0);
      expect(native.flock(b, true, true)).toBe(0);
      expect(native.funlock(b)).toBe(0);
    } finally {
      native.closeFd(a);
      native.closeFd(b);
    }
  });

  test('shared locks coexist; closing the fd releases the lock', () => {
    const file = join(dir, 'shared');
    const a = native.openLockFile(file);
    const b = native.openLockFile(file);
    expect(native.flock(a, false, true)).toBe(0);
    expect(native.flock(b, false, true)).toBe(0);
    expect(otherProcessLocks(file, true)).toBe(0);
    expect(otherProcessLocks(file)).toBe(1);
    native.closeFd(a);
    native.closeFd(b);
    expect(otherProcessLocks(file)).toBe(0);
  });

  test('errors: missing directory is a SysError naming the path; arguments are checked', () => {
    const missing = join(dir, 'no', 'such', 'lock');
    expect(native.lockOpen(missing)).toBe(-2);
    expect(() => native.openLockFile(missing)).toThrow(new SysError(2, 'open', `lock file "${missing}"`));
    expect(() => native.lockOpen('')).toThrow(RangeError);
    expect(() => native.lockOpen('a\0b')).toThrow(RangeError);
    expect(() => native.lockOpen(1 as unknown as string)).toThrow(TypeError);
    expect(() => native.flock(-1, true, true)).toThrow(RangeError);
    expect(() => native.flock(3, 'yes' as unknown as boolean, true)).toThrow(TypeError);
    expect(() => native.funlock(1.5)).toThrow(RangeError);
  });
});
