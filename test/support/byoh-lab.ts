/**
 * The BYOH lab: bring-your-own hosts for tests, made of the test bed's booting machines
 * (src/emulator/machine.ts) with a real OpenSSH sshd and the real kubeadm inside.
 *
 *   const lab = await startByohLab({ hosts: [{ name: 'cp-0' }, { name: 'worker-0', labels: { role: 'worker' } }] });
 *   await lab.exec(['ssh', '-i', keyFile, `root@${lab.hosts[0].address}`, 'kubeadm', 'version']);
 *   await lab.stop();
 *
 * One network namespace (`lab.netns`) holds a bridge with the CIDR's first address; every host is a
 * machine plugged into it (its own network, mount and UTS namespaces, copy-on-write layers over /etc,
 * /var, /root, ..., the kubelet and container runtime stand-ins, the recording stand-in commands
 * first on its PATH, the test bed's kube binaries in /usr/local/bin). Its user data, run by the
 * emulator's cloud-init at boot, writes sshd's configuration, its ed25519 host key (generated here:
 * `hostKeyPublic` to pin) and root's authorized_keys (`clientPublicKey`), then starts
 * `/usr/sbin/sshd` on port 22 of the host's address: root logs in by key only, no PAM, and sessions
 * get PATH=MACHINE_PATH (the stand-ins first), so `kubeadm`, `systemctl`, `modprobe`, `sysctl`,
 * `swapoff` resolve as in the machine's boot. root's ~/.bashrc and ~/.profile are the machine's own
 * (a fresh host's), not the test host's, which could put other tools first on the PATH.
 *
 * Processes started with `lab.exec`/`lab.spawn` run in the lab's namespace: they reach every host's
 * address and the VIP, and nothing else (not the test host's loopback services).
 *
 * Needs root (namespaces, overlay mounts), iproute2, util-linux, openssh-server and openssh-client,
 * cloud-init, the test bed's kube binaries (bash testbed/install.sh) and a built dist/ (npm run build);
 * a missing one fails startByohLab, naming it. Everything is removed by stop() and, should the test
 * process exit first, by an exit hook (and leftovers of crashed runs by the next lab or supervisor).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { parseCidr } from '../../src/core/cidr.js';
import { Machine } from '../../src/emulator/machine.js';
import { MACHINE_LOGS, MACHINE_PATH, layerDirName, type MachineConfig } from '../../src/emulator/machine-config.js';
import { checkNamespaceSupport, deleteNetns, ensureVpcNetwork, intToIp, ip, type VpcNetwork } from '../../src/emulator/network.js';
import { readStandInCalls, type StandInCall } from '../../src/emulator/stand-in-commands.js';
import { DEFAULT_STATE_DIR, NETNS_PREFIX, cleanLeftovers, emulatorEntry } from '../../src/emulator/supervisor.js';
import { generateEd25519 } from './ssh-host.js';
import { requirePreviousKubeBinDir, requireTool, testbedBinDir, testbedVersions } from './tools.js';

export interface ByohLabHostOptions {
  /** The host's name: its hostname (and so kubeadm's node name), a DNS label (a-z, 0-9, -). */
  name: string;
  labels?: Record<string, string>;
  /** The Kubernetes version of its binaries: the test bed's (default) or its previous release's. */
  kubernetesVersion?: string;
}

export interface ByohLabOptions {
  hosts: ByohLabHostOptions[];
  /** The lab's network, at most a /16 and at least a /28. Default 10.77.0.0/24. */
  cidr?: string;
  /** Seconds the machines' systemd waits before restarting an exited kubelet. Default 10 (kubeadm's drop-in). */
  kubeletRestartSeconds?: number;
  /** Faster kubelet heartbeats (node status, lease); default the kubelet's 10 s. */
  kubeletHeartbeatSeconds?: number;
  /** How long to wait for every host's boot (sshd listening). Default 60 000. */
  bootTimeoutMs?: number;
}

export interface LabRunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface LabHost {
  name: string;
  /** Its IP in the lab. */
  address: string;
  port: 22;
  user: 'root';
  /** The OpenSSH line of its ed25519 host key ("ssh-ed25519 AAAA... root@<name>"). */
  hostKeyPublic: string;
  labels: Record<string, string>;
  /** The Kubernetes version of its kubeadm, control plane binaries and kubelet stand-in. */
  kubernetesVersion: string;
  machine: Machine;
  /** The recording stand-ins' calls on this host (systemctl, modprobe, sysctl, ...), oldest first. */
  standInCalls(): StandInCall[];
  /** Runs a shell command inside the machine as root (PATH=MACHINE_PATH, HOME=/root), for test assertions. */
  run(shell: string, opts?: { timeoutMs?: number; input?: string }): Promise<LabRunResult>;
  /** Takes the host's link down (the bridge side of its cable: TCP stalls, nothing is reset) / up again. */
  linkDown(): Promise<void>;
  linkUp(): Promise<void>;
  /** The machine's boot log (agent, cloud-init, kubelet) and sshd's log (-E /var/log/sshd.log). */
  bootLog(): string;
  sshdLog(): string;
}

export interface ByohLab {
  /** The lab network's namespace: processes run there reach every host address and the VIP. */
  netns: string;
  cidr: string;
  /** The bridge's own address in the lab (the hosts' default gateway): what lab processes connect from. */
  gateway: string;
  hosts: LabHost[];
  /** A free address in the lab CIDR for a control-plane VIP (kube-vip): the CIDR's last host address. */
  vip: string;
  /** OpenSSH ed25519 private key, authorized as root on every host. */
  clientPrivateKey: string;
  clientPublicKey: string;
  /** A known_hosts file pinning every host's key by its address (for `ssh -o UserKnownHostsFile=`). */
  knownHostsFile: string;
  /** The private key as a file (mode 0600), for `ssh -i`. */
  clientKeyFile: string;
  host(name: string): LabHost;
  /** Runs a process inside the lab namespace with env (default: this process's) and cwd; resolves with its code and output. */
  exec(argv: string[], opts?: LabSpawnOptions & { timeoutMs?: number; input?: string }): Promise<LabRunResult>;
  /** The same, returning the ChildProcess (stdio piped) to kill it mid-run. */
  spawn(argv: string[], opts?: LabSpawnOptions): ChildProcess;
  stop(): Promise<void>;
}

export interface LabSpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

const DEFAULT_CIDR = '10.77.0.0/24';
/** Host addresses start here within the CIDR (.1 is the bridge). */
const FIRST_HOST_OFFSET = 11;

interface LiveLab {
  dir: string;
  keysDir: string;
  netns: string;
  machines: Machine[];
}
const live = new Set<LiveLab>();
let exitHookInstalled = false;

export async function startByohLab(opts: ByohLabOptions): Promise<ByohLab> {
  const cidr = opts.cidr ?? DEFAULT_CIDR;
  const block = parseCidr(cidr);
  if (!block || block.prefix < 16 || block.prefix > 28) throw new Error(`BYOH lab: ${cidr} is not an IPv4 CIDR from /16 to /28`);
  if (opts.hosts.length === 0) throw new Error('BYOH lab: no hosts');
  const names = new Set<string>();
  for (const h of opts.hosts) {
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(h.name)) throw new Error(`BYOH lab: host name ${JSON.stringify(h.name)} is not a DNS label`);
    if (names.has(h.name)) throw new Error(`BYOH lab: host ${h.name} twice`);
    names.add(h.name);
  }
  const size = 2 ** (32 - block.prefix);
  if (FIRST_HOST_OFFSET + opts.hosts.length >= size - 2) throw new Error(`BYOH lab: ${cidr} has no room for ${opts.hosts.length} hosts and a VIP`);

  // every peer first, so that a missing one fails before anything is made
  await checkNamespaceSupport();
  const sshd = requireTool('sshd');
  requireTool('ssh-keygen');
  const cloudInitBinary = requireTool('cloud-init');
  const defaultVersion = testbedVersions().KUBERNETES_VERSION!;
  const binDirOf = (version: string | undefined): { version: string; dir: string } => {
    if (!version || version === defaultVersion) {
      requireTool('kubeadm');
      return { version: defaultVersion, dir: testbedBinDir() };
    }
    const previous = requirePreviousKubeBinDir();
    if (previous.version !== version) throw new Error(`BYOH lab: the test bed has Kubernetes ${defaultVersion} and ${previous.version}, not ${version}`);
    return previous;
  };
  const agentEntry = emulatorEntry('capflow-machine-agent');
  const kubeletEntry = emulatorEntry('capflow-kubelet');

  await cleanLeftovers(DEFAULT_STATE_DIR);
  const id = randomBytes(3).toString('hex');
  const dir = join(DEFAULT_STATE_DIR, id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'owner.pid'), String(process.pid)); // before any namespace: see cleanLeftovers
  const keysDir = mkdtempSync(join(tmpdir(), 'capflow-byoh-lab-'));
  const state: LiveLab = { dir, keysDir, netns: `${NETNS_PREFIX}${id}-lab`, machines: [] };
  live.add(state);
  installExitHook();

  try {
    const net = await ensureVpcNetwork(state.netns, `byoh-lab-${id}`, cidr);
    const [clientPrivateKey, clientPublicKey] = await generateEd25519(join(keysDir, 'client_ed25519'), 'capflow-byoh-lab-client');
    const clientKeyFile = join(keysDir, 'client_ed25519');
    const addresses = opts.hosts.map((_, i) => intToIp(block.base + FIRST_HOST_OFFSET + i));
    const etcHosts = Object.fromEntries(opts.hosts.map((h, i) => [h.name, addresses[i]!]));

    const hosts: LabHost[] = [];
    for (const [i, h] of opts.hosts.entries()) {
      const address = addresses[i]!;
      const [hostKeyPrivate, hostKeyPublic] = await generateEd25519(join(keysDir, `host_${h.name}`), `root@${h.name}`);
      const image = binDirOf(h.kubernetesVersion);
      const config: MachineConfig = {
        instanceId: `byoh-${h.name}`,
        hostname: h.name,
        privateIp: address,
        region: 'byoh-lab',
        availabilityZone: 'byoh-lab-a',
        machineDir: join(dir, 'machines', h.name),
        kubeBinDir: image.dir,
        cloudInitBinary,
        nodeBinary: process.execPath,
        kubeletEntry,
        kubeletVersion: image.version,
        hosts: Object.fromEntries(Object.entries(etcHosts).filter(([name]) => name !== h.name)),
        kubeletRestartSeconds: opts.kubeletRestartSeconds ?? 10,
        ...(opts.kubeletHeartbeatSeconds ? { kubeletHeartbeatSeconds: opts.kubeletHeartbeatSeconds } : {}),
      };
      const vethName = `b${id}${i}`;
      const machine = new Machine({
        config,
        userData: Buffer.from(hostUserData({ sshd, address, hostKeyPrivate, hostKeyPublic, clientPublicKey })),
        vpc: net,
        netns: `${NETNS_PREFIX}${id}-host-${h.name}`,
        vethName,
        agentEntry,
        keepFiles: process.env.CAPFLOW_KEEP_MACHINES === '1',
      });
      state.machines.push(machine);
      hosts.push(labHost(h, address, hostKeyPublic, image.version, machine, net, vethName));
    }
    await Promise.all(state.machines.map((m) => m.start()));
    const deadline = Date.now() + (opts.bootTimeoutMs ?? 60_000);
    await Promise.all(hosts.map((h) => waitForSshd(h, state.netns, deadline)));

    const knownHostsFile = join(keysDir, 'known_hosts');
    writeFileSync(knownHostsFile, hosts.map((h) => `${h.address} ${h.hostKeyPublic}\n`).join(''));

    const spawnIn = (argv: string[], o: LabSpawnOptions = {}): ChildProcess =>
      spawn('ip', ['netns', 'exec', state.netns, ...argv], { cwd: o.cwd, env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stopped: Promise<void> | undefined;
    return {
      netns: state.netns,
      cidr,
      gateway: net.routerAddress,
      hosts,
      vip: intToIp(block.base + size - 2),
      clientPrivateKey,
      clientPublicKey,
      knownHostsFile,
      clientKeyFile,
      host(name) {
        const found = hosts.find((h) => h.name === name);
        if (!found) throw new Error(`BYOH lab: no host ${name} (hosts: ${hosts.map((h) => h.name).join(', ')})`);
        return found;
      },
      spawn: spawnIn,
      exec: (argv, o = {}) => collect(spawnIn(argv, o), o.timeoutMs ?? 60_000, o.input),
      stop: () => (stopped ??= stopLab(state)),
    };
  } catch (err) {
    const logs = state.machines.map((m) => `--- ${m.options.config.hostname} boot log ---\n${m.bootLog().split('\n').slice(-40).join('\n')}`).join('\n');
    await stopLab(state);
    if (logs) (err as Error).message += `\n${logs}`;
    throw err;
  }
}

function labHost(h: ByohLabHostOptions, address: string, hostKeyPublic: string, kubernetesVersion: string, machine: Machine, net: VpcNetwork, vethName: string): LabHost {
  const inVar = (path: string): string => join(machine.dir, 'layers', layerDirName('/var'), 'upper', path.replace(/^\/var\//, ''));
  return {
    name: h.name,
    address,
    port: 22,
    user: 'root',
    hostKeyPublic,
    labels: { ...h.labels },
    kubernetesVersion,
    machine,
    standInCalls: () => readStandInCalls(inVar(MACHINE_LOGS.standInCalls)),
    run: (shell, o = {}) => machine.exec(['sh', '-c', shell], o),
    linkDown: async () => void (await ip(['-n', net.netns, 'link', 'set', vethName, 'down'])),
    linkUp: async () => void (await ip(['-n', net.netns, 'link', 'set', vethName, 'up'])),
    bootLog: () => machine.bootLog(),
    sshdLog: () => (existsSync(inVar('/var/log/sshd.log')) ? readFileSync(inVar('/var/log/sshd.log'), 'utf8') : ''),
  };
}

/**
 * The host's cloud-config: sshd's configuration, host key and root's authorized key, root's shell
 * files, then sshd started (it daemonizes; its listening socket is open when the command returns).
 */
function hostUserData(o: { sshd: string; address: string; hostKeyPrivate: string; hostKeyPublic: string; clientPublicKey: string }): string {
  const sshdConfig = [
    '# the BYOH lab host\'s sshd (test/support/byoh-lab.ts)',
    'Port 22',
    `ListenAddress ${o.address}`,
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'AuthorizedKeysFile .ssh/authorized_keys',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'UseDNS no',
    'PrintMotd no',
    'PrintLastLog no',
    'X11Forwarding no',
    // the machine's PATH, the stand-ins first (OpenSSH >= 8.7 applies SetEnv after its defaults)
    `SetEnv PATH=${MACHINE_PATH}`,
    'Subsystem sftp internal-sftp',
    'LogLevel VERBOSE',
    '',
  ].join('\n');
  const cloudConfig = {
    write_files: [
      { path: '/etc/ssh/sshd_config', permissions: '0644', content: sshdConfig },
      { path: '/etc/ssh/ssh_host_ed25519_key', permissions: '0600', content: o.hostKeyPrivate },
      { path: '/etc/ssh/ssh_host_ed25519_key.pub', permissions: '0644', content: `${o.hostKeyPublic}\n` },
      { path: '/root/.ssh/authorized_keys', permissions: '0600', content: `${o.clientPublicKey}\n` },
      // a fresh host's root, not the test host's (whose ~/.bashrc may put other tools first on the PATH)
      { path: '/root/.bashrc', permissions: '0644', content: '# ~/.bashrc: executed by bash(1) for non-login shells (a BYOH lab host\'s own).\n' },
      { path: '/root/.profile', permissions: '0644', content: '# ~/.profile: executed by Bourne-compatible login shells.\nif [ "$BASH" ]; then\n  if [ -f ~/.bashrc ]; then\n    . ~/.bashrc\n  fi\nfi\n' },
      // The image's container runtime is the emulator's CRI stand-in (systemctl says containerd is
      // active); its CLI and config are there as a host with containerd set up for kubeadm has them.
      { path: '/etc/containerd/config.toml', permissions: '0644', content: CONTAINERD_CONFIG },
      { path: '/usr/local/bin/containerd', permissions: '0755', content: CONTAINERD_CLI },
    ],
    runcmd: [
      ['chmod', '0700', '/root', '/root/.ssh'],
      ['mkdir', '-p', '-m', '0755', '/run/sshd'],
      [o.sshd, '-f', '/etc/ssh/sshd_config', '-E', '/var/log/sshd.log'],
    ],
  };
  return `#cloud-config\n${toYaml(cloudConfig)}`;
}

const CONTAINERD_CONFIG = [
  'version = 2',
  '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
  '  SystemdCgroup = true',
  '',
].join('\n');

/** Stand-in for containerd's CLI: its version, and `config default` (the runtime itself is the CRI stand-in). */
const CONTAINERD_CLI = [
  '#!/bin/sh',
  '# capflow BYOH lab: stand-in for the containerd CLI (the runtime is the emulator\'s CRI stand-in)',
  'case "$1" in',
  '  --version|-v) echo "containerd github.com/containerd/containerd v1.7.22 7f7fdf5fed64eb6a7caf99b3e12efcf9d60e311c" ;;',
  `  config) sed 's/= true/= false/' <<'CONFIG'\n${CONTAINERD_CONFIG}CONFIG\n  ;;`,
  '  *) echo "containerd stand-in: only --version and config default" >&2; exit 1 ;;',
  'esac',
  '',
].join('\n');

/** The host's boot finished with no error and its sshd accepts connections in the lab's namespace. */
async function waitForSshd(host: LabHost, netns: string, deadline: number): Promise<void> {
  const result = join(host.machine.dir, 'boot-result.json');
  for (;;) {
    if (!host.machine.running) throw new Error(`BYOH lab: host ${host.name}'s machine stopped during its boot`);
    if (existsSync(result)) {
      const report = JSON.parse(readFileSync(result, 'utf8')) as { ok: boolean; errors: string[] };
      if (!report.ok) throw new Error(`BYOH lab: host ${host.name}'s boot failed: ${report.errors.join('; ')}`);
      const probe = spawnSync('ip', ['netns', 'exec', netns, process.execPath, '-e', CONNECT_PROBE, host.address, '22'], { encoding: 'utf8', timeout: 5000 });
      if (probe.status === 0) return;
    }
    if (Date.now() > deadline) throw new Error(`BYOH lab: host ${host.name} did not boot (sshd on ${host.address}:22) in time`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const CONNECT_PROBE = "const s = require('net').connect(Number(process.argv[2]), process.argv[1]); s.on('connect', () => process.exit(0)); s.on('error', () => process.exit(1)); setTimeout(() => process.exit(1), 2000);";

function collect(child: ChildProcess, timeoutMs: number, input?: string): Promise<LabRunResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: 255, stdout, stderr: `${stderr}${err.message}\n` });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 255), stdout, stderr });
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

async function stopLab(state: LiveLab): Promise<void> {
  await Promise.all(state.machines.map((m) => m.stop().catch(() => undefined)));
  killNetnsSync(state.netns);
  await deleteNetns(state.netns).catch(() => undefined);
  if (process.env.CAPFLOW_KEEP_MACHINES !== '1') rmSync(state.dir, { recursive: true, force: true });
  rmSync(state.keysDir, { recursive: true, force: true });
  live.delete(state);
}

/** Whatever still runs in a namespace (a lab process left behind) ends now. */
function killNetnsSync(netns: string): void {
  const pids = spawnSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' }).stdout ?? '';
  for (const pid of pids.split('\n').map(Number).filter((n) => Number.isInteger(n) && n > 0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** On exit (a test process ending without stop()), synchronously: every process, namespace and directory of live labs. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const state of live) {
      for (const m of state.machines) {
        if (m.pid !== undefined) {
          try {
            process.kill(-m.pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        killNetnsSync(m.options.netns);
        spawnSync('ip', ['netns', 'delete', m.options.netns]);
      }
      killNetnsSync(state.netns);
      spawnSync('ip', ['netns', 'delete', state.netns]);
      // the machines' overlays go with their mount namespaces, whose processes are gone
      rmSync(state.dir, { recursive: true, force: true });
      rmSync(state.keysDir, { recursive: true, force: true });
    }
  });
}
