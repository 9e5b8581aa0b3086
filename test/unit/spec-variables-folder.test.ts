/**
 * A cluster folder carries its own variable values (cluster.env beside the specs), read alike by
 * validate, render, every step and the reconciler; and the bounds of validate-spec's vars-file and
 * use-env parameters, tried through the built command as Argo runs it.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { formatProblem, loadClusterSpec, validateClusterSpec } from '../../src/spec/index.js';
import { CAPFLOW_BIN, spawnCapflow, type CliResult } from '../support/cli.js';
import { cleanupSpecFolders, displayRootOf, minimalAws, specFolder, AWS_CLUSTER, CLUSTER } from '../fixtures/spec/support.js';

/** AWS's documented example key id and a PEM label, assembled here so no key-shaped text is committed. */
const FAKE_KEY_ID = ['AKIA', 'IOSFODNN7EXAMPLE'].join('');
const FAKE_PEM_LABEL = ['RSA', 'PRIVATE', 'KEY'].join(' ');

const TEMPLATED = `${CLUSTER.replace(/name: dev\n/g, 'name: ${CLUSTER_NAME}\n').replace('name: dev-control-plane', 'name: ${CLUSTER_NAME}-control-plane')}---
${AWS_CLUSTER.replace('name: dev', 'name: ${CLUSTER_NAME}').replace('region: us-east-1', 'region: ${AWS_REGION:=us-east-1}')}`;

/** A templated folder whose workers and control plane name the cluster `dev` (so CLUSTER_NAME=dev loads). */
function templated(extra: Record<string, string> = {}): Record<string, string> {
  return minimalAws({ 'cluster.yaml': TEMPLATED, ...extra });
}

const SHADOW_LINE = 'root:$6$s3cr3tHASHxyz$AbCdEf0123456789:19000:0:99999:7:::';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

describe('spec variables carried by the cluster folder (cluster.env)', function () {
  this.timeout(60_000);
  after(cleanupSpecFolders);

  describe('loading', () => {
    it('a folder with cluster.env loads with no options, as every step and the reconciler load it', async () => {
      const dir = await specFolder(templated({ 'cluster.env': '# values for this cluster\nCLUSTER_NAME=dev\nAWS_REGION=eu-west-1\n' }));
      const model = await loadClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(model.name).to.equal('dev');
      expect(model.infrastructure.spec).to.include({ region: 'eu-west-1' });
    });

    it('values given by --vars, --env or explicitly win over cluster.env', async () => {
      const dir = await specFolder(templated({ 'cluster.env': 'CLUSTER_NAME=dev\nAWS_REGION=eu-west-1\n' }));
      const { model, problems } = await validateClusterSpec(dir, { vars: { AWS_REGION: 'eu-west-2' }, displayRoot: displayRootOf(dir) });
      expect(problems.filter((p) => p.severity === 'error').map(formatProblem)).to.deep.equal([]);
      expect(model?.infrastructure.spec).to.include({ region: 'eu-west-2' });
    });

    it('a changed cluster.env value changes the spec hash the reconciler compares', async () => {
      const { specHash } = await import('../../src/spec/index.js');
      const a = await specFolder(templated({ 'cluster.env': 'CLUSTER_NAME=dev\nAWS_REGION=eu-west-1\n' }));
      const b = await specFolder(templated({ 'cluster.env': 'CLUSTER_NAME=dev\nAWS_REGION=eu-west-2\n' }));
      expect(specHash(await loadClusterSpec(a, { displayRoot: displayRootOf(a) }))).to.not.equal(specHash(await loadClusterSpec(b, { displayRoot: displayRootOf(b) })));
    });

    const HINT = 'hint: cluster.env holds KEY=value lines of non-secret values';
    const refused: Array<{ name: string; env: string; problem: string; secret?: string }> = [
      {
        name: 'a credential name in cluster.env is refused at its line',
        env: 'CLUSTER_NAME=dev\nAWS_SECRET_ACCESS_KEY=abcdefgh12345678\n',
        problem: `clusters/test/cluster.env:2:1 AWS_SECRET_ACCESS_KEY looks like a credential name; cluster.env is committed to Git and must not hold secrets ${HINT}`,
        secret: 'abcdefgh12345678',
      },
      {
        name: 'a token name in cluster.env is refused even when the specs do not use it',
        env: 'CLUSTER_NAME=dev\nGITHUB_TOKEN=ghp_aaaaaaaaaaaaaaaaaaaaaaaa\n',
        problem: `clusters/test/cluster.env:2:1 GITHUB_TOKEN looks like a credential name; cluster.env is committed to Git and must not hold secrets ${HINT}`,
        secret: 'ghp_aaaaaaaaaaaaaaaaaaaaaaaa',
      },
      {
        name: 'an AWS access key id under an innocent name is refused at its line',
        env: `OWNER=${FAKE_KEY_ID}\nCLUSTER_NAME=dev\n`,
        problem: `clusters/test/cluster.env:1:1 the value of OWNER looks like a credential (an access key id, a private key or a token); cluster.env is committed to Git and must not hold secrets ${HINT}`,
        secret: FAKE_KEY_ID,
      },
      {
        name: 'a private key under an innocent name is refused at its line',
        env: `CLUSTER_NAME=dev\nCA="-----BEGIN ${FAKE_PEM_LABEL}-----\\nMIIEowIBAAKCAQEA\\n-----END ${FAKE_PEM_LABEL}-----"\n`,
        problem: `clusters/test/cluster.env:2:1 the value of CA looks like a credential (an access key id, a private key or a token); cluster.env is committed to Git and must not hold secrets ${HINT}`,
        secret: 'MIIEowIBAAKCAQEA',
      },
      {
        name: 'a line that is not KEY=value is refused at its line without quoting it',
        env: `CLUSTER_NAME=dev\n${SHADOW_LINE}\n`,
        problem: `clusters/test/cluster.env:2:1 expected KEY=value (a name of letters, digits and _, then =) ${HINT}`,
        secret: 's3cr3tHASHxyz',
      },
    ];
    for (const c of refused) {
      it(c.name, async () => {
        const dir = await specFolder(templated({ 'cluster.env': c.env }));
        const { model, problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
        expect(model).to.equal(undefined);
        expect(problems.map(formatProblem)).to.deep.equal([c.problem]);
        if (c.secret) expect(JSON.stringify(problems)).to.not.contain(c.secret);
      });
    }

    it('a cluster.env that is a symlink is refused (it could lead out of the repository)', async () => {
      const dir = await specFolder(templated());
      const outside = path.join(dir, '..', '..', 'outside.env');
      await writeFile(outside, 'CLUSTER_NAME=dev\n');
      await symlink(outside, path.join(dir, 'cluster.env'));
      const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(problems.map(formatProblem)).to.deep.equal([
        `clusters/test/cluster.env cluster.env must be a regular file, not a symlink (it could lead outside the repository) ${HINT}`,
      ]);
    });

    it('a value with a line break in cluster.env is refused where it is used', async () => {
      const dir = await specFolder(templated({ 'cluster.env': 'CLUSTER_NAME="dev\\n  namespace: kube-system"\n' }));
      const { problems } = await validateClusterSpec(dir, { displayRoot: displayRootOf(dir) });
      expect(problems.map(formatProblem)).to.include(
        'clusters/test/cluster.yaml:4:9 the value of ${CLUSTER_NAME} holds a line break, which would change the YAML structure here (new keys or documents) hint: keep variable values on one line',
      );
    });
  });

  describe('the built command (validate-spec as Argo runs it; render; step --vars)', () => {
    let work: string;
    let repo: string;
    let outside: string;

    before(function () {
      if (!existsSync(CAPFLOW_BIN)) throw new Error(`${CAPFLOW_BIN} is missing: run "npm run build" first`);
    });
    beforeEach(async () => {
      work = await mkdtemp(path.join(os.tmpdir(), 'capflow-vars-'));
      repo = path.join(work, 'repo');
      outside = path.join(work, 'outside');
      await mkdir(path.join(repo, 'clusters', 'dev'), { recursive: true });
      await mkdir(outside, { recursive: true });
      for (const [name, text] of Object.entries(templated())) await writeFile(path.join(repo, 'clusters', 'dev', name), text);
      await writeFile(path.join(outside, 'shadow'), `${SHADOW_LINE}\nbin:*:19000:0:99999:7:::\n`);
    });
    afterEach(async () => {
      await rm(work, { recursive: true, force: true });
    });

    const step = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult & { outputs: Record<string, string> }> => {
      const outputs = path.join(work, 'out');
      return spawnCapflow(['step', 'validate-spec', '--repo', repo, '--cluster-dir', 'clusters/dev', '--outputs', outputs, ...args], { cwd: work, env }).done.then(async (r) => {
        const files = existsSync(outputs) ? await readdir(outputs) : [];
        const values = Object.fromEntries(await Promise.all(files.map(async (f) => [f, await readFile(path.join(outputs, f), 'utf8')] as const)));
        return { ...r, outputs: values };
      });
    };
    const summaryOf = (r: CliResult): { status: string; exitCode: number; error?: { code: string; message: string }; outputs: Record<string, string> } =>
      JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as { status: string; exitCode: number; error?: { code: string; message: string }; outputs: Record<string, string> };

    it('a folder carrying cluster.env runs validate-spec with no parameters (what cluster-apply runs)', async () => {
      await writeFile(path.join(repo, 'clusters', 'dev', 'cluster.env'), 'CLUSTER_NAME=dev\n');
      const r = await step([]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.outputs['cluster-name']).to.equal('dev');
    });

    it('without cluster.env the same folder is refused before anything else, naming cluster.env', async () => {
      const r = await step([]);
      expect(r.code).to.equal(2);
      expect(summaryOf(r).error?.message).to.contain('hint: put KEY=value lines in cluster.env beside the specs');
    });

    it('capflow step --vars gives values over cluster.env', async () => {
      await writeFile(path.join(repo, 'clusters', 'dev', 'cluster.env'), 'CLUSTER_NAME=other\n');
      await writeFile(path.join(work, 'mine.env'), 'CLUSTER_NAME=dev\n');
      const r = await step(['--vars', path.join(work, 'mine.env')]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.outputs['cluster-name']).to.equal('dev');
    });

    it('capflow render of a folder carrying cluster.env renders, and warns that --vars values are not carried', async () => {
      await writeFile(path.join(repo, 'clusters', 'dev', 'cluster.env'), 'CLUSTER_NAME=dev\n');
      const plain = await spawnCapflow(['render', path.join(repo, 'clusters', 'dev')], { cwd: work }).done;
      expect(plain.code, plain.stderr).to.equal(0);
      expect(plain.stdout).to.contain('dev');
      await writeFile(path.join(work, 'mine.env'), 'AWS_REGION=eu-west-2\n');
      const withVars = await spawnCapflow(['render', path.join(repo, 'clusters', 'dev'), '--vars', path.join(work, 'mine.env')], { cwd: work }).done;
      expect(withVars.code, withVars.stderr).to.equal(0);
      expect(withVars.stderr).to.contain('warning: the Workflow carries no variable values');
    });

    const escapes: Array<{ name: string; param: () => Promise<string> }> = [
      { name: 'a relative path climbing out of the checkout', param: async () => '../outside/shadow' },
      { name: 'an absolute path outside the checkout', param: async () => path.join(outside, 'shadow') },
      // Refused as outside whether or not the file exists there: the answer is no probe of the host's files.
      { name: 'a path outside the checkout that does not exist', param: async () => '../../no/such/file.env' },
      {
        name: 'a symlink inside the checkout leading out of it',
        param: async () => {
          await symlink(path.join(outside, 'shadow'), path.join(repo, 'vars.env'));
          return 'vars.env';
        },
      },
    ];
    for (const c of escapes) {
      it(`vars-file as ${c.name} is refused (exit 2) and nothing of the file is printed`, async () => {
        const r = await step(['-p', `vars-file=${await c.param()}`]);
        expect(r.code).to.equal(2);
        expect(summaryOf(r).error?.code).to.equal('VARS_FILE_OUTSIDE_REPO');
        expect(r.stdout + r.stderr).to.not.contain('s3cr3tHASHxyz');
        expect(r.stdout + r.stderr).to.not.contain('root:');
      });
    }

    it('vars-file inside the checkout that is not a variables file is refused by file:line, its lines never quoted', async () => {
      await writeFile(path.join(repo, 'notes.txt'), `${SHADOW_LINE}\n`);
      const r = await step(['-p', 'vars-file=notes.txt']);
      expect(r.code).to.equal(2);
      expect(summaryOf(r).error).to.include({ code: 'VARS_FILE_INVALID' });
      expect(summaryOf(r).error?.message).to.match(/notes\.txt:1: expected KEY=value/);
      expect(r.stdout + r.stderr).to.not.contain('s3cr3tHASHxyz');
    });

    it('use-env does not substitute a credential variable: exit 2, and its value reaches neither stdout, stderr nor an output', async () => {
      await writeFile(path.join(repo, 'clusters', 'dev', 'cluster.yaml'), TEMPLATED.replace('cni: calico', 'cni: ${AWS_SECRET_ACCESS_KEY}'));
      const r = await step(['-p', 'use-env=true'], { CLUSTER_NAME: 'dev', AWS_SECRET_ACCESS_KEY: SECRET });
      expect(r.code).to.equal(2);
      expect(summaryOf(r).error?.message).to.contain('variable AWS_SECRET_ACCESS_KEY looks like a credential and is never substituted');
      expect(r.stdout + r.stderr + JSON.stringify(r.outputs)).to.not.contain(SECRET);
    });

    it('use-env refuses a credential value reaching an output through another variable, without printing it', async () => {
      const token = 's3cretvalue42';
      const r = await step(['-p', 'use-env=true'], { CLUSTER_NAME: token, MY_API_TOKEN: token });
      expect(r.code).to.equal(2);
      // The loader already refuses a value holding a credential variable's value (before anything
      // is printed); the step's own last net (VARIABLE_SECRET) is behind it.
      expect(summaryOf(r).error?.code).to.equal('SPEC_INVALID');
      expect(summaryOf(r).error?.message).to.contain('the value of CLUSTER_NAME looks like a credential');
      expect(r.outputs).to.deep.equal({});
      expect(r.stdout + r.stderr + JSON.stringify(r.outputs)).to.not.contain(token);
    });

    it('capflow validate --env and render --env refuse such a value too, printing nothing of it', async () => {
      const token = 's3cretvalue42';
      for (const args of [['validate', path.join(repo, 'clusters', 'dev'), '--env', '--json'], ['render', path.join(repo, 'clusters', 'dev'), '--env']]) {
        const r = await spawnCapflow(args, { cwd: work, env: { CLUSTER_NAME: `x${token}`, MY_API_TOKEN: token } }).done;
        expect(r.code, args[0]).to.equal(2);
        expect(r.stdout + r.stderr, args[0]).to.contain('the value of CLUSTER_NAME looks like a credential').and.not.contain(token);
      }
    });

    it('a cluster.env value equal to a credential variable of the environment is refused at its line', async () => {
      const token = 's3cretvalue42';
      await writeFile(path.join(repo, 'clusters', 'dev', 'cluster.env'), `CLUSTER_NAME=${token}\n`);
      const r = await step([], { MY_API_TOKEN: token });
      expect(r.code).to.equal(2);
      expect(summaryOf(r).error?.message).to.contain('cluster.env:1:1 the value of CLUSTER_NAME looks like a credential');
      expect(r.stdout + r.stderr + JSON.stringify(r.outputs)).to.not.contain(token);
    });

    it('use-env with ordinary values still validates and outputs the cluster name', async () => {
      const r = await step(['-p', 'use-env=true'], { CLUSTER_NAME: 'dev' });
      expect(r.code, r.stderr).to.equal(0);
      expect(r.outputs['cluster-name']).to.equal('dev');
    });
  });
});
