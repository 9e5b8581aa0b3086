/**
 * Everything a resource family's reconcile/delete needs for one cluster in
 * one region: the clients, the provenance to tag with, the plan to record
 * into, whether to act (dry run), and the signal that ends the run.
 */
import { EC2Client } from '@aws-sdk/client-ec2';
import { ElasticLoadBalancingClient } from '@aws-sdk/client-elastic-load-balancing';
import { ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import type { AwsClients } from '../core/aws.js';
import type { Logger } from '../core/logger.js';
import { Plan } from './plan.js';
import type { Provenance } from './tags.js';

export interface ClusterScope extends Provenance {
  region: string;
  ec2: EC2Client;
  elbv2: ElasticLoadBalancingV2Client;
  elb: ElasticLoadBalancingClient;
  log: Logger;
  plan: Plan;
  /** Record what would change, make no mutating call. */
  dryRun: boolean;
  signal: AbortSignal;
  /** Deadlines of waits (NAT available, LB active, dependencies gone). */
  timeouts: { natGatewayMs: number; loadBalancerMs: number; dependencyMs: number; instanceMs: number };
  /**
   * A safe point between resource families: throws PausedError when the cluster was paused
   * (the step's ctx.checkpoint, src/core/pause.ts). `phase` is the family about to start.
   */
  checkpoint: (phase: string) => Promise<void>;
}

export const DEFAULT_TIMEOUTS: ClusterScope['timeouts'] = {
  natGatewayMs: 10 * 60_000,
  loadBalancerMs: 10 * 60_000,
  dependencyMs: 15 * 60_000,
  instanceMs: 10 * 60_000,
};

export function makeScope(
  aws: AwsClients,
  p: Provenance & { region: string },
  options: { log: Logger; dryRun: boolean; signal: AbortSignal; timeouts?: Partial<ClusterScope['timeouts']>; checkpoint?: (phase: string) => Promise<void> },
): ClusterScope {
  return {
    ...p,
    ec2: aws.get(EC2Client, p.region),
    elbv2: aws.get(ElasticLoadBalancingV2Client, p.region),
    elb: aws.get(ElasticLoadBalancingClient, p.region),
    log: options.log,
    plan: new Plan(),
    dryRun: options.dryRun,
    signal: options.signal,
    timeouts: { ...DEFAULT_TIMEOUTS, ...(options.timeouts ?? {}) },
    checkpoint: options.checkpoint ?? (async () => undefined),
  };
}
