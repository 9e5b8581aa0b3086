/**
 * What the AWS steps share: their duration parameters, loading the cluster
 * for --delete (which must also work when the cluster folder is gone: then
 * -p cluster-name and -p region say what to delete), the self-managed
 * cluster and network they need, and their scope.
 */
import path from 'node:path';
import type { StepContext } from '../src/core/executor.js';
import { setTimeout as delay } from 'node:timers/promises';
import { InputError, TransientError, isCapflowError } from '../src/core/errors.js';
import type { StepOptions } from '../src/core/executor.js';
import { loadClusterSpec, type AWSCluster, type ClusterModel, type KubeadmControlPlane, type LoadOptions } from '../src/spec/index.js';
import { readStepStatus, removeStepStatus } from '../src/core/status.js';
import { driftKey, writeDriftReport } from '../src/core/drift.js';
import { makeScope, type ClusterScope } from '../src/aws/index.js';
import type { Provenance } from '../src/aws/provenance.js';

/** What provision-vpc keeps in the status secret for the steps after it. */
export interface ProvisionVpcStatus {
  revision: string;
  region: string;
  vpcId: string;
  vpcManaged: boolean;
  /** The VPC whose DNS hostnames/support this step set or verified. */
  dnsVerifiedFor?: string;
  subnets: Array<{ id: string; az: string; cidr: string; public: boolean }>;
  internetGatewayId?: string;
  natGatewayIds: Record<string, string>;
  routeTableIds: Record<string, string>;
  securityGroupIds: Record<string, string>;
  apiServerDns: string;
  targetGroupArn: string;
  bastionAddress: string;
}

/** JSON-schema pattern of a duration parameter: 600, 600s, 10m, 500ms. */
export const DURATION_PATTERN = '^(\\d+(ms|s|m)?)?$';

/** Input-schema property of the steps that poll until the world is ready (kubeadm-init, join-workers). */
export const POLL_INTERVAL_PARAM = { type: 'string', pattern: DURATION_PATTERN, description: 'delay between checks (default 5s)' } as const;

/** Input-schema properties of the delete-by-name parameters. */
export const DELETE_TARGET_PARAMS = {
  'cluster-name': { type: 'string', description: 'for --delete when the cluster folder is gone' },
  region: { type: 'string', description: 'for --delete when the cluster folder is gone' },
} as const;

/** Milliseconds of a duration parameter; undefined when unset. */
export function parseDuration(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const m = /^(\d+)(ms|s|m)?$/.exec(value);
  if (!m) throw new InputError('PARAM_INVALID', `${name} must be a duration like 600s, 10m or 500ms, not "${value}"`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

/** How a step loads its cluster spec: the folder's cluster.env, plus `capflow step --vars` when given. */
export function specLoadOptions(options: StepOptions): LoadOptions {
  return options.varsFile !== undefined ? { varsFile: options.varsFile } : {};
}

/**
 * Loads the AWS cluster, self-managed (AWSCluster) or EKS (its region is the AWSManagedControlPlane's);
 * for --delete a removed folder is fine when cluster-name is given.
 */
export async function loadAwsClusterForDelete(ctx: StepContext): Promise<{ model?: ClusterModel; clusterName: string; region: string; notAws?: true }> {
  const { repoDir, clusterPath, params } = ctx.options;
  const fallbackRegion = params.region || ctx.aws.defaultRegion;
  try {
    const model = await loadClusterSpec(path.resolve(repoDir, clusterPath), specLoadOptions(ctx.options));
    if (model.provider === 'aws' && model.infrastructure.kind === 'AWSCluster') {
      return { model, clusterName: model.name, region: model.infrastructure.spec.region ?? fallbackRegion };
    }
    if (model.provider === 'eks' && model.controlPlane.kind === 'AWSManagedControlPlane') {
      return { model, clusterName: model.name, region: model.controlPlane.spec.region ?? fallbackRegion };
    }
    // cluster-delete's default runs every provider's chain: a bring-your-own-host cluster has nothing on AWS.
    if (model.provider === 'byoh') return { model, clusterName: model.name, region: fallbackRegion, notAws: true };
    throw new InputError('PROVIDER_NOT_AWS', `cluster ${model.name} is not an AWS cluster (AWSCluster, or AWSManagedControlPlane for EKS)`);
  } catch (err) {
    if (!(isCapflowError(err) && err.code === 'SPEC_DIR_NOT_FOUND')) throw err;
    if (!params['cluster-name']) {
      throw new InputError('SPEC_DIR_NOT_FOUND', `${err.message}; to delete a cluster whose folder is gone, pass -p cluster-name=NAME -p region=REGION`, { cause: err });
    }
    ctx.log.warn('Cluster folder is gone; deleting by cluster name', { clusterName: params['cluster-name'], region: fallbackRegion });
    return { clusterName: params['cluster-name'], region: fallbackRegion };
  }
}

/** Narrows the model to an AWS self-managed cluster, or refuses the step. */
export function requireKubeadmAwsCluster(model: ClusterModel, step: string): asserts model is ClusterModel & { infrastructure: AWSCluster; controlPlane: KubeadmControlPlane } {
  if (model.infrastructure.kind !== 'AWSCluster' || model.controlPlane.kind !== 'KubeadmControlPlane') {
    throw new InputError('PROVIDER_NOT_AWS', `cluster ${model.name} is a ${model.provider} cluster; ${step} works on an AWS self-managed cluster (AWSCluster + KubeadmControlPlane)`);
  }
}

/**
 * provision-vpc's status, or NETWORK_MISSING. securityGroupIds is keyed by role: controlplane, node,
 * apiserver-lb, bastion for a self-managed cluster; `node-eks-additional` (the group to give EKS's
 * CreateCluster in resourcesVpcConfig.securityGroupIds) and, with a bastion, bastion for EKS.
 */
export async function requireNetwork(ctx: StepContext, clusterName: string): Promise<ProvisionVpcStatus> {
  const vpc = await readStepStatus<ProvisionVpcStatus>(ctx.secrets, clusterName, 'provision-vpc');
  if (!vpc) throw new InputError('NETWORK_MISSING', `cluster ${clusterName} has no network in its status secret: run provision-vpc first`, { hint: 'capflow step provision-vpc --cluster-dir ...' });
  return vpc;
}

export function bootstrapScope(ctx: StepContext, model: { name: string; region: string; additionalTags?: Record<string, string> }, instanceMs?: number): ClusterScope {
  return makeScope(
    ctx.aws,
    { clusterName: model.name, region: model.region, revision: ctx.options.revision, specPath: ctx.options.clusterPath, ...(model.additionalTags ? { additionalTags: model.additionalTags } : {}) },
    { log: ctx.log, dryRun: ctx.options.dryRun, signal: ctx.signal, checkpoint: ctx.checkpoint, timeouts: instanceMs !== undefined ? { instanceMs } : {} },
  );
}

/** What eks-control-plane keeps in the status secret under `eks-control-plane`, for the node steps and teardown. */
/** The secret holding hand-made user data for machines and pools (launch-nodes, eks-node-groups). */
export function bootstrapSecretName(clusterName: string): string {
  return `capflow-${clusterName}-bootstrap`;
}

export interface EksControlPlaneStatus {
  revision: string;
  region: string;
  /** The EKS cluster's own name (AWSManagedControlPlane.spec.eksClusterName, or the Cluster's name). */
  eksClusterName: string;
  arn: string;
  /** https://... as EKS reports it. */
  endpoint: string;
  /** Base64 of the cluster CA's PEM, as EKS reports it. */
  certificateAuthorityData: string;
  /** Minor version the control plane runs, e.g. 1.31. */
  version: string;
  /** The Kubernetes service CIDR (kubernetesNetworkConfig.serviceIpv4Cidr), for node bootstrap. */
  serviceCidr: string;
  /** The security group EKS made for the cluster (resourcesVpcConfig.clusterSecurityGroupId). */
  clusterSecurityGroupId: string;
  /** The control plane's IAM role ARN. */
  roleArn: string;
  /** The role nodes take (managed node groups and EKS machine pools) unless a pool names its own. */
  nodeRoleArn: string;
  /** OIDC issuer URL, when IRSA is on. */
  oidcIssuer?: string;
  oidcProviderArn?: string;
  /** The IAM ARNs capflow mapped in the cluster's aws-auth ConfigMap (so a spec that drops them all still takes them back). */
  awsAuthManaged?: string[];
}

/**
 * Polls `check` until the API server answers ready, saying so every 15 s; API_SERVER_NOT_READY
 * (exit 75: a rerun keeps waiting) with `hint` after `timeoutMs`. kubeadm-init's wait, on EC2
 * machines and on bring-your-own hosts.
 */
export async function waitForApiServer(
  ctx: StepContext,
  server: string,
  check: () => Promise<{ ready: boolean; detail: string }>,
  answer: { ready: boolean; detail: string },
  o: { pollMs: number; timeoutMs: number; hint: string },
): Promise<{ ready: boolean; detail: string }> {
  const started = Date.now();
  let lastSaid = 0;
  while (!answer.ready) {
    const waited = Date.now() - started;
    if (waited > o.timeoutMs) {
      throw new TransientError('API_SERVER_NOT_READY', `the API server at ${server} did not answer /readyz within ${Math.round(o.timeoutMs / 1000)}s (last: ${answer.detail})`, { hint: o.hint });
    }
    if (Date.now() - lastSaid >= 15_000) {
      ctx.log.info(`Waiting for the API server ${Math.round(waited / 1000)}s`, { endpoint: server, last: answer.detail });
      lastSaid = Date.now();
    }
    await delay(o.pollMs, undefined, { signal: ctx.signal });
    answer = await check();
  }
  ctx.log.info('API server ready', { endpoint: server, after: `${Math.round((Date.now() - started) / 1000)}s` });
  return answer;
}

/**
 * Keeps what this run found (a plan) or changed (an apply) in the status secret under
 * `drift.<step>`, each change with its spec field and file:line, for `capflow status CLUSTER`.
 */
export async function recordDrift(ctx: StepContext, clusterName: string, step: string, scope: ClusterScope, provenance?: Provenance): Promise<void> {
  await writeDriftReport(ctx.secrets, clusterName, {
    step,
    mode: ctx.options.dryRun ? 'plan' : 'apply',
    revision: ctx.options.revision,
    at: new Date().toISOString(),
    changes: scope.plan.changes(),
    ...(provenance ? { provenance } : {}),
  });
}

/** A deleted cluster's step keeps no drift report (the status secret goes with its last key). */
export async function forgetDrift(ctx: StepContext, clusterName: string, step: string): Promise<void> {
  await removeStepStatus(ctx.secrets, clusterName, driftKey(step));
}
