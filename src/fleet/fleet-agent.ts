// fleet-agent.ts: one host's part in the fleet (docs/fleet.md). It connects
// the etcd store (fleet-store.ts) with the parts that already read files:
//   - the fleet's rule files (PREFIX/rules/) are copied into a directory the
//     router reads as a rules directory (tuntap-router-firewall-file), each
//     checked first: a bad one is reported with its key and line and the
//     router keeps the old one;
//   - the vassals etcd places on this host are copied into the emperor's
//     directory, so the emperor deploys, reloads and stops them as files;
//   - placement: this host claims vassals (placement.ts) through the store's
//     transactions, gives up those it no longer may run, and reports their
//     state and learned addresses;
//   - routes: every vassal on another host is routed via that host (routes.ts);
//   - fencing: when the store says the lease may be lost, every vassal here
//     is killed at once (another host may start them when the lease expires).
// Two components: `first` (the store, the rules) before the router starts,
// `second` (placement, routes) after the emperor started.
import type { EventEmitter } from 'node:events';
import client from 'prom-client';
import { formatOf, parseConfig } from '../config/load';
import { ConfigError } from '../config/types';
import type { Emperor } from '../emperor/emperor';
import type { Component } from '../lifecycle/component';
import type { Logger } from '../log';
import type { RouterApi } from '../router/router-api';
import { parseFileLine } from '../rules/parse';
import { cidr, fleetHostName, unsafeNameReason } from '../vassal/spec';
import type { FleetConfig } from './fleet-config';
import type { FleetSnapshot } from './types';
import type { FleetStore } from './fleet-store';
import { MirrorDir } from './mirror';
import { learnedAddress, placementPlan, Wanted } from './placement';
import { FleetRoutes } from './routes';

const CLAIM_GRACE_MS = 3000;     // an unplaced vassal any host may claim after this
const RESYNC_MS = 1000;          // a pass even without a change (grace, retries)

interface Known extends Wanted { text: string }

export class FleetAgent {
  readonly vassals: MirrorDir;
  readonly rules: MirrorDir;
  readonly registry = new client.Registry();
  private emperor?: Emperor;
  private router?: RouterApi;
  private readonly routes: FleetRoutes;
  private readonly known = new Map<string, Known>();          // last good value of each vassal key
  private readonly reported = new Map<string, string>();      // key -> text hash reported bad
  private readonly unplacedSince = new Map<string, number>();
  private readonly blocked = new Set<string>();               // vassals whose learned address the fleet refused
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;
  private stopped = false;
  private readonly invalid = new client.Gauge({ name: 'moat_fleet_invalid_values', help: 'vassal and rule values in etcd that do not parse (reported with key and line)', labelNames: ['kind'], registers: [this.registry] });
  private readonly placed = new client.Gauge({ name: 'moat_fleet_vassals_here', help: 'vassals etcd places on this host', registers: [this.registry] });
  private readonly routeGauge = new client.Gauge({ name: 'moat_fleet_routes', help: 'routes to vassals on other hosts', registers: [this.registry] });
  private readonly fences = new client.Counter({ name: 'moat_fleet_fences_total', help: 'times this host killed its vassals because its lease might have expired', registers: [this.registry] });

  constructor(readonly cfg: FleetConfig, readonly store: FleetStore, private readonly log: Logger) {
    this.vassals = new MirrorDir(`${cfg.dir}/vassals`, 0o600);
    this.rules = new MirrorDir(`${cfg.dir}/rules`, 0o644);
    this.routes = new FleetRoutes(log);
  }

  /** The name a vassal file goes by in messages: its etcd key. */
  describe = (file: string): string => `${this.cfg.prefix}/vassals/${file.slice(file.lastIndexOf('/') + 1)}`;
  knownAddress = (name: string): string | undefined => learnedAddress(this.store.snapshot(), name);

  /** Before the router: the store registered, the rules copied. */
  readonly first: Component = {
    name: 'fleet store',
    start: async () => {
      this.vassals.reset();
      this.rules.reset();
      await this.store.start();
      this.syncRules(this.store.snapshot());
      this.log.info({ host: this.cfg.host, etcd: this.cfg.url, ttl: this.cfg.ttlSec }, 'fleet: host registered');
    },
    stop: async () => {
      await this.store.stop();
      this.log.info({ host: this.cfg.host }, 'fleet: lease revoked, host left the fleet');
    },
  };

  /** After the emperor: placement, routes, fencing. */
  second(emperor: Emperor, router?: RouterApi): Component {
    return {
      name: 'fleet placement',
      start: async () => {
        this.emperor = emperor;
        this.router = router;
        this.routes.clear();
        for (const [em, ev, fn] of this.listeners(emperor)) em.on(ev, fn);
        router?.addMetrics(this.registry);
        router?.addMetrics(this.store.registry);
        router?.addStatsSection('fleet', () => this.statsSection());
        this.timer = setInterval(this.kick, RESYNC_MS);
        await this.sync();
      },
      stop: async () => {
        this.stopped = true;
        clearInterval(this.timer);
        for (const [em, ev, fn] of this.listeners(emperor)) em.off(ev, fn);
        await this.running;
        router?.removeMetrics(this.registry);
        router?.removeMetrics(this.store.registry);
        router?.removeStatsSection('fleet');
        this.routes.clear();
      },
    };
  }

  private readonly kick = (): void => { void this.sync(); };

  /** What the agent listens to: the store's changes and lease, the emperor's vassals. */
  private listeners(emperor: Emperor): Array<[EventEmitter, string, (...args: any[]) => void]> {
    return [
      [this.store, 'change', this.kick], [this.store, 'unfenced', this.kick], [this.store, 'registered', this.kick],
      [this.store, 'fenced', this.onFenced], [emperor, 'vassal-state', this.onState], [emperor, 'learned', this.onLearned],
    ];
  }

  /** One pass; passes never overlap (one asked for meanwhile runs after). */
  sync(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try { await this.pass(); } catch (err) { this.log.error({ err: (err as Error).message }, 'fleet: pass failed'); }
      } while (this.again && !this.stopped);
    })().finally(() => { this.running = undefined; });
    return this.running;
  }

  private async pass(): Promise<void> {
    if (this.stopped || !this.emperor) return;
    const snap = this.store.snapshot();
    this.syncRules(snap);
    this.readVassals(snap.vassals);
    const now = Date.now();
    for (const name of this.known.keys()) {
      if (snap.placements.has(name)) this.unplacedSince.delete(name);
      else if (!this.unplacedSince.has(name)) this.unplacedSince.set(name, now);
    }
    for (const name of this.unplacedSince.keys()) if (!this.known.has(name)) this.unplacedSince.delete(name);

    const fenced = this.store.fenced;
    const plan = placementPlan(this.cfg.host, snap, this.known, this.unplacedSince, now, CLAIM_GRACE_MS);
    const mine = new Set(fenced ? [] : plan.mine.filter((n) => !this.blocked.has(n)));
    if (!fenced) {
      for (const c of plan.claim) {
        const r = await this.store.claim(c.name, c.address);
        if (r.ok) {
          mine.add(c.name);
          this.log.info({ vassal: c.name, address: c.address ?? 'learned from its first packet' }, 'fleet: vassal placed on this host');
        } else if (r.reason === 'address') {
          this.reportOnce(c.name, `address ${c.address} is held by vassal ${r.holder} in the fleet: not run`);
        }
      }
    }
    // Stop what is no longer ours before etcd hears that we gave it up.
    let changed = false;
    for (const n of this.vassals.names()) if (!mine.has(n)) changed = this.vassals.remove(n) || changed;
    for (const n of mine) changed = this.vassals.write(n, this.known.get(n)!.text) || changed;
    if (changed) await this.emperor.scan();
    if (!fenced) {
      for (const n of plan.release) {
        await this.store.release(n);
        this.log.info({ vassal: n }, this.known.has(n) ? 'fleet: vassal pinned to another host: given up' : 'fleet: vassal removed from etcd: stopped here');
      }
      for (const [addr, v] of snap.addresses) if (!snap.vassals.has(v)) await this.store.releaseAddress(addr, v);
    }
    this.placed.set(mine.size);
    this.syncRoutes(snap);
  }

  /** The fleet's rule files into the router's rules directory; a bad one is
   *  reported (key:line) and its previous copy stays. */
  private syncRules(snap: FleetSnapshot): void {
    let bad = 0;
    for (const [name, text] of snap.rules) {
      if (!name.endsWith('.rules') || name.startsWith('.') || name.includes('/')) {
        this.reportOnce(`rules/${name}`, `${this.cfg.prefix}/rules/${name}: not read: a rule file's key ends in .rules`, text);
        continue;
      }
      const err = ruleTextError(text, `${this.cfg.prefix}/rules/${name}`);
      if (err) {
        bad++;
        this.reportOnce(`rules/${name}`, `bad rule file: the router keeps its previous rules: ${err}`, text);
        continue;
      }
      this.reported.delete(`rules/${name}`);
      if (this.rules.write(name, text)) this.log.info({ key: `${this.cfg.prefix}/rules/${name}` }, 'fleet: rule file changed');
    }
    for (const n of this.rules.names()) {
      if (!snap.rules.has(n) && this.rules.remove(n)) this.log.info({ key: `${this.cfg.prefix}/rules/${n}` }, 'fleet: rule file removed');
    }
    this.invalid.set({ kind: 'rules' }, bad);
  }

  /** Each vassal value parsed enough to place it (its address, its pin); a
   *  bad one is reported with its key and line, and a running vassal keeps
   *  the last good value. */
  private readVassals(values: ReadonlyMap<string, string>): void {
    let bad = 0;
    for (const name of [...this.known.keys()]) if (!values.has(name)) this.known.delete(name);
    for (const [name, text] of values) {
      if (this.known.get(name)?.text === text) continue;
      const key = `${this.cfg.prefix}/vassals/${name}`;
      try {
        const unsafe = unsafeNameReason(name);
        if (unsafe) throw new ConfigError(`${key}: ${unsafe}`);
        const format = formatOf(name);
        if (!format || name.endsWith('.js')) throw new ConfigError(`${key}: the key's extension names no vassal format (.ini .json .yaml .yml .xml)`);
        const opts = parseConfig(text, format, key);
        const a = opts.filter((o) => o.key === 'tuntap-device-address').pop();
        const h = opts.filter((o) => o.key === 'vassal-host').pop();
        const address = a ? cidr(a).addr : undefined;   // checked as the emperor will check it
        this.known.set(name, { text, ...(address ? { address } : {}), ...(h ? { pin: fleetHostName(h) } : {}) });
        this.reported.delete(name);
        this.blocked.delete(name);
      } catch (err) {
        bad++;
        const msg = (err as Error).message;
        this.reportOnce(name, `bad vassal value: ${msg.startsWith(key) ? msg : `${key}: ${msg}`}${this.known.has(name) ? ' (the vassal keeps its previous value)' : ''}`, text);
      }
    }
    this.invalid.set({ kind: 'vassals' }, bad);
  }

  private syncRoutes(snap: FleetSnapshot): void {
    const want = new Map<string, string>();
    for (const [name, p] of snap.placements) {
      if (p.host === this.cfg.host) continue;
      const via = snap.hosts.get(p.host)?.address;
      const addr = p.address ?? this.known.get(name)?.address ?? learnedAddress(snap, name);
      if (via && addr) want.set(addr, via);
    }
    this.routes.sync(want);
    this.routeGauge.set(this.routes.size);
  }

  private readonly onFenced = (): void => {
    this.fences.inc();
    this.log.error({ host: this.cfg.host }, 'fleet: no lease renewal for the TTL minus the margin: killing every vassal here (another host may start them once the lease expires)');
    for (const n of this.vassals.names()) this.vassals.remove(n);
    void this.emperor?.fence('fleet lease may expire').then(() => this.emperor?.scan());
  };

  private readonly onState = (name: string, state: string): void => {
    if (this.stopped || !this.vassals.names().includes(name)) return;
    void this.store.report(name, state).catch(() => { /* the next state reports again */ });
  };

  private readonly onLearned = (name: string, address: string): void => {
    void (async () => {
      const r = await this.store.claimAddress(name, address);
      if (r.ok) {
        await this.store.report(name, 'running', address).catch(() => undefined);
        return;
      }
      if (r.reason === 'address') {
        this.blocked.add(name);
        this.reportOnce(name, `learned address ${address} is held by vassal ${r.holder} in the fleet: the vassal is stopped until its value changes`);
        this.kick();
      }
    })();
  };

  private reportOnce(id: string, message: string, text = ''): void {
    const tag = `${message}\0${text}`;
    if (this.reported.get(id) === tag) return;
    this.reported.set(id, tag);
    this.log.error({ host: this.cfg.host }, `fleet: ${message}`);
  }

  private statsSection(): unknown {
    const snap = this.store.snapshot();
    return {
      host: this.cfg.host, etcd: this.cfg.url, fenced: this.store.fenced,
      hosts: [...snap.hosts.keys()].sort(),
      here: this.vassals.names().sort(),
      routes: this.routes.size,
    };
  }
}

/** The first error of a rule file's text, as file:line:column: reason. */
export function ruleTextError(text: string, file: string): string | undefined {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    try {
      parseFileLine(lines[i], { file, line: i + 1 });
    } catch (err) {
      return (err as Error).message;
    }
  }
  return undefined;
}
