/**
 * The machine supervisor: follows the AWS emulator and makes its instances boot.
 *
 * Every pass (every `pollMs`) reads the emulator's instances and load balancers and converges:
 *   - a running instance with a private IP in a VPC becomes a Machine (src/emulator/machine.ts) that
 *     runs its user data (DescribeInstanceAttribute userData; instances an Auto Scaling group
 *     launched carry their launch template's user data there too), with the kube binaries of the
 *     Kubernetes version its image's name carries (DescribeImages; CAPA's AMIs are named
 *     capa-ami-<base OS>-v1.34.4-<timestamp>), as CAPA's images carry that release;
 *   - a terminated, stopped or vanished instance's machine is stopped and removed;
 *   - each VPC with machines or load balancers is a namespace with a bridge (src/emulator/network.ts)
 *     and a router process (src/emulator/vpc-router.ts) that runs the load balancers' listeners;
 *   - each network or classic load balancer gets an address in its VPC, its DNS name in the
 *     machines' /etc/hosts, and for every listener a loopback port on the host (hostEndpoint()).
 *
 * It only ever talks to an emulator on loopback: start() refuses any other endpoint.
 */
import { DescribeImagesCommand, DescribeInstanceAttributeCommand, DescribeInstancesCommand, DescribeVpcsCommand, EC2Client, type Instance } from '@aws-sdk/client-ec2';
import { ElasticLoadBalancingClient } from '@aws-sdk/client-elastic-load-balancing';
import { ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../core/errors.js';
import { parseCidr } from '../core/cidr.js';
import { packageRoot } from '../core/package.js';
import { observeLoadBalancers, type ObservedLoadBalancer } from './load-balancers.js';
import { Machine } from './machine.js';
import type { MachineConfig } from './machine-config.js';
import { addVpcAddress, checkNamespaceSupport, deleteNetns, ensureVpcNetwork, intToIp, listNetns, pidsIn, type VpcNetwork } from './network.js';
import { VpcRouter, type RouterListener } from './vpc-router-client.js';

export interface SupervisorOptions {
  /** The AWS emulator: http://127.0.0.1:<port> (moto). */
  endpoint: string;
  region: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Where machines keep their directories. Must not be under /etc, /var, /root, /home, /opt, /usr/local or /tmp (machines see those through their own layers). */
  stateDir?: string;
  /** Directory of the real kube binaries (the test bed's bin): machines of images that name no version of `kubeImages` carry these. */
  kubeBinDir: string;
  cloudInitBinary?: string;
  /** The version of `kubeBinDir`'s binaries: what those machines' kubelet reports. */
  kubeletVersion: string;
  /**
   * More machine images: Kubernetes version (v1.34.3) → the directory of that release's kube binaries
   * (kubeadm, kubectl, etcd, etcdctl, kube-apiserver, kube-controller-manager, kube-scheduler). An
   * instance whose image's name carries one of these versions (capa-ami-ubuntu-24.04-v1.34.3-...)
   * boots with that directory's binaries and a kubelet of that version.
   */
  kubeImages?: Record<string, string>;
  pollMs?: number;
  /** Load balancer health checks run this many times faster than AWS's (interval 10 s → 1 s). */
  healthCheckSpeedUp?: number;
  kubeletRestartSeconds?: number;
  kubeletHeartbeatSeconds?: number;
  keepFiles?: boolean;
  /**
   * Host loopback ports the machines may reach, at their VPC router's address and the same port
   * (the AWS emulator's, say, for a cloud controller). Nothing else on the host is reachable.
   */
  publishHostPorts?: number[];
  /**
   * The AWS CLI machines carry (as the AWS provider's images do), set up to reach this emulator
   * through its published port: the stand-in for an instance profile and the regional endpoints.
   * Machines fetch their bootstrap payload from Secrets Manager with it.
   */
  machineAwsCli?: string;
  /**
   * A JSON file kept as `{"<load balancer DNS name>:<port>": "127.0.0.1:<host port>"}`: how steps on
   * this host reach a load balancer whose name does not resolve here (CAPFLOW_ENDPOINTS_FILE).
   */
  endpointsFile?: string;
  log?: (line: string) => void;
}

export interface LoadBalancerView {
  name: string;
  type: 'network' | 'classic';
  dnsName: string;
  vpcId: string;
  address: string;
  listeners: Array<{ port: number; hostPort: number; targets: Array<{ id: string; host: string; port: number; state: string }> }>;
}

/** Where machines keep their directories unless told otherwise (not under a directory machines see through a layer of their own). */
export const DEFAULT_STATE_DIR = '/srv/capflow-machines';
/**
 * Every namespace of the emulator's machines and networks is `cfm-<owner id>-...`, the owner's
 * directory `<state dir>/<owner id>` holding `owner.pid`: cleanLeftovers removes those of dead owners.
 */
export const NETNS_PREFIX = 'cfm-';

/**
 * The Kubernetes version an AMI's name carries: CAPA's image lookup finds `capa-ami-{{.BaseOS}}-?{{.K8sVersion}}-*`
 * (capa-ami-ubuntu-24.04-v1.34.4-1732924800 → v1.34.4). The last `-[v]X.Y.Z` segment of the name
 * counts (a base OS may carry a version of its own, as flatcar-stable-3815.2.0 does); undefined without one.
 */
export function imageKubernetesVersion(imageName: string | undefined): string | undefined {
  const found = [...(imageName ?? '').matchAll(/(?:^|-)v?(\d+\.\d+\.\d+)(?=-|$)/g)];
  const last = found.at(-1)?.[1];
  return last ? `v${last}` : undefined;
}

/**
 * The kube binaries and kubelet version a machine of this image gets: those of the version its name
 * carries, else the default ones (`notCarried`: the version the name carries that this host has no
 * binaries of).
 */
export function machineImageFor(
  imageName: string | undefined,
  opts: Pick<SupervisorOptions, 'kubeBinDir' | 'kubeletVersion' | 'kubeImages'>,
): { kubernetesVersion: string; kubeBinDir: string; notCarried?: string } {
  const named = imageKubernetesVersion(imageName);
  const images: Record<string, string> = { [opts.kubeletVersion]: opts.kubeBinDir, ...opts.kubeImages };
  const dir = named ? images[named] : undefined;
  if (named && dir) return { kubernetesVersion: named, kubeBinDir: dir };
  return { kubernetesVersion: opts.kubeletVersion, kubeBinDir: opts.kubeBinDir, ...(named ? { notCarried: named } : {}) };
}

/** The compiled entry point of a machine-side process (run with node, from src/ under tsx too). */
export function emulatorEntry(name: 'capflow-kubelet' | 'capflow-machine-agent' | 'capflow-vpc-router'): string {
  const file = join(packageRoot(), 'dist', 'bin', `${name}.js`);
  if (!existsSync(file)) throw new InputError('EMULATOR_NOT_BUILT', `${file} is missing: the machines run the compiled capflow; run npm run build`);
  return file;
}

function isLoopbackEndpoint(endpoint: string): boolean {
  try {
    const host = new URL(endpoint).hostname;
    return host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '[::1]';
  } catch {
    return false;
  }
}

function shortId(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 10);
}

interface VpcState {
  net: VpcNetwork;
  router: VpcRouter;
  /** Load balancer name → its address in the VPC. */
  addresses: Map<string, string>;
  hosts: Record<string, string>;
}

export class MachineSupervisor {
  private readonly ec2: EC2Client;
  private readonly elbv2: ElasticLoadBalancingV2Client;
  private readonly elb: ElasticLoadBalancingClient;
  private readonly id = randomBytes(3).toString('hex');
  private readonly stateDir: string;
  private readonly running = new Map<string, Machine>();
  private readonly failed = new Map<string, string>();
  private readonly vpcs = new Map<string, VpcState>();
  private readonly vpcCidrs = new Map<string, string>();
  private readonly vpcsMaking = new Map<string, Promise<VpcState>>();
  /** Image id → its name (undefined: moto does not know it, or it has none). */
  private readonly imageNames = new Map<string, string | undefined>();
  private lbViews: LoadBalancerView[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly log: (line: string) => void;

  private constructor(private readonly opts: SupervisorOptions) {
    const clientConfig = {
      endpoint: opts.endpoint,
      region: opts.region,
      credentials: opts.credentials ?? { accessKeyId: 'testing', secretAccessKey: 'testing' },
      maxAttempts: 2,
    };
    this.ec2 = new EC2Client(clientConfig);
    this.elbv2 = new ElasticLoadBalancingV2Client(clientConfig);
    this.elb = new ElasticLoadBalancingClient(clientConfig);
    this.stateDir = join(opts.stateDir ?? DEFAULT_STATE_DIR, this.id);
    this.log = opts.log ?? (() => undefined);
  }

  /** Checks root and the tools, cleans what a dead supervisor left, and starts following the emulator. */
  static async start(opts: SupervisorOptions): Promise<MachineSupervisor> {
    if (!isLoopbackEndpoint(opts.endpoint)) {
      throw new InputError('EMULATOR_NOT_LOCAL', `the machine emulator follows only a local AWS emulator on loopback, not ${opts.endpoint}`);
    }
    await checkNamespaceSupport();
    const root = opts.stateDir ?? DEFAULT_STATE_DIR;
    if (/^\/(etc|var|root|home|opt|tmp|usr\/local)(\/|$)/.test(root)) {
      throw new InputError('EMULATOR_STATE_DIR', `${root} is hidden inside machines by their own layers; choose a directory elsewhere (default ${DEFAULT_STATE_DIR})`);
    }
    await cleanLeftovers(root);
    const sup = new MachineSupervisor(opts);
    mkdirSync(sup.stateDir, { recursive: true });
    writeFileSync(join(sup.stateDir, 'owner.pid'), String(process.pid));
    await sup.syncNow();
    sup.schedule();
    return sup;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.syncNow().finally(() => this.schedule());
    }, this.opts.pollMs ?? 500);
    this.timer.unref();
  }

  /** One pass now (after the one under way, if any). */
  syncNow(): Promise<void> {
    this.pass = this.pass.then(() =>
      this.stopped
        ? undefined
        : this.sync().catch((err: unknown) => {
            this.log(`supervisor: pass failed: ${(err as Error).message}`);
          }),
    );
    return this.pass;
  }

  machines(): Machine[] {
    return [...this.running.values()];
  }

  machine(instanceId: string): Machine | undefined {
    return this.running.get(instanceId);
  }

  /** Why an instance has no machine (no VPC, no private IP, its start failed). */
  problem(instanceId: string): string | undefined {
    return this.failed.get(instanceId);
  }

  loadBalancers(): LoadBalancerView[] {
    return this.lbViews;
  }

  /**
   * The host's way to a load balancer listener, for the tests and the demo: connect to
   * 127.0.0.1:<port> and present `dnsName` as the TLS server name (the override only they set).
   */
  hostEndpoint(dnsName: string, port: number): { host: string; port: number } | undefined {
    const lb = this.lbViews.find((l) => l.dnsName === dnsName);
    const listener = lb?.listeners.find((l) => l.port === port);
    return listener ? { host: '127.0.0.1', port: listener.hostPort } : undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.pass;
    await Promise.all([...this.running.values()].map((m) => m.stop()));
    this.running.clear();
    for (const vpc of this.vpcs.values()) {
      await vpc.router.stop();
      await deleteNetns(vpc.net.netns);
    }
    this.vpcs.clear();
    this.ec2.destroy();
    this.elbv2.destroy();
    this.elb.destroy();
    if (!this.opts.keepFiles) rmSync(this.stateDir, { recursive: true, force: true });
  }

  // --------------------------------------------------------------------------------------------

  private async sync(): Promise<void> {
    const instances = await this.describeInstances();
    const wanted = new Map<string, Instance>();
    for (const i of instances) {
      const state = i.State?.Name;
      if (i.InstanceId && (state === 'running' || state === 'pending')) wanted.set(i.InstanceId, i);
    }
    for (const [id, machine] of this.running) {
      if (!wanted.has(id)) {
        this.log(`supervisor: ${id} is gone or stopping; stopping its machine`);
        this.running.delete(id);
        await machine.stop();
      }
    }
    for (const id of this.failed.keys()) if (!wanted.has(id)) this.failed.delete(id);
    const ipOf = new Map(instances.filter((i) => i.State?.Name === 'running' && i.InstanceId && i.PrivateIpAddress).map((i) => [i.InstanceId!, i.PrivateIpAddress!]));
    const lbs = await observeLoadBalancers({ elbv2: this.elbv2, elb: this.elb }, ipOf, this.opts.healthCheckSpeedUp ?? 10);
    await this.syncLoadBalancers(lbs);
    const starts: Promise<void>[] = [];
    for (const [id, instance] of wanted) {
      if (this.running.has(id) || this.failed.has(id)) continue;
      starts.push(this.startMachine(instance).catch((err: unknown) => void this.failed.set(id, (err as Error).message)));
    }
    await Promise.all(starts);
    await this.dropIdleVpcs(lbs);
  }

  private async describeInstances(): Promise<Instance[]> {
    const out: Instance[] = [];
    let NextToken: string | undefined;
    do {
      const page = await this.ec2.send(new DescribeInstancesCommand({ NextToken }));
      for (const r of page.Reservations ?? []) out.push(...(r.Instances ?? []));
      NextToken = page.NextToken;
    } while (NextToken);
    return out;
  }

  /** The VPC's network, made once even when several machines of it start at the same time. */
  private vpc(vpcId: string): Promise<VpcState> {
    const known = this.vpcs.get(vpcId);
    if (known) return Promise.resolve(known);
    let making = this.vpcsMaking.get(vpcId);
    if (!making) {
      making = this.makeVpc(vpcId).finally(() => this.vpcsMaking.delete(vpcId));
      this.vpcsMaking.set(vpcId, making);
    }
    return making;
  }

  private async makeVpc(vpcId: string): Promise<VpcState> {
    let cidr = this.vpcCidrs.get(vpcId);
    if (!cidr) {
      const res = await this.ec2.send(new DescribeVpcsCommand({ VpcIds: [vpcId] }));
      cidr = res.Vpcs?.[0]?.CidrBlock;
      if (!cidr) throw new Error(`VPC ${vpcId} has no IPv4 CIDR block`);
      this.vpcCidrs.set(vpcId, cidr);
    }
    const net = await ensureVpcNetwork(`${NETNS_PREFIX}${this.id}-${shortId(vpcId)}`, vpcId, cidr);
    const router = await VpcRouter.start(net, emulatorEntry('capflow-vpc-router'), join(this.stateDir, 'vpc', shortId(vpcId)), this.log);
    const published = [...(this.opts.publishHostPorts ?? []), ...(this.opts.machineAwsCli ? [Number(new URL(this.opts.endpoint).port)] : [])];
    if (published.length > 0) await router.publish(net.routerAddress, [...new Set(published)]);
    const state: VpcState = { net, router, addresses: new Map(), hosts: {} };
    this.vpcs.set(vpcId, state);
    this.log(`supervisor: VPC ${vpcId} (${cidr}) is namespace ${net.netns}, router ${net.routerAddress}`);
    return state;
  }

  private async startMachine(instance: Instance): Promise<void> {
    const id = instance.InstanceId!;
    if (!instance.VpcId || !instance.PrivateIpAddress) throw new Error(`${id} has no VPC or private IP; only VPC instances boot`);
    const vpc = await this.vpc(instance.VpcId);
    const userData = await this.userDataOf(id);
    const imageName = instance.ImageId ? await this.imageNameOf(instance.ImageId) : undefined;
    const image = machineImageFor(imageName, this.opts);
    const awsCli = this.opts.machineAwsCli;
    const machineDir = join(this.stateDir, 'machines', id);
    const config: MachineConfig = {
      instanceId: id,
      hostname: instance.PrivateDnsName || `ip-${instance.PrivateIpAddress.replace(/\./g, '-')}.ec2.internal`,
      privateIp: instance.PrivateIpAddress,
      region: this.opts.region,
      availabilityZone: instance.Placement?.AvailabilityZone ?? `${this.opts.region}a`,
      machineDir,
      kubeBinDir: image.kubeBinDir,
      ...(this.opts.cloudInitBinary ? { cloudInitBinary: this.opts.cloudInitBinary } : {}),
      nodeBinary: process.execPath,
      kubeletEntry: emulatorEntry('capflow-kubelet'),
      kubeletVersion: image.kubernetesVersion,
      hosts: vpc.hosts,
      kubeletRestartSeconds: this.opts.kubeletRestartSeconds ?? 10,
      ...(this.opts.kubeletHeartbeatSeconds ? { kubeletHeartbeatSeconds: this.opts.kubeletHeartbeatSeconds } : {}),
      ...(awsCli
        ? {
            aws: {
              cli: awsCli,
              endpoint: `http://${vpc.net.routerAddress}:${new URL(this.opts.endpoint).port}`,
              region: this.opts.region,
              accessKeyId: this.opts.credentials?.accessKeyId ?? 'testing',
              secretAccessKey: this.opts.credentials?.secretAccessKey ?? 'testing',
            },
          }
        : {}),
    };
    const machine = new Machine({
      config,
      userData,
      vpc: vpc.net,
      netns: `${NETNS_PREFIX}${this.id}-${id}`,
      vethName: `m${id.replace(/^i-/, '').slice(-14)}`,
      agentEntry: emulatorEntry('capflow-machine-agent'),
      keepFiles: this.opts.keepFiles ?? false,
    });
    this.running.set(id, machine);
    const unknown = image.notCarried ? ` (the image names ${image.notCarried}, which this host has no binaries of)` : '';
    this.log(`supervisor: starting ${id} (${config.privateIp}) in ${instance.VpcId}, image ${instance.ImageId ?? '?'} ${imageName ?? '(no name)'}: Kubernetes ${image.kubernetesVersion}${unknown}`);
    try {
      await machine.start();
    } catch (err) {
      this.running.delete(id);
      await machine.stop().catch(() => undefined);
      throw err;
    }
  }

  /** The image's name, asked once per image; a deregistered or unknown image has none (its instances still run). */
  private async imageNameOf(imageId: string): Promise<string | undefined> {
    if (this.imageNames.has(imageId)) return this.imageNames.get(imageId);
    let name: string | undefined;
    try {
      name = (await this.ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }))).Images?.[0]?.Name;
    } catch (err) {
      if (!/^InvalidAMIID\./.test((err as Error).name)) throw err;
    }
    this.imageNames.set(imageId, name);
    return name;
  }

  private async userDataOf(instanceId: string): Promise<Buffer> {
    const res = await this.ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: instanceId, Attribute: 'userData' }));
    const b64 = res.UserData?.Value;
    return b64 ? Buffer.from(b64, 'base64') : Buffer.alloc(0);
  }

  private async syncLoadBalancers(lbs: ObservedLoadBalancer[]): Promise<void> {
    const views: LoadBalancerView[] = [];
    const vpcIds = new Set(lbs.map((lb) => lb.vpcId));
    for (const vpcId of vpcIds) {
      const vpc = await this.vpc(vpcId);
      const inVpc = lbs.filter((lb) => lb.vpcId === vpcId);
      const listeners: RouterListener[] = [];
      const hosts: Record<string, string> = {};
      for (const lb of inVpc) {
        let address = vpc.addresses.get(lb.name);
        if (!address) {
          address = this.freeLoadBalancerAddress(vpc);
          await addVpcAddress(vpc.net, address);
          vpc.addresses.set(lb.name, address);
          this.log(`supervisor: load balancer ${lb.name} (${lb.dnsName}) is ${address} in ${vpcId}`);
        }
        hosts[lb.dnsName] = address;
        for (const l of lb.listeners) listeners.push({ key: `${lb.name}:${l.port}`, address, port: l.port, targets: l.targets, healthCheck: l.healthCheck });
      }
      const hostPorts = await vpc.router.setListeners(listeners);
      for (const lb of inVpc) {
        views.push({
          name: lb.name,
          type: lb.type,
          dnsName: lb.dnsName,
          vpcId,
          address: hosts[lb.dnsName]!,
          listeners: lb.listeners.map((l) => {
            const health = vpc.router.health(`${lb.name}:${l.port}`);
            return { port: l.port, hostPort: hostPorts.get(`${lb.name}:${l.port}`) ?? 0, targets: l.targets.map((t) => ({ ...t, state: health.get(t.id) ?? 'initial' })) };
          }),
        });
      }
      if (JSON.stringify(hosts) !== JSON.stringify(vpc.hosts)) {
        vpc.hosts = hosts;
        for (const m of this.running.values()) if (m.options.vpc.vpcId === vpcId) m.setHosts(hosts);
      }
    }
    for (const [vpcId, vpc] of this.vpcs) if (!vpcIds.has(vpcId) && vpc.router.listenerCount() > 0) await vpc.router.setListeners([]);
    this.lbViews = views;
    if (this.opts.endpointsFile) writeEndpointsFile(this.opts.endpointsFile, views);
  }

  /** Load balancers take addresses from the top of the VPC block down: the emulator gives instances the lowest free ones. */
  private freeLoadBalancerAddress(vpc: VpcState): string {
    const block = parseCidr(vpc.net.cidr)!;
    const taken = new Set([...vpc.addresses.values(), ...[...this.running.values()].map((m) => m.privateIp)]);
    for (let n = block.base + 2 ** (32 - block.prefix) - 2; n > block.base + 3; n--) {
      const address = intToIp(n);
      if (!taken.has(address)) return address;
    }
    throw new Error(`no free address left for a load balancer in ${vpc.net.cidr}`);
  }

  private async dropIdleVpcs(lbs: ObservedLoadBalancer[]): Promise<void> {
    for (const [vpcId, vpc] of this.vpcs) {
      const used = lbs.some((lb) => lb.vpcId === vpcId) || [...this.running.values()].some((m) => m.options.vpc.vpcId === vpcId);
      if (used) continue;
      this.vpcs.delete(vpcId);
      await vpc.router.stop();
      await deleteNetns(vpc.net.netns);
      this.log(`supervisor: VPC ${vpcId} has no machine and no load balancer left; namespace removed`);
    }
  }
}

/** Namespaces and directories of supervisors (and BYOH labs) whose process is gone (a crashed test run). */
export async function cleanLeftovers(root: string): Promise<void> {
  const alive = new Set<string>();
  if (existsSync(root)) {
    for (const id of readdirSync(root)) {
      const pidFile = join(root, id, 'owner.pid');
      const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : NaN;
      if (Number.isInteger(pid) && isAlive(pid)) alive.add(id);
    }
  }
  for (const ns of await listNetns()) {
    if (!ns.startsWith(NETNS_PREFIX)) continue;
    const owner = ns.slice(NETNS_PREFIX.length).split('-')[0]!;
    if (alive.has(owner)) continue;
    for (const pid of await pidsIn(ns)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await deleteNetns(ns);
  }
  if (existsSync(root)) for (const id of readdirSync(root)) if (!alive.has(id)) rmSync(join(root, id), { recursive: true, force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The endpoints file, written whole and renamed into place so a reader never sees half of it. */
function writeEndpointsFile(file: string, views: readonly LoadBalancerView[]): void {
  const map: Record<string, string> = {};
  for (const lb of views) for (const l of lb.listeners) if (l.hostPort) map[`${lb.dnsName}:${l.port}`] = `127.0.0.1:${l.hostPort}`;
  const text = `${JSON.stringify(map, null, 2)}\n`;
  if (existsSync(file) && readFileSync(file, 'utf8') === text) return;
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/**
 * The AWS CLI to put in machines: the real program, not a version manager's shim (a pyenv shim
 * needs pyenv on the machine's PATH). Undefined when there is none.
 */
export function locateAwsCli(env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '').split(':').filter(Boolean)) {
    const candidate = join(dir, 'aws');
    if (!existsSync(candidate)) continue;
    if (!readFileSync(candidate, 'utf8').slice(0, 2000).includes('pyenv')) return candidate;
    const real = spawnSync('pyenv', ['which', 'aws'], { encoding: 'utf8', env });
    if (real.status === 0 && real.stdout.trim()) return real.stdout.trim();
  }
  return undefined;
}
