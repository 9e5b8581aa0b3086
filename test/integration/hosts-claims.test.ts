// Host claims are atomic in both secret stores: of clusters claiming one host at once, exactly
// one wins; the others learn who holds it. The Kubernetes store runs against a real
// kube-apiserver (envtest).
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { CoreV1Api } from '@kubernetes/client-node';
import { KubernetesSecretStore, LocalSecretStore, OverlayStore, type SecretStore } from '../../src/core/secrets.js';
import { claimHost, claimSecretName, listClaims, markReleasing, releaseHost, type HostClaim } from '../../src/hosts/claims.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';

const CLUSTERS = ['alpha', 'beta', 'gamma', 'delta'];
const HOSTS = Array.from({ length: 6 }, (_, i) => ({ host: `h${i}`, address: `10.0.0.${i + 1}`, port: 22 }));

/** Every cluster claims every host at once (each through its own store object); returns the winners by host. */
async function race(stores: SecretStore[]): Promise<Map<string, string>> {
  const attempts = HOSTS.flatMap((h) =>
    CLUSTERS.map(async (cluster, i) => ({ host: h.host, cluster, result: await claimHost(stores[i % stores.length] as SecretStore, { ...h, cluster, group: 'md-0' }) })),
  );
  const results = await Promise.all(attempts);
  const winners = new Map<string, string>();
  for (const h of HOSTS) {
    const mine = results.filter((r) => r.host === h.host);
    const won = mine.filter((r) => r.result.ok);
    expect(won.map((r) => r.cluster), `winners of ${h.host}`).to.have.length(1);
    const winner = (won[0] as (typeof mine)[number]).cluster;
    for (const r of mine.filter((x) => !x.result.ok)) {
      expect(r.result.ok ? undefined : r.result.heldBy.cluster, `${r.cluster} told who holds ${h.host}`).to.equal(winner);
    }
    winners.set(h.host, winner);
  }
  return winners;
}

/** What the stores must do, whichever they are. */
async function lifecycle(store: SecretStore, other: SecretStore): Promise<void> {
  const want = { host: 'solo', address: 'Solo.Lab.Example.com', port: 2222, cluster: 'alpha', group: 'control-plane' };
  const first = await claimHost(store, want);
  expect(first.ok).to.equal(true);
  const claim = (first as { ok: true; claim: HostClaim }).claim;
  expect(claim).to.include({ host: 'solo', cluster: 'alpha', group: 'control-plane', state: 'claimed' });
  // A rerun (same cluster and group) gets the stored claim back.
  expect(await claimHost(other, want)).to.deep.equal({ ok: true, claim });
  // Another group of the same cluster does not.
  expect(await claimHost(other, { ...want, group: 'md-0' })).to.deep.equal({ ok: false, heldBy: claim });
  expect((await listClaims(other, 'alpha')).filter((c) => c.host === 'solo')).to.deep.equal([claim]);

  await markReleasing(store, claim);
  const releasing = { ...claim, state: 'releasing' };
  expect(await claimHost(other, { ...want, cluster: 'beta' })).to.deep.equal({ ok: false, heldBy: releasing });
  // A claim on its way out is not the group's any more.
  expect(await claimHost(other, want)).to.deep.equal({ ok: false, heldBy: releasing });
  // Only its cluster releases it.
  expect(await releaseHost(other, { ...claim, cluster: 'beta' })).to.equal(false);
  expect(await releaseHost(store, claim)).to.equal(true);
  expect(await releaseHost(store, claim)).to.equal(false);
  expect((await claimHost(other, { ...want, cluster: 'beta' })).ok).to.equal(true);
}

describe('hosts/claims: atomic claims in the secret stores', function () {
  this.timeout(180_000);

  describe('LocalSecretStore (files)', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-claims-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('two clusters claiming one host at once: exactly one wins, the other is told who holds it', async () => {
      for (let round = 0; round < 20; round++) {
        const host = { host: 'h', address: '10.0.0.1', port: 22, group: 'md-0' };
        const [a, b] = await Promise.all([claimHost(new LocalSecretStore(dir), { ...host, cluster: 'alpha' }), claimHost(new LocalSecretStore(dir), { ...host, cluster: 'beta' })]);
        expect([a.ok, b.ok].filter(Boolean), `round ${round}`).to.have.length(1);
        const winner = a.ok ? a.claim : b.ok ? b.claim : undefined;
        const loser = a.ok ? b : a;
        expect(loser.ok ? undefined : loser.heldBy).to.deep.equal(winner);
        expect(await releaseHost(new LocalSecretStore(dir), winner as HostClaim)).to.equal(true);
      }
      // No temp files left behind.
      expect(readdirSync(dir)).to.deep.equal([]);
    });

    it('many clusters racing for many hosts: one winner each, and the claims list says so', async () => {
      const winners = await race(CLUSTERS.map(() => new LocalSecretStore(dir)));
      const listed = await listClaims(new LocalSecretStore(dir));
      expect(new Map(listed.map((c) => [c.host, c.cluster]))).to.deep.equal(winners);
      expect(readdirSync(dir).sort()).to.deep.equal(HOSTS.map((h) => `${claimSecretName(h.address, h.port)}.json`).sort());
    });

    it('claim, rerun, mark releasing, release', async () => {
      await lifecycle(new LocalSecretStore(dir), new LocalSecretStore(dir));
    });

    it('a dry run (OverlayStore) claims in memory only', async () => {
      const base = new LocalSecretStore(dir);
      await claimHost(base, { host: 'h', address: '10.0.0.1', port: 22, cluster: 'beta', group: 'md-0' });
      const overlay = new OverlayStore(base);
      expect((await claimHost(overlay, { host: 'h', address: '10.0.0.1', port: 22, cluster: 'alpha', group: 'md-0' })).ok).to.equal(false);
      expect((await claimHost(overlay, { host: 'g', address: '10.0.0.2', port: 22, cluster: 'alpha', group: 'md-0' })).ok).to.equal(true);
      expect((await listClaims(overlay)).map((c) => `${c.host}:${c.cluster}`)).to.deep.equal(['h:beta', 'g:alpha']);
      expect((await listClaims(base)).map((c) => c.host)).to.deep.equal(['h']);
    });
  });

  describe('KubernetesSecretStore (a real kube-apiserver)', () => {
    let env: Envtest;
    const ns = 'capflow-system';

    before(async () => {
      env = await startEnvtest();
      await env.makeKubeConfig().makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: ns } } });
    });
    after(async () => env?.stop());

    it('many clusters racing for many hosts through separate clients: one winner each, labelled', async () => {
      const winners = await race(CLUSTERS.map(() => new KubernetesSecretStore(ns, env.kubeconfigPath)));
      const listed = await listClaims(new KubernetesSecretStore(ns, env.kubeconfigPath));
      expect(new Map(listed.map((c) => [c.host, c.cluster]))).to.deep.equal(winners);
      const raw = await env.makeKubeConfig().makeApiClient(CoreV1Api).readNamespacedSecret({ name: claimSecretName('10.0.0.1', 22), namespace: ns });
      expect(raw.type).to.equal('Opaque');
      expect(raw.metadata?.labels).to.deep.equal({ 'app.kubernetes.io/managed-by': 'capflow', 'capflow.io/cluster': winners.get('h0'), 'capflow.io/host-claim': 'true' });
      const alpha = await listClaims(new KubernetesSecretStore(ns, env.kubeconfigPath), 'alpha');
      expect(alpha.map((c) => c.host)).to.deep.equal([...winners].filter(([, c]) => c === 'alpha').map(([h]) => h));
    });

    it('claim, rerun, mark releasing, release', async () => {
      await lifecycle(new KubernetesSecretStore(ns, env.kubeconfigPath), new KubernetesSecretStore(ns, env.kubeconfigPath));
    });
  });
});
