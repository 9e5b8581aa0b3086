/**
 * Argo for real: the test bed's kube-apiserver with Argo's own CRDs, the capflow chart installed by
 * the real helm, Argo's real workflow-controller (the release testbed/versions.env pins, built by
 * testbed/install.sh) managing one namespace, and the pod stand-in (test/support/pod-stand-in.ts)
 * playing the kubelet for the pods it creates. Workflows are submitted with the real `argo` CLI.
 *
 *   const bed = await startArgoBed({ chartValues: { executor: { extraEnv: [...] } } });
 *   const name = await bed.submit(['--from', 'workflowtemplate/cluster-apply', '-p', 'repo=...']);
 *   const wf = await bed.waitForWorkflow(name);          // Succeeded, Failed or Error
 *   await bed.stop();
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { schemaPath, startEnvtest, type Envtest } from './envtest.js';
import { type PodImage, PodStandIn } from './pod-stand-in.js';
import { imageRoot, podTmpEnv } from './image-root.js';
import { REPO_ROOT, requireTool, run, testbedVersions, INSTALL_COMMAND, type RunResult } from './tools.js';

/** The image the WorkflowTemplates name (the chart's default repository). */
export const CAPFLOW_IMAGE_REPOSITORY = 'ghcr.io/capflow/capflow';

/** Where install.sh keeps the Argo release's CRDs (copied from its module), in minimal/. */
export function argoCrdsDir(): string {
  const version = testbedVersions().ARGO_VERSION;
  const dir = join(process.env.CAPFLOW_TESTBED_CACHE ?? join(homedir(), '.cache', 'capflow-testbed'), 'workflow-controller', version!, 'crds');
  if (!existsSync(join(dir, 'minimal', 'argoproj.io_workflowtaskresults.yaml'))) throw new Error(`Argo ${version}'s CRDs are not in ${dir}; install them with: ${INSTALL_COMMAND}`);
  return dir;
}

/**
 * The capflow image as the pods run it: the bundle of scripts/bundle.mjs (the image's /app, built
 * once per test process by test/support/image-root.ts), its ENV, and `capflow` on its PATH.
 */
export async function capflowImage(): Promise<PodImage> {
  const root = await imageRoot();
  return {
    repositories: [CAPFLOW_IMAGE_REPOSITORY],
    dir: root.dir,
    commands: { capflow: [process.execPath, root.entry] },
    env: { ...root.env, ...podTmpEnv('/tmp') },
  };
}

export interface Workflow {
  metadata: { name: string; uid: string; labels?: Record<string, string>; creationTimestamp?: string };
  spec: Record<string, unknown>;
  status?: {
    phase?: string;
    message?: string;
    startedAt?: string;
    finishedAt?: string;
    nodes?: Record<string, WorkflowNode>;
    synchronization?: unknown;
  };
}

export interface WorkflowNode {
  id: string;
  name: string;
  displayName: string;
  type: string;
  phase?: string;
  message?: string;
  templateName?: string;
  templateRef?: { name: string; template: string };
  startedAt?: string;
  finishedAt?: string;
  children?: string[];
  outputs?: { exitCode?: string; parameters?: Array<{ name: string; value?: string }> };
}

export interface ArgoBed {
  env: Envtest;
  kc: KubeConfig;
  namespace: string;
  pods: PodStandIn;
  /** The real argo CLI against this namespace (or another). */
  argo(args: string[], opts?: { timeoutMs?: number; namespace?: string }): Promise<RunResult>;
  /** `argo submit ... -o name`: the new Workflow's name. */
  submit(args: string[]): Promise<string>;
  getWorkflow(name: string): Promise<Workflow>;
  listWorkflows(): Promise<Workflow[]>;
  /** Waits until the Workflow's phase is one of `phases` (default: completed). */
  waitForWorkflow(name: string, opts?: { timeoutMs?: number; phases?: string[] }): Promise<Workflow>;
  /** The controller's log, last lines. */
  controllerLog(lines?: number): string;
  /** Everything a failed assertion should show: the Workflow's nodes and each pod's log tail. */
  explain(name: string): Promise<string>;
  stop(): Promise<void>;
}

export interface ArgoBedOptions {
  namespace?: string;
  /** Values for the capflow chart (helm install). */
  chartValues?: Record<string, unknown>;
  images?: PodImage[];
  /**
   * The controller's DEFAULT_REQUEUE_TIME. Default 1s, as Argo's own test setup runs it (its
   * Makefile: "by keeping this short we speed up tests"); Argo's default, 10s, is what the
   * benchmark measures.
   */
  requeueTime?: string;
  /** How often the pod stand-in looks for new pods (default 200 ms). */
  podPollMs?: number;
}

export async function startArgoBed(opts: ArgoBedOptions = {}): Promise<ArgoBed> {
  if (process.getuid?.() !== 0) throw new Error('the pod stand-in runs each Workflow pod in its own mount namespace, as the pod\'s user: run the Argo tests as root');
  const namespace = opts.namespace ?? 'capflow-system';
  const crdsDir = argoCrdsDir();
  const controllerBin = requireTool('workflow-controller');
  const argoBin = requireTool('argo');
  const helm = requireTool('helm');
  // The release's minimal CRDs, as Argo's install has them; Workflow and WorkflowTemplate get the
  // full schemas of ../shared/schemas/argo instead, so that the API server checks the shapes of what
  // the CLI, the reconciler and the chart create (this release's own full CRDs are refused by
  // current API servers).
  const full = new Set(['argoproj.io_workflows.yaml', 'argoproj.io_workflowtemplates.yaml']);
  const crds = readdirSync(join(crdsDir, 'minimal'))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => (full.has(f) ? schemaPath('argo', f) : join(crdsDir, 'minimal', f)));
  const env = await startEnvtest({ crds });
  const kc = env.makeKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const work = mkdtempSync(join(tmpdir(), 'capflow-argo-bed-'));
  let controller: ChildProcess | undefined;
  let pods: PodStandIn | undefined;
  const stop = async (): Promise<void> => {
    await pods?.stop();
    if (controller && controller.exitCode === null) {
      controller.kill('SIGKILL');
      await new Promise((r) => controller!.once('exit', r));
    }
    await env.stop();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    // The chart, as a user installs it (the reconciler off unless asked: it is run as a process).
    const valuesFile = join(work, 'values.yaml');
    writeFileSync(valuesFile, stringify({ reconciler: { enabled: false }, ...opts.chartValues }));
    const installed = await run(helm, ['install', 'capflow', join(REPO_ROOT, 'charts', 'capflow'), '-n', namespace, '--kubeconfig', env.kubeconfigPath, '-f', valuesFile, '--wait=false'], {
      env: { ...process.env, HELM_CACHE_HOME: join(work, 'helm-cache'), HELM_CONFIG_HOME: join(work, 'helm-config'), HELM_DATA_HOME: join(work, 'helm-data') },
    });
    if (installed.code !== 0) throw new Error(`helm install failed: ${installed.stdout}${installed.stderr}`);

    // The controller's configuration: metrics off (they would listen on :9090 in every test process).
    await core.createNamespacedConfigMap({
      namespace,
      body: {
        metadata: { name: 'workflow-controller-configmap' },
        data: { metricsConfig: 'enabled: false\n', telemetryConfig: 'enabled: false\n' },
      },
    });
    const log = join(work, 'workflow-controller.log');
    const fd = openSync(log, 'a');
    controller = spawn(controllerBin, ['--kubeconfig', env.kubeconfigPath, '--namespaced', '--managed-namespace', namespace, '-n', namespace, '--loglevel', 'info'], {
      env: { ...process.env, LEADER_ELECTION_DISABLE: 'true', DEFAULT_REQUEUE_TIME: opts.requeueTime ?? '1s' },
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);

    const images = (opts.images ?? [await capflowImage()]).map((i) => {
      chmodSync(i.dir, 0o755);
      return i;
    });
    pods = new PodStandIn({ kc, namespace, server: env.server, caCert: env.caCert, images, ...(opts.podPollMs ? { pollMs: opts.podPollMs } : {}) }).start();

    const argo = (args: string[], o: { timeoutMs?: number; namespace?: string } = {}): Promise<RunResult> =>
      run(argoBin, [...args, '--kubeconfig', env.kubeconfigPath, '-n', o.namespace ?? namespace], { timeoutMs: o.timeoutMs ?? 60_000, env: { ...process.env, ARGO_SERVER: '' } });
    const getWorkflow = async (name: string): Promise<Workflow> =>
      (await custom.getNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace, plural: 'workflows', name })) as Workflow;
    const controllerLog = (lines = 60): string => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-lines).join('\n') : '');
    const bed: ArgoBed = {
      env,
      kc,
      namespace,
      pods,
      argo,
      async submit(args) {
        const r = await argo(['submit', ...args, '-o', 'name']);
        if (r.code !== 0) throw new Error(`argo submit ${args.join(' ')}: exit ${r.code}: ${r.stderr}${r.stdout}`);
        return r.stdout.trim().split('\n').pop()!.trim();
      },
      getWorkflow,
      async listWorkflows() {
        const res = (await custom.listNamespacedCustomObject({ group: 'argoproj.io', version: 'v1alpha1', namespace, plural: 'workflows' })) as { items: Workflow[] };
        return res.items;
      },
      async waitForWorkflow(name, o = {}) {
        const phases = o.phases ?? ['Succeeded', 'Failed', 'Error'];
        const deadline = Date.now() + (o.timeoutMs ?? 120_000);
        for (;;) {
          const wf = await getWorkflow(name);
          if (wf.status?.phase && phases.includes(wf.status.phase)) return wf;
          if (Date.now() > deadline) throw new Error(`workflow ${name} is ${wf.status?.phase ?? 'not started'} after ${o.timeoutMs ?? 120_000} ms, not ${phases.join('|')}\n${await bed.explain(name)}`);
          await new Promise((r) => setTimeout(r, 250));
        }
      },
      controllerLog,
      async explain(name) {
        const wf = await getWorkflow(name).catch(() => undefined);
        const nodes = Object.values(wf?.status?.nodes ?? {})
          .map((n) => `  ${n.displayName} ${n.type} ${n.phase ?? ''} ${n.outputs?.exitCode ? `exit ${n.outputs.exitCode} ` : ''}${n.message ?? ''}`)
          .join('\n');
        const logs = pods!
          .runsOf(name)
          .map((r) => `--- pod ${r.pod} (exit ${r.exitCode ?? 'running'}): ${r.argv.join(' ')}\n${pods!.logOf(r.pod).split('\n').slice(-15).join('\n')}`)
          .join('\n');
        return `workflow ${name}: ${wf?.status?.phase ?? '?'} ${wf?.status?.message ?? ''}\n${nodes}\n${logs}\n--- controller log\n${controllerLog(25)}`;
      },
      stop,
    };
    return bed;
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The pod nodes of a Workflow (one per attempt), in start order. */
export function podNodes(wf: Workflow): WorkflowNode[] {
  return Object.values(wf.status?.nodes ?? {})
    .filter((n) => n.type === 'Pod')
    .sort((a, b) => (a.startedAt ?? '').localeCompare(b.startedAt ?? ''));
}
