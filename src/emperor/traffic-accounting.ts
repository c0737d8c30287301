// traffic-accounting.ts: the emperor's side of accounting by vassal name
// (docs/accounting.md). Every second it hands the router's per-peer counters
// to VassalAccounting (accounting.ts) with the emperor's peer -> vassal name
// mapping; a peer's last counters come on its peer-down event (the emperor
// passes them on: peerDown). With
// accounting-log, every accounting-interval it appends the interval's
// records (accounting-log.ts); at a clean stop it waits (briefly) for the
// vassals' peers to go down and appends the interval in progress, so a
// restart neither loses traffic nor counts it twice.
import type { Logger } from '../log';
import type { PeerStats } from '../native';
import type { RouterApi } from '../router/router-api';
import { AccountingLog } from './accounting-log';
import { Rates, Usage, VassalAccounting } from './accounting';

const SAMPLE_MS = 1000;
const STOP_WAIT_MS = 3000;   // for the stopped vassals' peer-down events (over IPC from the router process)

export interface AccountingOptions { log?: string; intervalMs: number }

export class TrafficAccounting {
  private readonly acc = new VassalAccounting(Date.now());
  private file?: AccountingLog;
  private sampleTimer?: NodeJS.Timeout;
  private intervalTimer?: NodeJS.Timeout;
  private readonly live = new Set<number>();   // peer ids seen, not yet down
  private readonly retired = new Set<string>(); // names to forget once their last interval is written
  private restored: string[] = [];

  constructor(private readonly router: RouterApi, private readonly nameOf: (peerId: number) => string | undefined,
    private readonly opts: AccountingOptions, private readonly log: Logger) {}

  /** Opens the accounting log (its totals restored) and starts sampling. Throws if the log cannot be opened. */
  start(): void {
    if (this.opts.log) {
      const file = new AccountingLog(this.opts.log, { warn: (m) => this.log.warn({ accountingLog: this.opts.log }, m) });
      const r = file.open();
      for (const w of r.warnings) this.log.warn({ accountingLog: this.opts.log }, w);
      this.acc.restore(r.totals);
      this.restored = [...r.totals.keys()];
      this.file = file;
      this.log.info({ accountingLog: this.opts.log, intervalS: this.opts.intervalMs / 1000, vassals: r.totals.size }, 'accounting log open: totals restored');
      this.intervalTimer = setInterval(() => this.writeInterval(), this.opts.intervalMs);
    }
    this.sampleTimer = setInterval(() => this.sample(), SAMPLE_MS);
  }

  /** After the emperor's first scan: restored names no vassal file has any more are dropped. */
  settle(names: Set<string>): void {
    for (const n of this.restored.splice(0)) if (!names.has(n)) this.forgetNow(n);
  }

  /** A vassal removed for good: its totals go once its last interval is written. */
  retire(name: string): void {
    if (this.file) this.retired.add(name);
    else this.acc.forget(name);
  }

  totals(name: string): Usage | undefined { return this.acc.totals(name); }
  rates(name: string): Rates { return this.acc.rates(name, Date.now()); }

  /** The vassals' peers are gone (their vassals stopped): the interval in progress is appended. */
  async stop(): Promise<void> {
    clearInterval(this.sampleTimer);
    clearInterval(this.intervalTimer);
    for (let waited = 0; this.live.size && waited < STOP_WAIT_MS; waited += 50) await new Promise((r) => setTimeout(r, 50));
    if (this.live.size) this.log.warn({ peers: this.live.size }, 'accounting: some vassal connections did not report their last counters before the stop');
    this.sample();
    this.writeInterval();
    this.file?.close();
    this.file = undefined;
  }

  private sample(): void {
    let peers: PeerStats[];
    try {
      if (!this.router.running) return;
      peers = this.router.stats().peers;
    } catch { return; }   // stopping
    for (const p of peers) if (this.nameOf(p.id) !== undefined) this.live.add(p.id);
    this.acc.observe(peers, this.nameOf, Date.now());
  }

  /** A peer's last counters (its peer-down event; the emperor calls this before it forgets the peer's name). */
  peerDown(e: { id: number; stats?: PeerStats }): void {
    this.acc.peerDown(e.id, e.stats, this.nameOf(e.id), Date.now());
    this.live.delete(e.id);
  }

  private writeInterval(): void {
    if (!this.file) return;
    const records = this.acc.takeInterval(Date.now());
    try {
      this.file.append(records);
    } catch (err) {
      this.acc.returnInterval(records);
      this.log.error({ accountingLog: this.opts.log, err: (err as Error).message }, 'accounting records not written: kept for the next interval');
      return;
    }
    for (const n of this.retired) this.forgetNow(n);
    this.retired.clear();
  }

  private forgetNow(name: string): void {
    this.acc.forget(name);
    try { this.file?.forget(name); } catch (err) { this.log.warn({ vassal: name, err: (err as Error).message }, 'accounting: cannot drop a removed vassal from the state file'); }
  }
}
