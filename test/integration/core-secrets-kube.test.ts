import { expect } from 'chai';
import { CoreV1Api } from '@kubernetes/client-node';
import { KubernetesSecretStore } from '../../src/core/secrets.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';

describe('core/secrets: the Kubernetes store against a real kube-apiserver (envtest)', function () {
  this.timeout(120_000);
  let env: Envtest;

  before(async () => {
    env = await startEnvtest();
    await env.makeKubeConfig().makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'capflow-system' } } });
  });
  after(async () => env?.stop());

  it('creates, replaces, reads, lists and deletes Opaque Secrets labelled as capflow’s', async () => {
    const store = new KubernetesSecretStore('capflow-system', env.kubeconfigPath);
    expect(await store.get('dev-ca')).to.equal(undefined);
    await store.put('dev-ca', { 'tls.crt': 'cert', 'tls.key': 'key' }, { 'capflow.io/cluster': 'dev' });
    await store.put('dev-ca', { 'tls.crt': 'cert2', 'tls.key': 'key2' }, { 'capflow.io/cluster': 'dev' });
    expect(await store.get('dev-ca')).to.deep.equal({ 'tls.crt': 'cert2', 'tls.key': 'key2' });

    const raw = await env.makeKubeConfig().makeApiClient(CoreV1Api).readNamespacedSecret({ name: 'dev-ca', namespace: 'capflow-system' });
    expect(raw.type).to.equal('Opaque');
    expect(raw.metadata?.labels).to.include({ 'app.kubernetes.io/managed-by': 'capflow', 'capflow.io/cluster': 'dev' });

    await store.put('other', { a: 'b' });
    expect(await store.list('dev-')).to.deep.equal(['dev-ca']);
    await store.delete('dev-ca');
    await store.delete('dev-ca');
    expect(await store.get('dev-ca')).to.equal(undefined);
  });
});
