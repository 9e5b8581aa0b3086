/** ClusterResourceSets read from the cluster folder: manifests parsed, problems at file:line, ApplyOnce and Reconcile. */
import { expect } from 'chai';
import { resourceSetAddons, resourcesToApply } from '../../src/addons/resource-sets.js';
import { loadClusterSpec, SpecInvalidError } from '../../src/spec/index.js';
import { cleanupSpecFolders, displayRootOf, minimalAws, specFolder } from '../fixtures/spec/support.js';

function resourceSet(strategy: string, selector = 'cni: calico', resources = '- kind: ConfigMap\n    name: cni\n  - kind: Secret\n    name: cni-secret'): string {
  return `apiVersion: addons.cluster.x-k8s.io/v1beta1
kind: ClusterResourceSet
metadata:
  name: cni
spec:
  strategy: ${strategy}
  clusterSelector:
    matchLabels:
      ${selector}
  resources:
  ${resources}
`;
}

const CONFIG_MAP = (manifest: string) => `apiVersion: v1
kind: ConfigMap
metadata:
  name: cni
data:
  cni.yaml: |
${manifest.split('\n').map((l) => `    ${l}`).join('\n')}
`;

const SECRET = (type: string) => `apiVersion: v1
kind: Secret
metadata:
  name: cni-secret
type: ${type}
data:
  sa.yaml: ${Buffer.from('apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: cni\n  namespace: kube-system\n').toString('base64')}
`;

const MANIFEST = 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: cni-system\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cni-config\n  namespace: cni-system\ndata:\n  mtu: "1450"';

async function load(files: Record<string, string>) {
  const dir = await specFolder(minimalAws(files));
  return loadClusterSpec(dir, { displayRoot: displayRootOf(dir) });
}

describe('addons: ClusterResourceSets', function () {
  this.timeout(30_000);
  after(cleanupSpecFolders);

  it('a set selecting the cluster gives its ConfigMap and Secret manifests, in order, each with the hash of its data', async () => {
    const model = await load({ 'addons.yaml': `${resourceSet('Reconcile')}---\n${CONFIG_MAP(MANIFEST)}---\n${SECRET('addons.cluster.x-k8s.io/resource-set')}` });
    const [set, ...more] = resourceSetAddons(model);
    expect(more).to.deep.equal([]);
    expect(set).to.deep.include({ addon: 'crs-cni', strategy: 'Reconcile' });
    expect(set!.resources.map((r) => [r.key, r.objects.map((o) => `${o.kind}/${o.metadata!.name}`)])).to.deep.equal([
      ['ConfigMap/cni', ['Namespace/cni-system', 'ConfigMap/cni-config']],
      ['Secret/cni-secret', ['ServiceAccount/cni']],
    ]);
    expect(set!.resources[0]!.hash).to.match(/^sha256:[0-9a-f]{64}$/);
  });

  it('ApplyOnce applies each resource once; Reconcile again when its data changed', async () => {
    const once = resourceSetAddons(await load({ 'addons.yaml': `${resourceSet('ApplyOnce')}---\n${CONFIG_MAP(MANIFEST)}---\n${SECRET('addons.cluster.x-k8s.io/resource-set')}` }))[0]!;
    expect(resourcesToApply(once, {}).map((r) => r.key)).to.deep.equal(['ConfigMap/cni', 'Secret/cni-secret']);
    expect(resourcesToApply(once, { 'ConfigMap/cni': 'sha256:old', 'Secret/cni-secret': once.resources[1]!.hash })).to.deep.equal([]);
    const reconcile = { ...once, strategy: 'Reconcile' as const };
    expect(resourcesToApply(reconcile, { 'ConfigMap/cni': 'sha256:old', 'Secret/cni-secret': once.resources[1]!.hash }).map((r) => r.key)).to.deep.equal(['ConfigMap/cni']);
  });

  it('a set whose selector does not match the Cluster gives nothing', async () => {
    const model = await load({ 'addons.yaml': `${resourceSet('ApplyOnce', 'cni: cilium', '- kind: ConfigMap\n    name: cni')}---\n${CONFIG_MAP(MANIFEST)}` });
    expect(resourceSetAddons(model)).to.deep.equal([]);
  });

  it('a Secret of another type and a manifest that is not YAML or not an object are refused at their file:line, together', async () => {
    const model = await load({ 'addons.yaml': `${resourceSet('ApplyOnce')}---\n${CONFIG_MAP('apiVersion: v1\nkind: [unclosed\n---\njust a string')}---\n${SECRET('Opaque')}` });
    let err: unknown;
    try {
      resourceSetAddons(model);
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(SpecInvalidError);
    const text = (err as Error).message;
    expect(text).to.match(/clusters\/test\/addons\.yaml:\d+:\d+ ConfigMap\/cni data\["cni\.yaml"\]: document 1 of this manifest is not valid YAML/);
    expect(text).to.match(/ConfigMap\/cni data\["cni\.yaml"\]: document 2 of this manifest is not a Kubernetes object/);
    expect(text).to.match(/addons\.yaml:\d+:\d+ Secret\/cni-secret type: a ClusterResourceSet's Secret must be of type addons\.cluster\.x-k8s\.io\/resource-set/);
  });
});
