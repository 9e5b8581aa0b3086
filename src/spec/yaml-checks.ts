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
 * - aliases inside the node their anchor names (`&a [*a]`): the value would
 *   contain itself, and everything that walks it would recurse without end;
 * - alias bombs (a few lines that expand to millions of nodes), at the alias
 *   that passes MAX_ALIAS_COUNT, counted as the `yaml` package counts when it
 *   builds the value (toValue still refuses what this count would miss).
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

/** Per anchored node, as the `yaml` package counts alias expansions when it builds the value (see aliasCountOf). */
interface AnchorUse {
  count: number;
  aliasCount: number;
}

/** A node to check (`merge`: the offset of the `<<` key whose value it is), or the end of an anchored collection. */
type StackEntry = { node: unknown; depth: number; merge?: number } | { close: YamlNode };

/** Every problem of the document, in document order; `lineOf` gives the line of an offset (for a duplicate key's first occurrence). */
export function checkStructure(doc: Document.Parsed, lineOf: (offset: number) => number): StructureIssue[] {
  const issues: StructureIssue[] = [];
  // The node each anchor names at this point of the walk (a later &a replaces an earlier one, as the
  // package resolves it), found without the package's Alias.resolve, which walks the whole document
  // per alias (40,000 merge keys took minutes).
  const anchors = new Map<string, YamlNode>();
  // Anchored collections whose content is being walked: an alias to one of them is a cycle.
  const open = new Set<YamlNode>();
  const uses = new Map<YamlNode, AnchorUse>();
  let tooDeep = false;
  let bomb = false;
  const stack: StackEntry[] = [{ node: doc.contents, depth: 0 }];
  // Depth-first in document order, so an alias is judged against the anchors defined before it.
  while (stack.length > 0) {
    const entry = stack.pop() as StackEntry;
    if ('close' in entry) {
      open.delete(entry.close);
      continue;
    }
    const { node, depth } = entry;
    if (entry.merge !== undefined) checkMerge(node, anchors, entry.merge, issues);
    if (node === null || typeof node !== 'object') continue;
    const n = node as YamlNode;
    const offset = n.range?.[0] ?? 0;
    if (isAlias(n)) {
      const target = anchors.get(n.source);
      if (target === undefined) {
        issues.push({ offset, message: `alias *${n.source} names no anchor &${n.source} defined before it in this document (anchors do not reach across ---)` });
      } else if (open.has(target)) {
        issues.push({ offset, message: `alias *${n.source} is inside the node its anchor &${n.source} names: the value would contain itself` });
      } else if (!bomb && !tooDeep) {
        // The package's own check (toValue) would refuse it too, but at no line: this names the alias.
        const use = uses.get(target) ?? { count: 1, aliasCount: 0 };
        uses.set(target, use);
        use.count += 1;
        if (use.aliasCount === 0) use.aliasCount = aliasCountOf(target, anchors, uses);
        if (use.count * use.aliasCount > MAX_ALIAS_COUNT) {
          issues.push({ offset, message: aliasBombMessage });
          bomb = true;
        }
      }
      continue;
    }
    if (n.anchor) anchors.set(n.anchor, n);
    if (n.tag !== undefined && !JSON_TAGS.has(n.tag)) {
      issues.push({ offset, message: `YAML tag ${shortTag(n.tag)} is not supported: Kubernetes reads plain YAML (strings, numbers, booleans, null, maps, lists), and tags such as CloudFormation's !Ref mean nothing to it` });
    }
    if (!isMap(n) && !isSeq(n)) continue;
    if (depth >= MAX_NESTING) {
      if (!tooDeep) issues.push({ offset, message: `nesting deeper than ${MAX_NESTING} levels of maps and lists; no Kubernetes object needs that many` });
      tooDeep = true;
      continue;
    }
    if (n.anchor) {
      // Popped after everything inside it: until then an alias to it is a cycle.
      open.add(n);
      stack.push({ close: n });
    }
    const children: StackEntry[] = [];
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
        const merge = isScalar(key) && (key.value === '<<' || (typeof key.value === 'symbol' && key.source === '<<')) && isMap(n);
        children.push({ node: key, depth: depth + 1 }, { node: item.value, depth: depth + 1, ...(merge ? { merge: key.range?.[0] ?? offset } : {}) });
      } else children.push({ node: item, depth: depth + 1 });
    }
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i] as StackEntry);
  }
  return issues.sort((a, b) => a.offset - b.offset);
}

const aliasBombMessage = `aliases expand to too many nodes (more than ${MAX_ALIAS_COUNT} expansions): refused as a resource exhaustion attack`;

/** A merge key's value must be a map, or a list of maps (aliases resolved); an alias without anchor is reported as such. */
function checkMerge(value: unknown, anchors: ReadonlyMap<string, YamlNode>, offset: number, issues: StructureIssue[]): void {
  const resolve = (v: unknown): unknown => (isAlias(v) ? anchors.get(v.source) : v);
  const source = resolve(value);
  const sources = isSeq(source) ? source.items.map(resolve) : [source];
  if (sources.some((s) => s === undefined)) return;
  if (!sources.every((s) => isMap(s))) issues.push({ offset, message: 'a merge key (<<) needs a map, or a list of maps, defined earlier in this document' });
}

/**
 * How many nodes an alias to `node` stands for, as the `yaml` package's getAliasCount computes it
 * (the largest count among the aliases inside, times how often each was used so far; 1 for a
 * node without aliases). Bounded by MAX_NESTING: deeper documents are refused before.
 */
function aliasCountOf(node: unknown, anchors: ReadonlyMap<string, YamlNode>, uses: ReadonlyMap<YamlNode, AnchorUse>, depth = 0): number {
  if (isAlias(node)) {
    const target = anchors.get(node.source);
    const use = target && uses.get(target);
    return use ? use.count * use.aliasCount : 0;
  }
  if (depth > MAX_NESTING) return 1;
  if (isMap(node) || isSeq(node)) {
    let count = 0;
    for (const item of node.items as unknown[]) count = Math.max(count, aliasCountOf(item, anchors, uses, depth + 1));
    return count;
  }
  if (isPair(node)) return Math.max(aliasCountOf(node.key, anchors, uses, depth + 1), aliasCountOf(node.value, anchors, uses, depth + 1));
  return 1;
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
      return { error: aliasBombMessage };
    }
    if (err instanceof RangeError) return { error: 'the document is nested too deeply to read' };
    return { error: `the document cannot be read: ${message.split('\n')[0] ?? message}` };
  }
}
