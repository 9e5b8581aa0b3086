/**
 * launch-nodes: makes the cluster's machines (the KubeadmControlPlane's and every
 * MachineDeployment's) match the spec as EC2 instances in the network provision-vpc made: launched
 * in batches per group and AZ, spread over the failure domains, control plane machines registered
 * with the API load balancer, scaled and rolled (maxSurge / maxUnavailable) in rounds within one
 * run. With --delete it terminates every machine the cluster owns. User data comes from the
 * bootstrap secret (`capflow-<cluster>-bootstrap`, one key per group) that kubeadm-init writes.
 * Outputs the machine inventory, also kept in the status secret under `launch-nodes`.
 */
import path from 'node:path';
import type { Executor, StepContext } from '../src/core/executor.js';
import { DELETE_TARGET_PARAMS, DURATION_PATTERN, loadAwsClusterForDelete, parseDuration, specLoadOptions } from './aws-step.js';
import { InputError } from '../src/core/errors.js';
import { readStepStatus, removeStepStatus, writeStepStatus } from '../src/core/status.js';
import { makeScope, type ClusterScope } from '../src/aws/index.js';
import type { Machine } from '../src/aws/instances.js';
import type { RefreshState } from '../src/aws/machine-pools.js';
import { deleteClusterMachines, desiredGroups, formatInventory, reconcileClusterMachines } from '../src/aws/machines.js';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { loadClusterSpec } from '../src/spec/index.js';
import type { ProvisionVpcStatus } from './provision-vpc.js';

export const STEP_ID = 'launch-nodes';

/** Pools whose instance refresh is owed, kept in the status secret so a crash cannot lose it. */
function poolRefreshState(ctx: StepContext, clusterName: string): RefreshState {
  const key = 'machine-pool-refresh';
  const read = async () => new Set((await readStepStatus<string[]>(ctx.secrets, clusterName, key)) ?? []);
  return {
    pending: async (pool) => (await read()).has(pool),
    set: async (pool, pending) => {
      const owed = await read();
      if (owed.has(pool) === pending) return;
      if (pending) owed.add(pool);
      else owed.delete(pool);
      if (owed.size > 0) await writeStepStatus(ctx.secrets, clusterName, key, [...owed].sort());
      else await removeStepStatus(ctx.secrets, clusterName, key);
    },
  };
}

export function bootstrapSecretName(clusterName: string): string {
  return `capflow-${clusterName}-bootstrap`;
}

/** A machine in the outputs and the status secret. */
export type MachineRecord = Omit<Machine, 'slot' | 'launchTime'>;

export interface LaunchNodesStatus {
  revision: string;
  region: string;
  machines: MachineRecord[];
}


function scopeFor(ctx: StepContext, clusterName: string, region: string, additionalTags?: Record<string, string>): ClusterScope {
  const timeout = parseDuration(ctx.options.params['instance-timeout'], 'instance-timeout');
  return makeScope(
    ctx.aws,
    { clusterName, region, revision: ctx.options.revision, specPath: ctx.options.clusterPath, ...(additionalTags ? { additionalTags } : {}) },
    { log: ctx.log, dryRun: ctx.options.dryRun, signal: ctx.signal, timeouts: timeout !== undefined ? { instanceMs: timeout } : {} },
  );
}

const record = (m: Machine): MachineRecord => ({
  name: m.name,
  instanceId: m.instanceId,
  privateIp: m.privateIp,
  privateDns: m.privateDns,
  az: m.az,
  role: m.role,
  group: m.group,
  state: m.state,
  templateHash: m.templateHash,
});


export interface LaunchNodesOptions {
  /** The drain hook, called before a machine is terminated (default: logs that join-workers drains). */
  beforeRemove?: (machine: Machine) => Promise<void>;
}

export function makeLaunchNodes(options: LaunchNodesOptions = {}): Executor {
  return {
    id: STEP_ID,
    description: 'Launch, scale and roll the cluster machines (control plane and MachineDeployments) as EC2 instances',
    supportsDelete: true,
    supportsDryRun: true,
    inputSchema: {
      type: 'object',
      additionalProperties: false,
      properties: {
        'instance-timeout': { type: 'string', pattern: DURATION_PATTERN, description: 'how long the rounds may wait for machines to run (e.g. 10m)' },
        'poll-interval': { type: 'string', pattern: DURATION_PATTERN, description: 'delay between rounds while machines are pending (default 2s)' },
        ...DELETE_TARGET_PARAMS,
      },
    },
    outputSchema: { type: 'object', additionalProperties: false, required: ['machines'], properties: { machines: { type: 'string' } } },
    async run(ctx) {
      const pollMs = parseDuration(ctx.options.params['poll-interval'], 'poll-interval');
      if (ctx.options.delete) {
        const { clusterName, region } = await loadAwsClusterForDelete(ctx);
        const vpc = await readStepStatus<ProvisionVpcStatus>(ctx.secrets, clusterName, 'provision-vpc');
        const scope = scopeFor(ctx, clusterName, region);
        const gone = await deleteClusterMachines(scope, ctx.aws.get(AutoScalingClient, region), { ...(vpc?.targetGroupArn ? { targetGroupArn: vpc.targetGroupArn } : {}), ...(pollMs !== undefined ? { pollMs } : {}) });
        if (ctx.options.dryRun) ctx.log.info(`Plan:\n${scope.plan.format()}`);
        else await removeStepStatus(ctx.secrets, clusterName, STEP_ID);
        return { outputs: { machines: '[]' }, summary: { plan: scope.plan.counts(), terminated: gone.length } };
      }

      const model = await loadClusterSpec(path.resolve(ctx.options.repoDir, ctx.options.clusterPath), specLoadOptions(ctx.options));
      if (model.infrastructure.kind !== 'AWSCluster' || model.controlPlane.kind !== 'KubeadmControlPlane') {
        throw new InputError('PROVIDER_NOT_AWS', `cluster ${model.name} is a ${model.provider} cluster; launch-nodes launches the machines of an AWS self-managed cluster (AWSCluster + KubeadmControlPlane)`);
      }
      const vpc = await readStepStatus<ProvisionVpcStatus>(ctx.secrets, model.name, 'provision-vpc');
      if (!vpc) {
        throw new InputError('NETWORK_MISSING', `cluster ${model.name} has no network in its status secret: run provision-vpc first`, { hint: 'capflow step provision-vpc --cluster-dir ...' });
      }
      // Checked before any AWS call: instance types, failure domains, rolling update parameters.
      const groups = desiredGroups(model, vpc);
      const region = model.infrastructure.spec.region ?? vpc.region ?? ctx.aws.defaultRegion;
      const scope = scopeFor(ctx, model.name, region, model.infrastructure.spec.additionalTags);
      const subnetsByAz: Record<string, string> = {};
      for (const s of vpc.subnets) if (!s.public && !subnetsByAz[s.az]) subnetsByAz[s.az] = s.id;

      const secretName = bootstrapSecretName(model.name);
      let bootstrap: Record<string, string> | undefined;
      const plainUserData = async (group: string): Promise<string> => {
        bootstrap ??= (await ctx.secrets.get(secretName)) ?? {};
        const data = bootstrap[group];
        if (data === undefined) {
          throw new InputError('BOOTSTRAP_MISSING', `no user data for ${group} in secret ${secretName}: the bootstrap step (kubeadm-init) must run first`, {
            hint: 'run the kubeadm-init step (it writes the bootstrap secret), then run launch-nodes again',
          });
        }
        return data;
      };
      const userData = async (group: string): Promise<string> => Buffer.from(await plainUserData(group), 'utf8').toString('base64');
      const subnetsByZone: Record<string, { public?: string; private?: string }> = {};
      for (const s of vpc.subnets) {
        const zone = (subnetsByZone[s.az] ??= {});
        if (s.public) zone.public ??= s.id;
        else zone.private ??= s.id;
      }
      const sshKeyName = model.infrastructure.spec.sshKeyName;

      const { machines, pools } = await reconcileClusterMachines(scope, ctx.aws.get(AutoScalingClient, region), {
        groups,
        pools: {
          pools: model.machinePools,
          kubernetesVersion: model.kubernetesVersion,
          subnetsByZone,
          nodeSecurityGroupId: vpc.securityGroupIds.node ?? '',
          userData: plainUserData,
          ...(sshKeyName ? { sshKeyName } : {}),
          refreshState: poolRefreshState(ctx, model.name),
        },
        network: { subnetsByAz, ...(vpc.targetGroupArn ? { targetGroupArn: vpc.targetGroupArn } : {}) },
        userData,
        ...(sshKeyName ? { sshKeyName } : {}),
        ...(options.beforeRemove ? { beforeRemove: options.beforeRemove } : {}),
        ...(pollMs !== undefined ? { pollMs } : {}),
      });
      const records = machines.map(record);
      if (ctx.options.dryRun) {
        ctx.log.info(`Plan:\n${scope.plan.format()}`);
      } else {
        ctx.log.info(`Machines:\n${formatInventory(machines)}`);
        await writeStepStatus(ctx.secrets, model.name, STEP_ID, { revision: ctx.options.revision, region, machines: records } satisfies LaunchNodesStatus);
      }
      return { outputs: { machines: JSON.stringify(records) }, summary: { plan: scope.plan.counts(), machines: records.length, machinePools: pools.length } };
    },
  };
}

export const launchNodes: Executor = makeLaunchNodes();
