/**
 * The spec hash: sha256 of a canonical JSON of the normalized documents
 * (defaults applied, nulls pruned, namespace set), keys sorted, documents
 * sorted by kind, namespace and name. File names, positions, comments, key
 * order and formatting do not count; any semantic change does. Pausing does
 * not count either (src/spec/pause.ts): it says whether to act, not what.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ClusterModel, SpecDocument } from './model.js';
import { withoutPause } from './pause.js';

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

/** Pausing (Cluster spec.paused, the cluster.x-k8s.io/paused annotation) is not a change: left out. */
export function specHash(model: Pick<ClusterModel, 'documents'>): string {
  const docs = [...model.documents].sort(compareDocs).map((d) => withoutPause(d.kind, d.object));
  return createHash('sha256').update(canonicalJson(docs)).digest('hex');
}

/**
 * The spec hash of a cluster whose AddonCharts read files beyond its documents: their chart folders
 * (`spec.path`, under the repository root) and values files (`spec.valuesFiles`, in the cluster
 * folder). An edit to a vendored chart or a values file is a change of the cluster, as an edit to
 * its YAML is. A cluster with no such addon keeps `specHash(model)`. Files that are missing or leave
 * their root count as such (rendering refuses them).
 */
export async function specHashWithInputs(model: Pick<ClusterModel, 'documents' | 'addons' | 'dir'>, repoRoot: string): Promise<string> {
  const base = specHash(model);
  const inputs: Array<[string, string]> = [];
  for (const addon of model.addons) {
    if (addon.spec.path !== undefined) {
      for (const [rel, digest] of await folderDigests(repoRoot, addon.spec.path)) inputs.push([`chart:${addon.spec.path}/${rel}`, digest]);
    }
    for (const f of addon.spec.valuesFiles ?? []) inputs.push([`values:${f}`, await fileDigest(model.dir, f)]);
  }
  if (inputs.length === 0) return base;
  const h = createHash('sha256').update(`${base}\n`);
  for (const [name, digest] of inputs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) h.update(`${name}\0${digest}\n`);
  return h.digest('hex');
}

async function fileDigest(root: string, rel: string): Promise<string> {
  const abs = path.resolve(root, rel);
  if (!isInside(root, abs)) return 'outside';
  try {
    return createHash('sha256').update(await fs.readFile(abs)).digest('hex');
  } catch {
    return 'missing';
  }
}

/** Every file under root/rel, by path relative to that folder, with its content's sha256. */
async function folderDigests(root: string, rel: string): Promise<Array<[string, string]>> {
  const dir = path.resolve(root, rel);
  if (!isInside(root, dir)) return [['', 'outside']];
  let names: string[];
  try {
    names = await fs.readdir(dir, { recursive: true });
  } catch {
    return [['', 'missing']];
  }
  const out: Array<[string, string]> = [];
  for (const name of names.sort()) {
    const st = await fs.stat(path.join(dir, name)).catch(() => undefined);
    if (st?.isFile()) out.push([name.split(path.sep).join('/'), await fileDigest(dir, name)]);
  }
  return out;
}

function isInside(root: string, abs: string): boolean {
  const r = path.relative(path.resolve(root), abs);
  return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
}
