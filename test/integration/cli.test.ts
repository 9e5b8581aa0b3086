import { expect } from 'chai';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { spawnCapflow, type CliResult } from '../support/cli.js';
import { createGitRemote, type GitRemote } from '../support/git-remote.js';
import { awsTestEnv, startMoto, type Moto } from '../support/moto.js';
import { freePort } from '../support/ports.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(repoRoot, 'dist', 'bin', 'capflow.js');
const examples = path.join(repoRoot, 'examples', 'clusters');

/** Runs the built capflow command as a user (or the image) would. */
function capflow(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return spawnCapflow(args, opts).done;
}

describe('capflow CLI (the built command, run as a child process)', function () {
  this.timeout(120_000);
  let remote: GitRemote;
  let secretsDir: string;
  let moto: Moto;

  before(async function () {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: run "npm run build" first`);
    remote = await createGitRemote();
    const files: Record<string, string> = {};
    for (const f of readdirSync(path.join(examples, 'aws-self-managed'))) {
      files[`clusters/dev/${f}`] = readFileSync(path.join(examples, 'aws-self-managed', f), 'utf8');
    }
    await remote.commitFiles(files, 'add cluster dev');
    secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-cli-secrets-'));
    moto = await startMoto();
  });
  after(async () => {
    await remote?.stop();
    await moto?.stop();
  });

  for (const name of ['aws-self-managed', 'aws-machinepool', 'eks-managed', 'byoh']) {
    it(`validates the ${name} example with exit 0`, async () => {
      const res = await capflow(['validate', path.join(examples, name)]);
      expect(res.stderr).to.equal('');
      expect(res.code).to.equal(0);
      expect(res.stdout).to.match(/valid (aws|eks|byoh) cluster/);
    });
  }

  it('reports every problem of a broken spec with file:line:column in one run, and exits 2', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-broken-'));
    cpSync(path.join(examples, 'aws-self-managed'), dir, { recursive: true });
    const workers = path.join(dir, 'workers.yaml');
    const text = readFileSync(workers, 'utf8');
    // Two mistakes in one file: a string where an integer goes, and a misspelt field.
    const broken = text.replace(/replicas: (\d+)/, 'replicas: three').replace(/clusterName: (\S+)/, 'clustrName: $1');
    expect(broken).to.not.equal(text);
    writeFileSync(workers, broken);
    const res = await capflow(['validate', dir]);
    expect(res.code).to.equal(2);
    const lines = res.stderr.trim().split('\n');
    const located = lines.filter((l) => /^\S+\.yaml:\d+:\d+ \S+\/\S+ /.test(l));
    expect(located.length, res.stderr).to.be.at.least(2);
    expect(res.stderr).to.match(/workers\.yaml:\d+:\d+ MachineDeployment\/\S+ spec\.replicas/);
    expect(res.stderr).to.match(/workers\.yaml:\d+:\d+ MachineDeployment\/\S+ spec\.clustrName/);
    expect(lines.at(-1)).to.match(/errors?, nothing was applied/);
  });

  describe('a corpus of hostile folders: each exits 2 with file:line:column lines on stderr, never a crash or a raw parser message', () => {
    const corpus: Array<{ name: string; file: string; edit: (text: string) => string | Buffer; expect: RegExp }> = [
      { name: 'a misspelt spec on a MachineDeployment (once a TypeError)', file: 'workers.yaml', edit: (t) => t.replace(/^spec:/m, 'spce:'), expect: /workers\.yaml:\d+:1 MachineDeployment\/aws-dev-md-0 spce: unknown field/ },
      { name: 'an unresolved alias (once a ReferenceError)', file: 'cluster.yaml', edit: (t) => t.replace('team: platform', 'team: *platform'), expect: /cluster\.yaml:\d+:\d+ YAML: alias \*platform names no anchor/ },
      { name: 'CloudFormation !Ref (once accepted)', file: 'cluster.yaml', edit: (t) => t.replace('team: platform', 'team: !Ref Team'), expect: /cluster\.yaml:\d+:\d+ YAML: YAML tag !Ref is not supported/ },
      { name: 'a UTF-16 file', file: 'cluster.yaml', edit: (t) => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(t, 'utf16le')]), expect: /cluster\.yaml:1:1 the file is UTF-16/ },
      { name: 'a /28 VPC (once failed after AWS calls)', file: 'cluster.yaml', edit: (t) => t.replace('10.0.0.0/16', '10.0.0.0/28'), expect: /cluster\.yaml:\d+:\d+ AWSCluster\/aws-dev spec\.network\.vpc\.cidrBlock: 10\.0\.0\.0\/28 is too small/ },
      { name: 'an ANSI escape in a kind', file: 'addons.yaml', edit: (t) => `${t}---\napiVersion: v1\nkind: "X\\e[2J"\nmetadata:\n  name: x\n`, expect: /addons\.yaml:\d+:\d+ X\\u001b\[2J\/x kind: unknown kind/ },
    ];
    for (const c of corpus) {
      it(c.name, async () => {
        const dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-hostile-'));
        cpSync(path.join(examples, 'aws-self-managed'), dir, { recursive: true });
        writeFileSync(path.join(dir, c.file), c.edit(readFileSync(path.join(dir, c.file), 'utf8')));
        const res = await capflow(['validate', dir]);
        expect(res.code, res.stderr).to.equal(2);
        expect(res.stderr).to.match(c.expect);
        expect(res.stderr).to.not.match(/TypeError|ReferenceError|RangeError|^capflow: /m);
        expect(res.stderr).to.not.include('\u001b');
        const lines = res.stderr.trim().split('\n');
        for (const line of lines.slice(0, -1)) expect(line, 'every problem line is located').to.match(/^\S+:\d+:\d+ /);
      });
    }
  });

  it('renders the Workflow it would submit, pinned to the repository HEAD', async () => {
    const res = await capflow(['render', path.join(remote.workdir, 'clusters', 'dev')]);
    expect(res.code, res.stderr).to.equal(0);
    const wf = parseYaml(res.stdout) as {
      kind: string;
      metadata: { labels: Record<string, string>; annotations: Record<string, string> };
      spec: { workflowTemplateRef: { name: string }; arguments: { parameters: Array<{ name: string; value: string }> } };
    };
    const head = await import('../support/git-remote.js').then((m) => m.git(remote.workdir, 'rev-parse', 'HEAD'));
    const params = Object.fromEntries(wf.spec.arguments.parameters.map((p) => [p.name, p.value]));
    expect(wf.kind).to.equal('Workflow');
    expect(wf.spec.workflowTemplateRef.name).to.equal('cluster-apply');
    expect(params).to.include({ revision: head, 'cluster-path': 'clusters/dev', repo: remote.workdir });
    expect(params['spec-hash']).to.match(/^[0-9a-f]{64}$/);
    expect(wf.metadata.labels['capflow.io/revision']).to.equal(head);
    expect(wf.metadata.labels['capflow.io/cluster']).to.equal(params['cluster-name']);
    expect(wf.metadata.annotations['capflow.io/spec-hash']).to.equal(params['spec-hash']);
  });

  it('runs one executor with step: output files, one JSON summary line on stdout, JSON logs on stderr', async () => {
    const outputs = mkdtempSync(path.join(os.tmpdir(), 'capflow-out-'));
    const res = await capflow(['step', 'validate-spec', '--repo', remote.workdir, '--cluster-dir', 'clusters/dev', '--outputs', outputs], {
      env: { CAPFLOW_SECRETS_DIR: secretsDir },
    });
    expect(res.code, res.stderr).to.equal(0);
    const stdoutLines = res.stdout.trim().split('\n');
    expect(stdoutLines).to.have.length(1);
    const summary = JSON.parse(stdoutLines[0]!) as { step: string; status: string; outputs: Record<string, string> };
    expect(summary).to.deep.include({ step: 'validate-spec', status: 'succeeded' });
    expect(readFileSync(path.join(outputs, 'spec-hash'), 'utf8')).to.equal(summary.outputs['spec-hash']);
    expect(readFileSync(path.join(outputs, 'provider'), 'utf8')).to.equal('aws');
    for (const line of res.stderr.trim().split('\n')) expect(() => JSON.parse(line) as unknown, line).to.not.throw();
  });

  it('a step against an unreachable AWS endpoint exits 75 with a code that is not INTERNAL, naming the endpoint and what it waited for', async function () {
    this.timeout(30_000);
    const port = await freePort(); // free a moment ago, so nothing listens: connections are refused
    const endpoint = `http://127.0.0.1:${port}`;
    const res = await capflow(['step', 'provision-vpc', '--repo', remote.workdir, '--cluster-dir', 'clusters/dev', '--outputs', mkdtempSync(path.join(os.tmpdir(), 'capflow-out-'))], {
      // Two quick retries, so the test takes a second or two, not the default two minutes.
      env: { ...awsTestEnv(endpoint), CAPFLOW_SECRETS_DIR: secretsDir, CAPFLOW_AWS_RETRIES: '2', CAPFLOW_AWS_RETRY_TIMEOUT: '3s' },
    });
    expect(res.code, res.stderr).to.equal(75);
    const summary = JSON.parse(res.stdout.trim().split('\n').at(-1)!) as { exitCode: number; error: { code: string; kind: string; message: string } };
    expect(summary.exitCode).to.equal(75);
    expect(summary.error).to.include({ code: 'AWS_UNREACHABLE', kind: 'transient' });
    expect(summary.error.message).to.include(`endpoint ${endpoint} is unreachable`).and.match(/gave up after 3 attempts over [\d.]+ s; last error: .*ECONNREFUSED/);
    expect(summary.error.message).to.match(/^ec2 \w+ in us-east-1: /);
    const failed = res.stderr.trim().split('\n').map((l) => JSON.parse(l) as { message: string; code?: string }).find((l) => l.message === 'Step provision-vpc failed');
    expect(failed?.code).to.equal('AWS_UNREACHABLE');
  });

  it('runs the cluster-apply template through the local runner against moto and prints a summary table', async () => {
    const runDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-runs-'));
    const head = await import('../support/git-remote.js').then((m) => m.git(remote.workdir, 'rev-parse', 'HEAD'));
    const res = await capflow(
      // the network only: no machine emulator follows this moto (cluster-apply-booted.test.ts boots machines)
      ['run', 'cluster-apply', '--run-dir', runDir, '-p', `repo=${remote.workdir}`, '-p', `revision=${head}`, '-p', 'cluster-path=clusters/dev', '-p', 'cluster-name=dev', '-p', 'machines=false'],
      { env: { ...awsTestEnv(moto.endpoint), CAPFLOW_SECRETS_DIR: secretsDir } },
    );
    expect(res.code, res.stderr + res.stdout).to.equal(0);
    expect(res.stdout).to.match(/validate-spec\s.*Succeeded/);
    expect(res.stdout).to.match(/provision-vpc\s.*Succeeded/);
    for (const task of ['kubeadm-init', 'launch-nodes', 'join-workers']) expect(res.stdout).to.match(new RegExp(`${task}\\s.*Skipped`));
  });

  it('does not retry an invalid spec in the local runner (exit 2 is final), and fails the run', async () => {
    const broken = await createGitRemote();
    try {
      await broken.commitFiles({ 'clusters/bad/cluster.yaml': 'apiVersion: cluster.x-k8s.io/v1beta1\nkind: Cluster\nmetadata:\n  name: bad\nspec:\n  paused: maybe\n' }, 'bad');
      const runDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-runs-'));
      const res = await capflow(['run', 'cluster-apply', '--run-dir', runDir, '-p', `repo=${broken.workdir}`, '-p', 'revision=HEAD', '-p', 'cluster-path=clusters/bad', '-p', 'cluster-name=bad']);
      expect(res.code).to.equal(1);
      expect(res.stdout).to.match(/validate-spec\s.*Failed/);
      // One attempt only: the retry expression retries exit 75, never exit 2.
      expect(res.stderr).to.not.match(/retry/i);
    } finally {
      await broken.stop();
    }
  });

  it('runs the demo end to end with plain output: a cluster whose nodes are Ready (as root with the test bed), then nothing left', async function () {
    this.timeout(300_000);
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'capflow-demo-'));
    const res = await capflow(['demo', '--plain'], { cwd, env: { CAPFLOW_SECRETS_DIR: secretsDir } });
    expect(res.code, res.stderr + res.stdout).to.equal(0);
    expect(res.stdout).to.include('== 1/6 Validating').and.include('kind: Workflow').and.include('== 6/6 Tearing it down');
    expect(res.stdout).to.match(/provision-vpc\s.*Succeeded/).and.match(/delete-vpc\s.*Succeeded/);
    expect(res.stdout).to.match(/vpc-id\s+vpc-[0-9a-f]+/);
    if (process.getuid?.() === 0) {
      // the test bed is installed for these tests: the machines boot
      expect(res.stdout).to.match(/join-workers\s.*Succeeded/);
      expect(res.stdout.match(/^ip-[\d-]+\.ec2\.internal\s+Ready\s/gm), res.stdout).to.have.length(2);
      expect(res.stdout).to.include('machines left: 0');
    } else {
      expect(res.stdout).to.match(/machines: not booted \(.*root/);
    }
  });

  const usage: Array<[string[], number, RegExp]> = [
    [['--help'], 0, /Usage: capflow <command>/],
    [['validate', '--help'], 0, /Usage: capflow validate/],
    [['render', '--help'], 0, /Usage: capflow render/],
    [['run', '--help'], 0, /Usage: capflow run/],
    [['step', '--help'], 0, /validate-spec/],
    [['step', 'install-addons', '--help'], 0, /Usage: capflow step install-addons[\s\S]*-p stage=\.\.\.\s+control-plane[\s\S]*Modes: --dry-run/],
    [['step', 'kubeadm-init', '--help'], 0, /-p api-timeout=[\s\S]*Modes: --dry-run, --delete/],
    [['demo', '--help'], 0, /Usage: capflow demo/],
    [['frobnicate'], 2, /unknown command "frobnicate"/],
    [['validate', '--nope', 'x'], 2, /Unknown option '--nope'/],
    [['step', 'no-such-step', '--cluster-dir', 'x'], 2, /unknown step "no-such-step"/],
  ];
  for (const [args, code, pattern] of usage) {
    it(`capflow ${args.join(' ')} exits ${code}`, async () => {
      const res = await capflow(args);
      expect(res.code).to.equal(code);
      expect(res.stdout + res.stderr).to.match(pattern);
    });
  }
});
