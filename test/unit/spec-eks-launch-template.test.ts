/**
 * The checks of an AWSManagedMachinePool's awsLaunchTemplate (src/spec/eks-checks.ts): what EKS
 * refuses in a managed node group's launch template, or next to one on the node group, is refused
 * at its file:line with a hint, before any AWS call; a template EKS takes validates clean.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { formatProblem, validateClusterSpec } from '../../src/spec/index.js';
import { managedNodeGroupYaml } from '../fixtures/eks-node-group.js';
import { cleanupSpecFolders, displayRootOf, examplesDir, specFolder } from '../fixtures/spec/support.js';

const EXAMPLE = path.join(examplesDir, 'eks-managed');
const example = (name: string) => readFileSync(path.join(EXAMPLE, name), 'utf8');

/** The example cluster with one node group whose AWSManagedMachinePool spec ends with `tail` (indented two spaces). */
function folder(tail: string): Record<string, string> {
  const pools = managedNodeGroupYaml(tail);
  return { 'cluster.yaml': example('cluster.yaml'), 'control-plane.yaml': example('control-plane.yaml'), 'node-groups.yaml': pools };
}

async function problemsOf(files: Record<string, string>): Promise<string[]> {
  const dir = await specFolder(files);
  const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
  return problems.map(formatProblem);
}

const AT = 'clusters/test/node-groups.yaml';

describe('spec: an AWSManagedMachinePool awsLaunchTemplate (EKS managed node group launch templates)', function () {
  this.timeout(30_000);
  after(cleanupSpecFolders);

  it('a template EKS takes (instance type, AMI id, volumes, key, security groups by id, metadata options) validates with no problems', async () => {
    const problems = await problemsOf(
      folder(`  capacityType: spot
  awsLaunchTemplate:
    instanceType: m6i.large
    ami:
      id: ami-0123456789abcdef0
    sshKeyName: ops
    rootVolume:
      size: 50
    nonRootVolumes:
    - deviceName: /dev/xvdb
      size: 100
    additionalSecurityGroups:
    - id: sg-0123456789abcdef0
    instanceMetadataOptions:
      httpTokens: required
`),
    );
    expect(problems).to.deep.equal([]);
  });

  const cases = [
    {
      name: 'an instance profile in the template (EKS uses the node group role)',
      tail: '  awsLaunchTemplate:\n    instanceType: m6i.large\n    iamInstanceProfile: nodes\n',
      expected: `${AT}:29:25 AWSManagedMachinePool/eks-prod-general spec.awsLaunchTemplate.iamInstanceProfile: EKS refuses an instance profile in a managed node group's launch template`,
      hint: 'spec.roleName',
    },
    {
      name: 'spot options in the template (capacityType says spot)',
      tail: '  awsLaunchTemplate:\n    instanceType: m6i.large\n    spotMarketOptions:\n      maxPrice: "0.1"\n',
      expected: `${AT}:29:5 AWSManagedMachinePool/eks-prod-general spec.awsLaunchTemplate.spotMarketOptions: EKS refuses spot options in a managed node group's launch template`,
      hint: 'capacityType: spot',
    },
    {
      name: 'a Spot marketType in the template',
      tail: '  awsLaunchTemplate:\n    instanceType: m6i.large\n    marketType: Spot\n',
      expected: `${AT}:29:17 AWSManagedMachinePool/eks-prod-general spec.awsLaunchTemplate.marketType: EKS takes a managed node group's market from its capacity type`,
      hint: 'capacityType',
    },
    {
      name: 'diskSize on the node group next to a template',
      tail: '  diskSize: 50\n  awsLaunchTemplate:\n    instanceType: m6i.large\n',
      expected: `${AT}:27:13 AWSManagedMachinePool/eks-prod-general spec.diskSize: EKS refuses a node group disk size next to a launch template`,
      hint: 'rootVolume.size',
    },
    {
      name: 'remoteAccess on the node group next to a template',
      tail: '  remoteAccess:\n    sshKeyName: ops\n  awsLaunchTemplate:\n    instanceType: m6i.large\n',
      expected: `${AT}:27:3 AWSManagedMachinePool/eks-prod-general spec.remoteAccess: EKS refuses remote access next to a launch template`,
      hint: 'awsLaunchTemplate.sshKeyName',
    },
    {
      name: 'an instance type on the node group when the template names one',
      tail: '  instanceType: m6i.large\n  awsLaunchTemplate:\n    instanceType: m6i.xlarge\n',
      expected: `${AT}:27:17 AWSManagedMachinePool/eks-prod-general spec.instanceType: EKS refuses an instance type on the node group when its launch template names one (m6i.xlarge)`,
      hint: 'remove spec.instanceType',
    },
    {
      name: 'a release version (amiVersion) next to a template with its own AMI',
      tail: '  amiVersion: 1.31.10-20250715\n  awsLaunchTemplate:\n    ami:\n      id: ami-0123456789abcdef0\n',
      expected: `${AT}:27:15 AWSManagedMachinePool/eks-prod-general spec.amiVersion: EKS refuses a release version for a node group whose launch template names its own AMI`,
      hint: 'remove amiVersion',
    },
    {
      name: 'an image lookup (not made for node groups yet)',
      tail: '  awsLaunchTemplate:\n    imageLookupBaseOS: ubuntu-24.04\n',
      expected: `${AT}:28:24 AWSManagedMachinePool/eks-prod-general spec.awsLaunchTemplate.imageLookupBaseOS: awsLaunchTemplate.imageLookupBaseOS on a managed node group is not supported yet`,
      hint: 'ami.id',
    },
    {
      name: 'a security group by filter (not by id)',
      tail: '  awsLaunchTemplate:\n    additionalSecurityGroups:\n    - filters:\n      - name: tag:role\n        values: [nodes]\n',
      expected: `${AT}:29:7 AWSManagedMachinePool/eks-prod-general spec.awsLaunchTemplate.additionalSecurityGroups[0]: security groups by filter are not supported yet`,
      hint: 'by id',
    },
  ];
  for (const c of cases) {
    it(`${c.name} is refused at its file:line with a hint`, async () => {
      const problems = await problemsOf(folder(c.tail));
      const hit = problems.find((p) => p.startsWith(c.expected));
      expect(hit, problems.join('\n')).to.not.equal(undefined);
      expect(hit).to.match(new RegExp(`hint: .*${c.hint.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      expect(problems.filter((p) => !p.startsWith(c.expected)), 'nothing else').to.deep.equal([]);
    });
  }
});
