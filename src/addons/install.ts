/**
 * Installing a cluster's addons as Git says, one stage at a time: every AddonChart rendered and every
 * ClusterResourceSet that selects the cluster read, then everything checked by the API server
 * (server-side apply with dryRun=All), and only then anything applied. A chart that does not render,
 * an object the API server refuses or a field conflict stops the run before its first write, naming
 * the addon, the object and where it came from (the template, or the ConfigMap/Secret at file:line).
 *
 * Then, in dependency order (independent addons concurrently): resource sets first, charts after
 * them; each addon applied (src/addons/apply.ts), what it no longer renders pruned, and, when it
 * waits, its objects ready (src/addons/readiness.ts) before its dependants start. Addons removed from
 * Git are pruned whole. What each addon holds (its inventory) is kept in the cluster's status
 * secret under `install-addons`, written before an apply as the union of the old and the new, so a
 * run that dies mid-apply leaves nothing the next run cannot prune.
 *
 * Stages: `ControlPlane` addons (a CNI) go right after the API server answers, `Workers` addons once
 * the Nodes are Ready. An AddonChart says `spec.stage`, a ClusterResourceSet the annotation
 * `capflow.io/stage`; both default to Workers.
 *
 * ClusterResourceSets keep Cluster API's meaning: `ApplyOnce` resources are applied once (by their
 * data hash, as the binding records it) and never pruned; `Reconcile` resources are applied again
 * when their data changes, and what they stop holding is pruned.
 */
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { type CapflowError, InputError, ConflictError, isCapflowError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { SecretStore } from '../core/secrets.js';
import { readStepStatus, writeStepStatus } from '../core/status.js';
import type { Plan } from '../aws/plan.js';
import { STAGE_ANNOTATION, fieldLocation, type AddonChart, type AddonStage, type ClusterModel } from '../spec/index.js';
import { ADDON_LABEL, AddonApplier, describeRef, kindKey, pendingInRun, refKey, refOf, type ObjectRef, type PreviewEntry } from './apply.js';
import { renderAddonChart } from './charts.js';
import { READINESS_KINDS, waitReady } from './readiness.js';
import { resourceSetAddons, resourcesToApply } from './resource-sets.js';
import { runInDependencyOrder } from './schedule.js';
import { mapLimit } from '../core/concurrency.js';

export const ADDONS_STEP = 'install-addons';
export type StageSelection = AddonStage | 'all';
/** Namespaces an addon never creates nor prunes. */
const SYSTEM_NAMESPACES = new Set(['default', 'kube-system', 'kube-public', 'kube-node-lease']);

/** What capflow remembers of one addon in the workload cluster. */
export interface AddonRecord {
  kind: 'AddonChart' | 'ClusterResourceSet';
  stage: AddonStage;
  /** Every object it applied that a later run may prune, in install order. */
  inventory: ObjectRef[];
  /** ClusterResourceSets: data hash last applied, by `ConfigMap/<name>` or `Secret/<name>`. */
  applied?: Record<string, string>;
  /** ApplyOnce sets: their objects are never pruned. */
  keep?: boolean;
}

export interface AddonsStatus {
  revision: string;
  addons: Record<string, AddonRecord>;
}

/** One addon as this run wants it. */
interface DesiredAddon {
  name: string;
  kind: AddonRecord['kind'];
  stage: AddonStage;
  dependsOn: string[];
  namespace: string;
  force: boolean;
  wait: boolean;
  timeoutMs: number;
  /** Where it is defined, for messages: `addons.yaml:12`. */
  where: string;
  /** Everything it renders, with where each object came from. */
  objects: Array<{ object: KubernetesObject; source: string }>;
  /** What this run applies (a subset for ApplyOnce sets already applied). */
  toApply: KubernetesObject[];
  /** Resource sets: the hashes once applied. */
  applied?: Record<string, string>;
  keep: boolean;
}

export interface InstallOptions {
  model: ClusterModel;
  /** Root of the Git checkout (AddonChart spec.path is relative to it). */
  repoRoot: string;
  revision: string;
  stage: StageSelection;
  kc: KubeConfig;
  /** capflow's secret store: chart credentials and the step status. */
  store: SecretStore;
  log: Logger;
  plan: Plan;
  dryRun: boolean;
  concurrency?: number;
  /** Readiness timeout of resource sets (charts say theirs). Default 5 min. */
  resourceSetTimeoutMs?: number;
  pollMs?: number;
  progressMs?: number;
  signal?: AbortSignal;
  helm?: string;
}

export interface AddonOutcome {
  name: string;
  written: number;
  pruned: number;
}

export interface InstallResult {
  addons: AddonOutcome[];
  /** Objects created, changed or deleted (0 on a no-op run). */
  changes: number;
  /** Addons removed from Git whose objects were pruned. */
  removed: string[];
}

/** Renders, checks, applies, prunes and waits: the whole of one stage. */
export async function installAddons(o: InstallOptions): Promise<InstallResult> {
  const stages = o.stage === 'all' ? new Set<AddonStage>(['ControlPlane', 'Workers']) : new Set<AddonStage>([o.stage]);
  const status = (await readStepStatus<AddonsStatus>(o.store, o.model.name, ADDONS_STEP)) ?? { revision: '', addons: {} };
  const desired = (await desiredAddons(o, status)).filter((a) => stages.has(a.stage));
  const names = new Set(desired.map((a) => a.name));
  // Addons of these stages that capflow installed and Git no longer has.
  const removed = Object.entries(status.addons).filter(([name, r]) => stages.has(r.stage) && !names.has(name) && !isDesiredElsewhere(o.model, name));
  o.log.info(`Addons of stage ${o.stage}: ${desired.length === 0 ? 'none' : desired.map((a) => a.name).join(', ')}`, { removed: removed.map(([n]) => n).join(', ') || undefined });

  const applier = new AddonApplier(o.kc, o.log, o.signal);
  await withNamespaces(applier, desired, o);
  await qualifyNamespaces(applier, desired);
  refuseDuplicates(desired);
  const preview = await checkAll(applier, desired, o);

  for (const a of desired) {
    for (const p of preview.get(a.name) ?? []) o.plan.record({ resource: `addon ${a.name}`, name: describeRef(p.ref), action: p.action === 'unchecked' ? 'create' : p.action, ...(p.detail ? { detail: p.detail } : {}) });
    for (const ref of pruneList(status.addons[a.name], a)) o.plan.record({ resource: `addon ${a.name}`, name: describeRef(ref), action: 'delete', detail: 'no longer rendered' });
  }
  for (const [name, r] of removed) {
    for (const ref of r.keep ? [] : r.inventory) o.plan.record({ resource: `addon ${name}`, name: describeRef(ref), action: 'delete', detail: 'addon removed from Git' });
  }
  if (o.dryRun) return { addons: [], changes: 0, removed: removed.map(([n]) => n) };

  const records = new StatusWriter(o, status);
  const outcomes: AddonOutcome[] = [];
  const run = async (a: DesiredAddon) => {
    const before = status.addons[a.name];
    const current = a.objects.map((x) => refOf(x.object));
    const union = mergeRefs(before?.inventory ?? [], current);
    // Written before the apply: a run that dies mid-apply leaves only objects the record names.
    await records.put(a.name, { ...record(a, before), inventory: union });
    // What the dry run found unchanged is not sent again: a no-op run makes no write request.
    const entries = preview.get(a.name) ?? [];
    const unchanged = new Set(entries.filter((e) => e.action === 'no-change').map((e) => refKey(e.ref)));
    const changing = a.toApply.filter((x) => !unchanged.has(refKey(refOf(x))));
    const result = await applier.apply(a.name, changing, { namespace: a.namespace, force: a.force });
    const applied = [...result.applied, ...entries.filter((e) => e.action === 'no-change').map((e) => e.ref)];
    const written = result.written;
    const pruned = a.keep ? [] : await applier.prune(a.name, before?.inventory ?? [], current);
    await records.put(a.name, { ...record(a, before), inventory: a.keep ? union : current, ...(a.applied ? { applied: a.applied } : {}) });
    const watched = applied.filter((r) => READINESS_KINDS.has(r.kind));
    if (a.wait && watched.length > 0) {
      await waitReady(o.kc, watched, { addon: a.name, timeoutMs: a.timeoutMs, log: o.log, ...(o.pollMs ? { pollMs: o.pollMs } : {}), ...(o.progressMs ? { progressMs: o.progressMs } : {}), ...(o.signal ? { signal: o.signal } : {}) });
    }
    outcomes.push({ name: a.name, written: written.length, pruned: pruned.length });
    o.log.info(`Addon ${a.name} ${written.length + pruned.length === 0 ? 'unchanged' : `applied: ${written.length} written, ${pruned.length} pruned`}${a.wait ? ', ready' : ''}`, { addon: a.name });
  };
  // Resource sets first (they are what charts may need: a CNI, a namespace, a CRD), then charts.
  const sets = desired.filter((a) => a.kind === 'ClusterResourceSet');
  const charts = desired.filter((a) => a.kind === 'AddonChart');
  const first = await runInDependencyOrder(sets, run, { concurrency: o.concurrency ?? 4, ...(o.signal ? { signal: o.signal } : {}) });
  throwFirst(first.failed);
  const second = await runInDependencyOrder(charts, run, { concurrency: o.concurrency ?? 4, ...(o.signal ? { signal: o.signal } : {}) });
  for (const s of second.skipped) o.log.warn(`Addon ${s.name} not installed: ${s.because}`);
  throwFirst(second.failed);

  // Removed from Git: pruned whole, in reverse dependency order as they were recorded.
  const gone: string[] = [];
  for (const [name, r] of removed.reverse()) {
    const pruned = r.keep ? [] : await applier.prune(name, r.inventory, []);
    if (r.keep) o.log.info(`Addon ${name} was removed from Git; as an ApplyOnce ClusterResourceSet its objects stay in the cluster`);
    await records.remove(name);
    outcomes.push({ name, written: 0, pruned: pruned.length });
    gone.push(name);
  }
  await records.flush();
  const changes = outcomes.reduce((n, x) => n + x.written + x.pruned, 0);
  return { addons: outcomes, changes, removed: gone };
}

/**
 * The plan when the cluster has no API server yet: every addon of the stage rendered (so a chart
 * that cannot render is reported now) and recorded as to be created.
 */
export async function planWithoutCluster(o: Omit<InstallOptions, 'kc'>): Promise<void> {
  const stages = o.stage === 'all' ? new Set<AddonStage>(['ControlPlane', 'Workers']) : new Set<AddonStage>([o.stage]);
  for (const a of (await desiredAddons(o, { revision: '', addons: {} })).filter((x) => stages.has(x.stage))) {
    for (const { object } of a.objects) o.plan.record({ resource: `addon ${a.name}`, name: describeRef(refOf(object)), action: 'create', detail: 'the cluster has no API server yet' });
  }
}

/** An addon of another stage that Git still has is not "removed" (its stage changed). */
function isDesiredElsewhere(model: ClusterModel, name: string): boolean {
  return model.addons.some((a) => a.metadata.name === name) || model.resourceSets.some((r) => r.selectsCluster && `crs-${r.resourceSet.metadata.name}` === name);
}

function record(a: DesiredAddon, before: AddonRecord | undefined): AddonRecord {
  return { kind: a.kind, stage: a.stage, inventory: before?.inventory ?? [], ...(before?.applied ? { applied: before.applied } : {}), ...(a.keep ? { keep: true } : {}) };
}

function pruneList(before: AddonRecord | undefined, a: DesiredAddon): ObjectRef[] {
  if (!before || a.keep) return [];
  const keep = new Set(a.objects.map((x) => refKey(refOf(x.object))));
  return before.inventory.filter((r) => !keep.has(refKey(r)));
}

function mergeRefs(a: readonly ObjectRef[], b: readonly ObjectRef[]): ObjectRef[] {
  const seen = new Set<string>();
  return [...a, ...b].filter((r) => !seen.has(refKey(r)) && seen.add(refKey(r)) !== undefined);
}

function throwFirst(failed: ReadonlyArray<{ name: string; error: unknown }>): void {
  if (failed.length === 0) return;
  throw failed[0]!.error;
}

/** The step status, written one addon at a time (addons run concurrently), skipped when unchanged. */
class StatusWriter {
  private chain: Promise<void> = Promise.resolve();
  private readonly written: string;
  private lastSaved: string;

  constructor(
    private readonly o: InstallOptions,
    private readonly status: AddonsStatus,
  ) {
    this.written = JSON.stringify(status.addons);
    this.lastSaved = this.written;
  }

  put(name: string, r: AddonRecord): Promise<void> {
    this.status.addons[name] = r;
    return this.save();
  }

  remove(name: string): Promise<void> {
    delete this.status.addons[name];
    return this.save();
  }

  /** The revision is recorded once the run is through; nothing is written when nothing changed. */
  async flush(): Promise<void> {
    if (this.status.revision === this.o.revision && JSON.stringify(this.status.addons) === this.written) return;
    this.status.revision = this.o.revision;
    await this.save(true);
  }

  private save(always = false): Promise<void> {
    const next = this.chain.then(async () => {
      if (!always && JSON.stringify(this.status.addons) === this.lastSaved) return;
      this.lastSaved = JSON.stringify(this.status.addons);
      await writeStepStatus(this.o.store, this.o.model.name, ADDONS_STEP, this.status);
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

}

/** Every addon of the cluster folder, rendered (charts concurrently); all render failures together. */
async function desiredAddons(o: Omit<InstallOptions, 'kc'>, status: AddonsStatus): Promise<DesiredAddon[]> {
  const out: DesiredAddon[] = [];
  for (const set of resourceSetAddons(o.model)) {
    const rs = o.model.resourceSets.find((r) => r.resourceSet.metadata.name === set.name)!;
    const stage = (rs.resourceSet.metadata.annotations?.[STAGE_ANNOTATION] as AddonStage | undefined) ?? 'Workers';
    const before = status.addons[set.addon]?.applied ?? {};
    const apply = resourcesToApply(set, before);
    const applied = { ...before, ...Object.fromEntries(set.resources.map((r) => [r.key, r.hash])) };
    // ApplyOnce: a resource already applied keeps the hash it was applied with.
    if (set.strategy === 'ApplyOnce') for (const key of Object.keys(before)) applied[key] = before[key]!;
    const objects = set.resources.flatMap((r) => r.objects.map((object) => ({ object, source: `${r.key} at ${locate(o.model, r.key.split('/')[0]!, r.key.split('/')[1]!)}` })));
    out.push({
      name: set.addon,
      kind: 'ClusterResourceSet',
      stage,
      dependsOn: [],
      namespace: 'default',
      force: false,
      wait: true,
      timeoutMs: o.resourceSetTimeoutMs ?? 5 * 60_000,
      where: locate(o.model, 'ClusterResourceSet', set.name),
      objects: set.strategy === 'ApplyOnce' ? objects.filter((x) => apply.some((r) => r.objects.includes(x.object))) : objects,
      toApply: apply.flatMap((r) => r.objects),
      applied,
      keep: set.strategy === 'ApplyOnce',
    });
  }

  const failures: CapflowError[] = [];
  const charts = await mapLimit(o.model.addons, o.concurrency ?? 4, async (addon: AddonChart) => {
    try {
      const rendered = await renderAddonChart(addon, {
        repoRoot: o.repoRoot,
        clusterDir: o.model.dir,
        ...(o.model.kubernetesVersion ? { kubeVersion: o.model.kubernetesVersion } : {}),
        secrets: o.store,
        logger: o.log,
        ...(o.helm ? { helm: o.helm } : {}),
      });
      return { addon, rendered };
    } catch (err) {
      if (!isCapflowError(err)) throw err;
      failures.push(err);
      return undefined;
    }
  });
  if (failures.length > 0) {
    if (failures.length === 1) throw withPlace(failures[0]!, o.model);
    throw new InputError('ADDON_CHART_RENDER', `${failures.length} AddonCharts cannot be rendered, nothing was applied:\n${failures.map((f) => `  ${placeOf(f, o.model)}${f.message}`).join('\n')}`);
  }
  for (const c of charts) {
    if (!c) continue;
    const { addon, rendered } = c;
    const spec = addon.spec;
    const objects = [...rendered.objects];
    out.push({
      name: addon.metadata.name,
      kind: 'AddonChart',
      stage: spec.stage ?? 'Workers',
      dependsOn: spec.dependsOn ?? [],
      namespace: rendered.namespace,
      force: spec.force ?? false,
      wait: spec.wait ?? true,
      timeoutMs: goDuration(spec.timeout) ?? 5 * 60_000,
      where: locate(o.model, 'AddonChart', addon.metadata.name),
      objects,
      toApply: objects.map((x) => x.object),
      keep: false,
    });
  }
  return out;
}

/**
 * A chart's namespace, when it asks for one (`createNamespace`, the default) and renders none: made
 * by the addon, so labelled and pruned with it. A namespace that exists without the addon's label
 * (made by hand, or by another addon) is left alone.
 */
async function withNamespaces(applier: AddonApplier, desired: DesiredAddon[], o: InstallOptions): Promise<void> {
  for (const a of desired) {
    if (a.kind !== 'AddonChart' || SYSTEM_NAMESPACES.has(a.namespace)) continue;
    const spec = o.model.addons.find((x) => x.metadata.name === a.name)?.spec;
    if (spec?.createNamespace === false) continue;
    if (desired.some((d) => d.objects.some((x) => x.object.kind === 'Namespace' && x.object.metadata?.name === a.namespace))) continue;
    const live = await applier.read({ apiVersion: 'v1', kind: 'Namespace', name: a.namespace });
    if (live && live.metadata?.labels?.[ADDON_LABEL] !== a.name) continue;
    const ns: KubernetesObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: a.namespace } };
    a.objects.unshift({ object: ns, source: 'spec.createNamespace' });
    a.toApply.unshift(ns);
  }
}

/**
 * Every namespaced object gets its namespace written out (the addon's, when the chart or manifest
 * left it out), so that the inventory, the plan and pruning name each object exactly. Kinds the
 * cluster does not serve yet are judged by the scope their CRD in this run declares.
 */
async function qualifyNamespaces(applier: AddonApplier, desired: DesiredAddon[]): Promise<void> {
  const crdScope = new Map<string, boolean>();
  for (const a of desired) {
    for (const { object } of a.objects) {
      const spec = (object as { spec?: { group?: string; names?: { kind?: string }; scope?: string } }).spec;
      if (object.kind === 'CustomResourceDefinition' && spec?.group && spec.names?.kind) crdScope.set(`${spec.group}/${spec.names.kind}`, spec.scope === 'Namespaced');
    }
  }
  const scopes = new Map<string, boolean | undefined>();
  for (const a of desired) {
    for (const x of a.objects) {
      const o = x.object;
      if (o.metadata?.namespace || !o.apiVersion || !o.kind) continue;
      const key = `${o.apiVersion}/${o.kind}`;
      if (!scopes.has(key)) scopes.set(key, (await applier.isNamespaced(o.apiVersion, o.kind)) ?? crdScope.get(kindKey(o.apiVersion, o.kind)));
      // an object shared by reference with toApply: both see the namespace
      if (scopes.get(key)) o.metadata = { ...o.metadata, namespace: a.namespace };
    }
  }
}

/** Two addons rendering one object would fight over it on every run: refused. */
function refuseDuplicates(desired: DesiredAddon[]): void {
  const owner = new Map<string, string>();
  for (const a of desired) {
    for (const { object, source } of a.objects) {
      const ref = refOf(object);
      const key = refKey(ref);
      const other = owner.get(key);
      if (other && other !== a.name) {
        throw new InputError('ADDON_OBJECT_DUPLICATE', `${describeRef(ref)} is rendered by two addons: ${other} and ${a.name} (${source}); one object has one owner`, { hint: 'remove it from one of them' });
      }
      owner.set(key, a.name);
    }
  }
}

/**
 * The API server's verdict on every object before any write: invalid objects, field conflicts and
 * unknown kinds of every addon are reported together, naming addon, object and source.
 */
async function checkAll(applier: AddonApplier, desired: DesiredAddon[], o: InstallOptions): Promise<Map<string, PreviewEntry[]>> {
  const pending = pendingInRun(desired.flatMap((a) => a.toApply));
  const out = new Map<string, PreviewEntry[]>();
  const problems: string[] = [];
  let conflict = false;
  const previews = await mapLimit(desired, o.concurrency ?? 4, (a) => applier.preview(a.name, a.toApply, { namespace: a.namespace, force: a.force, pending }));
  for (const [i, a] of desired.entries()) {
    const entries = previews[i]!;
    out.set(a.name, entries);
    for (const e of entries) {
      if (!e.problem) continue;
      const source = a.objects.find((x) => x.object.kind === e.ref.kind && x.object.metadata?.name === e.ref.name)?.source;
      problems.push(`${a.where}: ${e.problem.message}${source ? ` (from ${source})` : ''}`);
      if (e.problem.code === 'ADDON_FIELD_CONFLICT') conflict = true;
    }
  }
  if (problems.length > 0) {
    const message = `${problems.length === 1 ? 'an addon object is' : `${problems.length} addon objects are`} refused; nothing was applied:\n${problems.map((p) => `  ${p}`).join('\n')}`;
    if (conflict) throw new ConflictError('ADDON_FIELD_CONFLICT', message, { hint: 'another field manager owns these fields: set spec.force: true on the AddonChart to take them over, or stop the other writer' });
    throw new InputError('ADDON_OBJECT_INVALID', message);
  }
  return out;
}

export function locate(model: ClusterModel, kind: string, name: string): string {
  const loc = fieldLocation(model, { kind, name }, []);
  return loc ? `${loc.file}:${loc.line}` : `${kind}/${name}`;
}

function placeOf(err: CapflowError, model: ClusterModel): string {
  const name = /^AddonChart ([^\s:]+)/.exec(err.message)?.[1];
  return name ? `${locate(model, 'AddonChart', name)}: ` : '';
}

/** The render error, prefixed with the AddonChart's file:line. */
function withPlace(err: CapflowError, model: ClusterModel): CapflowError {
  const place = placeOf(err, model);
  if (!place) return err;
  err.message = `${place}${err.message}`;
  return err;
}

/** A Go duration as the CRD's `format: duration` takes it (`90s`, `5m`, `1h30m`). */
export function goDuration(text: string | undefined): number | undefined {
  if (!text) return undefined;
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = text;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/.exec(rest);
    if (!m) return undefined;
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return total;
}

