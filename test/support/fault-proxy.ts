/**
 * An HTTP proxy in front of moto that records every AWS call and injects the faults real AWS has:
 * throttling (in each service's own error shape), 5xx answers, latency, EC2's published token
 * buckets, and a crash of the calling process right after its Nth mutating call.
 *
 *   const proxy = await startFaultProxy({ target: moto.endpoint });
 *   const ec2 = new EC2Client(clientConfig(proxy.endpoint, { maxAttempts: 1 }));
 *   proxy.setFaults({ throttleRate: 0.3, seed: 42 });
 *   ...
 *   expect(proxy.countBy('CreateVpc')).to.equal(1);
 *
 * Request bodies are buffered (they are small and must be decoded to know the action before deciding
 * on a fault); response bodies from moto are streamed through. Listens on 127.0.0.1 only.
 *
 * EKS calls moto lacks (addons, version updates, access entries, a PEM CA...) are answered by the
 * stand-in of test/support/eks-stand-in.ts in moto's place (option `eks`, on by default), after the
 * same recording and faults as forwarded calls.
 */
import { createServer, request as httpRequest, IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { Sha256 } from '../../src/aws/eks-token.js';
import { LOOPBACK } from './ports.js';
import { startMoto, type Moto } from './moto.js';
import { EksStandIn, type EksAnswer, type EksStandInOptions } from './eks-stand-in.js';

export { EksStandIn, type EksStandInOptions } from './eks-stand-in.js';

// ---------------------------------------------------------------------------------------------
// Public types

export interface RecordedCall {
  /** ec2, autoscaling, elb, elbv2, iam, sts, eks (or the SigV4 scope's service name). */
  service: string;
  /** The API action, e.g. RunInstances, CreateCluster ('Unknown' when it cannot be decoded). */
  action: string;
  /** False for Describe/Get/List/... and the few read-only exceptions (see isMutating). */
  mutating: boolean;
  /** HTTP status the caller got (0: the caller got no answer, e.g. killed before the response). */
  status: number;
  /** ms since the epoch when the call arrived. */
  at: number;
  durationMs: number;
  /** Set when the proxy interfered: 'throttle', 'token-bucket', 'server-error', 'killed-before-response', 'killed-after-response', 'dropped-after-kill', 'denied' (the authorizer). */
  faulted?: string;
  /** The latency the proxy added to this call (latencyMs), if any. */
  delayedMs?: number;
  /** Decoded parameters: query-protocol form fields, EKS path parameters, JSON top-level scalars. */
  params?: Record<string, string>;
}

export interface TokenBucketSpec {
  burst: number;
  /** tokens per second */
  refill: number;
}

export interface TokenBuckets {
  mutating: TokenBucketSpec;
  nonMutating: TokenBucketSpec;
  runInstances: TokenBucketSpec;
}

/** AWS's published EC2 API request-rate token buckets (per account and region). */
export const EC2_TOKEN_BUCKETS: TokenBuckets = {
  mutating: { burst: 50, refill: 5 },
  nonMutating: { burst: 100, refill: 20 },
  runInstances: { burst: 5, refill: 2 },
};

export interface KillAfterMutating {
  /** Fire on the Nth mutating call (counted from setFaults) that reaches moto. */
  n: number;
  /**
   * 'before-response': moto has done the call, the caller is killed before it hears the answer
   *   (its connection is then dropped).
   * 'after-response': the answer is sent in full; the caller is killed as soon as it comes back with
   *   its next call (which never reaches moto), or graceMs after the answer, whichever is
   *   first. So a sequential caller has certainly heard the Nth answer and done nothing after it
   *   against the world. (If the caller survives, e.g. onKill without pid, that next call fails with
   *   a dropped connection.)
   */
  when: 'before-response' | 'after-response';
  /** The calling process to SIGKILL. */
  pid?: number;
  /** Called at the kill (in addition to, or instead of, the pid). */
  onKill?: () => void;
  /** For 'after-response': longest wait for the caller's next call. Default 200 ms. */
  graceMs?: number;
}

export interface Faults {
  /** Share (0..1) of matching calls answered with the service's throttling error. */
  throttleRate?: number;
  /** The first N matching calls are throttled (before throttleRate applies). */
  throttleFirst?: number;
  /** Share (0..1) of matching calls answered with a 5xx. */
  serverErrorRate?: number;
  /** Status for serverErrorRate answers: 500 (InternalError) or 503 (Unavailable). Default 500. */
  serverErrorStatus?: 500 | 503;
  /** Delay added before each matching call is forwarded or answered. */
  latencyMs?: number;
  /** Seed of the PRNG that decides which calls get throttleRate / serverErrorRate faults. */
  seed?: number;
  /** If set, throttle/serverError/latency faults only touch these actions. */
  onlyActions?: string[];
  /** EC2 token buckets: true for EC2_TOKEN_BUCKETS, or your own sizes. EC2 calls only. */
  tokenBuckets?: boolean | TokenBuckets;
  /**
   * The token buckets' clock in ms (default Date.now). A test of rates passes its own (see
   * manualClock) and moves it, so what refills never depends on how fast the machine is.
   */
  clock?: () => number;
  killAfterMutating?: KillAfterMutating;
}

export interface FaultProxyOptions extends Faults {
  /** moto's endpoint, e.g. http://127.0.0.1:45123 */
  target: string;
  /** The EKS stand-in for what moto lacks: on by default (true), its options, or false for moto alone. */
  eks?: boolean | EksStandInOptions;
}

export interface FaultProxy {
  endpoint: string;
  port: number;
  /** Every call, in arrival order (a live array; reset() empties it in place). */
  calls: RecordedCall[];
  /** Replace the fault settings (also restarts the PRNG, the token buckets and the kill counter). */
  setFaults(f: Faults): void;
  countBy(action: string): number;
  mutatingCalls(): RecordedCall[];
  /** The EKS stand-in answering in moto's place (undefined with `eks: false`). */
  eks: EksStandIn | undefined;
  /**
   * Checks each call before it is forwarded (the IAM tag-condition stand-in, test/support/iam-stand-in.ts):
   * an answer given is sent in moto's place (recorded with faulted 'denied'); undefined clears it.
   * reset() leaves it in place.
   */
  setAuthorizer(authorize: Authorizer | undefined): void;
  /**
   * Keys the EKS stand-in signs its own questions to moto with, as the EKS service reads its backend
   * under its own identity, not the caller's. Needed once moto enforces IAM (it then checks
   * signatures, and the stand-in's requests are not the caller's signed ones); undefined: the
   * caller's Authorization header is passed on, as before.
   */
  setStandInCredentials(keys: { accessKeyId: string; secretAccessKey: string } | undefined): void;
  /** Forget the recorded calls, all faults and the EKS stand-in's state. */
  reset(): void;
  stop(): Promise<void>;
}

/** Decides whether a call may go on (undefined) or is refused with the given answer. */
export type Authorizer = (call: {
  service: string;
  action: string;
  protocol: 'ec2' | 'query' | 'json' | 'rest-json';
  params: Record<string, string>;
  body: Buffer;
  accessKeyId: string | undefined;
  region: string | undefined;
}) => Promise<{ status: number; headers: Record<string, string>; body: string } | undefined>;

// ---------------------------------------------------------------------------------------------
// Decoding a call

interface Decoded {
  service: string;
  action: string;
  protocol: 'ec2' | 'query' | 'json' | 'rest-json';
  params: Record<string, string>;
}

/** Non-mutating actions that do not start with Describe/Get/List/Search/Lookup. */
const READ_ONLY_EXCEPTIONS = new Set([
  'AssumeRole', // STS: issues credentials, changes nothing
  'AssumeRoleWithWebIdentity',
  'DecodeAuthorizationMessage',
  'SimulatePrincipalPolicy',
  'SimulateCustomPolicy',
  'Unknown',
]);

export function isMutating(action: string, params: Record<string, string> = {}): boolean {
  if (/^(Describe|Get|List|Search|Lookup)/.test(action)) return false;
  if (READ_ONLY_EXCEPTIONS.has(action)) return false;
  if (params['DryRun'] === 'true') return false; // EC2 DryRun checks permissions only
  return true;
}

/** Service from the SigV4 credential scope: Credential=AKID/20240101/us-east-1/ec2/aws4_request */
function scopeService(auth: string | undefined): string | undefined {
  const m = /Credential=[^/,\s]+\/\d{8}\/[^/]+\/([^/]+)\/aws4_request/.exec(auth ?? '');
  return m?.[1];
}

/** EKS REST routes: [method, path pattern, action], matched on the raw path; path parameters (decoded) become params. */
const EKS_ROUTES: Array<[string, RegExp, string]> = [
  ['POST', /^\/clusters$/, 'CreateCluster'],
  ['GET', /^\/clusters$/, 'ListClusters'],
  ['GET', /^\/clusters\/(?<name>[^/]+)$/, 'DescribeCluster'],
  ['DELETE', /^\/clusters\/(?<name>[^/]+)$/, 'DeleteCluster'],
  ['POST', /^\/clusters\/(?<name>[^/]+)\/update-config$/, 'UpdateClusterConfig'],
  ['POST', /^\/clusters\/(?<name>[^/]+)\/updates$/, 'UpdateClusterVersion'],
  ['GET', /^\/clusters\/(?<name>[^/]+)\/updates$/, 'ListUpdates'],
  ['GET', /^\/clusters\/(?<name>[^/]+)\/updates\/(?<updateId>[^/]+)$/, 'DescribeUpdate'],
  ['POST', /^\/clusters\/(?<name>[^/]+)\/node-groups$/, 'CreateNodegroup'],
  ['GET', /^\/clusters\/(?<name>[^/]+)\/node-groups$/, 'ListNodegroups'],
  ['GET', /^\/clusters\/(?<name>[^/]+)\/node-groups\/(?<nodegroupName>[^/]+)$/, 'DescribeNodegroup'],
  ['DELETE', /^\/clusters\/(?<name>[^/]+)\/node-groups\/(?<nodegroupName>[^/]+)$/, 'DeleteNodegroup'],
  ['POST', /^\/clusters\/(?<name>[^/]+)\/node-groups\/(?<nodegroupName>[^/]+)\/update-config$/, 'UpdateNodegroupConfig'],
  ['POST', /^\/clusters\/(?<name>[^/]+)\/node-groups\/(?<nodegroupName>[^/]+)\/update-version$/, 'UpdateNodegroupVersion'],
  ['POST', /^\/clusters\/(?<name>[^/]+)\/addons$/, 'CreateAddon'],
  ['GET', /^\/clusters\/(?<name>[^/]+)\/addons$/, 'ListAddons'],
  ['GET', /^\/clusters\/(?<name>[^/]+)\/addons\/(?<addonName>[^/]+)$/, 'DescribeAddon'],
  ['DELETE', /^\/clusters\/(?<name>[^/]+)\/addons\/(?<addonName>[^/]+)$/, 'DeleteAddon'],
  ['POST', /^\/clusters\/(?<name>[^/]+)\/addons\/(?<addonName>[^/]+)\/update$/, 'UpdateAddon'],
  ['GET', /^\/addons\/supported-versions$/, 'DescribeAddonVersions'],
  ['POST', /^\/clusters\/(?<name>[^/]+)\/access-entries$/, 'CreateAccessEntry'],
  ['GET', /^\/clusters\/(?<name>[^/]+)\/access-entries$/, 'ListAccessEntries'],
  ['GET', /^\/clusters\/(?<name>[^/]+)\/access-entries\/(?<principalArn>[^/]+)$/, 'DescribeAccessEntry'],
  ['POST', /^\/clusters\/(?<name>[^/]+)\/access-entries\/(?<principalArn>[^/]+)$/, 'UpdateAccessEntry'],
  ['DELETE', /^\/clusters\/(?<name>[^/]+)\/access-entries\/(?<principalArn>[^/]+)$/, 'DeleteAccessEntry'],
  ['POST', /^\/clusters\/(?<name>[^/]+)\/access-entries\/(?<principalArn>[^/]+)\/access-policies$/, 'AssociateAccessPolicy'],
  ['GET', /^\/clusters\/(?<name>[^/]+)\/access-entries\/(?<principalArn>[^/]+)\/access-policies$/, 'ListAssociatedAccessPolicies'],
  ['DELETE', /^\/clusters\/(?<name>[^/]+)\/access-entries\/(?<principalArn>[^/]+)\/access-policies\/(?<policyArn>[^/]+)$/, 'DisassociateAccessPolicy'],
  ['GET', /^\/access-policies$/, 'ListAccessPolicies'],
  ['POST', /^\/tags\/(?<resourceArn>.+)$/, 'TagResource'],
  ['DELETE', /^\/tags\/(?<resourceArn>.+)$/, 'UntagResource'],
  ['GET', /^\/tags\/(?<resourceArn>.+)$/, 'ListTagsForResource'],
];

function decode(req: IncomingMessage, body: Buffer): Decoded {
  const url = new URL(req.url ?? '/', 'http://proxy.invalid');
  const scope = scopeService(req.headers.authorization);
  const target = req.headers['x-amz-target'];
  const contentType = String(req.headers['content-type'] ?? '');

  // JSON 1.0/1.1 services: X-Amz-Target: <ServicePrefix>.<Action>
  if (typeof target === 'string' && target.includes('.')) {
    return {
      service: scope ?? target.split('.')[0]!,
      action: target.slice(target.lastIndexOf('.') + 1),
      protocol: 'json',
      params: jsonScalars(body),
    };
  }

  // Query protocol (EC2 and the query services): Action=... in the form body (or the query string).
  const form = contentType.includes('x-www-form-urlencoded') ? new URLSearchParams(body.toString('utf8')) : url.searchParams;
  const action = form.get('Action');
  if (action) {
    const params = Object.fromEntries(form.entries());
    let service = scope ?? 'unknown';
    if (service === 'elasticloadbalancing') service = params['Version'] === '2015-12-01' ? 'elbv2' : 'elb';
    return { service, action, protocol: service === 'ec2' ? 'ec2' : 'query', params };
  }

  // REST-JSON (EKS): method + path. Matched raw, since a principal ARN in the path carries an encoded '/'.
  const path = decodeURIComponent(url.pathname);
  if (scope === 'eks' || scope === undefined) {
    for (const [method, pattern, name] of EKS_ROUTES) {
      const m = req.method === method ? pattern.exec(url.pathname) : null;
      if (m) {
        const groups = Object.fromEntries(Object.entries(m.groups ?? {}).map(([k, v]) => [k, decodeURIComponent(v)]));
        return {
          service: 'eks',
          action: name,
          protocol: 'rest-json',
          params: { ...jsonScalars(body), ...groups },
        };
      }
    }
  }
  return { service: scope ?? 'unknown', action: 'Unknown', protocol: 'rest-json', params: { method: req.method ?? '', path } };
}

/** Top-level string/number/boolean fields of a JSON body, as strings. */
function jsonScalars(body: Buffer): Record<string, string> {
  if (body.length === 0) return {};
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(parsed)) {
      if (['string', 'number', 'boolean'].includes(typeof v)) out[k] = String(v);
    }
    return out;
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------------------------------------
// Error answers, each in the service's own protocol (as the SDK v3 parsers expect them)

interface ErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function errorAnswer(d: Decoded, kind: 'throttle' | 'server-error', serverStatus: 500 | 503): ErrorAnswer {
  const requestId = randomUUID();
  if (d.protocol === 'ec2') {
    // EC2: <Response><Errors><Error>; throttling is RequestLimitExceeded with HTTP 503.
    const [status, code, message] =
      kind === 'throttle'
        ? [503, 'RequestLimitExceeded', 'Request limit exceeded.']
        : serverStatus === 503
          ? [503, 'Unavailable', 'The server is overloaded and can not handle the request.']
          : [500, 'InternalError', 'An internal error has occurred.'];
    return {
      status,
      headers: { 'content-type': 'text/xml;charset=UTF-8' },
      body:
        `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code>` +
        `<Message>${message}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`,
    };
  }
  if (d.protocol === 'query') {
    // AutoScaling, ELB, ELBv2, IAM, STS: <ErrorResponse><Error><Type>; throttling is Throttling with 400.
    const [status, type, code, message] =
      kind === 'throttle'
        ? [400, 'Sender', 'Throttling', 'Rate exceeded']
        : serverStatus === 503
          ? [503, 'Receiver', 'ServiceUnavailable', 'Service is unavailable']
          : [500, 'Receiver', 'InternalFailure', 'An internal error has occurred'];
    return {
      status,
      headers: { 'content-type': 'text/xml', 'x-amzn-requestid': requestId },
      body:
        `<ErrorResponse><Error><Type>${type}</Type><Code>${code}</Code><Message>${message}</Message></Error>` +
        `<RequestId>${requestId}</RequestId></ErrorResponse>`,
    };
  }
  // JSON and REST-JSON (EKS): error code in x-amzn-ErrorType and __type.
  const [status, code, message] =
    kind === 'throttle'
      ? [429, 'ThrottlingException', 'Rate exceeded']
      : serverStatus === 503
        ? [503, 'ServiceUnavailableException', 'Service is unavailable']
        : [500, d.service === 'eks' ? 'ServerException' : 'InternalFailure', 'An internal error has occurred'];
  return {
    status,
    headers: {
      'content-type': d.protocol === 'json' ? 'application/x-amz-json-1.1' : 'application/json',
      'x-amzn-errortype': code,
      'x-amzn-requestid': requestId,
    },
    body: JSON.stringify({ __type: code, message }),
  };
}

// ---------------------------------------------------------------------------------------------
// Deterministic PRNG and token buckets

/** mulberry32: small, fast, good enough to decide faults reproducibly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A clock for the token buckets that moves only when told to. */
export function manualClock(start = 0): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

class Bucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly spec: TokenBucketSpec,
    private readonly clock: () => number = Date.now,
  ) {
    this.tokens = spec.burst;
    this.last = clock();
  }
  take(): boolean {
    const now = this.clock();
    this.tokens = Math.min(this.spec.burst, this.tokens + ((now - this.last) / 1000) * this.spec.refill);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// The proxy

/** Drop hop-by-hop headers (RFC 9110 7.6.1); Node sets its own framing towards the caller. */
function endToEndHeaders(h: IncomingMessage['headers']): IncomingMessage['headers'] {
  const out = { ...h };
  for (const k of ['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade']) delete out[k];
  return out;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(opts.target);
  const calls: RecordedCall[] = [];
  const eks = opts.eks === false ? undefined : new EksStandIn(opts.eks === true ? {} : opts.eks);

  // Fault state, rebuilt by setFaults.
  let faults: Faults = {};
  let random = prng(0);
  let buckets: { mutating: Bucket; nonMutating: Bucket; runInstances: Bucket } | undefined;
  let throttledFirst = 0;
  let mutatingReached = 0;
  /** Set while an 'after-response' kill is pending: the next call triggers it and is refused. */
  let pendingKill: (() => void) | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  let killFired = false;
  let authorizer: Authorizer | undefined;
  let standInCredentials: { accessKeyId: string; secretAccessKey: string } | undefined;

  function setFaults(f: Faults): void {
    faults = { ...f };
    random = prng(f.seed ?? Math.floor(Math.random() * 2 ** 32));
    const spec = f.tokenBuckets === true ? EC2_TOKEN_BUCKETS : f.tokenBuckets || undefined;
    const clock = f.clock ?? Date.now;
    buckets = spec
      ? { mutating: new Bucket(spec.mutating, clock), nonMutating: new Bucket(spec.nonMutating, clock), runInstances: new Bucket(spec.runInstances, clock) }
      : undefined;
    throttledFirst = 0;
    mutatingReached = 0;
    pendingKill = undefined;
    clearTimeout(killTimer);
    killFired = false;
  }
  const { target: _t, eks: _e, ...initialFaults } = opts;
  setFaults(initialFaults);

  function doKill(k: KillAfterMutating): void {
    if (k.pid !== undefined) {
      try {
        process.kill(k.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    k.onKill?.();
  }

  /** Decide the fault for one call (null: forward it). Token buckets come first, like AWS. */
  function chooseFault(d: Decoded, mutating: boolean): 'throttle' | 'token-bucket' | 'server-error' | null {
    if (buckets && d.service === 'ec2') {
      const bucket = d.action === 'RunInstances' ? buckets.runInstances : mutating ? buckets.mutating : buckets.nonMutating;
      if (!bucket.take()) return 'token-bucket';
    }
    if (!matches(d)) return null;
    // Always draw both numbers, so the sequence of decisions depends only on the seed and call order.
    const r1 = random();
    const r2 = random();
    if (throttledFirst < (faults.throttleFirst ?? 0)) {
      throttledFirst++;
      return 'throttle';
    }
    if (r1 < (faults.throttleRate ?? 0)) return 'throttle';
    if (r2 < (faults.serverErrorRate ?? 0)) return 'server-error';
    return null;
  }
  const matches = (d: Decoded) => !faults.onlyActions || faults.onlyActions.includes(d.action);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = Date.now();
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const d = decode(req, body);
    const mutating = isMutating(d.action, d.params);
    const call: RecordedCall = { service: d.service, action: d.action, mutating, status: 0, at, durationMs: 0, params: d.params };
    calls.push(call);
    const finish = (status: number, faulted?: string) => {
      call.status = status;
      call.durationMs = Date.now() - at;
      if (faulted) call.faulted = faulted;
    };

    // A caller coming back after an 'after-response' kill was armed: kill it now, drop its call.
    if (pendingKill) {
      pendingKill();
      finish(0, 'dropped-after-kill');
      res.destroy();
      return;
    }

    if (authorizer) {
      const scope = /Credential=([^/,\s]+)\/\d{8}\/([^/]+)\//.exec(req.headers.authorization ?? '');
      const denied = await authorizer({ ...d, body, accessKeyId: scope?.[1], region: scope?.[2] });
      if (denied) {
        res.writeHead(denied.status, { ...denied.headers, 'content-length': Buffer.byteLength(denied.body) });
        res.end(denied.body);
        finish(denied.status, 'denied');
        return;
      }
    }

    if (faults.latencyMs && matches(d)) {
      call.delayedMs = faults.latencyMs;
      await sleep(faults.latencyMs);
    }

    const fault = chooseFault(d, mutating);
    if (fault) {
      const answer = errorAnswer(d, fault === 'server-error' ? 'server-error' : 'throttle', faults.serverErrorStatus ?? 500);
      res.writeHead(answer.status, { ...answer.headers, 'content-length': Buffer.byteLength(answer.body) });
      res.end(answer.body);
      finish(answer.status, fault);
      return;
    }

    // Forward to moto, or let the EKS stand-in answer (it asks moto what it needs).
    const upstream: IncomingMessage | EksAnswer =
      eks && d.service === 'eks' && eks.handles(d.action)
        ? await eks.answer(
            { action: d.action, method: req.method ?? 'GET', url: req.url ?? '/', params: d.params, headers: req.headers, body },
            (method, path, json, service) => askMoto(req, method, path, json, service),
          )
        : await forward(req.method ?? 'GET', req.url ?? '/', endToEndHeaders(req.headers), body);
    const standIn = !(upstream instanceof IncomingMessage);

    const kill = faults.killAfterMutating;
    const killNow = mutating && kill && !killFired && ++mutatingReached === kill.n ? kill : undefined;
    if (killNow) killFired = true;

    if (killNow?.when === 'before-response') {
      // moto (or the stand-in) has answered, so the call took effect; the caller dies without hearing it.
      if (!standIn) upstream.resume();
      doKill(killNow);
      finish(0, 'killed-before-response');
      res.destroy();
      return;
    }

    const status = standIn ? upstream.status : (upstream.statusCode ?? 502);
    const closed = new Promise<void>((resolve) => res.once('close', resolve));
    if (standIn) {
      res.writeHead(status, upstream.headers);
      res.end(upstream.body);
    } else {
      res.writeHead(status, endToEndHeaders(upstream.headers));
      upstream.once('aborted', () => res.destroy()); // moto died mid-answer: the caller sees a broken connection
      upstream.pipe(res);
    }
    await closed;
    finish(status, killNow ? 'killed-after-response' : undefined);

    if (killNow) {
      // The answer is out. Kill at the caller's next call, or after graceMs.
      const fire = () => {
        if (pendingKill !== fire) return; // already fired, or setFaults/reset disarmed it
        pendingKill = undefined;
        clearTimeout(killTimer);
        doKill(killNow);
      };
      pendingKill = fire;
      killTimer = setTimeout(fire, killNow.graceMs ?? 200);
    }
  }

  function forward(method: string, path: string, headers: IncomingMessage['headers'], body: Buffer | string): Promise<IncomingMessage> {
    return new Promise<IncomingMessage>((resolve, reject) => {
      const up = httpRequest({ host: target.hostname, port: target.port, method, path, headers }, resolve);
      up.once('error', reject);
      up.end(body);
    });
  }

  /**
   * The stand-in's own question to moto, with the caller's credentials (moto keys its backends by their scope).
   * With `service` (e.g. ec2, for a launch template EKS reads) the credential scope names that service, which
   * moto routes by (it does not check signatures).
   */
  async function askMoto(req: IncomingMessage, method: string, path: string, json?: unknown, service?: string): Promise<EksAnswer> {
    const payload = json === undefined ? '' : JSON.stringify(json);
    // A query-protocol service (ec2) reads its parameters from the query string, not JSON.
    let headers: IncomingMessage['headers'] = { 'content-type': service ? 'application/x-www-form-urlencoded' : 'application/json', 'content-length': String(Buffer.byteLength(payload)) };
    if (standInCredentials) {
      const scope = /Credential=[^/,\s]+\/\d{8}\/([^/]+)\/([^/]+)\//.exec(String(req.headers.authorization ?? ''));
      const url = new URL(path, 'http://stand-in.invalid');
      const signer = new SignatureV4({ service: service ?? scope?.[2] ?? 'eks', region: scope?.[1] ?? 'us-east-1', credentials: standInCredentials, sha256: Sha256 });
      const signed = await signer.sign({
        method,
        protocol: 'http:',
        hostname: target.hostname,
        port: Number(target.port),
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        headers: { host: target.host, ...(headers as Record<string, string>) },
        body: payload,
      });
      headers = signed.headers;
    } else {
      for (const h of ['authorization', 'x-amz-date', 'x-amz-security-token']) if (req.headers[h] !== undefined) headers[h] = req.headers[h];
      if (service && typeof headers['authorization'] === 'string') headers['authorization'] = headers['authorization'].replace(/(Credential=[^/]+\/[^/]+\/[^/]+\/)[^/]+(\/aws4_request)/, `$1${service}$2`);
    }
    const up = await forward(method, path, headers, payload);
    const chunks: Buffer[] = [];
    for await (const chunk of up) chunks.push(chunk as Buffer);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(endToEndHeaders(up.headers))) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
    return { status: up.statusCode ?? 502, headers: out, body: Buffer.concat(chunks) };
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      // moto unreachable or similar: answer 502 so the failure is visible, not a hang.
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`fault-proxy: ${String(err)}`);
      } else {
        res.destroy();
      }
    });
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, resolve);
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('fault-proxy: no address');
  const port = addr.port;

  return {
    endpoint: `http://${LOOPBACK}:${port}`,
    port,
    calls,
    eks,
    setFaults,
    setAuthorizer: (a) => {
      authorizer = a;
    },
    setStandInCredentials: (keys) => {
      standInCredentials = keys;
    },
    countBy: (action) => calls.filter((c) => c.action === action).length,
    mutatingCalls: () => calls.filter((c) => c.mutating),
    reset() {
      calls.length = 0;
      setFaults({});
      eks?.reset();
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Registers mocha hooks for the usual AWS bed of a suite: moto behind the
 * fault proxy (with the EKS stand-in, `opts.eks`), started once, all reset before each test. Read the live
 * values through the returned object inside tests and hooks.
 */
/** resetEach: false keeps moto's world between the tests of a suite (one story told in steps). */
export function useMotoBehindProxy(opts: { eks?: boolean | EksStandInOptions; resetEach?: boolean } = {}): { readonly moto: Moto; readonly proxy: FaultProxy } {
  const { resetEach = true, ...proxyOptions } = opts;
  const bed: { moto?: Moto; proxy?: FaultProxy } = {};
  before(async () => {
    bed.moto = await startMoto();
    bed.proxy = await startFaultProxy({ target: bed.moto.endpoint, ...proxyOptions });
  });
  after(async () => {
    await bed.proxy?.stop();
    await bed.moto?.stop();
  });
  beforeEach(async () => {
    if (resetEach) await bed.moto!.reset();
    bed.proxy!.reset();
  });
  return {
    get moto() {
      return bed.moto!;
    },
    get proxy() {
      return bed.proxy!;
    },
  };
}
