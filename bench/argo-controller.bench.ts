/**
 * cluster-apply under Argo's real workflow-controller against the local runner, on the same spec
 * (the aws-self-managed example, network only: validate-spec and provision-vpc against moto), and
 * the controller-side overhead per step: the time a step's pod waits for the controller (from the
 * previous step's process exit, or the submission, to the pod stand-in starting the process) and
 * the time from the last process exit to the Workflow's Succeeded. Both runners start the same
 * executor processes (the pods from the image bundle, the local runner from dist/), so the
 * difference is the controller and the pod lifecycle. The controller runs with Argo's default
 * DEFAULT_REQUEUE_TIME (10s) and with 1s (Argo's own test setting); the pod stand-in polls every
 * 50 ms. First a create in a fresh moto for each, then ROUNDS no-op reruns; medians.
 *
 *   npm run build && node --import tsx bench/argo-controller.bench.ts [rounds=3]
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { podNodes, startArgoBed, type ArgoBed } from '../test/support/argo.js';
import { git } from '../test/support/git-remote.js';
import { startGitHttpServer } from '../test/support/git-http.js';
import { awsTestEnv, startMoto, TEST_REGION } from '../test/support/moto.js';
import { REPO_ROOT } from '../test/support/tools.js';

const rounds = Number(process.argv[2] ?? 3);
const CLUSTER = 'dev';
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

const root = mkdtempSync(path.join(tmpdir(), 'capflow-bench-argo-'));
const work = path.join(root, 'work');
mkdirSync(path.join(work, 'clusters'), { recursive: true });
cpSync(path.join(REPO_ROOT, 'examples', 'clusters', 'aws-self-managed'), path.join(work, 'clusters', CLUSTER), { recursive: true });
await git(work, 'init', '-q', '-b', 'main');
await git(work, 'add', '-A');
await git(work, 'commit', '-q', '-m', 'dev');
const revision = await git(work, 'rev-parse', 'HEAD');
await git(root, 'clone', '-q', '--bare', work, path.join(root, 'remote.git'));
const server = await startGitHttpServer({ projectRoot: root });
const params = ['-p', `repo=${server.url('remote.git')}`, '-p', `revision=${revision}`, '-p', `cluster-path=clusters/${CLUSTER}`, '-p', `cluster-name=${CLUSTER}`, '-p', 'machines=false'];

/** The local runner: wall time of `capflow run cluster-apply`, and its steps' process time. */
async function localRun(endpoint: string, secrets: string): Promise<number> {
  const t0 = performance.now();
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'bin', 'capflow.js'), 'run', 'cluster-apply', ...params.map((p) => p.replace(/^repo=.*/, `repo=${work}`))], {
      env: { ...process.env, ...awsTestEnv(endpoint), CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: secrets, CAPFLOW_LOG_FORMAT: 'json' },
      stdio: 'ignore',
    });
    child.on('close', resolve);
  });
  if (code !== 0) throw new Error(`local runner: exit ${code}`);
  return performance.now() - t0;
}

interface ArgoFigures {
  wall: number;
  steps: number;
  /** Per step: pod waiting for the controller (previous exit or submission -> process start). */
  waits: number[];
  /** Last process exit -> the Workflow seen Succeeded. */
  tail: number;
}

async function argoRun(bed: ArgoBed): Promise<ArgoFigures> {
  const t0 = Date.now();
  const name = await bed.submit(['--from', 'workflowtemplate/cluster-apply', ...params]);
  const wf = await bed.waitForWorkflow(name, { timeoutMs: 300_000 });
  const seenDone = Date.now();
  if (wf.status?.phase !== 'Succeeded') throw new Error(await bed.explain(name));
  const runs = bed.pods.runsOf(name).sort((a, b) => a.startedAt - b.startedAt);
  if (runs.length !== podNodes(wf).length) throw new Error(`${runs.length} processes for ${podNodes(wf).length} pod nodes`);
  let last = t0;
  const waits: number[] = [];
  for (const r of runs) {
    waits.push(r.startedAt - last);
    last = r.finishedAt!;
  }
  return { wall: seenDone - t0, steps: runs.reduce((n, r) => n + (r.finishedAt! - r.startedAt), 0), waits, tail: seenDone - last };
}

const rows: string[] = [];
const secrets = mkdtempSync(path.join(tmpdir(), 'capflow-bench-secrets-'));
const localMoto = await startMoto();
try {
  const create = await localRun(localMoto.endpoint, secrets);
  const noop: number[] = [];
  for (let i = 0; i < rounds; i++) noop.push(await localRun(localMoto.endpoint, secrets));
  rows.push(`| local runner | ${s(create)} | ${s(median(noop))} | | |`);
} finally {
  await localMoto.stop();
  rmSync(secrets, { recursive: true, force: true });
}

for (const requeueTime of ['10s', '1s']) {
  const moto = await startMoto();
  const bed = await startArgoBed({
    requeueTime,
    podPollMs: 50,
    chartValues: {
      executor: {
        extraEnv: Object.entries({ ...awsTestEnv(moto.endpoint), AWS_REGION: TEST_REGION }).map(([name, value]) => ({ name, value })),
      },
    },
  });
  try {
    const create = await argoRun(bed);
    const noop: ArgoFigures[] = [];
    for (let i = 0; i < rounds; i++) noop.push(await argoRun(bed));
    const waits = noop.flatMap((f) => f.waits);
    rows.push(
      `| Argo controller (requeue ${requeueTime}) | ${s(create.wall)} | ${s(median(noop.map((f) => f.wall)))} | ${s(median(waits))} (max ${s(Math.max(...waits))}) | ${s(median(noop.map((f) => f.tail)))} |`,
    );
  } finally {
    await bed.stop();
    await moto.stop();
  }
}
await server.stop();
rmSync(root, { recursive: true, force: true });

console.log(`cluster-apply, aws-self-managed network only (validate-spec, provision-vpc); no-op: median of ${rounds}`);
console.log('| runner | create | no-op rerun | controller wait per step | last exit to Succeeded |');
console.log('| --- | --- | --- | --- | --- |');
for (const r of rows) console.log(r);
