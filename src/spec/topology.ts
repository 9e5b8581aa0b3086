/**
 * ClusterClass topologies: a v1beta1 Cluster with spec.topology is expanded,
 * as Cluster API's topology controller does, into the concrete documents the
 * rest of capflow acts on (the Cluster with its references, the infrastructure
 * cluster, the control plane and its machine template, a MachineDeployment or
 * MachinePool per topology entry with its bootstrap and machine objects), with the class's
 * variables and patches applied. Every expanded field keeps where it came from
 * (template, patch or topology), so later checks report at that file:line.
 *
 * Names are stable, not random as upstream's: the infrastructure cluster is
 * `<cluster>`, the control plane and its machine template `<cluster>-control-plane`,
 * each MachineDeployment or MachinePool and its two objects `<cluster>-<topology name>`.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { closest, type SpecProblem } from './problems.js';
import { CAPI_GROUP, groupOf } from './kinds.js';
import { getPath, isRecord } from './paths.js';
import { DocumentReporter, type CheckedDocument } from './validate.js';
import { applyJsonPatch, compileVariableSchema, lookupPath, parseGoTemplate, renderGoTemplate, templateValue, type Variables } from './topology-patches.js';
import { parseSpecFileInto, readSpecFile, type Located, type Locator, type PathSegment, type SourceDocument } from './yaml-source.js';

/** The folder at the repository root (the display root) that holds ClusterClasses shared by clusters. */
export const CLASSES_DIR = 'classes';

const CLUSTER_NAME_LABEL = 'cluster.x-k8s.io/cluster-name';
const OWNED_LABEL = 'topology.cluster.x-k8s.io/owned';
const DEPLOYMENT_NAME_LABEL = 'topology.cluster.x-k8s.io/deployment-name';
const POOL_NAME_LABEL = 'topology.cluster.x-k8s.io/pool-name';

/** The two lists of workers a topology and its class have, and how each is spoken of. */
type WorkerList = 'machineDeployments' | 'machinePools';
const WORKER: Record<WorkerList, { one: 'machineDeployment' | 'machinePool'; kind: 'MachineDeployment' | 'MachinePool'; label: string }> = {
  machineDeployments: { one: 'machineDeployment', kind: 'MachineDeployment', label: DEPLOYMENT_NAME_LABEL },
  machinePools: { one: 'machinePool', kind: 'MachinePool', label: POOL_NAME_LABEL },
};

export interface TopologyPlan {
  /** The Cluster document that has a topology. */
  cluster: SourceDocument;
  /** Its ClusterClass, when found. */
  classDoc?: SourceDocument;
  /** Where the class was found (the cluster folder's documents or those under classes/): its templates are looked up there. */
  pool: SourceDocument[];
  /** Documents of the cluster folder the expansion uses (the class and its templates): not checked on their own. */
  consumed: Set<SourceDocument>;
  /** Repository-relative paths outside the cluster folder the load looked in. */
  inputs: string[];
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const rec = (v: unknown): Record<string, unknown> => (isRecord(v) ? v : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const meta = (d: SourceDocument): Record<string, unknown> => rec(rec(d.value).metadata);
const nsOf = (d: SourceDocument): string => str(meta(d).namespace) ?? 'default';

/**
 * Finds the Cluster with a topology (v1beta1) and its ClusterClass: in the cluster folder, else
 * in any *.yaml under `<displayRoot>/classes/`. Undefined when no Cluster has a topology.
 */
export async function findTopology(sources: SourceDocument[], displayRoot: string, problems: SpecProblem[]): Promise<TopologyPlan | undefined> {
  const cluster = sources.find((s) => {
    const v = rec(s.value);
    return v.kind === 'Cluster' && v.apiVersion === `${CAPI_GROUP}/v1beta1` && isRecord(rec(v.spec).topology);
  });
  if (!cluster) return undefined;
  const topology = rec(rec(rec(cluster.value).spec).topology);
  const className = str(topology.class);
  const plan: TopologyPlan = { cluster, pool: sources, consumed: new Set(), inputs: [] };
  if (className === undefined) return plan; // the Cluster's schema reports the missing class
  const namespace = str(topology.classNamespace) ?? nsOf(cluster);
  const isClass = (d: SourceDocument): boolean => rec(d.value).kind === 'ClusterClass' && meta(d).name === className && nsOf(d) === namespace;
  let classDoc = sources.find(isClass);
  let classFileProblems: SpecProblem[] = [];
  if (!classDoc) {
    plan.inputs.push(CLASSES_DIR);
    const shared = await readClasses(displayRoot);
    classFileProblems = shared.problems;
    const found = shared.documents.filter(isClass);
    classDoc = found[0];
    plan.pool = shared.documents;
    for (const extra of found.slice(1)) {
      const r = reporter(problems, extra);
      const first = classDoc?.locate(['metadata', 'name']);
      r.report('duplicate', ['metadata', 'name'], `duplicate ClusterClass "${className}": already defined at ${first?.file.display}:${first?.line}:${first?.column}`);
    }
    if (!classDoc) {
      const known = [...sources, ...shared.documents].filter((d) => rec(d.value).kind === 'ClusterClass').map((d) => str(meta(d).name) ?? '');
      const guess = closest(className, known);
      reporter(problems, cluster).report('dangling-ref', ['spec', 'topology', 'class'], `ClusterClass "${className}" is not defined in this folder nor under ${CLASSES_DIR}/${namespace !== 'default' ? ` (namespace ${namespace})` : ''}${guess ? `; did you mean \`${guess}\`?` : ''}`, {
        hint: `put the ClusterClass and its templates beside the Cluster, or in ${CLASSES_DIR}/ at the repository root`,
      });
      // A file under classes/ that did not parse may have held it.
      problems.push(...classFileProblems);
      return plan;
    }
    problems.push(...classFileProblems.map((p) => ({ ...p, severity: 'warning' as const })));
  }
  plan.classDoc = classDoc;
  if (plan.pool === sources) {
    plan.consumed.add(classDoc);
    for (const ref of classRefs(classDoc)) {
      const t = findTemplate(plan.pool, ref.value, nsOf(classDoc));
      if (t) plan.consumed.add(t);
    }
  }
  return plan;
}

async function readClasses(displayRoot: string): Promise<{ documents: SourceDocument[]; problems: SpecProblem[] }> {
  const dir = path.join(displayRoot, CLASSES_DIR);
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  const documents: SourceDocument[] = [];
  const problems: SpecProblem[] = [];
  for (const name of names.filter((n) => /\.ya?ml$/i.test(n)).sort()) {
    const file = await readSpecFile(path.join(dir, name), displayRoot).catch(() => undefined);
    if (file) parseSpecFileInto(file, documents, problems);
  }
  return { documents, problems };
}

/** The template references of a class, with their paths in it. */
function classRefs(classDoc: SourceDocument): Array<{ path: PathSegment[]; value: unknown }> {
  const spec = rec(rec(classDoc.value).spec);
  const refs: Array<{ path: PathSegment[]; value: unknown }> = [
    { path: ['spec', 'infrastructure', 'ref'], value: getPath(spec, ['infrastructure', 'ref']) },
    { path: ['spec', 'controlPlane', 'ref'], value: getPath(spec, ['controlPlane', 'ref']) },
    { path: ['spec', 'controlPlane', 'machineInfrastructure', 'ref'], value: getPath(spec, ['controlPlane', 'machineInfrastructure', 'ref']) },
  ];
  for (const kind of ['machineDeployments', 'machinePools'] as const) {
    list(getPath(spec, ['workers', kind])).forEach((w, i) => {
      for (const part of ['bootstrap', 'infrastructure']) {
        refs.push({ path: ['spec', 'workers', kind, i, 'template', part, 'ref'], value: getPath(w, ['template', part, 'ref']) });
      }
    });
  }
  return refs.filter((r) => r.value !== undefined);
}

function findTemplate(pool: SourceDocument[], ref: unknown, namespace: string): SourceDocument | undefined {
  const r = rec(ref);
  const ns = str(r.namespace) ?? namespace;
  return pool.find((d) => rec(d.value).kind === r.kind && meta(d).name === r.name && nsOf(d) === ns);
}

function reporter(problems: SpecProblem[], d: SourceDocument): DocumentReporter {
  const r = new DocumentReporter(problems, d);
  const kind = str(rec(d.value).kind);
  const name = str(meta(d).name);
  if (kind !== undefined) r.kind = kind;
  if (name !== undefined) r.name = name;
  return r;
}

/** A field of an expanded document that came from elsewhere: `at` (in the expanded document) maps to `path` in `src`. */
interface Origin {
  at: PathSegment[];
  src: SourceDocument;
  path: PathSegment[];
}

const startsWith = (p: readonly PathSegment[], prefix: readonly PathSegment[]): boolean => prefix.length <= p.length && prefix.every((s, i) => p[i] === s);

/** Longest matching origin wins; else `base` maps the path. */
function locator(origins: Origin[], base: (p: readonly PathSegment[]) => { src: SourceDocument; path: PathSegment[] }): Locator {
  return (p, at): Located => {
    let best: Origin | undefined;
    for (const o of origins) if (startsWith(p, o.at) && (!best || o.at.length > best.at.length)) best = o;
    if (best) return best.src.locate([...best.path, ...p.slice(best.at.length)], at);
    const b = base(p);
    return b.src.locate(b.path, at);
  };
}

/** A class template cloned for one use, its patches applied. Origins are in the template's coordinates. */
/** One MachineDeployment or MachinePool of the topology, with its class entry and templates. */
interface Worker {
  kind: WorkerList;
  /** Index in the topology's list, and of its class in the class's list. */
  i: number;
  ci: number;
  name: string;
  bootstrap?: Instance;
  infra?: Instance;
}

interface Instance {
  src: SourceDocument;
  value: Record<string, unknown>;
  vars: Variables;
  origins: Origin[];
  /** Selector roles: 'infrastructureCluster', 'controlPlane', or the MachineDeployment or MachinePool class. */
  role: 'infrastructureCluster' | 'controlPlane' | { mdClass: string } | { mpClass: string };
  /** For messages: which use of the template this is. */
  label: string;
}

const ALLOWED: Record<string, string[]> = {
  infrastructure: ['AWSClusterTemplate', 'AWSManagedClusterTemplate'],
  controlPlane: ['KubeadmControlPlaneTemplate', 'AWSManagedControlPlaneTemplate'],
  machineInfrastructure: ['AWSMachineTemplate'],
  bootstrap: ['KubeadmConfigTemplate', 'EKSConfigTemplate'],
  mdInfrastructure: ['AWSMachineTemplate'],
  mpInfrastructure: ['AWSMachinePoolTemplate', 'AWSManagedMachinePoolTemplate'],
};

export interface Expansion {
  cluster: CheckedDocument;
  /** The expanded documents besides the Cluster, to be checked as any document is. */
  documents: SourceDocument[];
}

/**
 * Expands the topology of `cluster` (checked: schema defaults applied) with the plan's class.
 * Problems are reported where they were caused; undefined when any error stops the expansion.
 */
export async function expandTopology(plan: TopologyPlan, cluster: CheckedDocument, problems: SpecProblem[]): Promise<Expansion | undefined> {
  const classDoc = plan.classDoc;
  if (!classDoc) return undefined;
  const before = problems.filter((p) => p.severity === 'error').length;
  const failed = (): boolean => problems.filter((p) => p.severity === 'error').length > before;
  const classR = reporter(problems, classDoc);
  const clusterR = reporter(problems, cluster.src);
  const className = str(meta(classDoc).name) ?? '';
  const classValue = rec(classDoc.value);
  if (classValue.apiVersion !== `${CAPI_GROUP}/v1beta1`) {
    classR.report('unsupported-feature', ['apiVersion'], `ClusterClass ${String(classValue.apiVersion)} is not supported yet`, { hint: `write ${CAPI_GROUP}/v1beta1, which Cluster API v1.11 still serves` });
    return undefined;
  }
  const classSpec = rec(classValue.spec);
  const topology = rec(getPath(cluster.value, ['spec', 'topology']));
  const clusterName = cluster.name;
  const namespace = cluster.namespace;
  const version = str(topology.version) ?? '';
  const T = ['spec', 'topology'];

  // Templates the class names.
  const template = (refPath: PathSegment[], allowed: string[]): SourceDocument | undefined => {
    const ref = rec(getPath(classValue, refPath));
    const kind = str(ref.kind);
    if (kind === undefined || str(ref.name) === undefined) {
      classR.report('dangling-ref', refPath, 'a template reference needs a kind and a name', { at: 'key' });
      return undefined;
    }
    if (!allowed.includes(kind)) {
      classR.report('ref-kind', [...refPath, 'kind'], `${kind} cannot be referenced here; expected ${allowed.join(' or ')}`);
      return undefined;
    }
    const t = findTemplate(plan.pool, ref, nsOf(classDoc));
    if (!t) {
      classR.report('dangling-ref', [...refPath, 'name'], `${kind} "${String(ref.name)}" is not defined beside ClusterClass "${className}"`);
      return undefined;
    }
    if (str(ref.apiVersion) !== undefined && groupOf(str(ref.apiVersion) ?? '').group !== groupOf(str(rec(t.value).apiVersion) ?? '').group) {
      classR.report('ref-group', [...refPath, 'apiVersion'], `apiVersion ${String(ref.apiVersion)} does not match the ${kind}'s ${String(rec(t.value).apiVersion)}`);
    }
    if (!isRecord(getPath(t.value, ['spec', 'template']))) {
      reporter(problems, t).report('schema', ['spec', 'template'], 'missing required field `template` (a ClusterClass template holds spec.template)', { at: 'start' });
      return undefined;
    }
    return t;
  };
  const infraT = template(['spec', 'infrastructure', 'ref'], ALLOWED.infrastructure as string[]);
  const cpT = template(['spec', 'controlPlane', 'ref'], ALLOWED.controlPlane as string[]);
  const cpMachineT = getPath(classSpec, ['controlPlane', 'machineInfrastructure']) !== undefined ? template(['spec', 'controlPlane', 'machineInfrastructure', 'ref'], ALLOWED.machineInfrastructure as string[]) : undefined;

  // Variables: definitions, topology values, defaults.
  const definitions = new Map<string, { index: number; check?: Awaited<ReturnType<typeof compileVariableSchema>> }>();
  const defs = list(classSpec.variables);
  for (const [i, d] of defs.entries()) {
    const name = str(rec(d).name);
    if (name === undefined) continue;
    const first = definitions.get(name);
    if (first) {
      const a = classDoc.locate(['spec', 'variables', first.index, 'name']);
      const b = classDoc.locate(['spec', 'variables', i, 'name']);
      classR.report('variable-conflict', ['spec', 'variables', first.index, 'name'], `variable ${name} is defined twice in ClusterClass "${className}" (again at line ${b.line})`);
      classR.report('variable-conflict', ['spec', 'variables', i, 'name'], `variable ${name} is defined twice in ClusterClass "${className}" (first at line ${a.line})`);
      continue;
    }
    const check = await compileVariableSchema(getPath(d, ['schema', 'openAPIV3Schema']) ?? {});
    if ('error' in check) classR.report('invalid-value', ['spec', 'variables', i, 'schema', 'openAPIV3Schema'], `the variable's schema does not compile: ${check.error}`, { at: 'key' });
    definitions.set(name, { index: i, check });
  }
  const given = new Map<string, number>();
  list(topology.variables).forEach((v, i) => {
    const name = str(rec(v).name);
    if (name === undefined) return;
    if (!definitions.has(name)) {
      const guess = closest(name, [...definitions.keys()]);
      clusterR.report('dangling-ref', [...T, 'variables', i, 'name'], `variable ${name} is not defined by ClusterClass "${className}"${guess ? `; did you mean \`${guess}\`?` : ''}`);
    } else if (given.has(name)) clusterR.report('duplicate', [...T, 'variables', i, 'name'], `variable ${name} is set twice in the topology`);
    else given.set(name, i);
  });
  const valueOf = (name: string, raw: unknown, at: PathSegment[]): unknown => {
    const def = definitions.get(name);
    if (!def?.check || 'error' in def.check) return raw;
    const { value, errors } = def.check(raw);
    for (const e of errors) clusterR.report('schema', [...at, ...e.path], `variable ${name}: ${e.message}`);
    return value;
  };
  const globals: Variables = {};
  for (const [name, def] of definitions) {
    const i = given.get(name);
    const raw = i === undefined ? undefined : rec(list(topology.variables)[i]).value;
    const value = valueOf(name, raw, i === undefined ? T : [...T, 'variables', i, 'value']);
    if (value !== undefined) globals[name] = value;
    else if (rec(defs[def.index]).required === true) {
      clusterR.report('schema', [...T, 'variables'], `variable ${name} is required by ClusterClass "${className}" and has no value nor default`, { at: 'key' });
    }
  }

  const cpName = `${clusterName}-control-plane`;
  const cpReplicas = getPath(topology, ['controlPlane', 'replicas']);
  const builtinBase = {
    cluster: { name: clusterName, namespace, topology: { version, class: className } },
    controlPlane: {
      version,
      name: cpName,
      ...(typeof cpReplicas === 'number' ? { replicas: cpReplicas } : {}),
      ...(cpMachineT ? { machineTemplate: { infrastructureRef: { name: cpName } } } : {}),
    },
  };
  const instance = (src: SourceDocument, role: Instance['role'], vars: Variables, label: string): Instance => ({
    src,
    value: structuredClone(rec(src.value)),
    vars,
    origins: [],
    role,
    label,
  });
  const globalVars: Variables = { ...globals, builtin: builtinBase };
  const instances: Instance[] = [];
  const infraI = infraT && instance(infraT, 'infrastructureCluster', globalVars, `Cluster ${clusterName}: infrastructure`);
  const cpI = cpT && instance(cpT, 'controlPlane', globalVars, `Cluster ${clusterName}: control plane`);
  const cpMachineI = cpMachineT && instance(cpMachineT, 'controlPlane', globalVars, `Cluster ${clusterName}: control plane machines`);
  for (const i of [infraI, cpI, cpMachineI]) if (i) instances.push(i);

  // MachineDeployments and MachinePools of the topology.
  const workers: Worker[] = [];
  for (const kind of ['machineDeployments', 'machinePools'] as const) {
    const { one } = WORKER[kind];
    const classList = list(getPath(classSpec, ['workers', kind]));
    const seen = new Set<string>();
    list(getPath(topology, ['workers', kind])).forEach((entry, i) => {
      const at = [...T, 'workers', kind, i];
      const workerClass = str(rec(entry).class) ?? '';
      const name = str(rec(entry).name) ?? '';
      if (seen.has(name)) clusterR.report('duplicate', [...at, 'name'], `${one} ${name} is listed twice in the topology`);
      seen.add(name);
      const ci = classList.findIndex((m) => rec(m).class === workerClass);
      if (ci < 0) {
        const guess = closest(workerClass, classList.map((m) => str(rec(m).class) ?? ''));
        clusterR.report('dangling-ref', [...at, 'class'], `ClusterClass "${className}" has no ${one} class ${workerClass}${guess ? `; did you mean \`${guess}\`?` : ''}`);
        return;
      }
      const vars: Variables = { ...globals };
      list(getPath(entry, ['variables', 'overrides'])).forEach((o, j) => {
        const oname = str(rec(o).name);
        if (oname === undefined) return;
        if (!definitions.has(oname)) {
          clusterR.report('dangling-ref', [...at, 'variables', 'overrides', j, 'name'], `variable ${oname} is not defined by ClusterClass "${className}"`);
          return;
        }
        const v = valueOf(oname, rec(o).value, [...at, 'variables', 'overrides', j, 'value']);
        if (v !== undefined) vars[oname] = v;
      });
      const workerName = `${clusterName}-${name}`;
      const replicas = rec(entry).replicas;
      vars.builtin = {
        ...builtinBase,
        [one]: {
          version,
          class: workerClass,
          name: workerName,
          topologyName: name,
          ...(typeof replicas === 'number' ? { replicas } : {}),
          bootstrap: { configRef: { name: workerName } },
          infrastructureRef: { name: workerName },
        },
      };
      const base = ['spec', 'workers', kind, ci, 'template'];
      const bootT = template([...base, 'bootstrap', 'ref'], ALLOWED.bootstrap as string[]);
      const infT = template([...base, 'infrastructure', 'ref'], (kind === 'machineDeployments' ? ALLOWED.mdInfrastructure : ALLOWED.mpInfrastructure) as string[]);
      const label = `Cluster ${clusterName}: ${one} ${name}`;
      const role = kind === 'machineDeployments' ? { mdClass: workerClass } : { mpClass: workerClass };
      const w: Worker = { kind, i, ci, name, ...(bootT ? { bootstrap: instance(bootT, role, vars, label) } : {}), ...(infT ? { infra: instance(infT, role, vars, label) } : {}) };
      if (w.bootstrap) instances.push(w.bootstrap);
      if (w.infra) instances.push(w.infra);
      workers.push(w);
    });
  }
  if (failed()) return undefined;

  applyPatches(classDoc, classR, instances, globalVars);
  if (failed()) return undefined;

  // The concrete documents.
  const documents: SourceDocument[] = [];
  const where = (d: SourceDocument): string => `${d.file.display}:${d.start.line}`;
  const origin = `expanded for Cluster ${clusterName} (topology at ${where(cluster.src)}) from ClusterClass ${className} (${where(classDoc)})`;
  const labels = (...more: unknown[]): Record<string, string> => Object.assign({}, ...more.map((m) => rec(m)), { [CLUSTER_NAME_LABEL]: clusterName }) as Record<string, string>;
  const ref = (i: Instance, kind: string, name: string): Record<string, unknown> => ({ apiVersion: rec(i.value).apiVersion, kind, name, namespace });
  const fromTemplate = (i: Instance, kind: string, name: string, extra: Origin[], spec?: Record<string, unknown>): SourceDocument => {
    const tmplMeta = rec(getPath(i.value, ['spec', 'template', 'metadata']));
    const isClone = kind === rec(i.value).kind;
    // A concrete object's spec is the template's spec.template.spec; a clone keeps the template's shape.
    const toTemplate = (p: readonly PathSegment[]): PathSegment[] => (isClone || p[0] !== 'spec' ? [...p] : ['spec', 'template', 'spec', ...p.slice(1)]);
    const origins = [
      ...extra,
      ...i.origins.flatMap((o): Origin[] => (isClone ? [o] : startsWith(o.at, ['spec', 'template', 'spec']) ? [{ ...o, at: ['spec', ...o.at.slice(3)] }] : [])),
    ];
    const value = {
      apiVersion: rec(i.value).apiVersion,
      kind,
      metadata: {
        name,
        namespace,
        labels: labels(isClone ? getPath(i.value, ['metadata', 'labels']) : tmplMeta.labels, { [OWNED_LABEL]: '' }),
        ...(isRecord(isClone ? getPath(i.value, ['metadata', 'annotations']) : tmplMeta.annotations) ? { annotations: structuredClone(isClone ? getPath(i.value, ['metadata', 'annotations']) : tmplMeta.annotations) } : {}),
      },
      spec: spec ?? (isClone ? rec(i.value).spec : structuredClone(rec(getPath(i.value, ['spec', 'template', 'spec'])))),
    };
    return i.src.derive(value, locator(origins, (p) => ({ src: i.src, path: toTemplate(p) })), `${origin}: ${String(rec(i.src.value).kind)} ${String(meta(i.src).name)} (${where(i.src)})`);
  };

  let infraRef: Record<string, unknown> | undefined;
  let cpRef: Record<string, unknown> | undefined;
  if (infraI) {
    const kind = String(rec(infraI.value).kind).replace(/Template$/, '');
    infraRef = ref(infraI, kind, clusterName);
    documents.push(fromTemplate(infraI, kind, clusterName, []));
  }
  if (cpI) {
    const kind = String(rec(cpI.value).kind).replace(/Template$/, '');
    cpRef = ref(cpI, kind, cpName);
    const spec = structuredClone(rec(getPath(cpI.value, ['spec', 'template', 'spec'])));
    const extra: Origin[] = [];
    if (version !== '') {
      spec.version = version;
      extra.push({ at: ['spec', 'version'], src: cluster.src, path: [...T, 'version'] });
    }
    if (kind === 'KubeadmControlPlane') {
      if (typeof cpReplicas === 'number') {
        spec.replicas = cpReplicas;
        extra.push({ at: ['spec', 'replicas'], src: cluster.src, path: [...T, 'controlPlane', 'replicas'] });
      }
      const mt = rec(spec.machineTemplate);
      const mtMeta = { labels: labels(getPath(mt, ['metadata', 'labels']), getPath(classSpec, ['controlPlane', 'metadata', 'labels']), getPath(topology, ['controlPlane', 'metadata', 'labels'])) };
      spec.machineTemplate = { ...mt, metadata: { ...rec(mt.metadata), ...mtMeta }, ...(cpMachineI ? { infrastructureRef: ref(cpMachineI, 'AWSMachineTemplate', cpName) } : {}) };
      extra.push({ at: ['spec', 'machineTemplate', 'metadata'], src: cluster.src, path: [...T, 'controlPlane', 'metadata'] });
      extra.push({ at: ['spec', 'machineTemplate', 'infrastructureRef'], src: classDoc, path: ['spec', 'controlPlane', 'machineInfrastructure', 'ref'] });
    }
    documents.push(fromTemplate(cpI, kind, cpName, extra, spec));
  }
  if (cpMachineI) documents.push(fromTemplate(cpMachineI, 'AWSMachineTemplate', cpName, []));

  for (const w of workers) {
    const { kind, label } = WORKER[w.kind];
    const entry = rec(list(getPath(topology, ['workers', w.kind]))[w.i]);
    const classEntry = rec(list(getPath(classSpec, ['workers', w.kind]))[w.ci]);
    const at = [...T, 'workers', w.kind, w.i];
    const name = `${clusterName}-${w.name}`;
    const wLabels = labels(getPath(classEntry, ['template', 'metadata', 'labels']), getPath(entry, ['metadata', 'labels']), { [label]: w.name });
    const annotations = { ...rec(getPath(classEntry, ['template', 'metadata', 'annotations'])), ...rec(getPath(entry, ['metadata', 'annotations'])) };
    // A MachineDeployment's machines are made from templates; a MachinePool names one config and one pool object.
    const concrete = (i: Instance): string => (w.kind === 'machinePools' ? String(rec(i.value).kind).replace(/Template$/, '') : String(rec(i.value).kind));
    const templateSpec: Record<string, unknown> = { clusterName, ...(version !== '' ? { version } : {}) };
    if (w.bootstrap) templateSpec.bootstrap = { configRef: ref(w.bootstrap, concrete(w.bootstrap), name) };
    if (w.infra) templateSpec.infrastructureRef = ref(w.infra, concrete(w.infra), name);
    for (const f of ['failureDomain', 'nodeDrainTimeout', 'nodeVolumeDetachTimeout', 'nodeDeletionTimeout']) {
      const v = entry[f] ?? classEntry[f];
      if (v !== undefined) templateSpec[f] = v;
    }
    const spec: Record<string, unknown> = {
      clusterName,
      ...(typeof entry.replicas === 'number' ? { replicas: entry.replicas } : {}),
      ...(w.kind === 'machineDeployments' ? { selector: { matchLabels: { [CLUSTER_NAME_LABEL]: clusterName, [label]: w.name } } } : {}),
      template: { metadata: { labels: wLabels, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) }, spec: templateSpec },
    };
    for (const f of w.kind === 'machineDeployments' ? ['minReadySeconds', 'strategy'] : ['minReadySeconds', 'failureDomains']) {
      const v = entry[f] ?? classEntry[f];
      if (v !== undefined) spec[f] = structuredClone(v);
    }
    const value = {
      apiVersion: `${CAPI_GROUP}/v1beta1`,
      kind,
      metadata: { name, namespace, labels: { ...wLabels, [OWNED_LABEL]: '' }, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) },
      spec,
    };
    const tmpl = ['spec', 'workers', w.kind, w.ci, 'template'];
    const origins: Origin[] = [
      { at: ['spec', 'template', 'spec', 'version'], src: cluster.src, path: [...T, 'version'] },
      { at: ['spec', 'template', 'spec', 'bootstrap', 'configRef'], src: classDoc, path: [...tmpl, 'bootstrap', 'ref'] },
      { at: ['spec', 'template', 'spec', 'infrastructureRef'], src: classDoc, path: [...tmpl, 'infrastructure', 'ref'] },
      { at: ['spec', 'replicas'], src: cluster.src, path: [...at, 'replicas'] },
    ];
    documents.push(cluster.src.derive(value, locator(origins, () => ({ src: cluster.src, path: at })), `${origin}: ${w.kind}[${w.i}] ${w.name}`));
    if (w.bootstrap) documents.push(fromTemplate(w.bootstrap, concrete(w.bootstrap), name, []));
    if (w.infra) documents.push(fromTemplate(w.infra, concrete(w.infra), name, []));
  }

  // The Cluster: its references to what was expanded, the topology gone (it is the documents now).
  const clusterValue = structuredClone(cluster.value);
  const spec = rec(clusterValue.spec);
  delete spec.topology;
  if (infraRef) spec.infrastructureRef = infraRef;
  if (cpRef) spec.controlPlaneRef = cpRef;
  clusterValue.spec = spec;
  const clusterOrigins: Origin[] = [
    { at: ['spec', 'infrastructureRef'], src: cluster.src, path: [...T, 'class'] },
    { at: ['spec', 'controlPlaneRef'], src: cluster.src, path: [...T, 'class'] },
  ];
  const clusterSrc = cluster.src.derive(clusterValue, locator(clusterOrigins, (p) => ({ src: cluster.src, path: [...p] })), `${where(cluster.src)}, its topology expanded with ClusterClass ${className} (${where(classDoc)})`);
  return { cluster: { ...cluster, src: clusterSrc, value: clusterValue }, documents };
}

/** Applies the class's patches, in order, to every template they select. */
function applyPatches(classDoc: SourceDocument, classR: DocumentReporter, instances: Instance[], globalVars: Variables): void {
  const patches = list(getPath(classDoc.value, ['spec', 'patches']));
  patches.forEach((patch, pi) => {
    const P: PathSegment[] = ['spec', 'patches', pi];
    const pname = str(rec(patch).name) ?? `#${pi}`;
    if (rec(patch).external !== undefined) {
      classR.report('unsupported-feature', [...P, 'external'], `patch ${pname}: external patches (Runtime SDK extensions) are not supported`, { at: 'key', hint: 'write the patch inline as definitions with jsonPatches' });
      return;
    }
    const enabledIf = str(rec(patch).enabledIf);
    if (enabledIf !== undefined) {
      const parsed = parseGoTemplate(enabledIf);
      if ('error' in parsed) {
        classR.report('unsupported-feature', [...P, 'enabledIf'], `patch ${pname}: ${parsed.error}`);
        return;
      }
      const out = renderGoTemplate(parsed.pieces, globalVars);
      if ('error' in out) {
        classR.report('invalid-value', [...P, 'enabledIf'], `patch ${pname}: enabledIf: ${out.error}`);
        return;
      }
      if (out.text.trim() !== 'true') return;
    }
    list(rec(patch).definitions).forEach((def, di) => {
      const D = [...P, 'definitions', di];
      const selector = rec(rec(def).selector);
      const match = rec(selector.matchResources);
      const mdNames = list(getPath(match, ['machineDeploymentClass', 'names']));
      const mpNames = list(getPath(match, ['machinePoolClass', 'names']));
      const selected = instances.filter((i) => {
        const v = rec(i.value);
        if (v.apiVersion !== selector.apiVersion || v.kind !== selector.kind) return false;
        if (i.role === 'infrastructureCluster') return match.infrastructureCluster === true;
        if (i.role === 'controlPlane') return match.controlPlane === true;
        if ('mdClass' in i.role) return mdNames.includes(i.role.mdClass) || mdNames.includes('*');
        return mpNames.includes(i.role.mpClass) || mpNames.includes('*');
      });
      list(rec(def).jsonPatches).forEach((jp, ji) => {
        const J = [...D, 'jsonPatches', ji];
        const op = str(rec(jp).op);
        const pointer = str(rec(jp).path) ?? '';
        if (op !== 'add' && op !== 'replace' && op !== 'remove') {
          classR.report('invalid-value', [...J, 'op'], `patch ${pname}: op must be add, replace or remove`);
          return;
        }
        const valueFrom = rec(rec(jp).valueFrom);
        const variable = str(valueFrom.variable);
        const tmpl = str(valueFrom.template);
        const parsed = tmpl !== undefined ? parseGoTemplate(tmpl) : undefined;
        if (parsed && 'error' in parsed) {
          classR.report('unsupported-feature', [...J, 'valueFrom', 'template'], `patch ${pname}: ${parsed.error}`);
          return;
        }
        for (const i of selected) {
          let value: unknown = rec(jp).value;
          let from: PathSegment[] = [...J, 'value'];
          if (variable !== undefined) {
            value = lookupPath(i.vars, variable.split('.'));
            from = [...J, 'valueFrom', 'variable'];
            if (value === undefined && op !== 'remove') {
              classR.report('invalid-value', from, `patch ${pname}: variable ${variable} has no value (${i.label})`);
              continue;
            }
          } else if (parsed && 'pieces' in parsed) {
            const out = renderGoTemplate(parsed.pieces, i.vars);
            from = [...J, 'valueFrom', 'template'];
            if ('error' in out) {
              classR.report('invalid-value', from, `patch ${pname}: template: ${out.error} (${i.label})`);
              continue;
            }
            value = templateValue(out.text);
          }
          const result = applyJsonPatch(i.value, op, pointer, value);
          if ('error' in result) {
            classR.report('patch-path', [...J, 'path'], `patch ${pname}: ${result.error} ${String(rec(i.value).kind)} "${String(meta(i.src).name)}" (${i.label})`);
            continue;
          }
          i.origins = i.origins.filter((o) => !startsWith(o.at, result.path));
          if (op !== 'remove') i.origins.push({ at: result.path, src: classDoc, path: from });
        }
      });
    });
  });
}
