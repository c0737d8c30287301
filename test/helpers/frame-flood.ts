// frame-flood.ts: builds and starts bench/gen/frame-flood.c, a
// flooding vassal as the router sees it that sleeps in write() while the
// router's socket is full (a frame peer in JavaScript holds a CPU for a
// millisecond or more per wakeup, which the vassal under test needs).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildGen } from '../../bench/lib';
import { Lab, waitFor } from './netns';

/** Compiles bench/gen's program `name` into a temporary directory the lab removes; returns the binary. */
export function buildInLab(lab: Lab, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `moat-${name}-`));
  lab.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return buildGen(name, dir);
}

/** Compiles frame-flood.c into a temporary directory the lab removes; returns the binary. */
export function buildFrameFlood(lab: Lab): string {
  return buildInLab(lab, 'frame-flood');
}

export interface FrameFlood { pid: number; go: () => Promise<void> }

/**
 * Starts a flooder from addr to gw:port (IPv4 packets of size bytes, for
 * secs seconds once go() is called) and waits until the router has learned
 * addr. argv0 may be a wrapper (taskset) that runs bin.
 */
export async function startFrameFlood(lab: Lab, bin: string, o: { sock: string; addr: string; gw: string; port: number; size: number; secs: number; wrap?: string[] }): Promise<FrameFlood> {
  const args = [o.sock, o.addr, o.gw, String(o.port), String(o.size), String(o.secs)];
  const child = o.wrap ? lab.spawn(o.wrap[0], [...o.wrap.slice(1), bin, ...args]) : lab.spawn(bin, args);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  await waitFor(() => out.includes('ready') || child.exitCode !== null, 10000, `flooder ${o.addr} ready`);
  if (!out.includes('ready')) throw new Error(`flooder ${o.addr}: ${out}`);
  return {
    pid: child.pid!,
    go: () => { child.stdin!.write('go\n'); return waitFor(() => out.includes('done'), o.secs * 1000 + 10000, `flooder ${o.addr} done`); },
  };
}
