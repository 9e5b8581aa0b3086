/**
 * The aws-auth ConfigMap (kube-system) of an EKS cluster whose authentication mode reads it
 * (CONFIG_MAP or API_AND_CONFIG_MAP): the IAM roles and users the spec maps
 * (AWSManagedControlPlane.spec.iamAuthenticatorConfig) and, in CONFIG_MAP mode, the roles of the
 * self-managed node pools, which need system:bootstrappers and system:nodes to join. Entries that
 * others wrote (EKS adds the roles of managed node groups itself; people add their own) are kept:
 * capflow lists the ARNs it wrote in an annotation and removes only those the spec dropped. The map
 * is compared by meaning, not by text, so a rerun writes nothing.
 */
import type { CoreV1Api, V1ConfigMap } from '@kubernetes/client-node';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { ConflictError } from '../core/errors.js';
import { statusOf, wrapKubeError } from '../core/kube-errors.js';
import type { EksScope } from './eks-scope.js';

export const AWS_AUTH_NAMESPACE = 'kube-system';
export const AWS_AUTH_NAME = 'aws-auth';
/** The ARNs capflow wrote into aws-auth, as a JSON list; entries not listed belong to others. */
export const AWS_AUTH_MANAGED_ANNOTATION = 'capflow.io/managed-mappings';
/** How EKS names a node that joins with a mapped role, and the groups that let it join. */
export const NODE_USERNAME = 'system:node:{{EC2PrivateDNSName}}';
export const NODE_GROUPS = ['system:bootstrappers', 'system:nodes'] as const;

export interface RoleMapping {
  rolearn: string;
  username: string;
  groups: string[];
}

export interface UserMapping {
  userarn: string;
  username: string;
  groups: string[];
}

export interface DesiredAwsAuth {
  mapRoles: RoleMapping[];
  mapUsers: UserMapping[];
}

export interface AwsAuthResult {
  action: 'create' | 'update' | 'no-change';
  /** The ARNs capflow holds in the map now. */
  managed: string[];
}

export function nodeRoleMapping(roleArn: string): RoleMapping {
  return { rolearn: roleArn, username: NODE_USERNAME, groups: [...NODE_GROUPS] };
}

export function isEmpty(d: DesiredAwsAuth): boolean {
  return d.mapRoles.length === 0 && d.mapUsers.length === 0;
}

/** A mapRoles/mapUsers value as a list of records; anything else (a hand-broken value) is refused, not overwritten. */
function listOf(text: string | undefined, key: 'mapRoles' | 'mapUsers'): Array<Record<string, unknown>> {
  if (!text || !text.trim()) return [];
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    throw new ConflictError('AWS_AUTH_UNREADABLE', `ConfigMap ${AWS_AUTH_NAMESPACE}/${AWS_AUTH_NAME} data.${key} is not YAML: ${(err as Error).message.split('\n')[0]}`, {
      hint: `fix data.${key} by hand (kubectl edit -n kube-system configmap aws-auth); capflow will not overwrite what it cannot read`,
    });
  }
  if (parsed === null || parsed === undefined) return [];
  if (!Array.isArray(parsed) || !parsed.every((e) => e !== null && typeof e === 'object' && !Array.isArray(e))) {
    throw new ConflictError('AWS_AUTH_UNREADABLE', `ConfigMap ${AWS_AUTH_NAMESPACE}/${AWS_AUTH_NAME} data.${key} is not a list of mappings`, {
      hint: `fix data.${key} by hand; capflow will not overwrite what it cannot read`,
    });
  }
  return parsed as Array<Record<string, unknown>>;
}

function managedOf(cm: V1ConfigMap | undefined): string[] {
  const raw = cm?.metadata?.annotations?.[AWS_AUTH_MANAGED_ANNOTATION];
  if (!raw) return [];
  try {
    const list = JSON.parse(raw) as unknown;
    return Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

/** The merged list, in the order it had: capflow's lines replaced in place, dropped ones removed, new ones last. */
function merge(have: Array<Record<string, unknown>>, want: readonly object[], arnKey: 'rolearn' | 'userarn', dropped: ReadonlySet<string>): Array<Record<string, unknown>> {
  const wanted = new Map(want.map((w) => [(w as Record<string, string>)[arnKey], { ...w }]));
  const out: Array<Record<string, unknown>> = [];
  for (const e of have) {
    const arn = typeof e[arnKey] === 'string' ? e[arnKey] : '';
    if (dropped.has(arn)) continue;
    const mine = wanted.get(arn);
    if (mine) {
      out.push(mine);
      wanted.delete(arn);
    } else out.push(e);
  }
  return [...out, ...wanted.values()];
}

const canonical = (list: Array<Record<string, unknown>>) => JSON.stringify(list.map((e) => Object.fromEntries(Object.entries(e).sort(([a], [b]) => a.localeCompare(b)))));

/** Makes aws-auth hold the desired mappings; only what capflow wrote before is ever removed. */
export async function reconcileAwsAuth(scope: EksScope, core: CoreV1Api, desired: DesiredAwsAuth): Promise<AwsAuthResult> {
  const where = `${AWS_AUTH_NAMESPACE}/${AWS_AUTH_NAME}`;
  // Another writer (EKS adding a node group's role, a person) may update the map between our read
  // and write: the write carries the resourceVersion read, and a conflict reads again.
  for (let attempt = 1; ; attempt++) {
    let cm: V1ConfigMap | undefined;
    try {
      cm = await core.readNamespacedConfigMap({ name: AWS_AUTH_NAME, namespace: AWS_AUTH_NAMESPACE });
    } catch (err) {
      if (statusOf(err) !== 404) throw wrapKubeError(err, `reading ConfigMap ${where}`, { verb: 'get', resource: 'configmaps', namespace: AWS_AUTH_NAMESPACE });
    }
    const managedBefore = managedOf(cm);
    const managed = [...desired.mapRoles.map((r) => r.rolearn), ...desired.mapUsers.map((u) => u.userarn)];
    const dropped = new Set(managedBefore.filter((arn) => !managed.includes(arn)));
    const haveRoles = listOf(cm?.data?.mapRoles, 'mapRoles');
    const haveUsers = listOf(cm?.data?.mapUsers, 'mapUsers');
    const mapRoles = merge(haveRoles, desired.mapRoles, 'rolearn', dropped);
    const mapUsers = merge(haveUsers, desired.mapUsers, 'userarn', dropped);
    const sameLists = canonical(mapRoles) === canonical(haveRoles) && canonical(mapUsers) === canonical(haveUsers);
    const sameManaged = JSON.stringify([...managedBefore].sort()) === JSON.stringify([...managed].sort());
    if (cm && sameLists && sameManaged) {
      scope.plan.record({ resource: 'aws-auth', name: where, action: 'no-change' });
      return { action: 'no-change', managed };
    }
    if (!cm && managed.length === 0) return { action: 'no-change', managed };

    const added = managed.filter((arn) => !managedBefore.includes(arn));
    const detail = [...added.map((a) => `+${a}`), ...[...dropped].map((a) => `-${a}`)].join(' ') || 'mappings changed';
    const action = cm ? 'update' : 'create';
    scope.plan.record({ resource: 'aws-auth', name: where, action, detail });
    if (scope.dryRun) return { action, managed };

    const data: Record<string, string> = { ...(cm?.data ?? {}) };
    if (mapRoles.length) data.mapRoles = toYaml(mapRoles);
    else delete data.mapRoles;
    if (mapUsers.length) data.mapUsers = toYaml(mapUsers);
    else delete data.mapUsers;
    const body: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        ...(cm?.metadata ?? {}),
        name: AWS_AUTH_NAME,
        namespace: AWS_AUTH_NAMESPACE,
        annotations: { ...(cm?.metadata?.annotations ?? {}), [AWS_AUTH_MANAGED_ANNOTATION]: JSON.stringify(managed) },
      },
      data,
    };
    try {
      if (cm) await core.replaceNamespacedConfigMap({ name: AWS_AUTH_NAME, namespace: AWS_AUTH_NAMESPACE, body });
      else await core.createNamespacedConfigMap({ namespace: AWS_AUTH_NAMESPACE, body });
    } catch (err) {
      // 409: changed since we read it (update), or made meanwhile (create); read again.
      if (statusOf(err) === 409 && attempt < 5) continue;
      throw wrapKubeError(err, `${cm ? 'updating' : 'creating'} ConfigMap ${where}`, { verb: cm ? 'update' : 'create', resource: 'configmaps', namespace: AWS_AUTH_NAMESPACE });
    }
    scope.log.info(`aws-auth ${action === 'create' ? 'created' : 'updated'}: ${detail}`, { configMap: where });
    return { action, managed };
  }
}
