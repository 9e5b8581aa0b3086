/**
 * src/addons/apply.ts against a real kube-apiserver (envtest): server-side apply in install order,
 * a CRD and its custom resources in one addon, a no-op rerun that writes nothing (resourceVersions
 * unchanged), conflicts with another field manager, and pruning exactly what an addon stopped
 * rendering.
 */
import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { CoreV1Api, KubernetesObjectApi, PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { ADDON_LABEL, AddonApplier, installOrder, refKey, type ObjectRef } from '../../src/addons/apply.js';
import { CapflowError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';

const crd: KubernetesObject = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'widgets.example.capflow.io' },
  spec: {
    group: 'example.capflow.io',
    names: { kind: 'Widget', plural: 'widgets', singular: 'widget', listKind: 'WidgetList' },
    scope: 'Namespaced',
    versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } } } } }],
  },
} as KubernetesObject;

/** One addon's rendering: custom resource first on purpose (install order puts its CRD first). */
function rendered(size: number, withExtra = true): KubernetesObject[] {
  return [
    { apiVersion: 'example.capflow.io/v1', kind: 'Widget', metadata: { name: 'w1' }, spec: { size } } as KubernetesObject,
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings' }, data: { size: String(size) } } as KubernetesObject,
    crd,
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'addon-ns' } },
    ...(withExtra ? [{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'extra' } } as KubernetesObject] : []),
    { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'addon-reader' }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get'] }] } as KubernetesObject,
  ];
}

describe('addons/apply: server-side apply and prune against a real kube-apiserver (envtest)', function () {
  this.timeout(120_000);
  let env: Envtest;
  let applier: AddonApplier;
  let objects: KubernetesObjectApi;
  let first: ObjectRef[] = [];
  const log = createLogger({ stream: new PassThrough(), format: 'json', level: 'error' });

  before(async () => {
    env = await startEnvtest();
    const kc = env.makeKubeConfig();
    applier = new AddonApplier(kc, log);
    objects = KubernetesObjectApi.makeApiClient(kc);
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'apps' } } });
  });
  after(async () => env?.stop());

  it('install order: CRDs, namespaces, then what others refer to, custom resources after the built-in kinds', () => {
    expect(installOrder(rendered(1)).map((o) => o.kind)).to.deep.equal(['CustomResourceDefinition', 'Namespace', 'ServiceAccount', 'ConfigMap', 'ClusterRole', 'Widget']);
  });

  it('applies a CRD and its custom resource in one addon, labelled, namespaced objects in the addon namespace', async () => {
    const res = await applier.apply('widgets', rendered(1), { namespace: 'apps' });
    expect(res.written.map((r) => r.kind)).to.deep.equal(['CustomResourceDefinition', 'Namespace', 'ServiceAccount', 'ConfigMap', 'ClusterRole', 'Widget']);
    first = res.applied;
    const widget = await objects.read({ apiVersion: 'example.capflow.io/v1', kind: 'Widget', metadata: { name: 'w1', namespace: 'apps' } });
    expect(widget.metadata?.labels?.[ADDON_LABEL]).to.equal('widgets');
    expect((widget as KubernetesObject & { spec: { size: number } }).spec.size).to.equal(1);
    expect(widget.metadata?.managedFields?.map((f) => f.manager)).to.include('capflow');
    expect(first.find((r) => r.kind === 'ClusterRole')).to.not.have.property('namespace');
  });

  it('applied again unchanged, writes nothing: every resourceVersion stays', async () => {
    const before = await Promise.all(first.map((r) => objects.read({ apiVersion: r.apiVersion, kind: r.kind, metadata: { name: r.name, ...(r.namespace ? { namespace: r.namespace } : {}) } })));
    const res = await applier.apply('widgets', rendered(1), { namespace: 'apps' });
    expect(res.written).to.deep.equal([]);
    const after = await Promise.all(first.map((r) => objects.read({ apiVersion: r.apiVersion, kind: r.kind, metadata: { name: r.name, ...(r.namespace ? { namespace: r.namespace } : {}) } })));
    expect(after.map((o) => o.metadata?.resourceVersion)).to.deep.equal(before.map((o) => o.metadata?.resourceVersion));
  });

  it('a values change writes only the objects it changes', async () => {
    const res = await applier.apply('widgets', rendered(2), { namespace: 'apps' });
    expect(res.written.map((r) => `${r.kind}/${r.name}`)).to.deep.equal(['ConfigMap/settings', 'Widget/w1']);
  });

  it('a field another manager owns is a conflict naming the addon and the object; forced, capflow takes it', async () => {
    await objects.patch({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'apps' }, data: { size: '9' } } as KubernetesObject, undefined, undefined, 'someone-else', true, PatchStrategy.ServerSideApply);
    let err: unknown;
    try {
      await applier.apply('widgets', rendered(2), { namespace: 'apps' });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(CapflowError);
    expect((err as CapflowError).code).to.equal('ADDON_FIELD_CONFLICT');
    expect((err as Error).message).to.include('addon widgets: ConfigMap apps/settings').and.include('someone-else');
    await applier.apply('widgets', rendered(2), { namespace: 'apps', force: true });
    const cm = await objects.read({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: 'apps' } });
    expect((cm as KubernetesObject & { data: Record<string, string> }).data.size).to.equal('2');
  });

  it('an object the API server refuses is an input error naming the addon and the object', async () => {
    const bad = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'Not_A_Name' }, data: {} } as KubernetesObject;
    let err: unknown;
    try {
      await applier.apply('widgets', [bad], { namespace: 'apps' });
    } catch (e) {
      err = e;
    }
    expect((err as CapflowError).code).to.equal('ADDON_OBJECT_INVALID');
    expect((err as Error).message).to.include('addon widgets: ConfigMap apps/Not_A_Name');
  });

  it('prunes exactly what the addon stopped rendering, and leaves an object another owner took over', async () => {
    const now = (await applier.apply('widgets', rendered(2, false), { namespace: 'apps' })).applied;
    // someone else's object in the old inventory: its label changed hands
    await objects.patch({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'kept', namespace: 'apps', labels: { [ADDON_LABEL]: 'other' } } }, undefined, undefined, 'other', true, PatchStrategy.ServerSideApply);
    const previous = [...first, { apiVersion: 'v1', kind: 'ServiceAccount', namespace: 'apps', name: 'kept' }];
    const deleted = await applier.prune('widgets', previous, now);
    expect(deleted.map(refKey)).to.deep.equal(['v1/ServiceAccount/apps/extra']);
    const core = env.makeKubeConfig().makeApiClient(CoreV1Api);
    const sas = (await core.listNamespacedServiceAccount({ namespace: 'apps' })).items.map((s) => s.metadata!.name);
    expect(sas).to.include('kept').and.not.include('extra');
    expect(await applier.prune('widgets', now, now)).to.deep.equal([]);
  });
});
