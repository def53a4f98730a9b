// Whether the agent runs under a hypervisor, from /proc/cpuinfo text (no root needed).
import { describe, expect, it } from 'vitest';
import { underHypervisor } from '../../../src/control/cpu-latency.js';

describe('underHypervisor', () => {
  const cpu = (flags: string): string =>
    `processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: ${flags}\nbugs\t\t: spectre_v1\n\n`;
  it('reads the hypervisor CPU flag, wherever it stands in the list', () => {
    expect(underHypervisor(cpu('fpu vme de pse hypervisor lahf_lm abm'))).toBe(true);
    expect(underHypervisor(cpu('hypervisor fpu'))).toBe(true);
    expect(underHypervisor(cpu('fpu vme hypervisor'))).toBe(true);
  });
  it('is false on bare metal, for look-alike flags, for a flag outside the flags line, and for no cpuinfo', () => {
    expect(underHypervisor(cpu('fpu vme de pse lahf_lm abm'))).toBe(false);
    expect(underHypervisor(cpu('fpu xhypervisor hypervisor_x'))).toBe(false);
    expect(underHypervisor('model name\t: hypervisor\nflags\t\t: fpu vme\n')).toBe(false);
    expect(underHypervisor('')).toBe(false);
  });
});
