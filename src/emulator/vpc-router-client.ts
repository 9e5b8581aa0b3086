/**
 * The supervisor's side of a VPC router (vpc-router.ts): starts it inside the VPC's namespace, sends
 * it the listeners, and gives each listener a port on the host's loopback that relays to the
 * listener's unix socket: the way tests and the demo reach a load balancer. The other way, host
 * ports published in the VPC reach the host's loopback (publish()).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { startRelay, type Relay } from './relay.js';
import { join } from 'node:path';
import type { VpcNetwork } from './network.js';
import type { RouterListener, RouterMessage } from './vpc-router.js';

export type { RouterListener } from './vpc-router.js';

export class VpcRouter {
  private seq = 0;
  private readonly relays = new Map<string, Relay>();
  private readonly hostRelays = new Map<number, Relay>();
  private readonly healthByKey = new Map<string, Map<string, string>>();
  private readonly waiting = new Map<number, (errors: Record<string, string>) => void>();
  private count = 0;

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    private readonly log: (line: string) => void,
  ) {
    child.on('message', (m: { type: string; seq?: number; errors?: Record<string, string>; health?: Record<string, Array<{ id: string; state: string }>> }) => {
      if (m.type === 'applied' && m.seq !== undefined) {
        this.waiting.get(m.seq)?.(m.errors ?? {});
        this.waiting.delete(m.seq);
      } else if (m.type === 'health' && m.health) {
        for (const [key, list] of Object.entries(m.health)) this.healthByKey.set(key, new Map(list.map((h) => [h.id, h.state])));
      }
    });
    child.once('exit', () => {
      for (const resolve of this.waiting.values()) resolve({ router: 'the VPC router process exited' });
      this.waiting.clear();
    });
  }

  static async start(net: VpcNetwork, entry: string, dir: string, log: (line: string) => void): Promise<VpcRouter> {
    mkdirSync(dir, { recursive: true });
    const logFd = openSync(join(dir, 'router.log'), 'a');
    try {
      const child = spawn('ip', ['netns', 'exec', net.netns, process.execPath, entry], { stdio: ['ignore', logFd, logFd, 'ipc'], detached: true });
      child.once('error', () => undefined);
      child.unref();
      child.channel?.unref();
      return new VpcRouter(child, dir, log);
    } finally {
      closeSync(logFd);
    }
  }

  listenerCount(): number {
    return this.count;
  }

  /** Target id → health state of one listener, as last reported by the router. */
  health(key: string): Map<string, string> {
    return this.healthByKey.get(key) ?? new Map<string, string>();
  }

  /** Converges the router to these listeners; returns each listener's loopback port on the host. */
  async setListeners(listeners: RouterListener[]): Promise<Map<string, number>> {
    const seq = ++this.seq;
    const withSockets = listeners.map((l) => ({ ...l, socket: this.socketPath(l.key) }));
    const applied = new Promise<Record<string, string>>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(seq);
        resolve({ router: 'the VPC router did not answer within 10 s' });
      }, 10_000);
      this.waiting.set(seq, (errors) => {
        clearTimeout(timer);
        resolve(errors);
      });
    });
    const message: RouterMessage = { type: 'listeners', seq, listeners: withSockets };
    if (!this.child.connected) throw new Error('the VPC router process is not running');
    this.child.send(message);
    const errors = await applied;
    for (const [key, error] of Object.entries(errors)) this.log(`supervisor: listener ${key}: ${error}`);
    this.count = listeners.length;
    const ports = new Map<string, number>();
    const keep = new Set(listeners.map((l) => l.key));
    for (const [key, relay] of this.relays) {
      if (keep.has(key)) continue;
      this.relays.delete(key);
      await relay.close();
    }
    for (const l of withSockets) {
      if (errors[l.key]) continue;
      let relay = this.relays.get(l.key);
      if (!relay) {
        relay = await startRelay({ host: '127.0.0.1', port: 0 }, { path: l.socket });
        this.relays.set(l.key, relay);
      }
      ports.set(l.key, relay.port);
    }
    return ports;
  }

  /**
   * Publishes host loopback ports in the VPC at `address` (the router's): a machine's connection to
   * address:port reaches 127.0.0.1:port on the host. Nothing is routed; each port is one relay.
   */
  async publish(address: string, ports: number[]): Promise<void> {
    const items: Array<{ port: number; socket: string }> = [];
    for (const port of ports) {
      const socket = join(this.dir, `host-${port}.sock`);
      if (!this.hostRelays.has(port)) this.hostRelays.set(port, await startRelay({ path: socket }, { host: '127.0.0.1', port }));
      items.push({ port, socket });
    }
    const seq = ++this.seq;
    const applied = new Promise<Record<string, string>>((resolve) => this.waiting.set(seq, resolve));
    this.child.send({ type: 'publish', seq, address, ports: items });
    const errors = await Promise.race([applied, new Promise<Record<string, string>>((resolve) => setTimeout(() => resolve({ router: 'no answer within 10 s' }), 10_000).unref())]);
    for (const [port, error] of Object.entries(errors)) this.log(`supervisor: publishing host port ${port} in the VPC: ${error}`);
  }

  async stop(): Promise<void> {
    for (const relay of this.hostRelays.values()) await relay.close();
    this.hostRelays.clear();
    for (const relay of this.relays.values()) await relay.close();
    this.relays.clear();
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))]);
    if (this.child.exitCode === null && this.child.pid) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  private socketPath(key: string): string {
    return join(this.dir, `${key.replace(/[^A-Za-z0-9.-]/g, '_')}.sock`);
  }
}
