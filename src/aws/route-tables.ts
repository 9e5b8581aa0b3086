/**
 * Route tables of a VPC capflow manages: one public table (0.0.0.0/0 to the
 * internet gateway) for the public subnets, and one private table per zone
 * (0.0.0.0/0 to that zone's NAT gateway, or the shared one) for the private
 * subnets of the zone. All tables of the VPC are read in one call; tables are
 * created tagged, with a client token; routes and associations are fixed in
 * place when they drift.
 */
import {
  AssociateRouteTableCommand,
  CreateRouteCommand,
  CreateRouteTableCommand,
  DeleteRouteTableCommand,
  DescribeRouteTablesCommand,
  DisassociateRouteTableCommand,
  ReplaceRouteCommand,
  ReplaceRouteTableAssociationCommand,
  type Filter,
  type RouteTable,
} from '@aws-sdk/client-ec2';
import { expectAtMostOne, found, isNotFound, type Found } from './find.js';
import type { NatGatewayResult } from './nat-gateways.js';
import type { ClusterScope } from './scope.js';
import { PRIVATE_ROLE, PUBLIC_ROLE, type SubnetResult } from './subnets.js';
import { CAPFLOW_AZ_TAG, fromTagList, ownedFilters, ownedTags, ROLE_TAG, tagSpecifications } from './tags.js';
import { clientToken } from './tokens.js';
import { deleteWaitingForDependencies, isPlaceholder, placeholder, specTags, type TagUpdates } from './vpc.js';

const ANYWHERE = '0.0.0.0/0';

export interface RouteTableResult {
  key: string;
  id: string;
  name: string;
  subnetIds: string[];
}

async function describe(scope: ClusterScope, filters: Filter[]): Promise<Array<Found<RouteTable>>> {
  const all: RouteTable[] = [];
  let token: string | undefined;
  do {
    const out = await scope.ec2.send(new DescribeRouteTablesCommand({ Filters: filters, ...(token ? { NextToken: token } : {}) }));
    all.push(...(out.RouteTables ?? []));
    token = out.NextToken;
  } while (token);
  return all.map((t) => found(t, t.RouteTableId, fromTagList(t.Tags), scope.clusterName));
}

/** Every route table of the VPC (owned or not, the main one included), in one call. */
export function describeVpcRouteTables(scope: ClusterScope, vpcId: string): Promise<Array<Found<RouteTable>>> {
  return describe(scope, [{ Name: 'vpc-id', Values: [vpcId] }]);
}

/** The cluster's owned route tables, wherever they are (for delete). */
export function describeOwnedRouteTables(scope: ClusterScope): Promise<Array<Found<RouteTable>>> {
  return describe(scope, ownedFilters(scope.clusterName));
}

interface DesiredTable {
  key: string;
  name: string;
  role: string;
  az?: string;
  target: { kind: 'gateway' | 'nat'; id: string };
  subnets: SubnetResult[];
}

export function desiredRouteTables(clusterName: string, subnets: SubnetResult[], igwId: string, nats: NatGatewayResult[]): DesiredTable[] {
  const out: DesiredTable[] = [];
  const pub = subnets.filter((s) => s.isPublic);
  if (pub.length > 0) out.push({ key: 'public', name: `${clusterName}-rt-public`, role: PUBLIC_ROLE, target: { kind: 'gateway', id: igwId }, subnets: pub });
  const sortedNats = [...nats].sort((a, b) => a.az.localeCompare(b.az));
  const zones = [...new Set(subnets.filter((s) => !s.isPublic).map((s) => s.az))].sort();
  for (const az of zones) {
    const nat = sortedNats.find((n) => n.az === az) ?? sortedNats[0];
    if (!nat) continue;
    out.push({
      key: `private-${az}`,
      name: `${clusterName}-rt-private-${az}`,
      role: PRIVATE_ROLE,
      az,
      target: { kind: 'nat', id: nat.id },
      subnets: subnets.filter((s) => !s.isPublic && s.az === az),
    });
  }
  return out;
}

export async function reconcileRouteTables(
  scope: ClusterScope,
  input: { vpcId: string; subnets: SubnetResult[]; internetGatewayId: string; natGateways: NatGatewayResult[]; existing: Array<Found<RouteTable>>; tagUpdates: TagUpdates },
): Promise<RouteTableResult[]> {
  const desired = desiredRouteTables(scope.clusterName, input.subnets, input.internetGatewayId, input.natGateways);
  const owned = input.existing.filter((t) => t.ownership === 'owned');
  const results = await Promise.all(desired.map((d) => reconcileTable(scope, d, { ...input, owned })));
  const wanted = new Set(results.map((r) => r.id));
  for (const t of owned) {
    if (!wanted.has(t.id)) scope.plan.record({ resource: 'route-table', name: t.tags.Name ?? t.id, id: t.id, action: 'skip', detail: 'owned but no longer in the spec: left in place' });
  }
  return results;
}

async function reconcileTable(
  scope: ClusterScope,
  d: DesiredTable,
  input: { vpcId: string; existing: Array<Found<RouteTable>>; owned: Array<Found<RouteTable>>; tagUpdates: TagUpdates },
): Promise<RouteTableResult> {
  const candidates = input.owned.filter((t) => t.tags[ROLE_TAG] === d.role && (d.az === undefined || t.tags[CAPFLOW_AZ_TAG] === d.az));
  const have = expectAtMostOne(candidates, 'route table', d.name, scope.clusterName);
  const details: string[] = [];
  let id: string;
  let routes = have?.item.Routes ?? [];
  if (have) {
    id = have.id;
    const tagDetail = input.tagUpdates.diff(have.id, have.tags, specTags(scope));
    if (tagDetail) details.push(tagDetail);
  } else {
    if (scope.dryRun) {
      id = placeholder('route-table', d.name);
    } else {
      scope.log.info('Creating route table', { name: d.name, vpcId: input.vpcId });
      const out = await scope.ec2.send(
        new CreateRouteTableCommand({
          VpcId: input.vpcId,
          ClientToken: clientToken(scope.clusterName, `route-table/${d.key}`, { vpcId: input.vpcId }),
          TagSpecifications: tagSpecifications('route-table', ownedTags(scope, d.role, d.name, d.az ? { [CAPFLOW_AZ_TAG]: d.az } : {})),
        }),
      );
      id = out.RouteTable!.RouteTableId!;
      routes = out.RouteTable!.Routes ?? [];
    }
  }

  // The default route.
  const route = routes.find((r) => r.DestinationCidrBlock === ANYWHERE);
  const current = route?.NatGatewayId ?? route?.GatewayId;
  const targetArgs = d.target.kind === 'gateway' ? { GatewayId: d.target.id } : { NatGatewayId: d.target.id };
  if (!route || current !== d.target.id || route.State === 'blackhole') {
    if (have) details.push(route ? `route ${ANYWHERE} -> ${d.target.id} (was ${current ?? '-'}${route.State === 'blackhole' ? ', blackhole' : ''})` : `route ${ANYWHERE} -> ${d.target.id}`);
    if (!scope.dryRun && !isPlaceholder(d.target.id)) {
      scope.log.info(route ? 'Replacing default route' : 'Creating default route', { routeTableId: id, target: d.target.id });
      if (route) await scope.ec2.send(new ReplaceRouteCommand({ RouteTableId: id, DestinationCidrBlock: ANYWHERE, ...targetArgs }));
      else await scope.ec2.send(new CreateRouteCommand({ RouteTableId: id, DestinationCidrBlock: ANYWHERE, ...targetArgs }));
    }
  }

  // Associations: each subnet of the table, moved here from any other table of the VPC.
  for (const s of d.subnets) {
    const mine = (have?.item.Associations ?? []).some((a) => a.SubnetId === s.id);
    if (mine) continue;
    const other = input.existing.flatMap((t) => (t.item.Associations ?? []).map((a) => ({ table: t, a }))).find(({ a }) => a.SubnetId === s.id && !a.Main);
    if (have) details.push(other ? `move ${s.name} from ${other.table.id}` : `associate ${s.name}`);
    if (scope.dryRun || isPlaceholder(s.id)) continue;
    if (other?.a.RouteTableAssociationId) {
      scope.log.info('Moving subnet to route table', { subnetId: s.id, routeTableId: id, from: other.table.id });
      await scope.ec2.send(new ReplaceRouteTableAssociationCommand({ AssociationId: other.a.RouteTableAssociationId, RouteTableId: id }));
    } else {
      scope.log.info('Associating subnet with route table', { subnetId: s.id, routeTableId: id });
      await scope.ec2.send(new AssociateRouteTableCommand({ RouteTableId: id, SubnetId: s.id }));
    }
  }

  if (have) {
    scope.plan.record({ resource: 'route-table', name: d.name, id, action: details.length > 0 ? 'update' : 'no-change', ...(details.length > 0 ? { detail: details.join('; ') } : {}) });
  } else {
    scope.plan.record({ resource: 'route-table', name: d.name, action: 'create', detail: `${ANYWHERE} -> ${d.target.id}; ${d.subnets.map((s) => s.name).join(', ')}` });
  }
  return { key: d.key, id, name: d.name, subnetIds: d.subnets.map((s) => s.id) };
}

/** Disassociates and deletes the owned route tables (never a main table). */
export async function deleteRouteTables(scope: ClusterScope, tables: Array<Found<RouteTable>>): Promise<void> {
  await Promise.all(
    tables
      .filter((t) => t.ownership === 'owned' && !(t.item.Associations ?? []).some((a) => a.Main))
      .map(async (t) => {
        scope.plan.record({ resource: 'route-table', name: t.tags.Name ?? t.id, id: t.id, action: 'delete' });
        if (scope.dryRun) return;
        for (const a of t.item.Associations ?? []) {
          if (!a.RouteTableAssociationId) continue;
          scope.log.info('Disassociating route table', { routeTableId: t.id, subnetId: a.SubnetId });
          await scope.ec2.send(new DisassociateRouteTableCommand({ AssociationId: a.RouteTableAssociationId })).catch((err: unknown) => {
            if (!isNotFound(err)) throw err;
          });
        }
        scope.log.info('Deleting route table', { routeTableId: t.id });
        await deleteWaitingForDependencies(scope, `route table ${t.id}`, () => scope.ec2.send(new DeleteRouteTableCommand({ RouteTableId: t.id })));
      }),
  );
}
