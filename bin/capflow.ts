#!/usr/bin/env node
/**
 * The capflow command and the executor image's entry point. It only wires:
 * the CLI (src/cli) gets the executors (executors/) passed in, so src never
 * imports executors. They are imported on demand: they load the AWS SDK,
 * which only `capflow step` needs (the reconciler's memory budget has no room for it),
 * and `capflow step <id>` imports that one step only.
 */
import { fileURLToPath } from 'node:url';
import { runCli } from '../src/cli/index.js';
import type { Executor } from '../src/core/executor.js';

const loadExecutors = async (): Promise<readonly Executor[]> => (await import('../executors/index.js')).executors;
// one step alone: an Argo step pays for its own executor's imports only
const loadExecutor = async (id: string): Promise<Executor | undefined> => (await import('../executors/lazy.js')).executorModules[id]?.();
const exitCode = await runCli(process.argv.slice(2), { loadExecutors, loadExecutor, entryPoint: fileURLToPath(import.meta.url) });
process.exitCode = exitCode;
