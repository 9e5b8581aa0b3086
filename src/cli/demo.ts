import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { gitTopLevel, resolveCheckout } from '../core/checkout.js';
import { ExitCode } from '../core/errors.js';
import type { LogFormat, LogLevel } from '../core/logger.js';
import { buildWorkflow } from '../gitops/workflow.js';
import { formatSummaryTable, type RunResult } from '../runner/index.js';
import { formatProblem, specHash, validateClusterSpec } from '../spec/index.js';
import { parse, str } from './args.js';
import type { CliIo } from './context.js';
import { startLocalAws } from './local-aws.js';
import { runTemplate, type RunInvocation } from './run.js';

export const demoHelp = `Usage: capflow demo [--cluster NAME] [--keep] [--plain]

The main job on the embedded default, with nothing but this checkout: validates
an example cluster, prints the Workflow that would be submitted for it, starts
the local AWS emulator (moto_server on 127.0.0.1), runs the cluster-apply
WorkflowTemplate through the local runner, shows what it made, and tears it
down again with cluster-delete.

Options:
  --cluster NAME   an AWS example of examples/clusters/ (default aws-self-managed)
  --keep           skip the teardown (the emulator still stops when the demo ends)
  --plain          plain progress lines even on a TTY`;

/** Output parameters of one task of a finished run, by task name. */
function taskOutputs(result: RunResult, task: string): Record<string, string> {
  return result.nodes.find((n) => n.displayName === task)?.outputs?.parameters ?? {};
}

/** JSON maps (subnets by AZ, groups by role) as "key=value" lists. */
function describeOutput(value: string): string {
  if (!value) return '-';
  try {
    const parsed: unknown = JSON.parse(value);
    if (typeof parsed === 'object' && parsed !== null) {
      return Object.entries(parsed as Record<string, unknown>)
        .map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? Object.entries(v).map(([a, b]) => `${a}:${String(b)}`).join(',') : String(v)}`)
        .join(' ');
    }
  } catch {
    // a plain string
  }
  return value;
}

export async function demoCommand(argv: string[], io: CliIo, globals: { logFormat?: LogFormat; logLevel?: LogLevel }): Promise<number> {
  const { values } = parse('demo', argv, { cluster: { type: 'string', default: 'aws-self-managed' }, keep: { type: 'boolean' }, plain: { type: 'boolean' } });
  if (values.help) return io.out(demoHelp), ExitCode.ok;
  const root = io.packageRoot;
  const clusterPath = path.join('examples', 'clusters', str(values.cluster)!);
  const dir = path.join(root, clusterPath);

  io.out(`== 1/5 Validating ${clusterPath}`);
  const { model, problems } = await validateClusterSpec(dir, {});
  for (const p of problems) io.err(formatProblem(p));
  if (!model || problems.some((p) => p.severity === 'error')) return ExitCode.invalidInput;
  const hash = specHash(model);
  io.out(`${model.provider} cluster "${model.name}": ${model.documents.length} documents, spec hash ${hash.slice(0, 12)}`);
  if (model.provider !== 'aws') {
    io.err(`the demo provisions AWS self-managed clusters; ${clusterPath} is ${model.provider}`);
    return ExitCode.invalidInput;
  }

  io.out(`\n== 2/5 The Workflow capflow would submit for it`);
  const repoRoot = (await gitTopLevel(root)) ?? root;
  const { revision } = await resolveCheckout(repoRoot);
  const workflow = buildWorkflow({ template: 'cluster-apply', clusterName: model.name, repo: repoRoot, revision, clusterPath, specHash: hash });
  io.out(stringify(workflow).trimEnd());
  const params = Object.fromEntries(workflow.spec.arguments.parameters.map((p) => [p.name, p.value]));

  io.out(`\n== 3/5 Starting the local AWS emulator`);
  const aws = await startLocalAws();
  // The demo's secrets (status of the emulated cluster) live and die with it.
  const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-demo-secrets-'));
  io.out(`moto_server on ${aws.endpoint}; secrets in ${secretsDir}`);
  const run = (templateName: string): Promise<RunResult> => {
    const inv: RunInvocation = {
      templateName,
      parameters: params,
      templatesDir: path.join(root, 'workflow-templates'),
      runDir: path.resolve('.capflow', 'runs'),
      plain: values.plain === true,
      extraEnv: { ...aws.env, CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: secretsDir },
      ...globals,
    };
    return runTemplate(inv, io);
  };
  try {
    io.out(`\n== 4/5 Running cluster-apply with the local runner`);
    const applied = await run('cluster-apply');
    io.out(formatSummaryTable(applied));
    if (applied.phase !== 'Succeeded') return ExitCode.internal;
    const made = taskOutputs(applied, 'provision-vpc');
    io.out('\nWhat it made (provision-vpc outputs):');
    for (const [name, value] of Object.entries(made)) io.out(`  ${name.padEnd(20)} ${describeOutput(value)}`);

    if (values.keep) {
      io.out('\n== 5/5 Teardown skipped (--keep)');
      return ExitCode.ok;
    }
    io.out(`\n== 5/5 Tearing it down with cluster-delete`);
    const deleted = await run('cluster-delete');
    io.out(formatSummaryTable(deleted));
    return deleted.phase === 'Succeeded' ? ExitCode.ok : ExitCode.internal;
  } finally {
    await aws.stop();
    rmSync(secretsDir, { recursive: true, force: true });
  }
}
