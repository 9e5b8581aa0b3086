/**
 * Checks on an assembled model that the CRD schemas cannot express and that
 * need no cloud: what AWS or kubeadm would refuse only after capflow had
 * started making things. The loader runs them for every command, step and
 * the reconciler, so a spec that passes validation gets past every check a
 * step can make without reading the cloud.
 *
 * - the AWS network (src/spec/aws-network.ts) of an AWSCluster or an EKS
 *   cluster's AWSManagedControlPlane: CIDRs, sizes, overlaps, zones;
 * - every CIDR-valued field of every document (security group rules, bastion
 *   and API server allow-lists, pod and service ranges), found by field name;
 * - region names, instance type names, Kubernetes versions (and the rule that
 *   workers never run a newer version than the control plane), replica counts,
 *   rolling update limits, delete policies, failure domains of the region;
 * - MachineHealthChecks (health-checks.ts): durations, limits, selectors.
 */
import { isIP } from 'node:net';
import { checkEks } from './eks-checks.js';
import { healthCheckRules } from './health-checks.js';
import { checkNetworkSpec, networkOwner, networkSpecOf, zoneOfRegion } from './aws-network.js';
import { FieldProblems } from './locations.js';
import { bootstrapSpecProblems, type BootstrapRole } from './kubeadm-spec.js';
import type { ClusterModel, SpecDocument } from './model.js';
import { isRecord } from './paths.js';
import type { SpecProblem } from './problems.js';
import { DELETE_POLICIES, rolloutLimit } from './rollout.js';
import type { PathSegment } from './yaml-source.js';

/** An AWS region name: `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`, `us-isob-east-1`. */
const REGION = /^[a-z]{2}(-(gov|iso[a-z]?))?-[a-z]+-[1-9][0-9]?$/;
/**
 * An EC2 instance type: family (with generation and attributes), a dot, and one of the sizes EC2
 * has (`m5.large`, `c6in.32xlarge`, `u-6tb1.metal`, `m7i.metal-24xl`, `mac2-m2pro.metal`).
 */
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*[0-9][a-z0-9-]*\.(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal|metal-[1-9][0-9]*xl)$/;
/** A Kubernetes release: v1.minor.patch with optional pre-release and build (semver: no leading zeros, as kubeadm parses it). */
const KUBERNETES_VERSION = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;
/** EKS takes `1.31` as well. */
const EKS_VERSION = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)(\.(0|[1-9]\d*))?$/;
/** No Kubernetes minor has had more than a few dozen patch releases: a patch beyond this is a typo. */
const MAX_PATCH = 99;
/**
 * The newest Kubernetes minor capflow was tested with, and how far past it a version may go
 * before it is taken for a typo: a release that cannot exist yet fails here, not on the machines.
 */
export const NEWEST_KNOWN_MINOR = 35;
const MINOR_HEADROOM = 3;

/** EBS volume types, and the largest volume EBS makes (io2 Block Express: 64 TiB). */
const VOLUME_TYPES = ['standard', 'gp2', 'gp3', 'io1', 'io2', 'sc1', 'st1'];
const MAX_VOLUME_GIB = 65_536;

function hasExternalEtcd(kcpSpec: Record<string, unknown>): boolean {
  const kcs = isRecord(kcpSpec.kubeadmConfigSpec) ? kcpSpec.kubeadmConfigSpec : {};
  const cc = isRecord(kcs.clusterConfiguration) ? kcs.clusterConfiguration : {};
  const etcd = isRecord(cc.etcd) ? cc.etcd : {};
  return isRecord(etcd.external);
}

/** Every problem of the model that needs no cloud to find. */
export function checkModel(model: ClusterModel): SpecProblem[] {
  const p = new FieldProblems(model);
  const problems = p.list;
  for (const doc of model.documents) {
    walkFields(doc.object, (path, key, value) => checkField(p, doc, path, key, value));
  }
  checkVersions(model, p);
  checkReplicas(model, p);
  checkRollouts(model, p);
  checkBootstrapSpecs(model, p);
  checkEks(model, p);
  healthCheckRules(model, p);
  if (networkOwner(model)) {
    // A block both checks refuse (by its field name above, and as the network's) is reported once.
    const key = (x: SpecProblem): string => `${x.file}:${x.line}:${x.column} ${x.path}`;
    const found = new Set(problems.map(key));
    problems.push(...checkNetworkSpec(model, networkSpecOf(model)).filter((x) => !found.has(key(x))));
  }
  return problems;
}

/** Calls `visit` for every map entry of the object, depth first, without recursion limits of its own. */
function walkFields(root: unknown, visit: (path: PathSegment[], key: string, value: unknown) => void): void {
  const stack: Array<{ node: unknown; path: PathSegment[] }> = [{ node: root, path: [] }];
  while (stack.length > 0) {
    const { node, path } = stack.pop() as { node: unknown; path: PathSegment[] };
    if (Array.isArray(node)) {
      node.forEach((item, i) => stack.push({ node: item, path: [...path, i] }));
    } else if (isRecord(node)) {
      for (const [k, v] of Object.entries(node)) {
        visit([...path, k], k, v);
        stack.push({ node: v, path: [...path, k] });
      }
    }
  }
}

function checkField(p: FieldProblems, doc: SpecDocument, path: PathSegment[], key: string, value: unknown): void {
  // ConfigMaps and Secrets carry other objects as text; their fields are not ours to judge.
  if (doc.kind === 'ConfigMap' || doc.kind === 'Secret') return;
  if (/cidr/i.test(key)) {
    for (const { v, at } of stringsAt(value, path)) {
      const bad = cidrSyntaxProblem(v);
      if (bad) p.add(doc, at, 'invalid-value', bad);
      else if (/ipv6/i.test(key) && isIP(v.slice(0, v.indexOf('/'))) !== 6) p.add(doc, at, 'invalid-value', `"${v}" is not an IPv6 block, and ${key} holds IPv6 blocks only`);
    }
  }
  if (doc.kind.startsWith('AWS') && (key === 'instanceType' || key === 'instanceTypes')) {
    for (const { v, at } of stringsAt(value, path)) {
      if (!INSTANCE_TYPE.test(v)) {
        p.add(doc, at, 'invalid-value', `"${v}" is not an EC2 instance type`, 'instance types are written family.size, the size one of nano, micro, small, medium, large, xlarge, <n>xlarge, metal (e.g. m5.large or t3a.2xlarge)');
      }
    }
  }
  if (doc.kind.startsWith('AWS') && (key === 'fromPort' || key === 'toPort') && typeof value === 'number' && (value < -1 || value > 65535)) {
    p.add(doc, path, 'invalid-value', `${key} ${value} is not a port: EC2 security group rules take 0 to 65535 (-1 for all)`);
  }
  if (doc.kind.startsWith('AWS') && (key === 'rootVolume' || key === 'nonRootVolumes') && value !== undefined) {
    const volumes: Array<{ v: unknown; at: PathSegment[] }> = Array.isArray(value) ? value.map((v: unknown, i) => ({ v, at: [...path, i] })) : [{ v: value, at: path }];
    for (const { v, at } of volumes) {
      if (!isRecord(v)) continue;
      if (typeof v.type === 'string' && !VOLUME_TYPES.includes(v.type)) {
        p.add(doc, [...at, 'type'], 'invalid-value', `"${v.type}" is not an EBS volume type`, `use one of ${VOLUME_TYPES.join(', ')}`);
      }
      if (typeof v.size === 'number' && v.size > MAX_VOLUME_GIB) {
        p.add(doc, [...at, 'size'], 'invalid-value', `${v.size} GiB is larger than any EBS volume (at most ${MAX_VOLUME_GIB} GiB)`);
      }
    }
  }
  if (key === 'region' && typeof value === 'string' && path.length === 2 && path[0] === 'spec' && doc.kind.startsWith('AWS')) {
    if (!REGION.test(value)) p.add(doc, path, 'invalid-value', `"${value}" is not an AWS region name`, 'regions are written like us-east-1 or eu-central-1');
  }
}

/** A string field, or each string of a list field, with its path. */
function stringsAt(value: unknown, path: PathSegment[]): Array<{ v: string; at: PathSegment[] }> {
  if (typeof value === 'string') return [{ v: value, at: path }];
  if (!Array.isArray(value)) return [];
  return value.flatMap((v: unknown, i) => (typeof v === 'string' ? [{ v, at: [...path, i] }] : []));
}

/** Why `text` is not an IPv4 or IPv6 CIDR block (syntax only: AWS itself decides about host bits here). */
export function cidrSyntaxProblem(text: string): string | undefined {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? '' : text.slice(slash + 1);
  const family = isIP(address);
  if (family === 0 || !/^\d{1,3}$/.test(prefixText)) return `"${text}" is not a CIDR block (a.b.c.d/n, or an IPv6 block)`;
  const prefix = Number(prefixText);
  if (prefix > (family === 4 ? 32 : 128)) return `"${text}" has a prefix longer than an IPv${family} address`;
  return undefined;
}

interface ParsedVersion {
  major: number;
  minor: number;
}

function versionProblem(text: string, eks: boolean): { problem?: string; version?: ParsedVersion } {
  const m = (eks ? EKS_VERSION : KUBERNETES_VERSION).exec(text);
  if (!m) return { problem: eks ? `"${text}" is not a Kubernetes version (1.31 or v1.31.4)` : `"${text}" is not a Kubernetes version (v1.31.4)` };
  const version = { major: Number(m[1]), minor: Number(m[2]) };
  const patch = Number(eks ? (m[4] ?? 0) : m[3]);
  if (version.major !== 1) return { problem: `Kubernetes ${text} does not exist: every release is 1.x` };
  if (version.minor > NEWEST_KNOWN_MINOR + MINOR_HEADROOM) {
    return { problem: `Kubernetes ${text} does not exist (the newest release capflow knows is 1.${NEWEST_KNOWN_MINOR})` };
  }
  if (patch > MAX_PATCH) return { problem: `Kubernetes ${text} does not exist: no minor release has more than ${MAX_PATCH} patch releases` };
  return { version };
}

function checkVersions(model: ClusterModel, p: FieldProblems): void {
  const byKind = (kind: string): SpecDocument[] => model.documents.filter((d) => d.kind === kind);
  let controlPlane: { version: ParsedVersion; text: string } | undefined;
  for (const doc of [...byKind('KubeadmControlPlane'), ...byKind('AWSManagedControlPlane')]) {
    const spec = isRecord(doc.object.spec) ? doc.object.spec : {};
    if (typeof spec.version !== 'string') continue;
    const { problem, version } = versionProblem(spec.version, doc.kind === 'AWSManagedControlPlane');
    if (problem) p.add(doc, ['spec', 'version'], 'invalid-value', problem);
    else if (version && doc.name === model.controlPlane.metadata.name) controlPlane = { version, text: spec.version };
  }
  for (const doc of [...byKind('MachineDeployment'), ...byKind('MachinePool')]) {
    const path = ['spec', 'template', 'spec', 'version'];
    const text = getString(doc.object, path);
    if (text === undefined) continue;
    const { problem, version } = versionProblem(text, false);
    if (problem) {
      p.add(doc, path, 'invalid-value', problem);
      continue;
    }
    if (!version || !controlPlane) continue;
    // Kubernetes' version skew policy: kubelets never newer than the API server.
    if (version.minor > controlPlane.version.minor) {
      p.add(doc, path, 'invalid-value', `workers on ${text} would be newer than the control plane (${controlPlane.text}); kubelets may not be newer than the API server`, 'upgrade the control plane first');
    } else if (controlPlane.version.minor - version.minor > 3) {
      p.add(doc, path, 'invalid-value', `workers on ${text} are more than three minor versions behind the control plane (${controlPlane.text}), which Kubernetes does not support`);
    }
  }
}

function checkReplicas(model: ClusterModel, p: FieldProblems): void {
  for (const doc of model.documents) {
    const spec = isRecord(doc.object.spec) ? doc.object.spec : undefined;
    if (!spec) continue;
    if (doc.kind === 'KubeadmControlPlane' && typeof spec.replicas === 'number' && spec.replicas < 1) {
      p.add(doc, ['spec', 'replicas'], 'invalid-value', `a control plane needs at least 1 replica, not ${spec.replicas}`);
    } else if (doc.kind === 'KubeadmControlPlane' && typeof spec.replicas === 'number' && spec.replicas % 2 === 0 && !hasExternalEtcd(spec)) {
      // Cluster API refuses it too: an even number of stacked etcd members tolerates no more failures than one fewer.
      p.add(doc, ['spec', 'replicas'], 'invalid-value', `${spec.replicas} control plane replicas with stacked etcd: etcd needs an odd number of members`, `use ${spec.replicas - 1} or ${spec.replicas + 1}`);
    }
    if ((doc.kind === 'MachineDeployment' || doc.kind === 'MachinePool') && typeof spec.replicas === 'number' && spec.replicas < 0) {
      p.add(doc, ['spec', 'replicas'], 'invalid-value', `replicas cannot be negative (${spec.replicas})`);
    }
    if (doc.kind === 'AWSMachinePool' || doc.kind === 'AWSManagedMachinePool') {
      const scaling = doc.kind === 'AWSManagedMachinePool' && isRecord(spec.scaling) ? spec.scaling : spec;
      const base: PathSegment[] = doc.kind === 'AWSManagedMachinePool' ? ['spec', 'scaling'] : ['spec'];
      const min = scaling.minSize;
      const max = scaling.maxSize;
      if (typeof min === 'number' && min < 0) p.add(doc, [...base, 'minSize'], 'invalid-value', `minSize cannot be negative (${min})`);
      if (typeof max === 'number' && max < 0) p.add(doc, [...base, 'maxSize'], 'invalid-value', `maxSize cannot be negative (${max})`);
      if (typeof min === 'number' && typeof max === 'number' && min > max) {
        p.add(doc, [...base, 'maxSize'], 'invalid-value', `maxSize (${max}) is smaller than minSize (${min})`);
      }
    }
  }
}

/** What the kubeadm bootstrap cannot render, at the field of the KubeadmControlPlane, KubeadmConfigTemplate or KubeadmConfig. */
function checkBootstrapSpecs(model: ClusterModel, p: FieldProblems): void {
  const at = (doc: SpecDocument, base: PathSegment[], roles: BootstrapRole[]): void => {
    let spec: unknown = doc.object;
    for (const k of base) spec = isRecord(spec) ? spec[k] : undefined;
    if (!isRecord(spec)) return;
    const seen = new Set<string>();
    for (const role of roles) {
      for (const problem of bootstrapSpecProblems(spec, role)) {
        const key = `${problem.path.join('.')} ${problem.message}`;
        if (seen.has(key)) continue;
        seen.add(key);
        p.add(doc, [...base, ...problem.path], problem.code, problem.message);
      }
    }
  };
  for (const doc of model.documents) {
    if (doc.kind === 'KubeadmControlPlane') at(doc, ['spec', 'kubeadmConfigSpec'], ['init', 'control-plane-join']);
    else if (doc.kind === 'KubeadmConfigTemplate') at(doc, ['spec', 'template', 'spec'], ['worker-join']);
    else if (doc.kind === 'KubeadmConfig') at(doc, ['spec'], ['worker-join']);
  }
}

/** Rolling update limits that could never make progress, unknown delete policies, failure domains outside the region. */
function checkRollouts(model: ClusterModel, p: FieldProblems): void {
  const region = networkOwner(model) ? networkSpecOf(model).region : undefined;
  for (const doc of model.documents.filter((d) => d.kind === 'MachineDeployment')) {
    const spec = isRecord(doc.object.spec) ? doc.object.spec : {};
    const replicas = typeof spec.replicas === 'number' ? spec.replicas : 1;
    const strategy = isRecord(spec.strategy) ? spec.strategy : {};
    const ru = isRecord(strategy.rollingUpdate) ? strategy.rollingUpdate : {};
    const at: PathSegment[] = ['spec', 'strategy', 'rollingUpdate'];
    const surge = rolloutLimit(ru.maxSurge, replicas, 'surge');
    const unavailable = rolloutLimit(ru.maxUnavailable, replicas, 'unavailable');
    if (surge === undefined) p.add(doc, [...at, 'maxSurge'], 'invalid-value', `maxSurge must be a non-negative integer or a percentage, not ${JSON.stringify(ru.maxSurge)}`);
    if (unavailable === undefined) p.add(doc, [...at, 'maxUnavailable'], 'invalid-value', `maxUnavailable must be a non-negative integer or a percentage, not ${JSON.stringify(ru.maxUnavailable)}`);
    if (surge === 0 && unavailable === 0) {
      p.add(doc, [...at, 'maxSurge'], 'invalid-value', 'maxSurge and maxUnavailable are both 0: a rolling update could never make progress', 'set maxSurge to 1 (or maxUnavailable to 1)');
    }
    if (ru.deletePolicy !== undefined && !(DELETE_POLICIES as readonly unknown[]).includes(ru.deletePolicy)) {
      p.add(doc, [...at, 'deletePolicy'], 'invalid-value', `deletePolicy must be ${DELETE_POLICIES.join(', ')}, not ${JSON.stringify(ru.deletePolicy)}`);
    }
    const fd = getString(doc.object, ['spec', 'template', 'spec', 'failureDomain']);
    if (fd !== undefined && region !== undefined && !zoneOfRegion(fd, region)) {
      p.add(doc, ['spec', 'template', 'spec', 'failureDomain'], 'invalid-value', `failure domain ${fd} is not a zone of region ${region}`);
    }
  }
}

function getString(root: unknown, path: string[]): string | undefined {
  let node = root;
  for (const seg of path) {
    if (!isRecord(node)) return undefined;
    node = node[seg];
  }
  return typeof node === 'string' ? node : undefined;
}
