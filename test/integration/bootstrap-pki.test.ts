import { expect } from 'chai';
import { createPublicKey, verify as verifySignature } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { AuthenticationV1Api, CoreV1Api, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { KubernetesSecretStore, LocalSecretStore } from '../../src/core/secrets.js';
import { signLeafCertificate, signServingCertificate } from '../../src/bootstrap/certificates.js';
import { ADMIN_GROUP, ADMIN_USER, ensureAdminKubeconfig, ensureClusterPki, type ClusterPki } from '../../src/bootstrap/pki.js';
import { startEnvtest, type Envtest } from '../support/envtest.js';

const CLUSTER = 'dev';

/**
 * A kube-apiserver on capflow's PKI: the cluster CA is its client CA and signs its serving
 * certificate, the `-sa` pair signs and checks service-account tokens, the front-proxy CA checks
 * request-header clients. envtest's own admin (system:masters, signed by the same CA) plays
 * kubeadm init's super-admin.conf: it creates the kubeadm:cluster-admins binding, as kubeadm does.
 */
describe('bootstrap/pki: a real kube-apiserver runs on capflow’s PKI', function () {
  this.timeout(90_000);
  let env: Envtest;
  let pki: ClusterPki;
  let store: LocalSecretStore;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-pki-int-'));
    store = new LocalSecretStore(path.join(dir, 'secrets'));
    pki = await ensureClusterPki(store, CLUSTER);
    const serving = await signServingCertificate(pki.clusterCa, {
      commonName: 'kube-apiserver',
      dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
      ips: ['127.0.0.1', '10.96.0.1'],
    });
    const files: Record<string, string> = {
      'ca.crt': pki.clusterCa.certPem,
      'ca.key': pki.clusterCa.keyPem,
      'apiserver.crt': serving.certPem,
      'apiserver.key': serving.keyPem,
      'sa.pub': pki.serviceAccount.publicKeyPem,
      'sa.key': pki.serviceAccount.privateKeyPem,
      'front-proxy-ca.crt': pki.frontProxyCa.certPem,
    };
    const pkiDir = path.join(dir, 'pki');
    mkdirSync(pkiDir, { mode: 0o700 });
    for (const [name, pem] of Object.entries(files)) writeFileSync(path.join(pkiDir, name), pem, { mode: 0o600 });
    env = await startEnvtest({
      pki: { dir: pkiDir },
      apiserverArgs: [
        `--requestheader-client-ca-file=${path.join(pkiDir, 'front-proxy-ca.crt')}`,
        '--requestheader-allowed-names=front-proxy-client',
        '--requestheader-username-headers=X-Remote-User',
        '--requestheader-group-headers=X-Remote-Group',
        '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      ],
      startTimeoutMs: 60_000,
    });
    await env.makeKubeConfig().makeApiClient(RbacAuthorizationV1Api).createClusterRoleBinding({
      body: {
        metadata: { name: ADMIN_GROUP },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: ADMIN_GROUP }],
      },
    });
  });
  after(async () => {
    await env?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves a certificate that only the cluster CA needs to trust', async () => {
    const authorized = await new Promise<boolean>((resolve, reject) => {
      const url = new URL(env.server);
      const socket = tlsConnect({ host: url.hostname, port: Number(url.port), ca: pki.clusterCa.certPem, servername: 'localhost' }, () => {
        resolve(socket.authorized);
        socket.end();
      });
      socket.on('error', reject);
    });
    expect(authorized).to.equal(true);
  });

  it('lists namespaces with the admin kubeconfig from <cluster>-kubeconfig, as kubernetes-admin in kubeadm:cluster-admins', async () => {
    const outcome = await ensureAdminKubeconfig(store, CLUSTER, env.server);
    expect(outcome).to.deep.include({ name: 'dev-kubeconfig', action: 'created' });
    const kc = new KubeConfig();
    kc.loadFromString((await store.get('dev-kubeconfig'))!.value!);
    const namespaces = await kc.makeApiClient(CoreV1Api).listNamespace();
    expect(namespaces.items.map((n) => n.metadata?.name)).to.include.members(['default', 'kube-system']);
    const review = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    expect(review.status?.userInfo?.username).to.equal(ADMIN_USER);
    expect(review.status?.userInfo?.groups).to.include(ADMIN_GROUP).and.not.include('system:masters');
  });

  it('issues service-account tokens signed by the <cluster>-sa key and accepts them back', async () => {
    const admin = env.makeKubeConfig();
    const core = admin.makeApiClient(CoreV1Api);
    await core.createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: 'probe' } } });
    const request = await core.createNamespacedServiceAccountToken({ name: 'probe', namespace: 'default', body: { spec: { audiences: [] } } });
    const token = request.status!.token;
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const signed = verifySignature('sha256', Buffer.from(`${header}.${payload}`), createPublicKey(pki.serviceAccount.publicKeyPem), Buffer.from(signature, 'base64url'));
    expect(signed, 'token signature checks with the tls.crt of dev-sa').to.equal(true);

    const asProbe = new KubeConfig();
    asProbe.loadFromOptions({
      clusters: [{ name: CLUSTER, server: env.server, caData: Buffer.from(pki.clusterCa.certPem).toString('base64') }],
      users: [{ name: 'probe', token }],
      contexts: [{ name: 'probe', cluster: CLUSTER, user: 'probe' }],
      currentContext: 'probe',
    });
    const review = await asProbe.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    expect(review.status?.userInfo?.username).to.equal('system:serviceaccount:default:probe');
  });

  it('authenticates a front proxy whose client certificate the <cluster>-proxy CA signed', async () => {
    const proxy = await signLeafCertificate(pki.frontProxyCa, { commonName: 'front-proxy-client', usage: 'client' });
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const url = new URL(`${env.server}/apis/authentication.k8s.io/v1/selfsubjectreviews`);
      const req = httpsRequest(
        {
          method: 'POST',
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          ca: pki.clusterCa.certPem,
          cert: proxy.certPem,
          key: proxy.keyPem,
          servername: 'localhost',
          headers: { 'content-type': 'application/json', 'X-Remote-User': 'alice', 'X-Remote-Group': 'team-a' },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }));
    });
    expect(answer.status, answer.body).to.equal(201);
    const user = (JSON.parse(answer.body) as { status: { userInfo: { username: string; groups: string[] } } }).status.userInfo;
    expect(user.username).to.equal('alice');
    expect(user.groups).to.include('team-a');
  });

  it('keeps the PKI in a management cluster as Secrets of type cluster.x-k8s.io/secret, untouched on rerun', async () => {
    const admin = env.makeKubeConfig().makeApiClient(CoreV1Api);
    await admin.createNamespace({ body: { metadata: { name: 'capflow-system' } } });
    const kube = new KubernetesSecretStore('capflow-system', env.kubeconfigPath);
    await ensureClusterPki(kube, 'work');
    await ensureAdminKubeconfig(kube, 'work', env.server);
    for (const name of ['work-ca', 'work-etcd', 'work-proxy', 'work-sa', 'work-kubeconfig']) {
      const secret = await admin.readNamespacedSecret({ name, namespace: 'capflow-system' });
      expect(secret.type, name).to.equal('cluster.x-k8s.io/secret');
      expect(secret.metadata?.labels, name).to.include({ 'cluster.x-k8s.io/cluster-name': 'work', 'app.kubernetes.io/managed-by': 'capflow' });
      expect(Object.keys(secret.data ?? {}).sort(), name).to.deep.equal(name.endsWith('kubeconfig') ? ['value'] : ['tls.crt', 'tls.key']);
    }
    const versions = async (): Promise<string[]> =>
      (await admin.listNamespacedSecret({ namespace: 'capflow-system' })).items.map((s) => `${s.metadata?.name}@${s.metadata?.resourceVersion}`).sort();
    const before = await versions();
    const rerun = await ensureClusterPki(kube, 'work');
    expect(rerun.secrets.map((s) => s.action)).to.deep.equal(['kept', 'kept', 'kept', 'kept']);
    expect((await ensureAdminKubeconfig(kube, 'work', env.server)).action).to.equal('kept');
    expect(await versions()).to.deep.equal(before);
  });
});
