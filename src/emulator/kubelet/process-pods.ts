/**
 * The kubelet stand-in's process pods: run-to-completion host-network pods bound to the node, run as
 * local processes the way an operator's one-off pod (etcdctl on a control plane node, say) runs
 * under a real kubelet; and host-network pods' init containers, as a CNI's installer runs.
 *
 * The rule. A pod bound to the node (not a mirror pod) with spec.hostNetwork true runs as processes:
 * - with init containers (none a sidecar, restartPolicy Always): its init containers, one after the
 *   other, as a CNI DaemonSet's installer writes the CNI config into the host's /etc/cni/net.d; once
 *   all completed, its containers are reported Running as kwok reports them and are not run (their
 *   images' binaries are not on the machine);
 * - without: its container, when spec.restartPolicy is Never or OnFailure and it has exactly one.
 * Every other pod is reported Running as kwok does (pods.ts), as before.
 *
 * A container (the one, or each init container) runs as `command + args` ($(VAR) expanded) in a
 * process group of its own, command[0] looked up in the machine's binaries (the static pods' bin
 * dirs, then PATH), with the container's literal env values (and valueFrom.fieldRef of the pod's own
 * fields), HOSTNAME, and its workingDir (default /). Its output goes to
 * `<logDir>/<namespace>_<pod>_<uid>/<container>/<n>.log`, n being the restart count, the kubelet's
 * own layout, so a log read gets the current run only. The process sees the machine's own file
 * system: a hostPath volumeMount is honoured only when its mountPath is the hostPath's path (no
 * subPath), and the hostPath type is checked as the kubelet checks it (a failed check leaves the pod
 * Pending, ContainerCreating, checked again). The API server's service account token volume
 * (kube-api-access-*) is left out: the process gets no token.
 *
 * What the stand-in cannot give a process (a hostPath mounted elsewhere, any other volume, no
 * command, envFrom, other valueFrom) fails the pod at once, as a container that cannot start is
 * reported: phase Failed, state.terminated {exitCode 128, reason StartError, message}. A command not
 * found, or a workingDir that is not there, fails the same way under Never; under OnFailure (or
 * Always) it is retried with the crash backoff like an exit.
 *
 * Status as the kubelet reports it: Pending, then Running (state.running.startedAt), then on exit
 * Succeeded (exit 0) or Failed with state.terminated {exitCode, reason Completed|Error, startedAt,
 * finishedAt}; killed by a signal is 128+signal. OnFailure restarts a non-zero exit with the
 * kubelet's crash backoff (static-pods.ts's: at once, then the base doubling to the maximum),
 * restartCount and lastState counting. Init containers: the pod stays Pending, Initialized False,
 * with status.initContainerStatuses (waiting PodInitializing, running, terminated Completed) until
 * the last one completed; one that fails is restarted with the crash backoff under Always and
 * OnFailure (waiting CrashLoopBackOff: Init:CrashLoopBackOff), fails the pod under Never.
 *
 * A pod being deleted: SIGTERM to the process group, SIGKILL after the deletion grace period (at
 * least 2 s, as the kubelet), then its terminal status and the deletion confirmed. A pod gone from
 * the API: its process is killed and its logs removed. A pod seen Running with no process here (the
 * kubelet restarted) is Failed with ContainerStatusUnknown under Never, started again otherwise;
 * init containers the API shows completed are not run again. Probes are not run: a running process
 * is ready.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { delimiter, dirname, join, posix } from 'node:path';
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import { statusOf } from '../../core/kube-errors.js';
import type { ApiSession } from './api-session.js';
import type { ContainerLogAnswer } from './kubelet-server.js';
import {
  type ContainerRun,
  type ContainerTermination,
  type ProcessPodState,
  initPodStatus,
  isMirrorPod,
  podKey,
  processPodStatus,
} from './pod-status.js';
import { CrashBackoff, containerPath, expandVars, formatSeconds, resolveExecutable, signalGroup, terminateGroup } from './static-pods.js';

export interface ProcessPodsOptions {
  /** The machine's binaries, searched before PATH (the static pods' bin dirs). */
  binDirs: readonly string[];
  /** /var/log/pods */
  logDir: string;
  /** HOSTNAME in the processes' environment. */
  hostname: string;
  /** The crash backoff (OnFailure, Always). Defaults 10 000 and 300 000, the kubelet's. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/** The API calls a process pod makes, through the node's session. */
export interface ProcessPodsApi {
  nodeIp(): string;
  /** The pod as the API server answered. */
  patchStatus(pod: V1Pod, status: Record<string, unknown>): Promise<V1Pod>;
  /** Deletes with grace period 0 and the pod's UID as precondition. */
  confirmDeletion(pod: V1Pod): Promise<void>;
}

/** The kubelet's floor on a kill's grace period. */
const MIN_GRACE_SECONDS = 2;
const DEFAULT_GRACE_SECONDS = 30;
const START_ERROR_EXIT = 128;
const SERVICE_ACCOUNT_VOLUME_PREFIX = 'kube-api-access-';

/** The rule: a pod bound to the node whose containers (or init containers) the stand-in runs as local processes. */
export function runsAsProcess(pod: V1Pod): boolean {
  const s = pod.spec;
  if (isMirrorPod(pod) || s?.hostNetwork !== true) return false;
  if (s.initContainers?.length) return runsInitContainers(pod);
  return (s.restartPolicy === 'Never' || s.restartPolicy === 'OnFailure') && s.containers.length === 1;
}

/** The status of a pod's Ready condition (a status as the API holds it, or as this kubelet would send it). */
function readyOf(status: unknown): string | undefined {
  const conditions = (status as { conditions?: Array<{ type?: string; status?: string }> } | undefined)?.conditions ?? [];
  return conditions.find((c) => c.type === 'Ready')?.status;
}

/** Init containers run, none a sidecar: a sidecar would keep running beside containers that do not run. */
function runsInitContainers(pod: V1Pod): boolean {
  const inits = pod.spec?.initContainers ?? [];
  return inits.length > 0 && inits.every((c) => c.restartPolicy !== 'Always');
}

interface Context {
  session: ApiSession;
  api: ProcessPodsApi;
  opts: ProcessPodsOptions;
  backoffBaseMs: number;
  backoffMaxMs: number;
}

/** The process pods of the node, by UID. */
export class ProcessPods {
  private readonly pods = new Map<string, ProcessPod>();
  private readonly ctx: Context;

  constructor(session: ApiSession, api: ProcessPodsApi, opts: ProcessPodsOptions) {
    this.ctx = { session, api, opts, backoffBaseMs: opts.backoffBaseMs ?? 10_000, backoffMaxMs: opts.backoffMaxMs ?? 300_000 };
  }

  /** The pod as the API shows it now: started on first sight, its process killed when it is being deleted. */
  reconcile(pod: V1Pod): void {
    const uid = pod.metadata?.uid;
    if (!uid) return;
    let p = this.pods.get(uid);
    if (!p) {
      if (this.ctx.session.stopped) return;
      p = new ProcessPod(pod, this.ctx);
      this.pods.set(uid, p);
      if (!pod.metadata?.deletionTimestamp) p.begin();
    } else {
      p.update(pod);
    }
    if (pod.metadata?.deletionTimestamp) p.terminate();
  }

  /** The pod is gone from the API: its process is killed and its logs removed. */
  forget(uid: string | undefined): void {
    const p = uid === undefined ? undefined : this.pods.get(uid);
    if (!p) return;
    this.pods.delete(uid!);
    p.forget();
  }

  /** After a relist: the pods not listed are gone. */
  retainOnly(uids: ReadonlySet<string>): void {
    for (const uid of [...this.pods.keys()]) if (!uids.has(uid)) this.forget(uid);
  }

  has(uid: string | undefined): boolean {
    return uid !== undefined && this.pods.has(uid);
  }

  /** The log of a container run here: its current run, or the one before with `previous`; undefined for one not run. */
  containerLog(uid: string, container: string, previous: boolean): ContainerLogAnswer | undefined {
    return this.pods.get(uid)?.containerLog(container, previous);
  }

  /** The kubelet stops: every process is killed with its pod's grace period; the pods stay as they are. */
  async stop(): Promise<void> {
    await Promise.all([...this.pods.values()].map((p) => p.stop()));
  }
}

type Plan =
  | { kind: 'run'; bin: string; args: string[]; env: Record<string, string>; cwd: string }
  /** The container cannot start; permanent: the stand-in can never run it. */
  | { kind: 'fail'; message: string; permanent: boolean }
  /** A volume is not ready (hostPath type check): checked again later. */
  | { kind: 'wait'; message: string };

class ProcessPod {
  readonly uid: string;
  readonly key: string;
  private pod: V1Pod;
  /** The init containers are run (then the containers reported running), not the one container. */
  private readonly runsInit: boolean;
  /** What runs, in order: the one container, or the init containers. */
  private readonly containers: V1Container[];
  private readonly restartPolicy: 'Never' | 'OnFailure' | 'Always';
  private readonly state: ProcessPodState;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private markExited: () => void = () => {};
  private killTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private backoff: CrashBackoff;
  /** Being deleted: no more runs; the deletion is confirmed once the process exited. */
  private terminating = false;
  /** Gone from the API, or the kubelet stops: no more runs, no more API calls. */
  private gone = false;
  private removeLogsOnExit = false;
  private queue: Promise<void> = Promise.resolve();
  private sent = '';
  /** The API holds a Ready status this kubelet sent (or found at its start). */
  private readySent = false;

  constructor(
    pod: V1Pod,
    private readonly ctx: Context,
  ) {
    this.pod = pod;
    this.uid = pod.metadata!.uid!;
    this.key = podKey(pod);
    this.runsInit = runsInitContainers(pod);
    this.containers = this.runsInit ? pod.spec!.initContainers! : [pod.spec!.containers[0]!];
    this.restartPolicy = (pod.spec!.restartPolicy ?? 'Always') as 'Never' | 'OnFailure' | 'Always';
    const now = new Date();
    this.state = {
      phase: 'Pending',
      startTime: pod.status?.startTime ? new Date(pod.status.startTime) : now,
      since: now,
      runs: this.containers.map(() => ({ restartCount: 0, created: false })),
      step: 0,
    };
    this.backoff = new CrashBackoff(ctx.backoffBaseMs, ctx.backoffMaxMs);
  }

  private get log(): ApiSession['log'] {
    return this.ctx.session.log;
  }

  /** The container running or next to run, and its runs. */
  private get container(): V1Container {
    return this.containers[this.state.step]!;
  }

  private get current(): ContainerRun {
    return this.state.runs[this.state.step]!;
  }

  /** The latest view of the pod (a watch event may be older than the answer of our own write). */
  update(pod: V1Pod): void {
    if (Number(pod.metadata?.resourceVersion) >= Number(this.pod.metadata?.resourceVersion ?? 0) || !this.pod.metadata?.resourceVersion) this.pod = pod;
    else return;
    // The node lifecycle controller marks a lost Node's pods not Ready; once this kubelet reports
    // again its own status stands, as the kubelet's status manager puts back a status others changed.
    if (this.readySent && !this.terminating && !this.gone && readyOf(this.pod.status) !== 'True' && readyOf(this.status()) === 'True') {
      this.log('Pod marked not ready by another: reporting its status again', { pod: this.key });
      this.readySent = false;
      this.sent = '';
      this.publish();
    }
  }

  /** First sight: run it, unless it ended already or ran under an earlier kubelet run. */
  begin(): void {
    const s = this.pod.status;
    if (s?.phase === 'Succeeded' || s?.phase === 'Failed') {
      this.state.phase = s.phase;
      this.sent = 'reported before';
      return;
    }
    this.skipCompleted();
    if (this.state.step === this.containers.length) {
      this.initialized(s?.phase === 'Running');
      return;
    }
    const cs = (this.runsInit ? s?.initContainerStatuses : s?.containerStatuses)?.find((c) => c.name === this.container.name);
    const ranBefore = (s?.phase === 'Running' && !this.runsInit) || cs?.state?.running !== undefined || cs?.state?.terminated !== undefined;
    if (ranBefore) {
      const now = new Date();
      const startedAt = cs?.state?.running?.startedAt ? new Date(cs.state.running.startedAt) : now;
      this.current.restartCount = cs?.restartCount ?? 0;
      this.current.created = true;
      if (this.restartPolicy === 'Never') {
        this.log('Pod process not found: it ran before this kubelet started', { pod: this.key });
        this.finish({ exitCode: 137, reason: 'ContainerStatusUnknown', message: 'The container could not be located when the pod was terminated', startedAt, finishedAt: now });
        return;
      }
      this.current.restartCount += 1;
    }
    this.publish(); // Pending, at once: the pod is taken in
    this.run();
  }

  /** Init containers the API shows completed ran under an earlier kubelet run: they are not run again. */
  private skipCompleted(): void {
    const statuses = this.runsInit ? (this.pod.status?.initContainerStatuses ?? []) : [];
    for (const c of this.containers) {
      const cs = statuses.find((x) => x.name === c.name);
      const t = cs?.state?.terminated;
      if (t?.exitCode !== 0) return;
      const at = (d: Date | undefined): Date => new Date(d ?? 0);
      Object.assign(this.current, { created: true, restartCount: cs!.restartCount, terminated: { exitCode: 0, reason: t.reason ?? 'Completed', startedAt: at(t.startedAt), finishedAt: at(t.finishedAt) } });
      this.state.step += 1;
    }
  }

  /** The pod is being deleted: SIGTERM, SIGKILL after the grace period, then the deletion confirmed. */
  terminate(): void {
    if (this.terminating || this.gone) return;
    this.terminating = true;
    clearTimeout(this.retryTimer);
    const grace = Math.max(MIN_GRACE_SECONDS, this.pod.metadata?.deletionGracePeriodSeconds ?? this.pod.spec?.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS);
    if (this.child) {
      this.log('Killing pod process: the pod is being deleted', { pod: this.key, pid: this.child.pid, gracePeriodSeconds: grace });
      this.kill(grace);
    }
    void this.exited.then(() => this.enqueue('confirming the deletion of pod', () => this.ctx.api.confirmDeletion(this.pod)));
  }

  forget(): void {
    this.gone = true;
    clearTimeout(this.retryTimer);
    if (this.child) {
      this.log('Killing pod process: the pod is gone', { pod: this.key, pid: this.child.pid });
      this.removeLogsOnExit = true;
      this.kill(MIN_GRACE_SECONDS);
    } else {
      this.removeLogs();
    }
  }

  async stop(): Promise<void> {
    this.gone = true;
    clearTimeout(this.retryTimer);
    if (this.child) this.kill(Math.max(MIN_GRACE_SECONDS, this.pod.spec?.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS));
    await this.exited;
  }

  /** Undefined for a container not run here (an init pod's container, reported running once initialized). */
  containerLog(name: string, previous: boolean): ContainerLogAnswer | undefined {
    const podName = this.pod.metadata?.name ?? '';
    const i = this.containers.findIndex((c) => c.name === name);
    const waiting = (reason: string): ContainerLogAnswer => ({ status: 400, message: `container "${name}" in pod "${podName}" is waiting to start: ${reason}` });
    if (i < 0) return this.state.step < this.containers.length && !previous ? waiting('PodInitializing') : undefined;
    const r = this.state.runs[i]!;
    if (previous) {
      if (!r.lastTerminated || r.restartCount < 1) {
        return { status: 400, message: `previous terminated container "${name}" in pod "${podName}" not found` };
      }
      return { file: this.logFile(name, r.restartCount - 1) };
    }
    if (!r.created) return waiting(r.waiting?.reason ?? (this.runsInit ? 'PodInitializing' : 'ContainerCreating'));
    return { file: this.logFile(name, r.restartCount) };
  }

  // ------------------------------------------------------------------------------------------------
  // runs

  private run(): void {
    if (this.terminating || this.gone) return;
    const plan = planProcess(this.pod, this.container, this.ctx.opts, this.ctx.api.nodeIp());
    if (plan.kind === 'wait') {
      if (this.current.waiting?.message !== plan.message) {
        this.log('Pod process waits for its volumes', { pod: this.key, reason: plan.message });
        this.transition({ waiting: { reason: 'ContainerCreating', message: plan.message } });
      }
      this.retryTimer = setTimeout(() => this.run(), this.ctx.session.retryMs);
      return;
    }
    if (plan.kind === 'fail') {
      this.startFailed(plan.message, plan.permanent);
      return;
    }

    const logFile = this.logFile(this.container.name, this.current.restartCount);
    let child: ChildProcess;
    try {
      mkdirSync(dirname(logFile), { recursive: true });
      const fd = openSync(logFile, 'w');
      try {
        child = spawn(plan.bin, plan.args, { cwd: plan.cwd, env: plan.env, stdio: ['ignore', fd, fd], detached: true });
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      this.startFailed((err as Error).message, false);
      return;
    }
    this.child = child;
    this.exited = new Promise((r) => (this.markExited = r));
    child.once('error', (err) => {
      if (child.pid === undefined) this.onExit(child, null, null, err); // never started; no exit follows
    });
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
    if (child.pid === undefined) return;
    this.log('Started pod process', { pod: this.key, container: this.container.name, pid: child.pid, command: [plan.bin, ...plan.args].join(' '), restartCount: this.current.restartCount });
    this.transition({ phase: this.runsInit ? 'Pending' : 'Running', running: { startedAt: new Date() }, created: true });
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null, err?: Error): void {
    if (this.child !== child) return;
    this.child = undefined;
    clearTimeout(this.killTimer);
    // a container's processes end with it: what its main process left behind in the group goes too
    if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
    if (err) {
      this.startFailed(err.message, false);
    } else {
      const now = new Date();
      const exitCode = code ?? 128 + (signal ? osConstants.signals[signal] : 0);
      this.log('Pod process exited', { pod: this.key, code, signal });
      this.runEnded({ exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', startedAt: this.current.running?.startedAt ?? now, finishedAt: now });
    }
    if (this.removeLogsOnExit) this.removeLogs();
    this.markExited();
  }

  /** As containerd reports a container whose process could not start. */
  private startFailed(message: string, permanent: boolean): void {
    this.log('Pod process cannot start', { pod: this.key, error: message });
    const now = new Date();
    const t: ContainerTermination = { exitCode: START_ERROR_EXIT, reason: 'StartError', message, startedAt: new Date(0), finishedAt: now };
    this.current.created = true;
    if (permanent) this.finish(t);
    else this.runEnded(t);
  }

  private runEnded(t: ContainerTermination): void {
    if (this.terminating || this.gone || t.exitCode === 0 || this.restartPolicy === 'Never') {
      this.finish(t);
      return;
    }
    // OnFailure, Always: the run goes to lastState, the next one follows the crash backoff
    this.current.lastTerminated = t;
    this.scheduleRestart(t);
  }

  /** The container's last run: the pod ends with it, unless an init container completed. */
  private finish(t: ContainerTermination): void {
    clearTimeout(this.retryTimer);
    if (!this.runsInit || t.exitCode !== 0) {
      this.transition({ phase: t.exitCode === 0 ? 'Succeeded' : 'Failed', terminated: t });
      return;
    }
    this.transition({ terminated: t });
    this.state.step += 1;
    this.backoff = new CrashBackoff(this.ctx.backoffBaseMs, this.ctx.backoffMaxMs); // the kubelet's is per container
    if (this.state.step < this.containers.length) this.run();
    else this.initialized(false);
  }

  /** Every init container completed: the pod's containers are reported running, not run (their images' binaries are not here). */
  private initialized(reportedBefore: boolean): void {
    this.state.phase = 'Running';
    if (reportedBefore && readyOf(this.pod.status) === 'True') {
      this.sent = 'reported before';
      this.readySent = true;
      return;
    }
    this.log('Init containers completed: reporting the pod running', { pod: this.key });
    this.state.since = new Date();
    this.publish();
  }

  /** Restarts after the crash backoff's delay (static-pods.ts's CrashBackoff). */
  private scheduleRestart(t: ContainerTermination): void {
    const phase = this.runsInit || (t.reason === 'StartError' && this.state.phase === 'Pending') ? 'Pending' : 'Running';
    const delayMs = this.backoff.delay();
    if (delayMs === 0) {
      this.transition({ phase, waiting: { reason: t.reason === 'StartError' ? 'RunContainerError' : 'CrashLoopBackOff', message: t.message ?? '' } });
      this.restart();
      return;
    }
    const message = `back-off ${formatSeconds(delayMs)} restarting failed container=${this.container.name} pod=${this.pod.metadata?.name ?? ''}_${this.pod.metadata?.namespace ?? ''}(${this.uid})`;
    this.log('Backing off before restarting pod process', { pod: this.key, delayMs });
    this.transition({ phase, waiting: { reason: 'CrashLoopBackOff', message } });
    this.retryTimer = setTimeout(() => {
      this.backoff.waited();
      this.restart();
    }, delayMs);
  }

  private restart(): void {
    if (this.terminating || this.gone) return;
    this.current.restartCount += 1;
    this.run();
  }

  private kill(graceSeconds: number): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    clearTimeout(this.killTimer);
    this.killTimer = terminateGroup(pid, graceSeconds);
  }

  private logFile(container: string, run: number): string {
    return join(this.podLogDir(), container, `${run}.log`);
  }

  private podLogDir(): string {
    return join(this.ctx.opts.logDir, `${this.pod.metadata?.namespace ?? ''}_${this.pod.metadata?.name ?? ''}_${this.uid}`);
  }

  private removeLogs(): void {
    rmSync(this.podLogDir(), { recursive: true, force: true });
  }

  // ------------------------------------------------------------------------------------------------
  // status

  /** One state of the current container replaces the other; the status goes out. */
  private transition(change: Partial<ContainerRun> & { phase?: ProcessPodState['phase'] }): void {
    const { phase, ...rest } = change;
    if (phase) this.state.phase = phase;
    const r = this.current;
    r.running = undefined;
    r.waiting = undefined;
    r.terminated = undefined;
    Object.assign(r, rest);
    this.state.since = new Date();
    this.publish();
  }

  private status(): Record<string, unknown> {
    return (this.runsInit ? initPodStatus : processPodStatus)(this.pod, this.state, this.ctx.api.nodeIp());
  }

  /** The latest state goes out after what is queued; an unchanged one is not sent again. */
  private publish(): void {
    this.enqueue('updating the status of pod', async () => {
      const status = this.status();
      const signature = JSON.stringify(status);
      if (signature === this.sent) return;
      const updated = await this.ctx.api.patchStatus(this.pod, status);
      this.sent = signature;
      this.readySent = readyOf(status) === 'True';
      this.update(updated);
    });
  }

  /** API calls one after the other, each retried until it works, the pod is gone or the kubelet stops. */
  private enqueue(doing: string, action: () => Promise<void>): void {
    const { session } = this.ctx;
    this.queue = this.queue.then(async () => {
      while (!this.gone && !session.stopped) {
        try {
          await action();
          session.recovered(`${doing} ${this.key}`);
          return;
        } catch (err) {
          if (statusOf(err) === 404) return; // the pod is gone; its DELETED event follows
          session.report(`${doing} ${this.key}`, err);
          await session.sleep(session.retryMs, 'other');
        }
      }
    });
  }
}

// --------------------------------------------------------------------------------------------------
// what a process needs

/** The process of a container of the pod, or why it cannot run (yet). */
function planProcess(pod: V1Pod, c: V1Container, opts: ProcessPodsOptions, nodeIp: string): Plan {
  const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  for (const m of c.volumeMounts ?? []) {
    const v = volumes.get(m.name);
    if (!v) return { kind: 'fail', permanent: true, message: `volume "${m.name}" is mounted but not defined` };
    if (isServiceAccountTokenVolume(v)) continue;
    if (!v.hostPath) {
      return {
        kind: 'fail',
        permanent: true,
        message: `the kubelet stand-in runs this pod as a process on the machine's own file system: volume "${m.name}" (${volumeType(v)}) cannot be given to it; only hostPath volumes mounted at their own path can`,
      };
    }
    const hostPath = normalizePath(v.hostPath.path);
    if (m.subPath || m.subPathExpr || normalizePath(m.mountPath) !== hostPath) {
      return {
        kind: 'fail',
        permanent: true,
        message: `the kubelet stand-in runs this pod as a process on the machine's own file system: hostPath volume "${m.name}" (path ${v.hostPath.path}) must be mounted at that same path without subPath, not at ${m.mountPath}${m.subPath || m.subPathExpr ? ` (subPath ${m.subPath ?? m.subPathExpr})` : ''}`,
      };
    }
    const problem = checkHostPathType(hostPath, v.hostPath.type ?? '');
    if (problem) return { kind: 'wait', message: `MountVolume.SetUp failed for volume "${m.name}" : ${problem}` };
  }
  if (c.envFrom?.length) return { kind: 'fail', permanent: true, message: 'envFrom is not supported by the kubelet stand-in: it reads no ConfigMaps or Secrets' };
  const env: Record<string, string> = { PATH: containerPath(opts.binDirs), HOSTNAME: opts.hostname };
  for (const e of c.env ?? []) {
    if (e.valueFrom === undefined) {
      env[e.name] = expandVars(e.value ?? '', env);
      continue;
    }
    const value = e.valueFrom.fieldRef ? fieldValue(pod, e.valueFrom.fieldRef.fieldPath, nodeIp) : undefined;
    if (value === undefined) {
      return { kind: 'fail', permanent: true, message: `env ${e.name}: only literal values and fieldRef of the pod's own fields are supported by the kubelet stand-in` };
    }
    env[e.name] = value;
  }
  if (!c.command?.length) {
    return { kind: 'fail', permanent: true, message: 'the kubelet stand-in runs only containers with a command: it has no images to take an entrypoint from' };
  }
  const argv = [...c.command, ...(c.args ?? [])].map((a) => expandVars(a, env));
  const bin = resolveExecutable(argv[0]!, env.PATH!.split(delimiter));
  if (!bin) return { kind: 'fail', permanent: false, message: `exec: "${argv[0]}": executable file not found in $PATH` };
  const cwd = c.workingDir || '/';
  if (!isDirectory(cwd)) return { kind: 'fail', permanent: false, message: `chdir to cwd ("${cwd}") set in config.json failed: no such file or directory` };
  return { kind: 'run', bin, args: argv.slice(1), env, cwd };
}

/** The volume the API server's ServiceAccount admission adds (token, CA, namespace). */
function isServiceAccountTokenVolume(v: V1Volume): boolean {
  return v.name.startsWith(SERVICE_ACCOUNT_VOLUME_PREFIX) && v.projected !== undefined;
}

function volumeType(v: V1Volume): string {
  return Object.keys(v).find((k) => k !== 'name' && (v as unknown as Record<string, unknown>)[k] !== undefined) ?? 'unknown';
}

function normalizePath(p: string): string {
  return posix.normalize(p).replace(/(.)\/+$/, '$1');
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The kubelet's hostPath type check; the *OrCreate types make what is missing. Undefined when it passes. */
function checkHostPathType(path: string, type: string): string | undefined {
  let st: ReturnType<typeof statSync> | undefined;
  try {
    st = statSync(path);
  } catch {
    st = undefined;
  }
  const failed = (what: string): string => `hostPath type check failed: ${path} is not ${what}`;
  switch (type) {
    case '':
      return undefined;
    case 'DirectoryOrCreate':
      if (!st) mkdirSync(path, { recursive: true, mode: 0o755 });
      else if (!st.isDirectory()) return failed('a directory');
      return undefined;
    case 'Directory':
      return st?.isDirectory() ? undefined : failed('a directory');
    case 'FileOrCreate':
      if (!st) {
        try {
          writeFileSync(path, '', { mode: 0o644, flag: 'wx' });
        } catch (err) {
          return `hostPath type check failed: cannot create ${path}: ${(err as Error).message}`;
        }
      } else if (!st.isFile()) return failed('a file');
      return undefined;
    case 'File':
      return st?.isFile() ? undefined : failed('a file');
    case 'Socket':
      return st?.isSocket() ? undefined : failed('a socket file');
    case 'CharDevice':
      return st?.isCharacterDevice() ? undefined : failed('a character device');
    case 'BlockDevice':
      return st?.isBlockDevice() ? undefined : failed('a block device');
    default:
      return `hostPath type ${type} is unknown`;
  }
}

/** The downward API fields a process pod's env may name. */
function fieldValue(pod: V1Pod, path: string, nodeIp: string): string | undefined {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m) return pod.metadata?.[m[1] as 'labels' | 'annotations']?.[m[2]!] ?? '';
  switch (path) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'status.hostIP':
    case 'status.hostIPs':
    case 'status.podIP':
    case 'status.podIPs':
      return nodeIp; // host network: the pod's address is the node's
    default:
      return undefined;
  }
}
