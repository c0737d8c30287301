// hold-backlog.ts: a deterministic backlog in a router's tun, for the
// holding tests (router-hold.test.ts: framed peers; handoff-hold.test.ts:
// handed-over tuns). The router is stopped with SIGSTOP, a sender in the
// gateway namespace queues datagrams spread round-robin over the peers in
// the tun's queue (a large txqueuelen keeps them all), then SIGCONT.
import { ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, sh, uniqueName, waitFor } from './netns';
import { MoatProcess, startMoat, tempDir, waitForSocket } from './moat';
import { FramePeer } from './frame-peer';
import { icmpEcho, MOD_HELLO, parseIpv4, PROTO_UDP } from './packets';

/** The datagram for peer i, sequence seq: i (u16), seq (u32), then filler
 *  that depends on both (a frame mixed up with another's shows), of a length
 *  that varies by peer (the same for all of one peer's: they may merge). */
export function datagram(i: number, seq: number): Buffer {
  const b = Buffer.alloc(120 + (i % 7) * 37);
  b.writeUInt16BE(i, 0);
  b.writeUInt32BE(seq, 2);
  for (let k = 6; k < b.length; k++) b[k] = (i * 7 + seq * 13 + k) & 255;
  return b;
}

/** The sender (node -e SENDER src prefix peers perPeer port), in the gateway
 *  namespace: peer i is prefix + (i + 1). Reads commands on stdin, one a
 *  line: "flood" sends perPeer datagrams to each peer, round-robin (peer 0
 *  seq 0, peer 1 seq 0, ...); "one I SEQ" sends one. Answers "ok" when sent. */
export const SENDER = `
const dgram = require('node:dgram');
const readline = require('node:readline');
const [src, prefix, peers, perPeer, port] = process.argv.slice(1);
${datagram.toString()}
const s = dgram.createSocket('udp4');
const send = (i, seq) => new Promise((res, rej) => s.send(datagram(i, seq), Number(port), prefix + (i + 1), (e) => e ? rej(e) : res()));
s.bind(0, src, () => {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    const [cmd, a, b] = line.trim().split(' ');
    if (cmd === 'flood') {
      for (let seq = 0; seq < Number(perPeer); seq++)
        for (let i = 0; i < Number(peers); i++) await send(i, seq);
    } else if (cmd === 'one') {
      await send(Number(a), Number(b));
    }
    process.stdout.write('ok\\n');
  });
  rl.on('close', () => s.close());
  process.stdout.write('ready\\n');
});`;

/** A process's state letter from /proc/PID/stat ('T': stopped). */
export function procState(pid: number): string {
  // "pid (comm) S ...": comm may hold spaces, the state follows the last ')'.
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3);
}

/** A device's transmitted and dropped packets (what its reader had not read). */
export function tunStats(ns: string, tun: string): { txPackets: number; txDropped: number } {
  const link = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', tun]))[0];
  return { txPackets: Number(link.stats64?.tx?.packets ?? link.stats?.tx?.packets ?? 0), txDropped: Number(link.stats64?.tx?.dropped ?? link.stats?.tx?.dropped ?? 0) };
}

/** A moat CLI router in a gateway namespace of lab, with holding at holdMs
 *  and o.args, its tun up with gw/16 and room for a whole backlog
 *  (txqueuelen 50,000, or o.txqueuelen: each of its queues holds that many).
 *  Peers are prefix + 1, prefix + 2, ... pid is the router's own (`ip netns
 *  exec` execs it): the lab never leaves it stopped. */
export interface HoldRouter { router: MoatProcess; pid: number; sock: string; stats: string; ns: string; tun: string; gw: string; prefix: string }

export async function startHoldRouter(lab: Lab, holdMs: number, tag: string,
  o: { txqueuelen?: number; args?: string[] } = {}): Promise<HoldRouter> {
  const dir = tempDir(lab);
  const sock = path.join(dir, 'tuntap.sock');
  const stats = path.join(dir, 'stats.sock');
  const ns = lab.netns(tag);
  const tun = uniqueName(`${tag}t`);
  const a = 16 + crypto.randomInt(200);
  const gw = `10.${a}.0.1`;
  const prefix = `10.${a}.1.`;
  const router = startMoat(lab, ['--tuntap-router', `${tun} ${sock}`, '--tuntap-router-stats', stats, '--tuntap-router-hold', String(holdMs), ...(o.args ?? [])], ns);
  let pid = 0;
  // Never leave a stopped process behind (cleanups run last-added first).
  lab.onCleanup(() => { if (pid) { try { process.kill(pid, 'SIGCONT'); } catch { /* gone */ } } });
  await waitForSocket(sock, router);
  await waitForSocket(stats, router);
  pid = router.child.pid!;
  const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  if (!cmdline.includes('cli.js') || !cmdline.includes('--tuntap-router')) throw new Error(`pid ${pid} is not the router: ${cmdline}`);
  sh('ip', ['-n', ns, 'addr', 'add', `${gw}/16`, 'dev', tun]);
  sh('ip', ['-n', ns, 'link', 'set', tun, 'up', 'txqueuelen', String(o.txqueuelen ?? 50000)]);
  return { router, pid, sock, stats, ns, tun, gw, prefix };
}

/** The backlog: the router stopped while send() queues datagrams in its tun,
 *  then continued. Returns what the tun dropped meanwhile (0: it kept all). */
export async function backlog(r: HoldRouter, send: () => Promise<void>): Promise<number> {
  const before = tunStats(r.ns, r.tun);
  process.kill(r.pid, 'SIGSTOP');
  try {
    await waitFor(() => procState(r.pid) === 'T', 5000, 'router stopped');
    await send();
    return tunStats(r.ns, r.tun).txDropped - before.txDropped;
  } finally {
    process.kill(r.pid, 'SIGCONT');
  }
}

/** A child's stdout as lines, and a way to send a command and await its answer line. */
export function lines(child: ChildProcess, what: string): { all: string[]; err: () => string; ask: (cmd: string) => Promise<string> } {
  const all: string[] = [];
  let buf = '', err = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    const ls = buf.split('\n');
    buf = ls.pop()!;
    all.push(...ls);
  });
  child.stderr!.on('data', (d) => { err += d; });
  const ask = async (cmd: string) => {
    const n = all.length;
    child.stdin!.write(cmd + '\n');
    await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`${what} exited: ${err}`);
      return all.length > n;
    }, 20000, `${what}: ${cmd} ${err}`);
    return all[n];
  };
  return { all, err: () => err, ask };
}

/** The SENDER in the gateway namespace ns, ready: command(line) sends a
 *  command and asserts its "ok"; end() closes its input (it exits). */
export async function startSender(lab: Lab, ns: string, gw: string, prefix: string, peers: number, perPeer: number, port: number):
  Promise<{ command: (line: string) => Promise<void>; end: () => void }> {
  const child = lab.spawn(process.execPath, ['-e', SENDER, gw, prefix, String(peers), String(perPeer), String(port)], { ns });
  const l = lines(child, 'sender');
  await waitFor(() => l.all.includes('ready') || child.exitCode !== null, 10000, 'sender ready');
  if (!l.all.includes('ready')) throw new Error(`sender exited: ${l.err()}`);
  return {
    command: async (line: string) => {
      const answer = await l.ask(line);
      if (answer !== 'ok') throw new Error(`sender: ${line}: ${answer} ${l.err()}`);
    },
    end: () => { child.stdin!.end(); },
  };
}

/** n framed peers at prefix + 1 ... prefix + n, each counting the UDP
 *  datagrams it gets (got[i]); resolves once the router answered each one's
 *  echo request (it has learned their addresses). */
export async function countingPeers(lab: Lab, r: HoldRouter, n: number, echoId: number): Promise<number[]> {
  const got = new Array<number>(n).fill(0);
  const peers: FramePeer[] = [];
  for (let i = 0; i < n; i++) {
    const p = await FramePeer.connect(r.sock, { keep: false, onFrame: (f) => {
      if (f.mod2 !== MOD_HELLO && parseIpv4(f.payload).proto === PROTO_UDP) got[i]++;
    } });
    lab.onCleanup(() => p.close());
    p.send(icmpEcho(r.prefix + (i + 1), r.gw, echoId + i, 1));
    peers.push(p);
  }
  await waitFor(() => peers.every((p) => p.received >= 1), 10000, 'echo replies to all peers');
  return got;
}
