/**
 * What the last plan or apply of each AWS step found, kept in the cluster's
 * status secret under `drift.<step>`: every difference with the spec field
 * and file:line behind it, and, from a plan, which commit last wrote each
 * resource family (its revision tags). `capflow status CLUSTER` prints them.
 */
import type { SecretStore } from './secrets.js';
import { statusSecretName } from './status.js';

/** A plan entry that changes something (the shape of src/aws/plan.ts PlanEntry, as stored). */
export interface DriftEntry {
  resource: string;
  name: string;
  action: string;
  id?: string;
  detail?: string;
  /** `MachineDeployment/dev-md-0 spec.replicas` */
  field?: string;
  /** `clusters/dev/workers.yaml:14` */
  source?: string;
}

export interface DriftReport {
  step: string;
  /** plan: found by a dry run (cluster-plan); apply: what an apply changed, after which the step is in sync. */
  mode: 'plan' | 'apply';
  /** The commit the run was pinned to. */
  revision: string;
  at: string;
  changes: DriftEntry[];
  /** Entries beyond the kept ones (the secret stays small). */
  omitted?: number;
  /** Resource family → revision tag → how many resources carry it. */
  provenance?: Record<string, Record<string, number>>;
}

const PREFIX = 'drift.';
/** Enough to act on; a secret holds at most 1 MiB, shared with every step's status. */
const MAX_ENTRIES = 200;

export function driftKey(step: string): string {
  return `${PREFIX}${step}`;
}

export async function writeDriftReport(store: SecretStore, clusterName: string, report: Omit<DriftReport, 'omitted'>): Promise<void> {
  const name = statusSecretName(clusterName);
  const kept = report.changes.slice(0, MAX_ENTRIES).map(({ resource, name: n, action, id, detail, field, source }) => ({
    resource,
    name: n,
    action,
    ...(id !== undefined ? { id } : {}),
    ...(detail !== undefined ? { detail } : {}),
    ...(field !== undefined ? { field } : {}),
    ...(source !== undefined ? { source } : {}),
  }));
  const value: DriftReport = { ...report, changes: kept, ...(report.changes.length > kept.length ? { omitted: report.changes.length - kept.length } : {}) };
  const data = { ...((await store.get(name)) ?? {}) };
  data[driftKey(report.step)] = JSON.stringify(value);
  await store.put(name, data, { 'capflow.io/cluster': clusterName });
}

/** Every step's report for the cluster, by step. */
export function driftReportsOf(data: Record<string, string> | undefined): DriftReport[] {
  const out: DriftReport[] = [];
  for (const [key, raw] of Object.entries(data ?? {})) {
    if (!key.startsWith(PREFIX)) continue;
    try {
      out.push(JSON.parse(raw) as DriftReport);
    } catch {
      // A report another version wrote in another shape: skipped, the next plan rewrites it.
    }
  }
  return out.sort((a, b) => a.step.localeCompare(b.step));
}
