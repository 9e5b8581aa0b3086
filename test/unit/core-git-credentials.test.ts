import { expect } from 'chai';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  assertNoUrlCredentials,
  assertSafeRevision,
  classifyGitFailure,
  CREDENTIAL_HELPER,
  gitCredentialsDir,
  prepareGitAuth,
  repoTransport,
  scrubGitOutput,
  shellQuote,
} from '../../src/core/git-credentials.js';
import { isCapflowError } from '../../src/core/errors.js';
import { capflowErrorOf } from '../support/errors.js';


// Made up, in no known token shape (so that only capflow's own scrubbing can hide it).
const SECRET = ['not', 'a', 'real', 'token', '7f3a9c'].join('-');

describe('git credentials (pure parts)', () => {
  it('tells http, ssh and other transports apart', () => {
    expect(repoTransport('https://github.com/o/r.git')).to.equal('http');
    expect(repoTransport('http://127.0.0.1:8080/r.git')).to.equal('http');
    expect(repoTransport('ssh://git@github.com/o/r.git')).to.equal('ssh');
    expect(repoTransport('git@github.com:o/r.git')).to.equal('ssh');
    expect(repoTransport('file:///srv/r.git')).to.equal('other');
    expect(repoTransport('git://host/r.git')).to.equal('other');
  });

  it('refuses credentials in a URL without repeating them; a plain ssh user is fine', () => {
    for (const url of [`https://x-access-token:${SECRET}@github.com/o/r.git`, `https://${SECRET}@github.com/o/r.git`, `ssh://git:${SECRET}@host/r.git`]) {
      const err = capflowErrorOf(() => assertNoUrlCredentials(url));
      expect(err.code).to.equal('REPO_URL_HAS_CREDENTIALS');
      expect(err.exitCode).to.equal(2);
      expect(`${err.message} ${err.hint ?? ''}`).to.not.contain(SECRET);
      expect(err.hint).to.contain('capflow-git-credentials').and.to.contain('"token"');
    }
    expect(() => assertNoUrlCredentials('ssh://git@github.com/o/r.git')).to.not.throw();
    expect(() => assertNoUrlCredentials('git@github.com:o/r.git')).to.not.throw();
    expect(() => assertNoUrlCredentials('https://github.com/o/r.git')).to.not.throw();
  });

  it('accepts commit ids, branches and tags, refuses what git could read as an option', () => {
    for (const ok of ['HEAD', 'a'.repeat(40), 'main', 'release/1.2', 'v1.0.0', 'refs/heads/main']) expect(() => assertSafeRevision(ok)).to.not.throw();
    for (const bad of ['--upload-pack=x', '-h', 'a b', 'main..dev', 'x:y', 'a\nb', '', 'HEAD@{1}']) {
      expect(capflowErrorOf(() => assertSafeRevision(bad)).code, bad).to.equal('REVISION_INVALID');
    }
  });

  it('reads the directory from $CAPFLOW_GIT_CREDENTIALS_DIR', () => {
    expect(gitCredentialsDir({ CAPFLOW_GIT_CREDENTIALS_DIR: '/x/y' })).to.equal('/x/y');
    if (!existsSync('/var/run/capflow/git')) expect(gitCredentialsDir({})).to.equal(undefined);
  });

  it('quotes for the shell', () => {
    expect(shellQuote("/a b/it's")).to.equal(`'/a b/it'\\''s'`);
  });

  it('scrubs the token and URL credentials from what git printed', () => {
    const out = scrubGitOutput(`fatal: Authentication failed for 'https://u:${SECRET}@h/r.git/' (${SECRET})`, [SECRET]);
    expect(out).to.not.contain(SECRET);
    expect(out).to.contain('https://***@h/r.git/');
  });

  describe('prepareGitAuth', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'capflow-gitcreds-unit-'));
    });
    afterEach(async () => rm(dir, { recursive: true, force: true }));

    it('an http URL with a token: a helper scoped to the server, reading the file; the token is in no variable', async () => {
      await writeFile(join(dir, 'token'), `${SECRET}\n`);
      await writeFile(join(dir, 'ca.crt'), 'cert');
      const auth = await prepareGitAuth('https://git.example.com/o/r.git', {
        env: { PATH: '/usr/bin', GIT_ASKPASS: '/bin/echo', GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'credential.helper', GIT_CONFIG_VALUE_0: 'store' },
        credentialsDir: dir,
      });
      expect(auth.method).to.equal('token');
      expect(auth.secrets).to.deep.equal([SECRET]);
      expect(JSON.stringify(auth.env)).to.not.contain(SECRET);
      expect(auth.env.GIT_ASKPASS).to.equal(undefined);
      expect(auth.env.GIT_TERMINAL_PROMPT).to.equal('0');
      const config: Record<string, string> = {};
      for (let i = 0; i < Number(auth.env.GIT_CONFIG_COUNT); i++) config[auth.env[`GIT_CONFIG_KEY_${i}`]!] = auth.env[`GIT_CONFIG_VALUE_${i}`]!;
      expect(config).to.deep.equal({
        'credential.helper': '',
        'http.sslCAInfo': join(dir, 'ca.crt'),
        'credential.https://git.example.com.helper': CREDENTIAL_HELPER,
      });
      expect(auth.env.CAPFLOW_GIT_TOKEN_FILE).to.equal(join(dir, 'token'));
    });

    it('an ssh URL: a 0600 copy of the key, the pinned known_hosts, strict checking, batch mode; cleanup removes the copy', async () => {
      await writeFile(join(dir, 'ssh-privatekey'), 'KEY');
      await chmod(join(dir, 'ssh-privatekey'), 0o440);
      await writeFile(join(dir, 'known_hosts'), 'host ssh-ed25519 AAAA\n');
      const auth = await prepareGitAuth('git@host:o/r.git', { env: {}, credentialsDir: dir });
      const cmd = auth.env.GIT_SSH_COMMAND!;
      expect(cmd).to.match(/^ssh /).and.to.contain('StrictHostKeyChecking=yes').and.to.contain('BatchMode=yes').and.to.contain('IdentitiesOnly=yes');
      expect(cmd).to.contain(`UserKnownHostsFile='${join(dir, 'known_hosts')}'`);
      const copy = /-i '([^']+)'/.exec(cmd)![1]!;
      expect((await stat(copy)).mode & 0o777).to.equal(0o600);
      await auth.cleanup();
      expect(existsSync(copy)).to.equal(false);
    });

    it('an ssh URL without known_hosts is an input error naming the file', async () => {
      let err: unknown;
      await prepareGitAuth('ssh://git@host/r.git', { env: {}, credentialsDir: dir }).catch((e: unknown) => (err = e));
      expect(isCapflowError(err) && err.code).to.equal('REPO_KNOWN_HOSTS_MISSING');
      expect((err as Error).message).to.contain(join(dir, 'known_hosts'));
    });
  });

  describe('classifyGitFailure', () => {
    const auth = { dir: '/var/run/capflow/git', method: 'token' as const, knownHosts: undefined };
    const classify = (stderr: string, a: Parameters<typeof classifyGitFailure>[0]['auth'] = auth) =>
      classifyGitFailure({ repo: 'https://h/r.git', revision: 'a'.repeat(40), stderr, auth: a });
    const cases: Array<[string, string, number]> = [
      ["remote: authentication required\nfatal: Authentication failed for 'https://h/r.git/'", 'REPO_AUTH_FAILED', 2],
      ["fatal: could not read Username for 'https://h': terminal prompts disabled", 'REPO_AUTH_FAILED', 2],
      ['git@h: Permission denied (publickey).\r\nfatal: Could not read from remote repository.', 'REPO_AUTH_FAILED', 2],
      ['No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\nHost key verification failed.\r\nfatal: Could not read from remote repository.', 'REPO_HOST_KEY_MISMATCH', 2],
      ['@@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@@\nHost key verification failed.', 'REPO_HOST_KEY_MISMATCH', 2],
      ['fatal: remote error: upload-pack: not our ref ffff', 'REVISION_NOT_FOUND', 2],
      ["fatal: couldn't find remote ref nope", 'REVISION_NOT_FOUND', 2],
      ["fatal: unable to access 'https://h/r.git/': SSL certificate problem: self-signed certificate", 'REPO_TLS_UNTRUSTED', 2],
      ["fatal: unable to access 'http://127.0.0.1:9/x.git/': Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server", 'REPO_UNREACHABLE', 75],
      ["fatal: unable to access 'https://h/r.git/': Could not resolve host: h", 'REPO_UNREACHABLE', 75],
      ["fatal: unable to access 'https://h/r.git/': The requested URL returned error: 502", 'REPO_UNREACHABLE', 75],
      ['ssh: connect to host h port 22: Connection refused\r\nfatal: Could not read from remote repository.', 'REPO_UNREACHABLE', 75],
      // A repository not there yet (the argo test creates it late): retried.
      ["fatal: '/srv/late.git' does not appear to be a git repository\nfatal: Could not read from remote repository.", 'REPO_UNAVAILABLE', 75],
      // ssh as a uid without a passwd entry (an image's arbitrary uid): a bug of the image, not the user's.
      ['No user exists for uid 65532\r\nfatal: Could not read from remote repository.', 'GIT_SSH_NO_USER', 1],
      ['fatal: something new', 'REPO_FETCH_FAILED', 75],
    ];
    for (const [stderr, code, exit] of cases) {
      it(`${code} (exit ${exit}) for: ${stderr.split('\n')[0]!.trim().slice(0, 60)}`, () => {
        const err = classify(stderr);
        expect(err.code).to.equal(code);
        expect(err.exitCode).to.equal(exit);
      });
    }

    it('names the known_hosts file for a host key mismatch, and the Secret for refused credentials', () => {
      const hk = classify('Host key verification failed.', { dir: '/d', method: 'ssh-key', knownHosts: '/d/known_hosts' });
      expect(hk.message).to.contain('/d/known_hosts');
      expect(hk.hint).to.contain('known_hosts');
      const auth401 = classify("fatal: Authentication failed for 'https://h/r.git/'");
      expect(auth401.hint).to.contain('capflow-git-credentials').and.to.contain('/var/run/capflow/git');
      expect(auth401.message).to.contain('git said: fatal: Authentication failed');
    });
  });
});
