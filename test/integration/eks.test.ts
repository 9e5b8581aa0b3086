/**
 * The EKS path against moto through the fault proxy: provision-vpc, eks-control-plane and
 * eks-node-groups run in process (runStep) on a temp copy of examples/clusters/eks-managed.
 * moto answers IAM, EC2 and EKS's clusters and node groups (ACTIVE at once); the calls moto lacks
 * (addons, version updates and DescribeUpdate, access entries) and the parts of its answers that
 * are not the real API's (a certificate authority that is not a PEM, a version that never moves)
 * come from the fault proxy's EKS stand-in (test/support/eks-stand-in.ts), which answers in the
 * response shapes of the real API. Test names say when they rely on it.
 */
import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DescribeAddonCommand, DescribeClusterCommand, DescribeNodegroupCommand, EKSClient, ListNodegroupsCommand } from '@aws-sdk/client-eks';
import { GetRoleCommand, IAMClient, ListAttachedRolePoliciesCommand, ListOpenIDConnectProvidersCommand } from '@aws-sdk/client-iam';
import { parse as parseYaml } from 'yaml';
import type { Executor } from '../../src/core/executor.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { readStepStatus } from '../../src/core/status.js';
import { eksControlPlane } from '../../executors/eks-control-plane.js';
import { eksNodeGroups } from '../../executors/eks-node-groups.js';
import { provisionVpc } from '../../executors/provision-vpc.js';
import type { EksControlPlaneStatus, ProvisionVpcStatus } from '../../executors/aws-step.js';
import { awsTestEnv, clientConfig, startMoto, type Moto } from '../support/moto.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { snapshotWorld } from '../support/aws-world.js';
import { runStepVia, type StepRun } from '../support/step-run.js';
import { spawnCapflow } from '../support/cli.js';
import { createGitRemote, git, type GitRemote } from '../support/git-remote.js';

const CLUSTER = 'eks-prod';
const REGION = 'us-west-2';
const REVISION = '89abcdef0123456789abcdef0123456789abcdef';
const EXAMPLE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'examples', 'clusters', 'eks-managed');
const OWNED = `sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`;

type Run = StepRun;

describe('EKS: network, control plane and managed node groups against moto (EKS calls moto lacks served by the fault proxy stand-in, in the real API response shapes)', function () {
  this.timeout(240_000);
  let moto: Moto;
  let proxy: FaultProxy;
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;
  const file = (name: string) => path.join(repo, 'clusters', 'eks', name);
  const eks = () => new EKSClient({ ...clientConfig(proxy.endpoint), region: REGION });
  const iam = () => new IAMClient({ ...clientConfig(proxy.endpoint), region: REGION });

  before(async () => {
    // The steps attach AWS managed policies (AmazonEKSClusterPolicy, ...): moto must know them.
    moto = await startMoto({ iamManagedPolicies: true });
    proxy = await startFaultProxy({ target: moto.endpoint });
  });
  after(async () => {
    await proxy?.stop();
    await moto?.stop();
  });
  beforeEach(async () => {
    await moto.reset();
    proxy.reset();
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-repo-'));
    cpSync(EXAMPLE, path.join(repo, 'clusters', 'eks'), { recursive: true });
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
  });
  afterEach(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  /** Edits a spec file in place (text replacement, so positions stay real). */
  function edit(name: string, from: string | RegExp, to: string): void {
    const text = readFileSync(file(name), 'utf8');
    const next = text.replace(from, to);
    expect(next, `edit ${String(from)}`).to.not.equal(text);
    writeFileSync(file(name), next);
  }

  const run = (step: Executor, opts: { dryRun?: boolean; delete?: boolean; params?: Record<string, string> } = {}): Promise<Run> =>
    runStepVia({ proxy, repo, clusterPath: 'clusters/eks', region: REGION, revision: REVISION, secrets }, step, opts);

  const mutating = (r: Run) => r.calls.filter((c) => c.mutating).map((c) => c.action);
  function expectOk(r: Run): void {
    expect(r.exitCode, `${JSON.stringify(r.summary.error)}\n${r.log.slice(-3000)}`).to.equal(0);
  }
  async function applyAll(): Promise<Run[]> {
    const runs: Run[] = [];
    for (const step of [provisionVpc, eksControlPlane, eksNodeGroups]) {
      const r = await run(step);
      expectOk(r);
      runs.push(r);
    }
    return runs;
  }

  it('creates the network, IAM roles, the control plane, its addons and both node groups (spot on SPOT), stores the kubeconfigs; a rerun makes 0 mutating calls', async () => {
    const [, cp, ng] = await applyAll();
    expect(cp!.outputs['eks-cluster-name']).to.equal(CLUSTER);
    expect(cp!.outputs['kubernetes-version']).to.equal('1.31');
    const network = (await readStepStatus<ProvisionVpcStatus>(secrets, CLUSTER, 'provision-vpc'))!;
    const status = (await readStepStatus<EksControlPlaneStatus>(secrets, CLUSTER, 'eks-control-plane'))!;

    const cluster = (await eks().send(new DescribeClusterCommand({ name: CLUSTER }))).cluster!;
    expect(cluster.version).to.equal('1.31');
    expect(cluster.tags).to.include({ [OWNED]: 'owned', 'capflow.io/revision': REVISION, 'capflow.io/spec': 'clusters/eks' });
    expect(cluster.roleArn).to.equal(status.roleArn);
    expect([...(cluster.resourcesVpcConfig?.subnetIds ?? [])].sort()).to.deep.equal(network.subnets.map((s) => s.id).sort());
    expect(cluster.resourcesVpcConfig?.securityGroupIds).to.deep.equal([network.securityGroupIds['node-eks-additional']]);
    expect(cluster.resourcesVpcConfig).to.include({ endpointPublicAccess: true, endpointPrivateAccess: true });

    // Least privilege: the control plane role trusts EKS and has AmazonEKSClusterPolicy alone.
    const cpRole = (await iam().send(new GetRoleCommand({ RoleName: `${CLUSTER}-iam-service-role` }))).Role!;
    expect(decodeURIComponent(cpRole.AssumeRolePolicyDocument!)).to.include('eks.amazonaws.com');
    const attached = async (role: string) => ((await iam().send(new ListAttachedRolePoliciesCommand({ RoleName: role }))).AttachedPolicies ?? []).map((p) => p.PolicyName).sort();
    expect(await attached(`${CLUSTER}-iam-service-role`)).to.deep.equal(['AmazonEKSClusterPolicy']);
    expect(await attached(`${CLUSTER}-nodegroup-iam-service-role`)).to.deep.equal(['AmazonEC2ContainerRegistryReadOnly', 'AmazonEKSWorkerNodePolicy', 'AmazonEKS_CNI_Policy']);

    for (const [addon, version] of [['vpc-cni', 'v1.19.0-eksbuild.1'], ['coredns', 'v1.11.3-eksbuild.2'], ['kube-proxy', 'v1.31.2-eksbuild.3']] as const) {
      const a = (await eks().send(new DescribeAddonCommand({ clusterName: CLUSTER, addonName: addon }))).addon!;
      expect(a.addonVersion, addon).to.equal(version);
      expect(a.tags, addon).to.include({ [OWNED]: 'owned' });
    }

    const privateSubnets = network.subnets.filter((s) => !s.public).map((s) => s.id).sort();
    const general = (await eks().send(new DescribeNodegroupCommand({ clusterName: CLUSTER, nodegroupName: 'general' }))).nodegroup!;
    expect(general).to.deep.include({ capacityType: 'ON_DEMAND', instanceTypes: ['m6i.large'], nodeRole: status.nodeRoleArn, version: '1.31' });
    expect(general.scalingConfig).to.deep.equal({ minSize: 3, maxSize: 6, desiredSize: 3 });
    expect(general.labels).to.deep.equal({ 'capflow.io/pool': 'general' });
    expect([...(general.subnets ?? [])].sort()).to.deep.equal(privateSubnets);
    const spot = (await eks().send(new DescribeNodegroupCommand({ clusterName: CLUSTER, nodegroupName: 'spot' }))).nodegroup!;
    expect(spot).to.deep.include({ capacityType: 'SPOT', instanceTypes: ['m6i.xlarge'] });
    expect(spot.scalingConfig).to.deep.equal({ minSize: 0, maxSize: 10, desiredSize: 2 });
    expect(spot.taints).to.deep.equal([{ key: 'capflow.io/spot', value: 'true', effect: 'NO_SCHEDULE' }]);
    expect((JSON.parse(ng!.outputs['node-groups']!) as Array<{ name: string }>).map((g) => g.name)).to.deep.equal(['general', 'spot']);

    // <cluster>-kubeconfig: the EKS endpoint, its CA (a real PEM from the stand-in), a presigned token.
    const kubeconfig = parseYaml((await secrets.get(`${CLUSTER}-kubeconfig`))!['value']!) as {
      clusters: Array<{ cluster: { server: string; 'certificate-authority-data': string } }>;
      users: Array<{ user: { token: string } }>;
    };
    expect(kubeconfig.clusters[0]!.cluster.server).to.equal(cluster.endpoint);
    new X509Certificate(Buffer.from(kubeconfig.clusters[0]!.cluster['certificate-authority-data'], 'base64'));
    const token = kubeconfig.users[0]!.user.token;
    expect(token).to.match(/^k8s-aws-v1\./);
    const url = new URL(Buffer.from(token.slice('k8s-aws-v1.'.length), 'base64url').toString());
    expect(url.host).to.equal(`sts.${REGION}.amazonaws.com`);
    expect(url.searchParams.get('Action')).to.equal('GetCallerIdentity');
    expect(url.searchParams.get('X-Amz-Expires')).to.equal('60');
    expect(url.searchParams.get('X-Amz-SignedHeaders')!.split(';')).to.include('x-k8s-aws-id');
    const user = parseYaml((await secrets.get(`${CLUSTER}-user-kubeconfig`))!['value']!) as { users: Array<{ user: { exec: { command: string; args: string[] } } }> };
    expect(user.users[0]!.user.exec.command).to.equal('aws');
    expect(user.users[0]!.user.exec.args).to.include.members(['get-token', '--cluster-name', CLUSTER, '--region', REGION]);

    // No-op: every step reads and changes nothing.
    for (const step of [provisionVpc, eksControlPlane, eksNodeGroups]) {
      const r = await run(step);
      expectOk(r);
      expect(mutating(r), step.id).to.deep.equal([]);
      expect(r.outputs['changes'], step.id).to.equal('0');
    }
  });

  it('cluster-plan: the dry runs of an empty account and of a made cluster make no mutating call and count what would change', async () => {
    const cp = await run(eksControlPlane, { dryRun: true });
    expectOk(cp);
    expect(mutating(cp)).to.deep.equal([]);
    expect(Number(cp.outputs['changes'])).to.be.greaterThan(0);
    await applyAll();
    for (const step of [eksControlPlane, eksNodeGroups]) {
      const r = await run(step, { dryRun: true });
      expectOk(r);
      expect(mutating(r), step.id).to.deep.equal([]);
      expect(r.outputs['changes'], step.id).to.equal('0');
    }
    edit('node-groups.yaml', 'maxSize: 6', 'maxSize: 8');
    const plan = await run(eksNodeGroups, { dryRun: true });
    expect(plan.outputs['changes']).to.equal('1');
    expect(mutating(plan)).to.deep.equal([]);
  });

  it('an upgrade moves the control plane, then its addons, then the node groups, one minor each (UpdateClusterVersion, UpdateAddon, UpdateNodegroupVersion and DescribeUpdate from the stand-in)', async () => {
    await applyAll();
    edit('control-plane.yaml', 'version: v1.31', 'version: v1.32');
    edit('control-plane.yaml', 'v1.19.0-eksbuild.1', 'v1.19.2-eksbuild.1');
    edit('control-plane.yaml', 'v1.11.3-eksbuild.2', 'v1.11.4-eksbuild.2');
    edit('control-plane.yaml', 'v1.31.2-eksbuild.3', 'v1.32.0-eksbuild.2');
    const cp = await run(eksControlPlane);
    expectOk(cp);
    const ng = await run(eksNodeGroups);
    expectOk(ng);
    const order = [...mutating(cp), ...mutating(ng)];
    expect(order).to.deep.equal(['UpdateClusterVersion', 'UpdateAddon', 'UpdateAddon', 'UpdateAddon', 'UpdateNodegroupVersion', 'UpdateNodegroupVersion']);
    expect((await eks().send(new DescribeClusterCommand({ name: CLUSTER }))).cluster!.version).to.equal('1.32');
    for (const name of ['general', 'spot']) {
      expect((await eks().send(new DescribeNodegroupCommand({ clusterName: CLUSTER, nodegroupName: name }))).nodegroup!.version, name).to.equal('1.32');
    }
    expect(cp.log).to.match(/VersionUpdate.*(InProgress|Successful)/);

    // Two minors at once: refused at the spec's field, before any change.
    edit('control-plane.yaml', 'version: v1.32', 'version: v1.34');
    const skip = await run(eksControlPlane);
    expect(skip.exitCode).to.equal(2);
    expect(mutating(skip)).to.deep.equal([]);
    expect(JSON.stringify(skip.summary.error)).to.match(/control-plane\.yaml:\d+:\d+/).and.match(/one minor version at a time/);
  });

  it('delete: node groups before the control plane, then the network; the control plane will not go while node groups remain (exit 75); nothing owned is left', async () => {
    await applyAll();
    const early = await run(eksControlPlane, { delete: true });
    expect(early.exitCode).to.equal(75);
    expect(JSON.stringify(early.summary.error)).to.include('EKS_NODEGROUPS_REMAIN');
    expect(mutating(early)).to.deep.equal([]);

    const runs = [await run(eksNodeGroups, { delete: true }), await run(eksControlPlane, { delete: true }), await run(provisionVpc, { delete: true })];
    for (const r of runs) expectOk(r);
    const order = runs.flatMap(mutating);
    expect(order.lastIndexOf('DeleteNodegroup')).to.be.lessThan(order.indexOf('DeleteCluster'));
    expect(order.indexOf('DeleteCluster')).to.be.lessThan(order.indexOf('DeleteRole'));
    expect(order.indexOf('DeleteRole')).to.be.lessThan(order.indexOf('DeleteVpc'));
    const gone = await eks().send(new DescribeClusterCommand({ name: CLUSTER })).then(() => undefined, (e: Error) => e.name);
    expect(gone).to.equal('ResourceNotFoundException');
    const world = await snapshotWorld(moto.endpoint, REGION);
    expect(world.resources.filter((r) => r.tags[OWNED] === 'owned')).to.deep.equal([]);
    await iam()
      .send(new GetRoleCommand({ RoleName: `${CLUSTER}-iam-service-role` }))
      .then(
        () => expect.fail('the control plane role should be gone'),
        (e: Error) => expect(e.name).to.equal('NoSuchEntityException'),
      );
    expect(await secrets.get(`${CLUSTER}-kubeconfig`)).to.equal(undefined);
    // Again: nothing left to do.
    for (const step of [eksNodeGroups, eksControlPlane]) {
      const r = await run(step, { delete: true });
      expectOk(r);
      expect(mutating(r), step.id).to.deep.equal([]);
    }
  });

  it('access entries, the OIDC provider for IRSA, logging and endpoint CIDRs (access entries from the stand-in); a rerun changes nothing; delete removes the provider', async () => {
    edit(
      'control-plane.yaml',
      '  endpointAccess:\n    public: true\n    private: true\n',
      [
        '  associateOIDCProvider: true',
        '  accessConfig:',
        '    authenticationMode: api_and_config_map',
        '  accessEntries:',
        '  - principalARN: arn:aws:iam::123456789012:role/platform-admins',
        '    kubernetesGroups: [platform]',
        '    accessPolicies:',
        '    - policyARN: arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy',
        '      accessScope:',
        '        type: cluster',
        '  logging:',
        '    apiServer: true',
        '    audit: true',
        '  endpointAccess:',
        '    public: true',
        '    private: true',
        '',
      ].join('\n'),
    );
    await applyAll();
    const cp = proxy.calls.filter((c) => c.mutating).map((c) => c.action);
    expect(cp).to.include.members(['CreateOpenIDConnectProvider', 'CreateAccessEntry', 'AssociateAccessPolicy']);
    const cluster = (await eks().send(new DescribeClusterCommand({ name: CLUSTER }))).cluster!;
    expect(cluster.logging?.clusterLogging?.find((l) => l.enabled)?.types?.sort()).to.deep.equal(['api', 'audit']);
    const providers = (await iam().send(new ListOpenIDConnectProvidersCommand({}))).OpenIDConnectProviderList ?? [];
    expect(providers.map((p) => p.Arn)).to.have.length(1);
    const status = (await readStepStatus<EksControlPlaneStatus>(secrets, CLUSTER, 'eks-control-plane'))!;
    expect(providers[0]!.Arn).to.equal(status.oidcProviderArn);
    expect(status.oidcProviderArn).to.include(status.oidcIssuer!.replace('https://', ''));

    const again = await run(eksControlPlane);
    expectOk(again);
    expect(mutating(again)).to.deep.equal([]);

    edit('control-plane.yaml', '    private: true\n', '    private: true\n    publicCIDRs: [203.0.113.0/24]\n');
    const cidrs = await run(eksControlPlane);
    expectOk(cidrs);
    expect(mutating(cidrs)).to.deep.equal(['UpdateClusterConfig']);
    expect((await eks().send(new DescribeClusterCommand({ name: CLUSTER }))).cluster!.resourcesVpcConfig?.publicAccessCidrs).to.deep.equal(['203.0.113.0/24']);

    expectOk(await run(eksNodeGroups, { delete: true }));
    expectOk(await run(eksControlPlane, { delete: true }));
    expect((await iam().send(new ListOpenIDConnectProvidersCommand({}))).OpenIDConnectProviderList ?? []).to.deep.equal([]);
  });

  it('the autoscaler owns the desired size of an annotated MachinePool: autoscaler tags on its node group, scaling limits updated without desiredSize', async () => {
    edit('node-groups.yaml', 'name: eks-prod-spot\nspec:\n  clusterName', 'name: eks-prod-spot\n  annotations:\n    cluster.x-k8s.io/replicas-managed-by: external-autoscaler\nspec:\n  clusterName');
    await applyAll();
    const spot = (await eks().send(new DescribeNodegroupCommand({ clusterName: CLUSTER, nodegroupName: 'spot' }))).nodegroup!;
    expect(spot.tags).to.include({ 'k8s.io/cluster-autoscaler/enabled': 'true', [`k8s.io/cluster-autoscaler/${CLUSTER}`]: 'owned' });
    const general = (await eks().send(new DescribeNodegroupCommand({ clusterName: CLUSTER, nodegroupName: 'general' }))).nodegroup!;
    expect(general.tags).to.not.have.property('k8s.io/cluster-autoscaler/enabled');

    edit('node-groups.yaml', 'replicas: 2', 'replicas: 7');
    edit('node-groups.yaml', 'maxSize: 10', 'maxSize: 12');
    const r = await run(eksNodeGroups);
    expectOk(r);
    const updates = r.calls.filter((c) => c.action === 'UpdateNodegroupConfig');
    expect(updates).to.have.length(1);
    const after = (await eks().send(new DescribeNodegroupCommand({ clusterName: CLUSTER, nodegroupName: 'spot' }))).nodegroup!;
    expect(after.scalingConfig).to.deep.equal({ minSize: 0, maxSize: 12, desiredSize: 2 });
  });

  it('a change EKS cannot make in place is refused (exit 3) with the way out; a dropped node group is removed', async () => {
    await applyAll();
    edit('node-groups.yaml', 'instanceType: m6i.xlarge', 'instanceType: m7i.xlarge');
    const r = await run(eksNodeGroups);
    expect(r.exitCode).to.equal(3);
    expect(JSON.stringify(r.summary.error)).to.include('EKS_NODEGROUP_IMMUTABLE').and.include('eksNodegroupName');
    expect(mutating(r)).to.deep.equal([]);

    // The way out: a new name makes the new group and removes the old one.
    edit('node-groups.yaml', 'eksNodegroupName: spot', 'eksNodegroupName: spot-m7i');
    const rolled = await run(eksNodeGroups);
    expectOk(rolled);
    expect(mutating(rolled)).to.deep.equal(['CreateNodegroup', 'DeleteNodegroup']);
    expect((await eks().send(new ListNodegroupsCommand({ clusterName: CLUSTER }))).nodegroups?.sort()).to.deep.equal(['general', 'spot-m7i']);
  });

  it('bad input is refused at file:line before any AWS call: access entries under config_map, replicas outside scaling, two pools on one node group', async () => {
    edit('control-plane.yaml', '  endpointAccess:', '  accessEntries:\n  - principalARN: arn:aws:iam::123456789012:role/ops\n  endpointAccess:');
    edit('node-groups.yaml', 'replicas: 3', 'replicas: 9');
    edit('node-groups.yaml', 'eksNodegroupName: spot', 'eksNodegroupName: general');
    for (const step of [provisionVpc, eksControlPlane, eksNodeGroups]) {
      const r = await run(step);
      expect(r.exitCode, step.id).to.equal(2);
      expect(r.calls, step.id).to.deep.equal([]);
      const text = JSON.stringify(r.summary.error);
      expect(text, step.id).to.match(/control-plane\.yaml:\d+:\d+/).and.include('spec.accessEntries');
      expect(text, step.id).to.match(/node-groups\.yaml:\d+:\d+/).and.include('replicas 9 is outside');
      expect(text, step.id).to.include('node group general is also made by');
    }
  });
});

describe('EKS through the local runner: cluster-apply and cluster-delete pick the EKS variant (real executors as child processes, moto behind the fault proxy with its EKS stand-in)', function () {
  this.timeout(300_000);
  let moto: Moto;
  let proxy: FaultProxy;
  let remote: GitRemote;
  let secretsDir: string;

  before(async () => {
    moto = await startMoto({ iamManagedPolicies: true });
    proxy = await startFaultProxy({ target: moto.endpoint });
    remote = await createGitRemote();
    const files: Record<string, string> = {};
    for (const f of readdirSync(EXAMPLE)) files[`clusters/eks/${f}`] = readFileSync(path.join(EXAMPLE, f), 'utf8');
    await remote.commitFiles(files, 'add cluster eks-prod');
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-runner-secrets-'));
  });
  after(async () => {
    await remote?.stop();
    await proxy?.stop();
    await moto?.stop();
    if (secretsDir) rmSync(secretsDir, { recursive: true, force: true });
  });

  it('cluster-apply runs network, control plane, node groups and the pools step, skips the kubeadm steps; a second apply changes nothing; cluster-delete leaves nothing owned', async () => {
    const head = await git(remote.workdir, 'rev-parse', 'HEAD');
    const env = { ...awsTestEnv(proxy.endpoint), AWS_REGION: REGION, CAPFLOW_SECRETS_DIR: secretsDir };
    const params = ['-p', `repo=${remote.workdir}`, '-p', `revision=${head}`, '-p', 'cluster-path=clusters/eks', '-p', `cluster-name=${CLUSTER}`];
    const runDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-runs-'));
    try {
      const apply = await spawnCapflow(['run', 'cluster-apply', '--run-dir', runDir, ...params], { env }).done;
      expect(apply.code, apply.stderr.slice(-4000) + apply.stdout).to.equal(0);
      for (const task of ['validate-spec', 'provision-vpc', 'eks-control-plane', 'eks-node-groups', 'launch-nodes-eks', 'install-addons-eks']) expect(apply.stdout).to.match(new RegExp(`${task}\\s.*Succeeded`));
      for (const task of ['kubeadm-init', 'join-workers', 'install-cni']) expect(apply.stdout).to.match(new RegExp(`${task}\\s.*Skipped`));
      expect((await eks().send(new ListNodegroupsCommand({ clusterName: CLUSTER }))).nodegroups?.sort()).to.deep.equal(['general', 'spot']);

      const from = proxy.calls.length;
      const again = await spawnCapflow(['run', 'cluster-apply', '--run-dir', runDir, ...params], { env }).done;
      expect(again.code, again.stderr.slice(-4000)).to.equal(0);
      expect(proxy.calls.slice(from).filter((c) => c.mutating).map((c) => c.action)).to.deep.equal([]);

      const del = await spawnCapflow(['run', 'cluster-delete', '--run-dir', runDir, ...params, '-p', 'provider=eks'], { env }).done;
      expect(del.code, del.stderr.slice(-4000) + del.stdout).to.equal(0);
      const world = await snapshotWorld(moto.endpoint, REGION);
      expect(world.resources.filter((r) => r.tags[OWNED] === 'owned')).to.deep.equal([]);
      const gone = await eks().send(new DescribeClusterCommand({ name: CLUSTER })).then(() => undefined, (e: Error) => e.name);
      expect(gone).to.equal('ResourceNotFoundException');
    } finally {
      rmSync(runDir, { recursive: true, force: true });
    }
  });

  const eks = () => new EKSClient({ ...clientConfig(proxy.endpoint), region: REGION });
});
