/**
 * CPU time for "CPU seconds per GB moved": the machine-wide busy time from the aggregate `cpu`
 * line of /proc/stat (user + nice + system + irq + softirq; guest time is already inside user).
 *
 * Why machine-wide rather than the sum of per-process times: on veth, most of the work of kernel
 * VXLAN and of plain routing runs in softirq context, which the kernel does not charge to any
 * process, so summing the iperf3 and agent processes would flatter the kernel paths. The price is
 * that anything else running on the machine is counted too, so the bench samples an idle interval
 * first and reports that background next to the figure.
 */
import { readFileSync } from 'node:fs';

/** Kernel ticks per second for /proc/stat (USER_HZ); 100 on every mainstream Linux build. */
export const USER_HZ = 100;

export interface CpuSample {
  /** Busy seconds summed over all CPUs since boot. */
  busyS: number;
  /** Idle + iowait seconds summed over all CPUs since boot. */
  idleS: number;
  /** When the sample was taken (performance.now(), ms). */
  atMs: number;
}

/** Busy and idle seconds from the text of /proc/stat. */
export function parseProcStat(text: string): { busyS: number; idleS: number } {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('no aggregate "cpu" line in /proc/stat');
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0] = f;
  if (f.length < 4 || f.some((x) => !Number.isFinite(x))) throw new Error(`unreadable /proc/stat cpu line: ${line}`);
  return { busyS: (user + nice + system + irq + softirq) / USER_HZ, idleS: (idle + iowait) / USER_HZ };
}

export function sampleCpu(): CpuSample {
  return { ...parseProcStat(readFileSync('/proc/stat', 'utf8')), atMs: performance.now() };
}

/** Busy CPU seconds between two samples, and the average number of busy cores over the interval. */
export function cpuBetween(a: CpuSample, b: CpuSample): { busyS: number; wallS: number; busyCores: number } {
  const busyS = b.busyS - a.busyS;
  const wallS = (b.atMs - a.atMs) / 1000;
  return { busyS, wallS, busyCores: wallS > 0 ? busyS / wallS : NaN };
}

/** User + system seconds a process (all its threads) has used, from /proc/<pid>/stat; null if it is gone. */
export function processCpuS(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  return parseProcessStat(text);
}

/** utime + stime (fields 14 and 15) of a /proc/<pid>/stat line, in seconds. */
export function parseProcessStat(text: string): number {
  // The command name (field 2) is in parentheses and may contain spaces: count from the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unreadable /proc/<pid>/stat: ${text.slice(0, 80)}`);
  return (utime + stime) / USER_HZ;
}
