/**
 * Git credentials for the spec checkout, from a Kubernetes Secret mounted as files (never a
 * parameter, never a URL, never a command line).
 *
 * The directory is `$CAPFLOW_GIT_CREDENTIALS_DIR`, else `/var/run/capflow/git` when it exists.
 * Files in it, one per Secret key:
 *   - HTTPS: `token` (the password git sends), optional `username` (default `x-access-token`),
 *     optional `ca.crt` (a private CA for the server's certificate);
 *   - SSH: `ssh-privatekey` (the kubernetes.io/ssh-auth key) and `known_hosts` (required for an ssh
 *     URL: the pinned host key; no trust on first use).
 *
 * The token reaches git through a credential helper given in the environment
 * (GIT_CONFIG_COUNT/KEY/VALUE), which reads the token file each time git asks, so it is in no
 * argv, no environment, no URL and no config file. Other helpers and every prompt are disabled.
 */
import { existsSync, statSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InputError, InternalError, TransientError, type CapflowError } from './errors.js';
import { REDACTED, redactString, redactUrlCredentials } from './redact.js';

export const GIT_CREDENTIALS_DIR_ENV = 'CAPFLOW_GIT_CREDENTIALS_DIR';
export const DEFAULT_GIT_CREDENTIALS_DIR = '/var/run/capflow/git';
/** The Secret the WorkflowTemplates mount (the chart may name another). */
export const GIT_CREDENTIALS_SECRET = 'capflow-git-credentials';
export const DEFAULT_GIT_USERNAME = 'x-access-token';

export const GitCredentialKey = {
  token: 'token',
  username: 'username',
  caCert: 'ca.crt',
  sshPrivateKey: 'ssh-privatekey',
  knownHosts: 'known_hosts',
} as const;

/** The credentials directory in effect, or undefined (local use: the user's own git set-up applies). */
export function gitCredentialsDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const set = env[GIT_CREDENTIALS_DIR_ENV];
  if (set !== undefined && set !== '') return path.resolve(set);
  return existsSync(DEFAULT_GIT_CREDENTIALS_DIR) ? DEFAULT_GIT_CREDENTIALS_DIR : undefined;
}

export type RepoTransport = 'http' | 'ssh' | 'other';

/** How git will reach the repository: http(s), ssh (ssh:// or scp-like user@host:path), or other (file, git). */
export function repoTransport(repo: string): RepoTransport {
  if (/^https?:\/\//i.test(repo)) return 'http';
  if (/^(ssh|git\+ssh|ssh\+git):\/\//i.test(repo)) return 'ssh';
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(repo) && /^[^/:@\s]+@[^/:\s]+:/.test(repo)) return 'ssh';
  return 'other';
}

/**
 * Refuses a repository URL that carries a secret: `https://user:token@host/...` (any user info in an
 * http(s) URL: GitHub takes a bare token as the user name), or a password in an ssh URL. The
 * message never repeats the secret.
 */
export function assertNoUrlCredentials(repo: string): void {
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)@/i.exec(repo);
  if (!m) return;
  const scheme = m[1]!.toLowerCase();
  const userInfo = m[2]!;
  const isHttp = scheme === 'http' || scheme === 'https';
  if (!isHttp && !userInfo.includes(':')) return; // ssh://git@host: a user name, no secret
  throw new InputError('REPO_URL_HAS_CREDENTIALS', `the repository URL ${redactUrlCredentials(repo)} carries credentials; capflow does not take them in a URL (they would show in parameters, logs and the Argo UI)`, {
    hint: `remove them from the URL and put the token in the Git credentials Secret (${GIT_CREDENTIALS_SECRET}, key "${GitCredentialKey.token}", optional "${GitCredentialKey.username}"), mounted at $${GIT_CREDENTIALS_DIR_ENV}; then revoke the token, it has been exposed`,
  });
}

/** Refuses revisions git could take as an option or that are no ref name or commit id. */
export function assertSafeRevision(revision: string): void {
  // eslint-disable-next-line no-control-regex
  if (revision === '' || revision.startsWith('-') || /[\s\x00-\x1f\x7f~^:?*[\\]|\.\.|@\{|\/\/|\.lock$|\/$|^\//.test(revision)) {
    throw new InputError('REVISION_INVALID', `revision ${JSON.stringify(revision)} is not a commit id, branch or tag name`, {
      hint: 'pass the full 40-hex commit id the run is pinned to (or a branch or tag name)',
    });
  }
}

export function isFullCommitId(revision: string | undefined): revision is string {
  return revision !== undefined && /^[0-9a-f]{40}$/.test(revision);
}

/** Single-quotes a word for /bin/sh (GIT_SSH_COMMAND and helpers run through the shell). */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The credential helper: answers `get` with the user name and the token read from their files at
 * call time (printf is a shell builtin: the token is in no process's argv); ignores store/erase.
 */
export const CREDENTIAL_HELPER =
  '!f() { test "$1" = get || exit 0; ' +
  `u=${DEFAULT_GIT_USERNAME}; ` +
  'if test -s "$CAPFLOW_GIT_USERNAME_FILE"; then u=$(tr -d \'\\r\\n\' < "$CAPFLOW_GIT_USERNAME_FILE"); fi; ' +
  't=$(tr -d \'\\r\\n\' < "$CAPFLOW_GIT_TOKEN_FILE") || exit 1; ' +
  'printf \'username=%s\\npassword=%s\\n\' "$u" "$t"; }; f';

export interface GitAuth {
  /** The environment git runs with. */
  env: NodeJS.ProcessEnv;
  /** What authenticates: a token, an ssh key, or nothing of ours. */
  method: 'token' | 'ssh-key' | 'none';
  /** The credentials directory in effect, if any. */
  dir: string | undefined;
  /** The known_hosts file ssh pins to, for an ssh URL with a credentials directory. */
  knownHosts: string | undefined;
  /** Secret values to scrub from anything git prints (the token). */
  secrets: string[];
  /** Removes the temporary copy of the ssh key (idempotent). */
  cleanup(): Promise<void>;
}

function nonEmptyFile(file: string): boolean {
  try {
    const st = statSync(file);
    return st.isFile() && st.size > 0;
  } catch {
    return false;
  }
}

/** Names of the environment variables capflow controls for git; whatever the caller had there is dropped. */
const CONTROLLED_ENV = /^(GIT_ASKPASS|SSH_ASKPASS|GIT_SSH|GIT_SSH_COMMAND|GIT_SSH_VARIANT|GIT_CONFIG_PARAMETERS|GIT_CONFIG_COUNT|GIT_CONFIG_KEY_\d+|GIT_CONFIG_VALUE_\d+|CAPFLOW_GIT_TOKEN_FILE|CAPFLOW_GIT_USERNAME_FILE)$/;

/**
 * The environment and temporary files for git to reach `repo` with the mounted credentials.
 * Call cleanup() when git is done (it removes the ssh key's 0600 copy).
 */
export async function prepareGitAuth(repo: string, opts: { env?: NodeJS.ProcessEnv; credentialsDir?: string } = {}): Promise<GitAuth> {
  const base = opts.env ?? process.env;
  const dir = opts.credentialsDir !== undefined ? path.resolve(opts.credentialsDir) : gitCredentialsDir(base);
  const env: NodeJS.ProcessEnv = { ...base, GIT_TERMINAL_PROMPT: '0', GCM_INTERACTIVE: 'never' };
  const transport = repoTransport(repo);
  if (dir === undefined) {
    // Local use: the user's own helpers and ssh set-up apply; still never prompt.
    if (transport === 'ssh' && env.GIT_SSH_COMMAND === undefined && env.GIT_SSH === undefined) env.GIT_SSH_COMMAND = 'ssh -o BatchMode=yes';
    return { env, method: 'none', dir, knownHosts: undefined, secrets: [], cleanup: async () => undefined };
  }
  for (const k of Object.keys(env)) if (CONTROLLED_ENV.test(k)) delete env[k];
  const file = (key: string) => path.join(dir, key);
  // Only what git is told here: no helper from the system or the user, no askpass.
  const config: Array<[string, string]> = [['credential.helper', '']];
  const secrets: string[] = [];
  let method: GitAuth['method'] = 'none';
  let knownHosts: string | undefined;
  let cleanup = async (): Promise<void> => undefined;

  if (nonEmptyFile(file(GitCredentialKey.caCert))) config.push(['http.sslCAInfo', file(GitCredentialKey.caCert)]);
  if (transport === 'http' && nonEmptyFile(file(GitCredentialKey.token))) {
    const origin = new URL(repo).origin; // the helper answers for this server only (not for a redirect elsewhere)
    config.push([`credential.${origin}.helper`, CREDENTIAL_HELPER]);
    env.CAPFLOW_GIT_TOKEN_FILE = file(GitCredentialKey.token);
    env.CAPFLOW_GIT_USERNAME_FILE = file(GitCredentialKey.username);
    const token = (await readFile(file(GitCredentialKey.token), 'utf8')).replace(/[\r\n]+/g, '');
    if (token.length >= 4) secrets.push(token);
    method = 'token';
  }
  if (transport === 'ssh') {
    knownHosts = file(GitCredentialKey.knownHosts);
    if (!nonEmptyFile(knownHosts)) {
      throw new InputError('REPO_KNOWN_HOSTS_MISSING', `an ssh repository URL needs the Git server's pinned host key in ${knownHosts}, which is missing or empty`, {
        hint: `add the key "${GitCredentialKey.knownHosts}" to the Git credentials Secret (${GIT_CREDENTIALS_SECRET}): the output of \`ssh-keyscan <git host>\`, checked against the host's published fingerprint (a non-22 port is written [host]:port)`,
      });
    }
    const ssh = ['ssh', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${shellQuote(knownHosts)}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'UpdateHostKeys=no', '-o', 'ConnectTimeout=30'];
    const key = file(GitCredentialKey.sshPrivateKey);
    if (nonEmptyFile(key)) {
      // ssh refuses a key readable by group or others (a Secret volume's 0440): use a 0600 copy.
      const tmp = await mkdtemp(path.join(os.tmpdir(), 'capflow-ssh-'));
      const copy = path.join(tmp, 'id');
      const text = await readFile(key, 'utf8');
      await writeFile(copy, text.endsWith('\n') ? text : `${text}\n`, { mode: 0o600 });
      await chmod(copy, 0o600);
      ssh.push('-i', shellQuote(copy), '-o', 'IdentitiesOnly=yes');
      cleanup = async () => {
        await rm(tmp, { recursive: true, force: true });
      };
      method = 'ssh-key';
    }
    env.GIT_SSH_COMMAND = ssh.join(' ');
    env.GIT_SSH_VARIANT = 'ssh';
  }
  env.GIT_CONFIG_COUNT = String(config.length);
  config.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k;
    env[`GIT_CONFIG_VALUE_${i}`] = v;
  });
  return { env, method, dir, knownHosts, secrets, cleanup };
}

/** Removes the given secret values, then anything that looks like one, from text git printed. */
export function scrubGitOutput(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join(REDACTED);
  return redactUrlCredentials(redactString(out));
}

export interface GitFailureContext {
  /** The repository URL (credential-free: assertNoUrlCredentials ran). */
  repo: string;
  revision: string;
  /** git's stderr, already scrubbed. */
  stderr: string;
  auth: Pick<GitAuth, 'dir' | 'method' | 'knownHosts'>;
}

/** The last meaningful lines git printed, on one line. */
function gitSaid(stderr: string): string {
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^hint:/.test(l));
  const text = lines.slice(-6).join(' | ');
  return text.length > 1000 ? `${text.slice(0, 1000)}...` : text;
}

/**
 * A failed fetch as a coded error, by what git printed: a host key that does not match the pinned
 * one, refused credentials and a revision the remote lacks are the user's to fix (exit 2); an
 * unreachable server or a repository not (yet) there may pass on retry (exit 75).
 */
export function classifyGitFailure(ctx: GitFailureContext): CapflowError {
  const { repo, revision, stderr, auth } = ctx;
  const said = gitSaid(stderr);
  const what = `cannot fetch ${revision} from ${repo}`;
  const details = { repo, revision, gitStderr: stderr };
  const secretHint = auth.dir
    ? `the Git credentials Secret (${GIT_CREDENTIALS_SECRET}, or the one the chart's executor.gitCredentials.secretName names) mounted at ${auth.dir}`
    : `no Git credentials directory is mounted ($${GIT_CREDENTIALS_DIR_ENV}; in a cluster, the Secret ${GIT_CREDENTIALS_SECRET})`;
  if (/No user exists for uid/i.test(stderr)) {
    // OpenSSH needs a passwd entry for the uid it runs as; an image running as an arbitrary uid lacks it.
    return new InternalError('GIT_SSH_NO_USER', `${what}: ssh cannot run as this uid (no passwd entry); git said: ${said}`, {
      hint: 'the image needs an /etc/passwd line for the uid the pod runs as (65532 in our WorkflowTemplates)',
      details,
    });
  }
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|host key is known for .* and you have requested strict checking|Host key for .* has changed/i.test(stderr)) {
    const kh = auth.knownHosts ?? 'known_hosts';
    return new InputError('REPO_HOST_KEY_MISMATCH', `${what}: the server's host key is not the one pinned in ${kh}; git said: ${said}`, {
      hint: `check the server's key fingerprint and fix "${GitCredentialKey.knownHosts}" in ${secretHint} (a non-22 port is written [host]:port)`,
      details,
    });
  }
  if (/SSL certificate problem|server certificate verification failed|unable to get local issuer certificate|self[- ]signed certificate/i.test(stderr)) {
    return new InputError('REPO_TLS_UNTRUSTED', `${what}: the server's TLS certificate is not trusted; git said: ${said}`, {
      hint: `for a private CA, add its certificate as "${GitCredentialKey.caCert}" to ${secretHint}`,
      details,
    });
  }
  if (/Authentication failed for|could not read (Username|Password) for|terminal prompts disabled|Permission denied \(|requested URL returned error: 40[13]|Invalid username or password|HTTP Basic: Access denied|Too many authentication failures/i.test(stderr)) {
    const which =
      auth.method === 'token'
        ? `the token was refused: check "${GitCredentialKey.token}" (and "${GitCredentialKey.username}") in ${secretHint}`
        : auth.method === 'ssh-key'
          ? `the ssh key was refused: check "${GitCredentialKey.sshPrivateKey}" in ${secretHint} and that its public half is a deploy key of the repository`
          : `the server wants credentials and none were given: ${secretHint}`;
    return new InputError('REPO_AUTH_FAILED', `${what}: authentication failed; git said: ${said}`, { hint: which, details });
  }
  if (/couldn't find remote ref|not our ref|unadvertised object|no such remote ref|invalid refspec/i.test(stderr)) {
    return new InputError('REVISION_NOT_FOUND', `revision ${revision} is not in ${repo}; git said: ${said}`, {
      hint: 'pass a commit, branch or tag the repository has (was the commit pushed, or force-pushed away?)',
      details,
    });
  }
  if (/does not appear to be a git repository|repository '.*' not found|Repository not found|requested URL returned error: 404/i.test(stderr)) {
    return new TransientError('REPO_UNAVAILABLE', `${what}: the repository is not there (yet?); git said: ${said}`, {
      hint: `check the repository URL; a private repository may also answer "not found" to credentials without access (${secretHint})`,
      details,
    });
  }
  if (/Could not resolve host|Could not resolve hostname|Failed to connect|Connection refused|Connection timed out|timed out|Connection reset|Network is unreachable|No route to host|Temporary failure in name resolution|requested URL returned error: 5\d\d|early EOF|RPC failed|remote end hung up|kex_exchange_identification|Connection closed by/i.test(stderr)) {
    return new TransientError('REPO_UNREACHABLE', `${what}: the Git server is unreachable; git said: ${said}`, {
      hint: 'check that the repository URL is right and the server reachable from the pod; retrying later may pass',
      details,
    });
  }
  return new TransientError('REPO_FETCH_FAILED', `${what}; git said: ${said}`, { details });
}
