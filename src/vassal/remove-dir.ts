// remove-dir.ts: the emperor (root) removes a retired vassal's host
// directory. The tenant may still have a process alive while root walks its
// tree, and a recursive remove by path (fs.rmSync) follows a subdirectory
// swapped for a symlink mid-walk into the host's files; this walk follows no
// link (native/remove_tree.h). Only the part of the path above the vassal's
// directory (vassals-dir-root: the admin's, root's) is resolved here, once,
// so an admin's symlink such as /var/run -> /run still works; from there the
// native walk opens every component with O_NOFOLLOW.
import fs from 'node:fs';
import path from 'node:path';
import { addon, type RemoveTreeLimits } from '../native';

/** A vassal's directory holds its sockets and what its tenant wrote; a
 *  deeper or larger tree is reported and left for the admin. */
export const VASSAL_DIR_LIMITS: RemoveTreeLimits = { maxDepth: 256, maxEntries: 200_000 };

export interface RemovedDir {
  existed: boolean;   // something was there
  removed: number;    // entries removed, the directory itself included
}

/** Removes hostDir and everything in it, never following a link; a mount
 *  point inside is neither entered nor removed. Nothing there is fine.
 *  Throws "cannot remove vassal directory DIR: WHY"; what was not removed
 *  stays. Runs off the event loop (a libuv pool thread). */
export async function removeVassalDir(hostDir: string, limits: RemoveTreeLimits = VASSAL_DIR_LIMITS): Promise<RemovedDir> {
  const fail = (why: string) => new Error(`cannot remove vassal directory ${hostDir}: ${why}`);
  const abs = path.resolve(hostDir);
  const name = path.basename(abs);
  if (abs === path.dirname(abs)) throw fail('it is the root directory');
  let parent: string;
  try {
    parent = fs.realpathSync(path.dirname(abs));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { existed: false, removed: 0 };
    throw fail((err as Error).message);
  }
  try {
    return await addon().removeTree(parent, name, limits);
  } catch (err) {
    throw fail((err as Error).message);
  }
}
