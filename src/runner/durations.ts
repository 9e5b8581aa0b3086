/** Argo durations: plain seconds ("30", 30) or Go durations ("1m30s", "500ms", "2h"). */
import { InputError } from '../core/errors.js';

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDurationMs(value: string | number, where: string): number {
  if (typeof value === 'number') return value * 1000;
  const s = value.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== s.length) {
    throw new InputError('RUNNER_INVALID_DURATION', `${where}: invalid duration "${value}" (use seconds or e.g. 5s, 1m30s)`);
  }
  return total;
}

/** An IntOrString that must hold a non-negative integer. */
export function parseIntOrString(value: string | number, where: string): number {
  const n = typeof value === 'number' ? value : Number(value.trim());
  if (!Number.isInteger(n) || n < 0) throw new InputError('RUNNER_INVALID_NUMBER', `${where}: "${value}" is not a non-negative integer`);
  return n;
}
