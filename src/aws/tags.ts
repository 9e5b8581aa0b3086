/**
 * Ownership and provenance tags. Every resource capflow creates carries the
 * AWS provider's ownership tags (so CAPA tooling and the cloud controller
 * recognise it), a role, a Name, and capflow's own provenance: which cluster,
 * which Git commit, which spec folder. Tags are set at creation
 * (TagSpecifications), never afterwards, so nothing exists untagged.
 */
import type { Filter, ResourceType, Tag, TagSpecification } from '@aws-sdk/client-ec2';

export const CAPA_CLUSTER_TAG_PREFIX = 'sigs.k8s.io/cluster-api-provider-aws/cluster/';
export const K8S_CLUSTER_TAG_PREFIX = 'kubernetes.io/cluster/';
export const ROLE_TAG = 'sigs.k8s.io/cluster-api-provider-aws/role';
export const CAPFLOW_CLUSTER_TAG = 'capflow.io/cluster';
export const CAPFLOW_REVISION_TAG = 'capflow.io/revision';
export const CAPFLOW_SPEC_TAG = 'capflow.io/spec';
/** Set when capflow creates the resource, for resources whose role repeats (per AZ). */
export const CAPFLOW_AZ_TAG = 'capflow.io/availability-zone';

/** The tags cluster-autoscaler's auto-discovery looks for (`--node-group-auto-discovery=asg:tag=...`). */
export const AUTOSCALER_ENABLED_TAG = 'k8s.io/cluster-autoscaler/enabled';
export function autoscalerClusterTag(clusterName: string): string {
  return `k8s.io/cluster-autoscaler/${clusterName}`;
}

export type Ownership = 'owned' | 'shared' | 'unowned';

export interface Provenance {
  clusterName: string;
  revision: string;
  specPath: string;
  /** AWSCluster.spec.additionalTags. */
  additionalTags?: Record<string, string>;
}

export function capaClusterTag(clusterName: string): string {
  return `${CAPA_CLUSTER_TAG_PREFIX}${clusterName}`;
}

export function k8sClusterTag(clusterName: string): string {
  return `${K8S_CLUSTER_TAG_PREFIX}${clusterName}`;
}

/** The full tag set of an owned resource. Additional tags never override ours. */
export function ownedTags(p: Provenance, role: string, name: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...(p.additionalTags ?? {}),
    ...extra,
    Name: name,
    [capaClusterTag(p.clusterName)]: 'owned',
    [k8sClusterTag(p.clusterName)]: 'owned',
    [ROLE_TAG]: role,
    [CAPFLOW_CLUSTER_TAG]: p.clusterName,
    [CAPFLOW_REVISION_TAG]: p.revision,
    [CAPFLOW_SPEC_TAG]: p.specPath,
  };
}

export function toTagList(tags: Record<string, string>): Tag[] {
  return Object.entries(tags)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([Key, Value]) => ({ Key, Value }));
}

export function fromTagList(tags: Array<{ Key?: string; Value?: string }> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? '';
  return out;
}

export function tagSpecifications(resourceType: ResourceType, tags: Record<string, string>): TagSpecification[] {
  return [{ ResourceType: resourceType, Tags: toTagList(tags) }];
}

/** EC2 filters selecting this cluster's owned resources, optionally of one role. */
export function ownedFilters(clusterName: string, role?: string): Filter[] {
  return [
    { Name: `tag:${capaClusterTag(clusterName)}`, Values: ['owned'] },
    ...(role ? [{ Name: `tag:${ROLE_TAG}`, Values: [role] }] : []),
  ];
}

export function ownershipOf(tags: Record<string, string>, clusterName: string): Ownership {
  const value = tags[capaClusterTag(clusterName)] ?? tags[k8sClusterTag(clusterName)];
  if (value === 'owned') return 'owned';
  if (value === 'shared') return 'shared';
  return 'unowned';
}

/** How to adopt a resource capflow found but does not own, for error hints. */
export function adoptHint(kind: string, id: string, clusterName: string): string {
  return (
    `to let capflow manage ${kind} ${id}, tag it ${capaClusterTag(clusterName)}=owned ` +
    `(capflow will then update and delete it); to use it without managing it, name its id in the spec instead`
  );
}
