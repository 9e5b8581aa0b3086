/**
 * drainNode against a real kube-apiserver (envtest, no kubelet): evictions leave the pods with a
 * deletionTimestamp that only a kubelet could finish, which is what a Node whose kubelet stopped
 * answering looks like. On a Node whose Ready is Unknown the drain does not wait for them (as
 * Cluster API's drain, so MachineHealthCheck remediation of a dead machine can proceed); on a
 * Ready Node it waits, bounded by its timeout.
 */
import { expect } from 'chai';
import { CoreV1Api } from '@kubernetes/client-node';
import { drainNode } from '../../src/bootstrap/nodes.js';
import { createLogger } from '../../src/core/logger.js';
import { isCapflowError } from '../../src/core/errors.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';

describe('drainNode against kube-apiserver alone (no kubelet: pod deletions stay pending, a stand-in for a kubelet that does not answer)', function () {
  this.timeout(120_000);
  let env: Envtest;
  let core: CoreV1Api;
  const log = createLogger({ level: 'error' });

  before(async () => {
    env = await startEnvtest();
    core = env.makeKubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: 'default' } } }).catch(() => undefined);
  });
  after(async () => env?.stop());

  async function nodeWithPod(name: string, ready: 'True' | 'Unknown'): Promise<void> {
    await core.createNode({ body: { metadata: { name } } });
    const now = new Date();
    await core.replaceNodeStatus({ name, body: { metadata: { name }, status: { conditions: [{ type: 'Ready', status: ready, reason: ready === 'True' ? 'KubeletReady' : 'NodeStatusUnknown', lastHeartbeatTime: now, lastTransitionTime: now }] } } });
    await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: `${name}-app` }, spec: { nodeName: name, automountServiceAccountToken: false, terminationGracePeriodSeconds: 2, containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10' }] } } });
  }

  it('a Node whose Ready is Unknown: evicted pods are not waited for once their deletionTimestamp (the end of their 2s grace period) is 1s past', async () => {
    await nodeWithPod('gone', 'Unknown');
    const started = Date.now();
    await drainNode(core, 'gone', { timeoutMs: 20_000, pollMs: 200, log });
    expect(Date.now() - started).to.be.below(10_000);
    const pod = await core.readNamespacedPod({ name: 'gone-app', namespace: 'default' });
    expect(pod.metadata?.deletionTimestamp, 'evicted, its deletion pending (no kubelet)').to.not.equal(undefined);
    expect((await core.readNode({ name: 'gone' })).spec?.unschedulable).to.equal(true);
  });

  it('a Ready Node: the drain waits for the pods to go, and times out naming them', async () => {
    await nodeWithPod('alive', 'True');
    const err = await drainNode(core, 'alive', { timeoutMs: 3_000, pollMs: 200, log }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isCapflowError(err) && err.code, String(err)).to.equal('NODE_DRAIN_TIMEOUT');
    expect((err as Error).message).to.include('pods still terminating: default/alive-app');
  });
});
