/**
 * Problems found in a cluster spec, and the error that carries them.
 * Every problem names the file:line:column of the offending node, the
 * object (Kind/name) and the field path, so one pass reports them all.
 */
import { InputError, isCapflowError } from '../core/errors.js';

export type Severity = 'error' | 'warning';

/** Stable codes of the problems the loader reports. */
export type ProblemCode =
  | 'yaml-syntax'
  | 'not-an-object'
  | 'missing-type-meta'
  | 'unknown-kind'
  | 'unsupported-kind'
  | 'wrong-group'
  | 'unserved-version'
  | 'invalid-metadata'
  | 'schema'
  | 'unknown-field'
  | 'ignored-field'
  | 'duplicate'
  | 'cluster-count'
  | 'dangling-ref'
  | 'ref-kind'
  | 'ref-group'
  | 'cluster-name'
  | 'unsupported-feature'
  | 'unused'
  | 'dependency-cycle'
  | 'variables-not-substituted'
  | 'variable-unset'
  | 'variable-syntax'
  /** A variable's value would change the YAML structure (a line break, ": ", " #", quotes, brackets). */
  | 'variable-value'
  /** A variable whose name or value looks like a credential: never substituted. */
  | 'variable-secret'
  /** The cluster folder's own variables file (cluster.env) is refused. */
  | 'vars-file'
  | 'invalid-value'
  /** Two CIDR blocks overlap, or one lies outside the block that must hold it. */
  | 'cidr-overlap'
  /** Something the spec names does not exist in the cloud (e.g. a user-supplied VPC). */
  | 'not-found'
  /** A file or folder over the size limits (bytes, documents): refused before parsing. */
  | 'too-large'
  /** A ClusterClass JSON patch whose path does not exist in the template it selects. */
  | 'patch-path'
  /** A ClusterClass variable defined twice. */
  | 'variable-conflict';

export interface SpecProblem {
  severity: Severity;
  code: ProblemCode;
  message: string;
  /** Display path of the file (relative to the display root); the folder for folder-wide problems. */
  file?: string;
  /** 1-based line and column of the offending node in the original (unsubstituted) file. */
  line?: number;
  column?: number;
  kind?: string;
  name?: string;
  /** Field path inside the object, e.g. `spec.template.spec.infrastructureRef.name`. */
  path?: string;
  /** How to fix it, when the message alone does not say. */
  hint?: string;
}

/**
 * One line per problem:
 * `clusters/dev/workers.yaml:14:7 MachineDeployment/dev-md-0 spec.replicas: must be integer`.
 * Warnings carry `warning: ` before the message; a hint follows after ` hint: `.
 */
export function formatProblem(p: SpecProblem): string {
  const parts: string[] = [];
  if (p.file !== undefined) parts.push(p.line !== undefined ? `${printable(p.file)}:${p.line}:${p.column ?? 1}` : printable(p.file));
  if (p.kind !== undefined) parts.push(printable(p.name !== undefined && p.name !== '' ? `${p.kind}/${p.name}` : p.kind));
  const text = `${p.path ? `${p.path}: ` : ''}${p.severity === 'warning' ? 'warning: ' : ''}${p.message}`;
  parts.push(printable(p.hint ? `${text} hint: ${p.hint}` : text));
  return parts.join(' ');
}

/**
 * Text from the user's files (names, kinds, values) made safe to print on one line: control
 * characters, including newlines and the ESC that starts terminal escape sequences, are shown
 * escaped, so a file name cannot forge a problem line and a kind cannot drive the terminal.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/** Orders problems by file, line and column (folder-wide problems first), keeping the found order otherwise. */
export function sortProblems(problems: SpecProblem[]): SpecProblem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => {
      const fa = a.p.file ?? '';
      const fb = b.p.file ?? '';
      if (fa !== fb) return fa < fb ? -1 : 1;
      const la = a.p.line ?? 0;
      const lb = b.p.line ?? 0;
      if (la !== lb) return la - lb;
      const ca = a.p.column ?? 0;
      const cb = b.p.column ?? 0;
      if (ca !== cb) return ca - cb;
      return a.i - b.i;
    })
    .map(({ p }) => p);
}

export function hasErrors(problems: readonly SpecProblem[]): boolean {
  return problems.some((p) => p.severity === 'error');
}

/** The spec folder is invalid; `problems` lists every problem found (errors and warnings). */
export class SpecInvalidError extends InputError {
  readonly problems: readonly SpecProblem[];
  readonly dir: string | undefined;

  constructor(problems: readonly SpecProblem[], dir?: string) {
    const errors = problems.filter((p) => p.severity === 'error').length;
    const lines = problems.map(formatProblem);
    super(
      'SPEC_INVALID',
      `Cluster spec${dir ? ` ${printable(dir)}` : ''} is invalid (${errors} error${errors === 1 ? '' : 's'}):\n${lines.join('\n')}`,
      {
        hint: 'fix the problems listed (each names file:line:column) and run again',
        details: { ...(dir ? { dir } : {}), problems: problems.map((p) => ({ ...p })) },
      },
    );
    this.problems = problems;
    this.dir = dir;
  }
}

/** Type guard that works across copies of this module. */
export function isSpecInvalidError(err: unknown): err is SpecInvalidError {
  return isCapflowError(err) && err.code === 'SPEC_INVALID' && Array.isArray((err as { problems?: unknown }).problems);
}

/** Edit distance with adjacent transpositions (optimal string alignment), for "did you mean" suggestions: `spce` is one edit from `spec`. */
export function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (before[j - 2] as number) + 1);
      row.push(d);
    }
    before = prev;
    prev = row;
  }
  return prev[b.length] as number;
}

/** The closest candidate when it is close enough to be a likely typo (case-insensitive match counts as close). */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = c.toLowerCase() === word.toLowerCase() ? 0.5 : editDistance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  return bestDistance <= limit ? best : undefined;
}
