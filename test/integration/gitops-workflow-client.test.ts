import { expect } from 'chai';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { isCapflowError } from '../../src/core/errors.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import type { SubmitRequest, WorkflowView } from '../../src/gitops/types.js';
import { KubeWorkflowClient, workflowName, type ArgoNode, type ArgoWorkflow } from '../../src/gitops/workflow-client.js';
import { runChildScript } from '../support/child-script.js';
import { schemaPath, startEnvtest, type Envtest } from '../support/envtest.js';
import { startRelay } from '../support/tcp-relay.js';
import { REPO_ROOT } from '../support/tools.js';

const NS = 'capflow-system';
const REV = '0123456789abcdef0123456789abcdef01234567';
const WF = { group: 'argoproj.io', version: 'v1alpha1', namespace: NS, plural: 'workflows' };

function request(over: Partial<SubmitRequest> = {}): SubmitRequest {
  return {
    kind: 'apply',
    cluster: 'dev',
    repo: 'https://git.example.com/infra.git',
    revision: REV,
    clusterPath: 'clusters/dev',
    specHash: 'sha256:' + '9'.repeat(64),
    attempt: 0,
    ...over,
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, check: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('gitops/workflow-client: Argo Workflows against a real kube-apiserver with the Argo CRD (envtest)', function () {
  this.timeout(180_000);
  let env: Envtest;
  let custom: CustomObjectsApi;
  let client: KubeWorkflowClient;

  /**
   * No Argo controller runs here: the test plays it, writing status the way the controller does.
   * The Workflow CRD has no status subresource, so status is written by replacing the whole object;
   * the API server validates and prunes it against the real CRD schema.
   */
  async function actAsArgoController(name: string, status: ArgoWorkflow['status']): Promise<ArgoWorkflow> {
    const wf = (await custom.getNamespacedCustomObject({ ...WF, name })) as ArgoWorkflow;
    wf.status = status;
    return (await custom.replaceNamespacedCustomObject({ ...WF, name, body: wf })) as ArgoWorkflow;
  }

  async function countWorkflows(labelSelector: string): Promise<number> {
    const list = (await custom.listNamespacedCustomObject({ ...WF, labelSelector })) as { items: unknown[] };
    return list.items.length;
  }

  before(async () => {
    env = await startEnvtest({ crds: [schemaPath('argo', 'argoproj.io_workflows.yaml')] });
    await env.makeKubeConfig().makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
    custom = env.makeKubeConfig().makeApiClient(CustomObjectsApi);
    client = new KubeWorkflowClient(env.makeKubeConfig(), NS, { serviceAccountName: 'capflow-workflows' });
  });
  after(async () => env?.stop());

  it('names runs deterministically, as DNS labels of at most 63 characters', () => {
    expect(workflowName('apply', 'dev', REV, 0)).to.equal('cluster-apply-dev-0123456789-0');
    expect(workflowName('plan', 'dev', REV, 12)).to.equal('cluster-plan-dev-0123456789-12');
    const forty = 'a'.repeat(39) + 'b';
    const longest = workflowName('delete', forty, REV, 123);
    expect(longest.length).to.be.at.most(63);
    expect(longest).to.match(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(longest).to.equal(workflowName('delete', forty, REV, 123));
    // two long names with the same start stay distinct (a hash of the whole name)
    expect(workflowName('delete', 'a'.repeat(39) + 'c', REV, 123)).to.not.equal(longest);
    expect(workflowName('apply', 'x'.repeat(63), REV, 0).length).to.be.at.most(63);
    expect(() => workflowName('apply', 'Not_A_Label', REV, 0)).to.throw(/DNS-1123/);
    expect(() => workflowName('apply', 'dev', REV, -1)).to.throw(/attempt/);
  });

  it('submits a Workflow with the deterministic name, template ref, parameters and labels', async () => {
    const { workflow, created } = await client.submit(request());
    expect(created).to.equal(true);
    expect(workflow).to.include({ name: 'cluster-apply-dev-0123456789-0', kind: 'apply', cluster: 'dev', revision: REV, attempt: 0, phase: 'Pending' });
    expect(workflow.specHash).to.equal('sha256:' + '9'.repeat(64));
    expect(workflow.createdAt).to.match(/^\d{4}-\d\d-\d\dT/);

    const raw = (await custom.getNamespacedCustomObject({ ...WF, name: workflow.name })) as ArgoWorkflow & {
      spec: { serviceAccountName?: string; workflowTemplateRef?: { name?: string } };
    };
    expect(raw.metadata?.labels).to.deep.equal({
      'app.kubernetes.io/managed-by': 'capflow',
      'capflow.io/cluster': 'dev',
      'capflow.io/revision': REV,
      'capflow.io/spec-hash': 'sha256-' + '9'.repeat(25),
      'capflow.io/kind': 'apply',
      'capflow.io/attempt': '0',
    });
    expect(raw.metadata?.annotations).to.deep.equal({ 'capflow.io/spec-hash': 'sha256:' + '9'.repeat(64), 'capflow.io/cluster-path': 'clusters/dev' });
    expect(raw.spec.workflowTemplateRef).to.deep.equal({ name: 'cluster-apply' });
    expect(raw.spec.serviceAccountName).to.equal('capflow-workflows');
    expect(raw.spec.arguments?.parameters).to.deep.equal([
      { name: 'repo', value: 'https://git.example.com/infra.git' },
      { name: 'revision', value: REV },
      { name: 'cluster-path', value: 'clusters/dev' },
      { name: 'cluster-name', value: 'dev' },
      { name: 'spec-hash', value: 'sha256:' + '9'.repeat(64) },
    ]);
  });

  it('a second submit of the same run adopts the Workflow (created false): still one Workflow', async () => {
    const again = await client.submit(request());
    expect(again.created).to.equal(false);
    expect(again.workflow.name).to.equal('cluster-apply-dev-0123456789-0');
    expect(await countWorkflows('capflow.io/cluster=dev,capflow.io/kind=apply')).to.equal(1);
    expect((await client.list()).map((w) => w.name)).to.deep.equal(['cluster-apply-dev-0123456789-0']);
    expect(await client.get('no-such-workflow')).to.equal(undefined);
  });

  it('refuses to adopt a Workflow of that name that is another run', async () => {
    const name = workflowName('apply', 'squat', REV, 0);
    await custom.createNamespacedCustomObject({
      ...WF,
      body: {
        apiVersion: 'argoproj.io/v1alpha1',
        kind: 'Workflow',
        metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'capflow', 'capflow.io/kind': 'apply' } },
        spec: { workflowTemplateRef: { name: 'cluster-apply' }, arguments: { parameters: [{ name: 'cluster-name', value: 'other' }] } },
      },
    });
    let err: unknown;
    try {
      await client.submit(request({ cluster: 'squat', clusterPath: 'clusters/squat' }));
    } catch (e) {
      err = e;
    }
    expect(isCapflowError(err) && err.code).to.equal('WORKFLOW_NAME_TAKEN');
  });

  it('reads a failed run (status written by the test acting as the Argo controller): first failed leaf and its message', async () => {
    const { workflow } = await client.submit(request({ attempt: 1 }));
    const pod = (id: string, displayName: string, phase: string, finishedAt: string, message?: string): ArgoNode => ({
      id,
      name: `${workflow.name}.${displayName}`,
      displayName,
      type: 'Pod',
      phase,
      startedAt: '2025-01-01T00:00:00Z',
      finishedAt,
      ...(message ? { message } : {}),
    });
    const stored = await actAsArgoController(workflow.name, {
      phase: 'Failed',
      startedAt: '2025-01-01T00:00:00Z',
      finishedAt: '2025-01-01T00:20:00Z',
      message: 'child failed',
      nodes: {
        [workflow.name]: { id: workflow.name, name: workflow.name, displayName: workflow.name, type: 'DAG', phase: 'Failed', children: ['v', 'r'] },
        v: pod('v', 'validate-spec', 'Succeeded', '2025-01-01T00:01:00Z'),
        // provision-vpc was retried: its first attempt failed earliest, but a later attempt superseded it
        r: { id: 'r', name: `${workflow.name}.provision-vpc`, displayName: 'provision-vpc', type: 'Retry', phase: 'Failed', message: 'No more retries left', children: ['r0', 'r1'] },
        r0: pod('r0', 'provision-vpc(0)', 'Failed', '2025-01-01T00:02:00Z', 'exit code 75'),
        r1: pod('r1', 'provision-vpc(1)', 'Failed', '2025-01-01T00:05:00Z', 'VPC limit exceeded'),
        // stopped by the failure, afterwards
        l: pod('l', 'launch-nodes', 'Error', '2025-01-01T00:06:00Z', 'pod deleted'),
      },
    });
    expect(Object.keys(stored.status?.nodes ?? {})).to.have.length(6); // the CRD schema kept every node

    const view = await client.get(workflow.name);
    expect(view).to.include({ phase: 'Failed', failedStep: 'provision-vpc(1)', message: 'VPC limit exceeded', attempt: 1 });
    expect(view).to.include({ startedAt: '2025-01-01T00:00:00Z', finishedAt: '2025-01-01T00:20:00Z' });
    expect(view?.changes).to.equal(undefined);
  });

  it('reads an errored run without failed nodes by the workflow message, and an unpicked one as Pending', async () => {
    const { workflow } = await client.submit(request({ attempt: 2 }));
    expect((await client.get(workflow.name))?.phase).to.equal('Pending');
    await actAsArgoController(workflow.name, { phase: '' });
    expect((await client.get(workflow.name))?.phase).to.equal('Pending');
    await actAsArgoController(workflow.name, { phase: 'Error', message: 'workflowtemplates.argoproj.io "cluster-apply" not found' });
    const view = await client.get(workflow.name);
    expect(view).to.include({ phase: 'Error', message: 'workflowtemplates.argoproj.io "cluster-apply" not found' });
    expect(view?.failedStep).to.equal(undefined);
  });

  it('suspends, resumes and stops a run (spec.suspend, spec.shutdown: a paused cluster), by merge patch; a Workflow already gone is left alone', async () => {
    const { workflow } = await client.submit(request({ attempt: 3 }));
    const spec = async (): Promise<Record<string, unknown>> =>
      ((await custom.getNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace: NS, plural: 'workflows', name: workflow.name })) as { spec: Record<string, unknown> }).spec;
    await client.setSuspended(workflow.name, true);
    expect(await spec()).to.include({ suspend: true });
    expect((await spec()).workflowTemplateRef, 'the rest of the spec is kept').to.deep.equal({ name: 'cluster-apply' });
    await client.setSuspended(workflow.name, false);
    expect(await spec()).to.include({ suspend: false });
    await client.stop(workflow.name);
    expect(await spec()).to.include({ shutdown: 'Stop', suspend: false });
    await client.setSuspended('cluster-apply-gone-0000000000-1', true);
    await client.stop('cluster-apply-gone-0000000000-1');
  });

  it('sums the plan steps’ `changes` outputs, counting each leaf once', async () => {
    const { workflow } = await client.submit(request({ kind: 'plan', attempt: 4 }));
    expect(workflow.name).to.equal('cluster-plan-dev-0123456789-4');
    const out = (v: string): ArgoNode['outputs'] => ({ parameters: [{ name: 'vpc-id', value: 'vpc-1' }, { name: 'changes', value: v }] });
    await actAsArgoController(workflow.name, {
      phase: 'Succeeded',
      nodes: {
        root: { id: 'root', name: workflow.name, displayName: workflow.name, type: 'DAG', phase: 'Succeeded', children: ['a', 'r'] },
        a: { id: 'a', name: `${workflow.name}.plan-vpc`, displayName: 'plan-vpc', type: 'Pod', phase: 'Succeeded', outputs: out('2') },
        // Argo copies the last attempt's outputs to the Retry node: counted once, on the Pod
        r: { id: 'r', name: `${workflow.name}.plan-nodes`, displayName: 'plan-nodes', type: 'Retry', phase: 'Succeeded', children: ['r0', 'r1'], outputs: out('3') },
        r0: { id: 'r0', name: `${workflow.name}.plan-nodes(0)`, displayName: 'plan-nodes(0)', type: 'Pod', phase: 'Failed' },
        r1: { id: 'r1', name: `${workflow.name}.plan-nodes(1)`, displayName: 'plan-nodes(1)', type: 'Pod', phase: 'Succeeded', outputs: out('3') },
      },
    });
    const view = await client.get(workflow.name);
    expect(view).to.include({ kind: 'plan', phase: 'Succeeded', changes: 5, attempt: 4 });
    expect(view?.failedStep).to.equal(undefined);

    const { workflow: quiet } = await client.submit(request({ kind: 'plan', attempt: 5 }));
    await actAsArgoController(quiet.name, {
      phase: 'Succeeded',
      nodes: { a: { id: 'a', name: `${quiet.name}.plan-vpc`, displayName: 'plan-vpc', type: 'Pod', phase: 'Succeeded', outputs: { parameters: [{ name: 'vpc-id', value: 'vpc-1' }] } } },
    });
    expect((await client.get(quiet.name))?.changes).to.equal(undefined);
  });

  it('watch: sees existing runs, new ones and phase changes; nothing after stop', async () => {
    const seen: WorkflowView[] = [];
    const stop = await client.watch((w) => seen.push(w));
    await until('the initial list', () => (seen.some((w) => w.name === 'cluster-apply-dev-0123456789-0') ? true : undefined));

    const { workflow } = await client.submit(request({ cluster: 'watched', clusterPath: 'clusters/watched' }));
    await until('the new run', () => seen.find((w) => w.name === workflow.name && w.phase === 'Pending'));
    await actAsArgoController(workflow.name, { phase: 'Running', startedAt: '2025-01-01T00:00:00Z' });
    await until('Running', () => seen.find((w) => w.name === workflow.name && w.phase === 'Running'));
    await actAsArgoController(workflow.name, { phase: 'Succeeded', startedAt: '2025-01-01T00:00:00Z', finishedAt: '2025-01-01T00:09:00Z' });
    const done = await until('Succeeded', () => seen.find((w) => w.name === workflow.name && w.phase === 'Succeeded'));
    expect(done.finishedAt).to.equal('2025-01-01T00:09:00Z');

    await stop();
    const count = seen.length;
    await actAsArgoController(workflow.name, { phase: 'Failed' });
    await sleep(500);
    expect(seen.length).to.equal(count);
  });

  it('watch: restarts after its connection fails and delivers what changed meanwhile; stop cancels a pending restart', async () => {
    const relay = await startRelay(Number(new URL(env.server).port));
    try {
      const kc = new KubeConfig();
      kc.loadFromString(env.kubeconfig.replace(env.server, `https://127.0.0.1:${relay.port}`));
      const log = createMemoryLogger();
      const relayed = new KubeWorkflowClient(kc, NS, { log, watchRestartMs: 300 });
      const seen: WorkflowView[] = [];
      const stop = await relayed.watch((w) => seen.push(w));
      const { workflow } = await client.submit(request({ cluster: 'flaky', clusterPath: 'clusters/flaky' }));
      await until('the new run', () => seen.find((w) => w.name === workflow.name));

      relay.cut(true); // the watch connection drops and reconnecting is refused for a while
      await until('a logged watch failure', () => (log.lines.some((l) => l.message === 'workflow watch failed; restarting') ? true : undefined));
      await actAsArgoController(workflow.name, { phase: 'Running' }); // (the test's own client is not relayed)
      await sleep(700);
      relay.cut(false);
      await until('the change made while disconnected', () => seen.find((w) => w.name === workflow.name && w.phase === 'Running'));
      await actAsArgoController(workflow.name, { phase: 'Succeeded' });
      await until('a change after reconnecting', () => seen.find((w) => w.name === workflow.name && w.phase === 'Succeeded'));

      // stop while a restart is pending: it must not come back
      relay.cut(true);
      const failures = log.lines.length;
      await until('another watch failure', () => (log.lines.length > failures ? true : undefined));
      await stop();
      relay.cut(false);
      const count = seen.length;
      await actAsArgoController(workflow.name, { phase: 'Failed' });
      await sleep(1000);
      expect(seen.length).to.equal(count);
    } finally {
      await relay.close();
    }
  });

  it('watch: a process that stops its watch exits by itself at once (no timer or connection left)', async () => {
    const script = `
      const { loadKubeConfig } = await import(${JSON.stringify(`${REPO_ROOT}/src/gitops/kube.ts`)});
      const { KubeWorkflowClient } = await import(${JSON.stringify(`${REPO_ROOT}/src/gitops/workflow-client.ts`)});
      const client = new KubeWorkflowClient(loadKubeConfig(process.env.TEST_KUBECONFIG), ${JSON.stringify(NS)});
      await client.submit(${JSON.stringify(request({ cluster: 'exiting', clusterPath: 'clusters/exiting' }))});
      let seen = 0;
      const stop = await client.watch(() => seen++);
      await new Promise((r) => setTimeout(r, 500));
      await stop();
      console.log(JSON.stringify({ seen, stoppedAt: Date.now() }));
    `;
    const { out, exitDelayMs } = await runChildScript<{ seen: number; stoppedAt: number }>(script, { TEST_KUBECONFIG: env.kubeconfigPath });
    expect(out.seen).to.be.above(0);
    expect(exitDelayMs).to.be.below(1000);
  });
});
