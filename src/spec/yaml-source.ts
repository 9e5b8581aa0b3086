/**
 * Multi-document YAML with positions. Each file is read, optionally
 * substituted (clusterctl variables) and parsed with the `yaml` package
 * keeping node ranges, so any field path maps back to file:line:column of
 * the original file. YAML 1.1 scalars (yes/no/on/off booleans, 0755 octal)
 * are read as Kubernetes (go-yaml) reads them; timestamps stay strings.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlias, isCollection, isMap, isPair, isScalar, isSeq, parseAllDocuments } from 'yaml';
import type { Document, Node as YamlNode, Pair, Tags } from 'yaml';
import { originalOffset, type Replacement } from './variables.js';

export type PathSegment = string | number;

export interface Position {
  line: number;
  column: number;
}

/** One file of the spec folder. `text` is what was parsed (after substitution). */
export interface SpecFile {
  absPath: string;
  /** Path shown in problems, relative to the display root, with forward slashes. */
  display: string;
  original: string;
  text: string;
  replacements: Replacement[];
  lineStarts: number[];
}

export function makeSpecFile(absPath: string, display: string, original: string): SpecFile {
  return { absPath, display, original, text: original, replacements: [], lineStarts: lineStartsOf(original) };
}

function lineStartsOf(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  return starts;
}

/** Position in the original file of an offset in the original text. */
export function positionOfOriginal(file: SpecFile, offset: number): Position {
  let lo = 0;
  let hi = file.lineStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((file.lineStarts[mid] as number) <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo + 1, column: offset - (file.lineStarts[lo] as number) + 1 };
}

/** Position in the original file of an offset in the parsed (substituted) text. */
export function positionOf(file: SpecFile, offset: number): Position {
  return positionOfOriginal(file, originalOffset(file.replacements, offset));
}

/** YAML 1.1 as Kubernetes reads it, without sexagesimal numbers and timestamps (go-yaml keeps those as strings). */
function kubernetesTags(tags: Tags): Tags {
  return tags.filter((t) => {
    const tag = typeof t === 'object' && t !== null && 'tag' in t ? t : undefined;
    if (tag === undefined) return true;
    if (tag.tag === 'tag:yaml.org,2002:timestamp') return false;
    return !('format' in tag && tag.format === 'TIME');
  });
}

export interface YamlIssue {
  offset: number;
  message: string;
}

/** One YAML document of a spec file. */
export class SourceDocument {
  readonly value: unknown;

  constructor(
    readonly file: SpecFile,
    /** 0-based index of the document in its file. */
    readonly index: number,
    private readonly doc: Document.Parsed,
  ) {
    this.value = doc.toJS({ maxAliasCount: 1000 });
  }

  /** Where the document's content starts (its first key). */
  get start(): Position {
    const contents = this.doc.contents;
    const offset = contents?.range?.[0] ?? this.doc.range[0];
    return positionOf(this.file, offset);
  }

  /**
   * Position of the node at `path`: its key (`at: 'key'`) or its value. For a
   * collection value the key is returned (its first child would mislead). When
   * the path does not exist, the deepest existing node is used.
   */
  position(path: readonly PathSegment[], at: 'key' | 'value' = 'value'): Position {
    let node: unknown = this.doc.contents;
    let keyNode: YamlNode | undefined;
    for (const seg of path) {
      node = this.resolve(node);
      let next: { key?: YamlNode; value: unknown } | undefined;
      if (isMap(node)) {
        const pair = node.items.find((p: Pair) => {
          const k = this.resolve(p.key);
          return isScalar(k) && String(k.value) === String(seg);
        });
        if (pair) next = { key: pair.key as YamlNode, value: pair.value };
      } else if (isSeq(node) && typeof seg === 'number') {
        if (seg < node.items.length) next = { value: node.items[seg] };
      }
      if (next === undefined) break;
      keyNode = next.key;
      node = next.value;
      if (node === null || node === undefined) {
        if (keyNode?.range) return positionOf(this.file, at === 'key' ? keyNode.range[0] : keyNode.range[1]);
      }
    }
    const resolved = this.resolve(node);
    if (at === 'key' && keyNode?.range) return positionOf(this.file, keyNode.range[0]);
    if ((isCollection(resolved) || resolved === null || resolved === undefined) && keyNode?.range) {
      return positionOf(this.file, keyNode.range[0]);
    }
    const target = (isAlias(node) ? node : resolved) as YamlNode | null | undefined;
    if (target && 'range' in target && target.range) return positionOf(this.file, target.range[0]);
    return this.start;
  }

  private resolve(node: unknown): unknown {
    if (isAlias(node)) return node.resolve(this.doc) ?? node;
    if (isPair(node)) return node.value;
    return node;
  }
}

export interface ParsedFile {
  documents: SourceDocument[];
  issues: YamlIssue[];
}

/** Parses every document of a file; empty documents (comments only) are skipped. */
export function parseSpecFile(file: SpecFile): ParsedFile {
  const docs = parseAllDocuments(file.text, {
    version: '1.1',
    customTags: kubernetesTags,
    prettyErrors: false,
    uniqueKeys: true,
  });
  const issues: YamlIssue[] = [];
  const documents: SourceDocument[] = [];
  const list = Array.isArray(docs) ? docs : [];
  if (!Array.isArray(docs)) {
    // An EmptyStream: nothing but comments/whitespace.
    return { documents, issues };
  }
  list.forEach((doc, index) => {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) issues.push({ offset: e.pos[0], message: e.message.split('\n')[0] ?? e.message });
      return;
    }
    if (doc.contents === null) return;
    documents.push(new SourceDocument(file, index, doc));
  });
  return { documents, issues };
}

/** The YAML files of a cluster folder (not recursive), sorted by name. */
export async function listSpecFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && !e.name.startsWith('.') && /\.ya?ml$/i.test(e.name))
    .map((e) => path.join(dir, e.name))
    .sort();
}

export async function readSpecFile(absPath: string, displayRoot: string): Promise<SpecFile> {
  const text = await readFile(absPath, 'utf8');
  return makeSpecFile(absPath, displayPath(absPath, displayRoot), text);
}

export function displayPath(absPath: string, displayRoot: string): string {
  const rel = path.relative(displayRoot, absPath);
  return (rel === '' ? '.' : rel).split(path.sep).join('/');
}

/** The repository root holding `dir` (walking up for `.git`), else the current directory. */
export function findDisplayRoot(dir: string): string {
  let current = path.resolve(dir);
  for (;;) {
    if (existsSync(path.join(current, '.git'))) return current;
    const parent = path.dirname(current);
    if (parent === current) return process.cwd();
    current = parent;
  }
}
