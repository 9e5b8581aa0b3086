/**
 * The reconciler's HTTP face: probes for the kubelet, /metrics for
 * Prometheus, and the push webhooks of GitHub, GitLab and Gitea. Plain
 * node:http; a delivery is verified before anything else happens, and a
 * refused one is logged with who sent it, never with what it carried.
 */
import http from 'node:http';
import type { Logger } from '../core/logger.js';
import type { PushEvent, ReconcilerMetrics } from './types.js';
import { DeliveryMemory, verifyWebhook, WEBHOOK_PROVIDERS, type WebhookProvider, type WebhookSecrets } from './webhooks.js';

export interface ServerOptions {
  /** Default 0.0.0.0. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  metrics: ReconcilerMetrics;
  healthy: () => boolean;
  ready: () => boolean | { ready: boolean; reason?: string };
  webhookSecrets: WebhookSecrets;
  /** Pushes to other refs are acknowledged and ignored. */
  branch: string;
  onPush: (event: PushEvent) => void;
  log: Logger;
  /** Larger bodies get 413; default 1 MiB (GitHub caps its payloads at 25 MB, pushes are far smaller). */
  maxBodyBytes?: number;
  /** The pushes acted on recently, so a replay is answered and not acted on (default: 1,000 deliveries, 1 h). */
  deliveries?: DeliveryMemory;
}

export interface RunningServer {
  url: string;
  port: number;
  /** Stops accepting connections and waits for requests in flight. */
  close(): Promise<void>;
}

/** After this, close() drops connections still open instead of waiting on. */
const CLOSE_GRACE_MS = 10_000;

interface Route {
  methods: string[];
  handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { metrics, log } = options;
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const watchedRef = `refs/heads/${options.branch}`;
  const deliveries = options.deliveries ?? new DeliveryMemory();
  let closing = false;

  function send(res: http.ServerResponse, status: number, text: string, headers: http.OutgoingHttpHeaders = {}): void {
    // Once closing, keep-alive connections end with their current request.
    if (closing) res.setHeader('connection', 'close');
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers });
    res.end(`${text}\n`);
  }

  async function webhook(provider: WebhookProvider, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readBody(req, maxBodyBytes);
    if (body === undefined) {
      metrics.webhook(provider, 'bad-request');
      log.warn('Webhook refused: body too large', { provider, remote: req.socket.remoteAddress, limit: maxBodyBytes });
      // The rest of the body is drained, not read into memory, so the client sees the answer.
      req.resume();
      send(res, 413, `body larger than ${maxBodyBytes} bytes`, { connection: 'close' });
      return;
    }
    const result = verifyWebhook(provider, body, req.headers, options.webhookSecrets);
    const context = { provider, remote: req.socket.remoteAddress, delivery: result.delivery };
    switch (result.outcome) {
      case 'unauthorized':
        metrics.webhook(provider, 'unauthorized');
        log.warn('Webhook refused: not verified', { ...context, reason: result.reason });
        send(res, 401, 'unauthorized');
        return;
      case 'bad-request':
        metrics.webhook(provider, 'bad-request');
        log.warn('Webhook refused: malformed', { ...context, reason: result.reason });
        send(res, 400, `bad request: ${result.reason}`);
        return;
      case 'ignored':
        metrics.webhook(provider, 'ignored');
        log.debug('Webhook ignored', { ...context, reason: result.reason });
        send(res, 202, `ignored: ${result.reason}`);
        return;
      case 'push': {
        const { event } = result;
        if (event.ref !== watchedRef) {
          const reason = `${event.ref.slice(0, 200)} is not the watched branch ${options.branch}`;
          metrics.webhook(provider, 'ignored');
          log.debug('Webhook ignored', { ...context, reason });
          send(res, 202, `ignored: ${reason}`);
          return;
        }
        // Verified, but sent before (the same delivery id, or the same signed body): answered, not acted on.
        const seenAs = deliveries.check(result.replayKeys);
        if (seenAs !== undefined) {
          metrics.webhook(provider, 'replay');
          log.warn('Webhook replay ignored', { ...context, ref: event.ref, after: event.after, seenBy: seenAs.includes(' body ') ? 'body' : 'delivery id' });
          send(res, 200, 'replay: this delivery was received before; nothing done');
          return;
        }
        options.onPush(event);
        metrics.webhook(provider, 'accepted');
        log.info('Push webhook accepted', { ...context, ref: event.ref, after: event.after });
        send(res, 202, 'accepted');
        return;
      }
    }
  }

  const routes = new Map<string, Route>([
    [
      '/healthz',
      {
        methods: ['GET', 'HEAD'],
        handle: async (_req, res) => (options.healthy() ? send(res, 200, 'ok') : send(res, 503, 'unhealthy')),
      },
    ],
    [
      '/readyz',
      {
        methods: ['GET', 'HEAD'],
        handle: async (_req, res) => {
          const answer = options.ready();
          const { ready, reason } = typeof answer === 'boolean' ? { ready: answer, reason: undefined } : answer;
          if (ready) send(res, 200, 'ready');
          else send(res, 503, `not ready${reason ? `: ${reason}` : ''}`);
        },
      },
    ],
    [
      '/metrics',
      {
        methods: ['GET', 'HEAD'],
        handle: async (_req, res) => {
          const { contentType, body } = await metrics.render();
          if (closing) res.setHeader('connection', 'close');
          res.writeHead(200, { 'content-type': contentType });
          res.end(body);
        },
      },
    ],
    ...WEBHOOK_PROVIDERS.map((provider): [string, Route] => [
      `/webhooks/${provider}`,
      { methods: ['POST'], handle: (req, res) => webhook(provider, req, res) },
    ]),
  ]);

  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://reconciler').pathname;
    const route = routes.get(pathname);
    if (!route) {
      req.resume();
      send(res, 404, 'not found');
      return;
    }
    if (!route.methods.includes(req.method ?? '')) {
      req.resume();
      send(res, 405, 'method not allowed', { allow: route.methods.join(', ') });
      return;
    }
    route.handle(req, res).catch((err: unknown) => {
      log.error('Request failed', { path: pathname, error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) send(res, 500, 'internal error');
      else res.destroy();
    });
  });
  // A slow or stalled client cannot hold a connection for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server address is not a TCP address');
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  log.info('Listening', { url });

  return {
    url,
    port: address.port,
    async close() {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
      try {
        await closed;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** The request body, or undefined once it passes the limit (declared or counted). */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => size <= limit && resolve(Buffer.concat(chunks, size)));
    req.once('error', reject);
  });
}
