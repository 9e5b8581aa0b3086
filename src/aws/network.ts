/**
 * The cluster's network, in dependency order: VPC, subnets and internet
 * gateway, NAT gateways (with their Elastic IPs), route tables, then the
 * security groups, the API server load balancer and the bastion. An EKS
 * cluster (network in its AWSManagedControlPlane) gets the same VPC, subnets,
 * gateways and route tables, its own security group roles, and no load
 * balancer: EKS serves the API. Every read
 * that decides anything (the region's zones, a user-supplied VPC, subnet
 * blocks) happens before the first mutating call, so bad input changes
 * nothing. Delete runs the reverse order and finds everything by the
 * cluster's ownership tag, so it works when the spec is gone or changed.
 */
import { CreateTagsCommand, DescribeAvailabilityZonesCommand, type InternetGateway, type Vpc } from '@aws-sdk/client-ec2';
import { takeCensus, type CensusKind } from './census.js';
import { ConflictError } from '../core/errors.js';
import { found, type Found } from './find.js';
import { networkSpecOf, NetworkProblems, type ClusterModel, type NetworkSpec, type PathSegment } from '../spec/index.js';
import { deleteBastion, reconcileBastion, type BastionResult } from './bastion.js';
import { overlaps } from '../core/cidr.js';
import { describeInternetGateways, deleteInternetGateways, reconcileInternetGateway } from './internet-gateway.js';
import { deleteLoadBalancers, reconcileLoadBalancer, type LoadBalancerResult } from './load-balancers.js';
import { deleteNatGateways, describeNatAddresses, describeNatGateways, describeOwnedAddresses, natPlacements, reconcileNatGateways, releaseAddresses, type NatGatewayResult } from './nat-gateways.js';
import { checkZones, desiredSubnets, layoutCovered, userSubnets, type DesiredSubnet, type ExistingSubnet } from './network-spec.js';
import { deleteRouteTables, describeOwnedRouteTables, describeVpcRouteTables, reconcileRouteTables, type RouteTableResult } from './route-tables.js';
import type { SpecFallback, SpecRef } from './plan.js';
import type { ClusterScope } from './scope.js';
import { deleteSecurityGroups, reconcileSecurityGroups, type AnySecurityGroupRole } from './security-groups.js';
import { CAPFLOW_REVISION_TAG, k8sClusterTag } from './tags.js';
import { deleteSubnets, describeOwnedSubnets, describeVpcSubnets, reconcileSubnets, type SubnetResult } from './subnets.js';
import { deleteVpcs, describeClusterVpcs, describeUserVpc, pickOwnedVpc, reconcileVpc, TagUpdates, type VpcResult } from './vpc.js';
import { deleteVolumes, type LeftResource, type VolumePolicy } from './volumes.js';

export interface NetworkResult {
  vpc: VpcResult;
  subnets: SubnetResult[];
  /** The first public and private subnet of each zone. */
  subnetIdsByZone: Record<string, { public?: string; private?: string }>;
  internetGatewayId?: string;
  natGateways: NatGatewayResult[];
  routeTables: RouteTableResult[];
  /** By role (rolesFor: for EKS, node-eks-additional and, with a bastion, bastion). */
  securityGroupIds: Partial<Record<AnySecurityGroupRole, string>>;
  /** None for EKS. */
  loadBalancer?: LoadBalancerResult;
  bastion?: BastionResult;
}

export interface ReconcileNetworkOptions {
  /** A VPC whose DNS attributes an earlier run set or verified (from the status secret): skips two reads. */
  dnsVerifiedFor?: string;
}

/** The region's available zones (regular zones only, not local or wavelength zones). */
async function regionZones(scope: ClusterScope): Promise<string[]> {
  const out = await scope.ec2.send(
    new DescribeAvailabilityZonesCommand({
      Filters: [
        { Name: 'state', Values: ['available'] },
        { Name: 'zone-type', Values: ['availability-zone'] },
      ],
    }),
  );
  return (out.AvailabilityZones ?? []).map((z) => z.ZoneName!).filter(Boolean);
}

function byZone(subnets: SubnetResult[]): Record<string, { public?: string; private?: string }> {
  const out: Record<string, { public?: string; private?: string }> = {};
  for (const s of [...subnets].sort((a, b) => a.az.localeCompare(b.az) || a.cidr.localeCompare(b.cidr))) {
    const z = (out[s.az] ??= {});
    if (s.isPublic) z.public ??= s.id;
    else z.private ??= s.id;
  }
  return out;
}

/** A desired subnet whose block overlaps a subnet of the VPC it does not match: CreateSubnet would fail half-way. */
function checkSubnetRoom(scope: ClusterScope, desired: DesiredSubnet[], existing: ExistingSubnet[]): void {
  for (const d of desired) {
    if (existing.some((e) => e.cidr === d.cidr)) continue;
    const clash = existing.find((e) => overlaps(e.cidr, d.cidr));
    if (clash) {
      throw new ConflictError('AWS_SUBNET_OVERLAP', `subnet ${d.name} (${d.cidr}) overlaps subnet ${clash.id} (${clash.cidr}) in the VPC${clash.owned ? '' : `, which ${scope.clusterName} does not own`}`, {
        hint: 'choose a free block in spec.network.subnets, or delete the other subnet',
      });
    }
  }
}

/** EC2 ids a run can update in place (not load balancers: their tags are ELB's). */
const EC2_ID = /^(vpc|subnet|igw|nat|eipalloc|rtb|sg|i)-[0-9a-f]+$/;

/**
 * The resources this run changed in place get `capflow.io/revision` of this run, in one CreateTags:
 * the tag says which commit last wrote a resource (provenance in `capflow status`), not only which
 * made it. Nothing changed, no call.
 */
async function stampRevision(scope: ClusterScope, stamped: ReadonlySet<string>): Promise<void> {
  if (scope.dryRun) return;
  const entries = scope.plan.entries();
  // Made by this run (tagged at creation) or stamped with a tag update: nothing to add.
  const done = new Set([...stamped, ...entries.filter((e) => e.action === 'create' && e.id !== undefined).map((e) => e.id!)]);
  const ids = [...new Set(entries.filter((e) => e.action === 'update' && e.id !== undefined && EC2_ID.test(e.id) && !done.has(e.id)).map((e) => e.id!))].sort();
  for (let i = 0; i < ids.length; i += 500) {
    await scope.ec2.send(new CreateTagsCommand({ Resources: ids.slice(i, i + 500), Tags: [{ Key: CAPFLOW_REVISION_TAG, Value: scope.revision }] }), { abortSignal: scope.signal });
  }
}

/**
 * The AWSCluster (or AWSManagedControlPlane) field behind each network plan entry, so drift is
 * reported where Git would change it: a listed subnet's entry (and its tags), additionalTags for a
 * tag, the VPC block, the load balancer and bastion blocks; a computed subnet points at the zone limit.
 */
function networkFields(spec: NetworkSpec, wanted: () => readonly DesiredSubnet[], tags: TagUpdates): SpecFallback {
  const at = (...path: PathSegment[]): SpecRef => ({ ...spec.infra, path });
  return (e) => {
    const subnet = e.resource === 'subnet' ? wanted().find((d) => d.name === e.name) : undefined;
    for (const key of tags.changedKeys(e.id)) {
      if (subnet?.specIndex !== undefined && key in subnet.tags) return at('spec', 'network', 'subnets', subnet.specIndex, 'tags', key);
      if (spec.infraSpec.additionalTags && key in spec.infraSpec.additionalTags) return at('spec', 'additionalTags', key);
    }
    switch (e.resource) {
      case 'vpc':
        return spec.vpcId ? at('spec', 'network', 'vpc', 'id') : at('spec', 'network', 'vpc', 'cidrBlock');
      case 'subnet':
        return subnet?.specIndex !== undefined ? at('spec', 'network', 'subnets', subnet.specIndex) : at('spec', 'network', 'vpc', 'availabilityZoneUsageLimit');
      case 'internet-gateway':
      case 'route-table':
      case 'nat-gateway':
      case 'elastic-ip':
        return at('spec', 'network', 'vpc');
      case 'security-group':
      case 'security-group-rules':
        return at('spec', 'network');
      case 'load-balancer':
      case 'target-group':
      case 'listener':
        return at('spec', 'controlPlaneLoadBalancer');
      case 'instance':
        return at('spec', 'bastion');
      default:
        return undefined;
    }
  };
}

export async function reconcileNetwork(scope: ClusterScope, model: ClusterModel, options: ReconcileNetworkOptions = {}): Promise<NetworkResult> {
  const spec = networkSpecOf(model);
  // The checks that need no cloud ran when the spec was loaded (src/spec/aws-network.ts).
  const problems = new NetworkProblems(model, spec);
  scope.log.info('Reconciling network', { cluster: scope.clusterName, region: scope.region, vpc: spec.vpcId ?? 'managed', dryRun: scope.dryRun });
  const tagUpdates = new TagUpdates(scope.revision);
  let wanted: readonly DesiredSubnet[] = [];
  scope.plan.fallback(networkFields(spec, () => wanted, tagUpdates));

  let vpc: VpcResult;
  let subnets: SubnetResult[];
  let internetGatewayId: string | undefined;
  let natGateways: NatGatewayResult[] = [];
  let routeTables: RouteTableResult[] = [];

  if (spec.vpcId) {
    // A user-supplied VPC: read only, and check what the spec names exists.
    const found = await describeUserVpc(scope, spec.vpcId);
    if (!found) problems.add(['spec', 'network', 'vpc', 'id'], 'not-found', `VPC ${spec.vpcId} does not exist in ${scope.region}`, 'create it first, or remove spec.network.vpc.id to let capflow make one');
    problems.throwIfAny();
    const existing = await describeVpcSubnets(scope, spec.vpcId);
    const { subnets: used, missing } = userSubnets(spec, existing);
    for (const m of missing) problems.add(['spec', 'network', 'subnets', m.index, 'id'], 'not-found', `subnet ${m.resourceId} does not exist in VPC ${spec.vpcId}`);
    problems.throwIfAny();
    vpc = { id: spec.vpcId, cidr: found!.CidrBlock ?? '', managed: false, dnsVerified: false, created: false };
    scope.plan.record({ resource: 'vpc', name: spec.vpcId, id: spec.vpcId, action: 'skip', detail: 'user-supplied: used, not managed' });
    wanted = used;
    subnets = await reconcileSubnets(scope, { vpcId: spec.vpcId, desired: used, existing: [], tagUpdates });
  } else {
    const found = pickOwnedVpc(scope, await describeClusterVpcs(scope));
    const vpcId = found?.id;
    const [existingSubnets, igws, addresses, gateways, tables] = await Promise.all([
      vpcId ? describeVpcSubnets(scope, vpcId) : Promise.resolve([]),
      describeInternetGateways(scope),
      describeNatAddresses(scope),
      vpcId ? describeNatGateways(scope) : Promise.resolve([]),
      vpcId ? describeVpcRouteTables(scope, vpcId) : Promise.resolve([]),
    ]);
    let zones: string[] | undefined;
    if (!layoutCovered(spec, existingSubnets)) {
      zones = await regionZones(scope);
      problems.list.push(...checkZones(model, spec, zones));
      problems.throwIfAny();
    }
    const { subnets: layout, unplaced } = desiredSubnets(spec, zones, existingSubnets);
    const desired = layout.map((d) => ({ ...d, tags: { ...eksSubnetTags(spec), ...d.tags } }));
    if (unplaced.length > 0) {
      problems.add(['spec', 'network', 'vpc', 'cidrBlock'], 'cidr-overlap', `no room left in ${spec.vpcCidr} for ${unplaced.join(', ')}`, 'list the subnets in spec.network.subnets, or lower availabilityZoneUsageLimit');
    }
    problems.throwIfAny();
    checkSubnetRoom(scope, desired, existingSubnets);
    wanted = desired;

    // Everything is known: from here on, calls change the world.
    // Safe points (a pause stops the run here, as a crash would): before each family that mutates.
    await scope.checkpoint('vpc');
    vpc = await reconcileVpc(scope, { cidr: spec.vpcCidr, existing: found, ...(options.dnsVerifiedFor ? { dnsVerifiedFor: options.dnsVerifiedFor } : {}), tagUpdates });
    await scope.checkpoint('subnets');
    [subnets, internetGatewayId] = await Promise.all([
      reconcileSubnets(scope, { vpcId: vpc.id, desired, existing: existingSubnets, tagUpdates }),
      reconcileInternetGateway(scope, { vpcId: vpc.id, existing: igws, tagUpdates }),
    ]);
    await scope.checkpoint('nat-gateways');
    natGateways = await reconcileNatGateways(scope, { placements: natPlacements(subnets, spec.natMode), addresses, gateways, tagUpdates });
    await scope.checkpoint('route-tables');
    routeTables = await reconcileRouteTables(scope, { vpcId: vpc.id, subnets, internetGatewayId, natGateways, existing: tables, tagUpdates });
    await tagUpdates.apply(scope);
  }

  const pub = subnets.filter((s) => s.isPublic);
  const priv = subnets.filter((s) => !s.isPublic);
  const bastionSubnet = (pub[0] ?? priv[0])?.id ?? '';
  let securityGroupIds: NetworkResult['securityGroupIds'];
  let loadBalancer: LoadBalancerResult | undefined;
  let bastion: BastionResult | undefined;
  await scope.checkpoint('security-groups');
  if (spec.provider === 'eks') {
    // No API server load balancer: EKS serves the API.
    const ids = await reconcileSecurityGroups(scope, { vpcId: vpc.id, spec: spec.infraSpec, cluster: model.cluster, provider: 'eks', infra: spec.infra });
    securityGroupIds = ids;
    bastion = await reconcileBastion(scope, { spec: spec.infraSpec, subnetId: bastionSubnet, securityGroupId: ids.bastion ?? '' });
  } else {
    const ids = await reconcileSecurityGroups(scope, { vpcId: vpc.id, spec: spec.infraSpec, cluster: model.cluster, infra: spec.infra });
    securityGroupIds = ids;
    await scope.checkpoint('load-balancer');
    [loadBalancer, bastion] = await Promise.all([
      reconcileLoadBalancer(scope, {
        spec: spec.infraSpec,
        vpcId: vpc.id,
        subnets: { public: uniqueByZone(pub), private: uniqueByZone(priv) },
        securityGroupIds: ids,
      }),
      reconcileBastion(scope, { spec: spec.infraSpec, subnetId: bastionSubnet, securityGroupId: ids.bastion }),
    ]);
  }
  await stampRevision(scope, tagUpdates.stamped());
  scope.log.info('Network reconciled', { vpcId: vpc.id, plan: JSON.stringify(scope.plan.counts()) });
  return {
    vpc,
    subnets,
    subnetIdsByZone: byZone(subnets),
    ...(internetGatewayId ? { internetGatewayId } : {}),
    natGateways,
    routeTables,
    securityGroupIds,
    ...(loadBalancer ? { loadBalancer } : {}),
    ...(bastion ? { bastion } : {}),
  };
}

/**
 * What an EKS cluster's subnets carry beyond the AWS provider's: `kubernetes.io/cluster/<EKS name>:
 * shared` when the EKS cluster's name differs from the Cluster's, since EKS and the AWS load
 * balancer controller find subnets by the EKS name (CAPA tags by KubernetesClusterName). The
 * ownership tags stay keyed by the Cluster's name: delete finds resources by them.
 */
function eksSubnetTags(spec: NetworkSpec): Record<string, string> {
  return spec.eksClusterName !== undefined && spec.eksClusterName !== spec.clusterName ? { [k8sClusterTag(spec.eksClusterName)]: 'shared' } : {};
}

/** One subnet per zone (a load balancer takes at most one per zone), sorted by zone. */
function uniqueByZone(subnets: SubnetResult[]): string[] {
  const seen = new Map<string, string>();
  for (const s of [...subnets].sort((a, b) => a.az.localeCompare(b.az) || a.cidr.localeCompare(b.cidr))) if (!seen.has(s.az)) seen.set(s.az, s.id);
  return [...seen.values()];
}

export interface DeleteNetworkOptions {
  /**
   * VPCs the cluster used without owning them (a user-supplied spec.network.vpc.id, from the spec
   * or the status secret): their owned load balancers and security groups are deleted, the VPC is not.
   */
  userVpcIds?: string[];
  /** Workload volumes (kubernetes.io/cluster/<name>: owned): retain (default) or delete. */
  volumes?: VolumePolicy;
}

export interface DeleteNetworkResult {
  /** What the cluster's tags are still on after the delete, on purpose or not ours to delete: reported, never silent. */
  left: LeftResource[];
}

/** The census kinds no family here deletes: reported as left when owned. */
const UNHANDLED: ReadonlySet<string> = new Set(['network-interface', 'snapshot', 'other']);

/**
 * Removes everything the cluster owns, found by its tags alone, in an order valid on AWS: NAT
 * gateways first (not waited for: they take a minute and depend on nothing else here), load
 * balancers (capflow's and the cloud controller's), bastion, security groups (in dependency order),
 * workload volumes (by policy), Elastic IPs (released once their gateway lets go), route tables
 * (disassociated, then deleted), internet gateways (detached first), subnets, VPCs. NotFound counts
 * as done; shared and unowned resources are never touched.
 *
 * Calls: one DescribeTags (the census) says which families have anything tagged; a family with
 * nothing is not described. The route tables' describe names the subnets (associations), the
 * internet gateway (default route) and the VPC of each table, and the NAT gateways' names their
 * addresses, so those families are described only for what these did not account for (a subnet
 * without a table after an interrupted create, or a rerun on moto, which keeps tags of deleted
 * resources). Returns what is left (retained volumes, interfaces and snapshots tagged for the
 * cluster), each by id and tags.
 */
export async function deleteNetwork(scope: ClusterScope, options: DeleteNetworkOptions = {}): Promise<DeleteNetworkResult> {
  scope.log.info('Deleting network', { cluster: scope.clusterName, region: scope.region, dryRun: scope.dryRun });
  const census = await takeCensus(scope);
  const ownedIn = (kind: CensusKind) => new Set(census.ids(kind));
  for (const id of census.ids('vpc', 'shared')) scope.plan.record({ resource: 'vpc', name: id, id, action: 'skip', detail: 'shared: never deleted' });

  // NAT gateways first; the addresses' release below is the wait for them.
  const nats = census.has('nat-gateway') ? await describeNatGateways(scope, ['pending', 'available', 'deleting']) : [];
  await deleteNatGateways(scope, nats);

  await deleteLoadBalancers(scope, undefined);
  if (census.has('instance')) await deleteBastion(scope);
  if (census.has('security-group')) await deleteSecurityGroups(scope);
  const left = census.has('volume') ? await deleteVolumes(scope, census.ids('volume'), options.volumes ?? 'retain') : [];

  // Elastic IPs: the gateways' own, and any other owned one (a gateway that was never made).
  const eips = ownedIn('elastic-ip');
  const natAddresses = nats.flatMap((n) => (n.item.NatGatewayAddresses ?? []).map((a) => ({ id: a.AllocationId ?? '', name: `${n.tags.Name ?? n.id} address` }))).filter((a) => eips.has(a.id));
  const unaccountedEips = [...eips].filter((id) => !natAddresses.some((a) => a.id === id));
  const otherAddresses = unaccountedEips.length > 0 ? (await describeOwnedAddresses(scope)).filter((a) => a.ownership === 'owned' && unaccountedEips.includes(a.id)) : [];
  await releaseAddresses(scope, [...natAddresses, ...otherAddresses.map((a) => ({ id: a.id, name: a.tags.Name ?? a.id }))]);

  // Route tables, and what they name.
  const tables = census.has('route-table') ? await describeOwnedRouteTables(scope) : [];
  await deleteRouteTables(scope, tables);
  const seenVpcs = new Set(tables.map((t) => t.item.VpcId).filter((v): v is string => !!v));

  const igwIds = ownedIn('internet-gateway');
  const routedIgws = new Map<string, string>();
  for (const t of tables) for (const r of t.item.Routes ?? []) if (r.GatewayId && igwIds.has(r.GatewayId) && t.item.VpcId) routedIgws.set(r.GatewayId, t.item.VpcId);
  const igws: Array<Found<InternetGateway>> = [...routedIgws].map(([id, vpcId]) => found<InternetGateway>({ InternetGatewayId: id, Attachments: [{ VpcId: vpcId }] }, id, census.entries.get(id)!.tags, scope.clusterName));
  if ([...igwIds].some((id) => !routedIgws.has(id))) igws.push(...(await describeInternetGateways(scope)).filter((g) => !routedIgws.has(g.id)));
  await deleteInternetGateways(scope, igws);

  const subnetIds = ownedIn('subnet');
  const associated = new Set(tables.flatMap((t) => (t.item.Associations ?? []).map((a) => a.SubnetId)).filter((id): id is string => !!id && subnetIds.has(id)));
  const subnets: ExistingSubnet[] = [...associated].map((id) => ({ id, az: '', cidr: '', isPublic: false, owned: true, tags: census.entries.get(id)!.tags, mapPublicIpOnLaunch: false }));
  if ([...subnetIds].some((id) => !associated.has(id))) subnets.push(...(await describeOwnedSubnets(scope)).filter((s) => !associated.has(s.id)));
  await deleteSubnets(scope, subnets);

  const vpcIds = ownedIn('vpc');
  const vpcs: Array<Found<Vpc>> = [...vpcIds].filter((id) => seenVpcs.has(id)).map((id) => found<Vpc>({ VpcId: id }, id, census.entries.get(id)!.tags, scope.clusterName));
  if ([...vpcIds].some((id) => !seenVpcs.has(id))) vpcs.push(...(await describeClusterVpcs(scope)).filter((v) => v.ownership === 'owned' && !seenVpcs.has(v.id)));
  await deleteVpcs(scope, vpcs.filter((v) => !(options.userVpcIds ?? []).includes(v.id)));

  for (const e of census.entries.values()) {
    if (e.ownership === 'owned' && UNHANDLED.has(e.kind)) left.push({ kind: e.kind, id: e.id, reason: 'tagged for the cluster; capflow does not delete this kind', tags: e.tags });
  }
  for (const l of left) scope.log.warn('Left in place', { kind: l.kind, id: l.id, reason: l.reason, tags: JSON.stringify(l.tags) });
  scope.log.info('Network deleted', { cluster: scope.clusterName, plan: JSON.stringify(scope.plan.counts()), left: left.length });
  return { left };
}

export type { NetworkSpec };
