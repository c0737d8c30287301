// component.ts: the one shape of everything a moat process runs (a router or
// the handle on its process, exec-as-root hooks, the emperor, a device, pty
// servers, a privilege drop). Each entry point lists its components in start
// order and hands the list to a Lifecycle (lifecycle.ts), which starts them in
// order and stops them in reverse; nothing else starts or stops them.

/** Asks the process to stop every component and exit with `code`. `why` is
 *  logged (at error level when `error`) with `fields`; without `why` nothing is. */
export interface EndRequest {
  code: number;
  why?: string;
  error?: boolean;
  fields?: Record<string, unknown>;
}

export type End = (request: EndRequest) => void;

export interface Component {
  /** For logs and errors ('router', 'exec-as-root', 'emperor', ...). */
  readonly name: string;
  /** Brings it up; a throw (or rejection) fails the whole start. */
  start(): Promise<void> | void;
  /** Takes it down; called only after its start succeeded, once. */
  stop(): Promise<void> | void;
  /** SIGHUP: re-read what can change while running (the router's rules). */
  reload?(why: string): void;
  /** Called once, before any start: a component that can end the process
   *  (its router failed, its pty-exec command ended) keeps `end` for then. */
  onEnd?(end: End): void;
}
