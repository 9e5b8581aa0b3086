/**
 * src/addons/readiness.ts against a real kube-apiserver (envtest) with kwok playing the kubelet, the
 * real kube-controller-manager (deployment, replicaset and job controllers) and kube-scheduler: the
 * workload statuses are written by the real controllers, pods are bound by the real scheduler and run
 * (or completed, for Jobs) by kwok. Objects are applied with AddonApplier, as install-addons does.
 */
import { expect } from 'chai';
import { CoreV1Api, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { AddonApplier, type ObjectRef } from '../../src/addons/apply.js';
import { waitReady } from '../../src/addons/readiness.js';
import { CapflowError } from '../../src/core/errors.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { startControllers, type Controllers } from '../support/controllers.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';

const NS = 'apps';

function deployment(name: string, replicas: number, podSpec: Record<string, unknown> = {}): KubernetesObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'main', image: `${name}:1` }], ...podSpec } },
    },
  } as KubernetesObject;
}

function job(name: string, spec: Record<string, unknown> = {}, podSpec: Record<string, unknown> = {}): KubernetesObject {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name },
    spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'migrate:1' }], ...podSpec } }, ...spec },
  } as KubernetesObject;
}

/** A pod template no node matches: the real scheduler marks its pods Unschedulable. */
const nowhere = { nodeSelector: { 'capflow.io/no-such-node': 'true' } };

describe('addons/readiness: waiting for applied objects against a real kube-apiserver, controllers and kwok', function () {
  this.timeout(120_000);
  let env: Envtest;
  let ctl: Controllers;
  let kc: KubeConfig;
  let applier: AddonApplier;
  const log = createMemoryLogger();

  const apply = async (addon: string, objects: KubernetesObject[]): Promise<ObjectRef[]> => (await applier.apply(addon, objects, { namespace: NS })).applied;
  const diagnostics = (): string => `\nkube-controller-manager:\n${ctl.logTail('kube-controller-manager', 10)}\nkube-scheduler:\n${ctl.logTail('kube-scheduler', 10)}\nkwok:\n${env.logTail('kwok', 10)}`;

  before(async () => {
    const started = Date.now();
    env = await startEnvtest({ kwok: true });
    // nodelifecycle lifts the not-ready taint the API server puts on a new Node once kwok makes it Ready
    ctl = startControllers(env, { controllers: ['deployment', 'replicaset', 'job', 'nodelifecycle'] });
    kc = env.makeKubeConfig();
    applier = new AddonApplier(kc, log);
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    await core.createNode({ body: { metadata: { name: 'kwok-0', labels: { 'kubernetes.io/hostname': 'kwok-0' }, annotations: { 'kwok.x-k8s.io/node': 'fake' } } } });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const node = await core.readNode({ name: 'kwok-0' });
      const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      if (ready && (node.spec?.taints ?? []).length === 0) break;
      if (Date.now() > deadline) throw new Error(`node kwok-0 not Ready and untainted: ${JSON.stringify(node.spec?.taints)}${diagnostics()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    console.log(`      envtest + kwok + controllers, node Ready, in ${Date.now() - started} ms`);
  });
  after(async () => {
    await ctl?.stop();
    await env?.stop();
  });

  it('a Deployment whose pods kwok runs becomes ready (with its ConfigMap and Service)', async () => {
    const refs = await apply('web', [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'web' }, data: { a: '1' } } as KubernetesObject,
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }] } } as KubernetesObject,
      deployment('web', 2),
    ]);
    const t0 = Date.now();
    await waitReady(kc, refs, { addon: 'web', timeoutMs: 30_000, pollMs: 200, log }).catch((err: Error) => {
      throw new Error(`${err.message}${diagnostics()}`);
    });
    console.log(`      Deployment web ready in ${Date.now() - t0} ms`);
    const pods = (await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: NS, labelSelector: 'app=web' })).items;
    expect(pods).to.have.length(2);
    expect(pods.map((p) => [p.spec?.nodeName, p.status?.phase])).to.deep.equal([['kwok-0', 'Running'], ['kwok-0', 'Running']]);
    expect(log.lines.some((l) => l.message === 'Addon ready' && l.meta.ready === '3/3 ready')).to.equal(true);
  });

  it('a Deployment that never becomes available times out naming it and its pod’s reason, with progress lines', async () => {
    const refs = await apply('stuck', [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'stuck' }, data: {} } as KubernetesObject, deployment('stuck', 2, nowhere)]);
    const t0 = Date.now();
    let err: unknown;
    try {
      await waitReady(kc, refs, { addon: 'stuck', timeoutMs: 4000, pollMs: 200, progressMs: 1000, log });
    } catch (e) {
      err = e;
    }
    const elapsed = Date.now() - t0;
    expect(err, 'no timeout').to.be.instanceOf(CapflowError);
    const e = err as CapflowError;
    console.log(`      timed out after ${elapsed} ms: ${e.message.replace(/\n/g, ' | ')}`);
    expect(e.code).to.equal('ADDON_NOT_READY');
    expect(e.exitCode).to.equal(75);
    expect(elapsed).to.be.within(4000, 8000);
    expect(e.message).to.contain('addon stuck: 1 of 2 object(s) not ready after 4.0 s');
    expect(e.message).to.match(/Deployment apps\/stuck: 0\/2 available; pod stuck-[a-z0-9]+-[a-z0-9]+: Unschedulable \(0\/1 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector/);
    expect(e.message).to.not.contain('ConfigMap');
    const progress = log.lines.filter((l) => l.meta.addon === 'stuck' && l.message.startsWith('Waiting for addon stuck'));
    expect(progress.length).to.be.at.least(2);
    expect(progress.at(-1)!.message).to.equal('Waiting for addon stuck: 1/2 ready');
  });

  it('a Job that completes (kwok completes its pod, the job controller marks it Complete) is ready', async () => {
    const refs = await apply('migrate', [job('migrate')]);
    const t0 = Date.now();
    await waitReady(kc, refs, { addon: 'migrate', timeoutMs: 30_000, pollMs: 200, log }).catch((err: Error) => {
      throw new Error(`${err.message}${diagnostics()}`);
    });
    console.log(`      Job migrate complete in ${Date.now() - t0} ms`);
  });

  it('a Job that fails fails the wait at once, with the Failed condition’s message', async () => {
    // never scheduled, past its 1 s active deadline: the real job controller marks it Failed
    const refs = await apply('doomed', [job('doomed', { activeDeadlineSeconds: 1 }, nowhere)]);
    const t0 = Date.now();
    let err: unknown;
    try {
      await waitReady(kc, refs, { addon: 'doomed', timeoutMs: 30_000, pollMs: 200, log });
    } catch (e) {
      err = e;
    }
    const elapsed = Date.now() - t0;
    expect(err, 'the failed Job passed as ready').to.be.instanceOf(CapflowError);
    const e = err as CapflowError;
    console.log(`      failed after ${elapsed} ms: ${e.message}`);
    expect(e.code).to.equal('ADDON_JOB_FAILED');
    expect(e.message).to.equal('addon doomed: Job apps/doomed failed: DeadlineExceeded (Job was active longer than specified deadline)');
    expect(elapsed).to.be.below(15_000);
  });

  it('a CRD is ready once Established, its custom resource once it exists; a missing object is named', async () => {
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'gadgets.example.capflow.io' },
      spec: {
        group: 'example.capflow.io',
        names: { kind: 'Gadget', plural: 'gadgets', singular: 'gadget', listKind: 'GadgetList' },
        scope: 'Namespaced',
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
      },
    } as KubernetesObject;
    const refs = await apply('gadgets', [crd, { apiVersion: 'example.capflow.io/v1', kind: 'Gadget', metadata: { name: 'g1' } }]);
    await waitReady(kc, refs, { addon: 'gadgets', timeoutMs: 10_000, pollMs: 200, log });

    const missing: ObjectRef = { apiVersion: 'v1', kind: 'ConfigMap', namespace: NS, name: 'never-applied' };
    let err: unknown;
    try {
      await waitReady(kc, [...refs, missing], { addon: 'gadgets', timeoutMs: 500, pollMs: 100, log });
    } catch (e) {
      err = e;
    }
    expect((err as CapflowError).message).to.equal('addon gadgets: 1 of 3 object(s) not ready after 0.5 s:\nConfigMap apps/never-applied: does not exist');
  });
});
