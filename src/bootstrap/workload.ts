/**
 * Reaching a workload cluster's API server from a step: through the admin kubeconfig Secret
 * (`<cluster>-kubeconfig`), trusting only the cluster CA.
 *
 * The API server's address is the load balancer's DNS name. Where that name does not resolve (the
 * test bed, whose load balancers listen on loopback ports), `CAPFLOW_ENDPOINTS_FILE` names a JSON
 * map `{"<dns>:<port>": "127.0.0.1:<port>"}` that the machine supervisor keeps: the connection goes
 * to the mapped loopback address while TLS still checks the certificate for the DNS name. Only
 * loopback targets are accepted from it.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import * as k8s from '@kubernetes/client-node';
import { InputError, NotFoundError } from '../core/errors.js';
import type { SecretStore } from '../core/secrets.js';
import { KUBECONFIG_KEY, clusterSecretName } from './pki.js';

export const ENDPOINTS_FILE_ENV = 'CAPFLOW_ENDPOINTS_FILE';

export interface Endpoint {
  host: string;
  port: number;
}

/** Where a connection to host:port really goes (the same, unless the endpoints file maps it). */
export function resolveEndpoint(target: Endpoint, env: NodeJS.ProcessEnv = process.env): Endpoint {
  const file = env[ENDPOINTS_FILE_ENV];
  if (!file) return target;
  let map: Record<string, string>;
  try {
    map = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  } catch {
    return target;
  }
  const mapped = map[`${target.host}:${target.port}`];
  const m = mapped ? /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}):(\d{1,5})$/.exec(mapped) : null;
  return m ? { host: m[1]!, port: Number(m[2]) } : target;
}

export function parseServer(server: string): Endpoint {
  const url = new URL(server);
  return { host: url.hostname, port: url.port ? Number(url.port) : 443 };
}

/** The cluster's admin kubeconfig as a client configuration, the server mapped as the endpoints file says. */
export async function workloadKubeConfig(store: SecretStore, clusterName: string): Promise<k8s.KubeConfig> {
  const name = clusterSecretName(clusterName, 'kubeconfig');
  const text = (await store.get(name))?.[KUBECONFIG_KEY];
  if (!text) {
    throw new NotFoundError('KUBECONFIG_MISSING', `secret ${name} does not exist: the cluster has no API server yet`, { hint: 'run kubeadm-init first' });
  }
  return kubeConfigFrom(text);
}

export function kubeConfigFrom(text: string, env: NodeJS.ProcessEnv = process.env): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(text);
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new InputError('KUBECONFIG_INVALID', 'the kubeconfig has no current cluster');
  const target = parseServer(cluster.server);
  const real = resolveEndpoint(target, env);
  if (real.host !== target.host || real.port !== target.port) {
    const mapped = { ...cluster, server: `https://${real.host}:${real.port}`, tlsServerName: target.host };
    kc.clusters = kc.clusters.map((c) => (c.name === cluster.name ? mapped : c));
  }
  return kc;
}

export interface ReadyzAnswer {
  ready: boolean;
  /** What was seen: `ok`, an HTTP status, or the connection/TLS error. */
  detail: string;
}

/**
 * GET /readyz through the load balancer, accepting only a certificate signed by `caPem` for the
 * endpoint's name: an API server of another cluster behind a reused address does not count.
 */
export function apiServerReadyz(server: string, caPem: string, timeoutMs = 5000): Promise<ReadyzAnswer> {
  const target = parseServer(server);
  const real = resolveEndpoint(target);
  return new Promise((resolve) => {
    const req = request(
      { host: real.host, port: real.port, path: '/readyz', method: 'GET', ca: caPem, servername: target.host, timeout: timeoutMs, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body = (body + c).slice(0, 200)));
        res.on('end', () => resolve({ ready: res.statusCode === 200, detail: res.statusCode === 200 ? 'ok' : `HTTP ${res.statusCode}: ${body.trim().split('\n')[0] ?? ''}` }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ ready: false, detail: err.code ? `${err.code}: ${err.message}` : err.message }));
    req.end();
  });
}
