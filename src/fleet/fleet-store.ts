// fleet-store.ts: this host's view of the fleet in etcd and its claims there.
//
// start() registers PREFIX/hosts/HOST under a lease (refused while another
// live host holds the name), reads the whole prefix once and then follows it
// with a watch (no polling). The lease is renewed by its own timer (every
// renewMs, one keepalive request with a deadline each), and the store is
// *fenced* once ttl - margin has passed since the last successful renewal's
// request was sent: etcd may expire the lease at ttl after it received that
// request at the earliest, so a fenced host stops its vassals before any other
// host can claim them. Claims are etcd transactions, so two hosts racing for
// one vassal (or one address) never both win.
//
// Events: 'change' (a watch batch changed the snapshot; at most one per batch),
// 'fenced', 'unfenced' (a renewal on the same lease succeeded again),
// 'lease-lost' (etcd says the lease is gone: its placements are gone too),
// 'registered' (a new lease and the host key again, after lease-lost; the
// store is unfenced then).
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import client from 'prom-client';
import type { ICompare, IKeyValue, IRequestOp, IWatchResponse, Watcher } from 'etcd3';
import { EtcdConnection } from './etcd-client';
import { applyFleetKey, checkName, emptySnapshot, fleetKey, Kind, parsePlacementValue, placementValue } from './keys';
import type { ClaimResult, FleetSnapshot, FleetStoreOptions, PlacementRecord } from './types';

const FENCE_CHECK_MS = 100;
const REWATCH_MS = 500;
const BACKOFF_MAX_MS = 5000;
const CLAIM_ATTEMPTS = 3;

const buf = (s: string) => Buffer.from(s, 'utf8');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export class FleetStore extends EventEmitter {
  readonly registry = new client.Registry();
  private etcd?: EtcdConnection;
  private snap = emptySnapshot();
  private appliedRev = 0n;
  private watcher?: Watcher;
  private leaseId?: string;
  private registered = false;
  private lastRenewalSent = 0;          // performance.now() when the last successful renewal (or the grant) was sent
  private fencedState = true;           // as last announced ('fenced'/'unfenced'/'registered')
  private renewing = false;
  private renewFailing = false;
  private reregistering = false;
  private resyncing = false;
  private stopped = false;
  private timers: NodeJS.Timeout[] = [];
  private rewatchTimer?: NodeJS.Timeout;
  /** Placement values this host wrote under its current lease (report() diffs against them). */
  private mine = new Map<string, PlacementRecord>();
  private readonly m;

  constructor(readonly opts: FleetStoreOptions) {
    super();
    checkName('fleet-host', opts.host);
    if (!(opts.ttlSec >= 1)) throw new Error(`fleet lease TTL must be at least 1 s, got ${opts.ttlSec}`);
    if (!(opts.renewMs > 0) || !(opts.marginMs >= 0) || opts.renewMs + opts.marginMs >= opts.ttlSec * 1000) {
      throw new Error(`fleet lease: renew interval (${opts.renewMs} ms) plus margin (${opts.marginMs} ms) must be less than the TTL (${opts.ttlSec} s)`);
    }
    const reg = this.registry;
    const self = this;
    this.m = {
      watchEvents: new client.Counter({ name: 'moat_fleet_watch_events_total', help: 'etcd watch events applied, by key kind and type', labelNames: ['kind', 'type'], registers: [reg] }),
      resyncs: new client.Counter({ name: 'moat_fleet_resyncs_total', help: 'Full re-reads of the fleet prefix (start, a cancelled or compacted watch)', registers: [reg] }),
      renewals: new client.Counter({ name: 'moat_fleet_lease_renewals_total', help: 'Lease keepalives, by result (ok, failed, lost)', labelNames: ['result'], registers: [reg] }),
      claims: new client.Counter({ name: 'moat_fleet_claims_total', help: 'Vassal and address claims, by result', labelNames: ['result'], registers: [reg] }),
    };
    new client.Gauge({
      name: 'moat_fleet_lease_renewal_age_seconds', help: 'Seconds since the last successful lease renewal was sent', registers: [reg],
      collect() { this.set(self.registered ? (performance.now() - self.lastRenewalSent) / 1000 : -1); },
    });
    new client.Gauge({
      name: 'moat_fleet_fenced', help: '1 while this host is fenced (its lease may have expired: its vassals must not run)', registers: [reg],
      collect() { this.set(self.fenced ? 1 : 0); },
    });
    new client.Gauge({
      name: 'moat_fleet_placements', help: 'Vassals placed on this host in etcd', registers: [reg],
      collect() { let n = 0; for (const p of self.snap.placements.values()) if (p.host === self.opts.host) n++; this.set(n); },
    });
    new client.Counter({
      name: 'moat_fleet_etcd_requests_total', help: 'Requests sent to etcd, by method', labelNames: ['op'], registers: [reg],
      collect() { this.reset(); for (const [op, n] of self.etcd?.requests ?? []) this.inc({ op }, n); },
    });
  }

  /** True while this host must not run vassals: not registered, or ttl - margin passed since the last renewal was sent. */
  get fenced(): boolean {
    return !this.registered || performance.now() - this.lastRenewalSent > this.opts.ttlSec * 1000 - this.opts.marginMs;
  }

  /** The lease this host's keys live under (decimal), while registered. */
  get lease(): string | undefined {
    return this.registered ? this.leaseId : undefined;
  }

  /** etcd requests sent so far, by method (for the load figures). */
  get requests(): ReadonlyMap<string, number> {
    return this.etcd?.requests ?? new Map();
  }

  async start(): Promise<void> {
    this.etcd = new EtcdConnection(this.opts);
    try {
      await this.register();
      this.fencedState = false;
      await this.readAll();
      const connected = this.watchFrom(this.appliedRev + 1n);
      await Promise.race([connected, sleep(this.etcd.callTimeoutMs)]);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.timers.push(setInterval(() => void this.renew(), this.opts.renewMs));
    this.timers.push(setInterval(() => this.checkFence(), Math.min(FENCE_CHECK_MS, this.opts.marginMs || FENCE_CHECK_MS)));
    for (const t of this.timers) t.unref();
    this.opts.log.info({ fleetHost: this.opts.host, lease: this.leaseId, revision: this.snap.revision }, 'fleet: registered');
  }

  /** A copy of the fleet as last read (the caller may keep it to diff with the next). */
  snapshot(): FleetSnapshot {
    const s = this.snap;
    return {
      revision: s.revision, vassals: new Map(s.vassals), rules: new Map(s.rules), hosts: new Map(s.hosts),
      placements: new Map(s.placements), addresses: new Map(s.addresses),
    };
  }

  /** Places vassal on this host (and claims address for it) in one transaction. */
  async claim(vassal: string, address?: string): Promise<ClaimResult> {
    const r = await this.tryClaim(vassal, address);
    this.m.claims.inc({ result: r.ok ? 'ok' : r.reason });
    if (r.ok) this.opts.log.info({ vassal, address }, 'fleet: claimed');
    else if (r.reason === 'error') this.opts.log.warn({ vassal, address, err: r.message }, 'fleet: claim failed');
    return r;
  }

  /** Claims a learned address for vassal (placed on this host). */
  async claimAddress(vassal: string, address: string): Promise<ClaimResult> {
    const r = await this.tryClaimAddress(vassal, address);
    this.m.claims.inc({ result: r.ok ? 'ok' : r.reason });
    return r;
  }

  /** Removes vassal's placement if it is this host's. True if it was deleted. */
  async release(vassal: string): Promise<boolean> {
    checkName('vassal', vassal);
    const lease = this.lease;
    this.mine.delete(vassal);
    if (!lease) return false;
    const key = buf(this.key('placement', vassal));
    const res = await this.etcd!.client.kv.txn({
      compare: [{ key, target: 'Lease', result: 'Equal', lease }],
      success: [{ request_delete_range: { key } }],
    });
    if (res.succeeded) this.opts.log.info({ vassal }, 'fleet: released');
    return res.succeeded;
  }

  /** Records vassal's state (and learned address) in its placement, if it is still this host's. Unchanged values are not written. */
  async report(vassal: string, state: string, address?: string): Promise<boolean> {
    checkName('vassal', vassal);
    const lease = this.lease;
    if (!lease || this.fenced) return false;
    const cur = this.mine.get(vassal) ?? this.snap.placements.get(vassal);
    if (cur && cur.host !== this.opts.host) return false;
    const next: PlacementRecord = { host: this.opts.host, address: address ?? cur?.address, state };
    if (cur && cur.address === next.address && cur.state === next.state && this.mine.has(vassal)) return true;
    const key = buf(this.key('placement', vassal));
    const res = await this.etcd!.client.kv.txn({
      compare: [{ key, target: 'Lease', result: 'Equal', lease }],
      success: [{ request_put: { key, value: buf(placementValue(next)), lease } }],
    });
    if (res.succeeded) this.mine.set(vassal, next);
    else this.mine.delete(vassal);
    return res.succeeded;
  }

  /** Frees address if vassal still holds it (its key was removed). True if deleted. */
  async releaseAddress(address: string, vassal: string): Promise<boolean> {
    checkName('address', address);
    const key = buf(this.key('addresses', address));
    const res = await this.etcd!.client.kv.txn({
      compare: [{ key, target: 'Value', result: 'Equal', value: buf(vassal) }],
      success: [{ request_delete_range: { key } }],
    });
    return res.succeeded;
  }

  /** Stops renewing and watching, revokes the lease (this host's placements
   *  and host key vanish at once) and closes the client. Bounded by the call
   *  deadline when etcd is down (the lease then expires by itself). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.rewatchTimer) clearTimeout(this.rewatchTimer);
    const w = this.watcher;
    this.watcher = undefined;
    // not awaited: the cancel's answer never comes while etcd is down
    if (w) w.cancel().catch(() => undefined);
    const lease = this.leaseId;
    this.registered = false;
    this.leaseId = undefined;
    if (lease && this.etcd) {
      try {
        await this.etcd.client.leaseClient.leaseRevoke({ ID: lease });
        this.opts.log.info({ lease }, 'fleet: lease revoked');
      } catch (err) {
        this.opts.log.warn({ lease, err: (err as Error).message }, `fleet: could not revoke the lease; its keys expire within ${this.opts.ttlSec} s`);
      }
    }
    this.etcd?.close();
  }

  // ---- registration and the lease ----

  private key(kind: Kind, name: string): string {
    return fleetKey(this.opts.prefix, kind, name);
  }

  /** A new lease and PREFIX/hosts/HOST under it, if no live host holds the name. */
  private async register(): Promise<void> {
    const etcd = this.etcd!;
    const sent = performance.now();
    const grant = await etcd.client.leaseClient.leaseGrant({ TTL: this.opts.ttlSec });
    const lease = grant.ID;
    const key = buf(this.key('hosts', this.opts.host));
    const value = JSON.stringify({ ...(this.opts.hostAddress ? { address: this.opts.hostAddress } : {}), since: new Date().toISOString() });
    let held: IKeyValue | undefined;
    try {
      const res = await etcd.client.kv.txn({
        compare: [{ key, target: 'Version', result: 'Equal', version: 0 }],
        success: [{ request_put: { key, value: buf(value), lease } }],
        failure: [{ request_range: { key } }],
      });
      if (res.succeeded) {
        this.leaseId = lease;
        this.lastRenewalSent = sent;
        this.registered = true;
        this.mine.clear();
        return;
      }
      held = res.responses[0]?.response_range?.kvs[0];
    } catch (err) {
      await this.revokeQuietly(lease);
      throw err;
    }
    await this.revokeQuietly(lease);
    let left = 'unknown';
    if (held && held.lease !== '0') {
      try {
        left = (await etcd.client.leaseClient.leaseTimeToLive({ ID: held.lease })).TTL;
      } catch { /* left unknown */ }
      throw new Error(`fleet-host ${this.opts.host} is held by a live host (its lease has ${left} s left)`);
    }
    throw new Error(`fleet-host ${this.opts.host} is held by a key without a lease (${this.key('hosts', this.opts.host)}; remove it with etcdctl del)`);
  }

  private async revokeQuietly(lease: string): Promise<void> {
    try { await this.etcd!.client.leaseClient.leaseRevoke({ ID: lease }); } catch { /* expires by itself */ }
  }

  /** One keepalive request (its own stream, with a deadline): the lease's TTL left, 0 if it is gone. */
  private async keepaliveOnce(lease: string): Promise<number> {
    const etcd = this.etcd!;
    const stream = await etcd.client.leaseClient.leaseKeepAlive(etcd.deadline(Math.min(etcd.callTimeoutMs, Math.max(this.opts.renewMs, 200))));
    return new Promise<number>((resolve, reject) => {
      stream.on('data', (res: { TTL: string }) => {
        resolve(Number(res.TTL));
        stream.end();
      });
      stream.on('error', reject);
      stream.on('end', () => reject(new Error('keepalive stream ended without an answer')));
      stream.write({ ID: lease });
    });
  }

  private async renew(): Promise<void> {
    if (this.stopped || !this.registered || this.renewing || !this.leaseId) return;
    this.renewing = true;
    const lease = this.leaseId;
    const sent = performance.now();
    try {
      const ttl = await this.keepaliveOnce(lease);
      if (this.stopped || lease !== this.leaseId) return;
      if (ttl <= 0) {
        this.m.renewals.inc({ result: 'lost' });
        this.leaseLost(lease);
        return;
      }
      this.m.renewals.inc({ result: 'ok' });
      this.lastRenewalSent = Math.max(this.lastRenewalSent, sent);
      if (this.renewFailing) this.opts.log.info({ lease }, 'fleet: lease renewals work again');
      this.renewFailing = false;
      if (this.fencedState && !this.fenced) {
        this.fencedState = false;
        this.opts.log.warn({ lease }, 'fleet: unfenced (the lease was renewed in time)');
        this.emit('unfenced');
      }
    } catch (err) {
      if (this.stopped) return;
      this.m.renewals.inc({ result: 'failed' });
      if (!this.renewFailing) this.opts.log.warn({ lease, err: (err as Error).message }, 'fleet: lease renewal failed (retrying every renew interval)');
      this.renewFailing = true;
    } finally {
      this.renewing = false;
    }
  }

  private checkFence(): void {
    if (this.stopped || this.fencedState || !this.fenced) return;
    this.fencedState = true;
    const age = Math.round(performance.now() - this.lastRenewalSent);
    this.opts.log.warn({ lease: this.leaseId, sinceRenewalMs: age }, 'fleet: fenced (no lease renewal in ttl - margin): vassals must stop');
    this.emit('fenced');
  }

  private leaseLost(lease: string): void {
    this.opts.log.warn({ lease }, 'fleet: the lease is gone (expired or revoked): registering again');
    this.registered = false;
    this.leaseId = undefined;
    this.mine.clear();
    if (!this.fencedState) {
      this.fencedState = true;
      this.emit('fenced');
    }
    this.emit('lease-lost');
    void this.reregister();
  }

  private async reregister(): Promise<void> {
    if (this.reregistering) return;
    this.reregistering = true;
    try {
      await this.untilDone('fleet: registering again failed', async () => {
        await this.register();
        if (this.stopped) return;
        this.fencedState = false;
        this.opts.log.info({ lease: this.leaseId }, 'fleet: registered again');
        this.emit('registered');
      });
    } finally {
      this.reregistering = false;
    }
  }

  /** attempt() again until it succeeds or the store stops: 200 ms after
   *  a failure (logged as `failed`), doubling up to BACKOFF_MAX_MS. */
  private async untilDone(failed: string, attempt: () => Promise<void>): Promise<void> {
    let delay = 200;
    while (!this.stopped) {
      try {
        await attempt();
        return;
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message, retryMs: delay }, failed);
        await sleep(delay);
        delay = Math.min(delay * 2, BACKOFF_MAX_MS);
      }
    }
  }

  // ---- the snapshot and the watch ----

  private async readAll(): Promise<void> {
    const res = await this.etcd!.client.getAll().prefix(this.opts.prefix + '/').exec();
    const snap = emptySnapshot();
    for (const kv of res.kvs) this.applyKv(snap, kv, false);
    snap.revision = res.header.revision;
    this.snap = snap;
    this.appliedRev = BigInt(res.header.revision);
    this.m.resyncs.inc();
  }

  /** Watches the prefix from rev; resolves once etcd created the watch. */
  private watchFrom(rev: bigint): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const w = this.etcd!.client.watch().prefix(this.opts.prefix + '/').startRevision(rev.toString()).watcher();
    this.watcher = w;
    const connected = new Promise<void>((resolve) => w.once('connected', () => resolve()));
    w.on('data', (res: IWatchResponse) => { if (this.watcher === w) this.applyBatch(res); });
    // cancelled by etcd (compacted past rev, ...): read everything again
    w.on('error', (err: Error) => {
      if (this.watcher !== w) return;
      this.watcher = undefined;
      this.opts.log.warn({ err: err.message }, 'fleet: watch cancelled: reading the fleet again');
      void this.resync();
    });
    // the stream broke: a new watch from the last revision applied (etcd3
    // would resume from the revision of its create answer, which can skip
    // events not yet delivered)
    w.on('disconnected', () => {
      if (this.watcher !== w) return;
      this.watcher = undefined;
      w.cancel().catch(() => undefined);
      this.opts.log.info({ revision: String(this.appliedRev + 1n) }, 'fleet: the watch stream broke: watching again');
      this.rewatchTimer = setTimeout(() => { if (!this.watcher && !this.resyncing) void this.watchFrom(this.appliedRev + 1n); }, REWATCH_MS);
      this.rewatchTimer.unref();
    });
    return connected;
  }

  private async resync(): Promise<void> {
    if (this.resyncing) return;
    this.resyncing = true;
    try {
      await this.untilDone('fleet: reading the fleet failed', async () => {
        await this.readAll();
        this.emit('change');
        void this.watchFrom(this.appliedRev + 1n);
      });
    } finally {
      this.resyncing = false;
    }
  }

  private applyBatch(res: IWatchResponse): void {
    let changed = false;
    for (const ev of res.events) {
      if (BigInt(ev.kv.mod_revision) <= this.appliedRev) continue;   // seen before a re-watch
      const kind = this.applyKv(this.snap, ev.kv, ev.type === 'Delete');
      if (kind) {
        changed = true;
        this.m.watchEvents.inc({ kind, type: ev.type === 'Delete' ? 'delete' : 'put' });
      }
    }
    const rev = BigInt(res.header.revision);
    if (rev > this.appliedRev) {
      this.appliedRev = rev;
      this.snap.revision = res.header.revision;
    }
    if (changed) this.emit('change');
  }

  /** Applies one key to snap; its kind if it is one of the fleet's keys. */
  private applyKv(snap: FleetSnapshot, kv: IKeyValue, deleted: boolean): Kind | undefined {
    return applyFleetKey(this.opts.prefix, snap, kv.key.toString('utf8'), kv.value.toString('utf8'), kv.lease, deleted,
      (key) => this.opts.log.warn({ key }, 'fleet: a value that is not what this key holds (ignored)'));
  }

  // ---- claims ----

  private async tryClaim(vassal: string, address?: string): Promise<ClaimResult> {
    checkName('vassal', vassal);
    if (address !== undefined) checkName('address', address);
    const lease = this.lease;
    if (!lease || this.fenced) return { ok: false, reason: 'fenced', message: `fleet-host ${this.opts.host} is fenced (no lease renewal in time)` };
    const pKey = buf(this.key('placement', vassal));
    const aKey = address !== undefined ? buf(this.key('addresses', address)) : undefined;
    const record: PlacementRecord = { host: this.opts.host, ...(address !== undefined ? { address } : {}) };
    let addressIsOurs = address !== undefined && this.snap.addresses.get(address) === vassal;
    try {
      for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        const compare: ICompare[] = [{ key: pKey, target: 'Version', result: 'Equal', version: 0 }];
        const success: IRequestOp[] = [{ request_put: { key: pKey, value: buf(placementValue(record)), lease } }];
        const failure: IRequestOp[] = [{ request_range: { key: pKey } }];
        if (aKey) {
          if (addressIsOurs) {
            compare.push({ key: aKey, target: 'Value', result: 'Equal', value: buf(vassal) });
          } else {
            compare.push({ key: aKey, target: 'Version', result: 'Equal', version: 0 });
            success.push({ request_put: { key: aKey, value: buf(vassal) } });
          }
          failure.push({ request_range: { key: aKey } });
        }
        const res = await this.etcd!.client.kv.txn({ compare, success, failure });
        if (res.succeeded) {
          this.mine.set(vassal, record);
          return { ok: true };
        }
        const placed = res.responses[0]?.response_range?.kvs[0];
        if (placed) {
          const p = parsePlacementValue(placed.value.toString('utf8'));
          // our own earlier claim (a retry after a lost answer): already ours
          if (p?.host === this.opts.host && placed.lease === lease && p.address === address) return { ok: true };
          return { ok: false, reason: 'placed', host: p?.host ?? '?' };
        }
        if (aKey) {
          const held = res.responses[1]?.response_range?.kvs[0];
          const holder = held?.value.toString('utf8');
          if (holder !== undefined && holder !== vassal) return { ok: false, reason: 'address', holder };
          addressIsOurs = holder === vassal;
        }
      }
      return { ok: false, reason: 'error', message: `the keys of ${vassal} changed during each of ${CLAIM_ATTEMPTS} attempts` };
    } catch (err) {
      return { ok: false, reason: 'error', message: (err as Error).message };
    }
  }

  private async tryClaimAddress(vassal: string, address: string): Promise<ClaimResult> {
    checkName('vassal', vassal);
    checkName('address', address);
    if (!this.lease || this.fenced) return { ok: false, reason: 'fenced', message: `fleet-host ${this.opts.host} is fenced (no lease renewal in time)` };
    const key = buf(this.key('addresses', address));
    try {
      const res = await this.etcd!.client.kv.txn({
        compare: [{ key, target: 'Version', result: 'Equal', version: 0 }],
        success: [{ request_put: { key, value: buf(vassal) } }],
        failure: [{ request_range: { key } }],
      });
      if (res.succeeded) return { ok: true };
      const holder = res.responses[0]?.response_range?.kvs[0]?.value.toString('utf8');
      if (holder === undefined || holder === vassal) return { ok: true };
      return { ok: false, reason: 'address', holder };
    } catch (err) {
      return { ok: false, reason: 'error', message: (err as Error).message };
    }
  }
}
