/**
 * What join-workers does with the workload cluster once launch-nodes made the machines: wait until
 * every live machine's Node is registered and Ready (saying `7/10 nodes Ready` as it goes), label
 * the Nodes with their machine, and remove the Nodes whose machines are gone.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { CoreV1Api } from '@kubernetes/client-node';
import type { ClusterInstance } from '../aws/instances.js';
import { TransientError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { deleteNode, drainNode, listNodes, markNode, type NodeView } from './nodes.js';

export const MACHINE_LABEL = 'capflow.io/machine';
export const GROUP_LABEL = 'capflow.io/machine-group';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
export const WORKER_ROLE_LABEL = 'node-role.kubernetes.io/worker';
/** Cluster API's annotations on a Node (the machine and cluster it belongs to). */
export const CAPI_MACHINE_ANNOTATION = 'cluster.x-k8s.io/machine';
export const CAPI_CLUSTER_ANNOTATION = 'cluster.x-k8s.io/cluster-name';

const LIVE = new Set(['pending', 'running']);

export interface WaitOptions {
  timeoutMs: number;
  pollMs: number;
  log: Logger;
  signal: AbortSignal;
  /** Read again each poll: Auto Scaling groups launch and replace instances on their own. */
  instances: () => Promise<ClusterInstance[]>;
}

export interface NodesReady {
  instances: ClusterInstance[];
  nodes: Map<string, NodeView>;
  /** When the last Node turned Ready, as this step saw it. */
  lastReadyAt: number;
}

/** Why an instance's Node is not Ready, for the progress and the timeout message. */
function notReadyReason(i: ClusterInstance, nodes: Map<string, NodeView>): string | undefined {
  const node = nodes.get(i.privateDns);
  if (!node) return i.state === 'pending' ? 'instance pending' : 'not registered';
  return node.ready ? undefined : node.reason ?? 'NotReady';
}

export async function waitForReadyNodes(core: CoreV1Api, clusterName: string, opts: WaitOptions): Promise<NodesReady> {
  const started = Date.now();
  let said = '';
  let saidAt = 0;
  let lastReadyAt = started;
  let readyBefore = -1;
  for (;;) {
    opts.signal.throwIfAborted();
    const instances = (await opts.instances()).filter((i) => LIVE.has(i.state));
    const nodes = await listNodes(core);
    const waiting = instances.map((i) => ({ i, reason: notReadyReason(i, nodes) })).filter((x) => x.reason !== undefined);
    const ready = instances.length - waiting.length;
    if (ready > readyBefore) lastReadyAt = Date.now();
    readyBefore = ready;
    const line = `${ready}/${instances.length} nodes Ready`;
    if (line !== said || Date.now() - saidAt > 15_000) {
      opts.log.info(line, { cluster: clusterName, ...(waiting.length > 0 ? { waiting: waiting.slice(0, 5).map((w) => `${w.i.privateDns || w.i.instanceId}: ${w.reason}`).join('; ') } : {}) });
      said = line;
      saidAt = Date.now();
    }
    if (waiting.length === 0) return { instances, nodes, lastReadyAt };
    if (Date.now() - started > opts.timeoutMs) {
      const names = waiting.map((w) => `${w.i.privateDns || w.i.instanceId} (machine ${w.i.machine}, ${w.i.instanceId}): ${w.reason}`);
      throw new TransientError('NODES_NOT_READY', `${waiting.length} of ${instances.length} nodes not Ready after ${Math.round(opts.timeoutMs / 1000)}s: ${names.join('; ')}`, {
        hint: "a node that is not registered did not finish kubeadm join (see its machine's boot log); a registered one that is not Ready usually lacks its CNI",
        details: { notReady: waiting.map((w) => w.i.privateDns || w.i.instanceId) },
      });
    }
    await delay(opts.pollMs, undefined, { signal: opts.signal });
  }
}

/** Labels and annotations a machine's Node carries; true for each Node written. */
export async function labelNodes(core: CoreV1Api, clusterName: string, ready: NodesReady, log: Logger): Promise<number> {
  let written = 0;
  for (const i of ready.instances) {
    const node = ready.nodes.get(i.privateDns);
    if (!node) continue;
    const labels: Record<string, string> = { [MACHINE_LABEL]: i.machine, [GROUP_LABEL]: i.group, ...(i.az ? { [ZONE_LABEL]: i.az } : {}), ...(i.role === 'node' ? { [WORKER_ROLE_LABEL]: '' } : {}) };
    const annotations = { [CAPI_MACHINE_ANNOTATION]: i.machine, [CAPI_CLUSTER_ANNOTATION]: clusterName };
    if (await markNode(core, node, labels, annotations)) {
      written++;
      log.info('Labelled node', { node: node.name, machine: i.machine });
    }
  }
  return written;
}

/**
 * Nodes whose instance this cluster owned and that is terminated (or shutting down): cordoned,
 * drained as far as it goes (no kubelet confirms), deleted. Nodes of unknown names are left alone.
 */
export async function removeGoneNodes(core: CoreV1Api, all: ClusterInstance[], nodes: Map<string, NodeView>, opts: { log: Logger; drainTimeoutMs: number; signal: AbortSignal }): Promise<string[]> {
  const live = new Set(all.filter((i) => LIVE.has(i.state) || i.state === 'stopping' || i.state === 'stopped').map((i) => i.privateDns));
  const gone = new Map(all.filter((i) => (i.state === 'terminated' || i.state === 'shutting-down') && i.privateDns && !live.has(i.privateDns)).map((i) => [i.privateDns, i]));
  const removed: string[] = [];
  for (const name of nodes.keys()) {
    const i = gone.get(name);
    if (!i) continue;
    opts.log.info('Removing the node of a machine that is gone', { node: name, machine: i.machine, instanceId: i.instanceId });
    await drainNode(core, name, { timeoutMs: opts.drainTimeoutMs, log: opts.log, signal: opts.signal }).catch((err: unknown) =>
      opts.log.warn('Drain did not finish; the machine is gone, deleting the node anyway', { node: name, error: (err as Error).message }),
    );
    if (await deleteNode(core, name)) removed.push(name);
  }
  return removed;
}
