/**
 * The X.509 making and reading that the cluster PKI needs, with @peculiar/x509 on Node's Web
 * Crypto (no openssl process). Keys are RSA 2048, kubeadm's default; private keys are written as
 * PKCS#1 PEM ("RSA PRIVATE KEY") as Cluster API writes them, public keys as SubjectPublicKeyInfo
 * PEM. A CA brought by the user may also hold an EC key: signing takes what Node can read.
 */
// tsyringe, which @peculiar/x509 resolves its parts through, refuses to load without the Reflect metadata API
import 'reflect-metadata';
import {
  X509Certificate as NodeX509,
  createHash,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  webcrypto,
  type KeyObject,
} from 'node:crypto';
import * as x509 from '@peculiar/x509';

// Node's webcrypto is the Web Crypto API; the DOM type x509 names is not in this project's libs
x509.cryptoProvider.set(webcrypto as never);

/** A certificate and its private key, both PEM. */
export interface CertificateAndKey {
  certPem: string;
  keyPem: string;
}

export interface ServiceAccountKeyPair {
  publicKeyPem: string;
  privateKeyPem: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Machines' clocks may lag ours: certificates start a little before they are made, as Cluster API's do. */
const BACKDATE_MS = 5 * 60 * 1000;
export const CA_VALIDITY_DAYS = 3650;
export const LEAF_VALIDITY_DAYS = 365;

const RSA_SIGNING = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;
const EC_CURVES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };

const CERTIFICATE_PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** The first certificate of a PEM bundle (the subject's own comes first). */
function firstCertificate(pem: string): string {
  const match = CERTIFICATE_PEM.exec(pem);
  if (!match) throw new Error('no PEM certificate in it');
  return match[0];
}

/** A parsed certificate (Node's view): is it a CA, does a key match, who signed it. */
export function readCertificate(pem: string): NodeX509 {
  return new NodeX509(firstCertificate(pem));
}

/** Validity window and key usage (Node 20 gives neither as values). */
export function certificateDetails(pem: string): { notBefore: Date; notAfter: Date; keyUsage: number | undefined } {
  const cert = new x509.X509Certificate(firstCertificate(pem));
  const usage = cert.getExtension(x509.KeyUsagesExtension);
  return { notBefore: cert.notBefore, notAfter: cert.notAfter, keyUsage: usage?.usages };
}

export function certificateExpiry(pem: string): Date {
  return certificateDetails(pem).notAfter;
}

/** True when the key usage extension allows signing certificates (absent means unrestricted). */
export function allowsCertificateSigning(keyUsage: number | undefined): boolean {
  return keyUsage === undefined || (keyUsage & x509.KeyUsageFlags.keyCertSign) !== 0;
}

/**
 * kubeadm's discovery hash of a CA: `sha256:<hex>` of the certificate's SubjectPublicKeyInfo, what
 * `kubeadm join --discovery-token-ca-cert-hash` pins.
 */
export function caCertHash(caPem: string): string {
  const spki = readCertificate(caPem).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

/** SubjectPublicKeyInfo DER of a key, to compare a private key with a certificate or public key. */
export function spkiOf(key: KeyObject): Buffer {
  return (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
}

async function newRsaKeys(): Promise<{ keys: webcrypto.CryptoKeyPair; keyPem: string; publicKeyPem: string }> {
  const params = { ...RSA_SIGNING, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) };
  const keys = await webcrypto.subtle.generateKey(params, true, ['sign', 'verify']);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const privateKey = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  return {
    keys,
    keyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    publicKeyPem: createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** True for the keys a CA here can sign with: RSA, or EC on a curve Web Crypto knows. */
export function canSignWith(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'rsa' || (key.asymmetricKeyType === 'ec' && EC_CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''] !== undefined);
}

/** A CA's key as Web Crypto needs it to sign, with the matching signature algorithm. */
async function signerOf(keyPem: string): Promise<{ key: webcrypto.CryptoKey; algorithm: webcrypto.Algorithm | webcrypto.EcdsaParams }> {
  const key = createPrivateKey(keyPem);
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  if (key.asymmetricKeyType === 'rsa') {
    return { key: await webcrypto.subtle.importKey('pkcs8', pkcs8, RSA_SIGNING, false, ['sign']), algorithm: RSA_SIGNING };
  }
  const curve = EC_CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''];
  if (key.asymmetricKeyType === 'ec' && curve) {
    const imported = await webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: curve }, false, ['sign']);
    return { key: imported, algorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams };
  }
  throw new Error(`a ${key.asymmetricKeyType ?? 'unknown'} key cannot sign here (RSA or EC P-256/384/521 only)`);
}

/** A positive random serial of 128 bits, hex. */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

function validity(now: Date, days: number): { notBefore: Date; notAfter: Date } {
  return { notBefore: new Date(now.getTime() - BACKDATE_MS), notAfter: new Date(now.getTime() + days * DAY_MS) };
}

/** A self-signed CA as kubeadm makes one: RSA 2048, CA:true (critical), certificate and CRL signing, a subject key id. */
export async function makeSelfSignedCa(commonName: string, now: Date = new Date(), days = CA_VALIDITY_DAYS): Promise<CertificateAndKey> {
  const { keys, keyPem } = await newRsaKeys();
  const { KeyUsageFlags: U } = x509;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ CN: [commonName] }],
    keys,
    signingAlgorithm: RSA_SIGNING,
    ...validity(now, days),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(U.keyCertSign | U.cRLSign | U.digitalSignature | U.keyEncipherment, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem };
}

/** The service-account signing pair: RSA 2048, public key PEM beside the private key. */
export async function makeServiceAccountKeyPair(): Promise<ServiceAccountKeyPair> {
  const { keyPem, publicKeyPem } = await newRsaKeys();
  return { publicKeyPem, privateKeyPem: keyPem };
}

export interface LeafRequest {
  commonName: string;
  organizations?: string[];
  usage: 'client' | 'server';
  dnsNames?: string[];
  ips?: string[];
  now?: Date;
  days?: number;
}

/** A leaf certificate signed by `ca`, with a fresh RSA 2048 key. */
export async function signLeafCertificate(ca: CertificateAndKey, request: LeafRequest): Promise<CertificateAndKey> {
  const { keys, keyPem } = await newRsaKeys();
  const issuer = new x509.X509Certificate(firstCertificate(ca.certPem));
  const signer = await signerOf(ca.keyPem);
  const { KeyUsageFlags: U, ExtendedKeyUsage: EKU } = x509;
  const names = [...(request.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })), ...(request.ips ?? []).map((value) => ({ type: 'ip' as const, value }))];
  const issuerKeyId = issuer.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [...(request.organizations ?? []).map((o) => ({ O: [o] })), { CN: [request.commonName] }],
    issuer: issuer.subjectName,
    publicKey: keys.publicKey,
    signingKey: signer.key,
    signingAlgorithm: signer.algorithm,
    ...validity(request.now ?? new Date(), request.days ?? LEAF_VALIDITY_DAYS),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(U.digitalSignature | U.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([request.usage === 'client' ? EKU.clientAuth : EKU.serverAuth]),
      ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      ...(issuerKeyId ? [new x509.AuthorityKeyIdentifierExtension(issuerKeyId)] : []),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem };
}

/** A serving certificate (the API server's, in tests) for these names and addresses. */
export function signServingCertificate(
  ca: CertificateAndKey,
  names: { dnsNames?: string[]; ips?: string[]; commonName?: string; now?: Date },
): Promise<CertificateAndKey> {
  return signLeafCertificate(ca, { commonName: names.commonName ?? names.dnsNames?.[0] ?? 'kube-apiserver', usage: 'server', ...names });
}
