// relay-scenario.ts: the bare one-hop path, for comparison only. One
// thread (bench/gen/tunrelay.cc) holds a tun in the gateway and one in the
// vassal and copies packets between them: a tun read and a tun write a
// packet, virtio-net headers with TSO as moat uses them, and nothing else
// (no firewall, limits, accounting). What any userspace router between tun
// devices pays, so the floor under moat's own path: bench/one-hop.ts and the
// TCP section of `npm run bench` measure it beside veth and moat.
import { sh, uniqueName } from '../test/helpers/netns';
import { buildGen, collect, until } from './lib';
import { GW_ADDR, Scenario, V_ADDR } from './scenarios';

export class RelayScenario extends Scenario {
  /** bin: bench/gen/tunrelay.cc built (relayBinary()); busyUs and batch as its --busy-us and --batch. */
  constructor(private readonly bin: string, private readonly busyUs = 100, private readonly batch = true) { super('relay'); }

  protected async build(): Promise<void> {
    const gtun = uniqueName('mbr');
    const vtun = uniqueName('mbs');
    const relay = this.lab.spawn(this.bin, [this.gw, gtun, this.vns, vtun, '--busy-us', String(this.busyUs), '--batch', this.batch ? '1' : '0']);
    const out = collect(relay);
    out.done.then((r) => this.log.push(`relay exited code=${r.code} signal=${r.signal}: ${out.err().slice(-500)}`));
    const exists = (ns: string, dev: string) => { try { sh('ip', ['-n', ns, 'link', 'show', dev]); return true; } catch { return false; } };
    await until(() => exists(this.gw, gtun) && exists(this.vns, vtun), 10000, 'the relay\'s tuns');
    sh('ip', ['-n', this.gw, 'addr', 'add', `${GW_ADDR}/24`, 'dev', gtun]);
    sh('ip', ['-n', this.gw, 'link', 'set', gtun, 'up']);
    sh('ip', ['-n', this.vns, 'addr', 'add', `${V_ADDR}/24`, 'dev', vtun]);
    sh('ip', ['-n', this.vns, 'link', 'set', vtun, 'up']);
    sh('ip', ['-n', this.vns, 'route', 'replace', 'default', 'via', GW_ADDR, 'dev', vtun]);
  }
}

/** bench/gen/tunrelay.cc compiled into bench/bin/tunrelay: its path. */
export function relayBinary(): string {
  return buildGen('tunrelay');
}
