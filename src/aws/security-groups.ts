/**
 * Security groups, one per CAPA role, named `<cluster>-<role>`. Which roles a
 * cluster gets depends on its provider (rolesFor): a self-managed (kubeadm)
 * cluster gets control plane, nodes, the API server load balancer and the
 * bastion, cross-referencing each other; an EKS cluster gets what CAPA makes
 * for an AWSManagedControlPlane: `node-eks-additional` (the extra group
 * eks-control-plane attaches to the cluster) and the bastion's when the
 * bastion is enabled. EKS makes the cluster's own group (the nodes' group)
 * with the cluster; it is not made here.
 *
 * Which rules capflow manages: every ingress rule capflow authorizes carries a
 * description that starts with `capflow: `. A reconcile authorizes the desired
 * rules that are missing, rewrites the description of a desired rule that
 * exists under another description (adopting it), and revokes only rules that
 * carry the prefix and are no longer desired. Rules without the prefix are
 * left alone even on owned groups: the cloud controller adds rules to the node
 * group for Service load balancers, and an operator's emergency rule is theirs
 * to remove. Egress is never touched (AWS's default allow-all stays).
 *
 * Rules are compared one source at a time, by protocol, ports (for the
 * protocols that have ports) and source, so a rerun makes no mutating call.
 */
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateSecurityGroupCommand,
  DeleteSecurityGroupCommand,
  DescribeNatGatewaysCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSecurityGroupsCommand,
  DescribeVpcsCommand,
  RevokeSecurityGroupIngressCommand,
  UpdateSecurityGroupRuleDescriptionsIngressCommand,
  type Filter,
  type IpPermission,
  type SecurityGroup,
} from '@aws-sdk/client-ec2';
import { CapflowError, InputError, TransientError, classifyError, isCapflowError } from '../core/errors.js';
import { formatPath, type PathSegment } from '../spec/index.js';
import type { AWSClusterSpec, Cluster } from '../spec/model.js';
import { awsErrorName, expectAtMostOne, found, isDependencyViolation, isNotFound } from './find.js';
import type { ClusterScope } from './scope.js';
import { ROLE_TAG, capaClusterTag, fromTagList, k8sClusterTag, ownedFilters, ownedTags, ownershipOf, tagSpecifications } from './tags.js';
import { waitFor } from './wait.js';

/** The roles of a self-managed (kubeadm) cluster's groups. */
export type SecurityGroupRole = 'controlplane' | 'node' | 'apiserver-lb' | 'bastion';
/** The roles of an EKS cluster's groups (CAPA's SecurityGroupBastion and SecurityGroupEKSNodeAdditional). */
export type EksSecurityGroupRole = 'bastion' | 'node-eks-additional';
export type AnySecurityGroupRole = SecurityGroupRole | EksSecurityGroupRole;
/** aws: a self-managed cluster (AWSCluster); eks: an EKS cluster (AWSManagedControlPlane). */
export type NetworkProvider = 'aws' | 'eks';

/** In creation order: the groups others refer to first (it does not matter for AWS, only for the plan). */
export const SECURITY_GROUP_ROLES: readonly SecurityGroupRole[] = ['bastion', 'apiserver-lb', 'controlplane', 'node'];
/** Every role an EKS cluster's group may have, in creation order. */
export const EKS_SECURITY_GROUP_ROLES: readonly EksSecurityGroupRole[] = ['bastion', 'node-eks-additional'];

/** The group ids reconcileSecurityGroups returns: every role of a self-managed cluster; for EKS, the bastion's only when it exists. */
export type SecurityGroupIds<P extends NetworkProvider> = P extends 'eks' ? { 'node-eks-additional': string; bastion?: string } : Record<SecurityGroupRole, string>;

/**
 * The roles of the groups a cluster of `provider` gets. A self-managed cluster always has its
 * bastion group (with no rules while the bastion is disabled); an EKS cluster has one only while
 * the bastion is enabled (CAPA's securityGroupRolesForControlPlane), or while an earlier run's is
 * still there, so that its SSH rule is revoked when the bastion is turned off.
 */
export function rolesFor(provider: 'aws'): readonly SecurityGroupRole[];
export function rolesFor(provider: 'eks', options?: { bastion?: boolean }): readonly EksSecurityGroupRole[];
export function rolesFor(provider: NetworkProvider, options?: { bastion?: boolean }): readonly AnySecurityGroupRole[];
export function rolesFor(provider: NetworkProvider, options: { bastion?: boolean } = {}): readonly AnySecurityGroupRole[] {
  if (provider === 'aws') return SECURITY_GROUP_ROLES;
  return EKS_SECURITY_GROUP_ROLES.filter((r) => r !== 'bastion' || options.bastion === true);
}

/** Every rule capflow authorizes has a description starting with this. */
export const RULE_DESCRIPTION_PREFIX = 'capflow: ';

export const API_SERVER_PORT = 6443;
const ANY_IPV4 = '0.0.0.0/0';

/** `<cluster>-<role>`; AWS refuses group names starting with `sg-`, so such clusters get CAPA's `@` prefix. */
export function securityGroupName(clusterName: string, role: AnySecurityGroupRole): string {
  return `${clusterName.startsWith('sg-') ? '@' : ''}${clusterName}-${role}`;
}

/** The placeholder id a dry run reports for a group it would create. */
export function placeholderGroupId(role: AnySecurityGroupRole): string {
  return `(new security-group ${role})`;
}

// ---------------------------------------------------------------------------------------------
// Rules

type SourceKind = 'cidr' | 'cidr6' | 'sg' | 'prefix-list';

/** One ingress permission with exactly one source: the unit rules are compared in. */
export interface IngressRule {
  description: string;
  protocol: string;
  fromPort: number;
  toPort: number;
  source: { kind: SourceKind; value: string };
  /** The AWSCluster field that asks for the rule (plan entries name it with its file:line); unset for rules read from AWS. */
  origin?: readonly PathSegment[];
}

/** A rule as the CRD writes it (spec.network.additional*IngressRules, controlPlaneLoadBalancer.ingressRules). */
interface SpecIngressRule {
  description?: string;
  protocol: string;
  fromPort: number;
  toPort: number;
  cidrBlocks?: string[];
  ipv6CidrBlocks?: string[];
  sourceSecurityGroupIds?: string[];
  sourceSecurityGroupRoles?: string[];
  natGatewaysIPsSource?: boolean;
}

interface CniIngressRule {
  description?: string;
  protocol: string;
  fromPort: number;
  toPort: number;
}

interface BastionSpec {
  enabled?: boolean;
  allowedCIDRBlocks?: string[];
  disableIngressRules?: boolean;
  instanceType?: string;
  ami?: string;
}

/** Calico's BGP and IP-in-IP, CAPA's default when the spec names no CNI rules. */
export const DEFAULT_CNI_INGRESS_RULES: readonly CniIngressRule[] = [
  { description: 'bgp (calico)', protocol: 'tcp', fromPort: 179, toPort: 179 },
  { description: 'IP-in-IP (calico)', protocol: '4', fromPort: -1, toPort: 65535 },
];

const PROTOCOL_ALIASES: Record<string, string> = { '6': 'tcp', '17': 'udp', '1': 'icmp', '58': 'icmpv6', all: '-1' };
/** Protocols whose ports mean something; for the others AWS allows every port whatever is sent. */
const PORTED = new Set(['tcp', 'udp', 'icmp', 'icmpv6']);

function normalizeProtocol(protocol: string): string {
  const p = protocol.toLowerCase();
  return PROTOCOL_ALIASES[p] ?? p;
}

/** The identity AWS gives a permission: protocol, ports, source (the description is not part of it). */
export function ruleKey(r: Pick<IngressRule, 'protocol' | 'fromPort' | 'toPort' | 'source'>): string {
  const protocol = normalizeProtocol(r.protocol);
  const ports = PORTED.has(protocol) ? `${r.fromPort}-${r.toPort}` : 'all';
  return `${protocol}/${ports}/${r.source.kind}:${r.source.value}`;
}

export function formatRule(r: IngressRule): string {
  const protocol = normalizeProtocol(r.protocol);
  const ports = PORTED.has(protocol) ? (r.fromPort === r.toPort ? ` ${r.fromPort}` : ` ${r.fromPort}-${r.toPort}`) : '';
  return `${protocol}${ports} from ${r.source.value}`;
}

/** The rules of a group as AWS reports them, one per source. */
export function currentIngressRules(group: SecurityGroup): IngressRule[] {
  const out: IngressRule[] = [];
  for (const p of group.IpPermissions ?? []) {
    const base = { protocol: p.IpProtocol ?? '-1', fromPort: p.FromPort ?? -1, toPort: p.ToPort ?? -1 };
    for (const r of p.IpRanges ?? []) if (r.CidrIp) out.push({ ...base, description: r.Description ?? '', source: { kind: 'cidr', value: r.CidrIp } });
    for (const r of p.Ipv6Ranges ?? []) if (r.CidrIpv6) out.push({ ...base, description: r.Description ?? '', source: { kind: 'cidr6', value: r.CidrIpv6 } });
    for (const r of p.UserIdGroupPairs ?? []) if (r.GroupId) out.push({ ...base, description: r.Description ?? '', source: { kind: 'sg', value: r.GroupId } });
    for (const r of p.PrefixListIds ?? []) if (r.PrefixListId) out.push({ ...base, description: r.Description ?? '', source: { kind: 'prefix-list', value: r.PrefixListId } });
  }
  return out;
}

/** Groups rules into IpPermissions (one per protocol and port range), descriptions kept per source. */
export function toIpPermissions(rules: readonly IngressRule[]): IpPermission[] {
  const byRange = new Map<string, IpPermission>();
  for (const r of rules) {
    const protocol = normalizeProtocol(r.protocol);
    const ported = PORTED.has(protocol);
    // Ports -1/-1 for portless protocols: AWS ignores them, and moto needs them (it fails on absent ports).
    const fromPort = ported ? r.fromPort : -1;
    const toPort = ported ? r.toPort : -1;
    const key = `${r.protocol}/${fromPort}/${toPort}`;
    let p = byRange.get(key);
    if (!p) {
      p = { IpProtocol: r.protocol, FromPort: fromPort, ToPort: toPort };
      byRange.set(key, p);
    }
    const Description = r.description || undefined;
    switch (r.source.kind) {
      case 'cidr':
        (p.IpRanges ??= []).push({ CidrIp: r.source.value, Description });
        break;
      case 'cidr6':
        (p.Ipv6Ranges ??= []).push({ CidrIpv6: r.source.value, Description });
        break;
      case 'sg':
        (p.UserIdGroupPairs ??= []).push({ GroupId: r.source.value, Description });
        break;
      case 'prefix-list':
        (p.PrefixListIds ??= []).push({ PrefixListId: r.source.value, Description });
        break;
    }
  }
  return [...byRange.values()];
}

/** What the rules of one group need besides the spec: ids of the other groups, and facts about the VPC. */
export interface RuleContext<Ids = Record<SecurityGroupRole, string>> {
  ids: Ids;
  /** The VPC's IPv4 CIDR (internal API load balancer). */
  vpcCidr?: string;
  /** Public IPs of the VPC's NAT gateways, as /32 CIDRs (natGatewaysIPsSource, restricted public API). */
  natGatewayCidrs?: string[];
}

function bastionSpec(spec: AWSClusterSpec): BastionSpec {
  return spec.bastion ?? {};
}

function cniRules(spec: AWSClusterSpec): readonly CniIngressRule[] {
  const cni = spec.network?.cni as { cniIngressRules?: CniIngressRule[] } | undefined;
  return cni?.cniIngressRules ?? DEFAULT_CNI_INGRESS_RULES;
}

function apiLoadBalancerScheme(spec: AWSClusterSpec): 'internet-facing' | 'internal' {
  return spec.controlPlaneLoadBalancer?.scheme ?? 'internet-facing';
}

/** Does the spec need the VPC CIDR or the NAT gateway IPs (so reconcile reads them only then)? */
function needs(spec: AWSClusterSpec, provider: NetworkProvider): { vpcCidr: boolean; natGateways: boolean } {
  if (provider === 'eks') {
    const rules = (spec.network?.additionalControlPlaneIngressRules as SpecIngressRule[] | undefined) ?? [];
    return { vpcCidr: false, natGateways: rules.some((r) => r.natGatewaysIPsSource) };
  }
  const lb = spec.controlPlaneLoadBalancer;
  const lbRules = (lb?.ingressRules as SpecIngressRule[] | undefined) ?? [];
  const all = [
    ...lbRules,
    ...((spec.network?.additionalControlPlaneIngressRules as SpecIngressRule[] | undefined) ?? []),
    ...((spec.network?.additionalNodeIngressRules as SpecIngressRule[] | undefined) ?? []),
  ];
  const internal = apiLoadBalancerScheme(spec) === 'internal';
  return {
    vpcCidr: internal && !spec.network?.vpc?.cidrBlock,
    natGateways: all.some((r) => r.natGatewaysIPsSource) || (!internal && lbRules.length > 0),
  };
}

function expand(description: string, protocol: string, fromPort: number, toPort: number, sources: Array<IngressRule['source']>, origin: readonly PathSegment[]): IngressRule[] {
  return sources.map((source) => ({ description: `${RULE_DESCRIPTION_PREFIX}${description}`, protocol, fromPort, toPort, source, origin }));
}

// Where the rules capflow adds by default come from: the field that would change them.
const NETWORK: readonly PathSegment[] = ['spec', 'network'];
const CNI_RULES: readonly PathSegment[] = ['spec', 'network', 'cni', 'cniIngressRules'];
const BASTION: readonly PathSegment[] = ['spec', 'bastion'];
const API_LB: readonly PathSegment[] = ['spec', 'controlPlaneLoadBalancer'];
/** Where a rule of each role would be written to keep it: a rule found that the spec lacks is reported there. */
const RULES_FIELD: Record<AnySecurityGroupRole, readonly PathSegment[]> = {
  controlplane: ['spec', 'network', 'additionalControlPlaneIngressRules'],
  node: ['spec', 'network', 'additionalNodeIngressRules'],
  'apiserver-lb': ['spec', 'controlPlaneLoadBalancer', 'ingressRules'],
  bastion: ['spec', 'bastion', 'allowedCIDRBlocks'],
  'node-eks-additional': ['spec', 'network', 'additionalControlPlaneIngressRules'],
};

const sgSources = (ids: string[]) => ids.map((value) => ({ kind: 'sg' as const, value }));
const cidrSources = (cidrs: string[]) => cidrs.map((value) => ({ kind: value.includes(':') ? ('cidr6' as const) : ('cidr' as const), value }));

/**
 * CAPA's rule semantics for a spec rule: CIDRs as given; no source means the control plane; roles
 * become ids. An EKS cluster's rules (eks set) may name only its own groups, and must name a source:
 * there is no control plane group of capflow's to default to (validation says so first).
 */
function specRule(r: SpecIngressRule, ctx: RuleContext, at: readonly PathSegment[]): IngressRule[];
function specRule(r: SpecIngressRule, ctx: RuleContext<SecurityGroupIds<'eks'>>, at: readonly PathSegment[], eks: true): IngressRule[];
function specRule(r: SpecIngressRule, ctx: RuleContext<Partial<Record<AnySecurityGroupRole, string>>>, at: readonly PathSegment[], eks = false): IngressRule[] {
  const where = formatPath(at.slice(0, -1));
  const description = r.description ?? `${r.protocol} ${r.fromPort}-${r.toPort}`;
  if (r.natGatewaysIPsSource) {
    if (!ctx.natGatewayCidrs?.length) {
      throw new TransientError('SG_NAT_IPS_NOT_READY', `${where}: rule "${description}" wants the NAT gateways' IPs, but the VPC has no available NAT gateway yet`);
    }
    return expand(description, r.protocol, r.fromPort, r.toPort, cidrSources(ctx.natGatewayCidrs), at);
  }
  const cidrs = [...(r.cidrBlocks ?? []), ...(r.ipv6CidrBlocks ?? [])];
  if (cidrs.length > 0) return expand(description, r.protocol, r.fromPort, r.toPort, cidrSources(cidrs), at);
  const ids = new Set(r.sourceSecurityGroupIds ?? []);
  const roles: readonly AnySecurityGroupRole[] = eks ? EKS_SECURITY_GROUP_ROLES.filter((x) => ctx.ids[x] !== undefined) : SECURITY_GROUP_ROLES;
  for (const role of r.sourceSecurityGroupRoles ?? []) {
    if (!(roles as readonly string[]).includes(role)) {
      throw new InputError('SG_UNKNOWN_SOURCE_ROLE', `${where}: rule "${description}" names source role ${role}, which ${eks ? 'an EKS' : 'a self-managed'} cluster does not have`, {
        hint: `use one of ${roles.join(', ')}, or sourceSecurityGroupIds`,
      });
    }
    ids.add(ctx.ids[role as AnySecurityGroupRole]!);
  }
  if (ids.size === 0 && eks) {
    throw new InputError('SG_RULE_NO_SOURCE', `${where}: rule "${description}" names no source, and an EKS cluster has no control plane security group of capflow's to default to`, {
      hint: 'give cidrBlocks, sourceSecurityGroupIds or sourceSecurityGroupRoles',
    });
  }
  if (ids.size === 0) ids.add(ctx.ids.controlplane!);
  return expand(description, r.protocol, r.fromPort, r.toPort, sgSources([...ids].sort()), at);
}

/**
 * The ingress rules a group of `role` should have, one per source, without duplicates
 * (the first description wins), descriptions prefixed.
 */
export function desiredIngressRules(role: SecurityGroupRole, spec: AWSClusterSpec, cluster: Cluster, ctx: RuleContext): IngressRule[] {
  const { ids } = ctx;
  const bastion = bastionSpec(spec);
  const net = spec.network ?? {};
  const apiPort = cluster.spec.clusterNetwork?.apiServerPort ?? API_SERVER_PORT;
  const cni = () => cniRules(spec).flatMap((r, i) => expand(r.description ?? `cni ${r.protocol}`, r.protocol, r.fromPort, r.toPort, sgSources([ids.controlplane, ids.node]), [...CNI_RULES, i]));
  const sshFromBastion = () => (bastion.enabled ? expand('SSH', 'tcp', 22, 22, sgSources([ids.bastion]), BASTION) : []);
  let rules: IngressRule[];
  switch (role) {
    case 'controlplane':
      rules = [
        ...expand('Kubernetes API', 'tcp', API_SERVER_PORT, API_SERVER_PORT, sgSources([ids['apiserver-lb'], ids.controlplane, ids.node]), NETWORK),
        ...expand('etcd', 'tcp', 2379, 2380, sgSources([ids.controlplane]), NETWORK),
        ...sshFromBastion(),
        ...cni(),
        ...((net.additionalControlPlaneIngressRules as SpecIngressRule[] | undefined) ?? []).flatMap((r, i) => specRule(r, ctx, [...RULES_FIELD.controlplane, i])),
      ];
      break;
    case 'node': {
      const nodePortCidrs = (net.nodePortIngressRuleCidrBlocks as string[] | undefined) ?? [ANY_IPV4];
      rules = [
        ...expand('Node Port Services', 'tcp', 30000, 32767, cidrSources(nodePortCidrs), [...NETWORK, 'nodePortIngressRuleCidrBlocks']),
        ...expand('Kubelet API', 'tcp', 10250, 10250, sgSources([ids.controlplane, ids.node]), NETWORK),
        ...sshFromBastion(),
        ...cni(),
        ...((net.additionalNodeIngressRules as SpecIngressRule[] | undefined) ?? []).flatMap((r, i) => specRule(r, ctx, [...RULES_FIELD.node, i])),
      ];
      break;
    }
    case 'apiserver-lb': {
      const custom = (spec.controlPlaneLoadBalancer?.ingressRules as SpecIngressRule[] | undefined) ?? [];
      const internal = apiLoadBalancerScheme(spec) === 'internal';
      const vpcCidr = net.vpc?.cidrBlock ?? ctx.vpcCidr;
      // Nodes must reach the API through the load balancer: from the VPC when it is internal, through
      // the NAT gateways when it is public and the spec restricts who may connect (CAPA's behaviour).
      const base = internal
        ? vpcCidr
          ? expand('Kubernetes API', 'tcp', apiPort, apiPort, cidrSources([vpcCidr]), API_LB)
          : []
        : custom.length === 0
          ? expand('Kubernetes API', 'tcp', apiPort, apiPort, cidrSources([ANY_IPV4]), API_LB)
          : expand('Kubernetes API', 'tcp', apiPort, apiPort, cidrSources(ctx.natGatewayCidrs ?? []), API_LB);
      rules = [...base, ...custom.flatMap((r, i) => specRule(r, ctx, [...RULES_FIELD['apiserver-lb'], i]))];
      break;
    }
    case 'bastion':
      rules = bastionIngress(bastion);
      break;
  }
  return unique(rules);
}

/** SSH to the bastion from its allow-list, while it is enabled and its rules are not turned off. */
function bastionIngress(bastion: BastionSpec): IngressRule[] {
  return bastion.enabled && !bastion.disableIngressRules ? expand('SSH', 'tcp', 22, 22, cidrSources(bastion.allowedCIDRBlocks ?? [ANY_IPV4]), RULES_FIELD.bastion) : [];
}

/** Without duplicates: the first description of a rule wins. */
function unique(rules: IngressRule[]): IngressRule[] {
  const seen = new Set<string>();
  return rules.filter((r) => {
    const k = ruleKey(r);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * The ingress rules of an EKS cluster's group, as CAPA gives them: the bastion's SSH as for a
 * self-managed cluster; node-eks-additional (attached to the EKS control plane's network
 * interfaces) takes spec.network.additionalControlPlaneIngressRules and SSH from the bastion.
 */
export function desiredEksIngressRules(role: EksSecurityGroupRole, spec: AWSClusterSpec, ctx: RuleContext<SecurityGroupIds<'eks'>>): IngressRule[] {
  const bastion = bastionSpec(spec);
  if (role === 'bastion') return unique(bastionIngress(bastion));
  const additional = (spec.network?.additionalControlPlaneIngressRules as SpecIngressRule[] | undefined) ?? [];
  return unique([
    ...additional.flatMap((r, i) => specRule(r, ctx, [...RULES_FIELD['node-eks-additional'], i], true)),
    ...(bastion.enabled && ctx.ids.bastion ? expand('SSH', 'tcp', 22, 22, sgSources([ctx.ids.bastion]), BASTION) : []),
  ]);
}

export interface RuleDiff {
  authorize: IngressRule[];
  revoke: IngressRule[];
  /** Desired rules present under another description: rewritten (and so adopted). */
  describe: IngressRule[];
}

/**
 * Rules on our groups that are not ours to revoke: those the AWS cloud controller adds for Services
 * of type LoadBalancer (an NLB's client and health rules, described `kubernetes.io/rule/...`, and a
 * classic ELB's rule from its own `k8s-elb-...` group) and any rule whose source is a group that is
 * not one of the cluster's. Every other rule the spec does not ask for is drift: revoked.
 */
export function isForeignRule(rule: IngressRule, ourGroupIds: ReadonlySet<string>): boolean {
  if (rule.description.startsWith(RULE_DESCRIPTION_PREFIX)) return false;
  if (rule.description.startsWith(CLOUD_CONTROLLER_RULE_PREFIX)) return true;
  return rule.source.kind === 'sg' && !ourGroupIds.has(rule.source.value);
}

const CLOUD_CONTROLLER_RULE_PREFIX = 'kubernetes.io/rule/';

/**
 * What to change so `current` holds `desired`. A rule the spec does not ask for is revoked, whoever
 * added it (a rule added by hand is drift), except the cloud controller's (see isForeignRule).
 */
export function diffIngressRules(current: readonly IngressRule[], desired: readonly IngressRule[], ourGroupIds: ReadonlySet<string> = new Set()): RuleDiff {
  const currentByKey = new Map(current.map((r) => [ruleKey(r), r]));
  const desiredKeys = new Set(desired.map(ruleKey));
  const authorize: IngressRule[] = [];
  const describe: IngressRule[] = [];
  for (const d of desired) {
    const c = currentByKey.get(ruleKey(d));
    if (!c) authorize.push(d);
    else if (c.description !== d.description) describe.push(d);
  }
  const revoke = current.filter((c) => !desiredKeys.has(ruleKey(c)) && !isForeignRule(c, ourGroupIds));
  return { authorize, revoke, describe };
}

// ---------------------------------------------------------------------------------------------
// Reconcile

/** All pages of a DescribeSecurityGroups with these filters. */
async function describeSecurityGroups(scope: ClusterScope, filters: Filter[]): Promise<SecurityGroup[]> {
  const out: SecurityGroup[] = [];
  let NextToken: string | undefined;
  do {
    const page = await scope.ec2.send(new DescribeSecurityGroupsCommand({ Filters: filters, NextToken }), { abortSignal: scope.signal });
    out.push(...(page.SecurityGroups ?? []));
    NextToken = page.NextToken;
  } while (NextToken);
  return out;
}

async function ruleContextFacts(scope: ClusterScope, vpcId: string, spec: AWSClusterSpec, provider: NetworkProvider): Promise<Omit<RuleContext, 'ids'>> {
  const need = needs(spec, provider);
  const facts: Omit<RuleContext, 'ids'> = {};
  if (need.vpcCidr && !vpcId.startsWith('(')) {
    const out = await scope.ec2.send(new DescribeVpcsCommand({ VpcIds: [vpcId] }), { abortSignal: scope.signal });
    facts.vpcCidr = out.Vpcs?.[0]?.CidrBlock;
  }
  if (need.natGateways && !vpcId.startsWith('(')) {
    const out = await scope.ec2.send(
      new DescribeNatGatewaysCommand({ Filter: [{ Name: 'vpc-id', Values: [vpcId] }, { Name: 'state', Values: ['available'] }] }),
      { abortSignal: scope.signal },
    );
    facts.natGatewayCidrs = (out.NatGateways ?? [])
      .flatMap((n) => (n.NatGatewayAddresses ?? []).map((a) => a.PublicIp))
      .filter((ip): ip is string => !!ip)
      .sort()
      .map((ip) => `${ip}/32`);
  }
  return facts;
}

/**
 * Makes the groups of the provider's roles exist (rolesFor; found by the cluster's ownership and
 * role tags in the VPC, created tagged when missing) and holds their ingress rules to the spec.
 * Returns the group ids by role (placeholders for groups a dry run would create).
 */
export async function reconcileSecurityGroups<P extends NetworkProvider = 'aws'>(
  scope: ClusterScope,
  input: { vpcId: string; spec: AWSClusterSpec; cluster: Cluster; provider?: P; infra?: { kind: string; name: string } },
): Promise<SecurityGroupIds<P>> {
  const { vpcId, spec, cluster } = input;
  const provider: NetworkProvider = input.provider ?? 'aws';
  const log = scope.log.child({ vpcId });
  const candidates: readonly AnySecurityGroupRole[] = provider === 'aws' ? SECURITY_GROUP_ROLES : EKS_SECURITY_GROUP_ROLES;
  const names = Object.fromEntries(candidates.map((r) => [r, securityGroupName(scope.clusterName, r)])) as Record<AnySecurityGroupRole, string>;
  const newVpc = vpcId.startsWith('(');

  // One describe for all roles: the cluster's owned groups in the VPC with one of our role tags.
  const owned = newVpc
    ? []
    : await describeSecurityGroups(scope, [
        { Name: 'vpc-id', Values: [vpcId] },
        ...ownedFilters(scope.clusterName),
        { Name: `tag:${ROLE_TAG}`, Values: [...candidates] },
      ]);
  const existing = new Map<AnySecurityGroupRole, SecurityGroup>();
  for (const role of candidates) {
    const mine = owned.filter((g) => fromTagList(g.Tags)[ROLE_TAG] === role);
    const one = expectAtMostOne(
      mine.map((g) => found(g, g.GroupId, fromTagList(g.Tags), scope.clusterName)),
      'security group',
      names[role],
      scope.clusterName,
    );
    if (one) existing.set(role, one.item);
  }
  const roles = rolesFor(provider, { bastion: bastionSpec(spec).enabled === true || existing.has('bastion') });

  // Missing roles: a group of the same name that is not ours would make CreateSecurityGroup fail; say how to adopt it.
  const missing = roles.filter((r) => !existing.has(r));
  if (missing.length > 0 && !newVpc) {
    const sameName = await describeSecurityGroups(scope, [
      { Name: 'vpc-id', Values: [vpcId] },
      { Name: 'group-name', Values: missing.map((r) => names[r]) },
    ]);
    for (const role of missing) {
      const one = expectAtMostOne(
        sameName.filter((g) => g.GroupName === names[role]).map((g) => found(g, g.GroupId, fromTagList(g.Tags), scope.clusterName)),
        'security group',
        names[role],
        scope.clusterName,
      );
      if (one) existing.set(role, one.item); // owned but without the role tag (an older capflow): use it
    }
  }

  const ids: Partial<Record<AnySecurityGroupRole, string>> = {};
  for (const role of roles) {
    const name = names[role];
    const group = existing.get(role);
    if (group) {
      ids[role] = group.GroupId!;
      scope.plan.record({ resource: 'security-group', name, action: 'no-change', id: group.GroupId });
      continue;
    }
    if (scope.dryRun) {
      ids[role] = placeholderGroupId(role);
      scope.plan.record({ resource: 'security-group', name, action: 'create', id: ids[role], detail: `role ${role} in ${vpcId}` });
      continue;
    }
    log.info('Creating security group', { role, name });
    const out = await scope.ec2.send(
      new CreateSecurityGroupCommand({
        VpcId: vpcId,
        GroupName: name,
        Description: `Kubernetes cluster ${scope.clusterName}: ${role}`,
        TagSpecifications: tagSpecifications('security-group', ownedTags(scope, role, name)),
      }),
      { abortSignal: scope.signal },
    );
    ids[role] = out.GroupId!;
    scope.plan.record({ resource: 'security-group', name, action: 'create', id: out.GroupId, detail: `role ${role} in ${vpcId}` });
  }

  // Rules, now that every group has an id to refer to.
  const facts = await ruleContextFacts(scope, vpcId, spec, provider);
  const ourIds = new Set(Object.values(ids).filter((x): x is string => !!x));
  for (const role of roles) {
    const name = names[role];
    const id = ids[role]!;
    const desired =
      provider === 'aws'
        ? desiredIngressRules(role as SecurityGroupRole, spec, cluster, { ids: ids as Record<SecurityGroupRole, string>, ...facts })
        : desiredEksIngressRules(role as EksSecurityGroupRole, spec, { ids: ids as SecurityGroupIds<'eks'>, ...facts });
    const current = existing.has(role) ? currentIngressRules(existing.get(role)!) : [];
    const diff = diffIngressRules(current, desired, ourIds);
    const changes = diff.authorize.length + diff.revoke.length + diff.describe.length;
    const at = (path: readonly PathSegment[] | undefined) => (input.infra ? { spec: { ...input.infra, path: path ?? RULES_FIELD[role] } } : {});
    const update = (detail: string, field: readonly PathSegment[] | undefined) => scope.plan.record({ resource: 'security-group-rules', name, action: 'update', id, detail, ...at(field) });
    if (changes === 0) {
      scope.plan.record({ resource: 'security-group-rules', name, action: 'no-change', id, detail: `${desired.length} rules` });
    } else if (!existing.has(role)) {
      // A new group's rules are one entry.
      update(diff.authorize.map((r) => `authorize ${formatRule(r)}`).join('; '), NETWORK);
    } else {
      // On a group that exists, one entry per changed rule, each at the field that asks for it (or
      // would have to, to keep a rule found by hand).
      for (const r of diff.authorize) update(`authorize ${formatRule(r)}`, r.origin);
      for (const r of diff.revoke) update(`revoke ${formatRule(r)}: not in the spec`, undefined);
      for (const r of diff.describe) update(`describe ${formatRule(r)} as "${r.description}"`, r.origin);
    }
    if (changes === 0 || scope.dryRun) continue;
    if (diff.revoke.length > 0) {
      log.info('Revoking security group ingress rules', { securityGroupId: id, rules: diff.revoke.map(formatRule) });
      await revoke(scope, id, diff.revoke);
    }
    if (diff.authorize.length > 0) {
      log.info('Authorizing security group ingress rules', { securityGroupId: id, rules: diff.authorize.map(formatRule) });
      await scope.ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: id, IpPermissions: toIpPermissions(diff.authorize) }), {
        abortSignal: scope.signal,
      });
    }
    if (diff.describe.length > 0) {
      log.info('Updating security group rule descriptions', { securityGroupId: id, rules: diff.describe.map(formatRule) });
      await scope.ec2.send(new UpdateSecurityGroupRuleDescriptionsIngressCommand({ GroupId: id, IpPermissions: toIpPermissions(diff.describe) }), {
        abortSignal: scope.signal,
      });
    }
  }
  return ids as SecurityGroupIds<P>;
}

/** Revokes rules as they were read (with their descriptions: moto matches on them); already gone is fine. */
async function revoke(scope: ClusterScope, groupId: string, rules: readonly IngressRule[]): Promise<void> {
  try {
    await scope.ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: toIpPermissions(rules) }), { abortSignal: scope.signal });
  } catch (err) {
    if (isNotFound(err)) return;
    throw new CapflowError(classifyError(err), 'SG_REVOKE_FAILED', `failed to revoke ingress rules of security group "${groupId}": ${awsErrorName(err)}`, {
      cause: err,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Delete

/**
 * The order to delete groups in, and the fewest groups whose references must be revoked first.
 * AWS refuses to delete a group another group's rule names (DependencyViolation; a rule naming its
 * own group does not count), and deleting a group removes its rules. So a group nobody else in the
 * set references goes first, which frees the groups it named; only a cycle (control plane and nodes
 * name each other) needs a revoke: of the group whose rules, once gone, free the most others.
 */
export function deletionOrder(groups: readonly SecurityGroup[]): { order: string[]; revokeFrom: string[] } {
  const ids = new Set(groups.map((g) => g.GroupId!));
  const refs = new Map<string, Set<string>>();
  for (const g of groups) {
    refs.set(g.GroupId!, new Set(currentIngressRules(g).filter((r) => r.source.kind === 'sg' && r.source.value !== g.GroupId && ids.has(r.source.value)).map((r) => r.source.value)));
  }
  const remaining = new Set([...ids].sort());
  const referenced = (id: string) => [...remaining].some((o) => o !== id && refs.get(o)!.has(id));
  const order: string[] = [];
  const revokeFrom: string[] = [];
  while (remaining.size > 0) {
    const free = [...remaining].filter((id) => !referenced(id));
    if (free.length > 0) {
      for (const id of free) {
        order.push(id);
        remaining.delete(id);
      }
      continue;
    }
    // A cycle: revoke the references of the group that frees the most others (first by id on a tie).
    const frees = (g: string) => [...remaining].filter((id) => id !== g && ![...remaining].some((o) => o !== id && o !== g && refs.get(o)!.has(id))).length;
    const pick = [...remaining].reduce((best, g) => (frees(g) > frees(best) ? g : best));
    revokeFrom.push(pick);
    refs.set(pick, new Set());
  }
  return { order, revokeFrom };
}

/**
 * Deletes the cluster's security groups (in `vpcId` when given, else wherever they are): those
 * capflow made (CAPA ownership tag) and those the cloud controller made for Services (`k8s-elb-*`,
 * kubernetes.io/cluster/<name>=owned). Groups go in dependency order (deletionOrder), so only a
 * cycle of references costs a revoke; rules in groups that are the cluster's but not owned (tagged
 * shared) that name a doomed group are revoked too, as the cloud controller would when its Service
 * goes, or the group could never be deleted. A group still in use (DependencyViolation: a network
 * interface of a load balancer going away) is retried until scope.timeouts.dependencyMs. Groups not
 * owned (shared, untagged, the VPC's default group) are never deleted.
 */
export async function deleteSecurityGroups(scope: ClusterScope, vpcId?: string): Promise<void> {
  const log = scope.log.child(vpcId ? { vpcId } : {});
  const all = await describeSecurityGroups(scope, [
    ...(vpcId ? [{ Name: 'vpc-id', Values: [vpcId] }] : []),
    { Name: 'tag-key', Values: [capaClusterTag(scope.clusterName), k8sClusterTag(scope.clusterName)] },
  ]);
  const groups: SecurityGroup[] = [];
  const others: SecurityGroup[] = [];
  for (const g of all) {
    const tags = fromTagList(g.Tags);
    const values = [tags[capaClusterTag(scope.clusterName)], tags[k8sClusterTag(scope.clusterName)]];
    const name = g.GroupName ?? g.GroupId ?? '';
    if (g.GroupName === 'default' || values.includes('shared') || ownershipOf(tags, scope.clusterName) !== 'owned') {
      scope.plan.record({ resource: 'security-group', name, action: 'skip', id: g.GroupId, detail: 'not owned by the cluster' });
      others.push(g);
      continue;
    }
    groups.push(g);
  }
  if (groups.length === 0) return;
  const ownedIds = new Set(groups.map((g) => g.GroupId!));
  const byId = new Map(groups.map((g) => [g.GroupId!, g]));
  const { order, revokeFrom } = deletionOrder(groups);

  // 1. References that deleting in order cannot clear: a cycle's, and those in groups we keep.
  for (const g of [...revokeFrom.map((id) => byId.get(id)!), ...others]) {
    const refs = currentIngressRules(g).filter((r) => r.source.kind === 'sg' && r.source.value !== g.GroupId && ownedIds.has(r.source.value));
    if (refs.length === 0) continue;
    scope.plan.record({
      resource: 'security-group-rules',
      name: g.GroupName ?? g.GroupId!,
      action: 'delete',
      id: g.GroupId,
      detail: `revoke ${refs.length} rules referring to the cluster's groups`,
    });
    if (scope.dryRun) continue;
    log.info('Revoking security group references', { securityGroupId: g.GroupId, rules: refs.map(formatRule) });
    await revoke(scope, g.GroupId!, refs);
  }

  // 2. The groups in order; a pass skips a group still named by one not yet deleted, and passes
  // repeat (with backoff) until none is left or the deadline.
  for (const id of order) scope.plan.record({ resource: 'security-group', name: byId.get(id)!.GroupName ?? id, action: 'delete', id });
  if (scope.dryRun) return;
  const revoked = new Set(revokeFrom);
  const namesOf = (id: string) =>
    revoked.has(id) ? new Set<string>() : new Set(currentIngressRules(byId.get(id)!).filter((r) => r.source.kind === 'sg' && r.source.value !== id).map((r) => r.source.value));
  const remaining = new Map(order.map((id) => [id, byId.get(id)!]));
  const blocked = new Map<string, unknown>();
  let fatal: { id: string; err: unknown } | undefined;
  for (const id of order) log.info('Deleting security group', { securityGroupId: id, name: byId.get(id)!.GroupName });
  try {
    await waitFor(
      async () => {
        for (const id of [...remaining.keys()]) {
          if ([...remaining.keys()].some((o) => o !== id && namesOf(o).has(id))) continue;
          try {
            await scope.ec2.send(new DeleteSecurityGroupCommand({ GroupId: id }), { abortSignal: scope.signal });
            remaining.delete(id);
          } catch (err) {
            if (isNotFound(err)) remaining.delete(id);
            else if (isDependencyViolation(err)) blocked.set(id, err);
            else {
              fatal = { id, err };
              return true;
            }
          }
        }
        return remaining.size === 0 ? true : undefined;
      },
      {
        description: `security groups ${[...remaining.keys()].join(', ')} to be free`,
        timeoutMs: scope.timeouts.dependencyMs,
        signal: scope.signal,
        minDelayMs: 1000,
      },
    );
  } catch (err) {
    if (!(isCapflowError(err) && err.code === 'WAIT_TIMEOUT')) throw err;
    throw await dependencyError(scope, remaining, blocked);
  }
  if (fatal) {
    throw new CapflowError(classifyError(fatal.err), 'SG_DELETE_FAILED', `failed to delete security group "${fatal.id}": ${awsErrorName(fatal.err) || String(fatal.err)}`, {
      cause: fatal.err,
    });
  }
}

/** The error for groups still in use at the deadline, naming the first group and a network interface that holds it. */
async function dependencyError(scope: ClusterScope, remaining: Map<string, SecurityGroup>, blocked: Map<string, unknown>): Promise<TransientError> {
  // Name a group AWS refused (a group only waiting for another to go is not the cause).
  const [id, g] = [...remaining].find(([x]) => blocked.has(x)) ?? [...remaining][0]!;
  const enis = await scope.ec2
    .send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: 'group-id', Values: [...remaining.keys()] }] }), { abortSignal: scope.signal })
    .then((o) => o.NetworkInterfaces ?? [])
    .catch(() => []);
  const eni = enis.find((n) => (n.Groups ?? []).some((x) => x.GroupId === id)) ?? enis[0];
  return new TransientError(
    'SG_DEPENDENCY_VIOLATION',
    `security group "${id}" (${g.GroupName}) is still in use after ${Math.round(scope.timeouts.dependencyMs / 1000)}s` +
      (eni ? `: network interface ${eni.NetworkInterfaceId} (${eni.Description || eni.InterfaceType || 'no description'}) uses it` : ''),
    {
      cause: blocked.get(id),
      hint: 'delete what still uses the group (instances, load balancers, network interfaces), then run again',
      details: { securityGroupIds: [...remaining.keys()], networkInterfaceIds: enis.map((n) => n.NetworkInterfaceId) },
    },
  );
}
