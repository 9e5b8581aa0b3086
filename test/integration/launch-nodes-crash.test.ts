/**
 * The crash matrix of launch-nodes (placeholder user data: no bootstrap step yet): a small cluster
 * (1 control plane machine, one MachineDeployment of 2 over two AZs) is created by the real CLI
 * child, SIGKILLed right after each mutating call (and, once per call, before its answer arrives),
 * then run again; afterwards exactly the expected machines exist (same names, one instance each),
 * the control plane machine is registered with the API target group, and nothing is orphaned. The
 * network is provisioned once; between cases the machines are deleted with `--delete`.
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
import { startMoto, awsTestEnv, clientConfig, type Moto } from '../support/moto.js';
import { startFaultProxy, type FaultProxy, type KillAfterMutating } from '../support/fault-proxy.js';
import { REPO_ROOT } from '../support/tools.js';

const bin = path.join(REPO_ROOT, 'dist', 'bin', 'capflow.js');
const CLUSTER = 'aws-dev';

interface StepRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

describe('launch-nodes crash matrix (placeholder user data: no bootstrap step yet; CLI killed at each mutating call, then rerun)', function () {
  this.timeout(10 * 60_000);
  let moto: Moto;
  let proxy: FaultProxy;
  let repo: string;
  let secretsDir: string;
  let targetGroupArn: string;
  let expectedNames: string[] = [];
  let createCalls = 0;

  function step(id: string, extra: string[] = [], kill?: Omit<KillAfterMutating, 'pid'>): Promise<StepRun> {
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
  const launch = (kill?: Omit<KillAfterMutating, 'pid'>) => step('launch-nodes', ['-p', 'poll-interval=100ms'], kill);

  async function liveMachines(): Promise<Array<{ id: string; tags: Record<string, string> }>> {
    const ec2 = new EC2Client(clientConfig(moto.endpoint));
    try {
      const out = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] }] }));
      return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => ({ id: i.InstanceId!, tags: Object.fromEntries((i.Tags ?? []).map((t) => [t.Key!, t.Value!])) }));
    } finally {
      ec2.destroy();
    }
  }
  async function targets(): Promise<string[]> {
    const elbv2 = new ElasticLoadBalancingV2Client(clientConfig(moto.endpoint));
    try {
      const out = await elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: targetGroupArn }));
      return (out.TargetHealthDescriptions ?? []).map((d) => d.Target!.Id!).sort();
    } finally {
      elbv2.destroy();
    }
  }
  function names(): string[] {
    const machines = JSON.parse(readFileSync(path.join(repo, 'out', 'machines'), 'utf8')) as Array<{ name: string }>;
    return machines.map((m) => m.name).sort();
  }

  async function expectExactWorld(label: string): Promise<void> {
    const live = await liveMachines();
    expect(live, label).to.have.length(expectedNames.length);
    expect(names(), label).to.deep.equal(expectedNames);
    for (const i of live) expect(i.tags[`sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`], label).to.equal('owned');
    const cp = live.filter((i) => i.tags['sigs.k8s.io/cluster-api-provider-aws/role'] === 'control-plane').map((i) => i.id);
    expect(cp, label).to.have.length(1);
    expect(await targets(), label).to.deep.equal(cp);
  }

  async function cleanUp(label: string): Promise<void> {
    const del = await step('launch-nodes', ['--delete', '-p', 'poll-interval=100ms']);
    expect(del.code, `${label} delete: ${del.stderr}`).to.equal(0);
    expect(await liveMachines(), label).to.deep.equal([]);
    expect(await targets(), label).to.deep.equal([]);
  }

  before(async function () {
    moto = await startMoto();
    proxy = await startFaultProxy({ target: moto.endpoint });
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-nodes-crash-repo-'));
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-nodes-crash-secrets-'));
    cpSync(path.join(REPO_ROOT, 'examples', 'clusters', 'aws-self-managed'), path.join(repo, 'clusters', 'dev'), { recursive: true });
    const ec2 = new EC2Client(clientConfig(moto.endpoint));
    try {
      const ami = (await ec2.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }))).Images![0]!.ImageId!;
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
    const net = await step('provision-vpc');
    expect(net.code, net.stderr).to.equal(0);
    const store = new LocalSecretStore(secretsDir);
    targetGroupArn = (await readStepStatus<ProvisionVpcStatus>(store, CLUSTER, 'provision-vpc'))!.targetGroupArn;
    await store.put(`capflow-${CLUSTER}-bootstrap`, { 'control-plane': '#cloud-config\n# placeholder\n', 'aws-dev-md-0': '#cloud-config\n# placeholder\n', 'aws-dev-md-spot': '#cloud-config\n' });
  });
  after(async () => {
    await proxy?.stop();
    await moto?.stop();
    if (repo) rmSync(repo, { recursive: true, force: true });
    if (secretsDir) rmSync(secretsDir, { recursive: true, force: true });
  });

  it('an uninterrupted create sets the expected machines and the number of mutating calls', async () => {
    proxy.reset();
    const created = await launch();
    expect(created.code, created.stderr).to.equal(0);
    createCalls = proxy.mutatingCalls().length;
    expect(proxy.mutatingCalls().map((c) => c.action).sort()).to.deep.equal(['RegisterTargets', 'RunInstances', 'RunInstances', 'RunInstances']);
    expectedNames = names();
    expect(expectedNames).to.have.length(3);
    await expectExactWorld('reference');
    proxy.reset();
    await cleanUp('reference');
  });

  for (const when of ['after-response', 'before-response'] as const) {
    it(`a create killed ${when === 'after-response' ? 'after' : 'before the answer of'} each mutating call converges on rerun to exactly the expected machines, no orphan`, async () => {
      expect(createCalls).to.be.greaterThan(0);
      for (let n = 1; n <= createCalls; n++) {
        const label = `kill ${when} mutating call ${n}`;
        proxy.reset();
        const killed = await launch({ n, when });
        if (n === createCalls && killed.signal === null) expect(killed.code, `${label}: ${killed.stderr}`).to.equal(0);
        else expect(killed.signal, `${label}: ${killed.stderr.slice(-2000)}`).to.equal('SIGKILL');
        proxy.reset();
        const rerun = await launch();
        expect(rerun.code, `rerun after ${label}: ${rerun.stderr.slice(-2000)}`).to.equal(0);
        await expectExactWorld(label);
        await cleanUp(label);
      }
    });
  }
});
