/**
 * The normalized cluster model: every document of the folder, typed for the
 * fields capflow uses (the rest stays reachable through index signatures),
 * with schema defaults applied and references resolved.
 */

export type Provider = 'aws' | 'eks' | 'byoh';

/** Open-ended rest of an object: fields capflow does not use yet. */
export type Rest = Record<string, unknown>;

export interface ObjectMeta {
  name: string;
  /** Always set ("default" when the file leaves it out). */
  namespace: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

export interface ObjectReference {
  apiVersion?: string;
  kind: string;
  name: string;
  namespace?: string;
  [field: string]: unknown;
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

/** A Kubernetes object of kind K with a typed spec. */
export interface Resource<K extends string, S> {
  apiVersion: string;
  kind: K;
  metadata: ObjectMeta;
  spec: S;
  [field: string]: unknown;
}

// --- Cluster API core -------------------------------------------------------

export interface ClusterNetwork {
  apiServerPort?: number;
  pods?: { cidrBlocks: string[] };
  services?: { cidrBlocks: string[] };
  serviceDomain?: string;
  [field: string]: unknown;
}

export interface APIEndpoint {
  host: string;
  port: number;
}

export interface ClusterSpec {
  clusterNetwork?: ClusterNetwork;
  controlPlaneEndpoint?: APIEndpoint;
  controlPlaneRef?: ObjectReference;
  infrastructureRef?: ObjectReference;
  paused?: boolean;
  [field: string]: unknown;
}
export type Cluster = Resource<'Cluster', ClusterSpec>;

export interface Bootstrap {
  configRef?: ObjectReference;
  dataSecretName?: string;
}

export interface MachineTemplateSpec {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: {
    clusterName: string;
    bootstrap: Bootstrap;
    infrastructureRef: ObjectReference;
    version?: string;
    failureDomain?: string;
    nodeDrainTimeout?: string;
    [field: string]: unknown;
  };
}

export interface MachineDeploymentSpec {
  clusterName: string;
  replicas?: number;
  selector: LabelSelector;
  template: MachineTemplateSpec;
  strategy?: Rest;
  minReadySeconds?: number;
  paused?: boolean;
  [field: string]: unknown;
}
export type MachineDeployment = Resource<'MachineDeployment', MachineDeploymentSpec>;

export interface MachinePoolSpec {
  clusterName: string;
  replicas?: number;
  failureDomains?: string[];
  template: MachineTemplateSpec;
  [field: string]: unknown;
}
export type MachinePool = Resource<'MachinePool', MachinePoolSpec>;

export interface MachineHealthCheckSpec {
  clusterName: string;
  selector: LabelSelector;
  unhealthyConditions?: Array<{ type: string; status: string; timeout: string }>;
  maxUnhealthy?: number | string;
  unhealthyRange?: string;
  nodeStartupTimeout?: string;
  [field: string]: unknown;
}
export type MachineHealthCheck = Resource<'MachineHealthCheck', MachineHealthCheckSpec>;

// --- kubeadm ----------------------------------------------------------------

export interface KubeadmFile {
  path: string;
  content?: string;
  contentFrom?: { secret: { name: string; key: string } };
  owner?: string;
  permissions?: string;
  encoding?: string;
  append?: boolean;
}

export interface KubeadmConfigSpec {
  clusterConfiguration?: Rest;
  initConfiguration?: Rest;
  joinConfiguration?: Rest;
  files?: KubeadmFile[];
  preKubeadmCommands?: string[];
  postKubeadmCommands?: string[];
  users?: Rest[];
  ntp?: Rest;
  format?: 'cloud-config' | 'ignition';
  mounts?: string[][];
  [field: string]: unknown;
}

export interface KubeadmControlPlaneSpec {
  replicas?: number;
  version: string;
  machineTemplate: { infrastructureRef: ObjectReference; metadata?: Rest; [field: string]: unknown };
  kubeadmConfigSpec: KubeadmConfigSpec;
  rolloutStrategy?: Rest;
  [field: string]: unknown;
}
export type KubeadmControlPlane = Resource<'KubeadmControlPlane', KubeadmControlPlaneSpec>;
export type KubeadmConfigTemplate = Resource<'KubeadmConfigTemplate', { template: { spec: KubeadmConfigSpec; [field: string]: unknown } }>;
export type KubeadmConfig = Resource<'KubeadmConfig', KubeadmConfigSpec>;
export type EKSConfigTemplate = Resource<'EKSConfigTemplate', { template: { spec: Rest } }>;
export type EKSConfig = Resource<'EKSConfig', Rest>;

// --- AWS (CAPA) ---------------------------------------------------------------

export interface AWSSubnet {
  id?: string;
  cidrBlock?: string;
  availabilityZone?: string;
  isPublic?: boolean;
  tags?: Record<string, string>;
  [field: string]: unknown;
}

export interface AWSNetworkSpec {
  vpc?: {
    id?: string;
    cidrBlock?: string;
    availabilityZoneUsageLimit?: number;
    availabilityZoneSelection?: string;
    tags?: Record<string, string>;
    [field: string]: unknown;
  };
  subnets?: AWSSubnet[];
  cni?: Rest;
  [field: string]: unknown;
}

export interface AWSLoadBalancerSpec {
  loadBalancerType?: 'classic' | 'elb' | 'alb' | 'nlb' | 'disabled';
  scheme?: 'internet-facing' | 'internal';
  healthCheckProtocol?: string;
  crossZoneLoadBalancing?: boolean;
  [field: string]: unknown;
}

export interface AWSClusterSpec {
  region?: string;
  sshKeyName?: string;
  network?: AWSNetworkSpec;
  controlPlaneLoadBalancer?: AWSLoadBalancerSpec;
  controlPlaneEndpoint?: APIEndpoint;
  additionalTags?: Record<string, string>;
  bastion?: Rest;
  [field: string]: unknown;
}
export type AWSCluster = Resource<'AWSCluster', AWSClusterSpec>;

export interface AWSResourceReference {
  id?: string;
  filters?: Array<{ name: string; values: string[] }>;
}

export interface SpotMarketOptions {
  maxPrice?: string;
}

export interface AWSMachineSpec {
  instanceType: string;
  ami?: { id?: string; eksLookupType?: string };
  imageLookupOrg?: string;
  imageLookupBaseOS?: string;
  iamInstanceProfile?: string;
  sshKeyName?: string;
  rootVolume?: { size: number; type?: string; encrypted?: boolean; [field: string]: unknown };
  spotMarketOptions?: SpotMarketOptions;
  subnet?: AWSResourceReference;
  additionalSecurityGroups?: AWSResourceReference[];
  additionalTags?: Record<string, string>;
  publicIP?: boolean;
  [field: string]: unknown;
}
export type AWSMachineTemplate = Resource<'AWSMachineTemplate', { template: { spec: AWSMachineSpec; [field: string]: unknown } }>;

export interface AWSLaunchTemplate {
  instanceType?: string;
  ami?: { id?: string; eksLookupType?: string };
  iamInstanceProfile?: string;
  sshKeyName?: string;
  rootVolume?: Rest;
  spotMarketOptions?: SpotMarketOptions;
  additionalSecurityGroups?: AWSResourceReference[];
  [field: string]: unknown;
}

export interface MixedInstancesPolicy {
  instancesDistribution?: {
    onDemandAllocationStrategy?: string;
    spotAllocationStrategy?: string;
    onDemandBaseCapacity?: number;
    onDemandPercentageAboveBaseCapacity?: number;
  };
  overrides?: Array<{ instanceType: string }>;
}

export interface AWSMachinePoolSpec {
  minSize: number;
  maxSize: number;
  availabilityZones?: string[];
  subnets?: AWSResourceReference[];
  awsLaunchTemplate: AWSLaunchTemplate;
  mixedInstancesPolicy?: MixedInstancesPolicy;
  capacityRebalance?: boolean;
  additionalTags?: Record<string, string>;
  [field: string]: unknown;
}
export type AWSMachinePool = Resource<'AWSMachinePool', AWSMachinePoolSpec>;

export type AWSManagedCluster = Resource<'AWSManagedCluster', { controlPlaneEndpoint?: APIEndpoint; [field: string]: unknown }>;

export interface AWSManagedControlPlaneSpec {
  eksClusterName?: string;
  region?: string;
  version?: string;
  network?: AWSNetworkSpec;
  endpointAccess?: { public?: boolean; private?: boolean; publicCIDRs?: string[] };
  addons?: Array<{ name: string; version: string; [field: string]: unknown }>;
  roleName?: string;
  sshKeyName?: string;
  logging?: Rest;
  [field: string]: unknown;
}
export type AWSManagedControlPlane = Resource<'AWSManagedControlPlane', AWSManagedControlPlaneSpec>;

export interface AWSManagedMachinePoolSpec {
  eksNodegroupName?: string;
  instanceType?: string;
  capacityType?: 'onDemand' | 'spot';
  amiType?: string;
  diskSize?: number;
  scaling?: { minSize?: number; maxSize?: number };
  subnetIDs?: string[];
  availabilityZones?: string[];
  labels?: Record<string, string>;
  taints?: Array<{ key: string; value?: string; effect: string }>;
  roleName?: string;
  updateConfig?: Rest;
  [field: string]: unknown;
}
export type AWSManagedMachinePool = Resource<'AWSManagedMachinePool', AWSManagedMachinePoolSpec>;

// --- BYOH ---------------------------------------------------------------------

export type ByoCluster = Resource<'ByoCluster', { bundleLookupBaseRegistry?: string; controlPlaneEndpoint?: APIEndpoint; [field: string]: unknown }>;
export type ByoMachineTemplate = Resource<
  'ByoMachineTemplate',
  { template: { spec: { selector?: LabelSelector; installerRef?: ObjectReference; [field: string]: unknown } } }
>;

// --- addons ---------------------------------------------------------------------

export type ClusterResourceSet = Resource<
  'ClusterResourceSet',
  { clusterSelector: LabelSelector; resources?: Array<{ kind: 'ConfigMap' | 'Secret'; name: string }>; strategy?: 'ApplyOnce' | 'Reconcile' | '' }
>;

export interface ConfigMap {
  apiVersion: 'v1';
  kind: 'ConfigMap';
  metadata: ObjectMeta;
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
  immutable?: boolean;
}

export interface Secret {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: ObjectMeta;
  type?: string;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  immutable?: boolean;
}

// --- capflow.io/v1alpha1 ------------------------------------------------------

export interface InventoryHost {
  name: string;
  address: string;
  user: string;
  /** Default 22. */
  port: number;
  /**
   * The pinned host key: an OpenSSH public key line (`ssh-ed25519 AAAA... [comment]`) or a SHA256
   * fingerprint as `ssh-keygen -lf` prints it (`SHA256:` + 43 unpadded base64 characters).
   * Absent only with trustOnFirstUse.
   */
  hostKey?: string;
  /** Accept the key seen on first connection (and report it as a suggested change). Default false. */
  trustOnFirstUse?: boolean;
  labels?: Record<string, string>;
}

/** A bastion every SSH connection to the hosts goes through. */
export interface InventoryJumpHost {
  address: string;
  /** Default 22. */
  port: number;
  user: string;
  /** Pinned, in either form InventoryHost.hostKey takes. */
  hostKey: string;
}

/** Where the hosts get kubeadm, kubelet and kubectl: at most one of the two; neither means pkgs.k8s.io for the cluster's minor. */
export interface InventoryPackages {
  /** http(s) URL of a Kubernetes package repository: the deb repository (Debian-like hosts) or rpm baseurl (RHEL-like). */
  repository?: string;
  /** An absolute directory on each host holding an offline bundle (.deb/.rpm packages or the binaries). */
  bundlePath?: string;
}

export const KUBE_VIP_DEFAULT_IMAGE = 'ghcr.io/kube-vip/kube-vip:v0.8.9';

/** What serves ByoCluster.spec.controlPlaneEndpoint. */
export interface InventoryApiServerLoadBalancer {
  /** kube-vip (the default): a static pod on the control plane hosts holds the address. external: not capflow's. */
  type: 'kube-vip' | 'external';
  /** kube-vip: the interface holding the address; absent means the host's default-route interface. */
  interface?: string;
  /** kube-vip image; default KUBE_VIP_DEFAULT_IMAGE. */
  image: string;
}

export interface ByoHostInventorySpec {
  hosts: InventoryHost[];
  /** The SSH private key, in capflow's secret store; `key` defaults to `ssh-privatekey`. */
  sshKeySecretRef?: { name: string; key: string };
  jumpHost?: InventoryJumpHost;
  packages?: InventoryPackages;
  /** Always set by the loader (defaults: type kube-vip, image KUBE_VIP_DEFAULT_IMAGE). */
  apiServerLoadBalancer: InventoryApiServerLoadBalancer;
}
export type ByoHostInventory = Resource<'ByoHostInventory', ByoHostInventorySpec>;

export interface AddonChartSpec {
  /** Chart repository (https://...) or OCI registry (oci://...); exactly one of repo and path. */
  repo?: string;
  /** Folder of an unpacked chart, relative to the repository root holding the cluster folder. */
  path?: string;
  /** Chart name in the repository; required with repo. */
  chart?: string;
  /** Exact chart version; required with repo. */
  version?: string;
  /** Values files of the cluster folder, applied in order before `values`. */
  valuesFiles?: string[];
  /** An oci:// registry reached over plain HTTP (helm's --plain-http). */
  plainHTTP?: boolean;
  /** Secret (capflow's secret store) with keys `username` and `password` for a private repository. */
  credentialsSecretRef?: { name: string };
  /** Defaults to metadata.name. */
  releaseName: string;
  namespace: string;
  createNamespace: boolean;
  /** ControlPlane (right after the API answers: a CNI) or Workers (once the Nodes are Ready). */
  stage: AddonStage;
  /** Take over fields other field managers own. */
  force: boolean;
  wait: boolean;
  timeout: string;
  values?: Rest;
  dependsOn?: string[];
}
export type AddonChart = Resource<'AddonChart', AddonChartSpec>;
export type AddonStage = 'ControlPlane' | 'Workers';
/** The annotation that gives a ClusterResourceSet its stage (its kind has no field for it). */
export const STAGE_ANNOTATION = 'capflow.io/stage';

// --- the model ------------------------------------------------------------------

/** Where a document came from. */
export interface SourceLocation {
  /** Display path (relative to the repository root, or the cwd). */
  file: string;
  absPath: string;
  /** 0-based index of the document in its file. */
  index: number;
  line: number;
  column: number;
  /** For a document expanded from a ClusterClass topology: what it was made from. */
  origin?: string;
}

/** One document of the folder: its normalized object and where it came from. */
export interface SpecDocument {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  /** Normalized object (defaults applied, nulls pruned, namespace set). */
  object: Record<string, unknown>;
  source: SourceLocation;
}

export type InfrastructureCluster = AWSCluster | AWSManagedCluster | ByoCluster;
export type ControlPlane = KubeadmControlPlane | AWSManagedControlPlane;
export type MachineTemplate = AWSMachineTemplate | ByoMachineTemplate;
export type BootstrapTemplate = KubeadmConfigTemplate | EKSConfigTemplate;
export type BootstrapConfig = KubeadmConfig | EKSConfig;

export interface MachineDeploymentModel {
  deployment: MachineDeployment;
  machineTemplate: MachineTemplate;
  /** Absent when the deployment names a bootstrap data secret instead. */
  bootstrapTemplate?: BootstrapTemplate;
}

export interface MachinePoolModel {
  pool: MachinePool;
  infrastructure: AWSMachinePool | AWSManagedMachinePool;
  bootstrapConfig?: BootstrapConfig;
}

export interface ResourceSetModel {
  resourceSet: ClusterResourceSet;
  /** The ConfigMaps and Secrets of spec.resources, in order. */
  resources: Array<ConfigMap | Secret>;
  /** Whether its clusterSelector selects this folder's Cluster. */
  selectsCluster: boolean;
}

/** Where a Cluster is paused (src/spec/pause.ts): the field, and its file:line in Git. */
export interface PauseSource {
  /** `spec.paused`, or `metadata.annotations[cluster.x-k8s.io/paused]`. */
  field: string;
  /** Display path of the file, as in problems. */
  file: string;
  line: number;
  column: number;
}

export interface ClusterModel {
  /** The Cluster's name. */
  name: string;
  namespace: string;
  provider: Provider;
  /** Absolute path of the cluster folder. */
  dir: string;
  cluster: Cluster;
  infrastructure: InfrastructureCluster;
  controlPlane: ControlPlane;
  /** For a KubeadmControlPlane: its machine template. */
  controlPlaneMachineTemplate?: MachineTemplate;
  machineDeployments: MachineDeploymentModel[];
  machinePools: MachinePoolModel[];
  /** By name. */
  machineTemplates: Record<string, MachineTemplate>;
  bootstrapTemplates: Record<string, BootstrapTemplate>;
  bootstrapConfigs: Record<string, BootstrapConfig>;
  healthChecks: MachineHealthCheck[];
  resourceSets: ResourceSetModel[];
  hostInventory?: ByoHostInventory;
  /** In install order (dependencies first; ties by name). */
  addons: AddonChart[];
  /** Every document, in file order. */
  documents: SpecDocument[];
  /** The control plane's Kubernetes version (KubeadmControlPlane.spec.version or AWSManagedControlPlane.spec.version). */
  kubernetesVersion: string;
  /** Set when the Cluster is paused (spec.paused: true or the cluster.x-k8s.io/paused annotation): where. */
  paused?: PauseSource;
}
