/**
 * provision-vpc against moto: AWS calls (mutating and read, recorded by the
 * fault proxy) for create, no-op rerun and delete of the aws-self-managed
 * example (3 AZs, a NAT gateway per AZ, an NLB), and wall time of the step
 * and of cluster-apply/cluster-delete under the local runner. Prints medians,
 * and the delete's calls by action; asserts nothing. Targets (issue 4): create <= 50 mutating calls; rerun 0
 * mutating and <= 15 reads; delete <= 40 calls.
 *
 *   npm run build && node --import tsx bench/provision-vpc.bench.ts [rounds]
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { awsTestEnv, startMoto } from '../test/support/moto.js';
import { startFaultProxy } from '../test/support/fault-proxy.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'dist', 'bin', 'capflow.js');
const rounds = Number(process.argv[2] ?? 5);
if (!existsSync(bin)) {
  console.error('dist/ is missing: run npm run build first');
  process.exit(1);
}

const repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-repo-'));
cpSync(path.join(root, 'examples', 'clusters', 'aws-self-managed'), path.join(repo, 'clusters', 'dev'), { recursive: true });

const moto = await startMoto();
const proxy = await startFaultProxy({ target: moto.endpoint });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Runs capflow as a child (asynchronously: the fault proxy lives in this process's event loop). */
function capflow(args: string[], env: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, ...awsTestEnv(proxy.endpoint), CAPFLOW_SECRET_STORE: 'local', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`capflow ${args.join(' ')} failed (${code}):\n${stderr}`))));
  });
}

interface Sample { mutating: number; read: number; ms: number; byAction: Record<string, number> }
const samples: Record<string, Sample[]> = { create: [], rerun: [], delete: [], 'runner apply': [], 'runner delete': [] };
/** Why a runner row failed: cluster-apply runs the whole DAG, whose machine steps need an AMI and machines moto lacks. */
const failures: Record<string, string> = {};

async function measure(name: string, fn: () => Promise<number>, options: { mayFail?: boolean } = {}): Promise<void> {
  proxy.reset();
  let ms: number;
  try {
    ms = await fn();
  } catch (err) {
    if (!options.mayFail) throw err;
    failures[name] ??= (/"code":"([A-Z_]+)"/.exec(String(err)) ?? [])[1] ?? 'failed';
    return;
  }
  const mutating = proxy.mutatingCalls().length;
  const byAction: Record<string, number> = {};
  for (const c of proxy.calls) byAction[`${c.service}:${c.action}`] = (byAction[`${c.service}:${c.action}`] ?? 0) + 1;
  samples[name]!.push({ mutating, read: proxy.calls.length - mutating, ms, byAction });
}

try {
  for (let i = 0; i < rounds; i++) {
    await moto.reset();
    const secrets = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-secrets-'));
    const env = { CAPFLOW_SECRETS_DIR: secrets };
    const step = ['step', 'provision-vpc', '--repo', repo, '--cluster-dir', 'clusters/dev'];
    await measure('create', () => capflow(step, env));
    await measure('rerun', () => capflow(step, env));
    await measure('delete', () => capflow([...step, '--delete'], env));
    const params = ['-p', `repo=${repo}`, '-p', 'revision=HEAD', '-p', 'cluster-path=clusters/dev', '-p', 'cluster-name=aws-dev'];
    const runDir = ['--run-dir', mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-runs-')), '--plain'];
    await measure('runner apply', () => capflow(['run', 'cluster-apply', ...runDir, ...params], env), { mayFail: true });
    await measure('runner delete', () => capflow(['run', 'cluster-delete', ...runDir, ...params], env), { mayFail: true });
  }
  console.log(`provision-vpc against moto, aws-self-managed example (3 AZs, NAT per AZ, NLB), median of ${rounds} rounds`);
  console.log('run            mutating  read  total  wall ms');
  for (const [name, list] of Object.entries(samples)) {
    if (list.length === 0) {
      console.log(`${name.padEnd(14)} failed (${failures[name]}): not measured`);
      continue;
    }
    const m = median(list.map((s) => s.mutating));
    const r = median(list.map((s) => s.read));
    console.log(`${name.padEnd(14)} ${String(m).padStart(8)}  ${String(r).padStart(4)}  ${String(m + r).padStart(5)}  ${String(Math.round(median(list.map((s) => s.ms)))).padStart(7)}`);
  }
  // Which calls the delete makes (the last round's), to see where a budget goes.
  const last = samples.delete!.at(-1)!.byAction;
  console.log(`delete by action (last round): ${Object.entries(last).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k} ${v}`).join(', ')}`);
} finally {
  await proxy.stop();
  await moto.stop();
}
