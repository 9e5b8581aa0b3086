/**
 * DAG semantics of the local runner, each case checked against what the
 * Argo Workflows documentation says (cited per test).
 */
import { expect } from 'chai';
import { cleanTempDirs, node, overlaps, runFixture } from '../fixtures/runner/harness.js';

describe('runner: DAG semantics', function () {
  this.timeout(20_000);
  after(cleanTempDirs);

  it('a diamond A -> (B, C) -> D, should start D only after both B and C and run B and C at the same time', async () => {
    // Argo walk-through/dag.md: "B and C run in parallel after A; D runs after both B and C complete".
    const { result, log } = await runFixture('diamond');
    expect(result.phase).to.equal('Succeeded');
    const i = (s: string): number => log.indexOf(s);
    expect(i('end A')).to.be.lessThan(i('start B'));
    expect(i('end A')).to.be.lessThan(i('start C'));
    expect(i('start D')).to.be.greaterThan(i('end B'));
    expect(i('start D')).to.be.greaterThan(i('end C'));
    expect(overlaps(log, 'B', 'C'), log.join(', ')).to.equal(true);
    // timestamps agree with the log
    const b = node(result, 'B');
    const d = node(result, 'D');
    expect(d.startedAt!.getTime()).to.be.at.least(b.finishedAt!.getTime());
  });

  it('two independent chains, should run concurrently (measured by overlap, not wall time)', async () => {
    // Argo: tasks without dependencies between them are scheduled at once; `dependencies: [P1]` orders P2 after P1.
    const { result, log } = await runFixture('parallel');
    expect(result.phase).to.equal('Succeeded');
    expect(overlaps(log, 'P1', 'Q1')).to.equal(true);
    expect(overlaps(log, 'P2', 'Q2')).to.equal(true);
    expect(log.indexOf('start P2')).to.be.greaterThan(log.indexOf('end P1'));
  });

  it('a dag with parallelism 1, should never run two tasks at once', async () => {
    // Argo: template-level `parallelism` limits the concurrently running steps of that template.
    const { result, log } = await runFixture('parallel-one');
    expect(result.phase).to.equal('Succeeded');
    expect(overlaps(log, 'P1', 'Q1')).to.equal(false);
    expect(overlaps(log, 'Q1', 'R1')).to.equal(false);
    expect(overlaps(log, 'P1', 'R1')).to.equal(false);
  });

  it('a workflow with spec.parallelism 1, should run one container at a time', async () => {
    // Argo WorkflowSpec.parallelism: "limits the max total parallel pods that can execute at the same time in a workflow".
    const { result, log } = await runFixture('parallel-spec');
    expect(result.phase).to.equal('Succeeded');
    expect(overlaps(log, 'P1', 'Q1')).to.equal(false);
  });

  it('a task whose when is false, should be Skipped; a bare dependant runs and a .Succeeded dependant is Omitted', async () => {
    // Argo enhanced-depends-logic.md: `.Skipped` = when evaluated false; a bare `B` means
    // (B.Succeeded || B.Skipped || B.Daemoned); `.Omitted` = the depends condition evaluated false.
    const { result, log } = await runFixture('when');
    expect(node(result, 'B').phase).to.equal('Skipped');
    expect(node(result, 'B').message).to.match(/evaluated false/);
    expect(node(result, 'C').phase).to.equal('Succeeded');
    expect(node(result, 'D').phase).to.equal('Omitted');
    expect(node(result, 'E').phase).to.equal('Omitted');
    expect(log).to.deep.equal(['start A', 'end A', 'start C', 'end C']);
    expect(result.phase).to.equal('Succeeded');
  });

  it('the when flag set, should run B and D', async () => {
    // Argo: `when` is evaluated after parameter substitution (govaluate).
    const { result } = await runFixture('when', { flag: 'yes' });
    expect(['B', 'C', 'D', 'E'].map((n) => node(result, n).phase)).to.deep.equal(['Succeeded', 'Succeeded', 'Succeeded', 'Succeeded']);
  });

  it('a failed task with a depends: A.Failed cleanup, should run the cleanup and omit the plain dependant', async () => {
    // Argo enhanced-depends-logic.md: `.Failed` = task exited non-zero; `depends: A` needs A.Succeeded|Skipped.
    // Argo assessDAGPhase: an omitted leaf inherits its branch's phase, so `next` carries A's failure.
    const { result, log } = await runFixture('cleanup');
    expect(node(result, 'A').phase).to.equal('Failed');
    expect(node(result, 'A').message).to.match(/exit code 3/);
    expect(node(result, 'cleanup').phase).to.equal('Succeeded');
    expect(node(result, 'next').phase).to.equal('Omitted');
    expect(log).to.include('end cleanup');
    expect(result.phase).to.equal('Failed');
  });

  it('a failure only a .Failed cleanup depends on, should leave the DAG Succeeded', async () => {
    // Argo: the DAG's phase is decided by its leaf tasks; the failure of A is expected by `cleanup`.
    const { result } = await runFixture('cleanup-only');
    expect(node(result, 'A').phase).to.equal('Failed');
    expect(node(result, 'cleanup').phase).to.equal('Succeeded');
    expect(result.phase).to.equal('Succeeded');
  });

  it('failFast (default), should let the running sibling finish and start nothing new', async () => {
    // Argo DAGTemplate.failFast: "stop scheduling new steps, as soon as it detects that one of the DAG
    // nodes is failed. Then it waits until all DAG nodes are completed before failing the DAG itself."
    const { result, log } = await runFixture('failfast');
    expect(node(result, 'A').phase).to.equal('Failed');
    expect(node(result, 'B').phase).to.equal('Succeeded');
    expect(log).to.include('end B');
    expect(log).not.to.include('start C');
    expect(node(result, 'C').phase).to.equal('Omitted');
    expect(node(result, 'C').message).to.match(/not run: task "A" failed/);
    expect(result.phase).to.equal('Failed');
    expect(result.message).to.match(/task "A" failed/);
  });

  it('output parameters, should pass between tasks, across a templateRef, and out of the DAG', async () => {
    // Argo output-parameters: valueFrom.path is read after the container exits; `{{tasks.X.outputs.parameters.Y}}`
    // and `{{tasks.X.outputs.result}}` (stdout) feed later tasks; valueFrom.default applies when the file is missing;
    // a DAG template's outputs take valueFrom.parameter.
    const { result } = await runFixture('outputs');
    expect(result.phase, result.message).to.equal('Succeeded');
    expect(node(result, 'produce').outputs?.parameters).to.deep.equal({ greeting: 'hello world', absent: 'fallback' });
    expect(node(result, 'produce').outputs?.result).to.equal('result-of-produce');
    expect(node(result, 'lib-emit').templateRef).to.equal('runner-lib/emit');
    expect(result.outputs).to.deep.equal({
      final: 'hello world|result-of-produce|eu-west-1 for world',
      region: 'eu-west-1 for world',
    });
  });

  it('every node, should be recorded in order with an Argo-like name and path', async () => {
    const { result } = await runFixture('diamond', {}, { workflowName: 'diamond-abcde' });
    expect(result.workflowName).to.equal('diamond-abcde');
    expect(result.nodes[0]!.name).to.equal('diamond-abcde');
    expect(node(result, 'D').name).to.equal('diamond-abcde.D');
    expect(node(result, 'D').path).to.equal('D');
    expect(node(result, 'D').logFile).to.match(/diamond-abcde\/D\.log$/);
    const order = result.nodes.map((n) => n.displayName);
    expect(order.indexOf('A')).to.be.lessThan(order.indexOf('B'));
    expect(order.indexOf('B')).to.be.lessThan(order.indexOf('D'));
  });

  it('a generated workflow name, should be the template name and five random characters', async () => {
    // Argo: generateName `<name>-` gets a 5 character suffix.
    const { result } = await runFixture('when');
    expect(result.workflowName).to.match(/^when-[a-z0-9]{5}$/);
  });
});
