/**
 * Typed errors for system-call failures reported by the native addon.
 *
 * The addon never throws for a failed system call: it returns `-errno`. The control path (opening
 * devices and sockets, closing them) turns that into a `SysError` with `check()`; the data path
 * keeps the number and counts it.
 *
 * `code` is the errno name from `os.constants.errno` (`'EBUSY'`), `errno` the positive number
 * (16), and the message names the operation and quotes the value it was applied to:
 * `open TUN device "tulle0": EBUSY (resource busy or locked)`. The text in parentheses is
 * libuv's description, the same wording Node uses in its own system errors.
 */
import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

/** errno number → name; the first name wins where two share a number (EAGAIN, not EWOULDBLOCK). */
const ERRNO_NAMES: ReadonlyMap<number, string> = (() => {
  const names = new Map<number, string>();
  for (const [name, value] of Object.entries(constants.errno)) {
    if (!names.has(value)) names.set(value, name);
  }
  return names;
})();

/** The errno name for a positive errno number, or `ERRNO_<n>` for one Node does not know. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `ERRNO_${errno}`;
}

/** A human description of a positive errno number. */
export function errnoDescription(errno: number): string {
  return getSystemErrorMap().get(-errno)?.[1] ?? `errno ${errno}`;
}

/** A failed system call, with the operation and the value it was applied to. */
export class SysError extends Error {
  /** errno name, e.g. `'EADDRINUSE'`. */
  readonly code: string;
  /** Positive errno number, as in `os.constants.errno`. */
  readonly errno: number;
  /** The operation that failed, e.g. `'open'`, `'bind'`, `'close'`. */
  readonly syscall: string;

  /**
   * @param errno positive errno number
   * @param syscall the operation, first word of the message
   * @param what what it was applied to, with the value quoted: `TUN device "tulle0"`
   */
  constructor(errno: number, syscall: string, what: string) {
    const code = errnoName(errno);
    super(`${syscall} ${what}: ${code} (${errnoDescription(errno)})`);
    this.name = 'SysError';
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** Returns `ret` when it is not negative; otherwise throws `SysError(-ret, syscall, what)`. */
export function check(ret: number, syscall: string, what: string): number {
  if (ret < 0) throw new SysError(-ret, syscall, what);
  return ret;
}
