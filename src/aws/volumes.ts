/**
 * EBS volumes at teardown. capflow's own (root volumes of machines and the
 * bastion, CAPA ownership tag) go with their instances and are deleted if
 * one is left detached. Volumes the workload made (the EBS CSI driver or the
 * in-tree provisioner, tagged `kubernetes.io/cluster/<name>: owned`) hold
 * data: the policy decides. `retain` (the default, as CAPA, which never
 * deletes them) leaves them and reports each by id and tags; `delete` deletes
 * the detached ones. A volume tagged for another cluster, `shared`, or not
 * tagged for this one is never touched. The CSI driver sets the
 * kubernetes.io/cluster tag only when run with --k8s-tag-cluster-id; its
 * volumes without it (`ebs.csi.aws.com/cluster: true` alone) name no cluster,
 * so they are not found here.
 */
import { DeleteVolumeCommand, DescribeVolumesCommand, type Volume } from '@aws-sdk/client-ec2';
import { isNotFound } from './find.js';
import type { ClusterScope } from './scope.js';
import { capaClusterTag, fromTagList, k8sClusterTag } from './tags.js';

export type VolumePolicy = 'retain' | 'delete';
export const VOLUME_POLICIES: readonly VolumePolicy[] = ['retain', 'delete'];

/** What a teardown leaves on purpose or cannot remove, reported by id and tags. */
export interface LeftResource {
  kind: string;
  id: string;
  reason: string;
  tags: Record<string, string>;
}

/** DescribeVolumes filter values per call (EC2 takes at most 200 values in a filter). */
const FILTER_BATCH = 200;

async function describeVolumes(scope: ClusterScope, ids: string[]): Promise<Volume[]> {
  const out: Volume[] = [];
  for (let i = 0; i < ids.length; i += FILTER_BATCH) {
    let NextToken: string | undefined;
    do {
      // A filter, not VolumeIds: a volume gone since the census is no error.
      const page = await scope.ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'volume-id', Values: ids.slice(i, i + FILTER_BATCH) }], NextToken }), {
        abortSignal: scope.signal,
      });
      out.push(...(page.Volumes ?? []));
      NextToken = page.NextToken;
    } while (NextToken);
  }
  return out;
}

/**
 * Applies the policy to the volumes the census found owned (ids); returns what is left: retained
 * workload volumes, and volumes still attached (their instance is not ours to stop here).
 */
export async function deleteVolumes(scope: ClusterScope, ids: string[], policy: VolumePolicy): Promise<LeftResource[]> {
  if (ids.length === 0) return [];
  const left: LeftResource[] = [];
  for (const v of await describeVolumes(scope, ids)) {
    const id = v.VolumeId!;
    const tags = fromTagList(v.Tags);
    const values = [tags[capaClusterTag(scope.clusterName)], tags[k8sClusterTag(scope.clusterName)]];
    if (values.includes('shared') || !values.includes('owned')) continue;
    const ours = tags[capaClusterTag(scope.clusterName)] === 'owned';
    const name = tags.CSIVolumeName ?? tags['kubernetes.io/created-for/pvc/name'] ?? tags.Name ?? id;
    if (v.State === 'deleting' || v.State === 'deleted') continue;
    if (!ours && policy === 'retain') {
      scope.plan.record({ resource: 'volume', name, id, action: 'skip', detail: 'workload volume, retained (volumes=retain)' });
      left.push({ kind: 'volume', id, reason: 'workload volume retained (volumes=retain); pass volumes=delete to delete it', tags });
      continue;
    }
    if (v.State !== 'available') {
      const to = (v.Attachments ?? []).map((a) => a.InstanceId).filter(Boolean).join(', ');
      scope.plan.record({ resource: 'volume', name, id, action: 'skip', detail: `${v.State}${to ? ` (attached to ${to})` : ''}` });
      left.push({ kind: 'volume', id, reason: `${v.State}${to ? `, attached to ${to}` : ''}: not deleted`, tags });
      continue;
    }
    scope.plan.record({ resource: 'volume', name, id, action: 'delete', detail: ours ? 'capflow' : 'workload (volumes=delete)' });
    if (scope.dryRun) continue;
    scope.log.info('Deleting volume', { volumeId: id, name });
    await scope.ec2.send(new DeleteVolumeCommand({ VolumeId: id }), { abortSignal: scope.signal }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }
  return left;
}
