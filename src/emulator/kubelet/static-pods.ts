/**
 * The kubelet stand-in's static pods: each manifest in the static pod directory (kubeadm writes
 * etcd, kube-apiserver, kube-controller-manager and kube-scheduler there) runs as one local process,
 * the first container's command and args, in a process group of its own, its output appended to
 * `<logDir>/<namespace>_<pod>/<container>.log`.
 *
 * Strategy: the directory is polled (kubeadm replaces manifests by rename, which fs.watch loses). A
 * manifest is known by its file and the hash of its parsed content: a new hash is a new pod (the old
 * one is stopped first; restart count from zero), a removed file stops its pod (SIGTERM, SIGKILL after
 * terminationGracePeriodSeconds). An exit, whoever caused it, restarts the process with the kubelet's
 * crash backoff: at once the first time, then the base (10 s) doubling up to 5 min, forgotten after
 * twice the maximum without an exit. Probes follow the kubelet's prober (probes.ts).
 *
 * A container of kube-vip's image runs the kube-vip stand-in (kube-vip.ts: the control plane VIP added
 * to the machine's interface while the pod runs) instead of its command, which would need the image.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, closeSync, constants, mkdirSync, openSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import type { KubeletLog } from './kubelet-log.js';
import { containerStandIn } from './kube-vip.js';
import { ContainerProber } from './probes.js';

export interface StaticPodRunnerOptions {
  /** The static pod directory (`staticPodPath` of the kubelet configuration). */
  manifestDir: string;
  /** Container logs go to `<logDir>/<namespace>_<pod>/<container>.log`. */
  logDir: string;
  /** Searched before PATH for a container's command[0]. */
  binDirs?: string[];
  /** HOSTNAME in the processes' environment (they are host-network pods). Default: os.hostname(). */
  hostname?: string;
  /** Default 1000. */
  pollIntervalMs?: number;
  /** The crash backoff's first delay. Default 10 000 (the kubelet's). */
  backoffBaseMs?: number;
  /** Default 300 000 (the kubelet's). */
  backoffMaxMs?: number;
  log?: KubeletLog;
}

export interface StaticPodExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: Date;
}

export interface StaticPodStatus {
  name: string;
  namespace: string;
  manifestPath: string;
  /** Hash of the parsed manifest; the mirror pod's `kubernetes.io/config.hash`. */
  manifestHash: string;
  /** The parsed manifest, as the mirror pod's spec. */
  manifest: V1Pod;
  containerName: string;
  pid: number | undefined;
  /** Starts after the first one (exits, liveness kills, external kills). */
  restartCount: number;
  startedAt: Date | undefined;
  /** The startup probe passed (or there is none) and the process runs. */
  started: boolean;
  ready: boolean;
  /** Why the process does not run now: CrashLoopBackOff, RunContainerError. */
  waiting: { reason: string; message: string } | undefined;
  lastExit: StaticPodExit | undefined;
}

/** SIGTERM to a process group now, SIGKILL after the grace period (the returned timer). */
export function terminateGroup(pid: number, graceSeconds: number): NodeJS.Timeout {
  signalGroup(pid, 'SIGTERM');
  return setTimeout(() => signalGroup(pid, 'SIGKILL'), Math.max(0, graceSeconds) * 1000);
}

/**
 * The kubelet's crash backoff: a restart at once the first time, then after the current delay, which
 * starts at the base and doubles up to the maximum; forgotten after twice the maximum without a crash.
 */
export class CrashBackoff {
  private state: { delayMs: number; updatedAt: number } | undefined;

  constructor(
    private readonly baseMs: number,
    private readonly maxMs: number,
  ) {}

  /** How long to wait before this restart: 0 the first time (or after a long quiet), else the current delay. */
  delay(now = Date.now()): number {
    if (!this.state || now - this.state.updatedAt > 2 * this.maxMs) {
      this.state = { delayMs: this.baseMs, updatedAt: now };
      return 0;
    }
    return this.state.delayMs;
  }

  /** After a wait of delay(): the next one doubles. */
  waited(now = Date.now()): void {
    if (this.state) this.state = { delayMs: Math.min(this.state.delayMs * 2, this.maxMs), updatedAt: now };
  }
}

const DEFAULT_GRACE_SECONDS = 30;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface PodContext {
  binDirs: string[];
  logDir: string;
  hostname: string;
  backoffBaseMs: number;
  backoffMaxMs: number;
  log: KubeletLog;
  changed(): void;
}

export class StaticPodRunner {
  private readonly pods = new Map<string, StaticPod>();
  private readonly listeners = new Set<() => void>();
  private readonly ctx: PodContext;
  private readonly pollIntervalMs: number;
  private readonly log: KubeletLog;
  /** Content hashes of manifests that failed to parse, so each is reported once. */
  private readonly badManifests = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly opts: StaticPodRunnerOptions) {
    this.log = opts.log ?? (() => {});
    this.pollIntervalMs = opts.pollIntervalMs ?? 1000;
    this.ctx = {
      binDirs: opts.binDirs ?? [],
      logDir: opts.logDir,
      hostname: opts.hostname ?? osHostname(),
      backoffBaseMs: opts.backoffBaseMs ?? 10_000,
      backoffMaxMs: opts.backoffMaxMs ?? 300_000,
      log: this.log,
      changed: () => this.emitChange(),
    };
  }

  start(): void {
    this.stopped = false;
    const loop = (): void => {
      if (this.stopped) return;
      this.syncing = this.sync().finally(() => {
        this.syncing = undefined;
        if (!this.stopped) this.timer = setTimeout(loop, this.pollIntervalMs);
      });
    };
    loop();
  }

  /** Calls the listener whenever a pod starts, exits, is replaced or changes started/ready. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): StaticPodStatus[] {
    return [...this.pods.values()]
      .map((p) => p.status())
      .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  }

  /** Stops polling and every pod's process (each with its grace period, or `graceSeconds` when given). */
  async stop(graceSeconds?: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.syncing;
    await Promise.all([...this.pods.values()].map((p) => p.stop(graceSeconds)));
    this.pods.clear();
  }

  /** One pass over the directory: start new manifests, replace changed ones, stop removed ones. */
  async sync(): Promise<void> {
    const found = this.readManifests();
    const work: Array<Promise<void>> = [];
    for (const [path, m] of found) {
      const current = this.pods.get(path);
      if (current && (m === undefined || current.manifestHash === m.hash)) continue;
      if (m === undefined) continue;
      const next = new StaticPod(path, m.pod, m.hash, this.ctx);
      this.pods.set(path, next);
      if (current) {
        this.log('Restarting static pod: its manifest changed', { pod: current.key, manifestHash: m.hash });
        work.push(current.stop().then(() => (this.stopped ? undefined : next.start())));
      } else {
        this.log('Starting static pod', { pod: next.key, manifest: path, manifestHash: m.hash });
        next.start();
      }
    }
    for (const [path, pod] of this.pods) {
      if (found.has(path)) continue;
      this.log('Stopping static pod: its manifest was removed', { pod: pod.key, manifest: path });
      this.pods.delete(path);
      work.push(pod.stop());
    }
    if (work.length > 0) this.emitChange();
    await Promise.all(work);
  }

  /** Manifests by path; undefined for a file that does not parse now (its pod, if any, keeps running). */
  private readManifests(): Map<string, { pod: V1Pod; hash: string } | undefined> {
    const out = new Map<string, { pod: V1Pod; hash: string } | undefined>();
    let names: string[];
    try {
      names = readdirSync(this.opts.manifestDir);
    } catch {
      return out; // no directory: no static pods
    }
    for (const name of names.sort()) {
      if (name.startsWith('.')) continue; // the kubelet skips hidden files (editors' and rename temporaries)
      const path = join(this.opts.manifestDir, name);
      let text: string;
      try {
        if (!statSync(path).isFile()) continue;
        text = readFileSync(path, 'utf8');
      } catch {
        continue; // removed between readdir and read
      }
      const parsed = parseManifest(text);
      if (typeof parsed === 'string') {
        const key = `${path}:${createHash('sha256').update(text).digest('hex')}`;
        if (!this.badManifests.has(key)) {
          this.badManifests.add(key);
          this.log('Ignoring static pod manifest that does not parse', { manifest: path, error: parsed });
        }
        out.set(path, undefined);
        continue;
      }
      out.set(path, { pod: parsed, hash: manifestHash(parsed) });
    }
    return out;
  }

  private emitChange(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch {
        /* a listener's failure is its own */
      }
    }
  }
}

function parseManifest(text: string): V1Pod | string {
  let doc: unknown;
  try {
    doc = parseYaml(text); // JSON is YAML too
  } catch (err) {
    return (err as Error).message.split('\n')[0] ?? 'invalid YAML';
  }
  if (typeof doc !== 'object' || doc === null) return 'not an object';
  const pod = doc as V1Pod;
  if (pod.kind !== undefined && pod.kind !== 'Pod') return `kind ${pod.kind} is not Pod`;
  if (!pod.metadata?.name) return 'metadata.name is missing';
  if (!pod.spec?.containers?.length) return 'spec.containers is empty';
  return pod;
}

/** 32 hex digits, as long as the kubelet's config hash. */
function manifestHash(pod: V1Pod): string {
  return createHash('sha256').update(JSON.stringify(pod)).digest('hex').slice(0, 32);
}

/** One manifest's pod: its first container as a process, restarted until the pod is stopped. */
class StaticPod {
  readonly name: string;
  readonly namespace: string;
  readonly key: string;
  private readonly container: V1Container;
  private readonly graceSeconds: number;
  private child: ChildProcess | undefined;
  private startedAt: Date | undefined;
  private restartCount = 0;
  /** The current process's probes, which decide started and ready. */
  private prober: ContainerProber | undefined;
  private waiting: { reason: string; message: string } | undefined;
  private lastExit: StaticPodExit | undefined;
  private readonly backoff: CrashBackoff;
  private restartTimer: NodeJS.Timeout | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private exited: Promise<void> = Promise.resolve();
  private markExited: () => void = () => {};
  private warnedValueFrom = false;

  constructor(
    readonly manifestPath: string,
    readonly manifest: V1Pod,
    readonly manifestHash: string,
    private readonly ctx: PodContext,
  ) {
    this.name = manifest.metadata!.name!;
    this.namespace = manifest.metadata?.namespace || 'default';
    this.key = `${this.namespace}/${this.name}`;
    this.container = manifest.spec!.containers[0]!;
    this.graceSeconds = manifest.spec?.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
    this.backoff = new CrashBackoff(ctx.backoffBaseMs, ctx.backoffMaxMs);
  }

  start(): void {
    if (!this.stopping) this.spawnProcess();
  }

  status(): StaticPodStatus {
    return {
      name: this.name,
      namespace: this.namespace,
      manifestPath: this.manifestPath,
      manifestHash: this.manifestHash,
      manifest: this.manifest,
      containerName: this.container.name,
      pid: this.child?.pid,
      restartCount: this.restartCount,
      startedAt: this.startedAt,
      started: this.prober?.started ?? false,
      ready: this.prober?.ready ?? false,
      waiting: this.waiting,
      lastExit: this.lastExit,
    };
  }

  /** SIGTERM to the process group, SIGKILL after the pod's grace period; resolves once it exited. */
  async stop(graceSeconds = this.graceSeconds): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.prober?.stop();
    if (this.child) this.kill(graceSeconds);
    await this.exited;
  }

  private spawnProcess(): void {
    const c = this.container;
    const env = this.environment();
    const expand = (s: string): string => expandVars(s, env);
    const argv = [...(c.command ?? []), ...(c.args ?? [])].map(expand);
    // an image with a stand-in of its own (kube-vip's: kube-vip.ts) runs that, whatever its command
    const standIn = containerStandIn({ ...c, args: c.args?.map(expand) });
    if (!standIn && !c.command?.length) {
      return this.failToStart('the stand-in runs only containers with a command: it has no images to take an entrypoint from');
    }
    const bin = standIn ? standIn.bin : resolveExecutable(argv[0]!, (env.PATH ?? '').split(delimiter)); // binDirs lead the PATH
    if (!bin) return this.failToStart(`executable file not found in $PATH: ${argv[0]}`);
    const args = standIn ? standIn.args : argv.slice(1);

    const logFile = staticPodLogFile(this.ctx.logDir, this.namespace, this.name, c.name);
    let child: ChildProcess;
    try {
      mkdirSync(dirname(logFile), { recursive: true });
      const fd = openSync(logFile, 'a');
      try {
        child = spawn(bin, args, { cwd: '/', env, stdio: ['ignore', fd, fd], detached: true });
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      return this.failToStart((err as Error).message);
    }
    this.child = child;
    this.exited = new Promise((r) => (this.markExited = r));
    child.once('error', (err) => {
      if (child.pid === undefined) this.onExit(child, null, null, err); // never started; no exit follows
    });
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
    if (child.pid === undefined) return;

    this.startedAt = new Date();
    this.waiting = undefined;
    this.prober = new ContainerProber(c, {
      podKey: this.key,
      log: this.ctx.log,
      isCurrent: () => this.child === child,
      changed: () => this.ctx.changed(),
      kill: (graceSeconds) => this.kill(graceSeconds ?? this.graceSeconds),
    });
    this.ctx.log('Started static pod process', { pod: this.key, pid: child.pid, restartCount: this.restartCount, ...(standIn ? { standIn: standIn.what } : {}) });
    this.prober.start();
    this.ctx.changed();
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null, err?: Error): void {
    if (this.child !== child) return;
    this.child = undefined;
    clearTimeout(this.killTimer);
    this.prober?.stop();
    this.prober = undefined;
    // a container's processes end with it: what its main process left behind in the group goes too
    if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
    this.markExited();
    if (err) {
      this.failToStart(err.message);
      return;
    }
    this.lastExit = { code, signal, at: new Date() };
    if (this.stopping) {
      this.ctx.log('Stopped static pod process', { pod: this.key, code, signal });
      this.ctx.changed();
      return;
    }
    this.ctx.log('Static pod process exited', { pod: this.key, code, signal });
    this.scheduleRestart();
    this.ctx.changed();
  }

  private failToStart(message: string): void {
    this.ctx.log('Failed to start static pod process', { pod: this.key, error: message });
    this.waiting = { reason: 'RunContainerError', message };
    this.scheduleRestart();
    this.ctx.changed();
  }

  /** Restarts after the crash backoff's delay. */
  private scheduleRestart(): void {
    if (this.stopping) return;
    const delayMs = this.backoff.delay();
    if (delayMs === 0) {
      this.restart();
      return;
    }
    const message = `back-off ${formatSeconds(delayMs)} restarting failed container=${this.container.name} pod=${this.key}`;
    if (this.waiting?.reason !== 'RunContainerError') this.waiting = { reason: 'CrashLoopBackOff', message };
    this.ctx.log('Backing off before restarting static pod', { pod: this.key, delayMs });
    this.restartTimer = setTimeout(() => {
      this.backoff.waited();
      this.restart();
    }, delayMs);
  }

  private restart(): void {
    if (this.stopping) return;
    this.restartCount += 1;
    this.spawnProcess();
  }

  private kill(graceSeconds: number): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    clearTimeout(this.killTimer);
    this.killTimer = terminateGroup(pid, graceSeconds);
  }

  private environment(): NodeJS.ProcessEnv {
    // what an image would set, then the container's own variables in order ($(VAR) sees earlier ones)
    const env: Record<string, string> = { PATH: containerPath(this.ctx.binDirs), HOSTNAME: this.ctx.hostname };
    for (const e of this.container.env ?? []) {
      if (e.value !== undefined) env[e.name] = expandVars(e.value, env);
      else if (e.valueFrom !== undefined && !this.warnedValueFrom) {
        this.warnedValueFrom = true;
        this.ctx.log('Ignoring env valueFrom: the stand-in has no API objects to read', { pod: this.key, name: e.name });
      }
    }
    return env;
  }
}

// --------------------------------------------------------------------------------------------------
// helpers (process pods use them too)

/** Where a static pod's container log goes: `<logDir>/<namespace>_<pod>/<container>.log`, every run appended. */
export function staticPodLogFile(logDir: string, namespace: string, pod: string, container: string): string {
  return join(logDir, `${namespace}_${pod}`, `${container}.log`);
}

/** PATH of a container's process: the machine's binaries first, then the kubelet's own PATH. */
export function containerPath(binDirs: readonly string[]): string {
  return [...binDirs, process.env.PATH || DEFAULT_PATH].join(delimiter);
}

export function resolveExecutable(command: string, dirs: string[]): string | undefined {
  const candidates = command.includes('/') ? [command] : dirs.filter(Boolean).map((d) => join(d, command));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (statSync(c).isFile()) return c;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** Kubernetes' `$(VAR)` expansion in command, args and env; `$$(VAR)` stays literal. */
export function expandVars(text: string, env: NodeJS.ProcessEnv): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string | undefined) => {
    if (m === '$$') return '$';
    return env[name!] ?? m;
  });
}

export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    /* already gone */
  }
}

export function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
