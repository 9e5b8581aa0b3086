/**
 * The kubelet stand-in's prober: a static pod's startup, liveness and readiness probes, run as the
 * kubelet's prober runs them against a host-network pod. The startup probe comes first; liveness
 * and readiness wait for it. Startup or liveness failures past failureThreshold kill the process,
 * which then restarts like any exit.
 */
import { spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { V1Container, V1Probe } from '@kubernetes/client-node';
import type { KubeletLog } from './kubelet-log.js';

export type ProbeKind = 'startup' | 'liveness' | 'readiness';

export interface ProbeResult {
  ok: boolean;
  detail: string;
}

/** What the prober needs of the pod whose process it probes. */
export interface ProbedProcess {
  /** namespace/name, for the log. */
  readonly podKey: string;
  readonly log: KubeletLog;
  /** The process probed is still the pod's current one. */
  isCurrent(): boolean;
  /** started or ready changed. */
  changed(): void;
  /** A startup or liveness probe failed: the process is to be killed, with the probe's grace period if it has one. */
  kill(graceSeconds: number | undefined): void;
}

/** The probes of one run of a container's process, and the started and ready they decide. */
export class ContainerProber {
  /** The startup probe passed (or there is none). */
  started: boolean;
  ready: boolean;
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly container: V1Container,
    private readonly target: ProbedProcess,
  ) {
    this.started = container.startupProbe === undefined;
    this.ready = this.started && container.readinessProbe === undefined;
  }

  start(): void {
    const c = this.container;
    const specs: Array<[ProbeKind, V1Probe | undefined]> = [
      ['startup', c.startupProbe],
      ['liveness', c.livenessProbe],
      ['readiness', c.readinessProbe],
    ];
    for (const [kind, spec] of specs) {
      if (!spec) continue;
      const run = { successes: 0, failures: 0 };
      const periodMs = (spec.periodSeconds ?? 10) * 1000;
      const tick = async (): Promise<void> => {
        if (!this.target.isCurrent()) return;
        // liveness and readiness wait for the startup probe; the startup probe ends once it passed
        const due = kind === 'startup' ? !this.started : this.started;
        if (due) {
          const result = await runProbe(spec, c);
          if (!this.target.isCurrent()) return;
          this.applyResult(kind, spec, run, result);
        }
        if (this.target.isCurrent()) this.timers.push(setTimeout(() => void tick(), periodMs));
      };
      this.timers.push(setTimeout(() => void tick(), (spec.initialDelaySeconds ?? 0) * 1000));
    }
  }

  /** Cancels the probes due; one running now still applies its result while the process is current. */
  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }

  private applyResult(kind: ProbeKind, spec: V1Probe, run: { successes: number; failures: number }, r: ProbeResult): void {
    if (r.ok) {
      run.failures = 0;
      run.successes += 1;
    } else {
      run.successes = 0;
      run.failures += 1;
    }
    const failureThreshold = spec.failureThreshold ?? 3;
    if (kind === 'startup') {
      if (r.ok) {
        this.started = true;
        this.ready = this.container.readinessProbe === undefined;
        this.target.changed();
      } else if (run.failures >= failureThreshold) {
        this.fail(kind, spec, r);
      }
    } else if (kind === 'liveness') {
      if (!r.ok && run.failures >= failureThreshold) this.fail(kind, spec, r);
    } else if (r.ok && !this.ready && run.successes >= (spec.successThreshold ?? 1)) {
      this.ready = true;
      this.target.changed();
    } else if (!r.ok && this.ready && run.failures >= failureThreshold) {
      this.ready = false;
      this.target.log('Readiness probe failed', { pod: this.target.podKey, failures: run.failures, error: r.detail });
      this.target.changed();
    }
  }

  /** As the kubelet does: the container is killed and restarted (restartPolicy Always). */
  private fail(kind: ProbeKind, spec: V1Probe, r: ProbeResult): void {
    this.target.log(`Killing static pod process: ${kind} probe failed`, { pod: this.target.podKey, error: r.detail });
    this.stop();
    this.target.kill(spec.terminationGracePeriodSeconds);
  }
}

/** One probe, as the kubelet's prober runs it against a host-network pod. */
export async function runProbe(probe: V1Probe, container: V1Container): Promise<ProbeResult> {
  const timeoutMs = Math.max(1, probe.timeoutSeconds ?? 1) * 1000;
  if (probe.httpGet) {
    const port = resolvePort(probe.httpGet.port, container);
    if (port === undefined) return { ok: false, detail: `port ${String(probe.httpGet.port)} not found in the container's ports` };
    const https = (probe.httpGet.scheme ?? 'HTTP').toUpperCase() === 'HTTPS';
    const host = probe.httpGet.host || '127.0.0.1';
    const headers: Record<string, string> = { 'user-agent': 'kube-probe/1.34', accept: '*/*' };
    for (const h of probe.httpGet.httpHeaders ?? []) headers[h.name.toLowerCase()] = h.value;
    return httpProbe({ https, host, port, path: probe.httpGet.path || '/', headers, timeoutMs });
  }
  if (probe.tcpSocket || probe.grpc) {
    // a gRPC health check is approximated by its port accepting connections
    const port = probe.tcpSocket ? resolvePort(probe.tcpSocket.port, container) : probe.grpc!.port;
    if (port === undefined) return { ok: false, detail: 'port not found in the container\'s ports' };
    return tcpProbe(probe.tcpSocket?.host || '127.0.0.1', port, timeoutMs);
  }
  if (probe.exec?.command?.length) return execProbe(probe.exec.command, timeoutMs);
  return { ok: true, detail: 'no handler' };
}

function resolvePort(port: number | string | undefined, container: V1Container): number | undefined {
  if (typeof port === 'number') return port;
  if (port === undefined) return undefined;
  if (/^\d+$/.test(port)) return Number(port);
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

function httpProbe(o: { https: boolean; host: string; port: number; path: string; headers: Record<string, string>; timeoutMs: number }): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const request = o.https ? httpsRequest : httpRequest;
    const req = request({
      host: o.host,
      port: o.port,
      path: o.path,
      method: 'GET',
      headers: o.headers,
      timeout: o.timeoutMs,
      agent: false,
      rejectUnauthorized: false, // the kubelet does not verify probe certificates
    });
    req.on('response', (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve({ ok: status >= 200 && status < 400, detail: `HTTP probe failed with statuscode: ${status}` });
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${o.timeoutMs} ms`)));
    req.on('error', (err) => resolve({ ok: false, detail: err.message }));
    req.end();
  });
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    socket.once('connect', () => {
      socket.destroy();
      resolve({ ok: true, detail: 'connected' });
    });
    socket.once('timeout', () => socket.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    socket.once('error', (err) => resolve({ ok: false, detail: err.message }));
  });
}

function execProbe(command: string[], timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, command.slice(1), { cwd: '/', stdio: 'ignore', timeout: timeoutMs, killSignal: 'SIGKILL' });
    child.once('error', (err) => resolve({ ok: false, detail: err.message }));
    child.once('exit', (code, signal) => resolve({ ok: code === 0, detail: signal ? `killed by ${signal}` : `exit code ${code}` }));
  });
}
