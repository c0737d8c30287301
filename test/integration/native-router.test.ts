// native-router.test.ts: the native Router through the addon, against a real
// tun device in a namespace the test makes. Peers are plain unix-socket
// clients in this process speaking uwsgi frames; the kernel of the gateway
// namespace answers pings and sends UDP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import { addon, LEARN_ANYWHERE, NativeRule, RouterEvent, RouterOptions } from '../../src/native';
import { requireRoot, sleep, uniqueName, waitFor } from '../helpers/netns';
import { frameHeader, icmpEcho, intToIp, ipToInt, ipv6Packet, parseIpv4, PROTO_ICMP, PROTO_UDP } from '../helpers/packets';
import { FramePeer } from '../helpers/frame-peer';
import { RouterLab } from '../helpers/native-router';

const { Router } = addon();

const L = new RouterLab();
const lab = L.lab;
const host = (n: number): string => L.host(n);
const options = (over: Partial<RouterOptions> = {}): RouterOptions => L.options({ maxFrame: 1500, queueBytes: 64 * 1024, ...over });
const peerStats = (addr: string) => L.peerStats(addr);
const connect = (p = L.sockPath) => FramePeer.connect(p);
let gw = '';
let router: InstanceType<typeof Router>;
const events = L.events;

/** Sends one echo request src -> dst from peer; true if the reply came back framed. */
const ping = (peer: FramePeer, src: string, dst = gw, ms = 1500): Promise<boolean> => peer.ping(src, dst, ms);

/** A peer whose address the router has learned from a ping it answered. */
async function learnedPeer(addr: string): Promise<FramePeer> {
  const p = await connect();
  assert.ok(await ping(p, addr), `ping from ${addr} answered`);
  return p;
}

function waitEvent(pred: (e: RouterEvent) => boolean, what: string, ms = 3000): Promise<void> {
  return waitFor(() => events.some(pred), ms, what);
}

before(async () => {
  requireRoot();
  L.start('mr', { maxFrame: 1500, queueBytes: 64 * 1024, socketMode: 0o660 });
  gw = L.gw;
  router = L.router;
});

after(async () => {
  await L.cleanup();
});

test('options are type-checked', () => {
  assert.throws(() => new Router({ ...options(), tunName: 5 } as unknown as RouterOptions), TypeError);
  assert.throws(() => new Router({ ...options(), maxFrame: 70000 }), TypeError);
  assert.throws(() => new Router({ ...options(), bindings: [{ uid: -2, addr: 1 }] }), TypeError);
  assert.throws(() => new Router({ ...options(), acceptRuleBlocks: 'no' } as unknown as RouterOptions), TypeError);
});

test('ICMP echo to the gateway: the kernel reply comes back framed, address learned', async () => {
  const a = await connect();
  await waitEvent((e) => e.type === 'peer_up' && e.uid === 0 && e.pid === process.pid, 'peer_up');
  assert.ok(await ping(a, host(2)), 'echo reply');
  await waitEvent((e) => e.type === 'peer_addr' && e.addr === ipToInt(host(2)), 'peer_addr');
  const s = peerStats(host(2));
  assert.equal(s.uid, 0);
  assert.equal(s.pid, process.pid);
  assert.ok(s.rx >= 1 && s.tx >= 1, 'packets counted both ways');
  assert.ok(s.rxBytes >= 4 + 28 && s.txBytes >= 4 + 28, 'socket bytes counted');
  const st = router.stats();
  assert.ok(st.txPackets >= 1 && st.rxPackets >= 1);
  a.close();
  await waitEvent((e) => e.type === 'peer_down' && e.addr === ipToInt(host(2)) && e.reason === 'closed', 'peer_down');
  assert.ok(!router.stats().peers.some((p) => p.addr === ipToInt(host(2))), 'address freed');
});

test('UDP sent inside the gateway namespace reaches the peer holding the destination, only that one', async () => {
  const a = await learnedPeer(host(3));
  const b = await learnedPeer(host(4));
  assert.equal(await L.udpFromGateway(host(3), 5003, 3, 100), 0);
  const got = await a.waitPacket((p) => { const ip = parseIpv4(p); return ip.proto === PROTO_UDP && ip.payload.readUInt16BE(2) === 5003; }, 2000);
  assert.ok(got, 'peer .3 got the datagram');
  const ip = parseIpv4(got);
  assert.equal(ip.src, gw);
  assert.equal(ip.dst, host(3));
  assert.ok(!b.packets.some((p) => parseIpv4(p).proto === PROTO_UDP), 'peer .4 got none');
  // to an address no peer holds: counted as no_peer
  const before = router.stats().drops.no_peer;
  assert.equal(await L.udpFromGateway(host(99), 5099, 2, 10), 0);
  await waitFor(() => router.stats().drops.no_peer >= before + 2, 2000, 'no_peer drops');
  a.close();
  b.close();
});

test('a spoofed source is dropped (nothing reaches the tun) and counted, the peer keeps working', async () => {
  const a = await learnedPeer(host(5));
  const victim = await learnedPeer(host(6));
  const tx0 = router.stats().txPackets;
  for (let i = 0; i < 5; i++) a.send(icmpEcho(host(6), gw, 4242, i));
  await waitFor(() => peerStats(host(5)).drops.spoof === 5, 2000, 'spoof drops');
  await sleep(200);
  assert.equal(router.stats().txPackets, tx0, 'no spoofed packet written to the tun');
  assert.ok(!victim.packets.some((p) => { const ip = parseIpv4(p); return ip.proto === PROTO_ICMP && ip.payload.readUInt16BE(4) === 4242; }), 'victim got no reply');
  assert.equal(peerStats(host(5)).drops.spoof, 5);
  await waitEvent((e) => e.type === 'refused' && e.reason === 'spoof' && e.addr === ipToInt(host(6)), 'refused spoof event');
  // rate-limited: one event at once, the rest summed up a second later
  const spoofCount = () => events.reduce((n, e) => n + (e.type === 'refused' && e.reason === 'spoof' && e.addr === ipToInt(host(6)) ? e.count : 0), 0);
  await waitFor(() => spoofCount() === 5, 3000, 'refused counts summing to 5');
  assert.equal(events.filter((e) => e.type === 'refused' && e.reason === 'spoof').length, 2);
  assert.ok(await ping(a, host(5)), 'spoofing peer still connected');
  a.close();
  victim.close();
});

test('collision: a second peer cannot take a live address; the holder keeps its traffic', async () => {
  const holder = await learnedPeer(host(7));
  const thief = await connect();
  assert.equal(await ping(thief, host(7), gw, 400), false, 'thief gets nothing');
  await waitEvent((e) => e.type === 'refused' && e.reason === 'collision' && e.addr === ipToInt(host(7)), 'refused collision');
  assert.ok(await ping(holder, host(7)), 'holder still answered');
  const st = router.stats();
  const thiefStats = st.peers.find((p) => p.addr === 0 && p.drops.collision >= 1);
  assert.ok(thiefStats, 'thief unlearned, collision counted');
  assert.equal(peerStats(host(7)).drops.collision, 0);
  // the thief may still learn a free address
  assert.ok(await ping(thief, host(8)));
  holder.close();
  thief.close();
});

test('the gateway address and bad sources are refused', async () => {
  const p = await connect();
  assert.equal(await ping(p, gw, gw, 300), false);
  await waitEvent((e) => e.type === 'refused' && e.reason === 'gateway', 'refused gateway');
  p.send(icmpEcho('0.0.0.0', gw, 1, 1));
  p.send(icmpEcho('255.255.255.255', gw, 1, 1));
  p.send(icmpEcho('224.0.0.5', gw, 1, 1));
  await waitFor(() => router.stats().peers.some((s) => s.addr === 0 && s.drops.gateway >= 1 && s.drops.bad_source === 3), 2000, 'bad_source drops');
  assert.ok(await ping(p, host(9)), 'then learns a good address');
  p.close();
});

test('an IPv6 frame is counted and never disconnects the peer', async () => {
  const p = await learnedPeer(host(10));
  p.send(ipv6Packet());
  await waitFor(() => peerStats(host(10)).drops.ipv6 === 1, 2000, 'ipv6 drop');
  assert.ok(await ping(p, host(10)), 'still works');
  assert.equal(p.closed, false);
  // other malformed frames: same, counted by reason
  p.send(Buffer.from([0x45, 0, 0, 10]));
  const bad = icmpEcho(host(10), gw, 1, 1);
  bad.writeUInt16BE(bad.length + 8, 2);
  p.send(bad);
  await waitFor(() => { const s = peerStats(host(10)); return s.drops.short === 1 && s.drops.bad_length === 1; }, 2000, 'short + bad_length');
  assert.ok(await ping(p, host(10)));
  p.close();
});

test('an oversize header closes only that peer', async () => {
  const good = await learnedPeer(host(11));
  const bad = await learnedPeer(host(12));
  const badId = peerStats(host(12)).id;
  bad.sock.write(frameHeader(1501));
  await waitFor(() => bad.closed, 2000, 'oversize peer closed');
  await waitEvent((e) => e.type === 'protocol_error' && e.id === badId && e.reason === 'oversize', 'protocol_error');
  await waitEvent((e) => e.type === 'peer_down' && e.id === badId && e.reason === 'protocol_error', 'peer_down');
  assert.ok(await ping(good, host(11)), 'the other peer is unaffected');
  // a frame of exactly maxFrame is fine
  const big = icmpEcho(host(11), gw, 77, 1, Buffer.alloc(1500 - 28, 1));
  assert.equal(big.length, 1500);
  good.send(big);
  assert.ok(await good.waitPacket((p) => p.length === 1500 && parseIpv4(p).payload.readUInt16BE(4) === 77, 1500));
  good.close();
});

test('rule blocks and unknown modifiers are refused and counted, the peer stays', async () => {
  const p = await learnedPeer(host(13));
  p.send(Buffer.from('deny 0.0.0.0 0.0.0.0'), 1);
  p.send(icmpEcho(host(13), gw, 1, 1), 5);  // 2 and 3 are offload frames (docs/offload.md), 4 a handoff (docs/one-hop.md)
  p.send(icmpEcho(host(13), gw, 1, 1), 0, 1);
  await waitFor(() => { const s = peerStats(host(13)); return s.drops.rule_block === 1 && s.drops.bad_modifier === 2; }, 2000, 'rule_block + bad_modifier');
  await waitEvent((e) => e.type === 'refused' && e.reason === 'rule_block', 'refused rule_block');
  assert.ok(await ping(p, host(13)));
  p.close();
});

function rule(action: 0 | 1, src: string, srcBits: number, dst: string, dstBits: number, proto = -1, icmpType = -1): NativeRule {
  return { action, src: ipToInt(src), srcBits, dst: ipToInt(dst), dstBits, proto, sport: [], dport: [], icmpType };
}

test('firewall: setRules denies and allows, hits counted and carried', async () => {
  const p = await learnedPeer(host(14));
  try {
    // out chain: deny icmp from this peer to the gateway
    router.setRules([], [rule(1, host(14), 32, gw, 32, PROTO_ICMP)]);
    assert.equal(await ping(p, host(14), gw, 400), false, 'denied out');
    let st = router.stats();
    assert.equal(st.hits.out.length, 1);
    assert.ok(st.hits.out[0] >= 1);
    assert.ok(peerStats(host(14)).drops.firewall_out >= 1);
    const denyHits = st.hits.out[0];

    // an allow in front; the deny (now index 1) keeps its counter
    router.setRules([], [rule(0, host(14), 32, gw, 32, PROTO_ICMP), rule(1, host(14), 32, gw, 32, PROTO_ICMP)], undefined, Int32Array.from([-1, 0]));
    assert.ok(await ping(p, host(14)), 'allowed again');
    st = router.stats();
    assert.equal(st.hits.out[1], denyHits, 'carried');
    assert.ok(st.hits.out[0] >= 1);

    // in chain: deny echo replies from the gateway to this peer
    router.setRules([rule(1, gw, 32, host(14), 32, PROTO_ICMP, 0)], []);
    assert.equal(await ping(p, host(14), gw, 400), false, 'denied in');
    st = router.stats();
    assert.ok(st.hits.in[0] >= 1);
    assert.deepEqual(st.hits.out, []);
    assert.ok(st.drops.firewall_in >= 1);
    assert.ok(peerStats(host(14)).drops.firewall_in >= 1);

    // a bare allow-all chain and an unmatched default: allowed
    router.setRules([rule(1, host(200), 32, gw, 32)], [rule(0, '0.0.0.0', 0, '0.0.0.0', 0)]);
    assert.ok(await ping(p, host(14)));
    st = router.stats();
    assert.equal(st.hits.in[0], 0);
    assert.ok(st.hits.out[0] >= 1);
    assert.throws(() => router.setRules([{ action: 1 } as unknown as NativeRule], []), TypeError);
  } finally {
    router.setRules([], []);
    p.close();
  }
});

test('static bindings: the uid gets its address at accept, other sources are unbound', async () => {
  const bound = host(40);
  router.setBindings([{ uid: 0, addr: ipToInt(bound) }], LEARN_ANYWHERE);
  try {
    const p = await connect();
    await waitEvent((e) => e.type === 'peer_addr' && e.addr === ipToInt(bound), 'peer_addr at accept');
    assert.equal(await ping(p, host(41), gw, 300), false);
    assert.ok(peerStats(bound).drops.spoof >= 1, 'bound peer sending another source is spoofing');
    assert.ok(await ping(p, bound));
    const q = await connect();
    assert.equal(await ping(q, host(42), gw, 300), false);
    await waitEvent((e) => e.type === 'refused' && e.reason === 'unbound' && e.addr === ipToInt(host(42)), 'refused unbound');
    p.close();
    q.close();
  } finally {
    router.setBindings([], LEARN_ANYWHERE);
  }
});

test('a peer that never reads drops only its own packets; another peer keeps answering', async () => {
  const stuck = await learnedPeer(host(20));
  const live = await learnedPeer(host(21));
  stuck.sock.pause();
  const flood = L.udpFromGateway(host(20), 6000, 4000, 1200);   // ~4.8 MB against a 64 KiB queue
  let answered = 0;
  let sent = 0;
  let done = false;
  void flood.then(() => { done = true; });
  while (!done && sent < 200) {
    sent++;
    if (await ping(live, host(21), gw, 2000)) answered++;
  }
  assert.equal(await flood, 0);
  assert.ok(sent >= 3, `pings sent during the flood: ${sent}`);
  assert.equal(answered, sent, 'every ping answered during the flood');
  await waitFor(() => peerStats(host(20)).drops.queue_full > 0, 3000, 'queue_full on the stuck peer');
  const s = peerStats(host(20));
  assert.ok(s.queued > 0 && s.queued <= 64 * 1024, `queued ${s.queued}`);
  assert.equal(peerStats(host(21)).drops.queue_full, 0);
  assert.ok(await ping(live, host(21)));
  // once it reads again, it drains
  stuck.sock.resume();
  await waitFor(() => peerStats(host(20)).queued === 0, 3000, 'drained');
  stuck.close();
  live.close();
});

test('socket file: stale replaced, live refused, other file refused, removed on stop', async () => {
  const other = uniqueName('mrs');
  // stale: a socket file nobody listens on (its process died)
  const stale = L.tmpSock('stale');
  const child = lab.spawn(process.execPath, ['-e', `require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))`, stale]);
  await new Promise((r) => child.once('exit', r));
  assert.ok(fs.lstatSync(stale).isSocket(), 'stale socket file left behind');
  const r1 = new Router(options({ tunName: other, socketPath: stale, socketMode: 0o600 }));
  r1.start(() => {});
  try {
    const st = fs.lstatSync(stale);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600, 'socketMode applied');
    const p = await FramePeer.connect(stale);  // the stale file refused connections: this is the new one
    await waitFor(() => r1.stats().peers.length === 1, 2000, 'peer on the new router');
    p.close();

    // live: the same path while r1 listens
    const r2 = new Router(options({ tunName: uniqueName('mrs'), socketPath: stale }));
    assert.throws(() => r2.start(() => {}), /in use by another process/);
    assert.ok(fs.lstatSync(stale).isSocket(), 'live socket untouched');
  } finally {
    r1.stop();
    r1.stop(); // idempotent
  }
  assert.equal(fs.existsSync(stale), false, 'stop removed the socket file');

  // a live socket of another process
  const live = L.tmpSock('live');
  const server = net.createServer(() => {});
  await new Promise<void>((r) => server.listen(live, r));
  try {
    assert.throws(() => new Router(options({ tunName: other, socketPath: live })).start(() => {}), /in use by another process/);
  } finally {
    server.close();
  }
  // not a socket
  const plain = L.tmpSock('plain');
  fs.writeFileSync(plain, 'x');
  assert.throws(() => new Router(options({ tunName: other, socketPath: plain })).start(() => {}), /not a socket/);
  assert.equal(fs.readFileSync(plain, 'utf8'), 'x');
  // a failed start leaves no socket file
  const missing = L.tmpSock('nons');
  assert.throws(() => new Router(options({ tunName: other, socketPath: missing, netns: '/run/netns/does-not-exist-' + other })).start(() => {}), /does-not-exist/);
  assert.equal(fs.existsSync(missing), false);
});

test('the address of a closed peer is free again', async () => {
  const a = await learnedPeer(host(30));
  a.close();
  await waitEvent((e) => e.type === 'peer_down' && e.addr === ipToInt(host(30)), 'peer_down .30');
  const b = await learnedPeer(host(30));
  assert.equal(intToIp(peerStats(host(30)).addr), host(30));
  b.close();
});
