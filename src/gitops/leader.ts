/**
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules,
 * so that of several reconciler replicas exactly one submits Workflows. Every
 * write carries the resourceVersion it read: two candidates racing for a free
 * or expired lease cannot both win. A leader that cannot renew within the
 * renew deadline steps down before its lease can expire and be taken.
 */
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { InputError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { statusOf, wrapKubeError } from './kube.js';
import type { LeaderElector } from './types.js';

export const DEFAULT_LEASE_NAME = 'capflow-reconciler';

export interface LeaseLeaderElectorOptions {
  namespace: string;
  /** Lease name. Default capflow-reconciler. */
  name?: string;
  /** This replica, unique among candidates (e.g. the pod name). */
  identity: string;
  /** How long a lease holds without renewal before another replica may take it. Default 15. */
  leaseDurationSeconds?: number;
  /** How long the leader keeps trying to renew before it steps down. Default 10. */
  renewDeadlineSeconds?: number;
  /** How often to renew, or to try to acquire. Default 2. */
  retryPeriodSeconds?: number;
  log?: Logger;
}

type Attempt = { outcome: 'held' } | { outcome: 'taken'; holder: string } | { outcome: 'failed'; reason: string };

/** client-go's JitterFactor: candidates spread their attempts over 1 to 1.2 retry periods. */
const JITTER = 1.2;

export class LeaseLeaderElector implements LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly name: string;
  private readonly leaseSeconds: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;
  private readonly listeners: Array<(leading: boolean) => void> = [];
  private leading = false;
  private lastRenewMs = 0;
  private started = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    kc: KubeConfig,
    private readonly options: LeaseLeaderElectorOptions,
  ) {
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.name = options.name ?? DEFAULT_LEASE_NAME;
    this.leaseSeconds = options.leaseDurationSeconds ?? 15;
    this.renewDeadlineMs = (options.renewDeadlineSeconds ?? 10) * 1000;
    this.retryMs = (options.retryPeriodSeconds ?? 2) * 1000;
    if (!options.identity) throw new InputError('LEADER_IDENTITY_MISSING', 'leader election needs an identity (e.g. the pod name)');
    if (!(this.leaseSeconds * 1000 > this.renewDeadlineMs && this.renewDeadlineMs > JITTER * this.retryMs && this.retryMs > 0)) {
      throw new InputError(
        'LEADER_TIMING_INVALID',
        `leader election needs lease duration > renew deadline > ${JITTER} × retry period > 0 (got ${this.leaseSeconds}s, ${this.renewDeadlineMs / 1000}s, ${this.retryMs / 1000}s)`,
      );
    }
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.running = this.tick();
    await this.running;
  }

  isLeader(): boolean {
    return this.leading;
  }

  onChange(listener: (leading: boolean) => void): void {
    this.listeners.push(listener);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
    try {
      await this.release();
    } catch (err) {
      this.options.log?.warn('could not release the leader lease; it expires on its own', { lease: this.name, error: (err as Error).message });
    }
    this.setLeading(false);
  }

  private async tick(): Promise<void> {
    const attempt = await this.withDeadline(this.tryAcquireOrRenew());
    if (this.stopped) return;
    if (attempt.outcome === 'held') {
      this.lastRenewMs = Date.now();
      this.setLeading(true);
    } else if (this.leading && (attempt.outcome === 'taken' || Date.now() - this.lastRenewMs > this.renewDeadlineMs)) {
      this.options.log?.warn('leader lease lost', { lease: this.name, ...(attempt.outcome === 'taken' ? { holder: attempt.holder } : { reason: attempt.reason }) });
      this.setLeading(false);
    } else if (attempt.outcome === 'failed') {
      this.options.log?.debug('leader lease attempt failed', { lease: this.name, reason: attempt.reason });
    }
    const wait = this.leading ? this.retryMs : this.retryMs * (1 + Math.random() * (JITTER - 1));
    this.timer = setTimeout(() => {
      this.running = this.tick();
    }, wait);
    this.timer.unref();
  }

  /** An API call that hangs must not keep a leader leading past its renew deadline. */
  private async withDeadline(attempt: Promise<Attempt>): Promise<Attempt> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<Attempt>((resolve) => {
      timer = setTimeout(() => resolve({ outcome: 'failed', reason: 'timed out' }), this.renewDeadlineMs);
      timer.unref();
    });
    try {
      const failed = (err: unknown): Attempt => {
        // an API error (RBAC, unreachable) is worth a warning each time; losing a race is not
        this.options.log?.warn('leader lease call failed', { lease: this.name, error: (err as Error).message, hint: (err as { hint?: string }).hint });
        return { outcome: 'failed', reason: (err as Error).message.split('\n')[0] ?? '' };
      };
      return await Promise.race([attempt.catch(failed), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async tryAcquireOrRenew(): Promise<Attempt> {
    const { namespace, identity } = this.options;
    const now = new V1MicroTime(Date.now());
    const lease = await this.read();
    if (!lease) {
      try {
        await this.api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name: this.name, namespace },
            spec: { holderIdentity: identity, leaseDurationSeconds: this.leaseSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
          },
        });
        return { outcome: 'held' };
      } catch (err) {
        if (statusOf(err) === 409) return { outcome: 'failed', reason: 'another candidate created the lease first' };
        throw wrapKubeError(err, `creating Lease ${namespace}/${this.name}`, { verb: 'create', resource: 'leases.coordination.k8s.io', namespace });
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const renewedMs = spec.renewTime ? new Date(spec.renewTime).getTime() : 0;
    const expired = renewedMs + (spec.leaseDurationSeconds ?? this.leaseSeconds) * 1000 < now.getTime();
    if (holder !== '' && holder !== identity && !expired) return { outcome: 'taken', holder };
    const takeover = holder !== identity;
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: this.leaseSeconds,
      renewTime: now,
      acquireTime: takeover ? now : (spec.acquireTime ?? now),
      leaseTransitions: (spec.leaseTransitions ?? 0) + (takeover ? 1 : 0),
    };
    if (takeover) this.options.log?.info('taking the leader lease', { lease: this.name, from: holder || '(released)', expired });
    return (await this.replace(lease)) ? { outcome: 'held' } : { outcome: 'failed', reason: 'the lease changed since it was read' };
  }

  /** Clears the holder so that another replica acquires at once, not after the lease expires. */
  private async release(): Promise<void> {
    const lease = await this.read();
    if (!lease?.spec || lease.spec.holderIdentity !== this.options.identity) return;
    const now = new V1MicroTime(Date.now());
    lease.spec = { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, renewTime: now };
    if (await this.replace(lease)) this.options.log?.info('released the leader lease', { lease: this.name });
  }

  private async read(): Promise<V1Lease | undefined> {
    const { namespace } = this.options;
    try {
      return await this.api.readNamespacedLease({ name: this.name, namespace });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw wrapKubeError(err, `reading Lease ${namespace}/${this.name}`, { verb: 'get', resource: 'leases.coordination.k8s.io', namespace });
    }
  }

  /** Replaces at the version read; false when someone else wrote in between. */
  private async replace(lease: V1Lease): Promise<boolean> {
    const { namespace } = this.options;
    try {
      await this.api.replaceNamespacedLease({ name: this.name, namespace, body: lease });
      return true;
    } catch (err) {
      if (statusOf(err) === 409) return false;
      throw wrapKubeError(err, `updating Lease ${namespace}/${this.name}`, { verb: 'update', resource: 'leases.coordination.k8s.io', namespace });
    }
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    this.options.log?.info(leading ? 'became the leader' : 'no longer the leader', { lease: this.name, identity: this.options.identity });
    for (const listener of this.listeners) {
      try {
        listener(leading);
      } catch (err) {
        this.options.log?.error('leadership listener failed', { error: (err as Error).message });
      }
    }
  }
}
