/**
 * The cluster's join token: one bootstrap token in the workload cluster that the machines launched
 * by a run join with, remembered in capflow's secret `capflow-<cluster>-join-token` (the management
 * cluster, or the local store) so that every step of the run and a rerun use the same one.
 *
 * Made only when a machine is about to be launched; refreshed once past half its life (MachinePools
 * keep theirs while their Auto Scaling group may launch); retired by join-workers when every machine
 * joined and no MachinePool needs it. A no-op rerun neither makes nor refreshes one.
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from '../core/logger.js';
import type { SecretStore } from '../core/secrets.js';
import { createBootstrapToken, deleteBootstrapToken, listBootstrapTokens, refreshBootstrapToken } from './tokens.js';

export function joinTokenSecretName(clusterName: string): string {
  return `capflow-${clusterName}-join-token`;
}

export interface JoinToken {
  id: string;
  /** `<id>.<secret>`. Secret. */
  token: string;
  expiresAt: Date;
}

export interface JoinTokenOutcome extends JoinToken {
  action: 'created' | 'kept' | 'refreshed';
}

/** kubeadm's duration format of a TTL (`15m0s`). */
export function kubeadmDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h > 0 ? `${h}h` : ''}${m}m${s % 60}s`;
}

export async function ensureJoinToken(
  store: SecretStore,
  core: CoreV1Api,
  clusterName: string,
  opts: { ttlMs: number; log: Logger; now?: () => Date },
): Promise<JoinTokenOutcome> {
  const now = (opts.now ?? (() => new Date()))();
  const name = joinTokenSecretName(clusterName);
  const kept = await store.get(name);
  if (kept?.id && kept.token) {
    const live = (await listBootstrapTokens(core)).find((t) => t.id === kept.id);
    if (live?.expiresAt && live.expiresAt.getTime() > now.getTime()) {
      const halfLife = live.expiresAt.getTime() - opts.ttlMs / 2;
      if (now.getTime() < halfLife) return { id: kept.id, token: kept.token, expiresAt: live.expiresAt, action: 'kept' };
      const expiresAt = await refreshBootstrapToken(core, kept.id, opts.ttlMs, opts.now);
      opts.log.info('Refreshed the join token', { tokenId: kept.id, expiresAt: expiresAt.toISOString() });
      return { id: kept.id, token: kept.token, expiresAt, action: 'refreshed' };
    }
  }
  const made = await createBootstrapToken(core, { ttlMs: opts.ttlMs, description: `capflow: machines of cluster ${clusterName} join with it`, ...(opts.now ? { now: opts.now } : {}) });
  await store.put(name, { id: made.id, token: made.token });
  opts.log.info('Created a join token', { tokenId: made.id, expiresAt: made.expiresAt.toISOString() });
  if (kept?.id) await deleteBootstrapToken(core, kept.id);
  return { ...made, action: 'created' };
}

/**
 * Deletes capflow's bootstrap tokens from the workload cluster (also one a crash left between its
 * creation and its record) and the record; true when there was something to delete.
 */
export async function retireJoinToken(store: SecretStore, core: CoreV1Api | undefined, clusterName: string): Promise<boolean> {
  const name = joinTokenSecretName(clusterName);
  const kept = await store.get(name);
  const live = core ? await listBootstrapTokens(core) : [];
  for (const t of live) await deleteBootstrapToken(core!, t.id);
  if (kept) await store.delete(name);
  return kept !== undefined || live.length > 0;
}
