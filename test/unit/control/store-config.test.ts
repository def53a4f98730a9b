// The etcd store's endpoints as the etcd client is given them: the port always written out, and
// anything the client would drop refused.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/control/config.js';
import { parseStoreConfig, type EtcdStoreConfig } from '../../../src/control/store/config.js';

const endpoints = (...e: string[]) => (parseStoreConfig({ type: 'etcd', endpoints: e }) as EtcdStoreConfig).endpoints;

function refused(e: string, why: RegExp, shown = e): ConfigError {
  let err: unknown;
  try {
    parseStoreConfig({ type: 'etcd', endpoints: ['http://10.0.0.6:2379', e] });
  } catch (x) {
    err = x;
  }
  expect(err, e).toBeInstanceOf(ConfigError);
  const ce = err as ConfigError;
  expect(ce.field).toBe('store.endpoints[1]');
  expect(ce.message).toContain('"store.endpoints[1]"');
  expect(ce.message).toContain(JSON.stringify(shown));
  expect(ce.message).toMatch(why);
  return ce;
}

describe('etcd endpoints', () => {
  it('keep the port, also when it is the scheme\'s default', () => {
    expect(endpoints('http://10.0.0.5:80', 'http://10.0.0.6:2379', 'http://etcd.local:0080/')).toEqual([
      'http://10.0.0.5:80', 'http://10.0.0.6:2379', 'http://etcd.local:80',
    ]);
    expect(endpoints('https://10.0.0.5:443', 'HTTPS://E1:2379', 'https://[fd00::5]:2379')).toEqual([
      'https://10.0.0.5:443', 'https://e1:2379', 'https://[fd00::5]:2379',
    ]);
  });

  it('without a port are refused (gRPC would dial 443, not etcd\'s 2379)', () => {
    refused('http://etcd', /must give the port.*2379/);
    refused('http://10.0.0.5', /must give the port/);
    refused('http://10.0.0.5:', /must give the port/);
    refused('https://[fd00::5]', /must give the port/);
  });

  it('with a user, a password, a path, a query or a fragment are refused, naming it', () => {
    refused('http://tulle@10.0.0.5:2379', /must not carry a user name/);
    const pw = refused('http://tulle:s3cret@10.0.0.5:2379', /must not carry a password/, 'http://tulle:***@10.0.0.5:2379');
    expect(pw.message).not.toContain('s3cret');
    expect(pw.value).toBe('http://tulle:***@10.0.0.5:2379');
    refused('http://:s3cret@10.0.0.5:2379', /must not carry a password/, 'http://:***@10.0.0.5:2379');
    refused('http://10.0.0.5:2379/v3', /must not have a path \("\/v3"\)/);
    refused('http://10.0.0.5:2379//', /must not have a path/);
    refused('http://10.0.0.5:2379/?x=1', /must not have a query \("\?x=1"\)/);
    refused('http://10.0.0.5:2379?', /must not have a query/);
    refused('http://10.0.0.5:2379#top', /must not have a fragment \("#top"\)/);
    refused('http://10.0.0.5:2379#', /must not have a fragment/);
    refused('http://10.0.0.5:2379#a?b', /must not have a fragment/);
  });

  it('that are not http(s) URLs are refused', () => {
    for (const e of ['10.0.0.5:2379', 'etcd://10.0.0.5:2379', ' http://10.0.0.5:2379', 'http://10.0.0.5:2379\n', 'http:/10.0.0.5:2379', 'http://10.0.0.5:99999']) {
      refused(e, /must be an etcd client URL/);
    }
  });
});
