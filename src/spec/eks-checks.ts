/**
 * Checks of an EKS cluster's spec that the CRD schemas cannot express and
 * that EKS would only refuse once capflow had started: names EKS refuses,
 * two node groups or addons under one name, access entries in a cluster
 * whose access mode ignores them, a MachinePool whose replicas lie outside
 * its node group's scaling, and what capflow does not make yet.
 */
import type { FieldProblems } from './locations.js';
import type { ClusterModel, SpecDocument } from './model.js';
import { isRecord } from './paths.js';

/** EKS cluster names: 1-100 letters, digits, - and _, starting with a letter or digit. */
const EKS_CLUSTER_NAME = /^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$/;
/** EKS node group names: 1-63 letters, digits, - and _, starting with a letter or digit. */
const NODEGROUP_NAME = /^[0-9A-Za-z][A-Za-z0-9_-]{0,62}$/;
/** The annotation that leaves a MachinePool's size to an autoscaler (Cluster API's). */
export const REPLICAS_MANAGED_BY = 'cluster.x-k8s.io/replicas-managed-by';

const specOf = (doc: SpecDocument): Record<string, unknown> => (isRecord(doc.object.spec) ? doc.object.spec : {});

export function checkEks(model: ClusterModel, p: FieldProblems): void {
  for (const doc of model.documents.filter((d) => d.kind === 'AWSManagedControlPlane')) {
    const spec = specOf(doc);
    const name = spec.eksClusterName;
    if (typeof name === 'string' && name !== '' && !EKS_CLUSTER_NAME.test(name)) {
      p.add(doc, ['spec', 'eksClusterName'], 'invalid-value', `"${name}" is not an EKS cluster name (1-100 letters, digits, - and _, starting with a letter or digit)`);
    }
    const access = isRecord(spec.accessConfig) ? spec.accessConfig : {};
    const mode = typeof access.authenticationMode === 'string' ? access.authenticationMode : 'config_map';
    if (Array.isArray(spec.accessEntries) && spec.accessEntries.length > 0 && mode === 'config_map') {
      p.add(doc, ['spec', 'accessEntries'], 'invalid-value', 'access entries need the API authentication mode; this cluster uses config_map (the default)', 'set spec.accessConfig.authenticationMode to api_and_config_map (or api)');
    }
    const seen = new Map<string, number>();
    (Array.isArray(spec.addons) ? spec.addons : []).forEach((a, i) => {
      const addon = isRecord(a) && typeof a.name === 'string' ? a.name : undefined;
      if (addon === undefined) return;
      if (seen.has(addon)) p.add(doc, ['spec', 'addons', i, 'name'], 'duplicate', `addon ${addon} is listed twice (also at spec.addons[${seen.get(addon)}])`);
      else seen.set(addon, i);
    });
  }

  const poolsByInfra = new Map(model.machinePools.map((mp) => [mp.infrastructure.metadata.name, mp.pool]));
  const groupNames = new Map<string, string>();
  for (const doc of model.documents.filter((d) => d.kind === 'AWSManagedMachinePool')) {
    const spec = specOf(doc);
    const group = typeof spec.eksNodegroupName === 'string' && spec.eksNodegroupName !== '' ? spec.eksNodegroupName : doc.name;
    const at = spec.eksNodegroupName ? ['spec', 'eksNodegroupName'] : ['metadata', 'name'];
    if (!NODEGROUP_NAME.test(group)) {
      p.add(doc, at, 'invalid-value', `"${group}" is not an EKS node group name (1-63 letters, digits, - and _, starting with a letter or digit)`);
    }
    const other = groupNames.get(group);
    if (other !== undefined) p.add(doc, at, 'duplicate', `node group ${group} is also made by AWSManagedMachinePool ${other}`);
    else groupNames.set(group, doc.name);
    if (spec.awsLaunchTemplate !== undefined) {
      p.add(doc, ['spec', 'awsLaunchTemplate'], 'unsupported-feature', 'capflow does not make launch templates for managed node groups yet', 'remove awsLaunchTemplate (EKS then uses its own), or use a MachinePool on an AWSMachinePool');
    }

    const pool = poolsByInfra.get(doc.name);
    if (!pool || pool.metadata.annotations?.[REPLICAS_MANAGED_BY] !== undefined) continue;
    const scaling = isRecord(spec.scaling) ? spec.scaling : {};
    const replicas = pool.spec.replicas ?? 1;
    const min = typeof scaling.minSize === 'number' ? scaling.minSize : undefined;
    const max = typeof scaling.maxSize === 'number' ? scaling.maxSize : undefined;
    if ((min !== undefined && replicas < min) || (max !== undefined && replicas > max)) {
      p.add({ kind: 'MachinePool', name: pool.metadata.name }, ['spec', 'replicas'], 'invalid-value', `replicas ${replicas} is outside the scaling of node group ${group} (${min ?? 0}..${max ?? '∞'})`, `set replicas within spec.scaling of AWSManagedMachinePool ${doc.name}, or annotate the MachinePool ${REPLICAS_MANAGED_BY} to leave the size to the autoscaler`);
    }
  }
}
