/**
 * The kubelet stand-in's HTTPS server (the kubelet's `port`, 10250 by default, on the node's IP):
 * what the API server calls for `kubectl logs` (--kubelet-client-certificate, the node's InternalIP,
 * status.daemonEndpoints.kubeletEndpoint.Port).
 *
 * - GET /healthz: `ok`.
 * - GET /containerLogs/{namespace}/{pod}/{container}: the container's log. tailLines (the last n
 *   lines), limitBytes (the first n bytes of what is left), previous (the run before, process pods
 *   only) and stream=All are served; follow, timestamps, sinceSeconds, sinceTime and
 *   stream=Stdout|Stderr are refused with 400: the stand-in keeps one file of both streams without
 *   times and does not stream it.
 *
 * Serving certificate: tlsCertFile/tlsPrivateKeyFile of the configuration, else what the kubelet
 * makes when it has none: <cert-dir>/kubelet.crt and kubelet.key, self-signed (a CA
 * `<node>-ca@<unix time>` signs `<node>@<unix time>`), made once and kept. kubeadm's API server does
 * not verify it (no --kubelet-certificate-authority).
 *
 * Authentication as kubeadm configures it (x509 client CA, anonymous off): a client certificate for
 * client auth signed by authentication.x509.clientCAFile, else 401. Bearer tokens (webhook
 * authentication) and webhook authorization (SubjectAccessReview of nodes/proxy) are not done: any
 * client the cluster CA vouches for may read the logs.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { type Server, createServer } from 'node:https';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { makeSelfSignedCa, signServingCertificate } from '../../bootstrap/certificates.js';
import type { KubeletLog } from './kubelet-log.js';

/** A log file to serve (undefined or missing: empty), or the kubelet's error answer. */
export type ContainerLogAnswer = { file: string | undefined } | { status: number; message: string };

export interface ContainerLogRequest {
  namespace: string;
  pod: string;
  container: string;
  previous: boolean;
}

export interface KubeletServerOptions {
  nodeName: string;
  /** The address served (the node's IP unless the configuration's `address` says otherwise). */
  address: string;
  port: number;
  /** --cert-dir, where kubelet.crt and kubelet.key are made. */
  certDir: string;
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
  /** authentication.x509.clientCAFile; without it every request is 401. */
  clientCAFile?: string;
  containerLog(req: ContainerLogRequest): ContainerLogAnswer;
  /** Between tries to listen. */
  retryMs: number;
  log: KubeletLog;
}

const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';
const ANY_EKU_OID = '2.5.29.37.0';
/** The kubelet's self-signed certificate lasts a year. */
const SELF_SIGNED_DAYS = 365;

export class KubeletServer {
  private server: Server | undefined;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private starting: Promise<void> | undefined;

  constructor(private readonly opts: KubeletServerOptions) {}

  /** https://address:port once it serves. */
  url(): string | undefined {
    const a = this.server?.address();
    if (!a || typeof a === 'string') return undefined;
    return `https://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  }

  /** Makes or loads the serving certificate and listens, trying again while the port is taken. */
  start(): void {
    this.starting = this.listen().catch((err: unknown) => {
      this.opts.log('Kubelet server failed to start; retrying', { address: this.opts.address, port: this.opts.port, error: (err as Error).message });
      if (!this.stopped) this.retryTimer = setTimeout(() => this.start(), Math.max(this.opts.retryMs, 1000));
    });
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.starting;
    const s = this.server;
    this.server = undefined;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }

  private async listen(): Promise<void> {
    const { opts } = this;
    const pair = await servingPair(opts);
    const clientCa = opts.clientCAFile ? readFileSync(opts.clientCAFile, 'utf8') : undefined;
    if (!clientCa) opts.log('No authentication.x509.clientCAFile: the kubelet server answers 401 to every request');
    if (this.stopped) return;
    const server = createServer(
      { cert: pair.cert, key: pair.key, ...(clientCa ? { ca: clientCa, requestCert: true, rejectUnauthorized: false } : {}) },
      (req, res) => this.handle(req, res, clientCa !== undefined),
    );
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.address, () => {
        server.off('error', reject);
        resolveListen();
      });
    });
    server.on('error', (err) => opts.log('Kubelet server error', { error: err.message }));
    if (this.stopped) {
      await new Promise<void>((r) => server.close(() => r()));
      return;
    }
    this.server = server;
    opts.log('Serving the kubelet API', { url: this.url(), clientCA: opts.clientCAFile });
  }

  private handle(req: IncomingMessage, res: ServerResponse, hasClientCa: boolean): void {
    const reply = (status: number, body: string): void => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(body);
    };
    if (!hasClientCa || !authenticated(req.socket as TLSSocket)) return reply(401, 'Unauthorized\n');
    const url = new URL(req.url ?? '/', 'https://kubelet');
    if (url.pathname === '/healthz') return req.method === 'GET' ? reply(200, 'ok') : reply(405, 'Method Not Allowed\n');
    const segments = url.pathname.split('/').slice(1);
    if (segments[0] !== 'containerLogs') return reply(404, '404 page not found\n');
    if (req.method !== 'GET') return reply(405, 'Method Not Allowed\n');
    if (segments.length !== 4 || segments.some((s) => s === '')) return reply(400, 'expected /containerLogs/{namespace}/{pod}/{container}\n');
    let namespace: string, pod: string, container: string;
    try {
      [namespace, pod, container] = segments.slice(1).map(decodeURIComponent) as [string, string, string];
    } catch {
      return reply(400, 'malformed path\n');
    }
    const q = url.searchParams;
    const refused = ['follow', 'timestamps'].find((k) => q.get(k) === 'true') ?? ['sinceSeconds', 'sinceTime'].find((k) => q.has(k));
    if (refused) return reply(400, `${refused} is not supported by the kubelet stand-in: it keeps the log without times and does not stream it\n`);
    const stream = q.get('stream');
    if (stream && stream !== 'All') return reply(400, `stream=${stream} is not supported by the kubelet stand-in: it keeps stdout and stderr together\n`);
    const tailLines = intParam(q, 'tailLines', 0);
    const limitBytes = intParam(q, 'limitBytes', 1);
    if (tailLines === null || limitBytes === null) return reply(400, 'tailLines must be an integer >= 0 and limitBytes one >= 1\n');

    const answer = this.opts.containerLog({ namespace, pod, container, previous: q.get('previous') === 'true' });
    if ('status' in answer) return reply(answer.status, `${answer.message}\n`);
    let data: Buffer;
    try {
      data = answer.file ? readFileSync(answer.file) : Buffer.alloc(0);
    } catch {
      data = Buffer.alloc(0); // not written yet
    }
    if (tailLines !== undefined) data = lastLines(data, tailLines);
    if (limitBytes !== undefined) data = data.subarray(0, limitBytes);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(data);
  }
}

/** A client certificate the client CA signed, meant for client authentication. */
function authenticated(socket: TLSSocket): boolean {
  if (!socket.authorized) return false;
  const peer = socket.getPeerCertificate();
  if (!peer?.raw) return false;
  const eku = peer.ext_key_usage;
  return !eku || eku.includes(CLIENT_AUTH_OID) || eku.includes(ANY_EKU_OID);
}

/** Undefined when absent, null when not an integer of at least `min`. */
function intParam(q: URLSearchParams, name: string, min: number): number | undefined | null {
  const v = q.get(name);
  if (v === null) return undefined;
  return /^-?\d+$/.test(v) && Number(v) >= min ? Number(v) : null;
}

/** The last n lines (a last line without its newline counts). */
function lastLines(data: Buffer, n: number): Buffer {
  if (n === 0) return Buffer.alloc(0);
  let end = data.length;
  if (end > 0 && data[end - 1] === 0x0a) end -= 1; // the last line's own newline
  let start = end;
  for (let found = 0; start > 0; start--) {
    if (data[start - 1] === 0x0a && ++found === n) break;
  }
  return data.subarray(start);
}

/** The configured pair, else kubelet.crt/kubelet.key in the cert dir, made self-signed when missing or unreadable. */
async function servingPair(opts: KubeletServerOptions): Promise<{ cert: string; key: string }> {
  if (opts.tlsCertFile && opts.tlsPrivateKeyFile) {
    return { cert: readFileSync(opts.tlsCertFile, 'utf8'), key: readFileSync(opts.tlsPrivateKeyFile, 'utf8') };
  }
  const certFile = join(opts.certDir, 'kubelet.crt');
  const keyFile = join(opts.certDir, 'kubelet.key');
  try {
    const cert = readFileSync(certFile, 'utf8');
    const key = readFileSync(keyFile, 'utf8');
    if (new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) return { cert, key };
  } catch {
    /* made below */
  }
  const stamp = Math.floor(Date.now() / 1000);
  const now = new Date();
  const ca = await makeSelfSignedCa(`${opts.nodeName}-ca@${stamp}`, now, SELF_SIGNED_DAYS);
  const leaf = await signServingCertificate(ca, {
    commonName: `${opts.nodeName}@${stamp}`,
    ...(isIP(opts.nodeName) ? { ips: [opts.nodeName] } : { dnsNames: [opts.nodeName] }),
    now,
  });
  const cert = `${leaf.certPem.trim()}\n${ca.certPem.trim()}\n`;
  mkdirSync(opts.certDir, { recursive: true, mode: 0o755 });
  writeFileSync(certFile, cert, { mode: 0o644 });
  writeFileSync(keyFile, leaf.keyPem, { mode: 0o600 });
  opts.log('Generated a self-signed serving certificate', { cert: certFile, key: keyFile });
  return { cert, key: leaf.keyPem };
}
