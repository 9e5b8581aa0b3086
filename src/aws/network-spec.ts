/**
 * The network provision-vpc makes: the subnets wanted (computed or listed),
 * zone order, and the checks that need reads (the region's zones). The network
 * an AWSCluster describes and its checks that need no cloud live with the spec
 * (src/spec/aws-network.ts), so validation runs them everywhere.
 */
import { createHash } from 'node:crypto';
import { NetworkProblems, SUBNETS, VPC, type ClusterModel, type ListedSubnet, type NetworkSpec, type SpecProblem } from '../spec/index.js';
import { defaultLayout, firstFree, overlaps, parseCidr } from '../core/cidr.js';

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
