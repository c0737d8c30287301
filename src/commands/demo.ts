// demo.ts: `moat demo [--keep]`: runs the emperor on the shipped example
// config (examples/emperor.ini: the router, the seed firewall policy, and the
// two example vassals of examples/vassals, each in namespaces of its own, run
// by the native moat-vassal runtime), the router's tun device inside a network
// namespace the demo creates; shows the vassals reaching the gateway and
// being kept apart, then removes everything. Exit 0 when all checks passed.
// Without a built runtime it runs the router demo (examples/moat.ini, the
// example vassals' devices in namespaces the demo creates). Either runs as
// moat does: one Lifecycle (src/lifecycle/) of its namespaces, the components
// instance.ts builds from the example config, and its checks last; stopped in
// reverse, also when a start or a check fails or Ctrl-C ends `--keep`.
import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadFile } from '../config/load';
import { routerConfig, deviceConfig } from '../config/router-config';
import { checkOptions } from '../config/schema';
import type { OptionList } from '../config/types';
import { Device } from '../device/device';
import { intToIpv4 } from '../addr';
import type { Component, End } from '../lifecycle/component';
import { Lifecycle } from '../lifecycle/lifecycle';
import { runLifecycle } from '../lifecycle/runner';
import { logger, setLogLevel } from '../log';
import { emperorConfig } from '../emperor/config';
import { fetchStats, formatStatus } from '../emperor/status';
import { DEFAULT_SUPERVISOR } from '../vassal/vassal';
import { buildInstance, Instance } from './instance';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PROBE = path.join(__dirname, '..', 'demo', 'udp-probe.js');

interface DemoVassal { name: string; file: string; ns: string; addr: string }

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

/** Counts the failed checks (a --keep run ends with a signal, exit 0: the count decides). */
interface Tally { failures: number }

/** The demo as moat runs: its own components, then the instance's built from
 *  the example config, then its checks; stopped in reverse, also on a failed
 *  start. Exit 0 when every check passed and `after` found nothing wrong. */
async function runDemo(tmp: string, tally: Tally, build: () => Component[], after: () => number = () => 0): Promise<number> {
  let code = 1;
  try {
    const log = logger();
    code = await runLifecycle(new Lifecycle(build(), log), {
      log,
      startFailed: (err) => process.stderr.write(`moat demo: ${err.message}\n`),
    });
  } catch (err) {
    process.stderr.write(`moat demo: ${(err as Error).message}\n`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return after() === 0 && code === 0 && tally.failures === 0 ? 0 : 1;
}

/** The network namespaces the demo makes: first up, last down. */
function namespaces(names: string[]): Component {
  return {
    name: 'demo namespaces',
    start() {
      for (const ns of names) {
        ip('netns', 'add', ns);
        ip('-n', ns, 'link', 'set', 'lo', 'up');
      }
    },
    stop() {
      for (const ns of names) {
        try { ip('netns', 'del', ns); } catch { /* not made */ }
      }
    },
  };
}

/** The demo's checks, once everything else started: they print the story and
 *  end the run, or with --keep leave it running until Ctrl-C. The probes
 *  they start are stopped with them. */
function checks(keep: boolean, tally: Tally, hint: () => string, run: (children: ChildProcess[]) => Promise<number>): Component {
  const children: ChildProcess[] = [];
  let end: End | undefined;
  return {
    name: 'demo checks',
    onEnd: (e) => { end = e; },
    async start() {
      tally.failures = await run(children);
      say(tally.failures === 0 ? 'demo: all checks passed' : `demo: ${tally.failures} check(s) failed`);
      if (keep) say(hint());
      else end?.({ code: 0 });
    },
    stop() {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    },
  };
}

async function routerDemo(keep: boolean): Promise<number> {
  const tag = crypto.randomBytes(3).toString('hex');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-demo-'));
  const gwNs = `moat-gw-${tag}`;
  const vassals: DemoVassal[] = [
    { name: 'customer1', file: path.join(ROOT, 'examples', 'vassals', 'customer1.ini'), ns: `moat-v1-${tag}`, addr: '' },
    { name: 'customer2', file: path.join(ROOT, 'examples', 'vassals', 'customer2.yaml'), ns: `moat-v2-${tag}`, addr: '' },
  ];
  const tally: Tally = { failures: 0 };
  const code = await runDemo(tmp, tally, () => {
    say(`moat demo: namespaces ${gwNs} (gateway), ${vassals.map((v) => v.ns).join(', ')} (vassals); files in ${tmp}`);
    // The example config as shipped, placed in the demo's namespace and temp dir.
    const { options, cfg, socket, stats } = exampleRouter('moat.ini', tmp, gwNs);
    const moat = buildInstance(options, checkOptions(options));
    const router = moat.router!;
    return [
      namespaces([gwNs, ...vassals.map((v) => v.ns)]),
      ...moat.components,
      vassalDevices(vassals, socket, () => say(`router: device ${cfg.device} in ${gwNs}, socket ${socket}, ${router.ruleSet().in.length} in-rules and ${router.ruleSet().out.length} out-rules`)),
      checks(keep, tally, () => `running until Ctrl-C; stats: nc -U ${stats}`, async (children) => {
        let failures = 0;
        const gwAddr = '192.168.0.1';
        children.push(serveIn(['ip', 'netns', 'exec', gwNs], gwAddr));
        for (const v of vassals) children.push(serveIn(['ip', 'netns', 'exec', v.ns], v.addr));
        await new Promise((r) => setTimeout(r, 700));
        const check = async (what: string, ns: string, dst: string, expect: boolean) => {
          const got = await askIn(['ip', 'netns', 'exec', ns], dst);
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
        return failures;
      }),
    ];
  });
  say('demo: cleaned up (namespaces, devices, sockets removed)');
  return code;
}

/** The router demo's vassals: the example vassal files' devices, each in its
 *  namespace, configured by their `ip` hooks (uWSGI's order: the device
 *  exists, then the hooks; without the runtime there is no UTS namespace). */
function vassalDevices(vassals: DemoVassal[], socket: string, routerUp: () => void): Component {
  const devices: Device[] = [];
  return {
    name: 'demo vassal devices',
    start() {
      routerUp();
      for (const v of vassals) {
        const vOptions = loadFile(v.file);
        const dcfg = deviceConfig(vOptions);
        dcfg.socket = socket;
        dcfg.netns = `/run/netns/${v.ns}`;
        const device = new Device(dcfg);
        device.start();
        devices.push(device);
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
    },
    stop() {
      for (const d of devices.splice(0)) d.stop();
    },
  };
}

/** The emperor demo: examples/emperor.ini with its two vassals, each in its own namespaces. */
async function emperorDemo(keep: boolean): Promise<number> {
  // The demo's own checks say what failed; the refusals it provokes are expected.
  if (!process.env.MOAT_LOG_LEVEL) setLogLevel('error');
  const tag = crypto.randomBytes(3).toString('hex');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-demo-'));
  const gwNs = `moat-gw-${tag}`;
  const pids: number[] = [];
  let vdir = '';
  const tally: Tally = { failures: 0 };
  const code = await runDemo(tmp, tally, () => {
    say(`moat demo: the emperor on examples/emperor.ini; the router's tun device in namespace ${gwNs}; files in ${tmp}`);
    const { options, cfg, stats } = exampleRouter('emperor.ini', tmp, gwNs);
    // The example vassal files as shipped, copied to the demo's emperor directory
    // and pointed at the demo's router socket.
    vdir = path.join(tmp, 'vassals');
    fs.mkdirSync(vdir);
    const shipped = emperorConfig(options);
    // Their read-only root, made here as an admin makes /var/lib/moat/rootfs.
    const rootfs = path.join(tmp, 'rootfs');
    execFileSync('bash', [path.join(ROOT, 'scripts', 'make-rootfs.sh'), rootfs], { stdio: 'ignore' });
    for (const f of fs.readdirSync(shipped.dir).sort()) {
      fs.writeFileSync(path.join(vdir, f), fs.readFileSync(path.join(shipped.dir, f), 'utf8')
        .split('/run/moat/tuntap.sock').join(cfg.socket).split('/var/lib/moat/rootfs').join(rootfs));
    }
    const source = { file: 'moat demo' };
    const demoOptions: OptionList = [
      ...options.filter((o) => !['emperor', 'vassals-dir-root', 'log-level'].includes(o.key)),
      { key: 'emperor', value: vdir, source },
      { key: 'vassals-dir-root', value: path.join(tmp, 'run'), source },
      // The router process logs at the demo's level (errors only, unless MOAT_LOG_LEVEL says).
      { key: 'log-level', value: process.env.MOAT_LOG_LEVEL || 'error', source },
    ];
    // As `moat emperor` runs it: the router in its own process, dropped to
    // the router user with no capability; the emperor (root) runs the
    // exec-as-root hooks once the device exists, then spawns the vassals.
    fs.chmodSync(tmp, 0o755);  // the router user reaches its sockets here
    const moat = buildInstance(demoOptions, checkOptions(demoOptions), { emperor: true });
    return [
      namespaces([gwNs]),
      ...moat.components,
      checks(keep, tally, () => `running until Ctrl-C; try: moat emperor --status --stats ${stats}; edit a file in ${vdir} to reload that vassal`,
        (children) => emperorChecks(moat, gwNs, cfg.device, stats, children, pids)),
    ];
  }, () => {
    const left = pids.filter((p) => fs.existsSync(`/proc/${p}`));
    if (left.length) say(`demo: FAIL vassal runtimes still running: ${left.join(', ')}`);
    return left.length;
  });
  say('demo: cleaned up (vassals stopped, namespaces, devices, sockets and directories removed)');
  return code;
}

/** What the emperor demo shows and checks, once the router process, its hooks and the emperor started. */
async function emperorChecks(moat: Instance, gwNs: string, device: string, stats: string, children: ChildProcess[], pids: number[]): Promise<number> {
  const router = moat.routerProcess!;
  const emperor = moat.emperor!;
  const gwAddr = '192.168.0.1';
  let failures = 0;
  const check = (what: string, ok: boolean, detail: string) => {
    if (!ok) failures++;
    say(`  ${ok ? 'ok  ' : 'FAIL'} ${what}: ${detail}`);
  };
  const doc = await fetchStats(stats) as { uid: number; moat: { rules: { in: unknown[]; out: unknown[] } } };
  const caps = /CapEff:\s*(\S+)/.exec(fs.readFileSync(`/proc/${router.pid}/status`, 'utf8'))?.[1];
  say(`router: ${device} (${gwAddr}) in ${gwNs}, ${doc.moat.rules.in.length} in-rules and ${doc.moat.rules.out.length} out-rules from rules/isolation.rules`);
  say(`router process: pid ${router.pid}, uid ${doc.uid}, capabilities ${caps} (none); the emperor (pid ${process.pid}) keeps root to spawn vassals`);
  say(`emperor: ${fs.readdirSync(emperor.config.dir).join(', ')} from examples/vassals, namespaces ${emperor.config.clone.join(',')}`);

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
    const uid = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${v.pid}/status`, 'utf8'))?.[1];
    const root = fs.readFileSync(`/proc/${v.pid}/mountinfo`, 'utf8').split('\n').map((l) => l.split(' ')).find((f) => f[4] === '/');
    check(`${v.name} runs as an unprivileged user on a read-only root`, uid !== '0' && !!root && root[5].split(',').includes('ro'),
      `uid ${uid}, / mounted ${root?.[5] ?? '?'}; limits ${emperor.status().find((x) => x.name === v.name)?.limits ?? 'none'}`);
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

  const s = router.stats();
  say('router peers:');
  for (const p of s.peers) {
    const why = Object.entries(p.drops).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ');
    say(`  ${intToIpv4(p.addr)} (pid ${p.pid})  packets to it ${p.tx}, from it ${p.rx}, dropped ${p.dropped}${why ? ` (${why})` : ''}`);
  }
  say('emperor status (also: moat emperor --status --stats ' + stats + '):');
  for (const l of formatStatus(emperor.status()).trimEnd().split('\n')) say('  ' + l);
  return failures;
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
