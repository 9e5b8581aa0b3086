/** What the wiring (bin/capflow.ts) passes to the CLI. */
import path from 'node:path';
import type { Executor } from '../core/executor.js';

export interface CliDeps {
  /** Every step capflow ships; imported on demand (only `step` needs them, and they load the AWS SDK). */
  loadExecutors: () => Promise<readonly Executor[]>;
  /** One step by id, importing only it (undefined: no such step); without it, loadExecutors is used. */
  loadExecutor?: (id: string) => Promise<Executor | undefined>;
  /** Absolute path of the running entry point (dist/bin/capflow.js). */
  entryPoint: string;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  env?: NodeJS.ProcessEnv;
}

export interface CliIo {
  deps: CliDeps;
  out: (line: string) => void;
  err: (line: string) => void;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  /** The installed package: workflow-templates/ and examples/ live here. */
  packageRoot: string;
}

export function makeIo(deps: CliDeps): CliIo {
  const stdout = deps.stdout ?? process.stdout;
  const stderr = deps.stderr ?? process.stderr;
  return {
    deps,
    stdout,
    stderr,
    out: (line) => void stdout.write(`${line}\n`),
    err: (line) => void stderr.write(`${line}\n`),
    env: deps.env ?? process.env,
    packageRoot: path.resolve(path.dirname(deps.entryPoint), '..', '..'),
  };
}
