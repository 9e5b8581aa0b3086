/**
 * `capflow reconcile` configuration: every setting is a flag with an
 * environment equivalent (flag wins) and a default, all listed in
 * reconcileHelp. Webhook secrets come only from the environment or files:
 * a flag value would show in `ps`. A bad value is an InputError naming the
 * flag and its variable.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { InputError } from '../core/errors.js';
import type { LogFormat, LogLevel } from '../core/logger.js';
import { packageRoot } from '../core/package.js';
import { parseDurationMs } from '../runner/durations.js';
import { CAPI_LINES, isCapiLineChoice, type CapiLineChoice } from '../spec/kinds.js';
import type { ServiceConfig } from './service.js';

export const reconcileHelp = `Usage: capflow reconcile [options]

Keeps every cluster folder of a GitOps repository converged: polls the branch
(and takes push webhooks), submits cluster-apply for a changed spec,
cluster-delete when deletion is asked for, cluster-plan on the drift schedule,
follows the Workflows and records each cluster's state in a ConfigMap
(capflow-cluster-<name>) in --namespace. Serves /healthz, /readyz, /metrics and
POST /webhooks/{github,gitlab,gitea}. Stops gracefully on SIGTERM and SIGINT.

Options (environment variable in brackets; a flag wins over its variable):
  --repo URL                 GitOps repository to clone (CAPFLOW_REPO; required). Credentials in the URL
                             are used for fetching only: Workflows get the URL without them
  --branch NAME              branch to follow (CAPFLOW_BRANCH; default main)
  --clusters-dir DIR         folder holding one folder per cluster (CAPFLOW_CLUSTERS_DIR; default clusters)
  --namespace NS             where records, Workflows and the Lease live (CAPFLOW_NAMESPACE; default capflow-system)
  --kubeconfig FILE          management cluster (KUBECONFIG; default ~/.kube/config, else in-cluster)
  --cache-dir DIR            where the clone is kept (CAPFLOW_CACHE_DIR; default $XDG_CACHE_HOME/capflow/reconciler,
                             else ~/.cache/capflow/reconciler)
  --listen HOST:PORT         HTTP address (CAPFLOW_LISTEN; default 0.0.0.0:8080)
  --poll-interval DURATION   how often the remote is fetched (CAPFLOW_POLL_INTERVAL; default 60s)
  --poll-jitter FRACTION     polls come up to this share earlier or later (CAPFLOW_POLL_JITTER; default 0.1)
  --drift-interval DURATION  cluster-plan per applied cluster this often; 0 = never (CAPFLOW_DRIFT_INTERVAL; default 1h)
  --drift-policy POLICY      report: mark a drifted cluster; enforce: also run cluster-apply
                             (CAPFLOW_DRIFT_POLICY; default report)
  --allow-delete             run cluster-delete for a folder removed from Git; without it only a folder
                             holding a DELETE file is deleted (CAPFLOW_ALLOW_DELETE=true|false; default false)
  --retry-backoff DURATION   wait before retrying a failed run, doubled per failure (CAPFLOW_RETRY_BACKOFF; default 1m)
  --retry-max DURATION       longest wait between retries (CAPFLOW_RETRY_MAX; default 1h)
  --max-concurrent-submissions N
                             clusters worked on at once in a pass (CAPFLOW_MAX_CONCURRENT_SUBMISSIONS; default 16)
  --spec-load-timeout DURATION
                             a cluster folder whose spec takes longer to load is recorded Invalid
                             (CAPFLOW_SPEC_LOAD_TIMEOUT; default 60s)
  --spec-load-memory MB      heap of the worker thread that loads specs; a folder needing more is recorded
                             Invalid (CAPFLOW_SPEC_LOAD_MEMORY; default 256)
  --spec-load-workers N      worker threads loading specs at once (CAPFLOW_SPEC_LOAD_WORKERS; default 1)
  --capi-line LINE           the upstream schema line a cluster folder without the Cluster annotation
                             capflow.io/capi-line is validated against: v1.10 (Cluster API v1.10, AWS provider
                             v2.9), v1.11 (v1.11, v2.11) or auto: a document is accepted when a line serving its
                             apiVersion accepts it (CAPFLOW_CAPI_LINE; default auto)
  --leader-elect, --no-leader-elect
                             only the holder of a Lease submits (CAPFLOW_LEADER_ELECT=true|false; default true)
  --lease-name NAME          the Lease (CAPFLOW_LEASE_NAME; default capflow-reconciler)
  --lease-duration DURATION  a lease not renewed for this long may be taken (CAPFLOW_LEASE_DURATION; default 15s)
  --lease-renew-deadline DURATION
                             the leader steps down when it cannot renew for this long
                             (CAPFLOW_LEASE_RENEW_DEADLINE; default 10s)
  --lease-retry-period DURATION
                             how often the lease is renewed or tried (CAPFLOW_LEASE_RETRY_PERIOD; default 2s)
  --identity NAME            this replica in the Lease (POD_NAME; default <hostname>-<pid>)
  --webhook-github-secret-file FILE   GitHub HMAC secret (or CAPFLOW_WEBHOOK_GITHUB_SECRET)
  --webhook-gitlab-token-file FILE    GitLab token (or CAPFLOW_WEBHOOK_GITLAB_TOKEN)
  --webhook-gitea-secret-file FILE    Gitea HMAC secret (or CAPFLOW_WEBHOOK_GITEA_SECRET)
                             a provider without a secret has its webhooks refused
  --apply-parameter NAME=VALUE
                             one more parameter of every cluster-apply it submits, repeatable, e.g.
                             machines=false to keep every cluster at its network (CAPFLOW_APPLY_PARAMETERS:
                             NAME=VALUE,NAME=VALUE)
  --once                     run one pass (no server, no leader election, no watch), print its report
                             as JSON and exit; do not run it beside a running reconciler
  --log-format json|pretty, --log-level LEVEL   as the global options
Memory: the reconciler turns on V8's --optimize-for-size when it starts (a smaller heap, a little
more time in GC); CAPFLOW_OPTIMIZE_FOR_SIZE=false leaves V8's defaults.
Durations: 500ms, 30s, 5m, 1h, 1h30m, or plain seconds.
Exit codes: 0 stopped cleanly (--once: the pass completed and every spec is valid), 2 invalid
options (--once: some cluster spec is invalid, see "invalid" in the report), 1 or 75 the pass
could not run (75: Git or the API server unreachable, retry).`;

/** capiLine: the spec loader's default line (it reads CAPFLOW_CAPI_LINE; `capflow reconcile` sets it from the flag). */
export type ReconcilerConfig = ServiceConfig & { once: boolean; logFormat?: LogFormat; logLevel?: LogLevel; capiLine?: CapiLineChoice };

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  repo: { type: 'string' },
  branch: { type: 'string' },
  'clusters-dir': { type: 'string' },
  namespace: { type: 'string' },
  kubeconfig: { type: 'string' },
  'cache-dir': { type: 'string' },
  listen: { type: 'string' },
  'poll-interval': { type: 'string' },
  'poll-jitter': { type: 'string' },
  'drift-interval': { type: 'string' },
  'drift-policy': { type: 'string' },
  'allow-delete': { type: 'boolean' },
  'retry-backoff': { type: 'string' },
  'retry-max': { type: 'string' },
  'max-concurrent-submissions': { type: 'string' },
  'spec-load-timeout': { type: 'string' },
  'spec-load-memory': { type: 'string' },
  'spec-load-workers': { type: 'string' },
  'capi-line': { type: 'string' },
  'leader-elect': { type: 'boolean' },
  'no-leader-elect': { type: 'boolean' },
  'lease-name': { type: 'string' },
  'lease-duration': { type: 'string' },
  'lease-renew-deadline': { type: 'string' },
  'lease-retry-period': { type: 'string' },
  identity: { type: 'string' },
  'webhook-github-secret-file': { type: 'string' },
  'webhook-gitlab-token-file': { type: 'string' },
  'webhook-gitea-secret-file': { type: 'string' },
  'apply-parameter': { type: 'string', multiple: true },
  once: { type: 'boolean' },
  'log-format': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

/** Options and their variables, for error messages. */
const ENV_OF: Partial<Record<keyof typeof OPTIONS, string>> = {
  repo: 'CAPFLOW_REPO',
  branch: 'CAPFLOW_BRANCH',
  'clusters-dir': 'CAPFLOW_CLUSTERS_DIR',
  namespace: 'CAPFLOW_NAMESPACE',
  kubeconfig: 'KUBECONFIG',
  'cache-dir': 'CAPFLOW_CACHE_DIR',
  listen: 'CAPFLOW_LISTEN',
  'poll-interval': 'CAPFLOW_POLL_INTERVAL',
  'poll-jitter': 'CAPFLOW_POLL_JITTER',
  'drift-interval': 'CAPFLOW_DRIFT_INTERVAL',
  'drift-policy': 'CAPFLOW_DRIFT_POLICY',
  'allow-delete': 'CAPFLOW_ALLOW_DELETE',
  'retry-backoff': 'CAPFLOW_RETRY_BACKOFF',
  'retry-max': 'CAPFLOW_RETRY_MAX',
  'max-concurrent-submissions': 'CAPFLOW_MAX_CONCURRENT_SUBMISSIONS',
  'spec-load-timeout': 'CAPFLOW_SPEC_LOAD_TIMEOUT',
  'spec-load-memory': 'CAPFLOW_SPEC_LOAD_MEMORY',
  'spec-load-workers': 'CAPFLOW_SPEC_LOAD_WORKERS',
  'capi-line': 'CAPFLOW_CAPI_LINE',
  'leader-elect': 'CAPFLOW_LEADER_ELECT',
  'lease-name': 'CAPFLOW_LEASE_NAME',
  'lease-duration': 'CAPFLOW_LEASE_DURATION',
  'lease-renew-deadline': 'CAPFLOW_LEASE_RENEW_DEADLINE',
  'lease-retry-period': 'CAPFLOW_LEASE_RETRY_PERIOD',
  identity: 'POD_NAME',
  'apply-parameter': 'CAPFLOW_APPLY_PARAMETERS',
};

type Name = keyof typeof OPTIONS;

/** The parameters of every run the reconciler submits; `--apply-parameter` cannot set them. */
const RESERVED_PARAMETERS = ['repo', 'revision', 'cluster-path', 'cluster-name', 'spec-hash'];

/** Flags, else environment, else the default; `--help` is the caller's (it never reaches here). */
export function parseReconcilerConfig(argv: string[], env: NodeJS.ProcessEnv): ReconcilerConfig {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: false, strict: true }));
  } catch (err) {
    throw new InputError('CLI_USAGE', `reconcile: ${(err as Error).message}`, { hint: 'see: capflow reconcile --help' });
  }
  const where = (name: Name): string => (ENV_OF[name] ? `--${name} (${ENV_OF[name]})` : `--${name}`);
  const bad = (name: Name, why: string): never => {
    throw new InputError('CONFIG_INVALID', `reconcile: ${where(name)} ${why}`, { hint: 'see: capflow reconcile --help' });
  };
  const raw = (name: Name): string | undefined => {
    const flag = values[name];
    if (typeof flag === 'string') return flag;
    const variable = ENV_OF[name];
    const fromEnv = variable ? env[variable] : undefined;
    return fromEnv === '' ? undefined : fromEnv;
  };
  const text = (name: Name, fallback: string): string => raw(name) ?? fallback;
  const duration = (name: Name, fallback: string): number => {
    const value = text(name, fallback);
    try {
      return parseDurationMs(value, where(name));
    } catch {
      return bad(name, `must be a duration like 500ms, 30s, 5m or 1h, not "${value}"`);
    }
  };
  const positive = (name: Name, fallback: string): number => {
    const ms = duration(name, fallback);
    return ms > 0 ? ms : bad(name, 'must be longer than 0');
  };
  const flagOrEnvBool = (name: Name, fallback: boolean): boolean => {
    if (values[name] === true) return true;
    const value = ENV_OF[name] ? env[ENV_OF[name]] : undefined;
    if (value === undefined || value === '') return fallback;
    if (/^(true|1|yes)$/i.test(value)) return true;
    if (/^(false|0|no)$/i.test(value)) return false;
    return bad(name, `must be true or false, not "${value}"`);
  };

  const repoUrl = raw('repo') ?? bad('repo', 'is required: the GitOps repository URL');

  const jitterText = text('poll-jitter', '0.1');
  const pollJitter = Number(jitterText);
  if (!/^\d*\.?\d+$/.test(jitterText.trim()) || !(pollJitter >= 0 && pollJitter < 1)) bad('poll-jitter', `must be a fraction from 0 up to (not including) 1, not "${jitterText}"`);

  const driftPolicy = text('drift-policy', 'report');
  if (driftPolicy !== 'report' && driftPolicy !== 'enforce') bad('drift-policy', `must be report or enforce, not "${driftPolicy}"`);

  const concurrencyText = text('max-concurrent-submissions', '16');
  const maxConcurrentSubmissions = Number(concurrencyText);
  if (!/^\d+$/.test(concurrencyText.trim()) || maxConcurrentSubmissions < 1) bad('max-concurrent-submissions', `must be a whole number ≥ 1, not "${concurrencyText}"`);

  const whole = (name: Name, fallback: string, min: number): number => {
    const value = text(name, fallback);
    const n = Number(value);
    return /^\d+$/.test(value.trim()) && n >= min ? n : bad(name, `must be a whole number ≥ ${min}, not "${value}"`);
  };
  const specLoad = { timeoutMs: positive('spec-load-timeout', '60s'), maxHeapMb: whole('spec-load-memory', '256', 32), workers: whole('spec-load-workers', '1', 1) };

  if (values['leader-elect'] === true && values['no-leader-elect'] === true) bad('leader-elect', 'and --no-leader-elect contradict each other');
  const leaderElection = values['no-leader-elect'] === true ? false : flagOrEnvBool('leader-elect', true);

  const retryBaseMs = positive('retry-backoff', '1m');
  const retryMaxMs = positive('retry-max', '1h');
  if (retryMaxMs < retryBaseMs) bad('retry-max', `(${retryMaxMs / 1000}s) must not be shorter than --retry-backoff (${retryBaseMs / 1000}s)`);

  const logFormat = typeof values['log-format'] === 'string' ? values['log-format'] : undefined;
  if (logFormat !== undefined && logFormat !== 'json' && logFormat !== 'pretty') bad('log-format', `must be json or pretty, not "${logFormat}"`);
  const logLevel = typeof values['log-level'] === 'string' ? values['log-level'] : undefined;
  if (logLevel !== undefined && !['error', 'warn', 'info', 'debug'].includes(logLevel)) bad('log-level', `must be error, warn, info or debug, not "${logLevel}"`);

  const capiLine = raw('capi-line');
  if (capiLine !== undefined && !isCapiLineChoice(capiLine)) bad('capi-line', `must be ${CAPI_LINES.map((l) => l.line).join(', ')} or auto, not "${capiLine}"`);

  const applyParameters: Record<string, string> = {};
  // Each flag is one pair (its value may hold commas); the variable lists pairs separated by commas.
  const applyFlags = values['apply-parameter'];
  const applyPairs = Array.isArray(applyFlags) ? applyFlags : (raw('apply-parameter') ?? '').split(',').map((x) => x.trim()).filter(Boolean);
  for (const pair of applyPairs) {
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)=(.*)$/.exec(pair);
    if (!m) bad('apply-parameter', `must be NAME=VALUE, not "${pair}"`);
    if (RESERVED_PARAMETERS.includes(m![1]!)) bad('apply-parameter', `cannot set ${m![1]}: the reconciler sets it for each run`);
    applyParameters[m![1]!] = m![2]!;
  }

  const kubeconfig = raw('kubeconfig');
  const config: ReconcilerConfig = {
    repoUrl,
    branch: text('branch', 'main'),
    namespace: text('namespace', 'capflow-system'),
    pollIntervalMs: positive('poll-interval', '60s'),
    pollJitter,
    driftIntervalMs: duration('drift-interval', '1h'),
    driftPolicy: driftPolicy as 'report' | 'enforce',
    allowDelete: flagOrEnvBool('allow-delete', false),
    retryBaseMs,
    retryMaxMs,
    identity: text('identity', `${os.hostname()}-${process.pid}`),
    version: capflowVersion(),
    maxConcurrentSubmissions,
    specLoad,
    clustersDir: text('clusters-dir', 'clusters'),
    cacheDir: path.resolve(text('cache-dir', defaultCacheDir(env))),
    ...listenAddress(text('listen', '0.0.0.0:8080'), (why) => bad('listen', why)),
    webhookSecrets: webhookSecrets(values, env, (name, why) => bad(name, why)),
    leaderElection,
    leaseName: text('lease-name', 'capflow-reconciler'),
    leaseDurationSeconds: positive('lease-duration', '15s') / 1000,
    renewDeadlineSeconds: positive('lease-renew-deadline', '10s') / 1000,
    retryPeriodSeconds: positive('lease-retry-period', '2s') / 1000,
    once: values.once === true,
    ...(Object.keys(applyParameters).length > 0 ? { applyParameters } : {}),
    ...(kubeconfig ? { kubeconfig } : {}),
    ...(capiLine !== undefined ? { capiLine: capiLine as CapiLineChoice } : {}),
    ...(logFormat ? { logFormat: logFormat as LogFormat } : {}),
    ...(logLevel ? { logLevel: logLevel as LogLevel } : {}),
  };
  return config;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CACHE_HOME || path.join(env.HOME || os.homedir(), '.cache');
  return path.join(base, 'capflow', 'reconciler');
}

/** host:port, [v6]:port or :port (all interfaces). */
function listenAddress(value: string, bad: (why: string) => never): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value.trim());
  if (!m) return bad(`must be HOST:PORT, e.g. 0.0.0.0:8080, not "${value}"`);
  const port = Number(m[3]);
  if (port > 65535) return bad(`port ${port} is not a TCP port`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** Each secret from its variable or its file, never both. */
function webhookSecrets(values: Record<string, string | boolean | string[] | undefined>, env: NodeJS.ProcessEnv, bad: (name: Name, why: string) => never): ServiceConfig['webhookSecrets'] {
  const sources = [
    ['github', 'webhook-github-secret-file', 'CAPFLOW_WEBHOOK_GITHUB_SECRET'],
    ['gitlab', 'webhook-gitlab-token-file', 'CAPFLOW_WEBHOOK_GITLAB_TOKEN'],
    ['gitea', 'webhook-gitea-secret-file', 'CAPFLOW_WEBHOOK_GITEA_SECRET'],
  ] as const;
  const secrets: ServiceConfig['webhookSecrets'] = {};
  for (const [provider, flag, variable] of sources) {
    const file = values[flag];
    const fromEnv = env[variable] || undefined;
    if (typeof file === 'string' && fromEnv !== undefined) bad(flag, `and ${variable} are both set: give the secret once`);
    let secret = fromEnv;
    if (typeof file === 'string') {
      try {
        secret = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        bad(flag, `cannot be read: ${(err as Error).message}`);
      }
      if (!secret) bad(flag, `${file} is empty`);
    }
    if (secret) secrets[provider] = secret;
  }
  return secrets;
}

/** The package version: a spec hashed by another version is hashed again. */
function capflowVersion(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
