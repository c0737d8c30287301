// cgroup-layout.test.ts: which hierarchies moat uses, decided from the
// mountinfo and /proc/self/cgroup texts of a v2-only machine, a v1-only one,
// this machine's hybrid, a container and a delegated user session
// (src/vassal/cgroup-layout.ts), and the one line that explains it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectLayout, explainLayout, cgroupMounts, parseSelfCgroup } from '../../src/vassal/cgroup-layout';

// This machine: v1 cpu, cpuacct, memory, pids, freezer...; v2 at /sys/fs/cgroup/unified with hugetlb only.
const HYBRID_MOUNTINFO = `21 26 0:20 / /proc rw,relatime - proc proc rw
26 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 30 0:32 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
36 30 0:33 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
37 30 0:34 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
44 26 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw,discard
`;
const HYBRID_CGROUP = `9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/65416bf1e5d643d17f6aed35b9a97921
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`;

// Debian 12 / Ubuntu 22.04+: one cgroup2 mount with every controller.
const V2_MOUNTINFO = `30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;

// CentOS 7 style: cpu and cpuacct co-mounted, no unified hierarchy.
const V1_MOUNTINFO = `25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpuacct,cpu
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
32 25 0:29 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,freezer
`;
const V1_CGROUP = `11:pids:/system.slice/moat.service
10:freezer:/
4:memory:/system.slice/moat.service
3:cpuacct,cpu:/system.slice/moat.service
1:name=systemd:/system.slice/moat.service
`;

test('mountinfo: cgroup mounts with their controllers; escaped mount points read back', () => {
  const m = cgroupMounts(HYBRID_MOUNTINFO);
  assert.equal(m.length, 10);
  assert.deepEqual(m[0], { root: '/', mountPoint: '/sys/fs/cgroup/cpu', fstype: 'cgroup', superOptions: ['rw', 'cpu'] });
  assert.equal(m[9].fstype, 'cgroup2');
  const esc = cgroupMounts('40 30 0:37 / /mnt/cg\\040root rw - cgroup2 cgroup2 rw\n');
  assert.equal(esc[0].mountPoint, '/mnt/cg root');
  // Optional fields (shared:N) before the separator do not shift the fields after it.
  assert.equal(cgroupMounts(V1_MOUNTINFO)[1].superOptions.join(','), 'rw,cpuacct,cpu');
  assert.deepEqual(parseSelfCgroup('3:cpuacct,cpu:/a:b\n0::/\n'),
    [{ id: 3, controllers: ['cpuacct', 'cpu'], path: '/a:b' }, { id: 0, controllers: [], path: '/' }]);
});

test('this machine (hybrid): memory, pids, cpu on v1; v2 for the tree and cgroup.kill; no freezer needed', () => {
  const l = detectLayout({ mountinfo: HYBRID_MOUNTINFO, selfCgroup: HYBRID_CGROUP, unifiedControllers: 'hugetlb\n', unifiedKill: true, unifiedFreeze: true });
  assert.equal(l.memory?.version, 1);
  assert.equal(l.memory?.mountPoint, '/sys/fs/cgroup/memory');
  assert.equal(l.memory?.self, '/process_api/65416bf1e5d643d17f6aed35b9a97921');
  assert.equal(l.pids?.mountPoint, '/sys/fs/cgroup/pids');
  assert.equal(l.cpu?.mountPoint, '/sys/fs/cgroup/cpu');
  assert.deepEqual(l.unified, { version: 2, mountPoint: '/sys/fs/cgroup/unified', controllers: ['hugetlb'], self: '/' });
  assert.equal(l.kill, true);
  assert.equal(l.freeze, undefined);
  assert.equal(l.freezer, undefined, 'cgroup.kill makes the v1 freezer unnecessary');
  assert.equal(l.cpuacct, undefined, 'v2 cpu.stat has the usage');
  assert.deepEqual(l.used.map((h) => h.mountPoint),
    ['/sys/fs/cgroup/unified', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/cpu']);
  assert.deepEqual(l.notes, []);
  assert.equal(explainLayout(l), 'cgroups (hybrid): memory on v1 /sys/fs/cgroup/memory, pids on v1 /sys/fs/cgroup/pids, cpu on v1 /sys/fs/cgroup/cpu; '
    + 'the process tree and cgroup.kill on v2 /sys/fs/cgroup/unified (controllers there: hugetlb); stop: cgroup.kill');
});

test('this machine on a kernel before cgroup.kill: v2 cgroup.freeze, else the v1 freezer', () => {
  const base = { mountinfo: HYBRID_MOUNTINFO, selfCgroup: HYBRID_CGROUP, unifiedControllers: 'hugetlb' };
  const freeze = detectLayout({ ...base, unifiedKill: false, unifiedFreeze: true });
  assert.equal(freeze.freeze, 'v2');
  assert.match(explainLayout(freeze), /stop: cgroup\.freeze, SIGKILL to each pid, thaw$/);
  const v1 = detectLayout({ ...base, unifiedKill: false, unifiedFreeze: false });
  assert.equal(v1.freeze, 'v1');
  assert.equal(v1.freezer?.mountPoint, '/sys/fs/cgroup/freezer');
  assert.deepEqual(v1.used.map((h) => h.mountPoint),
    ['/sys/fs/cgroup/unified', '/sys/fs/cgroup/freezer', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/cpu']);
  assert.match(explainLayout(v1), /stop: v1 freezer \(\/sys\/fs\/cgroup\/freezer\), SIGKILL to each pid, thaw$/);
});

test('v2 only: every limit on the unified hierarchy, stop by cgroup.kill', () => {
  const l = detectLayout({ mountinfo: V2_MOUNTINFO, selfCgroup: '0::/system.slice/moat.service\n',
    unifiedControllers: 'cpuset cpu io memory hugetlb pids rdma misc\n', unifiedKill: true, unifiedFreeze: true });
  for (const c of ['memory', 'pids', 'cpu'] as const) assert.equal(l[c], l.unified, c);
  assert.equal(l.unified?.self, '/system.slice/moat.service');
  assert.equal(l.used.length, 1);
  assert.equal(explainLayout(l), 'cgroups (cgroup v2): memory on v2 /sys/fs/cgroup, pids on v2 /sys/fs/cgroup, cpu on v2 /sys/fs/cgroup; stop: cgroup.kill');
});

test('v2 with a controller not delegated: that limit is unavailable, and the note says why', () => {
  const l = detectLayout({ mountinfo: V2_MOUNTINFO, selfCgroup: '0::/user.slice/user-1000.slice/user@1000.service/app.slice\n',
    unifiedControllers: 'memory pids\n', unifiedKill: true });
  assert.equal(l.cpu, undefined);
  assert.equal(l.memory, l.unified);
  assert.match(l.notes.join('\n'), /^cpu: on no v1 hierarchy and not in the unified cgroup\.controllers of \/user\.slice.*app\.slice \(not delegated\?\): no cpu limit$/m);
  assert.match(explainLayout(l), /memory on v2 \/sys\/fs\/cgroup, pids on v2 \/sys\/fs\/cgroup, no cpu limit; the process tree/);
});

test('v1 only: co-mounted cpu,cpuacct; the freezer stops; cpu usage from cpuacct', () => {
  const l = detectLayout({ mountinfo: V1_MOUNTINFO, selfCgroup: V1_CGROUP });
  assert.equal(l.unified, undefined);
  assert.equal(l.kill, false);
  assert.equal(l.freeze, 'v1');
  assert.equal(l.cpu?.mountPoint, '/sys/fs/cgroup/cpu,cpuacct');
  assert.deepEqual(l.cpu?.controllers, ['cpuacct', 'cpu']);
  assert.equal(l.cpuacct, l.cpu);
  assert.equal(l.memory?.self, '/system.slice/moat.service');
  assert.equal(l.freezer?.self, '/');
  assert.deepEqual(l.used.map((h) => h.mountPoint),
    ['/sys/fs/cgroup/freezer', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/cpu,cpuacct']);
  assert.equal(explainLayout(l), 'cgroups (cgroup v1): memory on v1 /sys/fs/cgroup/memory, pids on v1 /sys/fs/cgroup/pids, '
    + 'cpu on v1 /sys/fs/cgroup/cpu,cpuacct; stop: v1 freezer (/sys/fs/cgroup/freezer), SIGKILL to each pid, thaw');
});

test('a container: a mount of a subtree; a cgroup outside every mount is noted and not used', () => {
  const mountinfo = '50 40 0:31 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n'
    + '51 40 0:35 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n';
  const l = detectLayout({ mountinfo, selfCgroup: '4:memory:/docker/abc/app\n3:pids:/elsewhere\n' });
  assert.equal(l.memory?.self, '/app', 'relative to the mount\'s root');
  assert.equal(l.pids, undefined);
  assert.match(l.notes.join('\n'), /the v1 pids hierarchy: this process's cgroup \/elsewhere is outside every mount of it \(\/sys\/fs\/cgroup\/pids\)/);
  assert.match(l.notes.join('\n'), /^cpu: on no v1 hierarchy, and no unified hierarchy: no cpu limit$/m);
  assert.match(explainLayout(l), /^cgroups \(cgroup v1\): memory on v1 \/sys\/fs\/cgroup\/memory, no pids limit, no cpu limit; stop: SIGKILL rounds over cgroup\.procs$/);
});

test('no cgroups mounted: nothing used, and the line says what stop does then', () => {
  const l = detectLayout({ mountinfo: '26 1 254:0 / / rw - ext4 /dev/vda rw\n', selfCgroup: '0::/\n' });
  assert.deepEqual(l.used, []);
  assert.match(explainLayout(l), /^cgroups: none usable/);
});
