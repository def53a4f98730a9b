import { describe, expect, it } from 'vitest';
import { checkCpusAllowed, ConfigError, formatCpuList, restartOnlyChanges, validateConfig } from '../../../src/control/config.js';

const base = {
  network: '10.244.0.0/16',
  subnet: '10.244.1.0/24',
  vtepIP: '172.31.0.1',
  peers: [{ vtepIP: '172.31.0.2', vtepMAC: '02:aa:00:00:00:02', subnet: '10.244.2.0/24' }],
};

function rejects(patch: Record<string, unknown>, field: string, value: string) {
  let err: unknown;
  try {
    validateConfig({ ...base, ...patch });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  const ce = err as ConfigError;
  expect(ce.field).toBe(field);
  expect(ce.message).toContain(`"${field}"`);
  expect(ce.message).toContain(value);
}

describe('validateConfig', () => {
  it('applies flannel-compatible defaults', () => {
    const c = validateConfig(base);
    expect(c.vni).toBe(1);
    expect(c.port).toBe(8472);
    expect(c.device).toBe('tulle0');
    expect(c.socket).toBe('/run/tulle/tulle.sock');
    expect(c.dataDir).toBe('/var/lib/tulle');
    expect(c.subnetFile).toBe('/run/tulle/subnet.env');
    expect(c.mtu).toBeUndefined();
    expect(c.vtepMAC).toBeUndefined();
    expect(c.workers).toBeGreaterThanOrEqual(1);
    expect(c.subnet?.net).toBe(0x0af40100);
    expect(c.store).toEqual({ type: 'static' });
    expect(c.cpuLatencyUs).toBeUndefined();
    expect(validateConfig({ ...base, cpuLatencyUs: 0 }).cpuLatencyUs).toBe(0);
    expect(c.cpuLatencyIdleMs).toBeUndefined();
    expect(validateConfig({ ...base, cpuLatencyUs: 0, cpuLatencyIdleMs: 1000 }).cpuLatencyIdleMs).toBe(1000);
    expect(c.cpus).toBeUndefined();
    expect(validateConfig({ ...base, cpus: [1, 0] }).cpus).toEqual([1, 0]);
    expect(c.peers[0].subnet.prefix).toBe(24);
    expect(c.metricsAddress).toBeUndefined();
    expect(validateConfig({ ...base, metricsAddress: '0.0.0.0:9472' }).metricsAddress).toEqual({ ip: 0, port: 9472, text: '0.0.0.0:9472' });
    expect(validateConfig({ ...base, metricsAddress: '127.0.0.1:1' }).metricsAddress?.ip).toBe(0x7f000001);
  });

  it('names the field and value of each bad input', () => {
    rejects({ bogus: 1 }, 'bogus', '1');
    rejects({ cpuLatencyUs: -1 }, 'cpuLatencyUs', '-1');
    rejects({ cpuLatencyUs: 1.5 }, 'cpuLatencyUs', '1.5');
    rejects({ cpuLatencyUs: '0' }, 'cpuLatencyUs', '"0"');
    rejects({ cpuLatencyIdleMs: 100 }, 'cpuLatencyIdleMs', '100');
    rejects({ cpuLatencyUs: 0, cpuLatencyIdleMs: 0 }, 'cpuLatencyIdleMs', '0');
    rejects({ cpus: [] }, 'cpus', '[]');
    rejects({ cpus: 0 }, 'cpus', '0');
    rejects({ cpus: [0, -1] }, 'cpus[1]', '-1');
    rejects({ cpus: [0.5] }, 'cpus[0]', '0.5');
    rejects({ cpus: ['1'] }, 'cpus[0]', '"1"');
    rejects({ cpus: [1024] }, 'cpus[0]', '1024');
    rejects({ cpus: [3, 1, 3] }, 'cpus[2]', '3');
    for (const bad of ['9472', ':9472', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:09472x', '127.0.0.256:9472', '224.0.0.1:9472', '[::1]:9472', 'localhost:9472']) {
      rejects({ metricsAddress: bad }, 'metricsAddress', bad);
    }
    rejects({ metricsAddress: 9472 }, 'metricsAddress', '9472');
    rejects({ network: '10.244.0.0/33' }, 'network', '10.244.0.0/33');
    rejects({ network: '10.244.0.0/016' }, 'network', '10.244.0.0/016');
    rejects({ subnet: '10.244.1.0/024' }, 'subnet', '10.244.1.0/024');
    rejects({ subnet: '10.244.1.5/24' }, 'subnet', '10.244.1.5/24');
    rejects({ subnet: '10.245.1.0/24' }, 'subnet', '10.245.1.0/24');
    rejects({ vtepIP: '172.31.0.300' }, 'vtepIP', '172.31.0.300');
    rejects({ vtepMAC: '02:aa:00:00:00' }, 'vtepMAC', '02:aa:00:00:00');
    rejects({ vtepMAC: '01:00:5e:00:00:01' }, 'vtepMAC', '01:00:5e:00:00:01');
    rejects({ port: 70000 }, 'port', '70000');
    rejects({ port: 0 }, 'port', '0');
    rejects({ vni: 1 << 24 }, 'vni', String(1 << 24));
    rejects({ device: 'a-name-longer-than-15' }, 'device', 'a-name-longer-than-15');
    rejects({ mtu: 100 }, 'mtu', '100');
    rejects({ workers: 0 }, 'workers', '0');
    rejects({ socket: 'relative.sock' }, 'socket', 'relative.sock');
    rejects({ peers: [{ ...base.peers[0], subnet: '10.244.1.0/24' }] }, 'peers[0].subnet', '10.244.1.0/24');
    rejects({ peers: [{ ...base.peers[0], subnet: '10.9.0.0/24' }] }, 'peers[0].subnet', '10.9.0.0/24');
    rejects({ peers: [{ ...base.peers[0], extra: true }] }, 'peers[0].extra', 'true');
    rejects({ peers: [{ ...base.peers[0], vtepIP: '172.31.0.1' }] }, 'peers[0].vtepIP', '172.31.0.1');
    rejects(
      { peers: [base.peers[0], { vtepIP: '172.31.0.3', vtepMAC: '02:aa:00:00:00:03', subnet: '10.244.2.0/24' }] },
      'peers[1].subnet',
      '10.244.2.0/24',
    );
  });

  it('refuses paths and names the agent would misuse: a socket over any other file it writes, too long for a Unix socket, a directory; device templates', () => {
    rejects({ socket: '/run/tulle/x.sock', subnetFile: '/run/tulle/x.sock' }, 'subnetFile', '/run/tulle/x.sock');
    rejects({ socket: '/run/tulle/x.sock', subnetFile: '/run/tulle//x.sock.lock' }, 'subnetFile', '/run/tulle//x.sock.lock');
    rejects({ socket: '/var/lib/tulle/vtep-mac' }, 'socket', '/var/lib/tulle/vtep-mac');
    rejects({ dataDir: '/srv/t/', subnetFile: '/srv/t/ipam' }, 'subnetFile', '/srv/t/ipam');
    rejects({ socket: `/run/${'s'.repeat(104)}` }, 'socket', 'a Unix socket path has at most 107');
    rejects({ socket: '/run/tulle/' }, 'socket', '/run/tulle/');
    rejects({ subnetFile: '/run/tulle/..' }, 'subnetFile', '/run/tulle/..');
    rejects({ device: 'tl%d' }, 'device', 'tl%d');
    rejects({ device: 'a\u0000b' }, 'device', 'a\\u0000b');
    expect(validateConfig({ ...base, socket: `/run/${'s'.repeat(102)}`, subnetFile: '/var/lib/tulle/subnet.env' }).socket.length).toBe(107);
  });

  it('refuses static peers beyond what the peer table holds: 9 prefix lengths, 4097 peers', () => {
    const peer = (i: number, prefix: number) => ({ vtepIP: `172.31.${1 + (i >> 8)}.${i & 0xff}`, vtepMAC: '02:aa:00:00:00:02', subnet: `10.${100 + i}.0.0/${prefix}` });
    const nine = Array.from({ length: 9 }, (_, i) => peer(i + 2, 17 + i));
    rejects({ network: '10.0.0.0/8', subnet: '10.1.0.0/24', peers: nine }, 'peers', 'uses 9 subnet prefix lengths; the peer table looks up at most 8');
    expect(validateConfig({ network: '10.0.0.0/8', subnet: '10.1.0.0/24', vtepIP: '172.31.0.1', peers: nine.slice(1) }).peers.length).toBe(8);
    const many = Array.from({ length: 4097 }, (_, i) => ({
      vtepIP: `172.30.${i >> 8}.${i & 0xff}`, vtepMAC: '02:aa:00:00:00:02', subnet: `10.${128 + (i >> 8)}.${i & 0xff}.0/24`,
    }));
    rejects({ network: '10.0.0.0/8', subnet: '10.1.0.0/24', peers: many }, 'peers', 'more peers than the peer table\'s 4096');
  });

  it('requires network, subnet and vtepIP', () => {
    for (const f of ['network', 'subnet', 'vtepIP']) {
      const c: Record<string, unknown> = { ...base };
      delete c[f];
      expect(() => validateConfig(c)).toThrow(new RegExp(`"${f}": is required`));
    }
  });
});

describe('validateConfig: store', () => {
  const etcdBase = { vtepIP: '172.31.0.1', store: { type: 'etcd', endpoints: ['http://172.31.0.254:2379'] } };

  it('takes an etcd store without network, subnet or peers, with flannel defaults', () => {
    const c = validateConfig(etcdBase);
    expect(c.network).toBeUndefined();
    expect(c.subnet).toBeUndefined();
    expect(c.peers).toEqual([]);
    expect(c.store).toMatchObject({
      type: 'etcd', endpoints: ['http://172.31.0.254:2379'], prefix: '/coreos.com/network', leaseTTLSeconds: 86400, renewMarginSeconds: 3600,
    });
    const d = validateConfig({ ...etcdBase, network: '10.244.0.0/16', subnet: '10.244.7.0/24', store: { ...etcdBase.store, prefix: '/x/net/', leaseTTLSeconds: 10 } });
    expect(d.subnet?.text).toBe('10.244.7.0/24');
    expect(d.store).toMatchObject({ prefix: '/x/net', leaseTTLSeconds: 10, renewMarginSeconds: 5 });
    expect(validateConfig({ ...base, store: { type: 'static' } }).store).toEqual({ type: 'static' });
  });

  it('names the field and value of each bad store input', () => {
    const bad = (store: Record<string, unknown>, field: string, value: string) => {
      let err: unknown;
      try {
        validateConfig({ ...etcdBase, store: { ...etcdBase.store, ...store } });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).field).toBe(field);
      expect((err as ConfigError).message).toContain(value);
    };
    bad({ type: 'consul' }, 'store.type', 'consul');
    bad({ endpoints: [] }, 'store.endpoints', '[]');
    bad({ endpoints: ['172.31.0.254:2379'] }, 'store.endpoints[0]', '172.31.0.254:2379');
    bad({ endpoints: ['http://a:2379', 'https://b:2379'] }, 'store.endpoints', 'https://b:2379');
    bad({ prefix: 'coreos.com' }, 'store.prefix', 'coreos.com');
    bad({ leaseTTLSeconds: 1 }, 'store.leaseTTLSeconds', '1');
    bad({ leaseTTLSeconds: 60, renewMarginSeconds: 60 }, 'store.renewMarginSeconds', '60');
    bad({ certFile: '/etc/tulle/cert.pem' }, 'store.keyFile', 'undefined');
    bad({ caFile: '/etc/tulle/ca.pem' }, 'store.endpoints', 'http://172.31.0.254:2379');
    bad({ username: 'tulle' }, 'store.passwordFile', 'undefined');
    bad({ token: 'x' }, 'store.token', 'x');
    rejects({ store: { type: 'static', endpoints: [] } }, 'store.endpoints', '[]');
  });

  it('refuses what the etcd store owns, and requires network and subnet for static', () => {
    for (const [f, v] of [['vni', 2], ['port', 4789], ['peers', []]] as const) {
      expect(() => validateConfig({ ...etcdBase, [f]: v })).toThrow(new RegExp(`"${f}": comes from the etcd store`));
    }
    expect(() => validateConfig({ vtepIP: '172.31.0.1' })).toThrow(/"network": is required/);
    const tls = validateConfig({
      ...etcdBase,
      store: { type: 'etcd', endpoints: ['https://e1:2379', 'https://e2:2379'], caFile: '/etc/tulle/ca.pem', certFile: '/c', keyFile: '/k', username: 'u', passwordFile: '/p' },
    });
    expect(tls.store).toMatchObject({ endpoints: ['https://e1:2379', 'https://e2:2379'], caFile: '/etc/tulle/ca.pem', username: 'u' });
  });
});

describe('cpus against the CPUs the process may use', () => {
  it('accepts CPUs in the allowed set', () => {
    expect(() => checkCpusAllowed([0, 2], [0, 1, 2, 3])).not.toThrow();
  });

  it('names the first CPU outside it, and the allowed set', () => {
    let err: unknown;
    try {
      checkCpusAllowed([1, 5, 7], [0, 1, 2, 3, 6]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('cpus[1]');
    expect((err as ConfigError).value).toBe(5);
    expect((err as ConfigError).message).toMatch(/\(got 5\)$/);
    expect((err as ConfigError).message).toContain('allowed CPUs: 0-3,6)');
  });

  it('writes CPU lists the way the kernel does', () => {
    expect(formatCpuList([0, 1, 2, 5, 7, 8])).toBe('0-2,5,7-8');
    expect(formatCpuList([3])).toBe('3');
    expect(formatCpuList([])).toBe('none');
  });
});

describe('restartOnlyChanges', () => {
  const running = validateConfig({ ...base, vtepMAC: '02:aa:00:00:00:01' });

  it('lets peers and logLevel change, and nothing else', () => {
    const third = { vtepIP: '172.31.0.3', vtepMAC: '02:aa:00:00:00:03', subnet: '10.244.3.0/24' };
    expect(restartOnlyChanges(running, validateConfig({ ...base, vtepMAC: '02:aa:00:00:00:01', peers: [third], logLevel: 'debug' }))).toEqual([]);
    expect(restartOnlyChanges(running, validateConfig({ ...base, vtepMAC: '02:aa:00:00:00:01' }))).toEqual([]);
  });

  it('names every other changed field with its old and new value as written', () => {
    const next = validateConfig({
      ...base, vtepMAC: '02:aa:00:00:00:09', vtepIP: '172.31.0.9', subnet: '10.244.9.0/24', peers: [], mtu: 1400,
      metricsAddress: '127.0.0.1:9472', store: { type: 'static' },
    });
    expect(restartOnlyChanges(running, next)).toEqual([
      '"subnet": 10.244.1.0/24 -> 10.244.9.0/24',
      '"vtepIP": 172.31.0.1 -> 172.31.0.9',
      '"vtepMAC": 02:aa:00:00:00:01 -> 02:aa:00:00:00:09',
      '"mtu": (absent) -> 1400',
      '"metricsAddress": (absent) -> 127.0.0.1:9472',
    ]);
    const etcd = validateConfig({ vtepIP: '172.31.0.1', store: { type: 'etcd', endpoints: ['http://172.31.0.254:2379'] } });
    expect(restartOnlyChanges(running, etcd).some((c) => c.startsWith('"store": '))).toBe(true);
  });
});
