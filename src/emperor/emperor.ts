// emperor.ts: the vassal directory watcher and supervisor. One Emperor per
// moat process watches `emperor = DIR` (fs.watch, debounced, plus a rescan
// every emperor-freq seconds as a safety net): a new vassal file is deployed,
// a changed one (content hash) reloaded (stop, then start), a removed one
// stopped. A bad file is reported (file:line, reason) and touches no other
// vassal; a file that turns bad keeps its running vassal.
//
// Addresses: a vassal's address is its file's tuntap-device-address, or the
// one its first packet carries, learned by the router only from the vassal
// network (vassal-network.ts) and never an address a vassal file names. The
// emperor binds it to the vassal's runtime, named by pid and start time
// (runtime-start.ts: a reused pid number does not match), so that vassal can
// use no other address and no one else can use it. The router keeps a
// vassal's address reserved for it from the moment its peer takes it,
// through disconnects and restarts, until the vassal is removed or its file
// names another address (a new vassal key then).
//
// Each vassal gets a host directory, vassals-dir-root/NAME, created before
// its first start and removed when it stops for good, and a cgroup of its
// own under the emperor's (docs/cgroups.md): its runtime joins it before
// anything of the vassal runs, its limits come from the file (or the
// emperor's defaults), and stop kills it whole. A file whose name is not a
// safe vassal name is reported, not deployed.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import client from 'prom-client';
import { formatOf, loadFile, parseConfig } from '../config/load';
import { ConfigError, type OptionList } from '../config/types';
import { formatNetwork, ipv4ToInt, intToIpv4 } from '../addr';
import { logger, Logger } from '../log';
import type { LearnNetwork, PeerBinding, PeerLimit, PeerStats } from '../native';
import { describeTraffic, hasTrafficLimits, peerLimit, TrafficLimits } from '../config/traffic-limits';
import { TrafficAccounting } from './traffic-accounting';
import type { RouterApi } from '../router/router-api';
import type { Component } from '../lifecycle/component';
import { unsafeNameReason, VASSAL_DIR_MOUNTPOINT, vassalDirName, vassalName, vassalSpec, VassalSpec } from '../vassal/spec';
import { EmperorCgroup, EMPEROR_OOM_SCORE_ADJ, setOomScoreAdj, VassalCgroup } from '../vassal/cgroup';
import type { CgroupStats } from '../vassal/cgroup';
import { describeLimits } from '../vassal/cgroup-limits';
import { registerVassalMetrics } from './vassal-metrics';
import { removeVassalDir } from '../vassal/remove-dir';
import { DEFAULT_SUPERVISOR, SupervisorOptions, Vassal, VassalState } from '../vassal/vassal';
import { emperorConfig, type EmperorConfig } from './config';
import { Clock, CronMetrics, CronScheduler, parseJobExit } from '../plugins/cron';
import { runtimeStartTime } from './runtime-start';
import { deviceNetwork } from './vassal-network';
import type { VassalRules } from '../router/peer-rules';
import { ruleFilesDigest, vassalRulePaths } from '../rules/vassal-rules';

interface Entry {
  name: string;
  file: string;
  hash: string;                // of the file's text and of its rule files' (vassal-firewall-file)
  rulePaths?: string[];        // vassal-firewall-file's paths, as the file last named them
  spec?: VassalSpec;
  vassal?: Vassal;
  cron?: CronScheduler;
  error?: string;              // the file's current problem, if any
  learned?: string;            // address learned from the vassal's first packet
  hostDir?: string;
  cgroup?: VassalCgroup;
}

export interface VassalStatus {
  name: string;
  file: string;
  state: VassalState | 'invalid';
  pid: number | null;
  restarts: number;
  address: string | null;
  addressFrom: 'file' | 'first packet' | null;
  lastExit: string | null;
  error: string | null;
  traffic: { tx_packets: number; rx_packets: number; tx_bytes: number; rx_bytes: number; dropped: number } | null;
  limits: string | null;          // memory, pids, cpu limits of its cgroup
  trafficLimits: TrafficLimits | null;   // its traffic limits in the router (vassal-rate-out, ... over the emperor's defaults)
  /** Its traffic by name since accounting began (kept across reconnects,
   *  restarts; docs/accounting.md): IPv4 bytes and packets, in = toward it;
   *  drops by reason; current rates (bits and packets per second). */
  accounting: {
    bytes_in: number; bytes_out: number; packets_in: number; packets_out: number; drops: Record<string, number>;
    rate_in_bps: number; rate_out_bps: number; rate_in_pps: number; rate_out_pps: number;
  } | null;
  cgroup: CgroupStats | null;     // usage: memory, pids, cpu seconds, OOM kills
  outputDropped: { lines: number; bytes: number } | null;
}

export interface EmperorOptions {
  /** The router its vassals connect to (in this process, or the handle on its
   *  own): vassal addresses are bound in it, the vassals appear in its stats
   *  document and the emperor's metrics on its `metrics`. */
  router?: RouterApi;
  supervisor?: Partial<SupervisorOptions>;
  debounceMs?: number;
  log?: Logger;
  cronClock?: Clock;           // the clock cron schedules by (tests replace it)
  /** The emperor's options read again from their files (SIGHUP: reload()). */
  reread?: () => OptionList;
  /** In a fleet (src/fleet): the name a vassal file goes by in messages (its
   *  etcd key; such a file is read without includes), and the address a vassal
   *  learned on another host, bound again here before its first packet. */
  fleet?: { describe: (file: string) => string; knownAddress: (name: string) => string | undefined };
}

export class Emperor extends EventEmitter implements Component {
  readonly name = 'emperor';
  readonly log: Logger;
  /** The emperor's metrics (cron), served on the router's `metrics`. */
  readonly registry = new client.Registry();
  private readonly entries = new Map<string, Entry>();   // by name
  private readonly supervisor: SupervisorOptions;
  private readonly router?: RouterApi;
  private watcher?: fs.FSWatcher;
  private rescanTimer?: NodeJS.Timeout;
  private debounceTimer?: NodeJS.Timeout;
  private busy: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly created: string[] = [];   // directories the emperor made (removed at stop if empty)
  private readonly refusedNames = new Set<string>();   // unsafe file names, reported once each
  private readonly peerRuntime = new Map<number, { pid: number; start: number }>();   // by peer id
  private readonly onPeerUp = (e: { id: number; pid: number; start: number }) => this.peerUp(e);
  private readonly onPeerDown = (e: { id: number; stats?: PeerStats }) => {
    this.accounting?.peerDown(e);
    this.peerRuntime.delete(e.id);
    this.peerNames.delete(e.id);
  };
  private readonly peerNames = new Map<number, string>();   // peer id -> vassal name, once known
  private accounting?: TrafficAccounting;
  private readonly onPeerAddress = (e: { id: number; address: string }) => this.learnAddress(e.id, e.address);
  private cgroups?: EmperorCgroup;

  constructor(readonly config: EmperorConfig, opts: EmperorOptions = {}) {
    super();
    this.log = opts.log ?? logger().child({ component: 'emperor', dir: config.dir });
    this.supervisor = { ...DEFAULT_SUPERVISOR, ...opts.supervisor };
    this.router = opts.router;
    this.debounceMs = opts.debounceMs ?? 200;
    this.cronClock = opts.cronClock;
    this.reread = opts.reread;
    this.fleet = opts.fleet;
    // A file that failed to deploy still reserves the address it names.
    this.on('scanned', () => this.pushBindings());
  }
  private readonly cronClock?: Clock;
  private readonly reread?: () => OptionList;
  private readonly fleet?: EmperorOptions['fleet'];
  private readonly debounceMs: number;

  /** A vassal file's options: in a fleet, named by their etcd key. */
  private readFile(file: string): OptionList {
    if (!this.fleet) return loadFile(file);
    const format = formatOf(file);
    if (!format) throw new ConfigError(`${this.fleet.describe(file)}: unknown config format`);
    return parseConfig(fs.readFileSync(file, 'utf8'), format, this.fleet.describe(file));
  }
  private shown(file: string): string { return this.fleet ? this.fleet.describe(file) : file; }

  /** Starts watching and deploys what the directory holds. */
  async start(): Promise<void> {
    const router = this.router;
    if (!fs.statSync(this.config.dir, { throwIfNoEntry: false })?.isDirectory()) {
      throw new Error(`emperor: ${this.config.dir} is not a directory`);
    }
    this.makeDir(this.config.vassalsDirRoot);
    // A vassal without pivot-root gets its directory bound over the host's
    // mountpoint inside its own mount namespace: the mountpoint must exist.
    if (this.config.clone.includes('fs')) this.makeDir(VASSAL_DIR_MOUNTPOINT);
    this.startCgroups();
    registerVassalMetrics(this.registry, () => this.status());
    if (router) {
      this.accounting = new TrafficAccounting(router, (id) => this.vassalOfPeer(id), this.config.accounting ?? { intervalMs: 60_000 }, this.log);
      this.accounting.start();
      router.on('peer-up', this.onPeerUp);
      router.on('peer-down', this.onPeerDown);
      router.on('peer-address', this.onPeerAddress);
      router.addStatsSection('emperor', () => ({ dir: this.config.dir, vassals: this.status() }));
      router.addMetrics(this.registry);
      this.learn = this.vassalNetwork(router);
    }
    this.log.info({ clone: this.config.clone.join(',') || 'none', vassalsDirRoot: this.config.vassalsDirRoot }, 'emperor started');
    this.watcher = fs.watch(this.config.dir, () => this.scheduleScan());
    this.watcher.on('error', (err) => this.log.warn({ err: String(err) }, 'cannot watch the emperor directory; rescans continue'));
    this.rescanTimer = setInterval(() => this.scheduleScan(0), this.config.freqMs);
    await this.scan();
    this.accounting?.settle(new Set(this.entries.keys()));
  }

  /** Stops every vassal (gracefully, then SIGKILL), removes their directories. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.watcher?.close();
    clearInterval(this.rescanTimer);
    clearTimeout(this.debounceTimer);
    await this.busy;
    await Promise.all([...this.entries.values()].map((e) => this.retire(e)));
    this.entries.clear();
    this.pushBindings();
    await this.accounting?.stop();
    if (this.router) {
      this.router.off('peer-up', this.onPeerUp);
      this.router.off('peer-down', this.onPeerDown);
      this.router.off('peer-address', this.onPeerAddress);
      this.router.removeStatsSection('emperor');
      this.router.removeMetrics(this.registry);
    }
    if (this.cgroups) {
      for (const w of await this.cgroups.destroy()) this.log.warn(w);
      this.cgroups = undefined;
    }
    for (const d of this.created.splice(0).reverse()) {
      try { fs.rmdirSync(d); } catch { /* not empty: not only ours */ }
    }
    this.log.info('emperor stopped');
  }

  /** The emperor's cgroup (vassals' cgroups go below it) and its own OOM
   *  preference; without cgroups vassals still run, unlimited, with a warning. */
  private startCgroups(): void {
    try {
      this.cgroups = EmperorCgroup.create({ path: this.config.cgroupPath, movable: [process.pid, ...(this.router?.pid ? [this.router.pid] : [])] });
      this.log.info({ cgroups: this.cgroups.explain() }, 'vassal cgroups');
      for (const n of this.cgroups.notes) this.log.warn(n);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'no cgroups for vassals: they run without limits, and a stop kills only their runtime\'s pid namespace');
    }
    for (const pid of [process.pid, this.router?.pid]) {
      if (!pid) continue;
      try { setOomScoreAdj(pid, EMPEROR_OOM_SCORE_ADJ); } catch (err) {
        this.log.warn({ pid, err: (err as Error).message }, 'cannot make the kernel\'s OOM killer pass over this process');
      }
    }
  }

  private makeDir(dir: string): void {
    const first = fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    if (!first) return;
    // Every level mkdir made, outermost first.
    for (let d = dir; d.length >= first.length; d = path.dirname(d)) this.created.unshift(d);
  }

  private scheduleScan(delay = this.debounceMs): void {
    if (this.stopped) return;
    if (delay === 0 && this.debounceTimer) return;   // a debounced scan is coming anyway
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      void this.scan();
    }, delay);
  }

  /** SIGHUP: the emperor's config read again. New vassal defaults (traffic
   *  and cgroup limits, emperor-vassal-*) apply to the running vassals they
   *  change, without a restart or a reconnect; the other emperor options
   *  take effect at the next start. A bad config changes nothing. */
  reload(why: string): void {
    if (!this.reread || this.stopped) return;
    let next: EmperorConfig;
    try {
      next = emperorConfig(this.reread());
    } catch (err) {
      this.log.error({ why, err: (err as Error).message }, 'emperor config not reloaded: the old vassal defaults stay in force');
      return;
    }
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    if (same(next.vassalTraffic, this.config.vassalTraffic) && same(next.vassalLimits, this.config.vassalLimits)) return;
    this.config.vassalTraffic = next.vassalTraffic;
    this.config.vassalLimits = next.vassalLimits;
    this.busy = this.busy.then(() => {
      for (const e of this.entries.values()) {
        if (!e.vassal || !e.spec) continue;
        const probe: Entry = { name: e.name, file: e.file, hash: e.hash, rulePaths: e.rulePaths };
        const spec = this.parse(probe, e);
        if (spec && onlyLimitsDiffer(e.spec, spec)) this.applyLimits(e, spec);
      }
      this.pushLimits();
      this.log.info({ why, traffic: describeTraffic(next.vassalTraffic) || 'none' }, 'vassal defaults reloaded: applied to the running vassals');
    });
  }

  /** Kills every vassal now, with no grace and no restart (a fleet host
   *  whose lease may expire: another host may start them any moment). The
   *  next scan retires them as their files go. */
  async fence(why: string): Promise<void> {
    const running = [...this.entries.values()].filter((e) => e.vassal);
    if (running.length) this.log.error({ why, vassals: running.length }, 'killing every vassal now');
    await Promise.all(running.map((e) => e.vassal!.kill()));
  }

  /** One pass over the directory; passes never overlap. Resolves when done. */
  scan(): Promise<void> {
    this.busy = this.busy.then(() => this.scanOnce()).catch((err) => {
      this.log.error({ err: (err as Error).message }, 'scan failed');
    });
    return this.busy;
  }

  private async scanOnce(): Promise<void> {
    if (this.stopped) return;
    const seen = new Map<string, { file: string; hash: string; text: string }>();   // hash: of the text
    let names: string[];
    try {
      names = fs.readdirSync(this.config.dir);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cannot read the emperor directory');
      return;
    }
    for (const n of names.sort()) {
      if (n.startsWith('.') || !formatOf(n) || n.endsWith('.js')) continue;
      const file = path.join(this.config.dir, n);
      let text: string;
      try {
        if (!fs.statSync(file).isFile()) continue;
        text = fs.readFileSync(file, 'utf8');
      } catch { continue; }  // vanished between readdir and read
      const bad = unsafeNameReason(n);
      if (bad) {
        if (!this.refusedNames.has(n)) {
          this.log.error({ file: JSON.stringify(file) }, `bad vassal file: not deployed: ${bad}`);
          this.emit('invalid', n, `${JSON.stringify(file)}: ${bad}`);
        }
        this.refusedNames.add(n);
        continue;
      }
      seen.set(vassalName(file), { file, text, hash: crypto.createHash('sha256').update(text).digest('hex') });
    }
    // Removed first (frees addresses), then changed, then new.
    for (const [name, e] of [...this.entries]) {
      if (seen.has(name)) continue;
      this.log.info({ vassal: name }, 'vassal file removed');
      await this.retire(e);
      this.entries.delete(name);
      this.accounting?.retire(name);
      this.pushBindings();
    }
    for (const [name, f] of seen) {
      const e = this.entries.get(name);
      if (e && e.hash !== fullHash(f.hash, e.rulePaths)) await this.redeploy(e, f.hash);
    }
    for (const [name, f] of seen) {
      if (this.entries.has(name)) continue;
      const e: Entry = { name, file: f.file, hash: f.hash };
      this.entries.set(name, e);
      await this.deploy(e);
    }
    this.emit('scanned');
  }

  /** Parses and checks a vassal file; on error sets e.error, reports it,
   *  returns undefined. e.hash comes in as the file's text's and leaves as
   *  fullHash (its rule files read before they are parsed: a change after
   *  that is seen by the next scan). */
  private parse(e: Entry, current?: Entry): VassalSpec | undefined {
    const textHash = e.hash;
    e.hash = fullHash(textHash, e.rulePaths);
    try {
      const options = this.readFile(e.file);
      e.rulePaths = vassalRulePaths(e.file, options);
      e.hash = fullHash(textHash, e.rulePaths);
      const spec = vassalSpec(e.file, options, {
        clone: this.config.clone,
        routerSocket: this.router?.config.socket,
        hostDir: path.join(this.config.vassalsDirRoot, vassalDirName(e.name)),
        limitDefaults: this.config.vassalLimits,
        trafficDefaults: this.config.vassalTraffic,
      });
      for (const other of this.entries.values()) {
        if (other !== e && other !== current && other.vassal && vassalDirName(other.name) === vassalDirName(e.name)) {
          throw new ConfigError(`its directory ${path.join(this.config.vassalsDirRoot, vassalDirName(e.name))} belongs to vassal ${other.name} (one vassal per name, whatever the format)`);
        }
      }
      if (spec.address) {
        for (const other of this.entries.values()) {
          if (other === e || other === current) continue;
          const a = addressOf(other);
          if (a === spec.address && (other.vassal || other.learned)) {
            throw new ConfigError(`tuntap-device-address: ${spec.address} is already ${other.spec?.address ? 'named by' : 'used by'} vassal ${other.name}`);
          }
        }
        const gw = this.router?.config.gateway;
        if (gw && gw.split('/')[0] === spec.address) throw new ConfigError(`tuntap-device-address: ${spec.address} is the gateway's`);
      }
      for (const w of spec.warnings) this.log.warn({ vassal: e.name }, w);
      e.error = undefined;
      return spec;
    } catch (err) {
      const shown = this.shown(e.file);
      const msg = err instanceof ConfigError && !err.message.startsWith(shown) ? `${shown}: ${err.message}` : (err as Error).message;
      e.error = msg;
      this.log.error({ vassal: e.name, file: e.file, err: msg }, 'bad vassal file: not deployed');
      this.emit('invalid', e.name, msg);
      return undefined;
    }
  }

  private async deploy(e: Entry): Promise<void> {
    const spec = this.parse(e);
    if (!spec) return;
    await this.launch(e, spec);
  }

  private async launch(e: Entry, spec: VassalSpec): Promise<void> {
    e.spec = spec;
    if (spec.address) e.learned = undefined;
    else e.learned ??= this.fleet?.knownAddress(e.name);
    const log = this.log.child({ vassal: e.name });
    try {
      e.hostDir = path.join(this.config.vassalsDirRoot, vassalDirName(e.name));
      fs.mkdirSync(e.hostDir, { recursive: true, mode: 0o750 });
      if (spec.uid !== undefined || spec.gid !== undefined) fs.chownSync(e.hostDir, spec.uid ?? 0, spec.gid ?? 0);
    } catch (err) {
      e.error = `cannot create ${e.hostDir}: ${(err as Error).message}`;
      log.error(e.error);
      return;
    }
    if (this.cgroups && !e.cgroup) {
      try {
        const made = await this.cgroups.createVassal(e.name, spec.limits);
        e.cgroup = made.cgroup;
        for (const w of made.warnings) log.warn(`${e.file}: ${w}`);
      } catch (err) {
        e.error = `cannot make the vassal's cgroup: ${(err as Error).message}`;
        log.error(e.error);
        return;
      }
    } else if (e.cgroup) {
      for (const w of e.cgroup.setLimits(spec.limits)) log.warn(`${e.file}: ${w}`);
    } else if (Object.keys(spec.limits).length) {
      log.warn(`${e.file}: limits (${describeLimits(spec.limits)}) not applied: the emperor has no cgroups`);
    }
    const v = new Vassal(e.name, spec.lines, log, this.supervisor, e.cgroup, this.config.output);
    e.vassal = v;
    if (spec.cron.length) e.cron = this.attachCron(e.name, v, spec, log);
    v.on('pid', () => this.pushBindings());
    v.on('exit', () => this.pushBindings());
    v.on('state', (s: VassalState) => this.emit('vassal-state', e.name, s));
    log.info({ file: e.file, address: spec.address ?? 'from its first packet' }, 'deploying vassal');
    this.pushBindings();
    v.start();
    this.emit('deployed', e.name);
  }

  /** The vassal's cron entries: scheduled here, each run started inside the
   *  vassal by its runtime (`job`), reported back by `job-start`/`job-exit`.
   *  Scheduling follows the vassal: it starts at each `ready` and stops when
   *  the runtime exits (its unfinished runs are then counted as errors). */
  private attachCron(name: string, v: Vassal, spec: VassalSpec, log: Logger): CronScheduler {
    const cron = new CronScheduler({
      vassal: name,
      entries: spec.cron,
      metrics: this.cronMetrics ??= new CronMetrics(this.registry),
      clock: this.cronClock,
      log,
      runner: {
        run: (id, cmd) => { if (!v.send(`job ${id} ${cmd}`)) throw new Error('the vassal is not running'); },
        kill: (id) => { v.send(`job-kill ${id}`); },
      },
    });
    v.on('ready', () => cron.start());
    v.on('job-start', (value: string) => {
      const [id, pid] = value.split(' ');
      cron.onStart(id, Number(pid));
    });
    v.on('job-exit', (value: string) => {
      const x = parseJobExit(value);
      if (x) cron.onExit(x.id, x.status, x.ms);
    });
    v.on('exit', () => cron.close('vassal exited'));
    return cron;
  }

  private cronMetrics?: CronMetrics;   // one set for every vassal, made with the first cron entry

  private async redeploy(e: Entry, textHash: string): Promise<void> {
    const next: Entry = { name: e.name, file: e.file, hash: textHash, rulePaths: e.rulePaths };
    const spec = this.parse(next, e);
    e.rulePaths = next.rulePaths;
    e.hash = next.hash;
    if (!spec) {
      e.error = next.error;
      if (e.vassal) this.log.warn({ vassal: e.name }, 'the running vassal keeps its previous config');
      return;
    }
    if (e.vassal && e.spec && onlyLimitsDiffer(e.spec, spec)) return this.applyLimits(e, spec);

    this.log.info({ vassal: e.name }, 'vassal file changed: reloading');
    e.cron?.stop();
    if (e.vassal) await e.vassal.stop();
    e.cron?.close('vassal reloaded');
    e.cron = undefined;
    e.vassal = undefined;
    e.learned = undefined;     // the new file may use another address
    e.error = undefined;
    this.pushBindings();
    await this.launch(e, spec);
    this.emit('reloaded', e.name);
  }

  /** A changed file (or rule file) that changes only limits (its cgroup's,
   *  its traffic's) or its own firewall rules: applied to the running
   *  vassal, which keeps running and connected. */
  private applyLimits(e: Entry, spec: VassalSpec): void {
    const log = this.log.child({ vassal: e.name });
    if (e.cgroup) for (const w of e.cgroup.setLimits(spec.limits)) log.warn(`${e.file}: ${w}`);
    e.spec = spec;
    e.error = undefined;
    this.pushLimits();
    this.pushPeerRules();
    log.info({ limits: describeLimits(spec.limits), traffic: describeTraffic(spec.traffic) || 'none', rulesIn: spec.firewall.in.length, rulesOut: spec.firewall.out.length },
      'vassal file changed only its limits or rules: applied, the vassal keeps running');
    this.emit('reloaded', e.name);
  }

  /** Stops a vassal for good and removes its host directory. */
  private async retire(e: Entry): Promise<void> {
    const v = e.vassal;
    e.vassal = undefined;
    e.cron?.stop();
    if (v) await v.stop();
    e.cron?.close('vassal stopped');
    e.cron = undefined;
    // Every process of the vassal is gone (its cgroup killed and removed)
    // before its directory is: nothing of the tenant's can race the removal.
    if (e.cgroup) {
      try {
        const r = await e.cgroup.destroy();
        if (!r.empty) this.log.error({ vassal: e.name }, 'the vassal\'s cgroup could not be emptied: its directory is kept');
        else e.cgroup = undefined;
      } catch (err) {
        this.log.error({ vassal: e.name, err: (err as Error).message }, 'cannot remove the vassal\'s cgroup: its directory is kept');
      }
    }
    if (e.hostDir && !e.cgroup) {
      try { await removeVassalDir(e.hostDir); } catch (err) {
        this.log.warn({ vassal: e.name, err: (err as Error).message }, 'cannot remove the vassal directory');
      }
    }
    this.emit('retired', e.name);
  }

  private peerUp(e: { id: number; pid: number; start: number }): void {
    this.peerRuntime.set(e.id, { pid: e.pid, start: e.start });
    if (e.start) return;
    const v = [...this.entries.values()].find((x) => x.vassal?.pid === e.pid)?.vassal;
    v?.log.warn({ pid: e.pid }, 'the router could not read this runtime\'s start time (/proc/PID/stat): its binding cannot match (is /proc mounted with hidepid for the router\'s user?)');
  }

  /** The vassal a router peer belongs to (its runtime's pid and start time), remembered until the peer is down. */
  private vassalOfPeer(peerId: number): string | undefined {
    const known = this.peerNames.get(peerId);
    if (known !== undefined) return known;
    const peer = this.peerRuntime.get(peerId);
    if (!peer) return undefined;
    for (const e of this.entries.values()) {
      const rt = this.runtimeOf(e);
      if (rt && rt.pid === peer.pid && rt.start === peer.start) {
        this.peerNames.set(peerId, e.name);
        return e.name;
      }
    }
    return undefined;
  }

  private learnAddress(peerId: number, address: string): void {
    const peer = this.peerRuntime.get(peerId);
    if (!peer) return;
    for (const e of this.entries.values()) {
      const rt = this.runtimeOf(e);
      if (!rt || rt.pid !== peer.pid || rt.start !== peer.start) continue;
      if (e.spec?.address || e.learned === address) return;
      e.learned = address;
      e.vassal!.log.info({ address }, 'vassal address learned from its first packet: bound and reserved');
      this.pushBindings();
      this.emit('learned', e.name, address);
      return;
    }
  }

  // ---- addresses: the router's bindings (native/router.h, Binding) ----

  private learn?: LearnNetwork | null;   // the vassal network; null: none (set at start with a router)
  private nextVassalKey = 1;
  private readonly vassalKeys = new WeakMap<Entry, { address?: string; key: number }>();
  private readonly runtimes = new WeakMap<Entry, { pid: number; start: number }>();
  private readonly fileAddresses = new WeakMap<Entry, { hash: string; address?: number }>();

  /** Where learned addresses may come from: emperor-vassal-network, or the
   *  network on the router's tun device now that its hooks have run. */
  private vassalNetwork(router: RouterApi): LearnNetwork | null {
    if (this.config.vassalNetwork) {
      this.log.info({ network: formatNetwork(this.config.vassalNetwork) }, 'vassal network (emperor-vassal-network): learned addresses come only from it');
      return this.config.vassalNetwork;
    }
    const d = deviceNetwork(router.config.device, router.config.netns);
    if (d.network) {
      this.log.info({ network: formatNetwork(d.network), device: router.config.device }, 'vassal network (the router device\'s): learned addresses come only from it');
      return d.network;
    }
    this.log.warn({ device: router.config.device, addresses: d.addresses, err: d.error },
      'the router\'s device has no IPv4 network: no vassal address is learned from a first packet (give the device an address in exec-as-root, or set emperor-vassal-network)');
    return null;
  }

  /** The vassal's key in the router: one per entry and the address its file
   *  names; a new one when that address changes (the old reservation ends). */
  private vassalKey(e: Entry): number {
    const address = e.spec?.address;
    let k = this.vassalKeys.get(e);
    if (!k || k.address !== address) {
      k = { address, key: this.nextVassalKey++ };
      this.vassalKeys.set(e, k);
    }
    return k.key;
  }

  /** The vassal's current runtime: pid and start time, read once per pid
   *  (at its `pid` event, while its launcher is unreaped); undefined if none
   *  or unreadable. */
  private runtimeOf(e: Entry): { pid: number; start: number } | undefined {
    const v = e.vassal;
    const pid = v?.pid;
    if (!v || pid === undefined) return undefined;
    let r = this.runtimes.get(e);
    if (r?.pid !== pid) {
      r = { pid, start: runtimeStartTime(pid, v.launcherPid) ?? 0 };
      this.runtimes.set(e, r);
      if (!r.start) v.log.warn({ pid }, 'cannot read the vassal runtime\'s start time: its address stays reserved, not bound to it');
    }
    return r.start ? r : undefined;
  }

  /** The address e's file names now, good or bad-but-parsed (undefined: none, or unreadable). */
  private fileAddress(e: Entry): number | undefined {
    if (!e.error) return e.spec?.address ? ipv4ToInt(e.spec.address) : undefined;
    const cached = this.fileAddresses.get(e);
    if (cached?.hash === e.hash) return cached.address;
    let address: number | undefined;
    try {
      const o = this.readFile(e.file).filter((x) => x.key === 'tuntap-device-address').pop();
      const m = o && /^\s*(\d{1,3}(?:\.\d{1,3}){3})(?:\/\d{1,2})?\s*$/.exec(o.value);
      if (m) address = ipv4ToInt(m[1]);
    } catch { /* unreadable, or not an address: names none */ }
    this.fileAddresses.set(e, { hash: e.hash, address });
    return address;
  }

  /** Every live vassal's binding (its runtime, its vassal key, its address
   *  or 0: learned), and a pure reservation for every address a vassal file
   *  names that no live vassal holds (a file not deployed, bad or waiting). */
  bindings(): PeerBinding[] {
    const out: PeerBinding[] = [];
    const held = new Set<number>();
    for (const e of this.entries.values()) {
      if (!e.vassal || !e.spec?.device) continue;
      const a = addressOf(e);
      const rt = this.runtimeOf(e);
      out.push({ uid: -1, pid: rt?.pid ?? -1, start: rt?.start ?? 0, vassal: this.vassalKey(e), addr: a ? ipv4ToInt(a) : 0 });
      if (a) held.add(ipv4ToInt(a));
    }
    for (const e of this.entries.values()) {
      const a = this.fileAddress(e);
      if (a === undefined || held.has(a)) continue;
      held.add(a);
      out.push({ uid: -1, pid: -1, addr: a });
    }
    return out;
  }

  // What the router has of each kind (a rescan changes nothing most of the time).
  private readonly pushed = new Map<string, string>();

  /** Calls send unless what it carries (value) is what the router already has of this kind. */
  private pushIfChanged(kind: 'bindings' | 'limits' | 'peer-rules', value: unknown, send: () => void): void {
    const text = JSON.stringify(value);
    if (this.pushed.get(kind) === text) return;
    this.pushed.set(kind, text);
    send();
  }

  private pushBindings(): void {
    if (!this.router) return;
    this.pushLimits();
    this.pushPeerRules();
    const router = this.router;
    const list = this.bindings();
    this.pushIfChanged('bindings', [list, this.learn === undefined ? 'unrestricted' : this.learn], () => router.setBindings('emperor', list, this.learn));
  }

  /** Each vassal's traffic limits by its address (named in its file or
   *  learned), the emperor's defaults for every other peer (address 0). A
   *  peer that has no address yet is limited from its first packet on: by
   *  the default until the emperor hears its address, then by its own. */
  trafficLimits(): PeerLimit[] {
    const out: PeerLimit[] = [];
    if (hasTrafficLimits(this.config.vassalTraffic ?? {})) out.push(peerLimit(0, this.config.vassalTraffic));
    for (const e of this.entries.values()) {
      const a = addressOf(e);
      if (e.vassal && e.spec && a) out.push(peerLimit(ipv4ToInt(a), e.spec.traffic));
    }
    return out;
  }

  private pushLimits(): void {
    const router = this.router;
    if (!router) return;
    const list = this.trafficLimits();
    this.pushIfChanged('limits', list, () => router.setLimits('emperor', list));
  }

  /** Each vassal's own rules (vassal-firewall-*) by its address, named in
   *  its file or learned. A vassal that learns its address is judged by the
   *  router's rules alone until the emperor hears the address (its first
   *  packets), as its limits are. */
  peerRules(): VassalRules[] {
    const out: VassalRules[] = [];
    for (const e of this.entries.values()) {
      const a = addressOf(e);
      const fw = e.spec?.firewall;
      if (e.vassal && fw && a && (fw.in.length || fw.out.length)) out.push({ name: e.name, addr: ipv4ToInt(a), in: fw.in, out: fw.out });
    }
    return out;
  }

  private pushPeerRules(): void {
    const router = this.router;
    if (!router) return;
    const list = this.peerRules();
    this.pushIfChanged('peer-rules', list, () => router.setPeerRules('emperor', list));
  }

  /** One row per vassal file (the stats document's emperor.vassals). */
  status(): VassalStatus[] {
    let peers: PeerStats[] = [];
    try { if (this.router?.running) peers = this.router.stats().peers; } catch { /* stopping */ }
    return [...this.entries.values()].sort((a, b) => a.name.localeCompare(b.name)).map((e) => {
      const v = e.vassal;
      const address = addressOf(e) ?? null;
      const p = v?.pid ? peers.find((x) => x.pid === v.pid) ?? (address ? peers.find((x) => x.addr === ipv4ToInt(address)) : undefined) : undefined;
      return {
        name: e.name,
        file: e.file,
        state: v ? v.state : 'invalid',
        pid: v?.pid ?? null,
        restarts: v?.restarts ?? 0,
        address: address ?? (p?.addr ? intToIpv4(p.addr) : null),
        addressFrom: e.spec?.address ? 'file' : e.learned ? 'first packet' : null,
        lastExit: v?.lastExit ?? null,
        error: e.error ?? null,
        traffic: p ? { tx_packets: p.tx, rx_packets: p.rx, tx_bytes: p.txBytes, rx_bytes: p.rxBytes, dropped: p.dropped } : null,
        limits: e.spec && e.cgroup ? describeLimits(e.spec.limits) : null,
        trafficLimits: e.spec?.traffic ?? null,
        accounting: this.accountingRow(e.name),
        cgroup: v?.cgroupStats() ?? null,
        outputDropped: v ? v.outputDropped : null,
      };
    });
  }

  /** A vassal's traffic by name since accounting began (totals), and its current rates. */
  private accountingRow(name: string): VassalStatus['accounting'] {
    const t = this.accounting?.totals(name);
    if (!t) return null;
    const r = this.accounting!.rates(name);
    return {
      bytes_in: t.bytesIn, bytes_out: t.bytesOut, packets_in: t.packetsIn, packets_out: t.packetsOut, drops: t.drops,
      rate_in_bps: Math.round(r.bitsPerSecIn), rate_out_bps: Math.round(r.bitsPerSecOut),
      rate_in_pps: Math.round(r.packetsPerSecIn), rate_out_pps: Math.round(r.packetsPerSecOut),
    };
  }

  /** The Vassal object of a deployed vassal (tests). */
  vassal(name: string): Vassal | undefined {
    return this.entries.get(name)?.vassal;
  }
}

/** A vassal file's hash: its text's, and its rule files' when it names any. */
function fullHash(textHash: string, rulePaths?: string[]): string {
  return rulePaths?.length ? `${textHash}:${ruleFilesDigest(rulePaths)}` : textHash;
}

/** Two specs of one vassal that differ in nothing but limits and its own
 *  firewall rules (and warnings). */
function onlyLimitsDiffer(a: VassalSpec, b: VassalSpec): boolean {
  const rest = (s: VassalSpec) => JSON.stringify({ ...s, limits: undefined, traffic: undefined, firewall: undefined, ruleFiles: undefined, warnings: undefined });
  return rest(a) === rest(b);
}

/** The address a vassal holds: the one its file names, else the one it learned (undefined: none yet). */
function addressOf(e: Entry): string | undefined {
  return e.spec?.address ?? e.learned;
}
