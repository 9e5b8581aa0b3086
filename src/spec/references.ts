/**
 * Cross-document checks: exactly one Cluster, unique kind/name, references
 * (kind, API group, existence), clusterName agreement, provider detection,
 * ClusterResourceSet resources and selectors, the BYOH host inventory (host
 * keys, packages, the API server address, enough hosts for each machine group)
 * and AddonChart ordering. Then the typed model is assembled.
 */
import { isIP } from 'node:net';
import { closest, hasErrors, type SpecProblem } from './problems.js';
import { formatPath, getPath, isRecord } from './paths.js';
import { groupOf, kindInfo } from './kinds.js';
import { DocumentReporter, type CheckedDocument } from './validate.js';
import type { PathSegment } from './yaml-source.js';
import { rememberSource } from './locations.js';
import { pauseOf } from './pause.js';
import type {
  AddonChart,
  BootstrapConfig,
  BootstrapTemplate,
  ByoHostInventory,
  Cluster,
  ClusterModel,
  ConfigMap,
  ControlPlane,
  InfrastructureCluster,
  LabelSelector,
  MachineDeployment,
  MachineDeploymentModel,
  MachineHealthCheck,
  MachinePool,
  MachinePoolModel,
  MachineTemplate,
  Provider,
  ResourceSetModel,
  ClusterResourceSet,
  Secret,
  AWSMachinePool,
  AWSManagedMachinePool,
  SpecDocument,
} from './model.js';
import { STAGE_ANNOTATION } from './model.js';

const PROVIDERS: ReadonlyArray<{ provider: Provider; infrastructure: string; controlPlane: string }> = [
  { provider: 'aws', infrastructure: 'AWSCluster', controlPlane: 'KubeadmControlPlane' },
  { provider: 'eks', infrastructure: 'AWSManagedCluster', controlPlane: 'AWSManagedControlPlane' },
  { provider: 'byoh', infrastructure: 'ByoCluster', controlPlane: 'KubeadmControlPlane' },
];

/** Which kinds each reference may name, by provider. */
const MACHINE_TEMPLATE: Record<Provider, string[]> = { aws: ['AWSMachineTemplate'], eks: ['AWSMachineTemplate'], byoh: ['ByoMachineTemplate'] };
const BOOTSTRAP_TEMPLATE: Record<Provider, string[]> = { aws: ['KubeadmConfigTemplate'], eks: ['EKSConfigTemplate'], byoh: ['KubeadmConfigTemplate'] };
const POOL_INFRA: Record<Provider, string[]> = { aws: ['AWSMachinePool'], eks: ['AWSManagedMachinePool', 'AWSMachinePool'], byoh: [] };
const POOL_BOOTSTRAP: Record<Provider, string[]> = { aws: ['KubeadmConfig'], eks: ['EKSConfig'], byoh: [] };

function key(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

function where(doc: CheckedDocument): string {
  const pos = doc.src.locate(['metadata', 'name']);
  return `${pos.file.display}:${pos.line}:${pos.column}`;
}

/** Does the selector select these labels? An empty selector selects nothing (ClusterResourceSet semantics). */
export function selects(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false;
  const ml = Object.entries(selector.matchLabels ?? {});
  const me = selector.matchExpressions ?? [];
  if (ml.length === 0 && me.length === 0) return false;
  if (!ml.every(([k, v]) => labels[k] === v)) return false;
  return me.every((e) => {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    const v = labels[e.key];
    switch (e.operator) {
      case 'In':
        return has && (e.values ?? []).includes(v as string);
      case 'NotIn':
        return !has || !(e.values ?? []).includes(v as string);
      case 'Exists':
        return has;
      case 'DoesNotExist':
        return !has;
      default:
        return false;
    }
  });
}

/**
 * Kubernetes LabelSelector semantics (metav1.LabelSelectorAsSelector): an absent selector selects
 * nothing, an empty one (`{}`) everything; matchLabels and matchExpressions are ANDed.
 */
export function labelSelectorMatches(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false;
  if (Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0) return true;
  return selects(selector, labels);
}

export interface ResolveResult {
  model?: ClusterModel;
}

/** A document whose kind/version could not be judged (already reported): references to it are not reported again. */
export interface RejectedDocument {
  kind: string;
  name: string;
  namespace: string;
}

export function resolveSpec(
  docs: CheckedDocument[],
  problems: SpecProblem[],
  folder: { abs: string; display: string },
  rejected: readonly RejectedDocument[] = [],
  options: { incomplete?: boolean } = {},
): ResolveResult {
  const incomplete = options.incomplete === true;
  const rejectedKeys = new Set(rejected.map((d) => key(d.kind, d.namespace, d.name)));
  const reporters = new Map<CheckedDocument, DocumentReporter>();
  const rep = (d: CheckedDocument): DocumentReporter => {
    let r = reporters.get(d);
    if (!r) {
      r = new DocumentReporter(problems, d.src);
      r.kind = d.kind;
      if (d.name !== '') r.name = d.name;
      reporters.set(d, r);
    }
    return r;
  };

  // Unique kind/namespace/name.
  const index = new Map<string, CheckedDocument>();
  const unique: CheckedDocument[] = [];
  for (const d of docs) {
    if (d.name === '') continue;
    const k = key(d.kind, d.namespace, d.name);
    const first = index.get(k);
    if (first) {
      rep(d).report('duplicate', ['metadata', 'name'], `duplicate ${d.kind} "${d.name}": already defined at ${where(first)}`);
      continue;
    }
    index.set(k, d);
    unique.push(d);
  }
  const ofKind = (kind: string): CheckedDocument[] => unique.filter((d) => d.kind === kind);
  const referenced = new Set<CheckedDocument>();
  const reportedMissing = new Set<string>();

  const resolveRef = (
    d: CheckedDocument,
    path: PathSegment[],
    expected: string[],
    options: { required?: boolean; requiredHint?: string } = {},
  ): CheckedDocument | undefined => {
    const ref = getPath(d.value, path);
    if (ref === undefined) {
      // Reported at the first field missing on the way (`spec.template.spec` when that is empty),
      // once per field. A document with problems of its own is not reported again: a misspelt
      // ancestor (`spce`, `templte`) is reported once, as an unknown field, not as every
      // reference below it.
      if (!options.required) return undefined;
      const at = path.findIndex((_, i) => getPath(d.value, path.slice(0, i + 1)) === undefined);
      // Below a value of the wrong type (reported by the schema) nothing is missing.
      if (!isRecord(getPath(d.value, path.slice(0, at)))) return undefined;
      const missing = path.slice(0, at + 1);
      const key = `${formatPath(missing)}\u0000${d.src.file.display}\u0000${d.src.index}`;
      if ((at === path.length - 1 || d.valid) && !reportedMissing.has(key)) {
        reportedMissing.add(key);
        rep(d).report('dangling-ref', missing, `missing required field \`${String(missing[missing.length - 1])}\``, { at: 'start', ...(options.requiredHint ? { hint: options.requiredHint } : {}) });
      }
      return undefined;
    }
    if (!isRecord(ref)) return undefined;
    if (typeof ref.kind !== 'string' || typeof ref.name !== 'string') {
      // A kind or name of the wrong type is the schema's to report.
      const missing = ref.kind === undefined ? 'kind' : ref.name === undefined ? 'name' : undefined;
      if (missing) rep(d).report('dangling-ref', path, `a reference needs a kind and a name; \`${missing}\` is missing`, { at: 'key' });
      return undefined;
    }
    const kind = ref.kind;
    if (!expected.includes(kind)) {
      rep(d).report('ref-kind', [...path, 'kind'], `${kind} cannot be referenced here; expected ${expected.length === 1 ? expected[0] : `one of ${expected.join(', ')}`}`);
      return undefined;
    }
    const info = kindInfo(kind);
    if (typeof ref.apiVersion === 'string' && info) {
      const { group } = groupOf(ref.apiVersion);
      if (group !== info.group) {
        rep(d).report('ref-group', [...path, 'apiVersion'], `apiVersion ${ref.apiVersion} does not match kind ${kind} (API group ${info.group})`);
      }
    }
    // Cluster API v1beta2 references name the group alone.
    if (typeof ref.apiGroup === 'string' && info && ref.apiGroup !== info.group) {
      rep(d).report('ref-group', [...path, 'apiGroup'], `apiGroup ${ref.apiGroup} does not match kind ${kind} (API group ${info.group})`);
    }
    const namespace = typeof ref.namespace === 'string' && ref.namespace !== '' ? ref.namespace : d.namespace;
    const target = index.get(key(kind, namespace, ref.name));
    if (!target && (incomplete || rejectedKeys.has(key(kind, namespace, ref.name)))) return undefined;
    if (!target) {
      const guess = closest(ref.name, ofKind(kind).filter((t) => t.namespace === namespace).map((t) => t.name));
      rep(d).report('dangling-ref', [...path, 'name'], `${kind} "${ref.name}" is not defined in this folder${namespace !== 'default' ? ` (namespace ${namespace})` : ''}${guess ? `; did you mean \`${guess}\`?` : ''}`);
      return undefined;
    }
    referenced.add(target);
    return target;
  };

  // Exactly one Cluster.
  const clusters = ofKind('Cluster');
  // A Cluster without a usable name is reported at its metadata, not again as missing.
  if (clusters.length === 0 && !incomplete && !rejected.some((d) => d.kind === 'Cluster') && !docs.some((d) => d.kind === 'Cluster')) {
    problems.push({
      severity: 'error',
      code: 'cluster-count',
      file: folder.display,
      message: 'no Cluster found: a cluster folder holds exactly one Cluster (cluster.x-k8s.io/v1beta1)',
    });
  }
  for (const extra of clusters.slice(1)) {
    rep(extra).report('cluster-count', ['kind'], `a cluster folder holds exactly one Cluster; Cluster "${clusters[0]?.name}" is defined at ${where(clusters[0] as CheckedDocument)}`);
  }
  const clusterDoc = clusters[0];
  const clusterName = clusterDoc?.name;

  // Cluster → infrastructure and control plane; provider.
  let provider: Provider | undefined;
  let infraDoc: CheckedDocument | undefined;
  let cpDoc: CheckedDocument | undefined;
  if (clusterDoc) {
    const infraRefKind = getPath(clusterDoc.value, ['spec', 'infrastructureRef', 'kind']);
    if (infraRefKind === 'AWSManagedControlPlane') {
      rep(clusterDoc).report('unsupported-feature', ['spec', 'infrastructureRef', 'kind'], 'AWSManagedControlPlane as the infrastructureRef (the older EKS form) is not supported', {
        hint: 'add an AWSManagedCluster and reference it as infrastructureRef; keep AWSManagedControlPlane as controlPlaneRef',
      });
    } else {
      infraDoc = resolveRef(clusterDoc, ['spec', 'infrastructureRef'], ['AWSCluster', 'AWSManagedCluster', 'ByoCluster'], {
        // a topology that could not be expanded says why where it failed
        required: getPath(clusterDoc.value, ['spec', 'topology']) === undefined,
        requiredHint: 'capflow needs the Cluster to name its infrastructure (AWSCluster, AWSManagedCluster or ByoCluster)',
      });
    }
    cpDoc = resolveRef(clusterDoc, ['spec', 'controlPlaneRef'], ['KubeadmControlPlane', 'AWSManagedControlPlane'], {
      required: getPath(clusterDoc.value, ['spec', 'topology']) === undefined,
      requiredHint: 'capflow needs the Cluster to name its control plane (KubeadmControlPlane or AWSManagedControlPlane)',
    });
    if (infraDoc && cpDoc) {
      provider = PROVIDERS.find((p) => p.infrastructure === infraDoc?.kind && p.controlPlane === cpDoc?.kind)?.provider;
      if (!provider) {
        rep(clusterDoc).report('unsupported-feature', ['spec', 'controlPlaneRef', 'kind'], `${infraDoc.kind} with a ${cpDoc.kind} is not a supported combination`, {
          hint: PROVIDERS.map((p) => `${p.infrastructure} + ${p.controlPlane} (${p.provider})`).join(', '),
        });
      }
    }
  }
  const anyProvider = (table: Record<Provider, string[]>): string[] => (provider ? table[provider] : [...new Set(Object.values(table).flat())]);

  const checkClusterName = (d: CheckedDocument, path: PathSegment[]): void => {
    const v = getPath(d.value, path);
    if (typeof v !== 'string' || clusterName === undefined || v === clusterName) return;
    rep(d).report('cluster-name', path, `must be the Cluster's name "${clusterName}" (got "${v}")`);
  };

  // Control plane machine template.
  let cpTemplateDoc: CheckedDocument | undefined;
  // v1beta2 (Cluster API v1.11) moved it to spec.machineTemplate.spec.infrastructureRef.
  const kcpTemplateRef = (kcp: CheckedDocument): PathSegment[] =>
    kcp.version === 'v1beta2' ? ['spec', 'machineTemplate', 'spec', 'infrastructureRef'] : ['spec', 'machineTemplate', 'infrastructureRef'];
  if (cpDoc?.kind === 'KubeadmControlPlane') {
    cpTemplateDoc = resolveRef(cpDoc, kcpTemplateRef(cpDoc), anyProvider(MACHINE_TEMPLATE));
  }
  for (const kcp of ofKind('KubeadmControlPlane').filter((d) => d !== cpDoc)) {
    resolveRef(kcp, kcpTemplateRef(kcp), anyProvider(MACHINE_TEMPLATE));
  }

  // MachineDeployments.
  const mdModels: Array<{ md: CheckedDocument; template?: CheckedDocument; bootstrap?: CheckedDocument }> = [];
  for (const md of ofKind('MachineDeployment')) {
    checkClusterName(md, ['spec', 'clusterName']);
    checkClusterName(md, ['spec', 'template', 'spec', 'clusterName']);
    const template = resolveRef(md, ['spec', 'template', 'spec', 'infrastructureRef'], anyProvider(MACHINE_TEMPLATE), {
      required: true,
      requiredHint: 'a MachineDeployment names its machine template in spec.template.spec.infrastructureRef',
    });
    const bootstrap = resolveRef(md, ['spec', 'template', 'spec', 'bootstrap', 'configRef'], anyProvider(BOOTSTRAP_TEMPLATE));
    checkBootstrapPresent(md, rep(md));
    mdModels.push({ md, ...(template ? { template } : {}), ...(bootstrap ? { bootstrap } : {}) });
  }

  // MachinePools.
  const mpModels: Array<{ mp: CheckedDocument; infra?: CheckedDocument; bootstrap?: CheckedDocument }> = [];
  for (const mp of ofKind('MachinePool')) {
    if (provider === 'byoh') {
      rep(mp).report('unsupported-feature', ['kind'], 'MachinePools are not supported for BYOH clusters', { hint: 'use a MachineDeployment with a ByoMachineTemplate' });
      continue;
    }
    checkClusterName(mp, ['spec', 'clusterName']);
    checkClusterName(mp, ['spec', 'template', 'spec', 'clusterName']);
    const infra = resolveRef(mp, ['spec', 'template', 'spec', 'infrastructureRef'], anyProvider(POOL_INFRA), {
      required: true,
      requiredHint: 'a MachinePool names its AWSMachinePool or AWSManagedMachinePool in spec.template.spec.infrastructureRef',
    });
    const bootstrap = resolveRef(mp, ['spec', 'template', 'spec', 'bootstrap', 'configRef'], anyProvider(POOL_BOOTSTRAP));
    if (infra?.kind !== 'AWSManagedMachinePool') checkBootstrapPresent(mp, rep(mp));
    mpModels.push({ mp, ...(infra ? { infra } : {}), ...(bootstrap ? { bootstrap } : {}) });
  }

  // MachineHealthChecks.
  for (const mhc of ofKind('MachineHealthCheck')) checkClusterName(mhc, ['spec', 'clusterName']);

  // ClusterResourceSets.
  const clusterLabels = (clusterDoc ? (getPath(clusterDoc.value, ['metadata', 'labels']) as Record<string, string> | undefined) : undefined) ?? {};
  const crsModels: Array<{ crs: CheckedDocument; resources: CheckedDocument[]; selects: boolean }> = [];
  for (const crs of ofKind('ClusterResourceSet')) {
    const resources: CheckedDocument[] = [];
    const list = getPath(crs.value, ['spec', 'resources']);
    if (Array.isArray(list)) {
      list.forEach((_, i) => {
        const target = resolveRef(crs, ['spec', 'resources', i], ['ConfigMap', 'Secret']);
        if (target) resources.push(target);
      });
    }
    const selector = getPath(crs.value, ['spec', 'clusterSelector']) as LabelSelector | undefined;
    const ok = selects(selector, clusterLabels);
    if (!ok && clusterDoc) {
      rep(crs).report('unused', ['spec', 'clusterSelector'], `does not select Cluster "${clusterName}" (its labels: ${JSON.stringify(clusterLabels)}), so its resources would not be applied`, {
        severity: 'warning',
        hint: 'add matching labels to the Cluster, or fix the selector',
      });
    }
    const stage = getPath(crs.value, ['metadata', 'annotations', STAGE_ANNOTATION]);
    if (stage !== undefined && stage !== 'ControlPlane' && stage !== 'Workers') {
      rep(crs).report('invalid-value', ['metadata', 'annotations', STAGE_ANNOTATION], `must be ControlPlane or Workers, not ${JSON.stringify(stage)}`, {
        hint: 'ControlPlane applies the set right after the API server answers (a CNI), Workers (the default) once the Nodes are Ready',
      });
    }
    crsModels.push({ crs, resources, selects: ok });
  }

  // BYOH host inventory.
  const inventories = ofKind('ByoHostInventory');
  for (const extra of inventories.slice(1)) {
    rep(extra).report('duplicate', ['kind'], `a cluster folder holds at most one ByoHostInventory; one is defined at ${where(inventories[0] as CheckedDocument)}`);
  }
  const inventoryDoc = inventories[0];
  if (inventoryDoc) {
    referenced.add(inventoryDoc);
    checkInventory(inventoryDoc, rep(inventoryDoc));
    if (provider !== undefined && provider !== 'byoh') {
      rep(inventoryDoc).report('unused', ['kind'], `a ByoHostInventory is only used by BYOH clusters (this is an ${provider} cluster)`, { severity: 'warning' });
    }
  } else if (provider === 'byoh' && clusterDoc) {
    rep(clusterDoc).report('dangling-ref', ['spec', 'infrastructureRef'], 'a BYOH cluster needs a capflow.io/v1alpha1 ByoHostInventory listing its hosts (name, address, user, hostKey)', { at: 'key' });
  }
  if (provider === 'byoh' && infraDoc?.kind === 'ByoCluster') {
    checkControlPlaneEndpoint(infraDoc, rep(infraDoc), inventoryDoc);
    if (inventoryDoc) {
      const groups: Array<{ doc: CheckedDocument; template: CheckedDocument | undefined }> = [
        ...(cpDoc?.kind === 'KubeadmControlPlane' ? [{ doc: cpDoc, template: cpTemplateDoc }] : []),
        ...mdModels.map((m) => ({ doc: m.md, template: m.template })),
      ];
      for (const g of groups) {
        if (g.template?.kind === 'ByoMachineTemplate') checkHostSupply(g.doc, rep(g.doc), g.template, inventoryDoc);
      }
    }
  }

  // AddonCharts: dependencies exist, no cycles, install order.
  const addons = ofKind('AddonChart');
  for (const a of addons) {
    referenced.add(a);
    checkAddonSource(a, rep(a));
  }
  const addonOrder = orderAddons(addons, rep);

  // Unreferenced documents (only meaningful once the Cluster and its references resolved).
  for (const d of clusterDoc && infraDoc && cpDoc ? unique : []) {
    if (d === clusterDoc || referenced.has(d)) continue;
    if (['MachineDeployment', 'MachinePool', 'MachineHealthCheck', 'ClusterResourceSet', 'Cluster'].includes(d.kind)) continue;
    rep(d).report('unused', ['metadata', 'name'], `${d.kind} "${d.name}" is not referenced by anything in this folder`, { severity: 'warning' });
  }

  // Any error, found here or by the per-document checks before, leaves no model: the assembly
  // below trusts every reference to have resolved and every document to have its schema's shape.
  if (hasErrors(problems)) return {};
  if (!clusterDoc || !infraDoc || !cpDoc || !provider || mdModels.some((m) => !m.template) || mpModels.some((m) => !m.infra)) {
    // Every way here reports an error above; should one not, the folder is still refused with a line.
    problems.push({ severity: 'error', code: 'dangling-ref', file: clusterDoc?.src.file.display ?? folder.display, ...(clusterDoc ? clusterDoc.src.start : {}), message: 'the cluster cannot be assembled from this folder: a reference did not resolve' });
    return {};
  }

  // Assemble the model (every reference resolved, no errors so far).
  const obj = <T>(d: CheckedDocument): T => d.value as unknown as T;
  const byName = <T>(kinds: string[]): Record<string, T> =>
    Object.fromEntries(unique.filter((d) => kinds.includes(d.kind)).map((d) => [d.name, obj<T>(d)]));
  const documents: SpecDocument[] = docs.map((d) => {
    const pos = d.src.start;
    const document: SpecDocument = {
      apiVersion: d.apiVersion,
      kind: d.kind,
      name: d.name,
      namespace: d.namespace,
      object: d.value,
      source: { file: d.src.file.display, absPath: d.src.file.absPath, index: d.src.index, line: pos.line, column: pos.column, ...(d.src.origin !== undefined ? { origin: d.src.origin } : {}) },
    };
    rememberSource(document, d.src);
    return document;
  });
  // An AWSCluster, AWSManagedControlPlane or ByoCluster may leave out its spec (nothing in it is
  // required): the model reads it as empty. The documents, and so the spec hash, keep what was written.
  const withSpec = <T>(d: CheckedDocument): T => (d.value.spec === undefined ? { ...d.value, spec: {} } : d.value) as unknown as T;
  const controlPlane = withSpec<ControlPlane>(cpDoc);
  const machineDeployments: MachineDeploymentModel[] = mdModels.map(({ md, template, bootstrap }) => ({
    deployment: obj<MachineDeployment>(md),
    machineTemplate: obj<MachineTemplate>(template as CheckedDocument),
    ...(bootstrap ? { bootstrapTemplate: obj<BootstrapTemplate>(bootstrap) } : {}),
  }));
  const machinePools: MachinePoolModel[] = mpModels.map(({ mp, infra, bootstrap }) => ({
    pool: obj<MachinePool>(mp),
    infrastructure: obj<AWSMachinePool | AWSManagedMachinePool>(infra as CheckedDocument),
    ...(bootstrap ? { bootstrapConfig: obj<BootstrapConfig>(bootstrap) } : {}),
  }));
  const resourceSets: ResourceSetModel[] = crsModels.map(({ crs, resources, selects: s }) => ({
    resourceSet: obj<ClusterResourceSet>(crs),
    resources: resources.map((r) => obj<ConfigMap | Secret>(r)),
    selectsCluster: s,
  }));
  const addonCharts = addonOrder.map((d) => {
    const a = obj<AddonChart>(d);
    if (a.spec.releaseName === undefined) a.spec.releaseName = a.metadata.name;
    return a;
  });
  const version = getPath(cpDoc.value, ['spec', 'version']);
  const kubernetesVersion = typeof version === 'string' ? version : '';
  const model: ClusterModel = {
    name: clusterDoc.name,
    namespace: clusterDoc.namespace,
    provider,
    dir: folder.abs,
    cluster: obj<Cluster>(clusterDoc),
    infrastructure: withSpec<InfrastructureCluster>(infraDoc),
    controlPlane,
    ...(cpTemplateDoc ? { controlPlaneMachineTemplate: obj<MachineTemplate>(cpTemplateDoc) } : {}),
    machineDeployments,
    machinePools,
    machineTemplates: byName<MachineTemplate>(['AWSMachineTemplate', 'ByoMachineTemplate']),
    bootstrapTemplates: byName<BootstrapTemplate>(['KubeadmConfigTemplate', 'EKSConfigTemplate']),
    bootstrapConfigs: byName<BootstrapConfig>(['KubeadmConfig', 'EKSConfig']),
    healthChecks: ofKind('MachineHealthCheck').map((d) => obj<MachineHealthCheck>(d)),
    resourceSets,
    ...(inventoryDoc ? { hostInventory: obj<ByoHostInventory>(inventoryDoc) } : {}),
    addons: addonCharts,
    documents,
    kubernetesVersion,
  };
  const paused = pauseOf(model);
  if (paused) model.paused = paused;
  return { model };
}

function checkBootstrapPresent(d: CheckedDocument, r: DocumentReporter): void {
  const bootstrap = getPath(d.value, ['spec', 'template', 'spec', 'bootstrap']);
  if (!isRecord(bootstrap)) return;
  if (bootstrap.configRef === undefined && bootstrap.dataSecretName === undefined) {
    r.report('dangling-ref', ['spec', 'template', 'spec', 'bootstrap'], 'needs a configRef (or a dataSecretName)');
  }
}

const KEY_TYPES = new Set(['ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com']);

/** Checks an OpenSSH public key line: known type, base64 blob whose embedded type matches (and for ed25519, a 32-byte key). */
export function checkHostKey(line: string): string | undefined {
  const [type, blob] = line.trim().split(/\s+/);
  if (type === undefined || !KEY_TYPES.has(type)) return `unsupported key type ${JSON.stringify(type)}; expected one of ${[...KEY_TYPES].join(', ')}`;
  if (blob === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || blob.length % 4 !== 0) return 'the key is not valid base64';
  const bytes = Buffer.from(blob, 'base64');
  if (bytes.length < 4) return 'the key blob is too short';
  const n = bytes.readUInt32BE(0);
  if (4 + n > bytes.length) return 'the key blob is truncated';
  const embedded = bytes.subarray(4, 4 + n).toString('latin1');
  if (embedded !== type) return `the key blob is a ${embedded || 'malformed'} key, not ${type}`;
  if (type === 'ssh-ed25519') {
    if (bytes.length < 8 + n) return 'the ed25519 key is truncated';
    const len = bytes.readUInt32BE(4 + n);
    if (len !== 32 || bytes.length !== 8 + n + 32) return 'an ed25519 key must hold exactly 32 bytes';
  }
  return undefined;
}

/** A SHA256 host key fingerprint as `ssh-keygen -lf` prints it. */
export const HOST_KEY_FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** Checks a `SHA256:` fingerprint: 43 unpadded base64 characters that decode to the 32 bytes of a SHA-256. */
export function checkHostKeyFingerprint(value: string): string | undefined {
  const b64 = value.startsWith('SHA256:') ? value.slice('SHA256:'.length) : undefined;
  if (b64 === undefined) return 'a fingerprint starts with SHA256:';
  if (b64.endsWith('=')) return 'the base64 after SHA256: is written without = padding (as ssh-keygen -lf prints it)';
  if (!/^[A-Za-z0-9+/]*$/.test(b64)) return 'the part after SHA256: is not base64';
  if (b64.length !== 43) return `SHA256: is followed by 43 base64 characters, not ${b64.length}`;
  // The last character carries 2 bits of padding, which must be zero.
  if (Buffer.from(b64, 'base64').toString('base64').replace(/=+$/, '') !== b64) return 'the base64 after SHA256: does not encode 32 bytes';
  return undefined;
}

/** Checks a pinned host key in either form capflow takes: an OpenSSH public key line or a SHA256 fingerprint. */
export function checkPinnedHostKey(value: string): string | undefined {
  if (value.trim().startsWith('SHA256:')) {
    const problem = checkHostKeyFingerprint(value.trim());
    return problem ? `not a SHA256 host key fingerprint: ${problem}` : undefined;
  }
  const problem = checkHostKey(value);
  return problem ? `not a well-formed OpenSSH public key: ${problem}` : undefined;
}

const HOST_KEY_HINT = 'copy the line from the host: cat /etc/ssh/ssh_host_ed25519_key.pub (or its fingerprint: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)';

function checkInventory(d: CheckedDocument, r: DocumentReporter): void {
  const hosts = getPath(d.value, ['spec', 'hosts']);
  if (Array.isArray(hosts)) {
    const names = new Map<string, number>();
    const endpoints = new Map<string, number>();
    hosts.forEach((h, i) => {
      if (!isRecord(h)) return;
      if (typeof h.name === 'string') {
        const first = names.get(h.name);
        if (first !== undefined) r.report('duplicate', ['spec', 'hosts', i, 'name'], `duplicate host name "${h.name}" (also spec.hosts[${first}])`);
        else names.set(h.name, i);
      }
      const port = typeof h.port === 'number' ? h.port : 22;
      if (typeof h.address === 'string') {
        const ep = `${h.address}:${port}`;
        const first = endpoints.get(ep);
        if (first !== undefined) r.report('duplicate', ['spec', 'hosts', i, 'address'], `duplicate host address ${ep} (also spec.hosts[${first}])`);
        else endpoints.set(ep, i);
      }
      if (typeof h.hostKey === 'string') {
        const problem = checkPinnedHostKey(h.hostKey);
        if (problem) r.report('invalid-value', ['spec', 'hosts', i, 'hostKey'], problem, { hint: HOST_KEY_HINT });
      } else if (h.hostKey === undefined && h.trustOnFirstUse !== true) {
        const label = typeof h.name === 'string' ? `host "${h.name}"` : `spec.hosts[${i}]`;
        const address = typeof h.address === 'string' ? h.address : '<address>';
        const keyscan = `ssh-keyscan ${port !== 22 ? `-p ${port} ` : ''}-t ed25519 ${address}`;
        r.report(
          'dangling-ref',
          ['spec', 'hosts', i],
          `${label} has no hostKey: pin its SSH host key, from \`${keyscan}\` (checked out of band) or on the host \`cat /etc/ssh/ssh_host_ed25519_key.pub\``,
          { hint: 'or set trustOnFirstUse: true to accept the key seen on first connection (capflow then reports it as a suggested change to this file)' },
        );
      }
    });
  }

  const jumpKey = getPath(d.value, ['spec', 'jumpHost', 'hostKey']);
  if (typeof jumpKey === 'string') {
    const problem = checkPinnedHostKey(jumpKey);
    if (problem) r.report('invalid-value', ['spec', 'jumpHost', 'hostKey'], problem, { hint: `on the jump host: ${HOST_KEY_HINT}` });
  }

  const packages = getPath(d.value, ['spec', 'packages']);
  if (isRecord(packages)) {
    const { repository, bundlePath } = packages;
    if (repository !== undefined && bundlePath !== undefined) {
      r.report('invalid-value', ['spec', 'packages', 'bundlePath'], 'at most one of repository and bundlePath may be given: packages come from a repository, or from an offline bundle on each host', { at: 'key' });
    }
    if (typeof bundlePath === 'string' && !bundlePath.startsWith('/')) {
      r.report('invalid-value', ['spec', 'packages', 'bundlePath'], `"${bundlePath}" is not an absolute path; bundlePath is a directory on each host, such as /opt/capflow/bundle`);
    }
    if (typeof repository === 'string' && !isHttpUrl(repository)) {
      r.report('invalid-value', ['spec', 'packages', 'repository'], `"${repository}" is not an http:// or https:// URL`, { hint: 'e.g. https://pkgs.k8s.io/core:/stable:/v1.31, or a mirror of it' });
    }
  }
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** ByoCluster.spec.controlPlaneEndpoint: always set; with kube-vip (the default) an IP address it can hold. */
function checkControlPlaneEndpoint(byoCluster: CheckedDocument, r: DocumentReporter, inventoryDoc: CheckedDocument | undefined): void {
  const lbType = (inventoryDoc ? getPath(inventoryDoc.value, ['spec', 'apiServerLoadBalancer', 'type']) : undefined) ?? 'kube-vip';
  const endpoint = getPath(byoCluster.value, ['spec', 'controlPlaneEndpoint']);
  const host = isRecord(endpoint) ? endpoint.host : undefined;
  if (!isRecord(endpoint) || host === undefined || host === '') {
    if (endpoint !== undefined && !isRecord(endpoint)) return; // the schema's to report
    const served = lbType === 'kube-vip' ? 'kube-vip holds on the control plane hosts' : 'the external load balancer serves';
    r.report('dangling-ref', ['spec', 'controlPlaneEndpoint'], `a BYOH cluster needs spec.controlPlaneEndpoint (host and port): the API server's address, which ${served}`, {
      at: 'key',
      hint: 'e.g. controlPlaneEndpoint: {host: 10.0.10.100, port: 6443}, a free address on the control plane hosts\' network',
    });
    return;
  }
  if (lbType === 'kube-vip' && typeof host === 'string' && isIP(host) === 0) {
    r.report('invalid-value', ['spec', 'controlPlaneEndpoint', 'host'], `"${host}" is a name, but kube-vip (the ByoHostInventory's apiServerLoadBalancer) holds an IP address on the control plane hosts`, {
      hint: 'give an IPv4 or IPv6 address, or set the ByoHostInventory\'s spec.apiServerLoadBalancer.type to external when a load balancer you run serves this name',
    });
  }
}

/** A machine group (a KubeadmControlPlane or MachineDeployment) needs `replicas` inventory hosts its ByoMachineTemplate selects. */
function checkHostSupply(group: CheckedDocument, r: DocumentReporter, template: CheckedDocument, inventoryDoc: CheckedDocument): void {
  const hosts = getPath(inventoryDoc.value, ['spec', 'hosts']);
  if (!Array.isArray(hosts)) return;
  const replicasValue = getPath(group.value, ['spec', 'replicas']);
  // Cluster API defaults replicas to 1.
  const replicas = replicasValue === undefined ? 1 : replicasValue;
  if (typeof replicas !== 'number' || replicas <= 0) return;
  const selector = getPath(template.value, ['spec', 'template', 'spec', 'selector']) as LabelSelector | undefined;
  if (selector !== undefined && !isRecord(selector)) return;
  const matching = hosts
    .filter(isRecord)
    .filter((h) => labelSelectorMatches(selector, isRecord(h.labels) ? (h.labels as Record<string, string>) : {}))
    .map((h) => (typeof h.name === 'string' ? h.name : '?'));
  if (matching.length >= replicas) return;
  const of = matching.length === 0 ? 'none of the inventory' : `${matching.length} of the inventory: ${matching.join(', ')}`;
  const selectorText = selector === undefined ? ' (it has no selector, which selects no host)' : '';
  r.report(
    'invalid-value',
    ['spec', 'replicas'],
    `${group.kind}/${group.name} wants ${replicas} host${replicas === 1 ? '' : 's'}; ${template.kind}/${template.name}'s selector matches ${of}${selectorText}`,
    { hint: `add hosts labelled to match spec.template.spec.selector of ${template.kind}/${template.name} to the ByoHostInventory (${where(inventoryDoc)}), or lower replicas` },
  );
}

/**
 * What the AddonChart CRD says with CEL rules (which the local validator cannot evaluate): exactly one
 * source (repo, with chart and version; or path), and paths that stay inside their root: `path`
 * relative to the repository root, `valuesFiles` relative to the cluster folder, no `..` segments.
 */
function checkAddonSource(d: CheckedDocument, r: DocumentReporter): void {
  const spec = getPath(d.value, ['spec']);
  if (!isRecord(spec)) return;
  const has = (k: string): boolean => spec[k] !== undefined;
  if (has('repo') && has('path')) {
    r.report('invalid-value', ['spec', 'path'], 'exactly one of repo and path must be given: a chart comes from a repository or from a folder of the Git repository', { at: 'key' });
  } else if (!has('repo') && !has('path')) {
    r.report('dangling-ref', ['spec'], 'a chart needs a source: repo (with chart and version) or path (a chart folder of the Git repository)', { at: 'key' });
  } else if (has('repo')) {
    for (const k of ['chart', 'version']) {
      if (!has(k)) r.report('dangling-ref', ['spec', 'repo'], `a chart from a repository needs \`${k}\``, { at: 'key' });
    }
  }
  const relative = (value: unknown, path: PathSegment[], root: string): void => {
    if (typeof value !== 'string') return;
    const problem = escapingPath(value);
    if (problem) r.report('invalid-value', path, `${problem}; it must be relative to ${root}, without .. segments`);
  };
  relative(spec.path, ['spec', 'path'], 'the repository root');
  if (Array.isArray(spec.valuesFiles)) spec.valuesFiles.forEach((f, i) => relative(f, ['spec', 'valuesFiles', i], 'the cluster folder'));
}

/** Why a path given in a spec could leave its root (absolute, `..`, a drive or a backslash), else undefined. */
export function escapingPath(p: string): string | undefined {
  if (p.startsWith('/') || /^[A-Za-z]:/.test(p) || p.includes('\\')) return `"${p}" is not a relative path`;
  if (p.split('/').includes('..')) return `"${p}" leaves its folder`;
  if (p.includes('\0')) return `"${p.replace('\0', '\\0')}" holds a NUL byte`;
  return undefined;
}

/** An AddonChart's stage, its schema default (Workers) when not written. */
function stageOf(d: CheckedDocument): unknown {
  return getPath(d.value, ['spec', 'stage']) ?? 'Workers';
}

/** Topological order of AddonCharts (Kahn, ties by name); reports unknown dependencies and cycles. */
function orderAddons(addons: CheckedDocument[], rep: (d: CheckedDocument) => DocumentReporter): CheckedDocument[] {
  const byName = new Map(addons.map((a) => [a.name, a]));
  const deps = new Map<CheckedDocument, CheckedDocument[]>();
  for (const a of addons) {
    const list = getPath(a.value, ['spec', 'dependsOn']);
    const resolved: CheckedDocument[] = [];
    if (Array.isArray(list)) {
      list.forEach((n, i) => {
        if (typeof n !== 'string') return;
        const t = byName.get(n);
        if (!t) {
          const guess = closest(n, byName.keys());
          rep(a).report('dangling-ref', ['spec', 'dependsOn', i], `AddonChart "${n}" is not defined in this folder${guess ? `; did you mean \`${guess}\`?` : ''}`);
        } else if (t === a) {
          rep(a).report('dependency-cycle', ['spec', 'dependsOn', i], 'an AddonChart cannot depend on itself');
        } else {
          if (stageOf(a) === 'ControlPlane' && stageOf(t) === 'Workers') {
            rep(a).report('invalid-value', ['spec', 'dependsOn', i], `a ControlPlane-stage AddonChart cannot depend on "${n}", which is installed later (stage Workers)`, { hint: `set stage: ControlPlane on ${n}, or move this chart to stage Workers` });
          }
          resolved.push(t);
        }
      });
    }
    deps.set(a, resolved);
  }
  const order: CheckedDocument[] = [];
  const done = new Set<CheckedDocument>();
  const pending = [...addons].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  let progress = true;
  while (progress) {
    progress = false;
    for (const a of pending) {
      if (done.has(a)) continue;
      if ((deps.get(a) ?? []).every((d) => done.has(d))) {
        order.push(a);
        done.add(a);
        progress = true;
        break;
      }
    }
  }
  const stuck = pending.filter((a) => !done.has(a));
  for (const a of stuck) {
    const cycle = findCycle(a, deps);
    if (cycle) {
      rep(a).report('dependency-cycle', ['spec', 'dependsOn'], `dependency cycle: ${[...cycle.map((c) => c.name), cycle[0]?.name ?? ''].join(' → ')}`, { at: 'key' });
    }
  }
  return order;
}

function findCycle(start: CheckedDocument, deps: Map<CheckedDocument, CheckedDocument[]>): CheckedDocument[] | undefined {
  const path: CheckedDocument[] = [];
  const visit = (n: CheckedDocument, seen: Set<CheckedDocument>): CheckedDocument[] | undefined => {
    if (n === start && path.length > 0) return [...path];
    if (seen.has(n)) return undefined;
    seen.add(n);
    path.push(n);
    for (const d of deps.get(n) ?? []) {
      const c = visit(d, seen);
      if (c) return c;
    }
    path.pop();
    return undefined;
  };
  return visit(start, new Set());
}

