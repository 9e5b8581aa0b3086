/** Renderers: plain lines, the summary table, the TTY tree. */
import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { createPlainRenderer, createTtyRenderer, formatSummaryTable } from '../../src/runner/index.js';
import type { NodeRecord, RunnerEvent } from '../../src/runner/index.js';
import { cleanTempDirs, runFixture } from '../fixtures/runner/harness.js';

function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let buf = '';
  stream.on('data', (d: Buffer) => (buf += d.toString()));
  return { stream, text: () => buf };
}

describe('runner: renderers', function () {
  this.timeout(20_000);
  after(cleanTempDirs);

  const at = (s: number): Date => new Date(2026, 0, 1, 12, 0, s);
  const n = (over: Partial<NodeRecord>): NodeRecord => ({
    id: 'wf.provision-vpc',
    name: 'wf.provision-vpc',
    displayName: 'provision-vpc',
    path: 'provision-vpc',
    depth: 1,
    templateName: 'provision-vpc',
    type: 'Pod',
    phase: 'Running',
    attempts: [],
    ...over,
  });

  it('the plain renderer, should write one line per state change', async () => {
    const { stream, text } = sink();
    const r = createPlainRenderer(stream);
    const events: RunnerEvent[] = [
      { type: 'node', time: at(1), node: n({ phase: 'Pending' }) }, // silent: nothing to say yet
      { type: 'node', time: at(1), node: n({ phase: 'Running', startedAt: at(1) }) },
      { type: 'node', time: at(1), node: n({ phase: 'Running', startedAt: at(1) }) }, // repeated: silent
      { type: 'node', time: at(3), node: n({ phase: 'Succeeded', startedAt: at(1), finishedAt: at(3) }) },
      { type: 'node', time: at(4), node: n({ id: 'wf.b', displayName: 'b', path: 'b', phase: 'Failed', startedAt: at(3), finishedAt: at(4), message: 'exit code 3' }) },
    ];
    for (const e of events) r.onEvent(e);
    r.close();
    await new Promise((res) => setImmediate(res));
    expect(text().split('\n').filter(Boolean)).to.deep.equal([
      '12:00:01 provision-vpc                Running',
      '12:00:03 provision-vpc                Succeeded 2.0s',
      '12:00:04 b                            Failed 1.0s  exit code 3',
    ]);
  });

  it('the summary table, should list every task with phase, attempts and message', async () => {
    const { result } = await runFixture('cleanup', {}, { workflowName: 'cleanup-abcde' });
    const table = formatSummaryTable(result).split('\n');
    expect(table[0]).to.match(/^STEP\s+TEMPLATE\s+PHASE\s+ATTEMPTS\s+DURATION\s+MESSAGE$/);
    expect(table.find((l) => l.startsWith('A '))).to.match(/^A\s+runner-lib\/step\s+Failed\s+1\s+\d+\.\ds\s+exit code 3$/);
    expect(table.find((l) => l.startsWith('cleanup '))).to.match(/Succeeded\s+1/);
    expect(table.find((l) => l.startsWith('next '))).to.match(/Omitted\s+omitted: depends condition not met/);
    expect(table).to.include('cleanup-abcde: Failed in ' + table.at(-2)!.split(' in ')[1]);
  });

  it('the TTY renderer, should draw the tree in place and restore the cursor', async () => {
    const { stream, text } = sink();
    const r = createTtyRenderer(stream, { fps: 50, columns: 80 });
    const { result } = await runFixture('diamond', {}, { onEvent: (e) => r.onEvent(e) });
    r.close();
    await new Promise((res) => setImmediate(res));
    const out = text();
    expect(result.phase).to.equal('Succeeded');
    expect(out.startsWith('\x1b[?25l')).to.equal(true);
    expect(out.endsWith('\x1b[?25h')).to.equal(true);
    expect(out.split('\x1b[').some((s) => /^\d+A/.test(s))).to.equal(true); // cursor up: redrawn in place
    expect(out).to.include('✔ D  Succeeded');
  });
});
