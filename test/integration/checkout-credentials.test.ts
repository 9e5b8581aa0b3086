/**
 * The spec checkout at the Workflow's revision, with Git credentials from a Secret mounted as
 * files ($CAPFLOW_GIT_CREDENTIALS_DIR), against real peers on loopback: `git http-backend` behind
 * Basic auth (test/support/git-http.ts) and the test bed's sshd (test/support/ssh-host.ts).
 */
import { chmod, mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { resolveCheckout, type Checkout } from '../../src/core/checkout.js';
import { describeChain, isCapflowError, type CapflowError } from '../../src/core/errors.js';
import { createGitRemote, git, type GitRemote } from '../support/git-remote.js';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http.js';
import { generateEd25519, startSshHost, type SshHost } from '../support/ssh-host.js';
import { freePort } from '../support/ports.js';
import { spawnCapflow, CAPFLOW_BIN } from '../support/cli.js';

const TOKEN = `capflow-test-token-${randomBytes(12).toString('hex')}`;
const WRONG = `capflow-wrong-token-${randomBytes(12).toString('hex')}`;

/** Everything a user could see of an error: message, hint, chain, details, JSON. */
function visible(err: CapflowError): string {
  return [err.message, err.hint ?? '', ...describeChain(err), JSON.stringify(err.details ?? {}), JSON.stringify(err), String(err.stack)].join('\n');
}

async function expectCapflowError(p: Promise<unknown>): Promise<CapflowError> {
  let caught: unknown;
  await p.then(
    () => undefined,
    (e: unknown) => (caught = e),
  );
  if (!isCapflowError(caught)) throw new Error(`expected a coded error, got ${caught === undefined ? 'success' : caught instanceof Error ? caught.message : JSON.stringify(caught)}`);
  return caught;
}

/** Every file under dir (the checkout), as text. */
function allText(dir: string): string {
  let out = '';
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) out += allText(p);
    else if (st.isFile()) out += readFileSync(p, 'latin1');
  }
  return out;
}

/**
 * Samples every process's command line and environment (what `ps e` shows) while a checkout
 * runs, and reports any that holds the needle.
 */
function watchProcesses(needle: string): { stop(): { samples: number; processes: number; hits: string[] } } {
  const hits: string[] = [];
  const seen = new Set<string>();
  let samples = 0;
  const sample = () => {
    samples++;
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid) || pid === String(process.pid)) continue;
      for (const what of ['cmdline', 'environ']) {
        try {
          const text = readFileSync(`/proc/${pid}/${what}`, 'latin1');
          const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0')[0] ?? '';
          seen.add(`${pid}:${argv0}`);
          if (text.includes(needle)) hits.push(`${pid} ${what}: ${text.replace(/\0/g, ' ').slice(0, 200)}`);
        } catch {
          /* gone */
        }
      }
    }
  };
  const timer = setInterval(sample, 3);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { samples, processes: seen.size, hits };
    },
  };
}

describe('checkout with Git credentials from a mounted Secret (HTTP token, SSH key)', function () {
  this.timeout(40_000);
  let repo: GitRemote;
  let first: string;
  let second: string;
  let scratch: string;
  const checkouts: Checkout[] = [];

  /** A credentials directory as a Secret volume makes it: one file per key, mode 0440. */
  async function secretDir(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(join(scratch, 'secret-'));
    for (const [k, v] of Object.entries(files)) {
      await writeFile(join(dir, k), v);
      await chmod(join(dir, k), 0o440);
    }
    return dir;
  }

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'capflow-creds-test-'));
    repo = await createGitRemote();
    first = await repo.commitFiles({ 'clusters/c1/cluster.yaml': 'kind: Cluster\nmetadata:\n  name: c1\n' }, 'first');
    await repo.push();
    await git(repo.workdir, 'tag', '-a', '-m', 'release 1', 'v1');
    await git(repo.workdir, 'push', '--quiet', 'origin', 'v1');
    // The branch moves on after the Workflow was pinned to `first`.
    second = await repo.commitFiles({ 'clusters/c1/cluster.yaml': 'kind: Cluster\nmetadata:\n  name: c1-moved\n' }, 'second');
    await repo.push();
  });
  after(async () => {
    for (const c of checkouts) await rm(c.dir, { recursive: true, force: true });
    await repo?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  describe('over HTTP with a token (git http-backend behind Basic auth)', () => {
    let server: GitHttpServer;
    let url: string;
    before(async () => {
      server = await startGitHttpServer({ projectRoot: dirname(repo.url), username: 'x-access-token', token: TOKEN });
      url = server.url('remote.git');
    });
    after(async () => server?.stop());

    it('checks out exactly the pinned commit though the branch has moved on; the token is in no argv, environment, URL or file of the checkout', async () => {
      const creds = await secretDir({ token: `${TOKEN}\n` });
      // git and ssh run through wrappers that record their argv.
      const wrappers = join(scratch, 'wrappers');
      const argvLog = join(scratch, 'argv.log');
      await mkdir(wrappers, { recursive: true });
      await writeFile(join(wrappers, 'git'), `#!/bin/sh\nprintf 'git %s\\n' "$*" >> ${argvLog}\nexec /usr/bin/git "$@"\n`, { mode: 0o755 });
      const watch = watchProcesses(TOKEN);
      const before = server.requests.length;
      const c = await resolveCheckout(url, first, {
        env: { ...process.env, PATH: `${wrappers}:${process.env.PATH ?? '/usr/bin:/bin'}`, CAPFLOW_GIT_CREDENTIALS_DIR: creds },
      });
      const procs = watch.stop();
      checkouts.push(c);
      expect(c.revision).to.equal(first);
      expect(await git(c.dir, 'rev-parse', 'HEAD')).to.equal(first);
      expect(await readFile(join(c.dir, 'clusters/c1/cluster.yaml'), 'utf8')).to.contain('name: c1\n');
      // The server saw the token's user, after a first unauthenticated request it refused.
      const reqs = server.requests.slice(before);
      expect(reqs[0]).to.include({ status: 401, hadCredentials: false });
      expect(reqs.filter((r) => r.status === 200).every((r) => r.user === 'x-access-token')).to.equal(true);
      // Nowhere to be found: argv of every git run, any process's argv or environment, the checkout.
      const argv = await readFile(argvLog, 'utf8');
      expect(argv).to.match(/^git fetch /m);
      expect(argv).to.not.contain(TOKEN);
      expect(procs.hits, `processes holding the token (${procs.samples} samples of ${procs.processes})`).to.deep.equal([]);
      expect(procs.samples).to.be.greaterThan(1);
      expect(allText(c.dir)).to.not.contain(TOKEN);
      expect(await readFile(join(c.dir, '.git/config'), 'utf8')).to.not.match(/helper|token|password/i);
      expect(await git(c.dir, 'remote', 'get-url', 'origin')).to.equal(url);
    });

    it('resolves a branch name to its commit and an annotated tag to its commit, with a username file', async () => {
      const creds = await secretDir({ token: TOKEN, username: 'x-access-token\n' });
      const onMain = await resolveCheckout(url, 'main', { credentialsDir: creds });
      checkouts.push(onMain);
      expect(onMain.revision).to.equal(second);
      const onTag = await resolveCheckout(url, 'v1', { credentialsDir: creds });
      checkouts.push(onTag);
      expect(onTag.revision).to.equal(first);
      const noRevision = await resolveCheckout(url, undefined, { credentialsDir: creds });
      checkouts.push(noRevision);
      expect(noRevision.revision).to.equal(second);
    });

    it('a wrong token fails with REPO_AUTH_FAILED (exit 2) naming the Secret, and the token is nowhere in the error', async () => {
      const creds = await secretDir({ token: `${WRONG}\n` });
      const leftBefore = readdirSync(tmpdir()).filter((n) => n.startsWith('capflow-checkout-')).length;
      const err = await expectCapflowError(resolveCheckout(url, first, { credentialsDir: creds }));
      expect(err.code).to.equal('REPO_AUTH_FAILED');
      expect(err.exitCode).to.equal(2);
      expect(err.message).to.contain(url).and.to.match(/Authentication failed/);
      expect(err.hint).to.contain('capflow-git-credentials').and.to.contain(creds).and.to.contain('"token"');
      expect(visible(err)).to.not.contain(WRONG).and.to.not.contain(TOKEN);
      // The scratch checkout of a failed fetch is removed.
      expect(readdirSync(tmpdir()).filter((n) => n.startsWith('capflow-checkout-')).length).to.be.at.most(leftBefore);
    });

    it('the same through `capflow step`: exit 2, and no token in anything it prints', async function () {
      if (!existsSync(CAPFLOW_BIN)) this.skip(); // needs `npm run build`
      const creds = await secretDir({ token: `${WRONG}\n` });
      const { done } = spawnCapflow(['step', 'validate-spec', '--repo', url, '--revision', first, '--cluster-dir', 'clusters/c1'], {
        cwd: scratch,
        env: { CAPFLOW_GIT_CREDENTIALS_DIR: creds },
      });
      const r = await done;
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stdout + r.stderr).to.contain('REPO_AUTH_FAILED');
      expect(r.stdout + r.stderr).to.not.contain(WRONG);
    });

    it('no token for a server that wants one: REPO_AUTH_FAILED, no prompt', async () => {
      const creds = await secretDir({});
      const err = await expectCapflowError(resolveCheckout(url, first, { credentialsDir: creds }));
      expect(err.code).to.equal('REPO_AUTH_FAILED');
      expect(err.hint).to.match(/none were given/);
    });

    it('a commit or branch the remote lacks is REVISION_NOT_FOUND (exit 2)', async () => {
      const creds = await secretDir({ token: TOKEN });
      const missing = 'f'.repeat(40);
      const err = await expectCapflowError(resolveCheckout(url, missing, { credentialsDir: creds }));
      expect(err.code).to.equal('REVISION_NOT_FOUND');
      expect(err.exitCode).to.equal(2);
      expect(err.message).to.contain(missing);
      const err2 = await expectCapflowError(resolveCheckout(url, 'no-such-branch', { credentialsDir: creds }));
      expect(err2.code).to.equal('REVISION_NOT_FOUND');
      // A short commit id is found in the branches' history.
      const short = await resolveCheckout(url, first.slice(0, 12), { credentialsDir: creds });
      checkouts.push(short);
      expect(short.revision).to.equal(first);
    });

    it('a revision that could be taken for an option is refused before git runs', async () => {
      const err = await expectCapflowError(resolveCheckout(url, '--upload-pack=touch /tmp/x', { credentialsDir: scratch }));
      expect(err.code).to.equal('REVISION_INVALID');
    });

    it('an unreachable server is transient (exit 75)', async () => {
      const port = await freePort();
      const creds = await secretDir({ token: TOKEN });
      const err = await expectCapflowError(resolveCheckout(`http://127.0.0.1:${port}/remote.git`, first, { credentialsDir: creds }));
      expect(err.code).to.equal('REPO_UNREACHABLE');
      expect(err.exitCode).to.equal(75);
    });

    it('refuses a URL carrying credentials, without repeating them', async () => {
      const withCreds = url.replace('http://', `http://x-access-token:${TOKEN}@`);
      const err = await expectCapflowError(resolveCheckout(withCreds, first, { credentialsDir: scratch }));
      expect(err.code).to.equal('REPO_URL_HAS_CREDENTIALS');
      expect(err.exitCode).to.equal(2);
      expect(err.hint).to.match(/Secret/).and.to.contain('"token"');
      expect(visible(err)).to.not.contain(TOKEN);
      const bareToken = await expectCapflowError(resolveCheckout(url.replace('http://', `http://${TOKEN}@`), first, { credentialsDir: scratch }));
      expect(bareToken.code).to.equal('REPO_URL_HAS_CREDENTIALS');
      expect(visible(bareToken)).to.not.contain(TOKEN);
    });
  });

  describe('over SSH with a deploy key and a pinned host key (the test bed sshd)', () => {
    let host: SshHost;
    let url: string;
    let knownHosts: string;
    before(async () => {
      host = await startSshHost();
      url = `ssh://${host.user}@${host.host}:${host.port}${repo.url}`;
      knownHosts = `[${host.host}]:${host.port} ${host.hostKeyPublic}\n`;
    });
    after(async () => host?.stop());

    it('checks out the pinned commit with the key (0440 in the volume, used through a 0600 copy removed afterwards)', async () => {
      const creds = await secretDir({ 'ssh-privatekey': host.clientPrivateKey, known_hosts: knownHosts });
      const keyCopiesBefore = (await readdir(tmpdir())).filter((n) => n.startsWith('capflow-ssh-'));
      const c = await resolveCheckout(url, first, { credentialsDir: creds });
      checkouts.push(c);
      expect(c.revision).to.equal(first);
      expect(await git(c.dir, 'rev-parse', 'HEAD')).to.equal(first);
      expect(host.log()).to.match(/Accepted publickey for \S+ from 127\.0\.0\.1/);
      expect((await readdir(tmpdir())).filter((n) => n.startsWith('capflow-ssh-'))).to.deep.equal(keyCopiesBefore);
      const keyBody = host.clientPrivateKey.split('\n')[1]!;
      expect(allText(c.dir)).to.not.contain(keyBody);
    });

    it('a host key other than the pinned one fails with REPO_HOST_KEY_MISMATCH before any authentication', async () => {
      const [, other] = await generateEd25519(join(scratch, `other-host-${randomBytes(4).toString('hex')}`), 'not-this-host');
      const creds = await secretDir({ 'ssh-privatekey': host.clientPrivateKey, known_hosts: `[${host.host}]:${host.port} ${other}\n` });
      const logBefore = host.log().length;
      const err = await expectCapflowError(resolveCheckout(url, first, { credentialsDir: creds }));
      expect(err.code).to.equal('REPO_HOST_KEY_MISMATCH');
      expect(err.exitCode).to.equal(2);
      expect(err.message).to.contain(join(creds, 'known_hosts'));
      await new Promise((r) => setTimeout(r, 200));
      const log = host.log().slice(logBefore);
      expect(log).to.match(/Connection (from|closed by) 127\.0\.0\.1/); // it did reach sshd
      expect(log).to.not.match(/publickey|Accepted|Failed|Postponed/);
    });

    it('an ssh URL without known_hosts is refused, naming the file', async () => {
      const creds = await secretDir({ 'ssh-privatekey': host.clientPrivateKey });
      const err = await expectCapflowError(resolveCheckout(url, first, { credentialsDir: creds }));
      expect(err.code).to.equal('REPO_KNOWN_HOSTS_MISSING');
      expect(err.exitCode).to.equal(2);
      expect(err.message).to.contain(join(creds, 'known_hosts'));
    });

    it('a key the server does not accept fails with REPO_AUTH_FAILED', async () => {
      const [stranger] = await generateEd25519(join(scratch, `stranger-${randomBytes(4).toString('hex')}`), 'stranger');
      const creds = await secretDir({ 'ssh-privatekey': stranger, known_hosts: knownHosts });
      const err = await expectCapflowError(resolveCheckout(url, first, { credentialsDir: creds }));
      expect(err.code).to.equal('REPO_AUTH_FAILED');
      expect(err.hint).to.contain('ssh-privatekey');
      expect(visible(err)).to.not.contain(stranger.split('\n')[1]!);
    });
  });
});
