/**
 * Host preparation for bring-your-own hosts: makes an existing Linux host ready for kubeadm. One
 * read-only command gathers the facts; only what differs from the wanted state is changed, so a
 * prepared host sees no mutating command at all (and dryRun reports what would change).
 */

import { InputError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { shq, type HostShell } from './shell.js';

export interface HostPreparation {
  /** Exact version of kubelet, kubeadm and kubectl, e.g. 'v1.31.4'. */
  kubernetesVersion: string;
  /**
   * Where the packages come from (at most one). Default: the pkgs.k8s.io repository of the version's
   * minor. `repository` is the deb repository on debian-like hosts, the rpm baseurl on rhel-like ones;
   * `bundlePath` is a directory already on the host holding *.deb / *.rpm packages or the binaries.
   */
  packages?: { repository?: string; bundlePath?: string };
}

export interface HostFacts {
  /** ID from /etc/os-release, e.g. ubuntu. */
  os: string;
  osVersion: string;
  arch: 'amd64' | 'arm64';
  family: 'debian' | 'rhel';
  kubeadm?: string;
  kubelet?: string;
  kubectl?: string;
  runtime: 'containerd' | 'none';
  swapOn: boolean;
  hostname: string;
  defaultInterface?: string;
  addresses: string[];
}

export interface PreparationChange {
  item: string;
  detail: string;
}

export interface PreparationResult {
  facts: HostFacts;
  /** What was (or, with dryRun, would be) changed, in order. */
  changes: PreparationChange[];
}

export const MODULES = ['overlay', 'br_netfilter'] as const;
export const SYSCTLS = ['net.bridge.bridge-nf-call-iptables', 'net.bridge.bridge-nf-call-ip6tables', 'net.ipv4.ip_forward'] as const;
export const KUBE_TOOLS = ['kubelet', 'kubeadm', 'kubectl'] as const;
type KubeTool = (typeof KUBE_TOOLS)[number];

export const MODULES_FILE = '/etc/modules-load.d/capflow-kubernetes.conf';
export const SYSCTL_FILE = '/etc/sysctl.d/99-capflow-kubernetes.conf';
export const APT_LIST = '/etc/apt/sources.list.d/kubernetes.list';
export const APT_KEYRING = '/etc/apt/keyrings/kubernetes-apt-keyring.gpg';
export const YUM_REPO = '/etc/yum.repos.d/kubernetes.repo';
export const CONTAINERD_CONFIG = '/etc/containerd/config.toml';
const KUBELET_UNIT = '/etc/systemd/system/kubelet.service';
const KUBELET_DROPIN = '/etc/systemd/system/kubelet.service.d/10-kubeadm.conf';

const DEBIAN_IDS = new Set(['ubuntu', 'debian']);
const RHEL_IDS = new Set(['rhel', 'rocky', 'almalinux', 'centos', 'fedora', 'amzn']);
const ARCHES: Record<string, HostFacts['arch']> = { x86_64: 'amd64', amd64: 'amd64', aarch64: 'arm64', arm64: 'arm64' };

/** What the fact script saw: the public facts plus what planning needs. */
interface Observed {
  facts: HostFacts;
  modulesLoaded: Set<string>;
  sysctl: Record<string, string | undefined>;
  /** Managed files' content (comments and blank lines dropped); undefined when absent. */
  files: Record<'modules' | 'sysctl' | 'apt' | 'yum', string | undefined>;
  fstabSwap: boolean;
  containerdInstalled: boolean;
  systemdCgroup: boolean;
  kubeletEnabled: boolean;
  kubeletUnit: boolean;
  /** Names in bundlePath (undefined when no bundle or not a directory). */
  bundle?: string[];
}

/** A group of changes and the commands that make them, run in order. */
interface Step {
  changes: PreparationChange[];
  commands: Command[];
  /** Read-only check after the commands ran (not in dryRun). */
  verify?: () => Promise<void>;
}

interface Command {
  command: string;
  stdin?: string;
}

interface Target {
  host: string;
  version: string; // v1.31.4
  family: HostFacts['family'];
  repository?: string;
  bundlePath?: string;
}

export async function prepareHost(shell: HostShell, want: HostPreparation, opts: { dryRun: boolean; log: Logger }): Promise<PreparationResult> {
  const version = checkWant(shell.host, want);
  const observed = await observe(shell, want.packages?.bundlePath);
  const target: Target = { host: shell.host, version, family: observed.facts.family, ...want.packages };
  const steps = plan(observed, target, shell);
  const changes: PreparationChange[] = [];
  for (const step of steps) {
    for (const change of step.changes) {
      opts.log.info(opts.dryRun ? 'host change (dry run)' : 'host change', { host: shell.host, ...change });
      changes.push(change);
    }
    if (opts.dryRun) continue;
    for (const c of step.commands) await shell.run(c.command, { mutating: true, ...(c.stdin !== undefined ? { stdin: c.stdin } : {}) });
    await step.verify?.();
  }
  return { facts: observed.facts, changes };
}

/** The host's facts alone (read-only); refuses unsupported hosts like prepareHost does. */
export async function readHostFacts(shell: HostShell): Promise<HostFacts> {
  return (await observe(shell, undefined)).facts;
}

function checkWant(host: string, want: HostPreparation): string {
  const m = /^v?(\d+\.\d+\.\d+)$/.exec(want.kubernetesVersion);
  if (!m) throw new InputError('KUBERNETES_VERSION_INVALID', `host ${host}: kubernetesVersion ${JSON.stringify(want.kubernetesVersion)} is not a release like v1.31.4`);
  const { repository, bundlePath } = want.packages ?? {};
  if (repository !== undefined && bundlePath !== undefined) {
    throw new InputError('HOST_PACKAGES_CONFLICT', `host ${host}: packages.repository and packages.bundlePath exclude each other`);
  }
  // Whitespace would split the apt source line or the repo file; the URL parser would hide newlines.
  if (repository !== undefined && (/\s/.test(repository) || !/^https?:$/.test(safeUrl(repository)?.protocol ?? ''))) {
    throw new InputError('HOST_REPOSITORY_INVALID', `host ${host}: packages.repository ${JSON.stringify(repository)} is not an http(s) URL`);
  }
  if (bundlePath !== undefined && (!bundlePath.startsWith('/') || /[\n\r]/.test(bundlePath))) {
    throw new InputError('HOST_BUNDLE_INVALID', `host ${host}: packages.bundlePath ${JSON.stringify(bundlePath)} is not an absolute path`);
  }
  return `v${m[1]}`;
}

function safeUrl(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

// ---- facts ---------------------------------------------------------------------------------------

/** One POSIX sh script printing key=value lines; any tool may be missing (its line is then absent). */
export function factScript(bundlePath?: string): string {
  const lines = [
    'exec 2>/dev/null',
    "[ -r /etc/os-release ] && grep -E '^(ID|ID_LIKE|VERSION_ID)=' /etc/os-release",
    'echo "arch=$(uname -m)"',
    'echo "hostname=$(hostname)"',
    'v=$(kubeadm version -o short) && echo "kubeadm=$v"',
    'v=$(kubelet --version) && echo "kubelet=$v"',
    // kubectl's JSON is indented: gitVersion sits on a line of its own.
    'v=$(kubectl version --client -o json) && echo "$v" | sed -n \'s/.*"gitVersion": *"\\([^"]*\\)".*/kubectl=\\1/p\' | head -n 1',
    // Old util-linux lacks --show: /proc/swaps then (its first line is a header).
    '{ swapon --show --noheadings || tail -n +2 /proc/swaps; } | sed -n \'1s/.*/swap=on/p\'',
    'awk \'$1 !~ /^#/ && $3 == "swap" { print "fstab_swap=yes"; exit }\' /etc/fstab',
    // A built-in module shows in /sys/module, not in lsmod.
    `for m in ${MODULES.join(' ')}; do { lsmod | grep -q "^$m[[:space:]]" || [ -d "/sys/module/$m" ]; } && echo "module=$m"; done`,
    `for k in ${SYSCTLS.join(' ')}; do v=$(sysctl -n "$k") && echo "sysctl:$k=$v"; done`,
    'echo "containerd_active=$(systemctl is-active containerd)"',
    'containerd --version >/dev/null && echo containerd_installed=yes',
    `grep -Eq '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' ${CONTAINERD_CONFIG} && echo systemd_cgroup=yes`,
    'echo "kubelet_enabled=$(systemctl is-enabled kubelet)"',
    'systemctl cat kubelet.service >/dev/null && echo kubelet_unit=yes',
    `sed 's/^/file_modules=/' ${MODULES_FILE}`,
    `sed 's/^/file_sysctl=/' ${SYSCTL_FILE}`,
    `sed 's/^/file_apt=/' ${APT_LIST}`,
    `sed 's/^/file_yum=/' ${YUM_REPO}`,
    'ip -o route show default | head -n 1 | sed \'s/^/route=/\'',
    "ip -o addr show scope global | awk '{ print \"address=\" $4 }'",
  ];
  if (bundlePath !== undefined) {
    lines.push(`[ -d ${shq(bundlePath)} ] && echo bundle_dir=yes && ls -1A -- ${shq(bundlePath)} | sed 's/^/bundle=/'`);
  }
  lines.push('exit 0');
  return lines.join('\n');
}

type Raw = Map<string, string[]>;

function parseKeyValues(stdout: string): Raw {
  const raw: Raw = new Map();
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    raw.set(key, [...(raw.get(key) ?? []), line.slice(eq + 1)]);
  }
  return raw;
}

async function observe(shell: HostShell, bundlePath: string | undefined): Promise<Observed> {
  const { stdout } = await shell.run(factScript(bundlePath));
  return interpret(shell.host, parseKeyValues(stdout));
}

function interpret(host: string, raw: Raw): Observed {
  const one = (k: string): string | undefined => raw.get(k)?.[0]?.trim() || undefined;
  const unquote = (v: string | undefined) => v?.replace(/^["']|["']$/g, '');
  const os = unquote(one('ID')) ?? 'unknown';
  const idLike = (unquote(one('ID_LIKE')) ?? '').split(/\s+/);
  const family = osFamily(os, idLike);
  if (!family) {
    throw new InputError('HOST_OS_UNSUPPORTED', `host ${host}: OS ${JSON.stringify(os)} is neither debian-like (ubuntu, debian) nor rhel-like (rhel, rocky, almalinux, centos, fedora, amzn)`);
  }
  const machine = one('arch') ?? 'unknown';
  const arch = ARCHES[machine];
  if (!arch) throw new InputError('HOST_ARCH_UNSUPPORTED', `host ${host}: architecture ${JSON.stringify(machine)} is not x86_64 or aarch64`);
  const route = one('route');
  const defaultInterface = route ? /\bdev\s+(\S+)/.exec(route)?.[1] : undefined;
  const facts: HostFacts = {
    os,
    osVersion: unquote(one('VERSION_ID')) ?? '',
    arch,
    family,
    kubeadm: semver(one('kubeadm')),
    kubelet: semver(one('kubelet')),
    kubectl: semver(one('kubectl')),
    runtime: one('containerd_active') === 'active' ? 'containerd' : 'none',
    swapOn: one('swap') === 'on',
    hostname: one('hostname') ?? host,
    ...(defaultInterface ? { defaultInterface } : {}),
    addresses: (raw.get('address') ?? []).map((a) => a.trim().replace(/\/\d+$/, '')).filter(Boolean),
  };
  for (const t of KUBE_TOOLS) if (facts[t] === undefined) delete facts[t];
  const sysctl: Record<string, string | undefined> = {};
  for (const k of SYSCTLS) sysctl[k] = one(`sysctl:${k}`);
  const file = (k: string) => (raw.has(k) ? normalize(raw.get(k)!.join('\n')) : undefined);
  return {
    facts,
    modulesLoaded: new Set(raw.get('module') ?? []),
    sysctl,
    files: { modules: file('file_modules'), sysctl: file('file_sysctl'), apt: file('file_apt'), yum: file('file_yum') },
    fstabSwap: one('fstab_swap') === 'yes',
    containerdInstalled: one('containerd_installed') === 'yes',
    systemdCgroup: one('systemd_cgroup') === 'yes',
    kubeletEnabled: one('kubelet_enabled') === 'enabled',
    kubeletUnit: one('kubelet_unit') === 'yes',
    ...(one('bundle_dir') === 'yes' ? { bundle: raw.get('bundle') ?? [] } : {}),
  };
}

function osFamily(id: string, idLike: string[]): HostFacts['family'] | undefined {
  if (DEBIAN_IDS.has(id)) return 'debian';
  if (RHEL_IDS.has(id)) return 'rhel';
  // Derivatives (linuxmint, ol, ...) say whom they follow in ID_LIKE.
  if (idLike.some((l) => DEBIAN_IDS.has(l))) return 'debian';
  if (idLike.some((l) => RHEL_IDS.has(l))) return 'rhel';
  return undefined;
}

/** 'Kubernetes v1.31.4' / '1.31.4' → 'v1.31.4'. */
function semver(s: string | undefined): string | undefined {
  const m = s ? /v?(\d+\.\d+\.\d+\S*)/.exec(s) : null;
  return m ? `v${m[1]}` : undefined;
}

/** File content for comparison: comments, blank lines and surrounding space dropped. */
function normalize(content: string): string {
  return content
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .join('\n');
}

// ---- plan ----------------------------------------------------------------------------------------

function plan(o: Observed, t: Target, shell: HostShell): Step[] {
  return [swapStep(o), modulesStep(o), sysctlStep(o), containerdStep(o, t), ...kubeStep(o, t, shell), kubeletServiceStep(o)].filter(
    (s): s is Step => s !== undefined && s.changes.length > 0,
  );
}

function swapStep(o: Observed): Step | undefined {
  if (!o.facts.swapOn && !o.fstabSwap) return undefined;
  const detail = [o.facts.swapOn ? 'swapoff -a' : '', o.fstabSwap ? 'comment out swap in /etc/fstab' : ''].filter(Boolean).join('; ');
  return {
    changes: [{ item: 'swap', detail }],
    commands: [
      ...(o.facts.swapOn ? [{ command: 'swapoff -a' }] : []),
      // kubelet refuses to start with swap on; commenting keeps it off after a reboot.
      ...(o.fstabSwap ? [{ command: "sed -i.capflow.bak -E '/^[[:space:]]*[^#[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+swap([[:space:]]|$)/ s/^/#/' /etc/fstab" }] : []),
    ],
  };
}

function modulesStep(o: Observed): Step {
  const missing = MODULES.filter((m) => !o.modulesLoaded.has(m));
  const content = fileContent('kernel modules Kubernetes networking needs', MODULES);
  const fileDiffers = o.files.modules !== normalize(content);
  return {
    changes: [
      ...missing.map((m) => ({ item: `module ${m}`, detail: `modprobe ${m}` })),
      ...(fileDiffers ? [{ item: `file ${MODULES_FILE}`, detail: `load ${MODULES.join(', ')} at boot` }] : []),
    ],
    commands: [...missing.map((m) => ({ command: `modprobe ${shq(m)}` })), ...(fileDiffers ? [writeFile(MODULES_FILE, content)] : [])],
  };
}

function sysctlStep(o: Observed): Step {
  const wrong = SYSCTLS.filter((k) => o.sysctl[k] !== '1');
  const content = fileContent('sysctls kubeadm requires', SYSCTLS.map((k) => `${k} = 1`));
  const fileDiffers = o.files.sysctl !== normalize(content);
  return {
    changes: [
      ...wrong.map((k) => ({ item: `sysctl ${k}`, detail: `${o.sysctl[k] ?? 'unset'} → 1` })),
      ...(fileDiffers ? [{ item: `file ${SYSCTL_FILE}`, detail: 'keep the sysctls after a reboot' }] : []),
    ],
    commands: [...(fileDiffers ? [writeFile(SYSCTL_FILE, content)] : []), { command: 'sysctl --system' }],
  };
}

function containerdStep(o: Observed, t: Target): Step {
  const reasons: string[] = [];
  const commands: Command[] = [];
  if (!o.containerdInstalled) {
    reasons.push('install');
    commands.push({ command: t.family === 'debian' ? aptInstall(['containerd']) : dnfInstall(['containerd'], '|| $pm install -y containerd.io') });
  }
  if (!o.systemdCgroup) {
    // kubelet uses the systemd cgroup driver (kubeadm's default); containerd must match.
    reasons.push(`write ${CONTAINERD_CONFIG} with SystemdCgroup = true`);
    commands.push({
      command: [
        'mkdir -p /etc/containerd',
        `if [ -f ${CONTAINERD_CONFIG} ]; then cp ${CONTAINERD_CONFIG} ${CONTAINERD_CONFIG}.capflow.bak; fi`,
        `containerd config default | sed -E 's/^([[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*)false/\\1true/' > ${CONTAINERD_CONFIG}`,
        `grep -Eq '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' ${CONTAINERD_CONFIG}`,
      ].join(' && '),
    });
  }
  if (o.facts.runtime !== 'containerd') {
    reasons.push('enable and start');
    commands.push({ command: 'systemctl enable --now containerd' });
  } else if (!o.systemdCgroup) {
    commands.push({ command: 'systemctl restart containerd' });
  }
  return { changes: reasons.length ? [{ item: 'containerd', detail: reasons.join('; ') }] : [], commands };
}

function kubeStep(o: Observed, t: Target, shell: HostShell): Step[] {
  const stale = KUBE_TOOLS.filter((tool) => o.facts[tool] !== t.version);
  if (stale.length === 0) return [];
  const changes = stale.map((tool) => ({ item: `${tool} ${t.version}`, detail: o.facts[tool] ? `replace ${o.facts[tool]}` : 'install' }));
  const verify = () => verifyVersions(shell, t.version, stale);
  if (t.bundlePath !== undefined) return [{ ...bundleInstall(o, t, stale), changes: changes.map(fromBundle(t.bundlePath)), verify }];
  const repo = repository(t);
  return [repoStep(o, t, repo), { changes, commands: packageInstall(t, stale), verify }];
}

function fromBundle(bundlePath: string) {
  return (c: PreparationChange): PreparationChange => ({ ...c, detail: `${c.detail} from ${bundlePath}` });
}

/** The repository URL (with a trailing slash): the given one or pkgs.k8s.io's for the minor. */
function repository(t: Target): string {
  if (t.repository !== undefined) return t.repository.endsWith('/') ? t.repository : `${t.repository}/`;
  const minor = t.version.split('.').slice(0, 2).join('.');
  return `https://pkgs.k8s.io/core:/stable:/${minor}/${t.family === 'debian' ? 'deb' : 'rpm'}/`;
}

function repoStep(o: Observed, t: Target, repo: string): Step {
  if (t.family === 'debian') {
    const content = `deb [signed-by=${APT_KEYRING}] ${repo} /\n`;
    if (o.files.apt === normalize(content)) return { changes: [], commands: [] };
    return {
      changes: [{ item: 'package repository', detail: repo }],
      commands: [
        { command: aptInstall(['ca-certificates', 'curl', 'gpg']) },
        { command: `mkdir -p -m 0755 /etc/apt/keyrings && curl -fsSL ${shq(`${repo}Release.key`)} | gpg --dearmor --yes -o ${APT_KEYRING}` },
        writeFile(APT_LIST, content),
      ],
    };
  }
  const content = [
    '[kubernetes]',
    'name=Kubernetes',
    `baseurl=${repo}`,
    'enabled=1',
    'gpgcheck=1',
    `gpgkey=${repo}repodata/repomd.xml.key`,
    // Excluded from ordinary updates: only an explicit --disableexcludes install moves them.
    'exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni',
    '',
  ].join('\n');
  if (o.files.yum === normalize(content)) return { changes: [], commands: [] };
  return { changes: [{ item: 'package repository', detail: repo }], commands: [writeFile(YUM_REPO, content)] };
}

function packageInstall(t: Target, tools: KubeTool[]): Command[] {
  const bare = t.version.slice(1);
  if (t.family === 'debian') {
    const pkgs = tools.map((tool) => `${tool}=${bare}-*`);
    return [
      { command: aptInstall(pkgs, '--allow-downgrades --allow-change-held-packages') },
      // Held so that an unattended upgrade does not move the cluster's version.
      { command: `apt-mark hold ${KUBE_TOOLS.join(' ')}` },
    ];
  }
  return [{ command: dnfInstall(tools.map((tool) => `${tool}-${bare}`), '', '--disableexcludes=kubernetes') }];
}

function bundleInstall(o: Observed, t: Target, tools: KubeTool[]): Omit<Step, 'changes'> {
  const dir = t.bundlePath!;
  if (!o.bundle) throw new InputError('HOST_BUNDLE_MISSING', `host ${t.host}: packages.bundlePath ${dir} is not a directory on the host`);
  const ext = t.family === 'debian' ? '.deb' : '.rpm';
  const pkgs = o.bundle.filter((n) => n.endsWith(ext));
  if (pkgs.length > 0) {
    const lacking = tools.filter((tool) => !pkgs.some((n) => n.startsWith(`${tool}_`) || n.startsWith(`${tool}-`)));
    if (lacking.length) throw bundleLacks(t, lacking, `${ext} packages`);
    const files = pkgs.map((n) => shq(`${dir.replace(/\/$/, '')}/${n}`)).join(' ');
    return {
      commands: [
        t.family === 'debian'
          ? { command: `dpkg -i ${files} && apt-mark hold ${KUBE_TOOLS.join(' ')}` }
          : { command: `rpm -Uvh --replacepkgs --oldpackage ${files}` },
      ],
    };
  }
  const lacking = tools.filter((tool) => !o.bundle!.includes(tool));
  if (lacking.length) throw bundleLacks(t, lacking, 'binaries');
  const commands: Command[] = tools.map((tool) => ({ command: `install -m 0755 ${shq(`${dir.replace(/\/$/, '')}/${tool}`)} /usr/bin/${tool}` }));
  // A bare kubelet binary comes without the systemd unit kubeadm drives it through.
  if (tools.includes('kubelet') && !o.kubeletUnit) {
    commands.push(writeFile(KUBELET_UNIT, KUBELET_UNIT_TEXT), writeFile(KUBELET_DROPIN, KUBEADM_DROPIN_TEXT), { command: 'systemctl daemon-reload' });
  }
  return { commands };
}

function bundleLacks(t: Target, lacking: string[], what: string): InputError {
  return new InputError('HOST_BUNDLE_INCOMPLETE', `host ${t.host}: bundle ${t.bundlePath} has no ${lacking.join(', ')} (${what})`, {
    hint: 'a bundle holds kubelet, kubeadm and kubectl as .deb/.rpm packages or as binaries named kubelet, kubeadm, kubectl',
  });
}

function kubeletServiceStep(o: Observed): Step | undefined {
  if (o.kubeletEnabled) return undefined;
  return { changes: [{ item: 'kubelet service', detail: 'systemctl enable kubelet' }], commands: [{ command: 'systemctl enable kubelet' }] };
}

/** After an install the versions must be the wanted ones: a bundle or mirror may hold others. */
async function verifyVersions(shell: HostShell, version: string, tools: KubeTool[]): Promise<void> {
  const facts = (await observe(shell, undefined)).facts;
  const off = tools.filter((tool) => facts[tool] !== version);
  if (off.length) {
    throw new InputError('HOST_KUBE_VERSION_MISMATCH', `host ${shell.host}: after installing, ${off.map((tool) => `${tool} is ${facts[tool] ?? 'missing'}`).join(', ')}; want ${version}`, {
      hint: 'check that the repository or bundle holds exactly this version',
    });
  }
}

// ---- command helpers -----------------------------------------------------------------------------

/** Writes a file from stdin (content never goes through the shell). */
function writeFile(path: string, content: string): Command {
  const dir = path.slice(0, path.lastIndexOf('/'));
  return { command: `mkdir -p ${shq(dir)} && cat > ${shq(path)}`, stdin: content };
}

function fileContent(what: string, lines: readonly string[]): string {
  return `# Written by capflow: ${what}.\n${lines.join('\n')}\n`;
}

function aptInstall(pkgs: string[], flags = ''): string {
  return `export DEBIAN_FRONTEND=noninteractive && apt-get update && apt-get install -y ${flags ? `${flags} ` : ''}${pkgs.map(shq).join(' ')}`;
}

/** dnf where present, yum otherwise (Amazon Linux 2). */
function dnfInstall(pkgs: string[], orElse = '', flags = ''): string {
  const args = `${flags ? `${flags} ` : ''}${pkgs.map(shq).join(' ')}`;
  return `if command -v dnf >/dev/null 2>&1; then pm=dnf; else pm=yum; fi; $pm install -y ${args} ${orElse}`.trimEnd();
}

// The kubelet unit and kubeadm drop-in the kubernetes/release packages install.
const KUBELET_UNIT_TEXT = `[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
`;

const KUBEADM_DROPIN_TEXT = `[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`;
