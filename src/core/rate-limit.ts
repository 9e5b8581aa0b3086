/**
 * Client-side token buckets for EC2, the way AWS meters an account: one bucket for mutating
 * actions, one for non-mutating ones, and RunInstances on its own (it does not draw from the
 * mutating bucket). Every step of an account runs under the account's Argo semaphore of N slots
 * (workflow-templates/*: capflow-aws-accounts), so each process takes 1/N of the account's
 * buckets: the concurrent steps of one account together stay within what AWS grants, and none
 * of them is answered RequestLimitExceeded. Without CAPFLOW_AWS_ACCOUNT_SLOTS a process has the
 * whole account bucket (N = 1): a single step never exceeds AWS's published rates either.
 */
import { InputError } from './errors.js';

export interface TokenBucketSpec {
  /** Bucket size: how many calls may go at once. */
  burst: number;
  /** Tokens per second. */
  refill: number;
}

export interface Ec2Buckets {
  mutating: TokenBucketSpec;
  nonMutating: TokenBucketSpec;
  runInstances: TokenBucketSpec;
}

/** AWS's published EC2 request-rate buckets per account and region (EC2 API throttling docs). */
export const EC2_ACCOUNT_BUCKETS: Ec2Buckets = {
  mutating: { burst: 50, refill: 5 },
  nonMutating: { burst: 100, refill: 20 },
  runInstances: { burst: 5, refill: 2 },
};

export type Ec2ActionClass = keyof Ec2Buckets;

export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        clearTimeout(t);
        reject(signal!.reason instanceof Error ? signal!.reason : new Error(String(signal!.reason)));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

/**
 * One token bucket. take() reserves a token and resolves once it is due: callers are served in
 * the order they asked (a reservation may drive the level below zero; later callers wait longer),
 * so a burst of concurrent calls is spread at the refill rate instead of retrying in a herd.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly spec: TokenBucketSpec,
    private readonly clock: Clock = realClock,
  ) {
    if (!(spec.burst >= 1) || !(spec.refill > 0)) throw new InputError('RATE_LIMIT_INVALID', `a token bucket needs burst >= 1 and refill > 0, not ${JSON.stringify(spec)}`);
    this.tokens = spec.burst;
    this.last = clock.now();
  }

  /** ms the next caller would wait now (0: a token is there). */
  delayMs(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.spec.refill) * 1000);
  }

  /** Takes one token, waiting until it is due; resolves to the ms waited. */
  async take(signal?: AbortSignal): Promise<number> {
    const wait = this.delayMs();
    this.tokens -= 1;
    if (wait > 0) await this.clock.sleep(wait, signal);
    return wait;
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.spec.burst, this.tokens + ((now - this.last) / 1000) * this.spec.refill);
    this.last = now;
  }
}

/** EC2's action classes as AWS meters them: RunInstances alone, then mutating vs not. */
export function ec2ActionClass(action: string, mutating: boolean): Ec2ActionClass {
  if (action === 'RunInstances') return 'runInstances';
  return mutating ? 'mutating' : 'nonMutating';
}

/**
 * The client aims this much under AWS's buckets, burst and refill: a timer may fire a millisecond
 * early, and calls reach AWS later than they leave, some later than others (a burst sent at once
 * may arrive bunched with the calls after it). Run at exactly the account's rate, a bucket is then
 * a fraction of a token short; 5% of the account's burst of 50 absorbs half a second of such skew.
 */
export const RATE_HEADROOM = 0.95;

/** The account's buckets divided among `slots` processes, × `headroom` (a bucket never below one token). */
export function shareOf(buckets: Ec2Buckets, slots: number, headroom = 1): Ec2Buckets {
  const part = (b: TokenBucketSpec): TokenBucketSpec => ({ burst: Math.max(1, (b.burst / slots) * headroom), refill: (b.refill / slots) * headroom });
  return { mutating: part(buckets.mutating), nonMutating: part(buckets.nonMutating), runInstances: part(buckets.runInstances) };
}

/** This process's EC2 buckets, per region (AWS meters each region apart). */
export class Ec2RateLimiter {
  readonly share: Ec2Buckets;
  private readonly regions = new Map<string, Record<Ec2ActionClass, TokenBucket>>();

  constructor(
    readonly slots: number = 1,
    readonly account: Ec2Buckets = EC2_ACCOUNT_BUCKETS,
    private readonly clock: Clock = realClock,
    headroom: number = RATE_HEADROOM,
  ) {
    this.share = shareOf(account, slots, headroom);
  }

  bucket(region: string, cls: Ec2ActionClass): TokenBucket {
    let r = this.regions.get(region);
    if (!r) {
      r = {
        mutating: new TokenBucket(this.share.mutating, this.clock),
        nonMutating: new TokenBucket(this.share.nonMutating, this.clock),
        runInstances: new TokenBucket(this.share.runInstances, this.clock),
      };
      this.regions.set(region, r);
    }
    return r[cls];
  }
}

/**
 * CAPFLOW_AWS_ACCOUNT_SLOTS: the size of the account's semaphore (how many steps of the account
 * may run at once); each process takes 1/N of the account's buckets. Unset: 1. `off` turns the
 * client-side limit off (tests that count retries against injected throttling).
 *
 * The buckets model AWS's own metering, so they apply when the calls go to AWS. Against another
 * endpoint (AWS_ENDPOINT_URL: the local emulator, which meters nothing) they are off unless
 * CAPFLOW_AWS_RATE_LIMIT=on (the many-clusters test and bench, behind the proxy that enforces
 * EC2's buckets); CAPFLOW_AWS_RATE_LIMIT=off turns them off against AWS too.
 */
export function rateLimiterFromEnv(env: NodeJS.ProcessEnv = process.env, endpoint: string | undefined = env.AWS_ENDPOINT_URL): Ec2RateLimiter | undefined {
  const mode = env.CAPFLOW_AWS_RATE_LIMIT ?? '';
  if (mode !== '' && mode !== 'on' && mode !== 'off') {
    throw new InputError('ENV_INVALID', `CAPFLOW_AWS_RATE_LIMIT must be "on", "off" or empty (on against AWS, off against another endpoint), not "${mode}"`);
  }
  if (mode === 'off' || (mode === '' && endpoint)) return undefined;
  const text = env.CAPFLOW_AWS_ACCOUNT_SLOTS;
  if (text === 'off') return undefined;
  if (text === undefined || text === '') return new Ec2RateLimiter(1);
  if (!/^\d{1,4}$/.test(text) || Number(text) < 1) {
    throw new InputError('ENV_INVALID', `CAPFLOW_AWS_ACCOUNT_SLOTS must be the account semaphore's limit (1-9999) or "off", not "${text}"`);
  }
  return new Ec2RateLimiter(Number(text));
}
