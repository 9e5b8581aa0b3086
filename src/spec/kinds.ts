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

/**
 * Kinds we recognise but do not take in a cluster folder (yet), with what to do instead. Every
 * upstream kind of both schema lines (shared/schemas/capi/ and capi-v1.11/) that capflow does not
 * act on is listed, plus the upstream kinds whose CRDs we do not carry (ROSA, runtime, IPAM, the
 * rest of the BYOH provider, the AWS provider's newer templates and principals): they
 * all get the same `unsupported-kind` problem ("kind X is not supported yet"), never "unknown kind,
 * did you mean…". A test keeps this list complete against the schema folders.
 */
export const UNSUPPORTED_KINDS: Readonly<Record<string, string>> = {
  ByoHost: 'ByoHost objects are registered by the BYOH host agent; list the hosts in a capflow.io/v1alpha1 ByoHostInventory instead',
  Machine: 'single Machines are not supported; use a MachineDeployment (or the KubeadmControlPlane for control plane nodes)',
  MachineSet: 'MachineSets are managed by MachineDeployments; write a MachineDeployment',
  MachineDrainRule: 'MachineDrainRules are not supported yet; capflow drains nodes with its own defaults',
  AWSMachine: 'AWSMachines are created from an AWSMachineTemplate; write an AWSMachineTemplate',
  ByoMachine: 'ByoMachines are created from a ByoMachineTemplate; write a ByoMachineTemplate',
  ByoClusterTemplate: 'ClusterClass templates are not supported yet; write a ByoCluster',
  K8sInstallerConfig: 'BYOH installer configs are not supported yet; capflow installs the Kubernetes components itself',
  K8sInstallerConfigTemplate: 'BYOH installer configs are not supported yet; capflow installs the Kubernetes components itself',
  BootstrapKubeconfig: 'BYOH host registration kubeconfigs are not supported yet; list the hosts in a capflow.io/v1alpha1 ByoHostInventory',
  ClusterResourceSetBinding: 'ClusterResourceSetBindings are created by the controller; write only the ClusterResourceSet',
  AWSClusterControllerIdentity: 'AWS identities (identityRef) are not supported yet; capflow uses the executor credentials',
  AWSClusterRoleIdentity: 'AWS identities (identityRef) are not supported yet; capflow uses the executor credentials',
  AWSClusterStaticIdentity: 'AWS identities (identityRef) are not supported yet; capflow uses the executor credentials',
  AWSServiceAccountIdentity: 'AWS identities (identityRef) are not supported yet; capflow uses the executor credentials',
  AWSClusterRolePrincipal: 'AWS identities (identityRef) are not supported yet; capflow uses the executor credentials',
  AWSClusterStaticPrincipal: 'AWS identities (identityRef) are not supported yet; capflow uses the executor credentials',
  AWSServiceAccountPrincipal: 'AWS identities (identityRef) are not supported yet; capflow uses the executor credentials',
  AWSFargateProfile: 'EKS Fargate profiles are not supported yet; use an AWSManagedMachinePool',
  NodeadmConfig: 'nodeadm (AL2023 EKS) bootstrap is not supported yet; use an EKSConfig',
  NodeadmConfigTemplate: 'nodeadm (AL2023 EKS) bootstrap is not supported yet; use an EKSConfigTemplate',
  ROSACluster: 'ROSA (Red Hat OpenShift Service on AWS) is not supported yet',
  ROSAControlPlane: 'ROSA (Red Hat OpenShift Service on AWS) is not supported yet',
  ROSAMachinePool: 'ROSA (Red Hat OpenShift Service on AWS) is not supported yet',
  ROSANetwork: 'ROSA (Red Hat OpenShift Service on AWS) is not supported yet',
  ROSARoleConfig: 'ROSA (Red Hat OpenShift Service on AWS) is not supported yet',
  ROSAOCMRoleConfig: 'ROSA (Red Hat OpenShift Service on AWS) is not supported yet',
  ExtensionConfig: 'Runtime SDK extensions are not supported yet',
  IPAddress: 'IPAM objects are not supported yet',
  IPAddressClaim: 'IPAM objects are not supported yet',
};

/**
 * The ClusterClass kinds: read by the topology expansion (topology.ts) for the Cluster whose
 * spec.topology names the class, never acted on as documents of their own (the expanded objects are).
 */
export const TOPOLOGY_KINDS: ReadonlySet<string> = new Set(['ClusterClass', 'AWSClusterTemplate', 'AWSManagedClusterTemplate', 'KubeadmControlPlaneTemplate', 'AWSManagedControlPlaneTemplate', 'AWSMachinePoolTemplate', 'AWSManagedMachinePoolTemplate']);

/**
 * The upstream schema lines capflow judges specs against, oldest first: each is a folder of CRDs
 * under the schemas root (shared/schemas or $CAPFLOW_SCHEMAS_DIR). The AWS provider serves its
 * kinds as v1beta2 in both lines, with more fields in v2.11; Cluster API v1.11 adds v1beta2
 * (a new shape) beside v1beta1.
 */
export const CAPI_LINES = [
  { line: 'v1.10', folder: 'capi', label: 'Cluster API v1.10 / AWS provider v2.9' },
  { line: 'v1.11', folder: 'capi-v1.11', label: 'Cluster API v1.11 / AWS provider v2.11' },
] as const;

export type CapiLine = (typeof CAPI_LINES)[number]['line'];

/** Which line(s) a folder targets: one line, or 'auto' (every line, see validate.ts). */
export type CapiLineChoice = CapiLine | 'auto';

/** The Cluster annotation that names the line a folder targets. */
export const CAPI_LINE_ANNOTATION = 'capflow.io/capi-line';

export function isCapiLineChoice(v: unknown): v is CapiLineChoice {
  return v === 'auto' || CAPI_LINES.some((l) => l.line === v);
}

/**
 * Cluster API kinds whose v1beta2 shape (Cluster API v1.11) differs from v1beta1 in fields the
 * model acts on (references as apiGroup, KubeadmControlPlane.spec.machineTemplate.spec, rollout
 * and deletion settings, kubeadm extraArgs as lists): such documents are
 * judged by their v1beta2 schema, then refused as 'unsupported-feature' until the model reads them.
 * (A v1beta2 MachineHealthCheck is read: src/spec/health-checks.ts takes both shapes.)
 */
export const V1BETA2_NOT_ACTED_ON: ReadonlySet<string> = new Set([
  'Cluster',
  'MachineDeployment',
  'MachinePool',
  'KubeadmControlPlane',
  'KubeadmConfig',
  'KubeadmConfigTemplate',
  'ClusterResourceSet',
]);

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
