import { expect } from 'chai';
import { desiredSubnets, checkZones, orderZones, type ExistingSubnet } from '../../src/aws/network-spec.js';
import { networkSpecOf, type NetworkSpec } from '../../src/spec/index.js';
import { overlappingPairs } from '../../src/core/cidr.js';
import { fieldLocation, formatProblem, loadClusterSpec, validateClusterSpec } from '../../src/spec/index.js';
import { cleanupSpecFolders, CLUSTER, displayRootOf, minimalAws, specFolder } from '../fixtures/spec/support.js';

const ZONES = ['us-east-1a', 'us-east-1b', 'us-east-1c', 'us-east-1d', 'us-east-1e', 'us-east-1f'];

function computed(over: Partial<NetworkSpec> = {}): NetworkSpec {
  return {
    clusterName: 'dev',
    region: 'us-east-1',
    infra: { kind: 'AWSCluster', name: 'dev' },
    awsCluster: { apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta2', kind: 'AWSCluster', metadata: { name: 'dev', namespace: 'default' }, spec: {} },
    vpcCidr: '10.0.0.0/16',
    azLimit: 3,
    azSelection: 'Ordered',
    subnetSchema: 'PreferPrivate',
    natMode: 'per-az',
    ...over,
  };
}

function existing(list: Array<[string, string, boolean]>, owned = true): ExistingSubnet[] {
  return list.map(([az, cidr, isPublic], i) => ({ id: `subnet-${i}`, az, cidr, isPublic, owned, tags: {}, mapPublicIpOnLaunch: isPublic }));
}

/** An AWSCluster with the given network block (YAML, indented under spec:). */
async function modelWith(network: string, annotations = '') {
  const dir = await specFolder(
    minimalAws({
      'cluster.yaml': `${CLUSTER}---\napiVersion: infrastructure.cluster.x-k8s.io/v1beta2\nkind: AWSCluster\nmetadata:\n  name: dev\n${annotations}spec:\n  region: us-east-1\n${network}`,
    }),
  );
  return loadClusterSpec(dir, { displayRoot: displayRootOf(dir) });
}

describe('aws/network-spec: the network an AWSCluster asks for', function () {
  this.timeout(30_000);
  after(cleanupSpecFolders);

  describe('desiredSubnets', () => {
    it('no subnets exist, should lay out one public and one private subnet in each of the first three zones', () => {
      const { subnets } = desiredSubnets(computed(), ZONES, []);
      expect(subnets.map((s) => [s.az, s.isPublic, s.cidr])).to.deep.equal([
        ['us-east-1a', true, '10.0.0.0/20'],
        ['us-east-1a', false, '10.0.64.0/18'],
        ['us-east-1b', true, '10.0.16.0/20'],
        ['us-east-1b', false, '10.0.128.0/18'],
        ['us-east-1c', true, '10.0.32.0/20'],
        ['us-east-1c', false, '10.0.192.0/18'],
      ]);
      expect(subnets[0]!.name).to.equal('dev-subnet-public-us-east-1a');
    });

    it('a two-zone layout exists and the limit goes to three, should keep both zones and their blocks and place the third zone in free space', () => {
      const two = existing([
        ['us-east-1a', '10.0.0.0/19', true],
        ['us-east-1a', '10.0.64.0/18', false],
        ['us-east-1b', '10.0.32.0/19', true],
        ['us-east-1b', '10.0.128.0/18', false],
      ]);
      const { subnets, unplaced } = desiredSubnets(computed(), ZONES, two);
      expect(unplaced).to.deep.equal([]);
      const kept = subnets.filter((s) => s.az !== 'us-east-1c').map((s) => s.cidr).sort();
      expect(kept).to.deep.equal(['10.0.0.0/19', '10.0.128.0/18', '10.0.32.0/19', '10.0.64.0/18']);
      const added = subnets.filter((s) => s.az === 'us-east-1c');
      expect(added.map((s) => [s.isPublic, s.cidr])).to.deep.equal([
        [true, '10.0.192.0/20'],
        [false, '10.0.224.0/19'],
      ]);
      expect(added[0]!.detail).to.match(/layout block 10\.0\.32\.0\/20 overlaps/);
      expect(overlappingPairs(subnets.map((s) => s.cidr))).to.deep.equal([]);
    });

    it('the subnets of the layout exist, should need no zone list and change nothing', () => {
      const { subnets: first } = desiredSubnets(computed(), ZONES, []);
      const have = existing(first.map((s) => [s.az, s.cidr, s.isPublic] as [string, string, boolean]));
      const { subnets } = desiredSubnets(computed(), undefined, have);
      expect(subnets.map((s) => s.cidr)).to.deep.equal(first.map((s) => s.cidr));
    });

    it('a subnet of the VPC is not ours and sits on a layout block, should place ours around it', () => {
      const theirs = existing([['us-east-1a', '10.0.0.0/24', false]], false);
      const { subnets, unplaced } = desiredSubnets(computed({ azLimit: 1 }), ZONES, theirs);
      expect(unplaced).to.deep.equal([]);
      expect(subnets.map((s) => s.isPublic)).to.deep.equal([true, false]);
      expect(overlappingPairs([...subnets.map((s) => s.cidr), '10.0.0.0/24'])).to.deep.equal([]);
    });

    it('Random selection is stable for a cluster name and differs between names', () => {
      const a1 = orderZones(ZONES, 'Random', 'alpha');
      expect(orderZones(ZONES, 'Random', 'alpha')).to.deep.equal(a1);
      expect([...a1].sort()).to.deep.equal(ZONES);
      const names = ['alpha', 'beta', 'gamma', 'delta'].map((n) => orderZones(ZONES, 'Random', n).join());
      expect(new Set(names).size).to.be.greaterThan(1);
    });
  });

  describe('checks with file:line of the field', () => {
    it('overlapping listed subnets, a subnet outside the VPC and a bad annotation are each reported at their field, by validation itself', async () => {
      const dir = await specFolder(
        minimalAws({
          'cluster.yaml': `${CLUSTER}---\napiVersion: infrastructure.cluster.x-k8s.io/v1beta2\nkind: AWSCluster\nmetadata:\n  name: dev\n  annotations:\n    capflow.io/nat-gateways: one\nspec:\n  region: us-east-1\n  network:\n    vpc:\n      cidrBlock: 10.0.0.0/16\n    subnets:\n    - id: dev-a-public\n      availabilityZone: us-east-1a\n      cidrBlock: 10.0.0.0/20\n      isPublic: true\n    - id: dev-a-private\n      availabilityZone: us-east-1a\n      cidrBlock: 10.0.8.0/21\n    - id: dev-b-private\n      availabilityZone: us-east-1b\n      cidrBlock: 10.1.0.0/20\n`,
        }),
      );
      const { model, problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(model).to.equal(undefined);
      expect(problems.map(formatProblem)).to.deep.equal([
        'clusters/test/cluster.yaml:22:30 AWSCluster/dev metadata.annotations["capflow.io/nat-gateways"]: must be "single" or "per-az", not "one"',
        'clusters/test/cluster.yaml:35:18 AWSCluster/dev spec.network.subnets[1].cidrBlock: 10.0.8.0/21 overlaps 10.0.0.0/20 of spec.network.subnets[0]',
        'clusters/test/cluster.yaml:38:18 AWSCluster/dev spec.network.subnets[2].cidrBlock: 10.1.0.0/20 is outside the VPC block 10.0.0.0/16',
      ]);
    });

    it('a zone not in the region and a usage limit above the zone count are reported at their fields', async () => {
      const listed = await modelWith(`  network:\n    subnets:\n    - id: dev-z\n      availabilityZone: us-east-1z\n      cidrBlock: 10.0.0.0/20\n      isPublic: true\n`);
      expect(checkZones(listed, networkSpecOf(listed), ZONES).map(formatProblem)).to.deep.equal([
        'clusters/test/cluster.yaml:26:25 AWSCluster/dev spec.network.subnets[0].availabilityZone: availability zone us-east-1z is not in region us-east-1 (zones: us-east-1a, us-east-1b, us-east-1c, us-east-1d, us-east-1e, us-east-1f)',
      ]);
      const many = await modelWith(`  network:\n    vpc:\n      availabilityZoneUsageLimit: 7\n`);
      expect(checkZones(many, networkSpecOf(many), ZONES).map(formatProblem)[0]).to.match(
        /^clusters\/test\/cluster\.yaml:25:35 AWSCluster\/dev spec\.network\.vpc\.availabilityZoneUsageLimit: region us-east-1 has 6 availability zones, fewer than the 7 asked for/,
      );
    });

    it('fieldLocation points into the file and falls back to the deepest parent for a defaulted field', async () => {
      const model = await modelWith(`  network:\n    vpc:\n      cidrBlock: 10.0.0.0/16\n`);
      expect(fieldLocation(model, { kind: 'AWSCluster', name: 'dev' }, ['spec', 'network', 'vpc', 'cidrBlock'])).to.deep.equal({ file: 'clusters/test/cluster.yaml', line: 25, column: 18 });
      expect(fieldLocation(model, { kind: 'AWSCluster', name: 'dev' }, ['spec', 'network', 'vpc', 'availabilityZoneUsageLimit'])?.line).to.equal(24);
      expect(fieldLocation(model, { kind: 'AWSCluster', name: 'nope' }, ['spec'])).to.equal(undefined);
    });
  });
});
