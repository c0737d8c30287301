import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseEtcdUrl } from '../../src/fleet/etcd-url';

test('etcd URL: one host, several hosts, TLS, IPv6, prefix normalized', () => {
  assert.deepEqual(parseEtcdUrl('etcd://10.0.0.1:2379/moat'), { endpoints: ['http://10.0.0.1:2379'], prefix: '/moat' });
  assert.deepEqual(parseEtcdUrl('etcd://a:1,b.example:2379,[::1]:2380/fleet/prod/'),
    { endpoints: ['http://a:1', 'http://b.example:2379', 'http://[::1]:2380'], prefix: '/fleet/prod' });
  assert.deepEqual(parseEtcdUrl('etcds://e1:2379,e2:2379//moat'), { endpoints: ['https://e1:2379', 'https://e2:2379'], prefix: '/moat' });
});

test('etcd URL: bad input says what is wrong', () => {
  const bad: Array<[string, RegExp]> = [
    ['http://a:1/moat', /etcd:\/\/ or etcds:\/\//],
    ['etcd:///moat', /no hosts/],
    ['etcd://a:1', /prefix is missing/],
    ['etcd://a:1/', /prefix is missing/],
    ['etcd://a/moat', /not HOST:PORT/],
    ['etcd://a:x/moat', /port "x" of "a:x" is not a number/],
    ['etcd://a:0/moat', /out of range/],
    ['etcd://a:70000/moat', /out of range/],
    ['etcd://a:1,,b:2/moat', /empty host/],
    ['etcd://::1:2379/moat', /not HOST:PORT/],
    ['etcd://[zz]:1/moat', /not an IPv6 address/],
    ['etcd://u:p@a:1/moat', /own options/],
    ['etcd://a b:1/moat', /not a host name/],
    ['etcd://a:1/mo//at', /empty part/],
    ['etcd://a:1/moat?x=1', /\? or #/],
  ];
  for (const [url, re] of bad) assert.throws(() => parseEtcdUrl(url), re, url);
});
