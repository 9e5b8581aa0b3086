/**
 * eks-node-groups: makes the EKS managed node groups match the cluster's
 * MachinePools whose infrastructure is an AWSManagedMachinePool: created in
 * provision-vpc's private subnets with the nodes' role from eks-control-plane,
 * updated in place where EKS allows it, upgraded to the control plane's
 * version after it, removed when the spec drops them. MachinePools on an
 * AWSMachinePool (Auto Scaling groups with EKS bootstrap data) are
 * launch-nodes'. With --delete: every node group capflow made, waited until
 * gone, so the control plane can be deleted next. A pool's awsLaunchTemplate
 * becomes the group's own launch template (with ami.id: EKS bootstrap user
 * data rendered from its EKSConfig), made before the group, deleted after it.
 */
import type { Taint } from '@aws-sdk/client-eks';
import type { Executor, StepContext } from '../src/core/executor.js';
import { ConflictError, InputError } from '../src/core/errors.js';
import { readStepStatus } from '../src/core/status.js';
import { deleteNodegroups, nodegroupTags, reconcileNodegroups, type DesiredNodegroup } from '../src/aws/eks-node-groups.js';
import { nodegroupTemplate, type ManagedLaunchTemplateSpec } from '../src/aws/eks-launch-templates.js';
import { renderEksUserData } from '../src/bootstrap/eks-user-data.js';
import { eksMinor, minorDistance, type EksScope } from '../src/aws/eks-scope.js';
import { useGivenRole } from '../src/aws/iam-roles.js';
import { FieldProblems, REPLICAS_MANAGED_BY, type AWSManagedMachinePool, type MachinePoolModel } from '../src/spec/index.js';
import { bootstrapSecretName, requireNetwork, type EksControlPlaneStatus, type ProvisionVpcStatus } from './aws-step.js';
import { EKS_CONTROL_PLANE_STEP, EKS_INPUT_SCHEMA, changesOf, stringOutputs, eksClusterNameOf, eksScopeFor, loadEksCluster, loadEksForDelete, regionOf, requireEksCluster } from './eks-step.js';

export const STEP_ID = 'eks-node-groups';
const OUTPUTS = ['node-groups', 'changes'] as const;


const TAINT_EFFECTS: Record<string, Taint['effect']> = { 'no-schedule': 'NO_SCHEDULE', 'no-execute': 'NO_EXECUTE', 'prefer-no-schedule': 'PREFER_NO_SCHEDULE' };

/** The AWSManagedMachinePool fields this step reads. */
interface ManagedPoolSpec {
  eksNodegroupName?: string;
  instanceType?: string;
  capacityType?: 'onDemand' | 'spot';
  amiType?: DesiredNodegroup['amiType'];
  amiVersion?: string;
  diskSize?: number;
  scaling?: { minSize?: number; maxSize?: number };
  subnetIDs?: string[];
  availabilityZones?: string[];
  availabilityZoneSubnetType?: 'public' | 'private' | 'all';
  labels?: Record<string, string>;
  taints?: Array<{ key: string; value?: string; effect: string }>;
  roleName?: string;
  updateConfig?: { maxUnavailable?: number; maxUnavailablePercentage?: number };
  remoteAccess?: { sshKeyName?: string; sourceSecurityGroups?: string[] };
  additionalTags?: Record<string, string>;
  awsLaunchTemplate?: ManagedLaunchTemplateSpec;
}

type ManagedPool = MachinePoolModel & { infrastructure: AWSManagedMachinePool };

export function managedPools(pools: readonly MachinePoolModel[]): ManagedPool[] {
  return pools.filter((p): p is ManagedPool => p.infrastructure.kind === 'AWSManagedMachinePool');
}

export function nodegroupNameOf(pool: ManagedPool): string {
  return (pool.infrastructure.spec as ManagedPoolSpec).eksNodegroupName || pool.infrastructure.metadata.name;
}

function subnetsFor(spec: ManagedPoolSpec, network: ProvisionVpcStatus): string[] {
  if (spec.subnetIDs?.length) return spec.subnetIDs;
  const type = spec.availabilityZoneSubnetType ?? 'private';
  return network.subnets
    .filter((s) => type === 'all' || s.public === (type === 'public'))
    .filter((s) => !spec.availabilityZones?.length || spec.availabilityZones.includes(s.az))
    .map((s) => s.id);
}

/** Plain-text user data of a pool whose template names a custom AMI. */
type UserDataOf = (pool: ManagedPool) => Promise<string>;

/**
 * The user data of a custom AMI's nodes (EKS's own images bootstrap themselves): the pool's entry in
 * the hand-made bootstrap secret, else its bootstrap data secret, else its EKSConfig (or an empty
 * one) rendered as launch-nodes renders an EKS pool's. Never logged.
 */
function userDataFor(ctx: StepContext, clusterName: string, cp: EksControlPlaneStatus): UserDataOf {
  const cluster = { name: cp.eksClusterName, endpoint: cp.endpoint, certificateAuthorityData: cp.certificateAuthorityData, serviceCidr: cp.serviceCidr };
  return async (pool) => {
    const name = pool.pool.metadata.name;
    const handMade = (await ctx.secrets.get(bootstrapSecretName(clusterName))) ?? {};
    const dataSecret = pool.pool.spec.template.spec.bootstrap.dataSecretName;
    const given = handMade[name] ?? (dataSecret ? (await ctx.secrets.get(dataSecret))?.value : undefined);
    if (given !== undefined) return given;
    const config = pool.bootstrapConfig?.kind === 'EKSConfig' ? pool.bootstrapConfig : undefined;
    const lookupType = (pool.infrastructure.spec as ManagedPoolSpec).awsLaunchTemplate?.ami?.eksLookupType;
    return renderEksUserData({
      spec: config?.spec ?? {},
      cluster,
      ...(lookupType ? { amiLookupType: lookupType } : {}),
      ...(config ? { origin: { kind: 'EKSConfig', name: config.metadata.name, path: ['spec'] } } : {}),
      resolveSecret: async (ref) => (await ctx.secrets.get(ref.name))?.[ref.key],
    });
  };
}

async function desiredGroups(
  scope: EksScope,
  pools: ManagedPool[],
  cp: EksControlPlaneStatus,
  network: ProvisionVpcStatus,
  problems: FieldProblems,
  userDataOf: UserDataOf,
): Promise<DesiredNodegroup[]> {
  const out: DesiredNodegroup[] = [];
  const givenRoles = new Map<string, string | undefined>();
  for (const pool of pools) {
    const spec = pool.infrastructure.spec as ManagedPoolSpec;
    const doc = { kind: pool.infrastructure.kind, name: pool.infrastructure.metadata.name };
    const name = nodegroupNameOf(pool);
    const replicas = pool.pool.spec.replicas ?? 1;
    const externallyScaled = pool.pool.metadata.annotations?.[REPLICAS_MANAGED_BY] !== undefined;
    const minSize = spec.scaling?.minSize ?? replicas;
    const maxSize = Math.max(spec.scaling?.maxSize ?? Math.max(replicas, minSize, 1), 1);
    const subnetIds = subnetsFor(spec, network);
    if (subnetIds.length === 0) problems.add(doc, spec.availabilityZones?.length ? ['spec', 'availabilityZones'] : ['spec', 'availabilityZoneSubnetType'], 'invalid-value', `no subnet of the network matches (zones ${network.subnets.map((s) => s.az).join(', ')})`);
    const version = eksMinor(pool.pool.spec.template.spec.version ?? cp.version);
    if (minorDistance(cp.version, version) > 0) {
      throw new ConflictError('EKS_NODEGROUP_AHEAD', `node group ${name} would run ${version} but the control plane runs ${cp.version}; nodes follow the control plane`, { hint: 'run eks-control-plane first (cluster-apply does)' });
    }
    let nodeRoleArn = cp.nodeRoleArn;
    if (spec.roleName) {
      if (!givenRoles.has(spec.roleName)) givenRoles.set(spec.roleName, (await useGivenRole(scope, spec.roleName))?.arn);
      const arn = givenRoles.get(spec.roleName);
      if (!arn) problems.add(doc, ['spec', 'roleName'], 'not-found', `IAM role ${spec.roleName} does not exist`, 'create it (trusted by ec2.amazonaws.com, with the EKS worker node policies), or remove roleName');
      nodeRoleArn = arn ?? '';
    }
    const lt = spec.awsLaunchTemplate;
    // With additionalSecurityGroups the template names every group, so EKS adds none of its own:
    // the cluster's security group (what EKS would add) and the EKS additional node group come first.
    const baseSecurityGroupIds = [cp.clusterSecurityGroupId, network.securityGroupIds['node-eks-additional']].filter((id): id is string => !!id);
    const launchTemplate = lt
      ? await nodegroupTemplate(scope, {
          nodegroup: name,
          spec: lt,
          baseSecurityGroupIds,
          ...(lt.ami?.id ? { userData: await userDataOf(pool) } : {}),
          ...(spec.additionalTags ? { additionalTags: spec.additionalTags } : {}),
        })
      : undefined;
    out.push({
      name,
      machinePool: pool.pool.metadata.name,
      minSize,
      maxSize,
      desiredSize: Math.min(Math.max(replicas, minSize), maxSize),
      externallyScaled,
      instanceTypes: [spec.instanceType ?? 't3.medium'],
      capacityType: spec.capacityType === 'spot' ? 'SPOT' : 'ON_DEMAND',
      ...(spec.amiType ? { amiType: spec.amiType } : {}),
      ...(spec.amiVersion ? { releaseVersion: spec.amiVersion } : {}),
      ...(spec.diskSize !== undefined ? { diskSize: spec.diskSize } : {}),
      subnetIds,
      nodeRoleArn,
      labels: spec.labels ?? {},
      taints: (spec.taints ?? []).map((t) => ({ key: t.key, ...(t.value !== undefined ? { value: t.value } : {}), effect: TAINT_EFFECTS[t.effect] ?? 'NO_SCHEDULE' })),
      ...(spec.updateConfig ? { updateConfig: spec.updateConfig } : {}),
      ...(spec.remoteAccess ? { remoteAccess: { ...(spec.remoteAccess.sshKeyName ? { ec2SshKey: spec.remoteAccess.sshKeyName } : {}), ...(spec.remoteAccess.sourceSecurityGroups ? { sourceSecurityGroups: spec.remoteAccess.sourceSecurityGroups } : {}) } } : {}),
      version,
      tags: nodegroupTags(scope, name, externallyScaled, spec.additionalTags ?? {}),
      ...(launchTemplate ? { launchTemplate } : {}),
    });
  }
  return out;
}


async function apply(ctx: StepContext) {
  const model = await loadEksCluster(ctx);
  requireEksCluster(model, STEP_ID);
  const cp = await readStepStatus<EksControlPlaneStatus>(ctx.secrets, model.name, EKS_CONTROL_PLANE_STEP);
  const pools = managedPools(model.machinePools);
  if (!cp && ctx.options.dryRun) {
    // A plan before the control plane exists: every node group is still to be made.
    for (const pool of pools) ctx.log.info(`Plan: create eks-node-group ${nodegroupNameOf(pool)} (after the control plane)`);
    return { outputs: { 'node-groups': '[]', changes: String(pools.length) }, summary: { plan: { create: pools.length } } };
  }
  if (!cp) throw new InputError('CONTROL_PLANE_MISSING', `cluster ${model.name} has no EKS control plane in its status secret: run eks-control-plane first`, { hint: 'capflow step eks-control-plane --cluster-dir ...' });
  const network = await requireNetwork(ctx, model.name);
  const scope = eksScopeFor(ctx, { clusterName: model.name, eksClusterName: eksClusterNameOf(model), region: regionOf(model, ctx.aws.defaultRegion) });
  const problems = new FieldProblems(model);
  const desired = await desiredGroups(scope, pools, cp, network, problems, userDataFor(ctx, model.name, cp));
  problems.throwIfAny();
  await ctx.checkpoint('node-groups');
  const groups = await reconcileNodegroups(scope, desired, cp.version);
  if (ctx.options.dryRun) ctx.log.info(`Plan:\n${scope.plan.format()}`);
  return { outputs: { 'node-groups': JSON.stringify(groups), changes: changesOf(scope) }, summary: { plan: scope.plan.counts(), nodeGroups: groups.length } };
}

export const eksNodeGroups: Executor = {
  id: STEP_ID,
  description: 'Make the EKS managed node groups match the AWSManagedMachinePools (instance types, spot, scaling, labels, taints, version)',
  supportsDelete: true,
  supportsDryRun: true,
  inputSchema: EKS_INPUT_SCHEMA,
  outputSchema: stringOutputs(OUTPUTS),
  async run(ctx) {
    if (!ctx.options.delete) return apply(ctx);
    const target = await loadEksForDelete(ctx, STEP_ID);
    if (!target) return { outputs: { 'node-groups': '[]', changes: '0' } };
    const scope = eksScopeFor(ctx, target);
    await deleteNodegroups(scope);
    if (ctx.options.dryRun) ctx.log.info(`Plan:\n${scope.plan.format()}`);
    return { outputs: { 'node-groups': '[]', changes: changesOf(scope) }, summary: { plan: scope.plan.counts() } };
  },
};
