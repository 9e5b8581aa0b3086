/**
 * Push webhooks from GitHub, GitLab and Gitea. The signature (or token) is
 * checked against the raw body before anything in it is read; only a verified
 * delivery is parsed. Pure: no I/O, no logging. Reasons are safe to log: they
 * never hold the body or a secret.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { PushEvent } from './types.js';

export type WebhookProvider = PushEvent['provider'];

export const WEBHOOK_PROVIDERS: readonly WebhookProvider[] = ['github', 'gitlab', 'gitea'];

export interface WebhookSecrets {
  github?: string;
  gitlab?: string;
  gitea?: string;
}

/**
 * The delivery id (sanitised) rides along so refusals can be logged with it. A push carries the
 * keys a replay of it would be known by (see replayKeys and DeliveryMemory).
 */
export type WebhookResult =
  | { outcome: 'push'; event: PushEvent; delivery?: string; replayKeys: string[] }
  | { outcome: 'ignored'; reason: string; delivery?: string }
  | { outcome: 'unauthorized'; reason: string; delivery?: string }
  | { outcome: 'bad-request'; reason: string; delivery?: string };

interface ProviderRules {
  eventHeader: string;
  pushEvent: string;
  deliveryHeader: string;
  /** Headers naming the event, the same on every redelivery of it, in order of preference. */
  replayHeaders: string[];
  /** True when the body is signed (HMAC): a signed body sent again is a replay whatever its id header says. */
  signsBody: boolean;
  /** Events that are fine to receive and need nothing done (a hook's test delivery). */
  quiet: string[];
  /** undefined when the delivery is authentic, else why not. */
  verify(body: Buffer, headers: IncomingHttpHeaders, secret: string): string | undefined;
}

const RULES: Record<WebhookProvider, ProviderRules> = {
  github: {
    eventHeader: 'x-github-event',
    pushEvent: 'push',
    deliveryHeader: 'x-github-delivery',
    // Unique per event: a redelivery (UI or API) keeps it.
    replayHeaders: ['x-github-delivery'],
    signsBody: true,
    quiet: ['ping'],
    verify: (body, headers, secret) => verifyHmac(body, single(headers, 'x-hub-signature-256'), 'sha256=', 'X-Hub-Signature-256', secret),
  },
  gitlab: {
    eventHeader: 'x-gitlab-event',
    pushEvent: 'Push Hook',
    deliveryHeader: 'x-gitlab-event-uuid',
    // GitLab 17.4+ keeps Idempotency-Key across retries; X-Gitlab-Event-UUID names the event.
    // Its token is a static header, not a signature of the body: a body is not a replay key
    // (two real pushes can have the same payload).
    replayHeaders: ['idempotency-key', 'x-gitlab-event-uuid'],
    signsBody: false,
    quiet: [],
    verify: (_body, headers, secret) => verifyToken(single(headers, 'x-gitlab-token'), secret),
  },
  gitea: {
    eventHeader: 'x-gitea-event',
    pushEvent: 'push',
    deliveryHeader: 'x-gitea-delivery',
    replayHeaders: ['x-gitea-delivery'],
    signsBody: true,
    quiet: [],
    verify: (body, headers, secret) => verifyHmac(body, single(headers, 'x-gitea-signature'), '', 'X-Gitea-Signature', secret),
  },
};

/** A header given exactly once; a repeated one is as good as missing (which copy would be signed?). */
function single(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return typeof value === 'string' ? value : undefined;
}

/** Header text that may go into a log line: short, printable. */
function printable(value: string, max = 100): string {
  return value.replace(/[^\x20-\x7e]/g, '?').slice(0, max);
}

function verifyHmac(body: Buffer, header: string | undefined, prefix: string, name: string, secret: string): string | undefined {
  if (header === undefined) return `missing ${name} header`;
  if (!header.startsWith(prefix)) return `${name} is not an HMAC-SHA256 signature`;
  const hex = header.slice(prefix.length);
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return `${name} is not an HMAC-SHA256 signature`;
  const expected = createHmac('sha256', secret).update(body).digest();
  return timingSafeEqual(expected, Buffer.from(hex, 'hex')) ? undefined : `${name} does not match the body`;
}

function verifyToken(header: string | undefined, secret: string): string | undefined {
  if (header === undefined) return 'missing X-Gitlab-Token header';
  // Digests first: equal lengths for timingSafeEqual, and the token's length leaks nothing either.
  const given = createHash('sha256').update(header).digest();
  const wanted = createHash('sha256').update(secret).digest();
  return timingSafeEqual(given, wanted) ? undefined : 'X-Gitlab-Token does not match';
}

/** The JSON payload; GitHub and Gitea may also be set to send it form-encoded as `payload=`. */
function parsePayload(body: Buffer, contentType: string | undefined): Record<string, unknown> | undefined {
  let text = body.toString('utf8');
  if (contentType?.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    const payload = new URLSearchParams(text).get('payload');
    if (payload === null) return undefined;
    text = payload;
  }
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const COMMIT_ID = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

/**
 * Verifies one delivery to /webhooks/<provider> and, when it is an authentic push, returns it.
 * A provider without a configured secret refuses everything: unsigned deliveries are never accepted.
 */
export function verifyWebhook(provider: WebhookProvider, body: Buffer, headers: IncomingHttpHeaders, secrets: WebhookSecrets): WebhookResult {
  const rules = RULES[provider];
  const rawDelivery = single(headers, rules.deliveryHeader);
  const delivery = rawDelivery === undefined ? undefined : printable(rawDelivery);
  const secret = secrets[provider];
  if (!secret) return { outcome: 'unauthorized', reason: `no ${provider} webhook secret is configured`, delivery };
  const refusal = rules.verify(body, headers, secret);
  if (refusal !== undefined) return { outcome: 'unauthorized', reason: refusal, delivery };

  const event = single(headers, rules.eventHeader);
  if (event === undefined) return { outcome: 'bad-request', reason: `missing ${rules.eventHeader} header`, delivery };
  if (event !== rules.pushEvent) {
    return { outcome: 'ignored', reason: rules.quiet.includes(event) ? event : `event "${printable(event, 40)}" is not a push`, delivery };
  }

  const payload = parsePayload(body, single(headers, 'content-type'));
  if (!payload) return { outcome: 'bad-request', reason: 'payload is not a JSON object', delivery };
  const { ref } = payload;
  if (typeof ref !== 'string' || !ref.startsWith('refs/')) return { outcome: 'bad-request', reason: 'payload has no ref', delivery };
  // GitLab's checkout_sha is null when the push deleted the ref; `after` is then all zeros, as on the other hosts.
  const afterField = typeof payload.after === 'string' && payload.after !== '' ? payload.after : payload.checkout_sha;
  const after = typeof afterField === 'string' ? afterField : '';
  if (payload.deleted === true || /^0+$/.test(after)) return { outcome: 'ignored', reason: `${printable(ref)} was deleted`, delivery };
  if (after !== '' && !COMMIT_ID.test(after)) return { outcome: 'bad-request', reason: 'payload "after" is not a commit id', delivery };
  return { outcome: 'push', event: { provider, ref, after, ...(delivery === undefined ? {} : { delivery }) }, delivery, replayKeys: replayKeys(provider, body, headers) };
}

/**
 * The keys a delivery is remembered by: its event id header, and for a signed body (GitHub,
 * Gitea) the body's digest, so a captured delivery sent again with another id (the id header is
 * not signed) is still known. GitHub pushes carry `repository.pushed_at` and Gitea's the
 * repository's `updated_at`, so two real pushes do not share a body.
 */
export function replayKeys(provider: WebhookProvider, body: Buffer, headers: IncomingHttpHeaders): string[] {
  const rules = RULES[provider];
  const keys: string[] = [];
  const id = rules.replayHeaders.map((h) => single(headers, h)).find((v) => v !== undefined && v !== '');
  if (id !== undefined) keys.push(`${provider} id ${printable(id, 200)}`);
  if (rules.signsBody) keys.push(`${provider} body ${createHash('sha256').update(body).digest('hex')}`);
  return keys;
}

export interface DeliveryMemoryOptions {
  /** Most keys kept; the least recently seen go first. Default 1,000 deliveries' worth. */
  maxKeys?: number;
  /** How long a key is kept. Default 1 h. */
  ttlMs?: number;
  /** The clock, in ms (tests drive their own). */
  now?: () => number;
}

/**
 * The recent deliveries acted on, to answer a replay without acting on it again: bounded (LRU by
 * last sight, with a time to live), in memory, per replica.
 */
export class DeliveryMemory {
  private readonly keys = new Map<string, number>();
  private readonly maxKeys: number;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(options: DeliveryMemoryOptions = {}) {
    this.maxKeys = options.maxKeys ?? 2_000;
    this.ttlMs = options.ttlMs ?? 3_600_000;
    this.now = options.now ?? Date.now;
  }

  /**
   * The key under which this delivery was seen before (a replay), else undefined; either way its
   * keys are remembered (again) as of now.
   */
  check(keys: readonly string[]): string | undefined {
    const now = this.now();
    this.expire(now);
    const seen = keys.find((k) => this.keys.has(k));
    for (const k of keys) {
      this.keys.delete(k);
      this.keys.set(k, now + this.ttlMs);
    }
    while (this.keys.size > this.maxKeys) this.keys.delete(this.keys.keys().next().value as string);
    return seen;
  }

  get size(): number {
    this.expire(this.now());
    return this.keys.size;
  }

  /** Keys are in the order of their last sight, and all live equally long: the expired are first. */
  private expire(now: number): void {
    for (const [k, until] of this.keys) {
      if (until > now) break;
      this.keys.delete(k);
    }
  }
}
