/**
 * The kinds a cluster folder may hold: where their schema comes from (an
 * upstream CRD file, one of our CRDs, or a small built-in schema for core
 * v1 objects) and the kinds we know but do not support yet.
 */

export type SchemaSource = 'capi' | 'capflow' | 'core';

export interface KindInfo {
  kind: string;
  /** API group ('' for core v1). */
  group: string;
  source: SchemaSource;
  /** CRD file name (`<group>_<plural>.yaml`) for 'capi' and 'capflow' kinds. */
  crdFile?: string;
}

function crd(kind: string, group: string, source: 'capi' | 'capflow' = 'capi', plural = `${kind.toLowerCase()}s`): KindInfo {
  return { kind, group, source, crdFile: `${group}_${plural}.yaml` };
}

export const CAPI_GROUP = 'cluster.x-k8s.io';
export const INFRA_GROUP = 'infrastructure.cluster.x-k8s.io';
export const CONTROLPLANE_GROUP = 'controlplane.cluster.x-k8s.io';
export const BOOTSTRAP_GROUP = 'bootstrap.cluster.x-k8s.io';
export const ADDONS_GROUP = 'addons.cluster.x-k8s.io';
export const CAPFLOW_GROUP = 'capflow.io';

export const SUPPORTED_KINDS: readonly KindInfo[] = [
  crd('Cluster', CAPI_GROUP),
  crd('MachineDeployment', CAPI_GROUP),
  crd('MachinePool', CAPI_GROUP),
  crd('MachineHealthCheck', CAPI_GROUP),
  crd('AWSCluster', INFRA_GROUP),
  crd('AWSMachineTemplate', INFRA_GROUP),
  crd('AWSMachinePool', INFRA_GROUP),
  crd('AWSManagedCluster', INFRA_GROUP),
  crd('AWSManagedMachinePool', INFRA_GROUP),
  crd('ByoCluster', INFRA_GROUP),
  crd('ByoMachineTemplate', INFRA_GROUP),
  crd('KubeadmControlPlane', CONTROLPLANE_GROUP),
  crd('AWSManagedControlPlane', CONTROLPLANE_GROUP),
  crd('KubeadmConfigTemplate', BOOTSTRAP_GROUP),
  crd('KubeadmConfig', BOOTSTRAP_GROUP),
  crd('EKSConfigTemplate', BOOTSTRAP_GROUP),
  crd('EKSConfig', BOOTSTRAP_GROUP),
  crd('ClusterResourceSet', ADDONS_GROUP),
  crd('ByoHostInventory', CAPFLOW_GROUP, 'capflow', 'byohostinventories'),
  crd('AddonChart', CAPFLOW_GROUP, 'capflow', 'addoncharts'),
  { kind: 'ConfigMap', group: '', source: 'core' },
  { kind: 'Secret', group: '', source: 'core' },
];

const BY_KIND = new Map(SUPPORTED_KINDS.map((k) => [k.kind, k]));

export function kindInfo(kind: string): KindInfo | undefined {
  return BY_KIND.get(kind);
}

/** Kinds we recognise but do not take in a cluster folder (yet), with what to do instead. */
export const UNSUPPORTED_KINDS: Readonly<Record<string, string>> = {
  ByoHost: 'ByoHost objects are registered by the BYOH host agent; list the hosts in a capflow.io/v1alpha1 ByoHostInventory instead',
  ClusterClass: 'ClusterClass (managed topologies) is not supported yet; write the Cluster and its templates explicitly',
  AWSClusterTemplate: 'ClusterClass templates are not supported yet; write an AWSCluster',
  KubeadmControlPlaneTemplate: 'ClusterClass templates are not supported yet; write a KubeadmControlPlane',
  AWSManagedControlPlaneTemplate: 'ClusterClass templates are not supported yet; write an AWSManagedControlPlane',
  Machine: 'single Machines are not supported; use a MachineDeployment (or the KubeadmControlPlane for control plane nodes)',
  MachineSet: 'MachineSets are managed by MachineDeployments; write a MachineDeployment',
  AWSMachine: 'AWSMachines are created from an AWSMachineTemplate; write an AWSMachineTemplate',
  ByoMachine: 'ByoMachines are created from a ByoMachineTemplate; write a ByoMachineTemplate',
  ClusterResourceSetBinding: 'ClusterResourceSetBindings are created by the controller; write only the ClusterResourceSet',
  AWSClusterControllerIdentity: 'AWS identities (identityRef) are not supported yet; capflow uses the executor credentials',
  AWSClusterRoleIdentity: 'AWS identities (identityRef) are not supported yet; capflow uses the executor credentials',
  AWSClusterStaticIdentity: 'AWS identities (identityRef) are not supported yet; capflow uses the executor credentials',
  ROSACluster: 'ROSA is not supported',
  ROSAControlPlane: 'ROSA is not supported',
  ROSAMachinePool: 'ROSA is not supported',
  AWSFargateProfile: 'EKS Fargate profiles are not supported yet',
};

export function groupOf(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.lastIndexOf('/');
  return slash < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

/** The minimal JSON schemas of the core v1 objects a ClusterResourceSet may reference. */
export const CORE_SCHEMAS: Readonly<Record<string, Record<string, unknown>>> = {
  ConfigMap: {
    type: 'object',
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      data: { type: 'object', additionalProperties: { type: 'string' } },
      binaryData: { type: 'object', additionalProperties: { type: 'string', format: 'byte' } },
      immutable: { type: 'boolean' },
    },
  },
  Secret: {
    type: 'object',
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      type: { type: 'string' },
      data: { type: 'object', additionalProperties: { type: 'string', format: 'byte' } },
      stringData: { type: 'object', additionalProperties: { type: 'string' } },
      immutable: { type: 'boolean' },
    },
  },
};
