// runner.ts: a Lifecycle run as a process's main: start it, wait for the
// first end request, stop it, return the exit code. The process's signals are
// handled here and nowhere else:
//   - a process of its own ('main': `moat --ini`, `moat emperor`, the demo):
//     SIGTERM and SIGINT stop it (exit 0), SIGHUP reloads (the router's rules);
//   - the router process of `moat emperor` ('child'): its parent owns the
//     signals. SIGINT and SIGHUP are the parent's (a terminal's Ctrl-C reaches
//     both; the emperor forwards reloads over IPC); SIGTERM stops it only if
//     the parent has not done so within a grace period (it stops its vassals
//     first, then this process).
// Exit code: the end request's, or 1 when the start failed or a stop did.
import type { Logger } from '../log';
import { Lifecycle, StartError } from './lifecycle';

export const CHILD_SIGTERM_GRACE_MS = 10_000;

export interface RunOptions {
  log: Logger;
  signals?: 'main' | 'child';
  /** Called once every component started (not when an end came meanwhile). */
  started?(): void;
  /** Called instead of logging 'start failed' (what started is stopped by then). */
  startFailed?(err: StartError): void;
}

export async function runLifecycle(life: Lifecycle, opts: RunOptions): Promise<number> {
  const { log } = opts;
  const off = handleSignals(life, opts.signals ?? 'main', log);
  try {
    try {
      await life.start();
    } catch (err) {
      if (!(err instanceof StartError)) throw err;
      if (opts.startFailed) opts.startFailed(err);
      else log.error({ component: err.component, err: err.message }, 'start failed');
      return 1;
    }
    if (!life.endRequest) opts.started?.();
    const end = await life.ended;
    if (end.why) log[end.error ? 'error' : 'info'](end.fields ?? {}, end.why);
    return (await life.stop()) ? end.code : 1;
  } finally {
    off();
  }
}

/** Installs the mode's signal handlers; returns their removal. */
function handleSignals(life: Lifecycle, mode: 'main' | 'child', log: Logger): () => void {
  const stopOn = (signal: NodeJS.Signals) => () => life.end({ code: 0, why: 'stopping', fields: { signal } });
  const handlers: Array<[NodeJS.Signals, () => void]> = mode === 'main'
    ? [
      ['SIGTERM', stopOn('SIGTERM')],
      ['SIGINT', stopOn('SIGINT')],
      ['SIGHUP', () => life.reload('SIGHUP')],
    ]
    : [
      ['SIGINT', () => log.debug('SIGINT: left to the emperor')],
      ['SIGHUP', () => log.debug('SIGHUP: left to the emperor (it forwards reloads)')],
      ['SIGTERM', () => {
        log.info({ graceMs: CHILD_SIGTERM_GRACE_MS }, 'SIGTERM: the emperor stops this process after its vassals; stopping anyway if it has not by then');
        setTimeout(() => life.end({ code: 0 }), CHILD_SIGTERM_GRACE_MS).unref();
      }],
    ];
  for (const [signal, handler] of handlers) process.on(signal, handler);
  return () => { for (const [signal, handler] of handlers) process.off(signal, handler); };
}
