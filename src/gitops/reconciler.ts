/**
 * The reconciler: the I/O around decide.ts. A pass syncs Git, reads the
 * records, follows unfinished runs, loads the specs whose folders changed,
 * and writes and submits what decideCluster says, cluster by cluster. Passes
 * never overlap: triggers (poll timer, webhooks, finished Workflows) coalesce
 * into at most one pass waiting behind the running one. Only the leader runs
 * passes; a replica that loses the lease stops its watches and timers and
 * starts nothing new. A push webhook that reaches a replica not leading is
 * handed to the leader through the state object (lastPush), which the leader
 * watches.
 *
 * While leading, the records and the Workflows are kept in caches that their
 * watches keep current, so a pass lists neither. A full pass (becoming
 * leader, each poll, runPass) decides every cluster; the others (webhooks,
 * finished Workflows, retries due) decide only the clusters something
 * happened to: a folder whose tree differs from the last pass's, a record
 * another writer changed or deleted, a Workflow that moved, a retry due, or
 * an error in the last pass. The poll's full pass is the safety net.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { isCapflowError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { SpecLoadPool, type SpecLoader, type SpecLoadPoolOptions, type SpecLoadResult } from './spec-loads.js';
import { repoPath } from './git-source.js';
import { decideCluster, inputsChanged, isRunFinished, needsLoad, observeWorkflow, type ClusterDecision, type DecideContext, type SpecResult } from './decide.js';
import {
  FINISHED_PHASES,
  type ClusterFolder,
  type ClusterPhase,
  type ClusterRecord,
  type GitSnapshot,
  type GitSource,
  type LeaderElector,
  type PauseEffect,
  type PauseMarkers,
  type PushEvent,
  type PushHandover,
  type RecordEvent,
  type ReconcilerMetrics,
  type ReconcilerState,
  type RecordStore,
  type RunKind,
  type SubmitRequest,
  type WorkflowClient,
  type WorkflowView,
} from './types.js';
import { mapLimit } from '../core/concurrency.js';
import { olderVersion } from './kube.js';

export interface ReconcilerOptions {
  repoUrl: string;
  branch: string;
  namespace: string;
  pollIntervalMs: number;
  /** Fraction of the poll interval a poll may come earlier or later (0.1 = ±10 %). */
  pollJitter: number;
  /** 0 = no drift checks. */
  driftIntervalMs: number;
  driftPolicy: 'report' | 'enforce';
  allowDelete: boolean;
  retryBaseMs: number;
  retryMaxMs: number;
  /** This replica (pod name), written to the state object. */
  identity: string;
  /** capflow version: specs hashed by another version are loaded again. */
  version: string;
  /** Clusters worked on at once in a pass (loads, writes, submissions). Default 16. */
  maxConcurrentSubmissions?: number;
  /** The worker threads that load specs (count, time and heap limits), when deps.specs is not given. */
  specLoad?: SpecLoadPoolOptions;
}

export interface ReconcilerDeps {
  git: GitSource;
  records: RecordStore;
  workflows: WorkflowClient;
  /** Without one, this reconciler always leads (a single replica, or --once). */
  leader?: LeaderElector;
  metrics: ReconcilerMetrics;
  log: Logger;
  now?: () => Date;
  /** Loads cluster folders off the event loop; default a SpecLoadPool of its own (ended by stop()). */
  specs?: SpecLoader;
  /** Where pause markers go (the steps' secret store); without it a paused cluster's running step is not told. */
  pauses?: PauseMarkers;
}

export interface PassReport {
  revision: string;
  submitted: Array<{ cluster: string; kind: RunKind; workflow: string; created: boolean }>;
  /** Clusters whose spec is invalid, and folders whose name is not a cluster name. */
  invalid: string[];
  /** Clusters whose folder is gone from Git and that are not (yet) deleted. */
  removed: string[];
  /** Cluster folders whose spec was not loaded: their tree is the one already hashed. */
  unchanged: number;
  /** Cluster folders whose spec was loaded and validated. */
  loaded: number;
  /** Every cluster was decided (else only those something happened to). */
  full: boolean;
  /** Clusters decided. */
  decided: number;
  durationMs: number;
}

/** A conflicting record is read again and decided again, this many times, before the pass gives up on it. */
const CONFLICT_RETRIES = 3;
/** stop() waits this long for the pass in flight. */
const STOP_WAIT_MS = 20_000;
/** Specs loaded at once: loading is CPU-bound, more in parallel only adds memory (about 20 MB each). */
const CONCURRENT_LOADS = 4;
/** A retry wake-up never comes sooner than this after a pass. */
const MIN_WAKE_MS = 100;
/** A handed-over push is read and written again this many times when the state changed in between. */
const HANDOVER_ATTEMPTS = 5;
/** Reasons of coalesced triggers named in a pass's log line; the rest are counted. */
const MAX_REASONS = 8;

/**
 * The repository URL for Workflow parameters: http(s) URLs lose their user info (`user:token@`),
 * other schemes their password only (an ssh user is addressing, not a secret).
 */
export function publicRepoUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#@]*)@/i, (_all, scheme: string, userinfo: string) => {
    if (/^https?:\/\/$/i.test(scheme)) return scheme;
    const user = userinfo.split(':', 1)[0] ?? '';
    return user ? `${scheme}${user}@` : scheme;
  });
}

/** Where a pass's time went, ms; the per-cluster steps summed over the clusters worked on (at once, up to the concurrency). */
interface PassTimings {
  fetch: number;
  list: number;
  watches: number;
  files: number;
  load: number;
  records: number;
  submit: number;
  state: number;
}

interface ClusterOutcome {
  record?: ClusterRecord;
  submitted?: PassReport['submitted'][number];
  loaded: boolean;
  wrote: boolean;
  wakeAt?: Date;
  error?: unknown;
}

export class Reconciler {
  private readonly repo: string;
  private readonly now: () => Date;
  private readonly concurrency: number;
  /** The watch cache: every capflow Workflow by name, while leading. */
  private readonly known = new Map<string, WorkflowView>();
  private stopWatch: (() => Promise<void>) | undefined;
  /** The watch is delivering its initial list: the pass that starts it reads those anyway. */
  private watchStarting = false;
  private leading = false;
  private stopped = false;
  private electionStarted = false;
  /** Passes run one after another on this chain. */
  private queue: Promise<unknown> = Promise.resolve();
  /** A triggered pass is queued and has not started: further triggers join it. */
  private triggered = false;
  /** The queued pass decides every cluster; the reasons of the triggers it carries. */
  private queuedFull = false;
  private queuedReasons: string[] = [];
  /** The record cache, kept current by the record watch while leading (else passes list the records). */
  private readonly records = new Map<string, ClusterRecord>();
  /** Records that do not decode: a pass reads them itself (and reports them). */
  private readonly unreadable = new Set<string>();
  private stopRecordWatch: (() => Promise<void>) | undefined;
  private recordsStarting = false;
  /** Writes of ours in flight by cluster: what the watch reports of these is ours (or raced by ours, which the put settles). */
  private readonly writing = new Map<string, number>();
  /** Clusters the next pass decides even when it is not full (events, errors). */
  private dirty = new Set<string>();
  /** The folders as the last completed pass saw them: the next one decides those that differ. */
  private lastFolders: Map<string, ClusterFolder> | undefined;
  /** inputIds() of the last revision asked. */
  private inputIdCache: { revision: string; ids: Map<string, string> } | undefined;
  /** Retries waiting, by cluster (epoch ms). */
  private readonly retries = new Map<string, number>();
  private pollTimer: NodeJS.Timeout | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private report: PassReport | undefined;
  private passSucceeded = false;
  private lastError: string | undefined;
  private state: ReconcilerState | undefined;
  /** The state watch (handed-over pushes), while leading with an elector. */
  private stopPushWatch: (() => Promise<void>) | undefined;
  private pushWatchStart: Promise<void> | undefined;
  /** The last handed-over push seen in the state, so that each triggers once. */
  private seenPush: string | undefined;
  /** Hand-overs run one after another; a push arriving while one waits replaces it. */
  private handovers: Promise<void> = Promise.resolve();
  private pendingPush: PushEvent | undefined;
  private loggedBadFolders = '';
  /** A first load was made (or started) in this process: the spec thread has compiled what loads use. */
  private warmed = false;
  /** The running pass's timings (passes never overlap). */
  private timing: PassTimings = newTimings();
  private readonly loadSlots = limiter(CONCURRENT_LOADS);
  private readonly specs: SpecLoader;
  /** The pool this reconciler made (not given): stop() ends it. */
  private readonly ownSpecs: SpecLoader | undefined;

  constructor(
    private readonly o: ReconcilerOptions,
    private readonly d: ReconcilerDeps,
  ) {
    this.repo = publicRepoUrl(o.repoUrl);
    if (this.repo !== o.repoUrl) {
      d.log.warn('the repository URL carries credentials: Workflows get it without them (their executors read credentials from their own secret)', { repo: this.repo });
    }
    this.now = d.now ?? (() => new Date());
    this.concurrency = Math.max(1, o.maxConcurrentSubmissions ?? 16);
    this.ownSpecs = d.specs ? undefined : new SpecLoadPool(o.specLoad);
    this.specs = d.specs ?? (this.ownSpecs as SpecLoader);
  }

  /** Campaigns for leadership (if elected) and, while leading, watches, polls and runs passes. */
  async start(): Promise<void> {
    const { leader } = this.d;
    if (!leader) {
      this.lead();
      return;
    }
    leader.onChange((leading) => (leading ? this.lead() : this.unlead()));
    await leader.start();
    this.electionStarted = true;
    if (leader.isLeader()) this.lead();
    else this.d.log.info('waiting for leadership', { identity: this.o.identity });
  }

  /** Stops timers, waits (bounded) for the pass in flight, stops the watch and leaves the lease. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.leading = false;
    this.clearTimers();
    let timeout: NodeJS.Timeout | undefined;
    const waited = await Promise.race([
      Promise.all([this.whenIdle(), this.handovers]).then(() => true),
      new Promise<boolean>((resolve) => {
        timeout = setTimeout(() => resolve(false), STOP_WAIT_MS);
        timeout.unref();
      }),
    ]);
    clearTimeout(timeout);
    if (!waited) this.d.log.warn('stopping while a pass is still running', { waitedMs: STOP_WAIT_MS });
    await this.endWatch();
    await this.endPushWatch();
    await this.d.leader?.stop();
    this.d.metrics.setLeader(false);
    await this.ownSpecs?.close();
  }

  /**
   * Asks for a pass (`full`: one that decides every cluster); triggers while one is queued join it,
   * so a burst yields one more pass, which carries all their reasons.
   */
  trigger(reason: string, full = false): void {
    if (!this.leads()) return;
    if (full) this.queuedFull = true;
    this.queuedReasons.push(reason);
    if (this.triggered) return;
    this.triggered = true;
    void this.enqueue(async () => {
      this.triggered = false;
      const reasons = this.queuedReasons;
      const isFull = this.queuedFull;
      this.queuedReasons = [];
      this.queuedFull = false;
      const more = reasons.length - MAX_REASONS;
      const text = reasons.slice(0, MAX_REASONS).join(', ') + (more > 0 ? ` and ${more} more` : '');
      try {
        await this.pass(text, isFull);
      } catch {
        // pass() logged it and counted it; the next trigger or poll tries again
      }
    });
  }

  /**
   * A verified push webhook for the watched branch: a pass when leading; else it is handed to the
   * leader through the state object, whose watch triggers the leader's pass. A hand-over that cannot
   * be written is logged: the leader's next poll picks the commit up.
   */
  push(event: PushEvent): void {
    if (this.leads()) {
      this.trigger(`webhook ${event.provider}${event.after ? ` ${event.after.slice(0, 12)}` : ''}`);
      this.specs.warm?.(); // a no-op while the thread lives; else it starts while the pass fetches
      return;
    }
    if (this.stopped || !this.d.leader) return;
    const waiting = this.pendingPush !== undefined;
    this.pendingPush = event;
    if (waiting) return;
    this.handovers = this.handovers.then(async () => {
      const next = this.pendingPush;
      this.pendingPush = undefined;
      if (next) await this.handOver(next);
    });
  }

  /** One pass now (after any in flight); undefined when this replica does not lead. Throws when Git or the records cannot be read. */
  runPass(): Promise<PassReport | undefined> {
    return this.enqueue(() => this.pass('requested', true));
  }

  /** Resolves once no pass is running or queued. */
  async whenIdle(): Promise<void> {
    for (;;) {
      const current = this.queue;
      await current;
      if (current === this.queue) return;
    }
  }

  isReady(): { ready: boolean; reason?: string } {
    if (this.passSucceeded) return { ready: true };
    const { leader } = this.d;
    if (leader && this.electionStarted && !leader.isLeader()) return { ready: true, reason: 'standby: another replica leads' };
    if (leader && !this.electionStarted) return { ready: false, reason: 'leader election has not made its first attempt' };
    return { ready: false, reason: this.lastError ? `the first pass failed: ${this.lastError}` : 'the first pass has not completed' };
  }

  lastPass(): PassReport | undefined {
    return this.report;
  }

  // ----------------------------------------------------------------------------------------------
  // leadership and timers

  private leads(): boolean {
    return !this.stopped && (this.d.leader ? this.d.leader.isLeader() : true);
  }

  private lead(): void {
    if (this.leading || this.stopped) return;
    this.leading = true;
    this.d.metrics.setLeader(true);
    this.d.log.info('leading: reconciling', { identity: this.o.identity, repo: this.repo, branch: this.o.branch });
    this.trigger('became leader', true);
    // the spec thread starts now, not with the first changed cluster (its start is most of a first load)
    this.specs.warm?.();
    this.schedulePoll();
    void this.ensurePushWatch();
  }

  private unlead(): void {
    if (!this.leading) return;
    this.leading = false;
    this.d.metrics.setLeader(false);
    this.clearTimers();
    this.d.log.warn('lost leadership: no new passes or submissions', { identity: this.o.identity });
    void this.endWatch();
    void this.endPushWatch();
  }

  private schedulePoll(): void {
    clearTimeout(this.pollTimer);
    const jitter = 1 + (Math.random() * 2 - 1) * this.o.pollJitter;
    this.pollTimer = setTimeout(() => {
      this.trigger('poll', true);
      this.schedulePoll();
    }, Math.max(1, this.o.pollIntervalMs * jitter));
    this.pollTimer.unref();
  }

  /** Wakes up for the earliest retry that falls before the next poll. */
  private scheduleWake(wakeAt: Date | undefined): void {
    clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    if (!wakeAt || !this.leading) return;
    const delay = Math.max(MIN_WAKE_MS, wakeAt.getTime() - this.now().getTime());
    if (delay >= this.o.pollIntervalMs) return;
    this.wakeTimer = setTimeout(() => this.trigger('retry due'), delay);
    this.wakeTimer.unref();
  }

  private clearTimers(): void {
    clearTimeout(this.pollTimer);
    clearTimeout(this.wakeTimer);
    this.pollTimer = undefined;
    this.wakeTimer = undefined;
  }

  /** The watch runs while leading; started from a pass so that it never starts twice. */
  private async ensureWatch(): Promise<void> {
    if (this.stopWatch || !this.leading) return;
    this.watchStarting = true;
    try {
      const stop = await this.d.workflows.watch(
        (view) => this.onWorkflow(view),
        (name) => this.onWorkflowDeleted(name),
      );
      if (this.leading) this.stopWatch = stop;
      else await stop();
    } catch (err) {
      this.d.log.warn('cannot watch Workflows: listing them on every pass instead', { error: errorText(err) });
    } finally {
      this.watchStarting = false;
    }
  }

  private async endWatch(): Promise<void> {
    const stop = this.stopWatch;
    const stopRecords = this.stopRecordWatch;
    this.stopWatch = undefined;
    this.stopRecordWatch = undefined;
    this.known.clear();
    this.records.clear();
    this.unreadable.clear();
    this.dirty.clear();
    this.lastFolders = undefined;
    try {
      await stop?.();
    } catch (err) {
      this.d.log.warn('stopping the Workflow watch failed', { error: errorText(err) });
    }
    try {
      await stopRecords?.();
    } catch (err) {
      this.d.log.warn('stopping the record watch failed', { error: errorText(err) });
    }
  }

  /** The record watch runs while leading, when the store has one; started from a pass. */
  private async ensureRecordWatch(): Promise<void> {
    const { records } = this.d;
    if (this.stopRecordWatch || !this.leading || !records.watch) return;
    this.recordsStarting = true;
    try {
      const stop = await records.watch((event) => this.onRecord(event));
      if (this.leading) this.stopRecordWatch = stop;
      else await stop();
    } catch (err) {
      this.records.clear();
      this.unreadable.clear();
      this.d.log.warn('cannot watch the cluster records: listing them on every pass instead', { error: errorText(err) });
    } finally {
      this.recordsStarting = false;
    }
  }

  /**
   * A record as the watch reports it. Versions older than the cached one are dropped (our own put
   * got there first). A change nobody of ours is writing (another process, kubectl, a 410's new
   * list) marks the cluster for the next pass; so does a deletion (the pass writes it again from Git).
   */
  private onRecord(event: RecordEvent): void {
    const { cluster } = event;
    const cached = this.records.get(cluster);
    const version = event.type === 'put' ? event.record.resourceVersion : event.resourceVersion;
    if (cached && (olderVersion(version, cached.resourceVersion) || (event.type === 'put' && version === cached.resourceVersion))) return;
    if (event.type === 'put') {
      this.records.set(cluster, event.record);
      this.unreadable.delete(cluster);
    } else {
      this.records.delete(cluster);
      if (event.type === 'invalid') this.unreadable.add(cluster);
      else this.unreadable.delete(cluster);
    }
    if (!this.recordsStarting && !this.writing.has(cluster)) this.dirty.add(cluster);
  }

  /** Writes a record, and keeps the cache at the version written (unless the watch brought a newer one). */
  private async putRecord(record: ClusterRecord): Promise<ClusterRecord> {
    const { cluster } = record;
    this.writing.set(cluster, (this.writing.get(cluster) ?? 0) + 1);
    const t = performance.now();
    try {
      const stored = await this.d.records.put(record);
      const cached = this.records.get(cluster);
      if (this.stopRecordWatch && !(cached && olderVersion(stored.resourceVersion, cached.resourceVersion))) this.records.set(cluster, stored);
      return stored;
    } finally {
      this.timing.records += performance.now() - t;
      const n = (this.writing.get(cluster) ?? 1) - 1;
      if (n > 0) this.writing.set(cluster, n);
      else this.writing.delete(cluster);
    }
  }

  // ----------------------------------------------------------------------------------------------
  // pushes handed over between replicas

  /** Writes the push into the state's lastPush (keeping the other keys), again on a conflict. */
  private async handOver(event: PushEvent): Promise<void> {
    if (this.leads()) {
      this.push(event); // became leader meanwhile
      return;
    }
    const push: PushHandover = { provider: event.provider, after: event.after, at: this.now().toISOString(), by: this.o.identity };
    const meta = { provider: event.provider, after: event.after, delivery: event.delivery };
    for (let attempt = 1; ; attempt++) {
      try {
        const state = await this.d.records.readState();
        await this.d.records.writeState({ ...state, lastPush: push });
        this.d.metrics.pushHandover('sent');
        this.d.log.info('not leading: push handed over to the leader', meta);
        return;
      } catch (err) {
        if (isCapflowError(err) && err.code === 'RECORD_CONFLICT' && attempt < HANDOVER_ATTEMPTS) continue;
        this.d.metrics.pushHandover('failed');
        this.d.log.warn('not leading and cannot hand the push over: the leader picks it up at its next poll', { ...meta, error: errorText(err) });
        return;
      }
    }
  }

  /** While leading (with an elector and a store that can watch), watches the state for handed-over pushes. */
  private ensurePushWatch(): Promise<void> {
    if (this.pushWatchStart) return this.pushWatchStart;
    const { records } = this.d;
    if (!this.d.leader || !records.watchState || this.stopPushWatch || !this.leading) return Promise.resolve();
    this.pushWatchStart = (async () => {
      let initial = true;
      try {
        // the push in the state when the watch starts is old news: becoming leader passed anyway
        const stop = await records.watchState!((state) => this.onState(state, initial));
        initial = false;
        if (this.leading) this.stopPushWatch = stop;
        else await stop();
      } catch (err) {
        this.d.log.warn('cannot watch the reconciler state: pushes that other replicas receive wait for the poll', { error: errorText(err) });
      } finally {
        this.pushWatchStart = undefined;
      }
    })();
    return this.pushWatchStart;
  }

  private async endPushWatch(): Promise<void> {
    await this.pushWatchStart;
    const stop = this.stopPushWatch;
    this.stopPushWatch = undefined;
    try {
      await stop?.();
    } catch (err) {
      this.d.log.warn('stopping the reconciler state watch failed', { error: errorText(err) });
    }
  }

  private onState(state: ReconcilerState, initial: boolean): void {
    const push = state.lastPush;
    if (!push) return;
    const key = [push.by, push.at, push.provider, push.after].join('\n');
    if (key === this.seenPush) return;
    this.seenPush = key;
    if (initial || !this.leads()) return;
    this.d.metrics.pushHandover('received');
    this.d.log.info('push handed over by another replica', { by: push.by, provider: push.provider, after: push.after, at: push.at });
    this.trigger(`push handed over by ${push.by}${push.after ? ` ${push.after.slice(0, 12)}` : ''}`);
  }

  /**
   * A run that moves is followed at the next pass; one that finishes may unblock its cluster (or
   * need its result recorded): pass again. A new one still Pending needs no decision: ours is
   * recorded by the submission (its watch event often comes before the create returns), another's
   * blocks its cluster from the cache whenever the cluster is decided.
   */
  private onWorkflow(view: WorkflowView): void {
    const before = this.known.get(view.name);
    this.known.set(view.name, view);
    if (this.watchStarting) return;
    if (before ? before.phase !== view.phase : view.phase !== 'Pending') this.dirty.add(view.cluster);
    if (FINISHED_PHASES.has(view.phase) && !(before && FINISHED_PHASES.has(before.phase))) this.trigger(`${view.name} ${view.phase}`);
  }

  /** A Workflow deleted no longer blocks its cluster; one deleted unfinished fails its run (observeWorkflow). */
  private onWorkflowDeleted(name: string): void {
    const before = this.known.get(name);
    this.known.delete(name);
    if (!before || this.watchStarting) return;
    this.dirty.add(before.cluster);
    if (!FINISHED_PHASES.has(before.phase)) this.trigger(`${name} deleted`);
  }

  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // ----------------------------------------------------------------------------------------------
  // the pass

  private async pass(reason: string, full: boolean): Promise<PassReport | undefined> {
    if (!this.leads()) return undefined;
    const started = performance.now();
    try {
      const report = await this.reconcileAll(reason, full, started);
      this.passSucceeded = true;
      this.lastError = undefined;
      return report;
    } catch (err) {
      this.lastError = errorText(err);
      this.d.metrics.passCompleted('error', (performance.now() - started) / 1000);
      this.d.log.error('reconciliation pass failed', { reason, error: this.lastError });
      throw err;
    }
  }

  private async reconcileAll(reason: string, fullAsked: boolean, started: number): Promise<PassReport> {
    const timing = (this.timing = newTimings());
    const snapshot = await this.d.git.sync();
    timing.fetch = snapshot.timings?.fetchMs ?? 0;
    timing.list = snapshot.timings?.listMs ?? 0;
    let t = performance.now();
    await this.ensureWatch();
    await this.ensureRecordWatch();
    await this.ensurePushWatch();
    timing.watches = Math.round(performance.now() - t);
    const cached = this.stopRecordWatch !== undefined;
    const records = cached ? this.records : await this.d.records.list();
    const known = this.stopWatch ? this.known : new Map((await this.d.workflows.list()).map((w) => [w.name, w]));
    // only with both caches and the last pass's folders can a pass tell what happened since
    const full = fullAsked || !cached || !this.stopWatch || !this.lastFolders;
    const marked = this.dirty;
    this.dirty = new Set();
    const ctx = this.context(snapshot);
    ctx.inputIds = await this.inputIds(snapshot, records);

    let names: string[];
    if (full) {
      names = [...new Set([...snapshot.clusters.keys(), ...records.keys(), ...this.unreadable])].sort();
      this.retries.clear();
    } else {
      const due = ctx.now.getTime();
      const pick = new Set([...marked, ...changedFolders(this.lastFolders!, snapshot.clusters)]);
      // a chart or class outside the folders changed: the clusters whose last load read it
      if (ctx.inputIds) for (const [name, r] of records) if (r.inputs && inputsChanged(r.inputs, ctx.inputIds)) pick.add(name);
      for (const [name, at] of this.retries) if (at <= due) pick.add(name);
      names = [...pick].sort();
    }
    const byCluster = new Map<string, WorkflowView[]>();
    const wanted = full ? undefined : new Set(names);
    for (const w of known.values()) {
      if (wanted && !wanted.has(w.cluster)) continue;
      const list = byCluster.get(w.cluster);
      if (list) list.push(w);
      else byCluster.set(w.cluster, [w]);
    }
    if (snapshot.materialize) {
      // many folders to load (a first pass): written in one go, not one git call pair per folder;
      // each load still asks for its own folder (and waits for this), so a failure here costs only time
      const toLoad = names.flatMap((n) => {
        const folder = snapshot.clusters.get(n);
        return folder && needsLoad(folder, records.get(n), this.o.version, ctx.inputIds) ? [folder.path] : [];
      });
      if (toLoad.length > 1) snapshot.materialize(toLoad).catch(() => undefined);
    }
    const outcomes = await mapLimit(names, this.concurrency, (name) => this.reconcileCluster(name, snapshot, records.get(name), byCluster.get(name) ?? [], known, ctx));

    const report: PassReport = { revision: snapshot.revision, submitted: [], invalid: [], removed: [], unchanged: 0, loaded: 0, full, decided: names.length, durationMs: 0 };
    let wrote = 0;
    let errors = 0;
    names.forEach((name, i) => {
      const outcome = outcomes[i]!;
      if (!cached) {
        const record = outcome.record ?? records.get(name);
        if (record) records.set(name, record);
      }
      if (outcome.loaded) report.loaded++;
      if (outcome.submitted) report.submitted.push(outcome.submitted);
      if (outcome.wrote) wrote++;
      if (outcome.error !== undefined) {
        errors++;
        this.dirty.add(name); // looked at again by the next pass, whatever triggers it
      }
      if (outcome.wakeAt) this.retries.set(name, outcome.wakeAt.getTime());
      else this.retries.delete(name);
    });
    report.unchanged = snapshot.clusters.size - report.loaded;
    for (const [name, record] of records) {
      const inGit = snapshot.clusters.has(name);
      if (inGit && record.phase === 'Invalid') report.invalid.push(name);
      if (!inGit && record.phase !== 'Deleted') report.removed.push(name);
    }
    report.invalid.sort();
    report.removed.sort();
    report.invalid.push(...snapshot.badFolders);
    this.logBadFolders(snapshot.badFolders);
    let wakeAt: number | undefined;
    for (const at of this.retries.values()) if (wakeAt === undefined || at < wakeAt) wakeAt = at;
    this.scheduleWake(wakeAt === undefined ? undefined : new Date(wakeAt));
    this.lastFolders = snapshot.clusters;
    if (report.loaded > 0) this.warmed = true;
    else this.warmLoad(snapshot);
    t = performance.now();
    await this.writeState(snapshot.revision);
    timing.state = Math.round(performance.now() - t);

    report.durationMs = Math.round(performance.now() - started);
    this.report = report;
    this.d.metrics.passCompleted(errors > 0 ? 'error' : 'ok', report.durationMs / 1000);
    this.setClusterMetrics(records);
    const busy = report.submitted.length > 0 || wrote > 0 || errors > 0;
    const summary = {
      reason,
      revision: snapshot.revision,
      full,
      clusters: new Set([...snapshot.clusters.keys(), ...records.keys()]).size,
      decided: names.length,
      submitted: report.submitted.length,
      updated: wrote,
      loaded: report.loaded,
      invalid: report.invalid.length,
      removed: report.removed.length,
      errors,
      durationMs: report.durationMs,
      ms: roundTimings(timing),
    };
    if (busy) this.d.log.info('pass done', summary);
    else this.d.log.debug('pass done: nothing to do', summary);
    return report;
  }

  private context(snapshot: GitSnapshot): DecideContext {
    const { o } = this;
    return {
      revision: snapshot.revision,
      repo: this.repo,
      version: o.version,
      allowDelete: o.allowDelete,
      driftIntervalMs: o.driftIntervalMs,
      driftPolicy: o.driftPolicy,
      retryBaseMs: o.retryBaseMs,
      retryMaxMs: o.retryMaxMs,
      now: this.now(),
      random: Math.random,
    };
  }

  /** Follows, loads, decides, writes and submits for one cluster; a conflicting write is read and decided again. */
  private async reconcileCluster(
    name: string,
    snapshot: GitSnapshot,
    listed: ClusterRecord | undefined,
    workflows: WorkflowView[],
    known: Map<string, WorkflowView>,
    ctx: DecideContext,
  ): Promise<ClusterOutcome> {
    const folder = snapshot.clusters.get(name);
    const outcome: ClusterOutcome = { loaded: false, wrote: false };
    let record = listed;
    for (let attempt = 0; this.leads(); attempt++) {
      try {
        if (record) record = await this.follow(record, known, ctx, outcome);
        let spec: SpecResult | undefined;
        if (folder && needsLoad(folder, record, ctx.version, ctx.inputIds)) {
          spec = await this.loadSlots(() => this.loadSpec(snapshot, folder, record));
          outcome.loaded = true;
        }
        const decision = decideCluster({ name, folder, record, spec, workflows }, ctx);
        if (spec && 'errors' in spec) this.d.log.warn('cluster spec invalid: nothing submitted', { cluster: name, revision: snapshot.revision, errors: spec.errors });
        // before the record that says they are made: a crash in between makes them again
        if (decision.pause) await this.pauseEffects(name, decision.pause, ctx);
        if (decision.record) {
          record = await this.putRecord(decision.record);
          outcome.wrote = true;
        }
        if (decision.wakeAt) outcome.wakeAt = decision.wakeAt;
        if (decision.submit && record && this.leads()) record = await this.submit(record, decision, snapshot, known, ctx, outcome);
        outcome.record = record;
        return outcome;
      } catch (err) {
        if (isCapflowError(err) && err.code === 'RECORD_CONFLICT' && attempt < CONFLICT_RETRIES) {
          this.d.log.debug('cluster record changed since it was read: deciding again', { cluster: name });
          record = await this.d.records.get(name).catch(() => record);
          continue;
        }
        this.d.log.error('reconciling a cluster failed; the next pass tries again', { cluster: name, error: errorText(err) });
        return { ...outcome, record, error: err };
      }
    }
    return { ...outcome, record };
  }

  /** Pausing: the marker the running steps read, and the run in flight suspended; unpausing undoes both (or stops a run of an older spec). */
  private async pauseEffects(cluster: string, p: PauseEffect, ctx: DecideContext): Promise<void> {
    const { pauses, workflows, log } = this.d;
    if (p.marker === 'set') {
      log.info('cluster paused: nothing is submitted for it', { cluster, revision: p.revision, where: p.where, suspend: p.suspend });
      await pauses?.set(cluster, { revision: p.revision ?? '', where: p.where ?? '', at: ctx.now.toISOString() });
      if (p.suspend) await workflows.setSuspended?.(p.suspend, true);
      return;
    }
    log.info('cluster unpaused', { cluster, resume: p.resume, stop: p.stop });
    await pauses?.clear(cluster);
    if (p.resume) await workflows.setSuspended?.(p.resume, false);
    if (p.stop) await workflows.stop?.(p.stop);
  }

  /** Brings the record's unfinished runs up to date with their Workflows (watch cache, else a read). */
  private async follow(record: ClusterRecord, known: Map<string, WorkflowView>, ctx: DecideContext, outcome: ClusterOutcome): Promise<ClusterRecord> {
    let next = record;
    for (const run of [record.run, record.driftRun]) {
      if (!run || isRunFinished(run.phase)) continue;
      const view = known.get(run.workflow) ?? (await this.d.workflows.get(run.workflow));
      next = observeWorkflow(next, run.workflow, view, ctx);
    }
    if (next === record) return record;
    this.logRunResults(record, next);
    const stored = await this.putRecord(next);
    outcome.wrote = true;
    return stored;
  }

  private async submit(
    record: ClusterRecord,
    decision: ClusterDecision,
    snapshot: GitSnapshot,
    known: Map<string, WorkflowView>,
    ctx: DecideContext,
    outcome: ClusterOutcome,
  ): Promise<ClusterRecord> {
    const req = decision.submit as SubmitRequest;
    let result: Awaited<ReturnType<WorkflowClient['submit']>>;
    const t = performance.now();
    try {
      result = await this.d.workflows.submit(req);
    } catch (err) {
      this.d.metrics.submission(req.kind, 'error');
      throw err;
    } finally {
      this.timing.submit += performance.now() - t;
    }
    const { workflow, created } = result;
    this.d.metrics.submission(req.kind, created ? 'created' : 'adopted');
    if (created && req.kind === 'apply' && req.revision === snapshot.revision) {
      this.d.metrics.commitToSubmission(Math.max(0, this.now().getTime() - snapshot.firstSeenAt.getTime()) / 1000);
    }
    if (!known.has(workflow.name)) known.set(workflow.name, workflow);
    outcome.submitted = { cluster: req.cluster, kind: req.kind, workflow: workflow.name, created };
    this.d.log.info(created ? 'submitted' : 'adopted an existing Workflow', {
      cluster: req.cluster,
      kind: req.kind,
      workflow: workflow.name,
      revision: req.revision,
      specHash: req.specHash.slice(0, 12),
      attempt: req.attempt,
    });
    const next = observeWorkflow(record, workflow.name, workflow, ctx);
    if (next === record) return record;
    this.logRunResults(record, next);
    try {
      return await this.putRecord(next);
    } catch (err) {
      // the Workflow exists; the record still says Submitting, which the next pass completes by adopting it
      this.d.log.warn('recording a submitted Workflow failed; the next pass adopts it', { cluster: req.cluster, workflow: workflow.name, error: errorText(err) });
      return record;
    }
  }

  /**
   * Once per process, after a pass that loaded nothing: one folder of the repository loaded and the
   * answer dropped, so that the thread has compiled the loader and the validators of the kinds in use
   * before a change needs them (the first load took 150 ms more than the next, idle; seconds under load).
   */
  private warmLoad(snapshot: GitSnapshot): void {
    const folder = snapshot.clusters.values().next().value;
    if (this.warmed || !folder || !snapshot.materialize) return;
    this.warmed = true;
    void snapshot
      .materialize([folder.path])
      .then((root) => this.specs.load(path.join(root, folder.path), root))
      .catch((err: unknown) => this.d.log.debug('warming the spec thread failed', { error: errorText(err) }));
  }

  /**
   * The Git object id at the snapshot's revision of every path outside a folder that a record's
   * last load read (one git call for them all, once per revision); undefined when the source cannot tell.
   */
  private async inputIds(snapshot: GitSnapshot, records: Map<string, ClusterRecord>): Promise<Map<string, string> | undefined> {
    if (!snapshot.objectIds) return undefined;
    const known = this.inputIdCache?.revision === snapshot.revision ? this.inputIdCache.ids : new Map<string, string>();
    const missing = new Set<string>();
    for (const r of records.values()) for (const p in r.inputs) if (!known.has(p)) missing.add(p);
    if (missing.size > 0) {
      const found = await snapshot.objectIds([...missing]);
      for (const p of missing) known.set(p, found.get(p) ?? '');
    }
    this.inputIdCache = { revision: snapshot.revision, ids: known };
    return known;
  }

  private async loadSpec(snapshot: GitSnapshot, folder: ClusterFolder, record: ClusterRecord | undefined): Promise<SpecResult> {
    const timing = this.timing;
    let result: SpecLoadResult;
    if (snapshot.materialize) {
      // Only the folder's files, from Git's objects: a checkout would refresh every file of the
      // repository (40,000 index entries at 10,000 clusters). Chart folders the spec names are read
      // from the repository root: when the load names some not written yet, they are written and the
      // folder loaded again (what a load read was on disk before it started, so the hash is exact).
      // what the last load read outside the folder is written with it: most loads then need one round
      let need = [folder.path, ...Object.keys(record?.inputs ?? {}).filter((p) => repoPath(p) !== undefined)];
      for (let round = 0; ; round++) {
        let t = performance.now();
        const root = await snapshot.materialize(need);
        timing.files += performance.now() - t;
        t = performance.now();
        result = await this.specs.load(path.join(root, folder.path), root);
        timing.load += performance.now() - t;
        const more = (result.inputs ?? []).flatMap((p) => {
          const rel = repoPath(p);
          return rel !== undefined && !need.some((n) => rel === n || rel.startsWith(`${n}/`)) ? [rel] : [];
        });
        if (more.length === 0 || root === snapshot.workdir || round >= 2) break;
        need = [...need, ...more];
      }
    } else {
      let t = performance.now();
      await snapshot.checkout?.();
      timing.files += performance.now() - t;
      t = performance.now();
      // in a worker thread: parsing and validating never hold up probes, webhooks or the Lease
      result = await this.specs.load(path.join(snapshot.workdir, folder.path), snapshot.workdir);
      timing.load += performance.now() - t;
    }
    const { warnings, inputs, ...spec } = result;
    if (warnings.length > 0) this.d.log.info('cluster spec warnings', { cluster: folder.name, warnings });
    const paths = [...new Set((inputs ?? []).flatMap((p) => repoPath(p) ?? []))].sort();
    if (paths.length === 0 || !snapshot.objectIds) return spec;
    const ids = await snapshot.objectIds(paths);
    return { ...spec, inputs: Object.fromEntries(paths.map((p) => [p, ids.get(p) ?? ''])) };
  }

  private logRunResults(before: ClusterRecord, after: ClusterRecord): void {
    for (const slot of ['run', 'driftRun'] as const) {
      const run = after[slot];
      if (!run || !isRunFinished(run.phase) || before[slot]?.phase === run.phase) continue;
      const meta = { cluster: after.cluster, kind: run.kind, workflow: run.workflow, phase: run.phase };
      if (run.phase !== 'Succeeded') {
        this.d.log.warn('run failed', { ...meta, failedStep: run.failedStep, message: run.message, failures: slot === 'run' ? after.failures : undefined, nextRetryAt: slot === 'run' ? after.nextRetryAt : undefined });
      } else if (run.kind === 'plan' && after.drift === 'Unknown') {
        this.d.log.warn('drift check succeeded but no step reported changes', meta);
      } else if (run.kind === 'plan') {
        this.d.log.info('drift checked', { ...meta, drift: after.drift, changes: after.driftChanges });
      } else {
        this.d.log.info('run succeeded', { ...meta, revision: run.revision });
      }
    }
  }

  private logBadFolders(badFolders: string[]): void {
    const key = badFolders.join('\n');
    if (key === this.loggedBadFolders) return;
    this.loggedBadFolders = key;
    if (badFolders.length > 0) this.d.log.warn('folders that are not cluster names (DNS-1123 labels) are ignored', { folders: badFolders });
  }

  private async writeState(revision: string): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        this.state ??= await this.d.records.readState();
        this.state = await this.d.records.writeState({ ...this.state, gitRevision: revision, lastPassAt: this.now().toISOString(), leader: this.o.identity });
        return;
      } catch (err) {
        this.state = undefined;
        if (!(isCapflowError(err) && err.code === 'RECORD_CONFLICT')) {
          this.d.log.warn('writing the reconciler state failed', { error: errorText(err) });
          return;
        }
      }
    }
  }

  private setClusterMetrics(records: Map<string, ClusterRecord>): void {
    const byPhase: Partial<Record<ClusterPhase, number>> = {};
    let drifted = 0;
    for (const r of records.values()) {
      byPhase[r.phase] = (byPhase[r.phase] ?? 0) + 1;
      if (r.drift === 'Drifted' && r.phase !== 'Deleted') drifted++;
    }
    this.d.metrics.setClusters(byPhase, drifted);
  }
}


function newTimings(): PassTimings {
  return { fetch: 0, list: 0, watches: 0, files: 0, load: 0, records: 0, submit: 0, state: 0 };
}

function roundTimings(t: PassTimings): PassTimings {
  const out = { ...t };
  for (const k of Object.keys(out) as Array<keyof PassTimings>) out[k] = Math.round(out[k]);
  return out;
}

/** Clusters whose folder differs between two listings (tree, deletion marker), or is in only one. */
function changedFolders(before: Map<string, ClusterFolder>, after: Map<string, ClusterFolder>): string[] {
  const out: string[] = [];
  for (const [name, folder] of after) {
    const was = before.get(name);
    if (!was || was.tree !== folder.tree || was.deletionMarker !== folder.deletionMarker) out.push(name);
  }
  for (const name of before.keys()) if (!after.has(name)) out.push(name);
  return out;
}

/** Runs at most `limit` of the functions given to it at once, the others in turn. */
function limiter(limit: number): <T>(work: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async (work) => {
    if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    else active++;
    try {
      return await work();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
