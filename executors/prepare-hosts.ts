/**
 * prepare-hosts: the bring-your-own hosts a cluster's machines need are claimed and made ready for
 * kubeadm. Each machine group (the KubeadmControlPlane, each MachineDeployment) gets `replicas`
 * hosts its ByoMachineTemplate's selector matches, kept across runs; a claim is recorded before
 * anything is done on the host, so a crash, a rerun or another cluster sees it. Each claimed host
 * is checked over SSH (pinned host key) and changed only where it differs: swap, kernel modules and
 * sysctls, the container runtime, kubelet/kubeadm/kubectl at the spec's version. Claims the spec no
 * longer wants (host gone from the inventory, fewer replicas) are marked releasing: join-workers
 * drains, resets and releases them once the new ones joined.
 *
 * With --delete: every host the cluster holds is drained (when its API answers), `kubeadm reset`
 * and released, workers first; a cluster that holds none makes no SSH connection.
 */
import path from 'node:path';
import type { Executor, StepContext } from '../src/core/executor.js';
import { ConflictError } from '../src/core/errors.js';
import { mapLimit } from '../src/core/concurrency.js';
import { readStepStatus, removeStepStatus, writeStepStatus } from '../src/core/status.js';
import { Plan } from '../src/aws/plan.js';
import { claimHost, listClaims, markReleasing, planClaims } from '../src/hosts/claims.js';
import { HostConnections, inventoryOf, machineGroupsOf, sshTargetsOf } from '../src/hosts/inventory.js';
import { prepareHost } from '../src/hosts/prepare.js';
import { groupSpec } from '../src/bootstrap/machine-data.js';
import { loadClusterSpec } from '../src/spec/index.js';
import { DELETE_TARGET_PARAMS, specLoadOptions } from './aws-step.js';
import { PREPARE_HOSTS_STEP, SSH_PARAMS, byohSshOptions, loadByohForDelete, requireByohCluster, retireClaims, type PreparedHostsStatus } from './byoh-step.js';

const OUTPUTS = ['hosts', 'changes'] as const;

export const prepareHosts: Executor = {
  id: PREPARE_HOSTS_STEP,
  description: "Claim the inventory's hosts for the cluster's machines and prepare them for kubeadm (swap, kernel modules and sysctls, container runtime, kubelet and kubeadm); with --delete, drain, reset and release them",
  supportsDelete: true,
  supportsDryRun: true,
  inputSchema: { type: 'object', additionalProperties: false, properties: { ...SSH_PARAMS, 'cluster-name': DELETE_TARGET_PARAMS['cluster-name'] } },
  outputSchema: { type: 'object', additionalProperties: false, required: [...OUTPUTS], properties: Object.fromEntries(OUTPUTS.map((o) => [o, { type: 'string' }])) },
  async run(ctx) {
    return ctx.options.delete ? deleteHosts(ctx) : applyHosts(ctx);
  },
};

async function applyHosts(ctx: StepContext) {
  const model = await loadClusterSpec(path.resolve(ctx.options.repoDir, ctx.options.clusterPath), specLoadOptions(ctx.options));
  requireByohCluster(model, PREPARE_HOSTS_STEP);
  const inventory = inventoryOf(model);
  const { targets, jumpHost } = sshTargetsOf(model);
  const plan = new Plan();
  const dryRun = ctx.options.dryRun;

  // Who gets which host: decided in full before the first claim, so a shortage changes nothing.
  const wanted = planClaims(inventory.spec.hosts, machineGroupsOf(model), await listClaims(ctx.secrets), model.name);
  if (wanted.short.length > 0) {
    throw new ConflictError('HOSTS_SHORT', `cluster ${model.name} needs more hosts than are free: ${wanted.short.map((s) => `${s.group} wants ${s.want}, ${s.have} free (${s.candidates.join(', ') || 'none'})`).join('; ')}`, {
      hint: 'add hosts with matching labels to the ByoHostInventory, or wait until another cluster releases some (`capflow hosts` lists the claims)',
      details: { short: wanted.short },
    });
  }
  for (const k of wanted.keep) plan.record({ resource: 'host-claim', name: k.host.name, action: 'no-change', detail: k.group });
  for (const c of wanted.claim) {
    plan.record({ resource: 'host-claim', name: c.host.name, action: 'create', detail: c.group });
    if (dryRun) continue;
    const got = await claimHost(ctx.secrets, { host: c.host.name, address: c.host.address, port: c.host.port ?? 22, cluster: model.name, group: c.group });
    if (!got.ok) throw new ConflictError('HOST_CLAIMED', `host ${c.host.name} was claimed by cluster ${got.heldBy.cluster} (${got.heldBy.group}) while this run planned to use it`, { hint: 'run again: the next run picks other free hosts' });
    ctx.log.info(`Claimed host ${c.host.name} for ${c.group}`, { host: c.host.name, address: c.host.address });
  }
  for (const r of wanted.release) {
    plan.record({ resource: 'host-claim', name: r.host, action: 'delete', detail: `${r.group}: drained, reset and released by join-workers` });
    if (!dryRun && r.state !== 'releasing') await markReleasing(ctx.secrets, r);
  }

  const assigned = [...wanted.keep, ...wanted.claim];
  const connections = new HostConnections(await byohSshOptions(ctx, model.name, inventory, jumpHost));
  try {
    // Every host's key is checked before any host is changed: one wrong key stops the run with nothing done.
    await mapLimit(assigned, parallelismOf(ctx), ({ host }) => connections.get(targets.get(host.name)!));
    const prepared = await mapLimit(assigned, parallelismOf(ctx), async ({ group, host }) => {
      const shell = await connections.get(targets.get(host.name)!);
      const result = await prepareHost(shell, { kubernetesVersion: groupSpec(model, group).kubernetesVersion, ...(inventory.spec.packages ? { packages: inventory.spec.packages } : {}) }, { dryRun, log: ctx.log.child({ host: host.name }) });
      for (const change of result.changes) plan.record({ resource: 'host', name: host.name, action: 'update', detail: `${change.item}: ${change.detail}` });
      if (result.changes.length === 0) plan.record({ resource: 'host', name: host.name, action: 'no-change', detail: `${result.facts.os} ${result.facts.osVersion} ${result.facts.arch}, kubeadm ${result.facts.kubeadm ?? '-'}` });
      return { host: host.name, group, node: result.facts.hostname.toLowerCase(), iface: result.facts.defaultInterface, changes: result.changes.length };
    });
    // Leaving hosts keep their connection details (from this inventory, or the last run's if they left it).
    const previous = await readStepStatus<PreparedHostsStatus>(ctx.secrets, model.name, PREPARE_HOSTS_STEP);
    const known = new Map([...(previous?.leaving ?? []), ...(previous?.hosts ?? [])].map((h) => [h.host, h]));
    const leaving = wanted.release.flatMap((r) => {
      const h = known.get(r.host) ?? (targets.get(r.host) ? { host: r.host, group: r.group, node: r.host, target: targets.get(r.host)! } : undefined);
      return h ? [h] : [];
    });
    const status: PreparedHostsStatus = {
      revision: ctx.options.revision,
      hosts: prepared.map((p) => ({ host: p.host, group: p.group, node: p.node, ...(p.iface ? { iface: p.iface } : {}), target: targets.get(p.host)! })),
      ...(leaving.length > 0 ? { leaving } : {}),
      ...(jumpHost ? { jumpHost } : {}),
      ...(inventory.spec.sshKeySecretRef ? { sshKeySecretRef: inventory.spec.sshKeySecretRef } : {}),
    };
    if (dryRun) ctx.log.info(`Plan:\n${plan.format()}`);
    else await writeStepStatus(ctx.secrets, model.name, PREPARE_HOSTS_STEP, status);
    const counts = plan.counts();
    const keysSeen = await connections.keysSeen();
    if (keysSeen.length > 0) ctx.log.warn(`Trusted on first use; pin these keys in Git:\n${keysSeen.join('\n')}`);
    return {
      outputs: { hosts: JSON.stringify(prepared.map(({ host, group, node }) => ({ host, group, node }))), changes: String(counts.create + counts.update + counts.delete) },
      summary: { plan: counts, hostChanges: prepared.reduce((n, p) => n + p.changes, 0), commands: await connections.counts(), ...(keysSeen.length > 0 ? { suggestedHostKeys: keysSeen } : {}) },
    };
  } finally {
    await connections.closeAll();
  }
}

async function deleteHosts(ctx: StepContext) {
  const { clusterName, model } = await loadByohForDelete(ctx);
  const claims = await listClaims(ctx.secrets, clusterName);
  const plan = new Plan();
  for (const c of claims) plan.record({ resource: 'host-claim', name: c.host, action: 'delete', detail: `${c.group}: drain, kubeadm reset, release` });
  if (ctx.options.dryRun || claims.length === 0) {
    if (ctx.options.dryRun) ctx.log.info(`Plan:\n${plan.format()}`);
    return { outputs: { hosts: '[]', changes: String(claims.length) }, summary: { plan: plan.counts() } };
  }
  // Hosts claimed by a run that stopped before it wrote its status are found in the folder's inventory.
  const status = await readStepStatus<PreparedHostsStatus>(ctx.secrets, clusterName, PREPARE_HOSTS_STEP);
  const known = new Set(status?.hosts.map((h) => h.host));
  const fromFolder = model ? [...sshTargetsOf(model).targets.values()].filter((t) => !known.has(t.name)).map((t) => ({ host: t.name, group: claims.find((c) => c.host === t.name)?.group ?? '', node: t.name, target: t })) : [];
  const inventory = model?.hostInventory;
  const merged: PreparedHostsStatus | undefined = status || model ? { revision: status?.revision ?? ctx.options.revision, hosts: [...(status?.hosts ?? []), ...fromFolder], ...(status?.jumpHost ? { jumpHost: status.jumpHost } : model && sshTargetsOf(model).jumpHost ? { jumpHost: sshTargetsOf(model).jumpHost! } : {}), ...((status?.sshKeySecretRef ?? inventory?.spec.sshKeySecretRef) ? { sshKeySecretRef: (status?.sshKeySecretRef ?? inventory?.spec.sshKeySecretRef)! } : {}) } : undefined;
  const commands = await retireClaims(ctx, clusterName, claims, merged, { drainMustSucceed: false, parallelism: parallelismOf(ctx) });
  await removeStepStatus(ctx.secrets, clusterName, PREPARE_HOSTS_STEP);
  return { outputs: { hosts: '[]', changes: String(claims.length) }, summary: { plan: plan.counts(), released: claims.length, commands } };
}

function parallelismOf(ctx: StepContext): number {
  return Number(ctx.options.params.parallelism || 10);
}
