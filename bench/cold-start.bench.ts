/**
 * Cold start of each step as an Argo pod pays it, in a fresh node process each time, median of RUNS
 * runs, wall time, against bare `node -e 0`:
 *  - `capflow step <id> --help` (loading that step's executor and what it imports, nothing else) and
 *    `capflow step --help` (every executor), from the tsc build (dist/) and from the image's bundle
 *    (scripts/bundle.mjs, built into a temp dir by test/support/image-root.ts, run from there with the
 *    image's ENV);
 *  - a real step to its first log line (stderr or stdout): `capflow step <id> --cluster-dir
 *    examples/clusters/aws-small`, local secret store in a temp dir, AWS at a closed loopback port
 *    with no retries (validate-spec logs before its work; the others log once they have loaded the
 *    spec and found no network, or failed their first AWS call), then killed;
 * and the image's size: the bundle's /app, the test bed's helm and kubectl, and the base image.
 * The goal: a step under 150 ms over bare node.
 *
 *   npm run build && node --import tsx bench/cold-start.bench.ts [runs=7]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { executorModules } from '../executors/lazy.js';
import { imageRoot, podTmpEnv } from '../test/support/image-root.js';
import { REPO_ROOT, testbedBinDir } from '../test/support/tools.js';

const runs = Number(process.argv[2] ?? 7);
const dist = path.join(REPO_ROOT, 'dist', 'bin', 'capflow.js');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ids = Object.keys(executorModules);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'capflow-cold-start-'));
process.once('exit', () => rmSync(tmp, { recursive: true, force: true }));

function wall(args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { stdio: 'ignore', env, cwd: tmp });
    times.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`${args.join(' ')}: exit ${r.status}`);
  }
  return median(times);
}

/** Milliseconds from spawn to the first complete line on stdout or stderr; the process is then killed. */
function firstLineOnce(args: string[], env: NodeJS.ProcessEnv): Promise<{ ms: number; line: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { env, cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    let done = false;
    const onData = (d: Buffer) => {
      if (done) return;
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      done = true;
      const ms = performance.now() - t0;
      child.kill('SIGKILL');
      resolve({ ms, line: buf.slice(0, nl) });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code) => {
      if (!done) reject(new Error(`${args.join(' ')}: exit ${code} before any line`));
    });
  });
}

async function firstLine(args: string[], env: NodeJS.ProcessEnv): Promise<{ ms: number; message: string }> {
  const times: number[] = [];
  let line = '';
  for (let i = 0; i < runs; i++) {
    const r = await firstLineOnce(args, env);
    times.push(r.ms);
    line = r.line;
  }
  let message = line;
  try {
    const j = JSON.parse(line) as { message?: string; status?: string };
    message = j.message ?? `summary: ${j.status}`;
  } catch {
    // not a JSON line
  }
  return { ms: median(times), message };
}

const root = await imageRoot();
const bundle = root.entry;
// the environment of a pod: the image's ENV, its /tmp, no AWS behind the endpoint
const stepEnv: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  ...podTmpEnv(tmp),
  ...root.env,
  CAPFLOW_LOG_FORMAT: 'json',
  CAPFLOW_SECRET_STORE: 'local',
  CAPFLOW_SECRETS_DIR: path.join(tmp, 'secrets'),
  AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'bench',
  AWS_SECRET_ACCESS_KEY: 'bench',
  AWS_EC2_METADATA_DISABLED: 'true',
  CAPFLOW_AWS_RETRIES: '0',
};
const distEnv: NodeJS.ProcessEnv = { ...stepEnv, CAPFLOW_SCHEMAS_DIR: process.env.CAPFLOW_SCHEMAS_DIR ?? path.resolve(REPO_ROOT, '..', 'shared', 'schemas') };
const cluster = path.join(REPO_ROOT, 'examples', 'clusters', 'aws-small');
const stepArgs = (entry: string, id: string) => [entry, 'step', id, '--cluster-dir', cluster, '--outputs', mkdtempSync(path.join(tmp, 'out-'))];

const bare = wall(['-e', '0']);
const over = (ms: number) => `${ms >= bare ? '+' : '−'}${Math.abs(ms - bare).toFixed(0)} ms`;
const rows = [`| bare node | ${bare.toFixed(0)} ms | | | |`];
const firstLines: string[] = [];
for (const id of ids) {
  const d = wall([dist, 'step', id, '--help'], distEnv);
  const b = wall([bundle, 'step', id, '--help'], stepEnv);
  rows.push(`| step ${id} --help | ${d.toFixed(0)} ms | ${over(d)} | ${b.toFixed(0)} ms | ${over(b)} |`);
}
for (const id of ids) {
  const d = await firstLine(stepArgs(dist, id), distEnv);
  const b = await firstLine(stepArgs(bundle, id), stepEnv);
  rows.push(`| step ${id} → first log line | ${d.ms.toFixed(0)} ms | ${over(d.ms)} | ${b.ms.toFixed(0)} ms | ${over(b.ms)} |`);
  firstLines.push(`  ${id}: "${b.message}"`);
}
const allDist = wall([dist, 'step', '--help'], distEnv);
const allBundle = wall([bundle, 'step', '--help'], stepEnv);
rows.push(`| step --help (every executor) | ${allDist.toFixed(0)} ms | ${over(allDist)} | ${allBundle.toFixed(0)} ms | ${over(allBundle)} |`);
const help = [wall([dist, '--help'], distEnv), wall([bundle, '--help'], stepEnv)] as const;
rows.push(`| --help | ${help[0].toFixed(0)} ms | ${over(help[0])} | ${help[1].toFixed(0)} ms | ${over(help[1])} |`);

console.log(`cold start, median of ${runs} fresh processes (node ${process.version}, ${os.cpus().length} cores)`);
console.log('| command | dist (tsc) | over bare node | bundle (image) | over bare node |');
console.log('| --- | --- | --- | --- | --- |');
for (const r of rows) console.log(r);
console.log('first log line of each step (bundle):');
for (const l of firstLines) console.log(l);

// --- the image's size ---
function duBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? duBytes(p) : e.isFile() ? statSync(p).size : 0;
  }
  return n;
}
const mb = (n: number) => (n < 1e6 ? `${(n / 1e3).toFixed(0)} kB` : `${(n / 1e6).toFixed(1)} MB`);
const app = duBytes(root.dir);
const code = duBytes(path.join(root.dir, 'dist', 'bin'));
const sub = (p: string) => duBytes(path.join(root.dir, p));
const binSize = (name: string) => {
  try {
    return statSync(realpathSync(path.join(testbedBinDir(), name))).size;
  } catch {
    return undefined;
  }
};
const helm = binSize('helm');
const kubectl = binSize('kubectl');
// node:20-bookworm-slim: not measurable without a Docker engine; its uncompressed size as the
// registry reports it (about 190 to 200 MB over the 20.x tags), before the Dockerfile's changes.
const BASE_MB = 195;
console.log('image size (uncompressed):');
console.log(`| part | size |`);
console.log(`| --- | --- |`);
console.log(`| /app: code (dist/bin: entry + chunks) | ${mb(code)} |`);
console.log(`| /app: generated validators | ${mb(sub('dist/src/spec/generated'))} |`);
console.log(`| /app: schemas (capi, capi-v1.11, argo) | ${mb(sub('schemas'))} |`);
console.log(`| /app: the rest (CRDs, WorkflowTemplates, package.json) | ${mb(app - code - sub('dist/src/spec/generated') - sub('schemas'))} |`);
console.log(`| /app total | ${mb(app)} |`);
console.log(`| helm (test bed's build) | ${helm === undefined ? 'not installed' : mb(helm)} |`);
console.log(`| kubectl (test bed's build) | ${kubectl === undefined ? 'not installed' : mb(kubectl)} |`);
console.log(`| node:20-bookworm-slim base (stated, not measured: no Docker engine here) | ~${BASE_MB} MB |`);
console.log(`| capflow's layers (/app + helm + kubectl) | ${mb(app + (helm ?? 0) + (kubectl ?? 0))} |`);
console.log('(plus git, openssh-client and ca-certificates from Debian, less the npm, corepack and yarn the Dockerfile removes)');
