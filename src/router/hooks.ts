// hooks.ts: the `exec-as-root` hooks of the router's own config, as one
// component placed right after the router (or the handle on its process):
// they run in file order once the router's device exists (so `ip addr add ...
// dev emperor0` works), before anything that needs the gateway's address (the
// emperor's vassals) and, standalone, before the privilege drop. A failing
// hook fails the start with the hook's text and exit code.
import { spawnSync } from 'node:child_process';
import type { Component } from '../lifecycle/component';
import type { Logger } from '../log';

export function hooksComponent(commands: readonly string[], netns: string | undefined, log: Logger): Component {
  return {
    name: 'exec-as-root',
    start() {
      for (const cmd of commands) {
        // With tuntap-router-netns the device lives in that namespace: so do its hooks.
        const [bin, args] = netns ? ['nsenter', [`--net=${netns}`, '/bin/sh', '-c', cmd]] : ['/bin/sh', ['-c', cmd]];
        const r = spawnSync(bin, args, { stdio: ['ignore', 'inherit', 'inherit'], timeout: 60_000 });
        if (r.status !== 0) {
          throw new Error(`exec-as-root hook failed (${r.error ? r.error.message : r.signal ? 'signal ' + r.signal : 'exit ' + r.status}): ${cmd}`);
        }
        log.info({ hook: cmd }, 'exec-as-root hook ran');
      }
    },
    stop() { /* a hook's effects (addresses, sysctls) go with the device or stay, as in uWSGI */ },
  };
}
