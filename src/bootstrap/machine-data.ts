/**
 * The bootstrap data of one machine group of a self-managed cluster: which KubeadmConfigSpec it
 * uses (the KubeadmControlPlane's, a MachineDeployment's KubeadmConfigTemplate, a MachinePool's
 * KubeadmConfig), in which role (init, control-plane-join, worker-join), rendered with the cluster's
 * endpoint, PKI and join token, and sealed: user data without secrets, and the payload.
 */
import { InputError } from '../core/errors.js';
import type { ClusterModel, KubeadmConfigSpec } from '../spec/index.js';
import { renderCloudConfig, type CloudConfig, type ClusterCertificates, type SecretResolver } from './cloud-config.js';
import type { BootstrapRole, SpecOrigin } from './kubeadm-config.js';
import { caCertHash, type ClusterPki } from './pki.js';
import { sealUserData, type SealedUserData } from './sealed-user-data.js';

export const CONTROL_PLANE_GROUP = 'control-plane';

export interface GroupSpec {
  spec: KubeadmConfigSpec;
  origin: SpecOrigin;
  kubernetesVersion: string;
}

/** The KubeadmConfigSpec a group's machines boot with, and where it is in the spec. */
export function groupSpec(model: ClusterModel, group: string): GroupSpec {
  if (group === CONTROL_PLANE_GROUP) {
    if (model.controlPlane.kind !== 'KubeadmControlPlane') throw new InputError('CONTROL_PLANE_NOT_KUBEADM', `cluster ${model.name} has no KubeadmControlPlane`);
    const kcp = model.controlPlane;
    return { spec: kcp.spec.kubeadmConfigSpec ?? {}, origin: { kind: 'KubeadmControlPlane', name: kcp.metadata.name, path: ['spec', 'kubeadmConfigSpec'] }, kubernetesVersion: kcp.spec.version };
  }
  const md = model.machineDeployments.find((m) => m.deployment.metadata.name === group);
  if (md) {
    const tpl = md.bootstrapTemplate;
    if (!tpl || tpl.kind !== 'KubeadmConfigTemplate') {
      throw new InputError('BOOTSTRAP_TEMPLATE_MISSING', `MachineDeployment/${group} has no KubeadmConfigTemplate: capflow renders kubeadm bootstrap data only`);
    }
    return {
      spec: tpl.spec.template.spec ?? {},
      origin: { kind: 'KubeadmConfigTemplate', name: tpl.metadata.name, path: ['spec', 'template', 'spec'] },
      kubernetesVersion: md.deployment.spec.template.spec.version ?? model.kubernetesVersion,
    };
  }
  const pool = model.machinePools.find((p) => p.pool.metadata.name === group);
  if (pool) {
    const config = pool.bootstrapConfig;
    if (!config || config.kind !== 'KubeadmConfig') throw new InputError('BOOTSTRAP_CONFIG_MISSING', `MachinePool/${group} has no KubeadmConfig: capflow renders kubeadm bootstrap data only`);
    return {
      spec: config.spec ?? {},
      origin: { kind: 'KubeadmConfig', name: config.metadata.name, path: ['spec'] },
      kubernetesVersion: pool.pool.spec.template.spec.version ?? model.kubernetesVersion,
    };
  }
  throw new InputError('MACHINE_GROUP_UNKNOWN', `cluster ${model.name} has no machine group ${group}`);
}

export interface GroupBootstrap {
  model: ClusterModel;
  /** The API load balancer. */
  endpoint: { host: string; port: number };
  pki: ClusterPki;
  resolveSecret: SecretResolver;
  /** For joins: the bootstrap token and its TTL (`15m0s`). */
  join?: { token: string; ttl: string };
}

export interface ClusterBootstrap extends GroupBootstrap {
  region: string;
  /** The Secrets Manager secret the group's payload is kept in. */
  payloadSecret(group: string): string;
}

function certificatesOf(pki: ClusterPki): ClusterCertificates {
  return {
    clusterCa: pki.clusterCa,
    etcdCa: pki.etcdCa,
    frontProxyCa: pki.frontProxyCa,
    serviceAccount: { publicKeyPem: pki.serviceAccount.publicKeyPem, privateKeyPem: pki.serviceAccount.privateKeyPem },
  };
}

/** The group's sealed bootstrap data in `role`. */
export async function groupBootstrapData(b: ClusterBootstrap, group: string, role: BootstrapRole): Promise<SealedUserData> {
  return sealUserData(await groupCloudConfig(b, group, role), { secretId: b.payloadSecret(group), region: b.region });
}

/** The group's bootstrap in `role` as a cloud-config, unsealed. */
export async function groupCloudConfig(b: GroupBootstrap, group: string, role: BootstrapRole): Promise<CloudConfig> {
  const g = groupSpec(b.model, group);
  if (role !== 'init' && !b.join) throw new InputError('BOOTSTRAP_TOKEN_MISSING', `joining ${group} needs a bootstrap token`);
  return renderCloudConfig({
    role,
    spec: g.spec,
    origin: g.origin,
    clusterName: b.model.name,
    kubernetesVersion: g.kubernetesVersion,
    controlPlaneEndpoint: b.endpoint,
    ...(b.model.cluster.spec.clusterNetwork ? { clusterNetwork: b.model.cluster.spec.clusterNetwork } : {}),
    ...(b.join ? { bootstrapToken: b.join.token, bootstrapTokenTtl: b.join.ttl } : {}),
    caCertHashes: [caCertHash(b.pki.clusterCa.certPem)],
    ...(role === 'worker-join' ? {} : { certificates: certificatesOf(b.pki) }),
    resolveSecret: b.resolveSecret,
  });
}
