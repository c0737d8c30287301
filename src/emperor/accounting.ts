// accounting.ts: the emperor's traffic totals per vassal *name*, built from
// the router's cumulative per-peer counters. A peer (one vassal connection)
// has an id that is never reused within one router run; its counters start at
// 0 and only grow. The emperor adds each peer's growth (current - last seen)
// to the vassal the peer belongs to, so a vassal's totals outlive its
// connections (reconnects, vassal restarts) and, with routerRestarted(), the
// router process itself. The emperor owns the totals: what was restored from
// the accounting log at start (restore) plus every delta seen since.
//
// Two sources report a peer's counters: the snapshot the router process sends
// every second, and the final counters on its peer-down event. A snapshot
// taken before the peer went down may arrive after the event; the ids of
// ended peers are remembered (for ENDED_TTL_MS, at most MAX_ENDED of them) so
// such a snapshot never counts them again.
//
// Nothing here does I/O; the caller passes the clock (ms since the epoch).

/** Counters of one peer, cumulative since it connected. The router's
 *  PeerStats satisfies this structurally. out: from the vassal toward the
 *  host; in: toward the vassal. */
export type PeerCounters = {
  id: number;
  ipPacketsIn: number; ipPacketsOut: number;
  ipBytesIn: number; ipBytesOut: number;
  drops: Record<string, number>;
};

/** A vassal's usage: in a period (an interval) or since accounting began (totals). */
export type Usage = {
  bytesIn: number; bytesOut: number;
  packetsIn: number; packetsOut: number;
  drops: Record<string, number>;
};

/** One vassal's usage in one interval [start, end) (ms since the epoch), with
 *  its cumulative totals at the end of the interval. */
export type IntervalRecord = { vassal: string; start: number; end: number; usage: Usage; total: Usage };

/** Current rates over the last RATE_WINDOW_MS of observations. */
export type Rates = {
  bitsPerSecIn: number; bitsPerSecOut: number;
  packetsPerSecIn: number; packetsPerSecOut: number;
  dropsPerSec: number;
};

/** How long an ended peer id is remembered. Snapshots come every second;
 *  one older than this would be a router far behind its own IPC. */
export const ENDED_TTL_MS = 60_000;
/** At most this many ended ids are remembered (the oldest are forgotten
 *  first), whatever the churn of connections. */
export const MAX_ENDED = 65_536;
/** Rates are the growth of the totals between the oldest and the newest
 *  observation within this window (with 1 s snapshots: 4-5 s of traffic). */
export const RATE_WINDOW_MS = 5_000;

export function zeroUsage(): Usage {
  return { bytesIn: 0, bytesOut: 0, packetsIn: 0, packetsOut: 0, drops: {} };
}

export function copyUsage(u: Usage): Usage {
  return { bytesIn: u.bytesIn, bytesOut: u.bytesOut, packetsIn: u.packetsIn, packetsOut: u.packetsOut, drops: { ...u.drops } };
}

/** to += from (in place). */
export function addUsage(to: Usage, from: Usage): void {
  to.bytesIn += from.bytesIn;
  to.bytesOut += from.bytesOut;
  to.packetsIn += from.packetsIn;
  to.packetsOut += from.packetsOut;
  for (const [reason, n] of Object.entries(from.drops)) {
    if (n !== 0) to.drops[reason] = (to.drops[reason] ?? 0) + n;
  }
}

function dropSum(u: Usage): number {
  let n = 0;
  for (const v of Object.values(u.drops)) n += v;
  return n;
}

function countersOf(p: PeerCounters): Usage {
  return { bytesIn: p.ipBytesIn, bytesOut: p.ipBytesOut, packetsIn: p.ipPacketsIn, packetsOut: p.ipPacketsOut, drops: { ...p.drops } };
}

/** current - last, or current whole when any counter went backwards (the
 *  counters were reset: a new peer that started at 0). */
function growth(current: Usage, last: Usage): Usage {
  const d: Usage = {
    bytesIn: current.bytesIn - last.bytesIn, bytesOut: current.bytesOut - last.bytesOut,
    packetsIn: current.packetsIn - last.packetsIn, packetsOut: current.packetsOut - last.packetsOut,
    drops: {},
  };
  let reset = d.bytesIn < 0 || d.bytesOut < 0 || d.packetsIn < 0 || d.packetsOut < 0;
  for (const [reason, n] of Object.entries(last.drops)) {
    if ((current.drops[reason] ?? 0) < n) reset = true;
  }
  if (reset) return copyUsage(current);
  for (const [reason, n] of Object.entries(current.drops)) {
    const g = n - (last.drops[reason] ?? 0);
    if (g !== 0) d.drops[reason] = g;
  }
  return d;
}

type Sample = { t: number; bytesIn: number; bytesOut: number; packetsIn: number; packetsOut: number; drops: number };

export class VassalAccounting {
  private readonly total = new Map<string, Usage>();     // by vassal name: restored + every delta
  private readonly interval = new Map<string, Usage>();  // by vassal name: deltas since intervalStart
  private intervalStart: number;
  private readonly seen = new Map<number, { name: string; last: Usage }>(); // live peers counted so far
  private readonly ended = new Map<number, number>();    // peer id -> when it ended (insertion = time order)
  private readonly samples = new Map<string, Sample[]>(); // by vassal name: totals at recent observations
  private unattributedUsage = zeroUsage();

  /** start: when the first interval begins (ms since the epoch). */
  constructor(start: number) {
    this.intervalStart = start;
  }

  /** Totals recovered at start (from the accounting log): each name's totals
   *  become these (replacing, not adding). The names are known from then on:
   *  they get interval records, zero usage included, until forget(name). */
  restore(totals: Map<string, Usage>): void {
    for (const [name, u] of totals) {
      this.total.set(name, copyUsage(u));
      if (!this.interval.has(name)) this.interval.set(name, zeroUsage());
    }
  }

  /** A snapshot of the router's peers. Each peer with a name (nameOf, or the
   *  name it was counted under before) adds its growth since last seen to its
   *  vassal. A peer without a name yet is left unseen: its counters keep
   *  growing in the router and are counted whole once it has a name. */
  observe(peers: PeerCounters[], nameOf: (id: number) => string | undefined, now: number): void {
    for (const p of peers) {
      if (this.ended.has(p.id)) continue;             // a snapshot from before its peer-down
      const prev = this.seen.get(p.id);
      const name = nameOf(p.id) ?? prev?.name;
      if (name === undefined) continue;
      const current = countersOf(p);
      this.add(name, prev ? growth(current, prev.last) : current);
      this.seen.set(p.id, { name, last: current });
    }
    this.sample(now);
    this.pruneEnded(now);
  }

  /** A peer went down. final: its last counters (undefined: not reported; its
   *  growth since the last snapshot is then lost). name: its vassal, or
   *  undefined to use the name it was counted under. The id is remembered as
   *  ended, so a later stale snapshot does not count it again. */
  peerDown(id: number, final: PeerCounters | undefined, name: string | undefined, now: number): void {
    if (this.ended.has(id)) return;
    const prev = this.seen.get(id);
    this.seen.delete(id);
    this.ended.set(id, now);
    this.pruneEnded(now);
    if (!final) return;
    const current = countersOf(final);
    const delta = prev ? growth(current, prev.last) : current;
    const owner = name ?? prev?.name;
    if (owner === undefined) addUsage(this.unattributedUsage, delta);
    else this.add(owner, delta);
  }

  /** The router process restarted: the new run numbers its peers anew, so
   *  every per-peer memory (live and ended) is dropped. Totals stay. Call it
   *  before the new router's first snapshot; the old peers' growth since
   *  their last snapshot is lost (at most one snapshot period). */
  routerRestarted(): void {
    this.seen.clear();
    this.ended.clear();
  }

  /** Cumulative usage of a vassal (restored + counted), or undefined if unknown. */
  totals(name: string): Usage | undefined {
    const u = this.total.get(name);
    return u && copyUsage(u);
  }

  /** The vassals known: restored, or counted since. */
  names(): string[] {
    return [...this.total.keys()];
  }

  /** Usage of peers that went down before any name was known for them:
   *  counted nowhere else (a diagnostic; 0 when names come in time). */
  unattributed(): Usage {
    return copyUsage(this.unattributedUsage);
  }

  /** The vassal's rates: growth of its totals between the oldest and the
   *  newest observation of the last RATE_WINDOW_MS, divided by the time
   *  between them. Zero with fewer than two observations in the window, or
   *  when the newest is older than RATE_WINDOW_MS before now (if given). */
  rates(name: string, now?: number): Rates {
    const zero: Rates = { bitsPerSecIn: 0, bitsPerSecOut: 0, packetsPerSecIn: 0, packetsPerSecOut: 0, dropsPerSec: 0 };
    const s = this.samples.get(name);
    if (!s || s.length < 2) return zero;
    const a = s[0], b = s[s.length - 1];
    if (now !== undefined && now - b.t > RATE_WINDOW_MS) return zero;
    const secs = (b.t - a.t) / 1000;
    if (secs <= 0) return zero;
    return {
      bitsPerSecIn: ((b.bytesIn - a.bytesIn) * 8) / secs, bitsPerSecOut: ((b.bytesOut - a.bytesOut) * 8) / secs,
      packetsPerSecIn: (b.packetsIn - a.packetsIn) / secs, packetsPerSecOut: (b.packetsOut - a.packetsOut) / secs,
      dropsPerSec: (b.drops - a.drops) / secs,
    };
  }

  /** Ends the current interval at now: one record per known vassal (zero
   *  usage included) with its usage since the last take and its totals, and
   *  starts the next interval at now. */
  takeInterval(now: number): IntervalRecord[] {
    const start = this.intervalStart;
    const end = Math.max(now, start);
    const records: IntervalRecord[] = [];
    for (const [vassal, total] of this.total) {
      records.push({ vassal, start, end, usage: this.interval.get(vassal) ?? zeroUsage(), total: copyUsage(total) });
    }
    this.interval.clear();
    for (const name of this.total.keys()) this.interval.set(name, zeroUsage());
    this.intervalStart = end;
    return records;
  }

  /** The records of takeInterval could not be written: their usage goes back
   *  into the current interval, which now starts at their start, so the next
   *  take covers both. */
  returnInterval(records: IntervalRecord[]): void {
    for (const r of records) {
      if (!this.total.has(r.vassal)) continue;        // forgotten meanwhile
      let u = this.interval.get(r.vassal);
      if (!u) this.interval.set(r.vassal, (u = zeroUsage()));
      addUsage(u, r.usage);
      this.intervalStart = Math.min(this.intervalStart, r.start);
    }
  }

  /** A vassal removed from the emperor, after its last interval was written:
   *  its totals, interval and rates are dropped. A peer still connected
   *  under its name would start it again from 0. */
  forget(name: string): void {
    this.total.delete(name);
    this.interval.delete(name);
    this.samples.delete(name);
  }

  private add(name: string, d: Usage): void {
    let t = this.total.get(name);
    if (!t) this.total.set(name, (t = zeroUsage()));
    let i = this.interval.get(name);
    if (!i) this.interval.set(name, (i = zeroUsage()));
    addUsage(t, d);
    addUsage(i, d);
  }

  private sample(now: number): void {
    for (const [name, t] of this.total) {
      let s = this.samples.get(name);
      if (!s) this.samples.set(name, (s = []));
      s.push({ t: now, bytesIn: t.bytesIn, bytesOut: t.bytesOut, packetsIn: t.packetsIn, packetsOut: t.packetsOut, drops: dropSum(t) });
      while (s.length > 1 && s[0].t < now - RATE_WINDOW_MS) s.shift();
    }
  }

  private pruneEnded(now: number): void {
    for (const [id, t] of this.ended) {
      if (this.ended.size <= MAX_ENDED && t >= now - ENDED_TTL_MS) break;
      this.ended.delete(id);
    }
  }
}
