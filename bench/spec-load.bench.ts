/**
 * Spec loading cold-start benchmark: validates examples/clusters/aws-self-managed
 * in a fresh Node process, once with the build-time generated standalone
 * validators and once compiling the CRD schemas at runtime, and prints medians.
 *
 *   npm run build && npx tsx bench/spec-load.bench.ts [runs]
 *
 * Needs dist/ (the child processes import dist/src/spec/index.js, as executors do).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const specIndex = path.join(root, 'dist', 'src', 'spec', 'index.js');
const example = path.join(root, 'examples', 'clusters', 'aws-self-managed');
const runs = Number(process.argv[2] ?? 7);

if (!existsSync(specIndex) || !existsSync(path.join(root, 'dist', 'src', 'spec', 'generated', 'index.json'))) {
  console.error('dist/ or the generated validators are missing: run npm run build first');
  process.exit(1);
}

const child = `
const t0 = performance.now();
const spec = await import(${JSON.stringify(specIndex)});
const t1 = performance.now();
const first = await spec.validateClusterSpec(${JSON.stringify(example)}, { validators: process.argv[1] });
const t2 = performance.now();
await spec.validateClusterSpec(${JSON.stringify(example)}, { validators: process.argv[1] });
const t3 = performance.now();
if (first.problems.length > 0 || !first.model) throw new Error('the example did not validate');
console.log(JSON.stringify({ importMs: t1 - t0, coldMs: t2 - t1, warmMs: t3 - t2 }));
`;

interface Sample {
  importMs: number;
  coldMs: number;
  warmMs: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const results: Record<string, Sample[]> = { generated: [], compile: [] };
for (let i = 0; i < runs; i++) {
  for (const mode of ['generated', 'compile'] as const) {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', child, mode], { cwd: root, encoding: 'utf8' });
    results[mode]?.push(JSON.parse(out.trim().split('\n').pop() as string) as Sample);
  }
}

console.log(`spec load, examples/clusters/aws-self-managed (${runs} fresh processes each, median ms)`);
console.log('mode        import  cold validate  warm validate');
for (const [mode, samples] of Object.entries(results)) {
  const f = (k: keyof Sample): string => median(samples.map((s) => s[k])).toFixed(0).padStart(6);
  console.log(`${mode.padEnd(10)} ${f('importMs')}  ${f('coldMs').padStart(13)}  ${f('warmMs').padStart(13)}`);
}
