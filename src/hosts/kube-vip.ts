/**
 * kube-vip as a static pod on control-plane hosts: the virtual IP of the API server endpoint,
 * announced by ARP from the leader. The manifest is what `kube-vip manifest pod --address <vip>
 * --interface <if> --controlplane --arp --leaderElection` prints (kube-vip.io/docs/installation/static).
 */

import { isIP } from 'node:net';
import { stringify } from 'yaml';
import { InputError } from '../core/errors.js';

export const KUBE_VIP_IMAGE = 'ghcr.io/kube-vip/kube-vip:v0.8.9';
/** Where kube-vip looks for its kubeconfig inside the container. */
const IN_POD_KUBECONFIG = '/etc/kubernetes/admin.conf';

export interface KubeVipOptions {
  /** The virtual IP, the control-plane endpoint's host. */
  address: string;
  /** The API server port behind the VIP (6443). */
  port?: number;
  /** The interface to announce on; kube-vip picks the default route's when absent. */
  interface?: string;
  image?: string;
  /** The host's kubeconfig to mount: see kubeVipKubeconfigPath. */
  kubeconfigPath: string;
}

export function kubeVipManifest(o: KubeVipOptions): string {
  const family = isIP(o.address);
  if (family === 0) throw new InputError('KUBE_VIP_ADDRESS_INVALID', `kube-vip address ${JSON.stringify(o.address)} is not an IP address`);
  const port = o.port ?? 6443;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InputError('KUBE_VIP_PORT_INVALID', `kube-vip port ${port} is not a TCP port`);
  const env: Array<{ name: string; value?: string; valueFrom?: unknown }> = [
    { name: 'vip_arp', value: 'true' },
    { name: 'port', value: String(port) },
    { name: 'vip_nodename', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
    ...(o.interface ? [{ name: 'vip_interface', value: o.interface }] : []),
    { name: 'vip_cidr', value: family === 4 ? '32' : '128' },
    { name: 'dns_mode', value: 'first' },
    { name: 'cp_enable', value: 'true' },
    { name: 'cp_namespace', value: 'kube-system' },
    { name: 'vip_leaderelection', value: 'true' },
    { name: 'vip_leasename', value: 'plndr-cp-lock' },
    { name: 'vip_leaseduration', value: '5' },
    { name: 'vip_renewdeadline', value: '3' },
    { name: 'vip_retryperiod', value: '1' },
    { name: 'address', value: o.address },
    { name: 'prometheus_server', value: ':2112' },
  ];
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'kube-vip', namespace: 'kube-system' },
    spec: {
      containers: [
        {
          name: 'kube-vip',
          image: o.image ?? KUBE_VIP_IMAGE,
          imagePullPolicy: 'IfNotPresent',
          args: ['manager'],
          env,
          securityContext: { capabilities: { add: ['NET_ADMIN', 'NET_RAW'] } },
          volumeMounts: [{ name: 'kubeconfig', mountPath: IN_POD_KUBECONFIG }],
        },
      ],
      // kube-vip talks to the API server through "kubernetes": this host's own apiserver.
      hostAliases: [{ ip: '127.0.0.1', hostnames: ['kubernetes'] }],
      hostNetwork: true,
      volumes: [{ name: 'kubeconfig', hostPath: { path: o.kubeconfigPath } }],
    },
  };
  return stringify(pod);
}

/**
 * The host kubeconfig kube-vip mounts. From Kubernetes 1.29 kubeadm's admin.conf is bound to a
 * group that only gets its rights once init has finished, so the first control plane's kube-vip
 * (which init waits on) needs super-admin.conf; joins come later and use admin.conf.
 */
export function kubeVipKubeconfigPath(kubernetesVersion: string, phase: 'init' | 'join'): string {
  const m = /^v?(\d+)\.(\d+)(?:\.\d+)?/.exec(kubernetesVersion);
  if (!m) throw new InputError('KUBERNETES_VERSION_INVALID', `kubernetesVersion ${JSON.stringify(kubernetesVersion)} is not a version like v1.31.4`);
  const [major, minor] = [Number(m[1]), Number(m[2])];
  const superAdmin = phase === 'init' && (major > 1 || (major === 1 && minor >= 29));
  return superAdmin ? '/etc/kubernetes/super-admin.conf' : '/etc/kubernetes/admin.conf';
}
