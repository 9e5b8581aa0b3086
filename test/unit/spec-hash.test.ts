import { expect } from 'chai';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { canonicalJson, loadClusterSpec, specHash, specHashWithInputs } from '../../src/spec/index.js';
import { cleanupSpecFolders, minimalAws, specFolder, AWS_CLUSTER, CLUSTER, CONTROL_PLANE, WORKERS } from '../fixtures/spec/support.js';

async function hashOf(files: Record<string, string>): Promise<string> {
  return specHash(await loadClusterSpec(await specFolder(files)));
}

const REORDERED_AWS_CLUSTER = `kind: AWSCluster
spec:
  region: us-east-1
metadata:
  name: dev
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
`;

describe('spec hash', function () {
  this.timeout(30_000);
  after(cleanupSpecFolders);
  let base = '';
  before(async () => {
    base = await hashOf(minimalAws());
  });

  it('is a sha256 hex digest', () => {
    expect(base).to.match(/^[0-9a-f]{64}$/);
  });

  const same: Array<{ name: string; files: Record<string, string> }> = [
    { name: 'keys written in another order', files: minimalAws({ 'cluster.yaml': `${CLUSTER}---\n${REORDERED_AWS_CLUSTER}` }) },
    { name: 'comments added', files: minimalAws({ 'cluster.yaml': `# the cluster\n${CLUSTER}# infrastructure follows\n---\n${AWS_CLUSTER}  # end\n` }) },
    {
      name: 'flow style and quoting instead of block style',
      files: minimalAws({
        'cluster.yaml': `${CLUSTER}---\n{"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", kind: 'AWSCluster', metadata: {name: "dev"}, spec: {region: us-east-1}}\n`,
      }),
    },
    { name: 'a default written explicitly (namespace: default)', files: minimalAws({ 'cluster.yaml': `${CLUSTER}---\n${AWS_CLUSTER.replace('  name: dev\n', '  name: dev\n  namespace: default\n')}` }) },
    {
      name: 'a schema default written explicitly (KubeadmControlPlane rolloutStrategy)',
      files: minimalAws({ 'control-plane.yaml': CONTROL_PLANE.replace('  replicas: 3\n', '  replicas: 3\n  rolloutStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n') }),
    },
    { name: 'a document moved to another file', files: { 'all.yaml': `${CLUSTER}---\n${AWS_CLUSTER}---\n${CONTROL_PLANE}`, 'workers.yaml': WORKERS } },
    { name: 'a null the API server prunes', files: minimalAws({ 'cluster.yaml': `${CLUSTER}  paused: null\n---\n${AWS_CLUSTER}` }) },
    // pausing says whether to act, not what: unpausing an unchanged spec starts no apply
    { name: 'the Cluster paused (spec.paused: true)', files: minimalAws({ 'cluster.yaml': `${CLUSTER}  paused: true\n---\n${AWS_CLUSTER}` }) },
    { name: 'spec.paused: false written out', files: minimalAws({ 'cluster.yaml': `${CLUSTER}  paused: false\n---\n${AWS_CLUSTER}` }) },
    { name: 'the Cluster paused by the cluster.x-k8s.io/paused annotation', files: minimalAws({ 'cluster.yaml': `${CLUSTER.replace('  labels:\n', '  annotations:\n    cluster.x-k8s.io/paused: ""\n  labels:\n')}---\n${AWS_CLUSTER}` }) },
  ];
  for (const c of same) {
    it(`does not change with ${c.name}`, async () => {
      expect(await hashOf(c.files)).to.equal(base);
    });
  }

  const changed: Array<{ name: string; files: Record<string, string> }> = [
    { name: 'control plane replicas 3 → 5', files: minimalAws({ 'control-plane.yaml': CONTROL_PLANE.replace('replicas: 3', 'replicas: 5') }) },
    { name: 'a different region', files: minimalAws({ 'cluster.yaml': `${CLUSTER}---\n${AWS_CLUSTER.replace('us-east-1', 'us-west-2')}` }) },
    { name: 'a label added', files: minimalAws({ 'cluster.yaml': `${CLUSTER.replace('    cni: calico\n', '    cni: calico\n    env: dev\n')}---\n${AWS_CLUSTER}` }) },
    { name: 'a non-default value for a defaulted field', files: minimalAws({ 'control-plane.yaml': CONTROL_PLANE.replace('  replicas: 3\n', '  replicas: 3\n  rolloutStrategy:\n    rollingUpdate:\n      maxSurge: 0\n') }) },
  ];
  for (const c of changed) {
    it(`changes with ${c.name}`, async () => {
      expect(await hashOf(c.files)).to.not.equal(base);
    });
  }

  it('the model says where a Cluster is paused (file:line of spec.paused, else of the annotation), and nothing when it is not', async () => {
    const bySpec = await loadClusterSpec(await specFolder(minimalAws({ 'cluster.yaml': `${CLUSTER}  paused: true\n---\n${AWS_CLUSTER}` })));
    expect(bySpec.paused).to.include({ field: 'spec.paused', line: 16 });
    expect(bySpec.paused?.file).to.match(/cluster\.yaml$/);
    const byAnnotation = await loadClusterSpec(await specFolder(minimalAws({ 'cluster.yaml': `${CLUSTER.replace('  labels:\n', '  annotations:\n    cluster.x-k8s.io/paused: "true"\n  labels:\n')}---\n${AWS_CLUSTER}` })));
    expect(byAnnotation.paused).to.include({ field: 'metadata.annotations[cluster.x-k8s.io/paused]', line: 6 });
    expect((await loadClusterSpec(await specFolder(minimalAws({ 'cluster.yaml': `${CLUSTER}  paused: false\n---\n${AWS_CLUSTER}` })))).paused).to.equal(undefined);
    expect((await loadClusterSpec(await specFolder(minimalAws()))).paused).to.equal(undefined);
  });

  it('refuses spec.paused of the wrong type at its file:line (the Cluster CRD schema: boolean)', async () => {
    const { validateClusterSpec, formatProblem } = await import('../../src/spec/index.js');
    const { model, problems } = await validateClusterSpec(await specFolder(minimalAws({ 'cluster.yaml': `${CLUSTER}  paused: "yes"\n---\n${AWS_CLUSTER}` })));
    expect(model).to.equal(undefined);
    expect(problems.filter((p) => p.severity === 'error').map(formatProblem).join('\n')).to.match(/cluster\.yaml:16:\d+ Cluster\/dev spec\.paused: must be boolean/);
  });

  it('canonical JSON sorts keys at every level and keeps array order', () => {
    expect(canonicalJson({ b: [{ d: 1, c: 2 }, 3], a: 'x', u: undefined })).to.equal('{"a":"x","b":[{"c":2,"d":1},3]}');
  });
});

describe('spec hash with the files AddonCharts read (chart folders, values files)', function () {
  this.timeout(30_000);
  const ADDON = 'apiVersion: capflow.io/v1alpha1\nkind: AddonChart\nmetadata:\n  name: cni\nspec:\n  path: charts/cni\n  valuesFiles: [values/cni.yaml]\n';
  let repo = '';
  const cluster = () => path.join(repo, 'clusters', 'dev');
  const hash = async () => specHashWithInputs(await loadClusterSpec(cluster()), repo);

  before(async () => {
    repo = await mkdtemp(path.join(os.tmpdir(), 'capflow-hash-inputs-'));
    await mkdir(path.join(cluster(), 'values'), { recursive: true });
    await mkdir(path.join(repo, 'charts', 'cni', 'templates'), { recursive: true });
    for (const [f, text] of Object.entries(minimalAws({ 'addons.yaml': ADDON }))) await writeFile(path.join(cluster(), f), text);
    await writeFile(path.join(cluster(), 'values', 'cni.yaml'), 'mtu: 1450\n');
    await writeFile(path.join(repo, 'charts', 'cni', 'Chart.yaml'), 'apiVersion: v2\nname: cni\nversion: 0.1.0\n');
    await writeFile(path.join(repo, 'charts', 'cni', 'templates', 'ds.yaml'), 'kind: DaemonSet\n');
  });
  after(async () => rm(repo, { recursive: true, force: true }));

  it('a cluster without such addons keeps the documents\' hash', async () => {
    const folder = await specFolder(minimalAws());
    const model = await loadClusterSpec(folder);
    expect(await specHashWithInputs(model, folder)).to.equal(specHash(model));
  });

  it('changes when a template of the chart folder or a values file changes, and only then', async () => {
    const first = await hash();
    expect(first).to.not.equal(specHash(await loadClusterSpec(cluster())));
    expect(await hash(), 'stable').to.equal(first);
    await writeFile(path.join(repo, 'charts', 'cni', 'templates', 'ds.yaml'), 'kind: DaemonSet\n# changed\n');
    const second = await hash();
    expect(second).to.not.equal(first);
    await writeFile(path.join(cluster(), 'values', 'cni.yaml'), 'mtu: 9001\n');
    const third = await hash();
    expect(third).to.not.equal(second);
    await writeFile(path.join(repo, 'charts', 'unrelated.txt'), 'x');
    expect(await hash(), 'a file outside the chart folder does not count').to.equal(third);
  });
});
