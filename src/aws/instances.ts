/**
 * Machines as EC2 instances: finding a cluster's machines (one filtered DescribeInstances for all
 * groups), launching a batch of one group in one AZ (one RunInstances), terminating, and the API
 * load balancer's target group registrations of control plane machines.
 *
 * Identity and idempotency (the trade-off of batch launches). A machine is named
 * `<owner>-<templateHash>-<slot>`; slots are small integers per (group, template hash). One
 * RunInstances launches k machines of one group in one AZ (MinCount = MaxCount = k), and EC2 applies
 * one TagSpecification to all k instances, so per-instance Name tags cannot differ at creation. We
 * keep "tag on create, never afterwards" and deterministic names this way: a batch takes a
 * contiguous slot range [first, first + k), every instance of it is tagged at creation with
 * `capflow.io/machine-slot` = first (plus group, template hash and failure domain), and an
 * instance's slot is first + its AmiLaunchIndex (0..k-1, assigned by EC2 within the reservation).
 * The Name tag is the machine's name when k = 1 and `<owner>-<hash>-<first>..<last>` for a batch
 * (the exact name of each machine is in the inventory, the log and the status secret). The batch's
 * ClientToken is derived from the cluster, group, hash, AZ and slot range (for k = 1 simply from the
 * machine name), plus the ids of every instance of the group AWS still shows (terminated included),
 * so a lost answer retried in the same run returns the same batch, while a slot reused after a
 * scale-down gets a fresh token. Across runs (a crash), the instances are found by their tags before
 * anything is launched, so a retry never makes two. The cost: a follow-up CreateTags per instance
 * would give prettier console names; we chose not to, since an instance must never exist with a
 * name that a crash could leave wrong.
 */
import {
  DescribeInstancesCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type Instance,
  type RunInstancesCommandInput,
} from '@aws-sdk/client-ec2';
import { DeregisterTargetsCommand, DescribeTargetHealthCommand, RegisterTargetsCommand } from '@aws-sdk/client-elastic-load-balancing-v2';
import { ConflictError, InputError, TransientError } from '../core/errors.js';
import { awsErrorName, isNotFound } from './find.js';
import type { InstanceParams } from './machine-params.js';
import type { ClusterScope } from './scope.js';
import { fromTagList, ownedFilters, ownedTags, tagSpecifications } from './tags.js';
import { clientToken } from './tokens.js';

export const MACHINE_GROUP_TAG = 'capflow.io/machine-group';
export const TEMPLATE_HASH_TAG = 'capflow.io/template-hash';
export const FAILURE_DOMAIN_TAG = 'capflow.io/failure-domain';
export const MACHINE_SLOT_TAG = 'capflow.io/machine-slot';
export const MACHINE_OWNER_TAG = 'capflow.io/machine-owner';

export type MachineRole = 'control-plane' | 'node';
export const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped'];

/** One machine as the inventory shows it. */
export interface Machine {
  name: string;
  instanceId: string;
  privateIp: string;
  privateDns: string;
  az: string;
  role: MachineRole;
  group: string;
  state: string;
  templateHash: string;
  /** As AWS reports it: a type changed by hand shows as drift of the template's instanceType. */
  instanceType?: string;
  /** Internal: the slot and launch time, for naming and delete policies. */
  slot: number;
  launchTime: string;
}

export function machineName(owner: string, hash: string, slot: number): string {
  return `${owner}-${hash}-${slot}`;
}

function toMachine(i: Instance): Machine | undefined {
  const tags = fromTagList(i.Tags);
  const group = tags[MACHINE_GROUP_TAG];
  const hash = tags[TEMPLATE_HASH_TAG];
  const first = Number(tags[MACHINE_SLOT_TAG]);
  const owner = tags[MACHINE_OWNER_TAG] ?? group;
  if (!group || !hash || !Number.isInteger(first) || !owner) return undefined;
  const slot = first + (i.AmiLaunchIndex ?? 0);
  return {
    name: machineName(owner, hash, slot),
    instanceId: i.InstanceId ?? '',
    privateIp: i.PrivateIpAddress ?? '',
    privateDns: i.PrivateDnsName ?? '',
    az: i.Placement?.AvailabilityZone ?? tags[FAILURE_DOMAIN_TAG] ?? '',
    role: tags['sigs.k8s.io/cluster-api-provider-aws/role'] === 'control-plane' ? 'control-plane' : 'node',
    group,
    state: i.State?.Name ?? 'unknown',
    templateHash: hash,
    ...(i.InstanceType ? { instanceType: i.InstanceType } : {}),
    slot,
    launchTime: i.LaunchTime ? new Date(i.LaunchTime).toISOString() : '',
  };
}

export interface MachineSnapshot {
  /** Live machines (pending, running, stopping, stopped). */
  live: Machine[];
  /** Ids of every instance of each group AWS still shows (terminated too), for client tokens. */
  knownIds: Map<string, string[]>;
}

/**
 * The cluster's machines: one DescribeInstances (paginated) filtered by the cluster's ownership tag
 * and the machine-group tag key, so instances capflow does not own are never seen. Two live instances
 * claiming the same machine name are a conflict (exit 3).
 */
export async function describeMachines(scope: ClusterScope): Promise<MachineSnapshot> {
  const instances: Instance[] = [];
  let NextToken: string | undefined;
  do {
    const page = await scope.ec2.send(
      new DescribeInstancesCommand({ Filters: [...ownedFilters(scope.clusterName), { Name: 'tag-key', Values: [MACHINE_GROUP_TAG] }], NextToken }),
      { abortSignal: scope.signal },
    );
    for (const r of page.Reservations ?? []) instances.push(...(r.Instances ?? []));
    NextToken = page.NextToken;
  } while (NextToken);
  const live: Machine[] = [];
  const knownIds = new Map<string, string[]>();
  const byName = new Map<string, Machine>();
  for (const i of instances) {
    const m = toMachine(i);
    if (!m) continue;
    knownIds.set(m.group, [...(knownIds.get(m.group) ?? []), m.instanceId]);
    if (!LIVE_STATES.includes(m.state)) continue;
    const twin = byName.get(m.name);
    if (twin) {
      throw new ConflictError('AWS_DUPLICATE_MACHINE', `two instances are machine ${m.name}: ${twin.instanceId}, ${m.instanceId}`, {
        hint: `terminate one of them (keep the one the cluster uses), then run again`,
        details: { name: m.name, ids: [twin.instanceId, m.instanceId] },
      });
    }
    byName.set(m.name, m);
    live.push(m);
  }
  for (const ids of knownIds.values()) ids.sort();
  live.sort((a, b) => a.group.localeCompare(b.group) || a.templateHash.localeCompare(b.templateHash) || a.slot - b.slot);
  return { live, knownIds };
}

/** An instance of the cluster that should be (or was) a Node: a machine's or a MachinePool's. */
export interface ClusterInstance {
  instanceId: string;
  privateDns: string;
  az: string;
  state: string;
  role: MachineRole;
  /** The machine group (control-plane, a MachineDeployment) or the MachinePool. */
  group: string;
  /** The machine's name; a pool instance's is its instance id. */
  machine: string;
  pool: boolean;
}

/**
 * Every instance the cluster owns that is or was a machine (machine groups and MachinePools), in any
 * state, in one paginated DescribeInstances. Instances without either tag (a bastion) are left out.
 */
export async function describeClusterInstances(scope: ClusterScope, poolTag: string): Promise<ClusterInstance[]> {
  const out: ClusterInstance[] = [];
  let NextToken: string | undefined;
  do {
    const page = await scope.ec2.send(new DescribeInstancesCommand({ Filters: ownedFilters(scope.clusterName), NextToken }), { abortSignal: scope.signal });
    for (const i of (page.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
      const tags = fromTagList(i.Tags);
      const m = toMachine(i);
      const pool = tags[poolTag];
      if (!m && !pool) continue;
      out.push({
        instanceId: i.InstanceId ?? '',
        privateDns: i.PrivateDnsName ?? '',
        az: i.Placement?.AvailabilityZone ?? '',
        state: i.State?.Name ?? 'unknown',
        role: m?.role ?? 'node',
        group: m?.group ?? pool!,
        machine: m?.name ?? i.InstanceId ?? '',
        pool: !m,
      });
    }
    NextToken = page.NextToken;
  } while (NextToken);
  return out;
}

export interface Batch {
  group: string;
  owner: string;
  role: MachineRole;
  hash: string;
  az: string;
  subnetId: string;
  first: number;
  count: number;
  params: InstanceParams;
  /** Base64 user data. */
  userData: string;
  /** Ids AWS shows for the group (terminated included), part of the token. */
  knownIds: readonly string[];
}

export function batchNames(b: Pick<Batch, 'owner' | 'hash' | 'first' | 'count'>): string[] {
  return Array.from({ length: b.count }, (_, i) => machineName(b.owner, b.hash, b.first + i));
}

export function batchToken(clusterName: string, b: Batch): string {
  const label = b.count === 1 ? machineName(b.owner, b.hash, b.first) : `${b.group}/${b.hash}/${b.az}/${b.first}+${b.count}`;
  return clientToken(clusterName, label, { az: b.az, count: b.count, known: b.knownIds });
}

/** The RunInstances input of a batch (exported for tests and the dry run). */
export function runInstancesInput(scope: ClusterScope, b: Batch): RunInstancesCommandInput {
  const names = batchNames(b);
  const nameTag = b.count === 1 ? names[0]! : `${machineName(b.owner, b.hash, b.first)}..${b.first + b.count - 1}`;
  const tags = ownedTags(scope, b.role, nameTag, {
    ...b.params.extraTags,
    [MACHINE_GROUP_TAG]: b.group,
    [MACHINE_OWNER_TAG]: b.owner,
    [TEMPLATE_HASH_TAG]: b.hash,
    [FAILURE_DOMAIN_TAG]: b.az,
    [MACHINE_SLOT_TAG]: String(b.first),
  });
  const p = b.params;
  return {
    ImageId: p.imageId,
    InstanceType: p.instanceType as RunInstancesCommandInput['InstanceType'],
    MinCount: b.count,
    MaxCount: b.count,
    ClientToken: batchToken(scope.clusterName, b),
    ...(p.keyName ? { KeyName: p.keyName } : {}),
    ...(p.iamInstanceProfile ? { IamInstanceProfile: { Name: p.iamInstanceProfile } } : {}),
    ...(p.blockDeviceMappings.length > 0 ? { BlockDeviceMappings: p.blockDeviceMappings } : {}),
    NetworkInterfaces: [
      {
        DeviceIndex: 0,
        SubnetId: b.subnetId,
        Groups: p.securityGroupIds,
        ...(p.associatePublicIp !== undefined ? { AssociatePublicIpAddress: p.associatePublicIp } : {}),
      },
    ],
    ...(p.spot
      ? {
          InstanceMarketOptions: {
            MarketType: 'spot',
            SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate', ...(p.spot.maxPrice ? { MaxPrice: p.spot.maxPrice } : {}) },
          },
        }
      : {}),
    MetadataOptions: p.metadataOptions,
    UserData: b.userData,
    TagSpecifications: [...tagSpecifications('instance', tags), ...tagSpecifications('volume', tags)],
  };
}

/** Launches one batch (one RunInstances; the AWS clients pace it by EC2's RunInstances bucket, src/core/rate-limit.ts). */
export async function launchBatch(scope: ClusterScope, b: Batch): Promise<Machine[]> {
  scope.log.info('Launching machines', { group: b.group, az: b.az, machines: batchNames(b), instanceType: b.params.instanceType, spot: b.params.spot !== undefined });
  const out = await scope.ec2.send(new RunInstancesCommand(runInstancesInput(scope, b)), { abortSignal: scope.signal }).catch((err: unknown) => {
    throw refusedLaunch(err, b) ?? err;
  });
  const launched = (out.Instances ?? []).map((i) => toMachine({ ...i, Tags: i.Tags ?? runInstancesInput(scope, b).TagSpecifications![0]!.Tags }));
  const dead = (out.Instances ?? []).filter((i) => i.State?.Name === 'terminated' || i.State?.Name === 'shutting-down');
  if (dead.length > 0) {
    throw new TransientError('MACHINE_TERMINATED', `RunInstances answered with ${dead.length} terminated instance(s) for ${batchNames(b).join(', ')}`, {
      hint: 'AWS still remembers an earlier launch with this client token; run again (the group has changed since)',
    });
  }
  return launched.filter((m): m is Machine => m !== undefined);
}

/** A launch EC2 refuses for what the spec names (an instance profile that does not exist), as bad input. */
function refusedLaunch(err: unknown, b: Batch): Error | undefined {
  const name = awsErrorName(err);
  const message = err instanceof Error ? err.message : String(err);
  const profile = b.params.iamInstanceProfile;
  if (profile && (name === 'NoSuchEntity' || (name === 'InvalidParameterValue' && /iamInstanceProfile/i.test(message)))) {
    return new InputError('IAM_INSTANCE_PROFILE_NOT_FOUND', `instance profile ${profile} of ${b.group} does not exist in this account: ${message}`, {
      hint: 'create it (clusterawsadm bootstrap iam create-cloudformation-stack makes the AWS provider\'s default profiles), or name one that exists in iamInstanceProfile',
      cause: err,
    });
  }
  return undefined;
}

export async function terminateInstances(scope: ClusterScope, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  scope.log.info('Terminating machines', { instanceIds: ids });
  try {
    await scope.ec2.send(new TerminateInstancesCommand({ InstanceIds: [...ids] }), { abortSignal: scope.signal });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/** The instance ids registered in a target group (one DescribeTargetHealth). */
export async function registeredTargets(scope: ClusterScope, targetGroupArn: string): Promise<Set<string>> {
  try {
    const out = await scope.elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: targetGroupArn }), { abortSignal: scope.signal });
    return new Set((out.TargetHealthDescriptions ?? []).map((d) => d.Target?.Id).filter((id): id is string => !!id));
  } catch (err) {
    if (isNotFound(err)) return new Set();
    throw err;
  }
}

export async function registerTargets(scope: ClusterScope, targetGroupArn: string, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  scope.log.info('Registering control plane machines with the API load balancer', { instanceIds: ids });
  await scope.elbv2.send(new RegisterTargetsCommand({ TargetGroupArn: targetGroupArn, Targets: ids.map((Id) => ({ Id })) }), { abortSignal: scope.signal });
}

export async function deregisterTargets(scope: ClusterScope, targetGroupArn: string, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  scope.log.info('Deregistering machines from the API load balancer', { instanceIds: ids });
  try {
    await scope.elbv2.send(new DeregisterTargetsCommand({ TargetGroupArn: targetGroupArn, Targets: ids.map((Id) => ({ Id })) }), { abortSignal: scope.signal });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}
