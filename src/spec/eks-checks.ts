/**
 * Checks of an EKS cluster's spec that the CRD schemas cannot express and
 * that EKS would only refuse once capflow had started: names EKS refuses,
 * two node groups or addons under one name, access entries or aws-auth
 * mappings in a cluster whose access mode ignores them, a MachinePool whose replicas lie outside
 * its node group's scaling, what EKS refuses in (or next to) a managed node
 * group's launch template, and what capflow does not make yet.
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
    const mappings = isRecord(spec.iamAuthenticatorConfig) ? spec.iamAuthenticatorConfig : {};
    if (mode === 'api' && ((Array.isArray(mappings.mapRoles) && mappings.mapRoles.length > 0) || (Array.isArray(mappings.mapUsers) && mappings.mapUsers.length > 0))) {
      p.add(doc, ['spec', 'iamAuthenticatorConfig'], 'invalid-value', 'the api authentication mode ignores the aws-auth ConfigMap, so these mappings would grant nothing', 'write them as spec.accessEntries, or use authenticationMode api_and_config_map');
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
    if (isRecord(spec.awsLaunchTemplate)) checkNodegroupLaunchTemplate(doc, spec, spec.awsLaunchTemplate, p);

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

const LT = ['spec', 'awsLaunchTemplate'] as const;

/**
 * An AWSManagedMachinePool's awsLaunchTemplate: the fields EKS refuses in a managed node group's
 * launch template, the node group fields EKS refuses next to one, and the template fields capflow
 * does not make for a node group. Each at its own file:line, before any AWS call.
 */
function checkNodegroupLaunchTemplate(doc: SpecDocument, spec: Record<string, unknown>, lt: Record<string, unknown>, p: FieldProblems): void {
  const set = (v: unknown) => v !== undefined && v !== null && v !== '';
  if (set(lt.iamInstanceProfile)) {
    p.add(doc, [...LT, 'iamInstanceProfile'], 'invalid-value', 'EKS refuses an instance profile in a managed node group\'s launch template: the nodes take the node group\'s IAM role', 'remove it; name the role in spec.roleName (default: the nodes\' role eks-control-plane makes)');
  }
  if (set(lt.spotMarketOptions)) {
    p.add(doc, [...LT, 'spotMarketOptions'], 'invalid-value', 'EKS refuses spot options in a managed node group\'s launch template', 'remove it and set spec.capacityType: spot');
  }
  if (set(lt.marketType) && lt.marketType !== 'OnDemand') {
    p.add(doc, [...LT, 'marketType'], 'invalid-value', `EKS takes a managed node group's market from its capacity type, not from the launch template (marketType ${String(lt.marketType)})`, 'remove it and set spec.capacityType (spot or onDemand)');
  }
  if (set(spec.diskSize)) {
    p.add(doc, ['spec', 'diskSize'], 'invalid-value', 'EKS refuses a node group disk size next to a launch template', 'remove diskSize and set awsLaunchTemplate.rootVolume.size');
  }
  if (set(spec.remoteAccess)) {
    p.add(doc, ['spec', 'remoteAccess'], 'invalid-value', 'EKS refuses remote access next to a launch template', 'remove remoteAccess; set awsLaunchTemplate.sshKeyName (and awsLaunchTemplate.additionalSecurityGroups for SSH sources)');
  }
  if (set(spec.instanceType) && set(lt.instanceType)) {
    p.add(doc, ['spec', 'instanceType'], 'invalid-value', `EKS refuses an instance type on the node group when its launch template names one (${String(lt.instanceType)})`, 'keep one: remove spec.instanceType, or awsLaunchTemplate.instanceType');
  }
  const ami = isRecord(lt.ami) ? lt.ami : {};
  if (set(ami.id) && set(spec.amiVersion)) {
    p.add(doc, ['spec', 'amiVersion'], 'invalid-value', 'EKS refuses a release version for a node group whose launch template names its own AMI (ami.id)', 'remove amiVersion: the AMI is the release');
  }
  for (const field of ['imageLookupFormat', 'imageLookupOrg', 'imageLookupBaseOS', 'capacityReservationId', 'capacityReservationPreference', 'privateDnsName']) {
    if (set(lt[field])) {
      p.add(doc, [...LT, field], 'unsupported-feature', `awsLaunchTemplate.${field} on a managed node group is not supported yet`, field.startsWith('imageLookup') ? 'name the image in ami.id, or remove it (EKS then picks its own image of spec.amiType)' : 'remove it');
    }
  }
  (Array.isArray(lt.additionalSecurityGroups) ? lt.additionalSecurityGroups : []).forEach((g, i) => {
    if (!isRecord(g) || typeof g.id !== 'string' || g.id === '') {
      p.add(doc, [...LT, 'additionalSecurityGroups', i], 'unsupported-feature', 'security groups by filter are not supported yet for a managed node group\'s launch template', 'name the security group by id');
    }
  });
}
