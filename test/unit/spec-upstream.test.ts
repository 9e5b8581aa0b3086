import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { parse as parseYaml } from 'yaml';
import { formatProblem, specHash, validateClusterSpec } from '../../src/spec/index.js';
import type { AWSCluster, KubeadmControlPlane, SpecProblem } from '../../src/spec/index.js';
import { CAPI_LINES, kindInfo, TOPOLOGY_KINDS, UNSUPPORTED_KINDS } from '../../src/spec/kinds.js';
import { cleanupSpecFolders, CONTROL_PLANE_MACHINE_TEMPLATE, displayRootOf, fixturesDir, minimalAws, repoRoot, specFolder } from '../fixtures/spec/support.js';

const upstream = path.join(fixturesDir, 'upstream');

describe('upstream clusterctl template (CAPA v2.9.3 templates/cluster-template.yaml, verbatim)', function () {
  this.timeout(30_000);

  it('validates unchanged once its variables are supplied from a vars file', async () => {
    const { model, problems } = await validateClusterSpec(upstream, { varsFile: path.join(upstream, 'capa-cluster-template.vars') });
    expect(problems.map(formatProblem)).to.deep.equal([]);
    expect(model?.provider).to.equal('aws');
    expect(model?.name).to.equal('capa-upstream');
    expect((model?.controlPlane as KubeadmControlPlane).spec.replicas).to.equal(3);
    expect(model?.resourceSets.map((r) => [r.resourceSet.metadata.name, r.selectsCluster, r.resources.map((c) => c.metadata.name)])).to.deep.equal([
      ['crs-ccm', true, ['cloud-controller-manager-addon']],
      ['crs-csi', true, ['aws-ebs-csi-driver-addon']],
    ]);
  });

  it('without variables asks for --vars or --env', async () => {
    const { problems } = await validateClusterSpec(upstream);
    expect(problems).to.have.length(1);
    expect(problems[0]?.code).to.equal('variables-not-substituted');
  });
});

const v211 = path.join(fixturesDir, 'upstream-v2.11');
const v211Vars = { varsFile: path.join(v211, 'cluster.vars') };
const schemasRoot = process.env.CAPFLOW_SCHEMAS_DIR ?? path.resolve(repoRoot, '..', 'shared', 'schemas');

const codes = (problems: SpecProblem[]): string[] => problems.map((p) => p.code);

describe('upstream clusterctl templates of the current line (CAPA v2.11.1 templates/, verbatim; Cluster API v1.11)', function () {
  this.timeout(60_000);
  after(cleanupSpecFolders);

  const valid: Array<[folder: string, provider: string]> = [
    ['default', 'aws'],
    ['machinepool', 'aws'],
    ['eks', 'eks'],
    ['dualstack-ipv4-primary', 'aws'],
    ['dualstack-ipv6-primary', 'aws'],
    ['ipv6', 'aws'],
  ];
  for (const [folder, provider] of valid) {
    it(`${folder} validates unchanged (no problem at all) by default, and when the folder targets v1.11`, async () => {
      for (const capiLine of [undefined, 'v1.11'] as const) {
        const { model, problems } = await validateClusterSpec(path.join(v211, folder), { ...v211Vars, ...(capiLine ? { capiLine } : {}) });
        expect(problems.map(formatProblem), `capiLine ${capiLine ?? 'default'}`).to.deep.equal([]);
        expect(model?.provider).to.equal(provider);
        expect(model?.name).to.equal('capa-v211');
      }
    });
  }

  it('the v2.11 fields (targetGroupIPType, assignPrimaryIPv6, httpProtocolIpv6) reach the model', async () => {
    const { model } = await validateClusterSpec(path.join(v211, 'dualstack-ipv4-primary'), v211Vars);
    expect((model?.infrastructure as AWSCluster).spec.controlPlaneLoadBalancer?.targetGroupIPType).to.equal('ipv4');
    expect(model?.controlPlaneMachineTemplate?.spec.template.spec.assignPrimaryIPv6).to.equal('disabled');
    const ipv6 = await validateClusterSpec(path.join(v211, 'ipv6'), v211Vars);
    expect(ipv6.model?.controlPlaneMachineTemplate?.spec.template.spec.instanceMetadataOptions).to.deep.include({ httpProtocolIpv6: 'enabled' });
  });

  it('a folder that targets v1.10 (v2.9) has the v2.11 fields reported as unknown, at their file:line:column', async () => {
    const { problems } = await validateClusterSpec(path.join(v211, 'dualstack-ipv4-primary'), { ...v211Vars, capiLine: 'v1.10' });
    const unknown = problems.filter((p) => p.code === 'unknown-field').map((p) => `${p.file}:${p.line}:${p.column} ${p.path ?? ''}`);
    const file = 'test/fixtures/spec/upstream-v2.11/dualstack-ipv4-primary/cluster-template-dualstack-ipv4-primary.yaml';
    expect(unknown).to.include(`${file}:36:5 spec.controlPlaneLoadBalancer.targetGroupIPType`);
    expect(unknown).to.include(`${file}:90:7 spec.template.spec.assignPrimaryIPv6`);
  });

  it('the Cluster annotation capflow.io/capi-line wins over the option; a bad value is reported at the annotation', async () => {
    const text = await readFile(path.join(v211, 'dualstack-ipv4-primary', 'cluster-template-dualstack-ipv4-primary.yaml'), 'utf8');
    const annotated = (value: string): string => text.replace(/^kind: Cluster\nmetadata:\n/m, `kind: Cluster\nmetadata:\n  annotations:\n    capflow.io/capi-line: ${value}\n`);
    expect(annotated('v1.11')).to.not.equal(text);
    const dir = await specFolder({ 'cluster.yaml': annotated('v1.11') });
    const ok = await validateClusterSpec(dir, { ...v211Vars, capiLine: 'v1.10', displayRoot: displayRootOf(dir) });
    expect(ok.problems.map(formatProblem)).to.deep.equal([]);
    const bad = await specFolder({ 'cluster.yaml': annotated('"1.11"') });
    const { problems } = await validateClusterSpec(bad, { ...v211Vars, displayRoot: displayRootOf(bad) });
    expect(problems.map(formatProblem)).to.deep.equal([
      'clusters/test/cluster.yaml:6:27 Cluster/capa-v211 metadata.annotations["capflow.io/capi-line"]: "1.11" is not a schema line capflow knows; use v1.10, v1.11, auto',
    ]);
  });

  it('CAPFLOW_CAPI_LINE sets the line when neither the option nor the annotation does; a bad value is an input error', async () => {
    const before = process.env.CAPFLOW_CAPI_LINE;
    try {
      process.env.CAPFLOW_CAPI_LINE = 'v1.10';
      const { problems } = await validateClusterSpec(path.join(v211, 'dualstack-ipv4-primary'), v211Vars);
      expect(problems.filter((p) => p.code === 'unknown-field').map((p) => p.path)).to.include('spec.controlPlaneLoadBalancer.targetGroupIPType');
      const explicit = await validateClusterSpec(path.join(v211, 'dualstack-ipv4-primary'), { ...v211Vars, capiLine: 'auto' });
      expect(explicit.problems).to.deep.equal([]);
      process.env.CAPFLOW_CAPI_LINE = 'newest';
      const err = await validateClusterSpec(path.join(v211, 'default'), v211Vars).then(
        () => undefined,
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(err?.code).to.equal('CONFIG_INVALID');
      expect(err?.message).to.equal('CAPFLOW_CAPI_LINE must be one of v1.10, v1.11, auto, not "newest"');
    } finally {
      if (before === undefined) delete process.env.CAPFLOW_CAPI_LINE;
      else process.env.CAPFLOW_CAPI_LINE = before;
    }
  });

  it('the v1.10 templates keep their normalized model (and spec hash) whichever line is asked for', async () => {
    const vars = { varsFile: path.join(upstream, 'capa-cluster-template.vars') };
    const hashes = new Set<string>();
    for (const capiLine of ['auto', 'v1.10'] as const) {
      const { model, problems } = await validateClusterSpec(upstream, { ...vars, capiLine });
      expect(problems.map(formatProblem), capiLine).to.deep.equal([]);
      hashes.add(specHash(model as NonNullable<typeof model>));
    }
    expect(hashes.size).to.equal(1);
    const v111 = await validateClusterSpec(upstream, { ...vars, capiLine: 'v1.11' });
    expect(v111.problems.map(formatProblem)).to.deep.equal([]);
  });

  it('eks-fargate: the AWSFargateProfile is "not supported yet", the only problem', async () => {
    const { problems } = await validateClusterSpec(path.join(v211, 'eks-fargate'), v211Vars);
    expect(problems.map((p) => [p.code, p.kind, p.message, `${p.line}:${p.column}`])).to.deep.equal([
      ['unsupported-kind', 'AWSFargateProfile', 'kind AWSFargateProfile is not supported yet', '35:7'],
    ]);
  });

  it('eks-nodeadm-clusterclass (a class with no Cluster): the class and its templates are unused, NodeadmConfigTemplate "not supported yet"', async () => {
    const { problems } = await validateClusterSpec(path.join(v211, 'eks-nodeadm-clusterclass'), v211Vars);
    expect(codes(problems)).to.not.include('unknown-kind');
    expect(problems.filter((p) => p.code === 'unsupported-kind').map((p) => p.message)).to.deep.equal(['kind NodeadmConfigTemplate is not supported yet']);
    expect(problems.filter((p) => p.code === 'unused').map((p) => p.kind)).to.deep.equal(['ClusterClass', 'AWSManagedClusterTemplate', 'AWSManagedControlPlaneTemplate']);
  });

  // cluster-template-simple-clusterclass.yaml needs CNI_RESOURCES, pasted as the ConfigMap's data: `{}`
  // is a YAML collection, which the substitution check warns about (the only problem).
  const cniWarning = 'test/fixtures/spec/upstream-v2.11/simple-clusterclass/cluster-template-simple-clusterclass.yaml:226:7 warning: the value of ${CNI_RESOURCES} does not stay one YAML value here: it holds YAML syntax (": ", " #", a quote, a comma or brackets) that changes the document\'s structure hint: quote the use ("${CNI_RESOURCES}") if it is meant as one value';
  const classes: Array<[folder: string, provider: string, documents: string[], warnings: string[]]> = [
    [
      'simple-clusterclass',
      'aws',
      ['AWSCluster/capa-v211', 'AWSMachineTemplate/capa-v211-control-plane', 'AWSMachineTemplate/capa-v211-md-0', 'Cluster/capa-v211', 'ClusterResourceSet/capa-v211-crs-0', 'ConfigMap/cni-capa-v211-crs-0', 'KubeadmConfigTemplate/capa-v211-md-0', 'KubeadmControlPlane/capa-v211-control-plane', 'MachineDeployment/capa-v211-md-0'],
      [cniWarning],
    ],
    [
      'eks-clusterclass',
      'eks',
      ['AWSMachineTemplate/capa-v211-md-0', 'AWSManagedCluster/capa-v211', 'AWSManagedControlPlane/capa-v211-control-plane', 'Cluster/capa-v211', 'EKSConfigTemplate/capa-v211-md-0', 'MachineDeployment/capa-v211-md-0'],
      [],
    ],
  ];
  for (const [folder, provider, documents, warnings] of classes) {
    it(`${folder}: the topology expands with its class and validates, by default and when the folder targets v1.11`, async () => {
      for (const capiLine of [undefined, 'v1.11'] as const) {
        const { model, problems } = await validateClusterSpec(path.join(v211, folder), { ...v211Vars, ...(capiLine ? { capiLine } : {}) });
        expect(problems.map(formatProblem), `capiLine ${capiLine ?? 'default'}`).to.deep.equal(warnings);
        expect(model?.provider).to.equal(provider);
        expect(model?.documents.map((d) => `${d.kind}/${d.name}`).sort()).to.deep.equal(documents);
      }
    });
  }

  it('simple-clusterclass: the class\'s variables reach the expanded objects (region, sshKeyName, the machine types)', async () => {
    const { model } = await validateClusterSpec(path.join(v211, 'simple-clusterclass'), v211Vars);
    expect((model?.infrastructure as AWSCluster).spec).to.deep.include({ region: 'us-east-1', sshKeyName: 'default' });
    expect(model?.controlPlaneMachineTemplate?.spec.template.spec.instanceType).to.equal('t3.large');
    expect(model?.machineDeployments.map((m) => [m.deployment.spec.replicas, m.machineTemplate.spec.template.spec.instanceType])).to.deep.equal([[3, 't3.large']]);
    expect((model?.controlPlane as KubeadmControlPlane).spec).to.deep.include({ version: 'v1.33.4', replicas: 3 });
  });
});

describe('upstream kinds capflow does not act on', function () {
  this.timeout(60_000);
  after(cleanupSpecFolders);

  it('every kind in both schema folders is either supported or listed as not supported yet', async () => {
    const missing: string[] = [];
    for (const { folder } of CAPI_LINES) {
      for (const file of (await readdir(path.join(schemasRoot, folder))).filter((f) => f.endsWith('.yaml'))) {
        const crd = parseYaml(await readFile(path.join(schemasRoot, folder, file), 'utf8')) as { spec: { names: { kind: string } } };
        const kind = crd.spec.names.kind;
        if (!kindInfo(kind) && UNSUPPORTED_KINDS[kind] === undefined && !TOPOLOGY_KINDS.has(kind)) missing.push(`${folder}/${file}: ${kind}`);
      }
    }
    expect(missing).to.deep.equal([]);
  });

  const kinds: Array<[kind: string, apiVersion: string]> = [
    ['MachineDrainRule', 'cluster.x-k8s.io/v1beta2'],
    ['AWSFargateProfile', 'infrastructure.cluster.x-k8s.io/v1beta2'],
    ['NodeadmConfigTemplate', 'bootstrap.cluster.x-k8s.io/v1beta2'],
    ['NodeadmConfig', 'bootstrap.cluster.x-k8s.io/v1beta2'],
    ['AWSClusterControllerIdentity', 'infrastructure.cluster.x-k8s.io/v1beta2'],
    ['AWSClusterRoleIdentity', 'infrastructure.cluster.x-k8s.io/v1beta2'],
    ['AWSClusterStaticIdentity', 'infrastructure.cluster.x-k8s.io/v1beta2'],
    ['ROSACluster', 'infrastructure.cluster.x-k8s.io/v1beta2'],
    ['ROSAControlPlane', 'controlplane.cluster.x-k8s.io/v1beta2'],
    ['ROSAMachinePool', 'infrastructure.cluster.x-k8s.io/v1beta2'],
    ['ROSANetwork', 'infrastructure.cluster.x-k8s.io/v1beta2'],
    ['ROSARoleConfig', 'infrastructure.cluster.x-k8s.io/v1beta2'],
    ['ROSAOCMRoleConfig', 'infrastructure.cluster.x-k8s.io/v1beta2'],
    ['AWSServiceAccountIdentity', 'infrastructure.cluster.x-k8s.io/v1beta2'],
    // The BYOH provider's kinds beside the ones capflow reads (ByoCluster, ByoMachineTemplate).
    ['ByoClusterTemplate', 'infrastructure.cluster.x-k8s.io/v1beta1'],
    ['K8sInstallerConfig', 'infrastructure.cluster.x-k8s.io/v1beta1'],
    ['K8sInstallerConfigTemplate', 'infrastructure.cluster.x-k8s.io/v1beta1'],
    ['BootstrapKubeconfig', 'infrastructure.cluster.x-k8s.io/v1beta1'],
  ];
  it('each gets the same "kind X is not supported yet" problem (unsupported-kind) at its kind, never "unknown kind"', async () => {
    const docs = kinds.map(([kind, apiVersion], i) => `apiVersion: ${apiVersion}\nkind: ${kind}\nmetadata:\n  name: x${i}\nspec: {}\n`).join('---\n');
    const dir = await specFolder(minimalAws({ 'upstream.yaml': docs }));
    const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
    expect(codes(problems)).to.not.include('unknown-kind');
    const got = problems.filter((p) => p.file === 'clusters/test/upstream.yaml').map((p) => `${p.line}:${p.column} ${p.code} ${p.message}`);
    expect(got).to.deep.equal(kinds.map(([kind], i) => `${i * 6 + 2}:7 unsupported-kind kind ${kind} is not supported yet`));
    for (const p of problems.filter((q) => q.code === 'unsupported-kind')) expect(p.hint, p.kind).to.be.a('string').and.not.equal('');
  });
});

/** A ROSA HCP folder written in the shape of CAPA's ROSA templates (our own text): every ROSA kind, names cut with ${VAR:0:54}. */
const ROSA_TEMPLATE = `apiVersion: cluster.x-k8s.io/v1beta1
kind: Cluster
metadata:
  name: "\${CLUSTER_NAME}"
spec:
  clusterNetwork:
    pods:
      cidrBlocks: ["192.168.0.0/16"]
  infrastructureRef:
    apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
    kind: ROSACluster
    name: "\${CLUSTER_NAME}"
  controlPlaneRef:
    apiVersion: controlplane.cluster.x-k8s.io/v1beta2
    kind: ROSAControlPlane
    name: "\${CLUSTER_NAME}-control-plane"
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: ROSACluster
metadata:
  name: "\${CLUSTER_NAME}"
spec: {}
---
apiVersion: controlplane.cluster.x-k8s.io/v1beta2
kind: ROSAControlPlane
metadata:
  name: "\${CLUSTER_NAME}-control-plane"
spec:
  rosaClusterName: \${CLUSTER_NAME:0:54}
  domainPrefix: \${CLUSTER_NAME:0:15}
  version: "\${OPENSHIFT_VERSION}"
  region: "\${AWS_REGION}"
  installerRoleARN: "arn:aws:iam::\${AWS_ACCOUNT_ID}:role/\${ACCOUNT_ROLES_PREFIX}-HCP-ROSA-Installer-Role"
  subnets:
  - "\${PRIVATE_SUBNET_ID}" # a private cluster
  availabilityZones:
  - "\${AWS_REGION}a"
---
apiVersion: cluster.x-k8s.io/v1beta1
kind: MachinePool
metadata:
  name: "\${CLUSTER_NAME}-pool-0"
spec:
  clusterName: "\${CLUSTER_NAME}"
  replicas: 2
  template:
    spec:
      clusterName: "\${CLUSTER_NAME}"
      bootstrap:
        dataSecretName: ""
      infrastructureRef:
        apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
        kind: ROSAMachinePool
        name: "\${CLUSTER_NAME}-pool-0"
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: ROSAMachinePool
metadata:
  name: "\${CLUSTER_NAME}-pool-0"
spec:
  nodePoolName: "\${CLUSTER_NAME:0:15}-0"
  instanceType: m5.xlarge
  subnet: "\${PRIVATE_SUBNET_ID}"
  version: "\${OPENSHIFT_VERSION}"
`;

describe('a ROSA folder (the shape of the CAPA ROSA templates, with cluster.env)', function () {
  this.timeout(60_000);
  after(cleanupSpecFolders);

  it('substitutes every variable (${CLUSTER_NAME:0:54} included) and reports each ROSA kind as "not supported yet", never an unknown kind', async () => {
    const env = 'CLUSTER_NAME=rosa-hcp-dev\nOPENSHIFT_VERSION=4.17.3\nAWS_REGION=us-east-1\nAWS_ACCOUNT_ID=123456789012\nACCOUNT_ROLES_PREFIX=capa\nPRIVATE_SUBNET_ID=subnet-0b\n';
    const dir = await specFolder({ 'cluster-template-rosa.yaml': ROSA_TEMPLATE, 'cluster.env': env });
    const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
    expect(codes(problems).filter((c) => c.startsWith('variable') || c === 'unknown-kind' || c === 'vars-file')).to.deep.equal([]);
    expect(problems.filter((p) => p.code === 'unsupported-kind').map((p) => `${p.line}:${p.column} ${p.message}`)).to.deep.equal([
      '19:7 kind ROSACluster is not supported yet',
      '25:7 kind ROSAControlPlane is not supported yet',
      '57:7 kind ROSAMachinePool is not supported yet',
    ]);
    for (const line of ['v1.10', 'v1.11'] as const) {
      const pinned = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir), capiLine: line });
      expect(pinned.problems.filter((p) => p.code === 'unsupported-kind').map((p) => p.kind), line).to.deep.equal(['ROSACluster', 'ROSAControlPlane', 'ROSAMachinePool']);
    }
  });
});

const V1BETA2_CLUSTER = `apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: dev
spec:
  infrastructureRef:
    apiGroup: infrastructure.cluster.x-k8s.io
    kind: AWSCluster
    name: dev
  controlPlaneRef:
    apiGroup: controlplane.cluster.x-k8s.io
    kind: KubeadmControlPlane
    name: dev-control-plane
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSCluster
metadata:
  name: dev
spec:
  region: us-east-1
`;

describe('Cluster API kinds written as v1beta2 (Cluster API v1.11)', function () {
  this.timeout(60_000);
  after(cleanupSpecFolders);

  it('a v1beta2 Cluster is judged by its v1beta2 schema: a v1beta1 field in it is an unknown field at its file:line:column', async () => {
    const cluster = V1BETA2_CLUSTER.replace('    apiGroup: controlplane.cluster.x-k8s.io\n', '    apiVersion: controlplane.cluster.x-k8s.io/v1beta1\n');
    const dir = await specFolder(minimalAws({ 'cluster.yaml': cluster }));
    const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
    expect(problems.filter((p) => p.file === 'clusters/test/cluster.yaml' && p.severity === 'error').map(formatProblem)).to.deep.equal([
      'clusters/test/cluster.yaml:1:1 Cluster/dev spec.controlPlaneRef.apiGroup: missing required field `apiGroup`',
      'clusters/test/cluster.yaml:1:13 Cluster/dev apiVersion: Cluster cluster.x-k8s.io/v1beta2 (Cluster API v1.11 / AWS provider v2.11) was checked against its schema, but capflow cannot act on the v1beta2 shape yet hint: write cluster.x-k8s.io/v1beta1, which Cluster API v1.11 still serves (the AWS provider v2.11 templates do)',
      'clusters/test/cluster.yaml:11:5 Cluster/dev spec.controlPlaneRef.apiVersion: unknown field `apiVersion` (the API server would silently drop it)',
    ]);
  });

  it('a v1beta2 Cluster valid by its schema is refused only as not acted on yet (unsupported-feature), not as garbage', async () => {
    const dir = await specFolder(minimalAws({ 'cluster.yaml': V1BETA2_CLUSTER }));
    const { model, problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
    expect(model).to.equal(undefined);
    expect(problems.filter((p) => p.severity === 'error').map((p) => [p.code, p.file, p.line, p.column])).to.deep.equal([
      ['unsupported-feature', 'clusters/test/cluster.yaml', 1, 13],
    ]);
  });

  it('a v1beta2 KubeadmControlPlane and MachineDeployment are judged by their schemas: fields in their v1beta1 places are unknown fields at file:line:column', async () => {
    const kcp = `apiVersion: controlplane.cluster.x-k8s.io/v1beta2
kind: KubeadmControlPlane
metadata:
  name: dev-cp-v1beta2
spec:
  replicas: 3
  version: v1.33.4
  machineTemplate:
    infrastructureRef:
      apiGroup: infrastructure.cluster.x-k8s.io
      kind: AWSMachineTemplate
      name: dev-control-plane
  kubeadmConfigSpec: {}
`;
    const md = `apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata:
  name: dev-md-1
spec:
  clusterName: dev
  replicas: 2
  strategy:
    type: RollingUpdate
  selector:
    matchLabels: {}
  template:
    spec:
      clusterName: dev
      bootstrap:
        dataSecretName: boot
      infrastructureRef:
        apiGroup: infrastructure.cluster.x-k8s.io
        kind: AWSMachineTemplate
        name: dev-md-0
`;
    const dir = await specFolder(minimalAws({ 'v1beta2.yaml': `${kcp}---\n${md}` }));
    const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
    const mine = problems.filter((p) => p.file === 'clusters/test/v1beta2.yaml' && p.code === 'unknown-field').map(formatProblem);
    expect(mine, problems.map(formatProblem).join("\n")).to.deep.equal([
      'clusters/test/v1beta2.yaml:9:5 KubeadmControlPlane/dev-cp-v1beta2 spec.machineTemplate.infrastructureRef: unknown field `infrastructureRef` (the API server would silently drop it)',
      'clusters/test/v1beta2.yaml:22:3 MachineDeployment/dev-md-1 spec.strategy: unknown field `strategy` (the API server would silently drop it)',
    ]);
    expect(problems.filter((p) => p.code === 'unsupported-feature').map((p) => `${p.kind} ${p.line}:${p.column}`)).to.deep.equal([
      'KubeadmControlPlane 1:13',
      'MachineDeployment 15:13',
    ]);
  });

  it('v1beta2 references are resolved: a wrong apiGroup and a missing KubeadmControlPlane machine template are located', async () => {
    const cluster = V1BETA2_CLUSTER.replace('    apiGroup: infrastructure.cluster.x-k8s.io\n', '    apiGroup: controlplane.cluster.x-k8s.io\n');
    const kcp = `apiVersion: controlplane.cluster.x-k8s.io/v1beta2
kind: KubeadmControlPlane
metadata:
  name: dev-control-plane
spec:
  replicas: 3
  version: v1.33.4
  machineTemplate:
    spec:
      infrastructureRef:
        apiGroup: infrastructure.cluster.x-k8s.io
        kind: AWSMachineTemplate
        name: dev-control-plan
  kubeadmConfigSpec:
    format: cloud-config
---
${CONTROL_PLANE_MACHINE_TEMPLATE}`;
    const dir = await specFolder(minimalAws({ 'cluster.yaml': cluster, 'control-plane.yaml': kcp }));
    const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
    expect(problems.filter((p) => p.code === 'ref-group' || p.code === 'dangling-ref').map(formatProblem)).to.deep.equal([
      'clusters/test/cluster.yaml:7:15 Cluster/dev spec.infrastructureRef.apiGroup: apiGroup controlplane.cluster.x-k8s.io does not match kind AWSCluster (API group infrastructure.cluster.x-k8s.io)',
      'clusters/test/control-plane.yaml:13:15 KubeadmControlPlane/dev-control-plane spec.machineTemplate.spec.infrastructureRef.name: AWSMachineTemplate "dev-control-plan" is not defined in this folder; did you mean `dev-control-plane`?',
    ]);
  });

  it('a folder that targets v1.10 is told which line serves v1beta2', async () => {
    const dir = await specFolder(minimalAws({ 'cluster.yaml': V1BETA2_CLUSTER }));
    const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir), capiLine: 'v1.10' });
    const p = problems.find((q) => q.code === 'unserved-version');
    expect(p && formatProblem(p)).to.equal(
      'clusters/test/cluster.yaml:1:13 Cluster/dev apiVersion: cluster.x-k8s.io/v1beta2 is not served for Cluster in Cluster API v1.10 / AWS provider v2.9 (the line this folder targets); served: cluster.x-k8s.io/v1beta1 hint: Cluster API v1.11 / AWS provider v2.11 serves it: set the Cluster annotation capflow.io/capi-line: v1.11 (or auto), or write cluster.x-k8s.io/v1beta1',
    );
  });
});
