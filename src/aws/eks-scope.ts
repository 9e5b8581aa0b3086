/**
 * The scope of the EKS families: a ClusterScope (provenance, plan, dry run,
 * signal) plus the EKS and IAM clients and the EKS cluster's own name, which
 * may differ from the Cluster's (AWSManagedControlPlane.spec.eksClusterName).
 */
import { EKSClient } from '@aws-sdk/client-eks';
import { IAMClient } from '@aws-sdk/client-iam';
import type { AwsClients } from '../core/aws.js';
import type { Logger } from '../core/logger.js';
import { makeScope, type ClusterScope } from './scope.js';
import { ownedTags, type Provenance } from './tags.js';

export interface EksScope extends ClusterScope {
  eks: EKSClient;
  iam: IAMClient;
  eksClusterName: string;
  /** How long one wait (cluster active, update done, node group active or gone) may take. */
  eksWaitMs: number;
  /** Delay between polls of a wait (tests shorten it). */
  pollMs: number;
}

/** EKS creates a control plane in about 10 minutes and deletes one in about 5: 30 minutes leaves room. */
export const DEFAULT_EKS_WAIT_MS = 30 * 60_000;

export function makeEksScope(
  aws: AwsClients,
  p: Provenance & { region: string; eksClusterName: string },
  options: { log: Logger; dryRun: boolean; signal: AbortSignal; eksWaitMs?: number; pollMs?: number },
): EksScope {
  const base = makeScope(aws, p, options);
  return {
    ...base,
    eks: aws.get(EKSClient, p.region),
    // IAM is global; its endpoint is the same from every region.
    iam: aws.get(IAMClient, p.region),
    eksClusterName: p.eksClusterName,
    eksWaitMs: options.eksWaitMs ?? DEFAULT_EKS_WAIT_MS,
    pollMs: options.pollMs ?? 10_000,
  };
}

/** The tags of an EKS resource capflow owns (EKS takes a map, not EC2's list). */
export function eksOwnedTags(scope: EksScope, role: string, name: string, extra: Record<string, string> = {}): Record<string, string> {
  return ownedTags(scope, role, name, extra);
}

/** "1.31" of "v1.31", "1.31" or "v1.31.4": EKS takes and reports minors only. */
export function eksMinor(version: string): string {
  const m = /^v?(\d+)\.(\d+)/.exec(version);
  return m ? `${m[1]}.${m[2]}` : version;
}

/** Minor versions between two EKS versions (1.30 -> 1.31 is 1). */
export function minorDistance(from: string, to: string): number {
  const minorOf = (v: string) => Number(eksMinor(v).split('.')[1]);
  return minorOf(to) - minorOf(from);
}

/** Elapsed time as EKS consoles show it: 6m12s. */
export function elapsed(sinceMs: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - sinceMs) / 1000));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** Every item of a paginated EKS List call (they all page with nextToken). */
export async function listAll<T>(page: (nextToken: string | undefined) => Promise<{ items: T[] | undefined; nextToken?: string | undefined }>): Promise<T[]> {
  const out: T[] = [];
  let nextToken: string | undefined;
  do {
    const p = await page(nextToken);
    out.push(...(p.items ?? []));
    nextToken = p.nextToken;
  } while (nextToken);
  return out;
}
