/**
 * The reconciler's rules as pure functions: from what Git holds, what a
 * cluster's record remembers and which Workflows exist, to the record to write
 * and the run to submit. No I/O here (reconciler.ts does it), so every rule is
 * unit-tested without a cluster, a clock or a repository.
 *
 * Two write-ahead rules make submissions crash-safe: a run is written into the
 * record as 'Submitting' before its Workflow is created, and a record found
 * 'Submitting' is completed by submitting the same deterministic name again
 * (which adopts the Workflow if the create got through).
 */
import { FINISHED_PHASES, type ClusterFolder, type ClusterRecord, type PauseEffect, type RunKind, type RunRecord, type SubmitRequest, type WorkflowView } from './types.js';
import { workflowName } from './workflow-client.js';

export interface DecideContext {
  /** The branch head being reconciled. */
  revision: string;
  /** Repository URL for Workflow parameters, without credentials. */
  repo: string;
  /** capflow version: a spec hashed by another version is loaded again. */
  version: string;
  allowDelete: boolean;
  /** 0 = no drift checks. */
  driftIntervalMs: number;
  driftPolicy: 'report' | 'enforce';
  retryBaseMs: number;
  retryMaxMs: number;
  now: Date;
  /** A number in [0, 1) for the backoff jitter (Math.random in the reconciler). */
  random: () => number;
  /**
   * The Git object id at `revision` of every path a record's `inputs` names ('' when absent there);
   * absent when the Git source cannot tell (then inputs are not followed).
   */
  inputIds?: ReadonlyMap<string, string>;
}

/**
 * A spec loaded at the revision: its hash (and, when the Cluster is paused, where:
 * `clusters/dev/cluster.yaml:7 spec.paused`), or the formatted problems that make it invalid; and
 * the paths outside the folder the load read, with their Git object ids there ('' when absent).
 */
export type SpecResult = ({ specHash: string; paused?: string } | { errors: string[] }) & { inputs?: Record<string, string> };

export interface ClusterInput {
  name: string;
  /** The folder in Git; absent when the cluster was removed. */
  folder?: ClusterFolder;
  record?: ClusterRecord;
  /** The spec at ctx.revision; required when needsLoad(folder, record) is true, ignored otherwise. */
  spec?: SpecResult;
  /** Known Workflows of this cluster (the watch cache): an unfinished one blocks a new run. */
  workflows: readonly WorkflowView[];
}

export interface ClusterDecision {
  cluster: string;
  /** The record to write first (carrying the resourceVersion it was read with); absent when unchanged. */
  record?: ClusterRecord;
  /** The run to submit once the record is written. */
  submit?: SubmitRequest;
  /** A failed run waits for its retry until then: the reconciler wakes up for it. */
  wakeAt?: Date;
  /** Pausing or unpausing: made before the record is written (which then says pauseMarker). */
  pause?: PauseEffect;
}

/** Retries jitter by ±10 % so that clusters that failed together do not retry together. */
const BACKOFF_JITTER = 0.1;

const FAILED_PHASES: ReadonlySet<RunRecord['phase']> = new Set(['Failed', 'Error']);

export function isRunFinished(phase: RunRecord['phase']): boolean {
  return phase !== 'Submitting' && FINISHED_PHASES.has(phase);
}

/** Phases a finished run must not overwrite: the current spec is invalid, the folder is gone, or the cluster is paused. */
function isStickyPhase(phase: ClusterRecord['phase']): boolean {
  return phase === 'Invalid' || phase === 'Removed' || phase === 'Paused';
}

/**
 * A run whose step stopped at a safe point because the cluster was paused: the step exits 4
 * (ExitCode.paused), which Argo reports as `exit code 4`, with its STEP_PAUSED message. Not a
 * failure: no backoff, and it runs again (at the spec Git then holds) once the cluster is unpaused.
 */
export function stoppedByPause(view: Pick<WorkflowView, 'message'>): boolean {
  return view.message !== undefined && (/\bexit code 4\b/.test(view.message) || view.message.includes('STEP_PAUSED'));
}

/**
 * Whether the spec must be loaded: the folder's tree, a path outside it that the last load read
 * (a chart folder, the ClusterClass folder), or the capflow version that hashed it, differs from
 * what the record remembers. An unchanged folder keeps its hash, or its validation errors.
 */
export function needsLoad(folder: ClusterFolder, record: ClusterRecord | undefined, version: string, inputIds?: ReadonlyMap<string, string>): boolean {
  if (!record || record.gitTree !== folder.tree || record.hashedBy !== version) return true;
  if (inputIds && record.inputs && inputsChanged(record.inputs, inputIds)) return true;
  return record.specHash === undefined && (record.errors?.length ?? 0) === 0;
}

/** Whether any of the paths changed since they were recorded; a path the map does not know is taken as unchanged. */
export function inputsChanged(recorded: Readonly<Record<string, string>>, now: ReadonlyMap<string, string>): boolean {
  for (const [p, id] of Object.entries(recorded)) {
    const current = now.get(p);
    if (current !== undefined && current !== id) return true;
  }
  return false;
}

/** retryBaseMs·2^(failures−1), capped at retryMaxMs, ±10 %. */
export function backoffMs(failures: number, ctx: Pick<DecideContext, 'retryBaseMs' | 'retryMaxMs' | 'random'>): number {
  const base = Math.min(ctx.retryMaxMs, ctx.retryBaseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (1 + (ctx.random() * 2 - 1) * BACKOFF_JITTER));
}

export function newRecord(cluster: string, path: string): ClusterRecord {
  return { cluster, path, phase: 'Pending', failures: 0, drift: 'Unknown', planCount: 0 };
}

/**
 * Equal records need no write; resourceVersion is the store's, not a difference. Compared field by
 * field (an absent field and one set to undefined are equal): every pass compares every record, and
 * serializing both took ~70 µs a record, 0.7 s a pass at 10,000 clusters.
 */
export function sameRecord(a: ClusterRecord, b: ClusterRecord): boolean {
  return sameValue({ ...a, resourceVersion: undefined }, { ...b, resourceVersion: undefined });
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as unknown[];
    return a.length === other.length && a.every((v, i) => sameValue(v, other[i]));
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  for (const k of Object.keys(x)) if (x[k] !== undefined && !sameValue(x[k], y[k])) return false;
  for (const k of Object.keys(y)) if (y[k] !== undefined && x[k] === undefined) return false;
  return true;
}

// ------------------------------------------------------------------------------------------------
// following runs

/**
 * Applies what is known of the Workflow `name` (the record's run or plan run) to the record: its
 * phase and, once finished, the result. `view` undefined means the Workflow does not exist: a run
 * that was created and then vanished before finishing is failed (and retried); one still
 * 'Submitting' is left for decideCluster to submit. Returns the record itself when nothing changes.
 */
export function observeWorkflow(record: ClusterRecord, name: string, view: WorkflowView | undefined, ctx: Pick<DecideContext, 'now' | 'retryBaseMs' | 'retryMaxMs' | 'random'>): ClusterRecord {
  const slot = record.run?.workflow === name ? 'run' : record.driftRun?.workflow === name ? 'driftRun' : undefined;
  const run = slot && record[slot];
  if (!slot || !run || isRunFinished(run.phase)) return record;
  if (!view) {
    if (run.phase === 'Submitting') return record;
    view = { name, kind: run.kind, cluster: record.cluster, revision: run.revision, specHash: run.specHash, attempt: run.attempt, phase: 'Error', message: 'the Workflow was deleted before it finished' };
  }
  if (view.phase === run.phase) return record;
  const finished = FINISHED_PHASES.has(view.phase);
  const next: RunRecord = { ...run, phase: view.phase };
  if (finished) {
    next.finishedAt = view.finishedAt ?? ctx.now.toISOString();
    if (view.failedStep !== undefined) next.failedStep = view.failedStep;
    if (view.message !== undefined) next.message = view.message;
  }
  const out: ClusterRecord = { ...record, [slot]: next };
  if (slot === 'driftRun') return finished && view.phase === 'Succeeded' ? planResult(out, next, view) : out;
  if (!finished) {
    if (!isStickyPhase(out.phase)) out.phase = 'Running';
    return out;
  }
  if (view.phase !== 'Succeeded') {
    if (out.paused !== undefined || stoppedByPause(view)) return runPaused(out, next);
    return runFailed(out, next, ctx);
  }
  out.failures = 0;
  delete out.nextRetryAt;
  delete out.message;
  if (run.kind === 'delete') {
    out.phase = 'Deleted';
    out.message = `deleted by ${name}`;
    out.drift = 'Unknown';
    delete out.driftChanges;
    return out;
  }
  out.appliedRevision = run.revision;
  out.appliedSpecHash = run.specHash;
  out.appliedAt = next.finishedAt;
  if (!isStickyPhase(out.phase)) out.phase = 'Succeeded';
  // what the last plan found was there before this apply: the next plan tells again
  if (out.drift === 'Drifted') {
    out.drift = 'Unknown';
    delete out.driftChanges;
  }
  return out;
}

function planResult(record: ClusterRecord, run: RunRecord, view: WorkflowView): ClusterRecord {
  const out: ClusterRecord = { ...record, driftCheckedAt: run.finishedAt };
  if (view.changes === undefined) {
    out.drift = 'Unknown';
    delete out.driftChanges;
  } else {
    out.drift = view.changes > 0 ? 'Drifted' : 'InSync';
    out.driftChanges = view.changes;
  }
  return out;
}

function runFailed(record: ClusterRecord, run: RunRecord, ctx: Pick<DecideContext, 'now' | 'retryBaseMs' | 'retryMaxMs' | 'random'>): ClusterRecord {
  const failures = record.failures + 1;
  const nextRetryAt = new Date(ctx.now.getTime() + backoffMs(failures, ctx)).toISOString();
  return {
    ...record,
    phase: isStickyPhase(record.phase) ? record.phase : 'Failed',
    failures,
    nextRetryAt,
    message: `${failureText(run)}; next try after ${nextRetryAt}`,
  };
}

/** A run that ended while the cluster was paused (or whose step stopped for the pause): not counted as a failure. */
function runPaused(record: ClusterRecord, run: RunRecord): ClusterRecord {
  const out: ClusterRecord = { ...record, message: `${run.kind} ${run.workflow} stopped: the cluster was paused; it runs again when unpaused` };
  delete out.nextRetryAt;
  if (out.paused !== undefined) out.phase = 'Paused';
  else if (!isStickyPhase(out.phase)) out.phase = 'Pending';
  return out;
}

function failureText(run: RunRecord): string {
  return `${run.kind} ${run.workflow} ${run.phase === 'Error' ? 'errored' : 'failed'}${run.failedStep ? ` at step ${run.failedStep}` : ''}${run.message ? `: ${run.message}` : ''}`;
}

// ------------------------------------------------------------------------------------------------
// deciding

/** The Workflow a new run of the cluster must wait for, if any. */
export function runInFlight(record: ClusterRecord | undefined, workflows: readonly WorkflowView[]): string | undefined {
  for (const run of [record?.run, record?.driftRun]) if (run && !isRunFinished(run.phase)) return run.workflow;
  return workflows.find((w) => !FINISHED_PHASES.has(w.phase))?.name;
}

/** What to write and submit for one cluster. */
export function decideCluster(input: ClusterInput, ctx: DecideContext): ClusterDecision {
  const { name, folder, record } = input;
  if (!record && !folder) return { cluster: name };
  const base = record ?? newRecord(name, folder!.path);

  // A crash between writing 'Submitting' and the create: submit the same name again (create or adopt).
  for (const run of [base.run, base.driftRun]) {
    if (run?.phase === 'Submitting') return { cluster: name, submit: requestOf(base, run, ctx) };
  }

  const rec: ClusterRecord = { ...base };
  const step = folder ? decidePresent(rec, folder, input, ctx) : decideAbsent(rec, input, ctx);
  const decision: ClusterDecision = { cluster: name };
  if (!record || !sameRecord(record, rec)) decision.record = rec;
  if (step.submit) decision.submit = step.submit;
  if (step.wakeAt) decision.wakeAt = step.wakeAt;
  if (step.pause) decision.pause = step.pause;
  return decision;
}

/** What a rule does besides editing the record in place. */
interface Step {
  submit?: SubmitRequest;
  wakeAt?: Date;
  pause?: PauseEffect;
}

function decidePresent(rec: ClusterRecord, folder: ClusterFolder, input: ClusterInput, ctx: DecideContext): Step {
  rec.path = folder.path;
  if (input.spec && needsLoad(folder, input.record, ctx.version, ctx.inputIds)) {
    rec.gitRevision = ctx.revision;
    rec.gitTree = folder.tree;
    rec.hashedBy = ctx.version;
    if (input.spec.inputs && Object.keys(input.spec.inputs).length > 0) rec.inputs = input.spec.inputs;
    else delete rec.inputs;
    if ('errors' in input.spec) {
      // whether an invalid spec is paused is not known: the last valid spec's pause stays
      delete rec.specHash;
      rec.errors = input.spec.errors;
    } else {
      rec.specHash = input.spec.specHash;
      delete rec.errors;
      if (input.spec.paused === undefined) {
        delete rec.paused;
        delete rec.pausedRevision;
      } else {
        if (rec.paused === undefined) rec.pausedRevision = ctx.revision;
        rec.paused = input.spec.paused;
      }
    }
  }
  if (rec.paused !== undefined) return decidePaused(rec, folder, input);
  const unpause = rec.pauseMarker === 'set' ? unpaused(rec) : undefined;
  const step = decideUnpaused(rec, folder, input, ctx);
  return unpause ? { ...step, pause: unpause } : step;
}

/**
 * A paused cluster (Cluster API: a paused Cluster is not reconciled at all): nothing is submitted,
 * no apply, delete (a DELETE marker is held) or drift plan. The first decision after the pause
 * writes the marker the running steps read and suspends the run in flight.
 */
function decidePaused(rec: ClusterRecord, folder: ClusterFolder | undefined, input: ClusterInput): Step {
  rec.phase = 'Paused';
  const inflight = rec.run && !isRunFinished(rec.run.phase) ? rec.run : undefined;
  const parts = [`paused by ${short(rec.pausedRevision)} at ${rec.paused}: nothing is submitted (no apply, delete or drift plan) until it is unpaused`];
  if (!folder) parts.push('the folder was removed from Git while paused: nothing is deleted; restore it unpaused, then remove it (or add DELETE)');
  else if (folder.deletionMarker) parts.push('the DELETE marker is held until then');
  if ((rec.errors?.length ?? 0) > 0) parts.push(`the spec at ${short(rec.gitRevision)} has errors (the pause is the last valid spec's)`);
  if (inflight) parts.push(`${inflight.workflow} is suspended and its running step stops at its next safe point`);
  else {
    const other = input.workflows.find((w) => !FINISHED_PHASES.has(w.phase));
    if (other) parts.push(`${other.name} is running`);
  }
  rec.message = parts.join('; ');
  if (rec.pauseMarker === 'set') return {};
  rec.pauseMarker = 'set';
  return { pause: { marker: 'set', revision: rec.pausedRevision ?? '', where: rec.paused ?? '', ...(inflight ? { suspend: inflight.workflow } : {}) } };
}

/**
 * The cluster was paused and is no longer: the marker goes; a run still in flight (suspended) is
 * resumed when it applies the spec Git now holds, else stopped (the new spec's apply follows it).
 */
function unpaused(rec: ClusterRecord): PauseEffect {
  delete rec.pauseMarker;
  const effect: PauseEffect = { marker: 'clear' };
  const run = rec.run && !isRunFinished(rec.run.phase) ? rec.run : undefined;
  if (run && run.phase !== 'Submitting') {
    if (run.kind === 'apply' && run.specHash === rec.specHash) effect.resume = run.workflow;
    else effect.stop = run.workflow;
  }
  return effect;
}

function decideUnpaused(rec: ClusterRecord, folder: ClusterFolder, input: ClusterInput, ctx: DecideContext): Step {
  const hash = rec.specHash;
  // deletion removes what was applied, described by the spec at the applied revision (valid there)
  if (folder.deletionMarker && rec.appliedRevision !== undefined) return decideDelete(rec, rec.appliedRevision, rec.appliedSpecHash ?? hash ?? '', input, ctx);
  if (hash === undefined) {
    const count = rec.errors?.length ?? 0;
    rec.phase = 'Invalid';
    rec.message = `the spec at ${short(rec.gitRevision)} has ${count} ${count === 1 ? 'error' : 'errors'}: nothing is submitted until the folder changes`;
    return {};
  }
  if (folder.deletionMarker) return decideDelete(rec, ctx.revision, hash, input, ctx);

  const applied = rec.phase !== 'Deleted' && rec.appliedSpecHash === hash;
  const enforce = applied && ctx.driftPolicy === 'enforce' && rec.drift === 'Drifted';
  if (!applied || enforce) {
    const waiting = runInFlight(rec, input.workflows);
    if (waiting) return waitFor(rec, waiting);
    return submitOrWait(rec, 'apply', ctx.revision, hash, ctx);
  }

  rec.phase = rec.run && !isRunFinished(rec.run.phase) ? 'Running' : 'Succeeded';
  rec.failures = 0;
  delete rec.nextRetryAt;
  delete rec.message;
  if (planDue(rec, input, ctx)) return submitRun(rec, 'plan', rec.appliedRevision!, hash, rec.planCount + 1, ctx);
  return {};
}

function decideAbsent(rec: ClusterRecord, input: ClusterInput, ctx: DecideContext): Step {
  if (rec.phase === 'Deleted') return {};
  // the last spec seen was paused: a paused cluster is not acted on, its deletion included
  if (rec.paused !== undefined) return decidePaused(rec, undefined, input);
  if (!ctx.allowDelete) {
    rec.phase = 'Removed';
    rec.message = `removed from Git; not deleted: add ${rec.path}/DELETE or run with --allow-delete`;
    return {};
  }
  // the last revision where the folder existed: what was applied, else what was last seen
  const revision = rec.appliedRevision ?? rec.gitRevision ?? rec.run?.revision;
  const hash = rec.appliedSpecHash ?? rec.specHash ?? rec.run?.specHash ?? '';
  return decideDelete(rec, revision, hash, input, ctx);
}

function decideDelete(rec: ClusterRecord, revision: string | undefined, hash: string, input: ClusterInput, ctx: DecideContext): Step {
  if (rec.phase === 'Deleted') return {};
  const waiting = runInFlight(rec, input.workflows);
  if (waiting) return waitFor(rec, waiting);
  if (!rec.run || revision === undefined) {
    rec.phase = 'Deleted';
    rec.message = 'nothing was ever submitted for this cluster: nothing to delete';
    return {};
  }
  return submitOrWait(rec, 'delete', revision, hash, ctx);
}

/** Submits a run of `kind`, unless the last one of the same kind and spec failed and its retry is not due. */
function submitOrWait(rec: ClusterRecord, kind: 'apply' | 'delete', revision: string, hash: string, ctx: DecideContext): Step {
  const last = rec.run;
  if (last && last.kind === kind && last.specHash === hash && FAILED_PHASES.has(last.phase) && rec.failures > 0) {
    const due = rec.nextRetryAt ? Date.parse(rec.nextRetryAt) : 0;
    if (ctx.now.getTime() < due) {
      rec.phase = 'Failed';
      rec.message = `${failureText(last)}; next try after ${rec.nextRetryAt}`;
      return { wakeAt: new Date(due) };
    }
    return submitRun(rec, kind, last.revision, hash, last.attempt + 1, ctx);
  }
  // a new spec (or kind) starts over; a second run at the same revision (drift enforced) needs a new name
  rec.failures = 0;
  delete rec.nextRetryAt;
  const attempt = last && last.kind === kind && last.revision === revision ? last.attempt + 1 : 1;
  return submitRun(rec, kind, revision, hash, attempt, ctx);
}

function submitRun(rec: ClusterRecord, kind: RunKind, revision: string, hash: string, attempt: number, ctx: DecideContext): Step {
  const run: RunRecord = { workflow: workflowName(kind, rec.cluster, revision, attempt), kind, revision, specHash: hash, attempt, phase: 'Submitting', submittedAt: ctx.now.toISOString() };
  if (kind === 'plan') {
    rec.driftRun = run;
    rec.planCount = attempt;
  } else {
    rec.run = run;
    rec.phase = 'Running';
    delete rec.message;
  }
  return { submit: requestOf(rec, run, ctx) };
}

function waitFor(rec: ClusterRecord, workflow: string): Step {
  rec.phase = rec.run && !isRunFinished(rec.run.phase) ? 'Running' : 'Pending';
  rec.message = `waiting for ${workflow}`;
  return {};
}

/** A plan is due for an applied cluster when the last check (or attempt, so a failing plan is not re-run at once) is older than the interval. */
function planDue(rec: ClusterRecord, input: ClusterInput, ctx: DecideContext): boolean {
  if (ctx.driftIntervalMs <= 0 || rec.phase !== 'Succeeded' || rec.appliedRevision === undefined) return false;
  if (runInFlight(rec, input.workflows)) return false;
  const last = Math.max(timeOf(rec.driftCheckedAt), timeOf(rec.driftRun?.submittedAt));
  return ctx.now.getTime() - last >= ctx.driftIntervalMs;
}

function timeOf(iso: string | undefined): number {
  const t = iso === undefined ? NaN : Date.parse(iso);
  return Number.isNaN(t) ? -Infinity : t;
}

function requestOf(rec: ClusterRecord, run: RunRecord, ctx: Pick<DecideContext, 'repo'>): SubmitRequest {
  return { kind: run.kind, cluster: rec.cluster, repo: ctx.repo, revision: run.revision, clusterPath: rec.path, specHash: run.specHash, attempt: run.attempt };
}

function short(revision: string | undefined): string {
  return revision ? revision.slice(0, 12) : '(unknown revision)';
}
