/**
 * The internet gateway of a VPC capflow manages: found by ownership tag,
 * created tagged and attached; on delete detached, then deleted.
 */
import {
  AttachInternetGatewayCommand,
  CreateInternetGatewayCommand,
  DeleteInternetGatewayCommand,
  DescribeInternetGatewaysCommand,
  DetachInternetGatewayCommand,
  type InternetGateway,
} from '@aws-sdk/client-ec2';
import { ConflictError } from '../core/errors.js';
import { expectAtMostOne, found, isNotFound, type Found } from './find.js';
import type { ClusterScope } from './scope.js';
import { fromTagList, ownedFilters, ownedTags, tagSpecifications } from './tags.js';
import { deleteWaitingForDependencies, isPlaceholder, placeholder, specTags, type TagUpdates } from './vpc.js';

export const IGW_ROLE = 'common';

export function internetGatewayName(clusterName: string): string {
  return `${clusterName}-igw`;
}

/** The cluster's owned internet gateways, in one call. */
export async function describeInternetGateways(scope: ClusterScope): Promise<Array<Found<InternetGateway>>> {
  const out = await scope.ec2.send(new DescribeInternetGatewaysCommand({ Filters: ownedFilters(scope.clusterName) }));
  return (out.InternetGateways ?? []).map((g) => found(g, g.InternetGatewayId, fromTagList(g.Tags), scope.clusterName));
}

export async function reconcileInternetGateway(
  scope: ClusterScope,
  input: { vpcId: string; existing: Array<Found<InternetGateway>>; tagUpdates: TagUpdates },
): Promise<string> {
  const name = internetGatewayName(scope.clusterName);
  const have = expectAtMostOne(input.existing, 'internet gateway', name, scope.clusterName);
  if (have) {
    const attachedTo = (have.item.Attachments ?? []).map((a) => a.VpcId).filter((v): v is string => !!v);
    const elsewhere = attachedTo.filter((v) => v !== input.vpcId);
    if (elsewhere.length > 0) {
      throw new ConflictError('AWS_IGW_ATTACHED_ELSEWHERE', `internet gateway ${have.id} is attached to ${elsewhere.join(', ')}, not to the cluster's VPC ${input.vpcId}`, {
        hint: `detach it (aws ec2 detach-internet-gateway --internet-gateway-id ${have.id} --vpc-id ${elsewhere[0]}) or delete it, then run again`,
      });
    }
    const details: string[] = [];
    const tagDetail = input.tagUpdates.diff(have.id, have.tags, specTags(scope));
    if (tagDetail) details.push(tagDetail);
    if (!attachedTo.includes(input.vpcId)) {
      details.push(`attach to ${input.vpcId}`);
      if (!scope.dryRun && !isPlaceholder(input.vpcId)) await attach(scope, have.id, input.vpcId);
    }
    scope.plan.record({ resource: 'internet-gateway', name, id: have.id, action: details.length > 0 ? 'update' : 'no-change', ...(details.length > 0 ? { detail: details.join('; ') } : {}) });
    return have.id;
  }
  scope.plan.record({ resource: 'internet-gateway', name, action: 'create', detail: `attached to ${input.vpcId}` });
  if (scope.dryRun) return placeholder('internet-gateway', name);
  scope.log.info('Creating internet gateway', { name, vpcId: input.vpcId });
  const out = await scope.ec2.send(new CreateInternetGatewayCommand({ TagSpecifications: tagSpecifications('internet-gateway', ownedTags(scope, IGW_ROLE, name)) }));
  const id = out.InternetGateway!.InternetGatewayId!;
  await attach(scope, id, input.vpcId);
  return id;
}

async function attach(scope: ClusterScope, id: string, vpcId: string): Promise<void> {
  scope.log.info('Attaching internet gateway', { internetGatewayId: id, vpcId });
  await scope.ec2.send(new AttachInternetGatewayCommand({ InternetGatewayId: id, VpcId: vpcId }));
}

/** Detaches and deletes the owned gateways; detaching waits out public addresses still mapped in the VPC. */
export async function deleteInternetGateways(scope: ClusterScope, gateways: Array<Found<InternetGateway>>): Promise<void> {
  for (const g of gateways) {
    if (g.ownership !== 'owned') continue;
    scope.plan.record({ resource: 'internet-gateway', name: g.tags.Name ?? g.id, id: g.id, action: 'delete' });
    if (scope.dryRun) continue;
    for (const a of g.item.Attachments ?? []) {
      if (!a.VpcId) continue;
      scope.log.info('Detaching internet gateway', { internetGatewayId: g.id, vpcId: a.VpcId });
      await deleteWaitingForDependencies(scope, `internet gateway ${g.id} attachment to ${a.VpcId}`, () =>
        scope.ec2.send(new DetachInternetGatewayCommand({ InternetGatewayId: g.id, VpcId: a.VpcId })).catch((err: unknown) => {
          // Already detached: the next step deletes it.
          if (isNotFound(err) || (err as { name?: string }).name === 'Gateway.NotAttached') return undefined;
          throw err;
        }),
      );
    }
    scope.log.info('Deleting internet gateway', { internetGatewayId: g.id });
    await deleteWaitingForDependencies(scope, `internet gateway ${g.id}`, () => scope.ec2.send(new DeleteInternetGatewayCommand({ InternetGatewayId: g.id })));
  }
}
