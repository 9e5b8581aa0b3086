/**
 * The SSH and Git half of the test bed: a real sshd on loopback (a BYOH host) and a bare Git remote.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { mkdtemp, rm } from 'node:fs/promises';
import { expect } from 'chai';
import { Client } from 'ssh2';
import { generateEd25519, openSshKeyBlob, startSshHost, type SshHost } from '../support/ssh-host.js';
import { createGitRemote, git, type GitRemote } from '../support/git-remote.js';

interface ExecResult {
  stdout: string;
  stderr: string;
  code: number | null;
}

/**
 * Connect with the host key pinned to `pinned` (an OpenSSH line) and run one command.
 * `events` records how far the connection got ('verify:ok|fail', 'ready', 'exec').
 */
function sshExec(host: SshHost, command: string, pinned: string, events: string[] = []): Promise<ExecResult> {
  const expected = openSshKeyBlob(pinned);
  return new Promise((resolve, reject) => {
    const conn = new Client();
    conn
      .on('ready', () => {
        events.push('ready');
        conn.exec(command, (err, stream) => {
          if (err) return reject(err);
          events.push('exec');
          let stdout = '';
          let stderr = '';
          stream.on('data', (d: Buffer) => (stdout += d.toString()));
          stream.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          stream.on('close', (code: number | null) => {
            conn.end();
            resolve({ stdout, stderr, code });
          });
        });
      })
      .on('error', (err) => reject(err))
      .connect({
        host: host.host,
        port: host.port,
        username: host.user,
        privateKey: host.clientPrivateKey,
        readyTimeout: 10_000,
        hostVerifier: (key: Buffer) => {
          const ok = key.equals(expected);
          events.push(ok ? 'verify:ok' : 'verify:fail');
          return ok;
        },
      });
  });
}

describe('test bed: sshd on loopback (a BYOH host)', function () {
  this.timeout(60_000);
  let host: SshHost;
  let scratch: string;

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'capflow-ssh-test-'));
    host = await startSshHost({
      fakeTools: {
        // A kubelet cannot run here, so kubeadm is a stand-in that records its arguments.
        kubeadm: 'echo "kubeadm $*" >> "$HOME/kubeadm-calls"\necho "fake kubeadm: init done"',
      },
    });
  });
  after(async () => {
    await host?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  it('runs a command over SSH with the host key pinned, and returns its output and exit code', async () => {
    const events: string[] = [];
    const res = await sshExec(host, 'echo hello; id -un; echo to-stderr >&2; exit 3', host.hostKeyPublic, events);
    expect(res.stdout).to.equal(`hello\n${host.user}\n`);
    expect(res.stderr).to.equal('to-stderr\n');
    expect(res.code).to.equal(3);
    expect(events).to.deep.equal(['verify:ok', 'ready', 'exec']);
    expect(host.log()).to.match(/Accepted publickey for \S+ from 127\.0\.0\.1/);
  });

  it('refuses a host whose key differs from the pinned one, before any authentication or command', async () => {
    const marker = join(scratch, 'must-not-exist');
    const [, otherHostKey] = await generateEd25519(join(scratch, 'other_host_key'), 'not-this-host');
    const logBefore = host.log().length;
    const events: string[] = [];
    let error: Error | undefined;
    await sshExec(host, `touch ${marker}`, otherHostKey, events).catch((e: Error) => (error = e));
    expect(error?.message).to.match(/host denied|verification failed/i);
    expect(events).to.deep.equal(['verify:fail']);
    expect(existsSync(marker)).to.equal(false);
    // sshd never saw an authentication attempt on that connection.
    await new Promise((r) => setTimeout(r, 200));
    expect(host.log().slice(logBefore)).to.not.match(/Accepted publickey/);
  });

  it('refuses a client key that is not authorized', async () => {
    const [otherClient] = await generateEd25519(join(scratch, 'other_client_key'), 'stranger');
    const err = await new Promise<Error>((resolve) => {
      const conn = new Client();
      conn
        .on('ready', () => {
          conn.end();
          resolve(new Error('unexpectedly authenticated'));
        })
        .on('error', resolve)
        .connect({
          host: host.host,
          port: host.port,
          username: host.user,
          privateKey: otherClient,
          hostVerifier: (key: Buffer) => key.equals(openSshKeyBlob(host.hostKeyPublic)),
        });
    });
    expect(err.message).to.match(/All configured authentication methods failed/);
  });

  it('runs a fake tool from fakeBinDir first on PATH (fake kubeadm: no kubelet can run here)', async () => {
    const res = await sshExec(host, 'command -v kubeadm && kubeadm init --config /tmp/x.yaml', host.hostKeyPublic);
    expect(res.code).to.equal(0);
    expect(res.stdout).to.equal(`${join(host.fakeBinDir, 'kubeadm')}\nfake kubeadm: init done\n`);
    expect(await readFile(join(host.home, 'kubeadm-calls'), 'utf8')).to.equal('kubeadm init --config /tmp/x.yaml\n');
    // The real tools are still reachable after the fakes.
    const env = await sshExec(host, 'echo "$PATH"; echo "$HOME"; command -v sh', host.hostKeyPublic);
    expect(env.stdout).to.equal(`${host.fakeBinDir}:/usr/bin:/bin\n${host.home}\n/usr/bin/sh\n`);
  });

  it('accepts the extra authorized keys it was given', async () => {
    const [priv, pub] = await generateEd25519(join(scratch, 'extra_client_key'), 'extra');
    const other = await startSshHost({ authorizedKeys: [pub] });
    try {
      const res = await sshExec({ ...other, clientPrivateKey: priv }, 'echo extra-ok', other.hostKeyPublic);
      expect(res.stdout).to.equal('extra-ok\n');
      expect(other.port).to.not.equal(host.port);
    } finally {
      await other.stop();
    }
    expect(existsSync(other.dir)).to.equal(false);
  });
});

describe('test bed: a Git remote for GitOps specs', function () {
  this.timeout(60_000);
  let repo: GitRemote;

  beforeEach(async () => {
    repo = await createGitRemote();
  });
  afterEach(async () => {
    await repo?.stop();
  });

  const clusterYaml = (replicas: number) =>
    [
      'apiVersion: cluster.x-k8s.io/v1beta1',
      'kind: MachineDeployment',
      'metadata:',
      '  name: c1-md-0',
      'spec:',
      '  clusterName: c1',
      `  replicas: ${replicas}`,
      '',
    ].join('\n');

  it('commits cluster spec files, pushes them, and a fresh clone sees them', async () => {
    expect(await repo.head()).to.equal(undefined);
    const sha = await repo.commitFiles(
      {
        'clusters/c1/cluster.yaml': 'apiVersion: cluster.x-k8s.io/v1beta1\nkind: Cluster\nmetadata:\n  name: c1\n',
        'clusters/c1/machines.yaml': clusterYaml(2),
      },
      'add cluster c1',
    );
    expect(sha).to.match(/^[0-9a-f]{40}$/);
    expect(await repo.head(), 'not pushed yet').to.equal(undefined);
    await repo.push();
    expect(await repo.head()).to.equal(sha);

    const clone = await repo.clone();
    expect(await readFile(join(clone, 'clusters/c1/machines.yaml'), 'utf8')).to.equal(clusterYaml(2));
    expect(await git(clone, 'rev-parse', 'HEAD')).to.equal(sha);
    expect(await git(clone, 'rev-parse', '--abbrev-ref', 'HEAD')).to.equal('main');
    expect(await git(clone, 'log', '-1', '--format=%an <%ae>|%s')).to.equal('capflow test <test@capflow.invalid>|add cluster c1');
  });

  it('a second commit (change one file, delete another) moves HEAD and a pull sees it', async () => {
    const first = await repo.commitFiles(
      { 'clusters/c1/machines.yaml': clusterYaml(2), 'clusters/c1/obsolete.yaml': 'kind: ConfigMap\n' },
      'first',
    );
    await repo.push();
    const clone = await repo.clone();

    const second = await repo.commitFiles(
      { 'clusters/c1/machines.yaml': clusterYaml(5), 'clusters/c1/obsolete.yaml': null },
      'scale c1 to 5',
    );
    await repo.push();
    expect(second).to.not.equal(first);
    expect(await repo.head()).to.equal(second);

    await git(clone, 'pull', '--quiet', '--ff-only');
    expect(await git(clone, 'rev-parse', 'HEAD')).to.equal(second);
    expect(await readFile(join(clone, 'clusters/c1/machines.yaml'), 'utf8')).to.equal(clusterYaml(5));
    expect(existsSync(join(clone, 'clusters/c1/obsolete.yaml'))).to.equal(false);
    expect(await git(clone, 'diff', '--name-status', first, second)).to.equal(
      'M\tclusters/c1/machines.yaml\nD\tclusters/c1/obsolete.yaml',
    );
  });

  it('refuses paths outside the repository', async () => {
    let err: Error | undefined;
    await repo.commitFiles({ '../escape.yaml': 'x' }, 'bad').catch((e: Error) => (err = e));
    expect(err?.message).to.match(/outside the repository/);
  });
});
