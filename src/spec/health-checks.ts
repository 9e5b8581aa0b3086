/**
 * MachineHealthChecks (cluster.x-k8s.io/v1beta1) as Cluster API defines them, read into rules the
 * steps act on: which machine groups a check selects (by the labels Cluster API gives Machines),
 * its unhealthy Node conditions with their timeouts, nodeStartupTimeout (default 10m, 0 turns it
 * off) and the remediation limit (unhealthyRange, which takes precedence, else maxUnhealthy:
 * default 100%, a percentage of the selected machines rounded down). Validation (checks.ts) reports
 * what Cluster API's webhook would refuse at file:line; launch-nodes judges machines by the rules
 * (src/aws/machine-health.ts). The v1beta2 shape (Cluster API v1.11: checks.*, remediation.triggerIf.*)
 * is read too, into the same rules.
 */
import { FieldProblems } from './locations.js';
import type { ClusterModel, LabelSelector, MachineHealthCheck } from './model.js';
import { isRecord } from './paths.js';
import { selects } from './references.js';
import type { PathSegment } from './yaml-source.js';

/** Cluster API's default nodeStartupTimeout, and the least its webhook takes (other than 0). */
export const DEFAULT_NODE_STARTUP_TIMEOUT_MS = 10 * 60_000;
export const MIN_NODE_STARTUP_TIMEOUT_MS = 30_000;

export const CLUSTER_NAME_LABEL = 'cluster.x-k8s.io/cluster-name';
export const DEPLOYMENT_NAME_LABEL = 'cluster.x-k8s.io/deployment-name';
export const CONTROL_PLANE_LABEL = 'cluster.x-k8s.io/control-plane';
export const CONTROL_PLANE_NAME_LABEL = 'cluster.x-k8s.io/control-plane-name';
export const POOL_NAME_LABEL = 'cluster.x-k8s.io/pool-name';

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, μs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go duration (metav1.Duration: `5m`, `1h30m`, `300s`, `1.5h`, `0`) in ms; undefined when Go would not parse it. */
export function parseGoDuration(text: unknown): number | undefined {
  if (typeof text !== 'string') return undefined;
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    sign = s.startsWith('-') ? -1 : 1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') return undefined;
  const re = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    at = re.lastIndex;
  }
  return at === s.length && at > 0 ? sign * total : undefined;
}

/** A duration as people read it: `45s`, `6m12s`, `1h2m`. */
export function formatDurationMs(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${m > 0 ? `${m}m` : ''}${s > 0 ? `${s}s` : ''}`;
  if (m > 0) return `${m}m${s > 0 ? `${s}s` : ''}`;
  return ms > 0 && ms < 1000 ? `${ms}ms` : `${s}s`;
}

/** The remediation limit: unhealthyRange `[min-max]`, or maxUnhealthy (an int, or a percentage of the selected machines). */
export type RemediationLimit = ({ kind: 'range'; min: number; max: number; text: string } | { kind: 'max'; value: number | string }) & {
  /** Its field's name for messages (default maxUnhealthy / unhealthyRange; v1beta2: unhealthyLessThanOrEqualTo / unhealthyInRange). */
  field?: string;
};

/** maxUnhealthy for `expected` selected machines: percentages round down (intstr.GetScaledValueFromIntOrPercent, roundUp false). */
export function maxUnhealthyOf(value: number | string, expected: number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  const m = /^(\d+)%$/.exec(value);
  return m ? Math.floor((Number(m[1]) * expected) / 100) : undefined;
}

/** `[3-5]` as Cluster API parses it (max at least min); undefined otherwise. */
export function parseUnhealthyRange(text: unknown): { min: number; max: number } | undefined {
  if (typeof text !== 'string') return undefined;
  const m = /^\[(\d+)-(\d+)\]$/.exec(text);
  if (!m) return undefined;
  const min = Number(m[1]);
  const max = Number(m[2]);
  return max >= min ? { min, max } : undefined;
}

/**
 * Whether remediation may go on with `unhealthy` of `expected` machines not healthy: within
 * unhealthyRange, else at most maxUnhealthy. `why` says why not, in the words the plan uses.
 */
export function remediationAllowed(limit: RemediationLimit, unhealthy: number, expected: number): { allowed: boolean; why?: string } {
  const of = `${unhealthy} of ${expected} machine${expected === 1 ? '' : 's'} unhealthy`;
  if (limit.kind === 'range') {
    if (unhealthy >= limit.min && unhealthy <= limit.max) return { allowed: true };
    return { allowed: false, why: `${of}, outside ${limit.field ?? 'unhealthyRange'} ${limit.text}` };
  }
  const max = maxUnhealthyOf(limit.value, expected) ?? 0;
  if (unhealthy <= max) return { allowed: true };
  const shown = typeof limit.value === 'string' ? `${limit.value} (${max} of ${expected})` : String(limit.value);
  return { allowed: false, why: `${of}, more than ${limit.field ?? 'maxUnhealthy'} ${shown}` };
}

export interface UnhealthyCondition {
  type: string;
  status: string;
  timeoutMs: number;
  /** As written, for messages: `5m`. */
  timeout: string;
  /** Its index in the list. */
  index: number;
  /** The entry: spec.unhealthyConditions[i] (v1beta1) or spec.checks.unhealthyNodeConditions[i] (v1beta2). */
  path: PathSegment[];
}

/** A machine group a check may select: the control plane, a MachineDeployment or a MachinePool (never remediated, as upstream). */
export interface GroupLabels {
  /** launch-nodes' group name: `control-plane` or the MachineDeployment's (MachinePool's) name. */
  group: string;
  kind: 'control-plane' | 'deployment' | 'pool';
  labels: Record<string, string>;
}

export interface HealthCheckRule {
  name: string;
  check: MachineHealthCheck;
  conditions: UnhealthyCondition[];
  /** 0: off. */
  nodeStartupTimeoutMs: number;
  nodeStartupTimeout: string;
  startupPath: PathSegment[];
  limit: RemediationLimit;
  /** The limit's field (maxUnhealthy, unhealthyRange, or v1beta2's remediation.triggerIf fields). */
  limitPath: PathSegment[];
  /** The groups it selects (by their Machines' labels), control plane and MachineDeployments. */
  groups: GroupLabels[];
}

const labelsAt = (root: unknown, path: string[]): Record<string, string> => {
  let node = root;
  for (const seg of path) node = isRecord(node) ? node[seg] : undefined;
  return isRecord(node) ? Object.fromEntries(Object.entries(node).filter((e): e is [string, string] => typeof e[1] === 'string')) : {};
};

/** The labels Cluster API puts on each group's Machines (its template's labels, then its own). */
export function machineGroupLabels(model: ClusterModel): GroupLabels[] {
  const cluster = { [CLUSTER_NAME_LABEL]: model.name };
  const out: GroupLabels[] = [];
  if (model.controlPlane.kind === 'KubeadmControlPlane') {
    const kcp = model.controlPlane;
    out.push({
      group: 'control-plane',
      kind: 'control-plane',
      labels: { ...labelsAt(kcp.spec, ['machineTemplate', 'metadata', 'labels']), ...cluster, [CONTROL_PLANE_LABEL]: '', [CONTROL_PLANE_NAME_LABEL]: kcp.metadata.name },
    });
  }
  for (const md of model.machineDeployments) {
    const d = md.deployment;
    out.push({
      group: d.metadata.name,
      kind: 'deployment',
      labels: { ...labelsAt(d.spec, ['selector', 'matchLabels']), ...labelsAt(d.spec, ['template', 'metadata', 'labels']), ...cluster, [DEPLOYMENT_NAME_LABEL]: d.metadata.name },
    });
  }
  for (const mp of model.machinePools) {
    const p = mp.pool;
    out.push({ group: p.metadata.name, kind: 'pool', labels: { ...labelsAt(p.spec, ['template', 'metadata', 'labels']), ...cluster, [POOL_NAME_LABEL]: p.metadata.name } });
  }
  return out;
}

/**
 * The model's MachineHealthChecks as rules, each problem (what Cluster API's webhook refuses, and
 * what capflow does not do) added to `p` at its field: bad durations, nodeStartupTimeout under 30s,
 * maxUnhealthy that is neither an int nor a percentage, an unhealthyRange whose max is below its
 * min, an empty selector, an external remediationTemplate; a selector that selects no machine group,
 * or only MachinePools, is a warning.
 */
export function healthCheckRules(model: ClusterModel, p: FieldProblems = new FieldProblems(model)): HealthCheckRule[] {
  const groups = machineGroupLabels(model);
  const rules: HealthCheckRule[] = [];
  for (const check of model.healthChecks) {
    const doc = { kind: check.kind, name: check.metadata.name };
    const f = fieldsOf(check);
    const before = p.list.length;
    const errorsAdded = () => p.list.slice(before).some((x) => x.severity === 'error');

    if (f.remediationTemplate.value !== undefined) {
      const name = String(f.remediationTemplate.path.at(-1));
      p.add(doc, f.remediationTemplate.path, 'unsupported-feature', `external remediation (${name}) is not supported: capflow remediates by replacing the machine`, `remove ${name}`);
    }
    const conditions: UnhealthyCondition[] = [];
    f.conditions.forEach((c, index) => {
      if (c.timeoutMs === undefined || c.timeoutMs < 0) {
        p.add(doc, c.timeoutPath, 'invalid-value', `timeout must be a non-negative duration such as 5m or 300s, not ${JSON.stringify(c.timeout)}`);
        return;
      }
      if (!['True', 'False', 'Unknown'].includes(c.status)) {
        p.add(doc, [...c.path, 'status'], 'invalid-value', `status must be True, False or Unknown, not ${JSON.stringify(c.status)}`);
        return;
      }
      conditions.push({ type: c.type, status: c.status, timeoutMs: c.timeoutMs, timeout: String(c.timeout), index, path: c.path });
    });

    let nodeStartupTimeoutMs = f.startup.ms;
    const startupText = f.startup.text ?? '10m';
    if (f.startup.text === undefined) nodeStartupTimeoutMs = DEFAULT_NODE_STARTUP_TIMEOUT_MS;
    else if (nodeStartupTimeoutMs === undefined || nodeStartupTimeoutMs < 0) {
      p.add(doc, f.startup.path, 'invalid-value', `nodeStartupTimeout must be a duration such as 10m, not ${JSON.stringify(f.startup.text)}`);
      nodeStartupTimeoutMs = DEFAULT_NODE_STARTUP_TIMEOUT_MS;
    } else if (nodeStartupTimeoutMs > 0 && nodeStartupTimeoutMs < MIN_NODE_STARTUP_TIMEOUT_MS) {
      p.add(doc, f.startup.path, 'invalid-value', `nodeStartupTimeout must be at least 30s (or 0 to turn it off), not ${f.startup.text}`);
    }

    const maxName = String(f.max.path.at(-1));
    const rangeName = String(f.range.path.at(-1));
    let limit: RemediationLimit = { kind: 'max', value: '100%', field: maxName };
    let limitPath = f.max.path;
    const max = f.max.value as number | string | undefined;
    if (max !== undefined) {
      if (maxUnhealthyOf(max, 0) === undefined) {
        p.add(doc, f.max.path, 'invalid-value', `${maxName} must be a non-negative integer or a percentage such as 40%, not ${JSON.stringify(max)}`);
      } else limit = { kind: 'max', value: max, field: maxName };
    }
    if (f.range.value !== undefined) {
      const range = parseUnhealthyRange(f.range.value);
      if (!range) p.add(doc, f.range.path, 'invalid-value', `${rangeName} must be [min-max] with max at least min, such as [1-3], not ${JSON.stringify(f.range.value)}`);
      else {
        limit = { kind: 'range', ...range, text: f.range.value as string, field: rangeName };
        limitPath = f.range.path;
        if (max !== undefined) p.add(doc, f.max.path, 'ignored-field', `${maxName} is ignored: ${rangeName} takes precedence (as in Cluster API)`, 'keep one of the two', 'warning');
      }
    }

    const selector: LabelSelector | undefined = isRecord(check.spec?.selector) ? check.spec.selector : undefined;
    let selected: GroupLabels[] = [];
    if (!selector || (Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0)) {
      p.add(doc, ['spec', 'selector'], 'invalid-value', 'selector must not be empty (Cluster API refuses a check of every machine)', `select a group, e.g. matchLabels: {${DEPLOYMENT_NAME_LABEL}: <MachineDeployment name>}`);
    } else {
      const matched = groups.filter((g) => selects(selector, g.labels));
      selected = matched.filter((g) => g.kind !== 'pool');
      if (matched.length === 0) {
        p.add(doc, ['spec', 'selector'], 'unused', `selector selects no machine of cluster ${model.name}: nothing is checked`, `machines carry ${DEPLOYMENT_NAME_LABEL}: <MachineDeployment>, ${CONTROL_PLANE_LABEL}: "" and their template's labels`, 'warning');
      } else if (selected.length === 0) {
        p.add(doc, ['spec', 'selector'], 'unsupported-feature', 'selector selects only MachinePool machines, which a MachineHealthCheck does not remediate (as in Cluster API): nothing is checked', undefined, 'warning');
      }
    }
    if (errorsAdded()) continue;
    rules.push({ name: check.metadata.name, check, conditions, nodeStartupTimeoutMs, nodeStartupTimeout: startupText, startupPath: f.startup.path, limit, limitPath, groups: selected });
  }
  return rules;
}

interface CheckFields {
  remediationTemplate: { value: unknown; path: PathSegment[] };
  conditions: Array<{ type: string; status: string; timeout: unknown; timeoutMs: number | undefined; path: PathSegment[]; timeoutPath: PathSegment[] }>;
  /** text: as written (`10m`, `600s`), undefined when unset. */
  startup: { text: string | undefined; ms: number | undefined; path: PathSegment[] };
  max: { value: unknown; path: PathSegment[] };
  range: { value: unknown; path: PathSegment[] };
}

/**
 * The fields of either shape: v1beta1 (unhealthyConditions with Go durations, maxUnhealthy,
 * unhealthyRange, remediationTemplate) or v1beta2, Cluster API v1.11 (checks.unhealthyNodeConditions
 * with timeoutSeconds, checks.nodeStartupTimeoutSeconds, remediation.triggerIf.unhealthyLessThanOrEqualTo
 * and unhealthyInRange, remediation.templateRef), each with its path for file:line.
 */
function fieldsOf(check: MachineHealthCheck): CheckFields {
  const spec: Record<string, unknown> = isRecord(check.spec) ? check.spec : {};
  const rec = (v: unknown): Record<string, unknown> => (isRecord(v) ? v : {});
  const seconds = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) ? v * 1000 : undefined);
  if (check.apiVersion.endsWith('/v1beta2')) {
    const checks = rec(spec.checks);
    const remediation = rec(spec.remediation);
    const trigger = rec(remediation.triggerIf);
    const list = Array.isArray(checks.unhealthyNodeConditions) ? (checks.unhealthyNodeConditions as unknown[]) : [];
    const startup = checks.nodeStartupTimeoutSeconds;
    return {
      remediationTemplate: { value: remediation.templateRef, path: ['spec', 'remediation', 'templateRef'] },
      conditions: list.map((c, i) => {
        const item = rec(c);
        const path: PathSegment[] = ['spec', 'checks', 'unhealthyNodeConditions', i];
        return { type: String(item.type), status: String(item.status), timeout: typeof item.timeoutSeconds === 'number' ? `${item.timeoutSeconds}s` : item.timeoutSeconds, timeoutMs: seconds(item.timeoutSeconds), path, timeoutPath: [...path, 'timeoutSeconds'] };
      }),
      startup: { text: startup === undefined ? undefined : typeof startup === 'number' ? `${startup}s` : JSON.stringify(startup), ms: seconds(startup), path: ['spec', 'checks', 'nodeStartupTimeoutSeconds'] },
      max: { value: trigger.unhealthyLessThanOrEqualTo, path: ['spec', 'remediation', 'triggerIf', 'unhealthyLessThanOrEqualTo'] },
      range: { value: trigger.unhealthyInRange, path: ['spec', 'remediation', 'triggerIf', 'unhealthyInRange'] },
    };
  }
  const list = Array.isArray(spec.unhealthyConditions) ? (spec.unhealthyConditions as unknown[]) : [];
  return {
    remediationTemplate: { value: spec.remediationTemplate, path: ['spec', 'remediationTemplate'] },
    conditions: list.map((c, i) => {
      const item = rec(c);
      const path: PathSegment[] = ['spec', 'unhealthyConditions', i];
      return { type: String(item.type), status: String(item.status), timeout: item.timeout, timeoutMs: parseGoDuration(item.timeout), path, timeoutPath: [...path, 'timeout'] };
    }),
    startup: { text: typeof spec.nodeStartupTimeout === 'string' ? spec.nodeStartupTimeout : undefined, ms: parseGoDuration(spec.nodeStartupTimeout), path: ['spec', 'nodeStartupTimeout'] },
    max: { value: spec.maxUnhealthy, path: ['spec', 'maxUnhealthy'] },
    range: { value: spec.unhealthyRange, path: ['spec', 'unhealthyRange'] },
  };
}
