/**
 * Rendering one AddonChart into plain Kubernetes objects with the real `helm template`.
 *
 * Sources (exactly one, checked at file:line by src/spec/references.ts):
 * - `spec.path`: an unpacked chart folder of the Git repository, relative to the repository root (the
 *   checkout holding the cluster folder, so clusters can share vendored charts); no `..`, and the
 *   resolved folder (symlinks followed) must stay inside the repository;
 * - `spec.repo: https://...` with `chart` and `version`: `helm template NAME CHART --repo URL --version V`;
 * - `spec.repo: oci://host/path` with `chart` and `version`: `helm template NAME oci://host/path/CHART --version V`
 *   (`--plain-http` when `spec.plainHTTP`: a registry without TLS in a private network).
 *
 * Values: `spec.valuesFiles` (files of the cluster folder, resolved inside it) in order, then the
 * inline `spec.values` written to a 0600 temp file; all passed with `-f`, never with `--set`.
 *
 * Credentials (`spec.credentialsSecretRef`, keys `username` and `password` of capflow's secret store)
 * never reach argv, logs or errors: for an HTTP repository the repository is added to a throwaway
 * repository config with `helm repo add --password-stdin` (the password goes through stdin), and the
 * chart is then templated as `<repo>/<chart>`; for an OCI registry a throwaway registry config
 * (docker config.json form, 0600) is written and passed with `--registry-config`. Both live in the
 * render's temp dir (0700), which is removed afterwards. helm's stderr is redacted (the password
 * literal, URL user info and secret-looking patterns) before it reaches an error.
 *
 * helm runs with HELM_CACHE_HOME, HELM_CONFIG_HOME, HELM_DATA_HOME (and so plugins, repositories,
 * registry logins) in that temp dir, a minimal environment (no KUBECONFIG: helm template needs no
 * cluster), a deadline, and, for a chart folder, HTTP(S)_PROXY pointing at a closed port so that
 * nothing is fetched from the network.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KubernetesObject } from '@kubernetes/client-node';
import { parseDocument } from 'yaml';
import { InputError, TransientError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { redactString, redactUrlCredentials } from '../core/redact.js';
import type { SecretStore } from '../core/secrets.js';
import type { AddonChart } from '../spec/model.js';
import { escapingPath } from '../spec/references.js';

export interface ChartRenderOptions {
  /** Root of the Git checkout: `spec.path` is relative to it. */
  repoRoot: string;
  /** The cluster folder: `spec.valuesFiles` are relative to it. */
  clusterDir: string;
  /** The cluster's Kubernetes version (`--kube-version`), e.g. v1.34.3. */
  kubeVersion?: string;
  /** Where `spec.credentialsSecretRef` is read; required when an addon names one. */
  secrets?: SecretStore;
  logger?: Logger;
  /** The helm binary: CAPFLOW_HELM, else `helm` on PATH. */
  helm?: string;
  /** Deadline of each helm run; 120 s by default. */
  timeoutMs?: number;
}

export interface RenderedObject {
  object: KubernetesObject;
  /** The template it came from, as helm's `# Source:` comment names it (e.g. `mychart/templates/cm.yaml`). */
  source: string;
}

export interface RenderedChart {
  addon: string;
  releaseName: string;
  namespace: string;
  /** Where the chart came from, for messages: a folder, `URL chart@version` or `oci://.../chart@version`. */
  chartSource: string;
  objects: RenderedObject[];
}

/** Largest helm output read (a chart this large is a mistake, not an addon). */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
const DEFAULT_TIMEOUT_MS = 120_000;
/** The repository name a credentialed HTTP repository is added under, in the throwaway repository config. */
const REPO_ALIAS = 'capflow-addon';

export function helmBinary(): string {
  return process.env.CAPFLOW_HELM ?? 'helm';
}

interface Credentials {
  username: string;
  password: string;
}

/** Renders one addon's chart; throws InputError (ADDON_CHART_*) naming the addon when it cannot. */
export async function renderAddonChart(addon: AddonChart, options: ChartRenderOptions): Promise<RenderedChart> {
  const name = addon.metadata.name;
  const spec = addon.spec;
  const releaseName = spec.releaseName || name;
  const namespace = spec.namespace || 'default';
  const fail = (code: string, message: string, hint?: string): never => {
    throw new InputError(code, `AddonChart ${name}: ${message}`, hint ? { hint } : {});
  };

  if ((spec.path === undefined) === (spec.repo === undefined)) fail('ADDON_CHART_SOURCE', 'exactly one of spec.repo and spec.path must be given');
  const credentials = await readCredentials(addon, options);
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'capflow-helm-'));
  await fs.chmod(tmp, 0o700);
  try {
    const dirs = { cache: path.join(tmp, 'cache'), config: path.join(tmp, 'config'), data: path.join(tmp, 'data') };
    for (const d of Object.values(dirs)) await fs.mkdir(d, { recursive: true, mode: 0o700 });
    const registryConfig = path.join(dirs.config, 'registry', 'config.json');
    const repositoryConfig = path.join(dirs.config, 'repositories.yaml');
    const env = helmEnv(tmp, dirs, registryConfig, repositoryConfig, spec.path !== undefined);
    const secret = credentials?.password;
    const run = (args: string[], stdin?: string): Promise<HelmResult> =>
      runHelm(options.helm ?? helmBinary(), args, env, options.timeoutMs ?? DEFAULT_TIMEOUT_MS, stdin);

    // The chart reference and its source, for messages.
    let chartRef: string;
    let chartSource: string;
    const sourceArgs: string[] = [];
    if (spec.path !== undefined) {
      const dir = await insideRoot(options.repoRoot, spec.path, 'the repository root');
      if (typeof dir !== 'string') return fail('ADDON_CHART_PATH', `spec.path ${dir.problem}`, 'name a chart folder of this Git repository, relative to its root, e.g. charts/cilium');
      const chartYaml = await fs.stat(path.join(dir, 'Chart.yaml')).catch(() => undefined);
      if (!chartYaml?.isFile()) fail('ADDON_CHART_PATH', `spec.path "${spec.path}" is not a chart folder (no Chart.yaml in ${dir})`);
      chartRef = dir;
      chartSource = `chart folder ${spec.path}`;
      if (spec.version !== undefined) sourceArgs.push('--version', spec.version);
    } else {
      const repo = (spec.repo as string).replace(/\/+$/, '');
      const chart = spec.chart ?? fail('ADDON_CHART_SOURCE', 'spec.chart is required with spec.repo');
      const version = spec.version ?? fail('ADDON_CHART_SOURCE', 'spec.version is required with spec.repo');
      if (repo.startsWith('oci://')) {
        chartRef = `${repo}/${chart}`;
        chartSource = `${redactUrlCredentials(chartRef)}@${version}`;
        if (credentials) {
          await fs.mkdir(path.dirname(registryConfig), { recursive: true, mode: 0o700 });
          const host = new URL(`https://${repo.slice('oci://'.length)}`).host;
          const auth = Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64');
          await fs.writeFile(registryConfig, JSON.stringify({ auths: { [host]: { auth } } }), { mode: 0o600 });
        }
        sourceArgs.push('--version', version);
        if (spec.plainHTTP) sourceArgs.push('--plain-http');
      } else {
        chartSource = `${redactUrlCredentials(repo)} ${chart}@${version}`;
        if (credentials) {
          // The password goes to helm on stdin, into the throwaway repository config; never on argv.
          const added = await run(['repo', 'add', REPO_ALIAS, repo, '--username', credentials.username, '--password-stdin'], credentials.password);
          checkRun(added, name, chartSource, secret, 'the chart repository could not be added');
          chartRef = `${REPO_ALIAS}/${chart}`;
        } else {
          chartRef = chart;
          sourceArgs.push('--repo', repo);
        }
        sourceArgs.push('--version', version);
      }
    }

    // Values: files of the cluster folder in order, then the inline values, each with -f.
    const valueArgs: string[] = [];
    for (const [i, file] of (spec.valuesFiles ?? []).entries()) {
      const resolved = await insideRoot(options.clusterDir, file, 'the cluster folder');
      if (typeof resolved !== 'string') return fail('ADDON_CHART_PATH', `spec.valuesFiles[${i}] ${resolved.problem}`);
      const st = await fs.stat(resolved).catch(() => undefined);
      if (!st?.isFile()) fail('ADDON_CHART_PATH', `spec.valuesFiles[${i}] "${file}" is not a file of the cluster folder`);
      valueArgs.push('-f', resolved);
    }
    if (spec.values !== undefined && Object.keys(spec.values).length > 0) {
      const inline = path.join(tmp, 'values.json');
      // JSON is YAML: no re-quoting questions for strings like `on`, `0x10` or `1e3`.
      await fs.writeFile(inline, JSON.stringify(spec.values), { mode: 0o600 });
      valueArgs.push('-f', inline);
    }

    const args = [
      'template', releaseName, chartRef, ...sourceArgs,
      '--namespace', namespace,
      '--include-crds',
      '--skip-tests',
      ...(options.kubeVersion ? ['--kube-version', options.kubeVersion] : []),
      ...(credentials && spec.repo?.startsWith('oci://') ? ['--registry-config', registryConfig] : []),
      ...valueArgs,
    ];
    const started = Date.now();
    const result = await run(args);
    checkRun(result, name, chartSource, secret, 'the chart did not render');
    const objects = parseRendered(result.stdout, name, chartSource);
    options.logger?.info(`rendered AddonChart ${name}`, { addon: name, chart: chartSource, objects: objects.length, ms: Date.now() - started });
    return { addon: name, releaseName, namespace, chartSource, objects };
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

async function readCredentials(addon: AddonChart, options: ChartRenderOptions): Promise<Credentials | undefined> {
  const ref = addon.spec.credentialsSecretRef;
  if (!ref) return undefined;
  const name = addon.metadata.name;
  if (!options.secrets) throw new InputError('ADDON_CHART_CREDENTIALS', `AddonChart ${name}: spec.credentialsSecretRef names secret "${ref.name}" but no secret store was given`);
  const data = await options.secrets.get(ref.name);
  if (!data) throw new InputError('ADDON_CHART_CREDENTIALS', `AddonChart ${name}: secret "${ref.name}" (spec.credentialsSecretRef) does not exist in the ${options.secrets.kind} secret store`);
  const { username, password } = data;
  if (!username || !password) {
    throw new InputError('ADDON_CHART_CREDENTIALS', `AddonChart ${name}: secret "${ref.name}" (spec.credentialsSecretRef) needs the keys username and password`, { hint: `it has: ${Object.keys(data).sort().join(', ') || 'no keys'}` });
  }
  return { username, password };
}

/** `rel` resolved under `root` with symlinks followed, or why it leaves it (or does not exist). */
async function insideRoot(root: string, rel: string, rootName: string): Promise<string | { problem: string }> {
  const syntactic = escapingPath(rel);
  if (syntactic) return { problem: `${syntactic}; it must be relative to ${rootName}, without .. segments` };
  const realRoot = await fs.realpath(root);
  let real: string;
  try {
    real = await fs.realpath(path.join(realRoot, rel));
  } catch {
    return { problem: `"${rel}" does not exist under ${rootName}` };
  }
  const back = path.relative(realRoot, real);
  if (back.startsWith('..') || path.isAbsolute(back)) return { problem: `"${rel}" leaves ${rootName} (through a symbolic link)` };
  return real;
}

function helmEnv(tmp: string, dirs: { cache: string; config: string; data: string }, registryConfig: string, repositoryConfig: string, offline: boolean): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: tmp,
    TMPDIR: tmp,
    HELM_CACHE_HOME: dirs.cache,
    HELM_CONFIG_HOME: dirs.config,
    HELM_DATA_HOME: dirs.data,
    HELM_PLUGINS: path.join(dirs.data, 'plugins'),
    HELM_REGISTRY_CONFIG: registryConfig,
    HELM_REPOSITORY_CONFIG: repositoryConfig,
    HELM_REPOSITORY_CACHE: path.join(dirs.cache, 'repository'),
    KUBECONFIG: path.join(tmp, 'no-kubeconfig'),
  };
  if (offline) {
    // A chart folder needs no network: any fetch (a dependency, a remote schema) goes to a closed port.
    env.HTTP_PROXY = env.HTTPS_PROXY = env.http_proxy = env.https_proxy = 'http://127.0.0.1:9';
    env.NO_PROXY = env.no_proxy = '';
  } else {
    for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'SSL_CERT_FILE', 'SSL_CERT_DIR']) {
      if (process.env[k] !== undefined) env[k] = process.env[k];
    }
  }
  return env;
}

interface HelmResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  spawnError?: Error;
  ms: number;
}

function runHelm(helm: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number, stdin?: string): Promise<HelmResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(helm, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let timedOut = false;
    let spawnError: Error | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      outBytes += b.length;
      if (outBytes > MAX_OUTPUT_BYTES) child.kill('SIGKILL');
      else out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (err.reduce((n, x) => n + x.length, 0) < 1024 * 1024) err.push(b);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin ?? '');
    child.on('error', (e) => {
      spawnError = e;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8') + (outBytes > MAX_OUTPUT_BYTES ? `\noutput larger than ${MAX_OUTPUT_BYTES} bytes` : '');
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr, timedOut, ms: Date.now() - started, ...(spawnError ? { spawnError } : {}) });
    });
  });
}

/** helm's stderr made safe for an error message: the password literal, URL user info and secret patterns removed. */
function cleanStderr(stderr: string, secret: string | undefined): string {
  let text = stderr;
  if (secret) text = text.split(secret).join('[REDACTED]');
  text = redactUrlCredentials(redactString(text)).trim();
  const lines = text.split('\n');
  if (lines.length > 40) text = [...lines.slice(0, 40), `... (${lines.length - 40} more lines)`].join('\n');
  return text.length > 8000 ? `${text.slice(0, 8000)}...` : text;
}

function checkRun(result: HelmResult, addon: string, chartSource: string, secret: string | undefined, what: string): void {
  if (result.spawnError) {
    const code = (result.spawnError as NodeJS.ErrnoException).code;
    throw new InputError('ADDON_CHART_HELM', `AddonChart ${addon}: cannot run helm: ${code === 'ENOENT' ? 'not found' : result.spawnError.message}`, { hint: 'put helm on PATH or set CAPFLOW_HELM to its path' });
  }
  if (result.timedOut) {
    throw new TransientError('ADDON_CHART_TIMEOUT', `AddonChart ${addon} (${chartSource}): helm gave no answer within ${Math.round(result.ms / 1000)} s`);
  }
  if (result.code !== 0) {
    const stderr = cleanStderr(result.stderr, secret);
    throw new InputError('ADDON_CHART_RENDER', `AddonChart ${addon} (${chartSource}): ${what} (helm exit ${result.code ?? result.signal}): ${stderr || 'no message'}`, {
      details: { addon, chart: chartSource },
    });
  }
}

/** helm's output split as helm splits manifests (`---` lines), each with its `# Source:` template. */
export function parseRendered(stdout: string, addon: string, chartSource: string): RenderedObject[] {
  const objects: RenderedObject[] = [];
  const chunks = stdout.split(/^---[ \t]*$/m);
  for (const chunk of chunks) {
    const source = /^# Source: (.+)$/m.exec(chunk)?.[1]?.trim() ?? '(unknown template)';
    if (chunk.trim() === '') continue;
    const doc = parseDocument(chunk, { uniqueKeys: false });
    if (doc.errors.length > 0) {
      throw new InputError('ADDON_CHART_OBJECT', `AddonChart ${addon} (${chartSource}): ${source} rendered invalid YAML: ${doc.errors[0]?.message.split('\n')[0] ?? ''}`);
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) continue; // a template that rendered nothing but comments
    const obj = value as Record<string, unknown>;
    const metadata = typeof obj === 'object' && !Array.isArray(obj) ? (obj.metadata as Record<string, unknown> | undefined) : undefined;
    const missing = typeof obj !== 'object' || Array.isArray(obj)
      ? 'is not a map'
      : typeof obj.apiVersion !== 'string' || obj.apiVersion === ''
        ? 'has no apiVersion'
        : typeof obj.kind !== 'string' || obj.kind === ''
          ? 'has no kind'
          : typeof metadata !== 'object' || metadata === null || typeof metadata.name !== 'string' || metadata.name === ''
            ? 'has no metadata.name'
            : undefined;
    if (missing) {
      throw new InputError('ADDON_CHART_OBJECT', `AddonChart ${addon} (${chartSource}): a document rendered from ${source} is not a Kubernetes object: it ${missing}`);
    }
    objects.push({ object: obj, source });
  }
  return objects;
}
