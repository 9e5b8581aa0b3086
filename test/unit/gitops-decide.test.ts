import { expect } from 'chai';
import { backoffMs, decideCluster, needsLoad, newRecord, observeWorkflow, runInFlight, type ClusterInput, type DecideContext } from '../../src/gitops/decide.js';
import type { ClusterFolder, ClusterRecord, RunRecord, WorkflowView } from '../../src/gitops/types.js';
import { workflowName } from '../../src/gitops/workflow-client.js';

const REV0 = 'a'.repeat(40);
const REV1 = 'b'.repeat(40);
const REV2 = 'c'.repeat(40);
const HASH0 = '0'.repeat(64);
const HASH1 = '1'.repeat(64);
const NOW = new Date('2025-01-01T12:00:00.000Z');
const MIN = 60_000;

function ctx(over: Partial<DecideContext> = {}): DecideContext {
  return {
    revision: REV1,
    repo: 'https://git.example/gitops.git',
    version: '1.0.0',
    allowDelete: false,
    driftIntervalMs: 0,
    driftPolicy: 'report',
    retryBaseMs: MIN,
    retryMaxMs: 60 * MIN,
    now: NOW,
    random: () => 0.5,
    ...over,
  };
}

function folder(over: Partial<ClusterFolder> = {}): ClusterFolder {
  return { name: 'dev', path: 'clusters/dev', tree: 'tree1', deletionMarker: false, ...over };
}

function run(over: Partial<RunRecord> = {}): RunRecord {
  const kind = over.kind ?? 'apply';
  const revision = over.revision ?? REV0;
  const attempt = over.attempt ?? 1;
  return { workflow: workflowName(kind, 'dev', revision, attempt), kind, revision, specHash: HASH0, attempt, phase: 'Succeeded', submittedAt: '2025-01-01T11:00:00.000Z', finishedAt: '2025-01-01T11:10:00.000Z', ...over };
}

/** dev, applied at REV0 with HASH0, its folder then at tree0. */
function applied(over: Partial<ClusterRecord> = {}): ClusterRecord {
  return {
    ...newRecord('dev', 'clusters/dev'),
    phase: 'Succeeded',
    gitRevision: REV0,
    gitTree: 'tree0',
    specHash: HASH0,
    hashedBy: '1.0.0',
    appliedRevision: REV0,
    appliedSpecHash: HASH0,
    appliedAt: '2025-01-01T11:10:00.000Z',
    run: run(),
    resourceVersion: '42',
    ...over,
  };
}

function view(over: Partial<WorkflowView> & Pick<WorkflowView, 'name'>): WorkflowView {
  return { kind: 'apply', cluster: 'dev', revision: REV0, specHash: HASH0, attempt: 1, phase: 'Running', ...over };
}

function decide(input: Partial<ClusterInput>, c: DecideContext = ctx()) {
  return decideCluster({ name: 'dev', workflows: [], ...input }, c);
}

describe('gitops decide', () => {
  describe('needsLoad', () => {
    it('loads a folder without a record, with another tree or hashed by another version', () => {
      expect(needsLoad(folder(), undefined, '1.0.0')).to.equal(true);
      expect(needsLoad(folder({ tree: 'tree0' }), applied(), '1.0.0')).to.equal(false);
      expect(needsLoad(folder({ tree: 'tree1' }), applied(), '1.0.0')).to.equal(true);
      expect(needsLoad(folder({ tree: 'tree0' }), applied(), '2.0.0')).to.equal(true);
    });

    it('does not load an unchanged invalid folder again, and loads one whose record has neither hash nor errors', () => {
      const invalid = applied({ specHash: undefined, errors: ['clusters/dev/cluster.yaml:3:1 bad'], phase: 'Invalid' });
      expect(needsLoad(folder({ tree: 'tree0' }), invalid, '1.0.0')).to.equal(false);
      expect(needsLoad(folder({ tree: 'tree0' }), { ...invalid, errors: [] }, '1.0.0')).to.equal(true);
    });
  });

  describe('new, changed and unchanged specs', () => {
    it('a new cluster: the record is written with the run Submitting, then cluster-apply attempt 1 at the head', () => {
      const d = decide({ folder: folder(), spec: { specHash: HASH1 } });
      expect(d.submit).to.deep.equal({ kind: 'apply', cluster: 'dev', repo: 'https://git.example/gitops.git', revision: REV1, clusterPath: 'clusters/dev', specHash: HASH1, attempt: 1 });
      expect(d.record).to.include({ cluster: 'dev', path: 'clusters/dev', phase: 'Running', gitRevision: REV1, gitTree: 'tree1', specHash: HASH1, hashedBy: '1.0.0', failures: 0, drift: 'Unknown' });
      expect(d.record?.run).to.deep.equal({ workflow: workflowName('apply', 'dev', REV1, 1), kind: 'apply', revision: REV1, specHash: HASH1, attempt: 1, phase: 'Submitting', submittedAt: NOW.toISOString() });
    });

    it('an unchanged folder of an applied cluster: no write, no submission', () => {
      const d = decide({ folder: folder({ tree: 'tree0' }), record: applied() });
      expect(d).to.deep.equal({ cluster: 'dev' });
    });

    it('a comment-only change (new tree, same hash): only gitTree and gitRevision are written', () => {
      const record = applied();
      const d = decide({ folder: folder(), record, spec: { specHash: HASH0 } });
      expect(d.submit).to.equal(undefined);
      expect(d.record).to.deep.equal({ ...record, gitTree: 'tree1', gitRevision: REV1 });
    });

    it('a changed spec: cluster-apply attempt 1 at the head, keeping the resourceVersion for the write', () => {
      const d = decide({ folder: folder(), record: applied(), spec: { specHash: HASH1 } });
      expect(d.submit).to.include({ kind: 'apply', revision: REV1, specHash: HASH1, attempt: 1 });
      expect(d.record).to.include({ phase: 'Running', specHash: HASH1, appliedSpecHash: HASH0, resourceVersion: '42' });
    });

    it('a spec hashed by another capflow version is taken from the load, and applied again only if the hash differs', () => {
      const same = decide({ folder: folder({ tree: 'tree0' }), record: applied({ hashedBy: '0.9.0' }), spec: { specHash: HASH0 } });
      expect(same.submit).to.equal(undefined);
      expect(same.record).to.include({ hashedBy: '1.0.0' });
    });

    it('a spec passed although no load was needed is ignored', () => {
      expect(decide({ folder: folder({ tree: 'tree0' }), record: applied(), spec: { specHash: HASH1 } })).to.deep.equal({ cluster: 'dev' });
    });
  });

  describe('invalid specs', () => {
    const errors = ['clusters/dev/cluster.yaml:14:7 Cluster/dev spec.paused: must be boolean'];

    it('are recorded Invalid with their errors and submit nothing', () => {
      const d = decide({ folder: folder(), record: applied(), spec: { errors } });
      expect(d.submit).to.equal(undefined);
      expect(d.record).to.include({ phase: 'Invalid', gitTree: 'tree1', gitRevision: REV1 });
      expect(d.record?.errors).to.deep.equal(errors);
      expect(d.record?.specHash).to.equal(undefined);
      expect(d.record?.message).to.match(/1 error/);
    });

    it('stay as they are until the folder changes (nothing loaded, nothing written)', () => {
      const first = decide({ folder: folder(), record: applied(), spec: { errors } }).record!;
      expect(decide({ folder: folder(), record: first })).to.deep.equal({ cluster: 'dev' });
    });

    it('become valid again when the folder is fixed: applied if the hash differs', () => {
      const invalid = decide({ folder: folder(), record: applied(), spec: { errors } }).record!;
      const d = decide({ folder: folder({ tree: 'tree2' }), record: invalid, spec: { specHash: HASH1 } }, ctx({ revision: REV2 }));
      expect(d.submit).to.include({ kind: 'apply', revision: REV2, specHash: HASH1 });
      expect(d.record?.errors).to.equal(undefined);
    });

    it('a fix back to the applied spec makes the cluster Succeeded again without a run', () => {
      const invalid = decide({ folder: folder(), record: applied(), spec: { errors } }).record!;
      const d = decide({ folder: folder({ tree: 'tree2' }), record: invalid, spec: { specHash: HASH0 } });
      expect(d.submit).to.equal(undefined);
      expect(d.record).to.include({ phase: 'Succeeded', specHash: HASH0 });
      expect(d.record?.message).to.equal(undefined);
    });
  });

  describe('one run at a time', () => {
    it('a changed spec waits for the cluster’s run in flight, saying which', () => {
      const record = applied({ run: run({ phase: 'Running' }), phase: 'Running' });
      const d = decide({ folder: folder(), record, spec: { specHash: HASH1 } });
      expect(d.submit).to.equal(undefined);
      expect(d.record).to.include({ phase: 'Running', message: `waiting for ${record.run!.workflow}`, specHash: HASH1 });
    });

    it('waits for an unfinished Workflow of the cluster that the record does not know (the watch cache)', () => {
      const stray = view({ name: 'cluster-apply-dev-manual-1', phase: 'Pending' });
      const d = decide({ folder: folder(), record: applied(), spec: { specHash: HASH1 }, workflows: [stray] });
      expect(d.submit).to.equal(undefined);
      expect(d.record).to.include({ phase: 'Pending', message: 'waiting for cluster-apply-dev-manual-1' });
    });

    it('waits for a plan in flight', () => {
      const plan = run({ kind: 'plan', phase: 'Running', attempt: 1 });
      const d = decide({ folder: folder(), record: applied({ driftRun: plan, planCount: 1 }), spec: { specHash: HASH1 } });
      expect(d.submit).to.equal(undefined);
      expect(d.record?.message).to.equal(`waiting for ${plan.workflow}`);
    });

    it('runInFlight ignores finished runs and Workflows', () => {
      expect(runInFlight(applied(), [view({ name: 'x', phase: 'Failed' })])).to.equal(undefined);
      expect(runInFlight(applied({ run: run({ phase: 'Submitting' }) }), [])).to.equal(run().workflow);
    });
  });

  describe('crash safety', () => {
    it('a record left Submitting is completed by submitting the same run again, before anything else', () => {
      const pending = run({ revision: REV1, specHash: HASH1, phase: 'Submitting' });
      const d = decide({ folder: folder({ tree: 'tree9' }), record: applied({ run: pending, phase: 'Running' }), spec: { specHash: 'f'.repeat(64) } });
      expect(d.record).to.equal(undefined);
      expect(d.submit).to.deep.equal({ kind: 'apply', cluster: 'dev', repo: 'https://git.example/gitops.git', revision: REV1, clusterPath: 'clusters/dev', specHash: HASH1, attempt: 1 });
    });

    it('a plan left Submitting is submitted again too', () => {
      const plan = run({ kind: 'plan', phase: 'Submitting', attempt: 3 });
      expect(decide({ folder: folder({ tree: 'tree0' }), record: applied({ driftRun: plan, planCount: 3 }) }).submit).to.include({ kind: 'plan', attempt: 3, revision: REV0 });
    });
  });

  describe('failures and retries', () => {
    const failedRun = run({ revision: REV1, specHash: HASH1, phase: 'Failed', failedStep: 'provision-vpc', message: 'VpcLimitExceeded' });
    const failed = applied({ phase: 'Failed', gitRevision: REV1, gitTree: 'tree1', specHash: HASH1, run: failedRun, failures: 2, nextRetryAt: '2025-01-01T12:05:00.000Z' });

    it('waits until nextRetryAt, saying why, and asks to be woken then', () => {
      const d = decide({ folder: folder(), record: failed });
      expect(d.submit).to.equal(undefined);
      expect(d.wakeAt?.toISOString()).to.equal('2025-01-01T12:05:00.000Z');
      expect(d.record?.message ?? failed.message).to.match(/provision-vpc/);
    });

    it('retries at the failed run’s revision as attempt + 1 once due, even when the head moved on', () => {
      const d = decide({ folder: folder(), record: failed }, ctx({ now: new Date('2025-01-01T12:05:00.000Z'), revision: REV2 }));
      expect(d.submit).to.include({ kind: 'apply', revision: REV1, specHash: HASH1, attempt: 2 });
      expect(d.record).to.include({ phase: 'Running', failures: 2 });
      expect(d.record?.run?.workflow).to.equal(workflowName('apply', 'dev', REV1, 2));
    });

    it('a new spec hash starts over: attempt 1 at the new revision, failures reset', () => {
      const d = decide({ folder: folder({ tree: 'tree2' }), record: failed, spec: { specHash: 'f'.repeat(64) } }, ctx({ revision: REV2 }));
      expect(d.submit).to.include({ revision: REV2, attempt: 1 });
      expect(d.record).to.include({ failures: 0 });
      expect(d.record?.nextRetryAt).to.equal(undefined);
    });

    it('backoff doubles per failure, is capped, and jitters by at most 10 %', () => {
      const exact = { retryBaseMs: MIN, retryMaxMs: 10 * MIN, random: () => 0.5 };
      expect([1, 2, 3, 4, 5].map((n) => backoffMs(n, exact))).to.deep.equal([MIN, 2 * MIN, 4 * MIN, 8 * MIN, 10 * MIN]);
      expect(backoffMs(1, { ...exact, random: () => 0 })).to.equal(0.9 * MIN);
      expect(backoffMs(1, { ...exact, random: () => 0.999999 })).to.be.within(MIN, 1.1 * MIN);
    });
  });

  describe('removed clusters and deletion', () => {
    it('without --allow-delete a removed folder is reported Removed and nothing is submitted', () => {
      const d = decide({ record: applied() });
      expect(d.submit).to.equal(undefined);
      expect(d.record).to.include({ phase: 'Removed', message: 'removed from Git; not deleted: add clusters/dev/DELETE or run with --allow-delete' });
      expect(decide({ record: d.record })).to.deep.equal({ cluster: 'dev' });
    });

    it('with --allow-delete: cluster-delete at the last applied revision, with the old path', () => {
      const d = decide({ record: applied({ path: 'clusters/old-place' }) }, ctx({ allowDelete: true, revision: REV2 }));
      expect(d.submit).to.deep.equal({ kind: 'delete', cluster: 'dev', repo: 'https://git.example/gitops.git', revision: REV0, clusterPath: 'clusters/old-place', specHash: HASH0, attempt: 1 });
      expect(d.record).to.include({ phase: 'Running' });
    });

    it('with --allow-delete and nothing applied yet: at the revision last seen', () => {
      const record = applied({ appliedRevision: undefined, appliedSpecHash: undefined, gitRevision: REV1, specHash: HASH1, run: run({ revision: REV1, specHash: HASH1, phase: 'Failed' }), phase: 'Failed', failures: 1 });
      expect(decide({ record }, ctx({ allowDelete: true })).submit).to.include({ kind: 'delete', revision: REV1, specHash: HASH1 });
    });

    it('a cluster never submitted is Deleted without a run', () => {
      const record = { ...newRecord('dev', 'clusters/dev'), phase: 'Invalid' as const, gitRevision: REV0, errors: ['x'] };
      const d = decide({ record }, ctx({ allowDelete: true }));
      expect(d.submit).to.equal(undefined);
      expect(d.record).to.include({ phase: 'Deleted' });
    });

    it('a folder with the DELETE marker: cluster-delete at the last applied revision; waits for a run in flight first', () => {
      const marked = folder({ deletionMarker: true });
      expect(decide({ folder: marked, record: applied(), spec: { specHash: HASH1 } }).submit).to.include({ kind: 'delete', revision: REV0, clusterPath: 'clusters/dev', specHash: HASH0, attempt: 1 });
      const busy = applied({ run: run({ phase: 'Running' }), phase: 'Running' });
      expect(decide({ folder: marked, record: busy, spec: { specHash: HASH0 } }).submit).to.equal(undefined);
    });

    it('a marked folder never applied: cluster-delete at the head when an apply was tried, else Deleted without a run', () => {
      const tried = applied({ appliedRevision: undefined, appliedSpecHash: undefined, run: run({ revision: REV0, phase: 'Failed' }), phase: 'Failed', failures: 1 });
      expect(decide({ folder: folder({ deletionMarker: true }), record: tried, spec: { specHash: HASH0 } }).submit).to.include({ kind: 'delete', revision: REV1, specHash: HASH0 });
      const d = decide({ folder: folder({ deletionMarker: true }), spec: { specHash: HASH0 } });
      expect(d.submit).to.equal(undefined);
      expect(d.record).to.include({ phase: 'Deleted' });
    });

    it('a marked folder whose spec is now invalid is still deleted at the applied revision; never applied, it is Invalid', () => {
      expect(decide({ folder: folder({ deletionMarker: true }), record: applied(), spec: { errors: ['e'] } }).submit).to.include({ kind: 'delete', revision: REV0, specHash: HASH0 });
      const d = decide({ folder: folder({ deletionMarker: true }), spec: { errors: ['e'] } });
      expect(d.submit).to.equal(undefined);
      expect(d.record).to.include({ phase: 'Invalid' });
    });

    it('a Deleted cluster stays so; re-added without the marker it is applied as new', () => {
      const deleted = applied({ phase: 'Deleted', run: run({ kind: 'delete', revision: REV1 }) });
      expect(decide({ record: deleted }, ctx({ allowDelete: true }))).to.deep.equal({ cluster: 'dev' });
      expect(decide({ folder: folder({ deletionMarker: true, tree: 'tree0' }), record: deleted })).to.deep.equal({ cluster: 'dev' });
      const d = decide({ folder: folder({ tree: 'tree2' }), record: deleted, spec: { specHash: HASH0 } }, ctx({ revision: REV2 }));
      expect(d.submit).to.include({ kind: 'apply', revision: REV2, specHash: HASH0, attempt: 1 });
    });
  });

  describe('drift', () => {
    const drift = ctx({ driftIntervalMs: 60 * MIN });

    it('plans an applied cluster never checked: cluster-plan at the applied revision, numbered by planCount', () => {
      const d = decide({ folder: folder({ tree: 'tree0' }), record: applied({ planCount: 4 }) }, drift);
      expect(d.submit).to.deep.equal({ kind: 'plan', cluster: 'dev', repo: 'https://git.example/gitops.git', revision: REV0, clusterPath: 'clusters/dev', specHash: HASH0, attempt: 5 });
      expect(d.record).to.include({ planCount: 5, phase: 'Succeeded' });
      expect(d.record?.driftRun).to.include({ kind: 'plan', phase: 'Submitting', attempt: 5, workflow: workflowName('plan', 'dev', REV0, 5) });
    });

    it('does not plan within the interval (since the last check or the last attempt), nor when off', () => {
      const checked = applied({ driftCheckedAt: '2025-01-01T11:30:00.000Z' });
      expect(decide({ folder: folder({ tree: 'tree0' }), record: checked }, drift).submit).to.equal(undefined);
      const failedPlan = applied({ driftRun: run({ kind: 'plan', phase: 'Failed', submittedAt: '2025-01-01T11:30:00.000Z' }), planCount: 1 });
      expect(decide({ folder: folder({ tree: 'tree0' }), record: failedPlan }, drift).submit).to.equal(undefined);
      expect(decide({ folder: folder({ tree: 'tree0' }), record: applied() }).submit).to.equal(undefined);
      expect(decide({ folder: folder({ tree: 'tree0' }), record: applied({ driftCheckedAt: '2025-01-01T10:59:00.000Z' }) }, drift).submit).to.include({ kind: 'plan' });
    });

    it('does not plan a cluster that is not Succeeded or has a run in flight', () => {
      expect(decide({ folder: folder({ tree: 'tree0' }), record: applied({ run: run({ phase: 'Running' }), phase: 'Running' }) }, drift).submit).to.equal(undefined);
      expect(decide({ folder: folder({ tree: 'tree0' }), record: applied(), workflows: [view({ name: 'other', phase: 'Running' })] }, drift).submit).to.equal(undefined);
    });

    it('policy report: a Drifted cluster gets no apply', () => {
      const d = decide({ folder: folder({ tree: 'tree0' }), record: applied({ drift: 'Drifted', driftChanges: 2, driftCheckedAt: NOW.toISOString() }) }, drift);
      expect(d).to.deep.equal({ cluster: 'dev' });
    });

    it('policy enforce: a Drifted cluster gets cluster-apply at the head, as the next attempt when the revision is the same', () => {
      const record = applied({ drift: 'Drifted', driftChanges: 2, driftCheckedAt: NOW.toISOString() });
      const same = decide({ folder: folder({ tree: 'tree0' }), record }, ctx({ driftIntervalMs: 60 * MIN, driftPolicy: 'enforce', revision: REV0 }));
      expect(same.submit).to.include({ kind: 'apply', revision: REV0, specHash: HASH0, attempt: 2 });
      const moved = decide({ folder: folder({ tree: 'tree0' }), record }, ctx({ driftIntervalMs: 60 * MIN, driftPolicy: 'enforce' }));
      expect(moved.submit).to.include({ kind: 'apply', revision: REV1, attempt: 1 });
    });

    it('policy enforce: a failed enforcing apply waits for its backoff instead of looping', () => {
      const record = applied({ drift: 'Drifted', run: run({ revision: REV1, attempt: 1, phase: 'Failed' }), failures: 1, nextRetryAt: '2025-01-01T12:01:00.000Z', phase: 'Failed' });
      const d = decide({ folder: folder({ tree: 'tree0' }), record }, ctx({ driftIntervalMs: 60 * MIN, driftPolicy: 'enforce' }));
      expect(d.submit).to.equal(undefined);
      expect(d.wakeAt?.toISOString()).to.equal('2025-01-01T12:01:00.000Z');
    });
  });

  describe('pause (Cluster spec.paused, or the cluster.x-k8s.io/paused annotation)', () => {
    const WHERE = 'clusters/dev/cluster.yaml:16 spec.paused';
    const drift = ctx({ driftIntervalMs: 60 * MIN, allowDelete: true });
    /** dev applied at REV0, then paused at REV1 (same hash: pausing is not a change), the marker made. */
    const paused = (over: Partial<ClusterRecord> = {}): ClusterRecord =>
      applied({ phase: 'Paused', gitRevision: REV1, gitTree: 'tree1', paused: WHERE, pausedRevision: REV1, pauseMarker: 'set', message: `paused by ${REV1.slice(0, 12)} at ${WHERE}: nothing is submitted (no apply, delete or drift plan) until it is unpaused`, ...over });

    it('a commit that pauses an applied cluster: Paused, naming the commit and file:line; nothing submitted; the marker is set first', () => {
      const d = decide({ folder: folder(), record: applied(), spec: { specHash: HASH0, paused: WHERE } }, drift);
      expect(d.submit).to.equal(undefined);
      expect(d.record).to.include({ phase: 'Paused', paused: WHERE, pausedRevision: REV1, pauseMarker: 'set' });
      expect(d.record?.message).to.equal(`paused by ${REV1.slice(0, 12)} at ${WHERE}: nothing is submitted (no apply, delete or drift plan) until it is unpaused`);
      expect(d.pause).to.deep.equal({ marker: 'set', revision: REV1, where: WHERE });
    });

    it('a spec change while paused submits nothing and keeps the commit that paused; no drift plan either', () => {
      const d = decide({ folder: folder({ tree: 'tree2' }), record: paused(), spec: { specHash: HASH1, paused: WHERE } }, ctx({ revision: REV2, driftIntervalMs: 60 * MIN }));
      expect(d.submit).to.equal(undefined);
      expect(d.pause).to.equal(undefined);
      expect(d.record).to.include({ phase: 'Paused', specHash: HASH1, pausedRevision: REV1, gitRevision: REV2 });
      expect(decide({ folder: folder(), record: paused() }, drift)).to.deep.equal({ cluster: 'dev' });
    });

    it('unpaused after a change: one cluster-apply at the head, and the marker cleared', () => {
      const d = decide({ folder: folder({ tree: 'tree2' }), record: paused({ specHash: HASH1 }), spec: { specHash: HASH1 } }, ctx({ revision: REV2 }));
      expect(d.submit).to.include({ kind: 'apply', revision: REV2, specHash: HASH1, attempt: 1 });
      expect(d.pause).to.deep.equal({ marker: 'clear' });
      expect(d.record).to.include({ phase: 'Running' });
      expect(d.record?.paused).to.equal(undefined);
      expect(d.record?.pauseMarker).to.equal(undefined);
    });

    it('unpaused with the applied spec: nothing submitted, Succeeded again', () => {
      const d = decide({ folder: folder({ tree: 'tree2' }), record: paused(), spec: { specHash: HASH0 } }, ctx({ revision: REV2 }));
      expect(d.submit).to.equal(undefined);
      expect(d.pause).to.deep.equal({ marker: 'clear' });
      expect(d.record).to.include({ phase: 'Succeeded', appliedSpecHash: HASH0 });
    });

    it('paused with a run in flight: the run is suspended; unpaused, it is resumed when it applies the spec in Git, else stopped', () => {
      const inflight = run({ revision: REV1, specHash: HASH1, phase: 'Running', finishedAt: undefined });
      const d = decide({ folder: folder({ tree: 'tree2' }), record: applied({ phase: 'Running', specHash: HASH1, run: inflight }), spec: { specHash: HASH1, paused: WHERE } }, ctx({ revision: REV2 }));
      expect(d.pause).to.deep.equal({ marker: 'set', revision: REV2, where: WHERE, suspend: inflight.workflow });
      expect(d.record?.message).to.include(`${inflight.workflow} is suspended and its running step stops at its next safe point`);
      const resumed = decide({ folder: folder({ tree: 'tree3' }), record: paused({ specHash: HASH1, run: inflight }), spec: { specHash: HASH1 } }, ctx({ revision: REV2 }));
      expect(resumed.pause).to.deep.equal({ marker: 'clear', resume: inflight.workflow });
      expect(resumed.submit).to.equal(undefined);
      expect(resumed.record?.message).to.equal(`waiting for ${inflight.workflow}`);
      const stopped = decide({ folder: folder({ tree: 'tree3' }), record: paused({ specHash: HASH1, run: inflight }), spec: { specHash: '2'.repeat(64) } }, ctx({ revision: REV2 }));
      expect(stopped.pause).to.deep.equal({ marker: 'clear', stop: inflight.workflow });
      expect(stopped.submit).to.equal(undefined);
    });

    it('holds a DELETE marker, and a folder removed from Git (even with --allow-delete), while the last spec seen is paused', () => {
      const marked = decide({ folder: folder({ deletionMarker: true }), record: paused() }, drift);
      expect(marked.submit).to.equal(undefined);
      expect(marked.record?.message).to.include('the DELETE marker is held until then');
      const gone = decide({ record: paused() }, drift);
      expect(gone.submit).to.equal(undefined);
      expect(gone.record).to.include({ phase: 'Paused' });
      expect(gone.record?.message).to.include('removed from Git while paused: nothing is deleted');
    });

    it('a run that ends while paused, or whose step stopped for the pause (exit code 4), is not a failure: no backoff; unpaused, the apply runs again at once', () => {
      const inflight = run({ revision: REV1, specHash: HASH1, phase: 'Running', finishedAt: undefined });
      const rec = paused({ specHash: HASH1, run: inflight });
      const out = observeWorkflow(rec, inflight.workflow, view({ name: inflight.workflow, revision: REV1, specHash: HASH1, phase: 'Failed', failedStep: 'provision-vpc', message: 'Error (exit code 4)' }), ctx());
      expect(out).to.include({ phase: 'Paused', failures: 0 });
      expect(out.nextRetryAt).to.equal(undefined);
      const unpaused = decide({ folder: folder({ tree: 'tree2' }), record: out, spec: { specHash: HASH1 } }, ctx({ revision: REV1 }));
      expect(unpaused.submit).to.include({ kind: 'apply', revision: REV1, specHash: HASH1, attempt: 2 });
      const afterResume = observeWorkflow({ ...rec, phase: 'Running', paused: undefined, pauseMarker: undefined }, inflight.workflow, view({ name: inflight.workflow, phase: 'Failed', message: 'Error (exit code 4)' }), ctx());
      expect(afterResume).to.include({ phase: 'Pending', failures: 0 });
    });
  });

  describe('observeWorkflow', () => {
    const c = ctx();
    const submitted = run({ revision: REV1, specHash: HASH1, phase: 'Submitting', finishedAt: undefined });
    const running = applied({ phase: 'Running', specHash: HASH1, run: submitted });

    it('moves Submitting to Pending and Running without touching the result fields', () => {
      const pending = observeWorkflow(running, submitted.workflow, view({ name: submitted.workflow, phase: 'Pending' }), c);
      expect(pending.run).to.include({ phase: 'Pending' });
      expect(pending).to.include({ phase: 'Running', appliedRevision: REV0 });
      expect(observeWorkflow(pending, submitted.workflow, view({ name: submitted.workflow, phase: 'Pending' }), c)).to.equal(pending);
    });

    it('an apply that succeeded: applied revision and hash, failures cleared, a Drifted state forgotten', () => {
      const record = { ...running, failures: 2, nextRetryAt: 'x', drift: 'Drifted' as const, driftChanges: 3 };
      const out = observeWorkflow(record, submitted.workflow, view({ name: submitted.workflow, phase: 'Succeeded', finishedAt: '2025-01-01T11:59:00.000Z' }), c);
      expect(out).to.include({ phase: 'Succeeded', appliedRevision: REV1, appliedSpecHash: HASH1, appliedAt: '2025-01-01T11:59:00.000Z', failures: 0, drift: 'Unknown' });
      expect(out.nextRetryAt).to.equal(undefined);
      expect(out.driftChanges).to.equal(undefined);
      expect(out.run).to.include({ phase: 'Succeeded', finishedAt: '2025-01-01T11:59:00.000Z' });
    });

    it('an apply that failed: step and message recorded, failures + 1, nextRetryAt after the backoff', () => {
      const out = observeWorkflow({ ...running, failures: 1 }, submitted.workflow, view({ name: submitted.workflow, phase: 'Failed', failedStep: 'provision-vpc', message: 'VpcLimitExceeded' }), c);
      expect(out).to.include({ phase: 'Failed', failures: 2, nextRetryAt: new Date(NOW.getTime() + 2 * MIN).toISOString() });
      expect(out.run).to.include({ phase: 'Failed', failedStep: 'provision-vpc', message: 'VpcLimitExceeded', finishedAt: NOW.toISOString() });
      expect(out.message).to.match(/provision-vpc: VpcLimitExceeded/);
      expect(out.appliedRevision).to.equal(REV0);
    });

    it('a run that ends while the spec is Invalid keeps the phase Invalid', () => {
      const out = observeWorkflow({ ...running, phase: 'Invalid', specHash: undefined, errors: ['e'] }, submitted.workflow, view({ name: submitted.workflow, phase: 'Succeeded' }), c);
      expect(out).to.include({ phase: 'Invalid', appliedRevision: REV1 });
    });

    it('a delete that succeeded makes the cluster Deleted, keeping its history', () => {
      const del = run({ kind: 'delete', revision: REV0, phase: 'Running' });
      const out = observeWorkflow(applied({ phase: 'Running', run: del }), del.workflow, view({ name: del.workflow, kind: 'delete', phase: 'Succeeded' }), c);
      expect(out).to.include({ phase: 'Deleted', appliedRevision: REV0 });
    });

    it('a plan: changes > 0 is Drifted, 0 InSync, none reported Unknown; a failed plan leaves drift alone', () => {
      const plan = run({ kind: 'plan', phase: 'Running', attempt: 1 });
      const record = applied({ driftRun: plan, planCount: 1, drift: 'InSync' });
      const finish = (v: Partial<WorkflowView>) => observeWorkflow(record, plan.workflow, view({ name: plan.workflow, kind: 'plan', phase: 'Succeeded', finishedAt: '2025-01-01T11:58:00.000Z', ...v }), c);
      expect(finish({ changes: 3 })).to.include({ drift: 'Drifted', driftChanges: 3, driftCheckedAt: '2025-01-01T11:58:00.000Z', phase: 'Succeeded' });
      expect(finish({ changes: 0 })).to.include({ drift: 'InSync', driftChanges: 0 });
      expect(finish({})).to.include({ drift: 'Unknown' });
      const failedPlan = finish({ phase: 'Failed', message: 'boom' });
      expect(failedPlan).to.include({ drift: 'InSync', failures: 0, phase: 'Succeeded' });
      expect(failedPlan.driftRun).to.include({ phase: 'Failed', message: 'boom' });
      expect(failedPlan.driftCheckedAt).to.equal(undefined);
    });

    it('a Workflow deleted before it finished fails the run; one never created (Submitting) is left to resubmit', () => {
      const pending = { ...running, run: { ...submitted, phase: 'Pending' as const } };
      const gone = observeWorkflow(pending, submitted.workflow, undefined, c);
      expect(gone).to.include({ phase: 'Failed', failures: 1 });
      expect(gone.run).to.include({ phase: 'Error' });
      expect(observeWorkflow(running, submitted.workflow, undefined, c)).to.equal(running);
    });

    it('ignores Workflows that are not the record’s runs, and runs already finished', () => {
      expect(observeWorkflow(running, 'someone-elses', view({ name: 'someone-elses', phase: 'Failed' }), c)).to.equal(running);
      const done = applied();
      expect(observeWorkflow(done, done.run!.workflow, view({ name: done.run!.workflow, phase: 'Failed' }), c)).to.equal(done);
    });
  });
});
