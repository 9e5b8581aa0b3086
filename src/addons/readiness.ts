/**
 * Waiting until an addon's applied objects are ready, as `kubectl rollout status` and kstatus judge it:
 *
 * - Deployment: the controller observed the generation, every replica updated and available (replicas
 *   default 1), no old replica pending termination and the new ReplicaSet available (Progressing
 *   True with reason NewReplicaSetAvailable);
 * - StatefulSet: observed, readyReplicas == replicas; with RollingUpdate, updatedReplicas ==
 *   replicas - partition and, without a partition, currentRevision == updateRevision;
 * - DaemonSet: observed, desiredNumberScheduled == updatedNumberScheduled == numberAvailable;
 * - Job: condition Complete True; Failed True fails at once with the condition's message;
 * - CustomResourceDefinition: Established True; APIService: Available True;
 * - anything else: ready once it exists.
 *
 * It polls (reads only, never writes). At the deadline it throws ADDON_NOT_READY naming each object
 * not ready and why, and for workloads the reason of their pods: the first pod not ready with a
 * container waiting reason (ImagePullBackOff, CrashLoopBackOff...) or an unschedulable condition.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { CoreV1Api, KubernetesObjectApi, type KubeConfig, type KubernetesObject, type V1LabelSelector, type V1Pod } from '@kubernetes/client-node';
import { ConflictError, TransientError, isCapflowError } from '../core/errors.js';
import { statusOf, wrapKubeError } from '../core/kube-errors.js';
import type { Logger } from '../core/logger.js';
import { describeRef, type ObjectRef } from './apply.js';
import { mapLimit } from '../core/concurrency.js';

export interface WaitReadyOptions {
  /** The addon's name, for messages. */
  addon: string;
  /** How long the objects may take to become ready. */
  timeoutMs: number;
  /** Time between polls. Default 2 s. */
  pollMs?: number;
  /** Time between progress lines. Default 10 s. */
  progressMs?: number;
  log: Logger;
  signal?: AbortSignal;
}

/** An object's readiness: ready, or why not (and, for workloads, how to find their pods). */
export interface Readiness {
  ready: boolean;
  reason?: string;
  /** A workload's pods: its namespace and spec.selector. */
  pods?: { namespace: string; selector: V1LabelSelector };
}

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job']);
/** The kinds that have a readiness of their own; any other object is ready once stored. */
export const READINESS_KINDS: ReadonlySet<string> = new Set([...WORKLOAD_KINDS, 'CustomResourceDefinition', 'APIService']);
const READ_CONCURRENCY = 8;

/** Waits until every object is ready; throws ADDON_NOT_READY at the deadline, ADDON_JOB_FAILED at once. */
export async function waitReady(kc: KubeConfig, refs: readonly ObjectRef[], opts: WaitReadyOptions): Promise<void> {
  const objects = kc.makeApiClient(KubernetesObjectApi);
  const core = kc.makeApiClient(CoreV1Api);
  const pollMs = opts.pollMs ?? 2000;
  const progressMs = opts.progressMs ?? 10_000;
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  let nextProgress = started + progressMs;
  let pending = [...refs];
  let last = new Map<ObjectRef, Readiness>();

  for (;;) {
    opts.signal?.throwIfAborted();
    const results = await mapLimit(pending, READ_CONCURRENCY, async (ref) => [ref, await readiness(objects, ref, opts.addon)] as const);
    last = new Map(results);
    pending = results.filter(([, r]) => !r.ready).map(([ref]) => ref);
    const ready = refs.length - pending.length;
    if (pending.length === 0) {
      if (refs.length > 0) opts.log.info('Addon ready', { addon: opts.addon, ready: `${ready}/${refs.length} ready`, seconds: seconds(Date.now() - started) });
      return;
    }
    const now = Date.now();
    if (now >= deadline) break;
    if (now >= nextProgress) {
      nextProgress = now + progressMs;
      opts.log.info(`Waiting for addon ${opts.addon}: ${ready}/${refs.length} ready`, {
        addon: opts.addon,
        waiting: pending.slice(0, 5).map((r) => `${describeRef(r)}: ${last.get(r)?.reason ?? 'not ready'}`),
      });
    }
    await delay(Math.max(0, Math.min(pollMs, deadline - now)), undefined, opts.signal ? { signal: opts.signal } : {});
  }

  const lines = await mapLimit(pending, READ_CONCURRENCY, async (ref) => {
    const r = last.get(ref);
    const podReason = r?.pods ? await podsReason(core, r.pods.namespace, r.pods.selector) : undefined;
    return `${describeRef(ref)}: ${r?.reason ?? 'not ready'}${podReason ? `; ${podReason}` : ''}`;
  });
  throw new TransientError(
    'ADDON_NOT_READY',
    `addon ${opts.addon}: ${pending.length} of ${refs.length} object(s) not ready after ${seconds(opts.timeoutMs)} s:\n${lines.join('\n')}`,
    { details: { addon: opts.addon, notReady: lines }, hint: 'see the reasons above; the next run waits again' },
  );
}

async function readiness(api: KubernetesObjectApi, ref: ObjectRef, addon: string): Promise<Readiness> {
  let obj: KubernetesObject;
  try {
    obj = await api.read({ apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } });
  } catch (err) {
    const status = statusOf(err);
    if (status === 404 || (status === undefined && /Unrecognized API version and kind/i.test(String((err as Error).message)))) return { ready: false, reason: 'does not exist' };
    const e = wrapKubeError(err, `reading ${describeRef(ref)} of addon ${addon}`);
    // the API server may come back before the deadline; anything else (403...) will not
    if (isCapflowError(e) && e.kind === 'transient') return { ready: false, reason: `cannot be read: ${e.message}` };
    throw e;
  }
  const r = objectReadiness(obj);
  if (r.failed) {
    throw new ConflictError('ADDON_JOB_FAILED', `addon ${addon}: ${describeRef(ref)} failed: ${r.reason}`, {
      details: { addon, object: describeRef(ref) },
      hint: 'a failed Job stays failed: fix the addon, then delete the Job (or rename it) so that the next run creates it again',
    });
  }
  return r;
}

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}
interface Status {
  observedGeneration?: number;
  conditions?: Condition[];
  [field: string]: unknown;
}
type Obj = KubernetesObject & { spec?: Record<string, unknown>; status?: Status };

const num = (v: unknown, dflt = 0): number => (typeof v === 'number' ? v : dflt);
const condition = (o: Obj, type: string): Condition | undefined => o.status?.conditions?.find((c) => c.type === type);
const withMessage = (reason: string, message?: string): string => (message ? `${reason} (${message})` : reason);

/** Readiness of one object as read (pure). `failed`: a terminal failure (a Failed Job). */
export function objectReadiness(o: KubernetesObject): Readiness & { failed?: boolean } {
  const obj = o as Obj;
  const spec = obj.spec ?? {};
  const status = obj.status ?? {};
  const kind = obj.kind ?? '';
  const pods = WORKLOAD_KINDS.has(kind) && spec.selector && obj.metadata?.namespace ? { pods: { namespace: obj.metadata.namespace, selector: spec.selector as V1LabelSelector } } : {};
  const notReady = (reason: string): Readiness => ({ ready: false, reason, ...pods });

  if (WORKLOAD_KINDS.has(kind) && kind !== 'Job') {
    const generation = num(obj.metadata?.generation);
    if (status.observedGeneration === undefined || status.observedGeneration < generation) {
      return notReady(`waiting for the controller to observe generation ${generation}${status.observedGeneration === undefined ? '' : ` (observed ${status.observedGeneration})`}`);
    }
  }

  switch (kind) {
    case 'Deployment': {
      const replicas = num(spec.replicas, 1);
      const updated = num(status.updatedReplicas);
      const total = num(status.replicas);
      const available = num(status.availableReplicas);
      const progressing = condition(obj, 'Progressing');
      const deadline = progressing?.reason === 'ProgressDeadlineExceeded' ? `; exceeded its progress deadline${progressing.message ? ` (${progressing.message})` : ''}` : '';
      if (updated < replicas) return notReady(`${updated}/${replicas} updated, ${available}/${replicas} available${deadline}`);
      if (total > updated) return notReady(`${total - updated} old replica(s) pending termination${deadline}`);
      if (available < replicas) return notReady(`${available}/${replicas} available${deadline}`);
      if (progressing && !(progressing.status === 'True' && progressing.reason === 'NewReplicaSetAvailable')) {
        return notReady(`new ReplicaSet not yet available${progressing.message ? ` (${progressing.message})` : ''}`);
      }
      return { ready: true };
    }
    case 'StatefulSet': {
      const replicas = num(spec.replicas, 1);
      const readyReplicas = num(status.readyReplicas);
      const updated = num(status.updatedReplicas);
      const strategy = (spec.updateStrategy ?? {}) as { type?: string; rollingUpdate?: { partition?: number } };
      if (readyReplicas < replicas) return notReady(`${readyReplicas}/${replicas} ready`);
      if ((strategy.type ?? 'RollingUpdate') === 'RollingUpdate') {
        const partition = num(strategy.rollingUpdate?.partition);
        if (updated < replicas - partition) return notReady(`${updated}/${replicas - partition} updated`);
        if (partition === 0 && status.currentRevision !== status.updateRevision) {
          return notReady(`rolling out revision ${String(status.updateRevision)} (current ${String(status.currentRevision)})`);
        }
      }
      return { ready: true };
    }
    case 'DaemonSet': {
      const desired = num(status.desiredNumberScheduled);
      const updated = num(status.updatedNumberScheduled);
      const available = num(status.numberAvailable);
      if (updated < desired) return notReady(`${updated}/${desired} updated, ${available}/${desired} available`);
      // As helm judges a DaemonSet: up to its maxUnavailable pods may be unavailable (a Node that
      // went away keeps a pod that never becomes available), but at least one must be.
      if (available < Math.max(1, desired - daemonSetMaxUnavailable(spec, desired)) && desired > 0) return notReady(`${available}/${desired} available`);
      return { ready: true };
    }
    case 'Job': {
      const failed = condition(obj, 'Failed');
      if (failed?.status === 'True') return { ready: false, failed: true, reason: withMessage(failed.reason ?? 'Failed', failed.message) };
      if (condition(obj, 'Complete')?.status === 'True') return { ready: true };
      const completions = num(spec.completions, 1);
      return notReady(`${num(status.succeeded)}/${completions} succeeded, ${num(status.active)} active`);
    }
    case 'CustomResourceDefinition':
      return conditionTrue(obj, 'Established');
    case 'APIService':
      return conditionTrue(obj, 'Available');
    default:
      return { ready: true };
  }
}

/** spec.updateStrategy.rollingUpdate.maxUnavailable of a DaemonSet as a count (default 1; a percentage rounds up). */
function daemonSetMaxUnavailable(spec: Record<string, unknown>, desired: number): number {
  const strategy = spec.updateStrategy as { rollingUpdate?: { maxUnavailable?: number | string } } | undefined;
  const v = strategy?.rollingUpdate?.maxUnavailable ?? 1;
  if (typeof v === 'number') return v;
  const pct = /^(\d+)%$/.exec(v);
  return pct ? Math.ceil((desired * Number(pct[1])) / 100) : 1;
}

function conditionTrue(obj: Obj, type: string): Readiness {
  const c = condition(obj, type);
  if (c?.status === 'True') return { ready: true };
  return { ready: false, reason: c ? `${type} ${c.status ?? 'Unknown'}${c.reason || c.message ? `: ${[c.reason, c.message].filter(Boolean).join(': ')}` : ''}` : `not ${type} yet` };
}

/** The reason of a workload's pods: the first pod not ready that says why, else how many there are. */
async function podsReason(core: CoreV1Api, namespace: string, selector: V1LabelSelector): Promise<string | undefined> {
  let pods: V1Pod[];
  try {
    pods = (await core.listNamespacedPod({ namespace, labelSelector: selectorString(selector) })).items;
  } catch (err) {
    return `pods cannot be listed: ${wrapKubeError(err, 'listing pods').message}`;
  }
  return describePods(pods);
}

/** Pure: the first not-ready pod's reason (newest pods first: a rollout's new pods matter most). */
export function describePods(pods: readonly V1Pod[]): string | undefined {
  if (pods.length === 0) return 'no pods';
  const newestFirst = [...pods].sort((a, b) => time(b) - time(a) || (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
  const notReady = newestFirst.filter((pod) => !podReady(pod));
  const withReason = notReady.find((pod) => podReason(pod) !== undefined);
  if (withReason) return `${podName(withReason)}: ${podReason(withReason)!}`;
  if (notReady.length === 0) return undefined;
  // None says why (a Running pod whose Ready condition is False, as on a Node that went away):
  // name each, with its Node and Ready reason, so a stuck rollout can be traced to a machine.
  return notReady.slice(0, 3).map((pod) => `${podName(pod)}: ${pod.status?.phase ?? 'Pending'}${readyCondition(pod)}`).join('; ') + (notReady.length > 3 ? `; ${notReady.length - 3} more` : '');
}

const podName = (pod: V1Pod): string => `pod ${pod.metadata?.name ?? ''}${pod.spec?.nodeName ? ` on node ${pod.spec.nodeName}` : ''}`;

/** ", Ready False since T (reason: message)" when the pod carries a Ready condition that says more than its phase. */
function readyCondition(pod: V1Pod): string {
  const c = pod.status?.conditions?.find((x) => x.type === 'Ready');
  if (!c) return '';
  const t = c.lastTransitionTime as unknown;
  const since = t instanceof Date ? ` since ${t.toISOString()}` : typeof t === 'string' ? ` since ${t}` : '';
  return `, Ready ${c.status}${since}${c.reason ? ` (${withMessage(c.reason, c.message)})` : ''}`;
}

const time = (p: V1Pod): number => {
  const t = p.metadata?.creationTimestamp as unknown;
  return t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : 0;
};

function podReady(pod: V1Pod): boolean {
  return pod.status?.phase === 'Succeeded' || pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
}

/** Why a pod is not ready: unschedulable, a container waiting or terminated with an error. */
export function podReason(pod: V1Pod): string | undefined {
  const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False') return withMessage(scheduled.reason ?? 'Unschedulable', scheduled.message);
  const containers = [
    ...(pod.status?.initContainerStatuses ?? []).map((c) => ({ c, init: true })),
    ...(pod.status?.containerStatuses ?? []).map((c) => ({ c, init: false })),
  ];
  for (const { c, init } of containers) {
    const prefix = init ? `init container ${c.name}: ` : '';
    const waiting = c.state?.waiting;
    if (waiting?.reason && waiting.reason !== 'PodInitializing') return prefix + withMessage(waiting.reason, waiting.message);
    const terminated = c.state?.terminated;
    if (terminated && terminated.exitCode !== 0) return prefix + withMessage(terminated.reason ?? 'Error', terminated.message ?? `exit code ${terminated.exitCode}`);
  }
  for (const { c, init } of containers) {
    if (!init && c.state?.running && !c.ready) return `container ${c.name} running, not ready`;
  }
  const failed = pod.status?.phase === 'Failed' ? withMessage(pod.status.reason ?? 'Failed', pod.status.message) : undefined;
  return failed;
}

/** A LabelSelector as the `labelSelector` query parameter. */
export function selectorString(s: V1LabelSelector): string {
  const parts = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of s.matchExpressions ?? []) {
    const values = (e.values ?? []).join(',');
    switch (e.operator) {
      case 'In':
        parts.push(`${e.key} in (${values})`);
        break;
      case 'NotIn':
        parts.push(`${e.key} notin (${values})`);
        break;
      case 'Exists':
        parts.push(e.key);
        break;
      case 'DoesNotExist':
        parts.push(`!${e.key}`);
        break;
    }
  }
  return parts.join(',');
}

const seconds = (ms: number): string => (ms / 1000).toFixed(ms < 10_000 ? 1 : 0);

