/**
 * launch-nodes: makes the cluster's machines (the KubeadmControlPlane's, every MachineDeployment's
 * and MachinePool's) match the spec as EC2 instances in the network provision-vpc made: launched in
 * batches per group and AZ, spread over the failure domains, control plane machines registered with
 * the API load balancer, scaled and rolled (maxSurge / maxUnavailable) in rounds within one run.
 * Once kubeadm-init made the API server, machines join with the session's bootstrap data, control
 * planes one at a time, and a machine counts as available when its Node is Ready; Nodes are drained
 * before their machine goes, a control plane's etcd member removed. An upgrade (a new version) moves
 * the cluster's kubeadm version, replaces the control planes one at a time, new first, then the
 * workers by their strategy. A group's hand-made user data in `capflow-<cluster>-bootstrap` wins.
 * With --delete it terminates every machine the cluster owns. Outputs the machine inventory (also
 * in the status secret under `launch-nodes`) and the number of changes.
 *
 * On an EKS cluster (AWSManagedControlPlane) the step makes the MachinePools whose infrastructure is
 * an AWSMachinePool (bootstrap: EKSConfig) as Auto Scaling groups of EKS nodes, their user data
 * rendered from the EKSConfig against the cluster eks-control-plane made (its status entry; without
 * it the step stops with CONTROL_PLANE_MISSING). AWSManagedMachinePools (managed node groups) are
 * another step's and left alone.
 */
import path from 'node:path';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Executor, StepContext } from '../src/core/executor.js';
import { InputError } from '../src/core/errors.js';
import { readStepStatus, removeStepStatus, writeStepStatus } from '../src/core/status.js';
import { Plan, makeScope, type ClusterScope } from '../src/aws/index.js';
import type { Machine } from '../src/aws/instances.js';
import { reconcileMachinePools, type RefreshState } from '../src/aws/machine-pools.js';
import { describeGroupProvenance, type Provenance } from '../src/aws/provenance.js';
import { EKS_NODE_INSTANCE_PROFILE } from '../src/aws/iam-roles.js';
import { renderEksUserData } from '../src/bootstrap/eks-user-data.js';
import { deleteClusterMachines, desiredGroups, formatInventory, reconcileClusterMachines } from '../src/aws/machines.js';
import { clusterSecretName } from '../src/bootstrap/pki.js';
import { BootstrapSession } from '../src/bootstrap/session.js';
import { fieldLocation, healthCheckRules, loadClusterSpec, type AWSMachinePool, type AWSManagedControlPlane, type ClusterModel } from '../src/spec/index.js';
import { judgeHealth, type HealthVerdict, type Locate } from '../src/aws/machine-health.js';
import type { StepResult } from '../src/core/executor.js';
import { k8sClusterTag } from '../src/aws/tags.js';
import {
  DELETE_TARGET_PARAMS,
  DURATION_PATTERN,
  bootstrapSecretName,
  forgetDrift,
  loadAwsClusterForDelete,
  parseDuration,
  requireKubeadmAwsCluster,
  recordDrift,
  requireNetwork,
  specLoadOptions,
  type EksControlPlaneStatus,
} from './aws-step.js';
import type { ProvisionVpcStatus } from './provision-vpc.js';

export const STEP_ID = 'launch-nodes';
/** The status entry eks-control-plane writes. */
export const EKS_CONTROL_PLANE_STATUS = 'eks-control-plane';

/**
 * The cluster's bootstrap when its API server exists (kubeadm-init wrote the kubeconfig): join data,
 * Node readiness for the rounds and the drain before a machine goes. Undefined before that.
 */
async function bootstrapSessionFor(ctx: StepContext, model: ClusterModel, scope: ClusterScope, vpc: ProvisionVpcStatus, options: LaunchNodesOptions): Promise<BootstrapSession | undefined> {
  if (!(await ctx.secrets.get(clusterSecretName(model.name, 'kubeconfig')))) return undefined;
  const drainTimeoutMs = parseDuration(ctx.options.params['drain-timeout'], 'drain-timeout');
  return new BootstrapSession({
    store: ctx.secrets,
    model,
    scope,
    secretsManager: ctx.aws.get(SecretsManagerClient, scope.region),
    apiServerDns: vpc.apiServerDns,
    log: ctx.log,
    ...((drainTimeoutMs ?? options.drainTimeoutMs) !== undefined ? { drainTimeoutMs: drainTimeoutMs ?? options.drainTimeoutMs } : {}),
  });
}

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

/** Plan entries that create, update or delete: cluster-plan sums them as drift. */
function changesOf(scope: ClusterScope): string {
  const c = scope.plan.counts();
  return String(c.create + c.update + c.delete);
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
    { log: ctx.log, dryRun: ctx.options.dryRun, signal: ctx.signal, checkpoint: ctx.checkpoint, timeouts: timeout !== undefined ? { instanceMs: timeout } : {} },
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
  /** The drain hook, called before a machine is terminated (default: the Node drained and deleted once the cluster has an API server). */
  beforeRemove?: (machine: Machine) => Promise<void>;
  drainTimeoutMs?: number;
  /** MachineHealthCheck verdicts (default: the spec's checks judged on the workload cluster's Nodes, once it has an API server). */
  health?: (live: readonly Machine[]) => Promise<HealthVerdict | undefined>;
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
        'drain-timeout': { type: 'string', pattern: DURATION_PATTERN, description: 'how long a Node may take to drain before its machine goes (default 5m)' },
        ...DELETE_TARGET_PARAMS,
      },
    },
    outputSchema: { type: 'object', additionalProperties: false, required: ['machines', 'changes'], properties: { machines: { type: 'string' }, changes: { type: 'string' } } },
    async run(ctx) {
      const pollMs = parseDuration(ctx.options.params['poll-interval'], 'poll-interval');
      if (ctx.options.delete) {
        const { clusterName, region, notAws } = await loadAwsClusterForDelete(ctx);
        if (notAws) {
          ctx.log.info(`Cluster ${clusterName} has bring-your-own hosts, no AWS machines: nothing to delete`);
          return { outputs: { machines: '[]', changes: '0' } };
        }
        const vpc = await readStepStatus<ProvisionVpcStatus>(ctx.secrets, clusterName, 'provision-vpc');
        const scope = scopeFor(ctx, clusterName, region);
        const gone = await deleteClusterMachines(scope, ctx.aws.get(AutoScalingClient, region), { ...(vpc?.targetGroupArn ? { targetGroupArn: vpc.targetGroupArn } : {}), ...(pollMs !== undefined ? { pollMs } : {}) });
        if (ctx.options.dryRun) ctx.log.info(`Plan:\n${scope.plan.format()}`);
        else {
          await removeStepStatus(ctx.secrets, clusterName, STEP_ID);
          await forgetDrift(ctx, clusterName, STEP_ID);
        }
        return { outputs: { machines: '[]', changes: changesOf(scope) }, summary: { plan: scope.plan.counts(), terminated: gone.length } };
      }

      const model = await loadClusterSpec(path.resolve(ctx.options.repoDir, ctx.options.clusterPath), specLoadOptions(ctx.options));
      if (model.provider === 'eks' && model.controlPlane.kind === 'AWSManagedControlPlane') return runEksPools(ctx, model as ClusterModel & { controlPlane: AWSManagedControlPlane });
      requireKubeadmAwsCluster(model, STEP_ID);
      const known = await readStepStatus<ProvisionVpcStatus>(ctx.secrets, model.name, 'provision-vpc');
      if (!known && ctx.options.dryRun) {
        // cluster-plan of a cluster not made yet: every machine is to be made, after its network.
        const plan = new Plan();
        plan.record({ resource: 'machine', name: 'control-plane', action: 'create', detail: `${(model.controlPlane.spec as { replicas?: number }).replicas ?? 1} machines, once provision-vpc made the network` });
        for (const md of model.machineDeployments) plan.record({ resource: 'machine', name: md.deployment.metadata.name, action: 'create', detail: `${md.deployment.spec.replicas ?? 1} machines, once provision-vpc made the network` });
        ctx.log.info(`Plan:\n${plan.format()}`);
        const c = plan.counts();
        return { outputs: { machines: '[]', changes: String(c.create) }, summary: { plan: c } };
      }
      const vpc = known ?? (await requireNetwork(ctx, model.name));
      // Checked before any AWS call: instance types, failure domains, rolling update parameters.
      const specGroups = desiredGroups(model, vpc);
      const region = model.infrastructure.spec.region ?? vpc.region ?? ctx.aws.defaultRegion;
      const scope = scopeFor(ctx, model.name, region, model.infrastructure.spec.additionalTags);
      scope.plan.bind(model, path.resolve(ctx.options.repoDir));
      const subnetsByAz: Record<string, string> = {};
      for (const s of vpc.subnets) if (!s.public && !subnetsByAz[s.az]) subnetsByAz[s.az] = s.id;

      // User data: a group's hand-made entry in the bootstrap secret when there is one; else
      // rendered from its KubeadmConfig (the join data, its secret half in Secrets Manager).
      const secretName = bootstrapSecretName(model.name);
      const handMade = (await ctx.secrets.get(secretName)) ?? {};
      const kubeadm = await bootstrapSessionFor(ctx, model, scope, vpc, options);
      // Stacked etcd members join a healthy cluster only: control planes join one at a time.
      const groups = kubeadm ? specGroups.map((g) => (g.role === 'control-plane' ? { ...g, oneAtATime: true } : g)) : specGroups;
      // An upgrade moves the cluster's version first, so the control planes that replace the old
      // ones join at the new one (skew refused at the version's file:line).
      if (kubeadm) await kubeadm.ensureClusterVersion();
      const plainUserData = async (group: string): Promise<string> => {
        const data = handMade[group];
        if (data !== undefined) return data;
        if (!kubeadm) {
          throw new InputError('BOOTSTRAP_MISSING', `cluster ${model.name} has no API server yet (no ${clusterSecretName(model.name, 'kubeconfig')}), so ${group} cannot join`, {
            hint: 'run kubeadm-init first (or put hand-made user data under the key ' + group + ' of the secret ' + secretName + ')',
          });
        }
        return kubeadm.userData(group, BootstrapSession.joinRole(group));
      };
      const userData = async (group: string): Promise<string> => Buffer.from(await plainUserData(group), 'utf8').toString('base64');
      const subnetsByZone: Record<string, { public?: string; private?: string }> = {};
      for (const s of vpc.subnets) {
        const zone = (subnetsByZone[s.az] ??= {});
        if (s.public) zone.public ??= s.id;
        else zone.private ??= s.id;
      }
      const sshKeyName = model.infrastructure.spec.sshKeyName;

      await ctx.checkpoint('machines');
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
        ...(options.beforeRemove ? { beforeRemove: options.beforeRemove } : kubeadm ? { beforeRemove: (m: Machine) => kubeadm.removeNode(m) } : {}),
        ...(kubeadm ? { readyMachines: (live: readonly Machine[]) => kubeadm.readyMachines(live) } : {}),
        ...(options.health ? { health: options.health } : kubeadm ? healthOption(model, kubeadm, path.resolve(ctx.options.repoDir)) : {}),
        ...(pollMs !== undefined ? { pollMs } : {}),
      });
      const records = machines.map(record);
      if (ctx.options.dryRun) {
        ctx.log.info(`Plan:\n${scope.plan.format()}`);
      } else {
        ctx.log.info(`Machines:\n${formatInventory(machines)}`);
        await writeStepStatus(ctx.secrets, model.name, STEP_ID, { revision: ctx.options.revision, region, machines: records } satisfies LaunchNodesStatus);
      }
      await recordDrift(ctx, model.name, STEP_ID, scope, await poolProvenance(ctx, scope, region, pools.length));
      return { outputs: { machines: JSON.stringify(records), changes: changesOf(scope) }, summary: { plan: scope.plan.counts(), machines: records.length, machinePools: pools.length } };
    },
  };
}

export const launchNodes: Executor = makeLaunchNodes();

/**
 * The cluster's MachineHealthChecks (validated with the spec), judged each round on the Nodes of the
 * workload cluster: none when the spec has none, so a cluster without checks reads no more Nodes.
 */
function healthOption(model: ClusterModel, kubeadm: BootstrapSession, repoRoot: string): { health?: (live: readonly Machine[]) => Promise<HealthVerdict | undefined> } {
  const rules = healthCheckRules(model);
  if (rules.length === 0) return {};
  const locate: Locate = (ref) => {
    const loc = fieldLocation(model, ref, ref.path);
    if (!loc) return undefined;
    return `${loc.absPath ? path.relative(repoRoot, loc.absPath).split(path.sep).join('/') : loc.file}:${loc.line}`;
  };
  return {
    health: async (live) => {
      const nodes = await kubeadm.nodes();
      return nodes ? judgeHealth(rules, live, nodes, Date.now(), locate) : undefined;
    },
  };
}

/** A plan's provenance of the Auto Scaling groups (the EC2 families are provision-vpc's): which commit last wrote each. */
async function poolProvenance(ctx: StepContext, scope: ClusterScope, region: string, pools: number): Promise<Provenance | undefined> {
  return ctx.options.dryRun && pools > 0 ? describeGroupProvenance(scope, ctx.aws.get(AutoScalingClient, region)) : undefined;
}

type EksModel = ClusterModel & { controlPlane: AWSManagedControlPlane };
type AsgPool = ClusterModel['machinePools'][number] & { infrastructure: AWSMachinePool };

/** The EKS cluster eks-control-plane made, or CONTROL_PLANE_MISSING (exit 2: run that step first). */
async function requireEksControlPlane(ctx: StepContext, clusterName: string): Promise<EksControlPlaneStatus> {
  const eks = await readStepStatus<EksControlPlaneStatus>(ctx.secrets, clusterName, EKS_CONTROL_PLANE_STATUS);
  if (!eks?.endpoint || !eks.certificateAuthorityData || !eks.eksClusterName) {
    throw new InputError('CONTROL_PLANE_MISSING', `cluster ${clusterName} has no EKS control plane in its status secret: run eks-control-plane first`, {
      hint: 'capflow step eks-control-plane --cluster-dir ...',
    });
  }
  return eks;
}

/**
 * An EKS cluster's machine pools: each MachinePool + AWSMachinePool (+ EKSConfig) as a launch
 * template and an Auto Scaling group of EKS nodes, reusing the self-managed pools' reconcile
 * (machine-pools.ts) with the EKS node's user data, security groups, tags and instance profile.
 */
async function runEksPools(ctx: StepContext, model: EksModel): Promise<StepResult> {
  if (model.machineDeployments.length > 0) {
    const md = model.machineDeployments[0]!.deployment.metadata.name;
    throw new InputError('EKS_MACHINE_DEPLOYMENTS_UNSUPPORTED', `MachineDeployment/${md}: an EKS cluster's workers are machine pools here (MachinePool + AWSMachinePool + EKSConfig, or AWSManagedMachinePool)`, {
      hint: 'write the workers as a MachinePool',
    });
  }
  const pools = model.machinePools.filter((m): m is AsgPool => m.infrastructure.kind === 'AWSMachinePool');
  const vpcKnown = await readStepStatus<ProvisionVpcStatus>(ctx.secrets, model.name, 'provision-vpc');
  const eksKnown = await readStepStatus<EksControlPlaneStatus>(ctx.secrets, model.name, EKS_CONTROL_PLANE_STATUS);
  if ((!vpcKnown || !eksKnown) && ctx.options.dryRun) {
    // cluster-plan of a cluster not made yet: every pool is to be made, after the network and EKS.
    const plan = new Plan();
    for (const m of pools) plan.record({ resource: 'autoscaling-group', name: m.pool.metadata.name, action: 'create', detail: 'once provision-vpc and eks-control-plane made the network and the EKS cluster' });
    ctx.log.info(`Plan:\n${plan.format()}`);
    const c = plan.counts();
    return { outputs: { machines: '[]', changes: String(c.create) }, summary: { plan: c } };
  }
  const vpc = vpcKnown ?? (await requireNetwork(ctx, model.name));
  const eks = eksKnown?.endpoint ? eksKnown : await requireEksControlPlane(ctx, model.name);
  const cp = model.controlPlane.spec;
  const region = cp.region ?? eks.region ?? vpc.region ?? ctx.aws.defaultRegion;
  const additionalTags = cp.additionalTags as Record<string, string> | undefined;
  const scope = scopeFor(ctx, model.name, region, additionalTags);
  scope.plan.bind(model, path.resolve(ctx.options.repoDir));
  const subnetsByZone: Record<string, { public?: string; private?: string }> = {};
  for (const s of vpc.subnets) {
    const zone = (subnetsByZone[s.az] ??= {});
    if (s.public) zone.public ??= s.id;
    else zone.private ??= s.id;
  }

  // Every pool's user data first, so a spec the renderer refuses stops the run before any AWS call.
  // A pool's hand-made entry in the bootstrap secret wins, then its bootstrap data secret, then its EKSConfig.
  const handMade = (await ctx.secrets.get(bootstrapSecretName(model.name))) ?? {};
  const cluster = { name: eks.eksClusterName, endpoint: eks.endpoint, certificateAuthorityData: eks.certificateAuthorityData, serviceCidr: eks.serviceCidr };
  const userData = new Map<string, string>();
  for (const m of pools) {
    const name = m.pool.metadata.name;
    const dataSecret = m.pool.spec.template.spec.bootstrap.dataSecretName;
    const config = m.bootstrapConfig;
    let data = handMade[name] ?? (dataSecret ? (await ctx.secrets.get(dataSecret))?.value : undefined);
    if (data === undefined && config?.kind === 'EKSConfig') {
      data = await renderEksUserData({
        spec: config.spec,
        cluster,
        ...(m.infrastructure.spec.awsLaunchTemplate.ami?.eksLookupType ? { amiLookupType: m.infrastructure.spec.awsLaunchTemplate.ami.eksLookupType } : {}),
        origin: { kind: 'EKSConfig', name: config.metadata.name, path: ['spec'] },
        resolveSecret: async (ref) => (await ctx.secrets.get(ref.name))?.[ref.key],
      });
    }
    if (data === undefined) {
      throw new InputError('BOOTSTRAP_MISSING', `MachinePool/${name} has no bootstrap data: its bootstrap names no EKSConfig${dataSecret ? `, and the secret ${dataSecret} has no key value` : ''}`, {
        hint: `name an EKSConfig in spec.template.spec.bootstrap.configRef (or put hand-made user data under the key ${name} of the secret ${bootstrapSecretName(model.name)})`,
      });
    }
    userData.set(name, data);
  }

  const sg = vpc.securityGroupIds;
  // As the AWS provider gives EKS nodes: the node group (when provision-vpc made one), its EKS
  // additional group, and the security group EKS made for the cluster.
  const extraSecurityGroupIds = [sg['node-eks-additional'], eks.clusterSecurityGroupId].filter((id): id is string => !!id);
  await ctx.checkpoint('machine-pools');
  const results = await reconcileMachinePools(scope, ctx.aws.get(AutoScalingClient, region), {
    pools,
    kubernetesVersion: model.kubernetesVersion,
    subnetsByZone,
    nodeSecurityGroupId: sg.node ?? '',
    extraSecurityGroupIds,
    defaultInstanceProfile: EKS_NODE_INSTANCE_PROFILE,
    // EKS nodes must carry their cluster's tag under the EKS name (which may differ from the Cluster's).
    extraTags: { [k8sClusterTag(eks.eksClusterName)]: 'owned' },
    autoscalerClusterName: eks.eksClusterName,
    eks: true,
    userData: async (pool) => userData.get(pool) ?? '',
    ...(cp.sshKeyName ? { sshKeyName: cp.sshKeyName } : {}),
    refreshState: poolRefreshState(ctx, model.name),
  });
  if (ctx.options.dryRun) ctx.log.info(`Plan:\n${scope.plan.format()}`);
  else await writeStepStatus(ctx.secrets, model.name, STEP_ID, { revision: ctx.options.revision, region, machines: [] } satisfies LaunchNodesStatus);
  await recordDrift(ctx, model.name, STEP_ID, scope, await poolProvenance(ctx, scope, region, results.length));
  return {
    outputs: { machines: '[]', changes: changesOf(scope) },
    summary: { plan: scope.plan.counts(), machines: 0, machinePools: results.length, ...(pools.length < model.machinePools.length ? { managedNodeGroupsLeft: model.machinePools.length - pools.length } : {}) },
  };
}
