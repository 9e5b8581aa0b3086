/**
 * The load balancer stand-in against real sockets on 127.0.0.1: echo servers as targets (each
 * greets with its tag, echoes, and says "bye" only after the client's end arrives), HTTP and HTTPS
 * servers for the checks, a certificate made with openssl at test time.
 */
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, get as httpGet, type RequestListener } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  ListenerProxy,
  healthCheckFromClassicElb,
  healthCheckFromElbv2,
  parseMatcher,
  type HealthCheck,
  type ListenAddress,
  type Target,
} from '../../src/emulator/load-balancer-proxy.js';
import { isCapflowError } from '../../src/core/errors.js';
import { runChildScript } from '../support/child-script.js';
import { freePort } from '../support/ports.js';
import { REPO_ROOT, requireTool, run } from '../support/tools.js';

const HOST = '127.0.0.1';
const FAST: HealthCheck = { protocol: 'TCP', intervalMs: 100, timeoutMs: 100, healthyThreshold: 2, unhealthyThreshold: 2 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
  return Date.now() - started;
}

// ------------------------------------------------------------------------------------------------
// peers, closed after each test

const cleanups: Array<() => Promise<void>> = [];

/** Listens on 127.0.0.1:0; close() also destroys the server's open connections. */
async function listen(server: Server): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return (server.address() as { port: number }).port;
}

async function echoTarget(tag: string): Promise<Target> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.write(`${tag}\n`);
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end('bye'));
  });
  return { id: `i-${tag}`, host: HOST, port: await listen(server) };
}

async function httpTarget(id: string, handler: RequestListener): Promise<Target> {
  return { id, host: HOST, port: await listen(createHttpServer(handler)) };
}

async function startProxy(healthCheck: HealthCheck = FAST, listenOn: ListenAddress[] = [{ host: HOST, port: 0 }]) {
  const lines: string[] = [];
  const proxy = await ListenerProxy.start({ name: 'test-lb:6443', listen: listenOn, healthCheck, log: (l) => lines.push(l) });
  cleanups.push(() => proxy.close());
  const first = proxy.listening()[0]!;
  return { proxy, lines, address: first };
}

const stateOf = (proxy: ListenerProxy, id: string) => proxy.targetHealth().find((h) => h.target.id === id)?.state;
const allHealthy = (proxy: ListenerProxy) => proxy.targetHealth().every((h) => h.state === 'healthy');

interface Answer {
  data: string;
  error?: string;
  ms: number;
}

/** Connects, optionally sends and ends, and collects everything until the connection closes. */
function ask(address: ListenAddress, send?: string): Promise<Answer> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = 'path' in address ? connect(address.path) : connect(address.port, address.host);
    let data = '';
    let error: string | undefined;
    socket.setEncoding('utf8').on('data', (d: string) => (data += d));
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    socket.on('close', () => resolve({ data, ms: Date.now() - started, ...(error ? { error } : {}) }));
    if (send !== undefined) socket.end(send);
  });
}

/** The tag of the target that answered a connection. */
const tagOf = async (address: ListenAddress): Promise<string> => (await ask(address, 'x')).data.split('\n')[0]!;

async function tags(address: ListenAddress, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await tagOf(address));
  return out;
}

async function closePeers(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!();
}

// ------------------------------------------------------------------------------------------------

describe('emulator/load-balancer-proxy: forwarding', function () {
  this.timeout(20_000);
  afterEach(closePeers);

  it('two healthy targets share connections round robin', async () => {
    const [a, b] = [await echoTarget('a'), await echoTarget('b')];
    const { proxy, address } = await startProxy();
    proxy.setTargets([a, b]);
    await until('both healthy', () => allHealthy(proxy));
    const seen = await tags(address, 6);
    expect(seen.filter((t) => t === 'a')).to.have.length(3);
    expect(seen.filter((t) => t === 'b')).to.have.length(3);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).to.not.equal(seen[i - 1]);
  });

  it('a target whose port is closed turns unhealthy and gets no traffic', async () => {
    const a = await echoTarget('a');
    const dead: Target = { id: 'i-dead', host: HOST, port: await freePort() };
    const { proxy, address, lines } = await startProxy();
    proxy.setTargets([a, dead]);
    await until('the dead target unhealthy', () => stateOf(proxy, 'i-dead') === 'unhealthy' && stateOf(proxy, 'i-a') === 'healthy');
    const health = proxy.targetHealth().find((h) => h.target.id === 'i-dead')!;
    expect(health.reason).to.equal('Target.FailedHealthChecks');
    expect(health.description).to.match(/ECONNREFUSED/);
    expect(await tags(address, 6)).to.deep.equal(['a', 'a', 'a', 'a', 'a', 'a']);
    expect(lines.some((l) => l.startsWith('Target unhealthy after 2 failed checks') && l.includes('i-dead'))).to.equal(true);
  });

  it('a newly registered target takes traffic within a second', async () => {
    const [a, b] = [await echoTarget('a'), await echoTarget('b')];
    const { proxy, address } = await startProxy();
    proxy.setTargets([a]);
    await until('a healthy', () => allHealthy(proxy));
    const registered = Date.now();
    proxy.setTargets([a, b]);
    expect(stateOf(proxy, 'i-b')).to.equal('initial');
    expect(stateOf(proxy, 'i-a'), 'a kept its health').to.equal('healthy');
    while ((await tagOf(address)) !== 'b') {
      if (Date.now() - registered > 1000) throw new Error('b got no connection within a second');
    }
    expect(Date.now() - registered).to.be.below(1000);
  });

  it('a deregistered target gets no new connections at once, and its open connection finishes', async () => {
    const [a, b] = [await echoTarget('a'), await echoTarget('b')];
    const { proxy, address } = await startProxy();
    proxy.setTargets([a, b]);
    await until('both healthy', () => allHealthy(proxy));
    // open connections until one lands on b, and keep it open
    let open: Socket | undefined;
    let received = '';
    while (!open) {
      const s = connect((address as { port: number }).port, HOST).setEncoding('utf8');
      const greeting = await new Promise<string>((r) => s.once('data', (d: string) => r(d)));
      if (greeting === 'b\n') open = s;
      else s.destroy();
    }
    open.on('data', (d: string) => (received += d));
    const closed = new Promise<void>((r) => open.on('close', () => r()));

    proxy.setTargets([a]);
    expect(await tags(address, 4)).to.deep.equal(['a', 'a', 'a', 'a']);
    open.end('still here');
    await closed;
    expect(received).to.equal('still herebye');
  });

  it('fails open to every registered target when none is healthy', async () => {
    const [a, b] = [await echoTarget('a'), await echoTarget('b')];
    const { proxy, address, lines } = await startProxy({ ...FAST, port: await freePort() }); // checks hit a closed port
    proxy.setTargets([a, b]);
    await until('both unhealthy', () => proxy.targetHealth().every((h) => h.state === 'unhealthy'));
    expect((await tags(address, 4)).sort()).to.deep.equal(['a', 'a', 'b', 'b']);
    expect(lines.some((l) => l.startsWith('Failing open'))).to.equal(true);
  });

  it('closes a client connection at once when no target is registered', async () => {
    const a = await echoTarget('a');
    const { proxy, address } = await startProxy();
    proxy.setTargets([a]);
    proxy.setTargets([]);
    const answer = await ask(address);
    expect(answer.data).to.equal('');
    expect(answer.ms).to.be.below(500);
    expect(proxy.targetHealth()).to.deep.equal([]);
  });

  it('propagates half-close: the client ends writing and still reads the reply', async () => {
    const a = await echoTarget('a');
    const { proxy, address } = await startProxy();
    proxy.setTargets([a]);
    await until('a healthy', () => allHealthy(proxy));
    // "bye" is written only after the target sees the client's end, so it proves both directions
    const answer = await ask(address, 'hello');
    expect(answer).to.include({ data: 'a\nhellobye' });
    expect(answer.error).to.equal(undefined);
  });

  it('resets the client connection when the chosen target refuses it', async () => {
    const dead: Target = { id: 'i-dead', host: HOST, port: await freePort() };
    const { proxy, address } = await startProxy();
    proxy.setTargets([dead]); // fail open sends the connection to it anyway
    const answer = await ask(address);
    expect(answer.data).to.equal('');
    expect(answer.error).to.equal('ECONNRESET');
  });

  it('listens on a unix socket and removes the socket file on close', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capflow-lb-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'lb.sock');
    const a = await echoTarget('a');
    const { proxy } = await startProxy(FAST, [{ path }, { host: HOST, port: 0 }]);
    proxy.setTargets([a]);
    await until('a healthy', () => allHealthy(proxy));
    expect(proxy.listening()[0]).to.deep.equal({ path });
    expect(await ask({ path }, 'ping')).to.include({ data: 'a\npingbye' });
    await proxy.close();
    expect(existsSync(path)).to.equal(false);
  });
});

describe('emulator/load-balancer-proxy: HTTP and HTTPS health checks', function () {
  this.timeout(20_000);
  afterEach(closePeers);

  it('checks the path and matches the status: 202 passes "200,202", 500 does not, another path gets 404', async () => {
    const answering = (code: number): RequestListener => (req, res) => {
      res.statusCode = req.url === '/healthz' ? code : 404;
      res.end(`${code}`);
    };
    const good = await httpTarget('i-good', answering(202));
    const bad = await httpTarget('i-bad', answering(500));
    const hc: HealthCheck = { ...FAST, protocol: 'HTTP', path: '/healthz', matcher: '200,202' };
    const { proxy, address } = await startProxy(hc);
    proxy.setTargets([good, bad]);
    await until('checks settled', () => stateOf(proxy, 'i-good') === 'healthy' && stateOf(proxy, 'i-bad') === 'unhealthy');
    const badHealth = proxy.targetHealth().find((h) => h.target.id === 'i-bad')!;
    expect(badHealth).to.include({ reason: 'Target.ResponseCodeMismatch', description: 'HTTP 500 from /healthz' });

    const wrongPath = await startProxy({ ...hc, path: '/' });
    wrongPath.proxy.setTargets([good]);
    await until('good unhealthy on /', () => stateOf(wrongPath.proxy, 'i-good') === 'unhealthy');

    // traffic goes to the healthy one only
    const { port } = address as { port: number };
    for (let i = 0; i < 3; i++) {
      const body = await new Promise<string>((resolve, reject) =>
        httpGet({ host: HOST, port, path: '/healthz', agent: false }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve(text));
        }).on('error', reject),
      );
      expect(body).to.equal('202');
    }
  });

  it('HTTPS checks pass against a self-signed certificate and fail against plain HTTP', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capflow-lb-tls-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const made = await run(requireTool('openssl'), [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=capflow-lb-test',
    ], { cwd: dir });
    expect(made.code, made.stderr).to.equal(0);
    const server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
      res.statusCode = req.url === '/readyz' ? 200 : 404;
      res.end('ok');
    });
    const tls: Target = { id: 'i-tls', host: HOST, port: await listen(server) };
    const plain = await httpTarget('i-plain', (_req, res) => res.end('ok'));
    const { proxy } = await startProxy({ ...FAST, protocol: 'HTTPS', path: '/readyz', timeoutMs: 500, intervalMs: 500 });
    proxy.setTargets([tls, plain]);
    await until('checks settled', () => stateOf(proxy, 'i-tls') === 'healthy' && stateOf(proxy, 'i-plain') === 'unhealthy');
    expect(proxy.targetHealth().find((h) => h.target.id === 'i-plain')!.reason).to.equal('Target.FailedHealthChecks');
  });
});

describe('emulator/load-balancer-proxy: close()', function () {
  this.timeout(30_000);
  afterEach(closePeers);

  it('a process that closes its proxy exits at once, with a check in flight and a connection open', async () => {
    const script = `
      const net = await import('node:net');
      const { ListenerProxy } = await import(${JSON.stringify(`${REPO_ROOT}/src/emulator/load-balancer-proxy.ts`)});
      const servers = [];
      const serve = async (onConnection) => {
        const sockets = new Set();
        const server = net.createServer((s) => { sockets.add(s); s.on('error', () => {}); onConnection(s); });
        await new Promise((r) => server.listen(0, '127.0.0.1', r));
        servers.push({ server, sockets });
        return server.address().port;
      };
      const echoPort = await serve((s) => { s.write('a\\n'); s.pipe(s); });
      const silentPort = await serve(() => {}); // health checks to it hang until their timeout
      const proxy = await ListenerProxy.start({
        name: 'exiting', listen: [{ host: '127.0.0.1', port: 0 }],
        healthCheck: { protocol: 'HTTP', port: silentPort, path: '/', intervalMs: 5000, timeoutMs: 4000, healthyThreshold: 2, unhealthyThreshold: 2 },
      });
      proxy.setTargets([{ id: 'i-a', host: '127.0.0.1', port: echoPort }]);
      const client = net.connect(proxy.listening()[0].port, '127.0.0.1');
      client.on('error', () => {});
      const greeting = await new Promise((r) => client.once('data', (d) => r(String(d))));
      const state = proxy.targetHealth()[0].state;
      await proxy.close();
      for (const { server, sockets } of servers) {
        for (const s of sockets) s.destroy();
        await new Promise((r) => server.close(r));
      }
      console.log(JSON.stringify({ greeting, state, stoppedAt: Date.now() }));
    `;
    const { out, exitDelayMs } = await runChildScript<{ greeting: string; state: string; stoppedAt: number }>(script, {});
    expect(out).to.include({ greeting: 'a\n', state: 'initial' });
    expect(exitDelayMs).to.be.below(1000);
  });

  it('close() cuts open connections and is safe to call twice', async () => {
    const a = await echoTarget('a');
    const { proxy, address } = await startProxy();
    proxy.setTargets([a]);
    const pending = ask(address); // never ends on its own
    await sleep(100);
    await proxy.close();
    await proxy.close();
    const answer = await pending;
    expect(answer.data).to.equal('a\n');
    expect(answer.ms).to.be.below(2000);
  });
});

// ------------------------------------------------------------------------------------------------

describe('emulator/load-balancer-proxy: AWS health check settings', () => {
  const cases: Array<{ name: string; got: () => HealthCheck; want: HealthCheck }> = [
    {
      name: 'an NLB target group with nothing set gets the NLB defaults: TCP on the traffic port, 30 s, 10 s, 5 and 2',
      got: () => healthCheckFromElbv2({}),
      want: { protocol: 'TCP', intervalMs: 30_000, timeoutMs: 10_000, healthyThreshold: 5, unhealthyThreshold: 2 },
    },
    {
      name: 'an HTTPS check on traffic-port keeps path and matcher, with timings divided by speedUp',
      got: () =>
        healthCheckFromElbv2(
          { HealthCheckProtocol: 'HTTPS', HealthCheckPort: 'traffic-port', HealthCheckPath: '/readyz', HealthCheckIntervalSeconds: 10,
            HealthCheckTimeoutSeconds: 5, HealthyThresholdCount: 3, UnhealthyThresholdCount: 3, Matcher: { HttpCode: '200-299' } },
          { speedUp: 10 },
        ),
      want: { protocol: 'HTTPS', path: '/readyz', matcher: '200-299', intervalMs: 1000, timeoutMs: 500, healthyThreshold: 3, unhealthyThreshold: 3 },
    },
    {
      name: 'an HTTP check on a named port defaults to path / and 200-399',
      got: () => healthCheckFromElbv2({ HealthCheckProtocol: 'HTTP', HealthCheckPort: '10256' }),
      want: { protocol: 'HTTP', port: 10256, path: '/', matcher: '200-399', intervalMs: 30_000, timeoutMs: 6000, healthyThreshold: 5, unhealthyThreshold: 2 },
    },
    {
      name: 'a large speedUp stops at a 200 ms interval and a 100 ms timeout',
      got: () => healthCheckFromElbv2({ HealthCheckIntervalSeconds: 10, HealthCheckTimeoutSeconds: 6 }, { speedUp: 1000 }),
      want: { protocol: 'TCP', intervalMs: 200, timeoutMs: 100, healthyThreshold: 5, unhealthyThreshold: 2 },
    },
    {
      name: 'a classic TCP:6443 check targets port 6443 with the classic defaults: 30 s, 5 s, 10 and 2',
      got: () => healthCheckFromClassicElb({ Target: 'TCP:6443' }),
      want: { protocol: 'TCP', port: 6443, intervalMs: 30_000, timeoutMs: 5000, healthyThreshold: 10, unhealthyThreshold: 2 },
    },
    {
      name: 'a classic HTTPS:6443/readyz check passes on 200 only',
      got: () => healthCheckFromClassicElb({ Target: 'HTTPS:6443/readyz', Interval: 10, Timeout: 5, HealthyThreshold: 5, UnhealthyThreshold: 3 }, { speedUp: 5 }),
      want: { protocol: 'HTTPS', port: 6443, path: '/readyz', matcher: '200', intervalMs: 2000, timeoutMs: 1000, healthyThreshold: 5, unhealthyThreshold: 3 },
    },
    {
      name: 'a classic SSL check becomes a TCP check on its port',
      got: () => healthCheckFromClassicElb({ Target: 'ssl:443' }),
      want: { protocol: 'TCP', port: 443, intervalMs: 30_000, timeoutMs: 5000, healthyThreshold: 10, unhealthyThreshold: 2 },
    },
    {
      name: 'a classic check without a Target is TCP on each target port',
      got: () => healthCheckFromClassicElb({}),
      want: { protocol: 'TCP', intervalMs: 30_000, timeoutMs: 5000, healthyThreshold: 10, unhealthyThreshold: 2 },
    },
  ];
  for (const c of cases) it(c.name, () => expect(c.got()).to.deep.equal(c.want));

  const refused: Array<{ name: string; call: () => unknown }> = [
    { name: 'a health check port that is not a number', call: () => healthCheckFromElbv2({ HealthCheckPort: 'http' }) },
    { name: 'a classic target with an unknown protocol', call: () => healthCheckFromClassicElb({ Target: 'FTP:21' }) },
    { name: 'a classic target with port 0', call: () => healthCheckFromClassicElb({ Target: 'TCP:0' }) },
    { name: 'a speedUp of 0', call: () => healthCheckFromElbv2({}, { speedUp: 0 }) },
    { name: 'a matcher that is not codes', call: () => parseMatcher('2xx') },
  ];
  for (const c of refused) {
    it(`refuses ${c.name} with LB_HEALTH_CHECK_INVALID`, () => {
      let err: unknown;
      try {
        c.call();
      } catch (e) {
        err = e;
      }
      expect(isCapflowError(err) && err.code).to.equal('LB_HEALTH_CHECK_INVALID');
    });
  }

  it('matches status codes against ranges and lists', () => {
    const ok = parseMatcher('200-299, 301');
    expect([199, 200, 250, 299, 300, 301, 302].map(ok)).to.deep.equal([false, true, true, true, false, true, false]);
  });
});
