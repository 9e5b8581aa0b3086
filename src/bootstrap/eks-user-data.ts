/**
 * The user data of an EKS node (EKSConfig), in the two forms the AWS provider's EKS bootstrap
 * (CAPA's bootstrap/eks) makes:
 *
 * - Amazon Linux 2: `#cloud-config` whose runcmd runs preBootstrapCommands, then the EKS AMI's
 *   `/etc/eks/bootstrap.sh <cluster>` (or spec.boostrapCommandOverride) with its flags, then
 *   postBootstrapCommands; files, ntp, users, disk_setup, fs_setup and mounts as cloud-init modules.
 *   Unlike CAPA, the cluster's endpoint, CA and service CIDR are passed too (--apiserver-endpoint,
 *   --b64-cluster-ca, --service-ipv4-cidr), so a node does not call DescribeCluster at boot; and every
 *   value from the spec is shell-quoted (CAPA writes kubelet args inside bare single quotes).
 * - Amazon Linux 2023: a MIME multipart document for nodeadm: a `text/x-shellscript` part with the
 *   preBootstrapCommands (when any), an `application/node.eks.aws` part holding a
 *   `node.eks.aws/v1alpha1` NodeConfig (cluster name, apiServerEndpoint, certificateAuthority, cidr;
 *   kubelet flags from kubeletExtraArgs, kubelet config from dnsClusterIP and useMaxPods: false), and
 *   a `text/cloud-config` part for files, ntp, users, disks and mounts (when any). Fields of the
 *   EKSConfig that nodeadm has no place for are refused, not dropped.
 *
 * The form is AL2023 when spec.nodeType is `al2023` or the pool's AMI lookup type is an
 * AmazonLinux2023 one; else AL2. Nothing here logs: the user data may hold dockerConfigJson or a
 * file from a Secret, and errors name fields, never their values.
 */
import { createHash } from 'node:crypto';
import { stringify } from 'yaml';
import { InputError } from '../core/errors.js';
import type { Rest } from '../spec/index.js';
import { diskSetup, fsSetup, ntp, type SecretKeyRef, type SecretResolver, type WriteFile } from './cloud-config.js';
import { where, type SpecOrigin } from './kubeadm-config.js';

export const EKS_BOOTSTRAP_SCRIPT = '/etc/eks/bootstrap.sh';
export const NODEADM_API_VERSION = 'node.eks.aws/v1alpha1';
export const NODEADM_CONTENT_TYPE = 'application/node.eks.aws';
/** The boundary CAPA uses; another is chosen when a part's text holds it. */
export const DEFAULT_MIME_BOUNDARY = '//';

type PathSegment = string | number;

export interface EksFile {
  path: string;
  content?: string;
  contentFrom?: { secret: SecretKeyRef };
  owner?: string;
  permissions?: string;
  encoding?: string;
  append?: boolean;
}

export interface EksUser {
  name: string;
  gecos?: string;
  groups?: string;
  homeDir?: string;
  inactive?: boolean;
  lockPassword?: boolean;
  passwd?: string;
  passwdFrom?: { secret: SecretKeyRef };
  primaryGroup?: string;
  shell?: string;
  sshAuthorizedKeys?: string[];
  sudo?: string;
}

/** EKSConfig.spec (bootstrap.cluster.x-k8s.io/v1beta2), the fields the renderer reads. */
export interface EKSConfigSpec {
  kubeletExtraArgs?: Record<string, string>;
  containerRuntime?: string;
  dnsClusterIP?: string;
  dockerConfigJson?: string;
  apiRetryAttempts?: number;
  pauseContainer?: { accountNumber: string; version: string };
  useMaxPods?: boolean;
  serviceIPV6Cidr?: string;
  preBootstrapCommands?: string[];
  postBootstrapCommands?: string[];
  /** Spelled as the CRD spells it. */
  boostrapCommandOverride?: string;
  files?: EksFile[];
  users?: EksUser[];
  ntp?: { enabled?: boolean; servers?: string[] };
  diskSetup?: Rest;
  mounts?: string[][];
  /** `al2023` picks nodeadm. Not in the CAPA v2.9/v2.11 schemas (which refuse it), read when present. */
  nodeType?: string;
  [field: string]: unknown;
}

/** The EKS cluster a node joins: what eks-control-plane keeps in the status secret. */
export interface EksClusterInfo {
  /** The EKS cluster's own name. */
  name: string;
  /** https://... */
  endpoint: string;
  /** Base64 of the cluster CA's PEM, as EKS reports it. */
  certificateAuthorityData: string;
  /** The service IPv4 CIDR (kubernetesNetworkConfig.serviceIpv4Cidr). */
  serviceCidr?: string;
}

export type EksNodeForm = 'al2' | 'al2023';

export interface EksUserDataInput {
  spec: EKSConfigSpec;
  cluster: EksClusterInfo;
  /** Default: eksNodeForm(spec, amiLookupType). */
  form?: EksNodeForm;
  /** AWSMachinePool.spec.awsLaunchTemplate.ami.eksLookupType. */
  amiLookupType?: string;
  /** Where the spec is written, so refusals name the field: `EKSConfig/x spec.kubeletExtraArgs`. */
  origin?: SpecOrigin;
  /** Values of files[].contentFrom and users[].passwdFrom. */
  resolveSecret?: SecretResolver;
}

/** AL2023 (nodeadm) when the spec or the AMI lookup says so; else AL2 (bootstrap.sh). */
export function eksNodeForm(spec: Pick<EKSConfigSpec, 'nodeType'>, amiLookupType?: string): EksNodeForm {
  if (typeof spec.nodeType === 'string' && spec.nodeType.toLowerCase() === 'al2023') return 'al2023';
  if (amiLookupType !== undefined && /^AmazonLinux2023/.test(amiLookupType)) return 'al2023';
  return 'al2';
}

/** POSIX shell quoting: words of safe characters as they are, anything else in single quotes. */
export function shellQuote(value: string): string {
  if (value !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export async function renderEksUserData(input: EksUserDataInput): Promise<string> {
  const form = input.form ?? eksNodeForm(input.spec, input.amiLookupType);
  return form === 'al2023' ? renderNodeadmUserData(input) : renderAl2UserData(input);
}

// --- Amazon Linux 2: bootstrap.sh -------------------------------------------------------------

/** `--k1=v1 --k2=v2`, keys sorted (as CAPA's template ranges over the map). */
export function kubeletArgs(spec: EKSConfigSpec, origin?: SpecOrigin): string[] {
  const args = spec.kubeletExtraArgs ?? {};
  return Object.keys(args)
    .sort()
    .map((k) => {
      const v = String(args[k]);
      // bootstrap.sh writes the args into a systemd drop-in, nodeadm into the kubelet's environment: a
      // line break would start a directive of its own there, whatever the shell quoting.
      // eslint-disable-next-line no-control-regex
      if (/[\u0000-\u001f\u007f]/.test(k) || /[\u0000-\u001f\u007f]/.test(v)) {
        throw new InputError('EKS_KUBELET_ARG_INVALID', `${where(origin, ['kubeletExtraArgs', k])}: kubelet arguments cannot hold line breaks or control characters`);
      }
      if (k === '' || k.startsWith('-')) throw new InputError('EKS_KUBELET_ARG_INVALID', `${where(origin, ['kubeletExtraArgs', k])}: name the flag without its leading dashes`);
      return `--${k}=${v}`;
    });
}

/** The bootstrap.sh command line of runcmd, every value quoted for the shell. */
export function bootstrapCommand(spec: EKSConfigSpec, cluster: EksClusterInfo, origin?: SpecOrigin): string {
  const words: string[] = [spec.boostrapCommandOverride || EKS_BOOTSTRAP_SCRIPT, cluster.name];
  const flag = (name: string, value: string | number | boolean | undefined) => {
    if (value !== undefined && value !== '') words.push(`--${name}`, String(value));
  };
  flag('b64-cluster-ca', cluster.certificateAuthorityData);
  flag('apiserver-endpoint', cluster.endpoint);
  const kubelet = kubeletArgs(spec, origin);
  if (kubelet.length > 0) flag('kubelet-extra-args', kubelet.join(' '));
  flag('container-runtime', spec.containerRuntime);
  if (spec.serviceIPV6Cidr) {
    flag('ip-family', 'ipv6');
    flag('service-ipv6-cidr', spec.serviceIPV6Cidr);
  } else {
    flag('service-ipv4-cidr', cluster.serviceCidr);
  }
  flag('use-max-pods', spec.useMaxPods);
  flag('aws-api-retry-attempts', spec.apiRetryAttempts);
  if (spec.pauseContainer) {
    flag('pause-container-account', spec.pauseContainer.accountNumber);
    flag('pause-container-version', spec.pauseContainer.version);
  }
  flag('dns-cluster-ip', spec.dnsClusterIP);
  flag('docker-config-json', spec.dockerConfigJson);
  // The override is a command the user wrote (it may carry its own arguments): kept as written.
  return [words[0]!, ...words.slice(1).map(shellQuote)].join(' ');
}

/** AL2: `#cloud-config` with bootstrap.sh in runcmd. */
export async function renderAl2UserData(input: EksUserDataInput): Promise<string> {
  const { spec, cluster } = input;
  requireCluster(cluster, false);
  const body = defined({
    write_files: nonEmpty(await files(input)),
    runcmd: [...(spec.preBootstrapCommands ?? []), bootstrapCommand(spec, cluster, input.origin), ...(spec.postBootstrapCommands ?? [])],
    ...(await cloudInitModules(input)),
  });
  return `#cloud-config\n${stringify(body, { version: '1.1', lineWidth: 0 })}`;
}

// --- Amazon Linux 2023: nodeadm ----------------------------------------------------------------

/** Fields nodeadm has no place for: refused on AL2023 rather than dropped. */
const NOT_ON_AL2023: Array<[keyof EKSConfigSpec, string]> = [
  ['dockerConfigJson', 'AL2023 runs no Docker daemon'],
  ['boostrapCommandOverride', 'nodeadm replaces bootstrap.sh; there is no command to override'],
  ['apiRetryAttempts', 'nodeadm has no such setting'],
  ['pauseContainer', 'nodeadm picks the pause image of the region'],
  ['postBootstrapCommands', 'user data scripts run before nodeadm starts the kubelet; use preBootstrapCommands'],
];

/** The NodeConfig nodeadm reads. */
export function nodeConfig(spec: EKSConfigSpec, cluster: EksClusterInfo, origin?: SpecOrigin): Rest {
  for (const [field, why] of NOT_ON_AL2023) {
    const v = spec[field];
    if (v !== undefined && !(Array.isArray(v) && v.length === 0)) {
      throw new InputError('EKS_FIELD_NOT_ON_AL2023', `${where(origin, [field])}: not supported on Amazon Linux 2023 (nodeadm): ${why}`, {
        hint: 'remove the field, or run the pool on Amazon Linux 2 (ami.eksLookupType: AmazonLinux)',
      });
    }
  }
  if (spec.containerRuntime !== undefined && spec.containerRuntime !== 'containerd') {
    throw new InputError('EKS_FIELD_NOT_ON_AL2023', `${where(origin, ['containerRuntime'])}: Amazon Linux 2023 runs containerd only`);
  }
  const cidr = spec.serviceIPV6Cidr || cluster.serviceCidr;
  if (!cidr) throw new InputError('EKS_SERVICE_CIDR_MISSING', `the EKS cluster ${cluster.name} has no service CIDR in its status; nodeadm needs one`, { hint: 'run eks-control-plane again' });
  const flags = kubeletArgs(spec, origin);
  const config = defined({
    clusterDNS: spec.dnsClusterIP ? [spec.dnsClusterIP] : undefined,
    // bootstrap.sh --use-max-pods false leaves the kubelet's own default; nodeadm computes one unless told.
    maxPods: spec.useMaxPods === false ? 110 : undefined,
  });
  const kubelet = defined({ config: Object.keys(config).length > 0 ? config : undefined, flags: nonEmpty(flags) });
  return {
    apiVersion: NODEADM_API_VERSION,
    kind: 'NodeConfig',
    spec: defined({
      cluster: { name: cluster.name, apiServerEndpoint: cluster.endpoint, certificateAuthority: cluster.certificateAuthorityData, cidr },
      kubelet: Object.keys(kubelet).length > 0 ? kubelet : undefined,
    }),
  };
}

export interface MimePart {
  contentType: string;
  body: string;
}

/** AL2023: MIME multipart (shell script, NodeConfig, cloud-config), as CAPA lays it out. */
export async function renderNodeadmUserData(input: EksUserDataInput): Promise<string> {
  const { spec, cluster } = input;
  requireCluster(cluster, true);
  const parts: MimePart[] = [];
  const config = nodeConfig(spec, cluster, input.origin);
  const pre = spec.preBootstrapCommands ?? [];
  if (pre.length > 0) {
    parts.push({ contentType: 'text/x-shellscript; charset="us-ascii"', body: ['#!/bin/bash', 'set -o errexit', 'set -o pipefail', 'set -o nounset', ...pre, ''].join('\n') });
  }
  parts.push({ contentType: NODEADM_CONTENT_TYPE, body: `---\n${stringify(config, { lineWidth: 0 })}` });
  const cloudConfig = defined({ write_files: nonEmpty(await files(input)), ...(await cloudInitModules(input)) });
  if (Object.keys(cloudConfig).length > 0) {
    parts.push({ contentType: 'text/cloud-config', body: `#cloud-config\n${stringify(cloudConfig, { version: '1.1', lineWidth: 0 })}` });
  }
  return mimeMultipart(parts);
}

/** A multipart/mixed document of the parts, with a boundary none of them holds. */
export function mimeMultipart(parts: MimePart[], preferred = DEFAULT_MIME_BOUNDARY): string {
  const clashes = (b: string) => parts.some((p) => p.body.split(/\r?\n/).some((line) => line.startsWith(`--${b}`)));
  let boundary = preferred;
  for (let n = 0; clashes(boundary); n++) {
    boundary = `==capflow-${createHash('sha256').update(`${n}\0${parts.map((p) => p.body).join('\0')}`).digest('hex').slice(0, 32)}==`;
  }
  const out = [`MIME-Version: 1.0`, `Content-Type: multipart/mixed; boundary="${boundary}"`, ''];
  for (const p of parts) {
    out.push(`--${boundary}`, `Content-Type: ${p.contentType}`, 'MIME-Version: 1.0', '', p.body.endsWith('\n') ? p.body.slice(0, -1) : p.body);
  }
  out.push(`--${boundary}--`, '');
  return out.join('\n');
}

// --- shared -------------------------------------------------------------------------------------

function requireCluster(cluster: EksClusterInfo, nodeadm: boolean): void {
  const missing = (['name', ...(nodeadm ? (['endpoint', 'certificateAuthorityData'] as const) : [])] as const).filter((k) => !cluster[k]);
  if (missing.length > 0) {
    throw new InputError('CONTROL_PLANE_MISSING', `the EKS cluster's ${missing.join(', ')} are not known yet`, { hint: 'run eks-control-plane first' });
  }
}

async function files(input: EksUserDataInput): Promise<WriteFile[]> {
  const out: WriteFile[] = [];
  for (const [i, f] of (input.spec.files ?? []).entries()) {
    const content = f.contentFrom ? await fromSecret(input, f.contentFrom.secret, ['files', i, 'contentFrom', 'secret']) : (f.content ?? '');
    out.push(defined({ path: f.path, encoding: f.encoding, owner: f.owner, permissions: f.permissions, append: f.append === true ? true : undefined, content }));
  }
  return out;
}

/** ntp, users, disk_setup, fs_setup, mounts: as the kubeadm user data writes them (cloud-config.ts). */
async function cloudInitModules(input: EksUserDataInput): Promise<Rest> {
  const spec = input.spec;
  return defined({
    ntp: ntp((spec.ntp ?? {}) as Rest),
    users: nonEmpty(await users(input)),
    disk_setup: diskSetup(spec.diskSetup ?? {}),
    fs_setup: fsSetup(spec.diskSetup ?? {}),
    mounts: nonEmpty(spec.mounts),
  });
}

async function users(input: EksUserDataInput): Promise<Rest[]> {
  const out: Rest[] = [];
  for (const [i, u] of (input.spec.users ?? []).entries()) {
    if (u.inactive === true) {
      // cloud-init reads `inactive` as a number of days; CAPA's `true` fails its schema.
      throw new InputError('EKS_USER_INACTIVE', `${where(input.origin, ['users', i, 'inactive'])}: cloud-init cannot take a boolean here; remove it`);
    }
    out.push(
      defined({
        name: u.name,
        passwd: u.passwdFrom ? await fromSecret(input, u.passwdFrom.secret, ['users', i, 'passwdFrom', 'secret']) : u.passwd,
        gecos: u.gecos,
        groups: u.groups,
        homedir: u.homeDir,
        lock_passwd: u.lockPassword,
        shell: u.shell,
        primary_group: u.primaryGroup,
        sudo: u.sudo,
        ssh_authorized_keys: nonEmpty(u.sshAuthorizedKeys),
      }),
    );
  }
  return out;
}

async function fromSecret(input: EksUserDataInput, ref: SecretKeyRef, path: PathSegment[]): Promise<string> {
  const value = input.resolveSecret ? await input.resolveSecret({ name: ref.name, key: ref.key }) : undefined;
  if (value === undefined) {
    throw new InputError('BOOTSTRAP_SECRET_NOT_FOUND', `${where(input.origin, path)}: secret ${ref.name} has no key ${ref.key}`, {
      hint: `create the Secret ${ref.name} with the key ${ref.key} in the cluster's namespace`,
    });
  }
  return value;
}

function nonEmpty<T>(value: T[] | undefined): T[] | undefined {
  return Array.isArray(value) && value.length > 0 ? value : undefined;
}

function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
