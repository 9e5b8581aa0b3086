/** Every step capflow ships, by id: the CLI, the image and the runner use this list. */
import type { Executor } from '../src/core/executor.js';
import { eksControlPlane } from './eks-control-plane.js';
import { eksNodeGroups } from './eks-node-groups.js';
import { installAddonsStep } from './install-addons.js';
import { joinWorkers } from './join-workers.js';
import { kubeadmInit } from './kubeadm-init.js';
import { launchNodes } from './launch-nodes.js';
import { prepareHosts } from './prepare-hosts.js';
import { provisionVpc } from './provision-vpc.js';
import { validateSpec } from './validate-spec.js';

export const executors: readonly Executor[] = [validateSpec, provisionVpc, eksControlPlane, eksNodeGroups, prepareHosts, kubeadmInit, launchNodes, joinWorkers, installAddonsStep];
