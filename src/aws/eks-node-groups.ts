/**
 * EKS managed node groups (AWSManagedMachinePool): instance types, capacity
 * type (on-demand or spot), scaling, labels, taints, update config, AMI type
 * and release, version. What EKS can change in place (scaling, labels,
 * taints, update config, version) is updated; what it cannot (instance types,
 * capacity type, AMI type, disk size, subnets, node role) is refused with the
 * way out: a new node group name rolls the pool. Node groups follow the
 * control plane's version one minor at a time, after it and its addons.
 * A pool with awsLaunchTemplate gets its own EC2 launch template
 * (eks-launch-templates.ts), made before the group; a changed template is a
 * new version the group moves to (UpdateNodegroupVersion); the template goes
 * after its group.
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
import {
  deleteAllNodegroupTemplates,
  deleteNodegroupTemplatesOf,
  ensureNodegroupTemplate,
  findNodegroupTemplates,
  ownedTemplateNamed,
  type DesiredNodegroupTemplate,
} from './eks-launch-templates.js';
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
  /** AWSManagedMachinePool.spec.awsLaunchTemplate: the group's own launch template. */
  launchTemplate?: DesiredNodegroupTemplate;
}

export interface NodegroupResult {
  name: string;
  arn: string;
  status: string;
  version: string;
  desiredSize: number;
  launchTemplate?: { id: string; version: string };
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
function immutableDiffs(ng: Nodegroup, want: DesiredNodegroup, templateId: string | undefined): string[] {
  const out: string[] = [];
  const lt = want.launchTemplate;
  if (!ng.launchTemplate !== !lt) {
    out.push(lt ? `launch template none -> ${lt.name}` : `launch template ${ng.launchTemplate?.name ?? ng.launchTemplate?.id} -> none`);
  } else if (lt && ng.launchTemplate && templateId !== undefined && ng.launchTemplate.id !== templateId) {
    out.push(`launch template ${ng.launchTemplate.id} -> ${templateId}`);
  } else if (lt && ng.launchTemplate && templateId === undefined) {
    out.push(`launch template ${ng.launchTemplate.id} is gone -> a new ${lt.name}`);
  }
  // With the instance type in the template, a new template version changes it (a rolling update).
  if (!lt?.hasInstanceType && sorted(ng.instanceTypes ?? []) !== sorted(want.instanceTypes)) out.push(`instance types ${sorted(ng.instanceTypes ?? [])} -> ${sorted(want.instanceTypes)}`);
  if ((ng.capacityType ?? 'ON_DEMAND') !== want.capacityType) out.push(`capacity type ${ng.capacityType} -> ${want.capacityType}`);
  if (lt?.customAmi) {
    if (ng.amiType !== 'CUSTOM') out.push(`AMI type ${ng.amiType} -> CUSTOM (awsLaunchTemplate.ami.id)`);
  } else if (ng.amiType === 'CUSTOM' && ng.launchTemplate) {
    out.push(`AMI type CUSTOM -> ${want.amiType ?? 'EKS\'s own'}`);
  } else if (want.amiType && ng.amiType !== want.amiType) out.push(`AMI type ${ng.amiType} -> ${want.amiType}`);
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
  // The launch templates of the pools that have one: one read for all.
  const templates = await findNodegroupTemplates(scope, desired.flatMap((d) => (d.launchTemplate ? [d.launchTemplate.name] : [])));
  const created: string[] = [];
  const results: NodegroupResult[] = [];
  for (const want of desired) {
    const ng = existing.has(want.name) ? await describeNodegroup(scope, want.name) : undefined;
    const lt = want.launchTemplate;
    const template = lt ? ownedTemplateNamed(scope, templates, lt.name) : undefined;
    if (!ng) {
      // The template first (a rerun after a crash finds it by name and makes no second one).
      const made = lt ? await ensureNodegroupTemplate(scope, lt, template) : undefined;
      const instanceTypes = lt?.hasInstanceType ? `(${lt.data.InstanceType} from launch template ${lt.name})` : want.instanceTypes.join(',');
      scope.plan.record({ resource: 'eks-node-group', name: want.name, action: 'create', detail: `${want.capacityType} ${instanceTypes} ${want.minSize}..${want.maxSize} desired ${want.desiredSize}` });
      if (scope.dryRun) continue;
      try {
        await scope.eks.send(
          new CreateNodegroupCommand({
            clusterName,
            nodegroupName: want.name,
            scalingConfig: { minSize: want.minSize, maxSize: want.maxSize, desiredSize: want.desiredSize },
            subnets: want.subnetIds,
            // EKS takes the instance type from the template or from the group, never both.
            ...(lt?.hasInstanceType ? {} : { instanceTypes: want.instanceTypes }),
            capacityType: want.capacityType,
            nodeRole: want.nodeRoleArn,
            // A custom AMI (awsLaunchTemplate.ami.id) is its own Kubernetes version and release; EKS refuses these with it.
            ...(lt?.customAmi ? {} : { version: want.version }),
            ...(want.amiType && !lt?.customAmi ? { amiType: want.amiType } : {}),
            ...(want.releaseVersion && !lt?.customAmi ? { releaseVersion: want.releaseVersion } : {}),
            ...(made?.id ? { launchTemplate: { id: made.id, version: String(made.version ?? 1) } } : {}),
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
    const frozen = immutableDiffs(ng, want, template?.LaunchTemplateId);
    if (frozen.length) {
      throw new ConflictError('EKS_NODEGROUP_IMMUTABLE', `EKS node group ${want.name} (MachinePool ${want.machinePool}) cannot change in place: ${frozen.join('; ')}`, {
        hint: 'give the AWSManagedMachinePool a new eksNodegroupName: the next apply makes the new group and removes the old one',
      });
    }
    const current = eksMinor(ng.version ?? controlPlaneVersion);
    // A custom AMI carries its own Kubernetes version: EKS takes no version update with it.
    const versionStep = lt?.customAmi ? 0 : minorDistance(current, want.version);
    if (versionStep < 0) throw new ConflictError('EKS_NODEGROUP_DOWNGRADE', `EKS node group ${want.name} runs ${current}; EKS cannot downgrade it to ${want.version}`);
    // The template: a new version when its content changed; the group then moves to the latest version.
    const made = lt ? await ensureNodegroupTemplate(scope, lt, template) : undefined;
    const ltNow = ng.launchTemplate?.version;
    const ltWant = made ? (made.newVersion && scope.dryRun ? 'a new one' : String(made.version)) : undefined;
    const templateChange = made && ltWant !== ltNow ? [`launch template ${lt!.name} version ${ltNow} -> ${ltWant}`] : [];
    const { changes, input } = configUpdate(ng, want);
    const versionChange = versionStep > 0 ? [`version ${current} -> ${want.version}`] : [];
    const all = [...changes, ...templateChange, ...versionChange];
    scope.plan.record({ resource: 'eks-node-group', name: want.name, id: ng.nodegroupArn!, action: all.length ? 'update' : 'no-change', ...(all.length ? { detail: all.join('; ') } : {}) });
    if (scope.dryRun) continue;
    // An update an interrupted run started ends first (it may be the template's).
    const active = ng.status !== 'ACTIVE' ? await waitNodegroup(scope, want.name) : ng;
    if (changes.length) {
      const { update } = await scope.eks.send(new UpdateNodegroupConfigCommand({ clusterName, nodegroupName: want.name, ...input }));
      scope.log.info(`Updating EKS node group ${want.name}: ${changes.join('; ')}`);
      if (update) await waitUpdate(scope, update, { nodegroupName: want.name });
    }
    if (made?.id && made.version !== undefined && active.launchTemplate?.version !== String(made.version)) {
      // A rolling replacement of every node onto the new template version.
      const { update } = await scope.eks.send(new UpdateNodegroupVersionCommand({ clusterName, nodegroupName: want.name, launchTemplate: { id: made.id, version: String(made.version) } }));
      scope.log.info(`Updating EKS node group ${want.name}: launch template ${lt!.name} version ${ltNow} -> ${made.version}`);
      if (update) await waitUpdate(scope, update, { nodegroupName: want.name });
    }
    // A rolling replacement of every node: one minor per update, as EKS allows.
    for (let v = current; versionStep > 0 && minorDistance(v, want.version) > 0; ) {
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
  const gone = await deleteNodegroupsNamed(scope, dropped, 'no longer in the spec');
  await deleteNodegroupTemplatesOf(scope, gone, 'its node group is no longer in the spec');

  for (const want of desired) {
    if (scope.dryRun && !existing.has(want.name)) continue;
    const ng = await describeNodegroup(scope, want.name);
    if (ng) {
      results.push({
        name: want.name,
        arn: ng.nodegroupArn!,
        status: ng.status ?? '',
        version: ng.version ?? '',
        desiredSize: ng.scalingConfig?.desiredSize ?? 0,
        ...(ng.launchTemplate?.id ? { launchTemplate: { id: ng.launchTemplate.id, version: ng.launchTemplate.version ?? '' } } : {}),
      });
    }
  }
  return results;
}

/** Deletes the owned node groups of these names and waits until they are gone; returns the owned ones (gone now, or would be in a dry run). */
async function deleteNodegroupsNamed(scope: EksScope, names: readonly string[], why?: string): Promise<string[]> {
  const going: string[] = [];
  const owned: string[] = [];
  for (const name of names) {
    const ng = await describeNodegroup(scope, name);
    if (!ng) continue;
    if (ownershipOf(ng.tags ?? {}, scope.clusterName) !== 'owned') {
      scope.plan.record({ resource: 'eks-node-group', name, id: ng.nodegroupArn!, action: 'skip', detail: 'not owned: never deleted' });
      continue;
    }
    scope.plan.record({ resource: 'eks-node-group', name, id: ng.nodegroupArn!, action: 'delete', ...(why ? { detail: why } : {}) });
    owned.push(name);
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
  return owned;
}

/** Removes every node group capflow made for the cluster (before the control plane can go). */
export async function deleteNodegroups(scope: EksScope): Promise<void> {
  if (await describeEksCluster(scope)) await deleteNodegroupsNamed(scope, await listNodegroups(scope));
  // Then their launch templates (also one a crash left before its group was made).
  await deleteAllNodegroupTemplates(scope);
}
