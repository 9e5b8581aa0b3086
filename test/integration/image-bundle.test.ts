/**
 * The executor image's runtime files (scripts/bundle.mjs, what images/Dockerfile copies to /app),
 * tested without a Docker engine: every command runs from the clean folder of test/support/image-root.ts
 * (no node_modules, no sources), with an empty temp dir as cwd and an environment holding only PATH,
 * HOME and helm's homes in a temp dir, and the image's ENV, as a pod of the image would.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DescribeVpcsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { executorModules } from '../../executors/lazy.js';
import { CAPFLOW_BIN, type CliResult } from '../support/cli.js';
import { createGitRemote, type GitRemote } from '../support/git-remote.js';
import { imageRoot, podTmpEnv, type ImageRoot } from '../support/image-root.js';
import { awsTestEnv, clientConfig, startMoto, type Moto } from '../support/moto.js';
import { REPO_ROOT } from '../support/tools.js';

interface Summary {
  step: string;
  status: string;
  outputs: Record<string, string>;
  awsCalls: { mutating: number; read: number };
}

interface Metafile {
  outputs: Record<string, { entryPoint?: string; inputs: Record<string, unknown>; imports: Array<{ path: string; kind: string; external?: boolean }> }>;
}

function runNode(entry: string, args: string[], cwd: string, env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [entry, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Every file under dir, relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

describe('the executor image bundle (scripts/bundle.mjs), run from its runtime files alone', function () {
  this.timeout(60_000);
  let root: ImageRoot;
  let tmp: string;
  let cwd: string;
  let env: Record<string, string>;
  let remote: GitRemote | undefined;
  let moto: Moto | undefined;

  const capflow = (args: string[], extra: Record<string, string> = {}) => runNode(root.entry, args, cwd, { ...env, ...extra });

  before(async function () {
    if (!existsSync(CAPFLOW_BIN)) throw new Error(`${CAPFLOW_BIN} is missing: run "npm run build" first`);
    [root, moto, remote] = await Promise.all([imageRoot(), startMoto(), createGitRemote()]);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'capflow-image-tmp-'));
    cwd = mkdtempSync(path.join(os.tmpdir(), 'capflow-image-cwd-'));
    // PATH: git, as the image's Debian git is; node is run by its path, as the image's ENTRYPOINT does
    env = { PATH: '/usr/local/bin:/usr/bin:/bin', ...podTmpEnv(tmp), ...root.env };
    const files: Record<string, string> = {};
    const example = path.join(REPO_ROOT, 'examples', 'clusters', 'aws-small');
    for (const f of readdirSync(example)) files[`clusters/small/${f}`] = readFileSync(path.join(example, f), 'utf8');
    await remote.commitFiles(files, 'add cluster small');
  });
  after(async () => {
    await moto?.stop();
    await remote?.stop();
    for (const d of [tmp, cwd]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('is a clean folder: the bundled entry, its chunks and data files only; no node_modules, sources or tsconfig', () => {
    const files = filesUnder(root.dir);
    expect(files).to.include.members(['package.json', 'dist/bin/capflow.js', 'dist/bin/spec-load-worker.js', 'dist/src/spec/generated/index.json']);
    expect(files.filter((f) => /(^|\/)node_modules\/|\.tsx?$|tsconfig|\.map$/.test(f))).to.deep.equal([]);
    expect(files.filter((f) => f.endsWith('.js')).every((f) => f.startsWith('dist/bin/'))).to.equal(true);
    expect(Object.keys(root.env)).to.include.members(['CAPFLOW_SCHEMAS_DIR', 'CAPFLOW_LOG_FORMAT']);
    expect(root.env.CAPFLOW_SCHEMAS_DIR?.startsWith(root.dir)).to.equal(true);
  });

  it('every folder and file is readable by the image’s non-root user (0755 / 0644), whatever the build machine’s modes', () => {
    const modes = readdirSync(root.dir, { recursive: true, withFileTypes: true }).map((e) => {
      const p = path.join(e.parentPath, e.name);
      return `${path.relative(root.dir, p)} ${(statSync(p).mode & 0o777).toString(8)}`;
    });
    expect(modes.filter((m) => !/ (755|644)$/.test(m))).to.deep.equal([]);
  });

  it('validates by compiling the CRD schemas with ajv when the generated validators are missing', async () => {
    const copy = mkdtempSync(path.join(os.tmpdir(), 'capflow-image-nogen-'));
    try {
      cpSync(root.dir, copy, { recursive: true });
      rmSync(path.join(copy, 'dist', 'src', 'spec', 'generated'), { recursive: true });
      const outputs = mkdtempSync(path.join(tmp, 'out-'));
      const res = await runNode(path.join(copy, 'dist', 'bin', 'capflow.js'), ['step', 'validate-spec', '--repo', remote!.workdir, '--cluster-dir', 'clusters/small', '--outputs', outputs], cwd, {
        ...env,
        CAPFLOW_SCHEMAS_DIR: path.join(copy, 'schemas'),
      });
      expect(res.code, res.stderr).to.equal(0);
      expect(readFileSync(path.join(outputs, 'provider'), 'utf8')).to.equal('aws');
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('capflow --help and --version', async () => {
    const help = await capflow(['--help']);
    expect(help.code, help.stderr).to.equal(0);
    expect(help.stdout).to.match(/Usage: capflow <command>/);
    const version = await capflow(['--version']);
    expect(version.code, version.stderr).to.equal(0);
    expect(version.stdout.trim()).to.equal((JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version);
  });

  it("every executor's step <id> --help exits 0 and prints the same parameters as the built dist/", async () => {
    const ids = Object.keys(executorModules);
    expect(ids).to.have.length.greaterThan(0);
    const results = await Promise.all(
      ids.map(async (id) => ({
        id,
        bundle: await capflow(['step', id, '--help']),
        dist: await runNode(CAPFLOW_BIN, ['step', id, '--help'], cwd, env),
      })),
    );
    for (const { id, bundle, dist } of results) {
      expect(bundle.code, `${id}: ${bundle.stderr}`).to.equal(0);
      expect(bundle.stdout, id).to.match(new RegExp(`^Usage: capflow step ${id} `));
      expect(bundle.stdout, id).to.match(/\nParameters:\n {2}-p [a-z-]+=/);
      expect(bundle.stdout, id).to.equal(dist.stdout);
    }
  });

  it('runs validate-spec on a cluster folder of a git repository and writes its outputs', async () => {
    const outputs = mkdtempSync(path.join(tmp, 'out-'));
    const res = await capflow(['step', 'validate-spec', '--repo', remote!.workdir, '--cluster-dir', 'clusters/small', '--outputs', outputs]);
    expect(res.code, res.stderr).to.equal(0);
    const lines = res.stdout.trim().split('\n');
    expect(lines).to.have.length(1);
    const summary = JSON.parse(lines[0]!) as Summary;
    expect(summary).to.deep.include({ step: 'validate-spec', status: 'succeeded' });
    expect(readFileSync(path.join(outputs, 'spec-hash'), 'utf8')).to.match(/^[0-9a-f]{64}$/).and.equal(summary.outputs['spec-hash']);
    expect(readFileSync(path.join(outputs, 'provider'), 'utf8')).to.equal('aws');
    for (const line of res.stderr.trim().split('\n')) expect(() => JSON.parse(line) as unknown, line).to.not.throw();
    // the step used the generated validators of the image, not ajv compiling the CRDs at run time
    expect(res.stderr).to.not.match(/GENERATED_VALIDATORS_STALE|SCHEMA_NOT_FOUND/);
  });

  it('runs provision-vpc against moto: the VPC is made, and a rerun makes no mutating call', async () => {
    const aws = { ...awsTestEnv(moto!.endpoint), CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: path.join(tmp, 'secrets') };
    const args = ['step', 'provision-vpc', '--repo', remote!.workdir, '--cluster-dir', 'clusters/small'];
    const first = await capflow([...args, '--outputs', mkdtempSync(path.join(tmp, 'out-'))], aws);
    expect(first.code, first.stderr).to.equal(0);
    const s1 = JSON.parse(first.stdout.trim().split('\n').at(-1)!) as Summary;
    expect(s1.status).to.equal('succeeded');
    expect(s1.awsCalls.mutating).to.be.greaterThan(0);

    const ec2 = new EC2Client(clientConfig(moto!.endpoint));
    const countVpcs = async () => ((await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['false'] }] }))).Vpcs ?? []).length;
    expect(await countVpcs()).to.equal(1);

    const second = await capflow([...args, '--outputs', mkdtempSync(path.join(tmp, 'out-'))], aws);
    expect(second.code, second.stderr).to.equal(0);
    const s2 = JSON.parse(second.stdout.trim().split('\n').at(-1)!) as Summary;
    expect(s2.awsCalls.mutating, JSON.stringify(s2.awsCalls)).to.equal(0);
    expect(await countVpcs()).to.equal(1);
    ec2.destroy();
  });

  it("the reconciler's spec-load worker starts beside the chunk that spawns it", async () => {
    const meta = JSON.parse(readFileSync(path.join(path.dirname(root.dir), 'meta.json'), 'utf8')) as Metafile;
    const spawner = Object.keys(meta.outputs).find((k) => k.endsWith('.js') && 'src/gitops/spec-loads.ts' in meta.outputs[k]!.inputs);
    expect(spawner, 'the chunk holding spec-loads.ts').to.be.a('string');
    // new URL('./spec-load-worker.js', import.meta.url) in that chunk
    expect(path.basename(path.dirname(spawner!))).to.equal('bin');
    const worker = path.join(root.dir, 'dist', 'bin', 'spec-load-worker.js');
    const code = `const { Worker } = require('node:worker_threads'); const w = new Worker(${JSON.stringify(worker)}); w.on('error', (e) => { console.error(e); process.exit(1); }); w.once('message', (m) => { console.log(JSON.stringify(m)); void w.terminate(); });`;
    const res = await runNode('-e', [code], cwd, env);
    expect(res.code, res.stderr).to.equal(0);
    expect(JSON.parse(res.stdout.trim())).to.deep.equal({ ready: true });
    const help = await capflow(['reconcile', '--help']);
    expect(help.code, help.stderr).to.equal(0);
  });

  it("each step's chunk graph holds that executor's code only (validate-spec: no AWS SDK, no Kubernetes client)", () => {
    const meta = JSON.parse(readFileSync(path.join(path.dirname(root.dir), 'meta.json'), 'utf8')) as Metafile;
    const outputs = Object.entries(meta.outputs).filter(([k]) => k.endsWith('.js'));
    const holding = (input: string) => {
      const found = outputs.find(([, o]) => input in o.inputs);
      if (!found) throw new Error(`no output chunk holds ${input}`);
      return found[0];
    };
    /** Inputs of every chunk statically imported from the given chunks: what loading them loads. */
    const loaded = (starts: string[]) => {
      const seen = new Set<string>();
      const stack = [...starts];
      while (stack.length > 0) {
        const k = stack.pop()!;
        if (seen.has(k)) continue;
        seen.add(k);
        for (const i of meta.outputs[k]!.imports) if (i.kind === 'import-statement' && !i.external) stack.push(i.path);
      }
      return [...seen].flatMap((k) => Object.keys(meta.outputs[k]!.inputs));
    };
    const ids = Object.keys(executorModules);
    // `capflow step <id>`: the entry, then (dynamic imports) the step command, executors/lazy.ts, the executor
    const common = ['bin/capflow.ts', 'src/cli/step.ts', 'executors/lazy.ts'].map(holding);
    for (const id of ids) {
      const inputs = loaded([...common, holding(`executors/${id}.ts`)]);
      const others = ids.filter((o) => o !== id && inputs.includes(`executors/${o}.ts`));
      expect(others, `step ${id} loads other executors`).to.deep.equal([]);
      expect(inputs, id).to.not.include('executors/index.ts');
      if (id === 'validate-spec') {
        expect(inputs.filter((i) => /node_modules\/(@aws-sdk|@smithy|@kubernetes)\//.test(i))).to.deep.equal([]);
      }
      // the walk itself sees what a step does load
      if (id === 'provision-vpc') expect(inputs.some((i) => i.includes('node_modules/@aws-sdk/client-ec2/'))).to.equal(true);
    }
  });
});
