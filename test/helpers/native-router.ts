// native-router.ts: moat's native router (the addon's Router, no CLI) on a
// new tun device inside a test's network namespace, its socket in the temp
// directory; stopped and the socket removed at the lab's cleanup.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addon, NativeRouter, RouterOptions } from '../../src/native';
import { Lab, uniqueName } from './netns';

export interface StartedRouter { router: NativeRouter; tun: string; sock: string }

/** tag names the tun (tag + 't' + suffix) and the socket; opts override the defaults. */
export function startNativeRouter(lab: Lab, ns: string, tag: string, opts: Partial<RouterOptions> = {}): StartedRouter {
  const tun = uniqueName(`${tag}t`);
  const sock = path.join(os.tmpdir(), `moat-${tag}-${crypto.randomBytes(4).toString('hex')}.sock`);
  lab.onCleanup(() => { try { fs.unlinkSync(sock); } catch { /* gone */ } });
  const router = new (addon().Router)({
    tunName: tun, netns: `/run/netns/${ns}`, socketPath: sock, socketMode: 0o600, socketUid: -1, socketGid: -1,
    maxFrame: 8188, queueBytes: 1 << 20, acceptRuleBlocks: false, bindings: [], ...opts,
  });
  router.start(() => undefined);
  lab.onCleanup(() => router.stop());
  return { router, tun, sock };
}
