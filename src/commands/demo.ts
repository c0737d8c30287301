// demo.ts: `moat demo [--keep]`: runs the router on the shipped example
// config (examples/moat.ini) with the two example vassals, everything inside
// network namespaces it creates, shows the vassals reaching the gateway and
// being kept apart, then removes everything. Exit 0 when all checks passed.
import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadFile } from '../config/load';
import { routerConfig, deviceConfig } from '../config/router-config';
import { Router } from '../router/router';
import { hooksPlugin } from '../router/hooks';
import { Device } from '../device/device';
import { intToIpv4 } from '../addr';
import { setLogLevel } from '../log';

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
    process.chdir(ROOT);  // the example names rules/isolation.rules relative to the repo
    const options = loadFile(path.join(ROOT, 'examples', 'moat.ini'));
    const cfg = routerConfig(options);
    const socket = path.join(tmp, 'tuntap.sock');
    const stats = path.join(tmp, 'stats.sock');
    cfg.socket = socket;
    cfg.stats = stats;
    cfg.netns = `/run/netns/${gwNs}`;
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
      for (const o of vOptions.filter((x) => x.key === 'exec-as-root')) {
        execFileSync('ip', ['netns', 'exec', v.ns, '/bin/sh', '-c', o.value], { stdio: 'inherit' });
        const m = /addr add ([\d.]+)/.exec(o.value);
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
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
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

function serve(ns: string, addr: string): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, process.execPath, PROBE, 'serve', addr, '7777'], { stdio: 'ignore' });
}

function ask(ns: string, addr: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = spawn('ip', ['netns', 'exec', ns, process.execPath, PROBE, 'ask', addr, '7777', '1500'], { stdio: 'ignore' });
    c.on('exit', (code) => resolve(code === 0));
  });
}
