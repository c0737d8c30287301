// moat.ts: runs the moat CLI (the real program) for integration tests.
import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Lab, waitFor } from './netns';

export const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');
export const REPO = path.resolve(__dirname, '..', '..', '..');

export interface MoatProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

export function startMoat(lab: Lab, args: string[], ns?: string): MoatProcess {
  const child = lab.spawn(process.execPath, [CLI, ...args], { ns, env: { ...process.env, MOAT_LOG_LEVEL: 'debug' } });
  let out = '';
  child.stdout?.on('data', (d) => { out += d; });
  child.stderr?.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

export function tempDir(lab: Lab): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-test-'));
  lab.onCleanup(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

export async function waitForSocket(p: string, proc?: MoatProcess, timeoutMs = 10000): Promise<void> {
  await waitFor(() => {
    if (proc && proc.child.exitCode !== null) throw new Error(`moat exited early:\n${proc.output()}`);
    return fs.existsSync(p);
  }, timeoutMs, `socket ${p}${proc ? '\n' + proc.output() : ''}`);
}

/** Reads one stats document from a stats socket. */
export function readStats(addr: string): Promise<any> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect(addr);
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => {
      try { resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))); } catch (e) { reject(e); }
    });
    s.on('error', reject);
  });
}
