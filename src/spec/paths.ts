/** Field paths: segments, display form (`spec.template.spec.containers[0]`, `metadata.labels["a.b/c"]`) and lookups. */
import type { PathSegment } from './yaml-source.js';

export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** JSON pointer (ajv instancePath) to segments; array indexes become numbers (checked against the value). */
export function pointerToPath(pointer: string, value: unknown): PathSegment[] {
  if (pointer === '') return [];
  const out: PathSegment[] = [];
  let current: unknown = value;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(current) && /^\d+$/.test(seg)) {
      const i = Number(seg);
      out.push(i);
      current = current[i];
    } else {
      out.push(seg);
      current = isRecord(current) ? current[seg] : undefined;
    }
  }
  return out;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function getPath(value: unknown, path: readonly PathSegment[]): unknown {
  let current = value;
  for (const seg of path) {
    if (typeof seg === 'number') current = Array.isArray(current) ? current[seg] : undefined;
    else current = isRecord(current) ? current[seg] : undefined;
    if (current === undefined) return undefined;
  }
  return current;
}
