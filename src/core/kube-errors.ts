/**
 * Kubernetes API failures as coded errors, shared by every part that talks to
 * an API server (secrets here, the reconciler's records, workflows and lease).
 * The HTTP status decides the kind: 5xx, 429 and dropped connections are
 * transient, 409 is a conflict, 403 names the RBAC rule that is missing.
 */
import { ConflictError, InputError, InternalError, NotFoundError, TransientError, classifyError } from './errors.js';

/** The HTTP status of a failed API call (ApiException.code, a watch's statusCode), else undefined. */
export function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown; response?: { statusCode?: unknown } };
  // network errors carry a string code (ECONNREFUSED): only numbers are HTTP statuses
  for (const v of [e.code, e.statusCode, e.response?.statusCode]) if (typeof v === 'number') return v;
  return undefined;
}

/** The API server's Status of a failed call: its reason (AlreadyExists, Conflict, ...) and message. */
export function apiStatus(err: unknown): { reason?: string; message?: string } {
  const body = (err as { body?: unknown } | null)?.body;
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body ? { message: body.slice(0, 500) } : {};
    }
  }
  if (typeof parsed !== 'object' || parsed === null) return {};
  const s = parsed as { reason?: unknown; message?: unknown };
  return {
    ...(typeof s.reason === 'string' ? { reason: s.reason } : {}),
    ...(typeof s.message === 'string' ? { message: s.message } : {}),
  };
}

/** The permission a call needs, for the hint when the API answers 403. */
export interface RbacRule {
  verb: string;
  /** Plural resource with its group unless core, e.g. configmaps, leases.coordination.k8s.io. */
  resource: string;
  namespace: string;
}

/**
 * A coded error for a failed API call; `doing` says what was attempted
 * ("reading ConfigMap ns/name"). Pass the rule the call needs so that a 403
 * tells the operator what to grant.
 */
export function wrapKubeError(err: unknown, doing: string, rule?: RbacRule): Error {
  const status = statusOf(err);
  const { reason, message } = apiStatus(err);
  const said = message ?? (err instanceof Error ? err.message.split('\n')[0] : String(err));
  const details = { status, reason, ...(rule ?? {}) };
  if (status === undefined) {
    // no answer at all (refused, reset, timed out): the API server may come back; a TLS or
    // programming error will not
    const e = err as { name?: unknown; type?: unknown };
    const transient = classifyError(err) === 'transient' || e.name === 'AbortError' || e.type === 'request-timeout';
    return transient
      ? new TransientError('KUBE_UNAVAILABLE', `${doing}: ${said}`, { cause: err, details })
      : new InternalError('KUBE_ERROR', `${doing}: ${said}`, { cause: err, details });
  }
  const text = `${doing}: HTTP ${status}${reason ? ` ${reason}` : ''}: ${said}`;
  if (status >= 500 || status === 429) return new TransientError('KUBE_UNAVAILABLE', text, { cause: err, details });
  switch (status) {
    case 409:
      return new ConflictError('KUBE_CONFLICT', text, { cause: err, details });
    case 404:
      return new NotFoundError('KUBE_NOT_FOUND', text, { cause: err, details });
    case 403:
      return new InputError('KUBE_FORBIDDEN', text, {
        cause: err,
        details,
        hint: rule
          ? `grant the service account a Role rule allowing verb "${rule.verb}" on "${rule.resource}" in namespace "${rule.namespace}"`
          : 'the credentials lack an RBAC permission: see the message for the verb and resource',
      });
    case 401:
      return new InputError('KUBE_UNAUTHORIZED', text, { cause: err, details, hint: 'the kubeconfig credentials were refused: check the token or client certificate' });
    case 400:
    case 422:
      return new InputError('KUBE_INVALID', text, { cause: err, details });
    default:
      return new InternalError('KUBE_ERROR', text, { cause: err, details });
  }
}
