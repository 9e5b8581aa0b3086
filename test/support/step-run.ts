// One executor run in process (runStep) against moto through the fault proxy, as the AWS suites
// make it: the calls it made (from the proxy's record), its JSON log and its outputs.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { AwsClients } from '../../src/core/aws.js';
import type { Executor } from '../../src/core/executor.js';
import { createLogger } from '../../src/core/logger.js';
import type { SecretStore } from '../../src/core/secrets.js';
import { runStep, type StepSummary } from '../../src/core/step-host.js';
import type { FaultProxy, RecordedCall } from './fault-proxy.js';
import { clientConfig } from './moto.js';

export interface StepRun {
  exitCode: number;
  summary: StepSummary;
  calls: RecordedCall[];
  log: string;
  outputs: Record<string, string>;
}

export interface StepRunTarget {
  proxy: FaultProxy;
  repo: string;
  clusterPath: string;
  region: string;
  revision: string;
  secrets: SecretStore;
}

export async function runStepVia(
  t: StepRunTarget,
  step: Executor,
  opts: { dryRun?: boolean; delete?: boolean; params?: Record<string, string>; credentials?: { accessKeyId: string; secretAccessKey: string } } = {},
): Promise<StepRun> {
  const from = t.proxy.calls.length;
  const credentials = opts.credentials ?? clientConfig(t.proxy.endpoint).credentials;
  const aws = new AwsClients({ endpoint: t.proxy.endpoint, region: t.region, clientConfig: { credentials }, retry: { minTimeoutMs: 5, maxTimeoutMs: 50, retries: 10 } });
  const logStream = new PassThrough();
  let log = '';
  logStream.on('data', (d: Buffer) => (log += d.toString()));
  const outputsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-step-out-'));
  try {
    const { exitCode, summary } = await runStep(
      step,
      {
        repoDir: t.repo,
        clusterPath: t.clusterPath,
        revision: t.revision,
        dryRun: opts.dryRun === true,
        delete: opts.delete === true,
        // EKS waits poll every 20 ms: moto and the stand-in answer at once.
        params: { ...(step.id.startsWith('eks-') ? { 'poll-interval': '20ms' } : {}), ...(opts.params ?? {}) },
      },
      { aws, secrets: t.secrets, log: createLogger({ stream: logStream, format: 'json', level: 'info' }), stdout: new PassThrough(), outputsDir },
    );
    const outputs: Record<string, string> = {};
    for (const name of Object.keys((step.outputSchema as { properties?: object }).properties ?? {})) {
      try {
        outputs[name] = readFileSync(path.join(outputsDir, name), 'utf8');
      } catch {
        /* not written on failure */
      }
    }
    return { exitCode, summary, calls: t.proxy.calls.slice(from), log, outputs };
  } finally {
    aws.destroy();
    rmSync(outputsDir, { recursive: true, force: true });
  }
}

/** The actions of the mutating calls a run made, in order. */
export const mutatingActions = (r: Pick<StepRun, 'calls'>): string[] => r.calls.filter((c) => c.mutating).map((c) => c.action);
