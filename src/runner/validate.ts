/**
 * Checks a WorkflowTemplate can run before anything runs: template kinds,
 * DAG references and cycles, `depends` syntax, templateRef targets, required
 * inputs supplied by every caller, and `{{...}}` references that can resolve.
 */
import { InputError } from '../core/errors.js';
import { dependenciesToExpr, dependsRefs, evaluateRetryExpression, parseDepends, type DependsExpr } from './expr.js';
import { variablesInDeep } from './substitute.js';
import type { DagTask, LoadedTemplate, Template, TemplateIndex } from './types.js';

export type TemplateKind = 'dag' | 'container' | 'script';

export function templateKind(t: Template): TemplateKind | undefined {
  if (t.dag) return 'dag';
  if (t.script) return 'script';
  if (t.container) return 'container';
  return undefined;
}

export interface Resolved {
  /** The WorkflowTemplate the template lives in (its scope for further lookups). */
  owner: LoadedTemplate;
  template: Template;
  /** `name/template` when reached through templateRef. */
  ref?: string;
}

/** Finds a template by name in a WorkflowTemplate, or through a task's templateRef. */
export function resolveTemplate(index: TemplateIndex, owner: LoadedTemplate, task: Pick<DagTask, 'template' | 'templateRef'>): Resolved {
  if (task.templateRef) {
    const target = index.get(task.templateRef.name);
    if (!target) {
      throw new InputError('RUNNER_TEMPLATE_NOT_FOUND', `templateRef: WorkflowTemplate "${task.templateRef.name}" not found (referenced from "${owner.name}")`);
    }
    const t = target.resource.spec.templates?.find((x) => x.name === task.templateRef!.template);
    if (!t) {
      throw new InputError('RUNNER_TEMPLATE_NOT_FOUND', `templateRef: template "${task.templateRef.template}" not found in WorkflowTemplate "${target.name}"`);
    }
    return { owner: target, template: t, ref: `${target.name}/${t.name}` };
  }
  const t = owner.resource.spec.templates?.find((x) => x.name === task.template);
  if (!t) throw new InputError('RUNNER_TEMPLATE_NOT_FOUND', `template "${task.template}" not found in WorkflowTemplate "${owner.name}"`);
  return { owner, template: t };
}

/** The depends expression of a task (from `depends` or `dependencies`), if any. */
export function taskDependsExpr(task: DagTask): DependsExpr | undefined {
  if (task.depends !== undefined && task.depends.trim() !== '') return parseDepends(task.depends);
  if (task.dependencies && task.dependencies.length > 0) return dependenciesToExpr(task.dependencies);
  return undefined;
}

const RETRY_POLICIES = ['Always', 'OnFailure', 'OnError', 'OnTransientError'];
const GLOBAL_VARS = new Set([
  'workflow.name',
  'workflow.namespace',
  'workflow.uid',
  'workflow.serviceAccountName',
  'workflow.creationTimestamp',
  'workflow.mainEntrypoint',
  'workflow.status',
  'workflow.failures',
  'workflow.duration',
]);

/** Problems of one WorkflowTemplate, each a sentence naming where. */
export function checkWorkflowTemplate(lt: LoadedTemplate, index: TemplateIndex): string[] {
  const problems: string[] = [];
  const spec = lt.resource.spec;
  const templates = spec.templates ?? [];
  const names = new Set<string>();
  for (const t of templates) {
    if (names.has(t.name)) problems.push(`spec.templates: duplicate template name "${t.name}"`);
    names.add(t.name);
  }
  if (spec.entrypoint && !names.has(spec.entrypoint)) problems.push(`spec.entrypoint: template "${spec.entrypoint}" not found`);
  if (spec.onExit && !names.has(spec.onExit)) problems.push(`spec.onExit: template "${spec.onExit}" not found`);

  for (const t of templates) {
    const at = `spec.templates[${t.name}]`;
    const kind = templateKind(t);
    if (!kind) {
      problems.push(`${at}: no dag, container or script (the only template types the local runner implements)`);
      continue;
    }
    if (kind === 'dag') {
      for (const f of ['retryStrategy', 'activeDeadlineSeconds'] as const) {
        if (t[f] !== undefined) problems.push(`${at}.${f} on a dag template is not supported by the local runner (put it on the container/script templates)`);
      }
    } else {
      const cmd = t[kind]!.command;
      if (!cmd || cmd.length === 0) problems.push(`${at}.${kind}.command is required locally (there is no image ENTRYPOINT to fall back on)`);
    }
    const policy = t.retryStrategy?.retryPolicy;
    if (policy !== undefined && !RETRY_POLICIES.includes(policy)) {
      problems.push(`${at}.retryStrategy.retryPolicy "${policy}" is not one of ${RETRY_POLICIES.join(', ')}`);
    }
    const expression = t.retryStrategy?.expression;
    if (expression !== undefined) {
      try {
        evaluateRetryExpression(expression, { exitCode: 1, status: 'Failed', duration: 1, message: '' });
      } catch (e) {
        problems.push(`${at}.retryStrategy.expression: ${(e as Error).message}`);
      }
    }
    for (const o of t.outputs?.parameters ?? []) {
      const vf = o.valueFrom;
      if (!vf) problems.push(`${at}.outputs.parameters[${o.name}] needs valueFrom`);
      else if (kind === 'dag' && vf.parameter === undefined) problems.push(`${at}.outputs.parameters[${o.name}]: a dag template output needs valueFrom.parameter`);
      else if (kind !== 'dag' && vf.path === undefined) problems.push(`${at}.outputs.parameters[${o.name}]: a ${kind} template output needs valueFrom.path`);
    }
    for (const p of t.inputs?.parameters ?? []) {
      if (p.enum && p.value !== undefined && !p.enum.map(String).includes(String(p.value))) {
        problems.push(`${at}.inputs.parameters[${p.name}]: value "${String(p.value)}" not in enum`);
      }
    }
    if (kind === 'dag') problems.push(...checkDag(lt, t, index, at));
    problems.push(...checkVariables(t, at));
  }
  return problems;
}

function checkDag(lt: LoadedTemplate, t: Template, index: TemplateIndex, at: string): string[] {
  const problems: string[] = [];
  const tasks = t.dag!.tasks;
  const byName = new Map<string, DagTask>();
  for (const task of tasks) {
    if (byName.has(task.name)) problems.push(`${at}.dag.tasks: duplicate task "${task.name}"`);
    byName.set(task.name, task);
  }
  const usesDepends = tasks.some((x) => x.depends !== undefined);
  const usesDependencies = tasks.some((x) => x.dependencies !== undefined);
  if (usesDepends && usesDependencies) problems.push(`${at}.dag: cannot use both depends and dependencies in the same DAG (Argo)`);
  const edges = new Map<string, string[]>();
  for (const task of tasks) {
    const tat = `${at}.dag.tasks[${task.name}]`;
    if (!!task.template === !!task.templateRef) problems.push(`${tat}: exactly one of template or templateRef is required`);
    if (task.continueOn && task.depends !== undefined) problems.push(`${tat}: continueOn is not available with depends (Argo); use .Failed in the dependant's depends`);
    let expr: DependsExpr | undefined;
    try {
      expr = taskDependsExpr(task);
    } catch (e) {
      problems.push(`${tat}: ${(e as Error).message}`);
    }
    const deps = expr ? [...dependsRefs(expr).keys()] : [];
    for (const d of deps) if (!byName.has(d)) problems.push(`${tat}: depends on unknown task "${d}"`);
    edges.set(task.name, deps);
    let resolved: ReturnType<typeof resolveTemplate> | undefined;
    try {
      resolved = resolveTemplate(index, lt, task);
    } catch (e) {
      problems.push(`${tat}: ${(e as Error).message}`);
    }
    if (resolved) {
      const given = new Set((task.arguments?.parameters ?? []).map((p) => p.name));
      for (const p of resolved.template.inputs?.parameters ?? []) {
        if (p.value === undefined && p.default === undefined && !given.has(p.name)) {
          problems.push(`${tat}: input parameter "${p.name}" of template "${resolved.ref ?? resolved.template.name}" is not supplied (inputs.parameters.${p.name} was not supplied)`);
        }
      }
      for (const a of task.arguments?.parameters ?? []) {
        if (a.value === undefined) problems.push(`${tat}.arguments.parameters[${a.name}]: value is required`);
      }
    }
  }
  // cycles
  const state = new Map<string, 1 | 2>();
  const visit = (n: string, trail: string[]): void => {
    if (state.get(n) === 2) return;
    if (state.get(n) === 1) {
      problems.push(`${at}.dag: dependency cycle ${[...trail.slice(trail.indexOf(n)), n].join(' -> ')}`);
      return;
    }
    state.set(n, 1);
    for (const d of edges.get(n) ?? []) if (byName.has(d)) visit(d, [...trail, n]);
    state.set(n, 2);
  };
  for (const task of tasks) visit(task.name, []);
  // A task may only read the outputs of tasks it (transitively) depends on (Argo validates this too).
  const ancestors = (n: string, seen = new Set<string>()): Set<string> => {
    for (const d of edges.get(n) ?? []) if (!seen.has(d)) ancestors(d, seen.add(d));
    return seen;
  };
  if (!problems.some((p) => p.includes('dependency cycle'))) {
    for (const task of tasks) {
      const up = ancestors(task.name);
      for (const v of variablesInDeep({ arguments: task.arguments, when: task.when }, `${at}.dag.tasks[${task.name}]`)) {
        const m = /^tasks\.([^.]+)\./.exec(v.name);
        if (m && !up.has(m[1]!)) problems.push(`${v.at}: {{${v.name}}} refers to task "${m[1]}", which "${task.name}" does not depend on`);
      }
    }
  }
  return problems;
}

/** `{{...}}` references that can never resolve (Argo rejects these at submit). */
function checkVariables(t: Template, at: string): string[] {
  const problems: string[] = [];
  const inputs = new Set((t.inputs?.parameters ?? []).map((p) => p.name));
  const tasks = new Set((t.dag?.tasks ?? []).map((x) => x.name));
  const { name: _n, ...body } = t;
  for (const v of variablesInDeep(body, at)) {
    const n = v.name;
    let m: RegExpExecArray | null;
    if (n.startsWith('=')) problems.push(`${v.at}: expression tag {{${n}}} is not supported by the local runner`);
    else if ((m = /^inputs\.parameters\.(.+)$/.exec(n))) {
      if (!inputs.has(m[1]!)) problems.push(`${v.at}: {{${n}}} refers to an undeclared input parameter`);
    } else if (/^workflow\.parameters\.[^.]+$/.test(n)) {
      // checked against the running workflow's arguments when a run is planned
    } else if ((m = /^tasks\.([^.]+)\.(.+)$/.exec(n))) {
      if (!t.dag) problems.push(`${v.at}: {{${n}}} used outside a dag template`);
      else if (!tasks.has(m[1]!)) problems.push(`${v.at}: {{${n}}} refers to unknown task "${m[1]}"`);
      else if (!/^(outputs\.parameters\.[^.]+|outputs\.result|status|exitCode)$/.test(m[2]!)) {
        problems.push(`${v.at}: {{${n}}} is not supported by the local runner (tasks.X.outputs.parameters.Y, .outputs.result, .status, .exitCode)`);
      }
    } else if (n === 'retries' || n === 'pod.name' || n === 'inputs.parameters' || GLOBAL_VARS.has(n)) {
      // known
    } else {
      problems.push(`${v.at}: {{${n}}} is not a variable the local runner knows`);
    }
  }
  return problems;
}

/** Throws one InputError listing every problem of every template in the index. */
export function assertRunnable(index: TemplateIndex): void {
  const all: string[] = [];
  for (const lt of index.values()) {
    for (const p of checkWorkflowTemplate(lt, index)) all.push(`${lt.name} (${lt.file}): ${p}`);
  }
  if (all.length > 0) {
    throw new InputError('RUNNER_INVALID_TEMPLATE', `invalid WorkflowTemplates:\n  ${all.join('\n  ')}`, { details: { problems: all } });
  }
}
