/**
 * NAT gateways and their Elastic IPs: one per zone that has a public subnet
 * (or one shared, with the AWSCluster annotation capflow.io/nat-gateways:
 * single). Both are found by ownership tag and zone tag in one Describe
 * each; zones are worked on concurrently; creation carries a client token
 * derived from the cluster, the zone and the subnet/address it uses, so a
 * retried call cannot make a second gateway. Waiting for "available" polls
 * all pending gateways with one filtered Describe.
 */
import {
  AllocateAddressCommand,
  CreateNatGatewayCommand,
  DeleteNatGatewayCommand,
  DescribeAddressesCommand,
  DescribeNatGatewaysCommand,
  ReleaseAddressCommand,
  type Address,
  type NatGateway,
} from '@aws-sdk/client-ec2';
import { ConflictError, TransientError } from '../core/errors.js';
import { awsErrorName, expectAtMostOne, found, isNotFound, type Found } from './find.js';
import type { NatMode } from '../spec/index.js';
import type { ClusterScope } from './scope.js';
import type { SubnetResult } from './subnets.js';
import { CAPFLOW_AZ_TAG, fromTagList, ownedFilters, ownedTags, tagSpecifications } from './tags.js';
import { clientToken } from './tokens.js';
import { deleteWaitingForDependencies, isPlaceholder, placeholder, specTags, type TagUpdates } from './vpc.js';
import { waitFor } from './wait.js';

export const NAT_ROLE = 'common';
export const NAT_EIP_ROLE = 'nat';

export interface NatGatewayResult {
  az: string;
  id: string;
  subnetId: string;
  allocationId: string;
  publicIp?: string;
}

export function natGatewayName(clusterName: string, az: string): string {
  return `${clusterName}-nat-${az}`;
}

export function natEipName(clusterName: string, az: string): string {
  return `${clusterName}-eip-nat-${az}`;
}

/** The cluster's owned NAT Elastic IPs, in one call. */
export async function describeNatAddresses(scope: ClusterScope): Promise<Array<Found<Address>>> {
  const out = await scope.ec2.send(new DescribeAddressesCommand({ Filters: ownedFilters(scope.clusterName, NAT_EIP_ROLE) }));
  return (out.Addresses ?? []).map((a) => found(a, a.AllocationId, fromTagList(a.Tags), scope.clusterName));
}

/** The cluster's owned NAT gateways in the given states, in one call (paged). */
export async function describeNatGateways(scope: ClusterScope, states = ['pending', 'available']): Promise<Array<Found<NatGateway>>> {
  const all: NatGateway[] = [];
  let token: string | undefined;
  do {
    const out = await scope.ec2.send(
      new DescribeNatGatewaysCommand({ Filter: [...ownedFilters(scope.clusterName), { Name: 'state', Values: states }], ...(token ? { NextToken: token } : {}) }),
    );
    all.push(...(out.NatGateways ?? []));
    token = out.NextToken;
  } while (token);
  // The ownership filter again on our side: moto's DescribeNatGateways ignores tag filters (it
  // knows nat-gateway-id, vpc-id, subnet-id and state only), so in an account of many clusters it
  // answers with every cluster's gateways. AWS filters; this costs nothing there.
  return all.map((n) => found(n, n.NatGatewayId, fromTagList(n.Tags), scope.clusterName)).filter((f) => f.ownership === 'owned');
}

/** The zones that get a NAT gateway, each with the public subnet it lives in. */
export function natPlacements(subnets: SubnetResult[], mode: NatMode): Array<{ az: string; subnet: SubnetResult }> {
  if (!subnets.some((s) => !s.isPublic)) return [];
  const firstPublic = new Map<string, SubnetResult>();
  for (const s of [...subnets].sort((a, b) => a.az.localeCompare(b.az) || a.cidr.localeCompare(b.cidr))) {
    if (s.isPublic && !firstPublic.has(s.az)) firstPublic.set(s.az, s);
  }
  const all = [...firstPublic.entries()].map(([az, subnet]) => ({ az, subnet }));
  return mode === 'single' ? all.slice(0, 1) : all;
}

export async function reconcileNatGateways(
  scope: ClusterScope,
  input: {
    placements: Array<{ az: string; subnet: SubnetResult }>;
    addresses: Array<Found<Address>>;
    gateways: Array<Found<NatGateway>>;
    tagUpdates: TagUpdates;
  },
): Promise<NatGatewayResult[]> {
  const results = await Promise.all(input.placements.map((p) => reconcileZone(scope, p, input)));
  const wanted = new Set(results.map((r) => r.id));
  for (const g of input.gateways) {
    if (!wanted.has(g.id)) {
      scope.plan.record({ resource: 'nat-gateway', name: g.tags.Name ?? g.id, id: g.id, action: 'skip', detail: 'owned but no longer in the spec: left in place' });
    }
  }
  const pending = results.filter((r) => !isPlaceholder(r.id) && input.gateways.find((g) => g.id === r.id)?.item.State !== 'available');
  if (pending.length > 0 && !scope.dryRun) await waitAvailable(scope, pending.map((r) => r.id));
  return results;
}

async function reconcileZone(
  scope: ClusterScope,
  { az, subnet }: { az: string; subnet: SubnetResult },
  input: { addresses: Array<Found<Address>>; gateways: Array<Found<NatGateway>>; tagUpdates: TagUpdates },
): Promise<NatGatewayResult> {
  const natName = natGatewayName(scope.clusterName, az);
  const eipName = natEipName(scope.clusterName, az);
  const inZone = <T>(list: Array<Found<T>>): Array<Found<T>> => list.filter((f) => f.tags[CAPFLOW_AZ_TAG] === az);
  const gateway = expectAtMostOne(inZone(input.gateways), 'NAT gateway', natName, scope.clusterName);
  if (gateway) {
    const details: string[] = [];
    const tagDetail = input.tagUpdates.diff(gateway.id, gateway.tags, specTags(scope));
    if (tagDetail) details.push(tagDetail);
    if (gateway.item.State === 'pending') details.push('waiting until available');
    const allocationId = gateway.item.NatGatewayAddresses?.[0]?.AllocationId ?? '';
    // Its address, when found, is reported as is (tags kept up to date too).
    const address = input.addresses.find((a) => a.id === allocationId);
    if (address) {
      const eipTagDetail = input.tagUpdates.diff(address.id, address.tags, specTags(scope));
      scope.plan.record({ resource: 'elastic-ip', name: eipName, id: address.id, action: eipTagDetail ? 'update' : 'no-change', ...(eipTagDetail ? { detail: eipTagDetail } : {}) });
    }
    scope.plan.record({ resource: 'nat-gateway', name: natName, id: gateway.id, action: details.length > 0 ? 'update' : 'no-change', ...(details.length > 0 ? { detail: details.join('; ') } : {}) });
    return { az, id: gateway.id, subnetId: gateway.item.SubnetId ?? subnet.id, allocationId, ...(gateway.item.NatGatewayAddresses?.[0]?.PublicIp ? { publicIp: gateway.item.NatGatewayAddresses[0].PublicIp } : {}) };
  }

  const address = expectAtMostOne(inZone(input.addresses), 'Elastic IP', eipName, scope.clusterName);
  let allocationId: string;
  let publicIp: string | undefined;
  if (address) {
    allocationId = address.id;
    publicIp = address.item.PublicIp;
    if (address.item.AssociationId) {
      throw new ConflictError('AWS_EIP_IN_USE', `Elastic IP ${address.id} (${address.item.PublicIp}) of ${natName} is associated with ${address.item.AssociationId}`, {
        hint: 'disassociate it (or release it), then run again',
      });
    }
    scope.plan.record({ resource: 'elastic-ip', name: eipName, id: address.id, action: 'no-change' });
  } else {
    scope.plan.record({ resource: 'elastic-ip', name: eipName, action: 'create', detail: `for ${natName}` });
    if (scope.dryRun) {
      allocationId = placeholder('elastic-ip', eipName);
    } else {
      scope.log.info('Allocating Elastic IP', { name: eipName, availabilityZone: az });
      const out = await scope.ec2.send(
        new AllocateAddressCommand({ Domain: 'vpc', TagSpecifications: tagSpecifications('elastic-ip', ownedTags(scope, NAT_EIP_ROLE, eipName, { [CAPFLOW_AZ_TAG]: az })) }),
      );
      allocationId = out.AllocationId!;
      publicIp = out.PublicIp;
    }
  }

  scope.plan.record({ resource: 'nat-gateway', name: natName, action: 'create', detail: `in ${subnet.name}` });
  if (scope.dryRun) return { az, id: placeholder('nat-gateway', natName), subnetId: subnet.id, allocationId, ...(publicIp ? { publicIp } : {}) };
  scope.log.info('Creating NAT gateway', { name: natName, subnetId: subnet.id, allocationId });
  const out = await scope.ec2.send(
    new CreateNatGatewayCommand({
      SubnetId: subnet.id,
      AllocationId: allocationId,
      ClientToken: clientToken(scope.clusterName, `nat-gateway/${az}`, { subnetId: subnet.id, allocationId }),
      TagSpecifications: tagSpecifications('natgateway', ownedTags(scope, NAT_ROLE, natName, { [CAPFLOW_AZ_TAG]: az })),
    }),
  );
  return { az, id: out.NatGateway!.NatGatewayId!, subnetId: subnet.id, allocationId, ...(publicIp ? { publicIp } : {}) };
}

async function waitAvailable(scope: ClusterScope, ids: string[]): Promise<void> {
  scope.log.info('Waiting for NAT gateways to be available', { natGatewayIds: ids.join(',') });
  let failed: NatGateway[] = [];
  await waitFor(
    async () => {
      const out = await scope.ec2.send(new DescribeNatGatewaysCommand({ NatGatewayIds: ids }));
      const gws = out.NatGateways ?? [];
      failed = gws.filter((g) => g.State === 'failed');
      if (failed.length > 0) return true;
      return gws.length === ids.length && gws.every((g) => g.State === 'available') ? true : undefined;
    },
    { description: `NAT gateways ${ids.join(', ')} to be available`, timeoutMs: scope.timeouts.natGatewayMs, minDelayMs: 1000, maxDelayMs: 15_000, signal: scope.signal },
  );
  if (failed.length > 0) {
    const f = failed[0]!;
    throw new TransientError('AWS_NAT_GATEWAY_FAILED', `NAT gateway ${f.NatGatewayId} failed: ${f.FailureCode ?? ''} ${f.FailureMessage ?? ''}`.trim(), {
      hint: 'delete the failed gateway (it is owned by the cluster and carries its tags), then run again',
    });
  }
}

/**
 * Starts deleting the owned NAT gateways and does not wait: a gateway takes a minute or so to go on
 * AWS, so the network deletes them first and lets the load balancers and security groups go
 * meanwhile. What needs them gone waits then, each by its own retry: releasing their addresses
 * (InUse until the gateway is deleted) and deleting their subnets (DependencyViolation while the
 * gateway's interface is there).
 */
export async function deleteNatGateways(scope: ClusterScope, gateways: Array<Found<NatGateway>>): Promise<void> {
  const owned = gateways.filter((g) => g.ownership === 'owned');
  await Promise.all(
    owned.map(async (g) => {
      scope.plan.record({ resource: 'nat-gateway', name: g.tags.Name ?? g.id, id: g.id, action: 'delete' });
      if (scope.dryRun || g.item.State === 'deleting') return;
      scope.log.info('Deleting NAT gateway', { natGatewayId: g.id });
      try {
        await scope.ec2.send(new DeleteNatGatewayCommand({ NatGatewayId: g.id }));
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }),
  );
}

/** Every owned Elastic IP of the cluster, in one call (for delete: also one whose gateway was never made). */
export async function describeOwnedAddresses(scope: ClusterScope): Promise<Array<Found<Address>>> {
  const out = await scope.ec2.send(new DescribeAddressesCommand({ Filters: ownedFilters(scope.clusterName) }));
  return (out.Addresses ?? []).map((a) => found(a, a.AllocationId, fromTagList(a.Tags), scope.clusterName));
}

/**
 * Releases owned addresses (the caller checked ownership); one still mapped to a gateway being
 * deleted answers InUse and is retried: this is the wait for the NAT gateways to be deleted.
 */
export async function releaseAddresses(scope: ClusterScope, addresses: Array<{ id: string; name: string }>): Promise<void> {
  await Promise.all(
    addresses.map(async (a) => {
      scope.plan.record({ resource: 'elastic-ip', name: a.name, id: a.id, action: 'delete' });
      if (scope.dryRun) return;
      scope.log.info('Releasing Elastic IP', { allocationId: a.id });
      await deleteWaitingForDependencies(scope, `Elastic IP ${a.id}`, () =>
        scope.ec2.send(new ReleaseAddressCommand({ AllocationId: a.id })).catch((err: unknown) => {
          // Still mapped to a gateway being deleted: AWS answers AuthFailure/InvalidIPAddress.InUse.
          if (/InUse|AuthFailure/.test(awsErrorName(err))) throw Object.assign(new Error((err as Error).message), { name: 'DependencyViolation' });
          throw err;
        }),
      );
    }),
  );
}
