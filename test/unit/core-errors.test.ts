import { expect } from 'chai';
import {
  attachRetryContext,
  CapflowError,
  classifyError,
  ConflictError,
  describeChain,
  ExitCode,
  exitCodeFor,
  exitCodeForKind,
  InputError,
  InternalError,
  isCapflowError,
  isThrottling,
  isUnreachable,
  NotFoundError,
  toCapflowError,
  TransientError,
  type ErrorKind,
} from '../../src/core/errors.js';
import { retryPolicyFromEnv } from '../../src/core/retry.js';

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

/** A Node network error as the AWS SDK passes it on (connect refused, DNS failure). */
function netError(code: string, message: string, fields: Record<string, unknown> = {}) {
  return Object.assign(new Error(message), { code, syscall: 'connect', ...fields, $metadata: { attempts: 1 } });
}

describe('core/errors: the code printed agrees with the exit code, for every kind of failure', () => {
  const refused = () => netError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:9', { address: '127.0.0.1', port: 9 });
  const noHost = () => netError('ENOTFOUND', 'getaddrinfo ENOTFOUND ec2.us-east-1x.amazonaws.com', { syscall: 'getaddrinfo', hostname: 'ec2.us-east-1x.amazonaws.com' });
  const retried = <E>(err: E, endpoint?: string): E => {
    attachRetryContext(err, { system: 'AWS', operation: 'ec2 DescribeVpcs in us-east-1', ...(endpoint ? { endpoint } : {}), attempts: 9, elapsedMs: 56_800 });
    return err;
  };
  // [what, thrown, code, exit]: every path from a thrown value to what the user reads.
  const table: Array<[string, unknown, string, number]> = [
    ['a refused connection after AWS retries', retried(refused(), 'http://127.0.0.1:9'), 'AWS_UNREACHABLE', ExitCode.transient],
    ['an unknown host after AWS retries (region us-east-1x)', retried(noHost(), 'https://ec2.us-east-1x.amazonaws.com'), 'AWS_UNREACHABLE', ExitCode.transient],
    ['a try-again DNS answer after AWS retries', retried(netError('EAI_AGAIN', 'getaddrinfo EAI_AGAIN ec2', { hostname: 'ec2' })), 'AWS_UNREACHABLE', ExitCode.transient],
    ['throttling after AWS retries', retried(awsError('RequestLimitExceeded', 503)), 'AWS_THROTTLED', ExitCode.transient],
    ['a 500 after AWS retries (moto on an unknown region)', retried(awsError('Error', 500)), 'AWS_TRANSIENT', ExitCode.transient],
    ['a connection reset after AWS retries', retried(netError('ECONNRESET', 'socket hang up')), 'AWS_TRANSIENT', ExitCode.transient],
    ['a refused connection outside AWS', refused(), 'UNREACHABLE', ExitCode.transient],
    ['a happy-eyeballs AggregateError of refused connections', new AggregateError([refused(), refused()], 'connect failed'), 'UNREACHABLE', ExitCode.transient],
    ['a bare 429', awsError('SomethingNew', 429), 'THROTTLED', ExitCode.transient],
    ['an SDK TimeoutError', Object.assign(new Error('timed out'), { name: 'TimeoutError' }), 'TRANSIENT', ExitCode.transient],
    ['an attempt with no answer in time after AWS retries', retried(Object.assign(new Error('a request has exceeded the configured 60000 ms requestTimeout.'), { name: 'TimeoutError', code: 'ETIMEDOUT' })), 'AWS_TRANSIENT', ExitCode.transient],
    ['an AWS client error (403)', awsError('UnauthorizedOperation', 403), 'INTERNAL', ExitCode.internal],
    ['a TypeError (a bug)', new TypeError("Cannot read properties of undefined (reading 'value')"), 'INTERNAL', ExitCode.internal],
    ['a thrown string', 'boom', 'INTERNAL', ExitCode.internal],
    ['a thrown object', { weird: true }, 'INTERNAL', ExitCode.internal],
    ['an InputError', new InputError('SPEC_INVALID', 'bad'), 'SPEC_INVALID', ExitCode.invalidInput],
    ['a TransientError', new TransientError('WAIT_TIMEOUT', 'timed out'), 'WAIT_TIMEOUT', ExitCode.transient],
    ['a ConflictError', new ConflictError('NOT_OWNED', 'not ours'), 'NOT_OWNED', ExitCode.conflict],
    ['a NotFoundError', new NotFoundError('NO_SUCH_THING', 'gone'), 'NO_SUCH_THING', ExitCode.internal],
    ['an InternalError', new InternalError('BUG', 'oops'), 'BUG', ExitCode.internal],
  ];
  for (const [what, err, code, exit] of table) {
    it(`${what}: code ${code}, exit ${exit}`, () => {
      const coded = toCapflowError(err);
      expect(coded.code).to.equal(code);
      expect(coded.exitCode).to.equal(exit);
      expect(exitCodeFor(err), 'the CLI and the step host give the same exit code').to.equal(exit);
      // INTERNAL means exit 1, and exit 75 never says INTERNAL.
      expect(coded.code === 'INTERNAL').to.equal(!isCapflowError(err) && exit === ExitCode.internal);
      if (exit === ExitCode.transient) expect(coded.kind).to.equal('transient');
    });
  }

  it('every kind has one exit code, the same through the class and exitCodeForKind', () => {
    const kinds: Record<ErrorKind, number> = { 'invalid-input': 2, transient: 75, conflict: 3, 'not-found': 1, internal: 1, paused: 4 };
    for (const [kind, exit] of Object.entries(kinds) as Array<[ErrorKind, number]>) {
      expect(exitCodeForKind(kind), kind).to.equal(exit);
      expect(new CapflowError(kind, 'X', 'x').exitCode, kind).to.equal(exit);
    }
  });

  it('an unreachable endpoint names the endpoint, what was called, the attempts and time waited, and the last error', () => {
    const coded = toCapflowError(retried(refused(), 'http://127.0.0.1:9'));
    expect(coded.message).to.equal(
      'ec2 DescribeVpcs in us-east-1: endpoint http://127.0.0.1:9 is unreachable; gave up after 9 attempts over 56.8 s; last error: connect ECONNREFUSED 127.0.0.1:9',
    );
    expect(coded.hint).to.match(/AWS_ENDPOINT_URL/);
    expect(isUnreachable(refused())).to.equal(true);
    expect(isUnreachable(netError('ECONNRESET', 'reset'))).to.equal(false);
    // Without the AWS context, the address comes from the network error itself.
    expect(toCapflowError(noHost()).message).to.equal(
      'endpoint ec2.us-east-1x.amazonaws.com is unreachable; last error: getaddrinfo ENOTFOUND ec2.us-east-1x.amazonaws.com',
    );
  });

  it('throttling and other transient failures say what they waited for', () => {
    expect(toCapflowError(retried(awsError('RequestLimitExceeded', 503), 'https://ec2.us-east-1.amazonaws.com')).message).to.equal(
      'ec2 DescribeVpcs in us-east-1: throttled by https://ec2.us-east-1.amazonaws.com; gave up after 9 attempts over 56.8 s; last error: RequestLimitExceeded: RequestLimitExceeded',
    );
    expect(toCapflowError(retried(awsError('InternalError', 500))).message).to.match(/^ec2 DescribeVpcs in us-east-1: transient failure; gave up after 9 attempts/);
    const noAnswer = Object.assign(new Error('@smithy/node-http-handler - [ERROR] a request has exceeded the configured 60000 ms requestTimeout.'), { name: 'TimeoutError', code: 'ETIMEDOUT' });
    expect(toCapflowError(retried(noAnswer, 'http://127.0.0.1:5000')).message).to.equal(
      'ec2 DescribeVpcs in us-east-1: no answer in time from http://127.0.0.1:5000; gave up after 9 attempts over 56.8 s; last error: TimeoutError: @smithy/node-http-handler - [ERROR] a request has exceeded the configured 60000 ms requestTimeout.',
    );
  });

  it('a coded error wrapping a retried AWS error shows what was waited for in its causes', () => {
    const err = new TransientError('WAIT_TIMEOUT', 'timed out after 600s waiting for NAT gateways', { cause: retried(refused(), 'http://127.0.0.1:9') });
    expect(describeChain(err)).to.deep.equal([
      '[WAIT_TIMEOUT] timed out after 600s waiting for NAT gateways',
      '[AWS_UNREACHABLE] ec2 DescribeVpcs in us-east-1: endpoint http://127.0.0.1:9 is unreachable; gave up after 9 attempts over 56.8 s; last error: connect ECONNREFUSED 127.0.0.1:9',
    ]);
  });

  it('an unexpected error keeps its name and its own causes, without repeating itself', () => {
    const coded = toCapflowError(new TypeError('x is undefined', { cause: new Error('root') }));
    expect(describeChain(coded)).to.deep.equal(['[INTERNAL] TypeError: x is undefined', 'root']);
  });

  it('the AWS retry policy (retries, time retrying, time one attempt may take) can be set from the environment, and a bad value is invalid input', () => {
    expect(retryPolicyFromEnv({})).to.deep.equal({});
    expect(retryPolicyFromEnv({ CAPFLOW_AWS_RETRIES: '2', CAPFLOW_AWS_RETRY_TIMEOUT: '1500ms' })).to.deep.equal({ retries: 2, maxElapsedMs: 1500 });
    expect(retryPolicyFromEnv({ CAPFLOW_AWS_RETRY_TIMEOUT: '2m' })).to.deep.equal({ maxElapsedMs: 120_000 });
    expect(() => retryPolicyFromEnv({ CAPFLOW_AWS_RETRIES: 'many' })).to.throw(/CAPFLOW_AWS_RETRIES/).with.property('code', 'ENV_INVALID');
    expect(() => retryPolicyFromEnv({ CAPFLOW_AWS_RETRY_TIMEOUT: '1h' })).to.throw(/CAPFLOW_AWS_RETRY_TIMEOUT/);
    expect(retryPolicyFromEnv({ CAPFLOW_AWS_ATTEMPT_TIMEOUT: '20s' })).to.deep.equal({ attemptTimeoutMs: 20_000 });
    expect(() => retryPolicyFromEnv({ CAPFLOW_AWS_ATTEMPT_TIMEOUT: '0' }), 'no attempt without a timeout').to.throw(/CAPFLOW_AWS_ATTEMPT_TIMEOUT/).with.property('code', 'ENV_INVALID');
  });
});
