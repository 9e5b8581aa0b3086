/**
 * AWS: one file per resource family (reconcile and delete), composed by
 * network.ts. Executors import from here.
 */
export { makeScope, DEFAULT_TIMEOUTS, type ClusterScope } from './scope.js';
export { Plan, type PlanAction, type PlanEntry } from './plan.js';
export { reconcileNetwork, deleteNetwork, type NetworkResult, type ReconcileNetworkOptions, type DeleteNetworkOptions, type DeleteNetworkResult } from './network.js';
export { VOLUME_POLICIES, type VolumePolicy, type LeftResource } from './volumes.js';
export { networkSpecOf, checkNetworkSpec, NAT_GATEWAYS_ANNOTATION, type NetworkSpec, type NatMode } from '../spec/index.js';
export { defaultLayout, splitCidr, overlaps, contains, parseCidr } from '../core/cidr.js';
