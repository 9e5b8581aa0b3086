/**
 * Launch templates of EKS managed node groups (AWSManagedMachinePool.spec.awsLaunchTemplate) against
 * moto through the fault proxy. The network and the control plane are made once (before); each test
 * writes its own node-groups.yaml and ends with eks-node-groups --delete. moto's EC2 keeps the
 * templates; moto's EKS stores the node group's launchTemplate reference but keeps its own defaults
 * (disk size, remote access, instance types, AMI type) whatever the template says, so what EKS
 * shows for a group with a template, its checks of the template, and UpdateNodegroupVersion come
 * from the fault proxy's EKS stand-in (test/support/eks-stand-in.ts): test names say so. The crash
 * cases run eks-node-groups as a real child process (dist/, so `npm run build` first) killed by the
 * proxy after a given mutating call.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateSecurityGroupCommand, DescribeLaunchTemplateVersionsCommand, DescribeLaunchTemplatesCommand, EC2Client, type LaunchTemplate } from '@aws-sdk/client-ec2';
import { DescribeNodegroupCommand, EKSClient, ListNodegroupsCommand, type Nodegroup } from '@aws-sdk/client-eks';
import type { Executor } from '../../src/core/executor.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { readStepStatus } from '../../src/core/status.js';
import { eksControlPlane } from '../../executors/eks-control-plane.js';
import { eksNodeGroups } from '../../executors/eks-node-groups.js';
import { provisionVpc } from '../../executors/provision-vpc.js';
import type { EksControlPlaneStatus, ProvisionVpcStatus } from '../../executors/aws-step.js';
import { awsTestEnv, clientConfig, startMoto, type Moto } from '../support/moto.js';
import { startFaultProxy, type FaultProxy, type KillAfterMutating } from '../support/fault-proxy.js';
import { REPO_ROOT } from '../support/tools.js';
import { managedNodeGroupYaml } from '../fixtures/eks-node-group.js';
import { runStepVia, type StepRun } from '../support/step-run.js';

const CLUSTER = 'eks-prod';
const REGION = 'us-west-2';
const REVISION = '0123456789abcdef0123456789abcdef01234567';
const TEMPLATE = 'eks-prod-general';
const OWNED = `sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`;
/** An image moto knows (its default AMIs), for the custom AMI case. */
const CUSTOM_AMI = 'ami-1e749f67';
const bin = path.join(REPO_ROOT, 'dist', 'bin', 'capflow.js');
const EXAMPLE = path.join(REPO_ROOT, 'examples', 'clusters', 'eks-managed');

/** One managed node group with its own launch template. */
const NODE_GROUPS = managedNodeGroupYaml(`  capacityType: onDemand
  additionalTags:
    team: platform
  awsLaunchTemplate:
    instanceType: m6i.large
    sshKeyName: capflow-prod
    rootVolume:
      size: 50
      type: gp3
    nonRootVolumes:
    - deviceName: /dev/xvdb
      size: 100
      type: gp3
      encrypted: true
    instanceMetadataOptions:
      httpTokens: required
      httpPutResponseHopLimit: 2
`);

type Run = StepRun;

describe('EKS managed node groups with launch templates (awsLaunchTemplate) against moto (node group answers, template checks and UpdateNodegroupVersion from the fault proxy stand-in)', function () {
  this.timeout(120_000);
  let moto: Moto;
  let proxy: FaultProxy;
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;
  const nodeGroupsFile = () => path.join(repo, 'clusters', 'eks', 'node-groups.yaml');
  const config = () => ({ ...clientConfig(proxy.endpoint), region: REGION });

  const run = (step: Executor, opts: { dryRun?: boolean; delete?: boolean } = {}): Promise<Run> =>
    runStepVia({ proxy, repo, clusterPath: 'clusters/eks', region: REGION, revision: REVISION, secrets }, step, opts);

  /** eks-node-groups as the image runs it (a child process), killed by the proxy at the given mutating call. */
  function child(kill: Omit<KillAfterMutating, 'pid'>): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
    return new Promise((resolve, reject) => {
      const c = spawn(process.execPath, [bin, 'step', 'eks-node-groups', '--repo', repo, '--cluster-dir', 'clusters/eks', '-p', 'poll-interval=20ms'], {
        env: { ...process.env, ...awsTestEnv(proxy.endpoint), AWS_REGION: REGION, CAPFLOW_SECRETS_DIR: secretsDir, CAPFLOW_SECRET_STORE: 'local', CAPFLOW_LOG_FORMAT: 'json' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      proxy.setFaults({ killAfterMutating: { ...kill, pid: c.pid! } });
      let stderr = '';
      c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      c.on('error', reject);
      c.on('close', (code, signal) => {
        proxy.setFaults({});
        resolve({ code, signal, stderr });
      });
    });
  }

  const mutating = (r: Run) => r.calls.filter((c) => c.mutating).map((c) => c.action);
  function expectOk(r: Run): void {
    expect(r.exitCode, `${JSON.stringify(r.summary.error)}\n${r.log.slice(-3000)}`).to.equal(0);
  }
  function edit(from: string | RegExp, to: string): void {
    const text = readFileSync(nodeGroupsFile(), 'utf8');
    const next = text.replace(from, to);
    expect(next, `edit ${String(from)}`).to.not.equal(text);
    writeFileSync(nodeGroupsFile(), next);
  }
  async function templates(): Promise<LaunchTemplate[]> {
    const ec2 = new EC2Client(config());
    try {
      return (await ec2.send(new DescribeLaunchTemplatesCommand({}))).LaunchTemplates ?? [];
    } finally {
      ec2.destroy();
    }
  }
  async function templateVersion(id: string, version: string) {
    const ec2 = new EC2Client(config());
    try {
      return (await ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: id, Versions: [version] }))).LaunchTemplateVersions![0]!;
    } finally {
      ec2.destroy();
    }
  }
  async function nodegroup(name: string): Promise<Nodegroup> {
    const eks = new EKSClient(config());
    try {
      return (await eks.send(new DescribeNodegroupCommand({ clusterName: CLUSTER, nodegroupName: name }))).nodegroup!;
    } finally {
      eks.destroy();
    }
  }
  async function nodegroupNames(): Promise<string[]> {
    const eks = new EKSClient(config());
    try {
      return (await eks.send(new ListNodegroupsCommand({ clusterName: CLUSTER }))).nodegroups ?? [];
    } finally {
      eks.destroy();
    }
  }
  const tagsOf = (t: { Tags?: Array<{ Key?: string; Value?: string }> }): Record<string, string> => Object.fromEntries((t.Tags ?? []).map((x) => [x.Key ?? '', x.Value ?? '']));

  before(async () => {
    // eks-control-plane attaches AWS managed policies: moto must know them.
    moto = await startMoto({ iamManagedPolicies: true });
    proxy = await startFaultProxy({ target: moto.endpoint });
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-lt-repo-'));
    cpSync(EXAMPLE, path.join(repo, 'clusters', 'eks'), { recursive: true });
    writeFileSync(nodeGroupsFile(), NODE_GROUPS);
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-lt-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
    for (const step of [provisionVpc, eksControlPlane]) expectOk(await run(step));
  });
  after(async () => {
    await proxy?.stop();
    await moto?.stop();
    if (repo) rmSync(repo, { recursive: true, force: true });
    if (secretsDir) rmSync(secretsDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    proxy.setFaults({});
    writeFileSync(nodeGroupsFile(), NODE_GROUPS);
  });
  afterEach(async () => {
    // Every test leaves no node group and no template behind (the delete itself is tested below).
    expectOk(await run(eksNodeGroups, { delete: true }));
  });

  it('creates the template (instance type, volumes, key, metadata options, owned tags; no image, profile or user data) before the node group, which references it by id and version (node group answers from the stand-in); a rerun makes 0 mutating calls', async () => {
    const r = await run(eksNodeGroups);
    expectOk(r);
    expect(mutating(r)).to.deep.equal(['CreateLaunchTemplate', 'CreateNodegroup']);

    const [t, ...others] = await templates();
    expect(others).to.deep.equal([]);
    expect(t!.LaunchTemplateName).to.equal(TEMPLATE);
    expect(t!.LatestVersionNumber).to.equal(1);
    expect(tagsOf(t!)).to.include({ [OWNED]: 'owned', 'capflow.io/eks-node-group': 'general', 'capflow.io/revision': REVISION, team: 'platform' });
    const v = await templateVersion(t!.LaunchTemplateId!, '1');
    expect(v.VersionDescription).to.match(/^capflow:[0-9a-f]{64}$/);
    const data = v.LaunchTemplateData!;
    expect(data.InstanceType).to.equal('m6i.large');
    expect(data.KeyName).to.equal('capflow-prod');
    expect(data.ImageId, 'EKS picks its own image').to.equal(undefined);
    expect(data.UserData, 'EKS bootstraps its own image').to.equal(undefined);
    expect(data.IamInstanceProfile, 'EKS refuses an instance profile').to.equal(undefined);
    expect(data.SecurityGroupIds ?? [], 'EKS adds the cluster security group itself').to.deep.equal([]);
    expect(data.MetadataOptions).to.include({ HttpTokens: 'required', HttpPutResponseHopLimit: 2 });
    expect(data.BlockDeviceMappings?.map((b) => [b.DeviceName, b.Ebs?.VolumeSize, b.Ebs?.VolumeType])).to.deep.equal([
      ['/dev/xvda', 50, 'gp3'],
      ['/dev/xvdb', 100, 'gp3'],
    ]);
    const instanceTags: Record<string, Record<string, string>> = Object.fromEntries((data.TagSpecifications ?? []).map((s) => [s.ResourceType ?? '', tagsOf(s)]));
    // (moto also lists the template's own tags among the version's.)
    expect(Object.keys(instanceTags)).to.include.members(['instance', 'volume']);
    expect(instanceTags['volume']).to.include({ [OWNED]: 'owned', 'kubernetes.io/cluster/eks-prod': 'owned' });
    expect(instanceTags['instance']).to.include({ [OWNED]: 'owned', 'kubernetes.io/cluster/eks-prod': 'owned', Name: 'general', team: 'platform' });

    const ng = await nodegroup('general');
    expect(ng.launchTemplate).to.deep.include({ id: t!.LaunchTemplateId, name: TEMPLATE, version: '1' });
    expect(ng.instanceTypes ?? [], 'the template names the instance type').to.deep.equal([]);
    expect(ng.diskSize, 'the template holds the disks').to.equal(undefined);
    expect(ng.amiType).to.equal('AL2_x86_64');
    expect(ng.version).to.equal('1.31');
    const groups = JSON.parse(r.outputs['node-groups']!) as Array<{ launchTemplate?: unknown }>;
    expect(groups[0]?.launchTemplate).to.deep.equal({ id: t!.LaunchTemplateId, version: '1' });

    const again = await run(eksNodeGroups);
    expectOk(again);
    expect(mutating(again)).to.deep.equal([]);
    expect(again.outputs['changes']).to.equal('0');
  });

  it('a changed instance type and root volume make a new template version, then UpdateNodegroupVersion moves the group to it, waited (update from the stand-in); no new node group; a rerun makes 0 mutating calls', async () => {
    expectOk(await run(eksNodeGroups));
    const ngBefore = await nodegroup('general');
    edit('instanceType: m6i.large', 'instanceType: m6i.xlarge');
    edit('size: 50', 'size: 80');
    const r = await run(eksNodeGroups);
    expectOk(r);
    expect(mutating(r)).to.deep.equal(['CreateLaunchTemplateVersion', 'UpdateNodegroupVersion']);
    const update = r.calls.find((c) => c.action === 'UpdateNodegroupVersion')!;
    expect(update.status).to.equal(200);
    expect(r.calls.some((c) => c.action === 'DescribeUpdate'), 'the update is waited').to.equal(true);

    const [t, ...others] = await templates();
    expect(others).to.deep.equal([]);
    expect(t!.LatestVersionNumber).to.equal(2);
    const v2 = (await templateVersion(t!.LaunchTemplateId!, '2')).LaunchTemplateData!;
    expect(v2.InstanceType).to.equal('m6i.xlarge');
    expect(v2.BlockDeviceMappings?.[0]?.Ebs?.VolumeSize).to.equal(80);
    const ng = await nodegroup('general');
    expect(ng.launchTemplate).to.deep.include({ id: t!.LaunchTemplateId, version: '2' });
    expect(ng.nodegroupArn, 'the same node group').to.equal(ngBefore.nodegroupArn);
    expect(await nodegroupNames()).to.deep.equal(['general']);

    const again = await run(eksNodeGroups);
    expectOk(again);
    expect(mutating(again)).to.deep.equal([]);
  });

  it('a custom AMI (ami.id): the template carries it and the EKS bootstrap user data (bootstrap.sh with endpoint and CA), its root device from the image; the group is CUSTOM with no version or release sent (AMI type from the stand-in)', async () => {
    edit('    instanceType: m6i.large\n', `    instanceType: m6i.large\n    ami:\n      id: ${CUSTOM_AMI}\n`);
    const r = await run(eksNodeGroups);
    expectOk(r);
    const create = r.calls.find((c) => c.action === 'CreateNodegroup')!;
    expect(create.status).to.equal(200);
    const [t] = await templates();
    const data = (await templateVersion(t!.LaunchTemplateId!, '1')).LaunchTemplateData!;
    expect(data.ImageId).to.equal(CUSTOM_AMI);
    const userData = Buffer.from(data.UserData!, 'base64').toString('utf8');
    const cp = (await readStepStatus<EksControlPlaneStatus>(secrets, CLUSTER, 'eks-control-plane'))!;
    expect(userData).to.match(/^#cloud-config/);
    expect(userData).to.include(`/etc/eks/bootstrap.sh ${CLUSTER}`);
    expect(userData).to.include(`--apiserver-endpoint ${cp.endpoint}`);
    expect(userData).to.include(`--b64-cluster-ca ${cp.certificateAuthorityData}`);
    // moto's image of that id has /dev/sda1 as its root device: the root volume goes there.
    expect(data.BlockDeviceMappings?.[0]?.DeviceName).to.equal('/dev/sda1');
    const ng = await nodegroup('general');
    expect(ng.amiType).to.equal('CUSTOM');
    expect(ng.releaseVersion).to.equal(CUSTOM_AMI);
    expect(ng.launchTemplate?.version).to.equal('1');
    const again = await run(eksNodeGroups);
    expectOk(again);
    expect(mutating(again)).to.deep.equal([]);
  });

  it('additionalSecurityGroups: the template names the cluster security group (when EKS reports one: moto does not), the EKS additional node group and the given one', async () => {
    const network = (await readStepStatus<ProvisionVpcStatus>(secrets, CLUSTER, 'provision-vpc'))!;
    const cp = (await readStepStatus<EksControlPlaneStatus>(secrets, CLUSTER, 'eks-control-plane'))!;
    const ec2 = new EC2Client(config());
    const given = (await ec2.send(new CreateSecurityGroupCommand({ GroupName: `lt-extra-${Date.now()}`, Description: 'a group the pool names', VpcId: network.vpcId }))).GroupId!;
    ec2.destroy();
    expect(network.securityGroupIds['node-eks-additional']).to.match(/^sg-/);
    edit('    sshKeyName: capflow-prod\n', `    sshKeyName: capflow-prod\n    additionalSecurityGroups:\n    - id: ${given}\n`);
    expectOk(await run(eksNodeGroups));
    const [t] = await templates();
    const data = (await templateVersion(t!.LaunchTemplateId!, '1')).LaunchTemplateData!;
    expect(data.SecurityGroupIds).to.deep.equal([cp.clusterSecurityGroupId, network.securityGroupIds['node-eks-additional'], given].filter((x) => !!x));
  });

  it('switching a node group between no template and a template is refused as EKS_NODEGROUP_IMMUTABLE with the new-name hint, before any change; a new eksNodegroupName makes the new group and template and removes the old group', async () => {
    const plain = NODE_GROUPS.replace(/ {2}awsLaunchTemplate:[\s\S]*$/, '  instanceType: m6i.large\n');
    writeFileSync(nodeGroupsFile(), plain);
    expectOk(await run(eksNodeGroups));
    writeFileSync(nodeGroupsFile(), NODE_GROUPS);
    const r = await run(eksNodeGroups);
    expect(r.exitCode).to.equal(3);
    expect(r.summary.error?.code).to.equal('EKS_NODEGROUP_IMMUTABLE');
    expect(r.summary.error?.message).to.include('launch template none -> eks-prod-general');
    expect(r.summary.error?.hint).to.include('new eksNodegroupName');
    expect(mutating(r)).to.deep.equal([]);
    expect(await templates()).to.deep.equal([]);

    edit('eksNodegroupName: general', 'eksNodegroupName: general-lt');
    const renamed = await run(eksNodeGroups);
    expectOk(renamed);
    expect(mutating(renamed)).to.deep.equal(['CreateLaunchTemplate', 'CreateNodegroup', 'DeleteNodegroup']);
    expect(await nodegroupNames()).to.deep.equal(['general-lt']);
    expect((await templates()).map((t) => t.LaunchTemplateName)).to.deep.equal(['eks-prod-general-lt']);

    // And back: the template's group made without one is refused the same way.
    edit(/ {2}awsLaunchTemplate:[\s\S]*$/, '  instanceType: m6i.large\n');
    const back = await run(eksNodeGroups);
    expect(back.summary.error?.code).to.equal('EKS_NODEGROUP_IMMUTABLE');
    expect(back.summary.error?.message).to.include('launch template eks-prod-general-lt -> none');
    expect(mutating(back)).to.deep.equal([]);
  });

  it('delete: the node group goes, then its template; a pool dropped from the spec loses both the same way; the plan (dry run) records the template create, update, no-change and delete with 0 mutating calls', async () => {
    const planCreate = await run(eksNodeGroups, { dryRun: true });
    expectOk(planCreate);
    expect(mutating(planCreate)).to.deep.equal([]);
    expect(planCreate.log).to.match(/create\s+launch-template\s+eks-prod-general\s+\(new launch template eks-prod-general\)\s+m6i\.large/);
    expect(planCreate.log).to.match(/create\s+eks-node-group\s+general\s/);
    expectOk(await run(eksNodeGroups));

    const planSame = await run(eksNodeGroups, { dryRun: true });
    expect(planSame.log).to.match(/no-change\s+launch-template\s+eks-prod-general\s+lt-\w+\s+version 1/);
    expect(planSame.outputs['changes']).to.equal('0');
    edit('instanceType: m6i.large', 'instanceType: m6i.2xlarge');
    const planUpdate = await run(eksNodeGroups, { dryRun: true });
    expect(mutating(planUpdate)).to.deep.equal([]);
    expect(planUpdate.log).to.match(/update\s+launch-template\s+eks-prod-general\s+lt-\w+\s+new version/);
    expect(planUpdate.log).to.include('launch template eks-prod-general version 1 -> a new one');
    const planDelete = await run(eksNodeGroups, { dryRun: true, delete: true });
    expect(mutating(planDelete)).to.deep.equal([]);
    expect(planDelete.log).to.match(/delete\s+launch-template\s+eks-prod-general\s+lt-/);
    expect(planDelete.outputs['changes']).to.equal('2');

    const del = await run(eksNodeGroups, { delete: true });
    expectOk(del);
    expect(mutating(del)).to.deep.equal(['DeleteNodegroup', 'DeleteLaunchTemplate']);
    expect(await nodegroupNames()).to.deep.equal([]);
    expect(await templates()).to.deep.equal([]);

    // A pool dropped from the spec (the example's two pools, without templates, instead): its group, then its template.
    writeFileSync(nodeGroupsFile(), NODE_GROUPS);
    expectOk(await run(eksNodeGroups));
    writeFileSync(nodeGroupsFile(), readFileSync(path.join(EXAMPLE, 'node-groups.yaml'), 'utf8').replace('eksNodegroupName: general', 'eksNodegroupName: general-plain'));
    const dropped = await run(eksNodeGroups);
    expectOk(dropped);
    expect(mutating(dropped)).to.deep.equal(['CreateNodegroup', 'CreateNodegroup', 'DeleteNodegroup', 'DeleteLaunchTemplate']);
    expect((await nodegroupNames()).sort()).to.deep.equal(['general-plain', 'spot']);
    expect(await templates()).to.deep.equal([]);
  });

  it('killed after CreateLaunchTemplate (answer heard, or not), before CreateNodegroup: the rerun reuses the template (one template, version 1) and makes the group on it', async () => {
    for (const when of ['after-response', 'before-response'] as const) {
      const killed = await child({ n: 1, when });
      expect(killed.signal, `${when}: ${killed.stderr.slice(-1500)}`).to.equal('SIGKILL');
      expect(await nodegroupNames(), when).to.deep.equal([]);
      expect((await templates()).length, when).to.equal(1);
      const rerun = await run(eksNodeGroups);
      expectOk(rerun);
      expect(mutating(rerun), when).to.deep.equal(['CreateNodegroup']);
      const all = await templates();
      expect(all.map((t) => [t.LaunchTemplateName, t.LatestVersionNumber]), when).to.deep.equal([[TEMPLATE, 1]]);
      expect((await nodegroup('general')).launchTemplate, when).to.deep.include({ id: all[0]!.LaunchTemplateId, version: '1' });
      expectOk(await run(eksNodeGroups, { delete: true }));
    }
  });

  it('killed after CreateLaunchTemplateVersion: the rerun finds the latest version matching, makes no other, and only moves the group to it (update from the stand-in)', async () => {
    expectOk(await run(eksNodeGroups));
    edit('instanceType: m6i.large', 'instanceType: m6i.xlarge');
    const killed = await child({ n: 1, when: 'after-response' });
    expect(killed.signal, killed.stderr.slice(-1500)).to.equal('SIGKILL');
    expect((await nodegroup('general')).launchTemplate?.version).to.equal('1');
    const rerun = await run(eksNodeGroups);
    expectOk(rerun);
    expect(mutating(rerun)).to.deep.equal(['UpdateNodegroupVersion']);
    const [t] = await templates();
    expect(t!.LatestVersionNumber).to.equal(2);
    expect((await nodegroup('general')).launchTemplate?.version).to.equal('2');
  });
});
