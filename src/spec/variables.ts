/**
 * clusterctl variables: `${VAR}`, `${VAR:=default}`, `${VAR:-default}` (and the
 * `${VAR=default}` / `${VAR-default}` forms that apply the default only when
 * VAR is unset), substituted on the raw text before YAML parsing, as
 * clusterctl does with envsubst. Substitution records where each value went
 * so positions in the substituted text map back to the original file.
 */
import { readFile } from 'node:fs/promises';
import { InputError } from '../core/errors.js';

/** Where clusterctl variable values come from (explicit vars win over the environment, which wins over the file). */
export interface VariableOptions {
  vars?: Record<string, string>;
  /** A `KEY=value` env file (comments, blank lines, `export`, single and double quotes). */
  varsFile?: string;
  /** Use the process environment. */
  useEnv?: boolean;
}

export interface VariableUse {
  name: string;
  /** Offsets of the whole `${...}` expression in the original text. */
  start: number;
  end: number;
  /** `:-`, `:=`, `-`, `=`, or undefined for a plain `${VAR}`. */
  operator?: string;
  fallback?: string;
}

/** One replaced span: [start, end) in the original text became [newStart, newEnd) in the output. */
export interface Replacement {
  start: number;
  end: number;
  newStart: number;
  newEnd: number;
}

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-=])([^}]*))?\}/g;
const EXACT_VARIABLE = new RegExp(`^${VARIABLE.source}$`);
const ANY_EXPRESSION = /\$\{[^}\n]*\}?/g;

export function findVariables(text: string): VariableUse[] {
  const uses: VariableUse[] = [];
  for (const m of text.matchAll(VARIABLE)) {
    const use: VariableUse = { name: m[1] as string, start: m.index, end: m.index + m[0].length };
    if (m[2] !== undefined) {
      use.operator = m[2];
      use.fallback = m[3] ?? '';
    }
    uses.push(use);
  }
  return uses;
}

/** `${...}` expressions that are not one of the supported forms (offsets in the text). */
export function findUnsupportedExpressions(text: string): Array<{ start: number; text: string }> {
  const out: Array<{ start: number; text: string }> = [];
  for (const m of text.matchAll(ANY_EXPRESSION)) {
    if (!EXACT_VARIABLE.test(m[0])) out.push({ start: m.index, text: m[0] });
  }
  return out;
}

export function hasVariables(text: string): boolean {
  return text.includes('${');
}

export interface SubstitutionResult {
  text: string;
  replacements: Replacement[];
  /** Uses whose variable is unset and has no default. */
  unset: VariableUse[];
}

export function substitute(text: string, lookup: (name: string) => string | undefined): SubstitutionResult {
  const replacements: Replacement[] = [];
  const unset: VariableUse[] = [];
  let out = '';
  let last = 0;
  for (const use of findVariables(text)) {
    const value = lookup(use.name);
    let replacement: string | undefined;
    if (use.operator === undefined) replacement = value;
    else if (use.operator.startsWith(':')) replacement = value === undefined || value === '' ? use.fallback : value;
    else replacement = value === undefined ? use.fallback : value;
    if (replacement === undefined) {
      unset.push(use);
      continue;
    }
    out += text.slice(last, use.start);
    const newStart = out.length;
    out += replacement;
    replacements.push({ start: use.start, end: use.end, newStart, newEnd: out.length });
    last = use.end;
  }
  out += text.slice(last);
  return { text: out, replacements, unset };
}

/** Maps an offset in substituted text back to the original text (inside a value: the start of its `${...}`). */
export function originalOffset(replacements: readonly Replacement[], offset: number): number {
  let lo = 0;
  let hi = replacements.length - 1;
  let found: Replacement | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = replacements[mid] as Replacement;
    if (r.newStart <= offset) {
      found = r;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (found === undefined) return offset;
  if (offset < found.newEnd) return found.start;
  return found.end + (offset - found.newEnd);
}

/** Builds the lookup from the options; undefined when no substitution was asked for. */
export async function variableLookup(options: VariableOptions): Promise<((name: string) => string | undefined) | undefined> {
  if (options.vars === undefined && options.varsFile === undefined && !options.useEnv) return undefined;
  const fromFile = options.varsFile !== undefined ? await parseVarsFile(options.varsFile) : {};
  const vars = options.vars ?? {};
  const env = options.useEnv ? process.env : {};
  return (name) => {
    if (Object.prototype.hasOwnProperty.call(vars, name)) return vars[name];
    if (Object.prototype.hasOwnProperty.call(env, name)) return env[name];
    if (Object.prototype.hasOwnProperty.call(fromFile, name)) return fromFile[name];
    return undefined;
  };
}

/** Reads a `KEY=value` env file. Throws InputError (VARS_FILE_INVALID) naming file:line for a malformed line. */
export async function parseVarsFile(path: string): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new InputError('VARS_FILE_UNREADABLE', `Cannot read variables file ${path}`, { cause: err });
  }
  return parseVarsText(text, path);
}

const ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\', $: '$' };

export function parseVarsText(text: string, file = '<vars>'): Record<string, string> {
  const vars: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) {
      throw new InputError('VARS_FILE_INVALID', `${file}:${i + 1}: expected KEY=value, got ${JSON.stringify(raw)}`);
    }
    const key = m[1] as string;
    const rest = m[2] as string;
    let value: string;
    if (rest.startsWith('"')) {
      const end = findClosingQuote(rest);
      if (end < 0) throw new InputError('VARS_FILE_INVALID', `${file}:${i + 1}: unterminated double quote in ${key}`);
      value = rest.slice(1, end).replace(/\\(.)/g, (_, c: string) => ESCAPES[c] ?? `\\${c}`);
      assertOnlyComment(rest.slice(end + 1), file, i + 1);
    } else if (rest.startsWith("'")) {
      const end = rest.indexOf("'", 1);
      if (end < 0) throw new InputError('VARS_FILE_INVALID', `${file}:${i + 1}: unterminated single quote in ${key}`);
      value = rest.slice(1, end);
      assertOnlyComment(rest.slice(end + 1), file, i + 1);
    } else {
      value = rest.replace(/\s+#.*$/, '').trim();
    }
    vars[key] = value;
  }
  return vars;
}

function findClosingQuote(s: string): number {
  for (let i = 1; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === '"') return i;
  }
  return -1;
}

function assertOnlyComment(rest: string, file: string, line: number): void {
  const t = rest.trim();
  if (t !== '' && !t.startsWith('#')) throw new InputError('VARS_FILE_INVALID', `${file}:${line}: unexpected text after the quoted value`);
}
