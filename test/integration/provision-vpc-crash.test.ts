/**
 * The crash matrix of provision-vpc: after the first and the last call of
 * each mutating action of a create, and the first of each of a delete (the
 * calls between repeat the same code path for another zone or rule), the
 * executor (a real child process, the same entry point the image runs) is
 * SIGKILLed right after the call, then run again; the world must equal the
 * one an uninterrupted run makes. Once more, for each action that makes a
 * resource, the kill lands before the response reaches the executor (the call
 * took effect, the caller never heard).
 *
 * The cases of a matrix run side by side, each alone on one of the crash beds
 * (test/support/crash-beds.ts: its own moto and fault proxy).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { awsTestEnv } from '../support/moto.js';
import type { KillAfterMutating } from '../support/fault-proxy.js';
import { boundaryCalls, forEachOnBeds, startCrashBeds, stopCrashBeds, type CrashBed } from '../support/crash-beds.js';
import { snapshotWorld, untagged, type World } from '../support/aws-world.js';
import { REPO_ROOT } from '../support/tools.js';

const bin = path.join(REPO_ROOT, 'dist', 'bin', 'capflow.js');

const CLUSTER = 'aws-dev';

interface StepRun { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

describe('provision-vpc crash matrix (executor killed at each mutating call, then rerun)', function () {
  this.timeout(30 * 60_000);
  let beds: CrashBed[] = [];
  let repo: string;

  /** Runs `capflow step provision-vpc` as a child process through the bed's proxy, with its own secret store. */
  function step({ proxy }: CrashBed, secretsDir: string, extra: string[] = [], kill?: Omit<KillAfterMutating, 'pid'>): Promise<StepRun> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [bin, 'step', 'provision-vpc', '--repo', repo, '--cluster-dir', 'clusters/dev', ...extra], {
        env: {
          ...process.env,
          ...awsTestEnv(proxy.endpoint),
          CAPFLOW_SECRETS_DIR: secretsDir,
          CAPFLOW_SECRET_STORE: 'local',
          CAPFLOW_LOG_FORMAT: 'json',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      proxy.setFaults(kill ? { killAfterMutating: { ...kill, pid: child.pid! } } : {});
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    });
  }

  const freshSecrets = () => mkdtempSync(path.join(os.tmpdir(), 'capflow-crash-secrets-'));

  before(async () => {
    beds = await startCrashBeds();
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-crash-repo-'));
    cpSync(path.join(REPO_ROOT, 'examples', 'clusters', 'aws-self-managed'), path.join(repo, 'clusters', 'dev'), { recursive: true });
    expect(readdirSync(path.join(repo, 'clusters', 'dev'))).to.include('cluster.yaml');
  });
  after(async () => {
    await stopCrashBeds(beds);
  });

  let reference: World;
  let createCalls = 0;
  let deleteCalls = 0;
  /** For each mutating action of the create, the number of its first call. */
  let firstOfEachAction: number[] = [];
  let createPoints: number[] = [];
  let deletePoints: number[] = [];

  it('an uninterrupted create and delete set the reference world and call counts', async () => {
    const bed = beds[0]!;
    const { moto, proxy } = bed;
    await moto.reset();
    proxy.reset();
    const secrets = freshSecrets();
    const created = await step(bed, secrets);
    expect(created.code, created.stderr).to.equal(0);
    createCalls = proxy.mutatingCalls().length;
    const actions = proxy.mutatingCalls().map((c) => c.action);
    // An unheard success matters where it made a resource (a retry must find it, not make a second).
    firstOfEachAction = [...new Set(actions)].filter((a) => /^(Create|Allocate|Run)/.test(a)).map((a) => actions.indexOf(a) + 1);
    createPoints = boundaryCalls(actions);
    reference = await snapshotWorld(moto.endpoint);
    expect(reference.counts).to.include({ vpc: 1, subnet: 6, 'internet-gateway': 1, eip: 3, 'nat-gateway': 3 });
    expect(untagged(reference, CLUSTER)).to.deep.equal([]);
    proxy.reset();
    const deleted = await step(bed, secrets, ['--delete']);
    expect(deleted.code, deleted.stderr).to.equal(0);
    deleteCalls = proxy.mutatingCalls().length;
    const deleteActions = proxy.mutatingCalls().map((c) => c.action);
    // a delete repeats one path per resource: the first call of each action
    deletePoints = [...new Set(deleteActions)].map((a) => deleteActions.indexOf(a) + 1);
    const after = await snapshotWorld(moto.endpoint);
    expect(after.resources).to.deep.equal([]);
    expect(createCalls).to.be.greaterThan(10);
    expect(deleteCalls).to.be.greaterThan(10);
  });

  /**
   * After its Nth mutating call the executor is killed at its next call or
   * shortly after the answer; after its very last call there may be nothing
   * left to interrupt, and it may finish first. That is the same world.
   */
  function expectKilled(run: StepRun, n: number, total: number, label: string): void {
    if (n === total && run.signal === null) expect(run.code, `${label}: ${run.stderr}`).to.equal(0);
    else expect(run.signal, label).to.equal('SIGKILL');
  }

  function sameWorld(world: World, label: string): void {
    expect(world.counts, label).to.deep.equal(reference.counts);
    expect(untagged(world, CLUSTER), label).to.deep.equal([]);
  }

  it('a create killed after the first and the last call of each mutating action converges on rerun to exactly the reference world', async () => {
    expect(createPoints.length).to.be.greaterThan(10);
    await forEachOnBeds(beds, createPoints, async (bed, n) => {
      await bed.moto.reset();
      bed.proxy.reset();
      const secrets = freshSecrets();
      const killed = await step(bed, secrets, [], { n, when: 'after-response' });
      expectKilled(killed, n, createCalls, `kill after mutating call ${n}`);
      const rerun = await step(bed, secrets);
      expect(rerun.code, `rerun after kill at ${n}: ${rerun.stderr}`).to.equal(0);
      sameWorld(await snapshotWorld(bed.moto.endpoint), `kill after mutating call ${n}`);
    });
  });

  it('a create killed before the response of the first call of each action that makes a resource (it took effect, unheard) converges too', async () => {
    expect(firstOfEachAction.length).to.be.greaterThan(0);
    await forEachOnBeds(beds, firstOfEachAction, async (bed, n) => {
      await bed.moto.reset();
      bed.proxy.reset();
      const secrets = freshSecrets();
      const killed = await step(bed, secrets, [], { n, when: 'before-response' });
      expect(killed.signal, `kill before response ${n}`).to.equal('SIGKILL');
      const rerun = await step(bed, secrets);
      expect(rerun.code, `rerun after kill before response ${n}: ${rerun.stderr}`).to.equal(0);
      sameWorld(await snapshotWorld(bed.moto.endpoint), `kill before response ${n}`);
    });
  });

  it('a delete killed after the first call of each mutating action leaves nothing owned after the rerun', async () => {
    expect(deletePoints.length).to.be.greaterThan(0);
    await forEachOnBeds(beds, deletePoints, async (bed, n) => {
      await bed.moto.reset();
      bed.proxy.reset();
      const secrets = freshSecrets();
      const created = await step(bed, secrets);
      expect(created.code, created.stderr).to.equal(0);
      const killed = await step(bed, secrets, ['--delete'], { n, when: 'after-response' });
      expectKilled(killed, n, deleteCalls, `delete killed after mutating call ${n}`);
      const rerun = await step(bed, secrets, ['--delete']);
      expect(rerun.code, `delete rerun after kill at ${n}: ${rerun.stderr}`).to.equal(0);
      const world = await snapshotWorld(bed.moto.endpoint);
      expect(world.resources, `delete killed at ${n}`).to.deep.equal([]);
    });
  });
});
