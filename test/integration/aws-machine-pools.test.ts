import { expect } from 'chai';
import { AutoScalingClient, CreateAutoScalingGroupCommand, DescribeAutoScalingGroupsCommand } from '@aws-sdk/client-auto-scaling';
import { CreateLaunchTemplateCommand, CreateSecurityGroupCommand, DescribeLaunchTemplatesCommand, DescribeLaunchTemplateVersionsCommand } from '@aws-sdk/client-ec2';
import { ExitCode, type CapflowError } from '../../src/core/errors.js';
import {
  deleteMachinePools,
  MACHINE_POOL_TAG,
  reconcileMachinePools,
  REFRESH_UNAVAILABLE,
  TEMPLATE_HASH_PREFIX,
  type MachinePoolsInput,
  type RefreshState,
} from '../../src/aws/machine-pools.js';
import { capaClusterTag, ownedTags } from '../../src/aws/tags.js';
import type { AWSMachinePoolSpec, MachinePoolModel } from '../../src/spec/model.js';
import { clientConfig } from '../support/moto.js';
import { callCounts, createNetwork, mutatingActions, scopeFor, startAwsEnv, thrown, type AwsEnv, type TestNetwork, type TestScope } from '../fixtures/aws/env.js';

const PINNED_AMI = 'ami-1e749f67';
const PLACEHOLDER_USER_DATA = 'placeholder user data: no bootstrap step yet';
const POOL = 'c1-mp-0';

const tagMap = (tags: Array<{ Key?: string; Value?: string }> | undefined) => Object.fromEntries((tags ?? []).map((t) => [t.Key!, t.Value!]));

/** A MachinePool with its AWSMachinePool: 1 to 4 workers, 2 wanted, one on-demand base and spot above it. */
function poolOf(options: { replicas?: number; spec?: Partial<AWSMachinePoolSpec>; name?: string } = {}): MachinePoolModel {
  const name = options.name ?? POOL;
  return {
    pool: {
      apiVersion: 'cluster.x-k8s.io/v1beta1',
      kind: 'MachinePool',
      metadata: { name, namespace: 'default' },
      spec: {
        clusterName: 'c1',
        replicas: options.replicas ?? 2,
        template: {
          spec: {
            clusterName: 'c1',
            version: 'v1.31.4',
            bootstrap: { dataSecretName: 'none' },
            infrastructureRef: { apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta2', kind: 'AWSMachinePool', name },
          },
        },
      },
    },
    infrastructure: {
      apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta2',
      kind: 'AWSMachinePool',
      metadata: { name, namespace: 'default' },
      spec: {
        minSize: 1,
        maxSize: 4,
        capacityRebalance: true,
        awsLaunchTemplate: { instanceType: 't3.small', ami: { id: PINNED_AMI }, iamInstanceProfile: 'nodes.cluster-api-provider-aws.sigs.k8s.io', sshKeyName: 'dev' },
        mixedInstancesPolicy: {
          instancesDistribution: { onDemandBaseCapacity: 1, onDemandPercentageAboveBaseCapacity: 0, spotAllocationStrategy: 'capacity-optimized' },
          overrides: [{ instanceType: 't3.small' }, { instanceType: 't3a.small' }],
        },
        refreshPreferences: { minHealthyPercentage: 90, instanceWarmup: 60 },
        ...(options.spec ?? {}),
      },
    },
  };
}

describe('aws/machine-pools: MachinePools as launch templates and Auto Scaling groups against moto', function () {
  let env: AwsEnv;
  let net: TestNetwork;
  let nodeSg: string;
  /** Straight to moto, for setup and looking (never recorded). */
  let direct: AutoScalingClient;

  const inputOf = (pools: MachinePoolModel[]): MachinePoolsInput => ({
    pools,
    kubernetesVersion: 'v1.31.4',
    subnetsByZone: { 'us-east-1a': { public: net.public[0]!, private: net.private[0]! }, 'us-east-1b': { public: net.public[1]!, private: net.private[1]! } },
    nodeSecurityGroupId: nodeSg,
    userData: async () => PLACEHOLDER_USER_DATA,
  });
  const asgOf = (scope: TestScope) => scope.aws.get(AutoScalingClient);
  const apply = async (pools: MachinePoolModel[], options: { dryRun?: boolean; revision?: string } = {}) => {
    const scope = scopeFor(env, { dryRun: options.dryRun ?? false });
    if (options.revision) scope.revision = options.revision;
    const results = await reconcileMachinePools(scope, asgOf(scope), inputOf(pools));
    return { scope, results };
  };
  const groups = async (names?: string[]) =>
    (await direct.send(new DescribeAutoScalingGroupsCommand(names ? { AutoScalingGroupNames: names } : {}))).AutoScalingGroups ?? [];

  before(async () => {
    env = await startAwsEnv();
    direct = new AutoScalingClient(clientConfig(env.moto.endpoint));
  });
  after(async () => {
    direct?.destroy();
    await env?.stop();
  });
  beforeEach(async () => {
    await env.moto.reset();
    net = await createNetwork(env.ec2);
    nodeSg = (await env.ec2.send(new CreateSecurityGroupCommand({ VpcId: net.vpcId, GroupName: 'c1-node', Description: 'nodes' }))).GroupId!;
    env.proxy.reset();
  });

  it('a new pool, should create a tagged launch template (IMDSv2, node group, user data) and a mixed-instances group with spot, overrides and capacity rebalance', async () => {
    const { scope, results } = await apply([poolOf()]);

    expect(mutatingActions(env.proxy)).to.deep.equal(['CreateLaunchTemplate', 'CreateAutoScalingGroup']);
    const lt = env.proxy.calls.find((c) => c.action === 'CreateLaunchTemplate')!.params!;
    expect(lt).to.include({
      LaunchTemplateName: POOL,
      'LaunchTemplateData.ImageId': PINNED_AMI,
      'LaunchTemplateData.InstanceType': 't3.small',
      'LaunchTemplateData.KeyName': 'dev',
      'LaunchTemplateData.IamInstanceProfile.Name': 'nodes.cluster-api-provider-aws.sigs.k8s.io',
      'LaunchTemplateData.MetadataOptions.HttpTokens': 'required',
      'LaunchTemplateData.SecurityGroupId.1': nodeSg,
      'LaunchTemplateData.UserData': Buffer.from(PLACEHOLDER_USER_DATA).toString('base64'),
      'LaunchTemplateData.TagSpecification.1.ResourceType': 'instance',
      'LaunchTemplateData.TagSpecification.2.ResourceType': 'volume',
      'TagSpecification.1.ResourceType': 'launch-template',
      VersionDescription: `${TEMPLATE_HASH_PREFIX}${results[0]!.templateHash}`,
    });
    const create = env.proxy.calls.find((c) => c.action === 'CreateAutoScalingGroup')!.params!;
    expect(create).to.include({
      AutoScalingGroupName: POOL,
      MinSize: '1',
      MaxSize: '4',
      DesiredCapacity: '2',
      VPCZoneIdentifier: net.private.join(','),
      CapacityRebalance: 'true',
      'MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateName': POOL,
      'MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.Version': '$Latest',
      'MixedInstancesPolicy.LaunchTemplate.Overrides.member.1.InstanceType': 't3.small',
      'MixedInstancesPolicy.LaunchTemplate.Overrides.member.2.InstanceType': 't3a.small',
      'MixedInstancesPolicy.InstancesDistribution.OnDemandBaseCapacity': '1',
      'MixedInstancesPolicy.InstancesDistribution.OnDemandPercentageAboveBaseCapacity': '0',
      'MixedInstancesPolicy.InstancesDistribution.SpotAllocationStrategy': 'capacity-optimized',
    });
    const propagated = Object.entries(create).filter(([k, v]) => /^Tags\.member\.\d+\.PropagateAtLaunch$/.test(k) && v === 'true');
    const tagCount = Object.keys(create).filter((k) => /^Tags\.member\.\d+\.Key$/.test(k)).length;
    expect(propagated).to.have.length(tagCount);

    const expectedTags = ownedTags(scope, 'node', POOL, { [MACHINE_POOL_TAG]: POOL });
    const [group] = await groups([POOL]);
    expect(tagMap(group!.Tags)).to.deep.equal(expectedTags);
    expect(group!.CapacityRebalance).to.equal(true);
    const [template] = (await env.ec2.send(new DescribeLaunchTemplatesCommand({ LaunchTemplateNames: [POOL] }))).LaunchTemplates!;
    expect(tagMap(template!.Tags)).to.deep.equal(expectedTags);
    expect(results).to.deep.equal([
      {
        name: POOL,
        launchTemplateId: template!.LaunchTemplateId,
        launchTemplateVersion: 1,
        templateHash: results[0]!.templateHash,
        autoScalingGroupName: POOL,
        autoScalingGroupArn: group!.AutoScalingGroupARN,
        subnetIds: net.private,
        instanceRefresh: 'not-needed',
      },
    ]);
    expect(scope.plan.entries().map((e) => [e.resource, e.action])).to.deep.equal([
      ['launch-template', 'create'],
      ['autoscaling-group', 'create'],
    ]);
  });

  it('a rerun, should make no mutating call and three reads', async () => {
    await apply([poolOf()]);
    env.proxy.reset();
    const { scope } = await apply([poolOf()]);
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    expect(callCounts(env.proxy.calls)).to.deep.equal({ DescribeLaunchTemplates: 1, DescribeAutoScalingGroups: 1, DescribeLaunchTemplateVersions: 1 });
    expect(scope.plan.counts()).to.include({ 'no-change': 2, create: 0, update: 0 });
  });

  it('a rerun from a new commit alone, should keep the launch template version', async () => {
    await apply([poolOf()]);
    env.proxy.reset();
    await apply([poolOf()], { revision: 'fedcba9876543210fedcba9876543210fedcba98' });
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
  });

  it('changed min, max and desired sizes, should send only UpdateAutoScalingGroup with those fields and the mixed instances policy as it is', async () => {
    await apply([poolOf()]);
    env.proxy.reset();
    const { scope, results } = await apply([poolOf({ replicas: 3, spec: { minSize: 2, maxSize: 6 } })]);
    expect(mutatingActions(env.proxy)).to.deep.equal(['UpdateAutoScalingGroup']);
    const update = env.proxy.mutatingCalls()[0]!.params!;
    expect(update).to.include({ AutoScalingGroupName: POOL, MinSize: '2', MaxSize: '6', DesiredCapacity: '3' });
    expect(Object.keys(update).filter((k) => /^(VPCZoneIdentifier|CapacityRebalance|LaunchTemplate)/.test(k))).to.deep.equal([]);
    // As CAPA does, every update carries the whole policy, unchanged (moto drops a policy an update leaves out).
    expect(update).to.include({ 'MixedInstancesPolicy.InstancesDistribution.OnDemandBaseCapacity': '1' });
    const [group] = await groups([POOL]);
    expect([group!.MinSize, group!.MaxSize, group!.DesiredCapacity]).to.deep.equal([2, 6, 3]);
    expect(results[0]!.instanceRefresh).to.equal('not-needed');
    expect(scope.plan.entries().filter((e) => e.resource === 'autoscaling-group').map((e) => [e.action, e.detail, e.field])).to.deep.equal([
      ['update', 'min 1 -> 2', `AWSMachinePool/${POOL} spec.minSize`],
      ['update', 'max 4 -> 6', `AWSMachinePool/${POOL} spec.maxSize`],
      ['update', 'desired 2 -> 3', `MachinePool/${POOL} spec.replicas`],
    ]);
  });

  it('a changed spot distribution, should send the whole mixed instances policy in one UpdateAutoScalingGroup', async () => {
    await apply([poolOf()]);
    env.proxy.reset();
    const changed = poolOf();
    (changed.infrastructure.spec as AWSMachinePoolSpec).mixedInstancesPolicy!.instancesDistribution!.onDemandBaseCapacity = 2;
    await apply([changed]);
    expect(mutatingActions(env.proxy)).to.deep.equal(['UpdateAutoScalingGroup']);
    expect(env.proxy.mutatingCalls()[0]!.params!).to.include({
      'MixedInstancesPolicy.InstancesDistribution.OnDemandBaseCapacity': '2',
      'MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateName': POOL,
      'MixedInstancesPolicy.LaunchTemplate.Overrides.member.2.InstanceType': 't3a.small',
    });
    env.proxy.reset();
    await apply([changed]);
    expect(mutatingActions(env.proxy), 'a rerun after the update').to.deep.equal([]);
  });

  it('a changed launch template, should create a new version and call StartInstanceRefresh, reporting that moto has no instance refresh', async () => {
    await apply([poolOf()]);
    env.proxy.reset();
    const changed = poolOf({ spec: { awsLaunchTemplate: { ...(poolOf().infrastructure.spec as AWSMachinePoolSpec).awsLaunchTemplate, instanceType: 't3.medium' } } });
    const { scope, results } = await apply([changed]);

    expect(mutatingActions(env.proxy)).to.deep.equal(['CreateLaunchTemplateVersion', 'StartInstanceRefresh']);
    const version = env.proxy.calls.find((c) => c.action === 'CreateLaunchTemplateVersion')!.params!;
    expect(version).to.include({ 'LaunchTemplateData.InstanceType': 't3.medium', VersionDescription: `${TEMPLATE_HASH_PREFIX}${results[0]!.templateHash}` });
    const refresh = env.proxy.calls.find((c) => c.action === 'StartInstanceRefresh')!;
    expect(refresh.params).to.include({
      AutoScalingGroupName: POOL,
      Strategy: 'Rolling',
      'Preferences.MinHealthyPercentage': '90',
      'Preferences.InstanceWarmup': '60',
    });
    expect(refresh.status, "moto's answer to an action it lacks").to.equal(500);
    expect(env.proxy.countBy('StartInstanceRefresh'), 'not retried as a transient 5xx').to.equal(1);

    expect(results[0]).to.include({ launchTemplateVersion: 2, instanceRefresh: 'unavailable' });
    expect(scope.plan.entries().map((e) => [e.resource, e.action, e.detail ?? ''])).to.deep.include.members([
      ['launch-template', 'update', `new version (content ${results[0]!.templateHash.slice(0, 12)})`],
      ['instance-refresh', 'skip', REFRESH_UNAVAILABLE],
    ]);
    expect(scope.log.lines.some((l) => l.level === 'warn' && l.message === REFRESH_UNAVAILABLE)).to.equal(true);

    const latest = (await env.ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateName: POOL, Versions: ['$Latest'] }))).LaunchTemplateVersions![0]!;
    expect(latest.VersionNumber).to.equal(2);
    expect(latest.VersionDescription).to.equal(`${TEMPLATE_HASH_PREFIX}${results[0]!.templateHash}`);
    const [group] = await groups([POOL]);
    expect(group!.MixedInstancesPolicy?.LaunchTemplate?.LaunchTemplateSpecification?.Version).to.equal('$Latest');

    env.proxy.reset();
    await apply([changed]);
    expect(mutatingActions(env.proxy), 'a rerun after the new version').to.deep.equal([]);
  });

  it('a run that dies between the new template version and the refresh, should start the owed refresh on the rerun', async () => {
    // The refresh marker lives in the status secret in the executor; an in-memory one stands in here.
    const owed = new Set<string>();
    const refreshState: RefreshState = { pending: async (p) => owed.has(p), set: async (p, on) => void (on ? owed.add(p) : owed.delete(p)) };
    const run = async (pools: MachinePoolModel[]) => {
      const scope = scopeFor(env, { dryRun: false });
      return reconcileMachinePools(scope, asgOf(scope), { ...inputOf(pools), refreshState });
    };
    await run([poolOf()]);
    const changed = poolOf({ spec: { awsLaunchTemplate: { ...(poolOf().infrastructure.spec as AWSMachinePoolSpec).awsLaunchTemplate, instanceType: 't3.medium' } } });
    // The interruption: every StartInstanceRefresh answered 503 until the retries run out, so the run fails after the new version.
    env.proxy.reset();
    env.proxy.setFaults({ serverErrorRate: 1, serverErrorStatus: 503, onlyActions: ['StartInstanceRefresh'] });
    const failed = await run([changed]).then(() => undefined, (e: unknown) => e);
    expect(failed, 'the interrupted run fails').to.not.equal(undefined);
    expect(mutatingActions(env.proxy)[0]).to.equal('CreateLaunchTemplateVersion');
    expect([...owed]).to.deep.equal([POOL]);
    // The rerun: the template matches, but the refresh is still owed.
    env.proxy.reset();
    const results = await run([changed]);
    expect(mutatingActions(env.proxy)).to.deep.equal(['StartInstanceRefresh']);
    expect(results[0]!.instanceRefresh).to.equal('unavailable');
    expect([...owed]).to.deep.equal([]);
    env.proxy.reset();
    await run([changed]);
    expect(mutatingActions(env.proxy), 'nothing owed any more').to.deep.equal([]);
  });

  it('a changed launch template with refreshPreferences.disable, should create the version and start no refresh', async () => {
    await apply([poolOf()]);
    env.proxy.reset();
    const { results } = await apply([poolOf({ spec: { refreshPreferences: { disable: true }, awsLaunchTemplate: { instanceType: 't3.medium', ami: { id: PINNED_AMI } } } })]);
    expect(mutatingActions(env.proxy)).to.deep.equal(['CreateLaunchTemplateVersion']);
    expect(results[0]!.instanceRefresh).to.equal('disabled');
  });

  it('a dry run on an empty world, should plan the template and the group and make no mutating call', async () => {
    const { scope, results } = await apply([poolOf()], { dryRun: true });
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    expect(scope.plan.entries().map((e) => [e.resource, e.action])).to.deep.equal([
      ['launch-template', 'create'],
      ['autoscaling-group', 'create'],
    ]);
    expect(results[0]!.launchTemplateId).to.equal(undefined);
    expect(await groups()).to.deep.equal([]);
  });

  it('a dry run of a changed template and sizes, should plan the new version, the update and the refresh and make no mutating call', async () => {
    await apply([poolOf()]);
    env.proxy.reset();
    const { scope, results } = await apply([poolOf({ replicas: 3, spec: { awsLaunchTemplate: { instanceType: 't3.medium', ami: { id: PINNED_AMI } } } })], { dryRun: true });
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    expect(scope.plan.entries().map((e) => [e.resource, e.action])).to.deep.equal([
      ['launch-template', 'update'],
      ['autoscaling-group', 'update'],
      ['instance-refresh', 'create'],
    ]);
    expect(results[0]!.instanceRefresh).to.equal('planned');
  });

  it('delete, should force-delete the owned group, then its launch template, and leave an unowned group alone', async () => {
    await apply([poolOf()]);
    await env.ec2.send(new CreateLaunchTemplateCommand({ LaunchTemplateName: 'someone-else', LaunchTemplateData: { ImageId: PINNED_AMI, InstanceType: 't3.micro' } }));
    await direct.send(
      new CreateAutoScalingGroupCommand({
        AutoScalingGroupName: 'someone-else',
        MinSize: 0,
        MaxSize: 1,
        DesiredCapacity: 0,
        VPCZoneIdentifier: net.private[0],
        LaunchTemplate: { LaunchTemplateName: 'someone-else' },
        Tags: [{ Key: MACHINE_POOL_TAG, Value: 'someone-else', PropagateAtLaunch: false }],
      }),
    );
    env.proxy.reset();
    const scope = scopeFor(env);
    await deleteMachinePools(scope, asgOf(scope));

    expect(mutatingActions(env.proxy)).to.deep.equal(['DeleteAutoScalingGroup', 'DeleteLaunchTemplate']);
    expect(env.proxy.calls.find((c) => c.action === 'DeleteAutoScalingGroup')!.params).to.include({ AutoScalingGroupName: POOL, ForceDelete: 'true' });
    expect((await groups()).map((g) => g.AutoScalingGroupName)).to.deep.equal(['someone-else']);
    const left = (await env.ec2.send(new DescribeLaunchTemplatesCommand({}))).LaunchTemplates!.map((t) => t.LaunchTemplateName);
    expect(left).to.deep.equal(['someone-else']);
    expect(scope.plan.entries().map((e) => [e.resource, e.action])).to.deep.equal([
      ['autoscaling-group', 'delete'],
      ['launch-template', 'delete'],
    ]);

    env.proxy.reset();
    const again = scopeFor(env);
    await deleteMachinePools(again, asgOf(again));
    expect(mutatingActions(env.proxy), 'a second delete').to.deep.equal([]);
  });

  it('a dry-run delete, should plan the deletions and make no mutating call', async () => {
    await apply([poolOf()]);
    env.proxy.reset();
    const scope = scopeFor(env, { dryRun: true });
    await deleteMachinePools(scope, asgOf(scope));
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    expect(scope.plan.counts().delete).to.equal(2);
    expect(await groups()).to.have.length(1);
  });

  it('an unowned launch template with the pool name, should stop with a conflict (exit 3) before any mutating call', async () => {
    await env.ec2.send(new CreateLaunchTemplateCommand({ LaunchTemplateName: POOL, LaunchTemplateData: { ImageId: PINNED_AMI, InstanceType: 't3.micro' } }));
    env.proxy.reset();
    const err = (await thrown(() => apply([poolOf()]))) as CapflowError;
    expect(err.exitCode).to.equal(ExitCode.conflict);
    expect(err.message).to.include('launch template');
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
  });

  it('an unowned group with the pool name, should stop with a conflict (exit 3) saying how to adopt it, before any mutating call', async () => {
    await env.ec2.send(new CreateLaunchTemplateCommand({ LaunchTemplateName: 'theirs', LaunchTemplateData: { ImageId: PINNED_AMI, InstanceType: 't3.micro' } }));
    await direct.send(
      new CreateAutoScalingGroupCommand({ AutoScalingGroupName: POOL, MinSize: 0, MaxSize: 1, DesiredCapacity: 0, VPCZoneIdentifier: net.private[0], LaunchTemplate: { LaunchTemplateName: 'theirs' } }),
    );
    env.proxy.reset();
    const err = (await thrown(() => apply([poolOf()]))) as CapflowError;
    expect(err.exitCode).to.equal(ExitCode.conflict);
    expect(err.code).to.equal('AWS_NOT_OWNED');
    expect(err.hint).to.include(`${capaClusterTag('c1')}=owned`);
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
  });
});
