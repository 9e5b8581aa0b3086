/** retryStrategy and activeDeadlineSeconds, checked against Argo's docs (retries.md, fields reference). */
import { expect } from 'chai';
import path from 'node:path';
import { cleanTempDirs, node, readLines, runFixture, tempDir } from '../fixtures/runner/harness.js';

describe('runner: retries and deadlines', function () {
  this.timeout(20_000);
  after(cleanTempDirs);

  it('a transient failure (exit 75) under OnTransientError, should be retried with backoff until it succeeds', async () => {
    // Argo retries.md: "OnTransientError: retry steps that encounter errors defined as transient";
    // limit counts retries, not attempts ("the maximum number of total attempts will be limit + 1");
    // backoff duration × factor^n between attempts; `{{retries}}` is the 0-based retry number.
    const counter = path.join(tempDir(), 'counter');
    const { result } = await runFixture('retry', { counter, code: '75', 'succeed-on': '3' });
    expect(result.phase, result.message).to.equal('Succeeded');
    const n = node(result, result.workflowName);
    expect(n.attempts.map((a) => a.phase)).to.deep.equal(['Error', 'Error', 'Succeeded']);
    expect(n.attempts[0]!.exitCode).to.equal(75);
    expect(readLines(`${counter}.retries`)).to.deep.equal(['1 0', '2 1', '3 2']);
    const gap = (i: number): number => n.attempts[i]!.startedAt.getTime() - n.attempts[i - 1]!.finishedAt!.getTime();
    expect(gap(1)).to.be.at.least(90); // 100ms
    expect(gap(2)).to.be.at.least(190); // 100ms × 2
  });

  it('a non-transient failure (exit 2) under OnTransientError, should not be retried', async () => {
    // Argo retries.md: the policy decides which failures are retried; exit 2 is not transient.
    const counter = path.join(tempDir(), 'counter');
    const { result } = await runFixture('retry', { counter, code: '2' });
    expect(result.phase).to.equal('Failed');
    const n = node(result, result.workflowName);
    expect(n.attempts).to.have.length(1);
    expect(n.message).to.match(/exit code 2/);
  });

  it('the limit, should bound the attempts at limit + 1', async () => {
    // Argo RetryStrategy.limit: "the maximum number of total attempts will be limit + 1".
    const counter = path.join(tempDir(), 'counter');
    const { result } = await runFixture('retry', { counter, code: '75', 'succeed-on': '99' });
    expect(result.phase).to.equal('Error');
    expect(node(result, result.workflowName).attempts).to.have.length(5);
  });

  it('the default policy (OnFailure), should retry a failure but not an error', async () => {
    // Argo retries.md: "The default retryPolicy is OnFailure"; OnFailure retries steps whose main container
    // failed. Locally exit 75 is an Error (transient), any other non-zero exit a Failure.
    const failing = await runFixture('retry-default-policy', { counter: path.join(tempDir(), 'c'), code: '1' });
    expect(failing.result.phase).to.equal('Succeeded');
    expect(node(failing.result, failing.result.workflowName).attempts).to.have.length(2);
    const erroring = await runFixture('retry-default-policy', { counter: path.join(tempDir(), 'c'), code: '75' });
    expect(erroring.result.phase).to.equal('Error');
    expect(node(erroring.result, erroring.result.workflowName).attempts).to.have.length(1);
  });

  it('retryPolicy Always with expression asInt(lastRetry.exitCode) == 75, should retry exit 75 only', async () => {
    // Argo retries.md: "The expression result will be logical and with the retryPolicy. Both must be true to retry";
    // lastRetry.exitCode is "the exit code of the last retry".
    const transient = await runFixture('retry-expression', { counter: path.join(tempDir(), 'c'), code: '75' });
    expect(transient.result.phase).to.equal('Succeeded');
    expect(node(transient.result, transient.result.workflowName).attempts).to.have.length(3);
    const invalid = await runFixture('retry-expression', { counter: path.join(tempDir(), 'c'), code: '2' });
    expect(invalid.result.phase).to.equal('Failed');
    expect(node(invalid.result, invalid.result.workflowName).attempts).to.have.length(1);
  });

  it('a template activeDeadlineSeconds, should kill the child and fail the attempt with deadline exceeded', async () => {
    // Argo Template.activeDeadlineSeconds: "duration in seconds … that the pod may be active … before the
    // system actively tries to terminate the pod".
    const started = Date.now();
    const { result, log } = await runFixture('template-deadline');
    expect(Date.now() - started).to.be.lessThan(6000);
    expect(node(result, 'slow').phase).to.equal('Failed');
    expect(node(result, 'slow').message).to.match(/deadline exceeded \(activeDeadlineSeconds=1\)/);
    expect(log).to.deep.equal(['start slow']);
    expect(result.phase).to.equal('Failed');
  });

  it('a workflow activeDeadlineSeconds, should stop the run, start nothing new and still run the exit handler', async () => {
    // Argo WorkflowSpec.activeDeadlineSeconds: the workflow is failed once it runs longer; exit handlers
    // run after the workflow completes whatever its status (exit-handlers.md).
    const started = Date.now();
    const { result, log } = await runFixture('workflow-deadline');
    expect(Date.now() - started).to.be.lessThan(6000);
    expect(result.phase).to.equal('Failed');
    expect(result.message).to.match(/workflow deadline exceeded/);
    expect(node(result, 'slow').phase).to.equal('Failed');
    expect(node(result, 'after').phase).to.equal('Omitted');
    expect(log).to.deep.equal(['start slow', 'status=Failed']);
    expect(node(result, 'onExit').phase).to.equal('Succeeded');
  });

  it('a stop signal, should terminate the children and report Failed', async () => {
    // Like `argo stop`: running pods are terminated, the exit handler still runs.
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 300);
    const { result, log } = await runFixture('workflow-deadline', {}, { signal: ctl.signal });
    expect(result.phase).to.equal('Failed');
    expect(result.message).to.match(/stopped/);
    expect(log).to.deep.equal(['start slow', 'status=Failed']);
  });
});
