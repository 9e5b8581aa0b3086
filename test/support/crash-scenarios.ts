/**
 * The crash suite's scenarios (test/support/crash-suite.ts): every AWS-calling step, create and
 * delete, each from the world it starts from. Shared by test/integration/crash-suite.test.ts
 * (sample points) and bench/crash-suite.bench.ts (all points).
 *
 * - provision-vpc: the aws-self-managed example (3 zones: 6 subnets, 3 NAT gateways, the API load balancer).
 * - launch-nodes (machines): the same cluster made small (1 control plane machine, md-0 of 2 over two
 *   zones, md-spot of 0), placeholder user data (no bootstrap step yet).
 * - launch-nodes (MachinePool): the aws-machinepool example (1 control plane machine, a launch
 *   template and an Auto Scaling group of 3), placeholder user data.
 * - eks-control-plane, eks-node-groups: the eks-managed example (and one node group on its own launch
 *   template); the EKS calls moto lacks (addons, updates) come from the fault proxy's EKS stand-in,
 *   which the kills reach like any other call.
 * - install-addons (crash-kube.ts: a kube-apiserver, no AWS): install-addons.test.ts's addons (a
 *   ClusterResourceSet, the test chart as db and web) installed; its delete, web removed from Git and pruned.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { CreateKeyPairCommand, DescribeImagesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DescribeAddonCommand, DescribeClusterCommand, DescribeNodegroupCommand, EKSClient, ListAddonsCommand, ListClustersCommand, ListNodegroupsCommand } from '@aws-sdk/client-eks';
import { IAMClient, ListAttachedRolePoliciesCommand, ListOpenIDConnectProvidersCommand, ListRolesCommand } from '@aws-sdk/client-iam';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { readStepStatus } from '../../src/core/status.js';
import { ADDON_LABEL } from '../../src/addons/apply.js';
import type { AddonsStatus } from '../../src/addons/install.js';
import { provisionVpc } from '../../executors/provision-vpc.js';
import { launchNodes } from '../../executors/launch-nodes.js';
import { eksControlPlane } from '../../executors/eks-control-plane.js';
import { eksNodeGroups } from '../../executors/eks-node-groups.js';
import { bootstrapSecretName } from '../../executors/aws-step.js';
import type { CrashBed } from './crash-beds.js';
import { canonical, ec2World, laneFrom, mustRun, type Lane, type Scenario } from './crash-suite.js';
import { runKubeStep, type KubeBed, type KubeLane, type KubeScenario } from './crash-kube.js';
import { REPO_ROOT } from './tools.js';
import { minimalAws } from '../fixtures/spec/support.js';
import { clientConfig } from './moto.js';
import { managedNodeGroupYaml } from '../fixtures/eks-node-group.js';
import { addonsYaml } from './addons-fixture.js';

const PLACEHOLDER = '#cloud-config\n# placeholder user data: no bootstrap step yet\n';

// ---- provision-vpc -----------------------------------------------------------------------------

export const SELF_MANAGED = { cluster: 'aws-dev', region: 'us-east-1' };

const network = (): Lane => laneFrom('aws-self-managed', 'clusters/dev', SELF_MANAGED.region);

export const provisionVpcCreate: Scenario = {
  step: provisionVpc,
  phase: 'create',
  prepare: async () => network(),
  snapshot: (bed, lane) => ec2World(bed.moto.endpoint, lane.region),
};

export const provisionVpcDelete: Scenario = {
  step: provisionVpc,
  phase: 'delete',
  async prepare(bed) {
    const lane = network();
    await mustRun(bed, provisionVpc, lane, 'create', {});
    return lane;
  },
  snapshot: (bed, lane) => ec2World(bed.moto.endpoint, lane.region),
};

// ---- launch-nodes ------------------------------------------------------------------------------

/** moto's first built-in x86_64 image (the same in every moto): pinned, so machine names match across beds. */
async function imageAndKey(endpoint: string, region: string): Promise<string> {
  const ec2 = new EC2Client({ ...clientConfig(endpoint), region });
  try {
    const ami = (await ec2.send(new DescribeImagesCommand({ Owners: ['amazon'], Filters: [{ Name: 'architecture', Values: ['x86_64'] }] }))).Images![0]!.ImageId!;
    await ec2.send(new CreateKeyPairCommand({ KeyName: 'capflow-dev' }));
    return ami;
  } finally {
    ec2.destroy();
  }
}

const NODES_PARAMS = { 'poll-interval': '20ms' };

/** The small self-managed cluster with its network made and placeholder user data. */
async function machinesWorld(bed: CrashBed): Promise<Lane> {
  const lane = laneFrom('aws-self-managed', 'clusters/dev', SELF_MANAGED.region, NODES_PARAMS);
  const ami = await imageAndKey(bed.moto.endpoint, lane.region);
  const file = (f: string) => path.join(lane.repo, lane.clusterPath, f);
  // Small: 1 control plane machine, md-0 of 2, md-spot of 0; no instance profiles (moto would want IAM ones).
  const cp = readFileSync(file('control-plane.yaml'), 'utf8').replace('replicas: 3', 'replicas: 1');
  const workers = readFileSync(file('workers.yaml'), 'utf8')
    .replace('replicas: 3', 'replicas: 2')
    .replace('replicas: 2\n  selector:\n    matchLabels: {}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 25%', 'replicas: 0\n  selector:\n    matchLabels: {}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 25%');
  for (const [f, text] of [['control-plane.yaml', cp], ['workers.yaml', workers]] as const) {
    writeFileSync(file(f), text.replace(/\n {6}iamInstanceProfile: .*\n/g, '\n').replace(/(\n {6}instanceType: .*\n)/g, `$1      ami:\n        id: ${ami}\n`));
  }
  await mustRun(bed, provisionVpc, lane, 'create', {});
  await new LocalSecretStore(lane.secretsDir).put(bootstrapSecretName(SELF_MANAGED.cluster), { 'control-plane': PLACEHOLDER, 'aws-dev-md-0': PLACEHOLDER, 'aws-dev-md-spot': PLACEHOLDER });
  return lane;
}

export const POOL = { cluster: 'aws-pool', pool: 'aws-pool-mp-0', region: 'eu-west-1' };

/** The aws-machinepool example with its network made and placeholder user data. */
async function poolWorld(bed: CrashBed): Promise<Lane> {
  const lane = laneFrom('aws-machinepool', 'clusters/pool', POOL.region, NODES_PARAMS);
  const ami = await imageAndKey(bed.moto.endpoint, lane.region);
  for (const f of ['control-plane.yaml', 'workers.yaml']) {
    const file = path.join(lane.repo, lane.clusterPath, f);
    writeFileSync(file, readFileSync(file, 'utf8').replace(/(\n( +)instanceType: (t3|m6i)\.large\n)/, `$1$2ami:\n$2  id: ${ami}\n`).replace(/\n +iamInstanceProfile: .*/g, ''));
  }
  await mustRun(bed, provisionVpc, lane, 'create', {});
  await new LocalSecretStore(lane.secretsDir).put(bootstrapSecretName(POOL.cluster), { 'control-plane': PLACEHOLDER, [POOL.pool]: PLACEHOLDER });
  return lane;
}

const created = (world: (bed: CrashBed) => Promise<Lane>) => async (bed: CrashBed) => {
  const lane = await world(bed);
  await mustRun(bed, launchNodes, lane);
  return lane;
};

// Few calls (4 and 5): every one, both ways, as the old matrix did.
export const launchNodesCreate: Scenario = {
  step: launchNodes,
  phase: 'create',
  label: 'launch-nodes create (machines)',
  points: 'all',
  prepare: machinesWorld,
  snapshot: (bed, lane) => ec2World(bed.moto.endpoint, lane.region),
};
export const launchNodesDelete: Scenario = {
  step: launchNodes,
  phase: 'delete',
  label: 'launch-nodes delete (machines)',
  points: 'all',
  prepare: created(machinesWorld),
  snapshot: (bed, lane) => ec2World(bed.moto.endpoint, lane.region),
};
export const launchNodesPoolCreate: Scenario = {
  step: launchNodes,
  phase: 'create',
  label: 'launch-nodes create (MachinePool)',
  points: 'all',
  prepare: poolWorld,
  snapshot: (bed, lane) => ec2World(bed.moto.endpoint, lane.region),
};
export const launchNodesPoolDelete: Scenario = {
  step: launchNodes,
  phase: 'delete',
  label: 'launch-nodes delete (MachinePool)',
  points: 'all',
  prepare: created(poolWorld),
  snapshot: (bed, lane) => ec2World(bed.moto.endpoint, lane.region),
};

// ---- EKS ---------------------------------------------------------------------------------------

export const EKS = { cluster: 'eks-prod', region: 'us-west-2' };

/** What the EKS steps make, read through the bed's proxy (moto and the stand-in), ids and times left out. */
export async function eksWorld(proxyEndpoint: string, region = EKS.region, prefix = EKS.cluster): Promise<{ clusters: unknown[]; roles: unknown[]; providers: number }> {
  const config = { ...clientConfig(proxyEndpoint), region };
  const eks = new EKSClient(config);
  const iam = new IAMClient(config);
  try {
    const clusters = [];
    for (const name of (await eks.send(new ListClustersCommand({}))).clusters ?? []) {
      const c = (await eks.send(new DescribeClusterCommand({ name }))).cluster!;
      const groups = [];
      for (const g of (await eks.send(new ListNodegroupsCommand({ clusterName: name }))).nodegroups ?? []) {
        const ng = (await eks.send(new DescribeNodegroupCommand({ clusterName: name, nodegroupName: g }))).nodegroup!;
        groups.push({ name: g, status: ng.status, version: ng.version, capacityType: ng.capacityType, scaling: ng.scalingConfig, tags: ng.tags });
      }
      const addons = [];
      for (const a of (await eks.send(new ListAddonsCommand({ clusterName: name }))).addons ?? []) {
        const addon = (await eks.send(new DescribeAddonCommand({ clusterName: name, addonName: a }))).addon!;
        addons.push({ name: a, version: addon.addonVersion, status: addon.status });
      }
      clusters.push({ name, version: c.version, status: c.status, roleArn: c.roleArn, tags: c.tags, groups: groups.sort((a, b) => a.name.localeCompare(b.name)), addons: addons.sort((a, b) => a.name.localeCompare(b.name)) });
    }
    const roles = [];
    for (const r of ((await iam.send(new ListRolesCommand({}))).Roles ?? []).filter((x) => x.RoleName?.startsWith(prefix))) {
      const policies = ((await iam.send(new ListAttachedRolePoliciesCommand({ RoleName: r.RoleName! }))).AttachedPolicies ?? []).map((p) => p.PolicyName).sort();
      roles.push({ name: r.RoleName, policies });
    }
    const providers = ((await iam.send(new ListOpenIDConnectProvidersCommand({}))).OpenIDConnectProviderList ?? []).length;
    return { clusters, roles: roles.sort((a, b) => String(a.name).localeCompare(String(b.name))), providers };
  } finally {
    eks.destroy();
    iam.destroy();
  }
}

/** One managed node group with its own launch template (as eks-launch-template.test.ts has it). */
export const LAUNCH_TEMPLATE_NODE_GROUP = managedNodeGroupYaml(`  capacityType: onDemand
  awsLaunchTemplate:
    instanceType: m6i.large
    sshKeyName: capflow-prod
    rootVolume:
      size: 50
      type: gp3
`);

/** The eks-managed example's network; `nodeGroups`: node-groups.yaml replaced. */
const eksNetwork = async (bed: CrashBed, nodeGroups?: string): Promise<Lane> => {
  const lane = laneFrom('eks-managed', 'clusters/eks', EKS.region, { 'poll-interval': '20ms' });
  if (nodeGroups !== undefined) writeFileSync(path.join(lane.repo, lane.clusterPath, 'node-groups.yaml'), nodeGroups);
  await mustRun(bed, provisionVpc, lane, 'create', {});
  return lane;
};
const eksSnapshot = async (bed: CrashBed, lane: Lane) => ({ eks: await eksWorld(bed.proxy.endpoint, lane.region), ec2: await ec2World(bed.moto.endpoint, lane.region) });
const withControlPlane = async (bed: CrashBed, nodeGroups?: string) => {
  const lane = await eksNetwork(bed, nodeGroups);
  await mustRun(bed, eksControlPlane, lane);
  return lane;
};
const withNodeGroups = async (bed: CrashBed, nodeGroups?: string) => {
  const lane = await withControlPlane(bed, nodeGroups);
  await mustRun(bed, eksNodeGroups, lane);
  return lane;
};
const eksCreating = (a: string) => a.startsWith('Create');

// The old EKS matrix killed at every call: so does this one, in CI too.
export const eksControlPlaneCreate: Scenario = { step: eksControlPlane, phase: 'create', points: 'all', iamManagedPolicies: true, creating: eksCreating, prepare: eksNetwork, snapshot: eksSnapshot };
export const eksControlPlaneDelete: Scenario = { step: eksControlPlane, phase: 'delete', points: 'all', iamManagedPolicies: true, prepare: withControlPlane, snapshot: eksSnapshot };
export const eksNodeGroupsCreate: Scenario = { step: eksNodeGroups, phase: 'create', points: 'all', iamManagedPolicies: true, creating: eksCreating, prepare: (bed) => withControlPlane(bed), snapshot: eksSnapshot };
export const eksNodeGroupsDelete: Scenario = { step: eksNodeGroups, phase: 'delete', points: 'all', iamManagedPolicies: true, prepare: (bed) => withNodeGroups(bed), snapshot: eksSnapshot };
// A node group on its own launch template: the template is made first, the group names it.
export const eksNodeGroupsTemplateCreate: Scenario = {
  ...eksNodeGroupsCreate,
  label: 'eks-node-groups create (launch template)',
  prepare: (bed) => withControlPlane(bed, LAUNCH_TEMPLATE_NODE_GROUP),
};
export const eksNodeGroupsTemplateDelete: Scenario = {
  ...eksNodeGroupsDelete,
  label: 'eks-node-groups delete (launch template)',
  prepare: (bed) => withNodeGroups(bed, LAUNCH_TEMPLATE_NODE_GROUP),
};

export const AWS_SCENARIOS: readonly Scenario[] = [provisionVpcCreate, provisionVpcDelete, launchNodesCreate, launchNodesDelete, launchNodesPoolCreate, launchNodesPoolDelete];
export const EKS_SCENARIOS: readonly Scenario[] = [eksControlPlaneCreate, eksControlPlaneDelete, eksNodeGroupsCreate, eksNodeGroupsDelete, eksNodeGroupsTemplateCreate, eksNodeGroupsTemplateDelete];

// ---- install-addons (a workload kube-apiserver, no AWS: crash-kube.ts) --------------------------

/**
 * Every case's namespace: the same name, so that the charts' checksums of their rendered ConfigMaps
 * (which name it) compare; a case starts once the last one's is deleted and gone (the namespace
 * controller runs on the kube bed).
 */
const ADDONS_NAMESPACE = 'apps';

/** A fresh repo (the test chart, the cluster folder) and secret store (the cluster's kubeconfig). */
async function addonsLane(bed: KubeBed): Promise<KubeLane> {
  const repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-crash-repo-'));
  const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-crash-secrets-'));
  // the test chart without its CRD: db and web are two releases of it, and a CRD has one owner
  cpSync(path.join(REPO_ROOT, 'test', 'fixtures', 'charts', 'tiny'), path.join(repo, 'charts', 'tiny'), { recursive: true, filter: (src) => !src.includes(`${path.sep}crds`) });
  const folder = path.join(repo, 'clusters', 'dev');
  mkdirSync(folder, { recursive: true });
  for (const [file, text] of Object.entries(minimalAws())) writeFileSync(path.join(folder, file), text);
  writeFileSync(path.join(folder, 'addons.yaml'), addonsYaml());
  // the cluster's admin kubeconfig, where kubeadm-init keeps it
  await new LocalSecretStore(secretsDir).put('dev-kubeconfig', { value: bed.env.kubeconfig });
  return { repo, clusterPath: 'clusters/dev', secretsDir, params: { 'poll-interval': '200ms' }, names: new Map() };
}

type Meta = { name?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; deletionTimestamp?: Date };

/** The labelled ConfigMaps, Deployments and Namespace of this case (and kube-system's), without what the API server or controllers set, and the step's status. */
async function addonsSnapshot(bed: KubeBed, lane: KubeLane): Promise<unknown> {
  const ns = ADDONS_NAMESPACE;
  const core = bed.kc.makeApiClient(CoreV1Api);
  const apps = bed.kc.makeApiClient(AppsV1Api);
  const sel = { labelSelector: ADDON_LABEL };
  const mine = (m: Meta | undefined) => !m?.deletionTimestamp && (m?.namespace === ns || m?.namespace === 'kube-system' || (m?.namespace === undefined && m?.name === ns));
  const meta = (m: Meta | undefined) => ({ name: m?.name, namespace: m?.namespace, labels: m?.labels, annotations: m?.annotations });
  const objects = [
    ...(await core.listConfigMapForAllNamespaces(sel)).items.filter((o) => mine(o.metadata)).map((o) => ({ kind: 'ConfigMap', ...meta(o.metadata), data: o.data })),
    ...(await apps.listDeploymentForAllNamespaces(sel)).items.filter((o) => mine(o.metadata)).map((o) => ({ kind: 'Deployment', ...meta(o.metadata), spec: o.spec })),
    ...(await core.listNamespace(sel)).items.filter((o) => mine(o.metadata)).map((o) => ({ kind: 'Namespace', ...meta(o.metadata) })),
  ];
  const status = await readStepStatus<AddonsStatus>(new LocalSecretStore(lane.secretsDir), 'dev', 'install-addons');
  const addons = Object.fromEntries(Object.entries(status?.addons ?? {}).map(([name, r]) => [name, { kind: r.kind, inventory: r.inventory }]));
  return canonical({ objects, status: addons }, lane.names);
}

/** What a case made, gone: its namespace (waited for until deleted) and the resource set's ConfigMap in kube-system. */
async function addonsCleanup(bed: KubeBed): Promise<void> {
  const core = bed.kc.makeApiClient(CoreV1Api);
  const absent = (e: unknown) => {
    if ((e as { code?: number }).code !== 404) throw e instanceof Error ? e : new Error(String(e));
  };
  await core.deleteNamespacedConfigMap({ name: 'base-settings', namespace: 'kube-system' }).catch(absent);
  // the workloads first, pods at once: the namespace controller waits out a pod's grace period (30 s) otherwise
  const apps = bed.kc.makeApiClient(AppsV1Api);
  const namespace = ADDONS_NAMESPACE;
  await apps.deleteCollectionNamespacedDeployment({ namespace }).catch(absent);
  await apps.deleteCollectionNamespacedReplicaSet({ namespace }).catch(absent);
  await core.deleteCollectionNamespacedPod({ namespace, gracePeriodSeconds: 0 }).catch(absent);
  await core.deleteNamespace({ name: ADDONS_NAMESPACE }).catch(absent);
  for (const deadline = Date.now() + 60_000; ; ) {
    const gone = await core.readNamespace({ name: ADDONS_NAMESPACE }).then(
      () => false,
      (e: unknown) => (absent(e), true),
    );
    if (gone) return;
    if (Date.now() > deadline) throw new Error(`namespace ${ADDONS_NAMESPACE} still there 60 s after its delete: ${bed.ctl.logTail('kube-controller-manager', 10)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const installAddonsCreate: KubeScenario = {
  stepId: 'install-addons',
  phase: 'create',
  label: 'install-addons create',
  prepare: (bed) => addonsLane(bed),
  snapshot: addonsSnapshot,
  cleanup: addonsCleanup,
};

/** install-addons has no --delete: its delete is the prune of an addon removed from Git (web). */
export const installAddonsDelete: KubeScenario = {
  stepId: 'install-addons',
  phase: 'delete',
  label: 'install-addons delete (web removed from Git: pruned)',
  async prepare(bed) {
    const lane = await addonsLane(bed);
    const run = await runKubeStep(bed, 'install-addons', lane);
    if (run.code !== 0) throw new Error(`prepare: install-addons failed: exit ${run.code}: ${run.stderr.slice(-2000)}`);
    writeFileSync(path.join(lane.repo, lane.clusterPath, 'addons.yaml'), addonsYaml({ web: false }));
    return lane;
  },
  snapshot: addonsSnapshot,
  cleanup: addonsCleanup,
};

export const KUBE_SCENARIOS: readonly KubeScenario[] = [installAddonsCreate, installAddonsDelete];
