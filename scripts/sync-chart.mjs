#!/usr/bin/env node
// Copies workflow-templates/*.yaml, byte for byte, into charts/capflow/files/workflow-templates/,
// and sets the chart's appVersion to package.json's version. The chart's
// templates/workflow-templates.yaml reads the copies with .Files.Get (so Argo's {{...}} stay data,
// never Helm templates) and injects the release's namespace, labels, image and executor
// ServiceAccount. The chart never forks a DAG: workflow-templates/ stays the single source, this copy
// is derived (run by `npm run build`; test/integration/chart.test.ts fails when it is stale).
//
//   node scripts/sync-chart.mjs          write the copy (removes files no longer in the source)
//   node scripts/sync-chart.mjs --check  write nothing; exit 1 and name the files that differ
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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

const yamlFiles = (dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort() : []);
const wanted = yamlFiles(source);
const present = yamlFiles(target);
const stale = present.filter((f) => !wanted.includes(f));
const changed = wanted.filter((f) => !present.includes(f) || !readFileSync(join(source, f)).equals(readFileSync(join(target, f))));

if (check) {
  if (changed.length + stale.length > 0 || chartStale) {
    console.error(
      `charts/capflow is out of date (WorkflowTemplates changed: ${changed.join(', ') || 'none'}; stale: ${stale.join(', ') || 'none'}; ` +
        `appVersion ${chartStale ? `is not ${version}` : 'ok'}); run: node scripts/sync-chart.mjs`,
    );
    process.exit(1);
  }
  process.exit(0);
}

mkdirSync(target, { recursive: true });
for (const f of changed) writeFileSync(join(target, f), readFileSync(join(source, f)));
for (const f of stale) rmSync(join(target, f));
if (chartStale) writeFileSync(chartFile, chartWanted);
console.log(`Synced ${wanted.length} WorkflowTemplates into charts/capflow/files/workflow-templates/ (${changed.length} written, ${stale.length} removed), appVersion ${version}`);
