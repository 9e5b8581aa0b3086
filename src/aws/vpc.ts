/**
 * The VPC: find by the cluster's ownership tag, create with DNS hostnames and
 * support on, or use (never tag, never delete) a user-supplied one. Also the
 * few EC2 helpers every network family shares: a dry-run guard, tag updates
 * batched into one call per tag set, and deletes that wait out
 * DependencyViolation.
 */
import {
  CreateTagsCommand,
  CreateVpcCommand,
  DeleteVpcCommand,
  DescribeInternetGatewaysCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  DescribeVpcAttributeCommand,
  DescribeVpcsCommand,
  ModifyVpcAttributeCommand,
  type Vpc,
} from '@aws-sdk/client-ec2';
import { ConflictError, TransientError } from '../core/errors.js';
import { expectAtMostOne, found, isDependencyViolation, isNotFound, type Found } from './find.js';
import type { ClusterScope } from './scope.js';
import { CAPFLOW_REVISION_TAG, capaClusterTag, fromTagList, ownedTags, tagSpecifications, toTagList } from './tags.js';
import { waitFor } from './wait.js';

export const VPC_ROLE = 'common';

export interface VpcResult {
  id: string;
  cidr: string;
  /** False for a user-supplied VPC. */
  managed: boolean;
  /** True when capflow knows DNS hostnames and support are on (set or verified this run, or before). */
  dnsVerified: boolean;
  /** True when the VPC is made by this run (or would be, in a dry run). */
  created: boolean;
}

/** Placeholder id of a resource a dry run would create. */
export function placeholder(kind: string, name: string): string {
  return `(new ${kind} ${name})`;
}

export function isPlaceholder(id: string | undefined): boolean {
  return id === undefined || id.startsWith('(new ');
}

// --- shared helpers -------------------------------------------------------------------

/**
 * Tag values that differ from what the spec asks (additionalTags, a subnet's
 * tags). Tags are set at creation; when the spec's own tags change later,
 * only the changed keys are written, one CreateTags per distinct change.
 * The revision tag is rewritten for every resource a run changes (network.ts stampRevision).
 */
export class TagUpdates {
  private readonly byChange = new Map<string, { tags: Record<string, string>; ids: string[] }>();
  private readonly keysById = new Map<string, string[]>();

  /** `revision`: written with every change, so the resource says which commit last wrote it. */
  constructor(private readonly revision?: string) {}

  /** The keys of `wanted` whose values differ in `actual`; records them for `apply`. */
  diff(id: string, actual: Record<string, string>, wanted: Record<string, string>): string | undefined {
    const change: Record<string, string> = {};
    for (const [k, v] of Object.entries(wanted)) if (actual[k] !== v) change[k] = v;
    const keys = Object.keys(change).sort();
    if (keys.length === 0) return undefined;
    this.keysById.set(id, keys);
    if (this.revision !== undefined) change[CAPFLOW_REVISION_TAG] = this.revision;
    const key = JSON.stringify(Object.keys(change).sort().map((k) => [k, change[k]]));
    const entry = this.byChange.get(key) ?? { tags: change, ids: [] };
    entry.ids.push(id);
    this.byChange.set(key, entry);
    return `tags ${keys.map((k) => `${k}=${change[k]}`).join(', ')}`;
  }

  /** Resources whose tag update carries the revision already. */
  stamped(): ReadonlySet<string> {
    return new Set(this.revision === undefined ? [] : this.keysById.keys());
  }

  /** The tag keys `diff` found changed on a resource (for the plan entry's spec field). */
  changedKeys(id: string | undefined): readonly string[] {
    return (id && this.keysById.get(id)) || [];
  }

  async apply(scope: ClusterScope): Promise<void> {
    if (scope.dryRun) return;
    for (const { tags, ids } of this.byChange.values()) {
      for (let i = 0; i < ids.length; i += 500) {
        scope.log.info('Updating tags', { resources: ids.length, keys: Object.keys(tags).join(',') });
        await scope.ec2.send(new CreateTagsCommand({ Resources: ids.slice(i, i + 500), Tags: toTagList(tags) }));
      }
    }
    this.byChange.clear();
  }
}

/** The tags a resource's spec asks for beyond ownership and provenance. */
export function specTags(scope: ClusterScope, extra: Record<string, string> = {}): Record<string, string> {
  return { ...(scope.additionalTags ?? {}), ...extra };
}

/**
 * Runs a delete, treating NotFound as done and retrying DependencyViolation
 * with backoff until the dependency goes or the deadline passes; then the
 * error names the resource and, when `blockers` finds them, what holds it.
 */
export async function deleteWaitingForDependencies(
  scope: ClusterScope,
  what: string,
  call: () => Promise<unknown>,
  blockers?: () => Promise<string[]>,
): Promise<void> {
  let fatal: Error | undefined;
  try {
    await waitFor(
      async () => {
        try {
          await call();
          return true;
        } catch (err) {
          if (isNotFound(err)) return true;
          if (isDependencyViolation(err)) {
            scope.log.debug('Waiting for dependencies to go', { resource: what });
            return undefined;
          }
          fatal = err instanceof Error ? err : new Error(JSON.stringify(err));
          return true;
        }
      },
      { description: `${what} to have no dependencies`, timeoutMs: scope.timeouts.dependencyMs, minDelayMs: 200, maxDelayMs: 10_000, signal: scope.signal },
    );
  } catch (err) {
    const held = blockers ? await blockers().catch(() => []) : [];
    throw new TransientError('AWS_DEPENDENCY_VIOLATION', `failed to delete ${what}: still in use${held.length > 0 ? ` by ${held.join(', ')}` : ''}`, {
      cause: err,
      hint: held.length > 0 ? `delete ${held.join(', ')} (not owned by capflow, or still going away), then run again` : 'run again once its dependencies are gone',
      details: { resource: what, blockers: held },
    });
  }
  if (fatal !== undefined) throw fatal;
}

/** Network interfaces in a VPC or subnet: what usually blocks deleting it. */
export async function interfacesIn(scope: ClusterScope, filter: 'vpc-id' | 'subnet-id', id: string): Promise<string[]> {
  const out = await scope.ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: filter, Values: [id] }] }));
  return (out.NetworkInterfaces ?? []).map((n) => `${n.NetworkInterfaceId}${n.Description ? ` (${n.Description})` : ''}`);
}

/** What keeps a VPC from going: subnets, attached gateways, non-default security groups, interfaces. */
export async function vpcBlockers(scope: ClusterScope, vpcId: string): Promise<string[]> {
  const inVpc = [{ Name: 'vpc-id', Values: [vpcId] }];
  const [subnets, gateways, groups, interfaces] = await Promise.all([
    scope.ec2.send(new DescribeSubnetsCommand({ Filters: inVpc })),
    scope.ec2.send(new DescribeInternetGatewaysCommand({ Filters: [{ Name: 'attachment.vpc-id', Values: [vpcId] }] })),
    scope.ec2.send(new DescribeSecurityGroupsCommand({ Filters: inVpc })),
    interfacesIn(scope, 'vpc-id', vpcId),
  ]);
  return [
    ...(subnets.Subnets ?? []).map((x) => `subnet ${x.SubnetId}`),
    ...(gateways.InternetGateways ?? []).map((x) => `internet gateway ${x.InternetGatewayId}`),
    ...(groups.SecurityGroups ?? []).filter((g) => g.GroupName !== 'default').map((g) => `security group ${g.GroupId}`),
    ...interfaces.map((i) => `network interface ${i}`),
  ];
}

// --- the VPC --------------------------------------------------------------------------

export function vpcName(clusterName: string): string {
  return `${clusterName}-vpc`;
}

/** VPCs tagged for the cluster (owned or shared), in one call. */
export async function describeClusterVpcs(scope: ClusterScope): Promise<Array<Found<Vpc>>> {
  const out = await scope.ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: 'tag-key', Values: [capaClusterTag(scope.clusterName)] }] }));
  return (out.Vpcs ?? []).filter((v) => v.State !== 'deleting').map((v) => found(v, v.VpcId, fromTagList(v.Tags), scope.clusterName));
}

/** A user-supplied VPC by id; undefined when it does not exist. */
export async function describeUserVpc(scope: ClusterScope, id: string): Promise<Vpc | undefined> {
  try {
    const out = await scope.ec2.send(new DescribeVpcsCommand({ VpcIds: [id] }));
    return out.Vpcs?.[0];
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * The cluster's own VPC among those found: one owned is used; none is
 * created; a shared-tagged one the spec does not name is refused (adopt it by
 * tagging it owned, or name it in spec.network.vpc.id); two owned is a conflict.
 */
export function pickOwnedVpc(scope: ClusterScope, vpcs: Array<Found<Vpc>>): Found<Vpc> | undefined {
  const owned = vpcs.filter((v) => v.ownership === 'owned');
  return expectAtMostOne(owned.length > 0 ? owned : vpcs, 'VPC', vpcName(scope.clusterName), scope.clusterName);
}

export async function reconcileVpc(
  scope: ClusterScope,
  input: { cidr: string; existing: Found<Vpc> | undefined; dnsVerifiedFor?: string; tagUpdates: TagUpdates },
): Promise<VpcResult> {
  const name = vpcName(scope.clusterName);
  const { existing } = input;
  if (existing) {
    const vpc = existing.item;
    if (vpc.CidrBlock !== input.cidr) {
      throw new ConflictError('AWS_VPC_CIDR_DRIFT', `VPC ${existing.id} has block ${vpc.CidrBlock}, the spec asks for ${input.cidr}; a VPC's primary block cannot change`, {
        hint: `restore spec.network.vpc.cidrBlock to ${vpc.CidrBlock}, or delete the cluster's network (capflow step provision-vpc --delete) to make a new one`,
      });
    }
    const details: string[] = [];
    const tagDetail = input.tagUpdates.diff(existing.id, existing.tags, specTags(scope));
    if (tagDetail) details.push(tagDetail);
    let dnsVerified = input.dnsVerifiedFor === existing.id;
    if (!dnsVerified) {
      // Two reads; the executor remembers the answer in the status secret, so a rerun skips them.
      const [hostnames, support] = await Promise.all([
        scope.ec2.send(new DescribeVpcAttributeCommand({ VpcId: existing.id, Attribute: 'enableDnsHostnames' })),
        scope.ec2.send(new DescribeVpcAttributeCommand({ VpcId: existing.id, Attribute: 'enableDnsSupport' })),
      ]);
      const fix: Array<'hostnames' | 'support'> = [];
      if (support.EnableDnsSupport?.Value !== true) fix.push('support');
      if (hostnames.EnableDnsHostnames?.Value !== true) fix.push('hostnames');
      if (fix.length > 0) {
        details.push(`DNS ${fix.join(' and ')} on`);
        if (!scope.dryRun) await enableDns(scope, existing.id, fix);
      }
      dnsVerified = !scope.dryRun || fix.length === 0;
    }
    scope.plan.record({ resource: 'vpc', name, id: existing.id, action: details.length > 0 ? 'update' : 'no-change', ...(details.length > 0 ? { detail: details.join('; ') } : {}) });
    return { id: existing.id, cidr: input.cidr, managed: true, dnsVerified, created: false };
  }
  scope.plan.record({ resource: 'vpc', name, action: 'create', detail: `${input.cidr}, DNS hostnames and support on` });
  if (scope.dryRun) return { id: placeholder('vpc', name), cidr: input.cidr, managed: true, dnsVerified: false, created: true };
  scope.log.info('Creating VPC', { name, cidrBlock: input.cidr });
  const out = await scope.ec2.send(new CreateVpcCommand({ CidrBlock: input.cidr, TagSpecifications: tagSpecifications('vpc', ownedTags(scope, VPC_ROLE, name)) }));
  const id = out.Vpc!.VpcId!;
  scope.log.info('Enabling VPC DNS hostnames and support', { vpcId: id });
  await enableDns(scope, id, ['support', 'hostnames']);
  return { id, cidr: input.cidr, managed: true, dnsVerified: true, created: true };
}

async function enableDns(scope: ClusterScope, vpcId: string, which: Array<'hostnames' | 'support'>): Promise<void> {
  // One attribute per call (an EC2 rule); support first, hostnames need it.
  if (which.includes('support')) await scope.ec2.send(new ModifyVpcAttributeCommand({ VpcId: vpcId, EnableDnsSupport: { Value: true } }));
  if (which.includes('hostnames')) await scope.ec2.send(new ModifyVpcAttributeCommand({ VpcId: vpcId, EnableDnsHostnames: { Value: true } }));
}

/** Deletes the cluster's owned VPCs; shared and unowned ones are never touched. */
export async function deleteVpcs(scope: ClusterScope, vpcs: Array<Found<Vpc>>): Promise<void> {
  for (const v of vpcs) {
    if (v.ownership !== 'owned') {
      scope.plan.record({ resource: 'vpc', name: v.tags.Name ?? v.id, id: v.id, action: 'skip', detail: `${v.ownership}, not owned by ${scope.clusterName}` });
      continue;
    }
    scope.plan.record({ resource: 'vpc', name: v.tags.Name ?? v.id, id: v.id, action: 'delete' });
    if (scope.dryRun) continue;
    scope.log.info('Deleting VPC', { vpcId: v.id });
    await deleteWaitingForDependencies(
      scope,
      `VPC ${v.id}`,
      () => scope.ec2.send(new DeleteVpcCommand({ VpcId: v.id })),
      () => vpcBlockers(scope, v.id),
    );
  }
}
