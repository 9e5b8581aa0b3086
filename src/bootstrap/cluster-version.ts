/**
 * The Kubernetes version the workload cluster is at, as kubeadm keeps it: `kubernetesVersion` in the
 * ClusterConfiguration of kube-system/kubeadm-config, which `kubeadm join --control-plane` reads to
 * write the joining machine's static pods. An upgrade moves it first (as Cluster API's control plane
 * controller does), so the new control plane machines come up at the new version, and the kube-proxy
 * DaemonSet's image tag with it. Upgrades go one minor at a time and never down.
 */
import type { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { parseDocument } from 'yaml';
import { statusOf, wrapKubeError } from '../core/kube-errors.js';
import type { Logger } from '../core/logger.js';

const NAMESPACE = 'kube-system';
const KUBEADM_CONFIG = 'kubeadm-config';

/** [major, minor, patch] of `v1.34.4` (pre-release and build ignored). */
export function versionParts(v: string): [number, number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** Negative, zero or positive as a is older, the same or newer than b. */
export function compareVersions(a: string, b: string): number {
  const pa = versionParts(a) ?? [0, 0, 0];
  const pb = versionParts(b) ?? [0, 0, 0];
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return 0;
}

export interface ClusterVersion {
  /** kubeadm-config's kubernetesVersion; undefined when the ConfigMap or the field is missing. */
  version: string | undefined;
  /** Moves it (and kube-proxy's image) to `want`. */
  set(want: string): Promise<void>;
}

export async function readClusterVersion(core: CoreV1Api, apps: AppsV1Api, log: Logger): Promise<ClusterVersion> {
  let data: Record<string, string>;
  try {
    data = (await core.readNamespacedConfigMap({ name: KUBEADM_CONFIG, namespace: NAMESPACE })).data ?? {};
  } catch (err) {
    if (statusOf(err) === 404) return { version: undefined, set: async () => {} };
    throw wrapKubeError(err, `reading ConfigMap ${NAMESPACE}/${KUBEADM_CONFIG}`, { verb: 'get', resource: 'configmaps', namespace: NAMESPACE });
  }
  const doc = parseDocument(data.ClusterConfiguration ?? '');
  const version = doc.get('kubernetesVersion');
  return {
    version: typeof version === 'string' ? version : undefined,
    async set(want) {
      doc.set('kubernetesVersion', want);
      try {
        await core.patchNamespacedConfigMap({ name: KUBEADM_CONFIG, namespace: NAMESPACE, body: [{ op: 'replace', path: '/data/ClusterConfiguration', value: doc.toString() }] });
      } catch (err) {
        throw wrapKubeError(err, `updating ConfigMap ${NAMESPACE}/${KUBEADM_CONFIG}`, { verb: 'patch', resource: 'configmaps', namespace: NAMESPACE });
      }
      log.info('Cluster version set', { configMap: `${NAMESPACE}/${KUBEADM_CONFIG}`, from: typeof version === 'string' ? version : '(none)', to: want });
      await setKubeProxyVersion(apps, want, log);
    },
  };
}

/** kube-proxy's image tag follows the control plane (kubeadm upgrade does the same); absent kube-proxy is fine. */
async function setKubeProxyVersion(apps: AppsV1Api, want: string, log: Logger): Promise<void> {
  let containers;
  try {
    containers = (await apps.readNamespacedDaemonSet({ name: 'kube-proxy', namespace: NAMESPACE })).spec?.template.spec?.containers ?? [];
  } catch (err) {
    if (statusOf(err) === 404) return;
    throw wrapKubeError(err, `reading DaemonSet ${NAMESPACE}/kube-proxy`, { verb: 'get', resource: 'daemonsets.apps', namespace: NAMESPACE });
  }
  const index = containers.findIndex((c) => c.name === 'kube-proxy');
  const image = containers[index]?.image;
  if (index < 0 || !image || !/\/kube-proxy:v[\d.]+$/.test(image)) return;
  const next = image.replace(/:v[\d.]+$/, `:${want}`);
  if (next === image) return;
  try {
    await apps.patchNamespacedDaemonSet({ name: 'kube-proxy', namespace: NAMESPACE, body: [{ op: 'replace', path: `/spec/template/spec/containers/${index}/image`, value: next }] });
  } catch (err) {
    throw wrapKubeError(err, `updating DaemonSet ${NAMESPACE}/kube-proxy`, { verb: 'patch', resource: 'daemonsets.apps', namespace: NAMESPACE });
  }
  log.info('kube-proxy image set', { image: next });
}
