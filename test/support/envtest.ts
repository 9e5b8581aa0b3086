// A real Kubernetes API for integration tests: etcd + kube-apiserver (and optionally kwok, which plays
// the kubelets), all on 127.0.0.1, on free ports, in a throwaway directory. Binaries come from
// `bash testbed/install.sh` (see test/support/tools.ts); certificates are made with the openssl CLI,
// or brought by the caller (`pki`).
//
//   const env = await startEnvtest({ crds: [schemaPath('capi', 'cluster.x-k8s.io_clusters.yaml')], kwok: true });
//   const kc = env.makeKubeConfig();  // @kubernetes/client-node KubeConfig for the admin (system:masters)
//   ...
//   await env.stop();
//
// Several instances can run at once (a management and a workload cluster, say). stop() kills the
// process groups and removes the directory; a process-exit hook does the same for anything left.

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT, requireTool, run } from './tools.js';

export interface EnvtestOptions {
  /** CRD manifest files (multi-document YAML allowed) to install and wait for (Established + served). */
  crds?: string[];
  /** Start kwok so that Nodes created in the API are managed (they turn Ready, heartbeats keep them so). */
  kwok?: boolean;
  /** Extra kube-apiserver flags (`--name=value`), appended after the defaults. */
  apiserverArgs?: string[];
  /**
   * kube-apiserver reaches kubelets as kubeadm sets it up (`kubectl logs` through a kubelet
   * stand-in): a client certificate signed by the CA (CN kube-apiserver-kubelet-client, O
   * kubeadm:cluster-admins) as --kubelet-client-certificate/-key, and
   * --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname.
   */
  kubeletClient?: boolean;
  /** How long to wait for etcd + kube-apiserver to be ready. Default 90 s. */
  startTimeoutMs?: number;
  /**
   * The API server's certificates, made by the caller, in kubeadm's file names under `dir`: ca.crt
   * and ca.key (the client CA, which also signs envtest's own system:masters admin certificate),
   * apiserver.crt/.key (serving) and sa.pub/sa.key. Made with openssl when not given.
   */
  pki?: { dir: string };
}

export interface Envtest {
  /** https://127.0.0.1:<port> */
  server: string;
  /** Path of an admin kubeconfig (client certificate in group system:masters). */
  kubeconfigPath: string;
  /** The same kubeconfig, as YAML text. */
  kubeconfig: string;
  /** The throwaway directory holding certificates, data and logs. */
  dir: string;
  /** PEM of the cluster CA (serving and client certificates are signed by it). */
  caCert: string;
  /** The cluster CA's certificate and key files, for a signer such as kube-controller-manager's csrsigning. */
  caCertPath: string;
  caKeyPath: string;
  /** With `kubeletClient`: the API server's client certificate and key files for kubelets. */
  kubeletClientCertPath?: string;
  kubeletClientKeyPath?: string;
  /** Milliseconds from start to a ready API (CRDs and kwok included). */
  startupMs: number;
  /** A fresh @kubernetes/client-node KubeConfig for the admin user. */
  makeKubeConfig(): KubeConfig;
  /** The last lines of a component's log (etcd, kube-apiserver, kwok), for failure messages. */
  logTail(component: 'etcd' | 'kube-apiserver' | 'kwok', lines?: number): string;
  /** Kills the processes (process groups) and removes the directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Where the upstream CRD schemas live: $CAPFLOW_SCHEMAS_DIR, else <repo>/../shared/schemas. */
export function schemasDir(): string {
  return process.env.CAPFLOW_SCHEMAS_DIR ?? resolve(REPO_ROOT, '..', 'shared', 'schemas');
}

export function schemaPath(...segments: string[]): string {
  return join(schemasDir(), ...segments);
}

export const KWOK_STAGES = join(REPO_ROOT, 'test', 'fixtures', 'testbed', 'kwok', 'stages.yaml');

// ------------------------------------------------------------------------------------------------
// process bookkeeping

interface Proc {
  name: string;
  child: ChildProcess;
  exited: boolean;
  exit: Promise<void>;
}

const live = new Set<{ procs: Proc[]; dir: string }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const cleanup = (): void => {
    for (const inst of live) {
      for (const p of inst.procs) killGroup(p, 'SIGKILL');
      rmSync(inst.dir, { recursive: true, force: true });
    }
    live.clear();
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      cleanup();
      process.kill(process.pid, sig);
    });
  }
}

function killGroup(p: Proc, signal: NodeJS.Signals): void {
  if (p.exited || p.child.pid === undefined) return;
  try {
    process.kill(-p.child.pid, signal); // the whole process group (spawned detached)
  } catch {
    try {
      p.child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

async function stopProc(p: Proc, graceMs = 5000): Promise<void> {
  if (p.exited) return;
  killGroup(p, 'SIGTERM');
  const timedOut = await Promise.race([
    p.exit.then(() => false),
    new Promise<boolean>((r) => setTimeout(() => r(true), graceMs).unref()),
  ]);
  if (timedOut) {
    killGroup(p, 'SIGKILL');
    await p.exit;
  }
}

function startProc(name: string, bin: string, args: string[], logFile: string): Proc {
  const fd = openSync(logFile, 'a');
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const proc: Proc = { name, child, exited: false, exit: Promise.resolve() };
  proc.exit = new Promise<void>((r) => {
    child.once('exit', () => {
      proc.exited = true;
      r();
    });
    child.once('error', () => {
      proc.exited = true;
      r();
    });
  });
  return proc;
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// ------------------------------------------------------------------------------------------------
// ports, certificates

/** Distinct free TCP ports on 127.0.0.1 (held open together so they differ, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((res, rej) => {
          const s = createServer();
          s.once('error', rej);
          s.listen(0, '127.0.0.1', () => res(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const addr = s.address();
    if (addr === null || typeof addr === 'string') throw new Error('no port');
    return addr.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

const OPENSSL_CNF = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

async function openssl(dir: string, args: string[]): Promise<void> {
  const r = await run(requireTool('openssl'), args, { cwd: dir });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
}

interface Pki {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  saKey: string;
  saPub: string;
  kubeletClientCert?: string;
  kubeletClientKey?: string;
}

/**
 * CA, apiserver serving cert, admin client cert (O=system:masters), service-account key pair (P-256).
 * With `given`, only the admin certificate is made here, signed by the given CA.
 */
async function makePki(dir: string, given?: { dir: string }, kubeletClient = false): Promise<Pki> {
  const cnf = join(dir, 'openssl.cnf');
  writeFileSync(cnf, OPENSSL_CNF);
  const p = (f: string): string => join(given?.dir ?? dir, f);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  if (!given) {
    await openssl(dir, ['req', '-x509', '-config', cnf, '-extensions', 'ca_ext', ...ec,
      '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '7', '-subj', '/CN=capflow-testbed-ca']);
  }
  const leaf = (ext: string, subj: string, base: string): Promise<void> =>
    openssl(dir, ['req', '-x509', '-config', cnf, '-extensions', ext, ...ec, '-CA', p('ca.crt'), '-CAkey', p('ca.key'),
      '-keyout', join(dir, `${base}.key`), '-out', join(dir, `${base}.crt`), '-days', '7', '-subj', subj]);
  await Promise.all([
    given ? undefined : leaf('server_ext', '/CN=kube-apiserver', 'apiserver'),
    leaf('client_ext', '/O=system:masters/CN=capflow-testbed-admin', 'admin'),
    kubeletClient ? leaf('client_ext', '/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client', 'apiserver-kubelet-client') : undefined,
    given ? undefined : openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', p('sa.key')]),
  ]);
  if (!given) await openssl(dir, ['pkey', '-in', p('sa.key'), '-pubout', '-out', p('sa.pub')]);
  return {
    caCert: p('ca.crt'),
    caKey: p('ca.key'),
    serverCert: p('apiserver.crt'),
    serverKey: p('apiserver.key'),
    adminCert: join(dir, 'admin.crt'),
    adminKey: join(dir, 'admin.key'),
    saKey: p('sa.key'),
    saPub: p('sa.pub'),
    ...(kubeletClient ? { kubeletClientCert: join(dir, 'apiserver-kubelet-client.crt'), kubeletClientKey: join(dir, 'apiserver-kubelet-client.key') } : {}),
  };
}

function kubeconfigYaml(server: string, pki: Pki): string {
  const b64 = (f: string): string => readFileSync(f).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: testbed',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(pki.caCert)}`,
    'users:',
    '- name: admin',
    '  user:',
    `    client-certificate-data: ${b64(pki.adminCert)}`,
    `    client-key-data: ${b64(pki.adminKey)}`,
    'contexts:',
    '- name: testbed',
    '  context:',
    '    cluster: testbed',
    '    user: admin',
    'current-context: testbed',
    '',
  ].join('\n');
}

// ------------------------------------------------------------------------------------------------
// HTTP probes

interface Probe {
  status: number;
  body: string;
}

function httpGet(url: string, tls?: { ca: Buffer; cert: Buffer; key: Buffer }, timeoutMs = 3000): Promise<Probe> {
  return new Promise((res, rej) => {
    const u = new URL(url);
    const opts = { method: 'GET', host: u.hostname, port: u.port, path: u.pathname + u.search, timeout: timeoutMs };
    const req = tls ? httpsRequest({ ...opts, ...tls }) : httpRequest(opts);
    req.on('response', (resp) => {
      let body = '';
      resp.setEncoding('utf8').on('data', (d: string) => (body += d));
      resp.on('end', () => res({ status: resp.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', rej);
    req.end();
  });
}

function httpsJson(method: string, url: string, tls: TlsCreds, body: unknown, timeoutMs = 30_000): Promise<Probe> {
  return new Promise((res, rej) => {
    const u = new URL(url);
    const payload = Buffer.from(JSON.stringify(body));
    const req = httpsRequest({
      method,
      host: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      timeout: timeoutMs,
      headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': payload.length },
      ...tls,
    });
    req.on('response', (resp) => {
      let text = '';
      resp.setEncoding('utf8').on('data', (d: string) => (text += d));
      resp.on('end', () => res({ status: resp.statusCode ?? 0, body: text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', rej);
    req.end(payload);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(
  what: string,
  deadline: number,
  check: () => Promise<boolean>,
  failFast: () => string | undefined = () => undefined,
  describeLast: () => string = () => '',
): Promise<void> {
  for (;;) {
    const fatal = failFast();
    if (fatal) throw new Error(`${what}: ${fatal}`);
    try {
      if (await check()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}. ${describeLast()}`);
    await sleep(150);
  }
}

// ------------------------------------------------------------------------------------------------
// CRDs

function crdDocs(path: string): V1CustomResourceDefinition[] {
  const docs = parseAllDocuments(readFileSync(path, 'utf8'));
  const out: V1CustomResourceDefinition[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`${path}: ${d.errors[0]!.message}`);
    const obj = d.toJS({ maxAliasCount: -1 }) as V1CustomResourceDefinition | null;
    if (obj && obj.kind === 'CustomResourceDefinition') out.push(obj);
  }
  if (out.length === 0) throw new Error(`${path}: no CustomResourceDefinition in it`);
  return out;
}

interface TlsCreds {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

function tlsFrom(kc: KubeConfig): { server: string; tls: TlsCreds } {
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  if (!cluster?.caData || !user?.certData || !user.keyData) {
    throw new Error('installCrds needs a kubeconfig with inline CA and client certificate data');
  }
  return {
    server: cluster.server,
    tls: {
      ca: Buffer.from(cluster.caData, 'base64'),
      cert: Buffer.from(user.certData, 'base64'),
      key: Buffer.from(user.keyData, 'base64'),
    },
  };
}

/**
 * Creates CRDs (existing ones are left as they are) and waits until each is Established and served.
 * The manifests go to the API as plain JSON: @kubernetes/client-node's typed models would drop the
 * `x-kubernetes-*` schema keys on serialization (its models name them `x_kubernetes_*`).
 */
export async function installCrds(kc: KubeConfig, paths: string[], timeoutMs = 60_000): Promise<void> {
  const { server, tls } = tlsFrom(kc);
  const crds = paths.flatMap(crdDocs);
  const base = `${server}/apis/apiextensions.k8s.io/v1/customresourcedefinitions`;
  await Promise.all(
    crds.map(async (crd) => {
      const r = await httpsJson('POST', base, tls, crd);
      if (r.status !== 201 && r.status !== 409) {
        throw new Error(`creating CRD ${crd.metadata?.name}: HTTP ${r.status}: ${r.body.slice(0, 800)}`);
      }
    }),
  );
  const deadline = Date.now() + timeoutMs;
  await Promise.all(
    crds.map(async (crd) => {
      const name = crd.metadata!.name!;
      await waitFor(`CRD ${name} Established`, deadline, async () => {
        const r = await httpGet(`${base}/${name}`, tls);
        if (r.status !== 200) return false;
        const got = JSON.parse(r.body) as V1CustomResourceDefinition;
        return (got.status?.conditions ?? []).some((c) => c.type === 'Established' && c.status === 'True');
      });
      // Established can precede the handler being served by a moment: wait for the list to answer.
      const version = crd.spec.versions.find((v) => v.served)?.name ?? crd.spec.versions[0]!.name;
      const url = `${server}/apis/${crd.spec.group}/${version}/${crd.spec.names.plural}?limit=1`;
      await waitFor(`CRD ${name} served`, deadline, async () => (await httpGet(url, tls)).status === 200);
    }),
  );
}

// ------------------------------------------------------------------------------------------------
// start

export async function startEnvtest(opts: EnvtestOptions = {}): Promise<Envtest> {
  const started = Date.now();
  const etcdBin = requireTool('etcd');
  const apiserverBin = requireTool('kube-apiserver');
  const kwokBin = opts.kwok ? requireTool('kwok') : undefined;
  requireTool('openssl');
  installExitHook();

  const dir = mkdtempSync(join(tmpdir(), 'capflow-envtest-'));
  const inst = { procs: [] as Proc[], dir };
  live.add(inst);
  const logs = {
    etcd: join(dir, 'etcd.log'),
    'kube-apiserver': join(dir, 'kube-apiserver.log'),
    kwok: join(dir, 'kwok.log'),
  };
  const logTail = (c: keyof typeof logs, lines = 30): string => tail(logs[c], lines);

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // reverse start order: kwok, kube-apiserver, etcd
    for (const p of [...inst.procs].reverse()) await stopProc(p);
    live.delete(inst);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const [etcdClientPort, etcdPeerPort, securePort] = (await freePorts(3)) as [number, number, number];
    const pki = await makePki(dir, opts.pki, opts.kubeletClient);

    const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
    const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    const etcd = startProc(
      'etcd',
      etcdBin,
      [
        '--name=testbed',
        `--data-dir=${join(dir, 'etcd-data')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=testbed=${peerUrl}`,
        '--initial-cluster-state=new',
        '--unsafe-no-fsync=true',
        // the full Argo CRDs are a few MB; etcd's default request limit is 1.5 MiB
        '--max-request-bytes=10485760',
        '--log-level=warn',
      ],
      logs.etcd,
    );
    inst.procs.push(etcd);

    const deadline = started + (opts.startTimeoutMs ?? 90_000);
    const exitedMsg = (p: Proc, log: keyof typeof logs) => (): string | undefined =>
      p.exited ? `${p.name} exited (code ${p.child.exitCode}):\n${logTail(log)}` : undefined;
    await waitFor(
      'etcd /health',
      deadline,
      async () => (await httpGet(`${etcdUrl}/health`)).status === 200,
      exitedMsg(etcd, 'etcd'),
      () => logTail('etcd'),
    );

    const server = `https://127.0.0.1:${securePort}`;
    const apiserver = startProc(
      'kube-apiserver',
      apiserverBin,
      [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${securePort}`,
        `--cert-dir=${dir}`,
        `--tls-cert-file=${pki.serverCert}`,
        `--tls-private-key-file=${pki.serverKey}`,
        `--client-ca-file=${pki.caCert}`,
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${pki.saPub}`,
        `--service-account-signing-key-file=${pki.saKey}`,
        // an allocation range for Service IPs only: nothing is routed there
        '--service-cluster-ip-range=10.96.0.0/16',
        '--authorization-mode=RBAC',
        '--allow-privileged=true',
        // no controller-manager here: no default ServiceAccount gets created, so do not require one
        '--disable-admission-plugins=ServiceAccount',
        '--profiling=false',
        '--v=1',
        ...(pki.kubeletClientCert && pki.kubeletClientKey
          ? [
              `--kubelet-client-certificate=${pki.kubeletClientCert}`,
              `--kubelet-client-key=${pki.kubeletClientKey}`,
              '--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname',
            ]
          : []),
        ...(opts.apiserverArgs ?? []),
      ],
      logs['kube-apiserver'],
    );
    inst.procs.push(apiserver);

    const tls = { ca: readFileSync(pki.caCert), cert: readFileSync(pki.adminCert), key: readFileSync(pki.adminKey) };
    let last = '';
    await waitFor(
      'kube-apiserver /readyz',
      deadline,
      async () => {
        const r = await httpGet(`${server}/readyz`, tls);
        last = `last /readyz: ${r.status} ${r.body.slice(0, 300)}`;
        return r.status === 200;
      },
      () => exitedMsg(apiserver, 'kube-apiserver')() ?? exitedMsg(etcd, 'etcd')(),
      () => `${last}\n${logTail('kube-apiserver')}`,
    );

    const kubeconfig = kubeconfigYaml(server, pki);
    const kubeconfigPath = join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfig, { mode: 0o600 });
    const makeKubeConfig = (): KubeConfig => {
      const kc = new KubeConfig();
      kc.loadFromString(kubeconfig);
      return kc;
    };

    if (opts.crds && opts.crds.length > 0) {
      await installCrds(makeKubeConfig(), opts.crds, Math.max(30_000, deadline - Date.now()));
    }

    if (kwokBin) {
      const kwok = startProc(
        'kwok',
        kwokBin,
        [
          `--kubeconfig=${kubeconfigPath}`,
          `--config=${KWOK_STAGES}`,
          '--manage-all-nodes=true',
          // Only strings written into Node status; kwok serves nothing (no --server-address, node port 0).
          '--node-ip=127.0.0.1',
          '--node-port=0',
          '--server-address=',
          '--v=INFO',
        ],
        logs.kwok,
      );
      inst.procs.push(kwok);
      // kwok has no readiness endpoint when it serves nothing; make sure it did not die on startup.
      await sleep(300);
      const dead = exitedMsg(kwok, 'kwok')();
      if (dead) throw new Error(dead);
    }

    return {
      server,
      kubeconfigPath,
      kubeconfig,
      dir,
      caCert: readFileSync(pki.caCert, 'utf8'),
      caCertPath: pki.caCert,
      caKeyPath: pki.caKey,
      ...(pki.kubeletClientCert ? { kubeletClientCertPath: pki.kubeletClientCert, kubeletClientKeyPath: pki.kubeletClientKey } : {}),
      startupMs: Date.now() - started,
      makeKubeConfig,
      logTail,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
