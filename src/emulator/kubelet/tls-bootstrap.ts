/**
 * The kubelet stand-in's credentials. With bootstrap-kubelet.conf and no kubelet.conf, TLS
 * bootstrap: an EC P-256 key and a CSR for system:node:<name> (signer
 * kube-apiserver-client-kubelet), approved and signed by kube-controller-manager; the pair goes to
 * <pki>/kubelet-client-<time>.pem behind the kubelet-client-current.pem link, then kubelet.conf
 * points at that link. A kubelet.conf with embedded client data (kubeadm init) seeds the same file:
 * kubeadm's kubelet-finalize phase looks for it and then points kubelet.conf at it.
 */
// tsyringe, which @peculiar/x509 resolves its parts through, refuses to load without the Reflect metadata API
import 'reflect-metadata';
import { createPrivateKey, webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { CertificatesV1Api, KubeConfig } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { InputError } from '../../core/errors.js';
import type { ApiSession } from './api-session.js';

export interface CredentialPaths {
  /** /etc/kubernetes/kubelet.conf */
  kubeletConf: string;
  /** /etc/kubernetes/bootstrap-kubelet.conf */
  bootstrapKubeletConf: string;
  /** /var/lib/kubelet/pki (the kubelet's --cert-dir) */
  pkiDir: string;
}

export const CURRENT_CLIENT_PEM = 'kubelet-client-current.pem';
const SIGNER = 'kubernetes.io/kube-apiserver-client-kubelet';

/** Waits for kubelet.conf, making it by TLS bootstrap when only bootstrap-kubelet.conf is there. */
export async function ensureCredentials(session: ApiSession, paths: CredentialPaths, nodeName: string): Promise<void> {
  const { kubeletConf, bootstrapKubeletConf } = paths;
  let waitingLogged = false;
  while (!session.stopped) {
    try {
      if (existsSync(kubeletConf)) {
        seedClientCertStore(session, paths);
        return;
      }
      if (existsSync(bootstrapKubeletConf)) {
        await tlsBootstrap(session, paths, nodeName);
        return;
      }
    } catch (err) {
      session.report('preparing the kubelet credentials', err);
    }
    if (!waitingLogged) {
      waitingLogged = true;
      session.log('Waiting for a kubeconfig', { kubeconfig: kubeletConf, bootstrapKubeconfig: bootstrapKubeletConf });
    }
    await session.sleep(session.retryMs, 'other');
  }
}

/** kubeadm init writes kubelet.conf with embedded client data: the kubelet copies it into its certificate store. */
function seedClientCertStore(session: ApiSession, paths: CredentialPaths): void {
  const current = join(paths.pkiDir, CURRENT_CLIENT_PEM);
  if (existsSync(current)) return;
  const kc = new KubeConfig();
  kc.loadFromFile(paths.kubeletConf);
  const user = kc.getCurrentUser();
  if (!user?.certData || !user.keyData) return;
  session.log('Writing the client certificate of kubelet.conf to the certificate store', { path: current });
  storeClientPair(paths.pkiDir, Buffer.from(user.certData, 'base64').toString(), Buffer.from(user.keyData, 'base64').toString());
}

async function tlsBootstrap(session: ApiSession, paths: CredentialPaths, nodeName: string): Promise<void> {
  const { bootstrapKubeletConf, kubeletConf, pkiDir } = paths;
  const bootstrap = new KubeConfig();
  bootstrap.loadFromFile(bootstrapKubeletConf);
  const certificates = bootstrap.makeApiClient(CertificatesV1Api);
  const { csrPem, keyPem } = await makeNodeCsr(nodeName);
  session.log('Requesting a client certificate (TLS bootstrap)', { node: nodeName, signer: SIGNER });

  let csrName: string | undefined;
  let certificate: string | undefined;
  while (!session.stopped && certificate === undefined) {
    try {
      if (!csrName) {
        const created = await certificates.createCertificateSigningRequest({
          body: {
            apiVersion: 'certificates.k8s.io/v1',
            kind: 'CertificateSigningRequest',
            metadata: { generateName: 'node-csr-' },
            spec: {
              request: Buffer.from(csrPem).toString('base64'),
              signerName: SIGNER,
              usages: ['digital signature', 'client auth'],
            },
          },
        });
        csrName = created.metadata!.name!;
        session.log('Waiting for the CertificateSigningRequest to be approved and signed', { csr: csrName });
      }
      const csr = await certificates.readCertificateSigningRequest({ name: csrName });
      const refused = csr.status?.conditions?.find((c) => (c.type === 'Denied' || c.type === 'Failed') && c.status === 'True');
      if (refused) {
        session.log('CertificateSigningRequest refused; requesting again', { csr: csrName, type: refused.type, reason: refused.reason });
        csrName = undefined;
      } else if (csr.status?.certificate) {
        certificate = Buffer.from(csr.status.certificate, 'base64').toString();
        break;
      }
    } catch (err) {
      session.report('TLS bootstrap', err);
    }
    await session.sleep(session.retryMs, 'other');
  }
  if (certificate === undefined) return;
  const pem = storeClientPair(pkiDir, certificate, keyPem);
  writeKubeletConf(kubeletConf, bootstrap, pem);
  session.log('TLS bootstrap done: wrote kubelet.conf', { kubeconfig: kubeletConf, clientCertificate: pem });
}

/** A P-256 key (SEC1 PEM, as the kubelet writes it) and a CSR for system:node:<name> in system:nodes. */
export async function makeNodeCsr(nodeName: string): Promise<{ csrPem: string; keyPem: string }> {
  const x509 = await import('@peculiar/x509');
  // Node's webcrypto is the Web Crypto API; the DOM type x509 names is not in this project's libs
  x509.cryptoProvider.set(webcrypto as never);
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ O: ['system:nodes'] }, { CN: [`system:node:${nodeName}`] }],
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'sec1', format: 'pem' }).toString();
  return { csrPem: csr.toString('pem'), keyPem };
}

/**
 * Writes certificate and key to <dir>/kubelet-client-<local time>.pem (0600) and points
 * kubelet-client-current.pem at it (a new link renamed over the old, so readers never miss it).
 * Returns the path of the link.
 */
export function storeClientPair(dir: string, certPem: string, keyPem: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const file = resolve(dir, `kubelet-client-${localTimestamp(new Date())}.pem`);
  const body = `${certPem.trim()}\n${keyPem.trim()}\n`;
  rmSync(file, { force: true }); // a fresh file gets the mode; an old one would keep its own
  writeFileSync(file, body, { mode: 0o600 });
  const current = join(dir, CURRENT_CLIENT_PEM);
  const updated = join(dir, 'kubelet-client-updated.pem');
  rmSync(updated, { force: true });
  symlinkSync(file, updated);
  renameSync(updated, current);
  return current;
}

/** kubelet.conf as the kubelet writes it after TLS bootstrap: the bootstrap's cluster, the user's certificate and key in the PEM. */
function writeKubeletConf(path: string, bootstrap: KubeConfig, pemPath: string): void {
  const cluster = bootstrap.getCurrentCluster();
  if (!cluster) throw new InputError('KUBELET_BOOTSTRAP_KUBECONFIG_INVALID', 'the bootstrap kubeconfig has no current cluster');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'default-cluster',
        cluster: {
          server: cluster.server,
          ...(cluster.caFile ? { 'certificate-authority': cluster.caFile } : {}),
          ...(!cluster.caFile && cluster.caData ? { 'certificate-authority-data': cluster.caData } : {}),
          ...(cluster.skipTLSVerify ? { 'insecure-skip-tls-verify': true } : {}),
        },
      },
    ],
    contexts: [{ name: 'default-context', context: { cluster: 'default-cluster', namespace: 'default', user: 'default-auth' } }],
    'current-context': 'default-context',
    preferences: {},
    users: [{ name: 'default-auth', user: { 'client-certificate': pemPath, 'client-key': pemPath } }],
  };
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, toYaml(config), { mode: 0o600 });
  renameSync(tmp, path);
}

/** Go's "2006-01-02-15-04-05" in local time, the kubelet's certificate file stamp. */
function localTimestamp(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}`;
}
