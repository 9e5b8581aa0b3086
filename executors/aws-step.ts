/**
 * What the AWS steps share: their duration parameters, loading the cluster
 * for --delete (which must also work when the cluster folder is gone: then
 * -p cluster-name and -p region say what to delete), the self-managed
 * cluster and network they need, and their scope.
 */
import path from 'node:path';
import type { StepContext } from '../src/core/executor.js';
import { InputError, isCapflowError } from '../src/core/errors.js';
import type { StepOptions } from '../src/core/executor.js';
import { loadClusterSpec, type AWSCluster, type ClusterModel, type KubeadmControlPlane, type LoadOptions } from '../src/spec/index.js';
import { readStepStatus } from '../src/core/status.js';
import { makeScope, type ClusterScope } from '../src/aws/index.js';

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

/** Loads the AWS self-managed cluster; for --delete a removed folder is fine when cluster-name is given. */
export async function loadAwsClusterForDelete(ctx: StepContext): Promise<{ model?: ClusterModel; clusterName: string; region: string }> {
  const { repoDir, clusterPath, params } = ctx.options;
  const fallbackRegion = params.region || ctx.aws.defaultRegion;
  try {
    const model = await loadClusterSpec(path.resolve(repoDir, clusterPath), specLoadOptions(ctx.options));
    if (model.provider !== 'aws' || model.infrastructure.kind !== 'AWSCluster') {
      throw new InputError('PROVIDER_NOT_AWS', `cluster ${model.name} is not an AWS self-managed cluster`);
    }
    return { model, clusterName: model.name, region: model.infrastructure.spec.region ?? fallbackRegion };
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

export async function requireNetwork(ctx: StepContext, clusterName: string): Promise<ProvisionVpcStatus> {
  const vpc = await readStepStatus<ProvisionVpcStatus>(ctx.secrets, clusterName, 'provision-vpc');
  if (!vpc) throw new InputError('NETWORK_MISSING', `cluster ${clusterName} has no network in its status secret: run provision-vpc first`, { hint: 'capflow step provision-vpc --cluster-dir ...' });
  return vpc;
}

export function bootstrapScope(ctx: StepContext, model: { name: string; region: string; additionalTags?: Record<string, string> }, instanceMs?: number): ClusterScope {
  return makeScope(
    ctx.aws,
    { clusterName: model.name, region: model.region, revision: ctx.options.revision, specPath: ctx.options.clusterPath, ...(model.additionalTags ? { additionalTags: model.additionalTags } : {}) },
    { log: ctx.log, dryRun: ctx.options.dryRun, signal: ctx.signal, timeouts: instanceMs !== undefined ? { instanceMs } : {} },
  );
}
