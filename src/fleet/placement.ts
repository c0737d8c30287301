// placement.ts: which vassals this host claims and which it gives up, from
// the fleet as etcd last said. Pure: the agent (fleet-agent.ts) acts on the
// plan through etcd transactions, so two hosts deciding alike still leave
// each vassal on one host: the transaction lets only the first claim win.
//   - A pinned vassal (vassal-host) is claimed only by its host, and given
//     up by any other host that holds it (its pin changed).
//   - Otherwise a vassal goes to the live host with the fewest vassals (ties:
//     the first name); any host claims it once it stayed unplaced longer
//     than graceMs (the chosen host may be stuck or slow).
//   - A vassal whose key is gone is given up (and its address freed).
import type { FleetSnapshot } from './types';

export interface Wanted { address?: string; pin?: string }

export interface Plan {
  claim: Array<{ name: string; address?: string }>;
  release: string[];
  /** The vassals etcd places on this host (the emperor runs these). */
  mine: string[];
}

export function placementPlan(me: string, snap: FleetSnapshot, wanted: ReadonlyMap<string, Wanted>,
  unplacedSince: ReadonlyMap<string, number>, now: number, graceMs: number): Plan {
  const count = new Map<string, number>();
  for (const h of snap.hosts.keys()) count.set(h, 0);
  for (const p of snap.placements.values()) if (count.has(p.host)) count.set(p.host, count.get(p.host)! + 1);
  const plan: Plan = { claim: [], release: [], mine: [] };
  for (const [name, p] of snap.placements) {
    if (p.host !== me) continue;
    const w = wanted.get(name);
    if (!w || (w.pin && w.pin !== me)) plan.release.push(name);
    else plan.mine.push(name);
  }
  for (const name of [...wanted.keys()].sort()) {
    if (snap.placements.has(name)) continue;
    const w = wanted.get(name)!;
    const address = w.address ?? learnedAddress(snap, name);
    if (w.pin) {
      if (w.pin === me) plan.claim.push({ name, address });
      continue;
    }
    const target = leastLoaded(count);
    if (target === undefined) continue;
    count.set(target, count.get(target)! + 1);
    const waited = now - (unplacedSince.get(name) ?? now);
    if (target === me || waited > graceMs) plan.claim.push({ name, address });
  }
  return plan;
}

/** The address the fleet holds for a vassal (learned on some host), if any. */
export function learnedAddress(snap: FleetSnapshot, name: string): string | undefined {
  for (const [a, v] of snap.addresses) if (v === name) return a;
  return undefined;
}

function leastLoaded(count: ReadonlyMap<string, number>): string | undefined {
  let best: string | undefined;
  for (const [h, n] of [...count].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (best === undefined || n < count.get(best)!) best = h;
  }
  return best;
}
