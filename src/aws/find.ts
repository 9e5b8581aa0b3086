/**
 * Find by tag, then create: the answers every reconciler needs from a
 * Describe call. Zero found: create. One owned: use it. One found but not
 * owned: refuse, saying how to adopt it. Two or more: a conflict a person
 * must resolve (capflow never guesses which one is real).
 */
import { ConflictError } from '../core/errors.js';
import { adoptHint, ownershipOf, type Ownership } from './tags.js';

export interface Found<T> {
  item: T;
  id: string;
  tags: Record<string, string>;
  ownership: Ownership;
}

/**
 * Picks the one resource of `kind` named `name` among those found. `owned`
 * resources are accepted; `shared` ones only when `allowShared`.
 */
export function expectAtMostOne<T>(
  found: Array<Found<T>>,
  kind: string,
  name: string,
  clusterName: string,
  options: { allowShared?: boolean } = {},
): Found<T> | undefined {
  if (found.length === 0) return undefined;
  if (found.length > 1) {
    throw new ConflictError('AWS_DUPLICATE_RESOURCE', `found ${found.length} ${kind}s for ${name}: ${found.map((f) => f.id).join(', ')}`, {
      hint: `delete the extra ${kind}s (keep the one the cluster uses), then run again`,
      details: { kind, name, ids: found.map((f) => f.id) },
    });
  }
  const one = found[0]!;
  if (one.ownership === 'owned' || (one.ownership === 'shared' && options.allowShared)) return one;
  throw new ConflictError('AWS_NOT_OWNED', `${kind} ${one.id} matches ${name} but is not owned by cluster ${clusterName}`, {
    hint: adoptHint(kind, one.id, clusterName),
    details: { kind, id: one.id },
  });
}

export function found<T>(item: T, id: string | undefined, tags: Record<string, string>, clusterName: string): Found<T> {
  return { item, id: id ?? '', tags, ownership: ownershipOf(tags, clusterName) };
}

/** AWS error name, for telling NotFound and DependencyViolation apart. */
export function awsErrorName(err: unknown): string {
  return typeof err === 'object' && err !== null && 'name' in err ? String(err.name) : '';
}

/** True for the NotFound answers of EC2, ELB and ELBv2 (deletion treats them as success). */
export function isNotFound(err: unknown): boolean {
  const name = awsErrorName(err);
  return /NotFound|\.NotFound$|^InvalidAllocationID\.NotFound$|LoadBalancerNotFound|TargetGroupNotFound|AccessPointNotFound/.test(name);
}

export function isDependencyViolation(err: unknown): boolean {
  const name = awsErrorName(err);
  return name === 'DependencyViolation' || name === 'ResourceInUse' || name === 'InvalidDependencyViolation';
}
