/**
 * The census: every EC2 resource that carries one of the cluster's tags
 * (the AWS provider's `sigs.k8s.io/cluster-api-provider-aws/cluster/<name>`,
 * or `kubernetes.io/cluster/<name>` as the cloud controller and the EBS CSI
 * driver tag), from one paged DescribeTags. Delete uses it to skip the
 * describes of families with nothing tagged, and to know what it did not
 * delete, so the teardown can say what is left. It is a list of ids, not of
 * live resources: AWS keeps tags of terminated instances for a while, and
 * moto never forgets tags, so a family is still described before anything
 * in it is deleted.
 */
import { DescribeTagsCommand, type TagDescription } from '@aws-sdk/client-ec2';
import type { ClusterScope } from './scope.js';
import { capaClusterTag, k8sClusterTag, ownershipOf, type Ownership } from './tags.js';

/** Resource kinds by id prefix (the same on AWS and moto, unlike DescribeTags' resource types). */
const KINDS: Array<[prefix: string, kind: CensusKind]> = [
  ['vpc-', 'vpc'],
  ['subnet-', 'subnet'],
  ['igw-', 'internet-gateway'],
  ['nat-', 'nat-gateway'],
  ['rtb-', 'route-table'],
  ['sg-', 'security-group'],
  ['eipalloc-', 'elastic-ip'],
  ['i-', 'instance'],
  ['vol-', 'volume'],
  ['eni-', 'network-interface'],
  ['snap-', 'snapshot'],
];

export type CensusKind =
  | 'vpc'
  | 'subnet'
  | 'internet-gateway'
  | 'nat-gateway'
  | 'route-table'
  | 'security-group'
  | 'elastic-ip'
  | 'instance'
  | 'volume'
  | 'network-interface'
  | 'snapshot'
  | 'other';

export interface CensusEntry {
  id: string;
  kind: CensusKind;
  /** The cluster's tags on it (only the two cluster keys: DescribeTags is filtered by key). */
  tags: Record<string, string>;
  ownership: Ownership;
}

export class Census {
  readonly entries: Map<string, CensusEntry>;

  constructor(entries: CensusEntry[]) {
    this.entries = new Map(entries.map((e) => [e.id, e]));
  }

  /** Ids of `kind` with the given ownership (default owned). */
  ids(kind: CensusKind, ownership: Ownership = 'owned'): string[] {
    return [...this.entries.values()].filter((e) => e.kind === kind && e.ownership === ownership).map((e) => e.id);
  }

  has(kind: CensusKind): boolean {
    return [...this.entries.values()].some((e) => e.kind === kind);
  }
}

export function kindOf(id: string): CensusKind {
  return KINDS.find(([prefix]) => id.startsWith(prefix))?.[1] ?? 'other';
}

/** One DescribeTags (paged by 1000) for both cluster keys, any value. */
export async function takeCensus(scope: ClusterScope): Promise<Census> {
  const rows: TagDescription[] = [];
  let NextToken: string | undefined;
  do {
    const page = await scope.ec2.send(
      new DescribeTagsCommand({ Filters: [{ Name: 'key', Values: [capaClusterTag(scope.clusterName), k8sClusterTag(scope.clusterName)] }], MaxResults: 1000, NextToken }),
      { abortSignal: scope.signal },
    );
    rows.push(...(page.Tags ?? []));
    NextToken = page.NextToken;
  } while (NextToken);
  const byId = new Map<string, Record<string, string>>();
  for (const r of rows) {
    if (!r.ResourceId || r.Key === undefined) continue;
    const tags = byId.get(r.ResourceId) ?? {};
    tags[r.Key] = r.Value ?? '';
    byId.set(r.ResourceId, tags);
  }
  return new Census(
    [...byId.entries()].map(([id, tags]) => {
      // `shared` on either key is never ours, even if the other says owned.
      const shared = Object.values(tags).includes('shared');
      return { id, kind: kindOf(id), tags, ownership: shared ? 'shared' : ownershipOf(tags, scope.clusterName) };
    }),
  );
}
