/**
 * Launch templates of EKS managed node groups (AWSManagedMachinePool.spec.awsLaunchTemplate), as
 * the AWS provider makes them: one template per node group, named `<EKS name>-<node group>`, made
 * before the group and referenced by id and version (CreateNodegroup's launchTemplate).
 *
 * - The template holds what EKS lets a managed node group's template hold: instance type, image
 *   (only `ami.id`: the group's AMI type is then CUSTOM and the template carries the EKS bootstrap
 *   user data; otherwise EKS picks its own image and bootstraps the node itself), root and other
 *   volumes, key pair, security groups (with `additionalSecurityGroups`: EKS's cluster security group,
 *   the EKS additional node group and those; without, none, so EKS adds its cluster group itself),
 *   instance metadata options, and tags for the instances and volumes EKS launches. No instance
 *   profile and no spot options: EKS refuses both (the group's role and capacity type say them).
 * - Versions and their `capflow:<hash>` descriptions are machine-pools.ts's: a changed content makes
 *   a new version, which the node group then moves to with UpdateNodegroupVersion (a rolling update).
 * - The template carries the cluster's ownership tags and `capflow.io/eks-node-group: <group>`; only
 *   such templates are deleted, after their node group is gone. Self-managed pool templates
 *   (`capflow.io/machine-pool`) are launch-nodes' and never touched here, nor these by it.
 */
import { DeleteLaunchTemplateCommand, DescribeImagesCommand, type BlockDeviceMapping, type LaunchTemplate, type RequestLaunchTemplateData } from '@aws-sdk/client-ec2';
import { createHash } from 'node:crypto';
import type { AWSMachineSpec } from '../spec/model.js';
import type { EksScope } from './eks-scope.js';
import { expectAtMostOne, found, isNotFound } from './find.js';
import { instanceParams, ROOT_DEVICE_NAME } from './machine-params.js';
import { describeTemplates, ensureLaunchTemplate, NODE_ROLE } from './machine-pools.js';
import { capaClusterTag, fromTagList, k8sClusterTag, ownedTags, tagSpecifications } from './tags.js';

/** The tag naming the node group a launch template was made for. */
export const EKS_NODEGROUP_TAG = 'capflow.io/eks-node-group';
/** The root device of EKS's own images (Amazon Linux 2 and 2023). */
export const EKS_ROOT_DEVICE_NAME = '/dev/xvda';
const MAX_TEMPLATE_NAME = 128;

/** AWSManagedMachinePool.spec.awsLaunchTemplate, the fields capflow reads (eks-checks refuses the others EKS refuses). */
export interface ManagedLaunchTemplateSpec {
  instanceType?: string;
  ami?: { id?: string; eksLookupType?: string };
  sshKeyName?: string;
  rootVolume?: Record<string, unknown>;
  nonRootVolumes?: Array<Record<string, unknown>>;
  additionalSecurityGroups?: Array<{ id?: string }>;
  instanceMetadataOptions?: Record<string, unknown>;
  [field: string]: unknown;
}

export interface DesiredNodegroupTemplate {
  name: string;
  data: RequestLaunchTemplateData;
  /** The template resource's own tags. */
  tags: Record<string, string>;
  /** `ami.id` is set: the group's AMI type is CUSTOM (no amiType, release or version on the group). */
  customAmi: boolean;
  /** The template names the instance type (the group then names none). */
  hasInstanceType: boolean;
}

/** `<EKS name>-<node group>` (launch template names are unique per region), shortened with a hash past 128. */
export function nodegroupTemplateName(eksClusterName: string, nodegroup: string): string {
  const name = `${eksClusterName}-${nodegroup}`;
  if (name.length <= MAX_TEMPLATE_NAME) return name;
  const digest = createHash('sha256').update(name).digest('hex').slice(0, 10);
  return `${name.slice(0, MAX_TEMPLATE_NAME - 11)}-${digest}`;
}

export interface NodegroupTemplateInput {
  nodegroup: string;
  spec: ManagedLaunchTemplateSpec;
  /** The groups instances join when the spec names additional ones (the cluster's, the EKS additional node group). */
  baseSecurityGroupIds: string[];
  /** Plain-text user data (custom AMIs only). */
  userData?: string;
  /** Tags of the instances and volumes besides ours (the pool's additionalTags). */
  additionalTags?: Record<string, string>;
}

/** The root device of a custom image (DescribeImages), or EKS's own images' one. */
async function rootDeviceOf(scope: EksScope, imageId: string | undefined): Promise<string> {
  if (!imageId) return EKS_ROOT_DEVICE_NAME;
  const out = await scope.ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }), { abortSignal: scope.signal });
  return out.Images?.[0]?.RootDeviceName ?? EKS_ROOT_DEVICE_NAME;
}

/** The desired template of a node group. */
export async function nodegroupTemplate(scope: EksScope, input: NodegroupTemplateInput): Promise<DesiredNodegroupTemplate> {
  const { spec, nodegroup } = input;
  const name = nodegroupTemplateName(scope.eksClusterName, nodegroup);
  const imageId = spec.ami?.id || undefined;
  const additional = (spec.additionalSecurityGroups ?? []).length > 0;
  const machine = { ...spec, instanceType: spec.instanceType ?? '' } as unknown as AWSMachineSpec;
  const p = instanceParams(machine, { imageId: imageId ?? '', securityGroupIds: additional ? input.baseSecurityGroupIds : [] });
  let blockDeviceMappings: BlockDeviceMapping[] = p.blockDeviceMappings;
  if (spec.rootVolume) {
    const root = await rootDeviceOf(scope, imageId);
    blockDeviceMappings = blockDeviceMappings.map((b) => (b.DeviceName === ROOT_DEVICE_NAME ? { ...b, DeviceName: root } : b));
  }
  const instanceTags = ownedTags(scope, NODE_ROLE, nodegroup, { ...(input.additionalTags ?? {}), [k8sClusterTag(scope.eksClusterName)]: 'owned', [EKS_NODEGROUP_TAG]: nodegroup });
  const data: RequestLaunchTemplateData = {
    ...(imageId ? { ImageId: imageId } : {}),
    ...(spec.instanceType ? { InstanceType: spec.instanceType as RequestLaunchTemplateData['InstanceType'] } : {}),
    ...(p.keyName ? { KeyName: p.keyName } : {}),
    ...(blockDeviceMappings.length ? { BlockDeviceMappings: blockDeviceMappings } : {}),
    ...(p.securityGroupIds.length ? { SecurityGroupIds: p.securityGroupIds } : {}),
    MetadataOptions: p.metadataOptions,
    ...(imageId && input.userData !== undefined ? { UserData: Buffer.from(input.userData, 'utf8').toString('base64') } : {}),
    TagSpecifications: [...tagSpecifications('instance', instanceTags), ...tagSpecifications('volume', instanceTags)],
  };
  return {
    name,
    data,
    tags: ownedTags(scope, 'eks-node-group', name, { ...(input.additionalTags ?? {}), [EKS_NODEGROUP_TAG]: nodegroup }),
    customAmi: imageId !== undefined,
    hasInstanceType: !!spec.instanceType,
  };
}

/** The templates of the given names (unowned ones too, so they are refused rather than taken). */
export async function findNodegroupTemplates(scope: EksScope, names: readonly string[]): Promise<LaunchTemplate[]> {
  if (names.length === 0) return [];
  return describeTemplates(scope, [{ Name: 'launch-template-name', Values: [...names] }]);
}

/** The one template of `name` among `templates`, when owned (a template of our name not owned stops the run). */
export function ownedTemplateNamed(scope: EksScope, templates: readonly LaunchTemplate[], name: string): LaunchTemplate | undefined {
  return expectAtMostOne(
    templates.filter((t) => t.LaunchTemplateName === name).map((t) => found(t, t.LaunchTemplateId, fromTagList(t.Tags), scope.clusterName)),
    'launch template',
    name,
    scope.clusterName,
  )?.item;
}

export interface EnsuredNodegroupTemplate {
  id?: string;
  version?: number;
  newVersion: boolean;
}

/** Creates the node group's template, or a new version of it when its content changed (recorded in the plan). */
export async function ensureNodegroupTemplate(scope: EksScope, want: DesiredNodegroupTemplate, existing: LaunchTemplate | undefined): Promise<EnsuredNodegroupTemplate> {
  const r = await ensureLaunchTemplate(scope, {
    name: want.name,
    ...(existing ? { template: existing } : {}),
    data: want.data,
    tags: want.tags,
    createDetail: `${want.data.InstanceType ?? '(instance type from the node group)'} ${want.data.ImageId ?? '(EKS image)'}`,
  });
  return { ...(r.templateId ? { id: r.templateId } : {}), ...(r.version !== undefined ? { version: r.version } : {}), newVersion: r.newVersion };
}

/** True when the template is one capflow made for a node group of this cluster. */
function isOwnedNodegroupTemplate(scope: EksScope, t: LaunchTemplate): boolean {
  const tags = fromTagList(t.Tags);
  return tags[capaClusterTag(scope.clusterName)] === 'owned' && tags[EKS_NODEGROUP_TAG] !== undefined;
}

async function deleteTemplates(scope: EksScope, templates: readonly LaunchTemplate[], why?: string): Promise<void> {
  for (const t of templates) scope.plan.record({ resource: 'launch-template', name: t.LaunchTemplateName!, id: t.LaunchTemplateId!, action: 'delete', ...(why ? { detail: why } : {}) });
  if (scope.dryRun) return;
  for (const t of templates) {
    scope.log.info('Deleting launch template', { name: t.LaunchTemplateName, id: t.LaunchTemplateId });
    await scope.ec2.send(new DeleteLaunchTemplateCommand({ LaunchTemplateId: t.LaunchTemplateId }), { abortSignal: scope.signal }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }
}

/** Deletes the templates capflow made for these node groups (call once the groups are gone). */
export async function deleteNodegroupTemplatesOf(scope: EksScope, nodegroups: readonly string[], why?: string): Promise<void> {
  if (nodegroups.length === 0) return;
  const names = nodegroups.map((n) => nodegroupTemplateName(scope.eksClusterName, n));
  const templates = (await findNodegroupTemplates(scope, names)).filter((t) => isOwnedNodegroupTemplate(scope, t) && nodegroups.includes(fromTagList(t.Tags)[EKS_NODEGROUP_TAG]!));
  await deleteTemplates(scope, templates, why);
}

/** Deletes every node group template capflow made for the cluster (call once its node groups are gone). */
export async function deleteAllNodegroupTemplates(scope: EksScope): Promise<void> {
  const templates = (
    await describeTemplates(scope, [
      { Name: `tag:${capaClusterTag(scope.clusterName)}`, Values: ['owned'] },
      { Name: 'tag-key', Values: [EKS_NODEGROUP_TAG] },
    ])
  ).filter((t) => isOwnedNodegroupTemplate(scope, t));
  await deleteTemplates(scope, templates);
}
