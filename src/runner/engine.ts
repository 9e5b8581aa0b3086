/**
 * The local runner's engine: runs one WorkflowTemplate's entrypoint with
 * Argo's semantics (see ./README.md for the rules and where they come from).
 */
import { randomInt, randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InputError, isCapflowError } from '../core/errors.js';
import { parseDurationMs, parseIntOrString } from './durations.js';
import { dependsRefs, evaluateDepends, evaluateRetryExpression, evaluateWhen, type DependsExpr } from './expr.js';
import { acquireMutex } from './mutex.js';
import { acquireSemaphore, semaphoreLimit, semaphoreName } from './semaphore.js';
import { runChild, type ChildOutcome } from './process.js';
import { repoRoot } from './schema.js';
import { chain, deferScope, mapScope, substitute, substituteDeep, variablesInDeep, type Scope } from './substitute.js';
import type {
  AttemptRecord,
  ContainerSpec,
  DagTask,
  LoadedTemplate,
  NodeOutputs,
  NodePhase,
  NodeRecord,
  Parameter,
  RunOptions,
  RunResult,
  RunnerEvent,
  Synchronization,
  Template,
} from './types.js';
import { resolveTemplate, taskDependsExpr, templateKind, type Resolved } from './validate.js';

/** The exit code an executor uses for a transient failure (EX_TEMPFAIL): an "Error" locally. */
export const TRANSIENT_EXIT_CODE = 75;
/** A step's exit code when its cluster was paused while it ran (ExitCode.paused). */
export const PAUSED_EXIT_CODE = 4;

/** The image entry points the runner knows by default: `capflow` is the executor image's. */
export function defaultEntryPoints(root: string = repoRoot()): Record<string, string[]> {
  return {
    capflow: [process.execPath, path.join(root, 'dist', 'bin', 'capflow.js')],
    node: [process.execPath],
  };
}

const SUFFIX_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'; // Kubernetes generateName alphabet

/** `<prefix>-<5 random chars>`, like a Workflow submitted from a WorkflowTemplate. */
export function generateWorkflowName(prefix: string): string {
  const base = prefix.endsWith('-') ? prefix : `${prefix}-`;
  let s = '';
  for (let i = 0; i < 5; i++) s += SUFFIX_ALPHABET[randomInt(SUFFIX_ALPHABET.length)];
  return base + s;
}

class Semaphore {
  private waiters: (() => void)[] = [];
  private used = 0;
  constructor(private readonly size: number) {}
  async acquire(signal: AbortSignal): Promise<() => void> {
    if (this.used >= this.size) {
      await new Promise<void>((resolve, reject) => {
        const go = (): void => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = (): void => {
          this.waiters = this.waiters.filter((w) => w !== go);
          reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
        };
        this.waiters.push(go);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    }
    this.used++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.used--;
      this.waiters.shift()?.();
    };
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function trimNewline(s: string): string {
  return s.replace(/\r?\n$/, '');
}

function mutexNames(sync: Synchronization | undefined): string[] {
  if (!sync) return [];
  return [...(sync.mutex ? [sync.mutex.name] : []), ...(sync.mutexes ?? []).map((m) => m.name)];
}

/** The semaphores of a synchronization block as `[configmap, key]`. */
function semaphoreRefs(sync: Synchronization | undefined): [string, string][] {
  if (!sync) return [];
  return [...(sync.semaphore ? [sync.semaphore] : []), ...(sync.semaphores ?? [])].map((s) => {
    const ref = s.configMapKeyRef;
    if (!ref?.name || !ref.key) throw new InputError('RUNNER_SEMAPHORE_CONFIG', 'a semaphore needs configMapKeyRef.name and configMapKeyRef.key');
    return [ref.name, ref.key];
  });
}

/** Rewrites the in-container outputs prefix to this attempt's directory. */
function rewriteOutputs(s: string, dir: string): string {
  return s.replace(/\/tmp\/outputs(?=\/|$|[^A-Za-z0-9_.-])/g, dir);
}

interface ExecRequest {
  resolved: Resolved;
  args: Record<string, string>;
  name: string;
  displayName: string;
  path: string;
  depth: number;
  parentId?: string;
  stop: AbortSignal;
  exitHandler: boolean;
}

type Outcome = { phase: NodePhase; message?: string };

class Run {
  readonly nodes: NodeRecord[] = [];
  readonly startedAt = new Date();
  readonly uid = randomUUID();
  readonly namespace: string;
  readonly entryPoints: Record<string, string[]>;
  readonly pods: Semaphore | undefined;
  readonly killGraceMs: number;
  exitScope: Record<string, string> | undefined;

  constructor(
    readonly opts: RunOptions,
    readonly main: LoadedTemplate,
    readonly workflowName: string,
    readonly params: Record<string, string>,
    readonly dir: string,
  ) {
    this.namespace = opts.namespace ?? main.resource.metadata.namespace ?? 'default';
    this.entryPoints = { ...defaultEntryPoints(), ...(opts.entryPoints ?? {}) };
    const par = main.resource.spec.parallelism;
    this.pods = par !== undefined && par > 0 ? new Semaphore(par) : undefined;
    this.killGraceMs = opts.killGraceMs ?? 10_000;
  }

  emit(e: RunnerEvent): void {
    try {
      this.opts.onEvent?.(e);
    } catch {
      // a broken renderer must not break the run
    }
  }

  emitNode(node: NodeRecord): void {
    this.emit({ type: 'node', time: new Date(), node: { ...node, attempts: node.attempts.map((a) => ({ ...a })) } });
  }

  globals: Scope = (name) => {
    switch (name) {
      case 'workflow.name':
        return this.workflowName;
      case 'workflow.namespace':
        return this.namespace;
      case 'workflow.uid':
        return this.uid;
      case 'workflow.mainEntrypoint':
        return this.main.resource.spec.entrypoint;
      case 'workflow.creationTimestamp':
        return this.startedAt.toISOString().replace(/\.\d+Z$/, 'Z');
      case 'workflow.serviceAccountName':
        return ((this.main.resource.spec as Record<string, unknown>).serviceAccountName as string | undefined) ?? 'default';
    }
    if (name.startsWith('workflow.parameters.')) return this.params[name.slice('workflow.parameters.'.length)];
    return this.exitScope?.[name];
  };

  newNode(req: ExecRequest, type: NodeRecord['type'], phase: NodePhase, message?: string): NodeRecord {
    const node: NodeRecord = {
      id: req.name,
      name: req.name,
      displayName: req.displayName,
      path: req.path,
      depth: req.depth,
      ...(req.parentId ? { parentId: req.parentId } : {}),
      templateName: req.resolved.template.name,
      ...(req.resolved.ref ? { templateRef: req.resolved.ref } : {}),
      type,
      phase,
      attempts: [],
      ...(message ? { message } : {}),
    };
    this.nodes.push(node);
    this.emitNode(node);
    return node;
  }

  setPhase(node: NodeRecord, phase: NodePhase, message?: string): void {
    node.phase = phase;
    if (message !== undefined) node.message = message;
    else if (phase === 'Running' || phase === 'Succeeded') delete node.message;
    const now = new Date();
    if (phase === 'Running' && !node.startedAt) node.startedAt = now;
    if (!['Pending', 'Running'].includes(phase)) {
      node.startedAt ??= now;
      node.finishedAt = now;
    }
    this.emitNode(node);
  }

  // ------------------------------------------------------------ templates

  async execTemplate(req: ExecRequest): Promise<NodeRecord> {
    const t = req.resolved.template;
    const kind = templateKind(t)!;
    const node = this.newNode(req, kind === 'dag' ? 'DAG' : 'Pod', 'Pending');
    const releases: (() => Promise<void>)[] = [];
    try {
      const inputs = processInputs(t, req.args);
      const { name: _name, ...body } = t;
      const inputScope = mapScope(Object.fromEntries(Object.entries(inputs).map(([k, v]) => [`inputs.parameters.${k}`, v])));
      const tmpl = substituteDeep(body, chain(inputScope, this.globals, deferScope('tasks.', 'retries', 'pod.name')), `template ${t.name}`) as Omit<Template, 'name'>;
      for (const m of mutexNames(tmpl.synchronization)) {
        releases.push(await this.lock(m, node.name, req.stop));
      }
      for (const [cm, key] of semaphoreRefs(tmpl.synchronization)) {
        releases.push(await this.semaphore(cm, key, node.name, req.stop));
      }
      if (req.stop.aborted) {
        this.setPhase(node, 'Failed', `stopped before start: ${String(req.stop.reason)}`);
        return node;
      }
      let outcome: Outcome;
      if (kind === 'dag') {
        this.setPhase(node, 'Running');
        outcome = await this.runDag(node, { ...tmpl, name: t.name }, req);
      } else {
        outcome = await this.runPod(node, { ...tmpl, name: t.name }, kind, req);
      }
      this.setPhase(node, outcome.phase, outcome.message);
    } catch (e) {
      const message = isCapflowError(e) || e instanceof Error ? e.message : String(e);
      this.setPhase(node, req.stop.aborted && !isCapflowError(e) ? 'Failed' : 'Error', message);
    } finally {
      for (const r of releases.reverse()) await r().catch(() => undefined);
    }
    return node;
  }

  async lock(name: string, holder: string, stop: AbortSignal): Promise<() => Promise<void>> {
    return acquireMutex(name, {
      holder: `${this.workflowName} ${holder}`,
      signal: stop,
      ...(this.opts.lockDir ? { lockDir: this.opts.lockDir } : {}),
      onWait: () => this.emit({ type: 'mutex-waiting', time: new Date(), mutex: name, nodeName: holder }),
    }).then((release) => {
      this.emit({ type: 'mutex-acquired', time: new Date(), mutex: name, nodeName: holder });
      return release;
    });
  }

  async semaphore(configMap: string, key: string, holder: string, stop: AbortSignal): Promise<() => Promise<void>> {
    const limit = semaphoreLimit(this.opts.configMaps, configMap, key);
    const name = semaphoreName(configMap, key);
    return acquireSemaphore(name, {
      limit,
      holder: `${this.workflowName} ${holder}`,
      signal: stop,
      ...(this.opts.lockDir ? { lockDir: this.opts.lockDir } : {}),
      onWait: () => this.emit({ type: 'semaphore-waiting', time: new Date(), semaphore: name, limit, nodeName: holder }),
    }).then((release) => {
      this.emit({ type: 'semaphore-acquired', time: new Date(), semaphore: name, limit, nodeName: holder });
      return release;
    });
  }

  // ------------------------------------------------------------ DAG

  async runDag(node: NodeRecord, tmpl: Template, req: ExecRequest): Promise<Outcome> {
    const tasks = tmpl.dag!.tasks;
    const failFast = tmpl.dag!.failFast ?? true;
    const limit = tmpl.parallelism !== undefined && tmpl.parallelism > 0 ? tmpl.parallelism : Infinity;
    const exprs = new Map<string, DependsExpr | undefined>();
    const deps = new Map<string, string[]>();
    /** For each task, the results its dependants ask about ('' = bare name). */
    const askedOf = new Map<string, Set<string>>();
    for (const task of tasks) {
      const e = taskDependsExpr(task);
      exprs.set(task.name, e);
      const refs = e ? dependsRefs(e) : new Map<string, Set<string>>();
      deps.set(task.name, [...refs.keys()]);
      for (const [d, results] of refs) {
        const set = askedOf.get(d) ?? new Set<string>();
        for (const r of results) set.add(r);
        askedOf.set(d, set);
      }
    }
    const byName = new Map(tasks.map((t) => [t.name, t]));
    const done = new Map<string, NodeRecord>();
    const started = new Set<string>();
    let running = 0;
    let halt: { phase: NodePhase; message: string } | undefined;

    const phaseOf = (name: string): NodePhase => done.get(name)!.phase;
    /**
     * A failure is handled when the task continues on it, or a dependant asks
     * for exactly that result (`A.Failed`, `A.Errored`, `A.AllFailed`): the
     * DAG then expects it and keeps scheduling (fail fast is for unexpected failures).
     */
    const handled = (task: DagTask, phase: NodePhase): boolean => {
      const asked = askedOf.get(task.name) ?? new Set<string>();
      if (phase === 'Failed') return !!task.continueOn?.failed || asked.has('Failed') || asked.has('AllFailed');
      if (phase === 'Error') return !!task.continueOn?.error || asked.has('Errored');
      return true;
    };
    const taskScope: Scope = (name) => {
      const m = /^tasks\.([^.]+)\.(.+)$/.exec(name);
      if (!m) return undefined;
      const dn = done.get(m[1]!);
      if (!dn) return undefined;
      const what = m[2]!;
      if (what === 'status') return dn.phase;
      if (what === 'outputs.result') return dn.outputs?.result;
      if (what === 'exitCode') return dn.outputs?.exitCode === undefined ? undefined : String(dn.outputs.exitCode);
      const p = /^outputs\.parameters\.(.+)$/.exec(what);
      return p ? dn.outputs?.parameters[p[1]!] : undefined;
    };

    const childReq = (task: DagTask, resolved: Resolved, args: Record<string, string>): ExecRequest => ({
      resolved,
      args,
      name: `${node.name}.${task.name}`,
      displayName: task.name,
      path: node.path ? `${node.path}/${task.name}` : task.name,
      depth: node.depth + 1,
      parentId: node.id,
      stop: req.stop,
      exitHandler: req.exitHandler,
    });
    const placeholder = (task: DagTask, phase: NodePhase, message: string): NodeRecord => {
      let resolved: Resolved;
      try {
        resolved = resolveTemplate(this.opts.templates, req.resolved.owner, task);
      } catch {
        resolved = { owner: req.resolved.owner, template: { name: task.template ?? task.templateRef?.template ?? '?' } };
      }
      const n = this.newNode(childReq(task, resolved, {}), 'Skipped', phase, message);
      this.setPhase(n, phase, message);
      return n;
    };

    const runTask = async (task: DagTask): Promise<NodeRecord> => {
      let resolved: Resolved;
      let args: Record<string, string>;
      let when: string | undefined;
      try {
        resolved = resolveTemplate(this.opts.templates, req.resolved.owner, task);
        const scope = chain(taskScope, this.globals);
        const where = `task ${node.path ? node.path + '/' : ''}${task.name}`;
        args = {};
        for (const p of task.arguments?.parameters ?? []) args[p.name] = substitute(str(p.value ?? ''), scope, `${where}.arguments.parameters.${p.name}`);
        when = task.when !== undefined ? substitute(task.when, scope, `${where}.when`) : undefined;
      } catch (e) {
        return placeholder(task, 'Error', (e as Error).message);
      }
      if (when !== undefined) {
        let go: boolean;
        try {
          go = evaluateWhen(when);
        } catch (e) {
          return placeholder(task, 'Error', (e as Error).message);
        }
        if (!go) return placeholder(task, 'Skipped', `when '${when}' evaluated false`);
      }
      return this.execTemplate(childReq(task, resolved, args));
    };

    await new Promise<void>((resolve) => {
      const pump = (): void => {
        if (req.stop.aborted && !halt) halt = { phase: 'Failed', message: String(req.stop.reason) };
        let progressed = true;
        while (progressed) {
          progressed = false;
          for (const task of tasks) {
            if (done.has(task.name) || started.has(task.name)) continue;
            if (!deps.get(task.name)!.every((d) => done.has(d))) continue;
            if (halt) continue;
            const e = exprs.get(task.name);
            if (e && !evaluateDepends(e, phaseOf)) {
              // Argo: a task whose depends evaluates false is Omitted.
              done.set(task.name, placeholder(task, 'Omitted', 'omitted: depends condition not met'));
              progressed = true;
              continue;
            }
            if (running >= limit) continue;
            started.add(task.name);
            running++;
            progressed = true;
            void runTask(task).then((rec) => {
              running--;
              done.set(task.name, rec);
              if (failFast && !halt && (rec.phase === 'Failed' || rec.phase === 'Error') && !handled(task, rec.phase)) {
                halt = { phase: rec.phase, message: `task "${task.name}" ${rec.phase === 'Error' ? 'errored' : 'failed'}${rec.message ? `: ${rec.message}` : ''}` };
              }
              pump();
            });
          }
        }
        if (running === 0) resolve();
      };
      req.stop.addEventListener('abort', () => setImmediate(pump), { once: true });
      pump();
    });

    // Tasks never reached (fail fast, stop) are recorded, so the summary shows them.
    for (const task of tasks) {
      if (!done.has(task.name)) done.set(task.name, placeholder(task, 'Omitted', `not run: ${halt?.message ?? 'dependencies not met'}`));
    }

    if (req.stop.aborted) return { phase: 'Failed', message: String(req.stop.reason) };
    if (halt) return { phase: halt.phase, message: halt.message };

    // Argo's assessDAGPhase: the leaf tasks decide; an omitted or skipped leaf
    // inherits the phase of its branch, preferring failure over success.
    const memo = new Map<string, { phase: NodePhase; culprit?: string }>();
    const branch = (name: string): { phase: NodePhase; culprit?: string } => {
      const hit = memo.get(name);
      if (hit) return hit;
      const rec = done.get(name)!;
      let out: { phase: NodePhase; culprit?: string };
      if (rec.phase === 'Succeeded' || rec.phase === 'Failed' || rec.phase === 'Error') {
        out = { phase: rec.phase, ...(rec.phase === 'Succeeded' ? {} : { culprit: name }) };
      } else {
        out = { phase: 'Succeeded' };
        for (const d of deps.get(name)!) {
          const b = branch(d);
          if (b.phase === 'Failed' || b.phase === 'Error') {
            out = b;
            break;
          }
        }
      }
      memo.set(name, out);
      return out;
    };
    const leaves = tasks.filter((t) => !askedOf.has(t.name)).map((t) => t.name).sort();
    let result: Outcome = { phase: 'Succeeded' };
    for (const leaf of leaves) {
      const b = branch(leaf);
      const task = byName.get(leaf)!;
      const continues = b.phase === 'Failed' ? task.continueOn?.failed : b.phase === 'Error' ? task.continueOn?.error : true;
      if ((b.phase === 'Failed' || b.phase === 'Error') && !continues) {
        const culprit = done.get(b.culprit!)!;
        result = { phase: b.phase, message: `task "${b.culprit}" ${b.phase === 'Error' ? 'errored' : 'failed'}${culprit.message ? `: ${culprit.message}` : ''}` };
        if (failFast) break;
      }
    }
    if (result.phase === 'Succeeded') {
      const scope = chain(taskScope, this.globals);
      const outputs: NodeOutputs = { parameters: {} };
      for (const o of tmpl.outputs?.parameters ?? []) {
        const vf = o.valueFrom!;
        try {
          outputs.parameters[o.name] = substitute(vf.parameter!, scope, `outputs.parameters.${o.name}`);
        } catch (e) {
          if (vf.default === undefined) return { phase: 'Error', message: (e as Error).message };
          outputs.parameters[o.name] = str(vf.default);
        }
      }
      node.outputs = outputs;
    }
    return result;
  }

  // ------------------------------------------------------------ pods

  async runPod(node: NodeRecord, tmpl: Template, kind: 'container' | 'script', req: ExecRequest): Promise<Outcome> {
    const where = `template ${tmpl.name}`;
    const rs = tmpl.retryStrategy;
    const limit = rs ? (rs.limit === undefined ? Infinity : parseIntOrString(rs.limit, `${where}.retryStrategy.limit`)) : 0;
    // Argo (v3.5+): the default policy is OnFailure, or Always when only an expression is given.
    const policy = rs?.retryPolicy ?? (rs?.expression !== undefined ? 'Always' : 'OnFailure');
    const backoff = rs?.backoff;
    const baseDelay = backoff?.duration !== undefined ? parseDurationMs(backoff.duration, `${where}.retryStrategy.backoff.duration`) : 0;
    const factor = backoff?.factor !== undefined ? Number(backoff.factor) : 1;
    const capMs = backoff?.cap !== undefined ? parseDurationMs(backoff.cap, `${where}.retryStrategy.backoff.cap`) : Infinity;
    const maxDurationMs = backoff?.maxDuration !== undefined ? parseDurationMs(backoff.maxDuration, `${where}.retryStrategy.backoff.maxDuration`) : Infinity;
    const deadlineS = tmpl.activeDeadlineSeconds !== undefined ? parseIntOrString(tmpl.activeDeadlineSeconds, `${where}.activeDeadlineSeconds`) : undefined;
    if (!Number.isFinite(factor) || factor <= 0) throw new InputError('RUNNER_INVALID_NUMBER', `${where}.retryStrategy.backoff.factor: "${String(backoff?.factor)}" is not a positive number`);

    const logFile = path.join(this.dir, `${node.path || node.displayName}.log`.replace(/\//g, '.'));
    node.logFile = logFile;
    const firstStart = Date.now();
    let last: Outcome = { phase: 'Error', message: 'not started' };
    for (let i = 0; ; i++) {
      if (req.stop.aborted) return { phase: 'Failed', message: `stopped: ${String(req.stop.reason)}` };
      let releasePod: (() => void) | undefined;
      try {
        releasePod = this.pods ? await this.pods.acquire(req.stop) : undefined;
      } catch {
        return { phase: 'Failed', message: `stopped: ${String(req.stop.reason)}` };
      }
      const attempt: AttemptRecord = { index: i, phase: 'Running', startedAt: new Date() };
      node.attempts.push(attempt);
      this.setPhase(node, 'Running');
      let result: { outcome: Outcome; outputs?: NodeOutputs; exitCode?: number };
      try {
        result = await this.attempt(node, tmpl, kind, i, deadlineS, logFile, req.stop);
      } catch (e) {
        result = { outcome: { phase: 'Error', message: (e as Error).message } };
      } finally {
        releasePod?.();
      }
      attempt.phase = result.outcome.phase;
      attempt.finishedAt = new Date();
      if (result.exitCode !== undefined) attempt.exitCode = result.exitCode;
      if (result.outcome.message) attempt.message = result.outcome.message;
      last = result.outcome;
      if (result.outputs) node.outputs = result.outputs;
      else if (result.exitCode !== undefined) node.outputs = { parameters: {}, exitCode: result.exitCode };
      if (last.phase === 'Succeeded') return last;
      // Argo's retry policies: Failed = the main container failed (non-zero
      // exit, deadline); Error = everything else, here exit 75 (transient) and
      // runner errors (cannot start, outputs missing).
      const byPolicy =
        policy === 'Always' ||
        (policy === 'OnFailure' && last.phase === 'Failed') ||
        (policy === 'OnError' && last.phase === 'Error') ||
        (policy === 'OnTransientError' && result.exitCode === TRANSIENT_EXIT_CODE);
      // The expression and the policy must both allow a retry (Argo retries.md).
      const retryable =
        byPolicy &&
        (rs?.expression === undefined ||
          evaluateRetryExpression(rs.expression, {
            exitCode: result.exitCode ?? -1,
            status: last.phase,
            duration: (attempt.finishedAt.getTime() - attempt.startedAt.getTime()) / 1000,
            message: last.message ?? '',
          }));
      if (!retryable || i >= limit || req.stop.aborted) {
        if (i > 0) last = { ...last, message: `${last.message ?? last.phase} (attempt ${i + 1} of ${limit === Infinity ? '∞' : limit + 1})` };
        return last;
      }
      const delay = Math.min(baseDelay * Math.pow(factor, i), capMs);
      if (Date.now() - firstStart + delay > maxDurationMs) {
        return { phase: last.phase, message: `${last.message ?? last.phase}; retries stopped: backoff.maxDuration ${backoff!.maxDuration} exceeded` };
      }
      this.emit({ type: 'retry', time: new Date(), node: { ...node }, attempt: i + 1, delayMs: delay, reason: last.message ?? last.phase });
      this.setPhase(node, 'Pending', `retrying in ${(delay / 1000).toFixed(1)}s: ${last.message ?? last.phase}`);
      if (delay > 0) await sleep(delay, req.stop);
    }
  }

  private async attempt(
    node: NodeRecord,
    tmpl: Template,
    kind: 'container' | 'script',
    retries: number,
    deadlineS: number | undefined,
    logFile: string,
    stop: AbortSignal,
  ): Promise<{ outcome: Outcome; outputs?: NodeOutputs; exitCode?: number }> {
    const podName = `${this.workflowName}-${tmpl.name}-${randomInt(1e9, 1e10 - 1)}`;
    const attemptScope = chain(mapScope({ retries: String(retries), 'pod.name': podName }), this.globals);
    const spec = substituteDeep(kind === 'script' ? tmpl.script! : tmpl.container!, attemptScope, `template ${tmpl.name}.${kind}`) as ContainerSpec & { source?: string };
    const outputsDecl = substituteDeep(tmpl.outputs?.parameters ?? [], attemptScope, `template ${tmpl.name}.outputs`);

    const attemptDir = await mkdtemp(path.join(os.tmpdir(), `capflow-${this.workflowName}-`));
    try {
      const outDir = path.join(attemptDir, 'outputs');
      await mkdir(outDir);
      const rw = (s: string): string => rewriteOutputs(s, outDir);
      const command = (spec.command ?? []).map(rw);
      const mapped = this.entryPoints[command[0]!];
      const argv = [...(mapped ?? [command[0]!]), ...command.slice(1)];
      if (kind === 'script') {
        // Argo writes the source to a file and appends its path to the command.
        const scriptFile = path.join(attemptDir, 'script');
        await writeFile(scriptFile, rw(spec.source ?? ''), { mode: 0o700 });
        argv.push(scriptFile);
      }
      argv.push(...(spec.args ?? []).map(rw));
      const env: NodeJS.ProcessEnv = { ...(this.opts.env ?? process.env) };
      for (const e of spec.env ?? []) {
        const ref = e.valueFrom?.configMapKeyRef;
        // A ConfigMap key the run was not given fails the pod, as kubelet's CreateContainerConfigError would.
        if (ref) {
          const value = this.opts.configMaps?.[ref.name]?.[ref.key];
          if (value === undefined) return { outcome: { phase: 'Error', message: `env ${e.name}: ConfigMap "${ref.name}" key "${ref.key}" was not given to the local runner` } };
          env[e.name] = value;
        } else env[e.name] = rw(e.value ?? '');
      }
      env.CAPFLOW_OUTPUTS_DIR = outDir;
      let cwd = this.opts.cwd ?? process.cwd();
      if (spec.workingDir) {
        if (!existsSync(spec.workingDir) || !statSync(spec.workingDir).isDirectory()) {
          return { outcome: { phase: 'Error', message: `workingDir ${spec.workingDir} does not exist on this machine` } };
        }
        cwd = spec.workingDir;
      }
      const header = `--- ${new Date().toISOString()} ${node.name} attempt ${retries + 1} (retries=${retries}): ${argv.join(' ')}`;
      const out: ChildOutcome = await runChild({
        argv,
        env,
        cwd,
        logFile,
        header,
        ...(deadlineS !== undefined ? { deadlineMs: deadlineS * 1000 } : {}),
        signal: stop,
        killGraceMs: this.killGraceMs,
      });
      const lastLine = out.tail[out.tail.length - 1];
      const withTail = (m: string): string => (lastLine ? `${m}: ${lastLine}` : m);
      if (out.spawnError) return { outcome: { phase: 'Error', message: `cannot start ${argv[0]}: ${out.spawnError.message}` } };
      if (out.aborted) return { outcome: { phase: 'Failed', message: `terminated: ${String(stop.reason)}` }, ...(out.exitCode !== undefined ? { exitCode: out.exitCode } : {}) };
      if (out.deadlineExceeded) return { outcome: { phase: 'Failed', message: `deadline exceeded (activeDeadlineSeconds=${deadlineS})` } };
      if (out.exitCode === undefined) return { outcome: { phase: 'Failed', message: withTail(`killed by ${out.exitSignal ?? 'a signal'}`) } };
      if (out.exitCode === TRANSIENT_EXIT_CODE) {
        return { outcome: { phase: 'Error', message: withTail(`transient failure (exit code ${out.exitCode})`) }, exitCode: out.exitCode };
      }
      // the cluster was paused (src/core/pause.ts): the step stopped at a safe point; rerun once unpaused
      if (out.exitCode === PAUSED_EXIT_CODE) return { outcome: { phase: 'Failed', message: withTail(`paused at a safe point (exit code ${out.exitCode})`) }, exitCode: out.exitCode };
      if (out.exitCode !== 0) return { outcome: { phase: 'Failed', message: withTail(`exit code ${out.exitCode}`) }, exitCode: out.exitCode };
      const outputs: NodeOutputs = { parameters: {}, result: trimNewline(out.stdout), exitCode: 0 };
      for (const o of outputsDecl) {
        const vf = o.valueFrom!;
        const file = rw(vf.path!);
        try {
          outputs.parameters[o.name] = trimNewline(await readFile(file, 'utf8'));
        } catch (e) {
          if (vf.default !== undefined) outputs.parameters[o.name] = str(vf.default);
          else return { outcome: { phase: 'Error', message: `output parameter ${o.name}: cannot read ${vf.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }, exitCode: 0 };
        }
      }
      return { outcome: { phase: 'Succeeded' }, outputs, exitCode: 0 };
    } finally {
      await rm(attemptDir, { recursive: true, force: true });
    }
  }
}

/** Argo's ProcessArgs: default, then the argument, else value; enum checked; missing is an error. */
export function processInputs(t: Template, args: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of t.inputs?.parameters ?? []) {
    let v: string | undefined = p.value !== undefined ? str(p.value) : p.default !== undefined ? str(p.default) : undefined;
    if (Object.prototype.hasOwnProperty.call(args, p.name)) v = args[p.name];
    if (v === undefined) {
      throw new InputError('RUNNER_MISSING_PARAMETER', `template "${t.name}": inputs.parameters.${p.name} was not supplied`);
    }
    checkEnum(p, v, `template "${t.name}": inputs.parameters.${p.name}`);
    out[p.name] = v;
  }
  return out;
}

function checkEnum(p: Parameter, v: string, where: string): void {
  if (p.enum && p.enum.length > 0 && !p.enum.map(str).includes(v)) {
    throw new InputError('RUNNER_INVALID_PARAMETER', `${where}: value "${v}" is not one of ${p.enum.map(str).join(', ')}`);
  }
}

/** Workflow parameters: declared ones only; supplied, else value, else default. */
function resolveWorkflowParameters(main: LoadedTemplate, supplied: Record<string, string>): Record<string, string> {
  const declared = main.resource.spec.arguments?.parameters ?? [];
  const names = new Set(declared.map((p) => p.name));
  const unknown = Object.keys(supplied).filter((k) => !names.has(k));
  if (unknown.length > 0) {
    throw new InputError('RUNNER_UNKNOWN_PARAMETER', `WorkflowTemplate "${main.name}" has no parameter ${unknown.map((u) => `"${u}"`).join(', ')}`, {
      hint: `declared: ${[...names].join(', ') || '(none)'}`,
    });
  }
  const out: Record<string, string> = {};
  const missing: string[] = [];
  for (const p of declared) {
    const v = supplied[p.name] ?? (p.value !== undefined ? str(p.value) : p.default !== undefined ? str(p.default) : undefined);
    if (v === undefined) {
      missing.push(p.name);
      continue;
    }
    checkEnum(p, v, `workflow parameter ${p.name}`);
    out[p.name] = v;
  }
  if (missing.length > 0) {
    throw new InputError('RUNNER_MISSING_PARAMETER', `WorkflowTemplate "${main.name}": workflow parameter ${missing.map((m) => `"${m}"`).join(', ')} was not supplied`, {
      hint: missing.map((m) => `-p ${m}=...`).join(' '),
    });
  }
  return out;
}

/** Every `{{workflow.parameters.X}}` reachable from the entrypoint and onExit must be declared. */
function checkReachable(index: RunOptions['templates'], main: LoadedTemplate, params: Record<string, string>): void {
  const seen = new Set<string>();
  const problems: string[] = [];
  const visit = (r: Resolved): void => {
    const key = `${r.owner.name}/${r.template.name}`;
    if (seen.has(key)) return;
    seen.add(key);
    for (const v of variablesInDeep(r.template, key)) {
      const m = /^workflow\.parameters\.(.+)$/.exec(v.name);
      if (m && !(m[1]! in params)) problems.push(`${v.at}: {{${v.name}}} is not a parameter of WorkflowTemplate "${main.name}"`);
    }
    for (const task of r.template.dag?.tasks ?? []) visit(resolveTemplate(index, r.owner, task));
  };
  for (const name of [main.resource.spec.entrypoint, main.resource.spec.onExit]) {
    if (name) visit(resolveTemplate(index, main, { template: name }));
  }
  if (problems.length > 0) throw new InputError('RUNNER_UNRESOLVED_VARIABLE', problems.join('\n'));
}

/**
 * Runs the entrypoint of WorkflowTemplate `templateName`, then its onExit
 * handler. Invalid input (unknown template, missing or unknown parameters)
 * throws an InputError before anything runs; everything that happens during
 * the run is in the result (phase Succeeded/Failed/Error).
 */
export async function runWorkflow(opts: RunOptions): Promise<RunResult> {
  const main = opts.templates.get(opts.templateName);
  if (!main) {
    throw new InputError('RUNNER_TEMPLATE_NOT_FOUND', `WorkflowTemplate "${opts.templateName}" not found`, {
      hint: `known: ${[...opts.templates.keys()].sort().join(', ') || '(none)'}`,
    });
  }
  const spec = main.resource.spec;
  if (!spec.entrypoint) throw new InputError('RUNNER_NO_ENTRYPOINT', `WorkflowTemplate "${main.name}" has no spec.entrypoint`);
  const params = resolveWorkflowParameters(main, opts.parameters ?? {});
  const entry = resolveTemplate(opts.templates, main, { template: spec.entrypoint });
  // The workflow's arguments are the entrypoint's arguments (Argo).
  processInputs(entry.template, params);
  checkReachable(opts.templates, main, params);

  const workflowName = opts.workflowName ?? generateWorkflowName(main.resource.metadata.generateName ?? main.name);
  const dir = path.join(opts.runDir ?? path.join(process.cwd(), '.capflow', 'runs'), workflowName);
  await mkdir(dir, { recursive: true });
  const run = new Run(opts, main, workflowName, params, dir);
  run.emit({ type: 'run-started', time: run.startedAt, workflowName, templateName: main.name, runDir: dir });

  const stopCtl = new AbortController();
  const onSignal = (): void => stopCtl.abort('stopped by signal');
  if (opts.signal?.aborted) onSignal();
  else opts.signal?.addEventListener('abort', onSignal, { once: true });
  let deadlineTimer: NodeJS.Timeout | undefined;
  if (spec.activeDeadlineSeconds !== undefined) {
    const s = parseIntOrString(spec.activeDeadlineSeconds, 'spec.activeDeadlineSeconds');
    deadlineTimer = setTimeout(() => stopCtl.abort(`workflow deadline exceeded (activeDeadlineSeconds=${s})`), s * 1000);
  }

  const releases: (() => Promise<void>)[] = [];
  let root: NodeRecord | undefined;
  let phase: RunResult['phase'];
  let message: string | undefined;
  try {
    try {
      const sync = substituteDeep(spec.synchronization, run.globals, 'spec.synchronization');
      for (const m of mutexNames(sync)) {
        releases.push(await run.lock(m, workflowName, stopCtl.signal));
      }
      for (const [cm, key] of semaphoreRefs(sync)) {
        releases.push(await run.semaphore(cm, key, workflowName, stopCtl.signal));
      }
      root = await run.execTemplate({
        resolved: entry,
        args: params,
        name: workflowName,
        displayName: workflowName,
        path: '',
        depth: 0,
        stop: stopCtl.signal,
        exitHandler: false,
      });
      phase = root.phase === 'Succeeded' ? 'Succeeded' : root.phase === 'Error' ? 'Error' : 'Failed';
      message = root.message;
    } catch (e) {
      // only a stop while waiting for the workflow mutex gets here
      phase = 'Failed';
      message = stopCtl.signal.aborted ? String(stopCtl.signal.reason) : (e as Error).message;
    }
    if (deadlineTimer) clearTimeout(deadlineTimer);

    if (spec.onExit) {
      const failures = run.nodes
        .filter((n) => n.type === 'Pod' && (n.phase === 'Failed' || n.phase === 'Error'))
        .map((n) => ({
          displayName: n.displayName,
          message: n.message ?? '',
          templateName: n.templateName,
          phase: n.phase,
          podName: n.name,
          finishedAt: n.finishedAt?.toISOString().replace(/\.\d+Z$/, 'Z') ?? '',
        }));
      run.exitScope = {
        'workflow.status': phase,
        'workflow.failures': JSON.stringify(failures),
        'workflow.duration': ((Date.now() - run.startedAt.getTime()) / 1000).toFixed(6),
      };
      // The exit handler runs even after a stop or the deadline (Argo), with its own signal.
      const exitNode = await run.execTemplate({
        resolved: resolveTemplate(opts.templates, main, { template: spec.onExit }),
        args: params,
        name: `${workflowName}.onExit`,
        displayName: 'onExit',
        path: 'onExit',
        depth: 0,
        stop: new AbortController().signal,
        exitHandler: true,
      });
      if (phase === 'Succeeded' && exitNode.phase !== 'Succeeded') {
        phase = exitNode.phase === 'Error' ? 'Error' : 'Failed';
        message = `exit handler ${exitNode.phase === 'Error' ? 'errored' : 'failed'}${exitNode.message ? `: ${exitNode.message}` : ''}`;
      }
    }
  } finally {
    if (deadlineTimer) clearTimeout(deadlineTimer);
    opts.signal?.removeEventListener('abort', onSignal);
    for (const r of releases.reverse()) await r().catch(() => undefined);
  }

  const result: RunResult = {
    workflowName,
    uid: run.uid,
    templateName: main.name,
    phase,
    ...(message !== undefined && phase !== 'Succeeded' ? { message } : {}),
    startedAt: run.startedAt,
    finishedAt: new Date(),
    nodes: run.nodes,
    outputs: root?.outputs?.parameters ?? {},
    runDir: dir,
  };
  run.emit({ type: 'run-finished', time: result.finishedAt, result });
  return result;
}
