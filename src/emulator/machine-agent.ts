/**
 * The machine agent: the first process of an emulated EC2 instance, started by the supervisor inside
 * the machine's network namespace and a fresh mount and UTS namespace. It plays what an instance's
 * image and init system do at boot:
 *
 *   1. the disk: a copy-on-write layer over each of the host's /etc, /var, /root, /home, /opt,
 *      /usr/local and /tmp, and an empty /run, so what the machine writes (kubeadm's /etc/kubernetes,
 *      /var/lib/etcd, /var/lib/kubelet, /etc/cni/net.d) is its own and the host stays untouched;
 *   2. the image: hostname, /etc/hosts, IP forwarding on (as Kubernetes images ship), the real kube
 *      binaries of the image's Kubernetes version in /usr/local/bin, the kubelet stand-in of that
 *      version as `kubelet`, and recording stand-ins for the
 *      commands that would change the host or need a container runtime (src/emulator/stand-in-commands);
 *   3. systemd's part: the container runtime stand-in (a CRI socket) and the kubelet service started
 *      at boot, the kubelet restarted when it exits, held down by `systemctl stop kubelet` until a
 *      start or restart (kubeadm reset stops it; kubeadm init starts it);
 *   4. cloud-init's part: the user data run as cloud-init would (src/emulator/cloud-init).
 *
 * Everything is logged to the machine's boot log (`boot.log` in its directory on the host).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { REDACTED, redactString } from '../core/redact.js';
import { boot } from './cloud-init.js';
import { startCriStandIn } from './cri-stand-in.js';
import { decodeUserData } from './user-data.js';
import { KUBELET_SERVICE, MACHINE_LOGS, MACHINE_PATH, PRIVATE_LAYERS, layerDirName, type MachineConfig } from './machine-config.js';
import { writeStandInCommands } from './stand-in-commands.js';

/**
 * The real binaries each machine's image carries in /usr/local/bin, from the directory of its image's
 * Kubernetes version (MachineConfig.kubeBinDir). etcdctl is there as in the etcd image, for `etcdctl
 * member list/remove` run on the machine.
 */
export const KUBE_BINARIES = ['kubeadm', 'kubectl', 'etcd', 'etcdctl', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'] as const;

export async function runMachineAgent(configPath: string): Promise<void> {
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as MachineConfig;
  const bootLog = join(config.machineDir, 'boot.log');
  // the boot log is read by tests and humans: kubeadm prints its join token and certificate key,
  // the key once on a line of its own after "Using certificate key:"
  let keyFollows = false;
  const log = (line: string): void => {
    const text = keyFollows && /^[\s|]*[0-9a-fA-F]{64}\s*$/.test(line) ? line.replace(/[0-9a-fA-F]{64}/, REDACTED) : redactString(line);
    keyFollows = /certificate key:\s*$/i.test(line);
    appendFileSync(bootLog, `${new Date().toISOString()} ${text}\n`);
  };
  log(`machine ${config.instanceId} (${config.hostname}, ${config.privateIp}) starting`);

  mountPrivateLayers(config, log);
  installImage(config);
  // from now on the host may enter this process's namespaces (Machine.exec): the layers are in place
  process.send?.({ type: 'ready', pid: process.pid });
  process.on('message', (message: { type?: string; hosts?: Record<string, string> }) => {
    if (message?.type === 'hosts' && message.hosts) {
      writeHosts(config, message.hosts);
      log(`/etc/hosts: ${Object.keys(message.hosts).length} load balancer name(s)`);
    }
  });

  // containerd's part: the CRI socket kubeadm connects to (src/emulator/cri-stand-in.ts)
  const runtime = await startCriStandIn({ version: config.kubeletVersion, log });
  const kubelet = new KubeletService(config, log);
  kubelet.start();
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: shutting down`);
    void kubelet
      .stop()
      .then(() => runtime.stop())
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  const userData = existsSync(join(config.machineDir, 'user-data')) ? readFileSync(join(config.machineDir, 'user-data')) : Buffer.alloc(0);
  const meta = {
    instanceId: config.instanceId,
    localHostname: config.hostname,
    localIpv4: config.privateIp,
    region: config.region,
    availabilityZone: config.availabilityZone,
  };
  log(`cloud-init: ${userData.length} bytes of user data`);
  const report = await boot(decodeUserData(userData, meta), {
    root: '/',
    meta,
    log: (line) => log(`cloud-init: ${line}`),
    run: (argv, opts) => runInMachine(argv, opts?.env ?? {}, (line) => log(`  | ${line}`)),
    ...(config.cloudInitBinary ? { cloudInitBinary: config.cloudInitBinary } : {}),
  });
  log(report.ok ? 'cloud-init: boot finished' : `cloud-init: boot finished with errors: ${report.errors.join('; ')}`);
  writeFileSync(join(config.machineDir, 'boot-result.json'), JSON.stringify(report, null, 2));
}

function mount(args: string[]): void {
  const res = spawnSync('mount', args, { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`mount ${args.join(' ')}: ${res.stderr || res.error?.message}`);
}

function mountPrivateLayers(config: MachineConfig, log: (line: string) => void): void {
  for (const path of PRIVATE_LAYERS) {
    const layer = join(config.machineDir, 'layers', layerDirName(path));
    mkdirSync(join(layer, 'upper'), { recursive: true });
    mkdirSync(join(layer, 'work'), { recursive: true });
    mount(['-t', 'overlay', 'overlay', '-o', `lowerdir=${path},upperdir=${layer}/upper,workdir=${layer}/work`, path]);
  }
  mount(['-t', 'tmpfs', '-o', 'mode=0755', 'tmpfs', '/run']);
  log(`disk: private layers over ${PRIVATE_LAYERS.join(', ')}; /run empty`);
}

function installImage(config: MachineConfig): void {
  const res = spawnSync('hostname', [config.hostname], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`hostname ${config.hostname}: ${res.stderr || res.error?.message}`);
  writeFileSync('/etc/hostname', `${config.hostname}\n`);
  writeHosts(config, config.hosts);
  // the netns's own forwarding switch (kubeadm's preflight wants it on; Kubernetes images ship it on)
  writeFileSync('/proc/sys/net/ipv4/ip_forward', '1\n');
  // the machine's own view of these starts empty, as on a fresh instance
  for (const dir of ['/etc/kubernetes', '/var/lib/etcd', '/var/lib/kubelet', '/etc/cni/net.d']) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }
  mkdirSync('/usr/local/bin', { recursive: true });
  for (const name of KUBE_BINARIES) {
    rmSync(join('/usr/local/bin', name), { force: true });
    symlinkSync(join(config.kubeBinDir, name), join('/usr/local/bin', name));
  }
  // the version rides in the shim, so `kubelet --version` answers it whoever runs it (kubeadm's preflight)
  writeFileSync('/usr/local/bin/kubelet', `#!/bin/sh\nCAPFLOW_KUBELET_VERSION='${config.kubeletVersion}' exec '${config.nodeBinary}' '${config.kubeletEntry}' "$@"\n`);
  chmodSync('/usr/local/bin/kubelet', 0o755);
  mkdirSync(dirname(MACHINE_LOGS.standInCalls), { recursive: true });
  writeStandInCommands('/usr/local/sbin', MACHINE_LOGS.standInCalls);
  if (config.aws) installAwsCli(config.aws);
}

/**
 * The AWS CLI, configured as an instance profile and the regional endpoint would make it: here the
 * emulator's port published at the VPC router, and its test credentials, in the machine's own ~/.aws.
 */
function installAwsCli(aws: NonNullable<MachineConfig['aws']>): void {
  rmSync('/usr/local/bin/aws', { force: true });
  symlinkSync(aws.cli, '/usr/local/bin/aws');
  rmSync('/root/.aws', { recursive: true, force: true });
  mkdirSync('/root/.aws', { recursive: true, mode: 0o700 });
  writeFileSync('/root/.aws/config', `[default]\nregion = ${aws.region}\nendpoint_url = ${aws.endpoint}\n`);
  writeFileSync('/root/.aws/credentials', `[default]\naws_access_key_id = ${aws.accessKeyId}\naws_secret_access_key = ${aws.secretAccessKey}\n`, { mode: 0o600 });
}

function writeHosts(config: MachineConfig, hosts: Record<string, string>): void {
  const lines = ['127.0.0.1 localhost', `${config.privateIp} ${config.hostname} ${config.hostname.split('.')[0]}`];
  for (const [name, address] of Object.entries(hosts).sort()) lines.push(`${address} ${name}`);
  writeFileSync('/etc/hosts', `${lines.join('\n')}\n`);
}

/** One command of the user data, with the machine's PATH; its output goes to the boot log. */
function runInMachine(argv: string[] | string, env: Record<string, string>, out: (line: string) => void): Promise<number> {
  const [cmd, args] = typeof argv === 'string' ? ['/bin/sh', ['-c', argv]] : [argv[0]!, argv.slice(1)];
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: '/root', env: { ...machineEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let pending = '';
    const onData = (d: Buffer): void => {
      pending += d.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) out(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', (err) => {
      out(`${cmd}: ${err.message}`);
      resolve(127);
    });
    child.once('close', (code, signal) => {
      if (pending) out(pending);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

function machineEnv(): NodeJS.ProcessEnv {
  return { PATH: MACHINE_PATH, HOME: '/root', USER: 'root', LANG: 'C.UTF-8', TERM: 'dumb' };
}

/** systemd's kubelet.service: started at boot, restarted `kubeletRestartSeconds` after it exits. */
class KubeletService {
  private child: ChildProcess | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly config: MachineConfig,
    private readonly log: (line: string) => void,
  ) {}

  start(): void {
    if (this.stopped) return;
    // `systemctl stop kubelet` holds the service down until a start or restart.
    if (this.request() === 'stop') {
      this.timer = setTimeout(() => this.start(), 500);
      return;
    }
    rmSync(KUBELET_SERVICE.requestFile, { force: true });
    mkdirSync(dirname(MACHINE_LOGS.kubelet), { recursive: true });
    // the kubelet's lines go to its log and, like a journal, into the boot log
    let pending = '';
    const out = (d: Buffer): void => {
      appendFileSync(MACHINE_LOGS.kubelet, d);
      const lines = (pending + d.toString()).split('\n');
      pending = lines.pop()!;
      for (const line of lines) if (line.trim()) this.log(`kubelet: ${line}`);
    };
    const env = { ...machineEnv(), ...(this.config.kubeletHeartbeatSeconds ? { CAPFLOW_KUBELET_HEARTBEAT_SECONDS: String(this.config.kubeletHeartbeatSeconds) } : {}) };
    const child = spawn('/usr/local/bin/kubelet', [], { cwd: '/', env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    mkdirSync(dirname(KUBELET_SERVICE.pidFile), { recursive: true });
    writeFileSync(KUBELET_SERVICE.pidFile, String(child.pid ?? ''));
    child.stdout.on('data', out);
    child.stderr.on('data', out);
    this.log(`systemd: kubelet.service started (pid ${child.pid})`);
    child.once('exit', (code, signal) => {
      this.child = undefined;
      if (this.stopped) return;
      const request = this.request();
      if (request) {
        this.log(`systemd: kubelet.service ${request === 'stop' ? 'stopped' : 'restarting'} (systemctl)`);
        this.start();
        return;
      }
      this.log(`systemd: kubelet.service exited (${signal ?? `code ${code}`}); restarting in ${this.config.kubeletRestartSeconds} s`);
      this.timer = setTimeout(() => this.start(), this.config.kubeletRestartSeconds * 1000);
    });
  }

  /** The last `systemctl start|stop|restart kubelet` not yet acted on. */
  private request(): 'stop' | 'start' | undefined {
    try {
      const r = readFileSync(KUBELET_SERVICE.requestFile, 'utf8').trim();
      return r === 'stop' || r === 'start' ? r : undefined;
    } catch {
      return undefined;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  }
}
