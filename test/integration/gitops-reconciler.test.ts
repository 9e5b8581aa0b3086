/**
 * The reconciler end to end: a real git remote (bare repository, pushed to by the git CLI), a real
 * kube-apiserver with the Argo CRDs installed (envtest), the service's real HTTP server for webhooks,
 * and the built `capflow` command for `reconcile --once` and `status`. No Argo controller runs in the
 * test bed: tests play it by replacing Workflow objects with the status a controller would write
 * (test/support/gitops.ts), and every test name that relies on it says so.
 *
 * Each test gets a fresh namespace and git remote; one envtest serves the whole file. Counts are read
 * from the API server, never from the reconciler's own report alone.
 */
import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, Watch, type KubeConfig } from '@kubernetes/client-node';
import { createMemoryLogger } from '../../src/core/logger.js';
import { specHash, validateClusterSpec } from '../../src/spec/index.js';
import { startReconcilerService, type ServiceConfig } from '../../src/gitops/service.js';
import type { PassReport } from '../../src/gitops/reconciler.js';
import { createGitRemote, type GitRemote } from '../support/git-remote.js';
import { schemaPath, startEnvtest, type Envtest } from '../support/envtest.js';
import { spawnCapflow, CAPFLOW_BIN, type CliResult } from '../support/cli.js';
import {
  ARGO,
  clusterFile,
  clusterFiles,
  createNamespace,
  describeRecords,
  describeWorkflows,
  failed,
  githubPush,
  leaseHolder,
  listRecords,
  listWorkflows,
  manyClusterFiles,
  paramsOf,
  planned,
  postWebhook,
  readRecord,
  running,
  setWorkflowStatus,
  succeeded,
  waitUntil,
  withComment,
  withInvalidReplicas,
  withReplicas,
  type WorkflowObj,
} from '../support/gitops.js';

const SECRET = 'test-webhook-secret';
const WEBHOOK_PATH = '/webhooks/github';
const THREE = ['c1', 'c2', 'c3'];

type Service = Awaited<ReturnType<typeof startReconcilerService>>;

interface Bed {
  ns: string;
  remote: GitRemote;
  /** The first commit (every cluster added). */
  rev0: string;
  logs: ReturnType<typeof createMemoryLogger>[];
}

describe('gitops reconciler: git remote → Workflows in a real kube-apiserver (envtest + Argo CRDs; no Argo controller runs, tests set Workflow status to play it)', function () {
  this.timeout(60_000);
  let env: Envtest;
  let kc: KubeConfig;
  let seq = 0;
  const cleanups: Array<() => Promise<unknown>> = [];
  let current: Bed | undefined;

  before(async function () {
    this.timeout(180_000);
    env = await startEnvtest({ crds: [schemaPath('argo', 'argoproj.io_workflows.yaml')] });
    kc = env.makeKubeConfig();
  });
  after(async () => env?.stop());

  afterEach(async function () {
    if (this.currentTest?.state === 'failed' && current) {
      const logs = current.logs.flatMap((l) => l.lines.map((x) => `${x.level} ${x.message} ${JSON.stringify(x.meta)}`));
      console.log(`--- reconciler log (last 60 lines):\n${logs.slice(-60).join('\n')}`);
      console.log(await describeWorkflows(kc, current.ns));
      console.log(await describeRecords(kc, current.ns));
    }
    current = undefined;
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  });

  // ----------------------------------------------------------------------------------------------
  // the bed

  /** A fresh namespace and a git remote whose first commit holds `clusters` (pushed). */
  async function newBed(clusters: readonly string[]): Promise<Bed> {
    const ns = `gitops-${++seq}-${Math.random().toString(36).slice(2, 7)}`;
    await createNamespace(kc, ns);
    const remote = await createGitRemote();
    cleanups.push(() => remote.stop());
    const rev0 = await remote.commitFiles(manyClusterFiles(clusters), `add ${clusters.join(', ')}`);
    await remote.push();
    current = { ns, remote, rev0, logs: [] };
    return current;
  }

  function serviceConfig(bed: Bed, overrides: Partial<ServiceConfig> = {}): ServiceConfig {
    const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-reconciler-cache-'));
    cleanups.push(async () => rmSync(cacheDir, { recursive: true, force: true }));
    return {
      repoUrl: bed.remote.url,
      branch: 'main',
      namespace: bed.ns,
      // passes come from webhooks, retries and the tests' own runPass/trigger calls, not from polling
      pollIntervalMs: 3_600_000,
      pollJitter: 0,
      driftIntervalMs: 0,
      driftPolicy: 'report',
      allowDelete: false,
      retryBaseMs: 2_000,
      retryMaxMs: 20_000,
      identity: 'replica-a',
      version: 'test',
      kubeconfig: env.kubeconfigPath,
      clustersDir: 'clusters',
      cacheDir,
      host: '127.0.0.1',
      port: 0,
      webhookSecrets: { github: SECRET },
      leaderElection: false,
      leaseName: 'capflow-reconciler',
      leaseDurationSeconds: 2,
      renewDeadlineSeconds: 1.5,
      retryPeriodSeconds: 0.3,
      ...overrides,
    };
  }

  async function startService(bed: Bed, overrides: Partial<ServiceConfig> = {}): Promise<Service> {
    const log = createMemoryLogger();
    bed.logs.push(log);
    const svc = await startReconcilerService(serviceConfig(bed, overrides), log);
    let stopped = false;
    const stop = svc.stop.bind(svc);
    svc.stop = async () => {
      if (stopped) return;
      stopped = true;
      await stop();
    };
    cleanups.push(() => svc.stop());
    return svc;
  }

  const workflows = (bed: Bed, selector?: string): Promise<WorkflowObj[]> => listWorkflows(kc, bed.ns, selector);
  const applies = (bed: Bed, cluster?: string): Promise<WorkflowObj[]> =>
    workflows(bed, `capflow.io/kind=apply${cluster ? `,capflow.io/cluster=${cluster}` : ''}`);
  const describe_ = async (bed: Bed): Promise<string> => `${await describeWorkflows(kc, bed.ns)}\n${await describeRecords(kc, bed.ns)}`;

  /** Waits until exactly `n` Workflows match (and returns them); fails when more appear. */
  async function waitForWorkflows(bed: Bed, n: number, selector?: string): Promise<WorkflowObj[]> {
    return waitUntil(
      `${n} Workflows${selector ? ` (${selector})` : ''} in ${bed.ns}`,
      async () => {
        const wfs = await workflows(bed, selector);
        if (wfs.length > n) throw new Error(`more than ${n}: ${wfs.map((w) => w.metadata.name).join(', ')}`);
        return wfs.length === n ? wfs : undefined;
      },
      { describe: () => describe_(bed) },
    );
  }

  async function waitForRecord(bed: Bed, cluster: string, what: string, ok: (data: Record<string, string>) => boolean): Promise<Record<string, string>> {
    return waitUntil(
      `record of ${cluster}: ${what}`,
      async () => {
        const r = await readRecord(kc, bed.ns, cluster);
        return r && ok(r.data) ? r.data : undefined;
      },
      { describe: () => describe_(bed) },
    );
  }

  /** Plays the controller: every unfinished Workflow in the namespace succeeds. */
  async function succeedAll(bed: Bed): Promise<void> {
    for (const wf of await workflows(bed)) {
      if (!wf.status?.phase || wf.status.phase === 'Pending' || wf.status.phase === 'Running') await setWorkflowStatus(kc, bed.ns, wf.metadata.name, succeeded());
    }
  }

  /**
   * Starts a service on a new bed with `clusters`, lets its first pass submit one apply each, plays
   * the controller (all succeed) and waits for every record to say Succeeded at the first commit.
   */
  async function appliedBed(clusters: readonly string[] = THREE, overrides: Partial<ServiceConfig> = {}): Promise<{ bed: Bed; svc: Service }> {
    const bed = await newBed(clusters);
    const svc = await startService(bed, overrides);
    await svc.reconciler.runPass();
    await waitForWorkflows(bed, clusters.length);
    await succeedAll(bed);
    for (const c of clusters) await waitForRecord(bed, c, `Succeeded at ${bed.rev0}`, (d) => d.phase === 'Succeeded' && d.appliedRevision === bed.rev0);
    // the passes the finished runs triggered are over: what follows starts from a quiet reconciler
    await svc.reconciler.whenIdle();
    return { bed, svc };
  }

  async function commitAndPush(bed: Bed, files: Record<string, string | null>, message: string): Promise<string> {
    const sha = await bed.remote.commitFiles(files, message);
    await bed.remote.push();
    return sha;
  }

  const randomHex40 = (): string => Array.from({ length: 40 }, () => Math.floor(Math.random() * 16).toString(16)).join('');

  const runName = (kind: string, cluster: string, revision: string, attempt: number): string => `cluster-${kind}-${cluster}-${revision.slice(0, 10)}-${attempt}`;

  async function expectedHash(bed: Bed, cluster: string): Promise<string> {
    const clone = await bed.remote.clone();
    const { model, problems } = await validateClusterSpec(path.join(clone, 'clusters', cluster), { displayRoot: clone });
    expect(model, JSON.stringify(problems)).to.not.equal(undefined);
    return specHash(model!);
  }

  function capflow(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): { child: ChildProcess; done: Promise<CliResult> } {
    const run = spawnCapflow(args, opts);
    cleanups.push(async () => {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
    });
    return run;
  }

  function requireBuild(): void {
    if (!existsSync(CAPFLOW_BIN)) throw new Error(`${CAPFLOW_BIN} is missing: run "npm run build" first`);
  }

  async function status(bed: Bed, json: boolean): Promise<CliResult> {
    requireBuild();
    const res = await capflow(['status', '--kubeconfig', env.kubeconfigPath, '--namespace', bed.ns, ...(json ? ['--json'] : [])]).done;
    expect(res.code, res.stderr).to.equal(0);
    return res;
  }

  // ----------------------------------------------------------------------------------------------
  // tests

  it('a commit changing one of three clusters submits exactly one cluster-apply Workflow, with the repo, revision, cluster path and spec hash as parameters and labels (the test marks the first runs Succeeded, playing the controller)', async () => {
    const { bed, svc } = await appliedBed();
    const rev1 = await commitAndPush(bed, withReplicas('c2', 3), 'c2: three workers');

    const report = (await svc.reconciler.runPass()) as PassReport;
    expect(report.revision).to.equal(rev1);
    expect(report.submitted.map((s) => [s.cluster, s.kind, s.created])).to.deep.equal([['c2', 'apply', true]]);

    const all = await waitForWorkflows(bed, 4);
    const fresh = all.filter((w) => w.metadata.labels?.['capflow.io/revision'] === rev1);
    expect(fresh.map((w) => w.metadata.name)).to.deep.equal([runName('apply', 'c2', rev1, 1)]);
    const wf = fresh[0]!;
    const hash = await expectedHash(bed, 'c2');
    expect(wf.spec.workflowTemplateRef?.name).to.equal('cluster-apply');
    expect(paramsOf(wf)).to.include({ repo: bed.remote.url, revision: rev1, 'cluster-path': 'clusters/c2', 'cluster-name': 'c2', 'spec-hash': hash });
    expect(wf.metadata.labels).to.include({
      'capflow.io/cluster': 'c2',
      'capflow.io/revision': rev1,
      'capflow.io/spec-hash': hash.slice(0, 32),
      'capflow.io/kind': 'apply',
      'capflow.io/attempt': '1',
      'app.kubernetes.io/managed-by': 'capflow',
    });
    expect(report.submitted[0]!.workflow).to.equal(wf.metadata.name);

    const rec = await waitForRecord(bed, 'c2', 'Running the new run', (d) => d.phase === 'Running');
    expect(rec).to.include({ 'run.workflow': wf.metadata.name, 'run.kind': 'apply', 'run.revision': rev1, 'run.specHash': hash, 'run.attempt': '1', gitRevision: rev1, specHash: hash, appliedRevision: bed.rev0 });
    // the other two are untouched
    for (const c of ['c1', 'c3']) expect((await readRecord(kc, bed.ns, c))?.data).to.include({ phase: 'Succeeded', appliedRevision: bed.rev0 });

    await setWorkflowStatus(kc, bed.ns, wf.metadata.name, succeeded());
    await waitForRecord(bed, 'c2', `Succeeded at ${rev1}`, (d) => d.phase === 'Succeeded' && d.appliedRevision === rev1 && d.appliedSpecHash === hash);
    expect((await svc.reconciler.runPass())?.submitted).to.deep.equal([]);
    expect(await workflows(bed)).to.have.length(4);
  });

  it('a webhook pass decides only what changed, from the watched caches: one folder of six changed submits exactly that cluster; records another writer changed or deleted are seen by the next one (the test marks the first runs Succeeded)', async () => {
    const SIX = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6'];
    const { bed, svc } = await appliedBed(SIX);
    await svc.reconciler.whenIdle();
    const url = `${svc.url}${WEBHOOK_PATH}`;
    const rev1 = await commitAndPush(bed, withReplicas('c4', 3), 'c4: three workers');
    expect((await postWebhook(url, githubPush(SECRET, { after: rev1, before: bed.rev0 }))).status).to.equal(202);
    const [wf] = await waitForWorkflows(bed, 1, `capflow.io/revision=${rev1}`);
    expect(wf!.metadata.name).to.equal(runName('apply', 'c4', rev1, 1));
    await svc.reconciler.whenIdle();
    expect(svc.reconciler.lastPass()).to.include({ revision: rev1, full: false, decided: 1, loaded: 1 });
    expect(svc.reconciler.lastPass()?.submitted.map((x) => x.cluster)).to.deep.equal(['c4']);
    expect(await workflows(bed)).to.have.length(7);

    // another writer (the test's own client, as kubectl would): c2's record now says another spec
    // was applied, c5's record is deleted
    const core = kc.makeApiClient(CoreV1Api);
    const c2 = await core.readNamespacedConfigMap({ name: 'capflow-cluster-c2', namespace: bed.ns });
    await core.replaceNamespacedConfigMap({ name: 'capflow-cluster-c2', namespace: bed.ns, body: { ...c2, data: { ...c2.data, appliedSpecHash: `sha256:${'0'.repeat(64)}` } } });
    await core.deleteNamespacedConfigMap({ name: 'capflow-cluster-c5', namespace: bed.ns });
    await new Promise((r) => setTimeout(r, 1000)); // the watch delivers in milliseconds
    const rev2 = await commitAndPush(bed, { 'README.md': 'no cluster touched\n' }, 'readme');
    expect((await postWebhook(url, githubPush(SECRET, { after: rev2, before: rev1 }))).status).to.equal(202);
    const fresh = await waitForWorkflows(bed, 2, `capflow.io/revision=${rev2}`);
    expect(fresh.map((w) => w.metadata.name)).to.have.members([runName('apply', 'c2', rev2, 1), runName('apply', 'c5', rev2, 1)]);
    await svc.reconciler.whenIdle();
    expect(svc.reconciler.lastPass()).to.include({ revision: rev2, full: false, decided: 2 });
    expect((await readRecord(kc, bed.ns, 'c5'))?.data).to.include({ phase: 'Running', gitRevision: rev2 });

    // the full pass (as the poll runs it) agrees: nothing more to do
    const full = (await svc.reconciler.runPass()) as PassReport;
    expect(full).to.include({ full: true, decided: 6 });
    expect(full.submitted).to.deep.equal([]);
    expect(await workflows(bed)).to.have.length(9);
  });

  it('a comment-only change submits nothing (same spec hash)', async () => {
    const { bed, svc } = await appliedBed();
    const rev1 = await commitAndPush(bed, withComment('c1', 'owned by team blue'), 'c1: a comment');
    const report = (await svc.reconciler.runPass()) as PassReport;
    expect(report.revision).to.equal(rev1);
    expect(report.submitted).to.deep.equal([]);
    expect(report.invalid).to.deep.equal([]);
    // c1's folder changed (loaded again, same hash); the other two were not read
    expect([report.loaded, report.unchanged]).to.deep.equal([1, 2]);
    await svc.reconciler.whenIdle();
    expect(await workflows(bed)).to.have.length(3);
    expect((await readRecord(kc, bed.ns, 'c1'))?.data).to.include({ phase: 'Succeeded', appliedRevision: bed.rev0 });
  });

  it('ten concurrent signed GitHub push webhooks and a redelivery give one submission (the test marks the first runs Succeeded)', async () => {
    const { bed, svc } = await appliedBed();
    const rev1 = await commitAndPush(bed, withReplicas('c1', 4), 'c1: four workers');
    const url = `${svc.url}${WEBHOOK_PATH}`;
    const hooks = Array.from({ length: 10 }, (_, i) => githubPush(SECRET, { after: rev1, delivery: `delivery-${i}` }));
    const answers = await Promise.all(hooks.map((h) => postWebhook(url, h)));
    for (const a of answers) expect(a.status, a.body).to.be.within(200, 299);

    const [wf] = await waitForWorkflows(bed, 1, `capflow.io/revision=${rev1}`);
    expect(wf!.metadata.name).to.equal(runName('apply', 'c1', rev1, 1));
    await svc.reconciler.whenIdle();
    const redelivered = await postWebhook(url, hooks[0]!);
    expect(redelivered.status, redelivered.body).to.be.within(200, 299);
    await svc.reconciler.whenIdle();
    // a later pass (as the poll would run) still finds nothing more to do
    expect((await svc.reconciler.runPass())?.submitted).to.deep.equal([]);

    expect((await workflows(bed)).map((w) => w.metadata.name)).to.have.members([...THREE.map((c) => runName('apply', c, bed.rev0, 1)), runName('apply', 'c1', rev1, 1)]);
    expect(await workflows(bed)).to.have.length(4);
    expect(svc.reconciler.lastPass()?.revision).to.equal(rev1);
  });

  it('a webhook with a bad signature, a missing one or another secret is refused with 401 and starts no pass; a good one then submits', async () => {
    const { bed, svc } = await appliedBed();
    const rev1 = await commitAndPush(bed, withReplicas('c3', 5), 'c3: five workers');
    const url = `${svc.url}${WEBHOOK_PATH}`;
    const passBefore = svc.reconciler.lastPass();

    const good = githubPush(SECRET, { after: rev1 });
    const tampered = { body: good.body.replace('test push', 'evil push'), headers: good.headers };
    const unsigned = { body: good.body, headers: Object.fromEntries(Object.entries(good.headers).filter(([k]) => k !== 'x-hub-signature-256')) };
    const otherSecret = githubPush('not-the-secret', { after: rev1 });
    for (const hook of [tampered, unsigned, otherSecret]) {
      const res = await postWebhook(url, hook);
      expect(res.status, res.body).to.equal(401);
      expect(res.body).to.not.include('evil push').and.not.include(rev1);
    }
    await svc.reconciler.whenIdle();
    expect(svc.reconciler.lastPass()).to.equal(passBefore);
    expect(await workflows(bed)).to.have.length(3);
    expect(bed.logs[0]!.lines.map((l) => JSON.stringify(l))).to.satisfy((ls: string[]) => ls.every((l) => !l.includes('evil push')));

    const res = await postWebhook(url, good);
    expect(res.status, res.body).to.be.within(200, 299);
    const [wf] = await waitForWorkflows(bed, 1, `capflow.io/revision=${rev1}`);
    expect(wf!.metadata.labels?.['capflow.io/cluster']).to.equal('c3');
  });

  it('an invalid spec is recorded Invalid with file:line:column errors (also in `capflow status --json`) and submits nothing until it is fixed', async () => {
    const { bed, svc } = await appliedBed();
    const bad = withInvalidReplicas('c2');
    const rev1 = await commitAndPush(bed, bad.files, 'c2: a typo');
    const report = (await svc.reconciler.runPass()) as PassReport;
    expect(report.invalid).to.deep.equal(['c2']);
    expect(report.submitted).to.deep.equal([]);
    await svc.reconciler.whenIdle();
    expect(await workflows(bed)).to.have.length(3);

    const line = `${bad.file}:${bad.line}:${bad.column} MachineDeployment/c2-md-0 spec.replicas: must be integer`;
    const rec = await waitForRecord(bed, 'c2', 'Invalid', (d) => d.phase === 'Invalid');
    expect(rec.errors?.split('\n')).to.include(line);
    expect(rec.appliedRevision).to.equal(bed.rev0);
    const r = await readRecord(kc, bed.ns, 'c2');
    expect(r?.labels['capflow.io/phase']).to.equal('Invalid');

    const json = JSON.parse((await status(bed, true)).stdout) as unknown;
    const rows = (Array.isArray(json) ? json : (json as { clusters: unknown[] }).clusters) as Array<Record<string, unknown>>;
    const c2 = rows.find((x) => x.cluster === 'c2' || x.name === 'c2')!;
    expect(c2, JSON.stringify(json)).to.not.equal(undefined);
    expect(c2.phase).to.equal('Invalid');
    expect(JSON.stringify(c2.errors)).to.include(line);

    // fixed: the next commit is applied
    const rev2 = await commitAndPush(bed, withReplicas('c2', 3), 'c2: fixed');
    const fixed = (await svc.reconciler.runPass()) as PassReport;
    expect(fixed.invalid).to.deep.equal([]);
    expect(fixed.submitted.map((s) => s.workflow)).to.deep.equal([runName('apply', 'c2', rev2, 1)]);
    expect(await workflows(bed)).to.have.length(4);
    expect(rev1).to.not.equal(rev2);
  });

  it('a cluster folder removed from Git is recorded Removed and not deleted; a replica with allowDelete runs cluster-delete at its last applied revision', async () => {
    const { bed, svc } = await appliedBed();
    const rmFiles = Object.fromEntries(Object.keys(clusterFiles('c3')).map((f) => [f, null]));
    const rev1 = await commitAndPush(bed, { ...rmFiles, ...withReplicas('c1', 3) }, 'c3 removed, c1 changed');

    const report = (await svc.reconciler.runPass()) as PassReport;
    expect(report.revision).to.equal(rev1);
    expect(report.submitted.map((s) => `${s.kind}/${s.cluster}`)).to.deep.equal(['apply/c1']);
    expect(report.removed).to.deep.equal(['c3']);
    await svc.reconciler.whenIdle();
    const c3 = await waitForRecord(bed, 'c3', 'Removed', (d) => d.phase === 'Removed');
    expect(c3.appliedRevision).to.equal(bed.rev0);
    expect((await readRecord(kc, bed.ns, 'c3'))?.labels['capflow.io/phase']).to.equal('Removed');
    expect((await svc.reconciler.runPass())?.submitted).to.deep.equal([]);
    expect(await workflows(bed, 'capflow.io/kind=delete')).to.have.length(0);
    expect(await workflows(bed)).to.have.length(4);

    await svc.stop();
    const permissive = await startService(bed, { allowDelete: true });
    await permissive.reconciler.runPass();
    const [del] = await waitForWorkflows(bed, 1, 'capflow.io/kind=delete');
    expect(del!.metadata.name).to.equal(runName('delete', 'c3', bed.rev0, 1));
    expect(del!.spec.workflowTemplateRef?.name).to.equal('cluster-delete');
    expect(paramsOf(del!)).to.include({ revision: bed.rev0, 'cluster-path': 'clusters/c3', 'cluster-name': 'c3' });
    expect(del!.metadata.labels).to.include({ 'capflow.io/cluster': 'c3', 'capflow.io/revision': bed.rev0, 'capflow.io/kind': 'delete' });
    await waitForRecord(bed, 'c3', 'Running the delete', (d) => d.phase === 'Running' && d['run.kind'] === 'delete');
    expect(await workflows(bed)).to.have.length(5);
  });

  it('a DELETE marker in a cluster folder submits one cluster-delete at the last applied revision; once it succeeds (the test plays the controller) the cluster is Deleted', async () => {
    const { bed, svc } = await appliedBed();
    const rev1 = await commitAndPush(bed, { 'clusters/c2/DELETE': 'decommissioned with the lab\n' }, 'c2: delete');
    const report = (await svc.reconciler.runPass()) as PassReport;
    expect(report.revision).to.equal(rev1);
    expect(report.submitted.map((s) => [s.cluster, s.kind])).to.deep.equal([['c2', 'delete']]);
    const [wf] = await waitForWorkflows(bed, 1, 'capflow.io/kind=delete');
    expect(wf!.spec.workflowTemplateRef?.name).to.equal('cluster-delete');
    expect(paramsOf(wf!)).to.include({ 'cluster-path': 'clusters/c2', 'cluster-name': 'c2' });
    expect({ name: wf!.metadata.name, revision: paramsOf(wf!).revision, label: wf!.metadata.labels?.['capflow.io/revision'] }, 'the last applied revision').to.deep.equal({
      name: runName('delete', 'c2', bed.rev0, 1),
      revision: bed.rev0,
      label: bed.rev0,
    });
    await setWorkflowStatus(kc, bed.ns, wf!.metadata.name, succeeded());
    await waitForRecord(bed, 'c2', 'Deleted', (d) => d.phase === 'Deleted');
    expect((await svc.reconciler.runPass())?.submitted).to.deep.equal([]);
    expect(await workflows(bed, 'capflow.io/kind=delete')).to.have.length(1);
    expect(await workflows(bed)).to.have.length(4);
  });

  it('a failed run (the test marks it Failed at step provision-vpc) is recorded with its step and message and retried as attempt 2 once, not before the backoff', async () => {
    // 6 s: long enough for the `capflow status` child below to start and read the records before the retry on a loaded machine.
    const BACKOFF = 6_000;
    const { bed, svc } = await appliedBed(THREE, { retryBaseMs: BACKOFF });
    const rev1 = await commitAndPush(bed, withReplicas('c1', 3), 'c1: three workers');
    await svc.reconciler.runPass();
    const [first] = await waitForWorkflows(bed, 1, `capflow.io/revision=${rev1}`);
    expect(first!.metadata.name).to.equal(runName('apply', 'c1', rev1, 1));

    await setWorkflowStatus(kc, bed.ns, first!.metadata.name, failed('provision-vpc', 'VpcLimitExceeded: the maximum number of VPCs has been reached'));
    const rec = await waitForRecord(bed, 'c1', 'Failed', (d) => d.phase === 'Failed' && d.nextRetryAt !== undefined);
    expect(rec).to.include({ 'run.workflow': first!.metadata.name, 'run.phase': 'Failed', 'run.failedStep': 'provision-vpc', failures: '1' });
    expect(rec['run.message']).to.include('VpcLimitExceeded');
    const recordReadAt = Date.now();
    const retryAt = Date.parse(rec.nextRetryAt!);
    // the backoff (± 33 %) counts from when the reconciler saw the failure: after the run finished, before the record was read
    expect(retryAt - Date.parse(rec['run.finishedAt'] ?? rec['run.submittedAt']!), 'from the finish').to.be.at.least(BACKOFF * 0.66);
    expect(retryAt - recordReadAt, 'from the read').to.be.at.most(BACKOFF * 1.34);
    // `capflow status --json` shows the failure while the retry waits (read concurrently with the passes below)
    const statusRead = status(bed, true);

    // passes before the backoff do not retry; the retry comes by itself after it, once
    const attempt2 = runName('apply', 'c1', rev1, 2);
    let passesBefore = 0;
    const seenAt = await waitUntil(
      'attempt 2',
      async () => {
        if (Date.now() < retryAt - 300) {
          await svc.reconciler.runPass();
          passesBefore++;
        }
        const names = (await applies(bed, 'c1')).map((w) => w.metadata.name);
        return names.includes(attempt2) ? Date.now() : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100, describe: () => describe_(bed) },
    );
    expect(seenAt).to.be.at.least(retryAt);
    // passes ran before the backoff and none retried (how many fit in it depends on the machine's speed)
    expect(passesBefore).to.be.at.least(1);
    const st = JSON.parse((await statusRead).stdout) as Array<Record<string, unknown>>;
    const c1 = st.find((r) => r.cluster === 'c1')!;
    expect(c1.phase).to.equal('Failed');
    expect(c1.run).to.include({ workflow: first!.metadata.name, failedStep: 'provision-vpc' });
    expect((c1.run as { message: string }).message).to.include('VpcLimitExceeded');
    await svc.reconciler.runPass();
    await svc.reconciler.whenIdle();
    expect((await applies(bed, 'c1')).map((w) => w.metadata.name).sort()).to.deep.equal([runName('apply', 'c1', bed.rev0, 1), runName('apply', 'c1', rev1, 1), attempt2].sort());
    const wf2 = (await workflows(bed)).find((w) => w.metadata.name === attempt2)!;
    expect(wf2.metadata.labels?.['capflow.io/attempt']).to.equal('2');
    expect(paramsOf(wf2)).to.include({ revision: rev1, 'cluster-path': 'clusters/c1' });
    await waitForRecord(bed, 'c1', 'Running attempt 2', (d) => d.phase === 'Running' && d['run.workflow'] === attempt2 && d['run.attempt'] === '2');
  });

  it('SIGKILLed while submitting, `capflow reconcile --once` rerun neither loses nor duplicates a submission (20 new clusters; exactly one Workflow each)', async function () {
    requireBuild();
    const names = Array.from({ length: 20 }, (_, i) => `k${String(i + 1).padStart(2, '0')}`);
    const bed = await newBed(names);
    const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-reconcile-cache-'));
    cleanups.push(async () => rmSync(cacheDir, { recursive: true, force: true }));
    const args = ['reconcile', '--once', '--repo', bed.remote.url, '--branch', 'main', '--namespace', bed.ns, '--kubeconfig', env.kubeconfigPath, '--cache-dir', cacheDir, '--max-concurrent-submissions', '1'];

    // watch Workflows; SIGKILL the reconciler at the first one
    const first = await new Promise<{ killedWith: number }>((resolve, reject) => {
      let child: ChildProcess | undefined;
      let killed = false;
      void new Watch(kc)
        .watch(
          `/apis/${ARGO.group}/${ARGO.version}/namespaces/${bed.ns}/${ARGO.plural}`,
          {},
          (type) => {
            if (type !== 'ADDED' || killed || !child) return;
            killed = true;
            child.kill('SIGKILL');
            void listWorkflows(kc, bed.ns).then((w) => resolve({ killedWith: w.length }), reject);
          },
          (err) => {
            if (err && !killed) reject(err as Error);
          },
        )
        .then((req: { abort(): void }) => {
          cleanups.push(async () => req.abort());
          const run = capflow(args);
          child = run.child;
          void run.done.then((r) => {
            if (!killed) reject(new Error(`reconcile exited (${r.code}) before any Workflow was seen:\n${r.stderr.slice(-3000)}`));
          });
        }, reject);
    });
    // the kill landed mid-pass: some, not all, were submitted
    await new Promise((r) => setTimeout(r, 200));
    const afterKill = await workflows(bed);
    expect(afterKill.length, `workflows at the kill: ${first.killedWith}`).to.be.below(names.length);

    const rerun = await capflow(args).done;
    expect(rerun.code, rerun.stderr.slice(-3000)).to.equal(0);

    const wfs = await workflows(bed);
    expect(wfs.map((w) => w.metadata.name).sort()).to.deep.equal(names.map((n) => runName('apply', n, bed.rev0, 1)).sort());
    const records = await listRecords(kc, bed.ns);
    expect([...records.keys()].sort()).to.deep.equal(names);
    for (const n of names) {
      const d = records.get(n)!.data;
      expect(d, n).to.include({ phase: 'Running', 'run.workflow': runName('apply', n, bed.rev0, 1), 'run.kind': 'apply', 'run.revision': bed.rev0, 'run.attempt': '1', gitRevision: bed.rev0 });
      expect(d['run.phase'], n).to.be.oneOf(['Pending', 'Running']);
      expect(d['run.specHash'], n).to.equal(d.specHash);
    }
  });

  it('two replicas on one Lease submit once; when the leader stops, the other takes over and handles the next push', async () => {
    const bed = await newBed(THREE);
    const common = { leaderElection: true, leaseName: 'capflow-test-lease' };
    const a = await startService(bed, { ...common, identity: 'replica-a' });
    const b = await startService(bed, { ...common, identity: 'replica-b' });
    const holder = await waitUntil('a leader', () => leaseHolder(kc, bed.ns, 'capflow-test-lease'));
    const [leader, follower] = holder === 'replica-a' ? [a, b] : [b, a];
    expect(holder).to.be.oneOf(['replica-a', 'replica-b']);

    // both are asked to pass: only the leader submits
    const [ra, rb] = await Promise.all([a.reconciler.runPass(), b.reconciler.runPass()]);
    expect([ra, rb].filter((r) => r === undefined)).to.have.length(1);
    await waitForWorkflows(bed, 3);
    await succeedAll(bed);
    for (const c of THREE) await waitForRecord(bed, c, 'Succeeded', (d) => d.phase === 'Succeeded');

    const rev1 = await commitAndPush(bed, withReplicas('c1', 3), 'c1 changed');
    const hook = githubPush(SECRET, { after: rev1 });
    const answers = await Promise.all([postWebhook(`${a.url}${WEBHOOK_PATH}`, hook), postWebhook(`${b.url}${WEBHOOK_PATH}`, hook)]);
    for (const r of answers) expect(r.status, r.body).to.be.within(200, 299);
    await waitForWorkflows(bed, 1, `capflow.io/revision=${rev1}`);
    await Promise.all([a.reconciler.whenIdle(), b.reconciler.whenIdle()]);
    expect(await workflows(bed)).to.have.length(4);
    expect(follower.reconciler.lastPass()).to.equal(undefined);

    await leader.stop();
    const next = holder === 'replica-a' ? 'replica-b' : 'replica-a';
    await waitUntil(`${next} holds the lease`, async () => (await leaseHolder(kc, bed.ns, 'capflow-test-lease')) === next, { timeoutMs: 10_000 });
    const rev2 = await commitAndPush(bed, withReplicas('c2', 3), 'c2 changed');
    const res = await postWebhook(`${follower.url}${WEBHOOK_PATH}`, githubPush(SECRET, { after: rev2 }));
    expect(res.status, res.body).to.be.within(200, 299);
    const [wf] = await waitForWorkflows(bed, 1, `capflow.io/revision=${rev2}`);
    expect(wf!.metadata.name).to.equal(runName('apply', 'c2', rev2, 1));
    await follower.reconciler.whenIdle();
    expect(await workflows(bed)).to.have.length(5);
  });

  it('two replicas on one Lease: a signed push sent only to the replica that does not lead is handed over (state ConfigMap) and gives one Workflow at once, long before the poll; the standby runs no pass', async () => {
    const bed = await newBed(THREE);
    // polling every 10 min: only the hand-over can bring the commit in within the test
    const common = { leaderElection: true, leaseName: 'capflow-test-lease', pollIntervalMs: 600_000 };
    const a = await startService(bed, { ...common, identity: 'replica-a' });
    const b = await startService(bed, { ...common, identity: 'replica-b' });
    const holder = await waitUntil('a leader', () => leaseHolder(kc, bed.ns, 'capflow-test-lease'));
    const [leader, standby] = holder === 'replica-a' ? [a, b] : [b, a];
    const standbyName = holder === 'replica-a' ? 'replica-b' : 'replica-a';

    await leader.reconciler.runPass();
    await waitForWorkflows(bed, 3);
    await succeedAll(bed);
    for (const c of THREE) await waitForRecord(bed, c, 'Succeeded', (d) => d.phase === 'Succeeded');
    await leader.reconciler.whenIdle();

    const rev1 = await commitAndPush(bed, withReplicas('c1', 3), 'c1 changed');
    const sent = Date.now();
    const res = await postWebhook(`${standby.url}${WEBHOOK_PATH}`, githubPush(SECRET, { after: rev1 }));
    expect(res.status, res.body).to.be.within(200, 299);
    const [wf] = await waitForWorkflows(bed, 1, `capflow.io/revision=${rev1}`);
    expect(Date.now() - sent, 'push to Workflow').to.be.below(5_000);
    expect(wf!.metadata.name).to.equal(runName('apply', 'c1', rev1, 1));
    await Promise.all([a.reconciler.whenIdle(), b.reconciler.whenIdle()]);
    expect(await workflows(bed)).to.have.length(4);
    expect(standby.reconciler.lastPass()).to.equal(undefined);

    const state = await kc.makeApiClient(CoreV1Api).readNamespacedConfigMap({ name: 'capflow-reconciler-state', namespace: bed.ns });
    expect(state.data).to.include({ 'lastPush.provider': 'github', 'lastPush.after': rev1, 'lastPush.by': standbyName });
    const metric = async (svc: Service): Promise<string> => (await (await fetch(`${svc.url}/metrics`)).text()).split('\n').filter((l) => l.startsWith('capflow_reconciler_push_handovers_total')).join('\n');
    expect(await metric(standby)).to.contain('capflow_reconciler_push_handovers_total{result="sent"} 1');
    expect(await metric(leader)).to.contain('capflow_reconciler_push_handovers_total{result="received"} 1');
  });

  // Issue 10 item 5: specs load in a worker thread. While the leader parses a huge folder (two
  // 1.9 MB key-dense ConfigMaps, inside the limits: seconds of CPU) and refuses one over the limits,
  // both replicas answer /healthz and webhooks within a second and the leader keeps renewing its
  // Lease (renew deadline 1.5 s here: a stalled event loop would lose it to the other replica).
  it('a huge folder and one over the limits delay neither /healthz, a webhook nor the Lease; the other clusters are submitted, the hostile one is Invalid', async () => {
    const configMap = (name: string, keys: number): string =>
      ['apiVersion: v1', 'kind: ConfigMap', 'metadata:', `  name: ${name}`, 'data:', ...Array.from({ length: keys }, (_, i) => `  key${i}: "value-${i}-${'x'.repeat(30)}"`), ''].join('\n');
    const bed = await newBed(THREE);
    await commitAndPush(
      bed,
      {
        ...clusterFiles('huge'),
        'clusters/huge/big-a.yaml': configMap('big-a', 36_000),
        'clusters/huge/big-b.yaml': configMap('big-b', 36_000),
        ...clusterFiles('hostile'),
        'clusters/hostile/big.yaml': configMap('big', 50_000),
      },
      'a huge cluster folder and one over the limits',
    );
    const common = { leaderElection: true, leaseName: 'capflow-test-lease' };
    const a = await startService(bed, { ...common, identity: 'replica-a' });
    const b = await startService(bed, { ...common, identity: 'replica-b' });

    // from here on, both replicas are watched: the leader's first pass (on becoming leader) loads the folders
    const answers: Array<{ what: string; ms: number; status: number }> = [];
    const holders = new Set<string | undefined>();
    const timed = async (what: string, call: () => Promise<number>): Promise<void> => {
      const t0 = performance.now();
      const status = await call();
      answers.push({ what, ms: performance.now() - t0, status });
    };
    let passing = true;
    const watching = (async () => {
      for (let i = 0; passing; i++) {
        const before = randomHex40();
        await Promise.all([
          timed('replica-a /healthz', async () => (await fetch(`${a.url}/healthz`)).status),
          timed('replica-b /healthz', async () => (await fetch(`${b.url}/healthz`)).status),
          i % 10 === 3 ? timed('replica-a webhook', async () => (await postWebhook(`${a.url}${WEBHOOK_PATH}`, githubPush(SECRET, { after: bed.rev0, before }))).status) : undefined,
          i % 10 === 8 ? timed('replica-b webhook', async () => (await postWebhook(`${b.url}${WEBHOOK_PATH}`, githubPush(SECRET, { after: bed.rev0, before }))).status) : undefined,
          leaseHolder(kc, bed.ns, 'capflow-test-lease').then((h) => h !== undefined && holders.add(h)),
        ]);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const hostile = await waitForRecord(bed, 'hostile', 'Invalid', (d) => d.phase === 'Invalid');
    await waitForWorkflows(bed, 4);
    for (const c of [...THREE, 'huge']) await waitForRecord(bed, c, 'Running', (d) => d.phase === 'Running');
    await Promise.all([a.reconciler.whenIdle(), b.reconciler.whenIdle()]);
    passing = false;
    await watching;

    expect(hostile.errors).to.match(/^clusters\/hostile\/big\.yaml the file is 2\.\d MiB, over the limit of 2 MiB per file; it was not read/);
    expect((await applies(bed)).map((w) => w.metadata.labels?.['capflow.io/cluster']).sort()).to.deep.equal(['c1', 'c2', 'c3', 'huge']);
    expect(holders.size, `Lease holders seen while the folders loaded: ${[...holders].join(', ')}`).to.equal(1);
    expect(answers.filter((x) => x.status < 200 || x.status > 299), 'answers that were not 2xx').to.deep.equal([]);
    expect(answers.filter((x) => x.what.endsWith('/healthz')).length, 'probes during the pass').to.be.above(5);
    expect(answers.filter((x) => x.what.endsWith('webhook')).length, 'webhooks during the pass').to.be.above(1);
    const slowest = answers.reduce((m, x) => (x.ms > m.ms ? x : m));
    expect(slowest.ms, `slowest answer (${slowest.what})`).to.be.below(1_000);
  });

  it('drift, policy report: a plan reporting changes (the test plays the controller) marks the cluster Drifted and submits no apply', async () => {
    const { bed, svc } = await appliedBed(THREE, { driftIntervalMs: 1_500, driftPolicy: 'report' });
    const plans = await waitUntil('one plan per cluster', async () => {
      const p = await workflows(bed, 'capflow.io/kind=plan');
      return new Set(p.map((w) => w.metadata.labels?.['capflow.io/cluster'])).size === 3 ? p : undefined;
    }, { describe: () => describe_(bed) });
    for (const p of plans) {
      expect(p.spec.workflowTemplateRef?.name).to.equal('cluster-plan');
      const cluster = p.metadata.labels!['capflow.io/cluster']!;
      expect(paramsOf(p)).to.include({ revision: bed.rev0, 'cluster-path': `clusters/${cluster}` });
      await setWorkflowStatus(kc, bed.ns, p.metadata.name, planned(cluster === 'c1' ? 3 : 0));
    }
    const c1 = await waitForRecord(bed, 'c1', 'Drifted', (d) => d.drift === 'Drifted');
    expect(c1).to.include({ driftChanges: '3', phase: 'Succeeded' });
    expect((await readRecord(kc, bed.ns, 'c1'))?.labels['capflow.io/drift']).to.equal('Drifted');
    for (const c of ['c2', 'c3']) await waitForRecord(bed, c, 'InSync', (d) => d.drift === 'InSync' && d.driftChanges === '0');
    await svc.reconciler.runPass();
    await svc.reconciler.whenIdle();
    expect(await applies(bed)).to.have.length(3);

    const table = (await status(bed, false)).stdout;
    expect(table.split('\n').find((l) => /\bc1\b/.test(l))).to.match(/Drifted/);
  });

  it('drift, policy enforce: a plan reporting changes (the test plays the controller) submits one cluster-apply for that cluster at the applied revision', async () => {
    const { bed, svc } = await appliedBed(THREE, { driftIntervalMs: 1_500, driftPolicy: 'enforce' });
    const plans = await waitUntil('one plan per cluster', async () => {
      const p = await workflows(bed, 'capflow.io/kind=plan');
      return new Set(p.map((w) => w.metadata.labels?.['capflow.io/cluster'])).size === 3 ? p : undefined;
    });
    for (const p of plans) await setWorkflowStatus(kc, bed.ns, p.metadata.name, planned(p.metadata.labels!['capflow.io/cluster'] === 'c2' ? 1 : 0));
    const fix = await waitUntil('an apply for drifted c2', async () => {
      const a = await applies(bed, 'c2');
      return a.length === 2 ? a.find((w) => w.metadata.name !== runName('apply', 'c2', bed.rev0, 1)) : undefined;
    }, { describe: () => describe_(bed) });
    expect(fix.metadata.labels?.['capflow.io/revision']).to.equal(bed.rev0);
    expect(paramsOf(fix)).to.include({ revision: bed.rev0, 'cluster-path': 'clusters/c2' });
    await svc.reconciler.runPass();
    await svc.reconciler.whenIdle();
    expect(await applies(bed)).to.have.length(4);
    expect(await applies(bed, 'c1')).to.have.length(1);
    expect(await applies(bed, 'c3')).to.have.length(1);
  });

  it('pause: a commit setting Cluster spec.paused submits nothing (record and `capflow status` Paused at file:line, the pause marker Secret written); a change while paused submits nothing; unpaused, one cluster-apply at the head; the annotation form paused and unpaused with no change submits nothing', async () => {
    const { bed, svc } = await appliedBed();
    const core = kc.makeApiClient(CoreV1Api);
    const marker = async (c: string): Promise<Record<string, string> | undefined> => {
      try {
        const s = await core.readNamespacedSecret({ name: `capflow-${c}-paused`, namespace: bed.ns });
        return Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
      } catch {
        return undefined;
      }
    };
    const clusterYaml = (c: string): string => clusterFile(c, 'cluster.yaml');
    const pausedYaml = (c: string): string => {
      const next = clusterYaml(c).replace('\nspec:\n  clusterNetwork:', '\nspec:\n  paused: true\n  clusterNetwork:');
      expect(next).to.not.equal(clusterYaml(c));
      return next;
    };
    const where = 'clusters/c2/cluster.yaml:8 spec.paused';

    const rev1 = await commitAndPush(bed, { 'clusters/c2/cluster.yaml': pausedYaml('c2') }, 'c2: paused');
    const paused = (await svc.reconciler.runPass()) as PassReport;
    expect(paused.submitted).to.deep.equal([]);
    await svc.reconciler.whenIdle();
    const rec = await waitForRecord(bed, 'c2', 'Paused', (d) => d.phase === 'Paused');
    expect(rec).to.include({ paused: where, pausedRevision: rev1, pauseMarker: 'set', appliedRevision: bed.rev0 });
    expect(rec.message).to.equal(`paused by ${rev1.slice(0, 12)} at ${where}: nothing is submitted (no apply, delete or drift plan) until it is unpaused`);
    expect((await readRecord(kc, bed.ns, 'c2'))?.labels['capflow.io/phase']).to.equal('Paused');
    expect(await marker('c2')).to.include({ revision: rev1, where });
    const table = (await status(bed, false)).stdout;
    expect(table.split('\n').find((l) => /^c2\s/.test(l))).to.match(/\bPaused\b/);

    // a spec change while paused: nothing submitted, the commit that paused stays named
    const rev2 = await commitAndPush(bed, { ...withReplicas('c2', 3), 'clusters/c2/cluster.yaml': pausedYaml('c2') }, 'c2: three workers, still paused');
    expect(((await svc.reconciler.runPass()) as PassReport).submitted).to.deep.equal([]);
    expect((await readRecord(kc, bed.ns, 'c2'))?.data).to.include({ phase: 'Paused', pausedRevision: rev1, gitRevision: rev2 });
    await svc.reconciler.whenIdle();
    expect(await workflows(bed)).to.have.length(3);

    // unpaused: one apply of the spec at the head, the marker removed
    const rev3 = await commitAndPush(bed, { 'clusters/c2/cluster.yaml': clusterYaml('c2') }, 'c2: unpaused');
    const resumed = (await svc.reconciler.runPass()) as PassReport;
    expect(resumed.submitted.map((x) => x.workflow)).to.deep.equal([runName('apply', 'c2', rev3, 1)]);
    await svc.reconciler.whenIdle();
    expect(await workflows(bed)).to.have.length(4);
    expect(await marker('c2')).to.equal(undefined);
    const after = (await readRecord(kc, bed.ns, 'c2'))!.data;
    expect(after.paused).to.equal(undefined);
    expect(after.pauseMarker).to.equal(undefined);

    // the annotation form (any value), on an applied cluster: paused, then unpaused with no other change: nothing new
    const annotated = clusterYaml('c3').replace('  name: c3\nspec:', '  name: c3\n  annotations:\n    cluster.x-k8s.io/paused: ""\nspec:');
    expect(annotated).to.not.equal(clusterYaml('c3'));
    await commitAndPush(bed, { 'clusters/c3/cluster.yaml': annotated }, 'c3: paused by annotation');
    expect(((await svc.reconciler.runPass()) as PassReport).submitted).to.deep.equal([]);
    expect((await readRecord(kc, bed.ns, 'c3'))?.data).to.include({ phase: 'Paused', paused: 'clusters/c3/cluster.yaml:8 metadata.annotations[cluster.x-k8s.io/paused]' });
    expect(await marker('c3')).to.not.equal(undefined);
    await commitAndPush(bed, { 'clusters/c3/cluster.yaml': clusterYaml('c3') }, 'c3: unpaused');
    expect(((await svc.reconciler.runPass()) as PassReport).submitted).to.deep.equal([]);
    await svc.reconciler.whenIdle();
    expect((await readRecord(kc, bed.ns, 'c3'))?.data).to.include({ phase: 'Succeeded', appliedRevision: bed.rev0 });
    expect(await marker('c3')).to.equal(undefined);
    expect(await workflows(bed)).to.have.length(4);
  });

  it('pause with a run in flight (the test plays the controller): the Workflow gets spec.suspend true and the marker is written; unpaused with the same spec it is resumed (suspend false); a run whose step stopped for the pause (exit code 4) is not counted as a failure', async () => {
    const { bed, svc } = await appliedBed();
    const rev1 = await commitAndPush(bed, withReplicas('c1', 3), 'c1: three workers');
    const [wf] = (await svc.reconciler.runPass())!.submitted;
    expect(wf!.workflow).to.equal(runName('apply', 'c1', rev1, 1));
    await setWorkflowStatus(kc, bed.ns, wf!.workflow, running());
    await svc.reconciler.whenIdle();
    const suspendOf = async (): Promise<unknown> => ((await workflows(bed)).find((w) => w.metadata.name === wf!.workflow)!.spec as { suspend?: boolean }).suspend;

    const pausedYaml = clusterFile('c1', 'cluster.yaml').replace('\nspec:\n  clusterNetwork:', '\nspec:\n  paused: true\n  clusterNetwork:');
    const rev2 = await commitAndPush(bed, { ...withReplicas('c1', 3), 'clusters/c1/cluster.yaml': pausedYaml }, 'c1: paused');
    expect(((await svc.reconciler.runPass()) as PassReport).submitted).to.deep.equal([]);
    await svc.reconciler.whenIdle();
    expect(await suspendOf()).to.equal(true);
    const rec = await waitForRecord(bed, 'c1', 'Paused', (d) => d.phase === 'Paused');
    expect(rec.message).to.include(`${wf!.workflow} is suspended and its running step stops at its next safe point`);
    expect(rec.pausedRevision).to.equal(rev2);

    // unpaused, same spec as the run's: resumed, nothing new submitted
    const rev3 = await commitAndPush(bed, { 'clusters/c1/cluster.yaml': clusterFile('c1', 'cluster.yaml') }, 'c1: unpaused');
    expect(((await svc.reconciler.runPass()) as PassReport).submitted).to.deep.equal([]);
    await svc.reconciler.whenIdle();
    expect(await suspendOf()).to.equal(false);
    // its step had stopped at a safe point (exit 4, as Argo reports it): not a failure, applied again at once
    await setWorkflowStatus(kc, bed.ns, wf!.workflow, failed('provision-vpc', 'Error (exit code 4)'));
    const data = await waitForRecord(bed, 'c1', 'the apply at the head submitted', (d) => d['run.revision'] === rev3);
    expect(data).to.include({ failures: '0', 'run.kind': 'apply', 'run.workflow': runName('apply', 'c1', rev3, 1) });
    expect(data.nextRetryAt).to.equal(undefined);
    await svc.reconciler.whenIdle();
    expect((await applies(bed, 'c1')).map((w) => w.metadata.name).sort()).to.deep.equal([runName('apply', 'c1', bed.rev0, 1), wf!.workflow, runName('apply', 'c1', rev3, 1)].sort());
  });

  it('`capflow status` prints a row per cluster (revision applied, in Git, phase, last run, drift, errors) and the same as JSON', async () => {
    const { bed, svc } = await appliedBed();
    const rev1 = await commitAndPush(bed, withReplicas('c1', 3), 'c1 changed');
    await svc.reconciler.runPass();
    await waitForRecord(bed, 'c1', 'Running', (d) => d.phase === 'Running' && d.gitRevision === rev1);

    const table = (await status(bed, false)).stdout;
    const lines = table.trimEnd().split('\n');
    expect(lines[0]).to.match(/CLUSTER/i).and.match(/PHASE/i).and.match(/DRIFT/i);
    const row = (c: string): string => lines.find((l) => l.split(/\s+/)[0] === c) ?? '';
    expect(row('c1')).to.include('Running').and.include(rev1.slice(0, 7)).and.include(bed.rev0.slice(0, 7));
    expect(row('c2')).to.include('Succeeded').and.include(bed.rev0.slice(0, 7));
    expect(row('c3')).to.include('Succeeded');

    const json = JSON.parse((await status(bed, true)).stdout) as unknown;
    const rows = (Array.isArray(json) ? json : (json as { clusters: unknown[] }).clusters) as Array<Record<string, unknown>>;
    expect(rows).to.have.length(3);
    const c1 = rows.find((x) => x.cluster === 'c1')!;
    expect(JSON.stringify(c1)).to.include(rev1).and.include(bed.rev0).and.include(runName('apply', 'c1', rev1, 1));
    expect(c1.phase).to.equal('Running');
  });
});
