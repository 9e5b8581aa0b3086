/**
 * A snapshot of what exists in (moto's) AWS, for tests that compare worlds:
 * counts by kind, and every resource that lacks the cluster's ownership tag.
 * Default resources (default VPC, its subnets, main route tables, default
 * security groups) are left out: they belong to the account, not to us.
 */
import {
  DescribeAddressesCommand,
  DescribeInstancesCommand,
  DescribeInternetGatewaysCommand,
  DescribeNatGatewaysCommand,
  DescribeRouteTablesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import { DescribeLoadBalancersCommand, DescribeTargetGroupsCommand, ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { clientConfig } from './moto.js';

export interface WorldResource {
  kind: string;
  id: string;
  tags: Record<string, string>;
}

export interface World {
  resources: WorldResource[];
  counts: Record<string, number>;
}

const tagMap = (tags: Array<{ Key?: string; Value?: string }> | undefined): Record<string, string> =>
  Object.fromEntries((tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));

/** Reads the world of one region (default the test region) straight from moto (not through the fault proxy, so nothing is recorded). */
export async function snapshotWorld(motoEndpoint: string, region?: string): Promise<World> {
  const config = { ...clientConfig(motoEndpoint), ...(region ? { region } : {}) };
  const ec2 = new EC2Client(config);
  const elbv2 = new ElasticLoadBalancingV2Client(config);
  try {
    const resources: WorldResource[] = [];
    const vpcs = (await ec2.send(new DescribeVpcsCommand({}))).Vpcs ?? [];
    const defaultVpcs = new Set(vpcs.filter((v) => v.IsDefault).map((v) => v.VpcId));
    for (const v of vpcs) if (!v.IsDefault) resources.push({ kind: 'vpc', id: v.VpcId!, tags: tagMap(v.Tags) });
    for (const s of (await ec2.send(new DescribeSubnetsCommand({}))).Subnets ?? []) {
      if (!defaultVpcs.has(s.VpcId)) resources.push({ kind: 'subnet', id: s.SubnetId!, tags: tagMap(s.Tags) });
    }
    for (const g of (await ec2.send(new DescribeInternetGatewaysCommand({}))).InternetGateways ?? []) {
      if (!g.Attachments?.some((a) => defaultVpcs.has(a.VpcId))) resources.push({ kind: 'internet-gateway', id: g.InternetGatewayId!, tags: tagMap(g.Tags) });
    }
    for (const a of (await ec2.send(new DescribeAddressesCommand({}))).Addresses ?? []) resources.push({ kind: 'eip', id: a.AllocationId!, tags: tagMap(a.Tags) });
    for (const n of (await ec2.send(new DescribeNatGatewaysCommand({}))).NatGateways ?? []) {
      if (n.State !== 'deleted' && n.State !== 'deleting') resources.push({ kind: 'nat-gateway', id: n.NatGatewayId!, tags: tagMap(n.Tags) });
    }
    for (const r of (await ec2.send(new DescribeRouteTablesCommand({}))).RouteTables ?? []) {
      if (!defaultVpcs.has(r.VpcId) && !r.Associations?.some((a) => a.Main)) resources.push({ kind: 'route-table', id: r.RouteTableId!, tags: tagMap(r.Tags) });
    }
    for (const g of (await ec2.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups ?? []) {
      if (!defaultVpcs.has(g.VpcId) && g.GroupName !== 'default') resources.push({ kind: 'security-group', id: g.GroupId!, tags: tagMap(g.Tags) });
    }
    for (const r of (await ec2.send(new DescribeInstancesCommand({}))).Reservations ?? []) {
      for (const i of r.Instances ?? []) {
        if (i.State?.Name !== 'terminated' && i.State?.Name !== 'shutting-down') resources.push({ kind: 'instance', id: i.InstanceId!, tags: tagMap(i.Tags) });
      }
    }
    for (const lb of (await elbv2.send(new DescribeLoadBalancersCommand({}))).LoadBalancers ?? []) resources.push({ kind: 'load-balancer', id: lb.LoadBalancerArn!, tags: {} });
    for (const tg of (await elbv2.send(new DescribeTargetGroupsCommand({}))).TargetGroups ?? []) resources.push({ kind: 'target-group', id: tg.TargetGroupArn!, tags: {} });
    const counts: Record<string, number> = {};
    for (const r of resources) counts[r.kind] = (counts[r.kind] ?? 0) + 1;
    return { resources, counts };
  } finally {
    ec2.destroy();
    elbv2.destroy();
  }
}
