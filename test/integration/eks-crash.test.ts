/**
 * The crash matrix of the EKS steps: eks-control-plane and eks-node-groups (real child processes,
 * the image's entry point) are SIGKILLed right after each mutating call of a create and of a
 * delete, then run again; the EKS and IAM world
 * must equal the one an uninterrupted run makes: no duplicate, nothing leaked. For each action that
 * makes a resource the kill also lands before its answer (the call took effect, the caller never
 * heard). The calls moto lacks (addons, updates) come from the fault proxy's EKS stand-in, which
 * the kills reach like any other call. Each case runs alone on one crash bed.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { DescribeAddonCommand, DescribeClusterCommand, DescribeNodegroupCommand, EKSClient, ListAddonsCommand, ListClustersCommand, ListNodegroupsCommand } from '@aws-sdk/client-eks';
import { IAMClient, ListAttachedRolePoliciesCommand, ListOpenIDConnectProvidersCommand, ListRolesCommand } from '@aws-sdk/client-iam';
import { AwsClients } from '../../src/core/aws.js';
import { createLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { runStep } from '../../src/core/step-host.js';
import { provisionVpc } from '../../executors/provision-vpc.js';
import { awsTestEnv, clientConfig } from '../support/moto.js';
import type { KillAfterMutating } from '../support/fault-proxy.js';
import { forEachOnBeds, startCrashBeds, stopCrashBeds, type CrashBed } from '../support/crash-beds.js';
import { REPO_ROOT } from '../support/tools.js';

const bin = path.join(REPO_ROOT, 'dist', 'bin', 'capflow.js');
const CLUSTER = 'eks-prod';
const REGION = 'us-west-2';

interface StepRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** What the EKS steps make, read through the bed's proxy (moto and the stand-in), ids and times left out. */
async function eksWorld(endpoint: string): Promise<unknown> {
  const config = { ...clientConfig(endpoint), region: REGION };
  const eks = new EKSClient(config);
  const iam = new IAMClient(config);
  try {
    const clusters = [];
    for (const name of (await eks.send(new ListClustersCommand({}))).clusters ?? []) {
      const c = (await eks.send(new DescribeClusterCommand({ name }))).cluster!;
      const groups = [];
      for (const g of (await eks.send(new ListNodegroupsCommand({ clusterName: name }))).nodegroups ?? []) {
        const ng = (await eks.send(new DescribeNodegroupCommand({ clusterName: name, nodegroupName: g }))).nodegroup!;
        groups.push({ name: g, status: ng.status, version: ng.version, capacityType: ng.capacityType, scaling: ng.scalingConfig, tags: ng.tags });
      }
      const addons = [];
      for (const a of (await eks.send(new ListAddonsCommand({ clusterName: name }))).addons ?? []) {
        const addon = (await eks.send(new DescribeAddonCommand({ clusterName: name, addonName: a }))).addon!;
        addons.push({ name: a, version: addon.addonVersion, status: addon.status });
      }
      clusters.push({ name, version: c.version, status: c.status, roleArn: c.roleArn, tags: c.tags, groups: groups.sort((a, b) => a.name.localeCompare(b.name)), addons: addons.sort((a, b) => a.name.localeCompare(b.name)) });
    }
    const roles = [];
    for (const r of ((await iam.send(new ListRolesCommand({}))).Roles ?? []).filter((x) => x.RoleName?.startsWith(CLUSTER))) {
      const policies = ((await iam.send(new ListAttachedRolePoliciesCommand({ RoleName: r.RoleName! }))).AttachedPolicies ?? []).map((p) => p.PolicyName).sort();
      roles.push({ name: r.RoleName, policies });
    }
    const providers = ((await iam.send(new ListOpenIDConnectProvidersCommand({}))).OpenIDConnectProviderList ?? []).length;
    return { clusters, roles: roles.sort((a, b) => String(a.name).localeCompare(String(b.name))), providers };
  } finally {
    eks.destroy();
    iam.destroy();
  }
}


describe('EKS crash matrix (eks-control-plane and eks-node-groups killed at each mutating call, then rerun; addons from the stand-in)', function () {
  this.timeout(20 * 60_000);
  let beds: CrashBed[] = [];
  let repo: string;

  before(async () => {
    beds = await startCrashBeds(undefined, { iamManagedPolicies: true });
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-crash-repo-'));
    cpSync(path.join(REPO_ROOT, 'examples', 'clusters', 'eks-managed'), path.join(repo, 'clusters', 'eks'), { recursive: true });
  });
  after(async () => {
    await stopCrashBeds(beds);
    rmSync(repo, { recursive: true, force: true });
  });

  function step({ proxy }: CrashBed, stepId: string, secretsDir: string, extra: string[] = [], kill?: Omit<KillAfterMutating, 'pid'>): Promise<StepRun> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [bin, 'step', stepId, '--repo', repo, '--cluster-dir', 'clusters/eks', '-p', 'poll-interval=20ms', ...extra], {
        env: { ...process.env, ...awsTestEnv(proxy.endpoint), AWS_REGION: REGION, CAPFLOW_SECRETS_DIR: secretsDir, CAPFLOW_SECRET_STORE: 'local', CAPFLOW_LOG_FORMAT: 'json' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      proxy.setFaults(kill ? { killAfterMutating: { ...kill, pid: child.pid! } } : {});
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, stderr }));
    });
  }

  /** A fresh world with the network made (in process, straight to moto: not counted, never killed). */
  async function freshNetwork(bed: CrashBed): Promise<string> {
    await bed.moto.reset();
    bed.proxy.reset();
    const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-crash-secrets-'));
    const { credentials } = clientConfig(bed.moto.endpoint);
    const aws = new AwsClients({ endpoint: bed.moto.endpoint, region: REGION, clientConfig: { credentials } });
    try {
      const r = await runStep(
        provisionVpc,
        { repoDir: repo, clusterPath: 'clusters/eks', revision: 'HEAD', dryRun: false, delete: false, params: {} },
        { aws, secrets: new LocalSecretStore(secretsDir), log: createLogger({ stream: new PassThrough(), format: 'json', level: 'error' }), stdout: new PassThrough(), outputsDir: path.join(secretsDir, 'out') },
      );
      expect(r.exitCode, JSON.stringify(r.summary.error)).to.equal(0);
    } finally {
      aws.destroy();
    }
    return secretsDir;
  }

  const STEPS = ['eks-control-plane', 'eks-node-groups'] as const;
  let reference: unknown;
  const createPoints: Record<string, number[]> = {};
  const unheardPoints: Record<string, number[]> = {};
  const totals: Record<string, number> = {};
  let deletePoints: Array<{ stepId: string; n: number }> = [];

  function expectKilled(run: StepRun, n: number, total: number, label: string): void {
    if (n === total && run.signal === null) expect(run.code, `${label}: ${run.stderr}`).to.equal(0);
    else expect(run.signal, `${label}: ${run.stderr.slice(-2000)}`).to.equal('SIGKILL');
  }

  it('an uninterrupted create and delete set the reference world and the kill points', async () => {
    const bed = beds[0]!;
    const secrets = await freshNetwork(bed);
    for (const stepId of STEPS) {
      const from = bed.proxy.calls.length;
      const r = await step(bed, stepId, secrets);
      expect(r.code, r.stderr).to.equal(0);
      const actions = bed.proxy.calls.slice(from).filter((c) => c.mutating).map((c) => c.action);
      totals[stepId] = actions.length;
      createPoints[stepId] = actions.map((_, i) => i + 1);
      unheardPoints[stepId] = [...new Set(actions)].filter((a) => a.startsWith('Create')).map((a) => actions.indexOf(a) + 1);
    }
    reference = await eksWorld(bed.proxy.endpoint);
    expect(JSON.stringify(reference)).to.include('"status":"ACTIVE"');
    deletePoints = [];
    for (const stepId of [...STEPS].reverse()) {
      const from = bed.proxy.calls.length;
      const r = await step(bed, stepId, secrets, ['--delete']);
      expect(r.code, r.stderr).to.equal(0);
      const actions = bed.proxy.calls.slice(from).filter((c) => c.mutating).map((c) => c.action);
      deletePoints.push(...actions.map((_, i) => ({ stepId, n: i + 1 })));
    }
    expect(await eksWorld(bed.proxy.endpoint)).to.deep.equal({ clusters: [], roles: [], providers: 0 });
    expect(totals['eks-control-plane']).to.be.greaterThan(5);
    rmSync(secrets, { recursive: true, force: true });
  });

  it('a create killed after each mutating call (and, for each Create action, before the answer of its first) converges on rerun to the reference world', async () => {
    const cases = STEPS.flatMap((stepId) => [
      ...createPoints[stepId]!.map((n) => ({ stepId, n, when: 'after-response' as const })),
      ...unheardPoints[stepId]!.map((n) => ({ stepId, n, when: 'before-response' as const })),
    ]);
    expect(cases.length).to.be.greaterThan(8);
    await forEachOnBeds(beds, cases, async (bed, c) => {
      const secrets = await freshNetwork(bed);
      try {
        for (const stepId of STEPS) {
          if (stepId === c.stepId) {
            const killed = await step(bed, stepId, secrets, [], { n: c.n, when: c.when });
            expectKilled(killed, c.n, totals[stepId]!, `${stepId} killed ${c.when} mutating call ${c.n}`);
          }
          const rerun = await step(bed, stepId, secrets);
          expect(rerun.code, `${stepId} rerun after kill at ${c.stepId} ${c.n} ${c.when}: ${rerun.stderr.slice(-2000)}`).to.equal(0);
        }
        expect(await eksWorld(bed.proxy.endpoint), `${c.stepId} ${c.n} ${c.when}`).to.deep.equal(reference);
      } finally {
        rmSync(secrets, { recursive: true, force: true });
      }
    });
  });

  it('a delete killed after each mutating call converges on rerun to nothing left', async () => {
    expect(deletePoints.length).to.be.greaterThan(3);
    await forEachOnBeds(beds, deletePoints, async (bed, c) => {
      const secrets = await freshNetwork(bed);
      try {
        for (const stepId of STEPS) expect((await step(bed, stepId, secrets)).code, stepId).to.equal(0);
        for (const stepId of [...STEPS].reverse()) {
          if (stepId === c.stepId) {
            const killed = await step(bed, stepId, secrets, ['--delete'], { n: c.n, when: 'after-response' });
            expect(killed.signal === 'SIGKILL' || killed.code === 0, `${stepId} --delete killed at ${c.n}: ${killed.stderr.slice(-1500)}`).to.equal(true);
          }
          const rerun = await step(bed, stepId, secrets, ['--delete']);
          expect(rerun.code, `${stepId} --delete rerun after kill at ${c.stepId} ${c.n}: ${rerun.stderr.slice(-2000)}`).to.equal(0);
        }
        expect(await eksWorld(bed.proxy.endpoint), `${c.stepId} ${c.n}`).to.deep.equal({ clusters: [], roles: [], providers: 0 });
      } finally {
        rmSync(secrets, { recursive: true, force: true });
      }
    });
  });
});
