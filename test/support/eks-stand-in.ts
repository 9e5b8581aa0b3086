/**
 * A stand-in for the EKS calls moto lacks, served by the fault proxy (test/support/fault-proxy.ts)
 * in moto's place, so they are recorded and faulted like forwarded calls:
 *
 *   - addons (Create/Describe/List/Update/DeleteAddon, DescribeAddonVersions from a small catalog),
 *   - UpdateClusterVersion, UpdateNodegroupVersion, the updates of UpdateClusterConfig and
 *     UpdateNodegroupConfig (moto answers the one with the cluster, and forgets the other's),
 *     DescribeUpdate, ListUpdates,
 *   - access entries and access policies (node roles get their EC2_LINUX entry at CreateNodegroup),
 *   - node groups with a launch template: CreateNodegroup and UpdateNodegroupVersion read the
 *     template version from moto's EC2 and refuse what EKS refuses (an instance profile, spot
 *     options, an instance type in both places, an AMI type or release next to an image id); the
 *     describe shows what EKS shows (moto keeps its defaults): no disk size or remote access, no
 *     instance types when the template names one, AMI type CUSTOM for an image id,
 *   - and rewrites of moto's cluster answers: a real PEM CA, accessConfig (moto drops it), the
 *     version an update reached, CREATING/UPDATING/DELETING while those last.
 *
 * Answers follow the EKS REST-JSON shapes of the @aws-sdk/client-eks models (field names, HTTP
 * status, x-amzn-ErrorType); error messages are the real API's where known (moto copied several
 * from it), plausible otherwise. moto stays the source of truth for what clusters and node groups
 * exist: each call asks it. Transitions advance by describes, not time, so tests are deterministic.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { makeSelfSignedCa } from '../../src/bootstrap/certificates.js';

// ---------------------------------------------------------------------------------------------
// Public types

export interface EksStandInOptions {
  /** Describes of an addon that still show CREATING after CreateAddon, or DELETING after DeleteAddon. Default 1. */
  settleAfterDescribes?: number;
  /** Observations (DescribeUpdate, or a describe of the cluster, node group or addon updated) an update stays InProgress. Default 1. */
  updateDescribes?: number;
  /** DescribeCluster answers that show CREATING after CreateCluster (no endpoint, no CA yet). Default 0. */
  createDescribes?: number;
  /** DescribeCluster answers that show DELETING after DeleteCluster (moto has forgotten it already). Default 0. */
  deleteDescribes?: number;
  /** The IAM principal that creates clusters (its admin access entry). Default moto's caller, arn:aws:iam::<account>:user/moto. */
  creatorPrincipalArn?: string;
  /**
   * A real API server that plays an ACTIVE cluster's control plane (its address and CA replace
   * moto's fictitious endpoint and the stand-in's CA), for steps that write into the cluster
   * (aws-auth). Clusters it returns nothing for keep the fictitious endpoint, which must not be dialled.
   */
  workloadApi?: (cluster: { name: string; region: string }) => { endpoint: string; caPem: string } | undefined;
}

/** One EKS call as the proxy received it. */
export interface EksCall {
  action: string;
  method: string;
  /** Path and query string, as sent (path parameters still encoded). */
  url: string;
  /** Decoded path parameters (name, nodegroupName, addonName, updateId, principalArn, policyArn). */
  params: Record<string, string>;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A whole HTTP answer. */
export interface EksAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Sends one request to moto with the caller's credentials (the proxy provides it); `service` routes it to another of moto's services (ec2). */
export type MotoCall = (method: string, path: string, body?: unknown, service?: string) => Promise<EksAnswer>;

// ---------------------------------------------------------------------------------------------
// Recorded catalog: versions EKS offered for Kubernetes 1.29-1.34

/** Kubernetes minors this EKS accepts; CreateCluster without a version gets the newest. */
export const EKS_SUPPORTED_VERSIONS = ['1.29', '1.30', '1.31', '1.32', '1.33', '1.34'] as const;
const DEFAULT_VERSION = '1.34';
/** Platform version a cluster of each minor runs (what UpdateClusterVersion's PlatformVersion param says). */
const PLATFORM_VERSIONS: Record<string, string> = { '1.29': 'eks.37', '1.30': 'eks.30', '1.31': 'eks.26', '1.32': 'eks.12', '1.33': 'eks.6', '1.34': 'eks.2' };
/** Latest managed node group AMI release of each minor (AL2023 release strings). */
const NODE_RELEASES: Record<string, string> = {
  '1.29': '1.29.15-20250715',
  '1.30': '1.30.14-20250715',
  '1.31': '1.31.10-20250715',
  '1.32': '1.32.6-20250715',
  '1.33': '1.33.2-20250715',
  '1.34': '1.34.1-20251010',
};

interface CatalogVersion {
  addonVersion: string;
  /** Cluster minors it runs on; the ones where it is EKS's default. */
  clusterVersions: string[];
  defaultFor: string[];
}
interface CatalogAddon {
  addonName: string;
  type: string;
  requiresIamPermissions: boolean;
  versions: CatalogVersion[];
}

const ALL = [...EKS_SUPPORTED_VERSIONS];
const kubeProxy = (minor: string, builds: string[]): CatalogVersion[] =>
  builds.map((b, i) => ({ addonVersion: `v${minor}.${b}`, clusterVersions: [minor], defaultFor: i === 0 ? [minor] : [] }));

const ADDON_CATALOG: CatalogAddon[] = [
  {
    addonName: 'vpc-cni',
    type: 'networking',
    requiresIamPermissions: true,
    versions: [
      { addonVersion: 'v1.20.4-eksbuild.1', clusterVersions: ALL, defaultFor: ['1.34'] },
      { addonVersion: 'v1.19.5-eksbuild.1', clusterVersions: ALL, defaultFor: ['1.32', '1.33'] },
      { addonVersion: 'v1.19.2-eksbuild.1', clusterVersions: ALL, defaultFor: [] },
      { addonVersion: 'v1.19.0-eksbuild.1', clusterVersions: ['1.29', '1.30', '1.31', '1.32', '1.33'], defaultFor: ['1.29', '1.30', '1.31'] },
      { addonVersion: 'v1.18.5-eksbuild.1', clusterVersions: ['1.29', '1.30', '1.31'], defaultFor: [] },
    ],
  },
  {
    addonName: 'coredns',
    type: 'networking',
    requiresIamPermissions: false,
    versions: [
      { addonVersion: 'v1.12.3-eksbuild.1', clusterVersions: ['1.33', '1.34'], defaultFor: ['1.34'] },
      { addonVersion: 'v1.12.1-eksbuild.2', clusterVersions: ['1.33'], defaultFor: ['1.33'] },
      { addonVersion: 'v1.11.4-eksbuild.2', clusterVersions: ['1.29', '1.30', '1.31', '1.32'], defaultFor: ['1.32'] },
      { addonVersion: 'v1.11.3-eksbuild.2', clusterVersions: ['1.29', '1.30', '1.31'], defaultFor: ['1.31'] },
      { addonVersion: 'v1.11.1-eksbuild.9', clusterVersions: ['1.29', '1.30'], defaultFor: ['1.29', '1.30'] },
    ],
  },
  {
    addonName: 'kube-proxy',
    type: 'networking',
    requiresIamPermissions: false,
    versions: [
      ...kubeProxy('1.34', ['0-eksbuild.2']),
      ...kubeProxy('1.33', ['0-eksbuild.2', '3-eksbuild.4']),
      ...kubeProxy('1.32', ['0-eksbuild.2', '3-eksbuild.7']),
      ...kubeProxy('1.31', ['2-eksbuild.3', '3-eksbuild.2']),
      ...kubeProxy('1.30', ['6-eksbuild.3', '9-eksbuild.3']),
      ...kubeProxy('1.29', ['10-eksbuild.3', '13-eksbuild.2']),
    ],
  },
  {
    addonName: 'aws-ebs-csi-driver',
    type: 'storage',
    requiresIamPermissions: true,
    versions: [
      { addonVersion: 'v1.48.0-eksbuild.2', clusterVersions: ALL, defaultFor: [] },
      { addonVersion: 'v1.44.0-eksbuild.1', clusterVersions: ALL, defaultFor: [] },
      { addonVersion: 'v1.41.0-eksbuild.1', clusterVersions: ALL, defaultFor: ALL },
      { addonVersion: 'v1.37.0-eksbuild.1', clusterVersions: ['1.29', '1.30', '1.31', '1.32'], defaultFor: [] },
    ],
  },
];

/** EKS's access policies (ListAccessPolicies). */
const ACCESS_POLICIES = [
  'AmazonEKSAdminPolicy',
  'AmazonEKSAdminViewPolicy',
  'AmazonEKSClusterAdminPolicy',
  'AmazonEKSEditPolicy',
  'AmazonEKSViewPolicy',
  'AmazonEKSAutoNodePolicy',
  'AmazonEKSBlockStoragePolicy',
  'AmazonEKSComputePolicy',
  'AmazonEKSLoadBalancingPolicy',
  'AmazonEKSNetworkingPolicy',
].map((name) => ({ name, arn: `arn:aws:eks::aws:cluster-access-policy/${name}` }));
const CLUSTER_ADMIN_POLICY = 'arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy';

const AUTH_MODES = ['CONFIG_MAP', 'API_AND_CONFIG_MAP', 'API'];
const ENTRY_TYPES = ['STANDARD', 'EC2_LINUX', 'EC2_WINDOWS', 'FARGATE_LINUX', 'EC2', 'HYBRID_LINUX', 'HYPERPOD_LINUX'];
const RESOLVE_CONFLICTS = ['NONE', 'OVERWRITE', 'PRESERVE'];

/** Every action the stand-in answers or rewrites; the others go to moto untouched. */
export const EKS_STAND_IN_ACTIONS: ReadonlySet<string> = new Set([
  'CreateCluster',
  'DescribeCluster',
  'DeleteCluster',
  'UpdateClusterConfig',
  'UpdateClusterVersion',
  'DescribeUpdate',
  'ListUpdates',
  'CreateNodegroup',
  'DescribeNodegroup',
  'DeleteNodegroup',
  'UpdateNodegroupVersion',
  'UpdateNodegroupConfig',
  'CreateAddon',
  'DescribeAddon',
  'ListAddons',
  'UpdateAddon',
  'DeleteAddon',
  'DescribeAddonVersions',
  'CreateAccessEntry',
  'DescribeAccessEntry',
  'ListAccessEntries',
  'UpdateAccessEntry',
  'DeleteAccessEntry',
  'AssociateAccessPolicy',
  'DisassociateAccessPolicy',
  'ListAssociatedAccessPolicies',
  'ListAccessPolicies',
]);

// ---------------------------------------------------------------------------------------------
// State

type Json = Record<string, unknown>;

interface UpdateRec {
  id: string;
  type: string;
  params: Array<{ type: string; value: string }>;
  createdAt: number;
  status: 'InProgress' | 'Successful';
  /** Observations left that still show InProgress. */
  left: number;
  nodegroupName?: string;
  addonName?: string;
  /** What the update does once it ends. */
  apply: () => Promise<void> | void;
}

interface AddonState {
  addonName: string;
  addonVersion: string;
  status: 'CREATING' | 'ACTIVE' | 'UPDATING' | 'DELETING';
  left: number;
  addonArn: string;
  createdAt: number;
  modifiedAt: number;
  serviceAccountRoleArn?: string;
  configurationValues?: string;
  tags: Record<string, string>;
  update?: UpdateRec;
}

interface AssociatedPolicy {
  policyArn: string;
  accessScope: { type: string; namespaces: string[] };
  associatedAt: number;
  modifiedAt: number;
}

interface AccessEntryState {
  principalArn: string;
  kubernetesGroups: string[];
  accessEntryArn: string;
  createdAt: number;
  modifiedAt: number;
  tags: Record<string, string>;
  username: string;
  type: string;
  policies: Map<string, AssociatedPolicy>;
}

interface NodegroupState {
  version: string;
  releaseVersion: string;
  launchTemplate?: Json;
  /** What EKS reads from the launch template version the group runs (custom AMI, instance type). */
  template?: TemplateContent;
  update?: UpdateRec;
}

/** The parts of a launch template version EKS checks and reports (from moto's EC2). */
interface TemplateContent {
  imageId?: string;
  instanceType?: string;
  iamInstanceProfile: boolean;
  instanceMarketOptions: boolean;
}

interface ClusterState {
  name: string;
  region: string;
  account: string;
  /** moto's createdAt: a cluster of the same name made again in moto is another cluster. */
  motoCreatedAt: unknown;
  version: string;
  platformVersion: string;
  accessConfig: { authenticationMode: string; bootstrapClusterCreatorAdminPermissions: boolean };
  caData: Promise<string>;
  creatingLeft: number;
  addons: Map<string, AddonState>;
  updates: UpdateRec[];
  accessEntries: Map<string, AccessEntryState>;
  nodegroups: Map<string, NodegroupState>;
}

// ---------------------------------------------------------------------------------------------
// Answers

const STATUS_OF: Record<string, number> = {
  ResourceNotFoundException: 404,
  ResourceInUseException: 409,
  InvalidParameterException: 400,
  InvalidRequestException: 400,
};

function json(status: number, body: unknown): EksAnswer {
  const buf = Buffer.from(JSON.stringify(body));
  return { status, headers: { 'content-type': 'application/json', 'x-amzn-requestid': randomUUID(), 'content-length': String(buf.length) }, body: buf };
}

type ErrorType = 'ResourceNotFoundException' | 'ResourceInUseException' | 'InvalidParameterException' | 'InvalidRequestException';

/** EKS errors: the code in x-amzn-ErrorType, {message} plus the resource names the model carries. */
function eksError(type: ErrorType, message: string, names: { clusterName?: string; nodegroupName?: string; addonName?: string } = {}): EksAnswer {
  const a = json(STATUS_OF[type]!, { ...names, message });
  a.headers['x-amzn-ErrorType'] = type;
  return a;
}

const isAnswer = (x: unknown): x is EksAnswer => typeof x === 'object' && x !== null && 'status' in x && 'body' in x && Buffer.isBuffer((x as EksAnswer).body);
const now = () => Date.now() / 1000; // REST-JSON timestamps: epoch seconds
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const strs = (v: unknown): string[] | undefined => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined);

/** What EKS refuses in a managed node group's launch template, or next to one in the request; undefined when fine. */
function nodegroupTemplateProblem(t: TemplateContent, body: Json): string | undefined {
  if (t.iamInstanceProfile) return 'Launch template should not specify an instance profile. The nodegroup IAM role will be used.';
  if (t.instanceMarketOptions) return 'Launch template should not specify instance market options. Use the nodegroup capacityType instead.';
  if (t.instanceType && (strs(body['instanceTypes']) ?? []).length > 0) return 'Instance type cannot be specified in both the launch template and the nodegroup.';
  if (t.imageId && body['amiType'] !== undefined && body['amiType'] !== 'CUSTOM') return 'You cannot specify an AMI type other than CUSTOM when the launch template names an image id.';
  if (t.imageId && body['releaseVersion'] !== undefined) return 'You cannot specify a release version when the launch template names an image id.';
  return undefined;
}

/**
 * A node group with a launch template as EKS describes it (moto fills in its defaults whatever the
 * template says): no disk size or remote access (the template's), no instance types when the template
 * names one, AMI type CUSTOM with the image as release when it names an image.
 */
function withTemplate(out: Json, t: TemplateContent | undefined): void {
  delete out['diskSize'];
  delete out['remoteAccess'];
  if (t?.instanceType) delete out['instanceTypes'];
  if (t?.imageId) {
    out['amiType'] = 'CUSTOM';
    out['releaseVersion'] = t.imageId;
  }
}
const obj = (v: unknown): Json | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined);
const strMap = (v: unknown): Record<string, string> => Object.fromEntries(Object.entries(obj(v) ?? {}).filter((e): e is [string, string] => typeof e[1] === 'string'));

function parseJson(buf: Buffer): Json {
  if (buf.length === 0) return {};
  try {
    return obj(JSON.parse(buf.toString('utf8'))) ?? {};
  } catch {
    return {};
  }
}

const minorNumber = (v: string) => Number(/^\d+\.(\d+)$/.exec(v)?.[1] ?? NaN);

/** Region from the SigV4 credential scope (moto keeps a backend per region the same way). */
function regionOf(headers: IncomingHttpHeaders): string {
  return /Credential=[^/,\s]+\/\d{8}\/([^/]+)\//.exec(String(headers.authorization ?? ''))?.[1] ?? 'us-east-1';
}

/** nextToken/maxResults paging over a list (tokens are opaque to callers, an index here). */
function paginate<T>(items: T[], query: URLSearchParams): { items: T[]; nextToken?: string } | EksAnswer {
  const max = query.has('maxResults') ? Number(query.get('maxResults')) : 100;
  if (!Number.isInteger(max) || max < 1 || max > 100) return eksError('InvalidParameterException', 'maxResults must be between 1 and 100');
  const token = query.get('nextToken');
  const start = token ? Number(Buffer.from(token, 'base64url').toString('utf8')) : 0;
  if (!Number.isInteger(start) || start < 0) return eksError('InvalidParameterException', 'The nextToken provided is invalid');
  const end = start + max;
  return end < items.length ? { items: items.slice(start, end), nextToken: Buffer.from(String(end)).toString('base64url') } : { items: items.slice(start) };
}

function observe(u: UpdateRec): Promise<void> | void {
  if (u.status !== 'InProgress') return;
  if (u.left > 0) {
    u.left--;
    return;
  }
  u.status = 'Successful';
  return u.apply();
}

const updateJson = (u: UpdateRec) => ({ id: u.id, status: u.status, type: u.type, params: u.params, createdAt: u.createdAt, errors: [] });

// ---------------------------------------------------------------------------------------------
// The stand-in

export class EksStandIn {
  private readonly opts: Required<Omit<EksStandInOptions, 'creatorPrincipalArn' | 'workloadApi'>> & Pick<EksStandInOptions, 'creatorPrincipalArn' | 'workloadApi'>;
  private readonly clusters = new Map<string, ClusterState>();
  /** Clusters moto has deleted that still show DELETING: key -> describes left and the last answer. */
  private readonly deleting = new Map<string, { left: number; cluster: Json }>();

  constructor(opts: EksStandInOptions = {}) {
    this.opts = {
      settleAfterDescribes: opts.settleAfterDescribes ?? 1,
      updateDescribes: opts.updateDescribes ?? 1,
      createDescribes: opts.createDescribes ?? 0,
      deleteDescribes: opts.deleteDescribes ?? 0,
      creatorPrincipalArn: opts.creatorPrincipalArn,
      workloadApi: opts.workloadApi,
    };
  }

  handles(action: string): boolean {
    return EKS_STAND_IN_ACTIONS.has(action);
  }

  /** Forget every cluster's state (with moto's reset). */
  reset(): void {
    this.clusters.clear();
    this.deleting.clear();
  }

  async answer(call: EksCall, moto: MotoCall): Promise<EksAnswer> {
    const region = regionOf(call.headers);
    const query = new URL(call.url, 'http://stand-in.invalid').searchParams;
    const body = parseJson(call.body);
    const c: Ctx = { call, moto, region, query, body, name: call.params['name'] ?? '' };
    switch (call.action) {
      case 'CreateCluster':
        return this.createCluster(c);
      case 'DescribeCluster':
        return this.describeCluster(c);
      case 'DeleteCluster':
        return this.deleteCluster(c);
      case 'UpdateClusterConfig':
        return this.updateClusterConfig(c);
      case 'UpdateClusterVersion':
        return this.updateClusterVersion(c);
      case 'DescribeUpdate':
        return this.describeUpdate(c);
      case 'ListUpdates':
        return this.listUpdates(c);
      case 'CreateNodegroup':
        return this.createNodegroup(c);
      case 'DescribeNodegroup':
        return this.describeNodegroup(c);
      case 'DeleteNodegroup':
        return this.deleteNodegroup(c);
      case 'UpdateNodegroupVersion':
        return this.updateNodegroupVersion(c);
      case 'UpdateNodegroupConfig':
        return this.updateNodegroupConfig(c);
      case 'CreateAddon':
        return this.createAddon(c);
      case 'DescribeAddon':
        return this.describeAddon(c);
      case 'ListAddons':
        return this.listAddons(c);
      case 'UpdateAddon':
        return this.updateAddon(c);
      case 'DeleteAddon':
        return this.deleteAddon(c);
      case 'DescribeAddonVersions':
        return describeAddonVersions(query);
      case 'ListAccessPolicies': {
        const p = paginate(ACCESS_POLICIES, query);
        return isAnswer(p) ? p : json(200, { accessPolicies: p.items, ...(p.nextToken ? { nextToken: p.nextToken } : {}) });
      }
      default:
        return this.accessEntries(c);
    }
  }

  // --- clusters ------------------------------------------------------------------------------

  private key(region: string, name: string): string {
    return `${region}/${name}`;
  }

  /** The state of a cluster moto knows, made on first sight (e.g. a cluster created straight in moto). */
  private adopt(region: string, cluster: Json, accessConfig?: Json): ClusterState {
    const name = str(cluster['name']) ?? '';
    const key = this.key(region, name);
    const known = this.clusters.get(key);
    if (known && known.motoCreatedAt === cluster['createdAt']) return known;
    const version = str(cluster['version']) ?? DEFAULT_VERSION;
    const st: ClusterState = {
      name,
      region,
      account: (str(cluster['arn']) ?? '').split(':')[4] ?? '123456789012',
      motoCreatedAt: cluster['createdAt'],
      version,
      platformVersion: PLATFORM_VERSIONS[version] ?? str(cluster['platformVersion']) ?? 'eks.1',
      accessConfig: {
        authenticationMode: str(accessConfig?.['authenticationMode']) ?? 'CONFIG_MAP',
        bootstrapClusterCreatorAdminPermissions: accessConfig?.['bootstrapClusterCreatorAdminPermissions'] !== false,
      },
      // EKS's cluster CA: a self-signed RSA CA named "kubernetes", as kubeadm makes it.
      caData: makeSelfSignedCa('kubernetes').then((ca) => Buffer.from(ca.certPem).toString('base64')),
      creatingLeft: 0,
      addons: new Map(),
      updates: [],
      accessEntries: new Map(),
      nodegroups: new Map(),
    };
    st.caData.catch(() => undefined); // awaited where used; no unhandled rejection meanwhile
    this.clusters.set(key, st);
    return st;
  }

  /** The cluster as moto knows it now, with its state; or EKS's not-found answer. */
  private async lookup(c: Ctx): Promise<{ st: ClusterState; cluster: Json } | EksAnswer> {
    const r = await c.moto('GET', `/clusters/${encodeURIComponent(c.name)}`);
    if (r.status === 404) {
      this.clusters.delete(this.key(c.region, c.name));
      return eksError('ResourceNotFoundException', `No cluster found for name: ${c.name}.`);
    }
    if (r.status !== 200) return r;
    const cluster = obj(parseJson(r.body)['cluster']) ?? {};
    return { st: this.adopt(c.region, cluster), cluster };
  }

  private clusterUpdate(st: ClusterState): UpdateRec | undefined {
    return st.updates.find((u) => u.status === 'InProgress' && !u.nodegroupName && !u.addonName);
  }

  /** moto's cluster as EKS shows it: version reached, accessConfig, a PEM CA, the status of the moment. */
  private async patchCluster(st: ClusterState, cluster: Json, status?: string): Promise<Json> {
    const out: Json = {
      ...cluster,
      version: st.version,
      platformVersion: st.platformVersion,
      accessConfig: { ...st.accessConfig },
      certificateAuthority: { data: await st.caData },
    };
    if (status) out['status'] = status;
    const api = this.opts.workloadApi?.({ name: st.name, region: st.region });
    if (api) {
      out['endpoint'] = api.endpoint;
      out['certificateAuthority'] = { data: Buffer.from(api.caPem).toString('base64') };
    }
    if (out['status'] === 'CREATING') {
      delete out['endpoint'];
      out['certificateAuthority'] = {};
    }
    return out;
  }

  private async createCluster(c: Ctx): Promise<EksAnswer> {
    const version = str(c.body['version']);
    if (version !== undefined && !(EKS_SUPPORTED_VERSIONS as readonly string[]).includes(version)) {
      return eksError('InvalidParameterException', `unsupported Kubernetes version ${version}`);
    }
    const accessConfig = obj(c.body['accessConfig']);
    const mode = str(accessConfig?.['authenticationMode']);
    if (mode !== undefined && !AUTH_MODES.includes(mode)) return eksError('InvalidParameterException', `Unsupported authentication mode: ${mode}`);
    // moto would make a 1.19 cluster; EKS takes its default version.
    const r = await c.moto('POST', '/clusters', { ...c.body, version: version ?? DEFAULT_VERSION });
    if (r.status !== 200) return r;
    const cluster = obj(parseJson(r.body)['cluster']) ?? {};
    this.deleting.delete(this.key(c.region, str(cluster['name']) ?? ''));
    const st = this.adopt(c.region, cluster, accessConfig);
    st.creatingLeft = this.opts.createDescribes;
    if (st.accessConfig.authenticationMode !== 'CONFIG_MAP' && st.accessConfig.bootstrapClusterCreatorAdminPermissions) {
      const creator = this.opts.creatorPrincipalArn ?? `arn:aws:iam::${st.account}:user/moto`;
      const entry = this.newEntry(st, creator, 'STANDARD', [], undefined, {});
      const t = now();
      entry.policies.set(CLUSTER_ADMIN_POLICY, { policyArn: CLUSTER_ADMIN_POLICY, accessScope: { type: 'cluster', namespaces: [] }, associatedAt: t, modifiedAt: t });
    }
    return json(200, { cluster: await this.patchCluster(st, cluster, 'CREATING') });
  }

  private async describeCluster(c: Ctx): Promise<EksAnswer> {
    const key = this.key(c.region, c.name);
    const found = await this.lookup(c);
    if (isAnswer(found)) {
      const gone = this.deleting.get(key);
      if (found.status !== 404 || !gone) return found;
      if (gone.left <= 0) {
        this.deleting.delete(key);
        return found;
      }
      gone.left--;
      return json(200, { cluster: gone.cluster });
    }
    const { st, cluster } = found;
    if (st.creatingLeft > 0) {
      st.creatingLeft--;
      return json(200, { cluster: await this.patchCluster(st, cluster, 'CREATING') });
    }
    const u = this.clusterUpdate(st);
    if (u) await observe(u);
    const fresh = u?.status === 'Successful' ? await this.lookup(c) : found; // the update may have changed moto's cluster
    const base = isAnswer(fresh) ? cluster : fresh.cluster;
    return json(200, { cluster: await this.patchCluster(st, base, this.clusterUpdate(st) ? 'UPDATING' : undefined) });
  }

  private async deleteCluster(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    if (this.clusterUpdate(found.st)) return eksError('ResourceInUseException', `Cluster ${c.name} has an update in progress`, { clusterName: c.name });
    const r = await c.moto('DELETE', `/clusters/${encodeURIComponent(c.name)}`);
    if (r.status !== 200) return r;
    const key = this.key(c.region, c.name);
    const cluster = await this.patchCluster(found.st, obj(parseJson(r.body)['cluster']) ?? found.cluster, 'DELETING');
    this.clusters.delete(key);
    if (this.opts.deleteDescribes > 0) this.deleting.set(key, { left: this.opts.deleteDescribes, cluster });
    return json(200, { cluster });
  }

  private newUpdate(st: ClusterState, type: string, params: UpdateRec['params'], apply: UpdateRec['apply'], target: { nodegroupName?: string; addonName?: string } = {}): UpdateRec {
    const u: UpdateRec = { id: randomUUID(), type, params, createdAt: now(), status: 'InProgress', left: this.opts.updateDescribes, apply, ...target };
    st.updates.push(u);
    return u;
  }

  private async updateClusterVersion(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const { st } = found;
    if (st.creatingLeft > 0) return eksError('InvalidRequestException', `Cluster '${c.name}' is not in ACTIVE status`, { clusterName: c.name });
    if (this.clusterUpdate(st)) return eksError('ResourceInUseException', `Cluster ${c.name} has an update in progress`, { clusterName: c.name });
    const version = str(c.body['version']) ?? '';
    if (!(EKS_SUPPORTED_VERSIONS as readonly string[]).includes(version)) return eksError('InvalidParameterException', `unsupported Kubernetes version ${version}`, { clusterName: c.name });
    // EKS moves the control plane one minor at a time, and never down.
    if (minorNumber(version) - minorNumber(st.version) !== 1) {
      return eksError('InvalidParameterException', `Unsupported Kubernetes minor version update from ${st.version} to ${version}`, { clusterName: c.name });
    }
    const platformVersion = PLATFORM_VERSIONS[version]!;
    const u = this.newUpdate(st, 'VersionUpdate', [{ type: 'Version', value: version }, { type: 'PlatformVersion', value: platformVersion }], () => {
      st.version = version;
      st.platformVersion = platformVersion;
    });
    return json(200, { update: updateJson(u) });
  }

  /** UpdateClusterConfig: moto answers {cluster} and drops accessConfig; EKS answers an update, one kind per call. */
  private async updateClusterConfig(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const { st, cluster } = found;
    const kinds = Object.keys(c.body).filter((k) => k !== 'clientRequestToken');
    if (kinds.length !== 1) return eksError('InvalidParameterException', 'Only one type of update can be allowed.', { clusterName: c.name });
    if (st.creatingLeft > 0) return eksError('InvalidRequestException', `Cluster '${c.name}' is not in ACTIVE status`, { clusterName: c.name });
    if (this.clusterUpdate(st)) return eksError('ResourceInUseException', `Cluster ${c.name} has an update in progress`, { clusterName: c.name });
    const path = `/clusters/${encodeURIComponent(c.name)}/update-config`;

    if (kinds[0] === 'accessConfig') {
      const req = obj(c.body['accessConfig']) ?? {};
      const to = str(req['authenticationMode']);
      const from = st.accessConfig.authenticationMode;
      if ('bootstrapClusterCreatorAdminPermissions' in req) return eksError('InvalidParameterException', 'bootstrapClusterCreatorAdminPermissions can only be set at cluster creation', { clusterName: c.name });
      // CONFIG_MAP -> API_AND_CONFIG_MAP -> API, never back.
      if (to === undefined || !AUTH_MODES.includes(to) || AUTH_MODES.indexOf(to) <= AUTH_MODES.indexOf(from)) {
        return eksError('InvalidParameterException', `Unsupported authentication mode update from ${from} to ${to}`, { clusterName: c.name });
      }
      const u = this.newUpdate(st, 'AccessConfigUpdate', [{ type: 'AuthenticationMode', value: to }], () => {
        st.accessConfig.authenticationMode = to;
      });
      return json(200, { update: updateJson(u) });
    }

    if (kinds[0] === 'resourcesVpcConfig') {
      const req = obj(c.body['resourcesVpcConfig']) ?? {};
      const current = obj(cluster['resourcesVpcConfig']) ?? {};
      // EKS merges what the call names into the current config (moto would replace it whole).
      const base: Json = { endpointPublicAccess: true, endpointPrivateAccess: false, publicAccessCidrs: ['0.0.0.0/0'], ...current };
      const merged = { ...base, ...req };
      const changed = Object.keys(req).filter((k) => JSON.stringify(req[k]) !== JSON.stringify(base[k]));
      if (changed.length === 0) {
        return eksError(
          'InvalidParameterException',
          `Cluster is already at the desired configuration with endpointPrivateAccess: ${String(merged.endpointPrivateAccess)} , endpointPublicAccess: ${String(merged.endpointPublicAccess)}, and Public Endpoint Restrictions: ${JSON.stringify(merged.publicAccessCidrs)}`,
          { clusterName: c.name },
        );
      }
      const endpoint = changed.every((k) => ['endpointPublicAccess', 'endpointPrivateAccess', 'publicAccessCidrs'].includes(k));
      const paramName: Record<string, string> = {
        endpointPublicAccess: 'EndpointPublicAccess',
        endpointPrivateAccess: 'EndpointPrivateAccess',
        publicAccessCidrs: 'PublicAccessCidrs',
        subnetIds: 'Subnets',
        securityGroupIds: 'SecurityGroups',
      };
      const params = changed.map((k) => ({ type: paramName[k] ?? k, value: typeof req[k] === 'string' ? req[k] : JSON.stringify(req[k]) }));
      const u = this.newUpdate(st, endpoint ? 'EndpointAccessUpdate' : 'VpcConfigUpdate', params, async () => {
        await c.moto('POST', path, { resourcesVpcConfig: merged });
      });
      return json(200, { update: updateJson(u) });
    }

    if (kinds[0] === 'logging') {
      const enabled = new Map<string, boolean>();
      for (const setup of (obj(cluster['logging'])?.['clusterLogging'] as unknown[] | undefined) ?? []) {
        for (const t of strs(obj(setup)?.['types']) ?? []) enabled.set(t, obj(setup)?.['enabled'] === true);
      }
      const before = JSON.stringify([...enabled].sort());
      for (const setup of (obj(c.body['logging'])?.['clusterLogging'] as unknown[] | undefined) ?? []) {
        for (const t of strs(obj(setup)?.['types']) ?? []) enabled.set(t, obj(setup)?.['enabled'] === true);
      }
      if (JSON.stringify([...enabled].sort()) === before) return eksError('InvalidParameterException', 'No changes needed for the logging config provided', { clusterName: c.name });
      const on = [...enabled].filter(([, e]) => e).map(([t]) => t);
      const off = [...enabled].filter(([, e]) => !e).map(([t]) => t);
      const clusterLogging = [...(on.length ? [{ types: on, enabled: true }] : []), ...(off.length ? [{ types: off, enabled: false }] : [])];
      const u = this.newUpdate(st, 'LoggingUpdate', [{ type: 'ClusterLogging', value: JSON.stringify(clusterLogging) }], async () => {
        await c.moto('POST', path, { logging: { clusterLogging } });
      });
      return json(200, { update: updateJson(u) });
    }
    // Other kinds: moto's own handling, as before the stand-in.
    return c.moto('POST', path, c.body);
  }

  /** The update a DescribeUpdate/ListUpdates names: a cluster's own, or its node group's or addon's. */
  private targetOf(c: Ctx): { nodegroupName?: string; addonName?: string } {
    const nodegroupName = c.query.get('nodegroupName') ?? undefined;
    const addonName = c.query.get('addonName') ?? undefined;
    return { ...(nodegroupName ? { nodegroupName } : {}), ...(addonName ? { addonName } : {}) };
  }

  private async describeUpdate(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const id = c.call.params['updateId'] ?? '';
    const t = this.targetOf(c);
    const u = found.st.updates.find((x) => x.id === id && x.nodegroupName === t.nodegroupName && x.addonName === t.addonName);
    if (!u) return eksError('ResourceNotFoundException', `No update found for ID: ${id}`, { clusterName: c.name, ...t });
    await observe(u);
    return json(200, { update: updateJson(u) });
  }

  private async listUpdates(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const t = this.targetOf(c);
    if (t.nodegroupName && !(await this.nodegroupExists(c, t.nodegroupName))) {
      return eksError('ResourceNotFoundException', `No node group found for name: ${t.nodegroupName}.`, { clusterName: c.name, nodegroupName: t.nodegroupName });
    }
    if (t.addonName && !found.st.addons.has(t.addonName)) return this.noAddon(c.name, t.addonName);
    const ids = found.st.updates.filter((u) => u.nodegroupName === t.nodegroupName && u.addonName === t.addonName).map((u) => u.id);
    const p = paginate(ids, c.query);
    return isAnswer(p) ? p : json(200, { updateIds: p.items, ...(p.nextToken ? { nextToken: p.nextToken } : {}) });
  }

  // --- node groups -----------------------------------------------------------------------------

  private async nodegroupExists(c: Ctx, nodegroupName: string): Promise<boolean> {
    return (await c.moto('GET', `/clusters/${encodeURIComponent(c.name)}/node-groups/${encodeURIComponent(nodegroupName)}`)).status === 200;
  }

  private async createNodegroup(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const { st } = found;
    if (st.creatingLeft > 0) return eksError('InvalidRequestException', `Cluster '${c.name}' is not in ACTIVE status`);
    const version = str(c.body['version']) ?? st.version; // EKS: the cluster's version, not moto's 1.19
    if (minorNumber(version) > minorNumber(st.version)) {
      return eksError('InvalidParameterException', `Requested Nodegroup Kubernetes version ${version} is not supported for cluster version ${st.version}`, {
        clusterName: c.name,
        nodegroupName: str(c.body['nodegroupName']),
      });
    }
    const releaseVersion = str(c.body['releaseVersion']) ?? NODE_RELEASES[version];
    // A launch template: EKS reads the version named and refuses what a managed node group's template may not hold.
    const lt = obj(c.body['launchTemplate']);
    let template: TemplateContent | undefined;
    if (lt) {
      const names = { clusterName: c.name, nodegroupName: str(c.body['nodegroupName']) };
      const content = await this.templateContent(c, lt);
      if (isAnswer(content)) return content;
      const refused = nodegroupTemplateProblem(content, c.body);
      if (refused) return eksError('InvalidParameterException', refused, names);
      template = content;
    }
    const r = await c.moto('POST', `/clusters/${encodeURIComponent(c.name)}/node-groups`, { ...c.body, version, ...(releaseVersion ? { releaseVersion } : {}) });
    if (r.status !== 200) return r;
    const ng = obj(parseJson(r.body)['nodegroup']) ?? {};
    st.nodegroups.set(str(ng['nodegroupName']) ?? '', {
      version,
      releaseVersion: template?.imageId ?? str(ng['releaseVersion']) ?? '',
      ...(obj(ng['launchTemplate']) ? { launchTemplate: obj(ng['launchTemplate']) } : {}),
      ...(template ? { template } : {}),
    });
    // EKS gives a managed node group's role its node access entry itself (when the cluster takes access entries).
    const role = str(c.body['nodeRole']);
    if (role && st.accessConfig.authenticationMode !== 'CONFIG_MAP' && !st.accessEntries.has(role)) {
      this.newEntry(st, role, /WINDOWS/.test(str(c.body['amiType']) ?? '') ? 'EC2_WINDOWS' : 'EC2_LINUX', undefined, undefined, {});
    }
    return r;
  }

  private async describeNodegroup(c: Ctx): Promise<EksAnswer> {
    const r = await c.moto('GET', c.call.url);
    const st = this.clusters.get(this.key(c.region, c.name));
    const ngs = st?.nodegroups.get(c.call.params['nodegroupName'] ?? '');
    if (r.status !== 200 || !ngs) return r;
    if (ngs.update) await observe(ngs.update);
    const ng = obj(parseJson(r.body)['nodegroup']) ?? {};
    const out: Json = { ...ng, version: ngs.version, releaseVersion: ngs.releaseVersion, ...(ngs.launchTemplate ? { launchTemplate: ngs.launchTemplate } : {}) };
    if (ngs.launchTemplate) withTemplate(out, ngs.template);
    if (ngs.update?.status === 'InProgress') out['status'] = 'UPDATING';
    return json(200, { nodegroup: out });
  }

  private async deleteNodegroup(c: Ctx): Promise<EksAnswer> {
    const r = await c.moto('DELETE', c.call.url);
    if (r.status !== 200) return r;
    this.clusters.get(this.key(c.region, c.name))?.nodegroups.delete(c.call.params['nodegroupName'] ?? '');
    const ng = obj(parseJson(r.body)['nodegroup']) ?? {};
    return json(200, { nodegroup: { ...ng, status: 'DELETING' } });
  }

  /** The stand-in's view of a node group moto knows (made on first sight), or moto's not-found answer. */
  private async nodegroupState(c: Ctx, st: ClusterState, nodegroupName: string): Promise<NodegroupState | EksAnswer> {
    const r = await c.moto('GET', `/clusters/${encodeURIComponent(c.name)}/node-groups/${encodeURIComponent(nodegroupName)}`);
    if (r.status !== 200) return r;
    const ng = obj(parseJson(r.body)['nodegroup']) ?? {};
    let ngs = st.nodegroups.get(nodegroupName);
    if (!ngs) {
      const v = str(ng['version']) ?? st.version;
      ngs = { version: v, releaseVersion: str(ng['releaseVersion']) ?? NODE_RELEASES[v] ?? '', ...(obj(ng['launchTemplate']) ? { launchTemplate: obj(ng['launchTemplate']) } : {}) };
      st.nodegroups.set(nodegroupName, ngs);
    }
    return ngs;
  }

  /** What EKS reads of a node group's launch template version (moto's EC2, DescribeLaunchTemplateVersions), or EKS's error. */
  private async templateContent(c: Ctx, lt: Json): Promise<TemplateContent | EksAnswer> {
    const id = str(lt['id']);
    const name = str(lt['name']);
    const version = str(lt['version']) ?? '$Default';
    const q = new URLSearchParams({ Action: 'DescribeLaunchTemplateVersions', Version: '2016-11-15', ...(id ? { LaunchTemplateId: id } : name ? { LaunchTemplateName: name } : {}), 'LaunchTemplateVersion.1': version });
    const r = await c.moto('GET', `/?${q.toString()}`, undefined, 'ec2');
    const xml = r.body.toString('utf8');
    const data = r.status === 200 ? /<launchTemplateData>([\s\S]*?)<\/launchTemplateData>/.exec(xml)?.[1] : undefined;
    if (data === undefined) return eksError('InvalidParameterException', `Launch template ${id ?? name ?? ''} version ${version} does not exist.`, { clusterName: c.name });
    const tag = (t: string) => new RegExp(`<${t}>([^<]*)</${t}>`).exec(data)?.[1];
    return {
      ...(tag('imageId') ? { imageId: tag('imageId')! } : {}),
      ...(tag('instanceType') ? { instanceType: tag('instanceType')! } : {}),
      iamInstanceProfile: /<iamInstanceProfile>/.test(data),
      instanceMarketOptions: /<instanceMarketOptions>/.test(data),
    };
  }

  /** moto applies the change and answers an update it forgets; EKS's update runs, and DescribeUpdate knows it. */
  private async updateNodegroupConfig(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const { st } = found;
    const nodegroupName = c.call.params['nodegroupName'] ?? '';
    const ngs = await this.nodegroupState(c, st, nodegroupName);
    if (isAnswer(ngs)) return ngs;
    if (ngs.update?.status === 'InProgress') {
      return eksError('ResourceInUseException', 'Nodegroup cannot be updated as it is currently not in Active State', { clusterName: c.name, nodegroupName });
    }
    const r = await c.moto('POST', c.call.url, c.body);
    if (r.status !== 200) return r;
    // The params as EKS names them (moto writes Python dicts).
    const params: UpdateRec['params'] = [];
    const scaling = obj(c.body['scalingConfig']) ?? {};
    for (const [k, type] of [['minSize', 'MinSize'], ['maxSize', 'MaxSize'], ['desiredSize', 'DesiredSize']] as const) {
      if (typeof scaling[k] === 'number') params.push({ type, value: String(scaling[k]) });
    }
    const labels = obj(c.body['labels']) ?? {};
    if (labels['addOrUpdateLabels'] !== undefined) params.push({ type: 'LabelsToAdd', value: JSON.stringify(labels['addOrUpdateLabels']) });
    if (labels['removeLabels'] !== undefined) params.push({ type: 'LabelsToRemove', value: JSON.stringify(labels['removeLabels']) });
    const taints = obj(c.body['taints']) ?? {};
    if (taints['addOrUpdateTaints'] !== undefined) params.push({ type: 'TaintsToAdd', value: JSON.stringify(taints['addOrUpdateTaints']) });
    if (taints['removeTaints'] !== undefined) params.push({ type: 'TaintsToRemove', value: JSON.stringify(taints['removeTaints']) });
    const uc = obj(c.body['updateConfig']) ?? {};
    for (const [k, type] of [['maxUnavailable', 'MaxUnavailable'], ['maxUnavailablePercentage', 'MaxUnavailablePercentage'], ['updateStrategy', 'UpdateStrategy']] as const) {
      const v = uc[k];
      if (typeof v === 'string' || typeof v === 'number') params.push({ type, value: String(v) });
    }
    const repair = obj(c.body['nodeRepairConfig']);
    if (repair?.['enabled'] !== undefined) params.push({ type: 'NodeRepairEnabled', value: String(repair['enabled'] === true) });
    const u = this.newUpdate(st, 'ConfigUpdate', params, () => undefined, { nodegroupName });
    u.id = str(obj(parseJson(r.body)['update'])?.['id']) ?? u.id;
    ngs.update = u;
    return json(200, { update: updateJson(u) });
  }

  private async updateNodegroupVersion(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const { st } = found;
    const nodegroupName = c.call.params['nodegroupName'] ?? '';
    const ngs = await this.nodegroupState(c, st, nodegroupName);
    if (isAnswer(ngs)) return ngs;
    const names = { clusterName: c.name, nodegroupName };
    if (ngs.update?.status === 'InProgress' || this.clusterUpdate(st)) {
      return eksError('ResourceInUseException', 'Nodegroup cannot be updated as it is currently not in Active State', names);
    }
    const version = str(c.body['version']) ?? ngs.version;
    if (!NODE_RELEASES[version] || minorNumber(version) > minorNumber(st.version)) {
      return eksError('InvalidParameterException', `Requested Nodegroup Kubernetes version ${version} is not supported for cluster version ${st.version}`, names);
    }
    if (minorNumber(version) < minorNumber(ngs.version)) return eksError('InvalidParameterException', `Unsupported Kubernetes minor version update from ${ngs.version} to ${version}`, names);
    const releaseVersion = str(c.body['releaseVersion']) ?? NODE_RELEASES[version];
    if (!releaseVersion.startsWith(`${version}.`)) return eksError('InvalidParameterException', `Requested release version ${releaseVersion} is not valid for kubernetes version ${version}.`, names);
    const lt = obj(c.body['launchTemplate']);
    const ltVersion = str(lt?.['version']);
    if (lt && !ngs.launchTemplate) return eksError('InvalidParameterException', 'A launch template cannot be specified for a nodegroup that was not created with one.', names);
    let template = ngs.template;
    if (lt) {
      const ltId = str(lt['id']);
      if (ltId !== undefined && ltId !== str(ngs.launchTemplate?.['id'])) return eksError('InvalidParameterException', 'You cannot change the launch template of a node group, only its version.', names);
      const content = await this.templateContent(c, { ...ngs.launchTemplate, ...lt });
      if (isAnswer(content)) return content;
      const refused = nodegroupTemplateProblem(content, c.body);
      if (refused) return eksError('InvalidParameterException', refused, names);
      template = content;
    }
    if (template?.imageId && (c.body['version'] !== undefined || c.body['releaseVersion'] !== undefined)) {
      return eksError('InvalidParameterException', 'You cannot specify a Kubernetes version or a release version for a node group whose launch template names a custom AMI.', names);
    }
    const params = [
      { type: 'Version', value: version },
      { type: 'ReleaseVersion', value: releaseVersion },
      ...(lt ? [{ type: 'LaunchTemplateName', value: str(lt['name']) ?? str(ngs.launchTemplate?.['name']) ?? '' }] : []),
      ...(ltVersion !== undefined ? [{ type: 'LaunchTemplateVersion', value: ltVersion }] : []),
    ];
    const target = ngs;
    const u = this.newUpdate(
      st,
      'VersionUpdate',
      params,
      () => {
        target.version = version;
        target.releaseVersion = releaseVersion;
        if (ltVersion !== undefined) target.launchTemplate = { ...target.launchTemplate, version: ltVersion };
        if (template) target.template = template;
        if (template?.imageId) target.releaseVersion = template.imageId;
      },
      { nodegroupName },
    );
    ngs.update = u;
    return json(200, { update: updateJson(u) });
  }

  // --- addons ------------------------------------------------------------------------------------

  private noAddon(cluster: string, addon: string): EksAnswer {
    return eksError('ResourceNotFoundException', `No addon: ${addon} found in cluster: ${cluster}`, { clusterName: cluster, addonName: addon });
  }

  private addonJson(st: ClusterState, a: AddonState): Json {
    return {
      addonName: a.addonName,
      clusterName: st.name,
      status: a.status,
      addonVersion: a.addonVersion,
      health: { issues: [] },
      addonArn: a.addonArn,
      createdAt: a.createdAt,
      modifiedAt: a.modifiedAt,
      ...(a.serviceAccountRoleArn ? { serviceAccountRoleArn: a.serviceAccountRoleArn } : {}),
      tags: a.tags,
      ...(a.configurationValues !== undefined ? { configurationValues: a.configurationValues } : {}),
      podIdentityAssociations: [],
    };
  }

  /** Checks of CreateAddon/UpdateAddon's common fields; an error answer or undefined. */
  private checkAddonFields(st: ClusterState, addonName: string, body: Json): EksAnswer | undefined {
    const names = { clusterName: st.name, addonName };
    const version = str(body['addonVersion']);
    const entry = ADDON_CATALOG.find((a) => a.addonName === addonName);
    if (version !== undefined && !entry?.versions.some((v) => v.addonVersion === version && v.clusterVersions.includes(st.version))) {
      return eksError('InvalidParameterException', `Addon version specified is not supported (${addonName} ${version} on Kubernetes ${st.version})`, names);
    }
    const resolve = str(body['resolveConflicts']);
    if (resolve !== undefined && !RESOLVE_CONFLICTS.includes(resolve)) return eksError('InvalidParameterException', `Invalid resolveConflicts: ${resolve}`, names);
    const role = str(body['serviceAccountRoleArn']);
    if (role !== undefined && !/^arn:aws[\w-]*:iam::\d{12}:role\/.+/.test(role)) return eksError('InvalidParameterException', `The serviceAccountRoleArn ${role} is not a valid IAM role ARN`, names);
    const values = str(body['configurationValues']);
    if (values !== undefined && values !== '') {
      let parsed: unknown;
      try {
        parsed = parseYaml(values); // EKS takes JSON or YAML
      } catch {
        parsed = undefined;
      }
      if (obj(parsed) === undefined) {
        return eksError('InvalidParameterException', 'ConfigurationValue provided in request is not supported: Json schema validation failed with error: [$: string found, object expected]', names);
      }
    }
    return undefined;
  }

  private async createAddon(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const { st } = found;
    const addonName = str(c.body['addonName']) ?? '';
    const names = { clusterName: c.name, addonName };
    if (st.creatingLeft > 0) return eksError('InvalidRequestException', `Cluster '${c.name}' is not in ACTIVE status`, names);
    const entry = ADDON_CATALOG.find((a) => a.addonName === addonName);
    const defaultVersion = entry?.versions.find((v) => v.defaultFor.includes(st.version))?.addonVersion;
    if (!entry || !defaultVersion) return eksError('InvalidParameterException', `Addon ${addonName} specified is not supported in ${st.version} kubernetes version`, names);
    if (st.addons.has(addonName)) return eksError('ResourceInUseException', 'Addon already exists.', names);
    const bad = this.checkAddonFields(st, addonName, c.body);
    if (bad) return bad;
    const t = now();
    const a: AddonState = {
      addonName,
      addonVersion: str(c.body['addonVersion']) ?? defaultVersion,
      status: 'CREATING',
      left: this.opts.settleAfterDescribes,
      addonArn: `arn:aws:eks:${st.region}:${st.account}:addon/${st.name}/${addonName}/${randomUUID()}`,
      createdAt: t,
      modifiedAt: t,
      serviceAccountRoleArn: str(c.body['serviceAccountRoleArn']),
      configurationValues: str(c.body['configurationValues']),
      tags: strMap(c.body['tags']),
    };
    st.addons.set(addonName, a);
    return json(200, { addon: this.addonJson(st, a) });
  }

  private async describeAddon(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const { st } = found;
    const addonName = c.call.params['addonName'] ?? '';
    const a = st.addons.get(addonName);
    if (!a) return this.noAddon(c.name, addonName);
    if (a.status === 'CREATING' || a.status === 'DELETING') {
      if (a.left > 0) a.left--;
      else if (a.status === 'CREATING') a.status = 'ACTIVE';
      else {
        st.addons.delete(addonName);
        return this.noAddon(c.name, addonName);
      }
    } else if (a.update) {
      await observe(a.update);
      if (a.update.status !== 'InProgress') a.update = undefined;
    }
    return json(200, { addon: this.addonJson(st, a) });
  }

  private async listAddons(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const p = paginate([...found.st.addons.keys()].sort(), c.query);
    return isAnswer(p) ? p : json(200, { addons: p.items, ...(p.nextToken ? { nextToken: p.nextToken } : {}) });
  }

  private async updateAddon(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const { st } = found;
    const addonName = c.call.params['addonName'] ?? '';
    const a = st.addons.get(addonName);
    if (!a) return this.noAddon(c.name, addonName);
    if (a.status !== 'ACTIVE') return eksError('ResourceInUseException', `Addon ${addonName} cannot be updated as it is currently in ${a.status} state`, { clusterName: c.name, addonName });
    const bad = this.checkAddonFields(st, addonName, c.body);
    if (bad) return bad;
    const fields: Array<[string, string]> = [
      ['addonVersion', 'AddonVersion'],
      ['serviceAccountRoleArn', 'ServiceAccountRoleArn'],
      ['resolveConflicts', 'ResolveConflicts'],
      ['configurationValues', 'ConfigurationValues'],
    ];
    const params = fields.filter(([k]) => str(c.body[k]) !== undefined).map(([k, type]) => ({ type, value: str(c.body[k])! }));
    const body = c.body;
    const u = this.newUpdate(
      st,
      'AddonUpdate',
      params,
      () => {
        a.addonVersion = str(body['addonVersion']) ?? a.addonVersion;
        if (str(body['serviceAccountRoleArn']) !== undefined) a.serviceAccountRoleArn = str(body['serviceAccountRoleArn']);
        if (str(body['configurationValues']) !== undefined) a.configurationValues = str(body['configurationValues']);
        a.status = 'ACTIVE';
        a.modifiedAt = now();
      },
      { addonName },
    );
    a.status = 'UPDATING';
    a.update = u;
    return json(200, { update: updateJson(u) });
  }

  private async deleteAddon(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const { st } = found;
    const addonName = c.call.params['addonName'] ?? '';
    const a = st.addons.get(addonName);
    if (!a) return this.noAddon(c.name, addonName);
    if (a.status !== 'DELETING') {
      a.status = 'DELETING';
      a.left = this.opts.settleAfterDescribes;
      a.update = undefined;
      a.modifiedAt = now();
    }
    return json(200, { addon: this.addonJson(st, a) });
  }

  // --- access entries ----------------------------------------------------------------------------

  private newEntry(st: ClusterState, principalArn: string, type: string, groups: string[] | undefined, username: string | undefined, tags: Record<string, string>): AccessEntryState {
    const m = /^arn:[^:]+:iam::(\d{12}):(role|user)\/(?:.*\/)?([^/]+)$/.exec(principalArn);
    const [, acct = st.account, kind = 'role', short = principalArn] = m ?? [];
    const node = type !== 'STANDARD';
    const t = now();
    const entry: AccessEntryState = {
      principalArn,
      // What EKS fills in when the caller names neither (EKS user guide, "Creating access entries").
      kubernetesGroups: groups ?? (node ? (type === 'FARGATE_LINUX' ? ['system:node-proxier', 'system:nodes'] : ['system:nodes']) : []),
      accessEntryArn: `arn:aws:eks:${st.region}:${st.account}:access-entry/${st.name}/${kind}/${acct}/${short}/${randomUUID()}`,
      createdAt: t,
      modifiedAt: t,
      tags,
      username:
        username ??
        (node
          ? ['EC2_LINUX', 'EC2_WINDOWS', 'EC2'].includes(type)
            ? 'system:node:{{EC2PrivateDNSName}}'
            : 'system:node:{{SessionName}}'
          : kind === 'role'
            ? `arn:aws:sts::${acct}:assumed-role/${short}/{{SessionName}}`
            : principalArn),
      type,
      policies: new Map(),
    };
    st.accessEntries.set(principalArn, entry);
    return entry;
  }

  private entryJson(st: ClusterState, e: AccessEntryState): Json {
    return {
      clusterName: st.name,
      principalArn: e.principalArn,
      kubernetesGroups: e.kubernetesGroups,
      accessEntryArn: e.accessEntryArn,
      createdAt: e.createdAt,
      modifiedAt: e.modifiedAt,
      tags: e.tags,
      username: e.username,
      type: e.type,
    };
  }

  private async accessEntries(c: Ctx): Promise<EksAnswer> {
    const found = await this.lookup(c);
    if (isAnswer(found)) return found;
    const { st } = found;
    if (st.accessConfig.authenticationMode === 'CONFIG_MAP') {
      return eksError('InvalidRequestException', "The cluster's authentication mode must be set to one of [API, API_AND_CONFIG_MAP] to perform this operation.", { clusterName: c.name });
    }
    const principalArn = c.call.params['principalArn'] ?? str(c.body['principalArn']) ?? '';
    const notFound = () =>
      eksError('ResourceNotFoundException', "The specified principalArn could not be found. You can view your available access entries with 'list-access-entries'.", { clusterName: c.name });

    if (c.call.action === 'ListAccessEntries') {
      const policy = c.query.get('associatedPolicyArn');
      const arns = [...st.accessEntries.values()].filter((e) => !policy || e.policies.has(policy)).map((e) => e.principalArn).sort();
      const p = paginate(arns, c.query);
      return isAnswer(p) ? p : json(200, { accessEntries: p.items, ...(p.nextToken ? { nextToken: p.nextToken } : {}) });
    }

    if (c.call.action === 'CreateAccessEntry') {
      const type = str(c.body['type']) ?? 'STANDARD';
      const groups = strs(c.body['kubernetesGroups']);
      const username = str(c.body['username']);
      if (!ENTRY_TYPES.includes(type)) return eksError('InvalidParameterException', `The specified type ${type} is invalid.`, { clusterName: c.name });
      if (!/^arn:aws[\w-]*:iam::\d{12}:(role|user)\/.+/.test(principalArn)) {
        return eksError('InvalidParameterException', `The specified principalArn is invalid: ${principalArn}`, { clusterName: c.name });
      }
      if (type !== 'STANDARD') {
        if (!/:role\//.test(principalArn)) return eksError('InvalidParameterException', `Access entries of type ${type} can only be created for IAM roles.`, { clusterName: c.name });
        if (groups?.length || username !== undefined) {
          return eksError('InvalidParameterException', `kubernetesGroups and username cannot be specified for access entries of type ${type}.`, { clusterName: c.name });
        }
      }
      const reserved = (groups ?? []).find((g) => g.startsWith('system:'));
      if (reserved) return eksError('InvalidParameterException', `The kubernetes group name ${reserved} is invalid, it cannot start with system:`, { clusterName: c.name });
      if (username?.startsWith('system:')) return eksError('InvalidParameterException', `The username ${username} is invalid, it cannot start with system:`, { clusterName: c.name });
      if (st.accessEntries.has(principalArn)) return eksError('ResourceInUseException', 'The specified access entry resource is already in use on this cluster.', { clusterName: c.name });
      const e = this.newEntry(st, principalArn, type, groups, username, strMap(c.body['tags']));
      return json(200, { accessEntry: this.entryJson(st, e) });
    }

    const e = st.accessEntries.get(principalArn);
    if (!e) return notFound();
    switch (c.call.action) {
      case 'DescribeAccessEntry':
        return json(200, { accessEntry: this.entryJson(st, e) });
      case 'UpdateAccessEntry': {
        const groups = strs(c.body['kubernetesGroups']);
        const username = str(c.body['username']);
        if (e.type !== 'STANDARD' && (groups || username !== undefined)) {
          return eksError('InvalidParameterException', `kubernetesGroups and username cannot be specified for access entries of type ${e.type}.`, { clusterName: c.name });
        }
        const reserved = (groups ?? []).find((g) => g.startsWith('system:'));
        if (reserved) return eksError('InvalidParameterException', `The kubernetes group name ${reserved} is invalid, it cannot start with system:`, { clusterName: c.name });
        if (groups) e.kubernetesGroups = groups;
        if (username !== undefined) e.username = username;
        e.modifiedAt = now();
        return json(200, { accessEntry: this.entryJson(st, e) });
      }
      case 'DeleteAccessEntry':
        st.accessEntries.delete(principalArn);
        return json(200, {});
      case 'AssociateAccessPolicy': {
        const policyArn = str(c.body['policyArn']) ?? '';
        const scope = obj(c.body['accessScope']) ?? {};
        const scopeType = str(scope['type']) ?? '';
        const namespaces = strs(scope['namespaces']) ?? [];
        if (!ACCESS_POLICIES.some((p) => p.arn === policyArn)) return eksError('InvalidParameterException', `The specified policyArn is invalid: ${policyArn}`, { clusterName: c.name });
        if (e.type !== 'STANDARD') return eksError('InvalidParameterException', `Access policies cannot be associated with access entries of type ${e.type}.`, { clusterName: c.name });
        if (scopeType !== 'cluster' && scopeType !== 'namespace') return eksError('InvalidParameterException', `The specified accessScope type ${scopeType} is invalid.`, { clusterName: c.name });
        if ((scopeType === 'namespace') !== namespaces.length > 0) {
          return eksError('InvalidParameterException', 'namespaces must be specified for an accessScope of type namespace, and only for it.', { clusterName: c.name });
        }
        const t = now();
        const prev = e.policies.get(policyArn);
        const assoc: AssociatedPolicy = { policyArn, accessScope: { type: scopeType, namespaces }, associatedAt: prev?.associatedAt ?? t, modifiedAt: t };
        e.policies.set(policyArn, assoc);
        return json(200, { clusterName: st.name, principalArn, associatedAccessPolicy: assoc });
      }
      case 'DisassociateAccessPolicy': {
        const policyArn = c.call.params['policyArn'] ?? '';
        if (!e.policies.delete(policyArn)) {
          return eksError('ResourceNotFoundException', `The specified policyArn ${policyArn} is not associated with the access entry.`, { clusterName: c.name });
        }
        return json(200, {});
      }
      case 'ListAssociatedAccessPolicies': {
        const p = paginate([...e.policies.values()], c.query);
        return isAnswer(p) ? p : json(200, { clusterName: st.name, principalArn, associatedAccessPolicies: p.items, ...(p.nextToken ? { nextToken: p.nextToken } : {}) });
      }
      default:
        return eksError('InvalidRequestException', `The stand-in does not serve ${c.call.action}`);
    }
  }
}

interface Ctx {
  call: EksCall;
  moto: MotoCall;
  region: string;
  query: URLSearchParams;
  body: Json;
  /** The cluster's name (path parameter). */
  name: string;
}

/** DescribeAddonVersions over the recorded catalog: newest first, compatibilities narrowed to kubernetesVersion. */
function describeAddonVersions(query: URLSearchParams): EksAnswer {
  const name = query.get('addonName');
  const k8s = query.get('kubernetesVersion');
  const types = query.getAll('types');
  const addons = ADDON_CATALOG.filter((a) => (!name || a.addonName === name) && (types.length === 0 || types.includes(a.type)))
    .map((a) => ({
      addonName: a.addonName,
      type: a.type,
      addonVersions: a.versions
        .filter((v) => !k8s || v.clusterVersions.includes(k8s))
        .map((v) => ({
          addonVersion: v.addonVersion,
          architecture: ['amd64', 'arm64'],
          computeTypes: ['ec2', 'hybrid'],
          compatibilities: v.clusterVersions.filter((cv) => !k8s || cv === k8s).map((cv) => ({ clusterVersion: cv, platformVersions: ['*'], defaultVersion: v.defaultFor.includes(cv) })),
          requiresConfiguration: false,
          requiresIamPermissions: a.requiresIamPermissions,
        })),
      publisher: 'eks',
      owner: 'aws',
      defaultNamespace: 'kube-system',
    }))
    .filter((a) => a.addonVersions.length > 0);
  const p = paginate(addons, query);
  return isAnswer(p) ? p : json(200, { addons: p.items, ...(p.nextToken ? { nextToken: p.nextToken } : {}) });
}
