/**
 * Proof of the booting machines with plain kubeadm (issue "Machines that boot"): user data written
 * by hand, not by capflow, run on emulator instances with the real kubeadm, etcd, kube-apiserver,
 * kube-controller-manager and kube-scheduler. The kubelet (its container side), the container
 * runtime, the CNI DaemonSet (the test writes its config file) and the load balancer are stand-ins.
 * The preflight check skipped and why: testbed/README.md, "Booting machines".
 *
 * Both clusters boot side by side in VPCs with the same CIDR, as two teams' clusters would.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { pidsIn } from '../../src/emulator/network.js';
import type { MachineSupervisor } from '../../src/emulator/supervisor.js';
import type { Machine } from '../../src/emulator/machine.js';
import { KubeadmWorld, tail } from '../support/kubeadm-world.js';
import { startMoto, type Moto } from '../support/moto.js';
import { registerCapaImage, startTestSupervisor, until } from '../support/machines.js';
import { requirePreviousKubeBinDir } from '../support/tools.js';

const BOOT_MS = 240_000;

function commandOf(pid: number): string {
  try {
    return basename(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!);
  } catch {
    return '';
  }
}

describe('test bed machines: a real kubeadm control plane on emulator instances (kubelet, container runtime, CNI and load balancer are stand-ins)', function () {
  this.timeout(600_000);
  let moto: Moto;
  let sup: MachineSupervisor;
  const worlds: KubeadmWorld[] = [];

  before(async () => {
    moto = await startMoto();
    sup = await startTestSupervisor(moto.endpoint, { kubeletHeartbeatSeconds: 2 });
  });

  afterEach(function () {
    if (this.currentTest?.state !== 'failed') return;
    for (const m of sup.machines()) console.log(`--- ${m.instanceId} (${m.options.config.hostname}) boot log, last lines\n${tail(m.bootLog(), 80)}`);
  });

  after(async () => {
    await sup?.stop();
    for (const w of worlds) w.dispose();
    await moto?.stop();
  });

  async function bootLogOnFailure<T>(machines: Machine[], work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      const logs = machines.map((m) => `--- ${m.instanceId} boot log\n${tail(m.bootLog(), 40)}`).join('\n');
      throw new Error(`${(err as Error).message}\n${logs}`);
    }
  }

  it("one control plane (kubeadm init) and one worker (kubeadm join) of the previous release's image: /readyz through the load balancer, the worker Node joins reporting that release's kubelet, both turn Ready once a CNI config is written", async () => {
    const previous = requirePreviousKubeBinDir().version;
    const world = await KubeadmWorld.create(moto.endpoint, sup, { name: 'one', cidr: '10.0.0.0/16' });
    worlds.push(world);
    const cpId = await world.launchControlPlane();
    const cp = await world.machine(cpId);
    await bootLogOnFailure([cp], () => world.waitForApi(BOOT_MS, cp));
    // the worker is of the AWS provider's image of the previous release (a skew kubeadm allows, as during an upgrade)
    const workerId = await world.launchWorker(await registerCapaImage(world.ec2, previous));
    const worker = await world.machine(workerId);
    const kubeconfig = await world.adminKubeconfig(cp);

    const joined = await bootLogOnFailure([cp, worker], () => world.waitForNodes(kubeconfig, 2, { ready: false, timeoutMs: BOOT_MS }));
    const cpNode = joined.find((n) => n.name === cp.options.config.hostname);
    const workerNode = joined.find((n) => n.name === worker.options.config.hostname);
    expect(cpNode, JSON.stringify(joined)).to.not.equal(undefined);
    expect(workerNode, JSON.stringify(joined)).to.not.equal(undefined);
    expect(cpNode!.labels).to.have.property('node-role.kubernetes.io/control-plane');
    expect(cpNode!.taints).to.deep.include({ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' });
    expect(workerNode!.labels).to.include({ 'capflow.io/pool': 'workers', 'kubernetes.io/hostname': worker.options.config.hostname });
    expect(workerNode!.ready, 'NotReady until a CNI config exists').to.equal(false);
    const kubelets = await until('both Nodes reporting their kubelet version', async () => {
      const text = await world.kubectl(kubeconfig, ['get', 'nodes', '-o', 'jsonpath={range .items[*]}{.metadata.name}={.status.nodeInfo.kubeletVersion}{"\\n"}{end}']);
      const lines = text.trim().split('\n').sort();
      return lines.length === 2 && lines.every((l) => /=v\d/.test(l)) ? lines : undefined;
    });
    expect(kubelets, "each Node reports its image's kubelet").to.deep.equal([`${cp.options.config.hostname}=${world.version}`, `${worker.options.config.hostname}=${previous}`].sort());
    expect((await worker.exec(['kubeadm', 'version', '-o', 'short'])).stdout.trim(), "the worker joined with its image's kubeadm").to.equal(previous);

    await world.installCni(cp);
    await world.installCni(worker);
    const ready = await world.waitForNodes(kubeconfig, 2, { ready: true, timeoutMs: 60_000 });
    expect(ready.map((n) => n.ready)).to.deep.equal([true, true]);

    // the worker's kubelet got its client certificate by TLS bootstrap, through a CSR the controller manager approved
    const csrs = JSON.parse(await world.kubectl(kubeconfig, ['get', 'csr', '-o', 'json'])) as { items: Array<{ spec: { username: string; signerName: string }; status: { conditions?: Array<{ type: string }> } }> };
    const bootstrapCsr = csrs.items.find((c) => c.spec.signerName === 'kubernetes.io/kube-apiserver-client-kubelet' && c.spec.username.startsWith('system:bootstrap:'));
    expect(bootstrapCsr?.status.conditions?.map((c) => c.type), 'approved').to.include('Approved');
    const kubeletConf = await worker.exec(['cat', '/etc/kubernetes/kubelet.conf']);
    expect(kubeletConf.stdout).to.include('/var/lib/kubelet/pki/kubelet-client-current.pem');

    // the static pods are the real control plane processes, reported as mirror pods
    const pods = await world.kubectl(kubeconfig, ['get', 'pods', '-n', 'kube-system', '-o', 'name']);
    for (const c of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) expect(pods).to.include(`pod/${c}-${cp.options.config.hostname}`);
    const commands = (await pidsIn(cp.options.netns)).map(commandOf);
    for (const c of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) expect(commands, 'processes in the machine').to.include(c);
    expect(cp.bootLog()).to.include('Your Kubernetes control-plane has initialized successfully');
    expect(cp.bootLog(), 'kubeadm prints the join token and certificate key; the boot log redacts them').to.not.include(world.token).and.not.include(world.certificateKey);

    const sentinel = await until('kubeadm join to finish on the worker', async () => {
      const r = await worker.exec(['cat', '/run/cluster-api/bootstrap-success.complete']);
      return r.code === 0 ? r.stdout.trim() : undefined;
    }, 60_000);
    expect(sentinel, 'the user data wrote its success sentinel after kubeadm join').to.equal('success');

    // a control plane process killed: the kubelet stand-in restarts it, counted on its mirror pod, and says so in the boot log
    const scheduler = (await pidsIn(cp.options.netns)).find((pid) => commandOf(pid) === 'kube-scheduler')!;
    process.kill(scheduler, 'SIGKILL');
    const restarts = await until('kube-scheduler restarted', async () => {
      const n = Number(await world.kubectl(kubeconfig, ['get', 'pod', '-n', 'kube-system', `kube-scheduler-${cp.options.config.hostname}`, '-o', 'jsonpath={.status.containerStatuses[0].restartCount}']));
      return n >= 1 ? n : undefined;
    });
    expect(restarts).to.be.at.least(1);
    expect(cp.bootLog()).to.match(/kubelet: .*Static pod process exited.*kube-scheduler/);

    // the worker crashes (every process of the machine killed, nothing restarts it): its Node turns NotReady as a real one would
    for (const pid of await pidsIn(worker.options.netns)) process.kill(pid, 'SIGKILL');
    const down = await until('the crashed worker NotReady', async () => {
      const node = (await world.nodes(kubeconfig)).find((n) => n.name === worker.options.config.hostname);
      return node && !node.ready ? node : undefined;
    }, 60_000);
    expect(down.reason, 'the node lifecycle controller saw the heartbeat stop').to.equal('NodeStatusUnknown');
    expect(worker.bootLog()).to.include('the instance is down');
  });
  // Three control planes with stacked etcd (three members, every API server behind the load balancer) are
  // proven with capflow's own bootstrap data in cluster-apply-booted.test.ts.
});
