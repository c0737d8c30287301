// hooks.ts: the `exec-as-root` hooks of the router's own config, run in file
// order once the router's device exists (so `ip addr add ... dev emperor0`
// works). A failing hook fails the start with the hook's text and exit code.
// A standalone router runs them as a plugin (before it drops root); in
// `moat emperor` the root parent runs them once the router process started.
import { spawnSync } from 'node:child_process';
import type { Logger } from '../log';
import type { RouterPlugin } from './plugin';
import type { Router } from './router';

export function runHooks(commands: string[], netns: string | undefined, log: Logger): void {
  for (const cmd of commands) {
    // With tuntap-router-netns the device lives in that namespace: so do its hooks.
    const [bin, args] = netns ? ['nsenter', [`--net=${netns}`, '/bin/sh', '-c', cmd]] : ['/bin/sh', ['-c', cmd]];
    const r = spawnSync(bin, args, { stdio: ['ignore', 'inherit', 'inherit'], timeout: 60_000 });
    if (r.status !== 0) {
      throw new Error(`exec-as-root hook failed (${r.error ? r.error.message : r.signal ? 'signal ' + r.signal : 'exit ' + r.status}): ${cmd}`);
    }
    log.info({ hook: cmd }, 'exec-as-root hook ran');
  }
}

export function hooksPlugin(commands: string[], netns?: string): RouterPlugin {
  return {
    name: 'exec-as-root',
    start(router: Router) {
      runHooks(commands, netns, router.log);
    },
  };
}
