/**
 * The network an AWSCluster describes (or, for an EKS cluster, its
 * AWSManagedControlPlane: CAPA keeps an EKS cluster's network there), and the
 * checks on it that need no cloud: CIDR syntax and sizes AWS accepts,
 * containment, overlaps, subnet ids, zones that belong to the region.
 * Validation runs them for every command and step (so `capflow validate` and
 * the reconciler refuse what provision-vpc would); provision-vpc adds the
 * checks that need reads (the region's zones, a user-supplied VPC). Every
 * problem names the file:line:column of its field.
 */
import { InputError } from '../core/errors.js';
import { cidrProblem, contains, defaultLayout, overlappingPairs, parseCidr } from '../core/cidr.js';
import { FieldProblems } from './locations.js';
import type { ProblemCode, SpecProblem } from './problems.js';
import type { AWSCluster, AWSClusterSpec, AWSManagedControlPlane, ClusterModel } from './model.js';

/**
 * Annotation choosing one shared NAT gateway instead of one per zone (CAPA v2.9 has no field for it),
 * on the document that holds the network: the AWSCluster, or an EKS cluster's AWSManagedControlPlane.
 */
export const NAT_GATEWAYS_ANNOTATION = 'capflow.io/nat-gateways';
export type NatMode = 'per-az' | 'single';

export const DEFAULT_VPC_CIDR = '10.0.0.0/16';
export const DEFAULT_AZ_LIMIT = 3;

/** A subnet as spec.network.subnets lists it. */
export interface ListedSubnet {
  /** Index in spec.network.subnets (for problem locations). */
  index: number;
  /** A user-supplied subnet id (`subnet-...`): used, never owned. */
  resourceId?: string;
  /** The spec's `id` when it is a name rather than an AWS id. */
  name?: string;
  cidrBlock?: string;
  availabilityZone?: string;
  isPublic: boolean;
  tags: Record<string, string>;
}

/** The kinds that hold a cluster's AWS network. */
export type NetworkOwnerKind = 'AWSCluster' | 'AWSManagedControlPlane';

export interface NetworkSpec {
  /** The Cluster's name: ownership tags and resource names are keyed by it, for EKS too. */
  clusterName: string;
  /** aws: a self-managed cluster (AWSCluster); eks: the network of an AWSManagedControlPlane. */
  provider: 'aws' | 'eks';
  region: string;
  /** The document holding the network, for problem locations. */
  infra: { kind: NetworkOwnerKind; name: string };
  /**
   * That document's spec. The fields provision-vpc reads (network, bastion, sshKeyName,
   * additionalTags, region) have the same shape in both kinds; controlPlaneLoadBalancer is
   * an AWSCluster's only.
   */
  infraSpec: AWSClusterSpec;
  /** That document's annotations. */
  annotations: Record<string, string>;
  /** EKS: the EKS cluster's own name (spec.eksClusterName, else the Cluster's name), which EKS and its load balancer controller find subnets by. */
  eksClusterName?: string;
  /** A user-supplied VPC id: capflow uses it and never tags or deletes it. */
  vpcId?: string;
  vpcCidr: string;
  /** Listed subnets; undefined when capflow computes the layout. */
  subnets?: ListedSubnet[];
  azLimit: number;
  azSelection: 'Ordered' | 'Random';
  subnetSchema: 'PreferPrivate' | 'PreferPublic';
  natMode: NatMode;
}

const SUBNET_ID = /^subnet-[0-9a-f]+$/;
const VPC_ID = /^vpc-([0-9a-f]{8}|[0-9a-f]{17})$/;
const SECURITY_GROUP_ID = /^sg-([0-9a-f]{8}|[0-9a-f]{17})$/;

/** The document that holds the cluster's network: an AWSCluster, or an EKS cluster's AWSManagedControlPlane; undefined for other clusters. */
export function networkOwner(model: ClusterModel): AWSCluster | AWSManagedControlPlane | undefined {
  if (model.provider === 'aws' && model.infrastructure.kind === 'AWSCluster') return model.infrastructure;
  if (model.provider === 'eks' && model.controlPlane.kind === 'AWSManagedControlPlane') return model.controlPlane;
  return undefined;
}

/** Reads the network part of an AWS cluster's model (self-managed or EKS). */
export function networkSpecOf(model: ClusterModel): NetworkSpec {
  const owner = networkOwner(model);
  if (!owner) {
    throw new InputError('PROVIDER_NOT_AWS', `cluster ${model.name} is a ${model.provider} cluster; provision-vpc makes the network of an AWSCluster or an EKS cluster's AWSManagedControlPlane`);
  }
  // The fields read here and by provision-vpc have one shape in both kinds (CAPA's NetworkSpec, Bastion).
  const spec: AWSClusterSpec = owner.spec ?? {};
  const vpc = spec.network?.vpc ?? {};
  const annotations = owner.metadata.annotations ?? {};
  const nat = annotations[NAT_GATEWAYS_ANNOTATION];
  const listed = spec.network?.subnets;
  const eksName = owner.kind === 'AWSManagedControlPlane' ? (owner.spec.eksClusterName ?? model.name) : undefined;
  return {
    clusterName: model.name,
    provider: owner.kind === 'AWSCluster' ? 'aws' : 'eks',
    region: spec.region ?? 'us-east-1',
    infra: { kind: owner.kind, name: owner.metadata.name },
    infraSpec: spec,
    annotations,
    ...(eksName !== undefined ? { eksClusterName: eksName } : {}),
    ...(vpc.id ? { vpcId: vpc.id } : {}),
    vpcCidr: vpc.cidrBlock ?? DEFAULT_VPC_CIDR,
    ...(listed && listed.length > 0
      ? {
          subnets: listed.map((s, index) => ({
            index,
            ...(s.id && SUBNET_ID.test(s.id) ? { resourceId: s.id } : {}),
            ...(s.id && !SUBNET_ID.test(s.id) ? { name: s.id } : {}),
            ...(s.cidrBlock ? { cidrBlock: s.cidrBlock } : {}),
            ...(s.availabilityZone ? { availabilityZone: s.availabilityZone } : {}),
            isPublic: s.isPublic === true,
            tags: s.tags ?? {},
          })),
        }
      : {}),
    azLimit: vpc.availabilityZoneUsageLimit ?? DEFAULT_AZ_LIMIT,
    azSelection: vpc.availabilityZoneSelection === 'Random' ? 'Random' : 'Ordered',
    subnetSchema: (vpc as { subnetSchema?: string }).subnetSchema === 'PreferPublic' ? 'PreferPublic' : 'PreferPrivate',
    natMode: nat === 'single' ? 'single' : 'per-az',
  };
}

/** Problems located at fields of the document holding the network (AWSCluster or AWSManagedControlPlane), by its kind and name. */
export class NetworkProblems {
  private readonly problems: FieldProblems;
  constructor(
    model: ClusterModel,
    private readonly spec: Pick<NetworkSpec, 'infra'>,
  ) {
    this.problems = new FieldProblems(model);
  }

  get list(): SpecProblem[] {
    return this.problems.list;
  }

  add(path: Array<string | number>, code: ProblemCode, message: string, hint?: string, severity?: SpecProblem['severity']): void {
    this.problems.add(this.spec.infra, path, code, message, hint, severity);
  }

  /** Throws SpecInvalidError (exit 2) when any problem was added. */
  throwIfAny(): void {
    this.problems.throwIfAny();
  }
}

/** The sizes AWS accepts for a VPC or subnet IPv4 block. */
const MIN_SUBNET_PREFIX = 16;
const MAX_SUBNET_PREFIX = 28;

/** A zone (`us-east-1a`) or local zone (`us-east-1-bos-1a`) of the region, judged by its name. */
export function zoneOfRegion(zone: string, region: string): boolean {
  if (!zone.startsWith(region)) return false;
  const rest = zone.slice(region.length);
  return /^[a-z]$/.test(rest) || /^-[a-z0-9-]+[a-z]$/.test(rest);
}

/**
 * The API server load balancer as provision-vpc makes it (src/aws/load-balancers.ts): an NLB or a
 * classic ELB, a health check protocol that type takes, subnets named by id.
 */
function checkLoadBalancer(spec: NetworkSpec, p: NetworkProblems): void {
  const lb = spec.infraSpec.controlPlaneLoadBalancer;
  if (lb === undefined) return;
  const at = ['spec', 'controlPlaneLoadBalancer'];
  const type = lb.loadBalancerType === undefined ? 'nlb' : lb.loadBalancerType === 'elb' || lb.loadBalancerType === 'classic' ? 'classic' : lb.loadBalancerType;
  if (type === 'alb') {
    p.add([...at, 'loadBalancerType'], 'invalid-value', 'an application load balancer cannot carry the API server (it terminates TLS; kube-apiserver needs TCP passthrough)', 'use nlb (or classic)');
  }
  const protocol = typeof lb.healthCheckProtocol === 'string' ? lb.healthCheckProtocol.toUpperCase() : undefined;
  const allowed = type === 'nlb' ? ['TCP', 'HTTP', 'HTTPS'] : type === 'classic' ? ['TCP', 'HTTP', 'HTTPS', 'SSL'] : undefined;
  if (protocol !== undefined && allowed && !allowed.includes(protocol)) {
    p.add([...at, 'healthCheckProtocol'], 'invalid-value', `${protocol} is not a health check protocol of a${type === 'nlb' ? 'n nlb' : ' classic'} load balancer`, `use one of ${allowed.join(', ')}`);
  }
  const subnets = lb.subnets;
  if (Array.isArray(subnets)) {
    subnets.forEach((s, i) => {
      if (typeof s === 'string' && !SUBNET_ID.test(s)) p.add([...at, 'subnets', i], 'invalid-value', `"${s}" is not a subnet id (subnet-...)`);
    });
  }
  const groups = lb.additionalSecurityGroups;
  if (Array.isArray(groups)) {
    groups.forEach((g, i) => {
      if (typeof g === 'string' && !SECURITY_GROUP_ID.test(g)) p.add([...at, 'additionalSecurityGroups', i], 'invalid-value', `"${g}" is not a security group id (sg-...)`);
    });
  }
}

/**
 * The security group roles an EKS rule may name as its source: the groups provision-vpc makes for
 * an EKS cluster (src/aws/security-groups.ts, rolesFor('eks')). CAPA's `node` group of an EKS
 * cluster is the one EKS makes with the cluster, which does not exist yet when the network is made.
 */
function eksSourceRoles(spec: NetworkSpec): string[] {
  return ['node-eks-additional', ...((spec.infraSpec.bastion as { enabled?: boolean } | undefined)?.enabled ? ['bastion'] : [])];
}

/** What only an EKS network has: rule sources that exist for EKS, fields EKS's own node group makes moot. */
function checkEksNetwork(spec: NetworkSpec, p: NetworkProblems): void {
  const net = spec.infraSpec.network ?? {};
  const roles = eksSourceRoles(spec);
  const rules = net.additionalControlPlaneIngressRules;
  if (Array.isArray(rules)) {
    rules.forEach((r: unknown, i) => {
      if (typeof r !== 'object' || r === null) return;
      const rule = r as { cidrBlocks?: unknown[]; ipv6CidrBlocks?: unknown[]; sourceSecurityGroupIds?: unknown[]; sourceSecurityGroupRoles?: unknown[]; natGatewaysIPsSource?: boolean };
      const at = ['spec', 'network', 'additionalControlPlaneIngressRules', i];
      const named = [rule.cidrBlocks, rule.ipv6CidrBlocks, rule.sourceSecurityGroupIds, rule.sourceSecurityGroupRoles].some((l) => Array.isArray(l) && l.length > 0);
      if (!named && rule.natGatewaysIPsSource !== true) {
        // An AWSCluster's rule without a source defaults to its control plane group; EKS has none of capflow's.
        p.add(at, 'invalid-value', 'the rule names no source, and an EKS cluster has no control plane security group of its own to default to', 'give cidrBlocks, sourceSecurityGroupIds or sourceSecurityGroupRoles');
      }
      (Array.isArray(rule.sourceSecurityGroupRoles) ? rule.sourceSecurityGroupRoles : []).forEach((role, j) => {
        if (typeof role === 'string' && !roles.includes(role)) {
          p.add([...at, 'sourceSecurityGroupRoles', j], 'invalid-value', `an EKS cluster has no ${role} security group that capflow makes`, `use ${roles.join(' or ')}, or sourceSecurityGroupIds`);
        }
      });
    });
  }
  for (const field of ['additionalNodeIngressRules', 'nodePortIngressRuleCidrBlocks'] as const) {
    if (net[field] !== undefined) {
      p.add(['spec', 'network', field], 'ignored-field', `ignored for an EKS cluster: its nodes' group is the one EKS makes, whose rules EKS keeps (as the AWS provider does)`, 'give the nodes a security group of your own for such rules (a launch template\'s additionalSecurityGroups)', 'warning');
    }
  }
}

/** The prefix of the smallest subnet of the default layout (33 when the block cannot be split at all). */
function smallestSubnetPrefix(vpcCidr: string, zones: string[], schema: NetworkSpec['subnetSchema']): number {
  try {
    return Math.max(...defaultLayout(vpcCidr, zones, schema).flatMap((z) => [z.public, z.private]).map((c) => parseCidr(c)?.prefix ?? 33));
  } catch {
    return 33;
  }
}

/** Field paths of the subnets and VPC (the same in an AWSCluster and an AWSManagedControlPlane), for problem locations. */
export const SUBNETS = ['spec', 'network', 'subnets'] as const;
export const VPC = ['spec', 'network', 'vpc'] as const;

/** Checks that need no cloud: annotation, CIDR syntax, containment, overlaps, ids, zones named. */
export function checkNetworkSpec(model: ClusterModel, spec: NetworkSpec): SpecProblem[] {
  const p = new NetworkProblems(model, spec);
  const nat = spec.annotations[NAT_GATEWAYS_ANNOTATION];
  if (nat !== undefined && nat !== 'single' && nat !== 'per-az') {
    p.add(['metadata', 'annotations', NAT_GATEWAYS_ANNOTATION], 'invalid-value', `must be "single" or "per-az", not "${nat}"`);
  }
  if (!Number.isInteger(spec.azLimit) || spec.azLimit < 1) {
    p.add([...VPC, 'availabilityZoneUsageLimit'], 'invalid-value', 'must be at least 1');
  }
  checkLoadBalancer(spec, p);
  if (spec.provider === 'eks') checkEksNetwork(spec, p);
  if (spec.vpcId) {
    if (!VPC_ID.test(spec.vpcId)) p.add([...VPC, 'id'], 'invalid-value', `"${spec.vpcId}" is not a VPC id (vpc- and 8 or 17 hexadecimal digits)`, 'name an existing VPC by its id, or remove spec.network.vpc.id to let capflow make one');
    if (!spec.subnets) {
      p.add([...VPC, 'id'], 'invalid-value', 'a user-supplied VPC needs its subnets listed in spec.network.subnets (with their ids)', 'list each subnet as {id: subnet-...}');
    }
    for (const s of spec.subnets ?? []) {
      if (!s.resourceId) p.add([...SUBNETS, s.index, 'id'], 'invalid-value', 'in a user-supplied VPC every subnet is named by its id (subnet-...)');
    }
    return p.list;
  }
  const vpcProblem = cidrProblem(spec.vpcCidr);
  if (vpcProblem) p.add([...VPC, 'cidrBlock'], 'invalid-value', vpcProblem);
  else if (parseCidr(spec.vpcCidr)!.prefix < 16 || parseCidr(spec.vpcCidr)!.prefix > 28) {
    p.add([...VPC, 'cidrBlock'], 'invalid-value', `a VPC block must be between /16 and /28, not /${parseCidr(spec.vpcCidr)!.prefix}`);
  }
  if (!spec.subnets) {
    // The AWS provider's layout halves the block per zone and again for public and private:
    // a block too small for that gives subnets AWS refuses (smaller than /28).
    const zones = Array.from({ length: Math.max(1, Math.min(spec.azLimit, 32)) }, (_, i) => `zone-${i}`);
    const smallest = vpcProblem ? undefined : smallestSubnetPrefix(spec.vpcCidr, zones, spec.subnetSchema);
    if (smallest !== undefined && smallest > MAX_SUBNET_PREFIX) {
      p.add([...VPC, 'cidrBlock'], 'invalid-value', `${spec.vpcCidr} is too small for a public and a private subnet in each of ${zones.length} zones: they would be /${smallest}, and AWS subnets are /16 to /28`, 'use a larger block (a /24 or more for three zones), or lower availabilityZoneUsageLimit');
    }
    return p.list;
  }
  const valid: Array<string | undefined> = [];
  for (const s of spec.subnets) {
    if (s.resourceId) {
      p.add([...SUBNETS, s.index, 'id'], 'invalid-value', `subnet id ${s.resourceId} can only be used with a user-supplied VPC (spec.network.vpc.id); capflow creates the subnets of a VPC it creates`);
      valid.push(undefined);
      continue;
    }
    if (!s.availabilityZone) p.add([...SUBNETS, s.index], 'invalid-value', 'availabilityZone is required for a subnet capflow creates');
    else if (!zoneOfRegion(s.availabilityZone, spec.region)) {
      p.add([...SUBNETS, s.index, 'availabilityZone'], 'invalid-value', `availability zone ${s.availabilityZone} is not in region ${spec.region}`, `zones of ${spec.region} are named ${spec.region}a, ${spec.region}b, ...`);
    }
    if (!s.cidrBlock) {
      p.add([...SUBNETS, s.index], 'invalid-value', 'cidrBlock is required for a subnet capflow creates');
      valid.push(undefined);
      continue;
    }
    const bad = cidrProblem(s.cidrBlock);
    if (bad) {
      p.add([...SUBNETS, s.index, 'cidrBlock'], 'invalid-value', bad);
      valid.push(undefined);
      continue;
    }
    const prefix = parseCidr(s.cidrBlock)?.prefix ?? 0;
    if (prefix < MIN_SUBNET_PREFIX || prefix > MAX_SUBNET_PREFIX) {
      p.add([...SUBNETS, s.index, 'cidrBlock'], 'invalid-value', `a subnet block must be between /${MIN_SUBNET_PREFIX} and /${MAX_SUBNET_PREFIX}, not /${prefix}`);
      valid.push(undefined);
      continue;
    }
    if (!vpcProblem && !contains(spec.vpcCidr, s.cidrBlock)) {
      p.add([...SUBNETS, s.index, 'cidrBlock'], 'cidr-overlap', `${s.cidrBlock} is outside the VPC block ${spec.vpcCidr}`);
      valid.push(undefined);
      continue;
    }
    valid.push(s.cidrBlock);
  }
  for (const [i, j] of overlappingPairs(valid)) {
    const a = spec.subnets[i]!;
    const b = spec.subnets[j]!;
    p.add([...SUBNETS, b.index, 'cidrBlock'], 'cidr-overlap', `${b.cidrBlock} overlaps ${a.cidrBlock} of spec.network.subnets[${a.index}]`);
  }
  if (spec.subnets.some((s) => !s.isPublic) && !spec.subnets.some((s) => s.isPublic)) {
    p.add([...SUBNETS], 'invalid-value', 'private subnets need at least one public subnet (for the NAT gateways)', 'mark one subnet per zone isPublic: true');
  }
  return p.list;
}

