/**
 * The kubeadm bootstrap: (1) rendering and sealing the bootstrap data of 100 machines (init, control
 * plane joins, workers), and checking one of each with the real `kubeadm config validate` and
 * `cloud-init schema`; (2) the whole cluster-apply of 3 control planes + 3 workers on the test bed's
 * booting machines, each step run in this process: its wall time split into capflow's own (CPU time
 * of this process, which also holds the machine supervisor's polling) and waiting, and the time from
 * the last Node Ready to join-workers' end. Needs root and the test bed for (2). Prints figures.
 *
 *   npm run build && node --import tsx bench/bootstrap.bench.ts [controlPlanes=3] [workers=3]
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { parseAllDocuments } from 'yaml';
import { AwsClients } from '../src/core/aws.js';
import { createLogger } from '../src/core/logger.js';
import { LocalSecretStore } from '../src/core/secrets.js';
import { runStep } from '../src/core/step-host.js';
import { ensureClusterPki } from '../src/bootstrap/pki.js';
import { groupBootstrapData } from '../src/bootstrap/machine-data.js';
import { locateAwsCli } from '../src/emulator/supervisor.js';
import { loadClusterSpec } from '../src/spec/index.js';
import { executors } from '../executors/index.js';
import { clientConfig, startMoto } from '../test/support/moto.js';
import { startTestSupervisor } from '../test/support/machines.js';
import { REPO_ROOT, requireTool, run, testbedVersions } from '../test/support/tools.js';

const controlPlanes = Number(process.argv[2] ?? 3);
const workers = Number(process.argv[3] ?? 3);
const version = testbedVersions().KUBERNETES_VERSION ?? 'v1.34.4';
const fixture = path.join(REPO_ROOT, 'test', 'fixtures', 'clusters', 'booted');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function clusterFolder(name: string, cps: number, ws: number, pools: boolean): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-bootstrap-'));
  const folder = path.join(dir, 'clusters', name);
  cpSync(fixture, folder, { recursive: true });
  if (!pools) rmSync(path.join(folder, 'pools.yaml'));
  writeFileSync(path.join(folder, 'cluster.env'), `CLUSTER_NAME=${name}\nKUBERNETES_VERSION=${version}\nAMI_ID=ami-12c6146b\nCONTROL_PLANE_MACHINE_COUNT=${cps}\nWORKER_MACHINE_COUNT=${ws}\n`);
  return dir;
}

// ---- (1) render 100 machines --------------------------------------------------------------------
{
  const repo = clusterFolder('render', 3, 3, true);
  const model = await loadClusterSpec(path.join(repo, 'clusters', 'render'));
  const store = new LocalSecretStore(path.join(repo, 'secrets'));
  const pki = await ensureClusterPki(store, model.name);
  const b = {
    model,
    region: 'us-east-1',
    endpoint: { host: 'render-apiserver-1.us-east-1.elb.amazonaws.com', port: 6443 },
    pki,
    resolveSecret: () => undefined,
    join: { token: 'abcdef.0123456789abcdef', ttl: '15m0s' },
    payloadSecret: (g: string) => `capflow/render/${g}`,
  };
  const roles = [
    ['control-plane', 'init'],
    ['control-plane', 'control-plane-join'],
    ['render-md-0', 'worker-join'],
    ['render-mp-0', 'worker-join'],
  ] as const;
  const times: number[] = [];
  const samples = new Map<string, { userData: string; payload: string }>();
  const t0 = performance.now();
  for (let i = 0; i < 100; i++) {
    const [group, role] = roles[i === 0 ? 0 : i < 3 ? 1 : 2 + (i % 2)]!;
    const t = performance.now();
    const sealed = await groupBootstrapData(b, group, role);
    times.push(performance.now() - t);
    samples.set(role, sealed);
  }
  const total = performance.now() - t0;
  console.log(`render + seal 100 machines: ${total.toFixed(0)} ms in all, median ${median(times).toFixed(2)} ms per machine`);
  // One of each role through the real tools, as a machine would see them.
  const cloudInit = requireTool('cloud-init');
  const kubeadm = requireTool('kubeadm');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-validate-'));
  const tv = performance.now();
  for (const [role, sealed] of samples) {
    writeFileSync(path.join(dir, 'user-data'), sealed.userData.replace(/^## template: jinja\n/, ''));
    const schema = await run(cloudInit, ['schema', '--config-file', path.join(dir, 'user-data')]);
    const config = /base64 -d > '\/run\/kubeadm\/[^']+' <<'CAPFLOW_EOF'\n([\s\S]*?)\nCAPFLOW_EOF/.exec(sealed.payload)?.[1];
    const text = Buffer.from((config ?? '').replace(/\n/g, ''), 'base64').toString('utf8').replace(/@@CAPFLOW_[A-Z_]+@@/g, 'ip-10-0-0-1.ec2.internal');
    const docs = parseAllDocuments(text).length;
    writeFileSync(path.join(dir, 'kubeadm.yaml'), text);
    const validate = await run(kubeadm, ['config', 'validate', '--config', path.join(dir, 'kubeadm.yaml')]);
    console.log(`  ${role}: cloud-init schema ${schema.code === 0 ? 'valid' : `INVALID ${schema.stderr}`}, kubeadm config validate (${docs} documents) ${validate.code === 0 ? 'ok' : `FAILED ${validate.stderr}`}`);
  }
  console.log(`  the real tools on 3 roles: ${(performance.now() - tv).toFixed(0)} ms`);
  rmSync(dir, { recursive: true, force: true });
  rmSync(repo, { recursive: true, force: true });
}

// ---- (2) cluster-apply on booted machines --------------------------------------------------------
const awsCli = locateAwsCli();
if (process.getuid?.() !== 0 || !awsCli) {
  console.log('cluster-apply on booted machines: skipped (needs root and the test bed: bash testbed/install.sh)');
  process.exit(0);
}
const moto = await startMoto();
const work = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-apply-'));
const endpointsFile = path.join(work, 'endpoints.json');
process.env.CAPFLOW_ENDPOINTS_FILE = endpointsFile;
const supervisor = await startTestSupervisor(moto.endpoint, { machineAwsCli: awsCli, endpointsFile, kubeletHeartbeatSeconds: 2 });
const repo = clusterFolder('bench', controlPlanes, workers, false);
const secrets = new LocalSecretStore(path.join(work, 'secrets'));
const { credentials, region } = clientConfig(moto.endpoint);
const aws = new AwsClients({ endpoint: moto.endpoint, region, clientConfig: { credentials } });
const rows: string[] = [];
let lastReadyToEnd = 0;
const wallStart = performance.now();
let ownTotal = 0;
for (const id of ['validate-spec', 'provision-vpc', 'kubeadm-init', 'launch-nodes', 'join-workers']) {
  const executor = executors.find((e) => e.id === id)!;
  const logs = new PassThrough();
  logs.resume();
  const stdout = new PassThrough();
  let summary = '';
  stdout.on('data', (d: Buffer) => (summary += d.toString()));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const params: Record<string, string> = ['kubeadm-init', 'launch-nodes', 'join-workers'].includes(id) ? { 'poll-interval': '1s' } : {};
  const res = await runStep(
    executor,
    { repoDir: repo, clusterPath: 'clusters/bench', revision: 'bench', dryRun: false, delete: false, params },
    { aws, secrets, log: createLogger({ stream: logs, format: 'json', level: 'info' }), stdout, outputsDir: path.join(work, 'out', id) },
  );
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const own = (cpu.user + cpu.system) / 1000;
  ownTotal += own;
  if (res.exitCode !== 0) throw new Error(`${id} failed: ${summary}`);
  if (id === 'join-workers') lastReadyToEnd = Number((JSON.parse(summary.trim().split('\n').at(-1)!) as { afterLastReadyMs?: number }).afterLastReadyMs ?? NaN);
  rows.push(`| ${id} | ${(wall / 1000).toFixed(1)} s | ${(own / 1000).toFixed(1)} s | ${((wall - own) / 1000).toFixed(1)} s |`);
}
const wallTotal = performance.now() - wallStart;
console.log(`\ncluster-apply, ${controlPlanes} control planes + ${workers} workers on booted machines (steps in process):`);
console.log('| step | wall | capflow CPU | waiting |\n| --- | --- | --- | --- |');
for (const r of rows) console.log(r);
console.log(`| all | ${(wallTotal / 1000).toFixed(1)} s | ${(ownTotal / 1000).toFixed(1)} s | ${((wallTotal - ownTotal) / 1000).toFixed(1)} s |`);
console.log(`last Node Ready → join-workers' end: ${lastReadyToEnd} ms (poll interval 1000 ms)`);
aws.destroy();
await supervisor.stop();
await moto.stop();
rmSync(work, { recursive: true, force: true });
rmSync(repo, { recursive: true, force: true });
