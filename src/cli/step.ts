import path from 'node:path';
import { resolveCheckout } from '../core/checkout.js';
import { ExitCode, InputError } from '../core/errors.js';
import { createLogger, type LogFormat, type LogLevel } from '../core/logger.js';
import { runStep } from '../core/step-host.js';
import { parse, str, keyValues } from './args.js';
import type { Executor } from '../core/executor.js';
import type { CliIo } from './context.js';

export function stepHelp(executors: readonly Executor[]): string {
  const steps = executors.map((e) => `  ${e.id.padEnd(18)} ${e.description}`).join('\n');
  return `Usage: capflow step <step-id> --cluster-dir <dir> [options]

Runs one executor directly: the same entry point the image and the runner use.
Outputs go to one file per parameter under --outputs; one JSON summary line is
printed on stdout; logs go to stderr.

Steps:
${steps}

Options:
  --cluster-dir DIR  cluster folder (relative to --repo, or absolute)
  --repo PATH|URL    repository checkout or URL (default: the repository holding the folder)
  --revision REV     Git revision the run is pinned to (default: HEAD)
  --outputs DIR      output parameter directory (default: $CAPFLOW_OUTPUTS_DIR)
  -p, --param K=V    step parameter (repeatable)
  --vars FILE        clusterctl variable values (KEY=value lines) over the folder's cluster.env
  --dry-run          print the plan, change nothing
  --delete           remove what the step owns, in reverse dependency order
Exit codes: 0 ok, 2 invalid input (do not retry), 3 conflict or drift, 75 transient (retry).`;
}

/** `capflow step <id> --help`: what the step does and its parameters, from its input schema. */
export function oneStepHelp(executor: Executor): string {
  const props = (executor.inputSchema as { properties?: Record<string, { description?: string; enum?: unknown[] }> }).properties ?? {};
  const params = Object.entries(props).map(([name, p]) => `  -p ${`${name}=...`.padEnd(22)} ${p.description ?? ''}${p.enum ? ` (one of: ${p.enum.join(', ')})` : ''}`.trimEnd());
  const modes = [executor.supportsDryRun ? '--dry-run' : '', executor.supportsDelete ? '--delete' : ''].filter(Boolean).join(', ');
  return `Usage: capflow step ${executor.id} --cluster-dir <dir> [options]

${executor.description}.

Parameters:
${params.length > 0 ? params.join('\n') : '  (none)'}
${modes ? `Modes: ${modes}\n` : ''}Common options and exit codes: capflow step --help`;
}

export async function stepCommand(argv: string[], io: CliIo, globals: { logFormat?: LogFormat; logLevel?: LogLevel }): Promise<number> {
  const { values, positionals } = parse('step', argv, {
    'cluster-dir': { type: 'string' },
    repo: { type: 'string' },
    revision: { type: 'string' },
    outputs: { type: 'string' },
    param: { type: 'string', short: 'p', multiple: true },
    vars: { type: 'string' },
    'dry-run': { type: 'boolean' },
    delete: { type: 'boolean' },
  });
  const id = positionals[0];
  if (id === undefined) {
    io.out(stepHelp(await io.deps.loadExecutors()));
    return values.help ? ExitCode.ok : ExitCode.invalidInput;
  }
  const executor = (await io.deps.loadExecutor?.(id)) ?? (await io.deps.loadExecutors()).find((e) => e.id === id);
  if (!executor) {
    const known = (await io.deps.loadExecutors()).map((e) => e.id);
    throw new InputError('STEP_UNKNOWN', `unknown step "${id}"`, { hint: `known steps: ${known.join(', ')}` });
  }
  if (values.help) {
    io.out(oneStepHelp(executor));
    return ExitCode.ok;
  }
  const clusterDir = str(values['cluster-dir']);
  if (!clusterDir) throw new InputError('CLI_USAGE', 'step: --cluster-dir is required', { hint: 'see: capflow step --help' });
  const repo = str(values.repo) ?? (path.isAbsolute(clusterDir) ? path.dirname(clusterDir) : process.cwd());
  const checkout = await resolveCheckout(repo, str(values.revision));
  const log = createLogger({ stream: io.stderr, ...(globals.logFormat ? { format: globals.logFormat } : {}), ...(globals.logLevel ? { level: globals.logLevel } : {}) });
  const { exitCode } = await runStep(
    executor,
    {
      repoDir: checkout.dir,
      clusterPath: path.isAbsolute(clusterDir) ? path.relative(checkout.dir, clusterDir) || '.' : clusterDir,
      revision: checkout.revision,
      dryRun: values['dry-run'] === true,
      delete: values.delete === true,
      params: keyValues('step', values.param as string[] | undefined),
      ...(str(values.vars) ? { varsFile: path.resolve(str(values.vars)!) } : {}),
    },
    { log, stdout: io.stdout, ...(str(values.outputs) ?? io.env.CAPFLOW_OUTPUTS_DIR ? { outputsDir: str(values.outputs) ?? io.env.CAPFLOW_OUTPUTS_DIR } : {}) },
  );
  return exitCode;
}
