// router-process.ts: `moat _router-process` (hidden, not in --help): the
// router of `moat emperor`, forked by the emperor with an IPC channel (the
// messages: src/router/ipc-messages.ts; the emperor's side:
// src/router/router-process-handle.ts). From the options it is sent it builds
// its components: the Router (tun device, socket, stats and metrics servers,
// made as root), the drop to the router user, a check that the router still
// reaches its files as that user, and the peer counters it reports every
// second. From then on it holds no capability and only moves packets; the
// emperor stays root to spawn vassals.
//
// It lives only as long as the emperor: when the channel closes (the emperor
// died, even by SIGKILL) it stops and exits. Its signals are the emperor's
// (src/lifecycle/runner.ts, 'child'). The emperor's stats sections and
// metrics are asked for over the channel at each stats read and scrape.
import fs from 'node:fs';
import path from 'node:path';
import { routerConfig } from '../config/router-config';
import type { Component } from '../lifecycle/component';
import { Lifecycle } from '../lifecycle/lifecycle';
import { runLifecycle } from '../lifecycle/runner';
import { Logger, logger, setLogLevel } from '../log';
import { privilegeDrop } from '../privileges';
import { EmperorChannel } from '../router/emperor-channel';
import { Router } from '../router/router';

const PEERS_EVERY_MS = 1000;

export async function routerProcessCommand(): Promise<number> {
  if (!process.send || !process.connected) {
    process.stderr.write('moat: _router-process is internal: `moat emperor` starts it\n');
    return 2;
  }
  const channel = new EmperorChannel();
  const start = await channel.startMessage();
  if (!start) return 1;
  const level = start.options.filter((o) => o.key === 'log-level').pop();
  if (level) setLogLevel(level.value);
  const log = logger().child({ component: 'router-process' });

  let router: Router;
  try {
    router = new Router(routerConfig(start.options));
  } catch (err) {
    channel.send({ t: 'failed', reason: (err as Error).message });
    await channel.flush();
    return 1;
  }
  let fatal: string | undefined;
  const life = new Lifecycle([
    {
      name: 'router',
      start: () => router.start(),
      stop: () => router.stop(),
      // The emperor hears why and stops its vassals; this process stops at once.
      onEnd: (end) => router.on('fatal', (reason: string) => {
        fatal = reason;
        channel.send({ t: 'fatal', reason });
        end({ code: 1 });
      }),
    },
    // Unlike a standalone router, the directories it made stay root's: the
    // emperor (root) works in them too (vassals-dir-root under /run/moat), and
    // an owner could swap their entries for symlinks under its feet. The
    // emperor removes the socket files this process cannot.
    // Hardened: no_new_privs and an empty capability bounding set (issue 15).
    privilegeDrop(start.user, () => [], log, { harden: true }),
    reachCheck(router, start.user.uid, log),
    peersReport(router, channel),
  ], log);
  channel.serve(router, life, start.sections, log);
  const code = await runLifecycle(life, {
    log,
    signals: 'child',
    started: () => channel.send({ t: 'started', pid: process.pid }),
    startFailed: (err) => channel.send({ t: 'failed', reason: fatal ?? err.message, created: err.started.includes('router') }),
  });
  await channel.flush();
  return code;
}

/** After the drop the router must still see its socket file (its watch
 *  re-binds it when removed): a directory the router user cannot search
 *  would look like a removed socket. Rule files it cannot read are a warning
 *  (reloads would fail). */
function reachCheck(router: Router, uid: number, log: Logger): Component {
  return {
    name: 'access check',
    start() {
      const file = router.config.socket;
      try {
        fs.lstatSync(file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new Error(`the router process (uid ${uid}) cannot reach its socket ${file} (${code}): ` +
          `make ${path.dirname(path.resolve(file))} and its parents searchable by that user, or set uid/gid in the emperor's config to a user who can`);
      }
      for (const f of router.config.ruleFiles) {
        try { fs.accessSync(f, fs.constants.R_OK); } catch (err) {
          log.warn({ file: f, uid }, `rule file ${f} is not readable by uid ${uid}: rule reloads will fail (${(err as NodeJS.ErrnoException).code})`);
        }
      }
    },
    stop() { /* nothing to undo */ },
  };
}

/** The emperor's status rows show each vassal's traffic: its copy of the
 *  peer counters is refreshed every second (and at every stats read). */
function peersReport(router: Router, channel: EmperorChannel): Component {
  let timer: NodeJS.Timeout | undefined;
  return {
    name: 'peers report',
    start() {
      timer = setInterval(() => { if (router.running) channel.send({ t: 'peers', peers: router.stats().peers }); }, PEERS_EVERY_MS);
      timer.unref();
    },
    stop() { clearInterval(timer); },
  };
}
