/**
 * provision-vpc against moto through the fault proxy: the executor runs in
 * process (runStep), the spec is a temp copy of examples/clusters/aws-self-managed.
 * moto makes NAT gateways available at once and ignores client tokens, so
 * neither is relied on here (the crash matrix covers lost answers).
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { CreateSubnetCommand, CreateVpcCommand, DescribeRouteTablesCommand, DescribeSubnetsCommand, DescribeVpcAttributeCommand, DescribeVpcsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { AwsClients } from '../../src/core/aws.js';
import { createLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { readStepStatus } from '../../src/core/status.js';
import { runStep, type StepSummary } from '../../src/core/step-host.js';
import { provisionVpc, type ProvisionVpcStatus } from '../../executors/provision-vpc.js';
import { clientConfig } from '../support/moto.js';
import { useMotoBehindProxy, type RecordedCall } from '../support/fault-proxy.js';
import { snapshotWorld, type World } from '../support/aws-world.js';

const CLUSTER = 'aws-dev';
const REVISION = '0123456789abcdef0123456789abcdef01234567';
const EXAMPLE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'examples', 'clusters', 'aws-self-managed');
const CAPA = `sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`;
const K8S = `kubernetes.io/cluster/${CLUSTER}`;
const NETWORK_KINDS = ['vpc', 'subnet', 'internet-gateway', 'eip', 'nat-gateway', 'route-table'];
/** EC2 actions that change the network families of this step (not the security groups, load balancer or bastion). */
const NETWORK_ACTIONS = /^(CreateVpc|ModifyVpcAttribute|CreateSubnet|ModifySubnetAttribute|CreateInternetGateway|AttachInternetGateway|AllocateAddress|CreateNatGateway|CreateRouteTable|CreateRoute|ReplaceRoute|AssociateRouteTable|ReplaceRouteTableAssociation|CreateTags|Delete.*|Release.*|Detach.*|Disassociate.*)$/;

interface Run {
  exitCode: number;
  summary: StepSummary;
  calls: RecordedCall[];
  log: string;
}

describe('provision-vpc: the network of an AWSCluster against moto (through the fault proxy)', function () {
  this.timeout(180_000);
  const bed = useMotoBehindProxy();
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;
  const clusterFile = () => path.join(repo, 'clusters', 'dev', 'cluster.yaml');
  const ec2 = () => new EC2Client(clientConfig(bed.moto.endpoint));

  beforeEach(async () => {
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-vpc-repo-'));
    cpSync(EXAMPLE, path.join(repo, 'clusters', 'dev'), { recursive: true });
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-vpc-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
  });
  afterEach(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  /** Edits the example's AWSCluster in place (text replacement, so positions stay real). */
  function editCluster(from: string | RegExp, to: string): void {
    const text = readFileSync(clusterFile(), 'utf8');
    const next = text.replace(from, to);
    expect(next, `edit ${String(from)}`).to.not.equal(text);
    writeFileSync(clusterFile(), next);
  }

  async function run(opts: { dryRun?: boolean; delete?: boolean; params?: Record<string, string>; clusterPath?: string } = {}): Promise<Run> {
    const from = bed.proxy.calls.length;
    const { credentials, region } = clientConfig(bed.proxy.endpoint);
    const aws = new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { minTimeoutMs: 5, maxTimeoutMs: 50, retries: 10 } });
    const logStream = new PassThrough();
    let log = '';
    logStream.on('data', (d: Buffer) => (log += d.toString()));
    const stdout = new PassThrough();
    try {
      const { exitCode, summary } = await runStep(
        provisionVpc,
        {
          repoDir: repo,
          clusterPath: opts.clusterPath ?? 'clusters/dev',
          revision: REVISION,
          dryRun: opts.dryRun === true,
          delete: opts.delete === true,
          params: opts.params ?? {},
        },
        { aws, secrets, log: createLogger({ stream: logStream, format: 'json', level: 'info' }), stdout, outputsDir: path.join(repo, 'out') },
      );
      return { exitCode, summary, calls: bed.proxy.calls.slice(from), log };
    } finally {
      aws.destroy();
    }
  }

  const mutating = (r: Run) => r.calls.filter((c) => c.mutating);
  const reads = (r: Run) => r.calls.filter((c) => !c.mutating);
  const actions = (calls: RecordedCall[]) => calls.map((c) => c.action).sort();
  const network = (w: World) => w.resources.filter((r) => NETWORK_KINDS.includes(r.kind));
  function expectOk(r: Run): void {
    expect(r.exitCode, `${JSON.stringify(r.summary.error)}\n${r.log.slice(-3000)}`).to.equal(0);
  }

  it('an empty account, should create one VPC, six subnets, one internet gateway, three EIPs, three NAT gateways and four route tables, all tagged as owned with provenance', async () => {
    const r = await run();
    expectOk(r);
    const world = await snapshotWorld(bed.moto.endpoint);
    const counts = (kind: string) => network(world).filter((x) => x.kind === kind).length;
    expect({ vpc: counts('vpc'), subnet: counts('subnet'), igw: counts('internet-gateway'), eip: counts('eip'), nat: counts('nat-gateway'), rt: counts('route-table') }).to.deep.equal({
      vpc: 1,
      subnet: 6,
      igw: 1,
      eip: 3,
      nat: 3,
      rt: 4,
    });
    for (const res of network(world)) {
      expect(res.tags, `${res.kind} ${res.id}`).to.include({
        [CAPA]: 'owned',
        [K8S]: 'owned',
        'capflow.io/cluster': CLUSTER,
        'capflow.io/revision': REVISION,
        'capflow.io/spec': 'clusters/dev',
        team: 'platform',
        environment: 'dev',
      });
      expect(res.tags, `${res.kind} ${res.id}`).to.have.property('Name').that.matches(/^aws-dev-/);
      expect(res.tags, `${res.kind} ${res.id}`).to.have.property('sigs.k8s.io/cluster-api-provider-aws/role');
    }
    // Tagged at creation: no CreateTags call at all.
    expect(r.calls.filter((c) => c.action === 'CreateTags')).to.have.length(0);

    // Outputs.
    const out = r.summary.outputs;
    const vpcId = out['vpc-id']!;
    expect(vpcId).to.match(/^vpc-/);
    const subnets = JSON.parse(out['subnet-ids']!) as Record<string, { public: string; private: string }>;
    expect(Object.keys(subnets)).to.deep.equal(['us-east-1a', 'us-east-1b', 'us-east-1c']);
    for (const z of Object.values(subnets)) {
      expect(z.public).to.match(/^subnet-/);
      expect(z.private).to.match(/^subnet-/);
    }
    expect(Object.keys(JSON.parse(out['security-group-ids']!) as object).sort()).to.deep.equal(['apiserver-lb', 'bastion', 'controlplane', 'node']);
    expect(out['api-server-dns']).to.not.equal('');
    expect(r.summary.plan).to.include({ delete: 0 });
    expect((r.summary.plan as Record<string, number>).create).to.be.greaterThan(18);

    // The layout is CAPA's, DNS is on, routes go where they should.
    const client = ec2();
    const sns = (await client.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpcId] }] }))).Subnets!;
    expect(sns.map((s) => s.CidrBlock).sort()).to.deep.equal(['10.0.0.0/20', '10.0.128.0/18', '10.0.16.0/20', '10.0.192.0/18', '10.0.32.0/20', '10.0.64.0/18']);
    expect(sns.filter((s) => s.MapPublicIpOnLaunch).map((s) => s.CidrBlock).sort()).to.deep.equal(['10.0.0.0/20', '10.0.16.0/20', '10.0.32.0/20']);
    expect((await client.send(new DescribeVpcAttributeCommand({ VpcId: vpcId, Attribute: 'enableDnsHostnames' }))).EnableDnsHostnames?.Value).to.equal(true);
    const rts = (await client.send(new DescribeRouteTablesCommand({ Filters: [{ Name: `tag:${CAPA}`, Values: ['owned'] }] }))).RouteTables!;
    for (const rt of rts) {
      const def = rt.Routes!.find((x) => x.DestinationCidrBlock === '0.0.0.0/0')!;
      const isPublic = rt.Tags!.some((t) => t.Key === 'sigs.k8s.io/cluster-api-provider-aws/role' && t.Value === 'public');
      if (isPublic) expect(def.GatewayId).to.match(/^igw-/);
      else expect(def.NatGatewayId).to.match(/^nat-/);
      expect(rt.Associations!.length).to.equal(isPublic ? 3 : 1);
    }
    client.destroy();

    // The status secret holds what later steps need.
    const status = await readStepStatus<ProvisionVpcStatus>(secrets, CLUSTER, 'provision-vpc');
    expect(status?.vpcId).to.equal(vpcId);
    expect(status?.dnsVerifiedFor).to.equal(vpcId);
    expect(Object.keys(status!.natGatewayIds)).to.have.length(3);
    console.log(`      create: ${mutating(r).length} mutating, ${reads(r).length} read calls`);
  });

  it('a rerun after success, should make no mutating call and at most 15 reads', async () => {
    expectOk(await run());
    const again = await run();
    expectOk(again);
    expect(actions(mutating(again))).to.deep.equal([]);
    expect(reads(again).length, actions(reads(again)).join(', ')).to.be.at.most(15);
    const plan = again.summary.plan as Record<'create' | 'update' | 'delete', number>;
    expect(plan.create + plan.update + plan.delete).to.equal(0);
    console.log(`      rerun: 0 mutating, ${reads(again).length} read calls: ${actions(reads(again)).join(', ')}`);
  });

  it('the zone usage limit goes from 2 to 3, should create only the third zone (two subnets, an EIP, a NAT gateway, a route table) and keep the rest', async () => {
    editCluster('availabilityZoneUsageLimit: 3', 'availabilityZoneUsageLimit: 2');
    expectOk(await run());
    const before = network(await snapshotWorld(bed.moto.endpoint));
    expect(before.filter((x) => x.kind === 'subnet')).to.have.length(4);
    editCluster('availabilityZoneUsageLimit: 2', 'availabilityZoneUsageLimit: 3');
    const r = await run();
    expectOk(r);
    const net = mutating(r).filter((c) => NETWORK_ACTIONS.test(c.action));
    expect(actions(net)).to.deep.equal([
      'AllocateAddress',
      'AssociateRouteTable',
      'AssociateRouteTable',
      'CreateNatGateway',
      'CreateRoute',
      'CreateRouteTable',
      'CreateSubnet',
      'CreateSubnet',
      // The resources changed in place get this run's commit in their revision tag, in one call.
      'CreateTags',
      'ModifySubnetAttribute',
    ]);
    const after = network(await snapshotWorld(bed.moto.endpoint));
    for (const b of before) expect(after.map((a) => a.id), `${b.kind} ${b.id} kept`).to.include(b.id);
    expect(after.filter((x) => x.kind === 'subnet')).to.have.length(6);
    expect(after.filter((x) => x.kind === 'nat-gateway')).to.have.length(3);
    const subnets = JSON.parse(r.summary.outputs['subnet-ids']!) as Record<string, unknown>;
    expect(Object.keys(subnets)).to.deep.equal(['us-east-1a', 'us-east-1b', 'us-east-1c']);
    // And that is stable.
    const again = await run();
    expect(actions(mutating(again))).to.deep.equal([]);
  });

  it('an additional tag changes, should update only that tag, in one call per distinct change', async () => {
    expectOk(await run());
    editCluster('team: platform', 'team: infra');
    const r = await run();
    expectOk(r);
    const net = mutating(r).filter((c) => NETWORK_ACTIONS.test(c.action));
    expect(actions(net)).to.deep.equal(['CreateTags']);
    const world = network(await snapshotWorld(bed.moto.endpoint));
    for (const res of world) expect(res.tags.team, `${res.kind} ${res.id}`).to.equal('infra');
  });

  it('delete, should remove every owned resource in reverse order and leave an unowned VPC, its subnet and a shared VPC intact', async () => {
    expectOk(await run());
    const client = ec2();
    const theirs = (await client.send(new CreateVpcCommand({ CidrBlock: '10.9.0.0/16' }))).Vpc!.VpcId!;
    const theirSubnet = (await client.send(new CreateSubnetCommand({ VpcId: theirs, CidrBlock: '10.9.0.0/24', AvailabilityZone: 'us-east-1a' }))).Subnet!.SubnetId!;
    const shared = (
      await client.send(new CreateVpcCommand({ CidrBlock: '10.8.0.0/16', TagSpecifications: [{ ResourceType: 'vpc', Tags: [{ Key: CAPA, Value: 'shared' }] }] }))
    ).Vpc!.VpcId!;
    const r = await run({ delete: true });
    expectOk(r);
    const world = await snapshotWorld(bed.moto.endpoint);
    const left = world.resources.filter((x) => x.tags[CAPA] === 'owned' || x.tags[K8S] === 'owned');
    expect(left, JSON.stringify(left)).to.deep.equal([]);
    expect(world.counts['load-balancer'] ?? 0).to.equal(0);
    const ids = world.resources.map((x) => x.id);
    expect(ids).to.include.members([theirs, theirSubnet, shared]);
    // Reverse dependency order: NAT gateways before their EIPs, route tables before the IGW, subnets before the VPC.
    const order = mutating(r).map((c) => c.action);
    const first = (a: string) => order.indexOf(a);
    const last = (a: string) => order.lastIndexOf(a);
    expect(last('DeleteNatGateway')).to.be.lessThan(first('ReleaseAddress'));
    expect(last('DeleteRouteTable')).to.be.lessThan(first('DeleteInternetGateway'));
    expect(first('DetachInternetGateway')).to.be.lessThan(first('DeleteInternetGateway'));
    expect(last('DeleteSubnet')).to.be.lessThan(first('DeleteVpc'));
    expect(last('DeleteSecurityGroup')).to.be.lessThan(first('DeleteVpc'));
    expect(await readStepStatus(secrets, CLUSTER, 'provision-vpc')).to.equal(undefined);
    // Deleting again finds nothing and changes nothing.
    const again = await run({ delete: true });
    expectOk(again);
    expect(actions(mutating(again))).to.deep.equal([]);
    console.log(`      delete: ${mutating(r).length} mutating, ${reads(r).length} read calls`);
    client.destroy();
  });

  it('a subnet not owned by the cluster sits in its VPC, delete should retry DependencyViolation until the deadline and then name the subnet (exit 75)', async () => {
    expectOk(await run());
    const client = ec2();
    const vpcId = (await readStepStatus<ProvisionVpcStatus>(secrets, CLUSTER, 'provision-vpc'))!.vpcId;
    const theirs = (await client.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: '10.0.48.0/24', AvailabilityZone: 'us-east-1a' }))).Subnet!.SubnetId!;
    const r = await run({ delete: true, params: { 'dependency-timeout': '1500ms' } });
    expect(r.exitCode).to.equal(75);
    expect(r.summary.error?.code).to.equal('AWS_DEPENDENCY_VIOLATION');
    expect(r.summary.error?.message).to.include(`VPC ${vpcId}`).and.include(`subnet ${theirs}`);
    expect(r.calls.filter((c) => c.action === 'DeleteVpc').length, 'retried with backoff').to.be.greaterThan(1);
    // Everything else owned is gone; the unowned subnet is intact.
    const world = await snapshotWorld(bed.moto.endpoint);
    expect(world.resources.filter((x) => x.tags[CAPA] === 'owned').map((x) => x.kind)).to.deep.equal(['vpc']);
    expect(world.resources.map((x) => x.id)).to.include(theirs);
    client.destroy();
  });

  it('the cluster folder is gone, delete with cluster-name and region parameters, should still remove everything owned', async () => {
    expectOk(await run());
    rmSync(path.join(repo, 'clusters', 'dev'), { recursive: true });
    const refused = await run({ delete: true });
    expect(refused.exitCode).to.equal(2);
    expect(actions(mutating(refused))).to.deep.equal([]);
    const r = await run({ delete: true, params: { 'cluster-name': CLUSTER, region: 'us-east-1' } });
    expectOk(r);
    const world = await snapshotWorld(bed.moto.endpoint);
    expect(world.resources.filter((x) => x.tags[CAPA] === 'owned')).to.deep.equal([]);
  });

  it('a user-supplied VPC and subnets, should be used, never tagged as owned and never deleted', async () => {
    const client = ec2();
    const vpcId = (await client.send(new CreateVpcCommand({ CidrBlock: '10.20.0.0/16', TagSpecifications: [{ ResourceType: 'vpc', Tags: [{ Key: 'Name', Value: 'corp' }] }] }))).Vpc!.VpcId!;
    const pub = (await client.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: '10.20.0.0/24', AvailabilityZone: 'us-east-1a' }))).Subnet!.SubnetId!;
    const priv = (await client.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: '10.20.1.0/24', AvailabilityZone: 'us-east-1a' }))).Subnet!.SubnetId!;
    editCluster(
      / {4}vpc:\n {6}cidrBlock: 10\.0\.0\.0\/16\n {6}availabilityZoneUsageLimit: 3\n {6}availabilityZoneSelection: Ordered\n/,
      `    vpc:\n      id: ${vpcId}\n    subnets:\n    - id: ${pub}\n      isPublic: true\n    - id: ${priv}\n`,
    );
    const r = await run();
    expectOk(r);
    expect(r.summary.outputs['vpc-id']).to.equal(vpcId);
    expect(JSON.parse(r.summary.outputs['subnet-ids']!)).to.deep.equal({ 'us-east-1a': { public: pub, private: priv } });
    const made = actions(mutating(r).filter((c) => NETWORK_ACTIONS.test(c.action)));
    expect(made, 'no network resource made or tagged').to.deep.equal([]);
    const tagsOf = async () => ({
      vpc: (await client.send(new DescribeVpcsCommand({ VpcIds: [vpcId] }))).Vpcs![0]!.Tags,
      subnets: (await client.send(new DescribeSubnetsCommand({ SubnetIds: [pub, priv] }))).Subnets!.map((s) => s.Tags ?? []),
    });
    expect(await tagsOf()).to.deep.equal({ vpc: [{ Key: 'Name', Value: 'corp' }], subnets: [[], []] });
    expectOk(await run({ delete: true }));
    expect(await tagsOf()).to.deep.equal({ vpc: [{ Key: 'Name', Value: 'corp' }], subnets: [[], []] });
    const world = await snapshotWorld(bed.moto.endpoint);
    expect(world.resources.filter((x) => x.tags[CAPA] === 'owned')).to.deep.equal([]);
    client.destroy();
  });

  it('--dry-run on an empty account, should print a plan of creates and make no mutating call; after a create, a plan of no changes', async () => {
    const r = await run({ dryRun: true });
    expectOk(r);
    expect(actions(mutating(r))).to.deep.equal([]);
    expect(r.log).to.match(/create\s+vpc\s+aws-dev-vpc/);
    expect(r.log).to.match(/create\s+nat-gateway\s+aws-dev-nat-us-east-1c/);
    const plan = r.summary.plan as Record<string, number>;
    expect(plan.create).to.be.greaterThan(18);
    expect(r.summary.outputs.changes, 'the changes output counts what the plan would make').to.equal(String(plan.create! + plan.update! + plan.delete!));
    expect((await snapshotWorld(bed.moto.endpoint)).resources).to.deep.equal([]);
    expect(await readStepStatus(secrets, CLUSTER, 'provision-vpc')).to.equal(undefined);

    expectOk(await run());
    const after = await run({ dryRun: true });
    expectOk(after);
    expect(actions(mutating(after))).to.deep.equal([]);
    const p2 = after.summary.plan as Record<'create' | 'update' | 'delete', number>;
    expect(p2.create + p2.update + p2.delete).to.equal(0);
    expect(after.summary.outputs.changes, 'no drift: cluster-plan reports 0 changes').to.equal('0');
    const del = await run({ dryRun: true, delete: true });
    expectOk(del);
    expect(actions(mutating(del))).to.deep.equal([]);
    expect((del.summary.plan as Record<string, number>).delete).to.be.greaterThan(18);
  });

  describe('bad input fails before any mutating call, naming file:line:column of the field', () => {
    // `static`: found by validation, which every command, step and the reconciler run, so not one AWS call is made.
    const cases: Array<{ name: string; edit: [string | RegExp, string]; expect: RegExp; static?: boolean }> = [
      {
        name: 'a /28 VPC is too small for a public and a private subnet per zone',
        edit: ['cidrBlock: 10.0.0.0/16', 'cidrBlock: 10.0.0.0/28'],
        expect: /clusters\/dev\/cluster\.yaml:\d+:18 AWSCluster\/aws-dev spec\.network\.vpc\.cidrBlock: 10\.0\.0\.0\/28 is too small for a public and a private subnet in each of 3 zones: they would be \/32/,
        static: true,
      },
      {
        name: 'a listed subnet is smaller than AWS allows (/30)',
        edit: [
          '      availabilityZoneSelection: Ordered\n',
          '      availabilityZoneSelection: Ordered\n    subnets:\n    - id: a-public\n      availabilityZone: us-east-1a\n      cidrBlock: 10.0.0.0/30\n      isPublic: true\n',
        ],
        expect: /spec\.network\.subnets\[0\]\.cidrBlock: a subnet block must be between \/16 and \/28, not \/30/,
        static: true,
      },
      {
        name: 'an ingress rule names the CIDR 999.0.0.0/8',
        edit: ['    healthCheckProtocol: HTTPS\n', '    healthCheckProtocol: HTTPS\n    ingressRules:\n    - description: admins\n      protocol: tcp\n      fromPort: 6443\n      toPort: 6443\n      cidrBlocks:\n      - 999.0.0.0/8\n'],
        expect: /clusters\/dev\/cluster\.yaml:\d+:9 AWSCluster\/aws-dev spec\.controlPlaneLoadBalancer\.ingressRules\[0\]\.cidrBlocks\[0\]: "999\.0\.0\.0\/8" is not a CIDR block/,
        static: true,
      },
      {
        name: 'the region does not exist (us-east-1x)',
        edit: ['region: us-east-1\n', 'region: us-east-1x\n'],
        expect: /clusters\/dev\/cluster\.yaml:\d+:11 AWSCluster\/aws-dev spec\.region: "us-east-1x" is not an AWS region name/,
        static: true,
      },
      {
        name: 'the region is not a region name at all',
        edit: ['region: us-east-1\n', 'region: "not a region"\n'],
        expect: /spec\.region: "not a region" is not an AWS region name/,
        static: true,
      },
      {
        name: 'two listed subnets overlap',
        edit: [
          '      availabilityZoneSelection: Ordered\n',
          '      availabilityZoneSelection: Ordered\n    subnets:\n    - id: a-public\n      availabilityZone: us-east-1a\n      cidrBlock: 10.0.0.0/20\n      isPublic: true\n    - id: a-private\n      availabilityZone: us-east-1a\n      cidrBlock: 10.0.8.0/24\n',
        ],
        expect: /clusters\/dev\/cluster\.yaml:\d+:18 AWSCluster\/aws-dev spec\.network\.subnets\[1\]\.cidrBlock: 10\.0\.8\.0\/24 overlaps 10\.0\.0\.0\/20/,
        static: true,
      },
      {
        name: 'a listed subnet lies outside the VPC block',
        edit: [
          '      availabilityZoneSelection: Ordered\n',
          '      availabilityZoneSelection: Ordered\n    subnets:\n    - id: a-public\n      availabilityZone: us-east-1a\n      cidrBlock: 10.1.0.0/20\n      isPublic: true\n',
        ],
        expect: /clusters\/dev\/cluster\.yaml:\d+:18 AWSCluster\/aws-dev spec\.network\.subnets\[0\]\.cidrBlock: 10\.1\.0\.0\/20 is outside the VPC block 10\.0\.0\.0\/16/,
        static: true,
      },
      {
        name: 'the region has fewer zones than the usage limit',
        edit: ['availabilityZoneUsageLimit: 3', 'availabilityZoneUsageLimit: 9'],
        expect: /clusters\/dev\/cluster\.yaml:\d+:35 AWSCluster\/aws-dev spec\.network\.vpc\.availabilityZoneUsageLimit: region us-east-1 has 6 availability zones, fewer than the 9/,
      },
      {
        name: 'a listed subnet names a zone the region does not have',
        edit: [
          '      availabilityZoneSelection: Ordered\n',
          '      availabilityZoneSelection: Ordered\n    subnets:\n    - id: a-public\n      availabilityZone: eu-west-1a\n      cidrBlock: 10.0.0.0/20\n      isPublic: true\n',
        ],
        expect: /clusters\/dev\/cluster\.yaml:\d+:25 AWSCluster\/aws-dev spec\.network\.subnets\[0\]\.availabilityZone: availability zone eu-west-1a is not in region us-east-1/,
        static: true,
      },
      {
        name: 'the user-supplied VPC does not exist',
        edit: [
          / {6}cidrBlock: 10\.0\.0\.0\/16\n/,
          '      id: vpc-0123456789abcdef0\n',
        ],
        expect: /clusters\/dev\/cluster\.yaml:\d+:11 AWSCluster\/aws-dev spec\.network\.vpc\.id: VPC vpc-0123456789abcdef0 does not exist/,
      },
    ];
    for (const c of cases) {
      it(`${c.name}, should exit 2 with the field's location and make no mutating call`, async () => {
        if (c.name.startsWith('the user-supplied')) {
          editCluster(c.edit[0], c.edit[1]);
          editCluster('      availabilityZoneSelection: Ordered\n', '      availabilityZoneSelection: Ordered\n    subnets:\n    - id: subnet-0123456789abcdef0\n');
        } else {
          editCluster(c.edit[0], c.edit[1]);
        }
        const r = await run();
        expect(r.exitCode, r.log.slice(-2000)).to.equal(2);
        expect(r.summary.error?.code).to.equal('SPEC_INVALID');
        expect(r.summary.error?.message).to.match(c.expect);
        expect(actions(mutating(r))).to.deep.equal([]);
        if (c.static) expect(actions(r.calls), 'found by validation: no AWS call at all').to.deep.equal([]);
      });
    }
  });

  describe('conflicts exit 3 and change nothing', () => {
    it('two VPCs are tagged as owned by the cluster, should refuse to pick one', async () => {
      const client = ec2();
      const tags = [{ ResourceType: 'vpc' as const, Tags: [{ Key: CAPA, Value: 'owned' }] }];
      await client.send(new CreateVpcCommand({ CidrBlock: '10.0.0.0/16', TagSpecifications: tags }));
      await client.send(new CreateVpcCommand({ CidrBlock: '10.0.0.0/16', TagSpecifications: tags }));
      const r = await run();
      expect(r.exitCode).to.equal(3);
      expect(r.summary.error?.code).to.equal('AWS_DUPLICATE_RESOURCE');
      expect(actions(mutating(r))).to.deep.equal([]);
      client.destroy();
    });

    it('a VPC tagged shared for the cluster that the spec does not name, should refuse with how to adopt it', async () => {
      const client = ec2();
      await client.send(new CreateVpcCommand({ CidrBlock: '10.0.0.0/16', TagSpecifications: [{ ResourceType: 'vpc', Tags: [{ Key: CAPA, Value: 'shared' }] }] }));
      const r = await run();
      expect(r.exitCode).to.equal(3);
      expect(r.summary.error?.code).to.equal('AWS_NOT_OWNED');
      expect(r.summary.error?.hint).to.match(/tag it sigs\.k8s\.io\/cluster-api-provider-aws\/cluster\/aws-dev=owned/);
      expect(actions(mutating(r))).to.deep.equal([]);
      client.destroy();
    });

    it('a subnet not owned by the cluster holds a block the spec lists in the cluster VPC, should refuse to use it', async () => {
      expectOk(await run());
      const client = ec2();
      const vpcId = (await readStepStatus<ProvisionVpcStatus>(secrets, CLUSTER, 'provision-vpc'))!.vpcId;
      await client.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: '10.0.48.0/20', AvailabilityZone: 'us-east-1d' }));
      editCluster(
        '      availabilityZoneSelection: Ordered\n',
        '      availabilityZoneSelection: Ordered\n    subnets:\n    - id: extra\n      availabilityZone: us-east-1d\n      cidrBlock: 10.0.48.0/20\n      isPublic: true\n',
      );
      const r = await run();
      expect(r.exitCode).to.equal(3);
      expect(r.summary.error?.code).to.equal('AWS_NOT_OWNED');
      expect(actions(mutating(r))).to.deep.equal([]);
      client.destroy();
    });
  });

  it('30% of calls are throttled, should still converge to the same network with no duplicates', async () => {
    bed.proxy.setFaults({ throttleRate: 0.3, seed: 7 });
    const r = await run();
    expectOk(r);
    expect(r.calls.filter((c) => c.faulted === 'throttle').length).to.be.greaterThan(5);
    bed.proxy.setFaults({});
    const world = network(await snapshotWorld(bed.moto.endpoint));
    const count = (k: string) => world.filter((x) => x.kind === k).length;
    expect([count('vpc'), count('subnet'), count('internet-gateway'), count('eip'), count('nat-gateway'), count('route-table')]).to.deep.equal([1, 6, 1, 3, 3, 4]);
    const again = await run();
    expectOk(again);
    expect(actions(mutating(again))).to.deep.equal([]);
  });
});
