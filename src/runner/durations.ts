/** Argo durations: plain seconds ("30", 30) or Go durations ("1m30s", "500ms", "2h"). */
import { InputError } from '../core/errors.js';
import { parseGoDuration } from '../spec/health-checks.js';

export function parseDurationMs(value: string | number, where: string): number {
  if (typeof value === 'number') return value * 1000;
  const s = value.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  // the Go duration grammar the MachineHealthCheck rules read too; a sign is not a duration here
  const ms = /^[-+]/.test(s) ? undefined : parseGoDuration(s);
  if (ms === undefined) {
    throw new InputError('RUNNER_INVALID_DURATION', `${where}: invalid duration "${value}" (use seconds or e.g. 5s, 1m30s)`);
  }
  return ms;
}

/** An IntOrString that must hold a non-negative integer. */
export function parseIntOrString(value: string | number, where: string): number {
  const n = typeof value === 'number' ? value : Number(value.trim());
  if (!Number.isInteger(n) || n < 0) throw new InputError('RUNNER_INVALID_NUMBER', `${where}: "${value}" is not a non-negative integer`);
  return n;
}
