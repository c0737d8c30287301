// transfer.ts: a TCP transfer between two network namespaces, checked
// byte-exact (tcp-stream.js runs on both ends and reports a sha256).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { Lab, waitFor } from './netns';

const STREAM = path.resolve(__dirname, 'tcp-stream.js');

/** Sends `bytes` random bytes from fromNs to toAddr (in toNs); fails unless
 *  all arrive, identical, within timeoutMs. Returns the Mbit/s seen. */
export async function tcpTransfer(lab: Lab, fromNs: string, toNs: string, toAddr: string, bytes: number, timeoutMs = 60000): Promise<number> {
  const port = 20000 + crypto.randomInt(20000);
  const recv = lab.spawn(process.execPath, [STREAM, 'recv', String(port)], { ns: toNs });
  let rout = '';
  recv.stdout!.on('data', (d) => { rout += d; });
  await waitFor(() => rout.includes('listening'), 10000, 'receiver listening');
  const t0 = Date.now();
  const send = lab.spawn(process.execPath, [STREAM, 'send', toAddr, String(port), String(bytes)], { ns: fromNs });
  let sout = '', serr = '';
  send.stdout!.on('data', (d) => { sout += d; });
  send.stderr!.on('data', (d) => { serr += d; });
  const exited = (c: typeof send) => new Promise<void>((r) => { if (c.exitCode !== null || c.signalCode !== null) r(); else c.once('exit', () => r()); });
  const timer = setTimeout(() => { send.kill('SIGKILL'); recv.kill('SIGKILL'); }, timeoutMs);
  await Promise.all([exited(send), exited(recv)]);
  clearTimeout(timer);
  const ms = Date.now() - t0;
  const json = (s: string) => JSON.parse(s.split('\n').find((l) => l.startsWith('{')) ?? '{}');
  const got = json(rout), sent = json(sout);
  assert.equal(sent.bytes, bytes, `the sender sent everything (${serr.trim()})`);
  assert.equal(got.bytes, bytes, 'the receiver got every byte');
  assert.equal(got.sha256, sent.sha256, 'byte-exact');
  return (bytes * 8) / (ms * 1000);
}
