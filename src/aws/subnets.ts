/**
 * Subnets: the ones the spec lists, or the AWS provider's layout computed
 * from the VPC block, one public and one private per zone. Found in one
 * DescribeSubnets of the VPC; missing ones are created concurrently, tagged
 * at creation; public ones map public IPs on launch. User-supplied subnets
 * are used, never tagged or deleted.
 */
import { CreateSubnetCommand, DeleteSubnetCommand, DescribeSubnetsCommand, ModifySubnetAttributeCommand, type Filter, type Subnet } from '@aws-sdk/client-ec2';
import { ConflictError } from '../core/errors.js';
import { expectAtMostOne, found } from './find.js';
import type { DesiredSubnet, ExistingSubnet } from './network-spec.js';
import type { ClusterScope } from './scope.js';
import { CAPFLOW_AZ_TAG, fromTagList, ownedFilters, ownershipOf, ownedTags, ROLE_TAG, tagSpecifications } from './tags.js';
import { deleteWaitingForDependencies, interfacesIn, placeholder, specTags, type TagUpdates } from './vpc.js';

export const PUBLIC_ROLE = 'public';
export const PRIVATE_ROLE = 'private';
const ELB_TAG = 'kubernetes.io/role/elb';
const INTERNAL_ELB_TAG = 'kubernetes.io/role/internal-elb';

export interface SubnetResult {
  id: string;
  name: string;
  az: string;
  cidr: string;
  isPublic: boolean;
  /** False for a user-supplied subnet. */
  managed: boolean;
}

async function describe(scope: ClusterScope, filters: Filter[]): Promise<Subnet[]> {
  const all: Subnet[] = [];
  let token: string | undefined;
  do {
    const out = await scope.ec2.send(new DescribeSubnetsCommand({ Filters: filters, ...(token ? { NextToken: token } : {}) }));
    all.push(...(out.Subnets ?? []));
    token = out.NextToken;
  } while (token);
  return all;
}

function toExisting(scope: ClusterScope, s: Subnet): ExistingSubnet {
  const tags = fromTagList(s.Tags);
  return {
    id: s.SubnetId!,
    az: s.AvailabilityZone ?? '',
    cidr: s.CidrBlock ?? '',
    isPublic: tags[ROLE_TAG] === PUBLIC_ROLE || tags[ELB_TAG] === '1',
    owned: ownershipOf(tags, scope.clusterName) === 'owned',
    tags,
    mapPublicIpOnLaunch: s.MapPublicIpOnLaunch === true,
  };
}

/** Every subnet of a VPC (owned or not), in one call. */
export async function describeVpcSubnets(scope: ClusterScope, vpcId: string): Promise<ExistingSubnet[]> {
  return (await describe(scope, [{ Name: 'vpc-id', Values: [vpcId] }])).map((s) => toExisting(scope, s));
}

/** The cluster's owned subnets, wherever they are (for delete, which works from tags alone). */
export async function describeOwnedSubnets(scope: ClusterScope): Promise<ExistingSubnet[]> {
  return (await describe(scope, ownedFilters(scope.clusterName))).map((s) => toExisting(scope, s));
}

export async function reconcileSubnets(
  scope: ClusterScope,
  input: { vpcId: string; desired: DesiredSubnet[]; existing: ExistingSubnet[]; tagUpdates: TagUpdates },
): Promise<SubnetResult[]> {
  const results = await Promise.all(input.desired.map((d) => reconcileSubnet(scope, d, input)));
  const wanted = new Set(results.map((r) => r.id));
  for (const e of input.existing) {
    if (e.owned && !wanted.has(e.id)) {
      scope.log.warn('Owned subnet is no longer in the spec; leaving it in place', { subnetId: e.id, cidrBlock: e.cidr });
      scope.plan.record({ resource: 'subnet', name: e.tags.Name ?? e.id, id: e.id, action: 'skip', detail: 'owned but no longer in the spec: left in place (delete the cluster network or the subnet by hand)' });
    }
  }
  return results;
}

async function reconcileSubnet(
  scope: ClusterScope,
  d: DesiredSubnet,
  input: { vpcId: string; existing: ExistingSubnet[]; tagUpdates: TagUpdates },
): Promise<SubnetResult> {
  if (d.userId) {
    scope.plan.record({ resource: 'subnet', name: d.name, id: d.userId, action: 'skip', detail: `user-supplied ${d.isPublic ? 'public' : 'private'} subnet in ${d.az}: used, not managed` });
    return { id: d.userId, name: d.name, az: d.az, cidr: d.cidr, isPublic: d.isPublic, managed: false };
  }
  const matches = input.existing.filter((e) => e.cidr === d.cidr).map((e) => found(e, e.id, e.tags, scope.clusterName));
  const have = expectAtMostOne(matches, 'subnet', `${d.name} (${d.cidr})`, scope.clusterName);
  const role = d.isPublic ? PUBLIC_ROLE : PRIVATE_ROLE;
  const wantedTags = specTags(scope, d.tags);
  if (have) {
    const e = have.item;
    if (e.az !== d.az || e.isPublic !== d.isPublic) {
      throw new ConflictError(
        'AWS_SUBNET_DRIFT',
        `subnet ${e.id} (${e.cidr}) is a ${e.isPublic ? 'public' : 'private'} subnet in ${e.az}; the spec wants a ${role} subnet in ${d.az}`,
        { hint: 'a subnet cannot move or change role: change the spec back, or delete the subnet by hand and run again' },
      );
    }
    const details: string[] = [];
    const tagDetail = input.tagUpdates.diff(e.id, e.tags, wantedTags);
    if (tagDetail) details.push(tagDetail);
    if (d.isPublic && !e.mapPublicIpOnLaunch) {
      details.push('map public IP on launch');
      if (!scope.dryRun) await scope.ec2.send(new ModifySubnetAttributeCommand({ SubnetId: e.id, MapPublicIpOnLaunch: { Value: true } }));
    }
    scope.plan.record({ resource: 'subnet', name: d.name, id: e.id, action: details.length > 0 ? 'update' : 'no-change', ...(details.length > 0 ? { detail: details.join('; ') } : {}) });
    return { id: e.id, name: d.name, az: d.az, cidr: d.cidr, isPublic: d.isPublic, managed: true };
  }
  scope.plan.record({ resource: 'subnet', name: d.name, action: 'create', detail: `${d.cidr} in ${d.az}${d.detail ? ` (${d.detail})` : ''}` });
  if (scope.dryRun) return { id: placeholder('subnet', d.name), name: d.name, az: d.az, cidr: d.cidr, isPublic: d.isPublic, managed: true };
  scope.log.info('Creating subnet', { name: d.name, cidrBlock: d.cidr, availabilityZone: d.az, public: d.isPublic });
  const tags = ownedTags(scope, role, d.name, { ...d.tags, [CAPFLOW_AZ_TAG]: d.az, [d.isPublic ? ELB_TAG : INTERNAL_ELB_TAG]: '1' });
  const out = await scope.ec2.send(
    new CreateSubnetCommand({ VpcId: input.vpcId, CidrBlock: d.cidr, AvailabilityZone: d.az, TagSpecifications: tagSpecifications('subnet', tags) }),
  );
  const id = out.Subnet!.SubnetId!;
  if (d.isPublic) await scope.ec2.send(new ModifySubnetAttributeCommand({ SubnetId: id, MapPublicIpOnLaunch: { Value: true } }));
  return { id, name: d.name, az: d.az, cidr: d.cidr, isPublic: d.isPublic, managed: true };
}

/** Deletes owned subnets concurrently; each waits out its dependencies (instances, NAT gateways, load balancers going away). */
export async function deleteSubnets(scope: ClusterScope, subnets: ExistingSubnet[]): Promise<void> {
  await Promise.all(
    subnets
      .filter((s) => s.owned)
      .map(async (s) => {
        scope.plan.record({ resource: 'subnet', name: s.tags.Name ?? s.id, id: s.id, action: 'delete' });
        if (scope.dryRun) return;
        scope.log.info('Deleting subnet', { subnetId: s.id });
        await deleteWaitingForDependencies(
          scope,
          `subnet ${s.id}`,
          () => scope.ec2.send(new DeleteSubnetCommand({ SubnetId: s.id })),
          () => interfacesIn(scope, 'subnet-id', s.id),
        );
      }),
  );
}
