/**
 * Argo's `{{...}}` variable substitution over strings and whole JSON values.
 *
 * A scope answers a variable name (already trimmed) with its value, or
 * `DEFER` to leave the tag for a later pass (e.g. `{{tasks.x...}}` while a
 * DAG template is expanded with its inputs), or undefined when unknown: that
 * is an error, as in Argo ("failed to resolve").
 */
import { InputError } from '../core/errors.js';

export const DEFER = Symbol('defer');
export type Scope = (name: string) => string | typeof DEFER | undefined;

const TAG = /\{\{([^{}]*)\}\}/g;

export function substitute(text: string, scope: Scope, where: string): string {
  return text.replace(TAG, (whole, inner: string) => {
    const name = inner.trim();
    if (name.startsWith('=')) {
      throw new InputError('RUNNER_UNSUPPORTED_EXPRESSION', `${where}: expression tag ${whole} is not supported by the local runner`, {
        hint: 'use a plain variable such as {{inputs.parameters.x}}',
      });
    }
    const value = scope(name);
    if (value === DEFER) return whole;
    if (value === undefined) {
      throw new InputError('RUNNER_UNRESOLVED_VARIABLE', `${where}: failed to resolve ${whole}`);
    }
    return value;
  });
}

/** Substitutes every string in a JSON value (keys are left alone). */
export function substituteDeep<T>(value: T, scope: Scope, where: string): T {
  const walk = (v: unknown, at: string): unknown => {
    if (typeof v === 'string') return v.includes('{{') ? substitute(v, scope, at) : v;
    if (Array.isArray(v)) return v.map((x, i) => walk(x, `${at}[${i}]`));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, `${at}.${k}`);
      return out;
    }
    return v;
  };
  return walk(value, where) as T;
}

/** Variable names used in a string. */
export function variablesIn(text: string): string[] {
  return [...text.matchAll(TAG)].map((m) => m[1]!.trim());
}

/** Every variable name in a JSON value, with where it is. */
export function variablesInDeep(value: unknown, at = ''): { name: string; at: string }[] {
  const out: { name: string; at: string }[] = [];
  const walk = (v: unknown, p: string): void => {
    if (typeof v === 'string') for (const name of variablesIn(v)) out.push({ name, at: p });
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${p}[${i}]`));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, p ? `${p}.${k}` : k);
  };
  walk(value, at);
  return out;
}

/** Chains scopes: the first that knows (or defers) a name wins. */
export function chain(...scopes: Scope[]): Scope {
  return (name) => {
    for (const s of scopes) {
      const v = s(name);
      if (v !== undefined) return v;
    }
    return undefined;
  };
}

export function mapScope(values: Record<string, string> | Map<string, string>): Scope {
  if (values instanceof Map) return (name) => values.get(name);
  return (name) => (Object.prototype.hasOwnProperty.call(values, name) ? values[name] : undefined);
}

/** Defers every name equal to, or starting with, one of the prefixes (`tasks.`, `retries`). */
export function deferScope(...prefixes: string[]): Scope {
  return (name) => (prefixes.some((p) => name === p || (p.endsWith('.') && name.startsWith(p))) ? DEFER : undefined);
}
