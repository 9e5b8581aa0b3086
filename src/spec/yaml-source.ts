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
import type { SpecProblem } from './problems.js';
import { originalOffset, type Replacement } from './variables.js';
import { checkStructure, isEmptyDocument, MAX_NESTING, toValue } from './yaml-checks.js';

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
  /** Set when the bytes are not UTF-8 text: the file is reported and not parsed. */
  encodingProblem?: string;
  /** Where the encoding problem is (default 1:1, the whole file). */
  encodingAt?: Position;
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

/** Where a field is written: its file and position (a derived document's fields may lie in several files). */
export interface Located extends Position {
  file: SpecFile;
}

/** Maps a field path of a derived document to where it came from; undefined: the document's own file. */
export type Locator = (path: readonly PathSegment[], at: 'key' | 'value') => Located | undefined;

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
    value: unknown,
    private readonly locator?: Locator,
    /** For a derived document: what it was made from (render --expanded prints it). */
    readonly origin?: string,
  ) {
    this.value = value;
  }

  /**
   * A document made from this one (a ClusterClass expansion): `value` is its content, `locator`
   * says where each of its fields came from (a template, a patch, the topology); the rest resolve here.
   */
  derive(value: unknown, locator: Locator, origin: string): SourceDocument {
    return new SourceDocument(this.file, this.index, this.doc, value, locator, origin);
  }

  /** File and position of the node at `path` (see position); for a derived document, where the field came from. */
  locate(path: readonly PathSegment[], at: 'key' | 'value' = 'value'): Located {
    const found = this.locator?.(path, at);
    if (found) return found;
    return { file: this.file, ...this.ownPosition(path, at) };
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
    const { line, column } = this.locate(path, at);
    return { line, column };
  }

  private ownPosition(path: readonly PathSegment[], at: 'key' | 'value'): Position {
    let node: unknown = this.doc.contents;
    let keyNode: YamlNode | undefined;
    for (const seg of path) {
      node = this.resolve(node);
      let next: { key?: YamlNode; value: unknown } | undefined;
      if (isMap(node)) {
        const pair = this.pairOf(node, String(seg));
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

  /** Key lookups per map, indexed on first use: a document with thousands of problems in one map stays linear. */
  private readonly keyIndex = new WeakMap<object, Map<string, Pair>>();

  private pairOf(map: { items: Pair[] }, key: string): Pair | undefined {
    let index = this.keyIndex.get(map);
    if (!index) {
      index = new Map();
      for (const p of map.items) {
        const k = this.resolve(p.key);
        if (!isScalar(k)) continue;
        const name = String(k.value);
        if (!index.has(name)) index.set(name, p);
      }
      this.keyIndex.set(map, index);
    }
    return index.get(key);
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

/**
 * Parses a file read by readSpecFile into `into`, its encoding and YAML problems into `problems`
 * (what a cluster folder and a ClusterClass folder both do with each file).
 */
export function parseSpecFileInto(file: SpecFile, into: SourceDocument[], problems: SpecProblem[]): void {
  if (file.encodingProblem !== undefined) {
    const at = file.encodingAt ?? { line: 1, column: 1 };
    problems.push({ severity: 'error', code: 'yaml-syntax', file: file.display, line: at.line, column: at.column, message: file.encodingProblem });
    return;
  }
  const parsed = parseSpecFile(file);
  for (const issue of parsed.issues) {
    const pos = positionOf(file, issue.offset);
    problems.push({ severity: 'error', code: 'yaml-syntax', file: file.display, line: pos.line, column: pos.column, message: `YAML: ${issue.message}` });
  }
  // one at a time: a spread of 100,000 documents overflows the call stack
  for (const d of parsed.documents) into.push(d);
}

/** Parses every document of a file; empty documents (comments only) are skipped. */
export function parseSpecFile(file: SpecFile): ParsedFile {
  const docs = parseAllDocuments(file.text, {
    version: '1.1',
    customTags: kubernetesTags,
    prettyErrors: false,
    // duplicate keys are found by checkStructure, in linear time (the package's own check is quadratic)
    uniqueKeys: false,
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
      for (const e of doc.errors) issues.push({ offset: e.pos[0], message: parserMessage(e.message) });
      return;
    }
    if (isEmptyDocument(doc)) return;
    const structure = checkStructure(doc, (offset) => positionOf(file, offset).line);
    if (structure.length > 0) {
      issues.push(...structure);
      return;
    }
    // `!!float 1`, `!!int abc` (tags it does not know are reported above): the package keeps the
    // text as a string where Kubernetes (go-yaml) reads a number or refuses the document.
    const unresolved = doc.warnings.filter((w) => w.code === 'TAG_RESOLVE_FAILED');
    for (const w of unresolved) {
      const tag = (/Unresolved tag: (\S+)/.exec(w.message)?.[1] ?? '').replace(/^tag:yaml\.org,2002:/, '!!');
      issues.push({ offset: w.pos[0], message: `the value does not read as its YAML tag ${tag} says (Kubernetes would read it differently); remove the tag` });
    }
    if (unresolved.length > 0) return;
    const built = toValue(doc);
    if ('error' in built) {
      issues.push({ offset: doc.contents?.range?.[0] ?? doc.range[0], message: built.error });
      return;
    }
    documents.push(new SourceDocument(file, index, doc, built.value));
  });
  return { documents, issues };
}

/** The parser's message, first line only, with a stack overflow said as what it is. */
function parserMessage(message: string): string {
  if (message.startsWith('Maximum call stack size exceeded')) return `nesting deeper than ${MAX_NESTING} levels of maps and lists; no Kubernetes object needs that many`;
  return message.split('\n')[0] ?? message;
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
  const bytes = await readFile(absPath);
  const display = displayPath(absPath, displayRoot);
  const decoded = decodeUtf8(bytes);
  if ('problem' in decoded) return { ...makeSpecFile(absPath, display, ''), encodingProblem: decoded.problem, ...(decoded.at ? { encodingAt: decoded.at } : {}) };
  // A lone CR (classic Mac line ends) is a line break to YAML and to go-yaml, not to the parser: it
  // becomes LF, one character for one, so every offset still names the same place.
  const text = decoded.text.replace(/\r(?!\n)/g, '\n');
  const file = makeSpecFile(absPath, display, text);
  const control = CONTROL.exec(text);
  if (control) {
    const code = `U+${(control[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
    return { ...makeSpecFile(absPath, display, ''), encodingProblem: `the file holds the control character ${code}, which Kubernetes' YAML reader refuses (only tab, line breaks and printable characters may appear; write it escaped in a double-quoted string)`, encodingAt: positionOfOriginal(file, control.index) };
  }
  return file;
}

/** What YAML (and go-yaml, so Kubernetes) refuses in a stream: C0 controls but tab and line breaks, DEL, C1 controls but NEL, and the noncharacters U+FFFE and U+FFFF. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u0084\u0086-\u009f\ufffe\uffff]/;

/**
 * Kubernetes reads YAML as UTF-8 only. A UTF-16 file (what some Windows editors save) would
 * otherwise parse as garbage and surface as knock-on problems elsewhere, so it is named first.
 */
function decodeUtf8(bytes: Buffer): { text: string } | { problem: string; at?: Position } {
  const b0 = bytes[0];
  const b1 = bytes[1];
  if ((b0 === 0xff && b1 === 0xfe) || (b0 === 0xfe && b1 === 0xff) || (bytes.length >= 2 && (b0 === 0 || b1 === 0))) {
    return { problem: 'the file is UTF-16 (or UTF-32) encoded; Kubernetes YAML must be UTF-8: save it as UTF-8' };
  }
  try {
    return { text: new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes) };
  } catch {
    const text = bytes.toString('utf8');
    const at = text.indexOf('\uFFFD');
    const line = at < 0 ? 1 : text.slice(0, at).split('\n').length;
    const column = at < 0 ? 1 : at - text.lastIndexOf('\n', at - 1);
    return { problem: `the file is not valid UTF-8 (first bad byte on line ${line}); Kubernetes YAML must be UTF-8`, at: { line, column } };
  }
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
