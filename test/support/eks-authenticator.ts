// The test bed's stand-in for EKS's token authenticator (aws-iam-authenticator on the control
// plane): a kube-apiserver token webhook (--authentication-token-webhook-config-file) that takes
// the bearer token `aws eks get-token` makes, as EKS does:
//
//   1. the token is `k8s-aws-v1.` + base64url of a presigned STS GetCallerIdentity URL on an STS
//      host, signed with SigV4 over `host` and `x-k8s-aws-id`, not older than 15 minutes;
//   2. STS checks the signature. moto does not, so this stand-in does, by signing the same request
//      again with the access key's secret (the test hands them over) and the webhook's own
//      cluster name as x-k8s-aws-id: a token made for another cluster, or altered, fails here;
//   3. STS answers who signed it: moto's GetCallerIdentity for that access key;
//   4. the ARN (an assumed role as its role) is looked up in the cluster's kube-system/aws-auth
//      ConfigMap (mapRoles, mapUsers), read from the API server itself, after the cluster
//      creator, who is system:masters while the cluster keeps the creator's admin permissions.
//
// Nothing is cached, so a change to aws-auth takes effect on the next request (start the API
// server with --authentication-token-webhook-cache-ttl=0s). Every review is recorded.

import { createHash, createHmac } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { parse as parseYaml } from 'yaml';

const PREFIX = 'k8s-aws-v1.';
const LIFETIME_MS = 15 * 60_000;

export interface EksAuthenticatorOptions {
  /** The EKS cluster the API server plays (x-k8s-aws-id must name it). */
  eksClusterName: string;
  /** moto's endpoint, for GetCallerIdentity. */
  motoEndpoint: string;
  /** The secret of an access key, as STS knows it. */
  secretOf(accessKeyId: string): string | undefined;
  /** The principal that created the cluster: system:masters (EKS's bootstrapClusterCreatorAdminPermissions). */
  creatorArn?: string;
}

export interface TokenReviewRecord {
  authenticated: boolean;
  /** The IAM ARN the token was signed by, when the signature held. */
  arn?: string;
  username?: string;
  groups?: string[];
  /** Why a token was refused. */
  error?: string;
}

export interface EksAuthenticator {
  /** Writes the webhook kubeconfig into dir and returns the kube-apiserver flags that use it. */
  apiserverArgs(dir: string): string[];
  /** The admin client the webhook reads aws-auth with (set once the API server is up). */
  useAdmin(kc: KubeConfig): void;
  reviews: TokenReviewRecord[];
  stop(): Promise<void>;
}

class Sha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    const key = secret === undefined ? undefined : typeof secret === 'string' ? secret : new Uint8Array(ArrayBuffer.isView(secret) ? secret.buffer.slice(secret.byteOffset, secret.byteOffset + secret.byteLength) : secret);
    this.h = key === undefined ? createHash('sha256') : createHmac('sha256', key);
  }
  update(d: string | ArrayBuffer | ArrayBufferView): void {
    this.h.update(typeof d === 'string' ? d : new Uint8Array(ArrayBuffer.isView(d) ? d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength) : d));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.h.digest()));
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

/** moto's GetCallerIdentity as the holder of an access key (moto reads the key from the credential scope). */
function callerArn(motoEndpoint: string, accessKeyId: string, region: string): Promise<string> {
  const url = new URL('/?Action=GetCallerIdentity&Version=2011-06-15', motoEndpoint);
  const date = new Date().toISOString().slice(0, 10).replace(/-/g, '');
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: 'GET', headers: { authorization: `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${date}/${region}/sts/aws4_request, SignedHeaders=host, Signature=0` } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          const arn = /<Arn>([^<]+)<\/Arn>/.exec(body)?.[1];
          if (res.statusCode === 200 && arn) resolve(arn);
          else reject(new Error(`GetCallerIdentity: HTTP ${res.statusCode}`));
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** As aws-iam-authenticator canonicalizes: an assumed role is its role; moto's sts user ARN is the IAM user's. */
export function canonicalArn(arn: string): string {
  const assumed = /^arn:([^:]+):sts::(\d+):assumed-role\/([^/]+)\/.+$/.exec(arn);
  if (assumed) return `arn:${assumed[1]}:iam::${assumed[2]}:role/${assumed[3]}`;
  const user = /^arn:([^:]+):sts::(\d+):user\/(.+)$/.exec(arn);
  return user ? `arn:${user[1]}:iam::${user[2]}:user/${user[3]}` : arn;
}

/** Checks the token as STS would; the access key and region on success. */
async function verify(token: string, opts: EksAuthenticatorOptions): Promise<{ accessKeyId: string; region: string }> {
  if (!token.startsWith(PREFIX)) throw new Error('not an EKS token');
  const url = new URL(Buffer.from(token.slice(PREFIX.length), 'base64url').toString('utf8'));
  const host = /^sts(?:\.([a-z0-9-]+))?\.amazonaws\.com(?:\.cn)?$/.exec(url.hostname);
  if (url.protocol !== 'https:' || !host || url.pathname !== '/') throw new Error(`not an STS URL: ${url.hostname}${url.pathname}`);
  const q = url.searchParams;
  if (q.get('Action') !== 'GetCallerIdentity') throw new Error(`action ${q.get('Action')} is not GetCallerIdentity`);
  const signedHeaders = (q.get('X-Amz-SignedHeaders') ?? '').split(';');
  if (!signedHeaders.includes('x-k8s-aws-id')) throw new Error('x-k8s-aws-id is not signed');
  const [accessKeyId, , scopeRegion] = (q.get('X-Amz-Credential') ?? '').split('/');
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(q.get('X-Amz-Date') ?? '');
  if (!accessKeyId || !scopeRegion || !m) throw new Error('no credential scope or date');
  const signedAt = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  if (Date.now() - signedAt.getTime() > LIFETIME_MS) throw new Error('token expired');
  const secretAccessKey = opts.secretOf(accessKeyId);
  if (!secretAccessKey) throw new Error(`unknown access key ${accessKeyId}`);
  const query: Record<string, string> = {};
  for (const [k, v] of q) if (!k.startsWith('X-Amz-')) query[k] = v;
  const signer = new SignatureV4({ service: 'sts', region: scopeRegion, credentials: { accessKeyId, secretAccessKey }, sha256: Sha256, uriEscapePath: true, applyChecksum: false });
  const again = await signer.presign(
    { method: 'GET', protocol: 'https:', hostname: url.hostname, path: '/', query, headers: { host: url.hostname, 'x-k8s-aws-id': opts.eksClusterName } },
    { expiresIn: Number(q.get('X-Amz-Expires') ?? '60'), signingDate: signedAt },
  );
  if (again.query?.['X-Amz-Signature'] !== q.get('X-Amz-Signature')) throw new Error('signature does not match (another cluster, or altered)');
  return { accessKeyId, region: scopeRegion };
}

interface Mapping {
  username: string;
  groups: string[];
}

async function mappingFor(arn: string, admin: KubeConfig | undefined): Promise<Mapping | undefined> {
  if (!admin) return undefined;
  let data: Record<string, string> = {};
  try {
    data = (await admin.makeApiClient(CoreV1Api).readNamespacedConfigMap({ name: 'aws-auth', namespace: 'kube-system' })).data ?? {};
  } catch {
    return undefined;
  }
  const [, , , , account] = arn.split(':');
  const entries = [
    ...((parseYaml(data.mapRoles ?? '') as Array<Record<string, unknown>> | null) ?? []).map((e) => ({ arn: e.rolearn, e })),
    ...((parseYaml(data.mapUsers ?? '') as Array<Record<string, unknown>> | null) ?? []).map((e) => ({ arn: e.userarn, e })),
  ];
  const hit = entries.find((x) => x.arn === arn)?.e;
  if (!hit) return undefined;
  const username = (typeof hit.username === 'string' ? hit.username : arn).replace('{{AccountID}}', account ?? '').replace('{{SessionName}}', 'session');
  return { username, groups: Array.isArray(hit.groups) ? hit.groups.map(String) : [] };
}

export async function startEksAuthenticator(opts: EksAuthenticatorOptions): Promise<EksAuthenticator> {
  let admin: KubeConfig | undefined;
  const reviews: TokenReviewRecord[] = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      const review = JSON.parse(await readBody(req)) as { apiVersion?: string; spec?: { token?: string } };
      let record: TokenReviewRecord;
      try {
        const { accessKeyId, region } = await verify(review.spec?.token ?? '', opts);
        const arn = canonicalArn(await callerArn(opts.motoEndpoint, accessKeyId, region));
        const mapped = arn === opts.creatorArn ? { username: 'kubernetes-admin', groups: ['system:masters'] } : await mappingFor(arn, admin);
        record = mapped ? { authenticated: true, arn, ...mapped } : { authenticated: false, arn, error: `${arn} is not mapped in aws-auth` };
      } catch (err) {
        record = { authenticated: false, error: (err as Error).message };
      }
      reviews.push(record);
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          apiVersion: review.apiVersion ?? 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          status: record.authenticated
            ? { authenticated: true, user: { username: record.username, uid: `aws-iam-authenticator:${record.arn}`, groups: [...(record.groups ?? []), 'system:authenticated'], extra: { arn: [record.arn] } } }
            : { authenticated: false, error: record.error },
        }),
      );
    })().catch(() => {
      res.statusCode = 500;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    reviews,
    useAdmin(kc) {
      admin = kc;
    },
    apiserverArgs(dir) {
      const file = path.join(dir, 'eks-authenticator-webhook.yaml');
      writeFileSync(
        file,
        [
          'apiVersion: v1',
          'kind: Config',
          'clusters:',
          '- name: aws-iam-authenticator',
          '  cluster:',
          `    server: http://127.0.0.1:${port}/authenticate`,
          'users:',
          '- name: apiserver',
          '  user: {}',
          'contexts:',
          '- name: webhook',
          '  context: {cluster: aws-iam-authenticator, user: apiserver}',
          'current-context: webhook',
          '',
        ].join('\n'),
      );
      return [`--authentication-token-webhook-config-file=${file}`, '--authentication-token-webhook-cache-ttl=0s', '--authentication-token-webhook-version=v1'];
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
