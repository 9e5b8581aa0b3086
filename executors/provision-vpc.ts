/**
 * provision-vpc: makes the cluster's AWS network match its AWSCluster (VPC,
 * subnets, internet gateway, NAT gateways, route tables, security groups,
 * API server load balancer, bastion), or, for an EKS cluster, its
 * AWSManagedControlPlane's spec.network (the same, without the load balancer:
 * EKS serves the API), or with --delete removes all of it that the cluster
 * owns. Outputs the ids later steps need, and keeps them in the cluster's
 * status secret.
 */
import path from 'node:path';
import type { Executor, StepContext } from '../src/core/executor.js';
import { DELETE_TARGET_PARAMS, DURATION_PATTERN, forgetDrift, loadAwsClusterForDelete, parseDuration, recordDrift, specLoadOptions } from './aws-step.js';
import { InputError } from '../src/core/errors.js';
import { readStepStatus, removeStepStatus, writeStepStatus } from '../src/core/status.js';
import { deleteNetwork, makeScope, reconcileNetwork, VOLUME_POLICIES, type ClusterScope, type NetworkResult, type VolumePolicy } from '../src/aws/index.js';
import { describeProvenance } from '../src/aws/provenance.js';
import { loadClusterSpec, networkOwner } from '../src/spec/index.js';

export const STEP_ID = 'provision-vpc';

/**
 * What the status secret keeps under `provision-vpc`. The same shape for EKS: `subnets` (each with
 * `public`), and `securityGroupIds` keyed by role, where the key `node-eks-additional` holds the id
 * of the group eks-control-plane gives CreateCluster (resourcesVpcConfig.securityGroupIds), and
 * `bastion` the bastion's group when the bastion is enabled; apiServerDns and targetGroupArn are
 * empty (no load balancer of ours: EKS serves the API).
 */
import type { ProvisionVpcStatus } from './aws-step.js';
export type { ProvisionVpcStatus };

// `changes` counts plan entries that create, update or delete: made by a run, or
// that a --dry-run would make. cluster-plan reports it, and the reconciler
// marks a cluster drifted when it is not 0.
const OUTPUTS = ['vpc-id', 'subnet-ids', 'security-group-ids', 'api-server-dns', 'target-group-arn', 'bastion-address', 'changes'] as const;

function changesOf(scope: ClusterScope): string {
  const c = scope.plan.counts();
  return String(c.create + c.update + c.delete);
}


function scopeFor(ctx: StepContext, p: { clusterName: string; region: string; additionalTags?: Record<string, string> }): ClusterScope {
  const nat = parseDuration(ctx.options.params['nat-timeout'], 'nat-timeout');
  const dep = parseDuration(ctx.options.params['dependency-timeout'], 'dependency-timeout');
  return makeScope(
    ctx.aws,
    {
      clusterName: p.clusterName,
      region: p.region,
      revision: ctx.options.revision,
      specPath: ctx.options.clusterPath,
      ...(p.additionalTags ? { additionalTags: p.additionalTags } : {}),
    },
    {
      log: ctx.log,
      dryRun: ctx.options.dryRun,
      signal: ctx.signal,
      checkpoint: ctx.checkpoint,
      timeouts: { ...(nat !== undefined ? { natGatewayMs: nat } : {}), ...(dep !== undefined ? { dependencyMs: dep } : {}) },
    },
  );
}

/** api-server-dns and target-group-arn are empty for EKS (no load balancer of ours). */
function outputsOf(r: NetworkResult): Record<string, string> {
  return {
    'vpc-id': r.vpc.id,
    'subnet-ids': JSON.stringify(r.subnetIdsByZone),
    'security-group-ids': JSON.stringify(r.securityGroupIds),
    'api-server-dns': r.loadBalancer?.dnsName ?? '',
    'target-group-arn': r.loadBalancer?.targetGroupArn ?? '',
    'bastion-address': r.bastion?.publicIp ?? r.bastion?.privateIp ?? '',
  };
}

function statusOf(r: NetworkResult, revision: string, region: string, outputs: Record<string, string>): ProvisionVpcStatus {
  return {
    revision,
    region,
    vpcId: r.vpc.id,
    vpcManaged: r.vpc.managed,
    ...(r.vpc.dnsVerified ? { dnsVerifiedFor: r.vpc.id } : {}),
    subnets: r.subnets.map((s) => ({ id: s.id, az: s.az, cidr: s.cidr, public: s.isPublic })),
    ...(r.internetGatewayId ? { internetGatewayId: r.internetGatewayId } : {}),
    natGatewayIds: Object.fromEntries(r.natGateways.map((n) => [n.az, n.id])),
    routeTableIds: Object.fromEntries(r.routeTables.map((t) => [t.key, t.id])),
    securityGroupIds: r.securityGroupIds,
    apiServerDns: outputs['api-server-dns']!,
    targetGroupArn: outputs['target-group-arn']!,
    bastionAddress: outputs['bastion-address']!,
  };
}


export const provisionVpc: Executor = {
  id: STEP_ID,
  description: 'Make the AWS network match the AWSCluster or the EKS AWSManagedControlPlane (VPC, subnets, gateways, routes, security groups, load balancer, bastion)',
  supportsDelete: true,
  supportsDryRun: true,
  inputSchema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      'nat-timeout': { type: 'string', pattern: DURATION_PATTERN, description: 'how long to wait for NAT gateways (e.g. 10m)' },
      'dependency-timeout': { type: 'string', pattern: DURATION_PATTERN, description: 'on delete, how long to wait for dependencies to go (e.g. 15m)' },
      volumes: {
        type: 'string',
        enum: [...VOLUME_POLICIES, ''],
        description: 'on delete, the EBS volumes the workload made (kubernetes.io/cluster/<name>: owned): retain (default; reported by id and tags) or delete',
      },
      ...DELETE_TARGET_PARAMS,
    },
  },
  outputSchema: {
    type: 'object',
    additionalProperties: false,
    required: [...OUTPUTS],
    properties: Object.fromEntries(OUTPUTS.map((o) => [o, { type: 'string' }])),
  },
  async run(ctx) {
    if (ctx.options.delete) {
      const { model, clusterName, region, notAws } = await loadAwsClusterForDelete(ctx);
      if (notAws) {
        ctx.log.info(`Cluster ${clusterName} has bring-your-own hosts, no AWS network: nothing to delete`);
        return { outputs: { ...Object.fromEntries(OUTPUTS.map((o) => [o, ''])), changes: '0' } };
      }
      const previous = await readStepStatus<ProvisionVpcStatus>(ctx.secrets, clusterName, STEP_ID);
      const userVpc = model ? networkOwner(model)?.spec.network?.vpc?.id : undefined;
      const userVpcIds = [userVpc, previous && !previous.vpcManaged ? previous.vpcId : undefined].filter((v): v is string => !!v);
      const scope = scopeFor(ctx, { clusterName, region });
      const volumes = (ctx.options.params.volumes || 'retain') as VolumePolicy;
      const { left } = await deleteNetwork(scope, { userVpcIds, volumes });
      if (ctx.options.dryRun) ctx.log.info(`Plan:\n${scope.plan.format()}`);
      else {
        await removeStepStatus(ctx.secrets, clusterName, STEP_ID);
        await forgetDrift(ctx, clusterName, STEP_ID);
      }
      // What is left is in the summary too (by id and tags), so a retained volume is never silent.
      return { outputs: { ...Object.fromEntries(OUTPUTS.map((o) => [o, ''])), changes: changesOf(scope) }, summary: { plan: scope.plan.counts(), left } };
    }

    const model = await loadClusterSpec(path.resolve(ctx.options.repoDir, ctx.options.clusterPath), specLoadOptions(ctx.options));
    // The network is in the AWSCluster, or in an EKS cluster's AWSManagedControlPlane (as CAPA has it).
    const owner = networkOwner(model);
    if (!owner) {
      throw new InputError('PROVIDER_NOT_AWS', `cluster ${model.name} is a ${model.provider} cluster; provision-vpc makes the network of an AWS self-managed cluster (AWSCluster) or an EKS cluster (AWSManagedControlPlane)`);
    }
    const region = owner.spec.region ?? ctx.aws.defaultRegion;
    const additionalTags = owner.spec.additionalTags as Record<string, string> | undefined;
    const previous = await readStepStatus<ProvisionVpcStatus>(ctx.secrets, model.name, STEP_ID);
    const scope = scopeFor(ctx, { clusterName: model.name, region, ...(additionalTags ? { additionalTags } : {}) });
    scope.plan.bind(model, path.resolve(ctx.options.repoDir));
    const result = await reconcileNetwork(scope, model, previous?.dnsVerifiedFor ? { dnsVerifiedFor: previous.dnsVerifiedFor } : {});
    const outputs = { ...outputsOf(result), changes: changesOf(scope) };
    if (ctx.options.dryRun) {
      ctx.log.info(`Plan:\n${scope.plan.format()}`);
      // A plan also says which commit last wrote each resource family (provenance, from the revision tags).
      await recordDrift(ctx, model.name, STEP_ID, scope, result.vpc.created ? undefined : await describeProvenance(scope));
    } else {
      await writeStepStatus(ctx.secrets, model.name, STEP_ID, statusOf(result, ctx.options.revision, region, outputs));
      await recordDrift(ctx, model.name, STEP_ID, scope);
    }
    return { outputs, summary: { plan: scope.plan.counts(), vpcId: result.vpc.id } };
  },
};
