/**
 * Webhook verification: real HMACs and tokens computed here, payloads shaped like each host's push event.
 */
import { createHash, createHmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { expect } from 'chai';
import { DeliveryMemory, replayKeys, verifyWebhook, type WebhookResult, type WebhookSecrets } from '../../src/gitops/webhooks.js';

const SECRETS: WebhookSecrets = { github: 'gh-hook-key-1', gitlab: 'gl-hook-key-2', gitea: 'gt-hook-key-3' };
const BEFORE = '28e1879d029cb852e4844d9c718537df08844e03';
const AFTER = 'bffeb74224043ba2feb48d137756c8a9331c449a';
const ZERO = '0'.repeat(40);
/** Text in the payloads that must never show up in a reason. */
const MARKER = 'payload-marker-5f1e';

const hmac = (secret: string, body: Buffer | string) => createHmac('sha256', secret).update(body).digest('hex');

function githubPush(overrides: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      ref: 'refs/heads/main',
      before: BEFORE,
      after: AFTER,
      created: false,
      deleted: false,
      forced: false,
      compare: `https://github.com/acme/fleet/compare/${BEFORE.slice(0, 12)}...${AFTER.slice(0, 12)}`,
      commits: [{ id: AFTER, message: MARKER, author: { name: 'a', email: 'a@example.com' }, added: [], removed: [], modified: ['clusters/dev/cluster.yaml'] }],
      head_commit: { id: AFTER, message: MARKER },
      repository: { id: 1, full_name: 'acme/fleet', default_branch: 'main' },
      pusher: { name: 'a', email: 'a@example.com' },
      ...overrides,
    }),
  );
}

function gitlabPush(overrides: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      object_kind: 'push',
      event_name: 'push',
      before: BEFORE,
      after: AFTER,
      ref: 'refs/heads/main',
      ref_protected: true,
      checkout_sha: AFTER,
      user_username: 'a',
      project_id: 15,
      project: { id: 15, name: 'fleet', path_with_namespace: 'acme/fleet', default_branch: 'main' },
      commits: [{ id: AFTER, message: MARKER, added: [], modified: ['clusters/dev/cluster.yaml'], removed: [] }],
      total_commits_count: 1,
      repository: { name: 'fleet', homepage: 'https://gitlab.example.com/acme/fleet' },
      ...overrides,
    }),
  );
}

function giteaPush(overrides: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      ref: 'refs/heads/main',
      before: BEFORE,
      after: AFTER,
      compare_url: `http://gitea.example.com/acme/fleet/compare/${BEFORE}...${AFTER}`,
      commits: [{ id: AFTER, message: MARKER, author: { name: 'a', email: 'a@example.com', username: 'a' } }],
      repository: { id: 140, full_name: 'acme/fleet', default_branch: 'main' },
      pusher: { id: 1, login: 'a' },
      sender: { id: 1, login: 'a' },
      ...overrides,
    }),
  );
}

const githubHeaders = (body: Buffer, secret = SECRETS.github!, event = 'push'): IncomingHttpHeaders => ({
  'content-type': 'application/json',
  'x-github-event': event,
  'x-github-delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958',
  'x-hub-signature-256': `sha256=${hmac(secret, body)}`,
});
const gitlabHeaders = (token = SECRETS.gitlab!, event = 'Push Hook'): IncomingHttpHeaders => ({
  'content-type': 'application/json',
  'x-gitlab-event': event,
  'x-gitlab-event-uuid': '13792a34-cac6-4fda-95a8-c58e00a3954e',
  'x-gitlab-token': token,
});
const giteaHeaders = (body: Buffer, secret = SECRETS.gitea!, event = 'push'): IncomingHttpHeaders => ({
  'content-type': 'application/json',
  'x-gitea-event': event,
  'x-gitea-delivery': 'f6266f16-1bf3-46a5-9ea4-602e06ead473',
  'x-gitea-signature': hmac(secret, body),
});

function reasonOf(result: WebhookResult): string {
  if (result.outcome === 'push') throw new Error('expected a refusal, got a push');
  return result.reason;
}

/** A refusal's reason names the problem, never the body or a secret. */
function expectSafeReason(result: WebhookResult, outcome: WebhookResult['outcome']): void {
  expect(result.outcome).to.equal(outcome);
  const reason = reasonOf(result);
  expect(reason).to.not.include(MARKER);
  for (const secret of Object.values(SECRETS)) expect(reason).to.not.include(secret);
}

describe('gitops/webhooks: push deliveries are verified before they are read', () => {
  describe('GitHub', () => {
    it('accepts a push signed with X-Hub-Signature-256 and returns its ref, after and delivery', () => {
      const body = githubPush();
      const result = verifyWebhook('github', body, githubHeaders(body), SECRETS);
      expect(result).to.deep.equal({
        outcome: 'push',
        event: { provider: 'github', ref: 'refs/heads/main', after: AFTER, delivery: '72d3162e-cc78-11e3-81ab-4c9367dc0958' },
        delivery: '72d3162e-cc78-11e3-81ab-4c9367dc0958',
        replayKeys: ['github id 72d3162e-cc78-11e3-81ab-4c9367dc0958', `github body ${createHash('sha256').update(body).digest('hex')}`],
      });
    });

    it('refuses a signature made with another secret, a tampered body, a missing or malformed signature', () => {
      const body = githubPush();
      expectSafeReason(verifyWebhook('github', body, githubHeaders(body, 'not-the-secret'), SECRETS), 'unauthorized');
      const tampered = githubPush({ after: 'c'.repeat(40) });
      expectSafeReason(verifyWebhook('github', tampered, githubHeaders(body), SECRETS), 'unauthorized');
      const { 'x-hub-signature-256': _dropped, ...unsigned } = githubHeaders(body);
      const missing = verifyWebhook('github', body, unsigned, SECRETS);
      expectSafeReason(missing, 'unauthorized');
      expect(reasonOf(missing)).to.include('missing X-Hub-Signature-256');
      // The legacy SHA-1 header alone is not enough, nor a digest without its sha256= prefix.
      const sha1 = createHmac('sha1', SECRETS.github!).update(body).digest('hex');
      expectSafeReason(verifyWebhook('github', body, { ...unsigned, 'x-hub-signature': `sha1=${sha1}` }, SECRETS), 'unauthorized');
      expectSafeReason(verifyWebhook('github', body, { ...unsigned, 'x-hub-signature-256': hmac(SECRETS.github!, body) }, SECRETS), 'unauthorized');
      expectSafeReason(verifyWebhook('github', body, { ...unsigned, 'x-hub-signature-256': 'sha256=abc' }, SECRETS), 'unauthorized');
    });

    it('refuses everything when no GitHub secret is configured, even a delivery signed with an empty key', () => {
      const body = githubPush();
      const result = verifyWebhook('github', body, githubHeaders(body, ''), { gitlab: SECRETS.gitlab });
      expectSafeReason(result, 'unauthorized');
      expect(reasonOf(result)).to.equal('no github webhook secret is configured');
    });

    it('ignores ping and non-push events once verified, and does not read an unverified event header', () => {
      const ping = Buffer.from(JSON.stringify({ zen: 'Keep it logically awesome.', hook_id: 1 }));
      expect(verifyWebhook('github', ping, githubHeaders(ping, SECRETS.github, 'ping'), SECRETS)).to.include({ outcome: 'ignored', reason: 'ping' });
      const pr = Buffer.from(JSON.stringify({ action: 'opened', number: 1 }));
      const result = verifyWebhook('github', pr, githubHeaders(pr, SECRETS.github, 'pull_request'), SECRETS);
      expect(result).to.include({ outcome: 'ignored', reason: 'event "pull_request" is not a push' });
      expectSafeReason(verifyWebhook('github', ping, githubHeaders(ping, 'wrong', 'ping'), SECRETS), 'unauthorized');
    });

    it('accepts the form-encoded payload GitHub can be set to send (signed as sent)', () => {
      const json = githubPush().toString();
      const body = Buffer.from(new URLSearchParams({ payload: json }).toString());
      const headers = { ...githubHeaders(body), 'content-type': 'application/x-www-form-urlencoded' };
      const result = verifyWebhook('github', body, headers, SECRETS);
      expect(result.outcome).to.equal('push');
      expect(result.outcome === 'push' && result.event.after).to.equal(AFTER);
    });

    it('ignores a push that deletes the branch', () => {
      const body = githubPush({ after: ZERO, deleted: true });
      expect(verifyWebhook('github', body, githubHeaders(body), SECRETS)).to.include({ outcome: 'ignored', reason: 'refs/heads/main was deleted' });
    });

    it('answers bad-request for a verified body that is not a push payload, without quoting it', () => {
      for (const raw of [`not json ${MARKER}`, JSON.stringify([MARKER]), JSON.stringify({ note: MARKER }), JSON.stringify({ ref: 'refs/heads/main', after: MARKER })]) {
        const body = Buffer.from(raw);
        expectSafeReason(verifyWebhook('github', body, githubHeaders(body), SECRETS), 'bad-request');
      }
      const body = githubPush();
      const { 'x-github-event': _event, ...noEvent } = githubHeaders(body);
      expectSafeReason(verifyWebhook('github', body, noEvent, SECRETS), 'bad-request');
    });
  });

  describe('GitLab', () => {
    it('accepts a Push Hook with the right X-Gitlab-Token', () => {
      const result = verifyWebhook('gitlab', gitlabPush(), gitlabHeaders(), SECRETS);
      expect(result).to.deep.include({
        outcome: 'push',
        event: { provider: 'gitlab', ref: 'refs/heads/main', after: AFTER, delivery: '13792a34-cac6-4fda-95a8-c58e00a3954e' },
      });
    });

    it('falls back to checkout_sha when after is absent', () => {
      const body = gitlabPush({ after: undefined });
      const result = verifyWebhook('gitlab', body, gitlabHeaders(), SECRETS);
      expect(result.outcome === 'push' && result.event.after).to.equal(AFTER);
    });

    it('refuses a wrong, longer, shorter or missing token, and a repeated token header', () => {
      const body = gitlabPush();
      for (const token of ['gl-hook-key-X', `${SECRETS.gitlab}x`, SECRETS.gitlab!.slice(0, -1), '']) {
        expectSafeReason(verifyWebhook('gitlab', body, gitlabHeaders(token), SECRETS), 'unauthorized');
      }
      const { 'x-gitlab-token': _token, ...noToken } = gitlabHeaders();
      expectSafeReason(verifyWebhook('gitlab', body, noToken, SECRETS), 'unauthorized');
      const repeated = { ...noToken, 'x-gitlab-token': [SECRETS.gitlab!, SECRETS.gitlab!] } as unknown as IncomingHttpHeaders;
      expectSafeReason(verifyWebhook('gitlab', body, repeated, SECRETS), 'unauthorized');
    });

    it('ignores tag pushes and branch deletions (checkout_sha null, after all zeros)', () => {
      const tag = gitlabPush({ object_kind: 'tag_push', ref: 'refs/tags/v1' });
      expect(verifyWebhook('gitlab', tag, gitlabHeaders(SECRETS.gitlab, 'Tag Push Hook'), SECRETS)).to.include({ outcome: 'ignored' });
      const deleted = gitlabPush({ after: ZERO, checkout_sha: null });
      expect(verifyWebhook('gitlab', deleted, gitlabHeaders(), SECRETS)).to.include({ outcome: 'ignored', reason: 'refs/heads/main was deleted' });
    });
  });

  describe('Gitea', () => {
    it('accepts a push signed with X-Gitea-Signature (bare hex)', () => {
      const body = giteaPush({ ref: 'refs/heads/develop' });
      const result = verifyWebhook('gitea', body, giteaHeaders(body), SECRETS);
      expect(result).to.deep.include({
        outcome: 'push',
        event: { provider: 'gitea', ref: 'refs/heads/develop', after: AFTER, delivery: 'f6266f16-1bf3-46a5-9ea4-602e06ead473' },
      });
    });

    it("refuses GitHub's sha256= form, another provider's secret, and a signature of another body", () => {
      const body = giteaPush();
      expectSafeReason(verifyWebhook('gitea', body, { ...giteaHeaders(body), 'x-gitea-signature': `sha256=${hmac(SECRETS.gitea!, body)}` }, SECRETS), 'unauthorized');
      expectSafeReason(verifyWebhook('gitea', body, giteaHeaders(body, SECRETS.github), SECRETS), 'unauthorized');
      expectSafeReason(verifyWebhook('gitea', giteaPush({ after: 'd'.repeat(40) }), giteaHeaders(body), SECRETS), 'unauthorized');
    });

    it('ignores other events once verified', () => {
      const body = Buffer.from(JSON.stringify({ action: 'created', ref: 'v1' }));
      expect(verifyWebhook('gitea', body, giteaHeaders(body, SECRETS.gitea, 'create'), SECRETS)).to.include({ outcome: 'ignored' });
    });
  });

  it('keeps an odd delivery id printable and short (it goes into refusal logs)', () => {
    const body = githubPush();
    const result = verifyWebhook('github', body, { ...githubHeaders(body, 'wrong'), 'x-github-delivery': `a\u0007b${'c'.repeat(300)}` }, SECRETS);
    expect(result.delivery).to.have.length(100);
    expect(result.delivery?.startsWith('a?b')).to.equal(true);
  });
});

describe('gitops/webhooks: a replayed delivery is known', () => {
  it('by its event id header (GitHub, Gitea; GitLab: Idempotency-Key, else X-Gitlab-Event-UUID) and, for signed bodies, by the body', () => {
    const gh = githubPush();
    const [ghId, ghBody] = replayKeys('github', gh, githubHeaders(gh));
    expect(ghId).to.equal('github id 72d3162e-cc78-11e3-81ab-4c9367dc0958');
    expect(ghBody).to.match(/^github body [0-9a-f]{64}$/);
    // The id header is not signed: the same body under another id has the same body key.
    expect(replayKeys('github', gh, { ...githubHeaders(gh), 'x-github-delivery': 'another-id' })).to.include(ghBody);
    const gt = giteaPush();
    expect(replayKeys('gitea', gt, giteaHeaders(gt))).to.have.length(2).and.include('gitea id f6266f16-1bf3-46a5-9ea4-602e06ead473');
    // GitLab's token signs nothing, and two real pushes may send the same payload: ids only.
    const gl = gitlabPush();
    expect(replayKeys('gitlab', gl, gitlabHeaders())).to.deep.equal(['gitlab id 13792a34-cac6-4fda-95a8-c58e00a3954e']);
    expect(replayKeys('gitlab', gl, { ...gitlabHeaders(), 'idempotency-key': 'e5b4c9a1-idem' })).to.deep.equal(['gitlab id e5b4c9a1-idem']);
    expect(replayKeys('gitlab', gl, { 'x-gitlab-token': 't' })).to.deep.equal([]);
  });

  it('DeliveryMemory: a key seen before is a replay; keys live 1 h (by default) and the least recently seen go first', () => {
    let now = 0;
    const memory = new DeliveryMemory({ maxKeys: 3, ttlMs: 1000, now: () => now });
    expect(memory.check(['a id 1', 'a body x'])).to.equal(undefined);
    expect(memory.check(['a id 1'])).to.equal('a id 1');
    expect(memory.check(['a id 2', 'a body x'])).to.equal('a body x'); // same body, another id
    expect(memory.check(['b id 3'])).to.equal(undefined);
    expect(memory.size).to.equal(3); // 'a id 1' was the least recently seen: gone
    expect(memory.check(['a id 1'])).to.equal(undefined);
    now = 999;
    expect(memory.check(['b id 3'])).to.equal('b id 3');
    now = 1999;
    // Every key was last seen 1000 ms (the time to live) or more ago: all expired.
    expect(memory.check(['a body x'])).to.equal(undefined);
    expect(memory.check(['b id 3'])).to.equal(undefined);
    expect(new DeliveryMemory().check([])).to.equal(undefined);
  });

  it('DeliveryMemory stays bounded under a flood of new ids', () => {
    const memory = new DeliveryMemory({ now: () => 0 });
    for (let i = 0; i < 10_000; i++) memory.check([`github id ${i}`, `github body ${i}`]);
    expect(memory.size).to.equal(2_000);
    expect(memory.check(['github id 9999'])).to.equal('github id 9999');
    expect(memory.check(['github id 0'])).to.equal(undefined);
  });
});
