/**
 * EKS managed node groups (AWSManagedMachinePool): instance types, capacity
 * type (on-demand or spot), scaling, labels, taints, update config, AMI type
 * and release, version. What EKS can change in place (scaling, labels,
 * taints, update config, version) is updated; what it cannot (instance types,
 * capacity type, AMI type, disk size, subnets, node role) is refused with the
 * way out: a new node group name rolls the pool. Node groups follow the
 * control plane's version one minor at a time, after it and its addons.
 */
import {
  CreateNodegroupCommand,
  DeleteNodegroupCommand,
  DescribeNodegroupCommand,
  UpdateNodegroupConfigCommand,
  UpdateNodegroupVersionCommand,
  type AMITypes,
  type Nodegroup,
  type Taint,
} from '@aws-sdk/client-eks';
import { ConflictError } from '../core/errors.js';
import { awsErrorName } from './find.js';
import { describeEksCluster, listNodegroups, waitState, waitUpdate } from './eks-cluster.js';
import { eksMinor, eksOwnedTags, minorDistance, type EksScope } from './eks-scope.js';
import { AUTOSCALER_ENABLED_TAG, adoptHint, autoscalerClusterTag, ownershipOf } from './tags.js';


export interface DesiredNodegroup {
  name: string;
  /** The MachinePool it comes from, for messages. */
  machinePool: string;
  minSize: number;
  maxSize: number;
  /** Set at creation; afterwards only when the autoscaler does not manage it. */
  desiredSize: number;
  /** cluster.x-k8s.io/replicas-managed-by: the desired size belongs to the autoscaler. */
  externallyScaled: boolean;
  instanceTypes: string[];
  capacityType: 'ON_DEMAND' | 'SPOT';
  amiType?: AMITypes;
  releaseVersion?: string;
  diskSize?: number;
  subnetIds: string[];
  nodeRoleArn: string;
  labels: Record<string, string>;
  taints: Taint[];
  updateConfig?: { maxUnavailable?: number; maxUnavailablePercentage?: number };
  remoteAccess?: { ec2SshKey?: string; sourceSecurityGroups?: string[] };
  /** Minor version. */
  version: string;
  tags: Record<string, string>;
}

export interface NodegroupResult {
  name: string;
  arn: string;
  status: string;
  version: string;
  desiredSize: number;
}

async function describeNodegroup(scope: EksScope, nodegroupName: string): Promise<Nodegroup | undefined> {
  try {
    return (await scope.eks.send(new DescribeNodegroupCommand({ clusterName: scope.eksClusterName, nodegroupName }))).nodegroup;
  } catch (err) {
    if (awsErrorName(err) === 'ResourceNotFoundException') return undefined;
    throw err;
  }
}

async function waitNodegroup(scope: EksScope, name: string): Promise<Nodegroup> {
  return waitState(scope, `EKS node group ${name}`, async () => {
    const ng = await describeNodegroup(scope, name);
    const status = ng?.status ?? 'NOT FOUND';
    if (status === 'CREATE_FAILED' || status === 'DEGRADED') {
      return { state: status, failed: (ng?.health?.issues ?? []).map((i) => `${i.code}: ${i.message}`).join('; ') || 'no reason given' };
    }
    return { state: status, ...(ng && status === 'ACTIVE' ? { done: ng } : {}) };
  });
}

export function nodegroupTags(scope: EksScope, name: string, externallyScaled: boolean, extra: Record<string, string>): Record<string, string> {
  return {
    ...eksOwnedTags(scope, 'eks-node-group', name, extra),
    // cluster-autoscaler's auto-discovery tags; EKS copies them to the group's Auto Scaling group.
    ...(externallyScaled ? { [AUTOSCALER_ENABLED_TAG]: 'true', [autoscalerClusterTag(scope.eksClusterName)]: 'owned' } : {}),
  };
}

const sorted = (xs: readonly string[]) => [...xs].sort().join(',');
const taintKey = (t: Taint) => `${t.key}=${t.value ?? ''}:${t.effect}`;

/** Fields EKS cannot change on a node group, with what differs. */
function immutableDiffs(ng: Nodegroup, want: DesiredNodegroup): string[] {
  const out: string[] = [];
  if (sorted(ng.instanceTypes ?? []) !== sorted(want.instanceTypes)) out.push(`instance types ${sorted(ng.instanceTypes ?? [])} -> ${sorted(want.instanceTypes)}`);
  if ((ng.capacityType ?? 'ON_DEMAND') !== want.capacityType) out.push(`capacity type ${ng.capacityType} -> ${want.capacityType}`);
  if (want.amiType && ng.amiType !== want.amiType) out.push(`AMI type ${ng.amiType} -> ${want.amiType}`);
  if (want.diskSize !== undefined && Number(ng.diskSize) !== want.diskSize) out.push(`disk size ${ng.diskSize} -> ${want.diskSize}`);
  if (sorted(ng.subnets ?? []) !== sorted(want.subnetIds)) out.push(`subnets ${sorted(ng.subnets ?? [])} -> ${sorted(want.subnetIds)}`);
  if (ng.nodeRole !== want.nodeRoleArn) out.push(`node role ${ng.nodeRole} -> ${want.nodeRoleArn}`);
  return out;
}

function configUpdate(ng: Nodegroup, want: DesiredNodegroup) {
  const sc = ng.scalingConfig ?? {};
  const scaling =
    sc.minSize !== want.minSize || sc.maxSize !== want.maxSize || (!want.externallyScaled && sc.desiredSize !== want.desiredSize)
      ? { minSize: want.minSize, maxSize: want.maxSize, ...(want.externallyScaled ? {} : { desiredSize: want.desiredSize }) }
      : undefined;
  const labelsNow = ng.labels ?? {};
  const addLabels = Object.fromEntries(Object.entries(want.labels).filter(([k, v]) => labelsNow[k] !== v));
  const removeLabels = Object.keys(labelsNow).filter((k) => !(k in want.labels));
  const taintsNow = ng.taints ?? [];
  const addTaints = want.taints.filter((t) => !taintsNow.some((n) => taintKey(n) === taintKey(t)));
  const removeTaints = taintsNow.filter((n) => !want.taints.some((t) => t.key === n.key && t.effect === n.effect));
  const uc = ng.updateConfig ?? {};
  const updateConfig =
    want.updateConfig && (uc.maxUnavailable !== want.updateConfig.maxUnavailable || uc.maxUnavailablePercentage !== want.updateConfig.maxUnavailablePercentage) ? want.updateConfig : undefined;
  const changes = [
    ...(scaling ? [`scaling ${want.minSize}..${want.maxSize}${scaling.desiredSize !== undefined ? ` desired ${scaling.desiredSize}` : ''}`] : []),
    ...(Object.keys(addLabels).length || removeLabels.length ? ['labels'] : []),
    ...(addTaints.length || removeTaints.length ? ['taints'] : []),
    ...(updateConfig ? ['update config'] : []),
  ];
  return {
    changes,
    input: {
      ...(scaling ? { scalingConfig: scaling } : {}),
      ...(Object.keys(addLabels).length || removeLabels.length ? { labels: { ...(Object.keys(addLabels).length ? { addOrUpdateLabels: addLabels } : {}), ...(removeLabels.length ? { removeLabels } : {}) } } : {}),
      ...(addTaints.length || removeTaints.length ? { taints: { ...(addTaints.length ? { addOrUpdateTaints: addTaints } : {}), ...(removeTaints.length ? { removeTaints } : {}) } } : {}),
      ...(updateConfig ? { updateConfig } : {}),
    },
  };
}

export async function reconcileNodegroups(scope: EksScope, desired: readonly DesiredNodegroup[], controlPlaneVersion: string): Promise<NodegroupResult[]> {
  const clusterName = scope.eksClusterName;
  const existing = new Set(await listNodegroups(scope));
  const created: string[] = [];
  const results: NodegroupResult[] = [];
  for (const want of desired) {
    const ng = existing.has(want.name) ? await describeNodegroup(scope, want.name) : undefined;
    if (!ng) {
      scope.plan.record({ resource: 'eks-node-group', name: want.name, action: 'create', detail: `${want.capacityType} ${want.instanceTypes.join(',')} ${want.minSize}..${want.maxSize} desired ${want.desiredSize}` });
      if (scope.dryRun) continue;
      try {
        await scope.eks.send(
          new CreateNodegroupCommand({
            clusterName,
            nodegroupName: want.name,
            scalingConfig: { minSize: want.minSize, maxSize: want.maxSize, desiredSize: want.desiredSize },
            subnets: want.subnetIds,
            instanceTypes: want.instanceTypes,
            capacityType: want.capacityType,
            nodeRole: want.nodeRoleArn,
            version: want.version,
            ...(want.amiType ? { amiType: want.amiType } : {}),
            ...(want.releaseVersion ? { releaseVersion: want.releaseVersion } : {}),
            ...(want.diskSize !== undefined ? { diskSize: want.diskSize } : {}),
            ...(Object.keys(want.labels).length ? { labels: want.labels } : {}),
            ...(want.taints.length ? { taints: want.taints } : {}),
            ...(want.updateConfig ? { updateConfig: want.updateConfig } : {}),
            ...(want.remoteAccess ? { remoteAccess: want.remoteAccess } : {}),
            tags: want.tags,
          }),
        );
        scope.log.info('Creating EKS node group', { nodegroup: want.name, capacityType: want.capacityType, instanceTypes: want.instanceTypes.join(',') });
      } catch (err) {
        if (awsErrorName(err) !== 'ResourceInUseException') throw err;
      }
      created.push(want.name);
      continue;
    }
    if (ownershipOf(ng.tags ?? {}, scope.clusterName) !== 'owned') {
      throw new ConflictError('AWS_NOT_OWNED', `EKS node group ${want.name} exists but is not owned by cluster ${scope.clusterName}`, { hint: adoptHint('EKS node group', want.name, scope.clusterName) });
    }
    const frozen = immutableDiffs(ng, want);
    if (frozen.length) {
      throw new ConflictError('EKS_NODEGROUP_IMMUTABLE', `EKS node group ${want.name} (MachinePool ${want.machinePool}) cannot change in place: ${frozen.join('; ')}`, {
        hint: 'give the AWSManagedMachinePool a new eksNodegroupName: the next apply makes the new group and removes the old one',
      });
    }
    const current = eksMinor(ng.version ?? controlPlaneVersion);
    const versionStep = minorDistance(current, want.version);
    if (versionStep < 0) throw new ConflictError('EKS_NODEGROUP_DOWNGRADE', `EKS node group ${want.name} runs ${current}; EKS cannot downgrade it to ${want.version}`);
    const { changes, input } = configUpdate(ng, want);
    const versionChange = versionStep > 0 ? [`version ${current} -> ${want.version}`] : [];
    const all = [...changes, ...versionChange];
    scope.plan.record({ resource: 'eks-node-group', name: want.name, id: ng.nodegroupArn!, action: all.length ? 'update' : 'no-change', ...(all.length ? { detail: all.join('; ') } : {}) });
    if (scope.dryRun) continue;
    if (ng.status !== 'ACTIVE') await waitNodegroup(scope, want.name);
    if (changes.length) {
      const { update } = await scope.eks.send(new UpdateNodegroupConfigCommand({ clusterName, nodegroupName: want.name, ...input }));
      scope.log.info(`Updating EKS node group ${want.name}: ${changes.join('; ')}`);
      if (update) await waitUpdate(scope, update, { nodegroupName: want.name });
    }
    // A rolling replacement of every node: one minor per update, as EKS allows.
    for (let v = current; minorDistance(v, want.version) > 0; ) {
      const next = `${v.split('.')[0]}.${Number(v.split('.')[1]) + 1}`;
      const { update } = await scope.eks.send(new UpdateNodegroupVersionCommand({ clusterName, nodegroupName: want.name, version: next }));
      scope.log.info(`Upgrading EKS node group ${want.name}: ${v} -> ${next}`);
      if (update) await waitUpdate(scope, update, { nodegroupName: want.name });
      v = next;
    }
  }
  for (const name of created) await waitNodegroup(scope, name);

  // Node groups the spec dropped (or renamed): removed when capflow made them.
  const dropped = [...existing].filter((n) => !desired.some((d) => d.name === n));
  await deleteNodegroupsNamed(scope, dropped, 'no longer in the spec');

  for (const want of desired) {
    if (scope.dryRun && !existing.has(want.name)) continue;
    const ng = await describeNodegroup(scope, want.name);
    if (ng) results.push({ name: want.name, arn: ng.nodegroupArn!, status: ng.status ?? '', version: ng.version ?? '', desiredSize: ng.scalingConfig?.desiredSize ?? 0 });
  }
  return results;
}

async function deleteNodegroupsNamed(scope: EksScope, names: readonly string[], why?: string): Promise<void> {
  const going: string[] = [];
  for (const name of names) {
    const ng = await describeNodegroup(scope, name);
    if (!ng) continue;
    if (ownershipOf(ng.tags ?? {}, scope.clusterName) !== 'owned') {
      scope.plan.record({ resource: 'eks-node-group', name, id: ng.nodegroupArn!, action: 'skip', detail: 'not owned: never deleted' });
      continue;
    }
    scope.plan.record({ resource: 'eks-node-group', name, id: ng.nodegroupArn!, action: 'delete', ...(why ? { detail: why } : {}) });
    if (scope.dryRun) continue;
    if (ng.status !== 'DELETING') {
      try {
        await scope.eks.send(new DeleteNodegroupCommand({ clusterName: scope.eksClusterName, nodegroupName: name }));
        scope.log.info('Deleting EKS node group', { nodegroup: name });
      } catch (err) {
        if (awsErrorName(err) !== 'ResourceNotFoundException') throw err;
      }
    }
    going.push(name);
  }
  for (const name of going) {
    await waitState(scope, `EKS node group ${name} deletion`, async () => {
      const ng = await describeNodegroup(scope, name);
      if (ng?.status === 'DELETE_FAILED') return { state: 'DELETE_FAILED', failed: (ng.health?.issues ?? []).map((i) => `${i.code}: ${i.message}`).join('; ') || 'no reason given' };
      return ng ? { state: ng.status ?? 'UNKNOWN' } : { state: 'DELETED', done: true };
    });
  }
}

/** Removes every node group capflow made for the cluster (before the control plane can go). */
export async function deleteNodegroups(scope: EksScope): Promise<void> {
  if (!(await describeEksCluster(scope))) return; // no cluster, no node groups
  await deleteNodegroupsNamed(scope, await listNodegroups(scope));
}
