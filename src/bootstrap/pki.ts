/**
 * A cluster's PKI, kept as Secrets with Cluster API's names and shape: `<cluster>-ca`, `-etcd`,
 * `-proxy` (CAs) and `-sa` (the service-account key pair), each with `tls.crt` and `tls.key`, type
 * `cluster.x-k8s.io/secret`, labelled `cluster.x-k8s.io/cluster-name`; `<cluster>-kubeconfig` holds
 * the admin kubeconfig under `value`.
 *
 * Made once, reused by every run: all four are read and checked first, so a broken one stops the
 * run before anything is written; then the missing ones are made and written one whole Secret at
 * a time in a fixed order. A run that crashed between two writes finds the written ones on rerun
 * and makes only the rest. A Secret that exists is never replaced, which is how a user brings
 * their own CA (Cluster API's convention): create it before the first run.
 *
 * The admin kubeconfig is rewritten only when it is missing or unreadable, names another server or
 * CA, or its client certificate is past half of its life (Cluster API renews its own at the same
 * point: less than half of the default year left).
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { ConflictError, InputError, NotFoundError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { SecretData, SecretStore } from '../core/secrets.js';
import {
  allowsCertificateSigning,
  canSignWith,
  certificateDetails,
  makeSelfSignedCa,
  makeServiceAccountKeyPair,
  readCertificate,
  signLeafCertificate,
  spkiOf,
  type CertificateAndKey,
  type ServiceAccountKeyPair,
} from './certificates.js';

export { caCertHash, certificateExpiry } from './certificates.js';

export const CLUSTER_SECRET_TYPE = 'cluster.x-k8s.io/secret';
export const CLUSTER_NAME_LABEL = 'cluster.x-k8s.io/cluster-name';
export const TLS_CERT_KEY = 'tls.crt';
export const TLS_KEY_KEY = 'tls.key';
export const KUBECONFIG_KEY = 'value';

/** Name suffixes of Cluster API's cluster secrets. */
export type SecretPurpose = 'ca' | 'etcd' | 'proxy' | 'sa' | 'kubeconfig' | 'user-kubeconfig';

export function clusterSecretName(clusterName: string, purpose: SecretPurpose): string {
  return `${clusterName}-${purpose}`;
}

/** The admin's identity in the kubeconfig: kubeadm's admin.conf since v1.29, bound to cluster-admin by kubeadm init. */
export const ADMIN_USER = 'kubernetes-admin';
export const ADMIN_GROUP = 'kubeadm:cluster-admins';

interface Part {
  purpose: 'ca' | 'etcd' | 'proxy' | 'sa';
  what: string;
  /** The CA's common name as kubeadm gives it; none for the service-account key pair. */
  commonName?: string;
}

/** The fixed order of writing. */
const PARTS: readonly Part[] = [
  { purpose: 'ca', what: 'cluster CA', commonName: 'kubernetes' },
  { purpose: 'etcd', what: 'etcd CA', commonName: 'etcd-ca' },
  { purpose: 'proxy', what: 'front-proxy CA', commonName: 'front-proxy-ca' },
  { purpose: 'sa', what: 'service-account key pair' },
];

export interface PkiOptions {
  /** The clock (tests drive their own). */
  now?: () => Date;
  log?: Logger;
}

export interface SecretOutcome {
  name: string;
  action: 'created' | 'kept' | 'renewed';
  reason: string;
}

export interface ClusterPki {
  clusterCa: CertificateAndKey;
  etcdCa: CertificateAndKey;
  frontProxyCa: CertificateAndKey;
  serviceAccount: ServiceAccountKeyPair;
  /** What happened to each Secret, in writing order. */
  secrets: SecretOutcome[];
}

export async function ensureClusterPki(store: SecretStore, clusterName: string, opts: PkiOptions = {}): Promise<ClusterPki> {
  const now = (opts.now ?? (() => new Date()))();
  const existing = await Promise.all(PARTS.map((part) => store.get(clusterSecretName(clusterName, part.purpose))));
  PARTS.forEach((part, i) => {
    const data = existing[i];
    if (data) refuseIfBroken(clusterSecretName(clusterName, part.purpose), part, data, now);
  });

  // Keys are made together (the thread pool does it in parallel), written one by one in order.
  const made = await Promise.all(PARTS.map(async (part, i) => (existing[i] ? undefined : makePart(part, now))));
  const secrets: SecretOutcome[] = [];
  const material: SecretData[] = [];
  for (const [i, part] of PARTS.entries()) {
    const name = clusterSecretName(clusterName, part.purpose);
    const kept = existing[i];
    if (kept) {
      secrets.push({ name, action: 'kept', reason: `the ${part.what} exists and is valid` });
      material.push(kept);
      continue;
    }
    const data = made[i]!;
    opts.log?.info('Creating secret', { secret: name, purpose: part.what });
    await store.put(name, data, { [CLUSTER_NAME_LABEL]: clusterName }, { type: CLUSTER_SECRET_TYPE });
    secrets.push({ name, action: 'created', reason: `no ${part.what} yet` });
    material.push(data);
  }
  const pair = (data: SecretData): CertificateAndKey => ({ certPem: data[TLS_CERT_KEY]!, keyPem: data[TLS_KEY_KEY]! });
  return {
    clusterCa: pair(material[0]!),
    etcdCa: pair(material[1]!),
    frontProxyCa: pair(material[2]!),
    serviceAccount: { publicKeyPem: material[3]![TLS_CERT_KEY]!, privateKeyPem: material[3]![TLS_KEY_KEY]! },
    secrets,
  };
}

async function makePart(part: Part, now: Date): Promise<SecretData> {
  if (!part.commonName) {
    const sa = await makeServiceAccountKeyPair();
    return { [TLS_CERT_KEY]: sa.publicKeyPem, [TLS_KEY_KEY]: sa.privateKeyPem };
  }
  const ca = await makeSelfSignedCa(part.commonName, now);
  return { [TLS_CERT_KEY]: ca.certPem, [TLS_KEY_KEY]: ca.keyPem };
}

function refuseIfBroken(name: string, part: Part, data: SecretData, now: Date): void {
  const problems = part.commonName ? caProblems(data, now) : keyPairProblems(data);
  if (problems.length === 0) return;
  throw new ConflictError('PKI_SECRET_INVALID', `secret ${name} (${part.what}) cannot be used: ${problems.join('; ')}`, {
    hint: `fix or delete secret ${name}: capflow never replaces an existing one (a user-provided ${part.what} is kept as it is)`,
    details: { secret: name, problems },
  });
}

/** The private key in tls.key, or undefined with the reason added to `problems`. */
function privateKeyOf(data: SecretData, problems: string[]): KeyObject | undefined {
  const pem = data[TLS_KEY_KEY];
  if (!pem) {
    problems.push(`it has no ${TLS_KEY_KEY}`);
    return undefined;
  }
  try {
    return createPrivateKey(pem);
  } catch {
    problems.push(`${TLS_KEY_KEY} is not an unencrypted PEM private key`);
    return undefined;
  }
}

/** What is wrong with a CA Secret: empty when its certificate is a CA in date with the key in tls.key. */
function caProblems(data: SecretData, now: Date): string[] {
  const problems: string[] = [];
  const key = privateKeyOf(data, problems);
  const pem = data[TLS_CERT_KEY];
  if (!pem) return [`it has no ${TLS_CERT_KEY}`, ...problems];
  let cert: ReturnType<typeof readCertificate>;
  let details: ReturnType<typeof certificateDetails>;
  try {
    cert = readCertificate(pem);
    details = certificateDetails(pem);
  } catch {
    return [`${TLS_CERT_KEY} is not a PEM certificate`, ...problems];
  }
  if (!cert.ca) problems.push(`${TLS_CERT_KEY} is not a CA certificate (no basicConstraints CA:TRUE)`);
  if (!allowsCertificateSigning(details.keyUsage)) problems.push(`the key usage of ${TLS_CERT_KEY} does not allow signing certificates`);
  if (details.notAfter.getTime() <= now.getTime()) problems.push(`${TLS_CERT_KEY} expired on ${details.notAfter.toISOString()}`);
  if (key && !cert.checkPrivateKey(key)) problems.push(`${TLS_KEY_KEY} does not match the certificate in ${TLS_CERT_KEY}`);
  else if (key && !canSignWith(key)) problems.push(`${TLS_KEY_KEY} is a ${key.asymmetricKeyType ?? 'unknown'} key; RSA or EC P-256/384/521 can sign`);
  return problems;
}

/** What is wrong with the service-account Secret: empty when tls.crt is the public key of tls.key. */
function keyPairProblems(data: SecretData): string[] {
  const problems: string[] = [];
  const key = privateKeyOf(data, problems);
  const pem = data[TLS_CERT_KEY];
  if (!pem) return [`it has no ${TLS_CERT_KEY}`, ...problems];
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey(pem);
  } catch {
    return [`${TLS_CERT_KEY} is not a PEM public key`, ...problems];
  }
  if (key && !spkiOf(key).equals(spkiOf(publicKey))) problems.push(`${TLS_CERT_KEY} is not the public key of ${TLS_KEY_KEY}`);
  return problems;
}

// ------------------------------------------------------------------------------------------------
// the admin kubeconfig

export interface KubeconfigOutcome extends SecretOutcome {
  /** When the client certificate in the Secret expires. */
  expires: Date;
}

export async function ensureAdminKubeconfig(
  store: SecretStore,
  clusterName: string,
  server: string,
  opts: PkiOptions = {},
): Promise<KubeconfigOutcome> {
  if (!/^https:\/\/[^/\s]+$/.test(server)) {
    throw new InputError('KUBECONFIG_SERVER_INVALID', `the API server "${server}" is not https://host[:port]`);
  }
  const now = (opts.now ?? (() => new Date()))();
  const caName = clusterSecretName(clusterName, 'ca');
  const caData = await store.get(caName);
  if (!caData) {
    throw new NotFoundError('CLUSTER_CA_MISSING', `secret ${caName} does not exist: the admin kubeconfig is signed by the cluster CA`, {
      hint: 'make the cluster PKI first (ensureClusterPki)',
    });
  }
  refuseIfBroken(caName, PARTS[0]!, caData, now);
  const ca: CertificateAndKey = { certPem: caData[TLS_CERT_KEY]!, keyPem: caData[TLS_KEY_KEY]! };

  const name = clusterSecretName(clusterName, 'kubeconfig');
  const current = (await store.get(name))?.[KUBECONFIG_KEY];
  const reason = current === undefined ? undefined : renewalReason(current, server, ca, now);
  if (current !== undefined && reason === undefined) {
    const expires = certificateDetails(readKubeconfig(current)!.clientCertPem).notAfter;
    return { name, action: 'kept', reason: 'same server and CA, client certificate in the first half of its life', expires };
  }

  const client = await signLeafCertificate(ca, { commonName: ADMIN_USER, organizations: [ADMIN_GROUP], usage: 'client', now });
  opts.log?.info(current === undefined ? 'Creating secret' : 'Renewing secret', { secret: name, reason: reason ?? 'missing' });
  await store.put(name, { [KUBECONFIG_KEY]: kubeconfigYaml(clusterName, server, ca.certPem, client) }, { [CLUSTER_NAME_LABEL]: clusterName }, { type: CLUSTER_SECRET_TYPE });
  const expires = certificateDetails(client.certPem).notAfter;
  return current === undefined ? { name, action: 'created', reason: 'no admin kubeconfig yet', expires } : { name, action: 'renewed', reason: reason!, expires };
}

/** Why the kubeconfig must be rewritten, or undefined when it is good as it is. */
function renewalReason(text: string, server: string, ca: CertificateAndKey, now: Date): string | undefined {
  const current = readKubeconfig(text);
  if (!current) return 'the kubeconfig is unreadable';
  if (current.server !== server) return `the server changed from ${current.server} to ${server}`;
  if (current.caPem.trim() !== ca.certPem.trim()) return 'the cluster CA changed';
  try {
    const client = readCertificate(current.clientCertPem);
    const caCert = readCertificate(ca.certPem);
    if (!client.checkIssued(caCert) || !client.verify(caCert.publicKey)) return 'the client certificate is not signed by the cluster CA';
    const { notBefore, notAfter } = certificateDetails(current.clientCertPem);
    const halfLife = notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) / 2;
    if (now.getTime() >= halfLife) return `the client certificate is past half of its life (expires ${notAfter.toISOString()})`;
  } catch {
    return 'the client certificate is unreadable';
  }
  return undefined;
}

type Fields = Record<string, unknown>;

/** The `field` object of the entry called `name` in a kubeconfig list (clusters, contexts, users). */
function entry(list: unknown, name: unknown, field: string): Fields | undefined {
  const found = (Array.isArray(list) ? (list as (Fields | null)[]) : []).find((e) => e?.name === name)?.[field];
  return typeof found === 'object' && found !== null ? (found as Fields) : undefined;
}

/** Server, CA and client certificate of the current context, or undefined when any is missing. */
function readKubeconfig(text: string): { server: string; caPem: string; clientCertPem: string } | undefined {
  let doc: Fields | null;
  try {
    doc = parseYaml(text) as Fields | null;
  } catch {
    return undefined;
  }
  const context = entry(doc?.contexts, doc?.['current-context'], 'context');
  const cluster = entry(doc?.clusters, context?.cluster, 'cluster');
  const user = entry(doc?.users, context?.user, 'user');
  const [server, caData, certData] = [cluster?.server, cluster?.['certificate-authority-data'], user?.['client-certificate-data']];
  if (typeof server !== 'string' || typeof caData !== 'string' || typeof certData !== 'string') return undefined;
  const decode = (b64: string): string => Buffer.from(b64, 'base64').toString('utf8');
  return { server, caPem: decode(caData), clientCertPem: decode(certData) };
}

/** The kubeconfig as Cluster API writes it: cluster `<cluster>`, user `<cluster>-admin`, everything embedded. */
function kubeconfigYaml(clusterName: string, server: string, caPem: string, client: CertificateAndKey): string {
  const b64 = (pem: string): string => Buffer.from(pem).toString('base64');
  const user = `${clusterName}-admin`;
  const context = `${user}@${clusterName}`;
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: clusterName, cluster: { server, 'certificate-authority-data': b64(caPem) } }],
    contexts: [{ name: context, context: { cluster: clusterName, user } }],
    'current-context': context,
    preferences: {},
    users: [{ name: user, user: { 'client-certificate-data': b64(client.certPem), 'client-key-data': b64(client.keyPem) } }],
  });
}
