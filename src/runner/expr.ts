/**
 * The two small expression languages of a DAG task:
 *
 * - `depends` (Argo "enhanced depends logic"): operands `task` or
 *   `task.Result`, operators `&&`, `||`, `!` and parentheses. A bare `task`
 *   means `(task.Succeeded || task.Skipped || task.Daemoned)`.
 * - `when` (govaluate, after `{{...}}` substitution): comparisons `== != < > <= >=`,
 *   regex `=~ !~`, `&& || !`, parentheses, quoted strings, numbers, `true`/`false`;
 *   as in Argo, a bare word that is not a number or boolean is a string, so
 *   `foo == foo` is true.
 */
import { InputError } from '../core/errors.js';
import type { NodePhase } from './types.js';

// ---------------------------------------------------------------- depends

export const TASK_RESULTS = ['Succeeded', 'Failed', 'Errored', 'Skipped', 'Omitted', 'Daemoned', 'AnySucceeded', 'AllFailed'] as const;
export type TaskResult = (typeof TASK_RESULTS)[number];

export type DependsExpr =
  | { op: 'ref'; task: string; result?: TaskResult }
  | { op: 'not'; expr: DependsExpr }
  | { op: 'and' | 'or'; left: DependsExpr; right: DependsExpr };

function dependsError(source: string, message: string): InputError {
  return new InputError('RUNNER_INVALID_DEPENDS', `invalid depends "${source}": ${message}`);
}

export function parseDepends(source: string): DependsExpr {
  const tokens = source.match(/\s*(&&|\|\||!|\(|\)|[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z]+)?|\S)/g)?.map((t) => t.trim()) ?? [];
  let pos = 0;
  const peek = (): string | undefined => tokens[pos];
  const parseOr = (): DependsExpr => {
    let left = parseAnd();
    while (peek() === '||') {
      pos++;
      left = { op: 'or', left, right: parseAnd() };
    }
    return left;
  };
  const parseAnd = (): DependsExpr => {
    let left = parseUnary();
    while (peek() === '&&') {
      pos++;
      left = { op: 'and', left, right: parseUnary() };
    }
    return left;
  };
  const parseUnary = (): DependsExpr => {
    const t = peek();
    if (t === '!') {
      pos++;
      return { op: 'not', expr: parseUnary() };
    }
    if (t === '(') {
      pos++;
      const e = parseOr();
      if (peek() !== ')') throw dependsError(source, 'missing ")"');
      pos++;
      return e;
    }
    if (t === undefined) throw dependsError(source, 'unexpected end');
    const m = /^([A-Za-z0-9][A-Za-z0-9_-]*)(?:\.([A-Za-z]+))?$/.exec(t);
    if (!m) throw dependsError(source, `unexpected "${t}"`);
    pos++;
    const result = m[2];
    if (result !== undefined && !(TASK_RESULTS as readonly string[]).includes(result)) {
      throw dependsError(source, `unknown task result ".${result}" (one of ${TASK_RESULTS.map((r) => '.' + r).join(', ')})`);
    }
    return { op: 'ref', task: m[1]!, ...(result ? { result: result as TaskResult } : {}) };
  };
  if (tokens.length === 0) throw dependsError(source, 'empty expression');
  const expr = parseOr();
  if (pos < tokens.length) throw dependsError(source, `unexpected "${tokens[pos]}"`);
  return expr;
}

/** `dependencies: [A, B]` is `depends: "A && B"` (Argo docs). */
export function dependenciesToExpr(deps: string[]): DependsExpr | undefined {
  let expr: DependsExpr | undefined;
  for (const task of deps) {
    const ref: DependsExpr = { op: 'ref', task };
    expr = expr ? { op: 'and', left: expr, right: ref } : ref;
  }
  return expr;
}

/** Task names an expression refers to, with the results it asks for ('' = bare). */
export function dependsRefs(expr: DependsExpr, out = new Map<string, Set<string>>()): Map<string, Set<string>> {
  switch (expr.op) {
    case 'ref': {
      const set = out.get(expr.task) ?? new Set<string>();
      set.add(expr.result ?? '');
      out.set(expr.task, set);
      break;
    }
    case 'not':
      dependsRefs(expr.expr, out);
      break;
    default:
      dependsRefs(expr.left, out);
      dependsRefs(expr.right, out);
  }
  return out;
}

/**
 * Evaluates with the final phases of the referenced tasks. A task that is
 * not expanded with withItems is a group of one, so `.AnySucceeded` is its
 * `.Succeeded` and `.AllFailed` its `.Failed`. Nothing is ever Daemoned locally.
 */
export function evaluateDepends(expr: DependsExpr, phaseOf: (task: string) => NodePhase): boolean {
  switch (expr.op) {
    case 'not':
      return !evaluateDepends(expr.expr, phaseOf);
    case 'and':
      return evaluateDepends(expr.left, phaseOf) && evaluateDepends(expr.right, phaseOf);
    case 'or':
      return evaluateDepends(expr.left, phaseOf) || evaluateDepends(expr.right, phaseOf);
    case 'ref': {
      const phase = phaseOf(expr.task);
      switch (expr.result) {
        case undefined:
          return phase === 'Succeeded' || phase === 'Skipped';
        case 'Succeeded':
        case 'AnySucceeded':
          return phase === 'Succeeded';
        case 'Failed':
        case 'AllFailed':
          return phase === 'Failed';
        case 'Errored':
          return phase === 'Error';
        case 'Skipped':
          return phase === 'Skipped';
        case 'Omitted':
          return phase === 'Omitted';
        case 'Daemoned':
          return false;
      }
    }
  }
}

// ---------------------------------------------------------------- when

type WhenValue = string | number | boolean;
type Tok = { t: 'val'; v: WhenValue } | { t: 'op'; v: string };

function whenError(source: string, message: string): InputError {
  return new InputError('RUNNER_INVALID_WHEN', `invalid when "${source}": ${message}`, {
    hint: 'wrap string operands in quotes (")',
  });
}

function tokenizeWhen(source: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  const s = source;
  while (i < s.length) {
    const c = s[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const two = s.slice(i, i + 2);
    if (['==', '!=', '<=', '>=', '&&', '||', '=~', '!~'].includes(two)) {
      toks.push({ t: 'op', v: two });
      i += 2;
      continue;
    }
    if ('<>!()'.includes(c)) {
      toks.push({ t: 'op', v: c });
      i++;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      let out = '';
      while (j < s.length && s[j] !== c) {
        if (s[j] === '\\' && j + 1 < s.length) {
          out += s[j + 1];
          j += 2;
        } else out += s[j++];
      }
      if (j >= s.length) throw whenError(source, 'unterminated string');
      toks.push({ t: 'val', v: out });
      i = j + 1;
      continue;
    }
    const num = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(s.slice(i));
    const prev = toks[toks.length - 1];
    if (num && (c !== '-' || !prev || prev.t === 'op')) {
      const after = s[i + num[0].length];
      if (after === undefined || !/[A-Za-z_.]/.test(after)) {
        toks.push({ t: 'val', v: Number(num[0]) });
        i += num[0].length;
        continue;
      }
    }
    const word = /^[A-Za-z0-9_][A-Za-z0-9_.]*/.exec(s.slice(i));
    if (word) {
      const w = word[0];
      toks.push({ t: 'val', v: w === 'true' ? true : w === 'false' ? false : w });
      i += w.length;
      continue;
    }
    throw whenError(source, `unexpected "${s.slice(i, i + 10)}" (hint: try wrapping the affected expression in quotes ("))`);
  }
  return toks;
}

export function evaluateWhen(source: string): boolean {
  const toks = tokenizeWhen(source);
  let pos = 0;
  const peekOp = (): string | undefined => {
    const t = toks[pos];
    return t?.t === 'op' ? t.v : undefined;
  };
  const asBool = (v: WhenValue, op: string): boolean => {
    if (typeof v !== 'boolean') throw whenError(source, `"${String(v)}" is not a boolean for ${op}`);
    return v;
  };
  const parseOr = (): WhenValue => {
    let left = parseAnd();
    while (peekOp() === '||') {
      pos++;
      const right = parseAnd();
      left = asBool(left, '||') || asBool(right, '||');
    }
    return left;
  };
  const parseAnd = (): WhenValue => {
    let left = parseCmp();
    while (peekOp() === '&&') {
      pos++;
      const right = parseCmp();
      left = asBool(left, '&&') && asBool(right, '&&');
    }
    return left;
  };
  const parseCmp = (): WhenValue => {
    const left = parseUnary();
    const op = peekOp();
    if (op && ['==', '!=', '<', '>', '<=', '>=', '=~', '!~'].includes(op)) {
      pos++;
      const right = parseUnary();
      return compare(left, op, right);
    }
    return left;
  };
  const compare = (a: WhenValue, op: string, b: WhenValue): boolean => {
    if (op === '==') return a === b;
    if (op === '!=') return a !== b;
    if (op === '=~' || op === '!~') {
      let re: RegExp;
      try {
        re = new RegExp(String(b));
      } catch {
        throw whenError(source, `bad regular expression "${String(b)}"`);
      }
      return re.test(String(a)) === (op === '=~');
    }
    const bothNum = typeof a === 'number' && typeof b === 'number';
    const bothStr = typeof a === 'string' && typeof b === 'string';
    if (!bothNum && !bothStr) throw whenError(source, `cannot compare ${JSON.stringify(a)} ${op} ${JSON.stringify(b)}`);
    switch (op) {
      case '<':
        return a < b;
      case '>':
        return a > b;
      case '<=':
        return a <= b;
      default:
        return a >= b;
    }
  };
  const parseUnary = (): WhenValue => {
    const t = toks[pos];
    if (!t) throw whenError(source, 'unexpected end');
    if (t.t === 'op' && t.v === '!') {
      pos++;
      return !asBool(parseUnary(), '!');
    }
    if (t.t === 'op' && t.v === '(') {
      pos++;
      const v = parseOr();
      if (peekOp() !== ')') throw whenError(source, 'missing ")"');
      pos++;
      return v;
    }
    if (t.t === 'val') {
      pos++;
      return t.v;
    }
    throw whenError(source, `unexpected "${t.v}"`);
  };
  if (toks.length === 0) return true;
  const v = parseOr();
  if (pos < toks.length) throw whenError(source, `unexpected "${String(toks[pos]!.v)}"`);
  return asBool(v, 'when');
}

// ---------------------------------------------------------------- retry expression

export interface LastRetry {
  /** The exit code, or -1 when there is none (Argo: a string, hence asInt()). */
  exitCode: number;
  status: string;
  /** Seconds. */
  duration: number;
  message: string;
}

/**
 * `retryStrategy.expression` (expr-lang in Argo), the subset retry conditions
 * use: `lastRetry.exitCode|status|duration|message`, `asInt()`/`asFloat()`
 * around them, comparisons, `&& || !` (or `and or not`), parentheses, literals.
 */
export function evaluateRetryExpression(source: string, last: LastRetry): boolean {
  const err = (m: string): InputError => new InputError('RUNNER_INVALID_RETRY_EXPRESSION', `retryStrategy.expression "${source}": ${m}`);
  const parts = source.split(/("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')/);
  const rewritten = parts
    .map((part, i) => {
      if (i % 2 === 1) return part; // quoted
      const FN = /\b(?:asInt|asFloat|int|float)\(\s*lastRetry\.(exitCode|duration)\s*\)/g;
      const VAR = /\blastRetry\.(exitCode|status|duration|message)\b/g;
      const rest = part.replace(FN, '0').replace(VAR, '0').replace(/\b(?:and|or|not|true|false)\b/g, ' ');
      const unknown = /[A-Za-z_][A-Za-z0-9_.]*(?:\s*\()?/.exec(rest);
      if (unknown) {
        throw err(`"${unknown[0].trim()}" is not supported by the local runner (lastRetry.exitCode, .status, .duration, .message, asInt(), asFloat())`);
      }
      return part
        .replace(FN, (_m, v: 'exitCode' | 'duration') => String(last[v]))
        .replace(VAR, (_m, v: keyof LastRetry) => JSON.stringify(String(last[v])))
        .replace(/\band\b/g, '&&')
        .replace(/\bor\b/g, '||')
        .replace(/\bnot\b/g, '!');
    })
    .join('');
  return evaluateWhen(rewritten);
}
