// classifier.ts: nanoseconds per firewall lookup, compiled tree vs linear
// first-match walk, at 0, 100, 1,000 and 10,000 random CIDR/port rules, with
// packets whose first match is the last rule (half) or no rule (half).
//
// Two measurements:
//  - native: bench/classifier-bench.cc, compiled here with g++ -O2 against
//    native/classifier.cc, times Classifier::match and a rule_matches walk side
//    by side in C++ (no N-API in the loop) and reports build time and memory;
//  - addon: the N-API Classifier.match on batches of 4,096 packets, to show
//    what a JS caller pays per packet (TS-generated rules, same shape).
// Usage: node dist/bench/classifier.js [sizes...]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { addon, type NativeRule } from '../src/native';
import { encodePackets, firstMatch, type Packet } from '../test/helpers/reference-firewall';

const root = path.join(__dirname, '..', '..');
const sizes = process.argv.slice(2).map(Number);
if (sizes.length === 0) sizes.push(0, 100, 1000, 10000);

interface NativeRow {
  rules: number; compiledNs: number; linearNs: number; chainFlowNs: number; chainManyNs: number; buildMs: number; buildAvgMs: number;
  bytes: number; nodes: number; leaves: number; entries: number; maxDepth: number; maxLeaf: number; capped: boolean;
}

function runNative(): NativeRow[] {
  const out = path.join(root, 'build', 'bench', 'classifier-bench');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const cc = spawnSync('g++', ['-O2', '-std=c++17', '-o', out,
    path.join(root, 'bench', 'classifier-bench.cc'), path.join(root, 'native', 'classifier.cc'), path.join(root, 'native', 'frame.cc')], { stdio: 'inherit' });
  if (cc.status !== 0) throw new Error('g++ failed to build the classifier bench');
  const r = spawnSync(out, sizes.map(String), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 });
  if (r.status !== 0) throw new Error(`classifier-bench exited with ${r.status}`);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as NativeRow);
}

// Deterministic PRNG (mulberry32) so runs are comparable.
let seed = 0x5eed;
function rnd(n: number): number {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return (((t ^ (t >>> 14)) >>> 0) % n);
}
const u32 = () => rnd(0x10000) * 0x10000 + rnd(0x10000);
const masked = (a: number, bits: number) => (bits === 0 ? 0 : Math.floor(a / 2 ** (32 - bits)) * 2 ** (32 - bits));

function randomRule(): NativeRule {
  const net = (): [number, number] => {
    const bits = 8 + rnd(25);
    return [masked(u32(), bits), bits];
  };
  let [src, srcBits] = net();
  let [dst, dstBits] = net();
  if (rnd(10) === 0) [src, srcBits] = [0, 0];
  else if (rnd(9) === 0) [dst, dstBits] = [0, 0];
  const p = rnd(10);
  const proto = p < 4 ? 6 : p < 7 ? 17 : p < 8 ? 1 : p < 9 ? -1 : rnd(256);
  const ports = (): Array<[number, number]> => {
    const k = rnd(4);
    if (k === 0) return [];
    if (k === 1) { const x = rnd(65536); return [[x, x]]; }
    const a = rnd(65536), b = rnd(65536);
    return [[Math.min(a, b), Math.max(a, b)]];
  };
  const tcpudp = proto === 6 || proto === 17;
  return {
    action: rnd(2) as 0 | 1, src, srcBits, dst, dstBits, proto,
    sport: tcpudp && rnd(4) === 0 ? ports() : [], dport: tcpudp ? ports() : [],
    icmpType: proto === 1 && rnd(2) ? rnd(20) : -1,
  };
}

function packetIn(r: NativeRule): Packet {
  const addr = (net: number, bits: number) => (bits === 0 ? u32() : net + (bits === 32 ? 0 : u32() % 2 ** (32 - bits)));
  return {
    src: addr(r.src, r.srcBits), dst: addr(r.dst, r.dstBits), proto: r.proto >= 0 ? r.proto : rnd(256), hasL4: true,
    sport: r.sport.length ? r.sport[0][0] : rnd(65536), dport: r.dport.length ? r.dport[0][1] : rnd(65536),
    icmpType: r.icmpType >= 0 ? r.icmpType : rnd(256),
  };
}

function randomPacket(): Packet {
  return { src: u32(), dst: u32(), proto: [6, 17, 1, rnd(256)][rnd(4)], hasL4: rnd(16) !== 0,
    sport: rnd(65536), dport: rnd(65536), icmpType: rnd(256) };
}

function addonRow(n: number): { buildMs: number; batchNs: number } {
  const { Classifier } = addon();
  const rules: NativeRule[] = [];
  for (let i = 0; i + 1 < n; i++) rules.push(randomRule());
  while (n > 0) {
    const last = randomRule();
    last.src = masked(last.src, 32) + 1; last.srcBits = 32;
    last.dst = masked(last.dst, 32) + 1; last.dstBits = 32;
    rules.push(last);
    if (firstMatch(rules, packetIn(last)) === n - 1) break;
    rules.pop();
  }
  const packets: Packet[] = [];
  for (let tries = 0; packets.length < 4096 && tries < 1_000_000; tries++) {
    const aim = n > 0 && packets.length % 2 === 0;
    const p = aim ? packetIn(rules[n - 1]) : randomPacket();
    if (firstMatch(rules, p) === (aim ? n - 1 : -1)) packets.push(p);
  }
  const keys = encodePackets(packets);
  let t = process.hrtime.bigint();
  const c = new Classifier(rules);
  const buildMs = Number(process.hrtime.bigint() - t) / 1e6;
  const got = c.match(keys);
  packets.forEach((p, i) => {
    if (got[i] !== firstMatch(rules, p)) throw new Error(`addon disagrees with the reference at packet ${i}`);
  });
  let reps = 0;
  t = process.hrtime.bigint();
  do {
    c.match(keys);
    reps++;
  } while (Number(process.hrtime.bigint() - t) < 2e8);
  return { buildMs, batchNs: Number(process.hrtime.bigint() - t) / (reps * packets.length) };
}

function main(): void {
  const nativeRows = runNative();
  const pad = (s: string, w: number) => s.padStart(w);
  const head = ['rules', 'tree ns', 'linear ns', 'speedup', 'chain 1 flow', 'chain 2048', 'build ms', 'memory KiB', 'depth', 'leaf max', 'addon ns', 'addon build ms'];
  const widths = [7, 9, 11, 9, 14, 12, 10, 11, 7, 9, 10, 15];
  console.log('firewall lookup: packets hit the last rule or none (native = C++ loop; addon = N-API batch of 4096)');
  console.log(head.map((h, i) => pad(h, widths[i])).join(''));
  for (const r of nativeRows) {
    const a = addonRow(r.rules);
    const cells = [
      String(r.rules), r.compiledNs.toFixed(1), r.linearNs.toFixed(1), `${(r.linearNs / r.compiledNs).toFixed(1)}x`,
      r.chainFlowNs.toFixed(1), r.chainManyNs.toFixed(1), r.buildAvgMs.toFixed(2), (r.bytes / 1024).toFixed(0), String(r.maxDepth), String(r.maxLeaf) + (r.capped ? '*' : ''),
      a.batchNs.toFixed(1), a.buildMs.toFixed(2),
    ];
    console.log(cells.map((c, i) => pad(c, widths[i])).join(''));
  }
  console.log('(chain: the router\'s judgement of a packet\'s bytes, chain.h, ns a packet: one flow again and again,');
  console.log(' answered by its verdict cache from 64 rules on, and 2,048 flows in turn, nearly all misses;');
  console.log(' memory: the compiled tree, rules and leaves; * = a build budget capped splitting)');
}

main();
