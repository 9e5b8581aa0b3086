/**
 * The kubeadm configuration of one machine, rendered from a Cluster API KubeadmConfigSpec (v1beta1)
 * as the kubeadm bootstrap provider (CABPK) renders it: `ClusterConfiguration` + `InitConfiguration`
 * for the first control plane, `JoinConfiguration` (with `controlPlane` for the other replicas)
 * everywhere else. The kubeadm API follows the Kubernetes version as CABPK's
 * KubeVersionToKubeadmAPIGroupVersion does: v1beta4 from 1.31, v1beta3 from 1.22, nothing older.
 *
 * Cluster API's v1beta1 shapes are converted as CABPK's upstreamv1beta4 conversion does: extraArgs
 * and kubeletExtraArgs maps become lists of {name, value} sorted by name; apiServer.timeoutForControlPlane
 * becomes {init,join}.timeouts.controlPlaneComponentHealthCheck; discovery.timeout becomes
 * join.timeouts.tlsBootstrap (CABPK's choice; kubeadm's own migration uses timeouts.discovery);
 * certificate validity days become durations. The Cluster's name, version and networks override the
 * spec's, and its endpoint fills a missing controlPlaneEndpoint (CABPK's "additional data").
 */
import { stringify } from 'yaml';
import { InputError } from '../core/errors.js';
import { formatPath, type APIEndpoint, type ClusterNetwork, type KubeadmConfigSpec, type Rest } from '../spec/index.js';
import { kubeadmSpecProblems, type BootstrapProblem, type BootstrapRole } from '../spec/kubeadm-spec.js';

export const KUBEADM_V1BETA4 = 'kubeadm.k8s.io/v1beta4';
export const KUBEADM_V1BETA3 = 'kubeadm.k8s.io/v1beta3';
export type KubeadmApiVersion = typeof KUBEADM_V1BETA4 | typeof KUBEADM_V1BETA3;

export type { BootstrapProblem, BootstrapRole } from '../spec/kubeadm-spec.js';
export { bootstrapSpecProblems } from '../spec/kubeadm-spec.js';
export { kubeadmSpecProblems };

type PathSegment = string | number;

/** Where the KubeadmConfigSpec is written, so a refusal names the field: `KubeadmControlPlane/x spec.kubeadmConfigSpec.files[1]`. */
export interface SpecOrigin {
  kind: string;
  name: string;
  path: PathSegment[];
}


export interface KubeadmRenderInput {
  role: BootstrapRole;
  spec: KubeadmConfigSpec;
  origin?: SpecOrigin;
  clusterName: string;
  /** `v1.31.4`: the machine's version; it picks the kubeadm API. */
  kubernetesVersion: string;
  /** The API load balancer (`host:port` or the Cluster's endpoint); the spec's own value wins. */
  controlPlaneEndpoint?: APIEndpoint | string;
  /** Cluster.spec.clusterNetwork: pod and service CIDRs, DNS domain. */
  clusterNetwork?: ClusterNetwork;
  /** `abcdef.0123456789abcdef`: join discovery; on init, created by kubeadm unless the spec lists tokens. */
  bootstrapToken?: string;
  /** The init token's lifetime (`15m0s`); kubeadm's default is 24h. */
  bootstrapTokenTtl?: string;
  /** `sha256:<hex>` of the cluster CA's public key; without one, discovery skips CA verification (CABPK does the same). */
  caCertHashes?: string[];
  /** Hex key of kubeadm's uploaded certificates: init uploads them, control plane joins download them. */
  certificateKey?: string;
}

type KubeadmDocument = Record<string, unknown>;

const V1BETA4_MINOR = 31;
const OLDEST_MINOR = 22;
/** KubeadmControlPlane turns this kubeadm feature gate on for 1.31 ≤ version < 1.36 unless the spec sets it. */
const KUBELET_LOCAL_MODE_GATE = 'ControlPlaneKubeletLocalMode';
const KUBELET_LOCAL_MODE_UNTIL_MINOR = 36;

/** The multi-document YAML of the role's kubeadm configuration (what lands in /run/kubeadm). */
export function renderKubeadmConfig(input: KubeadmRenderInput): string {
  return kubeadmDocuments(input)
    .map((doc) => stringify(doc, { version: '1.1', lineWidth: 0 }))
    .join('---\n');
}

/** The role's kubeadm documents as objects: ClusterConfiguration and InitConfiguration for init, else one JoinConfiguration. */
export function kubeadmDocuments(input: KubeadmRenderInput): KubeadmDocument[] {
  throwIfProblems(kubeadmSpecProblems(input.spec, input.role), input.origin);
  const apiVersion = kubeadmApiVersion(input.kubernetesVersion);
  if (input.role === 'init') return [clusterConfiguration(input, apiVersion), initConfiguration(input, apiVersion)];
  return [joinConfiguration(input, apiVersion)];
}

/** v1beta4 from Kubernetes 1.31, v1beta3 from 1.22; older versions are refused as CABPK refuses them. */
export function kubeadmApiVersion(kubernetesVersion: string): KubeadmApiVersion {
  const minor = minorOf(kubernetesVersion);
  if (minor < OLDEST_MINOR) {
    throw new InputError('BOOTSTRAP_VERSION_UNSUPPORTED', `Kubernetes ${kubernetesVersion} is older than v1.${OLDEST_MINOR}, the oldest version kubeadm bootstrap supports`);
  }
  return minor >= V1BETA4_MINOR ? KUBEADM_V1BETA4 : KUBEADM_V1BETA3;
}

/** Throws one InputError naming every problem at its field. */
export function throwIfProblems(problems: BootstrapProblem[], origin: SpecOrigin | undefined): void {
  if (problems.length === 0) return;
  const lines = problems.map((p) => `${where(origin, p.path)}: ${p.message}`);
  throw new InputError('BOOTSTRAP_SPEC_INVALID', lines.join('; '), {
    details: { problems: problems.map((p) => ({ ...p, path: formatPath([...(origin?.path ?? []), ...p.path]) })) },
  });
}

export function where(origin: SpecOrigin | undefined, path: PathSegment[]): string {
  const field = formatPath([...(origin?.path ?? []), ...path]);
  return origin ? `${origin.kind}/${origin.name} ${field}` : field;
}

// ---- ClusterConfiguration --------------------------------------------------------------------

function clusterConfiguration(input: KubeadmRenderInput, apiVersion: KubeadmApiVersion): KubeadmDocument {
  const spec = input.spec.clusterConfiguration ?? {};
  const v4 = apiVersion === KUBEADM_V1BETA4;
  const apiServer = record(spec.apiServer);
  const network = input.clusterNetwork;
  return defined({
    apiVersion,
    kind: 'ClusterConfiguration',
    clusterName: input.clusterName,
    kubernetesVersion: input.kubernetesVersion,
    controlPlaneEndpoint: str(spec.controlPlaneEndpoint) || endpointOf(input),
    networking: nonEmpty({
      ...record(spec.networking),
      ...defined({
        serviceSubnet: network?.services?.cidrBlocks?.join(',') || undefined,
        podSubnet: network?.pods?.cidrBlocks?.join(',') || undefined,
        dnsDomain: network?.serviceDomain || undefined,
      }),
    }),
    etcd: etcd(record(spec.etcd), apiVersion),
    apiServer: nonEmpty({
      ...component(apiServer, apiVersion),
      ...defined({ certSANs: apiServer.certSANs, timeoutForControlPlane: v4 ? undefined : apiServer.timeoutForControlPlane }),
    }),
    controllerManager: nonEmpty(component(record(spec.controllerManager), apiVersion)),
    scheduler: nonEmpty(component(record(spec.scheduler), apiVersion)),
    dns: nonEmpty(pick(record(spec.dns), ['imageRepository', 'imageTag'])),
    certificatesDir: spec.certificatesDir,
    imageRepository: spec.imageRepository,
    featureGates: featureGates(record(spec.featureGates), input.kubernetesVersion),
    ...(v4
      ? {
          encryptionAlgorithm: spec.encryptionAlgorithm,
          certificateValidityPeriod: days(spec.certificateValidityPeriodDays),
          caCertificateValidityPeriod: days(spec.caCertificateValidityPeriodDays),
        }
      : {}),
  });
}

function component(c: Rest, apiVersion: KubeadmApiVersion): Rest {
  return defined({
    extraArgs: args(c.extraArgs, apiVersion),
    extraVolumes: c.extraVolumes,
    extraEnvs: apiVersion === KUBEADM_V1BETA4 ? c.extraEnvs : undefined,
  });
}

function etcd(spec: Rest, apiVersion: KubeadmApiVersion): Rest | undefined {
  const local = record(spec.local);
  return nonEmpty(
    defined({
      local: nonEmpty({
        ...pick(local, ['imageRepository', 'imageTag', 'dataDir', 'serverCertSANs', 'peerCertSANs']),
        ...component({ extraArgs: local.extraArgs, extraEnvs: local.extraEnvs }, apiVersion),
      }),
      external: spec.external,
    }),
  );
}

function featureGates(spec: Rest, kubernetesVersion: string): Rest | undefined {
  const minor = minorOf(kubernetesVersion);
  const localMode = minor >= V1BETA4_MINOR && minor < KUBELET_LOCAL_MODE_UNTIL_MINOR && !(KUBELET_LOCAL_MODE_GATE in spec);
  return nonEmpty({ ...spec, ...(localMode ? { [KUBELET_LOCAL_MODE_GATE]: true } : {}) });
}

// ---- InitConfiguration -----------------------------------------------------------------------

function initConfiguration(input: KubeadmRenderInput, apiVersion: KubeadmApiVersion): KubeadmDocument {
  const spec = input.spec.initConfiguration ?? {};
  const timeout = record(input.spec.clusterConfiguration?.apiServer).timeoutForControlPlane;
  return defined({
    apiVersion,
    kind: 'InitConfiguration',
    bootstrapTokens: bootstrapTokens(spec.bootstrapTokens, input),
    nodeRegistration: nodeRegistration(record(spec.nodeRegistration), apiVersion),
    localAPIEndpoint: nonEmpty(record(spec.localAPIEndpoint)),
    certificateKey: input.certificateKey,
    skipPhases: spec.skipPhases,
    patches: spec.patches,
    timeouts: apiVersion === KUBEADM_V1BETA4 ? nonEmpty(defined({ controlPlaneComponentHealthCheck: timeout })) : undefined,
  });
}

/** The spec's tokens, plus the caller's when the spec does not already list it. */
function bootstrapTokens(spec: unknown, input: KubeadmRenderInput): unknown[] | undefined {
  const tokens = Array.isArray(spec) ? [...(spec as unknown[])] : [];
  const token = input.bootstrapToken;
  if (token && !tokens.some((t) => record(t).token === token)) tokens.push(defined({ token, ttl: input.bootstrapTokenTtl }));
  return tokens.length > 0 ? tokens : undefined;
}

function nodeRegistration(spec: Rest, apiVersion: KubeadmApiVersion): Rest | undefined {
  return nonEmpty(
    defined({
      ...pick(spec, ['name', 'criSocket', 'taints', 'ignorePreflightErrors', 'imagePullPolicy']),
      kubeletExtraArgs: args(spec.kubeletExtraArgs, apiVersion),
      imagePullSerial: apiVersion === KUBEADM_V1BETA4 ? spec.imagePullSerial : undefined,
    }),
  );
}

// ---- JoinConfiguration -----------------------------------------------------------------------

function joinConfiguration(input: KubeadmRenderInput, apiVersion: KubeadmApiVersion): KubeadmDocument {
  const spec = input.spec.joinConfiguration ?? {};
  const v4 = apiVersion === KUBEADM_V1BETA4;
  const discoverySpec = record(spec.discovery);
  const controlPlane = input.role === 'control-plane-join' ? record(spec.controlPlane) : undefined;
  const timeout = record(input.spec.clusterConfiguration?.apiServer).timeoutForControlPlane;
  return defined({
    apiVersion,
    kind: 'JoinConfiguration',
    nodeRegistration: nodeRegistration(record(spec.nodeRegistration), apiVersion),
    caCertPath: spec.caCertPath,
    discovery: defined({
      bootstrapToken: discoverySpec.file ? undefined : tokenDiscovery(record(discoverySpec.bootstrapToken), input),
      file: discoverySpec.file ? pick(record(discoverySpec.file), ['kubeConfigPath']) : undefined,
      tlsBootstrapToken: discoverySpec.tlsBootstrapToken,
      timeout: v4 ? undefined : discoverySpec.timeout,
    }),
    // KubeadmControlPlane always sets controlPlane on a joining replica, empty when the spec has none.
    controlPlane: controlPlane
      ? defined({ localAPIEndpoint: record(controlPlane.localAPIEndpoint), certificateKey: input.certificateKey })
      : undefined,
    skipPhases: spec.skipPhases,
    patches: spec.patches,
    timeouts: v4
      ? nonEmpty(defined({ controlPlaneComponentHealthCheck: controlPlane ? timeout : undefined, tlsBootstrap: discoverySpec.timeout }))
      : undefined,
  });
}

/** The spec's values win; the rest comes from the cluster, as CABPK's reconcileDiscovery fills them. */
function tokenDiscovery(spec: Rest, input: KubeadmRenderInput): Rest {
  const token = str(spec.token) || input.bootstrapToken;
  if (!token) throw new InputError('BOOTSTRAP_TOKEN_MISSING', `${input.role}: no bootstrap token for discovery (neither the spec nor the caller gives one)`);
  const specHashes = Array.isArray(spec.caCertHashes) ? (spec.caCertHashes as string[]) : [];
  const caCertHashes = specHashes.length > 0 ? specHashes : (input.caCertHashes ?? []);
  return defined({
    apiServerEndpoint: str(spec.apiServerEndpoint) || endpointOf(input),
    token,
    caCertHashes: caCertHashes.length > 0 ? caCertHashes : undefined,
    unsafeSkipCAVerification: spec.unsafeSkipCAVerification === true || caCertHashes.length === 0 ? true : undefined,
  });
}

// ---- conversion helpers ----------------------------------------------------------------------

/** v1beta4: a list of {name, value} sorted by name then value (CAPI's ConvertToArgs); v1beta3: a map. */
function args(value: unknown, apiVersion: KubeadmApiVersion): unknown {
  if (value === undefined || value === null) return undefined;
  const list = Array.isArray(value)
    ? value.map((a) => ({ name: scalar(record(a).name), value: scalar(record(a).value) }))
    : Object.entries(record(value)).map(([name, v]) => ({ name, value: scalar(v) }));
  if (apiVersion === KUBEADM_V1BETA3) return Object.fromEntries(list.map((a) => [a.name, a.value]));
  return list.sort((a, b) => (a.name === b.name ? cmp(a.value, b.value) : cmp(a.name, b.name)));
}

/** `host:port`, the IPv6 host in brackets (Go's JoinHostPort, as Cluster API's APIEndpoint.String). */
function endpointOf(input: KubeadmRenderInput): string {
  const ep = input.controlPlaneEndpoint;
  if (typeof ep === 'string' && ep !== '') return ep;
  if (typeof ep === 'object' && ep.host && ep.port > 0) return ep.host.includes(':') ? `[${ep.host}]:${ep.port}` : `${ep.host}:${ep.port}`;
  throw new InputError('BOOTSTRAP_NO_CONTROL_PLANE_ENDPOINT', `cluster ${input.clusterName} has no control plane endpoint: kubeadm needs the API load balancer's host:port`, {
    hint: 'set Cluster.spec.controlPlaneEndpoint (or let the infrastructure step provide the load balancer)',
  });
}

function minorOf(version: string): number {
  const m = /^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?$/.exec(version);
  if (!m || m[1] !== '1') throw new InputError('BOOTSTRAP_VERSION_INVALID', `"${version}" is not a Kubernetes version like v1.31.4`);
  return Number(m[2]);
}

/** Days as a kubeadm duration (`8760h0m0s`). */
function days(value: unknown): string | undefined {
  return typeof value === 'number' && value > 0 ? `${value * 24}h0m0s` : undefined;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function record(value: unknown): Rest {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Rest) : {};
}

/** A YAML scalar as kubeadm's string field (`true` → "true"); nothing for null. */
function scalar(value: unknown): string {
  return typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : '';
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function pick(source: Rest, keys: string[]): Rest {
  return defined(Object.fromEntries(keys.map((k) => [k, source[k]])));
}

/** Without the undefined fields (empty lists and `false` stay: kubeadm reads `taints: []` as "no taints"). */
function defined<T extends Rest>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function nonEmpty(value: Rest): Rest | undefined {
  const kept = defined(value);
  return Object.keys(kept).length > 0 ? kept : undefined;
}
