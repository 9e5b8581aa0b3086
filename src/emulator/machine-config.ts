/**
 * What the supervisor tells a machine agent about its instance: written as `machine.json` in the
 * machine's directory before the agent starts, read by the agent inside the namespaces.
 */
export interface MachineConfig {
  instanceId: string;
  /** The instance's private DNS name (ip-10-0-1-4.ec2.internal): the machine's hostname, as on EC2. */
  hostname: string;
  privateIp: string;
  region: string;
  availabilityZone: string;
  /** The machine's directory on the host (not hidden by the machine's own mounts). */
  machineDir: string;
  /** Directory holding the real kube binaries (kubeadm, etcd, kube-apiserver, ...) of the image's Kubernetes version. */
  kubeBinDir: string;
  /** `cloud-init` for the schema check of cloud-config user data; absent: the boot fails, saying so. */
  cloudInitBinary?: string;
  /** The node binary and the kubelet stand-in's entry point, for the machine's `kubelet` command. */
  nodeBinary: string;
  kubeletEntry: string;
  /** The image's Kubernetes version (its name's, else the supervisor's default): what the kubelet stand-in reports. */
  kubeletVersion: string;
  /** /etc/hosts entries besides the machine's own: load balancer DNS names → their VPC addresses. */
  hosts: Record<string, string>;
  /** Seconds systemd waits before restarting the kubelet (kubeadm's drop-in says 10). */
  kubeletRestartSeconds: number;
  /** Faster heartbeats for tests (the kubelet's defaults are 10 s); absent: the defaults. */
  kubeletHeartbeatSeconds?: number;
  /** The AWS CLI and how it reaches the emulator (the instance profile's stand-in); absent: no CLI. */
  aws?: { cli: string; endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
}

/** Directories of the host that each machine sees through its own copy-on-write layer. */
export const PRIVATE_LAYERS = ['/etc', '/var', '/root', '/home', '/opt', '/usr/local', '/tmp'] as const;

export const MACHINE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Where the machine keeps its logs, inside its own /var. */
export const MACHINE_LOGS = {
  kubelet: '/var/log/kubelet.log',
  standInCalls: '/var/log/capflow/stand-in-calls.jsonl',
} as const;

/**
 * systemd's hold on the kubelet service, inside the machine's own /run: the service's pid, and the
 * last `systemctl start|stop|restart kubelet` (the systemctl stand-in writes it, the agent obeys).
 */
export const KUBELET_SERVICE = {
  pidFile: '/run/capflow/kubelet.pid',
  requestFile: '/run/capflow/kubelet.request',
} as const;

export function layerDirName(path: string): string {
  return path.replace(/^\//, '').replace(/\//g, '-');
}
