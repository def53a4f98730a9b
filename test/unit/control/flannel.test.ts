import { describe, expect, it } from 'vitest';
import { parseIpv4 } from '../../../src/wire/ipv4.js';
import { parseMac } from '../../../src/wire/mac.js';
import {
  FlannelFormatError, cidr, decodeLease, encodeLease, freeSubnets, leasable, parseNetworkConfig, parseSubnetKey, subnetKey,
} from '../../../src/control/store/flannel.js';

const P = '/coreos.com/network';

describe('flannel lease values', () => {
  it('are written byte for byte as flannel writes them', () => {
    // The value flanneld's vxlan backend stores (Go encoding/json of LeaseAttrs; reference/cni-flannel.md §4.3).
    const flannel = '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';
    expect(encodeLease(parseIpv4('192.168.64.3'), 1, parseMac('c6:d2:32:6f:8f:44'))).toBe(flannel);
    expect(encodeLease(parseIpv4('172.31.0.12'), 4096, parseMac('02:AA:00:00:00:0C'))).toBe(
      '{"PublicIP":"172.31.0.12","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":4096,"VtepMAC":"02:aa:00:00:00:0c"}}',
    );
    expect(() => encodeLease(1, 0x10000, new Uint8Array(6))).toThrow(RangeError);
  });

  it('are read as flannel reads them', () => {
    const a = decodeLease('{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}');
    expect(a.publicIP).toBe(parseIpv4('192.168.64.3'));
    expect(a.backendType).toBe('vxlan');
    expect(a.vni).toBe(1);
    expect([...a.vtepMAC!]).toEqual([...parseMac('c6:d2:32:6f:8f:44')]);
    // Older flannel: no VNI, no PublicIPv6; Go matches field names case-insensitively; extra fields ignored.
    const b = decodeLease('{"publicip":"10.0.0.9","BackendType":"vxlan","BackendData":{"VtepMAC":"C6-D2-32-6F-8F-44"},"BackendV6Data":{"VtepMAC":"x"}}');
    expect(b.publicIP).toBe(parseIpv4('10.0.0.9'));
    expect(b.vni).toBeUndefined();
    expect([...b.vtepMAC!]).toEqual([...parseMac('c6:d2:32:6f:8f:44')]);
    // Another backend: kept as such (the store ignores it), BackendData not interpreted.
    expect(decodeLease('{"PublicIP":"10.0.0.9","BackendType":"host-gw"}').backendType).toBe('host-gw');
    for (const bad of ['', '[]', '{"PublicIP":"10.0.0.300","BackendType":"vxlan"}', '{"PublicIP":"10.0.0.9","BackendType":"vxlan","BackendData":{"VtepMAC":"zz"}}']) {
      expect(() => decodeLease(bad)).toThrow(FlannelFormatError);
    }
  });
});

describe('flannel subnet keys', () => {
  it('format and parse <prefix>/subnets/<a.b.c.d>-<len>', () => {
    expect(subnetKey(P, cidr(parseIpv4('10.244.3.0'), 24))).toBe('/coreos.com/network/subnets/10.244.3.0-24');
    expect(parseSubnetKey(P, '/coreos.com/network/subnets/10.244.3.0-24')?.text).toBe('10.244.3.0/24');
    expect(parseSubnetKey(P, '/coreos.com/network/subnets/10.244.3.0-24&fc00:0:0:3::-64')?.text).toBe('10.244.3.0/24');
    expect(parseSubnetKey(P, '/coreos.com/network/config')).toBeNull();
    expect(parseSubnetKey(P, '/coreos.com/network/subnets/10.244.3.1-24')).toBeNull();
    expect(parseSubnetKey(P, '/other/subnets/10.244.3.0-24')).toBeNull();
  });
});

describe('flannel network config', () => {
  it('applies flannel defaults', () => {
    const c = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    expect(c.network.text).toBe('10.244.0.0/16');
    expect(c.subnetLen).toBe(24);
    expect(c.subnetMin).toBe(parseIpv4('10.244.1.0'));
    expect(c.subnetMax).toBe(parseIpv4('10.244.255.0'));
    expect([c.backendType, c.vni, c.port]).toEqual(['vxlan', 1, 8472]);
    expect(parseNetworkConfig('{"Network":"10.0.0.0/24","Backend":{"Type":"vxlan","VNI":7,"Port":4789}}')).toMatchObject({ subnetLen: 26, vni: 7, port: 4789 });
    expect(parseNetworkConfig('{"Network":"10.244.0.0/16"}').backendType).toBe('udp');
  });

  it('refuses what flannel refuses, quoting it', () => {
    expect(() => parseNetworkConfig('{"Network":"10.244.0.0/16","SubnetLen":31}')).toThrow(/SubnetLen 31/);
    expect(() => parseNetworkConfig('{"Network":"10.244.0.0/16","SubnetLen":17}')).toThrow(/four/);
    expect(() => parseNetworkConfig('{"Network":"10.0.0.0/29"}')).toThrow(/too small/);
    expect(() => parseNetworkConfig('{"Network":"10.244.0.0/16","SubnetMin":"10.245.0.0"}')).toThrow(/SubnetMin 10.245.0.0/);
    expect(() => parseNetworkConfig('{"Network":"10.244.0.0/16","SubnetMax":"10.244.3.7"}')).toThrow(/boundary/);
    expect(() => parseNetworkConfig('{"Backend":{"Type":"vxlan"}}')).toThrow(/Network/);
  });

  it('lists free subnets in order and knows which are leasable', () => {
    const c = parseNetworkConfig('{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.4.0","Backend":{"Type":"vxlan"}}');
    const taken = [cidr(parseIpv4('10.244.2.0'), 24)];
    expect(freeSubnets(c, taken).map((x) => x.text)).toEqual(['10.244.1.0/24', '10.244.3.0/24', '10.244.4.0/24']);
    expect(freeSubnets(c, taken, 1).map((x) => x.text)).toEqual(['10.244.1.0/24']);
    expect(leasable(c, cidr(parseIpv4('10.244.4.0'), 24))).toBe(true);
    expect(leasable(c, cidr(parseIpv4('10.244.5.0'), 24))).toBe(false);
    expect(leasable(c, cidr(parseIpv4('10.244.4.0'), 25))).toBe(false);
  });
});
