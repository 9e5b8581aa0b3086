/** Semaphores (Argo synchronization.md: "semaphores restrict Workflows or Templates to a configured number of parallel executions"). */
import { expect } from 'chai';
import { mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runWorkflow, type RunnerEvent } from '../../src/runner/index.js';
import { acquireSemaphore } from '../../src/runner/semaphore.js';
import { loadConfigMapFiles } from '../../src/runner/load.js';
import { cleanTempDirs, fixtureTemplates, node, readLines, runFixture, tempDir } from '../fixtures/runner/harness.js';

/** The most `start`s without their `end` at any point of the shared log. */
function maxConcurrent(log: string[]): number {
  let now = 0;
  let max = 0;
  for (const l of log) {
    if (l.startsWith('start ')) max = Math.max(max, ++now);
    else if (l.startsWith('end ')) now--;
  }
  return max;
}

describe('runner: semaphores', function () {
  this.timeout(30_000);
  after(cleanTempDirs);

  it('four tasks on a semaphore of 2, should run at most 2 at a time, each reading the limit from the same ConfigMap key', async () => {
    const { result, log, events } = await runFixture('semaphore', {}, { configMaps: { accounts: { default: '2' } } });
    expect(result.phase, result.message).to.equal('Succeeded');
    expect(log.filter((l) => l.startsWith('start'))).to.have.length(4);
    expect(maxConcurrent(log), log.join('\n')).to.equal(2);
    for (const l of log.filter((x) => x.startsWith('start'))) expect(l).to.match(/slots=2$/);
    expect(events.some((e) => e.type === 'semaphore-waiting' && e.semaphore === 'accounts/default' && e.limit === 2)).to.equal(true);
  });

  it('two runs (as two `capflow run` processes would) on one key share its slots; a run on another key does not wait for them', async () => {
    const dir = tempDir();
    const log = path.join(dir, 'shared.log');
    const events: RunnerEvent[] = [];
    const common = { templates: fixtureTemplates(), templateName: 'semaphore', runDir: path.join(dir, 'runs'), lockDir: path.join(dir, 'locks'), configMaps: { accounts: { default: '3', other: '4' } }, onEvent: (e: RunnerEvent) => events.push(e) };
    const results = await Promise.all([
      runWorkflow({ ...common, parameters: { log, run: 'x' } }),
      runWorkflow({ ...common, parameters: { log, run: 'y' } }),
    ]);
    for (const r of results) expect(r.phase, r.message).to.equal('Succeeded');
    expect(maxConcurrent(readLines(log))).to.equal(3);
    const other = await runFixture('semaphore', { account: 'other' }, { configMaps: common.configMaps, lockDir: common.lockDir });
    expect(maxConcurrent(other.log)).to.equal(4);
    expect(other.events.some((e) => e.type === 'semaphore-waiting')).to.equal(false);
  });

  it('a slot held by another live process counts; one left by a dead process, or without an owner long after it was made, is taken over', async () => {
    const lockDir = tempDir();
    const dir = path.join(lockDir, `${encodeURIComponent('accounts/default')}.semaphore`);
    const slot = (i: number, owner?: object): void => {
      rmSync(path.join(dir, `slot-${i}`), { recursive: true, force: true });
      mkdirSync(path.join(dir, `slot-${i}`), { recursive: true });
      if (owner) writeFileSync(path.join(dir, `slot-${i}`, 'owner.json'), JSON.stringify(owner));
    };
    // slot-0: our parent (alive, not us): busy. slot-1: a pid that cannot exist: stale.
    slot(0, { pid: process.ppid, holder: 'another capflow run' });
    slot(1, { pid: 2 ** 22 + 12345, holder: 'gone' });
    const first = await acquireSemaphore('accounts/default', { limit: 2, lockDir, holder: 'test', signal: AbortSignal.timeout(2000) });
    // Both slots are now held (by the parent and by us): the next one waits until one is free.
    let waited = false;
    const second = acquireSemaphore('accounts/default', { limit: 2, lockDir, holder: 'test', pollMs: 20, onWait: () => (waited = true), signal: AbortSignal.timeout(3000) });
    await new Promise((r) => setTimeout(r, 100));
    expect(waited).to.equal(true);
    await first();
    await (await second)();
    // An owner file never written (its owner died right after mkdir): taken over after the grace
    // period; one just made is not (its owner is writing it).
    slot(0);
    slot(1);
    let waitedForFresh = false;
    const stuck = acquireSemaphore('accounts/default', { limit: 2, lockDir, holder: 'test', pollMs: 20, onWait: () => (waitedForFresh = true), signal: AbortSignal.timeout(150) });
    expect(await stuck.then(() => 'acquired', (e: Error) => e.name)).to.equal('TimeoutError');
    expect(waitedForFresh).to.equal(true);
    const old = new Date(Date.now() - 60_000);
    utimesSync(path.join(dir, 'slot-0'), old, old);
    const third = await acquireSemaphore('accounts/default', { limit: 2, lockDir, holder: 'test', signal: AbortSignal.timeout(2000) });
    await third();
  });

  it('a slot whose owner file another process is still writing (empty), should be waited for, not fail the node', async () => {
    // Found by bench/many-clusters.bench.ts: 2 of 20 runs errored "Unexpected end of JSON input".
    const lockDir = tempDir();
    const dir = path.join(lockDir, `${encodeURIComponent('accounts/default')}.semaphore`);
    mkdirSync(path.join(dir, 'slot-0'), { recursive: true });
    writeFileSync(path.join(dir, 'slot-0', 'owner.json'), '');
    const err = await acquireSemaphore('accounts/default', { limit: 1, lockDir, holder: 'test', pollMs: 20, signal: AbortSignal.timeout(150) }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.name).to.equal('TimeoutError');
  });

  it('a semaphore whose ConfigMap or key the run was not given, should fail the node with what is missing', async () => {
    const noMap = await runFixture('semaphore', {}, { configMaps: {} });
    expect(noMap.result.phase).to.equal('Error');
    expect(node(noMap.result, 'A').message).to.match(/semaphore accounts\/default: no ConfigMap "accounts" was given to the local runner/);
    const noKey = await runFixture('semaphore', { account: 'prod' }, { configMaps: { accounts: { default: '2' } } });
    expect(node(noKey.result, 'A').message).to.match(/ConfigMap "accounts" has no key "prod"/);
    const bad = await runFixture('semaphore', {}, { configMaps: { accounts: { default: 'many' } } });
    expect(node(bad.result, 'A').message).to.match(/the limit must be a whole number >= 1, not "many"/);
  });

  it('reads ConfigMap files for `capflow run --config-map`; a value that is not a string is refused with file and line', () => {
    const dir = tempDir();
    const good = path.join(dir, 'accounts.yaml');
    writeFileSync(good, 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capflow-aws-accounts\ndata:\n  default: "2"\n  prod: "6"\n');
    expect(loadConfigMapFiles([good])).to.deep.equal({ 'capflow-aws-accounts': { default: '2', prod: '6' } });
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, '# limits\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capflow-aws-accounts\ndata:\n  default: 2\n');
    expect(() => loadConfigMapFiles([bad])).to.throw(`${bad}:2: ConfigMap "capflow-aws-accounts" data.default must be a string (quote it: "2")`);
  });
});
