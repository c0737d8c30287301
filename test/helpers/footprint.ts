// footprint.ts: this process's fd count and memory, for tests that run the
// native router in-process (hostile peers, soak): its fds and memory are
// ours, so a leak shows here.
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { sleep } from './netns';

export function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Resident set size in KiB. */
export function rssKiB(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** RSS less V8's heap, in KiB: the memory the native router (and everything
 *  else outside the JavaScript heap) holds. V8 grows its committed heap in
 *  steps of its own choosing, even with a few MiB in use after a full GC (the
 *  soak saw it go 22 -> 39 MiB at 85 s, with 7 MiB used), which RSS alone
 *  would read as the router growing. */
export function outsideHeapKiB(): number {
  return rssKiB() - Math.round(process.memoryUsage().heapTotal / 1024);
}

/** RSS and the V8 heap, for a log line. */
export function memText(): string {
  const m = process.memoryUsage();
  const mib = (n: number) => (n / 1048576).toFixed(1);
  return `RSS ${mib(rssKiB() * 1024)} MiB (V8 heap ${mib(m.heapTotal)} MiB, external ${mib(m.external)} MiB)`;
}

/** Under AddressSanitizer freed memory is held in its quarantine by design,
 *  so RSS bounds say nothing there (fd bounds still hold). */
export const UNDER_ASAN = /libasan/.test(process.env.LD_PRELOAD ?? '');

let gcFn: (() => void) | undefined;
/** A full garbage collection, so RSS figures compare like with like. */
export async function settle(): Promise<void> {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  for (let i = 0; i < 3; i++) {
    gcFn();
    await sleep(50);
  }
}
