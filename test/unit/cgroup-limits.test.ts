// cgroup-limits.test.ts: the values of vassal-memory-max, -pids-max and
// -cpu-max, the emperor-wide defaults, and uWSGI's cgroup / cgroup-opt read
// where they map onto them (src/vassal/cgroup-limits.ts): numbers out, or an
// error that names the option, file:line and what was expected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseMemoryMax, parsePidsMax, parseCpuMax, vassalLimits, emperorVassalLimits, describeLimits, formatBytes, cpuQuotaUs,
} from '../../src/vassal/cgroup-limits';
import { parseIni } from '../../src/config/ini';
import { throwsConfig } from './config-helpers';

const ini = (body: string) => parseIni('[uwsgi]\n' + body, 'v.ini');
const limits = (body: string, cpus = 2) => vassalLimits(ini(body), {}, cpus);
const rejects = (f: () => unknown, re: RegExp) => assert.throws(f, (e: unknown) => e instanceof RangeError && re.test(e.message), String(re));

test('memory: bytes, K/M/G/T 1024-based (either case, fractions with a unit), max', () => {
  assert.equal(parseMemoryMax('1048576'), 1 << 20);
  assert.equal(parseMemoryMax('512M'), 512 * 2 ** 20);
  assert.equal(parseMemoryMax('512m'), 512 * 2 ** 20);
  assert.equal(parseMemoryMax('2048K'), 2 * 2 ** 20);
  assert.equal(parseMemoryMax('1G'), 2 ** 30);
  assert.equal(parseMemoryMax('1.5G'), 1.5 * 2 ** 30);
  assert.equal(parseMemoryMax(' 2T '), 2 * 2 ** 40);
  assert.equal(parseMemoryMax('max'), 'max');
  assert.equal(parseMemoryMax('infinity'), 'max');
  rejects(() => parseMemoryMax('512'), /^'512' is 512 bytes, below the smallest limit moat sets, 1M \(did you mean 512M\?\)$/);
  rejects(() => parseMemoryMax('0.5M'), /^'0\.5M' is 524288 bytes, below the smallest limit moat sets, 1M$/);
  rejects(() => parseMemoryMax('512MB'), /^'512MB' is not a size: write bytes, or a number with K, M, G or T \(1024-based\), e\.g\. 512M, or max$/);
  rejects(() => parseMemoryMax('-1'), /is not a size/);
  rejects(() => parseMemoryMax(''), /is not a size/);
  rejects(() => parseMemoryMax('1048576.5'), /fraction of a byte/);
  rejects(() => parseMemoryMax('99999999T'), /too large/);
  assert.equal(formatBytes(512 * 2 ** 20), '512M');
  assert.equal(formatBytes(1536 * 2 ** 20), '1536M');
  assert.equal(formatBytes(1000), '1000');
});

test('pids: a whole number from 1 to the kernel\'s limit, or max', () => {
  assert.equal(parsePidsMax('64'), 64);
  assert.equal(parsePidsMax('1'), 1);
  assert.equal(parsePidsMax('MAX'), 'max');
  rejects(() => parsePidsMax('0'), /^'0': at least 1 \(the vassal's runtime is one\)$/);
  rejects(() => parsePidsMax('1.5'), /not a whole number of tasks/);
  rejects(() => parsePidsMax('-3'), /not a whole number of tasks/);
  rejects(() => parsePidsMax('5000000'), /above the kernel's limit of 4194304/);
});

test('cpu: cores from 0.01 to the machine\'s CPU count, or max', () => {
  assert.equal(parseCpuMax('0.5', 2), 0.5);
  assert.equal(parseCpuMax('.25', 2), 0.25);
  assert.equal(parseCpuMax('2', 2), 2);
  assert.equal(parseCpuMax('0.01', 2), 0.01);
  assert.equal(parseCpuMax('max', 2), 'max');
  rejects(() => parseCpuMax('3', 2), /^'3' cores is more than this machine's 2 CPUs \(write max for no limit\)$/);
  rejects(() => parseCpuMax('0', 2), /^'0': more than 0 cores/);
  rejects(() => parseCpuMax('0.004', 2), /below the kernel's smallest quota, 0\.01/);
  rejects(() => parseCpuMax('50%', 2), /^'50%' is not a number of cores: write e\.g\. 0\.5 \(half a CPU\), 2, or max$/);
  rejects(() => parseCpuMax('1e3', 2), /not a number of cores/);
  assert.equal(cpuQuotaUs(0.5), 50000);
  assert.equal(cpuQuotaUs(1.25), 125000);
});

test('vassal file: the three options, last wins, over the emperor\'s defaults (max lifts one)', () => {
  const r = vassalLimits(ini('vassal-memory-max = 256M\nvassal-pids-max = 64\nvassal-cpu-max = 0.5\nvassal-pids-max = 100\n'), {}, 2);
  assert.deepEqual(r, { limits: { memoryMax: 256 * 2 ** 20, pidsMax: 100, cpuMax: 0.5 }, warnings: [] });
  const defaults = { memoryMax: 2 ** 30, pidsMax: 200, cpuMax: 1 };
  assert.deepEqual(vassalLimits(ini('vassal-cpu-max = max\n'), defaults, 2).limits, { memoryMax: 2 ** 30, pidsMax: 200, cpuMax: 'max' });
  assert.deepEqual(vassalLimits(ini('other = 1\n'), defaults, 2).limits, defaults);
  assert.equal(describeLimits(r.limits), 'memory 256M, pids 100, cpu 0.5 cores');
  assert.equal(describeLimits({}), 'memory max, pids max, cpu max');
});

test('vassal file: a bad value is an error with file:line and the option\'s name', () => {
  throwsConfig(() => limits('vassal-memory-max = 64\n'), /^v\.ini:2: vassal-memory-max: '64' is 64 bytes, below .*did you mean 64M\?/, 2);
  throwsConfig(() => limits('uid = 1000\nvassal-pids-max = 0\n'), /^v\.ini:3: vassal-pids-max: '0': at least 1/, 3);
  throwsConfig(() => limits('vassal-cpu-max = 4\n'), /^v\.ini:2: vassal-cpu-max: '4' cores is more than this machine's 2 CPUs/, 2);
});

test('emperor-wide defaults: emperor-vassal-*, errors named as written', () => {
  const opts = parseIni('[uwsgi]\nemperor = /etc/moat/vassals\nemperor-vassal-memory-max = 1G\nemperor-vassal-pids-max = 256\n'
    + 'emperor-vassal-cpu-max = 1.5\nvassal-pids-max = 9\ncgroup-opt = pids.max=3\n', 'e.ini');
  assert.deepEqual(emperorVassalLimits(opts, 2), { memoryMax: 2 ** 30, pidsMax: 256, cpuMax: 1.5 });
  throwsConfig(() => emperorVassalLimits(parseIni('[uwsgi]\nemperor-vassal-cpu-max = half\n', 'e.ini'), 2),
    /^e\.ini:2: emperor-vassal-cpu-max: 'half' is not a number of cores/, 2);
});

test('uWSGI cgroup-opt: memory, pids and cpu files map onto the limits', () => {
  assert.deepEqual(limits('cgroup-opt = memory.limit_in_bytes=52428800\ncgroup-opt = pids.max=32\n').limits,
    { memoryMax: 50 * 2 ** 20, pidsMax: 32 });
  assert.deepEqual(limits('cgroup-opt = memory.max=1G\ncgroup-opt = pids.max=max\n').limits, { memoryMax: 2 ** 30, pidsMax: 'max' });
  assert.deepEqual(limits('vassal-memory-max = 1G\ncgroup-opt = memory.limit_in_bytes=-1\n').limits, { memoryMax: 'max' });
  // quota/period is read as one ratio, in either order; moat writes it with its own 100 ms period.
  assert.deepEqual(limits('cgroup-opt = cpu.cfs_quota_us=50000\n').limits, { cpuMax: 0.5 });
  assert.deepEqual(limits('cgroup-opt = cpu.cfs_period_us=200000\ncgroup-opt = cpu.cfs_quota_us=50000\n').limits, { cpuMax: 0.25 });
  assert.deepEqual(limits('cgroup-opt = cpu.cfs_quota_us=50000\ncgroup-opt = cpu.cfs_period_us=50000\n').limits, { cpuMax: 1 });
  assert.deepEqual(limits('cgroup-opt = cpu.cfs_quota_us=-1\n').limits, { cpuMax: 'max' });
  assert.deepEqual(limits('cgroup-opt = cpu.max=150000 100000\n').limits, { cpuMax: 1.5 });
  assert.deepEqual(limits('cgroup-opt = cpu.max=max\n').limits, { cpuMax: 'max' });
  assert.deepEqual(limits('cgroup-opt = cpu.cfs_quota_us=50000\nvassal-cpu-max = 2\n').limits, { cpuMax: 2 });
  throwsConfig(() => limits('cgroup-opt = cpu.cfs_quota_us=300000\n'),
    /^v\.ini:2: cgroup-opt: 300000\/100000 µs = 3 cores is more than this machine's 2 CPUs/, 2);
  throwsConfig(() => limits('cgroup-opt = memory.limit_in_bytes=lots\n'), /^v\.ini:2: cgroup-opt: 'lots' is not a size/, 2);
  throwsConfig(() => limits('cgroup-opt = cpu.cfs_quota_us=0\n'), /cpu\.cfs_quota_us '0' is not a positive number of microseconds/);
});

test('uWSGI cgroup-opt: files with no moat counterpart are refused with the reason; cgroup = PATH sets nothing (the table warns)', () => {
  const refused: Array<[string, RegExp]> = [
    ['memory.memsw.limit_in_bytes=1G', /memory\.memsw\.limit_in_bytes is not supported: moat leaves swap as the host has it/],
    ['memory.swap.max=0', /memory\.swap\.max is not supported: moat leaves swap/],
    ['memory.soft_limit_in_bytes=1G', /memory\.soft_limit_in_bytes is not supported: moat sets one hard memory limit: vassal-memory-max/],
    ['memory.high=1G', /memory\.high is not supported: moat sets one hard memory limit/],
    ['memory.oom_control=1', /memory\.oom_control is not supported: moat keeps the OOM killer on/],
    ['cpu.shares=512', /cpu\.shares is not supported: moat sets no relative CPU weight/],
    ['cpuset.cpus=0', /cpuset\.cpus is not supported: moat does not pin vassals to CPUs/],
    ['tasks=1', /tasks is not supported: moat places the vassal's processes itself/],
    ['cgroup.procs=1', /cgroup\.procs is not supported: moat places the vassal's processes itself/],
    ['blkio.weight=100', /blkio\.weight is not supported: no moat limit maps to it/],
  ];
  for (const [value, re] of refused) throwsConfig(() => limits(`cgroup-opt = ${value}\n`), new RegExp(`^v\\.ini:2: cgroup-opt: ${re.source}`), 2);
  throwsConfig(() => limits('cgroup-opt = pids.max\n'), /^v\.ini:2: cgroup-opt: 'pids\.max' is not KEY=VALUE/);
  const r = limits('cgroup = /sys/fs/cgroup/memory/%n\ncgroup-opt = pids.max=10\n');
  assert.deepEqual(r.limits, { pidsMax: 10 });
  assert.deepEqual(r.warnings, []);
});
