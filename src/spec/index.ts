/**
 * Cluster specs: a folder of Cluster API shaped multi-document YAML becomes
 * one typed, normalized ClusterModel, validated against the real CRD schemas,
 * with every problem reported as file:line:column.
 */
export { loadClusterSpec, validateClusterSpec, type LoadOptions, type ValidationResult } from './loader.js';
export { DEFAULT_SPEC_LIMITS, type SpecLimits } from './limits.js';
export { formatProblem, isSpecInvalidError, printable, SpecInvalidError, type ProblemCode, type Severity, type SpecProblem } from './problems.js';
export { specHash, specHashWithInputs, canonicalJson } from './hash.js';
export { describePause, PAUSED_ANNOTATION, pauseOf, pausedField, withoutPause, type PauseSource } from './pause.js';
export { fieldLocation, FieldProblems, type FieldLocation } from './locations.js';
export { formatPath } from './paths.js';
export type { PathSegment } from './yaml-source.js';
export { FOLDER_VARS_FILE, isCredentialName, parseVarsFile, parseVarsText, varsFileWithin, type VariableOptions } from './variables.js';
export { checkHostKey, checkHostKeyFingerprint, checkPinnedHostKey, HOST_KEY_FINGERPRINT, labelSelectorMatches, selects } from './references.js';
export type { ValidatorMode } from './validators.js';
export type * from './model.js';
export { KUBE_VIP_DEFAULT_IMAGE, STAGE_ANNOTATION } from './model.js';
export { REPLICAS_MANAGED_BY } from './eks-checks.js';
export {
  checkNetworkSpec,
  networkOwner,
  networkSpecOf,
  NetworkProblems,
  DEFAULT_AZ_LIMIT,
  DEFAULT_VPC_CIDR,
  NAT_GATEWAYS_ANNOTATION,
  SUBNETS,
  VPC,
  type ListedSubnet,
  type NatMode,
  type NetworkOwnerKind,
  type NetworkSpec,
} from './aws-network.js';
export { DELETE_POLICIES, resolveIntOrPercent, rolloutLimit } from './rollout.js';
export {
  formatDurationMs,
  healthCheckRules,
  machineGroupLabels,
  maxUnhealthyOf,
  parseGoDuration,
  parseUnhealthyRange,
  remediationAllowed,
  type GroupLabels,
  type HealthCheckRule,
  type RemediationLimit,
  type UnhealthyCondition,
} from './health-checks.js';
