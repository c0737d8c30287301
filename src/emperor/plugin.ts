// plugin.ts: the emperor hung off the router's lifecycle: it starts once the
// router's device exists and its exec-as-root hooks ran (register it after
// hooksPlugin), and its vassals stop before the router does.
import type { RouterPlugin } from '../router/plugin';
import type { Router } from '../router/router';
import type { Emperor } from './emperor';

export function emperorPlugin(emperor: Emperor): RouterPlugin {
  return {
    name: 'emperor',
    start: (router: Router) => emperor.start(router),
    stop: () => emperor.stop(),
  };
}
