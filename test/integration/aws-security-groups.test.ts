import { expect } from 'chai';
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateNetworkInterfaceCommand,
  CreateSecurityGroupCommand,
  DescribeSecurityGroupsCommand,
  type SecurityGroup,
} from '@aws-sdk/client-ec2';
import { ExitCode, isCapflowError, type CapflowError } from '../../src/core/errors.js';
import {
  currentIngressRules,
  deleteSecurityGroups,
  reconcileSecurityGroups,
  ruleKey,
  SECURITY_GROUP_ROLES,
  type SecurityGroupRole,
} from '../../src/aws/security-groups.js';
import { ownedTags } from '../../src/aws/tags.js';
import type { AWSClusterSpec } from '../../src/spec/model.js';
import {
  callCounts,
  clusterOf,
  createNetwork,
  mutatingActions,
  scopeFor,
  specOf,
  startAwsEnv,
  thrown,
  type AwsEnv,
  type TestNetwork,
} from '../fixtures/aws/env.js';

/** The groups of a VPC by id, as moto has them now. */
async function groupsById(env: AwsEnv, vpcId: string): Promise<Map<string, SecurityGroup>> {
  const out = await env.ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpcId] }] }));
  return new Map((out.SecurityGroups ?? []).map((g) => [g.GroupId!, g]));
}

/** A group's rules as readable keys: protocol/ports/source with group ids replaced by role names. */
function ruleKeys(group: SecurityGroup, ids: Record<SecurityGroupRole, string>): string[] {
  const role = Object.fromEntries(Object.entries(ids).map(([r, id]) => [id, r]));
  return currentIngressRules(group)
    .map((r) => ruleKey(r.source.kind === 'sg' ? { ...r, source: { kind: 'sg', value: role[r.source.value] ?? r.source.value } } : r))
    .sort();
}

describe('aws/security-groups: the cluster security groups against moto', function () {
  let env: AwsEnv;
  let net: TestNetwork;
  const cluster = clusterOf('c1');

  before(async () => {
    env = await startAwsEnv();
  });
  after(async () => {
    await env?.stop();
  });
  beforeEach(async () => {
    await env.moto.reset();
    net = await createNetwork(env.ec2);
    env.proxy.reset();
  });

  it('an empty VPC, should create the four groups tagged as owned, with the rules a kubeadm cluster needs', async () => {
    const scope = scopeFor(env, { additionalTags: { team: 'platform' } });
    const ids = await reconcileSecurityGroups(scope, { vpcId: net.vpcId, spec: specOf(), cluster });

    expect(Object.keys(ids).sort()).to.deep.equal([...SECURITY_GROUP_ROLES].sort());
    // 4 groups; the bastion group has no rules while the bastion is disabled, so 3 authorize calls.
    expect(callCounts(env.proxy.mutatingCalls())).to.deep.equal({ CreateSecurityGroup: 4, AuthorizeSecurityGroupIngress: 3 });
    expect(env.proxy.countBy('DescribeSecurityGroups'), 'one by tag, one by name for the missing ones').to.equal(2);

    const groups = await groupsById(env, net.vpcId);
    for (const role of SECURITY_GROUP_ROLES) {
      const g = groups.get(ids[role])!;
      expect(g.GroupName).to.equal(`c1-${role}`);
      const tags = Object.fromEntries((g.Tags ?? []).map((t) => [t.Key!, t.Value!]));
      expect(tags, `tags of ${role}`).to.deep.equal(ownedTags(scope, role, `c1-${role}`));
      expect(tags.team).to.equal('platform');
    }
    expect(ruleKeys(groups.get(ids.controlplane)!, ids)).to.deep.equal(
      [
        'tcp/6443-6443/sg:apiserver-lb',
        'tcp/6443-6443/sg:controlplane',
        'tcp/6443-6443/sg:node',
        'tcp/2379-2380/sg:controlplane',
        'tcp/179-179/sg:controlplane',
        'tcp/179-179/sg:node',
        '4/all/sg:controlplane',
        '4/all/sg:node',
      ].sort(),
    );
    expect(ruleKeys(groups.get(ids.node)!, ids)).to.deep.equal(
      [
        'tcp/30000-32767/cidr:0.0.0.0/0',
        'tcp/10250-10250/sg:controlplane',
        'tcp/10250-10250/sg:node',
        'tcp/179-179/sg:controlplane',
        'tcp/179-179/sg:node',
        '4/all/sg:controlplane',
        '4/all/sg:node',
      ].sort(),
    );
    expect(ruleKeys(groups.get(ids['apiserver-lb'])!, ids)).to.deep.equal(['tcp/6443-6443/cidr:0.0.0.0/0']);
    expect(ruleKeys(groups.get(ids.bastion)!, ids)).to.deep.equal([]);
    // Every rule capflow adds says so.
    for (const id of Object.values(ids)) {
      for (const r of currentIngressRules(groups.get(id)!)) expect(r.description).to.match(/^capflow: /);
    }
    expect(scope.plan.counts()).to.include({ create: 4, update: 3, 'no-change': 1 });
  });

  it('a rerun with the same spec, should find the groups by tag and make no mutating call', async () => {
    const spec = specOf({ bastion: { enabled: true, allowedCIDRBlocks: ['192.0.2.0/24'] } });
    const first = await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec, cluster });
    env.proxy.reset();

    const scope = scopeFor(env);
    const again = await reconcileSecurityGroups(scope, { vpcId: net.vpcId, spec, cluster });
    expect(again).to.deep.equal(first);
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    expect(callCounts(env.proxy.calls)).to.deep.equal({ DescribeSecurityGroups: 1 });
    expect(scope.plan.counts()).to.include({ 'no-change': 8, create: 0, update: 0 });
  });

  const ruleChanges: Array<{ name: string; before: Partial<AWSClusterSpec>; after: Partial<AWSClusterSpec>; expect: Record<string, number> }> = [
    {
      name: 'an added additionalControlPlaneIngressRule, should authorize only that rule',
      before: {},
      after: {
        network: {
          vpc: { cidrBlock: '10.0.0.0/16' },
          additionalControlPlaneIngressRules: [{ description: 'metrics', protocol: 'tcp', fromPort: 9100, toPort: 9100, cidrBlocks: ['10.1.0.0/16'] }],
        },
      },
      expect: { AuthorizeSecurityGroupIngress: 1 },
    },
    {
      name: 'a removed additionalControlPlaneIngressRule, should revoke only that rule',
      before: {
        network: {
          vpc: { cidrBlock: '10.0.0.0/16' },
          additionalControlPlaneIngressRules: [{ description: 'metrics', protocol: 'tcp', fromPort: 9100, toPort: 9100, sourceSecurityGroupRoles: ['node'] }],
        },
      },
      after: {},
      expect: { RevokeSecurityGroupIngress: 1 },
    },
    {
      name: 'a changed description of an additional rule, should rewrite only the description',
      before: {
        network: {
          vpc: { cidrBlock: '10.0.0.0/16' },
          // A CIDR source: moto cannot rewrite the description of a group-sourced rule (it compares descriptions).
          additionalControlPlaneIngressRules: [{ description: 'metrics', protocol: 'tcp', fromPort: 9100, toPort: 9100, cidrBlocks: ['10.1.0.0/16'] }],
        },
      },
      after: {
        network: {
          vpc: { cidrBlock: '10.0.0.0/16' },
          additionalControlPlaneIngressRules: [{ description: 'node exporter', protocol: 'tcp', fromPort: 9100, toPort: 9100, cidrBlocks: ['10.1.0.0/16'] }],
        },
      },
      expect: { UpdateSecurityGroupRuleDescriptionsIngress: 1 },
    },
    {
      name: 'cniIngressRules replacing the Calico defaults, should revoke BGP and IP-in-IP and authorize the CNI ports on both groups',
      before: {},
      after: { network: { vpc: { cidrBlock: '10.0.0.0/16' }, cni: { cniIngressRules: [{ description: 'vxlan', protocol: 'udp', fromPort: 8472, toPort: 8472 }] } } },
      expect: { RevokeSecurityGroupIngress: 2, AuthorizeSecurityGroupIngress: 2 },
    },
    {
      name: 'the bastion turned on, should open SSH on the bastion group and SSH from it on control plane and nodes',
      before: {},
      after: { bastion: { enabled: true } },
      expect: { AuthorizeSecurityGroupIngress: 3 },
    },
  ];
  for (const c of ruleChanges) {
    it(c.name, async () => {
      await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(c.before), cluster });
      env.proxy.reset();
      const scope = scopeFor(env);
      await reconcileSecurityGroups(scope, { vpcId: net.vpcId, spec: specOf(c.after), cluster });
      expect(callCounts(env.proxy.mutatingCalls())).to.deep.equal(c.expect);
      // And the next run converged.
      env.proxy.reset();
      await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(c.after), cluster });
      expect(mutatingActions(env.proxy)).to.deep.equal([]);
    });
  }

  it('an added rule, should send exactly that permission in the one authorize call', async () => {
    const ids = await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(), cluster });
    env.proxy.reset();
    const spec = specOf({
      network: {
        vpc: { cidrBlock: '10.0.0.0/16' },
        additionalControlPlaneIngressRules: [{ description: 'metrics', protocol: 'tcp', fromPort: 9100, toPort: 9100, cidrBlocks: ['10.1.0.0/16'] }],
      },
    });
    await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec, cluster });
    const [call] = env.proxy.mutatingCalls();
    expect(call!.params).to.include({
      GroupId: ids.controlplane,
      'IpPermissions.1.IpProtocol': 'tcp',
      'IpPermissions.1.FromPort': '9100',
      'IpPermissions.1.ToPort': '9100',
      'IpPermissions.1.IpRanges.1.CidrIp': '10.1.0.0/16',
      'IpPermissions.1.IpRanges.1.Description': 'capflow: metrics',
    });
    expect(Object.keys(call!.params!).filter((k) => k.startsWith('IpPermissions.2'))).to.deep.equal([]);
  });

  it('a rule added by hand on an owned group, should be drift: planned as a revoke at the field that would keep it, then revoked', async () => {
    const ids = await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(), cluster });
    await env.ec2.send(
      new AuthorizeSecurityGroupIngressCommand({
        GroupId: ids.node,
        IpPermissions: [{ IpProtocol: 'tcp', FromPort: 8080, ToPort: 8080, IpRanges: [{ CidrIp: '198.51.100.0/24', Description: 'opened by hand' }] }],
      }),
    );
    const plan = scopeFor(env, { dryRun: true });
    await reconcileSecurityGroups(plan, { vpcId: net.vpcId, spec: specOf(), cluster, infra: { kind: 'AWSCluster', name: 'c1' } });
    const entry = plan.plan.changes().find((e) => e.resource === 'security-group-rules');
    expect(entry).to.include({ id: ids.node, detail: 'revoke tcp 8080 from 198.51.100.0/24: not in the spec', field: 'AWSCluster/c1 spec.network.additionalNodeIngressRules' });
    env.proxy.reset();
    await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(), cluster });
    expect(mutatingActions(env.proxy)).to.deep.equal(['RevokeSecurityGroupIngress']);
    const node = (await groupsById(env, net.vpcId)).get(ids.node)!;
    expect(ruleKeys(node, ids)).to.not.include('tcp/8080-8080/cidr:198.51.100.0/24');
  });

  it("the cloud controller's rules on the node group (an NLB's, described kubernetes.io/rule/..., a classic ELB's from its own group), should be left alone", async () => {
    const ids = await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(), cluster });
    const elb = await env.ec2.send(new CreateSecurityGroupCommand({ VpcId: net.vpcId, GroupName: 'k8s-elb-a1b2c3', Description: 'Security group for Kubernetes ELB a1b2c3 (default/web)' }));
    await env.ec2.send(
      new AuthorizeSecurityGroupIngressCommand({
        GroupId: ids.node,
        IpPermissions: [
          { IpProtocol: 'tcp', FromPort: 31080, ToPort: 31080, IpRanges: [{ CidrIp: '0.0.0.0/0', Description: 'kubernetes.io/rule/nlb/client=a1b2c3d4' }] },
          { IpProtocol: '-1', UserIdGroupPairs: [{ GroupId: elb.GroupId }] },
        ],
      }),
    );
    env.proxy.reset();
    await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(), cluster });
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    const node = (await groupsById(env, net.vpcId)).get(ids.node)!;
    expect(ruleKeys(node, ids)).to.include.members(['tcp/31080-31080/cidr:0.0.0.0/0', `-1/all/sg:${elb.GroupId}`]);
  });

  it('an internal API load balancer without a VPC CIDR in the spec, should read the VPC once and allow the API from its CIDR', async () => {
    const spec = specOf({ network: {}, controlPlaneLoadBalancer: { scheme: 'internal' } });
    const ids = await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec, cluster });
    expect(env.proxy.countBy('DescribeVpcs')).to.equal(1);
    const lb = (await groupsById(env, net.vpcId)).get(ids['apiserver-lb'])!;
    expect(ruleKeys(lb, ids)).to.deep.equal([`tcp/6443-6443/cidr:${net.cidr}`]);
  });

  it('a source role the cluster does not have, should be an input error naming the spec field', async () => {
    const spec = specOf({
      network: { additionalControlPlaneIngressRules: [{ description: 'x', protocol: 'tcp', fromPort: 1, toPort: 1, sourceSecurityGroupRoles: ['node-eks-additional'] }] },
    });
    const err = (await thrown(() => reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec, cluster }))) as CapflowError;
    expect(err.exitCode).to.equal(ExitCode.invalidInput);
    expect(err.message).to.contain('spec.network.additionalControlPlaneIngressRules');
  });

  it('a dry run against an empty VPC, should plan four groups and their rules with placeholder ids and make no mutating call', async () => {
    const scope = scopeFor(env, { dryRun: true });
    const ids = await reconcileSecurityGroups(scope, { vpcId: net.vpcId, spec: specOf(), cluster });
    expect(ids).to.deep.equal({
      bastion: '(new security-group bastion)',
      'apiserver-lb': '(new security-group apiserver-lb)',
      controlplane: '(new security-group controlplane)',
      node: '(new security-group node)',
    });
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    const entries = scope.plan.entries();
    expect(entries.filter((e) => e.resource === 'security-group').map((e) => [e.name, e.action])).to.deep.equal([
      ['c1-bastion', 'create'],
      ['c1-apiserver-lb', 'create'],
      ['c1-controlplane', 'create'],
      ['c1-node', 'create'],
    ]);
    const cp = entries.find((e) => e.resource === 'security-group-rules' && e.name === 'c1-controlplane')!;
    expect(cp.action).to.equal('update');
    expect(cp.detail).to.contain('authorize tcp 6443 from (new security-group apiserver-lb)');
  });

  it('a dry run of a rule change, should plan the authorize and make no mutating call', async () => {
    await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(), cluster });
    env.proxy.reset();
    const scope = scopeFor(env, { dryRun: true });
    const spec = specOf({
      network: { vpc: { cidrBlock: '10.0.0.0/16' }, additionalControlPlaneIngressRules: [{ description: 'm', protocol: 'tcp', fromPort: 9100, toPort: 9100 }] },
    });
    await reconcileSecurityGroups(scope, { vpcId: net.vpcId, spec, cluster });
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    const updates = scope.plan.entries().filter((e) => e.action === 'update');
    expect(updates.map((e) => e.name)).to.deep.equal(['c1-controlplane']);
    expect(updates[0]!.detail).to.match(/^authorize tcp 9100 from sg-/);
  });

  it('an unowned group with our name in the VPC, should be a conflict (exit 3) that says how to adopt it', async () => {
    const other = await env.ec2.send(new CreateSecurityGroupCommand({ VpcId: net.vpcId, GroupName: 'c1-node', Description: 'made by hand' }));
    const err = await thrown(() => reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(), cluster }));
    expect(isCapflowError(err) && err.exitCode).to.equal(ExitCode.conflict);
    expect((err as CapflowError).code).to.equal('AWS_NOT_OWNED');
    expect((err as CapflowError).hint).to.contain(`tag it sigs.k8s.io/cluster-api-provider-aws/cluster/c1=owned`);
    expect((err as Error).message).to.contain(other.GroupId);
    expect(env.proxy.countBy('CreateSecurityGroup'), 'nothing is created before the conflict is found').to.equal(0);
  });

  it('delete, should revoke the cross-references first, then delete the groups, and leave an unowned group and the default group alone', async () => {
    const ids = await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf({ bastion: { enabled: true } }), cluster });
    const unowned = await env.ec2.send(new CreateSecurityGroupCommand({ VpcId: net.vpcId, GroupName: 'someone-else', Description: 'not ours' }));
    // The unowned group refers to ours: that is not ours to revoke (real AWS would then refuse the delete).
    const groupsBefore = await groupsById(env, net.vpcId);
    env.proxy.reset();
    const scope = scopeFor(env);
    await deleteSecurityGroups(scope, net.vpcId);

    const actions = mutatingActions(env.proxy);
    const firstDelete = actions.indexOf('DeleteSecurityGroup');
    expect(actions.slice(0, firstDelete).every((a) => a === 'RevokeSecurityGroupIngress'), actions.join(',')).to.equal(true);
    // controlplane and node name each other (a cycle: one revoke breaks it); bastion and apiserver-lb
    // only have CIDR rules and are named by the others, so deleting in order clears the rest.
    expect(callCounts(env.proxy.mutatingCalls())).to.deep.equal({ RevokeSecurityGroupIngress: 1, DeleteSecurityGroup: 4 });
    const revoked = env.proxy.mutatingCalls().filter((c) => c.action === 'RevokeSecurityGroupIngress').map((c) => c.params!.GroupId);
    expect(revoked).to.have.length(1);
    expect([ids.controlplane, ids.node]).to.include(revoked[0]);
    const deleted = env.proxy.mutatingCalls().filter((c) => c.action === 'DeleteSecurityGroup').map((c) => String(c.params!.GroupId));
    expect([...deleted].sort()).to.deep.equal(Object.values(ids).sort());
    // As AWS requires: no group is deleted while a group still standing names it (the revoked group's rules are gone).
    const names = (id: string) =>
      new Set(id === revoked[0] ? [] : currentIngressRules(groupsBefore.get(id)!).filter((r) => r.source.kind === 'sg' && r.source.value !== id).map((r) => r.source.value));
    const before = new Map(deleted.map((id) => [id, names(id)]));
    deleted.forEach((id, i) => {
      const standing = deleted.slice(i + 1);
      expect(standing.filter((o) => before.get(o)!.has(id)), `${id} deleted while named by`).to.deep.equal([]);
    });

    const left = [...(await groupsById(env, net.vpcId)).values()].map((g) => g.GroupName).sort();
    expect(left).to.deep.equal(['default', 'someone-else']);
    expect(unowned.GroupId).to.be.a('string');
    expect(scope.plan.counts().delete).to.equal(5);

    // Again: nothing left, nothing to do.
    env.proxy.reset();
    await deleteSecurityGroups(scopeFor(env), net.vpcId);
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
  });

  it('a dry-run delete, should plan revocations and deletions and make no mutating call', async () => {
    await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(), cluster });
    env.proxy.reset();
    const scope = scopeFor(env, { dryRun: true });
    await deleteSecurityGroups(scope, net.vpcId);
    expect(mutatingActions(env.proxy)).to.deep.equal([]);
    expect(scope.plan.entries().filter((e) => e.resource === 'security-group' && e.action === 'delete')).to.have.length(4);
  });

  it('a group still used by a network interface (moto deletes it anyway, so the test answers DependencyViolation), should retry until the deadline and name the group and the interface', async () => {
    const ids = await reconcileSecurityGroups(scopeFor(env), { vpcId: net.vpcId, spec: specOf(), cluster });
    const eni = await env.ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: net.private[0], Groups: [ids.node], Description: 'worker eth0' }));
    const scope = scopeFor(env, { timeouts: { dependencyMs: 2_500 } });
    // Real AWS refuses to delete a group an ENI uses; moto does not, so answer as AWS would, before the wire.
    let refused = 0;
    scope.ec2.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { GroupId?: string };
        if (context.commandName === 'DeleteSecurityGroupCommand' && input.GroupId === ids.node) {
          refused++;
          throw Object.assign(new Error(`resource ${ids.node} has a dependent object`), { name: 'DependencyViolation', $fault: 'client', $metadata: { httpStatusCode: 400 } });
        }
        return next(args);
      },
      { step: 'initialize', name: 'answerDependencyViolation', priority: 'low' },
    );
    const err = (await thrown(() => deleteSecurityGroups(scope, net.vpcId))) as CapflowError;
    expect(err.exitCode).to.equal(ExitCode.transient);
    expect(err.code).to.equal('SG_DEPENDENCY_VIOLATION');
    expect(err.message).to.contain(ids.node).and.to.contain(eni.NetworkInterface!.NetworkInterfaceId!);
    expect(refused, 'retried before giving up').to.be.greaterThan(1);
    // The others are gone but the control plane group: the node group's rules name it, and AWS
    // refuses to delete a group another group names, so it waits for the blocked one.
    const left = [...(await groupsById(env, net.vpcId)).values()].map((g) => g.GroupName).sort();
    expect(left).to.deep.equal(['c1-controlplane', 'c1-node', 'default']);
  });
});
