/** The pure parts of src/addons/readiness.ts: readiness per kind as kubectl rollout status / kstatus judge it, pod reasons. */
import { expect } from 'chai';
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { describePods, objectReadiness, selectorString } from '../../src/addons/readiness.js';

const obj = (kind: string, spec: object, status: object, generation = 2): KubernetesObject =>
  ({ apiVersion: 'x', kind, metadata: { name: 'a', namespace: 'ns', generation }, spec: { selector: { matchLabels: { app: 'a' } }, ...spec }, status }) as KubernetesObject;
const reason = (o: KubernetesObject): string | undefined => (objectReadiness(o).ready ? undefined : (objectReadiness(o).reason ?? 'not ready'));

describe('addons/readiness: readiness per kind', () => {
  it('Deployment: generation observed, all updated and available (replicas default 1), no old replicas, new ReplicaSet available', () => {
    const done = { observedGeneration: 2, replicas: 3, updatedReplicas: 3, availableReplicas: 3, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] };
    expect(reason(obj('Deployment', { replicas: 3 }, done))).to.equal(undefined);
    expect(reason(obj('Deployment', { replicas: 3 }, { ...done, observedGeneration: 1 }))).to.equal('waiting for the controller to observe generation 2 (observed 1)');
    expect(reason(obj('Deployment', { replicas: 3 }, {}))).to.equal('waiting for the controller to observe generation 2');
    expect(reason(obj('Deployment', { replicas: 3 }, { ...done, updatedReplicas: 1, availableReplicas: 2 }))).to.equal('1/3 updated, 2/3 available');
    expect(reason(obj('Deployment', { replicas: 3 }, { ...done, replicas: 4 }))).to.equal('1 old replica(s) pending termination');
    expect(reason(obj('Deployment', {}, { ...done, replicas: 1, updatedReplicas: 1, availableReplicas: 0 }))).to.equal('0/1 available');
    expect(reason(obj('Deployment', { replicas: 3 }, { ...done, conditions: [{ type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: 'rs x is progressing' }] }))).to.equal('new ReplicaSet not yet available (rs x is progressing)');
    expect(objectReadiness(obj('Deployment', {}, {})).pods).to.deep.equal({ namespace: 'ns', selector: { matchLabels: { app: 'a' } } });
  });

  it('StatefulSet: ready and updated replicas, revisions equal for RollingUpdate, a partition honoured, OnDelete by readiness', () => {
    const done = { observedGeneration: 2, readyReplicas: 2, updatedReplicas: 2, currentRevision: 'r2', updateRevision: 'r2' };
    expect(reason(obj('StatefulSet', { replicas: 2 }, done))).to.equal(undefined);
    expect(reason(obj('StatefulSet', { replicas: 2 }, { ...done, readyReplicas: 1 }))).to.equal('1/2 ready');
    expect(reason(obj('StatefulSet', { replicas: 2 }, { ...done, currentRevision: 'r1' }))).to.equal('rolling out revision r2 (current r1)');
    expect(reason(obj('StatefulSet', { replicas: 2, updateStrategy: { type: 'RollingUpdate', rollingUpdate: { partition: 1 } } }, { ...done, updatedReplicas: 1, currentRevision: 'r1' }))).to.equal(undefined);
    expect(reason(obj('StatefulSet', { replicas: 2, updateStrategy: { type: 'OnDelete' } }, { ...done, updatedReplicas: 0, currentRevision: 'r1' }))).to.equal(undefined);
  });

  it('DaemonSet: every pod updated, and available but for maxUnavailable (default 1, a percentage rounds up), at least one', () => {
    expect(reason(obj('DaemonSet', {}, { observedGeneration: 2, desiredNumberScheduled: 4, updatedNumberScheduled: 4, numberAvailable: 3 })), 'a Node gone with its pod').to.equal(undefined);
    expect(reason(obj('DaemonSet', {}, { observedGeneration: 2, desiredNumberScheduled: 1, updatedNumberScheduled: 1, numberAvailable: 0 }))).to.equal('0/1 available');
    expect(reason(obj('DaemonSet', { updateStrategy: { rollingUpdate: { maxUnavailable: '50%' } } }, { observedGeneration: 2, desiredNumberScheduled: 5, updatedNumberScheduled: 5, numberAvailable: 2 }))).to.equal(undefined);
    expect(reason(obj('DaemonSet', { updateStrategy: { rollingUpdate: { maxUnavailable: 0 } } }, { observedGeneration: 2, desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 2 }))).to.equal('2/3 available');
  });

  it('DaemonSet: desired == updated == available', () => {
    expect(reason(obj('DaemonSet', {}, { observedGeneration: 2, desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 3 }))).to.equal(undefined);
    expect(reason(obj('DaemonSet', {}, { observedGeneration: 2, desiredNumberScheduled: 3, updatedNumberScheduled: 3, numberAvailable: 1 }))).to.equal('1/3 available');
    expect(reason(obj('DaemonSet', {}, { observedGeneration: 2, desiredNumberScheduled: 3, updatedNumberScheduled: 2, numberAvailable: 3 }))).to.equal('2/3 updated, 3/3 available');
  });

  it('Job: Complete is ready, Failed is terminal with its message; CRD Established, APIService Available, anything else on existence', () => {
    expect(reason(obj('Job', {}, { conditions: [{ type: 'Complete', status: 'True' }] }))).to.equal(undefined);
    expect(reason(obj('Job', { completions: 2 }, { succeeded: 1, active: 1 }))).to.equal('1/2 succeeded, 1 active');
    expect(objectReadiness(obj('Job', {}, { conditions: [{ type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' }] }))).to.deep.include({
      failed: true,
      reason: 'BackoffLimitExceeded (Job has reached the specified backoff limit)',
    });
    expect(reason(obj('CustomResourceDefinition', {}, { conditions: [{ type: 'Established', status: 'True' }] }))).to.equal(undefined);
    expect(reason(obj('CustomResourceDefinition', {}, {}))).to.equal('not Established yet');
    expect(reason(obj('APIService', {}, { conditions: [{ type: 'Available', status: 'False', reason: 'MissingEndpoints', message: 'endpoints for service/metrics-server in "kube-system" have no addresses' }] }))).to.equal(
      'Available False: MissingEndpoints: endpoints for service/metrics-server in "kube-system" have no addresses',
    );
    expect(reason(obj('ConfigMap', {}, {}))).to.equal(undefined);
  });
});

describe('addons/readiness: pod reasons', () => {
  const pod = (name: string, status: V1Pod['status'], created = '2024-01-01T00:00:00Z'): V1Pod => ({ metadata: { name, creationTimestamp: new Date(created) }, status });
  const waiting = (reason: string, message?: string) => ({ name: 'main', image: 'x', imageID: '', ready: false, restartCount: 0, state: { waiting: { reason, ...(message ? { message } : {}) } } });

  it('names the first not-ready pod’s container waiting reason and message, newest pods first', () => {
    const pods = [
      pod('web-old', { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] }),
      pod('web-5d8f-abc', { phase: 'Pending', containerStatuses: [waiting('ImagePullBackOff', 'Back-off pulling image "nope:1"')] }, '2024-01-02T00:00:00Z'),
      pod('web-5d8f-xyz', { phase: 'Running', containerStatuses: [waiting('CrashLoopBackOff', 'back-off 10s restarting failed container')] }, '2024-01-01T12:00:00Z'),
    ];
    expect(describePods(pods)).to.equal('pod web-5d8f-abc: ImagePullBackOff (Back-off pulling image "nope:1")');
    expect(describePods(pods.filter((p) => p.metadata?.name !== 'web-5d8f-abc'))).to.equal('pod web-5d8f-xyz: CrashLoopBackOff (back-off 10s restarting failed container)');
  });

  it('unschedulable pods, init containers, failed containers, no pods at all', () => {
    expect(describePods([pod('p', { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available: 3 Insufficient cpu.' }] })])).to.equal(
      'pod p: Unschedulable (0/3 nodes are available: 3 Insufficient cpu.)',
    );
    expect(describePods([pod('p', { phase: 'Pending', initContainerStatuses: [{ ...waiting('ErrImagePull', 'not found'), name: 'init' }], containerStatuses: [waiting('PodInitializing')] })])).to.equal(
      'pod p: init container init: ErrImagePull (not found)',
    );
    expect(describePods([pod('p', { phase: 'Failed', containerStatuses: [{ name: 'main', image: 'x', imageID: '', ready: false, restartCount: 0, state: { terminated: { exitCode: 2, reason: 'Error' } } }] })])).to.equal('pod p: Error (exit code 2)');
    expect(describePods([pod('p', { phase: 'Pending' })])).to.equal('pod p: Pending');
    expect(describePods([])).to.equal('no pods');
  });

  it('pods that say nothing but their phase are named with their Node and Ready condition, at most three', () => {
    const onNode = (name: string, node: string, ready: 'True' | 'False', reason?: string): V1Pod => ({
      ...pod(name, { phase: 'Running', conditions: [{ type: 'Ready', status: ready, lastTransitionTime: new Date('2024-01-03T00:00:00Z'), ...(reason ? { reason } : {}) }] }),
      spec: { nodeName: node, containers: [] },
    });
    const pods = [onNode('cni-a', 'ip-10-0-1-5', 'True'), onNode('cni-b', 'ip-10-0-1-6', 'False'), onNode('cni-c', 'ip-10-0-1-7', 'False', 'NodeNotReady')];
    expect(describePods(pods)).to.equal('pod cni-b on node ip-10-0-1-6: Running, Ready False since 2024-01-03T00:00:00.000Z; pod cni-c on node ip-10-0-1-7: Running, Ready False since 2024-01-03T00:00:00.000Z (NodeNotReady)');
    const many = ['d', 'e', 'f', 'g', 'h'].map((n) => onNode(`cni-${n}`, `node-${n}`, 'False'));
    expect(describePods(many)).to.match(/^pod cni-d on node node-d: .*; pod cni-f on node node-f: [^;]*; 2 more$/);
  });

  it('label selectors as query strings', () => {
    expect(selectorString({ matchLabels: { app: 'a', tier: 'b' }, matchExpressions: [{ key: 'env', operator: 'In', values: ['x', 'y'] }, { key: 'k', operator: 'Exists' }, { key: 'z', operator: 'DoesNotExist' }, { key: 'q', operator: 'NotIn', values: ['1'] }] })).to.equal(
      'app=a,tier=b,env in (x,y),k,!z,q notin (1)',
    );
  });
});
