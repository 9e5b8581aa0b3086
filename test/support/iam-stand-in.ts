/**
 * IAM tag conditions (stand-in): moto 5 checks a caller's policy by action and resource pattern
 * only; a statement with a Condition it cannot verify denies outright, and it passes no resource or
 * request tags to any condition. So moto gets the generated policy without its conditions (moto
 * enforces the action part), and this stand-in, served by the fault proxy, evaluates the whole
 * generated policy for each call of the restricted caller as AWS authorizes it:
 *
 * - every existing resource the call names (VpcId, SubnetId, GroupId, InstanceId.N, ImageId,
 *   LoadBalancerArn, AutoScalingGroupName, SecretId, ...) is checked as its ARN, with its tags (read
 *   from moto with the admin's keys, only when a condition asks) as aws:ResourceTag/<key>;
 * - every resource a create call makes is checked as its ARN with the request's tags for that
 *   resource type (TagSpecification, Tags) as aws:RequestTag/<key>, and when tags are given, the
 *   service's tagging action too (ec2:CreateTags with ec2:CreateAction, elasticloadbalancing:AddTags
 *   with elasticloadbalancing:CreateAction, autoscaling:CreateOrUpdateTags, secretsmanager:TagResource);
 * - IAM roles, instance profiles and OIDC providers, and EKS clusters, node groups, addons and
 *   access entries, are checked the same way (their tags read from moto, or through the fault proxy
 *   for what its EKS stand-in holds); a call that hands a role to a service (EKS CreateCluster's
 *   roleArn, CreateNodegroup's nodeRole) is checked for iam:PassRole with iam:PassedToService, and
 *   CreateServiceLinkedRole with iam:AWSServiceName;
 * - reads are checked on "*".
 *
 * A call any check denies is answered as AWS answers it (EC2: 403 UnauthorizedOperation; the query
 * services: 403 AccessDenied; JSON: AccessDeniedException) and never reaches moto. The evaluator knows
 * Allow/Deny, Action and Resource wildcards and the StringEquals, StringLike and Null operators: what
 * src/aws/iam-policy.ts writes.
 */
import { randomUUID } from 'node:crypto';
import { DescribeTagsCommand, DescribeKeyPairsCommand, DescribeRouteTablesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DescribeTagsCommand as ElbDescribeTagsCommand, ElasticLoadBalancingV2Client } from '@aws-sdk/client-elastic-load-balancing-v2';
import { AutoScalingClient, DescribeTagsCommand as AsgDescribeTagsCommand } from '@aws-sdk/client-auto-scaling';
import { DescribeSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { CreateAccessKeyCommand, CreateUserCommand, GetInstanceProfileCommand, GetOpenIDConnectProviderCommand, IAMClient, ListRoleTagsCommand, PutUserPolicyCommand } from '@aws-sdk/client-iam';
import { DescribeAccessEntryCommand, DescribeAddonCommand, DescribeClusterCommand, DescribeNodegroupCommand, EKSClient, ListTagsForResourceCommand } from '@aws-sdk/client-eks';
import type { PolicyDocument } from '../../src/aws/iam-policy.js';

export const ACCOUNT = '123456789012';

/** The policy as moto can enforce it: the same actions, no conditions, any resource (moto checks EC2 calls on "*"). */
export function motoView(policy: PolicyDocument): PolicyDocument {
  return { Version: policy.Version, Statement: policy.Statement.map(({ Sid, Effect, Action }) => ({ Sid, Effect, Action, Resource: '*' })) };
}

/** An IAM user holding exactly `doc` (inline), and its access key. */
export async function createIamUser(iam: IAMClient, name: string, doc: PolicyDocument): Promise<{ accessKeyId: string; secretAccessKey: string }> {
  await iam.send(new CreateUserCommand({ UserName: name }));
  await iam.send(new PutUserPolicyCommand({ UserName: name, PolicyName: `${name}-policy`, PolicyDocument: JSON.stringify(doc) }));
  const key = (await iam.send(new CreateAccessKeyCommand({ UserName: name }))).AccessKey!;
  return { accessKeyId: key.AccessKeyId!, secretAccessKey: key.SecretAccessKey! };
}

/** moto's IAM enforcement: 'inf' off; n: the next n calls pass unauthenticated, every later one is checked. */
export async function setMotoAuth(endpoint: string, count: number | 'inf'): Promise<void> {
  const res = await fetch(`${endpoint}/moto-api/reset-auth`, { method: 'POST', body: String(count) });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`moto reset-auth answered ${res.status}`);
}

export interface AuthorizeRequest {
  service: string;
  action: string;
  protocol: 'ec2' | 'query' | 'json' | 'rest-json';
  params: Record<string, string>;
  body: Buffer;
  accessKeyId: string | undefined;
  /** From the SigV4 credential scope: moto keeps each region's resources apart. */
  region: string | undefined;
}

export interface Denial {
  action: string;
  /** The IAM action that was not allowed (the call's own, or its tagging action). */
  iamAction: string;
  resource: string;
  answer: string;
}

export interface IamStandIn {
  /** undefined: allowed (forward to moto); else the error answer. */
  authorize(r: AuthorizeRequest): Promise<{ status: number; headers: Record<string, string>; body: string } | undefined>;
  denials: Denial[];
  /** Calls the stand-in checked (the restricted key's). */
  checked: number;
}

export interface IamStandInOptions {
  policy: PolicyDocument;
  /** The restricted user's access key: other callers pass unchecked. */
  accessKeyId: string;
  /** moto itself (not the proxy), and keys allowed to read tags there. */
  motoEndpoint: string;
  /** Where EKS tags are read: the fault proxy, whose EKS stand-in holds addons and access entries (default: moto). */
  eksEndpoint?: string;
  admin: { accessKeyId: string; secretAccessKey: string };
}

interface Check {
  iamAction: string;
  arn: string;
  /** Context keys known up front (request tags, CreateAction). */
  context: Record<string, string>;
  /** Existing resource: its tags, read when a condition needs them. */
  tags?: () => Promise<Record<string, string>>;
}

const EC2_TYPES: Array<[RegExp, string]> = [
  [/^vpc-/, 'vpc'],
  [/^subnet-/, 'subnet'],
  [/^sg-/, 'security-group'],
  [/^sgr-/, 'security-group-rule'],
  [/^igw-/, 'internet-gateway'],
  [/^nat-/, 'natgateway'],
  [/^eipalloc-/, 'elastic-ip'],
  [/^rtb-/, 'route-table'],
  [/^i-/, 'instance'],
  [/^lt-/, 'launch-template'],
  [/^ami-/, 'image'],
  [/^eni-/, 'network-interface'],
  [/^vol-/, 'volume'],
];

/** What each EC2 create action makes (resource type, and the TagSpecification ResourceType that tags it). */
const EC2_CREATES: Record<string, string[]> = {
  CreateVpc: ['vpc'],
  CreateSubnet: ['subnet'],
  CreateSecurityGroup: ['security-group'],
  CreateInternetGateway: ['internet-gateway'],
  AllocateAddress: ['elastic-ip'],
  CreateNatGateway: ['natgateway'],
  CreateRouteTable: ['route-table'],
  RunInstances: ['instance', 'volume', 'network-interface'],
  CreateLaunchTemplate: ['launch-template'],
};
/** TagSpecification ResourceType of a created type (EC2 spells a few differently from their ARNs). */
const TAG_SPEC_TYPE: Record<string, string> = { natgateway: 'natgateway', 'elastic-ip': 'elastic-ip' };

/** EC2 parameters that name an existing resource AWS authorizes for the action; others (rule sources, route targets) it does not. */
function ec2NamedIds(action: string, params: Record<string, string>): string[] {
  const ids: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    // Rule sources, tags, and a launch template's data (checked when an instance is launched from it) are not authorized here.
    if (/^(IpPermissions|TagSpecification|LaunchTemplateData)\./.test(k) || k === 'ClientToken') continue;
    if (/Route$/.test(action) && !/^RouteTableId$/.test(k)) continue; // CreateRoute/ReplaceRoute: the route table only
    if (action === 'CreateTags' && !/^ResourceId\.\d+$/.test(k)) continue;
    if (!/(Id(\.\d+)?|Ids?\.\d+)$/.test(k)) continue;
    if (EC2_TYPES.some(([re]) => re.test(v))) ids.push(v);
  }
  return ids;
}

function wildcard(pattern: string, value: string, caseInsensitive = false): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, caseInsensitive ? 'i' : '');
  return re.test(value);
}

const list = (v: string | string[]) => (Array.isArray(v) ? v : [v]);

/** Whether the policy allows one (action, resource, context); tags are read only when a condition asks. */
export async function evaluate(policy: PolicyDocument, c: Check): Promise<'allow' | 'deny' | 'implicit-deny'> {
  let tags: Record<string, string> | undefined;
  const value = async (key: string): Promise<string | undefined> => {
    if (key in c.context) return c.context[key];
    const m = /^(?:aws|ec2|elasticloadbalancing|autoscaling|secretsmanager|iam|eks):ResourceTag\/(.+)$/.exec(key);
    if (m && c.tags) {
      tags ??= await c.tags();
      return tags[m[1]!];
    }
    return undefined;
  };
  let allowed = false;
  for (const s of policy.Statement) {
    if (!list(s.Action).some((a) => wildcard(a, c.iamAction, true))) continue;
    if (!list(s.Resource).some((r) => wildcard(r, c.arn))) continue;
    let holds = true;
    for (const [op, keys] of Object.entries(s.Condition ?? {})) {
      for (const [key, expected] of Object.entries(keys)) {
        const actual = await value(key);
        if (op === 'Null') holds &&= (actual === undefined) === (list(expected)[0] === 'true');
        else if (actual === undefined) holds = false;
        else if (op === 'StringEquals') holds &&= list(expected).includes(actual);
        else if (op === 'StringLike') holds &&= list(expected).some((e) => wildcard(e, actual));
        else throw new Error(`IAM stand-in: condition operator ${op} is not modelled`);
      }
    }
    if (!holds) continue;
    if (s.Effect === 'Deny') return 'deny';
    allowed = true;
  }
  return allowed ? 'allow' : 'implicit-deny';
}

/** Tag key/value pairs of a query-protocol list: `${prefix}.N.Key` / `.Value`. */
function queryTags(params: Record<string, string>, prefix: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) {
    const m = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.(\\d+)\\.Key$`).exec(k);
    if (m) out[v] = params[`${prefix}.${m[1]}.Value`] ?? '';
  }
  return out;
}

/** EC2 TagSpecification tags by ResourceType. */
function tagSpecs(params: Record<string, string>): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  for (const [k, v] of Object.entries(params)) {
    const m = /^TagSpecification\.(\d+)\.ResourceType$/.exec(k);
    if (m) out.set(v, queryTags(params, `TagSpecification.${m[1]}.Tag`));
  }
  return out;
}

const requestContext = (tags: Record<string, string>): Record<string, string> => {
  const ctx: Record<string, string> = {};
  for (const [k, v] of Object.entries(tags)) ctx[`aws:RequestTag/${k}`] = v;
  return ctx;
};

export function makeIamStandIn(opts: IamStandInOptions): IamStandIn {
  type Clients = { ec2: EC2Client; elbv2: ElasticLoadBalancingV2Client; asg: AutoScalingClient; sm: SecretsManagerClient; iam: IAMClient; eks: EKSClient };
  const clients = new Map<string, Clients>();
  const forRegion = (region: string): Clients => {
    let c = clients.get(region);
    if (!c) {
      const cfg = { endpoint: opts.motoEndpoint, region, credentials: opts.admin, maxAttempts: 1 };
      c = { ec2: new EC2Client(cfg), elbv2: new ElasticLoadBalancingV2Client(cfg), asg: new AutoScalingClient(cfg), sm: new SecretsManagerClient(cfg), iam: new IAMClient(cfg), eks: new EKSClient({ ...cfg, endpoint: opts.eksEndpoint ?? opts.motoEndpoint }) };
      clients.set(region, c);
    }
    return c;
  };

  async function checksOf(r: AuthorizeRequest): Promise<Check[]> {
    const region = r.region ?? 'us-east-1';
    const { ec2, elbv2, asg, sm, iam: iamClient, eks } = forRegion(region);
    const arnOf = (service: string, resource: string) => `arn:aws:${service}:${region}:${ACCOUNT}:${resource}`;
    const ec2Tags = (id: string) => async () => {
      const out = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: 'resource-id', Values: [id] }] }));
      return Object.fromEntries((out.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
    };
    const elbTags = (arn: string) => async () => {
      const out = await elbv2.send(new ElbDescribeTagsCommand({ ResourceArns: [arn] }));
      return Object.fromEntries((out.TagDescriptions?.[0]?.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
    };
    const asgTags = (name: string) => async () => {
      const out = await asg.send(new AsgDescribeTagsCommand({ Filters: [{ Name: 'auto-scaling-group', Values: [name] }] }));
      return Object.fromEntries((out.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
    };
    const secretTags = (id: string) => async () => {
      const out = await sm.send(new DescribeSecretCommand({ SecretId: id })).catch(() => ({ Tags: [] }));
      return Object.fromEntries((out.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
    };
    const p = r.params;
    const a = r.action;
    if (/^(Describe|Get|List)/.test(a) && a !== 'GetSecretValue') return [{ iamAction: `${iamPrefix(r.service)}:${a}`, arn: '*', context: {} }];
    const checks: Check[] = [];
    if (r.service === 'ec2') {
      const iam = `ec2:${a}`;
      for (const id of ec2NamedIds(a, p)) {
        const type = EC2_TYPES.find(([re]) => re.test(id))![1];
        checks.push({ iamAction: iam, arn: type === 'image' ? `arn:aws:ec2:${region}::image/${id}` : arnOf('ec2', `${type}/${id}`), context: {}, tags: ec2Tags(id) });
      }
      if (p['KeyName'] && a === 'RunInstances') {
        const keyName = p['KeyName'];
        checks.push({
          iamAction: iam,
          arn: arnOf('ec2', `key-pair/${keyName}`),
          context: {},
          tags: async () => {
            const out = await ec2.send(new DescribeKeyPairsCommand({ KeyNames: [keyName] }));
            return Object.fromEntries((out.KeyPairs?.[0]?.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));
          },
        });
      }
      if (a === 'DisassociateRouteTable' && p['AssociationId']) {
        // AWS authorizes the association's route table and subnet.
        const out = await ec2.send(new DescribeRouteTablesCommand({ Filters: [{ Name: 'association.route-table-association-id', Values: [p['AssociationId']] }] }));
        const t = out.RouteTables?.[0];
        const assoc = t?.Associations?.find((x) => x.RouteTableAssociationId === p['AssociationId']);
        if (t?.RouteTableId) checks.push({ iamAction: iam, arn: arnOf('ec2', `route-table/${t.RouteTableId}`), context: {}, tags: ec2Tags(t.RouteTableId) });
        if (assoc?.SubnetId) checks.push({ iamAction: iam, arn: arnOf('ec2', `subnet/${assoc.SubnetId}`), context: {}, tags: ec2Tags(assoc.SubnetId) });
      }
      const specs = tagSpecs(p);
      for (const type of EC2_CREATES[a] ?? []) {
        const tags = specs.get(TAG_SPEC_TYPE[type] ?? type) ?? {};
        const arn = arnOf('ec2', `${type}/*`);
        checks.push({ iamAction: iam, arn, context: requestContext(tags) });
        if (Object.keys(tags).length > 0) checks.push({ iamAction: 'ec2:CreateTags', arn, context: { ...requestContext(tags), 'ec2:CreateAction': a } });
      }
      if (a === 'CreateTags') {
        // Called directly: the new tags are request tags too.
        for (const c of checks) Object.assign(c.context, requestContext(queryTags(p, 'Tag')));
      }
      return checks;
    }
    if (r.service === 'elbv2' || r.service === 'elb') {
      const iam = `elasticloadbalancing:${a}`;
      for (const [k, v] of Object.entries(p)) {
        if (/^(LoadBalancerArn|TargetGroupArn|ListenerArn)$/.test(k) || /^DefaultActions\.member\.\d+\.TargetGroupArn$/.test(k)) {
          checks.push({ iamAction: iam, arn: v, context: {}, tags: elbTags(v) });
        }
      }
      const tags = queryTags(p, 'Tags.member');
      const created =
        a === 'CreateLoadBalancer'
          ? arnOf('elasticloadbalancing', r.service === 'elb' ? `loadbalancer/${p['LoadBalancerName']}` : `loadbalancer/${p['Type'] === 'application' ? 'app' : 'net'}/${p['Name']}/*`)
          : a === 'CreateTargetGroup'
            ? arnOf('elasticloadbalancing', `targetgroup/${p['Name']}/*`)
            : a === 'CreateListener'
              ? arnOf('elasticloadbalancing', 'listener/net/*/*/*')
              : undefined;
      if (created) {
        checks.push({ iamAction: iam, arn: created, context: requestContext(tags) });
        if (Object.keys(tags).length > 0) checks.push({ iamAction: 'elasticloadbalancing:AddTags', arn: created, context: { ...requestContext(tags), 'elasticloadbalancing:CreateAction': a } });
      }
      if (r.service === 'elb' && a !== 'CreateLoadBalancer' && p['LoadBalancerName']) {
        checks.push({ iamAction: iam, arn: arnOf('elasticloadbalancing', `loadbalancer/${p['LoadBalancerName']}`), context: {} });
      }
      return checks;
    }
    if (r.service === 'autoscaling') {
      const iam = `autoscaling:${a}`;
      const groupArn = (name: string) => arnOf('autoscaling', `autoScalingGroup:*:autoScalingGroupName/${name}`);
      const tags: Record<string, string> = {};
      for (const [k, v] of Object.entries(p)) {
        const m = /^Tags\.member\.(\d+)\.Key$/.exec(k);
        if (m) tags[v] = p[`Tags.member.${m[1]}.Value`] ?? '';
      }
      if (a === 'CreateAutoScalingGroup') {
        const arn = groupArn(p['AutoScalingGroupName'] ?? '');
        checks.push({ iamAction: iam, arn, context: requestContext(tags) });
        if (Object.keys(tags).length > 0) checks.push({ iamAction: 'autoscaling:CreateOrUpdateTags', arn, context: requestContext(tags) });
      } else {
        const names = new Set<string>();
        if (p['AutoScalingGroupName']) names.add(p['AutoScalingGroupName']);
        for (const [k, v] of Object.entries(p)) if (/^Tags\.member\.\d+\.ResourceId$/.test(k)) names.add(v);
        for (const n of names) checks.push({ iamAction: iam, arn: groupArn(n), context: a === 'CreateOrUpdateTags' ? requestContext(tags) : {}, tags: asgTags(n) });
      }
      for (const [k, v] of Object.entries(p)) {
        if (/LaunchTemplateId$/.test(k)) checks.push({ iamAction: iam, arn: arnOf('ec2', `launch-template/${v}`), context: {}, tags: ec2Tags(v) });
      }
      return checks;
    }
    if (r.service === 'secretsmanager') {
      const iam = `secretsmanager:${a}`;
      const json = JSON.parse(r.body.toString('utf8') || '{}') as { Name?: string; SecretId?: string; Tags?: Array<{ Key: string; Value: string }> };
      if (a === 'CreateSecret') {
        const tags = Object.fromEntries((json.Tags ?? []).map((t) => [t.Key, t.Value]));
        const arn = arnOf('secretsmanager', `secret:${json.Name ?? ''}-*`);
        checks.push({ iamAction: iam, arn, context: requestContext(tags) });
        if (Object.keys(tags).length > 0) checks.push({ iamAction: 'secretsmanager:TagResource', arn, context: requestContext(tags) });
      } else if (json.SecretId) {
        checks.push({ iamAction: iam, arn: arnOf('secretsmanager', `secret:${json.SecretId}`), context: {}, tags: secretTags(json.SecretId) });
      }
      return checks;
    }
    if (r.service === 'iam') return iamChecks(a, p, iamClient);
    if (r.service === 'eks') return eksChecks(a, p, JSON.parse(r.body.toString('utf8') || '{}') as Record<string, unknown>, eks, arnOf);
    // Not modelled: the action on "*", so only statements without a resource restriction allow it.
    return [{ iamAction: `${iamPrefix(r.service)}:${a}`, arn: '*', context: {} }];
  }

  const standIn: IamStandIn = {
    denials: [],
    checked: 0,
    async authorize(r) {
      if (r.accessKeyId !== opts.accessKeyId) return undefined;
      standIn.checked++;
      const checks = await checksOf(r);
      if (checks.length === 0) checks.push({ iamAction: `${iamPrefix(r.service)}:${r.action}`, arn: '*', context: {} });
      for (const c of checks) {
        const verdict = await evaluate(opts.policy, c);
        if (verdict === 'allow') continue;
        const answer = deniedAnswer(r, c);
        standIn.denials.push({ action: r.action, iamAction: c.iamAction, resource: c.arn, answer: answer.code });
        return answer.response;
      }
      return undefined;
    },
  };
  return standIn;
}

const tagMap = (tags: Array<{ Key?: string | undefined; Value?: string | undefined }> | undefined): Record<string, string> => Object.fromEntries((tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']));

/** The checks of an IAM call (query protocol; IAM is global: no region in its ARNs). */
function iamChecks(a: string, p: Record<string, string>, iam: IAMClient): Check[] {
  const action = `iam:${a}`;
  const roleArn = (name: string) => `arn:aws:iam::${ACCOUNT}:role/${name}`;
  const roleTags = (name: string) => async () => tagMap((await iam.send(new ListRoleTagsCommand({ RoleName: name }))).Tags);
  const requestTags = queryTags(p, 'Tags.member');
  const checks: Check[] = [];
  if (a === 'CreateRole' || a === 'CreateOpenIDConnectProvider') {
    const arn = a === 'CreateRole' ? roleArn(p['RoleName'] ?? '') : `arn:aws:iam::${ACCOUNT}:oidc-provider/${(p['Url'] ?? '').replace(/^https:\/\//, '')}`;
    checks.push({ iamAction: action, arn, context: requestContext(requestTags) });
    if (Object.keys(requestTags).length > 0) checks.push({ iamAction: a === 'CreateRole' ? 'iam:TagRole' : 'iam:TagOpenIDConnectProvider', arn, context: requestContext(requestTags) });
    return checks;
  }
  if (a === 'CreateServiceLinkedRole') {
    return [{ iamAction: action, arn: roleArn(`aws-service-role/${p['AWSServiceName'] ?? ''}/*`), context: { 'iam:AWSServiceName': p['AWSServiceName'] ?? '' } }];
  }
  if (p['InstanceProfileName']) {
    const name = p['InstanceProfileName'];
    checks.push({ iamAction: action, arn: `arn:aws:iam::${ACCOUNT}:instance-profile/${name}`, context: {}, tags: async () => tagMap((await iam.send(new GetInstanceProfileCommand({ InstanceProfileName: name }))).InstanceProfile?.Tags) });
  } else if (p['RoleName']) {
    // AttachRolePolicy, DetachRolePolicy, DeleteRole, TagRole, UntagRole: the role.
    checks.push({ iamAction: action, arn: roleArn(p['RoleName']), context: a === 'TagRole' ? requestContext(requestTags) : {}, tags: roleTags(p['RoleName']) });
  }
  if (p['OpenIDConnectProviderArn']) {
    const arn = p['OpenIDConnectProviderArn'];
    checks.push({ iamAction: action, arn, context: {}, tags: async () => tagMap((await iam.send(new GetOpenIDConnectProviderCommand({ OpenIDConnectProviderArn: arn }))).Tags) });
  }
  return checks;
}

/** The checks of an EKS call (REST-JSON: path parameters in `p`, the JSON body in `body`). */
function eksChecks(a: string, p: Record<string, string>, body: Record<string, unknown>, eks: EKSClient, arnOf: (service: string, resource: string) => string): Check[] {
  const action = `eks:${a}`;
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  const cluster = p['name'] ?? str(body['name']);
  const clusterArn = arnOf('eks', `cluster/${cluster}`);
  const requestTags = typeof body['tags'] === 'object' && body['tags'] !== null ? (body['tags'] as Record<string, string>) : {};
  const clusterTags = () => async () => (await eks.send(new DescribeClusterCommand({ name: cluster }))).cluster?.tags ?? {};
  const passRole = (roleArn: unknown, service: string): Check[] =>
    typeof roleArn === 'string' ? [{ iamAction: 'iam:PassRole', arn: roleArn, context: { 'iam:PassedToService': service } }] : [];
  const created = (arn: string): Check[] => [
    { iamAction: action, arn, context: requestContext(requestTags) },
    ...(Object.keys(requestTags).length > 0 ? [{ iamAction: 'eks:TagResource', arn, context: requestContext(requestTags) }] : []),
  ];
  switch (a) {
    case 'CreateCluster':
      return [...created(clusterArn), ...passRole(body['roleArn'], 'eks.amazonaws.com')];
    case 'CreateNodegroup':
      return [
        ...created(arnOf('eks', `nodegroup/${cluster}/${str(body['nodegroupName'])}/*`)),
        { iamAction: action, arn: clusterArn, context: {}, tags: clusterTags() },
        ...passRole(body['nodeRole'], 'eks.amazonaws.com'),
      ];
    case 'CreateAddon':
      return [...created(arnOf('eks', `addon/${cluster}/${str(body['addonName'])}/*`)), { iamAction: action, arn: clusterArn, context: {}, tags: clusterTags() }];
    case 'CreateAccessEntry':
      return [...created(arnOf('eks', `access-entry/${cluster}/role/${ACCOUNT}/*/*`)), { iamAction: action, arn: clusterArn, context: {}, tags: clusterTags() }];
    case 'TagResource':
    case 'UntagResource': {
      const arn = p['resourceArn'] ?? '';
      return [{ iamAction: action, arn, context: a === 'TagResource' ? requestContext(requestTags) : {}, tags: async () => (await eks.send(new ListTagsForResourceCommand({ resourceArn: arn }))).tags ?? {} }];
    }
  }
  if (p['nodegroupName']) {
    const ng = p['nodegroupName'];
    return [{ iamAction: action, arn: arnOf('eks', `nodegroup/${cluster}/${ng}/*`), context: {}, tags: async () => (await eks.send(new DescribeNodegroupCommand({ clusterName: cluster, nodegroupName: ng }))).nodegroup?.tags ?? {} }];
  }
  if (p['addonName']) {
    const addon = p['addonName'];
    return [{ iamAction: action, arn: arnOf('eks', `addon/${cluster}/${addon}/*`), context: {}, tags: async () => (await eks.send(new DescribeAddonCommand({ clusterName: cluster, addonName: addon }))).addon?.tags ?? {} }];
  }
  if (p['principalArn']) {
    const principal = p['principalArn'];
    return [{ iamAction: action, arn: arnOf('eks', `access-entry/${cluster}/role/${ACCOUNT}/*/*`), context: {}, tags: async () => (await eks.send(new DescribeAccessEntryCommand({ clusterName: cluster, principalArn: principal }))).accessEntry?.tags ?? {} }];
  }
  // DeleteCluster, UpdateClusterConfig, UpdateClusterVersion: the cluster.
  return [{ iamAction: action, arn: clusterArn, context: {}, tags: clusterTags() }];
}

function iamPrefix(service: string): string {
  return service === 'elbv2' || service === 'elb' ? 'elasticloadbalancing' : service;
}

/** The denial as each protocol says it (UnauthorizedOperation for EC2, AccessDenied for the others). */
function deniedAnswer(r: AuthorizeRequest, c: Check): { code: string; response: { status: number; headers: Record<string, string>; body: string } } {
  const requestId = randomUUID();
  const message = `User: arn:aws:iam::${ACCOUNT}:user/capflow is not authorized to perform: ${c.iamAction} on resource: ${c.arn}`;
  if (r.protocol === 'ec2') {
    return {
      code: 'UnauthorizedOperation',
      response: {
        status: 403,
        headers: { 'content-type': 'text/xml;charset=UTF-8' },
        body: `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation. ${message}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`,
      },
    };
  }
  if (r.protocol === 'query') {
    return {
      code: 'AccessDenied',
      response: {
        status: 403,
        headers: { 'content-type': 'text/xml', 'x-amzn-requestid': requestId },
        body: `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>${message}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
      },
    };
  }
  return {
    code: 'AccessDeniedException',
    response: {
      status: 400,
      headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': 'AccessDeniedException', 'x-amzn-requestid': requestId },
      body: JSON.stringify({ __type: 'AccessDeniedException', message }),
    },
  };
}
