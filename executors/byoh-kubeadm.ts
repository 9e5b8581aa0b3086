/**
 * kubeadm-init and join-workers on bring-your-own hosts: the same bootstrap (PKI, kubeconfig, join
 * token, cloud-config) as on EC2, carried out over SSH on the hosts prepare-hosts claimed.
 * init: the first control plane host runs `kubeadm init` (with kube-vip's static pod when the
 * inventory says kube-vip), then the API must answer /readyz at the cluster's endpoint with our CA.
 * join: the other control planes join one at a time, workers in parallel; every host's Node must be
 * Ready; hosts the spec no longer wants are drained, reset and released; the join token retires.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { StepContext, StepResult } from '../src/core/executor.js';
import { InputError, TransientError } from '../src/core/errors.js';
import { mapLimit } from '../src/core/concurrency.js';
import { removeStepStatus, writeStepStatus } from '../src/core/status.js';
import { Plan } from '../src/aws/plan.js';
import type { WriteFile } from '../src/bootstrap/cloud-config.js';
import { CAPI_CLUSTER_ANNOTATION, GROUP_LABEL, MACHINE_LABEL, WORKER_ROLE_LABEL } from '../src/bootstrap/join.js';
import { retireJoinToken } from '../src/bootstrap/join-token.js';
import { CONTROL_PLANE_GROUP } from '../src/bootstrap/machine-data.js';
import { listNodes, markNode } from '../src/bootstrap/nodes.js';
import { clusterSecretName } from '../src/bootstrap/pki.js';
import { BootstrapSession } from '../src/bootstrap/session.js';
import { listClaims } from '../src/hosts/claims.js';
import { HostConnections, inventoryOf } from '../src/hosts/inventory.js';
import { hostKubeState, runBootstrap } from '../src/hosts/kubeadm.js';
import { KUBE_VIP_IMAGE, kubeVipKubeconfigPath, kubeVipManifest } from '../src/hosts/kube-vip.js';
import { waitForApiServer } from './aws-step.js';
import { byohSshOptions, requirePreparedHosts, retireClaims, type ByohClusterModel, type PreparedHostsStatus } from './byoh-step.js';

const KUBE_VIP_MANIFEST = '/etc/kubernetes/manifests/kube-vip.yaml';

function sessionFor(ctx: StepContext, model: ByohClusterModel, plan: Plan): BootstrapSession {
  const session = new BootstrapSession({ store: ctx.secrets, model, scope: { dryRun: ctx.options.dryRun, plan, signal: ctx.signal }, apiServerDns: '', log: ctx.log });
  if (!session.endpoint.host) throw new InputError('CONTROL_PLANE_ENDPOINT_MISSING', `cluster ${model.name}: ByoCluster.spec.controlPlaneEndpoint.host is empty`, { hint: 'set the API address: the kube-vip address, or your load balancer\'s' });
  return session;
}

/** kube-vip's static pod for a control plane host, when the inventory asks for kube-vip. */
function kubeVipFiles(model: ByohClusterModel, session: BootstrapSession, phase: 'init' | 'join', iface: string | undefined): WriteFile[] {
  const lb = inventoryOf(model).spec.apiServerLoadBalancer;
  if ((lb?.type ?? 'kube-vip') !== 'kube-vip') return [];
  const content = kubeVipManifest({
    address: session.endpoint.host,
    port: session.endpoint.port,
    ...((lb?.interface ?? iface) ? { interface: (lb?.interface ?? iface)! } : {}),
    image: lb?.image ?? KUBE_VIP_IMAGE,
    kubeconfigPath: kubeVipKubeconfigPath(model.kubernetesVersion, phase),
  });
  return [{ path: KUBE_VIP_MANIFEST, owner: 'root:root', permissions: '0600', content }];
}

export async function byohInit(ctx: StepContext, model: ByohClusterModel, o: { pollMs: number; timeoutMs: number }): Promise<StepResult> {
  const plan = new Plan();
  const session = sessionFor(ctx, model, plan);
  const prepared = await requirePreparedHosts(ctx, model.name);
  const first = prepared.hosts.filter((h) => h.group === CONTROL_PLANE_GROUP).sort((a, b) => a.host.localeCompare(b.host))[0];
  if (!first) throw new InputError('BYOH_CONTROL_PLANE_HOST_MISSING', `cluster ${model.name} holds no control plane host`, { hint: 'run prepare-hosts: it claims the hosts the control plane template selects' });
  const kubeconfigSecret = ctx.options.dryRun ? clusterSecretName(model.name, 'kubeconfig') : await session.ensureKubeconfig();
  const outputs = { 'kubeconfig-secret': kubeconfigSecret, 'api-server': session.server };
  const check = async () => {
    const readyz = await session.readyz();
    return readyz.ready ? session.initialized() : readyz;
  };
  let answer = await check();
  const connections = new HostConnections(await byohSshOptions(ctx, model.name, inventoryOf(model), prepared.jumpHost));
  try {
    if (answer.ready) {
      const live = await session.liveVersion();
      if (live) session.refuseVersionSkew(live);
      plan.record({ resource: 'control-plane', name: session.server, action: 'no-change', detail: `API server ${live ?? ''} ready with the cluster CA`.replace('  ', ' ') });
    } else {
      const shell = await connections.get(first.target);
      const state = await hostKubeState(shell);
      plan.record({ resource: 'control-plane', name: first.host, action: state === 'node' ? 'no-change' : 'create', detail: state === 'node' ? `kubeadm init done; waiting: ${answer.detail}` : `kubeadm init on ${first.host}` });
      if (ctx.options.dryRun) {
        ctx.log.info(`Plan:\n${plan.format()}`);
        return { outputs, summary: { plan: plan.counts() } };
      }
      if (state !== 'node') {
        const config = await session.cloudConfig(CONTROL_PLANE_GROUP, 'init');
        const vip = kubeVipFiles(model, session, 'init', first.iface);
        // kube-vip needs super-admin.conf until init binds admin.conf; then it goes back to admin.conf.
        if (vip.length > 0 && /super-admin\.conf/.test(vip[0]!.content)) config.runcmd.push(`sed -i 's#/etc/kubernetes/super-admin.conf#/etc/kubernetes/admin.conf#' ${KUBE_VIP_MANIFEST}`);
        ctx.log.info(`kubeadm init on ${first.host}`, { host: first.host, endpoint: session.server });
        await runBootstrap(shell, config, { what: 'kubeadm init', log: ctx.log, extraFiles: vip });
      }
      answer = await waitForApiServer(ctx, session.server, check, answer, { ...o, hint: 'look at the control plane host: journalctl -u kubelet, crictl ps; run again to keep waiting' });
    }
    if (ctx.options.dryRun) ctx.log.info(`Plan:\n${plan.format()}`);
    else await writeStepStatus(ctx.secrets, model.name, 'kubeadm-init', { revision: ctx.options.revision, server: session.server, kubeconfigSecret, host: first.host });
    return { outputs, summary: { plan: plan.counts(), commands: await connections.counts() } };
  } finally {
    await connections.closeAll();
  }
}

/** kubeadm-init --delete of a BYOH cluster: its join token, kubeconfig and status (the hosts are prepare-hosts'). */
export async function byohInitDelete(ctx: StepContext, clusterName: string): Promise<StepResult> {
  if (!ctx.options.dryRun) {
    await retireJoinToken(ctx.secrets, undefined, clusterName);
    await ctx.secrets.delete(clusterSecretName(clusterName, 'kubeconfig'));
    await removeStepStatus(ctx.secrets, clusterName, 'kubeadm-init');
  }
  return { outputs: { 'kubeconfig-secret': '', 'api-server': '' } };
}

export async function byohJoin(ctx: StepContext, model: ByohClusterModel, o: { pollMs: number; timeoutMs: number; drainTimeoutMs: number }): Promise<StepResult> {
  const plan = new Plan();
  const session = sessionFor(ctx, model, plan);
  const prepared = await requirePreparedHosts(ctx, model.name);
  if (!(await ctx.secrets.get(clusterSecretName(model.name, 'kubeconfig')))) {
    throw new InputError('BOOTSTRAP_MISSING', `cluster ${model.name} has no API server yet (no ${clusterSecretName(model.name, 'kubeconfig')})`, { hint: 'run kubeadm-init first' });
  }
  const parallelism = Number(ctx.options.params.parallelism || 10);
  const connections = new HostConnections(await byohSshOptions(ctx, model.name, inventoryOf(model), prepared.jumpHost));
  try {
    const states = new Map(await mapLimit(prepared.hosts, parallelism, async (h) => [h.host, await hostKubeState(await connections.get(h.target))] as const));
    const pending = prepared.hosts.filter((h) => states.get(h.host) !== 'node');
    for (const h of prepared.hosts) plan.record({ resource: 'node', name: h.node, action: states.get(h.host) === 'node' ? 'no-change' : 'create', detail: `${h.group} on ${h.host}` });
    const releasing = (await listClaims(ctx.secrets, model.name)).filter((c) => c.state === 'releasing');
    for (const c of releasing) plan.record({ resource: 'host', name: c.host, action: 'delete', detail: `${c.group}: drain, kubeadm reset, release` });
    if (ctx.options.dryRun) {
      ctx.log.info(`Plan:\n${plan.format()}`);
      return { outputs: { nodes: '[]', ready: `${prepared.hosts.length - pending.length}/${prepared.hosts.length}` }, summary: { plan: plan.counts() } };
    }

    const join = async (h: PreparedHostsStatus['hosts'][number]) => {
      const controlPlane = h.group === CONTROL_PLANE_GROUP;
      const config = await session.cloudConfig(h.group, controlPlane ? 'control-plane-join' : 'worker-join');
      ctx.log.info(`kubeadm join on ${h.host}`, { host: h.host, group: h.group });
      await runBootstrap(await connections.get(h.target), config, { what: controlPlane ? 'kubeadm join (control plane)' : 'kubeadm join', log: ctx.log, extraFiles: controlPlane ? kubeVipFiles(model, session, 'join', h.iface) : [] });
    };
    // Control planes one at a time (each grows etcd), then the workers together.
    for (const h of pending.filter((p) => p.group === CONTROL_PLANE_GROUP)) await join(h);
    await mapLimit(pending.filter((p) => p.group !== CONTROL_PLANE_GROUP), parallelism, join);

    const core = await session.core();
    const started = Date.now();
    let lastSaid = 0;
    for (;;) {
      const nodes = await listNodes(core).catch(() => undefined);
      const notReady = prepared.hosts.filter((h) => !nodes?.get(h.node)?.ready);
      if (notReady.length === 0 && nodes) {
        let labelled = 0;
        for (const h of prepared.hosts) {
          const labels: Record<string, string> = { [MACHINE_LABEL]: h.host, [GROUP_LABEL]: h.group, ...(h.group === CONTROL_PLANE_GROUP ? {} : { [WORKER_ROLE_LABEL]: '' }) };
          if (await markNode(core, nodes.get(h.node)!, labels, { [CAPI_CLUSTER_ANNOTATION]: model.name })) labelled += 1;
        }
        ctx.log.info(`Nodes Ready ${prepared.hosts.length}/${prepared.hosts.length}`, { after: `${Math.round((Date.now() - started) / 1000)}s`, labelled });
        break;
      }
      if (Date.now() - started > o.timeoutMs) {
        throw new TransientError('NODES_NOT_READY', `${notReady.length} of ${prepared.hosts.length} nodes not Ready within ${Math.round(o.timeoutMs / 1000)}s: ${notReady.map((h) => `${h.node} (${nodes?.get(h.node)?.reason ?? 'not registered'})`).join(', ')}`, { hint: 'look at the host: journalctl -u kubelet; run again to keep waiting' });
      }
      if (Date.now() - lastSaid >= 15_000) {
        ctx.log.info(`Nodes Ready ${prepared.hosts.length - notReady.length}/${prepared.hosts.length}`, { waiting: notReady.map((h) => h.node).join(', ') });
        lastSaid = Date.now();
      }
      await delay(o.pollMs, undefined, { signal: ctx.signal });
    }

    // The new hosts are in: the ones the spec let go leave now.
    await retireClaims(ctx, model.name, releasing, prepared, { drainMustSucceed: true, parallelism, drainTimeoutMs: o.drainTimeoutMs });
    if (await retireJoinToken(ctx.secrets, core, model.name)) ctx.log.info('Retired the join token: every host joined');
    const nodes = prepared.hosts.map((h) => ({ name: h.node, machine: h.host, group: h.group, ready: true }));
    ctx.log.info(`Nodes:\n${nodes.map((n) => `${n.name}  ${n.group}  ${n.machine}  Ready`).join('\n')}`);
    return {
      outputs: { nodes: JSON.stringify(nodes), ready: `${nodes.length}/${nodes.length}` },
      summary: { nodes: nodes.length, joined: pending.length, released: releasing.length, commands: await connections.counts() },
    };
  } finally {
    await connections.closeAll();
  }
}

