/**
 * The EKS control plane: created with its role, subnets, endpoint access,
 * logging, secrets encryption and access mode; then kept to the spec one EKS
 * update at a time (EKS refuses a second while one runs): the version first,
 * one minor per update, then endpoint access, logging and the access mode.
 * Every wait reports the state and how long it has lasted (CREATING 6m12s).
 * The cluster's name is unique in its region, so a rerun after a crash finds
 * the cluster made before it, and nothing is ever made twice.
 */
import {
  CreateClusterCommand,
  DeleteClusterCommand,
  DescribeClusterCommand,
  DescribeUpdateCommand,
  ListNodegroupsCommand,
  UpdateClusterConfigCommand,
  UpdateClusterVersionCommand,
  type Cluster,
  type LogType,
  type Update,
} from '@aws-sdk/client-eks';
import { ConflictError, TransientError } from '../core/errors.js';
import { awsErrorName } from './find.js';
import { elapsed, eksMinor, eksOwnedTags, listAll, minorDistance, type EksScope } from './eks-scope.js';
import { ownershipOf, adoptHint } from './tags.js';
import { waitFor } from './wait.js';

export const EKS_LOG_TYPES: readonly LogType[] = ['api', 'audit', 'authenticator', 'controllerManager', 'scheduler'];

export type AuthenticationMode = 'CONFIG_MAP' | 'API_AND_CONFIG_MAP' | 'API';

export interface DesiredEksCluster {
  /** Minor version, 1.31. */
  version: string;
  roleArn: string;
  subnetIds: string[];
  securityGroupIds: string[];
  endpointPublic: boolean;
  endpointPrivate: boolean;
  publicCidrs: string[];
  /** Log types to enable; the others are disabled. */
  logging: LogType[];
  serviceCidr?: string;
  encryption?: { keyArn: string; resources: string[] };
  authenticationMode: AuthenticationMode;
  bootstrapClusterCreatorAdminPermissions: boolean;
  bootstrapSelfManagedAddons: boolean;
  upgradePolicy?: 'STANDARD' | 'EXTENDED';
}

/** A version change the control plane cannot make (more than one minor, or down): the step's caller locates it in the spec. */
export class VersionSkewError extends Error {
  constructor(
    readonly current: string,
    readonly desired: string,
  ) {
    super(
      minorDistance(current, desired) < 0
        ? `EKS cannot downgrade the control plane from ${current} to ${desired}`
        : `the control plane runs ${current}; EKS upgrades one minor version at a time, so ${desired} must wait for ${eksMinor(current).split('.')[0]}.${Number(eksMinor(current).split('.')[1]) + 1}`,
    );
  }
}

export async function describeEksCluster(scope: EksScope): Promise<Cluster | undefined> {
  try {
    return (await scope.eks.send(new DescribeClusterCommand({ name: scope.eksClusterName }))).cluster;
  } catch (err) {
    if (awsErrorName(err) === 'ResourceNotFoundException') return undefined;
    throw err;
  }
}

/** Waits until `poll` says done, logging the state whenever it changes and every minute. A failed state ends the wait at once. */
export async function waitState<T>(scope: EksScope, what: string, poll: () => Promise<{ state: string; done?: T; failed?: string }>): Promise<T> {
  const since = Date.now();
  let lastState = '';
  let lastLog = 0;
  const end = await waitFor<{ done: T } | { failed: string }>(
    async () => {
      const r = await poll();
      if (r.state !== lastState || Date.now() - lastLog >= 60_000) {
        scope.log.info(`${what}: ${r.state} ${elapsed(since)}`);
        lastState = r.state;
        lastLog = Date.now();
      }
      if (r.failed !== undefined) return { failed: r.failed };
      return r.done !== undefined ? { done: r.done } : undefined;
    },
    // The first looks come soon (an addon settles in seconds), then every pollMs (a cluster takes minutes).
    { description: what, timeoutMs: scope.eksWaitMs, minDelayMs: Math.min(1000, scope.pollMs), maxDelayMs: scope.pollMs, signal: scope.signal },
  );
  if ('failed' in end) throw new ConflictError('EKS_FAILED', `${what}: ${end.failed}`);
  return end.done;
}

async function waitActive(scope: EksScope): Promise<Cluster> {
  return waitState(scope, `EKS cluster ${scope.eksClusterName}`, async () => {
    const c = await describeEksCluster(scope);
    if (!c) return { state: 'NOT FOUND' };
    if (c.status === 'FAILED') return { state: 'FAILED', failed: 'the cluster is FAILED; see its health in the EKS console, delete it and run again' };
    return { state: c.status ?? 'UNKNOWN', ...(c.status === 'ACTIVE' ? { done: c } : {}) };
  });
}

/** Waits for one update of the cluster (or of a node group or addon) to end; Failed and Cancelled are conflicts. */
export async function waitUpdate(scope: EksScope, update: Update, target: { nodegroupName?: string; addonName?: string } = {}): Promise<void> {
  // EKS answers some updates (a scaling change) as already Successful: nothing to wait for.
  if (update.status === 'Successful') return;
  const what = `EKS ${update.type ?? 'update'} ${update.id} of ${target.nodegroupName ? `node group ${target.nodegroupName}` : target.addonName ? `addon ${target.addonName}` : `cluster ${scope.eksClusterName}`}`;
  await waitState(scope, what, async () => {
    const u = (await scope.eks.send(new DescribeUpdateCommand({ name: scope.eksClusterName, updateId: update.id!, ...target }))).update;
    const status = u?.status ?? 'Unknown';
    if (status === 'Failed' || status === 'Cancelled') {
      return { state: status, failed: `${status}: ${(u?.errors ?? []).map((e) => `${e.errorCode}: ${e.errorMessage}`).join('; ') || 'no reason given'}` };
    }
    return { state: status, ...(status === 'Successful' ? { done: true } : {}) };
  });
}

function loggingOf(types: readonly LogType[]) {
  const off = EKS_LOG_TYPES.filter((t) => !types.includes(t));
  return {
    clusterLogging: [
      ...(types.length ? [{ types: [...types], enabled: true }] : []),
      ...(off.length ? [{ types: off, enabled: false }] : []),
    ],
  };
}

function enabledLogs(c: Cluster): LogType[] {
  return (c.logging?.clusterLogging ?? []).filter((l) => l.enabled).flatMap((l) => l.types ?? []);
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

/** Makes the control plane match; returns it ACTIVE (or, in a dry run, as it is). */
export async function reconcileEksCluster(scope: EksScope, desired: DesiredEksCluster): Promise<Cluster | undefined> {
  const name = scope.eksClusterName;
  let cluster = await describeEksCluster(scope);
  if (cluster && ownershipOf(cluster.tags ?? {}, scope.clusterName) !== 'owned') {
    throw new ConflictError('AWS_NOT_OWNED', `EKS cluster ${name} exists in ${scope.region} but is not owned by cluster ${scope.clusterName}`, { hint: adoptHint('EKS cluster', name, scope.clusterName) });
  }
  if (cluster?.status === 'DELETING') {
    throw new TransientError('EKS_CLUSTER_DELETING', `EKS cluster ${name} is still being deleted; it can be made again once it is gone`);
  }
  if (!cluster) {
    scope.plan.record({ resource: 'eks-cluster', name, action: 'create', detail: `Kubernetes ${desired.version}` });
    if (scope.dryRun) return undefined;
    try {
      await scope.eks.send(
        new CreateClusterCommand({
          name,
          version: desired.version,
          roleArn: desired.roleArn,
          resourcesVpcConfig: {
            subnetIds: desired.subnetIds,
            securityGroupIds: desired.securityGroupIds,
            endpointPublicAccess: desired.endpointPublic,
            endpointPrivateAccess: desired.endpointPrivate,
            ...(desired.endpointPublic && desired.publicCidrs.length ? { publicAccessCidrs: desired.publicCidrs } : {}),
          },
          ...(desired.serviceCidr ? { kubernetesNetworkConfig: { serviceIpv4Cidr: desired.serviceCidr } } : {}),
          logging: loggingOf(desired.logging),
          ...(desired.encryption ? { encryptionConfig: [{ provider: { keyArn: desired.encryption.keyArn }, resources: desired.encryption.resources }] } : {}),
          accessConfig: { authenticationMode: desired.authenticationMode, bootstrapClusterCreatorAdminPermissions: desired.bootstrapClusterCreatorAdminPermissions },
          bootstrapSelfManagedAddons: desired.bootstrapSelfManagedAddons,
          ...(desired.upgradePolicy ? { upgradePolicy: { supportType: desired.upgradePolicy } } : {}),
          tags: eksOwnedTags(scope, 'eks-control-plane', name),
        }),
      );
      scope.log.info('Creating EKS cluster', { eksCluster: name, version: desired.version });
    } catch (err) {
      // Made by a run that crashed before hearing the answer: take it as ours (its tags say so below).
      if (awsErrorName(err) !== 'ResourceInUseException') throw err;
    }
    cluster = await waitActive(scope);
    if (ownershipOf(cluster.tags ?? {}, scope.clusterName) !== 'owned') {
      throw new ConflictError('AWS_NOT_OWNED', `EKS cluster ${name} was made by someone else meanwhile`, { hint: adoptHint('EKS cluster', name, scope.clusterName) });
    }
    return cluster;
  }

  // An update still running (a crashed run's, or someone's): let it end first.
  if (cluster.status !== 'ACTIVE' && !scope.dryRun) cluster = await waitActive(scope);

  const changes: string[] = [];
  const current = eksMinor(cluster.version ?? '');
  const step = minorDistance(current, desired.version);
  if (step < 0 || step > 1) throw new VersionSkewError(current, desired.version);
  if (step === 1) changes.push(`version ${current} -> ${desired.version}`);

  const vpc = cluster.resourcesVpcConfig ?? {};
  const cidrs = desired.endpointPublic ? (desired.publicCidrs.length ? desired.publicCidrs : ['0.0.0.0/0']) : (vpc.publicAccessCidrs ?? []);
  const endpointChanged =
    vpc.endpointPublicAccess !== desired.endpointPublic || vpc.endpointPrivateAccess !== desired.endpointPrivate || (desired.endpointPublic && !sameSet(vpc.publicAccessCidrs ?? ['0.0.0.0/0'], cidrs));
  if (endpointChanged) changes.push(`endpoint public=${desired.endpointPublic} private=${desired.endpointPrivate}${desired.endpointPublic ? ` from ${cidrs.join(',')}` : ''}`);
  const loggingChanged = !sameSet(enabledLogs(cluster), desired.logging);
  if (loggingChanged) changes.push(`logging [${desired.logging.join(', ')}]`);
  const mode = cluster.accessConfig?.authenticationMode;
  const modeChanged = mode !== undefined && mode !== desired.authenticationMode;
  if (modeChanged) {
    // EKS moves CONFIG_MAP -> API_AND_CONFIG_MAP -> API only, never back.
    const order: AuthenticationMode[] = ['CONFIG_MAP', 'API_AND_CONFIG_MAP', 'API'];
    if (order.indexOf(desired.authenticationMode) < order.indexOf(mode)) {
      throw new ConflictError('EKS_ACCESS_MODE_BACKWARDS', `EKS cluster ${name} uses authentication mode ${mode}; EKS cannot go back to ${desired.authenticationMode}`, { hint: 'set spec.accessConfig.authenticationMode to its current value or later' });
    }
    changes.push(`authentication mode ${mode} -> ${desired.authenticationMode}`);
  }
  scope.plan.record({ resource: 'eks-cluster', name, id: cluster.arn!, action: changes.length ? 'update' : 'no-change', ...(changes.length ? { detail: changes.join('; ') } : {}) });
  if (scope.dryRun || changes.length === 0) return cluster;

  const run = async (what: string, send: () => Promise<Update | undefined>) => {
    scope.log.info(`Updating EKS cluster ${name}: ${what}`);
    const update = await send();
    if (update) await waitUpdate(scope, update);
    cluster = await waitActive(scope);
  };
  if (step === 1) {
    await run(`version ${current} -> ${desired.version}`, async () => (await scope.eks.send(new UpdateClusterVersionCommand({ name, version: desired.version }))).update);
  }
  if (endpointChanged) {
    await run('endpoint access', async () =>
      (
        await scope.eks.send(
          new UpdateClusterConfigCommand({
            name,
            resourcesVpcConfig: { endpointPublicAccess: desired.endpointPublic, endpointPrivateAccess: desired.endpointPrivate, ...(desired.endpointPublic ? { publicAccessCidrs: cidrs } : {}) },
          }),
        )
      ).update,
    );
  }
  if (loggingChanged) {
    await run('logging', async () => (await scope.eks.send(new UpdateClusterConfigCommand({ name, logging: loggingOf(desired.logging) }))).update);
  }
  if (modeChanged) {
    await run('authentication mode', async () => (await scope.eks.send(new UpdateClusterConfigCommand({ name, accessConfig: { authenticationMode: desired.authenticationMode } }))).update);
  }
  return cluster;
}

/** Node groups still attached to the cluster (EKS refuses to delete a cluster that has any). */
export function listNodegroups(scope: EksScope): Promise<string[]> {
  return listAll(async (nextToken) => {
    const page = await scope.eks.send(new ListNodegroupsCommand({ clusterName: scope.eksClusterName, ...(nextToken ? { nextToken } : {}) }));
    return { items: page.nodegroups, nextToken: page.nextToken };
  });
}

/** Deletes the control plane capflow owns and waits until EKS has forgotten it. */
export async function deleteEksCluster(scope: EksScope): Promise<void> {
  const name = scope.eksClusterName;
  const cluster = await describeEksCluster(scope);
  if (!cluster) return;
  if (ownershipOf(cluster.tags ?? {}, scope.clusterName) !== 'owned') {
    scope.plan.record({ resource: 'eks-cluster', name, id: cluster.arn!, action: 'skip', detail: 'not owned: never deleted' });
    return;
  }
  scope.plan.record({ resource: 'eks-cluster', name, id: cluster.arn!, action: 'delete' });
  if (scope.dryRun) return;
  if (cluster.status !== 'DELETING') {
    const groups = await listNodegroups(scope);
    if (groups.length > 0) {
      throw new TransientError('EKS_NODEGROUPS_REMAIN', `EKS cluster ${name} still has node groups (${groups.join(', ')}); EKS deletes a cluster only once they are gone`, {
        hint: 'cluster-delete runs eks-node-groups --delete first; run it, or wait for their deletion to end',
      });
    }
    try {
      await scope.eks.send(new DeleteClusterCommand({ name }));
      scope.log.info('Deleting EKS cluster', { eksCluster: name });
    } catch (err) {
      if (awsErrorName(err) !== 'ResourceNotFoundException') throw err;
    }
  }
  await waitState(scope, `EKS cluster ${name} deletion`, async () => {
    const c = await describeEksCluster(scope);
    return c ? { state: c.status ?? 'UNKNOWN' } : { state: 'DELETED', done: true };
  });
}
