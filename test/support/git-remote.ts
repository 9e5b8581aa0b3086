/**
 * A GitOps repository for tests: a bare "remote" plus a working clone, driven by the real git CLI.
 *
 *   const repo = await createGitRemote();
 *   const sha = await repo.commitFiles({ 'clusters/c1/cluster.yaml': yaml, 'old.yaml': null }, 'add c1');
 *   await repo.push();
 *   expect(await repo.head()).to.equal(sha);
 *   await repo.stop();
 *
 * Commits use a fixed identity, and git runs without the machine's global/system config, so results
 * do not depend on who runs the tests. The default branch is main.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const GIT_TEST_IDENTITY = { name: 'capflow test', email: 'test@capflow.invalid' };

/** Environment for git: fixed identity, no user/system config, never prompt. */
export function gitEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GIT_AUTHOR_NAME: GIT_TEST_IDENTITY.name,
    GIT_AUTHOR_EMAIL: GIT_TEST_IDENTITY.email,
    GIT_COMMITTER_NAME: GIT_TEST_IDENTITY.name,
    GIT_COMMITTER_EMAIL: GIT_TEST_IDENTITY.email,
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_TERMINAL_PROMPT: '0',
  };
}

/** Run git with the test environment; resolves with trimmed stdout, rejects with git's stderr. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileP('git', ['-c', 'init.defaultBranch=main', ...args], { cwd, env: gitEnv() });
    return stdout.trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`git ${args.join(' ')} (in ${cwd}) failed: ${e.stderr?.trim() || e.message}`);
  }
}

export interface GitRemote {
  /** Path of the bare repository, usable as a clone URL. */
  url: string;
  /** A clone of it, where commitFiles works. */
  workdir: string;
  /**
   * Write (string) or delete (null) files, relative to the repository root, and commit them all.
   * Returns the new commit's sha. Does not push.
   */
  commitFiles(files: Record<string, string | null>, message: string): Promise<string>;
  /** Push the workdir's main to the remote. */
  push(): Promise<void>;
  /** The remote's main (what a reconciler would see); undefined before the first push. */
  head(): Promise<string | undefined>;
  /** A fresh clone of the remote in a new temp dir (removed by stop()). */
  clone(): Promise<string>;
  /** Remove everything (idempotent). */
  stop(): Promise<void>;
}

export async function createGitRemote(): Promise<GitRemote> {
  const root = await mkdtemp(join(tmpdir(), 'capflow-git-'));
  const url = join(root, 'remote.git');
  const workdir = join(root, 'work');
  await git(root, 'init', '--bare', '--quiet', url);
  await git(root, 'clone', '--quiet', url, workdir);
  let clones = 0;

  return {
    url,
    workdir,
    async commitFiles(files, message) {
      const paths = Object.keys(files);
      if (paths.length === 0) throw new Error('commitFiles: no files');
      for (const [path, content] of Object.entries(files)) {
        const rel = normalize(path);
        if (isAbsolute(rel) || rel === '..' || rel.startsWith(`..${sep}`)) throw new Error(`commitFiles: ${path} is outside the repository`);
        const abs = join(workdir, rel);
        if (content === null) {
          await rm(abs, { force: true });
        } else {
          await mkdir(dirname(abs), { recursive: true });
          await writeFile(abs, content);
        }
      }
      await git(workdir, 'add', '--all'); // the workdir is ours: anything written there belongs in the commit
      await git(workdir, 'commit', '--quiet', '--allow-empty', '-m', message);
      return git(workdir, 'rev-parse', 'HEAD');
    },
    async push() {
      await git(workdir, 'push', '--quiet', 'origin', 'HEAD:refs/heads/main');
    },
    async head() {
      const out = await git(url, 'for-each-ref', '--format=%(objectname)', 'refs/heads/main');
      return out || undefined;
    },
    async clone() {
      const dest = join(root, `clone-${++clones}`);
      await git(root, 'clone', '--quiet', url, dest);
      return dest;
    },
    async stop() {
      await rm(root, { recursive: true, force: true });
    },
  };
}
