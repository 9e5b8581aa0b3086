import { ExitCode, InputError } from '../core/errors.js';
import { awsSteps, buildPolicy } from '../aws/iam-policy.js';
import { parse, str } from './args.js';
import type { CliIo } from './context.js';

export const iamPolicyHelp = `Usage: capflow iam-policy [options]

Prints the IAM policy (JSON) that lets capflow's steps make exactly the AWS calls
they can make: reads on "*", creates only with the cluster's capflow.io/cluster
tag in the request, changes and deletes only of resources that carry it. See the
README, "Least privilege".

Options:
  --step S           one step (repeatable; default: every step that calls AWS:
                     ${awsSteps().join(', ')})
  --cluster NAME     only this cluster's resources (default: any capflow cluster's)
  --partition P      the ARN partition (default aws)
Exit codes: 0 printed, 2 an unknown step or a bad cluster name.`;

export function iamPolicyCommand(argv: string[], io: CliIo): number {
  const { values, positionals } = parse('iam-policy', argv, {
    step: { type: 'string', multiple: true },
    cluster: { type: 'string' },
    partition: { type: 'string' },
  });
  if (values.help) return io.out(iamPolicyHelp), ExitCode.ok;
  if (positionals.length > 0) throw new InputError('CLI_USAGE', `iam-policy: unexpected argument "${positionals[0]}"`, { hint: 'see: capflow iam-policy --help' });
  const steps = (values.step as string[] | undefined) ?? awsSteps();
  const cluster = str(values.cluster);
  const partition = str(values.partition);
  const policy = buildPolicy(steps, { ...(cluster !== undefined ? { cluster } : {}), ...(partition !== undefined ? { partition } : {}) });
  io.out(JSON.stringify(policy, null, 2));
  return ExitCode.ok;
}
