/**
 * What Git says each cluster should be. One clone of the GitOps repository is
 * kept in a cache directory (reused across restarts); every sync fetches the
 * branch and lists the cluster folders, whose tree ids let the reconciler
 * skip unchanged folders. The folders whose specs are loaded are written from
 * Git's objects into a directory of that commit (materialize), not checked
 * out: a checkout refreshes every file's index entry. The first sync lists
 * every folder with one ls-tree; later ones list only the folders a diff-tree
 * against the last listed commit names (a tree diff: exact for any two
 * commits, force-pushes included), so a sync costs what changed, not the
 * number of clusters.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { mapLimit } from '../core/concurrency.js';
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

/** Runs git with `input` on its stdin; stdout as bytes (blobs need not be text). */
function runGitBytes(cwd: string, args: string[], input: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, { cwd, env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t));
    child.stdin.on('error', () => undefined); // git's exit status tells
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) return resolve(Buffer.concat(out));
      const safe = redactUrlCredentials(stderr);
      reject(new GitCommandError(`git ${args[0]} failed: ${safe.trim() || `exit code ${code}`}`, safe));
    });
    child.stdin.end(input);
  });
}

/** One entry of `ls-tree -r -z`. */
interface TreeEntry {
  mode: string;
  type: string;
  object: string;
  path: string;
}

function parseTreeEntries(listing: string): TreeEntry[] {
  const out: TreeEntry[] = [];
  for (const entry of listing.split('\0')) {
    const tab = entry.indexOf('\t');
    if (tab < 0) continue;
    const [mode, type, object] = entry.slice(0, tab).split(' ');
    if (mode && type && object) out.push({ mode, type, object, path: entry.slice(tab + 1) });
  }
  return out;
}

/** `cat-file --batch` output: each object's bytes by id. */
function parseBatch(out: Buffer): Map<string, Buffer> {
  const objects = new Map<string, Buffer>();
  let at = 0;
  while (at < out.length) {
    const nl = out.indexOf(10, at);
    if (nl < 0) break;
    const header = out.toString('latin1', at, nl).split(' ');
    if (header.length !== 3) throw new Error(`git cat-file: unexpected answer "${header.join(' ')}"`);
    const size = Number(header[2]);
    objects.set(header[0] as string, out.subarray(nl + 1, nl + 1 + size));
    at = nl + 1 + size + 1;
  }
  return objects;
}

/** A path relative to the repository root, posix, without ./ or a trailing slash; undefined when it leaves the root. */
export function repoPath(p: string): string | undefined {
  const norm = path.posix.normalize(p.replace(/\\/g, '/')).replace(/\/+$/, '');
  if (norm === '' || norm === '.' || norm === '..' || norm.startsWith('../') || path.posix.isAbsolute(norm)) return undefined;
  return norm;
}

/** More paths than this at once are listed with one ls-tree of the whole commit, filtered here (thousands of pathspecs cost more). */
const MANY_PATHS = 64;
/** Blobs read per cat-file: a first pass's 40,000 files are never all in memory at once. */
const BLOBS_PER_BATCH = 2000;

/** Symlinks followed while materializing (a link to a link ...) at most this deep. */
const MAX_LINK_DEPTH = 8;

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

  /** materialize() writes one directory per commit here: inside .git, so never in the work tree. */
  const treesDir = path.join(workdir, '.git', 'capflow-trees');
  /** The commit materialize() writes now: the paths done or under way (each promise settles once they are on disk). */
  let trees: { revision: string; root: string; paths: Map<string, Promise<void>>; attributes: boolean; made: boolean } | undefined;
  let previousTrees: string | undefined;
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
      // an earlier process's materialized commits: possibly half written, and no longer asked for
      await rm(treesDir, { recursive: true, force: true });
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
    const t0 = performance.now();
    await fetch();
    const t1 = performance.now();
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
        materialize: (paths) => materialize(revision, paths),
        objectIds: (paths) => objectIds(revision, paths),
        timings: { fetchMs: Math.round(t1 - t0), listMs: Math.round(performance.now() - t1) },
      };
    } catch (err) {
      listed = undefined;
      throw new InternalError('GIT_LIST_FAILED', `cannot list the cluster folders of ${branch} in ${workdir}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Each path's own entry (not its contents) at `revision`: one ls-tree, not recursive. */
  async function objectIds(revision: string, paths: string[]): Promise<Map<string, string>> {
    const ids = new Map<string, string>();
    const wanted = [...new Set(paths.flatMap((p) => repoPath(p) ?? []))];
    if (wanted.length === 0) return ids;
    const listing = await git(['ls-tree', '-z', revision, '--', ...wanted.map((p) => `:(literal)${p}`)]);
    for (const e of parseTreeEntries(listing)) ids.set(e.path, e.object);
    return ids;
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

  /**
   * `paths` (folders or files, relative to the repository root) as they are at `revision`, in that
   * commit's own directory, written from Git's objects (ls-tree, cat-file): no checkout, so no index
   * refresh of every file in the repository. The directory is new for each commit, so nothing of an
   * older commit lingers there (a file deleted in Git is absent). Symlinks inside the repository
   * bring their targets along. Git's attributes can change a file at checkout (eol, filters): if any
   * .gitattributes applies to a path, this falls back to the checkout and returns the work tree.
   */
  async function materialize(revision: string, wanted: string[]): Promise<string> {
    if (trees?.revision !== revision) {
      previousTrees = trees?.revision;
      trees = { revision, root: path.join(treesDir, revision), paths: new Map(), attributes: false, made: false };
    }
    const t = trees;
    const waits: Array<Promise<void>> = [];
    const fresh: string[] = [];
    for (const raw of wanted) {
      const p = repoPath(raw);
      if (p === undefined) continue; // outside the repository: the loader says so itself
      const covering = coveredBy(t.paths, p);
      if (covering) waits.push(covering);
      else if (!fresh.includes(p)) fresh.push(p);
    }
    if (fresh.length > 0) {
      // symlink targets that another write covers, which must be on disk too before the caller reads
      const elsewhere: Array<Promise<void>> = [];
      const written = tail.then(() => writePaths(t, fresh, 0, elsewhere, fresh));
      tail = written.catch(() => undefined);
      const run = written.then(async () => void (await Promise.all(elsewhere)));
      for (const p of fresh) t.paths.set(p, run);
      run.catch(() => {
        for (const p of fresh) if (t.paths.get(p) === run) t.paths.delete(p); // asked again, written again
      });
      waits.push(run);
    }
    try {
      await Promise.all(waits);
    } catch (err) {
      throw new InternalError('GIT_MATERIALIZE_FAILED', `cannot write ${fresh.join(', ')} of ${revision.slice(0, 12)} from the clone in ${workdir}: ${(err as Error).message}`, { cause: err });
    }
    if (!t.attributes) return t.root;
    await checkout(revision);
    return workdir;
  }

  /** Writes `paths` of t's commit into its directory; runs in turn with the other git processes. */
  async function writePaths(t: NonNullable<typeof trees>, paths: string[], depth: number, elsewhere: Array<Promise<void>>, own: string[]): Promise<void> {
    if (!t.made) {
      // The two newest commits stay (a load of the previous one may still read); older ones go, out
      // of the way at once (a rename) and removed by another process: a first pass's directory holds
      // 40,000 files at 10,000 clusters; removing it took 6.9 s of the next change's pass, and 4.5 s
      // (and 75 MB of RSS) still when fs.rm ran in the background of this process.
      const keep = new Set([t.revision, previousTrees]);
      const old = (await readdir(treesDir).catch(() => [] as string[])).filter((d) => !keep.has(d));
      const gone = await Promise.all(
        old.map(async (d) => {
          const trash = path.join(treesDir, d.startsWith('.gone-') ? d : `.gone-${d}`);
          if (trash !== path.join(treesDir, d)) await rename(path.join(treesDir, d), trash).catch(() => undefined);
          return trash;
        }),
      );
      for (const trash of gone) removeAside(trash); // (a restart removes what is left)
      await rm(t.root, { recursive: true, force: true }); // a failed earlier attempt's partial files
      await mkdir(t.root, { recursive: true });
      t.made = true;
    }
    // the .gitattributes files that apply to the paths: their own are listed with them, their parents' asked for
    const attributeFiles = new Set<string>(['.gitattributes']);
    for (const p of paths) {
      const parts = p.split('/');
      for (let i = 1; i < parts.length; i++) attributeFiles.add(`${parts.slice(0, i).join('/')}/.gitattributes`);
    }
    const many = paths.length > MANY_PATHS;
    const specs = [...paths, ...attributeFiles].map((p) => `:(literal)${p}`);
    const listing = parseTreeEntries(await git(['ls-tree', '-r', '-z', t.revision, ...(many ? [] : ['--', ...specs])]));
    const asked = new Set(paths);
    const under = (file: string): boolean => {
      for (let at = file.length; at > 0; at = file.lastIndexOf('/', at - 1)) if (asked.has(file.slice(0, at))) return true;
      return false;
    };
    const wanted = listing.filter((e) => under(e.path));
    if (listing.some((e) => path.posix.basename(e.path) === '.gitattributes' && (attributeFiles.has(e.path) || under(e.path)))) t.attributes = true;
    const dirs = new Set<string>();
    const links: string[] = [];
    for (let from = 0; from < wanted.length; ) {
      // a batch of entries whose blobs are read with one cat-file
      const batch: TreeEntry[] = [];
      const ids = new Set<string>();
      for (; from < wanted.length && ids.size < BLOBS_PER_BATCH; from++) {
        const e = wanted[from] as TreeEntry;
        batch.push(e);
        if (e.type === 'blob') ids.add(e.object);
      }
      const objects = ids.size > 0 ? parseBatch(await runGitBytes(workdir, ['cat-file', '--batch'], `${[...ids].join('\n')}\n`)) : new Map<string, Buffer>();
      await writeEntries(t.root, batch, objects, dirs, links);
    }
    // a symlink's target inside the repository is there, as in a checkout
    const more: string[] = [];
    for (const p of new Set(links)) {
      const covering = coveredBy(t.paths, p);
      if (!covering) more.push(p);
      else if (!own.some((q) => p === q || p.startsWith(`${q}/`))) elsewhere.push(covering);
    }
    if (more.length > 0 && depth < MAX_LINK_DEPTH) {
      const run = writePaths(t, more, depth + 1, elsewhere, [...own, ...more]);
      for (const p of more) t.paths.set(p, run);
      await run;
    }
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

/** Writes tree entries (their blobs in `objects`) under root; symlink targets inside the repository go to `links`. */
async function writeEntries(root: string, entries: TreeEntry[], objects: Map<string, Buffer>, dirs: Set<string>, links: string[]): Promise<void> {
  for (const e of entries) {
    const dir = path.dirname(path.join(root, ...e.path.split('/')));
    if (!dirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      dirs.add(dir);
    }
  }
  // a few files at once: a first pass writes thousands
  await mapLimit(entries, 16, async (e) => {
    const file = path.join(root, ...e.path.split('/'));
    if (e.type === 'commit') {
      await mkdir(file, { recursive: true }); // a submodule: an empty folder, as a checkout leaves it
      return;
    }
    const data = objects.get(e.object);
    if (!data) throw new Error(`git cat-file did not return ${e.object} (${e.path})`);
    if (e.mode === '120000') {
      const target = data.toString('utf8');
      await symlink(target, file);
      const inside = path.posix.isAbsolute(target) ? undefined : repoPath(path.posix.join(path.posix.dirname(e.path), target));
      if (inside !== undefined) links.push(inside);
    } else {
      await writeFile(file, data);
      if (e.mode === '100755') await chmod(file, 0o755);
    }
  });
}

/** Removes a directory in a process of its own (`rm -rf`), not waited for; a failure leaves it to the next start. */
function removeAside(dir: string): void {
  const child = spawn('rm', ['-rf', '--', dir], { stdio: 'ignore' });
  child.on('error', () => undefined);
  child.unref();
}

/** The promise of the path in `done` that is `p` or holds it (an ancestor folder). */
function coveredBy(done: Map<string, Promise<void>>, p: string): Promise<void> | undefined {
  for (let at = p.length; at > 0; at = p.lastIndexOf('/', at - 1)) {
    const hit = done.get(p.slice(0, at));
    if (hit) return hit;
  }
  return undefined;
}
