/**
 * Each step's module by id, imported only when that step runs: `capflow step <id>` (every Argo step)
 * loads one executor and what it uses, not the AWS SDK and the Kubernetes client of all of them.
 * test/unit/executors-lazy.test.ts checks that this map and executors/index.ts list the same steps.
 */
import type { Executor } from '../src/core/executor.js';

export const executorModules: Readonly<Record<string, () => Promise<Executor>>> = {
  'validate-spec': async () => (await import('./validate-spec.js')).validateSpec,
  'provision-vpc': async () => (await import('./provision-vpc.js')).provisionVpc,
  'eks-control-plane': async () => (await import('./eks-control-plane.js')).eksControlPlane,
  'eks-node-groups': async () => (await import('./eks-node-groups.js')).eksNodeGroups,
  'prepare-hosts': async () => (await import('./prepare-hosts.js')).prepareHosts,
  'kubeadm-init': async () => (await import('./kubeadm-init.js')).kubeadmInit,
  'launch-nodes': async () => (await import('./launch-nodes.js')).launchNodes,
  'join-workers': async () => (await import('./join-workers.js')).joinWorkers,
  'install-addons': async () => (await import('./install-addons.js')).installAddonsStep,
};
