/**
 * Support for the reconciler's tests and benchmark: example cluster folders for a GitOps repository,
 * an Argo controller played by hand (no Argo controller runs in the test bed, so tests set Workflow
 * status themselves), signed webhooks, and reads of what the reconciler left in the API server.
 *
 *   const files = clusterFiles('c1');                        // clusters/c1/*.yaml, the byoh example renamed
 *   await remote.commitFiles({ ...files, ...clusterFiles('c2') }, 'two clusters');
 *   await argo.setStatus(ns, name, succeeded());             // play the controller
 *   await waitUntil('c1 applied', async () => (await readRecord(kc, ns, 'c1'))?.phase === 'Succeeded');
 *
 * The Workflow CRD (argoproj.io_workflows.yaml) has no status subresource: the whole object is
 * replaced, with the status shapes its schema accepts (nodes need id, name and type).
 */
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { REPO_ROOT } from './tools.js';

// ------------------------------------------------------------------------------------------------
// example clusters

export const EXAMPLE_DIR = path.join(REPO_ROOT, 'examples', 'clusters', 'byoh');
/** The name every object of the byoh example derives from. */
const EXAMPLE_NAME = 'byoh-lab';

const exampleFiles: Array<[string, string]> = readdirSync(EXAMPLE_DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .map((f) => [f, readFileSync(path.join(EXAMPLE_DIR, f), 'utf8')]);

/**
 * The files of one cluster folder `clusters/<name>/`: the byoh example with its Cluster (and every
 * object named after it) renamed to the folder's name, so each cluster is self-consistent and its
 * spec hash differs from every other's.
 */
export function clusterFiles(name: string, dir = 'clusters'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [file, text] of exampleFiles) out[`${dir}/${name}/${file}`] = text.split(EXAMPLE_NAME).join(name);
  return out;
}

/** Files for many clusters at once (c0001 … for the benchmark). */
export function manyClusterFiles(names: readonly string[]): Record<string, string> {
  return Object.assign({}, ...names.map((n) => clusterFiles(n))) as Record<string, string>;
}

export function clusterFile(name: string, file: string): string {
  const text = clusterFiles(name)[`clusters/${name}/${file}`];
  if (text === undefined) throw new Error(`the example has no ${file}`);
  return text;
}

/**
 * A semantic change: the MachineDeployment's replicas (2 in the example) set to `replicas`, with
 * worker hosts added to the inventory (which has 2) so that the folder stays valid.
 */
export function withReplicas(name: string, replicas: number): Record<string, string> {
  const text = clusterFile(name, 'workers.yaml');
  const next = text.replace(/\n {2}replicas: 2\n/, `\n  replicas: ${replicas}\n`);
  if (next === text) throw new Error('withReplicas: the example changed (no "  replicas: 2")');
  const extra = Array.from({ length: Math.max(0, replicas - 2) }, (_, i) =>
    [`  - name: extra-worker-${i}`, `    address: 10.0.11.${i + 1}`, '    user: capflow', '    trustOnFirstUse: true', '    labels:', '      capflow.io/role: worker', ''].join('\n'),
  );
  const hosts = extra.length > 0 ? { [`clusters/${name}/hosts.yaml`]: `${clusterFile(name, 'hosts.yaml').trimEnd()}\n${extra.join('')}` } : {};
  return { [`clusters/${name}/workers.yaml`]: next, ...hosts };
}

/** A change Git sees and the spec hash does not: a comment line added to every file. */
export function withComment(name: string, comment: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [file, text] of Object.entries(clusterFiles(name))) out[file] = `# ${comment}\n${text}`;
  return out;
}

/**
 * An invalid spec: the MachineDeployment's replicas is a string. Returns the files and where the
 * loader will point (the workers.yaml line and column of the value).
 */
export function withInvalidReplicas(name: string): { files: Record<string, string>; file: string; line: number; column: number } {
  const file = `clusters/${name}/workers.yaml`;
  const lines = clusterFile(name, 'workers.yaml').split('\n');
  const i = lines.findIndex((l) => l === '  replicas: 2');
  if (i < 0) throw new Error('withInvalidReplicas: the example changed (no "  replicas: 2")');
  lines[i] = '  replicas: two';
  return { files: { [file]: lines.join('\n') }, file, line: i + 1, column: '  replicas: '.length + 1 };
}

// ------------------------------------------------------------------------------------------------
// polling

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `check` until it returns something other than undefined/false, or fails after timeoutMs
 * with the last value described. Errors thrown by check count as "not yet".
 */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  opts: { timeoutMs?: number; intervalMs?: number; describe?: () => Promise<string> | string } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = opts.describe ? await opts.describe() : '';
      throw new Error(`timed out waiting for ${what}${lastError ? ` (last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)})` : ''}${detail ? `\n${detail}` : ''}`);
    }
    await sleep(opts.intervalMs ?? 100);
  }
}

// ------------------------------------------------------------------------------------------------
// Workflows in the API server

export const ARGO = { group: 'argoproj.io', version: 'v1alpha1', plural: 'workflows' } as const;

export interface WorkflowObj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; labels?: Record<string, string>; annotations?: Record<string, string>; resourceVersion?: string; creationTimestamp?: string };
  spec: { workflowTemplateRef?: { name: string }; arguments?: { parameters?: Array<{ name: string; value?: string }> } };
  status?: WorkflowStatus;
}

/** The Workflow's parameters as a map. */
export function paramsOf(wf: WorkflowObj): Record<string, string> {
  return Object.fromEntries((wf.spec.arguments?.parameters ?? []).map((p) => [p.name, p.value ?? '']));
}

/** Every Workflow in the namespace (optionally by label selector), sorted by name. */
export async function listWorkflows(kc: KubeConfig, namespace: string, labelSelector?: string): Promise<WorkflowObj[]> {
  const api = kc.makeApiClient(CustomObjectsApi);
  const res = (await api.listNamespacedCustomObject({ ...ARGO, namespace, ...(labelSelector ? { labelSelector } : {}) })) as { items: WorkflowObj[] };
  return res.items.sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
}

export async function getWorkflow(kc: KubeConfig, namespace: string, name: string): Promise<WorkflowObj> {
  return (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({ ...ARGO, namespace, name })) as WorkflowObj;
}

/** Short lines describing the namespace's Workflows, for failure messages. */
export async function describeWorkflows(kc: KubeConfig, namespace: string): Promise<string> {
  const wfs = await listWorkflows(kc, namespace).catch(() => []);
  return `workflows in ${namespace}: ${wfs.map((w) => `${w.metadata.name}(${w.status?.phase ?? '-'})`).join(', ') || '(none)'}`;
}

export interface WorkflowNode {
  id: string;
  name: string;
  displayName?: string;
  type: 'Steps' | 'DAG' | 'Pod' | 'Retry' | 'Skipped';
  templateName?: string;
  phase?: string;
  message?: string;
  startedAt?: string;
  finishedAt?: string;
  children?: string[];
  outputs?: { parameters?: Array<{ name: string; value: string }>; exitCode?: string };
}

export interface WorkflowStatus {
  phase?: string;
  startedAt?: string;
  finishedAt?: string;
  message?: string;
  nodes?: Record<string, WorkflowNode>;
}

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** A DAG root with the given Pod children: what Argo's controller writes for a finished run. */
function nodeTree(workflow: string, phase: string, children: Array<Omit<WorkflowNode, 'id' | 'name' | 'type'> & { displayName: string }>): Record<string, WorkflowNode> {
  const nodes: Record<string, WorkflowNode> = {};
  const ids = children.map((_, i) => `${workflow}-${1000 + i}`);
  nodes[workflow] = { id: workflow, name: workflow, displayName: workflow, type: 'DAG', templateName: 'main', phase, startedAt: now(), finishedAt: now(), children: ids };
  children.forEach((c, i) => {
    const id = ids[i]!;
    nodes[id] = { id, name: `${workflow}.${c.displayName}`, type: 'Pod', templateName: c.displayName, startedAt: now(), finishedAt: now(), ...c };
  });
  return nodes;
}

/** Status of a Workflow the controller picked up and is running. */
export function running(): (wf: WorkflowObj) => WorkflowStatus {
  return (wf) => ({ phase: 'Running', startedAt: now(), nodes: nodeTree(wf.metadata.name, 'Running', [{ displayName: 'load-spec', phase: 'Running' }]) });
}

/** Status of a Workflow whose steps all succeeded. */
export function succeeded(): (wf: WorkflowObj) => WorkflowStatus {
  return (wf) => ({
    phase: 'Succeeded',
    startedAt: now(),
    finishedAt: now(),
    nodes: nodeTree(wf.metadata.name, 'Succeeded', [{ displayName: 'load-spec', phase: 'Succeeded' }, { displayName: 'provision-vpc', phase: 'Succeeded' }]),
  });
}

/** Status of a Workflow whose step `step` failed with `message` (after a step that succeeded). */
export function failed(step: string, message: string): (wf: WorkflowObj) => WorkflowStatus {
  return (wf) => ({
    phase: 'Failed',
    startedAt: now(),
    finishedAt: now(),
    message: 'child failed',
    nodes: nodeTree(wf.metadata.name, 'Failed', [
      { displayName: 'load-spec', phase: 'Succeeded' },
      { displayName: step, phase: 'Failed', message, outputs: { exitCode: '1' } },
    ]),
  });
}

/** Status of a finished cluster-plan run whose nodes report `changes` (output parameter) summing to the given total. */
export function planned(changes: number): (wf: WorkflowObj) => WorkflowStatus {
  const first = Math.floor(changes / 2);
  return (wf) => ({
    phase: 'Succeeded',
    startedAt: now(),
    finishedAt: now(),
    nodes: nodeTree(wf.metadata.name, 'Succeeded', [
      { displayName: 'load-spec', phase: 'Succeeded' },
      { displayName: 'plan-network', phase: 'Succeeded', outputs: { parameters: [{ name: 'changes', value: String(first) }] } },
      { displayName: 'plan-nodes', phase: 'Succeeded', outputs: { parameters: [{ name: 'changes', value: String(changes - first) }] } },
    ]),
  });
}

/**
 * Plays the Argo controller for one Workflow: replaces the object with the given status (the CRD
 * has no status subresource), retrying on conflicts with whatever else writes it.
 */
export async function setWorkflowStatus(kc: KubeConfig, namespace: string, name: string, status: (wf: WorkflowObj) => WorkflowStatus): Promise<WorkflowObj> {
  const api = kc.makeApiClient(CustomObjectsApi);
  for (let i = 0; ; i++) {
    const wf = await getWorkflow(kc, namespace, name);
    try {
      return (await api.replaceNamespacedCustomObject({ ...ARGO, namespace, name, body: { ...wf, status: status(wf) } })) as WorkflowObj;
    } catch (err) {
      if (i < 5 && (err as { code?: number }).code === 409) continue;
      throw err;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// records (ConfigMap capflow-cluster-<name>, one data key per field)

export const recordName = (cluster: string): string => `capflow-cluster-${cluster}`;

export interface RawRecord {
  labels: Record<string, string>;
  data: Record<string, string>;
  phase?: string;
  resourceVersion?: string;
}

export async function readRecord(kc: KubeConfig, namespace: string, cluster: string): Promise<RawRecord | undefined> {
  let cm: V1ConfigMap;
  try {
    cm = await kc.makeApiClient(CoreV1Api).readNamespacedConfigMap({ name: recordName(cluster), namespace });
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
  const data = cm.data ?? {};
  return { labels: cm.metadata?.labels ?? {}, data, ...(data.phase !== undefined ? { phase: data.phase } : {}), ...(cm.metadata?.resourceVersion ? { resourceVersion: cm.metadata.resourceVersion } : {}) };
}

/** Every record ConfigMap (label capflow.io/record=cluster) by cluster name. */
export async function listRecords(kc: KubeConfig, namespace: string): Promise<Map<string, RawRecord>> {
  const res = await kc.makeApiClient(CoreV1Api).listNamespacedConfigMap({ namespace, labelSelector: 'capflow.io/record=cluster' });
  const out = new Map<string, RawRecord>();
  for (const cm of res.items) {
    const data = cm.data ?? {};
    const cluster = cm.metadata?.labels?.['capflow.io/cluster'] ?? cm.metadata?.name ?? '';
    out.set(cluster, { labels: cm.metadata?.labels ?? {}, data, ...(data.phase !== undefined ? { phase: data.phase } : {}) });
  }
  return out;
}

export async function describeRecords(kc: KubeConfig, namespace: string): Promise<string> {
  const recs = await listRecords(kc, namespace).catch(() => new Map<string, RawRecord>());
  return [...recs.entries()]
    .sort()
    .map(([c, r]) => `${c}: ${JSON.stringify(r.data)}`)
    .join('\n');
}

export async function leaseHolder(kc: KubeConfig, namespace: string, name: string): Promise<string | undefined> {
  try {
    const lease = await kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ name, namespace });
    return lease.spec?.holderIdentity ?? undefined;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

export async function createNamespace(kc: KubeConfig, name: string): Promise<void> {
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
}

// ------------------------------------------------------------------------------------------------
// webhooks

export interface GithubPush {
  ref?: string;
  after: string;
  before?: string;
  delivery?: string;
  repoUrl?: string;
}

/** The body and headers GitHub sends for a push, signed with X-Hub-Signature-256 (HMAC-SHA256 of the body). */
export function githubPush(secret: string, push: GithubPush): { body: string; headers: Record<string, string> } {
  const body = JSON.stringify({
    ref: push.ref ?? 'refs/heads/main',
    before: push.before ?? '0'.repeat(40),
    after: push.after,
    repository: { full_name: 'capflow/clusters', clone_url: push.repoUrl ?? 'https://git.invalid/capflow/clusters.git' },
    pusher: { name: 'capflow test' },
    head_commit: { id: push.after, message: 'test push' },
  });
  const signature = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': push.delivery ?? randomUUID(),
      'x-hub-signature-256': signature,
      'user-agent': 'GitHub-Hookshot/test',
    },
  };
}

/** POSTs a webhook; resolves with the HTTP status and body. */
export async function postWebhook(url: string, hook: { body: string; headers: Record<string, string> }): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { method: 'POST', headers: hook.headers, body: hook.body });
  return { status: res.status, body: await res.text() };
}
