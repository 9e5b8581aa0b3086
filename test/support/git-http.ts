/**
 * A Git server over HTTP on a loopback port: Node's http server running the real `git http-backend`
 * as a CGI program, behind Basic authentication, serving the bare repositories under one directory.
 *
 *   const repo = await createGitRemote();
 *   const server = await startGitHttpServer({ projectRoot: dirname(repo.url), username: 'x-access-token', token: 's3cret' });
 *   // git clone http://127.0.0.1:<port>/remote.git (with the token as password)
 *   await server.stop();
 *
 * Plain http (loopback only). Every request is recorded with the user it authenticated as (the
 * password is never recorded), so tests can assert what the client sent.
 */
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { LOOPBACK } from './ports.js';

export interface GitHttpServerOptions {
  /** Directory holding the bare repositories (`<projectRoot>/remote.git` is served as `/remote.git`). */
  projectRoot: string;
  /** Basic auth user; any user name is accepted when undefined. */
  username?: string;
  /** Basic auth password (the token). Without it the server needs no authentication. */
  token?: string;
}

export interface GitHttpRequest {
  method: string;
  path: string;
  /** 401 when refused for missing or wrong credentials. */
  status: number;
  /** The user the request authenticated as, or that it tried (never the password). */
  user: string | undefined;
  /** True when the request carried credentials at all. */
  hadCredentials: boolean;
}

export interface GitHttpServer {
  host: '127.0.0.1';
  port: number;
  /** `http://127.0.0.1:<port>`. */
  baseUrl: string;
  /** The clone URL of a repository below projectRoot: `url('remote.git')`. */
  url(repo: string): string;
  requests: GitHttpRequest[];
  stop(): Promise<void>;
}

const HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';

export async function startGitHttpServer(opts: GitHttpServerOptions): Promise<GitHttpServer> {
  const requests: GitHttpRequest[] = [];

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const auth = req.headers.authorization;
    let user: string | undefined;
    let password: string | undefined;
    if (auth?.startsWith('Basic ')) {
      const decoded = Buffer.from(auth.slice(6), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      user = colon < 0 ? decoded : decoded.slice(0, colon);
      password = colon < 0 ? '' : decoded.slice(colon + 1);
    }
    const record: GitHttpRequest = { method: req.method ?? 'GET', path: url.pathname, status: 0, user, hadCredentials: auth !== undefined };
    requests.push(record);
    if (opts.token !== undefined) {
      const ok = password === opts.token && (opts.username === undefined || user === opts.username);
      if (!ok) {
        record.status = 401;
        req.resume();
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="capflow test git"', 'Content-Type': 'text/plain' });
        res.end('authentication required\n');
        return;
      }
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: opts.projectRoot,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ''),
      REMOTE_ADDR: req.socket.remoteAddress ?? LOOPBACK,
      ...(user !== undefined ? { REMOTE_USER: user } : {}),
      ...(req.headers['content-type'] ? { CONTENT_TYPE: req.headers['content-type'] } : {}),
      ...(req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
      ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: String(req.headers['content-encoding']) } : {}),
      ...(req.headers['git-protocol'] ? { HTTP_GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
    };
    const cgi = spawn(HTTP_BACKEND, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    req.pipe(cgi.stdin);
    cgi.stdin.on('error', () => undefined);
    let head = Buffer.alloc(0);
    let headersDone = false;
    let stderr = '';
    cgi.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      const endLf = end < 0 ? head.indexOf('\n\n') : -1;
      if (end < 0 && endLf < 0) return;
      const cut = end >= 0 ? end : endLf;
      const sepLen = end >= 0 ? 4 : 2;
      const headerText = head.subarray(0, cut).toString('latin1');
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of headerText.split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i < 0) continue;
        const name = line.slice(0, i).trim();
        const value = line.slice(i + 1).trim();
        if (name.toLowerCase() === 'status') status = parseInt(value, 10) || 200;
        else headers[name] = value;
      }
      record.status = status;
      headersDone = true;
      res.writeHead(status, headers);
      const rest = head.subarray(cut + sepLen);
      if (rest.length > 0) res.write(rest);
    });
    cgi.on('close', (code) => {
      if (!headersDone) {
        record.status = 500;
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(`git http-backend exited ${code}: ${stderr}\n`);
        return;
      }
      res.end();
    });
  };

  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('git http server: no address');
  const baseUrl = `http://${LOOPBACK}:${addr.port}`;
  let stopped = false;
  return {
    host: LOOPBACK,
    port: addr.port,
    baseUrl,
    url: (repo: string) => `${baseUrl}/${repo.replace(/^\/+/, '')}`,
    requests,
    async stop() {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
