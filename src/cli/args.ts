/** Flag parsing for every command: node's parseArgs, with errors that exit 2. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InputError } from '../core/errors.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export function parse(command: string, argv: string[], options: OptionSpec): Parsed {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: true, strict: true });
    return { values, positionals };
  } catch (err) {
    throw new InputError('CLI_USAGE', `${command}: ${(err as Error).message}`, { hint: `see: capflow ${command} --help` });
  }
}

/** `-p key=value` pairs into a record; a pair without "=" is a usage error. */
export function keyValues(command: string, pairs: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InputError('CLI_USAGE', `${command}: parameter "${pair}" must be key=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

export function str(v: Parsed['values'][string]): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
