import path from 'node:path';
import { stringify } from 'yaml';
import { gitTopLevel, resolveCheckout } from '../core/checkout.js';
import { ExitCode } from '../core/errors.js';
import { buildWorkflow } from '../gitops/workflow.js';
import { FOLDER_VARS_FILE, loadClusterSpec, specHashWithInputs, type SpecDocument } from '../spec/index.js';
import { parse, str, keyValues } from './args.js';
import type { CliIo } from './context.js';

export const renderHelp = `Usage: capflow render <cluster-dir> [options]

Prints the Argo Workflow capflow would submit for this cluster: a
workflowTemplateRef, the parameters (repo, revision, cluster path, spec hash)
and the labels the reconciler follows runs by. Nothing is submitted.

Options:
  --template NAME    cluster-apply (default), cluster-plan or cluster-delete
  --repo URL         repository URL the workflow clones (default: the local repository path)
  --revision REV     Git revision to pin (default: HEAD of the repository holding the folder)
  --namespace NS     namespace of the Workflow (default capflow-system)
  -p, --param K=V    extra workflow parameter (repeatable)
  --vars FILE, --env clusterctl variable substitution, as for validate (the Workflow's
                     steps read only the folder's cluster.env: put the values there)
  -o, --output FMT   yaml (default) or json
  --expanded         print the cluster's documents instead, after ClusterClass
                     expansion (spec.topology), each with a comment saying where
                     it came from; nothing else is rendered`;

export async function renderCommand(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse('render', argv, {
    template: { type: 'string', default: 'cluster-apply' },
    repo: { type: 'string' },
    revision: { type: 'string' },
    namespace: { type: 'string', default: 'capflow-system' },
    param: { type: 'string', short: 'p', multiple: true },
    vars: { type: 'string' },
    env: { type: 'boolean' },
    output: { type: 'string', short: 'o', default: 'yaml' },
    expanded: { type: 'boolean' },
  });
  if (values.help) return io.out(renderHelp), ExitCode.ok;
  if (positionals.length !== 1) {
    io.err('capflow render: expected one <cluster-dir>\n');
    io.err(renderHelp);
    return ExitCode.invalidInput;
  }
  const dir = path.resolve(positionals[0]!);
  const vars = str(values.vars);
  const model = await loadClusterSpec(dir, { ...(vars ? { varsFile: path.resolve(vars) } : {}), useEnv: values.env === true });
  if (values.expanded === true) {
    if (values.output === 'json') io.out(JSON.stringify(model.documents.map((d) => d.object), null, 2));
    else io.out(expandedYaml(model.documents));
    return ExitCode.ok;
  }
  if ((vars && path.resolve(vars) !== path.join(dir, FOLDER_VARS_FILE)) || values.env === true) {
    io.err(`warning: the Workflow carries no variable values: its steps read ${FOLDER_VARS_FILE} in the cluster folder, not --vars or --env`);
  }
  const checkout = await resolveCheckout(dir);
  const repoRoot = (await gitTopLevel(dir)) ?? dir;
  const revision = str(values.revision) ?? checkout.revision;
  if (checkout.dirty && !str(values.revision)) io.err(`warning: ${repoRoot} has uncommitted changes; the workflow would run ${revision.slice(0, 12)} without them`);
  const workflow = buildWorkflow({
    template: str(values.template)!,
    clusterName: model.name,
    repo: str(values.repo) ?? repoRoot,
    revision,
    clusterPath: path.relative(repoRoot, dir) || '.',
    specHash: await specHashWithInputs(model, repoRoot),
    namespace: str(values.namespace)!,
    extraParameters: keyValues('render', values.param as string[] | undefined),
  });
  io.out(values.output === 'json' ? JSON.stringify(workflow, null, 2) : stringify(workflow).trimEnd());
  return ExitCode.ok;
}

/** The documents as one YAML stream, each under a comment naming its source (file:line, or what it was expanded from). */
export function expandedYaml(documents: readonly SpecDocument[]): string {
  return documents
    .map((d) => `# ${d.source.origin ?? `${d.source.file}:${d.source.line}`}\n${stringify(d.object).trimEnd()}`)
    .join('\n---\n');
}
