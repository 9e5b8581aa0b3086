/**
 * The emulator's stand-in for one load balancer listener: a TCP proxy that accepts on its listen
 * addresses (TCP or a unix socket) and forwards each connection to one registered target, with the
 * target group's active health checks deciding which targets may take new connections.
 *
 * Choices, and where they differ from AWS:
 * - Targets are picked round robin among the healthy ones. A real NLB hashes each flow; for a test
 *   bed an even, predictable spread is more useful.
 * - When no registered target is healthy (all unhealthy, or all still in their first checks), the
 *   proxy fails open to every registered target, as an NLB does when all its targets fail their
 *   checks. With no registered target at all, a client connection is closed at once.
 * - setTargets applies to the next connection. Connections already open to a deregistered target,
 *   or to one that turns unhealthy, are left to finish (as AWS's deregistration delay does); only
 *   close() cuts them.
 * - A new target is checked at once, then every intervalMs, so it can take traffic after
 *   healthyThreshold passes. No passive checks: a refused forward resets the client instead.
 * - HTTPS checks do not verify the certificate (AWS's do not either; our targets serve certificates
 *   of the cluster's own CA).
 */
import { rmSync } from 'node:fs';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { InputError } from '../core/errors.js';

export interface Target {
  /** Instance id or IP address, as registered in the target group. */
  id: string;
  host: string;
  port: number;
}

export interface HealthCheck {
  protocol: 'TCP' | 'HTTP' | 'HTTPS';
  /** Default: the target's own (traffic) port. */
  port?: number;
  /** HTTP and HTTPS only; default '/'. */
  path?: string;
  intervalMs: number;
  timeoutMs: number;
  healthyThreshold: number;
  unhealthyThreshold: number;
  /** HTTP status codes that pass, such as '200-399' or '200,202'; default '200-399'. */
  matcher?: string;
}

export type ListenAddress = { host: string; port: number } | { path: string };

export interface ListenerProxyOptions {
  /** Names the proxy in log lines, e.g. the load balancer's name and listener port. */
  name: string;
  /** Port 0 picks a free port; listening() tells which. */
  listen: ListenAddress[];
  healthCheck: HealthCheck;
  log?(line: string): void;
}

export type TargetState = 'initial' | 'healthy' | 'unhealthy';

export interface TargetHealth {
  target: Target;
  state: TargetState;
  /** AWS's reason code (DescribeTargetHealth), e.g. 'Target.Timeout'; absent when healthy. */
  reason?: string;
  /** What the last failed check saw, e.g. 'connect ECONNREFUSED 127.0.0.1:6443'. */
  description?: string;
}

interface Registered extends TargetHealth {
  passes: number;
  failures: number;
  timer?: NodeJS.Timeout;
  /** Aborted on deregistration and close: stops the check in flight and the next one. */
  stop: AbortController;
}

interface ProbeResult {
  ok: boolean;
  reason?: string;
  description?: string;
}

/** A connection the target did not take is reset, not ended, so the client sees a failure. */
function abort(socket: Socket, tcp: boolean): void {
  if (socket.destroyed) return;
  if (tcp && !socket.connecting) socket.resetAndDestroy();
  else socket.destroy();
}

const targetKey = (t: Target): string => `${t.id}|${t.host}|${t.port}`;

export class ListenerProxy {
  private readonly servers: Array<{ server: Server; address: ListenAddress }> = [];
  private readonly sockets = new Set<Socket>();
  private readonly targets = new Map<string, Registered>();
  private readonly statusOk: (code: number) => boolean;
  private next = 0;
  private failingOpen = false;
  private closed = false;

  private constructor(private readonly opts: ListenerProxyOptions) {
    this.statusOk = parseMatcher(opts.healthCheck.matcher ?? '200-399');
  }

  /** Listens on every address (all or none: a failed bind closes the others). */
  static async start(opts: ListenerProxyOptions): Promise<ListenerProxy> {
    const proxy = new ListenerProxy(opts);
    try {
      for (const address of opts.listen) await proxy.listenOn(address);
    } catch (err) {
      await proxy.close();
      throw err;
    }
    return proxy;
  }

  /** The bound addresses, with the ports picked for port 0. */
  listening(): ListenAddress[] {
    return this.servers.map(({ server, address }) =>
      'path' in address ? address : { host: address.host, port: (server.address() as AddressInfo).port },
    );
  }

  /** Registers and deregisters so that exactly these targets remain; kept ones keep their health. */
  setTargets(targets: Target[]): void {
    if (this.closed) return;
    const previous = new Map(this.targets);
    this.targets.clear(); // refilled in the new order, which round robin follows
    for (const target of targets) {
      const key = targetKey(target);
      const existing = previous.get(key);
      previous.delete(key);
      if (existing) {
        this.targets.set(key, existing);
        continue;
      }
      if (this.targets.has(key)) continue;
      this.log('Registering target', target);
      const r: Registered = { target, state: 'initial', reason: 'Elb.InitialHealthChecking', passes: 0, failures: 0, stop: new AbortController() };
      this.targets.set(key, r);
      void this.runCheck(r);
    }
    for (const r of previous.values()) {
      this.log('Deregistering target; its open connections are left to finish', r.target);
      this.stopChecks(r);
    }
  }

  targetHealth(): TargetHealth[] {
    return [...this.targets.values()].map(({ target, state, reason, description }) => ({
      target,
      state,
      ...(reason === undefined ? {} : { reason }),
      ...(description === undefined ? {} : { description }),
    }));
  }

  /** Stops listening and checking, cuts every open connection, removes unix socket files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.targets.values()) this.stopChecks(r);
    this.targets.clear();
    const closing = this.servers.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(closing);
    for (const { address } of this.servers) if ('path' in address) rmSync(address.path, { force: true });
  }

  private async listenOn(address: ListenAddress): Promise<void> {
    const tcp = !('path' in address);
    const server = createServer({ allowHalfOpen: true }, (client) => this.forward(client, tcp));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if ('path' in address) server.listen(address.path, resolve);
      else server.listen(address.port, address.host, resolve);
    });
    server.on('error', (err) => this.log(`Listener failed: ${err.message}`));
    this.servers.push({ server, address });
  }

  private forward(client: Socket, clientTcp: boolean): void {
    const target = this.pick();
    if (!target) {
      this.log('Closing connection: no registered targets');
      abort(client, clientTcp);
      return;
    }
    const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    const fail = (): void => {
      abort(client, clientTcp);
      abort(upstream, true);
    };
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', fail);
    }
    // pipe ends the other side when one side ends (half-close); allowHalfOpen keeps the reverse open
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Round robin over the healthy targets; over all registered targets when none is healthy. */
  private pick(): Target | undefined {
    const all = [...this.targets.values()];
    if (all.length === 0) return undefined;
    const healthy = all.filter((r) => r.state === 'healthy');
    const failOpen = healthy.length === 0;
    if (failOpen !== this.failingOpen) {
      this.failingOpen = failOpen;
      this.log(failOpen ? 'Failing open: no healthy target, routing to all registered targets' : 'Routing to healthy targets again');
    }
    const pool = failOpen ? all : healthy;
    return pool[this.next++ % pool.length]!.target;
  }

  private async runCheck(r: Registered): Promise<void> {
    const started = Date.now();
    const result = await probe(r.target, this.opts.healthCheck, this.statusOk, r.stop.signal);
    if (r.stop.signal.aborted) return;
    this.record(r, result);
    const delay = Math.max(0, this.opts.healthCheck.intervalMs - (Date.now() - started));
    r.timer = setTimeout(() => void this.runCheck(r), delay);
    r.timer.unref();
  }

  private record(r: Registered, result: ProbeResult): void {
    const hc = this.opts.healthCheck;
    if (result.ok) {
      r.failures = 0;
      r.passes++;
      if (r.state !== 'healthy' && r.passes >= hc.healthyThreshold) {
        r.state = 'healthy';
        delete r.reason;
        delete r.description;
        this.log(`Target healthy after ${r.passes} passed checks`, r.target);
      }
      return;
    }
    r.passes = 0;
    r.failures++;
    if (r.state !== 'unhealthy' && r.failures >= hc.unhealthyThreshold) {
      r.state = 'unhealthy';
      this.log(`Target unhealthy after ${r.failures} failed checks: ${result.description}`, r.target);
    }
    // a healthy target keeps a clean record until it crosses the threshold
    if (r.state === 'healthy') return;
    r.description = result.description;
    if (r.state === 'unhealthy') r.reason = result.reason;
  }

  private stopChecks(r: Registered): void {
    r.stop.abort();
    clearTimeout(r.timer);
  }

  private log(message: string, target?: Target): void {
    const about = target ? `, target ${target.id} ${target.host}:${target.port}` : '';
    this.opts.log?.(`${message} (proxy ${this.opts.name}${about})`);
  }
}

/** One health check of one target; never rejects. */
function probe(target: Target, hc: HealthCheck, statusOk: (code: number) => boolean, stop: AbortSignal): Promise<ProbeResult> {
  const port = hc.port ?? target.port;
  return new Promise((resolve) => {
    let done = false;
    let cleanup = (): void => undefined;
    const finish = (result: ProbeResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stop.removeEventListener('abort', onStop);
      cleanup();
      resolve(result);
    };
    const onStop = (): void => finish({ ok: false, description: 'check stopped' });
    const timer = setTimeout(
      () => finish({ ok: false, reason: 'Target.Timeout', description: `no answer within ${hc.timeoutMs} ms` }),
      hc.timeoutMs,
    );
    timer.unref();
    stop.addEventListener('abort', onStop);
    const failed = (err: Error): void => finish({ ok: false, reason: 'Target.FailedHealthChecks', description: err.message });

    if (hc.protocol === 'TCP') {
      const socket = connect({ host: target.host, port });
      socket.unref();
      cleanup = () => socket.destroy();
      socket.once('connect', () => finish({ ok: true }));
      socket.on('error', failed);
      return;
    }
    const request = hc.protocol === 'HTTPS' ? httpsRequest : httpRequest;
    const req: ClientRequest = request({
      host: target.host,
      port,
      path: hc.path ?? '/',
      method: 'GET',
      agent: false,
      rejectUnauthorized: false,
      headers: { 'user-agent': 'capflow-emulator-health-check', connection: 'close' },
    });
    cleanup = () => req.destroy();
    req.on('socket', (socket) => socket.unref());
    req.on('error', failed);
    req.once('response', (res) => {
      res.on('error', () => undefined); // cut short by cleanup once the status is known
      res.resume();
      const code = res.statusCode ?? 0;
      if (statusOk(code)) finish({ ok: true });
      else finish({ ok: false, reason: 'Target.ResponseCodeMismatch', description: `HTTP ${code} from ${hc.path ?? '/'}` });
    });
    req.end();
  });
}

/** '200-399', '200,202' or a mix of both, as ELBv2's Matcher.HttpCode. */
export function parseMatcher(spec: string): (code: number) => boolean {
  const ranges = spec.split(',').map((part) => {
    const m = /^\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?$/.exec(part);
    if (!m) throw new InputError('LB_HEALTH_CHECK_INVALID', `health check matcher "${spec}" is not like "200-399" or "200,202"`);
    const low = Number(m[1]);
    return [low, m[2] === undefined ? low : Number(m[2])] as const;
  });
  return (code) => ranges.some(([low, high]) => code >= low && code <= high);
}

// ------------------------------------------------------------------------------------------------
// AWS health check settings as HealthCheck.
//
// speedUp divides AWS's intervals and timeouts so the test bed does not wait tens of seconds per
// check: the interval becomes at least 200 ms, the timeout at least 100 ms and never above the
// interval. Thresholds are kept as they are.

export interface SpeedUp {
  /** Divide AWS's interval and timeout by this (default 1: AWS's own timings). */
  speedUp?: number;
}

export interface Elbv2HealthCheckSettings {
  HealthCheckProtocol?: string;
  /** A port number, or 'traffic-port' (each target's own port, the default). */
  HealthCheckPort?: string;
  HealthCheckPath?: string;
  HealthCheckIntervalSeconds?: number;
  HealthCheckTimeoutSeconds?: number;
  HealthyThresholdCount?: number;
  UnhealthyThresholdCount?: number;
  Matcher?: { HttpCode?: string };
}

export interface ClassicHealthCheckSettings {
  /** 'TCP:6443', 'SSL:443', 'HTTP:80/healthz' or 'HTTPS:6443/readyz'. */
  Target?: string;
  Interval?: number;
  Timeout?: number;
  HealthyThreshold?: number;
  UnhealthyThreshold?: number;
}

/** An NLB target group's health check; unset fields take the NLB defaults. */
export function healthCheckFromElbv2(tg: Elbv2HealthCheckSettings, opts: SpeedUp = {}): HealthCheck {
  const protocol = tg.HealthCheckProtocol === 'HTTP' || tg.HealthCheckProtocol === 'HTTPS' ? tg.HealthCheckProtocol : 'TCP';
  const port = tg.HealthCheckPort && tg.HealthCheckPort !== 'traffic-port' ? Number(tg.HealthCheckPort) : undefined;
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    throw new InputError('LB_HEALTH_CHECK_INVALID', `health check port "${tg.HealthCheckPort}" is neither a port nor traffic-port`);
  }
  return {
    protocol,
    ...(port === undefined ? {} : { port }),
    ...(protocol === 'TCP' ? {} : { path: tg.HealthCheckPath ?? '/', matcher: tg.Matcher?.HttpCode ?? '200-399' }),
    ...timings(tg.HealthCheckIntervalSeconds ?? 30, tg.HealthCheckTimeoutSeconds ?? (protocol === 'HTTP' ? 6 : 10), opts),
    healthyThreshold: tg.HealthyThresholdCount ?? 5,
    unhealthyThreshold: tg.UnhealthyThresholdCount ?? 2,
  };
}

/**
 * A classic ELB's health check. Its Target names the port itself; HTTP(S) checks pass only on 200,
 * as classic ELBs require. SSL checks become TCP checks (the handshake is not tried). Without a
 * Target, the check is TCP on each target's own port.
 */
export function healthCheckFromClassicElb(hc: ClassicHealthCheckSettings, opts: SpeedUp = {}): HealthCheck {
  const base = {
    ...timings(hc.Interval ?? 30, hc.Timeout ?? 5, opts),
    healthyThreshold: hc.HealthyThreshold ?? 10,
    unhealthyThreshold: hc.UnhealthyThreshold ?? 2,
  };
  if (hc.Target === undefined) return { protocol: 'TCP', ...base };
  const m = /^(TCP|SSL|HTTP|HTTPS):(\d{1,5})(\/.*)?$/i.exec(hc.Target);
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535) {
    throw new InputError('LB_HEALTH_CHECK_INVALID', `classic health check target "${hc.Target}" is not like "TCP:6443" or "HTTPS:6443/readyz"`);
  }
  const protocol = m[1]!.toUpperCase();
  if (protocol === 'TCP' || protocol === 'SSL') return { protocol: 'TCP', port, ...base };
  return { protocol: protocol as 'HTTP' | 'HTTPS', port, path: m[3] ?? '/', matcher: '200', ...base };
}

function timings(intervalSeconds: number, timeoutSeconds: number, { speedUp = 1 }: SpeedUp): { intervalMs: number; timeoutMs: number } {
  if (!(speedUp > 0)) throw new InputError('LB_HEALTH_CHECK_INVALID', `speedUp must be a positive number, got ${speedUp}`);
  const intervalMs = Math.max(200, Math.round((intervalSeconds * 1000) / speedUp));
  const timeoutMs = Math.min(intervalMs, Math.max(100, Math.round((timeoutSeconds * 1000) / speedUp)));
  return { intervalMs, timeoutMs };
}
