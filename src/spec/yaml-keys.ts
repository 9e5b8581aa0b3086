/**
 * Duplicate map keys, found in linear time. The `yaml` package's own check
 * (`uniqueKeys: true`) compares each new key with every key before it in its
 * map, which made a 2 MB ConfigMap take half a minute; this walks each
 * document once with a Map per map instead. Scalar keys are equal when they
 * are the same JSON key, as Kubernetes turns YAML into JSON: `1` and `"1"`
 * are one key there (which of the two values survives is left to chance), so
 * they are a duplicate here too. Merge keys (`<<`), collection and alias keys
 * are never duplicates. Aliases are not followed: an anchored map is checked
 * where it is defined.
 */
import { isAlias, isMap, isPair, isScalar, isSeq } from 'yaml';
import type { Document } from 'yaml';

export interface DuplicateKey {
  /** Offset of the repeated key in the parsed text. */
  offset: number;
  /** Offset of the first key of that value in the same map. */
  firstOffset: number;
  /** The key, printable (JSON-quoted, shortened). */
  key: string;
}

/** Every repeated key in the document's maps, in document order. */
export function findDuplicateKeys(doc: Document.Parsed): DuplicateKey[] {
  const found: DuplicateKey[] = [];
  // An explicit stack: nesting depth costs no JavaScript stack.
  const stack: unknown[] = [doc.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isMap(node)) {
      const seen = new Map<string, number>();
      for (const pair of node.items) {
        const key: unknown = pair.key;
        if (isScalar(key) && key.range && typeof key.value !== 'symbol') {
          const name = String(key.value);
          const first = seen.get(name);
          if (first === undefined) seen.set(name, key.range[0]);
          else found.push({ offset: key.range[0], firstOffset: first, key: printableKey(key.value) });
        }
        if (key !== null && typeof key === 'object' && !isScalar(key) && !isAlias(key)) stack.push(key);
        stack.push(pair.value);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) stack.push(isPair(item) ? item.value : item);
    }
  }
  return found.sort((a, b) => a.offset - b.offset);
}

function printableKey(value: unknown): string {
  const text = JSON.stringify(String(value)) ?? '""';
  return text.length > 80 ? `${text.slice(0, 76)}..."` : text;
}
