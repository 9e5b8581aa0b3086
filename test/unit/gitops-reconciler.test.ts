// The Reconciler's I/O and scheduling on in-memory fakes of its parts (the real ones are exercised
// end to end in test/integration/gitops-reconciler.test.ts): write-ahead submissions, conflicts,
// coalesced triggers, the watch, leadership. Specs are real folders, loaded by the real loader.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ConflictError, TransientError } from '../../src/core/errors.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { createGitSource } from '../../src/gitops/git-source.js';
import { Reconciler, type ReconcilerOptions } from '../../src/gitops/reconciler.js';
import { loadClusterSpec, specHashWithInputs } from '../../src/spec/index.js';
import { startServer } from '../../src/gitops/server.js';
import type {
  ClusterFolder,
  ClusterRecord,
  GitSnapshot,
  GitSource,
  LeaderElector,
  ReconcilerMetrics,
  ReconcilerState,
  RecordEvent,
  RecordStore,
  SubmitRequest,
  WorkflowClient,
  WorkflowView,
} from '../../src/gitops/types.js';
import { workflowName } from '../../src/gitops/workflow-client.js';
import { minimalAws } from '../fixtures/spec/support.js';
import { CLASS, CLUSTER as TOPOLOGY_CLUSTER } from '../fixtures/spec/topology.js';
import { createGitRemote } from '../support/git-remote.js';
import { githubPush, postWebhook } from '../support/gitops.js';

const REV0 = 'a'.repeat(40);
const REV1 = 'b'.repeat(40);

class FakeGit implements GitSource {
  revision = REV0;
  clusters = new Map<string, ClusterFolder>();
  syncs = 0;
  delayMs = 0;
  constructor(readonly workdir: string) {}
  async sync(): Promise<GitSnapshot> {
    this.syncs++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    return { revision: this.revision, branch: 'main', clusters: new Map(this.clusters), badFolders: [], workdir: this.workdir, firstSeenAt: new Date() };
  }
  async close(): Promise<void> {}
}

class FakeStore implements RecordStore {
  records = new Map<string, ClusterRecord>();
  private version = 0;
  conflictsLeft = 0;
  puts = 0;
  state: ReconcilerState = {};
  async list(): Promise<Map<string, ClusterRecord>> {
    return new Map([...this.records].map(([k, v]) => [k, structuredClone(v)]));
  }
  async get(cluster: string): Promise<ClusterRecord | undefined> {
    const r = this.records.get(cluster);
    return r && structuredClone(r);
  }
  async put(record: ClusterRecord): Promise<ClusterRecord> {
    const current = this.records.get(record.cluster);
    if (this.conflictsLeft > 0) {
      this.conflictsLeft--;
      if (current) this.records.set(record.cluster, { ...current, resourceVersion: String(++this.version) });
      throw new ConflictError('RECORD_CONFLICT', 'changed since read');
    }
    if ((current?.resourceVersion ?? undefined) !== record.resourceVersion) throw new ConflictError('RECORD_CONFLICT', 'stale resourceVersion');
    this.puts++;
    const stored = { ...structuredClone(record), resourceVersion: String(++this.version) };
    this.records.set(record.cluster, stored);
    return structuredClone(stored);
  }
  async readState(): Promise<ReconcilerState> {
    return { ...this.state };
  }
  async writeState(state: ReconcilerState): Promise<ReconcilerState> {
    this.state = { ...state, resourceVersion: String(++this.version) };
    return this.state;
  }
}

/**
 * A store with a watch, whose events the test delivers itself (late, stale, or from another writer):
 * its own puts are not reported, so that the test decides when and in which order they arrive.
 */
class FakeWatchedStore extends FakeStore {
  listener: ((e: RecordEvent) => void) | undefined;
  async watch(onEvent: (e: RecordEvent) => void): Promise<() => Promise<void>> {
    this.listener = onEvent;
    for (const [cluster, record] of this.records) onEvent({ type: 'put', cluster, record: structuredClone(record) });
    return async () => {
      this.listener = undefined;
    };
  }
  /** Another writer changes the record; the watch reports it. */
  async writeAsOther(cluster: string, change: Partial<ClusterRecord>): Promise<void> {
    const current = (await this.get(cluster))!;
    const stored = await this.put({ ...current, ...change });
    this.listener?.({ type: 'put', cluster, record: stored });
  }
}

class FakeWorkflows implements WorkflowClient {
  items = new Map<string, WorkflowView>();
  requests: SubmitRequest[] = [];
  failNextSubmit = false;
  private listener: ((w: WorkflowView) => void) | undefined;
  private deleted: ((name: string) => void) | undefined;
  async submit(req: SubmitRequest): Promise<{ workflow: WorkflowView; created: boolean }> {
    if (this.failNextSubmit) {
      this.failNextSubmit = false;
      throw new TransientError('KUBE_UNAVAILABLE', 'API server away');
    }
    this.requests.push(req);
    const name = workflowName(req.kind, req.cluster, req.revision, req.attempt);
    const existing = this.items.get(name);
    if (existing) return { workflow: existing, created: false };
    const view: WorkflowView = { name, kind: req.kind, cluster: req.cluster, revision: req.revision, specHash: req.specHash, attempt: req.attempt, phase: 'Pending' };
    this.set(view);
    return { workflow: view, created: true };
  }
  async get(name: string): Promise<WorkflowView | undefined> {
    return this.items.get(name);
  }
  async list(): Promise<WorkflowView[]> {
    return [...this.items.values()];
  }
  async watch(onChange: (w: WorkflowView) => void, onDelete?: (name: string) => void): Promise<() => Promise<void>> {
    this.listener = onChange;
    this.deleted = onDelete;
    for (const w of this.items.values()) onChange(w);
    return async () => {
      this.listener = undefined;
      this.deleted = undefined;
    };
  }
  delete(name: string): void {
    this.items.delete(name);
    this.deleted?.(name);
  }
  set(view: WorkflowView): void {
    this.items.set(view.name, view);
    this.listener?.(view);
  }
  finish(name: string, phase: WorkflowView['phase'], extra: Partial<WorkflowView> = {}): void {
    this.set({ ...this.items.get(name)!, phase, finishedAt: new Date().toISOString(), ...extra });
  }
  get watching(): boolean {
    return this.listener !== undefined;
  }
}

class FakeLeader implements LeaderElector {
  leading = false;
  private listeners: Array<(l: boolean) => void> = [];
  async start(): Promise<void> {}
  isLeader(): boolean {
    return this.leading;
  }
  onChange(listener: (l: boolean) => void): void {
    this.listeners.push(listener);
  }
  async stop(): Promise<void> {
    this.set(false);
  }
  set(leading: boolean): void {
    this.leading = leading;
    for (const l of this.listeners) l(leading);
  }
}

function fakeMetrics(): ReconcilerMetrics & { submissions: string[]; passes: string[] } {
  const submissions: string[] = [];
  const passes: string[] = [];
  return {
    submissions,
    passes,
    render: async () => ({ contentType: 'text/plain', body: '' }),
    passCompleted: (result) => void passes.push(result),
    submission: (kind, result) => void submissions.push(`${kind}:${result}`),
    commitToSubmission: () => undefined,
    webhook: () => undefined,
    pushHandover: () => undefined,
    setClusters: () => undefined,
    setLeader: () => undefined,
  };
}

const OPTIONS: ReconcilerOptions = {
  repoUrl: 'https://user:s3cret-token@git.example/gitops.git',
  branch: 'main',
  namespace: 'capflow-test',
  pollIntervalMs: 3_600_000,
  pollJitter: 0,
  driftIntervalMs: 0,
  driftPolicy: 'report',
  allowDelete: false,
  retryBaseMs: 60_000,
  retryMaxMs: 600_000,
  identity: 'test',
  version: 'test',
};

describe('gitops reconciler (on fakes)', function () {
  this.timeout(30_000);
  let workdir = '';
  let git: FakeGit;
  let store: FakeStore;
  let workflows: FakeWorkflows;
  let metrics: ReturnType<typeof fakeMetrics>;
  let log: ReturnType<typeof createMemoryLogger>;
  const running: Reconciler[] = [];

  async function addCluster(name: string, tree: string, files: Record<string, string> = minimalAws()): Promise<void> {
    const dir = path.join(workdir, 'clusters', name);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    for (const [file, text] of Object.entries(files)) await writeFile(path.join(dir, file), text);
    git.clusters.set(name, { name, path: `clusters/${name}`, tree, deletionMarker: false });
  }

  function reconciler(over: Partial<ReconcilerOptions> = {}, leader?: LeaderElector): Reconciler {
    const r = new Reconciler({ ...OPTIONS, ...over }, { git, records: store, workflows, metrics, log, ...(leader ? { leader } : {}) });
    running.push(r);
    return r;
  }

  beforeEach(async () => {
    workdir = await mkdtemp(path.join(os.tmpdir(), 'capflow-reconciler-'));
    git = new FakeGit(workdir);
    store = new FakeStore();
    workflows = new FakeWorkflows();
    metrics = fakeMetrics();
    log = createMemoryLogger();
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((r) => r.stop()));
    await rm(workdir, { recursive: true, force: true });
  });

  it('a first pass submits one apply per cluster, without the URL’s credentials; the next pass loads and submits nothing', async () => {
    await addCluster('c1', 't1');
    await addCluster('c2', 't2');
    const r = reconciler();
    const first = await r.runPass();
    expect(first?.submitted.map((s) => [s.cluster, s.kind, s.created])).to.deep.equal([
      ['c1', 'apply', true],
      ['c2', 'apply', true],
    ]);
    expect(first).to.include({ loaded: 2, unchanged: 0, revision: REV0 });
    expect(workflows.requests.map((q) => q.repo)).to.deep.equal(['https://git.example/gitops.git', 'https://git.example/gitops.git']);
    expect(JSON.stringify(workflows.requests)).to.not.include('s3cret');
    expect(log.lines.filter((l) => l.message.includes('carries credentials'))).to.have.length(1);
    expect(store.records.get('c1')).to.include({ phase: 'Running', gitTree: 't1' });
    expect(store.records.get('c1')?.run).to.include({ phase: 'Pending', attempt: 1, revision: REV0 });
    expect(store.state).to.include({ gitRevision: REV0, leader: 'test' });

    const second = await r.runPass();
    expect(second).to.include({ loaded: 0, unchanged: 2 });
    expect(second?.submitted).to.deep.equal([]);
    expect(r.isReady()).to.deep.equal({ ready: true });
  });

  it('an invalid spec is recorded with file:line problems relative to the repository root and submits nothing', async () => {
    await addCluster('bad', 't1', minimalAws({ 'cluster.yaml': 'apiVersion: cluster.x-k8s.io/v1beta1\nkind: Cluster\nmetadata:\n  name: dev\nspec:\n  paused: "yes please"\n' }));
    const report = await reconciler().runPass();
    expect(report?.invalid).to.deep.equal(['bad']);
    expect(report?.submitted).to.deep.equal([]);
    const rec = store.records.get('bad')!;
    expect(rec.phase).to.equal('Invalid');
    expect(rec.errors?.[0]).to.match(/^clusters\/bad\/cluster\.yaml:\d+:\d+ /);
  });

  it('folders that once crashed the loader (a misspelt reference path, an unresolved alias) are recorded Invalid with their problems, never left without a record', async () => {
    const cluster = minimalAws()['cluster.yaml'] as string;
    await addCluster('typo', 't1', minimalAws({ 'cluster.yaml': cluster.replace('  infrastructureRef:', '  infrastructureRf:') }));
    await addCluster('alias', 't2', minimalAws({ 'cluster.yaml': cluster.replace('    cni: calico', '    cni: *calico') }));
    const report = await reconciler().runPass();
    expect(report?.invalid).to.deep.equal(['alias', 'typo']);
    expect(store.records.get('typo')?.errors?.join('\n')).to.match(/^clusters\/typo\/cluster\.yaml:\d+:\d+ Cluster\/dev spec\.infrastructureRf: unknown field/m);
    expect(store.records.get('alias')?.errors?.[0]).to.match(/^clusters\/alias\/cluster\.yaml:\d+:\d+ YAML: alias \*calico names no anchor/);
  });

  it('a folder carrying its variables in cluster.env is loaded with them and submitted; a credential in it is recorded Invalid at its line', async () => {
    const templated = (minimalAws()['cluster.yaml'] as string).replace(/name: dev\n/g, 'name: ${CLUSTER_NAME}\n');
    await addCluster('vars', 't1', minimalAws({ 'cluster.yaml': templated, 'cluster.env': 'CLUSTER_NAME=dev\n' }));
    await addCluster('leaky', 't2', minimalAws({ 'cluster.yaml': templated, 'cluster.env': 'CLUSTER_NAME=dev\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG\n' }));
    const report = await reconciler().runPass();
    expect(report?.submitted.map((s) => s.cluster)).to.deep.equal(['vars']);
    expect(report?.invalid).to.deep.equal(['leaky']);
    expect(store.records.get('leaky')?.errors?.[0]).to.match(/^clusters\/leaky\/cluster\.env:2:1 AWS_SECRET_ACCESS_KEY looks like a credential name/);
    expect(JSON.stringify(store.records.get('leaky'))).to.not.include('wJalrXUtnFEMI');
  });

  it('a record left Submitting by a crash is completed: adopted when the Workflow exists, created when not; never twice', async () => {
    await addCluster('c1', 't1');
    await addCluster('c2', 't2');
    const r = reconciler();
    await r.runPass();
    // c1: the crash came after the create; c2: before it
    for (const name of ['c1', 'c2']) {
      const rec = store.records.get(name)!;
      store.records.set(name, { ...rec, run: { ...rec.run!, phase: 'Submitting' } });
    }
    workflows.items.delete(store.records.get('c2')!.run!.workflow);
    const before = workflows.requests.length;
    const report = await reconciler().runPass();
    expect(report?.submitted.map((s) => [s.cluster, s.created])).to.deep.equal([['c2', true]]);
    expect(workflows.requests.length - before).to.equal(1);
    expect(store.records.get('c1')?.run?.phase).to.equal('Pending');
    expect(store.records.get('c2')?.run?.phase).to.equal('Pending');
    expect(workflows.items.size).to.equal(2);
  });

  it('a failed create leaves the record Submitting; the next pass submits the same name', async () => {
    await addCluster('c1', 't1');
    const r = reconciler();
    workflows.failNextSubmit = true;
    const failed = await r.runPass();
    expect(failed?.submitted).to.deep.equal([]);
    expect(metrics.submissions).to.deep.equal(['apply:error']);
    expect(metrics.passes).to.deep.equal(['error']);
    const name = store.records.get('c1')!.run!.workflow;
    expect(store.records.get('c1')?.run?.phase).to.equal('Submitting');
    const again = await r.runPass();
    expect(again?.submitted).to.deep.equal([{ cluster: 'c1', kind: 'apply', workflow: name, created: true }]);
  });

  it('a conflicting record write is read again and decided again: one submission', async () => {
    await addCluster('c1', 't1');
    const r = reconciler();
    await r.runPass();
    workflows.finish(store.records.get('c1')!.run!.workflow, 'Succeeded');
    await r.runPass();
    await addCluster('c1', 't2', minimalAws({ 'cluster.yaml': minimalAws()['cluster.yaml']!.replace('region: us-east-1', 'region: eu-west-1') }));
    git.revision = REV1;
    store.conflictsLeft = 1;
    const report = await r.runPass();
    expect(report?.submitted.map((s) => [s.cluster, s.workflow])).to.deep.equal([['c1', workflowName('apply', 'c1', REV1, 1)]]);
    expect(workflows.items.size).to.equal(2);
  });

  it('triggers during a pass coalesce into exactly one more pass', async () => {
    await addCluster('c1', 't1');
    const r = reconciler();
    await r.start();
    await r.whenIdle();
    const syncs = git.syncs;
    git.delayMs = 100;
    r.trigger('webhook 1');
    await new Promise((res) => setTimeout(res, 20));
    for (let i = 0; i < 10; i++) r.trigger(`webhook burst ${i}`);
    await r.whenIdle();
    expect(git.syncs - syncs).to.equal(2);
  });

  it('started, it watches: a finished run is recorded and a waiting change proceeds without a poll', async () => {
    await addCluster('c1', 't1');
    const r = reconciler();
    await r.start();
    await r.whenIdle();
    expect(workflows.watching).to.equal(true);
    const first = store.records.get('c1')!.run!.workflow;

    await addCluster('c1', 't2', minimalAws({ 'cluster.yaml': minimalAws()['cluster.yaml']!.replace('region: us-east-1', 'region: eu-west-1') }));
    git.revision = REV1;
    r.trigger('webhook');
    await r.whenIdle();
    expect(store.records.get('c1')?.message).to.equal(`waiting for ${first}`);
    expect(workflows.items.size).to.equal(1);

    workflows.finish(first, 'Succeeded');
    await r.whenIdle();
    expect(store.records.get('c1')).to.include({ appliedRevision: REV0 });
    expect([...workflows.items.keys()]).to.include(workflowName('apply', 'c1', REV1, 1));
  });

  it('a Workflow deleted before it finished is reported by the watch: a pass at once fails the run, and retries it', async () => {
    await addCluster('c1', 't1');
    const r = reconciler({ retryBaseMs: 1, retryMaxMs: 1 });
    await r.start();
    await r.whenIdle();
    const first = store.records.get('c1')!.run!.workflow;
    workflows.delete(first);
    await r.whenIdle();
    expect(store.records.get('c1')?.run).to.include({ workflow: first, phase: 'Error', message: 'the Workflow was deleted before it finished' });
    await new Promise((res) => setTimeout(res, 200));
    await r.whenIdle();
    expect([...workflows.items.keys()]).to.deep.equal([workflowName('apply', 'c1', REV0, 2)]);
  });

  it('with a watched store, a webhook pass decides only what changed: a stale watch event of our own write is dropped, another writer\'s change is decided', async () => {
    const watched = new FakeWatchedStore();
    store = watched;
    for (const c of ['c1', 'c2', 'c3']) await addCluster(c, `t-${c}`);
    const r = reconciler();
    await r.start();
    await r.whenIdle();
    expect(r.lastPass()).to.include({ full: true, decided: 3 });
    expect(workflows.items.size).to.equal(3);
    for (const name of [...workflows.items.keys()]) workflows.finish(name, 'Succeeded');
    await r.whenIdle();
    expect(r.lastPass()).to.include({ full: false, decided: 3 }); // following the three runs
    const firstC1 = store.records.get('c1')!;
    expect(firstC1.phase).to.equal('Succeeded');

    // the watch reports our own first write of c1 late, after the later ones: it must not roll the cache back
    watched.listener!({ type: 'put', cluster: 'c1', record: { ...firstC1, phase: 'Pending', resourceVersion: '1' } });
    r.trigger('webhook');
    await r.whenIdle();
    expect(r.lastPass()).to.include({ full: false, decided: 0 });
    const puts = store.puts;

    // a folder changes, and another writer marks c3 as applied with another spec
    await addCluster('c2', 't-c2-new', minimalAws({ 'cluster.yaml': minimalAws()['cluster.yaml']!.replace('region: us-east-1', 'region: eu-west-1') }));
    await watched.writeAsOther('c3', { appliedSpecHash: `sha256:${'0'.repeat(64)}` });
    git.revision = REV1;
    r.trigger('webhook');
    await r.whenIdle();
    expect(r.lastPass()).to.include({ full: false, decided: 2, loaded: 1 });
    expect(r.lastPass()?.submitted.map((x) => x.cluster)).to.deep.equal(['c2', 'c3']);
    expect(store.puts).to.be.above(puts);
    expect(store.records.get('c1')?.resourceVersion).to.equal(firstC1.resourceVersion); // untouched

    // the full pass agrees with the cache: nothing to write
    const full = await r.runPass();
    expect(full).to.include({ full: true, decided: 3 });
    expect(full?.submitted).to.deep.equal([]);
    expect(workflows.items.size).to.equal(5);
    expect(store.records.get('c1')?.resourceVersion).to.equal(firstC1.resourceVersion);
  });

  it('a failed run is retried by itself once its backoff is over', async () => {
    await addCluster('c1', 't1');
    const r = reconciler({ retryBaseMs: 300, retryMaxMs: 1_000 });
    await r.start();
    await r.whenIdle();
    const first = store.records.get('c1')!.run!.workflow;
    workflows.finish(first, 'Failed', { failedStep: 'provision-vpc', message: 'no' });
    await r.whenIdle();
    expect(store.records.get('c1')).to.include({ phase: 'Failed', failures: 1 });
    expect(workflows.items.size).to.equal(1);
    await new Promise((res) => setTimeout(res, 600));
    await r.whenIdle();
    expect([...workflows.items.keys()]).to.include(workflowName('apply', 'c1', REV0, 2));
  });

  it('a replica that does not lead runs no pass and is ready once the election made its attempt; leading, it passes', async () => {
    await addCluster('c1', 't1');
    const leader = new FakeLeader();
    const r = reconciler({}, leader);
    expect(r.isReady().ready).to.equal(false);
    await r.start();
    expect(r.isReady().ready).to.equal(true);
    expect(await r.runPass()).to.equal(undefined);
    r.trigger('webhook');
    await r.whenIdle();
    expect(workflows.items.size).to.equal(0);

    leader.set(true);
    await r.whenIdle();
    expect(workflows.items.size).to.equal(1);
    expect(workflows.watching).to.equal(true);
    leader.set(false);
    await r.whenIdle();
    expect(workflows.watching).to.equal(false);
  });

  it('a replica that does not lead hands a push to the leader through the state (lastPush), keeping the other keys, and runs no pass', async () => {
    await addCluster('c1', 't1');
    store.state = { gitRevision: 'r0', leader: 'other', resourceVersion: '0' };
    const leader = new FakeLeader();
    const r = reconciler({ identity: 'standby' }, leader);
    await r.start();
    r.push({ provider: 'gitea', ref: 'refs/heads/main', after: 'b'.repeat(40) });
    await r.whenIdle();
    await r.stop(); // waits for the hand-over in flight
    expect(store.state).to.include({ gitRevision: 'r0', leader: 'other' });
    expect(store.state.lastPush).to.deep.include({ provider: 'gitea', after: 'b'.repeat(40), by: 'standby' });
    expect(metrics.passes).to.deep.equal([]);
    expect(workflows.items.size).to.equal(0);
  });

  // Issue 10 item 5. Loads run in a worker thread: while one folder takes seconds to parse (two
  // 1.9 MB key-dense ConfigMaps, inside the limits) the event loop stays free. Asserted on the loop
  // only (probes and webhooks answered within a second, a timer never a second late: the Lease is
  // renewed on such timers), never on how fast this machine parses.
  it('a huge folder and one over the limits hold up neither /healthz, a webhook nor the timers, while the other clusters are loaded and submitted', async () => {
    const configMap = (name: string, keys: number): string =>
      ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', `  name: ${name}`, 'data:', ...Array.from({ length: keys }, (_, i) => `  key${i}: "value-${i}-${'x'.repeat(30)}"`), ''].join('\n');
    await addCluster('c1', 't1');
    await addCluster('huge', 't2', minimalAws({ 'a.yaml': configMap('a', 36_000), 'b.yaml': configMap('b', 36_000) }));
    await addCluster('hostile', 't3', minimalAws({ 'big.yaml': configMap('big', 50_000) }));
    await addCluster('c2', 't4');
    const r = reconciler();
    const server = await startServer({ host: '127.0.0.1', port: 0, metrics, healthy: () => true, ready: () => r.isReady(), webhookSecrets: { github: 'hook-secret' }, branch: 'main', onPush: (e) => r.push(e), log });
    try {
      const probeMs: number[] = [];
      const hookMs: number[] = [];
      let timerGapMs = 0;
      let last = performance.now();
      const timer = setInterval(() => {
        timerGapMs = Math.max(timerGapMs, performance.now() - last);
        last = performance.now();
      }, 20);
      let passing = true;
      const timed = async (into: number[], call: () => Promise<number>): Promise<void> => {
        const t0 = performance.now();
        expect(await call()).to.be.within(200, 299);
        into.push(performance.now() - t0);
      };
      const probes = (async () => {
        for (let i = 0; passing; i++) {
          await timed(probeMs, async () => (await fetch(`${server.url}/healthz`)).status);
          if (i % 10 === 5) await timed(hookMs, async () => (await postWebhook(`${server.url}/webhooks/github`, githubPush('hook-secret', { after: REV0 }))).status);
          await new Promise((res) => setTimeout(res, 50));
        }
      })();
      const report = await r.runPass();
      passing = false;
      await probes;
      clearInterval(timer);
      await r.whenIdle();

      expect(report?.loaded).to.equal(4);
      expect(report?.submitted.map((x) => x.cluster).sort()).to.deep.equal(['c1', 'c2', 'huge']);
      expect(report?.invalid).to.deep.equal(['hostile']);
      expect(store.records.get('hostile')?.errors?.[0]).to.match(/^clusters\/hostile\/big\.yaml the file is 2\.\d MiB, over the limit of 2 MiB per file; it was not read/);
      expect(probeMs.length, 'probes answered during the pass').to.be.above(5);
      expect(hookMs.length, 'webhooks answered during the pass').to.be.above(0);
      expect(Math.max(...probeMs), '/healthz answer (ms)').to.be.below(1_000);
      expect(Math.max(...hookMs), 'webhook answer (ms)').to.be.below(1_000);
      expect(timerGapMs, 'longest gap between ticks of a 20 ms timer (ms)').to.be.below(1_000);
    } finally {
      await server.close();
    }
  });

  for (const [limit, over, message] of [
    ['time', { timeoutMs: 100 }, /^clusters\/huge: loading the spec took longer than 0\.1 s; refused/],
    ['memory', { maxHeapMb: 32 }, /^clusters\/huge: loading the spec needed more than 32 MB of memory; refused/],
  ] as const) {
    it(`a folder over the load's ${limit} limit is recorded Invalid with what it exceeded (not a crash)`, async () => {
      const configMap = (name: string): string =>
        ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', `  name: ${name}`, 'data:', ...Array.from({ length: 36_000 }, (_, i) => `  key${i}: "value-${i}-${'x'.repeat(30)}"`), ''].join('\n');
      await addCluster('huge', 't1', minimalAws({ 'a.yaml': configMap('a'), 'b.yaml': configMap('b') }));
      const report = await reconciler({ specLoad: over }).runPass();
      expect(report?.invalid).to.deep.equal(['huge']);
      const rec = store.records.get('huge')!;
      expect(rec.phase).to.equal('Invalid');
      expect(rec.errors?.[0]).to.match(message);
    });
  }
});

describe('gitops reconciler with the real Git source (a git remote on disk and the machine\'s git; records and Workflows on fakes)', function () {
  this.timeout(60_000);
  const INVALID = 'apiVersion: cluster.x-k8s.io/v1beta1\nkind: Cluster\nmetadata:\n  name: other\nspec:\n  paused: "yes please"\n';
  const ADDON = 'apiVersion: capflow.io/v1alpha1\nkind: AddonChart\nmetadata:\n  name: cni\nspec:\n  path: charts/cni\n  valuesFiles: [values/cni.yaml]\n';
  const folder = (name: string, files: Record<string, string | null>) => Object.fromEntries(Object.entries(files).map(([f, t]) => [`clusters/${name}/${f}`, t]));
  let scratch = '';
  let remote: Awaited<ReturnType<typeof createGitRemote>>;
  let store: FakeStore;
  let workflows: FakeWorkflows;
  let log: ReturnType<typeof createMemoryLogger>;
  let r: Reconciler;
  let cache = '';

  /** A reconciler on the remote, started (its first pass done). */
  async function started(): Promise<Reconciler> {
    r = new Reconciler(OPTIONS, { git: createGitSource({ url: remote.url, cacheDir: cache }), records: store, workflows, metrics: fakeMetrics(), log });
    await r.start();
    await r.whenIdle();
    return r;
  }
  /** Commits, pushes and sends the push as a verified webhook would; resolves once its pass is done. */
  async function push(files: Record<string, string | null>, message: string): Promise<string> {
    const after = await remote.commitFiles(files, message);
    await remote.push();
    r.push({ provider: 'github', ref: 'refs/heads/main', after });
    await r.whenIdle();
    return after;
  }
  /** The spec hash over a full checkout of the commit (the remote's own work tree). */
  const fullCheckoutHash = async (name: string) => specHashWithInputs(await loadClusterSpec(path.join(remote.workdir, 'clusters', name)), remote.workdir);

  beforeEach(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'capflow-reconciler-git-'));
    cache = path.join(scratch, 'cache');
    remote = await createGitRemote();
    store = new FakeWatchedStore(); // with a watch: webhook passes decide only what changed
    workflows = new FakeWorkflows();
    log = createMemoryLogger();
  });
  afterEach(async () => {
    await r?.stop();
    await remote.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  it('a webhook pass after a commit that deletes a file of one folder and all of another loads exactly that commit: no stale file is read, the folder gone is Removed and not loaded; nothing is checked out', async () => {
    await remote.commitFiles({ ...folder('c1', minimalAws({ 'extra.yaml': INVALID })), ...folder('c2', minimalAws()) }, 'c1 with an invalid file, c2');
    await remote.push();
    await started();
    expect(store.records.get('c1')?.phase).to.equal('Invalid');
    expect(store.records.get('c1')?.errors?.join('\n')).to.match(/^clusters\/c1\/extra\.yaml:\d+:\d+ /m);
    expect(store.records.get('c2')?.phase).to.equal('Running');

    const after = await push({ 'clusters/c1/extra.yaml': null, ...folder('c2', Object.fromEntries(Object.keys(minimalAws()).map((f) => [f, null]))) }, 'c1 fixed, c2 gone');
    const pass = r.lastPass()!;
    expect(pass).to.include({ revision: after, loaded: 1, full: false });
    expect(pass.submitted.map((s) => [s.cluster, s.kind])).to.deep.equal([['c1', 'apply']]);
    expect(pass.removed).to.deep.equal(['c2']);
    expect(store.records.get('c1')).to.include({ phase: 'Running', gitRevision: after, specHash: await fullCheckoutHash('c1') });
    expect(store.records.get('c2')?.phase).to.equal('Removed');
    expect(existsSync(path.join(cache, 'clusters')), 'the work tree was not checked out').to.equal(false);
    const done = log.lines.find((l) => l.message === 'pass done' && (l.meta as { revision?: string }).revision === after);
    expect(Object.keys((done?.meta as { ms?: object }).ms ?? {})).to.deep.equal(['fetch', 'list', 'watches', 'files', 'load', 'records', 'submit', 'state']);
  });

  it('a cluster whose AddonChart names a chart folder elsewhere in the repository is hashed with that commit\'s chart files, as a full checkout gives', async () => {
    const files = { ...minimalAws({ 'addons.yaml': ADDON }), 'values/cni.yaml': 'mtu: 1450\n' };
    await remote.commitFiles(
      { ...folder('c3', files), 'charts/cni/Chart.yaml': 'apiVersion: v2\nname: cni\nversion: 0.1.0\n', 'charts/cni/templates/ds.yaml': 'kind: DaemonSet\n' },
      'c3 with a vendored chart',
    );
    await remote.push();
    await started();
    const first = await fullCheckoutHash('c3');
    expect(store.records.get('c3')).to.include({ phase: 'Running', specHash: first });
    workflows.finish(store.records.get('c3')!.run!.workflow, 'Succeeded');
    await r.whenIdle();

    // the chart changes, and the folder only by a comment: the new hash comes from the chart as committed now
    const after = await push(
      { 'charts/cni/templates/ds.yaml': 'kind: DaemonSet\n# changed\n', 'clusters/c3/addons.yaml': `# the chart moved on\n${ADDON}` },
      'the chart changed',
    );
    const second = await fullCheckoutHash('c3');
    expect(second).to.not.equal(first);
    expect(r.lastPass()).to.include({ revision: after, loaded: 1 });
    expect(store.records.get('c3')).to.include({ gitRevision: after, specHash: second });
    expect(r.lastPass()?.submitted.map((x) => x.cluster)).to.deep.equal(['c3']);
    expect(store.records.get('c3')?.run).to.include({ revision: after, specHash: second });
  });

  it('a commit that changes only a chart folder outside the cluster folders rolls the clusters whose spec reads it, and no other', async () => {
    const files = { ...minimalAws({ 'addons.yaml': ADDON }), 'values/cni.yaml': 'mtu: 1450\n' };
    await remote.commitFiles(
      { ...folder('c4', files), ...folder('c5', minimalAws()), 'charts/cni/Chart.yaml': 'apiVersion: v2\nname: cni\nversion: 0.1.0\n', 'charts/cni/templates/ds.yaml': 'kind: DaemonSet\n' },
      'c4 with a vendored chart, c5 without',
    );
    await remote.push();
    await started();
    const first = store.records.get('c4')!;
    expect(Object.keys(first.inputs ?? {}), 'the record names the chart folder it read').to.deep.equal(['charts/cni']);
    expect(first.inputs!['charts/cni']).to.match(/^[0-9a-f]{40}$/);
    expect(store.records.get('c5')?.inputs).to.equal(undefined);
    for (const c of ['c4', 'c5']) workflows.finish(store.records.get(c)!.run!.workflow, 'Succeeded');
    await r.whenIdle();

    // unrelated to any spec: nothing is loaded
    const readme = await push({ 'README.md': 'how we run clusters\n' }, 'docs');
    expect(r.lastPass()).to.include({ revision: readme, loaded: 0 });
    expect(r.lastPass()?.submitted).to.deep.equal([]);

    // the chart alone changes: c4 is loaded again (the chart written with its folder, as its record names it) and applied
    const after = await push({ 'charts/cni/templates/ds.yaml': 'kind: DaemonSet\n# changed\n' }, 'the chart changed');
    const second = await fullCheckoutHash('c4');
    expect(second).to.not.equal(first.specHash);
    expect(r.lastPass()).to.include({ revision: after, loaded: 1, full: false });
    expect(r.lastPass()?.submitted.map((x) => [x.cluster, x.kind])).to.deep.equal([['c4', 'apply']]);
    expect(store.records.get('c4')).to.include({ gitRevision: after, specHash: second });
    expect(store.records.get('c4')!.inputs!['charts/cni']).to.not.equal(first.inputs!['charts/cni']);
    expect(store.records.get('c5')?.gitRevision).to.not.equal(after);

    workflows.finish(store.records.get('c4')!.run!.workflow, 'Succeeded');
    await r.whenIdle();
    // the chart folder removed: the spec that reads it is loaded again (the missing chart is install-addons' to report)
    const gone = await push({ 'charts/cni/Chart.yaml': null, 'charts/cni/templates/ds.yaml': null }, 'the chart removed');
    expect(r.lastPass()).to.include({ revision: gone, loaded: 1 });
    expect(store.records.get('c4')).to.include({ gitRevision: gone });
    expect(store.records.get('c4')!.specHash).to.not.be.oneOf([first.specHash, second]);
    expect(store.records.get('c4')!.inputs).to.deep.equal({ 'charts/cni': '' });
    const back = await push({ 'charts/cni/Chart.yaml': 'apiVersion: v2\nname: cni\nversion: 0.1.0\n', 'charts/cni/templates/ds.yaml': 'kind: DaemonSet\n' }, 'the chart back');
    expect(r.lastPass()).to.include({ revision: back, loaded: 1 });
    expect(store.records.get('c4')).to.include({ gitRevision: back, specHash: first.specHash });
  });

  it('a ClusterClass under classes/ is read on the first load; a change to it rolls the clusters whose expansion it changes, as a spec change, and a comment in it rolls none', async () => {
    const topo = (name: string) => TOPOLOGY_CLUSTER.replace('name: dev', `name: ${name}`);
    await remote.commitFiles({ 'clusters/t1/cluster.yaml': topo('t1'), 'clusters/t2/cluster.yaml': topo('t2'), ...folder('plain', minimalAws()), 'classes/tiny.yaml': CLASS }, 'two clusters of class tiny');
    await remote.push();
    await started();
    for (const c of ['t1', 't2']) {
      const rec = store.records.get(c)!;
      expect(rec.phase, rec.errors?.join('\n')).to.equal('Running');
      expect(Object.keys(rec.inputs ?? {})).to.deep.equal(['classes']);
      expect(rec.specHash).to.equal(await fullCheckoutHash(c));
      workflows.finish(rec.run!.workflow, 'Succeeded');
    }
    workflows.finish(store.records.get('plain')!.run!.workflow, 'Succeeded');
    await r.whenIdle();
    const before = store.records.get('t1')!.specHash;

    const comment = await push({ 'classes/tiny.yaml': `# owned by the platform team\n${CLASS}` }, 'a comment in the class');
    expect(r.lastPass()).to.include({ revision: comment, loaded: 2 });
    expect(r.lastPass()?.submitted).to.deep.equal([]);
    expect(store.records.get('t1')).to.include({ gitRevision: comment, specHash: before });

    const bigger = await push({ 'classes/tiny.yaml': CLASS.replace('default: t3.medium', 'default: t3.small').replace('instanceType: t3.large', 'instanceType: m5.large') }, 'control planes on m5.large');
    expect(r.lastPass()).to.include({ revision: bigger, loaded: 2 });
    expect(r.lastPass()?.submitted.map((x) => [x.cluster, x.kind]).sort()).to.deep.equal([['t1', 'apply'], ['t2', 'apply']]);
    expect(store.records.get('t1')!.specHash).to.equal(await fullCheckoutHash('t1')).and.not.equal(before);
    expect(store.records.get('plain')?.gitRevision, 'a cluster without a topology is not loaded').to.not.equal(bigger);

    const broken = await push({ 'classes/tiny.yaml': null }, 'the class removed');
    expect(store.records.get('t2')).to.include({ gitRevision: broken });
    expect(store.records.get('t2')!.errors?.join('\n')).to.match(/^clusters\/t2\/cluster\.yaml:\d+:\d+ Cluster\/t2 spec\.topology\.class: ClusterClass "tiny" is not defined/m);
  });
});
