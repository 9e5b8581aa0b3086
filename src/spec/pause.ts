/**
 * Pause, as Cluster API has it: `spec.paused: true` on the Cluster, or the annotation
 * `cluster.x-k8s.io/paused` (present = paused, whatever its value), stops every controller from
 * acting on the cluster. Here it stops the reconciler from submitting anything for the cluster
 * and makes a running step stop at its next safe point (src/core/pause.ts).
 *
 * Pausing is not a change of the cluster: the spec hash leaves both out (withoutPause), so
 * unpausing a cluster whose spec did not otherwise change starts no new apply.
 */
import { fieldLocation } from './locations.js';
import type { ClusterModel, PauseSource } from './model.js';

export type { PauseSource };

/** Cluster API's pause annotation (clusterv1.PausedAnnotation): present means paused. */
export const PAUSED_ANNOTATION = 'cluster.x-k8s.io/paused';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Whether a Cluster object is paused, and by which field (spec.paused first when both say so). */
export function pausedField(cluster: Record<string, unknown>): 'spec' | 'annotation' | undefined {
  const spec = cluster.spec;
  if (isObject(spec) && spec.paused === true) return 'spec';
  const metadata = cluster.metadata;
  const annotations = isObject(metadata) ? metadata.annotations : undefined;
  if (isObject(annotations) && Object.prototype.hasOwnProperty.call(annotations, PAUSED_ANNOTATION)) return 'annotation';
  return undefined;
}

/** Where the model's Cluster is paused, or undefined when it is not. */
export function pauseOf(model: ClusterModel): PauseSource | undefined {
  const by = pausedField(model.cluster);
  if (!by) return undefined;
  const path = by === 'spec' ? ['spec', 'paused'] : ['metadata', 'annotations', PAUSED_ANNOTATION];
  const field = by === 'spec' ? 'spec.paused' : `metadata.annotations[${PAUSED_ANNOTATION}]`;
  const loc = fieldLocation(model, { kind: 'Cluster', name: model.name }, path);
  return { field, file: loc?.file ?? '', line: loc?.line ?? 0, column: loc?.column ?? 0 };
}

/** `clusters/dev/cluster.yaml:7 spec.paused`: how records and messages name a pause. */
export function describePause(p: PauseSource): string {
  return `${p.file}:${p.line} ${p.field}`;
}

/**
 * The Cluster object without its pause (spec.paused, the annotation), for the spec hash; a map
 * left empty by that goes too, so `paused: true` added to a Cluster without annotations or spec
 * hashes as the Cluster without it. Other kinds are returned as they are.
 */
export function withoutPause(kind: string, object: Record<string, unknown>): Record<string, unknown> {
  if (kind !== 'Cluster') return object;
  const out: Record<string, unknown> = { ...object };
  if (isObject(out.spec) && 'paused' in out.spec) {
    const { paused: _paused, ...spec } = out.spec;
    if (Object.keys(spec).length === 0) delete out.spec;
    else out.spec = spec;
  }
  const metadata = out.metadata;
  if (isObject(metadata) && isObject(metadata.annotations) && PAUSED_ANNOTATION in metadata.annotations) {
    const { [PAUSED_ANNOTATION]: _a, ...annotations } = metadata.annotations;
    const meta: Record<string, unknown> = { ...metadata, annotations };
    if (Object.keys(annotations).length === 0) delete meta.annotations;
    out.metadata = meta;
  }
  return out;
}
