/**
 * Many clusters in one AWS account (issue 17): N clusters (network + machines: provision-vpc then
 * launch-nodes of the aws-self-managed example, placeholder user data) created at once by N
 * `capflow run` processes, against moto behind the fault proxy enforcing EC2's token buckets
 * (mutating 50/5, non-mutating 100/20, RunInstances 5/2) on the real clock, compared with single
 * creates, each alone in the account (fresh buckets). Three ways:
 *
 *   singles        one cluster at a time, the account semaphore as deployed (limit L)
 *   at once        N at once, semaphore of L, each step 1/L of the account's buckets
 *   at once, no account limit   N at once, every step at once and each with the whole account's
 *                  buckets (a per-process limit only): what the shared limit prevents
 *
 * Prints wall time, calls (mutating/read, EC2 mutating), throttles answered, runs failed and the
 * time steps waited for tokens. Asserts nothing. Singles are measured on S clusters and scaled to N.
 *
 *   npm run build && node --import tsx bench/many-clusters.bench.ts [N=20] [L=4] [S=3]
 */
import { existsSync } from 'node:fs';
import { CAPFLOW_BIN } from '../test/support/cli.js';
import { startFaultProxy } from '../test/support/fault-proxy.js';
import { startMoto } from '../test/support/moto.js';
import { makeFleet, maxConcurrentSteps, prepareAccount, removeFleet, runFleet, stepSummaries, type Fleet, type FleetRun } from '../test/support/many-clusters.js';

const N = Number(process.argv[2] ?? 20);
const L = Number(process.argv[3] ?? 4);
const S = Number(process.argv[4] ?? 3);
/** Scenarios to run (all by default): singles, at-once, no-limit. */
const ONLY = (process.argv[5] ?? 'singles,at-once,no-limit').split(',');
if (!existsSync(CAPFLOW_BIN)) {
  console.error('dist/ is missing: run npm run build first');
  process.exit(1);
}

const moto = await startMoto();
const proxy = await startFaultProxy({ target: moto.endpoint, eks: false });

interface Row {
  name: string;
  wallS: number;
  calls: number;
  mutating: number;
  read: number;
  ec2Mutating: number;
  throttled: number;
  failed: number;
  waitedS: number;
  concurrent: number | string;
}
const rows: Row[] = [];

function row(name: string, run: FleetRun, fleet: Fleet, scale = 1): Row {
  const calls = proxy.calls;
  const mutating = calls.filter((c) => c.mutating).length;
  const steps = stepSummaries(fleet);
  return {
    name,
    wallS: (run.wallMs / 1000) * scale,
    calls: calls.length * scale,
    mutating: mutating * scale,
    read: (calls.length - mutating) * scale,
    ec2Mutating: calls.filter((c) => c.mutating && c.service === 'ec2').length * scale,
    throttled: calls.filter((c) => c.faulted === 'token-bucket').length * scale,
    failed: run.results.filter((r) => r.code !== 0).length * scale,
    waitedS: (steps.reduce((n, s) => n + s.awsCalls.rateLimitWaitMs, 0) / 1000) * scale,
    concurrent: maxConcurrentSteps(steps),
  };
}

/** Each failed run: its last line, and the error of each failed step attempt. */
function reportFailures(run: FleetRun, fleet: Fleet): void {
  for (const r of run.results.filter((x) => x.code !== 0)) console.error(`${r.name} failed (exit ${r.code}): ${r.stderr.trim().split('\n').at(-1)?.slice(0, 400)}`);
  const failed = stepSummaries(fleet).filter((s) => s.exitCode !== 0);
  const byError = new Map<string, number>();
  for (const s of failed) {
    const e = (s as unknown as { error?: { code: string; message: string } }).error;
    const key = `${s.step}: ${e?.code ?? '?'} ${e?.message.slice(0, 200) ?? ''}`;
    byError.set(key, (byError.get(key) ?? 0) + 1);
  }
  for (const [k, n] of byError) console.error(`  failed step attempts × ${n}: ${k}`);
}

async function freshAccount(accountWide = true): Promise<Fleet> {
  await moto.reset();
  const ami = await prepareAccount(moto.endpoint);
  return makeFleet(N, ami, { accountWide });
}

try {
  // Singles: each alone in the account (its buckets full), one after another; scaled to N.
  if (ONLY.includes('singles')) {
    const fleet = await freshAccount();
    const sum: Row = { name: `sum of ${N} single creates (${S} measured, × ${N / S})`, wallS: 0, calls: 0, mutating: 0, read: 0, ec2Mutating: 0, throttled: 0, failed: 0, waitedS: 0, concurrent: 1 };
    for (const name of fleet.names.slice(0, S)) {
      proxy.reset();
      proxy.setFaults({ tokenBuckets: true });
      const run = await runFleet(fleet, proxy.endpoint, { limit: L, names: [name] });
      const r = row(name, run, fleet, N / S);
      for (const k of ['wallS', 'calls', 'mutating', 'read', 'ec2Mutating', 'throttled', 'failed'] as const) sum[k] += r[k];
      console.error(`single ${name}: ${(run.wallMs / 1000).toFixed(1)} s, ${proxy.calls.length} calls`);
    }
    sum.waitedS = stepSummaries(fleet).reduce((n, s) => n + s.awsCalls.rateLimitWaitMs, 0) / 1000 * (N / S);
    rows.push(sum);
    await removeFleet(fleet);
  }
  // N at once under the account semaphore.
  if (ONLY.includes('at-once')) {
    const fleet = await freshAccount();
    proxy.reset();
    proxy.setFaults({ tokenBuckets: true });
    const run = await runFleet(fleet, proxy.endpoint, { limit: L });
    rows.push(row(`${N} at once, account semaphore ${L}`, run, fleet));
    console.error(`at once: ${(run.wallMs / 1000).toFixed(1)} s`);
    reportFailures(run, fleet);
    proxy.reset();
    proxy.setFaults({ tokenBuckets: true });
    const again = await runFleet(fleet, proxy.endpoint, { limit: L });
    rows.push({ ...row(`  its rerun (converged?)`, again, fleet), concurrent: '' });
    reportFailures(again, fleet);
    await removeFleet(fleet);
  }
  // N at once, no account-wide limit: every step at once, each with the whole account's buckets.
  if (ONLY.includes('no-limit')) {
    const fleet = await freshAccount(false);
    proxy.reset();
    proxy.setFaults({ tokenBuckets: true });
    const run = await runFleet(fleet, proxy.endpoint, { limit: N });
    rows.push(row(`${N} at once, no account limit`, run, fleet));
    reportFailures(run, fleet);
    await removeFleet(fleet);
  }
} finally {
  await proxy.stop();
  await moto.stop();
}

const f1 = (x: number) => x.toFixed(1);
const f0 = (x: number) => Math.round(x).toString();
console.log(`\n${N} clusters (aws-self-managed: 3 zones, NAT per zone, NLB; 8 machines), account semaphore ${L}, EC2 token buckets on the real clock\n`);
console.log('| run | wall | calls | mutating | read | EC2 mutating | throttled | runs failed | waited for tokens (sum) | steps at once (max) |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  console.log(`| ${r.name} | ${f1(r.wallS)} s | ${f0(r.calls)} | ${f0(r.mutating)} | ${f0(r.read)} | ${f0(r.ec2Mutating)} | ${f0(r.throttled)} | ${f0(r.failed)} | ${f1(r.waitedS)} s | ${r.concurrent} |`);
}
