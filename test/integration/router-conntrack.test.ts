// router-conntrack.test.ts: connection tracking in the LIVE native router
// (the table, `state` rules and `reject` through the router's loop, not the
// test-only Firewall binding). The policy is rules/stateful/outbound.rules on
// the lab's /24: vassals reach the outside; nothing reaches them but replies,
// ICMP errors about their flows and the port they publish (.10 tcp 8080);
// other inbound TCP is rejected (a reset). Real kernels answer where a test
// can use one: a UDP echo server and a TCP server in the gateway namespace,
// a moat Device in a vassal namespace (its kernel's TCP: real SYN, ACK, FIN).
// Covered: each state, reject's answers (TCP reset, ICMP port unreachable),
// the per-vassal and global quotas, reloads with live connections, a
// vassal's own rules narrowing the router's in the tracked path.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import { NativeRule, ConntrackOptions } from '../../src/native';
import { conntrackDefaults, deviceConfigFor } from '../../src/config/router-config';
import { Device } from '../../src/device/device';
import { compileRule } from '../../src/rules/compile';
import { parseFileLine } from '../../src/rules/parse';
import { ipToInt, parseIpv4, PROTO_ICMP, PROTO_TCP, PROTO_UDP, udpPacket } from '../helpers/packets';
import { ACK, icmpError, RST, SYN, tcpSegment } from '../helpers/conntrack-packets';
import { requireRoot, sh, sleep, uniqueName, waitFor } from '../helpers/netns';
import { RouterLab } from '../helpers/native-router';
import { FramePeer } from '../helpers/frame-peer';

const L = new RouterLab();
const ECHO_PORT = 7007;        // UDP echo server on the gateway
const TCP_PORT = 7070;         // TCP echo server on the gateway
const PUBLISHED = 8080;        // the vassal at .10 publishes it
const UNPUBLISHED = 9090;      // the vassal listens there too, unpublished

/** The outbound-only policy (rules/stateful/outbound.rules) on the lab's /24; extra.out/in go first. */
function policy(extra: { out?: string[]; in?: string[] } = {}): { in: NativeRule[]; out: NativeRule[] } {
  const net = `${L.host(0)}/24`;
  const lines = [
    ...(extra.out ?? []).map((r) => `out ${r}`),
    `out allow ${net} 0.0.0.0/0 state new,established,related`,
    'out deny',
    ...(extra.in ?? []).map((r) => `in ${r}`),
    `in allow 0.0.0.0/0 ${net} state established,related`,
    `in allow 0.0.0.0/0 ${L.host(10)} proto tcp dport ${PUBLISHED} state new`,
    `in reject 0.0.0.0/0 ${net} proto tcp`,
    'in deny',
  ];
  const rules = lines.map((l, i) => compileRule(parseFileLine(l, { file: 'outbound.rules', line: i + 1 }).rule!, `outbound.rules:${i + 1}`));
  return { in: rules.filter((r) => r.chain === 'in').map((r) => r.native), out: rules.filter((r) => r.chain === 'out').map((r) => r.native) };
}

/** Loads rules (the loop installs them before it judges the next packet; its
 *  stats show them once it published: waited for by the chains' lengths). */
async function load(p = policy(), ct: Partial<ConntrackOptions> = {}): Promise<void> {
  L.router.setRules(p.in, p.out, undefined, undefined, { ...conntrackDefaults(), ...ct });
  await waitFor(() => { const h = hits(); return h.in.length === p.in.length && h.out.length === p.out.length && L.router.stats().conntrack.slots > 0; }, 2000, 'rules installed');
}

const hits = () => L.router.stats().hits;

let nextHost = 20;
async function learnedPeer(): Promise<{ peer: FramePeer; addr: string }> {
  const addr = L.host(nextHost++);
  const peer = await FramePeer.connect(L.sockPath);
  L.lab.onCleanup(() => peer.close());
  assert.ok(await peer.ping(addr, L.gw), `${addr}: its ping (new) went out and the reply (established) came back`);
  return { peer, addr };
}

const isUdp = (from: string, sport: number, to: string, dport: number) => (p: Buffer): boolean => {
  const ip = parseIpv4(p);
  return ip.proto === PROTO_UDP && ip.src === from && ip.dst === to && ip.payload.readUInt16BE(0) === sport && ip.payload.readUInt16BE(2) === dport;
};

/** A node script in ns; resolves to its exit code and stdout. */
function nodeIn(ns: string, code: string, args: string[], timeoutMs = 15000): Promise<{ code: number | null; out: string }> {
  const child = L.lab.spawn(process.execPath, ['-e', code, ...args], { ns });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (c) => { clearTimeout(t); resolve({ code: c, out }); });
  });
}

/** A long-lived child in ns; resolves once it printed 'ready'. */
async function serverIn(ns: string, code: string, args: string[]): Promise<ChildProcess> {
  const child = L.lab.spawn(process.execPath, ['-e', code, ...args], { ns });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('ready')) resolve(); });
    child.once('exit', (c) => reject(new Error(`server exited ${c}: ${out}`)));
  });
  return child;
}

const UDP_ECHO = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, r) => s.send(m, r.port, r.address));
s.bind(Number(process.argv[2]), process.argv[1], () => console.log('ready'));`;

const TCP_ECHO = `
const net = require('node:net');
const [host, ...ports] = process.argv.slice(1);
let n = 0;
for (const p of ports) net.createServer((c) => { c.on('error', () => {}); c.pipe(c); }).listen(Number(p), host, () => { if (++n === ports.length) console.log('ready'); });`;

// Connects to host:port, sends `bytes` bytes, expects them back, closes.
// Prints {ok, ms, code}.
const TCP_CLIENT = `
const net = require('node:net');
const [host, port, bytes] = process.argv.slice(1);
const t0 = Date.now();
const want = Number(bytes);
const c = net.connect({ host, port: Number(port) });
let got = 0;
c.on('connect', () => c.write(Buffer.alloc(want, 0x61)));
c.on('data', (d) => { got += d.length; if (got >= want) c.end(); });
c.on('close', () => { console.log(JSON.stringify({ ok: got === want, ms: Date.now() - t0 })); process.exit(0); });
c.on('error', (e) => { console.log(JSON.stringify({ ok: false, ms: Date.now() - t0, code: e.code })); process.exit(0); });`;

// Holds one connection to host:port; each stdin line is sent, its echo printed.
const TCP_HOLDER = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const c = net.connect({ host, port: Number(port) }, () => console.log('ready'));
c.setEncoding('utf8');
c.on('data', (d) => process.stdout.write('echo:' + d));
c.on('error', (e) => { console.log('error:' + e.code); process.exit(1); });
process.stdin.setEncoding('utf8');
process.stdin.on('data', (l) => c.write(l));`;

async function tcpClient(ns: string, host: string, port: number, bytes: number): Promise<{ ok: boolean; ms: number; code?: string }> {
  const r = await nodeIn(ns, TCP_CLIENT, [host, String(port), String(bytes)]);
  return JSON.parse(r.out.trim().split('\n').pop()!);
}

let vassalNs = '';
const vassal = () => L.host(10);

/** A moat device in a namespace of its own at .10 (its kernel speaks TCP through the router). */
async function startVassal(): Promise<void> {
  vassalNs = L.lab.netns('ctv');
  const name = uniqueName('ctd');
  const d = new Device(deviceConfigFor(name, L.sockPath, { maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 20, reconnectMaxMs: 200, offload: false }),
    { netns: `/run/netns/${vassalNs}` });
  d.start();
  L.lab.onCleanup(() => d.stop());
  sh('ip', ['-n', vassalNs, 'addr', 'add', `${vassal()}/24`, 'dev', name]);
  sh('ip', ['-n', vassalNs, 'link', 'set', name, 'up']);
  sh('ip', ['netns', 'exec', vassalNs, 'ping', '-n', '-c', '1', '-W', '2', L.gw]);
  await waitFor(() => L.router.stats().peers.some((p) => p.addr === ipToInt(vassal())), 5000, 'device learned');
}

before(async () => {
  requireRoot();
  L.start('ctl', { maxFrame: 8188, queueBytes: 256 * 1024 });
  await load();
  await serverIn(L.ns, UDP_ECHO, [L.gw, String(ECHO_PORT)]);
  await serverIn(L.ns, TCP_ECHO, [L.gw, String(TCP_PORT)]);
  await startVassal();
  await serverIn(vassalNs, TCP_ECHO, ['0.0.0.0', String(PUBLISHED), String(UNPUBLISHED)]);
});

after(async () => {
  await L.cleanup();
});

test('the policy loads a table; the stats show it', () => {
  const st = L.router.stats();
  assert.ok(st.conntrack.slots > 0, 'a table while a rule names a state');
  assert.equal(st.conntrack.slotBytes, 32);
  assert.ok(st.conntrack.entries >= 1, 'the device\'s ping opened a flow');
});

test('UDP: the reply of a real socket reaches the peer (established); a packet that is not a reply (new) is refused', async () => {
  const { peer, addr } = await learnedPeer();
  const h0 = hits();
  peer.send(udpPacket(addr, L.gw, 40001, ECHO_PORT, 'hello'));
  assert.ok(await peer.waitPacket(isUdp(L.gw, ECHO_PORT, addr, 40001), 2000), 'the echo came back');
  const h1 = hits();
  assert.equal(h1.out[0] - h0.out[0], 1, 'the datagram went out as new (out rule 0)');
  assert.equal(h1.in[0] - h0.in[0], 1, 'its reply came in as established (in rule 0)');
  // a second datagram of the same flow and its answer
  peer.send(udpPacket(addr, L.gw, 40001, ECHO_PORT, 'again'));
  assert.ok(await peer.waitPacket((p) => isUdp(L.gw, ECHO_PORT, addr, 40001)(p) && parseIpv4(p).payload.subarray(8).toString() === 'again', 2000));

  // the gateway opens a flow toward the peer: new, refused by `in deny`
  const d0 = L.router.stats().drops.firewall_in ?? 0;
  const deny0 = hits().in[3];
  assert.equal(await L.udpFromGateway(addr, 5005, 3, 20), 0);
  await waitFor(() => hits().in[3] - deny0 === 3, 2000, 'three datagrams met in deny');
  assert.equal((L.router.stats().drops.firewall_in ?? 0) - d0, 3);
  await sleep(100);
  assert.ok(!peer.packets.some((p) => parseIpv4(p).proto === PROTO_UDP && parseIpv4(p).payload.readUInt16BE(2) === 5005), 'nothing new reached the peer');
});

test('related: the kernel\'s ICMP port unreachable for a peer\'s datagram passes; an ICMP error quoting nothing is invalid', async () => {
  const { peer, addr } = await learnedPeer();
  const h0 = hits();
  const sent = udpPacket(addr, L.gw, 40002, 7999, 'closed');   // nobody listens on 7999
  peer.send(sent);
  const err = await peer.waitPacket((p) => { const ip = parseIpv4(p); return ip.proto === PROTO_ICMP && ip.payload[0] === 3 && ip.payload[1] === 3; }, 2000);
  assert.ok(err, 'port unreachable reached the peer');
  assert.equal(parseIpv4(err).src, L.gw);
  assert.equal(parseIpv4(err).payload.readUInt16BE(8 + 20 + 2), 7999, 'it quotes our datagram');
  assert.equal(hits().in[0] - h0.in[0], 1, 'met in rule 0 (established,related)');

  // the peer sends an ICMP error about a flow nobody has: invalid, so not rule 0 but `out deny`
  const o0 = hits().out;
  peer.send(icmpError(addr, L.gw, 3, 3, udpPacket(L.gw, addr, 1111, 2222)));
  await waitFor(() => hits().out[1] - o0[1] === 1, 2000, 'out deny hit');
  assert.equal(hits().out[0], o0[0], 'not new, established or related');
});

test('TCP: a non-SYN without a flow is invalid; a SYN is new and the kernel\'s reset for it comes back', async () => {
  const { peer, addr } = await learnedPeer();
  const o0 = hits().out;
  const fw0 = L.peerStats(addr).drops.firewall_out ?? 0;
  peer.send(tcpSegment(addr, L.gw, 40100, 7100, ACK, 1000, 1));
  await waitFor(() => hits().out[1] - o0[1] === 1, 2000, 'out deny hit');
  assert.equal(hits().out[0], o0[0], 'an ACK without a flow is invalid');
  assert.equal((L.peerStats(addr).drops.firewall_out ?? 0) - fw0, 1);

  peer.send(tcpSegment(addr, L.gw, 40101, 7100, SYN, 1000));   // 7100: closed on the gateway
  const rst = await peer.waitPacket((p) => { const ip = parseIpv4(p); return ip.proto === PROTO_TCP && ip.payload.readUInt16BE(2) === 40101 && (ip.payload[13] & RST) !== 0; }, 2000);
  assert.ok(rst, 'the gateway kernel\'s RST (a reply: established) reached the peer');
  assert.equal(hits().out[0] - o0[0], 1, 'the SYN was new');
});

test('TCP with real kernels: the vassal\'s connection out completes both ways; inbound only to the published port, else refused fast (reset)', async () => {
  const out = await tcpClient(vassalNs, L.gw, TCP_PORT, 200000);
  assert.deepEqual(out.ok, true, `vassal -> gateway: ${JSON.stringify(out)}`);

  const pub = await tcpClient(L.ns, vassal(), PUBLISHED, 200000);
  assert.equal(pub.ok, true, `gateway -> published port: ${JSON.stringify(pub)}`);

  const rej0 = L.router.stats().rejects;
  const h0 = hits();
  const unpub = await tcpClient(L.ns, vassal(), UNPUBLISHED, 10);
  assert.equal(unpub.ok, false);
  assert.equal(unpub.code, 'ECONNREFUSED', `refused with a reset, not a timeout: ${JSON.stringify(unpub)}`);
  assert.ok(unpub.ms < 1000, `refused fast: ${unpub.ms} ms`);
  assert.ok(L.router.stats().rejects - rej0 >= 1, 'a reject answer counted');
  assert.ok(hits().in[2] - h0.in[2] >= 1, 'in reject hit');
});

test('reject: a peer\'s rejected UDP gets an ICMP port unreachable frame from the destination', async () => {
  const { peer, addr } = await learnedPeer();
  await load(policy({ out: [`reject ${L.host(0)}/24 ${L.gw} proto udp dport 5999`] }));
  try {
    const st0 = L.router.stats();
    const sent = udpPacket(addr, L.gw, 40200, 5999, 'refuse me');
    peer.send(sent);
    const ans = await peer.waitPacket((p) => { const ip = parseIpv4(p); return ip.proto === PROTO_ICMP && ip.dst === addr && ip.payload[0] === 3; }, 2000);
    assert.ok(ans, 'an ICMP answer came back');
    const ip = parseIpv4(ans);
    assert.equal(ip.src, L.gw, 'from the refused packet\'s destination');
    assert.ok(ip.headerOk);
    assert.equal(ip.payload[1], 3, 'code 3: port unreachable');
    assert.deepEqual(ip.payload.subarray(8, 8 + 28), sent.subarray(0, 28), 'quotes the IP header and 8 bytes');
    const st1 = L.router.stats();
    assert.equal(st1.rejects - st0.rejects, 1);
    assert.equal(st1.hits.out[0] - st0.hits.out[0], 1, 'the reject rule hit');
    assert.equal((L.peerStats(addr).drops.firewall_out ?? 0) >= 1, true, 'the packet itself dropped');
  } finally {
    await load();
  }
});

test('reload with a live TCP connection: the same rules, then one more (8080 no longer published): it stays established', async () => {
  const holder = L.lab.spawn(process.execPath, ['-e', TCP_HOLDER, vassal(), String(PUBLISHED)], { ns: L.ns });
  let out = '';
  holder.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  await waitFor(() => out.includes('ready'), 5000, 'connected to the published port');
  const say = async (w: string) => {
    holder.stdin!.write(w + '\n');
    await waitFor(() => out.includes(`echo:${w}`), 3000, `echo of ${w}`);
  };
  try {
    await say('before');
    const entries = L.router.stats().conntrack.entries;
    await load();
    assert.ok(L.router.stats().conntrack.entries >= entries - 2, 'the table kept its flows');
    await say('same-rules');
    // one more rule: new connections to 8080 are now refused
    await load(policy({ in: [`reject 0.0.0.0/0 ${vassal()} proto tcp dport ${PUBLISHED} state new`] }));
    await say('one-more-rule');
    const fresh = await tcpClient(L.ns, vassal(), PUBLISHED, 10);
    assert.equal(fresh.code, 'ECONNREFUSED', `a new connection to 8080 is refused now: ${JSON.stringify(fresh)}`);
    await say('still-there');
    assert.ok(!out.includes('error:'), out);
  } finally {
    holder.kill();
    await load();
  }
});

test('a vassal\'s own rules narrow the router\'s in the tracked path, never widen them', async () => {
  const a = await learnedPeer();
  const b = await learnedPeer();
  const own = (lines: string[]) => lines.map((l, i) => compileRule(parseFileLine(l, { file: 'vassal.rules', line: i + 1 }).rule!, `vassal.rules:${i + 1}`).native);
  L.router.setPeerRules([{
    key: 1, addr: ipToInt(a.addr),
    out: own([`out deny ${a.addr} ${L.gw} proto udp dport 7998`]),
    // its in chain denies the echo server's answers to one port, and tries to let every UDP in
    in: own([`in deny ${L.gw} ${a.addr} proto udp sport ${ECHO_PORT} dport 44001`, `in allow 0.0.0.0/0 ${a.addr} proto udp`]),
  }]);
  try {
    await waitFor(() => L.router.stats().peerHits.length === 1, 2000, 'peer rules installed');
    const p0 = L.peerStats(a.addr).drops;
    a.peer.send(udpPacket(a.addr, L.gw, 44000, 7998, 'own-out'));
    await waitFor(() => L.peerStats(a.addr).drops.vassal_firewall_out - (p0.vassal_firewall_out ?? 0) === 1, 2000, 'vassal_firewall_out');
    // the router's rules and its own pass a flow out: its answer (established
    // for the router) meets its own in deny on one port, passes on another
    a.peer.send(udpPacket(a.addr, L.gw, 44001, ECHO_PORT, 'denied answer'));
    await waitFor(() => L.peerStats(a.addr).drops.vassal_firewall_in - (p0.vassal_firewall_in ?? 0) === 1, 2000, 'vassal_firewall_in');
    a.peer.send(udpPacket(a.addr, L.gw, 44002, ECHO_PORT, 'answered'));
    assert.ok(await a.peer.waitPacket(isUdp(L.gw, ECHO_PORT, a.addr, 44002), 2000), 'answer to 44002');
    assert.ok(!a.peer.packets.some(isUdp(L.gw, ECHO_PORT, a.addr, 44001)), 'no answer to 44001');
    a.peer.clear();
    // its own `in allow` does not let a new flow in: the router's in deny judged first
    assert.equal(await L.udpFromGateway(a.addr, 5055, 2, 10), 0);
    await waitFor(() => L.peerStats(a.addr).drops.firewall_in - (p0.firewall_in ?? 0) === 2, 2000, 'router in deny');
    assert.ok(!a.peer.packets.some((p) => parseIpv4(p).proto === PROTO_UDP), 'no UDP reached a');
    // b, without own rules, still reaches the echo server
    b.peer.send(udpPacket(b.addr, L.gw, 44000, ECHO_PORT, 'b'));
    assert.ok(await b.peer.waitPacket(isUdp(L.gw, ECHO_PORT, b.addr, 44000), 2000));
  } finally {
    L.router.setPeerRules([]);
  }
});

test('quotas: a vassal over its share is refused (conntrack_vassal), another still opens flows; a full table refuses (conntrack_full), known flows pass', async () => {
  L.router.setRules([], []);                        // no state: the table goes
  await waitFor(() => L.router.stats().conntrack.slots === 0, 2000, 'no table');
  await load(policy(), { ctMax: 8, ctMaxPerVassal: 3 });  // a new, empty table
  try {
    const a = await learnedPeer();                   // its ping: a's flow 1
    for (let i = 0; i < 5; i++) a.peer.send(udpPacket(a.addr, L.gw, 41000 + i, ECHO_PORT, `q${i}`));
    await waitFor(() => L.peerStats(a.addr).drops.conntrack_vassal === 3, 2000, 'three flows over a\'s share');
    for (const sport of [41000, 41001]) assert.ok(await a.peer.waitPacket(isUdp(L.gw, ECHO_PORT, a.addr, sport), 2000), `flow ${sport} answered`);
    await sleep(200);
    assert.ok(!a.peer.packets.some(isUdp(L.gw, ECHO_PORT, a.addr, 41002)), 'a refused flow got no answer');
    assert.equal(L.router.stats().drops.conntrack_vassal, 3);

    const b = await learnedPeer();                   // another vassal still opens flows
    b.peer.send(udpPacket(b.addr, L.gw, 42000, ECHO_PORT, 'b'));
    assert.ok(await b.peer.waitPacket(isUdp(L.gw, ECHO_PORT, b.addr, 42000), 2000), 'b\'s flow answered');
    assert.equal(L.peerStats(b.addr).drops.conntrack_vassal ?? 0, 0);

    // fill the table: c takes what is left, then a new flow finds it full
    const c = await learnedPeer();
    for (let i = 0; i < 2; i++) c.peer.send(udpPacket(c.addr, L.gw, 43000 + i, ECHO_PORT, 'c'));
    await waitFor(() => L.router.stats().conntrack.entries >= 8, 2000, 'the table full');
    const full0 = L.router.stats().drops.conntrack_full ?? 0;
    c.peer.send(udpPacket(c.addr, L.gw, 43009, ECHO_PORT, 'over'));
    await waitFor(() => (L.router.stats().drops.conntrack_full ?? 0) > full0, 2000, 'conntrack_full');
    assert.ok(L.peerStats(c.addr).drops.conntrack_full >= 1);
    assert.equal(L.router.stats().conntrack.entries, 8, 'never more than the max');
    // known flows still pass both ways
    a.peer.clear();
    a.peer.send(udpPacket(a.addr, L.gw, 41000, ECHO_PORT, 'known'));
    assert.ok(await a.peer.waitPacket(isUdp(L.gw, ECHO_PORT, a.addr, 41000), 2000), 'a known flow still answered');
  } finally {
    await load();
  }
});
