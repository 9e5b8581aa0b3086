/**
 * Drift per field, with its place in Git: hand edits made in moto behind the steps' backs (a rule
 * added to a security group, an instance terminated, an Auto Scaling group's desired capacity
 * changed, a tag removed) are found by one plan (provision-vpc and launch-nodes with --dry-run, as
 * cluster-plan runs them), each entry naming the spec field and its file:line; one apply reverts
 * them; the next plan is clean. `capflow status CLUSTER --local` lists the entries and, per resource
 * family, the commit whose run last wrote it (the revision tags). The aws-machinepool example
 * (control plane instances, a MachinePool) with placeholder user data: no bootstrap here.
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { AutoScalingClient, DescribeAutoScalingGroupsCommand, SetDesiredCapacityCommand } from '@aws-sdk/client-auto-scaling';
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateKeyPairCommand,
  DeleteTagsCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeSecurityGroupsCommand,
  DescribeVpcsCommand,
  EC2Client,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { AwsClients } from '../../src/core/aws.js';
import { driftReportsOf, type DriftEntry, type DriftReport } from '../../src/core/drift.js';
import type { Executor } from '../../src/core/executor.js';
import { createLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { statusSecretName } from '../../src/core/status.js';
import { runStep } from '../../src/core/step-host.js';
import { bootstrapSecretName } from '../../executors/aws-step.js';
import { launchNodes } from '../../executors/launch-nodes.js';
import { provisionVpc } from '../../executors/provision-vpc.js';
import { spawnCapflow } from '../support/cli.js';
import { clientConfig } from '../support/moto.js';
import { useMotoBehindProxy } from '../support/fault-proxy.js';
import { REPO_ROOT } from '../support/tools.js';

const CLUSTER = 'aws-pool';
const POOL = 'aws-pool-mp-0';
const REGION = 'eu-west-1';
const FIRST = 'a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0';
const SECOND = 'f0e9d8c7b6a5f4e3d2c1f0e9d8c7b6a5f4e3d2c1';
const direct = (endpoint: string) => ({ ...clientConfig(endpoint), region: REGION });

/** 1-based line of the first line of `file` matching `re`. */
function lineOf(file: string, re: RegExp): number {
  const i = readFileSync(file, 'utf8').split('\n').findIndex((l) => re.test(l));
  if (i < 0) throw new Error(`${re} not in ${file}`);
  return i + 1;
}

describe('drift per field with its file:line: hand edits found by one plan, reverted by one apply, listed by capflow status (moto; placeholder user data)', function () {
  this.timeout(240_000);
  const bed = useMotoBehindProxy({ resetEach: false });
  let repo: string;
  let dir: string;
  let secretsDir: string;
  let ec2: EC2Client;
  let asg: AutoScalingClient;

  async function step(executor: Executor, opts: { dryRun?: boolean; revision?: string } = {}): Promise<{ exitCode: number; mutating: string[]; log: string }> {
    const from = bed.proxy.calls.length;
    const { credentials, region } = clientConfig(bed.proxy.endpoint);
    const aws = new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { minTimeoutMs: 5, maxTimeoutMs: 50 } });
    let log = '';
    const logStream = new PassThrough().on('data', (d: Buffer) => (log += d.toString()));
    try {
      const { exitCode } = await runStep(
        executor,
        {
          repoDir: repo,
          clusterPath: 'clusters/pool',
          revision: opts.revision ?? FIRST,
          dryRun: opts.dryRun ?? false,
          delete: false,
          params: executor === provisionVpc ? {} : { 'poll-interval': '50ms' },
        },
        { aws, secrets: new LocalSecretStore(secretsDir), log: createLogger({ stream: logStream, format: 'json' }), stdout: new PassThrough() },
      );
      return { exitCode, mutating: bed.proxy.calls.slice(from).filter((c) => c.mutating).map((c) => c.action), log };
    } finally {
      aws.destroy();
    }
  }

  /** cluster-plan's AWS half, or cluster-apply's: provision-vpc, then launch-nodes. */
  async function run(opts: { dryRun?: boolean; revision?: string }): Promise<{ mutating: string[]; reports: DriftReport[] }> {
    const mutating: string[] = [];
    for (const executor of [provisionVpc, launchNodes]) {
      const r = await step(executor, opts);
      expect(r.exitCode, r.log.slice(-3000)).to.equal(0);
      mutating.push(...r.mutating);
    }
    const reports = driftReportsOf(await new LocalSecretStore(secretsDir).get(statusSecretName(CLUSTER)));
    return { mutating, reports };
  }

  const changesOf = (reports: DriftReport[]): DriftEntry[] => reports.flatMap((r) => r.changes);

  before(async () => {
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-drift-repo-'));
    dir = path.join(repo, 'clusters', 'pool');
    cpSync(path.join(REPO_ROOT, 'examples', 'clusters', 'aws-machinepool'), dir, { recursive: true });
    // A tag for every resource, from the spec, to remove by hand.
    writeFileSync(path.join(dir, 'cluster.yaml'), `${readFileSync(path.join(dir, 'cluster.yaml'), 'utf8').trimEnd()}\n  additionalTags:\n    team: platform\n`);
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-drift-secrets-'));
    ec2 = new EC2Client(direct(bed.moto.endpoint));
    asg = new AutoScalingClient(direct(bed.moto.endpoint));
    // Pin an AMI moto has and drop the instance profiles (no IAM here), as launch-nodes-pools does.
    const ami = (await ec2.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }))).Images![0]!.ImageId!;
    for (const f of ['control-plane.yaml', 'workers.yaml']) {
      const file = path.join(dir, f);
      writeFileSync(file, readFileSync(file, 'utf8').replace(/(\n( +)instanceType: (t3|m6i)\.large\n)/, `$1$2ami:\n$2  id: ${ami}\n`).replace(/\n +iamInstanceProfile: .*/g, ''));
    }
    await ec2.send(new CreateKeyPairCommand({ KeyName: 'capflow-dev' }));
    await new LocalSecretStore(secretsDir).put(bootstrapSecretName(CLUSTER), {
      'control-plane': '#cloud-config\n# placeholder user data: no bootstrap here\n',
      [POOL]: '#cloud-config\n# placeholder user data: no bootstrap here\n',
    });
    await run({});
  });
  after(() => {
    ec2?.destroy();
    asg?.destroy();
    if (repo) rmSync(repo, { recursive: true, force: true });
    if (secretsDir) rmSync(secretsDir, { recursive: true, force: true });
  });

  async function vpc() {
    return (await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: 'tag:capflow.io/cluster', Values: [CLUSTER] }] }))).Vpcs![0]!;
  }
  async function nodeGroup() {
    return (await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: [`${CLUSTER}-node`] }] }))).SecurityGroups![0]!;
  }
  async function controlPlanes() {
    const r = await ec2.send(
      new DescribeInstancesCommand({
        Filters: [
          { Name: 'tag:capflow.io/cluster', Values: [CLUSTER] },
          { Name: 'tag:sigs.k8s.io/cluster-api-provider-aws/role', Values: ['control-plane'] },
          { Name: 'instance-state-name', Values: ['pending', 'running'] },
        ],
      }),
    );
    return (r.Reservations ?? []).flatMap((x) => x.Instances ?? []);
  }
  const tag = (tags: Array<{ Key?: string; Value?: string }> | undefined, key: string) => tags?.find((t) => t.Key === key)?.Value;

  it('a plan after the create finds nothing, and records the provenance of every family: the first commit', async () => {
    const { mutating, reports } = await run({ dryRun: true });
    expect(mutating).to.deep.equal([]);
    expect(reports.map((r) => [r.step, r.mode, r.changes.length])).to.deep.equal([
      ['launch-nodes', 'plan', 0],
      ['provision-vpc', 'plan', 0],
    ]);
    const provenance = reports.find((r) => r.step === 'provision-vpc')!.provenance!;
    for (const family of ['vpc', 'subnet', 'internet-gateway', 'nat-gateway', 'route-table', 'security-group', 'instance', 'launch-template']) {
      expect(provenance[family], family).to.have.keys([FIRST]);
    }
    // The API server's load balancer (the example's is a network load balancer) and the MachinePool's Auto Scaling group.
    expect(provenance['load-balancer']).to.deep.equal({ [FIRST]: 1 });
    expect(reports.find((r) => r.step === 'launch-nodes')!.provenance).to.deep.equal({ 'autoscaling-group': { [FIRST]: 1 } });
  });

  it('four hand edits are found by one plan, each at its spec field and file:line, with no mutating call', async () => {
    const node = await nodeGroup();
    await ec2.send(
      new AuthorizeSecurityGroupIngressCommand({
        GroupId: node.GroupId,
        IpPermissions: [{ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '203.0.113.0/24', Description: 'debugging, by hand' }] }],
      }),
    );
    const [cp] = await controlPlanes();
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [cp!.InstanceId!] }));
    await asg.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: POOL, DesiredCapacity: 5 }));
    await ec2.send(new DeleteTagsCommand({ Resources: [(await vpc()).VpcId!], Tags: [{ Key: 'team' }] }));

    const { mutating, reports } = await run({ dryRun: true });
    expect(mutating, 'a plan changes nothing').to.deep.equal([]);
    const changes = changesOf(reports);
    const at = (file: string, re: RegExp) => `clusters/pool/${file}:${lineOf(path.join(dir, file), re)}`;
    const find = (resource: string, detail: RegExp) => {
      const e = changes.find((c) => c.resource === resource && detail.test(c.detail ?? ''));
      expect(e, `${resource} ${detail} in ${JSON.stringify(changes, null, 1)}`).to.not.equal(undefined);
      return e!;
    };
    // No field holds a rule added by hand: the entry names where it would be written to keep it (its nearest written parent's line).
    expect(find('security-group-rules', /^revoke tcp 22 from 203\.0\.113\.0\/24/)).to.include({
      field: `AWSCluster/${CLUSTER} spec.network.additionalNodeIngressRules`,
      source: at('cluster.yaml', /^ {2}network:/),
    });
    expect(find('vpc', /tags team=platform/)).to.include({ field: `AWSCluster/${CLUSTER} spec.additionalTags.team`, source: at('cluster.yaml', /^ {4}team: platform/) });
    expect(find('machine', /in eu-west-1/)).to.include({ action: 'create', field: `KubeadmControlPlane/${CLUSTER}-control-plane spec.replicas`, source: at('control-plane.yaml', /^ {2}replicas: 1/) });
    expect(find('autoscaling-group', /^desired 5 -> 3$/)).to.include({ field: `MachinePool/${POOL} spec.replicas`, source: at('workers.yaml', /^ {2}replicas: 3/) });
    expect(changes, `nothing else: ${JSON.stringify(changes, null, 1)}`).to.have.length(4);

    const status = await spawnCapflow(['status', CLUSTER, '--local'], { env: { ...process.env, CAPFLOW_SECRETS_DIR: secretsDir } }).done;
    expect(status.code, status.stderr).to.equal(0);
    expect(status.stdout).to.contain(`${CLUSTER} provision-vpc: 2 differences (plan of ${FIRST.slice(0, 7)}`);
    expect(status.stdout).to.contain(`${CLUSTER} launch-nodes: 2 differences`);
    expect(status.stdout).to.match(new RegExp(`autoscaling-group +${POOL} +${POOL} +MachinePool/${POOL} spec\\.replicas +clusters/pool/workers\\.yaml:\\d+ +desired 5 -> 3`));
    expect(status.stdout).to.match(new RegExp(`vpc +${FIRST.slice(0, 7)} \\(1\\)`));
  });

  it('one apply reverts them all; the next plan is clean, and the resources it changed carry the new commit', async () => {
    const { mutating } = await run({ revision: SECOND });
    expect(mutating).to.include.members(['RevokeSecurityGroupIngress', 'CreateTags', 'RunInstances', 'UpdateAutoScalingGroup']);

    expect(tag((await vpc()).Tags, 'team')).to.equal('platform');
    expect(tag((await vpc()).Tags, 'capflow.io/revision')).to.equal(SECOND);
    const node = await nodeGroup();
    expect(JSON.stringify(node.IpPermissions)).to.not.contain('203.0.113.0/24');
    expect(tag(node.Tags, 'capflow.io/revision')).to.equal(SECOND);
    expect(await controlPlanes()).to.have.length(1);
    const group = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [POOL] }))).AutoScalingGroups![0]!;
    expect(group.DesiredCapacity).to.equal(3);

    const after = await run({ dryRun: true, revision: SECOND });
    expect(after.mutating).to.deep.equal([]);
    expect(changesOf(after.reports)).to.deep.equal([]);
    const provenance = after.reports.find((r) => r.step === 'provision-vpc')!.provenance!;
    expect(provenance.vpc).to.deep.equal({ [SECOND]: 1 });
    expect(provenance['security-group']).to.include({ [SECOND]: 1 });
    expect(provenance.subnet).to.deep.equal({ [FIRST]: 6 });
    expect(provenance['load-balancer']).to.deep.equal({ [FIRST]: 1 });
    // The group whose desired capacity the apply put back names the second commit.
    expect(after.reports.find((r) => r.step === 'launch-nodes')!.provenance).to.deep.equal({ 'autoscaling-group': { [SECOND]: 1 } });
    expect(tag(group.Tags, 'capflow.io/revision')).to.equal(SECOND);
  });
});
