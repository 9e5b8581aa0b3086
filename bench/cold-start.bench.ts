/**
 * Cold start of each step as an Argo pod pays it: `capflow step <id> --help` in a fresh node process
 * (loading that step's executor and what it imports, nothing else), against bare `node -e 0` and
 * against loading every executor (`capflow step --help`). Median of RUNS runs each, wall time.
 *
 *   npm run build && node --import tsx bench/cold-start.bench.ts [runs=7]
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { executorModules } from '../executors/lazy.js';
import { REPO_ROOT } from '../test/support/tools.js';

const runs = Number(process.argv[2] ?? 7);
const capflow = path.join(REPO_ROOT, 'dist', 'bin', 'capflow.js');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function wall(args: string[]): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { stdio: 'ignore' });
    times.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`${args.join(' ')}: exit ${r.status}`);
  }
  return median(times);
}

const bare = wall(['-e', '0']);
const rows = [`| bare node | ${bare.toFixed(0)} ms | |`];
for (const id of Object.keys(executorModules)) {
  const ms = wall([capflow, 'step', id, '--help']);
  rows.push(`| step ${id} --help | ${ms.toFixed(0)} ms | +${(ms - bare).toFixed(0)} ms |`);
}
const all = wall([capflow, 'step', '--help']);
rows.push(`| step --help (every executor) | ${all.toFixed(0)} ms | +${(all - bare).toFixed(0)} ms |`);
console.log(`cold start, median of ${runs} fresh processes (node ${process.version})`);
console.log('| command | wall | over bare node |');
console.log('| --- | --- | --- |');
for (const r of rows) console.log(r);
