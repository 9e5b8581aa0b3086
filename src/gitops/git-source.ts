/**
 * What Git says each cluster should be. One clone of the GitOps repository is
 * kept in a cache directory (reused across restarts); every sync fetches the
 * branch, checks its head out in place and lists the cluster folders, whose
 * tree ids let the reconciler skip unchanged folders; the work tree is
 * checked out only when a spec is to be loaded. The first sync lists
 * every folder with one ls-tree; later ones list only the folders a diff-tree
 * against the last listed commit names (a tree diff: exact for any two
 * commits, force-pushes included), so a sync costs what changed, not the
 * number of clusters.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { InputError, InternalError, TransientError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { redactUrlCredentials } from '../core/redact.js';
import { DELETION_MARKER, type ClusterFolder, type GitSnapshot, type GitSource } from './types.js';

/** Cluster names end up in Workflow names (template name, cluster, attempt): 40 leaves room for the rest. */
export const MAX_CLUSTER_NAME = 40;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function isClusterName(name: string): boolean {
  return name.length <= MAX_CLUSTER_NAME && DNS_LABEL.test(name);
}

export interface GitSourceOptions {
  url: string;
  /** Default main. */
  branch?: string;
  /** Default clusters. */
  clustersDir?: string;
  /** Where the clone lives; only this GitSource may use it while it runs. */
  cacheDir: string;
  log?: Logger;
}

const FETCH_TIMEOUT_MS = 120_000;
/** More changed folders than this are listed with one full ls-tree (one pathspec per folder costs more then). */
const MAX_DIFF_FOLDERS = 2000;
/** firstSeenAt is only asked of recent commits; older ones are forgotten. */
const REMEMBERED_COMMITS = 64;

class GitCommandError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'GitCommandError';
  }
}

/** Runs git in cwd; stdout untrimmed. Errors carry git's stderr with URL credentials masked (the command line holds the URL too). */
function runGit(cwd: string, args: string[], timeoutMs = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      args,
      {
        cwd,
        // Never prompt for credentials (there is nobody to answer); English messages, which we match.
        env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' },
        maxBuffer: 512 * 1024 * 1024,
        timeout: timeoutMs,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const timedOut = timeoutMs > 0 && err.killed && err.code !== 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER';
        const detail = timedOut ? `timed out after ${timeoutMs / 1000} s` : stderr.trim() || err.message;
        const safe = redactUrlCredentials(detail);
        reject(new GitCommandError(`git ${args[0]} failed: ${safe}`, redactUrlCredentials(stderr)));
      },
    );
  });
}

function normaliseClustersDir(dir: string): string {
  const norm = path.posix.normalize(dir.replace(/\\/g, '/')).replace(/\/+$/, '');
  if (norm === '.' || norm === '' || norm.startsWith('../') || norm === '..' || path.posix.isAbsolute(norm)) {
    throw new InputError('GIT_CLUSTERS_DIR_INVALID', `clusters directory "${dir}" must be a folder inside the repository`);
  }
  return norm;
}

function checkBranch(branch: string): string {
  // What a refspec and check-ref-format both accept, without asking git.
  if (!/^[A-Za-z0-9._/-]+$/.test(branch) || branch.startsWith('-') || branch.includes('..') || branch.endsWith('/') || branch.endsWith('.lock')) {
    throw new InputError('GIT_BRANCH_INVALID', `"${branch}" is not a valid branch name`);
  }
  return branch;
}

export function createGitSource(options: GitSourceOptions): GitSource {
  const branch = checkBranch(options.branch ?? 'main');
  const clustersDir = normaliseClustersDir(options.clustersDir ?? 'clusters');
  const workdir = path.resolve(options.cacheDir);
  const shownUrl = redactUrlCredentials(options.url);
  const trackingRef = `refs/remotes/origin/${branch}`;
  const log = options.log?.child({ component: 'git', repo: shownUrl, branch });
  const git = (args: string[], timeoutMs?: number) => runGit(workdir, args, timeoutMs);

  const firstSeen = new Map<string, Date>();
  let prepared = false;
  let checkedOut: string | undefined;
  /** The last listing, which the next one updates from a diff. */
  let listed: { revision: string; clusters: Map<string, ClusterFolder>; bad: Set<string> } | undefined;

  async function prepare(): Promise<void> {
    try {
      await mkdir(workdir, { recursive: true });
      if (!existsSync(path.join(workdir, '.git'))) await git(['init', '--quiet']);
      // a checkout refreshes the whole index: its v4 format and no trailing hash halve that at 10,000 folders
      await git(['config', 'feature.manyFiles', 'true']);
      await git(['config', 'index.skipHash', 'true']);
      // A crash mid-checkout or mid-fetch leaves locks that would fail every later sync; we are the clone's only user.
      await rm(path.join(workdir, '.git', 'index.lock'), { force: true });
      await rm(path.join(workdir, '.git', `${trackingRef}.lock`), { force: true });
      const current = await git(['config', '--get', 'remote.origin.url']).then(
        (out) => out.trim(),
        () => undefined,
      );
      if (current === undefined) await git(['remote', 'add', 'origin', options.url]);
      else if (current !== options.url) await git(['remote', 'set-url', 'origin', options.url]);
    } catch (err) {
      throw new InternalError('GIT_CACHE_FAILED', `cannot prepare the clone in ${workdir}: ${(err as Error).message}`, { cause: err });
    }
  }

  async function fetch(): Promise<void> {
    try {
      await git(['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', 'origin', `+refs/heads/${branch}:${trackingRef}`], FETCH_TIMEOUT_MS);
    } catch (err) {
      const e = err as GitCommandError;
      if (/couldn't find remote ref/i.test(e.stderr ?? '')) {
        throw new InputError('GIT_BRANCH_NOT_FOUND', `branch ${branch} does not exist in ${shownUrl}`, {
          hint: 'push the branch, or point the reconciler at an existing one',
        });
      }
      throw new TransientError('GIT_FETCH_FAILED', `cannot fetch ${branch} from ${shownUrl}: ${e.message}`, { cause: e });
    }
  }

  function parseListing(listing: string): { clusters: Map<string, ClusterFolder>; badFolders: string[] } {
    const prefix = `${clustersDir}/`;
    const trees = new Map<string, string>();
    const marked = new Set<string>();
    // -z lines: "<mode> <type> <object>\t<path>\0", paths unquoted.
    for (const entry of listing.split('\0')) {
      const tab = entry.indexOf('\t');
      if (tab < 0) continue;
      const entryPath = entry.slice(tab + 1);
      if (!entryPath.startsWith(prefix)) continue; // the clusters directory itself
      const [, type, object] = entry.slice(0, tab).split(' ');
      const rest = entryPath.slice(prefix.length);
      const slash = rest.indexOf('/');
      if (slash < 0) {
        if (type === 'tree' && object) trees.set(rest, object); // files directly in the clusters directory are not clusters
      } else if (type === 'blob' && rest.slice(slash + 1) === DELETION_MARKER) {
        marked.add(rest.slice(0, slash));
      }
    }
    const clusters = new Map<string, ClusterFolder>();
    const badFolders: string[] = [];
    for (const [name, tree] of trees) {
      if (!isClusterName(name)) badFolders.push(name);
      else clusters.set(name, { name, path: `${prefix}${name}`, tree, deletionMarker: marked.has(name) });
    }
    return { clusters, badFolders };
  }

  /** Every folder with one ls-tree. */
  async function listAll(revision: string): Promise<NonNullable<typeof listed>> {
    const { clusters, badFolders } = parseListing(await git(['ls-tree', '-r', '-t', '-z', revision, '--', `${clustersDir}/`]));
    return { revision, clusters, bad: new Set(badFolders) };
  }

  /**
   * The last listing with the folders that differ between its commit and `revision` listed again;
   * undefined when that cannot be told (the old commit is gone) or too much changed.
   */
  async function listChanged(from: NonNullable<typeof listed>, revision: string): Promise<NonNullable<typeof listed> | undefined> {
    let diff: string;
    try {
      diff = await git(['diff-tree', '-r', '-z', '--name-only', '--no-renames', from.revision, revision, '--', `${clustersDir}/`]);
    } catch (err) {
      log?.info('cannot diff against the last listed commit: listing every folder', { from: from.revision, error: (err as Error).message });
      return undefined;
    }
    const prefix = `${clustersDir}/`;
    const changed = new Set<string>();
    for (const p of diff.split('\0')) {
      if (!p.startsWith(prefix)) continue;
      const slash = p.indexOf('/', prefix.length);
      if (slash > 0) changed.add(p.slice(prefix.length, slash)); // a file directly in the clusters directory is no folder
    }
    if (changed.size > MAX_DIFF_FOLDERS) return undefined;
    const clusters = new Map(from.clusters);
    const bad = new Set(from.bad);
    if (changed.size > 0) {
      const specs = [...changed].map((name) => `:(literal)${prefix}${name}/`);
      const part = parseListing(await git(['ls-tree', '-r', '-t', '-z', revision, '--', ...specs]));
      for (const name of changed) {
        if (!part.clusters.has(name)) clusters.delete(name); // (a folder listed again keeps its place)
        bad.delete(name);
      }
      let added = false;
      for (const [name, folder] of part.clusters) {
        added ||= !from.clusters.has(name);
        clusters.set(name, folder);
      }
      for (const name of part.badFolders) bad.add(name);
      log?.debug('listed the changed cluster folders', { from: from.revision, revision, folders: changed.size });
      // in name order, as a full listing gives them
      if (added) return { revision, clusters: new Map([...clusters].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))), bad };
    }
    return { revision, clusters, bad };
  }

  function seen(revision: string): Date {
    let at = firstSeen.get(revision);
    if (!at) {
      at = new Date();
      firstSeen.set(revision, at);
      if (firstSeen.size > REMEMBERED_COMMITS) firstSeen.delete(firstSeen.keys().next().value as string);
    }
    return at;
  }

  async function syncOnce(): Promise<GitSnapshot> {
    if (!prepared) {
      await prepare();
      prepared = true;
    }
    await fetch();
    try {
      const revision = (await git(['rev-parse', '--verify', `${trackingRef}^{commit}`])).trim();
      const firstSeenAt = seen(revision);
      // listed from Git's objects: the work tree is checked out only when a spec is loaded
      if (listed?.revision !== revision) listed = (listed && (await listChanged(listed, revision))) ?? (await listAll(revision));
      let checkingOut: Promise<void> | undefined;
      // callers get their own maps: the next sync builds on this listing
      return {
        revision,
        branch,
        clusters: new Map(listed.clusters),
        badFolders: [...listed.bad].sort(),
        workdir,
        firstSeenAt,
        checkout: () => (checkingOut ??= checkout(revision)),
      };
    } catch (err) {
      listed = undefined;
      throw new InternalError('GIT_LIST_FAILED', `cannot list the cluster folders of ${branch} in ${workdir}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The work tree at `revision`, in turn with the other git processes; a no-op when it is there. */
  function checkout(revision: string): Promise<void> {
    const run = tail.then(async () => {
      if (checkedOut === revision) return;
      try {
        await git(['checkout', '--quiet', '--force', '--detach', revision]);
        log?.info('Checked out new commit', { revision, previous: checkedOut });
        checkedOut = revision;
      } catch (err) {
        checkedOut = undefined; // the work tree may be half-way: check out again next time
        throw new InternalError('GIT_CHECKOUT_FAILED', `cannot check out ${branch} in ${workdir}: ${(err as Error).message}`, { cause: err });
      }
    });
    tail = run.catch(() => undefined);
    return run;
  }

  // One git process at a time on the clone. Calls made while a sync waits to start share it:
  // its fetch begins after they were made, so it sees whatever they were told about.
  let tail: Promise<unknown> = Promise.resolve();
  let waiting: Promise<GitSnapshot> | undefined;

  return {
    sync() {
      if (waiting) return waiting;
      const next = tail.then(() => {
        waiting = undefined;
        return syncOnce();
      });
      waiting = next;
      tail = next.catch(() => undefined);
      return next;
    },
    async close() {
      await tail;
    },
  };
}
