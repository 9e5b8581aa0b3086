/**
 * src/addons/charts.ts with the real helm: the vendored chart test/fixtures/charts/tiny rendered from a
 * folder of the repository (values files, then inline values), the same chart packaged and served by a
 * loopback HTTP chart repository behind basic auth (credentials from a LocalSecretStore; the password
 * never in argv, a log line or an error), a template that fails to render, a document that is no
 * Kubernetes object, and paths that leave the repository or the cluster folder.
 *
 * And the chart pushed with `helm push` to the test bed's OCI registry (go-containerregistry's, in
 * memory, plain HTTP), pulled through a loopback proxy that wants basic auth.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { renderAddonChart, type ChartRenderOptions } from '../../src/addons/charts.js';
import { CapflowError } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import type { AddonChart, AddonChartSpec } from '../../src/spec/model.js';
import { REPO_ROOT, requireTool } from '../support/tools.js';
import { freePort } from '../support/ports.js';
import { until } from '../support/machines.js';

const PASSWORD = 'hunter2-Chart-Repo-Pass';
const USERNAME = 'charts';

function addon(name: string, spec: Partial<AddonChartSpec>): AddonChart {
  return {
    apiVersion: 'capflow.io/v1alpha1',
    kind: 'AddonChart',
    metadata: { name },
    spec: { releaseName: '', namespace: 'tiny-system', createNamespace: true, wait: true, timeout: '5m', ...spec },
  } as AddonChart;
}

async function refused(p: Promise<unknown>): Promise<CapflowError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(CapflowError);
    return err as CapflowError;
  }
  throw new Error('expected a refusal');
}

describe('addons/charts: rendering an AddonChart with the real helm template', function () {
  this.timeout(60_000);
  let helm: string;
  let root: string;
  let clusterDir: string;
  let logLines: string[];
  let argvLog: string;
  let options: ChartRenderOptions;
  let server: Server;
  let repoUrl: string;
  let requests: string[];
  const secrets = () => new LocalSecretStore(join(root, '.secrets'));

  before(async () => {
    helm = requireTool('helm');
    root = mkdtempSync(join(tmpdir(), 'capflow-charts-'));
    // The "repository": a vendored chart, a broken copy, and a cluster folder with values files.
    cpSync(join(REPO_ROOT, 'test/fixtures/charts/tiny'), join(root, 'charts/tiny'), { recursive: true });
    cpSync(join(REPO_ROOT, 'test/fixtures/charts/tiny'), join(root, 'charts/broken'), { recursive: true });
    writeFileSync(join(root, 'charts/broken/templates/bad.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.nope.deeper }}\n');
    cpSync(join(REPO_ROOT, 'test/fixtures/charts/tiny'), join(root, 'charts/notobject'), { recursive: true });
    writeFileSync(join(root, 'charts/notobject/templates/stray.yaml'), 'just: a map\n');
    clusterDir = join(root, 'clusters/dev');
    mkdirSync(join(clusterDir, 'values'), { recursive: true });
    writeFileSync(join(clusterDir, 'values/base.yaml'), 'settings:\n  color: base\n  size: base\n  mode: base\n');
    writeFileSync(join(clusterDir, 'values/prod.yaml'), 'settings:\n  size: prod\n  mode: prod\nreplicas: 3\n');
    const outside = mkdtempSync(join(tmpdir(), 'capflow-outside-'));
    cpSync(join(REPO_ROOT, 'test/fixtures/charts/tiny'), join(outside, 'tiny'), { recursive: true });
    symlinkSync(join(outside, 'tiny'), join(root, 'charts/linked'));

    // helm through a wrapper that records every argv, to show the password never is on one.
    argvLog = join(root, 'argv.log');
    const wrapper = join(root, 'helm-wrapper.sh');
    writeFileSync(wrapper, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${argvLog}'\nexec '${helm}' "$@"\n`);
    chmodSync(wrapper, 0o755);

    logLines = [];
    const stream = new PassThrough();
    stream.on('data', (b: Buffer) => logLines.push(...b.toString('utf8').split('\n').filter(Boolean)));
    options = { repoRoot: root, clusterDir, kubeVersion: 'v1.34.3', helm: wrapper, secrets: secrets(), logger: createLogger({ stream, format: 'json', level: 'debug' }), timeoutMs: 30_000 };

    // The same chart packaged and indexed, served over loopback HTTP behind basic auth.
    const served = join(root, 'served');
    mkdirSync(served);
    const isolated = { ...process.env, HELM_CACHE_HOME: join(root, 'h/cache'), HELM_CONFIG_HOME: join(root, 'h/config'), HELM_DATA_HOME: join(root, 'h/data') };
    for (const args of [['package', join(root, 'charts/tiny'), '-d', served], ['repo', 'index', served]]) {
      const r = spawnSync(helm, args, { env: isolated, encoding: 'utf8' });
      expect(r.status, r.stderr).to.equal(0);
    }
    requests = [];
    const expected = `Basic ${Buffer.from(`${USERNAME}:${PASSWORD}`).toString('base64')}`;
    server = createServer((req, res) => {
      requests.push(`${req.method} ${req.url} ${req.headers.authorization ? 'auth' : 'anonymous'}`);
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="charts"' }).end('unauthorized');
        return;
      }
      const file = (req.url ?? '/').replace(/^\/+/, '');
      if (!/^[\w.-]+$/.test(file)) return void res.writeHead(404).end();
      try {
        res.writeHead(200).end(readFileSync(join(served, file)));
      } catch {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    repoUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await secrets().put('chart-repo', { username: USERNAME, password: PASSWORD });
    await secrets().put('wrong-chart-repo', { username: USERNAME, password: `${PASSWORD}-wrong` });
  });

  after(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('renders a chart folder of the repository: CRDs included, values files in order, then inline values, no test hooks', async () => {
    const out = await renderAddonChart(
      addon('tiny', { path: 'charts/tiny', valuesFiles: ['values/base.yaml', 'values/prod.yaml'], values: { settings: { mode: 'inline' } } }),
      options,
    );
    expect(out.releaseName).to.equal('tiny');
    expect(out.chartSource).to.equal('chart folder charts/tiny');
    expect(out.objects.map((o) => `${o.object.kind}/${o.object.metadata?.name} ${o.source}`)).to.deep.equal([
      'CustomResourceDefinition/widgets.tiny.capflow.io tiny/crds/widgets.yaml',
      'ConfigMap/tiny-settings tiny/templates/configmap.yaml',
      'Deployment/tiny tiny/templates/deployment.yaml',
    ]);
    const cm = out.objects[1]?.object as unknown as { metadata: { namespace: string }; data: Record<string, string> };
    // chart defaults < base.yaml < prod.yaml < inline values.
    expect(cm.data).to.deep.equal({ kubeVersion: 'v1.34.3', fromChart: 'chart', color: 'base', size: 'prod', mode: 'inline' });
    expect(cm.metadata.namespace).to.equal('tiny-system');
    expect((out.objects[2]?.object as unknown as { spec: { replicas: number } }).spec.replicas).to.equal(3);
  });

  it('uses spec.releaseName over the object name', async () => {
    const out = await renderAddonChart(addon('tiny', { path: 'charts/tiny', releaseName: 'other' }), options);
    expect(out.objects.map((o) => o.object.metadata?.name)).to.include.members(['other', 'other-settings']);
  });

  it('renders the packaged chart from an HTTP chart repository with basic auth, the password never in argv, logs or errors', async () => {
    const out = await renderAddonChart(addon('tiny-remote', { repo: repoUrl, chart: 'tiny', version: '0.1.0', credentialsSecretRef: { name: 'chart-repo' }, values: { settings: { color: 'remote' } } }), options);
    expect(out.objects.map((o) => `${o.object.kind}/${o.object.metadata?.name}`)).to.deep.equal([
      'CustomResourceDefinition/widgets.tiny.capflow.io',
      'ConfigMap/tiny-remote-settings',
      'Deployment/tiny-remote',
    ]);
    expect((out.objects[1]?.object as unknown as { data: Record<string, string> }).data.color).to.equal('remote');
    expect(requests.some((r) => r.startsWith('GET /tiny-0.1.0.tgz auth'))).to.equal(true);

    // Without credentials the repository refuses, and so does the render.
    const anonymous = await refused(renderAddonChart(addon('tiny-anon', { repo: repoUrl, chart: 'tiny', version: '0.1.0' }), options));
    expect(anonymous.code).to.equal('ADDON_CHART_RENDER');
    expect(anonymous.message).to.contain('AddonChart tiny-anon').and.contain(`${repoUrl} tiny@0.1.0`);

    // A wrong password: refused, and neither password anywhere.
    const wrong = await refused(renderAddonChart(addon('tiny-wrong', { repo: repoUrl, chart: 'tiny', version: '0.1.0', credentialsSecretRef: { name: 'wrong-chart-repo' } }), options));
    expect(wrong.code).to.equal('ADDON_CHART_RENDER');
    expect(wrong.message).to.contain('AddonChart tiny-wrong').and.match(/401|unauthori/i);

    const argv = readFileSync(argvLog, 'utf8');
    expect(argv).to.contain('repo add capflow-addon').and.contain('--password-stdin');
    for (const text of [argv, logLines.join('\n'), anonymous.message, wrong.message, JSON.stringify(wrong.details ?? {})]) {
      expect(text).not.to.contain(PASSWORD);
    }
    expect(logLines.some((l) => l.includes('rendered AddonChart tiny-remote'))).to.equal(true);
  });

  it('renders the chart pushed to an OCI registry (the test bed\'s, behind a basic-auth proxy), credentials in a throwaway registry config, never on argv', async () => {
    // the chart pushed with `helm push` straight to the registry, as a release pipeline would
    const port = await freePort();
    const registry = spawn(requireTool('oci-registry'), ['-port', String(port)], { stdio: 'ignore' });
    let proxy: Server | undefined;
    try {
      await until('the OCI registry answers', async () => (await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.status === 200).catch(() => false)) || undefined, 10_000);
      const isolated = { ...process.env, HELM_CACHE_HOME: join(root, 'o/cache'), HELM_CONFIG_HOME: join(root, 'o/config'), HELM_DATA_HOME: join(root, 'o/data') };
      const push = spawnSync(helm, ['push', join(root, 'served', 'tiny-0.1.0.tgz'), `oci://127.0.0.1:${port}/charts`, '--plain-http'], { env: isolated, encoding: 'utf8' });
      expect(push.status, push.stderr).to.equal(0);

      // capflow reaches it through a proxy that wants basic auth, as a private registry does
      const expected = `Basic ${Buffer.from(`${USERNAME}:${PASSWORD}`).toString('base64')}`;
      const seen: string[] = [];
      proxy = createServer((req, res) => {
        seen.push(`${req.method} ${req.url} ${req.headers.authorization ? 'auth' : 'anonymous'}`);
        if (req.headers.authorization !== expected) return void res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="charts"' }).end();
        const upstream = httpRequest({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: { accept: req.headers.accept ?? '*/*' } }, (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        });
        upstream.on('error', () => res.writeHead(502).end());
        req.pipe(upstream);
      });
      await new Promise<void>((resolve) => proxy!.listen(0, '127.0.0.1', resolve));
      const oci = `oci://127.0.0.1:${(proxy.address() as AddressInfo).port}/charts`;

      const out = await renderAddonChart(addon('tiny-oci', { repo: oci, chart: 'tiny', version: '0.1.0', plainHTTP: true, credentialsSecretRef: { name: 'chart-repo' } }), options);
      expect(out.chartSource).to.equal(`${oci}/tiny@0.1.0`);
      expect(out.objects.map((o) => `${o.object.kind}/${o.object.metadata?.name}`)).to.deep.equal(['CustomResourceDefinition/widgets.tiny.capflow.io', 'ConfigMap/tiny-oci-settings', 'Deployment/tiny-oci']);
      expect(seen.some((r) => /^GET \/v2\/charts\/tiny\/manifests\/0\.1\.0 auth$/.test(r)), seen.join('\n')).to.equal(true);

      const anonymous = await refused(renderAddonChart(addon('tiny-oci-anon', { repo: oci, chart: 'tiny', version: '0.1.0', plainHTTP: true }), options));
      expect(anonymous.code).to.equal('ADDON_CHART_RENDER');
      expect(anonymous.message).to.contain('AddonChart tiny-oci-anon').and.match(/basic credential not found/);
      const argv = readFileSync(argvLog, 'utf8');
      expect(argv).to.contain('--registry-config').and.contain('--plain-http');
      for (const text of [argv, logLines.join('\n'), anonymous.message]) expect(text).not.to.contain(PASSWORD);
    } finally {
      registry.kill('SIGKILL');
      await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
    }
  });

  it('names the missing secret and the keys a secret lacks', async () => {
    const missing = await refused(renderAddonChart(addon('x', { repo: repoUrl, chart: 'tiny', version: '0.1.0', credentialsSecretRef: { name: 'absent' } }), options));
    expect(missing.code).to.equal('ADDON_CHART_CREDENTIALS');
    expect(missing.message).to.contain('secret "absent"');
    await secrets().put('token-only', { token: 'abc' });
    const partial = await refused(renderAddonChart(addon('x', { repo: repoUrl, chart: 'tiny', version: '0.1.0', credentialsSecretRef: { name: 'token-only' } }), options));
    expect(partial.message).to.contain('needs the keys username and password');
  });

  it('refuses a template that fails to render with ADDON_CHART_RENDER, naming the addon, the chart and helm\'s message', async () => {
    const err = await refused(renderAddonChart(addon('broken', { path: 'charts/broken' }), options));
    expect(err.code).to.equal('ADDON_CHART_RENDER');
    expect(err.exitCode).to.equal(2);
    expect(err.message).to.contain('AddonChart broken (chart folder charts/broken)').and.contain('templates/bad.yaml').and.contain('nil pointer');
  });

  it('refuses a rendered document that is not a Kubernetes object, naming its template', async () => {
    const err = await refused(renderAddonChart(addon('stray', { path: 'charts/notobject' }), options));
    expect(err.code).to.equal('ADDON_CHART_OBJECT');
    expect(err.message).to.contain('AddonChart stray').and.contain('(chart folder charts/notobject)').and.contain('a document rendered from tiny/templates/stray.yaml').and.contain('has no apiVersion');
  });

  it('refuses chart and values paths that leave the repository or the cluster folder, also through a symbolic link', async () => {
    const cases: Array<[Partial<AddonChartSpec>, string]> = [
      [{ path: '../outside' }, 'leaves its folder'],
      [{ path: '/etc' }, 'is not a relative path'],
      [{ path: 'charts/linked' }, 'leaves the repository root (through a symbolic link)'],
      [{ path: 'charts/missing' }, 'does not exist'],
      [{ path: 'clusters' }, 'is not a chart folder'],
      [{ path: 'charts/tiny', valuesFiles: ['../../charts/tiny/values.yaml'] }, 'spec.valuesFiles[0]'],
    ];
    for (const [spec, message] of cases) {
      const err = await refused(renderAddonChart(addon('escape', spec), options));
      expect(err.code, JSON.stringify(spec)).to.equal('ADDON_CHART_PATH');
      expect(err.message).to.contain('AddonChart escape').and.contain(message);
    }
  });
});
