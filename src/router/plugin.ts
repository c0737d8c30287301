// plugin.ts: what hangs off the router's lifecycle (emperor, cron, pty...).
// Arrows point one way: plugins know the router, the router knows only this.
import type { Router } from './router';

export interface RouterPlugin {
  readonly name: string;
  /** Runs once the router's tun device and socket exist, in registration order. */
  start?(router: Router): Promise<void> | void;
  /** Runs before the router stops, in reverse order. */
  stop?(router: Router): Promise<void> | void;
}
