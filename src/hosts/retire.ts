/**
 * A host leaves a cluster: its Node drained and deleted (when the API answers), `kubeadm reset` on
 * the host (which also takes a control plane's etcd member out), then its claim released, in that
 * order, so a host is never free for another cluster while it still runs this one's kubelet.
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from '../core/logger.js';
import type { SecretStore } from '../core/secrets.js';
import { deleteNode, drainNode } from '../bootstrap/nodes.js';
import { releaseHost, type HostClaim } from './claims.js';
import { resetHost } from './kubeadm.js';
import type { HostShell } from './shell.js';

export interface RetireOptions {
  store: SecretStore;
  /** The workload API; undefined when the cluster has none (any more): no drain. */
  core: CoreV1Api | undefined;
  log: Logger;
  drainTimeoutMs: number;
  signal: AbortSignal;
  /** Drain failures stop the retirement (scale-down), or are logged (the whole cluster is going). */
  drainMustSucceed: boolean;
}

export async function retireHost(claim: HostClaim, node: string | undefined, shell: () => Promise<HostShell>, o: RetireOptions): Promise<void> {
  if (o.core && node) {
    try {
      await drainNode(o.core, node, { timeoutMs: o.drainTimeoutMs, log: o.log, signal: o.signal });
      if (await deleteNode(o.core, node)) o.log.info('Deleted node', { node, host: claim.host });
    } catch (err) {
      if (o.drainMustSucceed) throw err;
      o.log.warn(`Could not drain ${node}; the cluster is being deleted, going on`, { host: claim.host, error: err instanceof Error ? err.message : String(err) });
    }
  }
  await resetHost(await shell(), o.log);
  if (await releaseHost(o.store, claim)) o.log.info(`Released host ${claim.host}`, { host: claim.host, group: claim.group });
}
