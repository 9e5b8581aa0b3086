import path from 'node:path';
import { expect } from 'chai';
import { formatProblem, validateClusterSpec } from '../../src/spec/index.js';
import type { KubeadmControlPlane } from '../../src/spec/index.js';
import { fixturesDir } from '../fixtures/spec/support.js';

const upstream = path.join(fixturesDir, 'upstream');

describe('upstream clusterctl template (CAPA v2.9.3 templates/cluster-template.yaml, verbatim)', function () {
  this.timeout(30_000);

  it('validates unchanged once its variables are supplied from a vars file', async () => {
    const { model, problems } = await validateClusterSpec(upstream, { varsFile: path.join(upstream, 'capa-cluster-template.vars') });
    expect(problems.map(formatProblem)).to.deep.equal([]);
    expect(model?.provider).to.equal('aws');
    expect(model?.name).to.equal('capa-upstream');
    expect((model?.controlPlane as KubeadmControlPlane).spec.replicas).to.equal(3);
    expect(model?.resourceSets.map((r) => [r.resourceSet.metadata.name, r.selectsCluster, r.resources.map((c) => c.metadata.name)])).to.deep.equal([
      ['crs-ccm', true, ['cloud-controller-manager-addon']],
      ['crs-csi', true, ['aws-ebs-csi-driver-addon']],
    ]);
  });

  it('without variables asks for --vars or --env', async () => {
    const { problems } = await validateClusterSpec(upstream);
    expect(problems).to.have.length(1);
    expect(problems[0]?.code).to.equal('variables-not-substituted');
  });
});
