import path from 'node:path';
import { stringify } from 'yaml';
import { gitTopLevel, resolveCheckout } from '../core/checkout.js';
import { ExitCode } from '../core/errors.js';
import type { LogFormat, LogLevel } from '../core/logger.js';
import { buildWorkflow } from '../gitops/workflow.js';
import { formatSummaryTable } from '../runner/index.js';
import { formatProblem, specHash, validateClusterSpec } from '../spec/index.js';
import { parse, str } from './args.js';
import type { CliIo } from './context.js';
import { runTemplate } from './run.js';

export const demoHelp = `Usage: capflow demo [--cluster NAME] [--plain]

The main job on the embedded default, with nothing but this checkout: validates
an example cluster (default aws-self-managed), prints the Workflow that would be
submitted for it, and runs the cluster-apply WorkflowTemplate through the local
runner.

Options:
  --cluster NAME   one of examples/clusters/ (aws-self-managed, aws-machinepool, eks-managed, byoh)
  --plain          plain progress lines even on a TTY`;

export async function demoCommand(argv: string[], io: CliIo, globals: { logFormat?: LogFormat; logLevel?: LogLevel }): Promise<number> {
  const { values } = parse('demo', argv, { cluster: { type: 'string', default: 'aws-self-managed' }, plain: { type: 'boolean' } });
  if (values.help) return io.out(demoHelp), ExitCode.ok;
  const root = io.packageRoot;
  const clusterPath = path.join('examples', 'clusters', str(values.cluster)!);
  const dir = path.join(root, clusterPath);

  io.out(`== 1/3 Validating ${clusterPath}`);
  const { model, problems } = await validateClusterSpec(dir, {});
  for (const p of problems) io.err(formatProblem(p));
  if (!model || problems.some((p) => p.severity === 'error')) return ExitCode.invalidInput;
  const hash = specHash(model);
  io.out(`${model.provider} cluster "${model.name}": ${model.documents.length} documents, spec hash ${hash.slice(0, 12)}`);

  io.out(`\n== 2/3 The Workflow capflow would submit for it`);
  const repoRoot = (await gitTopLevel(root)) ?? root;
  const { revision } = await resolveCheckout(repoRoot);
  const workflow = buildWorkflow({ template: 'cluster-apply', clusterName: model.name, repo: repoRoot, revision, clusterPath, specHash: hash });
  io.out(stringify(workflow).trimEnd());

  io.out(`\n== 3/3 Running cluster-apply with the local runner`);
  const params = Object.fromEntries(workflow.spec.arguments.parameters.map((p) => [p.name, p.value]));
  const result = await runTemplate(
    {
      templateName: 'cluster-apply',
      parameters: params,
      templatesDir: path.join(root, 'workflow-templates'),
      runDir: path.resolve('.capflow', 'runs'),
      plain: values.plain === true,
      ...globals,
    },
    io,
  );
  io.out(formatSummaryTable(result));
  return result.phase === 'Succeeded' ? ExitCode.ok : ExitCode.internal;
}
