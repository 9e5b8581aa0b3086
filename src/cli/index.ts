/**
 * capflow's command line: a thin shell over the library. Each command parses
 * its flags, calls src/, prints, and returns an exit code; errors are printed
 * once here with their code and hint. Commands are imported when run, so a
 * command pays (in start time and memory) only for the modules it uses: the
 * reconciler does not load the runner, and nothing but `step` loads executors.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describeChain, exitCodeFor, isCapflowError, ExitCode, toCapflowError } from '../core/errors.js';
import type { LogFormat, LogLevel } from '../core/logger.js';
import { redactString } from '../core/redact.js';
import { SpecInvalidError, formatProblem } from '../spec/index.js';
import { makeIo, type CliDeps, type CliIo } from './context.js';

export type { CliDeps } from './context.js';

const usage = `capflow: Kubernetes clusters by GitOps, infrastructure included

Usage: capflow <command> [options]

Commands:
  demo                     validate, render and run an example cluster through the local runner
  validate <cluster-dir>   check a cluster folder against the Cluster API schemas
  render <cluster-dir>     print the Argo Workflow that would be submitted for it
  run <template>           run a WorkflowTemplate's DAG on this machine (the local runner)
  step <step-id>           run one executor directly
  reconcile                keep the clusters of a GitOps repository converged (the reconciler service)
  status [cluster ...]     print what the reconciler recorded per cluster
  hosts [cluster ...]      list the bring-your-own hosts clusters have claimed
  iam-policy               print the least-privilege IAM policy of the steps that call AWS
  version                  print the version

Global options (before the command):
  --log-format json|pretty   default: pretty on a TTY, JSON lines otherwise (CAPFLOW_LOG_FORMAT)
  --log-level LEVEL          error, warn, info (default), debug (CAPFLOW_LOG_LEVEL)

Run "capflow <command> --help" for a command's options.
Exit codes: 0 ok, 1 internal error, 2 invalid input, 3 conflict or drift, 75 transient failure.`;

function version(io: CliIo): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(io.packageRoot, 'package.json'), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

export async function runCli(argv: string[], deps: CliDeps): Promise<number> {
  const io = makeIo(deps);
  const globals: { logFormat?: LogFormat; logLevel?: LogLevel } = {};
  const args = [...argv];
  while (args[0]?.startsWith('--log-')) {
    const flag = args.shift()!;
    const [name, inline] = flag.split('=', 2);
    const value = inline ?? args.shift();
    if (name === '--log-format' && (value === 'json' || value === 'pretty')) globals.logFormat = value;
    else if (name === '--log-level' && (value === 'error' || value === 'warn' || value === 'info' || value === 'debug')) globals.logLevel = value;
    else {
      io.err(`capflow: bad global option ${flag} ${value ?? ''}`.trim());
      return ExitCode.invalidInput;
    }
  }
  const command = args.shift();
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.out(usage);
        return command === undefined ? ExitCode.invalidInput : ExitCode.ok;
      case 'version':
      case '--version':
        io.out(version(io));
        return ExitCode.ok;
      case 'validate':
        return await (await import('./validate.js')).validateCommand(args, io);
      case 'render':
        return await (await import('./render.js')).renderCommand(args, io);
      case 'run':
        return await (await import('./run.js')).runCommand(args, io, globals);
      case 'step':
        return await (await import('./step.js')).stepCommand(args, io, globals);
      case 'demo':
        return await (await import('./demo.js')).demoCommand(args, io, globals);
      case 'reconcile':
        return await (await import('./reconcile.js')).reconcileCommand(args, io, globals);
      case 'status':
        return await (await import('./status.js')).statusCommand(args, io);
      case 'hosts':
        return await (await import('./hosts.js')).hostsCommand(args, io);
      case 'iam-policy':
        return (await import('./iam-policy.js')).iamPolicyCommand(args, io);
      default:
        io.err(`capflow: unknown command "${command}"\n`);
        io.err(usage);
        return ExitCode.invalidInput;
    }
  } catch (err) {
    printError(io, err);
    return exitCodeFor(err);
  }
}

function printError(io: CliIo, err: unknown): void {
  if (err instanceof SpecInvalidError) {
    for (const p of err.problems) io.err(formatProblem(p));
    const errors = err.problems.filter((p) => p.severity === 'error').length;
    io.err(`${errors} ${errors === 1 ? 'error' : 'errors'} in the cluster spec, nothing was applied`);
    return;
  }
  // Coded, so the code printed agrees with the exit code (exitCodeFor gives the same as coded.exitCode).
  const coded = toCapflowError(err);
  const [first, ...causes] = describeChain(coded);
  io.err(`capflow: ${redactString(first ?? 'unknown error')}`);
  for (const c of causes) io.err(`  caused by: ${redactString(c)}`);
  if (coded.hint) io.err(`  hint: ${coded.hint}`);
  if (!isCapflowError(err) && err instanceof Error && process.env.CAPFLOW_LOG_LEVEL === 'debug') io.err(err.stack ?? '');
}
