/**
 * Types of the local runner: the subset of Argo's WorkflowTemplate it reads,
 * the events it emits and the result it returns.
 */

// ---------------------------------------------------------------- Argo shapes

export type IntOrString = number | string;

export interface Parameter {
  name: string;
  value?: string | number | boolean;
  default?: string | number | boolean;
  enum?: (string | number | boolean)[];
  description?: string;
  valueFrom?: { path?: string; default?: string; parameter?: string };
}

export interface ConfigMapKeyRef {
  name: string;
  key: string;
}

export interface EnvVar {
  name: string;
  value?: string;
  /** Only configMapKeyRef, read from RunOptions.configMaps. */
  valueFrom?: { configMapKeyRef?: ConfigMapKeyRef };
}

export interface ContainerSpec {
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  workingDir?: string;
}

export interface ScriptSpec extends ContainerSpec {
  source: string;
}

export interface RetryStrategy {
  limit?: IntOrString;
  retryPolicy?: string;
  expression?: string;
  backoff?: { duration?: string; factor?: IntOrString; maxDuration?: string; cap?: string };
}

export interface Mutex {
  name: string;
  namespace?: string;
}

export interface SemaphoreRef {
  configMapKeyRef?: ConfigMapKeyRef;
  namespace?: string;
}

export interface Synchronization {
  mutex?: Mutex;
  mutexes?: Mutex[];
  semaphore?: SemaphoreRef;
  semaphores?: SemaphoreRef[];
}

export interface TemplateRef {
  name: string;
  template: string;
}

export interface DagTask {
  name: string;
  template?: string;
  templateRef?: TemplateRef;
  arguments?: { parameters?: Parameter[] };
  dependencies?: string[];
  depends?: string;
  when?: string;
  continueOn?: { failed?: boolean; error?: boolean };
}

export interface DagTemplate {
  tasks: DagTask[];
  failFast?: boolean;
}

export interface Template {
  name: string;
  inputs?: { parameters?: Parameter[] };
  outputs?: { parameters?: Parameter[] };
  dag?: DagTemplate;
  container?: ContainerSpec;
  script?: ScriptSpec;
  retryStrategy?: RetryStrategy;
  activeDeadlineSeconds?: IntOrString;
  synchronization?: Synchronization;
  parallelism?: number;
}

export interface WorkflowSpec {
  entrypoint?: string;
  arguments?: { parameters?: Parameter[] };
  templates?: Template[];
  onExit?: string;
  activeDeadlineSeconds?: number;
  parallelism?: number;
  synchronization?: Synchronization;
}

export interface WorkflowTemplate {
  apiVersion: string;
  kind: string;
  metadata: { name: string; generateName?: string; namespace?: string; [k: string]: unknown };
  spec: WorkflowSpec;
}

/** A WorkflowTemplate as loaded from disk, with where it came from. */
export interface LoadedTemplate {
  name: string;
  file: string;
  resource: WorkflowTemplate;
}

/** WorkflowTemplates indexed by metadata.name. */
export type TemplateIndex = Map<string, LoadedTemplate>;

// ---------------------------------------------------------------- run records

/** Argo node phases, as the local runner uses them. */
export type NodePhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed' | 'Error' | 'Skipped' | 'Omitted';
export type WorkflowPhase = 'Running' | 'Succeeded' | 'Failed' | 'Error';

export type NodeType = 'DAG' | 'Pod' | 'Skipped';

export interface NodeOutputs {
  parameters: Record<string, string>;
  /** stdout of a container/script template (Argo's outputs.result), one trailing newline trimmed. */
  result?: string;
  exitCode?: number;
}

export interface AttemptRecord {
  /** 0-based, the value of `{{retries}}` in that attempt. */
  index: number;
  phase: NodePhase;
  startedAt: Date;
  finishedAt?: Date;
  exitCode?: number;
  message?: string;
}

export interface NodeRecord {
  /** Stable id within the run (Argo-like node name). */
  id: string;
  /** Argo node name: `<workflow>.<task>[.<task>...]`, `<workflow>.onExit` for the exit handler. */
  name: string;
  /** Task name (or the workflow name for the root, `onExit` for the exit handler). */
  displayName: string;
  /** Task path from the entrypoint, joined with '/', e.g. `apply/provision-vpc`; '' for the root. */
  path: string;
  /** Depth in the tree (root 0). */
  depth: number;
  parentId?: string;
  templateName: string;
  /** `name/template` when the task used templateRef. */
  templateRef?: string;
  type: NodeType;
  phase: NodePhase;
  attempts: AttemptRecord[];
  startedAt?: Date;
  finishedAt?: Date;
  message?: string;
  outputs?: NodeOutputs;
  /** Log file of a Pod node (all attempts). */
  logFile?: string;
}

export interface RunResult {
  workflowName: string;
  uid: string;
  templateName: string;
  phase: Exclude<WorkflowPhase, 'Running'>;
  message?: string;
  startedAt: Date;
  finishedAt: Date;
  /** Every node, in the order it was created. */
  nodes: NodeRecord[];
  /** Output parameters of the entrypoint template. */
  outputs: Record<string, string>;
  /** Where the task logs of this run are. */
  runDir: string;
}

// ---------------------------------------------------------------- events

export type RunnerEvent =
  | { type: 'run-started'; time: Date; workflowName: string; templateName: string; runDir: string }
  | { type: 'node'; time: Date; node: NodeRecord }
  | { type: 'retry'; time: Date; node: NodeRecord; attempt: number; delayMs: number; reason: string }
  | { type: 'mutex-waiting'; time: Date; mutex: string; nodeName: string }
  | { type: 'mutex-acquired'; time: Date; mutex: string; nodeName: string }
  /** `semaphore` is `<configmap>/<key>`. */
  | { type: 'semaphore-waiting'; time: Date; semaphore: string; limit: number; nodeName: string }
  | { type: 'semaphore-acquired'; time: Date; semaphore: string; limit: number; nodeName: string }
  | { type: 'run-finished'; time: Date; result: RunResult };

export type EventSink = (e: RunnerEvent) => void;

// ---------------------------------------------------------------- options

export interface RunOptions {
  templates: TemplateIndex;
  /** metadata.name of the WorkflowTemplate to run. */
  templateName: string;
  /** Workflow parameters (spec.arguments.parameters), by name. */
  parameters?: Record<string, string>;
  /**
   * Image entry points: when a container's command[0] is a key, it is replaced
   * by the value (an argv prefix), e.g. `{ capflow: [process.execPath, '<repo>/dist/bin/capflow.js'] }`.
   */
  entryPoints?: Record<string, string[]>;
  /** Root directory of run folders; this run's logs go to `<runDir>/<workflow-name>/`. Default `<cwd>/.capflow/runs`. */
  runDir?: string;
  onEvent?: EventSink;
  /** Aborting stops the run like `argo stop`: children are terminated, the exit handler still runs. */
  signal?: AbortSignal;
  /** Exact workflow name; default `<generateName or template name>-<5 random chars>`. */
  workflowName?: string;
  /** Namespace reported as `{{workflow.namespace}}`; default the template's metadata.namespace or `default`. */
  namespace?: string;
  /** Base environment of children; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Working directory of children without `workingDir`; default process.cwd(). */
  cwd?: string;
  /** Grace between SIGTERM and SIGKILL when a deadline or stop kills a child. Default 10 s. */
  killGraceMs?: number;
  /** Directory of the filesystem mutex locks and semaphore slots. Default `<tmpdir>/capflow-mutex`. */
  lockDir?: string;
  /**
   * ConfigMaps by name (their `data`), as Argo's controller would read them from the namespace:
   * semaphore limits (`synchronization.semaphores[].configMapKeyRef`) and `env[].valueFrom.configMapKeyRef`.
   */
  configMaps?: Record<string, Record<string, string>>;
}
