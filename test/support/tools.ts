// The test bed's command-line tools (built or installed by `bash testbed/install.sh`): where they are,
// and thin helpers that run them on a piece of configuration and say whether it passed.
//
// Lookup order for a tool: $CAPFLOW_TESTBED_BIN (default ~/.cache/capflow-testbed/bin), then PATH
// (plus /usr/sbin and /sbin, where Debian puts sshd). A missing tool is an error that names the
// install command: tests that need a tool fail, they never pass silently.

import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const INSTALL_COMMAND = 'bash testbed/install.sh';

export type ToolName =
  | 'etcd'
  | 'etcdctl'
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kube-scheduler'
  | 'kubeadm'
  | 'kubectl'
  | 'kwok'
  | 'helm'
  | 'argo'
  | 'cloud-init'
  | 'sshd'
  | 'ssh-keygen'
  | 'openssl'
  | 'moto_server';

/** testbed/versions.env as a map (KEY=VALUE lines, # comments). */
export function testbedVersions(): Record<string, string> {
  const text = readFileSync(join(REPO_ROOT, 'testbed', 'versions.env'), 'utf8');
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*?)\s*$/.exec(line);
    if (m) out[m[1]!] = m[2]!.replace(/^["']|["']$/g, '');
  }
  return out;
}

export function testbedBinDir(): string {
  return process.env.CAPFLOW_TESTBED_BIN ?? join(homedir(), '.cache', 'capflow-testbed', 'bin');
}

/**
 * The bin dir of the previous Kubernetes release (KUBERNETES_PREVIOUS_VERSION), which machines of its
 * AMIs carry: `<bin>/<version>`, its kubeadm and control plane binaries with the shared etcd, etcdctl
 * and kubectl. Throws (naming the install command) when install.sh has not built it.
 */
export function requirePreviousKubeBinDir(): { version: string; dir: string } {
  const version = testbedVersions().KUBERNETES_PREVIOUS_VERSION;
  if (!version) throw new Error('testbed/versions.env names no KUBERNETES_PREVIOUS_VERSION');
  const dir = join(testbedBinDir(), version);
  if (!isExecutable(join(dir, 'kubeadm'))) throw new Error(`the test bed's Kubernetes ${version} is not built (no ${dir}/kubeadm); install it with: ${INSTALL_COMMAND}`);
  return { version, dir };
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The tool's path, or undefined when it is not installed. */
export function findTool(name: string): string | undefined {
  const dirs = [
    testbedBinDir(),
    ...(process.env.PATH ?? '').split(delimiter).filter(Boolean),
    '/usr/sbin',
    '/sbin',
  ];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** The tool's path; throws (with the install command in the message) when it is missing. */
export function requireTool(name: string): string {
  const path = findTool(name);
  if (!path) {
    throw new Error(
      `test bed tool "${name}" is not installed (looked in ${testbedBinDir()} and PATH); ` +
        `install the test bed with: ${INSTALL_COMMAND}`,
    );
  }
  return path;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
  timeoutMs?: number;
}

/** Runs a command to completion (no shell), collecting its output. Rejects only if it cannot start. */
export function run(command: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
    // A command that exits without reading its input closes the pipe first:
    // the EPIPE says nothing its exit status does not, so it is not an error.
    child.stdin.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') reject(err);
    });
    child.stdin.end(opts.input ?? '');
  });
}

export interface CheckResult {
  ok: boolean;
  /** stdout and stderr of the tool, for assertions and failure messages. */
  output: string;
}

function toCheck(r: RunResult): CheckResult {
  const output = [r.stdout, r.stderr].filter((s) => s.length > 0).join('\n');
  return { ok: r.code === 0, output: r.signal ? `${output}\n(killed by ${r.signal})` : output };
}

/** Runs fn with a fresh temp dir that is removed afterwards. */
async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), `capflow-${prefix}-`));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `kubeadm config validate --config F` on one multi-document kubeadm configuration. */
export async function kubeadmValidate(configYaml: string): Promise<CheckResult> {
  const kubeadm = requireTool('kubeadm');
  return withTempDir('kubeadm', async (dir) => {
    const file = join(dir, 'kubeadm.yaml');
    writeFileSync(file, configYaml);
    return toCheck(await run(kubeadm, ['config', 'validate', '--config', file]));
  });
}

/** `cloud-init schema --config-file F` on user data (must start with `#cloud-config`). */
export async function cloudInitSchema(userData: string): Promise<CheckResult> {
  const cloudInit = requireTool('cloud-init');
  return withTempDir('cloud-init', async (dir) => {
    const file = join(dir, 'user-data');
    writeFileSync(file, userData);
    return toCheck(await run(cloudInit, ['schema', '--config-file', file]));
  });
}

/** Helm with its config/cache/data homes in a throwaway dir, so tests never read or touch ~/.config/helm. */
function helmEnv(dir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HELM_CONFIG_HOME: join(dir, 'config'),
    HELM_CACHE_HOME: join(dir, 'cache'),
    HELM_DATA_HOME: join(dir, 'data'),
  };
}

/** `helm template <release> <chartDir> -f values.yaml`; output is the rendered manifests (plus any errors). */
export async function helmTemplate(
  chartDir: string,
  values: Record<string, unknown> = {},
  opts: { releaseName?: string; namespace?: string } = {},
): Promise<CheckResult> {
  const helm = requireTool('helm');
  return withTempDir('helm', async (dir) => {
    const valuesFile = join(dir, 'values.yaml');
    writeFileSync(valuesFile, toYaml(values));
    const args = ['template', opts.releaseName ?? 'capflow-test', chartDir, '-f', valuesFile];
    if (opts.namespace) args.push('--namespace', opts.namespace);
    return toCheck(await run(helm, args, { env: helmEnv(dir) }));
  });
}

/** `helm lint --strict <chartDir>`. */
export async function helmLint(chartDir: string, opts: { strict?: boolean } = {}): Promise<CheckResult> {
  const helm = requireTool('helm');
  return withTempDir('helm', async (dir) => {
    const args = ['lint', chartDir];
    if (opts.strict ?? true) args.push('--strict');
    return toCheck(await run(helm, args, { env: helmEnv(dir) }));
  });
}

/** `argo lint --offline <paths...>`: validates Workflows/WorkflowTemplates without a cluster. */
export async function argoLintOffline(paths: string[]): Promise<CheckResult> {
  const argo = requireTool('argo');
  if (paths.length === 0) throw new Error('argoLintOffline: no paths given');
  return withTempDir('argo', async (dir) => {
    // No kubeconfig and no Argo server: --offline must need neither. A throwaway HOME keeps the CLI
    // from reading the developer's ~/.kube/config or ~/.config/argo.
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: dir, KUBECONFIG: join(dir, 'no-kubeconfig') };
    delete env.ARGO_SERVER;
    delete env.ARGO_TOKEN;
    return toCheck(await run(argo, ['lint', '--offline', '--output', 'simple', ...paths], { env }));
  });
}
