/**
 * Applying one addon's objects to the workload cluster and pruning what it no longer renders.
 *
 * Server-side apply with field manager `capflow`: the API server merges, tracks field ownership and
 * reports conflicts with other managers (forced only when the addon says so), and an apply that
 * changes nothing is not written (its resourceVersion stays). Objects go in install order (CRDs,
 * then namespaces, then what others refer to, workloads after their config, webhooks last), custom
 * resources only once their CRDs are established. Every object carries `capflow.io/addon: <name>`;
 * pruning deletes, in reverse install order, the objects of the previous inventory that are no
 * longer rendered and still carry that label (an object someone else took over stays).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { HttpMethod, KubernetesObjectApi, PatchStrategy, type KubeConfig, type ResponseContext, type KubernetesObject, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { type CapflowError, ConflictError, InputError, TransientError, isCapflowError } from '../core/errors.js';
import { apiStatus, statusOf, wrapKubeError } from '../core/kube-errors.js';
import type { Logger } from '../core/logger.js';

export const ADDON_LABEL = 'capflow.io/addon';
export const FIELD_MANAGER = 'capflow';

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

export const refKey = (r: ObjectRef): string => `${r.apiVersion}/${r.kind}/${r.namespace ?? ''}/${r.name}`;
export const describeRef = (r: ObjectRef): string => `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;

/** Kinds in the order they are applied; kinds not listed (custom resources) go after the workloads. */
const KIND_ORDER = [
  'CustomResourceDefinition',
  'Namespace',
  'ResourceQuota',
  'LimitRange',
  'PriorityClass',
  'NetworkPolicy',
  'PodDisruptionBudget',
  'ServiceAccount',
  'Secret',
  'ConfigMap',
  'StorageClass',
  'CSIDriver',
  'PersistentVolume',
  'PersistentVolumeClaim',
  'ClusterRole',
  'ClusterRoleBinding',
  'Role',
  'RoleBinding',
  'Service',
  'DaemonSet',
  'Pod',
  'ReplicaSet',
  'Deployment',
  'HorizontalPodAutoscaler',
  'StatefulSet',
  'Job',
  'CronJob',
  'IngressClass',
  'Ingress',
];
/** After custom resources: API services and webhooks, whose backends must exist first. */
const LAST_KINDS = ['APIService', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'];

function kindRank(kind: string): number {
  const i = KIND_ORDER.indexOf(kind);
  if (i >= 0) return i;
  const j = LAST_KINDS.indexOf(kind);
  return j >= 0 ? KIND_ORDER.length + 1 + j : KIND_ORDER.length;
}

/** Stable: objects of one kind keep their rendered order. */
export function installOrder<T extends { kind?: string }>(objects: readonly T[]): T[] {
  return objects
    .map((o, i) => ({ o, i }))
    .sort((a, b) => kindRank(a.o.kind ?? '') - kindRank(b.o.kind ?? '') || a.i - b.i)
    .map((x) => x.o);
}

export function refOf(o: KubernetesObject): ObjectRef {
  return { apiVersion: o.apiVersion ?? '', kind: o.kind ?? '', ...(o.metadata?.namespace ? { namespace: o.metadata.namespace } : {}), name: o.metadata?.name ?? '' };
}

/**
 * client-node's generic client, with the discovery it already does for paths (is a kind namespaced),
 * sending and reading objects as plain JSON: its typed models would drop the fields they do not know
 * or name differently (`x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string`, `$ref`
 * in a CRD's schema), so a CRD would go out without them and a change to them would go unseen.
 */
class ObjectApi extends KubernetesObjectApi {
  /** Server-side apply of the object exactly as given; `dryRun` asks without writing. */
  async serverSideApply(obj: KubernetesObject, o: { force: boolean; dryRun?: boolean }): Promise<KubernetesObject> {
    const ctx = this.configuration.baseServer.makeRequestContext(await this.specUriPath(obj, 'patch'), HttpMethod.PATCH);
    ctx.setHeaderParam('Accept', 'application/json');
    ctx.setHeaderParam('Content-Type', PatchStrategy.ServerSideApply);
    ctx.setQueryParam('fieldManager', FIELD_MANAGER);
    ctx.setQueryParam('force', String(o.force));
    if (o.dryRun) ctx.setQueryParam('dryRun', 'All');
    ctx.setBody(JSON.stringify(obj));
    return this.requestPromise(ctx);
  }

  /** Answers as the API server wrote them: no typed model in between. */
  protected override async processResponse<T extends KubernetesObject>(response: ResponseContext, type?: string): Promise<T> {
    if (response.httpStatusCode >= 200 && response.httpStatusCode <= 299) return JSON.parse(await response.body.text()) as T;
    return super.processResponse<T>(response, type);
  }

  async namespaced(apiVersion: string, kind: string): Promise<boolean | undefined> {
    return (await this.resource(apiVersion, kind))?.namespaced;
  }

  /** New CRDs add kinds to group versions discovery may have cached without them. */
  forgetDiscovery(): void {
    this.apiVersionResourceCache = {};
  }
}

export interface ApplyOptions {
  /** The addon's namespace: namespaced objects rendered without one go there. */
  namespace: string;
  /** Take fields over from other managers (the addon's `force`). */
  force?: boolean;
  /** How long CRDs may take to be established. Default 60 s. */
  crdTimeoutMs?: number;
}

export interface ApplyResult {
  /** What the addon holds now, in install order: the next run's prune inventory. */
  applied: ObjectRef[];
  /** Objects created or changed (an apply that changes nothing is no write). */
  written: ObjectRef[];
}

/** What a run installs before it can be asked about: kinds of its CRDs (`group/Kind`) and its namespaces. */
export interface PendingInRun {
  kinds: Set<string>;
  namespaces: Set<string>;
}

export interface PreviewEntry {
  ref: ObjectRef;
  action: 'create' | 'update' | 'no-change' | 'unchecked';
  detail?: string;
  /** What the real apply would fail with. */
  problem?: CapflowError;
}

export const kindKey = (apiVersion: string, kind: string): string => `${apiVersion.includes('/') ? apiVersion.split('/')[0] : ''}/${kind}`;

/** The kinds and namespaces these objects install (CRDs' group/kind, Namespaces' names). */
export function pendingInRun(objects: Iterable<KubernetesObject>): PendingInRun {
  const pending: PendingInRun = { kinds: new Set(), namespaces: new Set() };
  for (const o of objects) {
    if (o.kind === 'CustomResourceDefinition') {
      const spec = (o as V1CustomResourceDefinition).spec;
      if (spec?.group && spec.names?.kind) pending.kinds.add(`${spec.group}/${spec.names.kind}`);
    } else if (o.kind === 'Namespace' && o.metadata?.name) pending.namespaces.add(o.metadata.name);
  }
  return pending;
}

/** An object as far as an apply can change it: without what the server keeps for itself. */
function comparable(o: KubernetesObject): string {
  const { managedFields: _m, resourceVersion: _r, generation: _g, ...metadata } = o.metadata ?? {};
  return JSON.stringify({ ...o, metadata });
}

export class AddonApplier {
  private readonly api: ObjectApi;

  constructor(
    kc: KubeConfig,
    private readonly log: Logger,
    private readonly signal?: AbortSignal,
  ) {
    this.api = kc.makeApiClient(ObjectApi);
  }

  async apply(addon: string, objects: readonly KubernetesObject[], o: ApplyOptions): Promise<ApplyResult> {
    const ordered = installOrder(objects);
    const applied: ObjectRef[] = [];
    const written: ObjectRef[] = [];
    let crdsPending: string[] = [];
    for (const original of ordered) {
      this.signal?.throwIfAborted();
      if (crdsPending.length > 0 && original.kind !== 'CustomResourceDefinition') {
        await this.waitEstablished(addon, crdsPending, o.crdTimeoutMs ?? 60_000);
        crdsPending = [];
      }
      const obj = await this.prepared(addon, original, o.namespace);
      const ref = refOf(obj);
      const before = await this.readOrUndefined(ref);
      let after: KubernetesObject;
      try {
        after = await this.api.serverSideApply(obj, { force: o.force ?? false });
      } catch (err) {
        throw applyError(addon, ref, err);
      }
      applied.push(ref);
      if (!before || before.metadata?.resourceVersion !== after.metadata?.resourceVersion) {
        written.push(ref);
        this.log.info(before ? 'Updated' : 'Created', { addon, object: describeRef(ref) });
      }
      if (obj.kind === 'CustomResourceDefinition') crdsPending.push(ref.name);
    }
    if (crdsPending.length > 0) await this.waitEstablished(addon, crdsPending, o.crdTimeoutMs ?? 60_000);
    return { applied, written };
  }

  /**
   * What applying would do, asking the API server without writing (server-side apply with
   * dryRun=All): per object create, update or no-change, or the problem the real apply would meet
   * (an invalid object, a field conflict, a kind the cluster does not serve). Objects whose kind
   * comes from a CRD of this run, or whose namespace this run creates, cannot be asked yet: they
   * are `unchecked`.
   */
  async preview(addon: string, objects: readonly KubernetesObject[], o: ApplyOptions & { pending: PendingInRun }): Promise<PreviewEntry[]> {
    const out: PreviewEntry[] = [];
    const namespaceExists = new Map<string, boolean>();
    for (const original of installOrder(objects)) {
      this.signal?.throwIfAborted();
      const ref0 = refOf(original);
      let obj: KubernetesObject;
      try {
        obj = await this.prepared(addon, original, o.namespace);
      } catch (err) {
        if (!isCapflowError(err) || err.kind !== 'invalid-input') throw err;
        const pendingCrd = err.code === 'ADDON_KIND_UNKNOWN' && o.pending.kinds.has(kindKey(ref0.apiVersion, ref0.kind));
        out.push({ ref: ref0, action: 'unchecked', ...(pendingCrd ? { detail: 'its CustomResourceDefinition is installed by this run' } : { problem: err }) });
        continue;
      }
      const ref = refOf(obj);
      if (ref.namespace && o.pending.namespaces.has(ref.namespace)) {
        if (!namespaceExists.has(ref.namespace)) namespaceExists.set(ref.namespace, (await this.readOrUndefined({ apiVersion: 'v1', kind: 'Namespace', name: ref.namespace })) !== undefined);
        if (!namespaceExists.get(ref.namespace)) {
          out.push({ ref, action: 'create', detail: `namespace ${ref.namespace} is created by this run` });
          continue;
        }
      }
      const before = await this.readOrUndefined(ref);
      try {
        const after = await this.api.serverSideApply(obj, { force: o.force ?? false, dryRun: true });
        out.push({ ref, action: !before ? 'create' : comparable(before) === comparable(after) ? 'no-change' : 'update' });
      } catch (err) {
        const status = statusOf(err);
        if (status === 404) {
          out.push({ ref, action: 'unchecked', detail: apiStatus(err).message ?? 'not found' });
          continue;
        }
        const problem = applyError(addon, ref, err);
        if (isCapflowError(problem) && (problem.kind === 'invalid-input' || problem.kind === 'conflict')) out.push({ ref, action: 'unchecked', problem });
        else throw problem;
      }
    }
    return out;
  }

  /**
   * Deletes, in reverse install order, what `previous` holds and `current` does not, when the live
   * object still carries this addon's label. Returns what it deleted.
   */
  async prune(addon: string, previous: readonly ObjectRef[], current: readonly ObjectRef[]): Promise<ObjectRef[]> {
    const keep = new Set(current.map(refKey));
    const gone = installOrder(previous.filter((r) => !keep.has(refKey(r)))).reverse();
    const deleted: ObjectRef[] = [];
    for (const ref of gone) {
      this.signal?.throwIfAborted();
      const live = await this.readOrUndefined(ref);
      if (!live) continue;
      if (live.metadata?.labels?.[ADDON_LABEL] !== addon) {
        this.log.warn('Not pruning an object another owner took over', { addon, object: describeRef(ref), label: live.metadata?.labels?.[ADDON_LABEL] ?? '(none)' });
        continue;
      }
      try {
        await this.api.delete({ apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } }, undefined, undefined, undefined, undefined, 'Background');
      } catch (err) {
        if (statusOf(err) === 404) continue;
        throw wrapKubeError(err, `pruning ${describeRef(ref)} of addon ${addon}`);
      }
      this.log.info('Pruned', { addon, object: describeRef(ref) });
      deleted.push(ref);
    }
    return deleted;
  }

  /** The object as it is applied: the addon's label, and a namespace when the kind needs one. */
  private async prepared(addon: string, o: KubernetesObject, namespace: string): Promise<KubernetesObject> {
    const ref = refOf(o);
    if (!ref.apiVersion || !ref.kind || !ref.name) {
      throw new InputError('ADDON_OBJECT_INVALID', `addon ${addon}: an object without apiVersion, kind or metadata.name (${describeRef(ref) || 'empty'})`);
    }
    const metadata = { ...o.metadata, labels: { ...(o.metadata?.labels ?? {}), [ADDON_LABEL]: addon } };
    if (!metadata.namespace) {
      let namespaced: boolean | undefined;
      try {
        namespaced = await this.api.namespaced(ref.apiVersion, ref.kind);
      } catch (err) {
        throw wrapKubeError(err, `discovering ${ref.apiVersion} ${ref.kind} for addon ${addon}`);
      }
      if (namespaced === undefined) {
        throw new InputError('ADDON_KIND_UNKNOWN', `addon ${addon}: ${describeRef(ref)}: the cluster serves no kind ${ref.kind} in ${ref.apiVersion}`, {
          hint: 'put the CustomResourceDefinition in this addon, or make this addon depend on the addon that installs it',
        });
      }
      if (namespaced) metadata.namespace = namespace;
    }
    return { ...o, metadata };
  }

  /** Whether the cluster serves this kind in a namespace; undefined when it does not serve it. */
  async isNamespaced(apiVersion: string, kind: string): Promise<boolean | undefined> {
    try {
      return await this.api.namespaced(apiVersion, kind);
    } catch (err) {
      throw wrapKubeError(err, `discovering ${apiVersion} ${kind}`);
    }
  }

  /** The live object, or undefined when it (or its kind) is not there. */
  read(ref: ObjectRef): Promise<KubernetesObject | undefined> {
    return this.readOrUndefined(ref);
  }

  private async readOrUndefined(ref: ObjectRef): Promise<KubernetesObject | undefined> {
    try {
      return await this.api.read({ apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } });
    } catch (err) {
      const status = statusOf(err);
      // 404: no such object; an unknown kind (its CRD not there yet) reads as absent too
      if (status === 404 || (status === undefined && /Unrecognized API version and kind/i.test(String((err as Error).message)))) return undefined;
      throw wrapKubeError(err, `reading ${describeRef(ref)}`);
    }
  }

  private async waitEstablished(addon: string, names: string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const waiting: string[] = [];
      for (const name of names) {
        const crd = await this.readOrUndefined({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name });
        const established = (crd as V1CustomResourceDefinition | undefined)?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
        if (!established) waiting.push(name);
      }
      if (waiting.length === 0) {
        this.api.forgetDiscovery();
        return;
      }
      if (Date.now() > deadline) throw new TransientError('ADDON_CRD_NOT_ESTABLISHED', `addon ${addon}: CustomResourceDefinition(s) ${waiting.join(', ')} not established within ${Math.round(timeoutMs / 1000)}s`);
      await delay(200, undefined, this.signal ? { signal: this.signal } : {});
    }
  }
}

/** An apply's failure, naming the addon and the object: conflicts and invalid objects are the spec's to fix. */
function applyError(addon: string, ref: ObjectRef, err: unknown): Error {
  const status = statusOf(err);
  const message = apiStatus(err).message ?? (err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err));
  if (status === 409) {
    return new ConflictError('ADDON_FIELD_CONFLICT', `addon ${addon}: ${describeRef(ref)}: ${message}`, {
      hint: 'another field manager owns these fields: set spec.force: true on the addon to take them over, or stop the other writer',
    });
  }
  // Server-side apply answers a value of the wrong type (replicas: "many") with a 500 of this text.
  if (status === 400 || status === 422 || (status === 500 && /failed to create typed patch object/.test(message))) return new InputError('ADDON_OBJECT_INVALID', `addon ${addon}: ${describeRef(ref)} is refused by the API server: ${message}`);
  return wrapKubeError(err, `applying ${describeRef(ref)} of addon ${addon}`);
}
