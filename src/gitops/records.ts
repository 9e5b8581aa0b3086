/**
 * What the management cluster remembers of each cluster: one ConfigMap per
 * cluster in the reconciler's namespace, readable with kubectl, written with
 * resourceVersion checks so two writers cannot silently overwrite each other.
 *
 * Format (the README documents the same):
 *
 *   ConfigMap capflow-cluster-<cluster>
 *     labels:
 *       app.kubernetes.io/managed-by: capflow
 *       capflow.io/record: cluster
 *       capflow.io/cluster: <cluster>
 *       capflow.io/phase: <phase>     kubectl get cm -l capflow.io/phase=Failed
 *       capflow.io/drift: <drift>     kubectl get cm -l capflow.io/drift=Drifted
 *     data: one key per ClusterRecord field, all strings:
 *       cluster, path, phase, drift                         always
 *       failures, planCount                                 always, decimal
 *       gitRevision, gitTree, specHash, hashedBy, appliedRevision, appliedSpecHash,
 *       appliedAt, nextRetryAt, driftCheckedAt, message     when set
 *       paused, pausedRevision                              while the spec is paused: where
 *                                                           (file:line field) and the commit
 *       pauseMarker                                         "set" once the pause marker is
 *                                                           written and the run suspended
 *       driftChanges                                        when set, decimal
 *       inputs                                              when set: one path outside the folder
 *                                                           per line, "<git object id> <path>",
 *                                                           the id "-" when the path was absent
 *       errors                                              when set: one error per line; a line
 *                                                           that starts with a tab continues the
 *                                                           error above (its own line break);
 *                                                           an empty value is an empty list (so
 *                                                           an error is never empty and never
 *                                                           starts with a tab: ours never do)
 *       run.workflow, run.kind, run.revision, run.specHash, run.attempt (decimal), run.phase,
 *       run.submittedAt, run.finishedAt, run.failedStep, run.message   the current or last
 *                                                           apply/delete run, when there is one
 *       driftRun.<same keys>                                the last plan run
 *   Absent optional fields are absent keys. Times are ISO 8601 strings as written.
 *
 *   ConfigMap capflow-reconciler-state (label capflow.io/record: state)
 *     data: gitRevision, lastPassAt, leader, each when set;
 *       lastPush.provider, lastPush.after, lastPush.at, lastPush.by   the last push webhook a
 *                                                           replica not leading handed to the
 *                                                           leader (which watches this object)
 */
import { CoreV1Api, ListWatch, Watch, type KubeConfig, type KubernetesListObject, type V1ConfigMap } from '@kubernetes/client-node';
import { ConflictError, InputError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { runInformer, statusOf, wrapKubeError } from './kube.js';
import type { ClusterPhase, ClusterRecord, DriftState, PushHandover, ReconcilerState, RecordEvent, RecordStore, RunKind, RunRecord } from './types.js';
import { LABEL_CLUSTER, LABEL_MANAGED_BY, MANAGED_BY } from './workflow.js';

export const RECORD_PREFIX = 'capflow-cluster-';
export const STATE_NAME = 'capflow-reconciler-state';
export const LABEL_RECORD = 'capflow.io/record';
export const LABEL_PHASE = 'capflow.io/phase';
export const LABEL_DRIFT = 'capflow.io/drift';

/** Objects per list response: a page is parsed (twice: JSON, then the client's typed copy) and dropped before the next. */
export const LIST_PAGE = 250;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

const PHASES: ReadonlySet<string> = new Set<ClusterPhase>(['Pending', 'Running', 'Succeeded', 'Failed', 'Invalid', 'Removed', 'Deleted', 'Paused']);
const DRIFTS: ReadonlySet<string> = new Set<DriftState>(['Unknown', 'InSync', 'Drifted']);
const RUN_KINDS: ReadonlySet<string> = new Set<RunKind>(['apply', 'delete', 'plan']);
const RUN_PHASES: ReadonlySet<string> = new Set<RunRecord['phase']>(['Submitting', 'Pending', 'Running', 'Succeeded', 'Failed', 'Error']);
const PAUSE_MARKERS: ReadonlySet<string> = new Set(['set']);
const PUSH_PROVIDERS: ReadonlySet<string> = new Set<PushHandover['provider']>(['github', 'gitlab', 'gitea']);

/** Optional string fields of ClusterRecord, stored under their own names. */
const RECORD_STRINGS = [
  'gitRevision',
  'gitTree',
  'specHash',
  'hashedBy',
  'appliedRevision',
  'appliedSpecHash',
  'appliedAt',
  'nextRetryAt',
  'driftCheckedAt',
  'message',
  'paused',
  'pausedRevision',
] as const satisfies ReadonlyArray<keyof ClusterRecord>;

const RUN_STRINGS = ['finishedAt', 'failedStep', 'message'] as const satisfies ReadonlyArray<keyof RunRecord>;

export function recordName(cluster: string): string {
  if (!DNS_LABEL.test(cluster)) throw new InputError('CLUSTER_NAME_INVALID', `cluster name "${cluster}" is not a DNS-1123 label`);
  return `${RECORD_PREFIX}${cluster}`;
}

// ------------------------------------------------------------------------------------------------
// encoding

function encodeErrors(errors: string[]): string {
  return errors.map((e) => e.replace(/\n/g, '\n\t')).join('\n');
}

function decodeErrors(text: string): string[] {
  const out: string[] = [];
  if (text === '') return out;
  for (const line of text.split('\n')) {
    if (line.startsWith('\t') && out.length > 0) out[out.length - 1] += `\n${line.slice(1)}`;
    else out.push(line);
  }
  return out;
}

function encodeInputs(inputs: Record<string, string>): string {
  return Object.entries(inputs)
    .map(([p, id]) => `${id === '' ? '-' : id} ${p}`)
    .join('\n');
}

function encodeRun(prefix: string, run: RunRecord, data: Record<string, string>): void {
  data[`${prefix}.workflow`] = run.workflow;
  data[`${prefix}.kind`] = run.kind;
  data[`${prefix}.revision`] = run.revision;
  data[`${prefix}.specHash`] = run.specHash;
  data[`${prefix}.attempt`] = String(run.attempt);
  data[`${prefix}.phase`] = run.phase;
  data[`${prefix}.submittedAt`] = run.submittedAt;
  for (const k of RUN_STRINGS) if (run[k] !== undefined) data[`${prefix}.${k}`] = run[k];
}

export function encodeRecord(record: ClusterRecord): Record<string, string> {
  const data: Record<string, string> = {
    cluster: record.cluster,
    path: record.path,
    phase: record.phase,
    drift: record.drift,
    failures: String(record.failures),
    planCount: String(record.planCount),
  };
  for (const k of RECORD_STRINGS) if (record[k] !== undefined) data[k] = record[k];
  if (record.driftChanges !== undefined) data.driftChanges = String(record.driftChanges);
  if (record.errors !== undefined) data.errors = encodeErrors(record.errors);
  if (record.inputs !== undefined) data.inputs = encodeInputs(record.inputs);
  if (record.pauseMarker !== undefined) data.pauseMarker = record.pauseMarker;
  if (record.run) encodeRun('run', record.run, data);
  if (record.driftRun) encodeRun('driftRun', record.driftRun, data);
  return data;
}

/** Reads one ConfigMap's data; a hand-edited record that does not parse names the key to fix. */
class Reader {
  constructor(
    private readonly data: Record<string, string>,
    private readonly where: string,
  ) {}

  bad(key: string, why: string): never {
    throw new ConflictError('RECORD_INVALID', `${this.where}: data key "${key}" ${why}`, {
      hint: 'fix the key, or delete the ConfigMap: the reconciler recreates it from Git on its next pass',
    });
  }

  opt(key: string): string | undefined {
    return this.data[key];
  }

  req(key: string): string {
    return this.data[key] ?? this.bad(key, 'is missing');
  }

  oneOf<T extends string>(key: string, allowed: ReadonlySet<string>): T {
    const v = this.req(key);
    return allowed.has(v) ? (v as T) : this.bad(key, `is "${v}", not one of ${[...allowed].join(', ')}`);
  }

  inputs(key: string): Record<string, string> | undefined {
    const v = this.opt(key);
    if (v === undefined) return undefined;
    const out: Record<string, string> = {};
    for (const line of v === '' ? [] : v.split('\n')) {
      const m = /^([0-9a-f]{40,64}|-) (\S.*)$/.exec(line);
      if (!m) this.bad(key, `has the line "${line}", not "<git object id or -> <path>"`);
      out[m[2]!] = m[1] === '-' ? '' : m[1]!;
    }
    return out;
  }

  int(key: string): number {
    const v = this.req(key);
    return /^-?\d+$/.test(v) ? Number(v) : this.bad(key, `is "${v}", not a whole number`);
  }

  run(prefix: string): RunRecord | undefined {
    if (!Object.keys(this.data).some((k) => k.startsWith(`${prefix}.`))) return undefined;
    const run: RunRecord = {
      workflow: this.req(`${prefix}.workflow`),
      kind: this.oneOf<RunKind>(`${prefix}.kind`, RUN_KINDS),
      revision: this.req(`${prefix}.revision`),
      specHash: this.req(`${prefix}.specHash`),
      attempt: this.int(`${prefix}.attempt`),
      phase: this.oneOf<RunRecord['phase']>(`${prefix}.phase`, RUN_PHASES),
      submittedAt: this.req(`${prefix}.submittedAt`),
    };
    for (const k of RUN_STRINGS) {
      const v = this.opt(`${prefix}.${k}`);
      if (v !== undefined) run[k] = v;
    }
    return run;
  }
}

export function decodeRecord(cm: V1ConfigMap): ClusterRecord {
  const r = new Reader(cm.data ?? {}, `ConfigMap ${cm.metadata?.namespace ?? ''}/${cm.metadata?.name ?? ''}`);
  const record: ClusterRecord = {
    cluster: r.req('cluster'),
    path: r.req('path'),
    phase: r.oneOf<ClusterPhase>('phase', PHASES),
    failures: r.int('failures'),
    drift: r.oneOf<DriftState>('drift', DRIFTS),
    planCount: r.int('planCount'),
  };
  for (const k of RECORD_STRINGS) {
    const v = r.opt(k);
    if (v !== undefined) record[k] = v;
  }
  if (r.opt('driftChanges') !== undefined) record.driftChanges = r.int('driftChanges');
  if (r.opt('pauseMarker') !== undefined) record.pauseMarker = r.oneOf<'set'>('pauseMarker', PAUSE_MARKERS);
  const errors = r.opt('errors');
  if (errors !== undefined) record.errors = decodeErrors(errors);
  const inputs = r.inputs('inputs');
  if (inputs !== undefined) record.inputs = inputs;
  const run = r.run('run');
  if (run) record.run = run;
  const driftRun = r.run('driftRun');
  if (driftRun) record.driftRun = driftRun;
  if (cm.metadata?.resourceVersion) record.resourceVersion = cm.metadata.resourceVersion;
  return record;
}

export function encodeState(state: ReconcilerState): Record<string, string> {
  const data: Record<string, string> = {};
  if (state.gitRevision !== undefined) data.gitRevision = state.gitRevision;
  if (state.lastPassAt !== undefined) data.lastPassAt = state.lastPassAt;
  if (state.leader !== undefined) data.leader = state.leader;
  const push = state.lastPush;
  if (push) {
    data['lastPush.provider'] = push.provider;
    data['lastPush.after'] = push.after;
    data['lastPush.at'] = push.at;
    data['lastPush.by'] = push.by;
  }
  return data;
}

export function decodeState(cm: V1ConfigMap): ReconcilerState {
  const data = cm.data ?? {};
  const r = new Reader(data, `ConfigMap ${cm.metadata?.namespace ?? ''}/${cm.metadata?.name ?? ''}`);
  const state: ReconcilerState = {};
  for (const k of ['gitRevision', 'lastPassAt', 'leader'] as const) {
    const v = r.opt(k);
    if (v !== undefined) state[k] = v;
  }
  if (Object.keys(data).some((k) => k.startsWith('lastPush.'))) {
    state.lastPush = {
      provider: r.oneOf<PushHandover['provider']>('lastPush.provider', PUSH_PROVIDERS),
      after: r.opt('lastPush.after') ?? '',
      at: r.req('lastPush.at'),
      by: r.req('lastPush.by'),
    };
  }
  if (cm.metadata?.resourceVersion) state.resourceVersion = cm.metadata.resourceVersion;
  return state;
}

/** What the watch's cache keeps of a ConfigMap once it is decoded: its name and version (the cache compares and deletes by them). */
function slimConfigMap(cm: V1ConfigMap): void {
  const { name, namespace, resourceVersion } = cm.metadata ?? {};
  for (const key of Object.keys(cm)) if (key !== 'metadata') delete (cm as unknown as Record<string, unknown>)[key];
  cm.metadata = { ...(name !== undefined ? { name } : {}), ...(namespace !== undefined ? { namespace } : {}), ...(resourceVersion !== undefined ? { resourceVersion } : {}) };
}

// ------------------------------------------------------------------------------------------------
// the store

export interface ConfigMapRecordStoreOptions {
  log?: Logger;
  /** Wait before restarting a state watch that failed. Default 1 s. */
  watchRestartMs?: number;
}

export class ConfigMapRecordStore implements RecordStore {
  private readonly api: CoreV1Api;

  constructor(
    private readonly kc: KubeConfig,
    readonly namespace: string,
    private readonly options: ConfigMapRecordStoreOptions = {},
  ) {
    this.api = kc.makeApiClient(CoreV1Api);
  }

  private rule(verb: string): { verb: string; resource: string; namespace: string } {
    return { verb, resource: 'configmaps', namespace: this.namespace };
  }

  /** Every record, read in pages (LIST_PAGE ConfigMaps a response) and decoded page by page. */
  async list(): Promise<Map<string, ClusterRecord>> {
    const out = new Map<string, ClusterRecord>();
    await this.listPages(
      (items) => {
        for (const cm of items) {
          const record = decodeRecord(cm);
          out.set(record.cluster, record);
        }
      },
      () => out.clear(),
    );
    return out;
  }

  /**
   * Follows the records (list, then watch from that version), restarting after a cut from the last
   * version seen; a 410 Gone lists again, and reports what went meanwhile as removed. The client's
   * cache keeps only each ConfigMap's name and resourceVersion: records are decoded page by page as
   * they are listed, and as they are watched.
   */
  async watch(onEvent: (event: RecordEvent) => void): Promise<() => Promise<void>> {
    const { options } = this;
    const selector = `${LABEL_RECORD}=cluster`;
    const listed = new WeakMap<V1ConfigMap, RecordEvent>();
    const event = (cm: V1ConfigMap): RecordEvent => {
      const name = cm.metadata?.name ?? '';
      const cluster = name.startsWith(RECORD_PREFIX) ? name.slice(RECORD_PREFIX.length) : name;
      try {
        return { type: 'put', cluster, record: decodeRecord(cm) };
      } catch (error) {
        return { type: 'invalid', cluster, resourceVersion: cm.metadata?.resourceVersion ?? '', error };
      }
    };
    const listFn = async (): Promise<KubernetesListObject<V1ConfigMap>> => {
      const items: V1ConfigMap[] = [];
      const metadata = await this.listPages(
        (page) => {
          for (const cm of page) {
            listed.set(cm, event(cm));
            slimConfigMap(cm);
            items.push(cm);
          }
        },
        () => void items.splice(0),
      );
      return { apiVersion: 'v1', kind: 'ConfigMapList', metadata, items };
    };
    const informer = new ListWatch<V1ConfigMap>(`/api/v1/namespaces/${this.namespace}/configmaps`, new Watch(this.kc), listFn, false, selector);
    return runInformer(informer, {
      what: 'record watch',
      ...(options.log ? { log: options.log } : {}),
      ...(options.watchRestartMs !== undefined ? { restartMs: options.watchRestartMs } : {}),
      startError: (err) => wrapKubeError(err, `watching cluster records in ${this.namespace}`, this.rule('watch')),
      deliver: (cm) => {
        const e = listed.get(cm) ?? event(cm);
        slimConfigMap(cm);
        onEvent(e);
      },
      remove: (cm) => {
        const name = cm.metadata?.name ?? '';
        onEvent({ type: 'removed', cluster: name.startsWith(RECORD_PREFIX) ? name.slice(RECORD_PREFIX.length) : name, resourceVersion: cm.metadata?.resourceVersion ?? '' });
      },
    });
  }

  /** Lists the records in pages; `restart` empties what was taken when the list starts again after a 410. Returns the list's resourceVersion. */
  private async listPages(take: (items: V1ConfigMap[]) => void, restart: () => void): Promise<{ resourceVersion?: string }> {
    let next: string | undefined;
    let restarted = false;
    for (;;) {
      let res;
      try {
        res = await this.api.listNamespacedConfigMap({ namespace: this.namespace, labelSelector: `${LABEL_RECORD}=cluster`, limit: LIST_PAGE, ...(next ? { _continue: next } : {}) });
      } catch (err) {
        // 410: the continue token expired between pages; list again from the start, once
        if (next && statusOf(err) === 410 && !restarted) {
          restarted = true;
          next = undefined;
          restart();
          continue;
        }
        throw wrapKubeError(err, `listing cluster records in ${this.namespace}`, this.rule('list'));
      }
      take(res.items);
      next = res.metadata?._continue || undefined;
      if (!next) return res.metadata?.resourceVersion ? { resourceVersion: res.metadata.resourceVersion } : {};
    }
  }

  async get(cluster: string): Promise<ClusterRecord | undefined> {
    const cm = await this.read(recordName(cluster));
    return cm ? decodeRecord(cm) : undefined;
  }

  async put(record: ClusterRecord): Promise<ClusterRecord> {
    const body: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: recordName(record.cluster),
        namespace: this.namespace,
        labels: {
          [LABEL_MANAGED_BY]: MANAGED_BY,
          [LABEL_RECORD]: 'cluster',
          [LABEL_CLUSTER]: record.cluster,
          [LABEL_PHASE]: record.phase,
          [LABEL_DRIFT]: record.drift,
        },
      },
      data: encodeRecord(record),
    };
    return decodeRecord(await this.write(body, record.resourceVersion, `cluster record of ${record.cluster}`));
  }

  async readState(): Promise<ReconcilerState> {
    const cm = await this.read(STATE_NAME);
    return cm ? decodeState(cm) : {};
  }

  async writeState(state: ReconcilerState): Promise<ReconcilerState> {
    const body: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: STATE_NAME, namespace: this.namespace, labels: { [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_RECORD]: 'state' } },
      data: encodeState(state),
    };
    const cm = await this.write(body, state.resourceVersion, 'reconciler state');
    return { ...state, resourceVersion: cm.metadata?.resourceVersion ?? '' };
  }

  /** Follows the one state ConfigMap (fieldSelector metadata.name), restarting after a cut. */
  async watchState(onChange: (state: ReconcilerState) => void): Promise<() => Promise<void>> {
    const { options } = this;
    const fieldSelector = `metadata.name=${STATE_NAME}`;
    const listFn = () => this.api.listNamespacedConfigMap({ namespace: this.namespace, fieldSelector });
    const informer = new ListWatch<V1ConfigMap>(`/api/v1/namespaces/${this.namespace}/configmaps`, new Watch(this.kc), listFn, false, undefined, fieldSelector);
    return runInformer(informer, {
      what: 'reconciler state watch',
      ...(options.log ? { log: options.log } : {}),
      ...(options.watchRestartMs !== undefined ? { restartMs: options.watchRestartMs } : {}),
      startError: (err) => wrapKubeError(err, `watching ConfigMap ${this.namespace}/${STATE_NAME}`, this.rule('watch')),
      deliver: (cm) => {
        let state: ReconcilerState;
        try {
          state = decodeState(cm);
        } catch (err) {
          options.log?.warn('the reconciler state does not parse; ignoring this version', { error: err instanceof Error ? err.message : String(err) });
          return;
        }
        onChange(state);
      },
    });
  }

  private async read(name: string): Promise<V1ConfigMap | undefined> {
    try {
      return await this.api.readNamespacedConfigMap({ name, namespace: this.namespace });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw wrapKubeError(err, `reading ConfigMap ${this.namespace}/${name}`, this.rule('get'));
    }
  }

  /** Create when the caller has no resourceVersion (it read nothing), else replace that version. */
  private async write(body: V1ConfigMap, resourceVersion: string | undefined, what: string): Promise<V1ConfigMap> {
    const name = body.metadata!.name!;
    const creating = !resourceVersion;
    try {
      if (creating) return await this.api.createNamespacedConfigMap({ namespace: this.namespace, body });
      body.metadata!.resourceVersion = resourceVersion;
      return await this.api.replaceNamespacedConfigMap({ name, namespace: this.namespace, body });
    } catch (err) {
      const status = statusOf(err);
      // 409: another writer created it or changed it since our read; 404 on replace: it was deleted since
      if (status === 409 || (!creating && status === 404)) {
        throw new ConflictError('RECORD_CONFLICT', `${what} changed since it was read (ConfigMap ${this.namespace}/${name}): read it again and retry`, {
          cause: err,
          details: { name, resourceVersion },
        });
      }
      throw wrapKubeError(err, `${creating ? 'creating' : 'replacing'} ConfigMap ${this.namespace}/${name}`, this.rule(creating ? 'create' : 'update'));
    }
  }
}
