// The kubelet stand-in against the test bed's real kube-apiserver (Node authorizer, NodeRestriction,
// bootstrap tokens on, and a kubelet client certificate, as in a kubeadm cluster) and a real
// kube-controller-manager that approves and signs node CSRs with the envtest CA and allocates pod
// CIDRs. The RBAC and the bootstrap token are the objects kubeadm creates. The stand-in runs outside
// any namespace, its paths under a temp root, its kubelet server on 127.0.0.1 at a free port (the
// configuration's `port`, which the Node reports and the API server dials for pod logs). Process
// pods run small shell scripts from a temp bin dir. Needs `bash testbed/install.sh`.

import { expect } from 'chai';
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  CertificatesV1Api,
  CoordinationV1Api,
  CoreV1Api,
  type KubeConfig,
  RbacAuthorizationV1Api,
  type V1EnvVar,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import { parse as parseYaml, parseAllDocuments, stringify as toYaml } from 'yaml';
import { main, runKubelet, type RunningKubelet } from '../../src/emulator/kubelet/kubelet.js';
import { type Envtest, freePorts, startEnvtest } from '../support/envtest.js';
import { REPO_ROOT, requireTool, run } from '../support/tools.js';

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

/**
 * What kubeadm's kubelet-start phase writes: config.yaml (with the cluster CA as the kubelet's
 * client CA, at kubeadm's path; plus a `port`, which kubeadm leaves at 10250), then kubeadm-flags.env.
 */
function writeKubeletStart(root: string, ports: { healthz: number; kubelet: number }, caPem: string, kubeadmArgs: string): void {
  mkdirSync(join(root, 'var/lib/kubelet'), { recursive: true });
  mkdirSync(join(root, 'etc/kubernetes/pki'), { recursive: true });
  writeFileSync(join(root, 'etc/kubernetes/pki/ca.crt'), caPem);
  writeFileSync(
    join(root, 'var/lib/kubelet/config.yaml'),
    toYaml({
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: '/etc/kubernetes/pki/ca.crt' } },
      authorization: { mode: 'Webhook' },
      healthzBindAddress: '127.0.0.1',
      healthzPort: ports.healthz,
      port: ports.kubelet,
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


/**
 * The process pods' commands in the machine's bin dir (the machines carry etcdctl): etcdctl's
 * `member list -w json` output plus what the process sees of the host, its env and cwd; an exit 3;
 * one that fails its first run; one that ignores SIGTERM (noting it), so only SIGKILL ends it.
 */
function writeScripts(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const script = (name: string, lines: string[]): void => writeFileSync(join(dir, name), ['#!/bin/sh', ...lines, ''].join('\n'), { mode: 0o755 });
  script('fake-etcdctl', [
    `printf '{"members":[{"ID":"8e9e05c52164694d","name":"%s"}]}\\n' "$NODE_NAME"`,
    'cat "$1/greeting.txt"',
    'echo "cwd=$(pwd) $GREETING"',
    'echo "to stderr" >&2',
  ]);
  script('exit-3', ['echo "about to fail"', 'exit 3']);
  script('fails-once', ['if [ -e "$1/ran" ]; then echo "second run"; exit 0; fi', 'touch "$1/ran"', 'echo "first run"', 'exit 1']);
  script('lingers', ['echo $$ > "$1/pid"', `trap 'echo TERM >> "$1/signals"' TERM`, 'echo running', 'while :; do sleep 0.1; done']);
}

/** GET on the kubelet server, trusting its self-signed certificate, with or without a client certificate. */
function kubeletGet(
  port: number,
  path: string,
  client?: { cert: string; key: string },
): Promise<{ status: number; body: string; serving: X509Certificate | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, method: 'GET', rejectUnauthorized: false, agent: false, ...client }, (res) => {
      const serving = (res.socket as TLSSocket).getPeerX509Certificate();
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, serving }));
    });
    req.on('error', reject);
    req.end();
  });
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
  let kubeletPort: number;
  /** The machine's binaries: the process pods' scripts. */
  let binDir: string;
  /** Stands for /etc/kubernetes/pki/etcd: a host directory process pods mount at its own path. */
  let hostDir: string;
  const lines: string[] = [];

  before(async function () {
    this.timeout(120_000);
    env = await startEnvtest({
      // envtest's --authorization-mode=RBAC and this one add up to kubeadm's Node,RBAC
      apiserverArgs: ['--authorization-mode=Node', '--enable-admission-plugins=NodeRestriction', '--enable-bootstrap-token-auth=true'],
      kubeletClient: true,
    });
    kc = env.makeKubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    root = mkdtempSync(join(tmpdir(), 'capflow-kubelet-'));
    token = await createKubeadmBootstrapObjects(kc);
    kcm = startControllerManager(env, join(root, 'kube-controller-manager.log'));
    [healthzPort, staticPort, kubeletPort] = (await freePorts(3)) as [number, number, number];
    binDir = join(root, 'bin');
    hostDir = join(root, 'host-pki');
    writeScripts(binDir);
    mkdirSync(hostDir);
    writeFileSync(join(hostDir, 'greeting.txt'), 'read from the host\n');

    // what kubeadm join leaves for the kubelet: bootstrap-kubelet.conf, config.yaml, the flags
    const workerRoot = join(root, WORKER);
    mkdirSync(join(workerRoot, 'etc/kubernetes/manifests'), { recursive: true });
    writeFileSync(join(workerRoot, 'etc/kubernetes/bootstrap-kubelet.conf'), kubeconfigFile(env.server, env.caCert, { token }));
    writeKubeletStart(
      workerRoot,
      { healthz: healthzPort, kubelet: kubeletPort },
      env.caCert,
      '--node-labels=capflow.io/pool=workers --register-with-taints=capflow.io/dedicated=infra:NoSchedule,capflow.io/warming:PreferNoSchedule --provider-id=aws:///us-east-1a/i-0123456789abcdef0 --cloud-provider=external',
    );
    mkdirSync(join(workerRoot, 'etc/default'), { recursive: true });
    writeFileSync(join(workerRoot, 'etc/default/kubelet'), 'KUBELET_EXTRA_ARGS=--node-labels=capflow.io/extra=yes\n');
    writeFileSync(join(workerRoot, 'etc/kubernetes/manifests/probe-server.yaml'), staticPodManifest(staticPort, 'one'));

    worker = await runKubelet({
      root: workerRoot,
      nodeName: WORKER,
      nodeIp: '127.0.0.1',
      binDirs: [binDir, dirname(process.execPath)],
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
    // where the API server dials the kubelet: kubeadm leaves `port` at its default, 10250; here a free one
    expect(withStatus.status?.daemonEndpoints?.kubeletEndpoint?.Port).to.equal(kubeletPort);
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
    const [cpHealthz, cpKubelet] = (await freePorts(2)) as [number, number];
    writeKubeletStart(cpRoot, { healthz: cpHealthz, kubelet: cpKubelet }, env.caCert, `--node-labels=capflow.io/pool=control-plane`);
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

  // A CNI installed as an addon: test/fixtures/charts/bridge-cni's DaemonSet pod, rendered with the
  // machine's CNI directory (under the temp root) as cniConfDir and bound to the node as the
  // DaemonSet controller and the scheduler would bind it.
  describe('init containers: a host-network pod\'s init containers run on the kubelet stand-in as processes', function () {
    const NS = 'kube-system';
    let cniDir: string;

    /** The chart's ServiceAccount, and its DaemonSet's pod template as a pod bound to the worker. */
    const bridgeCniPod = async (name: string): Promise<V1Pod> => {
      const chart = join(REPO_ROOT, 'test/fixtures/charts/bridge-cni');
      const r = await run(requireTool('helm'), ['template', 'bridge-cni', chart, '--namespace', NS, '--set', `cniConfDir=${cniDir}`]);
      expect(r.code, r.stderr).to.equal(0);
      const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as { kind: string; metadata: { name: string }; spec: { template: V1Pod } });
      const sa = docs.find((d) => d.kind === 'ServiceAccount')!;
      await core.createNamespacedServiceAccount({ namespace: NS, body: sa }).catch((err: { code?: number }) => {
        if (err.code !== 409) throw err;
      });
      const template = docs.find((d) => d.kind === 'DaemonSet')!.spec.template;
      return { metadata: { ...template.metadata, name, namespace: NS }, spec: { ...template.spec!, nodeName: WORKER } };
    };
    const read = (name: string): Promise<V1Pod> => core.readNamespacedPod({ name, namespace: NS });

    before(() => {
      cniDir = join(root, WORKER, 'etc/cni/net.d');
    });

    it('kubelet stand-in: a CNI DaemonSet pod\'s init container writes its config into the machine\'s /etc/cni/net.d on the kubelet stand-in; the Node turns Ready, the pod Running', async () => {
      rmSync(cniDir, { recursive: true, force: true }); // the config an earlier test wrote; DirectoryOrCreate makes the directory again
      await waitUntil('Node NotReady', async () => readyCondition(await core.readNode({ name: WORKER }))?.status === 'False', 5000);
      await core.createNamespacedPod({ namespace: NS, body: await bridgeCniPod('bridge-cni-worker-a') });

      const ready = await waitUntil('Node Ready', async () => {
        const c = readyCondition(await core.readNode({ name: WORKER }));
        return c?.status === 'True' ? c : undefined;
      }, 10_000);
      expect(ready.reason).to.equal('KubeletReady');
      const conf = JSON.parse(readFileSync(join(cniDir, '10-bridge-cni.conflist'), 'utf8')) as { name: string; plugins: Array<Record<string, unknown>> };
      expect(conf.name).to.equal('bridge-cni');
      expect(conf.plugins.map((p) => p.type)).to.deep.equal(['bridge', 'portmap']);
      expect(conf.plugins[0]).to.deep.include({ bridge: 'cni0', isGateway: true, ipMasq: true });
      expect(conf.plugins[0]!.ipam).to.deep.include({ type: 'host-local', ranges: [[{ subnet: '10.244.0.0/16' }]] });

      const pod = await waitUntil('bridge-cni pod Running', async () => {
        const p = await read('bridge-cni-worker-a');
        return p.status?.phase === 'Running' ? p : undefined;
      });
      const init = pod.status!.initContainerStatuses![0]!;
      expect(init).to.include({ name: 'install-cni', ready: true, restartCount: 0 });
      expect(init.state?.terminated).to.include({ exitCode: 0, reason: 'Completed' });
      expect(new Date(init.state!.terminated!.finishedAt!).getTime()).to.be.at.least(new Date(init.state!.terminated!.startedAt!).getTime());
      expect(pod.status?.containerStatuses?.[0]).to.include({ name: 'pause', ready: true, started: true });
      expect(pod.status?.conditions?.filter((c) => c.status === 'True').map((c) => c.type)).to.include.members(['Initialized', 'Ready', 'ContainersReady']);
      expect(pod.status?.podIP).to.equal('127.0.0.1');
    });

    it('kubelet stand-in: a CNI pod marked not Ready by another, as the node lifecycle controller marks a lost Node\'s pods, is reported Ready again by the kubelet stand-in (the kubelet\'s status manager puts its status back)', async () => {
      await core.createNamespacedPod({ namespace: NS, body: await bridgeCniPod('bridge-cni-worker-b') });
      const running = await waitUntil('bridge-cni-worker-b Ready', async () => {
        const p = await read('bridge-cni-worker-b');
        return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
      });
      // what the controller's MarkPodsNotReady writes: the Ready condition False, the rest as it was
      const marked = { ...running, status: { ...running.status, conditions: running.status!.conditions!.map((c) => (c.type === 'Ready' ? { ...c, status: 'False', lastTransitionTime: new Date() } : c)) } };
      await core.replaceNamespacedPodStatus({ name: 'bridge-cni-worker-b', namespace: NS, body: marked });
      const again = await waitUntil('bridge-cni-worker-b Ready again', async () => {
        const p = await read('bridge-cni-worker-b');
        return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined;
      }, 5000);
      expect(again.status?.phase).to.equal('Running');
      // the init container is not run again
      expect(again.status?.initContainerStatuses?.[0]).to.deep.include({ restartCount: 0 });
      expect(again.status?.initContainerStatuses?.[0]?.state?.terminated).to.include({ exitCode: 0, reason: 'Completed' });
      await core.deleteNamespacedPod({ name: 'bridge-cni-worker-b', namespace: NS });
      await waitUntil('bridge-cni-worker-b gone', async () => read('bridge-cni-worker-b').then(() => false, (err: { code?: number }) => err.code === 404), 5000);
    });

    it('kubelet stand-in: an init container that exits 1 is restarted by the kubelet stand-in with the crash backoff (Init:CrashLoopBackOff); the pod stays Pending', async () => {
      const body = await bridgeCniPod('bridge-cni-failing');
      body.spec!.initContainers![0]!.args = ['echo "cannot install"; exit 1'];
      await core.createNamespacedPod({ namespace: NS, body });
      // the first restart comes at once, the second after the backoff's base (10 s)
      const pod = await waitUntil('Init:CrashLoopBackOff', async () => {
        const p = await read('bridge-cni-failing');
        const cs = p.status?.initContainerStatuses?.[0];
        return cs?.restartCount === 1 && cs.state?.waiting?.reason === 'CrashLoopBackOff' ? p : undefined;
      }, 10_000);
      expect(pod.status?.phase).to.equal('Pending');
      const init = pod.status!.initContainerStatuses![0]!;
      expect(init.state?.waiting?.message).to.contain('back-off 10s restarting failed container=install-cni pod=bridge-cni-failing_kube-system');
      expect(init.lastState?.terminated).to.include({ exitCode: 1, reason: 'Error' });
      expect(pod.status?.containerStatuses?.[0]?.state?.waiting?.reason).to.equal('PodInitializing');
      expect(pod.status?.conditions?.find((c) => c.type === 'Initialized')).to.include({ status: 'False', reason: 'ContainersNotInitialized' });
      expect(await core.readNamespacedPodLog({ name: 'bridge-cni-failing', namespace: NS, container: 'install-cni' })).to.equal('cannot install\n');

      await core.deleteNamespacedPod({ name: 'bridge-cni-failing', namespace: NS });
      await waitUntil('bridge-cni-failing gone', async () => read('bridge-cni-failing').then(() => false, (err: { code?: number }) => err.code === 404), 5000);
    });
  });

  // What capflow does to remove an etcd member: a host-network pod pinned to the node, restartPolicy
  // Never, the etcd PKI directory mounted read-only at its own path, its answer read from its log
  // through the API server (which dials the kubelet server), then deleted with grace period 0.
  describe('process pods: run-to-completion host-network pods run on the kubelet stand-in as processes', function () {
    const NS = 'kube-system';
    let scratch: string;
    let notRun: string;

    const processPod = (p: {
      name: string;
      command: string[];
      restartPolicy?: 'Never' | 'OnFailure';
      hostNetwork?: boolean;
      dir?: string;
      mountPath?: string;
      readOnly?: boolean;
      env?: V1EnvVar[];
      workingDir?: string;
    }): V1Pod => {
      const dir = p.dir ?? hostDir;
      return {
        metadata: { name: p.name, namespace: NS, labels: { 'capflow.dev/etcdctl': 'test' } },
        spec: {
          nodeName: WORKER,
          hostNetwork: p.hostNetwork ?? true,
          restartPolicy: p.restartPolicy ?? 'Never',
          priorityClassName: 'system-node-critical',
          tolerations: [{ operator: 'Exists' }],
          automountServiceAccountToken: false,
          volumes: [{ name: 'etcd-certs', hostPath: { path: dir, type: 'Directory' } }],
          containers: [
            {
              name: 'etcdctl',
              image: 'registry.k8s.io/etcd:3.6.5-0',
              command: p.command,
              ...(p.env ? { env: p.env } : {}),
              ...(p.workingDir ? { workingDir: p.workingDir } : {}),
              volumeMounts: [{ name: 'etcd-certs', mountPath: p.mountPath ?? dir, readOnly: p.readOnly ?? true }],
            },
          ],
        },
      };
    };
    const read = (name: string): Promise<V1Pod> => core.readNamespacedPod({ name, namespace: NS });
    const finished = (name: string): Promise<V1Pod> =>
      waitUntil(`${name} Succeeded or Failed`, async () => {
        const p = await read(name);
        return p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed' ? p : undefined;
      }, 15_000);
    const podLog = async (name: string, extra: { tailLines?: number; limitBytes?: number; previous?: boolean } = {}): Promise<string> =>
      (await core.readNamespacedPodLog({ name, namespace: NS, container: 'etcdctl', ...extra })) ?? '';
    const gone = (name: string): Promise<boolean> =>
      waitUntil(`${name} gone`, async () => {
        try {
          await read(name);
          return false;
        } catch (err) {
          return (err as { code?: number }).code === 404;
        }
      }, 10_000);

    before(async () => {
      scratch = join(root, 'scratch');
      notRun = join(root, 'not-run');
      mkdirSync(scratch);
      mkdirSync(notRun);
      // all at once: they run side by side, each test waits for its own
      const pods: V1Pod[] = [
        processPod({
          name: 'member-list',
          command: ['fake-etcdctl', hostDir],
          env: [
            { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
            { name: 'GREETING', value: 'hello $(NODE_NAME)' },
          ],
          workingDir: hostDir,
        }),
        processPod({ name: 'exits-3', command: ['exit-3'] }),
        processPod({ name: 'mounted-elsewhere', command: ['fake-etcdctl', hostDir], mountPath: '/etc/kubernetes/pki/etcd' }),
        processPod({ name: 'no-binary', command: ['etcdctl-not-on-this-machine', 'member', 'list'] }),
        processPod({ name: 'fails-once', command: ['fails-once', scratch], restartPolicy: 'OnFailure', dir: scratch, readOnly: false }),
        processPod({ name: 'lingers', command: ['lingers', scratch], dir: scratch, readOnly: false }),
        processPod({ name: 'pod-network', command: ['fails-once', notRun], hostNetwork: false, dir: notRun, readOnly: false }),
      ];
      await Promise.all(pods.map((body) => core.createNamespacedPod({ namespace: NS, body })));
    });

    it('kubelet stand-in: a host-network restartPolicy=Never pod runs on the kubelet stand-in as a process and Succeeds; the API server reads its exact log from the stand-in', async () => {
      const pod = await finished('member-list');
      expect(pod.status?.phase).to.equal('Succeeded');
      expect(pod.status?.podIP).to.equal('127.0.0.1');
      expect(pod.status?.hostIP).to.equal('127.0.0.1');
      const cs = pod.status!.containerStatuses![0]!;
      expect(cs).to.include({ name: 'etcdctl', ready: false, started: false, restartCount: 0 });
      expect(cs.state?.terminated).to.include({ exitCode: 0, reason: 'Completed' });
      const { startedAt, finishedAt } = cs.state!.terminated!;
      expect(startedAt).to.be.instanceOf(Date);
      expect(new Date(finishedAt!).getTime()).to.be.at.least(new Date(startedAt!).getTime());
      expect(pod.status?.conditions?.find((c) => c.type === 'Ready')).to.include({ status: 'False', reason: 'PodCompleted' });

      // stdout and stderr, in order; the host's file through the hostPath, env ($(VAR), fieldRef) and workingDir
      const expected = [
        `{"members":[{"ID":"8e9e05c52164694d","name":"${WORKER}"}]}`,
        'read from the host',
        `cwd=${realpathSync(hostDir)} hello ${WORKER}`,
        'to stderr',
        '',
      ].join('\n');
      expect(await podLog('member-list')).to.equal(expected);
      expect(await podLog('member-list', { tailLines: 2 })).to.equal(`cwd=${realpathSync(hostDir)} hello ${WORKER}\nto stderr\n`);
      expect(await podLog('member-list', { limitBytes: 12 })).to.equal('{"members":[');
      const previous = await podLog('member-list', { previous: true }).catch((err: { code?: number; body?: unknown }) => err);
      expect(previous).to.include({ code: 400 });
      expect(String((previous as { body?: unknown }).body)).to.contain('previous terminated container \\"etcdctl\\" in pod \\"member-list\\" not found');

      // the kubelet's log layout; removed with the pod, which capflow deletes with grace period 0
      const logDir = join(root, WORKER, 'var/log/pods', `${NS}_member-list_${pod.metadata!.uid!}`);
      expect(readFileSync(join(logDir, 'etcdctl/0.log'), 'utf8')).to.equal(expected);
      await core.deleteNamespacedPod({ name: 'member-list', namespace: NS, gracePeriodSeconds: 0 });
      await gone('member-list');
      await waitUntil('log directory removed', async () => !existsSync(logDir), 5000);
    });

    it('kubelet stand-in: a process pod that exits 3 on the kubelet stand-in is Failed with exit code 3, reason Error, and its log', async () => {
      const pod = await finished('exits-3');
      expect(pod.status?.phase).to.equal('Failed');
      expect(pod.status?.containerStatuses?.[0]?.state?.terminated).to.include({ exitCode: 3, reason: 'Error' });
      expect(await podLog('exits-3')).to.equal('about to fail\n');
    });

    it('kubelet stand-in: a process pod whose hostPath is mounted elsewhere, or whose command is not on the machine, fails on the kubelet stand-in with StartError and the reason', async () => {
      const elsewhere = await finished('mounted-elsewhere');
      expect(elsewhere.status?.phase).to.equal('Failed');
      const t = elsewhere.status?.containerStatuses?.[0]?.state?.terminated;
      expect(t).to.include({ exitCode: 128, reason: 'StartError' });
      expect(t?.message).to.contain(`hostPath volume "etcd-certs" (path ${hostDir}) must be mounted at that same path`);
      expect(t?.message).to.contain('not at /etc/kubernetes/pki/etcd');
      expect(await podLog('mounted-elsewhere')).to.equal(''); // nothing ran

      const missing = await finished('no-binary');
      expect(missing.status?.phase).to.equal('Failed');
      expect(missing.status?.containerStatuses?.[0]?.state?.terminated).to.include({
        exitCode: 128,
        reason: 'StartError',
        message: 'exec: "etcdctl-not-on-this-machine": executable file not found in $PATH',
      });
    });

    it('kubelet stand-in: a restartPolicy=OnFailure process pod is restarted on the kubelet stand-in after a failed run; both runs\' logs are read', async () => {
      const pod = await finished('fails-once');
      expect(pod.status?.phase).to.equal('Succeeded');
      const cs = pod.status!.containerStatuses![0]!;
      expect(cs.restartCount).to.equal(1);
      expect(cs.state?.terminated).to.include({ exitCode: 0, reason: 'Completed' });
      expect(cs.lastState?.terminated).to.include({ exitCode: 1, reason: 'Error' });
      expect(await podLog('fails-once')).to.equal('second run\n');
      expect(await podLog('fails-once', { previous: true })).to.equal('first run\n');
    });

    it('kubelet stand-in: a process pod deleted while running gets SIGTERM, then SIGKILL after the grace period, on the kubelet stand-in; then it is gone', async () => {
      const running = await waitUntil('lingers Running', async () => {
        const p = await read('lingers');
        return p.status?.phase === 'Running' ? p : undefined;
      });
      const cs = running.status!.containerStatuses![0]!;
      expect(cs).to.include({ ready: true, started: true });
      expect(cs.state?.running?.startedAt).to.be.instanceOf(Date);
      expect(running.status?.conditions?.find((c) => c.type === 'Ready')?.status).to.equal('True');
      const pid = Number(await waitUntil('pid file', async () => readFileSync(join(scratch, 'pid'), 'utf8').trim() || undefined));
      expect(await waitUntil('log', async () => (await podLog('lingers')) || undefined)).to.equal('running\n');

      const deleted = Date.now();
      await core.deleteNamespacedPod({ name: 'lingers', namespace: NS, gracePeriodSeconds: 1 }); // the kubelet's floor: 2 s
      await gone('lingers');
      expect(Date.now() - deleted).to.be.at.least(1900);
      expect(readFileSync(join(scratch, 'signals'), 'utf8')).to.equal('TERM\n');
      expect(() => process.kill(pid, 0)).to.throw(/ESRCH/);
    });

    it('kubelet stand-in: a run-to-completion pod without hostNetwork is still only reported Running by the kubelet stand-in; nothing runs', async () => {
      const pod = await waitUntil('pod-network Running', async () => {
        const p = await read('pod-network');
        return p.status?.phase === 'Running' ? p : undefined;
      });
      expect(pod.status?.podIP).to.not.equal('127.0.0.1');
      expect(pod.status?.containerStatuses?.[0]?.state?.running).to.not.equal(undefined);
      expect(existsSync(join(notRun, 'ran'))).to.equal(false);
      expect(await podLog('pod-network')).to.equal('');
    });

    it('kubelet stand-in: the kubelet server serves a self-signed certificate and requires a client certificate the cluster CA signed', async () => {
      const url = await waitUntil('kubelet server', async () => worker!.serverUrl());
      expect(url).to.equal(`https://127.0.0.1:${kubeletPort}`);
      const apiserverClient = { cert: readFileSync(env.kubeletClientCertPath!, 'utf8'), key: readFileSync(env.kubeletClientKeyPath!, 'utf8') };

      const anonymous = await kubeletGet(kubeletPort, '/healthz');
      expect(anonymous).to.include({ status: 401, body: 'Unauthorized\n' });
      expect((await kubeletGet(kubeletPort, `/containerLogs/${NS}/exits-3/etcdctl`)).status).to.equal(401);
      const ok = await kubeletGet(kubeletPort, '/healthz', apiserverClient);
      expect(ok).to.include({ status: 200, body: 'ok' });
      // made at start as the kubelet makes it without a serving certificate: <node>@<time>, by <node>-ca@<time>
      expect(ok.serving?.subject).to.match(new RegExp(`^CN=${WORKER}@\\d+$`));
      expect(ok.serving?.issuer).to.match(new RegExp(`^CN=${WORKER}-ca@\\d+$`));
      const pki = join(root, WORKER, 'var/lib/kubelet/pki');
      expect(new X509Certificate(readFileSync(join(pki, 'kubelet.crt'))).fingerprint256).to.equal(ok.serving?.fingerprint256);
      expect(statSync(join(pki, 'kubelet.key')).mode & 0o777).to.equal(0o600);
      // a certificate of another CA (the node's own self-signed one) is no client of the cluster's
      const stranger = { cert: readFileSync(join(pki, 'kubelet.crt'), 'utf8'), key: readFileSync(join(pki, 'kubelet.key'), 'utf8') };
      expect((await kubeletGet(kubeletPort, '/healthz', stranger)).status).to.equal(401);

      expect(await kubeletGet(kubeletPort, `/containerLogs/${NS}/exits-3/etcdctl`, apiserverClient)).to.include({ status: 200, body: 'about to fail\n' });
      expect(await kubeletGet(kubeletPort, `/containerLogs/${NS}/exits-3/etcdctl?follow=true`, apiserverClient)).to.include({ status: 400 });
      expect(await kubeletGet(kubeletPort, `/containerLogs/${NS}/no-such-pod/etcdctl`, apiserverClient)).to.include({ status: 404, body: 'pod "no-such-pod" does not exist\n' });
      // a static pod's log, under its mirror pod's name
      expect(await kubeletGet(kubeletPort, `/containerLogs/kube-system/probe-server-${WORKER}/probe-server`, apiserverClient)).to.include({ status: 200 });
    });
  });
});
