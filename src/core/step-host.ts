/**
 * Runs one executor the same way everywhere (container, CLI, local runner):
 * validates its parameters, gives it a context, writes its outputs, prints
 * one JSON summary line on stdout and returns the exit code Argo acts on.
 */
import { AwsClients } from './aws.js';
import { describeChain, isCapflowError, ExitCode, InputError, toCapflowError } from './errors.js';
import type { Executor, StepOptions, StepContext } from './executor.js';
import { createLogger, type Logger } from './logger.js';
import { OutputsWriter } from './outputs.js';
import { clusterOfPath, makeCheckpoint } from './pause.js';
import { redact } from './redact.js';
import { checkInput, checkOutput } from './schema.js';
import { secretStoreFromEnv, type SecretStore } from './secrets.js';

export interface StepHostDeps {
  log?: Logger;
  aws?: AwsClients;
  secrets?: SecretStore;
  outputsDir?: string;
  /** Where the summary line goes (stdout by default). */
  stdout?: NodeJS.WritableStream;
  signal?: AbortSignal;
}

export interface StepSummary {
  step: string;
  /** paused: the cluster was paused and the step stopped at a safe point (exit 4). */
  status: 'succeeded' | 'failed' | 'paused';
  exitCode: number;
  durationMs: number;
  cluster: string;
  revision: string;
  dryRun: boolean;
  delete: boolean;
  outputs: Record<string, string>;
  awsCalls: ReturnType<AwsClients['counter']['summary']>;
  error?: { code: string; kind: string; message: string; hint?: string; causes: string[] };
  [extra: string]: unknown;
}

export async function runStep(executor: Executor, options: StepOptions, deps: StepHostDeps = {}): Promise<{ exitCode: number; summary: StepSummary }> {
  const started = Date.now();
  const log = (deps.log ?? createLogger()).child({ step: executor.id });
  const aws = deps.aws ?? new AwsClients({ log });
  const outputs = new OutputsWriter(deps.outputsDir);
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error('received termination signal'));
  deps.signal?.addEventListener('abort', onSignal, { once: true });
  process.once('SIGTERM', onSignal);

  let exitCode: number = ExitCode.ok;
  let extra: Record<string, unknown> = {};
  let error: StepSummary['error'];
  try {
    if (options.delete && !executor.supportsDelete) throw new InputError('STEP_NO_DELETE', `${executor.id} has no --delete mode`);
    if (options.dryRun && !executor.supportsDryRun) throw new InputError('STEP_NO_DRY_RUN', `${executor.id} has no --dry-run mode`);
    checkInput(executor.id, executor.inputSchema, options.params);
    const secrets = deps.secrets ?? secretStoreFromEnv();
    const checkpoint = makeCheckpoint({ step: executor.id, cluster: clusterOfPath(options.clusterPath), store: secrets, log, enabled: !options.dryRun });
    const ctx: StepContext = {
      stepId: executor.id,
      options,
      log,
      aws,
      secrets,
      outputs,
      signal: controller.signal,
      checkpoint,
    };
    // the first safe point: a step started after its cluster was paused changes nothing
    await checkpoint('start');
    const result = await executor.run(ctx);
    checkOutput(executor.id, executor.outputSchema, result.outputs);
    await outputs.writeAll(result.outputs);
    extra = result.summary ?? {};
  } catch (err) {
    // Coded first, so the code printed and the exit code always agree (INTERNAL is exit 1 only).
    const coded = toCapflowError(err);
    exitCode = coded.exitCode;
    const causes = describeChain(coded);
    error = {
      code: coded.code,
      kind: coded.kind,
      message: coded.message,
      ...(coded.hint ? { hint: coded.hint } : {}),
      causes: causes.slice(1),
    };
    if (coded.kind === 'paused') log.warn(`Step ${executor.id} paused`, { code: error.code, error: error.message });
    else log.error(`Step ${executor.id} failed`, { code: error.code, error: error.message, ...(error.hint ? { hint: error.hint } : {}) });
    if (!isCapflowError(err) && err instanceof Error && err.stack) log.debug('Stack', { stack: err.stack });
  } finally {
    process.removeListener('SIGTERM', onSignal);
    deps.signal?.removeEventListener('abort', onSignal);
    if (!deps.aws) aws.destroy();
  }

  const summary: StepSummary = redact({
    ...extra,
    step: executor.id,
    status: exitCode === ExitCode.ok ? 'succeeded' : exitCode === ExitCode.paused ? 'paused' : 'failed',
    exitCode,
    durationMs: Date.now() - started,
    cluster: options.clusterPath,
    revision: options.revision,
    dryRun: options.dryRun,
    delete: options.delete,
    outputs: outputs.values(),
    awsCalls: aws.counter.summary(),
    ...(error ? { error } : {}),
  });
  (deps.stdout ?? process.stdout).write(`${JSON.stringify(summary)}\n`);
  return { exitCode, summary };
}
