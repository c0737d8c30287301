// router.ts: the Router: one native data path (tun <-> vassal sockets) plus
// what TypeScript owns around it: rules (load, compile, hot reload), events
// and logs, the stats socket and metrics, with the sections and metrics other
// components add through RouterApi (router-api.ts).
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { Server } from 'node:http';
import { addon, LEARN_ANYWHERE, LearnNetwork, NativeRouter, PeerBinding, PeerLimit, RouterEvent, RouterStats } from '../native';
import type { RouterConfig } from '../config/types';
import type { RuleSet, CompiledRule } from '../rules/types';
import { loadRuleSet } from '../rules/load';
import { carryMap } from '../rules/compile';
import { ipv4ToInt, intToIpv4, uwsgiAddr32 } from '../addr';
import { logger, Logger } from '../log';
import client from 'prom-client';
import { registerRouterMetrics, renderMetrics, serveMetrics } from '../metrics';
import { StatsServer } from './stats-server';
import { MetricsProvider, RouterApi, sectionValue } from './router-api';
import { PeerRuleBook, VassalRules } from './peer-rules';

const VERSION = '0.1.0';

export class Router extends EventEmitter implements RouterApi {
  private native?: NativeRouter;
  private rules: RuleSet = { in: [], out: [], warnings: [] };
  private statsServer?: StatsServer;
  private metricsServer?: Server;
  private watchers: fs.FSWatcher[] = [];
  private reloadTimer?: NodeJS.Timeout;
  private socketTimer?: NodeJS.Timeout;
  private socketId?: { dev: number; ino: number };
  private statsTimer?: NodeJS.Timeout;
  private readonly metricsProviders = new Set<MetricsProvider>();
  private failed = false;
  private reloadCounts = { ok: 0, error: 0 };
  private readonly peerAddr = new Map<number, number>();
  private readonly ownerBindings = new Map<string, PeerBinding[]>();
  private readonly ownerLearn = new Map<string, LearnNetwork | null>();
  private readonly ownerLimits = new Map<string, PeerLimit[]>();
  private configLimits: PeerLimit[];
  private readonly peerRules = new PeerRuleBook();
  private readonly statsSections = new Map<string, () => unknown>();
  readonly log: Logger;
  /** Directories start() made for its sockets (handed over on a privilege drop). */
  readonly createdDirs: string[] = [];
  /** The router's own Prometheus registry (others' metrics: addMetrics). */
  readonly registry: client.Registry;

  constructor(readonly config: RouterConfig, log?: Logger) {
    super();
    this.configLimits = config.peerLimits ?? [];
    this.log = log ?? logger().child({ component: 'router', device: config.device });
    this.registry = registerRouterMetrics(new client.Registry(), {
      stats: () => this.stats(),
      ruleOrigins: () => ({ in: this.rules.in.map((r) => r.origin), out: this.rules.out.map((r) => r.origin) }),
      reloads: () => this.reloadCounts,
    });
    this.peerRules.register(this.registry, () => this.native?.stats());
  }

  /** Loads the rules (an error stops the start), opens the device and socket,
   *  starts the data path, then the stats and metrics servers. */
  async start(): Promise<void> {
    const c = this.config;
    for (const w of c.warnings) this.log.warn(w);
    this.rules = this.loadRules();
    this.failed = false;
    // /run/moat may not exist yet on a fresh host.
    for (const file of [c.socket, ...(c.stats && !c.stats.includes(':') ? [c.stats] : [])]) {
      const made = fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      if (made) this.createdDirs.push(path.dirname(path.resolve(file)));
    }
    const native = new (addon().Router)({
      tunName: c.device,
      netns: c.netns ?? '',
      socketPath: c.socket,
      socketMode: c.socketMode,
      socketUid: c.socketOwner?.uid ?? -1,
      socketGid: c.socketOwner?.gid ?? -1,
      maxFrame: c.maxFrame,
      queueBytes: c.queueBytes,
      offload: c.offload,
      handoff: c.handoff,
      holdUs: c.holdMs * 1000,
      tunQueues: c.tunQueues,
      busyPollUs: c.busyPollUs,
      sndbuf: c.sndbuf,
      sndbufBusy: c.sndbufBusy,
      sndbufBudget: c.sndbufBudget,
      acceptRuleBlocks: false,
      bindings: this.allBindings(),
      learn: this.learnNetwork(),
    });
    native.setRules(this.rules.in.map((r) => r.native), this.rules.out.map((r) => r.native), undefined, undefined, c.conntrack);
    native.setLimits(this.allLimits());
    const peerSets = this.peerRules.next();
    if (peerSets.length) native.setPeerRules(peerSets);   // a new data path has none
    native.start((events) => this.onEvents(events));
    this.native = native;
    this.watchSocket();
    this.log.info({ socket: c.socket, rulesIn: this.rules.in.length, rulesOut: this.rules.out.length }, 'router started');
    try {
      if (c.stats) {
        this.statsServer = new StatsServer(c.stats, () => this.statsDocument());
        await this.statsServer.start();
        this.watchStatsSocket();
        this.log.info({ stats: c.stats }, 'stats socket listening');
      }
      if (c.metrics) {
        this.metricsServer = await serveMetrics(c.metrics, () => this.metricsText(), this.registry.contentType);
        this.log.info({ metrics: c.metrics }, 'metrics listening');
      }
      this.watchRuleFiles();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** The servers stop, then the data path; the socket file is removed. Safe to call twice. */
  async stop(): Promise<void> {
    clearTimeout(this.reloadTimer);
    clearInterval(this.socketTimer);
    clearInterval(this.statsTimer);
    for (const w of this.watchers.splice(0)) w.close();
    await this.statsServer?.stop();
    this.statsServer = undefined;
    const m = this.metricsServer;
    this.metricsServer = undefined;
    if (m) await new Promise<void>((r) => m.close(() => r()));
    if (this.native) {
      this.native.stop();
      this.native = undefined;
      this.log.info('router stopped');
    }
  }

  get running(): boolean {
    return this.native !== undefined;
  }

  /** Recompiles every rule source and swaps both chains at once. A bad rule
   *  keeps the old rules running; the error names file:line:column. */
  reloadRules(why = 'reload'): boolean {
    if (!this.native) return false;
    let next: RuleSet;
    try {
      next = this.loadRules();
    } catch (err) {
      this.reloadCounts.error++;
      this.log.error({ why, err: (err as Error).message }, 'rules not reloaded, the old rules stay in force');
      this.emit('rules-error', err);
      return false;
    }
    this.native.setRules(
      next.in.map((r) => r.native), next.out.map((r) => r.native),
      carryMap(this.rules.in, next.in), carryMap(this.rules.out, next.out), this.config.conntrack,
    );
    this.rules = next;
    this.reloadCounts.ok++;
    this.log.info({ why, rulesIn: next.in.length, rulesOut: next.out.length }, 'rules reloaded');
    this.emit('rules-reloaded', next);
    return true;
  }

  /** A component's own peer bindings (the emperor's: each vassal's address,
   *  bound to its runtime or reserved for it), kept under owner and applied
   *  with the config's tuntap-router-bind ones; learn (the emperor's vassal
   *  network; null: nothing learnable) restricts where peers may learn an
   *  address, undefined leaves it to the others (no owner: anywhere). */
  setBindings(owner: string, list: PeerBinding[], learn?: LearnNetwork | null): void {
    if (list.length) this.ownerBindings.set(owner, list);
    else this.ownerBindings.delete(owner);
    if (learn !== undefined) this.ownerLearn.set(owner, learn);
    else this.ownerLearn.delete(owner);
    this.native?.setBindings(this.allBindings(), this.learnNetwork());
  }

  private allBindings(): PeerBinding[] {
    const out: PeerBinding[] = this.config.bindings.map((b) => ({ uid: b.uid, pid: -1, addr: ipv4ToInt(b.addr) }));
    for (const list of this.ownerBindings.values()) out.push(...list);
    return out;
  }

  /** A component's traffic limits by peer address (the emperor's: each
   *  vassal's, and its default as address 0), over the config's
   *  tuntap-router-peer-limit lines for the same address. Applied between two
   *  batches: connected peers keep their connections, their shapers take the
   *  new rates. */
  setLimits(owner: string, list: PeerLimit[]): void {
    if (list.length) this.ownerLimits.set(owner, list);
    else this.ownerLimits.delete(owner);
    this.native?.setLimits(this.allLimits());
  }

  /** A component's vassals' own rules (the emperor's: each vassal file's
   *  vassal-firewall-*), by vassal address: a packet toward or from that
   *  address passes only if the router's rules and the vassal's both accept
   *  it. Swapped in between two batches; connections stay, and an unchanged
   *  rule of the same vassal keeps its hit counter. */
  setPeerRules(owner: string, list: VassalRules[]): void {
    this.peerRules.set(owner, list);
    if (this.native) this.native.setPeerRules(this.peerRules.next());
  }

  /** The config's tuntap-router-peer-limit lines read again (a reload). */
  reloadLimits(list: PeerLimit[], why: string): void {
    const before = JSON.stringify(this.configLimits);
    this.configLimits = list;
    this.native?.setLimits(this.allLimits());
    if (JSON.stringify(list) !== before) this.log.info({ why, limits: list.length }, 'peer limits reloaded (connected peers keep their connections)');
  }

  private allLimits(): PeerLimit[] {
    const byAddr = new Map<number, PeerLimit>();
    for (const l of this.configLimits) byAddr.set(l.addr, l);
    for (const list of this.ownerLimits.values()) for (const l of list) byAddr.set(l.addr, l);
    return [...byAddr.values()];
  }

  /** The one owner's learnable network (the emperor's), or anywhere. */
  private learnNetwork(): LearnNetwork | null {
    for (const n of this.ownerLearn.values()) return n;
    return LEARN_ANYWHERE;
  }

  /** A component's section of the stats document (statsDocument()[key]);
   *  the value may be a promise (the emperor's, asked over IPC). */
  addStatsSection(key: string, section: () => unknown): void {
    this.statsSections.set(key, section);
  }

  removeStatsSection(key: string): void {
    this.statsSections.delete(key);
  }

  /** Metrics appended to every scrape of `metrics` (a component's registry). */
  addMetrics(provider: MetricsProvider): void {
    this.metricsProviders.add(provider);
  }

  removeMetrics(provider: MetricsProvider): void {
    this.metricsProviders.delete(provider);
  }

  /** What `metrics` serves: the router's registry, then every added provider's. */
  async metricsText(): Promise<string> {
    return (await this.registry.metrics()) + (await renderMetrics(this.metricsProviders, this.log));
  }

  stats(): RouterStats {
    if (!this.native) throw new Error('router is not running');
    return this.native.stats();
  }

  ruleSet(): RuleSet {
    return this.rules;
  }

  /** uWSGI's stats document (same keys), with moat's additions under "moat"
   *  and the added sections (a failing one reads {error}). */
  async statsDocument(): Promise<Record<string, unknown>> {
    const s = this.stats();
    const sections = await Promise.all([...this.statsSections].map(async ([key, section]) => [key, await sectionValue(section)] as const));
    const hits = (rules: CompiledRule[], counts: number[]) => rules.map((r, i) => ({ rule: r.origin, text: r.text, hits: counts[i] ?? 0 }));
    return {
      version: VERSION,
      pid: process.pid,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      cwd: process.cwd(),
      peers: s.peers.map((p) => ({
        addr: p.addr ? intToIpv4(p.addr) : '',
        addr_32: uwsgiAddr32(p.addr),
        uid: p.uid, gid: p.gid, pid: p.pid,
        // uWSGI counts bytes on the socket (headers included) as tx/rx.
        tx: p.txBytes, rx: p.rxBytes, dropped: p.dropped,
        tx_packets: p.tx, rx_packets: p.rx, drops: p.drops, queued: p.queued,
        offload: p.offload, handoff: p.handoff, vnet_rx: p.vnetRx, gso_rx: p.gsoRx, vnet_tx: p.vnetTx, gso_tx: p.gsoTx, uso_tx: p.usoTx, sndbuf_grown: p.sndbufGrown,
        id: p.id, shaped_in: p.shapedIn, shaped_out: p.shapedOut, shape_queued_in: p.shapeQueuedIn, shape_queued_out: p.shapeQueuedOut,
        shape_peak_in: p.shapePeakIn, shape_peak_out: p.shapePeakOut,
      })),
      moat: {
        device: this.config.device,
        socket: this.config.socket,
        tun: { rx_packets: s.rxPackets, rx_bytes: s.rxBytes, tx_packets: s.txPackets, tx_bytes: s.txBytes, read_calls: s.tunReadCalls, queues: s.tunQueues, steered_by: s.tunQueues > 1 ? (s.tunSteered ? 'destination' : 'flow hash') : 'one queue' },
        offload: { enabled: this.config.offload ?? false, gso_split: s.gsoSplit, gso_segments: s.gsoSegments, uso_tx: s.usoTx, uso_segments: s.usoSegments },
        hold: { ms: this.config.holdMs, held_frames: s.heldFrames, held_writes: s.heldWrites },
        sndbuf: { busy: this.config.sndbufBusy, budget: this.config.sndbufBudget, grown_peers: s.sndbufGrownPeers, grown_bytes: s.sndbufGrownBytes, grows: s.sndbufGrows },
        busy_poll: { us: this.config.busyPollUs, polls: s.busyPolls, caught: s.busyPollCaught, ms: Math.round(s.busyPollNs / 1e3) / 1e3 },
        drops: s.drops,
        rules: { in: hits(this.rules.in, s.hits.in), out: hits(this.rules.out, s.hits.out) },
        vassal_rules: this.peerRules.rows(s),
        reloads: this.reloadCounts,
      },
      ...Object.fromEntries(sections),
    };
  }

  private loadRules(): RuleSet {
    const set = loadRuleSet(this.config.rules, this.config.ruleFiles);
    for (const w of set.warnings) this.log.warn(w);
    return set;
  }

  private watchRuleFiles(): void {
    const dirs = new Map<string, Set<string> | null>();  // dir -> names to watch (null: all *.rules)
    for (const f of this.config.ruleFiles) {
      const abs = path.resolve(f);
      if (fs.statSync(abs).isDirectory()) dirs.set(abs, null);
      else {
        const d = path.dirname(abs);
        const names = dirs.get(d);
        if (names !== null) dirs.set(d, (names ?? new Set()).add(path.basename(abs)));
      }
    }
    for (const [dir, names] of dirs) {
      // Watch directories, not files: editors replace a file by renaming over it.
      const w = fs.watch(dir, (_ev, name) => {
        if (!name) return;
        const n = name.toString();
        if (names ? !names.has(n) : !n.endsWith('.rules')) return;
        clearTimeout(this.reloadTimer);
        this.reloadTimer = setTimeout(() => this.reloadRules(`${path.join(dir, n)} changed`), 200);
      });
      w.on('error', (err) => this.log.warn({ dir, err: String(err) }, 'cannot watch rule directory'));
      this.watchers.push(w);
    }
  }

  /** The socket file is checked every second: removed or replaced (its
   *  directory deleted, a stray rm), new peers could not connect. The
   *  directory is made again and the data path binds a new socket there
   *  (connected peers stay); if that fails the router cannot serve: fatal. */
  private watchSocket(): void {
    const sock = this.config.socket;
    const id = () => {
      const st = fs.statSync(sock);
      this.socketId = { dev: st.dev, ino: st.ino };
    };
    id();
    this.socketTimer = setInterval(() => {
      if (!this.native || this.failed) return;
      let st: fs.Stats | undefined;
      try { st = fs.lstatSync(sock); } catch { /* removed */ }
      if (st && st.dev === this.socketId?.dev && st.ino === this.socketId?.ino) return;
      const what = st ? 'replaced' : 'removed';
      this.log.error({ socket: sock }, `socket file ${sock} was ${what}: new peers cannot connect; binding it again`);
      try {
        fs.mkdirSync(path.dirname(path.resolve(sock)), { recursive: true });
        this.native.relisten();
        id();
        this.log.warn({ socket: sock }, 'socket bound again: new peers can connect');
      } catch (err) {
        this.fail(`socket file ${sock} was ${what} and could not be bound again: ${(err as Error).message}`);
      }
    }, 1000);
    this.socketTimer.unref();
  }

  /** The stats socket file (a unix path) is checked every second, as the main
   *  socket is: removed, it is bound again (an error, then a warning once it
   *  is back); if that fails it is retried each second (the data path does
   *  not need it: not fatal). A file put in its place is left alone. */
  private watchStatsSocket(): void {
    const server = this.statsServer;
    const file = server?.unixPath;
    if (!server || !file) return;
    let id: { dev: number; ino: number } | undefined;
    const stat = () => { try { return fs.lstatSync(file); } catch { return undefined; } };
    const st0 = stat();
    if (st0) id = { dev: st0.dev, ino: st0.ino };
    let down: 'removed' | 'replaced' | undefined;
    let busy = false;
    this.statsTimer = setInterval(() => {
      if (busy || this.statsServer !== server) return;
      const st = stat();
      if (st && st.dev === id?.dev && st.ino === id?.ino) return;
      if (st && down !== 'removed') {
        if (down !== 'replaced') this.log.error({ stats: file }, `stats socket file ${file} was replaced by another file: left alone, stats readers cannot reach this router`);
        down = 'replaced';
        return;
      }
      if (!down || down === 'replaced') this.log.error({ stats: file }, `stats socket file ${file} was removed: stats readers cannot connect; binding it again`);
      busy = true;
      const first = down !== 'removed';
      down = 'removed';
      server.rebind().then(() => {
        const n = stat();
        if (n) id = { dev: n.dev, ino: n.ino };
        down = undefined;
        this.log.warn({ stats: file }, 'stats socket bound again');
      }, (err: Error) => {
        if (first) this.log.error({ stats: file, err: err.message }, `stats socket ${file} could not be bound again (retrying each second): ${err.message}`);
      }).finally(() => { busy = false; });
    }, 1000);
    this.statsTimer.unref();
  }

  /** The router cannot go on: logged, and 'fatal' emitted (moat stops and
   *  exits non-zero). Once. */
  private fail(reason: string): void {
    if (this.failed) return;
    this.failed = true;
    clearInterval(this.socketTimer);
    this.log.fatal({ reason }, `router failed: ${reason}`);
    this.emit('fatal', reason);
  }

  private onEvents(events: RouterEvent[]): void {
    for (const e of events) {
      switch (e.type) {
        case 'peer_up':
          this.log.info({ peer: e.id, uid: e.uid, gid: e.gid, pid: e.pid }, 'peer connected');
          this.emit('peer-up', e);
          break;
        case 'peer_addr':
          this.peerAddr.set(e.id, e.addr);
          this.log.info({ peer: e.id, addr: intToIpv4(e.addr) }, 'peer address learned');
          this.emit('peer-address', { ...e, address: intToIpv4(e.addr) });
          break;
        case 'peer_down':
          this.peerAddr.delete(e.id);
          this.log.info({ peer: e.id, addr: e.addr ? intToIpv4(e.addr) : undefined, reason: e.reason }, 'peer disconnected');
          this.emit('peer-down', e);  // with e.stats: the peer's last counters (accounting)
          break;
        case 'refused':
          this.log.warn({ peer: e.id, reason: e.reason, claimed: intToIpv4(e.addr), count: e.count }, 'packets refused');
          this.emit('refused', { ...e, address: intToIpv4(e.addr) });
          break;
        case 'protocol_error':
          this.log.warn({ peer: e.id, reason: e.reason, detail: e.message }, 'protocol error, peer closed');
          this.emit('protocol-error', e);
          break;
        case 'error':
          this.log.error({ err: e.message }, 'data path error');
          this.emit('data-path-error', e);
          break;
        case 'fatal':
          this.fail(e.message);
          break;
        case 'notice':
          this.log.info(e.message);
          break;
      }
    }
  }
}
