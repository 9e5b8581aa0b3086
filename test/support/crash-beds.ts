/**
 * The crash suite's AWS beds (test/support/crash-suite.ts): each is its own moto_server behind its
 * own fault proxy, so the kill points of a scenario can run side by side, one per bed, without their
 * worlds (or their recorded calls and kill settings) mixing. A case is an executor child starting
 * up, the step in process and moto answering (one more process), so one bed leaves one of CI's two
 * cores mostly idle; two beds keep both busy.
 *
 *   const beds = await startCrashBeds();                  // CAPFLOW_CRASH_BEDS of them, default 2
 *   await forEachOnBeds(beds, points, async (bed, n) => { await bed.moto.reset(); ... });
 *   await stopCrashBeds(beds);
 *
 * Each case still runs and asserts as if alone: it gets a whole bed until it ends. moto starts
 * without AWS's managed IAM policies (startMoto's iamManagedPolicies) unless asked (the EKS steps
 * attach them): with them each reset and the first call after it take about 1 s more each (2 to 4 s
 * under load).
 */
import os from 'node:os';
import { startMoto, type Moto, type StartMotoOptions } from './moto.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';

export interface CrashBed {
  moto: Moto;
  proxy: FaultProxy;
}

/**
 * How many beds: CAPFLOW_CRASH_BEDS (1 runs the cases one after another), default 2, or 1 on a
 * machine with one core. Measured here (2 cores, shared with other jobs): 3 beds were slower than 2.
 */
export function crashBedCount(): number {
  const raw = process.env['CAPFLOW_CRASH_BEDS'];
  if (raw === undefined || raw === '') return Math.min(2, os.availableParallelism());
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`CAPFLOW_CRASH_BEDS must be a whole number of at least 1, not "${raw}"`);
  return n;
}

/** `motoOptions`: e.g. AWS's managed IAM policies, for suites whose steps attach them (EKS). */
export async function startCrashBeds(count = crashBedCount(), motoOptions: StartMotoOptions = {}): Promise<CrashBed[]> {
  const started = await Promise.allSettled(
    Array.from({ length: count }, async (): Promise<CrashBed> => {
      const moto = await startMoto(motoOptions);
      try {
        return { moto, proxy: await startFaultProxy({ target: moto.endpoint }) };
      } catch (err) {
        await moto.stop();
        throw err;
      }
    }),
  );
  const beds = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await stopCrashBeds(beds);
    throw failed.reason;
  }
  return beds;
}

export async function stopCrashBeds(beds: readonly CrashBed[]): Promise<void> {
  await Promise.all(
    beds.map(async (b) => {
      await b.proxy.stop();
      await b.moto.stop();
    }),
  );
}

/**
 * Runs `fn` once for every case, each on a bed no other case is using, as many at once as there
 * are beds, in the order given. After a failure no further case starts; once the running ones
 * end, the first failure is thrown (the others, if any, are named in its message).
 */
export async function forEachOnBeds<B extends CrashBed, T>(beds: readonly B[], cases: readonly T[], fn: (bed: B, c: T) => Promise<void>): Promise<void> {
  if (beds.length === 0) throw new Error('forEachOnBeds: no bed');
  let next = 0;
  const failures: unknown[] = [];
  await Promise.all(
    beds.map(async (bed) => {
      while (failures.length === 0 && next < cases.length) {
        const c = cases[next++]!;
        try {
          await fn(bed, c);
        } catch (err) {
          failures.push(err);
        }
      }
    }),
  );
  if (failures.length === 0) return;
  const [first, ...more] = failures;
  if (more.length > 0 && first instanceof Error) {
    first.message += `\n(and ${more.length} more case(s) failed at the same time: ${more.map((e) => (e instanceof Error ? e.message : String(e)).split('\n')[0]).join('; ')})`;
  }
  throw first;
}
