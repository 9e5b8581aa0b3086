/**
 * ClusterResourceSets as Cluster API defines them, read from the cluster folder: the ConfigMaps and
 * Secrets a set names hold manifests (each data value one or more YAML or JSON documents; a Secret
 * must be of type `addons.cluster.x-k8s.io/resource-set`, its data base64), and the set applies to
 * the folder's Cluster when its clusterSelector matches the Cluster's labels. With
 * `strategy: ApplyOnce` (the default) a resource is applied once and a later change is not applied
 * again; with `Reconcile` a change is applied again. Each resource is known by the hash of its data,
 * as Cluster API's ClusterResourceSetBinding records it.
 */
import { createHash } from 'node:crypto';
import type { KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { FieldProblems, type ClusterModel, type ResourceSetModel } from '../spec/index.js';

export const RESOURCE_SET_SECRET_TYPE = 'addons.cluster.x-k8s.io/resource-set';

export interface ResourceSetResource {
  /** `ConfigMap/<name>` or `Secret/<name>`. */
  key: string;
  /** sha256 of the data (keys in order), as the binding records it. */
  hash: string;
  objects: KubernetesObject[];
}

export interface ResourceSetAddon {
  /** The addon name its objects are labelled with: `crs-<ClusterResourceSet name>`. */
  addon: string;
  name: string;
  strategy: 'ApplyOnce' | 'Reconcile';
  resources: ResourceSetResource[];
}

function dataOf(resource: ResourceSetModel['resources'][number]): Array<[string, string]> {
  const entries = Object.entries(resource.data ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (resource.kind === 'ConfigMap') return entries;
  const plain = Object.entries(resource.stringData ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return [...entries.map(([k, v]): [string, string] => [k, Buffer.from(v, 'base64').toString('utf8')]), ...plain];
}

/**
 * The ClusterResourceSets that select this cluster, their manifests parsed. Problems (a Secret of
 * another type, a value that is not YAML, a document that is not a Kubernetes object) are reported
 * together at the data key's file:line, before anything is applied.
 */
export function resourceSetAddons(model: ClusterModel): ResourceSetAddon[] {
  const problems = new FieldProblems(model);
  const out: ResourceSetAddon[] = [];
  for (const rs of model.resourceSets) {
    if (!rs.selectsCluster) continue;
    const name = rs.resourceSet.metadata.name;
    const resources: ResourceSetResource[] = [];
    for (const resource of rs.resources) {
      const doc = { kind: resource.kind, name: resource.metadata.name };
      if (resource.kind === 'Secret' && resource.type !== RESOURCE_SET_SECRET_TYPE) {
        problems.add(doc, ['type'], 'invalid-value', `a ClusterResourceSet's Secret must be of type ${RESOURCE_SET_SECRET_TYPE} (ClusterResourceSet/${name} names it)`, `set type: ${RESOURCE_SET_SECRET_TYPE}`);
        continue;
      }
      const data = dataOf(resource);
      const objects: KubernetesObject[] = [];
      for (const [key, text] of data) {
        const field = resource.kind === 'Secret' && resource.stringData?.[key] !== undefined && resource.data?.[key] === undefined ? 'stringData' : 'data';
        for (const [i, parsed] of parseAllDocuments(text).entries()) {
          if (parsed.errors.length > 0) {
            problems.add(doc, [field, key], 'yaml-syntax', `document ${i + 1} of this manifest is not valid YAML: ${parsed.errors[0]!.message.split('\n')[0]}`);
            continue;
          }
          const value = parsed.toJS() as unknown;
          if (value === null || value === undefined) continue;
          const o = value as KubernetesObject;
          if (typeof value !== 'object' || Array.isArray(value) || !o.apiVersion || !o.kind || !o.metadata?.name) {
            problems.add(doc, [field, key], 'not-an-object', `document ${i + 1} of this manifest is not a Kubernetes object (apiVersion, kind and metadata.name are needed)`);
            continue;
          }
          objects.push(o);
        }
      }
      const hash = createHash('sha256');
      for (const [k, v] of data) hash.update(`${k}\0${v}\0`);
      resources.push({ key: `${resource.kind}/${resource.metadata.name}`, hash: `sha256:${hash.digest('hex')}`, objects });
    }
    out.push({ addon: `crs-${name}`, name, strategy: rs.resourceSet.spec.strategy === 'Reconcile' ? 'Reconcile' : 'ApplyOnce', resources });
  }
  problems.throwIfAny();
  return out;
}

/**
 * The resources a run applies: every one the first time; later, with ApplyOnce none again, with
 * Reconcile those whose hash changed. `applied` maps `key` to the hash last applied.
 */
export function resourcesToApply(set: ResourceSetAddon, applied: Readonly<Record<string, string>>): ResourceSetResource[] {
  return set.resources.filter((r) => applied[r.key] === undefined || (set.strategy === 'Reconcile' && applied[r.key] !== r.hash));
}
