/**
 * Which commit last wrote each of the cluster's EC2 resources: every resource
 * capflow makes carries `capflow.io/revision` (set at creation, rewritten by a
 * run that changes it), so two DescribeTags, by the cluster tag and then by
 * the revision key, answer "which commit is live" per resource family.
 */
import { DescribeTagsCommand, type Filter, type TagDescription } from '@aws-sdk/client-ec2';
import type { ClusterScope } from './scope.js';
import { CAPFLOW_CLUSTER_TAG, CAPFLOW_REVISION_TAG } from './tags.js';

/** Resource type (vpc, subnet, instance, ...) → revision → count. */
export type Provenance = Record<string, Record<string, number>>;

/** EC2 caps a filter's values at 200. */
const IDS_PER_CALL = 200;

async function describeTags(scope: ClusterScope, filters: Filter[]): Promise<TagDescription[]> {
  const out: TagDescription[] = [];
  let NextToken: string | undefined;
  do {
    const page = await scope.ec2.send(new DescribeTagsCommand({ Filters: filters, NextToken, MaxResults: 1000 }), { abortSignal: scope.signal });
    out.push(...(page.Tags ?? []));
    NextToken = page.NextToken;
  } while (NextToken);
  return out;
}

export async function describeProvenance(scope: ClusterScope): Promise<Provenance> {
  const mine = await describeTags(scope, [
    { Name: 'key', Values: [CAPFLOW_CLUSTER_TAG] },
    { Name: 'value', Values: [scope.clusterName] },
  ]);
  const typeOf = new Map(mine.filter((t) => t.ResourceId).map((t) => [t.ResourceId!, t.ResourceType ?? 'unknown']));
  const ids = [...typeOf.keys()];
  const out: Provenance = {};
  for (let i = 0; i < ids.length; i += IDS_PER_CALL) {
    const tags = await describeTags(scope, [
      { Name: 'key', Values: [CAPFLOW_REVISION_TAG] },
      { Name: 'resource-id', Values: ids.slice(i, i + IDS_PER_CALL) },
    ]);
    for (const t of tags) {
      const family = typeOf.get(t.ResourceId ?? '') ?? t.ResourceType ?? 'unknown';
      const byRevision = (out[family] ??= {});
      byRevision[t.Value ?? ''] = (byRevision[t.Value ?? ''] ?? 0) + 1;
    }
  }
  return out;
}
