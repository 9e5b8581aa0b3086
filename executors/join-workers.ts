/**
 * join-workers: the cluster's machines become Ready Nodes. Waits until the Node of every live
 * machine (control planes, MachineDeployments, MachinePools) is registered and Ready, saying how
 * many are; labels each with its machine, group and zone; removes the Nodes of machines that are
 * gone (cordon, drain, delete). Once every machine joined, the join token and the bootstrap payloads
 * go, except what MachinePools still need (their Auto Scaling groups launch on their own).
 * Outputs the Nodes as JSON.
 */
import path from 'node:path';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Executor } from '../src/core/executor.js';
import { InputError } from '../src/core/errors.js';
import { deleteBootstrapPayloads, listBootstrapPayloads } from '../src/aws/bootstrap-payloads.js';
import { describeClusterInstances } from '../src/aws/instances.js';
import { MACHINE_POOL_TAG } from '../src/aws/machine-pools.js';
import { labelNodes, removeGoneNodes, waitForReadyNodes } from '../src/bootstrap/join.js';
import { retireJoinToken } from '../src/bootstrap/join-token.js';
import { clusterSecretName } from '../src/bootstrap/pki.js';
import { BootstrapSession } from '../src/bootstrap/session.js';
import { loadClusterSpec } from '../src/spec/index.js';
import { byohJoin } from './byoh-kubeadm.js';
import { SSH_PARAMS, isByohCluster } from './byoh-step.js';
import { DURATION_PATTERN, POLL_INTERVAL_PARAM, bootstrapScope, parseDuration, requireKubeadmAwsCluster, requireNetwork, specLoadOptions } from './aws-step.js';

export const STEP_ID = 'join-workers';

export interface NodeRecord {
  name: string;
  machine: string;
  group: string;
  instanceId: string;
  ready: boolean;
}

export const joinWorkers: Executor = {
  id: STEP_ID,
  description: "Wait until every machine's Node is Ready, label the Nodes, remove the Nodes of machines that are gone, retire the join token",
  supportsDelete: false,
  supportsDryRun: true,
  inputSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      'node-timeout': { type: 'string', pattern: DURATION_PATTERN, description: 'how long Nodes may take to be Ready (default 15m)' },
      'poll-interval': POLL_INTERVAL_PARAM,
      'drain-timeout': { type: 'string', pattern: DURATION_PATTERN, description: 'how long the Node of a gone machine is drained before it is deleted (default 30s)' },
      // bring-your-own-host clusters: how the step reaches the hosts over SSH
      ...SSH_PARAMS,
    },
  },
  outputSchema: { type: 'object', additionalProperties: false, required: ['nodes', 'ready'], properties: { nodes: { type: 'string' }, ready: { type: 'string' } } },
  async run(ctx) {
    const timeoutMs = parseDuration(ctx.options.params['node-timeout'], 'node-timeout') ?? 15 * 60_000;
    const pollMs = parseDuration(ctx.options.params['poll-interval'], 'poll-interval') ?? 5000;
    const drainTimeoutMs = parseDuration(ctx.options.params['drain-timeout'], 'drain-timeout') ?? 30_000;
    const model = await loadClusterSpec(path.resolve(ctx.options.repoDir, ctx.options.clusterPath), specLoadOptions(ctx.options));
    if (isByohCluster(model)) return byohJoin(ctx, model, { pollMs, timeoutMs, drainTimeoutMs });
    requireKubeadmAwsCluster(model, STEP_ID);
    const vpc = await requireNetwork(ctx, model.name);
    if (!(await ctx.secrets.get(clusterSecretName(model.name, 'kubeconfig')))) {
      throw new InputError('BOOTSTRAP_MISSING', `cluster ${model.name} has no API server yet (no ${clusterSecretName(model.name, 'kubeconfig')})`, { hint: 'run kubeadm-init and launch-nodes first' });
    }
    const infra = model.infrastructure.spec as { region?: string };
    const region = infra.region ?? vpc.region ?? ctx.aws.defaultRegion;
    const scope = bootstrapScope(ctx, { name: model.name, region });
    const secretsManager = ctx.aws.get(SecretsManagerClient, region);
    const session = new BootstrapSession({ store: ctx.secrets, model, scope, secretsManager, apiServerDns: vpc.apiServerDns, log: ctx.log });
    const core = await session.core();
    const instances = () => describeClusterInstances(scope, MACHINE_POOL_TAG);

    if (ctx.options.dryRun) {
      // The plan: which machines have no Ready Node. Nothing is written.
      const live = (await instances()).filter((x) => x.state === 'pending' || x.state === 'running');
      const ready = (await session.readyMachines(live.filter((i) => i.state === 'running'))) ?? new Set<string>();
      for (const i of live) {
        scope.plan.record({ resource: 'node', name: i.privateDns || i.instanceId, action: ready.has(i.instanceId) ? 'no-change' : 'create', id: i.instanceId, detail: ready.has(i.instanceId) ? 'Ready' : 'not Ready yet' });
      }
      ctx.log.info(`Plan:\n${scope.plan.format()}`);
      return { outputs: { nodes: '[]', ready: `${ready.size}/${live.length}` }, summary: { plan: scope.plan.counts() } };
    }

    const result = await waitForReadyNodes(core, model.name, { timeoutMs, pollMs, log: ctx.log, signal: ctx.signal, instances });
    const labelled = await labelNodes(core, model.name, result, ctx.log);
    await ctx.checkpoint('remove-gone-nodes');
    const removed = await removeGoneNodes(core, await instances(), result.nodes, { log: ctx.log, drainTimeoutMs, signal: ctx.signal });

    // Every machine joined: what they joined with goes, except what MachinePools may still launch with.
    const pools = new Set(model.machinePools.map((p) => p.pool.metadata.name));
    const payloads = [...(await listBootstrapPayloads(scope, secretsManager)).keys()].filter((g) => !pools.has(g));
    if (payloads.length > 0) await deleteBootstrapPayloads(scope, secretsManager, payloads);
    if (pools.size === 0 && (await retireJoinToken(ctx.secrets, core, model.name))) ctx.log.info('Retired the join token: every machine joined');

    const nodes: NodeRecord[] = result.instances.map((i) => ({ name: i.privateDns, machine: i.machine, group: i.group, instanceId: i.instanceId, ready: true }));
    ctx.log.info(`Nodes:\n${nodes.map((n) => `${n.name}  ${n.group}  ${n.machine}  Ready`).join('\n')}`);
    return {
      outputs: { nodes: JSON.stringify(nodes), ready: `${nodes.length}/${nodes.length}` },
      summary: { nodes: nodes.length, labelled, removedNodes: removed.length, afterLastReadyMs: Date.now() - result.lastReadyAt },
    };
  },
};
