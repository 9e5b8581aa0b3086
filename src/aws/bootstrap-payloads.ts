/**
 * Bootstrap payloads in AWS Secrets Manager: the secret half of a machine group's user data (see
 * src/bootstrap/sealed-user-data.ts), one secret per group, `capflow/<cluster>/<group>`. Created
 * tagged as every owned resource; a changed payload becomes a new version of the same secret, so
 * the user data (and a MachinePool's launch template) that names it does not change when a token
 * is refreshed. Deleted by the steps once the group's machines joined, and by cluster-delete.
 *
 * The value is gzip + base64 (Secrets Manager keeps at most 64 KiB), and is never logged.
 */
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  PutSecretValueCommand,
  RestoreSecretCommand,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { gunzipSync, gzipSync } from 'node:zlib';
import { ConflictError, InputError } from '../core/errors.js';
import { awsErrorName } from './find.js';
import type { ClusterScope } from './scope.js';
import { clientToken } from './tokens.js';
import { CAPFLOW_CLUSTER_TAG, capaClusterTag, ownedTags, toTagList } from './tags.js';

export const PAYLOAD_ROLE = 'bootstrap-payload';
/** Secrets Manager's limit on a secret value. */
const MAX_SECRET_BYTES = 65_536;

export function payloadSecretName(clusterName: string, group: string): string {
  return `capflow/${clusterName}/${group}`;
}

export function encodePayload(payload: string): string {
  return gzipSync(Buffer.from(payload, 'utf8'), { level: 9 }).toString('base64');
}

export function decodePayload(value: string): string {
  return gunzipSync(Buffer.from(value, 'base64')).toString('utf8');
}

interface SecretState {
  arn: string;
  tags: Record<string, string>;
  scheduledForDeletion: boolean;
}

async function describeSecret(sm: SecretsManagerClient, name: string): Promise<SecretState | undefined> {
  try {
    const out = await sm.send(new DescribeSecretCommand({ SecretId: name }));
    const tags: Record<string, string> = {};
    for (const t of out.Tags ?? []) if (t.Key) tags[t.Key] = t.Value ?? '';
    return { arn: out.ARN ?? name, tags, scheduledForDeletion: out.DeletedDate !== undefined };
  } catch (err) {
    if (awsErrorName(err) === 'ResourceNotFoundException') return undefined;
    throw err;
  }
}

/** Makes the group's payload secret hold `payload`; returns the secret's name (what the user data names). */
export async function reconcileBootstrapPayload(scope: ClusterScope, sm: SecretsManagerClient, group: string, payload: string): Promise<string> {
  const name = payloadSecretName(scope.clusterName, group);
  const value = encodePayload(payload);
  if (Buffer.byteLength(value) > MAX_SECRET_BYTES) {
    throw new InputError('BOOTSTRAP_PAYLOAD_TOO_LARGE', `the bootstrap data of ${group} is ${Buffer.byteLength(value)} bytes compressed; Secrets Manager keeps at most ${MAX_SECRET_BYTES}`, {
      hint: 'move large files out of KubeadmConfigSpec.files (fetch them in preKubeadmCommands instead)',
    });
  }
  // The token names this content: a retried call after a lost answer makes no second version.
  const token = clientToken(scope.clusterName, `bootstrap-payload/${group}`, value);
  const have = await describeSecret(sm, name);
  if (!have) {
    scope.plan.record({ resource: 'bootstrap-payload', name, action: 'create', detail: 'Secrets Manager secret' });
    if (scope.dryRun) return name;
    scope.log.info('Creating bootstrap payload secret', { name });
    try {
      await sm.send(new CreateSecretCommand({ Name: name, SecretString: value, ClientRequestToken: token, Tags: toTagList(ownedTags(scope, PAYLOAD_ROLE, name)), Description: `capflow bootstrap data of ${group}` }));
      return name;
    } catch (err) {
      // Made by an earlier attempt whose answer was lost: compare and update below.
      if (awsErrorName(err) !== 'ResourceExistsException') throw err;
    }
  } else if (have.tags[capaClusterTag(scope.clusterName)] !== 'owned') {
    throw new ConflictError('BOOTSTRAP_PAYLOAD_NOT_OWNED', `Secrets Manager secret ${name} exists and is not owned by cluster ${scope.clusterName}`, {
      hint: `delete it or tag it ${capaClusterTag(scope.clusterName)}=owned, then run again`,
    });
  }
  if (have?.scheduledForDeletion && !scope.dryRun) {
    scope.log.info('Restoring bootstrap payload secret scheduled for deletion', { name });
    await sm.send(new RestoreSecretCommand({ SecretId: name }));
  }
  const current = await sm.send(new GetSecretValueCommand({ SecretId: name })).then(
    (out) => (out.SecretString ? decodePayload(out.SecretString) : undefined),
    (err: unknown) => {
      if (awsErrorName(err) === 'ResourceNotFoundException' || awsErrorName(err) === 'InvalidRequestException') return undefined;
      throw err;
    },
  );
  if (current === payload) {
    scope.plan.record({ resource: 'bootstrap-payload', name, action: 'no-change' });
    return name;
  }
  scope.plan.record({ resource: 'bootstrap-payload', name, action: 'update', detail: 'new version' });
  if (!scope.dryRun) {
    scope.log.info('Updating bootstrap payload secret', { name });
    await sm.send(new PutSecretValueCommand({ SecretId: name, SecretString: value, ClientRequestToken: token }));
  }
  return name;
}

/** The cluster's payload secrets (owned, not scheduled for deletion), by group. */
export async function listBootstrapPayloads(scope: ClusterScope, sm: SecretsManagerClient): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const prefix = payloadSecretName(scope.clusterName, '');
  let next: string | undefined;
  do {
    const page = await sm.send(new ListSecretsCommand({ Filters: [{ Key: 'tag-key', Values: [capaClusterTag(scope.clusterName)] }], ...(next ? { NextToken: next } : {}) }));
    for (const s of page.SecretList ?? []) {
      const tags = Object.fromEntries((s.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
      if (!s.Name?.startsWith(prefix) || s.DeletedDate || tags[capaClusterTag(scope.clusterName)] !== 'owned' || tags[CAPFLOW_CLUSTER_TAG] !== scope.clusterName) continue;
      out.set(s.Name.slice(prefix.length), s.Name);
    }
    next = page.NextToken;
  } while (next);
  return out;
}

/** Deletes the payloads of `groups` (all of the cluster's when not given), at once: they hold keys. */
export async function deleteBootstrapPayloads(scope: ClusterScope, sm: SecretsManagerClient, groups?: readonly string[]): Promise<string[]> {
  const have = await listBootstrapPayloads(scope, sm);
  const gone: string[] = [];
  for (const [group, name] of have) {
    if (groups && !groups.includes(group)) continue;
    scope.plan.record({ resource: 'bootstrap-payload', name, action: 'delete' });
    if (scope.dryRun) continue;
    scope.log.info('Deleting bootstrap payload secret', { name });
    try {
      await sm.send(new DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true }));
    } catch (err) {
      if (awsErrorName(err) !== 'ResourceNotFoundException') throw err;
    }
    gone.push(name);
  }
  return gone;
}
