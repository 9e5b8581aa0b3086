/**
 * Bring-your-own hosts end to end: the test bed's booting machines (test/support/byoh-lab.ts) are
 * the hosts, each with a real OpenSSH sshd, the real kubeadm and control plane binaries, and the
 * emulator's kubelet and kube-vip stand-ins. capflow runs inside the lab's network, as a runner in
 * the hosts' datacenter would: prepare-hosts, kubeadm-init and join-workers over SSH, then
 * cluster-apply and cluster-delete through the local runner. One lab is booted for the suite and its
 * cluster is built up test by test (the order matters).
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { listClaims, releaseHost } from '../../src/hosts/claims.js';
import { CAPFLOW_BIN, spawnCapflow } from '../support/cli.js';
import { startByohLab, type ByohLab } from '../support/byoh-lab.js';
import { BYOH_CLUSTER, BYOH_SSH_SECRET, writeByohCluster, type ByohClusterOptions } from '../support/byoh-cluster.js';
import { testbedVersions } from '../support/tools.js';

const CLUSTER = BYOH_CLUSTER;
const SSH_SECRET = BYOH_SSH_SECRET;

interface StepRun {
  code: number;
  stdout: string;
  stderr: string;
  summary: Record<string, unknown>;
}

describe('BYOH: kubeadm over SSH on the test bed\'s booting machines (sshd and the real kubeadm inside; kubelet and kube-vip stand-ins)', function () {
  this.timeout(600_000);
  let lab: ByohLab;
  let repo: string;
  let secretsDir: string;
  let store: LocalSecretStore;
  const version = () => testbedVersions().KUBERNETES_VERSION!;

  const writeCluster = (dir: string, o: Omit<ByohClusterOptions, 'version'> = {}) => writeByohCluster(repo, dir, lab, { ...o, version: version() });

  /** `capflow step` inside the lab's network; its JSON summary line parsed. */
  async function step(id: string, clusterPath: string, extra: string[] = []): Promise<StepRun> {
    const r = await lab.exec([process.execPath, CAPFLOW_BIN, 'step', id, '--repo', repo, '--cluster-dir', clusterPath, '-p', 'connect-timeout=5s', ...extra], { env: env(), timeoutMs: 300_000 });
    const last = r.stdout.trim().split('\n').pop() ?? '{}';
    let summary: Record<string, unknown> = {};
    try {
      summary = JSON.parse(last) as Record<string, unknown>;
    } catch {
      summary = {};
    }
    return { ...r, summary };
  }

  const env = () => ({ ...process.env, CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: secretsDir, CAPFLOW_LOG_FORMAT: 'json', CAPFLOW_LOG_LEVEL: 'info' });
  const why = (r: StepRun) => `${r.stderr.slice(-3000)}\n${r.stdout.slice(-1000)}`;
  const standInCalls = () => lab.hosts.map((h) => h.standInCalls().length);
  const nodeState = (name: string) => lab.hosts.find((h) => h.name === name)!.run('test -e /etc/kubernetes/kubelet.conf && echo node || echo clean').then((r) => r.stdout.trim());

  before(async () => {
    lab = await startByohLab({ hosts: [{ name: 'cp-0', labels: { role: 'control-plane' } }, { name: 'worker-0', labels: { role: 'worker' } }, { name: 'worker-1', labels: { role: 'worker' } }] });
    repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-byoh-repo-'));
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-byoh-secrets-'));
    store = new LocalSecretStore(secretsDir);
    await store.put(SSH_SECRET, { 'ssh-privatekey': lab.clientPrivateKey });
  });
  after(async () => {
    await lab?.stop();
    for (const d of [repo, secretsDir]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('bad inventory is refused at file:line before any connection', async () => {
    const folder = writeCluster('bad');
    const file = path.join(repo, folder, 'hosts.yaml');
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.replace(/hostKey: .*\n/, 'hostKey: SHA256:not-a-fingerprint\n'));
    const before = standInCalls();
    const r = await step('prepare-hosts', folder);
    expect(r.code, why(r)).to.equal(2);
    expect(r.stderr).to.match(/hosts\.yaml:\d+:\d+ ByoHostInventory\/byoh-test-hosts spec\.hosts\[0\]\.hostKey/);
    expect(await listClaims(store)).to.deep.equal([]);
    expect(standInCalls()).to.deep.equal(before);
    rmSync(path.join(repo, folder), { recursive: true });
  });

  it('a wrong host key stops prepare-hosts before authentication: exit 3, nothing run on any host', async () => {
    const folder = writeCluster('wrong-key', { hostKeys: { 'worker-1': lab.hosts[0]!.hostKeyPublic } });
    const r = await step('prepare-hosts', folder, ['-p', 'parallelism=1']);
    expect(r.code, why(r)).to.equal(3);
    expect(r.stderr).to.include('HOST_KEY_MISMATCH').and.include('worker-1').and.match(/hosts\.yaml:\d+/);
    const w1 = lab.hosts.find((h) => h.name === 'worker-1')!;
    expect(w1.standInCalls()).to.deep.equal([]);
    // The claims it made stay (a rerun with the right key goes on); this folder goes, its claims too.
    for (const c of await listClaims(store, CLUSTER)) await releaseHost(store, c);
    rmSync(path.join(repo, folder), { recursive: true });
  });

  it('prepare-hosts killed after its first claim: the rerun keeps the claim, claims the rest and prepares every host once', async () => {
    const folder = writeCluster('lab');
    const child = lab.spawn([process.execPath, CAPFLOW_BIN, 'step', 'prepare-hosts', '--repo', repo, '--cluster-dir', folder, '-p', 'parallelism=1'], { env: env() });
    const claimFile = () => readdirSync(secretsDir).some((f) => f.startsWith('capflow-host-'));
    for (let i = 0; i < 600 && !claimFile(); i++) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('close', r));
    const kept = await listClaims(store, CLUSTER);
    expect(kept.length).to.be.greaterThan(0);

    const r = await step('prepare-hosts', folder);
    expect(r.code, why(r)).to.equal(0);
    const claims = await listClaims(store, CLUSTER);
    expect(claims.map((c) => `${c.host}:${c.group}`).sort()).to.deep.equal(['cp-0:control-plane', 'worker-0:byoh-test-md-0', 'worker-1:byoh-test-md-0']);
    for (const k of kept) expect(claims.find((c) => c.host === k.host)?.claimedAt).to.equal(k.claimedAt);
    // Prepared: kernel modules and sysctls as kubeadm wants them, on each host.
    for (const h of lab.hosts) expect((await h.run('lsmod')).stdout, h.name).to.include('br_netfilter');

    // `capflow hosts` lists them from the same store.
    const listed = await spawnCapflow(['hosts', CLUSTER, '--json'], { env: env() }).done;
    expect(listed.code, listed.stderr).to.equal(0);
    expect((JSON.parse(listed.stdout) as Array<{ host: string; state: string }>).map((c) => `${c.host} ${c.state}`).sort()).to.deep.equal(['cp-0 claimed', 'worker-0 claimed', 'worker-1 claimed']);

    // A second cluster wanting the same hosts is refused, claiming nothing.
    const other = writeCluster('other', { name: 'byoh-other', workers: 1 });
    const o = await step('prepare-hosts', other);
    expect(o.code, why(o)).to.equal(3);
    expect(o.stderr).to.include('HOSTS_SHORT');
    expect(await listClaims(store, 'byoh-other')).to.deep.equal([]);
    rmSync(path.join(repo, other), { recursive: true });
  });

  it('kubeadm-init brings the API up behind kube-vip; join-workers resumes a worker whose host dropped mid-join', async () => {
    const folder = 'clusters/lab';
    const init = await step('kubeadm-init', folder, ['-p', 'poll-interval=1s', '-p', 'api-timeout=4m']);
    expect(init.code, why(init)).to.equal(0);
    expect(init.summary.outputs).to.deep.include({ 'api-server': `https://${lab.vip}:6443` });
    expect(await nodeState('cp-0')).to.equal('node');

    // worker-1 drops off the network as soon as its kubeadm join starts.
    const w1 = lab.hosts.find((h) => h.name === 'worker-1')!;
    const join = lab.exec([process.execPath, CAPFLOW_BIN, 'step', 'join-workers', '--repo', repo, '--cluster-dir', folder, '-p', 'poll-interval=1s', '-p', 'node-timeout=2m'], { env: env(), timeoutMs: 300_000 });
    let dropped = false;
    for (let i = 0; i < 1200 && !dropped; i++) {
      if ((await w1.run('pgrep -f "kubeadm join" || true')).stdout.trim()) {
        await w1.linkDown();
        dropped = true;
      } else await new Promise((r) => setTimeout(r, 50));
    }
    expect(dropped, 'worker-1 started kubeadm join').to.equal(true);
    const first = await join;
    await w1.linkUp();
    expect(first.code, first.stderr.slice(-2000)).to.equal(75);
    expect(first.stderr).to.match(/HOST_CONNECTION_LOST|HOST_UNREACHABLE|HOST_COMMAND_TIMEOUT|NODES_NOT_READY/);

    const again = await step('join-workers', folder, ['-p', 'poll-interval=1s', '-p', 'node-timeout=3m']);
    expect(again.code, why(again)).to.equal(0);
    expect(again.summary.outputs).to.deep.include({ ready: '3/3' });
    for (const h of lab.hosts) expect(await nodeState(h.name), h.name).to.equal('node');
  });

  it('a rerun of every step runs only read-only commands on the hosts', async () => {
    const folder = 'clusters/lab';
    const before = standInCalls();
    for (const id of ['prepare-hosts', 'kubeadm-init', 'join-workers']) {
      const r = await step(id, folder, id === 'prepare-hosts' ? [] : ['-p', 'poll-interval=1s']);
      expect(r.code, why(r)).to.equal(0);
      expect((r.summary.commands as { mutating: number } | undefined)?.mutating ?? 0, id).to.equal(0);
    }
    // The hosts' recording stand-ins (systemctl, modprobe, sysctl, apt-get...) saw only queries.
    const queries = /^(lsmod|swapon --show.*|sysctl -n .*|systemctl (is-active|is-enabled|cat) .*|containerd --version)$/;
    const changes = lab.hosts.flatMap((h, i) => h.standInCalls().slice(before[i]).map((c) => `${h.name}: ${[c.command, ...c.args].join(' ')}`).filter((c) => !queries.test(c.replace(/^[^:]+: /, ''))));
    expect(changes).to.deep.equal([]);
  });

  it('a host removed from the inventory is drained, reset and released once the others are in', async () => {
    writeCluster('lab', { workers: 1, hosts: ['cp-0', 'worker-0'] });
    const prepare = await step('prepare-hosts', 'clusters/lab');
    expect(prepare.code, why(prepare)).to.equal(0);
    expect((await listClaims(store, CLUSTER)).find((c) => c.host === 'worker-1')?.state).to.equal('releasing');
    const join = await step('join-workers', 'clusters/lab', ['-p', 'poll-interval=1s']);
    expect(join.code, why(join)).to.equal(0);
    expect(join.summary.outputs).to.deep.include({ ready: '2/2' });
    expect(join.summary.released).to.equal(1);
    expect(await nodeState('worker-1')).to.equal('clean');
    expect((await listClaims(store, CLUSTER)).map((c) => c.host).sort()).to.deep.equal(['cp-0', 'worker-0']);
    const nodes = await lab.hosts[0]!.run('kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o name');
    expect(nodes.stdout.trim().split('\n').sort()).to.deep.equal(['node/cp-0', 'node/worker-0']);
  });

  it('cluster-delete drains, resets and releases every host; a second delete makes no SSH connection', async () => {
    const params = ['-p', `repo=${repo}`, '-p', 'revision=HEAD', '-p', 'cluster-path=clusters/lab', '-p', `cluster-name=${CLUSTER}`, '-p', 'provider=byoh'];
    const del = await lab.exec([process.execPath, CAPFLOW_BIN, 'run', 'cluster-delete', ...params], { env: env(), timeoutMs: 300_000 });
    expect(del.code, del.stderr.slice(-3000) + del.stdout).to.equal(0);
    for (const h of lab.hosts) expect(await nodeState(h.name), h.name).to.equal('clean');
    expect(await listClaims(store, CLUSTER)).to.deep.equal([]);
    const again = await step('prepare-hosts', 'clusters/lab', ['--delete']);
    expect(again.code, why(again)).to.equal(0);
    expect(again.summary.commands).to.equal(undefined);
  });

  it('cluster-apply through the local runner makes the cluster again on the released hosts: every node Ready; cluster-delete clears it', async () => {
    writeCluster('lab');
    const params = ['-p', `repo=${repo}`, '-p', 'revision=HEAD', '-p', 'cluster-path=clusters/lab', '-p', `cluster-name=${CLUSTER}`];
    const apply = await lab.exec([process.execPath, CAPFLOW_BIN, 'run', 'cluster-apply', ...params], { env: env(), timeoutMs: 400_000 });
    expect(apply.code, apply.stderr.slice(-3000) + apply.stdout).to.equal(0);
    for (const task of ['validate-spec', 'prepare-hosts', 'kubeadm-init-byoh', 'join-workers-byoh', 'install-addons-byoh']) expect(apply.stdout).to.match(new RegExp(`${task}\\s.*Succeeded`));
    for (const task of ['provision-vpc', 'launch-nodes', 'eks-control-plane']) expect(apply.stdout).to.match(new RegExp(`${task}\\s.*Skipped`));
    for (const h of lab.hosts) expect(await nodeState(h.name), h.name).to.equal('node');
    const nodes = await lab.hosts[0]!.run('kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes --no-headers');
    expect(nodes.stdout.trim().split('\n').map((l) => l.split(/\s+/).slice(0, 2).join(' ')).sort()).to.deep.equal(['cp-0 Ready', 'worker-0 Ready', 'worker-1 Ready']);

    const del = await lab.exec([process.execPath, CAPFLOW_BIN, 'run', 'cluster-delete', ...params], { env: env(), timeoutMs: 300_000 });
    expect(del.code, del.stderr.slice(-3000) + del.stdout).to.equal(0);
    for (const h of lab.hosts) expect(await nodeState(h.name), h.name).to.equal('clean');
    expect(await listClaims(store)).to.deep.equal([]);
  });
});
