// The kubelet stand-in against the test bed's real kube-apiserver (Node authorizer, NodeRestriction,
// bootstrap tokens on, as in a kubeadm cluster) and a real kube-controller-manager that approves and
// signs node CSRs with the envtest CA and allocates pod CIDRs. The RBAC and the bootstrap token are the
// objects kubeadm creates. The stand-in runs outside any namespace, its paths under a temp root.
// Needs `bash testbed/install.sh`.

import { expect } from 'chai';
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { closeSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  CertificatesV1Api,
  CoordinationV1Api,
  CoreV1Api,
  type KubeConfig,
  RbacAuthorizationV1Api,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { main, runKubelet, type RunningKubelet } from '../../src/emulator/kubelet/kubelet.js';
import { type Envtest, freePorts, startEnvtest } from '../support/envtest.js';
import { requireTool, run } from '../support/tools.js';

const WORKER = 'worker-a';
const CONTROL_PLANE = 'cp-1';
const FAST = { manifestPollMs: 200, statusIntervalMs: 1000, leaseRenewIntervalMs: 1000, retryIntervalMs: 250, flagsSettleMs: 0 };

async function waitUntil<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr instanceof Error ? `: ${lastErr.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function httpGetText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

const readyCondition = (n: V1Node | undefined) => n?.status?.conditions?.find((c) => c.type === 'Ready');

/** kube-controller-manager with every default controller, signing with the envtest CA. */
function startControllerManager(env: Envtest, logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(
    requireTool('kube-controller-manager'),
    [
      `--kubeconfig=${env.kubeconfigPath}`,
      '--controllers=*,csrapproving,csrsigning',
      `--cluster-signing-cert-file=${env.caCertPath}`,
      `--cluster-signing-key-file=${env.caKeyPath}`,
      '--allocate-node-cidrs=true',
      '--cluster-cidr=10.244.0.0/16',
      '--service-cluster-ip-range=10.96.0.0/16',
      '--use-service-account-credentials=false',
      '--leader-elect=false',
      '--secure-port=0', // nothing served: no port to collide with other suites
      '--v=2',
    ],
    { detached: true, stdio: ['ignore', fd, fd] },
  );
  closeSync(fd);
  return child;
}

/** The bootstrap token Secret and the three ClusterRoleBindings kubeadm's bootstrap-token phase makes. */
async function createKubeadmBootstrapObjects(kc: KubeConfig): Promise<string> {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const pick = (n: number): string => [...randomBytes(n)].map((b) => alphabet[b % alphabet.length]).join('');
  const id = pick(6);
  const secret = pick(16);
  await kc.makeApiClient(CoreV1Api).createNamespacedSecret({
    namespace: 'kube-system',
    body: {
      metadata: { name: `bootstrap-token-${id}`, namespace: 'kube-system' },
      type: 'bootstrap.kubernetes.io/token',
      stringData: {
        'token-id': id,
        'token-secret': secret,
        'usage-bootstrap-authentication': 'true',
        'usage-bootstrap-signing': 'true',
        'auth-extra-groups': 'system:bootstrappers:kubeadm:default-node-token',
      },
    },
  });
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  const bind = (name: string, role: string, group: string) =>
    rbac.createClusterRoleBinding({
      body: {
        metadata: { name },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: group }],
      },
    });
  await bind('kubeadm:kubelet-bootstrap', 'system:node-bootstrapper', 'system:bootstrappers:kubeadm:default-node-token');
  await bind('kubeadm:node-autoapprove-bootstrap', 'system:certificates.k8s.io:certificatesigningrequests:nodeclient', 'system:bootstrappers:kubeadm:default-node-token');
  await bind('kubeadm:node-autoapprove-certificate-rotation', 'system:certificates.k8s.io:certificatesigningrequests:selfnodeclient', 'system:nodes');
  return `${id}.${secret}`;
}

function kubeconfigFile(server: string, caPem: string, user: Record<string, string>): string {
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'kubernetes', cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } }],
    contexts: [{ name: 'node@kubernetes', context: { cluster: 'kubernetes', user: 'node' } }],
    'current-context': 'node@kubernetes',
    users: [{ name: 'node', user }],
  });
}

/** What kubeadm's kubelet-start phase writes: config.yaml, then kubeadm-flags.env. */
function writeKubeletStart(root: string, healthzPort: number, kubeadmArgs: string): void {
  mkdirSync(join(root, 'var/lib/kubelet'), { recursive: true });
  writeFileSync(
    join(root, 'var/lib/kubelet/config.yaml'),
    toYaml({
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      healthzBindAddress: '127.0.0.1',
      healthzPort,
      staticPodPath: '/etc/kubernetes/manifests',
      rotateCertificates: true,
    }),
  );
  writeFileSync(join(root, 'var/lib/kubelet/kubeadm-flags.env'), `KUBELET_KUBEADM_ARGS="${kubeadmArgs}"\n`);
}

/** A static pod: a node HTTP server with a readiness probe, as kubeadm's components have. */
function staticPodManifest(port: number, greeting: string): string {
  const server = `require('http').createServer((q, s) => s.end(process.env.GREETING)).listen(${port}, '127.0.0.1')`;
  return toYaml({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'probe-server', namespace: 'kube-system', labels: { component: 'probe-server', tier: 'control-plane' } },
    spec: {
      hostNetwork: true,
      priorityClassName: 'system-node-critical',
      containers: [
        {
          name: 'probe-server',
          image: 'registry.k8s.io/probe-server:v0',
          command: ['node'],
          args: ['-e', server],
          env: [{ name: 'GREETING', value: greeting }],
          ports: [{ name: 'probe-port', containerPort: port }],
          readinessProbe: { httpGet: { host: '127.0.0.1', path: '/readyz', port: 'probe-port', scheme: 'HTTP' }, periodSeconds: 1 },
        },
      ],
    },
    status: {},
  });
}

async function kubectl(kubeconfig: string, args: string[]): Promise<string> {
  const r = await run(requireTool('kubectl'), [`--kubeconfig=${kubeconfig}`, ...args]);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('kubelet stand-in against a real kube-apiserver and kube-controller-manager', function () {
  this.timeout(60_000);
  let env: Envtest;
  let kc: KubeConfig;
  let core: CoreV1Api;
  let kcm: ChildProcess | undefined;
  let root: string;
  let worker: RunningKubelet | undefined;
  let token: string;
  let healthzPort: number;
  let staticPort: number;
  const lines: string[] = [];

  before(async function () {
    this.timeout(120_000);
    env = await startEnvtest({
      // envtest's --authorization-mode=RBAC and this one add up to kubeadm's Node,RBAC
      apiserverArgs: ['--authorization-mode=Node', '--enable-admission-plugins=NodeRestriction', '--enable-bootstrap-token-auth=true'],
    });
    kc = env.makeKubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    root = mkdtempSync(join(tmpdir(), 'capflow-kubelet-'));
    token = await createKubeadmBootstrapObjects(kc);
    kcm = startControllerManager(env, join(root, 'kube-controller-manager.log'));
    [healthzPort, staticPort] = (await freePorts(2)) as [number, number];

    // what kubeadm join leaves for the kubelet: bootstrap-kubelet.conf, config.yaml, the flags
    const workerRoot = join(root, WORKER);
    mkdirSync(join(workerRoot, 'etc/kubernetes/manifests'), { recursive: true });
    writeFileSync(join(workerRoot, 'etc/kubernetes/bootstrap-kubelet.conf'), kubeconfigFile(env.server, env.caCert, { token }));
    writeKubeletStart(
      workerRoot,
      healthzPort,
      '--node-labels=capflow.io/pool=workers --register-with-taints=capflow.io/dedicated=infra:NoSchedule,capflow.io/warming:PreferNoSchedule --provider-id=aws:///us-east-1a/i-0123456789abcdef0 --cloud-provider=external',
    );
    mkdirSync(join(workerRoot, 'etc/default'), { recursive: true });
    writeFileSync(join(workerRoot, 'etc/default/kubelet'), 'KUBELET_EXTRA_ARGS=--node-labels=capflow.io/extra=yes\n');
    writeFileSync(join(workerRoot, 'etc/kubernetes/manifests/probe-server.yaml'), staticPodManifest(staticPort, 'one'));

    worker = await runKubelet({
      root: workerRoot,
      nodeName: WORKER,
      nodeIp: '127.0.0.1',
      binDirs: [dirname(process.execPath)],
      timing: FAST,
      log: (line) => lines.push(`[${WORKER}] ${line}`),
    });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') {
      console.log(lines.slice(-60).join('\n'));
      console.log(readFileSync(join(root, 'kube-controller-manager.log'), 'utf8').split('\n').slice(-20).join('\n'));
    }
  });

  after(async () => {
    await worker?.stop();
    if (kcm?.pid) {
      try {
        process.kill(-kcm.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await env?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('kubelet stand-in: `kubelet --version` prints the line kubeadm preflight parses', async () => {
    const out: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = (chunk: string | Uint8Array): boolean => out.push(String(chunk)) > 0;
    try {
      expect(await main(['--version'])).to.equal(0);
    } finally {
      process.stdout.write = write;
    }
    expect(out.join('')).to.equal('Kubernetes v1.34.4\n');
  });

  it('kubelet stand-in: answers /healthz on the configuration\'s healthzPort, as kubeadm waits for', async () => {
    expect(worker!.healthzUrl()).to.equal(`http://127.0.0.1:${healthzPort}/healthz`);
    const r = await waitUntil('healthz', () => httpGetText(`http://127.0.0.1:${healthzPort}/healthz`));
    expect(r).to.deep.equal({ status: 200, body: 'ok' });
  });

  it('kubelet stand-in: TLS bootstrap ends with kubelet.conf on a certificate the CA signed for system:node:<name>', async () => {
    const workerRoot = join(root, WORKER);
    const kubeletConf = join(workerRoot, 'etc/kubernetes/kubelet.conf');
    const conf = await waitUntil('kubelet.conf', async () => parseYaml(readFileSync(kubeletConf, 'utf8')) as Record<string, unknown>);
    const current = join(workerRoot, 'var/lib/kubelet/pki/kubelet-client-current.pem');
    expect(conf['current-context']).to.equal('default-context');
    expect(conf.users).to.deep.equal([{ name: 'default-auth', user: { 'client-certificate': current, 'client-key': current } }]);
    expect(statSync(kubeletConf).mode & 0o777).to.equal(0o600);

    expect(lstatSync(current).isSymbolicLink()).to.equal(true);
    const target = readlinkSync(current);
    expect(target).to.match(/\/kubelet-client-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.pem$/);
    expect(statSync(target).mode & 0o777).to.equal(0o600);
    const pem = readFileSync(target, 'utf8');
    expect(pem).to.contain(['-----BEGIN EC', 'PRIVATE KEY-----'].join(' ')); // assembled, so no key-shaped text is committed
    const cert = new X509Certificate(pem);
    const ca = new X509Certificate(env.caCert);
    expect(cert.subject.split('\n').sort()).to.deep.equal(['CN=system:node:worker-a', 'O=system:nodes']);
    expect(cert.checkIssued(ca)).to.equal(true);
    expect(cert.verify(ca.publicKey)).to.equal(true);

    const csrs = await kc.makeApiClient(CertificatesV1Api).listCertificateSigningRequest();
    const csr = csrs.items.find((c) => c.spec.username === `system:bootstrap:${token.split('.')[0]}`);
    expect(csr?.metadata?.name).to.match(/^node-csr-/);
    expect(csr?.spec.signerName).to.equal('kubernetes.io/kube-apiserver-client-kubelet');
    expect(csr?.status?.conditions?.find((c) => c.type === 'Approved')?.reason).to.equal('AutoApproved');

    // the Go client loads it as kubeadm join's wait for the TLS bootstrap does
    const whoami = JSON.parse(await kubectl(kubeletConf, ['auth', 'whoami', '-o', 'json'])) as { status: { userInfo: { username: string; groups: string[] } } };
    expect(whoami.status.userInfo.username).to.equal('system:node:worker-a');
    expect(whoami.status.userInfo.groups).to.include('system:nodes');
  });

  it('kubelet stand-in: registers the Node with the labels and taints of kubeadm-flags.env and /etc/default/kubelet', async () => {
    const node = await waitUntil('node', () => core.readNode({ name: WORKER }));
    expect(node.metadata?.labels).to.include({
      'kubernetes.io/hostname': WORKER,
      'kubernetes.io/os': 'linux',
      'beta.kubernetes.io/os': 'linux',
      'capflow.io/pool': 'workers',
      'capflow.io/extra': 'yes',
    });
    expect(node.metadata?.labels?.['kubernetes.io/arch']).to.be.oneOf(['amd64', 'arm64']);
    const taints = (node.spec?.taints ?? []).map((t) => `${t.key}=${t.value ?? ''}:${t.effect}`);
    expect(taints).to.include.members([
      'capflow.io/dedicated=infra:NoSchedule',
      'capflow.io/warming=:PreferNoSchedule',
      'node.cloudprovider.kubernetes.io/uninitialized=true:NoSchedule',
    ]);
    expect(node.spec?.providerID).to.equal('aws:///us-east-1a/i-0123456789abcdef0');
    const withStatus = await waitUntil('node status', async () => {
      const n = await core.readNode({ name: WORKER });
      return n.status?.nodeInfo?.kubeletVersion ? n : undefined;
    });
    expect(withStatus.status?.addresses).to.deep.include({ type: 'InternalIP', address: '127.0.0.1' });
    expect(withStatus.status?.nodeInfo).to.include({ kubeletVersion: 'v1.34.4', containerRuntimeVersion: 'capflow-stand-in://0.1', operatingSystem: 'linux' });
    expect(withStatus.status?.capacity).to.include({ pods: '110' });
    expect(withStatus.status?.daemonEndpoints?.kubeletEndpoint?.Port).to.equal(10250);
  });

  it('kubelet stand-in: the Node is NotReady with NetworkPluginNotReady until a CNI config appears, then Ready', async () => {
    const notReady = await waitUntil('Ready condition', async () => readyCondition(await core.readNode({ name: WORKER })));
    expect(notReady.status).to.equal('False');
    expect(notReady.reason).to.equal('KubeletNotReady');
    expect(notReady.message).to.contain('NetworkReady=false reason:NetworkPluginNotReady');
    // stands for the CNI DaemonSet's pod writing its config on the node
    const cniDir = join(root, WORKER, 'etc/cni/net.d');
    mkdirSync(cniDir, { recursive: true });
    writeFileSync(join(cniDir, '10-stand-in.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'stand-in', plugins: [{ type: 'bridge' }] }));
    const ready = await waitUntil('Ready True', async () => {
      const c = readyCondition(await core.readNode({ name: WORKER }));
      return c?.status === 'True' ? c : undefined;
    });
    expect(ready.reason).to.equal('KubeletReady');
  });

  it('kubelet stand-in: renews the Lease in kube-node-lease', async () => {
    const leases = kc.makeApiClient(CoordinationV1Api);
    const first = await waitUntil('lease', () => leases.readNamespacedLease({ name: WORKER, namespace: 'kube-node-lease' }));
    expect(first.spec).to.include({ holderIdentity: WORKER, leaseDurationSeconds: 40 });
    expect(first.metadata?.ownerReferences?.[0]).to.include({ kind: 'Node', name: WORKER });
    const renewed = await waitUntil('renewal', async () => {
      const l = await leases.readNamespacedLease({ name: WORKER, namespace: 'kube-node-lease' });
      return String(l.spec?.renewTime) !== String(first.spec?.renewTime) ? l : undefined;
    });
    expect(String(renewed.spec?.renewTime)).to.match(/\.\d{6}Z$/);
  });

  it('kubelet stand-in: mirrors its static pod as kube-system/<pod>-<node>, Running and Ready, and recreates it when the manifest changes', async () => {
    const name = `probe-server-${WORKER}`;
    const mirror = await waitUntil('ready mirror pod', async () => {
      const p = await core.readNamespacedPod({ name, namespace: 'kube-system' });
      return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
    });
    const hash = worker!.staticPods()[0]!.manifestHash;
    expect(mirror.metadata?.annotations).to.include({
      'kubernetes.io/config.mirror': hash,
      'kubernetes.io/config.hash': hash,
      'kubernetes.io/config.source': 'file',
    });
    const node = await core.readNode({ name: WORKER });
    expect(mirror.metadata?.ownerReferences).to.deep.equal([{ apiVersion: 'v1', kind: 'Node', name: WORKER, uid: node.metadata?.uid, controller: true }]);
    expect(mirror.spec?.nodeName).to.equal(WORKER);
    expect(mirror.status?.phase).to.equal('Running');
    expect(mirror.status?.podIP).to.equal('127.0.0.1');
    expect(mirror.status?.containerStatuses?.[0]).to.include({ name: 'probe-server', ready: true, started: true, restartCount: 0 });

    // kubeadm upgrade rewrites a manifest and waits for the mirror pod's config.hash to change
    writeFileSync(join(root, WORKER, 'etc/kubernetes/manifests/probe-server.yaml'), staticPodManifest(staticPort, 'two'));
    const replaced = await waitUntil('new mirror pod', async () => {
      const p = await core.readNamespacedPod({ name, namespace: 'kube-system' });
      const h = p.metadata?.annotations?.['kubernetes.io/config.hash'];
      return h && h !== hash && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
    });
    expect(replaced.metadata?.uid).to.not.equal(mirror.metadata?.uid);
    expect((await httpGetText(`http://127.0.0.1:${staticPort}/`)).body).to.equal('two');
  });

  it('kubelet stand-in: a pod bound to the node turns Running with an address of the node\'s pod CIDR', async () => {
    const podCIDR = await waitUntil('pod CIDR', async () => (await core.readNode({ name: WORKER })).spec?.podCIDR);
    const pod = (name: string, hostNetwork: boolean): V1Pod => ({
      metadata: { name, namespace: 'default' },
      spec: { nodeName: WORKER, hostNetwork, containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }] },
    });
    await core.createNamespacedPod({ namespace: 'default', body: pod('app', false) });
    await core.createNamespacedPod({ namespace: 'default', body: pod('host-app', true) });
    const running = async (name: string): Promise<V1Pod> =>
      waitUntil(`${name} Running`, async () => {
        const p = await core.readNamespacedPod({ name, namespace: 'default' });
        return p.status?.phase === 'Running' ? p : undefined;
      });
    const app = await running('app');
    expect(app.status?.conditions?.filter((c) => c.status === 'True').map((c) => c.type)).to.include.members(['Initialized', 'ContainersReady', 'Ready', 'PodScheduled']);
    expect(app.status?.containerStatuses?.[0]).to.include({ name: 'app', ready: true, started: true });
    expect(app.status?.containerStatuses?.[0]?.state?.running).to.not.equal(undefined);
    expect(app.status?.hostIP).to.equal('127.0.0.1');
    const prefix = podCIDR.split('.').slice(0, 3).join('.'); // a /24 from --cluster-cidr=10.244.0.0/16
    expect(app.status?.podIP?.startsWith(`${prefix}.`)).to.equal(true, `${app.status?.podIP} in ${podCIDR}`);
    expect((await running('host-app')).status?.podIP).to.equal('127.0.0.1');
  });

  it('kubelet stand-in: a pod deleted with a grace period is confirmed gone', async () => {
    const body: V1Pod = { metadata: { name: 'doomed', namespace: 'default' }, spec: { nodeName: WORKER, containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }] } };
    await core.createNamespacedPod({ namespace: 'default', body });
    await waitUntil('doomed Running', async () => (await core.readNamespacedPod({ name: 'doomed', namespace: 'default' })).status?.phase === 'Running');
    await core.deleteNamespacedPod({ name: 'doomed', namespace: 'default' }); // default grace period: 30 s
    const terminating = await core.readNamespacedPod({ name: 'doomed', namespace: 'default' }).catch(() => undefined);
    if (terminating) expect(terminating.metadata?.deletionTimestamp).to.not.equal(undefined);
    await waitUntil('doomed gone', async () => {
      try {
        await core.readNamespacedPod({ name: 'doomed', namespace: 'default' });
        return false;
      } catch (err) {
        return (err as { code?: number }).code === 404;
      }
    }, 10_000);
  });

  it('kubelet stand-in: on a first control plane, kubelet.conf\'s embedded credentials seed kubelet-client-current.pem, and kubelet-finalize\'s rewrite is followed', async () => {
    // kubeadm init writes kubelet.conf with the node's client certificate embedded, signed by the CA
    const cpRoot = join(root, CONTROL_PLANE);
    mkdirSync(join(cpRoot, 'etc/kubernetes'), { recursive: true });
    const key = join(cpRoot, 'node.key');
    const crt = join(cpRoot, 'node.crt');
    const r = await run(requireTool('openssl'), [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-CA', env.caCertPath, '-CAkey', env.caKeyPath, '-keyout', key, '-out', crt,
      '-subj', `/O=system:nodes/CN=system:node:${CONTROL_PLANE}`,
      '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature', '-addext', 'extendedKeyUsage=clientAuth',
    ]);
    expect(r.code, r.stderr).to.equal(0);
    const kubeletConf = join(cpRoot, 'etc/kubernetes/kubelet.conf');
    const b64 = (f: string): string => readFileSync(f).toString('base64');
    writeFileSync(kubeletConf, kubeconfigFile(env.server, env.caCert, { 'client-certificate-data': b64(crt), 'client-key-data': b64(key) }));
    const [cpHealthz] = (await freePorts(1)) as [number];
    writeKubeletStart(cpRoot, cpHealthz, `--node-labels=capflow.io/pool=control-plane`);
    const cpLines: string[] = [];
    const cp = await runKubelet({ root: cpRoot, nodeName: CONTROL_PLANE, nodeIp: '127.0.0.1', timing: FAST, log: (l) => cpLines.push(l) });
    try {
      const pem = join(cpRoot, 'var/lib/kubelet/pki/kubelet-client-current.pem');
      const stored = await waitUntil('kubelet-client-current.pem', async () => readFileSync(pem, 'utf8'));
      expect(new X509Certificate(stored).fingerprint256).to.equal(new X509Certificate(readFileSync(crt)).fingerprint256);
      await waitUntil('control plane node', () => core.readNode({ name: CONTROL_PLANE }));

      // kubeadm's kubelet-finalize phase: the current context's user now names the PEM for both
      const conf = parseYaml(readFileSync(kubeletConf, 'utf8')) as { users: Array<{ user: Record<string, string> }> };
      conf.users[0]!.user = { 'client-certificate': pem, 'client-key': pem };
      writeFileSync(kubeletConf, toYaml(conf));
      await waitUntil('reload', async () => cpLines.some((l) => l.includes('Reloaded kubelet.conf')));
      const leases = kc.makeApiClient(CoordinationV1Api);
      const before = await leases.readNamespacedLease({ name: CONTROL_PLANE, namespace: 'kube-node-lease' });
      await waitUntil('lease renewed after the rewrite', async () => {
        const l = await leases.readNamespacedLease({ name: CONTROL_PLANE, namespace: 'kube-node-lease' });
        return String(l.spec?.renewTime) !== String(before.spec?.renewTime);
      });
      const whoami = JSON.parse(await kubectl(kubeletConf, ['auth', 'whoami', '-o', 'json'])) as { status: { userInfo: { username: string } } };
      expect(whoami.status.userInfo.username).to.equal(`system:node:${CONTROL_PLANE}`);
    } catch (err) {
      console.log(cpLines.slice(-40).join('\n'));
      throw err;
    } finally {
      await cp.stop();
    }
  });
});
