// conntrack-writer.ts: the conntrack bench's load (bench/conntrack.ts), in a
// process of its own so the router's thread keeps a core: `peers` frame
// peers on a router's socket, peer i from base + i, together `flows`
// distinct UDP flows (peer i's to 172.16.0.0 + k, k < flows / peers, port
// 9000; 64-byte packets). Each stdin line `run MS` writes every peer's flows
// round and round, as fast as the socket takes them, for MS ms, then prints
// `done`. Traffic goes only to the router's unix socket (the router writes
// it to a tun in a namespace the bench made).
//
//   node dist/bench/conntrack-writer.js SOCKET BASE PEERS FLOWS
import net from 'node:net';
import readline from 'node:readline';
import { encodeFrame, intToIp, ipToInt, udpPacket } from '../test/helpers/packets';

export const FLOW_DST_BASE = '172.16.0.0';
export const FLOW_PORT = 9000;

/** One peer's flows framed back to back: what it writes each turn. */
export function peerFrames(src: string, count: number): Buffer {
  const base = ipToInt(FLOW_DST_BASE);
  const payload = Buffer.alloc(36);
  const frames: Buffer[] = [];
  for (let k = 0; k < count; k++) frames.push(encodeFrame(udpPacket(src, intToIp(base + k), 40000, FLOW_PORT, payload)));
  return Buffer.concat(frames);
}

async function main(): Promise<void> {
  const [sock, base, peersArg, flowsArg] = process.argv.slice(2);
  const peers = Number(peersArg);
  const per = Math.ceil(Number(flowsArg) / peers);
  const conns: net.Socket[] = [];
  const bufs: Buffer[] = [];
  for (let i = 0; i < peers; i++) {
    const s = net.createConnection(sock);
    await new Promise<void>((res, rej) => { s.once('connect', res); s.once('error', rej); });
    s.on('error', () => process.exit(3));
    conns.push(s);
    bufs.push(peerFrames(intToIp(ipToInt(base) + i), per));
  }
  const flood = async (s: net.Socket, buf: Buffer, until: number) => {
    while (Date.now() < until) {
      if (!s.write(buf)) await new Promise((r) => s.once('drain', r));
    }
  };
  process.stdout.write('ready\n');
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const m = /^run (\d+)$/.exec(line.trim());
    if (!m) continue;
    const until = Date.now() + Number(m[1]);
    await Promise.all(conns.map((s, i) => flood(s, bufs[i], until)));
    process.stdout.write('done\n');
  }
  for (const s of conns) s.destroy();
}

if (require.main === module) main().catch((e) => { process.stderr.write(`conntrack-writer: ${(e as Error).stack ?? e}\n`); process.exit(1); });
