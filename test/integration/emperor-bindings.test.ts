// emperor-bindings.test.ts: the router's peer bindings the emperor relies on:
// a binding matches a peer by SO_PEERCRED pid and that process's start time
// (as well as uid), a bound peer may use only its address, and an address
// named by a binding is reserved for matching peers only (uid -1, pid -1: a
// pure reservation). Real tun in a namespace the test makes; peers are
// unix-socket clients in this process (pid = process.pid) speaking uwsgi
// frames. test/integration/tenant-address.test.ts plays the squatter.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { addon, LEARN_ANYWHERE, NativeRouter, PeerBinding, RouterEvent } from '../../src/native';
import { processStat } from '../../src/emperor/runtime-start';
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
const bind = (list: PeerBinding[]) => router.setBindings(list, LEARN_ANYWHERE);
const selfStart = processStat(process.pid)!.start;

before(() => {
  requireRoot();
  L.start('eb', { maxFrame: 1500, queueBytes: 65536 });
  gw = L.gw;
  router = L.router;
});

after(() => L.cleanup());

test('binding values are type-checked: uid and pid -1..max, a pid with its start time, addr 0 only for a vassal, learn required', () => {
  const R = addon().Router;
  const base = { tunName: 'x', netns: '', socketPath: '/tmp/x', socketMode: 0o660, socketUid: -1, socketGid: -1, maxFrame: 1500, queueBytes: 65536, acceptRuleBlocks: false, offload: false, handoff: false, holdUs: 0, tunQueues: 1, sndbuf: 0, sndbufBusy: 0, sndbufBudget: 0, busyPollUs: 0, learn: LEARN_ANYWHERE };
  assert.throws(() => new R({ ...base, bindings: [{ uid: -2, addr: 1 }] }), TypeError);
  assert.throws(() => new R({ ...base, bindings: [{ uid: -1, pid: -2, addr: 1 }] }), TypeError);
  assert.throws(() => new R({ ...base, bindings: [{ uid: -1, pid: 5, start: 9, addr: 0 }] }), TypeError);
  assert.throws(() => new R({ ...base, bindings: [{ uid: -1, pid: 5, addr: 1 }] }), /start: missing/, 'a pid alone is what a reused number inherits');
  assert.throws(() => new R({ ...base, bindings: [{ uid: -1, pid: 5, start: 0, addr: 1 }] }), TypeError);
  assert.throws(() => new R({ ...base, bindings: [], learn: undefined } as never), /learn: missing/);
  assert.throws(() => new R({ ...base, bindings: [], learn: { net: 0, bits: 33 } }), TypeError);
  assert.throws(() => router.setBindings([{ uid: 0, pid: 1.5, start: 1, addr: 1 }], LEARN_ANYWHERE), TypeError);
  assert.throws(() => router.setBindings([], undefined as never), /learn: missing/);
  // accepted: a vassal learning its address (addr 0), a vassal's reservation (no pid)
  router.setBindings([{ uid: -1, pid: 5, start: 9, vassal: 1, addr: 0 }, { uid: -1, pid: -1, vassal: 2, addr: 0 }], null);
  router.setBindings([], LEARN_ANYWHERE);
});

test('a pure reservation: nobody may use the address, others stay free', async () => {
  bind([{ uid: -1, pid: -1, addr: ipToInt(host(10)) }]);
  try {
    const p = await connect();
    assert.equal(await ping(p, host(10)), false, 'reserved address refused');
    await waitEvent((e) => e.type === 'refused' && e.reason === 'unbound' && e.addr === ipToInt(host(10)), 'refused unbound');
    assert.equal(await ping(p, host(11)), true, 'a free address is learned');
    p.close();
  } finally {
    bind([]);
  }
});

test('a pid binding: the peer of that pid gets its address at accept and can use no other', async () => {
  bind([{ uid: -1, pid: process.pid, start: selfStart, addr: ipToInt(host(20)) }]);
  try {
    const p = await connect();
    await waitEvent((e) => e.type === 'peer_addr' && e.addr === ipToInt(host(20)), 'peer_addr at accept');
    assert.equal(await ping(p, host(21)), false, 'another source is refused');
    assert.equal(await ping(p, gw), false, "the gateway's address is refused");
    assert.equal(await ping(p, host(20)), true, 'its own address works');
    p.close();
  } finally {
    bind([]);
  }
});

test("another pid's binding reserves its address against this pid (same uid 0)", async () => {
  bind([{ uid: -1, pid: 1, start: processStat(1)!.start, addr: ipToInt(host(30)) }]);
  try {
    const p = await connect();
    assert.equal(await ping(p, host(30)), false, "pid 1's address is refused to us");
    await waitEvent((e) => e.type === 'refused' && e.reason === 'unbound' && e.addr === ipToInt(host(30)), 'refused unbound');
    assert.equal(await ping(p, host(31)), true, 'not bound ourselves: a free address is learned');
    p.close();
  } finally {
    bind([]);
  }
});

test('a binding set after accept gives an unlearned peer its address (the emperor learns the pid late)', async () => {
  bind([{ uid: -1, pid: -1, addr: ipToInt(host(40)) }]);
  try {
    const p = await connect();
    assert.equal(await ping(p, host(40)), false, 'still a reservation');
    bind([{ uid: -1, pid: process.pid, start: selfStart, addr: ipToInt(host(40)) }]);
    await waitEvent((e) => e.type === 'peer_addr' && e.addr === ipToInt(host(40)), 'peer_addr after the binding');
    assert.equal(await ping(p, host(40)), true);
    p.close();
  } finally {
    bind([]);
  }
});

test('a pid binding with another start time is not this process\'s: its address is refused to it, nothing is given at accept', async () => {
  bind([{ uid: -1, pid: process.pid, start: selfStart + 1, addr: ipToInt(host(50)) }]);
  try {
    const p = await connect();
    assert.equal(await ping(p, host(50)), false, 'the binding of a process that had our pid number is not ours');
    await waitEvent((e) => e.type === 'refused' && e.reason === 'unbound' && e.addr === ipToInt(host(50)), 'refused unbound');
    assert.ok(!L.log.some((e) => e.type === 'peer_addr' && e.addr === ipToInt(host(50))), 'not given at accept');
    assert.ok(L.log.some((e) => e.type === 'peer_up' && e.pid === process.pid && e.start === selfStart), 'peer_up carries the start time read at accept');
    p.close();
  } finally {
    bind([]);
  }
});
