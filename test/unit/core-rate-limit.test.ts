/** EC2's token buckets on the client side, on a manual clock (src/core/rate-limit.ts). */
import { expect } from 'chai';
import { EC2_ACCOUNT_BUCKETS, Ec2RateLimiter, TokenBucket, ec2ActionClass, rateLimiterFromEnv, shareOf, type Clock } from '../../src/core/rate-limit.js';

/** A clock that moves only when a sleeper is woken: sleep(ms) advances it by ms at once. */
function manualClock(): Clock & { t: number; sleeps: number[] } {
  const c = {
    t: 0,
    sleeps: [] as number[],
    now: () => c.t,
    sleep: (ms: number) => {
      c.sleeps.push(ms);
      return Promise.resolve();
    },
  };
  return c;
}

describe('core/rate-limit: client-side EC2 token buckets (manual clock)', () => {
  it('serves the burst at once, then one token per 1/refill s, in the order asked', async () => {
    const clock = manualClock();
    const bucket = new TokenBucket({ burst: 3, refill: 2 }, clock);
    const waits = await Promise.all(Array.from({ length: 6 }, () => bucket.take()));
    // 3 from the burst, then 500 ms apart (2 per s), each reservation queued behind the last.
    expect(waits).to.deep.equal([0, 0, 0, 500, 1000, 1500]);
  });

  it('refills with time up to the burst, never beyond', async () => {
    const clock = manualClock();
    const bucket = new TokenBucket({ burst: 2, refill: 1 }, clock);
    await bucket.take();
    await bucket.take();
    expect(bucket.delayMs()).to.equal(1000);
    clock.t += 400;
    expect(bucket.delayMs()).to.equal(600);
    clock.t += 60_000;
    expect(await bucket.take()).to.equal(0);
    expect(await bucket.take()).to.equal(0);
    expect(await bucket.take()).to.equal(1000);
  });

  it('takes as many calls over a window as the bucket grants: burst + refill × time', async () => {
    const clock = manualClock();
    const bucket = new TokenBucket(EC2_ACCOUNT_BUCKETS.mutating, clock);
    let sent = 0;
    // Calls one after another for 10 s of clock: 50 + 5 × 10 = 100 go through.
    for (;;) {
      const wait = bucket.delayMs();
      if (clock.t + wait > 10_000) break;
      clock.t += wait;
      await bucket.take();
      sent++;
    }
    expect(sent).to.equal(100);
  });

  it('classes EC2 actions as AWS meters them: RunInstances alone, then mutating or not', () => {
    expect(ec2ActionClass('RunInstances', true)).to.equal('runInstances');
    expect(ec2ActionClass('CreateVpc', true)).to.equal('mutating');
    expect(ec2ActionClass('TerminateInstances', true)).to.equal('mutating');
    expect(ec2ActionClass('DescribeInstances', false)).to.equal('nonMutating');
  });

  it("a process's share is the account's buckets over the semaphore's slots, at least one token of burst", () => {
    expect(shareOf(EC2_ACCOUNT_BUCKETS, 4)).to.deep.equal({
      mutating: { burst: 12.5, refill: 1.25 },
      nonMutating: { burst: 25, refill: 5 },
      runInstances: { burst: 1.25, refill: 0.5 },
    });
    expect(shareOf(EC2_ACCOUNT_BUCKETS, 10).runInstances).to.deep.equal({ burst: 1, refill: 0.2 });
    // The shares of all slots together never refill faster than the account.
    const n = 7;
    const s = shareOf(EC2_ACCOUNT_BUCKETS, n);
    for (const k of ['mutating', 'nonMutating', 'runInstances'] as const) expect(s[k].refill * n).to.be.closeTo(EC2_ACCOUNT_BUCKETS[k].refill, 1e-9);
  });

  it('keeps one set of buckets per region (AWS meters regions apart)', async () => {
    const clock = manualClock();
    const limiter = new Ec2RateLimiter(5, EC2_ACCOUNT_BUCKETS, clock, 1);
    expect(await limiter.bucket('us-east-1', 'runInstances').take()).to.equal(0);
    expect(await limiter.bucket('us-east-1', 'runInstances').take()).to.equal(2500);
    expect(await limiter.bucket('eu-west-1', 'runInstances').take()).to.equal(0);
  });

  it('reads CAPFLOW_AWS_ACCOUNT_SLOTS: unset = the whole account, N = 1/N of it, off = none, anything else an input error', () => {
    expect(rateLimiterFromEnv({})?.slots).to.equal(1);
    // 5% under the account's buckets (timers fire early, calls arrive late; see RATE_HEADROOM).
    expect(rateLimiterFromEnv({ CAPFLOW_AWS_ACCOUNT_SLOTS: '4' })?.share.mutating).to.deep.equal({ burst: 12.5 * 0.95, refill: 1.25 * 0.95 });
    expect(rateLimiterFromEnv({ CAPFLOW_AWS_ACCOUNT_SLOTS: 'off' })).to.equal(undefined);
    for (const bad of ['0', '-1', 'four', '1.5']) {
      expect(() => rateLimiterFromEnv({ CAPFLOW_AWS_ACCOUNT_SLOTS: bad }), bad).to.throw(/CAPFLOW_AWS_ACCOUNT_SLOTS must be/);
    }
  });

  it('against another endpoint than AWS (the emulator), should be off unless CAPFLOW_AWS_RATE_LIMIT=on; off turns it off against AWS too', () => {
    const emulator = 'http://127.0.0.1:5000';
    expect(rateLimiterFromEnv({ CAPFLOW_AWS_ACCOUNT_SLOTS: '4' }, emulator)).to.equal(undefined);
    expect(rateLimiterFromEnv({ CAPFLOW_AWS_ACCOUNT_SLOTS: '4', CAPFLOW_AWS_RATE_LIMIT: 'on' }, emulator)?.slots).to.equal(4);
    expect(rateLimiterFromEnv({ CAPFLOW_AWS_RATE_LIMIT: 'off' }, undefined)).to.equal(undefined);
    expect(() => rateLimiterFromEnv({ CAPFLOW_AWS_RATE_LIMIT: 'yes' }, undefined)).to.throw(/CAPFLOW_AWS_RATE_LIMIT must be/);
  });
});
