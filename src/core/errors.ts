/**
 * Coded errors. Every failure capflow reports is a CapflowError with a stable
 * code, a source (the user's input or the environment) and an optional cause
 * chain. The exit code tells Argo what to do with a failed step.
 */

/** Exit codes of every capflow command and executor. */
export const ExitCode = {
  ok: 0,
  /** Unexpected failure (a bug): Argo's default retry policy may retry it. */
  internal: 1,
  /** Invalid input: the spec or flags are wrong; retrying cannot help. */
  invalidInput: 2,
  /** Conflict or drift: the world differs from what capflow owns; policy decides. */
  conflict: 3,
  /**
   * The cluster is paused: the step stopped at a safe point (between resource families), as a crash
   * there would; a rerun after unpausing converges. Not a failure of the spec or of the world.
   */
  paused: 4,
  /** Transient failure (EX_TEMPFAIL): retry. */
  transient: 75,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorKind = 'invalid-input' | 'transient' | 'conflict' | 'not-found' | 'internal' | 'paused';

export interface CapflowErrorOptions {
  cause?: unknown;
  /** A short hint on how to fix it, printed after the message. */
  hint?: string;
  /** Structured details for the JSON summary (never secrets). */
  details?: Record<string, unknown>;
}

const BRAND = Symbol.for('capflow.error');

export class CapflowError extends Error {
  readonly [BRAND] = true;
  readonly code: string;
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(kind: ErrorKind, code: string, message: string, options: CapflowErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.kind = kind;
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }

  get exitCode(): ExitCode {
    return exitCodeForKind(this.kind);
  }
}

/** The user's input (spec, flags, parameters) is wrong. Never retried. */
export class InputError extends CapflowError {
  constructor(code: string, message: string, options?: CapflowErrorOptions) {
    super('invalid-input', code, message, options);
  }
}

/** A failure that may pass on retry: throttling, 5xx, timeouts, a dependency still going away. */
export class TransientError extends CapflowError {
  constructor(code: string, message: string, options?: CapflowErrorOptions) {
    super('transient', code, message, options);
  }
}

/** The world holds something capflow does not own, or differs from Git (drift). */
export class ConflictError extends CapflowError {
  constructor(code: string, message: string, options?: CapflowErrorOptions) {
    super('conflict', code, message, options);
  }
}

/** The cluster was paused while the step ran: it stopped at a safe point (src/core/pause.ts). */
export class PausedError extends CapflowError {
  constructor(code: string, message: string, options?: CapflowErrorOptions) {
    super('paused', code, message, options);
  }
}

export class NotFoundError extends CapflowError {
  constructor(code: string, message: string, options?: CapflowErrorOptions) {
    super('not-found', code, message, options);
  }
}

export class InternalError extends CapflowError {
  constructor(code: string, message: string, options?: CapflowErrorOptions) {
    super('internal', code, message, options);
  }
}

/** Type guard that also works across copies of this module (no instanceof). */
export function isCapflowError(err: unknown): err is CapflowError {
  return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[BRAND] === true;
}

export function exitCodeForKind(kind: ErrorKind): ExitCode {
  switch (kind) {
    case 'invalid-input':
      return ExitCode.invalidInput;
    case 'transient':
      return ExitCode.transient;
    case 'conflict':
      return ExitCode.conflict;
    case 'paused':
      return ExitCode.paused;
    case 'not-found':
    case 'internal':
      return ExitCode.internal;
  }
}

/** The exit code for anything thrown: coded errors by kind, the rest classified. */
export function exitCodeFor(err: unknown): ExitCode {
  if (isCapflowError(err)) return err.exitCode;
  return classifyError(err) === 'transient' ? ExitCode.transient : ExitCode.internal;
}

const THROTTLING_NAMES = new Set([
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'SlowDown',
  'PriorRequestNotComplete',
  'EC2ThrottledException',
  'BandwidthLimitExceeded',
]);

const TRANSIENT_NAMES = new Set([
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'TimeoutError',
]);

/** Node's codes for an endpoint that cannot be reached at all: nothing listens, no such host, no route. */
const UNREACHABLE_NET_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

const TRANSIENT_NET_CODES = new Set([...UNREACHABLE_NET_CODES, 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'UND_ERR_SOCKET']);

/** True for a connection that could not be made (ECONNREFUSED, ENOTFOUND, ...): the endpoint is unreachable. */
export function isUnreachable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; errors?: unknown };
  if (typeof e.code === 'string') return UNREACHABLE_NET_CODES.has(e.code);
  // Node 20's happy-eyeballs connect fails with an AggregateError of one error per address.
  return Array.isArray(e.errors) && e.errors.length > 0 && e.errors.every((x) => isUnreachable(x));
}

/** True for AWS throttling answers (by error name or HTTP 429). */
export function isThrottling(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  return THROTTLING_NAMES.has(e.name ?? '') || THROTTLING_NAMES.has(e.code ?? '') || e.$metadata?.httpStatusCode === 429;
}

/**
 * Classifies any thrown value the way Argo's retry policy needs it:
 * throttling, 5xx, timeouts and dropped connections are transient; 4xx and
 * our own input errors are not.
 */
export function classifyError(err: unknown): ErrorKind {
  if (isCapflowError(err)) return err.kind;
  if (typeof err !== 'object' || err === null) return 'internal';
  const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; $fault?: string };
  if (isThrottling(err)) return 'transient';
  if (TRANSIENT_NAMES.has(e.name ?? '')) return 'transient';
  if (TRANSIENT_NET_CODES.has(e.code ?? '') || isUnreachable(err)) return 'transient';
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 500) return 'transient';
  if (e.$fault === 'server') return 'transient';
  return 'internal';
}

/**
 * What a retry loop waited for before it gave up, attached to the error it gave up on (the AWS
 * clients do: src/core/aws.ts), so that the error says it when it is reported.
 */
export interface RetryContext {
  /** The system called, the prefix of the code: `AWS` gives AWS_UNREACHABLE, AWS_THROTTLED, AWS_TRANSIENT. */
  system: string;
  /** The operation: `ec2 DescribeVpcs in us-east-1`. */
  operation: string;
  /** The endpoint the attempts went to (`https://ec2.us-east-1.amazonaws.com`). */
  endpoint?: string;
  attempts: number;
  elapsedMs: number;
}

const RETRY_CONTEXT = Symbol.for('capflow.retryContext');

/** Attaches what was waited for to the error a retry loop gives up on (a no-op for a frozen value). */
export function attachRetryContext(err: unknown, context: RetryContext): void {
  if (typeof err !== 'object' || err === null || !Object.isExtensible(err)) return;
  Object.defineProperty(err, RETRY_CONTEXT, { value: context, enumerable: false, configurable: true });
}

export function retryContextOf(err: unknown): RetryContext | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  return (err as Record<symbol, RetryContext | undefined>)[RETRY_CONTEXT];
}

/** The code of an error that is not ours: INTERNAL (exit 1) unless it is transient (exit 75). */
export const INTERNAL_CODE = 'INTERNAL';

/**
 * Codes of transient failures that are not ours (each exits 75), after an optional system
 * prefix (AWS_UNREACHABLE): the endpoint could not be reached, it throttled, or another
 * transient failure (5xx, a dropped connection, a timeout).
 */
export const TransientCode = { unreachable: 'UNREACHABLE', throttled: 'THROTTLED', transient: 'TRANSIENT' } as const;

/**
 * Anything thrown as a coded error, so that code and exit code always agree: coded errors as
 * they are; a transient failure becomes a TransientError saying what it waited for (operation,
 * endpoint, attempts and time, last error); anything else an InternalError `INTERNAL`.
 */
export function toCapflowError(err: unknown): CapflowError {
  if (isCapflowError(err)) return err;
  const cause = err instanceof Error ? err.cause : undefined;
  const options = cause === undefined ? {} : { cause };
  if (classifyError(err) !== 'transient') return new InternalError(INTERNAL_CODE, describeOne(err), options);
  const ctx = retryContextOf(err);
  const prefix = ctx ? `${ctx.system}_` : '';
  const unreachable = isUnreachable(err);
  const code = prefix + (unreachable ? TransientCode.unreachable : isThrottling(err) ? TransientCode.throttled : TransientCode.transient);
  return new TransientError(code, describeTransient(err, ctx, unreachable), {
    ...options,
    hint: unreachable
      ? `check that the endpoint is right and reachable from here${ctx?.system === 'AWS' ? ' (AWS_ENDPOINT_URL, the region)' : ''}`
      : 'retrying later may pass',
    details: { ...(ctx ?? {}), ...(unreachable ? { unreachable: true } : {}) },
  });
}

/** `ec2 DescribeVpcs in us-east-1: endpoint http://127.0.0.1:9 is unreachable; gave up after 9 attempts over 56.8 s; last error: ...` */
function describeTransient(err: unknown, ctx: RetryContext | undefined, unreachable: boolean): string {
  const endpoint = ctx?.endpoint ?? endpointOf(err);
  const what = unreachable
    ? `${endpoint ? `endpoint ${endpoint}` : 'the endpoint'} is unreachable`
    : isThrottling(err)
      ? `throttled${endpoint ? ` by ${endpoint}` : ''}`
      : isTimeout(err)
        ? `no answer in time from ${endpoint ?? 'the endpoint'}`
        : `transient failure${endpoint ? ` at ${endpoint}` : ''}`;
  const waited = ctx ? `; gave up after ${ctx.attempts} ${ctx.attempts === 1 ? 'attempt' : 'attempts'} over ${(ctx.elapsedMs / 1000).toFixed(1)} s` : '';
  return `${ctx ? `${ctx.operation}: ` : ''}${what}${waited}; last error: ${describeOne(err)}`;
}

/** An attempt that got no answer in time (the AWS SDK's TimeoutError, a socket's ETIMEDOUT). */
function isTimeout(err: unknown): boolean {
  const e = err as { name?: unknown; code?: unknown };
  return e.name === 'TimeoutError' && e.code === 'ETIMEDOUT';
}

/** The address a failed connection went to, from Node's network error fields. */
function endpointOf(err: unknown): string | undefined {
  const e = err as { hostname?: unknown; address?: unknown; port?: unknown; errors?: unknown };
  if (typeof e.hostname === 'string') return e.hostname;
  if (typeof e.address === 'string') return typeof e.port === 'number' ? `${e.address}:${e.port}` : e.address;
  return Array.isArray(e.errors) ? endpointOf(e.errors[0]) : undefined;
}

function describeOne(err: unknown): string {
  if (err instanceof Error) {
    const code = isCapflowError(err) ? `[${err.code}] ` : err.name && err.name !== 'Error' ? `${err.name}: ` : '';
    return `${code}${err.message}`;
  }
  return typeof err === 'string' ? err : JSON.stringify(err) ?? String(err);
}

/** One line per error in the cause chain, outermost first; a retried error says what was waited for. */
export function describeChain(err: unknown): string[] {
  const lines: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth++) {
    if (current instanceof Error) {
      const retried = depth > 0 && !isCapflowError(current) && retryContextOf(current) !== undefined;
      if (retried) {
        const coded = toCapflowError(current);
        lines.push(`[${coded.code}] ${coded.message}`);
        current = current.cause;
        continue;
      }
      const code = isCapflowError(current) ? `[${current.code}] ` : current.name && current.name !== 'Error' ? `${current.name}: ` : '';
      lines.push(`${code}${current.message}`);
      current = current.cause;
    } else {
      lines.push(typeof current === 'string' ? current : JSON.stringify(current));
      break;
    }
  }
  return lines;
}
