/**
 * The AWS half of the test bed: moto_server on loopback, and the fault proxy in front of it.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import pRetry from 'p-retry';
import {
  CreateTagsCommand,
  CreateVpcCommand,
  DescribeImagesCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  EC2Client,
  RunInstancesCommand,
} from '@aws-sdk/client-ec2';
import {
  AutoScalingClient,
  CreateLaunchConfigurationCommand,
  DescribeAutoScalingGroupsCommand,
} from '@aws-sdk/client-auto-scaling';
import {
  CreateAddonCommand,
  CreateClusterCommand,
  CreateNodegroupCommand,
  DeleteClusterCommand,
  DeleteNodegroupCommand,
  DescribeClusterCommand,
  DescribeNodegroupCommand,
  EKSClient,
  ListClustersCommand,
  ListNodegroupsCommand,
  TagResourceCommand,
  UpdateClusterConfigCommand,
} from '@aws-sdk/client-eks';
import { DescribeLoadBalancersCommand, ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { awsTestEnv, clientConfig, startMoto, type Moto } from '../support/moto.js';
import { manualClock, startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';

const CHILD = fileURLToPath(new URL('../fixtures/support/create-vpcs.ts', import.meta.url));

/** Name and HTTP status of an SDK error (throws if the promise resolved). */
async function sdkError(p: Promise<unknown>): Promise<{ name: string; status: number | undefined; retryable: boolean }> {
  try {
    await p;
  } catch (err) {
    const e = err as { name: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown };
    return { name: e.name, status: e.$metadata?.httpStatusCode, retryable: e.$retryable !== undefined };
  }
  throw new Error('expected the call to fail');
}

describe('test bed: moto and the fault proxy', function () {
  this.timeout(60_000);
  let moto: Moto;
  let proxy: FaultProxy;

  before(async () => {
    moto = await startMoto();
    proxy = await startFaultProxy({ target: moto.endpoint });
  });
  after(async () => {
    await proxy?.stop();
    await moto?.stop();
  });
  beforeEach(async () => {
    await moto.reset();
    proxy.reset();
  });

  describe('moto', () => {
    it('answers an EC2 CreateVpc/DescribeVpcs round trip through the SDK v3, and reset() forgets it', async () => {
      const ec2 = new EC2Client(clientConfig(moto.endpoint));
      const created = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.42.0.0/16' }));
      const vpcId = created.Vpc?.VpcId;
      expect(vpcId).to.match(/^vpc-/);
      const described = await ec2.send(new DescribeVpcsCommand({ VpcIds: [vpcId!] }));
      expect(described.Vpcs?.[0]?.CidrBlock).to.equal('10.42.0.0/16');

      await moto.reset();
      const after = await ec2.send(new DescribeVpcsCommand({}));
      const ids = (after.Vpcs ?? []).map((v) => v.VpcId);
      expect(ids).to.not.include(vpcId);
      // moto recreates the region's default VPC on first use after a reset.
      expect((after.Vpcs ?? []).every((v) => v.IsDefault)).to.equal(true);
    });

    it('awsTestEnv() gives a child process everything it needs, without the host credentials', () => {
      const env = awsTestEnv(moto.endpoint);
      expect(env).to.include({
        AWS_ENDPOINT_URL: moto.endpoint,
        AWS_ACCESS_KEY_ID: 'testing',
        AWS_SECRET_ACCESS_KEY: 'testing',
        AWS_REGION: 'us-east-1',
        AWS_EC2_METADATA_DISABLED: 'true',
      });
      expect(moto.endpoint).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    });
  });

  describe('fault proxy: recording', () => {
    it('records every EC2 call with service, action, mutating, status and params', async () => {
      const ec2 = new EC2Client(clientConfig(proxy.endpoint));
      const { Vpc } = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.1.0.0/16' }));
      await ec2.send(new CreateTagsCommand({ Resources: [Vpc!.VpcId!], Tags: [{ Key: 'k', Value: 'v' }] }));
      await ec2.send(new DescribeVpcsCommand({ VpcIds: [Vpc!.VpcId!] }));
      // DryRun checks permissions only (moto honours it for CreateTags, answering DryRunOperation 412).
      const dry = await sdkError(
        ec2.send(new CreateTagsCommand({ Resources: [Vpc!.VpcId!], Tags: [{ Key: 'x', Value: 'y' }], DryRun: true })),
      );
      expect(dry.name).to.equal('DryRunOperation');

      expect(proxy.calls.map((c) => [c.service, c.action, c.mutating, c.status])).to.deep.equal([
        ['ec2', 'CreateVpc', true, 200],
        ['ec2', 'CreateTags', true, 200],
        ['ec2', 'DescribeVpcs', false, 200],
        ['ec2', 'CreateTags', false, 412],
      ]);
      expect(proxy.calls[0]!.params).to.include({ CidrBlock: '10.1.0.0/16' });
      expect(proxy.calls[1]!.params).to.include({ 'ResourceId.1': Vpc!.VpcId!, 'Tag.1.Key': 'k' });
      expect(proxy.countBy('CreateTags')).to.equal(2);
      expect(proxy.mutatingCalls().map((c) => c.action)).to.deep.equal(['CreateVpc', 'CreateTags']);
      for (const c of proxy.calls) {
        expect(c.at).to.be.a('number').and.be.closeTo(Date.now(), 30_000);
        expect(c.durationMs).to.be.at.least(0);
        expect(c.faulted).to.equal(undefined);
      }
    });

    it('decodes AutoScaling, ELBv2 and STS (query protocol) actions', async () => {
      const asg = new AutoScalingClient(clientConfig(proxy.endpoint));
      await asg.send(new DescribeAutoScalingGroupsCommand({}));
      await asg.send(
        new CreateLaunchConfigurationCommand({ LaunchConfigurationName: 'lc-1', ImageId: 'ami-12c6146b', InstanceType: 't3.micro' }),
      );
      await new ElasticLoadBalancingV2Client(clientConfig(proxy.endpoint)).send(new DescribeLoadBalancersCommand({}));
      const who = await new STSClient(clientConfig(proxy.endpoint)).send(new GetCallerIdentityCommand({}));
      expect(who.Account).to.match(/^\d{12}$/);

      expect(proxy.calls.map((c) => [c.service, c.action, c.mutating, c.status])).to.deep.equal([
        ['autoscaling', 'DescribeAutoScalingGroups', false, 200],
        ['autoscaling', 'CreateLaunchConfiguration', true, 200],
        ['elbv2', 'DescribeLoadBalancers', false, 200],
        ['sts', 'GetCallerIdentity', false, 200],
      ]);
    });

    it('decodes EKS (REST-JSON) actions from method and path', async () => {
      const ec2 = new EC2Client(clientConfig(moto.endpoint));
      const { Vpc } = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.9.0.0/16' }));
      const eks = new EKSClient(clientConfig(proxy.endpoint));
      const roleArn = 'arn:aws:iam::123456789012:role/eks';
      const { cluster } = await eks.send(
        new CreateClusterCommand({ name: 'c1', roleArn, resourcesVpcConfig: { subnetIds: [] } }),
      );
      await eks.send(new DescribeClusterCommand({ name: 'c1' }));
      await eks.send(new ListClustersCommand({}));
      await eks.send(
        new CreateNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1', nodeRole: roleArn, subnets: ['subnet-1'] }),
      );
      await eks.send(new DescribeNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1' }));
      await eks.send(new ListNodegroupsCommand({ clusterName: 'c1' }));
      await eks.send(new TagResourceCommand({ resourceArn: cluster!.arn!, tags: { owner: 'capflow' } }));
      // moto does not implement these two; the proxy still decodes them (moto's answer is an error).
      await eks.send(new UpdateClusterConfigCommand({ name: 'c1', logging: { clusterLogging: [] } })).catch(() => undefined);
      await eks.send(new CreateAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' })).catch(() => undefined);
      await eks.send(new DeleteNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1' }));
      await eks.send(new DeleteClusterCommand({ name: 'c1' }));
      expect(Vpc).to.not.equal(undefined);

      expect(proxy.calls.map((c) => [c.service, c.action, c.mutating])).to.deep.equal([
        ['eks', 'CreateCluster', true],
        ['eks', 'DescribeCluster', false],
        ['eks', 'ListClusters', false],
        ['eks', 'CreateNodegroup', true],
        ['eks', 'DescribeNodegroup', false],
        ['eks', 'ListNodegroups', false],
        ['eks', 'TagResource', true],
        ['eks', 'UpdateClusterConfig', true],
        ['eks', 'CreateAddon', true],
        ['eks', 'DeleteNodegroup', true],
        ['eks', 'DeleteCluster', true],
      ]);
      expect(proxy.calls[1]!.params).to.include({ name: 'c1' });
      expect(proxy.calls[4]!.params).to.include({ name: 'c1', nodegroupName: 'ng1' });
      expect(proxy.calls[6]!.params).to.include({ resourceArn: cluster!.arn! });
    });
  });

  describe('fault proxy: throttling and errors', () => {
    it('EC2 throttling is seen by the SDK as RequestLimitExceeded (503) and a p-retry loop gets through', async () => {
      const ec2 = new EC2Client(clientConfig(proxy.endpoint, { maxAttempts: 1 }));
      proxy.setFaults({ throttleFirst: 1 });
      const err = await sdkError(ec2.send(new DescribeVpcsCommand({})));
      expect(err).to.include({ name: 'RequestLimitExceeded', status: 503 });

      // A seeded rate: the same seed gives the same pattern, and retrying gets through.
      proxy.reset();
      proxy.setFaults({ throttleRate: 0.6, seed: 7, onlyActions: ['CreateVpc'] });
      const errors: string[] = [];
      const vpc = await pRetry(() => ec2.send(new CreateVpcCommand({ CidrBlock: '10.3.0.0/16' })), {
        retries: 20,
        minTimeout: 5,
        factor: 1,
        shouldRetry: ({ error }) => error.name === 'RequestLimitExceeded',
        onFailedAttempt: ({ error }) => void errors.push(error.name),
      });
      expect(vpc.Vpc?.VpcId).to.match(/^vpc-/);
      const pattern = proxy.calls.map((c) => c.faulted ?? 'ok');
      expect(pattern.at(-1)).to.equal('ok');
      expect(pattern.filter((p) => p === 'throttle').length).to.equal(errors.length).and.be.greaterThan(0);
      expect(errors.every((n) => n === 'RequestLimitExceeded')).to.equal(true);
      // Throttled calls never reached moto: exactly one VPC besides the default.
      const vpcs = await new EC2Client(clientConfig(moto.endpoint)).send(new DescribeVpcsCommand({}));
      expect((vpcs.Vpcs ?? []).filter((v) => !v.IsDefault)).to.have.length(1);

      // Same seed, same decisions.
      proxy.reset();
      proxy.setFaults({ throttleRate: 0.6, seed: 7, onlyActions: ['CreateVpc'] });
      for (let i = 0; i < pattern.length; i++) {
        await ec2.send(new CreateVpcCommand({ CidrBlock: '10.4.0.0/16' })).catch(() => undefined);
      }
      expect(proxy.calls.map((c) => c.faulted ?? 'ok')).to.deep.equal(pattern);
    });

    it("the SDK's own retries (default maxAttempts) absorb a throttle; maxAttempts: 1 shows it", async () => {
      proxy.setFaults({ throttleFirst: 1 });
      await new EC2Client(clientConfig(proxy.endpoint)).send(new DescribeVpcsCommand({}));
      expect(proxy.calls.map((c) => c.faulted ?? 'ok')).to.deep.equal(['throttle', 'ok']);
    });

    it('query services answer Throttling (400, Sender) and EKS ThrottlingException (429), as the SDK parses them', async () => {
      proxy.setFaults({ throttleRate: 1 });
      const asgErr = await sdkError(
        new AutoScalingClient(clientConfig(proxy.endpoint, { maxAttempts: 1 })).send(new DescribeAutoScalingGroupsCommand({})),
      );
      expect(asgErr).to.include({ name: 'Throttling', status: 400 });
      const stsErr = await sdkError(
        new STSClient(clientConfig(proxy.endpoint, { maxAttempts: 1 })).send(new GetCallerIdentityCommand({})),
      );
      expect(stsErr).to.include({ name: 'Throttling', status: 400 });
      const eksErr = await sdkError(
        new EKSClient(clientConfig(proxy.endpoint, { maxAttempts: 1 })).send(new ListClustersCommand({})),
      );
      expect(eksErr).to.include({ name: 'ThrottlingException', status: 429 });
      expect(proxy.calls.every((c) => c.faulted === 'throttle')).to.equal(true);
    });

    it('answers 5xx server errors in the service shape (500 InternalError, 503 Unavailable)', async () => {
      const ec2 = new EC2Client(clientConfig(proxy.endpoint, { maxAttempts: 1 }));
      proxy.setFaults({ serverErrorRate: 1 });
      expect(await sdkError(ec2.send(new DescribeVpcsCommand({})))).to.include({ name: 'InternalError', status: 500 });
      proxy.setFaults({ serverErrorRate: 1, serverErrorStatus: 503 });
      expect(await sdkError(ec2.send(new DescribeVpcsCommand({})))).to.include({ name: 'Unavailable', status: 503 });
      const eks = new EKSClient(clientConfig(proxy.endpoint, { maxAttempts: 1 }));
      proxy.setFaults({ serverErrorRate: 1 });
      expect(await sdkError(eks.send(new ListClustersCommand({})))).to.include({ name: 'ServerException', status: 500 });
      expect(proxy.calls.map((c) => [c.faulted, c.status])).to.deep.equal([
        ['server-error', 500],
        ['server-error', 503],
        ['server-error', 500],
      ]);
      // The SDK's default retry treats them as transient and gets through once the faults stop.
      proxy.setFaults({ serverErrorRate: 0.5, seed: 3 });
      await new EC2Client(clientConfig(proxy.endpoint, { maxAttempts: 10 })).send(new DescribeVpcsCommand({}));
    });

    it('adds latency to matching calls only', async () => {
      const ec2 = new EC2Client(clientConfig(proxy.endpoint));
      await ec2.send(new DescribeSubnetsCommand({})); // warm-up: moto builds the region's defaults lazily
      proxy.reset();
      proxy.setFaults({ latencyMs: 1000, onlyActions: ['DescribeVpcs'] });
      const t0 = Date.now();
      await ec2.send(new DescribeVpcsCommand({}));
      expect(Date.now() - t0).to.be.at.least(990);
      await ec2.send(new DescribeSubnetsCommand({}));
      expect(proxy.calls[0]!.durationMs).to.be.at.least(990);
      // Which call was delayed is the proxy's own accounting: a slow machine cannot blur it.
      expect(proxy.calls.map((c) => [c.action, c.delayedMs])).to.deep.equal([
        ['DescribeVpcs', 1000],
        ['DescribeSubnets', undefined],
      ]);
    });

    it("EC2 token buckets: 60 rapid CreateTags → 50 pass (the mutating burst), the rest RequestLimitExceeded; 1 s refills 5", async () => {
      const ec2 = new EC2Client(clientConfig(proxy.endpoint, { maxAttempts: 1 }));
      const { Vpc } = await new EC2Client(clientConfig(moto.endpoint)).send(new CreateVpcCommand({ CidrBlock: '10.5.0.0/16' }));
      // The buckets' clock stands still unless the test moves it: however slow the machine is, the
      // 60 calls arrive "at once", so exactly the burst passes.
      const clock = manualClock(1_000_000);
      proxy.setFaults({ tokenBuckets: true, clock: clock.now });
      const tag = (i: number) => ec2.send(new CreateTagsCommand({ Resources: [Vpc!.VpcId!], Tags: [{ Key: 'k', Value: `v${i}` }] }));
      const results = await Promise.allSettled(Array.from({ length: 60 }, (_, i) => tag(i)));
      const passed = results.filter((r) => r.status === 'fulfilled').length;
      const rejected = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).name] : []));
      expect(passed).to.equal(50);
      expect(rejected.length).to.equal(10);
      expect(new Set(rejected)).to.deep.equal(new Set(['RequestLimitExceeded']));
      expect(proxy.calls.filter((c) => c.faulted === 'token-bucket')).to.have.length(10);

      // One second later the bucket has refilled 5 tokens (5/s): 5 of 8 pass.
      clock.advance(1000);
      const later = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => tag(100 + i)));
      expect(later.filter((r) => r.status === 'fulfilled')).to.have.length(5);

      // Non-mutating calls have their own (bigger) bucket, still full.
      await ec2.send(new DescribeVpcsCommand({}));
    });

    it('EC2 token buckets: RunInstances has its own bucket (5 burst)', async () => {
      const ec2direct = new EC2Client(clientConfig(moto.endpoint));
      const images = await ec2direct.send(new DescribeImagesCommand({ Owners: ['amazon'] }));
      const imageId = images.Images?.[0]?.ImageId;
      expect(imageId, 'moto ships some amazon AMIs').to.be.a('string');
      const ec2 = new EC2Client(clientConfig(proxy.endpoint, { maxAttempts: 1 }));
      // A still clock: RunInstances is slow in moto, and a refill during the calls must not count.
      proxy.setFaults({ tokenBuckets: true, clock: manualClock().now });
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, () => ec2.send(new RunInstancesCommand({ ImageId: imageId!, MinCount: 1, MaxCount: 1 }))),
      );
      const passed = results.filter((r) => r.status === 'fulfilled').length;
      expect(passed).to.equal(5);
      // The mutating bucket was not touched by RunInstances.
      const { Vpc } = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.6.0.0/16' }));
      expect(Vpc?.VpcId).to.match(/^vpc-/);
    });
  });

  describe('fault proxy: crash of the caller at its Nth mutating call', () => {
    /** Run the fixture child through the proxy; resolve with its exit signal and stdout lines. */
    function runChild(arm: (pid: number) => void): Promise<{ code: number | null; signal: string | null; lines: string[] }> {
      const child = spawn(process.execPath, ['--import', 'tsx', CHILD, '6'], {
        env: { ...process.env, ...awsTestEnv(proxy.endpoint), AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      arm(child.pid!);
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      return new Promise((resolve) =>
        child.once('close', (code, signal) => resolve({ code, signal, lines: out.split('\n').filter(Boolean) })),
      );
    }
    async function nonDefaultVpcs(): Promise<number> {
      const vpcs = await new EC2Client(clientConfig(moto.endpoint)).send(new DescribeVpcsCommand({}));
      return (vpcs.Vpcs ?? []).filter((v) => !v.IsDefault).length;
    }

    it('in-process callers (onKill only): before-response drops the answer; after-response fires after graceMs', async () => {
      const ec2 = new EC2Client(clientConfig(proxy.endpoint, { maxAttempts: 1 }));
      let kills = 0;
      proxy.setFaults({ killAfterMutating: { n: 1, when: 'before-response', onKill: () => kills++ } });
      await ec2.send(new DescribeVpcsCommand({})); // not mutating: not counted
      const err = await sdkError(ec2.send(new CreateVpcCommand({ CidrBlock: '10.7.0.0/16' })));
      expect(err.status, 'no HTTP answer at all').to.equal(undefined);
      expect(kills).to.equal(1);
      expect(await nonDefaultVpcs(), 'the call took effect').to.equal(1);

      const killedAt: number[] = [];
      // A grace long enough that a slow machine still hears the answer before it runs out.
      proxy.setFaults({ killAfterMutating: { n: 1, when: 'after-response', graceMs: 2000, onKill: () => killedAt.push(Date.now()) } });
      const t0 = Date.now();
      const out = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.8.0.0/16' }));
      expect(out.Vpc?.VpcId).to.match(/^vpc-/);
      expect(killedAt).to.deep.equal([]);
      for (let i = 0; i < 100 && killedAt.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(killedAt).to.have.length(1);
      expect(killedAt[0]! - t0).to.be.at.least(1990);
      expect(proxy.calls.map((c) => c.faulted ?? 'ok')).to.deep.equal(['ok', 'killed-before-response', 'killed-after-response']);
    });

    it("before-response: the 3rd CreateVpc takes effect, the caller dies (SIGKILL) having heard only 2 answers", async () => {
      const result = await runChild((pid) => proxy.setFaults({ killAfterMutating: { n: 3, when: 'before-response', pid } }));
      expect(result.signal).to.equal('SIGKILL');
      expect(result.lines.map((l) => l.split(' ').slice(0, 2).join(' '))).to.deep.equal(['response 1', 'response 2']);
      expect(await nonDefaultVpcs()).to.equal(3);
      expect(proxy.countBy('CreateVpc')).to.equal(3);
      expect(proxy.calls.at(-1)).to.include({ faulted: 'killed-before-response', status: 0 });
    });

    it('after-response: the caller hears the 3rd answer, then dies (SIGKILL) before its 4th call reaches moto', async () => {
      let killed = 0;
      const result = await runChild((pid) =>
        proxy.setFaults({ killAfterMutating: { n: 3, when: 'after-response', pid, onKill: () => killed++ } }),
      );
      expect(result.signal).to.equal('SIGKILL');
      expect(killed).to.equal(1);
      expect(result.lines.map((l) => l.split(' ').slice(0, 2).join(' '))).to.deep.equal([
        'response 1',
        'response 2',
        'response 3',
      ]);
      expect(await nonDefaultVpcs()).to.equal(3);
      const faulted = proxy.calls.map((c) => c.faulted ?? 'ok');
      expect(faulted).to.deep.equal(['ok', 'ok', 'killed-after-response', 'dropped-after-kill']);
    });
  });
});
