/**
 * The example cluster's addons end to end, short of running them: every AddonChart of
 * examples/clusters/aws-self-managed rendered by src/addons/charts.ts with the real helm from the
 * vendored charts of examples/charts (no network), then applied by src/addons/apply.ts, in the model's
 * install order, to a real kube-apiserver (envtest: no kubelet, no controllers, so no image is pulled
 * and no pod runs). Shows the vendored charts and the example values make objects the API server
 * accepts: CRDs established before their custom resources, and a second apply that writes nothing.
 */
import { expect } from 'chai';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { ApiextensionsV1Api, CoreV1Api, KubernetesObjectApi, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { AddonApplier, type ApplyResult } from '../../src/addons/apply.js';
import { renderAddonChart, type RenderedChart } from '../../src/addons/charts.js';
import { createLogger } from '../../src/core/logger.js';
import { loadClusterSpec, type ClusterModel } from '../../src/spec/index.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';
import { REPO_ROOT, requireTool } from '../support/tools.js';

const EXAMPLES = path.join(REPO_ROOT, 'examples');
const CLUSTER_DIR = path.join(EXAMPLES, 'clusters', 'aws-self-managed');
const CHARTS = ['flannel', 'aws-cloud-controller-manager', 'aws-ebs-csi-driver', 'metrics-server', 'ingress-nginx', 'kube-prometheus-stack'];

function isConflict(err: unknown): boolean {
  const e = err as { code?: number; statusCode?: number; body?: unknown };
  return e.code === 409 || e.statusCode === 409;
}

describe('addons/examples: the vendored example charts (examples/charts) rendered with the aws-self-managed values and applied to a real kube-apiserver (envtest; nothing runs them)', function () {
  this.timeout(300_000);
  let env: Envtest;
  let kc: KubeConfig;
  let model: ClusterModel;
  let applier: AddonApplier;
  const rendered = new Map<string, RenderedChart>();
  const firstApply = new Map<string, ApplyResult>();
  const log = createLogger({ stream: new PassThrough(), format: 'json', level: 'error' });

  const objectsOf = (name: string): KubernetesObject[] => {
    const chart = rendered.get(name);
    if (!chart) throw new Error(`AddonChart ${name} was not rendered`);
    return chart.objects.map((o) => o.object);
  };

  before(async () => {
    const helm = requireTool('helm');
    model = await loadClusterSpec(CLUSTER_DIR);
    env = await startEnvtest();
    kc = env.makeKubeConfig();
    applier = new AddonApplier(kc, log);
    for (const addon of model.addons) {
      rendered.set(addon.metadata.name, await renderAddonChart(addon, { repoRoot: EXAMPLES, clusterDir: model.dir, kubeVersion: model.kubernetesVersion, helm }));
    }
  });
  after(async () => env?.stop());

  it('the example names every vendored chart by path, the CNI in the ControlPlane stage', () => {
    expect(model.addons.map((a) => a.metadata.name).sort()).to.deep.equal([...CHARTS].sort());
    for (const addon of model.addons) {
      expect(addon.spec.path, addon.metadata.name).to.equal(`charts/${addon.metadata.name}`);
      expect(addon.spec.repo, addon.metadata.name).to.equal(undefined);
    }
    expect(model.addons.find((a) => a.metadata.name === 'flannel')?.spec).to.include({ stage: 'ControlPlane', namespace: 'kube-flannel' });
  });

  it('every chart renders offline to Kubernetes objects; the CNI renders a DaemonSet with the Cluster pod CIDR', () => {
    for (const name of CHARTS) {
      const objects = objectsOf(name);
      expect(objects.length, name).to.be.greaterThan(0);
      for (const o of objects) expect([o.apiVersion, o.kind, o.metadata?.name].every((v) => typeof v === 'string' && v !== ''), `${name}: ${JSON.stringify(o).slice(0, 120)}`).to.equal(true);
    }
    const flannel = objectsOf('flannel');
    expect(flannel.filter((o) => o.kind === 'DaemonSet').map((o) => o.metadata?.name)).to.deep.equal(['kube-flannel-ds']);
    const netConf = flannel.find((o) => o.kind === 'ConfigMap') as (KubernetesObject & { data: Record<string, string> }) | undefined;
    expect(JSON.parse(netConf?.data['net-conf.json'] ?? '{}')).to.have.property('Network', model.cluster.spec.clusterNetwork?.pods?.cidrBlocks?.[0]);
    expect(objectsOf('kube-prometheus-stack').map((o) => o.kind)).to.include.members(['CustomResourceDefinition', 'Prometheus', 'Deployment']);
  });

  it('applies every addon in the model order: the API server accepts all of their objects', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    for (const addon of model.addons) {
      const name = addon.metadata.name;
      const namespace = addon.spec.namespace;
      if (namespace !== 'kube-system') {
        await core.createNamespace({ body: { metadata: { name: namespace } } }).catch((err: unknown) => {
          if (!isConflict(err)) throw err;
        });
      }
      const objects = objectsOf(name);
      const res = await applier.apply(name, objects, { namespace });
      expect(res.applied.length, name).to.equal(objects.length);
      expect(res.written.length, name).to.equal(objects.length);
      firstApply.set(name, res);
    }
    expect([...firstApply.keys()]).to.deep.equal(model.addons.map((a) => a.metadata.name));
  });

  it('the monitoring chart: its CRDs are established and its Prometheus custom resource is stored', async () => {
    const crds = kc.makeApiClient(ApiextensionsV1Api);
    for (const crd of ['prometheuses.monitoring.coreos.com', 'servicemonitors.monitoring.coreos.com']) {
      const got = await crds.readCustomResourceDefinition({ name: crd });
      expect(got.status?.conditions?.find((c) => c.type === 'Established')?.status, crd).to.equal('True');
    }
    const prometheus = objectsOf('kube-prometheus-stack').find((o) => o.kind === 'Prometheus');
    expect(prometheus?.metadata?.name).to.be.a('string');
    const stored = await KubernetesObjectApi.makeApiClient(kc).read({
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'Prometheus',
      metadata: { name: prometheus?.metadata?.name ?? '', namespace: 'monitoring' },
    });
    expect(stored.metadata?.labels?.['capflow.io/addon']).to.equal('kube-prometheus-stack');
    expect((stored as KubernetesObject & { spec: { serviceAccountName?: string } }).spec.serviceAccountName).to.equal(prometheus && (prometheus as KubernetesObject & { spec: { serviceAccountName?: string } }).spec.serviceAccountName);
  });

  it('applied a second time, unchanged, writes nothing', async () => {
    for (const addon of model.addons) {
      const name = addon.metadata.name;
      const res = await applier.apply(name, objectsOf(name), { namespace: addon.spec.namespace });
      expect(res.written, name).to.deep.equal([]);
      expect(res.applied, name).to.deep.equal(firstApply.get(name)?.applied);
    }
  });
});
