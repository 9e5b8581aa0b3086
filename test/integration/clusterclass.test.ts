/**
 * The upstream ClusterClass templates (CAPA v2.11.1, test/fixtures/spec/upstream-v2.11/) run: the
 * Cluster's topology is expanded by the loader every step uses, so the steps act on the expanded
 * objects. simple-clusterclass: provision-vpc and launch-nodes against moto through the fault
 * proxy (placeholder user data: no bootstrap step yet; the copied templates pin an AMI moto knows,
 * as launch-nodes.test.ts does). eks-clusterclass: provision-vpc and eks-control-plane, with the
 * EKS calls moto lacks from the fault proxy's stand-in.
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateKeyPairCommand, DescribeImagesCommand, DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { LocalSecretStore } from '../../src/core/secrets.js';
import type { Executor } from '../../src/core/executor.js';
import { provisionVpc } from '../../executors/provision-vpc.js';
import { launchNodes } from '../../executors/launch-nodes.js';
import { eksControlPlane } from '../../executors/eks-control-plane.js';
import { bootstrapSecretName } from '../../executors/aws-step.js';
import { clientConfig, startMoto, type Moto } from '../support/moto.js';
import { startFaultProxy, useMotoBehindProxy, type FaultProxy } from '../support/fault-proxy.js';
import { runStepVia, type StepRun } from '../support/step-run.js';

const REVISION = '0123456789abcdef0123456789abcdef01234567';
const V211 = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'fixtures', 'spec', 'upstream-v2.11');
const CLUSTER = 'capa-v211';

function copyFixture(folder: string): string {
  const repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-class-repo-'));
  cpSync(path.join(V211, folder), path.join(repo, 'clusters', 'dev'), { recursive: true });
  // The steps read the folder's own variables file (cluster.env).
  writeFileSync(path.join(repo, 'clusters', 'dev', 'cluster.env'), readFileSync(path.join(V211, 'cluster.vars'), 'utf8'));
  return repo;
}

const mutating = (r: StepRun) => r.calls.filter((c) => c.mutating).map((c) => c.action);
function expectOk(r: StepRun): void {
  expect(r.exitCode, `${JSON.stringify(r.summary.error)}\n${r.log.slice(-3000)}`).to.equal(0);
}

describe('upstream cluster-template-simple-clusterclass (CAPA v2.11.1) runs: provision-vpc and launch-nodes on the expanded topology against moto (placeholder user data: no bootstrap step yet)', function () {
  this.timeout(120_000);
  const bed = useMotoBehindProxy();
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;

  beforeEach(async () => {
    repo = copyFixture('simple-clusterclass');
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-class-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
    const client = new EC2Client(clientConfig(bed.moto.endpoint));
    try {
      const images = await client.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }));
      const ami = images.Images![0]!.ImageId!;
      const file = path.join(repo, 'clusters', 'dev', 'cluster-template-simple-clusterclass.yaml');
      writeFileSync(file, readFileSync(file, 'utf8').replace(/(\n {6}instanceType: .*\n)/g, `$1      ami:\n        id: ${ami}\n`));
      await client.send(new CreateKeyPairCommand({ KeyName: 'default' }));
    } finally {
      client.destroy();
    }
    for (const profile of ['control-plane.cluster-api-provider-aws.sigs.k8s.io', 'nodes.cluster-api-provider-aws.sigs.k8s.io']) {
      const res = await fetch(bed.moto.endpoint, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: 'AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0',
        },
        body: new URLSearchParams({ Action: 'CreateInstanceProfile', Version: '2010-05-08', InstanceProfileName: profile }).toString(),
      });
      expect(res.status, await res.text()).to.equal(200);
    }
    await secrets.put(bootstrapSecretName(CLUSTER), { 'control-plane': '#cloud-config\n# placeholder\n', [`${CLUSTER}-md-0`]: '#cloud-config\n# placeholder\n' });
  });
  afterEach(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  const run = (step: Executor, opts: { dryRun?: boolean } = {}): Promise<StepRun> =>
    runStepVia({ proxy: bed.proxy, repo, clusterPath: 'clusters/dev', region: 'us-east-1', revision: REVISION, secrets }, step, { ...opts, ...(step === launchNodes ? { params: { 'poll-interval': '50ms' } } : {}) });

  it('bad input in the class or the topology (a patch path the template lacks, a variable of the wrong type) stops the step with exit 2 at file:line, before any AWS call', async () => {
    const file = path.join(repo, 'clusters', 'dev', 'cluster-template-simple-clusterclass.yaml');
    const good = readFileSync(file, 'utf8');
    const cases: Array<[string, RegExp]> = [
      [good.replace('path: /spec/template/spec/region', 'path: /spec/template/spc/region'), /cluster-template-simple-clusterclass\.yaml:\d+:\d+ ClusterClass\/quick-start spec\.patches\[0\]\.definitions\[0\]\.jsonPatches\[0\]\.path: patch region: add \/spec\/template\/spc\/region: \/spec\/template\/spc does not exist in AWSClusterTemplate "quick-start"/],
      [good.replace(/( {4}- name: sshKeyName\n {6}value: ).*\n/, '$1[not, a, string]\n'), /cluster-template-simple-clusterclass\.yaml:\d+:\d+ Cluster\/capa-v211 spec\.topology\.variables\[1\]\.value: variable sshKeyName: must be string/],
    ];
    for (const [text, message] of cases) {
      writeFileSync(file, text);
      const r = await run(provisionVpc);
      expect(r.exitCode, r.log.slice(-2000)).to.equal(2);
      const error = (r.summary.error ?? {}) as { message?: string };
      expect(error.message ?? r.log).to.match(message);
      expect(r.calls, 'no AWS call').to.deep.equal([]);
    }
  });

  it('makes the network and the 3 control plane and 3 md-0 machines with the class\'s patched instance type and key; a rerun makes 0 mutating calls', async () => {
    expectOk(await run(provisionVpc));
    const nodes = await run(launchNodes);
    expectOk(nodes);
    const ec2 = new EC2Client(clientConfig(bed.moto.endpoint));
    try {
      const out = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'instance-state-name', Values: ['running'] }] }));
      const instances = (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
      const group = (i: (typeof instances)[number]) => i.Tags?.find((t) => t.Key === 'capflow.io/machine-group')?.Value;
      expect(instances.map((i) => `${group(i)} ${i.InstanceType} ${i.KeyName}`).sort()).to.deep.equal(
        [...Array<string>(3).fill(`control-plane t3.large default`), ...Array<string>(3).fill(`${CLUSTER}-md-0 t3.large default`)].sort(),
      );
    } finally {
      ec2.destroy();
    }
    for (const step of [provisionVpc, launchNodes]) {
      const again = await run(step);
      expectOk(again);
      expect(mutating(again), step.id).to.deep.equal([]);
    }
  });
});

describe('upstream cluster-template-eks-clusterclass (CAPA v2.11.1, with a Cluster written for capflow) runs: provision-vpc and eks-control-plane on the expanded topology against moto (EKS calls moto lacks from the fault proxy stand-in)', function () {
  this.timeout(120_000);
  let moto: Moto;
  let proxy: FaultProxy;
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;

  before(async () => {
    moto = await startMoto({ iamManagedPolicies: true });
    proxy = await startFaultProxy({ target: moto.endpoint });
  });
  after(async () => {
    await proxy?.stop();
    await moto?.stop();
  });
  beforeEach(() => {
    repo = copyFixture('eks-clusterclass');
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-class-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
  });
  afterEach(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  const run = (step: Executor, opts: { dryRun?: boolean } = {}): Promise<StepRun> =>
    runStepVia({ proxy, repo, clusterPath: 'clusters/dev', region: 'us-east-1', revision: REVISION, secrets }, step, opts);

  it('the dry runs plan a control plane for the empty account; the apply makes it, named for the Cluster; a rerun makes 0 mutating calls', async () => {
    const plan = await run(eksControlPlane, { dryRun: true });
    expectOk(plan);
    expect(mutating(plan)).to.deep.equal([]);
    expect(Number(plan.outputs['changes'])).to.be.greaterThan(0);
    expectOk(await run(provisionVpc));
    const cp = await run(eksControlPlane);
    expectOk(cp);
    expect(cp.outputs['eks-cluster-name']).to.equal(CLUSTER);
    for (const step of [provisionVpc, eksControlPlane]) {
      const again = await run(step);
      expectOk(again);
      expect(mutating(again), step.id).to.deep.equal([]);
    }
  });
});
