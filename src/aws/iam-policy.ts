/**
 * Least privilege (issue 17): the IAM policy each step needs, built from the calls it can make.
 *
 * Which calls: src/aws/iam-actions.generated.ts, read from each step's bundle by
 * scripts/gen-iam-actions.mjs (the SDK Command classes the step's code still imports once esbuild has
 * shaken out what the step never reaches). How each call is allowed: the table below, written from
 * the AWS Service Authorization Reference, puts every action in one of four kinds:
 *
 *   read    Describe/Get/List: Resource "*" (most support no resource-level permission at all)
 *   create  makes a resource and tags it in the same call (TagSpecifications, Tags): allowed on the
 *           created resource types only when the request carries the cluster's `capflow.io/cluster`
 *           tag (aws:RequestTag); the existing resources the call names (the VPC of a subnet, the
 *           image and subnet of an instance) get their own statement without a tag condition, since
 *           they may be the user's (a given VPC, an AMI), unless they are always ours (the load
 *           balancer a listener is made on: aws:ResourceTag)
 *   owned   changes or deletes a resource: allowed only on resources that carry the cluster's
 *           `capflow.io/cluster` tag (aws:ResourceTag), which every resource capflow creates carries
 *           from its first moment (src/aws/tags.ts); existing resources the call only names, as above
 *   any     supports no tag condition: Resource "*", with the reason (none today: every mutating
 *           call capflow makes supports aws:RequestTag or aws:ResourceTag)
 *
 * Tagging at creation is authorized as a second action by AWS (ec2:CreateTags with ec2:CreateAction,
 * elasticloadbalancing:AddTags with elasticloadbalancing:CreateAction, secretsmanager:TagResource,
 * iam:TagRole, eks:TagResource, autoscaling:CreateOrUpdateTags): those are added for the step's
 * create actions, with the same request tag condition; so are the actions AWS checks on the
 * caller's behalf (DEPENDS_ON), iam:PassRole and iam:CreateServiceLinkedRole, each restricted to the
 * services that need them. A policy is per cluster (`--cluster NAME`:
 * the tag's value must be NAME) or for every cluster (the tag must be present, any value).
 */
import { InputError } from '../core/errors.js';
import { CAPFLOW_CLUSTER_TAG } from './tags.js';
import { STEP_API_CALLS } from './iam-actions.generated.js';

export interface PolicyStatement {
  Sid: string;
  Effect: 'Allow' | 'Deny';
  Action: string[];
  Resource: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
}

export interface PolicyDocument {
  Version: '2012-10-17';
  Statement: PolicyStatement[];
}

/** IAM's service prefix of each @aws-sdk/client-<name> package. */
export const IAM_PREFIX: Readonly<Record<string, string>> = {
  ec2: 'ec2',
  'elastic-load-balancing': 'elasticloadbalancing',
  'elastic-load-balancing-v2': 'elasticloadbalancing',
  'auto-scaling': 'autoscaling',
  'secrets-manager': 'secretsmanager',
  iam: 'iam',
  eks: 'eks',
  sts: 'sts',
};

/** Resource types by IAM name, as ARN patterns ({p}: the partition). */
const ARNS: Readonly<Record<string, string>> = {
  'ec2:vpc': 'arn:{p}:ec2:*:*:vpc/*',
  'ec2:subnet': 'arn:{p}:ec2:*:*:subnet/*',
  'ec2:security-group': 'arn:{p}:ec2:*:*:security-group/*',
  'ec2:security-group-rule': 'arn:{p}:ec2:*:*:security-group-rule/*',
  'ec2:internet-gateway': 'arn:{p}:ec2:*:*:internet-gateway/*',
  'ec2:natgateway': 'arn:{p}:ec2:*:*:natgateway/*',
  'ec2:elastic-ip': 'arn:{p}:ec2:*:*:elastic-ip/*',
  'ec2:route-table': 'arn:{p}:ec2:*:*:route-table/*',
  'ec2:instance': 'arn:{p}:ec2:*:*:instance/*',
  'ec2:volume': 'arn:{p}:ec2:*:*:volume/*',
  'ec2:network-interface': 'arn:{p}:ec2:*:*:network-interface/*',
  'ec2:image': 'arn:{p}:ec2:*::image/*',
  'ec2:key-pair': 'arn:{p}:ec2:*:*:key-pair/*',
  'ec2:launch-template': 'arn:{p}:ec2:*:*:launch-template/*',
  'ec2:placement-group': 'arn:{p}:ec2:*:*:placement-group/*',
  'elb:loadbalancer': 'arn:{p}:elasticloadbalancing:*:*:loadbalancer/*',
  'elb:targetgroup': 'arn:{p}:elasticloadbalancing:*:*:targetgroup/*/*',
  'elb:listener': 'arn:{p}:elasticloadbalancing:*:*:listener/*/*/*/*',
  'autoscaling:group': 'arn:{p}:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/*',
  'secretsmanager:secret': 'arn:{p}:secretsmanager:*:*:secret:*',
  'iam:role': 'arn:{p}:iam::*:role/*',
  'iam:instance-profile': 'arn:{p}:iam::*:instance-profile/*',
  'iam:oidc-provider': 'arn:{p}:iam::*:oidc-provider/*',
  'eks:cluster': 'arn:{p}:eks:*:*:cluster/*',
  'eks:nodegroup': 'arn:{p}:eks:*:*:nodegroup/*/*/*',
  'eks:addon': 'arn:{p}:eks:*:*:addon/*/*/*',
  'eks:access-entry': 'arn:{p}:eks:*:*:access-entry/*/*/*/*/*',
};

export type ActionRule =
  | { kind: 'read' }
  | { kind: 'create'; creates: string[]; uses?: string[]; owns?: string[] }
  | { kind: 'owned'; on: string[]; uses?: string[] }
  | { kind: 'any'; why: string };

const create = (creates: string[], uses?: string[], owns?: string[]): ActionRule => ({ kind: 'create', creates, ...(uses ? { uses } : {}), ...(owns ? { owns } : {}) });
const owned = (on: string[], uses?: string[]): ActionRule => ({ kind: 'owned', on, ...(uses ? { uses } : {}) });

const SG = ['ec2:security-group'];
const RT = ['ec2:route-table'];
const LB = ['elb:loadbalancer'];
const TG = ['elb:targetgroup'];
const ASG = ['autoscaling:group'];
const ROLE = ['iam:role'];

/**
 * Every mutating action a step can call, keyed `<iam prefix>:<Action>`; reads (Describe, Get, List)
 * need no entry. scripts/gen-iam-actions.mjs finding a call that is not here fails the policy's
 * build (unclassifiedActions), so a new call is classified when it lands.
 */
export const ACTION_RULES: Readonly<Record<string, ActionRule>> = {
  // EC2: the network
  'ec2:CreateVpc': create(['ec2:vpc']),
  'ec2:ModifyVpcAttribute': owned(['ec2:vpc']),
  'ec2:DeleteVpc': owned(['ec2:vpc']),
  'ec2:CreateSubnet': create(['ec2:subnet'], ['ec2:vpc']),
  'ec2:ModifySubnetAttribute': owned(['ec2:subnet']),
  'ec2:DeleteSubnet': owned(['ec2:subnet']),
  'ec2:CreateInternetGateway': create(['ec2:internet-gateway']),
  'ec2:AttachInternetGateway': owned(['ec2:internet-gateway'], ['ec2:vpc']),
  'ec2:DetachInternetGateway': owned(['ec2:internet-gateway'], ['ec2:vpc']),
  'ec2:DeleteInternetGateway': owned(['ec2:internet-gateway']),
  'ec2:AllocateAddress': create(['ec2:elastic-ip']),
  'ec2:ReleaseAddress': owned(['ec2:elastic-ip']),
  'ec2:CreateNatGateway': create(['ec2:natgateway'], ['ec2:subnet', 'ec2:elastic-ip']),
  'ec2:DeleteNatGateway': owned(['ec2:natgateway']),
  'ec2:CreateRouteTable': create(RT, ['ec2:vpc']),
  'ec2:CreateRoute': owned(RT),
  'ec2:ReplaceRoute': owned(RT),
  'ec2:AssociateRouteTable': owned(RT, ['ec2:subnet']),
  'ec2:ReplaceRouteTableAssociation': owned(RT, ['ec2:subnet']),
  'ec2:DisassociateRouteTable': owned(RT, ['ec2:subnet']),
  'ec2:DeleteRouteTable': owned(RT),
  'ec2:CreateSecurityGroup': create(SG, ['ec2:vpc']),
  'ec2:AuthorizeSecurityGroupIngress': owned(SG, ['ec2:security-group-rule']),
  'ec2:RevokeSecurityGroupIngress': owned(SG, ['ec2:security-group-rule']),
  'ec2:UpdateSecurityGroupRuleDescriptionsIngress': owned(SG, ['ec2:security-group-rule']),
  'ec2:DeleteSecurityGroup': owned(SG),
  // CreateTags called directly updates the provenance tags (revision, spec) of resources we own.
  'ec2:CreateTags': owned(['ec2:vpc', 'ec2:subnet', 'ec2:security-group', 'ec2:internet-gateway', 'ec2:natgateway', 'ec2:elastic-ip', 'ec2:route-table', 'ec2:instance']),
  // EC2: machines
  'ec2:RunInstances': create(['ec2:instance', 'ec2:volume'], ['ec2:image', 'ec2:subnet', 'ec2:security-group', 'ec2:network-interface', 'ec2:key-pair', 'ec2:launch-template', 'ec2:placement-group']),
  'ec2:TerminateInstances': owned(['ec2:instance']),
  // Root volumes carry the cluster's tags from RunInstances. A workload's volumes (the EBS CSI
  // driver's, deleted with volumes=delete) carry kubernetes.io/cluster/<name> only: outside this policy.
  'ec2:DeleteVolume': owned(['ec2:volume']),
  'ec2:CreateLaunchTemplate': create(['ec2:launch-template']),
  'ec2:CreateLaunchTemplateVersion': owned(['ec2:launch-template']),
  'ec2:DeleteLaunchTemplate': owned(['ec2:launch-template']),
  // Load balancers (classic and v2 share the elasticloadbalancing prefix)
  'elasticloadbalancing:CreateLoadBalancer': create(LB),
  'elasticloadbalancing:CreateTargetGroup': create(TG),
  // A listener is created with tags, on a load balancer and target group of ours.
  'elasticloadbalancing:CreateListener': create(['elb:listener'], undefined, [...LB, ...TG]),
  'elasticloadbalancing:CreateLoadBalancerListeners': owned(LB),
  'elasticloadbalancing:DeleteLoadBalancerListeners': owned(LB),
  'elasticloadbalancing:ModifyListener': owned(['elb:listener'], TG),
  'elasticloadbalancing:ModifyLoadBalancerAttributes': owned(LB),
  'elasticloadbalancing:ModifyTargetGroup': owned(TG),
  'elasticloadbalancing:ModifyTargetGroupAttributes': owned(TG),
  'elasticloadbalancing:SetSecurityGroups': owned(LB),
  'elasticloadbalancing:SetSubnets': owned(LB),
  'elasticloadbalancing:ApplySecurityGroupsToLoadBalancer': owned(LB),
  'elasticloadbalancing:AttachLoadBalancerToSubnets': owned(LB),
  'elasticloadbalancing:DetachLoadBalancerFromSubnets': owned(LB),
  'elasticloadbalancing:ConfigureHealthCheck': owned(LB),
  'elasticloadbalancing:DeleteLoadBalancer': owned(LB),
  'elasticloadbalancing:DeleteTargetGroup': owned(TG),
  'elasticloadbalancing:RegisterTargets': owned(TG),
  'elasticloadbalancing:DeregisterTargets': owned(TG),
  // Auto Scaling
  'autoscaling:CreateAutoScalingGroup': create(ASG, ['ec2:launch-template']),
  'autoscaling:UpdateAutoScalingGroup': owned(ASG, ['ec2:launch-template']),
  'autoscaling:CreateOrUpdateTags': owned(ASG),
  'autoscaling:DeleteTags': owned(ASG),
  'autoscaling:StartInstanceRefresh': owned(ASG),
  'autoscaling:DeleteAutoScalingGroup': owned(ASG),
  // Secrets Manager (the machines' bootstrap payloads)
  'secretsmanager:CreateSecret': create(['secretsmanager:secret']),
  'secretsmanager:PutSecretValue': owned(['secretsmanager:secret']),
  'secretsmanager:DeleteSecret': owned(['secretsmanager:secret']),
  'secretsmanager:RestoreSecret': owned(['secretsmanager:secret']),
  // IAM (EKS roles, IRSA)
  'iam:CreateRole': create(ROLE),
  'iam:AttachRolePolicy': owned(ROLE),
  'iam:DetachRolePolicy': owned(ROLE),
  'iam:DeleteRole': owned(ROLE),
  'iam:RemoveRoleFromInstanceProfile': owned(['iam:instance-profile'], ROLE),
  'iam:CreateOpenIDConnectProvider': create(['iam:oidc-provider']),
  'iam:DeleteOpenIDConnectProvider': owned(['iam:oidc-provider']),
  // EKS
  'eks:CreateCluster': create(['eks:cluster']),
  'eks:UpdateClusterConfig': owned(['eks:cluster']),
  'eks:UpdateClusterVersion': owned(['eks:cluster']),
  'eks:DeleteCluster': owned(['eks:cluster']),
  'eks:CreateNodegroup': create(['eks:nodegroup'], ['eks:cluster']),
  'eks:UpdateNodegroupConfig': owned(['eks:nodegroup']),
  'eks:UpdateNodegroupVersion': owned(['eks:nodegroup']),
  'eks:DeleteNodegroup': owned(['eks:nodegroup']),
  'eks:CreateAddon': create(['eks:addon'], ['eks:cluster']),
  'eks:UpdateAddon': owned(['eks:addon']),
  'eks:DeleteAddon': owned(['eks:addon']),
  'eks:CreateAccessEntry': create(['eks:access-entry'], ['eks:cluster']),
  'eks:UpdateAccessEntry': owned(['eks:access-entry']),
  'eks:DeleteAccessEntry': owned(['eks:access-entry']),
  'eks:AssociateAccessPolicy': owned(['eks:access-entry']),
  'eks:DisassociateAccessPolicy': owned(['eks:access-entry']),
};

/** The action, from its name, that reads only. */
export function isReadAction(action: string): boolean {
  return /^(Describe|Get|List)/.test(action);
}

/** Reads that return secrets: they are "owned", not "read". */
const OWNED_READS: Readonly<Record<string, ActionRule>> = {
  'secretsmanager:GetSecretValue': owned(['secretsmanager:secret']),
};

/**
 * Tagging at creation, as AWS authorizes it: the second action each create action needs. IAM has
 * one tagging action per resource type (a role's tags need iam:TagRole, an OIDC provider's
 * iam:TagOpenIDConnectProvider), so `byType` names it per type.
 */
const TAG_ON_CREATE: Readonly<Record<string, { action: string; createActionKey?: string; byType?: Readonly<Record<string, string>> }>> = {
  ec2: { action: 'ec2:CreateTags', createActionKey: 'ec2:CreateAction' },
  elasticloadbalancing: { action: 'elasticloadbalancing:AddTags', createActionKey: 'elasticloadbalancing:CreateAction' },
  autoscaling: { action: 'autoscaling:CreateOrUpdateTags' },
  secretsmanager: { action: 'secretsmanager:TagResource' },
  iam: { action: 'iam:TagRole', byType: { 'iam:role': 'iam:TagRole', 'iam:oidc-provider': 'iam:TagOpenIDConnectProvider', 'iam:instance-profile': 'iam:TagInstanceProfile' } },
  eks: { action: 'eks:TagResource' },
};

/** Roles a create action hands to a service: iam:PassRole, restricted to that service. */
const PASSES_ROLE: Readonly<Record<string, string>> = {
  'ec2:RunInstances': 'ec2.amazonaws.com',
  'autoscaling:CreateAutoScalingGroup': 'ec2.amazonaws.com',
  'autoscaling:UpdateAutoScalingGroup': 'ec2.amazonaws.com',
  'eks:CreateCluster': 'eks.amazonaws.com',
  'eks:CreateNodegroup': 'eks.amazonaws.com',
};

/**
 * Actions AWS checks on the caller's behalf when another is called ("dependent actions"): an Auto
 * Scaling group launches from its launch template as the caller (ec2:RunInstances; its tags at
 * launch then need ec2:CreateTags with ec2:CreateAction RunInstances, added with the create).
 */
const DEPENDS_ON: Readonly<Record<string, readonly string[]>> = {
  'autoscaling:CreateAutoScalingGroup': ['ec2:RunInstances'],
  'autoscaling:UpdateAutoScalingGroup': ['ec2:RunInstances'],
};

/** The service-linked role a service makes at its first use in an account, as the caller: iam:CreateServiceLinkedRole for that service only. */
const SERVICE_LINKED_ROLE: Readonly<Record<string, string>> = {
  'autoscaling:CreateAutoScalingGroup': 'autoscaling.amazonaws.com',
  'elasticloadbalancing:CreateLoadBalancer': 'elasticloadbalancing.amazonaws.com',
  'eks:CreateCluster': 'eks.amazonaws.com',
  'eks:CreateNodegroup': 'eks-nodegroup.amazonaws.com',
};

export interface PolicyOptions {
  /** The cluster whose resources the policy may change; undefined: any capflow cluster. */
  cluster?: string;
  /** aws, aws-cn, aws-us-gov. */
  partition?: string;
}

/** The steps that call AWS. */
export function awsSteps(): string[] {
  return Object.keys(STEP_API_CALLS).filter((s) => Object.keys(STEP_API_CALLS[s] ?? {}).length > 0);
}

/** `<iam prefix>:<Action>` of every call a step can make (from the generated list). */
export function stepActions(step: string): string[] {
  const calls = STEP_API_CALLS[step];
  if (!calls) throw new InputError('IAM_POLICY_UNKNOWN_STEP', `no step "${step}"`, { hint: `steps that call AWS: ${awsSteps().join(', ')}` });
  const out = new Set<string>();
  for (const [pkg, actions] of Object.entries(calls)) {
    const prefix = IAM_PREFIX[pkg];
    if (!prefix) throw new Error(`@aws-sdk/client-${pkg} has no IAM prefix in IAM_PREFIX`);
    for (const a of actions) out.add(`${prefix}:${a}`);
  }
  return [...out].sort();
}

/** A step's mutating actions the table does not classify (empty when the table is complete). */
export function unclassifiedActions(step: string): string[] {
  return stepActions(step).filter((a) => !isReadAction(a.split(':')[1]!) && !ACTION_RULES[a]);
}

export function ruleOf(action: string): ActionRule {
  const rule = OWNED_READS[action] ?? ACTION_RULES[action];
  if (rule) return rule;
  if (isReadAction(action.split(':')[1] ?? '')) return { kind: 'read' };
  throw new Error(`${action} is not classified in src/aws/iam-policy.ts ACTION_RULES`);
}

/** The policy of one step, or of several (a role that runs them all). */
export function buildPolicy(steps: string[], opts: PolicyOptions = {}): PolicyDocument {
  if (opts.cluster !== undefined && !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(opts.cluster)) {
    throw new InputError('IAM_POLICY_BAD_CLUSTER', `cluster name "${opts.cluster}" is not a Kubernetes object name`, { hint: 'lowercase letters, digits, "-" and ".", as the Cluster\'s metadata.name' });
  }
  const p = opts.partition ?? 'aws';
  const arn = (t: string) => {
    const a = ARNS[t];
    if (!a) throw new Error(`resource type ${t} has no ARN pattern`);
    return a.replace('{p}', p);
  };
  const value = opts.cluster ?? '*';
  const requestTag = { StringLike: { [`aws:RequestTag/${CAPFLOW_CLUSTER_TAG}`]: value } };
  const resourceTag = { StringLike: { [`aws:ResourceTag/${CAPFLOW_CLUSTER_TAG}`]: value } };

  const called = steps.flatMap(stepActions);
  const actions = [...new Set([...called, ...called.flatMap((a) => DEPENDS_ON[a] ?? [])])].sort();
  if (actions.length === 0) throw new InputError('IAM_POLICY_NO_CALLS', `${steps.join(', ') || 'no step'} makes no AWS call: it needs no IAM policy`, { hint: `steps that call AWS: ${awsSteps().join(', ')}` });
  // Statements with a tag condition merge their actions and resources (the condition holds for all,
  // and an action on a resource type it never touches grants nothing). Statements without one are
  // grouped by their exact resources, so no action gains an unconditioned type it creates or owns.
  const groups = new Map<string, { sid: string; resources: Set<string>; condition?: PolicyStatement['Condition']; actions: Set<string> }>();
  const add = (sid: string, action: string, resources: string[], condition?: PolicyStatement['Condition']) => {
    const key = JSON.stringify([sid, condition ? condition : [...new Set(resources)].sort()]);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { sid, resources: new Set(), ...(condition ? { condition } : {}), actions: new Set() }));
    g.actions.add(action);
    for (const r of resources) g.resources.add(r);
  };
  const creates = new Map<string, { actions: Set<string>; types: Set<string> }>();
  const passedTo = new Set<string>();
  const linkedTo = new Set<string>();
  for (const action of actions) {
    const rule = ruleOf(action);
    const prefix = action.split(':')[0]!;
    switch (rule.kind) {
      case 'read':
        add('Read', action, ['*']);
        break;
      case 'any':
        add('NoTagCondition', action, ['*']);
        break;
      case 'create': {
        add('CreateTagged', action, rule.creates.map(arn), requestTag);
        if (rule.uses) add('CreateUsing', action, rule.uses.map(arn));
        if (rule.owns) add('Owned', action, rule.owns.map(arn), resourceTag);
        let c = creates.get(prefix);
        if (!c) creates.set(prefix, (c = { actions: new Set(), types: new Set() }));
        c.actions.add(action.split(':')[1]!);
        for (const t of rule.creates) c.types.add(t);
        break;
      }
      case 'owned':
        add('Owned', action, rule.on.map(arn), resourceTag);
        if (rule.uses) add('OwnedUsing', action, rule.uses.map(arn));
        break;
    }
    if (PASSES_ROLE[action]) passedTo.add(PASSES_ROLE[action]);
    if (SERVICE_LINKED_ROLE[action]) linkedTo.add(SERVICE_LINKED_ROLE[action]);
  }
  if (passedTo.size > 0) add('PassRole', 'iam:PassRole', [arn('iam:role')], { StringEquals: { 'iam:PassedToService': [...passedTo].sort() } });
  if (linkedTo.size > 0) add('ServiceLinkedRole', 'iam:CreateServiceLinkedRole', [arn('iam:role')], { StringEquals: { 'iam:AWSServiceName': [...linkedTo].sort() } });
  for (const [prefix, c] of [...creates.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const tagging = TAG_ON_CREATE[prefix];
    if (!tagging) continue;
    const condition: NonNullable<PolicyStatement['Condition']> = {
      ...requestTag,
      ...(tagging.createActionKey ? { StringEquals: { [tagging.createActionKey]: [...c.actions].sort() } } : {}),
    };
    if (!tagging.byType) {
      add('TagOnCreate', tagging.action, [...c.types].map(arn), condition);
      continue;
    }
    for (const type of [...c.types].sort()) add('TagOnCreate', tagging.byType[type] ?? tagging.action, [arn(type)], condition);
  }

  const order = ['Read', 'CreateTagged', 'CreateUsing', 'TagOnCreate', 'Owned', 'OwnedUsing', 'PassRole', 'ServiceLinkedRole', 'NoTagCondition'];
  const sorted = [...groups.values()]
    .map((g) => ({ ...g, resources: [...g.resources].sort() }))
    .sort((a, b) => order.indexOf(a.sid) - order.indexOf(b.sid) || a.resources.join().localeCompare(b.resources.join()));
  const counts = new Map<string, number>();
  const Statement: PolicyStatement[] = sorted.map((g) => {
    const n = (counts.get(g.sid) ?? 0) + 1;
    counts.set(g.sid, n);
    return {
      Sid: n === 1 ? g.sid : `${g.sid}${n}`,
      Effect: 'Allow',
      Action: [...g.actions].sort(),
      Resource: g.resources.length === 1 ? g.resources[0]! : g.resources,
      ...(g.condition ? { Condition: g.condition } : {}),
    };
  });
  return { Version: '2012-10-17', Statement };
}

/** Every IAM action a policy names (for checks: generated ⊇ used). */
export function policyActions(doc: PolicyDocument): Set<string> {
  return new Set(doc.Statement.flatMap((s) => s.Action));
}
