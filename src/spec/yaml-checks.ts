/**
 * What a parsed YAML document may hold before it is turned into a JavaScript
 * value: only what Kubernetes' YAML reader turns into JSON. Found with one
 * walk over the document's nodes (an explicit stack, so nesting costs no
 * JavaScript stack), each problem at the offset of its node:
 *
 * - tags other than the JSON ones (`!Ref`, `!!binary`, `!!set`...): the API
 *   server has no such types, and CloudFormation's short forms are not YAML it reads;
 * - aliases that name no anchor before them in the same document (anchors do
 *   not cross `---`), and merge keys (`<<`) whose source is not a map;
 * - nesting deeper than MAX_NESTING, which no Cluster API object needs and which
 *   would otherwise end in a stack overflow somewhere later;
 * - duplicate keys, with one Set per map (the `yaml` package's own `uniqueKeys`
 *   check compares each key with every key before it: a 2 MB ConfigMap took half
 *   a minute). Keys are compared as the JSON they become (`1` and `"1"` are one
 *   key); merge keys (`<<`) and collection keys are never duplicates.
 *
 * Alias bombs (a few lines that expand to millions of nodes) are caught when
 * the value is built: see toValue.
 */
import { isAlias, isMap, isPair, isScalar, isSeq } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';

/** Deepest nesting of maps and sequences a document may have. */
export const MAX_NESTING = 100;
/** How many alias expansions a document may make (the `yaml` package's count, which weighs nested aliases). */
export const MAX_ALIAS_COUNT = 1000;

/** Tags whose values are plain JSON, as Kubernetes reads them. */
const JSON_TAGS = new Set([
  'tag:yaml.org,2002:str',
  'tag:yaml.org,2002:int',
  'tag:yaml.org,2002:float',
  'tag:yaml.org,2002:bool',
  'tag:yaml.org,2002:null',
  'tag:yaml.org,2002:map',
  'tag:yaml.org,2002:seq',
]);

export interface StructureIssue {
  offset: number;
  message: string;
}

/** A document that holds nothing but comments (a trailing `---`, a commented-out object) or an explicit null. */
export function isEmptyDocument(doc: Document.Parsed): boolean {
  const c = doc.contents;
  if (c === null) return true;
  return isScalar(c) && c.value === null && c.tag === undefined && c.anchor === undefined;
}

function shortTag(tag: string): string {
  return tag.startsWith('tag:yaml.org,2002:') ? `!!${tag.slice('tag:yaml.org,2002:'.length)}` : tag;
}

/** Every problem of the document, in document order; `lineOf` gives the line of an offset (for a duplicate key's first occurrence). */
export function checkStructure(doc: Document.Parsed, lineOf: (offset: number) => number): StructureIssue[] {
  const issues: StructureIssue[] = [];
  const anchors = new Set<string>();
  let tooDeep = false;
  const stack: Array<{ node: unknown; depth: number }> = [{ node: doc.contents, depth: 0 }];
  // Depth-first in document order, so an alias is judged against the anchors defined before it.
  while (stack.length > 0) {
    const { node, depth } = stack.pop() as { node: unknown; depth: number };
    if (node === null || typeof node !== 'object') continue;
    const n = node as YamlNode;
    const offset = n.range?.[0] ?? 0;
    if (isAlias(n)) {
      if (!anchors.has(n.source)) {
        issues.push({ offset, message: `alias *${n.source} names no anchor &${n.source} defined before it in this document (anchors do not reach across ---)` });
      }
      continue;
    }
    if (n.anchor) anchors.add(n.anchor);
    if (n.tag !== undefined && !JSON_TAGS.has(n.tag)) {
      issues.push({ offset, message: `YAML tag ${shortTag(n.tag)} is not supported: Kubernetes reads plain YAML (strings, numbers, booleans, null, maps, lists), and tags such as CloudFormation's !Ref mean nothing to it` });
    }
    if (!isMap(n) && !isSeq(n)) continue;
    if (depth >= MAX_NESTING) {
      if (!tooDeep) issues.push({ offset, message: `nesting deeper than ${MAX_NESTING} levels of maps and lists; no Kubernetes object needs that many` });
      tooDeep = true;
      continue;
    }
    const children: Array<{ node: unknown; depth: number }> = [];
    const seen = new Map<string, number>();
    for (const item of n.items as unknown[]) {
      if (isPair(item)) {
        const key = item.key as YamlNode | null;
        if (isScalar(key) && key.range && typeof key.value !== 'symbol') {
          const name = String(key.value);
          const first = seen.get(name);
          if (first === undefined) seen.set(name, key.range[0]);
          else issues.push({ offset: key.range[0], message: `Map keys must be unique: ${printableKey(name)} is already a key of this map at line ${lineOf(first)}` });
        }
        if (isScalar(key) && (key.value === '<<' || (typeof key.value === 'symbol' && key.source === '<<')) && isMap(n)) {
          const source = isAlias(item.value) ? item.value.resolve(doc) : item.value;
          const sources = isSeq(source) ? source.items.map((s) => (isAlias(s) ? s.resolve(doc) : s)) : [source];
          if (isAlias(item.value) && source === undefined) {
            // reported as an alias without anchor below
          } else if (!sources.every((s) => isMap(s))) {
            issues.push({ offset: key.range?.[0] ?? offset, message: 'a merge key (<<) needs a map, or a list of maps, defined earlier in this document' });
          }
        }
        children.push({ node: key, depth: depth + 1 }, { node: item.value, depth: depth + 1 });
      } else children.push({ node: item, depth: depth + 1 });
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i] as { node: unknown; depth: number });
  }
  return issues.sort((a, b) => a.offset - b.offset);
}

function printableKey(name: string): string {
  const text = JSON.stringify(name);
  return text.length > 80 ? `${text.slice(0, 76)}..."` : text;
}

/** The document's value as Kubernetes would read it, or the reason it cannot be built. */
export function toValue(doc: Document.Parsed): { value: unknown } | { error: string } {
  try {
    return { value: doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/alias count/i.test(message)) {
      return { error: `aliases expand to too many nodes (more than ${MAX_ALIAS_COUNT} expansions): refused as a resource exhaustion attack` };
    }
    if (err instanceof RangeError) return { error: 'the document is nested too deeply to read' };
    return { error: `the document cannot be read: ${message.split('\n')[0] ?? message}` };
  }
}
