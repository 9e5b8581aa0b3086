import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { gitTopLevel, resolveCheckout } from '../core/checkout.js';
import { ExitCode } from '../core/errors.js';
import { LocalSecretStore } from '../core/secrets.js';
import { KUBECONFIG_KEY, clusterSecretName } from '../bootstrap/pki.js';
import { kubeConfigFrom } from '../bootstrap/workload.js';
import { machineHost } from '../emulator/host-support.js';
import { MachineSupervisor } from '../emulator/supervisor.js';
import type { LogFormat, LogLevel } from '../core/logger.js';
import { buildWorkflow } from '../gitops/workflow.js';
import { formatSummaryTable, type RunResult } from '../runner/index.js';
import { formatProblem, specHash, validateClusterSpec } from '../spec/index.js';
import { parse, str } from './args.js';
import type { CliIo } from './context.js';
import { startLocalAws } from './local-aws.js';
import { runTemplate, type RunInvocation } from './run.js';

const execFileAsync = promisify(execFile);

export const demoHelp = `Usage: capflow demo [--cluster NAME] [--keep] [--plain]

The main job on the embedded default, with nothing but this checkout: validates
an example cluster, prints the Workflow that would be submitted for it, starts
the local AWS emulator (moto_server on 127.0.0.1) and, as root with the test
bed installed (bash testbed/install.sh), the machine emulator that boots its
instances with the real kubeadm and control plane; runs the cluster-apply
WorkflowTemplate through the local runner, prints kubectl get nodes through
capflow's kubeconfig, and tears it all down again with cluster-delete. Without
root or the test bed it says so and makes the network only.

Options:
  --cluster NAME   an AWS example of examples/clusters/ (default aws-small)
  --keep           skip the teardown (the emulators still stop when the demo ends)
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

/**
 * `kubectl get nodes -o wide` through the cluster's kubeconfig (its server mapped to the host's port).
 * Asynchronous: the load balancers' host ports are served by this process's event loop.
 */
async function kubectlGetNodes(kubectl: string, kubeconfigText: string, env: NodeJS.ProcessEnv, dir: string): Promise<string> {
  const file = path.join(dir, 'kubeconfig');
  writeFileSync(file, kubeConfigFrom(kubeconfigText, env).exportConfig(), { mode: 0o600 });
  try {
    const { stdout } = await execFileAsync(kubectl, ['--kubeconfig', file, '--request-timeout', '20s', 'get', 'nodes', '-o', 'wide'], { encoding: 'utf8' });
    return stdout.trimEnd();
  } catch (err) {
    return `kubectl failed: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`;
  } finally {
    rmSync(file, { force: true });
  }
}

export async function demoCommand(argv: string[], io: CliIo, globals: { logFormat?: LogFormat; logLevel?: LogLevel }): Promise<number> {
  const { values } = parse('demo', argv, { cluster: { type: 'string', default: 'aws-small' }, keep: { type: 'boolean' }, plain: { type: 'boolean' } });
  if (values.help) return io.out(demoHelp), ExitCode.ok;
  const root = io.packageRoot;
  const clusterPath = path.join('examples', 'clusters', str(values.cluster)!);
  const dir = path.join(root, clusterPath);

  io.out(`== 1/6 Validating ${clusterPath}`);
  const { model, problems } = await validateClusterSpec(dir, {});
  for (const p of problems) io.err(formatProblem(p));
  if (!model || problems.some((p) => p.severity === 'error')) return ExitCode.invalidInput;
  const hash = specHash(model);
  io.out(`${model.provider} cluster "${model.name}": ${model.documents.length} documents, spec hash ${hash.slice(0, 12)}`);
  if (model.provider !== 'aws') {
    io.err(`the demo provisions AWS self-managed clusters; ${clusterPath} is ${model.provider}`);
    return ExitCode.invalidInput;
  }

  // Booting machines needs root and the test bed; without them the demo makes the network only.
  const support = await machineHost();
  const versions = [...new Set([model.kubernetesVersion, ...model.machineDeployments.map((d) => d.deployment.spec.template.spec.version ?? model.kubernetesVersion)])];
  const mismatch = 'host' in support && versions.some((v) => minorOf(v) !== minorOf(support.host.kubernetesVersion));
  const host = 'host' in support && !mismatch ? support.host : undefined;
  const notBooting = 'reason' in support ? support.reason : mismatch ? `the cluster runs ${versions.join(', ')}, the test bed's binaries ${'host' in support ? support.host.kubernetesVersion : ''}` : '';

  io.out(`\n== 2/6 The Workflow capflow would submit for it`);
  const repoRoot = (await gitTopLevel(root)) ?? root;
  const { revision } = await resolveCheckout(repoRoot);
  const workflow = buildWorkflow({ template: 'cluster-apply', clusterName: model.name, repo: repoRoot, revision, clusterPath, specHash: hash });
  io.out(stringify(workflow).trimEnd());
  const region = (model.infrastructure.spec as { region?: string }).region ?? 'us-east-1';
  const params: Record<string, string> = { ...Object.fromEntries(workflow.spec.arguments.parameters.map((p) => [p.name, p.value])), ...(host ? {} : { machines: 'false' }) };

  io.out(`\n== 3/6 Starting the local AWS emulator${host ? ' and the machine emulator' : ''}`);
  // AMIs for the cluster's versions and for every version the machines can boot with (the test bed's
  // previous release only when it is built: an AMI of a version no binaries are here for would boot the
  // default ones under another name)
  const aws = await startLocalAws({ kubernetesVersions: [...new Set([...versions, ...Object.keys(host?.kubeImages ?? {})])], capaAccount: true });
  // The demo's secrets (PKI, kubeconfig, status of the emulated cluster) live and die with it.
  const secretsDir = mkdtempSync(path.join(os.tmpdir(), 'capflow-demo-secrets-'));
  io.out(`moto_server on ${aws.endpoint}; secrets in ${secretsDir}`);
  let supervisor: MachineSupervisor | undefined;
  const endpointsFile = path.join(secretsDir, 'endpoints.json');
  try {
    if (host) {
      supervisor = await MachineSupervisor.start({
        endpoint: aws.endpoint,
        region,
        credentials: { accessKeyId: aws.env.AWS_ACCESS_KEY_ID!, secretAccessKey: aws.env.AWS_SECRET_ACCESS_KEY! },
        kubeBinDir: host.kubeBinDir,
        cloudInitBinary: host.cloudInitBinary,
        kubeletVersion: host.kubernetesVersion,
        kubeImages: host.kubeImages,
        machineAwsCli: host.awsCli,
        endpointsFile,
      });
      io.out(`machines: instances boot in network namespaces with kubeadm ${host.kubernetesVersion} from ${host.kubeBinDir}`);
      for (const [version, dir] of Object.entries(host.kubeImages)) if (version !== host.kubernetesVersion) io.out(`          (instances of a ${version} image: kubeadm ${version} from ${dir})`);
    } else {
      io.out(`machines: not booted (${notBooting}); making the network only`);
    }
    const env = { ...aws.env, CAPFLOW_SECRET_STORE: 'local', CAPFLOW_SECRETS_DIR: secretsDir, CAPFLOW_ENDPOINTS_FILE: endpointsFile };
    const run = (templateName: string, parameters: Record<string, string>): Promise<RunResult> => {
      const inv: RunInvocation = {
        templateName,
        parameters,
        templatesDir: path.join(root, 'workflow-templates'),
        runDir: path.resolve('.capflow', 'runs'),
        plain: values.plain === true,
        extraEnv: env,
        ...globals,
      };
      return runTemplate(inv, io);
    };

    io.out(`\n== 4/6 Running cluster-apply with the local runner`);
    const applied = await run('cluster-apply', params);
    io.out(formatSummaryTable(applied));
    if (applied.phase !== 'Succeeded') return ExitCode.internal;

    io.out(`\n== 5/6 What it made`);
    for (const [name, value] of Object.entries(taskOutputs(applied, 'provision-vpc'))) io.out(`  ${name.padEnd(20)} ${describeOutput(value)}`);
    if (host) {
      const kubeconfig = (await new LocalSecretStore(secretsDir).get(clusterSecretName(model.name, 'kubeconfig')))?.[KUBECONFIG_KEY];
      io.out(`\nkubectl get nodes (through ${clusterSecretName(model.name, 'kubeconfig')}):`);
      io.out(kubeconfig ? await kubectlGetNodes(path.join(host.kubeBinDir, 'kubectl'), kubeconfig, env, secretsDir) : '(no kubeconfig)');
    }

    if (values.keep) {
      io.out('\n== 6/6 Teardown skipped (--keep)');
      return ExitCode.ok;
    }
    io.out(`\n== 6/6 Tearing it down with cluster-delete`);
    const deleted = await run('cluster-delete', { ...params, region });
    io.out(formatSummaryTable(deleted));
    if (deleted.phase !== 'Succeeded') return ExitCode.internal;
    if (supervisor) {
      const deadline = Date.now() + 30_000;
      while (supervisor.machines().length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
      io.out(`machines left: ${supervisor.machines().length}`);
    }
    return ExitCode.ok;
  } finally {
    await supervisor?.stop();
    await aws.stop();
    rmSync(secretsDir, { recursive: true, force: true });
  }
}

function minorOf(version: string): string {
  return version.replace(/^v/, '').split('.').slice(0, 2).join('.');
}
