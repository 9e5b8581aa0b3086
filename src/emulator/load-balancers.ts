/**
 * The emulator's load balancers as the machine supervisor needs them: every network load balancer
 * (ELBv2) and classic ELB in a VPC, each listener with its registered targets (resolved to the
 * instances' private IPs; targets of instances that are not running are left out, as AWS does not
 * route to them) and its health check, sped up for the test bed.
 */
import { DescribeLoadBalancersCommand as DescribeClassicCommand, type ElasticLoadBalancingClient } from '@aws-sdk/client-elastic-load-balancing';
import {
  DescribeListenersCommand,
  DescribeLoadBalancersCommand,
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  type ElasticLoadBalancingV2Client,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { healthCheckFromClassicElb, healthCheckFromElbv2, type HealthCheck, type Target } from './load-balancer-proxy.js';

export interface ObservedListener {
  port: number;
  targets: Target[];
  healthCheck: HealthCheck;
}

export interface ObservedLoadBalancer {
  name: string;
  type: 'network' | 'classic';
  dnsName: string;
  vpcId: string;
  listeners: ObservedListener[];
}

export async function observeLoadBalancers(
  clients: { elbv2: ElasticLoadBalancingV2Client; elb: ElasticLoadBalancingClient },
  /** Running instances' private IPs by instance id. */
  ipOf: Map<string, string>,
  speedUp: number,
): Promise<ObservedLoadBalancer[]> {
  const out: ObservedLoadBalancer[] = [];
  const v2 = await clients.elbv2.send(new DescribeLoadBalancersCommand({}));
  for (const lb of v2.LoadBalancers ?? []) {
    if (lb.Type !== 'network' || !lb.VpcId || !lb.LoadBalancerArn || !lb.DNSName) continue;
    const listeners = (await clients.elbv2.send(new DescribeListenersCommand({ LoadBalancerArn: lb.LoadBalancerArn }))).Listeners ?? [];
    const groups = (await clients.elbv2.send(new DescribeTargetGroupsCommand({ LoadBalancerArn: lb.LoadBalancerArn }))).TargetGroups ?? [];
    const observed: ObservedLoadBalancer = { name: lb.LoadBalancerName ?? lb.DNSName, type: 'network', dnsName: lb.DNSName, vpcId: lb.VpcId, listeners: [] };
    for (const l of listeners) {
      const tgArn = l.DefaultActions?.find((a) => a.Type === 'forward')?.TargetGroupArn;
      const tg = groups.find((g) => g.TargetGroupArn === tgArn);
      if (!tg || !l.Port) continue;
      const registered = (await clients.elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroupArn }))).TargetHealthDescriptions ?? [];
      const targets: Target[] = [];
      for (const r of registered) {
        const id = r.Target?.Id ?? '';
        const host = tg.TargetType === 'ip' ? id : ipOf.get(id);
        if (host) targets.push({ id, host, port: r.Target?.Port ?? tg.Port ?? l.Port });
      }
      observed.listeners.push({ port: l.Port, targets, healthCheck: healthCheckFromElbv2(tg, { speedUp }) });
    }
    out.push(observed);
  }
  const classic = await clients.elb.send(new DescribeClassicCommand({}));
  for (const lb of classic.LoadBalancerDescriptions ?? []) {
    if (!lb.VPCId || !lb.DNSName) continue;
    const observed: ObservedLoadBalancer = { name: lb.LoadBalancerName ?? lb.DNSName, type: 'classic', dnsName: lb.DNSName, vpcId: lb.VPCId, listeners: [] };
    for (const d of lb.ListenerDescriptions ?? []) {
      const l = d.Listener;
      if (!l?.LoadBalancerPort || !l.InstancePort) continue;
      const targets: Target[] = [];
      for (const i of lb.Instances ?? []) {
        const host = ipOf.get(i.InstanceId ?? '');
        if (host) targets.push({ id: i.InstanceId!, host, port: l.InstancePort });
      }
      observed.listeners.push({ port: l.LoadBalancerPort, targets, healthCheck: healthCheckFromClassicElb(lb.HealthCheck ?? {}, { speedUp }) });
    }
    out.push(observed);
  }
  return out;
}
