/**
 * The kubeconfigs of an EKS cluster, under Cluster API's names:
 * `<cluster>-kubeconfig` holds a bearer token (the presigned STS URL of
 * eks-token.ts, good for 15 minutes) for the steps after this one, and
 * `<cluster>-user-kubeconfig` an exec entry that makes a fresh token each
 * time (`aws eks get-token`), for people. Neither holds a long-lived secret.
 * The token kubeconfig is rewritten only when the endpoint or CA changed or
 * its token has less than TOKEN_KEEP_MS left, so a rerun changes nothing.
 */
import { stringify as toYaml, parse as parseYaml } from 'yaml';
import type { SecretStore } from '../core/secrets.js';
import { CLUSTER_NAME_LABEL, CLUSTER_SECRET_TYPE, KUBECONFIG_KEY, clusterSecretName } from '../bootstrap/pki.js';
import { EKS_TOKEN_PREFIX, TOKEN_LIFETIME_MS, makeEksToken, type AwsCredentials } from './eks-token.js';

/** A token kubeconfig with less than this left is renewed (a step after this one has time to use it). */
export const TOKEN_KEEP_MS = 10 * 60_000;

export interface EksEndpoint {
  clusterName: string;
  eksClusterName: string;
  region: string;
  /** https://... */
  endpoint: string;
  /** Base64 of the CA's PEM, as EKS gives it. */
  certificateAuthorityData: string;
}

function config(e: EksEndpoint, user: Record<string, unknown>): string {
  const userName = `${e.clusterName}-capflow`;
  const context = `${userName}@${e.clusterName}`;
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: e.clusterName, cluster: { server: e.endpoint, 'certificate-authority-data': e.certificateAuthorityData } }],
    contexts: [{ name: context, context: { cluster: e.clusterName, user: userName } }],
    'current-context': context,
    preferences: {},
    users: [{ name: userName, user }],
  });
}

export function tokenKubeconfig(e: EksEndpoint, token: string): string {
  return config(e, { token });
}

export function userKubeconfig(e: EksEndpoint): string {
  return config(e, {
    exec: {
      apiVersion: 'client.authentication.k8s.io/v1beta1',
      command: 'aws',
      args: ['eks', 'get-token', '--cluster-name', e.eksClusterName, '--region', e.region, '--output', 'json'],
      interactiveMode: 'Never',
      provideClusterInfo: false,
    },
  });
}

/** When a token stops being accepted: its X-Amz-Date plus 15 minutes; undefined when it is not one. */
export function tokenExpiry(token: string): Date | undefined {
  if (!token.startsWith(EKS_TOKEN_PREFIX)) return undefined;
  try {
    const url = new URL(Buffer.from(token.slice(EKS_TOKEN_PREFIX.length), 'base64url').toString('utf8'));
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(url.searchParams.get('X-Amz-Date') ?? '');
    if (!m) return undefined;
    return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) + TOKEN_LIFETIME_MS);
  } catch {
    return undefined;
  }
}

interface Kept {
  server?: string;
  ca?: string;
  token?: string;
}

function read(text: string | undefined): Kept {
  if (!text) return {};
  const doc = parseYaml(text) as { clusters?: Array<{ cluster?: Record<string, string> }>; users?: Array<{ user?: { token?: string } }> } | null;
  return {
    ...(doc?.clusters?.[0]?.cluster?.server ? { server: doc.clusters[0].cluster.server } : {}),
    ...(doc?.clusters?.[0]?.cluster?.['certificate-authority-data'] ? { ca: doc.clusters[0].cluster['certificate-authority-data'] } : {}),
    ...(doc?.users?.[0]?.user?.token ? { token: doc.users[0].user.token } : {}),
  };
}

export type KubeconfigAction = 'created' | 'renewed' | 'kept';

/** Writes both secrets when needed; says what it did to the token one. */
export async function writeEksKubeconfigs(
  store: SecretStore,
  e: EksEndpoint,
  credentials: () => Promise<AwsCredentials>,
  now: Date = new Date(),
): Promise<KubeconfigAction> {
  const labels = { [CLUSTER_NAME_LABEL]: e.clusterName };
  const userName = clusterSecretName(e.clusterName, 'user-kubeconfig');
  const wantUser = userKubeconfig(e);
  if ((await store.get(userName))?.[KUBECONFIG_KEY] !== wantUser) {
    await store.put(userName, { [KUBECONFIG_KEY]: wantUser }, labels, { type: CLUSTER_SECRET_TYPE });
  }
  const name = clusterSecretName(e.clusterName, 'kubeconfig');
  const kept = read((await store.get(name))?.[KUBECONFIG_KEY]);
  const expires = kept.token ? tokenExpiry(kept.token) : undefined;
  if (kept.server === e.endpoint && kept.ca === e.certificateAuthorityData && expires && expires.getTime() - now.getTime() > TOKEN_KEEP_MS) return 'kept';
  const { token } = await makeEksToken({ clusterName: e.eksClusterName, region: e.region, credentials, now });
  await store.put(name, { [KUBECONFIG_KEY]: tokenKubeconfig(e, token) }, labels, { type: CLUSTER_SECRET_TYPE });
  return kept.token ? 'renewed' : 'created';
}
