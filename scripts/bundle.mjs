#!/usr/bin/env node
// Bundles the capflow command into the executor image's runtime files (issue 14), laid out in
// OUTDIR/app exactly as the image's final stage holds them under /app (images/Dockerfile copies
// OUTDIR/app to /app as is):
//
//   app/package.json                  {name, version, type: module}: packageRoot() (src/core/package.ts)
//                                     finds /app by it, `capflow --version` reads it, and it makes
//                                     the .js files below ES modules
//   app/dist/bin/capflow.js           the entry point (the runner's defaultEntryPoints and the CLI's
//                                     packageRoot both expect it at <root>/dist/bin/capflow.js)
//   app/dist/bin/spec-load-worker.js  the reconciler's worker thread, found beside the chunk of
//                                     src/gitops/spec-loads.ts (new URL('./spec-load-worker.js'))
//   app/dist/bin/chunk-*.js           code shared by, or loaded lazily from, the entries: each
//                                     executor of executors/lazy.ts is reached through its own chunks
//   app/dist/src/spec/generated/      the ajv standalone validators (scripts/gen-validators.mjs),
//                                     imported by path at run time (src/spec/validators.ts)
//   app/src/spec/crds/                capflow's own CRDs (their fingerprints choose the validators)
//   app/schemas/                      the upstream schemas (capi/, capi-v1.11/, argo/); the image
//                                     sets CAPFLOW_SCHEMAS_DIR=/app/schemas
//   app/workflow-templates/           the WorkflowTemplates (`capflow run`, `capflow demo`)
//
// and beside it, not in the image: OUTDIR/manifest.json (every runtime file and its size),
// OUTDIR/meta.json (esbuild's metafile: which chunks each entry imports) and OUTDIR/sourcemaps/.
// Nothing here needs node_modules at run time: every dependency is bundled, none is external or
// native. (ssh2, for the coming src/hosts, is not reached yet; its optional native crypto binding
// would be left out by the '.node' loader below, and ssh2 falls back to JavaScript without it.)
//
//   node scripts/bundle.mjs [outDir]      (default build/image; `npm run build` must have run:
//                                          the generated validators come from dist/)
//   CAPFLOW_SCHEMAS_DIR=...               the schemas to copy (default ../shared/schemas)
import { chmod, cp, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// CommonJS dependencies bundled into ES modules still call require() for Node's built-ins (and a
// few use __filename/__dirname): give every output file those, from its own URL.
const BANNER = [
  "import { createRequire as __capflowCreateRequire } from 'node:module';",
  "import { fileURLToPath as __capflowFileURLToPath } from 'node:url';",
  "import { dirname as __capflowDirname } from 'node:path';",
  'const require = __capflowCreateRequire(import.meta.url);',
  'const __filename = __capflowFileURLToPath(import.meta.url);',
  'const __dirname = __capflowDirname(__filename);',
].join('\n');

async function walk(dir, base = dir) {
  const out = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p, base)));
    else if (e.isFile()) out.push({ path: path.relative(base, p).split(path.sep).join('/'), size: (await stat(p)).size });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

async function mustExist(p, hint) {
  try {
    await stat(p);
  } catch {
    throw new Error(`${p} is missing: ${hint}`);
  }
}

/**
 * Builds the runtime folder. Options: outDir (default <repo>/build/image), schemasDir (default
 * $CAPFLOW_SCHEMAS_DIR or <repo>/../shared/schemas), minify (default true), sourcemaps (default
 * true: written to OUTDIR/sourcemaps, outside the runtime). Returns the paths and the manifest.
 */
export async function bundle(options = {}) {
  const started = Date.now();
  const outDir = path.resolve(options.outDir ?? path.join(repoRoot, 'build', 'image'));
  const schemasDir = path.resolve(options.schemasDir ?? process.env.CAPFLOW_SCHEMAS_DIR ?? path.join(repoRoot, '..', 'shared', 'schemas'));
  const minify = options.minify ?? true;
  const sourcemaps = options.sourcemaps ?? true;
  const generated = path.join(repoRoot, 'dist', 'src', 'spec', 'generated');
  await mustExist(path.join(generated, 'index.json'), 'run "npm run build" (scripts/gen-validators.mjs) first');
  await mustExist(path.join(schemasDir, 'capi'), 'set CAPFLOW_SCHEMAS_DIR to the folder holding capi/, capi-v1.11/ and argo/');

  const appDir = path.join(outDir, 'app');
  const binDir = path.join(appDir, 'dist', 'bin');
  await rm(outDir, { recursive: true, force: true });
  await mkdir(binDir, { recursive: true });

  const pkg = JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8'));
  const result = await esbuild.build({
    absWorkingDir: repoRoot,
    entryPoints: {
      capflow: 'bin/capflow.ts',
      'spec-load-worker': 'src/gitops/spec-load-worker.ts',
    },
    outdir: binDir,
    entryNames: '[name]',
    chunkNames: 'chunk-[hash]',
    outExtension: { '.js': '.js' },
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // ES module builds of dependencies first (the AWS SDK's dist-es shakes far better than its CJS)
    mainFields: ['module', 'main'],
    minify,
    // error classes and winston formats are found by name in places; keeping names costs ~2%
    keepNames: minify,
    legalComments: 'eof',
    sourcemap: sourcemaps ? 'external' : false,
    banner: { js: BANNER },
    metafile: true,
    logLevel: 'warning',
    // an optional native binding (ssh2's crypto) is left out: it has a JavaScript fallback
    loader: { '.node': 'empty' },
  });
  await writeFile(path.join(outDir, 'meta.json'), JSON.stringify(result.metafile));
  if (sourcemaps) {
    await mkdir(path.join(outDir, 'sourcemaps'), { recursive: true });
    for (const f of await readdir(binDir)) {
      if (f.endsWith('.map')) await rename(path.join(binDir, f), path.join(outDir, 'sourcemaps', f));
    }
  }

  await writeFile(
    path.join(appDir, 'package.json'),
    `${JSON.stringify({ name: pkg.name, version: pkg.version, description: pkg.description, license: pkg.license, type: 'module', private: true }, null, 2)}\n`,
  );
  await cp(generated, path.join(appDir, 'dist', 'src', 'spec', 'generated'), { recursive: true, filter: (src) => !/\.map$/.test(src) });
  await cp(path.join(repoRoot, 'src', 'spec', 'crds'), path.join(appDir, 'src', 'spec', 'crds'), { recursive: true });
  await cp(path.join(repoRoot, 'workflow-templates'), path.join(appDir, 'workflow-templates'), { recursive: true });
  await cp(schemasDir, path.join(appDir, 'schemas'), { recursive: true });
  // An image layer's modes: readable by the image's non-root user whatever the build machine's were
  // (mkdtemp folders are 0700, a read-only schemas checkout is 0555).
  await normalizeModes(appDir);

  const files = await walk(appDir);
  const total = files.reduce((n, f) => n + f.size, 0);
  const code = files.filter((f) => f.path.startsWith('dist/bin/')).reduce((n, f) => n + f.size, 0);
  const manifest = {
    name: pkg.name,
    version: pkg.version,
    entry: 'app/dist/bin/capflow.js',
    image: { root: '/app', entry: '/app/dist/bin/capflow.js', env: { CAPFLOW_SCHEMAS_DIR: '/app/schemas', CAPFLOW_LOG_FORMAT: 'json' } },
    esbuild: esbuild.version,
    minify,
    totalBytes: total,
    codeBytes: code,
    files,
  };
  await writeFile(path.join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  // a build output: git leaves it alone wherever it is made (build/image inside the repository)
  await writeFile(path.join(outDir, '.gitignore'), '*\n');
  return { outDir, appDir, entry: path.join(binDir, 'capflow.js'), manifest, metafile: result.metafile, ms: Date.now() - started };
}

/** Folders 0755, files 0644: what every user of the image may read, nobody but root may change. */
async function normalizeModes(dir) {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await normalizeModes(p);
    else if (entry.isFile()) await chmod(p, 0o644);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = process.argv[2] ?? path.join(repoRoot, 'build', 'image');
  const r = await bundle({ outDir });
  const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
  console.log(
    `Bundled capflow into ${path.relative(process.cwd(), r.appDir) || r.appDir}: ${r.manifest.files.length} files, ${mb(r.manifest.totalBytes)} (code ${mb(r.manifest.codeBytes)}), ${r.ms} ms`,
  );
}
