// router-process.ts: `moat _router-process` (hidden, not in --help): the
// router of `moat emperor`, forked by the emperor with an IPC channel (see
// src/router/router-process.ts for the messages). It builds only the Router
// from the options it is sent, starts it as root (tun device, socket, stats
// and metrics servers: the standalone path) and drops to the router user:
// from then on it holds no capability. The emperor
// stays root to spawn vassals; this process only moves packets.
//
// It lives only as long as the emperor: when the IPC channel closes (the
// emperor died, even by SIGKILL) it stops and exits. SIGINT and SIGHUP are
// the emperor's to handle (a terminal's Ctrl-C reaches both); SIGTERM stops
// it only if the emperor has not done so within a grace period.
import fs from 'node:fs';
import path from 'node:path';
import { routerConfig } from '../config/router-config';
import { setLogLevel, logger } from '../log';
import { Router } from '../router/router';
import { dropPrivileges } from '../privileges';
import type { ToChild, ToParent } from '../router/router-process';

const REQUEST_TIMEOUT_MS = 2000;
const SIGTERM_GRACE_MS = 10_000;
const PEERS_EVERY_MS = 1000;

export async function routerProcessCommand(): Promise<number> {
  if (!process.send || !process.connected) {
    process.stderr.write('moat: _router-process is internal: `moat emperor` starts it\n');
    return 2;
  }
  // process.send is asynchronous and the process exits right after its last
  // message (see cli.ts): flush() waits until every message was handed over.
  const inFlight = new Set<Promise<void>>();
  const send = (m: ToParent) => {
    if (!process.connected) return;
    const p = new Promise<void>((resolve) => { process.send!(m, undefined, {}, () => resolve()); });
    inFlight.add(p);
    void p.then(() => inFlight.delete(p));
  };
  const flush = async () => { await Promise.race([Promise.all([...inFlight]), new Promise((r) => setTimeout(r, 1000).unref())]); };
  const start = await new Promise<Extract<ToChild, { t: 'start' }> | undefined>((resolve) => {
    process.once('message', (m: ToChild) => resolve(m.t === 'start' ? m : undefined));
    process.once('disconnect', () => resolve(undefined));
  });
  if (!start) return 1;
  const level = start.options.filter((o) => o.key === 'log-level').pop();
  if (level) setLogLevel(level.value);
  const log = logger().child({ component: 'router-process' });

  let router: Router;
  try {
    router = new Router(routerConfig(start.options));
  } catch (err) {
    send({ t: 'failed', reason: (err as Error).message });
    return 1;
  }
  const cfg = router.config;

  // Requests to the emperor (its stats section, its metrics), answered or
  // timed out: a busy or stopping emperor never blocks a stats read.
  let nextId = 1;
  const pending = new Map<number, (v: unknown) => void>();
  const ask = <T>(m: (id: number) => ToParent, fallback: T): Promise<T> => new Promise((resolve) => {
    const id = nextId++;
    const timer = setTimeout(() => { pending.delete(id); resolve(fallback); }, REQUEST_TIMEOUT_MS);
    pending.set(id, (v) => { clearTimeout(timer); pending.delete(id); resolve(v as T); });
    if (process.connected) send(m(id)); else pending.get(id)!(fallback);
  });
  router.addStatsSource(() => ask((id) => ({ t: 'stats-request', id, peers: router.running ? router.stats().peers : [] }), {}));
  router.addMetricsSource(() => ask((id) => ({ t: 'metrics-request', id }), ''));
  for (const name of ['peer-up', 'peer-down', 'peer-address'] as const) {
    router.on(name, (e: unknown) => send({ t: 'event', name, e }));
  }

  let stopping: Promise<number> | undefined;
  const stop = (code: number): Promise<number> => (stopping ??= router.stop().then(() => code, (err: Error) => {
    log.error({ err: err.message }, 'stop failed');
    return 1;
  }));
  let fatal: string | undefined;
  router.on('fatal', (reason: string) => {
    fatal = reason;
    send({ t: 'fatal', reason });
    void stop(1);
  });

  const done = new Promise<number>((resolve) => {
    process.on('message', (m: ToChild) => {
      switch (m.t) {
        case 'bindings': router.setPluginBindings(m.owner, m.list); break;
        case 'reload': router.reloadRules(m.why); break;
        case 'stop': stop(0).then(resolve); break;
        case 'stats-reply': pending.get(m.id)?.(m.sections); break;
        case 'metrics-reply': pending.get(m.id)?.(m.text); break;
      }
    });
    process.on('disconnect', () => {
      for (const f of [...pending.values()]) f(undefined);
      if (stopping) { stopping.then(resolve); return; }
      log.error('the emperor process is gone: stopping the router');
      stop(1).then(resolve);
    });
    router.on('fatal', () => stop(1).then(resolve));
  });
  process.on('SIGINT', () => log.debug('SIGINT: left to the emperor'));
  process.on('SIGHUP', () => log.debug('SIGHUP: left to the emperor (it forwards reloads)'));
  process.on('SIGTERM', () => {
    log.info({ graceMs: SIGTERM_GRACE_MS }, 'SIGTERM: the emperor stops this process after its vassals; stopping anyway if it has not by then');
    setTimeout(() => { void stop(0).then((c) => process.exit(c)); }, SIGTERM_GRACE_MS).unref();
  });

  try {
    await router.start();
    // Unlike a standalone router, the directories it made stay root's: the
    // emperor (root) works in them too (vassals-dir-root under /run/moat), and
    // an owner could swap their entries for symlinks under its feet. The
    // emperor removes the socket files this process cannot.
    dropPrivileges(start.user, log);
    reachable(cfg.socket, 'its socket');
    for (const f of cfg.ruleFiles) {
      try { fs.accessSync(f, fs.constants.R_OK); } catch (err) {
        log.warn({ file: f, uid: start.user.uid }, `rule file ${f} is not readable by uid ${start.user.uid}: rule reloads will fail (${(err as NodeJS.ErrnoException).code})`);
      }
    }
  } catch (err) {
    const reason = fatal ?? (err as Error).message;
    const created = router.running;
    await stop(1);
    send({ t: 'failed', reason, created });
    await flush();
    return 1;
  }
  if (fatal === undefined) send({ t: 'started', pid: process.pid });
  // The emperor's status rows show each vassal's traffic: its copy of the
  // peer counters is refreshed every second (and on every stats read).
  const peersTimer = setInterval(() => {
    if (router.running && !stopping) send({ t: 'peers', peers: router.stats().peers });
  }, PEERS_EVERY_MS);
  peersTimer.unref();
  const code = await done;
  clearInterval(peersTimer);
  await flush();
  return code;

  /** After the drop the router must still see its socket file (its watch
   *  re-binds it when removed): a directory the router user cannot search
   *  would look like a removed socket. */
  function reachable(file: string, what: string): void {
    try {
      fs.lstatSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`the router process (uid ${start!.user.uid}) cannot reach ${what} ${file} (${code}): ` +
        `make ${path.dirname(path.resolve(file))} and its parents searchable by that user, or set uid/gid in the emperor's config to a user who can`);
    }
  }
}
