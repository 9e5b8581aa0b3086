import v8 from 'node:v8';
import { ExitCode } from '../core/errors.js';
import { createLogger, type LogFormat, type LogLevel } from '../core/logger.js';
import { parseReconcilerConfig, reconcileHelp } from '../gitops/config.js';
import { createReconciler, startReconcilerService } from '../gitops/service.js';
import type { CliIo } from './context.js';

export { reconcileHelp };

/** Runs the reconciler until SIGTERM or SIGINT (then stops gracefully), or one pass with --once. */
export async function reconcileCommand(argv: string[], io: CliIo, globals: { logFormat?: LogFormat; logLevel?: LogLevel }): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) return io.out(reconcileHelp), ExitCode.ok;
  const config = parseReconcilerConfig(argv, io.env);
  // The spec loader takes its default schema line from CAPFLOW_CAPI_LINE wherever it runs (here, or
  // a worker started later); the Cluster annotation capflow.io/capi-line still wins per folder.
  if (config.capiLine !== undefined) process.env.CAPFLOW_CAPI_LINE = config.capiLine;
  // V8 sizes its heap for throughput: after a few passes over 1,000 clusters the old generation
  // grows to about twice what is live before it collects. Favouring size keeps the service near
  // its live heap (bench/reconciler.bench.ts: steady RSS ~115-130 MB instead of 150-240 MB) for a
  // little more GC time per pass. Set here, not as a node flag, so the image and `capflow` need none.
  if (io.env.CAPFLOW_OPTIMIZE_FOR_SIZE !== 'false') v8.setFlagsFromString('--optimize-for-size');
  const logFormat = config.logFormat ?? globals.logFormat;
  const logLevel = config.logLevel ?? globals.logLevel;
  const log = createLogger({ stream: io.stderr, ...(logFormat ? { format: logFormat } : {}), ...(logLevel ? { level: logLevel } : {}) });

  if (config.once) {
    const { reconciler, close } = createReconciler(config, log, false);
    try {
      const report = await reconciler.runPass();
      io.out(JSON.stringify(report));
      return report && report.invalid.length > 0 ? ExitCode.invalidInput : ExitCode.ok;
    } finally {
      await close();
    }
  }

  const service = await startReconcilerService(config, log);
  // After the first signal the handlers are gone: a second one ends the process at once.
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      process.removeListener('SIGTERM', onSignal);
      process.removeListener('SIGINT', onSignal);
      resolve(sig);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  log.info('stopping', { signal });
  await service.stop();
  return ExitCode.ok;
}
