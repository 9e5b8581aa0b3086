import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { checkHostKeyFingerprint, formatProblem, isSpecInvalidError, labelSelectorMatches, loadClusterSpec, validateClusterSpec, type SpecProblem } from '../../src/spec/index.js';
import type { AWSCluster, KubeadmControlPlane } from '../../src/spec/index.js';
import { isCapflowError } from '../../src/core/errors.js';
import { cleanupSpecFolders, displayRootOf, examplesDir, fixturesDir, minimalAws, specFolder, AWS_CLUSTER, CLUSTER } from '../fixtures/spec/support.js';

async function problemsOf(files: Record<string, string>): Promise<string[]> {
  const dir = await specFolder(files);
  const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
  return problems.map(formatProblem);
}

function errors(problems: SpecProblem[]): SpecProblem[] {
  return problems.filter((p) => p.severity === 'error');
}

describe('spec loader', function () {
  this.timeout(30_000);
  after(cleanupSpecFolders);

  describe('examples', () => {
    const cases = [
      { dir: 'aws-self-managed', provider: 'aws', name: 'aws-dev' },
      { dir: 'aws-machinepool', provider: 'aws', name: 'aws-pool' },
      { dir: 'eks-managed', provider: 'eks', name: 'eks-prod' },
      { dir: 'eks-machine-pool', provider: 'eks', name: 'eks-pools' },
      { dir: 'byoh', provider: 'byoh', name: 'byoh-lab' },
    ] as const;
    for (const c of cases) {
      it(`the ${c.dir} example validates with no problems and is a ${c.provider} cluster named ${c.name}`, async () => {
        const { model, problems } = await validateClusterSpec(path.join(examplesDir, c.dir));
        expect(problems.map(formatProblem)).to.deep.equal([]);
        expect(model?.provider).to.equal(c.provider);
        expect(model?.name).to.equal(c.name);
        expect(model?.namespace).to.equal('default');
      });
    }

    it('the aws-self-managed model resolves templates, resource sets and orders addons by dependency', async () => {
      const model = await loadClusterSpec(path.join(examplesDir, 'aws-self-managed'));
      expect(model.kubernetesVersion).to.equal('v1.31.4');
      expect(model.machineDeployments.map((m) => [m.deployment.metadata.name, m.machineTemplate.metadata.name, m.bootstrapTemplate?.metadata.name])).to.deep.equal([
        ['aws-dev-md-0', 'aws-dev-md-0', 'aws-dev-workers'],
        ['aws-dev-md-spot', 'aws-dev-md-spot', 'aws-dev-workers'],
      ]);
      expect(model.controlPlaneMachineTemplate?.metadata.name).to.equal('aws-dev-control-plane');
      expect(Object.keys(model.machineTemplates).sort()).to.deep.equal(['aws-dev-control-plane', 'aws-dev-md-0', 'aws-dev-md-spot']);
      expect(model.resourceSets[0]?.resources.map((r) => r.metadata.name)).to.deep.equal(['calico-manifests']);
      expect(model.resourceSets[0]?.selectsCluster).to.equal(true);
      expect(model.healthChecks).to.have.length(1);
      expect(model.addons.map((a) => [a.metadata.name, a.spec.stage])).to.deep.equal([
        ['aws-cloud-controller-manager', 'ControlPlane'],
        ['aws-ebs-csi-driver', 'Workers'],
        ['flannel', 'ControlPlane'],
        ['ingress-nginx', 'Workers'],
        ['metrics-server', 'Workers'],
        ['kube-prometheus-stack', 'Workers'],
      ]);
      const doc = model.documents.find((d) => d.kind === 'MachineDeployment' && d.name === 'aws-dev-md-spot');
      expect(doc?.source).to.include({ file: 'examples/clusters/aws-self-managed/workers.yaml', index: 1, line: 36, column: 1 });
    });

    it('the byoh model carries the host inventory with the default SSH port applied', async () => {
      const model = await loadClusterSpec(path.join(examplesDir, 'byoh'));
      expect(model.hostInventory?.spec.hosts.map((h) => [h.name, h.port])).to.deep.equal([
        ['byoh-cp-0', 22],
        ['byoh-worker-0', 2222],
        ['byoh-worker-1', 22],
      ]);
    });

    it('the eks model has node groups as machine pools and the managed control plane version', async () => {
      const model = await loadClusterSpec(path.join(examplesDir, 'eks-managed'));
      expect(model.machinePools.map((p) => [p.pool.metadata.name, p.infrastructure.kind])).to.deep.equal([
        ['eks-prod-general', 'AWSManagedMachinePool'],
        ['eks-prod-spot', 'AWSManagedMachinePool'],
      ]);
      expect(model.kubernetesVersion).to.equal('v1.31');
    });
  });

  describe('a folder with many mistakes', () => {
    it('reports every one of them in one run, each with file:line:column, object and field path', async () => {
      const { model, problems } = await validateClusterSpec(path.join(fixturesDir, 'broken'));
      expect(model).to.equal(undefined);
      expect(problems.map(formatProblem)).to.deep.equal([
        'test/fixtures/spec/broken/control-plane.yaml:2:1 KubeadmControlPlane/broken-control-plane spec.version: missing required field `version`',
        'test/fixtures/spec/broken/workers.yaml:6:16 MachineDeployment/broken-md-0 spec.clusterName: must be the Cluster\'s name "broken" (got "other-cluster")',
        'test/fixtures/spec/broken/workers.yaml:7:13 MachineDeployment/broken-md-0 spec.replicas: must be integer',
        'test/fixtures/spec/broken/workers.yaml:8:3 MachineDeployment/broken-md-0 spec.minReadySecond: unknown field `minReadySecond` (the API server would silently drop it); did you mean `minReadySeconds`?',
        'test/fixtures/spec/broken/workers.yaml:22:15 MachineDeployment/broken-md-0 spec.template.spec.infrastructureRef.name: AWSMachineTemplate "broken-md-O" is not defined in this folder; did you mean `broken-md-0`?',
        'test/fixtures/spec/broken/workers.yaml:27:9 AWSMachineTemplate/broken-md-0 metadata.name: warning: AWSMachineTemplate "broken-md-0" is not referenced by anything in this folder',
        'test/fixtures/spec/broken/workers.yaml:36:9 AWSMachineTemplate/broken-md-0 metadata.name: duplicate AWSMachineTemplate "broken-md-0": already defined at test/fixtures/spec/broken/workers.yaml:27:9',
      ]);
      expect(problems.map((p) => p.code)).to.deep.equal(['schema', 'cluster-name', 'schema', 'unknown-field', 'dangling-ref', 'unused', 'duplicate']);
    });

    it('loadClusterSpec throws a SPEC_INVALID input error (exit code 2) carrying all the problems', async () => {
      const err: unknown = await loadClusterSpec(path.join(fixturesDir, 'broken')).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isSpecInvalidError(err)).to.equal(true);
      if (!isSpecInvalidError(err) || !isCapflowError(err)) return;
      expect(err.code).to.equal('SPEC_INVALID');
      expect(err.exitCode).to.equal(2);
      expect(errors([...err.problems])).to.have.length(6);
      expect(err.message).to.contain('spec.replicas: must be integer');
    });
  });

  describe('kinds and versions', () => {
    const cases: Array<{ name: string; files: Record<string, string>; expected: string }> = [
      {
        name: 'an unserved CAPI version (v1alpha4) is an error naming the served one',
        files: minimalAws({ 'cluster.yaml': `${CLUSTER.replace('cluster.x-k8s.io/v1beta1', 'cluster.x-k8s.io/v1alpha4')}---\n${AWS_CLUSTER}` }),
        expected: 'clusters/test/cluster.yaml:1:13 Cluster/dev apiVersion: cluster.x-k8s.io/v1alpha4 is not served for Cluster; served: cluster.x-k8s.io/v1beta1',
      },
      {
        name: 'CAPA v1beta1 (no longer served by the v2.9 CRDs) is an error naming v1beta2',
        files: minimalAws({ 'cluster.yaml': `${CLUSTER}---\n${AWS_CLUSTER.replace('v1beta2', 'v1beta1')}` }),
        expected: 'clusters/test/cluster.yaml:17:13 AWSCluster/dev apiVersion: infrastructure.cluster.x-k8s.io/v1beta1 is not served for AWSCluster; served: infrastructure.cluster.x-k8s.io/v1beta2',
      },
      {
        name: 'an unknown kind is an error suggesting the closest known kind',
        files: minimalAws({ 'extra.yaml': 'apiVersion: infrastructure.cluster.x-k8s.io/v1beta2\nkind: AWSClustr\nmetadata:\n  name: x\n' }),
        expected: 'clusters/test/extra.yaml:2:7 AWSClustr/x kind: unknown kind AWSClustr (apiVersion infrastructure.cluster.x-k8s.io/v1beta2); did you mean `AWSCluster`?',
      },
      {
        name: 'a kind under the wrong API group is an error',
        files: minimalAws({ 'extra.yaml': 'apiVersion: cluster.x-k8s.io/v1beta1\nkind: AWSMachineTemplate\nmetadata:\n  name: x\n' }),
        expected: 'clusters/test/extra.yaml:1:13 AWSMachineTemplate/x apiVersion: AWSMachineTemplate belongs to API group infrastructure.cluster.x-k8s.io, not cluster.x-k8s.io',
      },
      {
        name: 'a ByoHost is a known kind that is not supported, with what to do instead',
        files: minimalAws({ 'extra.yaml': 'apiVersion: infrastructure.cluster.x-k8s.io/v1beta1\nkind: ByoHost\nmetadata:\n  name: h\n' }),
        expected: 'clusters/test/extra.yaml:2:7 ByoHost/h kind: kind ByoHost is not supported yet hint: ByoHost objects are registered by the BYOH host agent; list the hosts in a capflow.io/v1alpha1 ByoHostInventory instead',
      },
      {
        name: 'a second Cluster in the folder is an error',
        files: minimalAws({ 'extra.yaml': CLUSTER.replace('name: dev\n', 'name: dev2\n') }),
        expected: 'clusters/test/extra.yaml:2:7 Cluster/dev2 kind: a cluster folder holds exactly one Cluster; Cluster "dev" is defined at clusters/test/cluster.yaml:4:9',
      },
      {
        name: 'a folder without a Cluster is an error',
        files: { 'workers.yaml': minimalAws()['workers.yaml'] as string },
        expected: 'clusters/test no Cluster found: a cluster folder holds exactly one Cluster (cluster.x-k8s.io/v1beta1)',
      },
      {
        name: 'a reference whose apiVersion names another API group is an error',
        files: minimalAws({ 'cluster.yaml': `${CLUSTER.replace('apiVersion: infrastructure.cluster.x-k8s.io/v1beta2\n    kind: AWSCluster', 'apiVersion: controlplane.cluster.x-k8s.io/v1beta2\n    kind: AWSCluster')}---\n${AWS_CLUSTER}` }),
        expected: 'clusters/test/cluster.yaml:9:17 Cluster/dev spec.infrastructureRef.apiVersion: apiVersion controlplane.cluster.x-k8s.io/v1beta2 does not match kind AWSCluster (API group infrastructure.cluster.x-k8s.io)',
      },
      {
        name: 'a reference to a kind that cannot be used there is an error',
        files: minimalAws({ 'cluster.yaml': `${CLUSTER.replace('kind: KubeadmControlPlane', 'kind: AWSMachineTemplate')}---\n${AWS_CLUSTER}` }),
        expected: 'clusters/test/cluster.yaml:14:11 Cluster/dev spec.controlPlaneRef.kind: AWSMachineTemplate cannot be referenced here; expected one of KubeadmControlPlane, AWSManagedControlPlane',
      },
      {
        name: 'a YAML syntax error is reported at its position',
        files: minimalAws({ 'extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: [1, 2\n' }),
        expected: 'clusters/test/extra.yaml:7:1 YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const problems = await problemsOf(c.files);
        expect(problems.some((p) => p.startsWith(c.expected)), problems.join("\n")).to.equal(true);
      });
    }
  });

  describe('features capflow does not support yet', () => {
    const cases = [
      {
        name: 'Cluster.spec.topology naming a ClusterClass defined nowhere says where it looked (spec-topology.test.ts tests topologies)',
        files: minimalAws({ 'cluster.yaml': `${CLUSTER}  topology:\n    class: quick-start\n    version: v1.31.4\n---\n${AWS_CLUSTER}` }),
        expected: 'clusters/test/cluster.yaml:17:12 Cluster/dev spec.topology.class: ClusterClass "quick-start" is not defined in this folder nor under classes/ hint:',
      },
      {
        name: 'a disabled control plane load balancer says it is not supported yet',
        files: minimalAws({ 'cluster.yaml': `${CLUSTER}---\n${AWS_CLUSTER}  controlPlaneLoadBalancer:\n    loadBalancerType: disabled\n` }),
        expected: 'clusters/test/cluster.yaml:24:5 AWSCluster/dev spec.controlPlaneLoadBalancer.loadBalancerType: AWSCluster.spec.controlPlaneLoadBalancer.loadBalancerType `disabled` is not supported yet',
      },
      {
        name: 'generateName says capflow needs stable names',
        files: minimalAws({ 'extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x-\n' }),
        expected: 'clusters/test/extra.yaml:1:1 ConfigMap metadata.name: missing required field `name` hint: capflow needs stable names: use metadata.name instead of generateName',
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const problems = await problemsOf(c.files);
        expect(problems.some((p) => p.startsWith(c.expected)), problems.join('\n')).to.equal(true);
      });
    }
  });

  describe('structural schema rules', () => {
    const mhc = (maxUnhealthy: string): string => `apiVersion: cluster.x-k8s.io/v1beta1
kind: MachineHealthCheck
metadata:
  name: dev-mhc
spec:
  clusterName: dev
  maxUnhealthy: ${maxUnhealthy}
  selector:
    matchLabels:
      cluster.x-k8s.io/deployment-name: dev-md-0
`;
    for (const [value, at] of [['40%', ''], ['2', ''], ['true', '7:17'], ['[1]', '7:3']] as const) {
      it(`an int-or-string field (MachineHealthCheck.spec.maxUnhealthy) ${at ? 'rejects' : 'accepts'} ${value}`, async () => {
        const problems = await problemsOf(minimalAws({ 'mhc.yaml': mhc(value) }));
        if (!at) expect(problems).to.deep.equal([]);
        else expect(problems).to.deep.equal([`clusters/test/mhc.yaml:${at} MachineHealthCheck/dev-mhc spec.maxUnhealthy: must be integer or string`]);
      });
    }

    it('a null in a field that is not nullable is pruned (as the API server does), not an error', async () => {
      const files = minimalAws();
      files['workers.yaml'] = (files['workers.yaml'] as string).replace('matchLabels: {}', 'matchLabels: null');
      const dir = await specFolder(files);
      const { model, problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(problems).to.deep.equal([]);
      expect(model?.machineDeployments[0]?.deployment.spec.selector).to.deep.equal({});
    });

    it('schema defaults are applied to the normalized model', async () => {
      const withParents = `${AWS_CLUSTER}  network:\n    vpc:\n      cidrBlock: 10.0.0.0/16\n  controlPlaneLoadBalancer:\n    healthCheckProtocol: HTTPS\n`;
      const dir = await specFolder(minimalAws({ 'cluster.yaml': `${CLUSTER}---\n${withParents}` }));
      const model = await loadClusterSpec(dir);
      const aws = model.infrastructure as AWSCluster;
      expect(aws.spec.network?.vpc).to.include({ availabilityZoneUsageLimit: 3, availabilityZoneSelection: 'Ordered' });
      expect(aws.spec.controlPlaneLoadBalancer).to.include({ loadBalancerType: 'classic', scheme: 'internet-facing' });
      expect((model.controlPlane as KubeadmControlPlane).spec.rolloutStrategy).to.deep.equal({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1 } });
      expect(model.cluster.metadata.namespace).to.equal('default');
    });

    it('an unknown field far from any known name gets no suggestion, and status is only a warning', async () => {
      const files = minimalAws({ 'cluster.yaml': `${CLUSTER}---\n${AWS_CLUSTER}  flavour: vanilla\nstatus:\n  ready: true\n` });
      expect(await problemsOf(files)).to.deep.equal([
        'clusters/test/cluster.yaml:23:3 AWSCluster/dev spec.flavour: unknown field `flavour` (the API server would silently drop it)',
        'clusters/test/cluster.yaml:24:1 AWSCluster/dev status: warning: `status` is written by controllers; capflow ignores it',
      ]);
    });

    it('metadata is checked: DNS-1123 names, label values and unknown metadata fields', async () => {
      const files = minimalAws({ 'extra.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n  labels:\n    tier: 3\n  annotation:\n    a: b\n' });
      expect(await problemsOf(files)).to.include.members([
        'clusters/test/extra.yaml:4:9 ConfigMap/Bad_Name metadata.name: "Bad_Name" is not a DNS-1123 subdomain (lower case alphanumerics, \'-\' and \'.\', starting and ending alphanumeric, at most 253 characters)',
        'clusters/test/extra.yaml:6:11 ConfigMap/Bad_Name metadata.labels.tier: must be string (quote it: "3")',
        'clusters/test/extra.yaml:7:3 ConfigMap/Bad_Name metadata.annotation: unknown field `annotation` (the API server would silently drop it); did you mean `annotations`?',
      ]);
    });

    it('a ClusterResourceSet naming a missing ConfigMap is a dangling reference; one not selecting the Cluster is a warning', async () => {
      const crs = 'apiVersion: addons.cluster.x-k8s.io/v1beta1\nkind: ClusterResourceSet\nmetadata:\n  name: cni\nspec:\n  clusterSelector:\n    matchLabels:\n      cni: cilium\n  resources:\n  - kind: ConfigMap\n    name: calico\n';
      expect(await problemsOf(minimalAws({ 'crs.yaml': crs }))).to.deep.equal([
        'clusters/test/crs.yaml:6:3 ClusterResourceSet/cni spec.clusterSelector: warning: does not select Cluster "dev" (its labels: {"cni":"calico"}), so its resources would not be applied hint: add matching labels to the Cluster, or fix the selector',
        'clusters/test/crs.yaml:11:11 ClusterResourceSet/cni spec.resources[0].name: ConfigMap "calico" is not defined in this folder',
      ]);
    });
  });

  describe('capflow kinds', () => {
    const addon = (name: string, deps: string[]): string =>
      `---\napiVersion: capflow.io/v1alpha1\nkind: AddonChart\nmetadata:\n  name: ${name}\nspec:\n  repo: https://charts.example.com\n  chart: ${name}\n  version: 1.0.0\n${deps.length ? `  dependsOn: [${deps.join(', ')}]\n` : ''}`;

    it('AddonCharts are ordered dependencies first, ties by name, with defaults applied', async () => {
      const dir = await specFolder(minimalAws({ 'addons.yaml': addon('c', ['a']) + addon('b', []) + addon('a', ['b']) + addon('d', []) }));
      const model = await loadClusterSpec(dir);
      expect(model.addons.map((a) => a.metadata.name)).to.deep.equal(['b', 'a', 'c', 'd']);
      expect(model.addons[0]?.spec).to.include({ namespace: 'default', releaseName: 'b', createNamespace: true, wait: true, timeout: '5m' });
    });

    it('an AddonChart dependency cycle is reported on every chart in the cycle', async () => {
      const problems = await problemsOf(minimalAws({ 'addons.yaml': addon('a', ['b']) + addon('b', ['a']) + addon('c', ['missing']) }));
      expect(problems).to.deep.equal([
        'clusters/test/addons.yaml:10:3 AddonChart/a spec.dependsOn: dependency cycle: a → b → a',
        'clusters/test/addons.yaml:20:3 AddonChart/b spec.dependsOn: dependency cycle: b → a → b',
        'clusters/test/addons.yaml:30:15 AddonChart/c spec.dependsOn[0]: AddonChart "missing" is not defined in this folder',
      ]);
    });

    it('an AddonChart has exactly one source (repo with chart and version, or a path inside the repository), values files inside the folder', async () => {
      const chart = (name: string, body: string): string => `---\napiVersion: capflow.io/v1alpha1\nkind: AddonChart\nmetadata:\n  name: ${name}\nspec:\n${body}`;
      const files = {
        'addons.yaml':
          chart('local', '  path: charts/tiny\n  valuesFiles: [values/base.yaml]\n  credentialsSecretRef: {name: repo-creds}\n') +
          chart('both', '  repo: https://charts.example.com\n  path: charts/tiny\n  chart: x\n  version: 1.0.0\n') +
          chart('none', '  namespace: x\n') +
          chart('noversion', '  repo: oci://registry.example.com/charts\n  chart: x\n') +
          chart('escape', '  path: ../../elsewhere\n  valuesFiles: [ok.yaml, /etc/passwd]\n'),
      };
      expect(await problemsOf(minimalAws(files))).to.deep.equal([
        'clusters/test/addons.yaml:17:3 AddonChart/both spec.path: exactly one of repo and path must be given: a chart comes from a repository or from a folder of the Git repository',
        'clusters/test/addons.yaml:25:1 AddonChart/none spec: a chart needs a source: repo (with chart and version) or path (a chart folder of the Git repository)',
        'clusters/test/addons.yaml:33:3 AddonChart/noversion spec.repo: a chart from a repository needs `version`',
        'clusters/test/addons.yaml:41:9 AddonChart/escape spec.path: "../../elsewhere" leaves its folder; it must be relative to the repository root, without .. segments',
        'clusters/test/addons.yaml:42:26 AddonChart/escape spec.valuesFiles[1]: "/etc/passwd" is not a relative path; it must be relative to the cluster folder, without .. segments',
      ]);
      const model = await loadClusterSpec(await specFolder(minimalAws({ 'addons.yaml': chart('local', '  path: charts/tiny\n  valuesFiles: [values/base.yaml]\n  credentialsSecretRef: {name: repo-creds}\n') })));
      expect(model.addons[0]?.spec).to.include({ path: 'charts/tiny', releaseName: 'local' }).and.deep.include({ valuesFiles: ['values/base.yaml'], credentialsSecretRef: { name: 'repo-creds' } });
    });

    it('a ByoHostInventory with a malformed host key, a duplicate host and a bad port reports each', async () => {
      const inv = `apiVersion: capflow.io/v1alpha1
kind: ByoHostInventory
metadata:
  name: hosts
spec:
  hosts:
  - name: h1
    address: 10.0.0.1
    user: root
    hostKey: ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ== root@h1
  - name: h1
    address: 10.0.0.2
    user: root
    port: 70000
    hostKey: ecdsa-sha2-nistp256 AAAA
`;
      expect(await problemsOf(minimalAws({ 'hosts.yaml': inv }))).to.deep.equal([
        'clusters/test/hosts.yaml:2:7 ByoHostInventory/hosts kind: warning: a ByoHostInventory is only used by BYOH clusters (this is an aws cluster)',
        'clusters/test/hosts.yaml:10:14 ByoHostInventory/hosts spec.hosts[0].hostKey: not a well-formed OpenSSH public key: the key blob is a ssh-rsa key, not ssh-ed25519 hint: copy the line from the host: cat /etc/ssh/ssh_host_ed25519_key.pub (or its fingerprint: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)',
        'clusters/test/hosts.yaml:11:11 ByoHostInventory/hosts spec.hosts[1].name: duplicate host name "h1" (also spec.hosts[0])',
        'clusters/test/hosts.yaml:14:11 ByoHostInventory/hosts spec.hosts[1].port: must be <= 65535 (got 70000)',
        'clusters/test/hosts.yaml:15:14 ByoHostInventory/hosts spec.hosts[1].hostKey: not a well-formed OpenSSH public key: the key blob is too short hint: copy the line from the host: cat /etc/ssh/ssh_host_ed25519_key.pub (or its fingerprint: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)',
      ]);
    });
  });
  describe('BYOH host inventory', () => {
    const example = (file: string): string => readFileSync(path.join(examplesDir, 'byoh', file), 'utf8');
    /** The byoh example's folder, with files replaced. */
    const byoh = (overrides: Record<string, string> = {}): Record<string, string> => ({
      'cluster.yaml': example('cluster.yaml'),
      'control-plane.yaml': example('control-plane.yaml'),
      'workers.yaml': example('workers.yaml'),
      'hosts.yaml': example('hosts.yaml'),
      ...overrides,
    });
    const KEY_W0 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbyL8tE90kj9da6W6c3AzKjRU6N4HimhBz1GQll6ybZ';
    // ssh-keygen -lf of the example's byoh-cp-0 key.
    const FINGERPRINT = 'SHA256:1XkykIcakZLCIZUL+MdnlKCmeGDx4r/G6LLr8JGncT0';
    /** An inventory: `spec` lines above the hosts, then hosts (each a block of lines under `- `). */
    const inventory = (specLines: string, hosts: string[]): string =>
      `apiVersion: capflow.io/v1alpha1\nkind: ByoHostInventory\nmetadata:\n  name: hosts\nspec:\n${specLines}  hosts:\n${hosts.join('')}`;
    const host = (name: string, address: string, role: string, extra = `    hostKey: ${KEY_W0}\n`): string =>
      `  - name: ${name}\n    address: ${address}\n    user: capflow\n${extra}    labels:\n      capflow.io/role: ${role}\n`;
    const threeHosts = (extra0?: string): string[] => [host('cp', '10.0.0.1', 'control-plane', extra0), host('w0', '10.0.0.2', 'worker'), host('w1', '10.0.0.3', 'worker')];

    it('accepts a SHA256 fingerprint, trustOnFirstUse without a key, a jump host, packages and kube-vip, and applies the defaults', async () => {
      const inv = inventory(
        `  sshKeySecretRef: {name: ssh}\n  jumpHost: {address: bastion.example.com, user: jump, hostKey: "${FINGERPRINT}"}\n  packages: {bundlePath: /opt/capflow/bundle}\n`,
        [host('cp', '10.0.0.1', 'control-plane', `    hostKey: ${FINGERPRINT}\n`), host('w0', '10.0.0.2', 'worker', '    trustOnFirstUse: true\n'), host('w1', '10.0.0.3', 'worker')],
      );
      const dir = await specFolder(byoh({ 'hosts.yaml': inv }));
      const { model, problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(problems.map(formatProblem)).to.deep.equal([]);
      const spec = model?.hostInventory?.spec;
      expect(spec?.sshKeySecretRef).to.deep.equal({ name: 'ssh', key: 'ssh-privatekey' });
      expect(spec?.jumpHost).to.deep.equal({ address: 'bastion.example.com', port: 22, user: 'jump', hostKey: FINGERPRINT });
      expect(spec?.apiServerLoadBalancer).to.deep.equal({ type: 'kube-vip', image: 'ghcr.io/kube-vip/kube-vip:v0.8.9' });
      expect(spec?.hosts.map((h) => [h.name, h.hostKey ?? null, h.trustOnFirstUse])).to.deep.equal([
        ['cp', FINGERPRINT, false],
        ['w0', null, true],
        ['w1', KEY_W0, false],
      ]);
    });

    it('the example shows kube-vip on eth0 and still validates', async () => {
      const model = await loadClusterSpec(path.join(examplesDir, 'byoh'));
      expect(model.hostInventory?.spec.apiServerLoadBalancer).to.deep.equal({ type: 'kube-vip', interface: 'eth0', image: 'ghcr.io/kube-vip/kube-vip:v0.8.9' });
    });

    it('refuses a duplicate address:port (the default port counts) and a duplicate name', async () => {
      const inv = inventory('', [...threeHosts(), host('w2', '10.0.0.2', 'worker', `    port: 22\n    hostKey: ${KEY_W0}\n`), host('w0', '10.0.0.9', 'worker')]);
      expect(await problemsOf(byoh({ 'hosts.yaml': inv }))).to.deep.equal([
        'clusters/test/hosts.yaml:26:14 ByoHostInventory/hosts spec.hosts[3].address: duplicate host address 10.0.0.2:22 (also spec.hosts[1])',
        'clusters/test/hosts.yaml:32:11 ByoHostInventory/hosts spec.hosts[4].name: duplicate host name "w0" (also spec.hosts[1])',
      ]);
    });

    it('refuses a host without a key (unless trustOnFirstUse), saying how to get it', async () => {
      const inv = inventory('', [host('cp', 'cp.lab.example.com', 'control-plane', '    port: 2222\n'), host('w0', '10.0.0.2', 'worker', '    trustOnFirstUse: false\n'), host('w1', '10.0.0.3', 'worker')]);
      expect(await problemsOf(byoh({ 'hosts.yaml': inv }))).to.deep.equal([
        'clusters/test/hosts.yaml:7:5 ByoHostInventory/hosts spec.hosts[0]: host "cp" has no hostKey: pin its SSH host key, from `ssh-keyscan -p 2222 -t ed25519 cp.lab.example.com` (checked out of band) or on the host `cat /etc/ssh/ssh_host_ed25519_key.pub` hint: or set trustOnFirstUse: true to accept the key seen on first connection (capflow then reports it as a suggested change to this file)',
        'clusters/test/hosts.yaml:13:5 ByoHostInventory/hosts spec.hosts[1]: host "w0" has no hostKey: pin its SSH host key, from `ssh-keyscan -t ed25519 10.0.0.2` (checked out of band) or on the host `cat /etc/ssh/ssh_host_ed25519_key.pub` hint: or set trustOnFirstUse: true to accept the key seen on first connection (capflow then reports it as a suggested change to this file)',
      ]);
    });

    it('refuses a malformed fingerprint, on a host and on the jump host', async () => {
      const inv = inventory(`  jumpHost:\n    address: 10.0.0.254\n    user: jump\n    hostKey: "${FINGERPRINT}="\n`, threeHosts(`    hostKey: SHA256:1XkykIcakZLCIZUL+MdnlKCmeGDx4r\n`));
      const hint = 'hint: copy the line from the host: cat /etc/ssh/ssh_host_ed25519_key.pub (or its fingerprint: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)';
      expect(await problemsOf(byoh({ 'hosts.yaml': inv }))).to.deep.equal([
        `clusters/test/hosts.yaml:9:14 ByoHostInventory/hosts spec.jumpHost.hostKey: not a SHA256 host key fingerprint: the base64 after SHA256: is written without = padding (as ssh-keygen -lf prints it) hint: on the jump host: ${hint.slice('hint: '.length)}`,
        `clusters/test/hosts.yaml:14:14 ByoHostInventory/hosts spec.hosts[0].hostKey: not a SHA256 host key fingerprint: SHA256: is followed by 43 base64 characters, not 30 ${hint}`,
      ]);
    });

    it('checks fingerprints byte for byte', () => {
      expect(checkHostKeyFingerprint(FINGERPRINT)).to.equal(undefined);
      // 43 characters whose last one carries non-zero padding bits: not the encoding of 32 bytes.
      expect(checkHostKeyFingerprint(`${FINGERPRINT.slice(0, -1)}1`)).to.equal('the base64 after SHA256: does not encode 32 bytes');
      expect(checkHostKeyFingerprint('SHA256:' + '*'.repeat(43))).to.equal('the part after SHA256: is not base64');
    });

    it('refuses both package sources, a relative bundlePath and a repository that is not http(s)', async () => {
      const both = inventory('  packages:\n    repository: https://mirror.example.com/deb/\n    bundlePath: opt/bundle\n', threeHosts());
      expect(await problemsOf(byoh({ 'hosts.yaml': both }))).to.deep.equal([
        'clusters/test/hosts.yaml:8:5 ByoHostInventory/hosts spec.packages.bundlePath: at most one of repository and bundlePath may be given: packages come from a repository, or from an offline bundle on each host',
        'clusters/test/hosts.yaml:8:17 ByoHostInventory/hosts spec.packages.bundlePath: "opt/bundle" is not an absolute path; bundlePath is a directory on each host, such as /opt/capflow/bundle',
      ]);
      const ftp = inventory('  packages:\n    repository: ftp://mirror.example.com/deb/\n', threeHosts());
      expect(await problemsOf(byoh({ 'hosts.yaml': ftp }))).to.deep.equal([
        'clusters/test/hosts.yaml:7:17 ByoHostInventory/hosts spec.packages.repository: "ftp://mirror.example.com/deb/" is not an http:// or https:// URL hint: e.g. https://pkgs.k8s.io/core:/stable:/v1.31, or a mirror of it',
      ]);
    });

    it('refuses a group whose selector matches fewer hosts than its replicas, at its replicas line', async () => {
      const workers = example('workers.yaml').replace('replicas: 2', 'replicas: 3');
      expect(await problemsOf(byoh({ 'workers.yaml': workers }))).to.deep.equal([
        "clusters/test/workers.yaml:7:13 MachineDeployment/byoh-lab-md-0 spec.replicas: MachineDeployment/byoh-lab-md-0 wants 3 hosts; ByoMachineTemplate/byoh-lab-workers's selector matches 2 of the inventory: byoh-worker-0, byoh-worker-1 hint: add hosts labelled to match spec.template.spec.selector of ByoMachineTemplate/byoh-lab-workers to the ByoHostInventory (clusters/test/hosts.yaml:7:9), or lower replicas",
      ]);
      const cp = example('control-plane.yaml').replace('capflow.io/role: control-plane\n', 'capflow.io/role: etcd\n');
      expect(await problemsOf(byoh({ 'control-plane.yaml': cp.replace(/capflow\.io\/role: control-plane$/, 'capflow.io/role: etcd') }))).to.deep.equal([
        "clusters/test/control-plane.yaml:6:13 KubeadmControlPlane/byoh-lab-control-plane spec.replicas: KubeadmControlPlane/byoh-lab-control-plane wants 1 host; ByoMachineTemplate/byoh-lab-control-plane's selector matches none of the inventory hint: add hosts labelled to match spec.template.spec.selector of ByoMachineTemplate/byoh-lab-control-plane to the ByoHostInventory (clusters/test/hosts.yaml:7:9), or lower replicas",
      ]);
    });

    it('says nothing when two groups select the same hosts (claims decide)', async () => {
      // The control plane's selector {} selects every host; the workers' still have their two.
      const cp = example('control-plane.yaml').replace(/selector:\n\s+matchLabels:\n\s+capflow\.io\/role: control-plane/, 'selector: {}');
      expect(cp).to.include('selector: {}');
      expect(await problemsOf(byoh({ 'control-plane.yaml': cp }))).to.deep.equal([]);
    });

    it('selectors follow Kubernetes LabelSelector semantics', () => {
      const labels = { 'capflow.io/role': 'worker', zone: 'a' };
      expect(labelSelectorMatches(undefined, labels)).to.equal(false);
      expect(labelSelectorMatches({}, labels)).to.equal(true);
      expect(labelSelectorMatches({ matchLabels: { zone: 'a' }, matchExpressions: [{ key: 'capflow.io/role', operator: 'In', values: ['worker'] }] }, labels)).to.equal(true);
      expect(labelSelectorMatches({ matchExpressions: [{ key: 'gpu', operator: 'DoesNotExist' }, { key: 'zone', operator: 'NotIn', values: ['b'] }] }, labels)).to.equal(true);
      expect(labelSelectorMatches({ matchExpressions: [{ key: 'gpu', operator: 'Exists' }] }, labels)).to.equal(false);
    });

    it('with kube-vip, refuses a control plane endpoint that is a name; external takes one; either needs it set', async () => {
      const named = example('cluster.yaml').replace('host: 10.0.10.100', 'host: api.lab.example.com');
      expect(await problemsOf(byoh({ 'cluster.yaml': named }))).to.deep.equal([
        'clusters/test/cluster.yaml:31:11 ByoCluster/byoh-lab spec.controlPlaneEndpoint.host: "api.lab.example.com" is a name, but kube-vip (the ByoHostInventory\'s apiServerLoadBalancer) holds an IP address on the control plane hosts hint: give an IPv4 or IPv6 address, or set the ByoHostInventory\'s spec.apiServerLoadBalancer.type to external when a load balancer you run serves this name',
      ]);
      const external = example('hosts.yaml').replace('type: kube-vip', 'type: external');
      expect(await problemsOf(byoh({ 'cluster.yaml': named, 'hosts.yaml': external }))).to.deep.equal([]);
      const v6 = example('cluster.yaml').replace('host: 10.0.10.100', 'host: "fd00:10::100"');
      expect(await problemsOf(byoh({ 'cluster.yaml': v6 }))).to.deep.equal([]);
      const none = example('cluster.yaml').replace(/ {2}controlPlaneEndpoint:\n\s+host: 10\.0\.10\.100\n\s+port: 6443\n/, '');
      expect(none).to.not.include('controlPlaneEndpoint');
      expect(await problemsOf(byoh({ 'cluster.yaml': none, 'hosts.yaml': external }))).to.deep.equal([
        "clusters/test/cluster.yaml:28:1 ByoCluster/byoh-lab spec.controlPlaneEndpoint: a BYOH cluster needs spec.controlPlaneEndpoint (host and port): the API server's address, which the external load balancer serves hint: e.g. controlPlaneEndpoint: {host: 10.0.10.100, port: 6443}, a free address on the control plane hosts' network",
      ]);
    });

    it('refuses a BYOH folder without a ByoHostInventory', async () => {
      const files = byoh();
      delete files['hosts.yaml'];
      expect(await problemsOf(files)).to.deep.equal([
        'clusters/test/cluster.yaml:15:3 Cluster/byoh-lab spec.infrastructureRef: a BYOH cluster needs a capflow.io/v1alpha1 ByoHostInventory listing its hosts (name, address, user, hostKey)',
      ]);
    });
  });
});
