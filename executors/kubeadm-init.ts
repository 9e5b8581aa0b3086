/**
 * kubeadm-init: the cluster's control plane comes up. Makes the PKI (Cluster API's `<cluster>-ca`,
 * `-etcd`, `-proxy`, `-sa` Secrets) and the admin kubeconfig (`<cluster>-kubeconfig`), launches the
 * first control plane machine with `kubeadm init` bootstrap data (its secret half in Secrets
 * Manager), and waits until `/readyz` answers through the API load balancer with a certificate of
 * the cluster CA. The other control plane replicas are launch-nodes' (they join one at a time).
 * When the API already answers with our CA, nothing changes. With --delete: the cluster's bootstrap
 * payloads, join token and kubeconfig go (the PKI stays, so a cluster made again keeps its CA).
 * Outputs the kubeconfig Secret's name, never its content.
 */
import path from 'node:path';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Executor } from '../src/core/executor.js';
import { InputError } from '../src/core/errors.js';
import { removeStepStatus, writeStepStatus } from '../src/core/status.js';
import { deleteBootstrapPayloads } from '../src/aws/bootstrap-payloads.js';
import { describeMachines, registerTargets, registeredTargets } from '../src/aws/instances.js';
import { desiredGroups, reconcileMachines } from '../src/aws/machines.js';
import { retireJoinToken } from '../src/bootstrap/join-token.js';
import { CONTROL_PLANE_GROUP } from '../src/bootstrap/machine-data.js';
import { clusterSecretName } from '../src/bootstrap/pki.js';
import { BootstrapSession } from '../src/bootstrap/session.js';
import { loadClusterSpec } from '../src/spec/index.js';
import { byohInit, byohInitDelete } from './byoh-kubeadm.js';
import { SSH_PARAMS, isByohCluster, loadByohForDelete } from './byoh-step.js';
import { DELETE_TARGET_PARAMS, DURATION_PATTERN, POLL_INTERVAL_PARAM, bootstrapScope, loadAwsClusterForDelete, parseDuration, waitForApiServer, requireKubeadmAwsCluster, requireNetwork, specLoadOptions } from './aws-step.js';

export const STEP_ID = 'kubeadm-init';
/** The init machine's payload secret: it holds the cluster's keys, and goes once the API answers. */
export const INIT_PAYLOAD = 'control-plane-init';
const OUTPUTS = ['kubeconfig-secret', 'api-server'] as const;

export interface KubeadmInitStatus {
  revision: string;
  server: string;
  kubeconfigSecret: string;
}

export const kubeadmInit: Executor = {
  id: STEP_ID,
  description: 'Bring up the control plane: cluster PKI and kubeconfig, the first control plane machine with kubeadm init, the API healthy behind its load balancer',
  supportsDelete: true,
  supportsDryRun: true,
  inputSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      'api-timeout': { type: 'string', pattern: DURATION_PATTERN, description: 'how long to wait for the API server to answer /readyz (default 15m)' },
      'poll-interval': POLL_INTERVAL_PARAM,
      ...DELETE_TARGET_PARAMS,
      // bring-your-own-host clusters: how the step reaches the hosts over SSH
      ...SSH_PARAMS,
    },
  },
  outputSchema: { type: 'object', additionalProperties: false, required: [...OUTPUTS], properties: Object.fromEntries(OUTPUTS.map((o) => [o, { type: 'string' }])) },
  async run(ctx) {
    const pollMs = parseDuration(ctx.options.params['poll-interval'], 'poll-interval') ?? 5000;
    const timeoutMs = parseDuration(ctx.options.params['api-timeout'], 'api-timeout') ?? 15 * 60_000;

    if (ctx.options.delete) {
      const byoh = await loadByohForDelete(ctx).catch(() => undefined);
      if (byoh?.model) return byohInitDelete(ctx, byoh.clusterName);
      const { clusterName, region } = await loadAwsClusterForDelete(ctx);
      const scope = bootstrapScope(ctx, { name: clusterName, region });
      await deleteBootstrapPayloads(scope, ctx.aws.get(SecretsManagerClient, region));
      if (ctx.options.dryRun) {
        ctx.log.info(`Plan:\n${scope.plan.format()}`);
      } else {
        // The workload cluster is going: its token goes with it; capflow's copy and the kubeconfig here.
        await retireJoinToken(ctx.secrets, undefined, clusterName);
        await ctx.secrets.delete(clusterSecretName(clusterName, 'kubeconfig'));
        await removeStepStatus(ctx.secrets, clusterName, STEP_ID);
      }
      return { outputs: { 'kubeconfig-secret': '', 'api-server': '' }, summary: { plan: scope.plan.counts() } };
    }

    const model = await loadClusterSpec(path.resolve(ctx.options.repoDir, ctx.options.clusterPath), specLoadOptions(ctx.options));
    if (isByohCluster(model)) return byohInit(ctx, model, { pollMs, timeoutMs });
    requireKubeadmAwsCluster(model, STEP_ID);
    const vpc = await requireNetwork(ctx, model.name);
    const infra = model.infrastructure.spec as { region?: string; additionalTags?: Record<string, string> };
    const region = infra.region ?? vpc.region ?? ctx.aws.defaultRegion;
    const scope = bootstrapScope(ctx, { name: model.name, region, ...(infra.additionalTags ? { additionalTags: infra.additionalTags } : {}) });
    // Checked before any call: the control plane group (instance type, zones) and its bootstrap spec.
    const cpGroup = desiredGroups(model, vpc).find((g) => g.name === CONTROL_PLANE_GROUP)!;
    const secretsManager = ctx.aws.get(SecretsManagerClient, region);
    const session = new BootstrapSession({ store: ctx.secrets, model, scope, secretsManager, apiServerDns: vpc.apiServerDns, log: ctx.log });
    if (!session.endpoint.host) throw new InputError('CONTROL_PLANE_ENDPOINT_MISSING', `cluster ${model.name} has no API load balancer in its network status, and Cluster.spec.controlPlaneEndpoint is empty`);

    const kubeconfigSecret = scope.dryRun ? clusterSecretName(model.name, 'kubeconfig') : await session.ensureKubeconfig();
    const outputs = { 'kubeconfig-secret': kubeconfigSecret, 'api-server': session.server };
    // Ready means /readyz through the load balancer with our CA, and kubeadm init finished.
    const check = async () => {
      const readyz = await session.readyz();
      return readyz.ready ? session.initialized() : readyz;
    };
    let answer = await check();
    if (answer.ready) {
      const live = await session.liveVersion();
      if (live) session.refuseVersionSkew(live);
      scope.plan.record({ resource: 'control-plane', name: session.server, action: 'no-change', detail: `API server ${live ?? ''} ready with the cluster CA`.replace('  ', ' ') });
    } else {
      const machines = (await describeMachines(scope)).live.filter((m) => m.group === CONTROL_PLANE_GROUP);
      if (machines.length === 0) {
        const subnetsByAz: Record<string, string> = {};
        for (const s of vpc.subnets) if (!s.public && !subnetsByAz[s.az]) subnetsByAz[s.az] = s.id;
        ctx.log.info('Launching the first control plane machine (kubeadm init)', { endpoint: session.server });
        const sshKeyName = (model.infrastructure.spec as { sshKeyName?: string }).sshKeyName;
        await ctx.checkpoint('first-control-plane-machine');
        await reconcileMachines(scope, {
          groups: [{ ...cpGroup, replicas: 1 }],
          network: { subnetsByAz, ...(vpc.targetGroupArn ? { targetGroupArn: vpc.targetGroupArn } : {}) },
          userData: async () => Buffer.from(await session.userData(CONTROL_PLANE_GROUP, 'init', INIT_PAYLOAD), 'utf8').toString('base64'),
          keepOtherGroups: true,
          pollMs: Math.min(pollMs, 2000),
          ...(sshKeyName ? { sshKeyName } : {}),
        });
      } else {
        ctx.log.info('Control plane machines exist; waiting for the API server', { machines: machines.map((m) => `${m.name} (${m.state})`).join(', ') });
        scope.plan.record({ resource: 'control-plane', name: session.server, action: 'no-change', detail: `waiting: ${answer.detail}` });
        // A run that died between the launch and the registration left the machine out of the load balancer.
        if (vpc.targetGroupArn && !scope.dryRun) {
          const registered = await registeredTargets(scope, vpc.targetGroupArn);
          await registerTargets(scope, vpc.targetGroupArn, machines.filter((m) => m.state === 'running' && !registered.has(m.instanceId)).map((m) => m.instanceId));
        }
      }
      if (scope.dryRun) {
        ctx.log.info(`Plan:\n${scope.plan.format()}`);
        return { outputs, summary: { plan: scope.plan.counts() } };
      }
      answer = await waitForApiServer(ctx, session.server, check, answer, {
        pollMs,
        timeoutMs,
        hint: 'look at the first control plane machine\'s boot log (cloud-init output: the payload fetch, then kubeadm init); run again to keep waiting',
      });
    }
    // The init payload holds the cluster's keys: gone once kubeadm init is done (also after a crash here).
    await deleteBootstrapPayloads(scope, secretsManager, [INIT_PAYLOAD]);
    if (scope.dryRun) ctx.log.info(`Plan:\n${scope.plan.format()}`);
    else await writeStepStatus(ctx.secrets, model.name, STEP_ID, { revision: ctx.options.revision, server: session.server, kubeconfigSecret } satisfies KubeadmInitStatus);
    return { outputs, summary: { plan: scope.plan.counts() } };
  },
};
