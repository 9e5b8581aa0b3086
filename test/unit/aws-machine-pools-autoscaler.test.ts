/**
 * Machine pool decisions that need no cloud: cluster-autoscaler tags (machine-pools.ts) and the
 * names of the EKS-optimized images (images.ts).
 */
import { expect } from 'chai';
import { autoscalerTagDrift, autoscalerTags, replicasManagedExternally, AUTOSCALER_ENABLED_TAG } from '../../src/aws/machine-pools.js';
import { eksImageNamePattern } from '../../src/aws/images.js';
import type { MachinePool } from '../../src/spec/model.js';

function pool(annotations?: Record<string, string>): MachinePool {
  return {
    apiVersion: 'cluster.x-k8s.io/v1beta1',
    kind: 'MachinePool',
    metadata: { name: 'mp', namespace: 'default', ...(annotations ? { annotations } : {}) },
    spec: { clusterName: 'dev', template: { spec: { clusterName: 'dev', bootstrap: {}, infrastructureRef: { kind: 'AWSMachinePool', name: 'mp' } } } },
  };
}

describe('aws machine pools: cluster-autoscaler tags and EKS images', () => {
  it('tags a pool for the autoscaler when its MachinePool has the replicas-managed-by annotation, whatever its value', () => {
    expect(replicasManagedExternally(pool())).to.equal(false);
    expect(autoscalerTags(pool(), 'dev')).to.deep.equal({});
    for (const value of ['external-autoscaler', '']) {
      expect(replicasManagedExternally(pool({ 'cluster.x-k8s.io/replicas-managed-by': value }))).to.equal(true);
      expect(autoscalerTags(pool({ 'cluster.x-k8s.io/replicas-managed-by': value }), 'eks-dev')).to.deep.equal({
        'k8s.io/cluster-autoscaler/enabled': 'true',
        'k8s.io/cluster-autoscaler/eks-dev': 'owned',
      });
    }
  });

  it('sets missing or propagated autoscaler tags, removes them when the annotation went, and leaves other tags alone', () => {
    const want = { [AUTOSCALER_ENABLED_TAG]: 'true', 'k8s.io/cluster-autoscaler/dev': 'owned' };
    const none = autoscalerTagDrift('mp', want, [{ Key: 'Name', Value: 'mp', PropagateAtLaunch: true }], 'dev');
    expect(none.set.map((t) => [t.Key, t.Value, t.PropagateAtLaunch, t.ResourceType, t.ResourceId])).to.deep.equal([
      [AUTOSCALER_ENABLED_TAG, 'true', false, 'auto-scaling-group', 'mp'],
      ['k8s.io/cluster-autoscaler/dev', 'owned', false, 'auto-scaling-group', 'mp'],
    ]);
    expect(none.remove).to.deep.equal([]);

    const propagated = autoscalerTagDrift('mp', want, [
      { Key: AUTOSCALER_ENABLED_TAG, Value: 'true', PropagateAtLaunch: true },
      { Key: 'k8s.io/cluster-autoscaler/dev', Value: 'owned', PropagateAtLaunch: false },
    ], 'dev');
    expect(propagated.set.map((t) => t.Key)).to.deep.equal([AUTOSCALER_ENABLED_TAG]);

    const inStep = autoscalerTagDrift('mp', want, [
      { Key: AUTOSCALER_ENABLED_TAG, Value: 'true', PropagateAtLaunch: false },
      { Key: 'k8s.io/cluster-autoscaler/dev', Value: 'owned', PropagateAtLaunch: false },
    ], 'dev');
    expect(inStep).to.deep.equal({ set: [], remove: [], changes: [] });

    const gone = autoscalerTagDrift('mp', {}, [
      { Key: AUTOSCALER_ENABLED_TAG, Value: 'true', PropagateAtLaunch: false },
      { Key: 'k8s.io/cluster-autoscaler/other-cluster', Value: 'owned', PropagateAtLaunch: false },
      { Key: 'Name', Value: 'mp', PropagateAtLaunch: true },
    ], 'dev');
    expect(gone.remove.map((t) => t.Key)).to.deep.equal([AUTOSCALER_ENABLED_TAG]);
    expect(gone.set).to.deep.equal([]);
  });

  it('names the EKS-optimized image of each lookup type, architecture and minor', () => {
    expect(eksImageNamePattern(undefined, 'x86_64', 'v1.31.4')).to.equal('amazon-eks-node-1.31-v*');
    expect(eksImageNamePattern('AmazonLinux', 'arm64', 'v1.31')).to.equal('amazon-eks-arm64-node-1.31-v*');
    expect(eksImageNamePattern('AmazonLinuxGPU', 'x86_64', '1.30.2')).to.equal('amazon-eks-gpu-node-1.30-v*');
    expect(eksImageNamePattern('AmazonLinux2023', 'x86_64', 'v1.32.0')).to.equal('amazon-eks-node-al2023-x86_64-standard-1.32-v*');
    expect(eksImageNamePattern('AmazonLinux2023', 'arm64', 'v1.32.0')).to.equal('amazon-eks-node-al2023-arm64-standard-1.32-v*');
    expect(eksImageNamePattern('AmazonLinux2023GPU', 'x86_64', 'v1.32.0')).to.equal('amazon-eks-node-al2023-x86_64-nvidia-1.32-v*');
  });
});
