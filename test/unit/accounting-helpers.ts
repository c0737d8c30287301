// accounting-helpers.ts: a model of the router's side of accounting for the
// accounting tests: peers with cumulative counters, ids never reused within a
// run, snapshots, peer-down with final counters, and the truth (every byte
// and packet each vassal really sent or received) to compare against.
import type { PeerCounters, Usage } from '../../src/emperor/accounting';
import { addUsage, zeroUsage } from '../../src/emperor/accounting';

export type Traffic = { bytesIn: number; bytesOut: number; packetsIn: number; packetsOut: number; drop?: [string, number] };

export class FakeRouter {
  private nextId = 1;
  readonly peers = new Map<number, { name: string; named: boolean; c: PeerCounters }>();
  readonly truth = new Map<string, Usage>();

  connect(name: string, named = true): number {
    const id = this.nextId++;
    this.peers.set(id, { name, named, c: { id, ipPacketsIn: 0, ipPacketsOut: 0, ipBytesIn: 0, ipBytesOut: 0, drops: {} } });
    return id;
  }

  traffic(id: number, t: Traffic): void {
    const p = this.peers.get(id)!;
    p.c.ipBytesIn += t.bytesIn; p.c.ipBytesOut += t.bytesOut;
    p.c.ipPacketsIn += t.packetsIn; p.c.ipPacketsOut += t.packetsOut;
    const drops: Record<string, number> = {};
    if (t.drop && t.drop[1] > 0) {
      p.c.drops[t.drop[0]] = (p.c.drops[t.drop[0]] ?? 0) + t.drop[1];
      drops[t.drop[0]] = t.drop[1];
    }
    let u = this.truth.get(p.name);
    if (!u) this.truth.set(p.name, (u = zeroUsage()));
    addUsage(u, { bytesIn: t.bytesIn, bytesOut: t.bytesOut, packetsIn: t.packetsIn, packetsOut: t.packetsOut, drops });
  }

  learnName(id: number): void { this.peers.get(id)!.named = true; }
  nameAll(): void { for (const p of this.peers.values()) p.named = true; }

  /** The emperor's id -> name lookup (a name once the peer's address is
   *  bound). It still answers for a peer that went down (the emperor may
   *  learn of the peer-down late), the harder case for stale snapshots. */
  readonly nameOf = (id: number): string | undefined => {
    const p = this.peers.get(id);
    return p ? (p.named ? p.name : undefined) : this.endedNames.get(id);
  };
  private readonly endedNames = new Map<number, string>();

  snapshot(): PeerCounters[] {
    return [...this.peers.values()].map((p) => ({ ...p.c, drops: { ...p.c.drops } }));
  }

  /** The peer goes down: its final counters; the peer is gone. */
  down(id: number): { final: PeerCounters; name: string | undefined } {
    const p = this.peers.get(id)!;
    this.peers.delete(id);
    if (p.named) this.endedNames.set(id, p.name);
    return { final: { ...p.c, drops: { ...p.c.drops } }, name: p.named ? p.name : undefined };
  }

  /** A new router run: no peers, ids from 1 again. */
  restart(): void {
    this.peers.clear();
    this.endedNames.clear();
    this.nextId = 1;
  }

  liveIds(): number[] { return [...this.peers.keys()]; }
}

/** Usage with zero-valued drop reasons removed, for comparisons. */
export function norm(u: Usage | undefined): Usage {
  const out = zeroUsage();
  if (u) addUsage(out, u);
  return out;
}

export function sum(us: Usage[]): Usage {
  const out = zeroUsage();
  for (const u of us) addUsage(out, u);
  return out;
}
