/**
 * The kubelet stand-in's Node: registration with the kubelet's default labels plus --node-labels,
 * --register-with-taints, --provider-id and the external cloud provider's taint (a Node that exists
 * already is adopted as it is: the kubelet does not reapply taints or labels to it); then node
 * status (strategic merge patch, every status interval or on change) and the Lease in
 * kube-node-lease. Ready stays False until a CNI config file appears in the CNI directory, as a CNI
 * DaemonSet's init container writes it (process-pods.ts runs host-network pods' init containers).
 */
import { existsSync, readdirSync } from 'node:fs';
import { PatchStrategy, V1MicroTime, setHeaderOptions, type V1Lease, type V1Node, type V1OwnerReference, type V1Taint } from '@kubernetes/client-node';
import { InputError } from '../../core/errors.js';
import { statusOf } from '../../core/kube-errors.js';
import type { ApiSession } from './api-session.js';
import { goArch, machineStatus, type MachineFactsOptions } from './machine-facts.js';

export interface NodeReporterOptions extends MachineFactsOptions {
  /** The node's address when --node-ip does not give one. */
  nodeIp: string;
  /** Kubelet flags by name without dashes: node-labels, register-with-taints, node-ip, provider-id, cloud-provider. */
  flags: ReadonlyMap<string, string>;
  /** /etc/cni/net.d */
  cniConfDir: string;
  /** While this file exists, no status update and no Lease renewal (NodeApiPaths.stopReportingFile). */
  stopReportingFile?: string;
  nodeLeaseDurationSeconds: number | undefined;
  /** Default 10 000 (a quarter of the lease duration, as the kubelet renews). */
  leaseRenewIntervalMs: number | undefined;
  /** The kubelet server's port (the configuration's `port`), status.daemonEndpoints. Default 10250. */
  kubeletPort?: number;
}

export interface NodeRegistration {
  labels: Record<string, string>;
  taints: V1Taint[];
  nodeIp: string;
  providerID: string | undefined;
}

const LEASE_NAMESPACE = 'kube-node-lease';
const EXTERNAL_CLOUD_TAINT = 'node.cloudprovider.kubernetes.io/uninitialized';
const NETWORK_NOT_READY =
  'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized';

const strategicMerge = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

/** Registers the Node, then keeps its status and Lease fresh. */
export class NodeReporter {
  readonly name: string;
  private readonly reg: NodeRegistration;
  /** The parts of node status that do not change while the kubelet runs. */
  private readonly machine: Record<string, unknown>;
  private nodeUid: string | undefined;
  private nodePodCIDR: string | undefined;
  /** Condition type -> its status and when that status began. */
  private readonly conditionSince = new Map<string, { status: string; since: Date }>();
  private lastStatus = { at: 0, signature: '' };
  private lease: V1Lease | undefined;

  constructor(
    private readonly session: ApiSession,
    private readonly opts: NodeReporterOptions,
  ) {
    this.name = opts.nodeName;
    this.reg = registrationFromFlags(opts.nodeName, opts.nodeIp, opts.flags);
    this.machine = machineStatus(opts);
  }

  /** The registered Node's UID, once registered. */
  get uid(): string | undefined {
    return this.nodeUid;
  }

  /** The Node's spec.podCIDR as last seen. */
  get podCIDR(): string | undefined {
    return this.nodePodCIDR;
  }

  /** The node's InternalIP. */
  get ip(): string {
    return this.reg.nodeIp;
  }

  ownerRefs(controller: boolean): V1OwnerReference[] {
    return [{ apiVersion: 'v1', kind: 'Node', name: this.name, uid: this.nodeUid ?? '', ...(controller ? { controller: true } : {}) }];
  }

  async register(): Promise<void> {
    const node: V1Node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: this.name,
        labels: this.reg.labels,
        annotations: { 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' },
      },
      spec: {
        ...(this.reg.taints.length > 0 ? { taints: this.reg.taints } : {}),
        ...(this.reg.providerID ? { providerID: this.reg.providerID } : {}),
      },
    };
    const { session } = this;
    session.log('Registering node', { node: this.name, labels: this.reg.labels, taints: this.reg.taints.map(taintText) });
    while (!session.stopped) {
      session.reloadClientsIfChanged();
      try {
        const { core } = session.requireClients();
        try {
          const created = await core.createNode({ body: node });
          this.adoptNode(created);
          session.log('Registered node', { node: this.name, uid: this.nodeUid });
        } catch (err) {
          if (statusOf(err) !== 409) throw err;
          this.adoptNode(await core.readNode({ name: this.name }));
          session.log('Node was registered before; adopting it', { node: this.name, uid: this.nodeUid });
        }
        session.recovered('registering node');
        return;
      } catch (err) {
        session.report('registering node', err);
      }
      await session.sleep(session.retryMs, 'other');
    }
  }

  /** Patches node status when it changed (heartbeat times aside) or intervalMs passed since the last patch. */
  async reportStatus(now: number, intervalMs: number): Promise<void> {
    if (this.reportingStopped()) return;
    const status = this.nodeStatus();
    const signature = JSON.stringify(status, (k, v: unknown) => (k === 'lastHeartbeatTime' ? undefined : v));
    if (signature === this.lastStatus.signature && now - this.lastStatus.at < intervalMs) return;
    try {
      const { core } = this.session.requireClients();
      const node = await core.patchNodeStatus({ name: this.name, body: { status } }, strategicMerge);
      if (node.spec?.podCIDR !== this.nodePodCIDR) this.nodePodCIDR = node.spec?.podCIDR;
      this.lastStatus = { at: now, signature };
      this.session.recovered('updating node status');
    } catch (err) {
      this.session.report('updating node status', err);
    }
  }

  async leaseLoop(): Promise<void> {
    const renewMs = this.opts.leaseRenewIntervalMs ?? 10_000;
    const { session } = this;
    while (!session.stopped) {
      try {
        if (!this.reportingStopped()) await this.renewLease();
        session.recovered('renewing the node lease');
      } catch (err) {
        this.lease = undefined;
        session.report('renewing the node lease', err);
      }
      await session.sleep(this.lease ? renewMs : Math.min(renewMs, session.retryMs), 'other');
    }
  }

  private reportingStopped(): boolean {
    return this.opts.stopReportingFile !== undefined && existsSync(this.opts.stopReportingFile);
  }

  private adoptNode(node: V1Node): void {
    this.nodeUid = node.metadata?.uid;
    this.nodePodCIDR = node.spec?.podCIDR;
  }

  private nodeStatus(): Record<string, unknown> {
    const now = new Date();
    const networkReady = hasCniConfig(this.opts.cniConfDir);
    const condition = (type: string, status: 'True' | 'False', reason: string, message: string): Record<string, string> => {
      let seen = this.conditionSince.get(type);
      if (seen?.status !== status) {
        if (type === 'Ready') this.session.log(status === 'True' ? 'Node is ready' : 'Node is not ready', { node: this.name, reason });
        seen = { status, since: now };
        this.conditionSince.set(type, seen);
      }
      return { type, status, reason, message, lastHeartbeatTime: now.toISOString(), lastTransitionTime: seen.since.toISOString() };
    };
    return {
      conditions: [
        condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
        condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        networkReady
          ? condition('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status')
          : condition('Ready', 'False', 'KubeletNotReady', NETWORK_NOT_READY),
      ],
      addresses: [
        { type: 'InternalIP', address: this.reg.nodeIp },
        { type: 'Hostname', address: this.name },
      ],
      ...this.machine,
      daemonEndpoints: { kubeletEndpoint: { Port: this.opts.kubeletPort ?? 10250 } },
    };
  }

  private async renewLease(): Promise<void> {
    const { leases } = this.session.requireClients();
    const spec = { holderIdentity: this.name, leaseDurationSeconds: this.opts.nodeLeaseDurationSeconds ?? 40, renewTime: new V1MicroTime() };
    let current = this.lease;
    if (!current) {
      try {
        current = await leases.readNamespacedLease({ name: this.name, namespace: LEASE_NAMESPACE });
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
        this.lease = await leases.createNamespacedLease({
          namespace: LEASE_NAMESPACE,
          body: { metadata: { name: this.name, namespace: LEASE_NAMESPACE, ownerReferences: this.ownerRefs(false) }, spec },
        });
        return;
      }
    }
    this.lease = await leases.replaceNamespacedLease({
      name: this.name,
      namespace: LEASE_NAMESPACE,
      body: { ...current, spec: { ...current.spec, ...spec } },
    });
  }
}

/** The Node's labels, taints, address and provider ID from the kubelet's flags. */
export function registrationFromFlags(nodeName: string, nodeIp: string, flags: ReadonlyMap<string, string>): NodeRegistration {
  const arch = goArch();
  const labels: Record<string, string> = {
    'beta.kubernetes.io/arch': arch,
    'beta.kubernetes.io/os': 'linux',
    'kubernetes.io/arch': arch,
    'kubernetes.io/hostname': nodeName,
    'kubernetes.io/os': 'linux',
  };
  for (const pair of splitList(flags.get('node-labels'))) {
    const eq = pair.indexOf('=');
    if (eq > 0) labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const taints = splitList(flags.get('register-with-taints')).map(parseTaint);
  if (flags.get('cloud-provider') === 'external') taints.push({ key: EXTERNAL_CLOUD_TAINT, value: 'true', effect: 'NoSchedule' });
  return {
    labels,
    taints,
    nodeIp: splitList(flags.get('node-ip'))[0] ?? nodeIp,
    providerID: flags.get('provider-id') || undefined,
  };
}

/** `key=value:Effect` or `key:Effect`, as --register-with-taints takes them. */
function parseTaint(text: string): V1Taint {
  const colon = text.lastIndexOf(':');
  const effect = colon >= 0 ? text.slice(colon + 1) : '';
  if (!['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(effect)) {
    throw new InputError('KUBELET_INVALID_TAINT', `invalid taint "${text}" in --register-with-taints: the effect must be NoSchedule, PreferNoSchedule or NoExecute`);
  }
  const keyValue = text.slice(0, colon);
  const eq = keyValue.indexOf('=');
  return eq >= 0 ? { key: keyValue.slice(0, eq), value: keyValue.slice(eq + 1), effect } : { key: keyValue, effect };
}

function taintText(t: V1Taint): string {
  return `${t.key}${t.value ? `=${t.value}` : ''}:${t.effect}`;
}

function splitList(text: string | undefined): string[] {
  return (text ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

function hasCniConfig(dir: string): boolean {
  try {
    // the file types libcni loads
    return readdirSync(dir).some((f) => /\.(conf|conflist|json)$/.test(f));
  } catch {
    return false;
  }
}
