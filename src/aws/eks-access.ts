/**
 * EKS access entries (the API authentication mode): who may reach the
 * cluster, as which Kubernetes user and groups, with which EKS access
 * policies. Entries capflow made carry its ownership tags; only those are
 * changed or removed when the spec drops them. Entries EKS makes itself (the
 * node roles of managed node groups, the cluster creator) are left alone.
 */
import {
  AssociateAccessPolicyCommand,
  CreateAccessEntryCommand,
  DeleteAccessEntryCommand,
  DescribeAccessEntryCommand,
  DisassociateAccessPolicyCommand,
  ListAccessEntriesCommand,
  ListAssociatedAccessPoliciesCommand,
  UpdateAccessEntryCommand,
  type AccessScope,
} from '@aws-sdk/client-eks';
import { ConflictError } from '../core/errors.js';
import { awsErrorName } from './find.js';
import { eksOwnedTags, listAll, type EksScope } from './eks-scope.js';
import { ownershipOf } from './tags.js';

export interface DesiredAccessEntry {
  principalArn: string;
  /** STANDARD, EC2_LINUX, ... */
  type: string;
  username?: string;
  kubernetesGroups: string[];
  policies: Array<{ policyArn: string; scope: AccessScope }>;
}

function listEntries(scope: EksScope): Promise<string[]> {
  return listAll(async (nextToken) => {
    const page = await scope.eks.send(new ListAccessEntriesCommand({ clusterName: scope.eksClusterName, ...(nextToken ? { nextToken } : {}) }));
    return { items: page.accessEntries, nextToken: page.nextToken };
  });
}

const scopeKey = (s: AccessScope | undefined) => `${s?.type ?? 'cluster'}:${[...(s?.namespaces ?? [])].sort().join(',')}`;
const sameSet = (a: readonly string[], b: readonly string[]) => [...a].sort().join('\n') === [...b].sort().join('\n');

export async function reconcileAccessEntries(scope: EksScope, desired: readonly DesiredAccessEntry[]): Promise<void> {
  const clusterName = scope.eksClusterName;
  const existing = new Set(await listEntries(scope));
  for (const want of desired) {
    const name = want.principalArn;
    let owned = true;
    if (!existing.has(name)) {
      scope.plan.record({ resource: 'eks-access-entry', name, action: 'create', detail: `${want.type}${want.kubernetesGroups.length ? ` groups ${want.kubernetesGroups.join(',')}` : ''}` });
      if (!scope.dryRun) {
        try {
          await scope.eks.send(
            new CreateAccessEntryCommand({
              clusterName,
              principalArn: name,
              type: want.type,
              ...(want.username ? { username: want.username } : {}),
              ...(want.kubernetesGroups.length ? { kubernetesGroups: want.kubernetesGroups } : {}),
              tags: eksOwnedTags(scope, 'eks-access-entry', name),
            }),
          );
        } catch (err) {
          if (awsErrorName(err) !== 'ResourceInUseException') throw err;
        }
      }
    } else {
      const entry = (await scope.eks.send(new DescribeAccessEntryCommand({ clusterName, principalArn: name }))).accessEntry!;
      owned = ownershipOf(entry.tags ?? {}, scope.clusterName) === 'owned';
      if (entry.type && entry.type !== want.type) {
        throw new ConflictError('EKS_ACCESS_ENTRY_TYPE', `access entry ${name} has type ${entry.type}, the spec says ${want.type}; EKS cannot change an entry's type`, { hint: 'delete the entry, then run again' });
      }
      const groupsChanged = !sameSet(entry.kubernetesGroups ?? [], want.kubernetesGroups);
      const userChanged = want.username !== undefined && entry.username !== want.username;
      scope.plan.record({ resource: 'eks-access-entry', name, action: groupsChanged || userChanged ? 'update' : 'no-change', ...(groupsChanged || userChanged ? { detail: `groups ${want.kubernetesGroups.join(',') || '(none)'}` } : {}) });
      if ((groupsChanged || userChanged) && !scope.dryRun) {
        await scope.eks.send(new UpdateAccessEntryCommand({ clusterName, principalArn: name, kubernetesGroups: want.kubernetesGroups, ...(want.username ? { username: want.username } : {}) }));
      }
    }
    if (scope.dryRun && !existing.has(name)) {
      for (const p of want.policies) scope.plan.record({ resource: 'eks-access-policy', name: `${name} ${p.policyArn}`, action: 'create', detail: scopeKey(p.scope) });
      continue;
    }
    const associated = existing.has(name)
      ? ((await scope.eks.send(new ListAssociatedAccessPoliciesCommand({ clusterName, principalArn: name }))).associatedAccessPolicies ?? [])
      : [];
    for (const p of want.policies) {
      const have = associated.find((a) => a.policyArn === p.policyArn);
      if (have && scopeKey(have.accessScope) === scopeKey(p.scope)) continue;
      scope.plan.record({ resource: 'eks-access-policy', name: `${name} ${p.policyArn}`, action: have ? 'update' : 'create', detail: scopeKey(p.scope) });
      if (!scope.dryRun) await scope.eks.send(new AssociateAccessPolicyCommand({ clusterName, principalArn: name, policyArn: p.policyArn, accessScope: p.scope }));
    }
    // Policies the spec dropped: only from entries capflow owns (others may be managed elsewhere).
    for (const a of owned ? associated.filter((x) => !want.policies.some((p) => p.policyArn === x.policyArn)) : []) {
      scope.plan.record({ resource: 'eks-access-policy', name: `${name} ${a.policyArn}`, action: 'delete' });
      if (!scope.dryRun) await scope.eks.send(new DisassociateAccessPolicyCommand({ clusterName, principalArn: name, policyArn: a.policyArn! }));
    }
  }
  // Entries the spec dropped: deleted when capflow made them.
  for (const name of [...existing].filter((n) => !desired.some((d) => d.principalArn === n))) {
    const entry = (await scope.eks.send(new DescribeAccessEntryCommand({ clusterName, principalArn: name }))).accessEntry;
    if (!entry || ownershipOf(entry.tags ?? {}, scope.clusterName) !== 'owned') continue;
    scope.plan.record({ resource: 'eks-access-entry', name, action: 'delete' });
    if (scope.dryRun) continue;
    try {
      await scope.eks.send(new DeleteAccessEntryCommand({ clusterName, principalArn: name }));
    } catch (err) {
      if (awsErrorName(err) !== 'ResourceNotFoundException') throw err;
    }
  }
}
