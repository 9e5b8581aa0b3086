// The kubelet stand-in's static pods: manifests in a temporary directory whose containers are small
// node processes on 127.0.0.1 ports. Timings are shortened (poll 100 ms, backoff base 300 ms).

import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { stringify as toYaml } from 'yaml';
import { containerStandIn, isKubeVipImage } from '../../src/emulator/kubelet/kube-vip.js';
import { StaticPodRunner, type StaticPodStatus } from '../../src/emulator/kubelet/static-pods.js';

// A tiny HTTP server: /livez fails while the "sick" file exists; IGNORE_TERM makes it ignore SIGTERM.
const SERVER = `
const http = require('http'); const fs = require('fs');
const [port, sick] = process.argv.slice(1);
if (process.env.IGNORE_TERM) process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
http.createServer((q, s) => {
  if (q.url === '/livez' && sick && fs.existsSync(sick)) { s.writeHead(500); return s.end('sick'); }
  s.end('ok ' + (process.env.GREETING || ''));
}).listen(Number(port), '127.0.0.1', () => console.log('listening on ' + port));
`;

interface PodShape {
  name: string;
  port?: number;
  command?: string[];
  args?: string[];
  env?: Record<string, string>;
  graceSeconds?: number;
  readiness?: boolean;
  liveness?: { failureThreshold: number };
}

function manifest(p: PodShape): V1Pod {
  const port = p.port ?? 0;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: p.name, namespace: 'kube-system' },
    spec: {
      hostNetwork: true,
      ...(p.graceSeconds !== undefined ? { terminationGracePeriodSeconds: p.graceSeconds } : {}),
      containers: [
        {
          name: p.name,
          image: 'registry.k8s.io/stand-in:v0',
          command: p.command ?? ['node'],
          args: p.args ?? ['-e', SERVER, String(port)],
          env: Object.entries(p.env ?? {}).map(([name, value]) => ({ name, value })),
          ports: [{ name: 'probe-port', containerPort: port }],
          ...(p.readiness ? { readinessProbe: { httpGet: { path: '/readyz', port: 'probe-port' }, periodSeconds: 1 } } : {}),
          ...(p.liveness
            ? { livenessProbe: { httpGet: { host: '127.0.0.1', path: '/livez', port }, periodSeconds: 1, failureThreshold: p.liveness.failureThreshold } }
            : {}),
        },
      ],
    },
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function httpText(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

describe('kubelet stand-in: static pods as local processes', function () {
  this.timeout(30_000);
  let dir: string;
  let manifests: string;
  let runner: StaticPodRunner;
  const log: string[] = [];

  const write = (file: string, pod: V1Pod): void => {
    // as kubeadm does: write elsewhere, then rename into the directory
    const tmp = join(dir, `${file}.tmp`);
    writeFileSync(tmp, toYaml(pod));
    writeFileSync(join(manifests, file), readFileSync(tmp));
  };
  const pod = (name: string): StaticPodStatus | undefined => runner.status().find((s) => s.name === name);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'capflow-static-pods-'));
    manifests = join(dir, 'manifests');
    mkdirSync(manifests);
    log.length = 0;
    runner = new StaticPodRunner({
      manifestDir: manifests,
      logDir: join(dir, 'pods'),
      binDirs: [dirname(process.execPath)],
      pollIntervalMs: 100,
      backoffBaseMs: 300,
      backoffMaxMs: 5000,
      log: (message, fields) => log.push(`${message} ${JSON.stringify(fields ?? {})}`),
    });
    runner.start();
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.log(log.join('\n'));
    await runner.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a manifest runs as a process with its output in <namespace>_<pod>/<container>.log, ready by its readiness probe on a named port', async () => {
    const port = await freePort();
    write('web.yaml', manifest({ name: 'web', port, readiness: true, env: { GREETING: 'hello' } }));
    const running = await waitFor('web running', () => pod('web')?.pid);
    expect(alive(running)).to.equal(true);
    expect(pod('web')!.ready).to.equal(false);
    await waitFor('web ready', () => pod('web')?.ready);
    expect(await httpText(port)).to.equal('ok hello');
    const s = pod('web')!;
    expect(s).to.include({ namespace: 'kube-system', containerName: 'web', restartCount: 0, started: true });
    expect(s.manifestHash).to.match(/^[0-9a-f]{32}$/);
    const logFile = join(dir, 'pods', 'kube-system_web', 'web.log');
    await waitFor('log line', () => existsSync(logFile) && readFileSync(logFile, 'utf8').includes(`listening on ${port}`));
  });

  it('a process that exits restarts at once, then after the backoff, which doubles', async () => {
    write('crash.yaml', manifest({ name: 'crash', args: ['-e', 'setTimeout(() => process.exit(3), 50)'] }));
    const gaps: number[] = [];
    let sawBackoff = false;
    let lastStart: Date | undefined;
    const off = runner.onChange(() => {
      const s = pod('crash');
      if (s?.waiting?.reason === 'CrashLoopBackOff') sawBackoff = true;
      if (s?.startedAt && s.startedAt !== lastStart) {
        lastStart = s.startedAt;
        if (s.lastExit) gaps.push(s.startedAt.getTime() - s.lastExit.at.getTime());
      }
    });
    await waitFor('three restarts', () => (pod('crash')?.restartCount ?? 0) >= 3, 15_000);
    off();
    expect(pod('crash')!.lastExit).to.include({ code: 3, signal: null });
    expect(sawBackoff).to.equal(true);
    // the kubelet's sequence: no wait, then the base, then twice the base
    expect(gaps[0]).to.be.below(250);
    expect(gaps[1]).to.be.at.least(270);
    expect(gaps[2]).to.be.at.least(540);
  });

  it('a changed manifest replaces the process: new hash, restart count from zero', async () => {
    const port = await freePort();
    write('web.yaml', manifest({ name: 'web', port, env: { GREETING: 'one' } }));
    const first = await waitFor('first process', () => pod('web')?.pid);
    const firstHash = pod('web')!.manifestHash;
    expect(await waitFor('first answers', () => httpText(port).catch(() => undefined))).to.equal('ok one');
    write('web.yaml', manifest({ name: 'web', port, env: { GREETING: 'two' } }));
    const second = await waitFor('second process', () => {
      const s = pod('web');
      return s && s.manifestHash !== firstHash && s.pid;
    });
    expect(second).to.not.equal(first);
    expect(alive(first)).to.equal(false);
    expect(pod('web')!.restartCount).to.equal(0);
    expect(await waitFor('second answers', () => httpText(port).catch(() => undefined))).to.equal('ok two');
  });

  it('a removed manifest stops its process; one that ignores SIGTERM is killed after terminationGracePeriodSeconds', async () => {
    const port = await freePort();
    write('stubborn.yaml', manifest({ name: 'stubborn', port, graceSeconds: 1, env: { IGNORE_TERM: '1' } }));
    const pid = await waitFor('stubborn running', () => pod('stubborn')?.pid);
    const logFile = join(dir, 'pods', 'kube-system_stubborn', 'stubborn.log');
    await waitFor('stubborn listening', () => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('listening'));
    const removedAt = Date.now();
    rmSync(join(manifests, 'stubborn.yaml'));
    await waitFor('pod forgotten', () => runner.status().length === 0);
    await waitFor('process gone', () => !alive(pid), 5000);
    expect(Date.now() - removedAt).to.be.at.least(900);
    expect(readFileSync(logFile, 'utf8')).to.contain('ignoring SIGTERM');
  });

  it('a liveness probe failing past failureThreshold kills and restarts the process, counted in restartCount', async () => {
    const port = await freePort();
    const sick = join(dir, 'sick');
    write('live.yaml', manifest({ name: 'live', port, liveness: { failureThreshold: 2 }, args: ['-e', SERVER, String(port), sick] }));
    const first = await waitFor('live running', () => pod('live')?.pid);
    writeFileSync(sick, '');
    await waitFor('liveness restart', () => pod('live')?.restartCount === 1 && pod('live')?.pid, 10_000);
    rmSync(sick);
    const s = pod('live')!;
    expect(s.pid).to.not.equal(first);
    expect(s.lastExit?.signal).to.equal('SIGTERM');
    expect(log.some((l) => l.includes('liveness probe failed'))).to.equal(true);
  });

  it('a process killed from outside is seen, its exit recorded, and restarted', async () => {
    const port = await freePort();
    write('victim.yaml', manifest({ name: 'victim', port }));
    const first = await waitFor('victim running', () => pod('victim')?.pid);
    process.kill(first, 'SIGKILL');
    const second = await waitFor('victim restarted', () => pod('victim')?.restartCount === 1 && pod('victim')?.pid);
    expect(second).to.not.equal(first);
    expect(pod('victim')!.lastExit).to.include({ code: null, signal: 'SIGKILL' });
  });

  it('a command that is not on the search path waits in RunContainerError', async () => {
    write('missing.yaml', manifest({ name: 'missing', command: ['capflow-no-such-binary'], args: [] }));
    const s = await waitFor('missing waiting', () => pod('missing')?.waiting && pod('missing'));
    expect(s.waiting!.reason).to.equal('RunContainerError');
    expect(s.waiting!.message).to.contain('executable file not found');
    expect(s.pid).to.equal(undefined);
  });

  it('a kube-vip image runs the kube-vip stand-in, not a command (here without an address: it exits 1, saying so)', async () => {
    // the address is what the stand-in would add to the machine's interface: that part runs in the BYOH lab's machines only (test/integration/byoh-lab.test.ts)
    const m = manifest({ name: 'kube-vip', env: { vip_arp: 'true', port: '6443', cp_enable: 'true' } });
    const c = m.spec!.containers[0]!;
    m.spec!.containers[0] = { name: c.name, image: 'ghcr.io/kube-vip/kube-vip:v0.8.9', args: ['manager'], env: c.env, volumeMounts: [{ mountPath: '/etc/kubernetes/admin.conf', name: 'kubeconfig' }] };
    m.spec!.volumes = [{ name: 'kubeconfig', hostPath: { path: '/etc/kubernetes/super-admin.conf' } }];
    write('kube-vip.yaml', m);
    const s = await waitFor('kube-vip stand-in exited', () => pod('kube-vip')?.lastExit && pod('kube-vip'));
    expect(s.lastExit!.code).to.equal(1);
    expect(readFileSync(join(dir, 'pods', 'kube-system_kube-vip', 'kube-vip.log'), 'utf8')).to.contain('kube-vip stand-in: env address (or vip_address) holds no IPv4 address');
  });
});

describe('emulator/kubelet kube-vip stand-in: which images it stands in for', () => {
  it('kube-vip images under any registry, by tag or digest; no other image', () => {
    for (const image of ['ghcr.io/kube-vip/kube-vip:v0.8.9', 'plndr/kube-vip:0.3.1', 'registry.local:5000/mirror/kube-vip:v1', 'kube-vip:v1', 'ghcr.io/kube-vip/kube-vip:v0.8.9@sha256:abc123']) {
      expect(isKubeVipImage(image), image).to.equal(true);
    }
    for (const image of [undefined, '', 'registry.k8s.io/kube-apiserver:v1.34.4', 'ghcr.io/kube-vip/kube-vip-cloud-provider:v0.0.10', 'example.com/not-kube-vip:v1']) {
      expect(isKubeVipImage(image), String(image)).to.equal(false);
    }
    expect(containerStandIn({ name: 'x', image: 'registry.k8s.io/etcd:3.6.4-0', command: ['etcd'] })).to.equal(undefined);
    expect(containerStandIn({ name: 'kube-vip', image: 'ghcr.io/kube-vip/kube-vip:v0.8.9', args: ['manager'] }, '/usr/bin/node')).to.deep.include({ bin: '/usr/bin/node' });
  });
});
