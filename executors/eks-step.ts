/**
 * What the EKS steps share: narrowing the spec to an EKS cluster, the EKS
 * cluster's name, their scope, and loading for --delete (which must work
 * when the folder is gone, and make no call for a cluster that is not EKS,
 * so cluster-delete can run the EKS steps on any cluster).
 */
import path from 'node:path';
import type { StepContext } from '../src/core/executor.js';
import { InputError, isCapflowError } from '../src/core/errors.js';
import { readStepStatus } from '../src/core/status.js';
import { EKSClient } from '@aws-sdk/client-eks';
import { writeEksKubeconfigs } from '../src/aws/eks-kubeconfig.js';
import { makeEksScope, type EksScope } from '../src/aws/eks-scope.js';
import { loadClusterSpec, type AWSManagedCluster, type AWSManagedControlPlane, type ClusterModel } from '../src/spec/index.js';
import { DURATION_PATTERN, parseDuration, specLoadOptions, type EksControlPlaneStatus } from './aws-step.js';

export type EksClusterModel = ClusterModel & { infrastructure: AWSManagedCluster; controlPlane: AWSManagedControlPlane };

export const EKS_CONTROL_PLANE_STEP = 'eks-control-plane';

/** Input-schema properties of the EKS steps' waits. */
export const EKS_WAIT_PARAMS = {
  'wait-timeout': { type: 'string', pattern: DURATION_PATTERN, description: 'how long one EKS wait may take: cluster active, an update, node groups (default 30m)' },
  'poll-interval': { type: 'string', pattern: DURATION_PATTERN, description: 'delay between EKS describes while waiting (default 10s)' },
} as const;

const EKS_DELETE_PARAMS = {
  'cluster-name': { type: 'string', description: 'for --delete when the cluster folder is gone' },
  region: { type: 'string', description: 'for --delete when the cluster folder is gone' },
} as const;

/** The input schema of both EKS steps. */
export const EKS_INPUT_SCHEMA = { type: 'object', additionalProperties: false, properties: { ...EKS_WAIT_PARAMS, ...EKS_DELETE_PARAMS } } as const;

/** An output schema of string outputs, all required. */
export function stringOutputs(names: readonly string[]) {
  return { type: 'object', additionalProperties: false, required: [...names], properties: Object.fromEntries(names.map((o) => [o, { type: 'string' }])) };
}

/** Plan entries that create, update or delete: the `changes` output cluster-plan reads. */
export function changesOf(scope: EksScope): string {
  const c = scope.plan.counts();
  return String(c.create + c.update + c.delete);
}

export function isEksCluster(model: ClusterModel): model is EksClusterModel {
  return model.infrastructure.kind === 'AWSManagedCluster' && model.controlPlane.kind === 'AWSManagedControlPlane';
}

export function requireEksCluster(model: ClusterModel, step: string): asserts model is EksClusterModel {
  if (!isEksCluster(model)) {
    throw new InputError('PROVIDER_NOT_EKS', `cluster ${model.name} is a ${model.provider} cluster; ${step} works on an EKS cluster (AWSManagedCluster + AWSManagedControlPlane)`);
  }
}

/** The EKS cluster's name: spec.eksClusterName, else the Cluster's name. */
export function eksClusterNameOf(model: EksClusterModel): string {
  return model.controlPlane.spec.eksClusterName || model.name;
}

export function regionOf(model: EksClusterModel, fallback: string): string {
  return model.controlPlane.spec.region ?? fallback;
}

export function eksScopeFor(ctx: StepContext, p: { clusterName: string; eksClusterName: string; region: string; additionalTags?: Record<string, string> }): EksScope {
  const waitMs = parseDuration(ctx.options.params['wait-timeout'], 'wait-timeout');
  const pollMs = parseDuration(ctx.options.params['poll-interval'], 'poll-interval');
  return makeEksScope(
    ctx.aws,
    { clusterName: p.clusterName, eksClusterName: p.eksClusterName, region: p.region, revision: ctx.options.revision, specPath: ctx.options.clusterPath, ...(p.additionalTags ? { additionalTags: p.additionalTags } : {}) },
    { log: ctx.log, dryRun: ctx.options.dryRun, signal: ctx.signal, ...(waitMs !== undefined ? { eksWaitMs: waitMs } : {}), ...(pollMs !== undefined ? { pollMs } : {}) },
  );
}

export function loadEksCluster(ctx: StepContext): Promise<ClusterModel> {
  return loadClusterSpec(path.resolve(ctx.options.repoDir, ctx.options.clusterPath), specLoadOptions(ctx.options));
}

export interface EksDeleteTarget {
  model?: EksClusterModel;
  clusterName: string;
  eksClusterName: string;
  region: string;
  status?: EksControlPlaneStatus;
}

/** The EKS cluster to delete; undefined when the spec is of another provider (nothing to do). */
export async function loadEksForDelete(ctx: StepContext, step: string): Promise<EksDeleteTarget | undefined> {
  const { params } = ctx.options;
  const fallbackRegion = params.region || ctx.aws.defaultRegion;
  let model: ClusterModel;
  try {
    model = await loadEksCluster(ctx);
  } catch (err) {
    if (!(isCapflowError(err) && err.code === 'SPEC_DIR_NOT_FOUND')) throw err;
    if (!params['cluster-name']) {
      throw new InputError('SPEC_DIR_NOT_FOUND', `${err.message}; to delete a cluster whose folder is gone, pass -p cluster-name=NAME -p region=REGION`, { cause: err });
    }
    const clusterName = params['cluster-name'];
    const status = await readStepStatus<EksControlPlaneStatus>(ctx.secrets, clusterName, EKS_CONTROL_PLANE_STEP);
    ctx.log.warn('Cluster folder is gone; deleting by cluster name', { clusterName, region: status?.region ?? fallbackRegion });
    return { clusterName, eksClusterName: status?.eksClusterName ?? clusterName, region: status?.region ?? fallbackRegion, ...(status ? { status } : {}) };
  }
  if (!isEksCluster(model)) {
    ctx.log.info(`Cluster ${model.name} is a ${model.provider} cluster, not EKS: ${step} has nothing to delete`);
    return undefined;
  }
  const status = await readStepStatus<EksControlPlaneStatus>(ctx.secrets, model.name, EKS_CONTROL_PLANE_STEP);
  return { model, clusterName: model.name, eksClusterName: eksClusterNameOf(model), region: regionOf(model, fallbackRegion), ...(status ? { status } : {}) };
}

/**
 * Renews `<cluster>-kubeconfig`'s token when it has less than ten minutes left: a step after
 * eks-control-plane (install-addons) may start long after it (node groups take minutes), and EKS
 * refuses a token 15 minutes after it was signed.
 */
export async function refreshEksKubeconfig(ctx: StepContext, model: EksClusterModel): Promise<void> {
  const status = await readStepStatus<EksControlPlaneStatus>(ctx.secrets, model.name, EKS_CONTROL_PLANE_STEP);
  if (!status) return;
  const eks = ctx.aws.get(EKSClient, status.region);
  const action = await writeEksKubeconfigs(
    ctx.secrets,
    { clusterName: model.name, eksClusterName: status.eksClusterName, region: status.region, endpoint: status.endpoint, certificateAuthorityData: status.certificateAuthorityData },
    () => eks.config.credentials(),
  );
  if (action !== 'kept') ctx.log.info(`EKS kubeconfig token ${action}`, { cluster: model.name });
}
