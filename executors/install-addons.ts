/**
 * install-addons: the cluster's addons as Git says (src/addons/install.ts). AddonCharts rendered with
 * the real helm and ClusterResourceSets read from the cluster folder, everything checked by the API
 * server before the first write, then applied in dependency order with server-side apply (field
 * manager capflow), what is no longer rendered pruned, and each addon ready before its dependants.
 * `stage=control-plane` installs what must come before Nodes can be Ready (the CNI), right after
 * kubeadm-init; `stage=workers` the rest once join-workers is through; `all` both. With --dry-run,
 * the plan (create, update, no-change, delete per object) from the API server's dry run.
 * Outputs how many objects changed and, per addon, what was written and pruned.
 */
import path from 'node:path';
import type { Executor, StepResult } from '../src/core/executor.js';
import { InputError } from '../src/core/errors.js';
import { Plan } from '../src/aws/plan.js';
import { ADDONS_STEP, installAddons, planWithoutCluster, type StageSelection } from '../src/addons/install.js';
import { KUBECONFIG_KEY, clusterSecretName } from '../src/bootstrap/pki.js';
import { kubeConfigFrom } from '../src/bootstrap/workload.js';
import { loadClusterSpec } from '../src/spec/index.js';
import { DURATION_PATTERN, POLL_INTERVAL_PARAM, parseDuration, specLoadOptions } from './aws-step.js';
import { isEksCluster, refreshEksKubeconfig } from './eks-step.js';

export const STEP_ID = ADDONS_STEP;
const STAGES: Record<string, StageSelection> = { 'control-plane': 'ControlPlane', workers: 'Workers', all: 'all' };

export const installAddonsStep: Executor = {
  id: STEP_ID,
  description: 'Install the cluster\'s addons (Helm charts and ClusterResourceSets) in dependency order with server-side apply, prune what Git no longer has, wait until they are ready',
  supportsDelete: false,
  supportsDryRun: true,
  inputSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      stage: { type: 'string', enum: Object.keys(STAGES), description: 'control-plane (the CNI, before Nodes can be Ready), workers (the rest) or all (default)' },
      concurrency: { type: 'string', pattern: '^[1-9][0-9]?$', description: 'addons rendered and installed at once (default 4)' },
      'ready-timeout': { type: 'string', pattern: DURATION_PATTERN, description: "how long a ClusterResourceSet's objects may take to be ready (default 5m; charts say theirs in spec.timeout)" },
      'poll-interval': { ...POLL_INTERVAL_PARAM, description: 'delay between readiness checks (default 2s)' },
    },
  },
  outputSchema: { type: 'object', additionalProperties: false, required: ['changes', 'addons'], properties: { changes: { type: 'string' }, addons: { type: 'string' } } },
  async run(ctx) {
    const stage = STAGES[ctx.options.params.stage ?? 'all']!;
    const concurrency = Number(ctx.options.params.concurrency ?? 4);
    const readyTimeoutMs = parseDuration(ctx.options.params['ready-timeout'], 'ready-timeout') ?? 5 * 60_000;
    const pollMs = parseDuration(ctx.options.params['poll-interval'], 'poll-interval') ?? 2000;
    const model = await loadClusterSpec(path.resolve(ctx.options.repoDir, ctx.options.clusterPath), specLoadOptions(ctx.options));
    const plan = new Plan();
    const common = { model, repoRoot: ctx.options.repoDir, revision: ctx.options.revision, stage, store: ctx.secrets, log: ctx.log, plan, dryRun: ctx.options.dryRun, concurrency, resourceSetTimeoutMs: readyTimeoutMs, pollMs, signal: ctx.signal };

    if (isEksCluster(model) && !ctx.options.dryRun) await refreshEksKubeconfig(ctx, model);
    const kubeconfig = (await ctx.secrets.get(clusterSecretName(model.name, 'kubeconfig')))?.[KUBECONFIG_KEY];
    if (!kubeconfig) {
      if (!ctx.options.dryRun) {
        throw new InputError('BOOTSTRAP_MISSING', `cluster ${model.name} has no API server yet (no ${clusterSecretName(model.name, 'kubeconfig')})`, { hint: isEksCluster(model) ? 'run eks-control-plane first' : 'run kubeadm-init first' });
      }
      await planWithoutCluster(common);
      ctx.log.info(`Plan:\n${plan.format()}`);
      return planResult(plan);
    }
    await ctx.checkpoint('addons');
    const result = await installAddons({ ...common, kc: kubeConfigFrom(kubeconfig) });
    if (ctx.options.dryRun) {
      ctx.log.info(`Plan:\n${plan.format()}`);
      return planResult(plan);
    }
    return {
      outputs: { changes: String(result.changes), addons: JSON.stringify(result.addons) },
      summary: { stage, addons: result.addons.length, changes: result.changes, removed: result.removed },
    };
  },
};

/** A dry run's outputs: the objects that would be created, changed or deleted, and the addons named. */
function planResult(plan: Plan): StepResult {
  const counts = plan.counts();
  const addons = [...new Set(plan.entries().map((e) => e.resource.replace(/^addon /, '')))];
  return { outputs: { changes: String(counts.create + counts.update + counts.delete), addons: JSON.stringify(addons) }, summary: { plan: counts } };
}
