/**
 * Idempotency tokens. Where AWS accepts a ClientToken, capflow derives it
 * from the cluster, the resource and the part of the spec that shapes it, so
 * a call retried after a crash or a lost answer returns the first resource
 * instead of making a second; a changed spec gets a new token.
 */
import { createHash } from 'node:crypto';

/** EC2 client tokens are at most 64 ASCII characters. */
export function clientToken(clusterName: string, resource: string, spec: unknown = ''): string {
  const digest = createHash('sha256').update(JSON.stringify([clusterName, resource, spec])).digest('hex');
  return `capflow-${digest.slice(0, 55)}`;
}
