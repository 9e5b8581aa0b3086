#!/usr/bin/env node
/**
 * The capflow command and the executor image's entry point. It only wires:
 * the CLI (src/cli) gets the executors (executors/) passed in, so src never
 * imports executors.
 */
import { fileURLToPath } from 'node:url';
import { runCli } from '../src/cli/index.js';
import { executors } from '../executors/index.js';

const exitCode = await runCli(process.argv.slice(2), { executors, entryPoint: fileURLToPath(import.meta.url) });
process.exitCode = exitCode;
