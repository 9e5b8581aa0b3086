/**
 * What the kubelet stand-in's API loops share: clients made from kubelet.conf (made again when the
 * file changes), the stop flag, sleeps that stop() and events cut short, and failure reports that
 * name a failure once until it changes.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CoordinationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { TransientError } from '../../core/errors.js';
import { wrapKubeError } from '../../core/kube-errors.js';
import type { KubeletLog } from './kubelet-log.js';

export interface ApiClients {
  core: CoreV1Api;
  leases: CoordinationV1Api;
  kc: KubeConfig;
}

/** Sleepers are woken by group: node status sleeps are cut short when the static pods change. */
export type WakeGroup = 'status' | 'other';

export class ApiSession {
  readonly log: KubeletLog;
  private clients: ApiClients | undefined;
  private kubeconfigStamp = '';
  private isStopped = false;
  private readonly sleepers: Record<WakeGroup, Set<() => void>> = { status: new Set(), other: new Set() };
  /** What failed, by what was being done, so a retry loop does not flood the log. */
  private readonly failures = new Map<string, string>();

  constructor(
    private readonly kubeletConf: string,
    /** Between retries of a failed call, and how often files are checked. */
    readonly retryMs: number,
    log: KubeletLog | undefined,
  ) {
    this.log = log ?? (() => {});
  }

  get stopped(): boolean {
    return this.isStopped;
  }

  /** Every loop ends at its next check; every sleep ends now. */
  stop(): void {
    this.isStopped = true;
    this.wake('status');
    this.wake('other');
  }

  /** kubelet.conf is read again when it changes (kubeadm's kubelet-finalize rewrites it). */
  reloadClientsIfChanged(): void {
    let text: string;
    try {
      text = readFileSync(this.kubeletConf, 'utf8');
    } catch {
      return;
    }
    const stamp = createHash('sha256').update(text).digest('hex');
    if (stamp === this.kubeconfigStamp && this.clients) return;
    try {
      const kc = new KubeConfig();
      kc.loadFromFile(this.kubeletConf);
      this.clients = { kc, core: kc.makeApiClient(CoreV1Api), leases: kc.makeApiClient(CoordinationV1Api) };
      if (this.kubeconfigStamp) this.log('Reloaded kubelet.conf', { kubeconfig: this.kubeletConf });
      this.kubeconfigStamp = stamp;
    } catch (err) {
      this.report('loading kubelet.conf', err);
    }
  }

  requireClients(): ApiClients {
    if (!this.clients) throw new TransientError('KUBELET_NO_KUBECONFIG', `no usable kubeconfig at ${this.kubeletConf}`);
    return this.clients;
  }

  /** Logs a failure once until it changes. */
  report(doing: string, err: unknown): void {
    const message = wrapKubeError(err, doing).message;
    if (this.failures.get(doing) === message) return;
    this.failures.set(doing, message);
    this.log('Retrying after a failure', { doing, error: message });
  }

  /** What was being done works again: its next failure is logged. */
  recovered(doing: string): void {
    this.failures.delete(doing);
  }

  sleep(ms: number, group: WakeGroup): Promise<void> {
    if (this.isStopped) return Promise.resolve();
    const sleepers = this.sleepers[group];
    return new Promise((resolveSleep) => {
      const done = (): void => {
        clearTimeout(timer);
        sleepers.delete(done);
        resolveSleep();
      };
      const timer = setTimeout(done, ms);
      sleepers.add(done);
    });
  }

  wake(group: WakeGroup): void {
    for (const wake of [...this.sleepers[group]]) wake();
  }
}
