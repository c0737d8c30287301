// coalesce.test.ts: the USO merge (native/coalesce.cc) through the addon's
// usoMerge, which merges consecutive datagrams as the router and device do.
// Every merged frame must split back (gso_split, the same arithmetic as the
// kernel's __udp_gso_segment) into exactly the datagrams that went in; the
// merge rules (flow, TOS/TTL/DF, ids with DF clear, lengths, checksums,
// segment and size limits) decide where runs end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addon } from '../../src/native';
import { inetChecksum, udpPacket, vnetPayload } from '../helpers/packets';

const { usoMerge, gsoSplit } = addon();
const GSO_UDP_L4 = 5, NEEDS_CSUM = 1, DATA_VALID = 2;

interface D { id?: number; df?: boolean; len?: number; sport?: number; ttl?: number; tos?: number; seq?: number }

/** A datagram 10.1.0.2:sport -> 10.1.0.1:9000 with a correct checksum. */
function dgram(o: D = {}): Buffer {
  const data = Buffer.alloc(o.len ?? 100, 0x61 + ((o.seq ?? 0) % 26));
  if (data.length >= 4) data.writeUInt32BE(o.seq ?? 0, 0);
  const p = udpPacket('10.1.0.2', '10.1.0.1', o.sport ?? 5000, 9000, data);
  p.writeUInt16BE((o.id ?? 0) & 0xffff, 4);
  p[6] = o.df === false ? 0 : 0x40;
  p[8] = o.ttl ?? 64;
  p[1] = o.tos ?? 0;
  p.writeUInt16BE(0, 10);
  p.writeUInt16BE(inetChecksum(p, 0, 20), 10);
  return p;
}

/** n datagrams of one flow, ids first.., seq numbers seq0.. */
function run(n: number, o: D = {}, first = 0): Buffer[] {
  return Array.from({ length: n }, (_, k) => dgram({ ...o, id: first + k, seq: first + k }));
}

const plain = (p: Buffer) => vnetPayload(p);

/** Merges, checks each frame and returns the datagram count per frame. */
function merge(pkts: Buffer[], maxLen?: number, hdr = plain): number[] {
  const frames = usoMerge(pkts.map(hdr), maxLen);
  const back: Buffer[] = [];
  const counts: number[] = [];
  for (const f of frames) {
    if (f[1] === GSO_UDP_L4) {
      assert.equal(f[0], NEEDS_CSUM);
      assert.equal(f.readUInt16LE(2), 28, 'hdr_len');
      assert.equal(f.readUInt16LE(6), 20, 'csum_start');
      assert.equal(f.readUInt16LE(8), 6, 'csum_offset');
      const pkt = f.subarray(10);
      assert.equal(pkt.readUInt16BE(2), pkt.length, 'IPv4 total length: the whole super-packet');
      assert.equal(inetChecksum(pkt, 0, 20), 0, 'IPv4 header checksum');
      assert.equal(pkt.readUInt16BE(24), pkt.length - 20, 'UDP length: the whole super-packet');
      // Partial checksum: the pseudo-header sum, folded, not complemented.
      let s = pkt.readUInt16BE(12) + pkt.readUInt16BE(14) + pkt.readUInt16BE(16) + pkt.readUInt16BE(18) + 17 + pkt.length - 20;
      while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
      assert.equal(pkt.readUInt16BE(26), s, 'UDP checksum field');
      const r = gsoSplit(f);
      assert.ok(r.segments, `split: ${r.error}`);
      back.push(...r.segments);
      counts.push(r.segments.length);
    } else {
      back.push(f.subarray(10));
      counts.push(1);
    }
  }
  assert.equal(back.length, pkts.length);
  for (let i = 0; i < pkts.length; i++) assert.deepEqual(back[i], pkts[i], `datagram ${i} comes back byte-exact`);
  return counts;
}

test('a run of one flow becomes one super-packet that splits back byte-exact', () => {
  assert.deepEqual(merge(run(10)), [10]);
  assert.deepEqual(merge(run(10, { len: 1 })), [10]);
  assert.deepEqual(merge(run(2, { len: 1400 })), [2]);
});

test('a single datagram goes out unchanged (no GSO header)', () => {
  const p = dgram({ seq: 7 });
  const f = usoMerge([plain(p)]);
  assert.equal(f.length, 1);
  assert.deepEqual(f[0], plain(p));
});

test('a shorter datagram ends its run; a longer one starts a new run', () => {
  const pkts = [...run(5), dgram({ id: 5, seq: 5, len: 50 }), ...run(3, {}, 6)];
  assert.deepEqual(merge(pkts), [6, 3]);
  const longer = [...run(3), dgram({ id: 3, seq: 3, len: 200 }), dgram({ id: 4, seq: 4, len: 200 })];
  assert.deepEqual(merge(longer), [3, 2]);
});

test('only consecutive datagrams of the same flow merge', () => {
  const a = run(4);
  const b = dgram({ sport: 5001, id: 100, seq: 100 });
  assert.deepEqual(merge([a[0], a[1], b, a[2], a[3]]), [2, 1, 2]);
});

test('TOS, TTL and DF must match', () => {
  assert.deepEqual(merge([dgram({ id: 0 }), dgram({ id: 1, ttl: 63 })]), [1, 1]);
  assert.deepEqual(merge([dgram({ id: 0 }), dgram({ id: 1, tos: 0x10 })]), [1, 1]);
  assert.deepEqual(merge([dgram({ id: 0 }), dgram({ id: 1, df: false })]), [1, 1]);
});

test('DF clear: consecutive ids merge, others do not', () => {
  assert.deepEqual(merge(run(5, { df: false }, 65533)), [5], 'ids wrap at 65535');
  const ids = [10, 12, 13, 40, 41, 41];
  assert.deepEqual(merge(ids.map((id, k) => dgram({ df: false, id, seq: k }))), [1, 2, 2, 1]);
  // DF set: ids do not matter (the kernel renumbers; RFC 6864).
  const frames = usoMerge(ids.map((id) => plain(dgram({ id }))));
  assert.equal(frames.length, 1);
});

test('at most 64 datagrams per run; the super-packet stays within maxLen', () => {
  assert.deepEqual(merge(run(150)), [64, 64, 22]);
  // 28 + 100 * k <= 1000: 9 per run.
  assert.deepEqual(merge(run(20), 1000), [9, 9, 2]);
});

test('checksums: a bad one never merges; partial (NEEDS_CSUM) and DATA_VALID do', () => {
  const pkts = run(4);
  pkts[2] = Buffer.from(pkts[2]);
  pkts[2].writeUInt16BE(pkts[2].readUInt16BE(26) ^ 0x0101, 26);
  assert.deepEqual(merge(pkts), [2, 1, 1]);
  // UDP checksum 0: none; merging gives it one, which then verifies.
  const none = run(3).map((p) => { const q = Buffer.from(p); q.writeUInt16BE(0, 26); return q; });
  const f = usoMerge(none.map(plain));
  assert.equal(f.length, 1);
  assert.equal(f[0][1], GSO_UDP_L4);
  // Partial checksums (what a local sender's tun read carries): the field is
  // the kernel's pseudo-header sum, not verified here.
  const partial = run(3).map((p) => { const q = Buffer.from(p); q.writeUInt16BE(0xbeef, 26); return vnetPayload(q, { flags: NEEDS_CSUM, csumStart: 20, csumOffset: 6 }); });
  assert.equal(usoMerge(partial).length, 1);
  const valid = run(3).map((p) => { const q = Buffer.from(p); q.writeUInt16BE(0xbeef, 26); return vnetPayload(q, { flags: DATA_VALID }); });
  assert.equal(usoMerge(valid).length, 1);
  const odd = run(3).map((p) => vnetPayload(p, { flags: NEEDS_CSUM, csumStart: 20, csumOffset: 8 }));
  assert.equal(usoMerge(odd).length, 3, 'a partial checksum elsewhere: not merged');
});

test('fragments, IP options, non-UDP and already-GSO packets stay alone', () => {
  const mf = run(3).map((p) => { const q = Buffer.from(p); q[6] |= 0x20; q.writeUInt16BE(0, 10); q.writeUInt16BE(inetChecksum(q, 0, 20), 10); return q; });
  assert.equal(usoMerge(mf.map(plain)).length, 3);
  const gso = run(3).map((p) => vnetPayload(p, { flags: NEEDS_CSUM, gsoType: GSO_UDP_L4, gsoSize: 50, csumStart: 20, csumOffset: 6 }));
  assert.equal(usoMerge(gso).length, 3);
  const badLen = run(3).map((p) => { const q = Buffer.from(p); q.writeUInt16BE(q.readUInt16BE(24) - 1, 24); return q; });
  assert.equal(usoMerge(badLen.map(plain)).length, 3, 'UDP length != IPv4 length - 20');
  const empty = run(3, { len: 0 });
  assert.equal(usoMerge(empty.map(plain)).length, 3, 'no payload');
});

test('random streams split back byte-exact', () => {
  let seed = 12345;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  for (let round = 0; round < 50; round++) {
    const pkts: Buffer[] = [];
    let id = rnd(65536);
    const n = 1 + rnd(200);
    for (let i = 0; i < n; i++) {
      const len = rnd(4) === 0 ? rnd(300) : 120;
      pkts.push(dgram({ id: id++ & 0xffff, seq: i, len, sport: 5000 + rnd(2), df: rnd(3) !== 0 }));
    }
    merge(pkts, 1 + rnd(4) === 1 ? 600 : undefined);
  }
});

// A held one-hop peer's queue (router.cc, write_held_tun): frames of other
// types sit between the datagrams, and a run merged earlier stays as it is.
test('a held queue: plain frames and runs merged before stay in place and end a run', () => {
  const kModPacket = 0, kModVnet = 3;
  const a = run(6);
  const icmp = plain(dgram({ sport: 7, seq: 99 }));
  const bufs = [plain(a[0]), plain(a[1]), icmp, plain(a[2]), plain(a[3]), plain(a[4]), plain(a[5])];
  const frames = usoMerge(bufs, undefined, [kModVnet, kModVnet, kModPacket, kModVnet, kModVnet, kModVnet, kModVnet]);
  assert.equal(frames.length, 3, 'run, the plain frame, run');
  assert.deepEqual(frames[1], icmp, 'the plain frame unchanged, in its place');
  assert.deepEqual(frames.map((f) => (f[1] === GSO_UDP_L4 ? gsoSplit(f).segments!.length : 1)), [2, 1, 4]);
  // A run merged within a batch is already a GSO frame: it is left alone,
  // and the next datagram starts a run of its own.
  const earlier = usoMerge(run(3).map(plain));
  assert.equal(earlier.length, 1);
  const later = run(3, {}, 3).map(plain);
  const again = usoMerge([earlier[0], ...later]);
  assert.equal(again.length, 2);
  assert.deepEqual(again[0], earlier[0], 'the earlier run byte-exact');
  assert.deepEqual(gsoSplit(again[1]).segments, run(3, {}, 3), 'the later datagrams, merged, split back byte-exact');
});
