import path from 'node:path';
import { ExitCode } from '../core/errors.js';
import { gitTopLevel } from '../core/checkout.js';
import { formatProblem, printable, specHashWithInputs, validateClusterSpec } from '../spec/index.js';
import { parse, str } from './args.js';
import type { CliIo } from './context.js';

export const validateHelp = `Usage: capflow validate <cluster-dir> [--vars FILE] [--env] [--json]

Validates a cluster folder against the Cluster API CRD schemas, resolves its
references and prints every problem as file:line:column kind/name field: message.

Options:
  --vars FILE   substitute clusterctl variables (\${VAR}, \${VAR:=default}) from FILE
  --env         substitute clusterctl variables from the environment
                (both over <cluster-dir>/cluster.env, which is always read when present)
  --json        print the result as JSON
Exit codes: 0 valid, 2 invalid.`;

export async function validateCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse('validate', argv, {
    vars: { type: 'string' },
    env: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  if (values.help) return io.out(validateHelp), ExitCode.ok;
  if (positionals.length !== 1) {
    io.err('capflow validate: expected one <cluster-dir>\n');
    io.err(validateHelp);
    return ExitCode.invalidInput;
  }
  const dir = path.resolve(positionals[0]!);
  const vars = str(values.vars);
  const { model, problems } = await validateClusterSpec(dir, { ...(vars ? { varsFile: path.resolve(vars) } : {}), useEnv: values.env === true });
  const errors = problems.filter((p) => p.severity === 'error');
  const valid = errors.length === 0 && model !== undefined;
  // the hash the reconciler and `capflow render` compute: AddonCharts' chart folders under the repository root count
  const hash = valid ? await specHashWithInputs(model, (await gitTopLevel(dir)) ?? dir) : undefined;
  if (values.json) {
    io.out(
      JSON.stringify({
        valid,
        cluster: model?.name,
        provider: model?.provider,
        specHash: hash,
        problems: problems.map((p) => ({ ...p, text: formatProblem(p) })),
      }),
    );
  } else {
    for (const p of problems) io.err(formatProblem(p));
    if (valid) {
      io.out(`${printable(positionals[0]!)}: valid ${model.provider} cluster "${model.name}", ${model.documents.length} documents, spec hash ${hash!.slice(0, 12)}`);
    } else {
      io.err(`${printable(positionals[0]!)}: ${errors.length} ${errors.length === 1 ? 'error' : 'errors'}, nothing was applied`);
    }
  }
  return valid ? ExitCode.ok : ExitCode.invalidInput;
}
