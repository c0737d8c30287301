// emperor-bindings.test.ts: the router's peer bindings the emperor relies on:
// a binding matches a peer by SO_PEERCRED pid (as well as uid), a bound peer
// may use only its address, and an address named by a binding is reserved
// for matching peers only (uid -1, pid -1: a pure reservation). Real tun in a
// namespace the test makes; peers are unix-socket clients in this process
// (pid = process.pid) speaking uwsgi frames.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { addon, NativeRouter, RouterEvent } from '../../src/native';
import { requireRoot, waitFor } from '../helpers/netns';
import { ipToInt } from '../helpers/packets';
import { FramePeer } from '../helpers/frame-peer';
import { RouterLab } from '../helpers/native-router';

const L = new RouterLab();
let gw = '';
let router: NativeRouter;
const host = (n: number): string => L.host(n);
const connect = () => FramePeer.connect(L.sockPath);
const ping = (peer: FramePeer, src: string, ms = 800) => peer.ping(src, gw, ms);
const waitEvent = (pred: (e: RouterEvent) => boolean, what: string) => waitFor(() => L.log.some(pred), 3000, what);

before(() => {
  requireRoot();
  L.start('eb', { maxFrame: 1500, queueBytes: 65536 });
  gw = L.gw;
  router = L.router;
});

after(() => L.cleanup());

test('binding values are type-checked: uid and pid -1..max, addr not 0', () => {
  const R = addon().Router;
  const base = { tunName: 'x', netns: '', socketPath: '/tmp/x', socketMode: 0o660, socketUid: -1, socketGid: -1, maxFrame: 1500, queueBytes: 65536, acceptRuleBlocks: false, offload: false, holdUs: 0, sndbuf: 0, busyPollUs: 0 };
  assert.throws(() => new R({ ...base, bindings: [{ uid: -2, addr: 1 }] }), TypeError);
  assert.throws(() => new R({ ...base, bindings: [{ uid: -1, pid: -2, addr: 1 }] }), TypeError);
  assert.throws(() => new R({ ...base, bindings: [{ uid: -1, pid: 5, addr: 0 }] }), TypeError);
  assert.throws(() => router.setBindings([{ uid: 0, pid: 1.5, addr: 1 }]), TypeError);
});

test('a pure reservation: nobody may use the address, others stay free', async () => {
  router.setBindings([{ uid: -1, pid: -1, addr: ipToInt(host(10)) }]);
  try {
    const p = await connect();
    assert.equal(await ping(p, host(10)), false, 'reserved address refused');
    await waitEvent((e) => e.type === 'refused' && e.reason === 'unbound' && e.addr === ipToInt(host(10)), 'refused unbound');
    assert.equal(await ping(p, host(11)), true, 'a free address is learned');
    p.close();
  } finally {
    router.setBindings([]);
  }
});

test('a pid binding: the peer of that pid gets its address at accept and can use no other', async () => {
  router.setBindings([{ uid: -1, pid: process.pid, addr: ipToInt(host(20)) }]);
  try {
    const p = await connect();
    await waitEvent((e) => e.type === 'peer_addr' && e.addr === ipToInt(host(20)), 'peer_addr at accept');
    assert.equal(await ping(p, host(21)), false, 'another source is refused');
    assert.equal(await ping(p, gw), false, "the gateway's address is refused");
    assert.equal(await ping(p, host(20)), true, 'its own address works');
    p.close();
  } finally {
    router.setBindings([]);
  }
});

test("another pid's binding reserves its address against this pid (same uid 0)", async () => {
  router.setBindings([{ uid: -1, pid: 1, addr: ipToInt(host(30)) }]);
  try {
    const p = await connect();
    assert.equal(await ping(p, host(30)), false, "pid 1's address is refused to us");
    await waitEvent((e) => e.type === 'refused' && e.reason === 'unbound' && e.addr === ipToInt(host(30)), 'refused unbound');
    assert.equal(await ping(p, host(31)), true, 'not bound ourselves: a free address is learned');
    p.close();
  } finally {
    router.setBindings([]);
  }
});

test('a binding set after accept gives an unlearned peer its address (the emperor learns the pid late)', async () => {
  router.setBindings([{ uid: -1, pid: -1, addr: ipToInt(host(40)) }]);
  try {
    const p = await connect();
    assert.equal(await ping(p, host(40)), false, 'still a reservation');
    router.setBindings([{ uid: -1, pid: process.pid, addr: ipToInt(host(40)) }]);
    await waitEvent((e) => e.type === 'peer_addr' && e.addr === ipToInt(host(40)), 'peer_addr after the binding');
    assert.equal(await ping(p, host(40)), true);
    p.close();
  } finally {
    router.setBindings([]);
  }
});
