// metrics.ts: Prometheus metrics. Values are read from the router's native
// counters when scraped (never per packet): each collect() copies a snapshot.
import http from 'node:http';
import client from 'prom-client';
import type { RouterStats } from './native';
import { intToIpv4 } from './addr';
import { logDropped, Logger } from './log';

/** Anything that renders Prometheus text: a prom-client Registry, or a proxy
 *  for another process's registries. Its metric names must differ from the router's. */
export interface MetricsProvider {
  metrics(): Promise<string>;
}

/** The providers' text, one after the other; a failing provider adds nothing (logged). */
export async function renderMetrics(providers: Iterable<MetricsProvider>, log: Logger): Promise<string> {
  const parts = await Promise.all([...providers].map((p) => p.metrics().catch((err: Error) => {
    log.warn({ err: err.message }, 'metrics of a component failed');
    return '';
  })));
  return parts.join('');
}

export interface MetricsSource {
  stats(): RouterStats;
  ruleOrigins(): { in: string[]; out: string[] };
  reloads(): { ok: number; error: number };
}

/** Sets a counter to an absolute value taken from a native snapshot. */
function setCounter(c: client.Counter<string>, labels: client.LabelValues<string>, v: number): void {
  if (v > 0) c.inc(labels, v);
}

/** Registers the router's metrics in reg (other components add theirs with RouterApi.addMetrics). */
export function registerRouterMetrics(reg: client.Registry, src: MetricsSource): client.Registry {
  let snap: RouterStats | undefined;
  // One snapshot per scrape, shared by every metric's collect().
  const snapshot = (): RouterStats => (snap ??= src.stats());
  const peerLabel = (addr: number, id: number) => (addr ? intToIpv4(addr) : `unlearned-${id}`);

  new client.Counter({
    name: 'moat_tun_packets_total', help: 'Packets read from (rx) and written to (tx) the router tun device', labelNames: ['direction'], registers: [reg],
    collect() { snap = undefined; const s = snapshot(); this.reset(); setCounter(this, { direction: 'rx' }, s.rxPackets); setCounter(this, { direction: 'tx' }, s.txPackets); },
  });
  new client.Counter({
    name: 'moat_tun_bytes_total', help: 'Bytes read from (rx) and written to (tx) the router tun device', labelNames: ['direction'], registers: [reg],
    collect() { const s = snapshot(); this.reset(); setCounter(this, { direction: 'rx' }, s.rxBytes); setCounter(this, { direction: 'tx' }, s.txBytes); },
  });
  new client.Counter({
    name: 'moat_drops_total', help: 'Packets dropped by the router, by reason', labelNames: ['reason'], registers: [reg],
    collect() { const s = snapshot(); this.reset(); for (const [r, v] of Object.entries(s.drops)) setCounter(this, { reason: r }, v); },
  });
  new client.Gauge({
    name: 'moat_peers', help: 'Connected peers (vassal devices)', registers: [reg],
    collect() { this.set(snapshot().peers.length); },
  });
  new client.Counter({
    name: 'moat_peer_packets_total', help: 'Packets per peer: tx = router to peer, rx = peer to router', labelNames: ['peer', 'direction'], registers: [reg],
    collect() {
      this.reset();
      for (const p of snapshot().peers) {
        const peer = peerLabel(p.addr, p.id);
        setCounter(this, { peer, direction: 'tx' }, p.tx);
        setCounter(this, { peer, direction: 'rx' }, p.rx);
      }
    },
  });
  new client.Counter({
    name: 'moat_peer_bytes_total', help: 'Bytes per peer: tx = router to peer, rx = peer to router', labelNames: ['peer', 'direction'], registers: [reg],
    collect() {
      this.reset();
      for (const p of snapshot().peers) {
        const peer = peerLabel(p.addr, p.id);
        setCounter(this, { peer, direction: 'tx' }, p.txBytes);
        setCounter(this, { peer, direction: 'rx' }, p.rxBytes);
      }
    },
  });
  new client.Counter({
    name: 'moat_peer_drops_total', help: 'Packets dropped per peer, by reason', labelNames: ['peer', 'reason'], registers: [reg],
    collect() {
      this.reset();
      for (const p of snapshot().peers) {
        for (const [r, v] of Object.entries(p.drops)) setCounter(this, { peer: peerLabel(p.addr, p.id), reason: r }, v);
      }
    },
  });
  new client.Gauge({
    name: 'moat_peers_offload', help: 'Connected peers with virtio-net offloads negotiated (docs/offload.md)', registers: [reg],
    collect() { this.set(snapshot().peers.filter((p) => p.offload).length); },
  });
  new client.Gauge({
    name: 'moat_peers_handoff', help: 'Connected peers whose tun the router holds: one hop (docs/one-hop.md)', registers: [reg],
    collect() { this.set(snapshot().peers.filter((p) => p.handoff).length); },
  });
  new client.Counter({
    name: 'moat_gso_split_total', help: 'Offload super-packets split for plain peers (packets), and the segments made (segments)', labelNames: ['unit'], registers: [reg],
    collect() { const s = snapshot(); this.reset(); setCounter(this, { unit: 'packets' }, s.gsoSplit); setCounter(this, { unit: 'segments' }, s.gsoSegments); },
  });
  new client.Counter({
    name: 'moat_uso_coalesced_total', help: 'Runs of same-flow UDP datagrams merged into one super-packet for offload peers (frames), and the datagrams in them (datagrams)', labelNames: ['unit'], registers: [reg],
    collect() { const s = snapshot(); this.reset(); setCounter(this, { unit: 'frames' }, s.usoTx); setCounter(this, { unit: 'datagrams' }, s.usoSegments); },
  });
  new client.Counter({
    name: 'moat_held_total', help: 'Frames held to share one write with later ones while the tun had a backlog (frames), and the writes that carried them (writes); tuntap-router-hold', labelNames: ['unit'], registers: [reg],
    collect() { const s = snapshot(); this.reset(); setCounter(this, { unit: 'frames' }, s.heldFrames); setCounter(this, { unit: 'writes' }, s.heldWrites); },
  });
  new client.Gauge({
    name: 'moat_sndbuf_grown', help: 'Peer send buffers grown because the peer streams (peers) and what the growths add up to (bytes, within tuntap-router-sndbuf-budget)', labelNames: ['unit'], registers: [reg],
    collect() { const s = snapshot(); this.reset(); this.set({ unit: 'peers' }, s.sndbufGrownPeers); this.set({ unit: 'bytes' }, s.sndbufGrownBytes); },
  });
  new client.Counter({
    name: 'moat_busy_polls_total', help: 'Polls of the router loop after moving a packet, before it sleeps (all), and those an event ended (caught); tuntap-router-busy-poll', labelNames: ['result'], registers: [reg],
    collect() { const s = snapshot(); this.reset(); setCounter(this, { result: 'all' }, s.busyPolls); setCounter(this, { result: 'caught' }, s.busyPollCaught); },
  });
  new client.Counter({
    name: 'moat_busy_poll_seconds_total', help: 'Time the router loop spent polling after traffic (tuntap-router-busy-poll; at most 5% of a CPU)', registers: [reg],
    collect() { this.reset(); this.inc(snapshot().busyPollNs / 1e9); },
  });
  new client.Counter({
    name: 'moat_peer_offload_frames_total', help: 'Offload (virtio-net header) frames per peer: tx = router to peer, rx = peer to router; gso = of them super-packets', labelNames: ['peer', 'direction', 'kind'], registers: [reg],
    collect() {
      this.reset();
      for (const p of snapshot().peers) {
        if (!p.offload) continue;
        const peer = peerLabel(p.addr, p.id);
        setCounter(this, { peer, direction: 'tx', kind: 'all' }, p.vnetTx);
        setCounter(this, { peer, direction: 'tx', kind: 'gso' }, p.gsoTx);
        setCounter(this, { peer, direction: 'rx', kind: 'all' }, p.vnetRx);
        setCounter(this, { peer, direction: 'rx', kind: 'gso' }, p.gsoRx);
      }
    },
  });
  new client.Counter({
    name: 'moat_rule_hits_total', help: 'Packets judged by each firewall rule (rule = file:line or option:N)', labelNames: ['chain', 'rule'], registers: [reg],
    collect() {
      const s = snapshot();
      const o = src.ruleOrigins();
      this.reset();
      for (const chain of ['in', 'out'] as const) {
        s.hits[chain].forEach((v, i) => setCounter(this, { chain, rule: o[chain][i] ?? String(i) }, v));
      }
    },
  });
  new client.Counter({
    name: 'moat_rule_reloads_total', help: 'Rule set reloads, by result', labelNames: ['result'], registers: [reg],
    collect() { const r = src.reloads(); this.reset(); setCounter(this, { result: 'ok' }, r.ok); setCounter(this, { result: 'error' }, r.error); },
  });
  new client.Counter({
    name: 'moat_log_dropped_total', help: 'Log lines that could not be written (disk full, log pipe closed) and were dropped', registers: [reg],
    collect() { this.reset(); setCounter(this, {}, logDropped()); },
  });
  return reg;
}

/** Serves render()'s text on host:port/metrics; resolves once listening. */
export function serveMetrics(hostPort: string, render: () => Promise<string>, contentType: string): Promise<http.Server> {
  const i = hostPort.lastIndexOf(':');
  const host = hostPort.slice(0, i) || '127.0.0.1';
  const port = Number(hostPort.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    return Promise.reject(new Error(`metrics address must be HOST:PORT, got ${JSON.stringify(hostPort)}`));
  }
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    render().then(
      (body) => res.writeHead(200, { 'Content-Type': contentType }).end(body),
      (err: Error) => res.writeHead(500).end(String(err.message)),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host.replace(/^\[|\]$/g, ''), () => resolve(server));
  });
}
