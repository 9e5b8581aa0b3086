/**
 * The crash suite's engine: one design for every AWS-calling step, create and delete.
 *
 * A scenario is a step, a phase (create or delete), how to make the world the step starts from
 * (`prepare`: e.g. the network for launch-nodes; the create for a delete) and how to read the world
 * back with ids replaced by names (`snapshot`, see `ec2World`), so two runs on two beds compare.
 *
 *   (a) the step runs uninterrupted: its world is the reference, its mutating calls are the kill
 *       points (and a rerun of it must make no mutating call);
 *   (b) for each selected kill point, on a freshly reset bed: prepare, run the step as the image
 *       runs it (`capflow step`, a child process) and have the fault proxy SIGKILL it at that call
 *       (`after-response` at every point; `before-response`, the call took effect and the caller
 *       never heard, at the calls of the actions that make something), rerun it, snapshot and
 *       compare with the reference: any difference is a divergence, kept with its kill point;
 *   (c) a second rerun must make no mutating call (idempotent after the crash).
 *
 * Only the killed run is a child (a SIGKILL needs a process: the image's entry point); prepare and the reruns run in
 * process through the same proxy (runStepVia): the same executor code without a node start-up
 * (about 1.5 s of a core each), which is most of what a case costs.
 *
 * Which points: CAPFLOW_CRASH_POINTS=all (every mutating call; before-response at every call of a
 * creating action) or sample (default: the first and the last call of each mutating action;
 * before-response at the first call of each creating action), or a scenario's own `points`.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  DescribeAddressesCommand,
  DescribeInstancesCommand,
  DescribeInternetGatewaysCommand,
  DescribeLaunchTemplatesCommand,
  DescribeNatGatewaysCommand,
  DescribeRouteTablesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  EC2Client,
} from '@aws-sdk/client-ec2';
import { AutoScalingClient, DescribeAutoScalingGroupsCommand } from '@aws-sdk/client-auto-scaling';
import {
  DescribeListenersCommand,
  DescribeLoadBalancersCommand,
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import type { Executor } from '../../src/core/executor.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import type { CrashBed } from './crash-beds.js';
import { forEachOnBeds } from './crash-beds.js';
import type { KillAfterMutating } from './fault-proxy.js';
import { awsTestEnv, clientConfig } from './moto.js';
import { runStepVia, type StepRun } from './step-run.js';
import { imageRoot } from './image-root.js';
import { REPO_ROOT } from './tools.js';

export type Phase = 'create' | 'delete';
export type When = KillAfterMutating['when'];
export type PointSelection = 'all' | 'sample';

/** Where a prepared world's step runs: the cluster's repo and folder, its secret store, its region. */
export interface Lane {
  repo: string;
  clusterPath: string;
  secretsDir: string;
  /** The cluster's region (AWSCluster/AWSManagedControlPlane spec.region): the step's and the snapshot's. */
  region: string;
  params: Record<string, string>;
}

export interface Scenario {
  step: Executor;
  phase: Phase;
  /** 'launch-nodes create (MachinePool)': defaults to `${step.id} ${phase}`. */
  label?: string;
  /** This scenario's kill points whatever the mode (e.g. 'all' where they are few). */
  points?: PointSelection;
  /** AWS's managed IAM policies on the beds (EKS). */
  iamManagedPolicies?: boolean;
  /** Actions whose calls also get a before-response kill (default: Create*, Allocate*, Run*, Register*). */
  creating?: (action: string) => boolean;
  /** The world the step starts from, on a bed the engine has just reset. Runs the steps before it (in process). */
  prepare(bed: CrashBed): Promise<Lane>;
  /** The world, ids replaced by names, in a canonical order. */
  snapshot(bed: CrashBed, lane: Lane): Promise<unknown>;
}

export interface KillPoint {
  /** 1-based position among the step's mutating calls. */
  n: number;
  action: string;
  when: When;
}

export interface Divergence {
  point: KillPoint | 'reference';
  kind: 'world' | 'rerun-failed' | 'not-idempotent' | 'not-killed';
  /** What differs: `path: reference → this run`, or the error. */
  diff: string[];
}

export interface ScenarioResult {
  label: string;
  step: string;
  phase: Phase;
  killPoints: number;
  divergences: Divergence[];
  /** The uninterrupted run's mutating actions, in order. */
  referenceCalls: string[];
  reference: unknown;
  wallMs: number;
}

export function crashPointSelection(): PointSelection {
  const raw = process.env['CAPFLOW_CRASH_POINTS'] ?? '';
  if (raw === '' || raw === 'sample') return 'sample';
  if (raw === 'all') return 'all';
  throw new Error(`CAPFLOW_CRASH_POINTS must be "all" or "sample", not "${raw}"`);
}

const defaultCreating = (a: string) => /^(Create|Allocate|Run|Register)/.test(a);

/** The kill points of a run whose mutating actions were `actions`. */
export function selectKillPoints(actions: readonly string[], selection: PointSelection, creating: (a: string) => boolean = defaultCreating): KillPoint[] {
  const after = new Set<number>();
  const before = new Set<number>();
  actions.forEach((a, i) => {
    const first = actions.indexOf(a) === i;
    const last = actions.lastIndexOf(a) === i;
    if (selection === 'all' || first || last) after.add(i + 1);
    if (creating(a) && (selection === 'all' || first)) before.add(i + 1);
  });
  const at = (n: number, when: When): KillPoint => ({ n, action: actions[n - 1]!, when });
  return [...[...after].map((n) => at(n, 'after-response')), ...[...before].map((n) => at(n, 'before-response'))].sort((x, y) => x.n - y.n || x.when.localeCompare(y.when));
}

/** Every difference between two JSON values, as `path: a → b` lines. */
export function jsonDiff(a: unknown, b: unknown, at = '$', out: string[] = []): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return out;
  if (Array.isArray(a) && Array.isArray(b)) {
    // Canonical snapshots are sorted: show what one side has that the other lacks.
    const as = a.map((x) => JSON.stringify(x));
    const bs = b.map((x) => JSON.stringify(x));
    const left = [...as];
    const extra: string[] = [];
    for (const x of bs) {
      const i = left.indexOf(x);
      if (i >= 0) left.splice(i, 1);
      else extra.push(x);
    }
    for (const x of left) out.push(`${at}: missing ${x}`);
    for (const x of extra) out.push(`${at}: extra ${x}`);
    return out;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const ao = a as Record<string, unknown>;
    const bo = b as Record<string, unknown>;
    for (const k of [...new Set([...Object.keys(ao), ...Object.keys(bo)])].sort()) jsonDiff(ao[k], bo[k], `${at}.${k}`, out);
    return out;
  }
  out.push(`${at}: ${JSON.stringify(a)} → ${JSON.stringify(b)}`);
  return out;
}

interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/**
 * `capflow step` as the image runs it (its bundled entry point and ENV, test/support/image-root.ts:
 * it also starts in about a third of the time dist/ takes), through the bed's proxy, SIGKILLed by
 * the proxy at `kill`.
 */
export async function runStepChild(bed: CrashBed, stepId: string, lane: Lane, phase: Phase, kill?: Omit<KillAfterMutating, 'pid'>): Promise<ChildRun> {
  const params = Object.entries(lane.params).flatMap(([k, v]) => ['-p', `${k}=${v}`]);
  const image = await imageRoot();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [image.entry, 'step', stepId, '--repo', lane.repo, '--cluster-dir', lane.clusterPath, '--revision', 'HEAD', ...params, ...(phase === 'delete' ? ['--delete'] : [])], {
      env: {
        ...process.env,
        ...image.env,
        ...awsTestEnv(bed.proxy.endpoint),
        AWS_REGION: lane.region,
        AWS_DEFAULT_REGION: lane.region,
        CAPFLOW_SECRETS_DIR: lane.secretsDir,
        CAPFLOW_SECRET_STORE: 'local',
        CAPFLOW_LOG_FORMAT: 'json',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    bed.proxy.setFaults(kill ? { killAfterMutating: { ...kill, pid: child.pid! } } : {});
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

/** The step in process through the bed's proxy (no kill): what prepare and the reruns use. */
export function runStepIn(bed: CrashBed, step: Executor, lane: Lane, phase: Phase, params = lane.params): Promise<StepRun> {
  bed.proxy.setFaults({});
  return runStepVia(
    { proxy: bed.proxy, repo: lane.repo, clusterPath: lane.clusterPath, region: lane.region, revision: 'HEAD', secrets: new LocalSecretStore(lane.secretsDir) },
    step,
    { delete: phase === 'delete', params },
  );
}

/** runStepIn that must succeed (prepare's steps; `params`: theirs, default the lane's). */
export async function mustRun(bed: CrashBed, step: Executor, lane: Lane, phase: Phase = 'create', params = lane.params): Promise<StepRun> {
  const r = await runStepIn(bed, step, lane, phase, params);
  if (r.exitCode !== 0) throw new Error(`prepare: ${step.id}${phase === 'delete' ? ' --delete' : ''} failed: ${JSON.stringify(r.summary.error)}\n${r.log.slice(-2000)}`);
  return r;
}

const mutating = (r: StepRun) => r.calls.filter((c) => c.mutating).map((c) => c.action);
const stepError = (r: StepRun) => `exit ${r.exitCode}: ${JSON.stringify(r.summary.error)} ${r.log.slice(-1500)}`;

/** A fresh world on the bed: moto reset, the proxy's record, faults and EKS stand-in forgotten. */
async function resetBed(bed: CrashBed): Promise<void> {
  await bed.moto.reset();
  bed.proxy.reset();
}

const labelOf = (s: Scenario) => s.label ?? `${s.step.id} ${s.phase}`;

/** (a): the reference world and kill points of one scenario, on one bed. */
export async function referenceRun(bed: CrashBed, s: Scenario): Promise<{ world: unknown; actions: string[]; divergences: Divergence[] }> {
  await resetBed(bed);
  const lane = await s.prepare(bed);
  try {
    const run = await runStepIn(bed, s.step, lane, s.phase);
    if (run.exitCode !== 0) throw new Error(`${labelOf(s)}: the uninterrupted run failed: ${stepError(run)}`);
    const world = await s.snapshot(bed, lane);
    const again = await runStepIn(bed, s.step, lane, s.phase);
    const divergences: Divergence[] = [];
    if (again.exitCode !== 0) divergences.push({ point: 'reference', kind: 'rerun-failed', diff: [stepError(again)] });
    else if (mutating(again).length > 0) divergences.push({ point: 'reference', kind: 'not-idempotent', diff: [`a rerun made ${mutating(again).join(', ')}`] });
    return { world, actions: mutating(run), divergences };
  } finally {
    rmLane(lane);
  }
}

function rmLane(lane: Lane): void {
  rmSync(lane.repo, { recursive: true, force: true });
  rmSync(lane.secretsDir, { recursive: true, force: true });
}

/** (b) and (c) for one kill point, on one bed: the divergences found (none: converged). */
async function killCase(bed: CrashBed, s: Scenario, point: KillPoint, total: number, ref: unknown): Promise<Divergence[]> {
  await resetBed(bed);
  const lane = await s.prepare(bed);
  try {
    const killed = await runStepChild(bed, s.step.id, lane, s.phase, { n: point.n, when: point.when });
    bed.proxy.setFaults({});
    // After its very last call there may be nothing left to interrupt: it may finish first (the same world).
    const finished = point.when === 'after-response' && point.n === total && killed.signal === null && killed.code === 0;
    if (killed.signal !== 'SIGKILL' && !finished) return [{ point, kind: 'not-killed', diff: [`exit ${killed.code} signal ${killed.signal}: ${killed.stderr.slice(-1500)}`] }];
    const rerun = await runStepIn(bed, s.step, lane, s.phase);
    if (rerun.exitCode !== 0) return [{ point, kind: 'rerun-failed', diff: [stepError(rerun)] }];
    const out: Divergence[] = [];
    const diff = jsonDiff(ref, await s.snapshot(bed, lane));
    if (diff.length > 0) out.push({ point, kind: 'world', diff });
    const again = await runStepIn(bed, s.step, lane, s.phase);
    if (again.exitCode !== 0) out.push({ point, kind: 'rerun-failed', diff: [`second rerun: ${stepError(again)}`] });
    else if (mutating(again).length > 0) out.push({ point, kind: 'not-idempotent', diff: [`the second rerun made ${mutating(again).join(', ')}`] });
    return out;
  } finally {
    rmLane(lane);
  }
}

/**
 * Runs one scenario on the beds (the reference on the first, then the kill points side by side)
 * and returns what diverged. Throws only when the bed or the uninterrupted run fails.
 */
export async function runScenario(beds: readonly CrashBed[], s: Scenario, selection: PointSelection = crashPointSelection()): Promise<ScenarioResult> {
  const started = Date.now();
  const ref = await referenceRun(beds[0]!, s);
  const points = selectKillPoints(ref.actions, s.points ?? selection, s.creating);
  const divergences = [...ref.divergences];
  await forEachOnBeds(beds, points, async (bed, p) => {
    divergences.push(...(await killCase(bed, s, p, ref.actions.length, ref.world)));
  });
  divergences.sort((a, b) => (a.point === 'reference' ? 0 : a.point.n) - (b.point === 'reference' ? 0 : b.point.n));
  return { label: labelOf(s), step: s.step.id, phase: s.phase, killPoints: points.length, divergences, referenceCalls: ref.actions, reference: ref.world, wallMs: Date.now() - started };
}

/** `provision-vpc create: 58 kill points, 0 divergences` */
export const resultLine = (r: ScenarioResult) => `${r.label}: ${r.killPoints} kill points, ${r.divergences.length} divergences`;

/** The divergences of a result, one per line, for an assertion's message. */
export function describeDivergences(r: ScenarioResult): string {
  return r.divergences
    .map((d) => `${r.label} ${d.point === 'reference' ? 'reference' : `killed ${d.point.when} mutating call ${d.point.n} (${d.point.action})`}: ${d.kind}\n    ${d.diff.slice(0, 20).join('\n    ')}`)
    .join('\n');
}

/** A fresh repo with an example cluster copied in, and a fresh secret store. */
export function laneFrom(example: string, clusterPath: string, region: string, params: Record<string, string> = {}): Lane {
  const repo = mkdtempSync(path.join(os.tmpdir(), 'capflow-crash-repo-'));
  const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-crash-secrets-'));
  cpSync(path.join(REPO_ROOT, 'examples', 'clusters', example), path.join(repo, clusterPath), { recursive: true });
  return { repo, clusterPath, secretsDir, region, params };
}

const tagMap = (tags: Array<{ Key?: string; Value?: string }> | undefined): Record<string, string> =>
  Object.fromEntries((tags ?? []).map((t): [string, string] => [t.Key ?? '', t.Value ?? '']).sort(([a], [b]) => a.localeCompare(b)));

/**
 * The EC2, ELBv2 and Auto Scaling world of one region, read straight from moto, with every id
 * replaced by `kind:Name` (its Name tag, or the load balancer's, target group's, template's or
 * group's name; `kind:-` for one without) and every list sorted: two runs that made the same things
 * compare equal whatever ids moto handed out; a duplicate shows as a second entry of the same name.
 * The account's defaults (default VPC and its parts, main route tables, default groups) are left out.
 */
export async function ec2World(motoEndpoint: string, region: string): Promise<Record<string, unknown[]>> {
  const config = { ...clientConfig(motoEndpoint), region };
  const ec2 = new EC2Client(config);
  const elbv2 = new ElasticLoadBalancingV2Client(config);
  const asg = new AutoScalingClient(config);
  try {
    const names = new Map<string, string>();
    const name = (kind: string, id: string | undefined, tags?: Array<{ Key?: string; Value?: string }>, own?: string) => {
      if (id) names.set(id, `${kind}:${own ?? tagMap(tags)['Name'] ?? '-'}`);
    };
    const vpcs = (await ec2.send(new DescribeVpcsCommand({}))).Vpcs ?? [];
    const defaults = new Set(vpcs.filter((v) => v.IsDefault).map((v) => v.VpcId));
    const world: Record<string, unknown[]> = {};
    const add = (kind: string, x: unknown) => (world[kind] ??= []).push(x);
    for (const v of vpcs.filter((x) => !x.IsDefault)) {
      name('vpc', v.VpcId, v.Tags);
      add('vpc', { id: v.VpcId, cidr: v.CidrBlock, tags: tagMap(v.Tags) });
    }
    for (const s of ((await ec2.send(new DescribeSubnetsCommand({}))).Subnets ?? []).filter((x) => !defaults.has(x.VpcId))) {
      name('subnet', s.SubnetId, s.Tags);
      add('subnet', { id: s.SubnetId, vpc: s.VpcId, cidr: s.CidrBlock, az: s.AvailabilityZone, publicIp: s.MapPublicIpOnLaunch, tags: tagMap(s.Tags) });
    }
    for (const g of (await ec2.send(new DescribeInternetGatewaysCommand({}))).InternetGateways ?? []) {
      if (g.Attachments?.some((a) => defaults.has(a.VpcId))) continue;
      name('igw', g.InternetGatewayId, g.Tags);
      add('internet-gateway', { id: g.InternetGatewayId, vpcs: (g.Attachments ?? []).map((a) => a.VpcId), tags: tagMap(g.Tags) });
    }
    for (const a of (await ec2.send(new DescribeAddressesCommand({}))).Addresses ?? []) {
      name('eip', a.AllocationId, a.Tags);
      add('eip', { id: a.AllocationId, tags: tagMap(a.Tags) });
    }
    for (const n of (await ec2.send(new DescribeNatGatewaysCommand({}))).NatGateways ?? []) {
      if (n.State === 'deleted' || n.State === 'deleting') continue;
      name('nat', n.NatGatewayId, n.Tags);
      add('nat-gateway', { id: n.NatGatewayId, subnet: n.SubnetId, eips: (n.NatGatewayAddresses ?? []).map((x) => x.AllocationId), tags: tagMap(n.Tags) });
    }
    for (const r of (await ec2.send(new DescribeRouteTablesCommand({}))).RouteTables ?? []) {
      if (defaults.has(r.VpcId) || r.Associations?.some((a) => a.Main)) continue;
      name('rtb', r.RouteTableId, r.Tags);
      const routes = (r.Routes ?? []).map((x) => ({ to: x.DestinationCidrBlock ?? x.DestinationIpv6CidrBlock, via: x.GatewayId ?? x.NatGatewayId ?? x.InstanceId ?? x.NetworkInterfaceId }));
      add('route-table', { id: r.RouteTableId, vpc: r.VpcId, routes, subnets: (r.Associations ?? []).map((a) => a.SubnetId), tags: tagMap(r.Tags) });
    }
    const groups = ((await ec2.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups ?? []).filter((g) => !defaults.has(g.VpcId) && g.GroupName !== 'default');
    for (const g of groups) name('sg', g.GroupId, undefined, g.GroupName);
    for (const g of groups) {
      const rules = (ps: typeof g.IpPermissions) =>
        (ps ?? []).flatMap((p) => [
          ...(p.IpRanges ?? []).map((x) => `${p.IpProtocol} ${p.FromPort}-${p.ToPort} ${x.CidrIp}`),
          ...(p.UserIdGroupPairs ?? []).map((x) => `${p.IpProtocol} ${p.FromPort}-${p.ToPort} ${x.GroupId}`),
        ]);
      add('security-group', { id: g.GroupId, vpc: g.VpcId, ingress: rules(g.IpPermissions), tags: tagMap(g.Tags) });
    }
    for (const lt of (await ec2.send(new DescribeLaunchTemplatesCommand({}))).LaunchTemplates ?? []) {
      name('lt', lt.LaunchTemplateId, undefined, lt.LaunchTemplateName);
      add('launch-template', { id: lt.LaunchTemplateId, latest: lt.LatestVersionNumber, tags: tagMap(lt.Tags) });
    }
    for (const r of (await ec2.send(new DescribeInstancesCommand({}))).Reservations ?? []) {
      for (const i of r.Instances ?? []) {
        if (i.State?.Name === 'terminated' || i.State?.Name === 'shutting-down') continue;
        // Auto Scaling's instances carry no Name: their group's, so a count per group shows.
        const tags = tagMap(i.Tags);
        name('instance', i.InstanceId, undefined, tags['Name'] ?? tags['aws:autoscaling:groupName'] ?? '-');
        add('instance', { id: i.InstanceId, type: i.InstanceType, image: i.ImageId, subnet: i.SubnetId, groups: (i.SecurityGroups ?? []).map((g) => g.GroupId).sort(), tags });
      }
    }
    for (const lb of (await elbv2.send(new DescribeLoadBalancersCommand({}))).LoadBalancers ?? []) {
      name('lb', lb.LoadBalancerArn, undefined, lb.LoadBalancerName);
      const listeners = ((await elbv2.send(new DescribeListenersCommand({ LoadBalancerArn: lb.LoadBalancerArn }))).Listeners ?? []).map((l) => ({
        port: l.Port,
        protocol: l.Protocol,
        to: (l.DefaultActions ?? []).map((a) => a.TargetGroupArn),
      }));
      add('load-balancer', { id: lb.LoadBalancerArn, scheme: lb.Scheme, type: lb.Type, subnets: (lb.AvailabilityZones ?? []).map((z) => z.SubnetId).sort(), listeners });
    }
    for (const tg of (await elbv2.send(new DescribeTargetGroupsCommand({}))).TargetGroups ?? []) {
      name('tg', tg.TargetGroupArn, undefined, tg.TargetGroupName);
      const targets = ((await elbv2.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroupArn }))).TargetHealthDescriptions ?? []).map((d) => d.Target?.Id);
      add('target-group', { id: tg.TargetGroupArn, port: tg.Port, protocol: tg.Protocol, vpc: tg.VpcId, targets });
    }
    for (const g of (await asg.send(new DescribeAutoScalingGroupsCommand({}))).AutoScalingGroups ?? []) {
      add('auto-scaling-group', {
        name: g.AutoScalingGroupName,
        min: g.MinSize,
        max: g.MaxSize,
        desired: g.DesiredCapacity,
        template: g.MixedInstancesPolicy?.LaunchTemplate?.LaunchTemplateSpecification?.LaunchTemplateName ?? g.LaunchTemplate?.LaunchTemplateName,
        subnets: (g.VPCZoneIdentifier ?? '').split(',').filter(Boolean).sort(),
        tags: tagMap(g.Tags),
      });
    }
    return canonical(world, names) as Record<string, unknown[]>;
  } finally {
    ec2.destroy();
    elbv2.destroy();
    asg.destroy();
  }
}

/** Ids (and ARNs) replaced by names wherever they appear, arrays sorted, keys in order. */
export function canonical(x: unknown, names: ReadonlyMap<string, string>): unknown {
  if (typeof x === 'string') {
    if (names.has(x)) return names.get(x);
    let s = x;
    for (const [id, n] of names) if (s.includes(id)) s = s.split(id).join(n);
    return s;
  }
  if (Array.isArray(x)) return x.map((v) => canonical(v, names)).sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  if (x && typeof x === 'object') {
    return Object.fromEntries(
      Object.entries(x as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, canonical(v, names)]),
    );
  }
  return x;
}
