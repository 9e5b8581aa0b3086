/**
 * CRD openAPIV3Schema → ajv schema, judging documents the way the API server
 * does with structural schemas:
 * - `nullable: true` admits null; other nulls are pruned before validation (see `pruneNulls`);
 * - `default`s are applied by ajv (`useDefaults`);
 * - `x-kubernetes-int-or-string` admits an integer or a string;
 * - `x-kubernetes-preserve-unknown-fields` keeps unknown fields there; everywhere
 *   else an unknown field (which the API server would prune) is an error;
 * - `x-kubernetes-embedded-resource` admits apiVersion/kind/metadata;
 * - formats the API server knows are checked as patterns, unknown ones are ignored;
 * - `x-kubernetes-validations` (CEL) cannot be evaluated here and are dropped;
 * - `x-kubernetes-list-type: set` means unique items.
 * Alongside the schema, a compact `SchemaShape` (property names, nullability,
 * preserved regions) serves null pruning and "did you mean" suggestions.
 */
import type { Options } from 'ajv';

/** Bump when the conversion changes: generated validators carry it in their fingerprint. */
export const CONVERTER_VERSION = '2';

export type JsonObject = Record<string, unknown>;

/** Property tree of a schema: p = properties, i = items, a = additionalProperties, n = nullable, x = preserves unknown fields. */
export interface SchemaShape {
  p?: Record<string, SchemaShape>;
  i?: SchemaShape;
  a?: SchemaShape;
  n?: 1;
  x?: 1;
}

/** Formats the API server validates, as patterns (ajv standalone code then needs no format functions). */
export const FORMAT_PATTERNS: Readonly<Record<string, string>> = {
  'date-time': '^\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$',
  datetime: '^\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$',
  date: '^\\d{4}-\\d{2}-\\d{2}$',
  duration: '^(0|[-+]?(\\d+(\\.\\d+)?\\s*[a-zµ]+\\s*)+)$',
  byte: '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$',
  uuid: '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$',
  ipv4: '^((25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)$',
  cidr: '^[0-9a-fA-F:.]+/\\d{1,3}$',
  mac: '^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$',
};

const FORMAT_BY_PATTERN = new Map(Object.entries(FORMAT_PATTERNS).map(([f, p]) => [p, f]));

/** Ranges of the integer formats; int64 is bounded by what a JavaScript number holds exactly. */
const INTEGER_RANGES: Record<string, [number, number]> = {
  int32: [-2147483648, 2147483647],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

/** The format a pattern stands for, when it came from a `format`. */
export function formatOfPattern(pattern: string): string | undefined {
  return FORMAT_BY_PATTERN.get(pattern);
}

/** Keys dropped from the converted schema (documentation, and extensions handled here or not evaluable). */
const DROPPED = new Set([
  'description',
  'example',
  'externalDocs',
  'title',
  'nullable',
  'type',
  'format',
  'x-kubernetes-validations',
  'x-kubernetes-map-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-list-type',
  'x-kubernetes-embedded-resource',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-int-or-string',
]);

interface Converted {
  schema: JsonObject;
  shape: SchemaShape;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isIntOrStringPair(v: unknown): boolean {
  if (!Array.isArray(v) || v.length !== 2) return false;
  const types = v.map((s) => (isObject(s) ? s.type : undefined)).sort();
  return types[0] === 'integer' && types[1] === 'string' && v.every((s) => isObject(s) && Object.keys(s).length === 1);
}

function convertNode(s: JsonObject, valueOnly: boolean): Converted {
  const out: JsonObject = {};
  const shape: SchemaShape = {};
  const preserve = s['x-kubernetes-preserve-unknown-fields'] === true;
  const intOrString = s['x-kubernetes-int-or-string'] === true;
  const nullable = s.nullable === true;
  const embedded = s['x-kubernetes-embedded-resource'] === true;
  if (nullable) shape.n = 1;
  if (preserve) shape.x = 1;

  for (const [k, v] of Object.entries(s)) {
    if (DROPPED.has(k)) continue;
    if (k === 'properties' && isObject(v)) {
      const props: JsonObject = {};
      const shapes: Record<string, SchemaShape> = {};
      for (const [name, sub] of Object.entries(v)) {
        if (!isObject(sub)) continue;
        const c = convertNode(sub, valueOnly);
        props[name] = c.schema;
        shapes[name] = c.shape;
      }
      out.properties = props;
      shape.p = shapes;
    } else if (k === 'items' && isObject(v)) {
      const c = convertNode(v, valueOnly);
      out.items = c.schema;
      shape.i = c.shape;
    } else if (k === 'additionalProperties') {
      if (isObject(v)) {
        const c = convertNode(v, valueOnly);
        out.additionalProperties = c.schema;
        shape.a = c.shape;
      } else out.additionalProperties = v;
    } else if (k === 'anyOf' || k === 'oneOf' || k === 'allOf') {
      if (intOrString && k === 'anyOf' && isIntOrStringPair(v)) continue;
      if (Array.isArray(v)) out[k] = v.filter(isObject).map((b) => convertNode(b, true).schema);
    } else if (k === 'not' && isObject(v)) {
      out.not = convertNode(v, true).schema;
    } else {
      out[k] = v;
    }
  }

  const type = typeof s.type === 'string' ? s.type : undefined;
  if (intOrString) out.type = nullable ? ['integer', 'string', 'null'] : ['integer', 'string'];
  else if (type !== undefined) out.type = nullable ? [type, 'null'] : type;
  if (nullable && Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...(out.enum as unknown[]), null];

  const format = typeof s.format === 'string' ? FORMAT_PATTERNS[s.format] : undefined;
  if (format !== undefined && (type === 'string' || intOrString)) {
    if (out.pattern === undefined) out.pattern = format;
    else out.allOf = [...(Array.isArray(out.allOf) ? (out.allOf as unknown[]) : []), { pattern: format }];
  }

  // Integer formats are ranges the API server enforces (int32 replicas, ports): 99999999999
  // replicas must be refused here, not wrapped or rejected after the cloud was touched.
  const range = type === 'integer' && typeof s.format === 'string' ? INTEGER_RANGES[s.format] : undefined;
  if (range !== undefined) {
    if (typeof out.minimum !== 'number' || out.minimum < range[0]) out.minimum = range[0];
    if (typeof out.maximum !== 'number' || out.maximum > range[1]) out.maximum = range[1];
  }

  if (embedded) {
    const props = isObject(out.properties) ? out.properties : {};
    props.apiVersion ??= { type: 'string' };
    props.kind ??= { type: 'string' };
    props.metadata ??= { type: 'object' };
    out.properties = props;
    shape.p = { apiVersion: {}, kind: {}, metadata: { x: 1 }, ...(shape.p ?? {}) };
  }
  // The API server prunes fields a structural schema does not name: report them instead.
  if (type === 'object' && !preserve && !valueOnly && out.additionalProperties === undefined) {
    out.additionalProperties = false;
    shape.p ??= {};
  }
  return { schema: out, shape };
}

/**
 * Converts one served version's openAPIV3Schema. At the root, `metadata` is left
 * open (checked separately, like the API server's ObjectMeta validation) and
 * `status` is removed (written by controllers; reported as ignored).
 */
export function convertCrdSchema(openAPIV3Schema: JsonObject): Converted {
  const { schema, shape } = convertNode(openAPIV3Schema, false);
  const props = isObject(schema.properties) ? { ...schema.properties } : {};
  const shapes = { ...(shape.p ?? {}) };
  props.metadata = { type: 'object' };
  shapes.metadata = { x: 1 };
  delete props.status;
  delete shapes.status;
  schema.properties = props;
  shape.p = shapes;
  return { schema, shape };
}

export interface CrdVersionInfo {
  name: string;
  served: boolean;
  storage: boolean;
}

export interface ParsedCrd {
  kind: string;
  group: string;
  versions: CrdVersionInfo[];
  schemas: Map<string, JsonObject>;
}

/** Reads a CustomResourceDefinition object (already parsed from YAML). */
export function readCrd(doc: unknown, source = 'CRD'): ParsedCrd {
  if (!isObject(doc) || doc.kind !== 'CustomResourceDefinition' || !isObject(doc.spec)) {
    throw new Error(`${source} is not a CustomResourceDefinition`);
  }
  const spec = doc.spec;
  const names = isObject(spec.names) ? spec.names : {};
  const kind = typeof names.kind === 'string' ? names.kind : '';
  const group = typeof spec.group === 'string' ? spec.group : '';
  const versions: CrdVersionInfo[] = [];
  const schemas = new Map<string, JsonObject>();
  for (const v of Array.isArray(spec.versions) ? spec.versions : []) {
    if (!isObject(v)) continue;
    const name = String(v.name);
    versions.push({ name, served: v.served === true, storage: v.storage === true });
    const schema = isObject(v.schema) && isObject(v.schema.openAPIV3Schema) ? v.schema.openAPIV3Schema : undefined;
    if (schema) schemas.set(name, schema);
  }
  return { kind, group, versions, schemas };
}

/** ajv options shared by the build-time generator and the runtime compiler, so both judge alike. */
export function ajvOptions(standalone: boolean): Options {
  return {
    strict: false,
    allErrors: true,
    useDefaults: true,
    allowUnionTypes: true,
    validateFormats: false,
    // Kubernetes patterns are Go (RE2) regular expressions; non-unicode JS regexps accept their escapes.
    unicodeRegExp: false,
    ...(standalone ? { code: { source: true, esm: true, lines: false } } : {}),
  };
}
