/**
 * The reconciler's way into the management cluster: one kubeconfig loader for
 * every part (records, workflows, the lease) and the API error helpers they
 * share with src/core.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { InputError } from '../core/errors.js';

export { apiStatus, statusOf, wrapKubeError, type RbacRule } from '../core/kube-errors.js';

/**
 * The given kubeconfig file; without one, what kubectl would use: $KUBECONFIG,
 * ~/.kube/config, else the pod's service account (in-cluster).
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else kc.loadFromDefault();
  } catch (err) {
    throw new InputError('KUBECONFIG_INVALID', `cannot load the kubeconfig ${path ?? process.env.KUBECONFIG ?? '(default)'}: ${(err as Error).message}`, {
      cause: err,
      hint: 'pass --kubeconfig, set KUBECONFIG, or run in a pod with a service account',
    });
  }
  if (!kc.getCurrentCluster()) {
    throw new InputError('KUBECONFIG_INVALID', `the kubeconfig ${path ?? '(default)'} has no current context with a cluster`, {
      hint: 'set current-context, e.g. kubectl config use-context <name>',
    });
  }
  return kc;
}
