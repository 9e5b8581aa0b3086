/**
 * The reconciler's runs as Argo Workflow objects in the management cluster.
 * Every run has a deterministic name (kind, cluster, revision, attempt), so a
 * submission repeated after a crash finds the Workflow it made instead of
 * starting a second run; labels let the reconciler and `kubectl -l` find a
 * cluster's runs. Argo's controller moves the phase on; this client only
 * creates Workflows, reads them and watches them change, and (for a paused
 * cluster) suspends, resumes or stops one.
 */
import { createHash } from 'node:crypto';
import { CustomObjectsApi, PatchStrategy, makeInformer, setHeaderOptions, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { ConflictError, InputError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { runInformer, statusOf, wrapKubeError, type RbacRule } from './kube.js';
import { TEMPLATE_FOR, type RunKind, type SubmitRequest, type WorkflowClient, type WorkflowPhase, type WorkflowView } from './types.js';
import {
  ANNOTATION_SPEC_HASH,
  LABEL_ATTEMPT,
  LABEL_CLUSTER,
  LABEL_KIND,
  LABEL_MANAGED_BY,
  LABEL_REVISION,
  LABEL_SPEC_HASH,
  MANAGED_BY,
  buildWorkflow,
} from './workflow.js';

const GROUP = 'argoproj.io';
const VERSION = 'v1alpha1';
const PLURAL = 'workflows';

/** The parts of Argo's Workflow (CRD argoproj.io/v1alpha1) this client reads. */
export interface ArgoNode {
  id: string;
  name: string;
  displayName?: string;
  type: string;
  phase?: string;
  message?: string;
  startedAt?: string;
  finishedAt?: string;
  children?: string[];
  outputs?: { parameters?: Array<{ name: string; value?: string }> };
}

export interface ArgoWorkflow extends KubernetesObject {
  spec?: { workflowTemplateRef?: { name?: string }; arguments?: { parameters?: Array<{ name: string; value?: string }> } };
  status?: { phase?: string; message?: string; startedAt?: string; finishedAt?: string; nodes?: Record<string, ArgoNode> };
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const PHASES: ReadonlySet<string> = new Set<WorkflowPhase>(['Pending', 'Running', 'Succeeded', 'Failed', 'Error']);
const KIND_OF_TEMPLATE = new Map(Object.entries(TEMPLATE_FOR).map(([kind, template]) => [template, kind as RunKind]));

/**
 * `<template>-<cluster>-<revision[0:10]>-<attempt>`, e.g. cluster-apply-dev-1a2b3c4d5e-0. Always a DNS
 * label of at most 63 characters: a cluster name too long for that keeps its start and gets a
 * 6-character hash of the whole name, so distinct clusters keep distinct names.
 */
export function workflowName(kind: RunKind, cluster: string, revision: string, attempt: number): string {
  if (!DNS_LABEL.test(cluster)) throw new InputError('CLUSTER_NAME_INVALID', `cluster name "${cluster}" is not a DNS-1123 label`);
  if (!Number.isSafeInteger(attempt) || attempt < 0) throw new InputError('WORKFLOW_ATTEMPT_INVALID', `attempt ${attempt} is not a whole number ≥ 0`);
  const rev = revision
    .slice(0, 10)
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  const head = TEMPLATE_FOR[kind];
  const tail = `${rev ? `-${rev}` : ''}-${attempt}`;
  const room = 63 - head.length - 1 - tail.length;
  const short = cluster.length <= room ? cluster : `${cluster.slice(0, room - 7).replace(/-+$/, '')}-${createHash('sha256').update(cluster).digest('hex').slice(0, 6)}`;
  return `${head}-${short}${tail}`;
}

function iso(v: unknown): string | undefined {
  if (v instanceof Date) return v.toISOString();
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The first failed leaf (Pod) by finish time, ignoring attempts a Retry node superseded with a later one. */
function firstFailure(nodes: Record<string, ArgoNode>): ArgoNode | undefined {
  const superseded = new Set<string>();
  for (const n of Object.values(nodes)) if (n.type === 'Retry') for (const id of (n.children ?? []).slice(0, -1)) superseded.add(id);
  const failed = Object.entries(nodes)
    .filter(([id, n]) => n.type === 'Pod' && (n.phase === 'Failed' || n.phase === 'Error') && !superseded.has(id))
    .map(([, n]) => n);
  const finished = (n: ArgoNode): string => iso(n.finishedAt) ?? '\uffff'; // unfinished last
  failed.sort((a, b) => finished(a).localeCompare(finished(b)) || (a.displayName ?? a.name).localeCompare(b.displayName ?? b.name));
  return failed[0];
}

/**
 * Sum of the `changes` output over Pod nodes (Retry and DAG nodes repeat their children's outputs,
 * so only the leaves count); undefined when none reported a number.
 */
function sumChanges(nodes: Record<string, ArgoNode>): number | undefined {
  let total: number | undefined;
  for (const n of Object.values(nodes)) {
    if (n.type !== 'Pod') continue;
    const v = n.outputs?.parameters?.find((p) => p.name === 'changes')?.value?.trim();
    if (v !== undefined && /^\d+$/.test(v)) total = (total ?? 0) + Number(v);
  }
  return total;
}

/** What the reconciler needs of a Workflow; undefined for one that is not a capflow run (no kind). */
export function workflowView(wf: ArgoWorkflow): WorkflowView | undefined {
  const labels = wf.metadata?.labels ?? {};
  const params = new Map((wf.spec?.arguments?.parameters ?? []).map((p) => [p.name, p.value ?? '']));
  const kindLabel = labels[LABEL_KIND];
  const kind = kindLabel && Object.hasOwn(TEMPLATE_FOR, kindLabel) ? (kindLabel as RunKind) : KIND_OF_TEMPLATE.get(wf.spec?.workflowTemplateRef?.name ?? '');
  if (!kind) return undefined;
  const status = wf.status ?? {};
  const phase: WorkflowPhase = status.phase && PHASES.has(status.phase) ? (status.phase as WorkflowPhase) : 'Pending';
  const attempt = Number(labels[LABEL_ATTEMPT] ?? '0');
  const view: WorkflowView = {
    name: wf.metadata?.name ?? '',
    kind,
    cluster: params.get('cluster-name') ?? labels[LABEL_CLUSTER] ?? '',
    revision: params.get('revision') ?? labels[LABEL_REVISION] ?? '',
    specHash: wf.metadata?.annotations?.[ANNOTATION_SPEC_HASH] ?? params.get('spec-hash') ?? labels[LABEL_SPEC_HASH] ?? '',
    attempt: Number.isSafeInteger(attempt) ? attempt : 0,
    phase,
  };
  const createdAt = iso(wf.metadata?.creationTimestamp);
  const startedAt = iso(status.startedAt);
  const finishedAt = iso(status.finishedAt);
  if (createdAt) view.createdAt = createdAt;
  if (startedAt) view.startedAt = startedAt;
  if (finishedAt) view.finishedAt = finishedAt;
  const nodes = status.nodes ?? {};
  if (phase === 'Failed' || phase === 'Error') {
    const failed = firstFailure(nodes);
    if (failed) view.failedStep = failed.displayName ?? failed.name;
    const message = failed?.message || status.message;
    if (message) view.message = message;
  } else if (status.message) {
    view.message = status.message;
  }
  const changes = sumChanges(nodes);
  if (changes !== undefined) view.changes = changes;
  return view;
}

/** Workflows per list response. */
const LIST_PAGE = 250;

/**
 * Strips a Workflow the informer caches down to what its cache uses (namespace, name,
 * resourceVersion): the client keeps every object it has seen, and a real Workflow carries its
 * node tree, managed fields and often its whole stored template. Views are read before this.
 */
function slim(wf: ArgoWorkflow): void {
  const { name, namespace, resourceVersion } = wf.metadata ?? {};
  for (const key of Object.keys(wf)) if (key !== 'metadata') delete (wf as unknown as Record<string, unknown>)[key];
  wf.metadata = { ...(name !== undefined ? { name } : {}), ...(namespace !== undefined ? { namespace } : {}), ...(resourceVersion !== undefined ? { resourceVersion } : {}) };
}

export interface KubeWorkflowClientOptions {
  /** The service account Workflows run as (spec.serviceAccountName); Argo's default when unset. */
  serviceAccountName?: string;
  log?: Logger;
  /** Wait before restarting a watch that failed. Default 1 s. */
  watchRestartMs?: number;
  /** More parameters of the cluster-apply Workflows (not of delete or plan runs). */
  applyParameters?: Record<string, string>;
}

export class KubeWorkflowClient implements WorkflowClient {
  private readonly api: CustomObjectsApi;

  constructor(
    private readonly kc: KubeConfig,
    readonly namespace: string,
    private readonly options: KubeWorkflowClientOptions = {},
  ) {
    this.api = kc.makeApiClient(CustomObjectsApi);
  }

  private rule(verb: string): RbacRule {
    return { verb, resource: 'workflows.argoproj.io', namespace: this.namespace };
  }

  private get where(): { group: string; version: string; namespace: string; plural: string } {
    return { group: GROUP, version: VERSION, namespace: this.namespace, plural: PLURAL };
  }

  async submit(req: SubmitRequest): Promise<{ workflow: WorkflowView; created: boolean }> {
    const name = workflowName(req.kind, req.cluster, req.revision, req.attempt);
    const body = buildWorkflow({
      template: TEMPLATE_FOR[req.kind],
      clusterName: req.cluster,
      repo: req.repo,
      revision: req.revision,
      clusterPath: req.clusterPath,
      specHash: req.specHash,
      namespace: this.namespace,
      name,
      labels: { [LABEL_KIND]: req.kind, [LABEL_ATTEMPT]: String(req.attempt) },
      ...(req.kind === 'apply' && this.options.applyParameters ? { extraParameters: this.options.applyParameters } : {}),
      ...(this.options.serviceAccountName ? { serviceAccountName: this.options.serviceAccountName } : {}),
    });
    try {
      const created = (await this.api.createNamespacedCustomObject({ ...this.where, body })) as ArgoWorkflow;
      return { workflow: this.view(created), created: true };
    } catch (err) {
      if (statusOf(err) !== 409) throw wrapKubeError(err, `creating Workflow ${this.namespace}/${name}`, this.rule('create'));
    }
    // made before (a crash between our create and recording it): adopt it, unless the name is another run's
    const existing = await this.get(name);
    if (!existing) throw new ConflictError('WORKFLOW_CONFLICT', `Workflow ${this.namespace}/${name} already existed, then vanished: submit again`);
    if (existing.kind !== req.kind || existing.cluster !== req.cluster || existing.revision !== req.revision) {
      throw new ConflictError('WORKFLOW_NAME_TAKEN', `Workflow ${this.namespace}/${name} exists but is not this run (${existing.kind} of ${existing.cluster} at ${existing.revision})`, {
        hint: 'delete that Workflow, or let the reconciler move to the next attempt number',
      });
    }
    return { workflow: existing, created: false };
  }

  /** Argo's spec.suspend, by a merge patch; a Workflow already gone is left alone. */
  async setSuspended(name: string, suspend: boolean): Promise<void> {
    await this.patchSpec(name, { suspend }, suspend ? 'suspending' : 'resuming');
  }

  /** Argo's spec.shutdown Stop: no new steps, exit handlers run, the Workflow ends Failed. */
  async stop(name: string): Promise<void> {
    await this.patchSpec(name, { shutdown: 'Stop', suspend: false }, 'stopping');
  }

  private async patchSpec(name: string, spec: Record<string, unknown>, what: string): Promise<void> {
    try {
      await this.api.patchNamespacedCustomObject({ ...this.where, name, body: { spec } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw wrapKubeError(err, `${what} Workflow ${this.namespace}/${name}`, this.rule('patch'));
    }
  }

  async get(name: string): Promise<WorkflowView | undefined> {
    let wf: ArgoWorkflow;
    try {
      wf = (await this.api.getNamespacedCustomObject({ ...this.where, name })) as ArgoWorkflow;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw wrapKubeError(err, `reading Workflow ${this.namespace}/${name}`, this.rule('get'));
    }
    return workflowView(wf);
  }

  /** Views of every capflow Workflow, read in pages: only the small views are kept, never the full objects. */
  async list(): Promise<WorkflowView[]> {
    const views: WorkflowView[] = [];
    await this.listPages((items) => {
      for (const wf of items) {
        const view = workflowView(wf);
        if (view) views.push(view);
      }
    });
    return views;
  }

  /**
   * Follows capflow's Workflows (list, then watch), restarting after a cut from the last version
   * seen (runInformer); deletions are reported by name.
   */
  async watch(onChange: (workflow: WorkflowView) => void, onDelete?: (name: string) => void): Promise<() => Promise<void>> {
    // Listed objects are read (view) and slimmed page by page, so a list never holds every full
    // Workflow at once; deliver() finds their views here.
    const listedViews = new WeakMap<ArgoWorkflow, WorkflowView | undefined>();
    const listAll = async (): Promise<KubernetesListObject<ArgoWorkflow>> => {
      const items: ArgoWorkflow[] = [];
      const metadata = await this.listPages((page) => {
        for (const wf of page) {
          listedViews.set(wf, workflowView(wf));
          slim(wf);
          items.push(wf);
        }
      });
      return { apiVersion: 'v1', kind: 'List', metadata, items };
    };
    const informer = makeInformer<ArgoWorkflow>(this.kc, `/apis/${GROUP}/${VERSION}/namespaces/${this.namespace}/${PLURAL}`, listAll, `${LABEL_MANAGED_BY}=${MANAGED_BY}`);
    return runInformer(informer, {
      what: 'workflow watch',
      ...(this.options.log ? { log: this.options.log } : {}),
      ...(this.options.watchRestartMs !== undefined ? { restartMs: this.options.watchRestartMs } : {}),
      startError: (err) => wrapKubeError(err, `watching Workflows in ${this.namespace}`, this.rule('watch')),
      deliver: (wf) => {
        const view = listedViews.has(wf) ? listedViews.get(wf) : workflowView(wf);
        slim(wf);
        if (view) onChange(view);
      },
      ...(onDelete ? { remove: (wf: ArgoWorkflow) => onDelete(wf.metadata?.name ?? '') } : {}),
    });
  }

  /**
   * Lists capflow's Workflows in pages of LIST_PAGE (one consistent snapshot; a full Workflow
   * carries its node tree and often its stored template, tens of kB each), giving each page to `take`.
   * Returns the list's metadata (its resourceVersion).
   */
  private async listPages(take: (items: ArgoWorkflow[]) => void): Promise<{ resourceVersion?: string }> {
    let next: string | undefined;
    let restarted = false;
    for (;;) {
      let res: KubernetesListObject<ArgoWorkflow>;
      try {
        res = (await this.api.listNamespacedCustomObject({
          ...this.where,
          labelSelector: `${LABEL_MANAGED_BY}=${MANAGED_BY}`,
          limit: LIST_PAGE,
          ...(next ? { _continue: next } : {}),
        })) as KubernetesListObject<ArgoWorkflow>;
      } catch (err) {
        // 410: the continue token expired between pages; a consistent list starts again, once
        if (next && statusOf(err) === 410 && !restarted) {
          restarted = true;
          next = undefined;
          continue;
        }
        throw wrapKubeError(err, `listing Workflows in ${this.namespace}`, this.rule('list'));
      }
      take(res.items);
      next = res.metadata?._continue || undefined;
      if (!next) return { ...(res.metadata?.resourceVersion ? { resourceVersion: res.metadata.resourceVersion } : {}) };
    }
  }

  private view(wf: ArgoWorkflow): WorkflowView {
    const view = workflowView(wf);
    if (!view) throw new ConflictError('WORKFLOW_UNREADABLE', `Workflow ${this.namespace}/${wf.metadata?.name ?? ''} has no capflow kind`);
    return view;
  }
}
