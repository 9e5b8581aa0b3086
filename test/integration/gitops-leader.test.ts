import { expect } from 'chai';
import { CoordinationV1Api, CoreV1Api, KubeConfig, V1MicroTime, type V1Lease } from '@kubernetes/client-node';
import { isCapflowError } from '../../src/core/errors.js';
import { LeaseLeaderElector, type LeaseLeaderElectorOptions } from '../../src/gitops/leader.js';
import { runChildScript } from '../support/child-script.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';
import { startRelay } from '../support/tcp-relay.js';
import { REPO_ROOT } from '../support/tools.js';

const NS = 'capflow-system';
// short timings so that the tests take seconds: lease 2 s, renew deadline 1.5 s, retry 0.2 s
const FAST = { leaseDurationSeconds: 2, renewDeadlineSeconds: 1.5, retryPeriodSeconds: 0.2 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
  return Date.now() - started;
}

/** An elector that records every leadership change with its time. */
function candidate(kc: KubeConfig, identity: string, name: string, over: Partial<LeaseLeaderElectorOptions> = {}) {
  const changes: Array<{ leading: boolean; at: number }> = [];
  const elector = new LeaseLeaderElector(kc, { namespace: NS, name, identity, ...FAST, ...over });
  elector.onChange((leading) => changes.push({ leading, at: Date.now() }));
  return { elector, changes };
}

describe('gitops/leader: Lease leader election against a real kube-apiserver (envtest)', function () {
  this.timeout(120_000);
  let env: Envtest;
  let leases: CoordinationV1Api;
  const running: LeaseLeaderElector[] = [];

  const lease = (name: string): Promise<V1Lease> => leases.readNamespacedLease({ name, namespace: NS });

  before(async () => {
    env = await startEnvtest();
    await env.makeKubeConfig().makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
    leases = env.makeKubeConfig().makeApiClient(CoordinationV1Api);
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((e) => e.stop()));
  });
  after(async () => env?.stop());

  it('of two replicas on one Lease exactly one leads, and keeps leading while it renews', async () => {
    const a = candidate(env.makeKubeConfig(), 'replica-a', 'two');
    const b = candidate(env.makeKubeConfig(), 'replica-b', 'two');
    running.push(a.elector, b.elector);
    await Promise.all([a.elector.start(), b.elector.start()]);
    await until('a leader', () => a.elector.isLeader() || b.elector.isLeader());
    const leader = a.elector.isLeader() ? 'replica-a' : 'replica-b';

    // several lease durations: never two leaders, never a change
    for (let i = 0; i < 50; i++) {
      expect(Number(a.elector.isLeader()) + Number(b.elector.isLeader())).to.equal(1);
      await sleep(100);
    }
    expect(a.changes.length + b.changes.length).to.equal(1);
    const held = await lease('two');
    expect(held.spec?.holderIdentity).to.equal(leader);
    expect(held.spec?.leaseDurationSeconds).to.equal(2);
    expect(held.spec?.leaseTransitions).to.equal(0);
    // renewed, not just acquired (from the Lease's own times, not this machine's clock and speed)
    expect(new Date(held.spec!.renewTime!).getTime()).to.be.above(new Date(held.spec!.acquireTime!).getTime() + 1000);
  });

  it('stop() of the leader releases the Lease: the other replica takes over within a retry period or so', async () => {
    const a = candidate(env.makeKubeConfig(), 'replica-a', 'handover');
    running.push(a.elector);
    await a.elector.start();
    expect(a.elector.isLeader()).to.equal(true);
    const b = candidate(env.makeKubeConfig(), 'replica-b', 'handover');
    running.push(b.elector);
    await b.elector.start();
    expect(b.elector.isLeader()).to.equal(false);

    const stoppedAt = Date.now();
    await a.elector.stop();
    expect(a.elector.isLeader()).to.equal(false);
    expect(a.changes.map((c) => c.leading)).to.deep.equal([true, false]);
    await until('replica-b leading', () => b.elector.isLeader());
    const handover = Date.now() - stoppedAt;
    expect(handover).to.be.below(1000); // far less than the 2 s lease: no waiting for expiry

    const held = await lease('handover');
    expect(held.spec?.holderIdentity).to.equal('replica-b');
    expect(held.spec?.leaseTransitions).to.equal(1);
  });

  it('takes over an expired Lease at once, and waits out one that is still held', async () => {
    const stale = new V1MicroTime(Date.now() - 10_000);
    await leases.createNamespacedLease({
      namespace: NS,
      body: {
        metadata: { name: 'expired' },
        spec: { holderIdentity: 'ghost', leaseDurationSeconds: 2, acquireTime: stale, renewTime: stale, leaseTransitions: 5 },
      },
    });
    const a = candidate(env.makeKubeConfig(), 'replica-a', 'expired');
    running.push(a.elector);
    await a.elector.start();
    expect(a.elector.isLeader()).to.equal(true);
    const taken = await lease('expired');
    expect(taken.spec).to.include({ holderIdentity: 'replica-a', leaseTransitions: 6 });

    const fresh = new V1MicroTime(Date.now());
    await leases.createNamespacedLease({
      namespace: NS,
      body: { metadata: { name: 'held' }, spec: { holderIdentity: 'ghost', leaseDurationSeconds: 2, acquireTime: fresh, renewTime: fresh, leaseTransitions: 0 } },
    });
    const b = candidate(env.makeKubeConfig(), 'replica-b', 'held');
    running.push(b.elector);
    const startedAt = Date.now();
    await b.elector.start();
    expect(b.elector.isLeader()).to.equal(false);
    await until('replica-b leading after the ghost’s lease expired', () => b.elector.isLeader());
    // not before the ghost's 2 s lease ran out; the upper bound is loose because CI machines are shared
    expect(Date.now() - startedAt, 'waited for the lease to expire').to.be.at.least(1500);
    expect(Date.now() - startedAt, 'took over soon after').to.be.at.most(8000);
    expect((await lease('held')).spec).to.include({ holderIdentity: 'replica-b', leaseTransitions: 1 });
  });

  it('writes times as MicroTime (microseconds), and renews without counting a transition', async () => {
    const a = candidate(env.makeKubeConfig(), 'replica-a', 'micro');
    running.push(a.elector);
    await a.elector.start();
    const first = await lease('micro');
    await sleep(600);
    const later = await lease('micro');
    // the client hands MicroTime back as the API server's string: RFC 3339 with six fractional digits
    for (const t of [later.spec?.renewTime, later.spec?.acquireTime]) expect(String(t)).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(new Date(later.spec!.renewTime!).getTime()).to.be.above(new Date(first.spec!.renewTime!).getTime());
    expect(later.spec?.leaseTransitions).to.equal(0);
    expect(String(later.spec?.acquireTime)).to.equal(String(first.spec?.acquireTime));
  });

  it('a leader cut off from the API steps down before its lease expires; the other takes over after', async () => {
    const relay = await startRelay(Number(new URL(env.server).port));
    try {
      const kc = new KubeConfig();
      kc.loadFromString(env.kubeconfig.replace(env.server, `https://127.0.0.1:${relay.port}`));
      const a = candidate(kc, 'replica-a', 'partition');
      running.push(a.elector);
      await a.elector.start();
      expect(a.elector.isLeader()).to.equal(true);
      const b = candidate(env.makeKubeConfig(), 'replica-b', 'partition');
      running.push(b.elector);
      await b.elector.start();

      relay.cut(true);
      await until('replica-b leading', () => b.elector.isLeader());
      const steppedDown = a.changes.find((c) => !c.leading);
      const tookOver = b.changes.find((c) => c.leading)!;
      expect(steppedDown, 'replica-a stepped down').to.not.equal(undefined);
      expect(steppedDown!.at).to.be.below(tookOver.at); // never two leaders
      expect((await lease('partition')).spec?.leaseTransitions).to.equal(1);
    } finally {
      relay.cut(false);
      await relay.close();
    }
  });

  it('a process that stops its elector exits by itself at once (no timer or connection left), releasing the Lease', async () => {
    const script = `
      const { loadKubeConfig } = await import(${JSON.stringify(`${REPO_ROOT}/src/gitops/kube.ts`)});
      const { LeaseLeaderElector } = await import(${JSON.stringify(`${REPO_ROOT}/src/gitops/leader.ts`)});
      const elector = new LeaseLeaderElector(loadKubeConfig(process.env.TEST_KUBECONFIG), {
        namespace: ${JSON.stringify(NS)}, name: 'exiting', identity: 'process', ...${JSON.stringify(FAST)},
      });
      await elector.start();
      await new Promise((r) => setTimeout(r, 1000));
      const leading = elector.isLeader();
      await elector.stop();
      console.log(JSON.stringify({ leading, stoppedAt: Date.now() }));
    `;
    const { out, exitDelayMs } = await runChildScript<{ leading: boolean; stoppedAt: number }>(script, { TEST_KUBECONFIG: env.kubeconfigPath });
    expect(out.leading).to.equal(true);
    expect(exitDelayMs).to.be.below(1000);
    expect((await lease('exiting')).spec?.holderIdentity).to.equal(undefined);
  });

  it('refuses timings that could let two replicas lead at once', () => {
    const kc = env.makeKubeConfig();
    for (const bad of [
      { leaseDurationSeconds: 2, renewDeadlineSeconds: 2, retryPeriodSeconds: 0.2 },
      { leaseDurationSeconds: 15, renewDeadlineSeconds: 2, retryPeriodSeconds: 2 },
    ]) {
      let err: unknown;
      try {
        new LeaseLeaderElector(kc, { namespace: NS, identity: 'x', ...bad });
      } catch (e) {
        err = e;
      }
      expect(isCapflowError(err) && err.code, JSON.stringify(bad)).to.equal('LEADER_TIMING_INVALID');
    }
  });
});
