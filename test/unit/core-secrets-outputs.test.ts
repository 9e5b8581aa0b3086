import { expect } from 'chai';
import { mkdtempSync, readFileSync, statSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalSecretStore, secretStoreFromEnv } from '../../src/core/secrets.js';
import { OutputsWriter } from '../../src/core/outputs.js';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'capflow-test-'));

describe('core/secrets: the local store keeps secrets in 0600 files', () => {
  it('writes, reads, lists and deletes a secret with owner-only permissions', async () => {
    const dir = path.join(tmp(), 'secrets');
    const store = new LocalSecretStore(dir);
    await store.put('dev-ca', { 'tls.crt': 'cert', 'tls.key': 'key' }, { 'capflow.io/cluster': 'dev' });
    await store.put('dev-kubeconfig', { value: 'kc' });
    expect(await store.get('dev-ca')).to.deep.equal({ 'tls.crt': 'cert', 'tls.key': 'key' });
    expect(statSync(path.join(dir, 'dev-ca.json')).mode & 0o777).to.equal(0o600);
    expect(statSync(dir).mode & 0o777).to.equal(0o700);
    expect(await store.list('dev-')).to.deep.equal(['dev-ca', 'dev-kubeconfig']);
    await store.put('dev-ca', { 'tls.crt': 'cert2' });
    expect(await store.get('dev-ca')).to.deep.equal({ 'tls.crt': 'cert2' });
    await store.delete('dev-ca');
    await store.delete('dev-ca');
    expect(await store.get('dev-ca')).to.equal(undefined);
    expect(await store.list()).to.deep.equal(['dev-kubeconfig']);
  });

  it('records the Secret type it is given, Opaque otherwise', async () => {
    const dir = tmp();
    const store = new LocalSecretStore(dir);
    const typeOf = (name: string): string => (JSON.parse(readFileSync(path.join(dir, `${name}.json`), 'utf8')) as { type: string }).type;
    await store.put('dev-ca', { 'tls.crt': 'cert' }, {}, { type: 'cluster.x-k8s.io/secret' });
    await store.put('dev-status', { a: 'b' });
    expect(typeOf('dev-ca')).to.equal('cluster.x-k8s.io/secret');
    expect(typeOf('dev-status')).to.equal('Opaque');
    expect(await store.get('dev-ca')).to.deep.equal({ 'tls.crt': 'cert' });
  });

  it('refuses names that are not DNS-1123 (no path tricks)', async () => {
    const store = new LocalSecretStore(tmp());
    for (const name of ['../etc/passwd', 'UPPER', '']) {
      const err = await store.put(name, { a: 'b' }).then(() => undefined, (e: unknown) => e as { code: string });
      expect(err?.code, name).to.equal('SECRET_NAME_INVALID');
    }
  });

  it('is chosen by CAPFLOW_SECRET_STORE, else Kubernetes inside a pod, else local', () => {
    expect(secretStoreFromEnv({ CAPFLOW_SECRETS_DIR: '/x' }).kind).to.equal('local');
    expect(secretStoreFromEnv({ KUBERNETES_SERVICE_HOST: '10.0.0.1' }).kind).to.equal('kubernetes');
    expect(secretStoreFromEnv({ KUBERNETES_SERVICE_HOST: '10.0.0.1', CAPFLOW_SECRET_STORE: 'local' }).kind).to.equal('local');
    expect(() => secretStoreFromEnv({ CAPFLOW_SECRET_STORE: 'vault' })).to.throw(/must be "kubernetes" or "local"/);
  });
});

describe('core/outputs: one file per Argo output parameter', () => {
  it('writes each parameter to its own file and remembers them for the summary', async () => {
    const dir = path.join(tmp(), 'outputs');
    const out = new OutputsWriter(dir);
    await out.writeAll({ 'vpc-id': 'vpc-0abc', 'subnet-ids': '{"us-east-1a":"subnet-1"}' });
    expect(readFileSync(path.join(dir, 'vpc-id'), 'utf8')).to.equal('vpc-0abc');
    expect(out.values()).to.deep.equal({ 'vpc-id': 'vpc-0abc', 'subnet-ids': '{"us-east-1a":"subnet-1"}' });
    expect(existsSync(path.join(dir, 'vpc-id.tmp'))).to.equal(false);
  });

  it('refuses a value that looks like a secret, and a name Argo would not accept', async () => {
    const out = new OutputsWriter(undefined);
    const secret = await out.write('join-token', 'abcdef.0123456789abcdef').then(() => undefined, (e: unknown) => e as { code: string });
    expect(secret?.code).to.equal('OUTPUT_LOOKS_SECRET');
    const badName = await out.write('Bad Name', 'x').then(() => undefined, (e: unknown) => e as { code: string });
    expect(badName?.code).to.equal('OUTPUT_NAME_INVALID');
    expect(out.values()).to.deep.equal({});
  });
});
