/**
 * The repository a run is pinned to. A local path is used as it is (the
 * local runner, a CI checkout); a remote URL is cloned at the revision into a
 * scratch directory, with the credentials mounted from a Secret (git-credentials.ts). Either way
 * the revision is resolved to a full commit.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InputError, InternalError, TransientError } from './errors.js';
import { assertNoUrlCredentials, assertSafeRevision, classifyGitFailure, isFullCommitId, prepareGitAuth, scrubGitOutput } from './git-credentials.js';

const run = promisify(execFile);

export interface Checkout {
  dir: string;
  /** Full commit id, or "unknown" outside a git repository. */
  revision: string;
  /** True when the working tree differs from the commit (local use only). */
  dirty: boolean;
}

async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('git', args, { cwd, maxBuffer: 16 * 1024 * 1024 });
  return stdout.trim();
}

export function isRemoteRepo(repo: string): boolean {
  return /^(https?|ssh|git|file):\/\//.test(repo) || /^[\w.-]+@[\w.-]+:/.test(repo);
}

/** Finds the top of the git work tree containing dir, if any. */
export async function gitTopLevel(dir: string): Promise<string | undefined> {
  try {
    return await git(dir, 'rev-parse', '--show-toplevel');
  } catch {
    return undefined;
  }
}

export async function resolveCheckout(repo: string, revision?: string, options: CheckoutOptions = {}): Promise<Checkout> {
  if (!isRemoteRepo(repo)) {
    const dir = path.resolve(repo);
    if (!existsSync(dir)) throw new InputError('REPO_NOT_FOUND', `repository directory ${dir} does not exist`);
    const top = await gitTopLevel(dir);
    if (!top) return { dir, revision: revision ?? 'unknown', dirty: false };
    const head = await git(dir, 'rev-parse', 'HEAD').catch(() => 'unknown');
    if (revision && revision !== 'HEAD' && revision !== 'unknown') {
      const wanted = await git(dir, 'rev-parse', '--verify', `${revision}^{commit}`).catch(() => {
        throw new InputError('REVISION_NOT_FOUND', `revision ${revision} is not in ${dir}`);
      });
      if (wanted !== head) {
        throw new InputError('REVISION_MISMATCH', `${dir} is at ${head.slice(0, 12)}, not at the requested revision ${revision}`, {
          hint: 'check out the revision first, or pass the repository URL so capflow clones it',
        });
      }
    }
    const status = await git(dir, 'status', '--porcelain').catch(() => '');
    return { dir, revision: head, dirty: status.length > 0 };
  }
  return fetchCheckout(repo, revision, options);
}

/** Options of resolveCheckout for a remote repository. */
export interface CheckoutOptions {
  /** The environment git runs with (default process.env); $CAPFLOW_GIT_CREDENTIALS_DIR is read from it. */
  env?: NodeJS.ProcessEnv;
  /** The credentials directory, overriding $CAPFLOW_GIT_CREDENTIALS_DIR and the default. */
  credentialsDir?: string;
  /** Bound on each git command (default 10 minutes). */
  timeoutMs?: number;
}

class GitCommandError extends Error {
  constructor(
    readonly stderr: string,
    readonly timedOut: boolean,
  ) {
    super(stderr);
  }
}

/**
 * Clones the revision of a remote repository into a scratch directory: a full commit id is
 * fetched alone (depth 1) and the checkout verified to be at it; a branch or tag is resolved to
 * its commit. Credentials come from the mounted Secret (git-credentials.ts), never from the URL.
 */
async function fetchCheckout(repo: string, revision: string | undefined, options: CheckoutOptions): Promise<Checkout> {
  assertNoUrlCredentials(repo);
  const wanted = revision === undefined || revision === '' || revision === 'unknown' ? 'HEAD' : revision;
  assertSafeRevision(wanted);
  const auth = await prepareGitAuth(repo, { ...(options.env ? { env: options.env } : {}), ...(options.credentialsDir !== undefined ? { credentialsDir: options.credentialsDir } : {}) });
  const timeout = options.timeoutMs ?? 600_000;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-checkout-'));
  const g = async (...args: string[]): Promise<string> => {
    try {
      const { stdout } = await run('git', args, { cwd: dir, env: auth.env, maxBuffer: 16 * 1024 * 1024, timeout, killSignal: 'SIGKILL' });
      return stdout.trim();
    } catch (err) {
      const e = err as { stderr?: string; killed?: boolean; signal?: string | null; message?: string };
      throw new GitCommandError(scrubGitOutput(e.stderr || e.message || '', auth.secrets), e.killed === true || e.signal === 'SIGKILL');
    }
  };
  try {
    try {
      await g('init', '-q');
      await g('remote', 'add', 'origin', repo);
      let target = 'FETCH_HEAD^{commit}';
      try {
        await g('fetch', '-q', '--no-tags', '--depth', '1', 'origin', wanted);
      } catch (err) {
        // A server that refuses a commit it does not advertise, or a short commit id: look in every
        // branch and tag (full history) before saying the revision is not there.
        const e = err as GitCommandError;
        const byId = isFullCommitId(wanted) || /^[0-9a-f]{7,39}$/.test(wanted);
        if (!(e instanceof GitCommandError) || e.timedOut || !byId || !/not our ref|unadvertised object|couldn't find remote ref/i.test(e.stderr)) throw err;
        await g('fetch', '-q', '--tags', 'origin', '+refs/heads/*:refs/remotes/origin/*');
        const found = await g('rev-parse', '--verify', '--quiet', `${wanted}^{commit}`).catch(() => '');
        if (!found) throw err;
        target = found;
      }
      await g('-c', 'advice.detachedHead=false', 'checkout', '-q', '--detach', target);
    } catch (err) {
      if (!(err instanceof GitCommandError)) throw err;
      if (err.timedOut) {
        throw new TransientError('REPO_FETCH_TIMEOUT', `cannot fetch ${wanted} from ${repo}: git gave no result within ${Math.round(timeout / 1000)} s`, {
          details: { repo, revision: wanted },
        });
      }
      throw classifyGitFailure({ repo, revision: wanted, stderr: err.stderr, auth });
    }
    const head = await g('rev-parse', 'HEAD');
    if (isFullCommitId(wanted) && head !== wanted) {
      throw new InternalError('REVISION_MISMATCH', `the checkout of ${repo} is at ${head}, not at the requested ${wanted}`);
    }
    return { dir, revision: head, dirty: false };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  } finally {
    await auth.cleanup();
  }
}
