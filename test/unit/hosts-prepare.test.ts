// prepareHost against a local stand-in host (test/support/local-shell.ts): fake tools on PATH answer
// from a state directory and record their calls; host paths (/etc, /usr/bin) live in a temp root.

import { expect } from 'chai';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCapflowError } from '../../src/core/errors.js';
import type { Logger } from '../../src/core/logger.js';
import { prepareHost, type HostPreparation, type PreparationChange } from '../../src/hosts/prepare.js';
import { LocalShell } from '../support/local-shell.js';

const LOG = 'echo "$(basename "$0") $*" >> "$STATE/calls"';

// Fake tools: /bin/bash scripts reading and writing $STATE (and $ROOT for files).
const FAKE_TOOLS: Record<string, string> = {
  uname: '[ "$1" = -m ] && { cat "$STATE/arch" 2>/dev/null || echo x86_64; exit 0; }; exec /bin/uname "$@"',
  hostname: 'echo node-1',
  swapon: '[ -f "$STATE/swap" ] && cat "$STATE/swap"; exit 0',
  swapoff: `${LOG}; rm -f "$STATE/swap"`,
  lsmod: 'echo "Module Size Used by"; [ -f "$STATE/modules" ] && sed "s/$/ 16384 0/" "$STATE/modules"; exit 0',
  modprobe: `${LOG}; echo "$1" >> "$STATE/modules"`,
  sysctl: `case "$1" in
  -n) case "$2" in net.bridge.*) grep -qx br_netfilter "$STATE/modules" 2>/dev/null || { echo "sysctl: cannot stat /proc/sys/$2" >&2; exit 255; };; esac
      cat "$STATE/sysctl-$2" 2>/dev/null || echo 0 ;;
  --system) ${LOG}
      for f in "$ROOT"/etc/sysctl.d/*.conf; do
        [ -f "$f" ] && sed -n 's/^\\([a-z][^ =]*\\) *= *\\(.*\\)$/\\1 \\2/p' "$f" | while read -r k v; do echo "$v" > "$STATE/sysctl-$k"; done
      done ;;
  *) echo "fake sysctl: $*" >&2; exit 2 ;;
esac`,
  systemctl: `case "$1" in
  is-active) [ -f "$STATE/active-$2" ] && { echo active; exit 0; }; echo inactive; exit 3 ;;
  is-enabled) [ -f "$STATE/enabled-$2" ] && { echo enabled; exit 0; }; echo disabled; exit 1 ;;
  cat) [ -f "$STATE/installed-kubelet" ] || [ -f "$ROOT/etc/systemd/system/kubelet.service" ] || exit 1; echo '[Unit]' ;;
  enable) ${LOG}; if [ "$2" = --now ]; then touch "$STATE/enabled-$3" "$STATE/active-$3"; else touch "$STATE/enabled-$2"; fi ;;
  *) ${LOG} ;;
esac`,
  containerd: `[ -f "$STATE/installed-containerd" ] || exit 127
case "$1" in
  --version) echo "containerd github.com/containerd/containerd 1.7.12" ;;
  config) printf '%s\\n' 'version = 2' '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]' '            SystemdCgroup = false' ;;
esac`,
  kubeadm: '[ -f "$STATE/installed-kubeadm" ] || exit 127; echo "v$(cat "$STATE/installed-kubeadm")"',
  kubelet: '[ -f "$STATE/installed-kubelet" ] || exit 127; echo "Kubernetes v$(cat "$STATE/installed-kubelet")"',
  kubectl: `[ -f "$STATE/installed-kubectl" ] || exit 127
printf '{\\n  "clientVersion": {\\n    "major": "1",\\n    "gitVersion": "v%s",\\n    "platform": "linux/amd64"\\n  },\\n  "kustomizeVersion": "v5.4.2"\\n}\\n' "$(cat "$STATE/installed-kubectl")"`,
  'apt-get': `${LOG}
[ "$1" = install ] || exit 0
for a in "$@"; do case "$a" in
  containerd) touch "$STATE/installed-containerd" ;;
  kubelet=*|kubeadm=*|kubectl=*) v="\${a#*=}"; echo "\${v%%-*}" > "$STATE/installed-\${a%%=*}" ;;
esac; done`,
  'apt-mark': LOG,
  dnf: `${LOG}
[ "$1" = install ] || exit 0
for a in "$@"; do case "$a" in
  containerd) touch "$STATE/installed-containerd" ;;
  kubelet-*|kubeadm-*|kubectl-*) echo "\${a#*-}" > "$STATE/installed-\${a%%-*}" ;;
esac; done`,
  dpkg: `${LOG}
for a in "$@"; do case "$a" in *.deb) b=$(basename "$a"); v="\${b#*_}"; echo "\${v%%-*}" > "$STATE/installed-\${b%%_*}" ;; esac; done`,
  // Each argument on a line of its own: quoting mistakes show up as split or merged arguments.
  curl: `${LOG}; printf '%s\\n' "$@" > "$STATE/curl-args"; echo 'FAKE KEY'`,
  gpg: `${LOG}; out=; while [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done; cat > "$out"`,
  ip: `case "$2" in
  route) echo "default via 10.0.0.1 dev eth0 proto dhcp src 10.0.0.5 metric 100" ;;
  addr) echo "2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever preferred_lft forever" ;;
esac`,
};

const UBUNTU = 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n';
const ROCKY = 'NAME="Rocky Linux"\nVERSION_ID="9.4"\nID="rocky"\nID_LIKE="rhel centos fedora"\n';
const WANT: HostPreparation = { kubernetesVersion: 'v1.31.4' };

interface Bed {
  tmp: string;
  root: string;
  state: string;
  shell: () => LocalShell;
  calls: () => string[];
  read: (hostPath: string) => string;
}

function quietLog(): Logger & { lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = {
    lines,
    error: () => {},
    warn: () => {},
    debug: () => {},
    info: (message: string, meta?: Record<string, unknown>) => void lines.push({ message, ...meta }),
    child: () => log,
  };
  return log;
}

/** A fresh host: swap on (and in fstab), only overlay loaded, ip_forward 0, nothing installed. */
function freshHost(osRelease = UBUNTU): Bed {
  const tmp = mkdtempSync(join(tmpdir(), 'capflow-prepare-'));
  const [root, state, bin] = ['root', 'state', 'bin'].map((d) => join(tmp, d)) as [string, string, string];
  for (const d of [join(root, 'etc'), join(root, 'usr/bin'), state, bin]) mkdirSync(d, { recursive: true });
  for (const [name, body] of Object.entries(FAKE_TOOLS)) {
    writeFileSync(join(bin, name), `#!/bin/bash\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  writeFileSync(join(root, 'etc/os-release'), osRelease);
  writeFileSync(join(root, 'etc/fstab'), '# <file system> <mount point> <type>\nUUID=abc / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n');
  writeFileSync(join(state, 'swap'), '/swap.img file 2G 0B -2\n');
  writeFileSync(join(state, 'modules'), 'overlay\n');
  const shells: LocalShell[] = [];
  return {
    tmp,
    root,
    state,
    shell: () => {
      const s = new LocalShell({ host: 'node-1', root, binDir: bin, env: { STATE: state, ROOT: root } });
      shells.push(s);
      return s;
    },
    calls: () => (existsSync(join(state, 'calls')) ? readFileSync(join(state, 'calls'), 'utf8').trim().split('\n') : []),
    read: (hostPath: string) => readFileSync(join(root, hostPath), 'utf8'),
  };
}

const items = (changes: PreparationChange[]) => changes.map((c) => c.item);

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

const FRESH_CHANGES = [
  'swap',
  'module br_netfilter',
  'file /etc/modules-load.d/capflow-kubernetes.conf',
  'sysctl net.bridge.bridge-nf-call-iptables',
  'sysctl net.bridge.bridge-nf-call-ip6tables',
  'sysctl net.ipv4.ip_forward',
  'file /etc/sysctl.d/99-capflow-kubernetes.conf',
  'containerd',
  'package repository',
  'kubelet v1.31.4',
  'kubeadm v1.31.4',
  'kubectl v1.31.4',
  'kubelet service',
];

describe('hosts/prepare: prepareHost on a local stand-in host', function () {
  this.timeout(30_000);
  const beds: Bed[] = [];
  const bed = (osRelease?: string) => {
    const b = freshHost(osRelease);
    beds.push(b);
    return b;
  };
  after(() => beds.forEach((b) => rmSync(b.tmp, { recursive: true, force: true })));

  it('prepares a fresh debian host: exactly the expected changes, in order, and the files and packages they make', async () => {
    const b = bed();
    const shell = b.shell();
    const log = quietLog();
    const res = await prepareHost(shell, WANT, { dryRun: false, log });

    expect(items(res.changes)).to.deep.equal(FRESH_CHANGES);
    expect(res.changes[0]).to.deep.equal({ item: 'swap', detail: 'swapoff -a; comment out swap in /etc/fstab' });
    expect(res.changes.find((c) => c.item === 'sysctl net.ipv4.ip_forward')?.detail).to.equal('0 → 1');
    expect(res.changes.find((c) => c.item === 'kubeadm v1.31.4')?.detail).to.equal('install');
    expect(log.lines.map((l) => l.item)).to.deep.equal(FRESH_CHANGES);
    expect(res.facts).to.deep.equal({
      os: 'ubuntu',
      osVersion: '22.04',
      arch: 'amd64',
      family: 'debian',
      runtime: 'none',
      swapOn: true,
      hostname: 'node-1',
      defaultInterface: 'eth0',
      addresses: ['10.0.0.5'],
    });

    // Read-only: the fact script first, and again to check the installed versions; the rest mutates.
    const readOnly = shell.calls.filter((c) => !c.mutating);
    expect(shell.calls[0]?.mutating).to.equal(false);
    expect(readOnly).to.have.length(2);
    expect(readOnly[1]?.command).to.equal(readOnly[0]?.command);

    expect(b.calls()).to.include.members([
      'swapoff -a',
      'modprobe br_netfilter',
      'sysctl --system',
      'systemctl enable --now containerd',
      'apt-get install -y --allow-downgrades --allow-change-held-packages kubelet=1.31.4-* kubeadm=1.31.4-* kubectl=1.31.4-*',
      'apt-mark hold kubelet kubeadm kubectl',
      'systemctl enable kubelet',
    ]);
    expect(b.calls()).not.to.include('modprobe overlay');
    expect(readFileSync(join(b.state, 'curl-args'), 'utf8')).to.equal('-fsSL\nhttps://pkgs.k8s.io/core:/stable:/v1.31/deb/Release.key\n');
    expect(b.read('etc/apt/keyrings/kubernetes-apt-keyring.gpg')).to.equal('FAKE KEY\n');
    expect(b.read('etc/apt/sources.list.d/kubernetes.list')).to.equal(
      'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /\n',
    );
    expect(b.read('etc/modules-load.d/capflow-kubernetes.conf')).to.match(/^overlay\nbr_netfilter\n$/m);
    expect(b.read('etc/sysctl.d/99-capflow-kubernetes.conf')).to.contain('net.ipv4.ip_forward = 1\n');
    expect(b.read('etc/containerd/config.toml')).to.match(/^\s*SystemdCgroup = true$/m);
    expect(b.read('etc/fstab')).to.contain('#/swap.img none swap sw 0 0\n').and.to.contain('\nUUID=abc / ext4 defaults 0 1\n');

    // Rerun on the prepared host: nothing to change, and nothing mutating runs.
    const again = b.shell();
    const rerun = await prepareHost(again, WANT, { dryRun: false, log: quietLog() });
    expect(rerun.changes).to.deep.equal([]);
    expect(again.calls).to.have.length(1);
    expect(again.mutatingCalls()).to.deep.equal([]);
    expect(rerun.facts).to.include({ kubeadm: 'v1.31.4', kubelet: 'v1.31.4', kubectl: 'v1.31.4', runtime: 'containerd', swapOn: false });
  });

  it('dryRun reports the same changes and runs no mutating command', async () => {
    const b = bed();
    const shell = b.shell();
    const res = await prepareHost(shell, WANT, { dryRun: true, log: quietLog() });
    expect(items(res.changes)).to.deep.equal(FRESH_CHANGES);
    expect(shell.mutatingCalls()).to.deep.equal([]);
    expect(b.calls()).to.deep.equal([]);
    expect(existsSync(join(b.root, 'etc/modules-load.d'))).to.equal(false);
  });

  it('reinstalls a kubeadm of the wrong version from the bundle path (a directory with a quote and a space)', async () => {
    const b = bed();
    await prepareHost(b.shell(), WANT, { dryRun: false, log: quietLog() });
    writeFileSync(join(b.state, 'installed-kubeadm'), '1.30.2\n');
    const bundle = join(b.tmp, "air gap's bundle");
    mkdirSync(bundle);
    for (const tool of ['kubeadm', 'kubelet', 'kubectl']) {
      writeFileSync(join(bundle, tool), `#!/bin/sh\necho v1.31.4\n`);
      chmodSync(join(bundle, tool), 0o755);
    }
    const want = { ...WANT, packages: { bundlePath: bundle } };

    const shell = b.shell();
    const res = await prepareHost(shell, want, { dryRun: false, log: quietLog() });
    expect(res.facts.kubeadm).to.equal('v1.30.2');
    expect(res.changes).to.deep.equal([{ item: 'kubeadm v1.31.4', detail: `replace v1.30.2 from ${bundle}` }]);
    expect(shell.mutatingCalls().map((c) => c.command)).to.deep.equal([`install -m 0755 '${join(b.tmp, "air gap'\\''s bundle")}/kubeadm' /usr/bin/kubeadm`]);
    expect(readFileSync(join(b.root, 'usr/bin/kubeadm'), 'utf8')).to.contain('v1.31.4');

    const rerun = b.shell();
    expect((await prepareHost(rerun, want, { dryRun: false, log: quietLog() })).changes).to.deep.equal([]);
    expect(rerun.mutatingCalls()).to.deep.equal([]);
  });

  it('refuses, before changing anything, a bundle that lacks a tool, and reports one that holds the wrong version', async () => {
    const b = bed();
    const bundle = join(b.tmp, 'bundle');
    mkdirSync(bundle);
    writeFileSync(join(bundle, 'kubeadm'), '#!/bin/sh\necho v1.30.0\n');
    chmodSync(join(bundle, 'kubeadm'), 0o755);
    const shell = b.shell();
    const lacking = await rejection(prepareHost(shell, { ...WANT, packages: { bundlePath: bundle } }, { dryRun: false, log: quietLog() }));
    expect(isCapflowError(lacking) && lacking.code).to.equal('HOST_BUNDLE_INCOMPLETE');
    expect((lacking as Error).message).to.contain('node-1').and.to.contain('kubelet, kubectl');
    expect(shell.mutatingCalls()).to.deep.equal([]);

    const missing = await rejection(prepareHost(b.shell(), { ...WANT, packages: { bundlePath: join(b.tmp, 'nowhere') } }, { dryRun: true, log: quietLog() }));
    expect(isCapflowError(missing) && missing.code).to.equal('HOST_BUNDLE_MISSING');

    // Only kubeadm is stale: the bundle's kubeadm is installed, and found to be v1.30.0.
    await prepareHost(b.shell(), WANT, { dryRun: false, log: quietLog() });
    writeFileSync(join(b.state, 'installed-kubeadm'), '1.29.0\n');
    const wrong = await rejection(prepareHost(b.shell(), { ...WANT, packages: { bundlePath: bundle } }, { dryRun: false, log: quietLog() }));
    expect(isCapflowError(wrong) && wrong.code).to.equal('HOST_KUBE_VERSION_MISMATCH');
    expect((wrong as Error).message).to.contain('kubeadm is v1.30.0');
  });

  it('installs from the bundle packages (*.deb) when it holds them, then holds them', async () => {
    const b = bed();
    const bundle = join(b.tmp, 'debs');
    mkdirSync(bundle);
    for (const tool of ['kubeadm', 'kubelet', 'kubectl', 'cri-tools']) writeFileSync(join(bundle, `${tool}_1.31.4-1.1_amd64.deb`), '');
    const shell = b.shell();
    const res = await prepareHost(shell, { ...WANT, packages: { bundlePath: bundle } }, { dryRun: false, log: quietLog() });
    expect(items(res.changes)).not.to.include('package repository');
    const dpkg = shell.mutatingCalls().find((c) => c.command.startsWith('dpkg -i'));
    expect(dpkg?.command).to.contain(`'${bundle}/kubeadm_1.31.4-1.1_amd64.deb'`).and.to.contain('&& apt-mark hold kubelet kubeadm kubectl');
    expect(res.changes.find((c) => c.item === 'kubelet v1.31.4')?.detail).to.equal(`install from ${bundle}`);
  });

  it('prepares a rhel-like host (rocky) with the rpm repository and dnf', async () => {
    const b = bed(ROCKY);
    const res = await prepareHost(b.shell(), WANT, { dryRun: false, log: quietLog() });
    expect(res.facts).to.include({ os: 'rocky', osVersion: '9.4', family: 'rhel' });
    expect(items(res.changes)).to.deep.equal(FRESH_CHANGES);
    expect(b.read('etc/yum.repos.d/kubernetes.repo')).to.contain('baseurl=https://pkgs.k8s.io/core:/stable:/v1.31/rpm/\n');
    expect(b.calls()).to.include('dnf install -y --disableexcludes=kubernetes kubelet-1.31.4 kubeadm-1.31.4 kubectl-1.31.4');
    expect((await prepareHost(b.shell(), WANT, { dryRun: false, log: quietLog() })).changes).to.deep.equal([]);
  });

  it('refuses an unsupported OS or architecture, naming the host, with nothing run but the fact script', async () => {
    const arch = bed('ID=arch\nNAME="Arch Linux"\n');
    const shell = arch.shell();
    const os = await rejection(prepareHost(shell, WANT, { dryRun: false, log: quietLog() }));
    expect(isCapflowError(os) && os.code).to.equal('HOST_OS_UNSUPPORTED');
    expect(isCapflowError(os) && os.kind).to.equal('invalid-input');
    expect((os as Error).message).to.contain('node-1').and.to.contain('"arch"');
    expect(shell.calls).to.have.length(1);

    const ppc = bed();
    writeFileSync(join(ppc.state, 'arch'), 'ppc64le\n');
    const bad = await rejection(prepareHost(ppc.shell(), WANT, { dryRun: true, log: quietLog() }));
    expect(isCapflowError(bad) && bad.code).to.equal('HOST_ARCH_UNSUPPORTED');
    expect((bad as Error).message).to.contain('node-1').and.to.contain('ppc64le');
  });

  it('quotes hostile values: a repository URL with a quote and a command substitution reaches curl and apt as is', async () => {
    const b = bed();
    const repo = `https://mirror.example/it's;$(touch\${IFS}${b.state}/pwned)\`touch\${IFS}${b.state}/pwned2\`/`;
    await prepareHost(b.shell(), { ...WANT, packages: { repository: repo } }, { dryRun: false, log: quietLog() });
    expect(existsSync(join(b.state, 'pwned'))).to.equal(false);
    expect(existsSync(join(b.state, 'pwned2'))).to.equal(false);
    expect(readFileSync(join(b.state, 'curl-args'), 'utf8')).to.equal(`-fsSL\n${repo}Release.key\n`);
    expect(b.read('etc/apt/sources.list.d/kubernetes.list')).to.equal(`deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] ${repo} /\n`);
  });

  it('rejects malformed wishes before touching the host', async () => {
    const b = bed();
    const shell = b.shell();
    const cases: Array<[HostPreparation, string]> = [
      [{ kubernetesVersion: '1.31' }, 'KUBERNETES_VERSION_INVALID'],
      [{ kubernetesVersion: 'v1.31.4', packages: { repository: 'https://a/', bundlePath: '/b' } }, 'HOST_PACKAGES_CONFLICT'],
      [{ kubernetesVersion: 'v1.31.4', packages: { repository: 'https://a/ x\ndeb http://evil/ /' } }, 'HOST_REPOSITORY_INVALID'],
      [{ kubernetesVersion: 'v1.31.4', packages: { repository: 'ftp://a/' } }, 'HOST_REPOSITORY_INVALID'],
      [{ kubernetesVersion: 'v1.31.4', packages: { bundlePath: 'relative/dir' } }, 'HOST_BUNDLE_INVALID'],
    ];
    for (const [want, code] of cases) {
      const err = await rejection(prepareHost(shell, want, { dryRun: false, log: quietLog() }));
      expect(isCapflowError(err) && err.code, JSON.stringify(want)).to.equal(code);
    }
    expect(shell.calls).to.deep.equal([]);
  });
});
