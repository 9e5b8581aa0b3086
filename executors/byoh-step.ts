/**
 * What the bring-your-own-host steps share: narrowing the spec to a BYOH cluster, the SSH settings
 * every one of them takes, and loading for --delete (which works when the folder is gone and makes
 * no SSH connection for a cluster that holds no host, so cluster-delete can run the BYOH steps on
 * any cluster).
 */
import path from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import type { StepContext } from '../src/core/executor.js';
import { InputError, isCapflowError } from '../src/core/errors.js';
import { mapLimit } from '../src/core/concurrency.js';
import { readStepStatus } from '../src/core/status.js';
import { CONTROL_PLANE_GROUP } from '../src/bootstrap/machine-data.js';
import { workloadKubeConfig } from '../src/bootstrap/workload.js';
import type { HostClaim } from '../src/hosts/claims.js';
import { HostConnections, sshPrivateKey } from '../src/hosts/inventory.js';
import { retireHost } from '../src/hosts/retire.js';
import type { SshOptions, SshTarget } from '../src/hosts/ssh.js';
import { loadClusterSpec, type ByoCluster, type ClusterModel, type KubeadmControlPlane } from '../src/spec/index.js';
import { DURATION_PATTERN, parseDuration, specLoadOptions } from './aws-step.js';

export type ByohClusterModel = ClusterModel & { infrastructure: ByoCluster; controlPlane: KubeadmControlPlane };

export const PREPARE_HOSTS_STEP = 'prepare-hosts';

/** Input-schema properties of every step that reaches hosts over SSH. */
export const SSH_PARAMS = {
  'connect-timeout': { type: 'string', pattern: DURATION_PATTERN, description: 'how long an SSH connection may take, jump host included (default 20s)' },
  'command-timeout': { type: 'string', pattern: DURATION_PATTERN, description: 'how long one command on a host may run (default 15m)' },
  parallelism: { type: 'string', pattern: '^[1-9][0-9]{0,2}$', description: 'hosts worked on at once (default 10)' },
} as const;

export function isByohCluster(model: ClusterModel): model is ByohClusterModel {
  return model.infrastructure.kind === 'ByoCluster' && model.controlPlane.kind === 'KubeadmControlPlane';
}

export function requireByohCluster(model: ClusterModel, step: string): asserts model is ByohClusterModel {
  if (!isByohCluster(model)) {
    throw new InputError('PROVIDER_NOT_BYOH', `cluster ${model.name} is a ${model.provider} cluster; ${step} works on a bring-your-own-host cluster (ByoCluster + KubeadmControlPlane)`);
  }
}

export interface PreparedHost {
  host: string;
  group: string;
  /** The host's name as its kubelet registers it. */
  node: string;
  /** Its default-route interface (kube-vip's default). */
  iface?: string;
  target: SshTarget;
}

/** What prepare-hosts leaves for the steps after it and for teardown (which may run without the folder). */
export interface PreparedHostsStatus {
  revision: string;
  /** node: the host's name as its kubelet registers it; iface: its default-route interface (kube-vip's default). */
  hosts: PreparedHost[];
  /** Hosts the spec let go, kept until join-workers drained, reset and released them (they may be gone from the inventory). */
  leaving?: PreparedHost[];
  jumpHost?: SshTarget;
  sshKeySecretRef?: { name: string; key?: string };
}

/** The prepared hosts, or BYOH_HOSTS_MISSING: the steps after prepare-hosts need them. */
export async function requirePreparedHosts(ctx: StepContext, clusterName: string): Promise<PreparedHostsStatus> {
  const status = await readStepStatus<PreparedHostsStatus>(ctx.secrets, clusterName, PREPARE_HOSTS_STEP);
  if (!status) throw new InputError('BYOH_HOSTS_MISSING', `cluster ${clusterName} has no prepared hosts yet`, { hint: 'run prepare-hosts first' });
  return status;
}

/** SSH settings from the step's parameters and the inventory's key. */
export async function byohSshOptions(ctx: StepContext, clusterName: string, inventory: { spec: { sshKeySecretRef?: { name: string; key?: string } } } | undefined, jumpHost: SshTarget | undefined, keyRef = inventory?.spec.sshKeySecretRef): Promise<SshOptions> {
  const p = ctx.options.params;
  const connectTimeoutMs = parseDuration(p['connect-timeout'], 'connect-timeout');
  const commandTimeoutMs = parseDuration(p['command-timeout'], 'command-timeout');
  return {
    privateKey: await sshPrivateKey(ctx.secrets, keyRef, clusterName),
    log: ctx.log,
    signal: ctx.signal,
    ...(jumpHost ? { jumpHost } : {}),
    ...(connectTimeoutMs ? { connectTimeoutMs } : {}),
    ...(commandTimeoutMs ? { commandTimeoutMs } : {}),
  };
}

/** The cluster's name for --delete: from the folder when it is there, else the cluster-name parameter. */
export async function loadByohForDelete(ctx: StepContext): Promise<{ model?: ByohClusterModel; clusterName: string }> {
  const { repoDir, clusterPath, params } = ctx.options;
  try {
    const model = await loadClusterSpec(path.resolve(repoDir, clusterPath), specLoadOptions(ctx.options));
    return isByohCluster(model) ? { model, clusterName: model.name } : { clusterName: model.name };
  } catch (err) {
    if (!(isCapflowError(err) && err.code === 'SPEC_DIR_NOT_FOUND')) throw err;
    if (!params['cluster-name']) throw new InputError('SPEC_DIR_NOT_FOUND', `${err.message}; to delete a cluster whose folder is gone, pass -p cluster-name=NAME`, { cause: err });
    return { clusterName: params['cluster-name'] };
  }
}

/**
 * Hosts leave the cluster: drained, reset, released; workers first (in parallel), control planes
 * last, one at a time (each reset takes its etcd member out). Returns the commands run.
 */
export async function retireClaims(ctx: StepContext, clusterName: string, claims: HostClaim[], status: PreparedHostsStatus | undefined, o: { drainMustSucceed: boolean; parallelism: number; drainTimeoutMs?: number }): Promise<{ mutating: number; read: number }> {
  if (claims.length === 0) return { mutating: 0, read: 0 };
  const byHost = new Map([...(status?.leaving ?? []), ...(status?.hosts ?? [])].map((h) => [h.host, h]));
  const missing = claims.filter((c) => !byHost.get(c.host));
  if (missing.length > 0) throw new InputError('BYOH_HOST_UNKNOWN', `cluster ${clusterName}: no connection details for ${missing.map((c) => c.host).join(', ')} (prepare-hosts' status is gone)`, { hint: 'run prepare-hosts on the cluster folder first, or reset the hosts by hand and delete their claims (capflow-host-* secrets)' });
  const connections = new HostConnections(await byohSshOptions(ctx, clusterName, undefined, status?.jumpHost, status?.sshKeySecretRef));
  let core: CoreV1Api | undefined;
  try {
    core = (await workloadKubeConfig(ctx.secrets, clusterName)).makeApiClient(CoreV1Api);
  } catch {
    core = undefined;
  }
  const retire = (c: HostClaim) => {
    const h = byHost.get(c.host)!;
    return retireHost(c, h.node, () => connections.get(h.target), { store: ctx.secrets, core, log: ctx.log, signal: ctx.signal, drainMustSucceed: o.drainMustSucceed, drainTimeoutMs: o.drainTimeoutMs ?? 60_000 });
  };
  try {
    await mapLimit(claims.filter((c) => c.group !== CONTROL_PLANE_GROUP), o.parallelism, retire);
    for (const c of claims.filter((c) => c.group === CONTROL_PLANE_GROUP)) await retire(c);
    return await connections.counts();
  } finally {
    await connections.closeAll();
  }
}
