// moto's EKS answers 404 to CreateAddon, UpdateClusterVersion, DescribeUpdate and the access-entry
// calls, and its certificate authority data is not a PEM. The fault proxy answers those in moto's
// place (test/support/eks-stand-in.ts) in the response shapes of the real API; these tests drive
// them with the real @aws-sdk/client-eks, so every answer must parse as the SDK's models say.
import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import {
  AssociateAccessPolicyCommand,
  CreateAccessEntryCommand,
  CreateAddonCommand,
  CreateClusterCommand,
  CreateNodegroupCommand,
  DeleteAccessEntryCommand,
  DeleteAddonCommand,
  DeleteClusterCommand,
  DeleteNodegroupCommand,
  DescribeAccessEntryCommand,
  DescribeAddonCommand,
  DescribeAddonVersionsCommand,
  DescribeClusterCommand,
  DescribeNodegroupCommand,
  DescribeUpdateCommand,
  DisassociateAccessPolicyCommand,
  EKSClient,
  ListAccessEntriesCommand,
  ListAccessPoliciesCommand,
  ListAddonsCommand,
  ListAssociatedAccessPoliciesCommand,
  ListUpdatesCommand,
  UpdateAccessEntryCommand,
  UpdateAddonCommand,
  UpdateClusterConfigCommand,
  UpdateClusterVersionCommand,
  UpdateNodegroupConfigCommand,
  UpdateNodegroupVersionCommand,
  type AuthenticationMode,
} from '@aws-sdk/client-eks';
import { clientConfig } from '../support/moto.js';
import { startFaultProxy, useMotoBehindProxy } from '../support/fault-proxy.js';

const ACCOUNT = '123456789012';
const CLUSTER_ROLE = `arn:aws:iam::${ACCOUNT}:role/eks-cluster`;
const NODE_ROLE = `arn:aws:iam::${ACCOUNT}:role/eks-nodes`;
const VIEW_POLICY = 'arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy';

/** The SDK's error for a failing call: its modeled name and HTTP status. */
async function sdkError(p: Promise<unknown>): Promise<{ name: string; status: number | undefined; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { name: string; message: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, status: e.$metadata?.httpStatusCode, message: e.message };
  }
  throw new Error('expected the call to fail');
}

describe("EKS calls moto lacks, served by the fault proxy's stand-in (response shapes of the real API)", function () {
  this.timeout(60_000);
  const bed = useMotoBehindProxy();
  let eks: EKSClient;
  beforeEach(() => {
    eks = new EKSClient(clientConfig(bed.proxy.endpoint, { maxAttempts: 1 }));
  });
  afterEach(() => eks.destroy());

  async function createCluster(name: string, opts: { version?: string; authenticationMode?: AuthenticationMode; client?: EKSClient } = {}) {
    return (
      await (opts.client ?? eks).send(
        new CreateClusterCommand({
          name,
          roleArn: CLUSTER_ROLE,
          resourcesVpcConfig: { subnetIds: ['subnet-0a1', 'subnet-0b2'], endpointPublicAccess: true, endpointPrivateAccess: false },
          ...(opts.version ? { version: opts.version } : {}),
          ...(opts.authenticationMode ? { accessConfig: { authenticationMode: opts.authenticationMode, bootstrapClusterCreatorAdminPermissions: true } } : {}),
        }),
      )
    ).cluster!;
  }

  it('moto alone answers 404 to these calls (why the stand-in exists)', async () => {
    const direct = new EKSClient(clientConfig(bed.moto.endpoint, { maxAttempts: 1 }));
    try {
      await createCluster('bare', { client: direct });
      for (const call of [
        () => direct.send(new CreateAddonCommand({ clusterName: 'bare', addonName: 'vpc-cni' })),
        () => direct.send(new UpdateClusterVersionCommand({ name: 'bare', version: '1.32' })),
        () => direct.send(new DescribeUpdateCommand({ name: 'bare', updateId: 'x' })),
        () => direct.send(new CreateAccessEntryCommand({ clusterName: 'bare', principalArn: NODE_ROLE })),
      ]) {
        expect((await sdkError(call())).status).to.equal(404);
      }
    } finally {
      direct.destroy();
    }
  });

  it('DescribeCluster carries a real PEM CA, the accessConfig given at creation and the version EKS defaults to', async () => {
    const created = await createCluster('c1', { version: '1.30', authenticationMode: 'API_AND_CONFIG_MAP' });
    // EKS answers CreateCluster with the cluster CREATING, before it has an endpoint or a CA.
    expect(created).to.include({ name: 'c1', status: 'CREATING', version: '1.30' });
    expect(created.certificateAuthority?.data).to.equal(undefined);

    const c = (await eks.send(new DescribeClusterCommand({ name: 'c1' }))).cluster!;
    expect(c).to.include({ status: 'ACTIVE', version: '1.30', platformVersion: 'eks.30' });
    expect(c.accessConfig).to.deep.equal({ authenticationMode: 'API_AND_CONFIG_MAP', bootstrapClusterCreatorAdminPermissions: true });
    const pem = Buffer.from(c.certificateAuthority!.data!, 'base64').toString('utf8');
    expect(pem).to.match(/^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n?$/);
    const ca = new X509Certificate(pem);
    expect(ca.ca).to.equal(true);
    expect(ca.subject).to.equal('CN=kubernetes');
    expect(ca.verify(ca.publicKey)).to.equal(true);
    // one CA per cluster, the same at every describe
    expect((await eks.send(new DescribeClusterCommand({ name: 'c1' }))).cluster!.certificateAuthority!.data).to.equal(c.certificateAuthority!.data);

    // no version and no accessConfig: EKS's defaults (moto alone would say 1.19 and nothing)
    await createCluster('c2');
    const c2 = (await eks.send(new DescribeClusterCommand({ name: 'c2' }))).cluster!;
    expect(c2.version).to.equal('1.34');
    expect(c2.accessConfig).to.deep.equal({ authenticationMode: 'CONFIG_MAP', bootstrapClusterCreatorAdminPermissions: true });
    expect(c2.certificateAuthority!.data).to.not.equal(c.certificateAuthority!.data);

    expect(await sdkError(eks.send(new CreateClusterCommand({ name: 'old', roleArn: CLUSTER_ROLE, resourcesVpcConfig: {}, version: '1.19' })))).to.include({
      name: 'InvalidParameterException',
      status: 400,
    });
  });

  it('DescribeAddonVersions answers the recorded catalog, by addon and Kubernetes version', async () => {
    const all = (await eks.send(new DescribeAddonVersionsCommand({ kubernetesVersion: '1.31' }))).addons!;
    expect(all.map((a) => a.addonName).sort()).to.deep.equal(['aws-ebs-csi-driver', 'coredns', 'kube-proxy', 'vpc-cni']);
    const offered = (name: string) => all.find((a) => a.addonName === name)!.addonVersions!.map((v) => v.addonVersion);
    // the versions examples/clusters/eks-managed asks for
    expect(offered('vpc-cni')).to.include('v1.19.0-eksbuild.1');
    expect(offered('coredns')).to.include('v1.11.3-eksbuild.2');
    expect(offered('kube-proxy')).to.include('v1.31.2-eksbuild.3');
    for (const a of all) {
      expect(a).to.include({ publisher: 'eks', owner: 'aws' });
      for (const v of a.addonVersions!) expect(v.compatibilities!.map((c) => c.clusterVersion)).to.deep.equal(['1.31']);
      expect(a.addonVersions!.filter((v) => v.compatibilities![0]!.defaultVersion), `one default ${a.addonName}`).to.have.length(1);
    }
    const proxy = (await eks.send(new DescribeAddonVersionsCommand({ addonName: 'kube-proxy' }))).addons!;
    expect(proxy).to.have.length(1);
    expect(new Set(proxy[0]!.addonVersions!.flatMap((v) => v.compatibilities!.map((c) => c.clusterVersion)))).to.deep.equal(new Set(['1.29', '1.30', '1.31', '1.32', '1.33', '1.34']));
    const page1 = await eks.send(new DescribeAddonVersionsCommand({ maxResults: 1 }));
    const page2 = await eks.send(new DescribeAddonVersionsCommand({ maxResults: 1, nextToken: page1.nextToken }));
    expect(page1.addons![0]!.addonName).to.not.equal(page2.addons![0]!.addonName);
  });

  it('addons: CreateAddon CREATING then ACTIVE, UpdateAddon through DescribeUpdate, DeleteAddon DELETING then gone', async () => {
    await createCluster('c1', { version: '1.30' });
    const created = (
      await eks.send(new CreateAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni', addonVersion: 'v1.18.5-eksbuild.1', resolveConflicts: 'OVERWRITE', tags: { team: 'net' } }))
    ).addon!;
    expect(created).to.include({ addonName: 'vpc-cni', clusterName: 'c1', status: 'CREATING', addonVersion: 'v1.18.5-eksbuild.1' });
    expect(created.addonArn).to.match(new RegExp(`^arn:aws:eks:us-east-1:${ACCOUNT}:addon/c1/vpc-cni/[0-9a-f-]{36}$`));
    expect(created.createdAt).to.be.instanceOf(Date);
    expect(created.tags).to.deep.equal({ team: 'net' });
    // no version: the catalog's default for the cluster's Kubernetes version
    const coredns = (await eks.send(new CreateAddonCommand({ clusterName: 'c1', addonName: 'coredns', configurationValues: '{"replicaCount": 3}' }))).addon!;
    expect(coredns).to.include({ addonVersion: 'v1.11.1-eksbuild.9', configurationValues: '{"replicaCount": 3}' });

    expect((await eks.send(new DescribeAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' }))).addon!.status).to.equal('CREATING');
    expect((await eks.send(new DescribeAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' }))).addon!.status).to.equal('ACTIVE');
    expect((await eks.send(new ListAddonsCommand({ clusterName: 'c1' }))).addons).to.deep.equal(['coredns', 'vpc-cni']);

    const refused = async (input: ConstructorParameters<typeof CreateAddonCommand>[0]) => sdkError(eks.send(new CreateAddonCommand(input)));
    expect(await refused({ clusterName: 'c1', addonName: 'vpc-cni' })).to.include({ name: 'ResourceInUseException', status: 409 });
    expect(await refused({ clusterName: 'c1', addonName: 'no-such-addon' })).to.include({ name: 'InvalidParameterException', status: 400 });
    expect(await refused({ clusterName: 'c1', addonName: 'kube-proxy', addonVersion: 'v1.31.2-eksbuild.3' })).to.include({ name: 'InvalidParameterException', status: 400 });
    expect(await refused({ clusterName: 'c1', addonName: 'kube-proxy', configurationValues: 'just words' })).to.include({ name: 'InvalidParameterException', status: 400 });
    expect(await refused({ clusterName: 'nope', addonName: 'vpc-cni' })).to.include({ name: 'ResourceNotFoundException', status: 404 });

    const update = (
      await eks.send(new UpdateAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni', addonVersion: 'v1.19.0-eksbuild.1', resolveConflicts: 'PRESERVE' }))
    ).update!;
    expect(update).to.include({ status: 'InProgress', type: 'AddonUpdate' });
    expect(update.params).to.deep.equal([
      { type: 'AddonVersion', value: 'v1.19.0-eksbuild.1' },
      { type: 'ResolveConflicts', value: 'PRESERVE' },
    ]);
    expect(await sdkError(eks.send(new UpdateAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' })))).to.include({ name: 'ResourceInUseException', status: 409 });
    expect((await eks.send(new DescribeAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' }))).addon).to.include({ status: 'UPDATING', addonVersion: 'v1.18.5-eksbuild.1' });
    // an addon's update is found with its addonName only, as in EKS
    expect(await sdkError(eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: update.id! })))).to.include({ name: 'ResourceNotFoundException', status: 404 });
    expect((await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: update.id!, addonName: 'vpc-cni' }))).update!.status).to.equal('Successful');
    expect((await eks.send(new DescribeAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' }))).addon).to.include({ status: 'ACTIVE', addonVersion: 'v1.19.0-eksbuild.1' });
    expect((await eks.send(new ListUpdatesCommand({ name: 'c1', addonName: 'vpc-cni' }))).updateIds).to.deep.equal([update.id]);

    expect((await eks.send(new DeleteAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni', preserve: true }))).addon!.status).to.equal('DELETING');
    expect(bed.proxy.calls.at(-1)).to.deep.include({ action: 'DeleteAddon', mutating: true, status: 200 });
    expect((await eks.send(new DescribeAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' }))).addon!.status).to.equal('DELETING');
    expect(await sdkError(eks.send(new DescribeAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' })))).to.include({ name: 'ResourceNotFoundException', status: 404 });
    expect((await eks.send(new ListAddonsCommand({ clusterName: 'c1' }))).addons).to.deep.equal(['coredns']);
  });

  it('UpdateClusterVersion: one minor at a time; InProgress with the cluster UPDATING, then Successful at the new version', async () => {
    await createCluster('c1', { version: '1.30' });
    for (const version of ['1.32', '1.29', '1.30', '1.19']) {
      expect(await sdkError(eks.send(new UpdateClusterVersionCommand({ name: 'c1', version }))), version).to.include({ name: 'InvalidParameterException', status: 400 });
    }
    const update = (await eks.send(new UpdateClusterVersionCommand({ name: 'c1', version: '1.31' }))).update!;
    expect(update).to.include({ status: 'InProgress', type: 'VersionUpdate' });
    expect(update.params).to.deep.equal([
      { type: 'Version', value: '1.31' },
      { type: 'PlatformVersion', value: 'eks.26' },
    ]);
    expect(update.errors).to.deep.equal([]);
    expect(await sdkError(eks.send(new UpdateClusterVersionCommand({ name: 'c1', version: '1.31' })))).to.include({ name: 'ResourceInUseException', status: 409 });
    expect((await eks.send(new DescribeClusterCommand({ name: 'c1' }))).cluster).to.include({ status: 'UPDATING', version: '1.30' });
    expect((await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: update.id! }))).update).to.include({ id: update.id, status: 'Successful' });
    expect((await eks.send(new DescribeClusterCommand({ name: 'c1' }))).cluster).to.include({ status: 'ACTIVE', version: '1.31', platformVersion: 'eks.26' });
    expect((await eks.send(new ListUpdatesCommand({ name: 'c1' }))).updateIds).to.deep.equal([update.id]);
    expect(await sdkError(eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: 'no-such-update' })))).to.include({ name: 'ResourceNotFoundException', status: 404 });
  });

  it('UpdateClusterConfig answers an update (moto answers the cluster): authentication mode only forward, endpoint access merged', async () => {
    await createCluster('c1');
    const mode = (await eks.send(new UpdateClusterConfigCommand({ name: 'c1', accessConfig: { authenticationMode: 'API_AND_CONFIG_MAP' } }))).update!;
    expect(mode).to.include({ status: 'InProgress', type: 'AccessConfigUpdate' });
    expect(mode.params).to.deep.equal([{ type: 'AuthenticationMode', value: 'API_AND_CONFIG_MAP' }]);
    expect((await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: mode.id! }))).update!.status).to.equal('InProgress');
    expect((await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: mode.id! }))).update!.status).to.equal('Successful');
    expect((await eks.send(new DescribeClusterCommand({ name: 'c1' }))).cluster!.accessConfig!.authenticationMode).to.equal('API_AND_CONFIG_MAP');
    expect(await sdkError(eks.send(new UpdateClusterConfigCommand({ name: 'c1', accessConfig: { authenticationMode: 'CONFIG_MAP' } })))).to.include({
      name: 'InvalidParameterException',
      status: 400,
    });
    expect(
      await sdkError(eks.send(new UpdateClusterConfigCommand({ name: 'c1', accessConfig: { authenticationMode: 'API' }, logging: { clusterLogging: [{ types: ['api'], enabled: true }] } }))),
    ).to.include({ name: 'InvalidParameterException', status: 400 });

    const endpoint = (await eks.send(new UpdateClusterConfigCommand({ name: 'c1', resourcesVpcConfig: { endpointPrivateAccess: true } }))).update!;
    expect(endpoint).to.include({ type: 'EndpointAccessUpdate' });
    expect(endpoint.params).to.deep.equal([{ type: 'EndpointPrivateAccess', value: 'true' }]);
    expect((await eks.send(new DescribeClusterCommand({ name: 'c1' }))).cluster!.status).to.equal('UPDATING');
    await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: endpoint.id! }));
    const vpc = (await eks.send(new DescribeClusterCommand({ name: 'c1' }))).cluster!.resourcesVpcConfig!;
    expect(vpc).to.include({ endpointPrivateAccess: true, endpointPublicAccess: true });
    expect(vpc.subnetIds).to.deep.equal(['subnet-0a1', 'subnet-0b2']);
    expect(await sdkError(eks.send(new UpdateClusterConfigCommand({ name: 'c1', resourcesVpcConfig: { endpointPrivateAccess: true } })))).to.include({
      name: 'InvalidParameterException',
      status: 400,
    });
  });

  it('UpdateNodegroupVersion and UpdateNodegroupConfig: a node group follows its cluster, through DescribeUpdate with nodegroupName', async () => {
    await createCluster('c1', { version: '1.30' });
    await eks.send(new CreateNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1', nodeRole: NODE_ROLE, subnets: ['subnet-0a1'] }));
    const ng = (await eks.send(new DescribeNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1' }))).nodegroup!;
    expect(ng.version).to.equal('1.30'); // the cluster's version (moto alone: 1.19)
    expect(ng.releaseVersion).to.match(/^1\.30\.\d+-\d{8}$/);
    expect(await sdkError(eks.send(new UpdateNodegroupVersionCommand({ clusterName: 'c1', nodegroupName: 'ng1', version: '1.31' })))).to.include({
      name: 'InvalidParameterException',
      status: 400,
    });
    expect(await sdkError(eks.send(new UpdateNodegroupVersionCommand({ clusterName: 'c1', nodegroupName: 'nope' })))).to.include({ name: 'ResourceNotFoundException', status: 404 });

    const cp = (await eks.send(new UpdateClusterVersionCommand({ name: 'c1', version: '1.31' }))).update!;
    await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: cp.id! }));
    await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: cp.id! }));
    const update = (await eks.send(new UpdateNodegroupVersionCommand({ clusterName: 'c1', nodegroupName: 'ng1', version: '1.31' }))).update!;
    expect(update).to.include({ status: 'InProgress', type: 'VersionUpdate' });
    expect(update.params!.map((p) => p.type)).to.deep.equal(['Version', 'ReleaseVersion']);
    expect(update.params![1]!.value).to.match(/^1\.31\.\d+-\d{8}$/);
    expect((await eks.send(new DescribeNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1' }))).nodegroup).to.include({ status: 'UPDATING', version: '1.30' });
    expect(await sdkError(eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: update.id! })))).to.include({ name: 'ResourceNotFoundException' });
    expect((await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: update.id!, nodegroupName: 'ng1' }))).update!.status).to.equal('Successful');
    expect((await eks.send(new DescribeNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1' }))).nodegroup).to.include({ status: 'ACTIVE', version: '1.31', releaseVersion: update.params![1]!.value });
    expect((await eks.send(new ListUpdatesCommand({ name: 'c1', nodegroupName: 'ng1' }))).updateIds).to.deep.equal([update.id]);
    expect((await eks.send(new ListUpdatesCommand({ name: 'c1' }))).updateIds).to.deep.equal([cp.id]);

    // UpdateNodegroupConfig: moto applies it and forgets its update; DescribeUpdate knows it here
    const config = (await eks.send(new UpdateNodegroupConfigCommand({ clusterName: 'c1', nodegroupName: 'ng1', scalingConfig: { minSize: 1, maxSize: 4 }, labels: { addOrUpdateLabels: { pool: 'a' } } })))
      .update!;
    expect(config).to.include({ status: 'InProgress', type: 'ConfigUpdate' });
    expect(config.params).to.deep.equal([
      { type: 'MinSize', value: '1' },
      { type: 'MaxSize', value: '4' },
      { type: 'LabelsToAdd', value: '{"pool":"a"}' },
    ]);
    expect(await sdkError(eks.send(new UpdateNodegroupVersionCommand({ clusterName: 'c1', nodegroupName: 'ng1' })))).to.include({ name: 'ResourceInUseException', status: 409 });
    expect((await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: config.id!, nodegroupName: 'ng1' }))).update!.status).to.equal('InProgress');
    expect((await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: config.id!, nodegroupName: 'ng1' }))).update!.status).to.equal('Successful');
    const after = (await eks.send(new DescribeNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1' }))).nodegroup!;
    expect(after).to.include({ status: 'ACTIVE', version: '1.31' });
    expect(after.scalingConfig).to.include({ minSize: 1, maxSize: 4 });
  });

  it("access entries: lifecycle and access policies; the creator's admin entry and a node group role's EC2_LINUX entry made by EKS", async () => {
    await createCluster('c1', { authenticationMode: 'API_AND_CONFIG_MAP' });
    const creator = `arn:aws:iam::${ACCOUNT}:user/moto`; // moto's caller identity
    expect((await eks.send(new ListAccessEntriesCommand({ clusterName: 'c1' }))).accessEntries).to.deep.equal([creator]);
    expect((await eks.send(new ListAssociatedAccessPoliciesCommand({ clusterName: 'c1', principalArn: creator }))).associatedAccessPolicies!.map((p) => p.policyArn)).to.deep.equal([
      'arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy',
    ]);

    await eks.send(new CreateNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1', nodeRole: NODE_ROLE, subnets: ['subnet-0a1'] }));
    const node = (await eks.send(new DescribeAccessEntryCommand({ clusterName: 'c1', principalArn: NODE_ROLE }))).accessEntry!;
    expect(node).to.include({ clusterName: 'c1', principalArn: NODE_ROLE, type: 'EC2_LINUX', username: 'system:node:{{EC2PrivateDNSName}}' });
    expect(node.kubernetesGroups).to.deep.equal(['system:nodes']);

    const ops = `arn:aws:iam::${ACCOUNT}:role/admins/ops`; // a path: the ARN's '/' travels encoded
    const entry = (await eks.send(new CreateAccessEntryCommand({ clusterName: 'c1', principalArn: ops, kubernetesGroups: ['ops'], tags: { team: 'ops' } }))).accessEntry!;
    expect(entry).to.include({ principalArn: ops, type: 'STANDARD', username: `arn:aws:sts::${ACCOUNT}:assumed-role/ops/{{SessionName}}` });
    expect(entry.accessEntryArn).to.match(new RegExp(`^arn:aws:eks:us-east-1:${ACCOUNT}:access-entry/c1/role/${ACCOUNT}/ops/[0-9a-f-]{36}$`));
    expect(entry.createdAt).to.be.instanceOf(Date);
    expect(bed.proxy.calls.at(-1)).to.deep.include({ action: 'CreateAccessEntry', status: 200 });
    expect(await sdkError(eks.send(new CreateAccessEntryCommand({ clusterName: 'c1', principalArn: ops })))).to.include({ name: 'ResourceInUseException', status: 409 });
    expect(
      await sdkError(eks.send(new CreateAccessEntryCommand({ clusterName: 'c1', principalArn: `arn:aws:iam::${ACCOUNT}:role/x`, kubernetesGroups: ['system:masters'] }))),
    ).to.include({ name: 'InvalidParameterException', status: 400 });
    expect(await sdkError(eks.send(new CreateAccessEntryCommand({ clusterName: 'c1', principalArn: `arn:aws:iam::${ACCOUNT}:user/u`, type: 'EC2_LINUX' })))).to.include({
      name: 'InvalidParameterException',
    });

    const assoc = await eks.send(new AssociateAccessPolicyCommand({ clusterName: 'c1', principalArn: ops, policyArn: VIEW_POLICY, accessScope: { type: 'namespace', namespaces: ['default'] } }));
    expect(assoc).to.deep.include({ clusterName: 'c1', principalArn: ops });
    expect(assoc.associatedAccessPolicy).to.deep.include({ policyArn: VIEW_POLICY, accessScope: { type: 'namespace', namespaces: ['default'] } });
    expect(assoc.associatedAccessPolicy!.associatedAt).to.be.instanceOf(Date);
    expect(bed.proxy.calls.at(-1)!.params).to.include({ name: 'c1', principalArn: ops });
    expect(await sdkError(eks.send(new AssociateAccessPolicyCommand({ clusterName: 'c1', principalArn: NODE_ROLE, policyArn: VIEW_POLICY, accessScope: { type: 'cluster' } })))).to.include({
      name: 'InvalidParameterException',
    });
    expect((await eks.send(new ListAccessEntriesCommand({ clusterName: 'c1', associatedPolicyArn: VIEW_POLICY }))).accessEntries).to.deep.equal([ops]);
    expect((await eks.send(new ListAccessEntriesCommand({ clusterName: 'c1' }))).accessEntries).to.have.members([creator, NODE_ROLE, ops]);
    expect((await eks.send(new ListAccessPoliciesCommand({}))).accessPolicies!.map((p) => p.arn)).to.include(VIEW_POLICY);

    const updated = (await eks.send(new UpdateAccessEntryCommand({ clusterName: 'c1', principalArn: ops, kubernetesGroups: ['ops', 'viewers'] }))).accessEntry!;
    expect(updated.kubernetesGroups).to.deep.equal(['ops', 'viewers']);
    await eks.send(new DisassociateAccessPolicyCommand({ clusterName: 'c1', principalArn: ops, policyArn: VIEW_POLICY }));
    expect((await eks.send(new ListAssociatedAccessPoliciesCommand({ clusterName: 'c1', principalArn: ops }))).associatedAccessPolicies).to.deep.equal([]);
    await eks.send(new DeleteAccessEntryCommand({ clusterName: 'c1', principalArn: ops }));
    expect(await sdkError(eks.send(new DescribeAccessEntryCommand({ clusterName: 'c1', principalArn: ops })))).to.include({ name: 'ResourceNotFoundException', status: 404 });

    // a CONFIG_MAP cluster takes no access entries (and EKS makes none for its node groups)
    await createCluster('legacy');
    await eks.send(new CreateNodegroupCommand({ clusterName: 'legacy', nodegroupName: 'ng1', nodeRole: NODE_ROLE, subnets: ['subnet-0a1'] }));
    expect(await sdkError(eks.send(new ListAccessEntriesCommand({ clusterName: 'legacy' })))).to.include({ name: 'InvalidRequestException', status: 400 });
  });

  it('calls about a cluster moto does not know answer ResourceNotFoundException (404), as EKS does', async () => {
    for (const call of [
      () => eks.send(new DescribeAddonCommand({ clusterName: 'ghost', addonName: 'vpc-cni' })),
      () => eks.send(new ListAddonsCommand({ clusterName: 'ghost' })),
      () => eks.send(new UpdateClusterVersionCommand({ name: 'ghost', version: '1.31' })),
      () => eks.send(new DescribeUpdateCommand({ name: 'ghost', updateId: 'u' })),
      () => eks.send(new ListAccessEntriesCommand({ clusterName: 'ghost' })),
      () => eks.send(new CreateAccessEntryCommand({ clusterName: 'ghost', principalArn: NODE_ROLE })),
    ]) {
      const err = await sdkError(call());
      expect(err).to.include({ name: 'ResourceNotFoundException', status: 404 });
      expect(err.message).to.equal('No cluster found for name: ghost.');
    }
    // a cluster deleted in moto behind the stand-in's back is gone for the stand-in too
    await createCluster('c1', { authenticationMode: 'API' });
    const direct = new EKSClient(clientConfig(bed.moto.endpoint));
    await direct.send(new DeleteClusterCommand({ name: 'c1' }));
    direct.destroy();
    expect(await sdkError(eks.send(new ListAccessEntriesCommand({ clusterName: 'c1' })))).to.include({ name: 'ResourceNotFoundException' });
  });

  it('faults apply to stand-in calls as to forwarded ones, and every stand-in call is recorded', async () => {
    await createCluster('c1', { version: '1.31' });
    const { proxy } = bed;

    proxy.setFaults({ throttleFirst: 1, onlyActions: ['CreateAddon'] });
    expect(await sdkError(eks.send(new CreateAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' })))).to.include({ name: 'ThrottlingException', status: 429 });
    expect((await eks.send(new ListAddonsCommand({ clusterName: 'c1' }))).addons).to.deep.equal([]); // the throttled call did nothing
    proxy.setFaults({ serverErrorRate: 1, seed: 1, onlyActions: ['DescribeAddonVersions'] });
    expect(await sdkError(eks.send(new DescribeAddonVersionsCommand({})))).to.include({ name: 'ServerException', status: 500 });

    // killed before the answer: the addon exists all the same
    let kills = 0;
    proxy.setFaults({ killAfterMutating: { n: 1, when: 'before-response', onKill: () => kills++ } });
    const lost = await eks.send(new CreateAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' })).then(
      () => 'answered',
      () => 'lost',
    );
    expect(lost).to.equal('lost');
    expect(kills).to.equal(1);
    proxy.setFaults({});
    expect((await eks.send(new ListAddonsCommand({ clusterName: 'c1' }))).addons).to.deep.equal(['vpc-cni']);

    // killed after the answer: the caller heard it, its next call is dropped
    proxy.setFaults({ killAfterMutating: { n: 1, when: 'after-response', onKill: () => kills++, graceMs: 5000 } });
    const update = (await eks.send(new UpdateClusterVersionCommand({ name: 'c1', version: '1.32' }))).update!;
    expect(update.status).to.equal('InProgress');
    expect(await eks.send(new DescribeUpdateCommand({ name: 'c1', updateId: update.id! })).then(() => 'answered', () => 'dropped')).to.equal('dropped');
    expect(kills).to.equal(2);
    proxy.setFaults({});

    const seen = proxy.calls.map((c) => [c.service, c.action, c.mutating, c.status, c.faulted]);
    expect(seen).to.deep.equal([
      ['eks', 'CreateCluster', true, 200, undefined],
      ['eks', 'CreateAddon', true, 429, 'throttle'],
      ['eks', 'ListAddons', false, 200, undefined],
      ['eks', 'DescribeAddonVersions', false, 500, 'server-error'],
      ['eks', 'CreateAddon', true, 0, 'killed-before-response'],
      ['eks', 'ListAddons', false, 200, undefined],
      ['eks', 'UpdateClusterVersion', true, 200, 'killed-after-response'],
      ['eks', 'DescribeUpdate', false, 0, 'dropped-after-kill'],
    ]);
    expect(proxy.calls[4]!.params).to.include({ name: 'c1', addonName: 'vpc-cni' });
    expect(proxy.calls[6]!.params).to.include({ name: 'c1', version: '1.32' });
  });

  it('with createDescribes and deleteDescribes, a cluster shows CREATING and DELETING as long as asked', async () => {
    const proxy = await startFaultProxy({ target: bed.moto.endpoint, eks: { createDescribes: 2, deleteDescribes: 1, settleAfterDescribes: 0 } });
    const slow = new EKSClient(clientConfig(proxy.endpoint, { maxAttempts: 1 }));
    try {
      await createCluster('c1', { client: slow });
      // the cluster turns ACTIVE once its last CREATING describe is out
      for (let i = 0; i < 2; i++) {
        expect(await sdkError(slow.send(new CreateAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' })))).to.include({ name: 'InvalidRequestException', status: 400 });
        const c = (await slow.send(new DescribeClusterCommand({ name: 'c1' }))).cluster!;
        expect(c.status).to.equal('CREATING');
        expect(c.endpoint).to.equal(undefined);
        expect(c.certificateAuthority?.data).to.equal(undefined);
      }
      const active = (await slow.send(new DescribeClusterCommand({ name: 'c1' }))).cluster!;
      expect(active.status).to.equal('ACTIVE');
      expect(active.certificateAuthority!.data).to.be.a('string');
      expect((await slow.send(new CreateAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' }))).addon!.status).to.equal('CREATING');
      expect((await slow.send(new DescribeAddonCommand({ clusterName: 'c1', addonName: 'vpc-cni' }))).addon!.status).to.equal('ACTIVE'); // settleAfterDescribes 0

      await slow.send(new CreateNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1', nodeRole: NODE_ROLE, subnets: ['subnet-0a1'] }));
      expect((await slow.send(new DeleteNodegroupCommand({ clusterName: 'c1', nodegroupName: 'ng1' }))).nodegroup!.status).to.equal('DELETING');
      expect((await slow.send(new DeleteClusterCommand({ name: 'c1' }))).cluster!.status).to.equal('DELETING');
      expect((await slow.send(new DescribeClusterCommand({ name: 'c1' }))).cluster!.status).to.equal('DELETING');
      expect(await sdkError(slow.send(new DescribeClusterCommand({ name: 'c1' })))).to.include({ name: 'ResourceNotFoundException', status: 404 });
    } finally {
      slow.destroy();
      await proxy.stop();
    }
  });
});
