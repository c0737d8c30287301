// ipc-messages.ts: the one definition of the IPC protocol between the emperor
// and the router process it forks (`moat _router-process`), imported by both
// halves: RouterProcessHandle (router-process-handle.ts, in the emperor) and
// the router process's main (src/commands/router-process.ts). Messages are
// JSON objects on node's IPC channel, told apart by `t`. decode() is the one
// check of what arrives: a message of another shape is dropped, never acted on.
import type { OptionList } from '../config/types';
import type { LearnNetwork, PeerBinding, PeerLimit, PeerStats } from '../native';
import type { DropTo } from '../privileges';
import type { PeerEvent } from './router-api';
import type { VassalRules } from './peer-rules';

/** The hidden CLI word that runs the router process (not in --help). */
export const ROUTER_PROCESS_COMMAND = '_router-process';

/** Emperor -> router process. */
export type ToRouterProcess =
  | { t: 'start'; options: OptionList; user: DropTo; sections: string[] }   // sections: the stats keys the emperor serves
  | { t: 'sections'; keys: string[] }                   // the emperor's stats keys changed
  | { t: 'bindings'; owner: string; list: PeerBinding[]; learn?: LearnNetwork | null }
  | { t: 'limits'; owner: string; list: PeerLimit[] }
  | { t: 'peer-rules'; owner: string; list: VassalRules[] }
  | { t: 'reload'; why: string }
  | { t: 'stop' }
  | { t: 'stats-reply'; id: number; value: unknown }
  | { t: 'metrics-reply'; id: number; text: string };

/** Router process -> emperor. */
export type FromRouterProcess =
  | { t: 'started'; pid: number }
  | { t: 'failed'; reason: string; created?: boolean }   // created: its sockets existed (the emperor removes them)
  | { t: 'event'; name: PeerEvent; e: unknown }
  | { t: 'fatal'; reason: string }
  | { t: 'stats-request'; id: number; key: string; peers: PeerStats[] }   // peers: fresh for the emperor's rows
  | { t: 'peers'; peers: PeerStats[] }                  // every second
  | { t: 'metrics-request'; id: number };

const TO_ROUTER_PROCESS: ReadonlySet<string> = new Set(['start', 'sections', 'bindings', 'limits', 'peer-rules', 'reload', 'stop', 'stats-reply', 'metrics-reply']);
const FROM_ROUTER_PROCESS: ReadonlySet<string> = new Set(['started', 'failed', 'event', 'fatal', 'stats-request', 'peers', 'metrics-request']);

function decode<M extends { t: string }>(known: ReadonlySet<string>, m: unknown): M | undefined {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string' && known.has((m as { t: string }).t) ? m as M : undefined;
}

/** A message the router process received, or undefined if it is none of ours. */
export const decodeToRouterProcess = (m: unknown) => decode<ToRouterProcess>(TO_ROUTER_PROCESS, m);

/** A message the emperor received, or undefined if it is none of ours. */
export const decodeFromRouterProcess = (m: unknown) => decode<FromRouterProcess>(FROM_ROUTER_PROCESS, m);
