/**
 * Bring-your-own hosts prepared per minute at parallelism 1, 5 and 20: prepare-hosts (claims, the
 * read-only fact script, then the changes: kernel modules, sysctls, their files) over SSH on 20
 * hosts of the BYOH lab (test/support/byoh-lab.ts: booting machines with a real sshd; the package
 * managers and kernel are the lab's stand-ins, so no package is downloaded: the figure is capflow's
 * own work, SSH round trips and the hosts' shells). Before each round the hosts are made fresh again
 * (preparation undone, claims released). Medians of RUNS rounds per parallelism (default 3), plus
 * the no-op rerun. Prints figures; asserts nothing. Needs root and the test bed.
 *
 *   npm run build && node --import tsx bench/hosts.bench.ts [RUNS]
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalSecretStore } from '../src/core/secrets.js';
import { listClaims, releaseHost } from '../src/hosts/claims.js';
import { startByohLab } from '../test/support/byoh-lab.js';
import { BYOH_SSH_SECRET, writeByohCluster } from '../test/support/byoh-cluster.js';
import { testbedVersions } from '../test/support/tools.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'dist', 'bin', 'capflow.js');
if (!existsSync(bin)) {
  console.error('dist/ is missing: run npm run build first');
  process.exit(1);
}
const RUNS = Number(process.argv[2] ?? 3);
const HOSTS = 20;
const PARALLELISM = [1, 5, 20];

const bootStarted = performance.now();
const lab = await startByohLab({ hosts: Array.from({ length: HOSTS }, (_, i) => (i === 0 ? { name: 'cp-0', labels: { role: 'control-plane' } } : { name: `worker-${i}`, labels: { role: 'worker' } })) });
const bootMs = performance.now() - bootStarted;
const repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-hosts-repo-'));
const secrets = mkdtempSync(path.join(os.tmpdir(), 'capflow-bench-hosts-secrets-'));
const store = new LocalSecretStore(secrets);
await store.put(BYOH_SSH_SECRET, { 'ssh-privatekey': lab.clientPrivateKey });
const folder = writeByohCluster(repo, 'bench', lab, { version: testbedVersions().KUBERNETES_VERSION!, workers: HOSTS - 1 });
const env = { ...process.env, CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: secrets, CAPFLOW_LOG_LEVEL: 'warn' };

/** One prepare-hosts run in the lab; its wall time and the commands it ran. */
async function prepare(parallelism: number): Promise<{ ms: number; mutating: number; read: number }> {
  const t0 = performance.now();
  const r = await lab.exec([process.execPath, bin, 'step', 'prepare-hosts', '--repo', repo, '--cluster-dir', folder, '-p', `parallelism=${parallelism}`], { env, timeoutMs: 600_000 });
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`prepare-hosts exited ${r.code}: ${r.stderr.slice(-2000)}`);
  const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as { commands: { mutating: number; read: number } };
  return { ms, ...summary.commands };
}

/** Undo the preparation on every host (the stand-ins' state and the files written) and release the claims. */
async function freshHosts(): Promise<void> {
  await Promise.all(lab.hosts.map((h) => h.run('rm -f /var/log/capflow/stand-in-state.jsonl /etc/modules-load.d/capflow-kubernetes.conf /etc/sysctl.d/99-capflow-kubernetes.conf')));
  for (const c of await listClaims(store)) await releaseHost(store, c);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: string[][] = [];
try {
  for (const p of PARALLELISM) {
    const rounds: Array<{ ms: number; mutating: number; read: number }> = [];
    for (let i = 0; i < RUNS; i++) {
      await freshHosts();
      rounds.push(await prepare(p));
    }
    const ms = median(rounds.map((r) => r.ms));
    rows.push([`prepare ${HOSTS} fresh hosts`, String(p), `${(ms / 1000).toFixed(1)} s`, (HOSTS / (ms / 60_000)).toFixed(0), String(median(rounds.map((r) => r.mutating))), String(median(rounds.map((r) => r.read)))]);
  }
  const noop = await prepare(20);
  rows.push([`no-op rerun, ${HOSTS} hosts`, '20', `${(noop.ms / 1000).toFixed(1)} s`, (HOSTS / (noop.ms / 60_000)).toFixed(0), String(noop.mutating), String(noop.read)]);
} finally {
  await lab.stop();
  rmSync(repo, { recursive: true, force: true });
  rmSync(secrets, { recursive: true, force: true });
}

console.log(`BYOH lab: ${HOSTS} hosts booted in ${(bootMs / 1000).toFixed(1)} s; medians of ${RUNS} rounds; wall includes the step's process start`);
const table = [['run', 'parallelism', 'wall', 'hosts/min', 'mutating cmds', 'read cmds'], ...rows];
const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
for (const r of table) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
