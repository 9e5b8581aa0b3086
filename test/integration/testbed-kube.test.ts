// The test bed's Kubernetes peers: etcd + kube-apiserver (envtest), kwok kubelets, CRDs.
// Needs `bash testbed/install.sh`; without it every test here fails with that command in the message.

import { expect } from 'chai';
import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1Node,
  type V1Secret,
  Watch,
} from '@kubernetes/client-node';
import { type Envtest, schemaPath, startEnvtest } from '../support/envtest.js';

const START_TIMEOUT = 180_000;

const CAPI_CRDS = [
  'cluster.x-k8s.io_clusters.yaml',
  'cluster.x-k8s.io_machinedeployments.yaml',
  'controlplane.cluster.x-k8s.io_kubeadmcontrolplanes.yaml',
  'bootstrap.cluster.x-k8s.io_kubeadmconfigtemplates.yaml',
  'infrastructure.cluster.x-k8s.io_awsclusters.yaml',
  'infrastructure.cluster.x-k8s.io_awsmachinetemplates.yaml',
].map((f) => schemaPath('capi', f));

const ARGO_CRDS = ['argoproj.io_workflows.yaml', 'argoproj.io_workflowtemplates.yaml'].map((f) =>
  schemaPath('argo', f),
);

async function waitUntil<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr instanceof Error ? `: ${lastErr.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function secret(name: string, data: Record<string, string>): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name },
    type: 'Opaque',
    stringData: data,
  };
}

describe('test bed: envtest (etcd + kube-apiserver) with kwok', function () {
  this.timeout(START_TIMEOUT);
  let env: Envtest;
  let kc: KubeConfig;
  let core: CoreV1Api;

  before(async function () {
    env = await startEnvtest({ kwok: true });
    kc = env.makeKubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    console.log(`      envtest+kwok ready in ${env.startupMs} ms at ${env.server}`);
  });
  after(async () => env?.stop());

  it('serves on 127.0.0.1 and writes a usable kubeconfig', async () => {
    expect(env.server).to.match(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(env.kubeconfig).to.contain(env.server);
    const ns = await core.readNamespace({ name: 'default' });
    expect(ns.metadata?.name).to.equal('default');
  });

  it('creates a Secret and a watch sees the ADDED event', async () => {
    await core.createNamespace({ body: { metadata: { name: 'watch-test' } } });
    const seen: Array<{ type: string; name?: string; value?: string }> = [];
    const watch = new Watch(kc);
    let gotAdded!: () => void;
    const added = new Promise<void>((r) => (gotAdded = r));
    const req = await watch.watch(
      '/api/v1/namespaces/watch-test/secrets',
      {},
      (type: string, obj: V1Secret) => {
        seen.push({
          type,
          name: obj.metadata?.name,
          value: obj.data?.token ? Buffer.from(obj.data.token, 'base64').toString() : undefined,
        });
        if (type === 'ADDED' && obj.metadata?.name === 'kubeconfig') gotAdded();
      },
      () => undefined,
    );
    try {
      await core.createNamespacedSecret({ namespace: 'watch-test', body: secret('kubeconfig', { token: 's3cret' }) });
      await Promise.race([
        added,
        new Promise((_, rej) => setTimeout(() => rej(new Error(`no ADDED event; saw ${JSON.stringify(seen)}`)), 20_000)),
      ]);
    } finally {
      req.abort();
    }
    expect(seen).to.deep.include({ type: 'ADDED', name: 'kubeconfig', value: 's3cret' });
  });

  it('registers a Node that kwok makes Ready', async () => {
    const node: V1Node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: 'kwok-node-0',
        // kwok's conventional marker (we run it with --manage-all-nodes, so it is informative only)
        annotations: { 'kwok.x-k8s.io/node': 'fake' },
        labels: { 'kubernetes.io/hostname': 'kwok-node-0', type: 'kwok' },
      },
      spec: { taints: [{ key: 'kwok.x-k8s.io/node', value: 'fake', effect: 'NoSchedule' }] },
    };
    await core.createNode({ body: node });
    const ready = await waitUntil('node kwok-node-0 Ready', 60_000, async () => {
      const n = await core.readNode({ name: 'kwok-node-0' });
      return n.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True') ? n : undefined;
    }).catch((err: Error) => {
      throw new Error(`${err.message}\nkwok log:\n${env.logTail('kwok')}`);
    });
    expect(ready.status?.nodeInfo?.kubeletVersion).to.match(/^kwok-/);
    expect(ready.status?.addresses?.map((a) => a.address)).to.include('127.0.0.1');
  });
});

describe('test bed: two envtests at once (management + workload)', function () {
  this.timeout(START_TIMEOUT);
  let mgmt: Envtest;
  let workload: Envtest;

  before(async function () {
    [mgmt, workload] = await Promise.all([startEnvtest(), startEnvtest()]);
    console.log(`      two envtests ready in ${mgmt.startupMs} / ${workload.startupMs} ms`);
  });
  after(async () => {
    await Promise.all([mgmt?.stop(), workload?.stop()]);
  });

  it('keeps each cluster’s objects apart', async () => {
    expect(mgmt.server).to.not.equal(workload.server);
    const m = mgmt.makeKubeConfig().makeApiClient(CoreV1Api);
    const w = workload.makeKubeConfig().makeApiClient(CoreV1Api);
    await m.createNamespacedSecret({ namespace: 'default', body: secret('only-in-mgmt', { a: '1' }) });
    await w.createNamespacedSecret({ namespace: 'default', body: secret('only-in-workload', { b: '2' }) });
    const names = async (api: CoreV1Api): Promise<string[]> =>
      (await api.listNamespacedSecret({ namespace: 'default' })).items.map((s) => s.metadata!.name!);
    expect(await names(m)).to.include('only-in-mgmt').and.not.include('only-in-workload');
    expect(await names(w)).to.include('only-in-workload').and.not.include('only-in-mgmt');
  });

  it('stop() kills the processes and removes the directory', async () => {
    const { existsSync } = await import('node:fs');
    const extra = await startEnvtest();
    const dir = extra.dir;
    await extra.stop();
    expect(existsSync(dir)).to.equal(false);
    const api = extra.makeKubeConfig().makeApiClient(CoreV1Api);
    let failed = false;
    try {
      await api.readNamespace({ name: 'default' });
    } catch {
      failed = true;
    }
    expect(failed, 'the API answered after stop()').to.equal(true);
  });
});

describe('test bed: upstream CRDs (Cluster API + Argo) install into envtest', function () {
  this.timeout(START_TIMEOUT);
  let env: Envtest;
  let kc: KubeConfig;

  before(async function () {
    env = await startEnvtest({ crds: [...CAPI_CRDS, ...ARGO_CRDS] });
    kc = env.makeKubeConfig();
    console.log(`      envtest with ${CAPI_CRDS.length + ARGO_CRDS.length} CRD files ready in ${env.startupMs} ms`);
  });
  after(async () => env?.stop());

  it('has the CRDs Established', async () => {
    const api = kc.makeApiClient(ApiextensionsV1Api);
    const names = (await api.listCustomResourceDefinition()).items.map((c) => c.metadata!.name!);
    expect(names).to.include.members([
      'clusters.cluster.x-k8s.io',
      'kubeadmcontrolplanes.controlplane.cluster.x-k8s.io',
      'workflows.argoproj.io',
      'workflowtemplates.argoproj.io',
    ]);
  });

  it('accepts a Cluster and rejects one that breaks the schema', async () => {
    const co = kc.makeApiClient(CustomObjectsApi);
    const cluster = {
      apiVersion: 'cluster.x-k8s.io/v1beta1',
      kind: 'Cluster',
      metadata: { name: 'demo', namespace: 'default' },
      spec: {
        clusterNetwork: { pods: { cidrBlocks: ['192.168.0.0/16'] } },
        controlPlaneRef: {
          apiVersion: 'controlplane.cluster.x-k8s.io/v1beta1',
          kind: 'KubeadmControlPlane',
          name: 'demo-control-plane',
        },
        infrastructureRef: { apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta2', kind: 'AWSCluster', name: 'demo' },
      },
    };
    const created = (await co.createNamespacedCustomObject({
      group: 'cluster.x-k8s.io',
      version: 'v1beta1',
      namespace: 'default',
      plural: 'clusters',
      body: cluster,
    })) as { metadata: { uid?: string } };
    expect(created.metadata.uid).to.be.a('string');

    let rejected: unknown;
    try {
      await co.createNamespacedCustomObject({
        group: 'cluster.x-k8s.io',
        version: 'v1beta1',
        namespace: 'default',
        plural: 'clusters',
        body: { ...cluster, metadata: { name: 'bad', namespace: 'default' }, spec: { paused: 'not-a-boolean' } },
      });
    } catch (err) {
      rejected = err;
    }
    expect(rejected, 'schema violation was accepted').to.have.property('code', 422);
  });

  it('accepts a WorkflowTemplate', async () => {
    const co = kc.makeApiClient(CustomObjectsApi);
    const wt = {
      apiVersion: 'argoproj.io/v1alpha1',
      kind: 'WorkflowTemplate',
      metadata: { name: 'hello', namespace: 'default' },
      spec: {
        entrypoint: 'main',
        templates: [{ name: 'main', container: { image: 'busybox:1.36', command: ['true'] } }],
      },
    };
    const created = (await co.createNamespacedCustomObject({
      group: 'argoproj.io',
      version: 'v1alpha1',
      namespace: 'default',
      plural: 'workflowtemplates',
      body: wt,
    })) as { metadata: { uid?: string } };
    expect(created.metadata.uid).to.be.a('string');
  });
});
