import { expect } from 'chai';
import { desiredSubnets, checkZones, orderZones, type ExistingSubnet } from '../../src/aws/network-spec.js';
import { networkSpecOf, type NetworkSpec } from '../../src/spec/index.js';
import { overlappingPairs } from '../../src/core/cidr.js';
import { fieldLocation, formatProblem, loadClusterSpec, validateClusterSpec } from '../../src/spec/index.js';
import { cleanupSpecFolders, CLUSTER, displayRootOf, examplesDir, minimalAws, specFolder } from '../fixtures/spec/support.js';
import { rolesFor } from '../../src/aws/security-groups.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const ZONES = ['us-east-1a', 'us-east-1b', 'us-east-1c', 'us-east-1d', 'us-east-1e', 'us-east-1f'];

function computed(over: Partial<NetworkSpec> = {}): NetworkSpec {
  return {
    clusterName: 'dev',
    region: 'us-east-1',
    provider: 'aws',
    infra: { kind: 'AWSCluster', name: 'dev' },
    infraSpec: {},
    annotations: {},
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
      expect(fieldLocation(model, { kind: 'AWSCluster', name: 'dev' }, ['spec', 'network', 'vpc', 'cidrBlock'])).to.deep.include({ file: 'clusters/test/cluster.yaml', line: 25, column: 18 });
      expect(fieldLocation(model, { kind: 'AWSCluster', name: 'dev' }, ['spec', 'network', 'vpc', 'availabilityZoneUsageLimit'])?.line).to.equal(24);
      expect(fieldLocation(model, { kind: 'AWSCluster', name: 'nope' }, ['spec'])).to.equal(undefined);
    });
  });

  describe('an EKS cluster: the network of its AWSManagedControlPlane', () => {
    /** The eks-managed example, its control plane's spec lines (after `spec:`) replaced by `specLines`. */
    async function eks(edit: (controlPlane: string) => string = (t) => t) {
      const file = (name: string) => readFileSync(path.join(examplesDir, 'eks-managed', name), 'utf8');
      const dir = await specFolder({ 'cluster.yaml': file('cluster.yaml'), 'control-plane.yaml': edit(file('control-plane.yaml')), 'node-groups.yaml': file('node-groups.yaml') });
      return validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
    }

    it('the example, should read the network, region and EKS name from the AWSManagedControlPlane', async () => {
      const { model, problems } = await eks();
      expect(problems.filter((x) => x.severity === 'error')).to.deep.equal([]);
      const spec = networkSpecOf(model!);
      expect({ provider: spec.provider, infra: spec.infra, region: spec.region, vpcCidr: spec.vpcCidr, azLimit: spec.azLimit, eksClusterName: spec.eksClusterName }).to.deep.equal({
        provider: 'eks',
        infra: { kind: 'AWSManagedControlPlane', name: 'eks-prod-control-plane' },
        region: 'us-west-2',
        vpcCidr: '10.20.0.0/16',
        azLimit: 3,
        eksClusterName: 'eks-prod',
      });
      const unnamed = await eks((t) => t.replace('  eksClusterName: eks-prod\n', ''));
      expect(networkSpecOf(unnamed.model!).eksClusterName, 'defaults to the Cluster\'s name').to.equal('eks-prod');
    });

    it('a rule without a source, a source role EKS lacks and node rules, should each be reported at their field', async () => {
      const { problems } = await eks((t) =>
        t.replace(
          '      availabilityZoneUsageLimit: 3\n',
          '      availabilityZoneUsageLimit: 3\n    additionalControlPlaneIngressRules:\n    - description: any\n      protocol: tcp\n      fromPort: 443\n      toPort: 443\n    - description: nodes\n      protocol: tcp\n      fromPort: 443\n      toPort: 443\n      sourceSecurityGroupRoles:\n      - node\n    nodePortIngressRuleCidrBlocks:\n    - 10.0.0.0/8\n',
        ),
      );
      const lines = problems.map((x) => `${x.severity} ${x.path}: ${x.message}`);
      expect(lines).to.include.members([
        'error spec.network.additionalControlPlaneIngressRules[0]: the rule names no source, and an EKS cluster has no control plane security group of its own to default to',
        'error spec.network.additionalControlPlaneIngressRules[1].sourceSecurityGroupRoles[0]: an EKS cluster has no node security group that capflow makes',
        "warning spec.network.nodePortIngressRuleCidrBlocks: ignored for an EKS cluster: its nodes' group is the one EKS makes, whose rules EKS keeps (as the AWS provider does)",
      ]);
      expect(problems.every((x) => x.kind === 'AWSManagedControlPlane' && x.file === 'clusters/test/control-plane.yaml' && x.line !== undefined)).to.equal(true);
    });

    it('a secondaryCidrBlock, should be refused as not supported yet, at its field', async () => {
      const { model, problems } = await eks((t) => t.replace('  version: v1.31\n', '  version: v1.31\n  secondaryCidrBlock: 100.64.0.0/16\n'));
      expect(model).to.equal(undefined);
      expect(problems.map(formatProblem)).to.deep.equal([
        'clusters/test/control-plane.yaml:9:3 AWSManagedControlPlane/eks-prod-control-plane spec.secondaryCidrBlock: AWSManagedControlPlane.spec.secondaryCidrBlock is not supported yet: provision-vpc neither adds the block to the VPC nor makes its subnets hint: remove it; pods take addresses from the subnets of spec.network',
      ]);
    });

    it('rolesFor, should name the groups per provider: the AWSCluster\'s four, and for EKS node-eks-additional plus the bastion\'s only with a bastion', () => {
      expect(rolesFor('aws')).to.deep.equal(['bastion', 'apiserver-lb', 'controlplane', 'node']);
      expect(rolesFor('eks')).to.deep.equal(['node-eks-additional']);
      expect(rolesFor('eks', { bastion: true })).to.deep.equal(['bastion', 'node-eks-additional']);
    });
  });
});
