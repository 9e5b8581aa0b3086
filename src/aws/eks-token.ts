/**
 * The bearer token an EKS API server accepts, made without the aws CLI: a presigned STS
 * GetCallerIdentity URL whose signature covers the header `x-k8s-aws-id: <cluster>`, base64url
 * without padding, after the prefix `k8s-aws-v1.`. This is what `aws eks get-token` and
 * aws-iam-authenticator make: the signature is valid for 60 s (X-Amz-Expires), and EKS accepts the
 * token for 15 minutes from X-Amz-Date, so a token is reused until a minute before that and then
 * made anew.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { InputError } from '../core/errors.js';

export const EKS_TOKEN_PREFIX = 'k8s-aws-v1.';
/** The header that binds a token to one cluster. */
export const CLUSTER_ID_HEADER = 'x-k8s-aws-id';
/** How long EKS accepts a token after its X-Amz-Date. */
export const TOKEN_LIFETIME_MS = 15 * 60_000;
/** Tokens are refreshed this long before EKS would stop accepting them. */
export const REFRESH_MARGIN_MS = 60_000;
const PRESIGN_EXPIRES_SECONDS = 60;

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface EksTokenRequest {
  clusterName: string;
  /** The region of the STS endpoint (the cluster's), e.g. us-east-1. */
  region: string;
  credentials: AwsCredentials | (() => Promise<AwsCredentials>);
  /** Signing time; default now. */
  now?: Date;
}

export interface EksToken {
  token: string;
  /** When EKS stops accepting it (X-Amz-Date + 15 minutes). */
  expiresAt: Date;
}

/** node:crypto behind the interface the signer wants (SHA-256, or HMAC-SHA-256 with a key); the test fault proxy signs with it too. */
type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (d: SourceData): string | Uint8Array =>
  typeof d === 'string' ? d : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

export class Sha256 {
  private readonly hash: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData): void {
    this.hash.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.hash.digest()));
  }
}

/** The STS endpoint a token names: regional, as current aws CLIs sign it. */
export function stsHostname(region: string): string {
  return region.startsWith('cn-') ? `sts.${region}.amazonaws.com.cn` : `sts.${region}.amazonaws.com`;
}

export async function makeEksToken(req: EksTokenRequest): Promise<EksToken> {
  if (!/^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$/.test(req.clusterName)) {
    throw new InputError('EKS_CLUSTER_NAME_INVALID', `"${req.clusterName}" is not an EKS cluster name (1-100 letters, digits, - and _, starting with a letter or digit)`);
  }
  const now = req.now ?? new Date();
  const credentials = typeof req.credentials === 'function' ? await req.credentials() : req.credentials;
  const signer = new SignatureV4({ service: 'sts', region: req.region, credentials, sha256: Sha256, uriEscapePath: true, applyChecksum: false });
  const hostname = stsHostname(req.region);
  const signed = await signer.presign(
    {
      method: 'GET',
      protocol: 'https:',
      hostname,
      path: '/',
      query: { Action: 'GetCallerIdentity', Version: '2011-06-15' },
      headers: { host: hostname, [CLUSTER_ID_HEADER]: req.clusterName },
    },
    { expiresIn: PRESIGN_EXPIRES_SECONDS, signingDate: now },
  );
  // In the aws CLI's order (sorted, the signature last), so the two tokens are byte for byte alike.
  const query = Object.entries(signed.query ?? {})
    .sort(([a], [b]) => Number(a === 'X-Amz-Signature') - Number(b === 'X-Amz-Signature') || a.localeCompare(b))
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  const url = `https://${hostname}/?${query}`;
  const signedAt = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), now.getUTCHours(), now.getUTCMinutes(), now.getUTCSeconds());
  return { token: EKS_TOKEN_PREFIX + Buffer.from(url).toString('base64url'), expiresAt: new Date(signedAt + TOKEN_LIFETIME_MS) };
}

/** A token for one cluster, reused until a minute before EKS would refuse it. */
export class EksTokenSource {
  private current: Promise<EksToken> | undefined;

  constructor(
    private readonly req: Omit<EksTokenRequest, 'now'>,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async token(): Promise<string> {
    const held = this.current ? await this.current.catch(() => undefined) : undefined;
    if (!held || held.expiresAt.getTime() - REFRESH_MARGIN_MS <= this.clock().getTime()) {
      this.current = makeEksToken({ ...this.req, now: this.clock() });
    }
    return (await this.current!).token;
  }
}
