/**
 * What RunInstances needs for a machine of an AWSMachineTemplate (the parts that do not depend on
 * the cluster's network, which the caller passes in): image, type, key, instance profile, root and
 * extra volumes, security groups, public IP, spot, instance metadata options (IMDSv2 required unless
 * the template says otherwise) and the template's additional tags; and the template hash that names
 * machines and decides when they are rolled.
 */
import { createHash } from 'node:crypto';
import type { BlockDeviceMapping, InstanceMetadataOptionsRequest } from '@aws-sdk/client-ec2';
import type { AWSMachineSpec, AWSResourceReference } from '../spec/model.js';

export interface InstanceParams {
  imageId: string;
  instanceType: string;
  keyName?: string;
  iamInstanceProfile?: string;
  blockDeviceMappings: BlockDeviceMapping[];
  securityGroupIds: string[];
  associatePublicIp?: boolean;
  spot?: { maxPrice?: string };
  metadataOptions: InstanceMetadataOptionsRequest;
  extraTags: Record<string, string>;
}

interface VolumeSpec {
  deviceName?: string;
  size?: number;
  type?: string;
  iops?: number;
  throughput?: number;
  encrypted?: boolean;
  encryptionKey?: string;
}

interface MetadataSpec {
  httpEndpoint?: 'enabled' | 'disabled';
  httpTokens?: 'required' | 'optional';
  httpPutResponseHopLimit?: number;
  instanceMetadataTags?: 'enabled' | 'disabled';
}

/** The root device name of Ubuntu (and CAPA) images; the image's own is not looked up. */
export const ROOT_DEVICE_NAME = '/dev/sda1';
/** Non-root volumes without a deviceName get /dev/sdb, /dev/sdc, ... in order. */
const EXTRA_DEVICE_LETTERS = 'bcdefghijklmnopqrstuvwxyz';

function ebs(v: VolumeSpec): BlockDeviceMapping['Ebs'] {
  return {
    DeleteOnTermination: true,
    ...(v.size !== undefined ? { VolumeSize: v.size } : {}),
    ...(v.type ? { VolumeType: v.type as NonNullable<BlockDeviceMapping['Ebs']>['VolumeType'] } : {}),
    ...(v.iops !== undefined ? { Iops: v.iops } : {}),
    ...(v.throughput !== undefined ? { Throughput: v.throughput } : {}),
    ...(v.encrypted !== undefined ? { Encrypted: v.encrypted } : {}),
    ...(v.encryptionKey ? { KmsKeyId: v.encryptionKey } : {}),
  };
}

/** Security group ids of additionalSecurityGroups given by id (filters are resolved elsewhere, if ever). */
function groupIds(refs: readonly AWSResourceReference[] | undefined): string[] {
  return (refs ?? []).map((r) => r.id).filter((id): id is string => typeof id === 'string' && id !== '');
}

export function instanceParams(spec: AWSMachineSpec, ctx: { imageId: string; securityGroupIds: string[]; sshKeyName?: string }): InstanceParams {
  const blockDeviceMappings: BlockDeviceMapping[] = [];
  if (spec.rootVolume) blockDeviceMappings.push({ DeviceName: ROOT_DEVICE_NAME, Ebs: ebs(spec.rootVolume) });
  const extra = Array.isArray(spec.nonRootVolumes) ? (spec.nonRootVolumes as VolumeSpec[]) : [];
  extra.forEach((v, i) => blockDeviceMappings.push({ DeviceName: v.deviceName ?? `/dev/sd${EXTRA_DEVICE_LETTERS[i] ?? 'z'}`, Ebs: ebs(v) }));

  const md = (spec.instanceMetadataOptions ?? {}) as MetadataSpec;
  const metadataOptions: InstanceMetadataOptionsRequest = {
    HttpEndpoint: md.httpEndpoint ?? 'enabled',
    HttpTokens: md.httpTokens ?? 'required',
    HttpPutResponseHopLimit: md.httpPutResponseHopLimit ?? 1,
    InstanceMetadataTags: md.instanceMetadataTags ?? 'disabled',
  };

  const securityGroupIds = [...new Set([...ctx.securityGroupIds, ...groupIds(spec.additionalSecurityGroups)])];
  const keyName = spec.sshKeyName ?? ctx.sshKeyName;
  return {
    imageId: ctx.imageId,
    instanceType: spec.instanceType,
    ...(keyName ? { keyName } : {}),
    ...(spec.iamInstanceProfile ? { iamInstanceProfile: spec.iamInstanceProfile } : {}),
    blockDeviceMappings,
    securityGroupIds,
    ...(spec.publicIP !== undefined ? { associatePublicIp: spec.publicIP } : {}),
    ...(spec.spotMarketOptions ? { spot: spec.spotMarketOptions.maxPrice ? { maxPrice: spec.spotMarketOptions.maxPrice } : {} } : {}),
    metadataOptions,
    extraTags: { ...(spec.additionalTags ?? {}) },
  };
}

/** JSON with object keys sorted at every level (arrays keep their order). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/**
 * A short (10 hex) hash of the machine-relevant content of `spec` (plus `extra`, e.g. the Kubernetes
 * version or the resolved image), stable under key order. additionalTags are left out: a tag change
 * does not need new machines.
 */
export function templateHash(spec: AWSMachineSpec, extra?: unknown): string {
  const { additionalTags: _tags, ...rest } = spec;
  void _tags;
  return createHash('sha256').update(canonicalJson([rest, extra ?? null])).digest('hex').slice(0, 10);
}
