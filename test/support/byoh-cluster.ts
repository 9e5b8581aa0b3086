/**
 * A BYOH cluster folder for the BYOH lab's hosts (test/support/byoh-lab.ts): the Cluster, ByoCluster
 * (its endpoint the lab's VIP, served by kube-vip), a KubeadmControlPlane on the hosts labelled
 * role=control-plane, a MachineDeployment on role=worker, and the ByoHostInventory with each host's
 * address and pinned key. Used by the BYOH suite and bench.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import type { ByohLab } from './byoh-lab.js';

export const BYOH_CLUSTER = 'byoh-test';
export const BYOH_SSH_SECRET = 'byoh-test-ssh';

export interface ByohClusterOptions {
  /** The hosts' Kubernetes version (the test bed's). */
  version: string;
  name?: string;
  /** MachineDeployment replicas (default 2). */
  workers?: number;
  /** Host name -> a key line to pin instead of the host's own. */
  hostKeys?: Record<string, string>;
  /** Only these lab hosts in the inventory (default all). */
  hosts?: string[];
}

/** Writes clusters/<dir> under repo; returns that path, relative to repo. */
export function writeByohCluster(repo: string, dir: string, lab: ByohLab, o: ByohClusterOptions): string {
  const name = o.name ?? BYOH_CLUSTER;
  const folder = path.join(repo, 'clusters', dir);
  mkdirSync(folder, { recursive: true });
  // kubeadm's kernel check does not know every kernel (the hosts share the test machine's).
  const nodeRegistration = { ignorePreflightErrors: ['SystemVerification'] };
  const cni = { path: '/etc/cni/net.d/10-bridge.conflist', owner: 'root:root', permissions: '0644', content: '{"cniVersion": "1.0.0", "name": "bridge", "plugins": [{"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "192.168.0.0/16"}}]}\n' };
  const docs = [
    { apiVersion: 'cluster.x-k8s.io/v1beta1', kind: 'Cluster', metadata: { name }, spec: { clusterNetwork: { pods: { cidrBlocks: ['192.168.0.0/16'] } }, infrastructureRef: { apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1', kind: 'ByoCluster', name }, controlPlaneRef: { apiVersion: 'controlplane.cluster.x-k8s.io/v1beta1', kind: 'KubeadmControlPlane', name: `${name}-cp` } } },
    { apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1', kind: 'ByoCluster', metadata: { name }, spec: { controlPlaneEndpoint: { host: lab.vip, port: 6443 } } },
    { apiVersion: 'controlplane.cluster.x-k8s.io/v1beta1', kind: 'KubeadmControlPlane', metadata: { name: `${name}-cp` }, spec: { replicas: 1, version: o.version, machineTemplate: { infrastructureRef: { apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1', kind: 'ByoMachineTemplate', name: `${name}-cp` } }, kubeadmConfigSpec: { initConfiguration: { nodeRegistration }, joinConfiguration: { nodeRegistration }, files: [cni] } } },
    { apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1', kind: 'ByoMachineTemplate', metadata: { name: `${name}-cp` }, spec: { template: { spec: { selector: { matchLabels: { role: 'control-plane' } } } } } },
    { apiVersion: 'cluster.x-k8s.io/v1beta1', kind: 'MachineDeployment', metadata: { name: `${name}-md-0` }, spec: { clusterName: name, replicas: o.workers ?? 2, selector: { matchLabels: {} }, template: { spec: { clusterName: name, version: o.version, bootstrap: { configRef: { apiVersion: 'bootstrap.cluster.x-k8s.io/v1beta1', kind: 'KubeadmConfigTemplate', name: `${name}-workers` } }, infrastructureRef: { apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1', kind: 'ByoMachineTemplate', name: `${name}-workers` } } } } },
    { apiVersion: 'infrastructure.cluster.x-k8s.io/v1beta1', kind: 'ByoMachineTemplate', metadata: { name: `${name}-workers` }, spec: { template: { spec: { selector: { matchLabels: { role: 'worker' } } } } } },
    { apiVersion: 'bootstrap.cluster.x-k8s.io/v1beta1', kind: 'KubeadmConfigTemplate', metadata: { name: `${name}-workers` }, spec: { template: { spec: { joinConfiguration: { nodeRegistration }, files: [cni] } } } },
  ];
  writeFileSync(path.join(folder, 'cluster.yaml'), docs.map((d) => stringify(d)).join('---\n'));
  const hosts = lab.hosts
    .filter((h) => !o.hosts || o.hosts.includes(h.name))
    .map((h) => ({ name: h.name, address: h.address, port: h.port, user: h.user, hostKey: o.hostKeys?.[h.name] ?? h.hostKeyPublic, labels: h.labels }));
  const inventory = { apiVersion: 'capflow.io/v1alpha1', kind: 'ByoHostInventory', metadata: { name: `${name}-hosts` }, spec: { sshKeySecretRef: { name: BYOH_SSH_SECRET }, apiServerLoadBalancer: { type: 'kube-vip' }, hosts } };
  writeFileSync(path.join(folder, 'hosts.yaml'), stringify(inventory));
  return `clusters/${dir}`;
}
