/**
 * The bootstrap of one self-managed cluster during one step: its PKI, its API endpoint, a client of
 * its API server once one answers, the join token (made lazily, when a machine is about to be
 * launched) and the sealed bootstrap data of each machine group. kubeadm-init, launch-nodes and
 * join-workers each open one.
 */
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { AppsV1Api, AuthorizationV1Api, CoreV1Api, VersionApi, type KubeConfig } from '@kubernetes/client-node';
import { InternalError } from '../core/errors.js';
import { statusOf } from '../core/kube-errors.js';
import { reconcileBootstrapPayload, payloadSecretName } from '../aws/bootstrap-payloads.js';
import type { ClusterScope } from '../aws/scope.js';
import type { Machine } from '../aws/instances.js';
import { API_SERVER_PORT } from '../aws/security-groups.js';
import type { Logger } from '../core/logger.js';
import { OverlayStore, type SecretStore } from '../core/secrets.js';
import { FieldProblems, type ClusterModel } from '../spec/index.js';
import type { BootstrapRole } from './kubeadm-config.js';
import { ensureJoinToken, joinTokenSecretName, kubeadmDuration, type JoinToken } from './join-token.js';
import { CONTROL_PLANE_GROUP, groupBootstrapData, groupCloudConfig } from './machine-data.js';
import type { CloudConfig } from './cloud-config.js';
import { compareVersions, readClusterVersion, versionParts } from './cluster-version.js';
import { removeEtcdMember } from './etcd-members.js';
import { deleteNode, drainNode, listNodes, type NodeView } from './nodes.js';
import { KUBECONFIG_KEY, clusterSecretName, ensureAdminKubeconfig, ensureClusterPki, type ClusterPki } from './pki.js';
import { apiServerReadyz, kubeConfigFrom, type ReadyzAnswer } from './workload.js';

/** Join tokens live this long; MachinePools' (whose groups may launch at any time) a day. */
export const JOIN_TOKEN_TTL_MS = 15 * 60_000;
export const POOL_JOIN_TOKEN_TTL_MS = 24 * 60 * 60_000;
/** A stand-in token for dry runs, which render user data but make no token. */
const PLAN_TOKEN = 'abcdef.0123456789abcdef';

/** What a session needs of its step: an AWS cluster's scope, or (bring-your-own hosts) just these. */
export type SessionScope = Pick<ClusterScope, 'dryRun' | 'plan' | 'signal'> & { region?: string };

export interface SessionOptions {
  store: SecretStore;
  model: ClusterModel;
  scope: SessionScope;
  /** AWS clusters: where sealed bootstrap payloads go (userData). */
  secretsManager?: SecretsManagerClient;
  /** The API load balancer's DNS name (provision-vpc's output); bring-your-own hosts have none. */
  apiServerDns: string;
  log: Logger;
  drainTimeoutMs?: number;
}

export class BootstrapSession {
  readonly endpoint: { host: string; port: number };
  private pkiMade?: ClusterPki;
  private kc?: KubeConfig;
  private coreApi?: CoreV1Api;
  private token?: JoinToken;

  constructor(private readonly o: SessionOptions) {
    const own = o.model.cluster.spec.controlPlaneEndpoint?.host ? o.model.cluster.spec.controlPlaneEndpoint : (o.model.infrastructure.spec as { controlPlaneEndpoint?: { host: string; port: number } }).controlPlaneEndpoint;
    this.endpoint = own?.host ? { host: own.host, port: own.port || API_SERVER_PORT } : { host: o.apiServerDns, port: API_SERVER_PORT };
  }

  get server(): string {
    return `https://${this.endpoint.host}:${this.endpoint.port}`;
  }

  get clusterName(): string {
    return this.o.model.name;
  }

  /** The cluster PKI, made on first use (a dry run makes what is missing in memory only). */
  async pki(): Promise<ClusterPki> {
    const store = this.o.scope.dryRun ? new OverlayStore(this.o.store) : this.o.store;
    this.pkiMade ??= await ensureClusterPki(store, this.clusterName, { log: this.o.log });
    return this.pkiMade;
  }

  async ensureKubeconfig(): Promise<string> {
    await this.pki();
    return (await ensureAdminKubeconfig(this.o.store, this.clusterName, this.server, { log: this.o.log })).name;
  }

  async readyz(): Promise<ReadyzAnswer> {
    return apiServerReadyz(this.server, (await this.pki()).clusterCa.certPem);
  }

  /** The admin kubeconfig of the workload API server (cluster CA only). */
  private async kubeConfig(): Promise<KubeConfig> {
    if (!this.kc) {
      await this.ensureKubeconfig();
      const text = (await this.o.store.get(clusterSecretName(this.clusterName, 'kubeconfig')))?.[KUBECONFIG_KEY];
      this.kc = kubeConfigFrom(text ?? '');
    }
    return this.kc;
  }

  /** A client of the workload API server. */
  async core(): Promise<CoreV1Api> {
    this.coreApi ??= (await this.kubeConfig()).makeApiClient(CoreV1Api);
    return this.coreApi;
  }

  /**
   * Whether kubeadm init finished, seen from the API: the admin kubeconfig may create Secrets in
   * kube-system (kubeadm binds its group to cluster-admin late in init) and kube-public/cluster-info
   * exists (made by its bootstrap-token phase, which joins need). /readyz answers before both.
   */
  async initialized(): Promise<ReadyzAnswer> {
    try {
      const kc = kubeConfigFrom((await this.o.store.get(clusterSecretName(this.clusterName, 'kubeconfig')))?.[KUBECONFIG_KEY] ?? '');
      const review = await kc.makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({
        body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes: { verb: 'create', resource: 'secrets', namespace: 'kube-system' } } },
      });
      if (!review.status?.allowed) return { ready: false, detail: 'the admin kubeconfig is not bound to cluster-admin yet (kubeadm init still running)' };
      await kc.makeApiClient(CoreV1Api).readNamespacedConfigMap({ name: 'cluster-info', namespace: 'kube-public' });
      return { ready: true, detail: 'ok' };
    } catch (err) {
      return { ready: false, detail: statusOf(err) === 404 ? 'kube-public/cluster-info not made yet (kubeadm init still running)' : err instanceof Error ? err.message.split('\n')[0]! : String(err) };
    }
  }

  /** The API server's version (`v1.34.4`), or undefined when it does not answer. */
  async liveVersion(): Promise<string | undefined> {
    try {
      const kc = kubeConfigFrom((await this.o.store.get(clusterSecretName(this.clusterName, 'kubeconfig')))?.[KUBECONFIG_KEY] ?? '');
      return (await kc.makeApiClient(VersionApi).getCode()).gitVersion;
    } catch {
      return undefined;
    }
  }

  /**
   * kubeadm upgrades one minor at a time and never downgrades: a spec version further from the
   * running cluster is refused at its file:line before anything changes.
   */
  refuseVersionSkew(live: string): void {
    const minor = (v: string) => versionParts(v)?.[1] ?? NaN;
    const problems = new FieldProblems(this.o.model);
    const kcp = this.o.model.controlPlane;
    const want = this.o.model.kubernetesVersion;
    if (minor(want) > minor(live) + 1) {
      problems.add({ kind: kcp.kind, name: kcp.metadata.name }, ['spec', 'version'], 'invalid-value', `the control plane runs ${live}; kubeadm upgrades one minor version at a time, so ${want} is too far`, `go to v1.${minor(live) + 1} first, then to ${want}`);
    } else if (compareVersions(want, live) < 0) {
      problems.add({ kind: kcp.kind, name: kcp.metadata.name }, ['spec', 'version'], 'invalid-value', `the control plane runs ${live}; kubeadm cannot downgrade it to ${want}`, `keep ${live} or go up from it`);
    }
    problems.throwIfAny();
  }

  /**
   * Before control plane machines of a new version join: the cluster's version in kubeadm-config
   * (and kube-proxy's) moved to the spec's, after the skew check. A dry run plans it. True when it
   * differs.
   */
  async ensureClusterVersion(): Promise<boolean> {
    const want = this.o.model.kubernetesVersion;
    const kc = await this.kubeConfig();
    const current = await readClusterVersion(kc.makeApiClient(CoreV1Api), kc.makeApiClient(AppsV1Api), this.o.log);
    if (!current.version || compareVersions(want, current.version) === 0) return false;
    this.refuseVersionSkew(current.version);
    this.o.scope.plan.record({ resource: 'cluster-version', name: 'kube-system/kubeadm-config', action: 'update', detail: `${current.version} -> ${want}: control planes replaced one at a time, then workers` });
    if (!this.o.scope.dryRun) await current.set(want);
    return true;
  }

  /** The role a group's new machines boot in: a control plane joins, workers join as workers. */
  static joinRole(group: string): BootstrapRole {
    return group === CONTROL_PLANE_GROUP ? 'control-plane-join' : 'worker-join';
  }

  /**
   * The user data of a group's next machine, its payload put in Secrets Manager first. `payloadKey`
   * names the secret (the init machine keeps its own, deleted once the API answers).
   */
  async userData(group: string, role: BootstrapRole, payloadKey = group): Promise<string> {
    const scope = this.o.scope as ClusterScope;
    if (!this.o.secretsManager || !('ec2' in scope)) throw new InternalError('SESSION_NOT_AWS', 'sealed user data needs an AWS cluster scope and Secrets Manager');
    const join = role === 'init' ? undefined : await this.joinToken();
    const sealed = await groupBootstrapData(
      {
        model: this.o.model,
        region: scope.region,
        endpoint: this.endpoint,
        pki: await this.pki(),
        resolveSecret: async (ref) => (await this.o.store.get(ref.name))?.[ref.key],
        ...(join ? { join } : {}),
        payloadSecret: () => payloadSecretName(this.clusterName, payloadKey),
      },
      group,
      role,
    );
    await reconcileBootstrapPayload(scope, this.o.secretsManager, payloadKey, sealed.payload);
    return sealed.userData;
  }

  /**
   * A group's bootstrap as a cloud-config, unsealed: what bring-your-own hosts get over SSH (the
   * same files and commands an EC2 machine's user data carries).
   */
  async cloudConfig(group: string, role: BootstrapRole): Promise<CloudConfig> {
    const join = role === 'init' ? undefined : await this.joinToken();
    return groupCloudConfig(
      { model: this.o.model, endpoint: this.endpoint, pki: await this.pki(), resolveSecret: async (ref) => (await this.o.store.get(ref.name))?.[ref.key], ...(join ? { join } : {}) },
      group,
      role,
    );
  }

  private async joinToken(): Promise<{ token: string; ttl: string }> {
    const ttlMs = this.o.model.machinePools.length > 0 ? POOL_JOIN_TOKEN_TTL_MS : JOIN_TOKEN_TTL_MS;
    // A dry run renders with the token a run would keep (or a stand-in), and makes none.
    if (this.o.scope.dryRun) return { token: (await this.o.store.get(joinTokenSecretName(this.clusterName)))?.token ?? PLAN_TOKEN, ttl: kubeadmDuration(ttlMs) };
    this.token ??= await ensureJoinToken(this.o.store, await this.core(), this.clusterName, { ttlMs, log: this.o.log });
    return { token: this.token.token, ttl: kubeadmDuration(ttlMs) };
  }

  /**
   * Instance ids of machines whose Node (named by the private DNS name) is Ready; undefined when the
   * API server does not answer well (a control plane joining or leaving behind the load balancer):
   * readiness unknown, so the rounds neither count machines as down nor remove any, and wait,
   * bounded by their deadline.
   */
  async readyMachines(machines: ReadonlyArray<{ instanceId: string; privateDns: string }>): Promise<Set<string> | undefined> {
    try {
      const nodes = await listNodes(await this.core());
      return new Set(machines.filter((m) => nodes.get(m.privateDns)?.ready).map((m) => m.instanceId));
    } catch (err) {
      this.o.log.warn('Cannot read the Nodes now; waiting', { error: err instanceof Error ? err.message : String(err) });
      return undefined;
    }
  }

  /** The Nodes by name (conditions included, for MachineHealthChecks); undefined when the API server does not answer well. */
  async nodes(): Promise<Map<string, NodeView> | undefined> {
    try {
      return await listNodes(await this.core());
    } catch (err) {
      this.o.log.warn('Cannot read the Nodes now', { error: err instanceof Error ? err.message : String(err) });
      return undefined;
    }
  }

  /**
   * launch-nodes' hook before a machine goes: its Node cordoned and drained, a control plane's etcd
   * member removed (through a healthy control plane), then the Node deleted.
   */
  async removeNode(machine: Machine): Promise<void> {
    if (!machine.privateDns) return;
    const core = await this.core();
    const timeoutMs = this.o.drainTimeoutMs ?? 5 * 60_000;
    await drainNode(core, machine.privateDns, { timeoutMs, log: this.o.log, signal: this.o.scope.signal });
    if (machine.role === 'control-plane') await removeEtcdMember(core, machine, { timeoutMs, log: this.o.log, signal: this.o.scope.signal });
    if (await deleteNode(core, machine.privateDns)) this.o.log.info('Deleted node', { node: machine.privateDns, machine: machine.name });
  }
}
