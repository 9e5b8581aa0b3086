/**
 * Per-document checks, as the API server would judge a create: type meta
 * (kind known and supported, group right, version served), ObjectMeta, then
 * the CRD's structural schema (nulls pruned, defaults applied, unknown fields
 * reported as likely typos), then features capflow does not support yet.
 * Upstream kinds are judged by the schema line(s) the folder targets (see
 * CAPI_LINES and checkDocument).
 */
import { closest, type ProblemCode, type Severity, type SpecProblem } from './problems.js';
import { formatPath, getPath, isRecord, pointerToPath } from './paths.js';
import { CAPI_LINE_ANNOTATION, CAPI_LINES, groupOf, kindInfo, SUPPORTED_KINDS, TOPOLOGY_KINDS, UNSUPPORTED_KINDS, V1BETA2_NOT_ACTED_ON, type CapiLine, type CapiLineChoice, type KindInfo } from './kinds.js';
import { formatOfPattern, type SchemaShape } from './schemas.js';
import type { KindValidator, SchemaRegistry } from './validators.js';
import type { PathSegment, SourceDocument } from './yaml-source.js';

/** A document that passed the type-meta checks, with its normalized value. */
export interface CheckedDocument {
  src: SourceDocument;
  info: KindInfo;
  kind: string;
  apiVersion: string;
  group: string;
  version: string;
  name: string;
  namespace: string;
  /** Normalized: nulls pruned, schema defaults applied, metadata.namespace set. */
  value: Record<string, unknown>;
  /** False when the schema or metadata checks failed. */
  valid: boolean;
  /** The schema line whose CRD judged the document (capflow's and core kinds: the oldest). */
  schemaLine: CapiLine;
}

/** Reports problems located in one document. */
export class DocumentReporter {
  kind: string | undefined;
  name: string | undefined;
  errors = 0;
  private readonly reported = new Set<string>();

  constructor(
    private readonly problems: SpecProblem[],
    readonly src: SourceDocument,
  ) {}

  report(
    code: ProblemCode,
    path: readonly PathSegment[],
    message: string,
    options: { at?: 'key' | 'value' | 'start'; severity?: Severity; hint?: string } = {},
  ): void {
    const at = options.at ?? 'value';
    const pos = at === 'start' ? { file: this.src.file, ...this.src.start } : this.src.locate(path, at);
    const severity = options.severity ?? 'error';
    // The same problem found twice (by the metadata checks and the schema) is reported once.
    const key = `${pos.file.display}:${pos.line}:${pos.column}\u0000${formatPath(path)}\u0000${message}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    if (severity === 'error') this.errors++;
    const p: SpecProblem = { severity, code, message, file: pos.file.display, line: pos.line, column: pos.column };
    if (this.kind !== undefined) p.kind = this.kind;
    if (this.name !== undefined) p.name = this.name;
    if (path.length > 0) p.path = formatPath(path);
    if (options.hint !== undefined) p.hint = options.hint;
    this.problems.push(p);
  }
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const META_FIELDS = ['name', 'namespace', 'labels', 'annotations'];
const SERVER_META_FIELDS = [
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'ownerReferences',
  'finalizers',
  'managedFields',
  'selfLink',
];

export function isDns1123Subdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}

function checkQualifiedName(key: string): boolean {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (prefix !== undefined && !isDns1123Subdomain(prefix)) return false;
  return name.length <= 63 && LABEL_NAME.test(name);
}

/** ObjectMeta checks; returns name and namespace (default "default") when usable. */
function checkMetadata(value: Record<string, unknown>, r: DocumentReporter): { name?: string; namespace: string } {
  const meta = value.metadata;
  if (meta === undefined || meta === null) {
    r.report('invalid-metadata', ['metadata', 'name'], 'missing required field `name`', { at: 'start' });
    return { namespace: 'default' };
  }
  if (!isRecord(meta)) {
    r.report('invalid-metadata', ['metadata'], 'must be object');
    return { namespace: 'default' };
  }
  let name: string | undefined;
  if (meta.name === undefined || meta.name === null) {
    const hint = meta.generateName !== undefined ? 'capflow needs stable names: use metadata.name instead of generateName' : undefined;
    r.report('invalid-metadata', ['metadata', 'name'], 'missing required field `name`', { at: 'start', ...(hint ? { hint } : {}) });
  } else if (typeof meta.name !== 'string') {
    r.report('invalid-metadata', ['metadata', 'name'], 'must be string');
  } else if (!isDns1123Subdomain(meta.name)) {
    r.report('invalid-metadata', ['metadata', 'name'], `${JSON.stringify(meta.name)} is not a DNS-1123 subdomain (lower case alphanumerics, '-' and '.', starting and ending alphanumeric, at most 253 characters)`);
    name = meta.name;
  } else name = meta.name;
  let namespace = 'default';
  if (meta.namespace !== undefined && meta.namespace !== null) {
    if (typeof meta.namespace !== 'string') r.report('invalid-metadata', ['metadata', 'namespace'], 'must be string');
    else if (meta.namespace.length > 63 || !DNS1123_LABEL.test(meta.namespace)) {
      r.report('invalid-metadata', ['metadata', 'namespace'], `${JSON.stringify(meta.namespace)} is not a DNS-1123 label (lower case alphanumerics and '-', at most 63 characters)`);
    } else namespace = meta.namespace;
  }
  for (const field of ['labels', 'annotations'] as const) {
    const map = meta[field];
    if (map === undefined || map === null) continue;
    if (!isRecord(map)) {
      r.report('invalid-metadata', ['metadata', field], 'must be a map of strings');
      continue;
    }
    for (const [k, v] of Object.entries(map)) {
      if (!checkQualifiedName(k)) {
        r.report('invalid-metadata', ['metadata', field, k], `invalid ${field === 'labels' ? 'label' : 'annotation'} key ${JSON.stringify(k)} (an optional DNS subdomain prefix and '/', then at most 63 alphanumerics, '-', '_' or '.')`, { at: 'key' });
      }
      if (typeof v !== 'string') {
        r.report('invalid-metadata', ['metadata', field, k], `must be string (quote it: ${JSON.stringify(String(v))})`);
      } else if (field === 'labels' && (v.length > 63 || !LABEL_VALUE.test(v))) {
        r.report('invalid-metadata', ['metadata', field, k], `invalid label value ${JSON.stringify(v)} (at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric)`);
      }
    }
  }
  for (const key of Object.keys(meta)) {
    if (META_FIELDS.includes(key)) continue;
    if (key === 'generateName') {
      if (meta.name === undefined) continue;
      r.report('unsupported-feature', ['metadata', key], 'generateName is not supported: capflow needs stable names', { at: 'key' });
    } else if (SERVER_META_FIELDS.includes(key)) {
      r.report('ignored-field', ['metadata', key], `\`${key}\` is set by the API server; capflow ignores it`, { at: 'key', severity: 'warning' });
    } else {
      const guess = closest(key, [...META_FIELDS, ...SERVER_META_FIELDS]);
      r.report('unknown-field', ['metadata', key], `unknown field \`${key}\` (the API server would silently drop it)${guess ? `; did you mean \`${guess}\`?` : ''}`, { at: 'key' });
    }
  }
  return { ...(name !== undefined ? { name } : {}), namespace };
}

/** Removes nulls the API server would prune (fields not marked nullable, outside preserved regions). */
export function pruneNulls(value: unknown, shape: SchemaShape | undefined, preserved = false): void {
  if (Array.isArray(value)) {
    for (const item of value) pruneNulls(item, shape?.i, preserved);
    return;
  }
  if (!isRecord(value)) return;
  for (const [k, v] of Object.entries(value)) {
    const sub = shape?.p?.[k] ?? shape?.a;
    if (v === null && !preserved && sub?.n !== 1) delete value[k];
    else pruneNulls(v, sub, preserved || sub?.x === 1);
  }
}

function shapeAt(shape: SchemaShape | undefined, path: readonly PathSegment[]): SchemaShape | undefined {
  let s = shape;
  for (const seg of path) {
    if (s === undefined) return undefined;
    s = typeof seg === 'number' ? s.i : (s.p?.[seg] ?? s.a);
  }
  return s;
}

function typeMessage(t: unknown): string {
  const types = Array.isArray(t) ? t.map(String) : String(t).split(',');
  return `must be ${types.join(' or ')}`;
}

/** Checks one parsed document. Returns undefined when its kind/version cannot be judged at all. */
export async function checkDocument(src: SourceDocument, registry: SchemaRegistry, problems: SpecProblem[], line: CapiLineChoice = 'auto'): Promise<CheckedDocument | undefined> {
  const r = new DocumentReporter(problems, src);
  const raw = src.value;
  if (!isRecord(raw)) {
    r.report('not-an-object', [], 'a Kubernetes object (a YAML mapping with apiVersion, kind and metadata) was expected', { at: 'start' });
    return undefined;
  }
  const meta = isRecord(raw.metadata) ? raw.metadata : {};
  if (typeof meta.name === 'string') r.name = meta.name;
  const { kind, apiVersion } = raw;
  if (typeof kind === 'string') r.kind = kind;
  let missing = false;
  for (const [field, v] of [['apiVersion', apiVersion], ['kind', kind]] as const) {
    if (v === undefined || v === null) {
      r.report('missing-type-meta', [field], `missing required field \`${field}\``, { at: 'start' });
      missing = true;
    } else if (typeof v !== 'string' || v === '') {
      r.report('missing-type-meta', [field], 'must be a non-empty string');
      missing = true;
    }
  }
  if (missing || typeof kind !== 'string' || typeof apiVersion !== 'string') return undefined;

  const info = kindInfo(kind);
  if (!info) {
    const unsupported = UNSUPPORTED_KINDS[kind];
    if (TOPOLOGY_KINDS.has(kind)) {
      // Read by the topology expansion when the Cluster's topology names the class (topology.ts).
      r.report('unused', ['kind'], `${kind} is not used: the folder's Cluster has no topology that names ${kind === 'ClusterClass' ? 'this class' : 'a ClusterClass using it'}`, {
        severity: 'warning',
        hint: 'a ClusterClass and its templates are expanded for a Cluster whose spec.topology.class names the class',
      });
    } else if (unsupported !== undefined) {
      r.report('unsupported-kind', ['kind'], `kind ${kind} is not supported yet`, { hint: unsupported });
    } else {
      const guess = closest(kind, SUPPORTED_KINDS.map((k) => k.kind));
      r.report('unknown-kind', ['kind'], `unknown kind ${kind} (apiVersion ${apiVersion})${guess ? `; did you mean \`${guess}\`?` : ''}`, {
        hint: `capflow understands ${SUPPORTED_KINDS.map((k) => k.kind).join(', ')}`,
      });
    }
    return undefined;
  }
  const { group, version } = groupOf(apiVersion);
  if (group !== info.group) {
    r.report('wrong-group', ['apiVersion'], `${kind} belongs to API group ${info.group === '' ? 'core (apiVersion v1)' : info.group}, not ${group === '' ? 'core' : group}`);
    return undefined;
  }
  // The schema lines that may judge this document: the one the folder targets, or every line
  // ('auto'). capflow's own and core kinds have one schema for all lines.
  const lines: CapiLine[] = info.source !== 'capi' ? [CAPI_LINES[0].line] : line === 'auto' ? CAPI_LINES.map((l) => l.line) : [line];
  const serving: CapiLine[] = [];
  const served = new Set<string>();
  const all = new Set<string>();
  for (const l of lines) {
    const v = await registry.versions(info, l);
    v.served.forEach((x) => served.add(x));
    v.all.forEach((x) => all.add(x));
    if (v.served.includes(version)) serving.push(l);
  }
  if (serving.length === 0) {
    const servedText = [...served].map((v) => (group === '' ? v : `${group}/${v}`)).join(', ');
    const known = all.has(version);
    let elsewhere: CapiLine | undefined;
    if (info.source === 'capi' && line !== 'auto') {
      for (const l of CAPI_LINES) if (l.line !== line && (await registry.versions(info, l.line)).served.includes(version)) elsewhere = l.line;
    }
    const target = line !== 'auto' && info.source === 'capi' ? ` in ${lineLabel(line)} (the line this folder targets)` : '';
    r.report('unserved-version', ['apiVersion'], `${apiVersion} is ${known || elsewhere ? 'not served for' : 'not a version of'} ${kind}${target}; served: ${servedText}`, {
      hint: elsewhere
        ? `${lineLabel(elsewhere)} serves it: set the Cluster annotation ${CAPI_LINE_ANNOTATION}: ${elsewhere} (or auto), or write ${servedText}`
        : known
          ? `convert the object to ${servedText} (clusterctl upgrade / the provider's conversion)`
          : `use ${servedText}`,
    });
    return undefined;
  }

  const value = structuredClone(raw);
  const { name, namespace } = checkMetadata(value, r);
  if ('status' in value) {
    r.report('ignored-field', ['status'], '`status` is written by controllers; capflow ignores it', { at: 'key', severity: 'warning' });
    delete value.status;
  }
  // Judged by each serving line, oldest first; the first that accepts the document gives its
  // normalized value (nulls pruned, that line's defaults applied). Oldest first keeps the defaults,
  // and so the spec hash, of a folder written for v1.10/v2.9 what they were before v1.11 was known;
  // a field only a newer line has (targetGroupIPType, assignPrimaryIPv6, ...) is accepted by that
  // line. When no line accepts it, the problems reported are those of the line with the fewest
  // (ties: the newest, what users run now).
  let judged: { line: CapiLine; value: Record<string, unknown>; validator: KindValidator; errors: AjvError[] } | undefined;
  for (const l of serving) {
    const validator = await registry.validator(info, version, l);
    const candidate = serving.length === 1 ? value : structuredClone(value);
    pruneNulls(candidate, validator.shape);
    const ok = validator.validate(candidate);
    const errors = ok ? [] : [...((validator.validate.errors ?? []) as AjvError[])];
    if (judged === undefined || errors.length <= judged.errors.length || ok) judged = { line: l, value: candidate, validator, errors };
    if (ok) break;
  }
  const j = judged as NonNullable<typeof judged>;
  if (j.errors.length > 0) reportSchemaErrors(j.errors, j.value, j.validator.shape, r);
  checkSpecPresent(kind, j.value, j.validator, r);
  checkFeatures(kind, j.value, r);
  if (info.source === 'capi' && version === 'v1beta2' && V1BETA2_NOT_ACTED_ON.has(kind)) {
    r.report('unsupported-feature', ['apiVersion'], `${kind} ${apiVersion} (${lineLabel('v1.11')}) was checked against its schema, but capflow cannot act on the v1beta2 shape yet`, {
      hint: `write ${group}/v1beta1, which Cluster API v1.11 still serves (the AWS provider v2.11 templates do)`,
    });
  }
  if (isRecord(j.value.metadata)) j.value.metadata.namespace = namespace;
  else j.value.metadata = { namespace };
  return { src, info, kind, apiVersion, group, version, name: name ?? '', namespace, value: j.value, valid: r.errors === 0 && name !== undefined, schemaLine: j.line };
}

function lineLabel(line: CapiLine): string {
  return CAPI_LINES.find((l) => l.line === line)?.label ?? line;
}

interface AjvError {
  keyword: string;
  instancePath: string;
  schemaPath: string;
  params: Record<string, unknown>;
  message?: string;
}

function reportSchemaErrors(errors: readonly AjvError[], value: unknown, shape: SchemaShape, r: DocumentReporter): void {
  // anyOf/oneOf report their branches' errors too: keep only the summary.
  const junctions = errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf').map((e) => `${e.schemaPath}/`);
  const seen = new Set<string>();
  for (const e of errors) {
    if (junctions.some((j) => e.schemaPath.startsWith(j))) continue;
    const path = pointerToPath(e.instancePath, value);
    let target = path;
    let message: string;
    let at: 'key' | 'value' | 'start' = 'value';
    let code: ProblemCode = 'schema';
    switch (e.keyword) {
      case 'additionalProperties': {
        const field = String(e.params.additionalProperty);
        target = [...path, field];
        const known = Object.keys(shapeAt(shape, path)?.p ?? {});
        const guess = closest(field, known);
        message = `unknown field \`${field}\` (the API server would silently drop it)${guess ? `; did you mean \`${guess}\`?` : ''}`;
        at = 'key';
        code = 'unknown-field';
        break;
      }
      case 'required':
        target = [...path, String(e.params.missingProperty)];
        message = `missing required field \`${String(e.params.missingProperty)}\``;
        at = 'start';
        break;
      case 'type':
        message = typeMessage(e.params.type);
        break;
      case 'enum':
        message = `must be one of: ${(Array.isArray(e.params.allowedValues) ? e.params.allowedValues : []).map((v) => JSON.stringify(v)).join(', ')}`;
        break;
      case 'pattern': {
        const format = formatOfPattern(String(e.params.pattern));
        message = format ? `must be a valid ${format}` : `must match pattern ${JSON.stringify(e.params.pattern)}`;
        break;
      }
      default:
        message = e.message ?? `fails ${e.keyword}`;
    }
    const key = `${formatPath(target)}\u0000${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (code === 'schema' && at === 'value') {
      const actual = getPath(value, target);
      if (actual !== undefined && (typeof actual !== 'object' || actual === null) && e.keyword !== 'type') {
        message = `${message} (got ${typeof actual === 'number' && !Number.isFinite(actual) ? String(actual) : JSON.stringify(actual)})`;
      }
    }
    r.report(code, target, message, { at });
  }
}

/**
 * A kind whose spec has required fields needs a spec. The schema judges those fields only inside a
 * spec, so an object without one passes it, and is refused later by Cluster API's webhooks, or by
 * capflow's own steps after they started: a KubeadmControlPlane without version, an
 * AWSMachineTemplate without instance type. A top-level key that is a misspelt `spec` (`spce`) is
 * already reported as an unknown field, and is not reported again.
 */
function checkSpecPresent(kind: string, value: Record<string, unknown>, validator: KindValidator, r: DocumentReporter): void {
  const known = validator.shape.p ?? {};
  if (value.spec !== undefined || known.spec === undefined) return;
  if (Object.keys(value).some((k) => known[k] === undefined && closest(k, ['spec']) !== undefined)) return;
  const probe = { ...structuredClone(value), spec: {} };
  if (validator.validate(probe)) return;
  const needs = ((validator.validate.errors ?? []) as AjvError[])
    .filter((e) => e.keyword === 'required' && e.instancePath === '/spec')
    .map((e) => `\`spec.${String(e.params.missingProperty)}\``);
  if (needs.length === 0) return;
  r.report('schema', ['spec'], `missing required field \`spec\` (${/^[AEIOU]/.test(kind) ? 'an' : 'a'} ${kind} needs ${needs.join(', ')})`, { at: 'start' });
}

interface FeatureRule {
  kind: string;
  path: string[];
  applies: (v: unknown) => boolean;
  message: string;
  hint?: string;
  severity?: Severity;
}

const FEATURES: FeatureRule[] = [
  {
    kind: 'AWSCluster',
    path: ['spec', 'controlPlaneLoadBalancer', 'loadBalancerType'],
    applies: (v) => v === 'disabled',
    message: 'AWSCluster.spec.controlPlaneLoadBalancer.loadBalancerType `disabled` is not supported yet',
    hint: 'capflow reaches the API server through the load balancer; use nlb (recommended) or classic',
  },
  {
    kind: 'AWSCluster',
    path: ['spec', 'secondaryControlPlaneLoadBalancer'],
    applies: (v) => v !== undefined,
    message: 'AWSCluster.spec.secondaryControlPlaneLoadBalancer is not supported yet',
  },
  {
    kind: 'AWSCluster',
    path: ['spec', 'identityRef'],
    applies: (v) => v !== undefined,
    message: 'identityRef is ignored: capflow uses the executor\'s AWS credentials',
    severity: 'warning',
  },
  {
    kind: 'AWSManagedControlPlane',
    path: ['spec', 'secondaryCidrBlock'],
    applies: (v) => v !== undefined,
    message: 'AWSManagedControlPlane.spec.secondaryCidrBlock is not supported yet: provision-vpc neither adds the block to the VPC nor makes its subnets',
    hint: 'remove it; pods take addresses from the subnets of spec.network',
  },
  {
    kind: 'AWSManagedControlPlane',
    path: ['spec', 'identityRef'],
    applies: (v) => v !== undefined,
    message: 'identityRef is ignored: capflow uses the executor\'s AWS credentials',
    severity: 'warning',
  },
];

function checkFeatures(kind: string, value: Record<string, unknown>, r: DocumentReporter): void {
  for (const rule of FEATURES) {
    if (rule.kind !== kind) continue;
    const v = getPath(value, rule.path);
    if (!rule.applies(v)) continue;
    r.report(rule.severity === 'warning' ? 'ignored-field' : 'unsupported-feature', rule.path, rule.message, {
      at: 'key',
      ...(rule.severity ? { severity: rule.severity } : {}),
      ...(rule.hint ? { hint: rule.hint } : {}),
    });
  }
}
