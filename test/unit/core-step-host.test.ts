import { expect } from 'chai';
import { mkdtempSync, readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import os from 'node:os';
import path from 'node:path';
import type { Executor, StepOptions } from '../../src/core/executor.js';
import { runStep } from '../../src/core/step-host.js';
import { createMemoryLogger } from '../../src/core/logger.js';
import { LocalSecretStore } from '../../src/core/secrets.js';
import { ConflictError, InputError, TransientError } from '../../src/core/errors.js';

function sink() {
  const chunks: string[] = [];
  const stream = new Writable({ write(c, _e, cb) { chunks.push(String(c)); cb(); } });
  return { stream, lines: () => chunks.join('').trim().split('\n').filter(Boolean) };
}

const options = (params: Record<string, string> = {}): StepOptions => ({
  repoDir: '/repo', clusterPath: 'clusters/dev', revision: 'abc123', dryRun: false, delete: false, params,
});

/** A small executor defined by the test to exercise the host's contract. */
function executor(run: Executor['run']): Executor {
  return {
    id: 'contract-probe',
    description: 'test executor',
    supportsDelete: false,
    supportsDryRun: false,
    inputSchema: { type: 'object', additionalProperties: false, properties: { size: { type: 'string', pattern: '^[0-9]+$' }, mode: { type: 'string', default: 'fast' } } },
    outputSchema: { type: 'object', additionalProperties: false, required: ['answer'], properties: { answer: { type: 'string' } } },
    run,
  };
}

describe('core/step-host: the executor contract', () => {
  const deps = () => {
    const out = sink();
    return { out, deps: { log: createMemoryLogger(), stdout: out.stream, secrets: new LocalSecretStore(mkdtempSync(path.join(os.tmpdir(), 'capflow-s-'))) } };
  };

  it('validates parameters (defaults filled), runs, writes outputs and prints one JSON summary line', async () => {
    const outputsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-o-'));
    const { out, deps: d } = deps();
    let seenMode: string | undefined;
    const { exitCode, summary } = await runStep(
      executor(async (ctx) => {
        seenMode = ctx.options.params.mode;
        ctx.log.info('Working', { size: ctx.options.params.size });
        return { outputs: { answer: '42' }, summary: { created: 0 } };
      }),
      options({ size: '3' }),
      { ...d, outputsDir },
    );
    expect(exitCode).to.equal(0);
    expect(seenMode).to.equal('fast');
    expect(readFileSync(path.join(outputsDir, 'answer'), 'utf8')).to.equal('42');
    const lines = out.lines();
    expect(lines).to.have.length(1);
    const parsed = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(parsed).to.deep.include({ step: 'contract-probe', status: 'succeeded', exitCode: 0, created: 0, revision: 'abc123', outputs: { answer: '42' } });
    expect(parsed.awsCalls).to.deep.equal({ mutating: 0, read: 0, retried: 0, rateLimitWaitMs: 0, byAction: {} });
    expect(summary.status).to.equal('succeeded');
  });

  const failures: Array<[string, () => never, number, string]> = [
    ['an invalid input exits 2', () => { throw new InputError('BAD', 'bad spec'); }, 2, 'BAD'],
    ['a transient failure exits 75', () => { throw new TransientError('LATER', 'try later'); }, 75, 'LATER'],
    ['a conflict exits 3', () => { throw new ConflictError('NOT_OWNED', 'vpc-1 is not ours'); }, 3, 'NOT_OWNED'],
    ['an unexpected error exits 1', () => { throw new Error('bug'); }, 1, 'INTERNAL'],
    // A raw transient error (not coded by the executor) exits 75 and never says INTERNAL.
    ['an unreachable endpoint exits 75', () => { throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED', address: '127.0.0.1', port: 9 }); }, 75, 'UNREACHABLE'],
    ['a 503 exits 75', () => { throw Object.assign(new Error('unavailable'), { name: 'ServiceUnavailable', $metadata: { httpStatusCode: 503 } }); }, 75, 'TRANSIENT'],
  ];
  for (const [name, thrower, code, errorCode] of failures) {
    it(`${name}, with the error in the summary`, async () => {
      const { out, deps: d } = deps();
      const { exitCode } = await runStep(executor(async () => thrower()), options(), d);
      expect(exitCode).to.equal(code);
      const parsed = JSON.parse(out.lines()[0]!) as { status: string; error: { code: string } };
      expect(parsed.status).to.equal('failed');
      expect(parsed.error.code).to.equal(errorCode);
    });
  }

  it('rejects unknown or malformed parameters before running', async () => {
    const { out, deps: d } = deps();
    let ran = false;
    const { exitCode } = await runStep(executor(async () => { ran = true; return { outputs: { answer: 'x' } }; }), options({ size: 'big', colour: 'red' }), d);
    expect(ran).to.equal(false);
    expect(exitCode).to.equal(2);
    const parsed = JSON.parse(out.lines()[0]!) as { error: { message: string } };
    expect(parsed.error.message).to.include('unknown parameter "colour"').and.to.include('size: must match pattern');
  });

  it('treats outputs that break the schema as our bug (exit 1), and never prints a secret output', async () => {
    const { out, deps: d } = deps();
    const { exitCode } = await runStep(executor(async () => ({ outputs: { answer: 'abcdef.0123456789abcdef' } })), options(), d);
    expect(exitCode).to.equal(1);
    expect(out.lines().join('\n')).to.not.include('0123456789abcdef');
  });

  it('refuses --delete and --dry-run for a step without them', async () => {
    const { deps: d } = deps();
    const res = await runStep(executor(async () => ({ outputs: { answer: 'x' } })), { ...options(), delete: true }, d);
    expect(res.exitCode).to.equal(2);
    expect(res.summary.error?.code).to.equal('STEP_NO_DELETE');
  });
});
