/**
 * launch-nodes against moto through the fault proxy, in process (runStep). Each test provisions the
 * example cluster's network first (provision-vpc, in process; its calls are not counted), writes a
 * placeholder bootstrap secret (there is no kubeadm-init step yet) and pins the templates' AMI to
 * one moto knows. moto makes instances running at once and ignores client tokens.
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { CreateImageCommand, CreateKeyPairCommand, DescribeImagesCommand, EC2Client, RunInstancesCommand, TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import { DescribeTargetHealthCommand, ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { AwsClients } from '../../src/core/aws.js';
import { createLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { readStepStatus } from '../../src/core/status.js';
import type { Executor } from '../../src/core/executor.js';
import { runStep, type StepSummary } from '../../src/core/step-host.js';
import { provisionVpc, type ProvisionVpcStatus } from '../../executors/provision-vpc.js';
import { bootstrapSecretName } from '../../executors/aws-step.js';
import { launchNodes, makeLaunchNodes, type LaunchNodesStatus, type MachineRecord } from '../../executors/launch-nodes.js';
import { clientConfig } from '../support/moto.js';
import type { Machine } from '../../src/aws/instances.js';
import type { HealthVerdict } from '../../src/aws/machine-health.js';
import { useMotoBehindProxy, type RecordedCall } from '../support/fault-proxy.js';
import { snapshotWorld } from '../support/aws-world.js';

const CLUSTER = 'aws-dev';
const REVISION = '0123456789abcdef0123456789abcdef01234567';
const EXAMPLE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'examples', 'clusters', 'aws-self-managed');
const CAPA = `sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`;

interface Run {
  exitCode: number;
  summary: StepSummary;
  calls: RecordedCall[];
  log: string;
  machines: MachineRecord[];
}

describe('launch-nodes: control plane and MachineDeployment machines against moto (placeholder user data: no bootstrap step yet)', function () {
  this.timeout(180_000);
  const bed = useMotoBehindProxy();
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;
  let vpc: ProvisionVpcStatus;
  const file = (f: string) => path.join(repo, 'clusters', 'dev', f);
  const ec2 = () => new EC2Client(clientConfig(bed.moto.endpoint));

  function edit(f: string, from: string | RegExp, to: string): void {
    const text = readFileSync(file(f), 'utf8');
    const next = text.replace(from, to);
    expect(next, `edit ${String(from)}`).to.not.equal(text);
    writeFileSync(file(f), next);
  }

  async function runExecutor(executor: Executor, opts: { dryRun?: boolean; delete?: boolean; params?: Record<string, string> } = {}): Promise<Run> {
    const from = bed.proxy.calls.length;
    const { credentials, region } = clientConfig(bed.proxy.endpoint);
    const aws = new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { minTimeoutMs: 5, maxTimeoutMs: 50, retries: 12 } });
    const logStream = new PassThrough();
    let log = '';
    logStream.on('data', (d: Buffer) => (log += d.toString()));
    const stdout = new PassThrough();
    const outputsDir = path.join(repo, 'out');
    try {
      const { exitCode, summary } = await runStep(
        executor,
        { repoDir: repo, clusterPath: 'clusters/dev', revision: REVISION, dryRun: opts.dryRun === true, delete: opts.delete === true, params: { ...(executor === provisionVpc ? {} : { 'poll-interval': '50ms' }), ...(opts.params ?? {}) } },
        { aws, secrets, log: createLogger({ stream: logStream, format: 'json', level: 'info' }), stdout, outputsDir },
      );
      let machines: MachineRecord[] = [];
      try {
        machines = JSON.parse(readFileSync(path.join(outputsDir, 'machines'), 'utf8')) as MachineRecord[];
      } catch {
        machines = [];
      }
      return { exitCode, summary, calls: bed.proxy.calls.slice(from), log, machines };
    } finally {
      aws.destroy();
    }
  }
  const run = (opts: Parameters<typeof runExecutor>[1] = {}) => runExecutor(launchNodes, opts);

  const mutating = (r: Run) => r.calls.filter((c) => c.mutating);
  const reads = (r: Run) => r.calls.filter((c) => !c.mutating);
  const count = (r: Run, action: string) => r.calls.filter((c) => c.action === action && c.status === 200).length;
  function expectOk(r: Run): void {
    expect(r.exitCode, `${JSON.stringify(r.summary.error)}\n${r.log.slice(-3000)}`).to.equal(0);
  }
  async function liveInstances() {
    const world = await snapshotWorld(bed.moto.endpoint);
    return world.resources.filter((x) => x.kind === 'instance');
  }

  /** IAM's CreateInstanceProfile straight to moto (there is no IAM client among our dependencies; moto does not check signatures). */
  async function createInstanceProfile(name: string): Promise<void> {
    const res = await fetch(bed.moto.endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: 'AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0',
      },
      body: new URLSearchParams({ Action: 'CreateInstanceProfile', Version: '2010-05-08', InstanceProfileName: name }).toString(),
    });
    expect(res.status, await res.text()).to.equal(200);
  }

  beforeEach(async function () {
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-nodes-repo-'));
    cpSync(EXAMPLE, path.join(repo, 'clusters', 'dev'), { recursive: true });
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-nodes-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
    const client = ec2();
    try {
      const images = await client.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }));
      const ami = images.Images![0]!.ImageId!;
      for (const f of ['control-plane.yaml', 'workers.yaml']) {
        writeFileSync(file(f), readFileSync(file(f), 'utf8').replace(/(\n {6}instanceType: .*\n)/g, `$1      ami:\n        id: ${ami}\n`));
      }
      await client.send(new CreateKeyPairCommand({ KeyName: 'capflow-dev' }));
      for (const profile of ['control-plane.cluster-api-provider-aws.sigs.k8s.io', 'nodes.cluster-api-provider-aws.sigs.k8s.io']) await createInstanceProfile(profile);
    } finally {
      client.destroy();
    }
    const net = await runExecutor(provisionVpc);
    expectOk(net);
    vpc = (await readStepStatus<ProvisionVpcStatus>(secrets, CLUSTER, 'provision-vpc'))!;
    await secrets.put(bootstrapSecretName(CLUSTER), {
      'control-plane': '#cloud-config\n# placeholder user data: no bootstrap step yet\n',
      'aws-dev-md-0': '#cloud-config\n# placeholder\n',
      'aws-dev-md-spot': '#cloud-config\n# placeholder\n',
    });
    bed.proxy.reset();
  });
  afterEach(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  it('placeholder user data: no bootstrap step yet — creates 3 control plane machines and both MachineDeployments spread over the AZs, tagged, the control plane registered with the API target group', async () => {
    const r = await run();
    expectOk(r);
    const cp = r.machines.filter((m) => m.role === 'control-plane');
    const md0 = r.machines.filter((m) => m.group === 'aws-dev-md-0');
    const spot = r.machines.filter((m) => m.group === 'aws-dev-md-spot');
    expect([cp.length, md0.length, spot.length]).to.deep.equal([3, 3, 2]);
    const azs = [...new Set(vpc.subnets.filter((s) => !s.public).map((s) => s.az))];
    expect(cp.map((m) => m.az).sort()).to.deep.equal([...azs].sort());
    expect(md0.map((m) => m.az).sort()).to.deep.equal([...azs].sort());
    expect(new Set(spot.map((m) => m.az)).size).to.equal(2);
    for (const m of r.machines) {
      expect(m.state).to.equal('running');
      expect(m.name).to.match(new RegExp(`^${m.role === 'control-plane' ? 'aws-dev-control-plane' : m.group}-${m.templateHash}-\\d+$`));
      expect(m.privateIp).to.not.equal('');
    }
    expect(new Set(r.machines.map((m) => m.name)).size).to.equal(8);
    // One RunInstances per group and AZ: 3 + 3 + 2.
    expect(count(r, 'RunInstances')).to.equal(8);
    const instances = await liveInstances();
    expect(instances).to.have.length(8);
    for (const i of instances) {
      expect(i.tags).to.include({ [CAPA]: 'owned', 'capflow.io/cluster': CLUSTER, 'capflow.io/revision': REVISION, 'capflow.io/spec': 'clusters/dev' });
      expect(i.tags).to.have.keys(...Object.keys(i.tags));
      expect(i.tags['capflow.io/machine-group']).to.be.a('string');
      expect(i.tags['capflow.io/template-hash']).to.match(/^[0-9a-f]{10}$/);
      expect(i.tags['capflow.io/failure-domain']).to.match(/^us-east-1[a-z]$/);
      expect(i.tags['sigs.k8s.io/cluster-api-provider-aws/role']).to.be.oneOf(['control-plane', 'node']);
    }
    const elbv2 = new ElasticLoadBalancingV2Client(clientConfig(bed.moto.endpoint));
    try {
      const health = await elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: vpc.targetGroupArn }));
      expect((health.TargetHealthDescriptions ?? []).map((d) => d.Target!.Id).sort()).to.deep.equal(cp.map((m) => m.instanceId).sort());
    } finally {
      elbv2.destroy();
    }
    // IMDSv2 required; user data from the bootstrap secret; the inventory in the status secret.
    const launches = r.calls.filter((c) => c.action === 'RunInstances');
    for (const c of launches) {
      expect(c.params?.['MetadataOptions.HttpTokens']).to.equal('required');
      expect(c.params?.ClientToken).to.match(/^capflow-/);
    }
    const status = await readStepStatus<LaunchNodesStatus>(secrets, CLUSTER, 'launch-nodes');
    expect(status?.machines.map((m) => m.name).sort()).to.deep.equal(r.machines.map((m) => m.name).sort());
    expect(r.log).to.include('Machines:');
    expect(r.summary.plan).to.include({ create: 8 });
  });

  it('placeholder user data: no bootstrap step yet — a rerun makes zero mutating calls and at most 5 reads', async () => {
    expectOk(await run());
    const again = await run();
    expectOk(again);
    expect(mutating(again).map((c) => c.action)).to.deep.equal([]);
    expect(reads(again).length).to.be.at.most(5);
    expect(again.machines).to.have.length(8);
  });

  it('spot machines are launched with spot market options and the max price', async () => {
    const r = await run();
    expectOk(r);
    const spot = r.calls.filter((c) => c.action === 'RunInstances' && c.params?.['TagSpecification.1.Tag.1.Key'] !== undefined && JSON.stringify(c.params).includes('aws-dev-md-spot'));
    expect(spot.length).to.equal(2);
    for (const c of spot) {
      expect(c.params).to.include({ 'InstanceMarketOptions.MarketType': 'spot', 'InstanceMarketOptions.SpotOptions.MaxPrice': '0.05' });
    }
    const onDemand = r.calls.filter((c) => c.action === 'RunInstances' && !JSON.stringify(c.params).includes('aws-dev-md-spot'));
    for (const c of onDemand) expect(c.params?.['InstanceMarketOptions.MarketType']).to.equal(undefined);
  });

  for (const policy of ['Oldest', 'Newest', 'Random'] as const) {
    it(`scales a MachineDeployment up to 5 and down to 2 with deletePolicy ${policy}`, async () => {
      edit('workers.yaml', 'maxUnavailable: 0\n', `maxUnavailable: 0\n      deletePolicy: ${policy}\n`);
      const first = await run();
      expectOk(first);
      edit('workers.yaml', /replicas: 3\n/, 'replicas: 5\n');
      const up = await run();
      expectOk(up);
      const md0Up = up.machines.filter((m) => m.group === 'aws-dev-md-0');
      expect(md0Up).to.have.length(5);
      expect(mutating(up).map((c) => c.action).sort()).to.deep.equal(['RunInstances', 'RunInstances']);
      edit('workers.yaml', /replicas: 5\n/, 'replicas: 2\n');
      const down = await run();
      expectOk(down);
      const md0Down = down.machines.filter((m) => m.group === 'aws-dev-md-0');
      expect(md0Down).to.have.length(2);
      expect(mutating(down).map((c) => c.action)).to.deep.equal(['TerminateInstances']);
      const removed = md0Up.filter((m) => !md0Down.some((d) => d.instanceId === m.instanceId)).map((m) => m.name).sort();
      // moto's launch times have second resolution; the slot breaks ties, so the order is by slot.
      const bySlot = [...md0Up].sort((a, b) => Number(a.name.split('-').pop()) - Number(b.name.split('-').pop()));
      if (policy === 'Oldest') expect(removed).to.deep.equal(bySlot.slice(0, 3).map((m) => m.name).sort());
      if (policy === 'Newest') expect(removed).to.deep.equal(bySlot.slice(2).map((m) => m.name).sort());
      if (policy === 'Random') {
        // Deterministic: the same seed (the names) gives the same choice.
        const { orderForRemoval } = await import('../../src/aws/machines.js');
        const chosen = orderForRemoval(md0Up.map((m) => ({ ...m, slot: Number(m.name.split('-').pop()), launchTime: '' })), 'Random').slice(0, 3).map((m) => m.name).sort();
        expect(removed).to.deep.equal(chosen);
      }
      const again = await run();
      expect(mutating(again)).to.deep.equal([]);
    });
  }

  it('rolls a template change with maxSurge 1 / maxUnavailable 0 (and 25%/1 for spot): new machines first, at no moment more than replicas+maxSurge or fewer than replicas−maxUnavailable', async () => {
    const drained: string[] = [];
    const executor = makeLaunchNodes({ beforeRemove: (m) => (drained.push(m.name), Promise.resolve()) });
    const first = await runExecutor(executor);
    expectOk(first);
    const before = new Map(first.machines.map((m) => [m.instanceId, m.group]));
    edit('workers.yaml', /size: 80\n/g, 'size: 100\n');
    const r = await runExecutor(executor);
    expectOk(r);
    const md0 = r.machines.filter((m) => m.group === 'aws-dev-md-0');
    const spot = r.machines.filter((m) => m.group === 'aws-dev-md-spot');
    expect(md0).to.have.length(3);
    expect(spot).to.have.length(2);
    for (const m of [...md0, ...spot]) expect(before.has(m.instanceId)).to.equal(false);
    expect(r.machines.filter((m) => m.role === 'control-plane').every((m) => before.has(m.instanceId))).to.equal(true);
    expect(drained).to.have.length(5);
    // Replay the recorded calls: instances per group alive at every moment.
    const alive = new Map<string, number>([['aws-dev-md-0', 3], ['aws-dev-md-spot', 2]]);
    const limits = { 'aws-dev-md-0': { max: 4, min: 3 }, 'aws-dev-md-spot': { max: 3, min: 1 } } as Record<string, { max: number; min: number }>;
    const group = (c: RecordedCall) => (JSON.stringify(c.params).includes('aws-dev-md-spot') ? 'aws-dev-md-spot' : 'aws-dev-md-0');
    for (const c of r.calls.filter((x) => x.status === 200)) {
      if (c.action === 'RunInstances') {
        const g = group(c);
        alive.set(g, alive.get(g)! + Number(c.params?.MinCount));
      }
      if (c.action === 'TerminateInstances') {
        const ids = Object.entries(c.params ?? {}).filter(([k]) => k.startsWith('InstanceId.')).map(([, v]) => v);
        for (const id of ids) {
          const g = before.get(id) ?? 'unknown';
          alive.set(g, (alive.get(g) ?? 0) - 1);
        }
      }
      for (const [g, n] of alive) {
        if (!limits[g]) continue;
        expect(n, `${g} after ${c.action}`).to.be.at.most(limits[g].max);
        expect(n, `${g} after ${c.action}`).to.be.at.least(limits[g].min);
      }
    }
    const again = await runExecutor(executor);
    expect(mutating(again)).to.deep.equal([]);
  });

  it('looks the AMI up the way CAPA does when the template pins none (newest matching image of imageLookupOrg), once per run', async () => {
    const client = ec2();
    let newest: string;
    try {
      // moto's RegisterImage leaves the architecture unset, so images are made from an instance (CreateImage copies it);
      // moto's "?" matches exactly one character (AWS: zero or one), hence "-v1.31.4" in the names.
      const base = (await client.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }))).Images![0]!.ImageId!;
      const source = (await client.send(new RunInstancesCommand({ ImageId: base, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1 }))).Instances![0]!.InstanceId!;
      await client.send(new CreateImageCommand({ InstanceId: source, Name: 'capa-ami-ubuntu-24.04-v1.31.4-00' }));
      await new Promise((resolve) => setTimeout(resolve, 1100));
      newest = (await client.send(new CreateImageCommand({ InstanceId: source, Name: 'capa-ami-ubuntu-24.04-v1.31.4-01' }))).ImageId!;
      await client.send(new TerminateInstancesCommand({ InstanceIds: [source] }));
    } finally {
      client.destroy();
    }
    // md-0 looks its image up in the account moto registers images in; the others keep their pinned AMI.
    edit('workers.yaml', /(name: aws-dev-md-0\nspec:\n {2}template:\n {4}spec:\n {6}instanceType: m6i.large\n) {6}ami:\n {8}id: \S+\n/, '$1      imageLookupOrg: "123456789012"\n');
    const r = await run();
    expectOk(r);
    expect(count(r, 'DescribeImages')).to.equal(1);
    const md0 = r.calls.filter((c) => c.action === 'RunInstances' && JSON.stringify(c.params).includes('aws-dev-md-0'));
    expect(md0).to.have.length(3);
    for (const c of md0) expect(c.params?.ImageId).to.equal(newest);
    const lookup = r.calls.find((c) => c.action === 'DescribeImages')!;
    expect(JSON.stringify(lookup.params)).to.include('capa-ami-ubuntu-24.04-?1.31.4-*');
  });

  it('an AMI lookup that finds nothing is an input error naming the AWSMachineTemplate', async () => {
    edit('workers.yaml', /(name: aws-dev-md-0\nspec:\n {2}template:\n {4}spec:\n {6}instanceType: m6i.large\n) {6}ami:\n {8}id: \S+\n/, '$1      imageLookupBaseOS: no-such-os\n');
    const r = await run();
    expect(r.exitCode).to.equal(2);
    expect(JSON.stringify(r.summary.error)).to.include('AWSMachineTemplate/aws-dev-md-0');
  });

  it('rejects bad input (instance type, maxSurge and maxUnavailable both 0: found by validation; a failure domain the cluster lacks: by the step) with file:line and zero AWS calls', async () => {
    edit('workers.yaml', 'instanceType: m6i.large', 'instanceType: M6I_LARGE');
    edit('workers.yaml', 'maxSurge: 1\n      maxUnavailable: 0', 'maxSurge: 0\n      maxUnavailable: 0');
    const r = await run();
    expect(r.exitCode).to.equal(2);
    expect(r.calls).to.deep.equal([]);
    const message = String((r.summary.error as { message?: string } | undefined)?.message ?? '');
    expect(message).to.match(/workers\.yaml:\d+:\d+ AWSMachineTemplate\/aws-dev-md-0 spec\.template\.spec\.instanceType/);
    expect(message).to.match(/workers\.yaml:\d+:\d+ MachineDeployment\/aws-dev-md-0 spec\.strategy\.rollingUpdate\.maxSurge/);
    edit('workers.yaml', 'instanceType: M6I_LARGE', 'instanceType: m6i.large');
    edit('workers.yaml', 'maxSurge: 0\n      maxUnavailable: 0', 'maxSurge: 1\n      maxUnavailable: 0');
    // us-east-1z is a zone of the region by name, but not one the cluster's network has
    edit('workers.yaml', '      version: v1.31.4\n      bootstrap:', '      version: v1.31.4\n      failureDomain: us-east-1z\n      bootstrap:');
    const r2 = await run();
    expect(r2.exitCode).to.equal(2);
    expect(r2.calls).to.deep.equal([]);
    const message2 = String((r2.summary.error as { message?: string } | undefined)?.message ?? '');
    expect(message2).to.match(/workers\.yaml:\d+:\d+ MachineDeployment\/aws-dev-md-0 spec\.template\.spec\.failureDomain: failure domain us-east-1z is not one of the cluster's/);
  });

  it('fails with an input error when the bootstrap secret is missing, and when provision-vpc has not run', async () => {
    await secrets.delete(bootstrapSecretName(CLUSTER));
    const r = await run();
    expect(r.exitCode).to.equal(2);
    expect(JSON.stringify(r.summary.error)).to.include('kubeadm-init');
    expect(mutating(r)).to.deep.equal([]);
    await secrets.delete(`capflow-${CLUSTER}-status`);
    const r2 = await run();
    expect(r2.exitCode).to.equal(2);
    expect(JSON.stringify(r2.summary.error)).to.include('run provision-vpc first');
    expect(r2.calls).to.deep.equal([]);
  });

  it('a MachineHealthCheck verdict (stand-in for the Nodes: no API server here) replaces the machine: planned, terminated then launched anew; killed between the two (RunInstances failing), the rerun launches it; then no mutating call', async () => {
    expectOk(await run());
    const victim = (await run()).machines.find((m) => m.group === 'aws-dev-md-0')!;
    const verdict = async (live: readonly Machine[]): Promise<HealthVerdict> => {
      const m = live.find((x) => x.instanceId === victim.instanceId);
      return { replace: m ? [{ machine: m, reason: 'Ready=Unknown for 1m > 5s (MachineHealthCheck stand-in)', check: 'stand-in', spec: { kind: 'MachineHealthCheck', name: 'stand-in', path: ['spec'] } }] : [], notes: [] };
    };
    const healing = makeLaunchNodes({ health: verdict });
    const plan = await runExecutor(healing, { dryRun: true });
    expectOk(plan);
    expect(mutating(plan)).to.deep.equal([]);
    expect(plan.summary.plan).to.include({ create: 1, delete: 1 });
    expect(plan.log).to.include(`replace ${victim.name}/${victim.instanceId}`);

    // the crash: every RunInstances answered with a 5xx, so the step stops after the termination
    bed.proxy.setFaults({ serverErrorRate: 1, onlyActions: ['RunInstances'] });
    const crashed = await runExecutor(healing);
    bed.proxy.setFaults({});
    expect(crashed.exitCode).to.not.equal(0);
    expect(count(crashed, 'TerminateInstances')).to.equal(1);
    expect(count(crashed, 'RunInstances')).to.equal(0);

    const rerun = await runExecutor(healing);
    expectOk(rerun);
    expect(mutating(rerun).map((c) => c.action)).to.deep.equal(['RunInstances']);
    const md0 = rerun.machines.filter((m) => m.group === 'aws-dev-md-0');
    expect(md0).to.have.length(3);
    expect(md0.map((m) => m.instanceId)).to.not.include(victim.instanceId);
    const again = await runExecutor(healing);
    expectOk(again);
    expect(mutating(again)).to.deep.equal([]);
  });

  it('--dry-run plans the machines with zero mutating calls', async () => {
    const r = await run({ dryRun: true });
    expectOk(r);
    expect(mutating(r)).to.deep.equal([]);
    expect(r.summary.plan).to.include({ create: 8 });
    expect(r.log).to.include('aws-dev-control-plane-');
  });

  it('--delete terminates owned machines only, deregisters the control plane, and waits for terminated', async () => {
    expectOk(await run());
    const client = ec2();
    let foreign: string;
    try {
      const images = await client.send(new DescribeImagesCommand({ Owners: ['amazon'] }));
      const out = await client.send(
        new RunInstancesCommand({
          ImageId: images.Images![0]!.ImageId!,
          InstanceType: 't3.micro',
          MinCount: 1,
          MaxCount: 1,
          TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'capflow.io/machine-group', Value: 'aws-dev-md-0' }, { Key: 'capflow.io/cluster', Value: CLUSTER }] }],
        }),
      );
      foreign = out.Instances![0]!.InstanceId!;
    } finally {
      client.destroy();
    }
    const r = await run({ delete: true });
    expectOk(r);
    expect(count(r, 'DeregisterTargets')).to.equal(1);
    expect(count(r, 'TerminateInstances')).to.equal(1);
    const left = await liveInstances();
    expect(left.map((i) => i.id)).to.deep.equal([foreign]);
    const elbv2 = new ElasticLoadBalancingV2Client(clientConfig(bed.moto.endpoint));
    try {
      const health = await elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: vpc.targetGroupArn }));
      expect(health.TargetHealthDescriptions ?? []).to.deep.equal([]);
    } finally {
      elbv2.destroy();
    }
    expect(await readStepStatus(secrets, CLUSTER, 'launch-nodes')).to.equal(undefined);
  });

  it('converges under 30% throttling with no duplicate machines', async () => {
    bed.proxy.setFaults({ throttleRate: 0.3, seed: 7 });
    const r = await run();
    expectOk(r);
    bed.proxy.setFaults({});
    const instances = await liveInstances();
    expect(instances).to.have.length(8);
    expect(r.machines).to.have.length(8);
    expect(new Set(r.machines.map((m) => m.name)).size).to.equal(8);
    const again = await run();
    expect(mutating(again)).to.deep.equal([]);
  });
});
