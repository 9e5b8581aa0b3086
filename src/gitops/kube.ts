/**
 * The reconciler's way into the management cluster: one kubeconfig loader for
 * every part (records, workflows, the lease) and the API error helpers they
 * share with src/core.
 */
import { createHash } from 'node:crypto';
import type { Agent as HttpAgent } from 'node:http';
import type { AgentOptions } from 'node:https';
import { KubeConfig, type Cluster, type Informer, type KubernetesObject } from '@kubernetes/client-node';
import { InputError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

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

export interface InformerRun<T> {
  /** Called for every add and update until the returned stop function is called. */
  deliver: (object: T) => void;
  /** Called for every deletion (watched, or found by a new list after a 410 Gone). */
  remove?: (object: T) => void;
  /** What is watched, for the restart warning (e.g. "workflow watch"). */
  what: string;
  log?: Logger;
  /** Pause before a failed watch is started again. Default 1 s. */
  restartMs?: number;
  /** Turns an error of the first start into the error start throws. */
  startError: (err: unknown) => Error;
}

/**
 * Starts an informer (list, then watch from that version) and keeps it running: the client's
 * informer does not restart after an error; this one does, after restartMs, resuming from the last
 * version it saw. An error while starting is thrown. The returned function stops it, leaving no
 * timer or connection behind.
 */
export async function runInformer<T extends KubernetesObject>(informer: Informer<T>, run: InformerRun<T>): Promise<() => Promise<void>> {
  let stopped = false;
  let starting = true;
  let startError: unknown;
  let restart: NodeJS.Timeout | undefined;
  let restarted: Promise<void> | undefined;

  const deliver = (object: T): void => {
    if (!stopped) run.deliver(object);
  };
  informer.on('add', deliver);
  informer.on('update', deliver);
  const { remove } = run;
  if (remove) informer.on('delete', (object: T) => void (stopped || remove(object)));
  informer.on('error', (err: unknown) => {
    if (stopped) return; // stop() aborts the watch request, which reports as an error
    if (starting) {
      startError = err;
      return;
    }
    run.log?.warn(`${run.what} failed; restarting`, { error: err instanceof Error ? err.message.split('\n')[0] : String(err) });
    if (restart) return;
    restart = setTimeout(() => {
      restart = undefined;
      if (!stopped) restarted = informer.start();
    }, run.restartMs ?? 1000);
    restart.unref();
  });

  const stop = async (): Promise<void> => {
    stopped = true;
    clearTimeout(restart);
    restart = undefined;
    await informer.stop();
    // a restart still connecting opens its watch after this stop: close that one when it is up
    void restarted?.then(() => informer.stop());
  };
  await informer.start();
  starting = false;
  if (startError !== undefined) {
    await stop();
    throw run.startError(startError);
  }
  return stop;
}

/**
 * Whether resourceVersion `a` is older than `b`. The API treats them as opaque, but every
 * kube-apiserver (etcd's revision) gives decimal numbers that grow: compared as numbers when both
 * are, else never older (the newest event wins).
 */
export function olderVersion(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  return a.length !== b.length ? a.length < b.length : a < b;
}
