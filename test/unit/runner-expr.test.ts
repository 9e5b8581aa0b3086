/** The depends and when expression languages (Argo enhanced-depends-logic.md; govaluate for when). */
import { expect } from 'chai';
import { evaluateDepends, evaluateRetryExpression, evaluateWhen, parseDepends } from '../../src/runner/index.js';
import type { NodePhase } from '../../src/runner/index.js';

describe('runner: depends expressions', () => {
  const phases: Record<string, NodePhase> = { a: 'Succeeded', b: 'Failed', c: 'Skipped', d: 'Error', e: 'Omitted', 'task-2': 'Succeeded' };
  const cases: [string, boolean][] = [
    ['a', true],
    ['c', true], // bare = Succeeded || Skipped || Daemoned
    ['b', false],
    ['a.Succeeded && b.Failed', true],
    ['a && !b.Failed', false],
    ['(b.Succeeded || b.Failed) && c.Skipped', true],
    ['d.Errored', true],
    ['e.Omitted', true],
    ['b.AllFailed || a.AnySucceeded', true],
    ['a.Daemoned', false],
    ['task-2 || b', true],
  ];
  for (const [expr, want] of cases) {
    it(`"${expr}", should be ${want}`, () => {
      expect(evaluateDepends(parseDepends(expr), (t) => phases[t]!)).to.equal(want);
    });
  }
  it('an unknown result or broken syntax, should be an InputError', () => {
    expect(() => parseDepends('a.Finished')).to.throw(/unknown task result/);
    expect(() => parseDepends('(a && b')).to.throw(/missing "\)"/);
    expect(() => parseDepends('a &&')).to.throw(/unexpected end/);
  });
});

describe('runner: when expressions', () => {
  const cases: [string, boolean][] = [
    ['"yes" == "yes"', true],
    ['yes == yes', true], // bare words are strings (Argo converts govaluate variables to strings)
    ['foo != bar', true],
    ['5 > 3', true],
    ['2.5 <= 2', false],
    ['"b" > "a"', true],
    ['true', true],
    ['false || (1 == 1 && !false)', true],
    ['"eu-west-1" =~ "^eu-"', true],
    ['"x" !~ "x"', false],
  ];
  for (const [expr, want] of cases) {
    it(`"${expr}", should be ${want}`, () => {
      expect(evaluateWhen(expr)).to.equal(want);
    });
  }
  it('a non-boolean result or mixed comparison, should be an InputError', () => {
    expect(() => evaluateWhen('"x"')).to.throw(/not a boolean/);
    expect(() => evaluateWhen('1 < "a"')).to.throw(/cannot compare/);
    expect(() => evaluateWhen('us-east-1 == x')).to.throw(/quotes/);
  });
});

describe('runner: retry expressions', () => {
  const last = { exitCode: 75, status: 'Error', duration: 3.5, message: 'transient failure (exit code 75)' };
  const cases: [string, boolean][] = [
    ['asInt(lastRetry.exitCode) == 75', true],
    ['lastRetry.exitCode == "75"', true],
    ['lastRetry.status == "Error" and asFloat(lastRetry.duration) < 10', true],
    ['not (lastRetry.status == "Failed")', true],
    ['asInt(lastRetry.exitCode) != 75 || lastRetry.message =~ "transient"', true],
  ];
  for (const [expr, want] of cases) {
    it(`"${expr}", should be ${want}`, () => {
      expect(evaluateRetryExpression(expr, last)).to.equal(want);
    });
  }
  it('other variables or functions, should be an InputError', () => {
    expect(() => evaluateRetryExpression('sprig.trim(lastRetry.message) == ""', last)).to.throw(/not supported by the local runner/);
    expect(() => evaluateRetryExpression('workflow.status == "Failed"', last)).to.throw(/not supported/);
  });
});
