/**
 * kubeadm bootstrap tokens in the workload cluster: Secrets `kube-system/bootstrap-token-<id>` of
 * type `bootstrap.kubernetes.io/token`, which the API server's bootstrap authenticator (flag
 * `--enable-bootstrap-token-auth`) accepts as `<id>.<secret>` bearer tokens for user
 * `system:bootstrap:<id>` in group `system:bootstrappers` plus `auth-extra-groups`. The API server
 * refuses an expired token itself, so a short TTL holds even without the TokenCleaner controller.
 *
 * capflow labels its own (`capflow.io/bootstrap-token: "true"`) and refreshes or deletes only those.
 * The token secret is never logged nor put in an error: the object createBootstrapToken returns is
 * the only place it appears.
 */
import { randomInt } from 'node:crypto';
import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { ConflictError, InputError, NotFoundError } from '../core/errors.js';
import { statusOf, wrapKubeError } from '../core/kube-errors.js';

export const TOKEN_NAMESPACE = 'kube-system';
export const TOKEN_SECRET_TYPE = 'bootstrap.kubernetes.io/token';
export const TOKEN_LABEL = 'capflow.io/bootstrap-token';
/** The group kubeadm's RBAC lets join nodes (CSR creation, cluster-info, kubeadm-config). */
export const DEFAULT_TOKEN_GROUPS = ['system:bootstrappers:kubeadm:default-node-token'];

const ID_PATTERN = /^[a-z0-9]{6}$/;
// the bootstrap authenticator ignores a Secret whose extra groups do not match this (k8s.io/cluster-bootstrap)
const GROUP_PATTERN = /^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$/;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const RULE = { resource: 'secrets', namespace: TOKEN_NAMESPACE };

export interface CreateTokenOptions {
  ttlMs: number;
  description?: string;
  now?: () => Date;
  /** Extra groups, each `system:bootstrappers:...`; kubeadm's default node token group when not given. */
  groups?: string[];
}

export interface CreatedToken {
  id: string;
  /** `<id>.<secret>`: the bearer token. Secret: hand it on, never log it. */
  token: string;
  expiresAt: Date;
}

export interface TokenInfo {
  id: string;
  /** Undefined when the Secret has no (readable) expiration. */
  expiresAt: Date | undefined;
  description: string | undefined;
}

export function tokenSecretName(id: string): string {
  return `bootstrap-token-${id}`;
}

/** Creates a token that expires ttlMs from now (a fresh id if one is taken). */
export async function createBootstrapToken(core: CoreV1Api, opts: CreateTokenOptions): Promise<CreatedToken> {
  const groups = opts.groups ?? DEFAULT_TOKEN_GROUPS;
  const bad = groups.find((g) => !GROUP_PATTERN.test(g));
  if (bad !== undefined || groups.length === 0) {
    throw new InputError('BOOTSTRAP_TOKEN_GROUP_INVALID', `bootstrap token group "${bad ?? ''}" is not of the form system:bootstrappers:<name>`);
  }
  const expiresAt = expiryAfter(opts.ttlMs, opts.now);
  for (let attempt = 1; ; attempt++) {
    const id = randomString(6);
    const secret = randomString(16);
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: TOKEN_SECRET_TYPE,
      metadata: { name: tokenSecretName(id), namespace: TOKEN_NAMESPACE, labels: { [TOKEN_LABEL]: 'true', 'app.kubernetes.io/managed-by': 'capflow' } },
      stringData: {
        'token-id': id,
        'token-secret': secret,
        expiration: rfc3339(expiresAt),
        'usage-bootstrap-authentication': 'true',
        'usage-bootstrap-signing': 'true',
        'auth-extra-groups': groups.join(','),
        description: opts.description ?? 'Created by capflow for nodes to join',
      },
    };
    try {
      await core.createNamespacedSecret({ namespace: TOKEN_NAMESPACE, body });
      return { id, token: `${id}.${secret}`, expiresAt };
    } catch (err) {
      // 36^6 ids: a clash is rare, but a fresh id is cheaper than failing the step
      if (statusOf(err) === 409 && attempt < 3) continue;
      throw wrapKubeError(err, `creating bootstrap token ${id}`, { verb: 'create', ...RULE });
    }
  }
}

/** Moves a capflow token's expiration to ttlMs from now (for MachinePools that keep one in their launch template). */
export async function refreshBootstrapToken(core: CoreV1Api, id: string, ttlMs: number, now?: () => Date): Promise<Date> {
  const expiresAt = expiryAfter(ttlMs, now);
  const secret = await readOwnToken(core, id);
  if (secret === undefined) {
    throw new NotFoundError('BOOTSTRAP_TOKEN_NOT_FOUND', `bootstrap token ${id} does not exist (expired and cleaned up, or deleted)`, {
      hint: 'create a new token and a new launch template version that carries it',
    });
  }
  // data, not stringData: the read object carries base64 data, and its resourceVersion guards the write
  secret.data = { ...secret.data, expiration: Buffer.from(rfc3339(expiresAt)).toString('base64') };
  try {
    await core.replaceNamespacedSecret({ name: tokenSecretName(id), namespace: TOKEN_NAMESPACE, body: secret });
  } catch (err) {
    throw wrapKubeError(err, `refreshing bootstrap token ${id}`, { verb: 'update', ...RULE });
  }
  return expiresAt;
}

/** Deletes a capflow token; one that is already gone is fine. */
export async function deleteBootstrapToken(core: CoreV1Api, id: string): Promise<void> {
  if ((await readOwnToken(core, id)) === undefined) return;
  try {
    await core.deleteNamespacedSecret({ name: tokenSecretName(id), namespace: TOKEN_NAMESPACE });
  } catch (err) {
    if (statusOf(err) !== 404) throw wrapKubeError(err, `deleting bootstrap token ${id}`, { verb: 'delete', ...RULE });
  }
}

/** capflow's own tokens (by label), sorted by id, with their expiry; never their secrets. */
export async function listBootstrapTokens(core: CoreV1Api): Promise<TokenInfo[]> {
  let secrets: V1Secret[];
  try {
    const res = await core.listNamespacedSecret({
      namespace: TOKEN_NAMESPACE,
      labelSelector: `${TOKEN_LABEL}=true`,
      fieldSelector: `type=${TOKEN_SECRET_TYPE}`,
    });
    secrets = res.items;
  } catch (err) {
    throw wrapKubeError(err, 'listing bootstrap tokens', { verb: 'list', ...RULE });
  }
  return secrets
    .map((s) => {
      const expiration = decoded(s, 'expiration');
      const when = expiration === undefined ? undefined : new Date(expiration);
      return {
        id: decoded(s, 'token-id') ?? (s.metadata?.name ?? '').replace(/^bootstrap-token-/, ''),
        expiresAt: when === undefined || Number.isNaN(when.getTime()) ? undefined : when,
        description: decoded(s, 'description'),
      };
    })
    .sort((a, b) => a.id.localeCompare(b.id));
}

/** The token's Secret if it exists; refuses one capflow did not make. */
async function readOwnToken(core: CoreV1Api, id: string): Promise<V1Secret | undefined> {
  if (!ID_PATTERN.test(id)) {
    throw new InputError('BOOTSTRAP_TOKEN_ID_INVALID', `bootstrap token id "${id}" is not 6 characters of [a-z0-9]`);
  }
  let secret: V1Secret;
  try {
    secret = await core.readNamespacedSecret({ name: tokenSecretName(id), namespace: TOKEN_NAMESPACE });
  } catch (err) {
    if (statusOf(err) === 404) return undefined;
    throw wrapKubeError(err, `reading bootstrap token ${id}`, { verb: 'get', ...RULE });
  }
  if (secret.metadata?.labels?.[TOKEN_LABEL] !== 'true') {
    throw new ConflictError('BOOTSTRAP_TOKEN_NOT_OWNED', `bootstrap token ${id} was not created by capflow`, {
      hint: `capflow changes only tokens labelled ${TOKEN_LABEL}=true; manage this one with kubeadm token`,
    });
  }
  return secret;
}

function expiryAfter(ttlMs: number, now: () => Date = () => new Date()): Date {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new InputError('BOOTSTRAP_TOKEN_TTL_INVALID', `bootstrap token TTL must be a positive number of milliseconds, not ${ttlMs}`);
  }
  // whole seconds: the expiration is written in RFC 3339 without fractions, and expiresAt must match it
  return new Date(Math.floor((now().getTime() + ttlMs) / 1000) * 1000);
}

function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Uniform over [a-z0-9] (randomInt has no modulo bias). */
function randomString(length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[randomInt(ALPHABET.length)];
  return out;
}

function decoded(secret: V1Secret, key: string): string | undefined {
  const value = secret.data?.[key];
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}
