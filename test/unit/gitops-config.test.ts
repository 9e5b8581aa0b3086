import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { isCapflowError } from '../../src/core/errors.js';
import { defaultCacheDir, parseReconcilerConfig, reconcileHelp } from '../../src/gitops/config.js';
import { publicRepoUrl } from '../../src/gitops/reconciler.js';

const REPO = ['--repo', 'https://git.example/gitops.git'];
const ENV = { HOME: '/home/op' };

function failure(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    if (isCapflowError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected an error');
}

describe('gitops config (capflow reconcile flags)', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-config-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('has the documented defaults', () => {
    const c = parseReconcilerConfig(REPO, ENV);
    expect(c).to.deep.include({
      repoUrl: 'https://git.example/gitops.git',
      branch: 'main',
      clustersDir: 'clusters',
      namespace: 'capflow-system',
      cacheDir: path.join('/home/op', '.cache', 'capflow', 'reconciler'),
      host: '0.0.0.0',
      port: 8080,
      pollIntervalMs: 60_000,
      pollJitter: 0.1,
      driftIntervalMs: 3_600_000,
      driftPolicy: 'report',
      allowDelete: false,
      retryBaseMs: 60_000,
      retryMaxMs: 3_600_000,
      maxConcurrentSubmissions: 16,
      leaderElection: true,
      leaseName: 'capflow-reconciler',
      leaseDurationSeconds: 15,
      renewDeadlineSeconds: 10,
      retryPeriodSeconds: 2,
      webhookSecrets: {},
      once: false,
    });
    expect(c.kubeconfig).to.equal(undefined);
    expect(c.identity).to.equal(`${os.hostname()}-${process.pid}`);
    expect(c.version).to.match(/^\d+\.\d+\.\d+/);
  });

  it('takes every setting from the environment, and a flag wins over its variable', () => {
    const env = {
      CAPFLOW_REPO: 'ssh://git@git.example/gitops.git',
      CAPFLOW_BRANCH: 'prod',
      CAPFLOW_CLUSTERS_DIR: 'fleet',
      CAPFLOW_NAMESPACE: 'ops',
      KUBECONFIG: '/etc/kube.yaml',
      CAPFLOW_CACHE_DIR: '/var/cache/capflow',
      CAPFLOW_LISTEN: '127.0.0.1:9090',
      CAPFLOW_POLL_INTERVAL: '5m',
      CAPFLOW_POLL_JITTER: '0.25',
      CAPFLOW_DRIFT_INTERVAL: '0',
      CAPFLOW_DRIFT_POLICY: 'enforce',
      CAPFLOW_ALLOW_DELETE: 'true',
      CAPFLOW_RETRY_BACKOFF: '30s',
      CAPFLOW_RETRY_MAX: '10m',
      CAPFLOW_MAX_CONCURRENT_SUBMISSIONS: '4',
      CAPFLOW_LEADER_ELECT: 'false',
      CAPFLOW_LEASE_NAME: 'lease-x',
      CAPFLOW_LEASE_DURATION: '20s',
      CAPFLOW_LEASE_RENEW_DEADLINE: '1.5s',
      CAPFLOW_LEASE_RETRY_PERIOD: '300ms',
      POD_NAME: 'capflow-reconciler-7d9f-abcde',
    };
    const c = parseReconcilerConfig([], env);
    expect(c).to.deep.include({
      repoUrl: 'ssh://git@git.example/gitops.git',
      branch: 'prod',
      clustersDir: 'fleet',
      namespace: 'ops',
      kubeconfig: '/etc/kube.yaml',
      cacheDir: '/var/cache/capflow',
      host: '127.0.0.1',
      port: 9090,
      pollIntervalMs: 300_000,
      pollJitter: 0.25,
      driftIntervalMs: 0,
      driftPolicy: 'enforce',
      allowDelete: true,
      retryBaseMs: 30_000,
      retryMaxMs: 600_000,
      maxConcurrentSubmissions: 4,
      leaderElection: false,
      leaseName: 'lease-x',
      leaseDurationSeconds: 20,
      renewDeadlineSeconds: 1.5,
      retryPeriodSeconds: 0.3,
      identity: 'capflow-reconciler-7d9f-abcde',
    });
    const flags = parseReconcilerConfig(['--branch=main', '--poll-interval', '10s', '--leader-elect', '--listen', ':8081', '--identity', 'me'], env);
    expect(flags).to.deep.include({ branch: 'main', pollIntervalMs: 10_000, leaderElection: true, host: '0.0.0.0', port: 8081, identity: 'me' });
  });

  it('reads the chart’s flags (the --flag=value form, --leader-elect, --log-level after the command)', () => {
    const c = parseReconcilerConfig(
      ['--branch=main', '--clusters-dir=clusters', '--namespace=capflow', '--listen=0.0.0.0:8080', '--poll-interval=60s', '--drift-interval=1h', '--drift-policy=report', '--cache-dir=/var/cache/capflow', '--leader-elect', '--log-level=debug'],
      { CAPFLOW_REPO: 'https://git.example/r.git' },
    );
    expect(c).to.deep.include({ namespace: 'capflow', leaderElection: true, logLevel: 'debug', cacheDir: '/var/cache/capflow' });
  });

  it('--no-leader-elect, --allow-delete, --once', () => {
    const c = parseReconcilerConfig([...REPO, '--no-leader-elect', '--allow-delete', '--once'], { CAPFLOW_LEADER_ELECT: 'true' });
    expect(c).to.deep.include({ leaderElection: false, allowDelete: true, once: true });
  });

  it('--apply-parameter (repeatable, or CAPFLOW_APPLY_PARAMETERS) adds parameters to cluster-apply runs; the reconciler’s own are refused', () => {
    expect(parseReconcilerConfig(REPO, ENV).applyParameters).to.equal(undefined);
    const flags = parseReconcilerConfig([...REPO, '--apply-parameter', 'machines=false', '--apply-parameter=nat-timeout=20m'], ENV);
    expect(flags.applyParameters).to.deep.equal({ machines: 'false', 'nat-timeout': '20m' });
    // one flag is one pair, commas and all
    expect(parseReconcilerConfig([...REPO, '--apply-parameter', 'zones=a,b'], ENV).applyParameters).to.deep.equal({ zones: 'a,b' });
    expect(parseReconcilerConfig(REPO, { ...ENV, CAPFLOW_APPLY_PARAMETERS: 'machines=false, a=b' }).applyParameters).to.deep.equal({ machines: 'false', a: 'b' });
    expect(failure(() => parseReconcilerConfig([...REPO, '--apply-parameter', 'revision=abc'], ENV))).to.deep.include({ code: 'CONFIG_INVALID' });
    expect(failure(() => parseReconcilerConfig([...REPO, '--apply-parameter', 'revision=abc'], ENV)).message).to.include('the reconciler sets it');
    expect(failure(() => parseReconcilerConfig([...REPO, '--apply-parameter', 'machines'], ENV)).message).to.include('must be NAME=VALUE');
  });

  it('the cache directory follows XDG_CACHE_HOME', () => {
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/xdg' })).to.equal('/xdg/capflow/reconciler');
    expect(parseReconcilerConfig(REPO, { XDG_CACHE_HOME: '/xdg' }).cacheDir).to.equal('/xdg/capflow/reconciler');
  });

  it('webhook secrets come from their variables or files, never both', () => {
    const file = path.join(dir, 'gitlab-token');
    writeFileSync(file, 'tok-from-file\n');
    const c = parseReconcilerConfig([...REPO, '--webhook-gitlab-token-file', file], { CAPFLOW_WEBHOOK_GITHUB_SECRET: 'gh', CAPFLOW_WEBHOOK_GITEA_SECRET: 'gt' });
    expect(c.webhookSecrets).to.deep.equal({ github: 'gh', gitlab: 'tok-from-file', gitea: 'gt' });
    const both = failure(() => parseReconcilerConfig([...REPO, '--webhook-gitlab-token-file', file], { CAPFLOW_WEBHOOK_GITLAB_TOKEN: 'x' }));
    expect(both.message).to.include('--webhook-gitlab-token-file').and.include('CAPFLOW_WEBHOOK_GITLAB_TOKEN');
    expect(failure(() => parseReconcilerConfig([...REPO, '--webhook-github-secret-file', path.join(dir, 'missing')], {})).message).to.include('--webhook-github-secret-file');
    const empty = path.join(dir, 'empty');
    writeFileSync(empty, '\n');
    expect(failure(() => parseReconcilerConfig([...REPO, '--webhook-gitea-secret-file', empty], {})).message).to.include('is empty');
  });

  it('a secret cannot be given as a flag value', () => {
    expect(failure(() => parseReconcilerConfig([...REPO, '--webhook-github-secret', 's3cret'], {})).code).to.equal('CLI_USAGE');
  });

  const bad: Array<[string, string[], NodeJS.ProcessEnv, RegExp]> = [
    ['no repository', [], {}, /--repo \(CAPFLOW_REPO\) is required/],
    ['a bad duration', [...REPO, '--poll-interval', 'soon'], {}, /--poll-interval \(CAPFLOW_POLL_INTERVAL\) must be a duration.*"soon"/],
    ['a bad duration in the environment', REPO, { CAPFLOW_RETRY_MAX: '1 hour' }, /--retry-max \(CAPFLOW_RETRY_MAX\) must be a duration/],
    ['a zero poll interval', [...REPO, '--poll-interval', '0'], {}, /--poll-interval .* must be longer than 0/],
    ['a jitter of 1', [...REPO, '--poll-jitter', '1'], {}, /--poll-jitter \(CAPFLOW_POLL_JITTER\) must be a fraction/],
    ['an unknown drift policy', REPO, { CAPFLOW_DRIFT_POLICY: 'fix' }, /--drift-policy \(CAPFLOW_DRIFT_POLICY\) must be report or enforce, not "fix"/],
    ['a boolean variable that is not one', REPO, { CAPFLOW_ALLOW_DELETE: 'sure' }, /--allow-delete \(CAPFLOW_ALLOW_DELETE\) must be true or false/],
    ['a listen address without a port', [...REPO, '--listen', '0.0.0.0'], {}, /--listen \(CAPFLOW_LISTEN\) must be HOST:PORT/],
    ['a port out of range', [...REPO, '--listen', ':70000'], {}, /port 70000/],
    ['a retry max shorter than the backoff', [...REPO, '--retry-backoff', '10m', '--retry-max', '1m'], {}, /--retry-max .* must not be shorter than --retry-backoff/],
    ['zero concurrent submissions', [...REPO, '--max-concurrent-submissions', '0'], {}, /--max-concurrent-submissions .* whole number/],
    ['both --leader-elect and --no-leader-elect', [...REPO, '--leader-elect', '--no-leader-elect'], {}, /contradict/],
    ['an unknown log level', [...REPO, '--log-level', 'loud'], {}, /--log-level must be error/],
    ['an unknown schema line', REPO, { CAPFLOW_CAPI_LINE: '1.11' }, /--capi-line \(CAPFLOW_CAPI_LINE\) must be v1.10, v1.11 or auto, not "1.11"/],
  ];
  for (const [what, argv, env, message] of bad) {
    it(`refuses ${what}, naming the flag and its variable`, () => {
      const err = failure(() => parseReconcilerConfig(argv, env));
      expect(err.code).to.equal('CONFIG_INVALID');
      expect(err.message).to.match(message);
    });
  }

  it('--capi-line (CAPFLOW_CAPI_LINE) names the schema line of folders without the Cluster annotation; unset by default', () => {
    expect(parseReconcilerConfig(REPO, ENV).capiLine).to.equal(undefined);
    expect(parseReconcilerConfig([...REPO, '--capi-line', 'v1.11'], ENV).capiLine).to.equal('v1.11');
    expect(parseReconcilerConfig(REPO, { ...ENV, CAPFLOW_CAPI_LINE: 'v1.10' }).capiLine).to.equal('v1.10');
    expect(parseReconcilerConfig([...REPO, '--capi-line=auto'], { ...ENV, CAPFLOW_CAPI_LINE: 'v1.10' }).capiLine).to.equal('auto');
    expect(reconcileHelp).to.include('--capi-line').and.include('CAPFLOW_CAPI_LINE');
  });

  it('--spec-load-timeout, --spec-load-memory, --spec-load-workers (the worker threads that load specs): defaults 60s, 256 MB, 1; bad values refused', () => {
    expect(parseReconcilerConfig(REPO, ENV).specLoad).to.deep.equal({ timeoutMs: 60_000, maxHeapMb: 256, workers: 1 });
    expect(parseReconcilerConfig([...REPO, '--spec-load-timeout', '2m', '--spec-load-memory=512'], { ...ENV, CAPFLOW_SPEC_LOAD_WORKERS: '2' }).specLoad).to.deep.equal({ timeoutMs: 120_000, maxHeapMb: 512, workers: 2 });
    expect(failure(() => parseReconcilerConfig([...REPO, '--spec-load-memory', '8'], ENV)).message).to.match(/--spec-load-memory \(CAPFLOW_SPEC_LOAD_MEMORY\) must be a whole number ≥ 32, not "8"/);
    expect(failure(() => parseReconcilerConfig(REPO, { ...ENV, CAPFLOW_SPEC_LOAD_WORKERS: '0' })).message).to.match(/--spec-load-workers \(CAPFLOW_SPEC_LOAD_WORKERS\) must be a whole number ≥ 1/);
    expect(failure(() => parseReconcilerConfig([...REPO, '--spec-load-timeout', '0'], ENV)).message).to.match(/--spec-load-timeout .* must be longer than 0/);
    for (const text of ['--spec-load-timeout', 'CAPFLOW_SPEC_LOAD_TIMEOUT', '--spec-load-memory', 'CAPFLOW_SPEC_LOAD_MEMORY', '--spec-load-workers', 'CAPFLOW_SPEC_LOAD_WORKERS']) expect(reconcileHelp).to.include(text);
  });

  it('--help lists every flag with its variable and default', () => {
    for (const text of ['--repo', 'CAPFLOW_REPO', '--poll-interval', 'default 60s', '--drift-interval', 'default 1h', '--drift-policy', '--allow-delete', '--retry-backoff', 'default 1m', '--retry-max', '--leader-elect', '--no-leader-elect', '--lease-name', 'capflow-reconciler', '--lease-duration', 'default 15s', '--identity', 'POD_NAME', '--listen', 'default 0.0.0.0:8080', '--cache-dir', 'XDG_CACHE_HOME', '--namespace', 'default capflow-system', '--kubeconfig', 'KUBECONFIG', '--once', 'CAPFLOW_WEBHOOK_GITHUB_SECRET', '--webhook-gitlab-token-file', 'CAPFLOW_WEBHOOK_GITEA_SECRET', '--poll-jitter', 'default 0.1', '--max-concurrent-submissions']) {
      expect(reconcileHelp).to.include(text);
    }
  });

  describe('publicRepoUrl (what Workflow parameters carry)', () => {
    const cases: Array<[string, string]> = [
      ['https://user:ghp_token@github.com/org/gitops.git', 'https://github.com/org/gitops.git'],
      ['https://oauth2:glpat-x@gitlab.example/org/gitops.git', 'https://gitlab.example/org/gitops.git'],
      ['http://token@git.local/r.git', 'http://git.local/r.git'],
      ['https://github.com/org/gitops.git', 'https://github.com/org/gitops.git'],
      ['ssh://git@github.com/org/gitops.git', 'ssh://git@github.com/org/gitops.git'],
      ['ssh://git:pw@github.com/org/gitops.git', 'ssh://git@github.com/org/gitops.git'],
      ['git@github.com:org/gitops.git', 'git@github.com:org/gitops.git'],
      ['/srv/git/gitops.git', '/srv/git/gitops.git'],
    ];
    for (const [url, expected] of cases) {
      it(`${url} → ${expected}`, () => expect(publicRepoUrl(url)).to.equal(expected));
    }
  });
});
