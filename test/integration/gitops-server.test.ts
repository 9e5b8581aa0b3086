/**
 * The reconciler's HTTP server over real HTTP on 127.0.0.1: probes, metrics and signed webhooks,
 * with the real logger writing JSON lines to a captured stream.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import { createLogger } from '../../src/core/logger.js';
import { createMetrics } from '../../src/gitops/metrics.js';
import { startServer, type RunningServer, type ServerOptions } from '../../src/gitops/server.js';
import type { PushEvent } from '../../src/gitops/types.js';
import { DeliveryMemory } from '../../src/gitops/webhooks.js';

const SECRETS = { github: 'gh-server-key-7', gitlab: 'gl-server-key-8', gitea: 'gt-server-key-9' };
const AFTER = '9f1c2e0d3b4a59687766554433221100ffeeddcc';
/** Text in the bodies that must never reach a log line. */
const MARKER = 'body-marker-a41c';

const sign = (secret: string, body: Buffer) => createHmac('sha256', secret).update(body).digest('hex');
const pushBody = (ref = 'refs/heads/main', after = AFTER) =>
  Buffer.from(JSON.stringify({ ref, before: '0'.repeat(39) + '1', after, commits: [{ id: after, message: MARKER }], repository: { full_name: 'acme/fleet' } }));

interface Harness {
  server: RunningServer;
  pushes: PushEvent[];
  logLines: () => Array<Record<string, unknown>>;
  rawLog: () => string;
  state: { healthy: boolean; ready: boolean | { ready: boolean; reason?: string } };
}

async function start(overrides: Partial<ServerOptions> = {}): Promise<Harness> {
  let raw = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      raw += chunk.toString();
      done();
    },
  });
  const pushes: PushEvent[] = [];
  const state: Harness['state'] = { healthy: true, ready: true };
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    metrics: createMetrics(),
    healthy: () => state.healthy,
    ready: () => state.ready,
    webhookSecrets: SECRETS,
    branch: 'main',
    onPush: (event) => void pushes.push(event),
    log: createLogger({ stream, format: 'json', level: 'debug' }),
    ...overrides,
  });
  return {
    server,
    pushes,
    state,
    rawLog: () => raw,
    logLines: () =>
      raw
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

async function post(h: Harness, path: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  const res = await fetch(`${h.server.url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
  return { status: res.status, text: await res.text() };
}

/** A raw request, for bodies fetch will not send as we want them (declared too large, chunked). */
function rawRequest(h: Harness, options: http.RequestOptions, write: (req: http.ClientRequest) => void): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${h.server.url}/webhooks/github`, { method: 'POST', ...options }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    write(req);
  });
}

describe('gitops/server: probes, metrics and webhooks over real HTTP', function () {
  this.timeout(30_000);
  let h: Harness;

  beforeEach(async () => {
    h = await start();
  });
  afterEach(async () => {
    await h.server.close();
  });

  it('answers the probes from the callbacks, 404 for unknown paths and 405 for wrong methods', async () => {
    expect(h.server.url).to.equal(`http://127.0.0.1:${h.server.port}`);
    let res = await fetch(`${h.server.url}/healthz`);
    expect([res.status, await res.text()]).to.deep.equal([200, 'ok\n']);
    expect((await fetch(`${h.server.url}/readyz`)).status).to.equal(200);

    h.state.healthy = false;
    h.state.ready = { ready: false, reason: 'not leader and no Git sync yet' };
    expect((await fetch(`${h.server.url}/healthz`)).status).to.equal(503);
    res = await fetch(`${h.server.url}/readyz`);
    expect([res.status, await res.text()]).to.deep.equal([503, 'not ready: not leader and no Git sync yet\n']);
    h.state.ready = false;
    expect((await fetch(`${h.server.url}/readyz`)).status).to.equal(503);

    expect((await fetch(`${h.server.url}/nope`)).status).to.equal(404);
    res = await fetch(`${h.server.url}/healthz`, { method: 'POST', body: 'x' });
    expect([res.status, res.headers.get('allow')]).to.deep.equal([405, 'GET, HEAD']);
    res = await fetch(`${h.server.url}/webhooks/github`);
    expect([res.status, res.headers.get('allow')]).to.deep.equal([405, 'POST']);
  });

  it('accepts a signed GitHub push on the watched branch and calls onPush once with its ref and after', async () => {
    const body = pushBody();
    const res = await post(h, '/webhooks/github', body, {
      'x-github-event': 'push',
      'x-github-delivery': 'd-good-1',
      'x-hub-signature-256': `sha256=${sign(SECRETS.github, body)}`,
    });
    expect(res).to.deep.equal({ status: 202, text: 'accepted\n' });
    expect(h.pushes).to.deep.equal([{ provider: 'github', ref: 'refs/heads/main', after: AFTER, delivery: 'd-good-1' }]);
  });

  it('answers a replayed delivery (same id, body and signature; or the same signed body under a new id) with 200 and does not act on it', async () => {
    const body = pushBody();
    const headers = { 'x-github-event': 'push', 'x-github-delivery': 'd-replayed-1', 'x-hub-signature-256': `sha256=${sign(SECRETS.github, body)}` };
    expect(await post(h, '/webhooks/github', body, headers)).to.deep.equal({ status: 202, text: 'accepted\n' });
    const replay = await post(h, '/webhooks/github', body, headers);
    expect(replay).to.deep.equal({ status: 200, text: 'replay: this delivery was received before; nothing done\n' });
    // The delivery id is not signed: a captured delivery sent with a fresh id is still the same body.
    expect((await post(h, '/webhooks/github', body, { ...headers, 'x-github-delivery': 'd-forged-id' })).status).to.equal(200);
    const { 'x-github-delivery': _id, ...noId } = headers;
    expect((await post(h, '/webhooks/github', body, noId)).status).to.equal(200);
    expect(h.pushes).to.have.length(1);
    const logged = h.logLines().filter((l) => l.message === 'Webhook replay ignored');
    expect(logged.map((l) => [l.delivery, l.seenBy])).to.deep.equal([
      ['d-replayed-1', 'delivery id'],
      ['d-forged-id', 'body'],
      [undefined, 'body'],
    ]);

    // GitLab (a token, no signature): by Idempotency-Key (kept across GitLab's retries), else X-Gitlab-Event-UUID.
    const gl = { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRETS.gitlab, 'x-gitlab-event-uuid': 'ev-1', 'idempotency-key': 'idem-1' };
    expect((await post(h, '/webhooks/gitlab', body, gl)).status).to.equal(202);
    expect((await post(h, '/webhooks/gitlab', body, gl)).status).to.equal(200);
    expect((await post(h, '/webhooks/gitlab', body, { ...gl, 'idempotency-key': 'idem-2' })).status, 'a new event with the same payload').to.equal(202);
    // Gitea: X-Gitea-Delivery and the signed body.
    const gt = { 'x-gitea-event': 'push', 'x-gitea-delivery': 'gt-1', 'x-gitea-signature': sign(SECRETS.gitea, body) };
    expect((await post(h, '/webhooks/gitea', body, gt)).status).to.equal(202);
    expect((await post(h, '/webhooks/gitea', body, gt)).status).to.equal(200);
    expect(h.pushes.map((p) => p.provider)).to.deep.equal(['github', 'gitlab', 'gitlab', 'gitea']);
  });

  it('forgets a delivery after its time to live, and keeps no more than it is told', async () => {
    let now = 0;
    const own = await start({ deliveries: new DeliveryMemory({ ttlMs: 60_000, maxKeys: 2, now: () => now }) });
    try {
      const hook = (n: number) => {
        const body = pushBody('refs/heads/main', String(n).repeat(40));
        return [body, { 'x-github-event': 'push', 'x-github-delivery': `d-${n}`, 'x-hub-signature-256': `sha256=${sign(SECRETS.github, body)}` }] as const;
      };
      expect((await post(own, '/webhooks/github', ...hook(1))).status).to.equal(202);
      expect((await post(own, '/webhooks/github', ...hook(1))).status).to.equal(200);
      now = 60_000; // an hour's stand-in later: a redelivery is acted on again
      expect((await post(own, '/webhooks/github', ...hook(1))).status).to.equal(202);
      expect((await post(own, '/webhooks/github', ...hook(2))).status).to.equal(202); // 2 keys per delivery: d-1 goes
      expect((await post(own, '/webhooks/github', ...hook(1))).status).to.equal(202);
      expect(own.pushes).to.have.length(4);
    } finally {
      await own.server.close();
    }
  });

  it('refuses a bad signature with 401, calls nothing, and logs who and why but not the body or secrets', async () => {
    const body = pushBody();
    const res = await post(h, '/webhooks/github', body, {
      'x-github-event': 'push',
      'x-github-delivery': 'd-forged-2',
      'x-hub-signature-256': `sha256=${sign('a-guessed-key', body)}`,
    });
    expect(res.status).to.equal(401);
    expect(h.pushes).to.have.length(0);
    const refused = h.logLines().filter((l) => l.message === 'Webhook refused: not verified');
    expect(refused).to.have.length(1);
    expect(refused[0]).to.include({ level: 'warn', provider: 'github', remote: '127.0.0.1', delivery: 'd-forged-2', reason: 'X-Hub-Signature-256 does not match the body' });
    // Nothing of the body, the signature or any secret anywhere in the log.
    const raw = h.rawLog();
    for (const leak of [MARKER, AFTER, sign('a-guessed-key', body), ...Object.values(SECRETS)]) expect(raw).to.not.include(leak);
  });

  it('takes GitLab tokens and Gitea signatures; other branches, pings and malformed payloads are not pushes', async () => {
    const body = pushBody();
    expect(await post(h, '/webhooks/gitlab', body, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRETS.gitlab })).to.include({ status: 202 });
    expect(await post(h, '/webhooks/gitlab', body, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRETS.github })).to.include({ status: 401 });
    expect(await post(h, '/webhooks/gitea', body, { 'x-gitea-event': 'push', 'x-gitea-signature': sign(SECRETS.gitea, body) })).to.include({ status: 202 });
    expect(h.pushes.map((p) => p.provider)).to.deep.equal(['gitlab', 'gitea']);

    const other = pushBody('refs/heads/feature/x');
    const ignored = await post(h, '/webhooks/gitea', other, { 'x-gitea-event': 'push', 'x-gitea-signature': sign(SECRETS.gitea, other) });
    expect(ignored).to.deep.equal({ status: 202, text: 'ignored: refs/heads/feature/x is not the watched branch main\n' });
    const ping = Buffer.from('{"zen":"Design for failure.","hook_id":7}');
    const pong = await post(h, '/webhooks/github', ping, { 'x-github-event': 'ping', 'x-hub-signature-256': `sha256=${sign(SECRETS.github, ping)}` });
    expect(pong).to.deep.equal({ status: 202, text: 'ignored: ping\n' });
    const junk = Buffer.from(`{"ref": ${MARKER}`);
    const bad = await post(h, '/webhooks/github', junk, { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign(SECRETS.github, junk)}` });
    expect(bad.status).to.equal(400);
    expect(bad.text).to.not.include(MARKER);
    expect(h.pushes).to.have.length(2);
  });

  it('exposes the reconciler metrics on /metrics, counting webhook results', async () => {
    const body = pushBody();
    const headers = { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign(SECRETS.github, body)}` };
    await post(h, '/webhooks/github', body, headers);
    await post(h, '/webhooks/github', body, headers); // the same signed body again: a replay
    const other = pushBody('refs/heads/main', 'a'.repeat(40));
    await post(h, '/webhooks/github', other, { ...headers, 'x-hub-signature-256': `sha256=${sign(SECRETS.github, other)}` });
    await post(h, '/webhooks/github', body, { ...headers, 'x-hub-signature-256': 'sha256=00' });
    await post(h, '/webhooks/gitea', body, { 'x-gitea-event': 'push' });

    const res = await fetch(`${h.server.url}/metrics`);
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const name of [
      'capflow_reconciler_passes_total',
      'capflow_reconciler_pass_duration_seconds',
      'capflow_reconciler_submissions_total',
      'capflow_reconciler_commit_to_submission_seconds',
      'capflow_reconciler_webhooks_total',
      'capflow_reconciler_clusters',
      'capflow_reconciler_drifted_clusters',
      'capflow_reconciler_leader',
      'process_cpu_user_seconds_total',
    ]) {
      expect(text).to.include(`# TYPE ${name} `);
    }
    expect(text).to.include('capflow_reconciler_webhooks_total{provider="github",result="accepted"} 2');
    expect(text).to.include('capflow_reconciler_webhooks_total{provider="github",result="replay"} 1');
    expect(text).to.include('capflow_reconciler_webhooks_total{provider="gitlab",result="replay"} 0');
    expect(text).to.include('capflow_reconciler_webhooks_total{provider="github",result="unauthorized"} 1');
    expect(text).to.include('capflow_reconciler_webhooks_total{provider="gitea",result="unauthorized"} 1');
    expect(text).to.include('capflow_reconciler_webhooks_total{provider="gitlab",result="accepted"} 0');
    expect(text).to.include('capflow_reconciler_commit_to_submission_seconds_bucket{le="0.05"} 0');
    expect(text).to.include('capflow_reconciler_commit_to_submission_seconds_bucket{le="600"} 0');
  });

  it('reports what the reconciler records: passes, submissions, latency, clusters by phase, drift, leadership', async () => {
    const metrics = createMetrics();
    const own = await start({ metrics });
    try {
      metrics.passCompleted('ok', 0.2);
      metrics.submission('apply', 'created');
      metrics.commitToSubmission(0.7);
      metrics.setClusters({ Succeeded: 2, Running: 1 }, 1);
      metrics.setClusters({ Succeeded: 3 }, 0);
      metrics.setLeader(true);
      const text = await (await fetch(`${own.server.url}/metrics`)).text();
      expect(text).to.include('capflow_reconciler_passes_total{result="ok"} 1');
      expect(text).to.include('capflow_reconciler_pass_duration_seconds_count 1');
      expect(text).to.include('capflow_reconciler_submissions_total{kind="apply",result="created"} 1');
      expect(text).to.include('capflow_reconciler_commit_to_submission_seconds_bucket{le="0.5"} 0');
      expect(text).to.include('capflow_reconciler_commit_to_submission_seconds_bucket{le="1"} 1');
      expect(text).to.include('capflow_reconciler_clusters{phase="Succeeded"} 3');
      expect(text).to.include('capflow_reconciler_clusters{phase="Running"} 0');
      expect(text).to.include('capflow_reconciler_drifted_clusters 0');
      expect(text).to.include('capflow_reconciler_leader 1');
    } finally {
      await own.server.close();
    }
  });

  it('answers 413 to bodies over the limit, declared or streamed, without calling onPush', async () => {
    const small = await start({ maxBodyBytes: 1024 });
    try {
      const big = Buffer.alloc(4096, 'a');
      const headers = { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign(SECRETS.github, big)}` };
      expect((await post(small, '/webhooks/github', big, headers)).status).to.equal(413);
      // Chunked, no length given: counted as it arrives.
      const streamed = await rawRequest(small, { headers }, (req) => {
        for (let i = 0; i < 8; i++) req.write(Buffer.alloc(512, 'b'));
        req.end();
      });
      expect(streamed.status).to.equal(413);
      expect(small.pushes).to.have.length(0);
      const body = pushBody();
      expect((await post(small, '/webhooks/github', body, { 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign(SECRETS.github, body)}` })).status).to.equal(202);
    } finally {
      await small.server.close();
    }
  });

  it('closes gracefully: a request in flight is answered, new connections are refused', async () => {
    const body = pushBody();
    const half = Math.floor(body.length / 2);
    let sent!: () => void;
    const halfSent = new Promise<void>((resolve) => (sent = resolve));
    let finish!: () => void;
    const inFlight = rawRequest(
      h,
      { headers: { 'content-type': 'application/json', 'content-length': String(body.length), 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign(SECRETS.github, body)}` } },
      (req) => {
        req.write(body.subarray(0, half), () => sent());
        finish = () => req.end(body.subarray(half));
      },
    );
    await halfSent;
    await new Promise((resolve) => setTimeout(resolve, 50)); // the server has the request by now
    let closed = false;
    const closing = h.server.close().then(() => (closed = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(closed, 'close() waits for the request in flight').to.equal(false);
    const refused = await fetch(`${h.server.url}/healthz`).then(
      () => 'answered',
      () => 'refused',
    );
    expect(refused).to.equal('refused');
    finish();
    expect(await inFlight).to.deep.equal({ status: 202, text: 'accepted\n' });
    await closing;
    expect(closed).to.equal(true);
    expect(h.pushes).to.have.length(1);
  });
});
