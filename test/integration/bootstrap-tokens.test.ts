import { expect } from 'chai';
import { AuthenticationV1Api, CoreV1Api, KubeConfig, type V1UserInfo } from '@kubernetes/client-node';
import {
  DEFAULT_TOKEN_GROUPS,
  TOKEN_LABEL,
  createBootstrapToken,
  deleteBootstrapToken,
  listBootstrapTokens,
  refreshBootstrapToken,
} from '../../src/bootstrap/tokens.js';
import { statusOf } from '../../src/core/kube-errors.js';
import { ensureJoinToken, joinTokenSecretName, retireJoinToken } from '../../src/bootstrap/join-token.js';
import { createLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { startEnvtest, type Envtest } from '../support/envtest.js';

const HOUR = 3_600_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Who the API server says the bearer of `token` is; the HTTP status when it refuses. */
async function whoAmI(env: Envtest, token: string): Promise<V1UserInfo | number> {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: env.server, caData: Buffer.from(env.caCert).toString('base64') }],
    users: [{ name: 'u', token }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  try {
    const review = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    return review.status?.userInfo ?? {};
  } catch (err) {
    const status = statusOf(err);
    if (status === undefined) throw err;
    return status;
  }
}

/** The authenticator reads Secrets through an informer: allow it a moment to see a change. */
async function eventually<T>(probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (done(v) || Date.now() > deadline) return v;
    await sleep(100);
  }
}

describe('bootstrap/tokens: kubeadm bootstrap tokens against a real kube-apiserver (envtest)', function () {
  this.timeout(60_000);
  let env: Envtest;
  let core: CoreV1Api;

  before(async () => {
    env = await startEnvtest({ apiserverArgs: ['--enable-bootstrap-token-auth=true'] });
    core = env.makeKubeConfig().makeApiClient(CoreV1Api);
  });
  after(async () => env?.stop());

  it('a created token authenticates as system:bootstrap:<id> in the bootstrappers groups', async () => {
    const created = await createBootstrapToken(core, { ttlMs: HOUR, description: 'join workers' });
    expect(created.token).to.match(/^[a-z0-9]{6}\.[a-z0-9]{16}$/);
    expect(created.token.startsWith(`${created.id}.`)).to.equal(true);

    const who = await eventually(() => whoAmI(env, created.token), (v) => typeof v !== 'number');
    expect(who).to.not.be.a('number');
    const user = who as V1UserInfo;
    // the authenticator names the user after the id; the groups are the fixed one plus the extra ones
    expect(user.username).to.equal(`system:bootstrap:${created.id}`);
    expect(user.groups).to.include.members(['system:bootstrappers', ...DEFAULT_TOKEN_GROUPS]);
  });

  it('the Secret has kubeadm’s shape and capflow’s label', async () => {
    const now = new Date('2030-01-02T03:04:05.678Z');
    const created = await createBootstrapToken(core, { ttlMs: HOUR, now: () => now, groups: ['system:bootstrappers:capflow:pool-a'] });
    expect(created.expiresAt.toISOString()).to.equal('2030-01-02T04:04:05.000Z');

    const s = await core.readNamespacedSecret({ name: `bootstrap-token-${created.id}`, namespace: 'kube-system' });
    expect(s.type).to.equal('bootstrap.kubernetes.io/token');
    expect(s.metadata?.labels).to.include({ [TOKEN_LABEL]: 'true' });
    const data = Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
    expect(data).to.deep.equal({
      'token-id': created.id,
      'token-secret': created.token.split('.')[1],
      expiration: '2030-01-02T04:04:05Z',
      'usage-bootstrap-authentication': 'true',
      'usage-bootstrap-signing': 'true',
      'auth-extra-groups': 'system:bootstrappers:capflow:pool-a',
      description: 'Created by capflow for nodes to join',
    });

    const listed = await listBootstrapTokens(core);
    expect(listed.find((t) => t.id === created.id)?.expiresAt?.toISOString()).to.equal('2030-01-02T04:04:05.000Z');
    expect(JSON.stringify(listed)).to.not.include(created.token.split('.')[1]);
  });

  it('refresh moves the expiration; delete removes the token and a second delete is fine', async () => {
    const created = await createBootstrapToken(core, { ttlMs: HOUR });
    const later = await refreshBootstrapToken(core, created.id, 3 * HOUR);
    expect(later.getTime() - created.expiresAt.getTime()).to.be.closeTo(2 * HOUR, 5_000);
    const listed = await listBootstrapTokens(core);
    expect(listed.find((t) => t.id === created.id)?.expiresAt?.getTime()).to.equal(later.getTime());

    await deleteBootstrapToken(core, created.id);
    await deleteBootstrapToken(core, created.id);
    expect((await listBootstrapTokens(core)).map((t) => t.id)).to.not.include(created.id);
    expect(await eventually(() => whoAmI(env, created.token), (v) => v === 401)).to.equal(401);
    let refused: unknown;
    await refreshBootstrapToken(core, created.id, HOUR).catch((err: unknown) => (refused = err));
    expect(refused).to.have.property('code', 'BOOTSTRAP_TOKEN_NOT_FOUND');
  });

  it('an expired token is refused by the API server (401) until a refresh moves its expiration', async () => {
    const expired = await createBootstrapToken(core, { ttlMs: HOUR, now: () => new Date(Date.now() - 2 * HOUR) });
    expect(expired.expiresAt.getTime()).to.be.lessThan(Date.now());
    // once a token made after it authenticates, the informer has seen the expired one too: its 401 is the expiry
    const control = await createBootstrapToken(core, { ttlMs: HOUR });
    expect(await eventually(() => whoAmI(env, control.token), (v) => typeof v !== 'number')).to.not.be.a('number');
    expect(await whoAmI(env, expired.token)).to.equal(401);

    await refreshBootstrapToken(core, expired.id, HOUR);
    const who = await eventually(() => whoAmI(env, expired.token), (v) => typeof v !== 'number');
    expect(who).to.have.property('username', `system:bootstrap:${expired.id}`);
  });

  it('refuses to touch a token capflow did not make', async () => {
    await core.createNamespacedSecret({
      namespace: 'kube-system',
      body: { metadata: { name: 'bootstrap-token-abcdef' }, type: 'bootstrap.kubernetes.io/token', stringData: { 'token-id': 'abcdef' } },
    });
    let refused: unknown;
    await deleteBootstrapToken(core, 'abcdef').catch((err: unknown) => (refused = err));
    expect(refused).to.have.property('code', 'BOOTSTRAP_TOKEN_NOT_OWNED');
    expect((await listBootstrapTokens(core)).map((t) => t.id)).to.not.include('abcdef');
  });

  describe("the cluster's join token (made when needed, reused, refreshed past half its life, retired)", () => {
    const log = createLogger({ stream: new PassThrough(), format: 'json', level: 'error' });
    let store: LocalSecretStore;
    let dir: string;
    before(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-join-token-'));
      store = new LocalSecretStore(dir);
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('is made with the TTL asked, kept in capflow\'s store, and reused by the next run', async () => {
      const t0 = new Date();
      const made = await ensureJoinToken(store, core, 'jt', { ttlMs: 15 * 60_000, log });
      expect(made.action).to.equal('created');
      expect(made.expiresAt.getTime() - t0.getTime()).to.be.within(15 * 60_000 - 5_000, 15 * 60_000 + 5_000);
      expect(await store.get(joinTokenSecretName('jt'))).to.deep.equal({ id: made.id, token: made.token });
      const again = await ensureJoinToken(store, core, 'jt', { ttlMs: 15 * 60_000, log });
      expect(again).to.deep.include({ action: 'kept', id: made.id, token: made.token });
    });

    it('past half its life it is refreshed, keeping its id and secret; once expired a new one replaces it', async () => {
      const kept = (await store.get(joinTokenSecretName('jt')))!;
      const later = () => new Date(Date.now() + 10 * 60_000);
      const refreshed = await ensureJoinToken(store, core, 'jt', { ttlMs: 15 * 60_000, log, now: later });
      expect(refreshed).to.deep.include({ action: 'refreshed', id: kept.id, token: kept.token });
      expect(refreshed.expiresAt.getTime()).to.be.greaterThan(Date.now() + 20 * 60_000);
      const muchLater = () => new Date(Date.now() + 2 * HOUR);
      const replaced = await ensureJoinToken(store, core, 'jt', { ttlMs: 15 * 60_000, log, now: muchLater });
      expect(replaced.action).to.equal('created');
      expect(replaced.id).to.not.equal(kept.id);
      expect((await listBootstrapTokens(core)).map((t) => t.id)).to.not.include(kept.id);
    });

    it('retiring deletes every capflow token (one a crash left unrecorded too) and the record; other tokens stay', async () => {
      const stray = await createBootstrapToken(core, { ttlMs: HOUR });
      const before = (await listBootstrapTokens(core)).map((t) => t.id);
      expect(before).to.include(stray.id);
      expect(await retireJoinToken(store, core, 'jt')).to.equal(true);
      expect(await listBootstrapTokens(core)).to.deep.equal([]);
      expect(await store.get(joinTokenSecretName('jt'))).to.equal(undefined);
      expect((await core.readNamespacedSecret({ name: 'bootstrap-token-abcdef', namespace: 'kube-system' })).metadata?.name).to.equal('bootstrap-token-abcdef');
      expect(await retireJoinToken(store, core, 'jt')).to.equal(false);
    });
  });
});
