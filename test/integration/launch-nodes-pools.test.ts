/**
 * launch-nodes end to end on the aws-machinepool example: the executor makes
 * the control plane machines and the MachinePool's launch template and Auto
 * Scaling group, reruns with no change, and deletes both (placeholder user
 * data: no bootstrap step yet).
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { AutoScalingClient, DescribeAutoScalingGroupsCommand } from '@aws-sdk/client-auto-scaling';
import { CreateKeyPairCommand, DescribeImagesCommand, DescribeLaunchTemplatesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { AwsClients } from '../../src/core/aws.js';
import type { Executor } from '../../src/core/executor.js';
import { createLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { runStep } from '../../src/core/step-host.js';
import { provisionVpc } from '../../executors/provision-vpc.js';
import { bootstrapSecretName } from '../../executors/aws-step.js';
import { launchNodes } from '../../executors/launch-nodes.js';
import { clientConfig } from '../support/moto.js';
import { useMotoBehindProxy } from '../support/fault-proxy.js';
import { REPO_ROOT } from '../support/tools.js';

const CLUSTER = 'aws-pool';
const POOL = 'aws-pool-mp-0';
/** The example's AWSCluster.spec.region. */
const REGION = 'eu-west-1';
const direct = (endpoint: string) => ({ ...clientConfig(endpoint), region: REGION });

describe('launch-nodes with a MachinePool, end to end against moto (placeholder user data: no bootstrap step yet)', function () {
  this.timeout(180_000);
  const bed = useMotoBehindProxy();
  let repo: string;
  let secretsDir: string;

  async function step(executor: Executor, del = false): Promise<{ exitCode: number; mutating: string[]; log: string }> {
    const from = bed.proxy.calls.length;
    const { credentials, region } = clientConfig(bed.proxy.endpoint);
    const aws = new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { minTimeoutMs: 5, maxTimeoutMs: 50 } });
    let log = '';
    const logStream = new PassThrough().on('data', (d: Buffer) => (log += d.toString()));
    try {
      const { exitCode } = await runStep(
        executor,
        { repoDir: repo, clusterPath: 'clusters/pool', revision: 'abc123', dryRun: false, delete: del, params: executor === provisionVpc ? {} : { 'poll-interval': '50ms' } },
        { aws, secrets: new LocalSecretStore(secretsDir), log: createLogger({ stream: logStream, format: 'json' }), stdout: new PassThrough() },
      );
      return { exitCode, mutating: bed.proxy.calls.slice(from).filter((c) => c.mutating).map((c) => c.action), log };
    } finally {
      aws.destroy();
    }
  }

  beforeEach(async () => {
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-pool-repo-'));
    const dir = path.join(repo, 'clusters', 'pool');
    cpSync(path.join(REPO_ROOT, 'examples', 'clusters', 'aws-machinepool'), dir, { recursive: true });
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-pool-secrets-'));
    const ec2 = new EC2Client(direct(bed.moto.endpoint));
    try {
      // Pin an AMI moto has (the CAPA lookup is tested elsewhere) and drop the instance profiles (no IAM here).
      const ami = (await ec2.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }))).Images![0]!.ImageId!;
      for (const f of ['control-plane.yaml', 'workers.yaml']) {
        const file = path.join(dir, f);
        const text = readFileSync(file, 'utf8')
          .replace(/(\n( +)instanceType: (t3|m6i)\.large\n)/, `$1$2ami:\n$2  id: ${ami}\n`)
          .replace(/\n +iamInstanceProfile: .*/g, '');
        writeFileSync(file, text);
      }
      await ec2.send(new CreateKeyPairCommand({ KeyName: 'capflow-dev' }));
    } finally {
      ec2.destroy();
    }
    const net = await step(provisionVpc);
    expect(net.exitCode, net.log.slice(-2000)).to.equal(0);
    await new LocalSecretStore(secretsDir).put(bootstrapSecretName(CLUSTER), {
      'control-plane': '#cloud-config\n# placeholder user data: no bootstrap step yet\n',
      [POOL]: '#cloud-config\n# placeholder user data: no bootstrap step yet\n',
    });
  });
  afterEach(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  it('creates the pool as a launch template and an Auto Scaling group, reruns with no change, and deletes it', async () => {
    const created = await step(launchNodes);
    expect(created.exitCode, created.log.slice(-3000)).to.equal(0);
    expect(created.mutating).to.include.members(['RunInstances', 'CreateLaunchTemplate', 'CreateAutoScalingGroup']);

    const asg = new AutoScalingClient(direct(bed.moto.endpoint));
    const ec2 = new EC2Client(direct(bed.moto.endpoint));
    try {
      const group = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [POOL] }))).AutoScalingGroups?.[0];
      expect(group, 'the Auto Scaling group').to.not.equal(undefined);
      expect(group!).to.include({ MinSize: 2, MaxSize: 10, DesiredCapacity: 3 });
      expect(group!.MixedInstancesPolicy?.InstancesDistribution).to.include({ OnDemandBaseCapacity: 1, OnDemandPercentageAboveBaseCapacity: 0 });
      expect(group!.Tags?.find((t) => t.Key === `sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`)?.Value).to.equal('owned');

      const rerun = await step(launchNodes);
      expect(rerun.exitCode, rerun.log.slice(-3000)).to.equal(0);
      expect(rerun.mutating, 'a rerun changes nothing').to.deep.equal([]);

      const deleted = await step(launchNodes, true);
      expect(deleted.exitCode, deleted.log.slice(-3000)).to.equal(0);
      expect(deleted.mutating).to.include.members(['DeleteAutoScalingGroup', 'DeleteLaunchTemplate', 'TerminateInstances']);
      expect((await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [POOL] }))).AutoScalingGroups ?? []).to.deep.equal([]);
      const templates = await ec2.send(new DescribeLaunchTemplatesCommand({ Filters: [{ Name: 'launch-template-name', Values: [POOL] }] }));
      expect(templates.LaunchTemplates ?? []).to.deep.equal([]);
    } finally {
      asg.destroy();
      ec2.destroy();
    }
  });
});
