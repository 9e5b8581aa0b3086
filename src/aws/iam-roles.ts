/**
 * IAM roles of an EKS cluster: the control plane's (trusted by
 * eks.amazonaws.com) and the nodes' (trusted by ec2.amazonaws.com), each with
 * only the AWS managed policies EKS documents for it. A role the spec names is
 * used and never changed; a role capflow makes carries the ownership tags, and
 * only such roles are ever deleted. IAM has no tag filter, so roles are found
 * by their deterministic name and their tags are read back.
 */
import { createHash } from 'node:crypto';
import {
  AttachRolePolicyCommand,
  CreateRoleCommand,
  DeleteRoleCommand,
  DetachRolePolicyCommand,
  GetInstanceProfileCommand,
  GetRoleCommand,
  ListAttachedRolePoliciesCommand,
  ListInstanceProfilesForRoleCommand,
  RemoveRoleFromInstanceProfileCommand,
  type Role,
} from '@aws-sdk/client-iam';
import { ConflictError } from '../core/errors.js';
import { awsErrorName } from './find.js';
import type { EksScope } from './eks-scope.js';
import { adoptHint, ownedTags, ownershipOf } from './tags.js';

export type RoleTrust = 'eks' | 'ec2';

/** The instance profile of an EKS pool whose launch template names none: the AWS provider's default for nodes. */
export const EKS_NODE_INSTANCE_PROFILE = 'nodes.cluster-api-provider-aws.sigs.k8s.io';

const TRUSTED_SERVICE: Record<RoleTrust, string> = { eks: 'eks.amazonaws.com', ec2: 'ec2.amazonaws.com' };

/** The managed policies EKS's user guide gives each role, and nothing more. */
export const CONTROL_PLANE_POLICIES = ['AmazonEKSClusterPolicy'];
export const NODE_POLICIES = ['AmazonEKSWorkerNodePolicy', 'AmazonEKS_CNI_Policy', 'AmazonEC2ContainerRegistryReadOnly'];

export interface DesiredRole {
  name: string;
  trust: RoleTrust;
  /** Managed policy names (AmazonEKSClusterPolicy) or full ARNs (the spec's roleAdditionalPolicies). */
  policies: string[];
  path?: string;
  permissionsBoundary?: string;
  /** The capflow role tag value, e.g. eks-control-plane. */
  role: string;
}

export interface RoleResult {
  name: string;
  arn: string;
  managed: boolean;
}

/** IAM role names are at most 64 characters: a long one keeps its start and gains a hash. */
export function roleName(base: string, suffix: string): string {
  const full = `${base}${suffix}`;
  if (full.length <= 64) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 8);
  return `${base.slice(0, 64 - suffix.length - 9)}-${hash}${suffix}`;
}

export function policyArn(partition: string, policy: string): string {
  return policy.startsWith('arn:') ? policy : `arn:${partition}:iam::aws:policy/${policy}`;
}

function trustPolicy(trust: RoleTrust): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Principal: { Service: TRUSTED_SERVICE[trust] }, Action: 'sts:AssumeRole' }],
  });
}

export async function getRole(scope: EksScope, name: string): Promise<Role | undefined> {
  try {
    return (await scope.iam.send(new GetRoleCommand({ RoleName: name }))).Role;
  } catch (err) {
    if (awsErrorName(err) === 'NoSuchEntityException' || awsErrorName(err) === 'NoSuchEntity') return undefined;
    throw err;
  }
}

const partitionOf = (arn: string | undefined): string => arn?.split(':')[1] ?? 'aws';
const tagsOf = (role: Role): Record<string, string> => Object.fromEntries((role.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));

/** The role an instance profile hands its instances; undefined when the profile does not exist or holds none. */
export async function instanceProfileRoleArn(scope: EksScope, profileName: string): Promise<string | undefined> {
  try {
    return (await scope.iam.send(new GetInstanceProfileCommand({ InstanceProfileName: profileName }))).InstanceProfile?.Roles?.[0]?.Arn;
  } catch (err) {
    if (awsErrorName(err) === 'NoSuchEntity') return undefined;
    throw err;
  }
}

/** A role the spec names: it must exist; capflow uses it as it is. */
export async function useGivenRole(scope: EksScope, name: string): Promise<RoleResult | undefined> {
  const role = await getRole(scope, name);
  if (!role) return undefined;
  scope.plan.record({ resource: 'iam-role', name, id: role.Arn!, action: 'skip', detail: 'given by the spec: used, not managed' });
  return { name, arn: role.Arn!, managed: false };
}

/** Makes (or keeps) a role capflow owns, with exactly the desired managed policies attached. */
export async function reconcileRole(scope: EksScope, desired: DesiredRole): Promise<RoleResult> {
  const existing = await getRole(scope, desired.name);
  if (existing && ownershipOf(tagsOf(existing), scope.clusterName) !== 'owned') {
    throw new ConflictError('AWS_NOT_OWNED', `IAM role ${desired.name} exists but is not owned by cluster ${scope.clusterName}`, {
      hint: `${adoptHint('IAM role', desired.name, scope.clusterName)} (spec.roleName)`,
    });
  }
  let arn = existing?.Arn;
  if (!existing) {
    scope.plan.record({ resource: 'iam-role', name: desired.name, action: 'create', detail: `trusted by ${TRUSTED_SERVICE[desired.trust]}` });
    if (scope.dryRun) return { name: desired.name, arn: `(new role ${desired.name})`, managed: true };
    const tags = Object.entries(ownedTags(scope, desired.role, desired.name)).map(([Key, Value]) => ({ Key, Value }));
    try {
      const out = await scope.iam.send(
        new CreateRoleCommand({
          RoleName: desired.name,
          AssumeRolePolicyDocument: trustPolicy(desired.trust),
          Description: `capflow: ${desired.role} of cluster ${scope.clusterName}`,
          Tags: tags,
          ...(desired.path ? { Path: desired.path } : {}),
          ...(desired.permissionsBoundary ? { PermissionsBoundary: desired.permissionsBoundary } : {}),
        }),
      );
      arn = out.Role!.Arn!;
    } catch (err) {
      // A crash between CreateRole and its answer: the role is there, with our tags.
      if (awsErrorName(err) !== 'EntityAlreadyExistsException' && awsErrorName(err) !== 'EntityAlreadyExists') throw err;
      arn = (await getRole(scope, desired.name))!.Arn!;
    }
    scope.log.info('Created IAM role', { role: desired.name });
  }
  const partition = partitionOf(arn);
  const want = new Set(desired.policies.map((p) => policyArn(partition, p)));
  const attached = existing ? await attachedPolicies(scope, desired.name) : [];
  const missing = [...want].filter((p) => !attached.includes(p));
  const extra = attached.filter((p) => !want.has(p));
  if (existing) {
    const changed = missing.length + extra.length > 0;
    scope.plan.record({
      resource: 'iam-role',
      name: desired.name,
      id: arn!,
      action: changed ? 'update' : 'no-change',
      ...(changed ? { detail: [...missing.map((p) => `attach ${p}`), ...extra.map((p) => `detach ${p}`)].join(', ') } : {}),
    });
  }
  if (!scope.dryRun) {
    for (const p of missing) await scope.iam.send(new AttachRolePolicyCommand({ RoleName: desired.name, PolicyArn: p }));
    for (const p of extra) await scope.iam.send(new DetachRolePolicyCommand({ RoleName: desired.name, PolicyArn: p }));
  }
  return { name: desired.name, arn: arn!, managed: true };
}

async function attachedPolicies(scope: EksScope, name: string): Promise<string[]> {
  const out: string[] = [];
  let marker: string | undefined;
  do {
    const page = await scope.iam.send(new ListAttachedRolePoliciesCommand({ RoleName: name, ...(marker ? { Marker: marker } : {}) }));
    out.push(...(page.AttachedPolicies ?? []).map((p) => p.PolicyArn!).filter(Boolean));
    marker = page.IsTruncated ? page.Marker : undefined;
  } while (marker);
  return out;
}

/** Deletes the named roles the cluster owns (policies detached, instance profiles left first); others are skipped. */
export async function deleteOwnedRoles(scope: EksScope, names: readonly string[]): Promise<void> {
  for (const name of names) {
    const role = await getRole(scope, name);
    if (!role) continue;
    if (ownershipOf(tagsOf(role), scope.clusterName) !== 'owned') {
      scope.plan.record({ resource: 'iam-role', name, id: role.Arn!, action: 'skip', detail: 'not owned: never deleted' });
      continue;
    }
    scope.plan.record({ resource: 'iam-role', name, id: role.Arn!, action: 'delete' });
    if (scope.dryRun) continue;
    for (const p of await attachedPolicies(scope, name)) await scope.iam.send(new DetachRolePolicyCommand({ RoleName: name, PolicyArn: p }));
    const profiles = await scope.iam.send(new ListInstanceProfilesForRoleCommand({ RoleName: name }));
    for (const ip of profiles.InstanceProfiles ?? []) {
      await scope.iam.send(new RemoveRoleFromInstanceProfileCommand({ RoleName: name, InstanceProfileName: ip.InstanceProfileName! }));
    }
    try {
      await scope.iam.send(new DeleteRoleCommand({ RoleName: name }));
    } catch (err) {
      if (awsErrorName(err) !== 'NoSuchEntityException' && awsErrorName(err) !== 'NoSuchEntity') throw err;
    }
    scope.log.info('Deleted IAM role', { role: name });
  }
}
