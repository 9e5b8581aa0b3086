/**
 * Who may reach an EKS cluster that reads the aws-auth ConfigMap: eks-control-plane writes the
 * spec's iamAuthenticatorConfig and the self-managed node pools' role into kube-system/aws-auth
 * through the cluster's own API, as the identity that runs the step.
 *
 * The peers: moto (IAM users, access keys, instance profiles, STS GetCallerIdentity), the fault
 * proxy's EKS stand-in (its DescribeCluster names a real kube-apiserver as the cluster's endpoint
 * and CA; EKS's access entries), and that kube-apiserver (RBAC) with the test bed's stand-in for
 * EKS's token authenticator as its token webhook (test/support/eks-authenticator.ts): it checks
 * the presigned STS token's signature as STS would, asks moto who signed it and maps the ARN
 * through aws-auth, the creator as system:masters. So a mapping is proven by a request of the
 * mapped IAM user being let in with its groups, not by reading the ConfigMap back.
 */
import { expect } from 'chai';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DescribeAccessEntryCommand, EKSClient, ListAccessEntriesCommand } from '@aws-sdk/client-eks';
import { AddRoleToInstanceProfileCommand, CreateAccessKeyCommand, CreateInstanceProfileCommand, CreateRoleCommand, CreateUserCommand, IAMClient } from '@aws-sdk/client-iam';
import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import type { Executor } from '../../src/core/executor.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { readStepStatus } from '../../src/core/status.js';
import { AWS_AUTH_MANAGED_ANNOTATION, NODE_USERNAME } from '../../src/aws/eks-aws-auth.js';
import { tokenKubeconfig } from '../../src/aws/eks-kubeconfig.js';
import { makeEksToken } from '../../src/aws/eks-token.js';
import { EKS_NODE_INSTANCE_PROFILE } from '../../src/aws/iam-roles.js';
import { kubeConfigFrom } from '../../src/bootstrap/workload.js';
import { eksControlPlane } from '../../executors/eks-control-plane.js';
import { provisionVpc } from '../../executors/provision-vpc.js';
import type { EksControlPlaneStatus } from '../../executors/aws-step.js';
import { clientConfig, startMoto, type Moto } from '../support/moto.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';
import { startEksAuthenticator, type EksAuthenticator } from '../support/eks-authenticator.js';
import { runStepVia, type StepRun } from '../support/step-run.js';

const CLUSTER = 'eks-pools';
const REGION = 'eu-west-1';
const ACCOUNT = '123456789012';
const REVISION = '0123456789abcdef0123456789abcdef01234567';
const EXAMPLE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'examples', 'clusters', 'eks-machine-pool');
// moto's credentials ('testing') sign as its default user: the cluster's creator.
const CREATOR = `arn:aws:iam::${ACCOUNT}:user/moto`;
const NODE_ROLE = `arn:aws:iam::${ACCOUNT}:role/${EKS_NODE_INSTANCE_PROFILE}`;
const VIEWERS = 'capflow:viewers';

type Run = StepRun;

interface Key {
  accessKeyId: string;
  secretAccessKey: string;
}

describe('EKS aws-auth: the spec\'s IAM mappings and the self-managed nodes\' role, proven by requests through a real kube-apiserver whose token webhook is the test bed\'s stand-in for EKS\'s authenticator (endpoint and access entries from the fault proxy stand-in)', function () {
  this.timeout(180_000);
  let moto: Moto;
  let proxy: FaultProxy;
  let env: Envtest;
  let authn: EksAuthenticator;
  let webhookDir: string;
  let repo: string;
  let secretsDir: string;
  let secrets: LocalSecretStore;
  const keys = new Map<string, string>([['testing', 'testing']]);
  let alice: Key;
  let bob: Key;
  const controlPlaneFile = () => path.join(repo, 'clusters', 'eks', 'control-plane.yaml');
  const iam = () => new IAMClient({ ...clientConfig(proxy.endpoint), region: REGION });
  const admin = () => env.makeKubeConfig().makeApiClient(CoreV1Api);

  before(async () => {
    moto = await startMoto({ iamManagedPolicies: true });
    authn = await startEksAuthenticator({ eksClusterName: CLUSTER, motoEndpoint: moto.endpoint, secretOf: (id) => keys.get(id), creatorArn: CREATOR });
    webhookDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-authn-'));
    env = await startEnvtest({ apiserverArgs: authn.apiserverArgs(webhookDir) });
    authn.useAdmin(env.makeKubeConfig());
    proxy = await startFaultProxy({ target: moto.endpoint, eks: { workloadApi: ({ name }) => (name === CLUSTER ? { endpoint: env.server, caPem: env.caCert } : undefined) } });
    // The group the spec maps alice into may read pods, nothing more (its own role: the built-in
    // `view` is filled by kube-controller-manager's aggregation, which envtest does not run).
    const rbac = env.makeKubeConfig().makeApiClient(RbacAuthorizationV1Api);
    await rbac.createClusterRole({ body: { metadata: { name: 'pod-reader' }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list'] }] } });
    await rbac.createClusterRoleBinding({
      body: { metadata: { name: 'capflow-viewers' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'pod-reader' }, subjects: [{ kind: 'Group', name: VIEWERS, apiGroup: 'rbac.authorization.k8s.io' }] },
    });
  });
  after(async () => {
    await proxy?.stop();
    await env?.stop();
    await authn?.stop();
    await moto?.stop();
    if (webhookDir) rmSync(webhookDir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await moto.reset();
    proxy.reset();
    await admin().deleteNamespacedConfigMap({ name: 'aws-auth', namespace: 'kube-system' }).catch(() => undefined);
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-auth-repo-'));
    cpSync(EXAMPLE, path.join(repo, 'clusters', 'eks'), { recursive: true });
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-eks-auth-secrets-'));
    secrets = new LocalSecretStore(secretsDir);
    // The IAM world: two people, and the AWS provider's default node role behind its instance profile.
    alice = await user('alice');
    bob = await user('bob');
    await iam().send(new CreateRoleCommand({ RoleName: EKS_NODE_INSTANCE_PROFILE, AssumeRolePolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }] }) }));
    await iam().send(new CreateInstanceProfileCommand({ InstanceProfileName: EKS_NODE_INSTANCE_PROFILE }));
    await iam().send(new AddRoleToInstanceProfileCommand({ InstanceProfileName: EKS_NODE_INSTANCE_PROFILE, RoleName: EKS_NODE_INSTANCE_PROFILE }));
  });
  afterEach(() => {
    rmSync(repo, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
  });

  async function user(name: string): Promise<Key> {
    await iam().send(new CreateUserCommand({ UserName: name }));
    const key = (await iam().send(new CreateAccessKeyCommand({ UserName: name }))).AccessKey!;
    keys.set(key.AccessKeyId!, key.SecretAccessKey!);
    return { accessKeyId: key.AccessKeyId!, secretAccessKey: key.SecretAccessKey! };
  }

  function mapAlice(extra = ''): void {
    appendFileSync(controlPlaneFile(), `${extra}  iamAuthenticatorConfig:\n    mapUsers:\n    - userarn: arn:aws:iam::${ACCOUNT}:user/alice\n      username: alice\n      groups:\n      - ${VIEWERS}\n`);
  }

  const run = (step: Executor): Promise<Run> => runStepVia({ proxy, repo, clusterPath: 'clusters/eks', region: REGION, revision: REVISION, secrets }, step);
  function expectOk(r: Run): void {
    expect(r.exitCode, `${JSON.stringify(r.summary.error)}\n${r.log.slice(-3000)}`).to.equal(0);
  }

  /** What the API server answers a request signed by these credentials for this cluster: 200, 401 or 403. */
  let lastSignedSecond = Number.MAX_SAFE_INTEGER;
  async function listPodsAs(key: Key, eksClusterName = CLUSTER): Promise<number> {
    // kube-apiserver keeps an accepted token for 10 s; each request signs a token of its own (a
    // second no earlier token used, well within the 15 minutes), so every one is reviewed afresh.
    lastSignedSecond = Math.min(Math.floor(Date.now() / 1000), lastSignedSecond - 1);
    const { token } = await makeEksToken({ clusterName: eksClusterName, region: REGION, credentials: key, now: new Date(lastSignedSecond * 1000) });
    const kc = kubeConfigFrom(tokenKubeconfig({ clusterName: CLUSTER, eksClusterName: CLUSTER, region: REGION, endpoint: env.server, certificateAuthorityData: Buffer.from(env.caCert).toString('base64') }, token));
    try {
      await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: 'default' });
      return 200;
    } catch (err) {
      return (err as { code?: number }).code ?? -1;
    }
  }

  async function awsAuth() {
    const cm = await admin().readNamespacedConfigMap({ name: 'aws-auth', namespace: 'kube-system' });
    return {
      resourceVersion: cm.metadata?.resourceVersion,
      managed: JSON.parse(cm.metadata?.annotations?.[AWS_AUTH_MANAGED_ANNOTATION] ?? '[]') as string[],
      mapRoles: (parseYaml(cm.data?.mapRoles ?? '') ?? []) as Array<{ rolearn: string; username: string; groups: string[] }>,
      mapUsers: (parseYaml(cm.data?.mapUsers ?? '') ?? []) as Array<{ userarn: string; username: string; groups: string[] }>,
    };
  }

  it('a config_map cluster: aws-auth maps the pools\' node role (system:node, bootstrappers and nodes) and alice into her group; alice gets in with it, bob and tokens for another cluster or altered do not; a rerun writes nothing', async () => {
    mapAlice();
    expectOk(await run(provisionVpc));
    const cp = await run(eksControlPlane);
    expectOk(cp);

    const map = await awsAuth();
    expect(map.mapRoles).to.deep.equal([{ rolearn: NODE_ROLE, username: NODE_USERNAME, groups: ['system:bootstrappers', 'system:nodes'] }]);
    expect(map.mapUsers).to.deep.equal([{ userarn: `arn:aws:iam::${ACCOUNT}:user/alice`, username: 'alice', groups: [VIEWERS] }]);
    expect(map.managed.sort()).to.deep.equal([NODE_ROLE, `arn:aws:iam::${ACCOUNT}:user/alice`].sort());
    const status = await readStepStatus<EksControlPlaneStatus>(secrets, CLUSTER, 'eks-control-plane');
    expect(status?.awsAuthManaged?.sort()).to.deep.equal(map.managed.sort());
    // The step reached the API as the cluster's creator (system:masters), by an EKS token.
    expect(authn.reviews.some((r) => r.authenticated && r.arn === CREATOR && r.groups?.includes('system:masters'))).to.equal(true);

    expect(await listPodsAs(alice), 'alice, mapped into a group that may view').to.equal(200);
    const aliceReview = authn.reviews.at(-1)!;
    expect(aliceReview).to.include({ authenticated: true, username: 'alice' });
    expect(aliceReview.groups).to.include(VIEWERS);
    expect(await listPodsAs(bob), 'bob, not mapped').to.equal(401);
    expect(await listPodsAs(alice, 'another-cluster'), 'alice, with a token made for another cluster').to.equal(401);
    expect(authn.reviews.at(-1)!.error).to.match(/signature does not match/);

    const again = await run(eksControlPlane);
    expectOk(again);
    expect(again.calls.filter((c) => c.mutating).map((c) => c.action), 'AWS').to.deep.equal([]);
    expect((await awsAuth()).resourceVersion, 'aws-auth untouched').to.equal(map.resourceVersion);
  });

  it('entries others wrote stay; a mapping the spec drops is taken back, and its user is refused on the next request', async () => {
    mapAlice();
    expectOk(await run(provisionVpc));
    expectOk(await run(eksControlPlane));
    // What EKS adds for a managed node group's role, and a person's own line: not capflow's.
    const theirs = { rolearn: `arn:aws:iam::${ACCOUNT}:role/ops`, username: 'ops:{{SessionName}}', groups: ['system:masters'] };
    const cm = await admin().readNamespacedConfigMap({ name: 'aws-auth', namespace: 'kube-system' });
    cm.data!.mapRoles = `${cm.data!.mapRoles}- rolearn: ${theirs.rolearn}\n  username: "${theirs.username}"\n  groups: [system:masters]\n`;
    await admin().replaceNamespacedConfigMap({ name: 'aws-auth', namespace: 'kube-system', body: cm });
    expect(await listPodsAs(alice)).to.equal(200);

    // alice leaves the spec
    const text = readFileSync(controlPlaneFile(), 'utf8');
    const without = text.slice(0, text.indexOf('  iamAuthenticatorConfig:'));
    rmSync(controlPlaneFile());
    appendFileSync(controlPlaneFile(), without);
    const cp = await run(eksControlPlane);
    expectOk(cp);
    const map = await awsAuth();
    expect(map.mapUsers, 'alice taken back').to.deep.equal([]);
    expect(map.mapRoles.map((r) => r.rolearn), 'the node role kept, the ops line kept').to.deep.equal([NODE_ROLE, theirs.rolearn]);
    expect(map.managed).to.deep.equal([NODE_ROLE]);
    expect(cp.log).to.include(`-arn:aws:iam::${ACCOUNT}:user/alice`);
    expect(await listPodsAs(alice), 'alice, no longer mapped').to.equal(401);
  });

  it('api_and_config_map: the node role is an EC2_LINUX access entry (stand-in) and alice stays in aws-auth; under api the mappings are refused at control-plane.yaml:line before any call', async () => {
    mapAlice('  accessConfig:\n    authenticationMode: api_and_config_map\n');
    expectOk(await run(provisionVpc));
    expectOk(await run(eksControlPlane));
    const eks = new EKSClient({ ...clientConfig(proxy.endpoint), region: REGION });
    const entries = (await eks.send(new ListAccessEntriesCommand({ clusterName: CLUSTER }))).accessEntries ?? [];
    expect(entries).to.include(NODE_ROLE);
    expect((await eks.send(new DescribeAccessEntryCommand({ clusterName: CLUSTER, principalArn: NODE_ROLE }))).accessEntry?.type).to.equal('EC2_LINUX');
    const map = await awsAuth();
    expect(map.mapRoles, 'nodes come in by their access entry').to.deep.equal([]);
    expect(map.mapUsers.map((u) => u.userarn)).to.deep.equal([`arn:aws:iam::${ACCOUNT}:user/alice`]);
    expect(await listPodsAs(alice)).to.equal(200);

    const text = readFileSync(controlPlaneFile(), 'utf8').replace('authenticationMode: api_and_config_map', 'authenticationMode: api');
    rmSync(controlPlaneFile());
    appendFileSync(controlPlaneFile(), text);
    const refused = await run(eksControlPlane);
    expect(refused.exitCode).to.equal(2);
    expect(JSON.stringify(refused.summary.error)).to.match(/control-plane\.yaml:\d+:\d+/).and.include('spec.iamAuthenticatorConfig');
    expect(refused.calls, 'no AWS call').to.deep.equal([]);
  });
});
