/**
 * cluster-apply whole, through the local runner, on the test bed's booting machines: moto's
 * instances boot with the real kubeadm, etcd and control plane binaries; the kubelet, the container
 * runtime and the load balancers are stand-ins (src/emulator). The steps reach moto through the
 * fault proxy (which records every call); the machines reach moto directly, through the port the
 * supervisor publishes in their VPC (the AWS CLI on the machine fetches its bootstrap payload).
 *
 * One cluster is made and shared by the tests in order: made, inspected, applied again, deleted.
 */
import { expect } from 'chai';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DescribeInstanceAttributeCommand, DescribeInstancesCommand, DescribeLaunchTemplateVersionsCommand, DescribeLaunchTemplatesCommand, EC2Client, TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import { DescribeTargetGroupsCommand, DescribeTargetHealthCommand, ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { ListSecretsCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { CoreV1Api, PolicyV1Api, type V1Node } from '@kubernetes/client-node';
import { kubeConfigFrom } from '../../src/bootstrap/workload.js';
import { locateAwsCli, type MachineSupervisor } from '../../src/emulator/supervisor.js';
import { KUBELET_STOP_REPORTING_FILE } from '../../src/emulator/kubelet/kubelet.js';
import { statusSecretName } from '../../src/core/status.js';
import type { DriftReport } from '../../src/core/drift.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { createGitRemote, git, type GitRemote } from '../support/git-remote.js';
import { startFaultProxy, type FaultProxy, type KillAfterMutating, type RecordedCall } from '../support/fault-proxy.js';
import { awsTestEnv, clientConfig, startMoto, type Moto } from '../support/moto.js';
import { registerCapaImage, startTestSupervisor, until } from '../support/machines.js';
import { spawnCapflow } from '../support/cli.js';
import { REPO_ROOT, requirePreviousKubeBinDir, requireTool, testbedVersions } from '../support/tools.js';

const CLUSTER = 'boot';
const FIXTURE = path.join(REPO_ROOT, 'test', 'fixtures', 'clusters', 'booted');
// Private key and bootstrap token shapes, assembled so that no key-shaped text is committed.
const KEY_MARKER = new RegExp(['-----BEGIN', '[A-Z ]*PRIVATE KEY-----'].join(' '));
const TOKEN_SHAPE = /\b[a-z0-9]{6}\.[a-z0-9]{16}\b/;

interface BootedWorld {
  moto: Moto;
  proxy: FaultProxy;
  supervisor: MachineSupervisor;
  remote: GitRemote;
  work: string;
  env: NodeJS.ProcessEnv;
  store: LocalSecretStore;
  /** The Kubernetes version and AMI the cluster's machines are at now (cluster.env). */
  image: MachineImage;
}

interface MachineImage {
  version: string;
  ami: string;
}

/**
 * moto behind the fault proxy, a machine supervisor following moto, a Git repository holding the
 * fixture as clusters/<name>; at the test bed's Kubernetes version, or at its previous release (an
 * AMI named for it, whose machines carry that release's binaries) for a cluster to upgrade.
 */
function useBootedWorld(files: Record<string, string | null> = {}, at: 'current' | 'previous' = 'current'): BootedWorld {
  const w = {} as BootedWorld;
  before(async function () {
    const awsCli = locateAwsCli();
    if (!awsCli) throw new Error('the AWS CLI is not installed (the machines fetch their bootstrap payload with it): run bash testbed/install.sh');
    w.work = mkdtempSync(path.join(os.tmpdir(), 'capflow-booted-'));
    w.moto = await startMoto();
    w.proxy = await startFaultProxy({ target: w.moto.endpoint });
    const endpointsFile = path.join(w.work, 'endpoints.json');
    w.supervisor = await startTestSupervisor(w.moto.endpoint, { machineAwsCli: awsCli, endpointsFile, kubeletHeartbeatSeconds: 2 });
    w.image = at === 'previous' ? await capaImage(w, requirePreviousKubeBinDir().version) : CURRENT_IMAGE();
    w.remote = await createGitRemote();
    cpSync(FIXTURE, path.join(w.remote.workdir, 'clusters', CLUSTER), { recursive: true });
    await w.remote.commitFiles({ [`clusters/${CLUSTER}/cluster.env`]: clusterEnv({}, w.image), ...files }, 'a cluster on booted machines');
    const secretsDir = path.join(w.work, 'secrets');
    w.store = new LocalSecretStore(secretsDir);
    w.env = { ...awsTestEnv(w.proxy.endpoint), CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: secretsDir, CAPFLOW_ENDPOINTS_FILE: endpointsFile, CAPFLOW_HELM: requireTool('helm') };
  });
  after(async function () {
    await w.supervisor?.stop();
    await w.remote?.stop();
    await w.proxy?.stop();
    await w.moto?.stop();
    if (w.work) rmSync(w.work, { recursive: true, force: true });
  });
  return w;
}

/** The test bed's version on one of moto's own AMIs (a name without a version: the default binaries). */
const CURRENT_IMAGE = (): MachineImage => ({ version: testbedVersions().KUBERNETES_VERSION ?? 'v1.34.4', ami: 'ami-12c6146b' });

/** An AMI named as the AWS provider's image of `version`, registered in this world's moto. */
async function capaImage(w: BootedWorld, version: string): Promise<MachineImage> {
  const ec2 = new EC2Client(clientConfig(w.moto.endpoint));
  try {
    return { version, ami: await registerCapaImage(ec2, version) };
  } finally {
    ec2.destroy();
  }
}

function clusterEnv(sizes: { controlPlanes?: number; workers?: number }, image: MachineImage = CURRENT_IMAGE()): string {
  return [
    `CLUSTER_NAME=${CLUSTER}`,
    `KUBERNETES_VERSION=${image.version}`,
    `AMI_ID=${image.ami}`,
    `CONTROL_PLANE_MACHINE_COUNT=${sizes.controlPlanes ?? 1}`,
    `WORKER_MACHINE_COUNT=${sizes.workers ?? 1}`,
    '',
  ].join('\n');
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  calls: RecordedCall[];
}

/** `capflow run TEMPLATE` (the local runner) or `capflow step STEP`, at the repository's HEAD; the AWS calls it made. */
async function capflowAt(w: BootedWorld, args: string[]): Promise<RunResult> {
  const from = w.proxy.calls.length;
  const head = await git(w.remote.workdir, 'rev-parse', 'HEAD');
  const common = ['--repo', w.remote.workdir, '--revision', head, '--cluster-dir', `clusters/${CLUSTER}`];
  const argv =
    args[0] === 'run'
      ? [...args, '--run-dir', path.join(w.work, 'runs'), '--plain', '-p', `repo=${w.remote.workdir}`, '-p', `revision=${head}`, '-p', `cluster-path=clusters/${CLUSTER}`, '-p', `cluster-name=${CLUSTER}`]
      : [...args, ...common, '--outputs', mkdtempSync(path.join(w.work, 'out-'))];
  const res = await spawnCapflow(argv, { env: w.env }).done;
  return { ...res, calls: w.proxy.calls.slice(from) };
}

async function workloadCore(w: BootedWorld): Promise<CoreV1Api> {
  const text = (await w.store.get(`${CLUSTER}-kubeconfig`))!.value!;
  return kubeConfigFrom(text, w.env).makeApiClient(CoreV1Api);
}

async function readyNodes(w: BootedWorld): Promise<V1Node[]> {
  return (await (await workloadCore(w)).listNode()).items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
}

/** The etcd member list as the control plane machine `node` sees it (etcd's JSON gateway, through curl on the machine). */
async function etcdMembers(w: BootedWorld, node: string): Promise<Array<{ id: string; name: string }>> {
  const machine = w.supervisor.machines().find((m) => m.options.config.hostname === node)!;
  const res = await machine.exec([
    'curl', '-s', '--max-time', '5', '--cacert', '/etc/kubernetes/pki/etcd/ca.crt', '--cert', '/etc/kubernetes/pki/etcd/healthcheck-client.crt',
    '--key', '/etc/kubernetes/pki/etcd/healthcheck-client.key', '-X', 'POST', 'https://127.0.0.1:2379/v3/cluster/member/list', '-d', '{}',
  ]);
  // the gateway prints uint64 IDs as decimal strings
  return (JSON.parse(res.stdout) as { members: Array<{ ID: string; name: string }> }).members.map((m) => ({ id: BigInt(m.ID).toString(16), name: m.name }));
}

const isControlPlane = (n: V1Node) => n.metadata?.labels?.['node-role.kubernetes.io/control-plane'] !== undefined;

/**
 * The fixture without its static CNI config, and the test bed's bridge CNI as a ControlPlane-stage
 * AddonChart instead (test/fixtures/charts/bridge-cni: a DaemonSet whose init container writes the
 * config, run on each machine by the kubelet stand-in), so that Nodes turn Ready through install-addons.
 */
function cniAsAddon(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const f of ['control-plane.yaml', 'workers.yaml', 'pools.yaml']) {
    files[`clusters/${CLUSTER}/${f}`] = readFileSync(path.join(FIXTURE, f), 'utf8').replace(/^\s*files:\n[\s\S]*?"cniVersion"[^\n]*\n/m, '\n');
  }
  const chart = path.join(REPO_ROOT, 'test', 'fixtures', 'charts', 'bridge-cni');
  for (const f of readdirSync(chart, { recursive: true, encoding: 'utf8' })) {
    if (statSync(path.join(chart, f)).isFile()) files[`charts/bridge-cni/${f}`] = readFileSync(path.join(chart, f), 'utf8');
  }
  files[`clusters/${CLUSTER}/addons.yaml`] = [
    'apiVersion: capflow.io/v1alpha1',
    'kind: AddonChart',
    'metadata:',
    '  name: bridge-cni',
    'spec:',
    '  path: charts/bridge-cni',
    '  namespace: kube-system',
    '  stage: ControlPlane',
    '  values:',
    '    podCidr: 192.168.0.0/16',
    '',
  ].join('\n');
  return files;
}
const CNI_CONFIG_FILE = '/etc/cni/net.d/10-bridge-cni.conflist';

describe('cluster-apply on booted machines, the CNI installed as an addon (kubelet, container runtime and load balancers are stand-ins)', function () {
  this.timeout(20 * 60_000);
  const w = useBootedWorld(cniAsAddon());

  it('makes a cluster: one control plane, a MachineDeployment worker and a MachinePool worker, every Node Ready and labelled', async () => {
    const res = await capflowAt(w, ['run', 'cluster-apply']);
    expect(res.code, res.stdout + res.stderr).to.equal(0);
    for (const task of ['validate-spec', 'provision-vpc', 'kubeadm-init', 'install-cni', 'launch-nodes', 'join-workers', 'install-addons']) expect(res.stdout).to.match(new RegExp(`${task}\\s.*Succeeded`));
    const nodes = (await (await workloadCore(w)).listNode()).items;
    expect(nodes).to.have.length(3);
    // Ready because the CNI DaemonSet's pod wrote its config on each of them
    const cniPods = (await (await workloadCore(w)).listNamespacedPod({ namespace: 'kube-system', labelSelector: 'app.kubernetes.io/name=bridge-cni' })).items;
    expect(cniPods.map((p) => p.spec?.nodeName).sort()).to.deep.equal(nodes.map((n) => n.metadata?.name).sort());
    for (const p of cniPods) expect(p.status?.initContainerStatuses?.[0]?.state?.terminated?.reason, p.metadata?.name).to.equal('Completed');
    for (const m of w.supervisor.machines()) {
      const conf = await m.exec(['cat', CNI_CONFIG_FILE]);
      const written = JSON.parse(conf.stdout) as { plugins: Array<{ ipam?: { ranges?: Array<Array<{ subnet: string }>> } }> };
      expect(written.plugins[0]?.ipam?.ranges?.[0]?.[0]?.subnet, m.options.config.hostname).to.equal('192.168.0.0/16');
    }
    for (const n of nodes) {
      expect(n.status?.conditions?.find((c) => c.type === 'Ready')?.status, n.metadata?.name).to.equal('True');
      expect(n.metadata?.labels?.['capflow.io/machine'], n.metadata?.name).to.be.a('string');
    }
    const groups = nodes.map((n) => n.metadata?.labels?.['capflow.io/machine-group']).sort();
    expect(groups).to.deep.equal(['boot-md-0', 'boot-mp-0', 'control-plane']);
  });

  it('keeps every key and token out of user data and launch templates; once all joined only the MachinePool keeps a payload', async () => {
    const ec2 = new EC2Client(clientConfig(w.moto.endpoint));
    const sm = new SecretsManagerClient(clientConfig(w.moto.endpoint));
    try {
      const instances = (await ec2.send(new DescribeInstancesCommand({}))).Reservations!.flatMap((r) => r.Instances ?? []);
      expect(instances.length).to.be.at.least(3);
      for (const i of instances) {
        const attr = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: i.InstanceId!, Attribute: 'userData' }));
        const text = Buffer.from(attr.UserData?.Value ?? '', 'base64').toString('utf8');
        expect(text, i.InstanceId).to.not.match(KEY_MARKER).and.not.match(TOKEN_SHAPE);
      }
      const templates = (await ec2.send(new DescribeLaunchTemplatesCommand({}))).LaunchTemplates ?? [];
      expect(templates).to.have.length(1);
      const versions = (await ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateId: templates[0]!.LaunchTemplateId!, Versions: ['$Latest'] }))).LaunchTemplateVersions!;
      const ltData = Buffer.from(versions[0]!.LaunchTemplateData!.UserData ?? '', 'base64').toString('utf8');
      expect(ltData).to.include('capflow-bootstrap').and.not.match(KEY_MARKER).and.not.match(TOKEN_SHAPE);
      const payloads = ((await sm.send(new ListSecretsCommand({}))).SecretList ?? []).map((s) => s.Name);
      expect(payloads).to.deep.equal([`capflow/${CLUSTER}/${CLUSTER}-mp-0`]);
    } finally {
      ec2.destroy();
      sm.destroy();
    }
  });

  it('applied again, changes nothing: no mutating AWS call', async () => {
    const res = await capflowAt(w, ['run', 'cluster-apply']);
    expect(res.code, res.stdout + res.stderr).to.equal(0);
    const mutating = res.calls.filter((c) => c.mutating).map((c) => `${c.service}:${c.action}`);
    expect(mutating).to.deep.equal([]);
  });

  it('an upgrade by more than one minor version is refused at the version\'s line before any change', async () => {
    await w.remote.commitFiles({ [`clusters/${CLUSTER}/cluster.env`]: clusterEnv({}).replace(/KUBERNETES_VERSION=.*/, 'KUBERNETES_VERSION=v1.36.0') }, 'skip a minor');
    const res = await capflowAt(w, ['step', 'kubeadm-init']);
    expect(res.code, res.stderr).to.equal(2);
    expect(res.stderr).to.match(/control-plane\.yaml:\d+:\d+ KubeadmControlPlane\/boot-control-plane spec\.version: the control plane runs v1\.34\.\d+; kubeadm upgrades one minor version at a time, so v1\.36\.0 is too far/);
    expect(res.calls.filter((c) => c.mutating)).to.deep.equal([]);
    await w.remote.commitFiles({ [`clusters/${CLUSTER}/cluster.env`]: clusterEnv({}) }, 'back');
  });

  it('a Node that is not Ready makes join-workers time out naming it and why; Ready again, it passes', async () => {
    const worker = (await readyNodes(w)).find((n) => n.metadata?.labels?.['capflow.io/machine-group'] === `${CLUSTER}-md-0`)!;
    const machine = w.supervisor.machines().find((m) => m.options.config.hostname === worker.metadata!.name)!;
    const cni = CNI_CONFIG_FILE;
    const saved = await machine.exec(['cat', cni]);
    expect((await machine.exec(['rm', cni])).code).to.equal(0);
    await until('the Node turns NotReady', async () => ((await (await workloadCore(w)).readNode({ name: worker.metadata!.name! })).status?.conditions?.some((c) => c.type === 'Ready' && c.status !== 'True') ? true : undefined), 30_000);
    const res = await capflowAt(w, ['step', 'join-workers', '-p', 'node-timeout=8s', '-p', 'poll-interval=1s']);
    expect(res.code, res.stderr).to.equal(75);
    expect(res.stderr).to.include('NODES_NOT_READY').and.include(`${worker.metadata!.name} (machine `).and.match(/cni plugin not initialized|NetworkPluginNotReady/);
    expect((await machine.exec(['sh', '-c', `cat > ${cni}`], { input: saved.stdout })).code).to.equal(0);
    const again = await capflowAt(w, ['step', 'join-workers', '-p', 'poll-interval=1s']);
    expect(again.code, again.stderr).to.equal(0);
  });

  it('cluster-plan sees no drift; a worker terminated by hand is drift, replaced by the next apply, its Node removed', async () => {
    const plan = await capflowAt(w, ['run', 'cluster-plan']);
    expect(plan.code, plan.stdout + plan.stderr).to.equal(0);
    expect(plan.calls.filter((c) => c.mutating)).to.deep.equal([]);
    const gone = (await readyNodes(w)).find((n) => n.metadata?.labels?.['capflow.io/machine-group'] === `${CLUSTER}-md-0`)!;
    const instance = w.supervisor.machines().find((m) => m.options.config.hostname === gone.metadata!.name)!.instanceId;
    const ec2 = new EC2Client(clientConfig(w.moto.endpoint));
    try {
      await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instance] }));
    } finally {
      ec2.destroy();
    }
    const drift = await capflowAt(w, ['step', 'launch-nodes', '--dry-run']);
    expect(drift.code, drift.stderr).to.equal(0);
    expect(drift.stdout).to.match(/"changes":"[1-9]/);
    const res = await capflowAt(w, ['run', 'cluster-apply']);
    // Seen twice in CI (runs 28 and 30, never alone): install-cni waited on a second Node's pod. Say which
    // machines there were, so the next occurrence tells whose.
    const machines = () => `terminated by hand: ${instance} (${gone.metadata!.name}); machines now: ${w.supervisor.machines().map((m) => `${m.instanceId} ${m.options.config.hostname} ${m.options.config.privateIp}`).join(', ')}`;
    expect(res.code, `${machines()}\n${res.stdout}${res.stderr}`).to.equal(0);
    const names = (await (await workloadCore(w)).listNode()).items.map((n) => n.metadata!.name!);
    expect(names, machines()).to.have.length(3).and.not.include(gone.metadata!.name);
    expect((await readyNodes(w)).map((n) => n.metadata!.name!)).to.have.members(names);
  });

  /** A MachineHealthCheck of the MachineDeployment's machines: Ready=Unknown for 2s is unhealthy. */
  const healthCheck = (maxUnhealthy?: string): string =>
    [
      'apiVersion: cluster.x-k8s.io/v1beta1',
      'kind: MachineHealthCheck',
      'metadata:',
      `  name: ${CLUSTER}-md-0-unhealthy`,
      'spec:',
      `  clusterName: ${CLUSTER}`,
      '  selector:',
      '    matchLabels:',
      `      cluster.x-k8s.io/deployment-name: ${CLUSTER}-md-0`,
      '  nodeStartupTimeout: 10m',
      ...(maxUnhealthy !== undefined ? [`  maxUnhealthy: ${maxUnhealthy}`] : []),
      '  unhealthyConditions:',
      '  - type: Ready',
      '    status: Unknown',
      '    timeout: 2s',
      '',
    ].join('\n');
  let silenced = '';

  it('a MachineHealthCheck with maxUnhealthy 0: a worker whose kubelet stand-in stops reporting goes Unknown, remediation stopped, nothing terminated', async () => {
    await w.remote.commitFiles({ [`clusters/${CLUSTER}/mhc.yaml`]: healthCheck('0') }, 'a health check of the workers, maxUnhealthy 0');
    const worker = (await readyNodes(w)).find((n) => n.metadata?.labels?.['capflow.io/machine-group'] === `${CLUSTER}-md-0`);
    expect(worker, 'a Ready worker of the MachineDeployment, as the tests before leave the cluster').to.not.equal(undefined);
    silenced = worker!.metadata!.name!;
    const machine = w.supervisor.machines().find((m) => m.options.config.hostname === silenced)!;
    // the stand-in's hook: no node status, no Lease renewal (a kubelet cut off from the API server)
    expect((await machine.exec(['touch', KUBELET_STOP_REPORTING_FILE])).code).to.equal(0);
    const since = await until('the Node turns Ready=Unknown (node-monitor-grace-period 10s)', async () => {
      const ready = (await (await workloadCore(w)).readNode({ name: silenced })).status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'Unknown');
      return ready ? new Date(ready.lastTransitionTime ?? Date.now()).getTime() : undefined;
    }, 45_000);
    // past the check's 2s timeout
    await new Promise((r) => setTimeout(r, Math.max(0, since + 2_500 - Date.now())));
    const plan = await capflowAt(w, ['step', 'launch-nodes', '--dry-run']);
    expect(plan.code, plan.stderr).to.equal(0);
    expect(plan.stdout + plan.stderr).to.match(new RegExp(`remediation stopped: 1 of 1 machine unhealthy, more than maxUnhealthy 0 \\(MachineHealthCheck ${CLUSTER}-md-0-unhealthy, clusters/${CLUSTER}/mhc\\.yaml:11\\)`));
    const held = await capflowAt(w, ['step', 'launch-nodes', '-p', 'poll-interval=500ms']);
    expect(held.code, held.stderr).to.equal(0);
    expect(held.stdout + held.stderr).to.include('remediation stopped: 1 of 1 machine unhealthy');
    expect(held.calls.filter((c) => c.mutating).map((c) => c.action)).to.deep.equal([]);
    expect((await (await workloadCore(w)).listNode()).items.map((n) => n.metadata!.name!)).to.include(silenced);
  });

  it('a MachineHealthCheck within maxUnhealthy (default 100%): cluster-plan names the unhealthy worker and the next apply replaces it (drained, terminated, launched anew): its new Node is Ready; applied again, no mutating call', async () => {
    expect(silenced, 'the case before silenced a worker').to.not.equal('');
    await w.remote.commitFiles({ [`clusters/${CLUSTER}/mhc.yaml`]: healthCheck() }, 'maxUnhealthy back to its default');
    const plan = await capflowAt(w, ['run', 'cluster-plan']);
    expect(plan.code, plan.stdout + plan.stderr).to.equal(0);
    expect(plan.calls.filter((c) => c.mutating)).to.deep.equal([]);
    const report = JSON.parse((await w.store.get(statusSecretName(CLUSTER)))!['drift.launch-nodes']!) as DriftReport;
    const replace = report.changes.find((c) => c.action === 'delete');
    expect(replace?.detail, JSON.stringify(report.changes)).to.match(new RegExp(`^replace ${CLUSTER}-md-0-\\w+-\\d+/i-\\w+ \\(${silenced.replace(/\./g, '\\.')}\\): Ready=Unknown for [\\dms]+ > 2s \\(MachineHealthCheck ${CLUSTER}-md-0-unhealthy, clusters/${CLUSTER}/mhc\\.yaml:12\\)$`));
    expect(replace?.field).to.equal(`MachineHealthCheck/${CLUSTER}-md-0-unhealthy spec.unhealthyConditions[0]`);
    expect(report.changes.filter((c) => c.action === 'create')).to.have.length(1);

    const launch = await capflowAt(w, ['step', 'launch-nodes', '-p', 'poll-interval=500ms']);
    expect(launch.code, launch.stderr).to.equal(0);
    // drained and terminated, then launched anew (its join payload put in Secrets Manager between)
    expect(launch.calls.filter((c) => c.status === 200 && ['TerminateInstances', 'RunInstances'].includes(c.action)).map((c) => c.action)).to.deep.equal(['TerminateInstances', 'RunInstances']);
    expect(launch.stdout + launch.stderr).to.include(`replace ${CLUSTER}-md-0-`);
    const join = await capflowAt(w, ['step', 'join-workers', '-p', 'poll-interval=500ms']);
    expect(join.code, join.stderr).to.equal(0);
    const nodes = (await (await workloadCore(w)).listNode()).items.map((n) => n.metadata!.name!);
    expect(nodes).to.have.length(3).and.not.include(silenced);
    expect((await readyNodes(w)).map((n) => n.metadata!.name!)).to.have.members(nodes);
    const again = await capflowAt(w, ['step', 'launch-nodes', '-p', 'poll-interval=500ms']);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.calls.filter((c) => c.mutating)).to.deep.equal([]);
  });

  it('cluster-delete removes every machine and payload', async () => {
    const res = await capflowAt(w, ['run', 'cluster-delete', '-p', 'region=us-east-1']);
    expect(res.code, res.stdout + res.stderr).to.equal(0);
    const ec2 = new EC2Client(clientConfig(w.moto.endpoint));
    const sm = new SecretsManagerClient(clientConfig(w.moto.endpoint));
    try {
      const live = (await ec2.send(new DescribeInstancesCommand({}))).Reservations!.flatMap((r) => r.Instances ?? []).filter((i) => i.State?.Name !== 'terminated');
      expect(live.map((i) => i.InstanceId)).to.deep.equal([]);
      expect((await sm.send(new ListSecretsCommand({}))).SecretList ?? []).to.deep.equal([]);
      // the supervisor follows terminations on its next pass
      await until('no machine left', () => (w.supervisor.machines().length === 0 ? true : undefined), 30_000);
    } finally {
      ec2.destroy();
      sm.destroy();
    }
  });
});

describe('cluster-apply steps on booted machines: crash matrix (each mutating AWS call), scaled (control planes join one at a time, drains honour PodDisruptionBudgets), upgraded, control planes scaled down', function () {
  this.timeout(20 * 60_000);
  // No MachinePool here: with none, nothing may launch later, so the join token goes once all joined.
  // Made at the test bed's previous release, so that it can be upgraded at the end.
  const w = useBootedWorld({ [`clusters/${CLUSTER}/pools.yaml`]: null }, 'previous');
  const capflowTokens = async () => (await (await workloadCore(w)).listNamespacedSecret({ namespace: 'kube-system', labelSelector: 'capflow.io/bootstrap-token=true' })).items;

  // The crash matrix first: it ends with one control plane and one worker, Ready, nothing left over.

  /** `capflow step ID`, SIGKILLed by the fault proxy at its Nth mutating call when `kill` says so. */
  async function stepKilled(id: string, kill?: Omit<KillAfterMutating, 'pid'>, extra: string[] = []): Promise<RunResult> {
    const from = w.proxy.calls.length;
    const head = await git(w.remote.workdir, 'rev-parse', 'HEAD');
    const run = spawnCapflow(['step', id, '--repo', w.remote.workdir, '--revision', head, '--cluster-dir', `clusters/${CLUSTER}`, '--outputs', mkdtempSync(path.join(w.work, 'out-')), ...(id === 'provision-vpc' ? [] : ['-p', 'poll-interval=500ms']), ...extra], { env: w.env });
    w.proxy.setFaults(kill ? { killAfterMutating: { ...kill, pid: run.child.pid! } } : {});
    const res = await run.done;
    w.proxy.setFaults({});
    return { ...res, calls: w.proxy.calls.slice(from) };
  }

  async function world(): Promise<{ instances: Array<{ id: string; group: string }>; payloads: string[]; targets: string[] }> {
    const ec2 = new EC2Client(clientConfig(w.moto.endpoint));
    const sm = new SecretsManagerClient(clientConfig(w.moto.endpoint));
    const elbv2 = new ElasticLoadBalancingV2Client(clientConfig(w.moto.endpoint));
    try {
      const live = (await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'instance-state-name', Values: ['pending', 'running'] }] }))).Reservations!.flatMap((r) => r.Instances ?? []);
      const tg = (await elbv2.send(new DescribeTargetGroupsCommand({}))).TargetGroups![0]!.TargetGroupArn!;
      return {
        instances: live.map((i) => ({ id: i.InstanceId!, group: i.Tags?.find((t) => t.Key === 'capflow.io/machine-group')?.Value ?? '' })),
        payloads: ((await sm.send(new ListSecretsCommand({}))).SecretList ?? []).map((s) => s.Name!).sort(),
        targets: ((await elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg }))).TargetHealthDescriptions ?? []).map((d) => d.Target!.Id!),
      };
    } finally {
      ec2.destroy();
      sm.destroy();
      elbv2.destroy();
    }
  }

  async function removeControlPlane(): Promise<void> {
    expect((await stepKilled('launch-nodes', undefined, ['--delete'])).code).to.equal(0);
    expect((await stepKilled('kubeadm-init', undefined, ['--delete'])).code).to.equal(0);
    await until('the machines gone', () => (w.supervisor.machines().length === 0 ? true : undefined), 30_000);
  }

  let initCalls: string[] = [];
  before(async () => {
    const net = await stepKilled('provision-vpc');
    expect(net.code, net.stderr).to.equal(0);
  });

  it('kubeadm-init uninterrupted: the reference calls', async () => {
    const res = await stepKilled('kubeadm-init');
    expect(res.code, res.stderr).to.equal(0);
    initCalls = res.calls.filter((c) => c.mutating).map((c) => `${c.service}:${c.action}`);
    expect(initCalls).to.deep.equal(['secretsmanager:CreateSecret', 'ec2:RunInstances', 'elbv2:RegisterTargets', 'secretsmanager:DeleteSecret']);
    await removeControlPlane();
  });

  const cases: Array<[number, KillAfterMutating['when']]> = [
    [1, 'after-response'],
    [2, 'before-response'],
    [2, 'after-response'],
    [3, 'after-response'],
  ];
  // (after the fourth and last call, DeleteSecret, the step has nothing left to do)
  for (const [n, when] of cases) {
    it(`kubeadm-init killed at mutating call ${n} (${when}) converges on rerun: one control plane, registered, no payload left`, async () => {
      const killed = await stepKilled('kubeadm-init', { n, when });
      expect(killed.code, killed.stderr).to.equal(null);
      const rerun = await stepKilled('kubeadm-init');
      expect(rerun.code, rerun.stderr).to.equal(0);
      const after = await world();
      expect(after.instances.map((i) => i.group)).to.deep.equal(['control-plane']);
      expect(after.targets).to.deep.equal(after.instances.map((i) => i.id));
      expect(after.payloads).to.deep.equal([]);
      // the last case leaves its control plane for the next test
      if (n !== cases.at(-1)![0] || when !== cases.at(-1)![1]) await removeControlPlane();
    });
  }

  it('launch-nodes killed after its payload secret is made, and join-workers killed as it deletes one, converge on rerun', async () => {
    const launch = await stepKilled('launch-nodes', { n: 1, when: 'after-response' });
    expect(launch.code).to.equal(null);
    // the call after the kill never reaches moto
    expect(launch.calls.filter((c) => c.mutating && c.faulted !== 'dropped-after-kill').map((c) => c.action)).to.deep.equal(['CreateSecret']);
    const relaunch = await stepKilled('launch-nodes');
    expect(relaunch.code, relaunch.stderr).to.equal(0);
    expect(relaunch.calls.filter((c) => c.mutating).map((c) => c.action)).to.deep.equal(['RunInstances']);
    // its one mutating AWS call is its last: killed before hearing the answer, it has not retired the token yet
    const join = await stepKilled('join-workers', { n: 1, when: 'before-response' });
    expect(join.code).to.equal(null);
    const rejoin = await stepKilled('join-workers');
    expect(rejoin.code, rejoin.stderr).to.equal(0);
    const after = await world();
    expect(after.instances.map((i) => i.group).sort()).to.deep.equal([`${CLUSTER}-md-0`, 'control-plane']);
    expect(after.payloads).to.deep.equal([]);
    expect(await readyNodes(w)).to.have.length(2);
    // every machine joined, no MachinePool: the join token is gone from the cluster and from capflow's store
    expect(await capflowTokens()).to.deep.equal([]);
    expect(await w.store.get(`capflow-${CLUSTER}-join-token`)).to.equal(undefined);
  });


  it('scaled to three control planes and two workers: each control plane is launched alone, after the one before it is a Ready Node', async () => {
    await w.remote.commitFiles({ [`clusters/${CLUSTER}/cluster.env`]: clusterEnv({ controlPlanes: 3, workers: 2 }, w.image) }, 'scale');
    const res = await capflowAt(w, ['run', 'cluster-apply']);
    expect(res.code, res.stdout + res.stderr).to.equal(0);
    const nodes = await readyNodes(w);
    expect(nodes).to.have.length(5);
    expect(nodes.filter((n) => n.metadata?.labels?.['node-role.kubernetes.io/control-plane'] !== undefined)).to.have.length(3);
    const launches = res.calls.filter((c) => c.action === 'RunInstances' && c.status === 200);
    const cpLaunches = launches.filter((c) => Object.entries(c.params ?? {}).some(([k, v]) => k.includes('TagSpecification') && v === 'control-plane'));
    expect(cpLaunches.map((c) => c.params?.MinCount)).to.deep.equal(['1', '1']);
    // stacked etcd: three members, one per control plane, and every API server behind the load balancer
    const cps = nodes.filter((n) => n.metadata?.labels?.['node-role.kubernetes.io/control-plane'] !== undefined).map((n) => n.metadata!.name!).sort();
    expect((await etcdMembers(w, cps[0]!)).map((m) => m.name).sort()).to.deep.equal(cps);
    const lb = w.supervisor.loadBalancers().find((l) => l.name === `${CLUSTER}-apiserver`)!;
    const cpIds = w.supervisor.machines().filter((m) => cps.includes(m.options.config.hostname)).map((m) => m.instanceId).sort();
    expect(lb.listeners[0]!.targets.map((t) => t.id).sort()).to.deep.equal(cpIds);
  });

  it('a worker whose pods a PodDisruptionBudget protects is not removed: the step stops naming the pod; without the budget it drains and goes', async () => {
    const core = await workloadCore(w);
    const workers = (await readyNodes(w)).filter((n) => n.metadata?.labels?.['node-role.kubernetes.io/worker'] !== undefined).map((n) => n.metadata!.name!);
    expect(workers).to.have.length(2);
    for (const [i, node] of workers.entries()) {
      await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: `guarded-${i}`, labels: { app: 'guarded' } }, spec: { nodeName: node, containers: [{ name: 'c', image: 'registry.k8s.io/pause:3.10' }] } } });
    }
    const policy = kubeConfigFrom((await w.store.get(`${CLUSTER}-kubeconfig`))!.value!, w.env).makeApiClient(PolicyV1Api);
    await policy.createNamespacedPodDisruptionBudget({ namespace: 'default', body: { metadata: { name: 'guarded' }, spec: { minAvailable: 2, selector: { matchLabels: { app: 'guarded' } } } } });
    await until('the budget counts both pods healthy', async () => {
      const pdb = await policy.readNamespacedPodDisruptionBudget({ name: 'guarded', namespace: 'default' });
      return pdb.status?.currentHealthy === 2 ? true : undefined;
    }, 60_000);

    await w.remote.commitFiles({ [`clusters/${CLUSTER}/cluster.env`]: clusterEnv({ controlPlanes: 3, workers: 1 }, w.image) }, 'scale workers down');
    const blocked = await capflowAt(w, ['step', 'launch-nodes', '-p', 'drain-timeout=8s', '-p', 'poll-interval=500ms']);
    expect(blocked.code, blocked.stderr).to.equal(3);
    expect(blocked.stderr).to.include('NODE_DRAIN_TIMEOUT').and.match(/pod default\/guarded-[01]/);
    expect(blocked.calls.filter((c) => c.action === 'TerminateInstances')).to.deep.equal([]);

    await policy.deleteNamespacedPodDisruptionBudget({ name: 'guarded', namespace: 'default' });
    const res = await capflowAt(w, ['run', 'cluster-apply']);
    expect(res.code, res.stdout + res.stderr).to.equal(0);
    const left = (await readyNodes(w)).filter((n) => n.metadata?.labels?.['node-role.kubernetes.io/worker'] !== undefined).map((n) => n.metadata!.name!);
    expect(left).to.have.length(1);
    const all = (await core.listNode()).items.map((n) => n.metadata!.name!);
    expect(all).to.have.length(4);
  });

  /** The etcdctl pods capflow runs (first seen, and the member a remove names), polled through the API while `during` runs. */
  async function watchEtcdctlPods<T>(during: () => Promise<T>): Promise<{ result: T; removes: Array<{ at: number; member: string }> }> {
    const core = await workloadCore(w);
    const removes = new Map<string, { at: number; member: string }>();
    let stop = false;
    const poll = (async () => {
      while (!stop) {
        try {
          for (const p of (await core.listNamespacedPod({ namespace: 'kube-system', labelSelector: 'capflow.dev/etcdctl=member-remove' })).items) {
            const name = p.metadata!.name!;
            if (!removes.has(name)) removes.set(name, { at: Date.now(), member: p.spec!.containers[0]!.command!.at(-1)! });
          }
        } catch {
          // an API server going away mid-upgrade: the next poll goes to another
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    try {
      return { result: await during(), removes: [...removes.values()] };
    } finally {
      stop = true;
      await poll;
    }
  }

  it(`upgraded to the next release: control planes replaced one at a time, new first, each old one out of etcd before it goes; then the worker`, async () => {
    const before = await readyNodes(w);
    expect(before.map((n) => n.status?.nodeInfo?.kubeletVersion)).to.have.length(4).and.satisfy((v: string[]) => v.every((x) => x === w.image.version));
    const oldCps = before.filter(isControlPlane).map((n) => n.metadata!.name!);
    const oldMembers = await etcdMembers(w, oldCps[0]!);
    const old = await world();
    const groupOf = new Map(old.instances.map((i) => [i.id, i.group]));
    const hostOf = new Map(w.supervisor.machines().map((m) => [m.instanceId, m.options.config.hostname]));

    const from = w.image.version;
    w.image = await capaImage(w, testbedVersions().KUBERNETES_VERSION!);
    expect(w.image.version, 'an upgrade').to.not.equal(from);
    await w.remote.commitFiles({ [`clusters/${CLUSTER}/cluster.env`]: clusterEnv({ controlPlanes: 3, workers: 1 }, w.image) }, `upgrade to ${w.image.version}`);
    const plan = await capflowAt(w, ['run', 'cluster-plan']);
    expect(plan.code, plan.stdout + plan.stderr).to.equal(0);
    expect(plan.calls.filter((c) => c.mutating)).to.deep.equal([]);
    const { result: res, removes } = await watchEtcdctlPods(() => capflowAt(w, ['run', 'cluster-apply']));
    expect(res.code, res.stdout + res.stderr).to.equal(0);

    // the recorded calls: each new control plane launched alone, then one old one terminated; the worker last
    const machineCalls = res.calls.filter((c) => c.status === 200 && (c.action === 'RunInstances' || c.action === 'TerminateInstances'));
    const steps = machineCalls.map((c) => {
      if (c.action === 'RunInstances') return `launch ${Object.entries(c.params ?? {}).some(([k, v]) => k.includes('TagSpecification') && v === 'control-plane') ? 'control-plane' : 'worker'}`;
      const ids = Object.entries(c.params ?? {}).filter(([k]) => k.startsWith('InstanceId')).map(([, v]) => v);
      expect(ids, 'one machine a termination').to.have.length(1);
      return `terminate ${groupOf.get(ids[0]!) === 'control-plane' ? 'control-plane' : 'worker'}`;
    });
    expect(steps.slice(0, 6)).to.deep.equal(['launch control-plane', 'terminate control-plane', 'launch control-plane', 'terminate control-plane', 'launch control-plane', 'terminate control-plane']);
    // the worker after every control plane, by its strategy (maxSurge 1): new first while the old one
    // is Ready; an old worker whose Node went NotReady meanwhile (its kubelet's connection was to an
    // API server that lost its etcd member) is unavailable already and goes first, as Cluster API's
    // rolling update removes unhealthy old machines first
    expect(steps.slice(6)).to.have.members(['launch worker', 'terminate worker']).and.have.length(2);

    // each old control plane's etcd member was removed (through a pod on another control plane) before its termination
    const terminations = machineCalls.filter((c) => c.action === 'TerminateInstances');
    for (const t of terminations.slice(0, 3)) {
      const host = hostOf.get(Object.entries(t.params ?? {}).find(([k]) => k.startsWith('InstanceId'))![1])!;
      const member = oldMembers.find((m) => m.name === host)!;
      expect(member, host).to.not.equal(undefined);
      const removal = removes.find((r) => r.member === member.id);
      expect(removal, `a member-remove pod for ${host}`).to.not.equal(undefined);
      expect(removal!.at, `${host}: member removed before the machine was terminated`).to.be.below(t.at);
    }

    // the API server: every Node at the new version and Ready, the old ones gone, etcd of the new three only
    const after = await readyNodes(w);
    expect(after).to.have.length(4);
    for (const n of after) expect(n.status?.nodeInfo?.kubeletVersion, n.metadata?.name).to.equal(w.image.version);
    const newCps = after.filter(isControlPlane).map((n) => n.metadata!.name!).sort();
    expect(newCps).to.have.length(3).and.not.include.members(oldCps);
    expect((await etcdMembers(w, newCps[0]!)).map((m) => m.name).sort()).to.deep.equal(newCps);
    const core = await workloadCore(w);
    const clusterConfig = (await core.readNamespacedConfigMap({ name: 'kubeadm-config', namespace: 'kube-system' })).data!.ClusterConfiguration!;
    expect(clusterConfig).to.match(new RegExp(`kubernetesVersion: ${w.image.version.replace(/\./g, '\\.')}`));
    // no etcdctl pod left behind
    expect((await core.listNamespacedPod({ namespace: 'kube-system', labelSelector: 'capflow.dev/etcdctl' })).items).to.deep.equal([]);
    const lb = w.supervisor.loadBalancers().find((l) => l.name === `${CLUSTER}-apiserver`)!;
    const cpIds = w.supervisor.machines().filter((m) => newCps.includes(m.options.config.hostname)).map((m) => m.instanceId).sort();
    expect(lb.listeners[0]!.targets.map((t) => t.id).sort()).to.deep.equal(cpIds);

    const again = await capflowAt(w, ['run', 'cluster-apply']);
    expect(again.code, again.stdout + again.stderr).to.equal(0);
    expect(again.calls.filter((c) => c.mutating)).to.deep.equal([]);
  });

  it('scaled down from three control planes to one: the two removed lose their etcd members first, the load balancer keeps the one left', async () => {
    await w.remote.commitFiles({ [`clusters/${CLUSTER}/cluster.env`]: clusterEnv({ controlPlanes: 1, workers: 1 }, w.image) }, 'one control plane');
    const res = await capflowAt(w, ['run', 'cluster-apply']);
    expect(res.code, res.stdout + res.stderr).to.equal(0);
    const cps = (await readyNodes(w)).filter(isControlPlane).map((n) => n.metadata!.name!);
    expect(cps).to.have.length(1);
    expect((await etcdMembers(w, cps[0]!)).map((m) => m.name)).to.deep.equal(cps);
    expect((await (await workloadCore(w)).listNode()).items).to.have.length(2);
    const lb = w.supervisor.loadBalancers().find((l) => l.name === `${CLUSTER}-apiserver`)!;
    expect(lb.listeners[0]!.targets.map((t) => t.id)).to.deep.equal(w.supervisor.machines().filter((m) => m.options.config.hostname === cps[0]).map((m) => m.instanceId));
  });
});
