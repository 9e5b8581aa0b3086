/**
 * eks-control-plane: makes an EKS cluster's control plane match its
 * AWSManagedControlPlane: the IAM roles (the control plane's and the nodes',
 * unless the spec names its own), the cluster in provision-vpc's subnets
 * (version, endpoint access, logging, secrets encryption, access mode), the
 * IAM OIDC provider for IRSA, access entries or the aws-auth ConfigMap (the
 * spec's mappings and the roles of self-managed node pools), and the EKS addons; then the
 * kubeconfig Secrets `<cluster>-kubeconfig` (a short-lived token) and
 * `<cluster>-user-kubeconfig` (exec). An upgrade moves the control plane one
 * minor version, then its addons; the node groups follow in eks-node-groups.
 * With --delete: the cluster (once its node groups are gone), the OIDC
 * provider and the roles capflow made, and the kubeconfig Secrets.
 */
import type { LogType } from '@aws-sdk/client-eks';
import { CoreV1Api } from '@kubernetes/client-node';
import { TransientError } from '../src/core/errors.js';
import type { Executor, StepContext } from '../src/core/executor.js';
import { readStepStatus, removeStepStatus, writeStepStatus } from '../src/core/status.js';
import { reconcileAccessEntries, type DesiredAccessEntry } from '../src/aws/eks-access.js';
import { reconcileAddons, type DesiredAddon } from '../src/aws/eks-addons.js';
import { isEmpty, nodeRoleMapping, reconcileAwsAuth, type DesiredAwsAuth } from '../src/aws/eks-aws-auth.js';
import { deleteEksCluster, reconcileEksCluster, VersionSkewError, type AuthenticationMode, type DesiredEksCluster } from '../src/aws/eks-cluster.js';
import { tokenKubeconfig, writeEksKubeconfigs } from '../src/aws/eks-kubeconfig.js';
import { makeEksToken } from '../src/aws/eks-token.js';
import { kubeConfigFrom } from '../src/bootstrap/workload.js';
import { eksMinor, type EksScope } from '../src/aws/eks-scope.js';
import { CONTROL_PLANE_POLICIES, EKS_NODE_INSTANCE_PROFILE, NODE_POLICIES, deleteOwnedRoles, instanceProfileRoleArn, reconcileRole, roleName, useGivenRole, type RoleResult } from '../src/aws/iam-roles.js';
import { deleteOidcProvider, reconcileOidcProvider } from '../src/aws/oidc-provider.js';
import { clusterSecretName } from '../src/bootstrap/pki.js';
import { FieldProblems } from '../src/spec/index.js';
import { requireNetwork, type EksControlPlaneStatus, type ProvisionVpcStatus } from './aws-step.js';
import { EKS_CONTROL_PLANE_STEP, EKS_INPUT_SCHEMA, changesOf, stringOutputs, eksClusterNameOf, eksScopeFor, loadEksCluster, loadEksForDelete, regionOf, requireEksCluster, type EksClusterModel } from './eks-step.js';

const OUTPUTS = ['eks-cluster-name', 'cluster-arn', 'endpoint', 'kubernetes-version', 'oidc-issuer', 'changes'] as const;

/** The roles capflow makes when the spec names none (CAPA's names with EKSEnableIAM). */
export const controlPlaneRoleName = (eksClusterName: string) => roleName(eksClusterName, '-iam-service-role');
export const nodeRoleName = (eksClusterName: string) => roleName(eksClusterName, '-nodegroup-iam-service-role');

const LOG_TYPES: Record<string, LogType> = { apiServer: 'api', audit: 'audit', authenticator: 'authenticator', controllerManager: 'controllerManager', scheduler: 'scheduler' };

/** The AWSManagedControlPlane fields this step reads (the model types the common ones only). */
interface Spec {
  eksClusterName?: string;
  region?: string;
  version?: string;
  roleName?: string;
  additionalTags?: Record<string, string>;
  endpointAccess?: { public?: boolean; private?: boolean; publicCIDRs?: string[] };
  logging?: Record<string, boolean>;
  encryptionConfig?: { provider?: string; resources?: string[] };
  accessConfig?: { authenticationMode?: string; bootstrapClusterCreatorAdminPermissions?: boolean };
  accessEntries?: Array<{ principalARN: string; type?: string; username?: string; kubernetesGroups?: string[]; accessPolicies?: Array<{ policyARN: string; accessScope?: { type?: string; namespaces?: string[] } }> }>;
  addons?: Array<{ name: string; version: string; configuration?: string; conflictResolution?: string; serviceAccountRoleARN?: string }>;
  iamAuthenticatorConfig?: {
    mapRoles?: Array<{ rolearn: string; username: string; groups?: string[] }>;
    mapUsers?: Array<{ userarn: string; username: string; groups?: string[] }>;
  };
  associateOIDCProvider?: boolean;
  bootstrapSelfManagedAddons?: boolean;
  upgradePolicy?: string;
  rolePath?: string;
  rolePermissionsBoundary?: string;
  roleAdditionalPolicies?: string[];
}

const NO_NETWORK: ProvisionVpcStatus = { revision: '', region: '', vpcId: '', vpcManaged: true, subnets: [], natGatewayIds: {}, routeTableIds: {}, securityGroupIds: {}, apiServerDns: '', targetGroupArn: '', bastionAddress: '' };


/** The roles: the spec's own (which must exist) or capflow's. */
async function reconcileRoles(scope: EksScope, model: EksClusterModel, problems: FieldProblems): Promise<{ controlPlane: RoleResult; node: RoleResult }> {
  const spec = model.controlPlane.spec as unknown as Spec;
  const doc = { kind: model.controlPlane.kind, name: model.controlPlane.metadata.name };
  let controlPlane: RoleResult | undefined;
  if (spec.roleName) {
    controlPlane = await useGivenRole(scope, spec.roleName);
    if (!controlPlane) problems.add(doc, ['spec', 'roleName'], 'not-found', `IAM role ${spec.roleName} does not exist`, 'create it (trusted by eks.amazonaws.com, with AmazonEKSClusterPolicy), or remove spec.roleName to let capflow make one');
    problems.throwIfAny();
  } else {
    controlPlane = await reconcileRole(scope, {
      name: controlPlaneRoleName(scope.eksClusterName),
      trust: 'eks',
      policies: [...CONTROL_PLANE_POLICIES, ...(spec.roleAdditionalPolicies ?? [])],
      role: 'eks-control-plane',
      ...(spec.rolePath ? { path: spec.rolePath } : {}),
      ...(spec.rolePermissionsBoundary ? { permissionsBoundary: spec.rolePermissionsBoundary } : {}),
    });
  }
  const node = await reconcileRole(scope, { name: nodeRoleName(scope.eksClusterName), trust: 'ec2', policies: NODE_POLICIES, role: 'eks-nodes' });
  return { controlPlane: controlPlane!, node };
}

function desiredCluster(model: EksClusterModel, network: ProvisionVpcStatus, roleArn: string): DesiredEksCluster {
  const spec = model.controlPlane.spec as unknown as Spec;
  const serviceCidr = model.cluster.spec.clusterNetwork?.services?.cidrBlocks?.[0];
  const eksAdditional = network.securityGroupIds['node-eks-additional'];
  return {
    version: eksMinor(spec.version ?? model.kubernetesVersion),
    roleArn,
    // EKS places its network interfaces in these; CAPA gives it every subnet of the network.
    subnetIds: network.subnets.map((s) => s.id),
    securityGroupIds: eksAdditional ? [eksAdditional] : [],
    endpointPublic: spec.endpointAccess?.public ?? true,
    endpointPrivate: spec.endpointAccess?.private ?? false,
    publicCidrs: spec.endpointAccess?.publicCIDRs ?? [],
    logging: Object.entries(spec.logging ?? {}).filter(([, on]) => on).map(([k]) => LOG_TYPES[k]!).filter(Boolean),
    ...(serviceCidr ? { serviceCidr } : {}),
    ...(spec.encryptionConfig?.provider ? { encryption: { keyArn: spec.encryptionConfig.provider, resources: spec.encryptionConfig.resources ?? ['secrets'] } } : {}),
    authenticationMode: (spec.accessConfig?.authenticationMode ?? 'config_map').toUpperCase() as AuthenticationMode,
    bootstrapClusterCreatorAdminPermissions: spec.accessConfig?.bootstrapClusterCreatorAdminPermissions ?? true,
    bootstrapSelfManagedAddons: spec.bootstrapSelfManagedAddons ?? true,
    ...(spec.upgradePolicy ? { upgradePolicy: spec.upgradePolicy.toUpperCase() as 'STANDARD' | 'EXTENDED' } : {}),
  };
}

function desiredAddons(spec: Spec): DesiredAddon[] {
  return (spec.addons ?? []).map((a) => ({
    name: a.name,
    version: a.version,
    resolveConflicts: (a.conflictResolution ?? 'overwrite').toUpperCase() as DesiredAddon['resolveConflicts'],
    ...(a.configuration ? { configuration: a.configuration } : {}),
    ...(a.serviceAccountRoleARN ? { serviceAccountRoleArn: a.serviceAccountRoleARN } : {}),
  }));
}

function desiredAccessEntries(spec: Spec): DesiredAccessEntry[] {
  return (spec.accessEntries ?? []).map((e) => ({
    principalArn: e.principalARN,
    type: (e.type ?? 'standard').toUpperCase(),
    ...(e.username ? { username: e.username } : {}),
    kubernetesGroups: e.kubernetesGroups ?? [],
    policies: (e.accessPolicies ?? []).map((p) => ({
      policyArn: p.policyARN,
      scope: { type: p.accessScope?.type === 'namespace' ? 'namespace' : 'cluster', ...(p.accessScope?.namespaces?.length ? { namespaces: p.accessScope.namespaces } : {}) },
    })),
  }));
}

/**
 * The roles the instances of self-managed pools (MachinePools on AWSMachinePools) take, from their
 * instance profiles: EKS lets them join only when aws-auth or an access entry maps them.
 */
async function selfManagedNodeRoles(scope: EksScope, model: EksClusterModel, problems: FieldProblems): Promise<string[]> {
  const arns: string[] = [];
  const byProfile = new Map<string, string | undefined>();
  for (const { infrastructure } of model.machinePools) {
    if (infrastructure.kind !== 'AWSMachinePool') continue;
    const given = (infrastructure.spec as { awsLaunchTemplate?: { iamInstanceProfile?: string } }).awsLaunchTemplate?.iamInstanceProfile;
    const profile = given || EKS_NODE_INSTANCE_PROFILE;
    if (!byProfile.has(profile)) byProfile.set(profile, await instanceProfileRoleArn(scope, profile));
    const arn = byProfile.get(profile);
    if (!arn) {
      problems.add(
        { kind: infrastructure.kind, name: infrastructure.metadata.name },
        given ? ['spec', 'awsLaunchTemplate', 'iamInstanceProfile'] : ['spec', 'awsLaunchTemplate'],
        'not-found',
        `instance profile ${profile} does not exist or holds no role: the pool's nodes could not join`,
        given ? 'create it with a role trusted by ec2.amazonaws.com, or name one that exists' : `create ${profile} (clusterawsadm makes the AWS provider's default), or set awsLaunchTemplate.iamInstanceProfile`,
      );
    } else if (!arns.includes(arn)) arns.push(arn);
  }
  return arns;
}

/** What aws-auth should hold: the spec's mappings, and in CONFIG_MAP mode the self-managed nodes' roles. */
function desiredAwsAuth(spec: Spec, mode: string, nodeRoles: readonly string[]): DesiredAwsAuth {
  const config = spec.iamAuthenticatorConfig ?? {};
  const mapRoles = (config.mapRoles ?? []).map((r) => ({ rolearn: r.rolearn, username: r.username, groups: r.groups ?? [] }));
  if (mode === 'CONFIG_MAP') {
    for (const arn of nodeRoles) if (!mapRoles.some((r) => r.rolearn === arn)) mapRoles.push(nodeRoleMapping(arn));
  }
  return { mapRoles, mapUsers: (config.mapUsers ?? []).map((u) => ({ userarn: u.userarn, username: u.username, groups: u.groups ?? [] })) };
}

/** Writes aws-auth through the cluster's API, as the identity that runs this step. */
async function applyAwsAuth(scope: EksScope, cluster: { endpoint: string; caData: string; endpointPublic: boolean }, desired: DesiredAwsAuth): Promise<string[]> {
  const { token } = await makeEksToken({ clusterName: scope.eksClusterName, region: scope.region, credentials: () => scope.eks.config.credentials() });
  const kc = kubeConfigFrom(tokenKubeconfig({ clusterName: scope.clusterName, eksClusterName: scope.eksClusterName, region: scope.region, endpoint: cluster.endpoint, certificateAuthorityData: cluster.caData }, token));
  try {
    return (await reconcileAwsAuth(scope, kc.makeApiClient(CoreV1Api), desired)).managed;
  } catch (err) {
    if (err instanceof TransientError && !cluster.endpointPublic) {
      throw new TransientError('EKS_API_UNREACHABLE', `${err.message} (the cluster's endpoint ${cluster.endpoint} is private)`, {
        hint: 'run this step from inside the VPC, or allow public endpoint access from this address (spec.endpointAccess)',
        cause: err,
      });
    }
    throw err;
  }
}

async function apply(ctx: StepContext): Promise<{ outputs: Record<string, string>; summary: Record<string, unknown> }> {
  const model = await loadEksCluster(ctx);
  requireEksCluster(model, EKS_CONTROL_PLANE_STEP);
  const spec = model.controlPlane.spec as unknown as Spec;
  const region = regionOf(model, ctx.aws.defaultRegion);
  const eksClusterName = eksClusterNameOf(model);
  // A plan before provision-vpc has run: no subnets yet, and no cluster to find.
  const network = ctx.options.dryRun ? ((await readStepStatus<ProvisionVpcStatus>(ctx.secrets, model.name, 'provision-vpc')) ?? NO_NETWORK) : await requireNetwork(ctx, model.name);
  const problems = new FieldProblems(model);
  const doc = { kind: model.controlPlane.kind, name: model.controlPlane.metadata.name };
  if (!spec.version && !model.kubernetesVersion) {
    problems.add(doc, ['spec', 'version'], 'invalid-value', 'an EKS control plane needs a Kubernetes version (e.g. v1.31)');
    problems.throwIfAny();
  }
  const scope = eksScopeFor(ctx, { clusterName: model.name, eksClusterName, region, ...(spec.additionalTags ? { additionalTags: spec.additionalTags } : {}) });

  await ctx.checkpoint('iam-roles');
  const roles = await reconcileRoles(scope, model, problems);
  let cluster;
  try {
    await ctx.checkpoint('eks-cluster');
    cluster = await reconcileEksCluster(scope, desiredCluster(model, network, roles.controlPlane.arn));
  } catch (err) {
    if (!(err instanceof VersionSkewError)) throw err;
    // Only AWS knows the running version: the skew is found here, and reported at the spec's field.
    problems.add(doc, ['spec', 'version'], 'invalid-value', err.message, 'raise spec.version one minor at a time, applying each');
    problems.throwIfAny();
  }
  const empty = { ...Object.fromEntries(OUTPUTS.map((o) => [o, ''])), 'eks-cluster-name': eksClusterName };
  if (!cluster) {
    // Dry run of a cluster not made yet: what follows depends on it.
    ctx.log.info(`Plan:\n${scope.plan.format()}`);
    return { outputs: { ...empty, changes: changesOf(scope) }, summary: { plan: scope.plan.counts() } };
  }
  const issuer = cluster.identity?.oidc?.issuer;
  await ctx.checkpoint('oidc-provider');
  const oidc = spec.associateOIDCProvider && issuer ? await reconcileOidcProvider(scope, issuer) : undefined;
  const mode = cluster.accessConfig?.authenticationMode ?? 'CONFIG_MAP';
  const nodeRoles = await selfManagedNodeRoles(scope, model, problems);
  problems.throwIfAny();
  if (mode !== 'CONFIG_MAP') {
    // The API modes let self-managed nodes in by an EC2_LINUX access entry for their role.
    const nodeEntries = nodeRoles.filter((arn) => !spec.accessEntries?.some((e) => e.principalARN === arn)).map((principalArn) => ({ principalArn, type: 'EC2_LINUX', kubernetesGroups: [], policies: [] }));
    await reconcileAccessEntries(scope, [...desiredAccessEntries(spec), ...nodeEntries]);
  } else if (spec.accessEntries?.length) problems.add(doc, ['spec', 'accessEntries'], 'invalid-value', 'access entries need spec.accessConfig.authenticationMode api or api_and_config_map');
  problems.throwIfAny();
  // aws-auth is reached through the cluster's own API: only when there is something to write, or
  // something capflow wrote before to take back.
  const awsAuth = desiredAwsAuth(spec, mode, nodeRoles);
  const before = await readStepStatus<EksControlPlaneStatus>(ctx.secrets, model.name, EKS_CONTROL_PLANE_STEP);
  let awsAuthManaged: string[] = [];
  if (mode !== 'API' && cluster.endpoint && (!isEmpty(awsAuth) || before?.awsAuthManaged?.length)) {
    awsAuthManaged = await applyAwsAuth(scope, { endpoint: cluster.endpoint, caData: cluster.certificateAuthority?.data ?? '', endpointPublic: cluster.resourcesVpcConfig?.endpointPublicAccess ?? true }, awsAuth);
  }
  await ctx.checkpoint('eks-addons');
  await reconcileAddons(scope, desiredAddons(spec));

  const status: EksControlPlaneStatus = {
    revision: ctx.options.revision,
    region,
    eksClusterName,
    arn: cluster.arn!,
    endpoint: cluster.endpoint ?? '',
    certificateAuthorityData: cluster.certificateAuthority?.data ?? '',
    version: eksMinor(cluster.version ?? ''),
    serviceCidr: cluster.kubernetesNetworkConfig?.serviceIpv4Cidr ?? '',
    clusterSecurityGroupId: cluster.resourcesVpcConfig?.clusterSecurityGroupId ?? '',
    roleArn: roles.controlPlane.arn,
    nodeRoleArn: roles.node.arn,
    ...(issuer ? { oidcIssuer: issuer } : {}),
    ...(oidc ? { oidcProviderArn: oidc.arn } : {}),
    ...(awsAuthManaged.length ? { awsAuthManaged } : {}),
  };
  if (ctx.options.dryRun) {
    ctx.log.info(`Plan:\n${scope.plan.format()}`);
  } else {
    const kubeconfig = await writeEksKubeconfigs(ctx.secrets, { clusterName: model.name, eksClusterName, region, endpoint: status.endpoint, certificateAuthorityData: status.certificateAuthorityData }, () => scope.eks.config.credentials());
    ctx.log.info(`Kubeconfig ${kubeconfig}`, { secret: clusterSecretName(model.name, 'kubeconfig'), userSecret: clusterSecretName(model.name, 'user-kubeconfig') });
    await writeStepStatus(ctx.secrets, model.name, EKS_CONTROL_PLANE_STEP, status);
  }
  return {
    outputs: { 'eks-cluster-name': eksClusterName, 'cluster-arn': status.arn, endpoint: status.endpoint, 'kubernetes-version': status.version, 'oidc-issuer': issuer ?? '', changes: changesOf(scope) },
    summary: { plan: scope.plan.counts(), eksCluster: eksClusterName, version: status.version },
  };
}

export const eksControlPlane: Executor = {
  id: EKS_CONTROL_PLANE_STEP,
  description: 'Make the EKS control plane match the AWSManagedControlPlane (IAM roles, cluster, OIDC provider, access entries, addons, kubeconfig)',
  supportsDelete: true,
  supportsDryRun: true,
  inputSchema: EKS_INPUT_SCHEMA,
  outputSchema: stringOutputs(OUTPUTS),
  async run(ctx) {
    if (!ctx.options.delete) return apply(ctx);
    const empty = Object.fromEntries(OUTPUTS.map((o) => [o, ''])) as Record<(typeof OUTPUTS)[number], string>;
    const target = await loadEksForDelete(ctx, EKS_CONTROL_PLANE_STEP);
    if (!target) return { outputs: { ...empty, changes: '0' } };
    const scope = eksScopeFor(ctx, target);
    await deleteEksCluster(scope);
    if (target.status?.oidcProviderArn) await deleteOidcProvider(scope, target.status.oidcProviderArn);
    await deleteOwnedRoles(scope, [controlPlaneRoleName(target.eksClusterName), nodeRoleName(target.eksClusterName)]);
    if (ctx.options.dryRun) {
      ctx.log.info(`Plan:\n${scope.plan.format()}`);
    } else {
      for (const purpose of ['kubeconfig', 'user-kubeconfig'] as const) await ctx.secrets.delete(clusterSecretName(target.clusterName, purpose));
      await removeStepStatus(ctx.secrets, target.clusterName, EKS_CONTROL_PLANE_STEP);
    }
    return { outputs: { ...empty, 'eks-cluster-name': target.eksClusterName, changes: changesOf(scope) }, summary: { plan: scope.plan.counts() } };
  },
};
