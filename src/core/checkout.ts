/**
 * The repository a run is pinned to. A local path is used as it is (the
 * local runner, a CI checkout); a remote URL is cloned at the revision into a
 * scratch directory. Either way the revision is resolved to a full commit.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InputError, TransientError } from './errors.js';

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

export async function resolveCheckout(repo: string, revision?: string): Promise<Checkout> {
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
  const dir = mkdtempSync(path.join(os.tmpdir(), 'capflow-checkout-'));
  try {
    await git(dir, 'init', '-q');
    await git(dir, 'remote', 'add', 'origin', repo);
    await git(dir, 'fetch', '-q', '--depth', '1', 'origin', revision ?? 'HEAD');
    await git(dir, 'checkout', '-q', 'FETCH_HEAD');
  } catch (err) {
    throw new TransientError('REPO_FETCH_FAILED', `cannot fetch ${revision ?? 'HEAD'} from ${repo}`, { cause: err });
  }
  return { dir, revision: await git(dir, 'rev-parse', 'HEAD'), dirty: false };
}
