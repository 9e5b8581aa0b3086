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

/** The delivery id (sanitised) rides along so refusals can be logged with it. */
export type WebhookResult =
  | { outcome: 'push'; event: PushEvent; delivery?: string }
  | { outcome: 'ignored'; reason: string; delivery?: string }
  | { outcome: 'unauthorized'; reason: string; delivery?: string }
  | { outcome: 'bad-request'; reason: string; delivery?: string };

interface ProviderRules {
  eventHeader: string;
  pushEvent: string;
  deliveryHeader: string;
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
    quiet: ['ping'],
    verify: (body, headers, secret) => verifyHmac(body, single(headers, 'x-hub-signature-256'), 'sha256=', 'X-Hub-Signature-256', secret),
  },
  gitlab: {
    eventHeader: 'x-gitlab-event',
    pushEvent: 'Push Hook',
    deliveryHeader: 'x-gitlab-event-uuid',
    quiet: [],
    verify: (_body, headers, secret) => verifyToken(single(headers, 'x-gitlab-token'), secret),
  },
  gitea: {
    eventHeader: 'x-gitea-event',
    pushEvent: 'push',
    deliveryHeader: 'x-gitea-delivery',
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
  return { outcome: 'push', event: { provider, ref, after, ...(delivery === undefined ? {} : { delivery }) }, delivery };
}
