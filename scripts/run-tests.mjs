#!/usr/bin/env node
// Runs the mocha suites (test/**/*.test.ts, through tsx; `npm test` type-checks
// and builds dist/ first, which the CLI tests run) and ends with the one
// plain line CI reads: "tests: N passed, M failed". Before that it makes sure
// the test bed (testbed/install.sh) is installed, installing what is missing.
//   node scripts/run-tests.mjs [--grep PATTERN] [--no-install] [--jobs N] [--record-durations] [path-prefix ...]
// e.g. node scripts/run-tests.mjs --no-install test/unit/spec
//
// With 20 files or more it runs them in two mocha processes at once (--jobs,
// CAPFLOW_TEST_JOBS; 1 runs them in this one): most suites wait on their peers
// (moto, kube-apiserver, booting machines) far more than they compute, so two
// halves take about half the time. Files go to the shards by their last
// measured duration (test/durations.json, --record-durations rewrites it),
// the longest first. The first shard's output streams; the others' follows it.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Mocha from 'mocha';
import { register } from 'tsx/esm/api';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DURATIONS = path.join(root, 'test', 'durations.json');
const args = process.argv.slice(2);
let grep;
let install = true;
let jobsArg;
let recordDurations = false;
const prefixes = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--grep') grep = args[++i];
  else if (args[i] === '--no-install') install = false;
  else if (args[i] === '--jobs') jobsArg = args[++i];
  else if (args[i] === '--record-durations') recordDurations = true;
  else prefixes.push(args[i].replace(/^dist\//, '').replace(/\.js$/, '.ts'));
}

if (install && existsSync(path.join(root, 'testbed/install.sh'))) {
  const check = spawnSync('bash', ['testbed/install.sh', '--check'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (check.status !== 0) {
    console.log('Test bed incomplete: running testbed/install.sh');
    const res = spawnSync('bash', ['testbed/install.sh'], { cwd: root, stdio: 'inherit' });
    if (res.status !== 0) {
      console.log('testbed/install.sh failed; tests that need the missing peers will fail and name it');
    }
  }
}

function walk(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}

const files = walk(path.join(root, 'test'))
  .filter((f) => prefixes.length === 0 || prefixes.some((p) => path.relative(root, f).startsWith(p)))
  .sort();
if (files.length === 0) {
  console.log('tests: 0 passed, 0 failed (no test files matched)');
  process.exit(1);
}

// Safety net: tests talk only to loopback. A test (or a child it starts) that
// forgets to point AWS at moto hits a closed loopback port and fails, instead
// of reaching for real AWS or the instance metadata address.
process.env.AWS_ENDPOINT_URL ??= 'http://127.0.0.1:9';
process.env.AWS_EC2_METADATA_DISABLED = 'true';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.env.AWS_ACCESS_KEY_ID ??= 'testing';
process.env.AWS_SECRET_ACCESS_KEY ??= 'testing';
process.env.AWS_REGION ??= 'us-east-1';

const shard = process.env.CAPFLOW_TEST_SHARD;
const jobs = Number(jobsArg ?? process.env.CAPFLOW_TEST_JOBS ?? (files.length >= 20 ? 2 : 1));
if (!Number.isInteger(jobs) || jobs < 1) {
  console.log(`--jobs (CAPFLOW_TEST_JOBS) must be a whole number of at least 1, not "${jobsArg ?? process.env.CAPFLOW_TEST_JOBS}"`);
  process.exit(2);
}
if (!shard && jobs > 1 && files.length > 1) await runShards(Math.min(jobs, files.length));

register();
const mocha = new Mocha({ timeout: 120_000, slow: 5_000, reporter: 'spec', ...(grep ? { grep } : {}) });
for (const f of files) mocha.addFile(f);
await mocha.loadFilesAsync();
const runner = mocha.run();
// Wall time per test file (its top-level suites, hooks included): what to
// trim when the CI run grows past its budget.
const fileMs = new Map();
const started = new Map();
runner.on('suite', (suite) => {
  if (suite.parent?.root && suite.file) started.set(suite, Date.now());
});
runner.on('suite end', (suite) => {
  const t = started.get(suite);
  if (t === undefined) return;
  const file = path.relative(root, suite.file);
  fileMs.set(file, (fileMs.get(file) ?? 0) + Date.now() - t);
});
runner.on('end', () => {
  const { passes = 0, failures = 0, pending = 0 } = runner.stats ?? {};
  if (!shard && files.length > 1) printSlowest(fileMs);
  if (process.env.CAPFLOW_TEST_TIMINGS_OUT) writeFileSync(process.env.CAPFLOW_TEST_TIMINGS_OUT, JSON.stringify({ passes, failures, pending, files: Object.fromEntries(fileMs) }));
  else if (recordDurations) writeDurations(fileMs);
  console.log('');
  // a shard's own count is not the line CI reads: the parent sums the shards into it
  console.log(`${shard ? `shard ${shard}: ` : 'tests: '}${passes} passed, ${failures} failed${pending ? `, ${pending} skipped` : ''}`);
  // Helpers start servers; make sure none keeps the process alive.
  setTimeout(() => process.exit(failures > 0 ? 1 : 0), 200).unref();
  process.exitCode = failures > 0 ? 1 : 0;
});

function printSlowest(fileMs) {
  const slowest = [...fileMs].sort((a, b) => b[1] - a[1]).slice(0, 15);
  if (slowest.length === 0) return;
  const total = [...fileMs.values()].reduce((a, b) => a + b, 0);
  console.log('');
  console.log(`slowest test files (of ${Math.round(total / 1000)} s in ${fileMs.size} files):`);
  for (const [file, ms] of slowest) console.log(`  ${String(Math.round(ms / 1000)).padStart(5)} s  ${file}`);
}

function writeDurations(fileMs) {
  const seconds = Object.fromEntries([...fileMs].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([f, ms]) => [f, Math.max(1, Math.round(ms / 1000))]));
  writeFileSync(DURATIONS, `${JSON.stringify(seconds, null, 2)}\n`);
  console.log(`recorded the duration of ${fileMs.size} files in ${path.relative(root, DURATIONS)}`);
}

/** The longest first, each to the shard with the least so far; a file not measured yet counts 5 s. */
function assignShards(list, n) {
  const known = existsSync(DURATIONS) ? JSON.parse(readFileSync(DURATIONS, 'utf8')) : {};
  const weight = (f) => known[path.relative(root, f)] ?? 5;
  const shards = Array.from({ length: n }, () => ({ files: [], seconds: 0 }));
  for (const f of [...list].sort((a, b) => weight(b) - weight(a))) {
    const least = shards.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    least.files.push(f);
    least.seconds += weight(f);
  }
  for (const s of shards) s.files.sort();
  return shards;
}

/** Runs the files in n child processes of this script, then prints one summary line for all. */
async function runShards(n) {
  const shards = assignShards(files, n);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'capflow-shards-'));
  console.log(`running ${files.length} test files in ${n} processes at once (--jobs 1 for one): ${shards.map((s, i) => `shard ${i + 1} ${s.files.length} files, about ${s.seconds} s`).join('; ')}`);
  const started = Date.now();
  const runs = shards.map((s, i) => {
    const out = path.join(tmp, `shard-${i + 1}.json`);
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--no-install', ...(grep ? ['--grep', grep] : []), ...s.files.map((f) => path.relative(root, f))], {
      cwd: root,
      env: { ...process.env, CAPFLOW_TEST_SHARD: `${i + 1}/${n}`, CAPFLOW_TEST_TIMINGS_OUT: out },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const held = [];
    const pass = (stream) => (chunk) => (i === 0 ? stream.write(chunk) : held.push(chunk));
    child.stdout.on('data', pass(process.stdout));
    child.stderr.on('data', pass(process.stderr));
    const done = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    return { out, held, done, seconds: 0 };
  });
  const totals = { passes: 0, failures: 0, pending: 0 };
  const fileMs = new Map();
  for (const [i, run] of runs.entries()) {
    const { code, signal } = await run.done;
    if (i > 0) {
      console.log(`\n=== shard ${i + 1} of ${n} (its output, held while shard 1 ran)`);
      for (const chunk of run.held) process.stdout.write(chunk);
    }
    if (existsSync(run.out)) {
      const r = JSON.parse(readFileSync(run.out, 'utf8'));
      totals.passes += r.passes;
      totals.failures += r.failures;
      totals.pending += r.pending;
      for (const [f, ms] of Object.entries(r.files)) fileMs.set(f, ms);
    } else {
      console.log(`shard ${i + 1} of ${n} ended (${signal ?? `exit ${code}`}) before its summary: counted as one failure`);
      totals.failures += 1;
    }
  }
  rmSync(tmp, { recursive: true, force: true });
  printSlowest(fileMs);
  if (recordDurations) writeDurations(fileMs);
  console.log(`\nall shards done in ${Math.round((Date.now() - started) / 1000)} s`);
  console.log(`tests: ${totals.passes} passed, ${totals.failures} failed${totals.pending ? `, ${totals.pending} skipped` : ''}`);
  process.exit(totals.failures > 0 ? 1 : 0);
}
