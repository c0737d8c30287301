// rootfs.ts: a small root file system for pivot-root tests, made from Debian's
// busybox-static (/bin/busybox) in a temporary directory: /bin with applet
// links, empty /proc /tmp /dev (with a null device), /etc/passwd and
// /etc/group (root and an unprivileged "app" user), a /vassal mount point for
// the vassal's host directory and the put_old directory. remove() deletes it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

export const BUSYBOX = '/bin/busybox';
export const APP_UID = 1000;
export const APP_GID = 1000;

const APPLETS = [
  'sh', 'nc', 'ls', 'cat', 'hostname', 'id', 'ip', 'ifconfig', 'ping', 'sleep', 'touch', 'echo', 'mount',
  'test', 'grep', 'chmod', 'kill', 'ps', 'wc', 'true', 'false', 'env', 'chroot', 'stat', 'head', 'tr', 'rm',
];

export interface RootFs {
  /** The new root (absolute, real path). */
  dir: string;
  /** put_old, relative to dir. */
  putOld: string;
  /** Where the vassal's host directory is mounted inside the root. */
  vassalMount: string;
  /** The top-level entries of the root, sorted (what `ls /` shows inside). */
  entries: string[];
  remove(): void;
}

export function makeRootFs(): RootFs {
  if (!fs.existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: apt-get install busybox-static`);
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'moat-root-')));
  try {
    for (const d of ['bin', 'proc', 'tmp', 'dev', 'etc', 'vassal', '.old_root']) fs.mkdirSync(path.join(dir, d));
    fs.chmodSync(dir, 0o755);
    fs.copyFileSync(BUSYBOX, path.join(dir, 'bin', 'busybox'));
    fs.chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
    for (const a of APPLETS) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
    fs.writeFileSync(path.join(dir, 'etc', 'passwd'), `root:x:0:0:root:/:/bin/sh\napp:x:${APP_UID}:${APP_GID}:app:/tmp:/bin/sh\n`);
    fs.writeFileSync(path.join(dir, 'etc', 'group'), `root:x:0:\napp:x:${APP_GID}:\n`);
    try {
      execFileSync('mknod', ['-m', '666', path.join(dir, 'dev', 'null'), 'c', '1', '3']);
    } catch {
      fs.writeFileSync(path.join(dir, 'dev', 'null'), '');  // a nodev temp dir: a plain file will do
    }
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    dir,
    putOld: '.old_root',
    vassalMount: '/vassal',
    entries: ['.old_root', 'bin', 'dev', 'etc', 'proc', 'tmp', 'vassal'],
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
