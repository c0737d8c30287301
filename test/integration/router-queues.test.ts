// router-queues.test.ts: the tun's queues toward the router
// (tuntap-router-queues). A flood from the host toward one vassal must fill
// that vassal's own queue only: its neighbour's packets, in another queue,
// still arrive. Deterministic: the router (the moat CLI) is stopped with
// SIGSTOP, the gateway sends 2,000 datagrams to one peer (its queue holds
// 200: txqueuelen), then 10 to a neighbour, then the router goes on. With
// one queue (as uWSGI's) the neighbour's 10 are lost behind the flood; a
// device made before without multi_queue keeps one queue, and says so; one
// made with multi_queue takes a router asking for one queue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { readStats, startMoat, tempDir, waitForSocket } from '../helpers/moat';
import { icmpEcho } from '../helpers/packets';
import { FramePeer } from '../helpers/frame-peer';
import { backlog, countingPeers, HoldRouter, startHoldRouter, startSender } from '../helpers/hold-backlog';

const FLOOD = 2000;
const NEIGHBOUR = 10;
const QUEUE_LEN = 200;
const PORT = 9000;

/** The flood and then the neighbour's datagrams, queued while the router is
 *  stopped; what the tun dropped. */
async function floodThenNeighbour(lab: Lab, hr: HoldRouter): Promise<number> {
  const sender = await startSender(lab, hr.ns, hr.gw, hr.prefix, 1, FLOOD, PORT);
  const dropped = await backlog(hr, async () => {
    await sender.command('flood');
    for (let seq = 0; seq < NEIGHBOUR; seq++) await sender.command(`one 1 ${seq}`);
  });
  sender.end();
  return dropped;
}

test('a flood toward one vassal fills its own queue: the neighbour\'s datagrams all arrive', async (t) => {
  requireRoot();
  const lab = new Lab();
  try {
    const hr = await startHoldRouter(lab, 50, 'mqa', { txqueuelen: QUEUE_LEN });
    const tun = (await readStats(hr.stats)).moat.tun;
    assert.equal(tun.queues, 8, 'eight queues by default');
    assert.equal(tun.steered_by, 'destination');
    assert.match(sh('ip', ['-n', hr.ns, '-d', 'link', 'show', hr.tun]), /multi_queue numqueues 8/);
    const got = await countingPeers(lab, hr, 2, 0x4200);  // got[0] flooded, got[1] its neighbour
    const dropped = await floodThenNeighbour(lab, hr);
    await waitFor(() => got[1] === NEIGHBOUR, 5000, `the neighbour's datagrams (${got[1]} of ${NEIGHBOUR})`);
    await waitFor(() => got[0] >= QUEUE_LEN - 10, 5000, `the flood's queue (${got[0]})`);
    t.diagnostic(`flood: ${got[0]} of ${FLOOD} delivered, the tun dropped ${dropped}; neighbour ${got[1]} of ${NEIGHBOUR}`);
    assert.ok(dropped >= FLOOD - QUEUE_LEN - 50, `the flood overflowed its own queue (dropped ${dropped})`);
    assert.ok(got[0] <= QUEUE_LEN + 50, `no more of the flood than its queue held (${got[0]})`);
  } finally {
    await lab.cleanup();
  }
});

test('the same with one queue (tuntap-router-queues = 1, as uWSGI): the neighbour\'s datagrams are lost behind the flood', async (t) => {
  requireRoot();
  const lab = new Lab();
  try {
    const hr = await startHoldRouter(lab, 50, 'mqb', { txqueuelen: QUEUE_LEN, args: ['--tuntap-router-queues', '1'] });
    const tun = (await readStats(hr.stats)).moat.tun;
    assert.deepEqual([tun.queues, tun.steered_by], [1, 'one queue']);
    assert.doesNotMatch(sh('ip', ['-n', hr.ns, '-d', 'link', 'show', hr.tun]), /multi_queue/);
    const got = await countingPeers(lab, hr, 2, 0x4200);  // got[0] flooded, got[1] its neighbour
    const dropped = await floodThenNeighbour(lab, hr);
    await waitFor(() => got[0] >= QUEUE_LEN - 10, 5000, `the flood's queue (${got[0]})`);
    await new Promise((r) => setTimeout(r, 300));
    t.diagnostic(`flood: ${got[0]} delivered, the tun dropped ${dropped}; neighbour ${got[1]} of ${NEIGHBOUR}`);
    assert.equal(got[1], 0, 'the one queue was full of the flood');
    assert.ok(dropped >= FLOOD - QUEUE_LEN + NEIGHBOUR - 50, `dropped ${dropped}`);
  } finally {
    await lab.cleanup();
  }
});

/** A router (queue options: args) on a tun made before it with
 *  `ip tuntap add ... extra`; what its stats and output say, once a peer's
 *  echo request was answered through it. */
async function onPremadeTun(extra: string[], args: string[]): Promise<{ tun: any; output: string }> {
  requireRoot();
  const lab = new Lab();
  try {
    const ns = lab.netns('mqc');
    const dev = uniqueName('mqct');
    sh('ip', ['-n', ns, 'tuntap', 'add', 'dev', dev, 'mode', 'tun', ...extra]);
    const dir = tempDir(lab);
    const sock = `${dir}/tuntap.sock`;
    const stats = `${dir}/stats.sock`;
    const router = startMoat(lab, ['--tuntap-router', `${dev} ${sock}`, '--tuntap-router-stats', stats, ...args], ns);
    await waitForSocket(stats, router);
    sh('ip', ['-n', ns, 'addr', 'add', '10.77.0.1/16', 'dev', dev]);
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    const p = await FramePeer.connect(sock, { keep: false });
    lab.onCleanup(() => p.close());
    p.send(icmpEcho('10.77.1.1', '10.77.0.1', 0x4300, 1));
    await waitFor(() => p.received >= 1, 10000, 'the echo reply');
    return { tun: (await readStats(stats)).moat.tun, output: router.output() };
  } finally {
    await lab.cleanup();
  }
}

test('a tun made before without multi_queue: the router reads it through one queue and says so', async () => {
  const { tun, output } = await onPremadeTun([], []);
  assert.deepEqual([tun.queues, tun.steered_by], [1, 'one queue']);
  assert.match(output, /exists without multi_queue: reading it through one queue/);
});

test('a tun made before with multi_queue, one queue asked for: the router attaches one', async () => {
  const { tun } = await onPremadeTun(['multi_queue'], ['--tuntap-router-queues', '1']);
  assert.deepEqual([tun.queues, tun.steered_by], [1, 'one queue']);
});
