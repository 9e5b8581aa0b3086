/**
 * The VPC router process: runs inside a VPC's namespace (started by vpc-router-client.ts through
 * `ip netns exec`) and holds that VPC's load balancer listeners (load-balancer-proxy.ts). Each
 * listener listens twice: on the load balancer's address in the VPC, for the machines, and on a
 * unix socket in the supervisor's directory, for the host (a unix socket path crosses network
 * namespaces; nothing needs routing between the host and the VPC).
 *
 * Messages from the supervisor: { type: 'listeners', seq, listeners: RouterListener[] } (the whole
 * set; the router converges to it) and { type: 'publish', seq, address, ports } (host ports the
 * machines may reach at the router's address, through unix sockets the host relays to loopback). Replies: { type: 'applied', seq, errors } and, every second,
 * { type: 'health', health: { [key]: [{ id, state, reason }] } }.
 */
import { ListenerProxy, type HealthCheck, type Target } from './load-balancer-proxy.js';
import { startRelay, type Relay } from './relay.js';

export interface RouterListener {
  /** `<load balancer name>:<port>` */
  key: string;
  address: string;
  port: number;
  targets: Target[];
  healthCheck: HealthCheck;
}

export interface RouterMessage {
  type: 'listeners';
  seq: number;
  listeners: Array<RouterListener & { socket: string }>;
}

interface Running {
  proxy: ListenerProxy;
  shape: string;
}

export function runVpcRouter(): void {
  const running = new Map<string, Running>();
  const send = (message: unknown): void => {
    if (process.connected) process.send?.(message);
  };
  const log = (line: string): void => void process.stdout.write(`${new Date().toISOString()} ${line}\n`);
  let queue: Promise<void> = Promise.resolve();

  const apply = async (message: RouterMessage): Promise<void> => {
    const errors: Record<string, string> = {};
    const wanted = new Map(message.listeners.map((l) => [l.key, l]));
    for (const [key, r] of running) {
      const want = wanted.get(key);
      if (want && r.shape === shapeOf(want)) continue;
      running.delete(key);
      await r.proxy.close();
    }
    for (const l of message.listeners) {
      try {
        let r = running.get(l.key);
        if (!r) {
          const proxy = await ListenerProxy.start({ name: l.key, listen: [{ host: l.address, port: l.port }, { path: l.socket }], healthCheck: l.healthCheck, log });
          r = { proxy, shape: shapeOf(l) };
          running.set(l.key, r);
        }
        r.proxy.setTargets(l.targets);
      } catch (err) {
        errors[l.key] = (err as Error).message;
      }
    }
    send({ type: 'applied', seq: message.seq, errors });
  };

  const published = new Map<number, Relay>();
  const publish = async (message: PublishMessage): Promise<void> => {
    const errors: Record<string, string> = {};
    for (const p of message.ports) {
      if (published.has(p.port)) continue;
      try {
        published.set(p.port, await startRelay({ host: message.address, port: p.port }, { path: p.socket }));
      } catch (err) {
        errors[String(p.port)] = (err as Error).message;
      }
    }
    send({ type: 'applied', seq: message.seq, errors });
  };

  process.on('message', (message: RouterMessage | PublishMessage) => {
    if (message?.type === 'listeners') queue = queue.then(() => apply(message));
    else if (message?.type === 'publish') queue = queue.then(() => publish(message));
  });
  const timer = setInterval(() => {
    const health: Record<string, Array<{ id: string; state: string; reason?: string }>> = {};
    for (const [key, r] of running) health[key] = r.proxy.targetHealth().map((h) => ({ id: h.target.id, state: h.state, ...(h.reason ? { reason: h.reason } : {}) }));
    send({ type: 'health', health });
  }, 1000);
  const stop = (): void => {
    clearInterval(timer);
    for (const relay of published.values()) void relay.close();
    void Promise.all([...running.values()].map((r) => r.proxy.close())).finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
}

/** A host port published in the VPC: machines connect to routerAddress:port, the host's relay takes it to 127.0.0.1:port. */
export interface PublishMessage {
  type: 'publish';
  seq: number;
  address: string;
  ports: Array<{ port: number; socket: string }>;
}

/** What needs a new listener (the rest, the targets, changes in place). */
function shapeOf(l: RouterListener & { socket: string }): string {
  return JSON.stringify([l.address, l.port, l.socket, l.healthCheck]);
}
