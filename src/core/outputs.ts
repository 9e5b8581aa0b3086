/**
 * Step outputs: one file per Argo output parameter in the outputs directory,
 * and one JSON summary line on stdout. A value that looks like a secret is
 * refused: secrets travel by secret name, never as parameters.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { InternalError } from './errors.js';
import { redactString } from './redact.js';

const PARAM_NAME = /^[a-z0-9][a-z0-9-]*$/;

export class OutputsWriter {
  private readonly written = new Map<string, string>();

  /** `dir` undefined: outputs are kept in memory and only summarised. */
  constructor(readonly dir: string | undefined) {}

  async write(name: string, value: string): Promise<void> {
    if (!PARAM_NAME.test(name)) throw new InternalError('OUTPUT_NAME_INVALID', `output parameter name "${name}" must be kebab-case`);
    if (redactString(value) !== value) {
      throw new InternalError('OUTPUT_LOOKS_SECRET', `output parameter "${name}" looks like secret material; pass a secret name instead`);
    }
    this.written.set(name, value);
    if (!this.dir) return;
    await fs.mkdir(this.dir, { recursive: true });
    const file = path.join(this.dir, name);
    await fs.writeFile(`${file}.tmp`, value);
    await fs.rename(`${file}.tmp`, file);
  }

  async writeAll(values: Record<string, string>): Promise<void> {
    for (const [k, v] of Object.entries(values)) await this.write(k, v);
  }

  values(): Record<string, string> {
    return Object.fromEntries(this.written);
  }
}

export function outputsDirFromEnv(flag?: string): string | undefined {
  return flag ?? process.env.CAPFLOW_OUTPUTS_DIR ?? undefined;
}
