/**
 * The Workflow object capflow submits for a cluster: a reference to one of
 * our WorkflowTemplates, pinned to a Git revision, labelled so that the
 * reconciler and people in the Argo UI can find every run of a cluster.
 */
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'capflow';
export const LABEL_CLUSTER = 'capflow.io/cluster';
export const LABEL_REVISION = 'capflow.io/revision';
export const LABEL_SPEC_HASH = 'capflow.io/spec-hash';
/** apply, delete or plan, and the attempt number: set on the reconciler's runs, which have fixed names. */
export const LABEL_KIND = 'capflow.io/kind';
export const LABEL_ATTEMPT = 'capflow.io/attempt';
export const ANNOTATION_SPEC_HASH = 'capflow.io/spec-hash';
export const ANNOTATION_CLUSTER_PATH = 'capflow.io/cluster-path';

export interface WorkflowRequest {
  /** WorkflowTemplate name: cluster-apply, cluster-delete, cluster-plan. */
  template: string;
  clusterName: string;
  /** Repository URL (or path for the local runner). */
  repo: string;
  revision: string;
  clusterPath: string;
  specHash: string;
  namespace?: string;
  extraParameters?: Record<string, string>;
  /** A fixed name (the reconciler's, so a resubmission cannot duplicate a run) instead of generateName. */
  name?: string;
  /** More labels, added to capflow's own. */
  labels?: Record<string, string>;
  serviceAccountName?: string;
}

export interface WorkflowObject {
  apiVersion: 'argoproj.io/v1alpha1';
  kind: 'Workflow';
  metadata: { name?: string; generateName?: string; namespace: string; labels: Record<string, string>; annotations: Record<string, string> };
  spec: {
    workflowTemplateRef: { name: string };
    arguments: { parameters: Array<{ name: string; value: string }> };
    serviceAccountName?: string;
  };
}

/** Label values are at most 63 characters: the full hash goes in an annotation. */
export function labelValue(value: string): string {
  const cleaned = value.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 63);
  return cleaned.replace(/^[^A-Za-z0-9]+/, '').replace(/[^A-Za-z0-9]+$/, '');
}

export function buildWorkflow(req: WorkflowRequest): WorkflowObject {
  const parameters: Record<string, string> = {
    repo: req.repo,
    revision: req.revision,
    'cluster-path': req.clusterPath,
    'cluster-name': req.clusterName,
    'spec-hash': req.specHash,
    ...(req.extraParameters ?? {}),
  };
  return {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Workflow',
    metadata: {
      ...(req.name ? { name: req.name } : { generateName: `${req.template}-${labelValue(req.clusterName).slice(0, 40)}-` }),
      namespace: req.namespace ?? 'capflow-system',
      labels: {
        ...(req.labels ?? {}),
        [LABEL_MANAGED_BY]: MANAGED_BY,
        [LABEL_CLUSTER]: labelValue(req.clusterName),
        [LABEL_REVISION]: labelValue(req.revision),
        [LABEL_SPEC_HASH]: labelValue(req.specHash.slice(0, 32)),
      },
      annotations: { [ANNOTATION_SPEC_HASH]: req.specHash, [ANNOTATION_CLUSTER_PATH]: req.clusterPath },
    },
    spec: {
      workflowTemplateRef: { name: req.template },
      arguments: { parameters: Object.entries(parameters).map(([name, value]) => ({ name, value })) },
      ...(req.serviceAccountName ? { serviceAccountName: req.serviceAccountName } : {}),
    },
  };
}
