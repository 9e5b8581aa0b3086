#!/usr/bin/env node
/**
 * The capflow command and the executor image's entry point. It only wires:
 * the CLI (src/cli) gets the executors (executors/) passed in, so src never
 * imports executors. They are imported on demand: they load the AWS SDK,
 * which only `capflow step` needs (the reconciler's memory budget has no room for it).
 */
import { fileURLToPath } from 'node:url';
import { runCli } from '../src/cli/index.js';
import type { Executor } from '../src/core/executor.js';

const loadExecutors = async (): Promise<readonly Executor[]> => (await import('../executors/index.js')).executors;
const exitCode = await runCli(process.argv.slice(2), { loadExecutors, entryPoint: fileURLToPath(import.meta.url) });
process.exitCode = exitCode;
