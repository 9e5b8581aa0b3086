/**
 * The fields of a WorkflowTemplate the local runner knows. Every field present
 * in a template is one of:
 *
 * - honoured: the runner implements it with Argo's meaning;
 * - ignored: accepted because it has no meaning on one machine without
 *   Kubernetes (scheduling, identity, image, resources); each carries a reason;
 * - anything else: rejected before the run starts, naming the template, the
 *   field path and "not supported by the local runner". Nothing is dropped
 *   silently.
 */
import { InputError } from '../core/errors.js';

export type Rule =
  | { kind: 'honoured' }
  | { kind: 'ignored'; reason: string }
  | { kind: 'object'; fields: Record<string, Rule>; otherwise?: Rule }
  | { kind: 'list'; item: Rule; key?: string }
  | { kind: 'unsupported'; reason: string };

const honoured: Rule = { kind: 'honoured' };
const ignored = (reason: string): Rule => ({ kind: 'ignored', reason });
const object = (fields: Record<string, Rule>, otherwise?: Rule): Rule => ({ kind: 'object', fields, ...(otherwise ? { otherwise } : {}) });
const list = (item: Rule, key = 'name'): Rule => ({ kind: 'list', item, key });

/** Kubernetes pod-placement and identity fields: meaningless for a local child process. */
const podFields: Record<string, Rule> = {
  serviceAccountName: ignored('no Kubernetes API identity locally; children run as the current user'),
  automountServiceAccountToken: ignored('no service account token locally'),
  nodeSelector: ignored('one machine: there is no node to select'),
  tolerations: ignored('one machine: no taints to tolerate'),
  affinity: ignored('one machine: no pod affinity'),
  securityContext: ignored('children run as the current user; no pod security context'),
  podSpecPatch: ignored('there is no pod spec to patch'),
  priorityClassName: ignored('no pod scheduling priority locally'),
  schedulerName: ignored('no Kubernetes scheduler locally'),
};

/** WorkflowSpec spells the priority class podPriorityClassName; the rest are the same names as on templates. */
function workflowPodFields(): Record<string, Rule> {
  const { priorityClassName: _p, ...rest } = podFields;
  return rest;
}

const parameterInput: Rule = object({
  name: honoured,
  value: honoured,
  default: honoured,
  enum: honoured,
  description: ignored('documentation only'),
});

const parameterArgument: Rule = object({
  name: honoured,
  value: honoured,
  description: ignored('documentation only'),
});

const parameterOutput: Rule = object({
  name: honoured,
  valueFrom: object({
    path: honoured,
    default: honoured,
    parameter: honoured,
  }),
  description: ignored('documentation only'),
});

const containerFields: Record<string, Rule> = {
  name: ignored('container name only labels the Kubernetes container'),
  image: ignored('no images locally: command[0] is mapped to a local entry point (RunnerOptions.entryPoints) or found on PATH'),
  imagePullPolicy: ignored('no images are pulled locally'),
  command: honoured,
  args: honoured,
  env: list(object({ name: honoured, value: honoured, valueFrom: object({ configMapKeyRef: object({ name: honoured, key: honoured }) }) })),
  workingDir: honoured,
  resources: ignored('no cgroup requests/limits for local children'),
  securityContext: ignored('children run as the current user'),
  terminationMessagePath: ignored('the message is taken from the exit code and the last log lines'),
  terminationMessagePolicy: ignored('the message is taken from the exit code and the last log lines'),
};

const mutexRule: Rule = object({ name: honoured, namespace: ignored('mutexes are local to this machine; one namespace') });
const semaphoreRule: Rule = object({
  configMapKeyRef: object({ name: honoured, key: honoured }),
  namespace: ignored('semaphores are local to this machine; one namespace'),
});
const synchronization: Rule = object({ mutex: mutexRule, mutexes: list(mutexRule), semaphore: semaphoreRule, semaphores: list(semaphoreRule, '') });

const retryStrategy: Rule = object({
  limit: honoured,
  retryPolicy: honoured,
  expression: honoured,
  backoff: object({ duration: honoured, factor: honoured, maxDuration: honoured, cap: honoured }),
  affinity: ignored('one machine: every retry runs on the same host anyway'),
});

const dagTask: Rule = object({
  name: honoured,
  template: honoured,
  templateRef: object({ name: honoured, template: honoured }),
  arguments: object({ parameters: list(parameterArgument) }),
  dependencies: honoured,
  depends: honoured,
  when: honoured,
  continueOn: object({ failed: honoured, error: honoured }),
});

const template: Rule = object({
  name: honoured,
  inputs: object({ parameters: list(parameterInput) }),
  outputs: object({ parameters: list(parameterOutput) }),
  dag: object({ tasks: list(dagTask), failFast: honoured }),
  container: object(containerFields),
  script: object({ ...containerFields, source: honoured }),
  retryStrategy,
  activeDeadlineSeconds: honoured,
  synchronization,
  parallelism: honoured,
  metadata: ignored('pod labels/annotations: there is no pod'),
  ...podFields,
});

/** The rule tree of a WorkflowTemplate. */
export const WORKFLOW_TEMPLATE_RULES: Rule = object({
  apiVersion: honoured,
  kind: honoured,
  metadata: object(
    {
      name: honoured,
      generateName: honoured,
      namespace: honoured,
      labels: ignored('labels select Kubernetes objects; there are none locally'),
      annotations: ignored('annotations only annotate the Kubernetes object'),
    },
    ignored('Kubernetes object bookkeeping (uid, resourceVersion, timestamps…)'),
  ),
  spec: object({
    entrypoint: honoured,
    arguments: object({ parameters: list(parameterInput) }),
    templates: list(template),
    onExit: honoured,
    activeDeadlineSeconds: honoured,
    parallelism: honoured,
    synchronization,
    workflowMetadata: ignored('labels/annotations of the Workflow object; there is none locally'),
    podMetadata: ignored('pod labels/annotations: there are no pods'),
    imagePullSecrets: ignored('no images are pulled locally'),
    podPriorityClassName: ignored('no pod scheduling priority locally'),
    archiveLogs: ignored('logs are always kept in the run directory'),
    volumes: ignored('pod volumes (the /tmp emptyDir, the Git credentials Secret): children use this machine\'s filesystem'),
    templateDefaults: object({
      container: object({
        image: ignored('no images locally'),
        securityContext: ignored('children run as the current user'),
        volumeMounts: ignored('children use this machine\'s filesystem'),
        env: ignored('pod-only settings (where the Git credentials Secret is mounted); children use the user\'s own Git credentials'),
      }),
    }),
    ...workflowPodFields(),
  }),
});

/** Notes that make an unsupported field's message more useful. */
const UNSUPPORTED_HINTS: Record<string, string> = {
  steps: 'write it as a dag',
  suspend: 'a local run cannot be resumed',
  hooks: 'use spec.onExit or a task with depends',
  onExit: 'task-level onExit: use a task with depends on .Succeeded/.Failed',
  withItems: 'loops are not implemented locally',
  withParam: 'loops are not implemented locally',
  withSequence: 'loops are not implemented locally',
  artifacts: 'use output parameters',
  volumes: 'children use the local filesystem',
  volumeMounts: 'children use the local filesystem',
  valueFrom: 'only literal values (and env configMapKeyRef) are supported here',
  database: 'semaphores live in ConfigMaps locally',
};

export interface FieldProblem {
  path: string;
  message: string;
}

/** Every field of `doc` that the rules do not honour or ignore. */
export function findUnsupportedFields(doc: unknown, rules: Rule = WORKFLOW_TEMPLATE_RULES): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const walk = (value: unknown, rule: Rule, at: string): void => {
    switch (rule.kind) {
      case 'honoured':
      case 'ignored':
        return;
      case 'unsupported':
        problems.push({ path: at, message: `${at} is not supported by the local runner: ${rule.reason}` });
        return;
      case 'list':
        if (!Array.isArray(value)) return; // the schema already checked shapes
        value.forEach((item, i) => {
          const key = rule.key && item && typeof item === 'object' ? (item as Record<string, unknown>)[rule.key] : undefined;
          walk(item, rule.item, `${at}[${typeof key === 'string' ? key : i}]`);
        });
        return;
      case 'object': {
        if (!value || typeof value !== 'object' || Array.isArray(value)) return;
        for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
          if (v === undefined || v === null) continue;
          const child = rule.fields[k] ?? rule.otherwise;
          const p = at ? `${at}.${k}` : k;
          if (!child) {
            const hint = UNSUPPORTED_HINTS[k];
            problems.push({ path: p, message: `${p} is not supported by the local runner${hint ? ` (${hint})` : ''}` });
            continue;
          }
          walk(v, child, p);
        }
      }
    }
  };
  walk(doc, rules, '');
  return problems;
}

/** Throws an InputError naming the template and every unsupported field. */
export function assertSupportedFields(doc: unknown, templateName: string, file: string): void {
  const problems = findUnsupportedFields(doc);
  if (problems.length === 0) return;
  const lines = problems.map((p) => `  ${p.message}`);
  throw new InputError(
    'RUNNER_UNSUPPORTED_FIELD',
    `WorkflowTemplate "${templateName}" (${file}) uses fields not supported by the local runner:\n${lines.join('\n')}`,
    { details: { template: templateName, file, fields: problems.map((p) => p.path) }, hint: 'run it on Argo, or remove the fields' },
  );
}

/** The ignored fields with their reasons, for documentation and `--explain` output. */
export function listIgnoredFields(rules: Rule = WORKFLOW_TEMPLATE_RULES): { path: string; reason: string }[] {
  const out: { path: string; reason: string }[] = [];
  const walk = (rule: Rule, at: string): void => {
    if (rule.kind === 'ignored') out.push({ path: at || '*', reason: rule.reason });
    else if (rule.kind === 'list') walk(rule.item, `${at}[]`);
    else if (rule.kind === 'object') {
      for (const [k, r] of Object.entries(rule.fields)) walk(r, at ? `${at}.${k}` : k);
      if (rule.otherwise) walk(rule.otherwise, `${at}.*`);
    }
  };
  walk(rules, '');
  return out;
}
