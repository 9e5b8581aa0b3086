/**
 * The kubelet stand-in of an emulated machine: `main(argv)` is what the machine's `kubelet` binary
 * does, runKubelet the library under it.
 *
 * 1. /healthz answers `ok` at once (kubeadm's kubelet-check polls it), moving to healthzBindAddress
 *    and healthzPort of the KubeletConfiguration once that is read (default 127.0.0.1:10248).
 * 2. It waits for /var/lib/kubelet/config.yaml (kubeadm's kubelet-start phase writes it, then
 *    kubeadm-flags.env) and reads the flags as kubeadm's systemd drop-in passes them: the command
 *    line, then KUBELET_KUBEADM_ARGS, then KUBELET_EXTRA_ARGS, the last value of a flag winning.
 * 3. It runs the static pods (static-pods.ts), the API side (node-api.ts: the Node, mirror pods, and
 *    the pods bound to the node, of which run-to-completion host-network ones, and host-network
 *    ones' init containers, run as processes: process-pods.ts) and the kubelet's HTTPS server (kubelet-server.ts: /healthz and
 *    /containerLogs for `kubectl logs`, on the configuration's `port`, default 10250, at the node's
 *    IP or its `address`) until stopped.
 *
 * Every path hangs off `root` (default /): inside a machine the paths are the real ones; tests give
 * a temporary directory.
 */
import { existsSync, readFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import { hostname as osHostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { KubeletLog } from './kubelet-log.js';
import { type ContainerLogAnswer, type ContainerLogRequest, KubeletServer } from './kubelet-server.js';
import { NodeApi, type NodeApiPaths } from './node-api.js';
import { StaticPodRunner, type StaticPodStatus, staticPodLogFile } from './static-pods.js';
import { KUBELET_SERVICE } from '../machine-config.js';

export const DEFAULT_KUBELET_VERSION = 'v1.34.4';
const DEFAULT_HEALTHZ = { address: '127.0.0.1', port: 10248 };
const DEFAULT_KUBELET_PORT = 10250;

export interface KubeletPaths extends NodeApiPaths {
  /** /var/lib/kubelet/config.yaml (--config) */
  configFile: string;
  /** /var/lib/kubelet/kubeadm-flags.env */
  kubeadmFlagsFile: string;
  /** /etc/default/kubelet */
  extraArgsFile: string;
  /** /var/log/pods */
  podLogDir: string;
  /** Overrides the configuration's staticPodPath (which is otherwise taken under root). */
  staticPodDir?: string;
}

export interface KubeletTiming {
  /** Static pod directory polling. Default 1000. */
  manifestPollMs?: number;
  /** Crash backoff. Defaults 10 000 and 300 000, the kubelet's. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Node status at least this often. Default 10 000. */
  statusIntervalMs?: number;
  /** Default 10 000. */
  leaseRenewIntervalMs?: number;
  /** API retries and file checks. Default 1000. */
  retryIntervalMs?: number;
  /** How long to wait for kubeadm-flags.env once config.yaml exists (kubeadm writes it just after). Default 2000. */
  flagsSettleMs?: number;
}

export interface KubeletOptions {
  /** What `--version` prints and the Node reports. Default v1.34.4. */
  version?: string;
  /** Prefix of every default path. Default /. */
  root?: string;
  paths?: Partial<KubeletPaths>;
  /** The command line's flags (`--name=value` or `--name value`). */
  args?: string[];
  /** Default: --hostname-override, else the host name. */
  nodeName?: string;
  /** Default: --node-ip, else the first non-loopback IPv4 address. */
  nodeIp?: string;
  /** Searched before PATH for static pods' and process pods' commands (kube-apiserver, etcd, etcdctl, ...). */
  binDirs?: string[];
  /** Overrides the configuration's healthzPort (0 turns /healthz off). */
  healthzPort?: number;
  timing?: KubeletTiming;
  /** Receives timestamped lines. Default: stderr. */
  log?: (line: string) => void;
}

export interface RunningKubelet {
  /** http://address:port/healthz, where the stand-in answers now. */
  healthzUrl(): string | undefined;
  /** https://address:port of the kubelet server, once it serves. */
  serverUrl(): string | undefined;
  /** Known once the flags are read. */
  nodeName(): string | undefined;
  staticPods(): StaticPodStatus[];
  /** Stops the API side and every static pod process (with their grace periods, or `podGraceSeconds`). Safe to call twice. */
  stop(podGraceSeconds?: number): Promise<void>;
}

/** While this file exists (root-relative) the stand-in stops renewing its Node's status and Lease (NodeApiPaths.stopReportingFile). */
export const KUBELET_STOP_REPORTING_FILE = '/var/lib/kubelet/capflow-stop-reporting';

/** The root-relative default paths, with overrides. */
export function kubeletPaths(root = '/', overrides: Partial<KubeletPaths> = {}): KubeletPaths {
  const at = (p: string): string => join(root, p);
  return {
    kubeletConf: at('/etc/kubernetes/kubelet.conf'),
    bootstrapKubeletConf: at('/etc/kubernetes/bootstrap-kubelet.conf'),
    pkiDir: at('/var/lib/kubelet/pki'),
    cniConfDir: at('/etc/cni/net.d'),
    osRelease: at('/etc/os-release'),
    stopReportingFile: at(KUBELET_STOP_REPORTING_FILE),
    configFile: at('/var/lib/kubelet/config.yaml'),
    kubeadmFlagsFile: at('/var/lib/kubelet/kubeadm-flags.env'),
    extraArgsFile: at('/etc/default/kubelet'),
    podLogDir: at('/var/log/pods'),
    ...overrides,
  };
}

const STOP_REQUEST_GRACE_SECONDS = 1;

/** Whether the machine's systemctl stand-in asked the kubelet service to stop (machine-config.ts). */
function stopRequested(): boolean {
  try {
    return readFileSync(KUBELET_SERVICE.requestFile, 'utf8').trim() === 'stop';
  } catch {
    return false;
  }
}

/**
 * The `kubelet` binary: `--version`, else run until SIGTERM or SIGINT. Resolves to the exit code.
 * CAPFLOW_KUBELET_HEARTBEAT_SECONDS (set by the machine agent for tests) shortens the node status
 * and lease intervals.
 */
export async function main(argv: string[], overrides: Partial<KubeletOptions> = {}, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const version = overrides.version ?? DEFAULT_KUBELET_VERSION;
  const flags = parseFlags(argv);
  if (flags.has('version') && flags.get('version') !== 'false') {
    process.stdout.write(`Kubernetes ${version}\n`); // kubeadm's preflight parses exactly this line
    return 0;
  }
  const heartbeatSeconds = Number(env.CAPFLOW_KUBELET_HEARTBEAT_SECONDS);
  const heartbeat = heartbeatSeconds > 0 ? { statusIntervalMs: heartbeatSeconds * 1000, leaseRenewIntervalMs: heartbeatSeconds * 1000 } : {};
  const kubelet = await runKubelet({ ...overrides, version, args: argv, timing: { ...heartbeat, ...overrides.timing } });
  await new Promise<void>((resolveSignal) => {
    const onSignal = (): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolveSignal();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  // Stopped by `systemctl stop kubelet` (kubeadm reset, which then removes the containers at once):
  // the pods go with a short grace, not each its own; any other stop keeps their grace periods.
  await kubelet.stop(stopRequested() ? STOP_REQUEST_GRACE_SECONDS : undefined);
  return 0;
}

/** Starts the stand-in; it keeps running (waiting for its files as it goes) until stop(). */
export async function runKubelet(opts: KubeletOptions = {}): Promise<RunningKubelet> {
  const version = opts.version ?? DEFAULT_KUBELET_VERSION;
  const root = opts.root ?? '/';
  const log = lineLogger(opts.log ?? ((line) => process.stderr.write(`${line}\n`)));
  const timing = opts.timing ?? {};
  const retryMs = timing.retryIntervalMs ?? 1000;
  const cli = parseFlags(opts.args ?? []);
  const underRoot = (p: string | undefined): string | undefined => (p ? join(root, p) : undefined);
  const paths = kubeletPaths(root, {
    ...definedOnly({
      kubeletConf: underRoot(cli.get('kubeconfig')),
      bootstrapKubeletConf: underRoot(cli.get('bootstrap-kubeconfig')),
      configFile: underRoot(cli.get('config')),
      pkiDir: underRoot(cli.get('cert-dir')),
    }),
    ...opts.paths,
  });

  let stopped = false;
  let runner: StaticPodRunner | undefined;
  let nodeApi: NodeApi | undefined;
  let server: KubeletServer | undefined;
  let nodeName: string | undefined;
  const healthz = new HealthzServer(log);
  const serveHealthz = (config: KubeletConfiguration | undefined): Promise<void> =>
    healthz
      .listen(config?.healthzBindAddress ?? DEFAULT_HEALTHZ.address, opts.healthzPort ?? config?.healthzPort ?? DEFAULT_HEALTHZ.port)
      .catch((err: unknown) => log('Cannot serve healthz', { error: (err as Error).message }));
  await serveHealthz(readKubeletConfiguration(paths.configFile));

  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());
  const startup = (async (): Promise<void> => {
    log('Starting kubelet stand-in', { version, root });
    let config: KubeletConfiguration | undefined;
    let logged = false;
    // kubeadm writes the file in place: one that does not parse yet is read again
    while (!stopped && (config = readKubeletConfiguration(paths.configFile)) === undefined) {
      if (!logged) log('Waiting for the kubelet configuration', { path: paths.configFile });
      logged = true;
      await sleep(retryMs);
    }
    const settleUntil = Date.now() + (timing.flagsSettleMs ?? 2000);
    while (!stopped && !existsSync(paths.kubeadmFlagsFile) && Date.now() < settleUntil) await sleep(100);
    if (stopped || !config) return;

    const flags = mergeFlags(cli, readFlagsFile(paths.kubeadmFlagsFile, 'KUBELET_KUBEADM_ARGS'), readFlagsFile(paths.extraArgsFile, 'KUBELET_EXTRA_ARGS'));
    nodeName = (flags.get('hostname-override') || opts.nodeName || osHostname()).trim().toLowerCase();
    const node = nodeName;
    const nodeIp = opts.nodeIp ?? firstIPv4();
    await serveHealthz(config);

    // the API server reaches the kubelet at the node's InternalIP (--node-ip first) and this port
    const kubeletPort = config.port ?? DEFAULT_KUBELET_PORT;
    const containerLog = (req: ContainerLogRequest): ContainerLogAnswer => {
      const s = runner?.status().find((p) => p.namespace === req.namespace && `${p.name}-${node}` === req.pod);
      if (s) {
        if (req.container !== s.containerName) return { status: 404, message: `container "${req.container}" not found in pod "${req.pod}"` };
        if (req.previous) return { status: 400, message: 'previous is not supported for static pods by the kubelet stand-in: their runs share one log file' };
        return { file: staticPodLogFile(paths.podLogDir, s.namespace, s.name, s.containerName) };
      }
      return nodeApi?.containerLog(req.namespace, req.pod, req.container, req.previous) ?? { status: 404, message: `pod "${req.pod}" does not exist` };
    };
    if (kubeletPort !== 0) {
      server = new KubeletServer({
        nodeName,
        address: config.address ?? ((flags.get('node-ip') ?? '').split(',')[0]?.trim() || nodeIp),
        port: kubeletPort,
        certDir: paths.pkiDir,
        tlsCertFile: underRoot(config.tlsCertFile),
        tlsPrivateKeyFile: underRoot(config.tlsPrivateKeyFile),
        clientCAFile: underRoot(config.clientCAFile),
        containerLog,
        retryMs,
        log,
      });
      server.start();
    }

    const manifestDir = paths.staticPodDir ?? join(root, config.staticPodPath ?? '/etc/kubernetes/manifests');
    runner = new StaticPodRunner({
      manifestDir,
      logDir: paths.podLogDir,
      binDirs: opts.binDirs,
      hostname: nodeName,
      pollIntervalMs: timing.manifestPollMs,
      backoffBaseMs: timing.backoffBaseMs,
      backoffMaxMs: timing.backoffMaxMs,
      log,
    });
    log('Running static pods', { staticPodPath: manifestDir, node: nodeName });
    runner.start();

    const api = new NodeApi({
      nodeName,
      nodeIp,
      version,
      paths,
      flags,
      maxPods: config.maxPods,
      nodeLeaseDurationSeconds: config.nodeLeaseDurationSeconds,
      staticPods: () => runner?.status() ?? [],
      processPods: {
        binDirs: opts.binDirs ?? [],
        logDir: paths.podLogDir,
        hostname: nodeName,
        backoffBaseMs: timing.backoffBaseMs,
        backoffMaxMs: timing.backoffMaxMs,
      },
      kubeletPort,
      statusIntervalMs: timing.statusIntervalMs,
      leaseRenewIntervalMs: timing.leaseRenewIntervalMs,
      retryIntervalMs: retryMs,
      log,
    });
    nodeApi = api;
    runner.onChange(() => api.staticPodsChanged());
    api.start();
  })().catch((err: unknown) => log('Kubelet stand-in failed to start', { error: (err as Error).message }));

  return {
    healthzUrl: () => healthz.url(),
    serverUrl: () => server?.url(),
    nodeName: () => nodeName,
    staticPods: () => runner?.status() ?? [],
    stop: async (podGraceSeconds?: number) => {
      if (stopped) return;
      stopped = true;
      log('Stopping kubelet stand-in');
      await startup;
      await nodeApi?.stop();
      await runner?.stop(podGraceSeconds);
      await server?.close();
      await healthz.close();
    },
  };
}

// --------------------------------------------------------------------------------------------------
// configuration and flags

interface KubeletConfiguration {
  staticPodPath?: string;
  healthzPort?: number;
  healthzBindAddress?: string;
  maxPods?: number;
  nodeLeaseDurationSeconds?: number;
  /** The kubelet server's port (default 10250) and address (default: the node's IP here). */
  port?: number;
  address?: string;
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
  /** authentication.x509.clientCAFile */
  clientCAFile?: string;
}

/** The fields the stand-in uses; undefined while the file is missing or does not parse. */
function readKubeletConfiguration(path: string): KubeletConfiguration | undefined {
  let doc: Record<string, unknown> | null;
  try {
    doc = parseYaml(readFileSync(path, 'utf8')) as Record<string, unknown> | null;
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null) return undefined;
  const str = (k: string): string | undefined => {
    const v = doc?.[k];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const num = (k: string): number | undefined => {
    const v = doc?.[k];
    return typeof v === 'number' ? v : undefined;
  };
  return {
    staticPodPath: str('staticPodPath'),
    healthzPort: num('healthzPort'),
    healthzBindAddress: str('healthzBindAddress'),
    maxPods: num('maxPods'),
    nodeLeaseDurationSeconds: num('nodeLeaseDurationSeconds'),
    port: num('port'),
    address: str('address'),
    tlsCertFile: str('tlsCertFile'),
    tlsPrivateKeyFile: str('tlsPrivateKeyFile'),
    clientCAFile: x509ClientCaFile(doc),
  };
}

function x509ClientCaFile(doc: Record<string, unknown>): string | undefined {
  const authn = doc.authentication as { x509?: { clientCAFile?: unknown } } | undefined;
  const file = authn?.x509?.clientCAFile;
  return typeof file === 'string' && file !== '' ? file : undefined;
}

/** The kubelet's map-valued flags: repeats add up (later keys winning) instead of replacing. */
const MAP_FLAGS = new Set(['node-labels']);

function setFlag(flags: Map<string, string>, name: string, value: string): void {
  const before = flags.get(name);
  flags.set(name, MAP_FLAGS.has(name) && before ? `${before},${value}` : value);
}

/** `--name=value`, `--name value` and `--bool` flags by name; the last one of a name wins. */
export function parseFlags(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const m = /^--?([^=\s]+)(?:=(.*))?$/s.exec(args[i]!);
    if (!m) continue; // a stray word
    if (m[2] !== undefined) setFlag(out, m[1]!, m[2]);
    else if (i + 1 < args.length && !args[i + 1]!.startsWith('-')) setFlag(out, m[1]!, args[++i]!);
    else setFlag(out, m[1]!, 'true');
  }
  return out;
}

/** Flag sets in the order the command line sees them. */
export function mergeFlags(...sets: Array<ReadonlyMap<string, string>>): Map<string, string> {
  const out = new Map<string, string>();
  for (const set of sets) for (const [name, value] of set) setFlag(out, name, value);
  return out;
}

/**
 * The flags in an environment file's variable, split as systemd splits an unquoted `$VAR` in
 * ExecStart: the value's quotes removed, then words on whitespace. A missing file has none.
 */
export function readFlagsFile(path: string, variable: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return new Map();
  }
  let value = '';
  for (const line of text.split('\n')) {
    const m = new RegExp(`^\\s*(?:export\\s+)?${variable}=(.*)$`).exec(line);
    if (m) value = unquote(m[1]!.trim());
  }
  return parseFlags(value.split(/\s+/).filter(Boolean));
}

function unquote(v: string): string {
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) return v.slice(1, -1).replace(/\\(["\\$`])/g, '$1');
  if (v.length >= 2 && v.startsWith("'") && v.endsWith("'")) return v.slice(1, -1);
  return v;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** What the kubelet picks without --node-ip: an address of the host (the machine's interface). */
function firstIPv4(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    const a = addrs?.find((x) => x.family === 'IPv4' && !x.internal);
    if (a) return a.address;
  }
  return '127.0.0.1';
}

// --------------------------------------------------------------------------------------------------
// healthz and logging

class HealthzServer {
  private server: Server | undefined;
  private where: { address: string; port: number } | undefined;

  constructor(private readonly log: KubeletLog) {}

  url(): string | undefined {
    return this.where ? `http://${this.where.address}:${this.where.port}/healthz` : undefined;
  }

  /** Serves on address:port, leaving the old place if there was one; port 0 serves nothing. */
  async listen(address: string, port: number): Promise<void> {
    if (this.where?.address === address && this.where.port === port) return;
    await this.close();
    if (port === 0) return;
    const server = createServer((req, res) => {
      const ok = req.url === '/healthz' || req.url?.startsWith('/healthz?');
      res.writeHead(ok ? 200 : 404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(ok ? 'ok' : '404 page not found\n');
    });
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(port, address, () => resolveListen());
    });
    this.server = server;
    this.where = { address, port };
    this.log('Serving healthz', { url: this.url() });
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    this.where = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}

/** Timestamped lines: `2025-01-02T03:04:05.678Z Message key=value ...`. */
function lineLogger(sink: (line: string) => void): KubeletLog {
  return (message, fields = {}) => {
    const text = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => {
        const s = typeof v === 'string' ? v : JSON.stringify(v);
        return `${k}=${/[\s"]/.test(s) ? JSON.stringify(s) : s}`;
      })
      .join(' ');
    sink(`${new Date().toISOString()} ${message}${text ? ` ${text}` : ''}`);
  };
}
