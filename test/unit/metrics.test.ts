// metrics.test.ts: the router's Prometheus metrics rendered from a stats
// snapshot (names, labels, values as an admin scrapes them), one snapshot
// per scrape, and the /metrics endpoint itself on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import client from 'prom-client';
import { registerRouterMetrics, serveMetrics } from '../../src/metrics';
import type { RouterStats } from '../../src/native';
import { peerStats, routerStats } from '../helpers/fake-addon';

const ip = (s: string) => s.split('.').reduce((n, b) => n * 256 + Number(b), 0);

const SNAPSHOT = routerStats({
  rxPackets: 10, rxBytes: 1000, txPackets: 20, txBytes: 2500, gsoSplit: 2, gsoSegments: 9, heldFrames: 6, heldWrites: 2, sndbufGrownPeers: 1, sndbufGrownBytes: 835584,
  busyPolls: 40, busyPollCaught: 30, busyPollNs: 1_500_000_000, drops: { no_peer: 3, firewall_in: 0 },
  hits: { in: [4], out: [7, 0] },
  peers: [
    peerStats({ id: 1, addr: ip('10.0.0.2'), tx: 5, rx: 6, txBytes: 500, rxBytes: 600, drops: { spoof: 2 }, offload: true, handoff: true, vnetTx: 3, gsoTx: 1, vnetRx: 4, gsoRx: 2 }),
    peerStats({ id: 9, addr: 0, rx: 1, rxBytes: 40, drops: { unbound: 1 } }),
  ],
});

function registry(stats: () => RouterStats = () => SNAPSHOT) {
  return registerRouterMetrics(new client.Registry(), {
    stats,
    ruleOrigins: () => ({ in: ['policy.rules:1'], out: ['option:1', 'policy.rules:2'] }),
    reloads: () => ({ ok: 3, error: 1 }),
  });
}

/** Sample lines (no # HELP / # TYPE) of the text format. */
async function samples(reg: client.Registry): Promise<string[]> {
  return (await reg.metrics()).split('\n').filter((l) => l && !l.startsWith('#'));
}

function assertHas(s: string[], lines: string[]): void {
  for (const line of lines) assert.ok(s.includes(line), `${line}\nin\n${s.join('\n')}`);
}

test('router totals, drops and rule hits: names, labels and values from the snapshot', async () => {
  const s = await samples(registry());
  assertHas(s, [
    'moat_tun_packets_total{direction="rx"} 10', 'moat_tun_packets_total{direction="tx"} 20',
    'moat_tun_bytes_total{direction="rx"} 1000', 'moat_tun_bytes_total{direction="tx"} 2500',
    'moat_drops_total{reason="no_peer"} 3',
    'moat_peers 2', 'moat_peers_offload 1', 'moat_peers_handoff 1',
    'moat_gso_split_total{unit="packets"} 2', 'moat_gso_split_total{unit="segments"} 9',
    'moat_held_total{unit="frames"} 6', 'moat_held_total{unit="writes"} 2',
    'moat_sndbuf_grown{unit="peers"} 1', 'moat_sndbuf_grown{unit="bytes"} 835584',
    'moat_busy_polls_total{result="all"} 40', 'moat_busy_polls_total{result="caught"} 30',
    'moat_busy_poll_seconds_total 1.5',
    'moat_rule_hits_total{chain="in",rule="policy.rules:1"} 4', 'moat_rule_hits_total{chain="out",rule="option:1"} 7',
    'moat_rule_reloads_total{result="ok"} 3', 'moat_rule_reloads_total{result="error"} 1',
  ]);
  // A counter at zero is left out (a fresh label set), as prom-client does for a counter never incremented.
  assert.ok(!s.some((l) => l.includes('reason="firewall_in"') || l.includes('rule="policy.rules:2"')), 'zero counters absent');
});

test('per-peer series are labelled by address, or unlearned-ID before the router learns it', async () => {
  const s = await samples(registry());
  assertHas(s, [
    'moat_peer_packets_total{peer="10.0.0.2",direction="tx"} 5', 'moat_peer_packets_total{peer="10.0.0.2",direction="rx"} 6',
    'moat_peer_bytes_total{peer="10.0.0.2",direction="tx"} 500', 'moat_peer_bytes_total{peer="10.0.0.2",direction="rx"} 600',
    'moat_peer_drops_total{peer="10.0.0.2",reason="spoof"} 2',
    'moat_peer_packets_total{peer="unlearned-9",direction="rx"} 1', 'moat_peer_drops_total{peer="unlearned-9",reason="unbound"} 1',
    'moat_peer_offload_frames_total{peer="10.0.0.2",direction="tx",kind="all"} 3',
    'moat_peer_offload_frames_total{peer="10.0.0.2",direction="rx",kind="gso"} 2',
  ]);
  assert.ok(!s.some((l) => l.startsWith('moat_peer_offload_frames_total{peer="unlearned-9"')), 'no offload series for a plain peer');
});

test('each scrape reads one fresh snapshot; series of a peer that left disappear', async () => {
  let calls = 0;
  let snap = SNAPSHOT;
  const reg = registry(() => { calls++; return snap; });
  await reg.metrics();
  assert.equal(calls, 1, 'one native snapshot for all metrics of a scrape');
  snap = routerStats({ rxPackets: 11 });
  const s = await samples(reg);
  assert.equal(calls, 2);
  assert.ok(s.includes('moat_tun_packets_total{direction="rx"} 11'));
  assert.ok(s.includes('moat_peers 0'));
  assert.ok(!s.some((l) => l.includes('10.0.0.2')), 'the old peer\'s series are gone');
});

function get(port: number, url: string): Promise<{ status: number; body: string; type?: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: url }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: res.headers['content-type'] }));
    }).on('error', reject);
  });
}

test('serveMetrics: /metrics is what render gives, with its content type; a failing render is a 500; 404 elsewhere; a bad address refused', async () => {
  const reg = registry();
  let fail = false;
  const render = async () => { if (fail) throw new Error('registry broke'); return (await reg.metrics()) + 'emperor_vassals 2\n'; };
  const server = await serveMetrics('127.0.0.1:0', render, reg.contentType);
  try {
    const port = (server.address() as AddressInfo).port;
    const m = await get(port, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.type ?? '', /^text\/plain/);
    assert.match(m.body, /^moat_peers 2$/m);
    assert.ok(m.body.endsWith('emperor_vassals 2\n'), 'extra text after the router\'s');
    assert.equal((await get(port, '/')).status, 404);
    fail = true;
    const bad = await get(port, '/metrics');
    assert.deepEqual([bad.status, bad.body], [500, 'registry broke']);
  } finally {
    await new Promise((r) => server.close(r));
  }
  await assert.rejects(serveMetrics('127.0.0.1', render, reg.contentType), /HOST:PORT/);
  await assert.rejects(serveMetrics('127.0.0.1:70000', render, reg.contentType), /HOST:PORT/);
});
