/**
 * The network an AWSCluster describes, read from the model, and the checks
 * on it that need no cloud (CIDR syntax, overlaps, containment, ids) or only
 * reads (the region's zones, a user-supplied VPC). Every problem names the
 * file:line:column of its field, so bad input fails before anything is made.
 */
import { createHash } from 'node:crypto';
import { InputError } from '../core/errors.js';
import { fieldLocation, formatPath, SpecInvalidError, type AWSCluster, type AWSClusterSpec, type ClusterModel, type ProblemCode, type SpecProblem } from '../spec/index.js';
import { cidrProblem, contains, defaultLayout, firstFree, overlappingPairs, overlaps, parseCidr } from './cidr.js';

/** AWSCluster annotation choosing one shared NAT gateway instead of one per zone (CAPA v2.9 has no field for it). */
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

export interface NetworkSpec {
  clusterName: string;
  region: string;
  /** The AWSCluster document, for problem locations. */
  infra: { kind: 'AWSCluster'; name: string };
  awsCluster: AWSCluster;
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

/** A subnet capflow wants to exist (or, user-supplied, to use). */
export interface DesiredSubnet {
  name: string;
  az: string;
  cidr: string;
  isPublic: boolean;
  /** Tags from the spec's subnet entry. */
  tags: Record<string, string>;
  /** Set for a user-supplied subnet. */
  userId?: string;
  specIndex?: number;
  /** Why the block differs from the computed layout, when it does. */
  detail?: string;
}

/** A subnet found in the VPC. */
export interface ExistingSubnet {
  id: string;
  az: string;
  cidr: string;
  isPublic: boolean;
  owned: boolean;
  tags: Record<string, string>;
  mapPublicIpOnLaunch: boolean;
}

const SUBNET_ID = /^subnet-[0-9a-f]+$/;

/** Reads the network part of an AWS cluster's model. */
export function networkSpecOf(model: ClusterModel): NetworkSpec {
  if (model.provider !== 'aws' || model.infrastructure.kind !== 'AWSCluster') {
    throw new InputError('PROVIDER_NOT_AWS', `cluster ${model.name} is a ${model.provider} cluster; provision-vpc makes the network of an AWSCluster`);
  }
  const awsCluster = model.infrastructure;
  const spec: AWSClusterSpec = awsCluster.spec;
  const vpc = spec.network?.vpc ?? {};
  const nat = awsCluster.metadata.annotations?.[NAT_GATEWAYS_ANNOTATION];
  const listed = spec.network?.subnets;
  return {
    clusterName: model.name,
    region: spec.region ?? 'us-east-1',
    infra: { kind: 'AWSCluster', name: awsCluster.metadata.name },
    awsCluster,
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

/** Builds problems located at fields of the AWSCluster. */
export class NetworkProblems {
  readonly list: SpecProblem[] = [];
  constructor(
    private readonly model: ClusterModel,
    private readonly spec: Pick<NetworkSpec, 'infra'>,
  ) {}

  add(path: Array<string | number>, code: ProblemCode, message: string, hint?: string): void {
    const loc = fieldLocation(this.model, this.spec.infra, path);
    this.list.push({
      severity: 'error',
      code,
      message,
      ...(loc ? { file: loc.file, line: loc.line, column: loc.column } : {}),
      kind: this.spec.infra.kind,
      name: this.spec.infra.name,
      path: formatPath(path),
      ...(hint ? { hint } : {}),
    });
  }

  /** Throws SpecInvalidError (exit 2) when any problem was added. */
  throwIfAny(): void {
    if (this.list.length > 0) throw new SpecInvalidError(this.list, this.model.dir);
  }
}

const SUBNETS = ['spec', 'network', 'subnets'] as const;
const VPC = ['spec', 'network', 'vpc'] as const;

/** Checks that need no cloud: annotation, CIDR syntax, containment, overlaps, ids, zones named. */
export function checkNetworkSpec(model: ClusterModel, spec: NetworkSpec): SpecProblem[] {
  const p = new NetworkProblems(model, spec);
  const nat = spec.awsCluster.metadata.annotations?.[NAT_GATEWAYS_ANNOTATION];
  if (nat !== undefined && nat !== 'single' && nat !== 'per-az') {
    p.add(['metadata', 'annotations', NAT_GATEWAYS_ANNOTATION], 'invalid-value', `must be "single" or "per-az", not "${nat}"`);
  }
  if (!Number.isInteger(spec.azLimit) || spec.azLimit < 1) {
    p.add([...VPC, 'availabilityZoneUsageLimit'], 'invalid-value', 'must be at least 1');
  }
  if (spec.vpcId) {
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
  if (!spec.subnets) return p.list;
  const valid: Array<string | undefined> = [];
  for (const s of spec.subnets) {
    if (s.resourceId) {
      p.add([...SUBNETS, s.index, 'id'], 'invalid-value', `subnet id ${s.resourceId} can only be used with a user-supplied VPC (spec.network.vpc.id); capflow creates the subnets of a VPC it creates`);
      valid.push(undefined);
      continue;
    }
    if (!s.availabilityZone) p.add([...SUBNETS, s.index], 'invalid-value', 'availabilityZone is required for a subnet capflow creates');
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

/** Checks against the region's zones: enough for the usage limit, and every listed zone exists. */
export function checkZones(model: ClusterModel, spec: NetworkSpec, zones: readonly string[]): SpecProblem[] {
  const p = new NetworkProblems(model, spec);
  if (spec.subnets) {
    for (const s of spec.subnets) {
      if (s.availabilityZone && !zones.includes(s.availabilityZone)) {
        p.add([...SUBNETS, s.index, 'availabilityZone'], 'invalid-value', `availability zone ${s.availabilityZone} is not in region ${spec.region} (zones: ${zones.join(', ')})`);
      }
    }
  } else if (zones.length < spec.azLimit) {
    p.add([...VPC, 'availabilityZoneUsageLimit'], 'invalid-value', `region ${spec.region} has ${zones.length} availability zones, fewer than the ${spec.azLimit} asked for`, `set it to ${zones.length} or less`);
  }
  return p.list;
}

/** Region zones in selection order: sorted (Ordered) or shuffled with a seed from the cluster name (Random, stable across runs). */
export function orderZones(zones: readonly string[], selection: 'Ordered' | 'Random', clusterName: string): string[] {
  const sorted = [...zones].sort();
  if (selection === 'Ordered') return sorted;
  let seed = createHash('sha256').update(clusterName).digest().readUInt32BE(0);
  const next = (): number => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = sorted.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [sorted[i], sorted[j]] = [sorted[j]!, sorted[i]!];
  }
  return sorted;
}

export function subnetName(clusterName: string, isPublic: boolean, az: string): string {
  return `${clusterName}-subnet-${isPublic ? 'public' : 'private'}-${az}`;
}

/**
 * True when the existing owned subnets already cover the computed layout
 * (a public and a private subnet in `azLimit` zones), so the region's zones
 * need not be read again.
 */
export function layoutCovered(spec: NetworkSpec, existing: readonly ExistingSubnet[]): boolean {
  if (spec.subnets) {
    return spec.subnets.every((s) => s.cidrBlock !== undefined && existing.some((e) => e.owned && e.cidr === s.cidrBlock));
  }
  const zones = new Set(existing.filter((e) => e.owned && e.isPublic).map((e) => e.az));
  const full = [...zones].filter((z) => existing.some((e) => e.owned && !e.isPublic && e.az === z));
  return full.length >= spec.azLimit;
}

/**
 * The subnets the spec asks for in a VPC capflow manages. Listed subnets are
 * taken as written. Otherwise the AWS provider's layout over `azLimit` zones
 * is used, with one rule for stability (CAPA writes its layout back into the
 * spec, capflow cannot): an owned subnet that exists keeps its block and its
 * zone stays selected; a new zone's subnet gets its block from the layout
 * when that block is free, else the first free block of the same size, else
 * the largest free block (the detail says so). `zones` may be omitted when
 * `layoutCovered` is true.
 */
export function desiredSubnets(spec: NetworkSpec, zones: readonly string[] | undefined, existing: readonly ExistingSubnet[]): { subnets: DesiredSubnet[]; unplaced: string[] } {
  if (spec.subnets) {
    const seen = new Map<string, number>();
    return {
      subnets: spec.subnets.map((s) => {
        const base = s.name ?? subnetName(spec.clusterName, s.isPublic, s.availabilityZone ?? '');
        const n = (seen.get(base) ?? 0) + 1;
        seen.set(base, n);
        return {
          name: n === 1 ? base : `${base}-${n}`,
          az: s.availabilityZone ?? '',
          cidr: s.cidrBlock ?? '',
          isPublic: s.isPublic,
          tags: s.tags,
          specIndex: s.index,
        };
      }),
      unplaced: [],
    };
  }
  const owned = existing.filter((e) => e.owned).sort((a, b) => a.cidr.localeCompare(b.cidr));
  const ownedZones = new Set(owned.map((e) => e.az));
  const order = orderZones(zones ?? [...ownedZones], spec.azSelection, spec.clusterName);
  const chosen = [...order.filter((z) => ownedZones.has(z)), ...order.filter((z) => !ownedZones.has(z))].slice(0, spec.azLimit);
  const layout = defaultLayout(spec.vpcCidr, chosen, spec.subnetSchema);
  const taken: string[] = existing.map((e) => e.cidr);
  const out: DesiredSubnet[] = [];
  const unplaced: string[] = [];
  // Pass 1: existing subnets keep their blocks; a zone whose new subnets all
  // fit their layout blocks takes them. Pass 2: the other zones' new subnets
  // (public first, the smaller blocks) take the first free space.
  const pending: Array<{ zone: string; isPublic: boolean; candidate: string }> = [];
  for (const { zone, public: pub, private: priv } of layout) {
    const missing: Array<{ zone: string; isPublic: boolean; candidate: string }> = [];
    for (const [isPublic, candidate] of [[true, pub], [false, priv]] as const) {
      const have = owned.find((e) => e.az === zone && e.isPublic === isPublic);
      if (have) out.push({ name: subnetName(spec.clusterName, isPublic, zone), az: zone, cidr: have.cidr, isPublic, tags: {} });
      else missing.push({ zone, isPublic, candidate });
    }
    if (missing.every((m) => !taken.some((t) => overlaps(t, m.candidate)))) {
      for (const m of missing) {
        taken.push(m.candidate);
        out.push({ name: subnetName(spec.clusterName, m.isPublic, zone), az: zone, cidr: m.candidate, isPublic: m.isPublic, tags: {} });
      }
    } else {
      pending.push(...missing);
    }
  }
  pending.sort((a, b) => Number(b.isPublic) - Number(a.isPublic));
  for (const { zone, isPublic, candidate } of pending) {
    const name = subnetName(spec.clusterName, isPublic, zone);
    const prefix = parseCidr(candidate)!.prefix;
    let cidr: string | undefined = taken.some((t) => overlaps(t, candidate)) ? undefined : candidate;
    let detail: string | undefined;
    if (!cidr) {
      for (let p = prefix; p <= 28 && !cidr; p++) cidr = firstFree(spec.vpcCidr, p, taken);
      if (cidr) detail = `layout block ${candidate} overlaps an existing subnet; using ${cidr}`;
    }
    if (!cidr) {
      unplaced.push(`${name} (no free block left in ${spec.vpcCidr})`);
      continue;
    }
    taken.push(cidr);
    out.push({ name, az: zone, cidr, isPublic, tags: {}, ...(detail ? { detail } : {}) });
  }
  out.sort((a, b) => a.az.localeCompare(b.az) || Number(b.isPublic) - Number(a.isPublic));
  return { subnets: out, unplaced };
}

/** Subnets a user-supplied VPC lends the cluster, by the spec's ids. */
export function userSubnets(spec: NetworkSpec, existing: readonly ExistingSubnet[]): { subnets: DesiredSubnet[]; missing: ListedSubnet[] } {
  const subnets: DesiredSubnet[] = [];
  const missing: ListedSubnet[] = [];
  for (const s of spec.subnets ?? []) {
    const found = existing.find((e) => e.id === s.resourceId);
    if (!found) {
      missing.push(s);
      continue;
    }
    subnets.push({
      name: s.resourceId!,
      az: found.az,
      cidr: found.cidr,
      // The spec says which are public; a subnet tagged public counts too.
      isPublic: s.isPublic || found.isPublic,
      tags: {},
      userId: found.id,
      specIndex: s.index,
    });
  }
  return { subnets, missing };
}
