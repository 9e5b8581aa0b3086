/**
 * MachinePools (MachinePool + AWSMachinePool): one launch template and one Auto Scaling group per
 * pool, both named after the MachinePool.
 *
 * - The launch template carries what an instance of the pool is (image, type, key, instance profile,
 *   volumes, the node security group plus additional ones, IMDSv2 required unless the spec says
 *   otherwise, user data, tags for instances and volumes). Its content is versioned: the sha256 of
 *   the LaunchTemplateData (without the revision tag, so a new commit alone changes nothing) is kept
 *   in the version's description (`capflow:<hash>`); a different hash makes a new version. The group
 *   uses `$Latest`, so no ModifyLaunchTemplate is needed, and an instance refresh
 *   (StartInstanceRefresh with spec.refreshPreferences) rolls the running instances onto it. An
 *   endpoint that has no instance refresh (moto answers it with an HTML 500 "not implemented") is
 *   reported in the plan and the log, not failed on.
 * - The Auto Scaling group spans the pool's subnets (spec.subnets by id; else the subnets of
 *   spec.availabilityZones of spec.availabilityZoneSubnetType, default private; else the private
 *   subnets of all the cluster's zones), with min/max from the AWSMachinePool, desired from
 *   MachinePool.spec.replicas, the mixed instances policy (spot distribution, instance type
 *   overrides) and capacity rebalance. Tags (set at creation, propagated to instances) are the
 *   cluster's ownership tags, role `node`, Name and `capflow.io/machine-pool`. Updates send
 *   UpdateAutoScalingGroup with only the fields that differ.
 * - cluster-autoscaler: a MachinePool annotated `cluster.x-k8s.io/replicas-managed-by` (any value)
 *   has its group tagged `k8s.io/cluster-autoscaler/enabled: true` and
 *   `k8s.io/cluster-autoscaler/<cluster>: owned` (not propagated; the only tags kept in step after
 *   creation: added or removed as the annotation comes or goes), and its desired capacity is set at
 *   creation only (replicas, else minSize), then left to the autoscaler.
 * - EKS nodes (an EKS cluster's pools, bootstrap EKSConfig) take the same path; the caller adds the
 *   EKS security groups, the `kubernetes.io/cluster/<EKS name>` tag, a default instance profile and
 *   the EKS-optimized image lookup (MachinePoolsInput).
 * - Found by name first; a template or group of our name not owned by the cluster stops the run
 *   with a ConflictError saying how to adopt it.
 * - Delete: the cluster's owned groups are force-deleted (instances terminated with them) and
 *   waited for, then the cluster's owned pool templates are deleted; NotFound is success.
 */
import {
  CreateAutoScalingGroupCommand,
  CreateOrUpdateTagsCommand,
  DeleteAutoScalingGroupCommand,
  DeleteTagsCommand,
  DescribeAutoScalingGroupsCommand,
  StartInstanceRefreshCommand,
  UpdateAutoScalingGroupCommand,
  type AutoScalingClient,
  type AutoScalingGroup,
  type CreateAutoScalingGroupCommandInput,
  type Filter as AsgFilter,
  type MixedInstancesPolicy as AsgMixedInstancesPolicy,
  type Tag as AsgTag,
  type TagDescription,
  type UpdateAutoScalingGroupCommandInput,
} from '@aws-sdk/client-auto-scaling';
import {
  CreateLaunchTemplateCommand,
  CreateLaunchTemplateVersionCommand,
  DeleteLaunchTemplateCommand,
  DescribeLaunchTemplateVersionsCommand,
  DescribeLaunchTemplatesCommand,
  type Filter,
  type LaunchTemplate,
  type RequestLaunchTemplateData,
} from '@aws-sdk/client-ec2';
import { createHash } from 'node:crypto';
import { InputError } from '../core/errors.js';
import type { PathSegment } from '../spec/index.js';
import type { AWSMachinePool, AWSMachineSpec, MachinePool, MachinePoolModel } from '../spec/model.js';
import { REPLICAS_MANAGED_BY } from '../spec/eks-checks.js';
import { awsErrorName, expectAtMostOne, found, isNotFound } from './find.js';
import { resolveImageId } from './images.js';
import { canonicalJson, instanceParams } from './machine-params.js';
import type { SpecRef } from './plan.js';
import type { ClusterScope } from './scope.js';
import { AUTOSCALER_ENABLED_TAG, CAPFLOW_REVISION_TAG, autoscalerClusterTag, capaClusterTag, fromTagList, ownedTags, ROLE_TAG, tagSpecifications } from './tags.js';
import { clientToken } from './tokens.js';
import { waitFor } from './wait.js';

export const NODE_ROLE = 'node';
export const MACHINE_POOL_TAG = 'capflow.io/machine-pool';
export { AUTOSCALER_ENABLED_TAG, autoscalerClusterTag };
/** Prefix of a launch template version's description: `capflow:<sha256 of its LaunchTemplateData>`. */
export const TEMPLATE_HASH_PREFIX = 'capflow:';
/** What the plan and the log say when the endpoint has no instance refresh. */
export const REFRESH_UNAVAILABLE = 'instance refresh not available on this endpoint (moto)';
const LATEST = '$Latest';

/** Returns the pool's user data as plain text (capflow base64-encodes it into the template). */
export type UserDataFn = (poolName: string) => Promise<string>;

export interface MachinePoolsInput {
  pools: MachinePoolModel[];
  /** The version images are looked up for when a template pins no AMI (MachinePool.spec.template.spec.version wins). */
  kubernetesVersion: string;
  /** The cluster's subnets by zone, from provision-vpc. */
  subnetsByZone: Record<string, { public?: string; private?: string }>;
  /** The node security group from provision-vpc; additionalSecurityGroups are added to it. */
  nodeSecurityGroupId: string;
  userData: UserDataFn;
  /** AWSCluster.spec.sshKeyName, used when the launch template names none. */
  sshKeyName?: string;
  /** Security groups every pool's instances join besides the node group's (an EKS cluster's own group). */
  extraSecurityGroupIds?: string[];
  /** The instance profile of a launch template that names none (EKS pools: CAPA's nodes profile). */
  defaultInstanceProfile?: string;
  /** Tags of every pool's template, instances and group besides ours (an EKS node's kubernetes.io/cluster/<EKS name>). */
  extraTags?: Record<string, string>;
  /** The cluster name in cluster-autoscaler's `k8s.io/cluster-autoscaler/<name>` tag (default the scope's cluster). */
  autoscalerClusterName?: string;
  /** The pools are EKS nodes: images from the EKS-optimized lookup unless the template names its own. */
  eks?: boolean;
  /**
   * Where "a refresh is owed" is remembered across a crash (the status
   * secret): set before a new template version is made, cleared once the
   * refresh has started (or cannot). Without it a run that died between the
   * two would leave the instances on the old version for good.
   */
  refreshState?: RefreshState;
}

export interface RefreshState {
  pending(pool: string): Promise<boolean>;
  set(pool: string, pending: boolean): Promise<void>;
}

export type InstanceRefreshOutcome = 'not-needed' | 'started' | 'disabled' | 'unavailable' | 'planned';

export interface PoolResult {
  name: string;
  launchTemplateId?: string;
  /** The template version the group runs ($Latest), when known. */
  launchTemplateVersion?: number;
  templateHash: string;
  autoScalingGroupName: string;
  autoScalingGroupArn?: string;
  subnetIds: string[];
  instanceRefresh: InstanceRefreshOutcome;
  instanceRefreshId?: string;
}

interface RefreshPreferences {
  disable?: boolean;
  instanceWarmup?: number;
  minHealthyPercentage?: number;
  maxHealthyPercentage?: number;
  strategy?: string;
}

/** Placeholder shown in dry-run ids. */
const NEW = (kind: string, name: string) => `(new ${kind} ${name})`;

function isAwsMachinePool(m: MachinePoolModel): m is MachinePoolModel & { infrastructure: AWSMachinePool } {
  return m.infrastructure.kind === 'AWSMachinePool';
}

function poolTags(scope: ClusterScope, m: MachinePoolModel & { infrastructure: AWSMachinePool }, input: Pick<MachinePoolsInput, 'extraTags'>): Record<string, string> {
  const name = m.pool.metadata.name;
  return ownedTags(scope, NODE_ROLE, name, { ...(m.infrastructure.spec.additionalTags ?? {}), ...(input.extraTags ?? {}), [MACHINE_POOL_TAG]: name });
}

/** True when the MachinePool leaves its replicas to an autoscaler (the annotation, whatever its value). */
export function replicasManagedExternally(pool: MachinePool): boolean {
  return pool.metadata.annotations?.[REPLICAS_MANAGED_BY] !== undefined;
}

/**
 * The group-only tags cluster-autoscaler discovers a pool by (not propagated to instances): both
 * when the MachinePool's replicas are managed externally, none otherwise.
 */
export function autoscalerTags(pool: MachinePool, clusterName: string): Record<string, string> {
  return replicasManagedExternally(pool) ? { [AUTOSCALER_ENABLED_TAG]: 'true', [autoscalerClusterTag(clusterName)]: 'owned' } : {};
}

/** What CreateOrUpdateTags / DeleteTags must do for the autoscaler tags of a group (the only tags kept after creation). */
export function autoscalerTagDrift(name: string, want: Record<string, string>, have: readonly TagDescription[], clusterName: string): { set: AsgTag[]; remove: AsgTag[]; changes: string[] } {
  const keys = [AUTOSCALER_ENABLED_TAG, autoscalerClusterTag(clusterName)];
  const set: AsgTag[] = [];
  const remove: AsgTag[] = [];
  for (const key of keys) {
    const tag = have.find((t) => t.Key === key);
    const value = want[key];
    if (value !== undefined && (tag?.Value !== value || tag.PropagateAtLaunch === true)) {
      set.push({ ResourceId: name, ResourceType: 'auto-scaling-group', Key: key, Value: value, PropagateAtLaunch: false });
    } else if (value === undefined && tag) {
      remove.push({ ResourceId: name, ResourceType: 'auto-scaling-group', Key: key });
    }
  }
  const changes = [...(set.length > 0 ? [`cluster-autoscaler tags ${set.map((t) => t.Key).join(', ')}`] : []), ...(remove.length > 0 ? [`remove cluster-autoscaler tags ${remove.map((t) => t.Key).join(', ')}`] : [])];
  return { set, remove, changes };
}

/** sha256 of the LaunchTemplateData, keys sorted, the revision tag left out (a commit alone is no change). */
export function launchTemplateDataHash(data: RequestLaunchTemplateData): string {
  const stable = {
    ...data,
    TagSpecifications: (data.TagSpecifications ?? []).map((t) => ({ ...t, Tags: (t.Tags ?? []).filter((tag) => tag.Key !== CAPFLOW_REVISION_TAG) })),
  };
  return createHash('sha256').update(canonicalJson(stable)).digest('hex');
}

/** The subnets of a pool: spec.subnets by id, else the zones' subnets of the chosen type, else all zones' private subnets. */
export function poolSubnets(infra: AWSMachinePool, subnetsByZone: MachinePoolsInput['subnetsByZone']): string[] {
  const where = `AWSMachinePool/${infra.metadata.name}`;
  if (infra.spec.subnets && infra.spec.subnets.length > 0) {
    const ids = infra.spec.subnets.map((s) => s.id);
    if (ids.some((id) => !id)) {
      throw new InputError('POOL_SUBNET_FILTERS_UNSUPPORTED', `${where} spec.subnets: only subnets given by id are supported`, {
        hint: 'name the subnets by id, or use spec.availabilityZones',
      });
    }
    return [...new Set(ids as string[])];
  }
  const type = (infra.spec.availabilityZoneSubnetType as string | undefined) ?? 'private';
  const zones = infra.spec.availabilityZones?.length ? infra.spec.availabilityZones : Object.keys(subnetsByZone).sort();
  const out: string[] = [];
  for (const az of zones) {
    const s = subnetsByZone[az];
    if (!s) throw new InputError('POOL_ZONE_UNKNOWN', `${where} spec.availabilityZones: the cluster has no subnets in ${az}`, { hint: `use one of ${Object.keys(subnetsByZone).sort().join(', ')}` });
    const ids = type === 'all' ? [s.private, s.public] : [type === 'public' ? s.public : s.private];
    out.push(...ids.filter((x): x is string => !!x));
  }
  if (out.length === 0) throw new InputError('POOL_NO_SUBNETS', `${where}: no ${type} subnets in ${zones.join(', ') || 'the cluster'}`);
  return [...new Set(out)];
}

/** The machine spec of the pool's launch template, in the shape machine-params takes. */
function machineSpecOf(infra: AWSMachinePool, defaultInstanceProfile?: string): AWSMachineSpec {
  const lt = infra.spec.awsLaunchTemplate;
  const instanceType = lt.instanceType ?? infra.spec.mixedInstancesPolicy?.overrides?.[0]?.instanceType;
  if (!instanceType) {
    throw new InputError('POOL_NO_INSTANCE_TYPE', `AWSMachinePool/${infra.metadata.name} spec.awsLaunchTemplate.instanceType: required (or mixedInstancesPolicy.overrides)`);
  }
  const { rootVolume, ...rest } = lt;
  const iamInstanceProfile = lt.iamInstanceProfile || defaultInstanceProfile;
  return { ...rest, instanceType, ...(iamInstanceProfile ? { iamInstanceProfile } : {}), ...(rootVolume ? { rootVolume: rootVolume as AWSMachineSpec['rootVolume'] } : {}) };
}

async function launchTemplateData(
  scope: ClusterScope,
  m: MachinePoolModel & { infrastructure: AWSMachinePool },
  input: MachinePoolsInput,
): Promise<RequestLaunchTemplateData> {
  const name = m.pool.metadata.name;
  const spec = machineSpecOf(m.infrastructure, input.defaultInstanceProfile);
  const version = m.pool.spec.template.spec.version ?? input.kubernetesVersion;
  const imageId = await resolveImageId(scope, spec, version, name, input.eks === true);
  const securityGroupIds = [input.nodeSecurityGroupId, ...(input.extraSecurityGroupIds ?? [])].filter((id) => id !== '');
  const p = instanceParams(spec, { imageId, securityGroupIds, ...(input.sshKeyName ? { sshKeyName: input.sshKeyName } : {}) });
  const tags = { ...p.extraTags, ...poolTags(scope, m, input) };
  const userData = await input.userData(name);
  return {
    ImageId: p.imageId,
    InstanceType: p.instanceType as RequestLaunchTemplateData['InstanceType'],
    ...(p.keyName ? { KeyName: p.keyName } : {}),
    ...(p.iamInstanceProfile ? { IamInstanceProfile: { Name: p.iamInstanceProfile } } : {}),
    ...(p.blockDeviceMappings.length ? { BlockDeviceMappings: p.blockDeviceMappings } : {}),
    SecurityGroupIds: p.securityGroupIds,
    MetadataOptions: p.metadataOptions,
    UserData: Buffer.from(userData, 'utf8').toString('base64'),
    TagSpecifications: [...tagSpecifications('instance', tags), ...tagSpecifications('volume', tags)],
  };
}

/** The mixed instances policy of the spec, in the shape the Auto Scaling API takes. */
function mixedPolicyOf(infra: AWSMachinePool, templateName: string): AsgMixedInstancesPolicy | undefined {
  const mip = infra.spec.mixedInstancesPolicy;
  if (!mip) return undefined;
  const d = mip.instancesDistribution ?? {};
  return {
    LaunchTemplate: {
      LaunchTemplateSpecification: { LaunchTemplateName: templateName, Version: LATEST },
      ...(mip.overrides?.length ? { Overrides: mip.overrides.map((o) => ({ InstanceType: o.instanceType })) } : {}),
    },
    InstancesDistribution: {
      ...(d.onDemandAllocationStrategy !== undefined ? { OnDemandAllocationStrategy: d.onDemandAllocationStrategy } : {}),
      ...(d.onDemandBaseCapacity !== undefined ? { OnDemandBaseCapacity: d.onDemandBaseCapacity } : {}),
      ...(d.onDemandPercentageAboveBaseCapacity !== undefined ? { OnDemandPercentageAboveBaseCapacity: d.onDemandPercentageAboveBaseCapacity } : {}),
      ...(d.spotAllocationStrategy !== undefined ? { SpotAllocationStrategy: d.spotAllocationStrategy } : {}),
    },
  };
}

/** True when the group's policy has what the spec asks for (fields the spec leaves out are not compared). */
function mixedPolicyMatches(want: AsgMixedInstancesPolicy | undefined, have: AsgMixedInstancesPolicy | undefined): boolean {
  if (!want) return !have;
  if (!have) return false;
  const types = (p: AsgMixedInstancesPolicy) => (p.LaunchTemplate?.Overrides ?? []).map((o) => o.InstanceType ?? '').join(',');
  if (types(want) !== types(have)) return false;
  const w = want.InstancesDistribution ?? {};
  const h = (have.InstancesDistribution ?? {}) as Record<string, unknown>;
  return Object.entries(w).every(([k, v]) => h[k] === v);
}

interface DesiredGroup {
  minSize: number;
  maxSize: number;
  desired?: number;
  /** The autoscaler owns the desired capacity: set at creation only. */
  externallyManaged: boolean;
  subnets: string[];
  capacityRebalance: boolean;
  mixed?: AsgMixedInstancesPolicy;
}

function desiredGroup(m: MachinePoolModel & { infrastructure: AWSMachinePool }, subnets: string[]): DesiredGroup {
  const s = m.infrastructure.spec;
  const replicas = m.pool.spec.replicas;
  if (s.minSize > s.maxSize || (replicas !== undefined && (replicas < s.minSize || replicas > s.maxSize))) {
    throw new InputError(
      'POOL_SIZE_INVALID',
      `MachinePool/${m.pool.metadata.name}: replicas ${replicas ?? '-'} must lie within AWSMachinePool minSize ${s.minSize} and maxSize ${s.maxSize}`,
    );
  }
  const mixed = mixedPolicyOf(m.infrastructure, m.pool.metadata.name);
  return {
    minSize: s.minSize,
    maxSize: s.maxSize,
    ...(replicas !== undefined ? { desired: replicas } : {}),
    externallyManaged: replicasManagedExternally(m.pool),
    subnets,
    capacityRebalance: s.capacityRebalance ?? false,
    ...(mixed ? { mixed } : {}),
  };
}

/** A difference found on a group, with the spec field that decides it. */
interface GroupChange {
  text: string;
  spec: SpecRef;
}

/** The UpdateAutoScalingGroup fields that differ, each described and named by its spec field. */
function groupDrift(m: MachinePoolModel & { infrastructure: AWSMachinePool }, want: DesiredGroup, have: AutoScalingGroup): { update: UpdateAutoScalingGroupCommandInput; changes: GroupChange[] } {
  const name = m.pool.metadata.name;
  const pool = (...path: PathSegment[]): SpecRef => ({ kind: 'MachinePool', name, path });
  const infra = (...path: PathSegment[]): SpecRef => ({ kind: m.infrastructure.kind, name: m.infrastructure.metadata.name, path });
  const update: UpdateAutoScalingGroupCommandInput = { AutoScalingGroupName: name };
  const changes: GroupChange[] = [];
  if (have.MinSize !== want.minSize) {
    update.MinSize = want.minSize;
    changes.push({ text: `min ${have.MinSize} -> ${want.minSize}`, spec: infra('spec', 'minSize') });
  }
  if (have.MaxSize !== want.maxSize) {
    update.MaxSize = want.maxSize;
    changes.push({ text: `max ${have.MaxSize} -> ${want.maxSize}`, spec: infra('spec', 'maxSize') });
  }
  if (!want.externallyManaged && want.desired !== undefined && have.DesiredCapacity !== want.desired) {
    update.DesiredCapacity = want.desired;
    changes.push({ text: `desired ${have.DesiredCapacity} -> ${want.desired}`, spec: pool('spec', 'replicas') });
  }
  const haveSubnets = (have.VPCZoneIdentifier ?? '').split(',').filter(Boolean).sort();
  if (haveSubnets.join(',') !== [...want.subnets].sort().join(',')) {
    update.VPCZoneIdentifier = want.subnets.join(',');
    changes.push({ text: `subnets ${haveSubnets.join(',')} -> ${want.subnets.join(',')}`, spec: infra('spec', 'subnets') });
  }
  if ((have.CapacityRebalance ?? false) !== want.capacityRebalance) {
    update.CapacityRebalance = want.capacityRebalance;
    changes.push({ text: `capacity rebalance ${have.CapacityRebalance ?? false} -> ${want.capacityRebalance}`, spec: infra('spec', 'capacityRebalance') });
  }
  if (!mixedPolicyMatches(want.mixed, have.MixedInstancesPolicy)) {
    if (want.mixed) update.MixedInstancesPolicy = want.mixed;
    else update.LaunchTemplate = { LaunchTemplateName: name, Version: LATEST };
    changes.push({ text: 'mixed instances policy', spec: infra('spec', 'mixedInstancesPolicy') });
  }
  // Any update carries the whole mixed instances policy, as CAPA's does: moto drops a policy an
  // update leaves out (real AWS keeps it), so a desired-capacity fix would otherwise lose it there.
  if (changes.length > 0 && want.mixed) update.MixedInstancesPolicy = want.mixed;
  return { update, changes };
}

/**
 * True for an answer that says the endpoint does not implement the call: moto answers an action it
 * lacks with an HTML 500 page, which the SDK cannot parse (a plain Error with the HTTP status).
 */
export function isNotImplementedAnswer(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  if (e.name === 'NotImplemented' || e.name === 'NotImplementedException') return true;
  return (status === 500 || status === 501) && (e.name === 'Error' || e.name === 'UnknownError') && /parse error|not been implemented|Deserialization error/i.test(e.message ?? '');
}

/** Marks an unimplemented answer so the retry middleware (which retries 5xx) gives up at once. */
class EndpointNotImplemented extends Error {
  override readonly name = 'EndpointNotImplemented';
}

async function startInstanceRefresh(
  scope: ClusterScope,
  asg: AutoScalingClient,
  name: string,
  prefs: RefreshPreferences,
): Promise<{ outcome: InstanceRefreshOutcome; id?: string }> {
  const command = new StartInstanceRefreshCommand({
    AutoScalingGroupName: name,
    Strategy: 'Rolling',
    Preferences: {
      ...(prefs.minHealthyPercentage !== undefined ? { MinHealthyPercentage: prefs.minHealthyPercentage } : {}),
      ...(prefs.maxHealthyPercentage !== undefined ? { MaxHealthyPercentage: prefs.maxHealthyPercentage } : {}),
      ...(prefs.instanceWarmup !== undefined ? { InstanceWarmup: prefs.instanceWarmup } : {}),
    },
  });
  command.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (err) {
        if (isNotImplementedAnswer(err)) throw new EndpointNotImplemented('StartInstanceRefresh is not implemented by this endpoint', { cause: err });
        throw err;
      }
    },
    { step: 'build', name: 'capflowNotImplemented' },
  );
  try {
    const out = await asg.send(command, { abortSignal: scope.signal });
    scope.log.info('Started instance refresh', { autoScalingGroup: name, instanceRefreshId: out.InstanceRefreshId });
    return { outcome: 'started', ...(out.InstanceRefreshId ? { id: out.InstanceRefreshId } : {}) };
  } catch (err) {
    if (err instanceof EndpointNotImplemented || isNotImplementedAnswer(err)) {
      scope.log.warn(REFRESH_UNAVAILABLE, { autoScalingGroup: name });
      return { outcome: 'unavailable' };
    }
    if (awsErrorName(err) === 'InstanceRefreshInProgress') {
      // A refresh from an earlier change is still running; it does not pick up the new version.
      scope.log.warn('An instance refresh is already in progress; run again when it ends', { autoScalingGroup: name });
      return { outcome: 'not-needed' };
    }
    throw err;
  }
}

async function describeGroupsByName(scope: ClusterScope, asg: AutoScalingClient, names: string[]): Promise<AutoScalingGroup[]> {
  const out: AutoScalingGroup[] = [];
  let NextToken: string | undefined;
  do {
    const page = await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: names, NextToken }), { abortSignal: scope.signal });
    out.push(...(page.AutoScalingGroups ?? []));
    NextToken = page.NextToken;
  } while (NextToken);
  return out;
}

export async function describeTemplates(scope: ClusterScope, filters: Filter[]): Promise<LaunchTemplate[]> {
  const out: LaunchTemplate[] = [];
  let NextToken: string | undefined;
  do {
    const page = await scope.ec2.send(new DescribeLaunchTemplatesCommand({ Filters: filters, NextToken }), { abortSignal: scope.signal });
    out.push(...(page.LaunchTemplates ?? []));
    NextToken = page.NextToken;
  } while (NextToken);
  return out;
}

export interface EnsuredTemplate {
  templateId?: string;
  /** The template's latest version (the one just made, when one was). */
  version?: number;
  /** A new version was made (or, in a dry run, would be). */
  newVersion: boolean;
  hash: string;
}

/**
 * A launch template of the given name holding `data`: created when there is none, a new version when
 * the latest version's `capflow:<hash>` description differs, nothing otherwise; each recorded in the
 * plan (dry runs stop there). Client tokens come from the content and the commit: a retried step gets
 * the first answer, a later re-creation (after a delete, from another commit) is not mistaken for it.
 * `beforeNewVersion` runs before a new version is made (a refresh owed across a crash).
 */
export async function ensureLaunchTemplate(
  scope: ClusterScope,
  opts: { name: string; template?: LaunchTemplate; data: RequestLaunchTemplateData; tags: Record<string, string>; createDetail: string; beforeNewVersion?: () => Promise<void> },
): Promise<EnsuredTemplate> {
  const { name, template, data, tags } = opts;
  const cluster = scope.clusterName;
  const hash = launchTemplateDataHash(data);
  const description = `${TEMPLATE_HASH_PREFIX}${hash}`;
  let templateId = template?.LaunchTemplateId;
  let version = template?.LatestVersionNumber;
  let newVersion = false;
  if (!template) {
    scope.plan.record({ resource: 'launch-template', name, action: 'create', ...(scope.dryRun ? { id: NEW('launch template', name) } : {}), detail: opts.createDetail });
    if (!scope.dryRun) {
      scope.log.info('Creating launch template', { name, hash });
      const out = await scope.ec2.send(
        new CreateLaunchTemplateCommand({
          LaunchTemplateName: name,
          VersionDescription: description,
          LaunchTemplateData: data,
          ClientToken: clientToken(cluster, `launch-template/${name}`, [hash, scope.revision]),
          TagSpecifications: tagSpecifications('launch-template', tags),
        }),
        { abortSignal: scope.signal },
      );
      templateId = out.LaunchTemplate?.LaunchTemplateId;
      version = out.LaunchTemplate?.LatestVersionNumber ?? 1;
    }
  } else {
    const latest = await scope.ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: template.LaunchTemplateId, Versions: [LATEST] }), {
      abortSignal: scope.signal,
    });
    const current = latest.LaunchTemplateVersions?.[0]?.VersionDescription;
    if (current === description) {
      scope.plan.record({ resource: 'launch-template', name, action: 'no-change', id: templateId, detail: `version ${version}` });
    } else {
      newVersion = true;
      scope.plan.record({ resource: 'launch-template', name, action: 'update', id: templateId, detail: `new version (content ${hash.slice(0, 12)})` });
      if (!scope.dryRun) {
        await opts.beforeNewVersion?.();
        scope.log.info('Creating launch template version', { name, hash });
        const out = await scope.ec2.send(
          new CreateLaunchTemplateVersionCommand({
            LaunchTemplateId: templateId,
            VersionDescription: description,
            LaunchTemplateData: data,
            ClientToken: clientToken(cluster, `launch-template-version/${name}`, [hash, scope.revision]),
          }),
          { abortSignal: scope.signal },
        );
        version = out.LaunchTemplateVersion?.VersionNumber ?? version;
      }
    }
  }
  return { ...(templateId ? { templateId } : {}), ...(version !== undefined ? { version } : {}), newVersion, hash };
}

/**
 * Makes each AWSMachinePool's launch template and Auto Scaling group match the spec. Pools of other
 * kinds (AWSManagedMachinePool) are left to the EKS family.
 */
export async function reconcileMachinePools(scope: ClusterScope, asg: AutoScalingClient, input: MachinePoolsInput): Promise<PoolResult[]> {
  const pools = input.pools.filter(isAwsMachinePool);
  if (pools.length === 0) return [];
  const names = pools.map((m) => m.pool.metadata.name);
  // Two reads for all pools: templates and groups by name (unowned ones too, to refuse them).
  const templates = await describeTemplates(scope, [{ Name: 'launch-template-name', Values: names }]);
  const groups = await describeGroupsByName(scope, asg, names);
  const results: PoolResult[] = [];
  for (const m of pools) results.push(await reconcilePool(scope, asg, input, m, templates, groups));
  return results;
}

async function reconcilePool(
  scope: ClusterScope,
  asg: AutoScalingClient,
  input: MachinePoolsInput,
  m: MachinePoolModel & { infrastructure: AWSMachinePool },
  templates: LaunchTemplate[],
  groups: AutoScalingGroup[],
): Promise<PoolResult> {
  const name = m.pool.metadata.name;
  const cluster = scope.clusterName;
  const template = expectAtMostOne(
    templates.filter((t) => t.LaunchTemplateName === name).map((t) => found(t, t.LaunchTemplateId, fromTagList(t.Tags), cluster)),
    'launch template',
    name,
    cluster,
  )?.item;
  const group = expectAtMostOne(
    groups.filter((g) => g.AutoScalingGroupName === name).map((g) => found(g, g.AutoScalingGroupName, fromTagList(g.Tags), cluster)),
    'auto scaling group',
    name,
    cluster,
  )?.item;
  const subnets = poolSubnets(m.infrastructure, input.subnetsByZone);
  const want = desiredGroup(m, subnets);
  const data = await launchTemplateData(scope, m, input);
  const tags = poolTags(scope, m, input);
  const autoscalerClusterName = input.autoscalerClusterName ?? cluster;
  const groupOnlyTags = autoscalerTags(m.pool, autoscalerClusterName);

  // The launch template: created, or a new version when its content changed.
  const { templateId, version, newVersion, hash } = await ensureLaunchTemplate(scope, {
    name,
    ...(template ? { template } : {}),
    data,
    tags,
    createDetail: `${data.InstanceType} ${data.ImageId}`,
    ...(group ? { beforeNewVersion: () => input.refreshState?.set(name, true) ?? Promise.resolve() } : {}),
  });

  // The Auto Scaling group.
  let arn = group?.AutoScalingGroupARN;
  if (!group) {
    scope.plan.record({
      resource: 'autoscaling-group',
      name,
      action: 'create',
      ...(scope.dryRun ? { id: NEW('auto scaling group', name) } : {}),
      detail: `min ${want.minSize} max ${want.maxSize} desired ${want.desired ?? want.minSize}${want.externallyManaged ? ' (then the autoscaler\'s)' : ''} in ${subnets.length} subnets`,
    });
    if (!scope.dryRun) {
      const create: CreateAutoScalingGroupCommandInput = {
        AutoScalingGroupName: name,
        MinSize: want.minSize,
        MaxSize: want.maxSize,
        // Set once; with replicas managed externally the autoscaler moves it from then on.
        DesiredCapacity: want.desired ?? want.minSize,
        VPCZoneIdentifier: subnets.join(','),
        CapacityRebalance: want.capacityRebalance,
        ...(want.mixed ? { MixedInstancesPolicy: want.mixed } : { LaunchTemplate: { LaunchTemplateName: name, Version: LATEST } }),
        ...(typeof m.infrastructure.spec.defaultCoolDown === 'string' ? { DefaultCooldown: cooldownSeconds(m.infrastructure.spec.defaultCoolDown) } : {}),
        Tags: [
          ...Object.entries(tags).map(([Key, Value]) => ({ Key, Value, PropagateAtLaunch: true })),
          ...Object.entries(groupOnlyTags).map(([Key, Value]) => ({ Key, Value, PropagateAtLaunch: false })),
        ].sort((a, b) => a.Key.localeCompare(b.Key)),
      };
      scope.log.info('Creating auto scaling group', { name, subnets });
      await asg.send(new CreateAutoScalingGroupCommand(create), { abortSignal: scope.signal });
      arn = (await describeGroupsByName(scope, asg, [name]))[0]?.AutoScalingGroupARN;
    }
  } else {
    const { update, changes: groupChanges } = groupDrift(m, want, group);
    const tagDrift = autoscalerTagDrift(name, groupOnlyTags, group.Tags ?? [], autoscalerClusterName);
    const tagField: SpecRef = { kind: 'MachinePool', name, path: ['metadata', 'annotations'] };
    const changes = [...groupChanges, ...tagDrift.changes.map((text) => ({ text, spec: tagField }))];
    if (changes.length === 0) {
      scope.plan.record({ resource: 'autoscaling-group', name, action: 'no-change', id: name });
    } else {
      // One entry per difference, each at its field (a desired capacity changed by hand: MachinePool spec.replicas).
      for (const c of changes) scope.plan.record({ resource: 'autoscaling-group', name, action: 'update', id: name, detail: c.text, spec: c.spec });
      if (!scope.dryRun) {
        scope.log.info('Updating auto scaling group', { name, changes });
        // The group now carries this commit (provenance), as instances it launches from here on do.
        // Tagged before the update: a run killed in between still finds the update to make, never a
        // changed group that names the old commit.
        const revision = (group.Tags ?? []).find((t) => t.Key === CAPFLOW_REVISION_TAG)?.Value;
        const set = revision === scope.revision ? tagDrift.set : [...tagDrift.set, { ResourceId: name, ResourceType: 'auto-scaling-group', Key: CAPFLOW_REVISION_TAG, Value: scope.revision, PropagateAtLaunch: true }];
        if (set.length > 0) await asg.send(new CreateOrUpdateTagsCommand({ Tags: set }), { abortSignal: scope.signal });
        if (groupChanges.length > 0) await asg.send(new UpdateAutoScalingGroupCommand(update), { abortSignal: scope.signal });
        if (tagDrift.remove.length > 0) await asg.send(new DeleteTagsCommand({ Tags: tagDrift.remove }), { abortSignal: scope.signal });
      }
    }
  }

  // The instance refresh: only an existing group with a new template version has instances to roll,
  // or one whose refresh an earlier run owed (it died between the new version and the refresh).
  let refresh: { outcome: InstanceRefreshOutcome; id?: string } = { outcome: 'not-needed' };
  const owed = group !== undefined && !newVersion && !scope.dryRun && (await input.refreshState?.pending(name)) === true;
  if (owed) scope.log.info('Resuming the instance refresh an interrupted run owed', { autoScalingGroup: name });
  if (group && (newVersion || owed)) {
    const prefs = (m.infrastructure.spec.refreshPreferences ?? {}) as RefreshPreferences;
    if (prefs.disable) {
      scope.plan.record({ resource: 'instance-refresh', name, action: 'skip', detail: 'refreshPreferences.disable' });
      refresh = { outcome: 'disabled' };
      if (!scope.dryRun) await input.refreshState?.set(name, false);
    } else if (scope.dryRun) {
      scope.plan.record({ resource: 'instance-refresh', name, action: 'create', detail: 'roll instances onto the new template version' });
      refresh = { outcome: 'planned' };
    } else {
      refresh = await startInstanceRefresh(scope, asg, name, prefs);
      await input.refreshState?.set(name, false);
      scope.plan.record(
        refresh.outcome === 'unavailable'
          ? { resource: 'instance-refresh', name, action: 'skip', detail: REFRESH_UNAVAILABLE }
          : { resource: 'instance-refresh', name, action: 'create', ...(refresh.id ? { id: refresh.id } : {}), detail: refresh.outcome },
      );
    }
  }

  return {
    name,
    ...(templateId ? { launchTemplateId: templateId } : {}),
    ...(version !== undefined ? { launchTemplateVersion: version } : {}),
    templateHash: hash,
    autoScalingGroupName: name,
    ...(arn ? { autoScalingGroupArn: arn } : {}),
    subnetIds: subnets,
    instanceRefresh: refresh.outcome,
    ...(refresh.id ? { instanceRefreshId: refresh.id } : {}),
  };
}

/** defaultCoolDown is a duration string in the CRD ("300s", "5m"); seconds for the API. */
function cooldownSeconds(value: string): number | undefined {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(value.trim());
  if (!m || value.trim() === '') return undefined;
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Math.round(Number(m[3] ?? 0));
}

/** Filters selecting the cluster's owned pool groups. */
function ownedGroupFilters(clusterName: string): AsgFilter[] {
  return [
    { Name: `tag:${capaClusterTag(clusterName)}`, Values: ['owned'] },
    { Name: `tag:${ROLE_TAG}`, Values: [NODE_ROLE] },
    { Name: 'tag-key', Values: [MACHINE_POOL_TAG] },
  ];
}

/**
 * Deletes the cluster's owned pool groups (ForceDelete: their instances go with them), waits until
 * they are gone, then deletes the cluster's owned pool launch templates. Only what the tags say the
 * cluster owns is touched.
 */
export async function deleteMachinePools(scope: ClusterScope, asg: AutoScalingClient): Promise<void> {
  const groups: AutoScalingGroup[] = [];
  let NextToken: string | undefined;
  do {
    const page = await asg.send(new DescribeAutoScalingGroupsCommand({ Filters: ownedGroupFilters(scope.clusterName), NextToken }), { abortSignal: scope.signal });
    // Filters are checked again on the tags, in case an endpoint ignores one.
    for (const g of page.AutoScalingGroups ?? []) {
      const tags = fromTagList(g.Tags);
      if (tags[capaClusterTag(scope.clusterName)] === 'owned' && tags[MACHINE_POOL_TAG] !== undefined) groups.push(g);
    }
    NextToken = page.NextToken;
  } while (NextToken);
  const templates = (
    await describeTemplates(scope, [
      { Name: `tag:${capaClusterTag(scope.clusterName)}`, Values: ['owned'] },
      { Name: 'tag-key', Values: [MACHINE_POOL_TAG] },
    ])
  ).filter((t) => {
    const tags = fromTagList(t.Tags);
    return tags[capaClusterTag(scope.clusterName)] === 'owned' && tags[MACHINE_POOL_TAG] !== undefined;
  });
  for (const g of groups) scope.plan.record({ resource: 'autoscaling-group', name: g.AutoScalingGroupName!, action: 'delete', id: g.AutoScalingGroupName, detail: 'force delete (instances terminated)' });
  for (const t of templates) scope.plan.record({ resource: 'launch-template', name: t.LaunchTemplateName!, action: 'delete', id: t.LaunchTemplateId });
  if (scope.dryRun) return;

  const names = groups.map((g) => g.AutoScalingGroupName!);
  for (const name of names) {
    scope.log.info('Deleting auto scaling group', { name });
    await asg.send(new DeleteAutoScalingGroupCommand({ AutoScalingGroupName: name, ForceDelete: true }), { abortSignal: scope.signal }).catch((err: unknown) => {
      if (!isGroupNotFound(err)) throw err;
    });
  }
  if (names.length > 0) {
    await waitFor(async () => ((await describeGroupsByName(scope, asg, names)).length === 0 ? true : undefined), {
      description: `auto scaling groups ${names.join(', ')} to be deleted`,
      timeoutMs: scope.timeouts.instanceMs,
      signal: scope.signal,
      minDelayMs: 2000,
    });
  }
  for (const t of templates) {
    scope.log.info('Deleting launch template', { name: t.LaunchTemplateName, id: t.LaunchTemplateId });
    await scope.ec2.send(new DeleteLaunchTemplateCommand({ LaunchTemplateId: t.LaunchTemplateId }), { abortSignal: scope.signal }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }
}

/** Auto Scaling says a missing group with a ValidationError ("AutoScalingGroup name not found"). */
function isGroupNotFound(err: unknown): boolean {
  return awsErrorName(err) === 'ValidationError' && /not found/i.test((err as Error).message ?? '');
}
