/**
 * provision-vpc for an EKS cluster (Cluster -> AWSManagedCluster +
 * AWSManagedControlPlane, the network in the control plane's spec.network)
 * against moto through the fault proxy: the executor runs in process
 * (runStep), the spec is a temp copy of examples/clusters/eks-managed
 * (region us-west-2, read from the AWSManagedControlPlane).
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import {
  CreateKeyPairCommand,
  DescribeRouteTablesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  EC2Client,
  type SecurityGroup,
} from '@aws-sdk/client-ec2';
import { AwsClients } from '../../src/core/aws.js';
import { createLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { readStepStatus } from '../../src/core/status.js';
import { runStep, type StepSummary } from '../../src/core/step-host.js';
import { provisionVpc, type ProvisionVpcStatus } from '../../executors/provision-vpc.js';
import { clientConfig } from '../support/moto.js';
import { useMotoBehindProxy, type RecordedCall } from '../support/fault-proxy.js';
import { snapshotWorld, type WorldResource } from '../support/aws-world.js';

const CLUSTER = 'eks-prod';
const REGION = 'us-west-2';
const REVISION = '0123456789abcdef0123456789abcdef01234567';
const EXAMPLE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'examples', 'clusters', 'eks-managed');
const CAPA = `sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`;
const K8S = `kubernetes.io/cluster/${CLUSTER}`;
const ROLE = 'sigs.k8s.io/cluster-api-provider-aws/role';
/** moto's Ubuntu AMI (its default images are in every region). */
const PINNED_AMI = 'ami-1e749f67';

const tagMap = (tags: Array<{ Key?: string; Value?: string }> | undefined): Record<string, string> =>
  Object.fromEntries((tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));

interface Run {
  exitCode: number;
  summary: StepSummary;
  calls: RecordedCall[];
  log: string;
}

describe('provision-vpc: the network of an EKS cluster (AWSManagedControlPlane) against moto (through the fault proxy)', function () {
  this.timeout(180_000);
  const bed = useMotoBehindProxy();
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;
  const controlPlaneFile = () => path.join(repo, 'clusters', 'dev', 'control-plane.yaml');
  const ec2 = () => new EC2Client({ ...clientConfig(bed.moto.endpoint), region: REGION });

  beforeEach(() => {
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-vpc-repo-'));
    cpSync(EXAMPLE, path.join(repo, 'clusters', 'dev'), { recursive: true });
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-vpc-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
  });
  afterEach(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  /** Edits the example's AWSManagedControlPlane in place (text replacement, so positions stay real). */
  function editControlPlane(from: string | RegExp, to: string): void {
    const text = readFileSync(controlPlaneFile(), 'utf8');
    const next = text.replace(from, to);
    expect(next, `edit ${String(from)}`).to.not.equal(text);
    writeFileSync(controlPlaneFile(), next);
  }

  async function run(opts: { dryRun?: boolean; delete?: boolean; params?: Record<string, string> } = {}): Promise<Run> {
    const from = bed.proxy.calls.length;
    // The executor's default region is us-east-1: the cluster's region must come from the AWSManagedControlPlane.
    const { credentials, region } = clientConfig(bed.proxy.endpoint);
    const aws = new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { minTimeoutMs: 5, maxTimeoutMs: 50, retries: 10 } });
    const logStream = new PassThrough();
    let log = '';
    logStream.on('data', (d: Buffer) => (log += d.toString()));
    try {
      const { exitCode, summary } = await runStep(
        provisionVpc,
        { repoDir: repo, clusterPath: 'clusters/dev', revision: REVISION, dryRun: opts.dryRun === true, delete: opts.delete === true, params: opts.params ?? {} },
        { aws, secrets, log: createLogger({ stream: logStream, format: 'json', level: 'info' }), stdout: new PassThrough(), outputsDir: path.join(repo, 'out') },
      );
      return { exitCode, summary, calls: bed.proxy.calls.slice(from), log };
    } finally {
      aws.destroy();
    }
  }

  const mutating = (r: Run) => r.calls.filter((c) => c.mutating);
  const actions = (calls: RecordedCall[]) => calls.map((c) => c.action).sort();
  const world = async () => (await snapshotWorld(bed.moto.endpoint, REGION)).resources;
  const owned = (w: WorldResource[]) => w.filter((x) => x.tags[CAPA] === 'owned' || x.tags[K8S] === 'owned');
  function expectOk(r: Run): void {
    expect(r.exitCode, `${JSON.stringify(r.summary.error)}\n${r.log.slice(-3000)}`).to.equal(0);
  }
  async function groups(): Promise<SecurityGroup[]> {
    const client = ec2();
    try {
      return (await client.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: `tag:${CAPA}`, Values: ['owned'] }] }))).SecurityGroups ?? [];
    } finally {
      client.destroy();
    }
  }

  it('an empty account, should make the AWSCluster layout in the control plane\'s region (6 subnets with ELB role tags, 3 NAT gateways, 4 route tables), the node-eks-additional group and no load balancer', async () => {
    const r = await run();
    expectOk(r);
    const w = await world();
    const count = (kind: string) => w.filter((x) => x.kind === kind).length;
    expect({ vpc: count('vpc'), subnet: count('subnet'), igw: count('internet-gateway'), eip: count('eip'), nat: count('nat-gateway'), rt: count('route-table'), sg: count('security-group'), lb: count('load-balancer') }).to.deep.equal({
      vpc: 1,
      subnet: 6,
      igw: 1,
      eip: 3,
      nat: 3,
      rt: 4,
      sg: 1,
      lb: 0,
    });
    expect(bed.proxy.countBy('CreateLoadBalancer'), 'EKS serves the API: no load balancer of ours').to.equal(0);
    expect(bed.proxy.calls.filter((c) => c.service.startsWith('elasticloadbalancing') || c.service === 'elb' || c.service === 'elbv2')).to.deep.equal([]);
    for (const res of w) {
      // Ownership stays keyed by the Cluster's name (delete finds by it).
      expect(res.tags, `${res.kind} ${res.id}`).to.include({ [CAPA]: 'owned', [K8S]: 'owned', 'capflow.io/cluster': CLUSTER, 'capflow.io/revision': REVISION, 'capflow.io/spec': 'clusters/dev' });
      expect(res.tags.Name, `${res.kind} ${res.id}`).to.match(/^eks-prod-/);
    }

    // Subnets: CAPA's layout of 10.20.0.0/16 over three zones, ELB role tags by kind.
    const subnets = w.filter((x) => x.kind === 'subnet');
    const client = ec2();
    const described = (await client.send(new DescribeSubnetsCommand({ SubnetIds: subnets.map((s) => s.id) }))).Subnets!;
    client.destroy();
    expect(described.map((s) => s.CidrBlock).sort()).to.deep.equal(['10.20.0.0/20', '10.20.128.0/18', '10.20.16.0/20', '10.20.192.0/18', '10.20.32.0/20', '10.20.64.0/18']);
    expect([...new Set(described.map((s) => s.AvailabilityZone))].sort()).to.deep.equal(['us-west-2a', 'us-west-2b', 'us-west-2c']);
    for (const s of described) {
      const tags = tagMap(s.Tags);
      if (s.MapPublicIpOnLaunch) {
        expect(tags, s.CidrBlock).to.include({ [ROLE]: 'public', 'kubernetes.io/role/elb': '1' });
        expect(tags).to.not.have.property('kubernetes.io/role/internal-elb');
      } else {
        expect(tags, s.CidrBlock).to.include({ [ROLE]: 'private', 'kubernetes.io/role/internal-elb': '1' });
        expect(tags).to.not.have.property('kubernetes.io/role/elb');
      }
      // eksClusterName is the Cluster's name here: the ownership tag already names it, no "shared" one.
      expect(Object.values(tags)).to.not.include('shared');
    }
    expect(described.filter((s) => s.MapPublicIpOnLaunch)).to.have.length(3);

    // Route tables: public through the internet gateway, each private one through its zone's NAT gateway.
    const rtClient = ec2();
    const rts = (await rtClient.send(new DescribeRouteTablesCommand({ Filters: [{ Name: `tag:${CAPA}`, Values: ['owned'] }] }))).RouteTables!;
    rtClient.destroy();
    for (const rt of rts) {
      const def = rt.Routes!.find((x) => x.DestinationCidrBlock === '0.0.0.0/0')!;
      if (tagMap(rt.Tags)[ROLE] === 'public') expect(def.GatewayId).to.match(/^igw-/);
      else expect(def.NatGatewayId).to.match(/^nat-/);
    }

    // Security groups: no control plane or API load balancer group, no kubeadm rules.
    const sgs = await groups();
    expect(sgs.map((g) => [g.GroupName, tagMap(g.Tags)[ROLE]])).to.deep.equal([['eks-prod-node-eks-additional', 'node-eks-additional']]);
    expect(sgs[0]!.IpPermissions ?? []).to.deep.equal([]);

    // Outputs and status: the same names and shape; no API server of ours.
    const out = r.summary.outputs;
    expect(out['api-server-dns']).to.equal('');
    expect(out['target-group-arn']).to.equal('');
    expect(out['bastion-address']).to.equal('');
    expect(JSON.parse(out['security-group-ids']!)).to.deep.equal({ 'node-eks-additional': sgs[0]!.GroupId });
    expect(Object.keys(JSON.parse(out['subnet-ids']!) as object)).to.deep.equal(['us-west-2a', 'us-west-2b', 'us-west-2c']);
    const status = await readStepStatus<ProvisionVpcStatus>(secrets, CLUSTER, 'provision-vpc');
    expect(status?.region).to.equal(REGION);
    expect(status?.vpcId).to.equal(out['vpc-id']);
    expect(status?.subnets.filter((s) => !s.public)).to.have.length(3);
    expect(status?.securityGroupIds['node-eks-additional']).to.equal(sgs[0]!.GroupId);
    expect(status?.apiServerDns).to.equal('');
    expect(Object.keys(status!.natGatewayIds).sort()).to.deep.equal(['us-west-2a', 'us-west-2b', 'us-west-2c']);
    console.log(`      create: ${mutating(r).length} mutating, ${r.calls.length - mutating(r).length} read calls`);
  });

  it('a rerun after success, should make no mutating call', async () => {
    const first = await run();
    expectOk(first);
    const again = await run();
    expectOk(again);
    expect(actions(mutating(again))).to.deep.equal([]);
    expect(bed.proxy.mutatingCalls(), 'all mutating calls were the first run\'s').to.have.length(mutating(first).length);
    const plan = again.summary.plan as Record<'create' | 'update' | 'delete', number>;
    expect(plan.create + plan.update + plan.delete).to.equal(0);
    expect(again.summary.outputs.changes).to.equal('0');
    console.log(`      rerun: 0 mutating, ${again.calls.length} read calls: ${actions(again.calls).join(', ')}`);
  });

  it('an eksClusterName other than the Cluster\'s name, should tag every subnet kubernetes.io/cluster/<EKS name>: shared and keep ownership by the Cluster\'s name', async () => {
    editControlPlane('eksClusterName: eks-prod', 'eksClusterName: prod-eks-cluster');
    expectOk(await run());
    const subnets = (await world()).filter((x) => x.kind === 'subnet');
    expect(subnets).to.have.length(6);
    for (const s of subnets) {
      expect(s.tags, s.id).to.include({ 'kubernetes.io/cluster/prod-eks-cluster': 'shared', [CAPA]: 'owned', [K8S]: 'owned', 'capflow.io/cluster': CLUSTER });
    }
    const again = await run();
    expect(actions(mutating(again)), 'the tag is held, not rewritten').to.deep.equal([]);
  });

  it('a bastion enabled, should add the bastion group (SSH from its allow-list) and SSH from it on node-eks-additional, and launch the bastion', async () => {
    const client = ec2();
    await client.send(new CreateKeyPairCommand({ KeyName: 'capflow-prod' }));
    client.destroy();
    editControlPlane('  sshKeyName: capflow-prod\n', `  sshKeyName: capflow-prod\n  bastion:\n    enabled: true\n    ami: ${PINNED_AMI}\n    allowedCIDRBlocks:\n    - 203.0.113.0/24\n`);
    const r = await run();
    expectOk(r);
    const sgs = await groups();
    const byRole = Object.fromEntries(sgs.map((g) => [tagMap(g.Tags)[ROLE]!, g]));
    expect(Object.keys(byRole).sort()).to.deep.equal(['bastion', 'node-eks-additional']);
    expect(byRole.bastion!.IpPermissions!.map((p) => [p.FromPort, p.IpRanges?.map((x) => x.CidrIp)])).to.deep.equal([[22, ['203.0.113.0/24']]]);
    expect(byRole['node-eks-additional']!.IpPermissions!.map((p) => [p.FromPort, p.UserIdGroupPairs?.map((x) => x.GroupId)])).to.deep.equal([[22, [byRole.bastion!.GroupId]]]);
    expect(JSON.parse(r.summary.outputs['security-group-ids']!)).to.deep.equal({ bastion: byRole.bastion!.GroupId, 'node-eks-additional': byRole['node-eks-additional']!.GroupId });
    expect(r.summary.outputs['bastion-address']).to.not.equal('');
    expect(bed.proxy.countBy('RunInstances')).to.equal(1);
    const again = await run();
    expect(actions(mutating(again))).to.deep.equal([]);

    // Turned off: the bastion goes, its group stays (as the AWS provider leaves it) without its SSH rule.
    editControlPlane('    enabled: true\n', '    enabled: false\n');
    const off = await run();
    expectOk(off);
    // CreateTags: the two groups whose rules changed get this run's commit in their revision tag.
    expect(actions(mutating(off))).to.deep.equal(['CreateTags', 'RevokeSecurityGroupIngress', 'RevokeSecurityGroupIngress', 'TerminateInstances']);
    const left = await groups();
    for (const g of left) expect(g.IpPermissions ?? [], g.GroupName).to.deep.equal([]);
  });

  it('delete, should remove everything the cluster owns (found by tags, in the control plane\'s region), and a second delete changes nothing', async () => {
    editControlPlane('  sshKeyName: capflow-prod\n', `  bastion:\n    enabled: true\n    ami: ${PINNED_AMI}\n`);
    expectOk(await run());
    expect((await world()).filter((x) => x.kind === 'security-group')).to.have.length(2);
    const r = await run({ delete: true });
    expectOk(r);
    const w = await world();
    expect(owned(w), JSON.stringify(owned(w))).to.deep.equal([]);
    expect(w).to.deep.equal([]);
    const order = mutating(r).map((c) => c.action);
    expect(order.lastIndexOf('DeleteSecurityGroup')).to.be.lessThan(order.indexOf('DeleteVpc'));
    expect(order.lastIndexOf('DeleteNatGateway')).to.be.lessThan(order.indexOf('ReleaseAddress'));
    expect(await readStepStatus(secrets, CLUSTER, 'provision-vpc')).to.equal(undefined);
    const again = await run({ delete: true });
    expectOk(again);
    expect(actions(mutating(again))).to.deep.equal([]);
    console.log(`      delete: ${mutating(r).length} mutating, ${r.calls.length - mutating(r).length} read calls`);
  });

  it('the cluster folder is gone, delete with cluster-name and region parameters, should still remove everything owned', async () => {
    expectOk(await run());
    rmSync(path.join(repo, 'clusters', 'dev'), { recursive: true });
    const r = await run({ delete: true, params: { 'cluster-name': CLUSTER, region: REGION } });
    expectOk(r);
    expect(owned(await world())).to.deep.equal([]);
  });

  it('--dry-run on an empty account, should plan the network without a load balancer and make no mutating call; after a create, plan no changes', async () => {
    const r = await run({ dryRun: true });
    expectOk(r);
    expect(actions(mutating(r))).to.deep.equal([]);
    expect(r.log).to.match(/create\s+vpc\s+eks-prod-vpc/);
    expect(r.log).to.match(/create\s+security-group\s+eks-prod-node-eks-additional/);
    expect(r.log).to.not.match(/\s(load-balancer|target-group)\s/);
    expect(r.log).to.not.match(/eks-prod-(controlplane|apiserver-lb|node)\b(?!-eks-additional)/);
    expect(await world()).to.deep.equal([]);
    expectOk(await run());
    const after = await run({ dryRun: true });
    expectOk(after);
    expect(actions(mutating(after))).to.deep.equal([]);
    expect(after.summary.outputs.changes).to.equal('0');
    const del = await run({ dryRun: true, delete: true });
    expectOk(del);
    expect(actions(mutating(del))).to.deep.equal([]);
    expect((del.summary.plan as Record<string, number>).delete).to.be.greaterThan(15);
  });

  describe('bad input fails before any mutating call, at the AWSManagedControlPlane\'s file:line:column', () => {
    // `static`: found by validation, so not one AWS call is made.
    const cases: Array<{ name: string; edit: [string | RegExp, string]; expect: RegExp; static?: boolean }> = [
      {
        name: 'a listed subnet lies outside the VPC block',
        edit: [
          '      availabilityZoneUsageLimit: 3\n',
          '      availabilityZoneUsageLimit: 3\n    subnets:\n    - id: a-public\n      availabilityZone: us-west-2a\n      cidrBlock: 10.1.0.0/20\n      isPublic: true\n',
        ],
        expect: /clusters\/dev\/control-plane\.yaml:17:18 AWSManagedControlPlane\/eks-prod-control-plane spec\.network\.subnets\[0\]\.cidrBlock: 10\.1\.0\.0\/20 is outside the VPC block 10\.20\.0\.0\/16/,
        static: true,
      },
      {
        name: 'a listed subnet names a zone of another region',
        edit: [
          '      availabilityZoneUsageLimit: 3\n',
          '      availabilityZoneUsageLimit: 3\n    subnets:\n    - id: a-public\n      availabilityZone: us-east-1a\n      cidrBlock: 10.20.0.0/20\n      isPublic: true\n',
        ],
        expect: /clusters\/dev\/control-plane\.yaml:16:25 AWSManagedControlPlane\/eks-prod-control-plane spec\.network\.subnets\[0\]\.availabilityZone: availability zone us-east-1a is not in region us-west-2/,
        static: true,
      },
      {
        name: 'an extra control plane rule names a source role EKS has no group for',
        edit: [
          '      availabilityZoneUsageLimit: 3\n',
          '      availabilityZoneUsageLimit: 3\n    additionalControlPlaneIngressRules:\n    - description: from the control plane\n      protocol: tcp\n      fromPort: 443\n      toPort: 443\n      sourceSecurityGroupRoles:\n      - controlplane\n',
        ],
        expect: /clusters\/dev\/control-plane\.yaml:20:9 AWSManagedControlPlane\/eks-prod-control-plane spec\.network\.additionalControlPlaneIngressRules\[0\]\.sourceSecurityGroupRoles\[0\]: an EKS cluster has no controlplane security group/,
        static: true,
      },
      {
        name: 'the region has fewer zones than the usage limit',
        edit: ['availabilityZoneUsageLimit: 3', 'availabilityZoneUsageLimit: 9'],
        expect: /clusters\/dev\/control-plane\.yaml:13:35 AWSManagedControlPlane\/eks-prod-control-plane spec\.network\.vpc\.availabilityZoneUsageLimit: region us-west-2 has \d availability zones, fewer than the 9 asked for/,
      },
    ];
    for (const c of cases) {
      it(`${c.name}, should exit 2 with the field's location and make no mutating call`, async () => {
        editControlPlane(c.edit[0], c.edit[1]);
        const r = await run();
        expect(r.exitCode, r.log.slice(-2000)).to.equal(2);
        expect(r.summary.error?.code).to.equal('SPEC_INVALID');
        expect(r.summary.error?.message).to.match(c.expect);
        expect(actions(mutating(r))).to.deep.equal([]);
        expect(bed.proxy.mutatingCalls()).to.deep.equal([]);
        if (c.static) expect(actions(r.calls), 'found by validation: no AWS call at all').to.deep.equal([]);
      });
    }
  });
});
