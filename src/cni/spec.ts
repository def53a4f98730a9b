/**
 * Facts of the CNI specification the plugin relies on: the versions it speaks, the error codes,
 * and the naming rules for container IDs, interface names and network names. Shared by the
 * plugin (`tulle-cni`) and the agent; imports nothing, so the plugin starts fast.
 */

/** Spec versions `tulle-cni` accepts and answers in (oldest first). */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const CURRENT_VERSION: CniVersion = '1.1.0';

/** The agent's socket when the network config names none (same as the agent's default). */
export const DEFAULT_AGENT_SOCKET = '/run/tulle/tulle.sock';
/** The plugin type, i.e. the executable's name in the CNI bin directory. */
export const PLUGIN_TYPE = 'tulle';

/** Error codes: 0-99 reserved by the spec; 100+ are tulle's own. */
export const ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODING_FAILURE: 6,
  INVALID_NETWORK_CONFIG: 7,
  /** Not in the spec text; what libcni's skel reports for an unusable CNI_NETNS. */
  INVALID_NETNS: 8,
  TRY_AGAIN_LATER: 11,
  NOT_AVAILABLE: 50,
  LIMITED_CONNECTIVITY: 51,
  /** tulle: no address left, the requested address is taken, or the attachment already exists. */
  ADDRESS_UNAVAILABLE: 100,
  /** tulle: creating or configuring the veth pair failed (what was done is undone). */
  ATTACH_FAILED: 101,
  /** tulle: CHECK found the attachment differing from prevResult. */
  CHECK_FAILED: 102,
  /** tulle: a delegated (ipam) plugin could not be run or answered nonsense. */
  DELEGATE_FAILED: 103,
  /** libcni's ErrInternal: anything else. */
  INTERNAL: 999,
} as const;

/**
 * An error reported to the runtime as the spec's error object:
 * `{"cniVersion", "code", "msg", "details"}` on stdout, non-zero exit.
 */
export class CniError extends Error {
  constructor(
    readonly cniCode: number,
    message: string,
    readonly details = '',
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CniError';
  }

  toJSON(cniVersion: string): Record<string, unknown> {
    const o: Record<string, unknown> = { cniVersion, code: this.cniCode, msg: this.message };
    if (this.details) o.details = this.details;
    return o;
  }
}

/** The agent's socket as a network config names it: an absolute path (the plugin's rule, and install-cni's). */
export function isSocketPath(v: unknown): v is string {
  return typeof v === 'string' && v.startsWith('/') && !v.includes('\0');
}

/** CNI_CONTAINERID and network names (libcni's ValidateContainerID / ValidateNetworkName). */
export const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Why `name` is not a valid Linux interface name (libcni's ValidateInterfaceName), or ''. */
export function ifnameProblem(name: string): string {
  if (name.length === 0) return 'is empty';
  if (Buffer.byteLength(name) > 15) return 'is longer than 15 bytes';
  if (name === '.' || name === '..') return 'is "." or ".."';
  if (/[/:\s]/.test(name)) return 'contains "/", ":" or whitespace';
  return '';
}

/** Compares two dotted versions numerically: <0, 0, >0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** A dotted version with three numeric parts, as the spec's versions are. */
export function isVersionString(v: unknown): v is string {
  return typeof v === 'string' && /^\d+\.\d+\.\d+$/.test(v);
}

export function isSupported(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}
