/**
 * The API server load balancer (spec.controlPlaneLoadBalancer), and the deletion of every load
 * balancer of the cluster: capflow's own and those the cloud controller made for Services.
 *
 * Type: a network load balancer unless the spec says `classic` or `elb` (both mean a classic ELB).
 * This deliberately differs from CAPA, whose v1beta2 CRD defaults loadBalancerType to `classic`: an
 * absent type means NLB here. (capflow's spec loader applies CRD defaults, so a spec that writes a
 * `controlPlaneLoadBalancer` block without a type reaches us as `classic`; leave the whole block out,
 * or write `nlb`, for an NLB.) `alb` is refused: an application load balancer cannot pass the API
 * server's TLS through. `disabled` is for the caller to check (apiServerLoadBalancerType) before
 * calling; reconcileLoadBalancer refuses it.
 *
 * NLB: `<cluster>-apiserver` (CAPA's name; hashed to 32 characters when longer), TCP listener on the
 * API server port forwarding to a TCP target group of the same name on 6443 with the spec's health
 * check (TCP by default; HTTP/HTTPS probe /readyz), client IP preservation off (so a control plane
 * node can reach the API through the NLB and land on itself), the apiserver-lb security group (plus
 * additionalSecurityGroups), cross-zone load balancing as the spec says. Classic: the same name,
 * TCP listener, health check target, idle timeout 600 s (CAPA's), cross-zone as the spec says.
 *
 * Found by name, then checked by tags: a same-name load balancer that the cluster does not own is a
 * conflict (exit code 3) with a hint on how to adopt it. A rerun compares listener, target group,
 * health check, subnets, security groups and attributes, and makes no mutating call when they match.
 */
import * as elb from '@aws-sdk/client-elastic-load-balancing';
import * as elbv2 from '@aws-sdk/client-elastic-load-balancing-v2';
import { createHash } from 'node:crypto';
import { ConflictError, InputError, TransientError, isCapflowError } from '../core/errors.js';
import type { AWSClusterSpec, AWSLoadBalancerSpec } from '../spec/model.js';
import { expectAtMostOne, found, isDependencyViolation, isNotFound } from './find.js';
import type { ClusterScope } from './scope.js';
import type { SecurityGroupRole } from './security-groups.js';
import { capaClusterTag, fromTagList, k8sClusterTag, ownedTags } from './tags.js';
import { waitFor } from './wait.js';

export interface LoadBalancerResult {
  type: 'nlb' | 'classic' | 'alb';
  name: string;
  arn?: string;
  dnsName: string;
  targetGroupArn?: string;
  scheme: string;
}

export const API_SERVER_ROLE = 'apiserver';
const TARGET_PORT = 6443;
const HEALTH_CHECK_PATH = '/readyz';
/** CAPA's API server health check: every 5 s, 4 s timeout, healthy after 2, unhealthy after 6. */
const HEALTH_CHECK_DEFAULTS = { intervalSeconds: 5, timeoutSeconds: 4, thresholdCount: 2, unhealthyThresholdCount: 6 };
const CLASSIC_IDLE_TIMEOUT_SECONDS = 600;
const CROSS_ZONE_ATTRIBUTE = 'load_balancing.cross_zone.enabled';
const PRESERVE_CLIENT_IP_ATTRIBUTE = 'preserve_client_ip.enabled';
/** DescribeTags takes at most 20 load balancers (classic and v2). */
const TAG_BATCH = 20;

/** The spec's load balancer type as capflow reads it: absent means nlb, elb means classic. */
export function apiServerLoadBalancerType(spec: AWSClusterSpec): 'nlb' | 'classic' | 'alb' | 'disabled' {
  const t = spec.controlPlaneLoadBalancer?.loadBalancerType;
  if (t === undefined) return 'nlb';
  if (t === 'classic' || t === 'elb') return 'classic';
  return t;
}

/** `<cluster>-apiserver` when it fits in 32 characters, else a 28-character base-36 hash of the cluster name + `-k8s` (CAPA's scheme). */
export function apiServerLoadBalancerName(clusterName: string): string {
  const standard = `${clusterName.replace(/\./g, '-')}-${API_SERVER_ROLE}`;
  if (standard.length <= 32) return standard;
  const digest = BigInt(`0x${createHash('sha256').update(clusterName).digest('hex')}`).toString(36);
  return `${digest.slice(0, 28)}-k8s`;
}

/** Placeholder ids of a dry run. */
const NEW_LB = `(new load-balancer ${API_SERVER_ROLE})`;
const NEW_TG = `(new target-group ${API_SERVER_ROLE})`;

interface HealthCheck {
  protocol: string;
  port: string;
  path?: string;
  intervalSeconds: number;
  timeoutSeconds: number;
  thresholdCount: number;
  unhealthyThresholdCount: number;
}

interface Desired {
  type: 'nlb' | 'classic';
  name: string;
  scheme: 'internet-facing' | 'internal';
  subnets: string[];
  securityGroups: string[];
  crossZone: boolean;
  /** The listener's port (cluster API server port, 6443 unless the spec says otherwise). */
  port: number;
  healthCheck: HealthCheck;
  tags: Record<string, string>;
  vpcId: string;
}

function healthCheckOf(lb: AWSLoadBalancerSpec, type: 'nlb' | 'classic'): HealthCheck {
  const protocol = (lb.healthCheckProtocol ?? 'TCP').toUpperCase();
  const allowed = type === 'nlb' ? ['TCP', 'HTTP', 'HTTPS'] : ['TCP', 'HTTP', 'HTTPS', 'SSL'];
  if (!allowed.includes(protocol)) {
    throw new InputError('LB_HEALTH_CHECK_PROTOCOL', `spec.controlPlaneLoadBalancer.healthCheckProtocol ${protocol} is not valid for a ${type} load balancer`, {
      hint: `use one of ${allowed.join(', ')}`,
    });
  }
  const overrides = (lb.healthCheck ?? {}) as Partial<typeof HEALTH_CHECK_DEFAULTS>;
  return {
    protocol,
    port: String(TARGET_PORT),
    ...(protocol === 'HTTP' || protocol === 'HTTPS' ? { path: HEALTH_CHECK_PATH } : {}),
    intervalSeconds: overrides.intervalSeconds ?? HEALTH_CHECK_DEFAULTS.intervalSeconds,
    timeoutSeconds: overrides.timeoutSeconds ?? HEALTH_CHECK_DEFAULTS.timeoutSeconds,
    thresholdCount: overrides.thresholdCount ?? HEALTH_CHECK_DEFAULTS.thresholdCount,
    unhealthyThresholdCount: overrides.unhealthyThresholdCount ?? HEALTH_CHECK_DEFAULTS.unhealthyThresholdCount,
  };
}

/** ELB and ELBv2 tag lists (their Tag types need a Key). */
function elbTags(tags: Record<string, string>): Array<{ Key: string; Value: string }> {
  return Object.entries(tags)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([Key, Value]) => ({ Key, Value }));
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');

/**
 * Makes the API server load balancer match the spec and returns where it answers. Subnets: the
 * public ones for internet-facing, the private ones (else the public ones) for internal, unless
 * spec.controlPlaneLoadBalancer.subnets names them.
 */
export async function reconcileLoadBalancer(
  scope: ClusterScope,
  input: { spec: AWSClusterSpec; vpcId: string; subnets: { public: string[]; private: string[] }; securityGroupIds: Record<SecurityGroupRole, string> },
): Promise<LoadBalancerResult> {
  const lb = input.spec.controlPlaneLoadBalancer ?? {};
  const type = apiServerLoadBalancerType(input.spec);
  if (type === 'disabled') {
    throw new InputError('LB_DISABLED', 'spec.controlPlaneLoadBalancer.loadBalancerType is disabled: there is no API server load balancer to reconcile', {
      hint: 'check apiServerLoadBalancerType(spec) before calling reconcileLoadBalancer',
    });
  }
  if (type === 'alb') {
    throw new InputError('LB_ALB_UNSUPPORTED', 'an application load balancer cannot carry the API server (it terminates TLS; kube-apiserver needs TCP passthrough)', {
      hint: 'set spec.controlPlaneLoadBalancer.loadBalancerType to nlb (or classic)',
    });
  }
  const scheme = lb.scheme ?? 'internet-facing';
  const listed = lb.subnets as string[] | undefined;
  const subnets = listed?.length
    ? listed
    : scheme === 'internal' && input.subnets.private.length > 0
      ? input.subnets.private
      : input.subnets.public;
  if (subnets.length === 0) {
    throw new InputError('LB_NO_SUBNETS', `no ${scheme === 'internal' ? 'private or public' : 'public'} subnets for the ${scheme} API server load balancer`);
  }
  const name = (lb.name as string | undefined) ?? apiServerLoadBalancerName(scope.clusterName);
  const desired: Desired = {
    type,
    name,
    scheme,
    subnets: [...subnets],
    securityGroups: [...((lb.additionalSecurityGroups as string[] | undefined) ?? []), input.securityGroupIds['apiserver-lb']],
    crossZone: lb.crossZoneLoadBalancing ?? false,
    port: TARGET_PORT,
    healthCheck: healthCheckOf(lb, type),
    tags: ownedTags(scope, API_SERVER_ROLE, name),
    vpcId: input.vpcId,
  };
  return type === 'nlb' ? reconcileNetworkLoadBalancer(scope, desired) : reconcileClassicLoadBalancer(scope, desired);
}

// ---------------------------------------------------------------------------------------------
// NLB

async function describeV2ByName(scope: ClusterScope, name: string): Promise<elbv2.LoadBalancer[]> {
  try {
    const out = await scope.elbv2.send(new elbv2.DescribeLoadBalancersCommand({ Names: [name] }), { abortSignal: scope.signal });
    return out.LoadBalancers ?? [];
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

async function describeTargetGroupsByName(scope: ClusterScope, name: string): Promise<elbv2.TargetGroup[]> {
  try {
    const out = await scope.elbv2.send(new elbv2.DescribeTargetGroupsCommand({ Names: [name] }), { abortSignal: scope.signal });
    return out.TargetGroups ?? [];
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

/** Tags of ELBv2 resources by ARN, 20 at a time. */
async function v2Tags(scope: ClusterScope, arns: string[]): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>();
  for (let i = 0; i < arns.length; i += TAG_BATCH) {
    const page = await scope.elbv2.send(new elbv2.DescribeTagsCommand({ ResourceArns: arns.slice(i, i + TAG_BATCH) }), { abortSignal: scope.signal });
    for (const d of page.TagDescriptions ?? []) if (d.ResourceArn) out.set(d.ResourceArn, fromTagList(d.Tags));
  }
  return out;
}

function targetGroupHealthCheckInput(hc: HealthCheck) {
  return {
    HealthCheckEnabled: true,
    HealthCheckProtocol: hc.protocol as elbv2.ProtocolEnum,
    HealthCheckPort: hc.port,
    ...(hc.path ? { HealthCheckPath: hc.path } : {}),
    HealthCheckIntervalSeconds: hc.intervalSeconds,
    HealthCheckTimeoutSeconds: hc.timeoutSeconds,
    HealthyThresholdCount: hc.thresholdCount,
    UnhealthyThresholdCount: hc.unhealthyThresholdCount,
  };
}

function healthCheckDrift(tg: elbv2.TargetGroup, hc: HealthCheck): string[] {
  const diffs: string[] = [];
  const cmp = (what: string, have: unknown, want: unknown) => {
    if (have !== want) diffs.push(`${what} ${String(have)} -> ${String(want)}`);
  };
  cmp('health check protocol', tg.HealthCheckProtocol, hc.protocol);
  cmp('health check port', tg.HealthCheckPort, hc.port);
  if (hc.path) cmp('health check path', tg.HealthCheckPath, hc.path);
  cmp('health check interval', tg.HealthCheckIntervalSeconds, hc.intervalSeconds);
  cmp('health check timeout', tg.HealthCheckTimeoutSeconds, hc.timeoutSeconds);
  cmp('healthy threshold', tg.HealthyThresholdCount, hc.thresholdCount);
  cmp('unhealthy threshold', tg.UnhealthyThresholdCount, hc.unhealthyThresholdCount);
  return diffs;
}

async function reconcileNetworkLoadBalancer(scope: ClusterScope, d: Desired): Promise<LoadBalancerResult> {
  const log = scope.log.child({ loadBalancer: d.name });
  const tgName = d.name;
  const [lbs, tgs] = [await describeV2ByName(scope, d.name), await describeTargetGroupsByName(scope, tgName)];
  const arns = [...lbs.map((x) => x.LoadBalancerArn!), ...tgs.map((x) => x.TargetGroupArn!)];
  const tags = arns.length > 0 ? await v2Tags(scope, arns) : new Map<string, Record<string, string>>();
  const lbFound = expectAtMostOne(
    lbs.map((x) => found(x, x.LoadBalancerArn, tags.get(x.LoadBalancerArn!) ?? {}, scope.clusterName)),
    'load balancer',
    d.name,
    scope.clusterName,
  );
  const tgFound = expectAtMostOne(
    tgs.map((x) => found(x, x.TargetGroupArn, tags.get(x.TargetGroupArn!) ?? {}, scope.clusterName)),
    'target group',
    tgName,
    scope.clusterName,
  );
  let current = lbFound?.item;
  let group = tgFound?.item;

  // The load balancer.
  if (current) {
    if (current.Type !== 'network' || current.Scheme !== d.scheme || (current.VpcId && current.VpcId !== d.vpcId)) {
      throw new ConflictError(
        'LB_DRIFT',
        `load balancer ${d.name} is a ${current.Scheme} ${current.Type} load balancer in ${current.VpcId}; the spec wants an ${d.scheme} network load balancer in ${d.vpcId}`,
        { hint: 'type, scheme and VPC of a load balancer cannot change in place: delete it and run again to recreate it', details: { arn: current.LoadBalancerArn } },
      );
    }
    const changes: string[] = [];
    const subnetsNow = (current.AvailabilityZones ?? []).map((z) => z.SubnetId!).filter(Boolean);
    const subnetsChanged = !sameSet(subnetsNow, d.subnets);
    if (subnetsChanged) changes.push(`subnets ${subnetsNow.join(',')} -> ${d.subnets.join(',')}`);
    const sgsChanged = !sameSet(current.SecurityGroups ?? [], d.securityGroups);
    if (sgsChanged) changes.push(`security groups ${(current.SecurityGroups ?? []).join(',')} -> ${d.securityGroups.join(',')}`);
    const attrs = await scope.elbv2.send(new elbv2.DescribeLoadBalancerAttributesCommand({ LoadBalancerArn: current.LoadBalancerArn }), {
      abortSignal: scope.signal,
    });
    const crossZoneNow = attrs.Attributes?.find((a) => a.Key === CROSS_ZONE_ATTRIBUTE)?.Value === 'true';
    const crossZoneChanged = crossZoneNow !== d.crossZone;
    if (crossZoneChanged) changes.push(`cross-zone ${crossZoneNow} -> ${d.crossZone}`);
    scope.plan.record({
      resource: 'load-balancer',
      name: d.name,
      action: changes.length ? 'update' : 'no-change',
      id: current.LoadBalancerArn,
      detail: changes.length ? changes.join('; ') : 'network',
    });
    if (!scope.dryRun && changes.length) {
      const arn = current.LoadBalancerArn!;
      if (subnetsChanged) {
        log.info('Setting load balancer subnets', { subnets: d.subnets });
        await scope.elbv2.send(new elbv2.SetSubnetsCommand({ LoadBalancerArn: arn, Subnets: d.subnets }), { abortSignal: scope.signal });
      }
      if (sgsChanged) {
        log.info('Setting load balancer security groups', { securityGroups: d.securityGroups });
        await scope.elbv2.send(new elbv2.SetSecurityGroupsCommand({ LoadBalancerArn: arn, SecurityGroups: d.securityGroups }), { abortSignal: scope.signal });
      }
      if (crossZoneChanged) await setCrossZone(scope, arn, d.crossZone);
    }
  } else {
    scope.plan.record({ resource: 'load-balancer', name: d.name, action: 'create', ...(scope.dryRun ? { id: NEW_LB } : {}), detail: `network, ${d.scheme}` });
    if (!scope.dryRun) {
      log.info('Creating network load balancer', { scheme: d.scheme, subnets: d.subnets });
      const out = await scope.elbv2.send(
        new elbv2.CreateLoadBalancerCommand({
          Name: d.name,
          Type: 'network',
          Scheme: d.scheme,
          Subnets: d.subnets,
          SecurityGroups: d.securityGroups,
          Tags: elbTags(d.tags),
        }),
        { abortSignal: scope.signal },
      );
      current = out.LoadBalancers?.[0];
      if (!current?.LoadBalancerArn) throw new TransientError('LB_CREATE_EMPTY', `CreateLoadBalancer for ${d.name} returned no load balancer`);
      // A new NLB has cross-zone off: set it only when the spec wants it on.
      if (d.crossZone) await setCrossZone(scope, current.LoadBalancerArn, true);
    }
  }
  const lbArn = current?.LoadBalancerArn ?? NEW_LB;

  // The target group.
  if (group) {
    if (group.Protocol !== 'TCP' || group.Port !== TARGET_PORT || group.VpcId !== d.vpcId) {
      throw new ConflictError('LB_TARGET_GROUP_DRIFT', `target group ${tgName} is ${group.Protocol}:${group.Port} in ${group.VpcId}; the spec wants TCP:${TARGET_PORT} in ${d.vpcId}`, {
        hint: 'protocol, port and VPC of a target group cannot change: delete it and run again',
        details: { arn: group.TargetGroupArn },
      });
    }
    const changes = healthCheckDrift(group, d.healthCheck);
    const attrs = await scope.elbv2.send(new elbv2.DescribeTargetGroupAttributesCommand({ TargetGroupArn: group.TargetGroupArn }), {
      abortSignal: scope.signal,
    });
    const preserveNow = attrs.Attributes?.find((a) => a.Key === PRESERVE_CLIENT_IP_ATTRIBUTE)?.Value;
    // Absent (moto, older target groups) counts as what we set.
    const preserveChanged = preserveNow !== undefined && preserveNow !== 'false';
    if (preserveChanged) changes.push(`client IP preservation ${preserveNow} -> false`);
    scope.plan.record({
      resource: 'target-group',
      name: tgName,
      action: changes.length ? 'update' : 'no-change',
      id: group.TargetGroupArn,
      detail: changes.length ? changes.join('; ') : `TCP:${TARGET_PORT}`,
    });
    if (!scope.dryRun && changes.length) {
      if (healthCheckDrift(group, d.healthCheck).length) {
        log.info('Updating target group health check', { targetGroup: tgName });
        await scope.elbv2.send(new elbv2.ModifyTargetGroupCommand({ TargetGroupArn: group.TargetGroupArn, ...targetGroupHealthCheckInput(d.healthCheck) }), {
          abortSignal: scope.signal,
        });
      }
      if (preserveChanged) await setTargetGroupAttributes(scope, group.TargetGroupArn!);
    }
  } else {
    scope.plan.record({ resource: 'target-group', name: tgName, action: 'create', ...(scope.dryRun ? { id: NEW_TG } : {}), detail: `TCP:${TARGET_PORT}, health check ${d.healthCheck.protocol}` });
    if (!scope.dryRun) {
      log.info('Creating target group', { targetGroup: tgName, healthCheck: d.healthCheck.protocol });
      const out = await scope.elbv2.send(
        new elbv2.CreateTargetGroupCommand({
          Name: tgName,
          Protocol: 'TCP',
          Port: TARGET_PORT,
          VpcId: d.vpcId,
          TargetType: 'instance',
          ...targetGroupHealthCheckInput(d.healthCheck),
          Tags: elbTags(d.tags),
        }),
        { abortSignal: scope.signal },
      );
      group = out.TargetGroups?.[0];
      if (!group?.TargetGroupArn) throw new TransientError('LB_CREATE_EMPTY', `CreateTargetGroup for ${tgName} returned no target group`);
      await setTargetGroupAttributes(scope, group.TargetGroupArn);
    }
  }
  const tgArn = group?.TargetGroupArn ?? NEW_TG;

  // The listener: port -> target group.
  const listeners = lbFound
    ? ((await scope.elbv2.send(new elbv2.DescribeListenersCommand({ LoadBalancerArn: lbArn }), { abortSignal: scope.signal })).Listeners ?? [])
    : [];
  const listener = listeners.find((l) => l.Port === d.port);
  const forwardsToUs = (l: elbv2.Listener) =>
    l.Protocol === 'TCP' && l.DefaultActions?.length === 1 && l.DefaultActions[0]!.Type === 'forward' && l.DefaultActions[0]!.TargetGroupArn === tgArn;
  const action = { Type: 'forward' as const, TargetGroupArn: tgArn };
  const listenerName = `${d.name}:${d.port}`;
  if (!listener) {
    scope.plan.record({ resource: 'listener', name: listenerName, action: 'create', detail: `TCP:${d.port} -> ${tgName}` });
    if (!scope.dryRun) {
      log.info('Creating listener', { port: d.port, targetGroup: tgName });
      await scope.elbv2.send(
        new elbv2.CreateListenerCommand({ LoadBalancerArn: lbArn, Protocol: 'TCP', Port: d.port, DefaultActions: [action], Tags: elbTags(d.tags) }),
        { abortSignal: scope.signal },
      );
    }
  } else if (!forwardsToUs(listener)) {
    scope.plan.record({ resource: 'listener', name: listenerName, action: 'update', id: listener.ListenerArn, detail: `TCP:${d.port} -> ${tgName}` });
    if (!scope.dryRun) {
      log.info('Updating listener', { port: d.port, targetGroup: tgName });
      await scope.elbv2.send(new elbv2.ModifyListenerCommand({ ListenerArn: listener.ListenerArn, Protocol: 'TCP', Port: d.port, DefaultActions: [action] }), {
        abortSignal: scope.signal,
      });
    }
  } else {
    scope.plan.record({ resource: 'listener', name: listenerName, action: 'no-change', id: listener.ListenerArn });
  }

  if (scope.dryRun && !current) {
    return { type: 'nlb', name: d.name, arn: NEW_LB, dnsName: NEW_LB, targetGroupArn: tgArn, scheme: d.scheme };
  }
  const active = current!.State?.Code === 'active' || scope.dryRun ? current! : await waitActive(scope, current!.LoadBalancerArn!, d.name);
  return { type: 'nlb', name: d.name, arn: active.LoadBalancerArn!, dnsName: active.DNSName ?? '', targetGroupArn: tgArn, scheme: d.scheme };
}

async function setCrossZone(scope: ClusterScope, arn: string, enabled: boolean): Promise<void> {
  scope.log.info('Setting cross-zone load balancing', { loadBalancerArn: arn, enabled });
  await scope.elbv2.send(
    new elbv2.ModifyLoadBalancerAttributesCommand({ LoadBalancerArn: arn, Attributes: [{ Key: CROSS_ZONE_ATTRIBUTE, Value: String(enabled) }] }),
    { abortSignal: scope.signal },
  );
}

async function setTargetGroupAttributes(scope: ClusterScope, arn: string): Promise<void> {
  await scope.elbv2.send(
    new elbv2.ModifyTargetGroupAttributesCommand({ TargetGroupArn: arn, Attributes: [{ Key: PRESERVE_CLIENT_IP_ATTRIBUTE, Value: 'false' }] }),
    { abortSignal: scope.signal },
  );
}

async function waitActive(scope: ClusterScope, arn: string, name: string): Promise<elbv2.LoadBalancer> {
  scope.log.info('Waiting for load balancer to be active', { loadBalancer: name });
  const result = await waitFor(
    async () => {
      const out = await scope.elbv2.send(new elbv2.DescribeLoadBalancersCommand({ LoadBalancerArns: [arn] }), { abortSignal: scope.signal });
      const lb = out.LoadBalancers?.[0];
      const state = lb?.State?.Code;
      return state === 'active' || state === 'failed' ? lb : undefined;
    },
    { description: `load balancer ${name} to be active`, timeoutMs: scope.timeouts.loadBalancerMs, signal: scope.signal, minDelayMs: 2000 },
  );
  if (result.State?.Code === 'failed') {
    throw new TransientError('LB_FAILED', `load balancer ${name} is in state failed: ${result.State.Reason ?? 'no reason given'}`, { details: { arn } });
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Classic ELB

async function describeClassicByName(scope: ClusterScope, name: string): Promise<elb.LoadBalancerDescription[]> {
  try {
    const out = await scope.elb.send(new elb.DescribeLoadBalancersCommand({ LoadBalancerNames: [name] }), { abortSignal: scope.signal });
    return out.LoadBalancerDescriptions ?? [];
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

/** Tags of classic ELBs by name, 20 at a time. */
async function classicTags(scope: ClusterScope, names: string[]): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>();
  for (let i = 0; i < names.length; i += TAG_BATCH) {
    const page = await scope.elb.send(new elb.DescribeTagsCommand({ LoadBalancerNames: names.slice(i, i + TAG_BATCH) }), { abortSignal: scope.signal });
    for (const d of page.TagDescriptions ?? []) if (d.LoadBalancerName) out.set(d.LoadBalancerName, fromTagList(d.Tags));
  }
  return out;
}

function classicHealthCheck(hc: HealthCheck): elb.HealthCheck {
  return {
    Target: `${hc.protocol}:${hc.port}${hc.path ?? ''}`,
    Interval: hc.intervalSeconds,
    Timeout: hc.timeoutSeconds,
    HealthyThreshold: hc.thresholdCount,
    UnhealthyThreshold: hc.unhealthyThresholdCount,
  };
}

function classicAttributes(d: Desired): elb.LoadBalancerAttributes {
  return { CrossZoneLoadBalancing: { Enabled: d.crossZone }, ConnectionSettings: { IdleTimeout: CLASSIC_IDLE_TIMEOUT_SECONDS } };
}

async function reconcileClassicLoadBalancer(scope: ClusterScope, d: Desired): Promise<LoadBalancerResult> {
  const log = scope.log.child({ loadBalancer: d.name });
  const lbs = await describeClassicByName(scope, d.name);
  const tags = lbs.length ? await classicTags(scope, [d.name]) : new Map<string, Record<string, string>>();
  const one = expectAtMostOne(
    lbs.map((x) => found(x, x.LoadBalancerName, tags.get(x.LoadBalancerName!) ?? {}, scope.clusterName)),
    'load balancer',
    d.name,
    scope.clusterName,
  );
  const listener: elb.Listener = { Protocol: 'TCP', LoadBalancerPort: d.port, InstanceProtocol: 'TCP', InstancePort: TARGET_PORT };
  const healthCheck = classicHealthCheck(d.healthCheck);
  const wantAttrs = classicAttributes(d);

  if (!one) {
    scope.plan.record({ resource: 'load-balancer', name: d.name, action: 'create', ...(scope.dryRun ? { id: NEW_LB } : {}), detail: `classic, ${d.scheme}` });
    if (scope.dryRun) return { type: 'classic', name: d.name, dnsName: NEW_LB, scheme: d.scheme };
    log.info('Creating classic load balancer', { scheme: d.scheme, subnets: d.subnets });
    const out = await scope.elb.send(
      new elb.CreateLoadBalancerCommand({
        LoadBalancerName: d.name,
        Scheme: d.scheme,
        Subnets: d.subnets,
        SecurityGroups: d.securityGroups,
        Listeners: [listener],
        Tags: elbTags(d.tags),
      }),
      { abortSignal: scope.signal },
    );
    await scope.elb.send(new elb.ConfigureHealthCheckCommand({ LoadBalancerName: d.name, HealthCheck: healthCheck }), { abortSignal: scope.signal });
    await scope.elb.send(new elb.ModifyLoadBalancerAttributesCommand({ LoadBalancerName: d.name, LoadBalancerAttributes: wantAttrs }), {
      abortSignal: scope.signal,
    });
    return { type: 'classic', name: d.name, dnsName: out.DNSName ?? '', scheme: d.scheme };
  }

  const current = one.item;
  if ((current.Scheme ?? 'internet-facing') !== d.scheme || (current.VPCId && current.VPCId !== d.vpcId)) {
    throw new ConflictError('LB_DRIFT', `load balancer ${d.name} is ${current.Scheme} in ${current.VPCId}; the spec wants ${d.scheme} in ${d.vpcId}`, {
      hint: 'scheme and VPC of a load balancer cannot change in place: delete it and run again to recreate it',
    });
  }
  const changes: string[] = [];
  const haveListener = current.ListenerDescriptions?.map((l) => l.Listener).find((l) => l?.LoadBalancerPort === d.port);
  const listenerOk =
    haveListener?.Protocol?.toUpperCase() === 'TCP' && haveListener.InstancePort === TARGET_PORT && haveListener.InstanceProtocol?.toUpperCase() === 'TCP';
  if (!listenerOk) changes.push(`listener TCP:${d.port} -> TCP:${TARGET_PORT}`);
  const hc = current.HealthCheck;
  const healthOk =
    hc !== undefined &&
    hc.Target === healthCheck.Target &&
    hc.Interval === healthCheck.Interval &&
    hc.Timeout === healthCheck.Timeout &&
    hc.HealthyThreshold === healthCheck.HealthyThreshold &&
    hc.UnhealthyThreshold === healthCheck.UnhealthyThreshold;
  if (!healthOk) changes.push(`health check ${hc?.Target ?? 'none'} -> ${healthCheck.Target}`);
  const subnetsNow = current.Subnets ?? [];
  const addSubnets = d.subnets.filter((s) => !subnetsNow.includes(s));
  const dropSubnets = subnetsNow.filter((s) => !d.subnets.includes(s));
  if (addSubnets.length || dropSubnets.length) changes.push(`subnets ${subnetsNow.join(',')} -> ${d.subnets.join(',')}`);
  const sgsOk = sameSet(current.SecurityGroups ?? [], d.securityGroups);
  if (!sgsOk) changes.push(`security groups ${(current.SecurityGroups ?? []).join(',')} -> ${d.securityGroups.join(',')}`);
  const attrs = (await scope.elb.send(new elb.DescribeLoadBalancerAttributesCommand({ LoadBalancerName: d.name }), { abortSignal: scope.signal }))
    .LoadBalancerAttributes;
  const attrsOk =
    (attrs?.CrossZoneLoadBalancing?.Enabled ?? false) === d.crossZone && attrs?.ConnectionSettings?.IdleTimeout === CLASSIC_IDLE_TIMEOUT_SECONDS;
  if (!attrsOk) changes.push(`cross-zone ${attrs?.CrossZoneLoadBalancing?.Enabled ?? false} -> ${d.crossZone}, idle timeout -> ${CLASSIC_IDLE_TIMEOUT_SECONDS}s`);
  scope.plan.record({ resource: 'load-balancer', name: d.name, action: changes.length ? 'update' : 'no-change', id: d.name, detail: changes.length ? changes.join('; ') : 'classic' });

  if (!scope.dryRun && changes.length) {
    const LoadBalancerName = d.name;
    const opts = { abortSignal: scope.signal };
    if (!listenerOk) {
      log.info('Replacing load balancer listener', { port: d.port });
      if (haveListener) await scope.elb.send(new elb.DeleteLoadBalancerListenersCommand({ LoadBalancerName, LoadBalancerPorts: [d.port] }), opts);
      await scope.elb.send(new elb.CreateLoadBalancerListenersCommand({ LoadBalancerName, Listeners: [listener] }), opts);
    }
    if (!healthOk) {
      log.info('Configuring load balancer health check', { target: healthCheck.Target });
      await scope.elb.send(new elb.ConfigureHealthCheckCommand({ LoadBalancerName, HealthCheck: healthCheck }), opts);
    }
    if (addSubnets.length) await scope.elb.send(new elb.AttachLoadBalancerToSubnetsCommand({ LoadBalancerName, Subnets: addSubnets }), opts);
    if (dropSubnets.length) await scope.elb.send(new elb.DetachLoadBalancerFromSubnetsCommand({ LoadBalancerName, Subnets: dropSubnets }), opts);
    if (!sgsOk) await scope.elb.send(new elb.ApplySecurityGroupsToLoadBalancerCommand({ LoadBalancerName, SecurityGroups: d.securityGroups }), opts);
    if (!attrsOk) await scope.elb.send(new elb.ModifyLoadBalancerAttributesCommand({ LoadBalancerName, LoadBalancerAttributes: wantAttrs }), opts);
  }
  return { type: 'classic', name: d.name, dnsName: current.DNSName ?? '', scheme: d.scheme };
}

// ---------------------------------------------------------------------------------------------
// Delete

/** owned: capflow's (CAPA tag) or the cloud controller's (kubernetes.io/cluster tag); shared on either is never ours. */
function clusterOwnership(tags: Record<string, string>, clusterName: string): 'owned' | 'shared' | 'unowned' {
  const values = [tags[capaClusterTag(clusterName)], tags[k8sClusterTag(clusterName)]];
  if (values.includes('shared')) return 'shared';
  return values.includes('owned') ? 'owned' : 'unowned';
}

function describeRole(tags: Record<string, string>, clusterName: string): string {
  return tags[capaClusterTag(clusterName)] === 'owned' ? 'capflow' : 'cloud controller (Service)';
}

async function listV2(scope: ClusterScope): Promise<elbv2.LoadBalancer[]> {
  const out: elbv2.LoadBalancer[] = [];
  let Marker: string | undefined;
  do {
    const page = await scope.elbv2.send(new elbv2.DescribeLoadBalancersCommand({ Marker }), { abortSignal: scope.signal });
    out.push(...(page.LoadBalancers ?? []));
    Marker = page.NextMarker;
  } while (Marker);
  return out;
}

async function listTargetGroups(scope: ClusterScope): Promise<elbv2.TargetGroup[]> {
  const out: elbv2.TargetGroup[] = [];
  let Marker: string | undefined;
  do {
    const page = await scope.elbv2.send(new elbv2.DescribeTargetGroupsCommand({ Marker }), { abortSignal: scope.signal });
    out.push(...(page.TargetGroups ?? []));
    Marker = page.NextMarker;
  } while (Marker);
  return out;
}

async function listClassic(scope: ClusterScope): Promise<elb.LoadBalancerDescription[]> {
  const out: elb.LoadBalancerDescription[] = [];
  let Marker: string | undefined;
  do {
    const page = await scope.elb.send(new elb.DescribeLoadBalancersCommand({ Marker }), { abortSignal: scope.signal });
    out.push(...(page.LoadBalancerDescriptions ?? []));
    Marker = page.NextMarker;
  } while (Marker);
  return out;
}

/**
 * Deletes the cluster's load balancers (in `vpcId` when given): capflow's API server load balancer
 * and those the cloud controller created for Services (tagged kubernetes.io/cluster/<name>=owned),
 * ELBv2 and classic, then their target groups. It does not wait for them to be gone: their
 * network interfaces stay a while after DeleteLoadBalancer on AWS, and the security groups and
 * subnets they hold retry DependencyViolation until they go. Load balancers without the cluster's
 * tag, or tagged `shared`, are never touched. (A classic ELB's `k8s-elb-*` security group and the
 * node group rules naming it go with the security groups: deleteSecurityGroups.)
 */
export async function deleteLoadBalancers(scope: ClusterScope, vpcId: string | undefined): Promise<void> {
  await deleteV2LoadBalancers(scope, vpcId);
  await deleteClassicLoadBalancers(scope, vpcId);
}

async function deleteV2LoadBalancers(scope: ClusterScope, vpcId: string | undefined): Promise<void> {
  const inVpc = <T extends { VpcId?: string }>(x: T) => vpcId === undefined || x.VpcId === vpcId;
  const lbs = (await listV2(scope)).filter(inVpc);
  const tgs = (await listTargetGroups(scope)).filter(inVpc);
  const tags = await v2Tags(scope, [...lbs.map((l) => l.LoadBalancerArn!), ...tgs.map((t) => t.TargetGroupArn!)]);
  const doomed: elbv2.LoadBalancer[] = [];
  for (const lb of lbs) {
    const t = tags.get(lb.LoadBalancerArn!) ?? {};
    const ownership = clusterOwnership(t, scope.clusterName);
    if (ownership === 'owned') {
      doomed.push(lb);
      scope.plan.record({ resource: 'load-balancer', name: lb.LoadBalancerName!, action: 'delete', id: lb.LoadBalancerArn, detail: `${lb.Type}, ${describeRole(t, scope.clusterName)}` });
    } else if (ownership === 'shared') {
      scope.plan.record({ resource: 'load-balancer', name: lb.LoadBalancerName!, action: 'skip', id: lb.LoadBalancerArn, detail: 'shared' });
    }
  }
  const doomedArns = new Set(doomed.map((l) => l.LoadBalancerArn!));
  // Target groups: tagged ours, or serving only load balancers we delete (and not marked shared).
  const doomedGroups = tgs.filter((tg) => {
    const ownership = clusterOwnership(tags.get(tg.TargetGroupArn!) ?? {}, scope.clusterName);
    if (ownership === 'shared') return false;
    if (ownership === 'owned') return true;
    const users = tg.LoadBalancerArns ?? [];
    return users.length > 0 && users.every((a) => doomedArns.has(a));
  });
  for (const tg of doomedGroups) scope.plan.record({ resource: 'target-group', name: tg.TargetGroupName!, action: 'delete', id: tg.TargetGroupArn });
  if (scope.dryRun) return;

  for (const lb of doomed) {
    scope.log.info('Deleting load balancer', { loadBalancer: lb.LoadBalancerName, arn: lb.LoadBalancerArn });
    try {
      await scope.elbv2.send(new elbv2.DeleteLoadBalancerCommand({ LoadBalancerArn: lb.LoadBalancerArn }), { abortSignal: scope.signal });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  // No wait for the load balancers to be gone: their network interfaces outlive them on AWS, so
  // what they hold (target groups, security groups, subnets) retries on its own error instead.
  // A target group stays in use for a moment after its load balancer goes: retry ResourceInUse.
  const remaining = new Map(doomedGroups.map((t) => [t.TargetGroupArn!, t]));
  let fatal: Error | undefined;
  for (const tg of doomedGroups) scope.log.info('Deleting target group', { targetGroup: tg.TargetGroupName, arn: tg.TargetGroupArn });
  if (remaining.size > 0) {
    try {
      await waitFor(
        async () => {
          for (const arn of [...remaining.keys()]) {
            try {
              await scope.elbv2.send(new elbv2.DeleteTargetGroupCommand({ TargetGroupArn: arn }), { abortSignal: scope.signal });
              remaining.delete(arn);
            } catch (err) {
              if (isNotFound(err)) remaining.delete(arn);
              else if (!isDependencyViolation(err)) {
                fatal = err instanceof Error ? err : new Error(String(err));
                return true;
              }
            }
          }
          return remaining.size === 0 ? true : undefined;
        },
        { description: `target groups ${[...remaining.values()].map((t) => t.TargetGroupName).join(', ')} to be free`, timeoutMs: scope.timeouts.loadBalancerMs, signal: scope.signal, minDelayMs: 1000 },
      );
    } catch (err) {
      if (isCapflowError(err) && err.code === 'WAIT_TIMEOUT') {
        throw new TransientError('LB_TARGET_GROUP_IN_USE', `target groups ${[...remaining.keys()].join(', ')} are still in use`, { cause: err });
      }
      throw err;
    }
    if (fatal !== undefined) throw fatal;
  }
}

async function deleteClassicLoadBalancers(scope: ClusterScope, vpcId: string | undefined): Promise<void> {
  const lbs = (await listClassic(scope)).filter((l) => vpcId === undefined || l.VPCId === vpcId);
  if (lbs.length === 0) return;
  const tags = await classicTags(scope, lbs.map((l) => l.LoadBalancerName!));
  const doomed: string[] = [];
  for (const lb of lbs) {
    const name = lb.LoadBalancerName!;
    const t = tags.get(name) ?? {};
    const ownership = clusterOwnership(t, scope.clusterName);
    if (ownership === 'owned') {
      doomed.push(name);
      scope.plan.record({ resource: 'load-balancer', name, action: 'delete', id: name, detail: `classic, ${describeRole(t, scope.clusterName)}` });
    } else if (ownership === 'shared') {
      scope.plan.record({ resource: 'load-balancer', name, action: 'skip', id: name, detail: 'shared' });
    }
  }
  if (scope.dryRun || doomed.length === 0) return;
  for (const name of doomed) {
    scope.log.info('Deleting classic load balancer', { loadBalancer: name });
    try {
      await scope.elb.send(new elb.DeleteLoadBalancerCommand({ LoadBalancerName: name }), { abortSignal: scope.signal });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
