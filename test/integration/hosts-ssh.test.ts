/**
 * The SSH transport (src/hosts/ssh.ts) against real OpenSSH servers on loopback ports
 * (test/support/ssh-host.ts): pinned keys in both forms, a wrong key refused before any
 * authentication, trust on first use, a jump host, timeouts and redaction.
 */
import { expect } from 'chai';
import { createServer, type Server } from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/core/logger.js';
import { HostCommandError } from '../../src/hosts/shell.js';
import { SshHost, fingerprintOf, keyLineOf, parseHostKeyPin, type SshTarget } from '../../src/hosts/ssh.js';
import { openSshKeyBlob, startSshHost, type SshHost as TestSshd } from '../support/ssh-host.js';
import { isCapflowError, type CapflowError } from '../../src/core/errors.js';
import { LOOPBACK, freePort } from '../support/ports.js';

function recordingLogger(): { log: Logger; text: () => string } {
  let text = '';
  const stream = new Writable({ write(chunk, _enc, cb) { text += String(chunk); cb(); } });
  return { log: createLogger({ format: 'json', stream, level: 'debug' }), text: () => text };
}

/** The capflow error a rejected call gave. */
function thrown(e: unknown): CapflowError {
  if (isCapflowError(e)) return e;
  throw e instanceof Error ? e : new Error(`expected a capflow error, got ${String(e)}`);
}

function targetOf(sshd: TestSshd, over: Partial<SshTarget> = {}): SshTarget {
  return { name: 'host-a', address: sshd.host, port: sshd.port, user: sshd.user, hostKey: sshd.hostKeyPublic, where: 'hosts.yaml:7:5', ...over };
}

describe('hosts: the SSH transport against real sshd', function () {
  this.timeout(60_000);
  let sshd: TestSshd;
  let other: TestSshd;

  before(async () => {
    sshd = await startSshHost();
    other = await startSshHost();
  });
  after(async () => {
    await sshd?.stop();
    await other?.stop();
  });

  it('runs commands as the pinned host, with exit codes, stdin and counts', async () => {
    const { log, text } = recordingLogger();
    const host = await SshHost.connect(targetOf(sshd), { privateKey: sshd.clientPrivateKey, log });
    try {
      expect((await host.run('echo hello; echo oops >&2')).stdout).to.equal('hello\n');
      expect((await host.run('cat', { stdin: 'from stdin' })).stdout).to.equal('from stdin');
      expect((await host.run('exit 3', { okCodes: [0, 3] })).code).to.equal(3);
      const err = await host.run('echo broken >&2; exit 4', { mutating: true }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(HostCommandError);
      expect((err as HostCommandError).exitCode).to.equal(75);
      expect((err as HostCommandError).message).to.include('exited 4').and.include('broken');
      expect(host.counts).to.deep.equal({ mutating: 1, read: 3 });
      expect(host.keySeen).to.equal(undefined);
    } finally {
      host.close();
    }
    const lines = text().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.find((l) => String(l.message).includes('echo hello'))).to.include({ exit: 0, host: 'host-a' });
    expect(lines.find((l) => String(l.message).includes('exit 4'))).to.include({ exit: 4, level: 'warn', mutating: true });
  });

  it('takes a pinned SHA256 fingerprint as well as a key line', async () => {
    const fingerprint = fingerprintOf(openSshKeyBlob(sshd.hostKeyPublic));
    expect(parseHostKeyPin(fingerprint)).to.include({ kind: 'fingerprint' });
    const host = await SshHost.connect(targetOf(sshd, { hostKey: fingerprint }), { privateKey: sshd.clientPrivateKey, log: recordingLogger().log });
    try {
      expect((await host.run('echo ok')).stdout).to.equal('ok\n');
    } finally {
      host.close();
    }
  });

  it('a wrong host key aborts before authentication: nothing is sent, nothing runs', async () => {
    const marker = join(sshd.home, 'should-not-exist');
    const before = sshd.log().length;
    const err = await SshHost.connect(targetOf(sshd, { hostKey: other.hostKeyPublic }), { privateKey: sshd.clientPrivateKey, log: recordingLogger().log })
      .then(async (h) => h.run(`touch ${marker}`))
      .catch((e: unknown) => e);
    const e = thrown(err);
    expect(e.code).to.equal('HOST_KEY_MISMATCH');
    expect(e.exitCode).to.equal(3);
    expect(e.message).to.include(fingerprintOf(openSshKeyBlob(sshd.hostKeyPublic))).and.include('hosts.yaml:7:5');
    await new Promise((r) => setTimeout(r, 300));
    const seen = sshd.log().slice(before);
    // sshd saw a connection and no user authentication at all (no "Accepted", "Failed" or "Postponed").
    expect(seen).to.match(/Connection (from|closed|reset)|preauth/);
    expect(seen).to.not.match(/Accepted|Failed publickey|Postponed|userauth/i);
    expect(existsSync(marker)).to.equal(false);
  });

  it('trusts on first use only when told to, and reports the key to pin', async () => {
    const missing = await SshHost.connect(targetOf(sshd, { hostKey: undefined }), { privateKey: sshd.clientPrivateKey, log: recordingLogger().log }).catch((e: unknown) => e);
    expect(thrown(missing).code).to.equal('HOST_KEY_MISSING');
    const { log, text } = recordingLogger();
    const host = await SshHost.connect(targetOf(sshd, { hostKey: undefined, trustOnFirstUse: true }), { privateKey: sshd.clientPrivateKey, log });
    host.close();
    const blob = openSshKeyBlob(sshd.hostKeyPublic);
    expect(host.keySeen).to.deep.equal({ host: 'host-a', where: 'hosts.yaml:7:5', keyLine: keyLineOf(blob), fingerprint: fingerprintOf(blob) });
    expect(keyLineOf(blob)).to.equal(sshd.hostKeyPublic.split(' ').slice(0, 2).join(' '));
    expect(text()).to.include(`hosts.yaml:7:5: hostKey: ${keyLineOf(blob)}`);
  });

  it('goes through a jump host, whose key is checked too', async () => {
    // `other` is the jump host: it lets the test's key in and forwards to sshd's port on loopback.
    const jump = await startSshHost({ authorizedKeys: [sshd.clientPublicKey] });
    try {
      const jumpHost: SshTarget = { name: 'bastion', address: jump.host, port: jump.port, user: jump.user, hostKey: jump.hostKeyPublic };
      const host = await SshHost.connect(targetOf(sshd), { privateKey: sshd.clientPrivateKey, jumpHost, log: recordingLogger().log });
      try {
        expect((await host.run('echo through')).stdout).to.equal('through\n');
      } finally {
        host.close();
      }
      expect(jump.log()).to.match(/direct-tcpip|Accepted publickey/);
      const wrongJump = await SshHost.connect(targetOf(sshd), { privateKey: sshd.clientPrivateKey, jumpHost: { ...jumpHost, hostKey: sshd.hostKeyPublic }, log: recordingLogger().log }).catch((e: unknown) => e);
      expect(thrown(wrongJump).code).to.equal('HOST_KEY_MISMATCH');
      expect(thrown(wrongJump).message).to.include('bastion');
    } finally {
      await jump.stop();
    }
  });

  it('bounds the connection and each command, and says which host', async () => {
    // A port that accepts and never speaks SSH: the connect timeout ends it.
    const silent: Server = createServer(() => undefined);
    const port = await freePort();
    await new Promise<void>((r) => silent.listen(port, LOOPBACK, () => r()));
    try {
      const started = Date.now();
      const err = await SshHost.connect(targetOf(sshd, { port, name: 'silent' }), { privateKey: sshd.clientPrivateKey, connectTimeoutMs: 500, log: recordingLogger().log }).catch((e: unknown) => e);
      expect(thrown(err)).to.include({ code: 'HOST_UNREACHABLE' });
      expect(thrown(err).message).to.include('silent');
      expect(Date.now() - started).to.be.below(5000);
    } finally {
      silent.close();
    }
    const host = await SshHost.connect(targetOf(sshd), { privateKey: sshd.clientPrivateKey, log: recordingLogger().log });
    try {
      const err = await host.run('sleep 5', { timeoutMs: 300 }).catch((e: unknown) => e);
      expect(thrown(err)).to.include({ code: 'HOST_COMMAND_TIMEOUT', exitCode: 75 });
    } finally {
      host.close();
    }
  });

  it('never logs secrets: stdin, redaction patterns and the values it is told of', async () => {
    const { log, text } = recordingLogger();
    const token = ['abcdef', '0123456789abcdef'].join('.');
    const password = ['hunter', '2-very-secret'].join('');
    const host = await SshHost.connect(targetOf(sshd), { privateKey: sshd.clientPrivateKey, log });
    try {
      await host.run(`echo joining with ${token}; echo ${password}`, { secrets: [password], mutating: true });
      await host.run('cat >/dev/null', { stdin: `key: ${password}` });
      await host.run(`echo ${password} >&2; exit 1`, { secrets: [password] }).catch((e: unknown) => {
        expect((e as Error).message).to.not.include(password);
      });
    } finally {
      host.close();
    }
    expect(text()).to.include('echo joining with');
    expect(text()).to.not.include(token).and.not.include(password);
  });
});
