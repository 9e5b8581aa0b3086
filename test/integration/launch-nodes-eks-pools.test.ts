/**
 * launch-nodes on an EKS cluster (the eks-machine-pool example) against moto behind the fault proxy:
 * the status secret holds what provision-vpc and eks-control-plane would have written (a network
 * made here straight in moto, an EKS cluster's endpoint, CA and security group), and the step makes
 * each MachinePool + AWSMachinePool + EKSConfig a launch template carrying the EKS node's user data
 * (bootstrap.sh for the AL2 pool, nodeadm's MIME multipart for the AL2023 one) and an Auto Scaling
 * group, tags the externally scaled pool for cluster-autoscaler, leaves its desired capacity to the
 * autoscaler on reruns, skips an AWSManagedMachinePool, and deletes what it made.
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { parse } from 'yaml';
import { AutoScalingClient, DescribeAutoScalingGroupsCommand, SetDesiredCapacityCommand, type AutoScalingGroup } from '@aws-sdk/client-auto-scaling';
import {
  CreateKeyPairCommand,
  CreateSecurityGroupCommand,
  CreateSubnetCommand,
  CreateVpcCommand,
  DescribeImagesCommand,
  DescribeLaunchTemplateVersionsCommand,
  DescribeLaunchTemplatesCommand,
  EC2Client,
  type ResponseLaunchTemplateData,
} from '@aws-sdk/client-ec2';
import { CreateInstanceProfileCommand, IAMClient } from '@aws-sdk/client-iam';
import { AwsClients } from '../../src/core/aws.js';
import { createLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { removeStepStatus, writeStepStatus } from '../../src/core/status.js';
import { runStep, type StepSummary } from '../../src/core/step-host.js';
import type { EksControlPlaneStatus, ProvisionVpcStatus } from '../../executors/aws-step.js';
import { EKS_CONTROL_PLANE_STATUS, launchNodes } from '../../executors/launch-nodes.js';
import { EKS_NODE_INSTANCE_PROFILE } from '../../src/aws/iam-roles.js';
import { clientConfig } from '../support/moto.js';
import { useMotoBehindProxy, type RecordedCall } from '../support/fault-proxy.js';
import { REPO_ROOT } from '../support/tools.js';

const CLUSTER = 'eks-pools';
/** The EKS cluster's own name differs from the Cluster's here, so the tags show which is which. */
const EKS_NAME = 'eks-pools-eks';
const GENERAL = 'eks-pools-general';
const BURST = 'eks-pools-burst';
const MANAGED = 'eks-pools-managed';
/** The example's AWSManagedControlPlane.spec.region. */
const REGION = 'eu-west-1';
const CA = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIBeksTestCA\n-----END CERTIFICATE-----\n').toString('base64');
const ENDPOINT = 'https://0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com';
/** A registry credential in the AL2 pool's dockerConfigJson: in its user data, never in the log. */
const DOCKER_SECRET = 'registry-password-4f9c2e';
const direct = (endpoint: string) => ({ ...clientConfig(endpoint), region: REGION });

interface Run {
  exitCode: number;
  summary: StepSummary;
  calls: RecordedCall[];
  mutating: string[];
  log: string;
}

describe('launch-nodes with EKS machine pools (MachinePool + AWSMachinePool + EKSConfig), end to end against moto', function () {
  this.timeout(180_000);
  const bed = useMotoBehindProxy();
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;
  let privateSubnets: string[];
  let sgAdditional: string;
  let sgCluster: string;

  async function run(del = false): Promise<Run> {
    const from = bed.proxy.calls.length;
    const { credentials, region } = clientConfig(bed.proxy.endpoint);
    const aws = new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { minTimeoutMs: 5, maxTimeoutMs: 50 } });
    let log = '';
    const logStream = new PassThrough().on('data', (d: Buffer) => (log += d.toString()));
    try {
      const { exitCode, summary } = await runStep(
        launchNodes,
        { repoDir: repo, clusterPath: 'clusters/eks', revision: 'abc123', dryRun: false, delete: del, params: { 'poll-interval': '50ms' } },
        { aws, secrets, log: createLogger({ stream: logStream, format: 'json' }), stdout: new PassThrough() },
      );
      const calls = bed.proxy.calls.slice(from);
      return { exitCode, summary, calls, mutating: calls.filter((c) => c.mutating).map((c) => c.action), log };
    } finally {
      aws.destroy();
    }
  }
  const expectOk = (r: Run) => expect(r.exitCode, `${JSON.stringify(r.summary.error)}\n${r.log.slice(-3000)}`).to.equal(0);

  beforeEach(async () => {
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-pool-repo-'));
    const dir = path.join(repo, 'clusters', 'eks');
    cpSync(path.join(REPO_ROOT, 'examples', 'clusters', 'eks-machine-pool'), dir, { recursive: true });
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-pool-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
    const ec2 = new EC2Client(direct(bed.moto.endpoint));
    const iam = new IAMClient(direct(bed.moto.endpoint));
    try {
      // Pin an AMI moto has (EKS images are looked up by name, which moto has none of); the lookup type
      // stays, and picks the user data's form. The AL2 pool gets a registry credential, and a managed
      // node group pool is added: launch-nodes must leave it alone.
      const ami = (await ec2.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }))).Images![0]!.ImageId!;
      const workers = path.join(dir, 'workers.yaml');
      const text = readFileSync(workers, 'utf8')
        .replace(/\n( +)ami:\n/g, `\n$1ami:\n$1  id: ${ami}\n`)
        .replace('  useMaxPods: true\n', `  useMaxPods: true\n  dockerConfigJson: '{"auths": {"registry.example.com": {"auth": "${DOCKER_SECRET}"}}}'\n`);
      writeFileSync(
        workers,
        `${text}---
apiVersion: cluster.x-k8s.io/v1beta1
kind: MachinePool
metadata:
  name: ${MANAGED}
spec:
  clusterName: ${CLUSTER}
  replicas: 1
  template:
    spec:
      clusterName: ${CLUSTER}
      bootstrap:
        dataSecretName: ""
      infrastructureRef:
        apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
        kind: AWSManagedMachinePool
        name: ${MANAGED}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: AWSManagedMachinePool
metadata:
  name: ${MANAGED}
spec:
  eksNodegroupName: managed
  instanceType: m6i.large
  scaling:
    minSize: 1
    maxSize: 2
`,
      );
      writeFileSync(path.join(dir, 'control-plane.yaml'), readFileSync(path.join(dir, 'control-plane.yaml'), 'utf8').replace(`eksClusterName: ${CLUSTER}`, `eksClusterName: ${EKS_NAME}`));
      await ec2.send(new CreateKeyPairCommand({ KeyName: 'capflow-dev' }));
      await iam.send(new CreateInstanceProfileCommand({ InstanceProfileName: EKS_NODE_INSTANCE_PROFILE }));

      // What provision-vpc would have made and kept: a VPC, a private and a public subnet per zone,
      // the EKS additional security group; and what eks-control-plane would have: the cluster's own group.
      const vpcId = (await ec2.send(new CreateVpcCommand({ CidrBlock: '10.30.0.0/16' }))).Vpc!.VpcId!;
      const subnets: ProvisionVpcStatus['subnets'] = [];
      for (const [i, az] of ['eu-west-1a', 'eu-west-1b'].entries()) {
        for (const pub of [false, true]) {
          const cidr = `10.30.${i * 2 + (pub ? 1 : 0)}.0/24`;
          const id = (await ec2.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: cidr, AvailabilityZone: az }))).Subnet!.SubnetId!;
          subnets.push({ id, az, cidr, public: pub });
        }
      }
      privateSubnets = subnets.filter((s) => !s.public).map((s) => s.id);
      sgAdditional = (await ec2.send(new CreateSecurityGroupCommand({ VpcId: vpcId, GroupName: `${CLUSTER}-node-eks-additional`, Description: 'EKS additional' }))).GroupId!;
      sgCluster = (await ec2.send(new CreateSecurityGroupCommand({ VpcId: vpcId, GroupName: `eks-cluster-sg-${EKS_NAME}`, Description: 'EKS created security group' }))).GroupId!;
      await writeStepStatus(secrets, CLUSTER, 'provision-vpc', {
        revision: 'abc123',
        region: REGION,
        vpcId,
        vpcManaged: true,
        subnets,
        natGatewayIds: {},
        routeTableIds: {},
        securityGroupIds: { 'node-eks-additional': sgAdditional },
        apiServerDns: '',
        targetGroupArn: '',
        bastionAddress: '',
      } satisfies ProvisionVpcStatus);
      await writeStepStatus(secrets, CLUSTER, EKS_CONTROL_PLANE_STATUS, {
        revision: 'abc123',
        region: REGION,
        eksClusterName: EKS_NAME,
        arn: `arn:aws:eks:${REGION}:123456789012:cluster/${EKS_NAME}`,
        endpoint: ENDPOINT,
        certificateAuthorityData: CA,
        version: '1.31',
        serviceCidr: '172.20.0.0/16',
        clusterSecurityGroupId: sgCluster,
        roleArn: 'arn:aws:iam::123456789012:role/eks-pools-control-plane',
        nodeRoleArn: 'arn:aws:iam::123456789012:role/eks-pools-nodes',
      } satisfies EksControlPlaneStatus);
    } finally {
      ec2.destroy();
      iam.destroy();
    }
  });
  afterEach(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  async function groupsByName(asg: AutoScalingClient): Promise<Map<string, AutoScalingGroup>> {
    const out = await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [GENERAL, BURST, MANAGED] }));
    return new Map((out.AutoScalingGroups ?? []).map((g) => [g.AutoScalingGroupName!, g]));
  }
  async function templateData(ec2: EC2Client, name: string): Promise<ResponseLaunchTemplateData> {
    const out = await ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateName: name, Versions: ['$Latest'] }));
    return out.LaunchTemplateVersions![0]!.LaunchTemplateData!;
  }
  const tag = (g: AutoScalingGroup, key: string) => g.Tags?.find((t) => t.Key === key);

  it('makes each pool a launch template with the EKS user data and an Auto Scaling group, tags the autoscaled one, reruns with no change, and deletes them', async () => {
    const created = await run();
    expectOk(created);
    expect(created.mutating.filter((a) => a === 'CreateLaunchTemplate')).to.have.length(2);
    expect(created.mutating.filter((a) => a === 'CreateAutoScalingGroup')).to.have.length(2);
    expect(created.mutating).to.not.include('RunInstances');
    expect(created.log, 'the registry credential is never logged').to.not.include(DOCKER_SECRET);
    expect(created.summary).to.deep.include({ machinePools: 2, managedNodeGroupsLeft: 1 });

    const asg = new AutoScalingClient(direct(bed.moto.endpoint));
    const ec2 = new EC2Client(direct(bed.moto.endpoint));
    try {
      const groups = await groupsByName(asg);
      expect([...groups.keys()].sort(), 'the managed node group pool is not an Auto Scaling group of ours').to.deep.equal([BURST, GENERAL]);
      const general = groups.get(GENERAL)!;
      const burst = groups.get(BURST)!;
      expect(general).to.include({ MinSize: 2, MaxSize: 6, DesiredCapacity: 3 });
      expect(burst).to.include({ MinSize: 0, MaxSize: 20, DesiredCapacity: 1 });
      for (const g of [general, burst]) {
        expect((g.VPCZoneIdentifier ?? '').split(',').sort(), 'the private subnets').to.deep.equal([...privateSubnets].sort());
        expect(tag(g, `kubernetes.io/cluster/${EKS_NAME}`)?.Value, 'EKS nodes carry the EKS cluster tag').to.equal('owned');
        expect(tag(g, `sigs.k8s.io/cluster-api-provider-aws/cluster/${CLUSTER}`)?.Value).to.equal('owned');
      }
      expect(tag(general, 'k8s.io/cluster-autoscaler/enabled'), 'a pool the autoscaler does not size is not tagged for it').to.equal(undefined);
      expect(tag(burst, 'k8s.io/cluster-autoscaler/enabled')).to.deep.include({ Value: 'true', PropagateAtLaunch: false });
      expect(tag(burst, `k8s.io/cluster-autoscaler/${EKS_NAME}`)).to.deep.include({ Value: 'owned', PropagateAtLaunch: false });

      // AL2: #cloud-config running bootstrap.sh against the cluster eks-control-plane made.
      const generalData = await templateData(ec2, GENERAL);
      expect(generalData.SecurityGroupIds ?? [], 'the EKS additional and cluster security groups').to.have.members([sgAdditional, sgCluster]);
      expect(generalData.IamInstanceProfile?.Name).to.equal(EKS_NODE_INSTANCE_PROFILE);
      expect(generalData.TagSpecifications?.find((t) => t.ResourceType === 'instance')?.Tags?.find((t) => t.Key === `kubernetes.io/cluster/${EKS_NAME}`)?.Value).to.equal('owned');
      const al2 = Buffer.from(generalData.UserData!, 'base64').toString('utf8');
      expect(al2.startsWith('#cloud-config\n')).to.equal(true);
      const runcmd = (parse(al2) as { runcmd: string[] }).runcmd;
      expect(runcmd[0]).to.equal('echo "joining eks-pools" > /etc/motd');
      const bootstrap = runcmd[1]!;
      expect(bootstrap.startsWith(`/etc/eks/bootstrap.sh ${EKS_NAME} `)).to.equal(true);
      for (const flag of [`--b64-cluster-ca ${CA}`, `--apiserver-endpoint ${ENDPOINT}`, `--kubelet-extra-args --node-labels=capflow.io/pool=general`, '--container-runtime containerd', '--service-ipv4-cidr 172.20.0.0/16', '--use-max-pods true']) {
        expect(bootstrap).to.include(flag);
      }
      expect(bootstrap).to.include(`--docker-config-json '{"auths": {"registry.example.com": {"auth": "${DOCKER_SECRET}"}}}'`);

      // AL2023: a MIME multipart for nodeadm whose NodeConfig names the cluster.
      const burstData = await templateData(ec2, BURST);
      expect(burstData.IamInstanceProfile?.Name, "CAPA's default nodes profile").to.equal(EKS_NODE_INSTANCE_PROFILE);
      expect(burstData.SecurityGroupIds ?? []).to.have.members([sgAdditional, sgCluster]);
      const mime = Buffer.from(burstData.UserData!, 'base64').toString('utf8');
      expect(mime).to.match(/^MIME-Version: 1\.0\nContent-Type: multipart\/mixed; boundary="\/\/"\n/);
      const nodeConfigPart = mime.split('\n--//').find((p) => p.includes('Content-Type: application/node.eks.aws'))!;
      const nodeConfig = parse(nodeConfigPart.slice(nodeConfigPart.indexOf('\n\n') + 2)) as { kind: string; spec: { cluster: Record<string, string>; kubelet: { flags: string[]; config: Record<string, unknown> } } };
      expect(nodeConfig.kind).to.equal('NodeConfig');
      expect(nodeConfig.spec.cluster).to.deep.equal({ name: EKS_NAME, apiServerEndpoint: ENDPOINT, certificateAuthority: CA, cidr: '172.20.0.0/16' });
      expect(nodeConfig.spec.kubelet.flags).to.deep.equal(['--node-labels=capflow.io/pool=burst', '--register-with-taints=capflow.io/burst=true:NoSchedule']);
      expect(nodeConfig.spec.kubelet.config).to.deep.equal({ clusterDNS: ['172.20.0.10'] });

      // The autoscaler scales the burst pool; a rerun leaves its size alone and changes nothing.
      await asg.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: BURST, DesiredCapacity: 4 }));
      const rerun = await run();
      expectOk(rerun);
      expect(rerun.mutating, 'a rerun changes nothing').to.deep.equal([]);
      expect((await groupsByName(asg)).get(BURST)!.DesiredCapacity, "the autoscaler's desired capacity stands").to.equal(4);

      const deleted = await run(true);
      expectOk(deleted);
      expect(deleted.mutating).to.include.members(['DeleteAutoScalingGroup', 'DeleteLaunchTemplate']);
      expect([...(await groupsByName(asg)).keys()]).to.deep.equal([]);
      const templates = await ec2.send(new DescribeLaunchTemplatesCommand({ Filters: [{ Name: 'launch-template-name', Values: [GENERAL, BURST] }] }));
      expect(templates.LaunchTemplates ?? []).to.deep.equal([]);
    } finally {
      asg.destroy();
      ec2.destroy();
    }
  });

  it('adds the autoscaler tags when the annotation comes later and removes them when it goes, the desired capacity set by the spec again', async () => {
    const workers = path.join(repo, 'clusters', 'eks', 'workers.yaml');
    const annotated = readFileSync(workers, 'utf8');
    const plain = annotated.replace('  annotations:\n    cluster.x-k8s.io/replicas-managed-by: external-autoscaler\n', '');
    expect(plain).to.not.equal(annotated);
    writeFileSync(workers, plain);
    expectOk(await run());
    const asg = new AutoScalingClient(direct(bed.moto.endpoint));
    try {
      expect(tag((await groupsByName(asg)).get(BURST)!, 'k8s.io/cluster-autoscaler/enabled')).to.equal(undefined);

      writeFileSync(workers, annotated);
      const tagged = await run();
      expectOk(tagged);
      expect(tagged.mutating).to.deep.equal(['CreateOrUpdateTags']);
      const burst = (await groupsByName(asg)).get(BURST)!;
      expect(tag(burst, 'k8s.io/cluster-autoscaler/enabled')).to.deep.include({ Value: 'true', PropagateAtLaunch: false });
      expect(tag(burst, `k8s.io/cluster-autoscaler/${EKS_NAME}`)).to.deep.include({ Value: 'owned', PropagateAtLaunch: false });

      await asg.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: BURST, DesiredCapacity: 5 }));
      writeFileSync(workers, plain);
      const untagged = await run();
      expectOk(untagged);
      expect(untagged.mutating.sort()).to.deep.equal(['DeleteTags', 'UpdateAutoScalingGroup']);
      const after = (await groupsByName(asg)).get(BURST)!;
      expect(tag(after, 'k8s.io/cluster-autoscaler/enabled')).to.equal(undefined);
      expect(tag(after, `k8s.io/cluster-autoscaler/${EKS_NAME}`)).to.equal(undefined);
      expect(after.DesiredCapacity, 'the spec owns the size again').to.equal(1);
    } finally {
      asg.destroy();
    }
  });

  it('stops with CONTROL_PLANE_MISSING (exit 2) and no AWS call when eks-control-plane has not run', async () => {
    await removeStepStatus(secrets, CLUSTER, EKS_CONTROL_PLANE_STATUS);
    const r = await run();
    expect(r.exitCode).to.equal(2);
    expect(JSON.stringify(r.summary.error)).to.include('CONTROL_PLANE_MISSING');
    expect(r.calls).to.deep.equal([]);
  });

  it('refuses an EKSConfig field nodeadm cannot take (an AL2023 pool) before any AWS call, naming the field', async () => {
    const workers = path.join(repo, 'clusters', 'eks', 'workers.yaml');
    writeFileSync(workers, readFileSync(workers, 'utf8').replace('  dnsClusterIP: 172.20.0.10\n', '  dnsClusterIP: 172.20.0.10\n  postBootstrapCommands:\n  - echo done\n'));
    const r = await run();
    expect(r.exitCode).to.equal(2);
    const error = JSON.stringify(r.summary.error);
    expect(error).to.include('EKS_FIELD_NOT_ON_AL2023');
    expect(error).to.include('EKSConfig/eks-pools-burst spec.postBootstrapCommands');
    expect(r.calls).to.deep.equal([]);
  });
});
