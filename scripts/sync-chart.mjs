#!/usr/bin/env node
// Copies workflow-templates/*.yaml, byte for byte, into charts/capflow/files/workflow-templates/,
// and sets the chart's appVersion to package.json's version. The chart's
// templates/workflow-templates.yaml reads the copies with .Files.Get (so Argo's {{...}} stay data,
// never Helm templates) and injects the release's namespace, labels, image and executor
// ServiceAccount. The chart never forks a DAG: workflow-templates/ stays the single source, this copy
// is derived (run by `npm run build`; test/integration/chart.test.ts fails when it is stale).
// It also writes the IAM policy of each step that calls AWS, for any capflow cluster
// (src/aws/iam-policy.ts, from dist/: run after tsc), into charts/capflow/files/iam-policies/
// (<step>.json, and all-steps.json for one role that runs every step).
//
//   node scripts/sync-chart.mjs          write the copy (removes files no longer in the source)
//   node scripts/sync-chart.mjs --check  write nothing; exit 1 and name the files that differ
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'workflow-templates');
const target = join(root, 'charts', 'capflow', 'files', 'workflow-templates');
const chartFile = join(root, 'charts', 'capflow', 'Chart.yaml');
const check = process.argv.includes('--check');

const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
const chartText = readFileSync(chartFile, 'utf8');
if (!/^appVersion: .*$/m.test(chartText)) throw new Error(`${chartFile}: no appVersion line`);
const chartWanted = chartText.replace(/^appVersion: .*$/m, `appVersion: "${version}"`);
const chartStale = chartWanted !== chartText;

const policyDir = join(root, 'charts', 'capflow', 'files', 'iam-policies');
const { awsSteps, buildPolicy } = await import(pathToFileURL(join(root, 'dist', 'src', 'aws', 'iam-policy.js')).href);
const policies = new Map([...awsSteps().map((step) => [`${step}.json`, buildPolicy([step])]), ['all-steps.json', buildPolicy(awsSteps())]]);
const policyText = (doc) => `${JSON.stringify(doc, null, 2)}\n`;
const jsonFiles = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')).sort() : []);
const policiesStale = jsonFiles(policyDir).filter((f) => !policies.has(f));
const policiesChanged = [...policies.keys()].filter((f) => !existsSync(join(policyDir, f)) || readFileSync(join(policyDir, f), 'utf8') !== policyText(policies.get(f)));

const yamlFiles = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort() : []);
const wanted = yamlFiles(source);
const present = yamlFiles(target);
const stale = present.filter((f) => !wanted.includes(f));
const changed = wanted.filter((f) => !present.includes(f) || !readFileSync(join(source, f)).equals(readFileSync(join(target, f))));

if (check) {
  if (changed.length + stale.length + policiesChanged.length + policiesStale.length > 0 || chartStale) {
    console.error(
      `charts/capflow is out of date (WorkflowTemplates changed: ${changed.join(', ') || 'none'}; stale: ${stale.join(', ') || 'none'}; ` +
        `IAM policies changed: ${[...policiesChanged, ...policiesStale].join(', ') || 'none'}; ` +
        `appVersion ${chartStale ? `is not ${version}` : 'ok'}); run: npm run build (or node scripts/sync-chart.mjs after tsc)`,
    );
    process.exit(1);
  }
  process.exit(0);
}

mkdirSync(target, { recursive: true });
for (const f of changed) writeFileSync(join(target, f), readFileSync(join(source, f)));
for (const f of stale) rmSync(join(target, f));
if (chartStale) writeFileSync(chartFile, chartWanted);
mkdirSync(policyDir, { recursive: true });
for (const f of policiesChanged) writeFileSync(join(policyDir, f), policyText(policies.get(f)));
for (const f of policiesStale) rmSync(join(policyDir, f));
console.log(`Synced ${wanted.length} WorkflowTemplates into charts/capflow/files/workflow-templates/ (${changed.length} written, ${stale.length} removed), ${policies.size} IAM policies into files/iam-policies/ (${policiesChanged.length} written), appVersion ${version}`);
