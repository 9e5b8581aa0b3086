/**
 * The spec hash: sha256 of a canonical JSON of the normalized documents
 * (defaults applied, nulls pruned, namespace set), keys sorted, documents
 * sorted by kind, namespace and name. File names, positions, comments, key
 * order and formatting do not count; any semantic change does.
 */
import { createHash } from 'node:crypto';
import type { ClusterModel, SpecDocument } from './model.js';

/** JSON with object keys sorted at every level (arrays keep their order). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

function compareDocs(a: SpecDocument, b: SpecDocument): number {
  for (const [x, y] of [
    [a.kind, b.kind],
    [a.namespace, b.namespace],
    [a.name, b.name],
  ] as const) {
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

export function specHash(model: Pick<ClusterModel, 'documents'>): string {
  const docs = [...model.documents].sort(compareDocs).map((d) => d.object);
  return createHash('sha256').update(canonicalJson(docs)).digest('hex');
}
