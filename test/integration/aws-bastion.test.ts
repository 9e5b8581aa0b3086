import { expect } from 'chai';
import { CreateSecurityGroupCommand, DescribeInstancesCommand, DescribeVolumesCommand, RunInstancesCommand, type Instance } from '@aws-sdk/client-ec2';
import { ExitCode, type CapflowError } from '../../src/core/errors.js';
import { deleteBastion, pickUbuntuImage, reconcileBastion } from '../../src/aws/bastion.js';
import { ownedTags, tagSpecifications } from '../../src/aws/tags.js';
import { clientToken } from '../../src/aws/tokens.js';
import type { AWSClusterSpec } from '../../src/spec/model.js';
import { callCounts, createNetwork, mutatingActions, scopeFor, specOf, startAwsEnv, thrown, type AwsEnv, type TestNetwork } from '../fixtures/aws/env.js';

/** moto's Canonical image with the highest Ubuntu LTS release (16.04 "xenial"; it also ships 14.04). */
const MOTO_NEWEST_UBUNTU_LTS = 'ami-785db401';
const PINNED_AMI = 'ami-1e749f67';

const tagMap = (tags: Array<{ Key?: string; Value?: string }> | undefined) => Object.fromEntries((tags ?? []).map((t) => [t.Key!, t.Value!]));

describe('aws/bastion: the bastion host against moto (moto runs no real boot: instances are running at once)', function () {
  let env: AwsEnv;
  let net: TestNetwork;
  let sg: string;

  const input = (bastion: AWSClusterSpec['bastion']) => ({ spec: specOf(bastion ? { bastion } : {}), subnetId: net.public[0]!, securityGroupId: sg });
  async function instances(): Promise<Instance[]> {
    const out = await env.ec2.send(new DescribeInstancesCommand({}));
    return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
  }
  const live = async () => (await instances()).filter((i) => !['terminated', 'shutting-down'].includes(i.State!.Name!));

  before(async () => {
    env = await startAwsEnv();
  });
  after(async () => {
    await env?.stop();
  });
  beforeEach(async () => {
    await env.moto.reset();
    net = await createNetwork(env.ec2);
    sg = (await env.ec2.send(new CreateSecurityGroupCommand({ VpcId: net.vpcId, GroupName: 'c1-bastion', Description: 'b' }))).GroupId!;
    env.proxy.reset();
  });

  it('enabled without an AMI, should look up Ubuntu and launch one t3.micro with the client token, IMDSv2, a public IP and tags on instance and volume', async () => {
    const scope = scopeFor(env);
    const result = await reconcileBastion(scope, input({ enabled: true }));

    expect(result?.instanceId).to.match(/^i-/);
    expect(result?.publicIp).to.be.a('string');
    expect(result?.privateIp).to.match(/^10\.0\.0\./);
    expect(mutatingActions(env.proxy)).to.deep.equal(['RunInstances']);
    const run = env.proxy.mutatingCalls()[0]!.params!;
    expect(run).to.include({
      ImageId: MOTO_NEWEST_UBUNTU_LTS,
      InstanceType: 't3.micro',
      MinCount: '1',
      MaxCount: '1',
      ClientToken: clientToken('c1', 'bastion', { ami: MOTO_NEWEST_UBUNTU_LTS, type: 't3.micro', subnet: net.public[0] }),
      'MetadataOptions.HttpTokens': 'required',
      'NetworkInterface.1.SubnetId': net.public[0],
      'NetworkInterface.1.SecurityGroupId.1': sg,
      'NetworkInterface.1.AssociatePublicIpAddress': 'true',
      'TagSpecification.1.ResourceType': 'instance',
      'TagSpecification.2.ResourceType': 'volume',
    });
    const lookup = env.proxy.calls.find((c) => c.action === 'DescribeImages')!.params!;
    expect(lookup).to.include({ 'Owner.1': '099720109477' });

    const [i] = await live();
    expect(i!.InstanceId).to.equal(result!.instanceId);
    expect(i!.MetadataOptions?.HttpTokens).to.equal('required');
    expect(tagMap(i!.Tags)).to.deep.equal(ownedTags(scope, 'bastion', 'c1-bastion'));
    const volumes = (await env.ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [i!.InstanceId!] }] }))).Volumes!;
    expect(volumes).to.have.length(1);
    expect(tagMap(volumes[0]!.Tags)).to.deep.equal(ownedTags(scope, 'bastion', 'c1-bastion'));
    expect(scope.plan.entries().map((e) => [e.resource, e.action])).to.deep.equal([['instance', 'create']]);
  });

  it('a rerun, should find the bastion by tag and make no mutating call', async () => {
    const first = await reconcileBastion(scopeFor(env), input({ enabled: true, ami: PINNED_AMI }));
    env.proxy.reset();
    const again = await reconcileBastion(scopeFor(env), input({ enabled: true, ami: PINNED_AMI }));
    expect(again).to.deep.equal(first);
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    expect(callCounts(env.proxy.calls)).to.deep.equal({ DescribeInstances: 1 });
  });

  const cases: Array<{ name: string; before?: AWSClusterSpec['bastion']; after: AWSClusterSpec['bastion']; mutating: string[]; live: number; result: 'instance' | 'none' }> = [
    { name: 'disabled with no bastion, should do nothing', after: { enabled: false }, mutating: [], live: 0, result: 'none' },
    { name: 'no bastion section at all, should do nothing', after: undefined, mutating: [], live: 0, result: 'none' },
    { name: 'disabled with a bastion running, should terminate it', before: { enabled: true, ami: PINNED_AMI }, after: { enabled: false }, mutating: ['TerminateInstances'], live: 0, result: 'none' },
    {
      name: 'a changed instance type, should launch a new bastion and then terminate the old one',
      before: { enabled: true, ami: PINNED_AMI },
      after: { enabled: true, ami: PINNED_AMI, instanceType: 't3.small' },
      mutating: ['RunInstances', 'TerminateInstances'],
      live: 1,
      result: 'instance',
    },
    {
      name: 'a rerun without a pinned AMI, should keep the running bastion without looking up images again',
      before: { enabled: true },
      after: { enabled: true },
      mutating: [],
      live: 1,
      result: 'instance',
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      if (c.before) await reconcileBastion(scopeFor(env), input(c.before));
      env.proxy.reset();
      const result = await reconcileBastion(scopeFor(env), input(c.after));
      expect(mutatingActions(env.proxy)).to.deep.equal(c.mutating);
      expect(env.proxy.countBy('DescribeImages'), 'images are looked up only to launch without a pinned AMI').to.equal(0);
      expect(await live()).to.have.length(c.live);
      expect(result === undefined ? 'none' : 'instance').to.equal(c.result);
    });
  }

  it('a changed instance type, should launch with a new client token', async () => {
    await reconcileBastion(scopeFor(env), input({ enabled: true, ami: PINNED_AMI }));
    await reconcileBastion(scopeFor(env), input({ enabled: true, ami: PINNED_AMI, instanceType: 't3.small' }));
    const tokens = env.proxy.calls.filter((c) => c.action === 'RunInstances').map((c) => c.params!.ClientToken);
    expect(tokens).to.have.length(2);
    expect(tokens[0]).to.not.equal(tokens[1]);
    const [now] = await live();
    expect(now!.InstanceType).to.equal('t3.small');
  });

  it('a dry run, should plan the launch with a placeholder id and make no mutating call', async () => {
    const scope = scopeFor(env, { dryRun: true });
    const result = await reconcileBastion(scope, input({ enabled: true }));
    expect(result).to.deep.equal({ instanceId: '(new instance bastion)' });
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    expect(scope.plan.entries()).to.deep.equal([{ resource: 'instance', name: 'c1-bastion', action: 'create', id: '(new instance bastion)', detail: `t3.micro in ${net.public[0]}` }]);
  });

  it('a dry run with the bastion disabled, should plan its termination and make no mutating call', async () => {
    const { instanceId } = (await reconcileBastion(scopeFor(env), input({ enabled: true, ami: PINNED_AMI })))!;
    env.proxy.reset();
    const scope = scopeFor(env, { dryRun: true });
    await reconcileBastion(scope, input({ enabled: false }));
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    expect(scope.plan.entries()).to.deep.include({ resource: 'instance', name: 'c1-bastion', action: 'delete', id: instanceId, detail: 'bastion disabled' });
  });

  it('two bastions tagged for the cluster, should be a conflict (exit 3) naming both', async () => {
    const first = (await reconcileBastion(scopeFor(env), input({ enabled: true, ami: PINNED_AMI })))!;
    const scope = scopeFor(env);
    const second = await env.ec2.send(
      new RunInstancesCommand({
        ImageId: PINNED_AMI,
        MinCount: 1,
        MaxCount: 1,
        SubnetId: net.public[1],
        TagSpecifications: tagSpecifications('instance', ownedTags(scope, 'bastion', 'c1-bastion')),
      }),
    );
    env.proxy.reset();
    const err = (await thrown(() => reconcileBastion(scope, input({ enabled: true, ami: PINNED_AMI })))) as CapflowError;
    expect(err.exitCode).to.equal(ExitCode.conflict);
    expect(err.message).to.contain(first.instanceId).and.to.contain(second.Instances![0]!.InstanceId!);
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
  });

  it('delete, should terminate the bastion and wait until it is terminated; again, should do nothing', async () => {
    const { instanceId } = (await reconcileBastion(scopeFor(env), input({ enabled: true, ami: PINNED_AMI })))!;
    env.proxy.reset();
    const scope = scopeFor(env);
    await deleteBastion(scope);
    expect(mutatingActions(env.proxy)).to.deep.equal(['TerminateInstances']);
    expect(env.proxy.mutatingCalls()[0]!.params).to.include({ 'InstanceId.1': instanceId });
    expect((await instances()).map((i) => i.State!.Name)).to.deep.equal(['terminated']);
    expect(scope.plan.entries().map((e) => e.action)).to.deep.equal(['delete']);
    env.proxy.reset();
    await deleteBastion(scopeFor(env));
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
  });

  describe('picking the Ubuntu image when the spec pins none', () => {
    const image = (ImageId: string, Name: string, CreationDate = '2024-01-01T00:00:00.000Z') => ({ ImageId, Name, CreationDate });
    const cases: Array<[string, ReturnType<typeof image>[], string | undefined]> = [
      [
        'a newer LTS release, should win over a newer build of an older release',
        [image('ami-focal', 'ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20250101'), image('ami-noble', 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240423')],
        'ami-noble',
      ],
      [
        'two builds of one release, should pick the newer build serial',
        [image('ami-old', 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240423'), image('ami-new', 'ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115')],
        'ami-new',
      ],
      [
        'an interim release, should never be picked over an LTS',
        [image('ami-oracular', 'ubuntu/images/hvm-ssd-gp3/ubuntu-oracular-24.10-amd64-server-20250115'), image('ami-jammy', 'ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240101')],
        'ami-jammy',
      ],
      ['no Ubuntu server image, should pick nothing', [image('ami-x', 'Deep Learning AMI Ubuntu Linux - 2.4_Oct2017')], undefined],
    ];
    for (const [name, images, want] of cases) it(name, () => expect(pickUbuntuImage(images)?.ImageId).to.equal(want));
  });

  it('an AMI lookup that finds nothing, should be an input error asking for spec.bastion.ami', async () => {
    const scope = scopeFor(env, { clusterName: 'c1' });
    scope.ec2.middlewareStack.add(
      (next, context) => async (args) => {
        const out = await next(args);
        if (context.commandName === 'DescribeImagesCommand') (out.output as { Images?: unknown[] }).Images = [];
        return out;
      },
      { step: 'initialize', name: 'noImages', priority: 'low' },
    );
    const err = (await thrown(() => reconcileBastion(scope, input({ enabled: true })))) as CapflowError;
    expect(err.exitCode).to.equal(ExitCode.invalidInput);
    expect(err.hint).to.contain('spec.bastion.ami');
  });
});
