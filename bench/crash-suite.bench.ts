/**
 * The crash suite (test/support/crash-suite.ts) in `all` mode: every AWS-calling step, create and
 * delete, killed at every mutating call (before its answer too, at every call of an action that
 * makes something), rerun, compared with the uninterrupted run. Prints one line per scenario and
 * the total wall time; exits 1 if anything diverged (and prints what).
 *
 *   npm run build && CAPFLOW_CRASH_BEDS=2 node --import tsx bench/crash-suite.bench.ts [label filter ...]
 *
 * A filter keeps the scenarios whose label contains it (e.g. `provision-vpc`, `eks-node-groups delete`,
 * `install-addons`: its scenarios run on one envtest, test/support/crash-kube.ts);
 * CAPFLOW_CRASH_POINTS=sample runs what CI runs.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCrashBeds, stopCrashBeds } from '../test/support/crash-beds.js';
import { describeDivergences, resultLine, runScenario, type PointSelection, type Scenario } from '../test/support/crash-suite.js';
import { AWS_SCENARIOS, EKS_SCENARIOS, KUBE_SCENARIOS } from '../test/support/crash-scenarios.js';
import { runKubeScenario, startKubeBed, stopKubeBed } from '../test/support/crash-kube.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
if (!existsSync(path.join(root, 'dist', 'bin', 'capflow.js'))) {
  console.error('dist/ is missing: run npm run build first');
  process.exit(1);
}

const selection = (process.env['CAPFLOW_CRASH_POINTS'] || 'all') as PointSelection;
const filters = process.argv.slice(2);
const pick = (list: readonly Scenario[]) => list.filter((s) => filters.length === 0 || filters.some((f) => (s.label ?? `${s.step.id} ${s.phase}`).includes(f)));

const t0 = performance.now();
let diverged = 0;
let points = 0;
for (const [list, iamManagedPolicies] of [
  [pick(AWS_SCENARIOS), false],
  [pick(EKS_SCENARIOS), true],
] as const) {
  if (list.length === 0) continue;
  const beds = await startCrashBeds(undefined, { iamManagedPolicies });
  try {
    for (const s of list) {
      const r = await runScenario(beds, s, selection);
      points += r.killPoints;
      diverged += r.divergences.length;
      console.log(`${resultLine(r)} (${(r.wallMs / 1000).toFixed(0)} s)`);
      if (r.divergences.length > 0) console.log(describeDivergences(r));
    }
  } finally {
    await stopCrashBeds(beds);
  }
}
// install-addons: one envtest for its scenarios (crash-kube.ts)
const kube = KUBE_SCENARIOS.filter((s) => filters.length === 0 || filters.some((f) => s.label.includes(f)));
if (kube.length > 0) {
  const bed = await startKubeBed();
  try {
    for (const s of kube) {
      const r = await runKubeScenario(bed, s, selection);
      points += r.killPoints;
      diverged += r.divergences.length;
      console.log(`${resultLine(r)} (${(r.wallMs / 1000).toFixed(0)} s)`);
      if (r.divergences.length > 0) console.log(describeDivergences(r));
    }
  } finally {
    await stopKubeBed(bed);
  }
}
console.log(`total: ${points} kill points, ${diverged} divergences, ${((performance.now() - t0) / 1000).toFixed(0)} s wall (${selection}, ${process.env['CAPFLOW_CRASH_BEDS'] || 2} beds)`);
process.exit(diverged === 0 ? 0 : 1);
