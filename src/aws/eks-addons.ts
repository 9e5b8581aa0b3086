/**
 * EKS addons (vpc-cni, coredns, kube-proxy, aws-ebs-csi-driver, ...) at the
 * versions the spec pins, with its configuration values, service account
 * role and conflict resolution. Run after the control plane is at its
 * version, so an upgrade moves the control plane first, then its addons.
 * Addons capflow made and the spec dropped are removed; others are left.
 */
import {
  CreateAddonCommand,
  DeleteAddonCommand,
  DescribeAddonCommand,
  ListAddonsCommand,
  UpdateAddonCommand,
  type Addon,
  type ResolveConflicts,
} from '@aws-sdk/client-eks';
import { awsErrorName } from './find.js';
import { waitState, waitUpdate } from './eks-cluster.js';
import { eksOwnedTags, listAll, type EksScope } from './eks-scope.js';
import { ownershipOf } from './tags.js';

export interface DesiredAddon {
  name: string;
  version: string;
  configuration?: string;
  serviceAccountRoleArn?: string;
  /** overwrite | none | preserve in the spec. */
  resolveConflicts: ResolveConflicts;
}

function listAddons(scope: EksScope): Promise<string[]> {
  return listAll(async (nextToken) => {
    const page = await scope.eks.send(new ListAddonsCommand({ clusterName: scope.eksClusterName, ...(nextToken ? { nextToken } : {}) }));
    return { items: page.addons, nextToken: page.nextToken };
  });
}

async function describeAddon(scope: EksScope, addonName: string): Promise<Addon | undefined> {
  try {
    return (await scope.eks.send(new DescribeAddonCommand({ clusterName: scope.eksClusterName, addonName }))).addon;
  } catch (err) {
    if (awsErrorName(err) === 'ResourceNotFoundException') return undefined;
    throw err;
  }
}

/**
 * Until nodes exist, coredns and the CSI driver cannot run: EKS reports them DEGRADED. That is
 * their normal state before the node groups (the next step) are up, so it ends the wait.
 */
async function waitSettled(scope: EksScope, addonName: string): Promise<Addon> {
  return waitState(scope, `EKS addon ${addonName}`, async () => {
    const a = await describeAddon(scope, addonName);
    const status = a?.status ?? 'NOT FOUND';
    if (status === 'CREATE_FAILED' || status === 'UPDATE_FAILED') {
      return { state: status, failed: (a?.health?.issues ?? []).map((i) => `${i.code}: ${i.message}`).join('; ') || 'no reason given' };
    }
    return { state: status, ...(a && (status === 'ACTIVE' || status === 'DEGRADED') ? { done: a } : {}) };
  });
}

export async function reconcileAddons(scope: EksScope, desired: readonly DesiredAddon[]): Promise<void> {
  const clusterName = scope.eksClusterName;
  const existing = new Set(await listAddons(scope));
  for (const want of desired) {
    const current = existing.has(want.name) ? await describeAddon(scope, want.name) : undefined;
    if (!current) {
      scope.plan.record({ resource: 'eks-addon', name: want.name, action: 'create', detail: want.version });
      if (scope.dryRun) continue;
      try {
        await scope.eks.send(
          new CreateAddonCommand({
            clusterName,
            addonName: want.name,
            addonVersion: want.version,
            resolveConflicts: want.resolveConflicts,
            ...(want.configuration ? { configurationValues: want.configuration } : {}),
            ...(want.serviceAccountRoleArn ? { serviceAccountRoleArn: want.serviceAccountRoleArn } : {}),
            tags: eksOwnedTags(scope, 'eks-addon', want.name),
          }),
        );
        scope.log.info('Creating EKS addon', { addon: want.name, version: want.version });
      } catch (err) {
        if (awsErrorName(err) !== 'ResourceInUseException') throw err;
      }
      const settled = await waitSettled(scope, want.name);
      if (settled.status === 'DEGRADED') scope.log.warn(`EKS addon ${want.name} is DEGRADED (normal until nodes join)`);
      continue;
    }
    const changes = [
      ...(current.addonVersion !== want.version ? [`version ${current.addonVersion} -> ${want.version}`] : []),
      ...((current.configurationValues ?? '') !== (want.configuration ?? '') ? ['configuration'] : []),
      ...((current.serviceAccountRoleArn ?? '') !== (want.serviceAccountRoleArn ?? '') ? ['service account role'] : []),
    ];
    scope.plan.record({ resource: 'eks-addon', name: want.name, id: current.addonArn!, action: changes.length ? 'update' : 'no-change', ...(changes.length ? { detail: changes.join('; ') } : {}) });
    if (scope.dryRun) continue;
    // A crashed run's update may still be going on: let it end before judging or starting another.
    if (current.status === 'CREATING' || current.status === 'UPDATING') await waitSettled(scope, want.name);
    if (changes.length === 0) continue;
    const { update } = await scope.eks.send(
      new UpdateAddonCommand({
        clusterName,
        addonName: want.name,
        addonVersion: want.version,
        resolveConflicts: want.resolveConflicts,
        configurationValues: want.configuration ?? '',
        ...(want.serviceAccountRoleArn ? { serviceAccountRoleArn: want.serviceAccountRoleArn } : {}),
      }),
    );
    scope.log.info(`Updating EKS addon ${want.name}: ${changes.join('; ')}`);
    if (update) await waitUpdate(scope, update, { addonName: want.name });
    await waitSettled(scope, want.name);
  }
  for (const name of [...existing].filter((n) => !desired.some((d) => d.name === n))) {
    const a = await describeAddon(scope, name);
    if (!a || ownershipOf(a.tags ?? {}, scope.clusterName) !== 'owned') continue;
    scope.plan.record({ resource: 'eks-addon', name, id: a.addonArn!, action: 'delete', detail: 'no longer in the spec' });
    if (scope.dryRun || a.status === 'DELETING') continue;
    try {
      await scope.eks.send(new DeleteAddonCommand({ clusterName, addonName: name }));
    } catch (err) {
      if (awsErrorName(err) !== 'ResourceNotFoundException') throw err;
    }
  }
}
