// capflow under Argo itself: the real workflow-controller runs the chart's WorkflowTemplates against
// the test bed's kube-apiserver; the pods it creates are run by a stand-in for the kubelet
// (test/support/pod-stand-in.ts) from the executor image's entry point; AWS is moto. Workflows are
// submitted, retried and resubmitted with the real argo CLI, as the UI's buttons do.

import { expect } from 'chai';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { CreateVpcCommand, DeleteVpcCommand, EC2Client } from '@aws-sdk/client-ec2';
import { podNodes, startArgoBed, type ArgoBed, type Workflow } from '../support/argo.js';
import { snapshotWorld, type World } from '../support/aws-world.js';
import { spawnCapflow } from '../support/cli.js';
import { git } from '../support/git-remote.js';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http.js';
import { awsTestEnv, clientConfig, startMoto, TEST_REGION, type Moto } from '../support/moto.js';
import { readRecord } from '../support/gitops.js';
import { KubeWorkflowClient } from '../../src/gitops/workflow-client.js';
import { helmTemplate, REPO_ROOT } from '../support/tools.js';

const CLUSTER = 'aws-small';
// assembled at run time: a literal token-looking string in the source would trip secret scanners
const TOKEN = ['argo', 'bed', 'token', String(process.pid)].join('-');

describe('Argo for real: the workflow controller runs capflow’s templates (pods run by the pod stand-in)', function () {
  this.timeout(300_000);
  let moto: Moto;
  let bed: ArgoBed;
  let repoRoot: string;
  let repoUrl: string;
  let gitServer: GitHttpServer;
  let revision: string;

  before(async function () {
    this.timeout(180_000);
    moto = await startMoto();
    // The GitOps repository, served over HTTP by the real `git http-backend` behind a token; the
    // pods get the token from the Secret the templates mount (capflow-git-credentials).
    repoRoot = mkdtempSync(join(tmpdir(), 'capflow-argo-repo-'));
    const work = join(repoRoot, 'work');
    mkdirSync(join(work, 'clusters'), { recursive: true });
    cpSync(join(REPO_ROOT, 'examples', 'clusters', CLUSTER), join(work, 'clusters', CLUSTER), { recursive: true });
    await git(work, 'init', '-q', '-b', 'main');
    await git(work, 'add', '-A');
    await git(work, 'commit', '-q', '-m', 'aws-small');
    revision = await git(work, 'rev-parse', 'HEAD');
    await git(repoRoot, 'clone', '-q', '--bare', work, join(repoRoot, 'remote.git'));
    gitServer = await startGitHttpServer({ projectRoot: repoRoot, username: 'x-access-token', token: TOKEN });
    repoUrl = gitServer.url('remote.git');
    bed = await startArgoBed({
      chartValues: {
        executor: {
          extraEnv: [
            { name: 'AWS_ENDPOINT_URL', value: moto.endpoint },
            { name: 'AWS_REGION', value: TEST_REGION },
            { name: 'AWS_EC2_METADATA_DISABLED', value: 'true' },
            { name: 'AWS_ACCESS_KEY_ID', valueFrom: { secretKeyRef: { name: 'aws-credentials', key: 'access-key-id' } } },
            { name: 'AWS_SECRET_ACCESS_KEY', valueFrom: { secretKeyRef: { name: 'aws-credentials', key: 'secret-access-key' } } },
          ],
        },
      },
    });
    const core = bed.kc.makeApiClient(CoreV1Api);
    await core.createNamespacedSecret({
      namespace: bed.namespace,
      body: { metadata: { name: 'aws-credentials' }, stringData: { 'access-key-id': 'testing', 'secret-access-key': 'testing' } },
    });
    await core.createNamespacedSecret({ namespace: bed.namespace, body: { metadata: { name: 'capflow-git-credentials' }, stringData: { token: TOKEN } } });
  });

  after(async () => {
    await bed?.stop();
    await moto?.stop();
    await gitServer?.stop();
    if (repoRoot) rmSync(repoRoot, { recursive: true, force: true });
  });

  const params = (extra: string[] = []): string[] => [
    '-p', `repo=${repoUrl}`,
    '-p', `revision=${revision}`,
    '-p', `cluster-path=clusters/${CLUSTER}`,
    '-p', `cluster-name=${CLUSTER}`,
    ...extra,
  ];

  /** A world's resources without their ids, comparable across two emulators. */
  const shape = (w: World): string[] => w.resources.map((r) => `${r.kind} ${JSON.stringify(Object.entries(r.tags).sort())}`).sort();
  const attempts = (wf: Workflow, task: string): string[] =>
    podNodes(wf)
      .filter((n) => n.displayName.startsWith(`${task}(`))
      .map((n) => n.outputs?.exitCode ?? '?');
  let applied: string;
  let worldAfterApply: World;

  it('argo submit --from workflowtemplate/cluster-apply (network only) succeeds, every step’s outputs recorded, pods non-root on a read-only root', async () => {
    applied = await bed.submit(['--from', 'workflowtemplate/cluster-apply', ...params(['-p', 'machines=false'])]);
    const wf = await bed.waitForWorkflow(applied, { timeoutMs: 180_000 });
    expect(wf.status?.phase, await bed.explain(applied)).to.equal('Succeeded');
    const pods = podNodes(wf);
    expect(pods.map((n) => n.displayName)).to.deep.equal(['validate-spec(0)', 'provision-vpc(0)']);
    const out = (n: number, key: string): string | undefined => pods[n]!.outputs?.parameters?.find((p) => p.name === key)?.value;
    expect(out(0, 'cluster-name')).to.equal(CLUSTER);
    expect(out(1, 'vpc-id')).to.match(/^vpc-/);
    expect(Number(out(1, 'changes'))).to.be.greaterThan(0);
    // the pods as the controller made them from the templates' defaults
    const pod = (await bed.kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: bed.namespace, labelSelector: `workflows.argoproj.io/workflow=${applied}` })).items[0]!;
    const main = pod.spec!.containers.find((c) => c.name === 'main')!;
    expect(pod.spec!.securityContext).to.include({ runAsNonRoot: true, runAsUser: 65532, fsGroup: 65532 });
    expect(main.securityContext).to.include({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(main.volumeMounts!.map((m) => m.mountPath)).to.include.members(['/tmp', '/var/run/capflow/git']);
    worldAfterApply = await snapshotWorld(moto.endpoint);
    expect(worldAfterApply.counts.vpc).to.equal(1);
  });

  it('makes the same world as the local runner on the same spec and revision', async () => {
    const local = await startMoto();
    const secrets = mkdtempSync(join(tmpdir(), 'capflow-argo-local-'));
    try {
      const r = await spawnCapflow(
        ['run', 'cluster-apply', '-p', `repo=${join(repoRoot, 'work')}`, '-p', `revision=${revision}`, '-p', `cluster-path=clusters/${CLUSTER}`, '-p', `cluster-name=${CLUSTER}`, '-p', 'machines=false'],
        { env: { ...awsTestEnv(local.endpoint), CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: secrets } },
      ).done;
      expect(r.code, r.stderr).to.equal(0);
      expect(shape(await snapshotWorld(local.endpoint))).to.deep.equal(shape(worldAfterApply));
    } finally {
      await local.stop();
      rmSync(secrets, { recursive: true, force: true });
    }
  });

  it('argo resubmit of the succeeded run (the UI’s Resubmit) converges with no change and no duplicate', async () => {
    const r = await bed.argo(['resubmit', applied, '-o', 'name']);
    expect(r.code, r.stderr).to.equal(0);
    const name = r.stdout.trim().split('\n').pop()!;
    expect(name).to.not.equal(applied);
    const wf = await bed.waitForWorkflow(name, { timeoutMs: 120_000 });
    expect(wf.status?.phase, await bed.explain(name)).to.equal('Succeeded');
    const vpcNode = podNodes(wf).find((n) => n.displayName.startsWith('provision-vpc'))!;
    expect(vpcNode.outputs?.parameters?.find((p) => p.name === 'changes')?.value).to.equal('0');
    expect(await snapshotWorld(moto.endpoint)).to.deep.equal(worldAfterApply);
  });

  it('a step exiting 2 is not retried: a wrong Git token in the Secret fails the checkout at once, and the token is in no parameter, pod spec or log', async () => {
    const core = bed.kc.makeApiClient(CoreV1Api);
    const wrong = `${TOKEN}-revoked`;
    await core.replaceNamespacedSecret({ name: 'capflow-git-credentials', namespace: bed.namespace, body: { metadata: { name: 'capflow-git-credentials' }, stringData: { token: wrong } } });
    try {
      const name = await bed.submit(['--from', 'workflowtemplate/cluster-apply', ...params(['-p', 'machines=false'])]);
      const wf = await bed.waitForWorkflow(name);
      expect(wf.status?.phase).to.equal('Failed');
      expect(attempts(wf, 'validate-spec'), await bed.explain(name)).to.deep.equal(['2']);
      expect(attempts(wf, 'provision-vpc')).to.deep.equal([]);
      const log = bed.pods.logOf(bed.pods.runsOf(name)[0]!.pod);
      expect(log).to.include('REPO_AUTH_FAILED');
      const pods = await core.listNamespacedPod({ namespace: bed.namespace });
      const everything = JSON.stringify([await bed.listWorkflows(), pods.items]) + bed.pods.runs.map((r) => bed.pods.logOf(r.pod)).join('\n');
      expect(everything).to.not.include(TOKEN);
      // the server saw the pods authenticate as the Secret's user
      expect(gitServer.requests.some((r) => r.user === 'x-access-token' && r.status === 200)).to.equal(true);
    } finally {
      await core.replaceNamespacedSecret({ name: 'capflow-git-credentials', namespace: bed.namespace, body: { metadata: { name: 'capflow-git-credentials' }, stringData: { token: TOKEN } } });
    }
  });

  it('a step exiting 75 (transient) is retried with backoff and then succeeds', async () => {
    // The repository is not there yet: the checkout fails transiently until it is.
    const name = await bed.submit(['--from', 'workflowtemplate/cluster-apply', ...params(['-p', 'machines=false', '-p', `repo=${gitServer.url('late.git')}`])]);
    await waitFor('the first attempt failed', async () => attempts(await bed.getWorkflow(name), 'validate-spec').includes('75'), 60_000);
    await git(repoRoot, 'clone', '-q', '--bare', join(repoRoot, 'work'), join(repoRoot, 'late.git'));
    const wf = await bed.waitForWorkflow(name, { timeoutMs: 120_000 });
    expect(wf.status?.phase, await bed.explain(name)).to.equal('Succeeded');
    expect(attempts(wf, 'validate-spec')).to.deep.equal(['75', '0']);
    expect(await snapshotWorld(moto.endpoint)).to.deep.equal(worldAfterApply);
  });

  it('argo retry of a failed run (the UI’s Retry) re-runs only the failed step and converges without duplicates', async () => {
    // Someone else's VPC tagged as the cluster's: provision-vpc stops with exit 3 (not retried).
    const ec2 = new EC2Client(clientConfig(moto.endpoint));
    const rogue = await ec2.send(
      new CreateVpcCommand({
        CidrBlock: '10.99.0.0/16',
        TagSpecifications: [{ ResourceType: 'vpc', Tags: [{ Key: `sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`, Value: 'owned' }] }],
      }),
    );
    try {
      const name = await bed.submit(['--from', 'workflowtemplate/cluster-apply', ...params(['-p', 'machines=false'])]);
      let wf = await bed.waitForWorkflow(name);
      expect(wf.status?.phase).to.equal('Failed');
      expect(attempts(wf, 'provision-vpc'), await bed.explain(name)).to.deep.equal(['3']);
      await ec2.send(new DeleteVpcCommand({ VpcId: rogue.Vpc!.VpcId! }));
      const r = await bed.argo(['retry', name]);
      expect(r.code, r.stderr).to.equal(0);
      wf = await bed.waitForWorkflow(name, { phases: ['Succeeded', 'Failed', 'Error'], timeoutMs: 120_000 });
      // the same Workflow object, now Succeeded: validate-spec kept, provision-vpc run again
      for (let i = 0; wf.status?.phase !== 'Succeeded' && i < 40; i++) {
        await new Promise((res) => setTimeout(res, 250));
        wf = await bed.getWorkflow(name);
      }
      expect(wf.status?.phase, await bed.explain(name)).to.equal('Succeeded');
      expect(attempts(wf, 'validate-spec')).to.deep.equal(['0']);
      expect(attempts(wf, 'provision-vpc')).to.deep.equal(['0']);
      expect(bed.pods.runsOf(name).filter((p) => p.argv.includes('provision-vpc')).map((p) => p.exitCode)).to.deep.equal([3, 0]);
      expect(await snapshotWorld(moto.endpoint)).to.deep.equal(worldAfterApply);
    } finally {
      await ec2.send(new DeleteVpcCommand({ VpcId: rogue.Vpc!.VpcId! })).catch(() => undefined);
      ec2.destroy();
    }
  });

  it('two submissions for one cluster are serialized by the mutex: their steps never overlap', async () => {
    const [a, b] = await Promise.all([0, 1].map(() => bed.submit(['--from', 'workflowtemplate/cluster-apply', ...params(['-p', 'machines=false'])])));
    const [wa, wb] = await Promise.all([bed.waitForWorkflow(a!), bed.waitForWorkflow(b!)]);
    expect([wa.status?.phase, wb.status?.phase]).to.deep.equal(['Succeeded', 'Succeeded']);
    const span = (n: string): [number, number] => {
      const runs = bed.pods.runsOf(n);
      return [Math.min(...runs.map((r) => r.startedAt)), Math.max(...runs.map((r) => r.finishedAt ?? Infinity))];
    };
    const [sa, sb] = [span(a!), span(b!)];
    expect(sa[1] <= sb[0] || sb[1] <= sa[0], `runs overlap: ${a} ${sa.join('-')}, ${b} ${sb.join('-')}`).to.equal(true);
    expect(await snapshotWorld(moto.endpoint)).to.deep.equal(worldAfterApply);
  });

  it('a run suspended as the reconciler does on a pause (spec.suspend) starts no further step while suspended; resumed, it succeeds with no duplicate', async () => {
    const client = new KubeWorkflowClient(bed.kc, bed.namespace);
    const name = await bed.submit(['--from', 'workflowtemplate/cluster-apply', ...params(['-p', 'machines=false'])]);
    try {
      await client.setSuspended(name, true);
      // a step pod the controller made before it saw the suspension runs to its end; then nothing new starts
      const settled = async (): Promise<boolean> => {
        const pods = podNodes(await bed.getWorkflow(name));
        return pods.length > 0 && pods.every((n) => n.phase !== 'Pending' && n.phase !== 'Running') && bed.pods.runsOf(name).every((r) => r.finishedAt !== undefined);
      };
      await waitFor('the steps started before the suspension finished', settled, 60_000);
      const held = podNodes(await bed.getWorkflow(name)).length;
      const ran = bed.pods.runsOf(name).length;
      await new Promise((res) => setTimeout(res, 8_000));
      const suspended = await bed.getWorkflow(name);
      expect(podNodes(suspended).length, 'no step made while suspended').to.equal(held);
      expect(bed.pods.runsOf(name).length, 'no pod run while suspended').to.equal(ran);
      expect(suspended.status?.phase, await bed.explain(name)).to.equal('Running');
      await client.setSuspended(name, false);
      const wf = await bed.waitForWorkflow(name, { timeoutMs: 120_000 });
      expect(wf.status?.phase, await bed.explain(name)).to.equal('Succeeded');
      expect(podNodes(wf).length, 'the steps held back ran after the resume').to.be.greaterThan(held);
      expect(await snapshotWorld(moto.endpoint)).to.deep.equal(worldAfterApply);
    } finally {
      // never leave a suspended run holding the cluster's mutex for the cases after this one
      if ((await bed.getWorkflow(name)).status?.phase === 'Running') await client.stop(name);
    }
  });

  it('the reconciler’s cluster-apply runs under the controller and its result is recorded (repository credentials only in the reconciler’s URL)', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'capflow-argo-reconciler-'));
    const withToken = new URL(repoUrl);
    withToken.username = 'x-access-token';
    withToken.password = TOKEN;
    const reconciler = spawnCapflow(
      [
        'reconcile', '--repo', withToken.toString(), '--namespace', bed.namespace, '--kubeconfig', bed.env.kubeconfigPath,
        '--listen', '127.0.0.1:0', '--no-leader-elect', '--poll-interval', '1s', '--drift-interval', '0', '--cache-dir', cache,
        '--apply-parameter', 'machines=false',
      ],
      { env: { CAPFLOW_LOG_FORMAT: 'json' } },
    );
    try {
      await waitFor('the reconciler recorded a finished apply', async () => ['Succeeded', 'Failed'].includes((await readRecord(bed.kc, bed.namespace, CLUSTER))?.data['run.phase'] ?? ''), 120_000);
      const record = (await readRecord(bed.kc, bed.namespace, CLUSTER))!;
      const name = record.data['run.workflow']!;
      expect(record.phase, `${JSON.stringify(record.data)}\n${await bed.explain(name)}`).to.equal('Succeeded');
      expect(record.data).to.include({ 'run.kind': 'apply', 'run.phase': 'Succeeded', appliedRevision: revision });
      const wf = await bed.getWorkflow(name);
      expect(wf.status?.phase).to.equal('Succeeded');
      const parameters = (wf.spec.arguments as { parameters: Array<{ name: string; value: string }> }).parameters;
      expect(Object.fromEntries(parameters.map((p) => [p.name, p.value]))).to.include({ repo: repoUrl, revision, machines: 'false', 'cluster-name': CLUSTER });
      expect(JSON.stringify(wf)).to.not.include(TOKEN);
      expect(podNodes(wf).map((n) => n.displayName)).to.deep.equal(['validate-spec(0)', 'provision-vpc(0)']);
    } finally {
      reconciler.child.kill('SIGTERM');
      const r = await reconciler.done;
      rmSync(cache, { recursive: true, force: true });
      expect(r.stdout + r.stderr).to.not.include(TOKEN);
    }
  });

  it('the Argo CD sync-hook Workflow the chart renders runs cluster-apply for its cluster, as the executor', async () => {
    const rendered = await helmTemplate(
      join(REPO_ROOT, 'charts', 'capflow'),
      { reconciler: { enabled: false }, argocd: { syncHook: true, cluster: { name: CLUSTER }, repo: repoUrl, revision, parameters: { machines: 'false' } } },
      { releaseName: 'capflow', namespace: bed.namespace },
    );
    expect(rendered.ok, rendered.output).to.equal(true);
    const hook = parseAllDocuments(rendered.output).map((d) => d.toJS() as { kind?: string; metadata: { name: string } }).find((o) => o?.kind === 'Workflow')!;
    // created as Argo CD creates a hook
    await bed.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: bed.namespace, plural: 'workflows', body: hook });
    const wf = await bed.waitForWorkflow(hook.metadata.name);
    expect(wf.status?.phase, await bed.explain(hook.metadata.name)).to.equal('Succeeded');
    expect(wf.spec.serviceAccountName).to.equal('capflow-executor');
    expect(podNodes(wf).map((n) => n.displayName)).to.deep.equal(['validate-spec(0)', 'provision-vpc(0)']);
    expect(await snapshotWorld(moto.endpoint)).to.deep.equal(worldAfterApply);
  });

  it('every WorkflowTemplate passes Argo’s own validation on create (argo template create); a broken one is refused with the reason', async () => {
    const ns = 'capflow-validate';
    await bed.kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    const dir = join(REPO_ROOT, 'workflow-templates');
    // the steps first: the cluster-* templates refer to them
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort((a, b) => Number(a.startsWith('cluster-')) - Number(b.startsWith('cluster-')) || a.localeCompare(b));
    for (const f of files) {
      const r = await bed.argo(['template', 'create', join(dir, f)], { namespace: ns });
      expect(r.code, `${f}: ${r.stderr}`).to.equal(0);
    }
    const broken = parse(readFileSync(join(dir, 'cluster-plan.yaml'), 'utf8')) as { metadata: { name: string }; spec: { templates: Array<{ dag?: { tasks: Array<{ depends?: string }> } }> } };
    broken.metadata.name = 'cluster-plan-broken';
    broken.spec.templates[0]!.dag!.tasks[1]!.depends = 'no-such-task';
    const file = join(repoRoot, 'broken.yaml');
    writeFileSync(file, stringify(broken));
    const r = await bed.argo(['template', 'create', file], { namespace: ns });
    expect(r.code).to.not.equal(0);
    expect(r.stderr + r.stdout).to.include('no-such-task');
  });

  it('cluster-plan finds the network as Git says, then cluster-delete removes everything the cluster owns', async () => {
    const plan = await bed.submit(['--from', 'workflowtemplate/cluster-plan', ...params()]);
    let wf = await bed.waitForWorkflow(plan);
    expect(wf.status?.phase, await bed.explain(plan)).to.equal('Succeeded');
    const planVpc = podNodes(wf).find((n) => n.displayName.startsWith('plan-vpc'))!;
    expect(planVpc.outputs?.parameters?.find((p) => p.name === 'changes')?.value).to.equal('0');
    expect(podNodes(wf).map((n) => n.displayName.replace(/\(\d+\)$/, ''))).to.deep.equal(['validate-spec', 'plan-vpc', 'plan-nodes', 'plan-addons']);

    const del = await bed.submit(['--from', 'workflowtemplate/cluster-delete', ...params()]);
    wf = await bed.waitForWorkflow(del, { timeoutMs: 180_000 });
    expect(wf.status?.phase, await bed.explain(del)).to.equal('Succeeded');
    expect((await snapshotWorld(moto.endpoint)).resources).to.deep.equal([]);
  });
});

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
