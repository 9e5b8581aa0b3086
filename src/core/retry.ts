/**
 * Retry with jittered exponential backoff (p-retry) for transient failures
 * only: AWS throttling, 5xx, dropped connections, and our TransientError.
 * Anything else fails at once, so a bad request is never hammered.
 */
import pRetry, { AbortError } from 'p-retry';
import { classifyError, InputError, isThrottling } from './errors.js';

export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
  factor: number;
  /** Stop retrying once this much time has passed since the first attempt. */
  maxElapsedMs?: number;
  /**
   * One attempt that has no complete answer this long after it was sent fails as a transient
   * TimeoutError (and is retried): an endpoint that accepts connections and never answers cannot
   * hang a step. Used by the AWS clients (src/core/aws.ts); withRetry itself does not time attempts.
   */
  attemptTimeoutMs?: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 8, minTimeoutMs: 200, maxTimeoutMs: 20_000, factor: 2, maxElapsedMs: 120_000, attemptTimeoutMs: 60_000 };

/**
 * The AWS clients' retry policy as the environment sets it: CAPFLOW_AWS_RETRIES (retries after the
 * first attempt, default 8), CAPFLOW_AWS_RETRY_TIMEOUT (stop retrying this long after the first
 * attempt: 500ms, 30s, 2m; default 2m) and CAPFLOW_AWS_ATTEMPT_TIMEOUT (one attempt without an
 * answer fails after this long; default 60s). Unset values are left out.
 */
export function retryPolicyFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<RetryPolicy> {
  const out: Partial<RetryPolicy> = {};
  const retries = env.CAPFLOW_AWS_RETRIES;
  if (retries !== undefined && retries !== '') {
    if (!/^\d{1,3}$/.test(retries)) throw new InputError('ENV_INVALID', `CAPFLOW_AWS_RETRIES must be a whole number of retries (0-999), not "${retries}"`);
    out.retries = Number(retries);
  }
  const timeout = durationFromEnv(env, 'CAPFLOW_AWS_RETRY_TIMEOUT', 0);
  if (timeout !== undefined) out.maxElapsedMs = timeout;
  const attempt = durationFromEnv(env, 'CAPFLOW_AWS_ATTEMPT_TIMEOUT', 1);
  if (attempt !== undefined) out.attemptTimeoutMs = attempt;
  return out;
}

/** A duration variable (`500ms`, `30s`, `2m`; a bare number is seconds) in ms, undefined when unset; below `min` ms is an InputError. */
function durationFromEnv(env: NodeJS.ProcessEnv, name: string, min: number): number | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  const m = /^(\d{1,9})(ms|s|m)?$/.exec(text);
  const n = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000) : NaN;
  if (!(n >= min)) throw new InputError('ENV_INVALID', `${name} must be a duration like 500ms, 30s or 2m${min > 0 ? ' (not 0)' : ''}, not "${text}"`);
  return n;
}

export interface RetryEvent {
  attempt: number;
  retriesLeft: number;
  error: unknown;
  throttled: boolean;
}

export function isRetryable(err: unknown): boolean {
  return classifyError(err) === 'transient';
}

export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  policy: Partial<RetryPolicy> = {},
  hooks: { onRetry?: (e: RetryEvent) => void; signal?: AbortSignal } = {},
): Promise<T> {
  const p = { ...DEFAULT_RETRY, ...policy };
  return pRetry(
    async (attempt) => {
      try {
        return await fn(attempt);
      } catch (err) {
        // p-retry retries anything not wrapped in AbortError; we retry only transient failures.
        if (!isRetryable(err)) throw new AbortError(err instanceof Error ? err : new Error(String(err)));
        throw err instanceof Error ? err : new Error(String(err));
      }
    },
    {
      retries: p.retries,
      minTimeout: p.minTimeoutMs,
      maxTimeout: p.maxTimeoutMs,
      factor: p.factor,
      randomize: true,
      ...(p.maxElapsedMs !== undefined ? { maxRetryTime: p.maxElapsedMs } : {}),
      ...(hooks.signal ? { signal: hooks.signal } : {}),
      onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
        hooks.onRetry?.({ attempt: attemptNumber, retriesLeft, error, throttled: isThrottling(error) });
      },
    },
  );
}
