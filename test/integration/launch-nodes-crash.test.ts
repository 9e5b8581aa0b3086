/**
 * The crash matrix of launch-nodes (placeholder user data: no bootstrap step yet): a small cluster
 * (1 control plane machine, one MachineDeployment of 2 over two AZs) is created by the real CLI
 * child, SIGKILLed right after each mutating call (and, once per call, before its answer arrives),
 * then run again; afterwards exactly the expected machines exist (same names, one instance each),
 * the control plane machine is registered with the API target group, and nothing is orphaned. The
 * cases run side by side, each alone on one of the crash beds (test/support/crash-beds.ts: its own
 * moto and fault proxy) with the bed's own repo and secret store; the network is provisioned once
 * per bed, and between cases the machines are deleted with `--delete`.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyPairCommand, DescribeImagesCommand, DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DescribeTargetHealthCommand, ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { readStepStatus } from '../../src/core/status.js';
import type { ProvisionVpcStatus } from '../../executors/provision-vpc.js';
import { awsTestEnv, clientConfig } from '../support/moto.js';
import type { KillAfterMutating } from '../support/fault-proxy.js';
import { forEachOnBeds, startCrashBeds, stopCrashBeds, type CrashBed } from '../support/crash-beds.js';
import { REPO_ROOT } from '../support/tools.js';

const bin = path.join(REPO_ROOT, 'dist', 'bin', 'capflow.js');
const CLUSTER = 'aws-dev';

interface StepRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** A crash bed with what the cases on it share: the cluster's repo (and outputs), secret store and network. */
interface Lane extends CrashBed {
  repo: string;
  secretsDir: string;
  targetGroupArn: string;
}

describe('launch-nodes crash matrix (placeholder user data: no bootstrap step yet; CLI killed at each mutating call, then rerun)', function () {
  this.timeout(10 * 60_000);
  let beds: CrashBed[] = [];
  let lanes: Lane[] = [];
  let expectedNames: string[] = [];
  let createCalls = 0;

  function step(lane: Pick<Lane, 'proxy' | 'repo' | 'secretsDir'>, id: string, extra: string[] = [], kill?: Omit<KillAfterMutating, 'pid'>): Promise<StepRun> {
    const { proxy, repo, secretsDir } = lane;
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [bin, 'step', id, '--repo', repo, '--cluster-dir', 'clusters/dev', '--outputs', path.join(repo, 'out'), ...extra], {
        env: { ...process.env, ...awsTestEnv(proxy.endpoint), CAPFLOW_SECRETS_DIR: secretsDir, CAPFLOW_SECRET_STORE: 'local', CAPFLOW_LOG_FORMAT: 'json' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      proxy.setFaults(kill ? { killAfterMutating: { ...kill, pid: child.pid! } } : {});
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, stderr }));
    });
  }
  const launch = (lane: Lane, kill?: Omit<KillAfterMutating, 'pid'>) => step(lane, 'launch-nodes', ['-p', 'poll-interval=100ms'], kill);

  async function liveMachines(lane: Lane): Promise<Array<{ id: string; tags: Record<string, string> }>> {
    const ec2 = new EC2Client(clientConfig(lane.moto.endpoint));
    try {
      const out = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }] }));
      return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => ({ id: i.InstanceId!, tags: Object.fromEntries((i.Tags ?? []).map((t) => [t.Key!, t.Value!])) }));
    } finally {
      ec2.destroy();
    }
  }
  async function targets(lane: Lane): Promise<string[]> {
    const elbv2 = new ElasticLoadBalancingV2Client(clientConfig(lane.moto.endpoint));
    try {
      const out = await elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: lane.targetGroupArn }));
      return (out.TargetHealthDescriptions ?? []).map((d) => d.Target!.Id!).sort();
    } finally {
      elbv2.destroy();
    }
  }
  function names(lane: Lane): string[] {
    const machines = JSON.parse(readFileSync(path.join(lane.repo, 'out', 'machines'), 'utf8')) as Array<{ name: string }>;
    return machines.map((m) => m.name).sort();
  }

  async function expectExactWorld(lane: Lane, label: string): Promise<void> {
    const live = await liveMachines(lane);
    expect(live, label).to.have.length(expectedNames.length);
    expect(names(lane), label).to.deep.equal(expectedNames);
    for (const i of live) expect(i.tags[`sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`], label).to.equal('owned');
    const cp = live.filter((i) => i.tags['sigs.k8s.io/cluster-api-provider-aws/role'] === 'control-plane').map((i) => i.id);
    expect(cp, label).to.have.length(1);
    expect(await targets(lane), label).to.deep.equal(cp);
  }

  async function cleanUp(lane: Lane, label: string): Promise<void> {
    const del = await step(lane, 'launch-nodes', ['--delete', '-p', 'poll-interval=100ms']);
    expect(del.code, `${label} delete: ${del.stderr}`).to.equal(0);
    expect(await liveMachines(lane), label).to.deep.equal([]);
    expect(await targets(lane), label).to.deep.equal([]);
  }

  /** The bed's repo (the small cluster, pinned to `ami`), key pair, network and placeholder user data. */
  async function laneOn(bed: CrashBed, ami: string): Promise<Lane> {
    const repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-nodes-crash-repo-'));
    const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-nodes-crash-secrets-'));
    cpSync(path.join(REPO_ROOT, 'examples', 'clusters', 'aws-self-managed'), path.join(repo, 'clusters', 'dev'), { recursive: true });
    const ec2 = new EC2Client(clientConfig(bed.moto.endpoint));
    try {
      const file = (f: string) => path.join(repo, 'clusters', 'dev', f);
      // Small: 1 control plane machine, md-0 of 2, md-spot of 0; no instance profiles (moto would want IAM ones).
      const cp = readFileSync(file('control-plane.yaml'), 'utf8').replace('replicas: 3', 'replicas: 1');
      const workers = readFileSync(file('workers.yaml'), 'utf8').replace('replicas: 3', 'replicas: 2').replace('replicas: 2\n  selector:\n    matchLabels: {}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 25%', 'replicas: 0\n  selector:\n    matchLabels: {}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 25%');
      for (const [f, text] of [['control-plane.yaml', cp], ['workers.yaml', workers]] as const) {
        writeFileSync(file(f), text.replace(/\n {6}iamInstanceProfile: .*\n/g, '\n').replace(/(\n {6}instanceType: .*\n)/g, `$1      ami:\n        id: ${ami}\n`));
      }
      await ec2.send(new CreateKeyPairCommand({ KeyName: 'capflow-dev' }));
    } finally {
      ec2.destroy();
    }
    const net = await step({ proxy: bed.proxy, repo, secretsDir }, 'provision-vpc');
    expect(net.code, net.stderr).to.equal(0);
    const store = new LocalSecretStore(secretsDir);
    const targetGroupArn = (await readStepStatus<ProvisionVpcStatus>(store, CLUSTER, 'provision-vpc'))!.targetGroupArn;
    await store.put(`capflow-${CLUSTER}-bootstrap`, { 'control-plane': '#cloud-config\n# placeholder\n', 'aws-dev-md-0': '#cloud-config\n# placeholder\n', 'aws-dev-md-spot': '#cloud-config\n' });
    return { ...bed, repo, secretsDir, targetGroupArn };
  }

  before(async function () {
    beds = await startCrashBeds();
    // One image for every bed (moto's built-in images are the same in each), so machine names match.
    const ec2 = new EC2Client(clientConfig(beds[0]!.moto.endpoint));
    let ami: string;
    try {
      ami = (await ec2.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }))).Images![0]!.ImageId!;
    } finally {
      ec2.destroy();
    }
    lanes = await Promise.all(beds.map((bed) => laneOn(bed, ami)));
  });
  after(async () => {
    await stopCrashBeds(beds);
    for (const lane of lanes) {
      rmSync(lane.repo, { recursive: true, force: true });
      rmSync(lane.secretsDir, { recursive: true, force: true });
    }
  });

  it('an uninterrupted create sets the expected machines and the number of mutating calls', async () => {
    const lane = lanes[0]!;
    lane.proxy.reset();
    const created = await launch(lane);
    expect(created.code, created.stderr).to.equal(0);
    createCalls = lane.proxy.mutatingCalls().length;
    expect(lane.proxy.mutatingCalls().map((c) => c.action).sort()).to.deep.equal(['RegisterTargets', 'RunInstances', 'RunInstances', 'RunInstances']);
    expectedNames = names(lane);
    expect(expectedNames).to.have.length(3);
    await expectExactWorld(lane, 'reference');
    lane.proxy.reset();
    await cleanUp(lane, 'reference');
  });

  for (const when of ['after-response', 'before-response'] as const) {
    it(`a create killed ${when === 'after-response' ? 'after' : 'before the answer of'} each mutating call converges on rerun to exactly the expected machines, no orphan`, async () => {
      expect(createCalls).to.be.greaterThan(0);
      const calls = Array.from({ length: createCalls }, (_, i) => i + 1);
      await forEachOnBeds(lanes, calls, async (lane, n) => {
        const label = `kill ${when} mutating call ${n}`;
        lane.proxy.reset();
        const killed = await launch(lane, { n, when });
        if (n === createCalls && killed.signal === null) expect(killed.code, `${label}: ${killed.stderr}`).to.equal(0);
        else expect(killed.signal, `${label}: ${killed.stderr.slice(-2000)}`).to.equal('SIGKILL');
        lane.proxy.reset();
        const rerun = await launch(lane);
        expect(rerun.code, `rerun after ${label}: ${rerun.stderr.slice(-2000)}`).to.equal(0);
        await expectExactWorld(lane, label);
        await cleanUp(lane, label);
      });
    });
  }
});
