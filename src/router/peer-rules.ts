// peer-rules.ts: each vassal's own firewall rules as the router keeps them
// (RouterApi.setPeerRules): the sets every owner (the emperor) hands over,
// by vassal name and address, turned into the native list (native/
// peer_rules.h) with the counters of unchanged rules carried across a
// reload of the same vassal's rules (carryMap, as the router's own chains),
// and read back as the stats document's rows and /metrics'
// moat_vassal_firewall_rule_hits_total{vassal, chain, rule}.
import client from 'prom-client';
import type { PeerRuleSet, RouterStats } from '../native';
import type { CompiledRule } from '../rules/types';
import { carryMap } from '../rules/compile';
import { intToIpv4 } from '../addr';

/** One vassal's own rules, by its address (IPv4, host order; never 0). */
export interface VassalRules {
  name: string;
  addr: number;
  in: CompiledRule[];
  out: CompiledRule[];
}

interface RuleHits { rule: string; text: string; hits: number }
export interface VassalRuleRow { address: string; in: RuleHits[]; out: RuleHits[] }

export class PeerRuleBook {
  private readonly owners = new Map<string, VassalRules[]>();
  private readonly keys = new Map<string, number>();   // owner/name -> native key
  private nextKey = 1;
  /** What the native router was last given, by key (for carries and stats). */
  private sent = new Map<number, { owner: string; set: VassalRules }>();

  /** An owner's whole list (empty: it has none). */
  set(owner: string, list: VassalRules[]): void {
    if (list.length) this.owners.set(owner, list);
    else this.owners.delete(owner);
  }

  /** The list for NativeRouter.setPeerRules, one set per address (an owner
   *  added later wins; a set with no rule is left out), carries against what
   *  was last handed over. Call once per setPeerRules. */
  next(): PeerRuleSet[] {
    const byAddr = new Map<number, { owner: string; set: VassalRules }>();
    for (const [owner, list] of this.owners) {
      for (const set of list) if (set.addr !== 0 && (set.in.length || set.out.length)) byAddr.set(set.addr, { owner, set });
    }
    const sent = new Map<number, { owner: string; set: VassalRules }>();
    const out: PeerRuleSet[] = [];
    for (const x of byAddr.values()) {
      const id = `${x.owner}/${x.set.name}`;
      let key = this.keys.get(id);
      if (key === undefined) { key = this.nextKey++; this.keys.set(id, key); }
      const old = this.sent.get(key)?.set;
      out.push({
        key, addr: x.set.addr, in: x.set.in.map((r) => r.native), out: x.set.out.map((r) => r.native),
        carryIn: carryMap(old?.in ?? [], x.set.in), carryOut: carryMap(old?.out ?? [], x.set.out),
      });
      sent.set(key, x);
    }
    this.sent = sent;
    return out;
  }

  /** Per vassal name: its address and each rule's hits (the stats document's moat.vassal_rules). */
  rows(s: Pick<RouterStats, 'peerHits'>): Record<string, VassalRuleRow> {
    const out: Record<string, VassalRuleRow> = {};
    for (const h of s.peerHits ?? []) {
      const x = this.sent.get(h.key);
      if (!x) continue;   // a set the loop has not replaced yet
      const hits = (rules: CompiledRule[], counts: number[]) => rules.map((r, i) => ({ rule: r.origin, text: r.text, hits: counts[i] ?? 0 }));
      out[x.set.name] = { address: intToIpv4(x.set.addr), in: hits(x.set.in, h.in), out: hits(x.set.out, h.out) };
    }
    return out;
  }

  /** moat_vassal_firewall_rule_hits_total, read from stats() at each scrape. */
  register(registry: client.Registry, stats: () => Pick<RouterStats, 'peerHits'> | undefined): void {
    const book = this;
    new client.Counter({
      name: 'moat_vassal_firewall_rule_hits_total',
      help: 'Packets judged by each of a vassal\'s own firewall rules (vassal-firewall-in/out/file; rule = file:line), after the router\'s rules passed them',
      labelNames: ['vassal', 'chain', 'rule'], registers: [registry],
      collect() {
        this.reset();
        let s: Pick<RouterStats, 'peerHits'> | undefined;
        try { s = stats(); } catch { return; }
        if (!s) return;
        for (const [vassal, row] of Object.entries(book.rows(s))) {
          for (const chain of ['in', 'out'] as const) {
            for (const r of row[chain]) this.inc({ vassal, chain, rule: r.rule }, r.hits);
          }
        }
      },
    });
  }
}
