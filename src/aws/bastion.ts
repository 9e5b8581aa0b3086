/**
 * The bastion host (spec.bastion): one instance in a public subnet with a public IP and the bastion
 * security group (whose SSH ingress security-groups.ts derives from allowedCIDRBlocks), IMDSv2
 * required, tagged on creation (instance and volume), launched with a client token derived from the
 * AMI, instance type and subnet, so a retried launch after a lost answer returns the first instance.
 *
 * Found by the cluster's ownership and bastion role tags (terminated and shutting-down instances do
 * not count). Disabled with an owned bastion running: it is terminated. A bastion whose instance type,
 * subnet or pinned AMI differs from the spec is replaced (a new token, a new instance, the old one
 * terminated). Without spec.bastion.ami the newest Ubuntu LTS server AMI for amd64 published by
 * Canonical is looked up only when an instance is launched, so a new Ubuntu build never replaces a
 * running bastion.
 */
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type Image,
  type Instance,
} from '@aws-sdk/client-ec2';
import { InputError, TransientError } from '../core/errors.js';
import type { AWSClusterSpec } from '../spec/model.js';
import { expectAtMostOne, found, isNotFound } from './find.js';
import type { ClusterScope } from './scope.js';
import { fromTagList, ownedFilters, ownedTags, tagSpecifications } from './tags.js';
import { clientToken } from './tokens.js';
import { waitFor } from './wait.js';

export interface BastionResult {
  instanceId: string;
  publicIp?: string;
  privateIp?: string;
}

export const BASTION_ROLE = 'bastion';
export const DEFAULT_BASTION_INSTANCE_TYPE = 't3.micro';
/** Canonical's AWS account: the only owner whose Ubuntu images we accept. */
export const CANONICAL_OWNER_ID = '099720109477';
const UBUNTU_NAME_PATTERN = 'ubuntu/images/hvm-ssd*/ubuntu-*-amd64-server-*';
const NEW_INSTANCE = '(new instance bastion)';
/** States of an instance that still exists (or will again); terminated and shutting-down do not count. */
const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped'];

interface BastionSpec {
  enabled?: boolean;
  instanceType?: string;
  ami?: string;
}

export function bastionName(clusterName: string): string {
  return `${clusterName}-${BASTION_ROLE}`;
}

/** The cluster's live bastion instances: one DescribeInstances by ownership and role tags. */
async function describeBastions(scope: ClusterScope, states: string[] = LIVE_STATES): Promise<Instance[]> {
  const out: Instance[] = [];
  let NextToken: string | undefined;
  do {
    const page = await scope.ec2.send(
      new DescribeInstancesCommand({
        Filters: [...ownedFilters(scope.clusterName, BASTION_ROLE), { Name: 'instance-state-name', Values: states }],
        NextToken,
      }),
      { abortSignal: scope.signal },
    );
    for (const r of page.Reservations ?? []) out.push(...(r.Instances ?? []));
    NextToken = page.NextToken;
  } while (NextToken);
  return out;
}

/**
 * Picks the Ubuntu image a bastion runs when the spec pins none, deterministically: among Canonical's
 * available amd64 server images, the highest LTS release (YY.04 with an even YY), then the newest
 * build serial in its name, then the newest creation date, then the image id.
 */
export function pickUbuntuImage(images: readonly Image[]): Image | undefined {
  const parsed = images
    .map((image) => {
      const m = /ubuntu-[a-z]+-(\d+)\.(\d+)-amd64-server-(\d+(?:\.\d+)?)$/.exec(image.Name ?? '');
      return m ? { image, major: Number(m[1]), minor: Number(m[2]), serial: m[3]! } : undefined;
    })
    .filter((x): x is NonNullable<typeof x> => x !== undefined && x.minor === 4 && x.major % 2 === 0);
  parsed.sort(
    (a, b) =>
      b.major - a.major ||
      b.serial.localeCompare(a.serial) ||
      (b.image.CreationDate ?? '').localeCompare(a.image.CreationDate ?? '') ||
      (a.image.ImageId ?? '').localeCompare(b.image.ImageId ?? ''),
  );
  return parsed[0]?.image;
}

async function lookupUbuntuAmi(scope: ClusterScope): Promise<string> {
  const out = await scope.ec2.send(
    new DescribeImagesCommand({
      Owners: [CANONICAL_OWNER_ID],
      Filters: [
        { Name: 'name', Values: [UBUNTU_NAME_PATTERN] },
        { Name: 'architecture', Values: ['x86_64'] },
        { Name: 'state', Values: ['available'] },
      ],
    }),
    { abortSignal: scope.signal },
  );
  const image = pickUbuntuImage(out.Images ?? []);
  if (!image?.ImageId) {
    throw new InputError('BASTION_AMI_NOT_FOUND', `no Ubuntu LTS amd64 server image from Canonical (${CANONICAL_OWNER_ID}) in ${scope.region}`, {
      hint: 'set spec.bastion.ami to the image the bastion should run',
    });
  }
  return image.ImageId;
}

function toResult(i: Instance): BastionResult {
  return {
    instanceId: i.InstanceId!,
    ...(i.PublicIpAddress ? { publicIp: i.PublicIpAddress } : {}),
    ...(i.PrivateIpAddress ? { privateIp: i.PrivateIpAddress } : {}),
  };
}

async function terminate(scope: ClusterScope, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  scope.log.info('Terminating bastion', { instanceIds: ids });
  await scope.ec2.send(new TerminateInstancesCommand({ InstanceIds: ids }), { abortSignal: scope.signal });
}

async function waitRunning(scope: ClusterScope, id: string): Promise<Instance> {
  scope.log.info('Waiting for bastion to be running', { instanceId: id });
  const instance = await waitFor(
    async () => {
      const out = await scope.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }), { abortSignal: scope.signal });
      const i = out.Reservations?.[0]?.Instances?.[0];
      const state = i?.State?.Name;
      return state === 'running' || state === 'terminated' || state === 'shutting-down' ? i : undefined;
    },
    { description: `bastion ${id} to be running`, timeoutMs: scope.timeouts.instanceMs, signal: scope.signal, minDelayMs: 2000 },
  );
  if (instance.State?.Name !== 'running') {
    throw new TransientError('BASTION_TERMINATED', `bastion ${id} is ${instance.State?.Name}: ${instance.StateReason?.Message ?? 'no reason given'}`, {
      hint:
        'run again to launch a new bastion; if RunInstances keeps answering with this instance, AWS still remembers its client token: ' +
        'change spec.bastion (instanceType or ami) or wait a day',
    });
  }
  return instance;
}

/**
 * Makes the bastion match spec.bastion: launched when enabled and missing, replaced when its type,
 * subnet or pinned AMI changed, terminated when disabled. Returns the running bastion, or undefined
 * when disabled.
 */
export async function reconcileBastion(
  scope: ClusterScope,
  input: { spec: AWSClusterSpec; subnetId: string; securityGroupId: string },
): Promise<BastionResult | undefined> {
  const bastion = (input.spec.bastion ?? {}) as BastionSpec;
  const name = bastionName(scope.clusterName);
  const live = input.subnetId.startsWith('(') ? [] : await describeBastions(scope);

  if (!bastion.enabled) {
    for (const i of live) scope.plan.record({ resource: 'instance', name, action: 'delete', id: i.InstanceId, detail: 'bastion disabled' });
    if (!scope.dryRun) await terminate(scope, live.map((i) => i.InstanceId!));
    return undefined;
  }

  const one = expectAtMostOne(
    live.map((i) => found(i, i.InstanceId, fromTagList(i.Tags), scope.clusterName)),
    'bastion instance',
    name,
    scope.clusterName,
  );
  const type = bastion.instanceType ?? DEFAULT_BASTION_INSTANCE_TYPE;
  const current = one?.item;
  if (current) {
    const drift = [
      current.InstanceType !== type ? `instance type ${current.InstanceType} -> ${type}` : '',
      current.SubnetId !== input.subnetId ? `subnet ${current.SubnetId} -> ${input.subnetId}` : '',
      bastion.ami && current.ImageId !== bastion.ami ? `AMI ${current.ImageId} -> ${bastion.ami}` : '',
    ].filter(Boolean);
    if (drift.length === 0) {
      scope.plan.record({ resource: 'instance', name, action: 'no-change', id: current.InstanceId, detail: current.State?.Name });
      if (scope.dryRun || current.State?.Name !== 'pending') return toResult(current);
      return toResult(await waitRunning(scope, current.InstanceId!));
    }
    scope.plan.record({ resource: 'instance', name, action: 'update', id: current.InstanceId, detail: `replace: ${drift.join('; ')}` });
  } else {
    scope.plan.record({ resource: 'instance', name, action: 'create', ...(scope.dryRun ? { id: NEW_INSTANCE } : {}), detail: `${type} in ${input.subnetId}` });
  }
  if (scope.dryRun) return { instanceId: NEW_INSTANCE };

  const ami = bastion.ami ?? (await lookupUbuntuAmi(scope));
  const tags = ownedTags(scope, BASTION_ROLE, name);
  scope.log.info('Launching bastion', { instanceType: type, ami, subnetId: input.subnetId });
  const out = await scope.ec2.send(
    new RunInstancesCommand({
      ImageId: ami,
      InstanceType: type as never,
      MinCount: 1,
      MaxCount: 1,
      ClientToken: clientToken(scope.clusterName, BASTION_ROLE, { ami, type, subnet: input.subnetId }),
      ...(input.spec.sshKeyName ? { KeyName: input.spec.sshKeyName } : {}),
      NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: input.subnetId, Groups: [input.securityGroupId], AssociatePublicIpAddress: true }],
      MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled' },
      TagSpecifications: [...tagSpecifications('instance', tags), ...tagSpecifications('volume', tags)],
    }),
    { abortSignal: scope.signal },
  );
  const launched = out.Instances?.[0];
  if (!launched?.InstanceId) throw new TransientError('BASTION_LAUNCH_EMPTY', 'RunInstances returned no instance for the bastion');
  // The replaced bastion goes once its successor exists.
  if (current) await terminate(scope, [current.InstanceId!]);
  return toResult(launched.State?.Name === 'running' ? launched : await waitRunning(scope, launched.InstanceId));
}

/** Terminates the cluster's bastion instances and waits until they are terminated. */
export async function deleteBastion(scope: ClusterScope): Promise<void> {
  const name = bastionName(scope.clusterName);
  const instances = await describeBastions(scope, [...LIVE_STATES, 'shutting-down']);
  for (const i of instances) scope.plan.record({ resource: 'instance', name, action: 'delete', id: i.InstanceId, detail: i.State?.Name });
  if (scope.dryRun || instances.length === 0) return;
  await terminate(
    scope,
    instances.filter((i) => i.State?.Name !== 'shutting-down').map((i) => i.InstanceId!),
  );
  const ids = instances.map((i) => i.InstanceId!);
  await waitFor(
    async () => {
      const out = await scope.ec2
        .send(new DescribeInstancesCommand({ InstanceIds: ids }), { abortSignal: scope.signal })
        .catch((err: unknown) => {
          if (isNotFound(err)) return { Reservations: [] }; // terminated long enough to be forgotten
          throw err;
        });
      const states = (out.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => i.State?.Name);
      return states.every((s) => s === 'terminated') ? true : undefined;
    },
    { description: `bastion ${ids.join(', ')} to be terminated`, timeoutMs: scope.timeouts.instanceMs, signal: scope.signal, minDelayMs: 2000 },
  );
}
