/**
 * The kubelet stand-in's API side, done for real against the API server with the node's own
 * credentials. kubeadm clusters run the Node authorizer and NodeRestriction admission, so it makes
 * only the calls a node may make. In order: credentials (tls-bootstrap.ts), registration
 * (node-status.ts), then three loops until stopped: node status with the mirror pods, the Lease
 * (node-status.ts), and the watch of pods bound to the node (pods.ts, which runs the process pods
 * of process-pods.ts).
 */
import { ApiSession } from './api-session.js';
import type { ContainerLogAnswer } from './kubelet-server.js';
import type { KubeletLog } from './kubelet-log.js';
import { NodeReporter } from './node-status.js';
import { NodePods } from './pods.js';
import type { ProcessPodsOptions } from './process-pods.js';
import type { StaticPodStatus } from './static-pods.js';
import { ensureCredentials, type CredentialPaths } from './tls-bootstrap.js';

export interface NodeApiPaths extends CredentialPaths {
  /** /etc/cni/net.d */
  cniConfDir: string;
  /** /etc/os-release, for status.nodeInfo.osImage. */
  osRelease?: string;
  /**
   * A test hook: while this file exists the Node's status and Lease are not renewed (a kubelet cut
   * off from the API server, for health check tests); its pods keep running.
   */
  stopReportingFile?: string;
}

export interface NodeApiOptions {
  nodeName: string;
  /** The node's address when --node-ip does not give one. */
  nodeIp: string;
  /** kubeletVersion, e.g. v1.34.4. */
  version: string;
  paths: NodeApiPaths;
  /** Kubelet flags by name without dashes (last value wins): node-labels, register-with-taints, node-ip, provider-id, cloud-provider. */
  flags?: ReadonlyMap<string, string>;
  /** From the KubeletConfiguration. */
  maxPods?: number;
  nodeLeaseDurationSeconds?: number;
  /** The static pods to mirror. */
  staticPods?: () => StaticPodStatus[];
  /** How process pods run: the machine's binaries, the log directory, the crash backoff. */
  processPods: ProcessPodsOptions;
  /** The kubelet server's port, reported in node status. Default 10250. */
  kubeletPort?: number;
  /** Node status at least this often. Default 10 000. */
  statusIntervalMs?: number;
  /** Default 10 000 (a quarter of the lease duration, as the kubelet renews). */
  leaseRenewIntervalMs?: number;
  /** Between retries of a failed call, and how often files (kubelet.conf, the CNI directory) are checked. Default 1000. */
  retryIntervalMs?: number;
  log?: KubeletLog;
}

export class NodeApi {
  private readonly session: ApiSession;
  private readonly node: NodeReporter;
  private readonly pods: NodePods;
  private readonly tasks: Array<Promise<void>> = [];

  constructor(private readonly opts: NodeApiOptions) {
    this.session = new ApiSession(opts.paths.kubeletConf, opts.retryIntervalMs ?? 1000, opts.log);
    this.node = new NodeReporter(this.session, {
      nodeName: opts.nodeName,
      nodeIp: opts.nodeIp,
      version: opts.version,
      flags: opts.flags ?? new Map(),
      maxPods: opts.maxPods ?? 110,
      osRelease: opts.paths.osRelease,
      cniConfDir: opts.paths.cniConfDir,
      ...(opts.paths.stopReportingFile ? { stopReportingFile: opts.paths.stopReportingFile } : {}),
      nodeLeaseDurationSeconds: opts.nodeLeaseDurationSeconds,
      leaseRenewIntervalMs: opts.leaseRenewIntervalMs,
      kubeletPort: opts.kubeletPort,
    });
    this.pods = new NodePods(this.session, this.node, opts.staticPods ?? (() => []), opts.processPods);
  }

  start(): void {
    this.tasks.push(this.run());
  }

  /** The static pods changed: mirror pods are brought up to date at once. */
  staticPodsChanged(): void {
    this.pods.staticPodsChanged();
  }

  /** The registered Node's UID, once registered. */
  get registeredUid(): string | undefined {
    return this.node.uid;
  }

  /** A container log of a pod bound to the node (not a mirror pod); undefined when there is no such pod. */
  containerLog(namespace: string, pod: string, container: string, previous: boolean): ContainerLogAnswer | undefined {
    return this.pods.containerLog(namespace, pod, container, previous);
  }

  async stop(): Promise<void> {
    this.session.stop();
    this.pods.stop();
    await this.pods.stopProcesses();
    // a call in flight against a hung API server must not hold the machine's shutdown
    await Promise.race([Promise.allSettled(this.tasks), new Promise((r) => setTimeout(r, 5000).unref())]);
  }

  private async run(): Promise<void> {
    await ensureCredentials(this.session, this.opts.paths, this.opts.nodeName);
    if (this.session.stopped) return;
    this.session.reloadClientsIfChanged();
    await this.node.register();
    if (this.session.stopped) return;
    this.tasks.push(this.node.leaseLoop(), this.pods.watchLoop());
    await this.statusLoop();
  }

  /** Node status, then the mirror pods, every retry interval; cut short when the static pods change. */
  private async statusLoop(): Promise<void> {
    const statusMs = this.opts.statusIntervalMs ?? 10_000;
    const { session } = this;
    while (!session.stopped) {
      session.reloadClientsIfChanged();
      const now = Date.now();
      await this.node.reportStatus(now, statusMs);
      await this.pods.syncIfDue(now, statusMs);
      await session.sleep(session.retryMs, 'status');
    }
  }
}
