/**
 * The reconciler's Git source against real bare remotes and the machine's git.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readlink, rm, stat, symlink, writeFile, chmod } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { describeChain, isCapflowError } from '../../src/core/errors.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { createGitSource } from '../../src/gitops/git-source.js';
import type { GitSnapshot } from '../../src/gitops/types.js';
import { createGitRemote, git, type GitRemote } from '../support/git-remote.js';
import { freePort } from '../support/ports.js';

const execFileP = promisify(execFile);

async function expectRejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('gitops/git-source: cluster folders from a real git remote', function () {
  this.timeout(120_000);
  let scratch: string;
  const remotes: GitRemote[] = [];

  async function remote(): Promise<GitRemote> {
    const r = await createGitRemote();
    remotes.push(r);
    return r;
  }
  let caches = 0;
  const cacheDir = () => join(scratch, `cache-${++caches}`);
  const treeOf = (r: GitRemote, revision: string, folder: string) => git(r.workdir, 'rev-parse', `${revision}:${folder}`);

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'capflow-git-source-'));
  });
  after(async () => {
    for (const r of remotes) await r.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  it('lists cluster folders with their tree ids and deletion markers; bad names and plain files are not clusters', async () => {
    const r = await remote();
    const long = `c${'x'.repeat(40)}`; // 41 characters: a valid DNS label, too long for Workflow names
    await r.commitFiles(
      {
        'clusters/dev/cluster.yaml': 'name: dev\n',
        'clusters/dev/addons/DELETE': 'a marker deeper down does not count\n',
        'clusters/prod-eu/cluster.yaml': 'name: prod-eu\n',
        'clusters/prod-eu/DELETE': '',
        'clusters/stage/DELETE/notes.txt': 'a folder named like the marker is not the marker\n',
        'clusters/Bad_Name/cluster.yaml': 'name: bad\n',
        [`clusters/${long}/cluster.yaml`]: 'name: long\n',
        'clusters/README.md': 'one folder per cluster\n',
        'docs/clusters.md': 'not under clusters/\n',
      },
      'three clusters and some noise',
    );
    await r.push();
    const head = (await r.head())!;
    const log = createMemoryLogger();
    const source = createGitSource({ url: r.url, cacheDir: cacheDir(), log });
    const snap = await source.sync();

    expect(snap.revision).to.equal(head);
    expect(snap.branch).to.equal('main');
    expect([...snap.clusters.keys()]).to.deep.equal(['dev', 'prod-eu', 'stage']);
    expect(snap.clusters.get('dev')).to.deep.equal({ name: 'dev', path: 'clusters/dev', tree: await treeOf(r, head, 'clusters/dev'), deletionMarker: false });
    expect(snap.clusters.get('prod-eu')).to.include({ path: 'clusters/prod-eu', deletionMarker: true, tree: await treeOf(r, head, 'clusters/prod-eu') });
    expect(snap.clusters.get('stage')?.deletionMarker).to.equal(false);
    expect(snap.badFolders).to.deep.equal(['Bad_Name', long]);
    expect(log.lines.some((l) => l.message === 'Checked out new commit')).to.equal(false); // listed from Git's objects
    await snap.checkout?.();
    expect(await readFile(join(snap.workdir, 'clusters/dev/cluster.yaml'), 'utf8')).to.equal('name: dev\n');
    expect(log.lines.some((l) => l.message === 'Checked out new commit' && l.meta.revision === head)).to.equal(true);
    await source.close();
  });

  it('follows new commits: unchanged folders keep their tree, removed files leave the work tree, firstSeenAt is per commit', async () => {
    const r = await remote();
    await r.commitFiles({ 'clusters/a/cluster.yaml': 'v: 1\n', 'clusters/b/cluster.yaml': 'v: 1\n', 'clusters/b/extra.yaml': 'x: 1\n' }, 'two');
    await r.push();
    const source = createGitSource({ url: r.url, cacheDir: cacheDir() });
    const first = await source.sync();
    const again = await source.sync();
    expect(again.revision).to.equal(first.revision);
    expect(again.firstSeenAt.getTime()).to.equal(first.firstSeenAt.getTime());

    await new Promise((resolve) => setTimeout(resolve, 5));
    await r.commitFiles({ 'clusters/b/cluster.yaml': 'v: 2\n', 'clusters/b/extra.yaml': null, 'clusters/c/cluster.yaml': 'v: 1\n' }, 'change b, add c');
    await r.push();
    const second = await source.sync();
    expect(second.revision).to.equal(await r.head());
    expect(second.firstSeenAt.getTime()).to.be.greaterThan(first.firstSeenAt.getTime());
    expect(second.clusters.get('a')?.tree).to.equal(first.clusters.get('a')?.tree);
    expect(second.clusters.get('b')?.tree).to.not.equal(first.clusters.get('b')?.tree);
    expect([...second.clusters.keys()]).to.deep.equal(['a', 'b', 'c']);
    await second.checkout?.();
    expect(await readFile(join(second.workdir, 'clusters/b/cluster.yaml'), 'utf8')).to.equal('v: 2\n');
    expect(existsSync(join(second.workdir, 'clusters/b/extra.yaml'))).to.equal(false);

    await r.commitFiles({ 'clusters/a/cluster.yaml': null }, 'remove a');
    await r.push();
    expect([...(await source.sync()).clusters.keys()]).to.deep.equal(['b', 'c']);
    await source.close();
  });

  it('after its first sync lists only the folders a commit changed, with the same result as a full listing (changed, added, removed, marked, badly named)', async () => {
    const r = await remote();
    const files: Record<string, string> = {};
    for (let i = 0; i < 20; i++) files[`clusters/k${String(i).padStart(2, '0')}/cluster.yaml`] = `v: ${i}\n`;
    await r.commitFiles(files, 'twenty');
    await r.push();
    const log = createMemoryLogger();
    const source = createGitSource({ url: r.url, cacheDir: cacheDir(), log });
    await source.sync();
    const steps: Array<Record<string, string | null>> = [
      { 'clusters/k03/cluster.yaml': 'v: changed\n' },
      { 'clusters/new-one/cluster.yaml': 'v: 1\n', 'clusters/k05/cluster.yaml': null },
      { 'clusters/k07/DELETE': '', 'clusters/Bad_Name/cluster.yaml': 'v: 1\n', 'clusters/README.md': 'no folder\n' },
      { 'docs/notes.md': 'outside the clusters directory\n' },
    ];
    for (const step of steps) {
      await r.commitFiles(step, 'a step');
      await r.push();
      const incremental = await source.sync();
      const full = await createGitSource({ url: r.url, cacheDir: cacheDir() }).sync();
      expect(incremental.revision).to.equal(full.revision);
      expect([...incremental.clusters.entries()]).to.deep.equal([...full.clusters.entries()]);
      expect(incremental.badFolders).to.deep.equal(full.badFolders);
    }
    const partial = log.lines.filter((l) => l.message === 'listed the changed cluster folders').map((l) => l.meta.folders);
    expect(partial).to.deep.equal([1, 2, 2]); // the last commit changed no folder: nothing listed
    await source.close();
  });

  it('gives zero clusters when the clusters directory is missing, and honours another clusters directory', async () => {
    const r = await remote();
    await r.commitFiles({ 'README.md': 'empty fleet\n', 'fleet/clusters/edge-1/cluster.yaml': 'name: edge-1\n' }, 'no clusters/ yet');
    await r.push();
    const plain = await createGitSource({ url: r.url, cacheDir: cacheDir() }).sync();
    expect(plain.clusters.size).to.equal(0);
    expect(plain.badFolders).to.deep.equal([]);
    const nested = await createGitSource({ url: r.url, cacheDir: cacheDir(), clustersDir: './fleet/clusters/' }).sync();
    expect(nested.clusters.get('edge-1')).to.include({ path: 'fleet/clusters/edge-1' });
  });

  it('reuses its clone after a restart (even one that left index.lock behind) and follows a changed URL or rewritten history', async () => {
    const r = await remote();
    await r.commitFiles({ 'clusters/a/cluster.yaml': 'v: 1\n' }, 'one');
    await r.push();
    const dir = cacheDir();
    const first = await createGitSource({ url: r.url, cacheDir: dir }).sync();
    const gitDir = await stat(join(dir, '.git'));
    // A process killed during checkout leaves the index locked.
    await writeFile(join(dir, '.git', 'index.lock'), '');
    await r.commitFiles({ 'clusters/a/cluster.yaml': 'v: 2\n' }, 'two');
    await r.push();

    const restarted = await createGitSource({ url: r.url, cacheDir: dir }).sync();
    await restarted.checkout?.();
    expect((await stat(join(dir, '.git'))).ino).to.equal(gitDir.ino);
    expect(restarted.revision).to.equal(await r.head());
    expect(restarted.revision).to.not.equal(first.revision);
    expect(await readFile(join(dir, 'clusters/a/cluster.yaml'), 'utf8')).to.equal('v: 2\n');

    // Another remote with unrelated history: the origin URL is updated and the branch forced.
    const other = await remote();
    await other.commitFiles({ 'clusters/z/cluster.yaml': 'v: 9\n' }, 'elsewhere');
    await other.push();
    const moved = await createGitSource({ url: other.url, cacheDir: dir }).sync();
    await moved.checkout?.();
    expect(moved.revision).to.equal(await other.head());
    expect([...moved.clusters.keys()]).to.deep.equal(['z']);
    expect(existsSync(join(dir, 'clusters/a'))).to.equal(false);
  });

  it('materialize writes only the paths asked for, from Git\'s objects, exactly as at each commit (a deleted file or folder is absent, symlinked targets and executable bits come along) without checking the work tree out; a .gitattributes falls back to the checkout', async () => {
    const r = await remote();
    await r.commitFiles(
      {
        'clusters/a/cluster.yaml': 'a: 1\n',
        'clusters/a/old.yaml': 'old: 1\n',
        'clusters/b/cluster.yaml': 'b: 1\n',
        'clusters/c/cluster.yaml': 'c: 1\n',
        'shared/values.yaml': 'shared: 1\n',
        'tools/run.sh': '#!/bin/sh\n',
      },
      'three folders, a shared file, a script',
    );
    await chmod(join(r.workdir, 'tools/run.sh'), 0o755);
    await symlink('../../shared/values.yaml', join(r.workdir, 'clusters/b/values.yaml'));
    await r.commitFiles({ 'clusters/b/link-note.txt': 'values.yaml links to shared/\n' }, 'a symlink and an executable');
    await r.push();
    const dir = cacheDir();
    const source = createGitSource({ url: r.url, cacheDir: dir });
    const first = await source.sync();
    const root1 = await first.materialize!(['clusters/a', 'clusters/b/', './tools/run.sh', '../outside']);
    expect(root1).to.not.equal(first.workdir);
    expect(await readFile(join(root1, 'clusters/a/cluster.yaml'), 'utf8')).to.equal('a: 1\n');
    expect(await readFile(join(root1, 'clusters/a/old.yaml'), 'utf8')).to.equal('old: 1\n');
    expect(await readlink(join(root1, 'clusters/b/values.yaml'))).to.equal('../../shared/values.yaml');
    expect(await readFile(join(root1, 'clusters/b/values.yaml'), 'utf8'), 'the target came along').to.equal('shared: 1\n');
    expect((await stat(join(root1, 'tools/run.sh'))).mode & 0o111).to.not.equal(0);
    expect(existsSync(join(root1, 'clusters/c')), 'not asked for').to.equal(false);
    expect(existsSync(join(dir, 'clusters')), 'no checkout').to.equal(false);
    expect(await first.materialize!(['clusters/a/cluster.yaml']), 'already there: the same directory').to.equal(root1);

    // the next commit edits a, deletes a file of it and all of b
    await r.commitFiles({ 'clusters/a/cluster.yaml': 'a: 2\n', 'clusters/a/old.yaml': null, 'clusters/b/cluster.yaml': null, 'clusters/b/values.yaml': null, 'clusters/b/link-note.txt': null }, 'a edited, b gone');
    await r.push();
    const second = await source.sync();
    const root2 = await second.materialize!(['clusters/a', 'clusters/b']);
    expect(root2).to.not.equal(root1);
    expect(await readFile(join(root2, 'clusters/a/cluster.yaml'), 'utf8')).to.equal('a: 2\n');
    expect(existsSync(join(root2, 'clusters/a/old.yaml')), 'a file deleted in Git').to.equal(false);
    expect(existsSync(join(root2, 'clusters/b')), 'a folder deleted in Git').to.equal(false);
    expect(existsSync(join(root2, 'shared')), 'no longer linked to').to.equal(false);

    // attributes can change files at checkout: then the work tree is checked out and used
    await r.commitFiles({ '.gitattributes': '*.yaml text eol=crlf\n', 'clusters/a/cluster.yaml': 'a: 3\n' }, 'attributes');
    await r.push();
    const third = await source.sync();
    const root3 = await third.materialize!(['clusters/a']);
    expect(root3).to.equal(third.workdir);
    expect(await readFile(join(root3, 'clusters/a/cluster.yaml'), 'utf8')).to.equal('a: 3\r\n');
    expect(existsSync(root1), 'the directories of older commits are removed').to.equal(false);

    // a restart removes what an earlier process wrote (it may be half written)
    const restarted = createGitSource({ url: r.url, cacheDir: dir });
    await restarted.sync();
    expect(existsSync(root2)).to.equal(false);
  });

  it('materialize of many folders at once (a first pass: one listing of the commit, blobs read in batches) writes exactly those, each with its own files', async () => {
    const r = await remote();
    const files: Record<string, string> = {};
    for (let i = 0; i < 150; i++) {
      files[`clusters/c${i}/cluster.yaml`] = `c: ${i}\n`;
      files[`clusters/c${i}/workers.yaml`] = `w: ${i}\n`;
    }
    files['clusters/.gitattributes-not'] = 'a file named like attributes is not one\n';
    await r.commitFiles(files, '150 clusters');
    await r.push();
    const snap = await createGitSource({ url: r.url, cacheDir: cacheDir() }).sync();
    const asked = Array.from({ length: 100 }, (_, i) => `clusters/c${i}`);
    const root = await snap.materialize!(asked);
    expect(root).to.not.equal(snap.workdir);
    for (const i of [0, 42, 99]) {
      expect(await readFile(join(root, `clusters/c${i}/cluster.yaml`), 'utf8')).to.equal(`c: ${i}\n`);
      expect(await readFile(join(root, `clusters/c${i}/workers.yaml`), 'utf8')).to.equal(`w: ${i}\n`);
    }
    expect(existsSync(join(root, 'clusters/c100')), 'not asked for').to.equal(false);
    expect(existsSync(join(root, 'clusters/.gitattributes-not'))).to.equal(false);
  });

  it('runs one git process at a time on the clone; calls made while a sync waits share it', async () => {
    const r = await remote();
    await r.commitFiles({ 'clusters/a/cluster.yaml': 'v: 1\n' }, 'one');
    await r.push();
    // A git on PATH that records when each real git process starts and ends, and holds a fetch
    // open a while after it is done, so that the test can act while the first sync is still running.
    const shimDir = await mkdtemp(join(scratch, 'shim-'));
    const record = join(shimDir, 'calls');
    const realGit = (await execFileP('sh', ['-c', 'command -v git'])).stdout.trim();
    await writeFile(
      join(shimDir, 'git'),
      [
        '#!/bin/sh',
        `echo "start $1 $PWD" >> '${record}'`,
        `'${realGit}' "$@"`,
        'rc=$?',
        `if [ "$1" = fetch ]; then echo "fetched $PWD" >> '${record}'; sleep 0.5; fi`,
        `echo "end $1 $PWD" >> '${record}'`,
        'exit $rc',
        '',
      ].join('\n'),
    );
    await chmod(join(shimDir, 'git'), 0o755);
    const savedPath = process.env.PATH;
    process.env.PATH = `${shimDir}:${savedPath ?? ''}`;
    try {
      const dir = cacheDir();
      const source = createGitSource({ url: r.url, cacheDir: dir });
      const p1 = source.sync();
      while (!existsSync(record) || !(await readFile(record, 'utf8')).includes('fetched')) await new Promise((resolve) => setTimeout(resolve, 1));
      // Pushed after p1 fetched, while it still runs: the next sync must wait for it, then see the push.
      await r.commitFiles({ 'clusters/b/cluster.yaml': 'v: 1\n' }, 'two');
      await r.push();
      const later = [source.sync(), source.sync(), source.sync(), source.sync()];
      expect(later.every((p) => p === later[0])).to.equal(true);
      const [s1, s2] = await Promise.all([p1, later[0]!]);
      expect(s2.revision).to.equal(await r.head());
      expect(s1.revision).to.not.equal(s2.revision);
      await source.close();

      // Only the source's own processes: the test's commits run git too, elsewhere.
      const lines = (await readFile(record, 'utf8'))
        .trim()
        .split('\n')
        .filter((l) => l.endsWith(` ${dir}`) && !l.startsWith('fetched'))
        .map((l) => l.slice(0, -dir.length - 1));
      let running = 0;
      for (const line of lines) {
        running += line.startsWith('start') ? 1 : -1;
        expect(running, `overlapping git processes in:\n${lines.join('\n')}`).to.be.within(0, 1);
      }
      expect(lines.filter((l) => l === 'start fetch')).to.have.length(2);
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it('reports an unknown branch as InputError GIT_BRANCH_NOT_FOUND', async () => {
    const r = await remote();
    await r.commitFiles({ 'clusters/a/cluster.yaml': 'v: 1\n' }, 'one');
    await r.push();
    const err = await expectRejection(createGitSource({ url: r.url, branch: 'release', cacheDir: cacheDir() }).sync());
    expect(isCapflowError(err) && err.kind).to.equal('invalid-input');
    expect(isCapflowError(err) && err.code).to.equal('GIT_BRANCH_NOT_FOUND');
  });

  it('reports an unreachable remote as TransientError GIT_FETCH_FAILED without ever showing URL credentials', async () => {
    const port = await freePort(); // nothing listens there
    const token = 'tok-3c8b6f1d9e2a';
    const url = `http://fleet-bot:${token}@127.0.0.1:${port}/acme/fleet.git`;
    const source = createGitSource({ url, cacheDir: cacheDir() });
    const err = await expectRejection(source.sync());
    expect(isCapflowError(err) && err.kind).to.equal('transient');
    expect(isCapflowError(err) && err.code).to.equal('GIT_FETCH_FAILED');
    const chain = describeChain(err).join('\n');
    expect(chain).to.include(`http://***@127.0.0.1:${port}/acme/fleet.git`);
    expect(chain).to.not.include(token);
    expect(JSON.stringify(err, Object.getOwnPropertyNames(err))).to.not.include(token);
    // The next sync tries again (no stuck state) and fails the same way.
    expect(isCapflowError(await expectRejection(source.sync()))).to.equal(true);
  });

  it('syncs 1,000 cluster folders in well under 300 ms when nothing changed', async () => {
    const r = await remote();
    const files: Record<string, string> = {};
    for (let i = 0; i < 1000; i++) {
      const name = `cluster-${String(i).padStart(4, '0')}`;
      files[`clusters/${name}/cluster.yaml`] = `name: ${name}\n`;
      files[`clusters/${name}/network.yaml`] = `cidr: 10.${i % 256}.0.0/16\n`;
      files[`clusters/${name}/machines.yaml`] = 'replicas: 3\n';
    }
    await r.commitFiles(files, '1,000 clusters');
    await r.push();
    const source = createGitSource({ url: r.url, cacheDir: cacheDir() });
    const first = await source.sync();
    expect(first.clusters.size).to.equal(1000);

    const timings: number[] = [];
    let snap: GitSnapshot = first;
    for (let i = 0; i < 7; i++) {
      const start = performance.now();
      snap = await source.sync();
      timings.push(performance.now() - start);
    }
    expect(snap.clusters.size).to.equal(1000);
    timings.sort((a, b) => a - b);
    const median = timings[3]!;
    console.log(`      1,000 folders, nothing changed: median ${median.toFixed(1)} ms, max ${timings[6]!.toFixed(1)} ms`);
    expect(median).to.be.below(300);
    await source.close();
  });
});
