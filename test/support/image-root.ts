/**
 * The executor image's runtime files without a Docker engine: scripts/bundle.mjs run once per test
 * process into a temp dir, giving a clean folder that holds only what the image's /app holds (the
 * bundled entry point and its chunks, the generated validators, the CRDs, the schemas, the
 * WorkflowTemplates, a package.json of four fields): no node_modules, no sources, no tsconfig.
 *
 *   const root = await imageRoot();
 *   spawn(process.execPath, [root.entry, 'step', 'validate-spec', ...], { env: { PATH, ...podTmpEnv(tmp), ...root.env } });
 *
 * `env` is the image's ENV (images/Dockerfile) with /app mapped to `dir`, less the variables that
 * point into the image's /tmp (HOME, HELM_*_HOME): those belong to each pod's own emptyDir, so
 * podTmpEnv(tmp) gives them for a temp dir of the caller's. Beside `dir` (its parent, not in the
 * image) lie manifest.json (every runtime file and its size) and meta.json (esbuild's metafile).
 * The folder is removed when the test process exits.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './tools.js';

export interface ImageRoot {
  /** The folder standing for the image's /app. */
  dir: string;
  /** The entry point (`capflow` in the image: /app/dist/bin/capflow.js); run it with node. */
  entry: string;
  /** The image's ENV, paths mapped into `dir`. */
  env: Record<string, string>;
}

let built: Promise<ImageRoot> | undefined;

/** Builds the bundle on first call (about 3 to 5 s; needs `npm run build`), then returns the same folder. */
export async function imageRoot(): Promise<ImageRoot> {
  built ??= build();
  return built;
}

/** The image's ENV that points into its /tmp (HOME=/tmp, helm's homes), for a pod whose /tmp is `tmp`. */
export function podTmpEnv(tmp: string): Record<string, string> {
  return {
    HOME: tmp,
    HELM_CACHE_HOME: path.join(tmp, '.cache', 'helm'),
    HELM_CONFIG_HOME: path.join(tmp, '.config', 'helm'),
    HELM_DATA_HOME: path.join(tmp, '.local', 'share', 'helm'),
  };
}

async function build(): Promise<ImageRoot> {
  const out = mkdtempSync(path.join(os.tmpdir(), 'capflow-image-'));
  process.once('exit', () => rmSync(out, { recursive: true, force: true }));
  const res = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'scripts', 'bundle.mjs'), out], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
  if (res.code !== 0) throw new Error(`scripts/bundle.mjs failed (exit ${res.code}):\n${res.output}`);
  const dir = path.join(out, 'app');
  return {
    dir,
    entry: path.join(dir, 'dist', 'bin', 'capflow.js'),
    env: { CAPFLOW_SCHEMAS_DIR: path.join(dir, 'schemas'), CAPFLOW_LOG_FORMAT: 'json', NODE_ENV: 'production' },
  };
}
