// routes.ts: the host routes that carry traffic between hosts. For each
// vassal etcd places on another live host, this host routes the vassal's
// address (/32) via that host's fleet-address, so the kernel sends a local
// vassal's packet for it (out of this router's tun) across the hosts'
// network, where that host's kernel hands it to its router. Routes are
// tagged with their own protocol number so a restart finds and replaces
// what an earlier run left.
import { execFileSync } from 'node:child_process';
import type { Logger } from '../log';

export const FLEET_ROUTE_PROTO = '77';

export class FleetRoutes {
  private installed = new Map<string, string>();   // address -> via

  constructor(private readonly log: Logger) {}

  /** Removes every fleet route (this run's and a crashed run's). */
  clear(): void {
    try { ip(['route', 'flush', 'proto', FLEET_ROUTE_PROTO]); } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot flush the fleet\'s routes');
    }
    this.installed.clear();
  }

  /** Makes the fleet routes exactly `want` (address -> via). */
  sync(want: ReadonlyMap<string, string>): void {
    for (const [addr, via] of this.installed) {
      if (want.get(addr) === via) continue;
      if (!want.has(addr)) {
        try { ip(['route', 'del', `${addr}/32`, 'proto', FLEET_ROUTE_PROTO]); } catch { /* already gone */ }
        this.log.info({ address: addr, was: via }, 'fleet route removed');
      }
      this.installed.delete(addr);
    }
    for (const [addr, via] of want) {
      if (this.installed.get(addr) === via) continue;
      try {
        ip(['route', 'replace', `${addr}/32`, 'via', via, 'proto', FLEET_ROUTE_PROTO]);
        this.installed.set(addr, via);
        this.log.info({ address: addr, via }, 'fleet route: a vassal on another host');
      } catch (err) {
        this.log.error({ address: addr, via, err: (err as Error).message }, 'cannot route to a vassal on another host');
      }
    }
  }

  get size(): number { return this.installed.size; }
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 });
}
