// AccountingLog: the billing log on real files in a temp directory. Lines
// whole or absent (one write, fsync, cut back on failure: injected faults and
// a real RLIMIT_FSIZE short write), torn tails repaired, totals recovered from
// the state file plus the lines after it (a crash between the append and the
// state write counts nothing twice), and a property: random intervals,
// failures and crashes keep the log's lines summing to its totals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { AccountingLog, formatLine, LogFs, parseLine } from '../../src/emperor/accounting-log';
import { IntervalRecord, Usage, VassalAccounting, addUsage, zeroUsage } from '../../src/emperor/accounting';
import { FakeRouter, norm, sum } from './accounting-helpers';

const T0 = Date.UTC(2025, 0, 1);

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'moat-acct-'));
}

function withDir(fn: (dir: string) => void): void {
  const dir = tempDir();
  try { fn(dir); } finally { fs.rmSync(dir, { recursive: true, force: true }); }
}

/** Real fs with faults to switch on, and a record of the calls made. */
class FaultyFs {
  shortWrite = false;       // the next write to the log writes half and returns short
  failWrite = false;        // the next write to the log fails (ENOSPC)
  failFsync = false;        // the next fsync of the log fails (EIO)
  failRename = false;       // the next state rename fails: as if the process died before it
  logFd = -1;
  writes: number[] = [];    // fds written
  fsyncs: number[] = [];    // fds fsynced
  bytesRead = 0;
  readonly ops: Partial<LogFs>;

  constructor(logPath: string) {
    this.ops = {
      openSync: ((p: fs.PathLike, flags?: fs.OpenMode, mode?: fs.Mode) => {
        const fd = fs.openSync(p, flags ?? 'r', mode);
        if (p === logPath && typeof flags === 'number' && (flags & fs.constants.O_APPEND)) this.logFd = fd;
        return fd;
      }) as typeof fs.openSync,
      writeSync: ((fd: number, buf: Buffer) => {
        this.writes.push(fd);
        if (fd === this.logFd && this.failWrite) {
          this.failWrite = false;
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        }
        if (fd === this.logFd && this.shortWrite) {
          this.shortWrite = false;
          return fs.writeSync(fd, buf.subarray(0, Math.floor(buf.length / 2)));
        }
        return fs.writeSync(fd, buf);
      }) as typeof fs.writeSync,
      fsyncSync: (fd: number) => {
        this.fsyncs.push(fd);
        if (fd === this.logFd && this.failFsync) {
          this.failFsync = false;
          throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
        }
        fs.fsyncSync(fd);
      },
      renameSync: (a: fs.PathLike, b: fs.PathLike) => {
        if (this.failRename) {
          this.failRename = false;
          throw new Error('simulated crash before the state was saved');
        }
        fs.renameSync(a, b);
      },
      readSync: ((fd: number, buf: NodeJS.ArrayBufferView, off: number, len: number, pos: number | null) => {
        const n = fs.readSync(fd, buf, off, len, pos);
        this.bytesRead += n;
        return n;
      }) as typeof fs.readSync,
    };
  }
}

const usage = (n: number, drops: Record<string, number> = {}): Usage =>
  ({ bytesIn: 100 * n, bytesOut: 10 * n, packetsIn: n, packetsOut: 2 * n, drops });

function rec(vassal: string, i: number, u: Usage, total: Usage): IntervalRecord {
  return { vassal, start: T0 + i * 60_000, end: T0 + (i + 1) * 60_000, usage: u, total };
}

const readLines = (p: string) => fs.readFileSync(p, 'utf8').split('\n').filter((l) => l !== '');

test('lines: the documented format, one write and one fsync per interval, files 0640', () => {
  withDir((dir) => {
    const logPath = path.join(dir, 'acct.log');
    const f = new FaultyFs(logPath);
    const oldMask = process.umask(0o077);                       // the modes are set whatever the umask
    let log: AccountingLog;
    try {
      log = new AccountingLog(logPath, { fs: f.ops });
      assert.deepEqual(log.open(), { totals: new Map(), lastEnd: new Map(), warnings: [] });
      f.writes = []; f.fsyncs = [];
      log.append([
        rec('web', 0, usage(1, { rate_limit: 2 }), usage(5, { rate_limit: 2, no_route: 1 })),
        rec('db "x"\nÿ', 0, usage(0), usage(0)),
      ]);
    } finally {
      process.umask(oldMask);
    }
    assert.equal(f.writes.filter((fd) => fd === f.logFd).length, 1, 'one write for the whole interval');
    assert.ok(f.fsyncs.includes(f.logFd), 'the log was fsynced');
    assert.ok(f.fsyncs.indexOf(f.logFd) === 0, 'the log is fsynced before the state is written');
    const text = fs.readFileSync(logPath, 'utf8');
    assert.ok(text.endsWith('\n'));
    const lines = text.split('\n').slice(0, -1);
    assert.equal(lines.length, 2);
    assert.equal(lines[0], '{"vassal":"web","start":"2025-01-01T00:00:00.000Z","end":"2025-01-01T00:01:00.000Z",' +
      '"bytes_in":100,"bytes_out":10,"packets_in":1,"packets_out":2,"drops":{"rate_limit":2},' +
      '"total":{"bytes_in":500,"bytes_out":50,"packets_in":5,"packets_out":10,"drops":{"no_route":1,"rate_limit":2}}}');
    assert.equal(parseLine(lines[1])!.vassal, 'db "x"\nÿ');
    assert.equal(fs.statSync(logPath).mode & 0o777, 0o640);
    assert.equal(fs.statSync(log!.statePath).mode & 0o777, 0o640);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['acct.log', 'acct.log.state']);  // no temp file left
    log!.close();
    const again = new AccountingLog(logPath).open();
    assert.deepEqual(again.totals.get('web'), usage(5, { rate_limit: 2, no_route: 1 }));
    assert.deepEqual(again.lastEnd.get('db "x"\nÿ'), '2025-01-01T00:01:00.000Z');
    assert.deepEqual(again.warnings, []);
  });
});

test('a missing directory is refused, naming the path', () => {
  withDir((dir) => {
    const logPath = path.join(dir, 'nope', 'acct.log');
    assert.throws(() => new AccountingLog(logPath).open(), (e: Error) => e.message.includes(logPath) && e.message.includes(path.join(dir, 'nope')));
  });
});

test('a torn tail (no final newline) is cut back to the last whole line', () => {
  withDir((dir) => {
    const logPath = path.join(dir, 'acct.log');
    const log = new AccountingLog(logPath);
    log.open();
    log.append([rec('a', 0, usage(1), usage(1))]);
    log.append([rec('a', 1, usage(2), usage(3))]);
    log.close();
    const whole = fs.readFileSync(logPath);
    // A crash during the third append: part of its line reached the disk.
    fs.appendFileSync(logPath, '{"vassal":"a","start":"2025-01-01T00:02:00.000Z","end":"2025-01-01T00:0');
    const warned: string[] = [];
    const again = new AccountingLog(logPath, { warn: (m) => warned.push(m) });
    const r = again.open();
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0], /torn last line \(\d+ bytes/);
    assert.deepEqual(warned, r.warnings);
    assert.deepEqual(fs.readFileSync(logPath), whole);
    assert.deepEqual(r.totals.get('a'), usage(3));
    again.append([rec('a', 2, usage(4), usage(7))]);
    again.close();
    assert.deepEqual(readLines(logPath).map((l) => parseLine(l)!.total.packetsIn), [1, 3, 7]);
    // A log that is one torn line only.
    fs.writeFileSync(logPath, '{"vassal":"a"');
    fs.rmSync(`${logPath}.state`);
    const third = new AccountingLog(logPath).open();
    assert.equal(fs.statSync(logPath).size, 0);
    assert.equal(third.totals.size, 0);
  });
});

test('garbage lines at the end (NULs a crash can leave) are cut off; in the middle they are skipped', () => {
  withDir((dir) => {
    const logPath = path.join(dir, 'acct.log');
    const log = new AccountingLog(logPath);
    log.open();
    log.append([rec('a', 0, usage(1), usage(1))]);
    log.close();
    const good = fs.readFileSync(logPath);
    fs.appendFileSync(logPath, Buffer.concat([Buffer.alloc(40), Buffer.from('\n')]));
    const r = new AccountingLog(logPath).open();
    assert.ok(r.warnings.some((w) => /1 line\(s\) at the end .* cut off/.test(w)), r.warnings.join('; '));
    assert.deepEqual(fs.readFileSync(logPath), good);
    // In the middle, without a state file: skipped, the log is left as it is.
    fs.appendFileSync(logPath, 'not json\n' + formatLine(rec('a', 1, usage(1), usage(2))) + '\n');
    fs.rmSync(`${logPath}.state`);
    const size = fs.statSync(logPath).size;
    const r2 = new AccountingLog(logPath).open();
    assert.ok(r2.warnings.some((w) => /1 line\(s\) that are not accounting records were skipped/.test(w)), r2.warnings.join('; '));
    assert.equal(fs.statSync(logPath).size, size);
    assert.equal(r2.totals.get('a')!.packetsIn, 2);
  });
});

test('a crash between the append and the state write: the lines after the state are read, nothing counts twice', () => {
  withDir((dir) => {
    const logPath = path.join(dir, 'acct.log');
    const f = new FaultyFs(logPath);
    const log = new AccountingLog(logPath, { fs: f.ops });
    log.open();
    // A long history, so that reading it whole would show.
    for (let i = 0; i < 200; i++) log.append([rec('a', i, usage(1), usage(i + 1)), rec('b', i, usage(2), usage(2 * (i + 1)))]);
    const stateBefore = fs.readFileSync(log.statePath, 'utf8');
    f.failRename = true;                                        // the process "dies" before the state is replaced
    const warned: string[] = [];
    (log as unknown as { warn: (m: string) => void }).warn = (m) => warned.push(m);
    log.append([rec('a', 200, usage(1), usage(201)), rec('b', 200, usage(2), usage(402))]);
    assert.equal(warned.length, 1);
    assert.match(warned[0], /not saved/);
    assert.equal(fs.readFileSync(log.statePath, 'utf8'), stateBefore);   // the old state is intact
    assert.deepEqual(fs.readdirSync(dir).sort(), ['acct.log', 'acct.log.state']);
    const size = fs.statSync(logPath).size;
    // (no close: a crash)
    const f2 = new FaultyFs(logPath);
    const r = new AccountingLog(logPath, { fs: f2.ops }).open();
    assert.deepEqual(r.totals.get('a'), usage(201));
    assert.deepEqual(r.totals.get('b'), usage(402));
    assert.equal(r.lastEnd.get('a'), new Date(T0 + 201 * 60_000).toISOString());
    assert.ok(r.warnings.some((w) => /2 line\(s\) after the saved state recovered/.test(w)), r.warnings.join('; '));
    const tail = readLines(logPath).slice(-2).join('\n').length + 2;
    assert.ok(f2.bytesRead <= tail + 1, `read ${f2.bytesRead} bytes of a ${size}-byte log; the tail after the state is ${tail}`);
    // The state was brought up to date: a second open reads nothing.
    const f3 = new FaultyFs(logPath);
    const r3 = new AccountingLog(logPath, { fs: f3.ops }).open();
    assert.equal(f3.bytesRead, 1);                              // the tail check reads the last byte only
    assert.deepEqual(r3.totals, r.totals);
    assert.deepEqual(r3.warnings, []);
  });
});

test('a missing or unreadable state file: the log is read whole once', () => {
  withDir((dir) => {
    const logPath = path.join(dir, 'acct.log');
    const log = new AccountingLog(logPath);
    log.open();
    for (let i = 0; i < 5; i++) log.append([rec('a', i, usage(1), usage(i + 1))]);
    log.close();
    fs.rmSync(`${logPath}.state`);
    const r = new AccountingLog(logPath).open();
    assert.deepEqual(r.totals.get('a'), usage(5));
    assert.deepEqual(r.warnings, []);
    assert.ok(fs.existsSync(`${logPath}.state`), 'the state is written again');
    fs.writeFileSync(`${logPath}.state`, '{"version":1,"ino":');
    const r2 = new AccountingLog(logPath).open();
    assert.deepEqual(r2.totals.get('a'), usage(5));
    assert.match(r2.warnings[0], /not a state file/);
  });
});

test('a write that fails or comes up short, or an fsync that fails, leaves the log as it was', () => {
  withDir((dir) => {
    const logPath = path.join(dir, 'acct.log');
    const f = new FaultyFs(logPath);
    const log = new AccountingLog(logPath, { fs: f.ops });
    log.open();
    log.append([rec('a', 0, usage(1), usage(1))]);
    const before = fs.readFileSync(logPath);
    const stateBefore = fs.readFileSync(log.statePath);
    const next = [rec('a', 1, usage(2), usage(3)), rec('b', 1, usage(1), usage(1))];
    for (const fault of ['shortWrite', 'failWrite', 'failFsync'] as const) {
      f[fault] = true;
      assert.throws(() => log.append(next), (e: Error) => /2 record\(s\) not written/.test(e.message), fault);
      assert.deepEqual(fs.readFileSync(logPath), before, fault);
      assert.deepEqual(fs.readFileSync(log.statePath), stateBefore, fault);
    }
    log.append(next);                                           // once the fault is gone, the same records go in
    log.close();
    assert.deepEqual(readLines(logPath).map((l) => parseLine(l)!.vassal), ['a', 'a', 'b']);
    assert.deepEqual(new AccountingLog(logPath).open().totals.get('a'), usage(3));
  });
});

test('a real short write (RLIMIT_FSIZE in a child process) is cut back', () => {
  withDir((dir) => {
    const logPath = path.join(dir, 'acct.log');
    const log = new AccountingLog(logPath);
    log.open();
    log.append([rec('a', 0, usage(1), usage(1))]);
    log.close();
    const before = fs.readFileSync(logPath);
    // The file-size limit lets the next write through in part: the kernel
    // returns a short count (then EFBIG; Node ignores SIGXFSZ).
    const limit = before.length + 100;
    const mod = path.resolve(__dirname, '../../src/emperor/accounting-log.js');
    const script = `
      const { AccountingLog } = require(${JSON.stringify(mod)});
      const log = new AccountingLog(${JSON.stringify(logPath)});
      log.open();
      const u = { bytesIn: 1, bytesOut: 1, packetsIn: 1, packetsOut: 1, drops: {} };
      const recs = Array.from({ length: 20 }, (_, i) => ({ vassal: 'v' + i, start: 0, end: 1, usage: u, total: u }));
      try { log.append(recs); console.log('appended'); } catch (e) { console.log('error: ' + e.message); }`;
    const r = spawnSync('prlimit', [`--fsize=${limit}`, process.execPath, '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^error: .*20 record\(s\) not written: short write \(\d+ of \d+ bytes\)/);
    assert.deepEqual(fs.readFileSync(logPath), before);
  });
});

test('rotation: a log renamed away is followed by a new file; the totals continue', () => {
  withDir((dir) => {
    const logPath = path.join(dir, 'acct.log');
    const log = new AccountingLog(logPath);
    log.open();
    log.append([rec('a', 0, usage(1), usage(1))]);
    fs.renameSync(logPath, `${logPath}.1`);                     // logrotate
    log.append([rec('a', 1, usage(2), usage(3))]);
    log.close();
    assert.equal(readLines(`${logPath}.1`).length, 1);
    assert.equal(readLines(logPath).length, 1);
    assert.equal(fs.statSync(logPath).mode & 0o777, 0o640);
    assert.deepEqual(new AccountingLog(logPath).open().totals.get('a'), usage(3));
    // Rotated while the emperor was down: the state's totals stand, the new log's newer lines count.
    fs.renameSync(logPath, `${logPath}.2`);
    fs.writeFileSync(logPath, '');
    const r = new AccountingLog(logPath).open();
    assert.match(r.warnings[0], /rotated or truncated/);
    assert.deepEqual(r.totals.get('a'), usage(3));
  });
});

test('forget: a vassal removed for good leaves the state file', () => {
  withDir((dir) => {
    const logPath = path.join(dir, 'acct.log');
    const log = new AccountingLog(logPath);
    log.open();
    log.append([rec('a', 0, usage(1), usage(1)), rec('b', 0, usage(1), usage(1))]);
    log.forget('a');
    assert.deepEqual([...new AccountingLog(logPath).open().totals.keys()], ['b']);
  });
});

// The emperor's loop, with faults and crashes: the router model makes
// traffic, the accounting observes it, intervals are appended (a failed
// append goes back into the interval), and the emperor may crash at any
// point (its interval in memory and the router's counters are lost; the log
// and state stay, perhaps with a torn tail or a state older than the log).
type Op =
  | { k: 'traffic'; vassal: number; n: number; drop: number }
  | { k: 'reconnect'; vassal: number }
  | { k: 'interval' }
  | { k: 'fault'; which: 'shortWrite' | 'failWrite' | 'failFsync' | 'failRename' }
  | { k: 'crash'; torn: boolean }
  | { k: 'reload' };   // a clean restart: the last interval is written first

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('traffic' as const), vassal: fc.nat(3), n: fc.nat(5000), drop: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('reconnect' as const), vassal: fc.nat(3) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('interval' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('fault' as const), which: fc.constantFrom('shortWrite' as const, 'failWrite' as const, 'failFsync' as const, 'failRename' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('crash' as const), torn: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('reload' as const) }) },
);

const NAMES = ['web', 'db "1"', 'ünï', 'a\nb'];

test('property: with failures and crashes, sum(lines) == totals == what was fed, less only what crashes lost', () => {
  const dir = tempDir();
  let run = 0;
  try {
    fc.assert(fc.property(fc.array(opArb, { minLength: 5, maxLength: 60, size: 'max' }), (ops) => {
      const logPath = path.join(dir, `acct-${run++}.log`);
      let now = T0;
      const r = new FakeRouter();
      let f!: FaultyFs, log!: AccountingLog, acc!: VassalAccounting;
      const peerOf = new Map<string, number>();
      const expected = new Map<string, Usage>();                // what the log must hold: the truth less what crashes lost
      let pending = new Map<string, Usage>();                   // the truth since the last append that went in
      const start = () => {
        f = new FaultyFs(logPath);
        log = new AccountingLog(logPath, { fs: f.ops });
        const rec0 = log.open();
        // What the log holds now equals what it should.
        for (const name of new Set([...expected.keys(), ...rec0.totals.keys()])) {
          assert.deepEqual(norm(rec0.totals.get(name)), norm(expected.get(name)), `recovered ${name}`);
        }
        acc = new VassalAccounting(now);
        acc.restore(rec0.totals);
        r.restart();
        peerOf.clear();
        for (const name of NAMES) peerOf.set(name, r.connect(name));
      };
      const interval = () => {
        now += 60_000;
        acc.observe(r.snapshot(), r.nameOf, now);
        const recs = acc.takeInterval(now);
        try {
          log.append(recs);
        } catch {
          acc.returnInterval(recs);
          return;
        }
        for (const [name, u] of pending) addUsage(expected.get(name) ?? expected.set(name, zeroUsage()).get(name)!, u);
        pending = new Map();
      };
      start();
      for (const op of ops) {
        now += 1000;
        switch (op.k) {
          case 'traffic': {
            const name = NAMES[op.vassal];
            const t = { bytesIn: 1500 * op.n, bytesOut: 40 * op.n, packetsIn: op.n, packetsOut: op.n, drop: op.drop ? ['rate_limit', op.drop] as [string, number] : undefined };
            r.traffic(peerOf.get(name)!, t);
            addUsage(pending.get(name) ?? pending.set(name, zeroUsage()).get(name)!,
              { bytesIn: t.bytesIn, bytesOut: t.bytesOut, packetsIn: t.packetsIn, packetsOut: t.packetsOut, drops: t.drop ? { rate_limit: op.drop } : {} });
            if (op.n % 3 === 0) acc.observe(r.snapshot(), r.nameOf, now);
            break;
          }
          case 'reconnect': {
            const name = NAMES[op.vassal];
            const id = peerOf.get(name)!;
            const d = r.down(id);
            acc.peerDown(id, d.final, d.name, now);
            peerOf.set(name, r.connect(name));
            break;
          }
          case 'interval': interval(); break;
          case 'fault': f![op.which] = true; if (op.which === 'failRename') interval(); break;
          case 'crash':
            log!.close();                                       // the kernel closes a dead process's fds; nothing is written
            if (op.torn) fs.appendFileSync(logPath, '{"vassal":"web","start":"2025-');
            pending = new Map();                                // the interval in memory is lost with the emperor
            start();
            break;
          case 'reload':
            interval();
            if (pending.size > 0) break;                        // the last write failed: the emperor keeps running
            log!.close();
            start();
            break;
        }
      }
      for (const k of ['shortWrite', 'failWrite', 'failFsync', 'failRename'] as const) f![k] = false;
      interval();
      log!.close();
      // Each vassal: the log's lines sum to its last total, to the accounting's totals, and to what was fed.
      const lines = readLines(logPath).map((l) => parseLine(l)!);
      for (const name of NAMES) {
        const mine = lines.filter((l) => l.vassal === name);
        const fromLines = norm(sum(mine.map((l) => l.usage)));
        assert.deepEqual(fromLines, norm(mine[mine.length - 1]?.total), name);
        assert.deepEqual(fromLines, norm(acc!.totals(name)), name);
        assert.deepEqual(fromLines, norm(expected.get(name)), name);
        for (let i = 1; i < mine.length; i++) assert.ok(Date.parse(mine[i].start) >= Date.parse(mine[i - 1].end), `${name}: intervals overlap`);
      }
      fs.rmSync(logPath, { force: true });
      fs.rmSync(`${logPath}.state`, { force: true });
      return true;
    }), { numRuns: 150 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
