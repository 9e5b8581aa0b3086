/**
 * launch-nodes against moto (the real CLI child through the fault proxy): AWS calls (mutating and
 * read) and wall time for a create of 3 control plane machines and two MachineDeployments of 10 over
 * 3 AZs, the no-op rerun, a scale-up of one MachineDeployment to 30, a rolling update of those 30
 * machines with maxSurge 3 / maxUnavailable 0, and the delete. Placeholder user data (no bootstrap
 * step yet). Prints figures; asserts nothing. RunInstances is rate-limited client-side (5 burst,
 * 2/s), which dominates the wall time of the rolling update.
 *
 *   npm run build && node --import tsx bench/launch-nodes.bench.ts
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateKeyPairCommand, DescribeImagesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { LocalSecretStore } from '../src/core/secrets.js';
import { awsTestEnv, clientConfig, startMoto } from '../test/support/moto.js';
import { startFaultProxy } from '../test/support/fault-proxy.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'dist', 'bin', 'capflow.js');
if (!existsSync(bin)) {
  console.error('dist/ is missing: run npm run build first');
  process.exit(1);
}

const repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-nodes-repo-'));
const secrets = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-nodes-secrets-'));
cpSync(path.join(root, 'examples', 'clusters', 'aws-self-managed'), path.join(repo, 'clusters', 'dev'), { recursive: true });
const file = (f: string) => path.join(repo, 'clusters', 'dev', f);
const edit = (f: string, from: string | RegExp, to: string) => writeFileSync(file(f), readFileSync(file(f), 'utf8').replace(from, to));

const moto = await startMoto();
const proxy = await startFaultProxy({ target: moto.endpoint });

function capflow(args: string[]): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, ...awsTestEnv(proxy.endpoint), CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: secrets },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`capflow ${args.join(' ')} failed (${code}):\n${stderr}`))));
  });
}

const rows: string[] = [];
async function measure(name: string, args: string[]): Promise<void> {
  proxy.reset();
  const ms = await capflow(args);
  const mutating = proxy.mutatingCalls();
  const byAction: Record<string, number> = {};
  for (const c of mutating) byAction[c.action] = (byAction[c.action] ?? 0) + 1;
  const read = proxy.calls.length - mutating.length;
  rows.push(
    `${name.padEnd(22)} ${String(mutating.length).padStart(8)}  ${String(read).padStart(4)}  ${String(mutating.length + read).padStart(5)}  ${String(Math.round(ms)).padStart(7)}  ${Object.entries(byAction)
      .map(([a, n]) => `${a} ${n}`)
      .join(', ')}`,
  );
}

try {
  const ec2 = new EC2Client(clientConfig(moto.endpoint));
  const ami = (await ec2.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }))).Images![0]!.ImageId!;
  await ec2.send(new CreateKeyPairCommand({ KeyName: 'capflow-dev' }));
  ec2.destroy();
  for (const f of ['control-plane.yaml', 'workers.yaml']) {
    edit(f, /\n {6}iamInstanceProfile: .*\n/g, '\n');
    edit(f, /(\n {6}instanceType: .*\n)/g, `$1      ami:\n        id: ${ami}\n`);
  }
  edit('workers.yaml', 'replicas: 3\n', 'replicas: 10\n');
  edit('workers.yaml', 'replicas: 2\n', 'replicas: 10\n');
  const store = new LocalSecretStore(secrets);
  await capflow(['step', 'provision-vpc', '--repo', repo, '--cluster-dir', 'clusters/dev']);
  await store.put('capflow-aws-dev-bootstrap', { 'control-plane': '#cloud-config\n', 'aws-dev-md-0': '#cloud-config\n', 'aws-dev-md-spot': '#cloud-config\n' });
  const step = ['step', 'launch-nodes', '--repo', repo, '--cluster-dir', 'clusters/dev', '-p', 'poll-interval=200ms'];
  await measure('create (3 + 10 + 10)', step);
  await measure('no-op rerun', step);
  edit('workers.yaml', 'replicas: 10\n', 'replicas: 30\n');
  edit('workers.yaml', 'maxSurge: 1\n', 'maxSurge: 3\n');
  await measure('scale md-0 to 30', step);
  edit('workers.yaml', 'size: 80\n', 'size: 100\n');
  await measure('roll 30, maxSurge 3', step);
  await measure('delete (43 machines)', [...step, '--delete']);
  console.log('launch-nodes against moto (CLI child), aws-self-managed example, 3 AZs, placeholder user data');
  console.log('run                    mutating  read  total  wall ms  mutating calls');
  for (const r of rows) console.log(r);
} finally {
  await proxy.stop();
  await moto.stop();
}
