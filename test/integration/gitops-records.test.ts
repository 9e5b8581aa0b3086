import { expect } from 'chai';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { isCapflowError } from '../../src/core/errors.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { ConfigMapRecordStore } from '../../src/gitops/records.js';
import type { ClusterRecord, ReconcilerState, RecordEvent } from '../../src/gitops/types.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';
import { startRelay } from '../support/tcp-relay.js';

const NS = 'capflow-system';

/** Every field of ClusterRecord set, including both runs and a multi-line validation error. */
function fullRecord(cluster: string): ClusterRecord {
  return {
    cluster,
    path: `clusters/${cluster}`,
    phase: 'Failed',
    gitRevision: 'a'.repeat(40),
    gitTree: 'b'.repeat(40),
    specHash: 'sha256:' + 'c'.repeat(64),
    hashedBy: '0.1.0',
    inputs: { 'charts/cni': 'f'.repeat(40), 'classes dir/with space': '' },
    appliedRevision: 'd'.repeat(40),
    appliedSpecHash: 'sha256:' + 'e'.repeat(64),
    appliedAt: '2025-01-02T03:04:05.678Z',
    run: {
      workflow: `cluster-apply-${cluster}-aaaaaaaaaa-2`,
      kind: 'apply',
      revision: 'a'.repeat(40),
      specHash: 'sha256:' + 'c'.repeat(64),
      attempt: 2,
      phase: 'Failed',
      submittedAt: '2025-01-02T04:00:00.000Z',
      finishedAt: '2025-01-02T04:10:00.000Z',
      failedStep: 'provision-vpc(1)',
      message: 'exit code 75: throttled',
    },
    failures: 3,
    nextRetryAt: '2025-01-02T05:00:00.000Z',
    errors: ['clusters/dev/cluster.yaml:3:5 Cluster/dev spec.x: unknown field', 'clusters/dev/vars.yaml:1:1 parse error:\n  expected a map\n^'],
    drift: 'Drifted',
    driftCheckedAt: '2025-01-02T06:00:00.000Z',
    driftChanges: 0,
    driftRun: {
      workflow: `cluster-plan-${cluster}-aaaaaaaaaa-7`,
      kind: 'plan',
      revision: 'a'.repeat(40),
      specHash: 'sha256:' + 'c'.repeat(64),
      attempt: 7,
      phase: 'Succeeded',
      submittedAt: '2025-01-02T05:59:00.000Z',
    },
    planCount: 7,
    message: 'retrying after backoff',
  };
}

function minimalRecord(cluster: string): ClusterRecord {
  return { cluster, path: `clusters/${cluster}`, phase: 'Pending', failures: 0, drift: 'Unknown', planCount: 0 };
}

function withoutVersion(r: ClusterRecord | undefined): ClusterRecord {
  expect(r).to.not.equal(undefined);
  const { resourceVersion: _rv, ...rest } = r!;
  return rest;
}

async function waitFor(ok: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`not so within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function expectRejected(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('gitops/records: cluster records as ConfigMaps against a real kube-apiserver (envtest)', function () {
  this.timeout(180_000);
  let env: Envtest;
  let core: CoreV1Api;
  let store: ConfigMapRecordStore;

  before(async () => {
    env = await startEnvtest();
    core = env.makeKubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    store = new ConfigMapRecordStore(env.makeKubeConfig(), NS);
  });
  after(async () => env?.stop());

  it('round-trips a record with every field exactly, in a ConfigMap kubectl can read and select', async () => {
    const record = fullRecord('dev');
    expect(await store.get('dev')).to.equal(undefined);
    const stored = await store.put(record);
    expect(stored.resourceVersion).to.be.a('string').and.not.equal('');
    expect(withoutVersion(stored)).to.deep.equal(record);
    expect(withoutVersion(await store.get('dev'))).to.deep.equal(record);
    expect(withoutVersion((await store.list()).get('dev'))).to.deep.equal(record);

    const cm = await core.readNamespacedConfigMap({ name: 'capflow-cluster-dev', namespace: NS });
    expect(cm.metadata?.labels).to.deep.equal({
      'app.kubernetes.io/managed-by': 'capflow',
      'capflow.io/record': 'cluster',
      'capflow.io/cluster': 'dev',
      'capflow.io/phase': 'Failed',
      'capflow.io/drift': 'Drifted',
    });
    expect(cm.data).to.include({ failures: '3', planCount: '7', driftChanges: '0', 'run.attempt': '2', 'run.kind': 'apply', 'driftRun.phase': 'Succeeded' });
    expect(cm.data?.errors).to.equal('clusters/dev/cluster.yaml:3:5 Cluster/dev spec.x: unknown field\nclusters/dev/vars.yaml:1:1 parse error:\n\t  expected a map\n\t^');
    expect(cm.data?.inputs).to.equal(`${'f'.repeat(40)} charts/cni\n- classes dir/with space`);

    const failed = await core.listNamespacedConfigMap({ namespace: NS, labelSelector: 'capflow.io/phase=Failed' });
    expect(failed.items.map((i) => i.metadata?.name)).to.deep.equal(['capflow-cluster-dev']);
  });

  it('writes absent optional fields as absent keys, and an update removes keys of fields cleared', async () => {
    const stored = await store.put(minimalRecord('bare'));
    const cm = await core.readNamespacedConfigMap({ name: 'capflow-cluster-bare', namespace: NS });
    expect(Object.keys(cm.data ?? {}).sort()).to.deep.equal(['cluster', 'drift', 'failures', 'path', 'phase', 'planCount']);
    expect(withoutVersion(stored)).to.deep.equal(minimalRecord('bare'));

    const full = await store.put({ ...fullRecord('bare'), resourceVersion: stored.resourceVersion });
    const { run: _run, errors: _errors, driftRun: _driftRun, message: _message, ...fewer } = withoutVersion(full);
    const cleared = await store.put({ ...fewer, errors: [], resourceVersion: full.resourceVersion });
    expect(withoutVersion(cleared)).to.deep.equal({ ...fewer, errors: [] });
    const after = await core.readNamespacedConfigMap({ name: 'capflow-cluster-bare', namespace: NS });
    expect(Object.keys(after.data ?? {}).filter((k) => k.startsWith('run.') || k.startsWith('driftRun.') || k === 'message')).to.deep.equal([]);
    expect(after.data?.errors).to.equal('');
  });

  it('refuses a stale resourceVersion, and a create of a record that exists, with RECORD_CONFLICT', async () => {
    const first = await store.put(minimalRecord('staging'));
    const second = await store.put({ ...first, phase: 'Running' });
    expect(second.resourceVersion).to.not.equal(first.resourceVersion);

    const stale = await expectRejected(store.put({ ...first, phase: 'Succeeded' }));
    expect(isCapflowError(stale) && stale.code).to.equal('RECORD_CONFLICT');
    expect(isCapflowError(stale) && stale.kind).to.equal('conflict');

    const { resourceVersion: _rv, ...unread } = first;
    const dup = await expectRejected(store.put(unread));
    expect(isCapflowError(dup) && dup.code).to.equal('RECORD_CONFLICT');
    expect((await store.get('staging'))?.phase).to.equal('Running');
  });

  it('reports a hand-broken record with the key to fix', async () => {
    await core.createNamespacedConfigMap({
      namespace: NS,
      body: {
        metadata: { name: 'capflow-cluster-broken', labels: { 'capflow.io/record': 'cluster' } },
        data: { cluster: 'broken', path: 'clusters/broken', phase: 'Exploded', failures: '0', drift: 'Unknown', planCount: '0' },
      },
    });
    const err = await expectRejected(store.get('broken'));
    expect(isCapflowError(err) && err.code).to.equal('RECORD_INVALID');
    expect((err as Error).message).to.contain('"phase" is "Exploded"');
    await core.deleteNamespacedConfigMap({ name: 'capflow-cluster-broken', namespace: NS });
  });

  it('keeps the reconciler state in its own ConfigMap, with the same conflict check', async () => {
    expect(await store.readState()).to.deep.equal({});
    const written = await store.writeState({ gitRevision: 'f'.repeat(40), lastPassAt: '2025-01-01T00:00:00.000Z', leader: 'pod-a' });
    const read = await store.readState();
    expect(read).to.deep.equal(written);
    expect(read).to.include({ gitRevision: 'f'.repeat(40), lastPassAt: '2025-01-01T00:00:00.000Z', leader: 'pod-a' });
    const next = await store.writeState({ ...read, lastPassAt: '2025-01-01T00:01:00.000Z' });
    expect((await store.readState()).lastPassAt).to.equal('2025-01-01T00:01:00.000Z');

    const stale = await expectRejected(store.writeState({ ...read, leader: 'pod-b' }));
    expect(isCapflowError(stale) && stale.code).to.equal('RECORD_CONFLICT');
    expect((await store.readState()).resourceVersion).to.equal(next.resourceVersion);

    const cm = await core.readNamespacedConfigMap({ name: 'capflow-reconciler-state', namespace: NS });
    expect(cm.metadata?.labels).to.include({ 'capflow.io/record': 'state' });
    expect((await store.list()).has('')).to.equal(false); // the state is not listed as a cluster
  });

  it('keeps a handed-over push (lastPush) in the state, round-tripped exactly; a watch on the state reports its changes', async () => {
    const changes: Array<ReconcilerState['lastPush']> = [];
    const stop = await store.watchState((state) => changes.push(state.lastPush));
    try {
      const before = await store.readState();
      const lastPush = { provider: 'github' as const, after: 'a'.repeat(40), at: '2025-01-01T00:02:00.000Z', by: 'pod-b' };
      const written = await store.writeState({ ...before, lastPush });
      const read = await store.readState();
      expect(read).to.deep.equal(written);
      expect(read.lastPush).to.deep.equal(lastPush);
      expect(read.leader).to.equal(before.leader); // the other keys are kept
      const cm = await core.readNamespacedConfigMap({ name: 'capflow-reconciler-state', namespace: NS });
      expect(cm.data).to.include({ 'lastPush.provider': 'github', 'lastPush.after': 'a'.repeat(40), 'lastPush.at': lastPush.at, 'lastPush.by': 'pod-b' });
      await waitFor(() => changes.some((p) => p?.by === 'pod-b'));
      // a state without lastPush drops its keys
      await store.writeState({ ...read, lastPush: undefined });
      expect((await store.readState()).lastPush).to.equal(undefined);
    } finally {
      await stop();
    }
  });

  it('watch: reports every record, then changes, deletions and a record that does not decode; after its connection is cut it restarts and reports what changed and went meanwhile', async () => {
    const relay = await startRelay(Number(new URL(env.server).port));
    let stop: (() => Promise<void>) | undefined;
    try {
      const kc = new KubeConfig();
      kc.loadFromString(env.kubeconfig.replace(env.server, `https://127.0.0.1:${relay.port}`));
      const log = createMemoryLogger();
      const watched = new ConfigMapRecordStore(kc, NS, { log, watchRestartMs: 300 });
      await store.put(minimalRecord('w-before'));
      const events: RecordEvent[] = [];
      stop = await watched.watch((e) => events.push(e));
      const seen = (cluster: string, type: RecordEvent['type'], ok: (e: RecordEvent) => boolean = () => true): boolean => events.some((e) => e.cluster === cluster && e.type === type && ok(e));
      expect(seen('w-before', 'put')).to.equal(true);

      // another writer (this test's own store, not relayed) puts, changes and deletes
      const a = await store.put(minimalRecord('w-a'));
      await waitFor(() => seen('w-a', 'put', (e) => e.type === 'put' && e.record.resourceVersion === a.resourceVersion));
      const a2 = await store.put({ ...a, phase: 'Running' });
      await waitFor(() => seen('w-a', 'put', (e) => e.type === 'put' && e.record.phase === 'Running' && e.record.resourceVersion === a2.resourceVersion));
      const cm = await core.readNamespacedConfigMap({ name: 'capflow-cluster-w-a', namespace: NS });
      await core.replaceNamespacedConfigMap({ name: 'capflow-cluster-w-a', namespace: NS, body: { ...cm, data: { ...cm.data, phase: 'Sideways' } } });
      await waitFor(() => seen('w-a', 'invalid', (e) => e.type === 'invalid' && /data key "phase" is "Sideways"/.test((e.error as Error).message)));

      relay.cut(true); // the watch drops; reconnecting is refused for a while
      await waitFor(() => log.lines.some((l) => l.message === 'record watch failed; restarting'));
      const b = await store.put(minimalRecord('w-b'));
      await core.deleteNamespacedConfigMap({ name: 'capflow-cluster-w-before', namespace: NS });
      await new Promise((r) => setTimeout(r, 700));
      relay.cut(false);
      await waitFor(() => seen('w-b', 'put', (e) => e.type === 'put' && e.record.resourceVersion === b.resourceVersion) && seen('w-before', 'removed'), 10_000);
    } finally {
      await core.deleteNamespacedConfigMap({ name: 'capflow-cluster-w-a', namespace: NS }).catch(() => undefined); // the record that does not decode
      await stop?.();
      await relay.close();
    }
  });

  it('names the missing RBAC rule when the API answers 403', async () => {
    // the admin impersonates a user no Role grants anything
    const kc = new KubeConfig();
    kc.loadFromString(env.kubeconfig.replace(/(- name: admin\n {2}user:\n)/, '$1    as: capflow-nobody\n'));
    const err = await expectRejected(new ConfigMapRecordStore(kc, NS).list());
    expect(isCapflowError(err) && [err.code, err.kind]).to.deep.equal(['KUBE_FORBIDDEN', 'invalid-input']);
    expect(isCapflowError(err) && err.hint).to.equal('grant the service account a Role rule allowing verb "list" on "configmaps" in namespace "capflow-system"');
    expect((err as Error).message).to.contain('HTTP 403 Forbidden');
  });

  it('reports an API server it cannot reach as transient (retry)', async () => {
    const kc = new KubeConfig();
    kc.loadFromString(env.kubeconfig.replace(env.server, 'https://127.0.0.1:9')); // a closed loopback port
    const err = await expectRejected(new ConfigMapRecordStore(kc, NS).get('dev'));
    expect(isCapflowError(err) && [err.code, err.kind]).to.deep.equal(['KUBE_UNAVAILABLE', 'transient']);
    expect((err as Error).message).to.match(/^reading ConfigMap capflow-system\/capflow-cluster-dev: .*ECONNREFUSED/);
  });

  it('lists 1,000 records (in pages of LIST_PAGE), quickly', async function () {
    const names = Array.from({ length: 1000 }, (_, i) => `bulk-${String(i).padStart(4, '0')}`);
    const queue = [...names];
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        for (let name = queue.shift(); name; name = queue.shift()) await store.put({ ...fullRecord(name), phase: 'Succeeded' });
      }),
    );
    await store.list(); // warm the connection
    const timings: number[] = [];
    let listed = new Map<string, ClusterRecord>();
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      listed = await store.list();
      timings.push(performance.now() - t0);
    }
    for (const name of names) expect(listed.has(name), name).to.equal(true);
    expect(withoutVersion(listed.get('bulk-0500'))).to.deep.equal({ ...fullRecord('bulk-0500'), phase: 'Succeeded' });
    const best = Math.min(...timings);
    console.log(`      list() of ${listed.size} records: ${timings.map((t) => `${t.toFixed(0)} ms`).join(', ')}`);
    expect(best).to.be.below(2000);
  });
});
