// The recording stand-in commands' state (src/emulator/stand-in-commands.ts): modprobe/lsmod,
// sysctl and swapoff/swapon against a fake /proc and /etc in a temp dir, so a host preparation can
// check, change, and see its change on a rerun. Runs the generated scripts for real (sh and node).

import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { readStandInCalls, standInStateFile, writeStandInCommands } from '../../src/emulator/stand-in-commands.js';

describe('emulator/stand-in-commands: stateful modprobe/lsmod, sysctl and swapoff/swapon stand-ins', function () {
  this.timeout(30_000);
  let dir: string;
  let bin: string;
  let record: string;
  let proc: string;
  let etc: string;

  const put = (path: string, text: string): void => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  };
  const kubeletService = () => ({ pidFile: join(dir, 'run', 'kubelet.pid'), requestFile: join(dir, 'run', 'kubelet.request') });
  const install = (machine: string): void => writeStandInCommands(join(dir, machine, 'bin'), join(dir, machine, 'log', 'calls.jsonl'), { etcDir: etc, procDir: proc, kubeletService: kubeletService() });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'capflow-stand-in-state-'));
    bin = join(dir, 'm1', 'bin');
    record = join(dir, 'm1', 'log', 'calls.jsonl');
    proc = join(dir, 'proc');
    etc = join(dir, 'etc');
    mkdirSync(proc, { recursive: true });
    mkdirSync(etc, { recursive: true });
    install('m1');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const call = (command: string, args: string[], binDir = bin) => {
    const r = spawnSync(join(binDir, command), args, { encoding: 'utf8' });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it('systemctl stop kubelet stops the kubelet (SIGTERM, waited for) and holds it down; restart only lifts the hold', async () => {
    const { pidFile, requestFile } = kubeletService();
    // a stand-in for the kubelet stand-in: a process that exits on SIGTERM
    const kubelet = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    const exited = new Promise<string | null>((resolve) => kubelet.once('exit', (_code, signal) => resolve(signal)));
    put(pidFile, String(kubelet.pid));
    expect(call('systemctl', ['restart', 'kubelet']).status).to.equal(0);
    expect(readFileSync(requestFile, 'utf8')).to.equal('start');
    expect(kubelet.exitCode, 'restart leaves a running kubelet alone').to.equal(null);
    // asynchronously: this process is the kubelet's parent and must reap it for the wait to end
    const stop = spawn(join(bin, 'systemctl'), ['stop', 'kubelet.service'], { stdio: 'ignore' });
    const stopped = new Promise<number | null>((resolve) => stop.once('exit', (code) => resolve(code)));
    expect(await exited).to.equal('SIGTERM');
    expect(await stopped).to.equal(0);
    expect(readFileSync(requestFile, 'utf8')).to.equal('stop');
    expect(call('systemctl', ['start', 'kubelet']).status).to.equal(0);
    expect(readFileSync(requestFile, 'utf8')).to.equal('start');
    expect(call('systemctl', ['stop', 'containerd']).status, 'other units: recorded only').to.equal(0);
    expect(readFileSync(requestFile, 'utf8')).to.equal('start');
  });

  it('the state file sits next to the record file by default', () => {
    expect(standInStateFile('/var/log/capflow/stand-in-calls.jsonl')).to.equal('/var/log/capflow/stand-in-state.jsonl');
  });

  it('lsmod prints its header and /proc/modules lines in lsmod\'s format, users joined by commas', () => {
    put(join(proc, 'modules'), 'bridge 421888 1 br_netfilter, Live 0x0000000000000000\nstp 12288 1 bridge, Live 0x0000000000000000\noverlay 217088 0 - Live 0x0000000000000000\n');
    expect(call('lsmod', []).stdout).to.equal(
      [
        'Module                  Size  Used by',
        'bridge                421888  1 br_netfilter',
        'stp                    12288  1 bridge',
        'overlay               217088  0',
        '',
      ].join('\n'),
    );
  });

  it('modprobe marks modules loaded (newest first in lsmod, dashes as underscores, parameters not modules), -a several, -r removes; only on its own machine', () => {
    put(join(proc, 'modules'), 'overlay 217088 0 - Live 0x0000000000000000\n');
    expect(call('modprobe', ['br-netfilter', 'foo=1']).status).to.equal(0);
    expect(call('modprobe', ['-a', 'ip_vs', 'nf_conntrack']).status).to.equal(0);
    expect(call('lsmod', []).stdout.split('\n').map((l) => l.split(/\s+/)[0])).to.deep.equal(['Module', 'nf_conntrack', 'ip_vs', 'br_netfilter', 'overlay', '']);
    expect(call('lsmod', []).stdout).to.contain(`br_netfilter${' '.repeat(15)}0  0\n`);
    call('modprobe', ['-r', 'ip_vs', 'overlay']);
    expect(call('lsmod', []).stdout.split('\n').map((l) => l.split(/\s+/)[0])).to.deep.equal(['Module', 'nf_conntrack', 'br_netfilter', '']);
    // a dry run changes nothing; the calls are recorded all the same
    call('modprobe', ['-n', 'dummy']);
    expect(call('lsmod', []).stdout).not.to.contain('dummy');
    expect(readStandInCalls(record).map((c) => [c.command, ...c.args])).to.deep.include.members([['modprobe', 'br-netfilter', 'foo=1'], ['lsmod'], ['modprobe', '-n', 'dummy']]);
    // another machine has its own state
    install('m2');
    expect(call('lsmod', [], join(dir, 'm2', 'bin')).stdout).to.equal('Module                  Size  Used by\noverlay               217088  0\n');
  });

  it('lsmod without /proc/modules (a kernel without modules) prints the header and the stand-in\'s modules', () => {
    expect(call('lsmod', []).stdout).to.equal('Module                  Size  Used by\n');
    call('modprobe', ['overlay']);
    expect(call('lsmod', []).stdout).to.equal(`Module                  Size  Used by\noverlay${' '.repeat(20)}0  0\n`);
  });

  it('sysctl -n prints the recorded value, else /proc/sys\'s, else fails as sysctl does (exit 255); -e ignores', () => {
    put(join(proc, 'sys/net/ipv4/ip_forward'), '0\n');
    expect(call('sysctl', ['-n', 'net.ipv4.ip_forward'])).to.deep.include({ status: 0, stdout: '0\n' });
    expect(call('sysctl', ['net/ipv4/ip_forward'])).to.deep.include({ status: 0, stdout: 'net.ipv4.ip_forward = 0\n' });
    const missing = call('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables']);
    expect(missing).to.deep.equal({ status: 255, stdout: '', stderr: 'sysctl: cannot stat /proc/sys/net/bridge/bridge-nf-call-iptables: No such file or directory\n' });
    expect(call('sysctl', ['-e', '-n', 'net.bridge.bridge-nf-call-iptables'])).to.deep.equal({ status: 0, stdout: '', stderr: '' });

    expect(call('sysctl', ['-w', 'net.ipv4.ip_forward=1', 'net.bridge.bridge-nf-call-iptables = 1'])).to.deep.include({ status: 0, stdout: 'net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n' });
    expect(call('sysctl', ['-n', 'net.ipv4.ip_forward']).stdout).to.equal('1\n');
    expect(call('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables']).stdout).to.equal('1\n');
    expect(call('sysctl', ['-qw', 'vm.swappiness=10']).stdout).to.equal('');
    expect(call('sysctl', ['-N', 'vm.swappiness']).stdout).to.equal('vm.swappiness\n');
    expect(call('sysctl', ['vm.swappiness']).stdout).to.equal('vm.swappiness = 10\n');
  });

  it('sysctl -p reads the file given (default /etc/sysctl.conf) and --system reads /etc/sysctl.d/*.conf in name order, then /etc/sysctl.conf', () => {
    put(join(dir, 'k8s.conf'), '# kubernetes\nnet.bridge.bridge-nf-call-iptables = 1\n; comment\n-net.ipv4.ip_forward=1\n\nnot a setting\n');
    expect(call('sysctl', ['-p', join(dir, 'k8s.conf')])).to.deep.include({ status: 0, stdout: 'net.bridge.bridge-nf-call-iptables = 1\nnet.ipv4.ip_forward = 1\n' });
    expect(call('sysctl', ['-n', 'net.ipv4.ip_forward']).stdout).to.equal('1\n');
    expect(call('sysctl', ['-p'])).to.deep.include({ status: 1, stderr: 'sysctl: cannot open "/etc/sysctl.conf": No such file or directory\n' });

    put(join(etc, 'sysctl.d/99-k8s.conf'), 'vm.overcommit_memory = 1\n');
    put(join(etc, 'sysctl.d/10-a.conf'), 'vm.overcommit_memory = 0\nkernel.panic = 10\n');
    put(join(etc, 'sysctl.d/README'), 'not read = 1\n');
    put(join(etc, 'sysctl.conf'), 'kernel.panic=20\n');
    expect(call('sysctl', ['--system']).stdout).to.equal(
      [
        '* Applying /etc/sysctl.d/10-a.conf ...',
        'vm.overcommit_memory = 0',
        'kernel.panic = 10',
        '* Applying /etc/sysctl.d/99-k8s.conf ...',
        'vm.overcommit_memory = 1',
        '* Applying /etc/sysctl.conf ...',
        'kernel.panic = 20',
        '',
      ].join('\n'),
    );
    expect(call('sysctl', ['-n', 'vm.overcommit_memory', 'kernel.panic']).stdout).to.equal('1\n20\n');
    expect(call('sysctl', ['-n', 'not read']).status).to.equal(255);
  });

  it('swapon --show prints /proc/swaps in swapon\'s table until swapoff -a, then nothing; swapon -a turns it on again', () => {
    put(join(proc, 'swaps'), 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swap.img                               file\t\t2097148\t\t0\t\t-2\n/dev/vdb2                               partition\t1572864\t\t524288\t\t-3\n');
    const table = ['NAME      TYPE      SIZE USED PRIO', '/swap.img file        2G   0B   -2', '/dev/vdb2 partition 1.5G 512M   -3', ''].join('\n');
    expect(call('swapon', ['--show'])).to.deep.include({ status: 0, stdout: table });
    expect(call('swapon', []).stdout).to.equal(table);
    // without headings the widths are the cells' own (libsmartcols)
    expect(call('swapon', ['--show', '--noheadings']).stdout).to.equal('/swap.img file        2G   0B -2\n/dev/vdb2 partition 1.5G 512M -3\n');
    expect(call('swapon', ['--show=NAME', '--noheadings', '--bytes']).stdout).to.equal('/swap.img\n/dev/vdb2\n');
    expect(call('swapon', ['--show=NAME,SIZE', '--bytes']).stdout).to.equal('NAME            SIZE\n/swap.img 2147479552\n/dev/vdb2 1610612736\n');
    expect(call('swapon', ['-s']).stdout.split('\n')).to.have.length(4);

    call('swapoff', ['/dev/vdb2']);
    expect(call('swapon', ['--show=NAME', '--noheadings']).stdout).to.equal('/swap.img\n');
    expect(call('swapoff', ['-a']).status).to.equal(0);
    expect(call('swapon', ['--show'])).to.deep.include({ status: 0, stdout: '' });
    expect(call('swapon', ['-s']).stdout).to.equal('');
    call('swapon', ['/swap.img']);
    expect(call('swapon', ['--show=NAME', '--noheadings']).stdout).to.equal('/swap.img\n');
    call('swapon', ['-a']);
    expect(call('swapon', ['--show=NAME', '--noheadings']).stdout).to.equal('/swap.img\n/dev/vdb2\n');
    expect(readStandInCalls(record).filter((c) => c.command === 'swapoff').map((c) => c.args)).to.deep.equal([['/dev/vdb2'], ['-a']]);
  });

  it('swapon --show prints nothing, not even its header, when /proc/swaps lists no area', () => {
    put(join(proc, 'swaps'), 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n');
    expect(call('swapon', ['--show'])).to.deep.equal({ status: 0, stdout: '', stderr: '' });
  });
});
