import path from 'node:path';
import { ExitCode, InputError } from '../core/errors.js';
import type { LogFormat, LogLevel } from '../core/logger.js';
import { createPlainRenderer, createTtyRenderer, formatSummaryTable, loadConfigMapFiles, loadTemplates, runWorkflow, type RunResult } from '../runner/index.js';
import { keyValues, parse, str } from './args.js';
import type { CliIo } from './context.js';

export const runHelp = `Usage: capflow run <workflow-template> [-p name=value ...] [options]

Runs a WorkflowTemplate's DAG on this machine with Argo's semantics: tasks in
dependency order (independent ones at once), retries, deadlines, when, exit
handlers. Containers run as child processes of the same entry point the image
runs (capflow step ...). Shows a live task tree on a TTY, plain lines
otherwise, and a summary table at the end.

Options:
  -p, --param K=V       workflow parameter (repeatable)
  --templates DIR       WorkflowTemplates directory (default: the installed workflow-templates/)
  --run-dir DIR         where task logs go (default .capflow/runs)
  --plain               plain lines even on a TTY
  --config-map FILE     ConfigMap YAML the run reads, as Argo's controller reads the namespace's
                        (repeatable; a later file wins): capflow-aws-accounts holds the AWS
                        account semaphores' limits. Default: the chart's, {default: "4"}
  --lock-dir DIR        where mutex locks and semaphore slots live, shared by every run on this
                        machine (default <tmpdir>/capflow-mutex)
Exit codes: 0 Succeeded, 1 Failed or Error, 2 invalid template or parameters.`;

export interface RunInvocation {
  templateName: string;
  parameters: Record<string, string>;
  templatesDir: string;
  runDir: string;
  plain: boolean;
  logFormat?: LogFormat;
  logLevel?: LogLevel;
  /** Extra environment for the steps (the demo's local AWS emulator). */
  extraEnv?: Record<string, string>;
  /** ConfigMap YAML files (semaphore limits); DEFAULT_CONFIG_MAPS when none. */
  configMapFiles?: string[];
  lockDir?: string;
}

/**
 * The ConfigMaps a local run has when none is given: the chart's capflow-aws-accounts
 * (charts/capflow/values.yaml awsAccounts.limits), so `capflow run` works as installed.
 */
export const DEFAULT_CONFIG_MAPS: Record<string, Record<string, string>> = { 'capflow-aws-accounts': { default: '4' } };

/** Runs a template with the CLI's renderers; shared by `run` and `demo`. */
export async function runTemplate(inv: RunInvocation, io: CliIo): Promise<RunResult> {
  const templates = loadTemplates(inv.templatesDir);
  const configMaps = inv.configMapFiles?.length ? { ...DEFAULT_CONFIG_MAPS, ...loadConfigMapFiles(inv.configMapFiles) } : DEFAULT_CONFIG_MAPS;
  if (!templates.has(inv.templateName)) {
    throw new InputError('TEMPLATE_NOT_FOUND', `no WorkflowTemplate named "${inv.templateName}" in ${inv.templatesDir}`, {
      hint: `known: ${[...templates.keys()].sort().join(', ')}`,
    });
  }
  const tty = !inv.plain && (io.stderr as NodeJS.WriteStream).isTTY === true;
  const renderer = tty ? createTtyRenderer(io.stderr) : createPlainRenderer(io.stderr);
  const controller = new AbortController();
  const stop = () => controller.abort(new Error('interrupted'));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await runWorkflow({
      templates,
      templateName: inv.templateName,
      parameters: inv.parameters,
      entryPoints: { capflow: [process.execPath, io.deps.entryPoint], node: [process.execPath] },
      runDir: inv.runDir,
      configMaps,
      ...(inv.lockDir ? { lockDir: inv.lockDir } : {}),
      onEvent: (e) => renderer.onEvent(e),
      signal: controller.signal,
      env: {
        ...io.env,
        // Children log JSON lines into their task log files unless told otherwise.
        ...(inv.logFormat ? { CAPFLOW_LOG_FORMAT: inv.logFormat } : {}),
        ...(inv.logLevel ? { CAPFLOW_LOG_LEVEL: inv.logLevel } : {}),
        ...(inv.extraEnv ?? {}),
      },
    });
  } finally {
    renderer.close();
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
  }
}

export async function runCommand(argv: string[], io: CliIo, globals: { logFormat?: LogFormat; logLevel?: LogLevel }): Promise<number> {
  const { values, positionals } = parse('run', argv, {
    param: { type: 'string', short: 'p', multiple: true },
    templates: { type: 'string' },
    'run-dir': { type: 'string' },
    plain: { type: 'boolean' },
    'config-map': { type: 'string', multiple: true },
    'lock-dir': { type: 'string' },
  });
  if (values.help) return io.out(runHelp), ExitCode.ok;
  if (positionals.length !== 1) {
    io.err('capflow run: expected one <workflow-template>\n');
    io.err(runHelp);
    return ExitCode.invalidInput;
  }
  const result = await runTemplate(
    {
      templateName: positionals[0]!,
      parameters: keyValues('run', values.param as string[] | undefined),
      templatesDir: path.resolve(str(values.templates) ?? path.join(io.packageRoot, 'workflow-templates')),
      runDir: path.resolve(str(values['run-dir']) ?? path.join('.capflow', 'runs')),
      plain: values.plain === true,
      configMapFiles: ((values['config-map'] as string[] | undefined) ?? []).map((f) => path.resolve(f)),
      ...(str(values['lock-dir']) ? { lockDir: path.resolve(str(values['lock-dir'])!) } : {}),
      ...globals,
    },
    io,
  );
  io.out(formatSummaryTable(result));
  return result.phase === 'Succeeded' ? ExitCode.ok : ExitCode.internal;
}
