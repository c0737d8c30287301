// router-component.ts: a router as a lifecycle component, the in-process
// Router or the handle on the router process alike. Its failure (its tun
// device deleted, its socket gone and not bindable) ends the process: every
// component stops and the process exits 1, so a supervisor (systemd
// Restart=on-failure) starts it again. SIGHUP reloads its rules (and, standalone,
// its peer limits from the config files).
import type { Component } from '../lifecycle/component';
import type { RouterApi } from './router-api';

/** reloadMore: what else a reload reads again (a standalone router: its peer limits). */
export function routerComponent(name: string, router: RouterApi, reloadMore?: (why: string) => void): Component {
  return {
    name,
    start: () => router.start(),
    stop: () => router.stop(),
    reload: (why) => { router.reloadRules(why); reloadMore?.(why); },
    onEnd: (end) => {
      router.on('fatal', (reason: string) => end({ code: 1, why: 'stopping: the router failed', error: true, fields: { reason } }));
    },
  };
}
