/*
 * Result encoding for every claimed spec version, and reading results back (prevResult,
 * delegated IPAM answers).
 */
import { describe, expect, test } from 'vitest';
import { encodeResult, parseResult, type CniResult } from '../../../src/cni/result.js';
import { CniError, ERR, SUPPORTED_VERSIONS } from '../../../src/cni/spec.js';

const result: CniResult = {
  interfaces: [
    { name: 'tlv0123456789ab', mac: '02:00:00:00:00:01', mtu: 1450 },
    { name: 'eth0', mac: '02:00:00:00:00:02', mtu: 1450, sandbox: '/run/netns/p1' },
  ],
  ips: [{ address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 1 }],
  routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }],
  dns: { nameservers: ['10.96.0.10'] },
};

describe.each(SUPPORTED_VERSIONS)('encodeResult %s', (v) => {
  const out = encodeResult(result, v) as { cniVersion: string; interfaces: Record<string, unknown>[]; ips: Record<string, unknown>[]; routes: unknown[]; dns: unknown };
  test('cniVersion first, host veth without sandbox, pod interface with it, ips[].interface -> pod', () => {
    expect(Object.keys(out)[0]).toBe('cniVersion');
    expect(out.cniVersion).toBe(v);
    expect(out.interfaces[0]).not.toHaveProperty('sandbox');
    expect(out.interfaces[1]!.sandbox).toBe('/run/netns/p1');
    expect(out.ips[0]!.interface).toBe(1);
    expect(out.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.244.1.1' }]);
    expect(out.dns).toEqual({ nameservers: ['10.96.0.10'] });
  });
  test('version-specific fields', () => {
    if (v.startsWith('0.')) expect(out.ips[0]!.version).toBe('4');
    else expect(out.ips[0]).not.toHaveProperty('version');
    if (v === '1.1.0') expect(out.interfaces[1]!.mtu).toBe(1450);
    else expect(out.interfaces[1]).not.toHaveProperty('mtu');
  });
  test('parses back to the same result', () => {
    const back = parseResult('r', JSON.parse(JSON.stringify(out)));
    expect(back.ips).toEqual(result.ips);
    expect(back.interfaces.map((i) => i.name)).toEqual(['tlv0123456789ab', 'eth0']);
  });
});

test('parseResult rejects old and malformed results with code 6, naming the field', () => {
  const bad = (raw: unknown) => {
    try {
      parseResult('prevResult', raw);
    } catch (e) {
      return [(e as CniError).cniCode, (e as Error).message];
    }
    return null;
  };
  expect(bad({ ip4: { ip: '10.0.0.2/24' } })?.[0]).toBe(ERR.DECODING_FAILURE);
  expect(bad({ ips: [{ address: 5 }] })).toEqual([ERR.DECODING_FAILURE, 'prevResult.ips[0].address: must be a string (got 5)']);
  expect(bad({ interfaces: [], ips: [{ address: '10.0.0.2/24', interface: 3 }] })?.[1]).toMatch(/prevResult.ips\[0\].interface: must index interfaces/);
  expect(bad('x')?.[0]).toBe(ERR.DECODING_FAILURE);
  expect(parseResult('ipam', { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.0.0.2/24', gateway: '10.0.0.1' }] })).toEqual({
    interfaces: [], ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }], routes: [],
  });
});
