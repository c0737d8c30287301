// tun-read.ts: what reading one packet from a tun device costs, with read()
// and with io_uring reads batched 1, 4, 16 and 64 a call (native/tun_batch.h),
// side by side in one run (bench/gen/tunread.cc, built on tun_batch.h itself,
// in a namespace of its own).
//
//   node dist/bench/tun-read.js [--rounds 200]
//
// Each round queues 1,000 64-byte datagrams into the tun and times reading
// them back; methods alternate round by round. Printed: µs per packet and
// the ratio to read().
import path from 'node:path';
import { Lab, requireRoot, uniqueName } from '../test/helpers/netns';
import { buildGen, cleanupAll, lastJson, releaseLab, ROOT, run, trackLab } from './lib';

const BIN = path.join(ROOT, 'bench', 'bin', 'tunread');

async function main(argv: string[]): Promise<void> {
  let rounds = 200;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--rounds') rounds = Number(argv[++i]);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 10000) throw new Error('--rounds must be an integer 1..10000');
  requireRoot();
  buildGen('tunread');
  const lab = trackLab(new Lab());
  try {
    const ns = lab.netns('mtr');
    const r = await run(lab, ns, BIN, [uniqueName('mtr'), String(rounds)], 300000);
    const j = lastJson(r.stdout);
    if (!j) throw new Error(`tunread failed: ${r.stderr}`);
    const base = Number(j.read);
    process.stdout.write('method          µs per packet  / read()\n');
    for (const [k, label] of [['read', 'read()'], ['uring1', 'io_uring x1'], ['uring4', 'io_uring x4'], ['uring16', 'io_uring x16'], ['uring64', 'io_uring x64']]) {
      const v = Number(j[k]);
      process.stdout.write(`${label.padEnd(14)}  ${v.toFixed(3).padStart(13)}  ${(v / base).toFixed(2).padStart(8)}\n`);
    }
    process.stdout.write(`(${Number(j.packets).toLocaleString('en-US')} packets per method, 64-byte UDP)\n`);
  } finally {
    await releaseLab(lab);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch(async (e) => {
    process.stderr.write(`tun-read: ${(e as Error).stack ?? e}\n`);
    await cleanupAll();
    process.exit(1);
  });
}
