// stats-server.test.ts: uWSGI's stats socket (one JSON document per
// connection, then close) on a real unix socket in a temp directory and on
// loopback TCP: addresses, errors as documents, a stale file replaced, a live
// one refused, rebind after removal, the file gone after stop.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseStatsAddress, StatsServer } from '../../src/router/stats-server';
import { readStats } from '../helpers/moat';

function tempSock(t: TestContext, name = 's.sock'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-stats-unit-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, name);
}

async function started(t: TestContext, addr: string, doc: () => unknown): Promise<StatsServer> {
  const s = new StatsServer(addr, doc);
  await s.start();
  t.after(() => s.stop());
  return s;
}

test('parseStatsAddress: a path, or host:port (IPv6 in brackets, empty host = 127.0.0.1)', () => {
  assert.deepEqual(parseStatsAddress('/run/moat/stats.sock'), { path: '/run/moat/stats.sock' });
  assert.deepEqual(parseStatsAddress('127.0.0.1:9191'), { host: '127.0.0.1', port: 9191 });
  assert.deepEqual(parseStatsAddress(':9191'), { host: '127.0.0.1', port: 9191 });
  assert.deepEqual(parseStatsAddress('[::1]:9191'), { host: '::1', port: 9191 });
  assert.throws(() => parseStatsAddress('127.0.0.1:http'), /port must be 0-65535/);
  assert.throws(() => parseStatsAddress('127.0.0.1:65536'), /port must be 0-65535/);
});

test('a unix socket: one document per connection, built at each read, mode 0660', async (t) => {
  const sock = tempSock(t);
  let n = 0;
  const s = await started(t, sock, () => ({ reads: ++n }));
  assert.equal(s.unixPath, sock);
  assert.equal(s.port(), undefined);
  assert.equal(fs.statSync(sock).mode & 0o777, 0o660);
  assert.deepEqual(await readStats(sock), { reads: 1 });
  assert.deepEqual(await readStats(sock), { reads: 2 });
});

test('a document built asynchronously is awaited; a failing one is served as {error}', async (t) => {
  const sock = tempSock(t);
  let fail = false;
  await started(t, sock, async () => {
    await new Promise((r) => setTimeout(r, 10));
    if (fail) throw new Error('emperor did not answer');
    return { peers: [] };
  });
  assert.deepEqual(await readStats(sock), { peers: [] });
  fail = true;
  assert.deepEqual(await readStats(sock), { error: 'emperor did not answer' });
});

test('TCP on loopback: port 0 picks a free port', async (t) => {
  const s = await started(t, '127.0.0.1:0', () => ({ tcp: true }));
  assert.equal(s.unixPath, undefined);
  const port = s.port()!;
  assert.ok(port > 0);
  const body = await new Promise<string>((resolve, reject) => {
    let b = '';
    net.connect(port, '127.0.0.1').on('data', (d) => { b += d; }).on('end', () => resolve(b)).on('error', reject);
  });
  assert.deepEqual(JSON.parse(body), { tcp: true });
});

/** A socket file nobody listens on, as a crashed process leaves it (libuv
 *  unlinks its path on close: a hard link keeps the file). */
async function staleSocket(sock: string): Promise<void> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(sock, r));
  fs.linkSync(sock, sock + '.keep');
  await new Promise((r) => srv.close(r));
  fs.renameSync(sock + '.keep', sock);
}

test('a live socket is refused and left alone; a stale socket file is replaced', async (t) => {
  const sock = tempSock(t);
  const live = net.createServer();
  await new Promise<void>((r) => live.listen(sock, r));
  await assert.rejects(new StatsServer(sock, () => ({})).start(), new RegExp(`stats socket ${sock} is in use by another process`));
  assert.ok(fs.statSync(sock).isSocket(), 'the live socket is untouched');
  await new Promise((r) => live.close(r));

  await staleSocket(sock);
  assert.ok(fs.statSync(sock).isSocket(), 'a stale socket file is there');
  await started(t, sock, () => ({ fresh: true }));
  assert.deepEqual(await readStats(sock), { fresh: true });
});

test('rebind after the file and its directory were removed; stop removes the file', async (t) => {
  const sock = path.join(tempSock(t, 'sub'), 's.sock');
  fs.mkdirSync(path.dirname(sock));
  const s = await started(t, sock, () => ({ ok: 1 }));
  fs.rmSync(path.dirname(sock), { recursive: true });
  await s.rebind();
  assert.deepEqual(await readStats(sock), { ok: 1 });
  await s.stop();
  assert.equal(fs.existsSync(sock), false);
  await s.stop();
});
