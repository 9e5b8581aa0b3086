/**
 * provision-vpc --delete as a teardown audit, against moto through the fault proxy: the cluster's
 * network (the aws-self-managed example, machines not launched) plus what its workload would have
 * made, created in moto directly as the controllers make them: the AWS cloud controller's load
 * balancers for Services type=LoadBalancer (a classic ELB with its `k8s-elb-*` security group and
 * the node group rule naming it, an NLB with its target group), and the EBS CSI driver's volumes
 * (run with --k8s-tag-cluster-id, so tagged kubernetes.io/cluster/<name>: owned). After the delete,
 * every family is read straight from moto: nothing tagged owned by the cluster may be left, and
 * what is not the cluster's (another cluster's volume, an untagged one, a shared group, a
 * user-given VPC and its subnets) must be there with its tags unchanged.
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  CreateVolumeCommand,
  CreateVpcCommand,
  DescribeAddressesCommand,
  DescribeInstancesCommand,
  DescribeInternetGatewaysCommand,
  DescribeNatGatewaysCommand,
  DescribeNetworkInterfacesCommand,
  DescribeRouteTablesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  DescribeVolumesCommand,
  DescribeVpcsCommand,
  EC2Client,
  type Tag,
} from '@aws-sdk/client-ec2';
import * as elb from '@aws-sdk/client-elastic-load-balancing';
import * as elbv2 from '@aws-sdk/client-elastic-load-balancing-v2';
import { AwsClients } from '../../src/core/aws.js';
import { createLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { readStepStatus } from '../../src/core/status.js';
import { runStep, type StepSummary } from '../../src/core/step-host.js';
import { provisionVpc, type ProvisionVpcStatus } from '../../executors/provision-vpc.js';
import { clientConfig } from '../support/moto.js';
import { useMotoBehindProxy, type RecordedCall } from '../support/fault-proxy.js';

const CLUSTER = 'aws-dev';
const REVISION = '0123456789abcdef0123456789abcdef01234567';
const EXAMPLE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'examples', 'clusters', 'aws-self-managed');
const CAPA = `sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`;
const K8S = `kubernetes.io/cluster/${CLUSTER}`;
/** The delete budget of issue 17 for the 3-zone example (NAT per zone, NLB): mutating and reads together. */
const DELETE_BUDGET = 40;

interface Run {
  exitCode: number;
  summary: StepSummary;
  calls: RecordedCall[];
  log: string;
}

interface Leftover {
  kind: string;
  id: string;
  tags: Record<string, string>;
}

const tagMap = (tags: Array<{ Key?: string; Value?: string }> | undefined): Record<string, string> =>
  Object.fromEntries((tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
const tagList = (tags: Record<string, string>): Tag[] => Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));

describe('provision-vpc teardown: a cluster with workload load balancers and volumes leaves nothing owned (moto, through the fault proxy)', function () {
  this.timeout(180_000);
  const bed = useMotoBehindProxy();
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;
  let ec2: EC2Client;
  let v2: elbv2.ElasticLoadBalancingV2Client;
  let classic: elb.ElasticLoadBalancingClient;

  beforeEach(() => {
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-teardown-repo-'));
    cpSync(EXAMPLE, path.join(repo, 'clusters', 'dev'), { recursive: true });
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-teardown-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
    // Straight to moto (not recorded by the proxy): the controllers' calls are not the step's.
    ec2 = new EC2Client(clientConfig(bed.moto.endpoint));
    v2 = new elbv2.ElasticLoadBalancingV2Client(clientConfig(bed.moto.endpoint));
    classic = new elb.ElasticLoadBalancingClient(clientConfig(bed.moto.endpoint));
  });
  afterEach(() => {
    ec2.destroy();
    v2.destroy();
    classic.destroy();
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  async function run(opts: { delete?: boolean; params?: Record<string, string> } = {}): Promise<Run> {
    const from = bed.proxy.calls.length;
    const { credentials, region } = clientConfig(bed.proxy.endpoint);
    const aws = new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { minTimeoutMs: 5, maxTimeoutMs: 50, retries: 10 } });
    const logStream = new PassThrough();
    let log = '';
    logStream.on('data', (d: Buffer) => (log += d.toString()));
    try {
      const { exitCode, summary } = await runStep(
        provisionVpc,
        { repoDir: repo, clusterPath: 'clusters/dev', revision: REVISION, dryRun: false, delete: opts.delete === true, params: opts.params ?? {} },
        { aws, secrets, log: createLogger({ stream: logStream, format: 'json', level: 'info' }), stdout: new PassThrough(), outputsDir: path.join(repo, 'out') },
      );
      return { exitCode, summary, calls: bed.proxy.calls.slice(from), log };
    } finally {
      aws.destroy();
    }
  }

  function expectOk(r: Run): void {
    expect(r.exitCode, `${JSON.stringify(r.summary.error)}\n${r.log.slice(-3000)}`).to.equal(0);
  }

  const byAction = (calls: RecordedCall[]) => {
    const out: Record<string, number> = {};
    for (const c of calls) out[`${c.service}:${c.action}`] = (out[`${c.service}:${c.action}`] ?? 0) + 1;
    return out;
  };

  /**
   * What the workload would have made in the cluster's VPC: the cloud controller's classic ELB (its
   * k8s-elb group, the node group's rule naming that group, and the same rule in a shared group the
   * user gave the nodes), its NLB and target group; the CSI driver's volumes; and volumes that are
   * not the cluster's (another cluster's, and one without a cluster tag).
   */
  async function workload(status: ProvisionVpcStatus) {
    const owned = { [K8S]: 'owned' };
    const publicSubnets = status.subnets.filter((s) => s.public).map((s) => s.id);
    const elbSg = (
      await ec2.send(
        new CreateSecurityGroupCommand({
          GroupName: 'k8s-elb-a0123456789abcdef0123456789abcde',
          Description: 'Security group for Kubernetes ELB a0123456789abcdef0123456789abcde (default/web)',
          VpcId: status.vpcId,
          TagSpecifications: [{ ResourceType: 'security-group', Tags: tagList(owned) }],
        }),
      )
    ).GroupId!;
    const nodeSg = status.securityGroupIds.node!;
    const fromElb = [{ IpProtocol: '-1', FromPort: -1, ToPort: -1, UserIdGroupPairs: [{ GroupId: elbSg }] }];
    await ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: nodeSg, IpPermissions: fromElb }));
    const sharedSg = (
      await ec2.send(
        new CreateSecurityGroupCommand({
          GroupName: 'corp-nodes',
          Description: 'the user gave the nodes this group too',
          VpcId: status.vpcId,
          TagSpecifications: [{ ResourceType: 'security-group', Tags: tagList({ [K8S]: 'shared', team: 'platform' }) }],
        }),
      )
    ).GroupId!;
    await ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: sharedSg, IpPermissions: fromElb }));
    await classic.send(
      new elb.CreateLoadBalancerCommand({
        LoadBalancerName: 'a0123456789abcdef0123456789abcde',
        Subnets: publicSubnets,
        SecurityGroups: [elbSg],
        Listeners: [{ Protocol: 'TCP', LoadBalancerPort: 80, InstanceProtocol: 'TCP', InstancePort: 30080 }],
        Tags: [
          { Key: K8S, Value: 'owned' },
          { Key: 'kubernetes.io/service-name', Value: 'default/web' },
        ],
      }),
    );
    const nlb = (
      await v2.send(
        new elbv2.CreateLoadBalancerCommand({
          Name: 'b0123456789abcdef0123456789abcd',
          Type: 'network',
          Subnets: publicSubnets,
          Tags: [
            { Key: K8S, Value: 'owned' },
            { Key: 'kubernetes.io/service-name', Value: 'default/api' },
          ],
        }),
      )
    ).LoadBalancers![0]!;
    const tg = (
      await v2.send(new elbv2.CreateTargetGroupCommand({ Name: 'k8s-default-api-0123456789', Protocol: 'TCP', Port: 30443, VpcId: status.vpcId, Tags: [{ Key: K8S, Value: 'owned' }] }))
    ).TargetGroups![0]!;
    await v2.send(new elbv2.CreateListenerCommand({ LoadBalancerArn: nlb.LoadBalancerArn, Protocol: 'TCP', Port: 443, DefaultActions: [{ Type: 'forward', TargetGroupArn: tg.TargetGroupArn }] }));

    const csiTags = (pvc: string, cluster: string) => ({
      [`kubernetes.io/cluster/${cluster}`]: 'owned',
      'ebs.csi.aws.com/cluster': 'true',
      CSIVolumeName: `pvc-${pvc}-0000-4000-8000-000000000000`,
      'kubernetes.io/created-for/pvc/name': pvc,
      'kubernetes.io/created-for/pvc/namespace': 'default',
      'kubernetes.io/created-for/pv/name': `pvc-${pvc}-0000-4000-8000-000000000000`,
    });
    const volume = async (tags: Record<string, string>) =>
      (await ec2.send(new CreateVolumeCommand({ AvailabilityZone: 'us-east-1a', Size: 10, VolumeType: 'gp3', TagSpecifications: [{ ResourceType: 'volume', Tags: tagList(tags) }] }))).VolumeId!;
    const volumes = {
      data: await volume(csiTags('data', CLUSTER)),
      logs: await volume(csiTags('logs', CLUSTER)),
      otherCluster: await volume(csiTags('data', 'aws-prod')),
      // The CSI driver without --k8s-tag-cluster-id: names no cluster, so it is not this cluster's.
      untagged: await volume({ 'ebs.csi.aws.com/cluster': 'true', CSIVolumeName: 'pvc-x' }),
    };
    return { elbSg, sharedSg, nodeSg, nlbArn: nlb.LoadBalancerArn!, tgArn: tg.TargetGroupArn!, volumes };
  }

  /** Every resource of every family that carries the cluster's tags (owned or shared), read straight from moto. */
  async function audit(): Promise<Leftover[]> {
    const out: Leftover[] = [];
    const add = (kind: string, id: string | undefined, tags: Array<{ Key?: string; Value?: string }> | undefined) => {
      const t = tagMap(tags);
      if (t[CAPA] !== undefined || t[K8S] !== undefined) out.push({ kind, id: id ?? '', tags: t });
    };
    for (const x of (await ec2.send(new DescribeVpcsCommand({}))).Vpcs ?? []) add('vpc', x.VpcId, x.Tags);
    for (const x of (await ec2.send(new DescribeSubnetsCommand({}))).Subnets ?? []) add('subnet', x.SubnetId, x.Tags);
    for (const x of (await ec2.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups ?? []) add('security-group', x.GroupId, x.Tags);
    for (const x of (await ec2.send(new DescribeNetworkInterfacesCommand({}))).NetworkInterfaces ?? []) add('network-interface', x.NetworkInterfaceId, x.TagSet);
    for (const x of (await ec2.send(new DescribeAddressesCommand({}))).Addresses ?? []) add('elastic-ip', x.AllocationId, x.Tags);
    for (const x of (await ec2.send(new DescribeNatGatewaysCommand({}))).NatGateways ?? []) if (x.State !== 'deleted') add('nat-gateway', x.NatGatewayId, x.Tags);
    for (const x of (await ec2.send(new DescribeInternetGatewaysCommand({}))).InternetGateways ?? []) add('internet-gateway', x.InternetGatewayId, x.Tags);
    for (const x of (await ec2.send(new DescribeRouteTablesCommand({}))).RouteTables ?? []) add('route-table', x.RouteTableId, x.Tags);
    for (const x of (await ec2.send(new DescribeVolumesCommand({}))).Volumes ?? []) add('volume', x.VolumeId, x.Tags);
    for (const r of (await ec2.send(new DescribeInstancesCommand({}))).Reservations ?? []) {
      for (const x of r.Instances ?? []) if (x.State?.Name !== 'terminated') add('instance', x.InstanceId, x.Tags);
    }
    const lbs = (await v2.send(new elbv2.DescribeLoadBalancersCommand({}))).LoadBalancers ?? [];
    const tgs = (await v2.send(new elbv2.DescribeTargetGroupsCommand({}))).TargetGroups ?? [];
    const arns = [...lbs.map((l) => l.LoadBalancerArn!), ...tgs.map((t) => t.TargetGroupArn!)];
    if (arns.length > 0) {
      for (const d of (await v2.send(new elbv2.DescribeTagsCommand({ ResourceArns: arns }))).TagDescriptions ?? []) {
        add(d.ResourceArn!.includes(':targetgroup/') ? 'target-group' : 'load-balancer', d.ResourceArn, d.Tags);
      }
    }
    const names = ((await classic.send(new elb.DescribeLoadBalancersCommand({}))).LoadBalancerDescriptions ?? []).map((l) => l.LoadBalancerName!);
    if (names.length > 0) {
      for (const d of (await classic.send(new elb.DescribeTagsCommand({ LoadBalancerNames: names }))).TagDescriptions ?? []) add('classic-load-balancer', d.LoadBalancerName, d.Tags);
    }
    return out;
  }
  const ownedIn = (left: Leftover[]) => left.filter((x) => Object.values(x.tags).includes('owned') && !Object.values(x.tags).includes('shared'));

  async function statusOf(): Promise<ProvisionVpcStatus> {
    return (await readStepStatus<ProvisionVpcStatus>(secrets, CLUSTER, 'provision-vpc'))!;
  }

  it(`the example (3 zones, a NAT gateway per zone, an NLB), delete should make at most ${DELETE_BUDGET} calls and leave nothing owned; deleting again makes no mutating call`, async () => {
    expectOk(await run());
    const r = await run({ delete: true });
    expectOk(r);
    const mutating = r.calls.filter((c) => c.mutating).length;
    const summary = `${mutating} mutating + ${r.calls.length - mutating} reads: ${JSON.stringify(byAction(r.calls))}`;
    expect(r.calls.length, summary).to.be.at.most(DELETE_BUDGET);
    // Real AWS ordering: the gateways are deleted before anything that waits on them, the groups before the VPC.
    const order = r.calls.filter((c) => c.mutating).map((c) => c.action);
    expect(order.lastIndexOf('DeleteNatGateway')).to.be.lessThan(order.indexOf('ReleaseAddress'));
    expect(order.lastIndexOf('ReleaseAddress')).to.be.lessThan(order.indexOf('DetachInternetGateway'));
    expect(order.lastIndexOf('DeleteRouteTable')).to.be.lessThan(order.indexOf('DeleteSubnet'));
    expect(order.lastIndexOf('DeleteSubnet')).to.be.lessThan(order.indexOf('DeleteVpc'));
    expect(order.filter((a) => a === 'RevokeSecurityGroupIngress'), 'one revoke breaks the control plane / node cycle').to.have.length(1);
    expect(ownedIn(await audit())).to.deep.equal([]);
    expect(r.summary.left).to.deep.equal([]);
    console.log(`      delete: ${summary}`);

    const again = await run({ delete: true });
    expectOk(again);
    expect(again.calls.filter((c) => c.mutating).map((c) => c.action)).to.deep.equal([]);
  });

  it('workload load balancers and volumes, delete with volumes=delete should leave 0 resources owned by the cluster in any family, and the other cluster\'s volume, the untagged one and the shared group untouched', async () => {
    expectOk(await run());
    const w = await workload(await statusOf());
    const sharedBefore = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [w.sharedSg] }))).SecurityGroups![0]!;
    expect(ownedIn(await audit()).map((x) => x.kind)).to.include.members(['classic-load-balancer', 'load-balancer', 'target-group', 'volume', 'security-group']);

    const r = await run({ delete: true, params: { volumes: 'delete' } });
    expectOk(r);
    const left = await audit();
    expect(ownedIn(left), JSON.stringify(ownedIn(left))).to.deep.equal([]);
    expect(r.summary.left).to.deep.equal([]);
    // Only the workload's own volumes were deleted.
    const deletedVolumes = r.calls.filter((c) => c.action === 'DeleteVolume').map((c) => c.params!.VolumeId).sort();
    expect(deletedVolumes).to.deep.equal([w.volumes.data, w.volumes.logs].sort());
    const volumes = (await ec2.send(new DescribeVolumesCommand({}))).Volumes!.map((v) => ({ id: v.VolumeId, tags: tagMap(v.Tags) }));
    expect(volumes.map((v) => v.id).sort()).to.deep.equal([w.volumes.otherCluster, w.volumes.untagged].sort());
    expect(volumes.find((v) => v.id === w.volumes.otherCluster)!.tags).to.include({ 'kubernetes.io/cluster/aws-prod': 'owned' });
    // The shared group stays with its tags; only its rule naming the deleted k8s-elb group is gone.
    const sharedAfter = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [w.sharedSg] }))).SecurityGroups![0]!;
    expect(tagMap(sharedAfter.Tags)).to.deep.equal(tagMap(sharedBefore.Tags));
    expect(JSON.stringify(sharedAfter.IpPermissions ?? [])).to.not.include(w.elbSg);
    // The classic ELB's group went after the node group that named it (the rule went with the node group).
    const deletedGroups = r.calls.filter((c) => c.action === 'DeleteSecurityGroup').map((c) => c.params!.GroupId);
    expect(deletedGroups).to.include.members([w.elbSg, w.nodeSg]);
    expect(left.filter((x) => x.id === w.sharedSg)).to.have.length(1);

    const again = await run({ delete: true, params: { volumes: 'delete' } });
    expectOk(again);
    expect(again.calls.filter((c) => c.mutating).map((c) => c.action)).to.deep.equal([]);
  });

  it('workload volumes with the default policy (retain), should keep them, report each by id and tags, and delete everything else owned', async () => {
    expectOk(await run());
    const w = await workload(await statusOf());
    const r = await run({ delete: true });
    expectOk(r);
    expect(r.calls.filter((c) => c.action === 'DeleteVolume')).to.have.length(0);
    const reported = (r.summary.left as Array<{ kind: string; id: string; reason: string; tags: Record<string, string> }>).map((l) => ({ kind: l.kind, id: l.id, pvc: l.tags['kubernetes.io/created-for/pvc/name'] }));
    expect(reported.sort((a, b) => a.id.localeCompare(b.id))).to.deep.equal(
      [
        { kind: 'volume', id: w.volumes.data, pvc: 'data' },
        { kind: 'volume', id: w.volumes.logs, pvc: 'logs' },
      ].sort((a, b) => a.id.localeCompare(b.id)),
    );
    expect(r.log).to.include('Left in place').and.include(w.volumes.data);
    const owned = ownedIn(await audit());
    expect(owned.map((x) => x.id).sort()).to.deep.equal([w.volumes.data, w.volumes.logs].sort());
  });

  it('a user-given VPC and subnets with workload load balancers and volumes, delete should leave 0 owned resources and the VPC and subnets in place with their tags unchanged', async () => {
    const userTags = { Name: 'corp', [K8S]: 'shared' };
    const vpcId = (await ec2.send(new CreateVpcCommand({ CidrBlock: '10.20.0.0/16', TagSpecifications: [{ ResourceType: 'vpc', Tags: tagList(userTags) }] }))).Vpc!.VpcId!;
    const subnet = async (cidr: string, az: string, role: string) =>
      (
        await ec2.send(
          new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: cidr, AvailabilityZone: az, TagSpecifications: [{ ResourceType: 'subnet', Tags: tagList({ ...userTags, [role]: '1' }) }] }),
        )
      ).Subnet!.SubnetId!;
    const pubA = await subnet('10.20.0.0/24', 'us-east-1a', 'kubernetes.io/role/elb');
    const privA = await subnet('10.20.1.0/24', 'us-east-1a', 'kubernetes.io/role/internal-elb');
    const pubB = await subnet('10.20.2.0/24', 'us-east-1b', 'kubernetes.io/role/elb');
    const file = path.join(repo, 'clusters', 'dev', 'cluster.yaml');
    const text = readFileSync(file, 'utf8');
    const next = text.replace(
      / {4}vpc:\n {6}cidrBlock: 10\.0\.0\.0\/16\n {6}availabilityZoneUsageLimit: 3\n {6}availabilityZoneSelection: Ordered\n/,
      `    vpc:\n      id: ${vpcId}\n    subnets:\n    - id: ${pubA}\n      isPublic: true\n    - id: ${privA}\n    - id: ${pubB}\n      isPublic: true\n`,
    );
    expect(next).to.not.equal(text);
    writeFileSync(file, next);
    const snapshot = async () => ({
      vpc: (await ec2.send(new DescribeVpcsCommand({ VpcIds: [vpcId] }))).Vpcs!.map((v) => tagMap(v.Tags)),
      subnets: (await ec2.send(new DescribeSubnetsCommand({ SubnetIds: [pubA, privA, pubB] }))).Subnets!.map((s) => ({ id: s.SubnetId, tags: tagMap(s.Tags) })).sort((a, b) => a.id!.localeCompare(b.id!)),
    });
    const before = await snapshot();

    expectOk(await run());
    const w = await workload(await statusOf());
    const r = await run({ delete: true, params: { volumes: 'delete' } });
    expectOk(r);
    expect(ownedIn(await audit()), 'nothing owned left').to.deep.equal([]);
    expect(await snapshot(), 'the user VPC and subnets, tags unchanged').to.deep.equal(before);
    const mutatedIds = r.calls.filter((c) => c.mutating).flatMap((c) => Object.values(c.params ?? {}).map(String));
    for (const id of [vpcId, pubA, privA, pubB]) expect(mutatedIds, `no mutating call names ${id}`).to.not.include(id);
    expect((await ec2.send(new DescribeVolumesCommand({}))).Volumes!.map((v) => v.VolumeId).sort()).to.deep.equal([w.volumes.otherCluster, w.volumes.untagged].sort());
  });
});
