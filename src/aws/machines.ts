/**
 * Machines of a self-managed cluster: the KubeadmControlPlane's machines and every
 * MachineDeployment's, as EC2 instances, reconciled in rounds within one run:
 *
 *   1. one DescribeInstances (filtered by the cluster's ownership tag) sees every machine;
 *   2. per group: surplus and outdated machines are drained (the beforeRemove hook) and terminated
 *      as far as maxUnavailable allows, then missing machines are launched as far as maxSurge allows
 *      (one RunInstances per group and AZ);
 *   3. control plane machines that are running are registered with the API load balancer's target
 *      group (and deregistered before they are terminated);
 *   4. while any group is not done (machines pending, old ones left), wait and repeat.
 *
 * "Healthy" is the instance state `running`: the stand-in for a Ready node until join-workers can
 * tell. Everything the rounds decide is derived from AWS (tags), so a run killed at any point resumes.
 */
import { InputError, TransientError } from '../core/errors.js';
import { FieldProblems, rolloutLimit, type AWSMachineSpec, type ClusterModel } from '../spec/index.js';
import { resolveImageId } from './images.js';
import {
  describeMachines,
  deregisterTargets,
  launchBatch,
  LIVE_STATES,
  machineName,
  registeredTargets,
  registerTargets,
  terminateInstances,
  type Machine,
  type MachineRole,
} from './instances.js';
import { instanceParams, templateHash } from './machine-params.js';
import type { SpecRef } from './plan.js';
import type { ClusterScope } from './scope.js';
import { createHash } from 'node:crypto';
import type { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { describeReplacement, type HealthVerdict, type Unhealthy } from './machine-health.js';
import { deleteMachinePools, reconcileMachinePools, type MachinePoolsInput, type PoolResult, type UserDataFn } from './machine-pools.js';

export type DeletePolicy = 'Random' | 'Newest' | 'Oldest';

/** What one group (the control plane or a MachineDeployment) should be. */
export interface MachineGroup {
  /** The group: `control-plane` or the MachineDeployment's name (also the bootstrap secret key). */
  name: string;
  /** Machine name prefix: `<cluster>-control-plane` or the MachineDeployment's name. */
  owner: string;
  role: MachineRole;
  replicas: number;
  /** AZs the replicas are spread over, in order. */
  failureDomains: string[];
  spec: AWSMachineSpec;
  templateName: string;
  kubernetesVersion: string;
  hash: string;
  maxSurge: number;
  maxUnavailable: number;
  deletePolicy: DeletePolicy;
  securityGroupIds: string[];
  registerWithLoadBalancer: boolean;
  /**
   * Launch one machine at a time, each once the ones before it are available (Node Ready): a stacked
   * etcd member joins only a healthy cluster. The control plane's.
   */
  oneAtATime?: boolean;
  /** The spec fields behind the group: its replica count and its machine template (plan entries name them). */
  fields?: { replicas: SpecRef; template: SpecRef };
}

export interface MachineNetwork {
  /** Private subnet id by AZ. */
  subnetsByAz: Record<string, string>;
  targetGroupArn?: string;
}

export interface ReconcileMachinesOptions {
  groups: MachineGroup[];
  network: MachineNetwork;
  /** Base64 user data of a group (called only when launching). */
  userData: (group: string) => Promise<string>;
  /** Called before a machine is terminated (the drain hook). */
  beforeRemove?: (machine: Machine) => Promise<void>;
  /**
   * Instance ids whose Node is Ready, asked once a round. Given, a machine counts as available only
   * when Ready (rolling updates wait for new Nodes, as Cluster API's do); not given, when running.
   * Undefined from it: readiness unknown this round (the API not answering), so nothing is decided.
   */
  readyMachines?: (live: readonly Machine[]) => Promise<ReadonlySet<string> | undefined>;
  /**
   * MachineHealthCheck remediation (machine-health.ts): asked once a round, the machines to replace
   * (drained, terminated, launched anew) and why a check replaces nothing; undefined when the Nodes
   * cannot be read now (nothing is replaced this round).
   */
  health?: (live: readonly Machine[]) => Promise<HealthVerdict | undefined>;
  /** Leave machines of groups not in `groups` alone (a step that manages only some groups). */
  keepOtherGroups?: boolean;
  /** Delay between rounds while machines are pending. Default 2 s. */
  pollMs?: number;
  /** AWSCluster.spec.sshKeyName, for templates that name no key. */
  sshKeyName?: string;
}

const NEW_INSTANCE = '(new instance)';

// --- desired state from the spec ------------------------------------------------------------

interface VpcInputs {
  subnets: Array<{ id: string; az: string; public: boolean }>;
  securityGroupIds: Record<string, string>;
  targetGroupArn?: string;
}

/** The cluster's failure domains: the AZs with private subnets, in order. */
export function clusterFailureDomains(vpc: VpcInputs): string[] {
  const out: string[] = [];
  for (const s of vpc.subnets) if (!s.public && !out.includes(s.az)) out.push(s.az);
  return out;
}

function awsSpecOf(t: { kind: string; spec: unknown } | undefined): AWSMachineSpec | undefined {
  if (t?.kind !== 'AWSMachineTemplate') return undefined;
  return (t.spec as { template: { spec: AWSMachineSpec } }).template.spec;
}

/**
 * The control plane and MachineDeployment groups of `model`. Validation has checked what needs no
 * cloud (instance types, rolling update parameters); here failure domains are checked against the
 * cluster's zones (from provision-vpc), before any AWS call, thrown as SpecInvalidError with
 * file:line:column.
 */
export function desiredGroups(model: ClusterModel, vpc: VpcInputs): MachineGroup[] {
  const problems = new FieldProblems(model);
  const azs = clusterFailureDomains(vpc);
  const groups: MachineGroup[] = [];
  const sg = vpc.securityGroupIds;

  if (model.controlPlane.kind === 'KubeadmControlPlane') {
    const kcp = model.controlPlane;
    const tpl = model.controlPlaneMachineTemplate;
    const spec = awsSpecOf(tpl);
    if (!tpl || !spec) throw new InputError('CONTROL_PLANE_TEMPLATE', `KubeadmControlPlane/${kcp.metadata.name} needs an AWSMachineTemplate`);
    const version = kcp.spec.version;
    groups.push({
      name: 'control-plane',
      owner: `${model.name}-control-plane`,
      role: 'control-plane',
      replicas: kcp.spec.replicas ?? 1,
      failureDomains: azs,
      spec,
      templateName: tpl.metadata.name,
      kubernetesVersion: version,
      hash: templateHash(spec, { version }),
      maxSurge: 1,
      maxUnavailable: 0,
      deletePolicy: 'Oldest',
      securityGroupIds: [sg.controlplane, sg.node].filter((x): x is string => !!x),
      registerWithLoadBalancer: true,
      fields: { replicas: { kind: kcp.kind, name: kcp.metadata.name, path: ['spec', 'replicas'] }, template: { kind: tpl.kind, name: tpl.metadata.name, path: ['spec', 'template', 'spec'] } },
    });
  }

  for (const md of model.machineDeployments) {
    const d = md.deployment;
    const doc = { kind: 'MachineDeployment', name: d.metadata.name };
    const spec = awsSpecOf(md.machineTemplate);
    if (!spec) continue;
    const replicas = d.spec.replicas ?? 1;
    const fd = d.spec.template.spec.failureDomain;
    if (fd !== undefined && !azs.includes(fd)) {
      problems.add(doc, ['spec', 'template', 'spec', 'failureDomain'], 'invalid-value', `failure domain ${fd} is not one of the cluster's (${azs.join(', ')})`, 'use an availability zone where the AWSCluster has a private subnet');
    }
    const strategy = (d.spec.strategy ?? {}) as { rollingUpdate?: { maxSurge?: unknown; maxUnavailable?: unknown; deletePolicy?: unknown }; type?: string };
    const ru = strategy.rollingUpdate ?? {};
    // Validation refused rolling update parameters that cannot work (src/spec/checks.ts).
    const surge = rolloutLimit(ru.maxSurge, replicas, 'surge');
    const unavailable = rolloutLimit(ru.maxUnavailable, replicas, 'unavailable');
    const policy = (ru.deletePolicy ?? 'Random') as string;
    const version = d.spec.template.spec.version ?? model.kubernetesVersion;
    groups.push({
      name: d.metadata.name,
      owner: d.metadata.name,
      role: 'node',
      replicas,
      failureDomains: fd !== undefined ? [fd] : azs,
      spec,
      templateName: md.machineTemplate.metadata.name,
      kubernetesVersion: version,
      hash: templateHash(spec, { version }),
      maxSurge: surge ?? 1,
      maxUnavailable: unavailable ?? 0,
      deletePolicy: policy as DeletePolicy,
      securityGroupIds: [sg.node].filter((x): x is string => !!x),
      registerWithLoadBalancer: false,
      fields: { replicas: { ...doc, path: ['spec', 'replicas'] }, template: { kind: md.machineTemplate.kind, name: md.machineTemplate.metadata.name, path: ['spec', 'template', 'spec'] } },
    });
  }
  problems.throwIfAny();
  return groups;
}

// --- decisions of one round (pure, unit-tested) -----------------------------------------------

/** Orders removal candidates by the delete policy (first = removed first). Random is seeded by the names. */
export function orderForRemoval(machines: readonly Machine[], policy: DeletePolicy): Machine[] {
  const byAge = (a: Machine, b: Machine) => a.launchTime.localeCompare(b.launchTime) || a.slot - b.slot;
  if (policy === 'Oldest') return [...machines].sort(byAge);
  if (policy === 'Newest') return [...machines].sort((a, b) => byAge(b, a));
  const seed = machines.map((m) => m.name).sort().join(',');
  const key = (m: Machine) => createHash('sha256').update(`${seed}/${m.name}`).digest('hex');
  return [...machines].sort((a, b) => key(a).localeCompare(key(b)) || a.name.localeCompare(b.name));
}

export interface RoundDecision {
  remove: Machine[];
  /** AZ of each machine to launch, in launch order. */
  launch: string[];
  /** Nothing more to do for this group once pending machines are running. */
  settled: boolean;
}

/** Spreads `count` new machines over `azs`, each to the AZ with the fewest (ties: AZ order). */
export function spread(azs: readonly string[], existing: readonly string[], count: number): string[] {
  const n = new Map(azs.map((az) => [az, existing.filter((e) => e === az).length]));
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    let best = azs[0]!;
    for (const az of azs) if (n.get(az)! < n.get(best)!) best = az;
    n.set(best, n.get(best)! + 1);
    out.push(best);
  }
  return out;
}

/**
 * One round of a group, Cluster API's rolling update arithmetic: old = machines of another template
 * hash (or outside the group's failure domains), current = of this hash. First remove: outdated
 * machines that are not running, then running ones as long as running - removed stays at least
 * replicas - maxUnavailable; surplus current machines by the delete policy. Then launch current
 * machines up to replicas, keeping old + current at most replicas + maxSurge.
 */
/** A machine of another template hash than its group's, or outside the group's failure domains. */
export function isOutdated(group: MachineGroup, m: Machine): boolean {
  return m.templateHash !== group.hash || !group.failureDomains.includes(m.az);
}

export function decideRound(group: MachineGroup, machines: readonly Machine[], ready?: ReadonlySet<string>): RoundDecision {
  const R = group.replicas;
  const isOld = (m: Machine) => isOutdated(group, m);
  const old = machines.filter(isOld);
  let current = machines.filter((m) => !isOld(m));
  const remove: Machine[] = [];
  const running = (m: Machine) => m.state === 'running' && (ready === undefined || ready.has(m.instanceId));
  let available = machines.filter(running).length;
  const minAvailable = R - group.maxUnavailable;

  // Surplus current machines (scale down): remove by policy, as many as exceed replicas.
  if (current.length > R) {
    const surplus = orderForRemoval(current, group.deletePolicy).slice(0, current.length - R);
    remove.push(...surplus);
    current = current.filter((m) => !surplus.includes(m));
    available -= surplus.filter(running).length;
  }
  // Outdated machines: the not-running ones go at once; running ones while availability allows.
  for (const m of orderForRemoval(old.filter((x) => !running(x)), group.deletePolicy)) remove.push(m);
  let oldLeft = old.filter(running);
  for (const m of orderForRemoval(oldLeft, group.deletePolicy)) {
    if (available - 1 < minAvailable) break;
    remove.push(m);
    available -= 1;
  }
  oldLeft = oldLeft.filter((m) => !remove.includes(m));
  const total = current.length + oldLeft.length;
  const room = oldLeft.length > 0 ? R + group.maxSurge - total : Infinity;
  // One at a time: the next only once every current machine is available.
  const waiting = current.some((m) => !running(m));
  const cap = group.oneAtATime ? (waiting ? 0 : 1) : Infinity;
  const launchCount = Math.max(0, Math.min(R - current.length, room, cap));
  const launch = spread(
    group.failureDomains,
    current.map((m) => m.az),
    launchCount,
  );
  const settled =
    oldLeft.length === 0 &&
    current.length === R &&
    remove.length === 0 &&
    launchCount === 0 &&
    !current.some((m) => m.state === 'pending') &&
    !(group.oneAtATime && waiting);
  return { remove, launch, settled };
}

/**
 * Workers roll after the control plane (a kubelet may not be newer than the API servers, and Cluster
 * API's topology upgrades in that order too): while control plane machines of another template or
 * version remain, a worker group replaces none of its own outdated machines; scaling goes on.
 */
export function holdWorkersWhileControlPlaneRolls<T extends { g: MachineGroup; d: RoundDecision }>(decisions: T[], live: readonly Machine[]): T[] {
  const outdated = (g: MachineGroup, m: Machine) => m.group === g.name && isOutdated(g, m);
  const rolling = decisions.some(({ g }) => g.role === 'control-plane' && live.some((m) => outdated(g, m)));
  if (!rolling) return decisions;
  return decisions.map((x) => {
    if (x.g.role === 'control-plane' || !live.some((m) => outdated(x.g, m))) return x;
    const current = live.filter((m) => m.group === x.g.name && !outdated(x.g, m)).length;
    // only what a scale-up of current machines would launch; no removal of the outdated ones
    const launch = x.d.launch.slice(0, Math.max(0, x.g.replicas - current - live.filter((m) => outdated(x.g, m)).length));
    return { ...x, d: { remove: x.d.remove.filter((m) => !outdated(x.g, m)), launch, settled: false } };
  });
}

/** The lowest `count` contiguous free slots (a batch's names are first..first+count-1). */
export function freeRange(used: ReadonlySet<number>, count: number): number {
  for (let first = 0; ; first++) {
    let ok = true;
    for (let i = first; i < first + count; i++) if (used.has(i)) ok = false;
    if (ok) return first;
  }
}

// --- the rounds ---------------------------------------------------------------------------

export function formatInventory(machines: readonly Machine[]): string {
  const rows = [
    ['NAME', 'INSTANCE', 'STATE', 'AZ', 'ROLE', 'GROUP', 'PRIVATE IP', 'HASH'],
    ...machines.map((m) => [m.name, m.instanceId, m.state, m.az, m.role, m.group, m.privateIp || '-', m.templateHash]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason as Error);
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

const defaultBeforeRemove = (scope: ClusterScope) => (m: Machine) => {
  scope.log.info('Draining skipped: join-workers implements the drain', { machine: m.name, instanceId: m.instanceId });
  return Promise.resolve();
};

/**
 * Makes the machines match `groups`, in rounds, and returns the final inventory. With dryRun: one
 * DescribeInstances, the plan of what the run would do to reach the spec (creates and deletes), no
 * mutating call.
 */
/**
 * The field behind removing or keeping a machine: its template when the machine is outdated (the
 * instance type itself when that is what differs), else the group's replica count.
 */
function fieldOf(g: MachineGroup, m: Machine): { spec?: SpecRef } {
  if (!g.fields) return {};
  if (m.templateHash === g.hash) return { spec: g.fields.replicas };
  const typeChanged = m.instanceType !== undefined && m.instanceType !== g.spec.instanceType;
  return { spec: typeChanged ? { ...g.fields.template, path: [...g.fields.template.path, 'instanceType'] } : g.fields.template };
}

/** A launch replaces outdated machines (the template's field) or fills the replica count (a machine terminated, a scale up). */
function launchFieldOf(g: MachineGroup, mine: readonly Machine[]): { spec?: SpecRef } {
  if (!g.fields) return {};
  return { spec: mine.some((m) => m.templateHash !== g.hash) ? g.fields.template : g.fields.replicas };
}

export async function reconcileMachines(scope: ClusterScope, opts: ReconcileMachinesOptions): Promise<Machine[]> {
  const beforeRemove = opts.beforeRemove ?? defaultBeforeRemove(scope);
  const pollMs = opts.pollMs ?? 2000;
  const deadline = Date.now() + scope.timeouts.instanceMs;
  const tg = opts.network.targetGroupArn || undefined;
  const groupNames = new Set(opts.groups.map((g) => g.name));
  let registered: Set<string> | undefined;
  const images = new Map<string, string>();

  for (let round = 0; ; round++) {
    scope.signal.throwIfAborted();
    const snap = await describeMachines(scope);
    // Machines of groups no longer in the spec (a removed MachineDeployment) are removed too.
    const orphans = opts.keepOtherGroups ? [] : snap.live.filter((m) => !groupNames.has(m.group));
    const ready = opts.readyMachines && !scope.dryRun ? await opts.readyMachines(snap.live) : undefined;
    if (opts.readyMachines && !scope.dryRun && ready === undefined) {
      // Unknown is not "none Ready": deciding now would count every machine as down and remove outdated ones early.
      if (Date.now() > deadline) throw new TransientError('MACHINES_NOT_READY', `machine readiness unknown (the API server does not answer) after ${Math.round(scope.timeouts.instanceMs / 1000)}s; run again to continue`);
      await sleep(pollMs, scope.signal);
      continue;
    }
    // Unhealthy machines (MachineHealthChecks) go this round; the rounds see the group without them, so their replacements launch.
    const verdict = opts.health ? await opts.health(snap.live) : undefined;
    const replacing = new Map<string, Unhealthy>((verdict?.replace ?? []).filter((u) => groupNames.has(u.machine.group)).map((u) => [u.machine.instanceId, u]));
    if (round === 0) {
      for (const n of verdict?.notes ?? []) {
        scope.log.warn(`MachineHealthCheck ${n.check}: ${n.detail}`);
        scope.plan.record({ resource: 'machine-health-check', name: n.check, action: 'skip', detail: n.detail, spec: n.spec });
      }
    }
    const considered = snap.live.filter((m) => !replacing.has(m.instanceId));
    const decisions = holdWorkersWhileControlPlaneRolls(opts.groups.map((g) => ({ g, d: decideRound(g, considered.filter((m) => m.group === g.name), ready) })), considered);

    if (scope.dryRun) {
      for (const { g } of decisions) {
        const mine = snap.live.filter((m) => m.group === g.name);
        const keep = mine.filter((m) => m.templateHash === g.hash && g.failureDomains.includes(m.az) && !replacing.has(m.instanceId));
        const kept = keep.length > g.replicas ? orderForRemoval(keep, g.deletePolicy).slice(keep.length - g.replicas) : keep;
        for (const m of mine) {
          const unhealthy = replacing.get(m.instanceId);
          if (unhealthy) {
            scope.plan.record({ resource: 'machine', name: m.name, action: 'delete', id: m.instanceId, detail: describeReplacement(unhealthy), spec: unhealthy.spec });
            continue;
          }
          const action = kept.includes(m) ? 'no-change' : 'delete';
          scope.plan.record({ resource: 'machine', name: m.name, action, id: m.instanceId, detail: action === 'delete' ? (m.templateHash !== g.hash ? 'rolled: template changed' : 'scale down') : m.state, ...fieldOf(g, m) });
        }
        const used = new Set(kept.map((m) => m.slot));
        const azs = spread(g.failureDomains, kept.map((m) => m.az), Math.max(0, g.replicas - kept.length));
        azs.forEach((az) => {
          const slot = freeRange(used, 1);
          used.add(slot);
          scope.plan.record({ resource: 'machine', name: machineName(g.owner, g.hash, slot), action: 'create', id: NEW_INSTANCE, detail: `${g.spec.instanceType} in ${az}${g.spec.spotMarketOptions ? ' (spot)' : ''}`, ...launchFieldOf(g, mine) });
        });
      }
      for (const m of orphans) scope.plan.record({ resource: 'machine', name: m.name, action: 'delete', id: m.instanceId, detail: 'group not in the spec' });
      return snap.live;
    }

    if (tg && registered === undefined && opts.groups.some((g) => g.registerWithLoadBalancer)) registered = await registeredTargets(scope, tg);

    // Removals: out of the API load balancer first (a control plane whose etcd member the hook
    // removes would fail what is sent to it), the drain hook, one TerminateInstances for the round.
    const remove = [...replacing.values()].map((u) => u.machine).concat(decisions.flatMap(({ d }) => d.remove), orphans);
    if (remove.length > 0) {
      const deregister = remove.filter((m) => registered?.has(m.instanceId)).map((m) => m.instanceId);
      if (tg && deregister.length > 0) {
        await deregisterTargets(scope, tg, deregister);
        for (const id of deregister) registered?.delete(id);
      }
      for (const m of remove) {
        const unhealthy = replacing.get(m.instanceId);
        if (unhealthy) scope.log.info(`MachineHealthCheck ${unhealthy.check}: ${describeReplacement(unhealthy)}`);
        await beforeRemove(m);
        const g = opts.groups.find((x) => x.name === m.group);
        const why = unhealthy ? { detail: `round ${round}: ${describeReplacement(unhealthy)}`, spec: unhealthy.spec } : { detail: `round ${round}`, ...(g ? fieldOf(g, m) : {}) };
        scope.plan.record({ resource: 'machine', name: m.name, action: 'delete', id: m.instanceId, ...why });
      }
      await terminateInstances(scope, remove.map((m) => m.instanceId));
    }

    // Launches: one RunInstances per group and AZ.
    const launched: Machine[] = [];
    for (const { g, d } of decisions) {
      if (d.launch.length === 0) continue;
      const used = new Set(snap.live.filter((m) => m.group === g.name && m.templateHash === g.hash).map((m) => m.slot));
      const subnetCheck = g.failureDomains.filter((az) => !opts.network.subnetsByAz[az]);
      if (subnetCheck.length > 0) throw new InputError('NO_PRIVATE_SUBNET', `no private subnet in ${subnetCheck.join(', ')} for ${g.name}; run provision-vpc first`);
      const imageKey = `${g.templateName}/${g.kubernetesVersion}`;
      let imageId = images.get(imageKey);
      if (!imageId) {
        imageId = await resolveImageId(scope, g.spec, g.kubernetesVersion, g.templateName);
        images.set(imageKey, imageId);
      }
      const params = instanceParams(g.spec, { imageId, securityGroupIds: g.securityGroupIds, ...(opts.sshKeyName ? { sshKeyName: opts.sshKeyName } : {}) });
      const userData = await opts.userData(g.name);
      for (const az of g.failureDomains) {
        const count = d.launch.filter((x) => x === az).length;
        if (count === 0) continue;
        const first = freeRange(used, count);
        for (let i = first; i < first + count; i++) used.add(i);
        const batch = {
          group: g.name,
          owner: g.owner,
          role: g.role,
          hash: g.hash,
          az,
          subnetId: opts.network.subnetsByAz[az]!,
          first,
          count,
          params,
          userData,
          knownIds: snap.knownIds.get(g.name) ?? [],
        };
        const made = await launchBatch(scope, batch);
        const field = launchFieldOf(g, snap.live.filter((x) => x.group === g.name));
        for (const m of made) scope.plan.record({ resource: 'machine', name: m.name, action: 'create', id: m.instanceId, detail: `${g.spec.instanceType} in ${az}${params.spot ? ' (spot)' : ''}`, ...field });
        launched.push(...made);
      }
    }

    // Target group: running control plane machines not yet registered.
    if (tg && registered) {
      const toRegister = snap.live
        .filter((m) => m.role === 'control-plane' && m.state === 'running' && !remove.includes(m) && !registered!.has(m.instanceId))
        .map((m) => m.instanceId);
      if (toRegister.length > 0) {
        await registerTargets(scope, tg, toRegister);
        for (const id of toRegister) registered.add(id);
      }
    }

    const pendingRegistration = tg !== undefined && registered !== undefined && launched.some((m) => m.role === 'control-plane');
    const settled = remove.length === 0 && launched.length === 0 && !pendingRegistration && decisions.every(({ d }) => d.settled);
    if (settled) {
      if (round === 0) for (const m of snap.live) scope.plan.record({ resource: 'machine', name: m.name, action: 'no-change', id: m.instanceId, detail: m.state });
      return snap.live;
    }
    if (Date.now() > deadline) {
      throw new TransientError('MACHINES_NOT_READY', `machines not settled after ${Math.round(scope.timeouts.instanceMs / 1000)}s; run again to continue`);
    }
    // Only wait when the round could not act (machines pending); otherwise look again at once.
    if (remove.length === 0 && launched.length === 0) await sleep(pollMs, scope.signal);
  }
}

/**
 * Terminates every machine the cluster owns (found by the ownership and machine-group tags; other
 * instances are never seen), deregistering them from the target group first, and waits until they
 * are terminated.
 */
export async function deleteMachines(scope: ClusterScope, opts: { targetGroupArn?: string; pollMs?: number }): Promise<Machine[]> {
  const snap = await describeMachines(scope);
  for (const m of snap.live) scope.plan.record({ resource: 'machine', name: m.name, action: 'delete', id: m.instanceId, detail: m.state });
  if (scope.dryRun || snap.live.length === 0) return snap.live;
  const ids = snap.live.map((m) => m.instanceId);
  if (opts.targetGroupArn && snap.live.some((m) => m.role === 'control-plane')) {
    const registered = await registeredTargets(scope, opts.targetGroupArn);
    await deregisterTargets(scope, opts.targetGroupArn, ids.filter((id) => registered.has(id)));
  }
  await terminateInstances(scope, ids);
  const deadline = Date.now() + scope.timeouts.instanceMs;
  for (;;) {
    const again = await describeMachines(scope);
    const left = again.live.filter((m) => ids.includes(m.instanceId) || LIVE_STATES.includes(m.state));
    if (left.length === 0) return snap.live;
    if (Date.now() > deadline) {
      throw new TransientError('MACHINES_NOT_TERMINATED', `${left.length} machine(s) not terminated yet: ${left.map((m) => m.name).join(', ')}`);
    }
    await sleep(opts.pollMs ?? 2000, scope.signal);
  }
}

// --- the whole cluster: control plane, MachineDeployments, then MachinePools -------------------

export interface ClusterMachinesResult {
  machines: Machine[];
  pools: PoolResult[];
}

/**
 * Control plane and MachineDeployment machines (reconcileMachines), then the AWSMachinePools
 * (machine-pools.ts: launch templates and Auto Scaling groups), which cost no call when the spec
 * has none.
 */
export async function reconcileClusterMachines(
  scope: ClusterScope,
  asg: AutoScalingClient,
  opts: ReconcileMachinesOptions & { pools?: Omit<MachinePoolsInput, 'userData'> & { userData: UserDataFn } },
): Promise<ClusterMachinesResult> {
  const machines = await reconcileMachines(scope, opts);
  const pools = opts.pools && opts.pools.pools.length > 0 ? await reconcileMachinePools(scope, asg, opts.pools) : [];
  return { machines, pools };
}

/** MachinePools first (their groups take their instances with them), then the machines. */
export async function deleteClusterMachines(scope: ClusterScope, asg: AutoScalingClient, opts: { targetGroupArn?: string; pollMs?: number }): Promise<Machine[]> {
  await deleteMachinePools(scope, asg);
  return deleteMachines(scope, opts);
}
