import { expect } from 'chai';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { isCapflowError } from '../../src/core/errors.js';
import { LocalSecretStore, type PutOptions, type SecretData, type SecretStore } from '../../src/core/secrets.js';
import { makeSelfSignedCa, signLeafCertificate } from '../../src/bootstrap/certificates.js';
import {
  caCertHash,
  certificateExpiry,
  ensureAdminKubeconfig,
  ensureClusterPki,
  type SecretOutcome,
} from '../../src/bootstrap/pki.js';
import { requireTool, run } from '../support/tools.js';

const CLUSTER = 'dev';
const NAMES = ['dev-ca', 'dev-etcd', 'dev-proxy', 'dev-sa'];
const SERVER = 'https://dev-apiserver.example:6443';
const DAY = 24 * 60 * 60 * 1000;
const T0 = new Date('2026-01-01T00:00:00.000Z');

const tmp = (): string => mkdtempSync(path.join(os.tmpdir(), 'capflow-pki-'));

/** A store that counts writes and can crash (throw) right after its n-th write landed. */
class RecordingStore implements SecretStore {
  readonly kind = 'local' as const;
  puts: string[] = [];
  constructor(
    readonly inner: LocalSecretStore,
    private readonly crashAfterPut?: number,
  ) {}
  get(name: string): Promise<SecretData | undefined> {
    return this.inner.get(name);
  }
  async put(name: string, data: SecretData, labels?: Record<string, string>, options?: PutOptions): Promise<void> {
    await this.inner.put(name, data, labels, options);
    this.puts.push(name);
    if (this.puts.length === this.crashAfterPut) throw new Error(`crash after writing ${name}`);
  }
  async create(name: string, data: SecretData, labels?: Record<string, string>, options?: PutOptions): Promise<boolean> {
    const created = await this.inner.create(name, data, labels, options);
    if (created) this.puts.push(name);
    if (created && this.puts.length === this.crashAfterPut) throw new Error(`crash after writing ${name}`);
    return created;
  }
  delete(name: string): Promise<void> {
    return this.inner.delete(name);
  }
  list(prefix?: string): Promise<string[]> {
    return this.inner.list(prefix);
  }
}

function secretFile(store: LocalSecretStore, name: string): { type: string; labels: Record<string, string>; data: SecretData } {
  return JSON.parse(readFileSync(path.join(store.dir, `${name}.json`), 'utf8')) as { type: string; labels: Record<string, string>; data: SecretData };
}

async function snapshot(store: SecretStore): Promise<Record<string, SecretData | undefined>> {
  const out: Record<string, SecretData | undefined> = {};
  for (const name of NAMES) out[name] = await store.get(name);
  return out;
}

async function rejection(promise: Promise<unknown>): Promise<{ code?: string; kind?: string; message: string }> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  if (!isCapflowError(err)) throw new Error(`expected a coded error, got ${String(err)}`);
  return err;
}

const actions = (outcomes: SecretOutcome[]): string[] => outcomes.map((o) => `${o.name}:${o.action}`);

/** openssl as a peer: runs a pipeline on a PEM file. */
async function opensslPipeline(pem: string, pipeline: string): Promise<string> {
  const file = path.join(tmp(), 'in.pem');
  writeFileSync(file, pem);
  const openssl = requireTool('openssl');
  const r = await run('bash', ['-o', 'pipefail', '-c', pipeline.replaceAll('openssl', `"${openssl}"`).replaceAll('IN', `"${file}"`)]);
  if (r.code !== 0) throw new Error(`${pipeline}: ${r.stderr}`);
  return r.stdout.trim();
}

describe('bootstrap/pki: the cluster PKI as Cluster API secrets', function () {
  this.timeout(60_000);

  it('a first run makes the three CAs and the service-account pair with Cluster API names, keys, type and label', async () => {
    const store = new LocalSecretStore(tmp());
    const pki = await ensureClusterPki(store, CLUSTER, { now: () => T0 });
    expect(actions(pki.secrets)).to.deep.equal(NAMES.map((n) => `${n}:created`));

    const commonNames = { 'dev-ca': 'kubernetes', 'dev-etcd': 'etcd-ca', 'dev-proxy': 'front-proxy-ca' };
    for (const name of NAMES) {
      const file = secretFile(store, name);
      expect(file.type, name).to.equal('cluster.x-k8s.io/secret');
      expect(file.labels, name).to.deep.equal({ 'cluster.x-k8s.io/cluster-name': CLUSTER });
      expect(Object.keys(file.data).sort(), name).to.deep.equal(['tls.crt', 'tls.key']);
      expect(file.data['tls.key'], name).to.match(new RegExp(`^-----BEGIN RSA ${'PRIVATE'} KEY-----`)); // assembled, so no key-shaped text is committed
      expect(createPrivateKey(file.data['tls.key']!).asymmetricKeyDetails?.modulusLength, name).to.equal(2048);
    }
    for (const [name, cn] of Object.entries(commonNames)) {
      const pem = secretFile(store, name).data['tls.crt']!;
      const cert = new X509Certificate(pem);
      expect(cert.subject, name).to.equal(`CN=${cn}`);
      expect(cert.ca, name).to.equal(true);
      expect(certificateExpiry(pem).getTime() - T0.getTime(), name).to.equal(3650 * DAY);
      const text = await opensslPipeline(pem, 'openssl x509 -in IN -noout -ext basicConstraints,keyUsage,subjectKeyIdentifier');
      expect(text, name).to.match(/Basic Constraints: critical\s+CA:TRUE/);
      expect(text, name).to.match(/Key Usage: critical\s+Digital Signature, Key Encipherment, Certificate Sign, CRL Sign/);
      expect(text, name).to.match(/Subject Key Identifier:\s+[0-9A-F:]{59}/);
    }
    expect(secretFile(store, 'dev-sa').data['tls.crt']).to.match(/^-----BEGIN PUBLIC KEY-----/);
    expect(pki.clusterCa.certPem).to.equal(secretFile(store, 'dev-ca').data['tls.crt']);
  });

  it('a rerun writes nothing and returns the same material', async () => {
    const store = new RecordingStore(new LocalSecretStore(tmp()));
    const first = await ensureClusterPki(store, CLUSTER);
    const before = await snapshot(store);
    store.puts = [];
    const second = await ensureClusterPki(store, CLUSTER);
    expect(store.puts).to.deep.equal([]);
    expect(actions(second.secrets)).to.deep.equal(NAMES.map((n) => `${n}:kept`));
    expect(await snapshot(store)).to.deep.equal(before);
    expect(second.serviceAccount).to.deep.equal(first.serviceAccount);
  });

  it('a CA the user created first (openssl, kubernetes.io/tls) is kept and signs the admin kubeconfig', async () => {
    const dir = tmp();
    const openssl = requireTool('openssl');
    const made = await run(openssl, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=Kubernetes API',
      '-days', '3650', '-keyout', path.join(dir, 'tls.key'), '-out', path.join(dir, 'tls.crt')]);
    expect(made.code, made.stderr).to.equal(0);
    const byo = { 'tls.crt': readFileSync(path.join(dir, 'tls.crt'), 'utf8'), 'tls.key': readFileSync(path.join(dir, 'tls.key'), 'utf8') };
    const store = new RecordingStore(new LocalSecretStore(tmp()));
    await store.inner.put('dev-ca', byo, { 'cluster.x-k8s.io/cluster-name': CLUSTER }, { type: 'kubernetes.io/tls' });

    const pki = await ensureClusterPki(store, CLUSTER);
    expect(actions(pki.secrets)).to.deep.equal(['dev-ca:kept', 'dev-etcd:created', 'dev-proxy:created', 'dev-sa:created']);
    expect(store.puts).to.deep.equal(['dev-etcd', 'dev-proxy', 'dev-sa']);
    expect(secretFile(store.inner, 'dev-ca')).to.deep.include({ type: 'kubernetes.io/tls', data: byo });

    await ensureAdminKubeconfig(store, CLUSTER, SERVER);
    const kubeconfig = parseYaml((await store.get('dev-kubeconfig'))!.value!) as { users: { user: Record<string, string> }[] };
    const client = Buffer.from(kubeconfig.users[0]!.user['client-certificate-data']!, 'base64').toString();
    const verified = await opensslPipeline(client, `openssl verify -CAfile "${path.join(dir, 'tls.crt')}" IN`);
    expect(verified).to.match(/: OK$/);
  });

  describe('a Secret that is there but unusable is refused with a ConflictError naming it, and nothing is written', () => {
    const cases: { name: string; secret: string; data: () => Promise<SecretData>; problem: RegExp }[] = [
      {
        name: 'a CA whose certificate is not a CA',
        secret: 'dev-ca',
        data: async () => {
          const leaf = await signLeafCertificate(await makeSelfSignedCa('x'), { commonName: 'leaf', usage: 'server' });
          return { 'tls.crt': leaf.certPem, 'tls.key': leaf.keyPem };
        },
        problem: /tls\.crt is not a CA certificate/,
      },
      {
        name: 'an etcd CA whose key belongs to another certificate',
        secret: 'dev-etcd',
        data: async () => {
          const [a, b] = await Promise.all([makeSelfSignedCa('a'), makeSelfSignedCa('b')]);
          return { 'tls.crt': a.certPem, 'tls.key': b.keyPem };
        },
        problem: /tls\.key does not match the certificate in tls\.crt/,
      },
      {
        name: 'a front-proxy CA that expired',
        secret: 'dev-proxy',
        data: async () => {
          const old = await makeSelfSignedCa('front-proxy-ca', new Date(Date.now() - 20 * DAY), 10);
          return { 'tls.crt': old.certPem, 'tls.key': old.keyPem };
        },
        problem: /tls\.crt expired on \d{4}-/,
      },
      {
        name: 'a CA without tls.key and with garbage in tls.crt',
        secret: 'dev-ca',
        data: async () => ({ 'tls.crt': 'not a certificate' }),
        problem: /tls\.crt is not a PEM certificate; it has no tls\.key/,
      },
      {
        name: 'a service-account pair whose halves do not match',
        secret: 'dev-sa',
        data: async () => {
          const [a, b] = await Promise.all([makeSelfSignedCa('a'), makeSelfSignedCa('b')]);
          const publicKey = new X509Certificate(a.certPem).publicKey.export({ type: 'spki', format: 'pem' }).toString();
          return { 'tls.crt': publicKey, 'tls.key': b.keyPem };
        },
        problem: /tls\.crt is not the public key of tls\.key/,
      },
    ];
    for (const c of cases) {
      it(`${c.name}, should stop the run`, async () => {
        const store = new RecordingStore(new LocalSecretStore(tmp()));
        await store.inner.put(c.secret, await c.data());
        const err = await rejection(ensureClusterPki(store, CLUSTER));
        expect(err.kind).to.equal('conflict');
        expect(err.code).to.equal('PKI_SECRET_INVALID');
        expect(err.message).to.include(`secret ${c.secret} (`).and.match(c.problem);
        expect(store.puts).to.deep.equal([]);
      });
    }
  });

  for (let crashAfter = 1; crashAfter <= 4; crashAfter++) {
    it(`a crash right after write ${crashAfter} of 4 converges on rerun without replacing what was written`, async () => {
      const local = new LocalSecretStore(tmp());
      const crashing = new RecordingStore(local, crashAfter);
      const crash = await ensureClusterPki(crashing, CLUSTER).then(() => undefined, (e: unknown) => e as Error);
      expect(crash?.message).to.equal(`crash after writing ${NAMES[crashAfter - 1]}`);
      const written = await snapshot(local);
      expect(Object.values(written).filter(Boolean)).to.have.length(crashAfter);

      const rerun = new RecordingStore(local);
      const pki = await ensureClusterPki(rerun, CLUSTER);
      expect(rerun.puts).to.deep.equal(NAMES.slice(crashAfter));
      expect(actions(pki.secrets)).to.deep.equal(NAMES.map((n, i) => `${n}:${i < crashAfter ? 'kept' : 'created'}`));
      const after = await snapshot(local);
      for (const name of NAMES.slice(0, crashAfter)) expect(after[name], name).to.deep.equal(written[name]);
    });
  }
});

describe('bootstrap/pki: the admin kubeconfig', function () {
  this.timeout(60_000);

  it('is made as Cluster API stores it, for kubernetes-admin in kubeadm:cluster-admins, signed by the cluster CA', async () => {
    const store = new RecordingStore(new LocalSecretStore(tmp()));
    const pki = await ensureClusterPki(store, CLUSTER, { now: () => T0 });
    const outcome = await ensureAdminKubeconfig(store, CLUSTER, SERVER, { now: () => T0 });
    expect(outcome).to.deep.include({ name: 'dev-kubeconfig', action: 'created' });
    expect(outcome.expires.getTime() - T0.getTime()).to.equal(365 * DAY);

    const file = secretFile(store.inner, 'dev-kubeconfig');
    expect(file.type).to.equal('cluster.x-k8s.io/secret');
    expect(file.labels).to.deep.equal({ 'cluster.x-k8s.io/cluster-name': CLUSTER });
    expect(Object.keys(file.data)).to.deep.equal(['value']);
    const kc = parseYaml(file.data.value!) as {
      clusters: { name: string; cluster: Record<string, string> }[];
      users: { name: string; user: Record<string, string> }[];
      contexts: { name: string; context: Record<string, string> }[];
      'current-context': string;
    };
    expect(kc['current-context']).to.equal('dev-admin@dev');
    expect(kc.contexts).to.deep.equal([{ name: 'dev-admin@dev', context: { cluster: 'dev', user: 'dev-admin' } }]);
    expect(kc.clusters[0]).to.deep.equal({ name: 'dev', cluster: { server: SERVER, 'certificate-authority-data': Buffer.from(pki.clusterCa.certPem).toString('base64') } });
    const clientPem = Buffer.from(kc.users[0]!.user['client-certificate-data']!, 'base64').toString();
    const client = new X509Certificate(clientPem);
    expect(client.subject).to.equal('O=kubeadm:cluster-admins\nCN=kubernetes-admin');
    expect(client.verify(new X509Certificate(pki.clusterCa.certPem).publicKey)).to.equal(true);
    expect(client.checkPrivateKey(createPrivateKey(Buffer.from(kc.users[0]!.user['client-key-data']!, 'base64').toString()))).to.equal(true);
    expect(await opensslPipeline(clientPem, 'openssl x509 -in IN -noout -ext extendedKeyUsage')).to.match(/TLS Web Client Authentication/);
  });

  it('is left alone before half of its life, renewed after it, and rewritten when the server changes', async () => {
    const store = new RecordingStore(new LocalSecretStore(tmp()));
    await ensureClusterPki(store, CLUSTER, { now: () => T0 });
    await ensureAdminKubeconfig(store, CLUSTER, SERVER, { now: () => T0 });
    const original = (await store.get('dev-kubeconfig'))!.value;
    store.puts = [];

    const early = await ensureAdminKubeconfig(store, CLUSTER, SERVER, { now: () => new Date(T0.getTime() + 180 * DAY) });
    expect(early.action).to.equal('kept');
    expect(store.puts).to.deep.equal([]);

    const late = await ensureAdminKubeconfig(store, CLUSTER, SERVER, { now: () => new Date(T0.getTime() + 183 * DAY) });
    expect(late.action).to.equal('renewed');
    expect(late.reason).to.match(/past half of its life/);
    expect(late.expires.getTime()).to.equal(T0.getTime() + (183 + 365) * DAY);
    expect(store.puts).to.deep.equal(['dev-kubeconfig']);
    expect((await store.get('dev-kubeconfig'))!.value).to.not.equal(original);

    const moved = await ensureAdminKubeconfig(store, CLUSTER, 'https://10.0.0.10:6443', { now: () => new Date(T0.getTime() + 184 * DAY) });
    expect(moved).to.deep.include({ action: 'renewed', reason: `the server changed from ${SERVER} to https://10.0.0.10:6443` });
    expect(store.puts).to.deep.equal(['dev-kubeconfig', 'dev-kubeconfig']);
  });

  it('refuses a server that is not https://host[:port], and says when the CA is missing', async () => {
    const store = new LocalSecretStore(tmp());
    expect((await rejection(ensureAdminKubeconfig(store, CLUSTER, 'http://x:6443'))).code).to.equal('KUBECONFIG_SERVER_INVALID');
    expect((await rejection(ensureAdminKubeconfig(store, CLUSTER, SERVER))).code).to.equal('CLUSTER_CA_MISSING');
  });
});

describe('bootstrap/pki: helpers', function () {
  this.timeout(30_000);

  it('caCertHash is the sha256 of the SubjectPublicKeyInfo, as openssl computes it', async () => {
    const ca = await makeSelfSignedCa('kubernetes');
    const expected = await opensslPipeline(ca.certPem, 'openssl x509 -in IN -pubkey -noout | openssl pkey -pubin -outform der | sha256sum');
    expect(caCertHash(ca.certPem)).to.equal(`sha256:${expected.split(/\s/)[0]}`).and.match(/^sha256:[0-9a-f]{64}$/);
  });

  it('certificateExpiry is the notAfter openssl reads', async () => {
    const ca = await makeSelfSignedCa('kubernetes', T0, 30);
    const enddate = await opensslPipeline(ca.certPem, 'openssl x509 -in IN -noout -enddate');
    expect(certificateExpiry(ca.certPem).toISOString()).to.equal(new Date(enddate.replace('notAfter=', '')).toISOString());
  });
});
