// hold-backlog.ts: a deterministic backlog in a router's tun, for the
// holding tests (router-hold.test.ts: framed peers; handoff-hold.test.ts:
// handed-over tuns). The router is stopped with SIGSTOP, a sender in the
// gateway namespace queues datagrams spread round-robin over the peers in
// the tun's queue (a large txqueuelen keeps them all), then SIGCONT.
import fs from 'node:fs';
import { sh } from './netns';

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
