/**
 * The EKS steps against moto (real CLI children through the fault proxy, whose EKS stand-in answers
 * addons and updates): AWS calls (mutating and read) and wall time of eks-control-plane and
 * eks-node-groups for examples/clusters/eks-managed: create, no-op rerun, delete. The network
 * (provision-vpc) is made first and not counted. moto makes clusters and node groups ACTIVE at
 * once, so the times are capflow's own work plus process start, not EKS's 10 minutes. Medians of
 * RUNS rounds (default 3), each in a fresh account. Prints figures; asserts nothing.
 *
 *   npm run build && node --import tsx bench/eks.bench.ts [RUNS]
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { awsTestEnv, startMoto } from '../test/support/moto.js';
import { startFaultProxy } from '../test/support/fault-proxy.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'dist', 'bin', 'capflow.js');
if (!existsSync(bin)) {
  console.error('dist/ is missing: run npm run build first');
  process.exit(1);
}
const RUNS = Number(process.argv[2] ?? 3);
const repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-eks-repo-'));
cpSync(path.join(root, 'examples', 'clusters', 'eks-managed'), path.join(repo, 'clusters', 'eks'), { recursive: true });

const moto = await startMoto({ iamManagedPolicies: true });
const proxy = await startFaultProxy({ target: moto.endpoint });

function capflow(secrets: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, 'step', ...args, '--repo', repo, '--cluster-dir', 'clusters/eks', ...(args[0]!.startsWith('eks-') ? ['-p', 'poll-interval=100ms'] : [])], {
      env: { ...process.env, ...awsTestEnv(proxy.endpoint), AWS_REGION: 'us-west-2', CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: secrets },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`capflow ${args.join(' ')} failed (${code}):\n${stderr.slice(-3000)}`))));
  });
}

type Figures = { ms: number; mutating: number; read: number };
const samples = new Map<string, Figures[]>();
async function measure(secrets: string, name: string, args: string[]): Promise<void> {
  const from = proxy.calls.length;
  const ms = await capflow(secrets, args);
  const calls = proxy.calls.slice(from);
  const mutating = calls.filter((c) => c.mutating).length;
  samples.set(name, [...(samples.get(name) ?? []), { ms, mutating, read: calls.length - mutating }]);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
try {
  for (let i = 0; i < RUNS; i++) {
    await moto.reset();
    proxy.reset();
    const secrets = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-eks-secrets-'));
    await capflow(secrets, ['provision-vpc']);
    await measure(secrets, 'control plane: create', ['eks-control-plane']);
    await measure(secrets, 'node groups: create', ['eks-node-groups']);
    await measure(secrets, 'control plane: no-op', ['eks-control-plane']);
    await measure(secrets, 'node groups: no-op', ['eks-node-groups']);
    await measure(secrets, 'node groups: delete', ['eks-node-groups', '--delete']);
    await measure(secrets, 'control plane: delete', ['eks-control-plane', '--delete']);
    rmSync(secrets, { recursive: true, force: true });
  }
  console.log(`EKS steps on examples/clusters/eks-managed against moto + the EKS stand-in, medians of ${RUNS} (${os.availableParallelism()} cores)`);
  console.log(`${'step'.padEnd(24)} ${'mutating'.padStart(8)} ${'read'.padStart(5)} ${'wall ms'.padStart(8)}`);
  for (const [name, xs] of samples) {
    console.log(`${name.padEnd(24)} ${String(median(xs.map((x) => x.mutating))).padStart(8)} ${String(median(xs.map((x) => x.read))).padStart(5)} ${String(Math.round(median(xs.map((x) => x.ms)))).padStart(8)}`);
  }
} finally {
  await proxy.stop();
  await moto.stop();
  rmSync(repo, { recursive: true, force: true });
}
