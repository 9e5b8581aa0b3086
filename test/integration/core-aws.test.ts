import { expect } from 'chai';
import { CreateKeyPairCommand, CreateTagsCommand, CreateVpcCommand, DescribeVpcsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { AwsClients } from '../../src/core/aws.js';
import { toCapflowError } from '../../src/core/errors.js';
import { Ec2RateLimiter, realClock, type Ec2Buckets } from '../../src/core/rate-limit.js';
import { clientConfig } from '../support/moto.js';
import { useMotoBehindProxy, type FaultProxy } from '../support/fault-proxy.js';

/** Clients as an executor builds them, pointed at moto through the fault proxy. */
function clientsVia(proxy: FaultProxy): AwsClients {
  const { credentials, region } = clientConfig(proxy.endpoint);
  return new AwsClients({
    endpoint: proxy.endpoint,
    region,
    clientConfig: { credentials },
    retry: { minTimeoutMs: 5, maxTimeoutMs: 20, retries: 6 },
  });
}

describe('core/aws: clients, call counting and retries against moto', function () {
  const bed = useMotoBehindProxy();

  it('builds one client per class and region, and counts calls by action and kind', async () => {
    const aws = clientsVia(bed.proxy);
    const ec2 = aws.get(EC2Client);
    expect(aws.get(EC2Client)).to.equal(ec2);
    expect(aws.get(EC2Client, 'eu-west-1')).to.not.equal(ec2);
    const vpc = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.0.0.0/16' }));
    await ec2.send(new DescribeVpcsCommand({ VpcIds: [vpc.Vpc!.VpcId!] }));
    await ec2.send(new DescribeVpcsCommand({}));
    const summary = aws.counter.summary();
    expect(summary.byAction).to.deep.equal({ 'ec2:CreateVpc': 1, 'ec2:DescribeVpcs': 2 });
    expect(summary).to.include({ mutating: 1, read: 2, retried: 0 });
    // What the counter says is what reached the wire.
    expect(bed.proxy.calls.map((c) => c.action)).to.deep.equal(['CreateVpc', 'DescribeVpcs', 'DescribeVpcs']);
    aws.destroy();
  });

  it('retries throttled calls with backoff, and the SDK adds no retries of its own', async () => {
    const aws = clientsVia(bed.proxy);
    bed.proxy.setFaults({ throttleFirst: 3, onlyActions: ['CreateVpc'] });
    const out = await aws.get(EC2Client).send(new CreateVpcCommand({ CidrBlock: '10.1.0.0/16' }));
    expect(out.Vpc?.VpcId).to.match(/^vpc-/);
    // 3 throttled answers + 1 success: exactly 4 HTTP calls, no multiplication.
    expect(bed.proxy.countBy('CreateVpc')).to.equal(4);
    const counted = aws.counter.all().find((c) => c.action === 'CreateVpc')!;
    expect(counted.attempts).to.equal(4);
    expect(counted.errors).to.deep.equal({ RequestLimitExceeded: 3 });
    aws.destroy();
  });

  it('retries 5xx answers and gives up on a client error at once', async () => {
    const aws = clientsVia(bed.proxy);
    bed.proxy.setFaults({ serverErrorRate: 1, onlyActions: ['CreateTags'] });
    const failed = await aws
      .get(EC2Client)
      .send(new CreateTagsCommand({ Resources: ['vpc-123'], Tags: [{ Key: 'a', Value: 'b' }] }))
      .then(() => undefined, (e: unknown) => e as { $metadata?: { httpStatusCode?: number } });
    expect(failed?.$metadata?.httpStatusCode).to.equal(500);
    // 1 try + 6 retries, all answered 500.
    expect(bed.proxy.countBy('CreateTags')).to.equal(7);
    // Reported, it says what it waited for (exit 75, not INTERNAL).
    const coded = toCapflowError(failed);
    expect(coded).to.include({ code: 'AWS_TRANSIENT', kind: 'transient' });
    expect(coded.message).to.match(new RegExp(`^ec2 CreateTags in us-east-1: transient failure at ${bed.proxy.endpoint}; gave up after 7 attempts over [\\d.]+ s; last error: `));
    bed.proxy.setFaults({});
    const bad = aws.get(EC2Client).send(new CreateVpcCommand({ CidrBlock: 'not-a-cidr' }));
    const err = await bad.then(() => undefined, (e: unknown) => e as { name: string; $metadata?: { httpStatusCode?: number } });
    expect(err?.$metadata?.httpStatusCode, 'moto rejects the CIDR as a client error').to.be.within(400, 499);
    // A client error is not retried: one call only.
    expect(bed.proxy.countBy('CreateVpc')).to.equal(1);
    aws.destroy();
  });

  it('an attempt that gets no answer in time fails as transient, is retried, and is reported with what was waited for (a silent endpoint never hangs a step)', async () => {
    const { credentials, region } = clientConfig(bed.proxy.endpoint);
    const aws = new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { minTimeoutMs: 5, maxTimeoutMs: 20, retries: 2, attemptTimeoutMs: 300 } });
    // The proxy holds every DescribeVpcs far longer than an attempt may take: an endpoint that accepts and never answers.
    bed.proxy.setFaults({ latencyMs: 3_000, onlyActions: ['DescribeVpcs'] });
    const failed = await aws
      .get(EC2Client)
      .send(new DescribeVpcsCommand({}))
      .then(() => undefined, (e: unknown) => e);
    const coded = toCapflowError(failed);
    expect(coded).to.include({ code: 'AWS_TRANSIENT', kind: 'transient' });
    expect(coded.exitCode).to.equal(75);
    expect(coded.message).to.match(
      new RegExp(`^ec2 DescribeVpcs in us-east-1: no answer in time from ${bed.proxy.endpoint}; gave up after 3 attempts over [\\d.]+ s; last error: TimeoutError: .*300 ms requestTimeout`),
    );
    expect(aws.counter.all().find((c) => c.action === 'DescribeVpcs')?.attempts).to.equal(3);
    aws.destroy();
  });

  it('honours AWS_ENDPOINT_URL when no endpoint is given', async () => {
    const saved = process.env.AWS_ENDPOINT_URL;
    process.env.AWS_ENDPOINT_URL = bed.proxy.endpoint;
    try {
      const { credentials } = clientConfig(bed.proxy.endpoint);
      const aws = new AwsClients({ region: 'us-east-1', clientConfig: { credentials } });
      await aws.get(EC2Client).send(new DescribeVpcsCommand({}));
      expect(bed.proxy.countBy('DescribeVpcs')).to.equal(1);
      aws.destroy();
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL;
      else process.env.AWS_ENDPOINT_URL = saved;
    }
  });
  describe('client-side EC2 token buckets against the proxy enforcing the same buckets (real clock)', () => {
    // Small buckets, so the test takes about a second; the arithmetic is the same as EC2's 50/5.
    // The clients aim 20% under (not the default 5%): at 10 a second that absorbs 200 ms of calls
    // arriving later than sent, which a loaded test machine does produce.
    const HEADROOM = 0.8;
    const buckets: Ec2Buckets = { mutating: { burst: 3, refill: 10 }, nonMutating: { burst: 5, refill: 20 }, runInstances: { burst: 1, refill: 2 } };
    const burstOf = (aws: AwsClients, n: number, tag: string) =>
      Promise.allSettled(Array.from({ length: n }, (_, i) => aws.get(EC2Client).send(new CreateKeyPairCommand({ KeyName: `${tag}-${i}` }))));

    it('12 concurrent mutating calls: the client spreads them at the refill rate and the proxy throttles none', async () => {
      const { credentials, region } = clientConfig(bed.proxy.endpoint);
      const aws = new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { retries: 0 }, rateLimit: new Ec2RateLimiter(1, buckets, realClock, HEADROOM) });
      bed.proxy.setFaults({ tokenBuckets: buckets });
      const started = Date.now();
      const results = await burstOf(aws, 12, 'limited');
      const elapsed = Date.now() - started;
      expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
      expect(bed.proxy.calls.filter((c) => c.faulted === 'token-bucket')).to.have.length(0);
      // 2.4 at once, the rest at 8 per s: at least ~1.2 s, and the wait shows in the summary.
      expect(elapsed).to.be.at.least(1100);
      expect(aws.counter.summary().rateLimitWaitMs).to.be.at.least(1100);
      aws.destroy();
    });

    it('the same calls without the client-side buckets are throttled by the proxy (RequestLimitExceeded)', async () => {
      const { credentials, region } = clientConfig(bed.proxy.endpoint);
      const aws = new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { retries: 0 }, rateLimit: false });
      bed.proxy.setFaults({ tokenBuckets: buckets });
      const results = await burstOf(aws, 12, 'unlimited');
      expect(bed.proxy.calls.filter((c) => c.faulted === 'token-bucket').length).to.be.at.least(6);
      expect(results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as { name?: string }).name)).to.include('RequestLimitExceeded');
      expect(aws.counter.summary().rateLimitWaitMs).to.equal(0);
      aws.destroy();
    });

    it('N processes sharing an account each take 1/N: two limiters of 2 slots together stay within the account', async () => {
      const { credentials, region } = clientConfig(bed.proxy.endpoint);
      const make = () => new AwsClients({ endpoint: bed.proxy.endpoint, region, clientConfig: { credentials }, retry: { retries: 0 }, rateLimit: new Ec2RateLimiter(2, { ...buckets, mutating: { burst: 4, refill: 10 } }, realClock, HEADROOM) });
      const a = make();
      const b = make();
      bed.proxy.setFaults({ tokenBuckets: { ...buckets, mutating: { burst: 4, refill: 10 } } });
      const results = (await Promise.all([burstOf(a, 8, 'share-a'), burstOf(b, 8, 'share-b')])).flat();
      expect(results.filter((r) => r.status === 'rejected')).to.deep.equal([]);
      expect(bed.proxy.calls.filter((c) => c.faulted === 'token-bucket')).to.have.length(0);
      a.destroy();
      b.destroy();
    });
  });
});
