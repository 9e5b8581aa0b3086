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
  /** Transient failure (EX_TEMPFAIL): retry. */
  transient: 75,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorKind = 'invalid-input' | 'transient' | 'conflict' | 'not-found' | 'internal';

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

const TRANSIENT_NET_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'UND_ERR_SOCKET']);

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
  if (TRANSIENT_NET_CODES.has(e.code ?? '')) return 'transient';
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 500) return 'transient';
  if (e.$fault === 'server') return 'transient';
  return 'internal';
}

/** One line per error in the cause chain, outermost first. */
export function describeChain(err: unknown): string[] {
  const lines: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth++) {
    if (current instanceof Error) {
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
