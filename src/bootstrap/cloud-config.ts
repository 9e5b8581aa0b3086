/**
 * The `#cloud-config` user data of one machine, laid out as the kubeadm bootstrap provider (CABPK)
 * lays it out in its cloudinit templates: the `## template: jinja` header (cloud-init renders
 * `{{ ds.meta_data.* }}` at boot), write_files (the cluster certificates under the certificates
 * directory for control planes, then the spec's files, then the kubeadm configuration and a placeholder
 * that makes /run/cluster-api), bootcmd, runcmd (preKubeadmCommands, `kubeadm init|join` chained with
 * the success sentinel, postKubeadmCommands), ntp, users, disk_setup, fs_setup and mounts.
 *
 * File contents from Secrets (`contentFrom`, `passwdFrom`) come through the caller's resolver; errors
 * name the secret and key, never the content. `format: ignition` is refused, and so is what cannot
 * pass cloud-init's schema (a user's boolean `inactive`, which cloud-init reads as a number of days).
 */
import { stringify } from 'yaml';
import { InputError } from '../core/errors.js';
import type { Rest } from '../spec/index.js';
import { bootstrapSpecProblems } from '../spec/kubeadm-spec.js';
import {
  renderKubeadmConfig,
  throwIfProblems,
  where,
  type KubeadmRenderInput,
} from './kubeadm-config.js';

export { bootstrapSpecProblems };

export const CLOUD_CONFIG_HEADER = '## template: jinja\n#cloud-config\n';
export const KUBEADM_INIT_CONFIG_PATH = '/run/kubeadm/kubeadm.yaml';
export const KUBEADM_JOIN_CONFIG_PATH = '/run/kubeadm/kubeadm-join-config.yaml';
export const BOOTSTRAP_SUCCESS_PATH = '/run/cluster-api/bootstrap-success.complete';
const DEFAULT_CERTIFICATES_DIR = '/etc/kubernetes/pki';

/** A PEM certificate and its private key. */
export interface PemPair {
  certPem: string;
  keyPem?: string;
}

/**
 * The cluster's shared keys, as Cluster API keeps them (`<cluster>-ca`, `-etcd`, `-proxy`, `-sa`);
 * shaped so that pki.ts's ClusterPki can be passed as it is.
 */
export interface ClusterCertificates {
  clusterCa?: PemPair;
  etcdCa?: PemPair;
  frontProxyCa?: PemPair;
  serviceAccount?: { publicKeyPem: string; privateKeyPem?: string };
  /** External etcd only: the API server's etcd client pair, written where etcd.external names it. */
  apiServerEtcdClient?: PemPair;
}

export interface SecretKeyRef {
  name: string;
  key: string;
}

/** The value of a Secret's key in the spec's namespace, or undefined when there is none. */
export type SecretResolver = (ref: SecretKeyRef) => Promise<string | undefined> | string | undefined;

export interface UserDataInput extends KubeadmRenderInput {
  /** Written for `init` and `control-plane-join` (CABPK's worker data carries none). */
  certificates?: ClusterCertificates;
  resolveSecret?: SecretResolver;
}

export interface WriteFile {
  path: string;
  content: string;
  owner?: string;
  permissions?: string;
  encoding?: string;
  append?: boolean;
}

/** The role's user data: `## template: jinja`, then `#cloud-config` YAML. */
export async function renderUserData(input: UserDataInput): Promise<string> {
  return cloudConfigText(await renderCloudConfig(input));
}

/** The cloud-config modules capflow writes; `write_files` and `runcmd` always. */
export interface CloudConfig {
  write_files: WriteFile[];
  runcmd: Array<string | string[]>;
  [module: string]: unknown;
}

export function cloudConfigText(body: CloudConfig): string {
  return CLOUD_CONFIG_HEADER + stringify(body, { version: '1.1', lineWidth: 0 });
}

/** The role's cloud-config, as an object (for sealing: see sealed-user-data.ts). */
export async function renderCloudConfig(input: UserDataInput): Promise<CloudConfig> {
  throwIfProblems(bootstrapSpecProblems(input.spec, input.role), input.origin);
  const spec = input.spec;
  const configPath = input.role === 'init' ? KUBEADM_INIT_CONFIG_PATH : KUBEADM_JOIN_CONFIG_PATH;
  // Rendered before any Secret is read, so bad input is refused before the resolver is called.
  const kubeadmConfig = renderKubeadmConfig(input);
  const writeFiles: WriteFile[] = [
    ...(input.role === 'worker-join' ? [] : certificateFiles(input.certificates, record(spec.clusterConfiguration))),
    ...(await specFiles(input)),
    { path: configPath, owner: 'root:root', permissions: '0640', content: kubeadmConfig },
    // CABPK makes /run/cluster-api this way rather than with mkdir, so the sentinel below has a home.
    { path: '/run/cluster-api/placeholder', owner: 'root:root', permissions: '0640', content: 'Makes the /run/cluster-api directory for the bootstrap success sentinel' },
  ];
  return defined({
    write_files: writeFiles,
    bootcmd: nonEmptyList(spec.bootCommands),
    runcmd: [...(spec.preKubeadmCommands ?? []), kubeadmCommand(input, configPath), ...(spec.postKubeadmCommands ?? [])],
    ntp: ntp(record(spec.ntp)),
    users: await users(input),
    disk_setup: diskSetup(record(spec.diskSetup)),
    fs_setup: fsSetup(record(spec.diskSetup)),
    mounts: nonEmptyList(spec.mounts),
  });
}

function kubeadmCommand(input: UserDataInput, configPath: string): string {
  const verbosity = typeof input.spec.verbosity === 'number' ? ` --v ${input.spec.verbosity}` : '';
  // With a certificate key the other control planes fetch the keys from the cluster instead of their user data.
  const uploadCerts = input.role === 'init' && input.certificateKey ? ' --upload-certs' : '';
  const kubeadm = `kubeadm ${input.role === 'init' ? 'init' : 'join'} --config ${configPath}${verbosity}${uploadCerts}`;
  return `${kubeadm} && echo success > ${BOOTSTRAP_SUCCESS_PATH}`;
}

/** CABPK's order and modes: CA certificates 0640, keys 0600, owned by root. */
function certificateFiles(certs: ClusterCertificates | undefined, clusterConfiguration: Rest): WriteFile[] {
  if (!certs) return [];
  const dir = typeof clusterConfiguration.certificatesDir === 'string' ? clusterConfiguration.certificatesDir : DEFAULT_CERTIFICATES_DIR;
  const external = record(record(clusterConfiguration.etcd).external);
  const externalEtcd = Object.keys(external).length > 0;
  const sa = certs.serviceAccount && { certPem: certs.serviceAccount.publicKeyPem, keyPem: certs.serviceAccount.privateKeyPem };
  const pairs: Array<[PemPair | undefined, string, string | undefined]> = [
    [certs.clusterCa, `${dir}/ca.crt`, `${dir}/ca.key`],
    externalEtcd ? [certs.etcdCa, String(external.caFile), undefined] : [certs.etcdCa, `${dir}/etcd/ca.crt`, `${dir}/etcd/ca.key`],
    [certs.frontProxyCa, `${dir}/front-proxy-ca.crt`, `${dir}/front-proxy-ca.key`],
    [sa, `${dir}/sa.pub`, `${dir}/sa.key`],
    [externalEtcd ? certs.apiServerEtcdClient : undefined, String(external.certFile), String(external.keyFile)],
  ];
  return pairs.flatMap(([pair, certPath, keyPath]) => [
    ...(pair?.certPem ? [{ path: certPath, owner: 'root:root', permissions: '0640', content: pair.certPem }] : []),
    ...(pair?.keyPem && keyPath ? [{ path: keyPath, owner: 'root:root', permissions: '0600', content: pair.keyPem }] : []),
  ]);
}

async function specFiles(input: UserDataInput): Promise<WriteFile[]> {
  const out: WriteFile[] = [];
  for (const [i, file] of (input.spec.files ?? []).entries()) {
    const content = file.contentFrom ? await fromSecret(input, file.contentFrom.secret, ['files', i, 'contentFrom', 'secret']) : (file.content ?? '');
    out.push(defined({ path: file.path, encoding: file.encoding, owner: file.owner, permissions: file.permissions, append: file.append, content }));
  }
  return out;
}

async function users(input: UserDataInput): Promise<Rest[] | undefined> {
  const out: Rest[] = [];
  for (const [i, user] of (input.spec.users ?? []).entries()) {
    const from = record(user.passwdFrom).secret as SecretKeyRef | undefined;
    out.push(
      defined({
        name: user.name,
        passwd: from ? await fromSecret(input, from, ['users', i, 'passwdFrom', 'secret']) : user.passwd,
        gecos: user.gecos,
        groups: user.groups,
        homedir: user.homeDir,
        lock_passwd: user.lockPassword,
        shell: user.shell,
        primary_group: user.primaryGroup,
        sudo: user.sudo,
        ssh_authorized_keys: nonEmptyList(user.sshAuthorizedKeys),
      }),
    );
  }
  return out.length > 0 ? out : undefined;
}

async function fromSecret(input: UserDataInput, ref: SecretKeyRef, path: Array<string | number>): Promise<string> {
  const value = input.resolveSecret ? await input.resolveSecret({ name: ref.name, key: ref.key }) : undefined;
  if (value === undefined) {
    throw new InputError('BOOTSTRAP_SECRET_NOT_FOUND', `${where(input.origin, path)}: secret ${ref.name} has no key ${ref.key}`, {
      hint: `create the Secret ${ref.name} with the key ${ref.key} in the cluster's namespace`,
    });
  }
  return value;
}

/** CABPK writes `enabled` only when true, and servers as listed. */
export function ntp(spec: Rest): Rest | undefined {
  const servers = nonEmptyList(spec.servers);
  if (!servers && spec.enabled !== true) return undefined;
  return defined({ enabled: spec.enabled === true ? true : undefined, servers });
}

/** cloud-init's disk_setup: one entry per device. */
export function diskSetup(spec: Rest): Rest | undefined {
  const partitions = Array.isArray(spec.partitions) ? (spec.partitions as Rest[]) : [];
  if (partitions.length === 0) return undefined;
  return Object.fromEntries(
    partitions.map((p) => [String(p.device), defined({ table_type: p.tableType, layout: p.layout, overwrite: p.overwrite === true ? true : undefined })]),
  );
}

export function fsSetup(spec: Rest): Rest[] | undefined {
  const filesystems = Array.isArray(spec.filesystems) ? (spec.filesystems as Rest[]) : [];
  if (filesystems.length === 0) return undefined;
  return filesystems.map((f) =>
    defined({
      label: f.label,
      filesystem: f.filesystem,
      device: f.device,
      partition: f.partition,
      overwrite: f.overwrite === true ? true : undefined,
      replace_fs: f.replaceFS,
      extra_opts: nonEmptyList(f.extraOpts),
    }),
  );
}

function nonEmptyList(value: unknown): unknown[] | undefined {
  return Array.isArray(value) && value.length > 0 ? (value as unknown[]) : undefined;
}

function record(value: unknown): Rest {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Rest) : {};
}

function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
