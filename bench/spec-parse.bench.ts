/**
 * Spec parsing at size (issue 10): parse time and peak RSS for a key-dense ConfigMap of 1, 5 and
 * 50 MB and for 100,000 small documents (and 6,000, under the size limits but over the document
 * limit), each in a fresh Node process, two ways:
 *
 * - parse: parseSpecFile alone (the YAML parser with positions and the duplicate-key check), which
 *   must grow linearly with the input;
 * - load: validateClusterSpec on a cluster folder (the aws-self-managed example plus that file),
 *   which must refuse whatever is past the limits (2 MiB per file, 4 MiB per folder, 5,000
 *   documents) at once, before parsing.
 *
 * `--before` adds the yaml package's own duplicate-key check (uniqueKeys: true, what capflow used
 * before) on the 1 MB file, to show the quadratic time it replaced.
 *
 *   npm run build && node --import tsx bench/spec-parse.bench.ts [--before]
 *
 * Needs dist/ (the child processes import dist/src/spec/).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist', 'src', 'spec');
const example = path.join(root, 'examples', 'clusters', 'aws-self-managed');
const before = process.argv.includes('--before');

if (!existsSync(path.join(dist, 'index.js'))) {
  console.error('dist/ is missing: run npm run build first');
  process.exit(1);
}

const MB = 1_000_000;

/** A ConfigMap whose data map holds about `bytes` bytes of keys (~50 bytes a key). */
function keyDense(bytes: number): string {
  const parts = ['apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n'];
  let size = parts[0]!.length;
  for (let i = 0; size < bytes; i++) {
    const line = `  key${i}: "value-${i}-${'x'.repeat(30)}"\n`;
    parts.push(line);
    size += line.length;
  }
  return parts.join('');
}

function documents(n: number): string {
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${i}\ndata:\n  a: "1"\n`);
  return parts.join('');
}

const child = `
import { readFileSync } from 'node:fs';
const [mode, target] = process.argv.slice(1);
const out = {};
if (mode === 'parse') {
  const { makeSpecFile, parseSpecFile } = await import(${JSON.stringify(path.join(dist, 'yaml-source.js'))});
  const text = readFileSync(target, 'utf8');
  const t0 = performance.now();
  const parsed = parseSpecFile(makeSpecFile(target, 'f.yaml', text));
  out.ms = performance.now() - t0;
  out.outcome = parsed.issues.length > 0 ? 'issues: ' + parsed.issues[0].message : parsed.documents.length + ' documents';
} else if (mode === 'before') {
  const { parseAllDocuments } = await import('yaml');
  const text = readFileSync(target, 'utf8');
  const t0 = performance.now();
  const docs = parseAllDocuments(text, { version: '1.1', uniqueKeys: true });
  out.ms = performance.now() - t0;
  out.outcome = (Array.isArray(docs) ? docs.length : 0) + ' documents';
} else {
  const { validateClusterSpec } = await import(${JSON.stringify(path.join(dist, 'index.js'))});
  const t0 = performance.now();
  const { model, problems } = await validateClusterSpec(target, { displayRoot: target });
  out.ms = performance.now() - t0;
  const err = problems.find((p) => p.severity === 'error');
  out.outcome = model ? 'valid' : err.code + ': ' + err.message;
}
out.maxRssMb = process.resourceUsage().maxRSS / 1024;
console.log(JSON.stringify(out));
`;

interface Sample {
  ms: number;
  maxRssMb: number;
  outcome: string;
}

function run(mode: 'parse' | 'load' | 'before', target: string): Sample {
  const res = execFileSync(process.execPath, ['--max-old-space-size=8192', '--input-type=module', '-e', child, mode, target], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 20 });
  return JSON.parse(res.trim().split('\n').pop() as string) as Sample;
}

const work = mkdtempSync(path.join(os.tmpdir(), 'capflow-spec-parse-'));
try {
  const inputs = [
    { name: '1 MB ConfigMap', text: keyDense(1 * MB) },
    { name: '5 MB ConfigMap', text: keyDense(5 * MB) },
    { name: '50 MB ConfigMap', text: keyDense(50 * MB) },
    { name: '100,000 documents', text: documents(100_000) },
    { name: '6,000 documents', text: documents(6_000) },
  ];
  console.log(`spec parsing, one fresh process per row (${os.cpus().length} cores, Node ${process.version})`);
  console.log('input               bytes        parse ms  ms/MB  peak RSS MB  | load ms  peak RSS MB  outcome');
  for (const [i, input] of inputs.entries()) {
    const folder = path.join(work, `c${i}`);
    mkdirSync(folder);
    cpSync(example, folder, { recursive: true });
    const file = path.join(folder, 'big.yaml');
    writeFileSync(file, input.text);
    const bytes = Buffer.byteLength(input.text);
    const p = run('parse', file);
    const l = run('load', folder);
    console.log(
      `${input.name.padEnd(18)} ${String(bytes).padStart(10)}  ${p.ms.toFixed(0).padStart(10)}  ${((p.ms * MB) / bytes).toFixed(0).padStart(5)}  ${p.maxRssMb.toFixed(0).padStart(11)}  | ${l.ms.toFixed(0).padStart(7)}  ${l.maxRssMb.toFixed(0).padStart(11)}  ${l.outcome.slice(0, 110)}`,
    );
    if (before && i === 0) {
      const b = run('before', file);
      console.log(`${'  before: uniqueKeys'.padEnd(18)} ${String(bytes).padStart(10)}  ${b.ms.toFixed(0).padStart(10)}  ${((b.ms * MB) / bytes).toFixed(0).padStart(5)}  ${b.maxRssMb.toFixed(0).padStart(11)}  | (the yaml package's quadratic duplicate-key check)`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
