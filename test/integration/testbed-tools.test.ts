// The test bed's command-line validators: kubeadm, cloud-init, helm, argo (and the lookup itself).
// Needs `bash testbed/install.sh`; without it every test here fails with that command in the message.

import { expect } from 'chai';
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  argoLintOffline,
  cloudInitSchema,
  findTool,
  helmLint,
  helmTemplate,
  INSTALL_COMMAND,
  kubeadmValidate,
  REPO_ROOT,
  requirePreviousKubeBinDir,
  requireTool,
  run,
  testbedVersions,
} from '../support/tools.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'testbed');
const fixture = (...p: string[]): string => readFileSync(join(FIXTURES, ...p), 'utf8');

describe('test bed: tool lookup', function () {
  it('a missing tool fails with the install command in the message', () => {
    const saved = { bin: process.env.CAPFLOW_TESTBED_BIN, path: process.env.PATH };
    const empty = mkdtempSync(join(tmpdir(), 'capflow-empty-'));
    try {
      process.env.CAPFLOW_TESTBED_BIN = empty;
      process.env.PATH = empty;
      expect(findTool('capflow-no-such-tool')).to.equal(undefined);
      expect(() => requireTool('capflow-no-such-tool')).to.throw(Error, INSTALL_COMMAND);
      expect(INSTALL_COMMAND).to.equal('bash testbed/install.sh');
    } finally {
      process.env.CAPFLOW_TESTBED_BIN = saved.bin;
      if (saved.bin === undefined) delete process.env.CAPFLOW_TESTBED_BIN;
      process.env.PATH = saved.path;
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('every test bed tool is installed, at the pinned version', async function () {
    this.timeout(30_000);
    const v = testbedVersions();
    const missing = ['etcd', 'etcdctl', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubeadm', 'kubectl', 'kwok', 'helm', 'argo', 'oci-registry', 'cloud-init', 'sshd', 'openssl']
      .filter((t) => findTool(t) === undefined);
    expect(missing, `missing tools; install them with: ${INSTALL_COMMAND}`).to.deep.equal([]);

    const out = async (tool: string, args: string[]): Promise<string> => {
      const r = await run(requireTool(tool), args);
      return r.stdout + r.stderr;
    };
    expect(await out('kube-apiserver', ['--version'])).to.contain(v.KUBERNETES_VERSION);
    expect(await out('kubeadm', ['version', '-o', 'short'])).to.contain(v.KUBERNETES_VERSION);
    // the control plane binaries kubeadm's static pods name, and kubectl, from the same module graph
    expect(await out('kube-controller-manager', ['--version'])).to.contain(v.KUBERNETES_VERSION);
    expect(await out('kube-scheduler', ['--version'])).to.contain(v.KUBERNETES_VERSION);
    expect(await out('kubectl', ['version', '--client'])).to.contain(`Client Version: ${v.KUBERNETES_VERSION}`);
    expect(await out('etcd', ['--version'])).to.contain(v.ETCD_VERSION!.replace(/^v/, ''));
    expect(await out('etcdctl', ['version'])).to.contain(`etcdctl version: ${v.ETCD_VERSION!.replace(/^v/, '')}`);
    // the previous release, for upgrade tests: the machines of its AMIs carry its own bin dir
    const previous = requirePreviousKubeBinDir();
    expect(previous.version).to.equal(v.KUBERNETES_PREVIOUS_VERSION);
    const prev = async (tool: string, args: string[]): Promise<string> => {
      const r = await run(join(previous.dir, tool), args);
      return r.stdout + r.stderr;
    };
    expect(await prev('kubeadm', ['version', '-o', 'short'])).to.equal(`${previous.version}\n`);
    for (const t of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) expect(await prev(t, ['--version']), t).to.contain(previous.version);
    expect(await prev('etcdctl', ['version']), 'the one etcdctl').to.contain(v.ETCD_VERSION!.replace(/^v/, ''));
    expect(await out('helm', ['version', '--short'])).to.contain(v.HELM_VERSION);
    expect(await out('argo', ['version', '--short'])).to.contain(v.ARGO_VERSION);
    expect(await out('kwok', ['--version'])).to.contain(v.KWOK_VERSION!.replace(/^v/, ''));
    // it prints no version: the cache path it was built into names it
    expect(realpathSync(requireTool('oci-registry'))).to.contain(`/oci-registry/${v.GGCR_VERSION}/`);
  });
});

describe('test bed: kubeadm config validate', function () {
  this.timeout(60_000);

  it('accepts an InitConfiguration + ClusterConfiguration', async () => {
    const r = await kubeadmValidate(fixture('kubeadm', 'valid.yaml'));
    expect(r.ok, r.output).to.equal(true);
  });

  it('rejects a broken configuration', async () => {
    const r = await kubeadmValidate(fixture('kubeadm', 'broken.yaml'));
    expect(r.ok, r.output).to.equal(false);
    expect(r.output).to.match(/notAField|token/i);
  });
});

describe('test bed: cloud-init schema', function () {
  this.timeout(60_000);

  it('accepts valid user data', async () => {
    const r = await cloudInitSchema(fixture('cloud-init', 'valid.yaml'));
    expect(r.ok, r.output).to.equal(true);
  });

  it('rejects broken user data', async () => {
    const r = await cloudInitSchema(fixture('cloud-init', 'broken.yaml'));
    expect(r.ok, r.output).to.equal(false);
    expect(r.output).to.match(/write_files|runcmd/);
  });
});

describe('test bed: helm', function () {
  this.timeout(60_000);
  const chart = join(FIXTURES, 'chart');

  it('renders the tiny chart with values', async () => {
    const r = await helmTemplate(chart, { message: 'from-the-test', replicas: 3 }, { releaseName: 'tb' });
    expect(r.ok, r.output).to.equal(true);
    expect(r.output).to.contain('name: tb-greeting');
    expect(r.output).to.contain('message: "from-the-test"');
    expect(r.output).to.contain('replicas: "3"');
  });

  it('lints the tiny chart', async () => {
    const r = await helmLint(chart);
    expect(r.ok, r.output).to.equal(true);
    expect(r.output).to.match(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('fails to render a chart that does not exist', async () => {
    const r = await helmTemplate(join(FIXTURES, 'no-such-chart'));
    expect(r.ok).to.equal(false);
  });
});

describe('test bed: argo lint --offline', function () {
  this.timeout(60_000);

  it('accepts a tiny WorkflowTemplate', async () => {
    const r = await argoLintOffline([join(FIXTURES, 'argo', 'valid-workflowtemplate.yaml')]);
    expect(r.ok, r.output).to.equal(true);
  });

  it('rejects a broken WorkflowTemplate', async () => {
    const r = await argoLintOffline([join(FIXTURES, 'argo', 'broken-workflowtemplate.yaml')]);
    expect(r.ok, r.output).to.equal(false);
    expect(r.output).to.contain('no-such-template');
  });
});
