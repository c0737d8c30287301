// lifecycle.ts: starts a process's components in order, stops them in
// reverse. A failed start stops the failing component (it undoes its partial
// start) and then every component that had started, in reverse, and reports
// which failed and why. The first end request (a fatal router event, an ended
// pty-exec command, a signal: see runner.ts) is kept for whoever runs the
// lifecycle; a start that is asked to end meanwhile starts nothing more.
import type { Logger } from '../log';
import type { Component, EndRequest } from './component';

/** A failed start: the component that failed, its error, and the components
 *  that had started before it (all stopped again by the time this is thrown). */
export class StartError extends Error {
  constructor(readonly component: string, readonly reason: unknown, readonly started: readonly string[]) {
    super(reason instanceof Error ? reason.message : String(reason));
  }
}

export class Lifecycle {
  private readonly running: Component[] = [];
  private state: 'new' | 'starting' | 'started' | 'stopped' = 'new';
  private request?: EndRequest;
  private resolveEnded!: (request: EndRequest) => void;
  /** Resolves with the first end request. */
  readonly ended = new Promise<EndRequest>((resolve) => { this.resolveEnded = resolve; });

  constructor(readonly components: readonly Component[], private readonly log: Logger) {
    const end = (r: EndRequest) => this.end(r);
    for (const c of components) c.onEnd?.(end);
  }

  /** The first end request, if any came. */
  get endRequest(): EndRequest | undefined {
    return this.request;
  }

  /** Asks whoever runs this lifecycle to stop it; later requests are ignored. */
  end(request: EndRequest): void {
    if (this.request) return;
    this.request = request;
    this.resolveEnded(request);
  }

  /** Starts each component in order; throws a StartError once what had
   *  started is stopped again. Returns early, with the rest not started,
   *  when an end was requested meanwhile (stop() then stops what started). */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`the lifecycle was already ${this.state === 'starting' ? 'starting' : 'started'}`);
    this.state = 'starting';
    for (const c of this.components) {
      if (this.request) break;
      try {
        await c.start();
      } catch (err) {
        const started = this.running.map((r) => r.name);
        this.running.push(c);  // its stop undoes its partial start
        await this.stop();
        throw new StartError(c.name, err, started);
      }
      this.running.push(c);
    }
    if (this.state === 'starting') this.state = 'started';
  }

  /** Stops what started, in reverse. A component that fails to stop is
   *  logged and the others still stop; resolves false if any failed. */
  async stop(): Promise<boolean> {
    this.state = 'stopped';
    let ok = true;
    while (this.running.length) {
      const c = this.running.pop()!;
      try {
        await c.stop();
      } catch (err) {
        ok = false;
        this.log.error({ component: c.name, err: (err as Error).message }, 'stop failed');
      }
    }
    return ok;
  }

  /** SIGHUP: every running component that can reload does. */
  reload(why: string): void {
    for (const c of this.running) c.reload?.(why);
  }
}
