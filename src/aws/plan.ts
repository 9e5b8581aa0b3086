/**
 * What a run did or, with --dry-run, would do: one entry per resource with
 * its action. Reconcilers record into the plan whether or not they act, so
 * the dry run and the real run are the same code path.
 */
export type PlanAction = 'create' | 'update' | 'no-change' | 'delete' | 'skip';

export interface PlanEntry {
  /** Resource kind, e.g. vpc, subnet, nat-gateway, security-group, load-balancer. */
  resource: string;
  /** A stable name (the Name tag or a role/AZ label). */
  name: string;
  action: PlanAction;
  id?: string;
  /** What changes, or why it is skipped (unowned, shared). */
  detail?: string;
}

export class Plan {
  private readonly list: PlanEntry[] = [];

  record(entry: PlanEntry): void {
    this.list.push(entry);
  }

  entries(): readonly PlanEntry[] {
    return this.list;
  }

  /** Counts by action, for the summary line. */
  counts(): Record<PlanAction, number> {
    const out: Record<PlanAction, number> = { create: 0, update: 0, 'no-change': 0, delete: 0, skip: 0 };
    for (const e of this.list) out[e.action] += 1;
    return out;
  }

  /** An aligned table for operators. */
  format(): string {
    const rows = [['ACTION', 'RESOURCE', 'NAME', 'ID', 'DETAIL'], ...this.list.map((e) => [e.action, e.resource, e.name, e.id ?? '-', e.detail ?? ''])];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
  }
}
