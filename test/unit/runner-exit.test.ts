/** Exit handlers and mutexes, checked against Argo's docs (exit-handlers.md, synchronization.md). */
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runWorkflow, type RunnerEvent } from '../../src/runner/index.js';
import { acquireMutex } from '../../src/runner/mutex.js';
import { cleanTempDirs, fixtureTemplates, node, overlaps, readLines, runFixture, tempDir } from '../fixtures/runner/harness.js';

describe('runner: exit handler', function () {
  this.timeout(20_000);
  after(cleanTempDirs);

  it('a successful run, should run onExit with workflow.status Succeeded and no failures', async () => {
    // Argo exit-handlers.md: the onExit template runs at the end of the workflow; `{{workflow.status}}` is
    // one of Succeeded, Failed, Error; `{{workflow.failures}}` a JSON list of failed nodes.
    const { result, log } = await runFixture('exit-handler');
    expect(result.phase).to.equal('Succeeded');
    expect(log).to.deep.equal(['start work', 'end work', 'status=Succeeded', 'failures=[]']);
    expect(node(result, 'onExit').name).to.equal(`${result.workflowName}.onExit`);
  });

  it('a failed run, should run onExit with workflow.status Failed and the failed node in workflow.failures', async () => {
    const { result, log } = await runFixture('exit-handler', { code: '4' });
    expect(result.phase).to.equal('Failed');
    expect(log).to.include('status=Failed');
    const failures = JSON.parse(log.find((l) => l.startsWith('failures='))!.slice('failures='.length)) as { displayName: string; phase: string; message: string }[];
    expect(failures).to.have.length(1);
    expect(failures[0]).to.include({ displayName: 'work', phase: 'Failed' });
    expect(failures[0]!.message).to.match(/exit code 4/);
  });
});

describe('runner: mutex', function () {
  this.timeout(20_000);
  after(cleanTempDirs);

  const runPair = async (clusterA: string, clusterB: string): Promise<{ log: string[]; events: RunnerEvent[] }> => {
    const dir = tempDir();
    const log = path.join(dir, 'shared.log');
    const events: RunnerEvent[] = [];
    const common = { templates: fixtureTemplates(), templateName: 'mutex', runDir: path.join(dir, 'runs'), lockDir: path.join(dir, 'locks'), onEvent: (e: RunnerEvent) => events.push(e) };
    const results = await Promise.all([
      runWorkflow({ ...common, parameters: { log, cluster: clusterA, run: 'r1' } }),
      runWorkflow({ ...common, parameters: { log, cluster: clusterB, run: 'r2' } }),
    ]);
    for (const r of results) expect(r.phase, r.message).to.equal('Succeeded');
    return { log: readLines(log), events };
  };

  it('two runs holding the same mutex, should not overlap', async () => {
    // Argo synchronization.md: a mutex lets one workflow at a time hold the lock; others wait.
    const { log, events } = await runPair('dev', 'dev');
    expect(overlaps(log, 'r1', 'r2'), log.join(', ')).to.equal(false);
    expect(events.some((e) => e.type === 'mutex-waiting' && e.mutex === 'cluster-dev')).to.equal(true);
  });

  it('two runs with different mutex names, should run at the same time', async () => {
    const { log } = await runPair('dev', 'prod');
    expect(overlaps(log, 'r1', 'r2'), log.join(', ')).to.equal(true);
  });

  it('a lock left by a dead process, should be taken over', async () => {
    const lockDir = tempDir();
    const stale = path.join(lockDir, `${encodeURIComponent('cluster-x')}.lock`);
    mkdirSync(stale);
    writeFileSync(path.join(stale, 'owner.json'), JSON.stringify({ pid: 2 ** 22 + 12345, holder: 'gone' }));
    const release = await acquireMutex('cluster-x', { lockDir, holder: 'test', signal: AbortSignal.timeout(2000) });
    await release();
  });
});
