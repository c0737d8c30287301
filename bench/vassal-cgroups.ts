// vassal-cgroups.ts: puts a scenario's vassals in cgroups of their own, as
// moat's emperor places every vassal it runs (src/vassal/cgroup.ts): one
// cgroup per vassal (on this machine's cpu, memory and pids hierarchies, v1
// or v2), holding its device and every process the bench starts in its
// namespace. The scheduler then shares the CPUs between vassals, not between
// processes: a vassal whose processes flood does not get more CPU by running
// more of them. No limits are set. Used for uWSGI's vassals and moat's alike.
import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, sh } from '../test/helpers/netns';
import { EmperorCgroup, VassalCgroup, VASSALS_DIR } from '../src/vassal/cgroup';
import type { Vassal } from './scenarios';

export class VassalCgroups {
  private constructor(private readonly emperor: EmperorCgroup, private readonly byNs: Map<string, VassalCgroup>) {}

  /** Makes a cgroup per vassal, moves the processes already in each vassal's
   *  namespace into it, and joins every process the lab starts there later. */
  static async place(lab: Lab, vassals: Vassal[]): Promise<VassalCgroups> {
    const emperor = EmperorCgroup.create({ name: `moat-bench-${process.pid}-${Date.now().toString(36)}` });
    const byNs = new Map<string, VassalCgroup>();
    const made = new VassalCgroups(emperor, byNs);
    try {
      for (const [i, v] of vassals.entries()) {
        const { cgroup } = await emperor.createVassal(`v${i}`);
        byNs.set(v.ns, cgroup);
        for (const pid of sh('ip', ['netns', 'pids', v.ns]).split('\n').filter(Boolean)) cgroup.join(Number(pid));
      }
    } catch (e) {
      await made.destroy();
      throw e;
    }
    // On Ctrl-C the lab is cleaned up without teardown(): its processes are
    // killed there, and this removes what they leave, empty cgroups.
    lab.onCleanup(() => made.removeEmpty());
    lab.spawnHooks.push((child: ChildProcess, ns: string | undefined) => {
      const cg = ns === undefined ? undefined : byNs.get(ns);
      // `ip netns exec` execs the command: the pid is the command's.
      if (cg && child.pid !== undefined) { try { cg.join(child.pid); } catch { /* exited already */ } }
    });
    return made;
  }

  /** Removes the cgroups that are empty now (best effort, synchronous). */
  removeEmpty(): void {
    const rm = (dir: string) => { try { fs.rmdirSync(dir); } catch { /* gone, or not empty */ } };
    for (const p of this.emperor.places) {
      const vassals = path.join(p.dir, VASSALS_DIR);
      try { for (const d of fs.readdirSync(vassals)) rm(path.join(vassals, d)); } catch { /* gone */ }
      rm(vassals);
      rm(p.dir);
    }
  }

  /** Kills what is left in the vassals' cgroups and removes them. */
  async destroy(): Promise<void> {
    await this.emperor.destroy();
  }
}
