import { expect } from 'chai';
import {
  classifyError,
  ConflictError,
  describeChain,
  ExitCode,
  exitCodeFor,
  InputError,
  InternalError,
  isCapflowError,
  isThrottling,
  TransientError,
} from '../../src/core/errors.js';

/** An error shaped like the AWS SDK v3 service exceptions. */
function awsError(name: string, status: number, fault: 'client' | 'server' = status >= 500 ? 'server' : 'client') {
  return Object.assign(new Error(name), { name, $fault: fault, $metadata: { httpStatusCode: status } });
}

describe('core/errors: classification and exit codes', () => {
  const cases: Array<[string, unknown, string, number]> = [
    ['EC2 RequestLimitExceeded is transient', awsError('RequestLimitExceeded', 503), 'transient', ExitCode.transient],
    ['query-protocol Throttling (400) is transient', awsError('Throttling', 400), 'transient', ExitCode.transient],
    ['a bare HTTP 429 is transient', awsError('SomethingNew', 429), 'transient', ExitCode.transient],
    ['a 500 InternalError is transient', awsError('InternalError', 500), 'transient', ExitCode.transient],
    ['a 503 of any name is transient', awsError('Whatever', 503), 'transient', ExitCode.transient],
    ['a connection reset is transient', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 'transient', ExitCode.transient],
    ['an InvalidParameterValue (400) is not retried', awsError('InvalidParameterValue', 400), 'internal', ExitCode.internal],
    ['an UnauthorizedOperation (403) is not retried', awsError('UnauthorizedOperation', 403), 'internal', ExitCode.internal],
    ['an InputError exits 2', new InputError('SPEC_INVALID', 'bad'), 'invalid-input', ExitCode.invalidInput],
    ['a TransientError exits 75', new TransientError('NAT_PENDING', 'wait'), 'transient', ExitCode.transient],
    ['a ConflictError exits 3', new ConflictError('NOT_OWNED', 'found but not owned'), 'conflict', ExitCode.conflict],
    ['an InternalError exits 1', new InternalError('BUG', 'oops'), 'internal', ExitCode.internal],
    ['a plain Error exits 1', new Error('boom'), 'internal', ExitCode.internal],
    ['a thrown string exits 1', 'boom', 'internal', ExitCode.internal],
  ];
  for (const [name, err, kind, code] of cases) {
    it(`${name}`, () => {
      expect(classifyError(err)).to.equal(kind);
      expect(exitCodeFor(err)).to.equal(code);
    });
  }

  it('throttling is told apart from other transient failures', () => {
    expect(isThrottling(awsError('RequestLimitExceeded', 503))).to.equal(true);
    expect(isThrottling(awsError('InternalError', 500))).to.equal(false);
  });

  it('coded errors are recognised without instanceof and keep code, hint and cause', () => {
    const root = awsError('DependencyViolation', 400);
    const err = new TransientError('SUBNET_IN_USE', 'subnet subnet-0abc still has dependencies', { cause: root, hint: 'wait for the ENIs to go' });
    const copy: unknown = JSON.parse(JSON.stringify({ plain: true }));
    expect(isCapflowError(err)).to.equal(true);
    expect(isCapflowError(copy)).to.equal(false);
    expect(err.code).to.equal('SUBNET_IN_USE');
    expect(err.hint).to.equal('wait for the ENIs to go');
    expect(err.name).to.equal('TransientError');
    expect(describeChain(err)).to.deep.equal(['[SUBNET_IN_USE] subnet subnet-0abc still has dependencies', 'DependencyViolation: DependencyViolation']);
  });
});
