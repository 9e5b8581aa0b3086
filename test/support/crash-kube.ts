/**
 * The crash suite's engine for the step that writes to a workload kube-apiserver (install-addons),
 * a sibling of runScenario (crash-suite.ts) with the same report (`N kill points, M divergences`).
 *
 * There is no fault proxy between capflow and kube-apiserver: the kill points are the step's writes
 * as the API server's audit log shows them (create, update, patch and delete requests by capflow's
 * client; server-side dry runs excluded, they write nothing). The audit log is written as requests
 * complete, so the killer, polling it every few milliseconds, SIGKILLs the child once the k-th write
 * of this run is logged: the kill lands at or shortly after write k (the child may have sent write
 * k+1 by then), never before it. Only "after the answer" kills, then.
 *
 *   (a) the step runs uninterrupted (a child, `capflow step` as the image runs it): its world is the
 *       reference, its writes the kill points; a rerun must make no write;
 *   (b) per kill point: a fresh case (the scenario's `prepare`, with a namespace set of its own, one
 *       API server for every case), the step killed at that write, rerun, the world snapshotted and
 *       compared with the reference (case names mapped back, see `canonical`);
 *   (c) a second rerun must make no write.
 *
 * Which points: CAPFLOW_CRASH_POINTS=all (every write) or sample (the first, the middle and the last).
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { canonical, crashPointSelection, jsonDiff, type Divergence, type KillPoint, type Phase, type PointSelection, type ScenarioResult } from './crash-suite.js';
import { startControllers, type Controllers } from './controllers.js';
import { startEnvtest, type Envtest } from './envtest.js';
import { imageRoot, podTmpEnv } from './image-root.js';
import { requireTool } from './tools.js';

/** envtest's admin user: capflow's and kwok's; capflow's requests are told apart by client-node's user agent. */
const ADMIN = 'capflow-testbed-admin';
const AUDIT_POLICY = 'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n';

/** One line of the API server's audit log (the fields the install-addons tests read). */
export interface AuditEvent {
  verb: string;
  userAgent?: string;
  requestURI: string;
  user: { username: string };
  objectRef?: { resource?: string; namespace?: string; name?: string };
  responseStatus?: { code?: number };
}

/** The audit log read from where the last read stopped (a partial last line kept for the next). */
export class AuditTail {
  private offset = 0;
  private rest = '';
  constructor(readonly file: string) {}

  /** Forget what was written so far: the next `writes()` starts here. */
  mark(): void {
    this.offset = statSync(this.file).size;
    this.rest = '';
  }

  /** capflow's writes logged since the last call. */
  writes(): string[] {
    const size = statSync(this.file).size;
    if (size <= this.offset) return [];
    const buf = Buffer.alloc(size - this.offset);
    const fd = openSync(this.file, 'r');
    try {
      readSync(fd, buf, 0, buf.length, this.offset);
    } finally {
      closeSync(fd);
    }
    this.offset = size;
    const lines = (this.rest + buf.toString('utf8')).split('\n');
    this.rest = lines.pop() ?? '';
    return lines
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditEvent)
      .filter((e) => e.user.username === ADMIN && /node-fetch/.test(e.userAgent ?? '') && ['create', 'update', 'patch', 'delete'].includes(e.verb) && !/[?&]dryRun=All/.test(e.requestURI))
      .map((e) => `${e.verb} ${e.objectRef?.resource}/${e.objectRef?.namespace ? `${e.objectRef.namespace}/` : ''}${e.objectRef?.name}`);
  }
}

/** One API server for a kube scenario's every case: envtest with an audit log, the deployment controllers, kwok and one fake Node. */
export interface KubeBed {
  env: Envtest;
  ctl: Controllers;
  kc: KubeConfig;
  audit: AuditTail;
  /** A folder for the bed's own files (helm's homes). */
  work: string;
}

export async function startKubeBed(): Promise<KubeBed> {
  const work = mkdtempSync(path.join(os.tmpdir(), 'capflow-crash-kube-'));
  const auditLog = path.join(work, 'audit.log');
  writeFileSync(path.join(work, 'audit-policy.yaml'), AUDIT_POLICY);
  const env = await startEnvtest({ kwok: true, apiserverArgs: [`--audit-policy-file=${path.join(work, 'audit-policy.yaml')}`, `--audit-log-path=${auditLog}`, '--audit-log-format=json'] });
  // namespace: a case's namespace deleted is gone (its content with it) before the next case makes it again
  const ctl = startControllers(env, { controllers: ['deployment', 'replicaset', 'nodelifecycle', 'namespace'] });
  const kc = env.makeKubeConfig();
  await kc.makeApiClient(CoreV1Api).createNode({ body: { metadata: { name: 'kwok-0', labels: { 'kubernetes.io/hostname': 'kwok-0' }, annotations: { 'kwok.x-k8s.io/node': 'fake' } } } });
  return { env, ctl, kc, audit: new AuditTail(auditLog), work };
}

export async function stopKubeBed(bed: KubeBed | undefined): Promise<void> {
  if (!bed) return;
  await bed.ctl.stop();
  await bed.env.stop();
  rmSync(bed.work, { recursive: true, force: true });
}

/** Where one case's step runs: its repo, folder and secret store (fresh per case), and the names of its own (mapped back to the reference's). */
export interface KubeLane {
  repo: string;
  clusterPath: string;
  secretsDir: string;
  params: Record<string, string>;
  /** This case's names → the reference's (its namespaces), for the comparison. */
  names: Map<string, string>;
}

export interface KubeScenario {
  stepId: string;
  /** 'delete' for install-addons: prune after an addon is removed from Git (a plain run of the step). */
  phase: Phase;
  label: string;
  points?: PointSelection;
  /** The world the step starts from, for case number `n` (0: the reference), with names of its own. */
  prepare(bed: KubeBed, n: number): Promise<KubeLane>;
  /** The objects the step owns and its status, names mapped back (`lane.names`), in a canonical order. */
  snapshot(bed: KubeBed, lane: KubeLane): Promise<unknown>;
  /** Frees what a case left that the next would trip on (objects outside its own namespaces). */
  cleanup?(bed: KubeBed, lane: KubeLane): Promise<void>;
}

/** Sample: the first, the middle and the last write; all: every write. */
export function selectWritePoints(writes: readonly string[], selection: PointSelection): KillPoint[] {
  const n = writes.length;
  const picked = selection === 'all' ? writes.map((_, i) => i + 1) : [...new Set([1, Math.ceil(n / 2), n])].filter((k) => k >= 1 && k <= n);
  return picked.sort((a, b) => a - b).map((k) => ({ n: k, action: writes[k - 1]!, when: 'after-response' }));
}

interface KubeRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  writes: string[];
}

/** `capflow step` as the image runs it; with `killAt`, SIGKILLed once the audit log shows that many of its writes. */
export async function runKubeStep(bed: KubeBed, stepId: string, lane: KubeLane, killAt?: number): Promise<KubeRun> {
  const image = await imageRoot();
  const params = Object.entries(lane.params).flatMap(([k, v]) => ['-p', `${k}=${v}`]);
  bed.audit.mark();
  const child = spawn(process.execPath, [image.entry, 'step', stepId, '--repo', lane.repo, '--cluster-dir', lane.clusterPath, '--revision', 'HEAD', ...params], {
    env: { ...process.env, ...image.env, ...podTmpEnv(bed.work), CAPFLOW_SECRETS_DIR: lane.secretsDir, CAPFLOW_SECRET_STORE: 'local', CAPFLOW_HELM: requireTool('helm') },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  const writes: string[] = [];
  let exited = false;
  void done.then(() => (exited = true));
  if (killAt !== undefined) {
    while (!exited) {
      writes.push(...bed.audit.writes());
      if (writes.length >= killAt) {
        child.kill('SIGKILL');
        break;
      }
      await new Promise((r) => setTimeout(r, 3));
    }
  }
  const end = await done;
  // requests still in flight when it died may complete after: give the log a moment
  await new Promise((r) => setTimeout(r, killAt === undefined ? 0 : 200));
  writes.push(...bed.audit.writes());
  return { ...end, stderr, writes };
}

const failure = (r: KubeRun) => `exit ${r.code} signal ${r.signal}: ${r.stderr.slice(-1500)}`;

function rmLane(lane: KubeLane): void {
  rmSync(lane.repo, { recursive: true, force: true });
  rmSync(lane.secretsDir, { recursive: true, force: true });
}

/** One scenario on one API server: the reference, then each selected write killed in turn (cases one after the other). */
export async function runKubeScenario(bed: KubeBed, s: KubeScenario, selection: PointSelection = crashPointSelection()): Promise<ScenarioResult> {
  const started = Date.now();
  const divergences: Divergence[] = [];
  const refLane = await s.prepare(bed, 0);
  let reference: unknown;
  let refWrites: string[];
  try {
    const run = await runKubeStep(bed, s.stepId, refLane);
    if (run.code !== 0) throw new Error(`${s.label}: the uninterrupted run failed: ${failure(run)}`);
    refWrites = run.writes.map((w) => canonical(w, refLane.names) as string);
    reference = await s.snapshot(bed, refLane);
    const again = await runKubeStep(bed, s.stepId, refLane);
    if (again.code !== 0) divergences.push({ point: 'reference', kind: 'rerun-failed', diff: [failure(again)] });
    else if (again.writes.length > 0) divergences.push({ point: 'reference', kind: 'not-idempotent', diff: [`a rerun wrote ${again.writes.join(', ')}`] });
    await s.cleanup?.(bed, refLane);
  } finally {
    rmLane(refLane);
  }
  const points = selectWritePoints(refWrites, s.points ?? selection);
  let n = 0;
  for (const point of points) {
    const lane = await s.prepare(bed, ++n);
    try {
      const killed = await runKubeStep(bed, s.stepId, lane, point.n);
      const finished = point.n === refWrites.length && killed.signal === null && killed.code === 0;
      if (killed.signal !== 'SIGKILL' && !finished) {
        divergences.push({ point, kind: 'not-killed', diff: [failure(killed)] });
        continue;
      }
      const rerun = await runKubeStep(bed, s.stepId, lane);
      if (rerun.code !== 0) {
        divergences.push({ point, kind: 'rerun-failed', diff: [failure(rerun)] });
        continue;
      }
      const diff = jsonDiff(reference, await s.snapshot(bed, lane));
      if (diff.length > 0) divergences.push({ point, kind: 'world', diff });
      const again = await runKubeStep(bed, s.stepId, lane);
      if (again.code !== 0) divergences.push({ point, kind: 'rerun-failed', diff: [`second rerun: ${failure(again)}`] });
      else if (again.writes.length > 0) divergences.push({ point, kind: 'not-idempotent', diff: [`the second rerun wrote ${again.writes.join(', ')}`] });
    } finally {
      await s.cleanup?.(bed, lane);
      rmLane(lane);
    }
  }
  return { label: s.label, step: s.stepId, phase: s.phase, killPoints: points.length, divergences, referenceCalls: refWrites, reference, wallMs: Date.now() - started };
}
