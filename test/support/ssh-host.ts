/**
 * A real OpenSSH server on a loopback port, standing in for a bring-your-own host.
 *
 *   const host = await startSshHost({ fakeTools: { kubeadm: 'echo "kubeadm $*" >> "$HOME/calls"' } });
 *   // connect with ssh2: { host: host.host, port: host.port, username: host.user,
 *   //   privateKey: host.clientPrivateKey, hostVerifier: (key) => key.equals(openSshKeyBlob(host.hostKeyPublic)) }
 *   await host.stop();
 *
 * It runs `/usr/sbin/sshd -D -e -f <temp>/sshd_config` as the current user, with its own ed25519 host
 * key, an authorized_keys file in the temp dir (holding a freshly generated client key, plus any given),
 * no PAM and no passwords. Commands run with PATH=<fakeBinDir>:/usr/bin:/bin and HOME=<dir>/home, so
 * scripts given as `fakeTools` shadow real tools (tests relying on them must say so in their names).
 * The login user is the user running the tests (often root: then only key logins are allowed).
 *
 * Needs the Debian openssh-server package (`apt-get install openssh-server`, or testbed/install.sh).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, LOOPBACK } from './ports.js';

const execFileP = promisify(execFile);
const SSHD = '/usr/sbin/sshd';

export interface SshHostOptions {
  /** Extra public keys (OpenSSH lines) allowed to log in, besides the generated client key. */
  authorizedKeys?: string[];
  /** name → body of a /bin/sh script, installed as an executable in fakeBinDir (first on PATH). */
  fakeTools?: Record<string, string>;
}

export interface SshHost {
  host: '127.0.0.1';
  port: number;
  /** The login user (the user running the tests). */
  user: string;
  /** The server's host key as an OpenSSH public key line: "ssh-ed25519 AAAA... comment". */
  hostKeyPublic: string;
  /** Private key (OpenSSH format, ed25519, no passphrase) authorized to log in. */
  clientPrivateKey: string;
  /** Its public half, as an OpenSSH line. */
  clientPublicKey: string;
  /** Directory first on the PATH of every session; fakeTools live here. */
  fakeBinDir: string;
  /** The temp directory holding config, keys and logs. */
  dir: string;
  /** $HOME of every session (an empty directory of its own, inside dir). */
  home: string;
  /** sshd's log so far (it runs with -e; LogLevel VERBOSE). */
  log(): string;
  /** Stop sshd and remove the temp directory (idempotent). */
  stop(): Promise<void>;
}

/** The key blob of an OpenSSH public key line ("type base64 [comment]"): what ssh2's hostVerifier gets. */
export function openSshKeyBlob(line: string): Buffer {
  const b64 = line.trim().split(/\s+/)[1];
  if (!b64) throw new Error(`not an OpenSSH public key line: ${line}`);
  return Buffer.from(b64, 'base64');
}

/** Generate an ed25519 key pair with ssh-keygen; returns [private (OpenSSH PEM), public line]. */
export async function generateEd25519(path: string, comment: string): Promise<[string, string]> {
  await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
  return [await readFile(path, 'utf8'), (await readFile(`${path}.pub`, 'utf8')).trim()];
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

export async function startSshHost(opts: SshHostOptions = {}): Promise<SshHost> {
  if (!existsSync(SSHD)) {
    throw new Error(`${SSHD} not found: install it with \`apt-get install -y openssh-server\` (or run \`bash testbed/install.sh\`)`);
  }
  // sshd insists on its privilege-separation directory, even when it does not use it.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });

  const dir = await mkdtemp(join(tmpdir(), 'capflow-sshd-'));
  const fakeBinDir = join(dir, 'bin');
  await mkdir(fakeBinDir);
  const home = join(dir, 'home');
  await mkdir(home);
  for (const [name, body] of Object.entries(opts.fakeTools ?? {})) {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`bad fake tool name: ${name}`);
    await writeFile(join(fakeBinDir, name), `#!/bin/sh\n${body}\n`);
    await chmod(join(fakeBinDir, name), 0o755);
  }

  const [, hostKeyPublic] = await generateEd25519(join(dir, 'ssh_host_ed25519_key'), 'capflow-test-host');
  const [clientPrivateKey, clientPublicKey] = await generateEd25519(join(dir, 'client_ed25519'), 'capflow-test-client');
  await writeFile(join(dir, 'authorized_keys'), [clientPublicKey, ...(opts.authorizedKeys ?? [])].join('\n') + '\n', {
    mode: 0o600,
  });

  const port = await freePort();
  const user = userInfo().username;
  const config = [
    `Port ${port}`,
    `ListenAddress ${LOOPBACK}`,
    `HostKey ${join(dir, 'ssh_host_ed25519_key')}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'StrictModes no', // the temp dir's modes are not sshd's business here
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'PermitRootLogin prohibit-password', // tests may run as root: keys only
    `AllowUsers ${user}`,
    'UseDNS no',
    'PrintMotd no',
    'PrintLastLog no',
    'X11Forwarding no',
    'AllowAgentForwarding no',
    // Fake tools first on PATH. OpenSSH (>= 8.7) applies SetEnv after its defaults. HOME points at a
    // home of our own, so the test user's ~/.bashrc (which bash reads for SSH commands, and which may
    // prepend e.g. /root/go/bin) cannot put real tools before the fakes.
    `SetEnv PATH=${fakeBinDir}:/usr/bin:/bin HOME=${home}`,
    'Subsystem sftp internal-sftp',
    'LogLevel VERBOSE',
  ].join('\n');
  await writeFile(join(dir, 'sshd_config'), config + '\n');

  const child = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  live.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) killQuietly(c, 'SIGKILL');
    });
  }

  let log = '';
  child.stderr?.setEncoding('utf8');
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd did not start listening in time:\n${log}`)), 15_000);
    child.stderr?.on('data', (chunk: string) => {
      log += chunk;
      if (log.includes(`Server listening on ${LOOPBACK} port ${port}`)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`sshd exited (code ${code}, signal ${signal}):\n${log}`));
    });
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', () => live.delete(child));

  try {
    await ready;
  } catch (err) {
    killQuietly(child, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  let stopped = false;
  return {
    host: LOOPBACK,
    port,
    user,
    hostKeyPublic,
    clientPrivateKey,
    clientPublicKey,
    fakeBinDir,
    dir,
    home,
    log: () => log,
    async stop() {
      if (stopped) return;
      stopped = true;
      // Let sessions whose clients just disconnected finish first, so sshd reaps them (no zombies).
      for (let i = 0; i < 40 && child.pid !== undefined && (await sessionCount(child.pid)) > 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      killQuietly(child, 'SIGTERM');
      const timer = setTimeout(() => killQuietly(child, 'SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Number of live child processes (sessions) of the sshd listener. */
async function sessionCount(pid: number): Promise<number> {
  try {
    return (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean).length;
  } catch {
    return 0;
  }
}

function killQuietly(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // its process group (sessions call setsid and end with their clients)
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* gone */
    }
  }
}
