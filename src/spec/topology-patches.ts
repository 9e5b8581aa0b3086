/**
 * The ClusterClass patch engine: variable values (validated against the class's
 * openAPIV3Schema with ajv, defaults applied), builtin variables, the Go
 * template subset capflow evaluates, and JSON patches (add, replace, remove)
 * applied to a template with the origin of every patched value kept, so a
 * problem in the expanded object points at the patch that wrote it.
 */
import type { Ajv as AjvClass, ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { InternalError } from '../core/errors.js';
import { isRecord } from './paths.js';
import { ajvOptions } from './schemas.js';
import type { PathSegment } from './yaml-source.js';

/** Variable values by name, with `builtin` holding the builtin variables. */
export type Variables = Record<string, unknown>;

let ajvInstance: AjvClass | undefined;

/** ajv for variable schemas (the CRD validators' options: OpenAPI keywords tolerated, defaults applied). */
async function ajv(): Promise<AjvClass> {
  if (ajvInstance) return ajvInstance;
  const mod = (await import('ajv')) as unknown as { Ajv?: typeof AjvClass; default?: { Ajv?: typeof AjvClass } };
  const Ajv = mod.Ajv ?? mod.default?.Ajv;
  if (typeof Ajv !== 'function') throw new InternalError('AJV_NOT_LOADED', 'the ajv module has no Ajv class');
  ajvInstance = new Ajv(ajvOptions(false));
  return ajvInstance;
}

/** Drops the Kubernetes extensions ajv would not know (x-kubernetes-*, x-metadata) from an openAPIV3Schema. */
function toJsonSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(toJsonSchema);
  if (!isRecord(schema)) return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k.startsWith('x-')) continue;
    // default and example are values, not schemas
    out[k] = k === 'default' || k === 'example' || k === 'enum' ? v : toJsonSchema(v);
  }
  return out;
}

export interface SchemaError {
  /** Path inside the value. */
  path: PathSegment[];
  message: string;
}

/**
 * A compiled variable schema. check(value) validates a copy, applying the schema's defaults
 * (the variable's own when it is unset, then those of nested fields), and returns the value and
 * what is wrong with it (paths inside the value).
 */
export async function compileVariableSchema(schema: unknown): Promise<((value: unknown) => { value: unknown; errors: SchemaError[] }) | { error: string }> {
  let fn: ValidateFunction;
  try {
    // wrapped as a property, so ajv applies the top-level default as it does nested ones
    fn = (await ajv()).compile({ type: 'object', properties: { v: toJsonSchema(schema) } });
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
  return (value) => {
    const holder: Record<string, unknown> = value === undefined ? {} : { v: structuredClone(value) };
    const valid: boolean = fn(holder);
    if (valid) return { value: holder.v, errors: [] };
    const errors = (fn.errors ?? []).map((e) => {
      const path: PathSegment[] = e.instancePath
        .split('/')
        .slice(2)
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
      let message = e.message ?? `fails ${e.keyword}`;
      if (e.keyword === 'enum' && Array.isArray(e.params.allowedValues)) message = `must be one of: ${e.params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
      if (e.keyword === 'required') path.push(String(e.params.missingProperty));
      return { path, message };
    });
    return { value: holder.v, errors };
  };
}

// --- Go templates (subset) ----------------------------------------------------

/** One piece of a template: literal text or a field reference `{{ .a.b }}`. */
type Piece = string | { path: string[] };

/**
 * Parses the subset of Go's text/template capflow evaluates: literal text and actions of the
 * form `{{ .name }}` / `{{ .a.b.c }}` (with `{{-` / `-}}` trimming). Anything else (if, range,
 * pipes, functions) is refused: it returns the offending action.
 */
export function parseGoTemplate(text: string): { pieces: Piece[] } | { error: string } {
  // A scan with indexOf, not a regular expression: linear whatever the text holds.
  const pieces: Piece[] = [];
  let pos = 0;
  let trimNext = false;
  for (;;) {
    const open = text.indexOf('{{', pos);
    let literal = text.slice(pos, open < 0 ? text.length : open);
    if (trimNext) literal = literal.replace(/^\s+/, '');
    if (open < 0) {
      if (literal !== '') pieces.push(literal);
      return { pieces };
    }
    const close = text.indexOf('}}', open + 2);
    if (close < 0) return { error: 'an unterminated {{ action' };
    let body = text.slice(open + 2, close);
    if (/^-\s/.test(body)) {
      literal = literal.replace(/\s+$/, '');
      body = body.slice(1);
    }
    trimNext = /\s-$/.test(body);
    if (trimNext) body = body.slice(0, -1);
    body = body.trim();
    if (literal !== '') pieces.push(literal);
    if (!/^(\.[A-Za-z_][A-Za-z0-9_]*)+$/.test(body)) {
      return { error: `{{ ${body} }} is outside the Go template subset capflow evaluates ({{ .variable }} and {{ .builtin.cluster.name }}-style field references)` };
    }
    pieces.push({ path: body.slice(1).split('.') });
    pos = close + 2;
  }
}

/** Evaluates a parsed template; an error names the field that has no value or is not a scalar. */
export function renderGoTemplate(pieces: Piece[], vars: Variables): { text: string } | { error: string } {
  let text = '';
  for (const p of pieces) {
    if (typeof p === 'string') {
      text += p;
      continue;
    }
    const value = lookupPath(vars, p.path);
    if (value === undefined) return { error: `.${p.path.join('.')} has no value` };
    if (value !== null && typeof value === 'object') return { error: `.${p.path.join('.')} is ${Array.isArray(value) ? 'a list' : 'an object'}; the template subset prints scalars only` };
    text += value === null ? '<nil>' : `${value as string | number | boolean}`;
  }
  return { text };
}

/** The value a rendered template stands for: its text read as YAML (as Cluster API does), e.g. "3" → 3. */
export function templateValue(text: string): unknown {
  try {
    return parseYaml(text, { version: '1.2' }) as unknown;
  } catch {
    return text;
  }
}

export function lookupPath(vars: Variables, path: readonly string[]): unknown {
  let v: unknown = vars;
  for (const seg of path) {
    if (!isRecord(v) || !Object.prototype.hasOwnProperty.call(v, seg)) return undefined;
    v = v[seg];
  }
  return v;
}

// --- JSON patches ---------------------------------------------------------------

export function parsePointer(pointer: string): string[] | undefined {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) return undefined;
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/**
 * Applies one operation in place. Returns the path (with array indexes as numbers) the value
 * now lives at, or an error saying what is missing.
 */
export function applyJsonPatch(target: Record<string, unknown>, op: string, pointer: string, value: unknown): { path: PathSegment[] } | { error: string } {
  const segs = parsePointer(pointer);
  if (segs === undefined) return { error: `path ${JSON.stringify(pointer)} is not a JSON pointer (it must start with /), for` };
  if (segs.length === 0) return { error: 'a patch cannot replace the whole of' };
  let parent: unknown = target;
  const at: PathSegment[] = [];
  for (const seg of segs.slice(0, -1)) {
    const next: unknown = Array.isArray(parent) && /^\d+$/.test(seg) ? (parent as unknown[])[Number(seg)] : isRecord(parent) ? parent[seg] : undefined;
    if (next === undefined || next === null || typeof next !== 'object') return { error: `${op} ${pointer}: /${[...at, seg].join('/')} does not exist in` };
    at.push(Array.isArray(parent) ? Number(seg) : seg);
    parent = next;
  }
  const last = segs[segs.length - 1] as string;
  if (Array.isArray(parent)) {
    const index = last === '-' ? parent.length : /^\d+$/.test(last) ? Number(last) : -1;
    const exists = index >= 0 && index < parent.length;
    if (index < 0 || (op !== 'add' && !exists) || index > parent.length) return { error: `${op} ${pointer}: index ${last} does not exist in the list in` };
    if (op === 'add') parent.splice(index, 0, structuredClone(value));
    else if (op === 'replace') parent[index] = structuredClone(value);
    else parent.splice(index, 1);
    return { path: [...at, index] };
  }
  const obj = parent as Record<string, unknown>;
  if (op !== 'add' && !Object.prototype.hasOwnProperty.call(obj, last)) return { error: `${op} ${pointer}: /${[...at, last].join('/')} does not exist in` };
  if (op === 'remove') delete obj[last];
  else obj[last] = structuredClone(value);
  return { path: [...at, last] };
}
