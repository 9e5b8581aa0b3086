/**
 * A MachineDeployment's rolling update limits as Cluster API reads them: an integer or a
 * percentage of the replicas (maxSurge rounds up, maxUnavailable down), with Cluster API's
 * defaults (maxSurge 1, maxUnavailable 0). Validation checks them (src/spec/checks.ts);
 * launch-nodes rolls machines by them.
 */

/** An int, or a percent of replicas; undefined when it is neither. */
export function resolveIntOrPercent(value: unknown, replicas: number, roundUp: boolean): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  if (typeof value === 'string') {
    const m = /^(\d+)%$/.exec(value);
    if (m) {
      const exact = (Number(m[1]) * replicas) / 100;
      return roundUp ? Math.ceil(exact) : Math.floor(exact);
    }
    if (/^\d+$/.test(value)) return Number(value);
  }
  return undefined;
}

/** maxSurge (`surge`) or maxUnavailable (`unavailable`) for `replicas`, the default when unset. */
export function rolloutLimit(value: unknown, replicas: number, which: 'surge' | 'unavailable'): number | undefined {
  if (value === undefined) return which === 'surge' ? 1 : 0;
  return resolveIntOrPercent(value, replicas, which === 'surge');
}

export const DELETE_POLICIES = ['Random', 'Newest', 'Oldest'] as const;
