import { expect } from 'chai';
import { CreateSecurityGroupCommand } from '@aws-sdk/client-ec2';
import * as elb from '@aws-sdk/client-elastic-load-balancing';
import * as elbv2 from '@aws-sdk/client-elastic-load-balancing-v2';
import { ExitCode, type CapflowError } from '../../src/core/errors.js';
import {
  apiServerLoadBalancerName,
  apiServerLoadBalancerType,
  deleteLoadBalancers,
  reconcileLoadBalancer,
  type LoadBalancerResult,
} from '../../src/aws/load-balancers.js';
import type { SecurityGroupRole } from '../../src/aws/security-groups.js';
import { ownedTags } from '../../src/aws/tags.js';
import type { AWSClusterSpec } from '../../src/spec/model.js';
import { clientConfig } from '../support/moto.js';
import { callCounts, createNetwork, mutatingActions, scopeFor, specOf, startAwsEnv, thrown, type AwsEnv, type TestNetwork } from '../fixtures/aws/env.js';

const tagMap = (tags: Array<{ Key?: string; Value?: string }> | undefined) => Object.fromEntries((tags ?? []).map((t) => [t.Key!, t.Value!]));

describe('aws/load-balancers: the API server load balancer against moto', function () {
  let env: AwsEnv;
  let net: TestNetwork;
  let sgs: Record<SecurityGroupRole, string>;
  /** Straight to moto, for setup and inspection. */
  let v2: elbv2.ElasticLoadBalancingV2Client;
  let classic: elb.ElasticLoadBalancingClient;

  const input = (spec: AWSClusterSpec) => ({ spec, vpcId: net.vpcId, subnets: { public: net.public, private: net.private }, securityGroupIds: sgs });

  before(async () => {
    env = await startAwsEnv();
    v2 = new elbv2.ElasticLoadBalancingV2Client(clientConfig(env.moto.endpoint));
    classic = new elb.ElasticLoadBalancingClient(clientConfig(env.moto.endpoint));
  });
  after(async () => {
    v2?.destroy();
    classic?.destroy();
    await env?.stop();
  });
  beforeEach(async () => {
    await env.moto.reset();
    net = await createNetwork(env.ec2);
    const sg = async (name: string) => (await env.ec2.send(new CreateSecurityGroupCommand({ VpcId: net.vpcId, GroupName: name, Description: name }))).GroupId!;
    sgs = { controlplane: await sg('cp'), node: await sg('node'), 'apiserver-lb': await sg('lb'), bastion: await sg('bastion') };
    env.proxy.reset();
  });

  describe('which load balancer the spec asks for', () => {
    const cases: Array<[string, AWSClusterSpec['controlPlaneLoadBalancer'], string]> = [
      ['no controlPlaneLoadBalancer at all, should mean an NLB (capflow differs from the CRD default on purpose)', undefined, 'nlb'],
      ['loadBalancerType nlb, should mean an NLB', { loadBalancerType: 'nlb' }, 'nlb'],
      ['loadBalancerType classic, should mean a classic ELB', { loadBalancerType: 'classic' }, 'classic'],
      ['loadBalancerType elb, should mean a classic ELB too', { loadBalancerType: 'elb' }, 'classic'],
      ['loadBalancerType disabled, should say disabled', { loadBalancerType: 'disabled' }, 'disabled'],
    ];
    for (const [name, lb, want] of cases) {
      it(name, () => expect(apiServerLoadBalancerType(specOf(lb ? { controlPlaneLoadBalancer: lb } : {}))).to.equal(want));
    }
    it('a cluster name too long for 32 characters, should get a stable hashed name of 32 characters', () => {
      expect(apiServerLoadBalancerName('c1')).to.equal('c1-apiserver');
      const long = apiServerLoadBalancerName('a-very-long-cluster-name-for-production.eu');
      expect(long).to.have.length(32).and.to.match(/^[a-z0-9]{28}-k8s$/);
      expect(apiServerLoadBalancerName('a-very-long-cluster-name-for-production.eu')).to.equal(long);
    });
  });

  it('no loadBalancerType, should create an internet-facing NLB in the public subnets, a TCP target group on 6443, the listener, all with the owned tags', async () => {
    const scope = scopeFor(env);
    const lb = await reconcileLoadBalancer(scope, input(specOf()));

    expect(lb).to.include({ type: 'nlb', name: 'c1-apiserver', scheme: 'internet-facing' });
    expect(lb.dnsName).to.match(/elb\.amazonaws\.com$/);
    expect(mutatingActions(env.proxy)).to.deep.equal(['CreateLoadBalancer', 'CreateTargetGroup', 'ModifyTargetGroupAttributes', 'CreateListener']);

    const [have] = (await v2.send(new elbv2.DescribeLoadBalancersCommand({ Names: ['c1-apiserver'] }))).LoadBalancers!;
    expect(have).to.include({ Type: 'network', Scheme: 'internet-facing', VpcId: net.vpcId, LoadBalancerArn: lb.arn });
    expect(have!.AvailabilityZones!.map((z) => z.SubnetId).sort()).to.deep.equal([...net.public].sort());
    expect(have!.SecurityGroups).to.deep.equal([sgs['apiserver-lb']]);
    const [tg] = (await v2.send(new elbv2.DescribeTargetGroupsCommand({ LoadBalancerArn: lb.arn }))).TargetGroups!;
    expect(tg).to.include({
      TargetGroupArn: lb.targetGroupArn,
      Protocol: 'TCP',
      Port: 6443,
      HealthCheckProtocol: 'TCP',
      HealthCheckPort: '6443',
      HealthCheckIntervalSeconds: 5,
      HealthCheckTimeoutSeconds: 4,
      HealthyThresholdCount: 2,
      UnhealthyThresholdCount: 6,
    });
    const [listener] = (await v2.send(new elbv2.DescribeListenersCommand({ LoadBalancerArn: lb.arn }))).Listeners!;
    expect(listener).to.include({ Port: 6443, Protocol: 'TCP' });
    expect(listener!.DefaultActions).to.deep.equal([{ Type: 'forward', TargetGroupArn: lb.targetGroupArn }]);
    const tags = (await v2.send(new elbv2.DescribeTagsCommand({ ResourceArns: [lb.arn!, lb.targetGroupArn!] }))).TagDescriptions!;
    for (const t of tags) expect(tagMap(t.Tags)).to.deep.equal(ownedTags(scope, 'apiserver', 'c1-apiserver'));
    const attrs = (await v2.send(new elbv2.DescribeTargetGroupAttributesCommand({ TargetGroupArn: lb.targetGroupArn }))).Attributes!;
    expect(attrs.find((a) => a.Key === 'preserve_client_ip.enabled')?.Value).to.equal('false');
    expect(scope.plan.entries().map((e) => [e.resource, e.action])).to.deep.equal([
      ['load-balancer', 'create'],
      ['target-group', 'create'],
      ['listener', 'create'],
    ]);
  });

  const reruns: Array<[string, AWSClusterSpec['controlPlaneLoadBalancer'], Record<string, number>]> = [
    [
      'a rerun of an NLB, should compare listener, target group and attributes and make no mutating call',
      { loadBalancerType: 'nlb', crossZoneLoadBalancing: true, healthCheckProtocol: 'HTTPS' },
      {
        DescribeLoadBalancers: 1,
        DescribeTargetGroups: 1,
        DescribeTags: 1,
        DescribeLoadBalancerAttributes: 1,
        DescribeTargetGroupAttributes: 1,
        DescribeListeners: 1,
      },
    ],
    [
      'a rerun of a classic ELB, should compare listener, health check and attributes and make no mutating call',
      { loadBalancerType: 'classic', crossZoneLoadBalancing: true, healthCheckProtocol: 'HTTPS' },
      { DescribeLoadBalancers: 1, DescribeTags: 1, DescribeLoadBalancerAttributes: 1 },
    ],
  ];
  for (const [name, lbSpec, reads] of reruns) {
    it(name, async () => {
      const spec = specOf({ controlPlaneLoadBalancer: lbSpec });
      const first = await reconcileLoadBalancer(scopeFor(env), input(spec));
      env.proxy.reset();
      const scope = scopeFor(env);
      const again = await reconcileLoadBalancer(scope, input(spec));
      expect(again).to.deep.equal(first);
      expect(mutatingActions(env.proxy)).to.deep.equal([]);
      expect(callCounts(env.proxy.calls)).to.deep.equal(reads);
      expect(scope.plan.entries().every((e) => e.action === 'no-change')).to.equal(true);
    });
  }

  it('HTTPS health checks and cross-zone on an NLB, should probe /readyz and turn cross-zone on', async () => {
    const lb = await reconcileLoadBalancer(scopeFor(env), input(specOf({ controlPlaneLoadBalancer: { healthCheckProtocol: 'HTTPS', crossZoneLoadBalancing: true } })));
    const [tg] = (await v2.send(new elbv2.DescribeTargetGroupsCommand({ TargetGroupArns: [lb.targetGroupArn!] }))).TargetGroups!;
    expect(tg).to.include({ HealthCheckProtocol: 'HTTPS', HealthCheckPath: '/readyz', HealthCheckPort: '6443' });
    const attrs = (await v2.send(new elbv2.DescribeLoadBalancerAttributesCommand({ LoadBalancerArn: lb.arn }))).Attributes!;
    expect(attrs.find((a) => a.Key === 'load_balancing.cross_zone.enabled')?.Value).to.equal('true');
  });

  it('a changed health check protocol on an existing NLB, should modify only the target group', async () => {
    await reconcileLoadBalancer(scopeFor(env), input(specOf()));
    env.proxy.reset();
    const scope = scopeFor(env);
    await reconcileLoadBalancer(scope, input(specOf({ controlPlaneLoadBalancer: { healthCheckProtocol: 'HTTPS' } })));
    expect(mutatingActions(env.proxy)).to.deep.equal(['ModifyTargetGroup']);
    expect(scope.plan.entries().find((e) => e.resource === 'target-group')).to.include({ action: 'update' });
  });

  it('cross-zone turned on for an existing NLB, should modify only the load balancer attribute', async () => {
    await reconcileLoadBalancer(scopeFor(env), input(specOf()));
    env.proxy.reset();
    await reconcileLoadBalancer(scopeFor(env), input(specOf({ controlPlaneLoadBalancer: { crossZoneLoadBalancing: true } })));
    expect(mutatingActions(env.proxy)).to.deep.equal(['ModifyLoadBalancerAttributes']);
    expect(env.proxy.mutatingCalls()[0]!.params).to.include({ 'Attributes.member.1.Key': 'load_balancing.cross_zone.enabled', 'Attributes.member.1.Value': 'true' });
  });

  it('an internal scheme, should put the NLB in the private subnets', async () => {
    const lb = await reconcileLoadBalancer(scopeFor(env), input(specOf({ controlPlaneLoadBalancer: { scheme: 'internal' } })));
    expect(lb.scheme).to.equal('internal');
    const [have] = (await v2.send(new elbv2.DescribeLoadBalancersCommand({ LoadBalancerArns: [lb.arn!] }))).LoadBalancers!;
    expect(have!.Scheme).to.equal('internal');
    expect(have!.AvailabilityZones!.map((z) => z.SubnetId).sort()).to.deep.equal([...net.private].sort());
  });

  it('loadBalancerType classic, should create a classic ELB with the TCP listener, the health check, the attributes and the owned tags', async () => {
    const scope = scopeFor(env);
    const lb = await reconcileLoadBalancer(scope, input(specOf({ controlPlaneLoadBalancer: { loadBalancerType: 'classic', healthCheckProtocol: 'HTTPS' } })));
    expect(lb).to.deep.equal({ type: 'classic', name: 'c1-apiserver', dnsName: 'c1-apiserver.us-east-1.elb.amazonaws.com', scheme: 'internet-facing' });
    expect(mutatingActions(env.proxy)).to.deep.equal(['CreateLoadBalancer', 'ConfigureHealthCheck', 'ModifyLoadBalancerAttributes']);
    const [have] = (await classic.send(new elb.DescribeLoadBalancersCommand({ LoadBalancerNames: ['c1-apiserver'] }))).LoadBalancerDescriptions!;
    expect(have!.ListenerDescriptions!.map((l) => l.Listener)).to.deep.equal([{ Protocol: 'TCP', LoadBalancerPort: 6443, InstanceProtocol: 'TCP', InstancePort: 6443 }]);
    expect(have!.HealthCheck).to.deep.equal({ Target: 'HTTPS:6443/readyz', Interval: 5, Timeout: 4, HealthyThreshold: 2, UnhealthyThreshold: 6 });
    expect(have!.Subnets!.sort()).to.deep.equal([...net.public].sort());
    expect(have!.SecurityGroups).to.deep.equal([sgs['apiserver-lb']]);
    const attrs = (await classic.send(new elb.DescribeLoadBalancerAttributesCommand({ LoadBalancerName: 'c1-apiserver' }))).LoadBalancerAttributes!;
    expect(attrs.ConnectionSettings?.IdleTimeout).to.equal(600);
    const [tags] = (await classic.send(new elb.DescribeTagsCommand({ LoadBalancerNames: ['c1-apiserver'] }))).TagDescriptions!;
    expect(tagMap(tags!.Tags)).to.deep.equal(ownedTags(scope, 'apiserver', 'c1-apiserver'));
  });

  const dryRuns: Array<[string, AWSClusterSpec['controlPlaneLoadBalancer'], Partial<LoadBalancerResult>, number]> = [
    ['a dry run of a new NLB, should plan the load balancer, target group and listener and make no mutating call', undefined, { type: 'nlb', arn: '(new load-balancer apiserver)' }, 3],
    ['a dry run of a new classic ELB, should plan it and make no mutating call', { loadBalancerType: 'classic' }, { type: 'classic', dnsName: '(new load-balancer apiserver)' }, 1],
  ];
  for (const [name, lbSpec, want, entries] of dryRuns) {
    it(name, async () => {
      const scope = scopeFor(env, { dryRun: true });
      const lb = await reconcileLoadBalancer(scope, input(specOf({ controlPlaneLoadBalancer: lbSpec })));
      expect(lb).to.include(want);
      expect(mutatingActions(env.proxy)).to.deep.equal([]);
      expect(scope.plan.entries()).to.have.length(entries);
      expect(scope.plan.entries().every((e) => e.action === 'create')).to.equal(true);
    });
  }

  it('an unowned NLB with our name, should be a conflict (exit 3) that says how to adopt it', async () => {
    const other = await v2.send(new elbv2.CreateLoadBalancerCommand({ Name: 'c1-apiserver', Type: 'network', Subnets: net.public, Tags: [{ Key: 'team', Value: 'other' }] }));
    const err = (await thrown(() => reconcileLoadBalancer(scopeFor(env), input(specOf())))) as CapflowError;
    expect(err.exitCode).to.equal(ExitCode.conflict);
    expect(err.code).to.equal('AWS_NOT_OWNED');
    expect(err.message).to.contain(other.LoadBalancers![0]!.LoadBalancerArn!);
    expect(err.hint).to.contain('sigs.k8s.io/cluster-api-provider-aws/cluster/c1=owned');
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
  });

  it('an unowned classic ELB with our name, should be a conflict (exit 3) too', async () => {
    await classic.send(
      new elb.CreateLoadBalancerCommand({ LoadBalancerName: 'c1-apiserver', Subnets: net.public, Listeners: [{ Protocol: 'TCP', LoadBalancerPort: 443, InstanceProtocol: 'TCP', InstancePort: 443 }] }),
    );
    const err = (await thrown(() => reconcileLoadBalancer(scopeFor(env), input(specOf({ controlPlaneLoadBalancer: { loadBalancerType: 'classic' } }))))) as CapflowError;
    expect(err.exitCode).to.equal(ExitCode.conflict);
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
  });

  it('loadBalancerType alb, should be an input error', async () => {
    const err = (await thrown(() => reconcileLoadBalancer(scopeFor(env), input(specOf({ controlPlaneLoadBalancer: { loadBalancerType: 'alb' } }))))) as CapflowError;
    expect(err.exitCode).to.equal(ExitCode.invalidInput);
    expect(err.code).to.equal('LB_ALB_UNSUPPORTED');
  });

  describe('delete', () => {
    const k8s = (value: string) => [{ Key: 'kubernetes.io/cluster/c1', Value: value }];
    const classicListener = [{ Protocol: 'TCP', LoadBalancerPort: 80, InstanceProtocol: 'TCP', InstancePort: 30080 }];

    /** Our API NLB, plus what the cloud controller and others left in the VPC. */
    async function world() {
      const api = await reconcileLoadBalancer(scopeFor(env), input(specOf()));
      const ccmNlb = (await v2.send(new elbv2.CreateLoadBalancerCommand({ Name: 'a1b2c3', Type: 'network', Subnets: net.public, Tags: k8s('owned') }))).LoadBalancers![0]!;
      const ccmTg = (await v2.send(new elbv2.CreateTargetGroupCommand({ Name: 'k8s-default-web', Protocol: 'TCP', Port: 30080, VpcId: net.vpcId, Tags: k8s('owned') })))
        .TargetGroups![0]!;
      await v2.send(new elbv2.CreateListenerCommand({ LoadBalancerArn: ccmNlb.LoadBalancerArn, Protocol: 'TCP', Port: 80, DefaultActions: [{ Type: 'forward', TargetGroupArn: ccmTg.TargetGroupArn }] }));
      await classic.send(new elb.CreateLoadBalancerCommand({ LoadBalancerName: 'ccm-classic', Subnets: net.public, Listeners: classicListener, Tags: k8s('owned') }));
      const shared = (await v2.send(new elbv2.CreateLoadBalancerCommand({ Name: 'shared-ingress', Type: 'network', Subnets: net.public, Tags: k8s('shared') }))).LoadBalancers![0]!;
      const unowned = (await v2.send(new elbv2.CreateLoadBalancerCommand({ Name: 'someone-else', Type: 'network', Subnets: net.public }))).LoadBalancers![0]!;
      await classic.send(new elb.CreateLoadBalancerCommand({ LoadBalancerName: 'someone-classic', Subnets: net.public, Listeners: classicListener }));
      env.proxy.reset();
      return { api, ccmNlb, ccmTg, shared, unowned };
    }

    it('delete, should remove our NLB and its target group and the cloud controller load balancers, and leave unowned and shared ones alone', async () => {
      const w = await world();
      const scope = scopeFor(env);
      await deleteLoadBalancers(scope, net.vpcId);

      const deletedV2 = env.proxy.mutatingCalls().filter((c) => c.action === 'DeleteLoadBalancer' && c.service === 'elbv2').map((c) => c.params!.LoadBalancerArn);
      expect(deletedV2.sort()).to.deep.equal([w.api.arn, w.ccmNlb.LoadBalancerArn].sort());
      const deletedTgs = env.proxy.mutatingCalls().filter((c) => c.action === 'DeleteTargetGroup').map((c) => c.params!.TargetGroupArn);
      expect(deletedTgs.sort()).to.deep.equal([w.api.targetGroupArn, w.ccmTg.TargetGroupArn].sort());
      const deletedClassic = env.proxy.mutatingCalls().filter((c) => c.action === 'DeleteLoadBalancer' && c.service === 'elb').map((c) => c.params!.LoadBalancerName);
      expect(deletedClassic).to.deep.equal(['ccm-classic']);
      // Load balancers go before their target groups.
      const actions = mutatingActions(env.proxy);
      expect(actions.indexOf('DeleteTargetGroup')).to.be.greaterThan(actions.indexOf('DeleteLoadBalancer'));

      const leftV2 = (await v2.send(new elbv2.DescribeLoadBalancersCommand({}))).LoadBalancers!.map((l) => l.LoadBalancerName).sort();
      expect(leftV2).to.deep.equal(['shared-ingress', 'someone-else']);
      const leftClassic = (await classic.send(new elb.DescribeLoadBalancersCommand({}))).LoadBalancerDescriptions!.map((l) => l.LoadBalancerName);
      expect(leftClassic).to.deep.equal(['someone-classic']);
      expect(scope.plan.entries().filter((e) => e.action === 'skip').map((e) => e.name)).to.deep.equal(['shared-ingress']);
      expect(w.shared.LoadBalancerArn).to.not.equal(w.unowned.LoadBalancerArn);

      // Again: nothing of ours left, nothing to do.
      env.proxy.reset();
      await deleteLoadBalancers(scopeFor(env), net.vpcId);
      expect(mutatingActions(env.proxy)).to.deep.equal([]);
    });

    it('a dry-run delete, should plan the deletions and make no mutating call', async () => {
      await world();
      const scope = scopeFor(env, { dryRun: true });
      await deleteLoadBalancers(scope, net.vpcId);
      expect(mutatingActions(env.proxy)).to.deep.equal([]);
      expect(scope.plan.entries().filter((e) => e.action === 'delete').map((e) => `${e.resource} ${e.name}`).sort()).to.deep.equal([
        'load-balancer a1b2c3',
        'load-balancer c1-apiserver',
        'load-balancer ccm-classic',
        'target-group c1-apiserver',
        'target-group k8s-default-web',
      ]);
    });
  });
});
