// emperor-netns.ts: the files of a `moat emperor` whose router's tun device
// lives in a gateway namespace the test made (an address of a random /24 of
// 10.16-215.x.0 on it, .1, added by the router's exec-as-root hooks): an
// empty vassal directory, the router and stats sockets, the emperor's ini.
// For tests that run the real `moat emperor` (router process, IPC, vassals).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, uniqueName } from './netns';
import { tempDir } from './moat';

export interface EmperorFiles {
  gwNs: string;          // the gateway namespace (the router's tun device)
  tun: string;
  dir: string;           // the vassal directory
  sock: string;          // the router socket
  stats: string;         // the stats socket
  ini: string;           // the emperor's config file
  tmp: string;
  host: (n: number) => string;   // an address of the /24; .1 is the gateway's
}

/** extraHooks: more exec-as-root commands (before the device goes up); extra: more ini lines. */
export function emperorInNetns(lab: Lab, tag: string, opts: { extraHooks?: (f: EmperorFiles) => string[]; extra?: (f: EmperorFiles) => string[] } = {}): EmperorFiles {
  const net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
  const tmp = tempDir(lab);
  fs.chmodSync(tmp, 0o755);   // the router process (nobody) reaches its socket
  const f: EmperorFiles = {
    gwNs: lab.netns(`${tag}g`), tun: uniqueName(`${tag}e`), dir: path.join(tmp, 'vassals'), sock: path.join(tmp, 't.sock'),
    stats: path.join(tmp, 's.sock'), ini: path.join(tmp, 'emperor.ini'), tmp, host: (n) => net24 + n,
  };
  fs.mkdirSync(f.dir);
  fs.writeFileSync(f.ini, [
    '[uwsgi]', `emperor = ${f.dir}`, 'emperor-use-clone = fs,ipc,uts,net,pid', 'emperor-freq = 1',
    `vassals-dir-root = ${path.join(tmp, 'run')}`,
    `tuntap-router = ${f.tun} ${f.sock} ${f.stats}`, `tuntap-router-netns = /run/netns/${f.gwNs}`,
    `exec-as-root = ip addr add ${f.host(1)}/24 dev ${f.tun}`, ...(opts.extraHooks?.(f) ?? []).map((c) => `exec-as-root = ${c}`),
    `exec-as-root = ip link set ${f.tun} up`, ...(opts.extra?.(f) ?? []), '',
  ].join('\n'));
  return f;
}
