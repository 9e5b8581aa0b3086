/**
 * A world for the booting machines, built by hand in the AWS emulator the way an operator without
 * capflow would: a VPC and a subnet, a network load balancer for the API server, a cluster CA made
 * with openssl, and ordinary kubeadm user data (cloud-config with write_files and runcmd) for control
 * planes and workers. Used by the proof tests of "Machines that boot" and by bench/machines.bench.ts.
 *
 *   const world = await KubeadmWorld.create(motoEndpoint, supervisor, { name: 'proof', cidr: '10.0.0.0/16' });
 *   const cp = await world.launchControlPlane();   // kubeadm init
 *   await world.waitForApi();                       // /readyz through the load balancer
 *   const w = await world.launchWorker();           // kubeadm join
 *   await world.waitForNodes(2, { ready: true });
 */
import { AuthorizeSecurityGroupIngressCommand, CreateSubnetCommand, CreateVpcCommand, DescribeSecurityGroupsCommand, EC2Client, RunInstancesCommand, TerminateInstancesCommand } from '@aws-sdk/client-ec2';
import {
  CreateListenerCommand,
  CreateLoadBalancerCommand,
  CreateTargetGroupCommand,
  ElasticLoadBalancingV2Client,
  RegisterTargetsCommand,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { Machine } from '../../src/emulator/machine.js';
import type { MachineSupervisor } from '../../src/emulator/supervisor.js';
import { clientConfig } from './moto.js';
import { requireTool, run, testbedVersions } from './tools.js';

export const CNI_CONFIG = JSON.stringify({ cniVersion: '1.0.0', name: 'stand-in', plugins: [{ type: 'bridge' }] });

export interface WorldOptions {
  name: string;
  cidr: string;
  /** Any image moto knows; one whose name carries a Kubernetes version (capa-ami-ubuntu-24.04-v1.34.3-...) boots with that version's binaries. */
  imageId?: string;
}

export interface NodeView {
  name: string;
  ready: boolean;
  labels: Record<string, string>;
  taints: Array<{ key: string; effect: string }>;
  reason?: string;
}

export class KubeadmWorld {
  readonly token = `${randomBytes(3).toString('hex')}.${randomBytes(8).toString('hex')}`;
  readonly certificateKey = randomBytes(32).toString('hex');
  readonly version = testbedVersions().KUBERNETES_VERSION ?? 'v1.34.4';
  readonly instances: string[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), 'capflow-kubeadm-world-'));
  private caCert = '';
  private caKey = '';
  private caHash = '';
  private controlPlanes = 0;

  private constructor(
    readonly ec2: EC2Client,
    readonly elbv2: ElasticLoadBalancingV2Client,
    readonly supervisor: MachineSupervisor,
    readonly options: WorldOptions,
    readonly subnetId: string,
    readonly targetGroupArn: string,
    readonly apiDnsName: string,
  ) {}

  static async create(motoEndpoint: string, supervisor: MachineSupervisor, options: WorldOptions): Promise<KubeadmWorld> {
    const ec2 = new EC2Client(clientConfig(motoEndpoint));
    const elbv2 = new ElasticLoadBalancingV2Client(clientConfig(motoEndpoint));
    const vpc = await ec2.send(new CreateVpcCommand({ CidrBlock: options.cidr }));
    const vpcId = vpc.Vpc!.VpcId!;
    const subnetCidr = options.cidr.replace(/\/\d+$/, '/24');
    const subnet = await ec2.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: subnetCidr, AvailabilityZone: 'us-east-1a' }));
    const sg = await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'vpc-id', Values: [vpcId] }] }));
    await ec2.send(
      new AuthorizeSecurityGroupIngressCommand({ GroupId: sg.SecurityGroups![0]!.GroupId!, IpPermissions: [{ IpProtocol: '-1', IpRanges: [{ CidrIp: options.cidr }] }] }),
    );
    const lb = await elbv2.send(new CreateLoadBalancerCommand({ Name: `${options.name}-apiserver`, Type: 'network', Scheme: 'internet-facing', Subnets: [subnet.Subnet!.SubnetId!] }));
    const lbArn = lb.LoadBalancers![0]!.LoadBalancerArn!;
    // CAPA's API server target group: TCP 6443, checked every 10 s (the emulator runs checks 10x faster)
    const tg = await elbv2.send(
      new CreateTargetGroupCommand({
        Name: `${options.name}-apiserver`,
        Protocol: 'TCP',
        Port: 6443,
        VpcId: vpcId,
        TargetType: 'instance',
        HealthCheckProtocol: 'TCP',
        HealthCheckIntervalSeconds: 10,
        HealthyThresholdCount: 2,
        UnhealthyThresholdCount: 2,
      }),
    );
    const tgArn = tg.TargetGroups![0]!.TargetGroupArn!;
    await elbv2.send(new CreateListenerCommand({ LoadBalancerArn: lbArn, Protocol: 'TCP', Port: 6443, DefaultActions: [{ Type: 'forward', TargetGroupArn: tgArn }] }));
    const world = new KubeadmWorld(ec2, elbv2, supervisor, options, subnet.Subnet!.SubnetId!, tgArn, lb.LoadBalancers![0]!.DNSName!);
    await world.makeCa();
    return world;
  }

  private async makeCa(): Promise<void> {
    const openssl = requireTool('openssl');
    const key = join(this.dir, 'ca.key');
    const crt = join(this.dir, 'ca.crt');
    const res = await run(openssl, [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '2', '-subj', '/CN=kubernetes',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign',
    ]);
    if (res.code !== 0) throw new Error(`openssl: ${res.stderr}`);
    this.caCert = readFileSync(crt, 'utf8');
    this.caKey = readFileSync(key, 'utf8');
    // kubeadm's discovery hash: sha256 of the CA's SubjectPublicKeyInfo
    this.caHash = `sha256:${createHash('sha256').update(createPublicKey(this.caCert).export({ type: 'spki', format: 'der' })).digest('hex')}`;
  }

  get ca(): string {
    return this.caCert;
  }

  /** Plain kubeadm user data: the first control plane runs `kubeadm init`, the others join with the uploaded certificates. */
  controlPlaneUserData(first: boolean): string {
    const nodeRegistration = { ignorePreflightErrors: ['SystemVerification'] };
    const docs = first
      ? [
          {
            apiVersion: 'kubeadm.k8s.io/v1beta4',
            kind: 'InitConfiguration',
            bootstrapTokens: [{ token: this.token, ttl: '2h0m0s', groups: ['system:bootstrappers:kubeadm:default-node-token'], usages: ['signing', 'authentication'] }],
            certificateKey: this.certificateKey,
            nodeRegistration,
          },
          {
            apiVersion: 'kubeadm.k8s.io/v1beta4',
            kind: 'ClusterConfiguration',
            kubernetesVersion: this.version,
            controlPlaneEndpoint: `${this.apiDnsName}:6443`,
            networking: { podSubnet: '192.168.0.0/16', serviceSubnet: '10.96.0.0/12' },
            // a node that stops heartbeating turns NotReady after 10 s instead of 50 s (the tests' crash cases)
            controllerManager: { extraArgs: [{ name: 'node-monitor-grace-period', value: '10s' }] },
          },
        ]
      : [this.joinConfiguration({ certificateKey: this.certificateKey }, nodeRegistration)];
    const files = [{ path: '/run/kubeadm/kubeadm.yaml', owner: 'root:root', permissions: '0640', content: docs.map((d) => stringify(d)).join('---\n') }];
    if (first) {
      files.push({ path: '/etc/kubernetes/pki/ca.crt', owner: 'root:root', permissions: '0640', content: this.caCert });
      files.push({ path: '/etc/kubernetes/pki/ca.key', owner: 'root:root', permissions: '0600', content: this.caKey });
    }
    const command = first ? 'kubeadm init --config /run/kubeadm/kubeadm.yaml --upload-certs' : 'kubeadm join --config /run/kubeadm/kubeadm.yaml';
    return cloudConfig(files, command);
  }

  workerUserData(): string {
    const doc = this.joinConfiguration(undefined, { ignorePreflightErrors: ['SystemVerification'], kubeletExtraArgs: [{ name: 'node-labels', value: 'capflow.io/pool=workers' }] });
    return cloudConfig([{ path: '/run/kubeadm/kubeadm.yaml', owner: 'root:root', permissions: '0640', content: stringify(doc) }], 'kubeadm join --config /run/kubeadm/kubeadm.yaml');
  }

  private joinConfiguration(controlPlane: Record<string, unknown> | undefined, nodeRegistration: Record<string, unknown>): Record<string, unknown> {
    return {
      apiVersion: 'kubeadm.k8s.io/v1beta4',
      kind: 'JoinConfiguration',
      discovery: { bootstrapToken: { apiServerEndpoint: `${this.apiDnsName}:6443`, token: this.token, caCertHashes: [this.caHash] } },
      nodeRegistration,
      ...(controlPlane ? { controlPlane } : {}),
    };
  }

  async launch(userData: string, role: string, imageId = this.options.imageId ?? 'ami-12c6146b'): Promise<string> {
    const res = await this.ec2.send(
      new RunInstancesCommand({
        ImageId: imageId,
        InstanceType: 't3.large',
        MinCount: 1,
        MaxCount: 1,
        SubnetId: this.subnetId,
        UserData: Buffer.from(userData).toString('base64'),
        TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'Name', Value: `${this.options.name}-${role}` }] }],
      }),
    );
    const id = res.Instances![0]!.InstanceId!;
    this.instances.push(id);
    return id;
  }

  /** Launches a control plane (the first runs kubeadm init) and registers it with the API load balancer, as CAPA does. */
  async launchControlPlane(): Promise<string> {
    const id = await this.launch(this.controlPlaneUserData(this.controlPlanes === 0), `cp${this.controlPlanes}`);
    this.controlPlanes += 1;
    await this.elbv2.send(new RegisterTargetsCommand({ TargetGroupArn: this.targetGroupArn, Targets: [{ Id: id }] }));
    return id;
  }

  /** Launches a worker (kubeadm join), of the world's image or of `imageId` (an AMI named for another Kubernetes version, say). */
  launchWorker(imageId?: string): Promise<string> {
    return this.launch(this.workerUserData(), `worker${this.instances.length}`, imageId);
  }

  async terminate(id: string): Promise<void> {
    await this.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
  }

  async machine(id: string, timeoutMs = 30_000): Promise<Machine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.supervisor.machine(id);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`instance ${id} got no machine: ${this.supervisor.problem(id) ?? 'not seen by the supervisor'}`);
      await sleep(200);
    }
  }

  /** The host's way to the API load balancer: 127.0.0.1:<port>, TLS server name the load balancer's DNS name. */
  apiEndpoint(): { host: string; port: number } {
    const ep = this.supervisor.hostEndpoint(this.apiDnsName, 6443);
    if (!ep) throw new Error(`the supervisor has no listener for ${this.apiDnsName}:6443`);
    return ep;
  }

  /** GET path on the API server through the load balancer, anonymous, verified against the cluster CA. */
  apiGet(path: string): Promise<{ status: number; body: string }> {
    const ep = this.apiEndpoint();
    return new Promise((resolve, reject) => {
      const req = request({ host: ep.host, port: ep.port, path, servername: this.apiDnsName, ca: this.caCert, timeout: 5_000 }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  async waitForApi(timeoutMs: number, machineForLog?: Machine): Promise<number> {
    const started = Date.now();
    let last = '';
    while (Date.now() - started < timeoutMs) {
      try {
        const res = await this.apiGet('/readyz');
        if (res.status === 200) return Date.now() - started;
        last = `${res.status} ${res.body.slice(0, 200)}`;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(500);
    }
    throw new Error(`the API server did not answer /readyz through ${this.apiDnsName} within ${timeoutMs} ms (last: ${last})\n${tail(machineForLog?.bootLog() ?? '')}`);
  }

  /** The admin kubeconfig from the first control plane, pointed at the host's way to the load balancer. */
  async adminKubeconfig(cp: Machine): Promise<string> {
    const res = await cp.exec(['cat', '/etc/kubernetes/admin.conf']);
    if (res.code !== 0) throw new Error(`admin.conf: ${res.stderr}`);
    const ep = this.apiEndpoint();
    const text = res.stdout.replace(/server: https:\/\/[^\s]+/, `server: https://${ep.host}:${ep.port}\n    tls-server-name: ${this.apiDnsName}`);
    const file = join(this.dir, 'admin.conf');
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  }

  async kubectl(kubeconfig: string, args: string[]): Promise<string> {
    const res = await run(requireTool('kubectl'), ['--kubeconfig', kubeconfig, ...args], { timeoutMs: 30_000 });
    if (res.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${res.stderr}`);
    return res.stdout;
  }

  async nodes(kubeconfig: string): Promise<NodeView[]> {
    const list = JSON.parse(await this.kubectl(kubeconfig, ['get', 'nodes', '-o', 'json'])) as {
      items: Array<{ metadata: { name: string; labels?: Record<string, string> }; spec: { taints?: Array<{ key: string; effect: string }> }; status: { conditions?: Array<{ type: string; status: string; reason?: string }> } }>;
    };
    return list.items.map((n) => {
      const ready = n.status.conditions?.find((c) => c.type === 'Ready');
      return { name: n.metadata.name, ready: ready?.status === 'True', labels: n.metadata.labels ?? {}, taints: n.spec.taints ?? [], ...(ready?.reason ? { reason: ready.reason } : {}) };
    });
  }

  async waitForNodes(kubeconfig: string, count: number, opts: { ready: boolean; timeoutMs: number }): Promise<NodeView[]> {
    const deadline = Date.now() + opts.timeoutMs;
    let last: NodeView[] = [];
    for (;;) {
      try {
        last = await this.nodes(kubeconfig);
        if (last.length >= count && (!opts.ready || last.every((n) => n.ready))) return last;
      } catch {
        /* the API may be restarting */
      }
      if (Date.now() > deadline) throw new Error(`waited for ${count} node(s)${opts.ready ? ' Ready' : ''}; have ${JSON.stringify(last)}`);
      await sleep(500);
    }
  }

  /** Writes a CNI configuration on a machine: what a CNI DaemonSet's pod would do on a real node. */
  async installCni(machine: Machine): Promise<void> {
    const res = await machine.exec(['sh', '-c', 'mkdir -p /etc/cni/net.d && cat > /etc/cni/net.d/10-stand-in.conflist'], { input: CNI_CONFIG });
    if (res.code !== 0) throw new Error(`CNI config on ${machine.instanceId}: ${res.stderr}`);
  }

  dispose(): void {
    this.ec2.destroy();
    this.elbv2.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function cloudConfig(files: Array<Record<string, string>>, command: string): string {
  return `#cloud-config\n${stringify({
    write_files: files,
    runcmd: [`${command} && mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete`],
  })}`;
}

export function tail(text: string, lines = 60): string {
  return text.split('\n').slice(-lines).join('\n');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
