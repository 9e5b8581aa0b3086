/**
 * clusterctl variables, substituted on the raw text before YAML parsing, as
 * clusterctl does with drone/envsubst. The whole envsubst syntax is read:
 *
 * - `${VAR}`; `${VAR:=default}`, `${VAR:-default}`, `${VAR=default}` (the
 *   default when VAR is unset or empty, as envsubst does), `${VAR-default}`
 *   (a capflow extension: the default only when VAR is unset); a default may
 *   hold further `${...}` expressions;
 * - `${VAR:offset}`, `${VAR:offset:length}` (a negative offset counts from
 *   the end), `${#VAR}` (length);
 * - `${VAR^}`, `${VAR^^}`, `${VAR,}`, `${VAR,,}` (upper/lower case, first or all);
 * - `${VAR#glob}`, `${VAR##glob}`, `${VAR%glob}`, `${VAR%%glob}` (strip the
 *   shortest/longest non-empty prefix/suffix matching a glob: `*`, `?`,
 *   `[a-z]`, `[^a-z]`, `\c`);
 * - `${VAR/text/repl}`, `${VAR//text/repl}`, `${VAR/#text/repl}`,
 *   `${VAR/%text/repl}` (replace the first, every, a leading, a trailing
 *   occurrence of the literal text; `\/` and `\\` escape);
 * - `$$` writes a literal `$` (so `$${` writes a literal `${`), as envsubst reads a file: pairs
 *   of `$` collapse left to right outside expressions and in the text and replacement of
 *   `${VAR/text/repl}` (not in defaults, offsets or `#`/`%` patterns, which envsubst keeps as
 *   written). This applies to a file that is substituted, one holding `${`; a file without any
 *   is taken as written.
 *
 * Where capflow is stricter than envsubst, it says so instead of guessing: an
 * expression must end on its line; `${VAR:?word}` and `${VAR:+word}` (which
 * envsubst reads as plain defaults, unlike the shell) are refused; a variable
 * an expression needs is reported unset even under `${VAR:0:5}` (clusterctl
 * counts the offset as a default and substitutes an empty string). Lengths
 * and offsets count characters (envsubst counts bytes; the same for ASCII).
 *
 * Substitution records where each value went (Replacement) so positions in
 * the substituted text map back to the original file.
 */
import { lstat, open, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { InputError } from '../core/errors.js';
import { isSecretKey, redactString } from '../core/redact.js';

/** Where clusterctl variable values come from (explicit vars win over the environment, which wins over the file). */
export interface VariableOptions {
  vars?: Record<string, string>;
  /** A `KEY=value` env file (comments, blank lines, `export`, single and double quotes). */
  varsFile?: string;
  /** Use the process environment. */
  useEnv?: boolean;
}

/** The file beside a cluster's specs that carries its variable values (read by every loader of the folder). */
export const FOLDER_VARS_FILE = 'cluster.env';

/** Largest variables file read (a file of KEY=value lines; anything larger is a mistake). */
export const MAX_VARS_FILE_BYTES = 1024 * 1024;

export interface VariableUse {
  name: string;
  /** Offsets of the whole `${...}` expression in the original text. */
  start: number;
  end: number;
  /**
   * `:-`, `:=`, `-`, `=` (defaults), `:` (substring), `#len`, `^`, `^^`, `,`, `,,`,
   * `#`, `##`, `%`, `%%`, `/`, `//`, `/#`, `/%`; undefined for a plain `${VAR}`.
   */
  operator?: string;
  /** The default as written (for the default operators). */
  fallback?: string;
}

/** One replaced span: [start, end) in the original text became [newStart, newEnd) in the output. */
export interface Replacement {
  start: number;
  end: number;
  newStart: number;
  newEnd: number;
}

/** A part of an argument: literal text or a nested expression. */
type Part = string | Expression;

interface Expression extends VariableUse {
  /** Arguments after the operator (offset and length, pattern and replacement, the default). */
  args: Part[][];
}

export interface ExpressionError {
  /** Offsets of the bad expression (to the end of its line when it does not close). */
  start: number;
  end: number;
  text: string;
  message: string;
}

interface Scan {
  expressions: Expression[];
  /** Offsets of `$$` escapes (the first `$` is dropped). */
  escapes: number[];
  errors: ExpressionError[];
}

const NAME = /[A-Za-z_][A-Za-z0-9_]*/y;
const MAX_NESTING = 16;

class SyntaxProblem extends Error {
  constructor(
    message: string,
    readonly at: number,
  ) {
    super(message);
  }
}

/** Reads one `${...}` expression starting at `start` (which holds `$`). */
class ExpressionParser {
  private pos: number;

  constructor(
    private readonly text: string,
    start: number,
  ) {
    this.pos = start;
  }

  get end(): number {
    return this.pos;
  }

  parse(depth = 0): Expression {
    if (depth > MAX_NESTING) throw new SyntaxProblem(`expressions nested more than ${MAX_NESTING} deep`, this.pos);
    const start = this.pos;
    this.pos += 2; // `${`
    if (this.peek() === '#') {
      this.pos++;
      const name = this.name();
      this.close();
      return { name, start, end: this.pos, operator: '#len', args: [] };
    }
    const name = this.name();
    const c = this.peek();
    const expr = (operator: string | undefined, args: Part[][]): Expression => {
      const e: Expression = { name, start, end: this.pos, args };
      if (operator !== undefined) e.operator = operator;
      return e;
    };
    if (c === '}') {
      this.pos++;
      return expr(undefined, []);
    }
    if (c === ':' || c === '=' || c === '-') {
      let op = c;
      this.pos++;
      if (c === ':') {
        const next = this.peek();
        if (next === '?' || next === '+') {
          throw new SyntaxProblem(`\${${name}:${next}word} is not supported (clusterctl's envsubst reads it as a plain default, unlike the shell)`, this.pos);
        }
        if (next === '=' || next === '-') {
          op = `:${next}`;
          this.pos++;
        } else {
          return this.substring(name, start, depth);
        }
      }
      const fallbackStart = this.pos;
      const word = this.word(depth, '}');
      const fallback = this.text.slice(fallbackStart, this.pos);
      this.close();
      const e = expr(op, [word]);
      e.fallback = fallback;
      return e;
    }
    if (c === '^' || c === ',') {
      const op = this.operator(c);
      this.close();
      return expr(op, []);
    }
    if (c === '#' || c === '%') {
      const op = this.operator(c);
      const pattern = this.word(depth, '}');
      if (pattern.length === 0) throw new SyntaxProblem(`\${${name}${op}pattern} needs a pattern`, this.pos);
      this.close();
      const e = expr(op, [pattern]);
      compileGlob(literalOf(pattern) ?? '', this.pos); // a literal pattern is checked now
      return e;
    }
    if (c === '/') {
      let op = '/';
      this.pos++;
      const next = this.peek();
      if (next === '/' || next === '#' || next === '%') {
        op += next;
        this.pos++;
      }
      const pattern = this.word(depth, '/}', true);
      if (pattern.length === 0) throw new SyntaxProblem(`\${${name}${op}text/replacement} needs the text to replace`, this.pos);
      if (this.peek() !== '/') throw new SyntaxProblem(`\${${name}${op}text/replacement} needs the / before the replacement (it may be empty)`, this.pos);
      this.pos++;
      const args: Part[][] = [pattern];
      if (this.peek() !== '}') args.push(this.word(depth, '}', true));
      this.close();
      return expr(op, args);
    }
    throw new SyntaxProblem(c === undefined || c === '\n' || c === '\r' ? 'missing closing }' : `unexpected ${JSON.stringify(c)} after \${${name}`, this.pos);
  }

  private substring(name: string, start: number, depth: number): Expression {
    const offset = this.word(depth, ':}');
    if (offset.length === 0) throw new SyntaxProblem(`\${${name}:offset} needs an offset`, this.pos);
    const args = [offset];
    if (this.peek() === ':') {
      this.pos++;
      const length = this.word(depth, '}');
      if (length.length === 0) throw new SyntaxProblem(`\${${name}:offset:length} needs a length`, this.pos);
      args.push(length);
    }
    this.close();
    const [o, l] = args.map(literalOf);
    if (o !== undefined && !INTEGER.test(o)) throw new SyntaxProblem(`the offset of \${${name}:offset} must be an integer, not ${JSON.stringify(o)}`, start);
    if (l !== undefined && !INTEGER.test(l)) throw new SyntaxProblem(`the length of \${${name}:offset:length} must be an integer, not ${JSON.stringify(l)}`, start);
    if (l !== undefined && Number(l) < 0) throw new SyntaxProblem(`the length of \${${name}:offset:length} must not be negative (clusterctl fails on it)`, start);
    return { name, start, end: this.pos, operator: ':', args };
  }

  private peek(): string | undefined {
    return this.text[this.pos];
  }

  /** Reads `c` or `cc` (`^`/`^^`, `#`/`##`, ...): the one- and two-character forms of an operator. */
  private operator(c: string): string {
    this.pos++;
    if (this.peek() !== c) return c;
    this.pos++;
    return c + c;
  }

  private name(): string {
    NAME.lastIndex = this.pos;
    const m = NAME.exec(this.text);
    if (!m) throw new SyntaxProblem('expected a variable name (a letter or _, then letters, digits or _)', this.pos);
    this.pos += m[0].length;
    return m[0];
  }

  private close(): void {
    const c = this.peek();
    if (c !== '}') throw new SyntaxProblem(c === undefined || c === '\n' || c === '\r' ? 'missing closing }' : `unexpected ${JSON.stringify(c)} where } was expected`, this.pos);
    this.pos++;
  }

  /** Text and nested expressions up to (not including) a stop character; never past the line's end. */
  private word(depth: number, stops: string, escapes = false): Part[] {
    const parts: Part[] = [];
    let text = '';
    let run = this.pos; // start of the literal run not yet added to text
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === '\n' || c === '\r') throw new SyntaxProblem('missing closing } (an expression must end on its line)', this.pos);
      if (stops.includes(c)) break;
      if (c === '$' && this.text[this.pos + 1] === '{') {
        text += this.text.slice(run, this.pos);
        if (text !== '') parts.push(text);
        text = '';
        parts.push(this.parse(depth + 1));
        run = this.pos;
        continue;
      }
      // envsubst's replace arguments also read `$$` as one `$` (before a `${` is seen: `$${` is a literal `${`).
      if (escapes && c === '$' && this.text[this.pos + 1] === '$') {
        text += this.text.slice(run, this.pos) + '$';
        this.pos += 2;
        run = this.pos;
        continue;
      }
      if (escapes && c === '\\' && (this.text[this.pos + 1] === '/' || this.text[this.pos + 1] === '\\')) {
        text += this.text.slice(run, this.pos) + this.text[this.pos + 1];
        this.pos += 2;
        run = this.pos;
        continue;
      }
      this.pos++;
    }
    text += this.text.slice(run, this.pos);
    if (text !== '') parts.push(text);
    return parts;
  }
}

const INTEGER = /^[+-]?\d+$/;

/** The text of an argument without nested expressions; undefined when it has some. */
function literalOf(parts: Part[] | undefined): string | undefined {
  if (parts === undefined) return undefined;
  let text = '';
  for (const p of parts) {
    if (typeof p !== 'string') return undefined;
    text += p;
  }
  return text;
}

/** Every `${...}` expression of the text, the `$$` escapes and the expressions that do not parse. */
function scan(text: string): Scan {
  const out: Scan = { expressions: [], escapes: [], errors: [] };
  let i = text.indexOf('$');
  while (i >= 0 && i < text.length) {
    // `$$` is one literal `$`, as envsubst reads it (`$${` a literal `${`, `$$$${` a literal `$${`).
    if (text[i + 1] === '$') {
      out.escapes.push(i);
      i = text.indexOf('$', i + 2);
      continue;
    }
    if (text[i + 1] !== '{') {
      i = text.indexOf('$', i + 1);
      continue;
    }
    const parser = new ExpressionParser(text, i);
    try {
      out.expressions.push(parser.parse());
      i = text.indexOf('$', parser.end);
    } catch (err) {
      if (!(err instanceof SyntaxProblem)) throw err;
      const eol = lineEnd(text, i);
      const from = Math.min(Math.max(err.at, i), eol);
      const close = text.slice(from, eol).indexOf('}');
      const end = close >= 0 ? from + close + 1 : eol;
      out.errors.push({ start: i, end, text: text.slice(i, end), message: err.message });
      i = text.indexOf('$', end);
    }
  }
  return out;
}

function lineEnd(text: string, from: number): number {
  const n = text.indexOf('\n', from);
  return n < 0 ? text.length : text[n - 1] === '\r' ? n - 1 : n;
}

function flatten(expressions: readonly Expression[], into: VariableUse[] = []): VariableUse[] {
  for (const e of expressions) {
    const use: VariableUse = { name: e.name, start: e.start, end: e.end };
    if (e.operator !== undefined) use.operator = e.operator;
    if (e.fallback !== undefined) use.fallback = e.fallback;
    into.push(use);
    for (const arg of e.args) flatten(arg.filter((p): p is Expression => typeof p !== 'string'), into);
  }
  return into;
}

/** Every variable use, nested ones (in defaults, offsets, patterns) included, in text order. */
export function findVariables(text: string): VariableUse[] {
  return flatten(scan(text).expressions).sort((a, b) => a.start - b.start);
}

/** `${...}` expressions that do not parse, with what is wrong (offsets in the text). */
export function findUnsupportedExpressions(text: string): ExpressionError[] {
  return scan(text).errors;
}

export function hasVariables(text: string): boolean {
  return text.includes('${');
}

/** A substituted top-level expression and where its value went in the output. */
export interface SubstitutedValue {
  use: VariableUse;
  newStart: number;
  newEnd: number;
  /** Whether a variable's value (not only a default written in the template) is part of it. */
  fromVariable: boolean;
}

export interface SubstitutionResult {
  text: string;
  replacements: Replacement[];
  /** Uses whose variable is unset (or set to empty, where empty is not enough) and has no default. */
  unset: VariableUse[];
  /** Expressions that do not parse (left as written). */
  errors: ExpressionError[];
  /** Every substituted top-level expression, in text order. */
  values: SubstitutedValue[];
  /** Every variable use, nested ones included, in text order (as findVariables). */
  uses: VariableUse[];
}

type Lookup = (name: string) => string | undefined;

interface Evaluated {
  text: string;
  fromVariable: boolean;
}

/** Evaluates an expression; undefined when a variable it needs is unset (recorded in `unset`). */
function evaluate(e: Expression, lookup: Lookup, unset: VariableUse[], errors: ExpressionError[]): Evaluated | undefined {
  const value = lookup(e.name);
  const arg = (i: number): Evaluated | undefined => evaluateParts(e.args[i] ?? [], lookup, unset, errors);
  const op = e.operator;
  if (op === '=' || op === ':=' || op === ':-' || op === '-') {
    const useDefault = op === '-' ? value === undefined : value === undefined || value === '';
    if (!useDefault) return { text: value as string, fromVariable: true };
    return arg(0);
  }
  if (value === undefined) {
    unset.push(useOf(e));
    return undefined;
  }
  const chars = (): string[] => Array.from(value);
  const done = (text: string): Evaluated => ({ text, fromVariable: true });
  switch (op) {
    case undefined:
      return done(value);
    case '#len':
      return done(String(chars().length));
    case '^':
    case ',':
    case '^^':
    case ',,': {
      const upper = op.startsWith('^');
      const cs = chars();
      const n = op.length === 2 ? cs.length : Math.min(1, cs.length);
      for (let i = 0; i < n; i++) cs[i] = changeCase(cs[i] as string, upper);
      return done(cs.join(''));
    }
    case ':': {
      const offset = arg(0);
      const length = e.args.length > 1 ? arg(1) : undefined;
      if (offset === undefined || (e.args.length > 1 && length === undefined)) return undefined;
      // As envsubst (and bash): an offset or length that is not an integer leaves the value as it is.
      if (!INTEGER.test(offset.text) || (length !== undefined && !INTEGER.test(length.text))) return done(value);
      const cs = chars();
      let pos = Number(offset.text);
      if (pos < 0) pos = Math.max(0, cs.length + pos);
      if (length === undefined) return done(cs.slice(pos).join(''));
      const len = Number(length.text);
      if (len < 0) {
        errors.push({ start: e.start, end: e.end, text: '', message: `the length of \${${e.name}:offset:length} came out negative (clusterctl fails on it)` });
        return undefined;
      }
      return done(cs.slice(pos, pos + len).join(''));
    }
    case '#':
    case '##':
    case '%':
    case '%%': {
      const pattern = arg(0);
      if (pattern === undefined) return undefined;
      const glob = compileGlobOrRecord(pattern.text, e, errors);
      if (glob === undefined) return undefined;
      return done(stripMatch(chars(), glob, op.startsWith('#') ? 'prefix' : 'suffix', op.length === 2 ? 'longest' : 'shortest'));
    }
    case '/':
    case '//':
    case '/#':
    case '/%': {
      const pattern = arg(0);
      const replacement = e.args.length > 1 ? arg(1) : { text: '', fromVariable: false };
      if (pattern === undefined || replacement === undefined) return undefined;
      const p = pattern.text;
      const r = replacement.text;
      if (p === '') return done(value);
      if (op === '/') return done(value.replace(p, () => r));
      if (op === '//') return done(value.split(p).join(r));
      // As envsubst: `${VAR/#text/}` and `${VAR/%text/}` (an empty replacement) leave the value as it is.
      if (e.args.length < 2) return done(value);
      if (op === '/#') return done(value.startsWith(p) ? r + value.slice(p.length) : value);
      return done(value.endsWith(p) ? value.slice(0, value.length - p.length) + r : value);
    }
    default:
      return done(value);
  }
}

function evaluateParts(parts: Part[], lookup: Lookup, unset: VariableUse[], errors: ExpressionError[]): Evaluated | undefined {
  let text = '';
  let fromVariable = false;
  let missing = false;
  for (const p of parts) {
    if (typeof p === 'string') {
      text += p;
      continue;
    }
    const v = evaluate(p, lookup, unset, errors);
    if (v === undefined) missing = true;
    else {
      text += v.text;
      fromVariable ||= v.fromVariable;
    }
  }
  return missing ? undefined : { text, fromVariable };
}

function useOf(e: Expression): VariableUse {
  const use: VariableUse = { name: e.name, start: e.start, end: e.end };
  if (e.operator !== undefined) use.operator = e.operator;
  if (e.fallback !== undefined) use.fallback = e.fallback;
  return use;
}

/** Simple (one character to one character) case mapping, as Go's unicode.ToUpper/ToLower. */
function changeCase(ch: string, upper: boolean): string {
  const mapped = upper ? ch.toUpperCase() : ch.toLowerCase();
  return Array.from(mapped).length === 1 ? mapped : ch;
}

type GlobToken = { t: 'any' } | { t: 'one' } | { t: 'char'; c: string } | { t: 'class'; negate: boolean; ranges: Array<[number, number]> };

/** A glob as envsubst reads it: `*` any run (slashes too), `?` one character, `[...]`/`[^...]` classes, `\c` a literal. */
function compileGlob(pattern: string, at: number): GlobToken[] {
  const cs = Array.from(pattern);
  const tokens: GlobToken[] = [];
  const bad = (why: string): never => {
    throw new SyntaxProblem(`bad pattern ${JSON.stringify(pattern)}: ${why}`, at);
  };
  for (let i = 0; i < cs.length; i++) {
    const c = cs[i] as string;
    if (c === '*') {
      if (tokens.at(-1)?.t !== 'any') tokens.push({ t: 'any' });
    } else if (c === '?') tokens.push({ t: 'one' });
    else if (c === '\\') {
      if (i + 1 >= cs.length) bad('it ends with \\');
      tokens.push({ t: 'char', c: cs[++i] as string });
    } else if (c === '[') {
      let j = i + 1;
      const negate = cs[j] === '^';
      if (negate) j++;
      const ranges: Array<[number, number]> = [];
      const one = (): number => {
        let ch = cs[j];
        if (ch === undefined || ch === '-' || ch === ']') bad('a character class is malformed');
        if (ch === '\\') {
          j++;
          ch = cs[j];
          if (ch === undefined) bad('a character class is not closed');
        }
        j++;
        return (ch as string).codePointAt(0) as number;
      };
      for (;;) {
        if (cs[j] === ']' && ranges.length > 0) break;
        if (j >= cs.length) bad('a character class is not closed');
        const lo = one();
        let hi = lo;
        if (cs[j] === '-') {
          j++;
          hi = one();
        }
        ranges.push([lo, hi]);
      }
      tokens.push({ t: 'class', negate, ranges });
      i = j;
    } else tokens.push({ t: 'char', c });
  }
  return tokens;
}

function compileGlobOrRecord(pattern: string, e: Expression, errors: ExpressionError[]): GlobToken[] | undefined {
  try {
    return compileGlob(pattern, e.start);
  } catch (err) {
    if (!(err instanceof SyntaxProblem)) throw err;
    errors.push({ start: e.start, end: e.end, text: '', message: err.message });
    return undefined;
  }
}

function tokenMatches(t: GlobToken, ch: string): boolean {
  if (t.t === 'one') return true;
  if (t.t === 'char') return t.c === ch;
  if (t.t === 'class') {
    const cp = ch.codePointAt(0) as number;
    return t.ranges.some(([lo, hi]) => lo <= cp && cp <= hi) !== t.negate;
  }
  return true;
}

/** Which prefixes of `cs` the glob matches whole: result[k] for the first k characters (linear in both, no backtracking). */
function matchingPrefixes(tokens: readonly GlobToken[], cs: readonly string[]): boolean[] {
  // row[k]: the tokens so far match cs[0..k).
  let row: boolean[] = new Array<boolean>(cs.length + 1).fill(false);
  row[0] = true;
  for (const t of tokens) {
    const next: boolean[] = new Array<boolean>(cs.length + 1).fill(false);
    if (t.t === 'any') {
      let reachable = false;
      for (let k = 0; k <= cs.length; k++) {
        reachable ||= row[k] === true;
        next[k] = reachable;
      }
    } else {
      for (let k = 0; k < cs.length; k++) if (row[k] && tokenMatches(t, cs[k] as string)) next[k + 1] = true;
    }
    row = next;
  }
  return row;
}

/** Strips the shortest or longest non-empty prefix or suffix the glob matches (envsubst never strips an empty match). */
function stripMatch(cs: string[], glob: GlobToken[], side: 'prefix' | 'suffix', which: 'shortest' | 'longest'): string {
  const seq = side === 'prefix' ? cs : [...cs].reverse();
  const tokens = side === 'prefix' ? glob : [...glob].reverse();
  const ok = matchingPrefixes(tokens, seq);
  let k = -1;
  for (let n = 1; n <= seq.length; n++) {
    const i = which === 'shortest' ? n : seq.length + 1 - n;
    if (ok[i]) {
      k = i;
      break;
    }
  }
  if (k < 0) return cs.join('');
  return side === 'prefix' ? cs.slice(k).join('') : cs.slice(0, cs.length - k).join('');
}

export function substitute(text: string, lookup: Lookup): SubstitutionResult {
  const { expressions, escapes, errors } = scan(text);
  const replacements: Replacement[] = [];
  const unset: VariableUse[] = [];
  const values: SubstitutedValue[] = [];
  const evalErrors: ExpressionError[] = [];
  // Escapes and expressions in text order.
  const items: Array<{ start: number; expr?: Expression }> = [...escapes.map((start) => ({ start })), ...expressions.map((expr) => ({ start: expr.start, expr }))].sort((a, b) => a.start - b.start);
  let out = '';
  let last = 0;
  for (const item of items) {
    if (item.expr === undefined) {
      out += text.slice(last, item.start);
      replacements.push({ start: item.start, end: item.start + 1, newStart: out.length, newEnd: out.length });
      last = item.start + 1;
      continue;
    }
    const e = item.expr;
    const before = unset.length + evalErrors.length;
    const value = evaluate(e, lookup, unset, evalErrors);
    if (value === undefined || unset.length + evalErrors.length > before) continue;
    out += text.slice(last, e.start);
    const newStart = out.length;
    out += value.text;
    replacements.push({ start: e.start, end: e.end, newStart, newEnd: out.length });
    values.push({ use: useOf(e), newStart, newEnd: out.length, fromVariable: value.fromVariable });
    last = e.end;
  }
  out += text.slice(last);
  for (const err of evalErrors) err.text = text.slice(err.start, err.end);
  const uses = flatten(expressions).sort((a, b) => a.start - b.start);
  return { text: out, replacements, unset, errors: [...errors, ...evalErrors].sort((a, b) => a.start - b.start), values, uses };
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

/**
 * Builds the lookup from the options, over `base` (the cluster folder's own values, the lowest
 * precedence); undefined when no values were given at all.
 */
export async function variableLookup(options: VariableOptions, base?: Record<string, string>): Promise<Lookup | undefined> {
  if (options.vars === undefined && options.varsFile === undefined && !options.useEnv && base === undefined) return undefined;
  const fromFile = options.varsFile !== undefined ? await parseVarsFile(options.varsFile) : {};
  const vars = options.vars ?? {};
  const env = options.useEnv ? process.env : {};
  const folder = base ?? {};
  return (name) => {
    if (Object.prototype.hasOwnProperty.call(vars, name)) return vars[name];
    if (Object.prototype.hasOwnProperty.call(env, name)) return env[name];
    if (Object.prototype.hasOwnProperty.call(fromFile, name)) return fromFile[name];
    if (Object.prototype.hasOwnProperty.call(folder, name)) return folder[name];
    return undefined;
  };
}

/**
 * Variable names that carry credentials. capflow never substitutes them into a spec, whatever the
 * source: a value pasted into a spec ends up in the model, the objects applied, problem messages
 * (logs, and the step's JSON summary on stdout) and output parameters, and redaction cannot catch
 * it there (an AWS secret access key looks like any other 40 characters). Secrets travel as
 * Kubernetes Secrets, by name.
 */
const CREDENTIAL_NAME = /SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE_?KEY|KUBECONFIG|(^|_)(PASS|PASSPHRASE|API_?KEY|ACCESS_KEY(_ID)?)(_|$)|(^|_)(CA|SA|TLS|CLIENT|SSH)_KEY(_DATA)?$/i;

export function isCredentialName(name: string): boolean {
  return CREDENTIAL_NAME.test(name) || isSecretKey(name);
}

/** Shortest value of a credential variable of the environment that a value is compared with (shorter ones match by chance). */
const MIN_ENV_CREDENTIAL_LENGTH = 8;

/**
 * A value that looks like key material: by its shape (AWS access key ids, private keys, tokens,
 * JWTs, a URL carrying a password), or because it holds the value of a credential variable of
 * this process's environment (`CLUSTER_NAME=$AWS_SECRET_ACCESS_KEY`, which `--env`/`use-env`
 * would otherwise paste into the spec under an ordinary name: an AWS secret key is 40 ordinary
 * characters, so no shape gives it away).
 */
export function looksLikeCredential(value: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (redactString(value) !== value || /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(value)) return true;
  // user:password@ in a URL (a plain user@, as in ssh://git@host, is none).
  if (/\b[a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*:[^\s/?#@]+@/i.test(value)) return true;
  return heldEnvCredential(value, env) !== undefined;
}

/** The name of a credential variable of the environment whose value `text` holds (never the value). */
export function heldEnvCredential(text: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (text.length < MIN_ENV_CREDENTIAL_LENGTH) return undefined;
  for (const [name, secret] of Object.entries(env)) {
    if (secret === undefined || secret.length < MIN_ENV_CREDENTIAL_LENGTH || !isCredentialName(name)) continue;
    if (text.includes(secret)) return name;
  }
  return undefined;
}

/**
 * The path of a variables file named relative to `root` (the repository checkout), refused when it
 * or a symlink on its way leads outside `root`, or when it is not a regular file. The message
 * names the parameter as given, never the file's contents.
 */
export async function varsFileWithin(root: string, relative: string): Promise<string> {
  const shown = JSON.stringify(relative);
  const realRoot = await realpath(root);
  const outside = (p: string, base = realRoot): boolean => {
    const rel = path.relative(base, p);
    return rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel);
  };
  const refuse = (): InputError =>
    new InputError('VARS_FILE_OUTSIDE_REPO', `variables file ${shown} is outside the repository checkout`, {
      hint: 'name a file inside the repository, relative to its root (symlinks leading out are refused too)',
    });
  // A path that leads out as written is refused before the file system is asked anything (so the
  // answer never tells whether a file outside exists); then symlinks on its way are resolved.
  const lexical = path.resolve(root, relative);
  if (outside(lexical, path.resolve(root))) throw refuse();
  let real: string;
  try {
    real = await realpath(lexical);
  } catch (err) {
    throw new InputError('VARS_FILE_UNREADABLE', `variables file ${shown} does not exist in the repository`, { cause: err });
  }
  if (outside(real)) throw refuse();
  return real;
}

/** Reads a `KEY=value` env file. Throws InputError (VARS_FILE_INVALID) naming file:line for a malformed line. */
export async function parseVarsFile(file: string): Promise<Record<string, string>> {
  return Object.fromEntries((await readVarsFile(file)).map((e) => [e.key, e.value]));
}

/** One `KEY=value` line of a variables file. */
export interface VarsEntry {
  key: string;
  value: string;
  /** 1-based line. */
  line: number;
}

/** Reads a variables file: a regular file of at most MAX_VARS_FILE_BYTES; malformed lines throw (file:line, no contents). */
export async function readVarsFile(file: string, display = file): Promise<VarsEntry[]> {
  let text: string;
  const tooLarge = (): InputError => new InputError('VARS_FILE_TOO_LARGE', `variables file ${display} is larger than ${MAX_VARS_FILE_BYTES} bytes`);
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new InputError('VARS_FILE_UNREADABLE', `variables file ${display} is not a regular file`);
    if (info.size > MAX_VARS_FILE_BYTES) throw tooLarge();
    // Read at most one byte past the limit whatever stat said (files under /proc report size 0).
    const handle = await open(file, 'r');
    try {
      const buf = Buffer.alloc(MAX_VARS_FILE_BYTES + 1);
      let n = 0;
      for (;;) {
        const { bytesRead } = await handle.read(buf, n, buf.length - n, null);
        if (bytesRead === 0) break;
        n += bytesRead;
        if (n > MAX_VARS_FILE_BYTES) throw tooLarge();
      }
      text = buf.subarray(0, n).toString('utf8');
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError('VARS_FILE_UNREADABLE', `Cannot read variables file ${display}`, { cause: err });
  }
  return parseVarsEntries(text, display);
}

/** Whether `file` is a symlink (a folder's own variables file must not be one: it could lead anywhere). */
export async function isSymlink(file: string): Promise<boolean> {
  return (await lstat(file)).isSymbolicLink();
}

const ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\', $: '$' };

export function parseVarsText(text: string, file = '<vars>'): Record<string, string> {
  return Object.fromEntries(parseVarsEntries(text, file).map((e) => [e.key, e.value]));
}

/**
 * The entries of a variables file, in order. A malformed line throws VARS_FILE_INVALID naming
 * file:line; the message never quotes the line (the file may not be a variables file at all).
 */
export function parseVarsEntries(text: string, file = '<vars>'): VarsEntry[] {
  const entries: VarsEntry[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) {
      throw new InputError('VARS_FILE_INVALID', `${file}:${i + 1}: expected KEY=value (a name of letters, digits and _, then =)`, { details: { line: i + 1 } });
    }
    const key = m[1] as string;
    const rest = m[2] as string;
    let value: string;
    if (rest.startsWith('"')) {
      const end = findClosingQuote(rest);
      if (end < 0) throw new InputError('VARS_FILE_INVALID', `${file}:${i + 1}: unterminated double quote in ${key}`, { details: { line: i + 1 } });
      value = rest.slice(1, end).replace(/\\(.)/g, (_, c: string) => ESCAPES[c] ?? `\\${c}`);
      assertOnlyComment(rest.slice(end + 1), file, i + 1);
    } else if (rest.startsWith("'")) {
      const end = rest.indexOf("'", 1);
      if (end < 0) throw new InputError('VARS_FILE_INVALID', `${file}:${i + 1}: unterminated single quote in ${key}`, { details: { line: i + 1 } });
      value = rest.slice(1, end);
      assertOnlyComment(rest.slice(end + 1), file, i + 1);
    } else {
      value = rest.replace(/\s+#.*$/, '').trim();
    }
    entries.push({ key, value, line: i + 1 });
  }
  return entries;
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
  if (t !== '' && !t.startsWith('#')) throw new InputError('VARS_FILE_INVALID', `${file}:${line}: unexpected text after the quoted value`, { details: { line } });
}
