/**
 * What a run did or, with --dry-run, would do: one entry per resource with
 * its action. Reconcilers record into the plan whether or not they act, so
 * the dry run and the real run are the same code path.
 *
 * An entry names the spec field that asks for the resource or its change
 * (`spec`), and the plan, bound to the loaded model, turns it into the field's
 * display path and its file:line in Git: drift is reported where it is fixed.
 */
import path from 'node:path';
import { fieldLocation, formatPath, type ClusterModel, type PathSegment } from '../spec/index.js';

export type PlanAction = 'create' | 'update' | 'no-change' | 'delete' | 'skip';

/** A field of a spec document: `AWSCluster/dev` and `['spec', 'network', 'subnets', 2]`. */
export interface SpecRef {
  kind: string;
  name: string;
  path: readonly PathSegment[];
}

export interface PlanEntry {
  /** Resource kind, e.g. vpc, subnet, nat-gateway, security-group, load-balancer. */
  resource: string;
  /** A stable name (the Name tag or a role/AZ label). */
  name: string;
  action: PlanAction;
  id?: string;
  /** What changes, or why it is skipped (unowned, shared). */
  detail?: string;
  /** The spec field behind the entry, as given by the reconciler; resolved into field and source. */
  spec?: SpecRef;
  /** The field's display name: `MachineDeployment/dev-md-0 spec.replicas`. */
  field?: string;
  /** Where the field is written: `clusters/dev/workers.yaml:14` (the nearest written parent for a default). */
  source?: string;
}

/** The actions that change the world: what cluster-plan counts as drift. */
export function isChange(e: PlanEntry): boolean {
  return e.action === 'create' || e.action === 'update' || e.action === 'delete';
}

/** Names the spec field of an entry its reconciler gave none (by resource kind, name, tag keys...). */
export type SpecFallback = (entry: PlanEntry) => SpecRef | undefined;

export class Plan {
  private readonly list: PlanEntry[] = [];
  private model: ClusterModel | undefined;
  private root: string | undefined;
  private readonly fallbacks: SpecFallback[] = [];

  /**
   * Entries recorded from now on get their spec field's file:line from `model`, the file named
   * relative to `repoRoot` (its path in Git) when given, else as problems name it.
   */
  bind(model: ClusterModel, repoRoot?: string): this {
    this.model = model;
    this.root = repoRoot;
    return this;
  }

  /**
   * A family-wide rule for the field behind entries recorded without one: provision-vpc knows the
   * AWSCluster, the network families below it need not. The first fallback that answers wins.
   */
  fallback(f: SpecFallback): this {
    this.fallbacks.push(f);
    return this;
  }

  record(entry: PlanEntry): void {
    const { spec: given, ...rest } = entry;
    let spec = given;
    for (const f of this.fallbacks) {
      if (spec) break;
      spec = f(entry);
    }
    if (!spec) {
      this.list.push(rest);
      return;
    }
    const loc = this.model ? fieldLocation(this.model, spec, spec.path) : undefined;
    const file = loc && (this.root && loc.absPath ? path.relative(this.root, loc.absPath).split(path.sep).join('/') : loc.file);
    this.list.push({ ...rest, field: `${spec.kind}/${spec.name} ${formatPath(spec.path)}`.trimEnd(), ...(loc ? { source: `${file}:${loc.line}` } : {}) });
  }

  entries(): readonly PlanEntry[] {
    return this.list;
  }

  /** The entries that would change something. */
  changes(): PlanEntry[] {
    return this.list.filter(isChange);
  }

  /** Counts by action, for the summary line. */
  counts(): Record<PlanAction, number> {
    const out: Record<PlanAction, number> = { create: 0, update: 0, 'no-change': 0, delete: 0, skip: 0 };
    for (const e of this.list) out[e.action] += 1;
    return out;
  }

  /** An aligned table for operators; the spec column shows the field and where it is written. */
  format(): string {
    return formatPlanTable(this.list);
  }
}

/** The spec column comes last and only when an entry has a field, so plans without fields read as before. */
export function formatPlanTable(entries: readonly PlanEntry[]): string {
  const withSpec = entries.some((e) => e.field);
  const specCell = (e: PlanEntry): string => (e.field ? `${e.field}${e.source ? ` (${e.source})` : ''}` : '-');
  const rows = [
    ['ACTION', 'RESOURCE', 'NAME', 'ID', 'DETAIL', ...(withSpec ? ['SPEC'] : [])],
    ...entries.map((e) => [e.action, e.resource, e.name, e.id ?? '-', e.detail ?? '', ...(withSpec ? [specCell(e)] : [])]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}
