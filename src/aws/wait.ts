/**
 * Polling for eventual states (NAT gateway available, load balancer active,
 * a dependency gone), with jittered backoff and a deadline. One poll should
 * cover many resources (one filtered Describe), not one call per resource.
 */
import { TransientError } from '../core/errors.js';

export interface WaitOptions {
  /** What we wait for, for the error message ("NAT gateways nat-1, nat-2 to be available"). */
  description: string;
  timeoutMs: number;
  minDelayMs?: number;
  maxDelayMs?: number;
  signal?: AbortSignal;
}

/** Calls `poll` until it returns a value other than undefined, or the deadline passes. */
export async function waitFor<T>(poll: () => Promise<T | undefined>, options: WaitOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let delay = options.minDelayMs ?? 500;
  const maxDelay = options.maxDelayMs ?? 15_000;
  let lastError: unknown;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      const value = await poll();
      if (value !== undefined) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new TransientError('WAIT_TIMEOUT', `timed out after ${Math.round(options.timeoutMs / 1000)}s waiting for ${options.description}`, {
        ...(lastError !== undefined ? { cause: lastError } : {}),
      });
    }
    const sleep = Math.min(delay * (0.5 + Math.random() / 2), deadline - Date.now());
    await new Promise((resolve) => setTimeout(resolve, Math.max(sleep, 0)));
    delay = Math.min(delay * 2, maxDelay);
  }
}
