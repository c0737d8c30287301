// demo.ts: `moat demo [--keep]`: runs the emperor on the shipped example
// config (examples/emperor.ini: the router, the seed firewall policy, and the
// two example vassals of examples/vassals, each in namespaces of its own, run
// by the native moat-vassal runtime), the router's tun device inside a network
// namespace the demo creates; shows the vassals reaching the gateway and
// being kept apart, then removes everything. Exit 0 when all checks passed.
// Without a built runtime it runs the router demo (examples/moat.ini, the
// example vassals' devices in namespaces the demo creates).
import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadFile } from '../config/load';
import { routerConfig, deviceConfig, routerProcessUser } from '../config/router-config';
import type { OptionList } from '../config/types';
import { Router } from '../router/router';
import { hooksPlugin, runHooks } from '../router/hooks';
import { RouterProcess } from '../router/router-process';
import { Device } from '../device/device';
import { intToIpv4 } from '../addr';
import { logger, setLogLevel } from '../log';
import { Emperor } from '../emperor/emperor';
import { emperorConfig } from '../emperor/config';
import { emperorPlugin } from '../emperor/plugin';
import { fetchStats, formatStatus } from '../emperor/status';
import { DEFAULT_SUPERVISOR } from '../vassal/vassal';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PROBE = path.join(__dirname, '..', 'demo', 'udp-probe.js');

interface Vassal { name: string; file: string; ns: string; addr: string; device?: Device }

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function say(s: string): void {
  process.stdout.write(s + '\n');
}

export async function demoCommand(args: string[]): Promise<number> {
  const keep = args.includes('--keep');
  // The demo prints its own story; the router's JSON log lines only when asked.
  if (!process.env.MOAT_LOG_LEVEL) setLogLevel('warn');
  if (process.getuid?.() !== 0) {
    process.stderr.write('moat demo: needs root (it creates network namespaces and tun devices)\n');
    return 2;
  }
  if (fs.existsSync(DEFAULT_SUPERVISOR.runtime.command) && !args.includes('--router')) return emperorDemo(keep);
  if (!args.includes('--router')) say(`moat demo: the vassal runtime (${DEFAULT_SUPERVISOR.runtime.command}) is not built: running the router demo`);
  return routerDemo(keep);
}

async function routerDemo(keep: boolean): Promise<number> {
  const tag = crypto.randomBytes(3).toString('hex');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-demo-'));
  const gwNs = `moat-gw-${tag}`;
  const vassals: Vassal[] = [
    { name: 'customer1', file: path.join(ROOT, 'examples', 'vassals', 'customer1.ini'), ns: `moat-v1-${tag}`, addr: '' },
    { name: 'customer2', file: path.join(ROOT, 'examples', 'vassals', 'customer2.yaml'), ns: `moat-v2-${tag}`, addr: '' },
  ];
  const children: ChildProcess[] = [];
  let router: Router | undefined;
  let failures = 0;

  const cleanup = async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const v of vassals) v.device?.stop();
    await router?.stop();
    for (const ns of [gwNs, ...vassals.map((v) => v.ns)]) {
      try { ip('netns', 'del', ns); } catch { /* not made */ }
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  };

  try {
    say(`moat demo: namespaces ${gwNs} (gateway), ${vassals.map((v) => v.ns).join(', ')} (vassals); files in ${tmp}`);
    for (const ns of [gwNs, ...vassals.map((v) => v.ns)]) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    // The example config as shipped, placed in the demo's namespace and temp dir.
    const { options, cfg, socket, stats } = exampleRouter('moat.ini', tmp, gwNs);
    router = new Router(cfg);
    router.use(hooksPlugin(options.filter((o) => o.key === 'exec-as-root').map((o) => o.value), cfg.netns));
    await router.start();
    say(`router: device ${cfg.device} in ${gwNs}, socket ${socket}, ${router.ruleSet().in.length} in-rules and ${router.ruleSet().out.length} out-rules`);

    for (const v of vassals) {
      const vOptions = loadFile(v.file);
      const dcfg = deviceConfig(vOptions);
      dcfg.socket = socket;
      dcfg.netns = `/run/netns/${v.ns}`;
      v.device = new Device(dcfg);
      v.device.start();
      // uWSGI's order: the device exists, then the vassal's hooks configure it.
      // Without the runtime there is no UTS namespace: only the `ip` hooks run.
      const cmds = vOptions.filter((x) => x.key === 'exec-as-root' && /^ip /.test(x.value)).map((x) => x.value);
      const a = vOptions.find((x) => x.key === 'tuntap-device-address')?.value.trim();
      const gw = vOptions.find((x) => x.key === 'tuntap-device-route')?.value.trim();
      if (a) cmds.push(`ip addr add ${a} dev ${dcfg.device}`, `ip link set ${dcfg.device} up`);
      if (gw) cmds.push(`ip route add default via ${gw}`);
      for (const c of cmds) {
        execFileSync('ip', ['netns', 'exec', v.ns, '/bin/sh', '-c', c], { stdio: 'inherit' });
        const m = /addr add ([\d.]+)/.exec(c);
        if (m) v.addr = m[1];
      }
      say(`vassal ${v.name}: device ${dcfg.device} in ${v.ns}, address ${v.addr} (from ${path.relative(ROOT, v.file)})`);
    }

    const gwAddr = '192.168.0.1';
    children.push(serve(gwNs, gwAddr));
    for (const v of vassals) children.push(serve(v.ns, v.addr));
    await new Promise((r) => setTimeout(r, 700));

    const check = async (what: string, ns: string, dst: string, expect: boolean) => {
      const got = await ask(ns, dst);
      const ok = got === expect;
      if (!ok) failures++;
      say(`  ${ok ? 'ok  ' : 'FAIL'} ${what}: ${got ? 'answered' : 'no answer'} (expected ${expect ? 'an answer' : 'none'})`);
    };
    say('checks (UDP echo on port 7777):');
    for (const v of vassals) await check(`${v.name} -> gateway ${gwAddr}`, v.ns, gwAddr, true);
    await check(`gateway -> ${vassals[0].name}`, gwNs, vassals[0].addr, true);
    await check(`${vassals[0].name} -> ${vassals[1].name} (isolation policy)`, vassals[0].ns, vassals[1].addr, false);
    await check(`${vassals[1].name} -> ${vassals[0].name} (isolation policy)`, vassals[1].ns, vassals[0].addr, false);

    const s = router.stats();
    say('peers:');
    for (const p of s.peers) {
      const why = Object.entries(p.drops).filter(([, n]) => n > 0).map(([r, n]) => `${r} ${n}`).join(', ');
      say(`  ${intToIpv4(p.addr)}  packets to it ${p.tx}, from it ${p.rx}, dropped ${p.dropped}${why ? ` (${why})` : ''}`);
    }
    say('rule hits:');
    const set = router.ruleSet();
    for (const chain of ['in', 'out'] as const) {
      set[chain].forEach((r, i) => say(`  ${chain.padEnd(3)} ${String(s.hits[chain][i] ?? 0).padStart(6)}  ${r.origin}  ${r.text}`));
    }
    say(failures === 0 ? 'demo: all checks passed' : `demo: ${failures} check(s) failed`);

    if (keep) {
      say(`running until Ctrl-C; stats: nc -U ${stats}`);
      await untilStopped();
    }
  } catch (err) {
    process.stderr.write(`moat demo: ${(err as Error).message}\n`);
    failures++;
  } finally {
    await cleanup();
    say('demo: cleaned up (namespaces, devices, sockets removed)');
  }
  return failures === 0 ? 0 : 1;
}

/** The emperor demo: examples/emperor.ini with its two vassals, each in its own namespaces. */
async function emperorDemo(keep: boolean): Promise<number> {
  // The demo's own checks say what failed; the refusals it provokes are expected.
  if (!process.env.MOAT_LOG_LEVEL) setLogLevel('error');
  const tag = crypto.randomBytes(3).toString('hex');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-demo-'));
  const gwNs = `moat-gw-${tag}`;
  const gwAddr = '192.168.0.1';
  const children: ChildProcess[] = [];
  const pids: number[] = [];
  let router: RouterProcess | undefined;
  let stopEmperor: (() => Promise<void>) | undefined;
  let failures = 0;
  const check = (what: string, ok: boolean, detail: string) => {
    if (!ok) failures++;
    say(`  ${ok ? 'ok  ' : 'FAIL'} ${what}: ${detail}`);
  };

  try {
    say(`moat demo: the emperor on examples/emperor.ini; the router's tun device in namespace ${gwNs}; files in ${tmp}`);
    ip('netns', 'add', gwNs);
    ip('-n', gwNs, 'link', 'set', 'lo', 'up');
    const { options, cfg, socket, stats } = exampleRouter('emperor.ini', tmp, gwNs);
    // The example vassal files as shipped, copied to the demo's emperor directory
    // and pointed at the demo's router socket.
    const ecfg = emperorConfig(options);
    const vdir = path.join(tmp, 'vassals');
    fs.mkdirSync(vdir);
    for (const f of fs.readdirSync(ecfg.dir).sort()) {
      fs.writeFileSync(path.join(vdir, f), fs.readFileSync(path.join(ecfg.dir, f), 'utf8').split('/run/moat/tuntap.sock').join(socket));
    }
    ecfg.dir = vdir;
    ecfg.vassalsDirRoot = path.join(tmp, 'run');
    // As `moat emperor` runs it: the router in its own process, dropped to
    // the router user with no capability; the emperor (root) runs the
    // exec-as-root hooks once the device exists, then spawns the vassals.
    fs.chmodSync(tmp, 0o755);  // the router user reaches its sockets here
    // The router process logs at the demo's level (errors only, unless MOAT_LOG_LEVEL says).
    options.push({ key: 'log-level', value: process.env.MOAT_LOG_LEVEL || 'error', source: { file: 'moat demo' } });
    router = new RouterProcess(cfg, options, routerProcessUser(options), logger());
    await router.start();
    runHooks(options.filter((o) => o.key === 'exec-as-root').map((o) => o.value), cfg.netns, logger());
    const emperor = new Emperor(ecfg);
    stopEmperor = () => emperor.stop();
    await emperor.start(router);
    const doc = await fetchStats(stats) as { uid: number; moat: { rules: { in: unknown[]; out: unknown[] } } };
    const caps = /CapEff:\s*(\S+)/.exec(fs.readFileSync(`/proc/${router.pid}/status`, 'utf8'))?.[1];
    say(`router: ${cfg.device} (${gwAddr}) in ${gwNs}, ${doc.moat.rules.in.length} in-rules and ${doc.moat.rules.out.length} out-rules from rules/isolation.rules`);
    say(`router process: pid ${router.pid}, uid ${doc.uid}, capabilities ${caps} (none); the emperor (pid ${process.pid}) keeps root to spawn vassals`);
    say(`emperor: ${fs.readdirSync(vdir).join(', ')} from examples/vassals, namespaces ${ecfg.clone.join(',')}`);

    const r = router;
    const ready = () => emperor.status().length > 0 && emperor.status().every((v) => v.state === 'running' && v.traffic !== null);
    const t0 = Date.now();
    while (!ready() && Date.now() - t0 < 20000) await new Promise((res) => setTimeout(res, 100));
    if (!ready()) throw new Error(`the vassals did not come up:\n${formatStatus(emperor.status())}`);
    const vassals = emperor.status().map((v) => {
      const pid = v.pid!;
      pids.push(pid);
      const nspid = /^NSpid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1].trim().split(/\s+/) ?? [];
      const hostname = execFileSync('nsenter', ['-t', String(pid), '-u', 'hostname'], { encoding: 'utf8' }).trim();
      const links = execFileSync('nsenter', ['-t', String(pid), '-n', 'ip', '-o', 'link', 'show'], { encoding: 'utf8' })
        .split('\n').filter(Boolean).map((l) => l.split(':')[1].trim().split('@')[0]);
      const addr = /inet ([\d.]+)/.exec(execFileSync('nsenter', ['-t', String(pid), '-n', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'uwsgi0'], { encoding: 'utf8' }))?.[1] ?? '';
      say(`vassal ${v.name}: runtime pid ${pid} on the host, pid ${nspid[nspid.length - 1]} inside; hostname ${hostname}; links ${links.join(', ')}; address ${addr} (${v.addressFrom === 'file' ? 'named in its file, bound before its first packet' : 'from its hooks: learned from its first packet, then bound'})`);
      return { ...v, pid, addr, hostname, links, nspid };
    });
    for (const v of vassals) {
      check(`${v.name} has its own hostname and pid namespace`, v.hostname === v.name.replace(/\.[a-z]+$/, '') && v.nspid[v.nspid.length - 1] === '1',
        `hostname ${v.hostname}, pid ${v.nspid[v.nspid.length - 1]} inside`);
      check(`${v.name} sees only lo and its tun device`, v.links.sort().join(',') === 'lo,uwsgi0', v.links.join(', '));
    }

    children.push(serveIn(['ip', 'netns', 'exec', gwNs], gwAddr));
    for (const v of vassals) children.push(serveIn(['nsenter', '-t', String(v.pid), '-n'], v.addr));
    await new Promise((res) => setTimeout(res, 700));
    const probe = async (what: string, v: { pid: number } | null, dst: string, expect: boolean, src?: string) => {
      const got = await askIn(v ? ['nsenter', '-t', String(v.pid), '-n'] : ['ip', 'netns', 'exec', gwNs], dst, src);
      check(what, got === expect, `${got ? 'answered' : 'no answer'} (expected ${expect ? 'an answer' : 'none'})`);
    };
    const [a, b] = vassals;
    say('checks (UDP echo on port 7777):');
    for (const v of vassals) await probe(`${v.name} -> gateway ${gwAddr}`, v, gwAddr, true);
    await probe(`gateway -> ${a.name}`, null, a.addr, true);
    await probe(`${a.name} -> ${b.name} (isolation policy)`, a, b.addr, false);
    await probe(`${b.name} -> ${a.name} (isolation policy)`, b, a.addr, false);
    // A vassal that gives itself another address gets nothing through: its address is bound to it.
    const other = '192.168.0.99';
    execFileSync('nsenter', ['-t', String(a.pid), '-n', 'ip', 'addr', 'add', `${other}/32`, 'dev', 'uwsgi0']);
    await probe(`${a.name} -> gateway from ${other}, not its address`, a, gwAddr, false, other);

    const s = r.stats();
    say('router peers:');
    for (const p of s.peers) {
      const why = Object.entries(p.drops).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ');
      say(`  ${intToIpv4(p.addr)} (pid ${p.pid})  packets to it ${p.tx}, from it ${p.rx}, dropped ${p.dropped}${why ? ` (${why})` : ''}`);
    }
    say('emperor status (also: moat emperor --status --stats ' + stats + '):');
    for (const l of formatStatus(emperor.status()).trimEnd().split('\n')) say('  ' + l);
    say(failures === 0 ? 'demo: all checks passed' : `demo: ${failures} check(s) failed`);

    if (keep) {
      say(`running until Ctrl-C; try: moat emperor --status --stats ${stats}; edit a file in ${vdir} to reload that vassal`);
      await untilStopped();
    }
  } catch (err) {
    process.stderr.write(`moat demo: ${(err as Error).message}\n`);
    failures++;
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await stopEmperor?.();  // the vassals first, then the router
    await router?.stop();
    try { ip('netns', 'del', gwNs); } catch { /* not made */ }
    const left = pids.filter((p) => fs.existsSync(`/proc/${p}`));
    fs.rmSync(tmp, { recursive: true, force: true });
    if (left.length) {
      failures++;
      say(`demo: FAIL vassal runtimes still running: ${left.join(', ')}`);
    }
    say('demo: cleaned up (vassals stopped, namespaces, devices, sockets and directories removed)');
  }
  return failures === 0 ? 0 : 1;
}

function serveIn(prefix: string[], addr: string): ChildProcess {
  return spawn(prefix[0], [...prefix.slice(1), process.execPath, PROBE, 'serve', addr, '7777'], { stdio: 'ignore' });
}

function askIn(prefix: string[], addr: string, src?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = spawn(prefix[0], [...prefix.slice(1), process.execPath, PROBE, 'ask', addr, '7777', '1500', ...(src ? [src] : [])], { stdio: 'ignore' });
    c.on('exit', (code) => resolve(code === 0));
  });
}

function serve(ns: string, addr: string): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, process.execPath, PROBE, 'serve', addr, '7777'], { stdio: 'ignore' });
}

function ask(ns: string, addr: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = spawn('ip', ['netns', 'exec', ns, process.execPath, PROBE, 'ask', addr, '7777', '1500'], { stdio: 'ignore' });
    c.on('exit', (code) => resolve(code === 0));
  });
}

/** Resolves on Ctrl-C (SIGINT) or SIGTERM: `--keep` runs until then. */
function untilStopped(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

/** An example config as shipped (examples/NAME), its router placed in the
 *  demo's namespace and its sockets in the demo's temp dir (in the options
 *  too: the emperor demo's router process builds its config from them). */
function exampleRouter(name: string, tmp: string, gwNs: string) {
  process.chdir(ROOT);  // the examples name rules/ and examples/vassals relative to the repo
  const file = path.join(ROOT, 'examples', name);
  const shipped = loadFile(file);
  const socket = path.join(tmp, 'tuntap.sock');
  const stats = path.join(tmp, 'stats.sock');
  const netns = `/run/netns/${gwNs}`;
  const device = routerConfig(shipped).device;
  const source = { file: `${file} (placed by moat demo)` };
  const options: OptionList = [
    ...shipped.filter((o) => !['tuntap-router', 'tuntap-router-stats', 'tuntap-router-netns'].includes(o.key)),
    { key: 'tuntap-router', value: `${device} ${socket} ${stats}`, source },
    { key: 'tuntap-router-netns', value: netns, source },
  ];
  const cfg = routerConfig(options);
  return { options, cfg, socket, stats };
}
