/** The crash suite engine's pure parts: which calls are kill points, how worlds are made comparable and compared. */
import { expect } from 'chai';
import { canonical, crashPointSelection, jsonDiff, selectKillPoints } from '../support/crash-suite.js';
import { selectWritePoints } from '../support/crash-kube.js';

describe('crash suite engine: kill points and world comparison', () => {
  const calls = ['CreateVpc', 'ModifyVpcAttribute', 'ModifyVpcAttribute', 'CreateSubnet', 'CreateSubnet', 'CreateSubnet', 'AttachInternetGateway'];
  const show = (points: ReturnType<typeof selectKillPoints>) => points.map((p) => `${p.n}${p.when === 'after-response' ? 'a' : 'b'}`);

  it('sample: the first and the last call of each action after its answer, and the first of each creating action before it', () => {
    expect(show(selectKillPoints(calls, 'sample'))).to.deep.equal(['1a', '1b', '2a', '3a', '4a', '4b', '6a', '7a']);
  });

  it('all: every call after its answer, and every call of a creating action before it', () => {
    expect(show(selectKillPoints(calls, 'all'))).to.deep.equal(['1a', '1b', '2a', '3a', '4a', '4b', '5a', '5b', '6a', '6b', '7a']);
    expect(show(selectKillPoints(['DeleteNodegroup', 'DeleteNodegroup'], 'all'))).to.deep.equal(['1a', '2a']);
    // a scenario's own notion of creating
    expect(show(selectKillPoints(['RegisterTargets'], 'all', () => false))).to.deep.equal(['1a']);
  });

  it('kube steps (install-addons): sample kills after the first, the middle and the last write; all after every write', () => {
    const writes = ['patch namespaces/apps', 'patch configmaps/apps/db-settings', 'patch deployments/apps/db', 'patch configmaps/apps/web-settings', 'patch deployments/apps/web'];
    expect(selectWritePoints(writes, 'sample').map((p) => [p.n, p.action, p.when])).to.deep.equal([
      [1, 'patch namespaces/apps', 'after-response'],
      [3, 'patch deployments/apps/db', 'after-response'],
      [5, 'patch deployments/apps/web', 'after-response'],
    ]);
    expect(selectWritePoints(writes, 'all').map((p) => p.n)).to.deep.equal([1, 2, 3, 4, 5]);
    expect(selectWritePoints(writes.slice(0, 2), 'sample').map((p) => p.n), 'two writes: both').to.deep.equal([1, 2]);
    expect(selectWritePoints([], 'sample')).to.deep.equal([]);
  });

  it('CAPFLOW_CRASH_POINTS: sample by default, all, or a clear error', () => {
    const saved = process.env['CAPFLOW_CRASH_POINTS'];
    try {
      delete process.env['CAPFLOW_CRASH_POINTS'];
      expect(crashPointSelection()).to.equal('sample');
      process.env['CAPFLOW_CRASH_POINTS'] = 'all';
      expect(crashPointSelection()).to.equal('all');
      process.env['CAPFLOW_CRASH_POINTS'] = 'every';
      expect(() => crashPointSelection()).to.throw('CAPFLOW_CRASH_POINTS must be "all" or "sample", not "every"');
    } finally {
      if (saved === undefined) delete process.env['CAPFLOW_CRASH_POINTS'];
      else process.env['CAPFLOW_CRASH_POINTS'] = saved;
    }
  });

  it('canonical: ids (alone or inside ARNs and lists) become names, lists are sorted, so two runs compare equal', () => {
    const names = new Map([
      ['subnet-1', 'subnet:a'],
      ['subnet-2', 'subnet:b'],
      ['i-9', 'instance:cp'],
    ]);
    const one = canonical({ b: ['subnet-2', 'subnet-1'], arn: 'arn:aws:x:::i-9/x', a: undefined }, names);
    expect(one).to.deep.equal({ arn: 'arn:aws:x:::instance:cp/x', b: ['subnet:a', 'subnet:b'] });
    const other = canonical({ b: ['subnet-7', 'subnet-8'], arn: 'arn:aws:x:::i-3/x' }, new Map([['subnet-8', 'subnet:a'], ['subnet-7', 'subnet:b'], ['i-3', 'instance:cp']]));
    expect(jsonDiff(one, other)).to.deep.equal([]);
  });

  it('jsonDiff: a duplicate, a missing resource and a changed attribute are each named with their path', () => {
    const ref = { instance: [{ id: 'instance:a' }, { id: 'instance:b' }], vpc: [{ id: 'vpc:x', cidr: '10.0.0.0/16' }] };
    const run = { instance: [{ id: 'instance:a' }, { id: 'instance:a' }], vpc: [{ id: 'vpc:x', cidr: '10.1.0.0/16' }], eip: [{ id: 'eip:-' }] };
    expect(jsonDiff(ref, run)).to.deep.equal([
      '$.eip: undefined → [{"id":"eip:-"}]',
      '$.instance: missing {"id":"instance:b"}',
      '$.instance: extra {"id":"instance:a"}',
      '$.vpc: missing {"id":"vpc:x","cidr":"10.0.0.0/16"}',
      '$.vpc: extra {"id":"vpc:x","cidr":"10.1.0.0/16"}',
    ]);
  });
});
