/**
 * The reconciler's way into the management cluster: one kubeconfig loader for
 * every part (records, workflows, the lease) and the API error helpers they
 * share with src/core.
 */
import { createHash } from 'node:crypto';
import type { Agent as HttpAgent } from 'node:http';
import type { AgentOptions } from 'node:https';
import { KubeConfig, type Cluster } from '@kubernetes/client-node';
import { InputError } from '../core/errors.js';

export { apiStatus, statusOf, wrapKubeError, type RbacRule } from '../core/kube-errors.js';

/**
 * The given kubeconfig file; without one, what kubectl would use: $KUBECONFIG,
 * ~/.kube/config, else the pod's service account (in-cluster).
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else kc.loadFromDefault();
  } catch (err) {
    throw new InputError('KUBECONFIG_INVALID', `cannot load the kubeconfig ${path ?? process.env.KUBECONFIG ?? '(default)'}: ${(err as Error).message}`, {
      cause: err,
      hint: 'pass --kubeconfig, set KUBECONFIG, or run in a pod with a service account',
    });
  }
  if (!kc.getCurrentCluster()) {
    throw new InputError('KUBECONFIG_INVALID', `the kubeconfig ${path ?? '(default)'} has no current context with a cluster`, {
      hint: 'set current-context, e.g. kubectl config use-context <name>',
    });
  }
  return shareAgents(kc);
}

/** KubeConfig's own (private) agent factory, which it calls for every request and every watch. */
interface AgentFactory {
  createAgent?: (cluster: Cluster | null, options: AgentOptions) => HttpAgent;
}

/** Agents kept per distinct TLS identity; more only when client certificates rotate. */
const MAX_AGENTS = 4;

/**
 * Makes the KubeConfig reuse one keep-alive agent per cluster and TLS identity. The client
 * (@kubernetes/client-node 1.x) builds a new https.Agent for every request: a new TLS context (CA,
 * certificate and key parsed again) and a new connection with a full handshake each time, which
 * the agent then drops. A pass of the reconciler makes thousands of requests: that cost about 4×
 * the time and left ~150 MB of native memory (TLS contexts, fragmented malloc arenas) behind.
 * Credentials that go in headers (tokens, exec plugins) are still applied per request; options
 * that change the connection (CA, client certificate and key, verification, server name, proxy)
 * key the agent, so a rotated client certificate gets a new one. Idle sockets of an agent are
 * unref'd by Node, so they never keep the process alive.
 */
export function shareAgents(kc: KubeConfig): KubeConfig {
  const target = kc as unknown as AgentFactory;
  const create = target.createAgent?.bind(kc);
  if (!create) return kc; // another client version: it keeps its own behaviour
  const agents = new Map<string, HttpAgent>();
  target.createAgent = (cluster, options) => {
    const key = agentKey(cluster, options);
    const hit = agents.get(key);
    if (hit) return hit;
    const agent = create(cluster, { ...options, keepAlive: true });
    agents.set(key, agent);
    // the oldest is forgotten (its requests in flight finish; the server closes its idle sockets)
    if (agents.size > MAX_AGENTS) agents.delete(agents.keys().next().value as string);
    return agent;
  };
  return kc;
}

/** Objects that are neither text nor bytes (a KeyObject, say) key by identity. */
const objectIds = new WeakMap<object, number>();
let nextObjectId = 0;

function agentKey(cluster: Cluster | null, o: AgentOptions): string {
  const h = createHash('sha256');
  const add = (v: unknown): void => {
    if (v === undefined || v === null) h.update('\0-');
    else if (Buffer.isBuffer(v) || typeof v === 'string') h.update(`\0${typeof v === 'string' ? 's' : 'b'}${v.length}:`).update(v);
    else if (Array.isArray(v)) (h.update(`\0[${v.length}`), v.forEach(add));
    else if (typeof v === 'object') {
      let id = objectIds.get(v);
      if (id === undefined) objectIds.set(v, (id = nextObjectId++));
      h.update(`\0o${id}`);
    } else h.update(`\0p${String(JSON.stringify(v))}`);
  };
  for (const v of [cluster?.server, cluster?.proxyUrl, cluster?.skipTLSVerify, o.ca, o.cert, o.key, o.pfx, o.passphrase, o.rejectUnauthorized, o.servername]) add(v);
  return h.digest('hex');
}
