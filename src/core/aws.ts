/**
 * AWS SDK v3 clients, built once per service and region. Three middlewares do
 * the cross-cutting work: retry of transient failures with p-retry (the SDK's
 * own retries are off, so the two never multiply), EC2's token buckets on the
 * client side (this process's share of the account's, src/core/rate-limit.ts;
 * every attempt takes a token before it goes to the wire) and a counter of calls
 * per service, action and mutating/read, which every step reports in its summary.
 * AWS_ENDPOINT_URL (the local emulator) is honoured for every service.
 */
import { attachRetryContext } from './errors.js';
import { ec2ActionClass, rateLimiterFromEnv, type Ec2RateLimiter } from './rate-limit.js';
import { DEFAULT_RETRY, isRetryable, retryPolicyFromEnv, withRetry, type RetryPolicy } from './retry.js';
import type { Logger } from './logger.js';

/** Actions that only read, whatever their prefix says. */
const READ_ONLY_EXCEPTIONS = new Set(['GetCallerIdentity']);

export function isMutatingAction(action: string): boolean {
  if (READ_ONLY_EXCEPTIONS.has(action)) return false;
  return !/^(Describe|Get|List|Lookup|Search|Check|Validate)/.test(action);
}

export interface CallCount {
  service: string;
  action: string;
  mutating: boolean;
  /** HTTP attempts, including retried ones. */
  attempts: number;
  /** Attempts that failed, by error name. */
  errors: Record<string, number>;
}

export interface CallSummary {
  mutating: number;
  read: number;
  retried: number;
  /** Time calls spent waiting for the client-side token buckets (summed over concurrent calls). */
  rateLimitWaitMs: number;
  byAction: Record<string, number>;
}

/** Counts every attempt that reaches the wire. */
export class CallCounter {
  private readonly counts = new Map<string, CallCount>();
  private waitedMs = 0;

  /** Time one attempt waited for a token. */
  recordRateWait(ms: number): void {
    this.waitedMs += ms;
  }

  record(service: string, action: string, error?: string): void {
    const key = `${service}:${action}`;
    let c = this.counts.get(key);
    if (!c) {
      c = { service, action, mutating: isMutatingAction(action), attempts: 0, errors: {} };
      this.counts.set(key, c);
    }
    c.attempts += 1;
    if (error) c.errors[error] = (c.errors[error] ?? 0) + 1;
  }

  all(): CallCount[] {
    return [...this.counts.values()].sort((a, b) => `${a.service}:${a.action}`.localeCompare(`${b.service}:${b.action}`));
  }

  mutatingCalls(): number {
    return this.all().filter((c) => c.mutating).reduce((n, c) => n + c.attempts, 0);
  }

  summary(): CallSummary {
    const out: CallSummary = { mutating: 0, read: 0, retried: 0, rateLimitWaitMs: Math.round(this.waitedMs), byAction: {} };
    for (const c of this.all()) {
      if (c.mutating) out.mutating += c.attempts;
      else out.read += c.attempts;
      out.retried += Object.values(c.errors).reduce((a, b) => a + b, 0);
      out.byAction[`${c.service}:${c.action}`] = c.attempts;
    }
    return out;
  }
}

/** The minimal shape of an SDK v3 client we rely on. */
export interface SdkClient {
  middlewareStack: {
    add(middleware: unknown, options: Record<string, unknown>): void;
  };
  destroy(): void;
}

export type SdkClientClass<C extends SdkClient> = new (config: Record<string, unknown>) => C;

export interface AwsClientsOptions {
  region?: string;
  /** Overrides AWS_ENDPOINT_URL. */
  endpoint?: string;
  /** Overrides the environment's CAPFLOW_AWS_RETRIES, CAPFLOW_AWS_RETRY_TIMEOUT and CAPFLOW_AWS_ATTEMPT_TIMEOUT (see retryPolicyFromEnv). */
  retry?: Partial<RetryPolicy>;
  log?: Logger;
  counter?: CallCounter;
  /** EC2's client-side token buckets; default from CAPFLOW_AWS_ACCOUNT_SLOTS (see rateLimiterFromEnv); false: none. */
  rateLimit?: Ec2RateLimiter | false;
  /** Extra client config (credentials in tests, requestHandler, ...). */
  clientConfig?: Record<string, unknown>;
}

export class AwsClients {
  readonly counter: CallCounter;
  readonly defaultRegion: string;
  readonly rateLimit: Ec2RateLimiter | undefined;
  private readonly clients = new Map<string, SdkClient>();

  constructor(private readonly options: AwsClientsOptions = {}) {
    // The SDK warns on Node 20 through process warnings, which would break the
    // JSON-lines log contract of every step; the README says which SDK line we pin.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.counter = options.counter ?? new CallCounter();
    this.defaultRegion = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    this.rateLimit = options.rateLimit === false ? undefined : (options.rateLimit ?? rateLimiterFromEnv(process.env, options.endpoint ?? process.env.AWS_ENDPOINT_URL));
  }

  /** One client per class and region, created on first use. */
  get<C extends SdkClient>(Client: SdkClientClass<C>, region = this.defaultRegion): C {
    const key = `${Client.name}:${region}`;
    const existing = this.clients.get(key);
    if (existing) return existing as C;
    const endpoint = this.options.endpoint ?? process.env.AWS_ENDPOINT_URL;
    const policy = { ...DEFAULT_RETRY, ...retryPolicyFromEnv(), ...this.options.retry };
    const attemptMs = policy.attemptTimeoutMs;
    const client = new Client({
      region,
      // Our retry middleware owns retries; one SDK attempt per try.
      maxAttempts: 1,
      // An attempt with no answer fails (TimeoutError: transient, so retried, then reported with what
      // was waited for) instead of hanging the step: the SDK's handler has no timeout by default.
      ...(attemptMs !== undefined && attemptMs > 0
        ? { requestHandler: { connectionTimeout: Math.min(attemptMs, 10_000), requestTimeout: attemptMs, throwOnRequestTimeout: true } }
        : {}),
      ...(endpoint ? { endpoint } : {}),
      ...(this.options.clientConfig ?? {}),
    });
    this.instrument(client, region, policy);
    this.clients.set(key, client);
    return client;
  }

  destroy(): void {
    for (const c of this.clients.values()) c.destroy();
    this.clients.clear();
  }

  private instrument(client: SdkClient, region: string, policy: RetryPolicy): void {
    const counter = this.counter;
    const log = this.options.log;
    type Ctx = { clientName?: string; commandName?: string; capflowEndpoint?: string };
    type Next = (args: unknown) => Promise<unknown>;
    // Outermost: retry transient failures of the whole call. The error it gives up on carries
    // what was waited for (operation, endpoint, attempts, time), which is how it is reported.
    client.middlewareStack.add(
      (next: Next, context: Ctx) => async (args: unknown) => {
        const started = Date.now();
        let attempts = 0;
        try {
          return await withRetry(
            (attempt) => {
              attempts = attempt;
              return next(args);
            },
            policy,
            {
              onRetry: (e) =>
                log?.debug('Retrying AWS call', {
                  service: serviceName(context.clientName),
                  action: actionName(context.commandName),
                  attempt: e.attempt,
                  throttled: e.throttled,
                  error: (e.error as { name?: string }).name,
                }),
            },
          );
        } catch (err) {
          if (isRetryable(err)) {
            attachRetryContext(err, {
              system: 'AWS',
              operation: `${serviceName(context.clientName)} ${actionName(context.commandName)} in ${region}`,
              ...(context.capflowEndpoint ? { endpoint: context.capflowEndpoint } : {}),
              attempts,
              elapsedMs: Date.now() - started,
            });
          }
          throw err;
        }
      },
      { step: 'initialize', name: 'capflowRetry', priority: 'high' },
    );
    // Inside the retry, so every attempt (a retried one too) waits for its token before it is
    // signed and sent: AWS meters attempts, not calls. EC2 only: its buckets are the published ones.
    const limiter = this.rateLimit;
    if (limiter) {
      client.middlewareStack.add(
        (next: Next, context: Ctx) => async (args: unknown) => {
          if (serviceName(context.clientName) !== 'ec2') return next(args);
          const action = actionName(context.commandName);
          const cls = ec2ActionClass(action, isMutatingAction(action));
          const bucket = limiter.bucket(region, cls);
          const waited = await bucket.take();
          if (waited > 0) {
            counter.recordRateWait(waited);
            log?.debug('Waited for an EC2 token', { action, bucket: cls, waitedMs: waited, slots: limiter.slots });
          }
          return next(args);
        },
        { step: 'build', name: 'capflowRateLimit', priority: 'low' },
      );
    }
    // Wraps the deserializer, so each attempt that went to the wire is counted
    // once, with the service's error name when it failed.
    client.middlewareStack.add(
      (next: Next, context: Ctx) => async (args: unknown) => {
        const service = serviceName(context.clientName);
        const action = actionName(context.commandName);
        context.capflowEndpoint = endpointOf(args) ?? context.capflowEndpoint;
        try {
          const out = await next(args);
          counter.record(service, action);
          return out;
        } catch (err) {
          counter.record(service, action, (err as { name?: string }).name ?? 'Error');
          throw err;
        }
      },
      { step: 'deserialize', name: 'capflowCallCounter', priority: 'high' },
    );
  }
}

/** `http://127.0.0.1:5000` from the HTTP request the deserialize step is given. */
function endpointOf(args: unknown): string | undefined {
  const req = (args as { request?: { protocol?: unknown; hostname?: unknown; port?: unknown } } | undefined)?.request;
  if (typeof req?.hostname !== 'string') return undefined;
  const protocol = typeof req.protocol === 'string' ? req.protocol.replace(/:?$/, ':') : 'https:';
  return `${protocol}//${req.hostname}${typeof req.port === 'number' ? `:${req.port}` : ''}`;
}

function serviceName(clientName: string | undefined): string {
  return (clientName ?? 'Unknown').replace(/Client$/, '').toLowerCase();
}

function actionName(commandName: string | undefined): string {
  return (commandName ?? 'Unknown').replace(/Command$/, '');
}
