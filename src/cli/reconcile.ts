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
