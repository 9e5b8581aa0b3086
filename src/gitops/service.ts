/**
 * The reconciler as a running service: the real parts (git clone, ConfigMap
 * records, Workflow client, Lease, Prometheus metrics) wired into a
 * Reconciler, behind the HTTP server for probes, metrics and webhooks.
 * Signals are the CLI's business: stop() is the graceful shutdown.
 */
import type { Logger } from '../core/logger.js';
import { createGitSource } from './git-source.js';
import { clearPauseMarker, writePauseMarker } from '../core/pause.js';
import { KubernetesSecretStore, type SecretStore } from '../core/secrets.js';
import type { PauseMarkers } from './types.js';
import { loadKubeConfig } from './kube.js';
import { LeaseLeaderElector } from './leader.js';
import { createMetrics } from './metrics.js';
import { Reconciler, type ReconcilerOptions } from './reconciler.js';
import { ConfigMapRecordStore } from './records.js';
import { startServer } from './server.js';
import { SpecLoadPool } from './spec-loads.js';
import type { ReconcilerMetrics } from './types.js';
import { KubeWorkflowClient } from './workflow-client.js';

export interface ServiceConfig extends ReconcilerOptions {
  /** Default: KUBECONFIG, ~/.kube/config, else in-cluster. */
  kubeconfig?: string;
  clustersDir: string;
  cacheDir: string;
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  webhookSecrets: { github?: string; gitlab?: string; gitea?: string };
  leaderElection: boolean;
  leaseName: string;
  leaseDurationSeconds: number;
  renewDeadlineSeconds: number;
  retryPeriodSeconds: number;
  /** More parameters of the cluster-apply Workflows it submits (`--apply-parameter`), e.g. machines=false. */
  applyParameters?: Record<string, string>;
}

export interface ReconcilerService {
  url: string;
  reconciler: Reconciler;
  stop(): Promise<void>;
}

export interface ReconcilerParts {
  reconciler: Reconciler;
  metrics: ReconcilerMetrics;
  /** Releases what the parts hold (the Git source, the spec-loading threads); call after reconciler.stop() or a last pass. */
  close: () => Promise<void>;
}

/** Pause markers as Secrets of the namespace, where the steps read them (src/core/pause.ts). */
export function pauseMarkers(store: SecretStore): PauseMarkers {
  return { set: (cluster, marker) => writePauseMarker(store, cluster, marker), clear: (cluster) => clearPauseMarker(store, cluster) };
}

/** The Reconciler on the real parts, not started; with leader election when `leaderElection` is set. */
export function createReconciler(config: ServiceConfig, log: Logger, leaderElection = config.leaderElection): ReconcilerParts {
  const kc = loadKubeConfig(config.kubeconfig);
  const git = createGitSource({ url: config.repoUrl, branch: config.branch, clustersDir: config.clustersDir, cacheDir: config.cacheDir, log: log.child({ part: 'git' }) });
  const metrics = createMetrics();
  const specs = new SpecLoadPool(config.specLoad);
  const leader = leaderElection
    ? new LeaseLeaderElector(kc, {
        namespace: config.namespace,
        name: config.leaseName,
        identity: config.identity,
        leaseDurationSeconds: config.leaseDurationSeconds,
        renewDeadlineSeconds: config.renewDeadlineSeconds,
        retryPeriodSeconds: config.retryPeriodSeconds,
        log: log.child({ part: 'leader' }),
      })
    : undefined;
  const reconciler = new Reconciler(config, {
    git,
    records: new ConfigMapRecordStore(kc, config.namespace, { log: log.child({ part: 'records' }) }),
    workflows: new KubeWorkflowClient(kc, config.namespace, { log: log.child({ part: 'workflows' }), ...(config.applyParameters ? { applyParameters: config.applyParameters } : {}) }),
    ...(leader ? { leader } : {}),
    metrics,
    log,
    specs,
    pauses: pauseMarkers(new KubernetesSecretStore(config.namespace, config.kubeconfig)),
  });
  return { reconciler, metrics, close: async () => void (await Promise.all([git.close(), specs.close()])) };
}

/** Starts the HTTP server, then the reconciler (leader election, watch, first pass, polling). */
export async function startReconcilerService(config: ServiceConfig, log: Logger): Promise<ReconcilerService> {
  const { reconciler, metrics, close } = createReconciler(config, log);
  const server = await startServer({
    host: config.host,
    port: config.port,
    metrics,
    healthy: () => true,
    ready: () => reconciler.isReady(),
    webhookSecrets: config.webhookSecrets,
    branch: config.branch,
    onPush: (event) => reconciler.push(event),
    log: log.child({ part: 'http' }),
  });
  try {
    await reconciler.start();
  } catch (err) {
    await server.close();
    await close();
    throw err;
  }
  log.info('reconciler service started', { url: server.url, namespace: config.namespace, branch: config.branch, leaderElection: config.leaderElection });
  let stopping: Promise<void> | undefined;
  return {
    url: server.url,
    reconciler,
    stop: () =>
      (stopping ??= (async () => {
        await reconciler.stop();
        await server.close();
        await close();
        log.info('reconciler service stopped');
      })()),
  };
}
