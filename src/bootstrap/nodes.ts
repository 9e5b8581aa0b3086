/**
 * The Nodes of a workload cluster as the steps see them: Ready or not (and why), labelled with
 * their machine, drained before their machine goes (cordon, then evictions that honour
 * PodDisruptionBudgets, as `kubectl drain` does), and deleted once their machine is gone.
 */
import { PatchStrategy, setHeaderOptions, type CoreV1Api, type V1Node, type V1Pod } from '@kubernetes/client-node';
import { ConflictError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { statusOf, apiStatus, wrapKubeError } from '../core/kube-errors.js';

export interface NodeView {
  name: string;
  ready: boolean;
  /** The Ready condition's reason and message when not Ready. */
  reason?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  unschedulable: boolean;
  /** Every condition as the Node reports it (MachineHealthChecks judge them). */
  conditions: Array<{ type: string; status: string; lastTransitionTime?: string }>;
}

export function viewOf(node: V1Node): NodeView {
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  const isReady = ready?.status === 'True';
  return {
    name: node.metadata?.name ?? '',
    ready: isReady,
    ...(isReady ? {} : { reason: ready ? `${ready.reason ?? 'NotReady'}: ${ready.message ?? ''}`.trim() : 'no Ready condition yet' }),
    labels: { ...(node.metadata?.labels ?? {}) },
    annotations: { ...(node.metadata?.annotations ?? {}) },
    unschedulable: node.spec?.unschedulable === true,
    conditions: (node.status?.conditions ?? []).map((c) => ({ type: c.type, status: c.status, ...(c.lastTransitionTime ? { lastTransitionTime: new Date(c.lastTransitionTime).toISOString() } : {}) })),
  };
}

export async function listNodes(core: CoreV1Api): Promise<Map<string, NodeView>> {
  try {
    const list = await core.listNode();
    return new Map(list.items.map((n) => [n.metadata?.name ?? '', viewOf(n)]));
  } catch (err) {
    throw wrapKubeError(err, 'listing Nodes', { verb: 'list', resource: 'nodes', namespace: '' });
  }
}

/** Sets labels and annotations that differ (a strategic merge patch); true when it wrote. */
export async function markNode(core: CoreV1Api, node: NodeView, labels: Record<string, string>, annotations: Record<string, string>): Promise<boolean> {
  const changed = (want: Record<string, string>, have: Record<string, string>) => Object.fromEntries(Object.entries(want).filter(([k, v]) => have[k] !== v));
  const l = changed(labels, node.labels);
  const a = changed(annotations, node.annotations);
  if (Object.keys(l).length === 0 && Object.keys(a).length === 0) return false;
  await patchNode(core, node.name, { metadata: { labels: l, annotations: a } }, 'labelling');
  return true;
}

// client-node sends a JSON patch unless told otherwise.
const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

async function patchNode(core: CoreV1Api, name: string, body: object, doing: string): Promise<void> {
  try {
    await core.patchNode({ name, body }, MERGE_PATCH);
  } catch (err) {
    throw wrapKubeError(err, `${doing} Node ${name}`, { verb: 'patch', resource: 'nodes', namespace: '' });
  }
}


export interface DrainOptions {
  timeoutMs: number;
  pollMs?: number;
  log: Logger;
  signal?: AbortSignal;
}

/** Pods a drain leaves alone: DaemonSet pods (their controller puts them back) and static pods' mirrors. */
function staysOnNode(pod: V1Pod): boolean {
  if (pod.metadata?.annotations?.['kubernetes.io/config.mirror']) return true;
  if ((pod.metadata?.ownerReferences ?? []).some((o) => o.kind === 'DaemonSet')) return true;
  return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
}

/**
 * Cordons the Node and evicts its pods, retrying evictions a PodDisruptionBudget refuses (429) until
 * the deadline; then waits for the evicted pods to go. A Node that does not exist is drained.
 */
export async function drainNode(core: CoreV1Api, name: string, opts: DrainOptions): Promise<void> {
  const pollMs = opts.pollMs ?? 2000;
  const deadline = Date.now() + opts.timeoutMs;
  let unreachable = false;
  try {
    const node = await core.readNode({ name });
    unreachable = node.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'Unknown';
  } catch (err) {
    if (statusOf(err) === 404) return;
    throw wrapKubeError(err, `reading Node ${name}`, { verb: 'get', resource: 'nodes', namespace: '' });
  }
  await patchNode(core, name, { spec: { unschedulable: true } }, 'cordoning');
  opts.log.info('Draining node', { node: name });
  let blocked = '';
  for (;;) {
    opts.signal?.throwIfAborted();
    let pods: V1Pod[];
    try {
      // An unreachable Node's kubelet never confirms a deletion: pods whose deletionTimestamp (the
      // end of their grace period) is more than 1s past are not waited for, as Cluster API's drain does.
      const abandoned = (p: V1Pod) => unreachable && p.metadata?.deletionTimestamp !== undefined && Date.now() - new Date(p.metadata.deletionTimestamp).getTime() > 1000;
      pods = (await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${name}` })).items.filter((p) => !staysOnNode(p) && !abandoned(p));
    } catch (err) {
      throw wrapKubeError(err, `listing the pods of Node ${name}`, { verb: 'list', resource: 'pods', namespace: '' });
    }
    if (pods.length === 0) {
      opts.log.info('Node drained', { node: name });
      return;
    }
    blocked = '';
    for (const pod of pods) {
      if (pod.metadata?.deletionTimestamp) continue;
      const ns = pod.metadata?.namespace ?? 'default';
      const podName = pod.metadata?.name ?? '';
      try {
        await core.createNamespacedPodEviction({ name: podName, namespace: ns, body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: podName, namespace: ns } } });
      } catch (err) {
        const status = statusOf(err);
        if (status === 404) continue;
        // 429: a PodDisruptionBudget does not allow it now; 500 with a message: more than one budget
        if (status === 429 || status === 500) {
          blocked = `pod ${ns}/${podName}: ${apiStatus(err).message ?? 'eviction refused'}`;
          continue;
        }
        throw wrapKubeError(err, `evicting pod ${ns}/${podName}`, { verb: 'create', resource: 'pods/eviction', namespace: ns });
      }
    }
    if (Date.now() > deadline) {
      const left = pods.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`).join(', ');
      throw new ConflictError('NODE_DRAIN_TIMEOUT', `draining Node ${name} did not finish within ${Math.round(opts.timeoutMs / 1000)}s: ${blocked || `pods still terminating: ${left}`}`, {
        hint: 'the PodDisruptionBudget must allow one more disruption (scale the workload up, or relax the budget); run again afterwards',
      });
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export async function deleteNode(core: CoreV1Api, name: string): Promise<boolean> {
  try {
    await core.deleteNode({ name });
    return true;
  } catch (err) {
    if (statusOf(err) === 404) return false;
    throw wrapKubeError(err, `deleting Node ${name}`, { verb: 'delete', resource: 'nodes', namespace: '' });
  }
}
