// emperor-bindings.test.ts: the router's peer bindings the emperor relies on:
// a binding matches a peer by SO_PEERCRED pid (as well as uid), a bound peer
// may use only its address, and an address named by a binding is reserved
// for matching peers only (uid -1, pid -1: a pure reservation). Real tun in a
// namespace the test makes; peers are unix-socket clients in this process
// (pid = process.pid) speaking uwsgi frames.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { addon, NativeRouter, RouterEvent, RouterOptions } from '../../src/native';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { encodeFrame, FrameReader, icmpEcho, ipToInt, parseIpv4, PROTO_ICMP } from '../helpers/packets';

const lab = new Lab();
let ns = '';
let tun = '';
let sockPath = '';
let net24 = '';
let gw = '';
let router: NativeRouter;
const events: RouterEvent[] = [];
const host = (n: number): string => net24 + n;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Peer {
  readonly packets: Buffer[] = [];
  private reader = new FrameReader();
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => { for (const f of this.reader.push(d)) if (f.mod2 === 0) this.packets.push(f.payload); });
    sock.on('error', () => { /* closed */ });
  }
  static connect(): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(sockPath);
      s.once('connect', () => resolve(new Peer(s)));
      s.once('error', reject);
    });
  }
  close(): void { this.sock.destroy(); }
}

let pingId = 1;
async function ping(peer: Peer, src: string, ms = 800): Promise<boolean> {
  const id = pingId++;
  peer.sock.write(encodeFrame(icmpEcho(src, gw, id, 1)));
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (peer.packets.some((p) => { const ip = parseIpv4(p); return ip.proto === PROTO_ICMP && ip.payload[0] === 0 && ip.payload.readUInt16BE(4) === id; })) return true;
    await sleep(10);
  }
  return false;
}

const waitEvent = (pred: (e: RouterEvent) => boolean, what: string) => waitFor(() => events.some(pred), 3000, what);

before(() => {
  requireRoot();
  ns = lab.netns('eb');
  tun = uniqueName('ebt');
  sockPath = path.join(os.tmpdir(), `moat-eb-${crypto.randomBytes(4).toString('hex')}.sock`);
  lab.onCleanup(() => { try { fs.unlinkSync(sockPath); } catch { /* gone */ } });
  net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
  gw = host(1);
  const opts: RouterOptions = {
    tunName: tun, netns: `/run/netns/${ns}`, socketPath: sockPath, socketMode: 0o660, socketUid: -1, socketGid: -1,
    maxFrame: 1500, queueBytes: 65536, acceptRuleBlocks: false, bindings: [],
  };
  router = new (addon().Router)(opts);
  router.start((evs) => { events.push(...evs); });
  lab.onCleanup(() => router.stop());
  sh('ip', ['-n', ns, 'addr', 'add', `${gw}/24`, 'dev', tun]);
  sh('ip', ['-n', ns, 'link', 'set', tun, 'up']);
});

after(() => lab.cleanup());

test('binding values are type-checked: uid and pid -1..max, addr not 0', () => {
  const R = addon().Router;
  const base = { tunName: 'x', netns: '', socketPath: '/tmp/x', socketMode: 0o660, socketUid: -1, socketGid: -1, maxFrame: 1500, queueBytes: 65536, acceptRuleBlocks: false };
  assert.throws(() => new R({ ...base, bindings: [{ uid: -2, addr: 1 }] }), TypeError);
  assert.throws(() => new R({ ...base, bindings: [{ uid: -1, pid: -2, addr: 1 }] }), TypeError);
  assert.throws(() => new R({ ...base, bindings: [{ uid: -1, pid: 5, addr: 0 }] }), TypeError);
  assert.throws(() => router.setBindings([{ uid: 0, pid: 1.5, addr: 1 }]), TypeError);
});

test('a pure reservation: nobody may use the address, others stay free', async () => {
  router.setBindings([{ uid: -1, pid: -1, addr: ipToInt(host(10)) }]);
  try {
    const p = await Peer.connect();
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
    const p = await Peer.connect();
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
    const p = await Peer.connect();
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
    const p = await Peer.connect();
    assert.equal(await ping(p, host(40)), false, 'still a reservation');
    router.setBindings([{ uid: -1, pid: process.pid, addr: ipToInt(host(40)) }]);
    await waitEvent((e) => e.type === 'peer_addr' && e.addr === ipToInt(host(40)), 'peer_addr after the binding');
    assert.equal(await ping(p, host(40)), true);
    p.close();
  } finally {
    router.setBindings([]);
  }
});
