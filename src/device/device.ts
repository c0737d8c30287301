// device.ts: the vassal's device, TS side. Checks a DeviceConfig at the edge
// (precise TypeError/RangeError before anything reaches C++), then runs the
// native device: a tun device inside the vassal's netns pumped to the router's
// unix socket, reconnecting by itself when the router goes away.
//
// Events: 'connected' (), 'disconnected' (reason), 'connect_failed'
// ({ attempt, error, retryMs }), 'error' (Error; the native loop stopped).
import { EventEmitter } from 'node:events';

import type { DeviceConfig } from '../config/types';
import { spec } from '../config/schema';
import { addon, type DeviceEvent, type DeviceOptions, type DeviceStats, type NativeDevice } from '../native';

export interface DeviceExtra {
  /** A netns file (/run/netns/NAME) the device thread enters before creating its tun; overrides config.netns. */
  netns?: string;
  /** A directory fd kept open: the socket is reached through it after pivot_root hid its path. */
  dirFd?: number;
}

export interface ConnectFailed { attempt: number; error: string; retryMs: number }

const SUN_PATH_MAX = 107;   // sockaddr_un.sun_path is 108 bytes with its NUL
const IFNAMSIZ_MAX = 15;

/** Linux's rule for interface names (dev_valid_name). */
export function checkDeviceName(name: unknown, what = 'tuntap-device name'): string {
  if (typeof name !== 'string') throw new TypeError(`${what} must be a string`);
  if (name.length < 1 || Buffer.byteLength(name) > IFNAMSIZ_MAX) {
    throw new RangeError(`${what} "${name}" must be 1-${IFNAMSIZ_MAX} bytes long`);
  }
  if (name === '.' || name === '..' || /[/:\s]/.test(name)) {
    throw new RangeError(`${what} "${name}" may not be "." or ".." nor contain "/", ":" or blanks`);
  }
  return name;
}

/** A value of a DeviceConfig built by hand (the bench, tests, an embedder),
 *  bounded by the option's row: the same bounds a config file gets. */
function bounded(v: unknown, what: string, option: string, lo?: number): number {
  const row = spec(option);
  const min = lo ?? row.min!;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${what} must be an integer`);
  if (v < min || v > row.max!) throw new RangeError(`${what} must be in ${min}..${row.max}, got ${v}`);
  return v;
}

/** The path the native device connects to (mirrors Device::connect_path in native/device.cc). */
export function connectPath(socket: string, dirFd: number): string {
  if (dirFd < 0) return socket;
  const name = socket.startsWith('/') ? socket.slice(socket.lastIndexOf('/') + 1) : socket;
  if (name === '') throw new RangeError(`tuntap-device socket "${socket}" has no file name`);
  return `/proc/self/fd/${dirFd}/${name}`;
}

/** DeviceConfig + extras -> the options the native device takes, checked. */
export function deviceOptions(config: DeviceConfig, extra: DeviceExtra = {}): DeviceOptions {
  const name = checkDeviceName(config.device);
  if (typeof config.socket !== 'string' || config.socket === '') {
    throw new TypeError('tuntap-device socket must be a non-empty path');
  }
  if (config.socket.includes('\0')) throw new RangeError('tuntap-device socket path contains a NUL byte');
  const dirFd = extra.dirFd === undefined ? -1 : extra.dirFd;
  if (!Number.isInteger(dirFd) || dirFd < -1 || dirFd > 0x7fffffff) throw new RangeError(`dirFd must be a file descriptor 0..2147483647, got ${dirFd}`);
  const target = connectPath(config.socket, dirFd);
  if (Buffer.byteLength(target) > SUN_PATH_MAX) {
    throw new RangeError(`tuntap-device socket path "${target}" is ${Buffer.byteLength(target)} bytes; a unix socket path holds at most ${SUN_PATH_MAX}`);
  }
  const netns = extra.netns ?? config.netns ?? '';
  if (typeof netns !== 'string') throw new TypeError('netns must be a path string');
  const maxFrame = bounded(config.maxFrame, 'maxFrame', 'tuntap-device-max-frame');
  const queueBytes = bounded(config.queueBytes, 'queueBytes', 'tuntap-device-queue-bytes', 4 + maxFrame);
  const reconnectMinMs = bounded(config.reconnectMinMs, 'reconnectMinMs', 'tuntap-device-reconnect-min');
  const reconnectMaxMs = bounded(config.reconnectMaxMs, 'reconnectMaxMs', 'tuntap-device-reconnect-max', reconnectMinMs);
  const offload = config.offload;
  if (typeof offload !== 'boolean') throw new TypeError('offload must be a boolean');
  const handoff = config.handoff;
  if (typeof handoff !== 'boolean') throw new TypeError('handoff must be a boolean');
  const sndbuf = bounded(config.sndbuf, 'sndbuf', 'tuntap-device-sndbuf');
  const busyPollUs = bounded(config.busyPollUs, 'busyPollUs', 'tuntap-device-busy-poll');
  return { name, netns, socketPath: config.socket, dirFd, maxFrame, queueBytes, reconnectMinMs, reconnectMaxMs, offload, handoff, busyPollUs, sndbuf };
}

export interface Device {
  on(event: 'connected', listener: () => void): this;
  on(event: 'disconnected', listener: (reason: string) => void): this;
  on(event: 'connect_failed', listener: (info: ConnectFailed) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  once(event: 'connected', listener: () => void): this;
  once(event: 'disconnected', listener: (reason: string) => void): this;
  once(event: 'connect_failed', listener: (info: ConnectFailed) => void): this;
  once(event: 'error', listener: (err: Error) => void): this;
}

export class Device extends EventEmitter {
  readonly options: DeviceOptions;
  private native: NativeDevice | undefined;
  private started = false;

  constructor(config: DeviceConfig, extra: DeviceExtra = {}) {
    super();
    this.options = deviceOptions(config, extra);
  }

  get running(): boolean {
    return this.started;
  }

  /** Creates the tun device (throws if it cannot, e.g. "TUNSETIFF uwsgi0: Device or resource busy")
   *  and starts connecting; connection failures are events, retried with backoff. */
  start(): void {
    if (this.started) throw new Error(`device ${this.options.name} already started`);
    const native = new (addon().Device)(this.options);
    native.start((events) => this.dispatch(events));
    this.native = native;
    this.started = true;
  }

  /** Stops the loop and removes the tun device. Idempotent. */
  stop(): void {
    this.started = false;
    this.native?.stop();
  }

  /** Counters of the current (or last) run. */
  stats(): DeviceStats {
    if (!this.native) throw new Error(`device ${this.options.name} was never started`);
    return this.native.stats();
  }

  private dispatch(events: DeviceEvent[]): void {
    for (const e of events) {
      switch (e.type) {
        case 'connected': this.emit('connected'); break;
        case 'disconnected': this.emit('disconnected', e.reason); break;
        case 'connect_failed': this.emit('connect_failed', { attempt: e.attempt, error: e.error, retryMs: e.retryMs }); break;
        case 'error': this.emit('error', new Error(`device ${this.options.name}: ${e.message}`)); break;
      }
    }
  }
}
