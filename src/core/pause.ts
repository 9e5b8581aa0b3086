/**
 * The pause marker: how a step that is already running learns that its cluster was paused in Git
 * (Cluster spec.paused or the cluster.x-k8s.io/paused annotation, src/spec/pause.ts). A running
 * step's checkout is pinned to the commit it started at, so it cannot see a later commit; the
 * reconciler, when it sees the pause, writes this marker where the steps already keep the cluster's
 * state: the secret store (Kubernetes Secrets in the management cluster, or the local runner's 0600
 * files). Steps look at it at their safe points (between resource families: ctx.checkpoint) and stop
 * there with exit code 4 (ExitCode.paused), as a crash at that point would stop them, so a rerun
 * after unpausing converges. The marker is keyed by the cluster's folder name (the reconciler's
 * identity of a cluster, and the last segment of every step's --cluster-dir).
 *
 * The reconciler only creates and deletes the marker (RBAC create/delete on secrets, no read).
 */
import path from 'node:path';
import { PausedError } from './errors.js';
import type { Logger } from './logger.js';
import type { SecretStore } from './secrets.js';

export interface PauseMarker {
  /** The commit whose spec paused the cluster. */
  revision: string;
  /** Where: `clusters/dev/cluster.yaml:7 spec.paused`. */
  where: string;
  /** When the reconciler wrote it (ISO 8601). */
  at: string;
}

export function pauseMarkerName(cluster: string): string {
  return `capflow-${cluster}-paused`;
}

/** The cluster (folder) name of a step's --cluster-dir: its last path segment. */
export function clusterOfPath(clusterPath: string): string {
  return path.basename(path.resolve(clusterPath));
}

export async function readPauseMarker(store: SecretStore, cluster: string): Promise<PauseMarker | undefined> {
  const data = await store.get(pauseMarkerName(cluster));
  if (!data) return undefined;
  return { revision: data.revision ?? '', where: data.where ?? '', at: data.at ?? '' };
}

/** Creates the marker; one that exists already is left as it is (the first pause commit stays named). */
export async function writePauseMarker(store: SecretStore, cluster: string, marker: PauseMarker): Promise<void> {
  await store.create(pauseMarkerName(cluster), { revision: marker.revision, where: marker.where, at: marker.at }, { 'capflow.io/cluster': cluster, 'capflow.io/pause': 'true' });
}

export async function clearPauseMarker(store: SecretStore, cluster: string): Promise<void> {
  await store.delete(pauseMarkerName(cluster));
}

/** What stops a step: the coded result `STEP_PAUSED`, exit code 4. */
export function pausedError(step: string, phase: string, marker: PauseMarker): PausedError {
  const commit = marker.revision ? ` by commit ${marker.revision.slice(0, 12)}` : '';
  return new PausedError('STEP_PAUSED', `paused at ${phase}: the cluster was paused${commit}${marker.where ? ` (${marker.where})` : ''}`, {
    hint: `${step} stopped at a safe point; unpause the cluster in Git and the run resumes (a rerun converges)`,
    details: { phase, revision: marker.revision, where: marker.where },
  });
}

/**
 * A step's safe-point check: throws PausedError when the cluster's marker exists. `phase` names
 * what the step is about to start (`subnets`, `nat-gateways`, ...), so the result says where it
 * stopped. A marker that cannot be read does not stop the step (the reconciler also suspends the
 * Workflow, and the next checkpoint reads again): it is logged.
 */
export function makeCheckpoint(o: { step: string; cluster: string; store: SecretStore; log: Logger; enabled: boolean }): (phase: string) => Promise<void> {
  return async (phase) => {
    if (!o.enabled) return;
    let marker: PauseMarker | undefined;
    try {
      marker = await readPauseMarker(o.store, o.cluster);
    } catch (err) {
      o.log.warn('Reading the pause marker failed: going on', { phase, error: err instanceof Error ? err.message : String(err) });
      return;
    }
    if (!marker) return;
    o.log.info('Cluster paused: stopping at a safe point', { phase, revision: marker.revision, where: marker.where });
    throw pausedError(o.step, phase, marker);
  };
}
