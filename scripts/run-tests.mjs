#!/usr/bin/env node
// Runs the mocha suites (test/**/*.test.ts, through tsx; `npm test` type-checks
// and builds dist/ first, which the CLI tests run) and ends with the one
// plain line CI reads: "tests: N passed, M failed". Before that it makes sure
// the test bed (testbed/install.sh) is installed, installing what is missing.
//   node scripts/run-tests.mjs [--grep PATTERN] [--no-install] [path-prefix ...]
// e.g. node scripts/run-tests.mjs --no-install test/unit/spec
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Mocha from 'mocha';
import { register } from 'tsx/esm/api';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
let grep;
let install = true;
const prefixes = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--grep') grep = args[++i];
  else if (args[i] === '--no-install') install = false;
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
  const slowest = [...fileMs].sort((a, b) => b[1] - a[1]).slice(0, 15);
  if (files.length > 1 && slowest.length > 0) {
    const total = [...fileMs.values()].reduce((a, b) => a + b, 0);
    console.log('');
    console.log(`slowest test files (of ${Math.round(total / 1000)} s in ${fileMs.size} files):`);
    for (const [file, ms] of slowest) console.log(`  ${String(Math.round(ms / 1000)).padStart(5)} s  ${file}`);
  }
  console.log('');
  console.log(`tests: ${passes} passed, ${failures} failed${pending ? `, ${pending} skipped` : ''}`);
  // Helpers start servers; make sure none keeps the process alive.
  setTimeout(() => process.exit(failures > 0 ? 1 : 0), 200).unref();
  process.exitCode = failures > 0 ? 1 : 0;
});
