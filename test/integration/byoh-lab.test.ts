/**
 * The BYOH lab (test/support/byoh-lab.ts): two of the test bed's booting machines with a real OpenSSH
 * sshd and the real kubeadm, reached with OpenSSH's own `ssh` client from the lab's network
 * namespace; the recording stand-ins' state (modprobe/lsmod, sysctl, swapoff/swapon) and the kubelet
 * stand-in's kube-vip stand-in. Needs root, the test bed (bash testbed/install.sh) and a built dist/
 * (npm run build): without them the suite fails, naming what is missing.
 */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { MACHINE_PATH } from '../../src/emulator/machine-config.js';
import { startByohLab, type ByohLab, type LabHost } from '../support/byoh-lab.js';
import { until } from '../support/machines.js';
import { testbedVersions } from '../support/tools.js';
import { kubeVipManifest } from '../../src/hosts/kube-vip.js';

const TCP_PROBE = "const s = require('net').connect(Number(process.argv[2]), process.argv[1]); s.setEncoding('utf8'); let d = ''; s.on('data', (c) => (d += c)); s.on('end', () => { process.stdout.write(d); process.exit(0); }); s.on('connect', () => { if (!process.argv[3]) process.exit(0); }); s.on('error', (e) => { console.error(e.code); process.exit(1); }); setTimeout(() => { console.error('timeout'); process.exit(2); }, 1500);";

describe('BYOH lab: booting machines with a real sshd and kubeadm, reached by OpenSSH from the lab network (stand-ins: kubelet, kube-vip, modprobe/lsmod, sysctl, swapoff/swapon)', function () {
  this.timeout(90_000);
  let lab: ByohLab;
  let h0: LabHost;
  let h1: LabHost;

  before(async function () {
    this.timeout(120_000);
    lab = await startByohLab({ hosts: [{ name: 'byoh-0', labels: { role: 'control-plane' } }, { name: 'byoh-1' }] });
    [h0, h1] = lab.hosts as [LabHost, LabHost];
  });

  after(async () => {
    await lab?.stop();
  });

  /** OpenSSH's ssh from the lab's namespace, pinned to a known_hosts file, no user config. */
  const ssh = (host: LabHost, command: string, knownHosts = lab.knownHostsFile) =>
    lab.exec([
      'ssh', '-F', '/dev/null', '-i', lab.clientKeyFile, '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
      '-o', 'BatchMode=yes', '-o', 'UpdateHostKeys=no', '-o', 'ConnectTimeout=5', `root@${host.address}`, command,
    ], { timeoutMs: 20_000 });

  it('hosts have their names, addresses in the lab CIDR, labels, and a VIP that no host holds', () => {
    expect(lab.hosts.map((h) => [h.name, h.address, h.port, h.user, h.labels])).to.deep.equal([
      ['byoh-0', '10.77.0.11', 22, 'root', { role: 'control-plane' }],
      ['byoh-1', '10.77.0.12', 22, 'root', {}],
    ]);
    expect(lab.cidr).to.equal('10.77.0.0/24');
    expect(lab.vip).to.equal('10.77.0.254');
    expect(h0.hostKeyPublic).to.match(/^ssh-ed25519 AAAA\S+ root@byoh-0$/);
    expect(lab.clientPrivateKey).to.contain(['BEGIN OPENSSH', 'PRIVATE KEY'].join(' ')); // assembled: no key-looking literal in the repository
  });

  it('sshd: OpenSSH ssh with the pinned host key logs in as root and runs the real kubeadm (version -o short) with the machine\'s PATH', async () => {
    for (const h of lab.hosts) {
      const r = await ssh(h, 'kubeadm version -o short');
      expect(r, r.stderr).to.include({ code: 0 });
      expect(r.stdout.trim()).to.equal(testbedVersions().KUBERNETES_VERSION);
    }
    const env = await ssh(h0, 'echo "$PATH"; hostname; id -u; command -v kubeadm modprobe systemctl');
    expect(env.stdout.trim().split('\n')).to.deep.equal([MACHINE_PATH, 'byoh-0', '0', '/usr/local/bin/kubeadm', '/usr/local/sbin/modprobe', '/usr/local/sbin/systemctl']);
  });

  it('sshd: files copy over its SFTP subsystem (scp) into the machine\'s own /root', async () => {
    const file = join(lab.clientKeyFile, '..', 'payload.txt');
    writeFileSync(file, 'hello byoh\n');
    const r = await lab.exec(['scp', '-F', '/dev/null', '-i', lab.clientKeyFile, '-o', `UserKnownHostsFile=${lab.knownHostsFile}`, '-o', 'BatchMode=yes', file, `root@${h1.address}:/root/payload.txt`], { timeoutMs: 20_000 });
    expect(r, r.stderr).to.include({ code: 0 });
    expect((await h1.run('cat /root/payload.txt')).stdout).to.equal('hello byoh\n');
    expect(h1.sshdLog()).to.contain('Accepted publickey for root');
  });

  it('sshd: a wrong pinned host key is refused (no command runs)', async () => {
    const wrong = join(lab.clientKeyFile, '..', 'wrong_known_hosts');
    writeFileSync(wrong, `${h0.address} ${h1.hostKeyPublic}\n`);
    const refused = await ssh(h0, 'touch /tmp/refused-ran', wrong);
    expect(refused.code).to.equal(255);
    expect(refused.stderr).to.match(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    expect((await h0.run('test -e /tmp/refused-ran && echo ran || echo not run')).stdout).to.equal('not run\n');
  });

  it('modprobe and lsmod stand-ins: a module loaded over SSH shows in that host\'s lsmod only, and the call is recorded', async () => {
    const r = await ssh(h0, 'modprobe br_netfilter && lsmod');
    expect(r, r.stderr).to.include({ code: 0 });
    expect(r.stdout.split('\n')[0]).to.equal('Module                  Size  Used by');
    expect(r.stdout).to.match(/^br_netfilter\s+\d+\s+\d+$/m);
    expect((await ssh(h1, 'lsmod')).stdout).not.to.contain('br_netfilter');
    expect(h0.standInCalls().map((c) => [c.command, ...c.args])).to.deep.include(['modprobe', 'br_netfilter']);
    expect(h1.standInCalls().some((c) => c.command === 'modprobe')).to.equal(false);
  });

  it('sysctl stand-in: sysctl -w then sysctl -n reads the value back; unknown keys fail as sysctl does', async () => {
    const key = 'net.bridge.bridge-nf-call-iptables';
    const w = await ssh(h0, `sysctl -w ${key}=1 && sysctl -n ${key}`);
    expect(w, w.stderr).to.include({ code: 0 });
    expect(w.stdout).to.equal(`${key} = 1\n1\n`);
    const missing = await ssh(h0, 'sysctl -n capflow.no.such.key');
    expect(missing.code).to.equal(255);
    expect(missing.stderr).to.contain('sysctl: cannot stat /proc/sys/capflow/no/such/key: No such file or directory');
  });

  it('swapoff and swapon stand-ins: after swapoff -a, swapon --show prints nothing', async () => {
    const r = await ssh(h0, 'swapoff -a && swapon --show --noheadings');
    expect(r).to.include({ code: 0, stdout: '' });
    expect(h0.standInCalls().map((c) => [c.command, ...c.args])).to.deep.include(['swapoff', '-a']);
  });

  it('run() executes inside the machine as root; linkDown() makes the host unreachable and linkUp() brings it back', async () => {
    expect((await h1.run('hostname; cat /etc/hosts')).stdout).to.match(/^byoh-1\n[\s\S]*10\.77\.0\.11 byoh-0/);
    const probe = () => lab.exec([process.execPath, '-e', TCP_PROBE, h1.address, '22'], { timeoutMs: 10_000 });
    expect((await probe()).code).to.equal(0);
    await h1.linkDown();
    try {
      const down = await probe();
      expect(down.code, down.stderr).to.not.equal(0);
    } finally {
      await h1.linkUp();
    }
    await until('host back', async () => ((await probe()).code === 0 ? true : undefined), 10_000);
  });

  it('kube-vip stand-in: kube-vip\'s static pod manifest (ARP, control plane, no leader election) puts the VIP on eth0, where the lab reaches the host, and takes it off when removed', async () => {
    // the kubelet stand-in runs static pods once it has a configuration; no API server is needed for them
    const config = toYaml({ apiVersion: 'kubelet.config.k8s.io/v1beta1', kind: 'KubeletConfiguration', staticPodPath: '/etc/kubernetes/manifests' });
    // the manifest capflow writes on a control plane host (src/hosts/kube-vip.ts)
    const manifest = kubeVipManifest({ address: lab.vip, interface: 'eth0', kubeconfigPath: '/etc/kubernetes/super-admin.conf' });
    const w = await h0.run('mkdir -p /var/lib/kubelet /etc/kubernetes/manifests && cat > /var/lib/kubelet/config.yaml && touch /var/lib/kubelet/kubeadm-flags.env', { input: config });
    expect(w.code, w.stderr).to.equal(0);
    expect((await h0.run('cat > /etc/kubernetes/manifests/kube-vip.yaml', { input: manifest })).code).to.equal(0);
    await until('the VIP on byoh-0 eth0', async () => ((await h0.run('ip -4 -o addr show dev eth0')).stdout.includes(`inet ${lab.vip}/32 `) ? true : undefined), 30_000);
    expect((await h1.run('ip -4 -o addr show')).stdout).not.to.contain(lab.vip);

    // what listens on the host answers at the VIP (a server of our own on 6443, standing in for kube-apiserver)
    const server = `require('net').createServer((s) => s.end(require('os').hostname() + '\\n')).listen(6443, '0.0.0.0')`;
    await h0.run(`nohup ${process.execPath} -e "${server}" >/dev/null 2>&1 &`);
    const answer = await until('an answer at the VIP', async () => {
      const r = await lab.exec([process.execPath, '-e', TCP_PROBE, lab.vip, '6443', 'read'], { timeoutMs: 10_000 });
      return r.code === 0 ? r.stdout : undefined;
    }, 15_000);
    expect(answer).to.equal('byoh-0\n');
    const viaSsh = await ssh(h1, `${process.execPath} -e "${TCP_PROBE.replace(/"/g, '\\"')}" ${lab.vip} 6443 read`);
    expect(viaSsh.stdout, viaSsh.stderr).to.equal('byoh-0\n');

    await h0.run('rm /etc/kubernetes/manifests/kube-vip.yaml');
    await until('the VIP gone from byoh-0', async () => ((await h0.run('ip -4 -o addr show dev eth0')).stdout.includes(lab.vip) ? undefined : true), 30_000);
    const log = (await h0.run('cat /var/log/pods/kube-system_kube-vip/kube-vip.log')).stdout;
    expect(log).to.contain(`kube-vip stand-in: leader (ARP mode): ${lab.vip}/32 added to eth0`);
    expect(log).to.contain(`SIGTERM: ${lab.vip}/32 removed from eth0`);
  });
});
