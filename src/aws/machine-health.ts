/**
 * MachineHealthCheck remediation, judged as Cluster API's MachineHealthCheck controller judges: a
 * selected machine is unhealthy when its Node has had a condition of an unhealthyConditions type
 * and status for longer than its timeout (from the condition's lastTransitionTime), or when it has
 * no Node longer than nodeStartupTimeout after its launch (which also covers a Node that went away).
 * A machine with its Node and no matching condition is healthy; the rest (a condition matching but
 * not for long enough, no Node yet) are neither, and count against the limit as upstream counts
 * (expected - currentHealthy). Over the limit (maxUnhealthy, or outside unhealthyRange) nothing of
 * that check is remediated, and the plan says so.
 *
 * launch-nodes replaces what this returns: drained (PodDisruptionBudgets honoured), terminated and
 * launched anew by the rounds of machines.ts. Control plane machines are reported, not replaced:
 * Cluster API leaves their remediation to the KubeadmControlPlane (one at a time, etcd quorum
 * checked), which capflow does not implement; a spec change replaces them through the upgrade path.
 * Pure, unit-tested.
 */
import { formatDurationMs, remediationAllowed, type HealthCheckRule, type PathSegment } from '../spec/index.js';
import { LIVE_STATES, type Machine } from './instances.js';
import type { SpecRef } from './plan.js';

export interface NodeHealth {
  conditions: ReadonlyArray<{ type: string; status: string; lastTransitionTime?: string | Date }>;
}

export interface Unhealthy {
  machine: Machine;
  /** `Ready=Unknown for 6m12s > 5m (MachineHealthCheck boot-mhc, clusters/boot/mhc.yaml:9)` */
  reason: string;
  check: string;
  spec: SpecRef;
}

export interface HealthNote {
  check: string;
  detail: string;
  spec: SpecRef;
}

export interface HealthVerdict {
  /** Machines to replace now (the checks within their limit; workers only). */
  replace: Unhealthy[];
  /** Why a check remediates nothing (over its limit), and unhealthy control planes left alone. */
  notes: HealthNote[];
}

/** Where a spec field is written (`clusters/boot/mhc.yaml:9`), for messages. */
export type Locate = (ref: SpecRef) => string | undefined;

type Judgement = { state: 'healthy' } | { state: 'pending' } | { state: 'unhealthy'; reason: string; path: PathSegment[] };

function judge(rule: HealthCheckRule, m: Machine, node: NodeHealth | undefined, now: number): Judgement {
  if (!node) {
    if (rule.nodeStartupTimeoutMs === 0) return { state: 'pending' };
    const launched = Date.parse(m.launchTime);
    const since = Number.isNaN(launched) ? now : launched;
    if (now - since > rule.nodeStartupTimeoutMs) {
      return { state: 'unhealthy', reason: `no Node for ${formatDurationMs(now - since)} > ${rule.nodeStartupTimeout} (nodeStartupTimeout)`, path: rule.startupPath };
    }
    return { state: 'pending' };
  }
  let pending = false;
  for (const c of rule.conditions) {
    const seen = node.conditions.find((x) => x.type === c.type && x.status === c.status);
    if (!seen) continue;
    const t = seen.lastTransitionTime ? new Date(seen.lastTransitionTime).getTime() : now;
    const elapsed = now - t;
    if (elapsed > c.timeoutMs) return { state: 'unhealthy', reason: `${c.type}=${c.status} for ${formatDurationMs(elapsed)} > ${c.timeout}`, path: c.path };
    pending = true;
  }
  return pending ? { state: 'pending' } : { state: 'healthy' };
}

/**
 * The verdict of every check on the live machines (by group) and their Nodes (by the machine's
 * private DNS name, the Node's name). A machine two checks find unhealthy is replaced once.
 */
export function judgeHealth(rules: readonly HealthCheckRule[], machines: readonly Machine[], nodes: ReadonlyMap<string, NodeHealth>, now: number, locate: Locate = () => undefined): HealthVerdict {
  const replace = new Map<string, Unhealthy>();
  const notes: HealthNote[] = [];
  for (const rule of rules) {
    const ref = (path: PathSegment[]): SpecRef => ({ kind: 'MachineHealthCheck', name: rule.name, path });
    const at = (path: PathSegment[]) => {
      const where = locate(ref(path));
      return `MachineHealthCheck ${rule.name}${where ? `, ${where}` : ''}`;
    };
    const groups = new Set(rule.groups.map((g) => g.group));
    // a stopped instance is judged too: its Node goes Unknown, as upstream's would
    const targets = machines.filter((m) => groups.has(m.group) && LIVE_STATES.includes(m.state));
    const unhealthy: Unhealthy[] = [];
    let healthy = 0;
    for (const m of targets) {
      const j = judge(rule, m, m.privateDns ? nodes.get(m.privateDns) : undefined, now);
      if (j.state === 'healthy') healthy += 1;
      else if (j.state === 'unhealthy') unhealthy.push({ machine: m, reason: `${j.reason} (${at(j.path)})`, check: rule.name, spec: ref(j.path) });
    }
    if (unhealthy.length === 0) continue;
    const limitPath = rule.limitPath;
    const { allowed, why } = remediationAllowed(rule.limit, targets.length - healthy, targets.length);
    if (!allowed) {
      notes.push({ check: rule.name, detail: `remediation stopped: ${why} (${at(limitPath)})`, spec: ref(limitPath) });
      continue;
    }
    for (const u of unhealthy) {
      if (u.machine.role === 'control-plane') {
        notes.push({ check: rule.name, detail: `${u.machine.name} (${u.machine.privateDns || u.machine.instanceId}) is unhealthy, not replaced: control plane remediation is not supported, replace it by a spec change: ${u.reason}`, spec: u.spec });
        continue;
      }
      if (!replace.has(u.machine.instanceId)) replace.set(u.machine.instanceId, u);
    }
  }
  return { replace: [...replace.values()], notes };
}

/** `replace boot-md-0-ab12-0/i-0abc (ip-10-0-1-5.ec2.internal): Ready=Unknown for 6m12s > 5m (MachineHealthCheck x, file:line)` */
export function describeReplacement(u: Unhealthy): string {
  return `replace ${u.machine.name}/${u.machine.instanceId} (${u.machine.privateDns || 'no Node'}): ${u.reason}`;
}
