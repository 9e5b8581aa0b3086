/**
 * Which commit last wrote each of the cluster's resources: every resource
 * capflow makes carries `capflow.io/revision` (set at creation, rewritten by a
 * run that changes it), so a plan can answer "which commit is live" per
 * resource family: EC2 resources with two DescribeTags (by the cluster tag,
 * then by the revision key), load balancers from their tags, and Auto Scaling
 * groups with two more DescribeTags of their own.
 */
import { DescribeTagsCommand, type Filter, type TagDescription } from '@aws-sdk/client-ec2';
import { DescribeTagsCommand as DescribeGroupTagsCommand, type AutoScalingClient, type Filter as GroupFilter, type TagDescription as GroupTag } from '@aws-sdk/client-auto-scaling';
import { DescribeLoadBalancersCommand as DescribeClassicLoadBalancersCommand, DescribeTagsCommand as DescribeClassicTagsCommand } from '@aws-sdk/client-elastic-load-balancing';
import { DescribeLoadBalancersCommand, DescribeTagsCommand as DescribeLbTagsCommand } from '@aws-sdk/client-elastic-load-balancing-v2';
import type { ClusterScope } from './scope.js';
import { CAPFLOW_CLUSTER_TAG, CAPFLOW_REVISION_TAG } from './tags.js';

/** Resource family (vpc, subnet, instance, load-balancer, autoscaling-group, ...) → revision → count. */
export type Provenance = Record<string, Record<string, number>>;

/** EC2 caps a filter's values at 200; Elastic Load Balancing's DescribeTags takes 20 resources. */
const IDS_PER_CALL = 200;
const LBS_PER_CALL = 20;

function count(out: Provenance, family: string, revision: string | undefined): void {
  const byRevision = (out[family] ??= {});
  byRevision[revision ?? ''] = (byRevision[revision ?? ''] ?? 0) + 1;
}

type TagList = Array<{ Key?: string | undefined; Value?: string | undefined }> | undefined;
const tagValue = (tags: TagList, key: string): string | undefined => tags?.find((t) => t.Key === key)?.Value;

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
    for (const t of tags) count(out, typeOf.get(t.ResourceId ?? '') ?? t.ResourceType ?? 'unknown', t.Value);
  }
  return { ...out, ...(await describeLoadBalancerProvenance(scope)) };
}

/**
 * The cluster's load balancers (network and application, then classic): their tags are read 20 at a
 * time, for every load balancer of the region, since neither API filters by tag.
 */
async function describeLoadBalancerProvenance(scope: ClusterScope): Promise<Provenance> {
  const out: Provenance = {};
  const arns: string[] = [];
  let Marker: string | undefined;
  do {
    const page = await scope.elbv2.send(new DescribeLoadBalancersCommand({ Marker }), { abortSignal: scope.signal });
    arns.push(...(page.LoadBalancers ?? []).flatMap((lb) => (lb.LoadBalancerArn ? [lb.LoadBalancerArn] : [])));
    Marker = page.NextMarker;
  } while (Marker);
  for (let i = 0; i < arns.length; i += LBS_PER_CALL) {
    const page = await scope.elbv2.send(new DescribeLbTagsCommand({ ResourceArns: arns.slice(i, i + LBS_PER_CALL) }), { abortSignal: scope.signal });
    for (const d of page.TagDescriptions ?? []) if (tagValue(d.Tags, CAPFLOW_CLUSTER_TAG) === scope.clusterName) count(out, 'load-balancer', tagValue(d.Tags, CAPFLOW_REVISION_TAG));
  }
  const names: string[] = [];
  let classicMarker: string | undefined;
  do {
    const page = await scope.elb.send(new DescribeClassicLoadBalancersCommand({ Marker: classicMarker }), { abortSignal: scope.signal });
    names.push(...(page.LoadBalancerDescriptions ?? []).flatMap((lb) => (lb.LoadBalancerName ? [lb.LoadBalancerName] : [])));
    classicMarker = page.NextMarker;
  } while (classicMarker);
  for (let i = 0; i < names.length; i += LBS_PER_CALL) {
    const page = await scope.elb.send(new DescribeClassicTagsCommand({ LoadBalancerNames: names.slice(i, i + LBS_PER_CALL) }), { abortSignal: scope.signal });
    for (const d of page.TagDescriptions ?? []) if (tagValue(d.Tags, CAPFLOW_CLUSTER_TAG) === scope.clusterName) count(out, 'classic-load-balancer', tagValue(d.Tags, CAPFLOW_REVISION_TAG));
  }
  return out;
}

async function describeGroupTags(scope: ClusterScope, asg: AutoScalingClient, filters: GroupFilter[]): Promise<GroupTag[]> {
  const out: GroupTag[] = [];
  let NextToken: string | undefined;
  do {
    const page = await asg.send(new DescribeGroupTagsCommand({ Filters: filters, NextToken }), { abortSignal: scope.signal });
    out.push(...(page.Tags ?? []));
    NextToken = page.NextToken;
  } while (NextToken);
  return out;
}

/** The cluster's Auto Scaling groups (MachinePools): by the cluster tag, then their revision tags. */
export async function describeGroupProvenance(scope: ClusterScope, asg: AutoScalingClient): Promise<Provenance> {
  const mine = await describeGroupTags(scope, asg, [
    { Name: 'key', Values: [CAPFLOW_CLUSTER_TAG] },
    { Name: 'value', Values: [scope.clusterName] },
  ]);
  const names = [...new Set(mine.flatMap((t) => (t.ResourceId ? [t.ResourceId] : [])))];
  const out: Provenance = {};
  // Auto Scaling caps a filter's values at 1,000 (a cluster has a handful of groups).
  for (let i = 0; i < names.length; i += 1000) {
    const tags = await describeGroupTags(scope, asg, [
      { Name: 'auto-scaling-group', Values: names.slice(i, i + 1000) },
      { Name: 'key', Values: [CAPFLOW_REVISION_TAG] },
    ]);
    for (const t of tags) count(out, 'autoscaling-group', t.Value);
  }
  return out;
}
